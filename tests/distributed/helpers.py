"""Shared helpers for the multi-rank DTensor tests, and the property test's machinery.

Every rank runs the same tests on the same global data: `global_array` draws it from a seed, so
each rank builds the whole tensor and keeps its part. Checks that compare against a
single-process reference gather first (collectives), then compare locally, then agree: a
failure on any rank fails every rank the same way (`fail_together`), so Hypothesis shrinks alike
everywhere and no rank waits in a collective that another rank skipped. (An exception raised on
some ranks only, midway through an op, still leaves the others waiting: the per-test timeout in
conftest.py then ends the job with every rank's stack.)
"""
from __future__ import annotations

import hashlib
import pickle
import re
from dataclasses import dataclass, field

import numpy as np
from hypothesis import strategies as st

import minigt
import minigt.distributed as dist
from minigt.distributed import collectives, dispatch, gradsync, placement, world

RANK, SIZE = world.rank(), world.world_size()
TOL = dict(rtol=1e-10, atol=1e-10)


def gather_objects(obj) -> list:
    """Every rank's small Python object, in rank order (pickled; fine for a few bytes)."""
    return [obj] if SIZE == 1 else world.comm().allgather(obj)


def digest(*parts) -> str:
    """A short hash of arrays, shapes, placements, ... (to check every rank drew the same)."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.tobytes() + str(part.shape).encode() if isinstance(part, np.ndarray)
                 else pickle.dumps(repr(part)))
    return h.hexdigest()[:16]


def fail_together(error: str | None, same_on_every_rank=None) -> None:
    """Raise on every rank when any rank reports an error (None: this rank passed), or when
    `same_on_every_rank` (e.g. a digest of the drawn example) differs between ranks."""
    gathered = gather_objects((error, same_on_every_rank))
    errors = [e for e, _ in gathered]
    if any(errors):
        raise AssertionError("\n".join(f"[rank {r}] {e}" for r, e in enumerate(errors) if e))
    assert len({s for _, s in gathered}) == 1, f"ranks disagree: {[s for _, s in gathered]}"


def uneven(n_ranks: int) -> list[int]:
    """Uneven part lengths, some empty: 2, 0, 3, 1, 2, 0, ..."""
    return [(2, 0, 3, 1)[r % 4] for r in range(n_ranks)]


def global_array(shape, seed: int, kind: str = "normal") -> np.ndarray:
    """float64 data, the same on every rank. kind: 'normal', or 'positive' (in [0.5, 2))."""
    rng = np.random.default_rng([seed, 12345])
    if kind == "positive":
        return rng.uniform(0.5, 2.0, shape)
    return rng.standard_normal(shape)


def partial_parts(array: np.ndarray, seed: int) -> list[np.ndarray]:
    """`SIZE` arrays that add up to `array` (each rank holds one: a Partial value)."""
    rng = np.random.default_rng([seed, 777])
    noise = [rng.standard_normal(array.shape) for _ in range(SIZE - 1)]
    return [array - sum(noise, np.zeros_like(array))] + noise


def local_part(array: np.ndarray, dim: int, rank: int = RANK) -> np.ndarray:
    """Rank `rank`'s part of `array` cut along `dim` the standard way."""
    start, stop = placement.shard_range(placement.shard_sizes(array.shape[dim], SIZE), rank)
    return np.take(array, np.arange(start, stop), axis=dim)


def make_input(array: np.ndarray, placement, seed: int = 0, requires_grad: bool = True,
               device: str = "cpu"):
    """A leaf on `device` holding `array` as the global value: a plain tensor (placement None) or
    a DTensor leaf with that placement (Partial: each rank holds one of `partial_parts`)."""
    if placement is None:
        return minigt.tensor(array, requires_grad=requires_grad and array.dtype.kind == "f",
                             device=device)
    if isinstance(placement, dist.Partial):
        part = partial_parts(array, seed)[RANK]
        t = dist.from_local(minigt.tensor(part, device=device), dist.Partial())
    else:
        t = dist.redistribute(minigt.tensor(array, device=device), placement)
    t = t.detach()
    return t.requires_grad_() if requires_grad and array.dtype.kind == "f" else t


