"""SGD has a textbook update (`sgd`: new arrays) and an in-place one (`sgd_`: piece by piece);
small parameters take the first, larger ones the second.
Both must compute the same, for every option, over several steps."""
import itertools

import numpy as np
import pytest

import minigt
from minigt import optim
from minigt.backends import to_device
from minigt.optim import sgd as sgd_module  # the module, not the function

SHAPE = (257, 256)  # 65,792 elements: one whole 64K piece and a partial one
SCALES = [1.0, 0.1, 3.0, 0.5, 1e-3, 10.0]  # a gradient scale per step

SGD_SETTINGS = [
    dict(lr=0.1, momentum=momentum, dampening=dampening, weight_decay=weight_decay,
         nesterov=nesterov)
    for momentum, dampening, weight_decay, nesterov
    in itertools.product([0.0, 0.9], [0.0, 0.3], [0.0, 0.1], [False, True])
    if not nesterov or (momentum > 0.0 and dampening == 0.0)  # what SGD accepts
]


def start_and_grads(dtype, device, seed=0):
    rng = np.random.default_rng(seed)
    start = to_device(rng.standard_normal(SHAPE).astype(dtype), device)
    return start, [to_device((s * rng.standard_normal(SHAPE)).astype(dtype), device)
                   for s in SCALES]


def host(array):
    return to_device(array, "cpu")


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("settings", SGD_SETTINGS, ids=str)
def test_sgd_in_place_equals_the_textbook_bit_for_bit(settings, dtype, device):
    """The same operations in the same order (see minigt/optim/sgd.py): no rounding apart."""
    start, grads = start_and_grads(dtype, device)
    p, v = start, None
    fast_p, fast_v = start.copy(), None
    for g in grads:
        p, v = sgd_module.sgd(p, g, v, **settings)
        new_v = sgd_module.sgd_(fast_p, g, fast_v, **settings)
        fast_v = new_v.copy() if fast_v is None and new_v is not None else new_v
    assert p.dtype == fast_p.dtype == dtype
    np.testing.assert_array_equal(host(fast_p), host(p))
    assert (v is None) == (fast_v is None) == (settings["momentum"] == 0.0)
    if v is not None:
        np.testing.assert_array_equal(host(fast_v), host(v))


@pytest.mark.parametrize("name, config, functions", [
    ("SGD", dict(lr=0.1, momentum=0.9), (sgd_module, "sgd", "sgd_")),
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
