"""Stochastic gradient descent, with optional momentum, Nesterov momentum and weight decay.

The update is written twice, and both run. `sgd` is the textbook: plain array math that returns
the new values. Small parameters (`is_small`: biases, norms' weights) take it, as its temporaries
are cheap there. `sgd_` does the same operations in the same order, but into the parameter and
its buffer (`add_scaled_`: BLAS's axpy, or pieces), so a large parameter's plain or momentum step
makes no temporary of its size (weight decay and Nesterov make one each). The two agree to within
a unit in the last place per step: axpy rounds a·x + y once where the textbook rounds twice.
"""
from __future__ import annotations

from typing import Any, Iterable

from ..backends import array_module
from ..tensor import Tensor
from .optimizer import Optimizer, add_scaled_, axpy, check_non_negative, is_small


class SGD(Optimizer):
    """g = grad + wd·p;  v ← μ·v + (1−τ)·g  (v = g on the first step);  p ← p − lr·(g + μ·v if
    nesterov else v).  With μ = 0 this is plain p ← p − lr·g.

    >>> opt = minigt.optim.SGD([w, b], lr=0.1, momentum=0.9)
    """

    def __init__(self, params: Iterable, lr: float = 1e-3, momentum: float = 0.0,
                 dampening: float = 0.0, weight_decay: float = 0.0, nesterov: bool = False):
        check_non_negative("SGD", lr=lr, momentum=momentum, weight_decay=weight_decay)
        if nesterov and (momentum <= 0.0 or dampening != 0.0):
            raise ValueError("SGD: nesterov momentum needs momentum > 0 and dampening = 0")
        super().__init__(params, dict(lr=lr, momentum=momentum, dampening=dampening,
                                      weight_decay=weight_decay, nesterov=nesterov))

    def _update(self, param, grad, state: dict[str, Any], group: dict[str, Any]) -> None:
        settings = {key: group[key]
                    for key in ("lr", "momentum", "dampening", "weight_decay", "nesterov")}
        buffer = state.get("momentum_buffer")
        v = None if buffer is None else buffer.data
        if is_small(param):
            param[...], new_v = sgd(param, grad, v, **settings)  # [...]: into param's own array
        else:
            new_v = sgd_(param, grad, v, **settings)
        if new_v is not v:  # the textbook's new v, or the first step's v = g (maybe p.grad itself)
            if v is None:
                v = array_module(param).empty_like(param)
                state["momentum_buffer"] = Tensor._make(v, False, None)
            v[...] = new_v


def sgd(p, g, v, *, lr: float, momentum: float, dampening: float, weight_decay: float,
        nesterov: bool):
    """One SGD step as textbook math on arrays: returns the new (p, v) and changes nothing.

    `v` is the momentum buffer, None until the first step with momentum.
    """
    if weight_decay != 0.0:
        g = g + weight_decay * p  # the gradient of the L2 penalty wd/2·|p|²
    if momentum != 0.0:
        # a running average of g; it starts at g itself, not at 0 (as in PyTorch)
        v = g if v is None else momentum * v + (1.0 - dampening) * g
        g = g + momentum * v if nesterov else v  # Nesterov looks one step ahead along v
    return p - lr * g, v


def sgd_(p, g, v, *, lr: float, momentum: float, dampening: float, weight_decay: float,
         nesterov: bool):
    """`sgd` in place on p and v; returns v (on the first step with momentum, g: not a copy)."""
    if weight_decay != 0.0:
        g = axpy(weight_decay, p, g)  # a new array: the parameter's .grad stays as backward left it
    if momentum != 0.0:
        if v is None:
            v = g
        else:
            v *= momentum
            if dampening == 0.0:
                v += g  # skips a multiply by 1
            else:
                add_scaled_(v, 1.0 - dampening, g)
        g = axpy(momentum, v, g) if nesterov else v
    add_scaled_(p, -lr, g)
    return v
