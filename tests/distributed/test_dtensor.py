"""DTensor by hand: making and moving sharded tensors, the placements the rules promise and the
communication they insert -- at whatever world size mpirun gives (indexing and data parallelism
have files of their own).

Values and gradients are checked against the same program run on plain tensors (`check_op`);
the tests taking `device` run on cuda too where CuPy sees a GPU (the ranks may share it).
Shapes with 2 rows leave the last ranks of a 3- or 4-rank world with empty parts.
"""
from __future__ import annotations

import numpy as np
import pytest
from helpers import (
    RANK, SIZE, TOL, check_op, count_calls, global_array, global_grad, local_part, make_input,
    partial_parts, uneven, weighted_sum, weights_for,
)

import minigt
import minigt.distributed as dist
from minigt.distributed import collectives, dispatch, placement
from minigt.distributed.placement import Partial, Replicate, Shard

PLACEMENTS = [Shard(0), Shard(1), Replicate(), Partial()]
IDS = ["S0", "S1", "R", "P"]


# ---- making DTensors -----------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 5, 7])
@pytest.mark.parametrize("dim", [0, 1, -1])
def test_shard_keeps_this_ranks_part(n, dim):
    x = global_array((n, 3) if dim == 0 else (3, n), seed=n)
    d = dist.shard(minigt.tensor(x), dim)
    assert d.placement == Shard(dim % 2) and d.shape == x.shape and len(d) == x.shape[0]
    assert d.sizes == tuple(placement.shard_sizes(n, SIZE))
    np.testing.assert_array_equal(d.local.numpy(), local_part(x, dim % 2))
    np.testing.assert_array_equal(d.numpy(), x)


@pytest.mark.parametrize("make", ["shard", "replicate"])
def test_a_plain_leaf_gets_the_whole_gradient_through_shard_and_replicate(make):
    x = minigt.tensor(global_array((2, 3), seed=2), requires_grad=True)
    d = dist.shard(x, 0) if make == "shard" else dist.replicate(x)
    weighted_sum(d, weights_for(x.shape, 2)).backward()
    assert x.grad is not None, f"{make}(x) cut x from the graph"
    np.testing.assert_allclose(x.grad.numpy(), weights_for(x.shape, 2).numpy(), **TOL)


@pytest.mark.parametrize("dim", [0, 1])
def test_from_local_with_uneven_parts(dim):
    parts = [global_array((n, 2) if dim == 0 else (2, n), seed=r) for r, n in enumerate(uneven(SIZE))]
    part = minigt.tensor(parts[RANK], requires_grad=True)
    d = dist.from_local(part, Shard(dim))
    assert d.sizes == tuple(uneven(SIZE)) and d.shape[dim] == sum(uneven(SIZE))
    np.testing.assert_array_equal(d.numpy(), np.concatenate(parts, dim))
    (d * 3.0).sum().backward()  # the part's gradient passes straight through
    np.testing.assert_array_equal(part.grad.numpy(), np.full(parts[RANK].shape, 3.0))


def test_from_local_with_a_given_shape_checks_the_part_length():
    shape = (5, 2)
    d = dist.from_local(minigt.tensor(local_part(global_array(shape, 3), 0)), Shard(0), shape)
    np.testing.assert_array_equal(d.numpy(), global_array(shape, 3))
    if SIZE > 1:
        with pytest.raises(ValueError, match="rows"):
            dist.from_local(minigt.ones(5, 2), Shard(0), shape)
    with pytest.raises(TypeError, match="already a DTensor"):
        dist.from_local(d, Replicate())


def test_from_local_partial_sums_the_parts():
    x = global_array((3, 2), 4)
    d = dist.from_local(minigt.tensor(partial_parts(x, 4)[RANK]), Partial())
    assert d.placement == Partial()
    np.testing.assert_allclose(d.numpy(), x, **TOL)


# ---- redistribute among all placement pairs ------------------------------------------------------

COLLECTIVES = ("all_gather", "all_reduce", "reduce_scatter", "broadcast")
EXPECTED_CALLS = {  # (source, target) -> the one collective it needs (None: none)
    ("S0", "R"): "all_gather", ("S1", "R"): "all_gather", ("R", "S0"): None, ("R", "S1"): None,
    ("P", "R"): "all_reduce", ("P", "S0"): "reduce_scatter", ("P", "S1"): "reduce_scatter",
    ("S0", "S1"): "all_gather", ("S1", "S0"): "all_gather",  # via the whole value, as asked
    ("S0", "S0"): None, ("S1", "S1"): None, ("R", "R"): None,
}


