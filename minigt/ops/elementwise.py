"""Binary elementwise ops (and where). They broadcast; their backward returns gradients of the
broadcast shape and the engine sums them down to each input's shape (`autograd.reduce_to_shape`).
Unary ops live in unary.py."""
from __future__ import annotations

import numpy as np

from ..autograd import Function
from ..backends import array_module
from ..tensor import Tensor
from .dims import as_tensor_like, same_device
from .unary import cast


def _binary(fn_class, a, b, op: str) -> Tensor:
    """Apply a two-input op, turning scalars into tensors and naming both shapes on a mismatch."""
    if not isinstance(a, Tensor):
        a = as_tensor_like(a, b, op)
    elif not isinstance(b, Tensor):
        b = as_tensor_like(b, a, op)
    same_device(op, a, b)
    if a.data.dtype != b.data.dtype:
        a, b = promote(a, b)
    try:
        return fn_class.apply(a, b)
    except ValueError:
        try:
            np.broadcast_shapes(a.shape, b.shape)
        except ValueError:
            raise ValueError(
                f"{op}: shapes {a.shape} and {b.shape} are not broadcastable; each dim (aligned "
                "from the right) must match or be 1"
            ) from None
        raise


def promote(a: Tensor, b: Tensor):
    """Two operands of different dtypes in one, by casts recorded in the graph (so each gradient
    comes back in its operand's dtype): an integer or bool operand takes the float operand's dtype
    (float32 stays float32, as in PyTorch; NumPy alone would give float64), and of two floats the
    narrower takes the wider's. Other pairs are left to NumPy."""
    kind_a, kind_b = a.data.dtype.kind, b.data.dtype.kind
    if kind_a == kind_b == "f":
        dtype = np.promote_types(a.data.dtype, b.data.dtype)
    elif kind_a == "f" and kind_b in "biu":
        dtype = a.data.dtype
    elif kind_b == "f" and kind_a in "biu":
        dtype = b.data.dtype
    else:
        return a, b
    return tuple(t if t.data.dtype == dtype else cast(t, dtype) for t in (a, b))


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


class Where(Function):
    """cond ? a : b;  da = g where cond, db = g elsewhere (cond gets no gradient)."""

    def forward(self, cond, a, b):
        self.cond = cond
        return array_module(a).where(cond, a, b)

    def backward(self, g):
        zero = g.dtype.type(0)
        xp = array_module(g)
        return None, xp.where(self.cond, g, zero), xp.where(self.cond, zero, g)


def add(a, b) -> Tensor:
    return _binary(Add, a, b, "add")


def sub(a, b) -> Tensor:
    return _binary(Sub, a, b, "sub")


def mul(a, b) -> Tensor:
    return _binary(Mul, a, b, "mul")


def div(a, b) -> Tensor:
    return _binary(Div, a, b, "div")


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
        a = as_tensor_like(a, like if like.dtype.kind == "f" else b, "where")
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


def masked_fill(x: Tensor, mask: Tensor, value) -> Tensor:
    """`x` with `value` wherever `mask` is true (attention masks)."""
    return where(mask, as_tensor_like(value, x, "masked_fill"), x)
