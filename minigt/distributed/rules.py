"""Sharding propagation for the core ops: for each op family, which placements its inputs may
have, what placement its output gets, and what communication that needs. Each rule is a small
function that runs the op on local parts, registered for its Functions by `@sharding_rule`.
shape_rules.py covers ops that move elements, nn_rules.py minigt.nn's fused layers.

Summary (S = Shard(d), R = Replicate, P = Partial; plain tensors count as R):
  elementwise     S with R -> S (R sliced locally if it spans d);  R with R -> R;
                  P stays P only through linear ops (P+P, -P, P*R, P/R); else P is all-reduced
  reductions      over unsharded dims -> local, S keeps its dim;  sum/mean over d -> P;
                  max/min/any/all (and argmax/argmin, max(dim)) over d -> each part's, then
                  one MAX/MIN all-reduce -> R (extreme_rules.py)
  softmax-like    along an unsharded dim -> local
  matmul          S(row)@R -> S(row);  R@S(col) -> S(col);  S(k)@S(k), S(k)@R, R@S(k) -> P;
                  S(row)@S(any) -> b gathered, then S(row)@R;
                  batched dims sharded alike -> local;  1-D operands as one-row/column matrices
  (shape_rules.py)
  reshape         the sharded dim is remapped when its parts stay contiguous
  permute, expand the sharded dim moves with the dims
  cat             along an unsharded dim -> local
  getitem         slices of d: each rank keeps the part it owns (maybe uneven);  an int on d -> P;
                  an integer array on d -> P (each rank picks what it owns)
Anything else (a softmax along d, shards of different lengths, a mask along d) is redistributed
first to placements a rule takes, cheapest first (see dispatch.redistributed).
Every R operand of an op with a non-R output passes `use_replicated`, so its gradient is summed
over ranks (see dtensor.py).
"""
from __future__ import annotations

import numpy as np

from ..backends import array_module
from ..ops import comparison as cmp
from ..ops import elementwise as ew
from ..ops import unary as un
from ..ops import linalg, reductions as red, shape as shp
from ..tensor import Tensor
from .dispatch import (
    contract_sharded, no_rule, run_local, settle_partials, sharding_rule, slice_replicated,
)
from .dtensor import placement_of, redistribute, use_replicated
from .extreme_rules import ShardedAnyAll, ShardedArgExtreme, ShardedExtreme, ShardedExtremeAlongDim
from .placement import Partial, Replicate, Shard


# ---- elementwise -------------------------------------------------------------------------------

# How a Partial input may pass through a linear op: all inputs Partial, exactly one Partial times
# replicated factors, or a Partial numerator over a replicated denominator.
LINEAR_IN_PARTIAL = {
    ew.Add: "all", ew.Sub: "all", un.Neg: "all", un.Clone: "all", un.Cast: "all",
    un.ToDevice: "all", ew.Mul: "one", ew.Div: "first",
}


def _partial_passes(cls, placements, params) -> bool:
    kind = LINEAR_IN_PARTIAL.get(cls)
    if cls is un.Cast and np.dtype(params["dtype"]).kind not in "fc":
        return False  # rounding to integers or bools is not linear: sum the parts first
    partial = [p.is_partial() for p in placements]
    others_replicated = all(p.is_replicate() for p in placements if not p.is_partial())
    if kind == "all":
        return all(partial)
    if kind == "one":
        return sum(partial) == 1 and others_replicated
    if kind == "first":
        return partial[0] and others_replicated
    return False


@sharding_rule(
    ew.Add, ew.Sub, ew.Mul, ew.Div, ew.Pow, ew.Maximum, ew.Minimum, ew.Where, un.Neg, un.Exp,
    un.Log, un.Sqrt, un.Rsqrt, un.Abs, un.Tanh, un.Sigmoid, un.Relu, un.Gelu, un.Sin, un.Cos,
    ew.Clamp, un.Cast, un.ToDevice, un.Clone, cmp.Compare, cmp.LogicalNot,
)
def elementwise(cls, inputs, params):
    if len(inputs) == 1:
        shape = inputs[0].shape
    else:
        shape = tuple(np.broadcast_shapes(*(t.shape for t in inputs)))
    placements = [placement_of(t) for t in inputs]
    if any(p.is_partial() for p in placements):
        if _partial_passes(cls, placements, params):
            parts = [t if p.is_partial() else use_replicated(t) for t, p in zip(inputs, placements)]
            return run_local(cls, parts, params, Partial(), shape)
        inputs = settle_partials(inputs)
        placements = [placement_of(t) for t in inputs]
    shards = {(p.dim + len(shape) - t.ndim, t.sizes) for t, p in zip(inputs, placements) if p.is_shard()}
    if not shards:
        return run_local(cls, inputs, params, Replicate(), shape)
    if len(shards) > 1:
        raise no_rule(cls.__name__, inputs, "operands are sharded along different dims or unevenly")
    return broadcast_sharded(cls, inputs, params, shape, *shards.pop())


