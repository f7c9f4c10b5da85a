"""Bucketed all-reduce of parameter gradients, once per backward.

A replicated parameter used by sharded compute (data parallelism) gets only this rank's share of
its gradient. Rather than one all-reduce per parameter, backward hands each share to `defer`, and
`flush` -- run by autograd when backward ends -- packs them into a few flat buffers, all-reduces
each buffer once and adds the sums into `.grad`. Every rank runs the same graph, so every rank
defers the same parameters in the same order and the buffers line up.
"""
from __future__ import annotations

from ..autograd import accumulate_into, post_backward_hooks
from ..backends import array_module
from . import collectives, world

BUCKET_BYTES = 32 * 2**20  # big enough that a step needs few calls, small enough to stay cheap

_pending: dict = {}  # id(leaf) -> [leaf, summed share], in the order backward reached them


def defer(leaf, share) -> None:
    """Hold this rank's share of `leaf`'s gradient until backward ends."""
    entry = _pending.get(id(leaf))
    if entry is None:
        _pending[id(leaf)] = [leaf, share]
    else:
        entry[1] = entry[1] + share


def buckets(entries: list, limit: int | None = None) -> list:
    """Consecutive groups of entries with one dtype and module, each under `limit` bytes
    (an entry larger than the limit gets a bucket of its own)."""
    limit = BUCKET_BYTES if limit is None else limit
    groups, size = [], 0
    for entry in entries:
        share = entry[1]
        same_kind = groups and (groups[-1][0][1].dtype, array_module(groups[-1][0][1])) == (
            share.dtype, array_module(share))
        if same_kind and size + share.nbytes <= limit:
            groups[-1].append(entry)
            size += share.nbytes
        else:
            groups.append([entry])
            size = share.nbytes
    return groups


def flush() -> None:
    """All-reduce every deferred share, a bucket at a time, into the leaves' `.grad`."""
    if not _pending:
        return
    entries = list(_pending.values())
    _pending.clear()
    for bucket in buckets(entries):
        xp = array_module(bucket[0][1])
        flat = xp.concatenate([share.reshape(-1) for _, share in bucket])
        collectives.all_reduce(flat, "sum", group=world.data_group(), in_place=True)
        start = 0
        for leaf, share in bucket:  # the slices do not overlap: each can become a .grad as it is
            accumulate_into(leaf, flat[start:start + share.size].reshape(share.shape), owned=True)
            start += share.size


post_backward_hooks.append(flush)
