"""The autograd engine: accumulation, graph lifetime, no_grad, retain_grad, grad_fn, deep graphs,
and the version check on in-place changes."""
import gc
import re
import sys

import numpy as np
import pytest

import minigt as gt
from minigt import autograd


def square_sum(x):
    return (x * x).sum()


# ---- gradients land in leaves' .grad -------------------------------------------------------------

def test_backward_fills_grad_of_leaves_only():
    x = gt.tensor([1.0, 2.0, 3.0], requires_grad=True)
    y = x * 2
    (y * y).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), 8 * np.array([1.0, 2.0, 3.0]))
    assert y.grad is None  # intermediates keep no gradient unless retain_grad() is called
    assert isinstance(x.grad, gt.Tensor) and not x.grad.requires_grad
    assert x.grad.shape == x.shape and x.grad.dtype == x.dtype


def test_gradients_accumulate_across_backward_calls():
    x = gt.tensor([1.0, 2.0], requires_grad=True)
    square_sum(x).backward()
    first = x.grad
    square_sum(x).backward()
    assert x.grad.tolist() == [4.0, 8.0]
    assert x.grad is first  # accumulated into the same .grad tensor, as in PyTorch


def test_zeroing_grad_restarts_accumulation():
    x = gt.tensor([1.0, 2.0], requires_grad=True)
    square_sum(x).backward()
    x.grad.zero_()
    square_sum(x).backward()
    assert x.grad.tolist() == [2.0, 4.0]
    x.grad = None
    square_sum(x).backward()
    assert x.grad.tolist() == [2.0, 4.0]


def test_grad_is_a_copy_not_the_incoming_array():
    x = gt.tensor([1.0, 2.0], requires_grad=True)
    g = gt.tensor([1.0, 1.0])
    (x * 1.0).backward(gradient=g)
    g.data[0] = 100.0
    assert x.grad.tolist() == [1.0, 1.0]


class Double(autograd.Function):
    """2x;  dx = 2g, a new array each time (the last one kept in `made`)"""

    def forward(self, x):
        return 2 * x

    def backward(self, g):
        Double.made = 2 * g
        return Double.made


def test_a_fresh_gradient_becomes_grad_without_a_copy():
    # Exp's gradient for Double is freed just before Double makes its own, so CPython often
    # gives the new array the freed one's id(): the engine must not take it for that one.
    for _ in range(20):
        x = gt.tensor([0.1, 0.2, 0.3], requires_grad=True)
        Double.apply(x).exp().exp().sum().backward()
        assert x.grad.data is Double.made


@pytest.mark.parametrize("upstream", ["made by an op", "given to backward"])
@pytest.mark.parametrize("expression", ["a + b", "a.clone() + b", "b + a.clone()", "(a + b) * 1"])
def test_one_gradient_array_never_becomes_the_grad_of_two_leaves(expression, upstream):
    # Add hands the same array to both inputs, Clone passes its gradient on as it is
    a, b = gt.ones(3, requires_grad=True), gt.ones(3, requires_grad=True)
    y = eval(expression)
    g = gt.tensor([1.0, 2.0, 3.0])
    if upstream == "made by an op":
        (y * g).sum().backward()
    else:
        y.backward(gradient=g)
    a.grad.data += 10.0
    assert b.grad.tolist() == [1.0, 2.0, 3.0] and g.tolist() == [1.0, 2.0, 3.0]
    assert a.grad.tolist() == [11.0, 12.0, 13.0]


def test_a_tensor_used_twice_gets_both_contributions():
    x = gt.tensor([3.0], requires_grad=True)
    y = x * 2
    (y + y * x).sum().backward()  # d/dx (2x + 2x²) = 2 + 4x
    assert x.grad.tolist() == [14.0]


def test_broadcast_input_gradient_is_summed_to_its_shape():
    bias = gt.zeros(3, requires_grad=True)
    (gt.ones(4, 3) + bias).sum().backward()
    assert bias.grad.shape == (3,) and bias.grad.tolist() == [4.0, 4.0, 4.0]


def test_inputs_without_requires_grad_get_no_grad():
    x = gt.tensor([1.0, 2.0], requires_grad=True)
    c = gt.tensor([5.0, 6.0])
    (x * c).sum().backward()
    assert c.grad is None and x.grad.tolist() == [5.0, 6.0]


def test_backward_with_an_explicit_gradient():
    x = gt.tensor([1.0, 2.0], requires_grad=True)
    (x * x).backward(gradient=gt.tensor([1.0, 10.0]))
    assert x.grad.tolist() == [2.0, 40.0]


def test_backward_on_a_leaf():
    x = gt.tensor(2.0, requires_grad=True)
    x.backward()
    assert x.grad.item() == 1.0


def test_detach_blocks_the_gradient():
    x = gt.tensor([2.0], requires_grad=True)
    (x * x.detach()).sum().backward()
    assert x.grad.tolist() == [2.0]  # not 4: the detached factor is a constant