def global_value(t) -> np.ndarray:
    """The whole value of a tensor or DTensor (gathering or summing as its placement needs)."""
    with minigt.no_grad():
        return np.array(t.full_tensor().numpy() if isinstance(t, dist.DTensor) else t.numpy())


def check_layout(t) -> str | None:
    """Whether a DTensor's local part fits its placement and global shape (None if it does)."""
    if not isinstance(t, dist.DTensor):
        return None
    p, local = t.placement, tuple(t.data.shape)
    if isinstance(p, dist.Shard):
        expected = list(t.shape)
        if t.sizes is None or len(t.sizes) != SIZE or sum(t.sizes) != t.shape[p.dim]:
            return f"{p!r} of shape {t.shape}: part sizes {t.sizes} do not tile dim {p.dim}"
        expected[p.dim] = t.sizes[RANK]
        if local != tuple(expected):
            return f"{p!r} of shape {t.shape}, sizes {t.sizes}: local part has shape {local}"
    elif local != tuple(t.shape):
        return f"{p!r} of shape {t.shape}: local part has shape {local}"
    return None


def weights_for(shape, seed: int, device: str = "cpu") -> minigt.Tensor:
    """Random upstream weights w for the objective sum(w * out), the same on every rank."""
    return minigt.tensor(global_array(shape, seed + 1), device=device)


def weighted_sum(out, weights: minigt.Tensor):
    return (out * weights).sum()


def global_grad(leaf) -> np.ndarray:
    """A leaf's whole gradient (zeros when none reached it). A DTensor leaf's gradient must be
    sharded as the leaf is when it is a Shard, and complete (Replicate) otherwise."""
    if leaf.grad is None:
        return np.zeros(leaf.shape)
    if isinstance(leaf, dist.DTensor):
        expected = leaf.placement if isinstance(leaf.placement, dist.Shard) else dist.Replicate()
        assert leaf.grad.placement == expected, f"grad of a {leaf.placement!r} leaf is {leaf.grad.placement!r}"
        assert leaf.grad.sizes == leaf.sizes
    return global_value(leaf.grad)


def reference_run(fn, arrays, seed: int, device: str = "cpu"):
    """(value, gradients) of out = fn(*plain leaves) and of sum(w * out), single-process."""
    leaves = [make_input(a, None, device=device) for a in arrays]
    out = fn(*leaves)
    if not out.requires_grad:
        return out.numpy(), None
    weighted_sum(out, weights_for(out.shape, seed, device)).backward()
    return out.numpy(), [global_grad(t) for t in leaves]


def sharded_run(fn, arrays, placements, seed: int, device: str = "cpu"):
    """(out, value, gradients) of the same on inputs with `placements` (None: a plain tensor)."""
    leaves = [make_input(a, p, seed + i, device=device)
              for i, (a, p) in enumerate(zip(arrays, placements))]
    out = fn(*leaves)
    value = global_value(out)
    if not out.requires_grad:
        return out, value, None
    weighted_sum(out, weights_for(out.shape, seed, device)).backward()
    return out, value, [global_grad(t) for t in leaves]


def compare_runs(out, value, grads, expected_value, expected_grads) -> str | None:
    """What differs between a sharded run and the reference (None when nothing does)."""
    try:
        layout = check_layout(out)
        assert layout is None, layout
        assert tuple(out.shape) == expected_value.shape, f"shape {out.shape} != {expected_value.shape}"
        np.testing.assert_allclose(value, expected_value, **TOL, err_msg="forward")
        assert (grads is None) == (expected_grads is None), "one run has gradients, the other not"
        for i, (got, want) in enumerate(zip(grads or [], expected_grads or [])):
            np.testing.assert_allclose(got, want, **TOL, err_msg=f"gradient of input {i}")
    except AssertionError as error:
        return str(error)
    return None


