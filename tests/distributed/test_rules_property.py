"""Property test of the sharding rules: ops x placements x shapes, against one process.

Hypothesis draws an op with its shapes and parameters, a seed for the float64 inputs, and a
placement for each input (a plain tensor, Replicate, Partial, or Shard(d)). The same draws are
made on every rank (derandomized; checked by gathering a hash of each example). The op runs on
plain tensors (the reference) and on DTensor leaves with the drawn placements; the global
forward value and the gradient of sum(w * out) w.r.t. every input must agree within 1e-10, on
every device (cuda too, where CuPy sees a GPU: several ranks may share it).

Every case must give the one-process answer. Where the rules promise no native rule (e.g.
softmax along the sharded dim), the op must get there by redistributing its inputs first
(counted in `dispatch.redistributions`), and elsewhere without; each case's `oracle` says which
placements those are, worked out from the rules' summary independently of minigt.distributed's
code ("either" marks cases where both are acceptable).
"""
from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import EITHER, MOVED, OK, Case, digest, fail_together, global_array, placements_for, verdict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import mutually_broadcastable_shapes

import minigt
from minigt.distributed import placement, world
from minigt.distributed.placement import Shard


# ---- elementwise ------------------------------------------------------------------------------------


def elementwise_oracle(shapes, out_shape):
    """Shards of all operands must land on one output dim, and that dim must not broadcast."""
    def oracle(placements):
        dims = set()
        for shape, p in zip(shapes, placements):
            if isinstance(p, Shard):
                out_dim = p.dim + len(out_shape) - len(shape)
                if shape[p.dim] != out_shape[out_dim]:
                    return MOVED
                dims.add(out_dim)
        return MOVED if len(dims) > 1 else OK
    return oracle


BINARY = {
    "add": (lambda a, b: a + b, "normal", "Add"),
    "sub": (lambda a, b: a - b, "normal", "Sub"),
    "mul": (lambda a, b: a * b, "normal", "Mul"),
    "div": (lambda a, b: a / b, "positive", "Div"),
    "pow": (lambda a, b: a ** b, "positive", "Pow"),
    "maximum": (minigt.maximum, "normal", "Maximum"),
    "minimum": (minigt.minimum, "normal", "Minimum"),
    "where": (lambda a, b: minigt.where(a > b, a, b * 2), "normal", "Compare|Where"),
    "compare_sum": (lambda a, b: (a > b).sum(), "normal", "Compare"),
    "compare_sum_dim0": (lambda a, b: (a <= b).sum(0), "normal", "Compare"),
}

UNARY = {
    "neg": (lambda x: -x, "normal"), "exp": (minigt.exp, "normal"), "log": (minigt.log, "positive"),
    "sqrt": (minigt.sqrt, "positive"), "rsqrt": (minigt.rsqrt, "positive"),
    "abs": (minigt.abs, "normal"), "tanh": (minigt.tanh, "normal"),
    "sigmoid": (minigt.sigmoid, "normal"), "relu": (minigt.relu, "normal"),
    "gelu": (minigt.gelu, "normal"), "sin": (minigt.sin, "normal"), "cos": (minigt.cos, "normal"),
    "clamp": (lambda x: x.clamp(-0.5, 0.7), "normal"), "clone": (minigt.clone, "normal"),
    "scalar_linear": (lambda x: 2.5 * x - x / 4 + 1, "normal"), "square": (lambda x: x ** 2, "normal"),
}


@st.composite
def binary_cases(draw):
    name = draw(st.sampled_from(sorted(BINARY)))
    fn, kind, names = BINARY[name]
    min_dims = 1 if name == "compare_sum_dim0" else 0
    shapes = draw(mutually_broadcastable_shapes(num_shapes=2, min_dims=min_dims, max_dims=3, max_side=4))
    seed = draw(st.integers(0, 2**16))
    arrays = [global_array(s, seed + i, kind) for i, s in enumerate(shapes.input_shapes)]
    return Case(name, fn, arrays, elementwise_oracle(shapes.input_shapes, shapes.result_shape), names)


