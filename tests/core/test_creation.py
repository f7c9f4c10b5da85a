"""Making tensors: tensor(), the filled/range/random constructors, *_like, from_numpy, seeding."""
import numpy as np
import pytest

import minigt as gt


# ---- tensor(data, dtype=None, requires_grad=False, device=None) --------------------------------

@pytest.mark.parametrize(
    "data, expected",
    [
        (1.5, np.float32),                      # Python floats -> float32, as in PyTorch
        ([[1.0, 2.0], [3.0, 4.0]], np.float32),
        ([1, 2, 3], np.int64),                  # Python ints -> int64
        ([1, 2.5], np.float32),                 # mixed ints and floats -> float
        ([True, False], np.bool_),              # Python bools -> bool
        (np.array([1.0, 2.0]), np.float64),     # arrays keep their dtype
        (np.array([1, 2], dtype=np.int32), np.int32),
        (np.array([1.0], dtype=np.float16), np.float16),
    ],
    ids=["float", "nested-floats", "ints", "mixed", "bools", "f64-array", "i32-array", "f16-array"],
)
def test_tensor_infers_dtype_like_pytorch(data, expected):
    assert gt.tensor(data).dtype == np.dtype(expected)


def test_tensor_keeps_values_and_shape():
    t = gt.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]])
    assert t.shape == (2, 3)
    np.testing.assert_array_equal(t.numpy(), [[1, 2, 3], [4, 5, 6]])


def test_tensor_of_a_scalar_is_zero_dim():
    t = gt.tensor(3.0)
    assert t.shape == () and t.ndim == 0 and t.item() == 3.0


@pytest.mark.parametrize("dtype", [gt.float64, gt.float32, gt.int64, gt.bool_, "float64"])
def test_tensor_dtype_argument_converts(dtype):
    t = gt.tensor([0, 1, 2], dtype=dtype)
    assert t.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(t.numpy(), np.array([0, 1, 2]).astype(dtype))


def test_tensor_copies_a_numpy_array():
    array = np.zeros(3)
    t = gt.tensor(array)
    array[0] = 7.0
    assert t.numpy()[0] == 0.0


def test_tensor_of_a_tensor_copies_and_drops_the_graph():
    x = gt.tensor([1.0, 2.0], requires_grad=True)
    y = gt.tensor(x * 2)
    assert not y.requires_grad and y.grad_fn is None
    np.testing.assert_array_equal(y.numpy(), [2.0, 4.0])
    y.data[0] = 9.0
    assert x.numpy()[0] == 1.0


def test_tensor_from_a_list_of_zero_dim_tensors():
    t = gt.tensor([gt.tensor(1.0), gt.tensor(2.0)])
    assert t.shape == (2,)
    np.testing.assert_array_equal(t.numpy(), [1.0, 2.0])


def test_tensor_requires_grad_argument_makes_a_leaf():
    t = gt.tensor([1.0], requires_grad=True)
    assert t.requires_grad and t.is_leaf and t.grad is None


def test_tensor_on_cpu_by_default():
    assert gt.tensor([1.0]).device == "cpu"
    assert gt.tensor([1.0], device="cpu").device == "cpu"


# ---- zeros / ones / full / arange / eye ------------------------------------------------------------

@pytest.mark.parametrize("make, value", [(gt.zeros, 0.0), (gt.ones, 1.0)])
@pytest.mark.parametrize("size", [(2, 3), ((2, 3),), ([2, 3],)], ids=["spread", "tuple", "list"])
def test_zeros_and_ones_take_sizes_spread_or_as_one_sequence(make, value, size):
    t = make(*size)
    assert t.shape == (2, 3) and t.dtype == np.float32
    assert (t.numpy() == value).all()


def test_zeros_with_no_size_is_a_scalar():
    assert gt.zeros(()).shape == ()


@pytest.mark.parametrize("make", [gt.zeros, gt.ones, gt.randn, gt.rand])
def test_constructors_accept_dtype_and_requires_grad(make):
    t = make(2, dtype=gt.float64, requires_grad=True)
    assert t.dtype == np.float64 and t.requires_grad and t.is_leaf


@pytest.mark.parametrize(
    "fill, dtype",
    [(3.5, np.float32), (3, np.int64), (True, np.bool_)],
    ids=["float", "int", "bool"],
)
def test_full_infers_dtype_from_fill_value(fill, dtype):
    t = gt.full((2, 2), fill)
    assert t.dtype == np.dtype(dtype) and t.shape == (2, 2)
    assert (t.numpy() == fill).all()


def test_full_with_explicit_dtype():
    t = gt.full((3,), 2, dtype=gt.float64)
    assert t.dtype == np.float64
    np.testing.assert_array_equal(t.numpy(), [2.0, 2.0, 2.0])


