"""Specs of the elementwise ops: unary math, broadcasting binary ops, selection, comparisons."""
from __future__ import annotations

import math

import numpy as np
from hypothesis import strategies as st

import minigt

from .gradcheck import FLOAT32
from .specs import Case, Spec, broadcast_cases, in_domain, register, unary_cases
from .strategies import (
    NONZERO, POSITIVE, REAL, arrays, broadcast_shapes, divisor_arrays, lattice_arrays, masks,
    shapes, shapes_broadcasting_to,
)

_erf = np.vectorize(math.erf, otypes=[np.float64])

# ---- unary: name -> (NumPy reference, input domain) ---------------------------------------------

UNARY = {
    "neg": (np.negative, REAL),
    "exp": (np.exp, REAL),
    "log": (np.log, POSITIVE),
    "sqrt": (np.sqrt, POSITIVE),
    "rsqrt": (lambda x: 1 / np.sqrt(x), POSITIVE),
    "abs": (np.abs, NONZERO),  # kink at 0 (pinned in test_kinks.py)
    "tanh": (np.tanh, REAL),
    "sigmoid": (lambda x: 1 / (1 + np.exp(-x)), REAL),
    "relu": (lambda x: np.maximum(x, 0.0), NONZERO),  # kink at 0
    "sin": (np.sin, REAL),
    "cos": (np.cos, REAL),
    "clone": (np.copy, REAL),
}
for _name, (_reference, _domain) in UNARY.items():
    register(Spec(_name, unary_cases(_domain), getattr(minigt, _name), _reference))


def _gelu_reference(x: np.ndarray, approximate: str) -> np.ndarray:
    if approximate == "tanh":
        return 0.5 * x * (1 + np.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * x**3)))
    return 0.5 * x * (1 + _erf(x / math.sqrt(2)))


@st.composite
def _gelu_cases(draw) -> Case:
    """Any input, and either form: exact (erf) or the tanh approximation."""
    x = draw(arrays(draw(shapes())))
    return Case(x, approximate=draw(st.sampled_from(("none", "tanh"))))


register(Spec(
    "gelu", _gelu_cases(),
    lambda x, approximate: minigt.gelu(x, approximate=approximate), _gelu_reference,
))


@st.composite
def _clamp_cases(draw) -> Case:
    """Bounds (one may be None, min may exceed max) and values kept away from both."""
    low, high = draw(st.one_of(
        st.tuples(st.none(), st.floats(-2, 2)),
        st.tuples(st.floats(-2, 2), st.none()),
        st.tuples(st.floats(-2, 2), st.floats(-2, 2)),
    ))
    domain = REAL.excluding(*(b for b in (low, high) if b is not None))
    return Case(draw(arrays(draw(shapes()), domain)), min=low, max=high)


register(Spec(
    "clamp", _clamp_cases(),
    lambda x, min, max: x.clip(min=min, max=max),  # noqa: A002 - PyTorch's argument names
    lambda x, min, max: np.clip(x, min, max),  # noqa: A002
))


@st.composite
def _clamp_tensor_cases(draw) -> Case:
    """x and tensor bounds (min, max or both) broadcasting together, each on its own grid
    (offsets 0, 1/8, 3/8): never a tie, and min > max in places, where the result is max."""
    sides = draw(st.sampled_from((("min",), ("max",), ("min", "max"))))
    x_shape, *bound_shapes = draw(broadcast_shapes(1 + len(sides)))
    offsets = {"min": 0.125, "max": 0.375}
    bounds = [draw(lattice_arrays(shape, offsets[side])) for side, shape in zip(sides, bound_shapes)]
    return Case(draw(lattice_arrays(x_shape)), *bounds, sides=sides)


def _numpy_clip(x, *bounds, sides):
    named = dict(zip(sides, bounds))
    return np.clip(x, named.get("min"), named.get("max"))


register(Spec(
    "clamp/tensor bounds", _clamp_tensor_cases(),
    lambda x, *bounds, sides: minigt.clamp(x, **dict(zip(sides, bounds))), _numpy_clip,
))

