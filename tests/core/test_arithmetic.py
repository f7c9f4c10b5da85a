"""Operators: broadcasting, Python scalars on either side, @, comparisons, dtypes, in place."""
import operator

import numpy as np
import pytest

import minigt as gt

A = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], dtype=np.float32)
B = np.array([0.5, -1.0, 2.0], dtype=np.float32)
POSITIVE = np.array([0.5, 1.0, 2.0], dtype=np.float32)  # pow with a float exponent needs x > 0

BINARY = [operator.add, operator.sub, operator.mul, operator.truediv, operator.pow]
BINARY_IDS = ["add", "sub", "mul", "div", "pow"]


# ---- broadcasting and Python scalars -------------------------------------------------------------

@pytest.mark.parametrize("op", BINARY, ids=BINARY_IDS)
@pytest.mark.parametrize(
    "a_shape, b_shape",
    [((2, 3), (2, 3)), ((2, 3), (3,)), ((2, 1), (1, 3)), ((3,), (4, 1, 3)), ((), (2, 3))],
    ids=["same", "row", "outer", "new-lead-dim", "scalar-tensor"],
)
def test_binary_ops_broadcast_like_numpy(op, a_shape, b_shape):
    rng = np.random.default_rng(0)
    a = rng.uniform(0.5, 2.0, a_shape).astype(np.float32)
    b = rng.uniform(0.5, 2.0, b_shape).astype(np.float32)
    out = op(gt.tensor(a), gt.tensor(b))
    expected = op(a, b)
    assert out.shape == expected.shape and out.dtype == np.float32
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-6)


@pytest.mark.parametrize("op", BINARY, ids=BINARY_IDS)
@pytest.mark.parametrize("scalar", [2, 2.5], ids=["int", "float"])
def test_python_scalar_on_either_side(op, scalar):
    x = gt.tensor(POSITIVE)
    right, left = op(x, scalar), op(scalar, x)
    np.testing.assert_allclose(right.numpy(), op(POSITIVE, np.float32(scalar)), rtol=1e-6)
    np.testing.assert_allclose(left.numpy(), op(np.float32(scalar), POSITIVE), rtol=1e-6)
    assert right.dtype == left.dtype == np.float32  # a Python number does not widen float32


def test_rsub_rdiv_rpow_are_not_swapped():
    x = gt.tensor([1.0, 2.0, 4.0])
    assert (2 - x).tolist() == [1.0, 0.0, -2.0]
    assert (x / 2).tolist() == [0.5, 1.0, 2.0]
    assert (4 / x).tolist() == [4.0, 2.0, 1.0]
    assert (2 ** x).tolist() == [2.0, 4.0, 16.0]
    assert (x ** 2).tolist() == [1.0, 4.0, 16.0]


def test_scalar_ops_are_differentiable_on_the_tensor_side():
    x = gt.tensor([1.0, 2.0], requires_grad=True)
    ((2 - x) * (x / 2) + 2 ** x).sum().backward()
    # d/dx [(2-x) x/2 + 2^x] = 1 - x + 2^x ln 2
    expected = 1 - np.array([1.0, 2.0]) + 2 ** np.array([1.0, 2.0]) * np.log(2)
    np.testing.assert_allclose(x.grad.numpy(), expected, rtol=1e-6)


def test_unary_minus_and_abs():
    x = gt.tensor([1.0, -2.0, 0.0])
    assert (-x).tolist() == [-1.0, 2.0, -0.0]
    assert abs(x).tolist() == [1.0, 2.0, 0.0]


# ---- dtypes ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("op", BINARY, ids=BINARY_IDS)
def test_float64_stays_float64(op):
    x = gt.tensor(np.array([1.0, 2.0]))
    assert op(x, x).dtype == np.float64
    assert op(x, 1.5).dtype == np.float64 and op(3, x).dtype == np.float64


@pytest.mark.parametrize(
    "fn",
    [gt.exp, gt.log, gt.sqrt, gt.tanh, gt.sigmoid, gt.relu, gt.gelu,
     lambda t: t.sum(), lambda t: t.mean(-1), lambda t: t.softmax(-1), lambda t: t @ t.T],
    ids=["exp", "log", "sqrt", "tanh", "sigmoid", "relu", "gelu", "sum", "mean", "softmax", "matmul"],
)
def test_float64_survives_unary_ops_and_reductions(fn):
    x = gt.tensor(np.array([[1.0, 2.0], [3.0, 4.0]]), requires_grad=True)
    out = fn(x)
    assert out.dtype == np.float64
    out.sum().backward()
    assert x.grad.dtype == np.float64


