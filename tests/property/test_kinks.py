"""Subgradients where the derivative does not exist, pinned to PyTorch's choices."""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

import minigt

from .gradcheck import as_tuple, to_tensor

UPSTREAM = 2.0  # not 1, so a backward that ignores its incoming gradient shows


def gradients(f: Callable, *values, device: str) -> list[np.ndarray]:
    """The gradient of every input of f(*inputs), each output weighted by UPSTREAM."""
    leaves = [to_tensor(np.array(v, dtype=np.float64), device, requires_grad=True) for v in values]
    out = as_tuple(f(*leaves))[0]
    out.backward(to_tensor(np.full(out.shape, UPSTREAM), device))
    return [leaf.grad.numpy() / UPSTREAM for leaf in leaves]


def test_relu_at_zero_is_zero(device: str) -> None:
    [grad] = gradients(minigt.relu, [-1.0, 0.0, 2.0], device=device)
    np.testing.assert_array_equal(grad, [0.0, 0.0, 1.0])


def test_abs_at_zero_is_zero(device: str) -> None:
    [grad] = gradients(minigt.abs, [-1.0, 0.0, 2.0], device=device)
    np.testing.assert_array_equal(grad, [-1.0, 0.0, 1.0])


def test_clamp_passes_the_gradient_at_its_bounds(device: str) -> None:
    """The bounds belong to the inside: min ≤ x ≤ max passes the gradient."""
    x = [-1.0, 0.0, 0.5, 1.0, 2.0]
    [both] = gradients(lambda t: minigt.clamp(t, 0.0, 1.0), x, device=device)
    [low] = gradients(lambda t: minigt.clamp(t, min=0.0), x, device=device)
    [high] = gradients(lambda t: minigt.clamp(t, max=1.0), x, device=device)
    np.testing.assert_array_equal(both, [0, 1, 1, 1, 0])
    np.testing.assert_array_equal(low, [0, 1, 1, 1, 1])
    np.testing.assert_array_equal(high, [1, 1, 1, 1, 0])


def test_maximum_and_minimum_split_ties_in_half(device: str) -> None:
    a, b = [1.0, 2.0, 3.0], [1.0, 0.0, 3.0]
    np.testing.assert_array_equal(
        gradients(minigt.maximum, a, b, device=device), [[0.5, 1, 0.5], [0.5, 0, 0.5]]
    )
    np.testing.assert_array_equal(
        gradients(minigt.minimum, a, b, device=device), [[0.5, 0, 0.5], [0.5, 1, 0.5]]
    )


def test_amax_amin_and_max_without_dim_share_ties_equally(device: str) -> None:
    x = [[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]]
    third, half = 1 / 3, 1 / 2
    np.testing.assert_allclose(
        gradients(lambda t: minigt.amax(t, 1), x, device=device)[0],
        [[0, half, half], [third, third, third]],
    )
    np.testing.assert_allclose(
        gradients(lambda t: minigt.amin(t, 1, keepdim=True), x, device=device)[0],
        [[1, 0, 0], [third, third, third]],
    )
    np.testing.assert_allclose(
        gradients(minigt.max, x, device=device)[0], [[0, half, half], [0, 0, 0]]
    )
    np.testing.assert_allclose(gradients(minigt.min, x, device=device)[0], [[1, 0, 0], [0, 0, 0]])


def test_max_and_min_along_a_dim_send_ties_to_the_returned_index(device: str) -> None:
    x = np.array([[1.0, 3.0, 3.0], [2.0, 2.0, 2.0]])
    for op in (minigt.max, minigt.min):
        values, indices = op(to_tensor(x, device), 1)
        [grad] = gradients(lambda t: op(t, 1).values, x, device=device)
        expected = np.zeros_like(x)
        expected[np.arange(2), indices.numpy()] = 1.0
        np.testing.assert_array_equal(grad, expected)
        np.testing.assert_array_equal(values.numpy(), x[np.arange(2), indices.numpy()])
