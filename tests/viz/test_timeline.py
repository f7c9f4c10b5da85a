"""`python -m minigt timeline`: a trace read into lanes, waits measured, drawn one lane per rank."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from minigt.__main__ import main
from minigt.distributed import timeline

ROOT = Path(__file__).resolve().parents[2]
MPIRUN = shutil.which("mpirun", path=os.path.dirname(sys.executable))
ARRIVALS = (400, 500, 600)  # µs into each step: when ranks 0, 1, 2 reach the all-reduce
ALL_DONE = 700


def write_trace(path: Path) -> None:
    """Two steps on three ranks: a matmul, an add, then an all-reduce every rank leaves together
    at ALL_DONE (so rank r waited ARRIVALS[-1] - ARRIVALS[r]); nothing from 700 to 1000."""
    events = []
    for rank, arrival in enumerate(ARRIVALS):
        def span(name, cat, start, stop, **args):
            events.append({"name": name, "cat": cat, "ph": "X", "pid": rank, "tid": 1,
                           "ts": 1e9 + start, "dur": stop - start, "args": args})
        events.append({"name": "process_name", "ph": "M", "pid": rank, "args": {"name": f"rank {rank}"}})
        for step in (0, 1000):
            span("step", "step", step, step + 1000)
            span("MatMul", "op", step + 100, step + 300)
            span("Add", "op", step + 300, step + 350)
            span("all_reduce", "collective", step + arrival, step + ALL_DONE, bytes=4096,
                 group_size=3, op="sum", path="mpi")
            span("backward", "phase", step + 900, step + 950)
    path.write_text(json.dumps({"traceEvents": events}))


def test_lanes_kinds_and_waits(tmp_path):
    write_trace(tmp_path / "t.json")
    whole = timeline.read(tmp_path / "t.json")
    assert [lane.rank for lane in whole.lanes] == [0, 1, 2] and whole.span == pytest.approx(2000e-6)
    kinds = {(e.name, e.kind) for e in whole.lanes[0].events}
    assert kinds == {("step 1", "step"), ("step 2", "step"), ("MatMul", "matmul"),
                     ("Add", "elementwise"), ("all_reduce", "collective"), ("backward", "phase")}
    for lane, arrival in zip(whole.lanes, ARRIVALS):
        assert lane.waited == pytest.approx(2 * (ARRIVALS[-1] - arrival) * 1e-6)
    second = timeline.read(tmp_path / "t.json", step=2)
    assert second.span == pytest.approx(1000e-6)
    assert [e.name for e in second.lanes[1].events if e.kind == "step"] == ["step 2"]
    with pytest.raises(ValueError, match="traced 2 steps, so there is no step 3"):
        timeline.read(tmp_path / "t.json", step=3)


def test_the_png_has_one_lane_per_rank(tmp_path, capsys):
    write_trace(tmp_path / "t.json")
    assert main(["timeline", str(tmp_path / "t.json"), "-o", str(tmp_path / "t.png")]) == 0
    assert "3 ranks over 2.0 ms; idle rank 0 20%, rank 1 10%, rank 2 0%" in capsys.readouterr().out
    from matplotlib.image import imread

    image = (imread(tmp_path / "t.png")[..., :3] * 255).round().astype(int)
    assert image.shape[:2] == (round((timeline.TOP + 3 * timeline.LANE_H) * timeline.DPI),
                               round(timeline.WIDTH * timeline.DPI))
    # A column at 0.8 ms, where no rank runs anything, crosses each lane's grey background once.
    column = image[:, round(image.shape[1] * (0.08 + 0.91 * 0.4))]
    lane = np.all(column == 244, axis=1)
    starts = np.flatnonzero(lane[1:] & ~lane[:-1])
    assert len(starts) == 3


def test_the_command_line_names_what_is_wrong(tmp_path, capsys):
    (tmp_path / "other.json").write_text("{}")
    for args in (["timeline", str(tmp_path / "missing.json")], ["timeline", str(tmp_path / "other.json")]):
        with pytest.raises(SystemExit):
            main(args)
    assert "not a trace (no traceEvents list)" in capsys.readouterr().err


@pytest.mark.skipif(MPIRUN is None, reason="no mpirun beside this Python (pip install mpich)")
def test_train_pixel_marks_its_steps_and_backward(tmp_path):
    env = {**os.environ, "MINIGT_TRACE": str(tmp_path / "t.json"), "OMP_NUM_THREADS": "1",
           "MPIEXEC_TIMEOUT": "60"}
    subprocess.run([MPIRUN, "-n", "2", sys.executable, "examples/train_pixel.py", "--img", "4",
                    "--dim", "8", "--heads", "2", "--layers", "1", "--ff", "8", "--n", "4",
                    "--batch", "2", "--epochs", "1"], cwd=ROOT, env=env, check=True,
                   capture_output=True, timeout=120)
    drawn = timeline.draw(tmp_path / "t.json", tmp_path / "t.png", step=2)
    for lane in drawn.lanes:
        names = [e.name for e in lane.events]
        assert names.count("step 2") == 1 and "backward" in names
        assert any(e.kind == "collective" and e.bytes for e in lane.events)
