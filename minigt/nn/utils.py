"""Training utilities: gradient clipping."""
from __future__ import annotations

import math
from typing import Iterable

from ..autograd import no_grad
from ..backends import array_module
from ..tensor import Tensor


def clip_grad_norm_(parameters: Tensor | Iterable[Tensor], max_norm: float,
                    norm_type: float = 2.0, error_if_nonfinite: bool = False) -> Tensor:
    """Scale all gradients together so their joint p-norm is at most `max_norm`; returns the norm
    before clipping. The joint norm is the p-norm of the per-parameter p-norms, as in PyTorch."""
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    grads = [p.grad.data for p in params if p.grad is not None]
    if not grads:
        return Tensor(0.0)
    xp = array_module(grads[0])
    norm_type = float(norm_type)
    if norm_type == math.inf:
        total = max(float(xp.abs(g).max()) for g in grads)
    else:
        total = sum(float((xp.abs(g) ** norm_type).sum()) for g in grads) ** (1.0 / norm_type)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"clip_grad_norm_: the total {norm_type}-norm of the gradients is {total}; pass "
            "error_if_nonfinite=False to clip anyway"
        )
    coef = max_norm / (total + 1e-6)  # the small term keeps the result finite for zero grads
    if coef < 1.0:
        with no_grad():
            for p in params:
                if p.grad is not None:
                    p.grad.mul_(coef)
    return Tensor(total, dtype=grads[0].dtype)
