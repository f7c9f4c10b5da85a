"""Where a sharded tensor's values live across ranks.

- `Replicate()`: every rank holds the whole tensor.
- `Shard(dim)`: the tensor is cut along `dim`; rank r holds the r-th piece (pieces may be uneven
  or empty; the first ranks take the remainder, as `collectives.shard_sizes` computes).
- `Partial()`: every rank holds a tensor of the full shape and the value is their sum (what a
  reduction over a sharded dim leaves before anything needs the total).
"""
from __future__ import annotations

from dataclasses import dataclass


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
