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
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
EXAMPLES = os.path.join(ROOT, "examples")
sys.path.insert(0, HERE)
import common  # noqa: E402

MODEL_ARGV = ["--img", "200", "--seq", "4", "--dim", "256", "--heads", "4", "--layers", "4",
              "--ff", "1024", "--loss", "mse", "--optim", "sgd", "--lr", "0.01",
              "--dtype", "float32", "--seed", "0"]
GLOBAL_BATCH = 16
BATCHES = 2            # distinct global batches, cycled (2 x 16 samples, 20 MB of images)
STARTUP_RANKS = 8
STARTUP_TARGET_S = 1.8
SPEEDUP_TARGET = 1.7
RATIO_TARGET = 1.1
CALLS_TARGET = 4
LAUNCH_TIMEOUT_S = 300
WRAPPED = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "exchange_sizes", "barrier")


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

import numpy as np  # noqa: E402


# =============================================================================================
# Workers: run under mpirun; rank 0 writes JSON to --out
# =============================================================================================
class CollectiveRecorder:
    """Counts, sizes and times every call into minigt.distributed.collectives.

    The module's functions are replaced by wrappers; minigt calls them as `collectives.NAME(...)`,
    so the wrappers see every call. Each wrapper first waits at a barrier of the call's group
    (timed as `wait`), then times the call itself.
    """

    def __init__(self, collectives, world, align: bool = True):
        self.collectives, self.world, self.align = collectives, world, align
        self.original = {name: getattr(collectives, name) for name in WRAPPED}
        self.calls: list = []
        self.phase = "other"

    def install(self) -> None:
        for name in WRAPPED:
            setattr(self.collectives, name, self._wrap(name, self.original[name]))

    def _wrap(self, name, fn):
        clock, cpu_clock = time.perf_counter, time.process_time

        def wrapper(*args, **kwargs):
            group = kwargs.get("group")
            group = self.world.world_group() if group is None else group
            wait = cpu_wait = 0.0
            if self.align and group.size > 1:
                t0, c0 = clock(), cpu_clock()
                group.comm.Barrier()
                wait, cpu_wait = clock() - t0, cpu_clock() - c0
            t0, c0 = clock(), cpu_clock()
            out = fn(*args, **kwargs)
            seconds, cpu = clock() - t0, cpu_clock() - c0
            array = args[0] if args and hasattr(args[0], "nbytes") else None
            if name == "all_gather":
                nbytes = out.nbytes
            elif name == "exchange_sizes":
                nbytes = 8 * group.size
            else:
                nbytes = array.nbytes if array is not None else 0
            op = kwargs.get("op", args[1] if name == "all_reduce" and len(args) > 1 else
                            "sum" if name in ("all_reduce", "reduce_scatter") else "")
            self.calls.append({
                "name": name, "phase": self.phase, "bytes": int(nbytes), "op": op,
                "dtype": str(array.dtype) if array is not None else "",
                "shape": list(array.shape) if array is not None else [],
                "group_size": group.size, "seconds": seconds, "wait": wait, "cpu": cpu,
                "cpu_wait": cpu_wait})
            return out

        return wrapper


