"""Reductions: dim as int/tuple/negative/None, keepdim, NumPy's axis/keepdims, max/min with
indices, var/std with unbiased/correction."""
import numpy as np
import pytest

import minigt as gt

X = np.arange(24, dtype=np.float64).reshape(2, 3, 4) ** 1.5  # distinct values, no ties

DIMS = [None, 0, 1, -1, -3, (0, 2), (-1, 0), (0, 1, 2)]
DIM_IDS = ["None", "0", "1", "-1", "-3", "(0,2)", "(-1,0)", "all"]


@pytest.mark.parametrize("name", ["sum", "mean", "amax", "amin", "logsumexp"])
@pytest.mark.parametrize("dim", DIMS, ids=DIM_IDS)
@pytest.mark.parametrize("keepdim", [False, True], ids=["drop", "keep"])
def test_reduction_matches_numpy(name, dim, keepdim):
    reference = {
        "sum": np.sum, "mean": np.mean, "amax": np.max, "amin": np.min,
        "logsumexp": lambda a, axis, keepdims: np.log(np.exp(a).sum(axis=axis, keepdims=keepdims)),
    }[name]
    out = getattr(gt.tensor(X), name)(dim=dim, keepdim=keepdim)
    expected = reference(X, axis=dim, keepdims=keepdim)
    assert out.shape == np.shape(expected)
    np.testing.assert_allclose(out.numpy(), expected, rtol=1e-12)


@pytest.mark.parametrize("name", ["sum", "mean", "amax", "var", "std", "logsumexp"])
def test_numpy_spelling_axis_keepdims_is_accepted(name):
    t = gt.tensor(X)
    torch_style = getattr(t, name)(dim=-1, keepdim=True)
    numpy_style = getattr(t, name)(axis=-1, keepdims=True)
    assert numpy_style.shape == (2, 3, 1)
    np.testing.assert_array_equal(numpy_style.numpy(), torch_style.numpy())


def test_mean_axis_keepdims_as_in_layer_norm_code():
    x = gt.tensor([[1.0, 3.0], [2.0, 6.0]])
    centered = x - x.mean(axis=-1, keepdims=True)
    assert centered.tolist() == [[-1.0, 1.0], [-2.0, 2.0]]


def test_dim_positional():
    assert gt.tensor(X).sum(1).shape == (2, 4)
    assert gt.tensor(X).sum(1, True).shape == (2, 1, 4)


def test_reduction_gradient_broadcasts_back():
    x = gt.tensor(X, requires_grad=True)
    x.mean(dim=(0, 2)).sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), np.full(X.shape, 1 / 8))


def test_sum_of_bools_counts():
    mask = gt.tensor([True, False, True])
    assert mask.sum().item() == 2


# ---- max / min ---------------------------------------------------------------------------------------

@pytest.mark.parametrize("name, np_fn, np_arg", [("max", np.max, np.argmax), ("min", np.min, np.argmin)])
@pytest.mark.parametrize("dim", [0, 1, -1], ids=["0", "1", "-1"])
@pytest.mark.parametrize("keepdim", [False, True], ids=["drop", "keep"])
def test_max_min_with_dim_return_values_and_indices(name, np_fn, np_arg, dim, keepdim):
    result = getattr(gt.tensor(X), name)(dim=dim, keepdim=keepdim)
    values, indices = result  # unpacks like PyTorch's (values, indices)
    assert result.values is values and result.indices is indices
    np.testing.assert_array_equal(values.numpy(), np_fn(X, axis=dim, keepdims=keepdim))
    np.testing.assert_array_equal(indices.numpy(), np_arg(X, axis=dim, keepdims=keepdim))
    assert indices.dtype == np.int64 and not indices.requires_grad


@pytest.mark.parametrize("name, expected", [("max", 5.0), ("min", -2.0)])
def test_max_min_without_dim_return_one_value(name, expected):
    out = getattr(gt.tensor([[1.0, 5.0], [-2.0, 0.0]]), name)()
    assert isinstance(out, gt.Tensor) and out.shape == () and out.item() == expected


def test_max_with_dim_sends_gradient_to_the_argmax_only():
    x = gt.tensor([[1.0, 7.0, 3.0], [9.0, 2.0, 9.0]], requires_grad=True)
    values, _ = x.max(dim=1)
    values.sum().backward()
    # one winner per row (the first of the tied 9s), as torch.max(dim) does
    np.testing.assert_array_equal(x.grad.numpy(), [[0, 1, 0], [1, 0, 0]])


