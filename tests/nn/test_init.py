"""Initialisers: the distributions, bounds and seeding; layers' default initialisation."""
import math

import numpy as np
import pytest

import minigt
from minigt import nn
from minigt.nn import init


def big(*shape, dtype=np.float64):
    return nn.Parameter(minigt.zeros(*shape, dtype=dtype))


@pytest.mark.parametrize("fill, low, high, mean, std", [
    (lambda t: init.uniform_(t, -2.0, 3.0), -2.0, 3.0, 0.5, 5 / math.sqrt(12)),
    (lambda t: init.normal_(t, 1.0, 0.5), None, None, 1.0, 0.5),
    (lambda t: init.xavier_uniform_(t), -math.sqrt(6 / 700), math.sqrt(6 / 700), 0.0,
     math.sqrt(2 / 700)),
    (lambda t: init.xavier_normal_(t, gain=2.0), None, None, 0.0, 2 * math.sqrt(2 / 700)),
    (lambda t: init.kaiming_uniform_(t, a=math.sqrt(5)), -1 / math.sqrt(300), 1 / math.sqrt(300), 0.0,
     1 / math.sqrt(900)),
    (lambda t: init.kaiming_normal_(t, mode="fan_out", nonlinearity="relu"), None, None, 0.0,
     math.sqrt(2 / 400)),
], ids=["uniform", "normal", "xavier_uniform", "xavier_normal", "kaiming_uniform", "kaiming_normal"])
def test_distributions(fill, low, high, mean, std):
    t = big(400, 300)  # fan_out 400, fan_in 300
    assert fill(t) is t
    values = t.numpy()
    if low is not None:
        assert low <= values.min() and values.max() <= high
        assert values.min() < low + 0.01 * (high - low) and values.max() > high - 0.01 * (high - low)
    assert values.mean() == pytest.approx(mean, abs=5 * std / math.sqrt(values.size))
    assert values.std() == pytest.approx(std, rel=0.02)


def test_constant_fills_keep_dtype_and_identity():
    t = big(3, 2, dtype=np.float32)
    assert init.ones_(t) is t and t.dtype == np.float32 and (t.numpy() == 1).all()
    assert (init.zeros_(t).numpy() == 0).all()


def test_fans_count_the_receptive_field():
    assert init.fan_in_and_fan_out(minigt.zeros(8, 3, 5, 5)) == (75, 200)
    with pytest.raises(ValueError, match="at least 2 dims"):
        init.xavier_uniform_(minigt.zeros(5))


def test_gains():
    assert init.calculate_gain("relu") == pytest.approx(math.sqrt(2))
    assert init.calculate_gain("leaky_relu", math.sqrt(5)) == pytest.approx(math.sqrt(1 / 3))
    assert init.calculate_gain("tanh") == pytest.approx(5 / 3)
    with pytest.raises(ValueError, match="unknown nonlinearity"):
        init.calculate_gain("swish")


def test_manual_seed_makes_initialisation_repeatable():
    minigt.manual_seed(42)
    first = [p.numpy().copy() for p in nn.Linear(5, 4).parameters()]
    minigt.manual_seed(42)
    second = [p.numpy() for p in nn.Linear(5, 4).parameters()]
    for a, b in zip(first, second):
        np.testing.assert_array_equal(a, b)
    assert not np.array_equal(first[0], nn.Linear(5, 4).weight.numpy())


def test_default_initialisations_follow_pytorch():
    linear = nn.Linear(64, 32)
    bound = 1 / math.sqrt(64)
    for p in linear.parameters():
        assert np.abs(p.numpy()).max() <= bound and p.dtype == np.float32
    emb = nn.Embedding(100, 50, padding_idx=0)
    assert emb.weight.numpy().std() == pytest.approx(1.0, rel=0.05)
    assert not emb.weight.numpy()[0].any()
    norm = nn.LayerNorm(7)
    assert (norm.weight.numpy() == 1).all() and (norm.bias.numpy() == 0).all()
    mha = nn.MultiheadAttention(8, 2)
    assert not mha.in_proj_bias.numpy().any() and not mha.out_proj.bias.numpy().any()
    assert np.abs(mha.in_proj_weight.numpy()).max() <= math.sqrt(6 / (24 + 8))
