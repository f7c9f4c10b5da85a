"""Unary elementwise ops: y = f(x) for each element, dx = g * f'(x). Casts and device moves
are here too: elementwise in shape, differentiable back to the input's dtype and device."""
from __future__ import annotations

import math


from ..autograd import Function
from ..backends import array_module, device_of, erf, to_device
from ..tensor import Tensor


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
        cdf = erf(x * (1 / math.sqrt(2)))  # a new array: finished in place
        cdf += 1
        cdf *= 0.5
        self.cdf = cdf
        return x * cdf

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


def cast(x: Tensor, dtype) -> Tensor:
    return Cast.apply(x, dtype=dtype)


def to_device_op(x: Tensor, device: str) -> Tensor:
    return ToDevice.apply(x, device=device)


def clone(x: Tensor) -> Tensor:
    """A copy that stays in the graph."""
    return Clone.apply(x)
