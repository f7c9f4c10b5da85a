"""Op edge cases found by checking minigt against PyTorch's own op samples, each compared with
PyTorch itself (values and gradients): empty dims, 0-d tensors, tensor bounds and ties, and the
argument spellings PyTorch users write (positional unbiased, max(a, b), rounding_mode, dtype=,
alpha=, .to(copy=...), split_size=)."""
import itertools

import numpy as np
import pytest

import minigt as gt
import minigt.nn.functional as F
from nn.reference import compare, torch  # tests/ is on the path: tests/nn is a package there

pytestmark = pytest.mark.torch


# ---- empty dims ------------------------------------------------------------------------------

@pytest.mark.parametrize("shape", [(2, 0), (0, 3)], ids=["empty-dim-1", "empty-dim-0"])
@pytest.mark.parametrize("call", [
    lambda m, x: m.softmax(x, 1), lambda m, x: m.softmax(x, 0),
    lambda m, x: m.log_softmax(x, 1), lambda m, x: m.log_softmax(x, -2),
    lambda m, x: m.logsumexp(x, 1), lambda m, x: m.logsumexp(x, 0),
    lambda m, x: m.logsumexp(x, (0, 1)),
], ids=["softmax1", "softmax0", "log_softmax1", "log_softmax-2", "logsumexp1", "logsumexp0",
        "logsumexp-all"])
def test_softmax_and_logsumexp_of_empty_tensors(call, shape):
    """Empty results, and -inf for a logsumexp over an empty dim (the log of an empty sum)."""
    compare(lambda x: call(gt, x), lambda x: call(torch, x), [np.zeros(shape)], np.float64)


@pytest.mark.parametrize("call", [
    lambda m, x: m.amax(x, 1), lambda m, x: m.amin(x, -1), lambda m, x: m.max(x, 1),
    lambda m, x: m.min(x, 1, keepdim=True), lambda m, x: m.var(x, 1), lambda m, x: m.std(x, 1),
    lambda m, x: m.mean(x, 1), lambda m, x: m.sum(x, 0),
], ids=["amax", "amin", "max", "min-keepdim", "var", "std", "mean", "sum0"])
def test_reductions_over_non_empty_dims_of_an_empty_tensor(call):
    """(0, 3) reduced over dim 1 (of length 3) is simply empty, as in PyTorch."""
    compare(lambda x: call(gt, x), lambda x: call(torch, x), [np.zeros((0, 3))], np.float64)


@pytest.mark.parametrize("op", ["argmax", "argmin"])
@pytest.mark.parametrize("keepdim", [False, True])
def test_arg_extremes_over_non_empty_dims_of_an_empty_tensor(op, keepdim):
    out = getattr(gt, op)(gt.zeros(0, 3), 1, keepdim=keepdim)
    expected = getattr(torch, op)(torch.zeros(0, 3), 1, keepdim=keepdim)
    assert (out.shape, out.dtype) == (tuple(expected.shape), np.int64)


@pytest.mark.parametrize("op", ["amax", "amin", "max", "min", "argmax", "argmin"])
def test_an_extreme_over_an_empty_dim_is_refused_as_in_pytorch(op):
    with pytest.raises((IndexError, RuntimeError)):
        getattr(torch, op)(torch.zeros(0, 3), 0)
    message = rf"{op}: the tensor of shape \(0, 3\) is empty along dim 0"
    with pytest.raises(ValueError, match=message):
        getattr(gt, op)(gt.zeros(0, 3), 0)


# ---- 0-d tensors -----------------------------------------------------------------------------

@pytest.mark.parametrize("dim", [0, -1, (0,), (-1,)])
def test_squeeze_of_a_0d_tensor_by_dim(dim):
    """Dims 0 and -1 name a 0-d tensor itself: squeezing it changes nothing."""
    compare(lambda x: x.squeeze(dim), lambda x: x.squeeze(dim), [np.array(1.5)], np.float64)


def test_squeeze_of_a_0d_tensor_past_its_dims():
    with pytest.raises(IndexError, match="squeeze: dim 1 is out of range"):
        gt.tensor(1.0).squeeze(1)


