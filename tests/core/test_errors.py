"""Bad input gives a clear exception that names the op, the shapes and what to do (section 6 of
the issue), never a wrong result. Each case checks the exception type and the message."""
import re

import numpy as np
import pytest

import minigt as gt


def raises(exc, *fragments):
    """pytest.raises whose message must contain every fragment, literally and in any order."""
    pattern = "".join(f"(?=.*{re.escape(f)})" for f in fragments)
    return pytest.raises(exc, match=re.compile(pattern, re.S))


# ---- shapes ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("op", [gt.add, gt.sub, gt.mul, gt.div, gt.pow, gt.maximum])
def test_elementwise_shape_mismatch_names_op_and_both_shapes(op):
    with raises(ValueError, op.__name__, "(2, 3)", "(4,)", "broadcastable"):
        op(gt.ones(2, 3), gt.ones(4))


def test_operator_shape_mismatch_names_add():
    with raises(ValueError, "add:", "(2, 3)", "(2,)", "must match or be 1"):
        gt.ones(2, 3) + gt.ones(2)


def test_comparison_shape_mismatch():
    with raises(ValueError, "lt", "(3,)", "(2,)"):
        gt.ones(3) < gt.ones(2)


@pytest.mark.parametrize(
    "a_shape, b_shape, detail",
    [((2, 3), (4, 5), "3 != 4"), ((3,), (4,), "3 != 4"), ((2, 3), (2,), "3 != 2")],
)
def test_matmul_inner_dim_mismatch_names_both_shapes(a_shape, b_shape, detail):
    with raises(ValueError, "matmul", str(a_shape), str(b_shape), detail):
        gt.ones(*a_shape) @ gt.ones(*b_shape)


def test_matmul_batch_mismatch_names_batch_dims():
    with raises(ValueError, "matmul", "(2,)", "(5,)", "broadcastable"):
        gt.ones(2, 3, 4) @ gt.ones(5, 4, 2)


def test_matmul_of_a_scalar():
    with raises(ValueError, "matmul", "()", "at least 1 dim"):
        gt.tensor(2.0) @ gt.ones(2)


def test_reshape_to_a_wrong_size_names_both_shapes():
    with raises(ValueError, "reshape", "(2, 3)", "(4, 2)", "6 elements", "8 elements"):
        gt.ones(2, 3).reshape(4, 2)


def test_reshape_with_minus_one_that_does_not_divide():
    with raises(ValueError, "reshape", "(2, 3)", "(4, -1)", "divisible"):
        gt.ones(2, 3).reshape(4, -1)


def test_reshape_with_two_minus_ones():
    with raises(ValueError, "reshape", "(-1, -1)", "(2, 3)", "only one dim can be -1"):
        gt.ones(2, 3).reshape(-1, -1)


def test_permute_with_repeated_dims():
    with raises(ValueError, "permute", "(0, 0, 2)", "(2, 3, 4)", "exactly once"):
        gt.ones(2, 3, 4).permute(0, 0, 2)


def test_permute_with_the_wrong_number_of_dims():
    with raises(ValueError, "permute", "(1, 0)", "3 dims"):
        gt.ones(2, 3, 4).permute(1, 0)


def test_broadcast_to_an_incompatible_shape():
    with raises(ValueError, "broadcast_to", "(3,)", "(2, 4)"):
        gt.ones(3).broadcast_to(2, 4)


def test_cat_with_mismatched_shapes():
    with raises(ValueError, "cat", "tensor 1", "(2, 4)", "(2, 3)", "dim 0"):
        gt.cat([gt.ones(2, 3), gt.ones(2, 4)])


def test_stack_with_mismatched_shapes():
    with raises(ValueError, "stack", "(3,)", "(2,)"):
        gt.stack([gt.ones(2), gt.ones(3)])


def test_where_condition_must_be_bool():
    with raises(TypeError, "where", "bool"):
        gt.where(gt.ones(2), gt.ones(2), gt.zeros(2))


