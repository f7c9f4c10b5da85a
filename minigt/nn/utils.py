"""Training utilities: gradient clipping."""
from __future__ import annotations

import functools
import math
from typing import Iterable

from .. import backends
from ..autograd import no_grad
from ..backends import array_module
from ..tensor import Tensor
from .parameter import Parameter


def clip_grad_norm_(parameters: Tensor | Iterable[Tensor], max_norm: float,
                    norm_type: float = 2.0, error_if_nonfinite: bool = False) -> Tensor:
    """Scale all gradients together so their joint p-norm is at most `max_norm`; returns the norm
    before clipping. The joint norm is the p-norm of the per-parameter p-norms, as in PyTorch."""
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    params = [p for p in params if p.grad is not None]
    if not params:
        return Tensor(0.0)
    norm_type = float(norm_type)
    # Each kind of parameter says how its part of the norm on this rank combines with the other
    # ranks' (a tensor-parallel slice: over its tensor group, once for all such slices).
    kinds: dict = {}
    for p in params:
        kind = type(p) if isinstance(p, Parameter) else Parameter
        kinds.setdefault(kind.combine_parts, []).append(p)
    op = "max" if norm_type == math.inf else "sum"
    parts = [combine(_norm_part(same, norm_type), op) for combine, same in kinds.items()]
    total = functools.reduce(lambda a, b: _combine(a, b, norm_type), parts)
    if norm_type != math.inf:
        total **= 1.0 / norm_type
    first = params[0].grad.data
    if not backends.host_checks(first):
        return _clip_on_device(params, total, max_norm, norm_type, error_if_nonfinite)
    if error_if_nonfinite and not math.isfinite(total):
        raise RuntimeError(
            f"clip_grad_norm_: the total {norm_type}-norm of the gradients is {total}; pass "
            "error_if_nonfinite=False to clip anyway"
        )
    coef = max_norm / (total + 1e-6)  # the small term keeps the result finite for zero grads
    if coef < 1.0:
        with no_grad():
            for p in params:
                p.grad.mul_(coef)
    return Tensor(total, dtype=first.dtype)


def _clip_on_device(params: list, total, max_norm: float, norm_type: float,
                    error_if_nonfinite: bool) -> Tensor:
    """The end of clip_grad_norm_ on a GPU: the norm stays there and every gradient is multiplied
    by min(1, max_norm / (norm + 1e-6)), as PyTorch does, so nothing waits for the GPU (except
    error_if_nonfinite, which has to read the norm)."""
    dtype = params[0].grad.data.dtype
    xp = array_module(params[0].grad.data)
    total = xp.asarray(total, dtype=dtype)
    if error_if_nonfinite and not bool(xp.isfinite(total)):
        raise RuntimeError(
            f"clip_grad_norm_: the total {norm_type}-norm of the gradients is {float(total)}; pass "
            "error_if_nonfinite=False to clip anyway"
        )
    coef = Tensor._make(xp.asarray(xp.minimum(max_norm / (total + 1e-6), 1.0), dtype=dtype),
                        False, None)
    with no_grad():
        for p in params:
            p.grad.mul_(coef)
    return Tensor._make(total, False, None)


def _norm_part(params: list, norm_type: float):
    """max |g| (inf-norm) or Σ |g|^p over these parameters' gradients: a float, or on a GPU a
    0-d array there (float() would wait for the GPU)."""
    if not params:
        return 0.0
    xp = array_module(params[0].grad.data)
    if not backends.host_checks(params[0].grad.data):
        if norm_type == math.inf:
            return xp.stack([xp.abs(p.grad.data).max() for p in params]).max()
        return xp.stack([(xp.abs(p.grad.data) ** norm_type).sum() for p in params]).sum()
    if norm_type == math.inf:
        return max(float(xp.abs(p.grad.data).max()) for p in params)
    return sum(float((xp.abs(p.grad.data) ** norm_type).sum()) for p in params)


def _combine(a, b, norm_type: float):
    if norm_type != math.inf:
        return a + b
    if isinstance(a, float) and isinstance(b, float):
        return max(a, b)
    return array_module(b if isinstance(a, float) else a).maximum(a, b)  # no bool(): a GPU waits