def worker_train(args) -> None:
    """Warm-up and timed training steps, then the raw-Allreduce replay; rank 0 writes JSON."""
    sys.path.insert(0, EXAMPLES)
    import minigt as gt
    import minigt.distributed as dist
    import train_pixel as tp
    from minigt import autograd
    from minigt.distributed import collectives, gradsync, world
    from pixel_transformer import PixelTransformer

    common.pin_threads(args.threads)
    batch = args.batch  # global
    targs = tp.parse_args([*MODEL_ARGV, "--batch", str(batch), "--n", str(batch * BATCHES)])
    gt.manual_seed(targs.seed)
    dist.init_parallel(tensor_parallel=1)
    size, rank = dist.world_size(), dist.rank()
    (images, labels), _ = tp.load_data(targs)
    model = PixelTransformer(targs.img, targs.seq, targs.dim, targs.heads, targs.layers, targs.ff)
    model.to(np.dtype(targs.dtype))
    optimizer = gt.optim.SGD(model.parameters(), lr=targs.lr)
    n_params = sum(p.numel() for p in model.parameters())

    recorder = CollectiveRecorder(collectives, world)
    recorder.install()
    flush_seconds = [0.0, 0.0]  # wall, CPU
    original_flush = gradsync.flush

    def timed_flush():
        t0, c0 = time.perf_counter(), time.process_time()
        original_flush()
        flush_seconds[0] += time.perf_counter() - t0
        flush_seconds[1] += time.process_time() - c0

    hooks = autograd.post_backward_hooks
    hooks[hooks.index(original_flush)] = timed_flush

    def clock():
        return time.perf_counter(), time.process_time()

    def step(i: int) -> dict:
        """One step as train_pixel.train() does it, with the clocks (wall, CPU) noted between
        its parts."""
        recorder.calls.clear()
        flush_seconds[:] = [0.0, 0.0]
        idx = np.arange(batch) + batch * (i % BATCHES)
        marks = [clock()]
        recorder.phase = "data"
        x, y = tp.batch_tensors(images[idx], labels[idx], targs)
        marks.append(clock())
        recorder.phase = "forward"
        logits = model(x)
        loss = tp.loss_fn(targs, logits, y)
        marks.append(clock())
        recorder.phase = "zero_grad"
        optimizer.zero_grad()
        marks.append(clock())
        recorder.phase = "backward"
        loss.backward()
        marks.append(clock())
        recorder.phase = "optimizer"
        optimizer.step()
        marks.append(clock())
        recorder.phase = "loss/acc"
        loss_value = loss.item()
        correct = int((logits.argmax(-1) == y).sum().item())
        marks.append(clock())
        recorder.phase = "other"
        out = {"loss": loss_value, "correct": correct, "flush": flush_seconds[0],
               "cpu:flush": flush_seconds[1], "calls": [dict(c) for c in recorder.calls]}
        names = ("data", "forward", "zero_grad", "backward", "optimizer", "loss/acc")
        for name, (w0, c0), (w1, c1) in zip(names, marks, marks[1:]):
            out[name], out["cpu:" + name] = w1 - w0, c1 - c0
        out["total"], out["cpu:total"] = marks[-1][0] - marks[0][0], marks[-1][1] - marks[0][1]
        return out

    for i in range(args.warmup):
        step(i)
    profiler = None
    if args.profile_rank0 and rank == 0:
        import cProfile

        profiler = cProfile.Profile()
        profiler.enable()
    steps = [step(args.warmup + i) for i in range(args.steps)]
    if profiler is not None:
        profiler.disable()

    result = {"size": size, "params": n_params, "steps": steps}
    if size > 1:
        result["replay"] = replay(steps[-1]["calls"], recorder.original["all_reduce"],
                                  world.comm(), args.rounds)
    if profiler is not None:
        import io
        import pstats

        text = io.StringIO()
        stats = pstats.Stats(profiler, stream=text).strip_dirs().sort_stats("tottime")
        stats.print_stats(30)
        result["profile"] = text.getvalue()
    if rank == 0:
        with open(args.out, "w") as f:
            json.dump(result, f)


def replay(calls: list, minigt_all_reduce, minigt_comm, rounds: int) -> dict:
    """The step's all-reduces again, through minigt and as raw MPI.COMM_WORLD.Allreduce of
    preallocated buffers of the same sizes, in alternating rounds (barrier before each call)."""
    from mpi4py import MPI

    raw_comm = MPI.COMM_WORLD
    ops = {"sum": MPI.SUM, "mean": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN}
    plan = [c for c in calls if c["name"] == "all_reduce"]
    arrays = [np.ones(c["shape"], c["dtype"]) for c in plan]
    sends = [a.copy() for a in arrays]
    recvs = [np.empty_like(a) for a in arrays]
    clock = time.perf_counter

    def via_minigt():
        out = []
        for a, c in zip(arrays, plan):
            minigt_comm.Barrier()
            t0 = clock()
            minigt_all_reduce(a, c["op"])
            out.append(clock() - t0)
        return out

    def via_raw():
        out = []
        for s, r, c in zip(sends, recvs, plan):
            raw_comm.Barrier()
            t0 = clock()
            raw_comm.Allreduce(s, r, op=ops[c["op"]])
            out.append(clock() - t0)
        return out

    def via_raw_fresh():  # as raw, but a new receive buffer each call, as minigt makes
        out = []
        for s, c in zip(sends, plan):
            raw_comm.Barrier()
            t0 = clock()
            raw_comm.Allreduce(s, np.empty_like(s), op=ops[c["op"]])
            out.append(clock() - t0)
        return out

    variants = (("minigt", via_minigt), ("raw", via_raw), ("raw_fresh", via_raw_fresh))
    per_call = {name: [] for name, _ in variants}
    for _, fn in variants:  # warm-up: first touches of the buffers
        fn()
    for r in range(rounds):
        for name, fn in variants[r % 3:] + variants[:r % 3]:
            per_call[name].append(fn())
    return {"plan": [{k: c[k] for k in ("name", "op", "dtype", "shape", "bytes")} for c in plan],
            **per_call}