def test_branch_that_does_not_reach_the_loss_gets_no_gradient():
    x = gt.tensor([1.0], requires_grad=True)
    w = gt.tensor([1.0], requires_grad=True)
    w * 3  # a branch of the graph that the loss never uses
    (x * 2).sum().backward()
    assert w.grad is None and x.grad.tolist() == [2.0]


# ---- graph lifetime ------------------------------------------------------------------------------

def test_graph_is_freed_after_backward():
    x = gt.tensor([1.0, 2.0], requires_grad=True)
    y = x * x
    loss = y.sum()
    loss.backward()
    assert y.grad_fn.inputs is None and loss.grad_fn.inputs is None  # saved tensors released


def test_retain_graph_allows_a_second_backward_that_doubles_the_grad():
    x = gt.tensor([1.0, 2.0], requires_grad=True)
    loss = square_sum(x)
    loss.backward(retain_graph=True)
    assert x.grad.tolist() == [2.0, 4.0]
    loss.backward()
    assert x.grad.tolist() == [4.0, 8.0]


def test_new_forward_after_backward_builds_a_new_graph():
    x = gt.tensor([1.0], requires_grad=True)
    for _ in range(3):
        square_sum(x).backward()
    assert x.grad.tolist() == [6.0]


# ---- grad_fn and requires_grad propagation -------------------------------------------------------

def test_grad_fn_is_none_for_leaves_and_set_for_results():
    x = gt.tensor([1.0], requires_grad=True)
    y = x + 1
    assert x.grad_fn is None and x.is_leaf
    assert y.grad_fn is not None and not y.is_leaf and y.requires_grad
    assert y.grad_fn.name == "Add"


def test_results_of_tensors_without_grad_are_plain():
    y = gt.tensor([1.0]) * gt.tensor([2.0])
    assert y.grad_fn is None and not y.requires_grad


def test_requires_grad_propagates_if_any_input_requires_it():
    a, b = gt.tensor([1.0]), gt.tensor([2.0], requires_grad=True)
    assert (a * b).requires_grad and (b * a).requires_grad


# ---- no_grad / enable_grad / set_grad_enabled ---------------------------------------------------

def test_no_grad_as_a_context_manager():
    x = gt.tensor([1.0], requires_grad=True)
    with gt.no_grad():
        assert not gt.is_grad_enabled()
        y = x * 2
    assert gt.is_grad_enabled()
    assert not y.requires_grad and y.grad_fn is None


def test_no_grad_as_a_decorator():
    x = gt.tensor([1.0], requires_grad=True)

    @gt.no_grad()
    def double(t):
        assert not gt.is_grad_enabled()
        return t * 2

    y = double(x)
    assert not y.requires_grad and y.grad_fn is None
    assert gt.is_grad_enabled()
    assert double.__name__ == "double"
    assert double(x).tolist() == [2.0]  # reusable


def test_no_grad_restores_state_after_an_exception():
    with pytest.raises(KeyError):
        with gt.no_grad():
            raise KeyError("boom")
    assert gt.is_grad_enabled()


def test_nested_no_grad_and_enable_grad():
    x = gt.tensor([1.0], requires_grad=True)
    with gt.no_grad():
        with gt.enable_grad():
            y = x * 2
        with gt.no_grad():
            pass
        assert not gt.is_grad_enabled()  # the inner block restored the outer state
    assert y.requires_grad


@pytest.mark.parametrize("mode", [True, False])
def test_set_grad_enabled_in_a_with_block(mode):
    x = gt.tensor([1.0], requires_grad=True)
    with gt.set_grad_enabled(mode):
        y = x * 2
    assert y.requires_grad is mode and gt.is_grad_enabled()


# ---- retain_grad ----------------------------------------------------------------------------------

def test_retain_grad_keeps_an_intermediate_gradient():
    x = gt.tensor([1.0, 2.0], requires_grad=True)
    h = x * 3
    h.retain_grad()
    (h * h).sum().backward()
    np.testing.assert_allclose(h.grad.numpy(), 2 * 3 * np.array([1.0, 2.0]))
    np.testing.assert_allclose(x.grad.numpy(), 18 * np.array([1.0, 2.0]))


def test_retain_grad_accumulates_with_retain_graph():
    x = gt.tensor([1.0], requires_grad=True)
    h = x * 3
    h.retain_grad()
    loss = (h * h).sum()
    loss.backward(retain_graph=True)
    loss.backward()
    assert h.grad.tolist() == [12.0] and x.grad.tolist() == [36.0]


def test_retain_grad_on_a_leaf_is_harmless():
    x = gt.tensor([1.0], requires_grad=True)
    x.retain_grad()
    square_sum(x).backward()
    assert x.grad.tolist() == [2.0]


# ---- deep graphs -----------------------------------------------------------------------------------

