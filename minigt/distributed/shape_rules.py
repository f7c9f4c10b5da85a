"""Sharding rules for ops that move elements around: reshape, permute, expand, cat, getitem.

The question each answers: after the op, which output dim holds the parts that were along the
sharded input dim, and how long is each rank's part?
"""
from __future__ import annotations

import math

import numpy as np

from ..backends import array_module, host_checks
from ..ops import elementwise as ew
from ..ops import reductions as red
from ..ops import shape as shp
from ..ops import unary as un
from ..ops.indexing import GetItem, normalize_index
from ..tensor import Tensor
from .dispatch import no_rule, run_local, settle_partials, sharding_rule, slice_replicated
from .dtensor import DTensor, group, local_range, placement_of, use_replicated
from .placement import Partial, Shard


def _local_shape(shape, dim, sizes) -> tuple:
    return tuple(sizes[group().rank] if i == dim else n for i, n in enumerate(shape))


@sharding_rule(shp.Reshape)
def reshape(cls, inputs, params):
    """A sharded dim survives a reshape when every rank's part stays one block of an output dim."""
    x, target = inputs[0], tuple(params["shape"])
    p = placement_of(x)
    if not p.is_shard():
        return run_local(cls, [x], params, p, target)
    dim, sizes = map_shard_through_reshape(x.shape, p.dim, x.sizes, target)
    if dim is None:
        raise no_rule("reshape", [x], f"to {target}, the parts along dim {p.dim} would not stay "
                                      "contiguous blocks of one output dim")
    local = {"shape": _local_shape(target, dim, sizes)}
    return run_local(cls, [x], local, Shard(dim), target, sizes)


