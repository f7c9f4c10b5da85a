"""Specs of the reductions: over dim None, an int or a tuple (negatives too), with keepdim."""
from __future__ import annotations

import math

import numpy as np
from hypothesis import assume
from hypothesis import strategies as st

import minigt

from .specs import Case, Spec, register
from .strategies import arrays, axes, dims, distinct_arrays, lattice_arrays, masks, shapes


@st.composite
def _reduction_cases(draw, values=arrays, tuples: bool = True) -> Case:
    """An input of any shape, a `dim` (None, one or several) and keepdim."""
    shape = draw(shapes())
    dim, keepdim = draw(dims(len(shape), tuples)), draw(st.booleans())
    return Case(draw(values(shape)), dim=dim, keepdim=keepdim)


@st.composite
def _along_dim_cases(draw, values=arrays, keepdim: bool = False) -> Case:
    """An input of at least one dim, one `dim` along it and, when asked, keepdim."""
    shape = draw(shapes(min_dims=1))
    kwargs = {"dim": draw(axes(len(shape)))}
    if keepdim:
        kwargs["keepdim"] = draw(st.booleans())
    return Case(draw(values(shape)), **kwargs)


def _numpy_reduction(fn):
    """NumPy's fn(x, axis=, keepdims=) called with minigt's argument names."""
    return lambda x, dim, keepdim: fn(x, axis=dim, keepdims=keepdim)


def _minigt_reduction(name: str):
    op = getattr(minigt, name)
    return lambda x, dim, keepdim: op(x, dim, keepdim)


def _logsumexp(x: np.ndarray, axis=None, keepdims: bool = False) -> np.ndarray:
    return np.log(np.sum(np.exp(x), axis=axis, keepdims=keepdims))


# name -> (NumPy function, values, differentiable). amax/amin get values with no near-ties:
# their gradient is a subgradient at ties (pinned in test_kinks.py), not a derivative.
REDUCTIONS = {
    "sum": (np.sum, arrays, True),
    "mean": (np.mean, arrays, True),
    "amax": (np.max, distinct_arrays, True),
    "amin": (np.min, distinct_arrays, True),
    "logsumexp": (_logsumexp, arrays, True),
    "any": (np.any, masks, False),
    "all": (np.all, masks, False),
}
for _name, (_fn, _values, _differentiable) in REDUCTIONS.items():
    register(Spec(
        _name, _reduction_cases(_values), _minigt_reduction(_name), _numpy_reduction(_fn),
        differentiable=_differentiable,
    ))

def _values_and_indices(extreme, arg):
    """NumPy's (values, indices) along one dim, as minigt.max/min(x, dim) return them."""
    return lambda x, dim, keepdim: (
        extreme(x, axis=dim, keepdims=keepdim), arg(x, axis=dim, keepdims=keepdim)
    )


# max/min: with no dim the extreme value; with a dim, (values, indices), both checked.
for _name, _extreme, _arg in (("max", np.max, np.argmax), ("min", np.min, np.argmin)):
    register(Spec(
        _name, shapes().flatmap(distinct_arrays).map(Case), getattr(minigt, _name), _extreme,
    ))
    register(Spec(
        f"{_name}/dim", _along_dim_cases(distinct_arrays, keepdim=True), _minigt_reduction(_name),
        _values_and_indices(_extreme, _arg),
    ))


@st.composite
def _arg_cases(draw) -> Case:
    """Values with ties (the first index wins, as in NumPy); dim None (flattened) or one dim."""
    shape = draw(shapes())
    dim = draw(dims(len(shape), tuples=False))
    keepdim = dim is not None and draw(st.booleans())
    return Case(draw(lattice_arrays(shape)), dim=dim, keepdim=keepdim)


for _name, _fn in (("argmax", np.argmax), ("argmin", np.argmin)):
    register(Spec(
        _name, _arg_cases(), _minigt_reduction(_name), _numpy_reduction(_fn), differentiable=False,
    ))

# ---- variance: the divisor N - correction, spelled three ways ------------------------------------

SPELLINGS = ({}, {"unbiased": True}, {"unbiased": False}, {"correction": 0}, {"correction": 1})


def _ddof(unbiased: bool | None = None, correction: int | None = None) -> int:
    """N - 1 by default, N for unbiased=False, N - correction when given (as PyTorch)."""
    return correction if correction is not None else 0 if unbiased is False else 1


@st.composite
def _variance_cases(draw, min_count: int) -> Case:
    """dim/keepdim and a divisor spelling, reducing more than `correction` and at least
    `min_count` elements; values with no near-ties, so the variance stays away from 0."""
    shape = draw(shapes())
    dim = draw(dims(len(shape)))
    spelling = draw(st.sampled_from(SPELLINGS))
    reduced = range(len(shape)) if dim is None else np.atleast_1d(dim) % len(shape)
    count = math.prod(shape[d] for d in reduced)
    assume(count > _ddof(**spelling) and count >= min_count)
    return Case(draw(distinct_arrays(shape)), dim=dim, keepdim=draw(st.booleans()), **spelling)


def _numpy_variance(fn):
    """NumPy's var/std called with minigt's argument names."""
    return lambda x, dim, keepdim, **spelling: fn(
        x, axis=dim, ddof=_ddof(**spelling), keepdims=keepdim
    )


for _name, _fn, _min_count in (("var", np.var, 1), ("std", np.std, 2)):  # std'(0) is infinite
    register(Spec(_name, _variance_cases(_min_count), getattr(minigt, _name), _numpy_variance(_fn)))

# ---- along one dim -------------------------------------------------------------------------------


def _softmax(x: np.ndarray, dim: int) -> np.ndarray:
    exps = np.exp(x)
    return exps / exps.sum(axis=dim, keepdims=True)


register(Spec("softmax", _along_dim_cases(), minigt.softmax, _softmax))
register(Spec(
    "log_softmax", _along_dim_cases(), minigt.log_softmax, lambda x, dim: np.log(_softmax(x, dim)),
))