def test_dropout_of_a_0d_tensor_in_training():
    gt.manual_seed(0)
    x = gt.tensor(2.0, requires_grad=True)
    outs = {float(F.dropout(x, 0.5, training=True).item()) for _ in range(40)}
    assert outs == {0.0, 4.0}  # dropped, or kept and scaled by 1 / (1 - p)
    y = F.dropout(x, 0.5, training=True)
    y.backward()
    assert x.grad.shape == () and float(x.grad.item()) == float(y.item()) / 2


@pytest.mark.parametrize("shape", [(), (3,), (0,)], ids=["0d", "vector", "empty"])
def test_dropout_with_p_one_as_pytorch(shape):
    """p = 1 is x * 0: zeros, NaN and inf become NaN; the gradient is 0."""
    values = np.resize(np.array([1.0, np.nan, np.inf]), shape)
    compare(lambda x: F.dropout(x, 1.0, True), lambda x: torch.nn.functional.dropout(x, 1.0, True),
            [values], np.float64)


def test_dropout_with_p_zero_is_the_input_itself():
    t = torch.ones(3, requires_grad=True)
    assert torch.nn.functional.dropout(t, 0.0, True) is t
    x = gt.ones(3, requires_grad=True)
    assert F.dropout(x, 0.0, training=True) is x


# ---- clamp with tensor bounds ----------------------------------------------------------------

GRID = np.array([-1.0, 0.0, 1.0])
TIES = np.array(list(itertools.product(GRID, GRID, GRID))).T  # every order of x, min, max


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_clamp_tensor_bounds_get_gradients_with_pytorchs_tie_rules(dtype):
    """All 27 orders of x, min and max on {-1, 0, 1}: ties x == bound, min == max, min > max."""
    x, low, high = TIES
    compare(gt.clamp, torch.clamp, [x, low, high], dtype)


@pytest.mark.parametrize("side", ["min", "max"])
def test_clamp_with_one_tensor_bound(side):
    x, bound = np.repeat(GRID, 3), np.tile(GRID, 3)
    compare(lambda x, b: gt.clamp(x, **{side: b}), lambda x, b: torch.clamp(x, **{side: b}),
            [x, bound], np.float64)


@pytest.mark.parametrize("x, low, high", [
    ([[0.5, np.nan, 3.0], [1.0, 2.0, -1.0]], [[0.0], [1.0]], [2.0, np.nan, 2.5]),
    ([0.5, np.nan, 3.0], [[0.0, 0.0, np.nan], [1.0, 1.0, 1.0]], [[2.0, 2.0, 2.5], [0.5, 3.0, 4.0]]),
], ids=["bounds-smaller", "x-smaller"])  # (torch's backward fails when x and a bound both are)
def test_clamp_bounds_broadcast_and_nan_propagates(x, low, high):
    compare(gt.clamp, torch.clamp, [np.array(x), np.array(low), np.array(high)], np.float64)


def test_clamp_of_integers_by_a_float_gives_float32_as_pytorch():
    out = gt.clamp(gt.tensor([1, 5]), min=2.5)
    assert out.dtype == np.float32 and out.tolist() == [2.5, 5.0]
    assert gt.clamp(gt.tensor([1, 5]), 0, 3).dtype == np.int64


def test_clamp_bounds_that_do_not_broadcast():
    with pytest.raises(ValueError, match=r"clamp: shapes \(3,\) and \(2,\) are not broadcastable"):
        gt.clamp(gt.ones(3), gt.zeros(2))


# ---- argument spellings ----------------------------------------------------------------------

X = np.arange(6.0).reshape(2, 3) ** 1.5


@pytest.mark.parametrize("call", [
    lambda x: x.var(True), lambda x: x.var(False), lambda x: x.std(False), lambda x: x.std(True),
    lambda x: x.var(1, False, True), lambda x: x.std(0, True), lambda x: x.var(None, False),
], ids=["var(True)", "var(False)", "std(False)", "std(True)", "var(1,False,True)", "std(0,True)",
        "var(None,False)"])
def test_var_and_std_read_a_positional_bool_as_unbiased(call):
    compare(call, call, [X], np.float64)


def test_var_with_a_bool_and_more_arguments_is_refused_as_in_pytorch():
    with pytest.raises(TypeError):
        torch.ones(3).var(True, True)
    with pytest.raises(TypeError, match="var: a bool first argument is `unbiased`"):
        gt.ones(3).var(True, True)


