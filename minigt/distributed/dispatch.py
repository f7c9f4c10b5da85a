"""Running an op on DTensors: each op family's sharding rule registers itself here
(`@sharding_rule(Function, ...)`, next to the rule in rules.py, shape_rules.py, nn_rules.py), and
`dispatch` -- which minigt.autograd calls for any op with a sharded input -- looks it up.

A rule receives the Function class, its inputs and params; it decides the output's placement,
runs the ordinary op on the local parts (`run_local`) and inserts only the communication it needs.
The helpers below are what every rule is built from.
"""
from __future__ import annotations

import os
import warnings
from collections import Counter

from .. import autograd
from ..ops.indexing import GetItem
from ..tensor import Tensor
from . import checks, trace
from .dtensor import DTensor, group, local_range, placement_of, redistribute, use_replicated
from .placement import Partial, Replicate, Shard, ShardingError

RULES: dict = {}  # Function class -> rule(cls, inputs: list, params: dict) -> DTensor
redistributions: Counter = Counter()  # op name -> how often no rule ran it as placed
_DEBUG = os.environ.get("MINIGT_DEBUG", "0") == "1"


def sharding_rule(*functions):
    """Register the decorated rule for these Function classes."""
    def register(rule):
        for cls in functions:
            RULES[cls] = rule
        return rule

    return register


class NoRule(ShardingError):
    """A rule has no native way to run these placements: `dispatch` redistributes and retries."""


def dispatch(cls, inputs: tuple, params: dict):
    """Apply the Function `cls` to inputs of which at least one is a DTensor."""
    rule = RULES.get(cls, whole_values_only)
    if not trace.enabled():
        return _run(cls, rule, inputs, params)
    with trace.span(cls.__name__, "op"):
        return _run(cls, rule, inputs, params)


def _run(cls, rule, inputs, params):
    try:
        return rule(cls, list(inputs), params)
    except NoRule as refusal:
        return redistributed(cls, rule, inputs, params, refusal)


autograd.sharded_dispatch = dispatch  # the slot Function.apply calls for sharded inputs


def whole_values_only(cls, inputs, params) -> DTensor:
    """The rule of an op that has none of its own: it runs on replicated inputs only (so
    sharded ones are gathered first)."""
    if not all(placement_of(t).is_replicate() for t in inputs):
        raise no_rule(cls.__name__, inputs, "this op has no sharding rule (see "
                                            "minigt/distributed/dispatch.py to add one)")
    out = cls.apply_local(tuple(inputs), params)
    return DTensor._wrap(out, Replicate(), out.shape)


def no_rule(op: str, inputs, why: str) -> NoRule:
    placements = ", ".join(f"{placement_of(t)!r} {tuple(t.shape)}" for t in inputs)
    return NoRule(
        f"{op}: no sharding rule for inputs [{placements}]: {why}. Redistribute an input first, "
        "e.g. t.redistribute(minigt.distributed.Replicate()) to gather it on every rank."
    )


# ---- when no rule fits: move the data, then run a rule that does -------------------------------

_warned: set = set()  # (op, placements) pairs already reported under MINIGT_DEBUG=1


def redistributed(cls, rule, inputs, params, refusal: NoRule):
    """Run `cls` after redistributing its inputs to placements a rule accepts, cheapest first:
    shards of one dim but different lengths cut alike (one input gathered); then every input
    whole (gathered or summed), with one input re-cut along each other dim in turn when that
    lets the op run on parts. The same program then gives the same numbers at any rank count;
    MINIGT_TRACE counts these ("redistribute" events) and MINIGT_DEBUG=1 names each once."""
    moved_params = _whole_index(params)  # once: each candidate would gather it again
    for how, candidate in _candidates(inputs):
        try:
            with trace.span(f"redistribute for {cls.__name__}: {how}", "redistribute"):
                out = rule(cls, candidate(), moved_params)
        except NoRule:
            continue
        redistributions[cls.__name__] += 1
        _report(cls.__name__, inputs, how)
        return out
    raise refusal


