"""Comparisons and logic: bool (or index) tensors, never differentiated."""
from __future__ import annotations

import operator

from ..autograd import Function
from ..tensor import Tensor
from .dims import as_tensor_like, normalize_dim, reduction_dims, same_device


class Compare(Function):
    """a <op> b elementwise, as bools (no gradient)."""

    differentiable = False

    def forward(self, a, b, compare):
        return compare(a, b)


class LogicalNot(Function):
    """not x elementwise (no gradient)."""

    differentiable = False

    def forward(self, x):
        return ~x.astype(bool)


class AnyAll(Function):
    """any/all over axes (no gradient)."""

    differentiable = False

    def forward(self, x, axes=None, keepdim=False, every=False):
        return (x.all if every else x.any)(axis=axes, keepdims=keepdim)


class ArgExtreme(Function):
    """Index of the largest/smallest value along one axis, or of the flattened tensor."""

    differentiable = False

    def forward(self, x, dim=None, keepdim=False, largest=True):
        pick = x.argmax if largest else x.argmin
        return pick() if dim is None else pick(axis=dim, keepdims=keepdim)


def _compare(op_name: str, compare):
    def op(a, b) -> Tensor:
        if not isinstance(a, Tensor):
            a = as_tensor_like(a, b, op_name)
        elif not isinstance(b, Tensor):
            b = as_tensor_like(b, a, op_name)
        same_device(op_name, a, b)
        try:
            return Compare.apply(a, b, compare=compare)
        except ValueError:
            raise ValueError(f"{op_name}: shapes {a.shape} and {b.shape} are not broadcastable") from None

    op.__name__ = op_name
    op.__doc__ = f"Elementwise {op_name} as a bool tensor (no gradient)."
    return op


eq = _compare("eq", operator.eq)
ne = _compare("ne", operator.ne)
lt = _compare("lt", operator.lt)
le = _compare("le", operator.le)
gt = _compare("gt", operator.gt)
ge = _compare("ge", operator.ge)


def logical_not(x: Tensor) -> Tensor:
    """Elementwise not, as a bool tensor."""
    return LogicalNot.apply(x)


def any(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:  # noqa: A001
    """Whether any element (over `dim`) is true."""
    return AnyAll.apply(x, axes=reduction_dims(dim, None, x.ndim, "any"), keepdim=keepdim)


def all(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:  # noqa: A001
    """Whether every element (over `dim`) is true."""
    return AnyAll.apply(x, axes=reduction_dims(dim, None, x.ndim, "all"), keepdim=keepdim, every=True)


def check_extreme_dims(x: Tensor, dims, op: str) -> None:
    """Refuse a max/min-like reduction over an empty dim (there is nothing to pick), as PyTorch;
    `dims` None (all) or normalized. Other dims may be empty: the result is empty too."""
    empty = [d for d in (range(x.ndim) if dims is None else dims) if x.shape[d] == 0]
    if empty or dims is None and x.numel() == 0:
        where = "" if dims is None else f" along dim {empty[0]}"
        raise ValueError(
            f"{op}: the tensor of shape {x.shape} is empty{where}; there is no extreme value. "
            "Reduce over dims of non-zero length only"
        )


def _arg(x: Tensor, dim, keepdim, largest: bool, op: str) -> Tensor:
    if dim is not None:
        dim = normalize_dim(dim, x.ndim, op)
    check_extreme_dims(x, None if dim is None or x.ndim == 0 else (dim,), op)
    return ArgExtreme.apply(x, dim=dim, keepdim=keepdim, largest=largest)


def argmax(x: Tensor, dim=None, keepdim=False) -> Tensor:
    """Index of the largest value (flattened when dim is None); no gradient."""
    return _arg(x, dim, keepdim, True, "argmax")


def argmin(x: Tensor, dim=None, keepdim=False) -> Tensor:
    """Index of the smallest value (flattened when dim is None); no gradient."""
    return _arg(x, dim, keepdim, False, "argmin")
