"""Distributed benchmark: a data-parallel training step of the Pixel Transformer over MPI.

The brief's model (img 200, seq 4, dim 256, heads 4, layers 4, ff 1024; float32, SGD lr 0.01,
MSE on one-hot targets) trains with a fixed global batch of 16, sharded over the ranks with
`minigt.distributed.shard(x, 0)`, exactly as examples/train_pixel.py does a step (its
`batch_tensors` and `loss_fn`; batch, forward, loss, zero_grad, backward, SGD step, loss.item()
and the accuracy count). This script is a driver: it needs no MPI itself and launches

    mpirun -n N python benchmarks/bench_distributed.py --worker train ...

whose rank 0 writes JSON that the driver reads back. Every process gets the driver's cleaned
environment (common.bootstrap: one BLAS/OpenMP thread per rank by default).

Measured, and the reference measured in the same run:
1. Step time at -n 1 vs -n 2 (median of the timed steps of all launches, rank 0's clock).
   Target: -n 2 at least 1.7x faster. Also -n 1 at half the global batch: one -n 2 rank's work
   without any communication, the best -n 2 could do. The three configurations are launched in
   an order that rotates every repeat. Each phase of the step (batch, forward, backward and
   within it gradsync.flush, optimizer, .item()) is timed in wall-clock and in the rank's CPU
   time: on a shared machine the wall clock also counts the time other processes held the core.
2. Collectives per step: minigt.distributed.collectives.all_reduce / all_gather / reduce_scatter
   / broadcast / exchange_sizes are wrapped to count calls and bytes and time them. Before each
   call the wrapper waits at an MPI barrier (timed apart, as "wait"), so the collective's time is
   not inflated by the other rank arriving late. Reference: a raw mpi4py
   `MPI.COMM_WORLD.Allreduce` of preallocated NumPy buffers of exactly the sizes and dtypes
   minigt all-reduced in a step, timed in the same processes after training, in rounds that
   alternate with the same calls through minigt (barrier before each). Target: minigt's time at
   most 1.1x raw, and at most 4 all-reduce calls per step.
3. Start-up: from launching `mpirun -n 8 python -c STARTUP_PROGRAM`, which runs
   examples/train_pixel.py --epochs 1 unchanged and notes the clock at each stage, to its first
   step beginning, on the slowest rank; median of 3 launches (and the same at -n 2, a core per
   rank here). References in the same run: `mpirun -n 8` of a Python that only imports
   mpi4py.MPI (the launcher's floor), `python -c "import minigt"` alone, and the CPU time the
   ranks spent, divided by the cores (the floor when ranks outnumber cores).
   Target: under 1.8 s (GT's reported start-up).

With 2 ranks on a 2-core machine the speed-up target is tight and the numbers depend on what else
runs: the header prints the load average. `--profile` adds a cProfile of rank 0's timed steps at
-n 2 (a separate launch).

    .venv/bin/python benchmarks/bench_distributed.py [--threads N] [--quick] [--profile] [--strict]
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402
from dist_report import GLOBAL_BATCH, STARTUP_RANKS, report_startup, report_training  # noqa: E402

LAUNCH_TIMEOUT_S = 300


def build_parser():
    parser = common.base_parser(__doc__)
    parser.add_argument("--profile", action="store_true",
                        help="add a cProfile of rank 0's timed steps at -n 2 (a separate launch)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="launches of each training configuration, in rotating order "
                             "(default 3; --quick 1)")
    parser.add_argument("--mpirun", default=None,
                        help="the MPI launcher (default: mpirun next to this Python, else on PATH)")
    hidden = argparse.SUPPRESS  # what the driver tells its workers: not in --help
    parser.add_argument("--worker", choices=["train"], help=hidden)
    parser.add_argument("--out", help=hidden)
    parser.add_argument("--steps", type=int, default=8, help=hidden)
    parser.add_argument("--warmup", type=int, default=2, help=hidden)
    parser.add_argument("--rounds", type=int, default=15, help=hidden)
    parser.add_argument("--batch", type=int, default=GLOBAL_BATCH, help=hidden)
    parser.add_argument("--profile-rank0", action="store_true", help=hidden)
    return parser


if __name__ == "__main__":
    ARGS = common.bootstrap(build_parser())  # may re-exec: before numpy is imported

import dist_worker  # noqa: E402  (what --worker runs; it imports numpy: after bootstrap)


# ---- launching -------------------------------------------------------------------------------
def mpirun_path(args) -> str:
    if args.mpirun:
        return args.mpirun
    here = os.path.join(os.path.dirname(sys.executable), "mpirun")
    found = here if os.access(here, os.X_OK) else shutil.which("mpirun")
    if not found:
        raise SystemExit("no mpirun found: pass --mpirun PATH")
    return found


def env_for_children() -> dict:
    env = dict(os.environ)
    env.setdefault("MPIEXEC_TIMEOUT", str(LAUNCH_TIMEOUT_S))
    return env


def run_command(cmd: list, what: str) -> float:
    """Run cmd to completion; returns the launch time (time.time()). Raises with its output."""
    launched = time.time()
    proc = subprocess.run(cmd, env=env_for_children(), stdout=subprocess.PIPE,
                          stderr=subprocess.STDOUT, text=True, timeout=LAUNCH_TIMEOUT_S)
    if proc.returncode:
        tail = "\n".join(proc.stdout.splitlines()[-30:])
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{tail}")
    return launched


def launch_worker(args, n: int, mode: str, extra=()) -> tuple[float, dict, float]:
    """mpirun -n n this script --worker mode; returns (launch time, rank 0's JSON, wall s)."""
    with tempfile.TemporaryDirectory(prefix="bench_dist_") as tmp:
        out = os.path.join(tmp, "result.json")
        cmd = [mpirun_path(args), "-n", str(n), sys.executable, os.path.abspath(__file__),
               "--worker", mode, "--out", out, "--threads", str(args.threads), *extra]
        if args.keep_env:
            cmd.append("--keep-env")
        t0 = time.perf_counter()
        launched = run_command(cmd, f"mpirun -n {n} --worker {mode}")
        wall = time.perf_counter() - t0
        with open(out) as f:
            return launched, json.load(f), wall


def launch_startup(args, n: int) -> dict:
    """mpirun -n n python -c STARTUP_PROGRAM; every rank's marks and the launch time."""
    with tempfile.TemporaryDirectory(prefix="bench_dist_") as tmp:
        out = os.path.join(tmp, "result.json")
        cmd = [mpirun_path(args), "-n", str(n), sys.executable, "-c", dist_worker.STARTUP_PROGRAM,
               common.EXAMPLES, out]
        launched = run_command(cmd, f"mpirun -n {n} train_pixel.py start-up")
        with open(out) as f:
            return {"launched": launched, **json.load(f)}


def progress(text: str) -> None:
    print(f"[bench_distributed] {text}", file=sys.stderr, flush=True)


# ---- measurements ----------------------------------------------------------------------------
# (name, ranks, global batch): -n 1 and -n 2 at the global batch, and -n 1 at half of it (the
# work of one rank of -n 2 without any communication: the best -n 2 could do)
CONFIGS = (("n1", 1, GLOBAL_BATCH), ("n2", 2, GLOBAL_BATCH), ("half", 1, GLOBAL_BATCH // 2))


def measure_training(args, repeats: int, steps: int, warmup: int) -> dict:
    """{config: [worker JSON, ...]}, launches in an order that rotates every repeat."""
    runs = {name: [] for name, _, _ in CONFIGS}
    for r in range(repeats):
        for name, n, batch in CONFIGS[r % 3:] + CONFIGS[:r % 3]:
            progress(f"training {name}: -n {n}, global batch {batch}, launch {r + 1}/{repeats}")
            extra = ["--steps", str(steps), "--warmup", str(warmup), "--batch", str(batch),
                     "--rounds", str(5 if args.quick else 15)]
            _, result, wall = launch_worker(args, n, "train", extra)
            result["wall"] = wall
            runs[name].append(result)
    return runs


def measure_startup(args, launches: int) -> dict:
    """Start-up launches of train_pixel under mpirun -n 8, alternating with the references."""
    python = sys.executable
    mpirun = mpirun_path(args)
    out = {"worker": [], "worker_2": [], "mpi_floor": [], "python": [], "import_minigt": []}
    floor_cmd = [mpirun, "-n", str(STARTUP_RANKS), python, "-c", "from mpi4py import MPI"]
    for r in range(launches):
        progress(f"start-up -n {STARTUP_RANKS}, launch {r + 1}/{launches}")
        out["worker"].append(launch_startup(args, STARTUP_RANKS))
        out["worker_2"].append(launch_startup(args, 2))
        t0 = time.perf_counter()
        run_command(floor_cmd, "mpirun floor")
        out["mpi_floor"].append(time.perf_counter() - t0)
        for key, code in (("python", "pass"), ("import_minigt", "import minigt")):
            t0 = time.perf_counter()
            run_command([python, "-c", code], f"python -c {code!r}")
            out[key].append(time.perf_counter() - t0)
    return out


def main(args) -> int:
    if args.worker == "train":
        dist_worker.worker_train(args)
        return 0
    import minigt as gt

    pools = common.pin_threads(args.threads)
    print(f"## bench_distributed: minigt {gt.__version__} data-parallel step over MPI\n")
    print(common.header(args, None, pools))
    mpirun = mpirun_path(args)
    version = subprocess.run([mpirun, "--version"], capture_output=True, text=True).stdout
    first_line = next((line.strip() for line in version.splitlines() if "Version" in line),
                      version.strip().splitlines()[0] if version.strip() else "?")
    print(f"    mpirun: {mpirun} ({' '.join(first_line.split())})")
    sys.stdout.flush()

    started = time.perf_counter()
    repeats = args.repeats or (1 if args.quick else 3)
    steps, warmup = (4, 1) if args.quick else (8, 2)
    runs = measure_training(args, repeats, steps, warmup)
    startup = measure_startup(args, 1 if args.quick else 3)
    profile = None
    if args.profile:
        progress("profile launch -n 2")
        _, profile, _ = launch_worker(args, 2, "train", ["--steps", str(steps), "--warmup",
                                                         str(warmup), "--rounds", "1",
                                                         "--profile-rank0"])

    results = report_training(runs, steps, warmup)
    results.append(report_startup(startup))
    if profile is not None:
        print(f"\n### cProfile: rank 0 of -n 2, {steps} timed steps (top 30 by own time)\n\n```")
        print(profile["profile"].strip())
        print("```")
    missed = results.count("MISS")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    print(f"\n{len(results) - missed} PASS, {missed} MISS "
          f"({time.perf_counter() - started:.0f} s; load average (1 min) at end: {load:.2f})")
    return 2 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
