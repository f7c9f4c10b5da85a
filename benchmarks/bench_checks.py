"""What checking every collective costs (minigt/distributed/checks.py): a training step with the
signature exchange on and off, in the same processes.

The brief's model and run (img 200, seq 4, dim 256, heads 4, layers 4, ff 1024; float32, SGD
lr 0.01, MSE on one-hot; batch 2) trains data-parallel at -n 2, a step as
examples/train_pixel.py takes it: batch, forward, loss, zero_grad, backward, step, loss.item(),
and the accuracy count's .item() (train_pixel reads it once an epoch; here every step, the more
checks the dearer). After warm-up steps with the checks on (the first lays out the gradient
buckets and takes the parameters' fingerprints), the timed steps alternate checks on and off
(`checks.ENABLED`, switched alike on both ranks), so that drift on a shared machine hits both.
Reported: the median step of each and their step-by-step ratio (target: at most 1.03), the checks
a step makes, and one check measured apart: a 1-element all-reduce with and without it,
interleaved, whose difference times the checks per step is the exchanges' own time.

    .venv/bin/python benchmarks/bench_checks.py [--threads N] [--quick] [--batch B] [--strict]

This script is a driver: it launches `mpirun -n 2 python benchmarks/bench_checks.py --worker`,
whose rank 0 writes JSON that the driver reads back.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import common  # noqa: E402

TARGET = 1.03  # the checks may cost at most 3% of a step
RANKS = 2


def build_parser():
    parser = common.base_parser(__doc__)
    parser.add_argument("--batch", type=int, default=2, help="global batch (the brief's: 2)")
    parser.add_argument("--steps", type=int, default=None,
                        help="timed steps, half with checks on (default 60; --quick 12)")
    hidden = argparse.SUPPRESS
    parser.add_argument("--worker", action="store_true", help=hidden)
    parser.add_argument("--out", help=hidden)
    return parser


if __name__ == "__main__":
    ARGS = common.bootstrap(build_parser())  # may re-exec: before numpy is imported


def worker(args) -> None:
    """Under mpirun: the alternating steps and the one-check measure; rank 0 writes JSON."""
    import time

    import numpy as np

    sys.path.insert(0, common.EXAMPLES)
    import train_pixel as tp
    from dist_worker import MODEL_ARGV
    from pixel_transformer import PixelTransformer

    import minigt as gt
    import minigt.distributed as dist
    from minigt.distributed import checks, collectives

    common.pin_threads(args.threads)
    targs = tp.parse_args([*MODEL_ARGV, "--batch", str(args.batch), "--n", str(4 * args.batch)])
    gt.manual_seed(targs.seed)
    (images, labels), _ = tp.load_data(targs)
    model = PixelTransformer(targs.img, targs.seq, targs.dim, targs.heads, targs.layers, targs.ff)
    model.to(np.dtype(targs.dtype))
    optimizer = gt.optim.SGD(model.parameters(), lr=targs.lr)
    exchanges = []
    start = checks.start

    def counted_start(*a, **k):
        exchanges.append(1)
        return start(*a, **k)

    checks.start = counted_start

    def step(i: int) -> float:
        idx = np.arange(args.batch) + args.batch * (i % 4)
        t0 = time.perf_counter()
        x, y = tp.batch_tensors(images[idx], labels[idx], targs)
        logits = model(x)
        loss = tp.loss_fn(targs, logits, y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        loss.item()
        (logits.argmax(-1) == y).sum().item()
        return time.perf_counter() - t0

    for i in range(3):  # warm-up, checks on: the first step lays out the buckets
        step(i)
    exchanges.clear()
    step(3)
    per_step = len(exchanges)
    times = {True: [], False: []}
    for i in range(args.steps):
        checks.ENABLED = i % 2 == 0
        times[checks.ENABLED].append(step(4 + i))
    one = {True: [], False: []}
    tiny = np.zeros(1, np.float32)
    for i in range(4000):
        checks.ENABLED = i % 2 == 0
        t0 = time.perf_counter()
        collectives.all_reduce(tiny)
        one[checks.ENABLED].append(time.perf_counter() - t0)
    if dist.rank() == 0:
        with open(args.out, "w") as f:
            json.dump({"per_step": per_step, "on": times[True], "off": times[False],
                       "one_on": one[True][100:], "one_off": one[False][100:]}, f)


def main(args) -> int:
    if args.worker:
        worker(args)
        return 0
    pools = common.pin_threads(args.threads)
    args.steps = args.steps or (12 if args.quick else 60)
    print(f"## bench_checks: the signature exchange before every collective, -n {RANKS}\n")
    print(common.header(args, None, pools))
    mpirun = os.path.join(os.path.dirname(sys.executable), "mpirun")
    with tempfile.TemporaryDirectory(prefix="bench_checks_") as tmp:
        out = os.path.join(tmp, "result.json")
        command = [mpirun, "-n", str(RANKS), sys.executable, os.path.abspath(__file__), "--worker",
                   "--out", out, "--threads", str(args.threads), "--batch", str(args.batch),
                   "--steps", str(args.steps)]
        env = {**os.environ, "MPIEXEC_TIMEOUT": "600"}
        env.pop("MINIGT_CHECK_COLLECTIVES", None)  # the worker switches them itself
        subprocess.run(command, env=env, check=True)
        with open(out) as f:
            result = json.load(f)
    on, off = common.stats_of(result["on"]), common.stats_of(result["off"])
    pairs = common.stats_of([a / b for a, b in zip(result["on"], result["off"])])
    one_on, one_off = common.stats_of(result["one_on"]), common.stats_of(result["one_off"])
    added = (one_on.median - one_off.median) * result["per_step"]
    common.print_table(
        f"Training step, the brief's model, global batch {args.batch}, -n {RANKS} (rank 0's clock)",
        [["checks on", common.fmt_time(on, 1e3, 1), on.n, ""],
         ["checks off", common.fmt_time(off, 1e3, 1), off.n, ""],
         ["on / off, step by step", f"{pairs.median:.3f}× ±{pairs.spread * 100:.0f}%", pairs.n,
          common.verdict(pairs.median, TARGET)]],
        ["", "step (ms) or ratio, median ±IQR/2", "steps", f"target ≤ {TARGET:.2f}×"],
        "Steps alternate on, off, on, ... in the same two processes; each on step is divided by "
        "the off step after it. Under heavy load from other processes the steps' own noise can "
        "exceed the cost: the header gives the load.")
    common.print_table(
        "Where it goes: one check measured apart",
        [["1-element all_reduce, checks on (µs)", common.fmt_time(one_on, 1e6, 1)],
         ["1-element all_reduce, checks off (µs)", common.fmt_time(one_off, 1e6, 1)],
         ["checks per step", str(result["per_step"])],
         ["the exchanges' own time per step", f"{added * 1e6:.0f} µs, "
                                             f"{added / off.median * 100:.2f}% of a step"]],
        ["", "value"],
        "µs: median ±IQR/2 of 1900 interleaved calls each (after 100 of each). The rest of the "
        "step's difference is waiting: each check is a point where the faster rank waits for the "
        "slower one (a gradient bucket's, in the middle of backward), where without it the wait "
        "would come later and partly overlap.")
    missed = common.verdict(pairs.median, TARGET) == "MISS"
    return 2 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
