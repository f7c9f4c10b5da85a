"""Adam, and AdamW (Adam with weight decay applied to the weights instead of the gradient).

The update is written twice, and both run. `adam` is the textbook: plain array math that returns
the new values. Small parameters (`is_small`: biases, norms' weights) take it, as its temporaries
are cheap there. `adam_` computes the same into the parameter and its moments, piece by piece
with one small reused scratch (see `each_piece`), so a large parameter's step makes no temporary of
its size. To need no m̂ or v̂ of its own, `adam_` folds the bias corrections into two scalars:
the two paths round differently, by a unit or so in the last place of the update.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

from ..backends import array_module
from ..tensor import Tensor
from .optimizer import Optimizer, axpy, check_non_negative, each_piece, is_small


class Adam(Optimizer):
    """m ← β1·m + (1−β1)·g;  v ← β2·v + (1−β2)·g²;  p ← p − lr·m̂ / (√v̂ + ε), where
    m̂ = m/(1−β1ᵗ) and v̂ = v/(1−β2ᵗ) at step t.

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
        settings = {key: group[key]
                    for key in ("lr", "betas", "eps", "weight_decay", "decoupled_weight_decay")}
        state["step"] += 1
        m, v = state["exp_avg"].data, state["exp_avg_sq"].data
        v_max = state["max_exp_avg_sq"].data if group["amsgrad"] else None
        if is_small(param):
            # [...]: the new values go into the parameter's and the state's own arrays
            param[...], m[...], v[...], new_v_max = adam(param, grad, m, v, v_max, state["step"],
                                                         **settings)
            if v_max is not None:
                v_max[...] = new_v_max
        else:
            adam_(param, grad, m, v, v_max, state["step"], **settings)


class AdamW(Adam):
    """Adam with decoupled weight decay: p ← p·(1 − lr·wd), then the Adam step on the plain
    gradient (Loshchilov & Hutter). Unlike Adam's L2 term, the decay is not rescaled by √v."""

    def __init__(self, params: Iterable, lr: float = 1e-3,
                 betas: tuple[float, float] = (0.9, 0.999), eps: float = 1e-8,
                 weight_decay: float = 1e-2, amsgrad: bool = False):
        super().__init__(params, lr, betas, eps, weight_decay, amsgrad, decoupled_weight_decay=True)


def adam(p, g, m, v, v_max, t: int, *, lr: float, betas: tuple[float, float], eps: float,
         weight_decay: float, decoupled_weight_decay: bool):
    """One Adam step (the t-th, from 1) as textbook math on arrays: returns the new
    (p, m, v, v_max) and changes nothing. `v_max` is AMSGrad's largest v so far, else None."""
    xp = array_module(p)
    beta1, beta2 = betas
    if weight_decay != 0.0 and decoupled_weight_decay:
        p = p * (1.0 - lr * weight_decay)  # AdamW: shrink the weights, whatever the gradient
    elif weight_decay != 0.0:
        g = g + weight_decay * p  # Adam: the gradient of the L2 penalty wd/2·|p|²
    m = beta1 * m + (1.0 - beta1) * g  # running averages of the gradient and of its square
    v = beta2 * v + (1.0 - beta2) * g ** 2
    if v_max is not None:
        v_max = xp.maximum(v_max, v)
    # m and v start at 0, so early on they are biased towards 0: divide that out
    m_hat = m / (1.0 - beta1 ** t)
    v_hat = (v if v_max is None else v_max) / (1.0 - beta2 ** t)
    p = p - lr * m_hat / (xp.sqrt(v_hat) + eps)
    return p, m, v, v_max


def adam_(p, g, m, v, v_max, t: int, *, lr: float, betas: tuple[float, float], eps: float,
          weight_decay: float, decoupled_weight_decay: bool) -> None:
    """`adam` in place on p, m, v and v_max."""
    xp = array_module(p)
    beta1, beta2 = betas
    if weight_decay != 0.0 and decoupled_weight_decay:
        p *= 1.0 - lr * weight_decay
    elif weight_decay != 0.0:
        g = axpy(weight_decay, p, g)  # a new array: the parameter's .grad stays as backward left it
    # lr·m̂/(√v̂ + ε) = step_size·m/(√v/root_bias + ε)
    root_bias, step_size = math.sqrt(1.0 - beta2 ** t), lr / (1.0 - beta1 ** t)
    # the same names, now for matching pieces of the arrays, with one scratch for every term

    def step(p, g, m, v, v_max, scratch):
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

    each_piece(step, p, g, m, v, v_max)
