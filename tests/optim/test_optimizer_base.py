"""What every optimizer shares: groups, zero_grad, a graph-free in-place step, state dicts."""
import numpy as np
import pytest

import minigt
from minigt import optim
from minigt.backends import blas

OPTIMIZERS = [
    (optim.SGD, dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    (optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True)),
    (optim.Adam, dict(lr=0.01, amsgrad=True, weight_decay=0.01)),
    (optim.AdamW, dict(lr=0.01)),
]
IDS = [f"{cls.__name__}-{config}" for cls, config in OPTIMIZERS]


def make_params(dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    return [minigt.tensor(rng.standard_normal(shape).astype(dtype), requires_grad=True)
            for shape in [(3, 2), (2,)]]


def set_grads(params, step):
    rng = np.random.default_rng(100 + step)
    for p in params:
        p.grad = minigt.tensor(rng.standard_normal(p.shape).astype(p.dtype))


def train(opt, params, steps, start=0):
    for step in range(start, start + steps):
        set_grads(params, step)
        opt.step()


# ---- zero_grad -------------------------------------------------------------------------------
def test_zero_grad_sets_gradients_to_none_by_default():
    params = make_params()
    set_grads(params, 0)
    optim.SGD(params, lr=0.1).zero_grad()
    assert all(p.grad is None for p in params)


def test_zero_grad_without_set_to_none_zeroes_the_same_gradient_tensors():
    params = make_params()
    set_grads(params, 0)
    grads = [p.grad for p in params]
    params.append(minigt.tensor([1.0], requires_grad=True))  # no gradient yet: stays None
    optim.SGD(params, lr=0.1).zero_grad(set_to_none=False)
    assert all(p.grad is g for p, g in zip(params, grads))
    assert all(np.all(p.grad.numpy() == 0) for p in params[:2])
    assert params[2].grad is None


# ---- the step --------------------------------------------------------------------------------
@pytest.mark.parametrize("cls, config", OPTIMIZERS, ids=IDS)
def test_step_updates_in_place_without_recording_a_graph(cls, config):
    params = make_params()
    arrays = [p.data for p in params]
    opt = cls(params, **config)
    set_grads(params, 0)
    grads_before = [p.grad.numpy().copy() for p in params]
    before = [p.numpy().copy() for p in params]
    opt.step()  # with grad mode on: the optimizer must turn recording off itself
    for p, array, old, grad in zip(params, arrays, before, grads_before):
        assert p.data is array  # same storage, same Parameter: models keep their references
        assert p.is_leaf and p.grad_fn is None and p.requires_grad
        assert not np.array_equal(p.numpy(), old)
        np.testing.assert_array_equal(p.grad.numpy(), grad)  # weight decay left .grad alone
    for state in opt.state.values():
        for value in state.values():
            if isinstance(value, minigt.Tensor):
                assert value.grad_fn is None and not value.requires_grad


@pytest.mark.parametrize("cls, config", OPTIMIZERS, ids=IDS)
def test_step_bumps_the_version_so_a_stale_graph_refuses_backward(cls, config):
    (w,) = params = make_params()[:1]
    loss = (w * w).sum()  # Mul saved w's values before the update
    set_grads(params, 0)
    version = w._version[0]
    cls(params, **config).step()
    assert w._version[0] > version
    with pytest.raises(RuntimeError, match="modified in place"):
        loss.backward()


@pytest.mark.parametrize("cls, config", OPTIMIZERS, ids=IDS)
def test_float32_parameters_and_state_stay_float32(cls, config):
    params = make_params(np.float32)
    opt = cls(params, **config)
    train(opt, params, 2)
    assert all(p.dtype == np.float32 for p in params)
    for state in opt.state.values():
        assert all(v.dtype == np.float32 for v in state.values() if isinstance(v, minigt.Tensor))


def test_parameters_without_gradients_are_left_alone():
    params = make_params()
    frozen = minigt.tensor([1.0, 2.0], requires_grad=True)
    opt = optim.Adam(params + [frozen], lr=0.1)
    train(opt, params, 2)
    np.testing.assert_array_equal(frozen.numpy(), [1.0, 2.0])
    assert frozen not in opt.state and frozen._version[0] == 0


def test_lr_changes_through_param_groups_take_effect():
    (p,) = params = [minigt.tensor([1.0], dtype=np.float64, requires_grad=True)]
    opt = optim.SGD(params, lr=0.1)
    for group in opt.param_groups:
        group["lr"] = 0.5
    p.grad = minigt.tensor([1.0], dtype=np.float64)
    opt.step()
    np.testing.assert_array_equal(p.numpy(), [0.5])


def test_step_with_a_closure_returns_its_loss():
    w = minigt.tensor([3.0], dtype=np.float64, requires_grad=True)
    opt = optim.SGD([w], lr=0.25)

    def closure():
        opt.zero_grad()
        loss = (w * w).sum()
        loss.backward()
        return loss

    with minigt.no_grad():  # the closure still records: step() turns grad mode on for it
        loss = opt.step(closure)
    assert loss.item() == 9.0
    np.testing.assert_array_equal(w.numpy(), [1.5])  # 3 - 0.25 * 6


def test_a_gradient_of_the_wrong_shape_is_an_error():
    w = minigt.tensor([1.0, 2.0], requires_grad=True)
    w.grad = minigt.tensor([1.0])
    with pytest.raises(RuntimeError, match="shape"):
        optim.SGD([w], lr=0.1).step()


@pytest.mark.parametrize("make, match", [
    (lambda w: optim.SGD([], lr=0.1), "empty"),
    (lambda w: optim.SGD(w, lr=0.1), "iterable"),
    (lambda w: optim.SGD([w * 2], lr=0.1), "non-leaf"),
    (lambda w: optim.SGD([w, w], lr=0.1), "twice"),
    (lambda w: optim.SGD([{"params": [w]}, {"params": [w]}], lr=0.1), "twice"),
    (lambda w: optim.SGD({w}, lr=0.1), "set"),
    (lambda w: optim.SGD([w], lr=-1.0), "invalid lr"),
    (lambda w: optim.SGD([w], momentum=-0.9), "invalid momentum"),
    (lambda w: optim.SGD([w], lr=0.1, nesterov=True), "nesterov"),
    (lambda w: optim.Adam([w], betas=(0.9, 1.0)), "betas"),
    (lambda w: optim.AdamW([w], eps=-1.0), "eps"),
])
def test_bad_construction_is_a_clear_error(make, match):
    w = minigt.tensor([1.0], requires_grad=True)
    with pytest.raises((TypeError, ValueError), match=match):
        make(w)


def test_groups_take_missing_hyperparameters_from_the_defaults():
    a, b = make_params()
    opt = optim.Adam([{"params": [a]}, {"params": b, "lr": 0.5}], lr=0.01)
    assert [g["lr"] for g in opt.param_groups] == [0.01, 0.5]
    assert len(opt.param_groups[1]["params"]) == 1 and opt.param_groups[1]["params"][0] is b
    assert opt.param_groups[1]["betas"] == (0.9, 0.999)
    assert opt.param_groups[1]["decoupled_weight_decay"] is False
    assert optim.AdamW([a]).param_groups[0]["weight_decay"] == 0.01  # PyTorch's AdamW default


# ---- state dicts -----------------------------------------------------------------------------
def test_state_dict_numbers_parameters_in_group_order():
    a, b = make_params()
    opt = optim.Adam([{"params": [b]}, {"params": [a], "lr": 0.5}], lr=0.1)
    train(opt, [a, b], 1)
    sd = opt.state_dict()
    assert [g["params"] for g in sd["param_groups"]] == [[0], [1]]
    assert sd["param_groups"][1]["lr"] == 0.5 and "params" in opt.param_groups[0]
    assert set(sd["state"]) == {0, 1}
    assert set(sd["state"][0]) == {"step", "exp_avg", "exp_avg_sq"} and sd["state"][0]["step"] == 1
    assert sd["state"][0]["exp_avg"].shape == b.shape


@pytest.mark.parametrize("cls, config", OPTIMIZERS, ids=IDS)
def test_checkpoint_mid_run_continues_identically(cls, config, tmp_path):
    params = make_params()
    opt = cls(params, **config)
    train(opt, params, 2)
    minigt.save({"params": params, "opt": opt.state_dict()}, tmp_path / "ckpt.npz")
    train(opt, params, 2, start=2)

    checkpoint = minigt.load(tmp_path / "ckpt.npz")
    resumed = [minigt.tensor(p.numpy(), requires_grad=True) for p in checkpoint["params"]]
    fresh = cls(resumed, lr=123.0)  # the loaded hyperparameters override the constructor's
    fresh.load_state_dict(checkpoint["opt"])
    assert fresh.param_groups[0]["lr"] == config["lr"]
    train(fresh, resumed, 2, start=2)
    for p, q in zip(params, resumed):
        np.testing.assert_array_equal(p.numpy(), q.numpy())  # bit for bit


def test_loaded_state_is_a_copy_cast_to_the_parameter_dtype():
    params = make_params()
    opt = optim.SGD(params, lr=0.1, momentum=0.9)
    train(opt, params, 1)
    other = make_params(np.float32)
    twin = optim.SGD(other, lr=0.1, momentum=0.9)
    twin.load_state_dict(opt.state_dict())
    buffer = twin.state[other[0]]["momentum_buffer"]
    assert buffer.dtype == np.float32
    train(opt, params, 1, start=1)  # changes opt's buffers in place, but not twin's copies
    assert not np.allclose(buffer.numpy(), opt.state[params[0]]["momentum_buffer"].numpy())


def test_mismatched_state_dicts_are_refused_without_changing_anything():
    params = make_params()
    opt = optim.Adam(params, lr=0.1)
    train(opt, params, 1)
    sd = opt.state_dict()

    with pytest.raises(ValueError, match="2 parameters in the state dict but 1"):
        optim.Adam(make_params()[:1], lr=0.1).load_state_dict(sd)
    with pytest.raises(ValueError, match="1 parameter groups, this optimizer has 2"):
        optim.Adam([{"params": [p]} for p in make_params()], lr=0.1).load_state_dict(sd)
    wrong_shape = [minigt.tensor(np.zeros((2, 3)), requires_grad=True), make_params()[1]]
    target = optim.Adam(wrong_shape, lr=0.7)
    with pytest.raises(ValueError, match=r"shape \(3, 2\).*shape \(2, 3\)"):
        target.load_state_dict(sd)
    assert target.param_groups[0]["lr"] == 0.7 and not target.state


# ---- devices ---------------------------------------------------------------------------------
@pytest.mark.parametrize("cls, config", OPTIMIZERS, ids=IDS)
def test_steps_on_each_device_match_the_cpu(cls, config, device, tmp_path):
    """The update uses the array module of the parameter (NumPy or CuPy) and keeps it there."""
    cpu = make_params()
    here = [minigt.tensor(p.numpy(), device=device, requires_grad=True) for p in cpu]
    opts = [cls(cpu, **config), cls(here, **config)]
    for step in range(2):
        set_grads(cpu, step)
        for p, q in zip(here, cpu):
            p.grad = q.grad.to(device)
        for opt in opts:
            opt.step()
    for p, q in zip(here, cpu):
        assert p.device == minigt.tensor(0.0, device=device).device
        np.testing.assert_allclose(p.numpy(), q.numpy(), rtol=1e-12)
    minigt.save(opts[1].state_dict(), tmp_path / "state.npz")  # device state, saved from host
    opts[1].load_state_dict(minigt.load(tmp_path / "state.npz"))  # CPU arrays, moved back
    assert all(v.device == here[0].device for s in opts[1].state.values()
               for v in s.values() if isinstance(v, minigt.Tensor))


@pytest.mark.parametrize("name, config", [
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3, nesterov=False, weight_decay=0.01)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1)),
])
def test_large_parameters_updated_piece_by_piece_equal_the_whole_array_update(name, config,
                                                                             monkeypatch):
    """Past 64K elements a contiguous parameter is updated in pieces with a small scratch; a
    Fortran-ordered twin takes the whole-array path: the same numbers either way. (SGD's scaled
    additions take BLAS's axpy where one is found, tests/core/test_blas.py; here they take the
    pieces, as where none is.)"""
    monkeypatch.setattr(blas, "axpy_", lambda alpha, x, y: False)
    rng = np.random.default_rng(0)
    start = rng.standard_normal((300, 301))  # 90,300 elements: two pieces and a partial one
    pieces = minigt.tensor(start, requires_grad=True)
    whole = minigt.tensor(np.asfortranarray(start), requires_grad=True)
    assert pieces.data.flags.c_contiguous and not whole.data.flags.c_contiguous
    optimizers = [getattr(optim, name)([p], **config) for p in (pieces, whole)]
    for _ in range(3):
        grad = rng.standard_normal(start.shape)
        for p, optimizer in zip((pieces, whole), optimizers):
            p.grad = minigt.tensor(grad if p is pieces else np.asfortranarray(grad))
            optimizer.step()
    np.testing.assert_array_equal(pieces.numpy(), whole.numpy())
