"""Core benchmark: minigt vs NumPy alone vs PyTorch CPU eager, same threads, in one run.

1. Per-op overhead: a chain of 1,000 elementwise ops on a 16×16 float32 tensor that requires
   grad, forward, then backward of `.sum()`. The mix, repeated 200 times, is
   `x = exp(tanh(x * 0.5 + b) * w)`: a scalar multiply, a tensor add, tanh, a tensor multiply,
   exp (b and w are constant 16×16 tensors). NumPy runs the same ufuncs with the backward written
   by hand: the floor. Target: minigt's time per op at most PyTorch eager's (issue 13).
2. Large ops: a 512×512 float32 matmul, and a 512×512 two-layer MLP step,
   `loss = ((relu(x @ W1) @ W2 - y) ** 2).mean()`, forward, backward, SGD update, against the same
   computation written by hand in NumPy. Target: minigt within 10% of NumPy (ratio ≤ 1.10).

Times are medians over interleaved rounds (±: half the interquartile range); ratios are ratios of
medians. `--profile` adds a cProfile of minigt's chain (forward + backward).

    .venv/bin/python benchmarks/bench_core.py [--threads N] [--quick] [--profile] [--strict]
"""
from __future__ import annotations

import functools
import gc
import operator
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # noqa: E402


def build_parser():
    parser = common.base_parser(__doc__)
    parser.add_argument("--profile", action="store_true",
                        help="print a cProfile of minigt's chain (forward + backward)")
    return parser


if __name__ == "__main__":
    ARGS = common.bootstrap(build_parser())  # may re-exec: before numpy is imported

import numpy as np  # noqa: E402

import minigt as gt  # noqa: E402

CHAIN_OPS = 1000     # elementwise ops per chain (5 per cycle)
CHAIN_TARGET = 1.0   # minigt's time per op over PyTorch eager's
SMALL = (16, 16)
LARGE = 512
LR = 1e-4
TOLERANCE = dict(rtol=2e-3, atol=1e-4)


