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
    params = [p for p in params if p.grad is not None]
    if not params:
        return Tensor(0.0)
    norm_type = float(norm_type)
    # Tensor-parallel weights hold a slice each: their part of the norm is combined over the
    # tensor group (once), while replicated parameters count once as they are.
    split = [p for p in params if getattr(p, "split_dim", None) is not None]
    whole = [p for p in params if getattr(p, "split_dim", None) is None]
    total = _combine(_norm_part(whole, norm_type), _split_norm_part(split, norm_type), norm_type)
    if norm_type != math.inf:
        total **= 1.0 / norm_type
    grads = [p.grad.data for p in params]
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


def _norm_part(params: list, norm_type: float) -> float:
    """max |g| (inf-norm) or Σ |g|^p over these parameters' gradients."""
    if not params:
        return 0.0
    xp = array_module(params[0].grad.data)
    if norm_type == math.inf:
        return max(float(xp.abs(p.grad.data).max()) for p in params)
    return sum(float((xp.abs(p.grad.data) ** norm_type).sum()) for p in params)


def _split_norm_part(params: list, norm_type: float) -> float:
    """_norm_part of tensor-parallel slices, combined over the tensor group."""
    if not params:
        return 0.0
    import numpy as np

    from ..distributed import collectives, world

    local = np.asarray(_norm_part(params, norm_type))
    op = "max" if norm_type == math.inf else "sum"
    return float(collectives.all_reduce(local, op, group=world.tensor_group()))


def _combine(a: float, b: float, norm_type: float) -> float:
    return max(a, b) if norm_type == math.inf else a + b