@st.composite
def unary_cases(draw):
    name = draw(st.sampled_from(sorted(UNARY)))
    fn, kind = UNARY[name]
    shape = draw(st.lists(st.integers(1, 4), min_size=0, max_size=3).map(tuple))
    return Case(name, fn, [global_array(shape, draw(st.integers(0, 2**16)), kind)], lambda p: OK, "")


# ---- reductions and ops along one dim ------------------------------------------------------------

LINEAR_REDUCTIONS = {"sum": "Sum", "mean": "Mean"}
EXTREME_REDUCTIONS = {"amax": "Extreme", "amin": "Extreme"}  # each part's, then one all-reduce
OTHER_REDUCTIONS = {"var": "Var", "logsumexp": "LogSumExp"}


@st.composite
def reduction_cases(draw):
    name = draw(st.sampled_from(sorted({**LINEAR_REDUCTIONS, **EXTREME_REDUCTIONS, **OTHER_REDUCTIONS})))
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple))
    axes = draw(st.none() | st.sets(st.integers(0, len(shape) - 1), min_size=1).map(tuple))
    dim = axes[0] if axes is not None and len(axes) == 1 and draw(st.booleans()) else axes
    keepdim = draw(st.booleans())
    extra = {"correction": 0} if name == "var" else {}

    def fn(x):
        return getattr(x, name)(dim, keepdim=keepdim, **extra)

    def oracle(placements):
        p = placements[0]
        over = range(len(shape)) if axes is None else axes
        return MOVED if isinstance(p, Shard) and p.dim in over and name in OTHER_REDUCTIONS else OK

    names = {**LINEAR_REDUCTIONS, **EXTREME_REDUCTIONS, **OTHER_REDUCTIONS}[name]
    x = global_array(shape, draw(st.integers(0, 2**16)))
    return Case(name, fn, [x], oracle, names, dict(dim=dim, keepdim=keepdim))


ALONG_DIM = {
    "softmax": (lambda x, d: x.softmax(d), "Softmax"),
    "log_softmax": (lambda x, d: x.log_softmax(d), "LogSoftmax"),
    "max_values": (lambda x, d: x.max(d).values, "ExtremeAlongDim|ArgExtreme"),
    "min_values": (lambda x, d: x.min(d).values, "ExtremeAlongDim|ArgExtreme"),
    "argmax": (lambda x, d: x.argmax(d), "ArgExtreme"),
    "argmin": (lambda x, d: x.argmin(d), "ArgExtreme"),
}
NATIVE_ALONG_SHARDED_DIM = {"max_values", "min_values", "argmax", "argmin"}  # one all-reduce


@st.composite
def along_dim_cases(draw):
    name = draw(st.sampled_from(sorted(ALONG_DIM)))
    op, names = ALONG_DIM[name]
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple))
    dim = draw(st.integers(-len(shape), len(shape) - 1))

    def oracle(placements):
        p = placements[0]
        along = isinstance(p, Shard) and p.dim == dim % len(shape)
        return MOVED if along and name not in NATIVE_ALONG_SHARDED_DIM else OK

    x = global_array(shape, draw(st.integers(0, 2**16)))
    return Case(name, lambda t: op(t, dim), [x], oracle, names, dict(dim=dim))


# ---- matmul ----------------------------------------------------------------------------------------

MATMUL_LAYOUTS = {  # (batch dims of a, batch dims of b) as letters; equal letters, equal sizes
    "2d": ("", ""), "batched": ("B", "B"), "batch_by_matrix": ("B", ""), "matrix_by_batch": ("", "B"),
    "broadcast_batch": ("BO", "C"),  # (B, 1, M, K) @ (C, K, N): the 1 broadcasts to C
}


