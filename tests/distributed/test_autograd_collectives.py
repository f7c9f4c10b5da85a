"""The public collectives as differentiable functions, on plain tensors that differ per rank.

Rank r holds x_r and computes out_r = collective(x_r); the objective is L = Σ_r sum(w_r · out_r),
each rank back-propagating its own term. Every rank can rebuild every rank's x_r and w_r, so the
forward value is checked against NumPy on all inputs, and each rank's x_r.grad against the
analytic dual: all_reduce <-> all_reduce, all_gather <-> reduce_scatter, broadcast <-> reduce to
the root.
"""
from __future__ import annotations

import numpy as np
import pytest
from helpers import RANK, SIZE, TOL, count_calls, uneven

import minigt
import minigt.distributed as dist
from minigt.distributed import collectives, placement


def rank_data(rank: int, shape, seed: int = 0) -> np.ndarray:
    """Rank `rank`'s input: the same on whichever rank builds it."""
    return np.random.default_rng([seed, rank]).standard_normal(shape)


def rank_weights(rank: int, shape, seed: int = 0) -> np.ndarray:
    return rank_data(rank, shape, seed + 1000)


def run_collective(fn, shapes, out_shapes, device: str, seed: int = 0):
    """(out, x.grad) on this rank for out = fn(x), x = rank_data(RANK, shapes[RANK]) on `device`
    and the objective sum(w_RANK * out)."""
    x = minigt.tensor(rank_data(RANK, shapes[RANK], seed), requires_grad=True, device=device)
    out = fn(x)
    assert type(out) is minigt.Tensor and out.device == x.device  # plain in, plain out, in place
    weights = minigt.tensor(rank_weights(RANK, out_shapes[RANK], seed), device=device)
    (out * weights).sum().backward()
    return out.numpy(), x.grad.numpy()


def with_dim(shape, dim: int, n: int) -> tuple:
    shape = list(shape)
    shape[dim] = n
    return tuple(shape)


# ---- all_reduce ----------------------------------------------------------------------------------


@pytest.mark.parametrize("op", ["sum", "mean", "max"])
@pytest.mark.parametrize("ties", [False, True], ids=["distinct", "ties"])
def test_all_reduce(op, ties, device):
    shape = (3, 4)
    xs = np.stack([rank_data(r, shape) for r in range(SIZE)])
    if ties:  # few distinct values: several ranks often share the max
        xs = np.round(xs)
    ws = np.stack([rank_weights(r, shape) for r in range(SIZE)])
    x = minigt.tensor(xs[RANK], requires_grad=True, device=device)
    out = dist.all_reduce(x, op)
    (out * minigt.tensor(ws[RANK], device=device)).sum().backward()

    reference = {"sum": xs.sum(0), "mean": xs.mean(0), "max": xs.max(0)}[op]
    np.testing.assert_allclose(out.numpy(), reference, **TOL)
    total_w = ws.sum(0)
    if op == "sum":
        expected = total_w
    elif op == "mean":
        expected = total_w / SIZE
    else:  # the max's owners share Σ_r w_r equally
        owners = xs == xs.max(0)
        expected = total_w * owners[RANK] / owners.sum(0)
    np.testing.assert_allclose(x.grad.numpy(), expected, **TOL)


def test_all_reduce_rejects_unknown_ops():
    with pytest.raises(ValueError, match="op must be"):
        dist.all_reduce(minigt.ones(2), "min")


# ---- all_gather and reduce_scatter: each the other's backward --------------------------------------


@pytest.mark.parametrize("dim", [0, 1, -1])
def test_all_gather_uneven(dim, device):
    base = (3, 4, 2)
    shapes = [with_dim(base, dim, n) for n in uneven(SIZE)]
    total = with_dim(base, dim, sum(uneven(SIZE)))
    out, grad = run_collective(lambda x: dist.all_gather(x, dim), shapes, [total] * SIZE, device)

    np.testing.assert_allclose(out, np.concatenate([rank_data(r, shapes[r]) for r in range(SIZE)], dim),
                               **TOL)
    # dx_r = my slice of Σ_r' w_r': a reduce-scatter of the weights
    total_w = sum(rank_weights(r, total) for r in range(SIZE))
    start = sum(uneven(SIZE)[:RANK])
    mine = np.take(total_w, np.arange(start, start + uneven(SIZE)[RANK]), axis=dim)
    np.testing.assert_allclose(grad, mine, **TOL)


