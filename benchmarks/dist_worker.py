"""The worker side of bench_distributed.py: what runs under mpirun.

`bench_distributed.py --worker train` runs `worker_train` (rank 0 writes JSON to --out), and the
start-up launches run STARTUP_PROGRAM. This module imports numpy, so the driver imports it only
after common.bootstrap.
"""
from __future__ import annotations

import json
import sys
import time

import numpy as np

import common

# train_pixel's options for the brief's model; the worker adds --batch and --n
MODEL_ARGV = [*(arg for k, v in common.MODEL.items() for arg in (f"--{k}", str(v))),
              "--loss", "mse", "--optim", "sgd", "--lr", str(common.LR), "--dtype", "float32",
              "--seed", str(common.SEED)]
BATCHES = 2            # distinct global batches, cycled (2 x 16 samples, 20 MB of images)
WRAPPED = ("all_reduce", "start_all_reduce", "all_gather", "all_gather_in_place", "reduce_scatter",
           "start_reduce_scatter", "broadcast", "exchange_sizes", "barrier")
STARTS = {"start_all_reduce": "all_reduce", "start_reduce_scatter": "reduce_scatter"}  # nonblocking


class _TimedRequest:
    """A nonblocking call's request whose Wait() adds its time to the call's record."""

    def __init__(self, request, record: dict):
        self.request, self.record = request, record

    def Wait(self):  # noqa: N802 - mpi4py's name
        t0, c0 = time.perf_counter(), time.process_time()
        self.request.Wait()
        waited, cpu = time.perf_counter() - t0, time.process_time() - c0
        self.record["seconds"] += waited
        self.record["cpu"] += cpu
        self.record["waited"], self.record["cpu_waited"] = waited, cpu  # inside flush

    def Test(self):  # noqa: N802
        return self.request.Test()


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
            reduces = name in ("all_reduce", "start_all_reduce")
            op = kwargs.get("op", args[1] if reduces and len(args) > 1 else
                            "sum" if reduces or "reduce_scatter" in name else "")
            record = {
                # a bucket's nonblocking call is recorded as one: its start and its Wait()
                "name": STARTS.get(name, name), "phase": self.phase,
                "bytes": int(nbytes), "op": op,
                "dtype": str(array.dtype) if array is not None else "",
                "shape": list(array.shape) if array is not None else [],
                "group_size": group.size, "seconds": seconds, "wait": wait, "cpu": cpu,
                "cpu_wait": cpu_wait}
            self.calls.append(record)
            return _TimedRequest(out, record) if name in STARTS else out

        return wrapper


def worker_train(args) -> None:
    """Warm-up and timed training steps, then the raw-Allreduce replay; rank 0 writes JSON."""
    sys.path.insert(0, common.EXAMPLES)
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
    defer_seconds = [0.0, 0.0]  # wall, CPU: shares written into their bucket slots
    original_defer = gradsync.defer

    def timed_defer(leaf, share):
        t0, c0 = time.perf_counter(), time.process_time()
        original_defer(leaf, share)
        defer_seconds[0] += time.perf_counter() - t0
        defer_seconds[1] += time.process_time() - c0

    gradsync.defer = timed_defer

    def clock():
        return time.perf_counter(), time.process_time()

    def step(i: int) -> dict:
        """One step as train_pixel.train() does it, with the clocks (wall, CPU) noted between
        its parts."""
        recorder.calls.clear()
        flush_seconds[:] = [0.0, 0.0]
        defer_seconds[:] = [0.0, 0.0]
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
               "cpu:flush": flush_seconds[1], "defer": defer_seconds[0],
               "cpu:defer": defer_seconds[1], "calls": [dict(c) for c in recorder.calls]}
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
