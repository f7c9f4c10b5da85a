"""Layer normalisation, fused into one Function (forward and backward side by side)."""
from __future__ import annotations

import numbers

from ...autograd import Function
from ...backends import array_module
from ...tensor import Tensor


class LayerNormFn(Function):
    """y = x̂·w + b, x̂ = (x - μ)/√(σ² + ε) over the last k dims (σ² biased);
    dx = (ĝ - mean ĝ - x̂ · mean(ĝ x̂)) / √(σ² + ε) with ĝ = g·w;  dw = Σ g x̂;  db = Σ g
    """

    def forward(self, x, *affine, k, eps, has_weight, has_bias):
        xp = array_module(x)
        self.axes = tuple(range(x.ndim - k, x.ndim))
        centered = x - x.mean(axis=self.axes, keepdims=True)
        variance = (centered * centered).mean(axis=self.axes, keepdims=True)
        self.rstd = 1.0 / xp.sqrt(variance + eps)
        self.xhat = centered * self.rstd
        self.weight = affine[0] if has_weight else None
        self.has_bias = has_bias
        y = self.xhat if self.weight is None else self.xhat * self.weight
        return y + affine[-1] if has_bias else y

    def backward(self, g):
        xhat = self.xhat
        ghat = g if self.weight is None else g * self.weight
        dx = None
        if self.needs_input_grad[0]:
            dx = ghat - ghat.mean(axis=self.axes, keepdims=True)
            dx -= xhat * (ghat * xhat).mean(axis=self.axes, keepdims=True)
            dx *= self.rstd
        # Parameter gradients have the input's shape; the engine sums the leading dims away.
        grads = [dx]
        if self.weight is not None:
            grads.append(g * xhat if self.needs_input_grad[1] else None)
        if self.has_bias:
            grads.append(g)
        return tuple(grads)


def layer_norm(x: Tensor, normalized_shape, weight: Tensor | None = None,
               bias: Tensor | None = None, eps: float = 1e-5) -> Tensor:
    """(x - mean) / √(biased var + eps) · w + b over the trailing dims `normalized_shape`."""
    if isinstance(normalized_shape, numbers.Integral):
        normalized_shape = (normalized_shape,)
    normalized_shape = tuple(normalized_shape)
    k = len(normalized_shape)
    if k == 0 or x.ndim < k or x.shape[x.ndim - k:] != normalized_shape:
        raise ValueError(
            f"layer_norm: expected an input whose last {k} dim(s) are {normalized_shape}, got "
            f"shape {x.shape}"
        )
    for name, param in (("weight", weight), ("bias", bias)):
        if param is not None and param.shape != normalized_shape:
            raise ValueError(f"layer_norm: {name} has shape {param.shape}, expected {normalized_shape}")
    affine = [t for t in (weight, bias) if t is not None]
    return LayerNormFn.apply(x, *affine, k=k, eps=eps, has_weight=weight is not None,
                             has_bias=bias is not None)
