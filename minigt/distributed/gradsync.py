"""Gradients of replicated parameters, summed over the data group in a few flat buffers.

A replicated parameter used by sharded compute (data parallelism) gets only this rank's share of
its gradient: backward hands it to `defer`. The shares go straight into flat buckets (up to 32 MiB,
one dtype and device each) laid out in the order backward first reached the parameters, and each
parameter's `.grad` becomes a view of its slot: the summed buffer needs no unpacking. A bucket is
all-reduced as soon as backward has filled every slot (nonblocking where the transport allows,
so backward goes on meanwhile); `flush`, which autograd runs when backward ends, finishes the
rest. Every rank runs the same graph, so buckets fill alike and their elements line up.

A share may come as `Factors` instead, the rows whose product it is (a linear layer's weight
gradient is gᵀx over this rank's rows): when the rows of all ranks are far fewer numbers than
the product, the bucket gathers the rows and every rank computes the whole sum itself (a
reduce-scattered bucket: only its own part); otherwise it multiplies them out here and sums as
usual. Whole shares in such a bucket (a norm's weight) travel as one row from each rank.

The first backward has no layout yet: it holds the shares, and its flush lays out the buckets.
"""
from __future__ import annotations

import weakref

from ..autograd import accumulate_into, post_backward_hooks
from ..backends import array_module
from . import checks, collectives, transports, waiting, world
from .placement import shard_range, shard_sizes

BUCKET_BYTES = 32 * 2**20  # big enough that a step needs few calls, small enough to stay cheap
# Gather factors only when they are at most half the numbers an all-reduce would sum (which
# sends each twice): every rank then multiplies all ranks' rows, work that summing would have
# split N ways. At half, the brief's model at batch 16 on 2 ranks steps 15% faster than at a
# quarter (86 against 102 ms on the 2-core Intel VM; everything gathered against nothing).
GATHER_SAVING = 2


class Factors:
    """A gradient share given as rows: Σ_rows leftᵀ right (a weight: left = g's rows, right =
    x's), or Σ_rows left (a bias: right None). `counts`: every rank's number of rows, which all
    ranks know from the placements."""

    def __init__(self, left, right, counts: tuple):
        self.left, self.right, self.counts = left, right, counts
        self.width = left.shape[1] + (0 if right is None else right.shape[1])
        self.dtype = left.dtype

    def gathered(self) -> int:
        """How many numbers all ranks' rows are."""
        return sum(self.counts) * self.width

    def product(self):
        """This rank's share, multiplied out."""
        return self.left.sum(axis=0) if self.right is None else self.left.T @ self.right

    def pieces(self):
        return (self.left,) if self.right is None else (self.left, self.right)


def gathering_pays(shares: list, size: int) -> bool:
    """Whether gathering these shares' rows beats summing `size` numbers (all must be Factors)."""
    return all(isinstance(s, Factors) for s in shares) and \
        sum(s.gathered() for s in shares) * GATHER_SAVING <= size


def gather_rows(groups: list, group, extra=None) -> list:
    """For each group of Factors shares (of one gradient), every rank's rows of left and of
    right (None for a bias), joined in rank order (for data sharded along dim 0, the order of a
    single process): one all-gather for all of them."""
    order = [f for shares in groups for f in shares]
    ranks = range(group.size)
    counts = [sum(f.counts[r] * f.width for f in order) for r in ranks]
    xp = array_module(order[0].left)
    flat = xp.empty(sum(counts), order[0].dtype)
    at = sum(counts[:group.rank])
    for f in order:
        for piece in f.pieces():
            flat[at:at + piece.size] = piece.reshape(-1)
            at += piece.size
    collectives.all_gather_in_place(flat, counts, group=group, extra=extra)
    rows = [([], []) for _ in order]  # per share: every rank's left rows, right rows
    at = 0
    for r in ranks:
        for f, mine in zip(order, rows):
            for piece, joined in zip(f.pieces(), mine):
                n = f.counts[r] * piece.shape[1]
                joined.append(flat[at:at + n].reshape(-1, piece.shape[1]))
                at += n
    out, first = [], 0
    for shares in groups:  # a gradient's shares (a parameter used twice) are more rows
        mine = rows[first:first + len(shares)]
        first += len(shares)
        left = xp.concatenate([part for m in mine for part in m[0]])
        right = None if shares[0].right is None else xp.concatenate(
            [part for m in mine for part in m[1]])
        out.append((left, right))
    return out