# ---- dims --------------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "call, op, rank",
    [
        (lambda t: t.sum(dim=2), "sum", 2),
        (lambda t: t.mean(dim=-3), "mean", 2),
        (lambda t: t.max(dim=5), "max", 2),
        (lambda t: t.softmax(dim=2), "softmax", 2),
        (lambda t: t.var(dim=(0, 2)), "var", 2),
        (lambda t: t.transpose(0, 2), "transpose", 2),
        (lambda t: t.unsqueeze(4), "unsqueeze", 3),  # the result has 3 dims
        (lambda t: t.argmax(dim=2), "argmax", 2),
    ],
    ids=["sum", "mean", "max", "softmax", "var", "transpose", "unsqueeze", "argmax"],
)
def test_dim_out_of_range_names_op_and_valid_range(call, op, rank):
    # The message gives the number of dims and the valid range (normalize_dim does not see the
    # full shape), e.g. "sum: dim 2 is out of range for a tensor with 2 dim(s); use a dim in [-2, 1]".
    with raises(IndexError, f"{op}:", "out of range", f"{rank} dim(s)", f"[{-rank}, {rank - 1}]"):
        call(gt.ones(2, 3))


def test_repeated_reduction_dim():
    with raises(ValueError, "sum", "repeats"):
        gt.ones(2, 3).sum(dim=(1, -1))


def test_dim_and_axis_together():
    with raises(TypeError, "mean", "dim or axis"):
        gt.ones(2, 3).mean(dim=0, axis=0)


# ---- indexing ----------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "index, shown",
    [(5, "[5]"), ((slice(None), 3), "3"), (gt.tensor([0, 7]), "array(2,)")],
    ids=["int", "second-dim", "tensor"],
)
def test_index_out_of_range_names_shape_and_index(index, shown):
    with raises(IndexError, "getitem", "(2, 3)", shown, "out of bounds"):
        gt.ones(2, 3)[index]


def test_float_index_tensor_suggests_long():
    with raises(IndexError, "getitem", "float32", ".long()"):
        gt.ones(3)[gt.tensor([0.0, 1.0])]


def test_boolean_mask_of_the_wrong_shape():
    with raises(IndexError, "getitem", "(2, 3)"):
        gt.ones(2, 3)[gt.tensor([True, False, True])]


# ---- autograd ----------------------------------------------------------------------------------------

def test_backward_of_a_non_scalar_without_gradient():
    y = gt.ones(3, requires_grad=True) * 2
    with raises(RuntimeError, "backward", "(3,)", "gradient=", ".sum()"):
        y.backward()


def test_backward_with_a_gradient_of_the_wrong_shape():
    y = gt.ones(3, requires_grad=True) * 2
    with raises(RuntimeError, "backward", "(2,)", "(3,)", "must match"):
        y.backward(gradient=gt.ones(2))


def _under_no_grad():
    with gt.no_grad():
        return (gt.ones(1, requires_grad=True) * 2).sum()


@pytest.mark.parametrize("make", [lambda: gt.ones(1).sum(), lambda: gt.ones(1) * 2, _under_no_grad],
                         ids=["plain", "plain-op", "no_grad"])
def test_backward_on_a_tensor_that_does_not_require_grad(make):
    with raises(RuntimeError, "backward", "does not require grad", "requires_grad=True"):
        make().backward()


def test_backward_twice_without_retain_graph():
    x = gt.ones(2, requires_grad=True)
    loss = (x * x).sum()
    loss.backward()
    with raises(RuntimeError, "backward through Sum", "second time", "retain_graph=True"):
        loss.backward()
    assert x.grad.tolist() == [2.0, 2.0]  # the failed call added nothing


def test_backward_twice_through_a_shared_freed_subgraph():
    x = gt.ones(2, requires_grad=True)
    h = x * x
    h.sum().backward()
    with raises(RuntimeError, "backward through Mul", "second time", "retain_graph=True"):
        (h * 2).sum().backward()


