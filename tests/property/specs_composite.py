"""Specs of matmul, the Python operators, and patterns where several ops meet (LayerNorm's
keepdim statistics feeding broadcasts, reused intermediates, NumPy-style spellings)."""
from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

import minigt

from .gradcheck import FLOAT32_RUN_NEAR_CONSTANT
from .specs import Case, Spec, broadcast_cases, in_domain, register, unary_cases
from .strategies import (
    NONZERO, POSITIVE, REAL, arrays, broadcast_shapes, dims, distinct_arrays, lattice_arrays,
    shapes,
)

# ---- matmul -------------------------------------------------------------------------------------

FORMS = ("vector", "matrix", "batch")


@st.composite
def matmul_cases(draw) -> Case:
    """a @ b in every form PyTorch allows: 1-D vectors, matrices, and stacks of matrices whose
    batch dims broadcast against each other."""
    n, k, m = draw(st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 4)))
    batch_a, batch_b = draw(broadcast_shapes(2, max_dims=2))
    a_form, b_form = draw(st.sampled_from(FORMS)), draw(st.sampled_from(FORMS))
    a_shape = {"vector": (k,), "matrix": (n, k), "batch": batch_a + (n, k)}[a_form]
    b_shape = {"vector": (k,), "matrix": (k, m), "batch": batch_b + (k, m)}[b_form]
    return Case(draw(arrays(a_shape)), draw(arrays(b_shape)))


register(Spec("matmul", matmul_cases(), minigt.matmul, np.matmul))

# ---- operators: each expression runs unchanged on tensors and on NumPy arrays --------------------

_pair = broadcast_cases(in_domain(REAL), in_domain(REAL))
OPERATORS = (  # (expression, the same expression as a function, its cases)
    ("x + y", lambda x, y: x + y, _pair),
    ("x - y", lambda x, y: x - y, _pair),
    ("x * y", lambda x, y: x * y, _pair),
    ("x / y", lambda x, y: x / y, broadcast_cases(in_domain(REAL), in_domain(NONZERO))),
    ("x ** y", lambda x, y: x**y, broadcast_cases(in_domain(POSITIVE), in_domain(REAL))),
    ("x @ y", lambda x, y: x @ y, matmul_cases()),
    ("-x", lambda x: -x, unary_cases()),
    ("abs(x)", lambda x: abs(x), unary_cases(NONZERO)),
    ("x + 1.5", lambda x: x + 1.5, unary_cases()),
    ("1.5 + x", lambda x: 1.5 + x, unary_cases()),
    ("2.0 - x", lambda x: 2.0 - x, unary_cases()),
    ("x - 2", lambda x: x - 2, unary_cases()),
    ("3 * x", lambda x: 3 * x, unary_cases()),
    ("x * 0.5", lambda x: x * 0.5, unary_cases()),
    ("x / 4.0", lambda x: x / 4.0, unary_cases()),
    ("3.0 / x", lambda x: 3.0 / x, unary_cases(NONZERO)),
    ("x ** 3", lambda x: x**3, unary_cases()),
    ("x ** 0.5", lambda x: x**0.5, unary_cases(POSITIVE)),
    ("x ** -1", lambda x: x**-1, unary_cases(NONZERO)),
    ("2 ** x", lambda x: 2**x, unary_cases()),
)
for _expression, _fn, _cases in OPERATORS:
    register(Spec(f"operator/{_expression}", _cases, _fn))

_ties = broadcast_cases(lattice_arrays, lattice_arrays)  # grids, so equality happens
COMPARISONS = (
    ("x == y", lambda x, y: x == y), ("x != y", lambda x, y: x != y),
    ("x < y", lambda x, y: x < y), ("x <= y", lambda x, y: x <= y),
    ("x > y", lambda x, y: x > y), ("x >= y", lambda x, y: x >= y),
    ("~(x < y)", lambda x, y: ~(x < y)), ("0.5 < x", lambda x, y: 0.5 < x),
)
for _expression, _fn in COMPARISONS:
    register(Spec(f"operator/{_expression}", _ties, _fn, differentiable=False))

# ---- patterns -----------------------------------------------------------------------------------


@st.composite
def _layer_norm_cases(draw) -> Case:
    """x with no near-ties (its variance stays away from 0), and a weight and bias of x's last
    dim, broadcast over the rest."""
    shape = draw(shapes(min_dims=1))
    return Case(draw(distinct_arrays(shape)), draw(arrays(shape[-1:])), draw(arrays(shape[-1:])))


def _layer_norm(x: minigt.Tensor, w: minigt.Tensor, b: minigt.Tensor) -> minigt.Tensor:
    mean = x.mean(-1, keepdim=True)
    std = minigt.sqrt(x.var(-1, keepdim=True, unbiased=False) + 1e-5)
    return (x - mean) / std * w + b


def _layer_norm_reference(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (x - x.mean(-1, keepdims=True)) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * w + b


register(Spec("pattern/layer norm", _layer_norm_cases(), _layer_norm, _layer_norm_reference,
              float32_tolerance=FLOAT32_RUN_NEAR_CONSTANT))


def _reused(x):
    """One intermediate feeding two consumers: its gradients must add up."""
    y = x * x
    return y + y.sum()


register(Spec("pattern/reused intermediate", unary_cases(), _reused))
register(Spec(  # the same input on both sides, once transposed
    "pattern/x.T @ x", shapes(min_dims=2, max_dims=2).flatmap(arrays).map(Case), lambda x: x.T @ x,
))


@st.composite
def _axis_cases(draw, domain=REAL) -> Case:
    """NumPy's spelling of a reduction: axis= (None, an int or a tuple) and keepdims=."""
    shape = draw(shapes())
    return Case(draw(arrays(shape, domain)), axis=draw(dims(len(shape))),
                keepdims=draw(st.booleans()))


register(Spec(
    "pattern/x.mean(axis, keepdims)", _axis_cases(),
    lambda x, axis, keepdims: x.mean(axis=axis, keepdims=keepdims),
))
register(Spec(  # a keepdims reduction feeding a broadcast (positive, so the sum is not ~0)
    "pattern/x / x.sum(axis, keepdims=True)", _axis_cases(POSITIVE),
    lambda x, axis, keepdims: x / x.sum(axis=axis, keepdims=True),
))


@st.composite
def _attention_cases(draw) -> Case:
    """Queries (..., s, d), keys (..., t, d), values (..., t, e), batch dims broadcasting."""
    s, t, d, e = draw(st.tuples(*(st.integers(1, 3) for _ in range(4))))
    batch_q, batch_k, batch_v = draw(broadcast_shapes(3, max_dims=2))
    shapes_ = (batch_q + (s, d), batch_k + (t, d), batch_v + (t, e))
    return Case(*(draw(arrays(shape)) for shape in shapes_))


def _attention(q, k, v):
    scores = q @ k.transpose(-2, -1) / math.sqrt(q.shape[-1])
    return minigt.softmax(scores, -1) @ v


def _attention_reference(q, k, v):
    scores = q @ np.swapaxes(k, -2, -1) / math.sqrt(q.shape[-1])
    weights = np.exp(scores)
    return weights / weights.sum(-1, keepdims=True) @ v


register(Spec("pattern/attention", _attention_cases(), _attention, _attention_reference))
