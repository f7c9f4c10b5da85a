"""DTensor: one rank's part of a tensor that lives across all ranks, and how it changes placement.

`data` holds this rank's local array; `placement` says how the parts make up the global value
(see placement.py); `shape` is the *global* shape, so user code reads the same at any world size.
Ops on DTensors go through `dispatch.py`, which runs the op's sharding rule.

Changing a placement (`redistribute`) is made of autograd Functions, each backward beside its
forward. They keep one rule about gradients: the gradient of a Shard value is sharded the same
way, and the gradient of a Replicate or Partial value is complete (the same on every rank). So:
    Shard -> Replicate  (all-gather)      backward: keep my slice (no communication)
    Replicate -> Shard  (keep my slice)   backward: all-gather
    Partial -> Replicate (all-reduce)     backward: pass through
    Partial -> Shard    (reduce-scatter)  backward: all-gather
A replicated value that feeds sharded compute receives only this rank's share of its gradient;
`ReplicatedUse` marks that spot and all-reduces the shares (Megatron's "identity forward,
all-reduce backward"). For leaf parameters it defers to one bucketed all-reduce per backward.
"""
from __future__ import annotations

import math

from ..autograd import Function, no_grad
from ..backends import array_module, to_device
from ..tensor import Tensor
from . import checks, collectives, gradsync, world
from .placement import Partial, Placement, Replicate, Shard, ShardingError, shard_range, shard_sizes


class DTensor(Tensor):
    """A sharded, replicated or partial tensor; see `minigt.distributed` for how to make one."""

    __slots__ = ("placement", "global_shape", "sizes")

    @classmethod
    def _wrap(cls, local: Tensor, placement: Placement, global_shape, sizes=None) -> DTensor:
        """A DTensor sharing `local`'s array and graph node. `sizes`: every rank's part length
        along the sharded dim (Shard only)."""
        t = cls._make(local.data, local.requires_grad, local.grad_fn)
        t.placement, t.global_shape = placement, tuple(global_shape)
        t.sizes = tuple(sizes) if sizes is not None else None
        return t

    # ---- the global view ---------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        return self.global_shape

    @property
    def ndim(self) -> int:
        return len(self.global_shape)

    def numel(self) -> int:
        return math.prod(self.global_shape)

    def __len__(self) -> int:
        return self.global_shape[0]

    @property
    def local(self) -> Tensor:
        """This rank's part as a plain tensor, without communication (differentiable: gradients
        flow back here). Of a Partial value, this rank's term of the sum."""
        return Alias.apply_local((self,), {})

    def redistribute(self, placement: Placement) -> DTensor:
        """The same global value with another placement, moving only what must move."""
        return redistribute(self, placement)

    def full_tensor(self) -> Tensor:
        """The whole global value on every rank (gathers or sums as the placement needs)."""
        return self.redistribute(Replicate()).local

    def _grad_from(self, array) -> DTensor:
        # A Shard value's gradient is sharded the same way; Replicate and Partial values have
        # complete (replicated) gradients -- see functions.py.
        placement = self.placement if isinstance(self.placement, Shard) else Replicate()
        grad = DTensor._wrap(Tensor._make(array, False, None), placement, self.global_shape, self.sizes)
        return grad

    def __setitem__(self, index, value) -> None:
        if isinstance(self.placement, Partial):
            raise ShardingError(
                f"__setitem__ on a Partial DTensor of shape {self.shape}: its value is the sum of "
                "the ranks' parts, so a write into one part means nothing. Redistribute it to "
                "Replicate() first."
            )
        if isinstance(value, DTensor):
            with no_grad():
                value = value.full_tensor()
        if isinstance(self.placement, Replicate):
            return super().__setitem__(index, value)
        # Global indices: write into the whole value (gathered), then keep this rank's rows.
        self._check_inplace("__setitem__")
        whole = Tensor._make(self._global_array(), False, None)
        whole[index] = value
        start, stop = local_range(self.sizes)
        self.data[...] = whole.data[(slice(None),) * self.placement.dim + (slice(start, stop),)]
        self._bump_version()

    def _assign(self, op: str, new_data) -> DTensor:
        self._refuse_partial(op)
        return super()._assign(op, new_data)

    def _refuse_partial(self, op: str) -> None:
        if isinstance(self.placement, Partial):
            raise ShardingError(f"{op} on a Partial DTensor would change every rank's part; "
                                "redistribute it to Replicate() first")

    # In place with a global operand: the result by the rules, then this tensor's part of it.
    def _my_part_of(self, op: str, compute):
        self._refuse_partial(op)
        self._check_inplace(op)
        with no_grad():
            return redistribute(compute(), self.placement, self.sizes).data

    def copy_(self, src) -> DTensor:
        whole = src if isinstance(src, Tensor) else Tensor(src, device=self.device)
        return self._assign("copy_", self._my_part_of("copy_", lambda: whole))

    def add_(self, other, alpha: float = 1.0) -> DTensor:
        scaled = other if alpha == 1.0 else alpha * other
        return self._arithmetic_("add_", self._my_part_of("add_", lambda: self + scaled))

    def mul_(self, other) -> DTensor:
        return self._arithmetic_("mul_", self._my_part_of("mul_", lambda: self * other))

    def div_(self, other) -> DTensor:
        return self._arithmetic_("div_", self._my_part_of("div_", lambda: self / other))

    def detach(self) -> DTensor:
        return DTensor._wrap(Tensor._make(self.data, False, None), self.placement, self.global_shape, self.sizes)

    # ---- leaving the distributed world: the caller asks for the whole value --------------------
    # A collective for every placement: a Replicate value moves no data, but its ranks still
    # check that all of them read it, so reading on one rank fails alike whatever the placement.
    def _global_array(self, reading: str = "read"):
        if isinstance(self.placement, Replicate):
            checks.check(group(), reading, shape=self.shape, dtype=self.dtype)
            return self.data
        with no_grad():
            return self.full_tensor().data

    def numpy(self):
        return to_device(self._global_array("numpy()"), "cpu")

    def item(self):
        if self.numel() != 1:
            raise ValueError(f"item(): the tensor has shape {self.shape}; only one element converts")
        return self._global_array("item()").item()

    def __bool__(self):
        if self.numel() != 1:
            raise RuntimeError(f"the truth value of a DTensor of shape {self.shape} is ambiguous; "
                               "use .any() or .all()")
        return bool(self.item())

    def __repr__(self) -> str:
        local = Tensor._make(self.data, False, None)
        grad_fn = f", grad_fn={self.grad_fn!r}" if self.grad_fn is not None else ""
        return (f"DTensor(placement={self.placement!r}, shape={self.shape}, rank "
                f"{group().rank} holds {local!r}{grad_fn})")


