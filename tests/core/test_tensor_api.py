"""Tensor attributes, conversions, Python protocols (len, iter, bool, array) and repr."""
import numpy as np
import pytest

import minigt as gt


@pytest.fixture
def m():
    return gt.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])


# ---- attributes ------------------------------------------------------------------------------

def test_shape_ndim_dtype_device(m):
    assert m.shape == (2, 3) and isinstance(m.shape, tuple)
    assert m.ndim == 2 and m.dim() == 2
    assert m.dtype == np.float32 and m.dtype == gt.float32
    assert m.device == "cpu"
    assert m.numel() == 6 and m.size() == (2, 3) and m.size(-1) == 3


def test_fresh_tensor_has_no_grad_and_does_not_require_it(m):
    assert m.grad is None and m.requires_grad is False and m.grad_fn is None and m.is_leaf


@pytest.mark.parametrize(
    "shape, expected", [((3,), (3,)), ((2, 3), (3, 2)), ((2, 3, 4), (4, 3, 2))]
)
def test_T_reverses_dims(shape, expected):
    data = np.arange(np.prod(shape), dtype=np.float32).reshape(shape)
    t = gt.tensor(data).T
    assert t.shape == expected
    np.testing.assert_array_equal(t.numpy(), data.T)


# ---- conversions -------------------------------------------------------------------------------

def test_numpy_returns_an_ndarray_with_the_values(m):
    array = m.numpy()
    assert isinstance(array, np.ndarray) and array.dtype == np.float32
    np.testing.assert_array_equal(array, [[1, 2, 3], [4, 5, 6]])


def test_np_asarray_uses_the_array_protocol(m):
    np.testing.assert_array_equal(np.asarray(m), m.numpy())
    assert np.asarray(m, dtype=np.float64).dtype == np.float64


@pytest.mark.parametrize(
    "data, expected, kind",
    [(2.5, 2.5, float), ([[7]], 7, int), ([True], True, bool)],
    ids=["0-d float", "1x1 int", "bool"],
)
def test_item_gives_a_python_number(data, expected, kind):
    value = gt.tensor(data).item()
    assert value == expected and type(value) is kind


def test_float_and_int_builtins_on_one_element():
    assert float(gt.tensor([2.5])) == 2.5
    assert int(gt.tensor(3)) == 3


def test_tolist(m):
    assert m.tolist() == [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]
    assert gt.tensor(4).tolist() == 4


def test_detach_shares_data_but_leaves_the_graph():
    x = gt.tensor([1.0, 2.0], requires_grad=True)
    y = (x * 3).detach()
    assert not y.requires_grad and y.grad_fn is None
    np.testing.assert_array_equal(y.numpy(), [3.0, 6.0])
    d = x.detach()
    d.data[0] = 10.0  # same storage, as PyTorch's detach
    assert x.numpy()[0] == 10.0


def test_requires_grad_underscore_sets_the_flag_and_returns_self():
    t = gt.ones(2)
    assert t.requires_grad_() is t and t.requires_grad
    assert t.requires_grad_(False) is t and not t.requires_grad


def test_requires_grad_refused_for_integer_tensors():
    with pytest.raises(TypeError, match="requires_grad_.*int64"):
        gt.tensor([1, 2]).requires_grad_()


def test_requires_grad_false_refused_on_a_non_leaf():
    y = gt.ones(2, requires_grad=True) * 2
    with pytest.raises(RuntimeError, match="non-leaf.*detach"):
        y.requires_grad_(False)


@pytest.mark.parametrize(
    "convert, dtype",
    [
        (lambda t: t.float(), np.float32),
        (lambda t: t.double(), np.float64),
        (lambda t: t.long(), np.int64),
        (lambda t: t.int(), np.int32),
        (lambda t: t.bool(), np.bool_),
        (lambda t: t.to(gt.float64), np.float64),
        (lambda t: t.to("cpu", gt.float64), np.float64),
        (lambda t: t.to(dtype=gt.float16), np.float16),
    ],
    ids=["float", "double", "long", "int", "bool", "to(dtype)", "to(device,dtype)", "to(dtype=)"],
)
def test_dtype_conversions(convert, dtype):
    t = convert(gt.tensor([0.0, 1.0, 2.0]))
    assert t.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(t.numpy(), np.array([0, 1, 2]).astype(dtype))


