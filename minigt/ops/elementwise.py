"""Elementwise ops. Binary ops broadcast; their backward returns gradients of the broadcast
shape and the engine sums them down to each input's shape (`autograd.reduce_to_shape`)."""
from __future__ import annotations

import math

import numpy as np

from ..autograd import Function
from ..backends import array_module, erf, to_device
from ..tensor import Tensor
from .dims import as_tensor_like, same_device


def _binary(fn_class, a, b, op: str) -> Tensor:
    """Apply a two-input op, turning scalars into tensors and naming both shapes on a mismatch."""
    if not isinstance(a, Tensor):
        a = as_tensor_like(a, b, op)
    elif not isinstance(b, Tensor):
        b = as_tensor_like(b, a, op)
    same_device(op, a, b)
    if a.data.dtype.kind != b.data.dtype.kind:
        a, b = _promote(a, b)
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


def _promote(a: Tensor, b: Tensor):
    """An integer or bool operand takes the float operand's dtype (float32 stays float32, as in
    PyTorch; NumPy alone would give float64)."""
    if a.data.dtype.kind == "f" and b.data.dtype.kind in "biu":
        return a, cast(b, a.data.dtype)
    if b.data.dtype.kind == "f" and a.data.dtype.kind in "biu":
        return cast(a, b.data.dtype), b
    return a, b


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
        share = (self.a > self.b) + 0.5 * (self.a == self.b)
        return g * share, g * (1 - share)


class Minimum(Function):
    """min(a, b);  the smaller input gets g, ties split it half and half (as PyTorch)."""

    def forward(self, a, b):
        self.a, self.b = a, b
        return array_module(a).minimum(a, b)

    def backward(self, g):
        share = (self.a < self.b) + 0.5 * (self.a == self.b)
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
    try:
        return Where.apply(condition, a, b)
    except ValueError:
        raise ValueError(
            f"where: shapes {condition.shape}, {a.shape} and {b.shape} are not broadcastable"
        ) from None


def masked_fill(x: Tensor, mask: Tensor, value) -> Tensor:
    """`x` with `value` wherever `mask` is true (attention masks)."""
    return where(mask, as_tensor_like(value, x, "masked_fill"), x)


# ---- unary ---------------------------------------------------------------------------------


class Neg(Function):
    """-x;  dx = -g"""

    def forward(self, x):
        return -x

    def backward(self, g):
        return -g


class Exp(Function):
    """e^x;  dx = g * e^x"""

    def forward(self, x):
        self.out = array_module(x).exp(x)
        return self.out

    def backward(self, g):
        return g * self.out


class Log(Function):
    """ln x;  dx = g / x"""

    def forward(self, x):
        self.x = x
        return array_module(x).log(x)

    def backward(self, g):
        return g / self.x


class Sqrt(Function):
    """√x;  dx = g / (2√x)"""

    def forward(self, x):
        self.out = array_module(x).sqrt(x)
        return self.out

    def backward(self, g):
        return g / (2 * self.out)


class Rsqrt(Function):
    """1/√x;  dx = -g / (2 x^1.5) = -g * out³ / 2"""

    def forward(self, x):
        self.out = 1 / array_module(x).sqrt(x)
        return self.out

    def backward(self, g):
        return -0.5 * g * self.out**3


class Abs(Function):
    """|x|;  dx = g * sign(x)  (0 at x = 0, as PyTorch)"""

    def forward(self, x):
        self.x = x
        return array_module(x).abs(x)

    def backward(self, g):
        return g * array_module(g).sign(self.x)


class Tanh(Function):
    """tanh x;  dx = g * (1 - tanh² x)"""

    def forward(self, x):
        self.out = array_module(x).tanh(x)
        return self.out

    def backward(self, g):
        return g * (1 - self.out * self.out)


class Sigmoid(Function):
    """σ(x) = 1 / (1 + e^-x);  dx = g * σ (1 - σ)"""

    def forward(self, x):
        self.out = 0.5 * (array_module(x).tanh(0.5 * x) + 1)  # no overflow for large |x|
        return self.out

    def backward(self, g):
        return g * self.out * (1 - self.out)


class Relu(Function):
    """max(x, 0);  dx = g where x > 0, else 0 (0 at x = 0, as PyTorch)"""

    def forward(self, x):
        self.positive = x > 0
        return x * self.positive

    def backward(self, g):
        return g * self.positive


