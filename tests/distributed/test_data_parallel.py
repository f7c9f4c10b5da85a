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
    reduces = count_calls(monkeypatch, collectives, "start_all_reduce")
    loss.backward()
    assert len(reduces) == 1  # four parameters, one bucket
    assert gradsync._unplaced == {}
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


def grads_after_steps(params, batches, zero_grad=None):
    """Each parameter's gradient after backward over `batches` ((x, y) pairs), clearing the
    gradients before each one as `zero_grad` says (None: accumulate)."""
    for x, y in batches:
        if zero_grad is not None:
            for p in params:
                if zero_grad == "none":
                    p.grad = None
                elif p.grad is not None:
                    p.grad.zero_()
        mlp_loss(params, x, y).backward()
    return [p.grad.numpy().copy() for p in params]


@pytest.mark.parametrize("zero_grad", ["none", "zeros", None], ids=["set_to_none", "zero_", "accumulate"])
def test_gradients_live_in_their_bucket_and_accumulate_as_in_one_process(zero_grad, monkeypatch):
    batches = [(global_array((5, 3), 50 + i), global_array((5, 2), 60 + i)) for i in range(3)]
    reference = mlp_params(70)
    expected = grads_after_steps(reference, [(minigt.tensor(x), minigt.tensor(y)) for x, y in batches],
                                 zero_grad)
    params = mlp_params(70)
    sharded = [(dist.shard(minigt.tensor(x), 0), dist.shard(minigt.tensor(y), 0)) for x, y in batches]
    grads_after_steps(params, sharded[:1], zero_grad)  # the first backward lays out the bucket
    flat = gradsync.bucket_of(params[0]).flat
    if zero_grad == "none":  # the usual step: every .grad a view of the one flat buffer
        assert all(p.grad.data.base is flat for p in params)
    reduces = count_calls(monkeypatch, collectives, "start_all_reduce")
    got = grads_after_steps(params, sharded[1:], zero_grad)
    for g, want in zip(got, expected):
        np.testing.assert_allclose(g, want, **TOL)
    assert len(reduces) == 2  # one bucket a backward
    if zero_grad == "none":
        assert all(p.grad.data.base is flat for p in params)  # the same buffer: nothing copied out


def test_a_bucket_is_sent_during_backward_once_its_slots_are_filled(monkeypatch):
    params = mlp_params(71)
    x = dist.shard(minigt.tensor(global_array((4, 3), 72)), 0)
    y = dist.shard(minigt.tensor(global_array((4, 2), 73)), 0)
    mlp_loss(params, x, y).backward()  # lays out the bucket
    for p in params:
        p.grad = None
    sent = count_calls(monkeypatch, collectives, "start_all_reduce")
    sent_when_backward_ended = []
    hooks = [lambda: sent_when_backward_ended.append(len(sent)), *minigt.autograd.post_backward_hooks]
    monkeypatch.setattr(minigt.autograd, "post_backward_hooks", hooks)  # runs before flush
    mlp_loss(params, x, y).backward()
    assert sent_when_backward_ended == [1] and len(sent) == 1


def test_a_parameter_left_out_of_a_later_backward_keeps_its_gradient_unset():
    params = mlp_params(74)
    x, y = dist.shard(minigt.tensor(global_array((4, 3), 75)), 0), dist.shard(minigt.tensor(global_array((4, 2), 76)), 0)
    mlp_loss(params, x, y).backward()
    for p in params:
        p.grad = None
    w1, b1, w2, b2 = params
    (((x @ w1 + b1).relu() @ w2) - y).sum().backward()  # b2 unused this time
    assert b2.grad is None and w2.grad is not None
    reference = mlp_params(74)
    rw1, rb1, rw2, _ = reference
    xr, yr = minigt.tensor(global_array((4, 3), 75)), minigt.tensor(global_array((4, 2), 76))
    (((xr @ rw1 + rb1).relu() @ rw2) - yr).sum().backward()
    for got, want in zip(params[:3], reference[:3]):
        np.testing.assert_allclose(got.grad.numpy(), want.grad.numpy(), **TOL)


