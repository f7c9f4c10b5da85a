"""Specs of the ops that move elements around: reshape and friends, joins and splits, indexing."""
from __future__ import annotations

import numpy as np
from hypothesis import strategies as st

import minigt

from .specs import Case, Spec, register
from .strategies import (
    MAX_SIDE, arrays, axes, axis_tuples, basic_indices, index_arrays, masks, mixed_indices,
    permutations, reshape_targets, shapes,
)


def _cases(make_kwargs, min_dims: int = 0):
    """Cases of one float64 input of any shape plus kwargs drawn by make_kwargs(draw, shape)."""
    @st.composite
    def cases(draw) -> Case:
        shape = draw(shapes(min_dims=min_dims))
        return Case(draw(arrays(shape)), **make_kwargs(draw, shape))

    return cases()


# ---- reshaping -----------------------------------------------------------------------------------

_reshape_cases = _cases(lambda draw, shape: {"shape": draw(reshape_targets(shape))})


def _reshape_reference(x: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    return x.reshape(shape)


register(Spec(
    "reshape", _reshape_cases, lambda x, shape: minigt.reshape(x, shape), _reshape_reference,
))
register(Spec("view", _reshape_cases, lambda x, shape: x.view(*shape), _reshape_reference))

register(Spec(
    "permute", _cases(lambda draw, shape: {"dims": draw(permutations(len(shape)))}),
    lambda x, dims: x.permute(*dims), lambda x, dims: x.transpose(dims),
))
register(Spec(
    "transpose",
    _cases(lambda draw, s: {"dim0": draw(axes(len(s))), "dim1": draw(axes(len(s)))}, min_dims=1),
    minigt.transpose, lambda x, dim0, dim1: np.swapaxes(x, dim0, dim1),
))


def _flatten_kwargs(draw, shape: tuple[int, ...]) -> dict:
    """start_dim ≤ end_dim once normalised, either maybe negative."""
    if not shape:
        return {}
    start, end = sorted(draw(st.lists(st.integers(0, len(shape) - 1), min_size=2, max_size=2)))
    return {"start_dim": draw(st.sampled_from((start, start - len(shape)))),
            "end_dim": draw(st.sampled_from((end, end - len(shape))))}


def _flatten_reference(x: np.ndarray, start_dim: int = 0, end_dim: int = -1) -> np.ndarray:
    if x.ndim == 0:
        return x.reshape(1)
    start, end = start_dim % x.ndim, end_dim % x.ndim
    return x.reshape(x.shape[:start] + (-1,) + x.shape[end + 1:])


register(Spec("flatten", _cases(_flatten_kwargs), minigt.flatten, _flatten_reference))


def _squeeze_kwargs(draw, shape: tuple[int, ...]) -> dict:
    """No dim (all size-1 dims), one dim or a tuple, of size 1 or not (then left alone)."""
    if not shape:
        return {"dim": None}
    return {"dim": draw(st.one_of(st.none(), axes(len(shape)), axis_tuples(len(shape))))}


def _squeeze_reference(x: np.ndarray, dim) -> np.ndarray:
    chosen = range(x.ndim) if dim is None else np.atleast_1d(dim) % x.ndim
    return np.squeeze(x, axis=tuple(int(d) for d in chosen if x.shape[d] == 1))


register(Spec("squeeze", _cases(_squeeze_kwargs), minigt.squeeze, _squeeze_reference))
register(Spec(
    "unsqueeze", _cases(lambda draw, shape: {"dim": draw(axes(len(shape) + 1))}),
    minigt.unsqueeze, lambda x, dim: np.expand_dims(x, dim),
))

# ---- broadcasting --------------------------------------------------------------------------------


def _expand_kwargs(draw, shape: tuple[int, ...]) -> dict:
    """A target shape: new leading dims, size-1 dims grown, others kept (maybe spelled -1)."""
    lead = draw(st.lists(st.integers(1, MAX_SIDE), max_size=2))
    kept = [draw(st.integers(1, MAX_SIDE)) if n == 1 else n for n in shape]
    return {"sizes": tuple(lead + [draw(st.sampled_from((n, -1))) for n in kept])}


def _resolved(x, sizes: tuple[int, ...]) -> tuple[int, ...]:
    """expand's sizes with each -1 replaced by the size it keeps."""
    lead = len(sizes) - x.ndim
    return tuple(x.shape[i - lead] if n == -1 else n for i, n in enumerate(sizes))


_expand_cases = _cases(_expand_kwargs)
register(Spec(
    "expand", _expand_cases, lambda x, sizes: x.expand(*sizes),
    lambda x, sizes: np.broadcast_to(x, _resolved(x, sizes)),
))
register(Spec(  # the same targets with every -1 resolved
    "broadcast_to", _expand_cases,
    lambda x, sizes: minigt.broadcast_to(x, _resolved(x, sizes)),
    lambda x, sizes: np.broadcast_to(x, _resolved(x, sizes)),
))

# ---- joining and splitting -----------------------------------------------------------------------


@st.composite
def _cat_cases(draw) -> Case:
    """1-3 inputs equal in shape except along `dim`."""
    shape, count = draw(shapes(min_dims=1)), draw(st.integers(1, 3))
    dim = draw(axes(len(shape)))
    lengths = draw(st.lists(st.integers(1, 3), min_size=count, max_size=count))
    pieces = [shape[:dim % len(shape)] + (n,) + shape[dim % len(shape) + 1:] for n in lengths]
    return Case(*(draw(arrays(s)) for s in pieces), dim=dim)


@st.composite
def _stack_cases(draw) -> Case:
    """1-3 inputs of one shape and a new dim's position."""
    shape, count = draw(shapes(max_dims=3)), draw(st.integers(1, 3))
    return Case(*(draw(arrays(shape)) for _ in range(count)), dim=draw(axes(len(shape) + 1)))


register(Spec(
    "cat", _cat_cases(), lambda *xs, dim: minigt.cat(xs, dim),
    lambda *xs, dim: np.concatenate(xs, axis=dim),
))
register(Spec(
    "stack", _stack_cases(), lambda *xs, dim: minigt.stack(xs, dim),
    lambda *xs, dim: np.stack(xs, axis=dim),
))


def _split_kwargs(draw, shape: tuple[int, ...]) -> dict:
    """A dim and either one piece size (the last piece may be shorter) or a list of sizes."""
    dim = draw(axes(len(shape)))
    length = shape[dim]
    cuts = sorted(draw(st.sets(st.integers(1, length - 1))) if length > 1 else [])
    sections = [b - a for a, b in zip([0] + cuts, cuts + [length])]
    return {"dim": dim, "split": draw(st.one_of(st.integers(1, length + 1), st.just(sections)))}


def _split_reference(x: np.ndarray, split, dim: int) -> tuple:
    length = x.shape[dim]
    bounds = range(split, length, split) if isinstance(split, int) else np.cumsum(split)[:-1]
    return tuple(np.split(x, list(bounds), axis=dim))


def _chunk_reference(x: np.ndarray, chunks: int, dim: int) -> tuple:
    return _split_reference(x, -(-x.shape[dim] // chunks), dim)  # pieces of ceil(n / chunks)


register(Spec(
    "split", _cases(_split_kwargs, min_dims=1), lambda x, split, dim: x.split(split, dim),
    _split_reference,
))
register(Spec(
    "chunk",
    _cases(lambda draw, s: {"chunks": draw(st.integers(1, 6)), "dim": draw(axes(len(s)))}, 1),
    minigt.chunk, _chunk_reference,
))

# ---- indexing: NumPy's semantics, so `op` is also the reference ----------------------------------


def _index(x, index):
    return x[index]


register(Spec(
    "getitem", _cases(lambda draw, shape: {"index": draw(basic_indices(shape))}), _index,
))
register(Spec(
    "getitem/mixed",
    _cases(lambda draw, shape: {"index": draw(mixed_indices(shape))}, min_dims=1), _index,
))


@st.composite
def _index_array_cases(draw) -> Case:
    """An integer index tensor (with a repeat) into the first dim."""
    shape = draw(shapes(min_dims=1))
    return Case(draw(arrays(shape)), draw(index_arrays(shape[0])))


@st.composite
def _mask_cases(draw) -> Case:
    """A bool mask tensor over the leading dims (x[x > 0] and friends)."""
    shape = draw(shapes(min_dims=1))
    return Case(draw(arrays(shape)), draw(masks(shape[:draw(st.integers(1, len(shape)))])))


register(Spec("getitem/index-tensor", _index_array_cases(), _index))
register(Spec("getitem/mask", _mask_cases(), _index))
