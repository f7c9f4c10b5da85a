"""Making DTensors: from a whole tensor (`shard`, `replicate`), from local parts (`from_local`),
and automatically for data under GT_AUTO_SHARD=1."""
from __future__ import annotations

import os

from .. import creation
from ..backends import default_device
from ..tensor import Tensor
from . import checks, collectives, world
from .dtensor import Alias, DTensor, group, redistribute, standard_sizes
from .placement import Partial, Placement, Replicate, Shard


def shard(t: Tensor, dim: int = 0) -> DTensor:
    """Split `t` (the same on every rank) along `dim`: rank r keeps its part. No data moves; the
    ranks only check that all of them split the same shape (checks.py)."""
    checks.check(group(), "shard", f"dim {dim}", t.shape, t.dtype)
    return redistribute(t, Shard(dim))


def replicate(t: Tensor) -> DTensor:
    """Declare `t` (the same on every rank) replicated (the ranks check that its shape agrees)."""
    checks.check(group(), "replicate", "", t.shape, t.dtype)
    return redistribute(t, Replicate())


def from_local(t: Tensor, placement: Placement, shape=None) -> DTensor:
    """A DTensor whose part on this rank is `t`. For Shard, parts may differ in length; the
    global shape is exchanged unless given (then every part must have the standard length)."""
    if isinstance(t, DTensor):
        raise TypeError("from_local: the tensor is already a DTensor; use .redistribute()")
    local = Alias.apply_local((t,), {})
    if isinstance(placement, Shard):
        dim = placement.dim % max(t.ndim, 1)
        checks.check(group(), "from_local", repr(placement), checks.free_dim(t.shape, dim), t.dtype)
        if shape is None:
            sizes = collectives.exchange_sizes(t.shape[dim], group=group())
            shape = t.shape[:dim] + (sum(sizes),) + t.shape[dim + 1:]
        else:
            sizes = standard_sizes(shape[dim])
            mine = sizes[group().rank]
            if mine != t.shape[dim]:
                raise ValueError(f"from_local: rank {world.rank()}'s part has {t.shape[dim]} rows "
                                 f"along dim {dim}, but shape {tuple(shape)} gives it {mine}")
        return DTensor._wrap(local, Shard(dim), shape, sizes)
    if not isinstance(placement, (Replicate, Partial)):
        raise TypeError(f"from_local: unknown placement {placement!r}")
    checks.check(group(), "from_local", repr(placement), t.shape, t.dtype)
    return DTensor._wrap(local, placement, t.shape if shape is None else shape)


_announced = False


def auto_shard(t: Tensor) -> Tensor:
    """GT_AUTO_SHARD=1: data with a leading dim is split along it across ranks."""
    global _announced
    if not _announced:
        _announced = True
        if world.rank() == 0:
            print(f"GT_AUTO_SHARD: {world.world_size()} rank(s), device {default_device()}",
                  flush=True)
    return shard(t, 0)


if os.environ.get("GT_AUTO_SHARD", "0") == "1":
    creation.auto_shard_hook = auto_shard
