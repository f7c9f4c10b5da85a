"""dist.visualize at 1, 2 and 3 ranks, compared as text (at 4, what every size shares).

`make test` runs this file under mpirun -n 2, 3 and 4; tests/viz/test_visualize_one_rank.py runs
its checks in one process. The tensors are the same global values at every size, so only the
cuts change: 5 rows over 3 ranks are 2, 2, 1, and 2 elements over 3 ranks leave rank 2 empty.
"""
from __future__ import annotations

import io

import pytest

import minigt as gt
import minigt.distributed as dist
from minigt.distributed import world


def pictures() -> dict:
    """{case: the text visualize returns} on this rank (rank 0 alone prints it, to a buffer here)."""
    cases = {
        "rows": dist.shard(gt.ones(5, 4), dim=0),
        "cols": dist.shard(gt.ones(2, 5), dim=1),
        "vector": dist.shard(gt.ones(2), dim=0),
        "partial": dist.shard(gt.ones(4, 2), dim=0).sum(dim=0),
        "replicated": gt.ones(3),
    }
    return {name: dist.visualize(t, file=io.StringIO()) for name, t in cases.items()}


EXPECTED = {
    1: {
        "rows": """\
(5, 4) float32 Shard(0) over 1 rank
┌────────────────────────────────────┐
│                                    │
│                                    │
│          rank 0  rows 0:5          │
│                                    │
│                                    │
│                                    │
└────────────────────────────────────┘""",
        "cols": """\
(2, 5) float32 Shard(1) over 1 rank
┌────────────────────────────────────┐
│                                    │
│                                    │
│               rank 0               │
│              cols 0:5              │
│                                    │
│                                    │
└────────────────────────────────────┘""",
        "vector": """\
(2,) float32 Shard(0) over 1 rank
┌────────────────────────────────────┐
│               rank 0               │
│               [0:2]                │
└────────────────────────────────────┘""",
        "partial": """\
(2,) float32 Partial() over 1 rank
┌────────────────────────────────────┐
│               rank 0               │
│              (summed)              │
└────────────────────────────────────┘""",
        "replicated": """\
(3,) float32 Replicate() over 1 rank
┌────────────────────────────────────┐
│               rank 0               │
│            (all of it)             │
└────────────────────────────────────┘""",
    },
    2: {
        "rows": """\
(5, 4) float32 Shard(0) over 2 ranks
┌────────────────────────────────────┐
│                                    │
│          rank 0  rows 0:3          │
│                                    │
│                                    │
├────────────────────────────────────┤
│          rank 1  rows 3:5          │
│                                    │
└────────────────────────────────────┘""",
        "cols": """\
(2, 5) float32 Shard(1) over 2 ranks
┌─────────────────────┬──────────────┐
│                     │              │
│                     │              │
│        rank 0       │    rank 1    │
│       cols 0:3      │   cols 3:5   │
│                     │              │
│                     │              │
└─────────────────────┴──────────────┘""",
        "vector": """\
(2,) float32 Shard(0) over 2 ranks
┌─────────────────┬──────────────────┐
│      rank 0     │      rank 1      │
│      [0:1]      │      [1:2]       │
└─────────────────┴──────────────────┘""",
        "partial": """\
(2,) float32 Partial() over 2 ranks
┌────────────────────────────────────┐
│            ranks 0 + 1             │
│              (summed)              │
└────────────────────────────────────┘""",
        "replicated": """\
(3,) float32 Replicate() over 2 ranks
┌────────────────────────────────────┐
│             ranks 0, 1             │
│        (a whole copy each)         │
└────────────────────────────────────┘""",
    },
    3: {
        "rows": """\
(5, 4) float32 Shard(0) over 3 ranks
┌────────────────────────────────────┐
│          rank 0  rows 0:2          │
│                                    │
├────────────────────────────────────┤
│          rank 1  rows 2:4          │
│                                    │
├────────────────────────────────────┤
│          rank 2  rows 4:5          │
└────────────────────────────────────┘""",
        "cols": """\
(2, 5) float32 Shard(1) over 3 ranks
┌────────────┬────────────┬──────────┐
│            │            │          │
│            │            │          │
│   rank 0   │   rank 1   │  rank 2  │
│  cols 0:2  │  cols 2:4  │ cols 4:5 │
│            │            │          │
│            │            │          │
└────────────┴────────────┴──────────┘""",
        "vector": """\
(2,) float32 Shard(0) over 3 ranks
┌─────────────┬─────────────┬────────┐
│    rank 0   │    rank 1   │ rank 2 │
│    [0:1]    │    [1:2]    │ empty  │
└─────────────┴─────────────┴────────┘""",
        "partial": """\
(2,) float32 Partial() over 3 ranks
┌────────────────────────────────────┐
│          ranks 0 + 1 + 2           │
│              (summed)              │
└────────────────────────────────────┘""",
        "replicated": """\
(3,) float32 Replicate() over 3 ranks
┌────────────────────────────────────┐
│           ranks 0, 1, 2            │
│        (a whole copy each)         │
└────────────────────────────────────┘""",
    },
}


def test_pictures_match_at_this_world_size():
    size = world.world_size()
    got = pictures()
    if size in EXPECTED:
        for name, text in EXPECTED[size].items():
            assert got[name] == text, f"{name} at {size} ranks:\n{got[name]}"
        return
    for name, text in got.items():  # 4 ranks and more: one labelled block per rank
        assert f"over {size} ranks" in text.splitlines()[0]
        if name in ("rows", "cols", "vector"):
            assert all(f"rank {r} " in text for r in range(size)), text
    assert "empty" in got["vector"]


def test_only_two_dims_and_fewer():
    with pytest.raises(ValueError, match="draws 0-, 1- and 2-D tensors"):
        dist.visualize(gt.ones(2, 2, 2))
