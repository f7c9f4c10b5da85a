"""Each collective against NumPy on every rank's data, at whatever world size mpirun gives.

Every rank can rebuild every rank's input (seeded by rank), so the expected result is computed
locally with NumPy, with no MPI involved. Parts are uneven and may be empty.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

from minigt.backends import parse_device, to_device
from minigt.distributed import checks, collectives, placement, trace, transports, world

RANK, SIZE = world.rank(), world.world_size()
DTYPES = [np.float32, np.float64, np.int64, np.bool_]
DTYPE_IDS = ["f32", "f64", "i64", "bool"]


def data(rank: int, shape, dtype, seed: int = 0) -> np.ndarray:
    """Rank `rank`'s input: the same on whichever rank builds it."""
    rng = np.random.default_rng([seed, rank])
    if dtype == np.bool_:
        return rng.random(shape) < 0.5
    if np.issubdtype(dtype, np.integer):
        return rng.integers(-50, 50, shape).astype(dtype)
    return rng.standard_normal(shape).astype(dtype)


def on(device: str, array: np.ndarray, contiguous: bool = True):
    """`array` on `device`, laid out in Fortran order when not `contiguous`."""
    return to_device(array if contiguous else np.asfortranarray(array), parse_device(device))


def assert_matches(got, expected: np.ndarray) -> None:
    got = to_device(got, "cpu")
    assert got.dtype == expected.dtype and got.shape == expected.shape
    if expected.dtype.kind == "f":
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    else:
        np.testing.assert_array_equal(got, expected)


def lengths(n_ranks: int) -> list[int]:
    """Uneven part lengths, some empty: 2, 0, 3, 1, ..."""
    return [(2, 0, 3, 1)[r % 4] for r in range(n_ranks)]


# ---- world and shard helpers ---------------------------------------------------------------------


def test_world_agrees_with_mpi():
    assert 0 <= RANK < SIZE and 0 <= world.local_rank() < world.local_size() <= SIZE
    if world.launcher_rank_size() is None:
        assert world.comm() is None and SIZE == 1
    else:
        from mpi4py import MPI

        assert (RANK, SIZE) == (MPI.COMM_WORLD.Get_rank(), MPI.COMM_WORLD.Get_size())
        assert world.comm() is not MPI.COMM_WORLD  # a private copy


@pytest.mark.parametrize("n", [0, 1, 2, 5, 10])
def test_shard_sizes_and_ranges_tile_the_rows(n):
    sizes = placement.shard_sizes(n, SIZE)
    assert sum(sizes) == n and max(sizes) - min(sizes) <= 1 and list(sizes) == sorted(sizes, reverse=True)
    ranges = [placement.shard_range(placement.shard_sizes(n, SIZE), r) for r in range(SIZE)]
    assert [stop - start for start, stop in ranges] == list(sizes)
    assert [start for start, _ in ranges] == [0] + [stop for _, stop in ranges[:-1]]


def test_paths_are_decided_alike_on_every_rank():
    assert transports.path_for_backend("numpy") == "mpi"
    assert transports.cuda_aware_mpi() in (True, False)  # the detection runs without error
    paths = [transports.path_for_backend("cupy")] * SIZE
    if SIZE > 1:
        paths = world.comm().allgather(paths[0])
    assert len(set(paths)) == 1


def test_exchange_sizes():
    assert collectives.exchange_sizes(RANK * 10) == [r * 10 for r in range(SIZE)]


# ---- all_reduce ----------------------------------------------------------------------------------

REFERENCE_REDUCE = {"sum": np.sum, "mean": np.mean, "max": np.max, "min": np.min}


@pytest.mark.parametrize("op", collectives.REDUCE_OPS)
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("contiguous", [True, False], ids=["C", "F"])
def test_all_reduce(device, op, dtype, contiguous):
    if op == "mean" and dtype in (np.int64, np.bool_):
        pytest.skip("mean needs floats (see test_all_reduce_rejects)")
    parts = np.stack([data(r, (3, 4), dtype) for r in range(SIZE)])
    expected = np.any(parts, axis=0) if (op, dtype) == ("sum", np.bool_) else \
        REFERENCE_REDUCE[op](parts, axis=0).astype(dtype)
    assert_matches(collectives.all_reduce(on(device, parts[RANK], contiguous), op), expected)