# The start-up run: examples/train_pixel.py --epochs 1, unchanged, in a `python -c` of its own so
# that nothing is imported before it that it does not import itself. It notes the clock at each
# stage of its start (wrapping the functions train() calls) and stops where the first step begins
# (its first batch_tensors call); rank 0 writes every rank's marks to argv[2] as JSON.
STARTUP_PROGRAM = """
import time
marks = {"start": time.time()}
import os, sys
import numpy
marks["numpy"] = time.time()
sys.path.insert(0, sys.argv[1])
import train_pixel as tp
marks["import"] = time.time()

def noting(name, fn):
    def wrapper(*a, **kw):
        out = fn(*a, **kw)
        marks.setdefault(name, time.time())
        return out
    return wrapper

class FirstStep(Exception):
    pass

def first_batch(*a, **kw):
    marks["first_step"] = time.time()
    cpu = os.times()
    marks["cpu_seconds"] = cpu.user + cpu.system
    raise FirstStep

dist = tp.dist
init_parallel = dist.init_parallel
dist.init_parallel = noting("mpi", init_parallel)
tp.load_data = noting("data", tp.load_data)
tp.PixelTransformer = noting("model", tp.PixelTransformer)
tp.batch_tensors = first_batch
try:
    tp.main(["--epochs", "1"])
except FirstStep:
    pass
dist.init_parallel = init_parallel
from minigt.distributed import world
every = world.comm().gather(marks, root=0) if dist.world_size() > 1 else [marks]
if dist.rank() == 0:
    import json
    with open(sys.argv[2], "w") as f:
        json.dump({"size": dist.world_size(), "ranks": every}, f)
"""


# =============================================================================================
# Driver
# =============================================================================================
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
        cmd = [mpirun_path(args), "-n", str(n), sys.executable, "-c", STARTUP_PROGRAM, EXAMPLES,
               out]
        launched = run_command(cmd, f"mpirun -n {n} train_pixel.py start-up")
        with open(out) as f:
            return {"launched": launched, **json.load(f)}


def progress(text: str) -> None:
    print(f"[bench_distributed] {text}", file=sys.stderr, flush=True)


def ms(seconds) -> str:
    return "n/a" if seconds is None else f"{seconds * 1e3:.1f}"


def med(values) -> float | None:
    values = list(values)
    return statistics.median(values) if values else None


def fmt_stats(samples, scale=1e3, digits=1) -> str:
    return common.fmt_time(common.stats_of(samples), scale, digits) if samples else "n/a"


def at_least(value, target) -> str:
    return "n/a" if value is None else ("PASS" if value >= target else "MISS")


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


# ---- reporting -------------------------------------------------------------------------------
def pooled(runs: list, key: str) -> list:
    return [s[key] for run in runs for s in run["steps"]]


def collective_seconds(step: dict, name: str = "all_reduce", field: str = "seconds") -> float:
    return sum(c[field] for c in step["calls"] if c["name"] == name)


