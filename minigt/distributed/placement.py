"""Where a sharded tensor's values live across ranks.

- `Replicate()`: every rank holds the whole tensor.
- `Shard(dim)`: the tensor is cut along `dim`; rank r holds the r-th piece (pieces may be uneven
  or empty; the first ranks take the remainder, as `shard_sizes` computes).
- `Partial()`: every rank holds a tensor of the full shape and the value is their sum (what a
  reduction over a sharded dim leaves before anything needs the total).

This module is also the one place that computes which rows each rank's part holds.
"""
from __future__ import annotations

from dataclasses import dataclass


class ShardingError(RuntimeError):
    """An op met placements it cannot work with; the message says what to do instead."""


def shard_sizes(n: int, parts: int) -> tuple[int, ...]:
    """Lengths of the parts when n rows are split over `parts` ranks (the first ranks take the
    remainder: 4 rows over 3 ranks give (2, 1, 1))."""
    base, extra = divmod(n, parts)
    return tuple(base + (r < extra) for r in range(parts))


def shard_range(sizes, index: int) -> tuple[int, int]:
    """[start, stop) of part `index` along the sharded dim, when the parts have lengths `sizes`."""
    start = sum(sizes[:index])
    return start, start + sizes[index]


class Placement:
    """Base of the three placements."""

    def is_shard(self, dim: int | None = None) -> bool:
        """Whether this is Shard (along `dim`, when given)."""
        return False

    def is_replicate(self) -> bool:
        """Whether every rank holds the whole value."""
        return False

    def is_partial(self) -> bool:
        """Whether the value is the sum of the ranks' parts."""
        return False


@dataclass(frozen=True)
class Replicate(Placement):
    def is_replicate(self) -> bool:
        return True

    def __repr__(self) -> str:
        return "Replicate()"


@dataclass(frozen=True)
class Shard(Placement):
    dim: int

    def is_shard(self, dim: int | None = None) -> bool:
        return dim is None or dim == self.dim

    def __repr__(self) -> str:
        return f"Shard({self.dim})"


@dataclass(frozen=True)
class Partial(Placement):
    def is_partial(self) -> bool:
        return True

    def __repr__(self) -> str:
        return "Partial()"
