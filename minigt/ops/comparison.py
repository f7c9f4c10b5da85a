"""Comparisons: bool tensors, never differentiated."""
from __future__ import annotations

import operator

from ..tensor import Tensor
from .dims import as_tensor_like, same_device


def _compare(op_name: str, compare):
    def op(a, b) -> Tensor:
        if not isinstance(a, Tensor):
            a = as_tensor_like(a, b, op_name)
        elif not isinstance(b, Tensor):
            b = as_tensor_like(b, a, op_name)
        same_device(op_name, a, b)
        try:
            return Tensor._make(compare(a.data, b.data), False, None)
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
    return Tensor._make(~x.data.astype(bool), False, None)


def any(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:  # noqa: A001
    return Tensor._make(x.data.any(axis=dim, keepdims=keepdim), False, None)


def all(x: Tensor, dim=None, keepdim: bool = False) -> Tensor:  # noqa: A001
    return Tensor._make(x.data.all(axis=dim, keepdims=keepdim), False, None)
