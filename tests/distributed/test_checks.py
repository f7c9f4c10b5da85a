"""Every collective is checked: ranks that are not making the same call all raise
CollectiveMismatch, naming each rank's call and line, and no data moves.

Each test makes the ranks disagree on purpose, catches the error on every rank, and goes on: the
signature exchange leaves the communicators in step. (Ranks that leave the program are tested in
tests/examples/test_job_endings.py, which starts jobs of its own.)
"""
from __future__ import annotations

import re

import numpy as np
import pytest
from helpers import RANK, SIZE, count_calls, global_array

import minigt
import minigt.distributed as dist
from minigt import nn
from minigt.distributed import CollectiveMismatch, checks, collectives, gradsync

pytestmark = [
    pytest.mark.skipif(SIZE == 1, reason="needs ranks to disagree"),
    pytest.mark.skipif(not checks.ENABLED, reason="MINIGT_CHECK_COLLECTIVES=0"),
]


def rows_of(error) -> dict[int, str]:
    """The error's row for each rank: {rank: 'all_reduce (sum) of ... at file:line ...'}."""
    return {int(r): row for r, row in re.findall(r"^  rank (\d+): (.*)$", str(error), re.M)}


def test_shapes_that_differ_stop_every_rank_before_data_moves():
    with pytest.raises(CollectiveMismatch) as caught:
        collectives.all_reduce(np.ones((2, 3) if RANK == 0 else (3, 2)))
    rows = rows_of(caught.value)
    assert sorted(rows) == list(range(SIZE))
    assert rows[0].startswith("all_reduce (sum) of float64 (2, 3) at ")
    assert rows[1].startswith("all_reduce (sum) of float64 (3, 2) at ")
    assert "test_checks.py:" in rows[0] and "np.ones((2, 3) if RANK == 0" in rows[0]
    # the communicators are still in step: the next collective adds up
    assert collectives.all_reduce(np.ones(2)).tolist() == [SIZE, SIZE]


@pytest.mark.parametrize("call, other, expected", [
    (lambda a: collectives.all_reduce(a.astype(np.float32)), lambda a: collectives.all_reduce(a),
     ("all_reduce (sum) of float32 (3,)", "all_reduce (sum) of float64 (3,)")),
    (lambda a: collectives.all_reduce(a, "max"), lambda a: collectives.all_reduce(a),
     ("all_reduce (max) of float64 (3,)", "all_reduce (sum) of float64 (3,)")),
    (lambda a: collectives.broadcast(a, root=0), lambda a: collectives.all_reduce(a),
     ("broadcast (root 0) of float64 (3,)", "all_reduce (sum) of float64 (3,)")),
    (lambda a: collectives.broadcast(a, root=0), lambda a: collectives.broadcast(a, root=1),
     ("broadcast (root 0) of float64 (3,)", "broadcast (root 1) of float64 (3,)")),
    (lambda a: collectives.all_gather(a[None], 1), lambda a: collectives.all_gather(a[None], 0),
     ("all_gather (dim 1) of float64 (1, *)", "all_gather (dim 0) of float64 (*, 3)")),
    (lambda a: collectives.barrier(), lambda a: collectives.all_reduce(a),
     ("barrier at", "all_reduce (sum) of float64 (3,)")),
], ids=["dtype", "op", "kind", "root", "dim", "barrier"])
def test_each_difference_is_named(call, other, expected):
    with pytest.raises(CollectiveMismatch) as caught:
        (call if RANK == 0 else other)(np.arange(3.0))
    rows = rows_of(caught.value)
    assert rows[0].startswith(expected[0]) and rows[SIZE - 1].startswith(expected[1])


def test_the_same_call_from_two_lines_differs():
    """Two `.item()` calls of the same shape: only the line tells them apart."""
    loss = dist.shard(minigt.tensor(global_array((6,), 1)), 0).sum()
    with pytest.raises(CollectiveMismatch) as caught:
        if RANK == 0:
            loss.item()
        else:
            loss.item()
    rows = rows_of(caught.value)
    assert rows[0].split(" at ")[0] == rows[1].split(" at ")[0]  # same call, same shape
    line = [int(re.search(r"test_checks\.py:(\d+)", rows[r]).group(1)) for r in (0, 1)]
    assert line[1] == line[0] + 2


def test_logging_a_loss_on_rank_0_alone_is_a_clear_error():
    """The PyTorch habit `if rank == 0: print(loss.item())`: rank 0's read would meet the other
    ranks' next collective (here the accuracy count) and add a loss to a count."""
    x = dist.shard(minigt.tensor(global_array((8, 3), 2)), 0)
    loss, hits = (x * x).mean(), (x > 0).sum()
    hint = r"Reading a DTensor's value is a collective too: \.item\(\),\s+\.numpy\(\)"
    with pytest.raises(CollectiveMismatch, match=hint) as caught:
        if RANK == 0:
            print(loss.item())
        hits.item()
    rows = rows_of(caught.value)
    assert "of float64 () at" in rows[0] and "`print(loss.item())`" in rows[0]
    assert "of int64 () at" in rows[1] and "`hits.item()`" in rows[1]
    assert "dist.local(t)" in str(caught.value)