def test_float32_and_float64_promote_to_float64():
    assert (gt.ones(2) + gt.ones(2, dtype=gt.float64)).dtype == np.float64


@pytest.mark.parametrize("fn", [
    gt.add, gt.mul, gt.pow, gt.maximum, gt.matmul, lambda a, b: gt.where(a > 1.5, a, b),
], ids=["add", "mul", "pow", "maximum", "matmul", "where"])
@pytest.mark.parametrize("wide_first", [True, False], ids=["float64 first", "float32 first"])
def test_mixed_float_operands_get_gradients_in_their_own_dtypes(fn, wide_first):
    narrow = gt.tensor([[1.0, 2.0], [3.0, 0.5]], requires_grad=True)
    wide = gt.tensor([[2.0, 1.0], [0.5, 3.0]], dtype=gt.float64, requires_grad=True)
    out = fn(wide, narrow) if wide_first else fn(narrow, wide)
    assert out.dtype == np.float64
    out.sum().backward()
    assert (narrow.grad.dtype, wide.grad.dtype) == (np.float32, np.float64)


@pytest.mark.parametrize(
    "expr, dtype",
    [
        (lambda i: i + 1, np.int64),
        (lambda i: i * 2, np.int64),
        (lambda i: i - 1, np.int64),
        (lambda i: i / 2, np.float32),                 # true division of ints gives float32
        (lambda i: i / gt.tensor([2, 2, 2]), np.float32),
    ],
    ids=["add", "mul", "sub", "div-scalar", "div-tensor"],
)
def test_integer_tensor_arithmetic_dtypes(expr, dtype):
    out = expr(gt.tensor([1, 2, 3]))
    assert out.dtype == np.dtype(dtype)


def test_integer_division_values():
    np.testing.assert_allclose((gt.tensor([1, 2, 3]) / 2).numpy(), [0.5, 1.0, 1.5])


def test_bool_mask_times_a_float():
    out = gt.tensor([True, False]) * 2.5
    assert out.dtype == np.float32 and out.tolist() == [2.5, 0.0]


# ---- matmul ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "a_shape, b_shape, out_shape",
    [
        ((4,), (4,), ()),                  # vector . vector
        ((2, 4), (4,), (2,)),              # matrix @ vector
        ((4,), (4, 3), (3,)),              # vector @ matrix
        ((2, 4), (4, 3), (2, 3)),          # matrix @ matrix
        ((5, 2, 4), (5, 4, 3), (5, 2, 3)), # batched
        ((5, 2, 4), (4, 3), (5, 2, 3)),    # batch broadcast on the left
        ((2, 4), (5, 4, 3), (5, 2, 3)),    # batch broadcast on the right
        ((5, 1, 2, 4), (3, 4, 2), (5, 3, 2, 2)),
        ((5, 2, 4), (4,), (5, 2)),
    ],
    ids=["1d-1d", "2d-1d", "1d-2d", "2d-2d", "3d-3d", "3d-2d", "2d-3d", "4d-3d", "3d-1d"],
)
def test_matmul_shapes_and_values(a_shape, b_shape, out_shape):
    rng = np.random.default_rng(1)
    a, b = rng.standard_normal(a_shape), rng.standard_normal(b_shape)
    ta, tb = gt.tensor(a, requires_grad=True), gt.tensor(b, requires_grad=True)
    out = ta @ tb
    assert out.shape == out_shape
    np.testing.assert_allclose(out.numpy(), a @ b, rtol=1e-10)
    out.sum().backward()  # gradients come back in each operand's own shape
    assert ta.grad.shape == a_shape and tb.grad.shape == b_shape


def test_matmul_gradient_of_a_matrix_product():
    a = gt.tensor(A, requires_grad=True)
    b = gt.tensor(B.reshape(3, 1), requires_grad=True)
    (a @ b).sum().backward()
    np.testing.assert_allclose(a.grad.numpy(), np.ones((2, 1)) @ B.reshape(1, 3))
    np.testing.assert_allclose(b.grad.numpy(), A.T @ np.ones((2, 1)))


def test_matmul_method_and_function_agree():
    a, b = gt.tensor(A), gt.tensor(A.T)
    np.testing.assert_array_equal(a.matmul(b).numpy(), gt.matmul(a, b).numpy())