@pytest.mark.parametrize("call", [
    lambda m, a, b: m.max(a, b), lambda m, a, b: a.max(b),
    lambda m, a, b: m.min(a, b), lambda m, a, b: a.min(b),
], ids=["max(a, b)", "a.max(b)", "min(a, b)", "a.min(b)"])
def test_max_and_min_of_two_tensors_are_elementwise(call):
    """Ties (0 == 0, 2 == 2) split the gradient half and half, as PyTorch."""
    a, b = np.array([[0.0, 1.0, 2.0]]), np.array([[0.0, 3.0, 2.0], [-1.0, 0.5, 2.0]])
    compare(lambda a, b: call(gt, a, b), lambda a, b: call(torch, a, b), [a, b], np.float64)


def test_max_of_two_tensors_takes_no_keepdim():
    with pytest.raises(TypeError, match="max: with a tensor as second argument"):
        gt.max(gt.ones(2), gt.ones(2), keepdim=True)


SPECIAL = [0.0, -0.0, 1.0, -1.0, 2.5, -2.5, 7.0, -7.0, 0.1, 1e300, np.inf, -np.inf, np.nan, 3.0]
DIVIDEND, DIVISOR = (np.array(v) for v in zip(*itertools.product(SPECIAL, SPECIAL)))


@pytest.mark.parametrize("mode", ["trunc", "floor", None])
def test_div_rounding_modes_on_special_values(mode):
    """Signed zeros, infinities, NaN and division by zero as PyTorch; rounded modes have a zero
    gradient for both operands."""
    with np.errstate(all="ignore"):
        outs = compare(lambda a, b: gt.div(a, b, rounding_mode=mode),
                       lambda a, b: torch.div(a, b, rounding_mode=mode), [DIVIDEND, DIVISOR],
                       np.float64)
    torch_out = torch.div(torch.tensor(DIVIDEND), torch.tensor(DIVISOR), rounding_mode=mode).numpy()
    signed = ~np.isnan(torch_out)  # the sign of a NaN means nothing
    np.testing.assert_array_equal(np.signbit(outs[0].numpy()[signed]),
                                  np.signbit(torch_out[signed]))


@pytest.mark.parametrize("mode", ["trunc", "floor"])
def test_div_rounding_of_integers_stays_integer(mode):
    a, b = np.array([7, -7, 7, -7, 0, 2**62 + 1]), np.array([2, 2, -2, -2, 3, 3])
    expected = torch.div(torch.tensor(a), torch.tensor(b), rounding_mode=mode).numpy()
    out = gt.tensor(a).div(gt.tensor(b), rounding_mode=mode)
    assert out.dtype == np.int64
    np.testing.assert_array_equal(out.numpy(), expected)
    assert gt.div(gt.tensor([1, 2]), 2.5, rounding_mode=mode).dtype == np.float32


def test_div_rounding_errors():
    with pytest.raises(ZeroDivisionError, match="div: integer division by zero"):
        gt.div(gt.tensor([1]), gt.tensor([0]), rounding_mode="floor")
    with pytest.raises(ValueError, match="div: rounding_mode must be None, 'trunc' or 'floor'"):
        gt.div(gt.ones(1), 2.0, rounding_mode="round")