# ---- 1. per-op overhead ----------------------------------------------------------------------
def chain(x, b, w, tanh, exp):
    """The op mix, written once for all three libraries."""
    for _ in range(CHAIN_OPS // 5):
        x = exp(tanh(x * 0.5 + b) * w)
    return x


def numpy_chain_grad(x, b, w):
    """d(chain(x).sum())/dx by hand, saving what the backward needs as an autograd would."""
    saved = []
    for _ in range(CHAIN_OPS // 5):
        t = np.tanh(x * 0.5 + b)
        x = np.exp(t * w)
        saved.append((t, x))
    x.sum()
    g = np.ones_like(x)
    for t, e in reversed(saved):
        g = g * e                # exp
        g = g * w                # * w
        g = g * (1 - t * t)      # tanh
        g = g * 0.5              # * 0.5 (the add passes g through)
    return g


def chain_inputs(seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(SMALL).astype(np.float32)
    b = (0.1 * rng.standard_normal(SMALL)).astype(np.float32)
    w = (0.5 * rng.standard_normal(SMALL)).astype(np.float32)
    return x, b, w


def autograd_callables(name, x, b, w, tanh, exp, reference):
    """(forward, forward+backward) of the chain on leaf x, after checking x.grad against NumPy."""
    def forward():
        chain(x, b, w, tanh, exp)

    def forward_backward():
        chain(x, b, w, tanh, exp).sum().backward()
        x.grad = None

    chain(x, b, w, tanh, exp).sum().backward()
    _check(f"chain: {name} x.grad vs NumPy", x.grad.numpy(), reference)
    x.grad = None
    return forward, forward_backward


def chain_callables(torch):
    """{library: (forward, forward+backward)} and a check that the three agree."""
    x, b, w = chain_inputs()
    reference = numpy_chain_grad(x, b, w)
    out = {"NumPy": (lambda: chain(x, b, w, np.tanh, np.exp), lambda: numpy_chain_grad(x, b, w)),
           "minigt": autograd_callables("minigt", gt.tensor(x, requires_grad=True), gt.tensor(b),
                                        gt.tensor(w), gt.tanh, gt.exp, reference)}
    if torch is not None:
        out["PyTorch"] = autograd_callables(
            "PyTorch", torch.tensor(x, requires_grad=True), torch.tensor(b), torch.tensor(w),
            torch.tanh, torch.exp, reference)
    return out


def bench_chain(torch, repeat):
    fns = chain_callables(torch)
    fwd = common.compare({k: f for k, (f, _) in fns.items()}, repeat=repeat, warmup=3)
    both = common.compare({k: f for k, (_, f) in fns.items()}, repeat=repeat, warmup=3)
    rows = []
    for label, stats in (("forward", fwd), ("forward+backward", both)):
        r_torch = common.ratio(stats["minigt"], stats.get("PyTorch"))
        rows.append([label, *(common.fmt_time(stats.get(k), 1e6 / CHAIN_OPS)
                              for k in ("NumPy", "minigt", "PyTorch")),
                     common.fmt_ratio(common.ratio(stats["minigt"], stats["NumPy"])),
                     common.fmt_ratio(r_torch), f"≤ {CHAIN_TARGET:.2f}×",
                     common.verdict(r_torch, CHAIN_TARGET)])
    common.print_table(
        f"Per-op time: chain of {CHAIN_OPS:,} elementwise ops, {SMALL[0]}×{SMALL[1]} float32 "
        f"(µs per op, median ±IQR/2, {repeat} rounds)",
        rows, ["pass", "NumPy (floor)", "minigt", "PyTorch", "minigt/NumPy", "minigt/PyTorch",
               "target", "result"],
        note="Op mix per cycle: `x = exp(tanh(x * 0.5 + b) * w)`; NumPy backward written by hand.")
    return [row[-1] for row in rows]


def profile_chain(rounds=20, top=25):
    """cProfile of minigt's chain forward + backward, sorted by own time."""
    import cProfile
    import pstats

    x, b, w = chain_inputs()
    gx, gb, gw = gt.tensor(x, requires_grad=True), gt.tensor(b), gt.tensor(w)
    profiler = cProfile.Profile()
    gc.collect()
    gc.disable()  # a collection's time would be charged to whichever call happened to allocate
    profiler.enable()
    for _ in range(rounds):
        chain(gx, gb, gw, gt.tanh, gt.exp).sum().backward()
        gx.grad = None
    profiler.disable()
    gc.enable()
    print(f"\n### cProfile: minigt chain forward+backward, {rounds} runs × {CHAIN_OPS} ops "
          f"(top {top} by own time, gc off)\n\n```")
    pstats.Stats(profiler, stream=sys.stdout).strip_dirs().sort_stats("tottime").print_stats(top)
    print("```")


# ---- 2. large ops ----------------------------------------------------------------------------
def mlp_inputs(seed=1):
    rng = np.random.default_rng(seed)
    scale = np.float32(1 / np.sqrt(LARGE))
    draw = lambda s=1.0: (s * rng.standard_normal((LARGE, LARGE))).astype(np.float32)  # noqa: E731
    return draw(), draw(scale), draw(scale), draw()  # x, W1, W2, y


def numpy_mlp(x, w1, w2, y, backward=True, update=False):
    """The MLP step by hand: returns (loss, gW1, gW2)."""
    h = x @ w1
    a = np.maximum(h, 0)
    d = a @ w2 - y
    loss = (d * d).mean()
    if not backward:
        return loss, None, None
    g = d * np.float32(2 / d.size)
    gw2 = a.T @ g
    gh = (g @ w2.T) * (h > 0)
    gw1 = x.T @ gh
    if update:
        w1 -= LR * gw1
        w2 -= LR * gw2
    return loss, gw1, gw2


def framework_mlp(lib, x, w1, w2, y, backward=True, update=False):
    """The same step the PyTorch way; minigt and torch share this code."""
    loss = ((lib.relu(x @ w1) @ w2 - y) ** 2).mean()
    if backward:
        loss.backward()
        if update:
            with lib.no_grad():
                w1.sub_(w1.grad, alpha=LR)
                w2.sub_(w2.grad, alpha=LR)
        grads = w1.grad, w2.grad
        w1.grad = w2.grad = None
        return loss, *grads
    return loss, None, None


def large_callables(torch):
    """{row: {library: callable}}, after checking that the three compute the same thing."""
    x, w1, w2, y = mlp_inputs()
    libs = {"NumPy": (np, (x, w1.copy(), w2.copy(), y))}
    libs["minigt"] = (gt, (gt.tensor(x), gt.tensor(w1, requires_grad=True),
                           gt.tensor(w2, requires_grad=True), gt.tensor(y)))
    if torch is not None:
        libs["PyTorch"] = (torch, (torch.tensor(x), torch.tensor(w1, requires_grad=True),
                                   torch.tensor(w2, requires_grad=True), torch.tensor(y)))
    _, ref1, ref2 = numpy_mlp(x, w1, w2, y)
    rows = {"matmul 512×512 (no grad)": {}, "MLP forward": {}, "MLP forward+backward": {},
            "MLP step (fwd+bwd+SGD)": {}}
    for name, (lib, args) in libs.items():
        step = numpy_mlp if lib is np else functools.partial(framework_mlp, lib)
        if lib is not np:
            _, g1, g2 = step(*args)
            _check(f"MLP: {name} dW1 vs NumPy", np.asarray(g1), ref1)
            _check(f"MLP: {name} dW2 vs NumPy", np.asarray(g2), ref2)
        m = args[0]  # x: records nothing in any library
        rows["matmul 512×512 (no grad)"][name] = functools.partial(operator.matmul, m, m)
        rows["MLP forward"][name] = functools.partial(step, *args, backward=False)
        rows["MLP forward+backward"][name] = functools.partial(step, *args)
        rows["MLP step (fwd+bwd+SGD)"][name] = functools.partial(step, *args, update=True)
    return rows


def bench_large(torch, repeat):
    table_rows = []
    for label, fns in large_callables(torch).items():
        stats = common.compare(fns, repeat=repeat, warmup=2)
        r_np = common.ratio(stats["minigt"], stats["NumPy"])
        table_rows.append([label, *(common.fmt_time(stats.get(k), 1e3)
                                    for k in ("NumPy", "minigt", "PyTorch")),
                           common.fmt_ratio(r_np),
                           common.fmt_ratio(common.ratio(stats["minigt"], stats.get("PyTorch"))),
                           "≤ 1.10×", common.verdict(r_np, 1.10)])
    common.print_table(
        f"Large ops: {LARGE}×{LARGE} float32 (ms per call, median ±IQR/2, {repeat} rounds)",
        table_rows, ["op", "NumPy", "minigt", "PyTorch", "minigt/NumPy", "minigt/PyTorch",
                     "target", "result"],
        note="MLP: `loss = ((relu(x @ W1) @ W2 - y) ** 2).mean()`, grads for W1 and W2 only; "
             "NumPy forward and backward written by hand. PyTorch uses its own BLAS (see header).")
    return [row[-1] for row in table_rows]


def _check(what: str, got, want) -> None:
    if not np.allclose(got, want, **TOLERANCE):
        raise AssertionError(f"{what}: max |diff| {np.max(np.abs(got - want)):.3g}")


def main(args) -> int:
    torch = common.load_torch(args)
    pools = common.pin_threads(args.threads, torch)
    print(f"## bench_core: minigt {gt.__version__} vs NumPy vs PyTorch CPU eager\n")
    print(common.header(args, torch, pools))
    scale = 0.25 if args.quick else 1.0
    results = bench_chain(torch, repeat=max(5, int(150 * scale)))
    results += bench_large(torch, repeat=max(5, int(40 * scale)))
    if args.profile:
        profile_chain()
    missed = results.count("MISS")
    print(f"\n{len(results) - missed - results.count('n/a')} PASS, {missed} MISS"
          + (f", {results.count('n/a')} n/a (no PyTorch)" if "n/a" in results else ""))
    return 2 if args.strict and missed else 0


if __name__ == "__main__":
    sys.exit(main(ARGS))
