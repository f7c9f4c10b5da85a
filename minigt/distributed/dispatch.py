"""Running an op on DTensors: each op family's sharding rule registers itself here
(`@sharding_rule(Function, ...)`, next to the rule in rules.py, shape_rules.py, nn_rules.py), and
`dispatch` -- which minigt.autograd calls for any op with a sharded input -- looks it up.

A rule receives the Function class, its inputs and params; it decides the output's placement,
runs the ordinary op on the local parts (`run_local`) and inserts only the communication it needs.
The helpers below are what every rule is built from.
"""
from __future__ import annotations

from .. import autograd
from ..ops.indexing import GetItem
from ..tensor import Tensor
from . import trace
from .dtensor import DTensor, local_range, placement_of, redistribute, use_replicated
from .placement import Partial, Replicate, ShardingError

RULES: dict = {}  # Function class -> rule(cls, inputs: list, params: dict) -> DTensor


def sharding_rule(*functions):
    """Register the decorated rule for these Function classes."""
    def register(rule):
        for cls in functions:
            RULES[cls] = rule
        return rule

    return register


def dispatch(cls, inputs: tuple, params: dict):
    """Apply the Function `cls` to inputs of which at least one is a DTensor."""
    rule = RULES.get(cls)
    if rule is None:
        raise no_rule(cls.__name__, inputs, "this op has no sharding rule (see "
                                            "minigt/distributed/dispatch.py to add one)")
    if not trace.enabled():
        return rule(cls, list(inputs), params)
    with trace.span(cls.__name__, "op"):
        return rule(cls, list(inputs), params)


autograd.sharded_dispatch = dispatch  # the slot Function.apply calls for sharded inputs


def no_rule(op: str, inputs, why: str) -> ShardingError:
    placements = ", ".join(f"{placement_of(t)!r} {tuple(t.shape)}" for t in inputs)
    return ShardingError(
        f"{op}: no sharding rule for inputs [{placements}]: {why}. Redistribute an input first, "
        "e.g. t.redistribute(minigt.distributed.Replicate()) to gather it on every rank."
    )


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