@pytest.mark.parametrize("shape", [(), (0, 3), (1 << 18,)], ids=["0d", "empty", "256k"])
def test_all_reduce_shapes(device, shape):
    parts = np.stack([data(r, shape, np.float32) for r in range(SIZE)])
    assert_matches(collectives.all_reduce(on(device, parts[RANK]), "sum"), parts.sum(axis=0))


def test_all_reduce_rejects():
    with pytest.raises(TypeError, match="mean"):
        collectives.all_reduce(np.arange(3), "mean")
    with pytest.raises(ValueError, match="sum, mean, max, min"):
        collectives.all_reduce(np.ones(3), "prod")


# ---- all_gather ----------------------------------------------------------------------------------


@pytest.mark.parametrize("dim", [0, 1, 2, -1])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
@pytest.mark.parametrize("given", [False, True], ids=["exchanged", "given"])
def test_all_gather_uneven(device, dim, dtype, given):
    def shape(r):
        full = [4, 3, 2]
        full[dim] = lengths(SIZE)[r]
        return tuple(full)

    parts = [data(r, shape(r), dtype) for r in range(SIZE)]
    sizes = lengths(SIZE) if given else None
    got = collectives.all_gather(on(device, parts[RANK], contiguous=given), dim, sizes)
    assert_matches(got, np.concatenate(parts, axis=dim))


def test_all_gather_two_rows_over_every_rank(device):
    """With more ranks than rows, the last ranks hold empty parts."""
    sizes = placement.shard_sizes(2, SIZE)
    parts = [data(r, (sizes[r], 5), np.float64) for r in range(SIZE)]
    assert_matches(collectives.all_gather(on(device, parts[RANK]), 0), np.concatenate(parts))


def test_all_gather_rejects_mismatched_shapes():
    if SIZE == 1:
        pytest.skip("needs two ranks to disagree")
    # raised on every rank alike: by the signature check, or (checks off) by the shapes' exchange
    error, message = ((checks.CollectiveMismatch, r"\(\*, 1\) at .*\n.*\(\*, 2\) at")
                      if checks.ENABLED else (ValueError, "differ elsewhere"))
    with pytest.raises(error, match=message):
        collectives.all_gather(np.zeros((2, RANK + 1)), 0)
    with pytest.raises(ValueError, match="rank"):
        collectives.all_gather(np.zeros((2, 3)), 0, sizes=[1] * SIZE)


# ---- reduce_scatter ------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 7])
@pytest.mark.parametrize("dim", [0, 1, -1])
@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_reduce_scatter(device, n, dim, dtype):
    shape = [3, 4, 2]
    shape[dim] = n
    parts = np.stack([data(r, tuple(shape), dtype) for r in range(SIZE)])
    total = np.any(parts, axis=0) if dtype == np.bool_ else parts.sum(axis=0).astype(dtype)
    start, stop = placement.shard_range(placement.shard_sizes(n, SIZE), RANK)
    got = collectives.reduce_scatter(on(device, parts[RANK], contiguous=n == 7), dim)
    assert_matches(got, np.take(total, np.arange(start, stop), axis=dim))


@pytest.mark.parametrize("op", ["mean", "max", "min"])
def test_reduce_scatter_ops_and_given_sizes(device, op):
    sizes = lengths(SIZE)
    parts = np.stack([data(r, (sum(sizes), 3), np.float64) for r in range(SIZE)])
    start = sum(sizes[:RANK])
    expected = REFERENCE_REDUCE[op](parts, axis=0)[start:start + sizes[RANK]]
    assert_matches(collectives.reduce_scatter(on(device, parts[RANK]), 0, sizes, op), expected)


