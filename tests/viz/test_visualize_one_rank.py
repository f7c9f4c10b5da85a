"""dist.visualize in one process: the -n 1 case of tests/distributed/test_visualize.py (whose
other sizes run under mpirun), and what rank 0 prints."""
from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import minigt as gt
import minigt.distributed as dist

CASES = Path(__file__).resolve().parents[1] / "distributed" / "test_visualize.py"


def load_cases():
    spec = importlib.util.spec_from_file_location("visualize_cases", CASES)
    cases = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(cases)
    return cases


def test_pictures_at_one_rank():
    cases = load_cases()
    assert cases.pictures() == cases.EXPECTED[1]


def test_rank_0_prints_the_picture_it_returns():
    out = io.StringIO()
    text = dist.visualize(dist.shard(gt.ones(3, 2), dim=0), file=out)
    assert out.getvalue() == text + "\n"
