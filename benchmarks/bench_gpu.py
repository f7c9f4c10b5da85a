"""GPU benchmark: minigt on CuPy against CuPy itself and PyTorch eager, on the same GPU.

Three measurements, each against its reference in the same run:
1. matmul, 4096 x 4096 float32: `a @ b` on minigt tensors vs CuPy's `a @ b` on the same arrays
   vs `torch.matmul`. Each round runs 20 products back to back between two synchronisations of
   the device (so the time is the GPU's, plus whatever Python cannot hide behind it); rounds
   alternate between the three, after a warm-up. TF32 stays off on both sides (CuPy's default
   without CUPY_TF32=1; PyTorch's default allow_tf32=False): the figures are true float32.
   Target: minigt at least 0.95x CuPy raw's TFLOP/s.
2. A training step of examples/train_pixel.py: the brief's model (img 200, seq 4, dim 256,
   heads 4, layers 4, ff 1024; float32, MSE on one-hot targets, SGD lr 0.01) at the brief's
   batch 2 and at batch 32, against the same model in PyTorch eager
   (examples/torch_pixel_transformer.py) on the same GPU, from the same starting weights, on the
   same batches. A step is what train_pixel does: batch to the GPU, forward, loss, zero_grad,
   backward, SGD step, loss.item() and the accuracy count (both read the device, so a step's
   wall time is complete). Steps alternate between the two frameworks in rounds.
   Target: minigt's median step at most 1.3x PyTorch's.
3. all_reduce of 64 MB (float32) between 2 ranks sharing the GPU, through each path
   (MINIGT_COLLECTIVES=nccl, mpi, host), each in its own `mpirun -n 2` launch of this script
   (`--worker allreduce`). A path this machine cannot take is reported as such, with the reason
   (NCCL needs a GPU per rank; `mpi` needs a CUDA-aware MPI). Reference: the same all_reduce of
   host (NumPy) memory through MPI in the same launch.

Without CuPy or without a GPU it prints "no GPU" and exits 0, having measured nothing.

    python benchmarks/bench_gpu.py [--quick] [--no-torch] [--strict] [--json PATH]
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
ROOT = os.path.dirname(HERE)
EXAMPLES = os.path.join(ROOT, "examples")
sys.path.insert(0, HERE)
import common  # noqa: E402

MATMUL_N = 4096
MODEL = dict(img=200, seq=4, dim=256, heads=4, layers=4, ff=1024)
TRAIN_CONFIGS = {  # name: (batch, samples); the brief's run is 20 samples in batches of 2
    "brief": (2, 20),
    "batch32": (32, 64),
}
SEED, LR = 0, 0.01
ALLREDUCE_BYTES = 64 * 2**20
PATHS = ("nccl", "mpi", "host")
TARGETS = dict(matmul=0.95, train=1.3)
LAUNCH_TIMEOUT_S = 150


def build_parser():
    parser = common.base_parser(__doc__)
    parser.add_argument("--json", help="also write every figure to this JSON file")
    parser.add_argument("--skip", action="append", default=[],
                        choices=["matmul", "train", "allreduce"], help="leave a section out")
    parser.add_argument("--matmul-n", type=int, default=MATMUL_N,
                        help=f"matrix side (default {MATMUL_N}; smaller only for smoke tests)")
    parser.add_argument("--train-configs", default=",".join(TRAIN_CONFIGS),
                        help=f"training configurations to run (default: all of "
                             f"{','.join(TRAIN_CONFIGS)})")
    parser.add_argument("--mpirun", default=None,
                        help="the MPI launcher (default: $MPIRUN, beside this Python, or on PATH)")
    parser.add_argument("--profile", action="store_true", help="(other benchmarks'; ignored here)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="(other benchmarks'; ignored here)")
    hidden = argparse.SUPPRESS  # the mpirun worker
    parser.add_argument("--worker", choices=["allreduce"], help=hidden)
    parser.add_argument("--path", choices=PATHS, help=hidden)
    parser.add_argument("--result", help=hidden)
    return parser


if __name__ == "__main__":
    ARGS = common.bootstrap(build_parser())  # may re-exec: before numpy is imported

import numpy as np  # noqa: E402

sys.path.insert(0, EXAMPLES)


# ---- is there a GPU? -----------------------------------------------------------------------------
def gpu_status() -> tuple[bool, str]:
    """(usable, what): whether minigt sees a GPU through CuPy, and a line saying why (not)."""
    try:
        import cupy
    except ImportError as error:
        return False, f"CuPy is not installed ({error})"
    import minigt

    if not minigt.cuda_available():
        try:
            count = cupy.cuda.runtime.getDeviceCount()
            why = f"CuPy {cupy.__version__} sees {count} device(s)"
        except Exception as error:  # no driver, no device
            why = f"CuPy {cupy.__version__}: {type(error).__name__}: {error}"
        return False, why
    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.runtime.getDevice())
    name = props["name"].decode() if isinstance(props["name"], bytes) else props["name"]
    return True, (f"{name}, {props['totalGlobalMem'] / 2**30:.0f} GiB | CuPy {cupy.__version__}, "
                  f"CUDA runtime {cupy.cuda.runtime.runtimeGetVersion()}, driver "
                  f"{cupy.cuda.runtime.driverGetVersion()}")


def sync() -> None:
    import cupy

    cupy.cuda.get_current_stream().synchronize()


# ---- 1. matmul -----------------------------------------------------------------------------------
def bench_matmul(args, torch) -> dict:
    import cupy

    import minigt as gt

    n = args.matmul_n
    rng = np.random.default_rng(SEED)
    a_host = rng.standard_normal((n, n), dtype=np.float32)
    b_host = rng.standard_normal((n, n), dtype=np.float32)
    a, b = cupy.asarray(a_host), cupy.asarray(b_host)
    ta, tb = gt.tensor(a, device="cuda"), gt.tensor(b, device="cuda")
    calls = {"minigt": lambda: ta @ tb, "CuPy raw": lambda: a @ b}
    syncs = {"minigt": sync, "CuPy raw": sync}
    if torch is not None and torch.cuda.is_available():
        xa, xb = torch.from_numpy(a_host).cuda(), torch.from_numpy(b_host).cuda()
        calls["PyTorch"] = lambda: torch.matmul(xa, xb)
        syncs["PyTorch"] = torch.cuda.synchronize
    # the three agree (a check that each computes the product, not a precision test)
    reference = cupy.asnumpy(a[:64] @ b[:, :64])
    for name, fn in calls.items():
        out = fn()
        part = out.data[:64, :64] if name == "minigt" else out[:64, :64]
        got = part.cpu().numpy() if name == "PyTorch" else cupy.asnumpy(part)
        if not np.allclose(got, reference, rtol=1e-3, atol=1e-2):
            raise RuntimeError(f"matmul: {name}'s product differs from CuPy's")
    per_round, rounds = (10, 3) if args.quick else (20, 7)
    samples = {name: [] for name in calls}
    names = list(calls)
    for _ in range(2):  # warm-up: cuBLAS handles, heuristics, memory pools
        for name in names:
            calls[name]()
            syncs[name]()
    for r in range(rounds):
        for name in names[r % len(names):] + names[:r % len(names)]:
            fn, wait = calls[name], syncs[name]
            wait()
            t0 = time.perf_counter()
            for _ in range(per_round):
                out = fn()
            wait()
            samples[name].append((time.perf_counter() - t0) / per_round)
            del out
    flops = 2.0 * n**3
    out = {}
    for name, times in samples.items():
        stats = common.stats_of(times)
        out[name] = dict(seconds=stats.median, spread=stats.spread,
                         tflops=flops / stats.median / 1e12)
    return out


def matmul_rows(res: dict) -> list:
    ours, cupy_raw = res["minigt"], res["CuPy raw"]
    ratio = ours["tflops"] / cupy_raw["tflops"]
    rows = [[name, f"{r['tflops']:.1f}", f"{r['seconds'] * 1e3:.3f} ±{r['spread'] * 100:.0f}%",
             f"{r['tflops'] / cupy_raw['tflops']:.3f}×"] for name, r in res.items()]
    return rows, ratio


# ---- 2. a training step --------------------------------------------------------------------------
class MinigtRun:
    """train_pixel's model and step, on the GPU."""

    def __init__(self, batch: int, images, labels):
        import minigt as gt
        import train_pixel
        from pixel_transformer import PixelTransformer

        self.gt = gt
        gt.manual_seed(SEED)
        self.model = PixelTransformer(**MODEL).to("cuda")
        self.optimizer = gt.optim.SGD(self.model.parameters(), lr=LR)
        argv = [f"--{k}={v}" for k, v in MODEL.items()] + [
            f"--batch={batch}", "--loss=mse", "--optim=sgd", f"--lr={LR}", "--dtype=float32",
            "--device=cuda"]
        self.args = train_pixel.parse_args(argv)
        self.train_pixel = train_pixel
        self.images, self.labels, self.batch = images, labels, batch
        self.losses, self.correct = [], 0

    def state(self) -> dict:
        return {name: value.numpy() for name, value in self.model.state_dict().items()}

    def step(self, k: int) -> None:
        start = (k * self.batch) % len(self.labels)
        idx = np.arange(start, start + self.batch) % len(self.labels)
        x, y = self.train_pixel.batch_tensors(self.images[idx], self.labels[idx], self.args)
        logits = self.model(x)
        loss = self.train_pixel.loss_fn(self.args, logits, y)
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.losses.append(loss.item())
        self.correct += int((logits.argmax(-1) == y).sum().item())


