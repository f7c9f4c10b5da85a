"""The losses PyTorch users reach for, against torch: binary cross-entropy on probabilities and
on logits (weight, pos_weight), logsigmoid, cross_entropy with class weights and with
class-probability targets, and the loss Modules. Values and gradients, float64 and float32."""
import numpy as np
import pytest

import minigt
from minigt import nn
from minigt.nn import functional as F

from .reference import DTYPES, assert_close, compare, to_both, torch

TF = torch.nn.functional
pytestmark = pytest.mark.torch
rng = np.random.default_rng(7)
REDUCTIONS = ["mean", "sum", "none"]


def randn(*shape):
    return rng.standard_normal(shape)


def uniform(low, high, *shape):
    return rng.uniform(low, high, shape)


def constant(array, dtype, device):
    """A weight both libraries hold fixed (PyTorch gives weights no gradient): (minigt, torch)."""
    return to_both(None if array is None else np.asarray(array, dtype), device)


# ---- binary cross-entropy --------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight_shape", [None, (4,), (3, 4)])
def test_binary_cross_entropy(dtype, reduction, weight_shape, device):
    w, tw = constant(None if weight_shape is None else uniform(0.5, 2, *weight_shape), dtype, device)
    compare(lambda p, y: F.binary_cross_entropy(p, y, w, reduction=reduction),
            lambda p, y: TF.binary_cross_entropy(p, y, tw, reduction=reduction),
            [uniform(0.05, 0.95, 3, 4), uniform(0, 1, 3, 4)], dtype, device=device)


def test_binary_cross_entropy_at_zero_and_one_stays_finite(device):
    """Each log is clamped at -100 as in PyTorch; hard 0/1 targets get torch's input gradient."""
    p = np.array([0.0, 1.0, 0.0, 1.0, 0.5])
    y = np.array([0.0, 1.0, 1.0, 0.0, 1.0])
    gp, tp = to_both(p, device, requires_grad=True)
    gy, ty = to_both(y, device)
    ours, theirs = F.binary_cross_entropy(gp, gy, reduction="none"), TF.binary_cross_entropy(
        tp, ty, reduction="none")
    assert_close(ours, theirs, np.float64, "loss", device)
    ours.sum().backward(), theirs.sum().backward()
    # ±1/1e-12 where p(1-p) = 0; torch's 1e-12 is a float32 constant, 4e-9 away from 1e-12
    np.testing.assert_allclose(gp.grad.numpy(), tp.grad.numpy(), rtol=1e-8)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("weight_shape, pos_weight_shape", [
    (None, None), ((3, 4), None), (None, (4,)), ((4,), (4,)), ((1, 4), (3, 4))])
def test_binary_cross_entropy_with_logits(dtype, reduction, weight_shape, pos_weight_shape, device):
    w, tw = constant(None if weight_shape is None else uniform(0.5, 2, *weight_shape), dtype, device)
    pw, tpw = constant(None if pos_weight_shape is None else uniform(0.2, 3, *pos_weight_shape),
                       dtype, device)
    x = 4 * randn(3, 4)
    x[0, :2] = 0.0  # where sigmoid's pieces meet
    compare(lambda x, y: F.binary_cross_entropy_with_logits(x, y, w, reduction=reduction,
                                                            pos_weight=pw),
            lambda x, y: TF.binary_cross_entropy_with_logits(x, y, tw, reduction=reduction,
                                                             pos_weight=tpw),
            [x, uniform(0, 1, 3, 4)], dtype, device=device)


@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_cross_entropy_with_logits_is_stable_for_huge_logits(dtype, device):
    x = np.array([-1000.0, -90.0, -30.0, 0.0, 30.0, 90.0, 1000.0])
    compare(lambda x, y: F.binary_cross_entropy_with_logits(x, y, reduction="none"),
            lambda x, y: TF.binary_cross_entropy_with_logits(x, y, reduction="none"),
            [x, np.array([0.0, 1.0, 0.3, 1.0, 0.0, 1.0, 0.0])], dtype, device=device)


