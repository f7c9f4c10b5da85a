"""linear computes a few rows through a wide layer as (W xᵀ)ᵀ (faster with OpenBLAS): the same
bits as x Wᵀ + b, laid out by rows like any other result."""
import importlib

import numpy as np
import pytest

import minigt
from minigt.nn import functional as F

linear_module = importlib.import_module("minigt.nn.functional.linear")  # F.linear is the function


@pytest.mark.parametrize("rows, inputs, outputs", [
    (8, 40000, 256),   # the brief's embedding at batch 2: the outputs-first way
    (8, 256, 1024), (32, 256, 256), (64, 4096, 32),
    (64, 256, 256), (200, 256, 256), (8, 256, 4),  # the usual way
])
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_both_layouts_give_the_bits_of_x_times_w_transposed(rows, inputs, outputs, bias, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows // 2, 2, inputs)).astype(dtype)
    w = rng.standard_normal((outputs, inputs)).astype(dtype)
    b = rng.standard_normal(outputs).astype(dtype) if bias else None
    want = x.reshape(rows, inputs) @ w.T
    if bias:
        want += b
    got = F.linear(minigt.tensor(x), minigt.tensor(w), None if b is None else minigt.tensor(b))
    assert got.shape == (rows // 2, 2, outputs) and got.data.flags.c_contiguous
    np.testing.assert_array_equal(got.numpy(), want.reshape(rows // 2, 2, outputs))


def test_few_rows_through_a_wide_layer_go_outputs_first():
    assert linear_module._outputs_first(8, 40000, 256)      # batch 2 of 4 images, embedding
    assert linear_module._outputs_first(8, 256, 1024)       # batch 2, feed-forward
    assert linear_module._outputs_first(64, 40000, 256)     # batch 16, embedding
    assert not linear_module._outputs_first(64, 256, 256)   # batch 16, attention
    assert not linear_module._outputs_first(8, 256, 8)      # no fewer rows than outputs