def _candidates(inputs):
    """(description, thunk giving the redistributed inputs), cheapest first."""
    shards = [(i, t) for i, t in enumerate(inputs) if placement_of(t).is_shard()]
    first = shards[0][1] if shards else None
    if first is not None and any(t.sizes != first.sizes and t.placement == first.placement
                                 for _, t in shards):
        yield (f"shards cut like input {shards[0][0]}'s {first.sizes}",
               lambda: [redistribute(t, t.placement, first.sizes)
                        if placement_of(t) == first.placement else t for t in inputs])
    whole = None

    def gathered():
        nonlocal whole
        if whole is None:
            whole = [t if placement_of(t).is_replicate() else redistribute(t, Replicate())
                     for t in inputs]
        return whole

    if len(shards) == 1 and len(inputs) == 1:
        x = inputs[0]
        for dim in range(x.ndim):
            if dim != x.placement.dim and x.shape[dim] > 1:
                yield (f"re-cut along dim {dim}",
                       lambda dim=dim: [redistribute(gathered()[0], Shard(dim))])
    yield "gathered whole", gathered


def _whole_index(params: dict) -> dict:
    """params with any sharded or Partial tensors inside an index made whole."""
    index = params.get("index")
    parts = index if isinstance(index, tuple) else (index,)
    if not any(isinstance(p, Tensor) and not placement_of(p).is_replicate() for p in parts):
        return params
    whole = tuple(redistribute(p, Replicate()) if isinstance(p, Tensor) else p for p in parts)
    return {**params, "index": whole if isinstance(index, tuple) else whole[0]}


def _report(op: str, inputs, how: str) -> None:
    placements = tuple(repr(placement_of(t)) for t in inputs)
    if not _DEBUG or (op, placements) in _warned or group().rank != 0:
        return
    _warned.add((op, placements))
    file, line = checks.call_site()  # the warning points at the user's line, not at minigt's
    warnings.warn_explicit(
        f"{op}: no sharding rule runs inputs placed [{', '.join(placements)}] as they are, so "
        f"they were redistributed ({how}). Redistribute them yourself to choose the placement.",
        UserWarning, file, line)


# ---- what rules are made of ---------------------------------------------------------------------

def run_local(cls, inputs, params, placement, shape, sizes=None) -> DTensor:
    """Apply `cls` to the local parts and label the result with its global placement."""
    return DTensor._wrap(cls.apply_local(tuple(inputs), params), placement, shape, sizes)


def settle_partials(inputs: list) -> list:
    """Sum Partial inputs over ranks (all-reduce), for ops that are not linear in them."""
    return [redistribute(t, Replicate()) if placement_of(t).is_partial() else t for t in inputs]


def slice_replicated(t: Tensor, dim: int, sizes) -> Tensor:
    """This rank's part of a replicated operand along `dim`, gradient summed over ranks."""
    start, stop = local_range(sizes)
    index = (slice(None),) * dim + (slice(start, stop),)
    return GetItem.apply_local((use_replicated(t),), {"index": index})


def contract_sharded(cls, a, dim_a: int, b, dim_b: int, params, shape):
    """An op that sums over a's `dim_a` against b's `dim_b` (matmul, linear), when either is sharded
    there: each rank contracts its slice (a replicated operand sliced to match), and the output is
    Partial. None when the contracted dims are not sharded that way."""
    pa, pb = placement_of(a), placement_of(b)
    if pa.is_shard(dim_a) and pb.is_shard(dim_b) and a.sizes == b.sizes:
        parts = [a, b]
    elif pa.is_shard(dim_a) and pb.is_replicate():
        parts = [a, slice_replicated(b, dim_b, a.sizes)]
    elif pb.is_shard(dim_b) and pa.is_replicate():
        parts = [slice_replicated(a, dim_a, b.sizes), b]
    else:
        return None
    return run_local(cls, parts, params, Partial(), shape)