@pytest.mark.parametrize("source", PLACEMENTS, ids=IDS)
@pytest.mark.parametrize("target", PLACEMENTS[:3], ids=IDS[:3])
def test_redistribute(source, target, device, monkeypatch):
    x = global_array((2, 5), seed=5)  # 2 rows: empty parts on 3+ ranks; 5 columns: uneven
    leaf = make_input(x, source, seed=5, device=device)
    calls = {name: count_calls(monkeypatch, collectives, name) for name in COLLECTIVES}
    out = leaf.redistribute(target)
    made = sorted(name for name, c in calls.items() if c)
    monkeypatch.undo()

    assert out.placement == target and out.shape == x.shape
    key = (IDS[PLACEMENTS.index(source)], IDS[PLACEMENTS.index(target)])
    if key in EXPECTED_CALLS and SIZE > 1:
        assert made == ([EXPECTED_CALLS[key]] if EXPECTED_CALLS[key] else [])
    expected_local = local_part(x, target.dim) if isinstance(target, Shard) else x
    assert out.local.device == leaf.local.device
    np.testing.assert_allclose(out.local.numpy(), expected_local, **TOL)
    weighted_sum(out, weights_for(x.shape, 5, device)).backward()
    np.testing.assert_allclose(global_grad(leaf), weights_for(x.shape, 5).numpy(), **TOL)


@pytest.mark.parametrize("source", PLACEMENTS[:3], ids=IDS[:3])
def test_nothing_turns_into_partial(source):
    leaf = make_input(global_array((2, 3), 6), source)
    with pytest.raises(ValueError, match="Partial"):
        leaf.redistribute(Partial())


def test_redistribute_to_the_same_placement_is_free():
    d = dist.shard(minigt.tensor(global_array((4, 3), 7)), 1)
    assert d.redistribute(Shard(-1)) is d


# ---- leaving the distributed world: item(), numpy() ------------------------------------------------


def test_item_and_numpy_on_partial_and_shard():
    x = global_array((2, 3), 8)
    d = dist.shard(minigt.tensor(x), 0)
    total = d.sum()
    assert total.placement == Partial()
    assert total.item() == pytest.approx(x.sum(), rel=1e-12)
    np.testing.assert_allclose(d.numpy(), x, **TOL)
    np.testing.assert_allclose(d.sum(1).numpy(), x.sum(1), **TOL)  # Shard(0) of 2 rows
    one = dist.shard(minigt.tensor(np.array([4.5])), 0)  # one element: all but rank 0 empty
    assert one.item() == 4.5
    with pytest.raises(ValueError, match="one element"):
        d.item()


# ---- uneven and empty parts ----------------------------------------------------------------------

TWO_ROW_OPS = {
    "elementwise": lambda x, w: (x * 2 + 1).tanh() * x,
    "with_row_vector": lambda x, w: x - w[0],
    "sum_rows": lambda x, w: x.sum(1),
    "mean_over_sharded": lambda x, w: x.mean(0),
    "softmax_rows": lambda x, w: x.softmax(-1),
    "var_rows": lambda x, w: x.var(1),
    "matmul": lambda x, w: x @ w.T,
    "slice": lambda x, w: x[1:],
    "int_index": lambda x, w: x[1],
    "reshape": lambda x, w: x.reshape(2, 3, 1),
}


@pytest.mark.parametrize("name", list(TWO_ROW_OPS))
def test_two_rows_over_every_rank(name, device):
    arrays = [global_array((2, 3), 9), global_array((4, 3), 10)]
    check_op(TWO_ROW_OPS[name], arrays, [Shard(0), None], seed=9, device=device)


# ---- placements the rules table promises ---------------------------------------------------------

