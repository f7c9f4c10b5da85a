"""Tensor methods and operators, as one table: each is an op from `minigt.ops`."""
from __future__ import annotations

from . import ops
from .tensor import Tensor


def _reflected(op):
    def method(self, other):
        return op(other, self)

    return method


METHODS = {
    # operators
    "__add__": ops.add, "__radd__": _reflected(ops.add),
    "__sub__": ops.sub, "__rsub__": _reflected(ops.sub),
    "__mul__": ops.mul, "__rmul__": _reflected(ops.mul),
    "__truediv__": ops.div, "__rtruediv__": _reflected(ops.div),
    "__pow__": ops.pow, "__rpow__": _reflected(ops.pow),
    "__matmul__": ops.matmul, "__rmatmul__": _reflected(ops.matmul),
    "__neg__": ops.neg, "__abs__": ops.abs, "__getitem__": ops.getitem,
    "__eq__": ops.eq, "__ne__": ops.ne, "__lt__": ops.lt, "__le__": ops.le,
    "__gt__": ops.gt, "__ge__": ops.ge, "__invert__": ops.logical_not,
    # named methods
    "add": ops.add, "sub": ops.sub, "mul": ops.mul, "div": ops.div, "pow": ops.pow,
    "neg": ops.neg, "exp": ops.exp, "log": ops.log, "sqrt": ops.sqrt, "rsqrt": ops.rsqrt,
    "abs": ops.abs, "tanh": ops.tanh, "sigmoid": ops.sigmoid, "relu": ops.relu, "gelu": ops.gelu,
    "sin": ops.sin, "cos": ops.cos, "clamp": ops.clamp, "clip": ops.clamp,
    "maximum": ops.maximum, "minimum": ops.minimum, "masked_fill": ops.masked_fill,
    "clone": ops.clone,
    "sum": ops.sum, "mean": ops.mean, "max": ops.max, "min": ops.min, "amax": ops.amax,
    "amin": ops.amin, "var": ops.var, "std": ops.std, "logsumexp": ops.logsumexp,
    "softmax": ops.softmax, "log_softmax": ops.log_softmax, "argmax": ops.argmax,
    "argmin": ops.argmin, "any": ops.any, "all": ops.all,
    # sizes spread out, as one tuple or by keyword: x.reshape(2, 3), ((2, 3)), (shape=(2, 3))
    "reshape": ops.reshape, "view": ops.reshape, "permute": ops.permute,
    "expand": ops.expand, "broadcast_to": ops.broadcast_to,
    "transpose": ops.transpose, "flatten": ops.flatten, "squeeze": ops.squeeze,
    "unsqueeze": ops.unsqueeze, "split": ops.split, "chunk": ops.chunk, "matmul": ops.matmul,
    "eq": ops.eq, "ne": ops.ne, "lt": ops.lt, "le": ops.le, "gt": ops.gt, "ge": ops.ge,
}

for _name, _op in METHODS.items():
    setattr(Tensor, _name, _op)


def _T(self) -> Tensor:
    """The tensor with its dims reversed (the transpose of a matrix)."""
    return ops.permute(self, *reversed(range(self.ndim)))


Tensor.T = property(_T)
