"""Reductions over one or more dims. `dim` may be an int, a tuple, negative or None (all dims);
NumPy's `axis=`/`keepdims=` spellings are accepted too, so GT code runs unchanged."""
from __future__ import annotations

import builtins
from collections import namedtuple

from ..autograd import Function
from ..backends import array_module
from ..tensor import Tensor
from .comparison import argmax, argmin, check_extreme_dims
from .dims import keep, normalize_dim, reduction_dims
from .elementwise import maximum, minimum
from .unary import cast, sqrt


def _regrow(g, shape, axes, keepdim):
    """A reduced gradient reshaped so it broadcasts against the input of `shape`."""
    if axes is None:
        return g.reshape((1,) * len(shape))
    if keepdim:
        return g
    return g.reshape(tuple(1 if i in axes else n for i, n in enumerate(shape)))


def _reduced_shape(shape, axes) -> tuple:
    return () if axes is None else tuple(n for i, n in enumerate(shape) if i not in axes)


def _peak(x, axes):
    """x's max over axes, kept as size-1 dims. An empty x has none (NumPy refuses a max of
    nothing); its sum, 0 in the same shape, shifts nothing instead."""
    return x.max(axis=axes, keepdims=True) if x.size else x.sum(axis=axes, keepdims=True)


def _count(shape, axes) -> int:
    if axes is None:
        axes = range(len(shape))
    n = 1
    for a in axes:
        n *= shape[a]
    return n


class Sum(Function):
    """Σ x over axes;  dx = g broadcast back over the summed axes."""

    def forward(self, x, axes=None, keepdim=False):
        self.shape, self.axes, self.keepdim = x.shape, axes, keepdim
        return x.sum(axis=axes, keepdims=keepdim)

    def backward(self, g):
        g = _regrow(g, self.shape, self.axes, self.keepdim)
        return array_module(g).broadcast_to(g, self.shape)


class Mean(Function):
    """Σ x / N over axes;  dx = g / N broadcast back."""

    def forward(self, x, axes=None, keepdim=False):
        self.shape, self.axes, self.keepdim = x.shape, axes, keepdim
        return x.mean(axis=axes, keepdims=keepdim)

    def backward(self, g):
        g = _regrow(g, self.shape, self.axes, self.keepdim) / _count(self.shape, self.axes)
        return array_module(g).broadcast_to(g, self.shape)


class Extreme(Function):
    """max of x over axes (min if largest=False);  dx = g shared among the elements equal to it."""

    def forward(self, x, axes=None, keepdim=False, largest=True):
        out = x.max(axis=axes, keepdims=True) if largest else x.min(axis=axes, keepdims=True)
        # the ties are found in backward, if it runs: the graph keeps x alive anyway
        self.x, self.out = x, out.copy()  # a copy: a later in-place write must not move the max
        self.shape, self.axes, self.keepdim = x.shape, axes, keepdim
        return out if keepdim else out.reshape(_reduced_shape(x.shape, axes))

    def backward(self, g):
        hits = self.x == self.out
        share = hits / hits.sum(axis=self.axes, keepdims=True, dtype=self.x.dtype)
        return _regrow(g, self.shape, self.axes, self.keepdim) * share


class ExtremeAlongDim(Function):
    """max (min when largest=False) along one dim, with its index;  dx = g at that index, else 0."""

    def forward(self, x, dim, keepdim=False, largest=True):
        xp = array_module(x)
        index = (x.argmax if largest else x.argmin)(axis=dim)
        self.index = xp.expand_dims(index, dim)
        self.shape, self.dim, self.keepdim = x.shape, dim, keepdim
        values = xp.take_along_axis(x, self.index, axis=dim)
        return values if keepdim else values.squeeze(dim)

    def backward(self, g):
        xp = array_module(g)
        out = xp.zeros(self.shape, dtype=g.dtype)
        g = g if self.keepdim else xp.expand_dims(g, self.dim)
        xp.put_along_axis(out, self.index, g, axis=self.dim)
        return out


