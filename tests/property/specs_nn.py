"""Specs of minigt.nn.functional's fused ops (those in its `FUSED` tuple, which have their own
backward). test_guard.py fails until each has a gradient spec here; see specs.py's docstring for
the format and a worked example (layer_norm)."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import minigt.nn.functional as F

from .gradcheck import FLOAT32_RUN_NEAR_CONSTANT
from .specs import Case, Spec, register, unary_cases
from .strategies import Domain, arrays, distinct_arrays, shapes, shapes_broadcasting_to

# ---- linear -------------------------------------------------------------------------------------


@st.composite
def _linear_cases(draw) -> Case:
    """x of shape (in,) or (..., in), weight (out, in), and maybe a bias (out,)."""
    x_shape = draw(shapes(min_dims=1))
    out_features = draw(st.integers(1, 4))
    weight = draw(arrays((out_features, x_shape[-1])))
    bias = [draw(arrays((out_features,)))] if draw(st.booleans()) else []
    return Case(draw(arrays(x_shape)), weight, *bias)


register(Spec("linear", _linear_cases(), F.linear, lambda x, w, *b: x @ w.T + sum(b)))

# ---- layer_norm ---------------------------------------------------------------------------------

AFFINE = ("weight and bias", "weight", "bias", "none")


@st.composite
def _layer_norm_cases(draw) -> Case:
    """x without near-ties (so no normalised group has a variance near 0), normalised over its
    last k dims, with every combination of optional weight and bias of those dims' shape."""
    shape = draw(shapes(min_dims=1))
    k = draw(st.integers(1, len(shape)))
    affine = draw(st.sampled_from(AFFINE))
    params = [draw(arrays(shape[len(shape) - k:])) for name in ("weight", "bias") if name in affine]
    return Case(draw(distinct_arrays(shape)), *params, k=k, affine=affine)


def _affine_params(params: tuple, affine: str) -> tuple:
    """(weight or None, bias or None) from the inputs that follow x."""
    weight = params[0] if "weight" in affine else None
    bias = params[-1] if "bias" in affine else None
    return weight, bias


def _layer_norm(x, *params, k: int, affine: str):
    weight, bias = _affine_params(params, affine)
    return F.layer_norm(x, x.shape[x.ndim - k:], weight, bias, eps=1e-5)


def _layer_norm_reference(x, *params, k: int, affine: str):
    weight, bias = _affine_params(params, affine)
    axes = tuple(range(x.ndim - k, x.ndim))
    y = (x - x.mean(axes, keepdims=True)) / np.sqrt(x.var(axes, keepdims=True) + 1e-5)
    y = y if weight is None else y * weight
    return y if bias is None else y + bias


register(Spec("layer_norm", _layer_norm_cases(), _layer_norm, _layer_norm_reference,
              float32_tolerance=FLOAT32_RUN_NEAR_CONSTANT))

# ---- cross_entropy ------------------------------------------------------------------------------


@st.composite
def _cross_entropy_cases(draw) -> Case:
    """Logits (C,), (N, C) or (N, C, d1, ...) with class-index targets, some of them equal to
    ignore_index, under every reduction and some label smoothing. A mean keeps one target."""
    classes = draw(st.integers(1, 5))
    form = draw(st.sampled_from(("unbatched", "batched", "extra dims")))
    if form == "unbatched":
        logits_shape, target_shape = (classes,), ()
    else:
        extra = draw(shapes(min_dims=1, max_dims=2, max_side=3)) if form == "extra dims" else ()
        n = draw(st.integers(1, 4))
        logits_shape, target_shape = (n, classes) + extra, (n,) + extra
    ignore_index = draw(st.sampled_from((-100, 0))) if classes > 1 else -100
    reduction = draw(st.sampled_from(("mean", "sum", "none")))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    target = rng.integers(0, classes, size=target_shape)
    target = np.where(rng.random(target_shape) < 0.25, ignore_index, target)
    if reduction == "mean":  # all ignored would make the mean 0/0; classes - 1 is never ignored
        target.flat[0] = classes - 1
    return Case(draw(arrays(logits_shape)), np.asarray(target, dtype=np.int64),
                reduction=reduction, label_smoothing=draw(st.sampled_from((0.0, 0.1, 0.4))),
                ignore_index=ignore_index)


def _log_softmax_classes_last(x):
    class_axis = 1 if x.ndim >= 2 else 0
    peak = x.max(class_axis, keepdims=True)
    log_probs = x - peak - np.log(np.exp(x - peak).sum(class_axis, keepdims=True))
    return np.moveaxis(log_probs, class_axis, -1)


def _cross_entropy_reference(x, target, reduction, label_smoothing, ignore_index):
    log_probs = _log_softmax_classes_last(x)
    valid = target != ignore_index
    picked = np.take_along_axis(log_probs, np.where(valid, target, 0)[..., None], -1)[..., 0]
    smooth = log_probs.mean(-1)
    loss = np.where(valid, -(1 - label_smoothing) * picked - label_smoothing * smooth, 0.0)
    if reduction == "none":
        return loss
    return loss.sum() / (valid.sum() if reduction == "mean" else 1)


register(Spec("cross_entropy", _cross_entropy_cases(), F.cross_entropy, _cross_entropy_reference))

PROBABILITIES = Domain(((0.1, 0.9),))  # away from 0 and 1, where log's gradient blows up
CLASS_WEIGHTS = Domain(((0.2, 3.0),))


@st.composite
def _cross_entropy_weighted_cases(draw) -> Case:
    """Class-index targets (some ignored) with a positive weight per class."""
    case = draw(_cross_entropy_cases())
    x, target = case.inputs
    classes = x.shape[1] if x.ndim >= 2 else x.shape[0]
    return Case(x, target, draw(arrays((classes,), CLASS_WEIGHTS)), **case.kwargs)


