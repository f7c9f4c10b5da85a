"""Binary elementwise ops (and where, clamp). They broadcast; their backward returns gradients of
the broadcast shape and the engine sums them down to each input's shape
(`autograd.reduce_to_shape`). Unary ops live in unary.py."""
from __future__ import annotations

import numpy as np

from ..autograd import Function
from ..backends import array_module
from ..tensor import Tensor
from .dims import as_tensor_like, same_device
from .unary import cast


def _binary(fn_class, a, b, op: str, **params) -> Tensor:
    """Apply a two-input op, turning scalars into tensors and naming both shapes on a mismatch."""
    if not isinstance(a, Tensor):
        a = as_tensor_like(a, b, op)
    elif not isinstance(b, Tensor):
        b = as_tensor_like(b, a, op)
    if type(a.data) is not np.ndarray or type(b.data) is not np.ndarray:  # skip a call per op
        same_device(op, a, b)
    if a.data.dtype != b.data.dtype:
        a, b = promote(a, b)
    try:
        return fn_class.apply(a, b, **params) if params else fn_class.apply(a, b)
    except ValueError:
        _check_broadcastable(op, a, b)
        raise


def _check_broadcastable(op: str, *tensors: Tensor) -> None:
    """A clear error naming every shape when the tensors do not broadcast together."""
    try:
        np.broadcast_shapes(*(t.shape for t in tensors))
    except ValueError:
        raise ValueError(
            f"{op}: shapes {' and '.join(str(t.shape) for t in tensors)} are not broadcastable; "
            "each dim (aligned from the right) must match or be 1"
        ) from None


def promote(*tensors: Tensor) -> tuple:
    """Operands of different dtypes in one, by casts recorded in the graph (so each gradient
    comes back in its operand's dtype): integer and bool operands take the float operands' dtype
    (float32 stays float32, as in PyTorch; NumPy alone would give float64), and of floats the
    narrower take the widest's. Other mixes are left to NumPy."""
    kinds = {t.data.dtype.kind for t in tensors}
    if "f" not in kinds or not kinds <= set("fbiu"):
        return tensors
    dtype = np.result_type(*(t.data.dtype for t in tensors if t.data.dtype.kind == "f"))
    return tuple(t if t.data.dtype == dtype else cast(t, dtype) for t in tensors)


class Add(Function):
    """a + b;  da = g, db = g"""

    def forward(self, a, b):
        return a + b

    def backward(self, g):
        return g, g


class Sub(Function):
    """a - b;  da = g, db = -g"""

    def forward(self, a, b):
        return a - b

    def backward(self, g):
        return g, (-g if self.needs_input_grad[1] else None)


class Mul(Function):
    """a * b;  da = g * b, db = g * a"""

    def forward(self, a, b):
        self.a, self.b = a, b
        return a * b

    def backward(self, g):
        needs = self.needs_input_grad
        return (g * self.b if needs[0] else None), (g * self.a if needs[1] else None)


class Div(Function):
    """a / b;  da = g / b, db = -g * a / b²  (integer inputs give float32, as in PyTorch)"""

    def forward(self, a, b):
        self.a, self.b = a, b
        out = a / b
        return out if a.dtype.kind == "f" or b.dtype.kind == "f" else out.astype(np.float32)

    def backward(self, g):
        ga = g / self.b
        return ga, (-ga * self.a / self.b if self.needs_input_grad[1] else None)


class RoundedDiv(Function):
    """a / b rounded toward 0 ("trunc") or down ("floor");  da = db = 0 (a step function, as
    PyTorch). Integers stay integers."""

    def forward(self, a, b, rounding_mode):
        xp = array_module(a)
        if "b" in (a.dtype.kind, b.dtype.kind):
            raise TypeError(f"div: rounding_mode={rounding_mode!r} needs numbers, got {a.dtype} "
                            f"and {b.dtype}")
        if a.dtype.kind in "iu" and b.dtype.kind in "iu" and bool((b == 0).any()):
            raise ZeroDivisionError(f"div: integer division by zero (rounding_mode="
                                    f"{rounding_mode!r}); divide floats to get inf or nan")
        if rounding_mode == "floor":
            return xp.floor_divide(a, b)
        if a.dtype.kind == "f":
            return xp.trunc(a / b)
        return xp.floor_divide(a - xp.fmod(a, b), b)  # exact: a - fmod(a, b) is a multiple of b

    def backward(self, g):
        zero = array_module(g).zeros_like(g)
        return zero, zero


class Pow(Function):
    """a ** b;  da = g * b * a^(b-1), db = g * a^b * ln(a)"""

    def forward(self, a, b):
        self.a, self.b = a, b
        self.out = a**b
        return self.out

    def backward(self, g):
        ga = g * self.b * self.a ** (self.b - 1) if self.needs_input_grad[0] else None
        gb = g * self.out * array_module(g).log(self.a) if self.needs_input_grad[1] else None
        return ga, gb


class Maximum(Function):
    """max(a, b);  the larger input gets g, ties split it half and half (as PyTorch)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return array_module(a).maximum(a, b)

    def backward(self, g):
        share = (self.a > self.b) + g.dtype.type(0.5) * (self.a == self.b)  # in g's dtype
        return g * share, g * (1 - share)


class Minimum(Function):
    """min(a, b);  the smaller input gets g, ties split it half and half (as PyTorch)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return array_module(a).minimum(a, b)

    def backward(self, g):
        share = (self.a < self.b) + g.dtype.type(0.5) * (self.a == self.b)
        return g * share, g * (1 - share)


