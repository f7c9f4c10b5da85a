"""Hypothesis strategies for op inputs: shapes, values kept away from kinks, dims, indices, layouts.

Values are drawn by NumPy from a seed that Hypothesis picks. Hypothesis' own float arrays fill
most elements with one repeated value (ties everywhere, which max/min must avoid), and drawing
hundreds of floats one by one overflows its buffer. The structure (shapes, dims, slices,
indices, layouts) is what Hypothesis explores and shrinks.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minigt.backends import array_module

MAX_DIMS = 4
MAX_SIDE = 5  # ≤ 625 elements: every example stays fast

# ---- shapes ------------------------------------------------------------------------------------


def shapes(min_dims: int = 0, max_dims: int = MAX_DIMS, min_side: int = 1,
           max_side: int = MAX_SIDE) -> st.SearchStrategy[tuple[int, ...]]:
    """Array shapes; Hypothesis favours small sides, so size-1 dims come up often."""
    return hnp.array_shapes(
        min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side
    )


def broadcast_shapes(count: int = 2, max_dims: int = MAX_DIMS) -> st.SearchStrategy[tuple]:
    """`count` shapes that broadcast together: missing leading dims, size-1 dims against n."""
    return hnp.mutually_broadcastable_shapes(
        num_shapes=count, max_dims=max_dims, max_side=MAX_SIDE
    ).map(lambda shapes: shapes.input_shapes)


@st.composite
def shapes_broadcasting_to(draw, shape: tuple[int, ...]) -> tuple[int, ...]:
    """A shape that broadcasts *to* `shape` (a trailing part of it, some sides set to 1)."""
    kept = draw(st.integers(0, len(shape)))
    return tuple(draw(st.sampled_from((n, 1))) for n in shape[len(shape) - kept:])


# ---- values ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Domain:
    """Where input values lie: a union of intervals, e.g. the reals less a margin around a kink."""

    intervals: tuple[tuple[float, float], ...]

    def excluding(self, *points: float, margin: float = 0.1) -> Domain:
        """This domain less (point - margin, point + margin) around each point."""
        intervals = self.intervals
        for p in points:
            intervals = tuple(
                part for lo, hi in intervals
                for part in ((lo, min(hi, p - margin)), (max(lo, p + margin), hi))
                if part[0] < part[1]
            )
        return Domain(intervals)

    def sample(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Uniform samples over the union of intervals."""
        lows = np.array([lo for lo, _ in self.intervals])
        widths = np.array([hi - lo for lo, hi in self.intervals])
        which = rng.choice(len(widths), size=shape, p=widths / widths.sum())
        return lows[which] + widths[which] * rng.random(shape)


REAL = Domain(((-3.0, 3.0),))
NONZERO = REAL.excluding(0.0, margin=0.2)  # relu/abs kinks; divisors
POSITIVE = Domain(((0.2, 3.0),))  # log, sqrt, rsqrt, bases of x ** y


def _seeded(sample) -> st.SearchStrategy[np.ndarray]:
    """An array made by `sample(rng)` from a NumPy generator seeded by Hypothesis."""
    return st.integers(0, 2**32 - 1).map(
        lambda seed: np.asarray(sample(np.random.default_rng(seed)))
    )


def arrays(shape: tuple[int, ...], domain: Domain = REAL) -> st.SearchStrategy[np.ndarray]:
    """Float64 arrays of `shape` with values in `domain`."""
    return _seeded(lambda rng: domain.sample(rng, shape))