# (name, shape a, placement a, shape b, placement b, expected output placement)
MATMUL_TABLE = [
    ("rows", (5, 3), Shard(0), (3, 4), Replicate(), Shard(0)),
    ("cols", (5, 3), Replicate(), (3, 4), Shard(1), Shard(1)),
    ("inner", (5, 3), Shard(1), (3, 4), Shard(0), Partial()),
    ("inner_with_R_right", (5, 3), Shard(1), (3, 4), Replicate(), Partial()),
    ("inner_with_R_left", (5, 3), Replicate(), (3, 4), Shard(0), Partial()),
    ("plain_right", (5, 3), Shard(0), (3, 4), None, Shard(0)),
    ("partial_left", (5, 3), Partial(), (3, 4), Replicate(), Partial()),
    ("partial_right", (5, 3), None, (3, 4), Partial(), Partial()),
    ("batch", (3, 2, 4), Shard(0), (3, 4, 2), Shard(0), Shard(0)),
    ("batch_with_R", (3, 2, 4), Shard(0), (3, 4, 2), Replicate(), Shard(0)),
    ("batch_with_matrix", (3, 2, 4), Shard(0), (4, 2), Replicate(), Shard(0)),
    ("batched_rows", (3, 5, 4), Shard(1), (3, 4, 2), Replicate(), Shard(1)),
    ("matrix_rows_by_batch", (5, 4), Shard(0), (3, 4, 2), Replicate(), Shard(1)),
    ("batched_cols", (3, 2, 4), Replicate(), (3, 4, 5), Shard(2), Shard(2)),
    ("batched_inner", (3, 2, 4), Shard(2), (3, 4, 5), Shard(1), Partial()),
    ("broadcast_batch", (2, 1, 2, 4), Shard(0), (3, 4, 2), Replicate(), Shard(0)),
    # a 1-D operand counts as a one-row (left) or one-column (right) matrix
    ("rows_by_vector", (5, 3), Shard(0), (3,), None, Shard(0)),
    ("inner_by_vector", (5, 3), Shard(1), (3,), Shard(0), Partial()),
    ("matrix_by_sharded_vector", (5, 3), Replicate(), (3,), Shard(0), Partial()),
    ("vector_by_cols", (5,), None, (5, 3), Shard(1), Shard(0)),
    ("sharded_vector_by_matrix", (5,), Shard(0), (5, 3), Replicate(), Partial()),
    ("dot", (5,), Shard(0), (5,), Shard(0), Partial()),
    ("batch_by_vector", (3, 2, 4), Shard(0), (4,), None, Shard(0)),
]


@pytest.mark.parametrize("case", MATMUL_TABLE, ids=[c[0] for c in MATMUL_TABLE])
def test_matmul_placements(case, device):
    _, shape_a, pa, shape_b, pb, expected = case
    arrays = [global_array(shape_a, 11), global_array(shape_b, 12)]
    out = check_op(lambda a, b: a @ b, arrays, [pa, pb], device=device)
    assert out.placement == expected


@pytest.mark.parametrize("b_dim", [0, 1], ids=["S0@S0", "S0@S1"])
def test_matmul_of_split_rows_by_a_split_matrix_gathers_the_matrix(b_dim):
    before = dispatch.redistributions["MatMul"]
    out = check_op(lambda a, b: a @ b, [global_array((5, 3), 13), global_array((3, 4), 14)],
                   [Shard(0), Shard(b_dim)])
    assert out.placement == Shard(0) and dispatch.redistributions["MatMul"] == before  # native


@pytest.mark.parametrize("fn, expected", [
    (lambda x: x.reshape(20, 3), Shard(0)), (lambda x: x.reshape(4, 15, 1), Shard(0)),
    (lambda x: x.transpose(0, 1), Shard(1)), (lambda x: x.permute(2, 0, 1), Shard(1)),
    (lambda x: x.sum((1, 2)), Shard(0)), (lambda x: x.softmax(1), Shard(0)),
    (lambda x: x.unsqueeze(0), Shard(1)), (lambda x: x.expand(2, 4, 5, 3), Shard(1)),
    (lambda x: minigt.cat([x, x * 2], 2), Shard(0)), (lambda x: x.flatten(1), Shard(0)),
], ids=["reshape_merge", "reshape_split", "transpose", "permute", "sum_other_dims", "softmax_other",
        "unsqueeze", "expand", "cat_other_dim", "flatten_rest"])
def test_shape_ops_remap_the_sharded_dim(fn, expected):
    out = check_op(fn, [global_array((4, 5, 3), 18)], [Shard(0)])
    assert out.placement == expected


# ---- Partial: from reductions over the sharded dim, reduced only when a value is needed ------------


def test_partial_stays_partial_through_linear_ops(monkeypatch):
    x = dist.shard(minigt.tensor(global_array((6, 3), 19)), 0)
    w = minigt.tensor(global_array((3, 2), 20))
    reduces = count_calls(monkeypatch, collectives, "all_reduce")
    s = x.sum(0)
    linear = [s * 2, s / 3, s + s, s - s * 0.5, -s, s.reshape(3, 1), s[1:], s.unsqueeze(0) @ w,
              x.mean(0), s.expand(2, 3)]
    assert all(t.placement == Partial() for t in linear)
    assert reduces == []  # nothing has needed a value yet
    np.testing.assert_allclose((s * 2).numpy(), 2 * global_array((6, 3), 19).sum(0), **TOL)
    assert len(reduces) == 1
    assert (s + minigt.ones(3)).placement == Replicate()  # P + R needs the total: all-reduced


@pytest.mark.parametrize("fn, placement", [
    (lambda x: x.sum(0), Partial()), (lambda x: x.mean(0), Partial()), (lambda x: x.sum(), Partial()),
    (lambda x: x.mean((0, 1)), Partial()), (lambda x: x.sum(0, keepdim=True), Partial()),
    (lambda x: x.sum(1), Shard(0)), (lambda x: x.amax(1), Shard(0)), (lambda x: x.var(1), Shard(0)),
    (lambda x: x.logsumexp(1), Shard(0)), (lambda x: x.mean(1, keepdim=True), Shard(0)),
], ids=["sum0", "mean0", "sum_all", "mean_all", "sum0_keepdim", "sum1", "amax1", "var1", "lse1",
        "mean1_keepdim"])
