"""The sync-free formulations ops use on a GPU (attention's fully masked rows, cross_entropy's and
embedding's range checks, one_hot, clip_grad_norm_), selected on NumPy arrays by monkeypatching
`backends.host_checks`, against the CPU formulations; and a whole training step on arrays that
refuse to be read on the host (a CPU stand-in for `cupyx.allow_synchronize(False)`)."""
from __future__ import annotations

import math
import sys

import numpy as np
import pytest

import minigt as gt
from minigt import backends
from minigt.nn import functional as F
from minigt.tensor import Tensor

from .helpers import pixel_model, single_process, train_step

pytestmark = single_process

# ==== 2. the GPU formulations of data checks, on NumPy ===========================================


@pytest.fixture
def gpu_formulas(monkeypatch):
    """Ops take the branch they take on GPU arrays: no data-dependent Python checks."""
    monkeypatch.setattr(backends, "host_checks", lambda array: False)


def grads_of(fn, *arrays):
    """fn's output and the gradients of sum(output * weights) w.r.t. float inputs."""
    tensors = [gt.tensor(a, requires_grad=a.dtype.kind == "f") for a in arrays]
    out = fn(*tensors)
    weights = np.random.default_rng(1).standard_normal(out.shape).astype(out.dtype)
    (out * gt.tensor(weights)).sum().backward()
    return out.numpy(), [t.grad.numpy() if t.requires_grad else None for t in tensors]


def assert_same(a, b, rtol=1e-6):
    out_a, grads_a = a
    out_b, grads_b = b
    np.testing.assert_allclose(out_a, out_b, rtol=rtol, atol=1e-7)
    for ga, gb in zip(grads_a, grads_b):
        if ga is not None:
            np.testing.assert_allclose(ga, gb, rtol=rtol, atol=1e-7)


@pytest.mark.parametrize("fully_masked_row", [False, True])
def test_attention_on_gpu_fills_masked_rows_without_asking(fully_masked_row, monkeypatch):
    rng = np.random.default_rng(0)
    q, k, v = (rng.standard_normal((2, 3, 4, 5)).astype(np.float32) for _ in range(3))
    keep = rng.random((4, 4)) < 0.7
    keep[:, 0] = True
    if fully_masked_row:
        keep[2] = False

    def attend(q, k, v):
        return F.scaled_dot_product_attention(q, k, v, attn_mask=gt.tensor(keep))

    on_cpu = grads_of(attend, q, k, v)
    monkeypatch.setattr(backends, "host_checks", lambda array: False)
    on_gpu = grads_of(attend, q, k, v)
    assert_same(on_cpu, on_gpu)
    assert np.isfinite(on_gpu[0]).all()
    if fully_masked_row:
        assert (on_gpu[0][:, :, 2] == 0).all()


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_on_gpu_matches_the_cpu_for_valid_targets(reduction, monkeypatch):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((6, 4)).astype(np.float32)
    target = np.array([0, 3, -100, 1, 2, -100])

    def loss(x, t):
        return F.cross_entropy(x, t, reduction=reduction, label_smoothing=0.1)

    on_cpu = grads_of(loss, logits, target)
    monkeypatch.setattr(backends, "host_checks", lambda array: False)
    on_gpu = grads_of(loss, logits, target)
    assert_same(on_cpu, on_gpu)
    assert on_gpu[0].dtype == np.float32


@pytest.mark.filterwarnings("ignore:invalid value encountered")  # NumPy's 0/0 (CuPy is silent)
def test_cross_entropy_on_gpu_marks_out_of_range_targets_with_nan(gpu_formulas):
    logits = gt.tensor(np.zeros((3, 4), np.float32), requires_grad=True)
    rows = F.cross_entropy(logits, gt.tensor([1, 4, -100]), reduction="none")
    out = rows.numpy()
    assert np.isnan(out[1]) and np.isfinite(out[[0, 2]]).all()
    rows.sum().backward()
    grad = logits.grad.numpy()
    assert np.isnan(grad[1]).all() and np.isfinite(grad[[0, 2]]).all()
    assert np.isnan(F.cross_entropy(gt.tensor(np.zeros((2, 4))), gt.tensor([0, -1])).item())
    # all rows ignored: the mean is 0/0 = NaN, on the GPU as on the CPU
    assert np.isnan(F.cross_entropy(gt.tensor(np.zeros((2, 4))), gt.tensor([-100, -100])).item())


def test_cross_entropy_on_the_cpu_still_raises_for_out_of_range_targets():
    with pytest.raises(IndexError, match="target 4 is out of range"):
        F.cross_entropy(gt.zeros(2, 4), gt.tensor([0, 4]))


def test_one_hot_on_gpu_gives_zero_rows_for_out_of_range_values(gpu_formulas):
    out = F.one_hot(gt.tensor([0, 2, 3, -1]), 3).numpy()
    assert out.tolist() == [[1, 0, 0], [0, 0, 1], [0, 0, 0], [0, 0, 0]]
    assert out.dtype == np.int64


