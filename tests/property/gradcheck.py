"""Gradient checking: minigt's backward against float64 central finite differences.

The checked scalar is L(x) = Σ_k Σ u_k · f(x)_k: each floating-point output k of the op gets
its own random upstream gradient u_k (not ones, so a backward that drops, transposes or
mis-broadcasts its incoming gradient is caught; for split/chunk every piece gets different
weights). minigt computes ∂L/∂x by backward(); the check computes
(L(x + εh) - L(x - εh)) / 2ε for h = each unit vector when the input is small (every element is
checked), or for one random direction h when it is larger (one number checks the whole gradient,
⟨∂L/∂x, h⟩, for two evaluations).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

import minigt

from .strategies import with_layout

FULL_CHECK_MAX_SIZE = 64  # inputs up to this many elements are checked element by element


@dataclass(frozen=True)
class Tolerance:
    """Finite-difference step and PyTorch-gradcheck-like tolerances: |a - n| ≤ atol + rtol·|n|."""

    eps: float = 1e-6
    atol: float = 1e-5
    rtol: float = 1e-3


# float32 outputs round at ~6e-8·|x|: a larger step keeps the rounding error of the difference
# quotient small (exact for the linear ops that produce them, e.g. casts).
FLOAT32 = Tolerance(eps=1e-2, atol=1e-3, rtol=1e-3)

# A spec's float32 run against its float64 run on the same values (test_op_in_float32; eps is
# unused): float32 rounds at 6e-8 relative, and sums that cancel leave absolute errors near 0.
FLOAT32_RUN = Tolerance(atol=1e-4, rtol=1e-5)
# Layer norm's groups can be nearly constant (variance near its eps): x - mean cancels, and
# float32 keeps only a few digits of it.
FLOAT32_RUN_NEAR_CONSTANT = Tolerance(atol=1e-3, rtol=1e-3)


def to_tensor(array: np.ndarray, device: str, layout: str = "contiguous",
              requires_grad: bool = False) -> minigt.Tensor:
    """A leaf tensor on `device` holding a copy of `array` in the given memory layout."""
    array = np.asarray(array)  # arithmetic on 0-d arrays gives NumPy scalars
    if device == "cpu":
        tensor = minigt.from_numpy(with_layout(array, layout))  # shares that (strided) buffer
    else:
        tensor = minigt.tensor(array, device=device)
        tensor.data = with_layout(tensor.data, layout)  # CuPy has no from_numpy: relayout in place
    return tensor.requires_grad_(requires_grad)


def as_tuple(result) -> tuple:
    """An op's result as a tuple of outputs (one tensor, or split's pieces, or max's pair)."""
    return (result,) if isinstance(result, minigt.Tensor) else tuple(result)


def check_gradients(f: Callable, arrays: Sequence[np.ndarray], leaves: Sequence[minigt.Tensor],
                    result, rng: np.random.Generator, tol: Tolerance = Tolerance()) -> None:
    """Assert that backward from `result = f(*leaves)` gives every leaf that requires grad the
    gradient that central differences of f (evaluated on `arrays`) give."""
    device = leaves[0].device
    outputs = as_tuple(result)
    weighted = [k for k, out in enumerate(outputs) if out.dtype.kind == "f"]
    assert weighted, "a differentiable op returned no floating-point output"
    upstream = {k: rng.standard_normal(outputs[k].shape).astype(outputs[k].dtype) for k in weighted}
    for k in weighted:
        assert outputs[k].requires_grad, f"output {k} is cut from the graph"
        outputs[k].backward(to_tensor(upstream[k], device), retain_graph=True)

    def loss(values: Sequence[np.ndarray]) -> float:
        with minigt.no_grad():
            outs = as_tuple(f(*(to_tensor(v, device) for v in values)))
        return sum(float(np.vdot(upstream[k].astype(np.float64), outs[k].numpy()))
                   for k in weighted)

    for i, leaf in enumerate(leaves):
        if not leaf.requires_grad:
            continue
        analytic = np.zeros_like(arrays[i]) if leaf.grad is None else leaf.grad.numpy()
        assert analytic.shape == arrays[i].shape, f"input {i}: grad shape {analytic.shape}"
        assert analytic.dtype == arrays[i].dtype, f"input {i}: grad dtype {analytic.dtype}"
        _assert_gradient(loss, list(arrays), i, analytic, rng, tol)


def _assert_gradient(loss: Callable, arrays: list[np.ndarray], i: int, analytic: np.ndarray,
                     rng: np.random.Generator, tol: Tolerance) -> None:
    """Compare the gradient of input i with central differences: all elements, or one direction."""
    x = arrays[i]

    def slope(h: np.ndarray) -> float:
        """(L(x + εh) - L(x - εh)) / 2ε: the directional derivative of L along h."""
        plus, minus = list(arrays), list(arrays)
        plus[i], minus[i] = x + tol.eps * h, x - tol.eps * h
        return (loss(plus) - loss(minus)) / (2 * tol.eps)

    if x.size <= FULL_CHECK_MAX_SIZE:
        numeric = np.array([slope(unit) for unit in np.eye(x.size).reshape((x.size,) + x.shape)])
        np.testing.assert_allclose(
            analytic, numeric.reshape(x.shape), rtol=tol.rtol, atol=tol.atol,
            err_msg=f"gradient of input {i} (every element) != central differences",
        )
    else:
        h = rng.standard_normal(x.shape)
        np.testing.assert_allclose(
            np.vdot(analytic, h), slope(h), rtol=tol.rtol, atol=tol.atol,
            err_msg=f"gradient of input {i} (along a random direction) != central differences",
        )