def test_to_same_device_and_dtype_returns_self(m):
    assert m.to("cpu") is m and m.cpu() is m and m.float() is m and m.to(gt.float32) is m


def test_to_a_float_dtype_keeps_the_gradient_path():
    x = gt.tensor([1.0, 2.0], requires_grad=True)
    y = x.double()
    assert y.dtype == np.float64 and y.requires_grad
    (y * y).sum().backward()
    assert x.grad.dtype == np.float32  # the gradient is cast back to the leaf's dtype
    np.testing.assert_allclose(x.grad.numpy(), [2.0, 4.0])


def test_to_an_integer_dtype_drops_out_of_the_graph():
    y = gt.tensor([1.7, 2.2], requires_grad=True).long()
    assert y.dtype == np.int64 and not y.requires_grad
    assert y.tolist() == [1, 2]


def test_clone_copies_and_stays_in_the_graph():
    x = gt.tensor([1.0, 2.0], requires_grad=True)
    y = x.clone()
    assert y.grad_fn is not None and not np.shares_memory(y.data, x.data)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 1.0])


# ---- Python protocols ----------------------------------------------------------------------------

def test_len_is_the_first_dim(m):
    assert len(m) == 2 and len(gt.zeros(5)) == 5


def test_len_of_a_scalar_raises():
    with pytest.raises(TypeError, match="0-d"):
        len(gt.tensor(1.0))


def test_iteration_yields_rows(m):
    rows = list(m)
    assert len(rows) == 2 and all(isinstance(r, gt.Tensor) for r in rows)
    assert [r.tolist() for r in rows] == m.tolist()


def test_iteration_stays_differentiable():
    x = gt.tensor([1.0, 2.0, 3.0], requires_grad=True)
    total = None
    for i, element in enumerate(x):
        term = element * (i + 1)
        total = term if total is None else total + term
    total.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [1.0, 2.0, 3.0])


def test_bool_of_one_element():
    assert bool(gt.tensor([1.0])) is True and bool(gt.tensor(0.0)) is False


def test_bool_of_many_elements_is_ambiguous():
    with pytest.raises(RuntimeError, match="ambiguous"):
        bool(gt.tensor([1.0, 2.0]))


def test_integer_scalar_tensor_works_as_a_python_index():
    assert [10, 20, 30][gt.tensor(2)] == 30
    with pytest.raises(TypeError, match="integer"):
        [10, 20][gt.tensor(1.0)]


def test_tensors_hash_by_identity():
    a, b = gt.tensor([1.0]), gt.tensor([1.0])
    assert len({a, b}) == 2 and {a: 1}[a] == 1


# ---- repr ----------------------------------------------------------------------------------------

def test_repr_shows_values_dtype_and_device():
    text = repr(gt.tensor([1.5, -2.0]))
    assert text.startswith("tensor(") and "1.5" in text and "-2." in text
    assert "float32" in text and "device='cpu'" in text
    assert "grad_fn" not in text and "requires_grad" not in text


def test_repr_of_a_leaf_parameter_says_requires_grad():
    assert "requires_grad=True" in repr(gt.tensor([1.0], requires_grad=True))


def test_repr_names_the_grad_fn():
    x = gt.tensor([1.0, 2.0], requires_grad=True)
    assert "grad_fn=<Mul>" in repr(x * 2)
    assert "grad_fn=<Sum>" in repr((x * 2).sum())


def test_repr_of_integer_and_bool_tensors():
    assert "int64" in repr(gt.tensor([1, 2])) and "3" in repr(gt.tensor([3]))
    assert "True" in repr(gt.tensor([True, False])) and "bool" in repr(gt.tensor([True]))


def test_repr_of_a_large_tensor_is_summarised():
    text = repr(gt.zeros(10_000))
    assert "..." in text and len(text) < 1000
