"""Fully sharded data parallelism: each rank keeps Shard(0) rows of every parameter; training,
gradients, clipping and checkpoints are those of one process."""
from __future__ import annotations

import numpy as np
import pytest
from helpers import SIZE, TOL, count_calls, gather_objects, global_array

import minigt
import minigt.distributed as dist
from minigt import nn
from minigt.distributed import collectives
from minigt.nn import functional as F


def make_model(seed: int = 0):
    minigt.manual_seed(seed)
    inner = nn.Sequential(nn.Linear(8, 8), nn.GELU())
    return nn.Sequential(nn.Linear(3, 8), nn.GELU(), inner, nn.Linear(8, 2)).to(dtype=np.float64)


def fully_sharded(seed: int = 0):
    model = make_model(seed)
    dist.fully_shard(model[2])
    dist.fully_shard(model)
    return model


def data(rows: int = 5, seed: int = 100):
    return minigt.tensor(global_array((rows, 3), seed)), minigt.tensor(global_array((rows, 2), seed + 1))


@pytest.mark.parametrize("rows", [2, 5], ids=["empty_parts", "uneven"])
@pytest.mark.parametrize("optimizer", ["sgd", "adam"])
def test_training_steps_equal_one_process(rows, optimizer):
    cls, options = (minigt.optim.SGD, dict(lr=0.1, momentum=0.9)) if optimizer == "sgd" else \
        (minigt.optim.Adam, dict(lr=0.01))
    reference, model = make_model(), fully_sharded()
    ref_opt, opt = cls(reference.parameters(), **options), cls(model.parameters(), **options)
    for step in range(3):
        x, y = data(rows, 100 + step)
        for m, o, xx, yy in ((reference, ref_opt, x, y), (model, opt, dist.shard(x, 0), dist.shard(y, 0))):
            o.zero_grad()
            F.mse_loss(m(xx), yy).backward()
            o.step()
    for (name, want), got in zip(reference.state_dict().items(), model.state_dict().values()):
        np.testing.assert_allclose(got.numpy(), want.numpy(), **TOL, err_msg=name)


def test_each_rank_keeps_its_rows_of_every_parameter_and_gradient():
    model = fully_sharded()
    x, y = data()
    F.mse_loss(model(dist.shard(x, 0)), dist.shard(y, 0)).backward()
    for p in model.parameters():
        assert isinstance(p, dist.ShardedParameter) and p.placement == dist.Shard(0)
        assert p.data.shape[0] == p.sizes[dist.rank()] and p.grad.data.shape == p.data.shape
    total = sum(p.numel() for p in make_model().parameters())
    assert sum(gather_objects(sum(p.data.size for p in model.parameters()))) == total


def test_each_step_gathers_the_parameters_and_reduce_scatters_their_gradients(monkeypatch):
    model = fully_sharded()
    x, y = data()
    gathers = count_calls(monkeypatch, collectives, "all_gather_in_place")
    loss = F.mse_loss(model(dist.shard(x, 0)), dist.shard(y, 0))
    if SIZE > 1:
        assert len(gathers) == 2  # forward: one all-gather a unit, however many parameters
    gathers.clear()
    scatters = count_calls(monkeypatch, collectives, "reduce_scatter")
    reduces = count_calls(monkeypatch, collectives, "all_reduce")
    loss.backward()
    if SIZE > 1:
        # the inner unit gathers its 2 parameters again to run once more; the model's own 4
        # stayed gathered; each unit's gradient shares go to their rows in one reduce-scatter
        assert len(gathers) == 1 and len(scatters) == 2
        assert reduces == []  # no all-reduce of any gradient


def test_gradient_clipping_sees_the_whole_norm():
    reference, model = make_model(), fully_sharded()
    x, y = data()
    F.mse_loss(reference(x), y).backward()
    F.mse_loss(model(dist.shard(x, 0)), dist.shard(y, 0)).backward()
    want = nn.utils.clip_grad_norm_(reference.parameters(), 0.1).item()
    got = nn.utils.clip_grad_norm_(model.parameters(), 0.1).item()
    assert got == pytest.approx(want, rel=1e-12)


def test_checkpoints_are_whole_and_load_into_an_unsharded_model_and_back():
    model = fully_sharded()
    opt = minigt.optim.Adam(model.parameters(), lr=0.01)
    x, y = data()
    F.mse_loss(model(dist.shard(x, 0)), dist.shard(y, 0)).backward()
    opt.step()
    state, opt_state = model.state_dict(), opt.state_dict()
    plain = make_model(seed=1)
    plain.load_state_dict(state)
    plain_opt = minigt.optim.Adam(plain.parameters(), lr=0.01)
    plain_opt.load_state_dict(opt_state)
    again = fully_sharded(seed=2)
    again.load_state_dict(plain.state_dict())
    again_opt = minigt.optim.Adam(again.parameters(), lr=0.01)
    again_opt.load_state_dict(plain_opt.state_dict())
    for m, o, xx, yy in ((plain, plain_opt, x, y), (again, again_opt, dist.shard(x, 0), dist.shard(y, 0)),
                         (model, opt, dist.shard(x, 0), dist.shard(y, 0))):
        o.zero_grad()
        F.mse_loss(m(xx), yy).backward()
        o.step()
    for (name, want), got, first in zip(plain.state_dict().items(), again.state_dict().values(),
                                        model.state_dict().values()):
        np.testing.assert_allclose(got.numpy(), want.numpy(), **TOL, err_msg=name)
        np.testing.assert_allclose(first.numpy(), want.numpy(), **TOL, err_msg=name)