class Bucket:
    """A flat buffer holding the gradients of some parameters, one slot each, back to back.

    With `scatter` (the sharded optimizer, zero.py) it is reduce-scattered instead: this rank
    receives the sum of its `part` of the buffer only, as `grad_part`, and no `.grad` is set.
    """

    def __init__(self, entries: list, scatter: bool = False):
        data = [leaf.data for leaf, _ in entries]
        self.xp, self.group = array_module(data[0]), world.data_group()
        self.leaves = [weakref.ref(leaf) for leaf, _ in entries]
        self.prints = checks.parameter_prints([leaf for leaf, _ in entries])  # ranks must agree
        self.shapes = [d.shape for d in data]
        self.starts = [0]
        for d in data:
            self.starts.append(self.starts[-1] + d.size)
        self.flat = self.xp.empty(self.starts[-1], entries[0][1][0].dtype)
        self.filled: set = set()  # slots reached by this backward
        self.factors: dict = {}   # slot -> [Factors] reached by this backward, not yet written
        self.written: set = set()  # slots whose target values this backward has written
        self.target = self.flat   # where this backward's shares go (see `_begin`)
        self.request = None       # the all-reduce (or reduce-scatter) in flight
        self.scatter = scatter
        if scatter:
            self.counts = shard_sizes(self.flat.size, self.group.size)
            self.part = slice(*shard_range(self.counts, self.group.rank))
            self.grad_part = None  # the summed gradient of this rank's part
            self.spare = None      # a buffer for the next sum of it (`_part_buffer`)

    def params(self) -> list:
        """The parameters of the slots, in order."""
        params = [ref() for ref in self.leaves]
        if any(p is None for p in params):
            raise RuntimeError("gradsync: a parameter of a sharded optimizer's bucket was deleted")
        return params

    def view(self, buffer, slot: int):
        return buffer[self.starts[slot]:self.starts[slot + 1]].reshape(self.shapes[slot])

    def add(self, slot: int, share) -> None:
        if not self.filled:
            self._begin()
        if isinstance(share, Factors):
            self.factors.setdefault(slot, []).append(share)
        else:
            self._write(slot, share)
        self.filled.add(slot)

    def full(self) -> bool:
        return len(self.filled) == len(self.leaves)

    def _write(self, slot: int, value) -> None:
        if slot in self.written:  # a parameter used twice in one graph
            self.view(self.target, slot)[...] += value
        else:
            self.view(self.target, slot)[...] = value
            self.written.add(slot)

    def _begin(self) -> None:
        """Choose where this backward's shares go: the flat buffer itself, unless a `.grad`
        still views it (gradients accumulating over backward calls, no zero_grad between), whose
        values the new sum must not overwrite: then a scratch buffer, added in afterwards."""
        views = (leaf() for leaf in self.leaves)
        holds = not self.scatter and any(
            p is not None and p.grad is not None and p.grad.data.base is self.flat for p in views)
        self.target = self.xp.empty_like(self.flat) if holds else self.flat

    def start(self) -> None:
        """Begin the all-reduce (or sum by gathering factors); slots no share reached this time
        are zeros."""
        for slot in set(range(len(self.leaves))) - self.filled:
            self.view(self.target, slot)[...] = 0
        rows = self._rows_if_gathering_pays()
        if rows is not None:
            self._sum_by_gathering(rows)
            return
        for slot, shares in self.factors.items():
            for share in shares:
                self._write(slot, share.product())
        self.factors.clear()
        extra = checks.bucket_signature(self.prints, self.filled)
        if self.scatter:
            self.received = self._part_buffer()
            self.request = collectives.start_reduce_scatter(
                self.target, self.received, self.counts, group=self.group, extra=extra)
        else:
            self.request = collectives.start_all_reduce(self.target, "sum", group=self.group,
                                                        extra=extra)

    def _rows_if_gathering_pays(self):
        """slot -> this backward's shares as rows (Factors), if all ranks' rows are few enough
        numbers; else None. A share written whole (a norm's weight, say) is one row of its
        values from each rank. Every rank decides alike: the counts are global."""
        if not self.factors or self.written & set(self.factors):  # a slot takes one kind
            return None
        rows = dict(self.factors)
        ones = (1,) * self.group.size
        for slot in self.written:
            rows[slot] = [Factors(self.view(self.target, slot).reshape(1, -1), None, ones)]
        if not gathering_pays([f for shares in rows.values() for f in shares], self.flat.size):
            return None
        return rows

    def _part_buffer(self):
        """Where a scattered sum goes: the last one's buffer once `grad_part` no longer holds
        it (the optimizer has stepped and zero_grad let it go), else a new one."""
        if self.spare is None or self.grad_part is self.spare:
            self.spare = self.xp.empty(self.counts[self.group.rank], self.flat.dtype)
        return self.spare

    def _sum_by_gathering(self, rows: dict) -> None:
        """All ranks' rows into every rank (one all-gather), then each slot's whole gradient
        computed from them alike on every rank; scattered, only this rank's part of the buffer
        (1/N of the products)."""
        slots = sorted(rows)
        extra = checks.bucket_signature(self.prints, self.filled)
        gathered = gather_rows([rows[slot] for slot in slots], self.group, extra)
        self.factors.clear()
        self.request = transports.DONE
        if self.scatter:
            self.received = self._part_buffer()
            rows = dict(zip(slots, gathered))
            for slot in range(len(self.leaves)):
                lo = max(self.starts[slot], self.part.start)
                hi = min(self.starts[slot + 1], self.part.stop)
                if lo >= hi:
                    continue
                into = self.received[lo - self.part.start:hi - self.part.start]
                if slot in rows:
                    start = self.starts[slot]
                    product_range(*rows[slot], lo - start, hi - start, into)
                else:
                    into[...] = 0  # no share reached it
            return
        for slot, (left, right) in zip(slots, gathered):
            view = self.view(self.target, slot)
            if right is not None:
                self.xp.matmul(left.T, right, out=view)
            else:
                left.sum(axis=0, out=view.reshape(-1))

    def finish(self) -> None:
        """Wait for the sum, then hand each parameter that got a share its slot (or, scattered,
        add this rank's part to `grad_part`)."""
        waiting.wait(self.request)
        if self.scatter:
            part, self.received = self.received, None
            self.grad_part = part if self.grad_part is None else self.grad_part + part
            self.filled.clear()
            self.written.clear()
            self.request = None
            return
        for slot in sorted(self.filled):
            leaf = self.leaves[slot]()
            if leaf is not None:
                # owned: a view of the flat buffer becomes .grad itself; a scratch one is new
                accumulate_into(leaf, self.view(self.target, slot), owned=True)
        self.filled.clear()
        self.written.clear()
        self.request = None