class Var(Function):
    """Σ (x - mean)² / (N - correction);  dx = g * 2 (x - mean) / (N - correction)"""

    def forward(self, x, axes=None, keepdim=False, correction=1):
        self.centered = x - x.mean(axis=axes, keepdims=True)
        self.divisor = builtins.max(_count(x.shape, axes) - correction, 0)  # max() here is the op
        self.shape, self.axes, self.keepdim = x.shape, axes, keepdim
        squares = (self.centered * self.centered).sum(axis=axes, keepdims=keepdim)
        return squares / self.divisor if self.divisor else squares * float("inf")  # x/0, as PyTorch

    def backward(self, g):
        scale = 2 / self.divisor if self.divisor else float("inf")  # N <= correction: x/0, as PyTorch
        return _regrow(g, self.shape, self.axes, self.keepdim) * scale * self.centered


class LogSumExp(Function):
    """log Σ e^x over axes (shifted by the max for stability);  dx = g * softmax(x)"""

    def forward(self, x, axes=None, keepdim=False):
        xp = array_module(x)
        peak = _peak(x, axes)
        peak = xp.where(xp.isfinite(peak), peak, 0)
        exps = xp.exp(x - peak)
        total = exps.sum(axis=axes, keepdims=True)
        self.softmax = exps / total
        self.shape, self.axes, self.keepdim = x.shape, axes, keepdim
        out = xp.log(total) + peak
        return out if keepdim else out.reshape(_reduced_shape(x.shape, axes))

    def backward(self, g):
        return _regrow(g, self.shape, self.axes, self.keepdim) * self.softmax


class Softmax(Function):
    """y = e^x / Σ e^x along dim;  dx = y * (g - Σ g y)"""

    def forward(self, x, dim):
        xp = array_module(x)
        exps = xp.exp(x - _peak(x, dim))
        self.out, self.dim = exps / exps.sum(axis=dim, keepdims=True), dim
        return self.out

    def backward(self, g):
        return self.out * (g - (g * self.out).sum(axis=self.dim, keepdims=True))


class LogSoftmax(Function):
    """y = x - log Σ e^x along dim;  dx = g - e^y Σ g"""

    def forward(self, x, dim):
        xp = array_module(x)
        shifted = x - _peak(x, dim)
        self.out = shifted - xp.log(xp.exp(shifted).sum(axis=dim, keepdims=True))
        self.dim = dim
        return self.out

    def backward(self, g):
        xp = array_module(g)
        return g - xp.exp(self.out) * g.sum(axis=self.dim, keepdims=True)


def _reduce(fn_class, op, x, dim, keepdim, axis, keepdims, **params) -> Tensor:
    axes = reduction_dims(dim, axis, x.ndim, op)
    return fn_class.apply(x, axes=axes, keepdim=keep(keepdim, keepdims), **params)


def sum(x: Tensor, dim=None, keepdim=False, *, axis=None, keepdims=False) -> Tensor:  # noqa: A001
    """Sum over `dim` (int, tuple or None for all)."""
    return _reduce(Sum, "sum", x, dim, keepdim, axis, keepdims)


def mean(x: Tensor, dim=None, keepdim=False, *, axis=None, keepdims=False) -> Tensor:
    """Mean over `dim`."""
    if x.dtype.kind not in "fc":
        raise TypeError(f"mean: needs a floating-point tensor, got {x.dtype}; call .float() first")
    return _reduce(Mean, "mean", x, dim, keepdim, axis, keepdims)


def _extreme(x, dim, keepdim, axis, keepdims, largest, op) -> Tensor:
    axes = reduction_dims(dim, axis, x.ndim, op)
    check_extreme_dims(x, axes, op)
    return Extreme.apply(x, axes=axes, keepdim=keep(keepdim, keepdims), largest=largest)


def amax(x: Tensor, dim=None, keepdim=False, *, axis=None, keepdims=False) -> Tensor:
    """Largest value over `dim`; ties share the gradient."""
    return _extreme(x, dim, keepdim, axis, keepdims, True, "amax")


def amin(x: Tensor, dim=None, keepdim=False, *, axis=None, keepdims=False) -> Tensor:
    """Smallest value over `dim`; ties share the gradient."""
    return _extreme(x, dim, keepdim, axis, keepdims, False, "amin")


MaxResult = namedtuple("MaxResult", ["values", "indices"])


