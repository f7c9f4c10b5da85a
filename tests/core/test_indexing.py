"""x[index] (differentiable) and x[index] = value (outside the graph)."""
import numpy as np
import pytest

import minigt as gt

X = np.arange(24, dtype=np.float32).reshape(2, 3, 4)

INDICES = {
    "int": 1,
    "negative-int": -1,
    "int-tuple": (1, 2),
    "slice": slice(0, 1),
    "slice-step": (slice(None), slice(None, None, 2)),
    "negative-step": (slice(None), slice(None, None, -1)),
    "negative-bounds": (Ellipsis, slice(-3, -1)),
    "none": (None, 0),
    "none-middle": (slice(None), None, 1),
    "ellipsis": (Ellipsis, 2),
    "ellipsis-int": (0, Ellipsis),
    "list": [1, 0, 1],
    "int-array": (slice(None), np.array([2, 0])),
    "two-arrays": (np.array([0, 1]), np.array([2, 0])),
    "bool-mask-rows": np.array([False, True]),
    "mixed": (1, slice(1, None), np.array([3, 3])),
}


@pytest.mark.parametrize("index", INDICES.values(), ids=INDICES.keys())
def test_getitem_matches_numpy(index):
    out = gt.tensor(X)[index]
    expected = X[index]
    assert out.shape == expected.shape
    np.testing.assert_array_equal(out.numpy(), expected)


@pytest.mark.parametrize("index", INDICES.values(), ids=INDICES.keys())
def test_getitem_gradient_puts_ones_where_selected(index):
    x = gt.tensor(X, requires_grad=True)
    x[index].sum().backward()
    expected = np.zeros_like(X)
    np.add.at(expected, index, 1.0)
    np.testing.assert_array_equal(x.grad.numpy(), expected)


def test_integer_tensor_index_with_repeats_accumulates_gradient():
    x = gt.tensor([10.0, 20.0, 30.0], requires_grad=True)
    picked = x[gt.tensor([0, 2, 0, 0])]
    assert picked.tolist() == [10.0, 30.0, 10.0, 10.0]
    (picked * gt.tensor([1.0, 2.0, 3.0, 4.0])).sum().backward()
    assert x.grad.tolist() == [8.0, 0.0, 2.0]


def test_embedding_style_lookup_accumulates_rows():
    table = gt.tensor(np.eye(3, dtype=np.float32), requires_grad=True)
    tokens = gt.tensor([[1, 1], [2, 1]])
    out = table[tokens]
    assert out.shape == (2, 2, 3)
    out.sum().backward()
    np.testing.assert_array_equal(table.grad.numpy(), [[0, 0, 0], [3, 3, 3], [1, 1, 1]])


def test_boolean_tensor_mask():
    x = gt.tensor([[1.0, -2.0], [-3.0, 4.0]], requires_grad=True)
    selected = x[x > 0]
    assert selected.tolist() == [1.0, 4.0]
    selected.sum().backward()
    assert x.grad.tolist() == [[1.0, 0.0], [0.0, 1.0]]


def test_empty_list_index_selects_nothing():
    out = gt.tensor([1.0, 2.0])[[]]
    assert out.shape == (0,)


def test_getitem_with_scalar_tensor_index():
    x = gt.tensor([5.0, 6.0, 7.0])
    assert x[gt.tensor(2)].item() == 7.0


def test_basic_slice_result_records_getitem():
    x = gt.tensor(X, requires_grad=True)
    assert "GetItem" in repr(x[0, 1:].grad_fn)


@pytest.mark.parametrize("index", [[0, 1], np.array([True, False, True]), gt.tensor([2, 0])],
                         ids=["list", "mask", "tensor"])
def test_writing_into_an_advanced_index_result_leaves_graphs_of_the_source_alone(index):
    x = gt.tensor([1.0, 2.0, 3.0], requires_grad=True)
    c = gt.tensor([3.0, 4.0, 5.0])
    loss = (x * c).sum()
    d = c[index]  # index arrays make a copy
    d += 1
    loss.backward()
    assert x.grad.tolist() == [3.0, 4.0, 5.0] and c.tolist() == [3.0, 4.0, 5.0]


@pytest.mark.parametrize("index", [slice(1, None), 0, (Ellipsis, None)], ids=["slice", "int", "newaxis"])
def test_writing_into_a_basic_index_result_is_seen_by_graphs_of_the_source(index):
    x = gt.tensor([1.0, 2.0, 3.0], requires_grad=True)
    c = gt.tensor([3.0, 4.0, 5.0])
    loss = (x * c).sum()
    d = c[index]  # a view of c
    d += 1
    with pytest.raises(RuntimeError, match="modified in place"):
        loss.backward()


# ---- __setitem__ -------------------------------------------------------------------------------------

@pytest.mark.parametrize(
    "index, value",
    [
        (0, 9.0),
        ((1, slice(None)), 9.0),
        (slice(None, None, 2), np.float32(9.0)),
        ([0, 2], 9.0),
        (np.array([True, False, True]), 9.0),
        (Ellipsis, 9.0),
        ((slice(None), 1), [7.0, 8.0, 9.0]),
    ],
    ids=["int", "row", "step", "list", "mask", "ellipsis", "column-values"],
)
def test_setitem_matches_numpy(index, value):
    data = np.arange(6, dtype=np.float32).reshape(3, 2)
    t = gt.tensor(data)
    t[index] = value
    data[index] = value
    np.testing.assert_array_equal(t.numpy(), data)


def test_setitem_with_tensor_index_and_value():
    t = gt.zeros(4)
    t[gt.tensor([1, 3])] = gt.tensor([5.0, 6.0])
    assert t.tolist() == [0.0, 5.0, 0.0, 6.0]


def test_setitem_with_bool_tensor_mask():
    t = gt.tensor([1.0, -1.0, 2.0])
    t[t < 0] = 0.0
    assert t.tolist() == [1.0, 0.0, 2.0]


def test_setitem_on_a_parameter_under_no_grad():
    w = gt.zeros(3, requires_grad=True)
    with gt.no_grad():
        w[1] = 4.0
    assert w.tolist() == [0.0, 4.0, 0.0] and w.requires_grad


def test_setitem_keeps_dtype():
    t = gt.tensor([1, 2, 3])
    t[0] = 7
    assert t.dtype == np.int64 and t.tolist() == [7, 2, 3]
