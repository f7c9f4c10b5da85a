"""Adam, and AdamW (Adam with weight decay applied to the weights instead of the gradient)."""
from __future__ import annotations

import math
from typing import Any, Iterable

from ..backends import array_module
from ..tensor import Tensor
from .optimizer import Optimizer, axpy, check_non_negative, pieces


class Adam(Optimizer):
    """m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;  p ← p − lr/(1−β1ᵗ) · m / (√v/√(1−β2ᵗ) + ε).

    `weight_decay` adds wd·p to g (an L2 penalty, as in PyTorch's Adam); `amsgrad` divides by
    the largest v seen so far instead of the current one. For decoupled decay use `AdamW`.
    """

    def __init__(self, params: Iterable, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 0.0, amsgrad: bool = False, *,
                 decoupled_weight_decay: bool = False):
        name = type(self).__name__
        check_non_negative(name, lr=lr, eps=eps, weight_decay=weight_decay)
        if len(betas) != 2 or not all(0.0 <= beta < 1.0 for beta in betas):
            raise ValueError(f"{name}: invalid betas {betas} (two values in [0, 1))")
        super().__init__(params, dict(lr=lr, betas=tuple(betas), eps=eps,
                                      weight_decay=weight_decay, amsgrad=amsgrad,
                                      decoupled_weight_decay=decoupled_weight_decay))

    def _init_state(self, param, group: dict[str, Any]) -> dict[str, Any]:
        def zeros():
            return Tensor._make(array_module(param).zeros_like(param), False, None)

        state = {"step": 0, "exp_avg": zeros(), "exp_avg_sq": zeros()}
        if group["amsgrad"]:
            state["max_exp_avg_sq"] = zeros()
        return state

    def _update(self, param, grad, state: dict[str, Any], group: dict[str, Any]) -> None:
        xp = array_module(param)
        lr, eps, weight_decay = group["lr"], group["eps"], group["weight_decay"]
        beta1, beta2 = group["betas"]
        if weight_decay != 0.0:
            if group["decoupled_weight_decay"]:
                param *= 1.0 - lr * weight_decay  # AdamW: shrink the weights, whatever the gradient
            else:
                grad = axpy(weight_decay, param, grad)  # Adam: L2 penalty; a new array, .grad stays
        state["step"] += 1
        t = state["step"]
        moments = state["exp_avg"].data, state["exp_avg_sq"].data
        v_max_all = state["max_exp_avg_sq"].data if group["amsgrad"] else None
        # the moments start at 0, so early on they are biased towards 0: divide it out
        root_bias, step_size = math.sqrt(1.0 - beta2 ** t), lr / (1.0 - beta1 ** t)
        # piece by piece, each with one small scratch reused for every term (see `pieces`)
        for p, g, m, v, v_max, scratch in pieces(param, grad, *moments, v_max_all):
            m *= beta1
            m += xp.multiply(g, 1.0 - beta1, out=scratch)
            v *= beta2
            xp.multiply(g, g, out=scratch)
            v += xp.multiply(scratch, 1.0 - beta2, out=scratch)
            if v_max is not None:
                v = xp.maximum(v_max, v, out=v_max)
            denom = xp.sqrt(v, out=scratch)
            denom /= root_bias
            denom += eps
            update = xp.divide(m, denom, out=scratch)
            update *= step_size
            p -= update


class AdamW(Adam):
    """Adam with decoupled weight decay: p ← p·(1 − lr·wd), then the Adam step on the plain
    gradient (Loshchilov & Hutter). Unlike Adam's L2 term, the decay is not rescaled by √v."""

    def __init__(self, params: Iterable, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, decoupled_weight_decay=True)
