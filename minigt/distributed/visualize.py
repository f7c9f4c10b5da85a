"""`visualize(t)`: a text picture of which rank holds which block of a DTensor.

    >>> dist.visualize(dist.shard(minigt.ones(5, 4), dim=0))     # on 2 ranks, rank 0 prints:
    (5, 4) float32 Shard(0) over 2 ranks
    ┌────────────────────────────────────┐
    │                                    │
    │          rank 0  rows 0:3          │
    │                                    │
    ├────────────────────────────────────┤
    │                                    │
    │          rank 1  rows 3:5          │
    └────────────────────────────────────┘

Blocks are drawn in proportion to their length (uneven shards look uneven); an empty shard
still gets a line, marked "empty". A Replicate tensor is one block every rank holds a copy of,
a Partial one a block whose value is the sum of every rank's. Every rank knows every part's
length (`DTensor.sizes`), so the picture needs no communication.
"""
from __future__ import annotations

import sys

from ..tensor import Tensor
from . import world
from .dtensor import group, placement_of
from .placement import shard_range

WIDTH = 36  # characters across the box
HEIGHT = 6  # lines down a 2-D tensor's box


def visualize(t: Tensor, file=None) -> str:
    """Print, on rank 0, a picture of which rank holds each block of the 0-, 1- or 2-D tensor `t`
    (Shard, Replicate or Partial; a plain tensor counts as replicated); return it on every rank."""
    if t.ndim > 2:
        raise ValueError(f"visualize: draws 0-, 1- and 2-D tensors, and this one has shape "
                         f"{tuple(t.shape)}; reshape it, or index out a 2-D slice, first")
    text = "\n".join([_header(t), *_box(t)])
    if world.rank() == 0:
        print(text, file=file or sys.stdout, flush=True)
    return text


def _header(t: Tensor) -> str:
    ranks = group().size
    where = f"over {ranks} rank{'s' if ranks > 1 else ''}"
    if world.tensor_group().size > 1:  # DTensors span the data group: its ranks are numbered
        where += " of the data group"
    return f"{tuple(t.shape)} {t.dtype} {placement_of(t)!r} {where}"


def _box(t: Tensor) -> list[str]:
    placement, ranks = placement_of(t), list(range(group().size))
    if not placement.is_shard():
        together = " + " if placement.is_partial() else ", "
        label = ["rank" + ("s " if len(ranks) > 1 else " ") + together.join(map(str, ranks)),
                 "(summed)" if placement.is_partial()
                 else "(a whole copy each)" if len(ranks) > 1 else "(all of it)"]
        return _side_by_side([label], [1], HEIGHT if t.ndim == 2 else len(label))
    sizes, dim = t.sizes, placement.dim
    spans = [shard_range(sizes, r) for r in ranks]
    if t.ndim == 2 and dim == 0:
        return _stacked([f"rank {r}  " + _range("rows", *spans[r]) for r in ranks], sizes)
    labels = [[f"rank {r}", _range("cols" if t.ndim == 2 else "", *spans[r])] for r in ranks]
    return _side_by_side(labels, sizes, HEIGHT if t.ndim == 2 else 2)


def _range(what: str, start: int, stop: int) -> str:
    if start == stop:
        return "empty"
    return f"{what} {start}:{stop}" if what else f"[{start}:{stop}]"


def _shares(total: int, weights, smallest) -> list[int]:
    """`total` split in proportion to `weights`, each at least its `smallest`; what the minimums
    add is taken back from the blocks furthest above theirs."""
    whole = sum(weights) or 1
    shares = [max(low, round(total * w / whole)) for w, low in zip(weights, smallest)]
    while sum(shares) > total and any(s > low for s, low in zip(shares, smallest)):
        shares[max(range(len(shares)), key=lambda i: shares[i] - smallest[i])] -= 1
    return shares


def _side_by_side(labels: list[list[str]], weights, height: int) -> list[str]:
    """Blocks in a row, each as wide as its share of WIDTH, labels centred."""
    inner = WIDTH - len(labels) + 1  # each border between blocks takes a character
    widths = _shares(inner, weights, [max(map(len, label)) + 2 for label in labels])
    lines = ["┌" + "┬".join("─" * w for w in widths) + "┐"]
    top = (height - len(labels[0])) // 2
    for row in range(height):
        cells = [(label[row - top] if 0 <= row - top < len(label) else "").center(w)
                 for label, w in zip(labels, widths)]
        lines.append("│" + "│".join(cells) + "│")
    return lines + ["└" + "┴".join("─" * w for w in widths) + "┘"]


def _stacked(labels: list[str], weights) -> list[str]:
    """Blocks one above the other, each as tall as its share of HEIGHT, labels centred."""
    heights = _shares(HEIGHT, weights, [1] * len(labels))
    lines = ["┌" + "─" * WIDTH + "┐"]
    for i, (label, height) in enumerate(zip(labels, heights)):
        if i:
            lines.append("├" + "─" * WIDTH + "┤")
        lines += ["│" + (label if row == (height - 1) // 2 else "").center(WIDTH) + "│"
                  for row in range(height)]
    return lines + ["└" + "─" * WIDTH + "┘"]