def broadcast_sharded(cls, inputs, params, shape, dim: int, sizes) -> DTensor:
    """Run an op whose operands broadcast to `shape`, sharded along output dim `dim`: sharded
    operands use their parts; a replicated operand spanning `dim` is sliced to this rank's rows."""
    if sum(sizes) != shape[dim]:
        raise no_rule(cls.__name__, inputs, f"it would broadcast the sharded dim {dim} of length 1")
    parts = []
    for t in inputs:
        if placement_of(t).is_shard():
            parts.append(t)
            continue
        aligned = dim - (len(shape) - t.ndim)
        spans = aligned >= 0 and t.shape[aligned] != 1
        parts.append(slice_replicated(t, aligned, sizes) if spans else use_replicated(t))
    return run_local(cls, parts, params, Shard(dim), shape, sizes)


# ---- reductions ---------------------------------------------------------------------------------

def _reduced(shape, axes, keepdim) -> tuple:
    if axes is None:
        return (1,) * len(shape) if keepdim else ()
    return tuple(1 if i in axes else n for i, n in enumerate(shape) if keepdim or i not in axes)


@sharding_rule(red.Sum, red.Mean, red.Extreme, red.Var, red.LogSumExp, cmp.AnyAll)
def reduction(cls, inputs, params):
    """Sum, Mean, Extreme, Var, LogSumExp, AnyAll: `axes` (None = all) and `keepdim` params."""
    x = inputs[0]
    axes, keepdim = params.get("axes"), params.get("keepdim", False)
    shape = _reduced(x.shape, axes, keepdim)
    p = placement_of(x)
    if p.is_partial():
        if cls in (red.Sum, red.Mean):
            return run_local(cls, [x], params, Partial(), shape)
        x, p = settle_partials([x])[0], Replicate()
    if p.is_replicate():
        return run_local(cls, [x], params, Replicate(), shape)
    if axes is not None and p.dim not in axes:
        dim = p.dim if keepdim else p.dim - sum(a < p.dim for a in axes)
        return run_local(cls, [x], params, Shard(dim), shape, x.sizes)
    if cls is red.Sum:
        return run_local(red.Sum, [x], params, Partial(), shape)
    if cls is red.Mean:  # local sum over the global count: the parts add up to the mean
        total = red.Sum.apply_local((x,), params)
        count = red._count(x.shape, axes)
        xp = array_module(total.data)  # nothing to average: NaN, as NumPy's mean gives
        scale = Tensor._make(xp.asarray(1 / count if count else np.nan, dtype=total.data.dtype),
                             False, None)
        return run_local(ew.Mul, [total, scale], {}, Partial(), shape)
    if cls in SHARDED_REDUCTIONS:  # max, min, any, all: each part's, then one all-reduce
        return run_local(SHARDED_REDUCTIONS[cls], [x], params, Replicate(), shape)
    raise no_rule(cls.__name__, inputs, f"it reduces over the sharded dim {p.dim}, which needs the "
                                        "whole dim on one rank")


SHARDED_REDUCTIONS = {red.Extreme: ShardedExtreme, cmp.AnyAll: ShardedAnyAll,
                      red.ExtremeAlongDim: ShardedExtremeAlongDim, cmp.ArgExtreme: ShardedArgExtreme}


