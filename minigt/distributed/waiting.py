"""How a rank waits for MPI: spinning when it has a core to itself, sleeping when it does not.

MPI waits by spinning, which is fastest when every rank has a core. With more ranks on a machine
than cores (`mpirun -n 8` on a laptop), a rank spinning in a collective takes the core from one
that is still computing the data the collective waits for, and every step runs at the pace of
the scheduler. There, `wait` tests the request and sleeps between tests instead, leaving the
cores to the ranks with work. Every collective goes through a nonblocking call and `wait`, so all
ranks make the same kind of call whichever way they wait (MPI does not match a blocking
collective with a nonblocking one).
"""
from __future__ import annotations

import time

from .. import blas_setup

# Between tests the core goes to another rank. Shorter is better down to the kernel's timer slack
# (50 us): `make train` at -n 8 on 2 cores took 10.2 s at 200 us, 8.6-9.2 s at 50 us (sharded
# optimizer), and spinning in Wait() 10.2 s.
POLL_SECONDS = 5e-5
_crowded = False


def configure(ranks_on_this_machine: int) -> None:
    """Choose how to wait, once the job knows how many ranks share this machine."""
    global _crowded
    _crowded = ranks_on_this_machine > usable_cores()


usable_cores = blas_setup.cpu_count  # the cores this process may run on


def crowded() -> bool:
    """Whether this machine has more ranks than cores (waits then sleep)."""
    return _crowded


def wait(request) -> None:
    """Wait for an MPI request (or anything with Wait() and Test())."""
    if not _crowded:
        request.Wait()
        return
    while not request.Test():
        time.sleep(POLL_SECONDS)