def report_training(runs: dict, steps: int, warmup: int) -> list:
    n1, n2, half = runs["n1"], runs["n2"], runs["half"]
    t1, t2, th = pooled(n1, "total"), pooled(n2, "total"), pooled(half, "total")
    speedup = med(t1) / med(t2)
    bound = med(t1) / med(th)
    c1, c2, ch = pooled(n1, "cpu:total"), pooled(n2, "cpu:total"), pooled(half, "cpu:total")
    per_launch = [med(pooled([a], "total")) / med(pooled([b], "total")) for a, b in zip(n1, n2)]

    n2_steps = [s for run in n2 for s in run["steps"]]
    ar_calls = [sum(c["name"] == "all_reduce" for c in s["calls"]) for s in n2_steps]
    all_calls = [len(s["calls"]) for s in n2_steps]
    ar_bytes = [sum(c["bytes"] for c in s["calls"] if c["name"] == "all_reduce") for s in n2_steps]
    all_bytes = [sum(c["bytes"] for c in s["calls"]) for s in n2_steps]
    in_step = [collective_seconds(s) for s in n2_steps]
    wait = [sum(c["wait"] for c in s["calls"]) for s in n2_steps]
    replay_gt = [sum(r) for run in n2 for r in run["replay"]["minigt"]]
    replay_raw = [sum(r) for run in n2 for r in run["replay"]["raw"]]
    replay_fresh = [sum(r) for run in n2 for r in run["replay"]["raw_fresh"]]
    raw_med = med(replay_raw)
    r_in_step = med(in_step) / raw_med if raw_med else None
    r_replay = med(replay_gt) / raw_med if raw_med else None
    calls_max = max(ar_calls) if ar_calls else 0
    n1_calls = max((len(s["calls"]) for run in n1 for s in run["steps"]), default=0)

    rows = [
        [f"step time, global batch {GLOBAL_BATCH} (ms)", f"-n 2: {fmt_stats(t2)}",
         f"-n 1: {fmt_stats(t1)}", f"{speedup:.2f}× faster", f"≥ {SPEEDUP_TARGET:.2f}×",
         at_least(speedup, SPEEDUP_TARGET)],
        [f"  bound: -n 1 at batch {GLOBAL_BATCH // 2} (one -n 2 rank's work, no communication)",
         f"-n 1, batch {GLOBAL_BATCH // 2}: {fmt_stats(th)}", f"-n 1: {fmt_stats(t1)}",
         f"{bound:.2f}× faster", "—", "—"],
        ["  step CPU time of rank 0 (ms)", f"-n 2: {fmt_stats(c2)}",
         f"-n 1: {fmt_stats(c1)}; batch {GLOBAL_BATCH // 2}: {fmt_stats(ch)}",
         f"{med(c1) / med(c2):.2f}×; bound {med(c1) / med(ch):.2f}×", "—", "—"],
        ["all-reduce time per step, in the step (ms)", fmt_stats(in_step),
         f"raw Allreduce: {fmt_stats(replay_raw, digits=2)}", common.fmt_ratio(r_in_step),
         f"≤ {RATIO_TARGET:.2f}×", common.verdict(r_in_step, RATIO_TARGET)],
        ["all-reduce time per step, replayed (ms)", fmt_stats(replay_gt, digits=2),
         f"raw Allreduce: {fmt_stats(replay_raw, digits=2)}", common.fmt_ratio(r_replay),
         f"≤ {RATIO_TARGET:.2f}×", common.verdict(r_replay, RATIO_TARGET)],
        ["  the same, vs raw with a new receive buffer per call", fmt_stats(replay_gt, digits=2),
         f"raw, fresh recv: {fmt_stats(replay_fresh, digits=2)}",
         common.fmt_ratio(med(replay_gt) / med(replay_fresh)), "—", "—"],
        ["all-reduce calls per step (-n 2)", str(calls_max),
         f"all collectives: {max(all_calls, default=0)}; -n 1: {n1_calls}", "—",
         f"≤ {CALLS_TARGET}", "PASS" if calls_max <= CALLS_TARGET else "MISS"],
        ["bytes all-reduced per step, per rank", f"{med(ar_bytes) / 1e6:.2f} MB",
         f"raw: {med(ar_bytes) / 1e6:.2f} MB (same buffers)", "1.00×", "—", "—"],
    ]
    if med(all_bytes) != med(ar_bytes):
        rows.append(["bytes in all collectives per step", f"{med(all_bytes) / 1e6:.2f} MB",
                     "—", "—", "—", "—"])
    params = n2[0]["params"]
    common.print_table(
        f"Data-parallel training step: -n 2 vs -n 1 and vs raw mpi4py ({len(n1)} launches each, "
        f"{warmup} warm-up + {steps} timed steps per launch)",
        rows, ["metric", "minigt", "reference (same run)", "ratio", "target", "result"],
        note=(f"Model: {params:,} float32 parameters ({params * 4 / 1e6:.1f} MB of gradients). "
              f"Step times: median ±IQR/2 over all timed steps of all launches (rank 0's clock); "
              f"speed-up per launch pair: {', '.join(f'{x:.2f}×' for x in per_launch)}. "
              "In-step all-reduce time starts after a barrier (the wait for the other rank, "
              f"median {ms(med(wait))} ms per step, is timed apart); 'replayed' runs the same "
              "calls through minigt again after training, alternating rounds with the raw "
              "Allreduce. Raw: MPI.COMM_WORLD.Allreduce of preallocated buffers."))
    results = [row[-1] for row in rows if row[-1] in ("PASS", "MISS")]
    report_breakdown(runs)
    report_calls(n2)
    return results


