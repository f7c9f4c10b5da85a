"""Activation layers (ReLU, GELU, Tanh, Sigmoid, Softmax, LogSoftmax) and Dropout: thin Modules
over minigt.nn.functional."""
from __future__ import annotations

from ..tensor import Tensor
from . import functional as F
from .module import Module


class ReLU(Module):
    """max(x, 0)"""

    def forward(self, x: Tensor) -> Tensor:
        return F.relu(x)


class GELU(Module):
    """x·Φ(x) (exact) or its tanh approximation (`approximate='tanh'`)."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        return F.gelu(x, approximate=self.approximate)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class Tanh(Module):
    """tanh(x)"""

    def forward(self, x: Tensor) -> Tensor:
        return F.tanh(x)


class Sigmoid(Module):
    """1 / (1 + e^-x)"""

    def forward(self, x: Tensor) -> Tensor:
        return F.sigmoid(x)


class Softmax(Module):
    """e^x / Σ e^x along `dim`."""

    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return F.softmax(x, _dim_or_last(self, x))

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """x - log Σ e^x along `dim`."""

    def forward(self, x: Tensor) -> Tensor:
        return F.log_softmax(x, _dim_or_last(self, x))


def _dim_or_last(layer: Softmax, x: Tensor) -> int:
    """PyTorch's dim=None picks dim 0 for 0-, 1- and 3-d inputs, else 1 (with a warning): a
    guess that differs by rank, so minigt asks for the dim instead."""
    if layer.dim is None:
        raise TypeError(f"{type(layer).__name__}: give the dim to normalise over, e.g. "
                        f"{type(layer).__name__}(dim=-1) (input of shape {x.shape})")
    return layer.dim


class Dropout(Module):
    """Zero each element with probability p and scale the rest by 1/(1-p), in training mode only."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
