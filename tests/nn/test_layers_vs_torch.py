"""Each layer alone, with the same weights as its PyTorch twin: same outputs, same gradients for
inputs and parameters (float64 within 1e-9 relative, float32 within 1e-4)."""
import numpy as np
import pytest

import minigt
from minigt import nn

from .reference import DTYPES, assert_close, compare, to_both, torch, torch_device

pytestmark = pytest.mark.torch
rng = np.random.default_rng(0)


def randn(*shape):
    return rng.standard_normal(shape)


def randomize(layer, names=("bias",)):
    """Move parameters whose name ends in one of `names` off their 0/1 start (PyTorch's too), so a
    swapped or ignored term cannot hide."""
    for name, param in layer.named_parameters():
        if name.endswith(names):
            param.data[...] = param.data + 0.5 * randn(*param.shape)
    return layer


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(5,), (4, 5), (2, 3, 5)])
@pytest.mark.parametrize("bias", [True, False])
def test_linear(dtype, shape, bias, device):
    layers = nn.Linear(5, 3, bias=bias), torch.nn.Linear(5, 3, bias=bias)
    compare(*layers, [randn(*shape)], dtype, modules=layers, device=device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("padding_idx", [None, 2])
def test_embedding(dtype, padding_idx, device):
    index = np.array([[0, 2, 4, 2], [1, 1, 3, 2]])  # repeats: their gradients must add up
    layers = (nn.Embedding(6, 3, padding_idx=padding_idx),
              torch.nn.Embedding(6, 3, padding_idx=padding_idx))
    compare(*layers, [index], dtype, modules=layers, device=device)
    if padding_idx is not None:
        assert not layers[0].weight.grad.numpy()[padding_idx].any()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("normalized_shape, affine, bias", [
    (6, True, True), ((3, 6), True, True), (6, True, False), ((3, 6), False, False),
])
def test_layer_norm(dtype, normalized_shape, affine, bias, device):
    kwargs = dict(elementwise_affine=affine, bias=bias)
    layers = (randomize(nn.LayerNorm(normalized_shape, **kwargs), ("weight", "bias")),
              torch.nn.LayerNorm(normalized_shape, **kwargs))
    compare(*layers, [3 * randn(2, 3, 6) + 1], dtype, modules=layers, device=device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("layers", [
    (nn.ReLU(), torch.nn.ReLU()),
    (nn.GELU(), torch.nn.GELU()),
    (nn.GELU(approximate="tanh"), torch.nn.GELU(approximate="tanh")),
    (nn.Tanh(), torch.nn.Tanh()),
    (nn.Sigmoid(), torch.nn.Sigmoid()),
    (nn.Softmax(dim=1), torch.nn.Softmax(dim=1)),
    (nn.LogSoftmax(dim=-1), torch.nn.LogSoftmax(dim=-1)),
], ids=["relu", "gelu", "gelu_tanh", "tanh", "sigmoid", "softmax", "log_softmax"])
def test_activations(dtype, layers, device):
    x = randn(3, 7)
    x[np.abs(x) < 1e-3] = 0.5  # keep away from relu's kink
    compare(*layers, [x], dtype, device=device)


def test_softmax_layers_ask_for_their_dim():
    with pytest.raises(TypeError, match=r"Softmax\(dim=-1\)"):
        nn.Softmax()(minigt.randn(2, 3))
    assert repr(nn.LogSoftmax(dim=1)) == "LogSoftmax(dim=1)"


def test_dropout_is_identity_in_eval_mode(device):
    layer = nn.Dropout(0.5).eval()
    x = minigt.randn(4, 5, device=device)
    assert layer(x) is x


@pytest.mark.parametrize("p", [0.2, 0.5])
def test_dropout_scales_kept_values_and_backward_uses_the_same_mask(p, device):
    minigt.manual_seed(1)
    x = minigt.tensor(np.ones((200, 50)), device=device, requires_grad=True)
    y = nn.Dropout(p)(x)
    kept = y.numpy() != 0
    np.testing.assert_allclose(y.numpy()[kept], 1 / (1 - p))
    assert abs(kept.mean() - (1 - p)) < 0.02
    (y * 3.0).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 3.0 * kept / (1 - p))


def test_dropout_masks_repeat_under_the_same_seed(device):
    x = minigt.ones(10, 10, device=device)
    minigt.manual_seed(7)
    first = nn.Dropout(0.5)(x).numpy()
    minigt.manual_seed(7)
    np.testing.assert_array_equal(nn.Dropout(0.5)(x).numpy(), first)


def test_dropout_with_p_one_zeroes_everything(device):
    x = minigt.randn(3, 4, device=device, requires_grad=True)
    y = nn.Dropout(1.0)(x)
    y.sum().backward()
    assert not y.numpy().any() and not x.grad.numpy().any()


# ---- MultiheadAttention ----------------------------------------------------------------------

def mha_layers(batch_first=True, bias=True):
    kwargs = dict(embed_dim=8, num_heads=2, batch_first=batch_first, bias=bias)
    return randomize(nn.MultiheadAttention(**kwargs)), torch.nn.MultiheadAttention(**kwargs)


CAUSAL = np.triu(np.ones((4, 4), dtype=bool), k=1)
MASKS = {
    "none": None,
    "bool": CAUSAL | np.eye(4, k=-3, dtype=bool),
    "float": np.where(CAUSAL, -np.inf, 0.0) + 0.5 * randn(4, 4),
    "per_head": randn(2 * 2, 4, 4),  # (batch * heads, L, S)
}


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("mask_name", list(MASKS))
@pytest.mark.parametrize("average", [True, False])
def test_mha_self_attention(dtype, mask_name, average, device):
    layers = mha_layers()
    masks = to_both(MASKS[mask_name], device, dtype)
    gt_fn, torch_fn = (
        lambda x, layer=layer, mask=mask: layer(x, x, x, attn_mask=mask, average_attn_weights=average)
        for layer, mask in zip(layers, masks)
    )
    compare(gt_fn, torch_fn, [randn(2, 4, 8)], dtype, modules=layers, device=device)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("batch_first", [True, False])
def test_mha_cross_attention_with_key_padding(dtype, batch_first, device):
    layers = mha_layers(batch_first=batch_first)
    padding = to_both(np.array([[False, False, False, True, True], [False] * 5]), device)
    gt_fn, torch_fn = (
        lambda q, k, v, layer=layer, pad=pad: layer(q, k, v, key_padding_mask=pad)
        for layer, pad in zip(layers, padding)
    )
    q, k, v = randn(2, 3, 8), randn(2, 5, 8), randn(2, 5, 8)
    if not batch_first:
        q, k, v = (a.swapaxes(0, 1) for a in (q, k, v))
    compare(gt_fn, torch_fn, [q, k, v], dtype, modules=layers, device=device)


@pytest.mark.parametrize("dtype", DTYPES)
def test_mha_is_causal_without_weights(dtype, device):
    layers = mha_layers(bias=False)
    causal = to_both(np.where(CAUSAL, -np.inf, 0.0), device, dtype)[1]  # PyTorch needs the mask too
    out = compare(lambda x: layers[0](x, x, x, need_weights=False, is_causal=True),
                  lambda x: layers[1](x, x, x, need_weights=False, is_causal=True, attn_mask=causal),
                  [randn(2, 4, 8)], dtype, modules=layers, device=device)
    assert out[1] is None


def test_mha_unbatched_input(device):
    layers = mha_layers()
    compare(lambda x: layers[0](x, x, x), lambda x: layers[1](x, x, x), [randn(4, 8)],
            np.float64, modules=layers, device=device)


def test_mha_loads_a_torch_state_dict_unchanged(device):
    torch_layer = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    gt_layer = nn.MultiheadAttention(8, 2, batch_first=True).to(device)
    gt_layer.load_state_dict(torch_layer.state_dict())  # CPU torch tensors onto `device`
    assert list(gt_layer.state_dict()) == list(torch_layer.state_dict())
    torch_layer.to(torch_device(device))
    gt_x, torch_x = to_both(randn(2, 3, 8).astype(np.float32), device)
    with torch.no_grad():
        expected = torch_layer(*[torch_x] * 3)
    for a, b, what in zip(gt_layer(*[gt_x] * 3), expected, ["output", "weights"]):
        assert_close(a, b, np.float32, what, device)


# ---- TransformerEncoderLayer -----------------------------------------------------------------

def encoder_layers(**overrides):
    kwargs = dict(d_model=8, nhead=2, dim_feedforward=16, dropout=0.0, batch_first=True,
                  norm_first=True)
    kwargs.update(overrides)
    gt_layer = randomize(nn.TransformerEncoderLayer(**kwargs), ("bias", "norm1.weight", "norm2.weight"))
    torch_layer = torch.nn.TransformerEncoderLayer(**kwargs).train()  # train: PyTorch's plain path
    return gt_layer, torch_layer


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("activation", ["relu", "gelu"])
@pytest.mark.parametrize("norm_first", [True, False])
def test_transformer_encoder_layer(dtype, activation, norm_first, device):
    layers = encoder_layers(activation=activation, norm_first=norm_first)
    compare(*layers, [randn(2, 5, 8)], dtype, modules=layers, device=device)


@pytest.mark.parametrize("dtype", DTYPES)
def test_transformer_encoder_layer_with_masks(dtype, device):
    layers = encoder_layers()
    mask = to_both(np.triu(np.ones((5, 5), dtype=bool), k=1), device)
    padding = to_both(np.array([[False] * 4 + [True], [False] * 5]), device)
    gt_fn, torch_fn = (
        lambda x, layer=layer, m=m, p=p: layer(x, src_mask=m, src_key_padding_mask=p)
        for layer, m, p in zip(layers, mask, padding)
    )
    compare(gt_fn, torch_fn, [randn(2, 5, 8)], dtype, modules=layers, device=device)