@pytest.mark.parametrize(
    "modify, op",
    [
        (lambda w: w.add_(1.0), "add_"),
        (lambda w: w.__iadd__(1.0), "add_"),
        (lambda w: w.__isub__(1.0), "add_"),  # sub_ is add_(alpha=-1)
        (lambda w: w.mul_(2.0), "mul_"),
        (lambda w: w.div_(2.0), "div_"),
        (lambda w: w.zero_(), "zero_"),
        (lambda w: w.fill_(1.0), "fill_"),
        (lambda w: w.copy_(gt.zeros(2)), "copy_"),
        (lambda w: w.__setitem__(0, 1.0), "__setitem__"),
    ],
    ids=["add_", "+=", "-=", "mul_", "div_", "zero_", "fill_", "copy_", "setitem"],
)
def test_in_place_change_of_a_leaf_that_requires_grad(modify, op):
    w = gt.tensor([1.0, 2.0], requires_grad=True)
    with raises(RuntimeError, f"{op}:", "leaf that requires grad", "(2,)", "no_grad"):
        modify(w)
    assert w.tolist() == [1.0, 2.0] and w._version[0] == 0  # nothing was written


def test_in_place_change_of_a_graph_tensor():
    h = gt.ones(2, requires_grad=True) * 2
    with raises(RuntimeError, "add_", "part of the graph", "(2,)"):
        h += 1


def test_version_check_names_op_input_and_shape():
    x = gt.ones(2, 3, requires_grad=True)
    c = gt.ones(2, 3)
    loss = (x * c).sum()
    c += 1
    with raises(RuntimeError, "backward through Mul", "input 1", "(2, 3)", "modified in place"):
        loss.backward()


def test_requires_grad_on_an_integer_tensor():
    with raises(TypeError, "requires_grad_", "int64", ".float()"):
        gt.tensor([1, 2], requires_grad=True)


# ---- building tensors ---------------------------------------------------------------------------------

@pytest.mark.parametrize("data", ["abc", ["a", "b"], [1.0, "x"], {"a": 1}, None],
                         ids=["str", "str-list", "mixed", "dict", "None"])
def test_tensor_of_non_numbers(data):
    with raises(TypeError, "tensor()", "unsupported data", "numbers"):
        gt.tensor(data)


@pytest.mark.parametrize("data", [[[1, 2], [3]], [[1.0], [2.0, 3.0]], [1, [2, 3]]])
def test_tensor_of_a_ragged_list(data):
    with raises(ValueError, "tensor()", "rectangular"):
        gt.tensor(data)


def test_item_on_many_elements():
    with raises(ValueError, "item()", "6 elements", "(2, 3)", "reduce"):
        gt.ones(2, 3).item()


@pytest.mark.parametrize("make", [gt.zeros, gt.ones, gt.randn, gt.rand])
def test_negative_size(make):
    with raises(ValueError, make.__name__, "non-negative", "-1"):
        make(2, -1)


def test_not_a_dtype():
    with raises(TypeError, "ones", "'banana'", "not a dtype"):
        gt.ones(2, dtype="banana")


def test_mean_of_an_integer_tensor():
    with raises(TypeError, "mean", "int64", ".float()"):
        gt.tensor([1, 2]).mean()


@pytest.mark.parametrize("op", ["max", "min", "amax", "argmax"])
def test_extreme_of_an_empty_tensor(op):
    with raises(ValueError, op, "(0,)", "empty"):
        getattr(gt.zeros(0), op)()


def test_combining_with_an_unsupported_type():
    with raises(TypeError, "add", "str", "'a'", "minigt tensor"):
        gt.ones(2) + "a"


def test_combining_with_a_torch_tensor_says_how_to_convert_it():
    torch = pytest.importorskip("torch")
    for combine in (lambda: gt.ones(2) + torch.ones(2, 3), lambda: torch.ones(2, 3) + gt.ones(2)):
        with raises(TypeError, "add:", "torch.Tensor", "(2, 3)", "torch.float32",
                    "minigt.from_numpy(t.detach().cpu().numpy())"):
            combine()


@pytest.mark.parametrize("call, op", [(lambda x: gt.nn.Linear(3, 2)(x), "Linear(in_features=3"),
                                      (lambda x: gt.nn.functional.linear(x, gt.ones(2, 3)), "linear:")],
                         ids=["Linear", "F.linear"])
