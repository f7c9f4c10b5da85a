"""bench_gpu.py's all_reduce section: one `mpirun -n 2` launch per path, the worker those
launches run (`bench_gpu.py --worker allreduce`), and the table rows. numpy is imported inside the
worker only: bench_gpu.py imports this module before common.bootstrap.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

import common

ALLREDUCE_BYTES = 64 * 2**20
PATHS = ("nccl", "mpi", "host")
LAUNCH_TIMEOUT_S = 150


def find_mpirun(given: str | None = None) -> str | None:
    """--mpirun, else $MPIRUN, else the mpirun beside this Python, else mpirun / mpiexec on PATH."""
    if given:
        return given
    if os.environ.get("MPIRUN"):
        return os.environ["MPIRUN"]
    for name in ("mpirun", "mpiexec"):
        beside = os.path.join(os.path.dirname(sys.executable), name)
        if os.access(beside, os.X_OK):
            return beside
    return shutil.which("mpirun") or shutil.which("mpiexec")


def launch_env(path: str) -> dict:
    env = dict(os.environ)
    for name in ("PMI_RANK", "PMI_SIZE", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE",
                 "MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE", "PMIX_RANK", "MINIGT_TRACE"):
        env.pop(name, None)
    env.update(MINIGT_COLLECTIVES=path, MPIEXEC_TIMEOUT=str(LAUNCH_TIMEOUT_S - 20),
               OMPI_ALLOW_RUN_AS_ROOT="1", OMPI_ALLOW_RUN_AS_ROOT_CONFIRM="1")
    env["PYTHONPATH"] = os.pathsep.join(p for p in (common.ROOT, env.get("PYTHONPATH")) if p)
    return env


def bench_allreduce(args, script: str) -> dict:
    """Each path in its own `mpirun -n 2 script --worker allreduce` (script: bench_gpu.py)."""
    mpirun = find_mpirun(args.mpirun)
    if mpirun is None:
        return {path: dict(available=False, reason="no mpirun/mpiexec found") for path in PATHS}
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        for path in PATHS:
            result = os.path.join(tmp, f"{path}.json")
            command = [mpirun, "-n", "2", sys.executable, script,
                       "--worker", "allreduce", "--path", path, "--result", result,
                       "--threads", str(args.threads)] + (["--quick"] if args.quick else [])
            if args.keep_env:
                command.append("--keep-env")
            try:
                done = subprocess.run(command, env=launch_env(path), capture_output=True,
                                      text=True, timeout=LAUNCH_TIMEOUT_S)
            except subprocess.TimeoutExpired:
                results[path] = dict(available=None, reason=f"timed out after {LAUNCH_TIMEOUT_S} s")
                continue
            if done.returncode or not os.path.exists(result):
                tail = (done.stderr or done.stdout).strip().splitlines()[-3:]
                results[path] = dict(available=None,
                                     reason=f"launch failed (exit {done.returncode}): "
                                            + " | ".join(tail))
                continue
            with open(result) as f:
                results[path] = json.load(f)
    return results


def allreduce_worker(args) -> int:
    """Under mpirun -n 2: time all_reduce of 64 MB of GPU memory through args.path."""
    import cupy
    import numpy as np

    from gpu_measure import sync
    from minigt.distributed import collectives, transports, world

    rank, size = world.rank(), world.world_size()
    if size != 2:
        raise SystemExit(f"the all-reduce worker wants 2 ranks, got {size}")
    out = dict(path=args.path, ranks=size, gpus=transports.gpu_count(),
               local_size=world.local_size(), bytes=ALLREDUCE_BYTES)
    reason = None
    if args.path == "nccl" and not transports.nccl_available():
        reason = (f"NCCL is not usable: it needs cupy.cuda.nccl and a GPU per rank "
                  f"({world.local_size()} ranks here share {transports.gpu_count()} GPU(s))")
    elif args.path == "mpi" and not transports.cuda_aware_mpi():
        reason = "the MPI library is not CUDA-aware (detected by MPIX_Query_cuda_support / env)"
    if reason is not None:
        out.update(available=False, reason=reason)
    else:
        n = ALLREDUCE_BYTES // 4
        x = cupy.full(n, rank + 1, dtype=cupy.float32)
        host = np.full(n, rank + 1, dtype=np.float32)
        taken = transports.select_transport(x).name
        if taken != args.path:
            raise SystemExit(f"MINIGT_COLLECTIVES={args.path} but the transport is {taken}")
        comm = world.comm()
        iters = 5 if args.quick else 15

        def timed(array, wait) -> tuple:
            times = []
            for i in range(iters + 3):
                comm.Barrier()
                wait()
                t0 = time.perf_counter()
                result = collectives.all_reduce(array, "sum")
                wait()
                if i >= 3:  # the first calls make communicators and staging buffers
                    times.append(time.perf_counter() - t0)
            return times, result

        gpu_times, gpu_result = timed(x, sync)
        host_times, host_result = timed(host, lambda: None)
        ok = bool(cupy.all(gpu_result == 3.0)) and bool(np.all(host_result == 3.0))
        # a collective lasts as long as its slowest rank
        gpu_times = np.max(comm.allgather(gpu_times), axis=0).tolist()
        host_times = np.max(comm.allgather(host_times), axis=0).tolist()
        out.update(available=True, correct=ok, transport=taken, gpu_seconds=gpu_times,
                   host_seconds=host_times)
    if rank == 0:
        with open(args.result, "w") as f:
            json.dump(out, f)
    return 0


def allreduce_rows(res: dict) -> tuple[list, dict]:
    rows, summary = [], {}
    for path in PATHS:
        r = res.get(path, {})
        if not r.get("available"):
            rows.append([path, "n/a", "n/a", "n/a", r.get("reason", "not run")])
            continue
        gpu = common.stats_of(r["gpu_seconds"])
        host = common.stats_of(r["host_seconds"])
        gbps = r["bytes"] / gpu.median / 1e9
        summary[path] = gpu.median
        rows.append([path, common.fmt_time(gpu, 1e3, 2), f"{gbps:.1f}",
                     common.fmt_time(host, 1e3, 2),
                     ("results correct" if r.get("correct") else "WRONG RESULTS")
                     + f"; {r['local_size']} ranks on {r['gpus']} GPU(s)"])
    return rows, summary
