"""minigt.nn.functional against torch.nn.functional: losses, softmaxes, attention, one_hot and
gradient clipping."""
import numpy as np
import pytest

import minigt
from minigt import nn
from minigt.nn import functional as F

from .reference import DTYPES, assert_close, compare, to_both, torch, torch_device

TF = torch.nn.functional
pytestmark = pytest.mark.torch
rng = np.random.default_rng(1)


def randn(*shape):
    return rng.standard_normal(shape)


# ---- losses ----------------------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("label_smoothing", [0.0, 0.2])
def test_cross_entropy(dtype, reduction, label_smoothing, device):
    target = np.array([0, 3, 1, 3, 2, 4])
    kwargs = dict(reduction=reduction, label_smoothing=label_smoothing)
    compare(lambda x, t: F.cross_entropy(x, t, **kwargs), lambda x, t: TF.cross_entropy(x, t, **kwargs),
            [3 * randn(6, 5), target], dtype, device=device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_ignore_index_and_extra_dims(dtype, reduction, device):
    target = np.array([[0, -100, 2], [1, 2, 7]])  # (N, d1); 7 is ignored below, -100 by default
    for ignore_index in (-100, 7):
        kwargs = dict(reduction=reduction, label_smoothing=0.1, ignore_index=ignore_index)
        t = np.where(target == (7 if ignore_index == -100 else -100), 1, target)
        compare(lambda x, t: F.cross_entropy(x, t, **kwargs),
                lambda x, t: TF.cross_entropy(x, t, **kwargs), [randn(2, 3, 3), t], dtype,
                device=device)


def test_cross_entropy_unbatched(device):
    compare(lambda x, t: F.cross_entropy(x, t), lambda x, t: TF.cross_entropy(x, t),
            [randn(5), np.array(3)], np.float64, device=device)


def test_cross_entropy_stays_finite_for_huge_logits(device):
    logits = minigt.tensor([[1000.0, -1000.0, 0.0]], device=device, requires_grad=True)
    loss = F.cross_entropy(logits, minigt.tensor([1], device=device))
    loss.backward()
    assert loss.item() == pytest.approx(2000.0)
    assert np.isfinite(logits.grad.numpy()).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_mse_loss(dtype, reduction, device):
    compare(lambda x, y: F.mse_loss(x, y, reduction=reduction),
            lambda x, y: TF.mse_loss(x, y, reduction=reduction), [randn(3, 4), randn(3, 4)], dtype,
            device=device)


# ---- softmaxes, layer_norm -------------------------------------------------------------------

@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("name", ["softmax", "log_softmax"])
@pytest.mark.parametrize("dim", [-1, 0, 1])
def test_softmaxes(dtype, name, dim, device):
    compare(lambda x: getattr(F, name)(x, dim=dim), lambda x: getattr(TF, name)(x, dim=dim),
            [5 * randn(3, 4, 5)], dtype, device=device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("normalized_shape", [(5,), (4, 5), (3, 4, 5)])
def test_layer_norm_over_the_last_k_dims(dtype, normalized_shape, device):
    shape = normalized_shape
    compare(lambda x, w, b: F.layer_norm(x, shape, w, b),
            lambda x, w, b: TF.layer_norm(x, shape, w, b),
            [2 * randn(2, 3, 4, 5) - 1, 1 + randn(*shape), randn(*shape)], dtype, device=device)


def test_layer_norm_without_affine(device):
    compare(lambda x: F.layer_norm(x, (4, 5)), lambda x: TF.layer_norm(x, (4, 5)),
            [randn(3, 4, 5)], np.float64, device=device)


# ---- attention -------------------------------------------------------------------------------

SDPA_CASES = {
    "plain": dict(),
    "causal": dict(is_causal=True),
    "scale": dict(scale=0.3),
    "bool_mask": dict(attn_mask=np.tril(np.ones((4, 6), dtype=bool), k=2)),
    "float_mask": dict(attn_mask=randn(2, 1, 4, 6)),
    # query 0 may attend nothing: zero output and gradients, not NaN
    "fully_masked_row": dict(attn_mask=np.tril(np.ones((4, 6), dtype=bool), k=-1)),
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("case", list(SDPA_CASES))
def test_scaled_dot_product_attention(dtype, case, device):
    kwargs = SDPA_CASES[case]
    gt_mask, torch_mask = to_both(kwargs.get("attn_mask"), device, dtype)
    gt_kwargs, torch_kwargs = {**kwargs, "attn_mask": gt_mask}, {**kwargs, "attn_mask": torch_mask}
    shape_q, shape_kv = (2, 3, 4, 8), (2, 3, 4 if case == "causal" else 6, 8)
    compare(lambda q, k, v: F.scaled_dot_product_attention(q, k, v, **gt_kwargs),
            lambda q, k, v: TF.scaled_dot_product_attention(q, k, v, **torch_kwargs),
            [randn(*shape_q), randn(*shape_kv), randn(*shape_kv)], dtype, device=device)


def test_attention_dropout_is_applied_to_the_weights(device):
    minigt.manual_seed(3)
    q = k = v = minigt.randn(1, 1, 64, 4, device=device)
    full = F.scaled_dot_product_attention(q, k, v)
    dropped = F.scaled_dot_product_attention(q, k, v, dropout_p=0.5)
    assert not np.allclose(full.numpy(), dropped.numpy())


# ---- one_hot, clip_grad_norm_ ----------------------------------------------------------------

def test_one_hot(device):
    gt_index, torch_index = to_both(np.array([[0, 3], [2, 1]]), device)
    out = F.one_hot(gt_index, 5)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out.numpy(), TF.one_hot(torch_index, 5).cpu().numpy())
    inferred = F.one_hot(gt_index)  # num_classes from the largest index
    np.testing.assert_array_equal(inferred.numpy(), TF.one_hot(torch_index).cpu().numpy())


@pytest.mark.parametrize("norm_type", [2.0, 1.0, float("inf")])
@pytest.mark.parametrize("max_norm", [0.5, 100.0])
def test_clip_grad_norm(norm_type, max_norm, device):
    grads = [randn(3, 4), randn(5)]
    gt_params = [nn.Parameter(minigt.zeros(*g.shape, dtype=np.float64, device=device))
                 for g in grads]
    torch_params = [torch.zeros(g.shape, dtype=torch.float64, device=torch_device(device),
                                requires_grad=True) for g in grads]
    for p, q, g in zip(gt_params, torch_params, grads):
        p.grad, q.grad = to_both(g, device)
    total = nn.utils.clip_grad_norm_(gt_params, max_norm, norm_type)
    expected = torch.nn.utils.clip_grad_norm_(torch_params, max_norm, norm_type)
    assert_close(total, expected, np.float64, "total norm", device)
    for p, q in zip(gt_params, torch_params):
        assert_close(p.grad, q.grad, np.float64, "clipped grad", device)


def test_clip_grad_norm_skips_parameters_without_grad(device):
    p, q = nn.Parameter(minigt.ones(3, device=device)), nn.Parameter(minigt.ones(2, device=device))
    p.grad = minigt.tensor([3.0, 4.0, 0.0], device=device)
    assert nn.utils.clip_grad_norm_([p, q], 1.0).item() == pytest.approx(5.0)
    np.testing.assert_allclose(p.grad.numpy(), [0.6, 0.8, 0.0], rtol=1e-5)
    assert q.grad is None