def test_a_layer_given_a_numpy_array_says_to_wrap_it(call, op):
    # PyTorch raises TypeError too ("must be Tensor, not numpy.ndarray")
    with raises(TypeError, op, "numpy.ndarray", "(4, 3)", "float32", "minigt.from_numpy(",
                "minigt.tensor("):
        call(np.ones((4, 3), np.float32))


def test_a_layer_given_a_list_says_to_wrap_it():
    with raises(TypeError, "Linear(in_features=3", "list", "(1, 3)", "minigt.tensor("):
        gt.nn.Linear(3, 2)([[1.0, 2.0, 3.0]])


@pytest.mark.parametrize("combine", [
    lambda x: x - x.max(axis=-1, keepdims=True),
    lambda x: x.min(dim=0) * x,
    lambda x: gt.maximum(x, (x[0], x[1])),
    lambda x: x < [[x[0, 0]]],
    lambda x: gt.where(x > 0, x.max(-1, keepdim=True), x),
], ids=["sub", "rmul", "tuple", "nested list", "where"])
def test_combining_with_a_sequence_of_tensors_is_refused(combine):
    # max/min with a dim give (values, indices); as one array it broadcast to a wrong shape
    with raises(TypeError, "of tensors", ".values", "amax"):
        combine(gt.ones(2, 3))


def test_sequences_of_numbers_still_combine():
    assert (gt.ones(2, 2) + [1.0, 2.0]).tolist() == [[2.0, 3.0]] * 2
    assert ((1, 2) - gt.ones(2)).tolist() == [0.0, 1.0]


# ---- devices -------------------------------------------------------------------------------------------

@pytest.mark.skipif(gt.cuda_available(), reason="checks the message given when CuPy/GPU is absent")
@pytest.mark.parametrize("make", [lambda: gt.tensor([1.0], device="cuda"),
                                  lambda: gt.zeros(2, device="cuda:0"),
                                  lambda: gt.ones(2).to("cuda"),
                                  lambda: gt.ones(2).cuda()],
                         ids=["tensor", "zeros", "to", "cuda()"])
def test_cuda_without_a_gpu_is_a_clear_error(make):
    with raises(RuntimeError, "cuda", "not available", "device='cpu'"):
        make()


@pytest.mark.parametrize("device", ["tpu", "gpu", "cuda0", "CPU"])
def test_unknown_device_string(device):
    with raises(ValueError, f"unknown device {device!r}", "'cpu', 'cuda' or 'cuda:N'"):
        gt.zeros(2, device=device)


@pytest.mark.gpu
@pytest.mark.skipif(not gt.cuda_available(), reason="mixing devices needs a GPU (CuPy)")
@pytest.mark.parametrize(
    "call, op",
    [(lambda a, b: a + b, "add"), (lambda a, b: a @ b, "matmul"), (lambda a, b: a < b, "lt"),
     (lambda a, b: gt.cat([a, b]), "cat"), (lambda a, b: gt.where(a > 0, a, b), "where")],
    ids=["add", "matmul", "lt", "cat", "where"],
)
def test_mixing_devices_is_refused(call, op):
    cpu, gpu = gt.ones(2), gt.ones(2, device="cuda")
    with raises(RuntimeError, f"{op}:", "different devices", "cpu", "cuda:0", ".to(device)"):
        call(cpu, gpu)
    with raises(RuntimeError, "different devices"):
        call(gpu, cpu)
    assert np.asarray(cpu).tolist() == [1.0, 1.0]


@pytest.mark.parametrize("call", [lambda: gt.nn.LayerNorm(3)(np.ones((2, 3))),
                                  lambda: gt.exp(np.ones(2)),
                                  lambda: gt.nn.GELU()([1.0, 2.0])],
                         ids=["layer_norm-numpy", "exp-numpy", "gelu-list"])
def test_any_op_given_a_non_tensor_says_what_it_got_and_how_to_wrap_it(call):
    with pytest.raises(TypeError, match=r"inputs must be minigt Tensors, got a (numpy\.ndarray|list)"
                                        r".*minigt\.tensor"):
        call()
