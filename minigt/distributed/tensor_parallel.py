"""Tensor parallelism (Megatron-style): one layer's weight split across the ranks of a tensor
group, each rank computing its slice of the layer.

    ColumnParallelLinear  W split by output rows: each rank computes some output features.
                          Its input enters through `copy_to_tensor_parallel`: identity forward,
                          gradient summed over the group backward (each rank saw part of it).
    RowParallelLinear     W split by input columns: each rank turns its features into a partial
                          output; `reduce_from_tensor_parallel` sums them (identity backward),
                          then the bias is added once.
Column -> activation -> Row costs one all-reduce forward and one backward. Each layer draws the
full weight exactly as nn.Linear would and keeps its slice, so a model initialises to the same
values at any tensor-parallel size. Data parallelism (DTensors) runs over the data group beside.
"""
from __future__ import annotations


from ..autograd import Function
from ..nn import Linear, Module
from ..nn import functional as F
from ..nn.parameter import Parameter
from ..tensor import Tensor
from . import collectives, world


class CopyToTensorParallel(Function):
    """x entering tensor-parallel compute;  identity forward, dx = Σ over the tensor group of g."""

    output_is_view = True

    def forward(self, x):
        return x

    def backward(self, g):
        return collectives.all_reduce(g, "sum", group=world.tensor_group())


class ReduceFromTensorParallel(Function):
    """y = Σ over the tensor group of the partial outputs x;  dx = g."""

    def forward(self, x):
        return collectives.all_reduce(x, "sum", group=world.tensor_group())

    def backward(self, g):
        return g


def copy_to_tensor_parallel(x: Tensor) -> Tensor:
    return CopyToTensorParallel.apply(x)


def reduce_from_tensor_parallel(x: Tensor) -> Tensor:
    return ReduceFromTensorParallel.apply(x)


class TensorParallelParameter(Parameter):
    """A parameter of which this rank holds the slice along `split_dim`; state dicts carry the
    whole value, so checkpoints load at any tensor-parallel size."""

    __slots__ = ("split_dim", "full_shape")

    def full_value(self, part: Tensor | None = None) -> Tensor:
        """The whole parameter (or the whole of `part`, e.g. its optimizer state), gathered over
        the tensor group (collective)."""
        local = self.data if part is None else part.data
        sizes = [self.data.shape[self.split_dim]] * world.tensor_group().size
        whole = collectives.all_gather(local, self.split_dim, sizes, group=world.tensor_group())
        return Tensor._make(whole, False, None)

    def local_part(self, whole):
        """This rank's slice of a whole value being loaded."""
        if tuple(whole.shape) != self.full_shape:
            return whole  # let load_state_dict report the mismatch against the full shape
        return _slice(whole, self.split_dim)


def _slice(array, dim: int):
    g = world.tensor_group()
    n = array.shape[dim] // g.size
    index = (slice(None),) * dim + (slice(g.rank * n, (g.rank + 1) * n),)
    return array[index]


def _split(param: Parameter, dim: int, layer: str) -> TensorParallelParameter:
    size = world.tensor_group().size
    if param.shape[dim] % size:
        raise ValueError(f"{layer}: dim {dim} of the weight ({param.shape[dim]}) is not divisible by "
                         f"the tensor-parallel size {size}")
    part = TensorParallelParameter(_slice(param.data, dim).copy())
    part.split_dim, part.full_shape = dim, param.shape
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
        return F.linear(copy_to_tensor_parallel(x), self.weight, self.bias)

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
        y = reduce_from_tensor_parallel(F.linear(x, self.weight))
        return y if self.bias is None else y + self.bias

    def extra_repr(self) -> str:
        return f"in_features={self.in_features}, out_features={self.out_features}, " \
               f"tensor_parallel={world.tensor_group().size}"


__all__ = ["ColumnParallelLinear", "RowParallelLinear", "TensorParallelParameter",
           "copy_to_tensor_parallel", "reduce_from_tensor_parallel"]
