"""Activations and dropout. relu, gelu, softmax and log_softmax are core ops (re-exported by the
package); dropout is built from them here, so the core gradient checks cover it."""
from __future__ import annotations

from ...backends import ensure_array
from ...creation import uniform_on
from ...tensor import Tensor


def dropout(x: Tensor, p: float = 0.5, training: bool = True) -> Tensor:
    """x · m / (1 - p) with m ~ Bernoulli(1 - p) elementwise; the identity when not training.

    The mask is one constant factor of a product, so backward reuses exactly the forward's mask.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"dropout: p must be in [0, 1], got {p}")
    if not training or p == 0.0:
        return x
    # Draw in float32 where x lives (manual_seed makes it repeatable); build the mask in x's
    # dtype in place, with no float64 temporary. (A 0-d draw comes back a NumPy scalar.)
    scale = ensure_array((uniform_on(x.device, x.shape) >= p).astype(x.dtype))
    scale *= 1.0 / (1.0 - p) if p < 1.0 else 0.0  # p = 1: x * 0, so NaN and inf stay NaN
    return x * Tensor._make(scale, False, None)