@pytest.mark.parametrize("padding_idx", [None, 1])
def test_embedding_on_gpu_matches_the_cpu_for_valid_indices(padding_idx, monkeypatch):
    weight = np.random.default_rng(0).standard_normal((5, 3)).astype(np.float32)
    index = np.array([[0, 1, 4], [1, 1, 2]])

    def look_up(w, i):
        return F.embedding(i, w, padding_idx=padding_idx)

    on_cpu = grads_of(look_up, weight, index)
    monkeypatch.setattr(backends, "host_checks", lambda array: False)
    assert_same(on_cpu, grads_of(look_up, weight, index))


def test_embedding_on_gpu_gives_nan_rows_for_out_of_range_indices(gpu_formulas):
    weight = gt.tensor(np.arange(6.0, dtype=np.float32).reshape(3, 2), requires_grad=True)
    out = F.embedding(gt.tensor([2, 3, -1, 0]), weight)
    values = out.numpy()
    assert values[0].tolist() == [4.0, 5.0] and values[3].tolist() == [0.0, 1.0]
    assert np.isnan(values[1:3]).all()
    out.sum().backward()  # NaN rows pass no gradient (row 0 gets only the real lookup's)
    assert weight.grad.numpy().tolist() == [[1, 1], [0, 0], [1, 1]]


@pytest.mark.parametrize("norm_type", [2.0, 1.0, math.inf])
@pytest.mark.parametrize("max_norm", [0.5, 1e6])
def test_clip_grad_norm_on_gpu_matches_the_cpu(norm_type, max_norm, monkeypatch):
    rng = np.random.default_rng(0)

    def clipped():
        params = [gt.tensor(rng.standard_normal(s).astype(np.float32), requires_grad=True)
                  for s in [(3, 4), (4,)]]
        sum((p * p).sum() for p in params).backward()
        norm = gt.nn.utils.clip_grad_norm_(params, max_norm, norm_type)
        return norm.numpy(), [p.grad.numpy() for p in params]

    rng = np.random.default_rng(0)
    norm_cpu, grads_cpu = clipped()
    monkeypatch.setattr(backends, "host_checks", lambda array: False)
    rng = np.random.default_rng(0)
    norm_gpu, grads_gpu = clipped()
    np.testing.assert_allclose(norm_gpu, norm_cpu, rtol=1e-6)
    for a, b in zip(grads_gpu, grads_cpu):
        np.testing.assert_allclose(a, b, rtol=1e-6)


# ---- a training step that never reads an array on the host --------------------------------------


class HostRead(AssertionError):
    pass


class NoHostRead(np.ndarray):
    """A NumPy array that refuses to be read by Python (bool, int, float, item, tolist), as
    reading a GPU array would make the host wait; 0-d results stay such arrays."""

    def __array_wrap__(self, arr, context=None, return_scalar=False):
        return np.asarray(arr).view(NoHostRead)

    def _refuse(self, *args, **kwargs):
        raise HostRead("an array value was read on the host")

    __bool__ = __float__ = __int__ = __index__ = item = tolist = _refuse


def no_host_read(t: Tensor) -> Tensor:
    t.data = t.data.view(NoHostRead)
    return t


@pytest.fixture
def host_reads_refused(gpu_formulas, monkeypatch):
    """The GPU formulations, with same_device's exact-type check relaxed for NoHostRead arrays
    (Python scalars still become plain NumPy arrays in the ops)."""
    from minigt.ops.dims import same_device

    for name, module in list(sys.modules.items()):
        if name.startswith("minigt") and getattr(module, "same_device", None) is same_device:
            monkeypatch.setattr(module, "same_device", lambda op, *tensors: None)


def test_the_host_read_detector_catches_the_cpu_checks():
    labels = no_host_read(gt.tensor([1, 7]))
    with pytest.raises(HostRead):
        F.one_hot(labels, 10)  # the CPU formulation reads min() and max()


@pytest.mark.parametrize("loss_kind", ["mse", "ce"])
def test_a_training_step_reads_nothing_on_the_host_with_the_gpu_formulas(loss_kind,
                                                                         host_reads_refused):
    model = pixel_model()
    for p in model.parameters():
        no_host_read(p)
    optimizer = gt.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    rng = np.random.default_rng(0)
    x = no_host_read(gt.tensor(rng.standard_normal((2, 3, 4, 4)).astype(np.float32)))
    y = no_host_read(gt.tensor([1, 7]))
    for _ in range(2):
        # correct: kept on the device, read once an epoch
        loss, correct = train_step(model, optimizer, x, y, loss_kind)
    assert np.isfinite(np.asarray(loss.data).view(np.ndarray)).all()  # read for printing, now
    assert 0 <= np.asarray(correct.data).view(np.ndarray) <= 2


def test_masked_attention_and_embedding_read_nothing_on_the_host(host_reads_refused):
    rng = np.random.default_rng(0)
    q = no_host_read(gt.tensor(rng.standard_normal((1, 2, 3, 4)).astype(np.float32),
                               requires_grad=True))
    mask = no_host_read(gt.tensor(np.tril(np.ones((3, 3), bool))))
    out = F.scaled_dot_product_attention(q, q, q, attn_mask=mask, is_causal=True)
    weight = no_host_read(gt.tensor(rng.standard_normal((5, 4)).astype(np.float32),
                                    requires_grad=True))
    rows = F.embedding(no_host_read(gt.tensor([[0, 4, 2]])), weight, padding_idx=0)
    (out.sum() + rows.sum()).backward()

