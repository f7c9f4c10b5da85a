"""A program that runs in one process runs unchanged at any rank count, with the same numbers:
extreme values over the sharded dim without gathering, redistribution where no rule fits (and
where a user looks for it), and parts that are empty (batch 2 on 3 or 4 ranks)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
from helpers import SIZE, check_op, global_array, global_value

import minigt
import minigt.distributed as dist
from minigt.distributed import dispatch, trace
from minigt.distributed.placement import Replicate, Shard
from minigt.nn import functional as F

TIED = np.array([[1.0, 2.0, 2.0], [2.0, 0.0, 2.0], [2.0, 2.0, 1.0], [0.0, 1.0, 2.0], [2.0, 2.0, 0.0]])


@pytest.mark.parametrize("rows", [2, 5], ids=["empty_parts", "uneven"])
@pytest.mark.parametrize("fn", [
    lambda t: t.max(), lambda t: t.min(), lambda t: t.amax(0), lambda t: t.amin((0, 1)),
    lambda t: t.max(dim=0).values, lambda t: t.min(dim=0, keepdim=True).values,
], ids=["max", "min", "amax0", "amin01", "max_dim0", "min_dim0_keepdim"])
def test_extremes_over_the_sharded_dim_share_ties_as_one_process_does(fn, rows):
    before = sum(dispatch.redistributions.values())
    out = check_op(fn, [TIED[:rows]], [Shard(0)])  # values and gradients (ties share it)
    assert out.placement == Replicate() and sum(dispatch.redistributions.values()) == before


@pytest.mark.parametrize("rows", [2, 5], ids=["empty_parts", "uneven"])
@pytest.mark.parametrize("name", ["argmax", "argmin"])
def test_arg_extremes_over_the_sharded_dim_pick_the_lowest_global_index(name, rows):
    x = minigt.tensor(TIED[:rows])
    got = getattr(dist.shard(x, 0), name)(dim=0)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got.numpy(), getattr(np, name)(TIED[:rows], axis=0))
    indices = dist.shard(x, 0).max(dim=0).indices
    np.testing.assert_array_equal(indices.numpy(), np.argmax(TIED[:rows], axis=0))


@pytest.mark.parametrize("rows", [1, 5], ids=["empty_parts", "uneven"])
def test_any_and_all_over_the_sharded_dim(rows):
    flags = minigt.tensor(TIED[:rows] > 1.5)
    sharded = dist.shard(flags, 0)
    for got, want in [(sharded.any(), flags.any()), (sharded.all(), flags.all()),
                      (sharded.any(dim=0), flags.any(dim=0)), (sharded.all(dim=0), flags.all(dim=0))]:
        assert got.placement == Replicate() and got.dtype == np.bool_
        np.testing.assert_array_equal(got.numpy(), want.numpy())


def test_a_redistribution_is_counted_in_the_trace_and_named_once_under_debug(monkeypatch):
    monkeypatch.setattr(dispatch, "_DEBUG", True)
    monkeypatch.setattr(dispatch, "_warned", set())
    monkeypatch.setattr(trace, "_ENABLED", True)
    monkeypatch.setattr(trace, "_events", [])
    xs = dist.shard(minigt.tensor(global_array((5, 3), 40)), 0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        xs.softmax(dim=0)
        xs.softmax(dim=0)  # the same op and placements: no second warning
    moves = [name for name, category, *_ in trace._events if category == "redistribute"]
    assert len(moves) == 2 and all("Softmax" in name for name in moves)
    mine = [w for w in caught if "Softmax" in str(w.message)]
    if dist.rank() == 0:
        assert len(mine) == 1 and "Shard(0)" in str(mine[0].message)
        assert "redistributed" in str(mine[0].message) and mine[0].filename == __file__
    else:
        assert mine == []


def test_cross_entropy_with_targets_sharded_apart_from_reshaped_logits():
    logits = global_array((2, 3, 4), 41)  # batch 2, 3 positions, 4 classes
    target = np.random.default_rng(42).integers(0, 4, 6)

    def loss(x, t):
        return F.cross_entropy(x.reshape(6, 4), t)

    check_op(loss, [logits, target], [Shard(0), Shard(0)])


def test_an_embedding_of_a_batch_smaller_than_the_world():
    table = global_array((6, 3), 43)
    index = np.array([[1, 2], [5, 0]])
    check_op(lambda w, i: F.embedding(i, w), [table, index], [None, Shard(0)])


def test_a_one_element_sharded_output_can_start_backward():
    w = minigt.tensor([3.0], requires_grad=True)
    dist.shard(w * 2, 0).backward()
    np.testing.assert_array_equal(w.grad.numpy(), [2.0])


@pytest.mark.parametrize("dtype", [np.bool_, np.int32])
def test_indexing_a_sharded_integer_or_bool_tensor_keeps_its_dtype(dtype):
    x = (global_array((4, 3), 44) > 0).astype(dtype)
    sharded = dist.shard(minigt.tensor(x), 0)
    for got, want in [(sharded[1], x[1]), (sharded[minigt.tensor([3, 0, 3])], x[[3, 0, 3]]),
                      (sharded[:, 2], x[:, 2])]:
        assert got.dtype == dtype, (got.dtype, dtype)
        np.testing.assert_array_equal(global_value(got), want)
    assert SIZE >= 1


@pytest.mark.parametrize("placement", [Shard(0), Shard(1), Replicate()], ids=["S0", "S1", "R"])
def test_in_place_arithmetic_with_global_operands_keeps_the_placement(placement):
    x = global_array((5, 2), 45)
    d = dist.redistribute(minigt.tensor(x), placement)
    d.add_(minigt.ones(5, 2))                                   # a plain (whole) operand
    d.mul_(dist.shard(minigt.full((5, 2), 2.0), 0))             # a sharded one
    d.div_(4.0)
    d.sub_(minigt.ones(2), alpha=0.5)                           # broadcast
    np.testing.assert_allclose(d.numpy(), (x + 1) * 2 / 4 - 0.5)
    assert d.placement == placement
    d.copy_(np.zeros((5, 2)))
    np.testing.assert_array_equal(d.numpy(), 0.0)