def matmul_oracle(shape_a, shape_b, out_shape, vectors=(False, False)):
    """Whether a rule exists, for operands of these shapes (1-D ones given as the one-row or
    one-column matrices they count as: `vectors` says which)."""
    def oracle(placements):
        # A Partial operand stays Partial against a replicated one, else it is summed first:
        # for whether a rule exists it counts as replicated. So do plain tensors.
        pa, pb = (p if isinstance(p, Shard) else None for p in placements)
        if vectors[0] and pa is not None:  # (k,) as (1, k)
            pa = Shard(1)
        ka, kb = len(shape_a) - 1, len(shape_b) - 2
        if pa is None and pb is None:
            return OK
        if pa is not None and pa.dim == ka:
            return OK if pb is None or pb.dim == kb else MOVED
        if pb is not None and pb.dim == kb and pa is None:
            return OK
        if pa is not None and pa.dim == ka - 1:
            return OK  # rows (a split b is gathered first, as part of the rule)
        if pb is not None and pb.dim == kb:
            return MOVED
        if pb is not None and pb.dim == kb + 1 and pa is None:
            return OK  # columns
        out_dims = set()  # batch dims: like elementwise over them
        for shape, p in ((shape_a, pa), (shape_b, pb)):
            if p is not None:
                out_dim = p.dim + len(out_shape) - len(shape)
                if p.dim >= len(shape) - 2 or shape[p.dim] != out_shape[out_dim]:
                    return MOVED
                out_dims.add(out_dim)
        return OK if len(out_dims) == 1 else MOVED
    return oracle


@st.composite
def matmul_cases(draw):
    name = draw(st.sampled_from(sorted(MATMUL_LAYOUTS)))
    side = st.integers(1, 4)
    m, k, n = draw(side), draw(side), draw(side)
    sizes = {"B": draw(side), "C": draw(st.integers(2, 3)), "O": 1}
    batch_a, batch_b = (tuple(sizes[c] for c in letters) for letters in MATMUL_LAYOUTS[name])
    # a 1-D operand (no batch dims of its own): a one-row matrix on the left, one column on the right
    vectors = (not batch_a and draw(st.booleans()), not batch_b and draw(st.booleans()))
    m, n = (1 if vectors[0] else m), (1 if vectors[1] else n)
    shape_a, shape_b = batch_a + (m, k), batch_b + (k, n)
    out_shape = tuple(np.broadcast_shapes(batch_a, batch_b)) + (m, n)
    seed = draw(st.integers(0, 2**16))
    arrays = [global_array(shape_a[1:] if vectors[0] else shape_a, seed),
              global_array(shape_b[:-1] if vectors[1] else shape_b, seed + 1)]
    return Case(name, lambda a, b: a @ b, arrays,
                matmul_oracle(shape_a, shape_b, out_shape, vectors), "(?i)matmul",
                dict(vectors=vectors))


# ---- shape ops ---------------------------------------------------------------------------------------


def factorizations(total: int, max_dims: int = 4) -> list[tuple]:
    """Ordered factorizations of total into at most max_dims factors >= 2 (and (total,))."""
    if total == 1:
        return [()]
    out = []
    for f in range(2, total + 1):
        if total % f == 0:
            out += [(f,) + rest for rest in factorizations(total // f, max_dims - 1) if len(rest) < max_dims]
    return out


def reshape_possible(shape, dim, target) -> str:
    """Whether some output dim holds each rank's part as one block of whole rows, worked out by
    brute force on an array of owners (EITHER when one rank owns everything)."""
    sizes = placement.shard_sizes(shape[dim], world.world_size())
    owners = np.repeat(np.arange(len(sizes)), sizes).reshape([-1 if i == dim else 1 for i in range(len(shape))])
    owners = np.broadcast_to(owners, shape).reshape(target)
    if len(np.unique(owners)) < 2:
        return EITHER
    for j in range(len(target)):
        along = owners.reshape(math.prod(target[:j]), target[j], -1)
        first = along[:1, :, :1]
        if (along == first).all() and (np.diff(first.ravel()) >= 0).all():
            return OK
    return MOVED


@st.composite
def reshape_cases(draw):
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3).map(tuple))
    target = list(draw(st.sampled_from(factorizations(math.prod(shape)))))
    if draw(st.booleans()):  # a unit dim somewhere
        target.insert(draw(st.integers(0, len(target))), 1)
    target = tuple(target)

    def oracle(placements):
        p = placements[0]
        return reshape_possible(shape, p.dim, target) if isinstance(p, Shard) else OK

    x = global_array(shape, draw(st.integers(0, 2**16)))
    return Case("reshape", lambda t: t.reshape(target), [x], oracle, "reshape", dict(target=target))


