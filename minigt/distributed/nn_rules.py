"""Sharding rules for minigt.nn's fused Functions (linear, layer_norm, cross_entropy).

  linear         x S(d) (not the features) with W, b replicated -> S(d)      (data parallel)
                 x R with W S(0), b S(0) -> S(last)                           (column parallel)
                 x S(last) with W S(1) or W replicated, no bias -> P          (row parallel)
  layer_norm     sharded along a dim it does not normalise -> local
  cross_entropy  rows sharded (targets sharded alike or replicated) -> local; 'sum' -> P,
                 'mean' -> P over the global count of counted rows (one small all-reduce)
"""
from __future__ import annotations

import numpy as np

from ..backends import array_module
from ..ops import elementwise as ew
from ..tensor import Tensor
from . import collectives
from .dispatch import no_rule
from .dtensor import group, placement_of
from .functions import use_replicated
from .placement import Partial, Replicate, Shard


def _rules():
    from . import rules

    return rules


def linear(cls, inputs, params):
    rules = _rules()
    x, weight, *bias = rules.settle_partials(inputs)
    px, pw = placement_of(x), placement_of(weight)
    shape = x.shape[:-1] + (weight.shape[0],)
    features = x.ndim - 1
    if pw.is_replicate() and all(placement_of(b).is_replicate() for b in bias):
        affine = [use_replicated(t) for t in (weight, *bias)] if not px.is_replicate() else [weight, *bias]
        if px.is_replicate():
            return rules.run_local(cls, [x, *affine], params, Replicate(), shape)
        if px.dim != features:
            return rules.run_local(cls, [x, *affine], params, px, shape, x.sizes)
        if not bias:
            local_weight = rules.slice_replicated(weight, 1, x.sizes)
            return rules.run_local(cls, [x, local_weight], params, Partial(), shape)
    if pw.is_shard(0) and px.is_replicate() and all(placement_of(b).is_shard(0) for b in bias):
        return rules.run_local(cls, [use_replicated(x), weight, *bias], params,
                               Shard(len(shape) - 1), shape, weight.sizes)
    if pw.is_shard(1) and px.is_shard(features) and not bias and x.sizes == weight.sizes:
        return rules.run_local(cls, [x, weight], params, Partial(), shape)
    raise no_rule("linear", inputs, "supported: data-parallel x, column-parallel W (S(0)), or "
                                    "row-parallel W (S(1)) with x sharded on features and no bias")


def layer_norm(cls, inputs, params):
    rules = _rules()
    x, *affine = rules.settle_partials(inputs)
    px = placement_of(x)
    if px.is_replicate() and all(placement_of(t).is_replicate() for t in affine):
        return rules.run_local(cls, [x, *affine], params, Replicate(), x.shape)
    if px.is_shard() and px.dim < x.ndim - params["k"] and all(placement_of(t).is_replicate() for t in affine):
        affine = [use_replicated(t) for t in affine]
        return rules.run_local(cls, [x, *affine], params, px, x.shape, x.sizes)
    raise no_rule("layer_norm", inputs, "it normalises over a sharded dim")


def cross_entropy(cls, inputs, params):
    rules = _rules()
    logits, target = rules.settle_partials(inputs)
    pl, pt = placement_of(logits), placement_of(target)
    rows = logits.shape[:1]
    if pl.is_replicate() and pt.is_replicate():
        shape = rows if params["reduction"] == "none" else ()
        return rules.run_local(cls, [logits, target], params, Replicate(), shape)
    if not pl.is_shard(0):
        raise no_rule("cross_entropy", inputs, "only rows (dim 0) of the logits may be sharded")
    if pt.is_replicate():
        target = rules.slice_replicated(target, 0, logits.sizes)
    elif not (pt.is_shard(0) and target.sizes == logits.sizes):
        raise no_rule("cross_entropy", inputs, "targets must be sharded like the logits' rows")
    reduction = params["reduction"]
    if reduction == "none":
        return rules.run_local(cls, [logits, target], params, Shard(0), rows, logits.sizes)
    summed = cls.apply_local((logits, target), {**params, "reduction": "sum"})
    if reduction == "sum":
        return rules.DTensor._wrap(summed, Partial(), ())
    xp = array_module(summed.data)
    # a float64 0-d array on the targets' device (float() would wait for a GPU)
    counted = xp.asarray((target.data != params["ignore_index"]).sum(dtype=np.float64))
    count = collectives.all_reduce(counted, "sum", group=group())
    scale = Tensor._make((1 / count).astype(summed.data.dtype), False, None)
    return rules.run_local(ew.Mul, [summed, scale], {}, Partial(), ())