PHASES = [("data", "batch tensors + shard"), ("forward", "forward + MSE loss"),
          ("zero_grad", "optimizer.zero_grad()"), ("backward", "backward (total)"),
          ("flush", "  of which gradient sync (gradsync.flush)"),
          ("ar_backward", "    of which all_reduce calls"),
          ("wait_backward", "    of which wait for the other rank"),
          ("pack_backward", "    of which the rest: pack (concatenate) + unpack (copy to .grad)"),
          ("optimizer", "optimizer.step()"), ("loss/acc", "loss.item() + accuracy .item()"),
          ("ar_items", "  of which all_reduce calls (+ wait)"), ("total", "step")]


def phase_value(step: dict, key: str, cpu: bool = False) -> float:
    """A phase's wall (or the rank's CPU) seconds in one step."""
    seconds, wait = ("cpu", "cpu_wait") if cpu else ("seconds", "wait")

    def calls(phase, *fields):
        return sum(c[f] for c in step["calls"] if c["phase"] == phase for f in fields)

    if key == "ar_backward":
        return calls("backward", seconds)
    if key == "wait_backward":
        return calls("backward", wait)
    if key == "pack_backward":
        return step[("cpu:" if cpu else "") + "flush"] - calls("backward", seconds, wait)
    if key == "ar_items":
        return calls("loss/acc", seconds, wait)
    return step[("cpu:" if cpu else "") + key]


def report_breakdown(runs: dict) -> None:
    rows = []

    def cells(key, cpu):
        values = [[phase_value(s, key, cpu) for run in runs[name] for s in run["steps"]]
                  for name in ("n1", "n2", "half")]
        m1, m2, mh = (med(v) for v in values)
        return [f"{m1 * 1e3:.1f}", f"{m2 * 1e3:.1f}", f"{mh * 1e3:.1f}",
                f"{m1 / m2:.2f}×" if m2 and m1 > 1e-4 else "—"]

    for key, label in PHASES:
        rows.append([label, *cells(key, False), *cells(key, True)])
    half = f"b{GLOBAL_BATCH // 2}"
    common.print_table(
        "Where a step's time goes: -n 1 vs -n 2 vs -n 1 at half the batch (ms, rank 0, median "
        "per phase; wall clock, then the rank's CPU time)", rows,
        ["phase", "-n 1", "-n 2", f"-n 1 {half}", "-n 1/-n 2", "CPU -n 1", "CPU -n 2",
         f"CPU -n 1 {half}", "CPU -n 1/-n 2"],
        note=f"'-n 1 {half}': one process at global batch {GLOBAL_BATCH // 2}, the work of one "
             "rank of -n 2 without communication. Medians are taken per phase, so the phases need "
             "not add up to the step. CPU time (process_time) counts MPI's busy-waiting as work; "
             "wall time above CPU time is time the rank was not running (other processes on the "
             "cores).")


def report_calls(n2: list) -> None:
    plan = n2[0]["replay"]["plan"]
    steps = [s for run in n2 for s in run["steps"]]
    rows = []
    for i, call in enumerate(plan):
        per_step = [[c for c in s["calls"] if c["name"] == "all_reduce"] for s in steps]
        in_step = [calls[i]["seconds"] for calls in per_step if len(calls) == len(plan)]
        phase = per_step[-1][i]["phase"]
        g = [r[i] for run in n2 for r in run["replay"]["minigt"]]
        raw = [r[i] for run in n2 for r in run["replay"]["raw"]]
        fresh = [r[i] for run in n2 for r in run["replay"]["raw_fresh"]]
        shape = "×".join(map(str, call["shape"])) or "scalar"
        rows.append([str(i + 1), phase, f"{call['dtype']} {shape}", f"{call['bytes']:,}",
                     fmt_stats(in_step, 1e3, 3), fmt_stats(g, 1e3, 3), fmt_stats(raw, 1e3, 3),
                     common.fmt_ratio(med(g) / med(raw)) if med(raw) else "n/a",
                     fmt_stats(fresh, 1e3, 3)])
    others = sorted({c["name"] for s in steps for c in s["calls"] if c["name"] != "all_reduce"})
    common.print_table(
        "All-reduce calls of one -n 2 step, each vs raw MPI.COMM_WORLD.Allreduce of the same "
        "buffer (ms, median ±IQR/2)", rows,
        ["#", "phase", "array", "bytes", "minigt in step", "minigt replayed", "raw Allreduce",
         "replayed/raw", "raw, fresh recv"],
        note="Other collectives per step: " + (", ".join(others) if others else "none") + ". "
             "'raw, fresh recv': the raw Allreduce into a new np.empty_like buffer each call, "
             "as minigt's all_reduce allocates its result.")