@st.composite
def permute_cases(draw):
    shape = draw(st.lists(st.integers(1, 4), min_size=1, max_size=4).map(tuple))
    dims = draw(st.permutations(range(len(shape))))
    i, j = draw(st.integers(0, len(shape) - 1)), draw(st.integers(-len(shape), len(shape) - 1))
    fn = draw(st.sampled_from([lambda t: t.permute(*dims), lambda t: t.transpose(i, j), lambda t: t.T]))
    x = global_array(shape, draw(st.integers(0, 2**16)))
    return Case("permute", fn, [x], lambda p: OK, "", dict(dims=dims, i=i, j=j))


@st.composite
def expand_cases(draw):
    shape = draw(st.lists(st.sampled_from([1, 1, 2, 3]), min_size=1, max_size=3).map(tuple))
    lead = tuple(draw(st.lists(st.integers(1, 3), max_size=1)))
    grown = tuple(draw(st.sampled_from([1, 3])) if n == 1 else draw(st.sampled_from([n, -1])) for n in shape)
    target = lead + grown

    def oracle(placements):
        p = placements[0]
        expands = isinstance(p, Shard) and shape[p.dim] == 1 and target[len(lead) + p.dim] > 1
        return MOVED if expands else OK

    x = global_array(shape, draw(st.integers(0, 2**16)))
    return Case("expand", lambda t: t.expand(*target), [x], oracle, "expand|broadcast_to", dict(target=target))


@st.composite
def cat_cases(draw):
    base = draw(st.lists(st.integers(1, 4), min_size=1, max_size=3))
    dim = draw(st.integers(0, len(base) - 1))
    lengths = draw(st.lists(st.integers(1, 3), min_size=2, max_size=3))
    seed = draw(st.integers(0, 2**16))
    arrays = [global_array(tuple(base[:dim] + [n] + base[dim + 1:]), seed + i) for i, n in enumerate(lengths)]

    def oracle(placements):
        sharded = {p.dim for p in placements if isinstance(p, Shard)}
        return OK if not sharded or (len(sharded) == 1 and dim not in sharded) else MOVED

    return Case("cat", lambda *ts: minigt.cat(ts, dim), arrays, oracle, "cat", dict(dim=dim))


@st.composite
def index_entry(draw, n: int, array: bool = False):
    """A slice with a positive step, or an int, valid for a dim of length n; with `array`, an
    integer array of such ints (repeats and negatives included, maybe empty or 2-D)."""
    if array:
        shape = draw(st.sampled_from([(0,), (3,), (2, 2)]))
        values = draw(st.lists(st.integers(-n, n - 1), min_size=math.prod(shape), max_size=math.prod(shape)))
        return np.array(values, dtype=np.int64).reshape(shape)
    if draw(st.booleans()):
        return draw(st.integers(-n, n - 1))
    bound = st.none() | st.integers(-n - 1, n + 1)
    return slice(draw(bound), draw(bound), draw(st.sampled_from([None, 1, 2, 3])))


@st.composite
def getitem_cases(draw):
    shape = draw(st.lists(st.integers(1, 5), min_size=1, max_size=3).map(tuple))
    count = draw(st.integers(1, len(shape)))  # entries given; the rest are implied slices
    array_at = draw(st.integers(-1, count - 1))  # at most one integer array (-1: none)
    index = [draw(index_entry(n, k == array_at)) for k, n in enumerate(shape[:count])]
    for _ in range(draw(st.integers(0, 2))):
        index.insert(draw(st.integers(0, len(index))), None)
    if count < len(shape) and draw(st.booleans()):  # Ellipsis for the implied dims, front or back
        index = [Ellipsis] + [draw(index_entry(n, k == array_at))
                              for k, n in enumerate(shape[len(shape) - count:])] \
            if draw(st.booleans()) else index + [Ellipsis]
    index = tuple(index)
    x = global_array(shape, draw(st.integers(0, 2**16)))
    return Case("getitem", lambda t: t[index], [x], lambda p: OK, "getitem", dict(index=index))