def test_reduce_scatter_rejects_sizes_that_do_not_add_up():
    with pytest.raises(ValueError, match="add up"):
        collectives.reduce_scatter(np.ones((5, 2)), 0, sizes=[1] * SIZE)
    with pytest.raises(ValueError, match="each of the"):
        collectives.reduce_scatter(np.ones((5, 2)), 0, sizes=[5] + [0] * SIZE)


# ---- broadcast, barrier --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=DTYPE_IDS)
def test_broadcast_from_every_root(device, dtype):
    for root in range(SIZE):
        mine = data(RANK, (3, 2), dtype, seed=root)
        got = collectives.broadcast(on(device, mine, contiguous=root % 2 == 0), root)
        assert_matches(got, data(root, (3, 2), dtype, seed=root))


def test_broadcast_rejects_a_root_outside_the_world():
    with pytest.raises(ValueError, match="root"):
        collectives.broadcast(np.ones(2), SIZE)


def test_barrier():
    collectives.barrier()


def test_results_are_new_arrays():
    x = np.ones((SIZE, 2))
    for out in (collectives.all_reduce(x), collectives.all_gather(x, 0),
                collectives.reduce_scatter(x, 0), collectives.broadcast(x)):
        assert not np.shares_memory(out, x)


# ---- staging through host memory (the GPU fallback), with a stand-in for CuPy arrays -----------


class DeviceLike:
    """Like a CuPy array to HostCopyTransport: data only through get() and set()."""

    def __init__(self, array: np.ndarray):
        self.array, self.shape, self.dtype = array, array.shape, array.dtype

    def get(self) -> np.ndarray:
        return self.array.copy()

    def set(self, host: np.ndarray) -> None:
        self.array[...] = host


def test_host_copy_transport():
    if world.comm() is None:
        pytest.skip("needs an MPI communicator (run under mpirun)")
    host = transports.HostCopyTransport(transports.MPITransport(world.comm(), on_gpu=False))
    counts, n = lengths(SIZE), sum(lengths(SIZE))
    full = np.stack([data(r, (n,), np.float64) for r in range(SIZE)])
    start = sum(counts[:RANK])

    out = DeviceLike(np.empty(n))
    host.allreduce(DeviceLike(full[RANK]), out, "max")
    assert_matches(out.array, full.max(axis=0))
    out = DeviceLike(np.empty(n))
    host.allgatherv(DeviceLike(full[RANK, start:start + counts[RANK]]), out, counts)
    gathered = np.concatenate([full[r, sum(counts[:r]):][:counts[r]] for r in range(SIZE)])
    assert_matches(out.array, gathered)
    out = DeviceLike(full[RANK].copy())  # in place: this rank's part is in its slot already
    host.allgatherv(None, out, counts)
    assert_matches(out.array, gathered)
    out = DeviceLike(np.empty(counts[RANK]))
    host.reduce_scatter(DeviceLike(full[RANK]), out, counts, "sum")
    assert_matches(out.array, full.sum(axis=0)[start:start + counts[RANK]])
    buf = DeviceLike(full[RANK].copy())
    host.bcast(buf, SIZE - 1)
    assert_matches(buf.array, full[SIZE - 1])


# ---- trace ---------------------------------------------------------------------------------------


def test_trace_gathers_every_rank_on_rank_0(tmp_path, monkeypatch):
    monkeypatch.setattr(trace, "_ENABLED", True)
    monkeypatch.setattr(trace, "_events", [])
    collectives.all_reduce(np.ones(4, np.float32))
    with trace.span("my_op", "op", note=RANK):
        pass
    path = tmp_path / "trace.json"
    trace.write(str(path))
    if RANK != 0:
        assert not path.exists()
        return
    events = json.loads(path.read_text())["traceEvents"]
    spans = [e for e in events if e["ph"] == "X"]
    assert {e["pid"] for e in spans} == set(range(SIZE))
    assert {e["args"]["note"] for e in spans if e["name"] == "my_op"} == set(range(SIZE))
    if SIZE > 1:  # one rank alone never communicates, so records no collective
        reduces = [e for e in spans if e["name"] == "all_reduce"]
        assert len(reduces) == SIZE and all(e["args"]["bytes"] == 16 for e in reduces)
