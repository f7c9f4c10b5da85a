"""Tensor methods and operators that run ops: the table maps each name to an op from
`minigt.ops`; conversions and indexed assignment, which also need ops, are defined below it.
(tensor.py keeps what needs no op, so the engine does not import the ops built on it.)"""
from __future__ import annotations

import numpy as np

from . import autograd, ops
from .backends import parse_device
from .ops.dims import normalize_dim
from .ops.indexing import normalize_index
from .ops.unary import cast, to_device_op
from .tensor import Tensor, _unwrap


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



# PyTorch's memory formats, by name (torch's own objects print as "torch.<name>") -> the dims
# a tensor needs for it. Arrays here are laid out as their backend sees fit, so none moves data.
MEMORY_FORMATS = {"preserve_format": None, "contiguous_format": None, "channels_last": 4,
                  "channels_last_3d": 5}


def to(self, *args, device=None, dtype=None, non_blocking=False, copy=False,
       memory_format=None) -> Tensor:
    """A copy on another device ('cpu', 'cuda', 'cuda:N') and/or of another dtype, as PyTorch's
    to(device, dtype), to(dtype) or to(other_tensor), each with non_blocking and copy after.

    Returns `self` when nothing changes, unless copy=True. Differentiable in dtype (the gradient
    is cast back). non_blocking is accepted and ignored: copies here are synchronous.
    """
    args = list(args)
    if args and isinstance(args[0], Tensor):  # t.to(other): other's device and dtype
        other = args.pop(0)
        device, dtype = _once("device", device, other.device), _once("dtype", dtype, other.dtype)
    else:
        if args and (args[0] is None or isinstance(args[0], str)):
            device = _once("device", device, args.pop(0))
        if args and not isinstance(args[0], bool):
            dtype = _once("dtype", dtype, args.pop(0))
    if len(args) > 2 or not all(isinstance(a, bool) for a in args):
        raise TypeError(f"to: expected (device, dtype, non_blocking, copy), (dtype, non_blocking, "
                        f"copy) or (tensor, non_blocking, copy), got {tuple(args)} after them")
    copy = args[1] if len(args) == 2 else copy
    _check_memory_format(self, memory_format)
    out = self
    device = parse_device(device) if device is not None else self.device
    if device != self.device:
        out = to_device_op(out, device)
    dtype = np.dtype(dtype) if dtype is not None else out.dtype
    if dtype != out.dtype:
        out = cast(out, dtype)
    return ops.clone(out) if copy and out is self else out


def _once(name: str, keyword, positional):
    if keyword is not None:
        raise TypeError(f"to: {name} given twice, as an argument and as {name}=")
    return positional


def _check_memory_format(t: Tensor, memory_format) -> None:
    if memory_format is None:
        return
    name = str(memory_format).removeprefix("torch.")
    if name not in MEMORY_FORMATS:
        raise ValueError(f"to: unknown memory_format {memory_format!r}; expected one of "
                         f"{', '.join(MEMORY_FORMATS)} (by name, or PyTorch's own)")
    needed = MEMORY_FORMATS[name]
    if needed is not None and t.ndim != needed:
        raise ValueError(f"to: memory_format {name} needs a tensor with {needed} dims, got shape "
                         f"{t.shape}")


def cuda(self, device: int | None = None) -> Tensor:
    """A copy on GPU `device` (the current one by default)."""
    return self.to("cuda" if device is None else f"cuda:{device}")


def _converter(target, doc: str):
    def convert(self) -> Tensor:
        return self.to(target)

    convert.__doc__ = doc
    return convert


def size(self, dim: int | None = None):
    """The shape, or one dim's length (PyTorch's spelling)."""
    if dim is None:
        return self.shape
    return self.shape[normalize_dim(dim, self.ndim, "size")]


def setitem(self, index, value) -> None:
    """self[index] = value, outside the graph."""
    self._check_inplace("__setitem__")
    if isinstance(value, Tensor) and value.requires_grad and autograd.is_grad_enabled():
        raise RuntimeError(
            f"__setitem__: the value (shape {value.shape}) requires grad, and assignment into a "
            "tensor is not differentiable here. Build the result out of place (minigt.cat, "
            "minigt.where), or assign value.detach() if no gradient should flow."
        )
    value = _unwrap(value)
    self.data[normalize_index(index, self.data)] = value
    self._bump_version()


def _T(self) -> Tensor:
    """The tensor with its dims reversed (the transpose of a matrix)."""
    return ops.permute(self, *reversed(range(self.ndim)))


METHODS.update({
    "to": to, "cuda": cuda, "size": size, "__setitem__": setitem,
    "cpu": _converter("cpu", "A copy in host memory (self when already there)."),
    "float": _converter(np.float32, "As float32 (differentiable)."),
    "double": _converter(np.float64, "As float64 (differentiable)."),
    "long": _converter(np.int64, "As int64 (no gradient flows through an integer result)."),
    "int": _converter(np.int32, "As int32."),
    "bool": _converter(np.bool_, "As bool."),
})

for _name, _op in METHODS.items():
    setattr(Tensor, _name, _op)
Tensor.T = property(_T)