class TorchRun:
    """The same model and step in PyTorch eager on the same GPU."""

    def __init__(self, torch, batch: int, images, labels, state: dict):
        from torch_pixel_transformer import PixelTransformer

        self.torch, self.F = torch, torch.nn.functional
        torch.manual_seed(SEED)
        self.model = PixelTransformer(**MODEL)
        self.model.load_state_dict({k: torch.from_numpy(v.copy()) for k, v in state.items()})
        self.model.to("cuda")
        self.optimizer = torch.optim.SGD(self.model.parameters(), lr=LR)
        self.images, self.labels, self.batch = images, labels, batch
        self.losses, self.correct = [], 0

    def step(self, k: int) -> None:
        torch, F = self.torch, self.F
        start = (k * self.batch) % len(self.labels)
        idx = np.arange(start, start + self.batch) % len(self.labels)
        x = torch.from_numpy(self.images[idx]).to("cuda")
        y = torch.from_numpy(self.labels[idx]).to("cuda")
        logits = self.model(x)
        loss = F.mse_loss(logits, F.one_hot(y, 10).to(logits.dtype))
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        self.losses.append(loss.item())
        self.correct += int((logits.argmax(-1) == y).sum().item())


def bench_train(args, torch) -> dict:
    from pixel_data import synthetic

    results = {}
    for config in args.train_configs.split(","):
        batch, samples = TRAIN_CONFIGS[config]
        images, labels = synthetic(samples, MODEL["seq"], MODEL["img"], SEED)
        runs = {"minigt": MinigtRun(batch, images, labels)}
        if torch is not None and torch.cuda.is_available():
            runs["PyTorch"] = TorchRun(torch, batch, images, labels, runs["minigt"].state())
        warmup = 3 if args.quick else 5
        rounds, per_round = (3, 3) if args.quick else ((6, 5) if batch <= 8 else (4, 4))
        counter = {name: 0 for name in runs}
        compile_s = {}
        for name, run in runs.items():  # the first steps compile CuPy's kernels: not timed
            t0 = time.perf_counter()
            for _ in range(warmup):
                run.step(counter[name])
                counter[name] += 1
            compile_s[name] = time.perf_counter() - t0
        samples_s = {name: [] for name in runs}
        names = list(runs)
        for r in range(rounds):
            for name in names[r % len(names):] + names[:r % len(names)]:
                run = runs[name]
                for _ in range(per_round):
                    t0 = time.perf_counter()
                    run.step(counter[name])  # ends in loss.item(): the device has finished
                    samples_s[name].append(time.perf_counter() - t0)
                    counter[name] += 1
        entry = {"batch": batch, "warmup_s": compile_s}
        for name, times in samples_s.items():
            stats = common.stats_of(times)
            entry[name] = dict(seconds=stats.median, spread=stats.spread, steps=len(times),
                               samples_per_s=batch / stats.median)
        if "PyTorch" in runs:
            a = np.asarray(runs["minigt"].losses)
            b = np.asarray(runs["PyTorch"].losses)
            k = min(len(a), len(b), 3)
            diff = np.abs(a[:k] - b[:k]) / np.abs(b[:k])
            entry["loss_rel_diff_first_steps"] = float(np.max(diff))
        results[config] = entry
        del runs
    return results