def test_buckets_group_consecutive_shares_under_the_limit():
    shares = [np.zeros(n) for n in (4, 4, 10, 1, 1)] + [np.zeros(2, np.float32)]
    groups = gradsync.buckets([[minigt.tensor(s), [s]] for s in shares], limit=8 * 8)
    assert [[e[0].numel() for e in g] for g in groups] == [[4, 4], [10], [1, 1], [2]]


def test_a_bias_shares_the_bucket_of_its_weight_past_the_limit():
    """Backward hands a Linear's weight and bias over together (rows of the same g): a bucket of
    its own for the bias would gain no overlap and cost a collective."""
    def linear(seed):
        g, x = global_array((2, 4), seed), global_array((2, 20), seed + 1)
        return ([minigt.tensor(np.zeros((4, 20))), [gradsync.Factors(g, x, (2,))]],
                [minigt.tensor(np.zeros(4)), [gradsync.Factors(g, None, (2,))]])

    w1, b1 = linear(80)
    w2, _ = linear(82)
    whole = np.zeros(3)
    groups = gradsync.buckets([w1, b1, w2, [minigt.tensor(whole), [whole]]], limit=8 * 8)
    assert [[e[0].shape for e in g] for g in groups] == [[(4, 20), (4,)], [(4, 20)], [(3,)]]


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


@pytest.mark.parametrize("rows, gathers", [(2, True), (9, False)])
def test_linear_weight_gradients_are_summed_by_gathering_rows_when_they_are_few(
        rows, gathers, monkeypatch):
    """A Linear's dW = gᵀx: all ranks' rows of g and x (rows × (in + out) numbers) against
    an all-reduce of the out × in product; the gradients are the single-process ones either way,
    also when a layer is used twice and with ranks that hold no rows."""
    def model(seed):
        minigt.manual_seed(seed)
        return minigt.nn.Linear(60, 50), minigt.nn.Linear(50, 50)

    def loss_of(layers, x):
        first, second = layers
        return (second(second(first(x)).tanh()) ** 2).sum()

    x = global_array((rows, 60), 80).astype(np.float32)  # the layers' dtype: no casts between
    reference = model(81)
    for _ in range(2):  # two backward calls: the gradients accumulate
        loss_of(reference, minigt.tensor(x)).backward()
    layers = model(81)
    loss_of(layers, dist.shard(minigt.tensor(x), 0)).backward()  # lays out the buckets
    gathered = count_calls(monkeypatch, collectives, "all_gather_in_place")
    reduced = count_calls(monkeypatch, collectives, "start_all_reduce")
    loss_of(layers, dist.shard(minigt.tensor(x), 0)).backward()
    assert (len(gathered) > 0, len(reduced) > 0) == (gathers, not gathers)
    for got, want in zip(layers, reference):
        for p, q in zip(got.parameters(), want.parameters()):
            np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-5, atol=1e-5)


def test_a_linear_weight_also_used_elsewhere_gets_its_rows_multiplied_out():
    """Tied weights: one share comes as rows (the Linear), one dense (the matmul); the bucket
    multiplies the rows out and sums both in one all-reduce."""
    def loss_of(layer, x):
        return (layer(x) ** 2).sum() + (x @ layer.weight.T).sum()

    x = global_array((2, 60), 90).astype(np.float32)
    minigt.manual_seed(91)
    reference = minigt.nn.Linear(60, 50)
    loss_of(reference, minigt.tensor(x)).backward()
    minigt.manual_seed(91)
    layer = minigt.nn.Linear(60, 50)
    loss_of(layer, dist.shard(minigt.tensor(x), 0)).backward()
    for p, q in zip(layer.parameters(), reference.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), rtol=1e-5, atol=1e-5)
