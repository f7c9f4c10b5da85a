"""Losses for yes/no targets: binary_cross_entropy on probabilities, and
binary_cross_entropy_with_logits on logits, built on a stable logsigmoid."""
from __future__ import annotations

import numpy as np

from ... import backends
from ...autograd import Function
from ...backends import array_module
from ...ops.elementwise import promote
from ...tensor import Tensor, not_a_tensor
from .losses import check_reduction, reduce_loss


class LogSigmoidFn(Function):
    """y = log σ(x) = min(x, 0) − log(1 + e^−|x|);  dx = g·σ(−x), σ(−x) = e^−|x|/(1 + e^−|x|)
    for x ≥ 0 and 1/(1 + e^−|x|) below (neither overflows)"""

    def forward(self, x):
        xp = array_module(x)
        self.x, self.exp_neg_abs = x, xp.exp(-xp.abs(x))
        return xp.minimum(x, 0) - xp.log1p(self.exp_neg_abs)

    def backward(self, g):
        xp = array_module(g)
        e = self.exp_neg_abs
        return g * xp.where(self.x >= 0, e, 1) / (1 + e)


def logsigmoid(input: Tensor) -> Tensor:  # noqa: A002
    """log σ(x), finite for every finite x (log(sigmoid(x)) is -inf below about -750)."""
    if not isinstance(input, Tensor):
        raise not_a_tensor(input, "logsigmoid: input must be a minigt Tensor, got")
    return LogSigmoidFn.apply(input)


class BinaryCrossEntropyFn(Function):
    """loss = −(y·log p + (1−y)·log(1−p)), each log at least −100 as in PyTorch (p = 0 or 1 stays
    finite);  dp = g·(p − y)/max(p(1−p), 1e-12),  dy = g·(log(1−p) − log p)"""

    def forward(self, p, y):
        xp = array_module(p)
        with np.errstate(divide="ignore"):  # log(0) = -inf, then clamped
            self.log_p, self.log_q = xp.maximum(xp.log(p), -100), xp.maximum(xp.log1p(-p), -100)
        self.p, self.y = p, y
        return -(y * self.log_p + (1 - y) * self.log_q)

    def backward(self, g):
        xp = array_module(g)
        p = self.p
        gp = g * (p - self.y) / xp.maximum(p * (1 - p), 1e-12) if self.needs_input_grad[0] else None
        gy = g * (self.log_q - self.log_p) if self.needs_input_grad[1] else None
        return gp, gy


def _check(op: str, input: Tensor, target: Tensor, reduction: str,  # noqa: A002
           **weights: Tensor | None) -> None:
    """Tensors all; the target of the input's shape (as PyTorch, which refuses a broadcast
    target: usually a bug), and each weight given broadcasting to it."""
    check_reduction(reduction, op)
    for role, value in (("input", input), ("target", target), *weights.items()):
        if value is not None and not isinstance(value, Tensor):
            raise not_a_tensor(value, f"{op}: {role} must be a minigt Tensor, got")
    if target.shape != input.shape:
        raise ValueError(f"{op}: target has shape {target.shape} but input has {input.shape}; "
                         "they must match")
    for role, weight in weights.items():
        try:
            fits = weight is None or np.broadcast_shapes(weight.shape, input.shape) == input.shape
        except ValueError:
            fits = False
        if not fits:
            raise ValueError(f"{op}: {role} of shape {weight.shape} does not broadcast to the "
                             f"input's shape {input.shape}")


def _in_dtype(t: Tensor, dtype) -> Tensor:
    """A weight in the input's dtype (a float64 weight must not turn a float32 loss float64)."""
    return t if t.dtype == dtype else t.to(dtype)


def _weighted(loss: Tensor, weight: Tensor | None, reduction: str) -> Tensor:
    """The elementwise loss times `weight`, then reduced."""
    return reduce_loss(loss if weight is None else loss * _in_dtype(weight, loss.dtype), reduction)


def binary_cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,  # noqa: A002
                         *, reduction: str = "mean") -> Tensor:
    """−w·(y·log p + (1−y)·log(1−p)) for probabilities p = input in [0, 1] and targets y of the
    same shape (each log clamped at −100, as PyTorch). For logits use
    binary_cross_entropy_with_logits: it is exact where sigmoid(x) rounds to 0 or 1."""
    _check("binary_cross_entropy", input, target, reduction, weight=weight)
    data = input.data
    if data.size and backends.host_checks(data) and not (data.min() >= 0 and data.max() <= 1):
        raise RuntimeError(  # PyTorch's type for it
            f"binary_cross_entropy: input must be probabilities in [0, 1], got values from "
            f"{float(data.min())} to {float(data.max())}; for logits use "
            "binary_cross_entropy_with_logits (or apply sigmoid first)"
        )
    if input.dtype != target.dtype:
        input, target = promote(input, target)
    return _weighted(BinaryCrossEntropyFn.apply(input, target), weight, reduction)


def binary_cross_entropy_with_logits(input: Tensor, target: Tensor,  # noqa: A002
                                     weight: Tensor | None = None, *, reduction: str = "mean",
                                     pos_weight: Tensor | None = None) -> Tensor:
    """binary_cross_entropy(sigmoid(x), y) computed stably from the logits x:
    loss = w·((1−y)·x − (1 + (pos_weight−1)·y)·log σ(x)), pos_weight scaling the positive term
    (one per class, broadcast along the last dim)."""
    _check("binary_cross_entropy_with_logits", input, target, reduction, weight=weight,
           pos_weight=pos_weight)
    log_sig = logsigmoid(input)
    if pos_weight is not None:
        log_sig = (1 + (_in_dtype(pos_weight, input.dtype) - 1) * target) * log_sig
    return _weighted((1 - target) * input - log_sig, weight, reduction)