@pytest.mark.parametrize("n", [2, 7])
@pytest.mark.parametrize("dim", [0, 1])
def test_reduce_scatter(n, dim, device):
    shape = with_dim((3, 4), dim, n)
    sizes = placement.shard_sizes(n, SIZE)
    part_shapes = [with_dim(shape, dim, s) for s in sizes]
    out, grad = run_collective(lambda x: dist.reduce_scatter(x, dim), [shape] * SIZE, part_shapes,
                               device)

    start, stop = placement.shard_range(placement.shard_sizes(n, SIZE), RANK)
    total = sum(rank_data(r, shape) for r in range(SIZE))
    np.testing.assert_allclose(out, np.take(total, np.arange(start, stop), axis=dim), **TOL)
    # dx_r = every rank's weights joined: an all-gather, the same on every rank
    joined = np.concatenate([rank_weights(r, part_shapes[r]) for r in range(SIZE)], dim)
    np.testing.assert_allclose(grad, joined, **TOL)


def test_all_gather_then_reduce_scatter_round_trip():
    """reduce_scatter(all_gather(x)) = SIZE · x for standard-size parts (2 rows: some empty),
    and so is its gradient w.r.t. x for w = 1."""
    sizes = placement.shard_sizes(2, SIZE)
    x = minigt.tensor(rank_data(RANK, (sizes[RANK], 3)), requires_grad=True)
    back = dist.reduce_scatter(dist.all_gather(x, 0), 0)
    back.sum().backward()
    np.testing.assert_allclose(back.numpy(), SIZE * x.numpy(), **TOL)
    np.testing.assert_allclose(x.grad.numpy(), np.full(x.shape, SIZE), **TOL)


def test_reduce_scatter_then_all_gather_is_all_reduce():
    shape = (5, 2)
    x = minigt.tensor(rank_data(RANK, shape), requires_grad=True)
    out = dist.all_gather(dist.reduce_scatter(x, 0), 0)
    (out * minigt.tensor(rank_weights(RANK, shape))).sum().backward()
    np.testing.assert_allclose(out.numpy(), sum(rank_data(r, shape) for r in range(SIZE)), **TOL)
    np.testing.assert_allclose(x.grad.numpy(), sum(rank_weights(r, shape) for r in range(SIZE)), **TOL)


# ---- broadcast ------------------------------------------------------------------------------------


@pytest.mark.parametrize("root", range(4))
def test_broadcast(root, device):
    if root >= SIZE:
        pytest.skip(f"no rank {root} in a world of {SIZE}")
    shape = (2, 3)
    out, grad = run_collective(lambda x: dist.broadcast(x, root), [shape] * SIZE, [shape] * SIZE,
                               device)
    np.testing.assert_allclose(out, rank_data(root, shape), **TOL)
    total_w = sum(rank_weights(r, shape) for r in range(SIZE))
    np.testing.assert_allclose(grad, total_w if RANK == root else np.zeros(shape), **TOL)


def test_broadcast_rejects_a_root_outside_the_world():
    with pytest.raises(ValueError, match="root"):
        dist.broadcast(minigt.ones(2), SIZE)


# ---- composition and the DTensor entry points ------------------------------------------------------


def test_chain_of_collectives_differentiates_end_to_end(device):
    """L = Σ_r sum(w_r · broadcast(all_reduce(x)², 0)): dx_r = 2 · all_reduce(x) · Σ_r w_r."""
    shape = (4,)
    x = minigt.tensor(rank_data(RANK, shape), requires_grad=True, device=device)
    total = dist.all_reduce(x)
    out = dist.broadcast(total * total, 0)
    (out * minigt.tensor(rank_weights(RANK, shape), device=device)).sum().backward()
    s = sum(rank_data(r, shape) for r in range(SIZE))
    np.testing.assert_allclose(out.numpy(), s * s, **TOL)
    np.testing.assert_allclose(x.grad.numpy(), 2 * s * sum(rank_weights(r, shape) for r in range(SIZE)),
                               **TOL)


def test_each_backward_communicates_once(monkeypatch):
    """The dual of one collective is one collective (all_reduce of the gradient: one call)."""
    x = minigt.tensor(rank_data(RANK, (3,)), requires_grad=True)
    out = dist.all_reduce(x)
    calls = count_calls(monkeypatch, collectives, "all_reduce")
    out.sum().backward()
    assert len(calls) == 1


def test_collectives_on_dtensors_are_redistributions():
    full = rank_data(0, (4, 3))  # the same on every rank
    partial = dist.from_local(minigt.tensor(full / SIZE), dist.Partial())
    reduced = dist.all_reduce(partial)
    assert reduced.placement == dist.Replicate()
    np.testing.assert_allclose(reduced.numpy(), full, **TOL)
    sharded = dist.shard(minigt.tensor(full), 0)
    assert dist.all_gather(sharded).placement == dist.Replicate()
    np.testing.assert_allclose(dist.all_gather(sharded).numpy(), full, **TOL)
    assert dist.reduce_scatter(partial, 1).placement == dist.Shard(1)
    with pytest.raises(ValueError, match="Partial"):
        dist.all_reduce(sharded)
    with pytest.raises(ValueError, match="Partial"):
        dist.all_reduce(partial, "max")
