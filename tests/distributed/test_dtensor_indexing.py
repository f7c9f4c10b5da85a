"""Indexing DTensors: slices of the sharded dim keep each rank's own part, an int or an integer
array there gives a Partial result, index tensors that are themselves split are refused (or, for
a whole table, looked up by each rank), and writes are right or refused alike on every rank --
checked against the same program on plain tensors (`check_op`)."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import SIZE, TOL, check_op, gather_objects, global_array, global_value, make_input

import minigt
import minigt.distributed as dist
from minigt.distributed import placement
from minigt.distributed.placement import Partial, Replicate, Shard


@pytest.mark.parametrize("n", [2, 7, 10])
@pytest.mark.parametrize("index", [np.s_[1:], np.s_[::2], np.s_[1:8:3], np.s_[5:], np.s_[:1],
                                   np.s_[3:2], np.s_[-4::3]], ids=str)
def test_slicing_the_sharded_dim_keeps_each_ranks_own_part(n, index):
    x = global_array((3, n), 15)
    out = check_op(lambda t: t[..., index], [x], [Shard(1)])
    kept = np.arange(n)[index]  # global positions the slice keeps; each rank keeps its own
    ranges = [placement.shard_range(placement.shard_sizes(n, SIZE), r) for r in range(SIZE)]
    assert out.placement == Shard(1)
    assert out.sizes == tuple(int(((lo <= kept) & (kept < hi)).sum()) for lo, hi in ranges)


@pytest.mark.parametrize("index, position", [
    (np.s_[None, 1:], 1), (np.s_[::2, 0], 0), (np.s_[..., None, 1:3], 0), (np.s_[1:, None], 0),
    (np.s_[None, None, 2:], 2), (np.s_[-3:, -1], 0),
], ids=str)
def test_slicing_remaps_the_sharded_dim(index, position):
    out = check_op(lambda t: t[index], [global_array((5, 4), 16)], [Shard(0)])
    assert out.placement == Shard(position)


@pytest.mark.parametrize("i", [0, 1, -1])
def test_an_int_on_the_sharded_dim_gives_partial(i):
    out = check_op(lambda t: t[:, i], [global_array((4, 2, 3), 17)], [Shard(1)])
    assert out.placement == Partial()


@pytest.mark.parametrize("index_placement", [Shard(0), Partial()], ids=["S0", "P"])
@pytest.mark.parametrize("x_placement", [None, Replicate(), Shard(0)], ids=["plain", "R", "S0"])
def test_an_index_tensor_split_across_ranks_indexes_by_its_whole_value(index_placement, x_placement):
    """Each rank holds part of such an index: it is used whole (gathered or summed), never as
    the part."""
    x = global_array((5, 5), 24)
    rows = np.array([1, 0, 0, 1])
    if isinstance(index_placement, Partial):
        index, whole = dist.from_local(minigt.tensor(rows), Partial()), rows * SIZE
    else:
        index, whole = dist.shard(minigt.tensor(rows), 0), rows
    d = make_input(x, x_placement, requires_grad=False)
    out = d[index] if x_placement is None else d[:, index]
    np.testing.assert_array_equal(global_value(out), x[whole] if x_placement is None else x[:, whole])


def test_a_lookup_by_sharded_indices_keeps_rows_sharded_and_sums_the_table_gradient():
    table = minigt.tensor(global_array((6, 3), 26), requires_grad=True)
    rows = np.array([[2, 0], [5, 5], [1, 2], [4, 0], [3, 3]])
    (table[minigt.tensor(rows)].tanh() * 2).sum().backward()
    expected_grad, table.grad = table.grad.numpy().copy(), None
    out = table[dist.shard(minigt.tensor(rows), 0)]
    assert out.placement == Shard(0) and out.shape == (5, 2, 3)
    np.testing.assert_allclose(out.numpy(), global_array((6, 3), 26)[rows], **TOL)
    (out.tanh() * 2).sum().backward()
    np.testing.assert_allclose(table.grad.numpy(), expected_grad, **TOL)


ARRAY_INDEXES = {  # an integer array along the sharded dim (repeats and negatives included)
    "rows": (Shard(0), lambda t: t[minigt.tensor([[4, 0, -1], [2, 2, 1]])]),
    "columns": (Shard(1), lambda t: t[:, minigt.tensor([2, 0, 2])]),
    "moved_front": (Shard(2), lambda t: t[0, :, minigt.tensor([1, 1, 0])]),  # NumPy moves it
    "after_none": (Shard(0), lambda t: t[None, minigt.tensor([3, 0]), 1:]),
}


@pytest.mark.parametrize("name", list(ARRAY_INDEXES))
def test_an_index_array_along_the_sharded_dim_gives_partial(name, device):
    """Each rank picks the entries it owns and zeros the rest (a vocabulary-parallel lookup)."""
    placement, fn = ARRAY_INDEXES[name]
    shape = (5, 3, 2) if name != "moved_front" else (2, 3, 2)
    out = check_op(fn, [global_array(shape, 27)], [placement], device=device)
    assert out.placement == Partial()


def test_an_index_array_out_of_range_along_the_sharded_dim():
    x = dist.shard(minigt.tensor(global_array((5, 3), 28)), 0)
    with pytest.raises(IndexError, match="out of range for dim 0 of size 5"):
        x[minigt.tensor([0, 5])]


def test_a_replicated_index_tensor_works():
    index = dist.replicate(minigt.tensor(np.array([2, 0, 1, 1])))
    check_op(lambda t: t[index], [global_array((5, 3), 25)], [None])
    out = check_op(lambda t: t[:, index], [global_array((5, 3), 25)], [Shard(0)])
    assert out.placement == Shard(0)


@pytest.mark.parametrize("placement, index", [(Shard(0), 1), (Shard(0), (slice(None), 0)),
                                              (Shard(1), (slice(1, 3), 1)), (Partial(), 1)],
                         ids=["S0-row", "S0-column", "S1-block", "P"])
def test_writing_into_a_sharded_dtensor_writes_the_global_places(placement, index):
    x = global_array((4, 2), 23)
    d = make_input(x, placement, requires_grad=False)
    if isinstance(placement, Partial):  # a write into one of the parts that sum up means nothing
        with pytest.raises(dist.ShardingError, match="Partial"):
            d[index] = 7.0
        return
    d[index] = 7.0
    expected = x.copy()
    expected[index] = 7.0
    np.testing.assert_allclose(global_value(d), expected, **TOL)
    assert d.sizes == dist.shard(minigt.tensor(x), placement.dim).sizes  # the same cut
