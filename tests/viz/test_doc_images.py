"""The tour's pictures are current: docs/make_images.py rebuilds the text each was drawn from and
the test compares it with the one stored beside the picture (timings vary, so not the pixels)."""
from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from pathlib import Path

import pytest

from minigt.distributed import timeline

DOCS = Path(__file__).resolve().parents[2] / "docs"
IMAGES = DOCS / "images"
MPIRUN = shutil.which("mpirun", path=os.path.dirname(sys.executable))
STALE = "is out of date: run python docs/make_images.py"


def load_make_images():
    spec = importlib.util.spec_from_file_location("make_images", DOCS / "make_images.py")
    make_images = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(make_images)
    return make_images


@pytest.mark.parametrize("picture, page", [("three-ops-graph.png", "01-tensors-and-the-graph.md"),
                                           ("timeline-dp2-tp2.png", "04-many-ranks.md")])
def test_each_picture_is_small_and_shown(picture, page):
    data = (IMAGES / picture).read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n") and len(data) < 100_000
    assert f"(images/{picture})" in (DOCS / page).read_text(encoding="utf-8")


def test_the_three_ops_graph_is_current():
    source = load_make_images().three_ops_graph().source
    assert (IMAGES / "three-ops-graph.dot").read_text(encoding="utf-8") == source, \
        f"docs/images/three-ops-graph.dot {STALE}"


@pytest.mark.skipif(MPIRUN is None, reason="no mpirun beside this Python (pip install mpich)")
def test_the_timeline_shows_the_communication_of_todays_step(tmp_path):
    make_images = load_make_images()
    make_images.trace_step(tmp_path / "trace.json")
    drawn = timeline.read(tmp_path / "trace.json", step=make_images.STEP)
    assert make_images.collectives(drawn) == \
        (IMAGES / "timeline-dp2-tp2.txt").read_text(encoding="utf-8"), \
        f"docs/images/timeline-dp2-tp2.txt {STALE}"
    assert len(drawn.lanes) == 4
