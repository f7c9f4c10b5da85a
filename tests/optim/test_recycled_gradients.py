"""A large .grad that zero_grad drops, and that nothing else holds, is computed into again by the
next backward (no fresh mapping and page faults every step); one that anything still holds is
never written to."""
import weakref

import numpy as np
import pytest

import minigt
from minigt import autograd, nn, optim


@pytest.fixture
def small_spares(monkeypatch):
    monkeypatch.setattr(autograd, "SPARE_BYTES", 1)  # every gradient counts as large
    yield
    autograd._spares.clear()


def step(layer, x, optimizer):
    optimizer.zero_grad()
    (layer(x) ** 2).sum().backward()


def reference_grad(layer, x):
    w, b = layer.weight.numpy(), layer.bias.numpy()
    y = x.numpy() @ w.T + b
    return 2 * y.T @ x.numpy()


def test_zero_grad_then_backward_reuses_the_weight_gradient(small_spares):
    minigt.manual_seed(0)
    layer, x = nn.Linear(6, 4), minigt.randn(3, 6)
    optimizer = optim.SGD(layer.parameters(), lr=0.1)
    step(layer, x, optimizer)
    first = weakref.ref(layer.weight.grad.data)  # a strong reference would keep it from reuse
    optimizer.step()
    step(layer, x, optimizer)
    assert layer.weight.grad.data is first()  # computed into the dropped array
    np.testing.assert_allclose(layer.weight.grad.numpy(), reference_grad(layer, x), rtol=1e-5)
    assert not autograd._spares  # what backward did not take is gone


@pytest.mark.parametrize("hold", ["tensor", "array", "view"])
def test_a_gradient_someone_holds_is_left_alone(small_spares, hold):
    minigt.manual_seed(0)
    layer, x = nn.Linear(6, 4), minigt.randn(3, 6)
    optimizer = optim.SGD(layer.parameters(), lr=0.1)
    step(layer, x, optimizer)
    grad = layer.weight.grad
    kept = {"tensor": grad, "array": grad.data, "view": grad.data[1:]}[hold]
    before = np.array(kept.numpy() if hold == "tensor" else kept)
    del grad
    optimizer.step()
    step(layer, x, optimizer)
    after = kept.numpy() if hold == "tensor" else kept
    np.testing.assert_array_equal(after, before)
    assert layer.weight.grad.data is not (kept.data if hold == "tensor" else kept)


def test_small_gradients_are_not_kept():
    minigt.manual_seed(0)
    layer, x = nn.Linear(6, 4), minigt.randn(3, 6)
    optimizer = optim.SGD(layer.parameters(), lr=0.1)
    step(layer, x, optimizer)
    optimizer.zero_grad()
    assert not autograd._spares