def test_deep_chain_backpropagates_without_recursion_error():
    depth = 50_000  # the example depth
    assert depth > 10 * sys.getrecursionlimit()  # a recursive walk would overflow
    gc.disable()  # not under test: the cyclic GC rescanning a 50k-node graph triples the runtime
    try:
        x = gt.tensor(1.0, requires_grad=True)
        y = x
        for _ in range(depth):
            y = -y
        y.backward()
    finally:
        gc.enable()
    assert x.grad.item() == 1.0  # (-1) ** 50000


def test_deep_chain_is_freed_without_recursion_error():
    x = gt.tensor(1.0, requires_grad=True)
    y = x
    for _ in range(10_000):
        y = -y
    del y  # deallocating a long unreleased chain must not crash either


# ---- version check --------------------------------------------------------------------------------

def test_in_place_change_after_backward_is_fine():
    x = gt.tensor([1.0, 2.0], requires_grad=True)
    square_sum(x).backward()
    with gt.no_grad():
        x -= 0.1 * x.grad
    square_sum(x).backward()  # a new graph sees the new version
    np.testing.assert_allclose(x.grad.numpy(), [2.0 + 1.6, 4.0 + 3.2], rtol=1e-6)


def test_in_place_change_of_an_unused_tensor_does_not_trip_the_check():
    x = gt.tensor([1.0], requires_grad=True)
    other = gt.tensor([5.0])
    y = x * 2
    other += 1
    y.sum().backward()
    assert x.grad.tolist() == [2.0]


@pytest.mark.parametrize("modify", ["iadd", "setitem", "no_grad-leaf"])
def test_in_place_change_of_a_saved_input_is_detected(modify):
    x = gt.tensor([1.0, 2.0], requires_grad=True)
    c = gt.tensor([3.0, 4.0])
    loss = (x * c).sum()
    if modify == "iadd":
        c += 1
    elif modify == "setitem":
        c[0] = 0.0
    else:
        with gt.no_grad():
            x += 1
    with pytest.raises(RuntimeError, match="modified in place"):
        loss.backward()


# ---- strict gradients (this suite turns them on: tests/conftest.py) ------------------------------

class Handing(autograd.Function):
    """x;  dx = hand(g): whatever gradient the test makes this op hand back"""

    def forward(self, x, hand):
        self.hand = hand
        return x.copy()

    def backward(self, g):
        return self.hand(g)


@pytest.mark.parametrize("hand, got", [
    (lambda g: g.astype(np.float64), "shape (2, 3) and dtype float64"),
    (lambda g: g.T.copy(), "shape (3, 2) and dtype float32"),
    (lambda g: g.reshape(-1), "shape (6,) and dtype float32"),
    (lambda g: g[None, :, :1], "shape (1, 2, 1) and dtype float32"),
], ids=["dtype", "transposed", "flat", "narrower"])
def test_strict_gradients_refuse_a_gradient_unlike_its_input(hand, got):
    x = gt.ones(2, 3, dtype=gt.float32, requires_grad=True)
    loss = Handing.apply(x, hand=hand).sum()
    with pytest.raises(RuntimeError, match=re.escape(
            f"backward of Handing returned for its input 0 a gradient of {got}; the input has "
            "shape (2, 3) and dtype float32")):
        loss.backward()


def test_strict_gradients_accept_a_gradient_of_a_shape_its_input_broadcasts_to():
    x = gt.ones(2, 1, dtype=gt.float32, requires_grad=True)
    Handing.apply(x, hand=lambda g: np.broadcast_to(g, (4, 2, 3))).sum().backward()
    assert x.grad.dtype == gt.float32 and x.grad.tolist() == [[12.0], [12.0]]


@pytest.mark.parametrize("root", ["op", "leaf"])
def test_strict_gradients_refuse_a_gradient_of_another_dtype_given_to_backward(root):
    x = gt.ones(2, dtype=gt.float32, requires_grad=True)
    y = x * 2 if root == "op" else x
    with pytest.raises(RuntimeError, match="gradient has dtype float64 but the output has dtype float32"):
        y.backward(gradient=gt.ones(2, dtype=gt.float64))


def test_strict_gradients_refuse_to_accumulate_another_dtype():
    # the way minigt.distributed adds all-reduced gradients into .grad
    x = gt.ones(2, dtype=gt.float32, requires_grad=True)
    with pytest.raises(RuntimeError, match=r"a float64 gradient for a float32 tensor of shape \(2,\)"):
        autograd.accumulate_into(x, np.ones(2))


def test_without_strict_gradients_a_gradient_is_cast_to_its_input_dtype(monkeypatch):
    monkeypatch.setattr(autograd, "strict_gradients", False)  # what users get
    x = gt.ones(2, 3, dtype=gt.float32, requires_grad=True)
    Handing.apply(x, hand=lambda g: g.astype(np.float64)).sum().backward()
    (x * 2).backward(gradient=gt.ones(2, 3, dtype=gt.float64))
    assert x.grad.dtype == gt.float32 and x.grad.tolist() == [[3.0] * 3] * 2