@pytest.mark.parametrize("rows, gathers", [(2, True), (40, False)])
def test_a_wide_linear_unit_gathers_the_rows_of_its_gradient_when_they_are_few(
        rows, gathers, monkeypatch):
    """dW = gᵀx: with few rows every rank gathers all ranks' rows of g and x and computes its own
    rows of dW, instead of reduce-scattering a whole out × in share; the same steps either way."""
    def wide(seed=0):
        minigt.manual_seed(seed)
        return nn.Sequential(nn.Linear(30, 20), nn.GELU(), nn.Linear(20, 2)).to(dtype=np.float64)

    reference, model = wide(), wide()
    dist.fully_shard(model)
    x = minigt.tensor(global_array((rows, 30), 300))
    F.mse_loss(reference(x), minigt.zeros(rows, 2, dtype=minigt.float64)).backward()
    scatters = count_calls(monkeypatch, collectives, "reduce_scatter")
    loss = F.mse_loss(model(dist.shard(x, 0)), dist.shard(minigt.zeros(rows, 2, dtype=minigt.float64), 0))
    loss.backward()
    if SIZE > 1:
        assert (scatters == []) == gathers
    for (name, want), got in zip(reference.named_parameters(), model.parameters()):
        np.testing.assert_allclose(got.full_value().numpy(), want.numpy(), **TOL, err_msg=name)
        np.testing.assert_allclose(got.full_value(got.grad).numpy(), want.grad.numpy(), **TOL,
                                   err_msg=name)


@pytest.mark.parametrize("rows, inputs_travel", [(5, True), (40, False)])
def test_a_linear_unit_fed_fewer_rows_than_outputs_gathers_its_inputs_not_its_weight(
        rows, inputs_travel, monkeypatch):
    """With few rows each rank multiplies all ranks' inputs by its own rows of W (fsdp_linear),
    so the weight is never gathered; the inner unit's input needs a gradient too. The same steps
    as one process either way."""
    def net(seed=0):
        minigt.manual_seed(seed)
        return nn.Sequential(nn.Linear(3, 24), nn.GELU(), nn.Linear(24, 30)).to(dtype=np.float64)

    reference, model = net(), net()
    for unit in (model[0], model[2]):
        dist.fully_shard(unit)
    ref_opt, opt = (minigt.optim.SGD(m.parameters(), lr=0.1) for m in (reference, model))
    weight_gathers = count_calls(monkeypatch, collectives, "all_gather_in_place")
    for step in range(2):
        x, y = minigt.tensor(global_array((rows, 3), 400 + step)), minigt.tensor(global_array((rows, 30), 500 + step))
        for m, o, xx, yy in ((reference, ref_opt, x, y), (model, opt, dist.shard(x, 0), dist.shard(y, 0))):
            o.zero_grad()
            out = m(xx)
            assert out.shape == (rows, 30)
            F.mse_loss(out, yy).backward()
            o.step()
    if SIZE > 1:
        assert (weight_gathers == []) == inputs_travel
    for (name, want), got in zip(reference.named_parameters(), model.parameters()):
        np.testing.assert_allclose(got.full_value().numpy(), want.numpy(), **TOL, err_msg=name)


def test_sharded_init_draws_what_one_process_draws_and_keeps_only_this_ranks_rows():
    reference = make_model()
    after_reference = minigt.randn(3).numpy()
    with dist.sharded_init():
        model = make_model()
        dist.fully_shard(model[2])
        dist.fully_shard(model)
    assert np.array_equal(minigt.randn(3).numpy(), after_reference)  # the generator moved alike
    for (name, want), got in zip(reference.named_parameters(), model.parameters()):
        assert got.data.shape[0] == got.sizes[dist.rank()]
        np.testing.assert_array_equal(got.full_value().numpy(), want.numpy(), err_msg=name)


def test_sharded_init_refuses_a_module_left_unsharded():
    with pytest.raises(RuntimeError, match=r"sharded_init: 2 parameter\(s\) of shape \(8, 8\), \(8,\).*fully_shard"):
        with dist.sharded_init():
            model = make_model()
            dist.fully_shard(model[0])
            dist.fully_shard(model[3])
    with dist.sharded_init():  # the failed block left nothing behind
        dist.fully_shard(nn.Linear(2, 2))
