"""Per-op Python overhead, counted rather than timed (counts do not depend on the machine's load):
a small op's time is mostly the Python calls around its arithmetic (benchmarks/bench_core.py's
chain of 1,000 ops), so each recorded op gets a budget of calls."""
from __future__ import annotations

import sys

import numpy as np

import minigt as gt


def python_calls(run) -> list:
    """The Python functions (comprehensions included) that `run()` enters, in order, `run`
    itself left out."""
    calls = []

    def note(frame, event, arg):
        if event == "call":
            calls.append(frame.f_code.co_name)

    sys.setprofile(note)
    try:
        run()
    finally:
        sys.setprofile(None)
    return calls[1:]


def operands():
    rng = np.random.default_rng(0)
    x = gt.tensor(rng.standard_normal((4, 4)).astype(np.float32), requires_grad=True)
    return x, gt.tensor(rng.standard_normal((4, 4)).astype(np.float32))


def test_a_recorded_unary_op_makes_at_most_five_python_calls():
    # tanh, Function.apply, Tanh.forward, array_module, Tensor._make
    x, _ = operands()
    calls = python_calls(lambda: x.tanh())
    assert len(calls) <= 5, calls


def test_a_recorded_binary_op_makes_at_most_five_python_calls():
    # mul, _binary, Function.apply, Mul.forward, Tensor._make
    x, w = operands()
    calls = python_calls(lambda: x * w)
    assert len(calls) <= 5, calls


def test_apply_local_still_records_and_skips_nothing():
    x, w = operands()
    y = gt.ops.elementwise.Mul.apply_local((x, w), {})
    assert y.grad_fn.inputs == (x, w) and y.grad_fn.needs_input_grad == (True, False)
    y.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), w.numpy())
