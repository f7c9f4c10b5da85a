"""The whole Pixel Transformer (examples/pixel_transformer.py) against its PyTorch twin
(examples/torch_pixel_transformer.py) with identical weights: outputs, loss and every
parameter's gradient (matched by name), then three SGD-momentum and three AdamW steps.

Error measure, per tensor: max|minigt - torch| / max|torch| (the error relative to the tensor's
largest entry, so entries near zero do not need an atol). Bounds: 1e-9 in float64, 1e-4 in
float32. Both losses of train_pixel.py are covered: MSE on one-hot targets and cross-entropy.

One parameter is special: the key projection's bias (`blocks.N.attn.k.bias`). Its exact gradient
is zero (it adds q·b_k to every score of a query alike, and softmax ignores a shared shift), so
both libraries return rounding noise there. Its gradient is checked to be that small (relative to
the same layer's k.weight gradient) rather than compared entry by entry, and the AdamW test leaves
it out of the optimizer: Adam divides noise by its own size, so in float32 it moves ±lr per step
in PyTorch too, in a direction set by rounding.
Small sizes (img 8, seq 4, dim 16, heads 2, layers 2, ff 32) keep the file under a few seconds.
"""
from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import minigt as gt
from minigt.nn import functional as F

torch = pytest.importorskip("torch")

EXAMPLES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "examples")
sys.path.insert(0, os.path.abspath(EXAMPLES))

from pixel_data import synthetic  # noqa: E402
from pixel_transformer import PixelTransformer  # noqa: E402
from torch_pixel_transformer import from_minigt  # noqa: E402

pytestmark = pytest.mark.torch

SIZE = dict(img=8, seq=4, dim=16, heads=2, layers=2, ff=32)
BATCH = 6
TOLERANCE = {np.float64: 1e-9, np.float32: 1e-4}
DTYPES = [np.float64, np.float32]
LOSSES = ["mse", "ce"]
TORCH_DTYPE = {np.float64: torch.float64, np.float32: torch.float32}


def rel_err(actual, expected) -> float:
    """max|actual - expected| / max|expected| (0 when both are all zeros)."""
    a = np.asarray(actual.numpy() if isinstance(actual, gt.Tensor) else actual, np.float64)
    b = np.asarray(expected.detach().numpy() if isinstance(expected, torch.Tensor) else expected,
                   np.float64)
    assert a.shape == b.shape, f"shape {a.shape} != torch's {b.shape}"
    scale = np.abs(b).max()
    diff = np.abs(a - b).max()
    return float(diff / scale) if scale else float(diff)


def assert_close(actual, expected, dtype, what: str) -> None:
    err = rel_err(actual, expected)
    assert err <= TOLERANCE[dtype], f"{what}: relative error {err:.3g} > {TOLERANCE[dtype]:g}"


def dead_gradient(name: str) -> bool:
    """Parameters whose exact gradient is zero (see the module docstring)."""
    return name.endswith("attn.k.bias")


def models(dtype, seed=0):
    """A seeded minigt PixelTransformer in `dtype` and its PyTorch twin with the same weights."""
    gt.manual_seed(seed)
    model = PixelTransformer(**SIZE).to(dtype)
    twin = from_minigt(model, TORCH_DTYPE[dtype])
    return model, twin


def batches(dtype, count=1, seed=1):
    """`count` batches of (images, labels) as NumPy arrays, images in `dtype`."""
    images, labels = synthetic(BATCH * count, SIZE["seq"], SIZE["img"], seed)
    images = images.astype(dtype)
    return [(images[i * BATCH:(i + 1) * BATCH], labels[i * BATCH:(i + 1) * BATCH])
            for i in range(count)]


def gt_loss(kind, logits, labels):
    """The loss exactly as examples/train_pixel.py computes it."""
    if kind == "ce":
        return F.cross_entropy(logits, labels)
    return F.mse_loss(logits, F.one_hot(labels, 10).to(logits.dtype))


def torch_loss(kind, logits, labels):
    if kind == "ce":
        return torch.nn.functional.cross_entropy(logits, labels)
    one_hot = torch.nn.functional.one_hot(labels, 10).to(logits.dtype)
    return torch.nn.functional.mse_loss(logits, one_hot)


def forward_backward(kind, model, twin, images, labels):
    """One forward and backward in both; returns (gt logits, gt loss, torch logits, torch loss)."""
    logits = model(gt.tensor(images))
    loss = gt_loss(kind, logits, gt.tensor(labels))
    loss.backward()
    t_logits = twin(torch.from_numpy(images))
    t_loss = torch_loss(kind, t_logits, torch.from_numpy(labels))
    t_loss.backward()
    return logits, loss, t_logits, t_loss