@pytest.mark.parametrize("source, target", [(np.float32, np.float64), (np.float64, np.float32)])
@pytest.mark.parametrize("call", [
    lambda m, x, d: m.softmax(x, 1, dtype=d), lambda m, x, d: m.log_softmax(x, 0, dtype=d),
    lambda m, x, d: m.nn.functional.softmax(x, dim=-1, dtype=d),
    lambda m, x, d: x.softmax(1, dtype=d), lambda m, x, d: x.log_softmax(dim=1, dtype=d),
], ids=["softmax", "log_softmax", "F.softmax", "Tensor.softmax", "Tensor.log_softmax"])
def test_softmax_with_dtype_casts_first(call, source, target):
    """The result has `dtype`; the gradient comes back in the input's dtype."""
    torch_dtype = {np.float32: torch.float32, np.float64: torch.float64}[target]
    x = gt.tensor(X.astype(source), requires_grad=True)
    t = torch.tensor(X.astype(source), requires_grad=True)
    out, expected = call(gt, x, np.dtype(target)), call(torch, t, torch_dtype)
    assert out.dtype == target
    up = np.linspace(-1, 1, out.numel()).reshape(out.shape).astype(target)
    (out * gt.tensor(up)).sum().backward()
    (expected * torch.tensor(up)).sum().backward()
    assert x.grad.dtype == source
    np.testing.assert_allclose(out.numpy(), expected.detach().numpy(), rtol=1e-6)
    np.testing.assert_allclose(x.grad.numpy(), t.grad.numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("call", [
    lambda m, a, b: m.add(a, b, alpha=2.5), lambda m, a, b: m.sub(a, b, alpha=-3),
    lambda m, a, b: a.add(b, alpha=0.5), lambda m, a, b: a.sub(b, alpha=2),
    lambda m, a, b: m.add(a, 2.0, alpha=3) * b,
], ids=["add", "sub", "Tensor.add", "Tensor.sub", "add-number"])
def test_add_and_sub_with_alpha(call):
    a, b = np.array([[1.0, -2.0, 3.0]]), np.array([[0.5], [4.0]])
    compare(lambda a, b: call(gt, a, b), lambda a, b: call(torch, a, b), [a, b], np.float64)


def test_in_place_add_with_alpha():
    x = gt.ones(2)
    x.add_(gt.tensor([1.0, 2.0]), alpha=3)
    x.sub_(gt.tensor([1.0, 1.0]), alpha=0.5)
    assert x.tolist() == [3.5, 6.5]


def test_a_float_alpha_for_integers_is_refused_as_in_pytorch():
    with pytest.raises(RuntimeError):
        torch.add(torch.tensor([1]), torch.tensor([2]), alpha=0.5)
    with pytest.raises(TypeError, match="add: alpha=0.5 is a float but the operands are integers"):
        gt.add(gt.tensor([1]), gt.tensor([2]), alpha=0.5)
    assert gt.add(gt.tensor([1]), gt.tensor([2]), alpha=3).tolist() == [7]


def test_to_with_copy_returns_a_differentiable_copy():
    x = gt.tensor([1.0, 2.0], requires_grad=True)
    y = x.to(copy=True)
    assert y is not x and y.tolist() == x.tolist()
    (y * 3).sum().backward()
    assert x.grad.tolist() == [3.0, 3.0]
    assert x.to("cpu", x.dtype, False, True) is not x  # copy given positionally, as PyTorch


@pytest.mark.parametrize("kwargs", [
    {"non_blocking": True}, {"copy": False}, {"memory_format": "preserve_format"},
    {"memory_format": "contiguous_format"}, {"memory_format": torch.preserve_format},
    {"device": "cpu", "non_blocking": True},
], ids=["non_blocking", "copy-false", "preserve", "contiguous", "torch-preserve", "device-kw"])
def test_to_accepts_pytorchs_keywords(kwargs):
    x = gt.ones(2, 3)
    assert x.to(**kwargs) is x


def test_to_another_tensors_device_and_dtype():
    assert gt.ones(2).to(gt.zeros(1, dtype=gt.float64)).dtype == np.float64


@pytest.mark.parametrize("memory_format, message", [
    ("banana", "to: unknown memory_format 'banana'"),
    ("channels_last", r"to: memory_format channels_last needs a tensor with 4 dims"),
])
def test_to_refuses_an_unknown_or_unfit_memory_format(memory_format, message):
    with pytest.raises(ValueError, match=message):
        gt.ones(2, 3).to(memory_format=memory_format)


def test_to_with_a_device_twice_is_refused():
    with pytest.raises(TypeError, match="to: device given twice"):
        gt.ones(2).to("cpu", device="cpu")


@pytest.mark.parametrize("call", [
    lambda m, x: x.split(split_size=2), lambda m, x: m.split(x, split_size_or_sections=2),
    lambda m, x: m.split(x, split_size_or_sections=[1, 4]), lambda m, x: x.split(2, dim=0),
], ids=["Tensor.split(split_size=)", "split(split_size_or_sections=)", "sections", "positional"])
def test_split_sizes_by_pytorchs_keywords(call):
    compare(lambda x: call(gt, x), lambda x: call(torch, x), [np.arange(5.0)], np.float64)


def test_split_sizes_given_twice_are_refused():
    with pytest.raises(TypeError, match="split: give the piece size"):
        gt.split(gt.ones(4), 2, split_size=2)
