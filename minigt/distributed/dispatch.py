"""Running an op on DTensors: look up the op's sharding rule and let it run the op locally."""
from __future__ import annotations

from . import trace
from .dtensor import placement_of


class ShardingError(RuntimeError):
    """An op met placements it has no rule for; the message says what to do instead."""


def no_rule(op: str, inputs, why: str) -> ShardingError:
    placements = ", ".join(f"{placement_of(t)!r} {tuple(t.shape)}" for t in inputs)
    return ShardingError(
        f"{op}: no sharding rule for inputs [{placements}]: {why}. Redistribute an input first, "
        "e.g. t.redistribute(minigt.distributed.Replicate()) to gather it on every rank."
    )


def dispatch(cls, inputs: tuple, params: dict):
    """Apply the Function `cls` to inputs of which at least one is a DTensor."""
    from .rules import RULES

    rule = RULES.get(cls)
    if rule is None:
        raise no_rule(cls.__name__, inputs, "this op has no entry in minigt/distributed/rules.py")
    if not trace.enabled():
        return rule(cls, list(inputs), params)
    with trace.span(cls.__name__, "op"):
        return rule(cls, list(inputs), params)