class Gelu(Function):
    """x Φ(x) (exact, Φ the normal CDF) or its tanh approximation;  dx = g * d/dx of that."""

    def forward(self, x, approximate="none"):
        self.x, self.approximate = x, approximate
        xp = array_module(x)
        if approximate == "tanh":
            self.t = xp.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3))
            return 0.5 * x * (1 + self.t)
        self.cdf = 0.5 * (1 + erf(x * (1 / math.sqrt(2))))
        return x * self.cdf

    def backward(self, g):
        x = self.x
        if self.approximate == "tanh":
            inner = math.sqrt(2 / math.pi) * (1 + 3 * 0.044715 * x * x)
            return g * (0.5 * (1 + self.t) + 0.5 * x * (1 - self.t * self.t) * inner)
        pdf = array_module(x).exp(-0.5 * x * x) * (1 / math.sqrt(2 * math.pi))
        return g * (self.cdf + x * pdf)


class Sin(Function):
    """sin x;  dx = g cos x"""

    def forward(self, x):
        self.x = x
        return array_module(x).sin(x)

    def backward(self, g):
        return g * array_module(g).cos(self.x)


class Cos(Function):
    """cos x;  dx = -g sin x"""

    def forward(self, x):
        self.x = x
        return array_module(x).cos(x)

    def backward(self, g):
        return -g * array_module(g).sin(self.x)


class Clamp(Function):
    """min(max(x, lo), hi);  dx = g where lo ≤ x ≤ hi, else 0 (as PyTorch)."""

    def forward(self, x, lo=None, hi=None):
        self.inside = array_module(x).ones(x.shape, dtype=bool)
        if lo is not None:
            self.inside &= x >= lo
            x = array_module(x).maximum(x, lo)
        if hi is not None:
            self.inside &= x <= hi
            x = array_module(x).minimum(x, hi)
        return x

    def backward(self, g):
        return g * self.inside


class Cast(Function):
    """x converted to another dtype;  dx = g converted back."""

    def forward(self, x, dtype):
        self.dtype = x.dtype
        return x.astype(dtype)

    def backward(self, g):
        return g.astype(self.dtype)


class ToDevice(Function):
    """x copied to another device;  dx = g copied back."""

    def forward(self, x, device):
        from ..backends import device_of

        self.device = device_of(x)
        return to_device(x, device)

    def backward(self, g):
        return to_device(g, self.device)


class Clone(Function):
    """A copy of x;  dx = g"""

    def forward(self, x):
        return x.copy()

    def backward(self, g):
        return g


def neg(x: Tensor) -> Tensor:
    return Neg.apply(x)


def exp(x: Tensor) -> Tensor:
    return Exp.apply(x)


def log(x: Tensor) -> Tensor:
    return Log.apply(x)


def sqrt(x: Tensor) -> Tensor:
    return Sqrt.apply(x)


def rsqrt(x: Tensor) -> Tensor:
    return Rsqrt.apply(x)


def abs(x: Tensor) -> Tensor:  # noqa: A001 - PyTorch's name
    return Abs.apply(x)


def tanh(x: Tensor) -> Tensor:
    return Tanh.apply(x)


def sigmoid(x: Tensor) -> Tensor:
    return Sigmoid.apply(x)


def relu(x: Tensor) -> Tensor:
    return Relu.apply(x)


def gelu(x: Tensor, approximate: str = "none") -> Tensor:
    """GELU: exact (`approximate='none'`, erf based) or the tanh approximation."""
    if approximate not in ("none", "tanh"):
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    return Gelu.apply(x, approximate=approximate)


def sin(x: Tensor) -> Tensor:
    return Sin.apply(x)


def cos(x: Tensor) -> Tensor:
    return Cos.apply(x)


def clamp(x: Tensor, min=None, max=None) -> Tensor:  # noqa: A002 - PyTorch's names
    """Limit x to [min, max]; either bound may be None."""
    if min is None and max is None:
        raise ValueError("clamp: give min, max or both")
    return Clamp.apply(x, lo=min, hi=max)


def cast(x: Tensor, dtype) -> Tensor:
    if x.requires_grad and np.dtype(dtype).kind not in "fc":
        return Tensor._make(x.data.astype(dtype), False, None)  # integer results carry no grad
    return Cast.apply(x, dtype=dtype)


def to_device_op(x: Tensor, device: str) -> Tensor:
    return ToDevice.apply(x, device=device)


def clone(x: Tensor) -> Tensor:
    """A copy that stays in the graph."""
    return Clone.apply(x)
