"""Bad input gets a clear error that names what was expected."""
import numpy as np
import pytest

import minigt
from minigt import nn
from minigt.nn import functional as F


def test_linear_wrong_width_names_layer_expected_and_got():
    message = r"Linear\(in_features=4, out_features=2.*in_features=4, got shape \(3, 5\)"
    with pytest.raises(ValueError, match=message):
        nn.Linear(4, 2)(minigt.randn(3, 5))


def test_cross_entropy_target_out_of_range():
    logits = minigt.randn(3, 4)
    with pytest.raises(IndexError, match=r"target 4 is out of range for 4 classes \(expected 0..3"):
        F.cross_entropy(logits, minigt.tensor([0, 4, 1]))
    with pytest.raises(IndexError, match="target -1"):
        F.cross_entropy(logits, minigt.tensor([0, -1, 1]))


def test_cross_entropy_target_shape_and_dtype():
    with pytest.raises(ValueError, match=r"need targets of shape \(3,\), got \(4,\)"):
        F.cross_entropy(minigt.randn(3, 4), minigt.tensor([0, 1, 2, 3]))
    with pytest.raises(TypeError, match="integer tensor of class indices or a float tensor"):
        F.cross_entropy(minigt.randn(3, 4), minigt.tensor([True, False, True]))
    with pytest.raises(ValueError, match=r"class probabilities.*shape \(3, 4\), got \(3,\)"):
        F.cross_entropy(minigt.randn(3, 4), minigt.randn(3))


def test_cross_entropy_weight_needs_one_entry_per_class():
    with pytest.raises(ValueError, match=r"one entry per class, shape \(4,\), got \(3,\)"):
        F.cross_entropy(minigt.randn(3, 4), minigt.tensor([0, 1, 2]), minigt.ones(3))


def test_binary_cross_entropy_input_must_be_probabilities():
    with pytest.raises(RuntimeError, match=r"probabilities in \[0, 1\].*-0.5 to 2.0.*with_logits"):
        F.binary_cross_entropy(minigt.tensor([-0.5, 2.0]), minigt.tensor([0.0, 1.0]))


@pytest.mark.parametrize("loss", [F.binary_cross_entropy, F.binary_cross_entropy_with_logits])
def test_binary_cross_entropy_shapes(loss):
    with pytest.raises(ValueError, match=r"target has shape \(3, 1\) but input has \(3,\)"):
        loss(minigt.rand(3), minigt.rand(3, 1))
    with pytest.raises(ValueError, match=r"weight of shape \(2,\) does not broadcast"):
        loss(minigt.rand(3), minigt.rand(3), minigt.ones(2))


def test_binary_cross_entropy_with_logits_pos_weight_shape():
    with pytest.raises(ValueError, match=r"pos_weight of shape \(3,\) does not broadcast .* \(2, 4\)"):
        F.binary_cross_entropy_with_logits(minigt.randn(2, 4), minigt.rand(2, 4),
                                           pos_weight=minigt.ones(3))


def test_loss_modules_check_reduction_when_made():
    for make in (nn.CrossEntropyLoss, nn.MSELoss, nn.BCELoss, nn.BCEWithLogitsLoss):
        with pytest.raises(ValueError, match=f"{make.__name__}: reduction must be one of"):
            make(reduction="avg")


def test_bad_reduction():
    with pytest.raises(ValueError, match="reduction must be one of"):
        F.mse_loss(minigt.randn(2), minigt.randn(2), reduction="avg")


def test_mse_loss_shape_mismatch():
    with pytest.raises(ValueError, match=r"input has shape \(3, 1\) but target has \(3,\)"):
        F.mse_loss(minigt.randn(3, 1), minigt.randn(3))


def test_layer_norm_shape_mismatch():
    with pytest.raises(ValueError, match=r"last 1 dim\(s\) are \(8,\), got shape \(2, 6\)"):
        nn.LayerNorm(8)(minigt.randn(2, 6))


def test_embedding_index_out_of_range():
    with pytest.raises(IndexError, match=r"index 10 is out of range for 10 rows"):
        nn.Embedding(10, 3)(minigt.tensor([1, 10]))
    with pytest.raises(TypeError, match="integer tensor"):
        nn.Embedding(10, 3)(minigt.tensor([1.0]))


def test_attention_shapes_and_masks():
    mha = nn.MultiheadAttention(8, 2, batch_first=True)
    x = minigt.randn(2, 4, 8)
    with pytest.raises(ValueError, match=r"embed_dim=8.*\(2, 4, 6\)"):
        mha(minigt.randn(2, 4, 6), x, x)
    with pytest.raises(ValueError, match=r"attn_mask must be \(4, 4\) or \(4, 4, 4\), got \(3, 3\)"):
        mha(x, x, x, attn_mask=minigt.zeros(3, 3))
    with pytest.raises(ValueError, match="divisible"):
        nn.MultiheadAttention(10, 3)


def test_bad_hyperparameters():
    with pytest.raises(ValueError, match=r"p must be in \[0, 1\]"):
        nn.Dropout(1.5)
    with pytest.raises(ValueError, match="approximate"):
        nn.GELU("fast")
    with pytest.raises(ValueError, match="activation must be"):
        nn.TransformerEncoderLayer(8, 2, activation="swish")
    with pytest.raises(ValueError, match="num_classes=3"):
        F.one_hot(minigt.tensor([0, 3]), 3)


def test_clip_grad_norm_nonfinite():
    p = nn.Parameter(minigt.ones(2))
    p.grad = minigt.tensor([np.inf, 1.0])
    with pytest.raises(RuntimeError, match="inf"):
        nn.utils.clip_grad_norm_(p, 1.0, error_if_nonfinite=True)
