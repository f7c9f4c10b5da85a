"""A `MINIGT_TRACE` file as a picture: `python -m minigt timeline trace.json -o timeline.png`.

One lane per rank, time running right. Ops are coloured by kind, collectives are orange with
their bytes written above, spans of category "step" (the training loop's) begin and end at dashed
lines, and spans of category "phase" (e.g. "backward") are a band under the lane. Hatching shows
idle time: how long a rank waited in a collective for the last rank of its group to arrive.

The trace names a collective's group size but not its ranks, so the waits are estimated: the
k-th call with the same name and bytes on each rank is taken as one collective, and of its calls
that overlap in time, the group size nearest in start time as one group (exact when every group
is the whole world).
"""
from __future__ import annotations

import json
import os
from collections import defaultdict
from dataclasses import dataclass, field

from ..autograd import Function
from ..nn import functional  # noqa: F401 - defines the fused layers' Functions, named in traces
from . import dtensor, functions  # noqa: F401 - and the Functions that communicate

# The module that defines an op's Function -> the colour group it is drawn in.
KIND_OF_MODULE = {
    "linalg": "matmul", "linear": "matmul",
    "elementwise": "elementwise", "unary": "elementwise", "comparison": "elementwise",
    "reductions": "reduction, norm", "normalization": "reduction, norm",
    "losses": "reduction, norm", "extreme_rules": "reduction, norm",
    "shape": "shape, index", "indexing": "shape, index",
    "dtensor": "comm op", "functions": "comm op",  # Functions whose forward communicates
}
COLOURS = {
    "matmul": "#4c72b0", "elementwise": "#55a868", "reduction, norm": "#c44e52",
    "shape, index": "#8172b2", "other op": "#937860", "comm op": "#da8bc3",
    "redistribute": "#e5c14b", "collective": "#dd8452",
}
WIDTH, LANE_H, TOP = 12.0, 0.7, 0.9  # inches: figure width, per lane, legend and axis room
DPI = 100


@dataclass
class Event:
    """One traced span, times in seconds from the start of the picture."""

    name: str
    kind: str  # a key of COLOURS, or "step" / "phase"
    start: float
    duration: float
    bytes: int | None = None
    group_size: int = 1  # for a collective: how many ranks take part
    wait: float = 0.0  # for a collective: the part spent waiting for the group's last rank

    @property
    def stop(self) -> float:
        return self.start + self.duration


@dataclass
class Lane:
    """One rank's events, and the time it waited in collectives."""

    rank: int
    events: list = field(default_factory=list)

    @property
    def waited(self) -> float:
        return sum(e.wait for e in self.events)


@dataclass
class Timeline:
    """A trace read and cut to a window: one lane per rank."""

    lanes: list
    span: float  # the window's length in seconds

    def steps(self, rank: int = 0) -> list:
        return [e for e in self.lanes[rank].events if e.kind == "step"]


def read(path: str | os.PathLike, step: int | None = None) -> Timeline:
    """The trace at `path` as lanes; with `step` (1 = the first), only that training step."""
    with open(path, encoding="utf-8") as f:
        trace = json.load(f)
    if not isinstance(trace, dict) or not isinstance(trace.get("traceEvents"), list):
        raise ValueError(f"{path}: not a trace (no traceEvents list); MINIGT_TRACE=FILE writes one")
    raw = [e for e in trace["traceEvents"] if e.get("ph") == "X"]
    if not raw:
        raise ValueError(f"{path}: no events; was MINIGT_TRACE set when the program ran?")
    by_rank = defaultdict(list)
    for e in sorted(raw, key=lambda e: e["ts"]):
        by_rank[e["pid"]].append(e)
    start, stop = _window(by_rank, step, path)
    lanes = []
    for rank in sorted(by_rank):
        lane, steps = Lane(rank), 0
        for e in by_rank[rank]:
            kind, args = _kind(e), e.get("args", {})
            steps += kind == "step"
            lane.events.append(Event(f"{e['name']} {steps}" if kind == "step" else e["name"], kind,
                                     (e["ts"] - start) / 1e6, e["dur"] / 1e6, args.get("bytes"),
                                     args.get("group_size", 1)))
        lanes.append(lane)
    _estimate_waits(lanes)  # over the whole trace: the k-th call must be counted from the start
    span = (stop - start) / 1e6
    for lane in lanes:
        lane.events = [e for e in lane.events if e.stop > 0 and e.start < span]  # overlapping
    return Timeline(lanes, span)


def _window(by_rank: dict, step: int | None, path) -> tuple[float, float]:
    """[start, stop) in the trace's microseconds: everything, or one step on every rank."""
    if step is None:
        events = [e for rank_events in by_rank.values() for e in rank_events]
        return min(e["ts"] for e in events), max(e["ts"] + e["dur"] for e in events)
    chosen = []
    for rank, events in sorted(by_rank.items()):
        steps = [e for e in events if e.get("cat") == "step"]
        if not 1 <= step <= len(steps):
            raise ValueError(f"{path}: rank {rank} traced {len(steps)} steps, so there is no step "
                             f"{step} (steps are spans of category 'step', counted from 1)")
        chosen.append(steps[step - 1])
    return min(e["ts"] for e in chosen), max(e["ts"] + e["dur"] for e in chosen)


