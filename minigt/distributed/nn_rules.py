"""Sharding rules for minigt.nn's fused Functions (linear, layer_norm, cross_entropy).

  linear         x S(d) (not the features) with W, b replicated -> S(d)      (data parallel;
                 leaf W, b send their gradients as factors: DataParallelLinear)
                 x R with W S(0), b S(0) -> S(last)                           (column parallel)
                 no bias, x's features or W's columns sharded (the other
                 sharded alike or replicated) -> P                            (row parallel)
  layer_norm     sharded along a dim it does not normalise -> local
  cross_entropy  rows sharded (targets sharded alike or replicated) -> local; 'sum' -> P,
                 'mean' -> P over the global count of counted rows (one small all-reduce)
"""
from __future__ import annotations

import math

import numpy as np

from ..backends import array_module
from ..nn.functional.linear import LinearFn
from ..nn.functional.losses import CrossEntropyFn
from ..nn.functional.normalization import LayerNormFn
from ..ops import elementwise as ew
from ..tensor import Tensor
from . import collectives, gradsync
from .dispatch import (
    contract_sharded, no_rule, run_local, settle_partials, sharding_rule, slice_replicated,
)
from .dtensor import DTensor, GatherShards, group, placement_of, use_replicated
from .placement import Partial, Replicate, Shard


class DataParallelLinear(LinearFn):
    """LinearFn on this rank's rows of x, W and b replicated leaves (parameters); dx as LinearFn,
    but dW = gᵀx and db = Σ g leave as this rank's rows of g and x (gradsync.Factors), which
    gradsync gathers instead of summing out × in numbers when the rows are few."""

    def forward(self, x, weight, *bias, counts):
        self.counts = counts  # every rank's row count
        return super().forward(x, weight, *bias)

    def backward(self, g):
        g = g.reshape(self.rows.shape[0], g.shape[-1])
        needs = self.needs_input_grad
        gx = (g @ self.weight).reshape(self.x_shape) if needs[0] else None
        g = g.copy()  # kept until the bucket is summed; backward may reuse its own buffers
        if needs[1]:
            _hand_over(self.inputs[1], gradsync.Factors(g, self.rows, self.counts))
        if len(needs) == 3 and needs[2]:
            _hand_over(self.inputs[2], gradsync.Factors(g, None, self.counts))
        return (gx,) + (None,) * (len(needs) - 1)


def _hand_over(t: Tensor, share) -> None:
    """A gradient share to whoever sums it: gradsync for a parameter, the fully sharded unit
    that gathered a borrowed one."""
    if t.grad_fn is None:
        gradsync.defer(t, share)
    else:
        t.grad_fn.collect(share)


def _parameter(t: Tensor) -> bool:
    """A replicated leaf that wants a gradient (gradsync sums its shares), or a fully sharded
    parameter's whole value borrowed by its unit (which sums them: fsdp.py)."""
    if not t.requires_grad:
        return False
    if t.grad_fn is None:
        return not isinstance(t, DTensor)
    return placement_of(t).is_replicate() and isinstance(t.grad_fn, GatherShards) and \
        t.grad_fn.collect is not None


@sharding_rule(LinearFn)
def linear(cls, inputs, params):
    x, weight, *bias = settle_partials(inputs)
    px, pw = placement_of(x), placement_of(weight)
    shape = x.shape[:-1] + (weight.shape[0],)
    features = x.ndim - 1
    if not bias:  # y = x Wᵀ sums x's features against W's columns, like matmul
        contracted = contract_sharded(cls, x, features, weight, 1, params, shape)
        if contracted is not None:
            return contracted
    if pw.is_replicate() and all(placement_of(b).is_replicate() for b in bias):
        if px.is_replicate():
            return run_local(cls, [x, weight, *bias], params, Replicate(), shape)
        if px.dim != features and cls is LinearFn and all(map(_parameter, (weight, *bias))):
            per_row = math.prod(n for d, n in enumerate(x.shape[:-1]) if d != px.dim)
            counts = tuple(size * per_row for size in x.sizes)
            return run_local(DataParallelLinear, [x, weight, *bias], {"counts": counts}, px,
                             shape, x.sizes)
        if px.dim != features:
            affine = [use_replicated(t) for t in (weight, *bias)]
            return run_local(cls, [x, *affine], params, px, shape, x.sizes)
    if pw.is_shard(0) and px.is_replicate() and all(placement_of(b).is_shard(0) for b in bias):
        return run_local(cls, [use_replicated(x), weight, *bias], params,
                         Shard(len(shape) - 1), shape, weight.sizes)
    raise no_rule("linear", inputs, "supported: data-parallel x, column-parallel W (S(0)), or "
                                    "row-parallel W (S(1)) with x sharded on features and no bias")


@sharding_rule(LayerNormFn)
def layer_norm(cls, inputs, params):
    x, *affine = settle_partials(inputs)
    px = placement_of(x)
    if px.is_replicate() and all(placement_of(t).is_replicate() for t in affine):
        return run_local(cls, [x, *affine], params, Replicate(), x.shape)
    if px.is_shard() and px.dim < x.ndim - params["k"] and all(placement_of(t).is_replicate() for t in affine):
        affine = [use_replicated(t) for t in affine]
        return run_local(cls, [x, *affine], params, px, x.shape, x.sizes)
    raise no_rule("layer_norm", inputs, "it normalises over a sharded dim")


@sharding_rule(CrossEntropyFn)
def cross_entropy(cls, inputs, params):
    logits, target = settle_partials(inputs)
    pl, pt = placement_of(logits), placement_of(target)
    rows = logits.shape[:1]
    if pl.is_replicate() and pt.is_replicate():
        shape = rows if params["reduction"] == "none" else ()
        return run_local(cls, [logits, target], params, Replicate(), shape)
    if not pl.is_shard(0):
        raise no_rule("cross_entropy", inputs, "only rows (dim 0) of the logits may be sharded")
    if pt.is_replicate():
        target = slice_replicated(target, 0, logits.sizes)
    elif not (pt.is_shard(0) and target.sizes == logits.sizes):
        raise no_rule("cross_entropy", inputs, "targets must be sharded like the logits' rows")
    reduction = params["reduction"]
    if reduction == "none":
        return run_local(cls, [logits, target], params, Shard(0), rows, logits.sizes)
    summed = cls.apply_local((logits, target), {**params, "reduction": "sum"})
    if reduction == "sum":
        return DTensor._wrap(summed, Partial(), ())
    xp = array_module(summed.data)
    # a float64 0-d array on the targets' device (float() would wait for a GPU)
    counted = xp.asarray((target.data != params["ignore_index"]).sum(dtype=np.float64))
    count = collectives.all_reduce(counted, "sum", group=group())
    scale = Tensor._make((1 / count).astype(summed.data.dtype), False, None)
    return run_local(ew.Mul, [summed, scale], {}, Partial(), ())