def _cross_entropy_weighted_reference(x, target, weight, reduction, label_smoothing,
                                      ignore_index):
    log_probs = _log_softmax_classes_last(x)
    valid = target != ignore_index
    label = np.where(valid, target, 0)
    picked = np.take_along_axis(log_probs, label[..., None], -1)[..., 0]
    smooth = (weight * log_probs).sum(-1) / weight.size
    loss = np.where(valid, -(1 - label_smoothing) * weight[label] * picked
                    - label_smoothing * smooth, 0.0)
    if reduction == "none":
        return loss
    return loss.sum() / (np.where(valid, weight[label], 0.0).sum() if reduction == "mean" else 1)


register(Spec("cross_entropy/weighted", _cross_entropy_weighted_cases(),
              lambda x, t, w, **kw: F.cross_entropy(x, t, w, **kw),
              _cross_entropy_weighted_reference))


@st.composite
def _cross_entropy_probability_cases(draw) -> Case:
    """Logits and target distributions of the same shape (C,), (N, C) or (N, C, d1, ...),
    maybe a class weight, every reduction and some label smoothing."""
    shape = draw(shapes(min_dims=1, max_dims=3, max_side=4))
    classes = shape[1] if len(shape) >= 2 else shape[0]
    weight = [draw(arrays((classes,), CLASS_WEIGHTS))] if draw(st.booleans()) else []
    return Case(draw(arrays(shape)), draw(arrays(shape, PROBABILITIES)), *weight,
                reduction=draw(st.sampled_from(("mean", "sum", "none"))),
                label_smoothing=draw(st.sampled_from((0.0, 0.1, 0.4))))


def _cross_entropy_probability_reference(x, q, *weight, reduction, label_smoothing):
    classes = x.shape[1] if x.ndim >= 2 else x.shape[0]
    q = np.moveaxis(q, 1 if x.ndim >= 2 else 0, -1) * (1 - label_smoothing) + label_smoothing / classes
    loss = -(q * (weight[0] if weight else 1.0) * _log_softmax_classes_last(x)).sum(-1)
    return loss if reduction == "none" else loss.sum() / (loss.size if reduction == "mean" else 1)


register(Spec("cross_entropy/probabilities", _cross_entropy_probability_cases(),
              lambda x, q, *w, **kw: F.cross_entropy(x, q, *w, **kw),
              _cross_entropy_probability_reference))

# ---- logsigmoid and binary cross-entropy --------------------------------------------------------

WIDE = Domain(((-40.0, 40.0),))  # logits where sigmoid(x) rounds to 0 or 1 in float32


def _logsigmoid_reference(x):
    return -np.logaddexp(0.0, -x)


register(Spec("logsigmoid", unary_cases(), F.logsigmoid, _logsigmoid_reference))
register(Spec("logsigmoid/wide", unary_cases(WIDE), F.logsigmoid, _logsigmoid_reference))


@st.composite
def _binary_cross_entropy_cases(draw, logits: bool) -> Case:
    """Input and target of one shape, a weight (and for logits a pos_weight) that broadcast to
    it or none, and every reduction."""
    shape = draw(shapes())
    x = draw(arrays(shape) if logits else arrays(shape, PROBABILITIES))
    weights = {"weight": None, "pos_weight": None} if logits else {"weight": None}
    inputs = [x, draw(arrays(shape, Domain(((0.0, 1.0),))))]
    for name in weights:
        if draw(st.booleans()):
            weights[name] = len(inputs)
            inputs.append(draw(arrays(draw(shapes_broadcasting_to(shape)), CLASS_WEIGHTS)))
    return Case(*inputs, reduction=draw(st.sampled_from(("mean", "sum", "none"))), **weights)


def _picked(inputs: tuple, index: int | None):
    return None if index is None else inputs[index]


def _binary_cross_entropy(p, y, *weights, weight, reduction):
    return F.binary_cross_entropy(p, y, _picked((p, y, *weights), weight), reduction=reduction)


def _binary_cross_entropy_reference(p, y, *weights, weight, reduction):
    loss = -(y * np.log(p) + (1 - y) * np.log1p(-p))
    return _reduced(loss * (1.0 if weight is None else (p, y, *weights)[weight]), reduction)


def _reduced(loss, reduction: str):
    return loss if reduction == "none" else loss.sum() / (loss.size if reduction == "mean" else 1)


register(Spec("binary_cross_entropy", _binary_cross_entropy_cases(logits=False),
              _binary_cross_entropy, _binary_cross_entropy_reference))


def _binary_cross_entropy_with_logits(x, y, *weights, weight, pos_weight, reduction):
    inputs = (x, y, *weights)
    return F.binary_cross_entropy_with_logits(x, y, _picked(inputs, weight), reduction=reduction,
                                              pos_weight=_picked(inputs, pos_weight))


def _binary_cross_entropy_with_logits_reference(x, y, *weights, weight, pos_weight, reduction):
    inputs = (x, y, *weights)
    pos = 1.0 if pos_weight is None else inputs[pos_weight]
    loss = -(pos * y * -np.logaddexp(0.0, -x) + (1 - y) * -np.logaddexp(0.0, x))
    return _reduced(loss * (1.0 if weight is None else inputs[weight]), reduction)


register(Spec("pattern/binary_cross_entropy_with_logits", _binary_cross_entropy_cases(logits=True),
              _binary_cross_entropy_with_logits, _binary_cross_entropy_with_logits_reference))
