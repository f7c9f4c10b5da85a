"""Largest and smallest values over a sharded dim without gathering the data: each rank reduces
its own part, and one small MAX (MIN) all-reduce of those results gives the answer; any/all are
the same with logical or/and. Positions (argmax/argmin, and where max(dim) sends its gradient)
add each rank's offset, and ties go to the lowest global index, as in one process. An empty part
contributes the reduction's identity. (NaN ordering across ranks is not defined here.)
"""
from __future__ import annotations

import numpy as np

from ..autograd import Function
from ..backends import array_module
from ..ops import reductions as red
from . import collectives
from .dtensor import group, local_range


def _identity(dtype, largest: bool):
    """What an empty part contributes: the dtype's smallest value to a max, largest to a min."""
    if dtype.kind == "f":
        return -np.inf if largest else np.inf
    if dtype.kind == "b":
        return not largest
    info = np.iinfo(dtype)
    return info.min if largest else info.max


def _part_extreme(x, axes, largest: bool):
    """This rank's max (min) over `axes` (None = all), dims kept."""
    if x.size:
        return (x.max if largest else x.min)(axis=axes, keepdims=True)
    shape = tuple(1 if axes is None or i in axes else n for i, n in enumerate(x.shape))
    return array_module(x).full(shape, _identity(x.dtype, largest), dtype=x.dtype)


def _all_extreme(array, largest: bool):
    return collectives.all_reduce(array, "max" if largest else "min", group=group())


class ShardedExtreme(Function):
    """max (min if largest=False) over axes that include the sharded dim: each part's, then a
    MAX (MIN) all-reduce;  dx = g shared among the elements equal to it, counted on all ranks."""

    def forward(self, x, axes=None, keepdim=False, largest=True):
        out = _all_extreme(_part_extreme(x, axes, largest), largest)
        self.x, self.out, self.axes, self.keepdim = x, out, axes, keepdim
        return out if keepdim else out.reshape(red._reduced_shape(x.shape, axes))

    def backward(self, g):
        hits = self.x == self.out
        count = collectives.all_reduce(hits.sum(axis=self.axes, keepdims=True, dtype=self.x.dtype),
                                       "sum", group=group())
        return red._regrow(g, self.x.shape, self.axes, self.keepdim) * (hits / count)


class ShardedAnyAll(Function):
    """any (all if every) over axes that include the sharded dim: each part's, then a logical
    or (and) all-reduce (no gradient)."""

    differentiable = False

    def forward(self, x, axes=None, keepdim=False, every=False):
        part = (x.all if every else x.any)(axis=axes, keepdims=True)
        out = collectives.all_reduce(part, "min" if every else "max", group=group())
        return out if keepdim else out.reshape(red._reduced_shape(x.shape, axes))


def _extreme_along(x, dim: int, largest: bool, sizes):
    """(values, global indices) of x's max (min) along the sharded `dim`, dims kept. Each rank
    offers its first extreme position when its value is the global one; the smallest wins."""
    xp = array_module(x)
    values = _all_extreme(_part_extreme(x, (dim,), largest), largest)
    start, _ = local_range(sizes)
    unclaimed = np.iinfo(np.int64).max
    if x.shape[dim]:
        position = (x.argmax if largest else x.argmin)(axis=dim, keepdims=True)
        mine = xp.take_along_axis(x, position, axis=dim) == values
        offer = xp.where(mine, position.astype(np.int64) + start, unclaimed)
    else:
        offer = xp.full(values.shape, unclaimed, dtype=np.int64)
    return values, collectives.all_reduce(offer, "min", group=group())


class ShardedExtremeAlongDim(Function):
    """max (min if largest=False) along the sharded dim, with its global index;  dx = g at that
    index on the rank that owns it, 0 elsewhere."""

    def forward(self, x, dim, keepdim=False, largest=True, sizes=None):
        values, index = _extreme_along(x, dim, largest, sizes)
        self.shape, self.dim, self.keepdim = x.shape, dim, keepdim
        self.local_index = index - local_range(sizes)[0]
        return values if keepdim else values.squeeze(dim)

    def backward(self, g):
        xp = array_module(g)
        out = xp.zeros(self.shape, dtype=g.dtype)
        if self.shape[self.dim]:
            g = g if self.keepdim else xp.expand_dims(g, self.dim)
            owned = (self.local_index >= 0) & (self.local_index < self.shape[self.dim])
            at = xp.where(owned, self.local_index, 0)  # a column owned elsewhere gets its 0 here
            xp.put_along_axis(out, at, xp.where(owned, g, 0), axis=self.dim)
        return out


class ShardedArgExtreme(Function):
    """Global index of the largest (smallest) value along the sharded dim (no gradient)."""

    differentiable = False

    def forward(self, x, dim, keepdim=False, largest=True, sizes=None):
        _, index = _extreme_along(x, dim, largest, sizes)
        return index if keepdim else index.squeeze(dim)
