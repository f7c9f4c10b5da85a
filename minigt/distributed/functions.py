"""Communication as autograd Functions.

Two families, each with its backward written next to its forward:

1. Redistributions of DTensors (`redistribute`). They keep one rule about gradients: the
   gradient of a Shard value is sharded the same way, and the gradient of a Replicate or Partial
   value is complete (the same on every rank). So:
       Shard -> Replicate  (all-gather)      backward: keep my slice (no communication)
       Replicate -> Shard  (keep my slice)   backward: all-gather
       Partial -> Replicate (all-reduce)     backward: pass through
       Partial -> Shard    (reduce-scatter)  backward: all-gather
   A replicated value that feeds sharded compute receives only this rank's share of its gradient;
   `ReplicatedUse` marks that spot and all-reduces the shares (Megatron's "identity forward,
   all-reduce backward"). For leaf parameters it defers to one bucketed all-reduce per backward.

2. The public SPMD collectives on plain tensors (`all_reduce`, `all_gather`, `reduce_scatter`,
   `broadcast`), where every rank's result feeds its own loss and the objective is their sum:
   their backward is the dual collective (all-gather <-> reduce-scatter, all-reduce <-> all-reduce).
"""
from __future__ import annotations

from ..autograd import Function
from ..backends import array_module
from ..tensor import Tensor
from . import collectives, gradsync, world
from .dtensor import DTensor, group, local_range, placement_of, standard_sizes
from .placement import Partial, Placement, Replicate, Shard


def _slice_along(array, dim: int, start: int, stop: int):
    index = (slice(None),) * dim + (slice(start, stop),)
    return array[index]


class Alias(Function):
    """The same array under another name (a DTensor's local part as a plain tensor, or local
    parts taken as a DTensor);  gradient passes through."""

    output_is_view = True

    def forward(self, x):
        return x

    def backward(self, g):
        return g


class GatherShards(Function):
    """Shard(dim) -> Replicate by all-gather;  backward keeps this rank's slice of the gradient."""

    def forward(self, x, dim, sizes):
        self.dim, self.sizes = dim, sizes
        return collectives.all_gather(x, dim, sizes, group=group())

    def backward(self, g):
        return _slice_along(g, self.dim, *local_range(self.sizes))


class TakeShard(Function):
    """Replicate -> Shard(dim) by keeping this rank's slice;  backward all-gathers the gradient."""

    def forward(self, x, dim, sizes):
        self.dim, self.sizes = dim, sizes
        return _slice_along(x, dim, *local_range(sizes))

    def backward(self, g):
        return collectives.all_gather(g, self.dim, self.sizes, group=group())


class ReducePartial(Function):
    """Partial -> Replicate by all-reduce (sum);  the complete gradient passes through."""

    def forward(self, x):
        return collectives.all_reduce(x, "sum", group=group())

    def backward(self, g):
        return g


class ScatterPartial(Function):
    """Partial -> Shard(dim) by reduce-scatter;  backward all-gathers the gradient."""

    def forward(self, x, dim, sizes):
        self.dim, self.sizes = dim, sizes
        return collectives.reduce_scatter(x, dim, sizes, group=group())

    def backward(self, g):
        return collectives.all_gather(g, self.dim, self.sizes, group=group())


class ReplicatedUse(Function):
    """A replicated value entering sharded compute;  identity forward, all-reduce of the
    gradient shares backward (deferred to one bucketed all-reduce for leaves)."""

    output_is_view = True

    def forward(self, x):
        return x

    def backward(self, g):
        source = self.inputs[0]
        if source.grad_fn is None:  # a leaf (parameter): nothing waits on it during backward
            gradsync.defer(source, g)
            return None
        return collectives.all_reduce(g, "sum", group=group())


def use_replicated(t: Tensor) -> Tensor:
    """`t` marked as feeding sharded compute (a no-op when no gradient flows to it)."""
    if not t.requires_grad:
        return t
    return ReplicatedUse.apply_local((t,), {})


def redistribute(t: Tensor, target: Placement) -> DTensor:
    """`t` (a DTensor, or a plain tensor taken as replicated) with placement `target`."""
    source, shape = placement_of(t), t.shape
    if isinstance(target, Shard):
        if not -len(shape) <= target.dim < len(shape):
            raise IndexError(f"redistribute: Shard({target.dim}) is out of range for shape {shape}")
        target = Shard(target.dim % len(shape))
    if source == target:
        if isinstance(t, DTensor):
            return t
        # through an identity Function, so a leaf `t` still receives the gradient
        return DTensor._wrap(Alias.apply_local((t,), {}), source, shape)
    if isinstance(source, Shard) and isinstance(target, Shard):  # via the whole value, on request
        return redistribute(redistribute(t, Replicate()), target)
    if isinstance(source, Shard) and isinstance(target, Replicate):
        out = GatherShards.apply_local((t,), {"dim": source.dim, "sizes": t.sizes})
        return DTensor._wrap(out, target, shape)
    if isinstance(source, Replicate) and isinstance(target, Shard):
        sizes = standard_sizes(shape[target.dim])
        out = TakeShard.apply_local((t,), {"dim": target.dim, "sizes": sizes})
        return DTensor._wrap(out, target, shape, sizes)
    if isinstance(source, Partial) and isinstance(target, Replicate):
        return DTensor._wrap(ReducePartial.apply_local((t,), {}), target, shape)
    if isinstance(source, Partial) and isinstance(target, Shard):
        sizes = standard_sizes(shape[target.dim])
        out = ScatterPartial.apply_local((t,), {"dim": target.dim, "sizes": sizes})
        return DTensor._wrap(out, target, shape, sizes)
    raise ValueError(
        f"redistribute: cannot turn {source!r} into {target!r}: a Partial value comes only from a "
        "reduction over a sharded dim"
    )


# ---- public SPMD collectives --------------------------------------------------------------------


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
        self.dim, self.sizes = dim, collectives.shard_sizes(x.shape[dim], world.world_size())
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