# ---- comparisons -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "op", [operator.eq, operator.ne, operator.lt, operator.le, operator.gt, operator.ge],
    ids=["eq", "ne", "lt", "le", "gt", "ge"],
)
def test_comparisons_give_bool_tensors_without_grad(op):
    x = gt.tensor(A, requires_grad=True)
    out = op(x, gt.tensor(B))
    assert out.dtype == np.bool_ and not out.requires_grad and out.grad_fn is None
    np.testing.assert_array_equal(out.numpy(), op(A, B))
    np.testing.assert_array_equal(op(x, 3.0).numpy(), op(A, 3.0))
    np.testing.assert_array_equal(op(3.0, x).numpy(), op(3.0, A))


def test_comparison_result_can_mask_and_invert():
    x = gt.tensor([1.0, -1.0, 2.0])
    mask = x > 0
    assert (~mask).tolist() == [False, True, False]
    assert x[mask].tolist() == [1.0, 2.0]
    assert mask.any().item() is True and mask.all().item() is False


# ---- in-place operators outside the graph ----------------------------------------------------------

@pytest.mark.parametrize(
    "apply, expected",
    [
        (lambda t: t.__iadd__(1.0), [2.0, 3.0]),
        (lambda t: t.__isub__(1.0), [0.0, 1.0]),
        (lambda t: t.__imul__(gt.tensor([3.0, 4.0])), [3.0, 8.0]),
        (lambda t: t.__itruediv__(2.0), [0.5, 1.0]),
        (lambda t: t.add_(gt.tensor([1.0, 1.0]), alpha=2.0), [3.0, 4.0]),
        (lambda t: t.sub_(1.0), [0.0, 1.0]),
        (lambda t: t.mul_(2.0), [2.0, 4.0]),
        (lambda t: t.div_(2.0), [0.5, 1.0]),
        (lambda t: t.zero_(), [0.0, 0.0]),
        (lambda t: t.fill_(7.0), [7.0, 7.0]),
        (lambda t: t.copy_(gt.tensor([5.0, 6.0])), [5.0, 6.0]),
    ],
    ids=["+=", "-=", "*=", "/=", "add_alpha", "sub_", "mul_", "div_", "zero_", "fill_", "copy_"],
)
def test_in_place_on_a_plain_tensor(apply, expected):
    t = gt.tensor([1.0, 2.0])
    storage = t.data
    result = apply(t)
    assert result is t and t.tolist() == expected
    assert t.data is storage  # really in place: the same array was written
    assert t.dtype == np.float32


def test_augmented_assignment_keeps_the_same_object():
    t = gt.tensor([1.0, 2.0])
    alias = t
    t += 1
    t *= 2
    assert t is alias and alias.tolist() == [4.0, 6.0]


def test_in_place_update_of_a_parameter_under_no_grad():
    w = gt.tensor([1.0, 2.0], requires_grad=True)
    (w * w).sum().backward()
    with gt.no_grad():
        w -= 0.5 * w.grad
    assert w.tolist() == [0.0, 0.0]
    assert w.requires_grad and w.is_leaf and w.grad_fn is None


@pytest.mark.parametrize(
    "a, b, dtype, expected",
    [(1.0, 0.0, np.float32, [1.0, 0.0, 1.0]), (1, 0, np.int64, [1, 0, 1]), (2, 0.5, np.float32, [2.0, 0.5, 2.0])],
    ids=["floats", "ints", "int and float"],
)
def test_where_with_two_numbers_takes_dtypes_as_pytorch(a, b, dtype, expected):
    out = gt.where(gt.tensor([True, False, True]), a, b)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out.numpy(), expected)


def test_a_python_float_operand_is_made_once_and_cannot_be_changed():
    """x * 0.5 in a loop reuses one read-only 0-d constant (ops.dims); signs of zero and NaN
    are never confused with another value's."""
    x = gt.ones(3)
    first, second = (x * 0.5).grad_fn, (x * 0.5).grad_fn
    assert first is None and second is None  # no graph: x needs no gradient
    y = gt.ones(3, requires_grad=True)
    a, b = (y * 0.5).grad_fn.inputs[1], (y * 0.5).grad_fn.inputs[1]
    assert a is b and not a.data.flags.writeable
    assert np.signbit((x * -0.0).numpy()).all() and not np.signbit((x * 0.0).numpy()).any()
    assert np.isnan((x * float("nan")).numpy()).all() and (x * 2.0).tolist() == [2.0, 2.0, 2.0]
