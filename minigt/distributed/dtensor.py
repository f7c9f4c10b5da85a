"""DTensor: one rank's part of a tensor that lives across all ranks.

`data` holds this rank's local array; `placement` says how the parts make up the global value
(see placement.py); `shape` is the *global* shape, so user code reads the same at any world size.
Ops on DTensors go through `dispatch.py`, which picks the output placement from `rules.py` and
inserts only the communication a rule needs.
"""
from __future__ import annotations

import math

from ..autograd import no_grad
from ..tensor import Tensor
from . import collectives, world
from .placement import Partial, Placement, Replicate, Shard


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
        """This rank's part as a plain tensor (differentiable: gradients flow back here)."""
        from .functions import Alias

        return Alias.apply_local((self,), {})

    def redistribute(self, placement: Placement) -> DTensor:
        """The same global value with another placement, moving only what must move."""
        from .functions import redistribute

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
        if not isinstance(self.placement, Replicate):
            from .dispatch import ShardingError

            raise ShardingError(
                f"__setitem__ on a {self.placement!r} DTensor of shape {self.shape}: indices are "
                "global but each rank holds a part. Build the value out of place (minigt.where), "
                "or redistribute to Replicate() first."
            )
        super().__setitem__(index, value)

    def _assign(self, op: str, new_data) -> DTensor:
        if isinstance(self.placement, Partial):
            from .dispatch import ShardingError

            raise ShardingError(f"{op} on a Partial DTensor would change every rank's part; "
                                "redistribute it to Replicate() first")
        return super()._assign(op, new_data)

    def detach(self) -> DTensor:
        return DTensor._wrap(Tensor._make(self.data, False, None), self.placement, self.global_shape, self.sizes)

    # ---- leaving the distributed world: the caller asks for the whole value --------------------
    def _global_array(self):
        if isinstance(self.placement, Replicate):
            return self.data
        with no_grad():
            return self.full_tensor().data

    def numpy(self):
        from ..backends import to_device

        return to_device(self._global_array(), "cpu")

    def item(self):
        array = self._global_array()
        if array.size != 1:
            raise ValueError(f"item(): the tensor has shape {self.shape}; only one element converts")
        return array.item()

    def __repr__(self) -> str:
        local = Tensor._make(self.data, False, None)
        grad_fn = f", grad_fn={self.grad_fn!r}" if self.grad_fn is not None else ""
        return (f"DTensor(placement={self.placement!r}, shape={self.shape}, rank "
                f"{group().rank} holds {local!r}{grad_fn})")


def placement_of(t: Tensor) -> Placement:
    """A plain tensor counts as replicated: every rank runs the same program on it."""
    return t.placement if t.placement is not None else Replicate()


def group():
    """The ranks a DTensor spans: the data-parallel group (the world unless
    `init_parallel(tensor_parallel=...)` split it)."""
    return world.data_group()


def standard_sizes(n: int) -> tuple:
    """Part lengths of n rows over the group: the first ranks take the remainder."""
    return tuple(collectives.shard_sizes(n, group().size))


def local_range(sizes) -> tuple:
    """[start, stop) of this rank's part along the sharded dim."""
    r = group().rank
    start = sum(sizes[:r])
    return start, start + sizes[r]


__all__ = ["DTensor", "Partial", "Replicate", "Shard", "group", "placement_of", "standard_sizes", "local_range"]
