"""Checking and normalising `dim` arguments, and turning Python scalars into tensors."""
from __future__ import annotations

import numbers

import numpy as np

from ..backends import array_module, device_of
from ..tensor import Tensor, not_a_tensor


def normalize_dim(dim, ndim: int, op: str) -> int:
    """A dim in [0, ndim), accepting negatives; a clear IndexError otherwise."""
    if not isinstance(dim, numbers.Integral):
        raise TypeError(f"{op}: dim must be an int, got {type(dim).__name__}")
    if not -max(ndim, 1) <= dim < max(ndim, 1):
        raise IndexError(
            f"{op}: dim {dim} is out of range for a tensor with {ndim} dim(s); "
            f"use a dim in [{-max(ndim, 1)}, {max(ndim, 1) - 1}]"
        )
    return dim % max(ndim, 1)


def reduction_dims(dim, axis, ndim: int, op: str):
    """`dim` (or NumPy's `axis`) as a sorted tuple of axes, or None for all."""
    if axis is not None:
        if dim is not None:
            raise TypeError(f"{op}: give dim or axis, not both")
        dim = axis
    if dim is None:
        return None
    dims = (dim,) if isinstance(dim, numbers.Integral) else tuple(dim)
    normalized = tuple(sorted(normalize_dim(d, ndim, op) for d in dims))
    if len(set(normalized)) != len(normalized):
        raise ValueError(f"{op}: dim {dim} repeats an axis")
    if ndim == 0:
        return None
    return normalized


def keep(keepdim, keepdims) -> bool:
    """PyTorch's keepdim or NumPy's keepdims."""
    return bool(keepdim or keepdims)


_constants: dict = {}  # (float, dtype) -> its read-only 0-d host tensor: x * 0.5 in a loop
_MAX_CONSTANTS = 256


def as_tensor_like(value, like: Tensor, op: str) -> Tensor:
    """`value` as a tensor usable with `like`: Python numbers take `like`'s dtype when the kind
    allows it (a float32 tensor times 2.0 stays float32), as in PyTorch."""
    if isinstance(value, Tensor):
        return value
    if type(value) is float and type(like.data) is np.ndarray and value:  # x * 0.5: made once
        dtype = like.data.dtype if like.data.dtype.kind == "f" else np.float32
        made = _constants.get((value, dtype))  # 0.0 and -0.0 compare equal: never stored
        if made is None:
            made = Tensor._make(np.asarray(value, dtype=dtype), False, None)
            made.data.flags.writeable = False  # shared by every graph that used it
            if len(_constants) < _MAX_CONSTANTS and value == value:  # NaN never matches itself
                _constants[value, dtype] = made
        return made
    xp = array_module(like.data)
    kind = like.data.dtype.kind
    if type(value) is float:
        dtype = like.data.dtype if kind == "f" else np.float32
    elif isinstance(value, (bool, np.bool_)):
        dtype = like.data.dtype if like.data.dtype.kind != "b" else np.bool_
    elif isinstance(value, numbers.Integral):
        dtype = like.data.dtype if like.data.dtype.kind in "iuf" else np.int64
    elif isinstance(value, numbers.Real):
        dtype = like.data.dtype if like.data.dtype.kind == "f" else np.float32
    elif isinstance(value, (np.ndarray, list, tuple)) or array_module(value) is not np:
        if isinstance(value, (list, tuple)) and _holds_tensor(value):  # max(x, dim)'s pair, say
            raise TypeError(
                f"{op}: cannot combine a tensor with a {type(value).__name__} of tensors. "
                "max/min along a dim return (values, indices): take .values, or use amax/amin; "
                "several tensors make one with stack"
            )
        return Tensor(value, device=like.device)
    else:
        raise not_a_tensor(value, f"{op}: cannot combine a tensor with")
    return Tensor._make(xp.asarray(value, dtype=dtype), False, None)


def _holds_tensor(values) -> bool:
    """Whether a (nested) list or tuple has a Tensor anywhere in it."""
    return any(isinstance(v, Tensor) or isinstance(v, (list, tuple)) and _holds_tensor(v)
               for v in values)


def same_device(op: str, *tensors: Tensor) -> None:
    """Raise when tensors live on different devices (no silent copies)."""
    first = tensors[0].data
    for t in tensors[1:]:
        if type(t.data) is not type(first) or (  # fast path: two NumPy arrays
            type(first) is not np.ndarray and device_of(t.data) != device_of(first)
        ):
            for u in tensors:  # a NumPy array's .data is a memoryview: not another device
                if not isinstance(u, Tensor):
                    raise not_a_tensor(u, f"{op}: expected minigt tensors, got")
            devices = ", ".join(device_of(u.data) for u in tensors)
            raise RuntimeError(
                f"{op}: tensors are on different devices ({devices}); move them with .to(device) first"
            )
