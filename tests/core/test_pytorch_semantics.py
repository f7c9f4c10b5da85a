"""Corner cases where NumPy's behaviour differs from PyTorch's and minigt follows PyTorch:
dtype promotion, grad-mode calls, and in-place writes that would corrupt a saved value."""
import numpy as np
import pytest

import minigt as gt


@pytest.mark.parametrize(
    "expr",
    [lambda: gt.arange(3) * 0.5, lambda: gt.tensor([1, 2]) + gt.tensor([1.0]), lambda: 0.5 + gt.arange(2)],
    ids=["int-times-float", "int-plus-float32-tensor", "float-plus-int"],
)
def test_integer_tensor_with_float_gives_float32(expr):
    assert expr().dtype == np.float32


def test_tensor_of_a_numpy_float64_scalar_is_float64():
    assert gt.tensor(np.float64(1.5)).dtype == np.float64


def test_set_grad_enabled_as_a_plain_call():
    import minigt.autograd as engine

    try:
        gt.set_grad_enabled(False)
        assert not gt.is_grad_enabled()
    finally:
        engine._grad_enabled = True  # leave the global state as we found it


def test_bare_no_grad_decorator():
    @gt.no_grad
    def double(t):
        return t * 2

    assert not double(gt.ones(1, requires_grad=True)).requires_grad


def test_setitem_with_a_value_that_requires_grad_is_not_silently_cut():
    x = gt.tensor([2.0], requires_grad=True)
    buf = gt.zeros(2)
    try:
        buf[0] = x[0] * 3
    except RuntimeError:
        return  # a clear refusal would also be acceptable
    assert buf.requires_grad


@pytest.mark.parametrize("alias", ["slice-of-base", "detach"])
def test_in_place_write_through_an_alias_is_detected(alias):
    w = gt.tensor([1.0, 1.0], requires_grad=True)
    if alias == "slice-of-base":
        base = gt.tensor([1.0, 2.0, 3.0])
        saved = base[:2]
        loss = (w * saved).sum()
        base[0] = 100.0  # also changes `saved`, which Mul kept for backward
    else:
        loss = (w * w).sum()
        detached = w.detach()  # shares w's storage
        detached[0] = 100.0
    with pytest.raises(RuntimeError, match="modified in place"):
        loss.backward()


def test_in_place_float_into_integer_tensor_is_refused():
    t = gt.tensor([1, 2])
    with pytest.raises((RuntimeError, TypeError)):
        t += 1.5


@pytest.mark.parametrize("call, shape", [
    (lambda x: x.reshape(shape=(3, 2)), (3, 2)),
    (lambda x: gt.reshape(x, shape=[6]), (6,)),
    (lambda x: x.view((3, 2)), (3, 2)),
    (lambda x: x.permute(dims=(1, 0)), (3, 2)),
    (lambda x: gt.permute(x, [1, 0]), (3, 2)),
    (lambda x: gt.broadcast_to(x[0], shape=(4, 3)), (4, 3)),
], ids=["reshape-kw", "fn-kw", "tuple", "permute-kw", "permute-list", "broadcast-kw"])
def test_sizes_spread_out_as_a_tuple_or_by_keyword(call, shape):
    assert call(gt.ones(2, 3)).shape == shape


def test_sizes_both_spread_out_and_by_keyword_are_refused():
    with pytest.raises(TypeError, match="reshape: give the sizes as arguments or as shape="):
        gt.ones(2, 3).reshape(6, shape=(6,))
