"""x[index]: ints, slices (any step), None, Ellipsis, integer arrays/tensors and boolean masks."""
from __future__ import annotations

import numbers

from .. import autograd
from ..autograd import Function
from ..backends import array_module, scatter_add
from ..tensor import Tensor


def normalize_index(index, data):
    """The index with tensors and lists turned into arrays of `data`'s backend, checked."""
    xp = array_module(data)
    parts = index if isinstance(index, tuple) else (index,)
    out = []
    for part in parts:
        if isinstance(part, Tensor):
            part = part.data
        elif isinstance(part, list):
            part = xp.asarray(part)
            if part.size == 0:
                part = part.astype(int)
        if hasattr(part, "dtype") and not isinstance(part, numbers.Number):
            if part.dtype.kind not in "biu":
                raise IndexError(
                    f"getitem: index arrays must be integers or bools, got {part.dtype}; "
                    "convert with .long()"
                )
            part = xp.asarray(part)
        out.append(part)
    return tuple(out) if isinstance(index, tuple) else out[0]


def _is_basic(index) -> bool:
    """True when the index has no arrays, so no element can be selected twice."""
    parts = index if isinstance(index, tuple) else (index,)
    return not any(hasattr(p, "dtype") and getattr(p, "ndim", 0) > 0 for p in parts)


class GetItem(Function):
    """x[index];  dx = zeros with g added at the selected places (repeats accumulate)."""

    def forward(self, x, index):
        self.shape, self.dtype, self.index = x.shape, x.dtype, index
        self.output_is_view = _is_basic(index)  # index arrays make NumPy copy
        return x[index]

    def backward(self, g):
        out = array_module(g).zeros(self.shape, dtype=g.dtype)
        if self.output_is_view:  # basic: no element is selected twice
            out[self.index] = g
        else:
            scatter_add(out, self.index, g)
        return out


def getitem(x: Tensor, index) -> Tensor:
    """Select elements as NumPy indexing does; differentiable (repeated indices accumulate)."""
    if _holds_placed_tensor(index):  # a sharded index (an embedding lookup, say): only
        return autograd.sharded_dispatch(GetItem, (x,), {"index": index})  # its rule knows
    index = normalize_index(index, x.data)
    try:
        return GetItem.apply(x, index=index)
    except IndexError as error:
        raise IndexError(f"getitem: index {_describe(index)} is invalid for shape {x.shape}: {error}") from None


def _holds_placed_tensor(index) -> bool:
    parts = index if isinstance(index, tuple) else (index,)
    return any(isinstance(p, Tensor) and p.placement is not None for p in parts)


def _describe(index) -> str:
    parts = index if isinstance(index, tuple) else (index,)
    return "[" + ", ".join(
        f"array{tuple(p.shape)}" if getattr(p, "ndim", 0) > 0 else repr(p) for p in parts
    ) + "]"