def _kind(event: dict) -> str:
    category = event.get("cat")
    if category in ("collective", "redistribute", "step", "phase"):
        return category
    cls = _functions().get(event["name"])
    module = cls.__module__.rsplit(".", 1)[-1] if cls else None
    return KIND_OF_MODULE.get(module, "other op")


def _functions() -> dict:
    """Every Function subclass defined so far, by name (what a trace calls an op)."""
    found, todo = {}, [Function]
    while todo:
        for cls in todo.pop().__subclasses__():
            found.setdefault(cls.__name__, cls)
            todo.append(cls)
    return found


def _estimate_waits(lanes: list) -> None:
    calls = defaultdict(list)  # (name, bytes, k) -> the k-th such collective of each rank
    for lane in lanes:
        seen = defaultdict(int)
        for e in lane.events:
            if e.kind == "collective":
                key = (e.name, e.bytes)
                calls[key + (seen[key],)].append(e)
                seen[key] += 1
    for same in calls.values():
        for e in same:
            overlapping = [o for o in same if o is not e and o.start <= e.stop and o.stop >= e.start]
            peers = sorted(overlapping, key=lambda o: abs(o.start - e.start))[:e.group_size - 1]
            e.wait = min(max([e.start] + [o.start for o in peers]), e.stop) - e.start


def draw(trace: str | os.PathLike, path: str | os.PathLike, step: int | None = None) -> Timeline:
    """Draw the trace file `trace` (written under MINIGT_TRACE) as a PNG at `path`, one lane per
    rank; `step` picks one training step (1 = the first). Returns what was drawn."""
    from matplotlib.figure import Figure  # not pyplot: the user's backend and figures stay as they are
    from matplotlib.patches import Patch

    drawn = read(trace, step)
    scale = 1e3  # seconds -> milliseconds on the axis
    fig = Figure(figsize=(WIDTH, TOP + LANE_H * len(drawn.lanes)), dpi=DPI)
    ax = fig.subplots()
    for row, lane in enumerate(drawn.lanes):
        y = -row
        ax.axhspan(y - 0.42, y + 0.42, color="#f4f4f4", zorder=0, lw=0)
        last_label = -1.0
        for e in sorted(lane.events, key=lambda e: _DEPTH[e.kind] if e.kind in _DEPTH else 0):
            left, width = e.start * scale, e.duration * scale
            if e.kind == "step":  # where this rank's step begins and ends
                ax.vlines([left, left + width], y - 0.45, y + 0.45, color="#333333", ls="--",
                          lw=0.8, zorder=5)
                ax.text(left, y + 0.44, f" {e.name}", fontsize=6, va="bottom", zorder=5)
            elif e.kind == "phase":
                ax.barh(y - 0.33, width, left=left, height=0.1, color="#999999", zorder=1)
                ax.text(left, y - 0.39, e.name, fontsize=5.5, va="top", color="#555555", zorder=1)
            else:
                ax.barh(y, width, left=left, height=0.5, color=COLOURS[e.kind], lw=0,
                        zorder=_DEPTH[e.kind])
            if e.wait > 0:
                ax.barh(y, e.wait * scale, left=left, height=0.5, color="#ffffff", alpha=0.6,
                        hatch="////", edgecolor="#555555", lw=0, zorder=4)
            if e.kind == "collective" and e.bytes is not None and left > last_label:
                ax.text(left, y + 0.27, _size(e.bytes), fontsize=5.5, va="bottom", zorder=5)
                last_label = left + 0.045 * drawn.span * scale  # room for the label's text
    ax.set_yticks([-row for row in range(len(drawn.lanes))])
    ax.set_yticklabels([f"rank {lane.rank}\nidle {100 * lane.waited / drawn.span:.0f}%"
                        for lane in drawn.lanes], fontsize=8)
    ax.set_ylim(-len(drawn.lanes) + 0.45, 0.65)
    ax.set_xlim(0, drawn.span * scale)
    ax.set_xlabel("ms", fontsize=8)
    ax.tick_params(axis="x", labelsize=7)
    kinds = {e.kind for lane in drawn.lanes for e in lane.events}
    handles = [Patch(color=colour, label=kind) for kind, colour in COLOURS.items() if kind in kinds]
    handles.append(Patch(facecolor="#ffffff", hatch="////", edgecolor="#555555",
                         label="waiting for other ranks"))
    ax.legend(handles=handles, loc="lower left", bbox_to_anchor=(0, 1.0), ncol=len(handles),
              fontsize=7, frameon=False)
    height = TOP + LANE_H * len(drawn.lanes)
    fig.subplots_adjust(left=0.08, right=0.99, bottom=0.45 / height, top=1 - 0.4 / height)
    fig.savefig(path, dpi=DPI)
    return drawn


_DEPTH = {"other op": 1, "matmul": 1, "elementwise": 1, "reduction, norm": 1, "shape, index": 1,
          "comm op": 1, "redistribute": 2, "collective": 3}  # nested spans: the inner drawn on top


def _size(n: int) -> str:
    """Bytes for a label: 512 B, 14 KB, 3.2 MB."""
    for unit, scale in (("MB", 1e6), ("KB", 1e3)):
        if n >= scale:
            return f"{n / scale:.2g} {unit}" if n < 10 * scale else f"{n / scale:.0f} {unit}"
    return f"{n} B"
