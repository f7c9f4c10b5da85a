"""The sharded optimizer (ZeRO 1/2): every rank updates its part of the parameters, and the
steps, the state and the checkpoints are those of the unsharded optimizer."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import SIZE, TOL, count_calls, gather_objects, global_array, mlp_loss, mlp_params

import minigt
import minigt.distributed as dist
from minigt import nn
from minigt.distributed import collectives, gradsync

OPTIMIZERS = {
    "sgd_momentum": (minigt.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    "adam": (minigt.optim.Adam, dict(lr=0.01, amsgrad=True, weight_decay=0.1)),
    "adamw": (minigt.optim.AdamW, dict(lr=0.01)),
}


def batches(n: int, rows: int = 5):
    return [(global_array((rows, 3), 80 + i), global_array((rows, 2), 90 + i)) for i in range(n)]


def train(params, optimizer, data, sharded: bool, zero_grad: bool = True):
    for x, y in data:
        x, y = minigt.tensor(x), minigt.tensor(y)
        if sharded:
            x, y = dist.shard(x, 0), dist.shard(y, 0)
        if zero_grad:
            optimizer.zero_grad()
        mlp_loss(params, x, y).backward()
        optimizer.step()


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
@pytest.mark.parametrize("zero_grad", [True, False], ids=["zero_grad", "accumulate"])
def test_sharded_steps_equal_the_unsharded_optimizer(name, zero_grad):
    cls, options = OPTIMIZERS[name]
    reference = mlp_params(81)
    train(reference, cls(reference, **options), batches(3), sharded=False, zero_grad=zero_grad)
    params = mlp_params(81)
    train(params, dist.ShardedOptimizer(params, cls, **options), batches(3), sharded=True,
          zero_grad=zero_grad)
    for got, want in zip(params, reference):
        np.testing.assert_allclose(got.numpy(), want.numpy(), **TOL)


def test_each_rank_keeps_only_its_part_of_the_state():
    params = mlp_params(82)
    optimizer = dist.ShardedOptimizer(params, minigt.optim.Adam, lr=0.01)
    train(params, optimizer, batches(1), sharded=True)
    total = sum(p.numel() for p in params)
    mine = sum(s["exp_avg"].numel() for s in optimizer.optimizer.state.values())
    assert sum(gather_objects(mine)) == total and mine <= -(-total // SIZE)


def test_a_model_smaller_than_the_world_leaves_parts_empty():
    w = minigt.tensor([0.5], requires_grad=True)
    reference = minigt.tensor([0.5], requires_grad=True)
    x = global_array((4, 1), 83)
    opt, ref_opt = dist.ShardedOptimizer([w], minigt.optim.Adam, lr=0.1), minigt.optim.Adam([reference], lr=0.1)
    for _ in range(2):
        for t, o, data in ((w, opt, dist.shard(minigt.tensor(x), 0)), (reference, ref_opt, minigt.tensor(x))):
            o.zero_grad()
            ((data * t) ** 2).mean().backward()
            o.step()
    np.testing.assert_allclose(w.numpy(), reference.numpy(), **TOL)


def test_a_parameter_that_meets_sharded_data_through_another_op_is_updated():
    # its gradient is summed in the graph and set as .grad: it never comes to the bucket
    w = minigt.tensor([0.5, -1.0], dtype=minigt.float64, requires_grad=True)
    reference = minigt.tensor([0.5, -1.0], dtype=minigt.float64, requires_grad=True)
    x = global_array((4, 2), 85)
    opt, ref_opt = dist.ShardedOptimizer([w], minigt.optim.Adam, lr=0.1), minigt.optim.Adam([reference], lr=0.1)
    for _ in range(2):
        for t, o, data in ((w, opt, dist.shard(minigt.tensor(x), 0)), (reference, ref_opt, minigt.tensor(x))):
            o.zero_grad()
            ((data * (t * 2.0)) ** 2).mean().backward()
            o.step()
    np.testing.assert_allclose(w.numpy(), reference.numpy(), **TOL)


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_checkpoints_are_the_unsharded_format_both_ways(name):
    cls, options = OPTIMIZERS[name]
    reference = mlp_params(84)
    ref_opt = cls(reference, **options)
    train(reference, ref_opt, batches(2), sharded=False)
    params = mlp_params(84)
    optimizer = dist.ShardedOptimizer(params, cls, **options)
    train(params, optimizer, batches(2), sharded=True)

    saved, expected = optimizer.state_dict(), ref_opt.state_dict()
    assert saved["param_groups"] == expected["param_groups"]
    assert sorted(saved["state"]) == sorted(expected["state"])
    for i, state in expected["state"].items():
        for key, value in state.items():
            got = saved["state"][i][key]
            if isinstance(value, minigt.Tensor):
                np.testing.assert_allclose(got.numpy(), value.numpy(), **TOL)
            else:
                assert got == value

    # an unsharded checkpoint into a sharded optimizer, and on: the same steps
    resumed = mlp_params(84)
    with minigt.no_grad():
        for r, p in zip(resumed, reference):
            r.copy_(p)
    resumed_opt = dist.ShardedOptimizer(resumed, cls, **options)
    resumed_opt.load_state_dict(expected)
    train(resumed, resumed_opt, batches(4)[2:], sharded=True)
    train(reference, ref_opt, batches(4)[2:], sharded=False)
    for got, want in zip(resumed, reference):
        np.testing.assert_allclose(got.numpy(), want.numpy(), **TOL)


def test_linear_layers_fed_few_rows_send_rows_and_each_rank_computes_its_part(monkeypatch):
    # 4 rows of 60 + 30 numbers against 1,800 weights: the rows are gathered (the norm's
    # gradients too, one row a rank), and each rank multiplies out only its part of the buffer
    # (parts end mid-row at 2, 3 and 4 ranks)
    def model():
        minigt.manual_seed(86)
        return nn.Sequential(nn.Linear(60, 30), nn.LayerNorm(30), nn.Tanh(),
                             nn.Linear(30, 2)).to(minigt.float64)

    data = [(global_array((4, 60), 87 + i), global_array((4, 2), 89 + i)) for i in range(2)]
    reference, sharded = model(), model()
    ref_opt = minigt.optim.Adam(reference.parameters(), lr=0.01)
    opt = dist.ShardedOptimizer(sharded.parameters(), minigt.optim.Adam, lr=0.01)
    parts = count_calls(monkeypatch, gradsync, "product_range")
    scatters = count_calls(monkeypatch, collectives, "start_reduce_scatter")
    for x, y in data:
        for net, o, shard in ((reference, ref_opt, False), (sharded, opt, True)):
            x_, y_ = minigt.tensor(x), minigt.tensor(y)
            if shard:
                x_, y_ = dist.shard(x_, 0), dist.shard(y_, 0)
            o.zero_grad()
            ((net(x_) - y_) ** 2).mean().backward()
            o.step()
    assert parts and not scatters
    for got, want in zip(sharded.parameters(), reference.parameters()):
        np.testing.assert_allclose(got.numpy(), want.numpy(), **TOL)