def _max_or_min(x, dim, keepdim, axis, keepdims, largest, op):
    if isinstance(dim, Tensor):  # max(a, b): PyTorch's elementwise overload
        if keepdim or axis is not None or keepdims:
            raise TypeError(f"{op}: with a tensor as second argument, {op}(a, b) is elementwise "
                            "and takes no keepdim or axis")
        return (maximum if largest else minimum)(x, dim)
    if axis is not None:
        dim = axis
    if dim is None:  # the whole tensor: a single value, ties share the gradient
        check_extreme_dims(x, None, op)
        return Extreme.apply(x, axes=None, keepdim=False, largest=largest)
    if not isinstance(dim, int):
        raise TypeError(f"{op}: dim must be one int or a tensor to compare with (use amax/amin "
                        f"for several dims), got {type(dim).__name__}")
    dim = normalize_dim(dim, x.ndim, op)
    check_extreme_dims(x, (dim,) if x.ndim else None, op)
    keepdim = keep(keepdim, keepdims)
    if x.ndim == 0:  # dim 0 (or -1) of a 0-d tensor is the value itself, as in PyTorch
        values = ExtremeAlongDim.apply(x.reshape(1), dim=0, keepdim=False, largest=largest)
    else:
        values = ExtremeAlongDim.apply(x, dim=dim, keepdim=keepdim, largest=largest)
    return MaxResult(values, (argmax if largest else argmin)(x, dim, keepdim))


def max(x: Tensor, dim=None, keepdim=False, *, axis=None, keepdims=False):  # noqa: A001
    """With no dim, the largest value; with `dim`, (values, indices) along it; with a tensor in
    dim's place, the elementwise `maximum` (as PyTorch's max(a, b))."""
    return _max_or_min(x, dim, keepdim, axis, keepdims, True, "max")


def min(x: Tensor, dim=None, keepdim=False, *, axis=None, keepdims=False):  # noqa: A001
    """With no dim, the smallest value; with `dim`, (values, indices) along it; with a tensor in
    dim's place, the elementwise `minimum` (as PyTorch's min(a, b))."""
    return _max_or_min(x, dim, keepdim, axis, keepdims, False, "min")


def _variance(x, dim, unbiased, keepdim, correction, axis, keepdims, op) -> Tensor:
    if isinstance(dim, bool):  # var(x, False): PyTorch's overload whose one argument is unbiased
        if unbiased is not None or correction is not None or keepdim:
            raise TypeError(f"{op}: a bool first argument is `unbiased` (as PyTorch) and takes no "
                            f"other; to reduce a dim, call {op}(x, dim, unbiased, keepdim)")
        dim, unbiased = None, dim
    if unbiased is not None and correction is not None:
        raise TypeError(f"{op}: give unbiased or correction, not both")
    if correction is None:
        correction = 0 if unbiased is False else 1
    return _reduce(Var, op, x, dim, keepdim, axis, keepdims, correction=correction)


def var(x: Tensor, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None,
        keepdims=False) -> Tensor:
    """Variance over `dim`; divides by N - correction (default 1; `unbiased=False` means 0).
    A bool alone, var(x, False), is `unbiased`, as in PyTorch."""
    return _variance(x, dim, unbiased, keepdim, correction, axis, keepdims, "var")


def std(x: Tensor, dim=None, unbiased=None, keepdim=False, *, correction=None, axis=None,
        keepdims=False) -> Tensor:
    """Standard deviation: the square root of `var` with the same arguments."""
    return sqrt(_variance(x, dim, unbiased, keepdim, correction, axis, keepdims, "std"))


def logsumexp(x: Tensor, dim=None, keepdim=False, *, axis=None, keepdims=False) -> Tensor:
    """log Σ exp(x) over `dim`, computed without overflow."""
    return _reduce(LogSumExp, "logsumexp", x, dim, keepdim, axis, keepdims)


def softmax(x: Tensor, dim: int = -1, dtype=None) -> Tensor:
    """exp(x) / Σ exp(x) along `dim`; with `dtype`, x is cast to it first (as PyTorch)."""
    x = x if dtype is None else cast(x, dtype)
    return Softmax.apply(x, dim=normalize_dim(dim, x.ndim, "softmax"))


def log_softmax(x: Tensor, dim: int = -1, dtype=None) -> Tensor:
    """log(softmax(x)) along `dim`, computed stably; with `dtype`, x is cast to it first."""
    x = x if dtype is None else cast(x, dtype)
    return LogSoftmax.apply(x, dim=normalize_dim(dim, x.ndim, "log_softmax"))
