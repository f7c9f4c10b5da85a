"""Every spec in the registry, on every device: the forward equals NumPy's result, and the
gradient of every floating-point input equals float64 central differences."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from .gradcheck import as_tuple, check_gradients, to_tensor
from .specs import load_registry
from .strategies import LAYOUTS

REGISTRY = load_registry()


@pytest.mark.parametrize("name", sorted(REGISTRY))
@given(data=st.data())
def test_op(name: str, device: str, data: st.DataObject) -> None:
    """Forward equals the NumPy reference; gradients equal central differences."""
    spec = REGISTRY[name]
    case = data.draw(spec.cases, label="case")
    layouts = data.draw(st.tuples(*(st.sampled_from(LAYOUTS) for _ in case.inputs)), "layouts")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))

    def op(*tensors):
        return spec.op(*tensors, **case.kwargs)

    leaves = [
        to_tensor(x, device, layout, requires_grad=spec.differentiable and x.dtype.kind == "f")
        for x, layout in zip(case.inputs, layouts)
    ]
    result = op(*leaves)
    assert_matches(result, spec.expected(case))
    if spec.differentiable:
        check_gradients(op, case.inputs, leaves, result, rng, spec.tolerance)
    for i, (leaf, x) in enumerate(zip(leaves, case.inputs)):
        np.testing.assert_array_equal(leaf.numpy(), x, err_msg=f"input {i} was modified")


def assert_matches(result, expected) -> None:
    """Each output has the reference's shape, dtype and values (floats to rounding)."""
    outputs = as_tuple(result)
    expected = expected if isinstance(expected, tuple) else (expected,)
    assert len(outputs) == len(expected), f"{len(outputs)} outputs, NumPy gives {len(expected)}"
    for k, (out, want) in enumerate(zip(outputs, expected)):
        got, want = out.numpy(), np.asarray(want)
        assert (got.shape, got.dtype) == (want.shape, want.dtype), f"output {k}"
        if want.dtype.kind == "f":
            np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, err_msg=f"output {k}")
        else:
            np.testing.assert_array_equal(got, want, err_msg=f"output {k}")
