"""Large in-place updates are shared among OMP_NUM_THREADS threads (NumPy's own loops use one),
with the same numbers as one thread."""
import threading

import numpy as np
import pytest

import minigt
from minigt import optim
from minigt.optim import optimizer


def test_each_piece_covers_every_element_once_across_threads(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    target = np.zeros(10 * optimizer._CHUNK + 123, np.float32)
    seen = []

    def work(part, scratch):
        assert scratch.shape == part.shape
        part += 1
        seen.append(threading.current_thread().name)

    optimizer.each_piece(work, target)
    assert np.all(target == 1)
    assert len(seen) == 11 and any(name.startswith("minigt-update") for name in seen)
    assert threading.current_thread().name in seen  # the caller takes a share too


def test_each_piece_stays_on_one_thread_when_asked_or_small(monkeypatch):
    seen = set()

    def work(part, scratch):
        seen.add(threading.current_thread().name)

    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    optimizer.each_piece(work, np.zeros(10 * optimizer._CHUNK, np.float32))
    monkeypatch.setenv("OMP_NUM_THREADS", "2")
    optimizer.each_piece(work, np.zeros(2 * optimizer._CHUNK, np.float32))  # under _SHARE
    assert seen == {threading.current_thread().name}


def test_a_helper_threads_error_reaches_the_caller(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "2")

    def work(part, scratch):
        if threading.current_thread().name.startswith("minigt-update"):
            raise FloatingPointError("from a helper")

    with pytest.raises(FloatingPointError, match="from a helper"):
        optimizer.each_piece(work, np.zeros(10 * optimizer._CHUNK, np.float32))


@pytest.mark.parametrize("name, config", [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("Adam", dict(lr=0.01, weight_decay=0.1, amsgrad=True)),
    ("AdamW", dict(lr=0.01, weight_decay=0.1)),
])
def test_two_threads_update_exactly_as_one(monkeypatch, name, config):
    rng = np.random.default_rng(0)
    start = rng.standard_normal((700, 1001)).astype(np.float32)  # 700,700 elements
    grads = [rng.standard_normal(start.shape).astype(np.float32) for _ in range(3)]
    results = []
    for threads in ("1", "2"):
        monkeypatch.setenv("OMP_NUM_THREADS", threads)
        p = minigt.tensor(start.copy(), requires_grad=True)
        step = getattr(optim, name)([p], **config)
        for grad in grads:
            p.grad = minigt.tensor(grad)
            step.step()
        results.append(p.numpy())
    np.testing.assert_array_equal(*results)
