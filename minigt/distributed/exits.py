"""A rank that leaves ends the whole job, instead of leaving the others waiting in a collective.

- An uncaught exception, in the main thread or another: the traceback, each line marked with the
  rank, then MPI Abort, which ends every rank.
- The program ending, or sys.exit with any status: at exit the rank joins the signature
  exchange of checks.py in each of its groups, with the signature "exit". When every rank is
  leaving, all of them see only "exit" and end normally, each with its own status. A rank that
  is inside a collective sees "exit" where its call should be and raises CollectiveMismatch
  ("rank 1: has exited: sys.exit(0) at train.py:40"), which aborts the job; a rank still
  computing meets the "exit" at its next collective. No timeout is guessed. The leaving rank,
  seeing a rank that is not leaving, prints the same message and aborts with its status (1 for
  0). Python keeps no exit status for atexit functions to read, so `sys.exit` is wrapped to note
  its status and line for that message.
- SIGTERM: Python's faulthandler prints where each thread was; the signal then ends the process
  as before, and the launcher ends the other ranks.
With MINIGT_CHECK_COLLECTIVES=0 there is no exchange to join, so only the first and last apply.
"""
from __future__ import annotations

import atexit
import faulthandler
import signal
import sys
import threading
import traceback

from . import checks

_sys_exit = sys.exit
_exit_call: tuple | None = None  # (status, "file:line") of the last sys.exit call


def install(comm, rank: int, groups) -> None:
    """Watch this rank's ways out (world.init calls it in a job of several ranks). `groups()`
    returns the rank's groups at exit; `comm` spans the job, for Abort."""
    def report(exc_type, exc, tb) -> None:
        _abort(comm, rank, "".join(traceback.format_exception(exc_type, exc, tb)))

    def thread_hook(args) -> None:
        if not issubclass(args.exc_type, SystemExit):  # threading ignores SystemExit too
            report(args.exc_type, args.exc_value, args.exc_traceback)

    sys.excepthook, threading.excepthook = report, thread_hook
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL and sys.__stderr__ is not None:
        faulthandler.register(signal.SIGTERM, file=sys.__stderr__, chain=True)
    if checks.ENABLED:
        sys.exit = _noting_exit
        atexit.register(_leave, comm, rank, groups)  # runs before mpi4py finalizes MPI


def _noting_exit(status=None):
    """sys.exit(status), noting the status and the caller's line for a message at exit."""
    global _exit_call
    file, line = checks.call_site()
    _exit_call = (status, f"{file}:{line}")
    _sys_exit(status)


def _leave(comm, rank: int, groups) -> None:
    """At exit: end normally if every rank of every group is leaving too, else abort the job."""
    from mpi4py import MPI

    if MPI.Is_finalized():  # the program finalized MPI itself: nothing left to tell
        return
    status, where = _exit_call or (None, None)
    row = (f"has exited: sys.exit({status!r}) at {where}" if where else
           "has exited: its program ended (or raised SystemExit)")
    unique = {id(g.checks): g for g in groups() if g.checks is not None}.values()
    pending = [(g, *checks.start(g, checks.LEAVING)) for g in unique]
    requests = [request for _, request, _ in pending]
    try:
        for _ in pending:  # settle each group as its exchange completes, in any order
            g, _, table = pending[MPI.Request.Waitany(requests)]
            checks.settle(g, table, checks.LEAVING, lambda: row)
    except checks.CollectiveMismatch as mismatch:
        _abort(comm, rank, f"{type(mismatch).__name__}: {mismatch}",
               status if isinstance(status, int) and status else 1)


def _abort(comm, rank: int, text: str, code: int = 1) -> None:
    """Print `text` with each line marked by the rank, then end every rank of the job."""
    sys.stdout.flush()
    sys.stderr.write("".join(f"[rank {rank}] {line}\n" for line in text.splitlines()))
    sys.stderr.flush()
    comm.Abort(code)
