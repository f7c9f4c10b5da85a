"""Stochastic gradient descent, with optional momentum, Nesterov momentum and weight decay."""
from __future__ import annotations

from typing import Any, Iterable

from ..tensor import Tensor
from .optimizer import Optimizer, add_scaled_, axpy, check_non_negative


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
        lr, momentum, dampening = group["lr"], group["momentum"], group["dampening"]
        if group["weight_decay"] != 0.0:
            # a new array: the parameter's .grad must stay what backward() left there
            grad = axpy(group["weight_decay"], param, grad)
        step = grad
        if momentum != 0.0:
            if "momentum_buffer" not in state:  # the first step starts the average at g itself
                v = grad.copy()
                state["momentum_buffer"] = Tensor._make(v, False, None)
            else:
                v = state["momentum_buffer"].data
                v *= momentum
                if dampening == 0.0:
                    v += grad
                else:
                    add_scaled_(v, 1.0 - dampening, grad)
            # Nesterov looks one step ahead along the velocity: g + μ·v
            step = axpy(momentum, v, grad) if group["nesterov"] else v
        add_scaled_(param, -lr, step)
