"""Draw the pictures in docs/images/ that the tour shows, each beside the text it was drawn from.

    python docs/make_images.py

- three-ops-graph.png (chapter 1): `minigt.viz.graph` of the chapter's example, drawn with
  matplotlib (so it looks the same with or without Graphviz); three-ops-graph.dot is its DOT text.
- timeline-dp2-tp2.png (chapter 4): step 2 of a tiny Pixel Transformer trained on 4 ranks as
  dp 2 x tp 2 (TRACE_RUN below), drawn by `python -m minigt timeline`;
  timeline-dp2-tp2.txt lists each rank's collectives in that step.

Timings differ from run to run, so the pictures are not compared; their texts are:
tests/viz/test_doc_images.py rebuilds both and fails, naming this command, when they differ
(the graph, or the communication of a step, has changed since the pictures were drawn).
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

import minigt as gt
from minigt import viz
from minigt.distributed import timeline

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
TRACE_RUN = ["-n", "4", "examples/train_pixel.py", "--tp", "2", "--img", "8", "--dim", "16",
             "--heads", "2", "--layers", "1", "--ff", "32", "--n", "8", "--batch", "4",
             "--epochs", "1"]
STEP = 2  # the first step pays for warming up


def three_ops_graph() -> viz.Graph:
    """Chapter 1's example, loss = sum(exp(x * w)), as a graph."""
    x = gt.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]], requires_grad=True)
    w = gt.tensor([0.5, -1.0, 0.25], requires_grad=True)
    loss = (x * w).exp().sum()
    return viz.graph(loss, params={"x": x, "w": w})


def trace_step(path: Path) -> None:
    """Run TRACE_RUN under mpirun with MINIGT_TRACE=path."""
    env = {**os.environ, "MINIGT_TRACE": str(path), "OMP_NUM_THREADS": "1", "MPIEXEC_TIMEOUT": "120"}
    env.pop("GT_AUTO_SHARD", None)
    mpirun = Path(sys.executable).with_name("mpirun")
    subprocess.run([str(mpirun), *TRACE_RUN[:2], sys.executable, *TRACE_RUN[2:]], cwd=ROOT,
                   env=env, check=True, capture_output=True, text=True, timeout=180)


def collectives(drawn: timeline.Timeline) -> str:
    """Each rank's collectives within its own span of step STEP, in order, with their bytes."""
    lines = []
    for lane in drawn.lanes:
        step = next(e for e in lane.events if e.kind == "step" and e.name == f"step {STEP}")
        calls = [f"{e.name} {e.bytes} B" for e in lane.events
                 if e.kind == "collective" and step.start <= e.start <= step.stop]
        lines.append(f"rank {lane.rank}: {', '.join(calls)}\n")
    return "".join(lines)


def main() -> None:
    IMAGES.mkdir(exist_ok=True)
    graph = three_ops_graph()
    graph.save(IMAGES / "three-ops-graph.png", engine="matplotlib")
    graph.save(IMAGES / "three-ops-graph.dot")
    with tempfile.TemporaryDirectory() as folder:
        trace = Path(folder) / "trace.json"
        trace_step(trace)
        drawn = timeline.draw(trace, IMAGES / "timeline-dp2-tp2.png", step=STEP)
    (IMAGES / "timeline-dp2-tp2.txt").write_text(collectives(drawn), encoding="utf-8")
    for name in sorted(os.listdir(IMAGES)):
        print(f"wrote docs/images/{name}: {(IMAGES / name).stat().st_size // 1024} KB")


if __name__ == "__main__":
    main()
