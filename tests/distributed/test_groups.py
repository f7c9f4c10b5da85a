"""Tensor and data groups from init_parallel, and collectives within them, at any world size.

For every tensor_parallel tp dividing the world size: tensor groups are consecutive ranks
[k*tp, (k+1)*tp), data groups the ranks at the same place in each. Inputs are seeded by world rank,
so a collective run over the wrong ranks gives a wrong answer, not just a different order.
"""
from __future__ import annotations

import re

import numpy as np
import pytest
from test_collectives import REFERENCE_REDUCE, assert_matches, data, lengths, on

from minigt.distributed import collectives, placement, trace, transports, world
from minigt.distributed.world import Group

RANK, SIZE = world.rank(), world.world_size()
TPS = [tp for tp in range(1, SIZE + 1) if SIZE % tp == 0]


def layout(tp: int) -> dict[str, list[int]]:
    """World ranks of this rank's tensor and data groups under tensor_parallel=tp."""
    k = RANK // tp
    return {"tensor": list(range(k * tp, (k + 1) * tp)), "data": list(range(RANK % tp, SIZE, tp))}


def groups() -> dict[str, Group]:
    return {"tensor": world.tensor_group(), "data": world.data_group()}


def members(group: Group) -> list[int]:
    """World ranks of the group's members in group rank order, as the group itself reports them."""
    return [RANK] if group.comm is None else group.comm.allgather(RANK)


def made_comms() -> list:
    """The communicators init_parallel split off (not the world's, not None)."""
    return [g.comm for g in groups().values() if g.comm is not None and g.comm is not world.comm()]


@pytest.fixture(autouse=True)
def default_groups():
    """Each test ends with the default groups, which the other tests in this folder expect."""
    yield
    world.init_parallel(1)


@pytest.fixture(params=TPS, ids=lambda tp: f"tp{tp}")
def tp(request) -> int:
    world.init_parallel(request.param)
    return request.param


@pytest.fixture(params=["tensor", "data"])
def group(request, tp) -> tuple[Group, list[int]]:
    """One of this rank's groups under init_parallel(tp), and the world ranks it should hold."""
    return groups()[request.param], layout(tp)[request.param]


# ---- the groups ----------------------------------------------------------------------------------


def test_default_groups_are_tensor_parallel_1():
    for tp in (1, SIZE, 1):  # the defaults, and init_parallel(1) coming back to them
        world.init_parallel(tp)
        if tp == 1:
            assert world.tensor_group() == Group(None, 0, 1)
            assert world.data_group() == world.world_group() == Group(world.comm(), RANK, SIZE)


def test_layout(tp):
    for name, group in groups().items():
        expected = layout(tp)[name]
        assert members(group) == expected, name
        assert (group.rank, group.size) == (expected.index(RANK), len(expected)), name
    assert world.tensor_group().size * world.data_group().size == SIZE


@pytest.mark.parametrize("bad", [0, -1, SIZE + 1, 1.0, *(n for n in range(2, SIZE) if SIZE % n)])
def test_tensor_parallel_must_divide_the_world(bad):
    world.init_parallel(TPS[-1])
    before = groups()
    message = f"tensor_parallel={bad!r} must be a whole number >= 1 that divides the world size " \
              f"{SIZE}"
    with pytest.raises(ValueError, match=re.escape(message)):
        world.init_parallel(bad)
    assert groups() == before  # still usable as they were


def test_init_again_is_a_no_op_and_another_tp_rebuilds():
    for tp in TPS + TPS[::-1]:
        old = made_comms()
        world.init_parallel(tp)
        assert not any(old)  # freed: mpi4py's null communicators are falsy
        before = groups()
        world.init_parallel(tp)
        assert all(groups()[name] is before[name] for name in before)
        assert {name: members(g) for name, g in groups().items()} == layout(tp)


# ---- collectives within a group, against NumPy ---------------------------------------------------


@pytest.mark.parametrize("op", ["sum", "mean", "max"])
def test_all_reduce(device, group, op):
    g, ranks = group
    parts = np.stack([data(r, (3, 4), np.float64) for r in ranks])
    got = collectives.all_reduce(on(device, parts[g.rank]), op, group=g)
    assert_matches(got, REFERENCE_REDUCE[op](parts, axis=0))


@pytest.mark.parametrize("dim", [0, -1])
def test_all_gather_uneven(device, group, dim):
    g, ranks = group
    parts = [data(r, (n, 3) if dim == 0 else (3, n), np.float32)
             for r, n in zip(ranks, lengths(g.size))]
    assert_matches(collectives.all_gather(on(device, parts[g.rank]), dim, group=g),
                   np.concatenate(parts, axis=dim))


@pytest.mark.parametrize("n", [2, 7])
def test_reduce_scatter(device, group, n):
    g, ranks = group
    parts = np.stack([data(r, (n, 3), np.int64) for r in ranks])
    start, stop = placement.shard_range(placement.shard_sizes(n, g.size), g.rank)
    assert_matches(collectives.reduce_scatter(on(device, parts[g.rank]), 0, group=g),
                   parts.sum(axis=0)[start:stop])


def test_broadcast_from_every_group_rank(device, group):
    g, ranks = group
    for root in range(g.size):
        got = collectives.broadcast(on(device, data(RANK, (3, 2), np.bool_, seed=root)), root,
                                    group=g)
        assert_matches(got, data(ranks[root], (3, 2), np.bool_, seed=root))
    with pytest.raises(ValueError, match=f"root {g.size} is not a rank of a group of {g.size}"):
        collectives.broadcast(np.ones(2), g.size, group=g)


def test_exchange_sizes_and_barrier(group):
    g, ranks = group
    assert collectives.exchange_sizes(RANK * 10, group=g) == [r * 10 for r in ranks]
    collectives.barrier(group=g)


def test_tensor_then_data_is_the_world(device, tp):
    """Reducing (gathering) over the tensor group, then over the data group, spans the world."""
    tensor, data_ = world.tensor_group(), world.data_group()
    x = on(device, data(RANK, (2, 3), np.float64))
    assert_matches(collectives.all_reduce(collectives.all_reduce(x, group=tensor), group=data_),
                   sum(data(r, (2, 3), np.float64) for r in range(SIZE)))
    assert_matches(collectives.all_gather(collectives.all_gather(x, group=tensor), group=data_),
                   np.concatenate([data(r, (2, 3), np.float64) for r in range(SIZE)]))


# ---- transports and trace ------------------------------------------------------------------------


def test_one_transport_per_group(tp):
    x = np.ones(3)
    for g in groups().values():
        if g.size == 1:
            continue  # a group of one never reaches a transport
        first = transports.select_transport(x, g)
        assert first.comm is g.comm and transports.select_transport(x, g) is first
    cached = len(transports._cache)
    for g in groups().values():
        for _ in range(3):
            collectives.all_reduce(x, group=g)
    assert len(transports._cache) == cached  # calls reuse them
    old = {id(comm) for comm in made_comms()}
    world.init_parallel(1)
    assert not old & {key[0] for key in transports._cache}  # freed groups' transports dropped


def test_trace_records_the_group_size(tp, monkeypatch):
    monkeypatch.setattr(trace, "_ENABLED", True)
    monkeypatch.setattr(trace, "_events", [])
    for g in groups().values():
        collectives.all_reduce(np.ones(2, np.float32), group=g)
    recorded = [args["group_size"] for name, *_, args in trace._events if name == "all_reduce"]
    assert recorded == [g.size for g in groups().values() if g.size > 1]  # ones alone: no MPI
