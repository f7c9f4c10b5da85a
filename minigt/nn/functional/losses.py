"""Losses: cross_entropy (softmax and negative log-likelihood fused into one Function for class
indices; a composition for class weights and class-probability targets) and mse_loss."""
from __future__ import annotations

import numpy as np

from ... import backends
from ...autograd import Function
from ...backends import array_module
from ...ops import log_softmax, mean, sum, where
from ...tensor import Tensor, not_a_tensor
from .linear import one_hot

_REDUCTIONS = ("mean", "sum", "none")


def check_reduction(reduction: str, op: str) -> None:
    """A clear error for a reduction other than 'mean', 'sum' and 'none'."""
    if reduction not in _REDUCTIONS:
        raise ValueError(f"{op}: reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def reduce_loss(loss: Tensor, reduction: str) -> Tensor:
    """An elementwise loss averaged, summed or kept as it is."""
    if reduction == "mean":
        return mean(loss)
    return sum(loss) if reduction == "sum" else loss


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


def cross_entropy(input: Tensor, target: Tensor, weight: Tensor | None = None,  # noqa: A002
                  *, ignore_index: int = -100, reduction: str = "mean",
                  label_smoothing: float = 0.0) -> Tensor:
    """Softmax cross-entropy of logits (N, C), (C,) or (N, C, d1, ...) against class indices, an
    integer target (N,), () or (N, d1, ...) whose entries equal to `ignore_index` count for
    nothing, or against class probabilities, a float target of the logits' shape.

    `weight` (C,) scales each class's term; a mean over class indices is then divided by the
    targets' total weight, as in PyTorch. `label_smoothing` ε mixes ε/C into every class.
    """
    check_reduction(reduction, "cross_entropy")
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    for role, value in (("input", input), ("target", target), ("weight", weight)):
        if value is not None and not isinstance(value, Tensor):
            raise not_a_tensor(value, f"cross_entropy: {role} must be a minigt Tensor, got")
    if input.ndim == 0:
        raise ValueError("cross_entropy: logits must have a class dim, got a 0-d tensor")
    classes = input.shape[1] if input.ndim >= 2 else input.shape[0]
    if weight is not None:
        if weight.shape != (classes,):
            raise ValueError(f"cross_entropy: weight must have one entry per class, shape "
                             f"({classes},), got {weight.shape}")
        weight = weight if weight.dtype == input.dtype else weight.to(input.dtype)
    if target.dtype.kind == "f":
        return _cross_entropy_probabilities(input, target, weight, reduction, label_smoothing,
                                            classes)
    if target.dtype.kind not in "iu":
        raise TypeError(
            f"cross_entropy: target must be an integer tensor of class indices or a float tensor "
            f"of class probabilities, got {target.dtype}"
        )
    expected = input.shape[:1] + input.shape[2:] if input.ndim >= 2 else ()
    if target.shape != expected:
        raise ValueError(
            f"cross_entropy: logits of shape {input.shape} need targets of shape {expected}, "
            f"got {target.shape}"
        )
    labels = target.data
    if backends.host_checks(labels):  # on a GPU: NaN loss instead (see CrossEntropyFn.forward)
        bad = (labels != ignore_index) & ((labels < 0) | (labels >= classes))
        if bad.any():
            raise IndexError(
                f"cross_entropy: target {int(labels[bad].ravel()[0])} is out of range for "
                f"{classes} classes (expected 0..{classes - 1}, or ignore_index={ignore_index})"
            )
    if weight is not None:
        loss = _cross_entropy_weighted(_rows(input, classes), target.reshape(-1), weight,
                                       reduction, label_smoothing, ignore_index)
    else:
        loss = CrossEntropyFn.apply(_rows(input, classes), target.reshape(-1),
                                    reduction=reduction, label_smoothing=float(label_smoothing),
                                    ignore_index=ignore_index)
    return loss.reshape(target.shape) if reduction == "none" else loss


def _rows(t: Tensor, classes: int) -> Tensor:
    """(N, C, d1, ...) as rows of C classes: the class dim moved last, the others flattened."""
    if t.ndim == 1:
        return t.reshape(1, classes)
    if t.ndim > 2:
        return t.permute(0, *range(2, t.ndim), 1).reshape(-1, classes)
    return t


def _soft_cross_entropy(rows: Tensor, soft: Tensor, weight: Tensor | None,
                        label_smoothing: float) -> Tensor:
    """Each row's −Σ_c w_c·q'_c·log softmax(x)_c for target distributions q (rows, C), smoothed:
    q' = (1−ε)·q + ε/C."""
    if label_smoothing:
        soft = soft * (1.0 - label_smoothing) + label_smoothing / rows.shape[1]
    if weight is not None:
        soft = soft * weight
    return -(soft * log_softmax(rows, dim=1)).sum(dim=1)


def _cross_entropy_probabilities(input: Tensor, target: Tensor, weight: Tensor | None,  # noqa: A002
                                 reduction: str, label_smoothing: float, classes: int) -> Tensor:
    """cross_entropy against class probabilities q: loss = −Σ_c w_c·q'_c·log p_c; a mean is
    over the rows (not their weight), as in PyTorch."""
    if target.shape != input.shape:
        raise ValueError(
            f"cross_entropy: a float target holds class probabilities and must have the logits' "
            f"shape {input.shape}, got {target.shape} (class indices are an integer tensor)"
        )
    loss = _soft_cross_entropy(_rows(input, classes), _rows(target, classes), weight,
                               label_smoothing)
    if reduction == "none":
        return loss.reshape(input.shape[:1] + input.shape[2:] if input.ndim >= 2 else ())
    return reduce_loss(loss, reduction)


def _cross_entropy_weighted(rows: Tensor, target: Tensor, weight: Tensor, reduction: str,
                            label_smoothing: float, ignore_index: int) -> Tensor:
    """cross_entropy over class indices with class weights w: as for probabilities, with
    q = onehot(y) (zero where y is ignored); a mean is divided by Σ w_y over the kept rows."""
    classes = rows.shape[1]
    keep = target != ignore_index
    unchecked = not backends.host_checks(target.data)  # cross_entropy() checked the range on a CPU
    if unchecked:  # on a GPU a target out of range gives NaN, as in CrossEntropyFn
        in_range = where(target >= 0, target < classes, False)
        bad, keep = where(keep, ~in_range, False), where(keep, in_range, False)
    labels = where(keep, target, 0)
    kept = keep.to(rows.dtype)
    loss = _soft_cross_entropy(rows, one_hot(labels, classes).to(rows.dtype), weight,
                               label_smoothing) * kept
    if unchecked:
        loss = where(bad, float("nan"), loss)
    if reduction != "mean":
        return reduce_loss(loss, reduction)
    return loss.sum() / (weight[labels] * kept).sum()


def mse_loss(input: Tensor, target: Tensor, reduction: str = "mean") -> Tensor:  # noqa: A002
    """(input - target)², averaged, summed or kept elementwise."""
    check_reduction(reduction, "mse_loss")
    if input.shape != target.shape:
        raise ValueError(
            f"mse_loss: input has shape {input.shape} but target has {target.shape}; they must "
            "match (broadcasting here is usually a bug)"
        )
    diff = input - target
    return reduce_loss(diff * diff, reduction)
