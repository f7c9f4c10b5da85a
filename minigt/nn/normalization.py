"""LayerNorm."""
from __future__ import annotations

import numbers

from ..creation import ones, zeros
from ..tensor import Tensor
from . import functional as F
from .module import Module
from .parameter import Parameter


class LayerNorm(Module):
    """(x - mean) / √(biased var + eps) · weight + bias over the trailing `normalized_shape` dims.

    weight starts at ones and bias at zeros; `elementwise_affine=False` drops both.
    """

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        if isinstance(normalized_shape, numbers.Integral):
            normalized_shape = (normalized_shape,)
        self.normalized_shape = tuple(int(n) for n in normalized_shape)
        self.eps, self.elementwise_affine = eps, elementwise_affine
        factory = {"dtype": dtype, "device": device}
        has_bias = elementwise_affine and bias
        self.register_parameter(
            "weight", Parameter(ones(self.normalized_shape, **factory)) if elementwise_affine else None
        )
        self.register_parameter(
            "bias", Parameter(zeros(self.normalized_shape, **factory)) if has_bias else None
        )

    def forward(self, x: Tensor) -> Tensor:
        return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}")
