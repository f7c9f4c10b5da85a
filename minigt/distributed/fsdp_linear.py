"""A fully sharded Linear fed few rows: the inputs travel instead of the weight.

A fully sharded unit gathers its whole parameters before it runs. For a Linear whose inputs hold
fewer rows over all ranks than its weight has (an embedding of a few images 40000 pixels wide, or
any layer at a small batch), moving the inputs costs fewer bytes, and no rank ever holds the whole
weight. Rank k owns rows k of W (out features) and of b:

    forward    x  = every rank's rows of the input, all-gathered
               yₖ = x Wₖᵀ + bₖ                  this rank's output columns, for every row
               y  = the yₖ all-gathered along the columns; this rank keeps its own rows
    backward   g  = every rank's rows of the output gradient, all-gathered; gₖ its columns k
               ∂Wₖ = gₖᵀ x,  ∂bₖ = Σ gₖ          whole for the rows this rank owns: no reduce-scatter
               ∂x = Σₖ gₖ Wₖ                     reduce-scattered back to the ranks' rows
"""
from __future__ import annotations

import math

from ..autograd import Function
from ..nn import Linear
from . import collectives
from .dtensor import DTensor, group, local_range
from .placement import Shard


def gathers_inputs(module, owned: list, inputs: tuple) -> bool:
    """Whether fully sharded `module` runs as a Linear on gathered inputs: it is a Linear owning
    its parameters, fed one input sharded by rows, and the rows are fewer than its outputs."""
    if not isinstance(module, Linear) or len(inputs) != 1 or len(owned) != len(_params(module)):
        return False
    x = inputs[0]
    return isinstance(x, DTensor) and x.placement == Shard(0) and x.ndim >= 2 and \
        x.shape[-1] == module.in_features and math.prod(x.shape[:-1]) < module.out_features


def linear(module, x: DTensor) -> DTensor:
    """`module(x)` for a fully sharded Linear whose input rows are few (see the docstring)."""
    per_sample = math.prod(x.shape[1:-1])
    rows = tuple(s * per_sample for s in x.sizes)
    params = _params(module)
    out = GatheredInputLinear.apply_local((x, *params), dict(rows=rows, cols=params[0].sizes))
    return DTensor._wrap(out, Shard(0), (*x.shape[:-1], module.out_features), x.sizes)


def _params(module) -> tuple:
    return (module.weight,) if module.bias is None else (module.weight, module.bias)


class GatheredInputLinear(Function):
    """y = x Wᵀ + b, each rank holding rows of x and Shard(0) rows of W and b (see above);
    ∂W = gᵀx and ∂b = Σ g for this rank's rows of W, ∂x = g W."""

    def forward(self, x, weight, *bias, rows, cols):
        self.rows, self.cols, self.shape, self.weight = rows, cols, x.shape, weight
        self.x = collectives.all_gather(x.reshape(-1, x.shape[-1]), 0, rows, group=group())
        mine = self.x @ weight.T
        if bias:
            mine += bias[0]
        y = collectives.all_gather(mine, 1, cols, group=group())
        start, stop = local_range(rows)
        return y[start:stop].reshape(*x.shape[:-1], y.shape[1])

    def backward(self, g):
        g = collectives.all_gather(g.reshape(-1, g.shape[-1]), 0, self.rows, group=group())
        g = g[:, slice(*local_range(self.cols))]
        grads = (g.T @ self.x,) + ((g.sum(axis=0),) if len(self.needs_input_grad) == 3 else ())
        dx = None
        if self.needs_input_grad[0]:
            dx = collectives.reduce_scatter(g @ self.weight, 0, self.rows, group=group())
            dx = dx.reshape(self.shape)
        return (dx, *grads)