# ---- 3. all_reduce through each path -------------------------------------------------------------
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
    env["PYTHONPATH"] = os.pathsep.join(p for p in (ROOT, env.get("PYTHONPATH")) if p)
    return env


def bench_allreduce(args) -> dict:
    mpirun = find_mpirun(args.mpirun)
    if mpirun is None:
        return {path: dict(available=False, reason="no mpirun/mpiexec found") for path in PATHS}
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_gpu_") as tmp:
        for path in PATHS:
            result = os.path.join(tmp, f"{path}.json")
            command = [mpirun, "-n", "2", sys.executable, os.path.abspath(__file__),
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


# ---- the report ----------------------------------------------------------------------------------
def main(args) -> int:
    started = time.perf_counter()
    ok, what = gpu_status()
    if not ok:
        print(f"no GPU: {what}. bench_gpu measured nothing.", flush=True)
        if args.json:
            with open(args.json, "w") as f:
                json.dump({"gpu": None, "reason": what}, f)
        return 0
    torch = common.load_torch(args)
    try:
        pools = common.pin_threads(args.threads, torch)
    except Exception as error:  # threadpoolctl missing: the GPU figures do not depend on it
        pools = []
        print(f"    (threads not pinned: {error})")
    import cupy

    import minigt

    print(common.header(args, torch, pools))
    torch_line = "not used"
    if torch is not None:
        torch_line = (f"{torch.__version__}, CUDA {torch.version.cuda}, "
                      f"cuda available {torch.cuda.is_available()}, matmul allow_tf32 "
                      f"{torch.backends.cuda.matmul.allow_tf32}")
    print(f"    GPU: {what}\n    minigt {minigt.__version__} | PyTorch {torch_line} | "
          f"CUPY_TF32={os.environ.get('CUPY_TF32', '0')} | CuPy memory pool: "
          f"{type(cupy.get_default_memory_pool()).__name__}", flush=True)
    report: dict = {"gpu": what}
    fake = getattr(cupy, "IS_FAKE", False)
    if fake:
        print("    FAKE GPU: this `cupy` is tests/gpu/fake_cupy.py's NumPy stand-in; every figure "
              "below is NumPy on the CPU, not a GPU measurement.")
    missed = False

    summary_rows = []
    if "matmul" not in args.skip:
        res = bench_matmul(args, torch)
        report["matmul"] = res
        rows, ratio = matmul_rows(res)
        n = args.matmul_n
        common.print_table(f"matmul {n}x{n} float32 (median of rounds)", rows,
                           ["", "TFLOP/s", "ms per product", "vs CuPy raw"])
        verdict = "PASS" if ratio >= TARGETS["matmul"] else "MISS"
        missed |= verdict == "MISS"
        summary_rows.append([f"matmul {n}² f32, TFLOP/s", f"{res['minigt']['tflops']:.1f}",
                             f"CuPy {res['CuPy raw']['tflops']:.1f}", f"{ratio:.3f}×",
                             f"≥ {TARGETS['matmul']}×", verdict])
        if "PyTorch" in res:
            summary_rows.append(["  same, vs PyTorch", f"{res['minigt']['tflops']:.1f}",
                                 f"PyTorch {res['PyTorch']['tflops']:.1f}",
                                 f"{res['minigt']['tflops'] / res['PyTorch']['tflops']:.3f}×",
                                 "(info)", "—"])

    if "train" not in args.skip:
        res = bench_train(args, torch)
        report["train"] = res
        rows = []
        for config, entry in res.items():
            for name in ("minigt", "PyTorch"):
                if name in entry:
                    e = entry[name]
                    rows.append([config, entry["batch"], name,
                                 f"{e['seconds'] * 1e3:.2f} ±{e['spread'] * 100:.0f}%",
                                 f"{e['samples_per_s']:.1f}", e["steps"],
                                 f"{entry['warmup_s'][name]:.1f}"])
            theirs = entry.get("PyTorch")
            ratio = entry["minigt"]["seconds"] / theirs["seconds"] if theirs else None
            verdict = common.verdict(ratio, TARGETS["train"])
            missed |= verdict == "MISS"
            summary_rows.append([f"train step, {config} (batch {entry['batch']}), ms",
                                 f"{entry['minigt']['seconds'] * 1e3:.2f}",
                                 f"PyTorch {theirs['seconds'] * 1e3:.2f}" if theirs else "n/a",
                                 common.fmt_ratio(ratio), f"≤ {TARGETS['train']}×", verdict])
        note = ("Median wall time of a whole step (each ends reading the loss and the accuracy "
                "count, so the GPU has finished). Warm-up: the untimed first steps, where CuPy "
                "compiles its kernels (cached on disk afterwards).")
        diffs = [f"{c}: {e['loss_rel_diff_first_steps']:.1e}" for c, e in res.items()
                 if "loss_rel_diff_first_steps" in e]
        if diffs:
            note += (" Same weights and batches: first-step losses agree to a relative "
                     + ", ".join(diffs) + ".")
        common.print_table("Training step, train_pixel's model: minigt vs PyTorch eager, same GPU",
                           rows, ["config", "batch", "framework", "median step, ms",
                                  "samples/s", "timed steps", "warm-up s"], note=note)

    if "allreduce" not in args.skip:
        res = bench_allreduce(args)
        report["allreduce"] = res
        rows, summary = allreduce_rows(res)
        common.print_table(f"all_reduce of {ALLREDUCE_BYTES // 2**20} MB float32, 2 ranks "
                           f"sharing the GPU, each path forced (MINIGT_COLLECTIVES)", rows,
                           ["path", "median ms (GPU memory)", "GB/s",
                            "ref: host memory via MPI, ms", "note"])
        for path in PATHS:
            summary_rows.append([f"all_reduce 64 MB, 2 ranks, path {path}, ms",
                                 f"{summary[path] * 1e3:.2f}" if path in summary else "n/a",
                                 "—", "—", "—", "measured" if path in summary else "unavailable"])

    common.print_table("GPU summary" + (" (FAKE GPU: NumPy on the CPU)" if fake else ""),
                       summary_rows,
                       ["measure", "minigt", "reference", "ratio", "target", "result"],
                       note=f"GPU: {what}")
    print(f"\nbench_gpu: {time.perf_counter() - started:.0f} s in all", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=str)
    return 2 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(allreduce_worker(ARGS) if ARGS.worker else main(ARGS))