def test_reductions(fn, placement):
    out = check_op(fn, [global_array((5, 4), 21)], [Shard(0)])
    assert out.placement == placement


@pytest.mark.parametrize("fn", [lambda t: t.mean(0), lambda t: t.mean(), lambda t: t.sum(0)],
                         ids=["mean0", "mean_all", "sum0"])
@pytest.mark.filterwarnings("ignore:.*(empty slice|invalid value|divide by zero):RuntimeWarning")
def test_reducing_the_sharded_dim_of_an_empty_tensor(fn):
    out = check_op(fn, [np.zeros((4, 0))], [Shard(0)])
    assert out.placement == Partial()


@pytest.mark.parametrize("requires_grad", [False, True])
def test_cast_of_a_partial_to_integers_sums_first(requires_grad):
    x = minigt.tensor(np.full(4, 0.75), requires_grad=requires_grad)
    d = dist.shard(x, 0).sum()  # parts 0.75 * rows: not integers
    assert d.to(np.int64).item() == 3


def test_an_integer_cast_keeps_the_sharding_and_drops_the_gradient():
    x = minigt.tensor(global_array((4, 2), 29), requires_grad=True)
    as_int = dist.shard(x, 0).long()
    assert as_int.placement == Shard(0) and as_int.shape == (4, 2) and not as_int.requires_grad


# ---- where no rule runs the placements as they are: redistributed, the same numbers -----------------

def placed(x, placement):
    """x redistributed when it is a DTensor (the one-process reference stays plain)."""
    return x.redistribute(placement) if isinstance(x, dist.DTensor) else x


NO_NATIVE_RULE = [
    ("Softmax", lambda x: x.softmax(0)), ("LogSoftmax", lambda x: x.log_softmax(0)),
    ("Var", lambda x: x.var()), ("LogSumExp", lambda x: x.logsumexp(0)),
    ("Reshape", lambda x: placed(x, Shard(1)).reshape(12, 2)),
    ("Cat", lambda x: minigt.cat([x, x], 0)),
    ("Cat", lambda x: minigt.cat([x, placed(x, Shard(1))], 2)),
    ("BroadcastTo", lambda x: x[:1].expand(5, 3, 2)), ("GetItem", lambda x: x[::-1]),
    ("GetItem", lambda x: x[minigt.tensor([True, False, True, False])]),
    ("GetItem", lambda x: x[minigt.tensor([0, 2]), minigt.tensor([1, 0])]),
    ("Add", lambda x: x + placed(x, Shard(1))),
    ("Add", lambda x: x[:1] + x),
    ("Mul", lambda x: x[:1] * placed(x, Replicate())),  # would broadcast the sharded dim
    ("MatMul", lambda x: x[:1] @ placed(x, Replicate()).transpose(1, 2)),
    ("Add", lambda x: x[1:] + x[:-1]),  # parts cut differently
]


@pytest.mark.parametrize("op, fn", NO_NATIVE_RULE, ids=[f"{i}-{op}" for i, (op, _) in enumerate(NO_NATIVE_RULE)])
def test_an_op_with_no_native_rule_redistributes_and_gives_the_one_process_answer(op, fn):
    before = dispatch.redistributions[op]
    check_op(fn, [global_array((4, 3, 2), 22)], [Shard(0)])
    assert dispatch.redistributions[op] > before


def test_parts_cut_differently_are_cut_alike_before_they_combine():
    by_rank = dist.from_local(minigt.arange(RANK + 1.0).reshape(-1, 1), Shard(0))  # sizes 1, 2, 3, ...
    standard = dist.shard(minigt.ones(by_rank.shape[0], 1), 0)
    total = by_rank + standard
    expected = np.concatenate([np.arange(r + 1.0) for r in range(SIZE)])[:, None] + 1
    np.testing.assert_array_equal(total.numpy(), expected)
    assert total.placement == Shard(0) and total.sizes == by_rank.sizes  # the first input's cut


def test_redistribute_to_the_same_shard_dim_recuts_uneven_parts():
    x = global_array((5, 2), 30)
    shifted = dist.shard(minigt.tensor(x), 0)[1:]  # sizes no longer the standard split of 4 rows
    recut = shifted.redistribute(Shard(0))
    assert recut.sizes == tuple(placement.shard_sizes(4, SIZE))
    np.testing.assert_array_equal(recut.numpy(), x[1:])