register(Spec(  # float64 -> float32: the gradient is cast back to float64
    "cast", unary_cases(), lambda x: minigt.cast(x, minigt.float32),
    lambda x: x.astype(np.float32), tolerance=FLOAT32,
))
register(Spec(  # to an integer dtype: no gradient, values truncated toward 0
    "cast/int64", unary_cases(), lambda x: x.long(), lambda x: x.astype(np.int64),
    differentiable=False,
))

# ---- binary, broadcasting: name -> (NumPy reference, domain of a, domain of b) -------------------

BINARY = {
    "add": (np.add, REAL, REAL),
    "sub": (np.subtract, REAL, REAL),
    "mul": (np.multiply, REAL, REAL),
    "div": (np.divide, REAL, NONZERO),
    "pow": (np.power, POSITIVE, REAL),  # a > 0: a ** b is real and d/db = a^b ln a exists
}
for _name, (_reference, _a, _b) in BINARY.items():
    register(Spec(
        _name, broadcast_cases(in_domain(_a), in_domain(_b)), getattr(minigt, _name), _reference
    ))


@st.composite
def _alpha_cases(draw) -> Case:
    """Two broadcasting inputs and a float alpha scaling the second."""
    alpha = draw(st.sampled_from((2.0, -0.5)))
    return Case(*draw(broadcast_cases(arrays, arrays)).inputs, alpha=alpha)


register(Spec("add/alpha", _alpha_cases(), lambda a, b, alpha: minigt.add(a, b, alpha=alpha),
              lambda a, b, alpha: a + alpha * b))
register(Spec("sub/alpha", _alpha_cases(), lambda a, b, alpha: minigt.sub(a, b, alpha=alpha),
              lambda a, b, alpha: a - alpha * b))

# Rounded quotients of grid values by ±1/2, ±1, ±2: never near an integer (see divisor_arrays),
# so the zero gradient PyTorch gives is the finite differences' too.
for _mode, _reference in (("trunc", lambda a, b: np.trunc(a / b)), ("floor", np.floor_divide)):
    register(Spec(
        f"div/{_mode}",
        broadcast_cases(lambda shape: lattice_arrays(shape, offset=0.25), divisor_arrays),
        lambda a, b, mode=_mode: minigt.div(a, b, rounding_mode=mode), _reference,
    ))

# Inputs on grids 1/4 apart: never a near-tie (ties are pinned in test_kinks.py). max(a, b) and
# min(a, b) with a tensor second are the same ops, as in PyTorch.
for _name, _overload, _reference in (("maximum", "max", np.maximum),
                                     ("minimum", "min", np.minimum)):
    for _spec_name in (_name, f"{_overload}/tensor"):
        register(Spec(
            _spec_name,
            broadcast_cases(lattice_arrays, lambda shape: lattice_arrays(shape, offset=0.25)),
            getattr(minigt, _spec_name.partition("/")[0]), _reference,
        ))

register(Spec("where", broadcast_cases(masks, arrays, arrays), minigt.where, np.where))


@st.composite
def _masked_fill_cases(draw) -> Case:
    """x, a mask that broadcasts to x's shape, and a Python float to write."""
    shape = draw(shapes())
    mask = draw(masks(draw(shapes_broadcasting_to(shape))))
    return Case(draw(arrays(shape)), mask, value=draw(st.floats(-3, 3)))


register(Spec(
    "masked_fill", _masked_fill_cases(),
    lambda x, mask, value: x.masked_fill(mask, value),
    lambda x, mask, value: np.where(mask, value, x),
))

# ---- comparisons: forward only, on grids with exact ties -----------------------------------------

for _name, _reference in (("eq", np.equal), ("ne", np.not_equal), ("lt", np.less),
                          ("le", np.less_equal), ("gt", np.greater), ("ge", np.greater_equal)):
    register(Spec(
        _name, broadcast_cases(lattice_arrays, lattice_arrays), getattr(minigt, _name), _reference,
        differentiable=False,
    ))

register(Spec(
    "logical_not", st.one_of(shapes().flatmap(masks), shapes().flatmap(lattice_arrays)).map(Case),
    minigt.logical_not, np.logical_not, differentiable=False,
))