@sharding_rule(red.Softmax, red.LogSoftmax, red.ExtremeAlongDim, cmp.ArgExtreme)
def along_dim(cls, inputs, params):
    """Softmax, LogSoftmax, ExtremeAlongDim, ArgExtreme: one `dim` (None = flattened)."""
    x = settle_partials(inputs[:1])[0]
    dim, keepdim = params.get("dim"), params.get("keepdim", True)
    shape_kept = cls in (red.Softmax, red.LogSoftmax)
    shape = x.shape if shape_kept else _reduced(x.shape, None if dim is None else (dim,), keepdim)
    p = placement_of(x)
    if p.is_replicate():
        return run_local(cls, [x], params, Replicate(), shape)
    if dim == p.dim and cls in SHARDED_REDUCTIONS:
        return run_local(SHARDED_REDUCTIONS[cls], [x], {**params, "sizes": x.sizes}, Replicate(), shape)
    if dim is None or dim == p.dim:
        raise no_rule(cls.__name__, [x], f"it works along the sharded dim {p.dim}")
    new_dim = p.dim - (0 if shape_kept or keepdim or dim > p.dim else 1)
    return run_local(cls, [x], params, Shard(new_dim), shape, x.sizes)


# ---- matmul -------------------------------------------------------------------------------------

@sharding_rule(linalg.MatMul)
def matmul(cls, inputs, params):
    a, b = inputs
    pa, pb = placement_of(a), placement_of(b)
    if a.ndim < 2 or b.ndim < 2:
        if pa.is_replicate() and pb.is_replicate():
            return run_local(cls, [a, b], params, Replicate(), _matmul_shape(a.shape, b.shape))
        # A vector is a one-row matrix on the left, a one-column matrix on the right: the
        # matrix rules decide, and the added dim is dropped again (reshapes keep the sharding).
        rows = shp.reshape(a, 1, -1) if a.ndim == 1 else a
        columns = shp.reshape(b, -1, 1) if b.ndim == 1 else b
        return shp.reshape(linalg.matmul(rows, columns), _matmul_shape(a.shape, b.shape))
    shape = _matmul_shape(a.shape, b.shape)
    if pa.is_partial() or pb.is_partial():  # P@R and R@P stay partial (matmul is linear)
        if pa.is_partial() and pb.is_replicate() or pb.is_partial() and pa.is_replicate():
            parts = [t if placement_of(t).is_partial() else use_replicated(t) for t in (a, b)]
            return run_local(cls, parts, params, Partial(), shape)
        a, b = settle_partials([a, b])
        pa, pb = placement_of(a), placement_of(b)
    if pa.is_replicate() and pb.is_replicate():
        return run_local(cls, [a, b], params, Replicate(), shape)
    contracted = contract_sharded(cls, a, a.ndim - 1, b, b.ndim - 2, params, shape)
    if contracted is not None:  # S(k) @ S(k), S(k) @ R or R @ S(k) -> Partial
        return contracted
    if pa.is_shard(a.ndim - 2) and pb.is_shard():  # rows of a, b split: gather b, as GT did
        b, pb = redistribute(b, Replicate()), Replicate()
    if pa.is_shard(a.ndim - 1) or pb.is_shard(b.ndim - 2):
        raise no_rule("matmul", inputs, "the contracted dims are sharded differently")
    if pa.is_shard(a.ndim - 2) and pb.is_replicate():  # rows
        return run_local(cls, [a, use_replicated(b)], params, Shard(len(shape) - 2), shape, a.sizes)
    if pb.is_shard(b.ndim - 1) and pa.is_replicate():  # columns
        return run_local(cls, [use_replicated(a), b], params, Shard(len(shape) - 1), shape, b.sizes)
    return elementwise_batched(cls, [a, b], params, shape)  # batch dims, sharded alike


def _matmul_shape(sa, sb) -> tuple:
    if len(sa) == 1 and len(sb) == 1:
        return ()
    if len(sa) == 1:
        return sb[:-2] + sb[-1:]
    if len(sb) == 1:
        return sa[:-1]
    return tuple(np.broadcast_shapes(sa[:-2], sb[:-2])) + (sa[-2], sb[-1])


def elementwise_batched(cls, inputs, params, shape):
    """matmul with sharded batch dims: like elementwise over the batch dims."""
    dims = {(placement_of(t).dim + len(shape) - t.ndim, t.sizes) for t in inputs if placement_of(t).is_shard()}
    if len(dims) != 1 or next(iter(dims))[0] >= len(shape) - 2:
        raise no_rule(cls.__name__, inputs, "operands are sharded along different dims")
    return broadcast_sharded(cls, inputs, params, shape, *dims.pop())