@pytest.mark.parametrize("dtype", DTYPES)
def test_logsigmoid(dtype, device):
    x = np.concatenate([5 * randn(10), [-1000.0, -100.0, 0.0, 100.0, 1000.0]])
    compare(F.logsigmoid, TF.logsigmoid, [x], dtype, device=device)


# ---- cross_entropy: class weights, class probabilities ----------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.3])
def test_cross_entropy_with_class_weights(dtype, reduction, label_smoothing, device):
    w, tw = constant(uniform(0.2, 3, 5), dtype, device)
    kwargs = dict(reduction=reduction, label_smoothing=label_smoothing)
    compare(lambda x, t: F.cross_entropy(x, t, w, **kwargs),
            lambda x, t: TF.cross_entropy(x, t, tw, **kwargs),
            [3 * randn(6, 5), np.array([0, 3, 1, 3, 2, 4])], dtype, device=device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_cross_entropy_with_class_weights_ignore_index_and_extra_dims(dtype, reduction, device):
    w, tw = constant(uniform(0.2, 3, 3), dtype, device)
    target = np.array([[0, 5, 2], [1, 2, 5]])
    kwargs = dict(reduction=reduction, label_smoothing=0.1, ignore_index=5)
    compare(lambda x, t: F.cross_entropy(x, t, w, **kwargs),
            lambda x, t: TF.cross_entropy(x, t, tw, **kwargs),
            [randn(2, 3, 3), target], dtype, device=device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("shape", [(4, 5), (2, 3, 4), (5,)], ids=["rows", "extra dims", "one"])
def test_cross_entropy_with_class_probabilities(dtype, reduction, label_smoothing, weighted, shape,
                                                device):
    """Targets get gradients too (as in torch, whose version is also a composition)."""
    classes = shape[1] if len(shape) > 1 else shape[0]
    w, tw = constant(uniform(0.2, 3, classes) if weighted else None, dtype, device)
    kwargs = dict(reduction=reduction, label_smoothing=label_smoothing)
    probs = np.exp(randn(*shape))
    probs /= probs.sum(axis=1 if len(shape) > 1 else 0, keepdims=True)
    compare(lambda x, q: F.cross_entropy(x, q, w, **kwargs),
            lambda x, q: TF.cross_entropy(x, q, tw, **kwargs),
            [3 * randn(*shape), probs], dtype, device=device)


# ---- loss modules ----------------------------------------------------------------------------

@pytest.mark.parametrize("make, target", [
    (lambda lib, w: lib.CrossEntropyLoss(w(uniform(0.5, 2, 4)), label_smoothing=0.1),
     np.array([1, 0, 3])),
    (lambda lib, w: lib.CrossEntropyLoss(reduction="sum", ignore_index=0), np.array([1, 0, 3])),
    (lambda lib, w: lib.MSELoss(reduction="none"), randn(3, 4)),
    (lambda lib, w: lib.BCEWithLogitsLoss(w(uniform(0.5, 2, 3, 4)), pos_weight=w(
        uniform(0.5, 2, 4))), uniform(0, 1, 3, 4)),
    (lambda lib, w: lib.BCELoss(reduction="sum"), uniform(0, 1, 3, 4)),
], ids=["CrossEntropyLoss", "CrossEntropyLoss ignore", "MSELoss", "BCEWithLogitsLoss", "BCELoss"])
def test_loss_modules(make, target):
    """The Module against torch's, weights held as buffers (so .to() moves them)."""
    weights = []

    def ours(array):
        weights.append(array)
        return minigt.tensor(array)

    our_loss = make(nn, ours)
    their_loss = make(torch.nn, lambda _: torch.tensor(weights.pop(0)))
    assert not weights
    assert [name for name, _ in our_loss.named_buffers()] == \
        [name for name, _ in their_loss.named_buffers()]
    x = uniform(0.05, 0.95, 3, 4) if isinstance(our_loss, nn.BCELoss) else randn(3, 4)
    compare(our_loss, their_loss, [x, target], np.float64)
    assert repr(our_loss) == repr(their_loss)
