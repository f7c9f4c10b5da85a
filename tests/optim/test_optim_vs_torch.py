"""SGD, Adam and AdamW land on the same parameters as PyTorch's, step for step, with minigt on the
test's `device` and torch on its twin."""
import numpy as np
import pytest

import minigt
from minigt import optim
from nn.reference import to_both, torch, torch_device  # tests/ is on sys.path (rootdir conftest)

# a matrix, a vector and a 0-d parameter take the textbook update; the last, past one 64K
# piece, the in-place one piece by piece (see minigt/optim/sgd.py)
SHAPES = [(3, 4), (4,), (), (257, 256)]
TOLERANCE = {np.float64: dict(rtol=1e-9, atol=1e-12), np.float32: dict(rtol=1e-4, atol=1e-6)}

CONFIGS = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, weight_decay=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
    ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.05)),
    ("SGD", dict(lr=0.05, momentum=0.8, nesterov=True, weight_decay=0.1)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.02, betas=(0.8, 0.99), eps=1e-6)),
    ("Adam", dict(lr=0.01, weight_decay=0.1)),
    ("Adam", dict(lr=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1)),
    ("AdamW", dict(lr=0.01, weight_decay=0.05, amsgrad=True)),
]


def initial_and_grads(dtype, steps=3, seed=0):
    """Starting values and a gradient per step; the scales vary so AMSGrad's max matters."""
    rng = np.random.default_rng(seed)
    init = [np.asarray(rng.standard_normal(shape), dtype) for shape in SHAPES]
    grads = [[np.asarray(scale * rng.standard_normal(shape), dtype) for shape in SHAPES]
             for scale in [1.0, 0.1, 3.0, 0.5][:steps]]
    return init, grads


def run_minigt(name, config, init, grads, device):
    params = [minigt.tensor(a, device=device, requires_grad=True) for a in init]
    opt = getattr(optim, name)(params, **config)
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = minigt.tensor(g, device=device)
        opt.step()
    return [p.numpy() for p in params]


def run_torch(name, config, init, grads, device):
    device = torch_device(device)
    params = [torch.tensor(a, device=device, requires_grad=True) for a in init]
    opt = getattr(torch.optim, name)(params, **config)
    for step_grads in grads:
        for p, g in zip(params, step_grads):
            p.grad = torch.tensor(g, device=device)
        opt.step()
    return [p.detach().cpu().numpy() for p in params]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("name, config", CONFIGS, ids=[f"{n}-{c}" for n, c in CONFIGS])
def test_three_steps_match_pytorch(name, config, dtype, device):
    init, grads = initial_and_grads(dtype)
    ours = run_minigt(name, config, init, grads, device)
    theirs = run_torch(name, config, init, grads, device)
    for a, b in zip(ours, theirs):
        assert a.dtype == dtype
        np.testing.assert_allclose(a, b, **TOLERANCE[dtype])


@pytest.mark.parametrize("name, config", [("SGD", dict(lr=0.1, momentum=0.9, nesterov=True)),
                                          ("Adam", dict(lr=0.05)), ("AdamW", dict(lr=0.05))])
def test_steps_driven_by_a_loss_match_pytorch(name, config, device):
    """Gradients from backward() of a least-squares loss, recomputed after every update."""
    rng = np.random.default_rng(1)
    (x, tx), (y, ty) = (to_both(rng.standard_normal(shape), device) for shape in [(8, 3), 8])
    (w, tw), (b, tb) = (to_both(a, device, requires_grad=True)
                        for a in (rng.standard_normal(3), np.array(0.5)))
    opt = getattr(optim, name)([w, b], **config)
    topt = getattr(torch.optim, name)([tw, tb], **config)
    for _ in range(3):
        opt.zero_grad()
        ((x @ w + b - y) ** 2).mean().backward()
        opt.step()
        topt.zero_grad()
        ((tx @ tw + tb - ty) ** 2).mean().backward()
        topt.step()
    np.testing.assert_allclose(w.numpy(), tw.detach().cpu().numpy(), rtol=1e-9)
    np.testing.assert_allclose(b.numpy(), tb.detach().cpu().numpy(), rtol=1e-9)


def params_on_both(init, device):
    """The starting values as minigt parameters on `device` and torch ones on its twin."""
    pairs = [to_both(a, device, requires_grad=True) for a in init]
    return [p for p, _ in pairs], [q for _, q in pairs]


def test_param_groups_with_their_own_hyperparameters_match_pytorch(device):
    init, grads = initial_and_grads(np.float64)

    def groups(params):
        return [{"params": params[:1]}, {"params": params[1:], "lr": 0.5, "momentum": 0.0}]

    params, tparams = params_on_both(init, device)
    opt = optim.SGD(groups(params), lr=0.1, momentum=0.9)
    topt = torch.optim.SGD(groups(tparams), lr=0.1, momentum=0.9)
    for step, step_grads in enumerate(grads):
        for group, tgroup in zip(opt.param_groups, topt.param_groups):  # a hand-made schedule
            group["lr"] = tgroup["lr"] = 0.1 / (step + 1)
        for p, tp, g in zip(params, tparams, step_grads):
            p.grad, tp.grad = to_both(g, device)
        opt.step()
        topt.step()
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p.numpy(), tp.detach().cpu().numpy(), rtol=1e-9)


@pytest.mark.parametrize("name", ["SGD", "Adam"])
def test_a_parameter_without_a_gradient_is_skipped_like_pytorch(name, device):
    init, grads = initial_and_grads(np.float64)
    params, tparams = params_on_both(init, device)
    opt = getattr(optim, name)(params, lr=0.1)
    topt = getattr(torch.optim, name)(tparams, lr=0.1)
    for step, step_grads in enumerate(grads):
        for i, (p, tp, g) in enumerate(zip(params, tparams, step_grads)):
            unused = i == 1 and step == 1  # parameter 1 sits out the middle step
            p.grad, tp.grad = (None, None) if unused else to_both(g, device)
        opt.step()
        topt.step()
    for p, tp in zip(params, tparams):
        np.testing.assert_allclose(p.numpy(), tp.detach().cpu().numpy(), rtol=1e-9)
    if name == "Adam":
        assert opt.state[params[1]]["step"] == 2 == int(topt.state[tparams[1]]["step"])