def map_shard_through_reshape(shape, dim, sizes, target):
    """(output dim, part sizes) for Shard(dim) of `shape` reshaped to `target`, or (None, None).

    Rank r owns, inside each block of the dims before `dim`, a contiguous run of
    sizes[r] * inner elements. The output dim j whose preceding dims form the same blocks holds
    those runs as whole rows when each run boundary is a multiple of the row length there.
    """
    outer, inner = math.prod(shape[:dim]), math.prod(shape[dim + 1:])
    bounds = np.cumsum((0,) + tuple(sizes)) * inner
    for j in range(len(target)):
        if math.prod(target[:j]) != outer or (target[j] == 1 and shape[dim] != 1):
            continue
        row = math.prod(target[j + 1:])
        if row and all(b % row == 0 for b in bounds):
            return j, tuple(int(n) * inner // row for n in sizes)
    return None, None


@sharding_rule(shp.Permute)
def permute(cls, inputs, params):
    x, dims = inputs[0], params["dims"]
    p = placement_of(x)
    placement = Shard(dims.index(p.dim)) if p.is_shard() else p
    shape = tuple(x.shape[d] for d in dims)
    return run_local(cls, [x], params, placement, shape, x.sizes)


@sharding_rule(shp.BroadcastTo)
def broadcast_to(cls, inputs, params):
    x, target = inputs[0], tuple(params["shape"])
    p = placement_of(x)
    if not p.is_shard():
        return run_local(cls, [x], params, p, target)
    dim = p.dim + len(target) - x.ndim
    if target[dim] != x.shape[p.dim]:
        raise no_rule("broadcast_to", [x], f"it would expand the sharded dim {p.dim}")
    return run_local(cls, [x], {"shape": _local_shape(target, dim, x.sizes)},
                              Shard(dim), target, x.sizes)


@sharding_rule(shp.Cat)
def cat(cls, inputs, params):
    dim = params["dim"]
    placements = [placement_of(t) for t in inputs]
    shape = list(inputs[0].shape)
    shape[dim] = sum(t.shape[dim] for t in inputs)
    if all(p.is_partial() for p in placements):
        return run_local(cls, inputs, params, Partial(), shape)
    inputs = settle_partials(inputs)
    placements = [placement_of(t) for t in inputs]
    shards = {(p.dim, t.sizes) for t, p in zip(inputs, placements) if p.is_shard()}
    if not shards:
        return run_local(cls, inputs, params, placements[0], shape)
    (sharded, sizes), = shards if len(shards) == 1 else ((None, None),)
    if sharded is None or sharded == dim:
        raise no_rule("cat", inputs, "it joins along the sharded dim, or parts are sharded differently")
    parts = [t if p.is_shard() else slice_replicated(t, sharded, sizes)
             for t, p in zip(inputs, placements)]
    return run_local(cls, parts, params, Shard(sharded), shape, sizes)


# ---- getitem --------------------------------------------------------------------------------------

def _components(index, ndim: int) -> list:
    """The index as a list with Ellipsis expanded, each entry tagged with the input dim it reads
    (None for None-entries, which add a dim)."""
    parts = list(index) if isinstance(index, tuple) else [index]
    consumed = sum(_width(c) for c in parts if c is not Ellipsis and c is not None)
    if any(c is Ellipsis for c in parts):  # not `in`: that compares index arrays elementwise
        at = next(i for i, c in enumerate(parts) if c is Ellipsis)
        parts[at:at + 1] = [slice(None)] * (ndim - consumed)
    else:
        parts += [slice(None)] * (ndim - consumed)
    tagged, dim = [], 0
    for c in parts:
        tagged.append((c, None if c is None else dim))
        dim += 0 if c is None else _width(c)
    return tagged


def _width(c) -> int:
    """How many input dims an index entry consumes (a k-D bool mask consumes k)."""
    return c.ndim if getattr(c, "dtype", None) is not None and c.dtype == bool else 1


def _output_position(tagged, sharded_dim: int) -> int:
    """Where the sharded dim lands in the output (for an index array along it: where the array's
    first dim lands; NumPy may move it): index a tiny stand-in array in which only that dim has
    length 2, with every entry replaced by one of the same kind but length 1 (the array along
    the sharded dim by one of length 2)."""
    shape, probe = [], []
    for c, dim in tagged:
        if c is None:
            probe.append(None)
            continue
        if getattr(c, "ndim", 0) > 0:
            first = 2 if dim == sharded_dim and c.dtype != bool else 1
            probe.append(np.zeros((first,) + (1,) * (c.ndim - 1), dtype=c.dtype))
        else:
            probe.append(slice(None) if isinstance(c, slice) else 0)
        shape.extend([2 if dim == sharded_dim else 1] * _width(c))
    out_shape = np.zeros(shape, dtype=bool)[tuple(probe)].shape
    return out_shape.index(2)


def _slice_parts(s: slice, n: int, sizes):
    """Each rank's count of a positive-step slice over a dim split into `sizes`, and this rank's
    local slice."""
    start, stop, step = s.indices(n)
    counts, local, lo = [], slice(0, 0), 0
    for r, size in enumerate(sizes):
        hi = min(lo + size, stop)
        first = max(0, -(-(lo - start) // step))
        end = max(0, -(-(hi - start) // step))
        count = max(0, end - first)
        counts.append(count)
        if r == group().rank and count:
            begin = start + first * step - lo
            local = slice(begin, begin + (count - 1) * step + 1, step)
        lo += size
    return tuple(counts), local


@sharding_rule(GetItem)
def getitem(cls, inputs, params):
    """Slices along the sharded dim keep each rank's own part (no communication); an int there
    leaves the value on its owner, so the result is Partial (other ranks hold zeros); so does an
    integer array, each rank picking the entries it owns. A sharded index tensor looks up its own
    rows (`lookup`)."""
    x, index = inputs[0], params["index"]
    parts = index if isinstance(index, tuple) else (index,)
    split = [t for t in parts if isinstance(t, Tensor) and not placement_of(t).is_replicate()]
    if split:
        if isinstance(index, Tensor) and placement_of(index).is_shard():
            return lookup(cls, x, index)
        raise no_rule("getitem", [x, *split], "an index tensor is sharded or partial, so each rank "
                                              "holds only part of it")
    index = normalize_index(index, x.data)
    p = placement_of(x)
    if not p.is_shard():
        out = cls.apply_local((x,), params)
        return DTensor._wrap(out, p, out.data.shape)
    tagged = _components(index, x.ndim)
    at = next(i for i, (c, dim) in enumerate(tagged) if dim is not None and dim <= p.dim < dim + _width(c))
    entry = tagged[at][0]
    local_parts = [c for c, _ in tagged]
    n = x.shape[p.dim]
    if isinstance(entry, slice):
        start, stop, step = entry.indices(n)
        if step < 0:
            raise no_rule("getitem", [x], f"a negative step along the sharded dim {p.dim}")
        sizes, local_parts[at] = _slice_parts(entry, n, x.sizes)
        position = _output_position(tagged, p.dim)
        out = cls.apply_local((x,), {"index": tuple(local_parts)})
        shape = list(out.data.shape)
        shape[position] = sum(sizes)
        return DTensor._wrap(out, Shard(position), shape, sizes)
    if getattr(entry, "ndim", 0) == 0 and not isinstance(entry, (bool, np.bool_)):
        i = int(entry)
        if not -n <= i < n:
            raise IndexError(f"getitem: index {i} is out of range for dim {p.dim} of size {n}")
        i %= n
        lo, hi = local_range(x.sizes)
        local_parts[at] = slice(i - lo, i - lo + 1) if lo <= i < hi else slice(0, 0)
        kept = [c if k != at else slice(None) for k, (c, _) in enumerate(tagged)]
        position = _output_position(_components(tuple(kept), x.ndim), p.dim)
        picked = cls.apply_local((x,), {"index": tuple(local_parts)})
        out = _summed_like(x, picked, (position,))
        return DTensor._wrap(out, Partial(), out.data.shape)
    arrays = [c for c, _ in tagged if getattr(c, "ndim", 0) > 0]
    if len(arrays) == 1 and entry.dtype.kind in "iu":
        return _pick_owned(cls, x, tagged, at, p.dim)
    raise no_rule("getitem", [x], f"a mask, or several index arrays, along the sharded dim {p.dim}")


def _summed_like(x, t, axes):
    """t summed over `axes` (all when None) in x's dtype: a sum of bools or int32 would widen
    to int64, where one process's indexing keeps x's dtype."""
    out = red.Sum.apply_local((t,), {"axes": axes, "keepdim": False})
    return out if out.dtype == x.dtype else un.Cast.apply_local((out,), {"dtype": x.dtype})


def _pick_owned(cls, x, tagged, at: int, dim: int):
    """x[..., index, ...] for one integer array `index` along the sharded dim: each rank picks
    the entries it owns and zeros the others, so the sum over ranks is the result: Partial (a
    vocabulary-parallel lookup). Every rank records the same ops, so backward stays collective."""
    index, n = tagged[at][0], x.shape[dim]  # x.shape: the global shape
    # On a GPU the indices are not read back to check them (a host sync): an out-of-range one
    # wraps around, as in CuPy's own indexing.
    if host_checks(index) and index.size and not (-n <= index.min() and index.max() < n):
        raise IndexError(f"getitem: an index in {index.tolist()} is out of range for dim {dim} "
                         f"of size {n}")
    index = index % n
    lo, hi = local_range(x.sizes)
    parts, position = [c for c, _ in tagged], _output_position(tagged, dim)
    if hi == lo:  # no entries here: zeros shaped like the result, still on the graph
        parts[at] = np.zeros(index.shape, dtype=np.intp)
        shape = np.broadcast_to(np.zeros((), bool), x.shape)[tuple(parts)].shape
        nothing = _summed_like(x, x, None)  # 0: there are no elements here
        out = shp.BroadcastTo.apply_local((nothing,), {"shape": shape})
        return DTensor._wrap(out, Partial(), shape)
    owned = (index >= lo) & (index < hi)
    parts[at] = array_module(index).where(owned, index - lo, 0)
    picked = cls.apply_local((x,), {"index": tuple(parts)})
    keep = owned.reshape((1,) * position + index.shape + (1,) * (picked.ndim - position - index.ndim))
    out = ew.Mul.apply_local((picked, Tensor._make(keep.astype(picked.dtype), False, None)), {})
    return DTensor._wrap(out, Partial(), out.shape)


def lookup(cls, table, index):
    """table[index] with one Shard(d) integer index tensor and a replicated table (an embedding
    in data parallelism): each rank looks up its own indices, so the rows come out sharded along
    d; the table's gradient shares are summed over ranks like any replicated weight's."""
    if not placement_of(table).is_replicate():
        raise no_rule("getitem", [table, index], "looking up a sharded table by sharded indices")
    if index.dtype.kind not in "iu":
        raise no_rule("getitem", [table, index], "a sharded index must hold integers")
    local = cls.apply_local((use_replicated(table),), {"index": index.data})
    shape = index.shape + table.shape[1:]
    return DTensor._wrap(local, index.placement, shape, index.sizes)
