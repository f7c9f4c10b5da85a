"""The public SPMD collectives on plain tensors (`all_reduce`, `all_gather`, `reduce_scatter`,
`broadcast`) as autograd Functions. Every rank's result feeds its own loss and the objective is
their sum, so each backward is the dual collective (all-gather <-> reduce-scatter, all-reduce <->
all-reduce). On a DTensor they are the matching `redistribute`.
"""
from __future__ import annotations

from ..autograd import Function
from ..backends import array_module
from ..tensor import Tensor
from . import collectives, world
from .dtensor import DTensor, redistribute
from .placement import Partial, Replicate, Shard, shard_sizes


class AllReduce(Function):
    """y = Σ_r x_r (or mean, max);  dx_r = Σ_r' g_r' (scaled for mean; to the max's owners)."""

    def forward(self, x, op):
        self.op = op
        out = collectives.all_reduce(x, op)
        if op == "max":
            hits = (x == out).astype(x.dtype)
            self.share = hits / collectives.all_reduce(hits, "sum")
        return out

    def backward(self, g):
        total = collectives.all_reduce(g, "sum")
        if self.op == "mean":
            return total / world.world_size()
        if self.op == "max":
            return total * self.share
        return total


class AllGather(Function):
    """y = concat_r x_r along dim;  dx_r = rank r's slice of Σ_r' g_r' (a reduce-scatter)."""

    def forward(self, x, dim):
        self.dim = dim
        self.sizes = collectives.exchange_sizes(x.shape[dim])
        return collectives.all_gather(x, dim, self.sizes)

    def backward(self, g):
        return collectives.reduce_scatter(g, self.dim, self.sizes)


class ReduceScatter(Function):
    """y_r = rank r's slice of Σ_r' x_r' along dim;  dx_r = concat of all g (an all-gather)."""

    def forward(self, x, dim):
        self.dim, self.sizes = dim, shard_sizes(x.shape[dim], world.world_size())
        return collectives.reduce_scatter(x, dim, self.sizes)

    def backward(self, g):
        return collectives.all_gather(g, self.dim, self.sizes)


class Broadcast(Function):
    """y = x_root on every rank;  dx_root = Σ_r g_r, other ranks' x get no gradient."""

    def forward(self, x, root):
        self.root = root
        return collectives.broadcast(x, root)

    def backward(self, g):
        total = collectives.all_reduce(g, "sum")
        return total if world.rank() == self.root else array_module(total).zeros_like(total)


def _plain(op: str, t: Tensor) -> None:
    if not isinstance(t, Tensor):
        raise TypeError(f"{op}: expected a tensor, got {type(t).__name__}")


def all_reduce(t: Tensor, op: str = "sum") -> Tensor:
    """Every rank's tensors combined (sum, mean or max); a Partial DTensor becomes Replicate."""
    _plain("all_reduce", t)
    if op not in ("sum", "mean", "max"):
        raise ValueError(f"all_reduce: op must be 'sum', 'mean' or 'max', got {op!r}")
    if isinstance(t, DTensor):
        if not isinstance(t.placement, Partial) or op != "sum":
            raise ValueError(f"all_reduce: a DTensor must be Partial (got {t.placement!r}) with op "
                             "'sum'; use t.redistribute(...) to change other placements")
        return redistribute(t, Replicate())
    return AllReduce.apply_local((t,), {"op": op})


def all_gather(t: Tensor, dim: int = 0) -> Tensor:
    """Every rank's tensor joined along `dim` (parts may differ in length)."""
    _plain("all_gather", t)
    if isinstance(t, DTensor):
        return redistribute(t, Replicate())
    return AllGather.apply_local((t,), {"dim": dim % max(t.ndim, 1)})


def reduce_scatter(t: Tensor, dim: int = 0) -> Tensor:
    """The sum over ranks, of which rank r keeps the r-th part along `dim`."""
    _plain("reduce_scatter", t)
    if isinstance(t, DTensor):
        return redistribute(t, Shard(dim))
    return ReduceScatter.apply_local((t,), {"dim": dim % max(t.ndim, 1)})


def broadcast(t: Tensor, root: int = 0) -> Tensor:
    """Rank `root`'s tensor on every rank."""
    _plain("broadcast", t)
    if not 0 <= root < world.world_size():
        raise ValueError(f"broadcast: root {root} is not a rank of a world of {world.world_size()}")
    return Broadcast.apply_local((t,), {"root": root})