def local(t: Tensor) -> Tensor:
    """This rank's own part of `t` (`t.local`; a plain tensor is its own), without communication:
    for logging on one rank. Of a Partial loss that is this rank's term of the sum, not the loss."""
    return t.local if isinstance(t, DTensor) else t


def placement_of(t: Tensor) -> Placement:
    """A plain tensor counts as replicated: every rank runs the same program on it."""
    return t.placement if t.placement is not None else Replicate()


def group():
    """The ranks a DTensor spans: the data-parallel group (the world unless
    `init_parallel(tensor_parallel=...)` split it)."""
    return world.data_group()


def standard_sizes(n: int) -> tuple:
    """Part lengths of n rows over the group (the `shard_sizes` split)."""
    return shard_sizes(n, group().size)


def local_range(sizes) -> tuple:
    """[start, stop) of this rank's part along the sharded dim."""
    return shard_range(sizes, group().rank)


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

    collect = None  # a subclass's collect(g) takes gradient shares to sum later (fsdp.py)

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
    """Partial -> Replicate by all-reduce (sum) over `over` (the DTensor group by default);
    the complete gradient passes through."""

    def forward(self, x, over=None):
        return collectives.all_reduce(x, "sum", group=over or group())

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
    """A value replicated over `over` (the DTensor group by default) entering sharded compute;
    identity forward, all-reduce of the gradient shares backward (for leaves in the DTensor
    group, deferred to one bucketed all-reduce per backward)."""

    output_is_view = True

    def forward(self, x, over=None):
        self.over = over
        return x

    def backward(self, g):
        source = self.inputs[0]
        if source.grad_fn is None and self.over is None:  # a parameter: nothing waits on it
            gradsync.defer(source, g)
            return None
        gathered = source.grad_fn
        if self.over is None and isinstance(gathered, GatherShards) and gathered.collect:
            gathered.collect(g)  # summed with others of its kind in one reduce-scatter
            return None
        if self.over is None and isinstance(gathered, GatherShards):
            # The value was gathered from shards, whose backward keeps only this rank's slice:
            # sum just that slice over the ranks (a reduce-scatter, half an all-reduce's bytes).
            out = array_module(g).zeros_like(g)
            mine = (slice(None),) * gathered.dim + (slice(*local_range(gathered.sizes)),)
            out[mine] = collectives.reduce_scatter(g, gathered.dim, gathered.sizes, group=group())
            return out
        return collectives.all_reduce(g, "sum", group=self.over or group())


def use_replicated(t: Tensor) -> Tensor:
    """`t` marked as feeding sharded compute (a no-op when no gradient flows to it)."""
    if not t.requires_grad:
        return t
    return ReplicatedUse.apply_local((t,), {})


def redistribute(t: Tensor, target: Placement, sizes=None) -> DTensor:
    """`t` (a DTensor, or a plain tensor taken as replicated) with placement `target`; for a
    Shard target, parts of lengths `sizes` (the standard split when None)."""
    source, shape = placement_of(t), t.shape
    if isinstance(target, Shard):
        if not -len(shape) <= target.dim < len(shape):
            raise IndexError(f"redistribute: Shard({target.dim}) is out of range for shape {shape}")
        target = Shard(target.dim % len(shape))
        sizes = standard_sizes(shape[target.dim]) if sizes is None else tuple(sizes)
    if source == target and (sizes is None or t.sizes == sizes):
        if isinstance(t, DTensor):
            return t
        # through an identity Function, so a leaf `t` still receives the gradient
        return DTensor._wrap(Alias.apply_local((t,), {}), source, shape)
    if isinstance(source, Shard) and isinstance(target, Shard):  # via the whole value, on request
        return redistribute(redistribute(t, Replicate()), target, sizes)
    if isinstance(source, Shard) and isinstance(target, Replicate):
        out = GatherShards.apply_local((t,), {"dim": source.dim, "sizes": t.sizes})
        return DTensor._wrap(out, target, shape)
    if isinstance(source, Replicate) and isinstance(target, Shard):
        out = TakeShard.apply_local((t,), {"dim": target.dim, "sizes": sizes})
        return DTensor._wrap(out, target, shape, sizes)
    if isinstance(source, Partial) and isinstance(target, Replicate):
        return DTensor._wrap(ReducePartial.apply_local((t,), {}), target, shape)
    if isinstance(source, Partial) and isinstance(target, Shard):
        out = ScatterPartial.apply_local((t,), {"dim": target.dim, "sizes": sizes})
        return DTensor._wrap(out, target, shape, sizes)
    raise ValueError(
        f"redistribute: cannot turn {source!r} into {target!r}: a Partial value comes only from a "
        "reduction over a sharded dim"
    )