# ---- minigt.nn's fused Functions ------------------------------------------------------------------


def replicated(p) -> bool:
    """Placement p, once a Partial is summed (every rule does that first), is replicated."""
    return not isinstance(p, Shard)


@st.composite
def linear_cases(draw):
    from minigt.nn import functional as F

    batch = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=2)))
    n_in, n_out, bias = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    arrays = [global_array(batch + (n_in,), seed), global_array((n_out, n_in), seed + 1)]
    arrays += [global_array((n_out,), seed + 2)] if bias else []
    features = len(batch)

    def oracle(placements):
        px, pw, *pb = placements
        if replicated(pw) and all(map(replicated, pb)):  # data parallel, or x sharded on features
            return MOVED if isinstance(px, Shard) and px.dim == features and bias else OK
        if pw == Shard(0) and replicated(px) and all(p == Shard(0) for p in pb):
            return OK  # column parallel
        if pw == Shard(1) and (px == Shard(features) or replicated(px)) and not bias:
            return OK  # row parallel (a replicated x is sliced to this rank's features)
        return MOVED

    return Case("linear", lambda *ts: F.linear(*ts), arrays, oracle, "linear", dict(bias=bias))


@st.composite
def layer_norm_cases(draw):
    from minigt.nn import functional as F

    shape = tuple(draw(st.lists(st.integers(1, 4), min_size=1, max_size=3)))
    k = draw(st.integers(1, len(shape)))
    affine = draw(st.integers(0, 2))  # none, weight, weight and bias
    seed = draw(st.integers(0, 2**16))
    arrays = [global_array(shape, seed)] + [global_array(shape[-k:], seed + 1 + i) for i in range(affine)]

    def oracle(placements):
        px, *pa = placements
        normalised = isinstance(px, Shard) and px.dim >= len(shape) - k
        return OK if not normalised and all(map(replicated, pa)) else MOVED

    return Case("layer_norm", lambda x, *wb: F.layer_norm(x, shape[-k:], *wb), arrays, oracle,
                "layer_norm", dict(k=k, affine=affine))


@st.composite
def cross_entropy_cases(draw):
    from minigt.nn import functional as F

    rows, classes = draw(st.integers(1, 5)), draw(st.integers(1, 4))
    reduction = draw(st.sampled_from(["mean", "sum", "none"]))
    seed = draw(st.integers(0, 2**16))
    target = np.random.default_rng(seed).integers(-1, classes, rows)
    target[target < 0] = -100  # some rows ignored, not all
    target[0] = max(target[0], 0)
    arrays = [global_array((rows, classes), seed), target]

    def oracle(placements):
        pl, pt = placements
        if replicated(pl):
            return OK if replicated(pt) else MOVED
        return OK if pl == Shard(0) and (replicated(pt) or pt == Shard(0)) else MOVED

    return Case("cross_entropy", lambda x, t: F.cross_entropy(x, t, reduction=reduction), arrays,
                oracle, "cross_entropy", dict(reduction=reduction))


CASES = {
    "binary": binary_cases(), "unary": unary_cases(), "reduction": reduction_cases(),
    "along_dim": along_dim_cases(), "matmul": matmul_cases(), "reshape": reshape_cases(),
    "permute": permute_cases(), "expand": expand_cases(), "cat": cat_cases(),
    "getitem": getitem_cases(),
    "nn_linear": linear_cases(), "nn_layer_norm": layer_norm_cases(),
    "nn_cross_entropy": cross_entropy_cases(),
}


# ---- the property --------------------------------------------------------------------------------


@pytest.mark.parametrize("family", sorted(CASES))
@settings(derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_op_on_sharded_inputs_matches_one_process(family, device, data):
    case = data.draw(CASES[family], label="case")
    placements = data.draw(placements_for(case.arrays), label="placements")
    seed = data.draw(st.integers(0, 2**16), label="seed")
    problem = verdict(case, placements, seed, device)
    fail_together(problem, same_on_every_rank=digest(case.label, case.params, placements, seed, *case.arrays))