class Clamp(Function):
    """min(max(x, lo), hi), either bound may be left out;  dx = g where lo ≤ x ≤ hi;  dlo = g where
    x < lo < hi;  dhi = g where x > hi or hi < lo  (PyTorch's rules at ties and for lo > hi)."""

    def forward(self, x, *bounds, has_lo, has_hi):
        xp = array_module(x)
        self.x, self.lo, self.hi = x, bounds[0] if has_lo else None, bounds[-1] if has_hi else None
        out = x if self.lo is None else xp.maximum(x, self.lo)
        return out if self.hi is None else xp.minimum(out, self.hi)

    def backward(self, g):
        x, lo, hi = self.x, self.lo, self.hi
        xp, zero = array_module(g), g.dtype.type(0)
        inside = (True if lo is None else x >= lo) & (True if hi is None else x <= hi)
        grads = [xp.where(inside, g, zero) if self.needs_input_grad[0] else None]
        if lo is not None:
            below = (x < lo) & (True if hi is None else lo < hi)
            grads.append(xp.where(below, g, zero) if self.needs_input_grad[1] else None)
        if hi is not None:
            above = (x > hi) | (False if lo is None else hi < lo)
            grads.append(xp.where(above, g, zero) if self.needs_input_grad[-1] else None)
        return tuple(grads)


class Where(Function):
    """cond ? a : b;  da = g where cond, db = g elsewhere (cond gets no gradient)."""

    def forward(self, cond, a, b):
        self.cond = cond
        return array_module(a).where(cond, a, b)

    def backward(self, g):
        zero = g.dtype.type(0)
        xp = array_module(g)
        return None, xp.where(self.cond, g, zero), xp.where(self.cond, zero, g)


def _scaled(b, alpha, a, op: str):
    """alpha * b for add/sub's `alpha`; a float alpha for integer operands is refused (PyTorch)."""
    dtypes = [t.dtype for t in (a, b) if isinstance(t, Tensor)]
    if isinstance(alpha, float) and all(d.kind in "biu" for d in dtypes):
        raise TypeError(f"{op}: alpha={alpha} is a float but the operands are integers "
                        f"({', '.join(map(str, dtypes))}); give an integer alpha")
    return mul(b, alpha) if isinstance(b, Tensor) else b * alpha


def add(a, b, *, alpha=1) -> Tensor:
    """a + alpha * b;  da = g, db = alpha * g  (alpha is 1 unless given, as PyTorch)"""
    return _binary(Add, a, b if alpha == 1 else _scaled(b, alpha, a, "add"), "add")


def sub(a, b, *, alpha=1) -> Tensor:
    """a - alpha * b;  da = g, db = -alpha * g  (alpha is 1 unless given, as PyTorch)"""
    return _binary(Sub, a, b if alpha == 1 else _scaled(b, alpha, a, "sub"), "sub")


def mul(a, b) -> Tensor:
    return _binary(Mul, a, b, "mul")


def div(a, b, *, rounding_mode: str | None = None) -> Tensor:
    """a / b; rounding_mode "trunc" rounds the quotient toward 0, "floor" down (Python's //),
    both with a zero gradient and integers kept integer, as PyTorch."""
    if rounding_mode is None:
        return _binary(Div, a, b, "div")
    if rounding_mode not in ("trunc", "floor"):
        raise ValueError(
            f"div: rounding_mode must be None, 'trunc' or 'floor', got {rounding_mode!r}"
        )
    return _binary(RoundedDiv, a, b, "div", rounding_mode=rounding_mode)


def pow(a, b) -> Tensor:  # noqa: A001 - PyTorch's name
    return _binary(Pow, a, b, "pow")


def maximum(a, b) -> Tensor:
    return _binary(Maximum, a, b, "maximum")


def minimum(a, b) -> Tensor:
    return _binary(Minimum, a, b, "minimum")


def where(condition, a, b) -> Tensor:
    """Elements of `a` where `condition` is true, else of `b` (broadcasting all three)."""
    like = a if isinstance(a, Tensor) else b if isinstance(b, Tensor) else condition
    if not isinstance(like, Tensor):
        raise TypeError("where: give at least one tensor")
    if not isinstance(a, Tensor):
        a = as_tensor_like(a, like, "where")  # two numbers take their dtype from the condition
    if not isinstance(b, Tensor):
        b = as_tensor_like(b, a, "where")
    if not isinstance(condition, Tensor) or condition.dtype.kind != "b":
        raise TypeError("where: condition must be a bool tensor (e.g. x > 0)")
    same_device("where", condition, a, b)
    if a.data.dtype != b.data.dtype:
        a, b = promote(a, b)
    try:
        return Where.apply(condition, a, b)
    except ValueError:
        raise ValueError(
            f"where: shapes {condition.shape}, {a.shape} and {b.shape} are not broadcastable"
        ) from None


def clamp(x: Tensor, min=None, max=None) -> Tensor:  # noqa: A002 - PyTorch's names
    """Limit x to [min, max]: numbers or tensors that broadcast with x, either may be None; where
    min > max the result is max, as PyTorch."""
    if min is None and max is None:
        raise ValueError("clamp: give min, max or both")
    bounds = [as_tensor_like(b, x, "clamp") for b in (min, max) if b is not None]
    same_device("clamp", x, *bounds)
    tensors = promote(x, *bounds)
    try:
        return Clamp.apply(*tensors, has_lo=min is not None, has_hi=max is not None)
    except ValueError:
        _check_broadcastable("clamp", *tensors)
        raise


def masked_fill(x: Tensor, mask: Tensor, value) -> Tensor:
    """`x` with `value` wherever `mask` is true (attention masks)."""
    return where(mask, as_tensor_like(value, x, "masked_fill"), x)