def test_twin_has_the_same_parameters():
    model, twin = models(np.float64)
    ours = {name: p.shape for name, p in model.named_parameters()}
    theirs = {name: tuple(p.shape) for name, p in twin.named_parameters()}
    assert ours == theirs
    assert len(ours) == 7 + SIZE["layers"] * 16  # embed, position, norm, head; 16 per block
    for name, p in twin.named_parameters():
        assert p.dtype == torch.float64
        assert rel_err(dict(model.named_parameters())[name], p) == 0.0, name


@pytest.mark.parametrize("kind", LOSSES)
@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
def test_outputs_loss_and_every_gradient(dtype, kind):
    model, twin = models(dtype)
    [(images, labels)] = batches(dtype)
    logits, loss, t_logits, t_loss = forward_backward(kind, model, twin, images, labels)
    assert logits.dtype == np.dtype(dtype) and logits.shape == (BATCH, 10)
    assert_close(logits, t_logits, dtype, "logits")
    assert_close(loss, t_loss, dtype, "loss")
    twin_params = dict(twin.named_parameters())
    names = [name for name, _ in model.named_parameters()]
    assert sorted(names) == sorted(twin_params)
    grads = {name: param.grad for name, param in model.named_parameters()}
    for name, param in model.named_parameters():
        expected = twin_params[name].grad
        assert param.grad is not None, f"{name}: minigt gave no gradient"
        assert param.grad.dtype == np.dtype(dtype), name
        if dead_gradient(name):  # rounding noise in both, far below the layer's k.weight gradient
            scale = np.abs(grads[name.replace(".bias", ".weight")].numpy()).max()
            for lib, g in (("minigt", param.grad.numpy()), ("torch", expected.numpy())):
                assert np.abs(g).max() <= TOLERANCE[dtype] * scale, f"{name} ({lib}) is not ~0"
            continue
        assert expected is not None and expected.abs().max() > 0, f"{name}: torch's gradient is 0"
        assert_close(param.grad, expected, dtype, f"grad of {name}")


def test_no_grad_forward_matches_and_records_nothing():
    model, twin = models(np.float64)
    [(images, _)] = batches(np.float64)
    with gt.no_grad():
        out = model(gt.tensor(images))
    assert not out.requires_grad
    with torch.no_grad():
        expected = twin(torch.from_numpy(images))
    assert_close(out, expected, np.float64, "logits under no_grad")


OPTIMIZERS = {
    "sgd-momentum": (lambda params: gt.optim.SGD(params, lr=0.05, momentum=0.9),
                     lambda params: torch.optim.SGD(params, lr=0.05, momentum=0.9)),
    "adamw": (lambda params: gt.optim.AdamW(params, lr=1e-2, weight_decay=0.05),
              lambda params: torch.optim.AdamW(params, lr=1e-2, weight_decay=0.05)),
}


@pytest.mark.parametrize("kind", LOSSES)
@pytest.mark.parametrize("optimizer", sorted(OPTIMIZERS))
@pytest.mark.parametrize("dtype", DTYPES, ids=["float64", "float32"])
def test_three_optimizer_steps_land_on_the_same_parameters(dtype, optimizer, kind):
    model, twin = models(dtype)
    start = {name: p.numpy().copy() for name, p in model.named_parameters()}
    make_gt, make_torch = OPTIMIZERS[optimizer]
    twin_params = dict(twin.named_parameters())
    names = [name for name, _ in model.named_parameters()
             if not (optimizer == "adamw" and dead_gradient(name))]
    gt_params = dict(model.named_parameters())
    opt = make_gt([gt_params[name] for name in names])
    t_opt = make_torch([twin_params[name] for name in names])
    for step, (images, labels) in enumerate(batches(dtype, count=3), start=1):
        opt.zero_grad()
        t_opt.zero_grad()
        _, loss, _, t_loss = forward_backward(kind, model, twin, images, labels)
        assert_close(loss, t_loss, dtype, f"loss before step {step}")
        opt.step()
        t_opt.step()
        for name, param in model.named_parameters():
            assert_close(param, twin_params[name], dtype, f"{name} after step {step}")
    for name in names:  # every parameter with a real gradient moved: the check is not vacuous
        if not dead_gradient(name):
            moved = not np.array_equal(gt_params[name].numpy(), start[name])
            assert moved, f"{name} did not change"