@pytest.mark.parametrize(
    "args, values, dtype",
    [
        ((5,), [0, 1, 2, 3, 4], np.int64),
        ((2, 5), [2, 3, 4], np.int64),
        ((5, 0, -2), [5, 3, 1], np.int64),
        ((0, 1, 0.25), [0.0, 0.25, 0.5, 0.75], np.float32),
        ((3.0,), [0.0, 1.0, 2.0], np.float32),
    ],
    ids=["end", "start-end", "negative-step", "float-step", "float-end"],
)
def test_arange_values_and_dtype(args, values, dtype):
    t = gt.arange(*args)
    assert t.dtype == np.dtype(dtype)
    np.testing.assert_allclose(t.numpy(), values)


def test_arange_dtype_argument():
    assert gt.arange(3, dtype=gt.float64).dtype == np.float64


def test_eye_is_identity():
    np.testing.assert_array_equal(gt.eye(3).numpy(), np.eye(3))
    assert gt.eye(2, 3).shape == (2, 3)


# ---- *_like -------------------------------------------------------------------------------------

@pytest.mark.parametrize("make, value", [(gt.zeros_like, 0), (gt.ones_like, 1)])
@pytest.mark.parametrize("dtype", [gt.float32, gt.float64, gt.int64])
def test_like_constructors_copy_shape_and_dtype(make, value, dtype):
    source = gt.tensor(np.arange(6).reshape(2, 3), dtype=dtype)
    t = make(source)
    assert t.shape == (2, 3) and t.dtype == np.dtype(dtype) and t.device == source.device
    assert (t.numpy() == value).all()


def test_like_constructors_do_not_inherit_requires_grad():
    source = gt.ones(2, requires_grad=True)
    assert not gt.zeros_like(source).requires_grad
    assert gt.ones_like(source, requires_grad=True).requires_grad


def test_like_constructor_dtype_override():
    assert gt.zeros_like(gt.ones(2), dtype=gt.float64).dtype == np.float64


# ---- random draws and manual_seed -----------------------------------------------------------------

@pytest.mark.parametrize("draw", [gt.randn, gt.rand])
def test_random_draws_have_shape_and_float32_default(draw):
    t = draw(3, 4)
    assert t.shape == (3, 4) and t.dtype == np.float32 and not t.requires_grad


def test_rand_is_in_the_unit_interval():
    values = gt.rand(10_000).numpy()
    assert values.min() >= 0.0 and values.max() < 1.0
    assert 0.45 < values.mean() < 0.55


def test_randn_is_roughly_standard_normal():
    values = gt.randn(20_000).numpy()
    assert abs(values.mean()) < 0.05 and abs(values.std() - 1.0) < 0.05


@pytest.mark.parametrize("draw", [gt.randn, gt.rand])
def test_manual_seed_repeats_the_same_draws(draw):
    gt.manual_seed(1234)
    first = [draw(5).numpy() for _ in range(2)]
    gt.manual_seed(1234)
    second = [draw(5).numpy() for _ in range(2)]
    np.testing.assert_array_equal(first[0], second[0])
    np.testing.assert_array_equal(first[1], second[1])
    assert not np.array_equal(first[0], first[1])  # the stream moves on between draws


def test_different_seeds_give_different_draws():
    gt.manual_seed(1)
    a = gt.randn(8).numpy()
    gt.manual_seed(2)
    assert not np.array_equal(a, gt.randn(8).numpy())


def test_randint_and_randperm():
    gt.manual_seed(0)
    ints = gt.randint(3, 7, (100,))
    assert ints.dtype == np.int64 and ints.numpy().min() >= 3 and ints.numpy().max() < 7
    perm = gt.randperm(10)
    assert perm.dtype == np.int64
    assert sorted(perm.tolist()) == list(range(10))


# ---- from_numpy, as_tensor ---------------------------------------------------------------------

def test_from_numpy_shares_memory_both_ways():
    array = np.zeros(3)
    t = gt.from_numpy(array)
    assert t.dtype == np.float64 and not t.requires_grad
    array[0] = 5.0
    assert t.numpy()[0] == 5.0
    t[1] = 7.0
    assert array[1] == 7.0


def test_from_numpy_keeps_dtype_and_shape():
    array = np.arange(6, dtype=np.int32).reshape(3, 2)
    t = gt.from_numpy(array)
    assert t.dtype == np.int32 and t.shape == (3, 2)


def test_from_numpy_rejects_other_types():
    with pytest.raises(TypeError, match="from_numpy.*list"):
        gt.from_numpy([1.0, 2.0])


def test_as_tensor_shares_an_array_of_the_asked_dtype_and_copies_otherwise():
    array = np.zeros(3, np.float32)
    shared, same_dtype = gt.as_tensor(array), gt.as_tensor(array, dtype=gt.float32)
    converted, from_list = gt.as_tensor(array, dtype=gt.float64), gt.as_tensor([1.0, 2.0])
    array[0] = 5.0
    assert shared.numpy()[0] == 5.0 and same_dtype.numpy()[0] == 5.0
    assert converted.dtype == np.float64 and converted.numpy()[0] == 0.0
    assert from_list.dtype == np.float32 and from_list.tolist() == [1.0, 2.0]
    t = gt.ones(2)
    assert gt.as_tensor(t) is t and gt.as_tensor(t, dtype=gt.float64) is not t