def check_op(fn, arrays, placements, seed: int = 0, device: str = "cpu"):
    """Run `fn` on sharded inputs and on plain ones on `device`; assert (on every rank, when any
    rank differs) that value and gradients agree. Returns the sharded output."""
    expected = reference_run(fn, arrays, seed, device)
    out, value, grads = sharded_run(fn, arrays, placements, seed, device)
    fail_together(compare_runs(out, value, grads, *expected))
    return out


def mlp_params(seed: int, sizes=(3, 5, 2), device: str = "cpu") -> list:
    """W1, b1, W2, b2 of a tiny MLP: plain leaves, the same on every rank."""
    shapes = [(sizes[0], sizes[1]), (sizes[1],), (sizes[1], sizes[2]), (sizes[2],)]
    return [minigt.tensor(global_array(s, seed + i), requires_grad=True, device=device)
            for i, s in enumerate(shapes)]


def mlp_loss(params, x, y):
    w1, b1, w2, b2 = params
    return ((((x @ w1 + b1).relu() @ w2 + b2) - y) ** 2).mean()


def count_calls(monkeypatch, module, name: str) -> list:
    """Replace module.name by a wrapper that records each call's first argument."""
    calls, original = [], getattr(module, name)

    def recording(*args, **kwargs):
        calls.append(args[0] if args else None)
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, recording)
    return calls


# ---- the property test's machinery (test_rules_property.py) -------------------------------------

# What an oracle says of some placements: a rule runs them as they are, or none does (so the op
# redistributes its inputs first), or either is fine.
OK, MOVED, EITHER = "native", "redistributed", "either"


@dataclass
class Case:
    """One drawn op: `fn` applied to inputs holding `arrays`; `oracle(placements)` says whether
    a rule runs them natively; `names` is a regex matching the op redistributed when none does."""

    label: str
    fn: object
    arrays: list
    oracle: object
    names: str
    params: dict = field(default_factory=dict)


def placement_choices(array: np.ndarray) -> list:
    """Plain, Replicate, Shard(d) for each dim, and Partial for floats (a sum of integer
    class labels is no label)."""
    partial = [dist.Partial()] if array.dtype.kind == "f" else []
    return [None, dist.Replicate()] + partial + [dist.Shard(d) for d in range(array.ndim)]


@st.composite
def placements_for(draw, arrays):
    """A placement (None: a plain tensor) for each input, at least one a DTensor."""
    placements = tuple(draw(st.sampled_from(placement_choices(a))) for a in arrays)
    if all(p is None for p in placements):  # at least one DTensor
        i = draw(st.integers(0, len(arrays) - 1))
        choices = placement_choices(arrays[i])
        placements = placements[:i] + (draw(st.sampled_from(choices[1:])),) + placements[i + 1:]
    return placements


def verdict(case: Case, placements, seed: int, device: str = "cpu") -> str | None:
    """Run the case; what is wrong with the sharded run (None when nothing)."""
    gradsync._unplaced.clear()  # nothing left over from an earlier example that failed midway
    expectation = case.oracle(placements)
    reference = reference_run(case.fn, case.arrays, seed, device)
    before = dict(dispatch.redistributions)
    try:
        out, value, grads = sharded_run(case.fn, case.arrays, placements, seed, device)
    except Exception as error:  # noqa: BLE001 - nothing one process runs may fail; on every rank
        return f"{type(error).__name__}: {error}"
    moved = [op for op, n in dispatch.redistributions.items() if n > before.get(op, 0)]
    if expectation == OK and moved:
        return f"redistributed ({', '.join(moved)}) where a rule runs these placements natively"
    if expectation == MOVED and not any(re.search(case.names.replace("_", ""), op, re.I) for op in moved):
        return (f"no native rule promised, but {case.names} was not redistributed "
                f"(redistributed: {moved or 'nothing'}; output {out.placement!r})")
    return compare_runs(out, value, grads, *reference)
