"""Every spec in the registry, on every device: the forward equals NumPy's result, and the
gradient of every floating-point input equals float64 central differences. Every spec runs in
float32 too: outputs and gradients stay float32 and agree with the float64 run."""
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


@pytest.mark.parametrize("name", sorted(REGISTRY))
@given(data=st.data())
def test_op_in_float32(name: str, device: str, data: st.DataObject) -> None:
    """On float32 inputs every float output and gradient is float32, of the float64 run's shape,
    and equals the float64 run on the same values at float32 tolerances."""
    spec = REGISTRY[name]
    case = data.draw(spec.cases, label="case")
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1), label="seed"))
    single = [x.astype(np.float32) if x.dtype.kind == "f" else x for x in case.inputs]
    upstream = {}  # output k -> its upstream gradient, drawn in float32 so both runs share it
    got_outputs, got_grads = _forward_backward(spec, case.kwargs, single, device, upstream, rng)
    double = [x.astype(np.float64) if x.dtype.kind == "f" else x for x in single]
    outputs, grads = _forward_backward(spec, case.kwargs, double, device, upstream, rng)
    for what, got, want in (("output", got_outputs, outputs), ("gradient of input", got_grads, grads)):
        for k, (g, w) in enumerate(zip(got, want)):
            wanted_dtype = np.float32 if w.dtype.kind == "f" else w.dtype
            assert (g.shape, g.dtype) == (w.shape, wanted_dtype), f"{what} {k}"
            np.testing.assert_allclose(g, w, rtol=spec.float32_tolerance.rtol,
                                       atol=spec.float32_tolerance.atol,
                                       err_msg=f"{what} {k}: float32 != float64")


def _forward_backward(spec, kwargs: dict, arrays: list, device: str, upstream: dict,
                      rng: np.random.Generator) -> tuple[list, list]:
    """The op's outputs and, when differentiable, the gradients of its float inputs (an input
    that gets none: zeros) under the upstream gradients, as NumPy arrays."""
    leaves = [to_tensor(x, device, requires_grad=spec.differentiable and x.dtype.kind == "f")
              for x in arrays]
    outputs = as_tuple(spec.op(*leaves, **kwargs))
    for k, out in enumerate(outputs):
        if spec.differentiable and out.dtype.kind == "f":
            if k not in upstream:
                upstream[k] = rng.standard_normal(out.shape).astype(np.float32)
            out.backward(to_tensor(upstream[k].astype(out.dtype), device), retain_graph=True)
    grads = [np.zeros_like(x) if leaf.grad is None else leaf.grad.numpy()
             for x, leaf in zip(arrays, leaves) if leaf.requires_grad]
    return [out.numpy() for out in outputs], grads


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