STAGES = [("start", "Python started (mpirun spawn + interpreter)"),
          ("numpy", "numpy imported"), ("import", "minigt + example imported"),
          ("mpi", "MPI joined (init_parallel)"), ("data", "data made (load_data)"),
          ("model", "model built"), ("first_step", "first step begins")]


def report_startup(data: dict) -> str:
    launches = data["worker"]
    cumulative = {}
    for key, _ in STAGES:
        cumulative[key] = [max(r[key] for r in w["ranks"]) - w["launched"] for w in launches]
    first = med(cumulative["first_step"])
    first_2 = med([max(r["first_step"] for r in w["ranks"]) - w["launched"]
                   for w in data["worker_2"]])
    cpu_rank = med([r["cpu_seconds"] for w in launches for r in w["ranks"]])
    cpu_floor = med([sum(r["cpu_seconds"] for r in w["ranks"]) / (os.cpu_count() or 1)
                     for w in launches])
    rows = [[f"mpirun -n {STARTUP_RANKS} train_pixel.py → first step (s)", f"{first:.2f}",
             f"GT: {STARTUP_TARGET_S:.2f}", f"{first / STARTUP_TARGET_S:.2f}×",
             f"≤ {STARTUP_TARGET_S:.2f} s", "PASS" if first <= STARTUP_TARGET_S else "MISS"],
            ["  the same at -n 2 (a core per rank here)", f"{first_2:.2f}",
             f"GT: {STARTUP_TARGET_S:.2f}", f"{first_2 / STARTUP_TARGET_S:.2f}×", "—", "—"],
            ["  CPU time per rank to first step (s)", f"{cpu_rank:.2f}", *["—"] * 4],
            [f"  CPU floor at -n {STARTUP_RANKS}: ranks' CPU / {os.cpu_count()} cores (s)",
             f"{cpu_floor:.2f}", f"GT: {STARTUP_TARGET_S:.2f}",
             f"{cpu_floor / STARTUP_TARGET_S:.2f}×", "—", "—"]]
    common.print_table(
        f"Start-up: mpirun -n {STARTUP_RANKS} to the first step (median of {len(launches)} "
        "launches, slowest rank)", rows,
        ["metric", "minigt", "reference", "ratio", "target", "result"])
    stage_rows, previous = [], [0.0] * len(launches)
    for key, label in STAGES:
        now = cumulative[key]
        fastest = [min(r[key] for r in w["ranks"]) - w["launched"] for w in launches]
        stage_rows.append([label, f"{med(now):.2f}",
                           f"{med([a - b for a, b in zip(now, previous)]):.2f}",
                           f"{med(fastest):.2f}"])
        previous = now
    stage_rows.append([f"reference: mpirun -n {STARTUP_RANKS} python -c 'from mpi4py import MPI'",
                       f"{med(data['mpi_floor']):.2f}", "—", "—"])
    stage_rows.append(["reference: python -c 'import minigt' (one process)",
                       f"{med(data['import_minigt']):.2f}",
                       f"{med(data['import_minigt']) - med(data['python']):.2f} over bare python",
                       "—"])
    stage_rows.append(["reference: python -c pass (one process)", f"{med(data['python']):.2f}",
                       "—", "—"])
    common.print_table(
        "Where start-up goes (s since mpirun was launched; stage = when the slowest rank got "
        "there)", stage_rows, ["stage", "cumulative", "this stage", "fastest rank"],
        note=f"{STARTUP_RANKS} ranks on {os.cpu_count()} CPUs: ranks share cores, so stages "
             "that are CPU-bound in every rank (interpreter start, imports) take about "
             f"{STARTUP_RANKS}/{os.cpu_count()}× their one-process time.")
    return rows[0][-1]


def main(args) -> int:
    if args.worker == "train":
        worker_train(args)
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