def test_reading_a_replicated_value_is_a_collective_too():
    r = dist.replicate(minigt.tensor(2.5))
    with pytest.raises(CollectiveMismatch) as caught:
        r.item() if RANK == 0 else r.numpy()
    rows = rows_of(caught.value)
    assert rows[0].startswith("item() of float32 ()")
    assert rows[1].startswith("numpy() of float32 ()")
    assert r.item() == 2.5


def test_local_reads_this_ranks_part_without_communication(monkeypatch):
    x = minigt.tensor(global_array((2 * SIZE, 3), 3))
    xs = dist.shard(x, 0)
    exchanges = count_calls(monkeypatch, checks, "start")
    part = dist.local(xs)
    assert type(part) is minigt.Tensor and part.shape == (2, 3)
    np.testing.assert_array_equal(part.numpy(), x.numpy()[2 * RANK:2 * RANK + 2])
    assert dist.local(x) is x
    assert exchanges == []


def test_bool_of_a_one_element_dtensor_reads_the_global_size():
    """One row over several ranks: most ranks' parts are empty, yet every rank gets the value."""
    flag = dist.shard(minigt.tensor([2.0]), 0)
    assert bool(flag) and float(flag) == 2.0
    with pytest.raises(RuntimeError, match=r"shape \(2,\) is ambiguous"):
        bool(dist.shard(minigt.tensor([1.0, 0.0]), 0))


def test_sharding_different_shapes_is_a_mismatch():
    with pytest.raises(CollectiveMismatch) as caught:
        dist.shard(minigt.zeros(6 if RANK == 0 else 8, 2), 0)
    rows = rows_of(caught.value)
    assert rows[0].startswith("shard (dim 0) of float32 (6, 2)")
    assert rows[1].startswith("shard (dim 0) of float32 (8, 2)")


def test_init_parallel_with_different_sizes_is_a_mismatch():
    with pytest.raises(CollectiveMismatch, match="init_parallel \\(tensor_parallel=1\\)"):
        dist.init_parallel(1 if RANK == 0 else SIZE)
    assert dist.tensor_group().size == 1  # nothing was split


# ---- gradients of different parameters ---------------------------------------------------------


def two_layers_and_data(seed: int = 4):
    minigt.manual_seed(seed)
    layers = [nn.Linear(3, 3), nn.Linear(3, 3)]  # the same shapes: only their values differ
    x = dist.shard(minigt.tensor(global_array((2 * SIZE, 3), seed).astype(np.float32)), 0)
    return layers, x


@pytest.fixture
def clean_gradsync():
    """Forget what a backward stopped by a mismatch left half done (a program would end there)."""
    buckets = list(gradsync._buckets)
    yield
    gradsync._buckets[:] = buckets
    gradsync._unplaced.clear()
    for bucket in buckets:  # none is left half filled or in flight
        bucket.filled.clear()
        bucket.request = None


def test_ranks_using_different_layers_of_the_same_shape_fail(clean_gradsync):
    layers, x = two_layers_and_data()
    mine = layers[RANK % 2]  # rank 0 the first layer, rank 1 the second
    with pytest.raises(CollectiveMismatch, match="gradients of 2 parameters") as caught:
        mine(x).sum().backward()
    rows = rows_of(caught.value)
    assert rows[0].split(" at ")[0] != rows[1].split(" at ")[0]  # the values' hashes differ


def test_ranks_that_stop_using_the_same_layers_fail(clean_gradsync):
    """Both layers laid out in one bucket by a first backward that used both; then each rank
    reaches only one of them, so each would sum its share into the other's slot."""
    layers, x = two_layers_and_data()
    layers[1](layers[0](x)).sum().backward()
    with pytest.raises(CollectiveMismatch, match=r"gradients of 4 parameters \(2 reached"):
        layers[RANK % 2](x).sum().backward()


def test_replicas_that_start_apart_fail(clean_gradsync):
    layers, x = two_layers_and_data(seed=5 + RANK)  # a seed per rank: copies that differ
    with pytest.raises(CollectiveMismatch, match="gradients of 2 parameters"):
        layers[0](x).sum().backward()


def test_the_same_layers_pass_and_sum(clean_gradsync):
    layers, x = two_layers_and_data()
    layers[0](x).sum().backward()
    expected = x.numpy().sum(0)
    np.testing.assert_allclose(layers[0].weight.grad.numpy(), np.tile(expected, (3, 1)),
                               rtol=1e-5, atol=1e-6)


def test_the_switch_turns_the_exchange_off(monkeypatch):
    exchanges = count_calls(monkeypatch, checks, "start")
    collectives.all_reduce(np.ones(2))
    assert len(exchanges) == 1
    monkeypatch.setattr(checks, "ENABLED", False)
    collectives.all_reduce(np.ones(2))
    assert len(exchanges) == 1
