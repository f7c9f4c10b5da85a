"""Data parallelism: replicated parameters and sharded data give the single-process gradients and
steps, with one bucketed all-reduce; fused layers on rows sharded over every rank."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import TOL, check_op, count_calls, global_array, mlp_loss, mlp_params

import minigt
import minigt.distributed as dist
from minigt.distributed import collectives, gradsync
from minigt.distributed.placement import Partial, Replicate, Shard


@pytest.mark.parametrize("rows", [2, 9])
def test_replicated_parameters_get_the_whole_gradient_in_one_all_reduce(rows, device,
                                                                        monkeypatch):
    x = minigt.tensor(global_array((rows, 3), 30), device=device)
    y = minigt.tensor(global_array((rows, 2), 31), device=device)
    reference = mlp_params(32, device=device)
    mlp_loss(reference, x, y).backward()

    params = mlp_params(32, device=device)
    loss = mlp_loss(params, dist.shard(x, 0), dist.shard(y, 0))
    assert loss.placement == Partial()
    reduces = count_calls(monkeypatch, collectives, "all_reduce")
    loss.backward()
    assert len(reduces) == 1  # four parameters, one bucket
    assert gradsync._pending == {}
    for got, want in zip(params, reference):
        assert type(got.grad) is minigt.Tensor and got.grad.device == got.device
        np.testing.assert_allclose(got.grad.numpy(), want.grad.numpy(), **TOL)


def test_a_parameter_used_by_sharded_and_replicated_compute():
    x = global_array((5, 3), 33)
    w_ref = minigt.tensor(global_array((3,), 34), requires_grad=True)
    ((minigt.tensor(x) * w_ref).sum() + (w_ref * w_ref).sum() + (minigt.tensor(x) + w_ref).sum()
     ).backward()
    w = minigt.tensor(global_array((3,), 34), requires_grad=True)
    xs = dist.shard(minigt.tensor(x), 0)
    loss = (xs * w).sum() + (w * w).sum() + (xs + w).sum()  # P + R + P: the total is all-reduced
    loss.backward()
    np.testing.assert_allclose(w.grad.numpy(), w_ref.grad.numpy(), **TOL)


def test_buckets_group_consecutive_shares_under_the_limit():
    shares = [np.zeros(n) for n in (4, 4, 10, 1, 1)] + [np.zeros(2, np.float32)]
    groups = gradsync.buckets([[None, s] for s in shares], limit=8 * 8)
    assert [[e[1].size for e in g] for g in groups] == [[4, 4], [10], [1, 1], [2]]


def sgd_step(params, x, y, lr=0.1):
    loss = mlp_loss(params, x, y)
    optimizer = minigt.optim.SGD(params, lr=lr, momentum=0.9)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    return loss


@pytest.mark.parametrize("rows", [3, 8])
def test_data_parallel_sgd_step_equals_the_single_process_step(rows, device):
    x = minigt.tensor(global_array((rows, 3), 40), device=device)
    y = minigt.tensor(global_array((rows, 2), 41), device=device)
    reference = mlp_params(42, device=device)
    expected_loss = sgd_step(reference, x, y).item()
    params = mlp_params(42, device=device)
    loss = sgd_step(params, dist.shard(x, 0), dist.shard(y, 0))
    assert loss.item() == pytest.approx(expected_loss, rel=1e-12)
    for got, want in zip(params, reference):
        np.testing.assert_allclose(got.numpy(), want.numpy(), **TOL)


def test_data_parallel_sgd_step_with_nn_modules():
    from minigt import nn

    x, y = global_array((7, 3), 43), global_array((7, 2), 44)

    def step(inputs, targets):
        minigt.manual_seed(0)
        model = nn.Sequential(nn.Linear(3, 5), nn.LayerNorm(5), nn.ReLU(), nn.Linear(5, 2)).double()
        optimizer = minigt.optim.SGD(model.parameters(), lr=0.1)
        ((model(inputs) - targets) ** 2).mean().backward()
        optimizer.step()
        return [p.numpy() for p in model.parameters()]

    expected = step(minigt.tensor(x), minigt.tensor(y))
    for got, want in zip(step(dist.shard(minigt.tensor(x), 0), dist.shard(minigt.tensor(y), 0)), expected):
        np.testing.assert_allclose(got, want, **TOL)


def test_layer_norm_along_unsharded_dims_stays_local():
    from minigt.nn import functional as F

    arrays = [global_array((4, 3, 5), 45), global_array((5,), 46), global_array((5,), 47)]
    out = check_op(lambda t, w, b: F.layer_norm(t, 5, w, b), arrays, [Shard(0), None, None])
    assert out.placement == Shard(0)


@pytest.mark.parametrize("placements, expected", [
    ((Replicate(), Shard(0), Shard(0)), Shard(1)),  # column parallel: 2 outputs, parts may be empty
    ((Shard(1), Shard(1)), Partial()),  # row parallel, no bias: 2 inputs, parts may be empty
    ((Shard(0), None, None), Shard(0)),  # data parallel: 2 rows
], ids=["column", "row", "data"])
def test_linear_with_empty_parts(placements, expected, device):
    from minigt.nn import functional as F

    arrays = [global_array((2, 2), 48), global_array((2, 2), 49), global_array((2,), 50)]
    out = check_op(lambda *ts: F.linear(*ts), arrays[:len(placements)], placements, device=device)
    assert out.placement == expected
