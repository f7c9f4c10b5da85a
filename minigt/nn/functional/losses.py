"""Losses: cross_entropy (softmax and negative log-likelihood fused into one Function) and mse_loss."""
from __future__ import annotations

import numpy as np

from ... import backends
from ...autograd import Function
from ...backends import array_module
from ...ops import mean, sum
from ...tensor import Tensor

_REDUCTIONS = ("mean", "sum", "none")


def _check_reduction(reduction: str, op: str) -> None:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


class CrossEntropyFn(Function):
    """loss_i = -Σ_c q_ic log softmax(x_i)_c with q_i = (1-ε)·onehot(y_i) + ε/C (0 where y_i is
    ignored);  dx_i = r_i (softmax(x_i) - q_i), r_i the reduction's weight of row i
    """

    def forward(self, logits, target, *, reduction, label_smoothing, ignore_index):
        xp = array_module(logits)
        n, classes = logits.shape
        shifted = logits - logits.max(axis=1, keepdims=True)
        exps = xp.exp(shifted)
        total = exps.sum(axis=1, keepdims=True)
        log_probs = shifted - xp.log(total)
        self.valid = keep = target != ignore_index
        self.bad = None
        if not backends.host_checks(target):
            # On a GPU cross_entropy() did not check the range (that would wait for the GPU): a
            # target out of range reads class 0 here, and its row's loss and gradient become NaN.
            self.bad = self.valid & ((target < 0) | (target >= classes))
            keep = self.valid & ~self.bad
        self.target = xp.where(keep, target, 0)  # any class: ignored rows are zeroed below
        picked = xp.take_along_axis(log_probs, self.target[:, None], axis=1)[:, 0]
        loss = -(1.0 - label_smoothing) * picked
        if label_smoothing:
            loss -= (label_smoothing / classes) * log_probs.sum(axis=1)
        loss *= self.valid
        if self.bad is not None:
            loss = xp.where(self.bad, loss.dtype.type(np.nan), loss)
        self.probs_parts = exps, total
        self.reduction, self.smoothing = reduction, label_smoothing
        if reduction == "none":
            return loss
        if reduction == "sum":
            return loss.sum()
        if self.bad is not None:  # on a GPU the count stays there (int() would wait); 0/0 is NaN
            self.count = self.valid.sum(dtype=loss.dtype)
            return loss.sum() / self.count
        self.count = int(self.valid.sum())
        return loss.sum() / self.count if self.count else loss.sum() * float("nan")

    def backward(self, g):
        xp = array_module(g)
        exps, total = self.probs_parts
        dx = exps / total
        dx[xp.arange(dx.shape[0]), self.target] -= 1.0 - self.smoothing
        if self.smoothing:
            dx -= self.smoothing / dx.shape[1]
        row_weight = self.valid * (g if self.reduction != "mean" else g / self.count)
        if self.bad is not None:
            row_weight = xp.where(self.bad, row_weight.dtype.type(np.nan), row_weight)
        dx *= row_weight.astype(dx.dtype, copy=False)[:, None]
        return dx, None


def cross_entropy(input: Tensor, target: Tensor, reduction: str = "mean",  # noqa: A002
                  label_smoothing: float = 0.0, ignore_index: int = -100) -> Tensor:
    """Softmax cross-entropy against class indices: logits (N, C), (C,) or (N, C, d1, ...)
    with integer targets (N,), () or (N, d1, ...); targets equal to `ignore_index` count for nothing.
    """
    _check_reduction(reduction, "cross_entropy")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    if not isinstance(target, Tensor) or target.dtype.kind not in "iu":
        kind = target.dtype if isinstance(target, Tensor) else type(target).__name__
        raise TypeError(
            f"cross_entropy: target must be an integer tensor of class indices, got {kind} "
            "(class-probability targets are not supported)"
        )
    expected = input.shape[:1] + input.shape[2:] if input.ndim >= 2 else ()
    if input.ndim == 0 or target.shape != expected:
        raise ValueError(
            f"cross_entropy: logits of shape {input.shape} need targets of shape {expected}, "
            f"got {target.shape}"
        )
    classes = input.shape[1] if input.ndim >= 2 else input.shape[0]
    labels = target.data
    if backends.host_checks(labels):  # on a GPU: NaN loss instead (see CrossEntropyFn.forward)
        bad = (labels != ignore_index) & ((labels < 0) | (labels >= classes))
        if bad.any():
            raise IndexError(
                f"cross_entropy: target {int(labels[bad].ravel()[0])} is out of range for "
                f"{classes} classes (expected 0..{classes - 1}, or ignore_index={ignore_index})"
            )
    # The Function sees rows of logits: move the class dim last and flatten the rest.
    logits = input
    if input.ndim == 1:
        logits = input.reshape(1, classes)
    elif input.ndim > 2:
        logits = input.permute(0, *range(2, input.ndim), 1).reshape(-1, classes)
    loss = CrossEntropyFn.apply(logits, target.reshape(-1), reduction=reduction,
                                label_smoothing=float(label_smoothing), ignore_index=ignore_index)
    return loss.reshape(target.shape) if reduction == "none" else loss


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:  # noqa: A002
    """(input - target)², averaged, summed or kept elementwise."""
    _check_reduction(reduction, "mse_loss")
    if input.shape != target.shape:
        raise ValueError(
            f"mse_loss: input has shape {input.shape} but target has {target.shape}; they must "
            "match (broadcasting here is usually a bug)"
        )
    diff = input - target
    squares = diff * diff
    if reduction == "mean":
        return mean(squares)
    return sum(squares) if reduction == "sum" else squares