def distinct_arrays(shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    """Float64 arrays in [-3, 3] whose values are pairwise ≥ 6/size apart (≥ 0.0096 ≫ the
    finite-difference step): max/min never meet a near-tie, variances stay away from 0."""
    size = math.prod(shape)
    grid = np.linspace(-3.0, 3.0, size) if size > 1 else np.zeros(size)
    return _seeded(lambda rng: rng.permutation(grid).reshape(shape))


def lattice_arrays(shape: tuple[int, ...], offset: float = 0.0) -> st.SearchStrategy[np.ndarray]:
    """Float64 arrays on the grid offset + k/2 in [-3, 3]: exact ties for comparisons, and
    always ≥ 1/4 away from a grid with another offset (so maximum's inputs never near-tie)."""
    return _seeded(lambda rng: rng.integers(-6, 7, size=shape) * 0.5 + offset)


def divisor_arrays(shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    """Float64 arrays of ±1/2, ±1 and ±2: a lattice value (offset 1/4) over one of them is
    k/2 + 1/4, k/4 + 1/8 or k/8 + 1/16, never within 1/16 of an integer, so a rounded quotient
    is flat under finite differences; powers of two keep it exact in float32 too."""
    return _seeded(lambda rng: rng.choice([-2.0, -1.0, -0.5, 0.5, 1.0, 2.0], size=shape))


def masks(shape: tuple[int, ...]) -> st.SearchStrategy[np.ndarray]:
    """Bool arrays of `shape`, about half true."""
    return _seeded(lambda rng: rng.random(shape) < 0.5)


# ---- dims and shape arguments --------------------------------------------------------------


def axes(ndim: int) -> st.SearchStrategy[int]:
    """One dim of an `ndim`-dim tensor, maybe spelled negative."""
    return st.integers(-ndim, ndim - 1)


def _maybe_negative(dims: list[int], ndim: int) -> st.SearchStrategy[tuple[int, ...]]:
    return st.tuples(*(st.sampled_from((d, d - ndim)) for d in dims))


def axis_tuples(ndim: int) -> st.SearchStrategy[tuple[int, ...]]:
    """A non-empty tuple of distinct dims in any order, each maybe negative."""
    return st.lists(st.integers(0, ndim - 1), min_size=1, unique=True).flatmap(
        lambda dims: _maybe_negative(dims, ndim)
    )


def dims(ndim: int, tuples: bool = True) -> st.SearchStrategy[int | tuple[int, ...] | None]:
    """A reduction's `dim`: None (all), one dim, or a tuple of dims."""
    if ndim == 0:
        return st.none()
    options = [st.none(), axes(ndim)] + ([axis_tuples(ndim)] if tuples else [])
    return st.one_of(*options)


def permutations(ndim: int) -> st.SearchStrategy[tuple[int, ...]]:
    """An order of all `ndim` dims, each maybe spelled negative."""
    return st.permutations(range(ndim)).flatmap(lambda dims: _maybe_negative(dims, ndim))


def _prime_factors(n: int) -> list[int]:
    factors, p = [], 2
    while n > 1:
        while n % p == 0:
            factors.append(p)
            n //= p
        p += 1
    return factors


@st.composite
def reshape_targets(draw, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Any shape with as many elements as `shape`: its prime factors shuffled and grouped into
    dims, size-1 dims inserted, and maybe one dim left as -1 for reshape to infer."""
    factors = draw(st.permutations(_prime_factors(math.prod(shape))))
    target: list[int] = []
    for factor in factors:
        if target and draw(st.booleans()):
            target[-1] *= factor  # grow the last dim instead of starting a new one
        else:
            target.append(factor)
    for _ in range(draw(st.integers(0, 2))):
        target.insert(draw(st.integers(0, len(target))), 1)
    if target and draw(st.booleans()):
        target[draw(st.integers(0, len(target) - 1))] = -1
    return tuple(target)


# ---- indices -----------------------------------------------------------------------------------


def basic_indices(shape: tuple[int, ...]) -> st.SearchStrategy:
    """Ints (negative too), slices with any step (negative too), None and Ellipsis."""
    return hnp.basic_indices(shape, allow_newaxis=True, allow_ellipsis=True)


@st.composite
def index_arrays(draw, size: int, max_dims: int = 2) -> np.ndarray:
    """An integer array indexing a dim of `size` (negatives too) that repeats an index, so
    the gradient must accumulate."""
    shape = draw(shapes(min_dims=1, max_dims=max_dims, min_side=2, max_side=4))
    index = draw(hnp.arrays(np.int64, shape, elements=st.integers(-size, size - 1))).copy()
    index.flat[-1] = index.flat[0]
    return index


@st.composite
def mixed_indices(draw, shape: tuple[int, ...]) -> tuple:
    """One part per dim, mixing ints, slices and integer arrays (given as lists or arrays);
    the arrays share one length, so they broadcast together as NumPy requires."""
    length = draw(st.integers(2, 4))
    array_dim = draw(st.integers(0, len(shape) - 1))  # at least one array part
    parts = []
    for d, size in enumerate(shape):
        kind = "array" if d == array_dim else draw(st.sampled_from(("int", "slice", "array")))
        if kind == "int":
            parts.append(draw(st.integers(-size, size - 1)))
        elif kind == "slice":
            parts.append(draw(st.slices(size)))
        else:
            index = draw(st.lists(st.integers(-size, size - 1), min_size=length, max_size=length))
            parts.append(draw(st.sampled_from((index, np.array(index)))))
    return tuple(parts)


# ---- memory layouts --------------------------------------------------------------------------

LAYOUTS = ("contiguous", "transposed", "strided", "reversed")


def with_layout(array, layout: str):
    """A copy of `array` (NumPy or CuPy) holding the same values in the given memory layout:
    Fortran order, every other element of a wider buffer, or negative strides."""
    xp = array_module(array)
    if layout == "contiguous" or array.ndim == 0:
        return array.copy()
    if layout == "transposed":
        return xp.ascontiguousarray(array.T).T
    if layout == "reversed":
        return xp.ascontiguousarray(array[..., ::-1])[..., ::-1]
    if layout == "strided":
        buffer = xp.zeros(array.shape[:-1] + (2 * array.shape[-1],), dtype=array.dtype)
        view = buffer[..., ::2]
        view[...] = array
        return view
    raise ValueError(f"unknown layout {layout!r}")
