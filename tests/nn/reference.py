"""One helper for every "equal to PyTorch" test: run a minigt callable and a torch callable on the
same inputs and weights, push the same upstream gradient back through both, and compare the
outputs and the gradients of every input and parameter. minigt runs on the test's `device`, torch
on `torch_device(device)`."""
from __future__ import annotations

import numpy as np
import pytest

import minigt

torch = pytest.importorskip("torch")

DTYPES = [np.float64, np.float32]
TOLERANCE = {np.float64: dict(rtol=1e-9, atol=1e-12), np.float32: dict(rtol=1e-4, atol=1e-5)}


def torch_device(device: str) -> str:
    """Torch's twin of minigt's `device`: CUDA when torch has it, else the CPU (so under the fake
    NumPy-backed CuPy, minigt takes its GPU branches against torch on the CPU)."""
    return "cuda" if device != "cpu" and torch.cuda.is_available() else "cpu"


def to_both(array, device: str, dtype=None, requires_grad: bool = False):
    """A NumPy array as (minigt tensor on `device`, torch tensor on its twin); float arrays cast to
    `dtype` when given. None gives (None, None)."""
    if array is None:
        return None, None
    array = np.asarray(array)
    if dtype is not None and array.dtype.kind == "f":
        array = array.astype(dtype)
    return (minigt.tensor(array, device=device, requires_grad=requires_grad),
            torch.tensor(array, device=torch_device(device), requires_grad=requires_grad))


def assert_close(actual, expected, dtype, what: str, device: str | None = None) -> None:
    """Compare on the host, whatever device each side is on. With `device`, the minigt tensor
    `actual` must also sit on it (a result that fell back to the CPU would pass on values)."""
    if device is not None:
        assert actual.device.partition(":")[0] == device.partition(":")[0], \
            f"{what}: on {actual.device}, not {device}"
    actual = actual.numpy() if isinstance(actual, minigt.Tensor) else np.asarray(actual)
    expected = expected.detach().cpu().numpy() if isinstance(expected, torch.Tensor) else expected
    assert actual.shape == expected.shape, f"{what}: shape {actual.shape} != torch's {expected.shape}"
    np.testing.assert_allclose(actual, expected, err_msg=what, **TOLERANCE[np.dtype(dtype).type])


def copy_weights(source: minigt.nn.Module, target) -> None:
    """Load a minigt module's weights into a torch module with the same parameter names (torch
    copies them onto its parameters' device)."""
    state = {k: torch.from_numpy(v.numpy().copy()) for k, v in source.state_dict().items()}
    target.load_state_dict(state, strict=True)


def compare(gt_fn, torch_fn, inputs, dtype, modules=None, seed=0, device="cpu"):
    """Check gt_fn(*inputs) against torch_fn(*inputs): outputs, then gradients of the float
    inputs and of every parameter (matched by name) after backward of the same random
    upstream gradient. Inputs are NumPy arrays; float ones are cast to `dtype` and get grads.
    `modules` = (minigt module, torch module): both are cast to `dtype` and the minigt weights
    copied into torch first. Returns the minigt outputs (a tuple) for further checks."""
    inputs = [np.asarray(x, dtype) if np.asarray(x).dtype.kind == "f" else x for x in inputs]
    both = [to_both(x, device, requires_grad=x.dtype.kind == "f") if isinstance(x, np.ndarray)
            else (x, x) for x in inputs]
    gt_in, torch_in = [a for a, _ in both], [b for _, b in both]
    gt_module, torch_module = modules or (None, None)
    if gt_module is not None:
        gt_module.to(dtype).to(device)
        torch_dtype = torch.float64 if dtype == np.float64 else torch.float32
        torch_module.to(torch_device(device), torch_dtype)
        copy_weights(gt_module, torch_module)

    gt_out, torch_out = _as_tuple(gt_fn(*gt_in)), _as_tuple(torch_fn(*torch_in))
    assert len(gt_out) == len(torch_out)
    rng = np.random.default_rng(seed)
    gt_loss, torch_loss = 0.0, 0.0
    for i, (a, b) in enumerate(zip(gt_out, torch_out)):
        if b is None:
            assert a is None, f"output {i}: torch gives None"
            continue
        assert_close(a, b, dtype, f"output {i}", device)
        if a.requires_grad:
            gt_up, torch_up = to_both(rng.standard_normal(a.shape).astype(dtype), device)
            gt_loss = gt_loss + (a * gt_up).sum()
            torch_loss = torch_loss + (b * torch_up).sum()
    gt_loss.backward()
    torch_loss.backward()

    for i, (a, b) in enumerate(zip(gt_in, torch_in)):
        if isinstance(a, minigt.Tensor) and a.requires_grad:
            assert_close(a.grad, b.grad, dtype, f"grad of input {i}", device)
    if gt_module is not None:
        torch_params = dict(torch_module.named_parameters())
        for name, param in gt_module.named_parameters():
            assert param.grad is not None, f"{name} got no gradient"
            assert_close(param.grad, torch_params[name].grad, dtype, f"grad of {name}", device)
    return gt_out


def _as_tuple(out):
    return tuple(out) if isinstance(out, (tuple, list)) else (out,)
