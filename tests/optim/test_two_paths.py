"""SGD and Adam each have a textbook update (`sgd`, `adam`: new arrays) and an in-place one
(`sgd_`, `adam_`: piece by piece); small parameters take the first, larger ones the second.
Both must compute the same, for every option, over several steps."""
import itertools

import numpy as np
import pytest

import minigt
from minigt import optim
from minigt.backends import array_module, parse_device, to_device
from minigt.optim import adam as adam_module, sgd as sgd_module  # the modules, not the functions

SHAPE = (257, 256)  # 65,792 elements: one whole 64K piece and a partial one
SCALES = [1.0, 0.1, 3.0, 0.5, 1e-3, 10.0]  # a gradient scale per step, so AMSGrad's max matters

SGD_SETTINGS = [
    dict(lr=0.1, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
         nesterov=nesterov)
    for momentum, dampening, weight_decay, nesterov
    in itertools.product([0.0, 0.9], [0.0, 0.3], [0.0, 0.1], [False, True])
    if not nesterov or (momentum > 0.0 and dampening == 0.0)  # what SGD accepts
]
ADAM_SETTINGS = [
    (amsgrad, dict(lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=weight_decay,
                   decoupled_weight_decay=decoupled))
    for amsgrad, (weight_decay, decoupled)
    in itertools.product([False, True], [(0.0, False), (0.1, False), (0.1, True)])
]


def start_and_grads(dtype, device, seed=0):
    rng = np.random.default_rng(seed)
    device = parse_device(device)  # 'cuda' -> 'cuda:0'
    start = to_device(rng.standard_normal(SHAPE).astype(dtype), device)
    return start, [to_device((s * rng.standard_normal(SHAPE)).astype(dtype), device)
                   for s in SCALES]


def host(array):
    return to_device(array, "cpu")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("settings", SGD_SETTINGS, ids=str)
def test_sgd_in_place_equals_the_textbook_to_rounding(settings, dtype, device):
    """The same operations in the same order (see minigt/optim/sgd.py), except that sgd_ adds a
    scaled array with one rounding (BLAS's axpy, a fused multiply-add; see backends.blas) where
    the textbook's p − lr·g rounds twice: p (and v, with dampening) may round apart by a unit in
    the last place. Allowed: 1 ulp of the largest value per step (a wrong term is off by far
    more); on the GPU, where there is no BLAS path, the bits must agree."""
    start, grads = start_and_grads(dtype, device)
    p, v = start, None
    fast_p, fast_v = start.copy(), None
    for g in grads:
        p, v = sgd_module.sgd(p, g, v, **settings)
        new_v = sgd_module.sgd_(fast_p, g, fast_v, **settings)
        fast_v = new_v.copy() if fast_v is None and new_v is not None else new_v
    assert p.dtype == fast_p.dtype == dtype
    assert (v is None) == (fast_v is None) == (settings["momentum"] == 0.0)
    for ours, reference in ((fast_p, p), (fast_v, v)):
        if reference is None:
            continue
        reference = host(reference)
        allowed = 0 if device != "cpu" else len(grads) * np.spacing(np.abs(reference).max())
        np.testing.assert_allclose(host(ours), reference, rtol=0, atol=allowed)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("amsgrad, settings", ADAM_SETTINGS, ids=str)
def test_adam_in_place_equals_the_textbook_to_rounding(amsgrad, settings, dtype, device):
    """adam_ folds the bias corrections into two scalars, so its update rounds differently from
    the textbook's m̂/(√v̂ + ε), and p − update may then round apart by a unit in the last place
    of p; with L2 decay that reaches m and v through the next gradient. Measured: at most 1 ulp
    of the largest value over these 6 steps; allowed: 1 ulp per step (a wrong term is off by
    far more)."""
    start, grads = start_and_grads(dtype, device)
    zeros = array_module(start).zeros_like(start)
    textbook = [start, zeros, zeros, zeros if amsgrad else None]  # p, m, v, v_max
    fast = [None if a is None else a.copy() for a in textbook]
    for t, g in enumerate(grads, start=1):
        textbook = adam_module.adam(textbook[0], g, *textbook[1:], t, **settings)
        adam_module.adam_(fast[0], g, *fast[1:], t, **settings)
    for ours, reference in zip(fast, textbook):
        if reference is None:
            assert ours is None
            continue
        assert ours.dtype == reference.dtype == dtype
        reference = host(reference)
        ulp = np.spacing(np.abs(reference).max())
        np.testing.assert_allclose(host(ours), reference, rtol=0, atol=len(grads) * ulp)


@pytest.mark.parametrize("name, config, functions", [
    ("SGD", dict(lr=0.1, momentum=0.9), (sgd_module, "sgd", "sgd_")),
    ("Adam", dict(lr=0.01), (adam_module, "adam", "adam_")),
    ("AdamW", dict(lr=0.01, amsgrad=True), (adam_module, "adam", "adam_")),
])
def test_small_parameters_take_the_textbook_path_and_large_ones_the_in_place_path(
        name, config, functions, monkeypatch):
    module, textbook, fast = functions
    calls = []
    for function in (textbook, fast):
        def spy(p, *args, _original=getattr(module, function), _name=function, **kwargs):
            calls.append((_name, p.size))
            return _original(p, *args, **kwargs)
        monkeypatch.setattr(module, function, spy)
    rng = np.random.default_rng(0)
    # the largest small one; one just past it (in one piece); pieces; a vector
    params = [minigt.tensor(rng.standard_normal(shape), requires_grad=True)
              for shape in [(64, 64), (64, 65), SHAPE, (3,)]]
    opt = getattr(optim, name)(params, **config)
    for p in params:
        p.grad = minigt.tensor(rng.standard_normal(p.shape))
    opt.step()
    assert calls == [(textbook, 64 * 64), (fast, 64 * 65), (fast, 257 * 256), (textbook, 3)]
