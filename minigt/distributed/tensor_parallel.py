"""Tensor parallelism (Megatron-style): one layer's weight split across the ranks of a tensor
group, each rank computing its slice of the layer.

The layers are the DTensor linear rule's two tensor-parallel cases, run over the tensor group
with the same Functions that data parallelism uses over the data group:
    ColumnParallelLinear  W placed Shard(0) (output rows): x is replicated over the group, so it
                          enters through `ReplicatedUse` (identity forward, gradient all-reduced
                          backward); each rank computes its slice of the output features.
    RowParallelLinear     W placed Shard(1) (input columns): each rank turns its features into a
                          Partial output; `ReducePartial` sums it (identity backward), then the
                          bias is added once.
Column -> activation -> Row costs one all-reduce forward and one backward. Each layer draws the
full weight exactly as nn.Linear would and keeps its slice, so a model initialises to the same
values at any tensor-parallel size. Activations stay DTensors over the data group, so data
parallelism runs beside (its rules treat these two Functions as local, `@sharding_rule` below).
"""
from __future__ import annotations

from ..nn import Linear, Module
from ..nn import functional as F
from ..nn.parameter import Parameter
from ..tensor import Tensor
from . import collectives, world
from .dispatch import sharding_rule
from .dtensor import ReducePartial, ReplicatedUse
from .placement import Shard, shard_range, shard_sizes
from .rules import elementwise

sharding_rule(ReplicatedUse, ReducePartial)(elementwise)  # over the tensor group: local rows here


class TensorParallelParameter(Parameter):
    """A parameter of which this rank holds the `Shard(dim)` slice over the tensor group; state
    dicts carry the whole value, so checkpoints load at any tensor-parallel size."""

    __slots__ = ("shard", "full_shape")

    def full_value(self, part: Tensor | None = None) -> Tensor:
        """The whole parameter (or the whole of `part`, e.g. its optimizer state), gathered over
        the tensor group (collective)."""
        local = self.data if part is None else part.data
        g = world.tensor_group()
        sizes = shard_sizes(self.full_shape[self.shard.dim], g.size)
        return Tensor._make(collectives.all_gather(local, self.shard.dim, sizes, group=g), False, None)

    def local_part(self, whole):
        """This rank's slice of a whole value being loaded."""
        if tuple(whole.shape) != self.full_shape:
            return whole  # let load_state_dict report the mismatch against the full shape
        return _slice(whole, self.shard.dim)

    @staticmethod
    def combine_parts(value, op: str):
        """Slices of one weight: this rank's part of a norm is combined over the tensor group."""
        return collectives.all_reduce_number(value, op, group=world.tensor_group())


def _slice(array, dim: int):
    g = world.tensor_group()
    start, stop = shard_range(shard_sizes(array.shape[dim], g.size), g.rank)
    return array[(slice(None),) * dim + (slice(start, stop),)]


def _split(param: Parameter, dim: int, layer: str) -> TensorParallelParameter:
    size = world.tensor_group().size
    if param.shape[dim] % size:
        raise ValueError(f"{layer}: dim {dim} of the weight ({param.shape[dim]}) is not divisible by "
                         f"the tensor-parallel size {size}")
    part = TensorParallelParameter(_slice(param.data, dim).copy())
    part.shard, part.full_shape = Shard(dim), param.shape
    return part


class ColumnParallelLinear(Module):
    """y = x Wᵀ + b with W's output rows (and b) split over the tensor group: this rank's y holds
    out_features / tp of the features."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        whole = Linear(in_features, out_features, bias)  # the same draws as an unsplit layer
        self.in_features, self.out_features = in_features, out_features
        self.weight = _split(whole.weight, 0, "ColumnParallelLinear")
        if bias:
            self.bias = _split(whole.bias, 0, "ColumnParallelLinear")
        else:
            self.register_parameter("bias", None)

    def forward(self, x: Tensor) -> Tensor:
        x = ReplicatedUse.apply(x, over=world.tensor_group())  # R with W Shard(0) -> Shard(last)
        return F.linear(x, self.weight, self.bias)

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, " \
               f"tensor_parallel={world.tensor_group().size}"


class RowParallelLinear(Module):
    """y = Σ_ranks x_r W_rᵀ + b with W's input columns split over the tensor group: takes the
    features a ColumnParallelLinear left on this rank, returns the whole y on every rank."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        whole = Linear(in_features, out_features, bias)
        self.in_features, self.out_features = in_features, out_features
        self.weight = _split(whole.weight, 1, "RowParallelLinear")
        if bias:
            self.bias = whole.bias
        else:
            self.register_parameter("bias", None)

    def forward(self, x: Tensor) -> Tensor:
        partial = F.linear(x, self.weight)  # Shard(last) with W Shard(1) -> Partial
        y = ReducePartial.apply(partial, over=world.tensor_group())
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, " \
               f"tensor_parallel={world.tensor_group().size}"


__all__ = ["ColumnParallelLinear", "RowParallelLinear", "TensorParallelParameter"]
