"""linear computes a few rows through a wide layer as (W xᵀ)ᵀ (faster with OpenBLAS's SkylakeX
kernel), laid out by rows like any other result: the bits of that product plus b, and x Wᵀ + b to
within float rounding (the same bits under SkylakeX; the Haswell kernel, which some machines force
with OPENBLAS_CORETYPE, sums in another order)."""
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
def test_both_layouts_give_x_times_w_transposed(rows, inputs, outputs, bias, dtype):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows // 2, 2, inputs)).astype(dtype)
    w = rng.standard_normal((outputs, inputs)).astype(dtype)
    b = rng.standard_normal(outputs).astype(dtype) if bias else None
    flat = x.reshape(rows, inputs)
    usual = flat @ w.T
    same_layout = (w @ flat.T).T if linear_module._outputs_first(rows, inputs, outputs) else usual
    if bias:
        usual, same_layout = usual + b, same_layout + b
    got = F.linear(minigt.tensor(x), minigt.tensor(w), None if b is None else minigt.tensor(b))
    assert got.shape == (rows // 2, 2, outputs) and got.data.flags.c_contiguous
    got = got.numpy().reshape(rows, outputs)
    np.testing.assert_array_equal(got, same_layout)
    # each output is a sum of `inputs` products of unit normals: rounding another order of that
    # sum moves it by about eps √inputs of its size (seen: up to 1/3 of this bound at 256 inputs)
    scale = 4 * np.finfo(dtype).eps * np.sqrt(inputs)
    np.testing.assert_allclose(got, usual, rtol=0, atol=scale * np.abs(usual).max())


def test_few_rows_through_a_wide_layer_go_outputs_first():
    assert linear_module._outputs_first(8, 40000, 256)      # batch 2 of 4 images, embedding
    assert linear_module._outputs_first(8, 256, 1024)       # batch 2, feed-forward
    assert linear_module._outputs_first(64, 40000, 256)     # batch 16, embedding
    assert not linear_module._outputs_first(64, 256, 256)   # batch 16, attention
    assert not linear_module._outputs_first(8, 256, 8)      # no fewer rows than outputs
