"""A Chrome trace of collectives and ops: `MINIGT_TRACE=trace.json mpirun -n 4 python train.py`.

Each rank records complete events ("ph": "X", times in microseconds); at exit rank 0 gathers
them and writes one file in which each rank is a process (pid = rank), so Perfetto
(ui.perfetto.dev) or chrome://tracing shows one track per rank. With MINIGT_TRACE unset,
`span` costs one bool check and hands back a shared do-nothing context.
"""
from __future__ import annotations

import atexit
import contextlib
import json
import os
import sys
import threading
import time

from . import world

_PATH = os.environ.get("MINIGT_TRACE") or None
_ENABLED = _PATH is not None
_NO_SPAN = contextlib.nullcontext()

# Timestamps are wall-clock microseconds (so ranks line up), advanced by the precise counter.
_WALL_NS = time.time_ns()
_PERF_NS = time.perf_counter_ns()

_events: list[tuple] = []  # (name, category, start ns, duration ns, thread id, args)


def enabled() -> bool:
    """Whether MINIGT_TRACE asked for a trace."""
    return _ENABLED


def span(name: str, category: str = "op", **args):
    """A context manager timing its block as one event (args, e.g. bytes=n, land in the trace)."""
    if not _ENABLED:
        return _NO_SPAN
    return _Span(name, category, args)


class _Span:
    __slots__ = ("name", "category", "args", "start")

    def __init__(self, name: str, category: str, args: dict):
        self.name, self.category, self.args = name, category, args

    def __enter__(self):
        self.start = time.perf_counter_ns()
        return self

    def __exit__(self, *exc):
        duration = time.perf_counter_ns() - self.start
        _events.append((self.name, self.category, self.start, duration,
                        threading.get_native_id(), self.args))
        return False


def write(path: str | None = None) -> None:
    """Gather every rank's events to rank 0, which writes them to `path` (collective)."""
    comm = world.comm()
    # Event lists are small metadata, so mpi4py's pickling gather is fine here.
    per_rank = comm.gather(_events, root=0) if world.world_size() > 1 else [_events]
    if world.rank() != 0 or not any(per_rank):  # nothing traced (a run that stopped early)
        return
    events = []
    for rank, rank_events in enumerate(per_rank):
        events.append({"name": "process_name", "ph": "M", "pid": rank,
                       "args": {"name": f"rank {rank}"}})
        events.extend(_chrome_event(rank, *event) for event in rank_events)
    with open(path or _PATH, "w") as f:
        json.dump({"traceEvents": events, "displayTimeUnit": "ms"}, f)


def _chrome_event(rank: int, name, category, start_ns, duration_ns, tid, args) -> dict:
    return {"name": name, "cat": category, "ph": "X", "pid": rank, "tid": tid,
            "ts": (_WALL_NS + start_ns - _PERF_NS) / 1000, "dur": duration_ns / 1000, "args": args}


def _write_at_exit() -> None:
    """`write`, failing the job if the file cannot be written (an atexit error alone exits 0)."""
    try:
        write()
    except OSError as error:
        print(f"minigt: MINIGT_TRACE={_PATH}: the trace could not be written ({error})",
              file=sys.stderr, flush=True)
        os._exit(1)


if _ENABLED:
    # Runs before MPI shuts down: mpi4py finalizes MPI after all atexit functions (Py_AtExit).
    atexit.register(_write_at_exit)