@pytest.mark.parametrize("name", ["max", "min"])
@pytest.mark.parametrize("dim", [0, -1])
@pytest.mark.parametrize("keepdim", [False, True])
def test_max_min_along_dim_0_of_a_0d_tensor_is_the_value(name, dim, keepdim):
    x = gt.tensor(2.5, requires_grad=True)
    values, indices = getattr(x, name)(dim, keepdim)
    assert values.shape == indices.shape == () and values.item() == 2.5 and indices.item() == 0
    (values * 3).backward()
    assert x.grad.item() == 3.0


def test_max_over_everything_shares_the_gradient_between_ties():
    x = gt.tensor([1.0, 4.0, 4.0], requires_grad=True)
    x.max().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [0.0, 0.5, 0.5])


@pytest.mark.parametrize("name, np_fn", [("argmax", np.argmax), ("argmin", np.argmin)])
def test_argmax_argmin(name, np_fn):
    t = gt.tensor(X)
    assert getattr(t, name)().item() == np_fn(X)
    np.testing.assert_array_equal(getattr(t, name)(dim=-1).numpy(), np_fn(X, axis=-1))
    assert getattr(t, name)(dim=1, keepdim=True).shape == (2, 1, 4)


# ---- var / std ----------------------------------------------------------------------------------------

V = np.array([[1.0, 2.0, 4.0, 7.0], [0.0, 3.0, 3.0, 10.0]])


@pytest.mark.parametrize(
    "kwargs, ddof",
    [
        ({}, 1),                                    # unbiased by default, as PyTorch
        ({"unbiased": True}, 1),
        ({"unbiased": False}, 0),
        ({"correction": 0}, 0),
        ({"correction": 2}, 2),
    ],
    ids=["default", "unbiased", "biased", "correction0", "correction2"],
)
@pytest.mark.parametrize("dim", [None, 1, (0, 1), -2], ids=["None", "1", "(0,1)", "-2"])
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # dim=-2 with correction=2: N - 2 = 0
def test_var_and_std_match_numpy_ddof(kwargs, ddof, dim):
    t = gt.tensor(V)
    np.testing.assert_allclose(t.var(dim=dim, **kwargs).numpy(), V.var(axis=dim, ddof=ddof))
    np.testing.assert_allclose(t.std(dim=dim, **kwargs).numpy(), V.std(axis=dim, ddof=ddof))


def test_var_positional_unbiased_and_keepdim():
    out = gt.tensor(V).var(1, False, True)
    assert out.shape == (2, 1)
    np.testing.assert_allclose(out.numpy(), V.var(axis=1, ddof=0, keepdims=True))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_var_with_no_degrees_of_freedom_divides_by_zero_like_pytorch():
    x = gt.tensor([5.0], requires_grad=True)  # N - correction = 0 and no spread: 0/0
    v = x.var()
    assert np.isnan(v.item())
    v.backward()
    assert np.isnan(x.grad.numpy()).all()
    y = gt.tensor([1.0, 3.0], requires_grad=True)  # spread / 0 = inf
    w = y.var(correction=2)
    assert w.item() == np.inf
    w.backward()
    assert y.grad.tolist() == [-np.inf, np.inf]


def test_var_gradient():
    x = gt.tensor(V, requires_grad=True)
    x.var(dim=1, unbiased=False).sum().backward()
    expected = 2 * (V - V.mean(axis=1, keepdims=True)) / V.shape[1]
    np.testing.assert_allclose(x.grad.numpy(), expected)


# ---- softmax family -----------------------------------------------------------------------------------

@pytest.mark.parametrize("dim", [0, 1, -1])
def test_softmax_and_log_softmax_along_dim(dim):
    t = gt.tensor(V)
    probs = t.softmax(dim)
    np.testing.assert_allclose(probs.numpy().sum(axis=dim), 1.0)
    np.testing.assert_allclose(t.log_softmax(dim).numpy(), np.log(probs.numpy()), atol=1e-12)


def test_softmax_is_stable_for_large_inputs():
    out = gt.tensor([1000.0, 1000.0]).softmax(-1)
    assert out.tolist() == [0.5, 0.5]
    assert np.isfinite(gt.tensor([1000.0, -1000.0]).logsumexp().item())