def product_range(left, right, lo: int, hi: int, out) -> None:
    """Elements lo..hi-1 of leftᵀ right flattened (of Σ_rows left when right is None) into
    `out`: whole rows of the product straight into place, a part-row at either end apart."""
    if right is None:
        left[:, lo:hi].sum(axis=0, out=out)
        return
    width = right.shape[1]
    first, last = -(-lo // width), hi // width  # the whole rows inside lo..hi
    if first > last:  # lo and hi inside one row
        out[...] = (left[:, last] @ right)[lo - last * width:hi - last * width]
        return
    if first < last:
        whole = out[first * width - lo:last * width - lo].reshape(last - first, width)
        array_module(left).matmul(left[:, first:last].T, right, out=whole)
    if lo < first * width:
        out[:first * width - lo] = (left[:, first - 1] @ right)[lo - (first - 1) * width:]
    if last * width < hi:
        out[last * width - lo:] = (left[:, last] @ right)[:hi - last * width]


_buckets: list = []
_slots: dict = {}     # id(leaf) -> (bucket, slot)
_unplaced: dict = {}  # id(leaf) -> [leaf, summed share]: no slot yet (first backward, new leaf)


def defer(leaf, share) -> None:
    """Take this rank's share of `leaf`'s gradient, to be summed over the data group."""
    bucket = bucket_of(leaf)
    if bucket is None:
        _unplaced.setdefault(id(leaf), [leaf, []])[1].append(share)
        return
    if bucket.request is not None:  # sent already (the parameter is used again, earlier in the
        bucket.finish()             # graph): finish that sum, and this share starts another
    bucket.add(_slots[id(leaf)][1], share)
    if bucket.full():
        bucket.start()


def adopt(params: list, scatter: bool = False) -> list:
    """Lay out buckets for these parameters now, in this order, rather than as the first
    backward reaches them; with `scatter`, reduce-scattered (see Bucket). Returns them."""
    ids = {id(p) for p in params}
    _buckets[:] = [b for b in _buckets if not any(id(ref()) in ids for ref in b.leaves)]
    _slots.clear()
    _slots.update({id(ref()): (b, slot) for b in _buckets for slot, ref in enumerate(b.leaves)})
    adopted = [Bucket(group, scatter) for group in buckets([[p, [p.data]] for p in params])]
    for bucket in adopted:
        _slots.update({id(ref()): (bucket, slot) for slot, ref in enumerate(bucket.leaves)})
    _buckets.extend(adopted)
    return adopted


def bucket_of(leaf):
    """The Bucket holding `leaf`'s gradient (None before its first data-parallel backward)."""
    place = _slots.get(id(leaf))
    return place[0] if place is not None and place[0].leaves[place[1]]() is leaf else None


def buckets(entries: list, limit: int | None = None) -> list:
    """[leaf, shares] entries grouped by kind (dtype and module; then, when gathering the rows
    of all the factors among them pays, those entries apart), in order within a kind, each group
    under `limit` bytes (an entry larger than the limit gets one of its own, which takes a share
    of the same layer after it: see `_same_layer`)."""
    limit = BUCKET_BYTES if limit is None else limit
    by_dtype: dict = {}
    for entry in entries:
        by_dtype.setdefault((entry[1][0].dtype, array_module(entry[0].data)), []).append(entry)
    kinds = []
    for same in by_dtype.values():
        factored = [e for e in same if all(isinstance(s, Factors) for s in e[1])]
        if factored and gathering_pays([s for e in factored for s in e[1]],
                                       sum(e[0].data.size for e in factored)):
            apart = {id(e) for e in factored}
            kinds += [factored, [e for e in same if id(e) not in apart]]
        else:
            kinds.append(same)
    groups = []
    for same_kind in kinds:
        size = None  # each kind starts a new group
        for entry in same_kind:
            if size is None or size + entry[0].data.nbytes > limit and \
                    not _same_layer(entry, groups[-1][-1]):
                groups.append([])
                size = 0
            groups[-1].append(entry)
            size += entry[0].data.nbytes
    return groups


def _same_layer(entry: list, before: list) -> bool:
    """Whether entry's share comes from the layer that made `before`'s: a Linear's bias after its
    weight, both rows of the same g. Backward hands them over together, so a bucket apart would
    gain no overlap and cost a collective (the brief's 41 MB embedding and its bias)."""
    share, other = entry[1][0], before[1][0]
    return isinstance(share, Factors) and isinstance(other, Factors) and share.left is other.left


def flush() -> None:
    """Send the buckets backward left unfinished, then hand every summed share to its `.grad`;
    lay out buckets for shares that had none."""
    for bucket in _buckets:
        if bucket.filled and bucket.request is None:
            bucket.start()
    for bucket in _buckets:
        if bucket.request is not None:
            bucket.finish()
    if _unplaced:
        _forget_stale_buckets()
        for group in buckets(list(_unplaced.values())):  # the layout of later backward calls
            bucket = Bucket(group)
            for slot, (leaf, shares) in enumerate(group):
                _slots[id(leaf)] = (bucket, slot)
                for share in shares:
                    bucket.add(slot, share)
            bucket.start()
            bucket.finish()
            _buckets.append(bucket)
        _unplaced.clear()


def _forget_stale_buckets() -> None:
    """Drop buckets of another data group (init_parallel changed it) or of dead parameters."""
    live = [b for b in _buckets if b.group is world.data_group() and
            all(ref() is not None for ref in b.leaves)]
    if len(live) < len(_buckets):
        _buckets[:] = live
        _slots.clear()
        _slots.update({id(ref()): (b, slot) for b in live for slot, ref in enumerate(b.leaves)})


post_backward_hooks.append(flush)
