"""One helper for every "equal to PyTorch" test: run a minigt callable and a torch callable on the
same inputs and weights, push the same upstream gradient back through both, and compare the
outputs and the gradients of every input and parameter."""
from __future__ import annotations

import numpy as np
import pytest

import minigt

torch = pytest.importorskip("torch")

DTYPES = [np.float64, np.float32]
TOLERANCE = {np.float64: dict(rtol=1e-9, atol=1e-12), np.float32: dict(rtol=1e-4, atol=1e-5)}


def assert_close(actual, expected, dtype, what: str) -> None:
    actual = actual.numpy() if isinstance(actual, minigt.Tensor) else np.asarray(actual)
    expected = expected.detach().numpy() if isinstance(expected, torch.Tensor) else expected
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != torch's {expected.shape}"
    np.testing.assert_allclose(actual, expected, err_msg=what, **TOLERANCE[np.dtype(dtype).type])


def copy_weights(source: minigt.nn.Module, target) -> None:
    """Load a minigt module's weights into a torch module with the same parameter names."""
    state = {k: torch.from_numpy(v.numpy().copy()) for k, v in source.state_dict().items()}
    target.load_state_dict(state, strict=True)


def compare(gt_fn, torch_fn, inputs, dtype, modules=None, seed=0):
    """Check gt_fn(*inputs) against torch_fn(*inputs): outputs, then gradients of the float
    inputs and of every parameter (matched by name) after backward of the same random
    upstream gradient. Inputs are NumPy arrays; float ones are cast to `dtype` and get grads.
    `modules` = (minigt module, torch module): both are cast to `dtype` and the minigt weights
    copied into torch first. Returns the minigt outputs (a tuple) for further checks."""
    inputs = [np.asarray(x, dtype) if np.asarray(x).dtype.kind == "f" else x for x in inputs]
    gt_in = [minigt.tensor(x, requires_grad=x.dtype.kind == "f") if isinstance(x, np.ndarray) else x
             for x in inputs]
    torch_in = [torch.tensor(x, requires_grad=x.dtype.kind == "f") if isinstance(x, np.ndarray) else x
                for x in inputs]
    gt_module, torch_module = modules or (None, None)
    if gt_module is not None:
        gt_module.to(dtype)
        torch_module.to(torch.float64 if dtype == np.float64 else torch.float32)
        copy_weights(gt_module, torch_module)

    gt_out, torch_out = _as_tuple(gt_fn(*gt_in)), _as_tuple(torch_fn(*torch_in))
    assert len(gt_out) == len(torch_out)
    rng = np.random.default_rng(seed)
    gt_loss, torch_loss = 0.0, 0.0
    for i, (a, b) in enumerate(zip(gt_out, torch_out)):
        if b is None:
            assert a is None, f"output {i}: torch gives None"
            continue
        assert_close(a, b, dtype, f"output {i}")
        if a.requires_grad:
            upstream = rng.standard_normal(a.shape).astype(dtype)
            gt_loss = gt_loss + (a * minigt.tensor(upstream)).sum()
            torch_loss = torch_loss + (b * torch.from_numpy(upstream)).sum()
    gt_loss.backward()
    torch_loss.backward()

    for i, (a, b) in enumerate(zip(gt_in, torch_in)):
        if isinstance(a, minigt.Tensor) and a.requires_grad:
            assert_close(a.grad, b.grad, dtype, f"grad of input {i}")
    if gt_module is not None:
        torch_params = dict(torch_module.named_parameters())
        for name, param in gt_module.named_parameters():
            assert param.grad is not None, f"{name} got no gradient"
            assert_close(param.grad, torch_params[name].grad, dtype, f"grad of {name}")
    return gt_out


def _as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)
