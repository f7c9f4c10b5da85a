"""What NumPy's BLAS reads from the environment once, when NumPy loads it. `import minigt` sets
it before NumPy loads (import minigt first; after NumPy it is too late and left alone), and a
value you set yourself always wins.

OPENBLAS_THREAD_TIMEOUT: an idle OpenBLAS worker spins 2^N cycles before it sleeps.
  - OpenBLAS's own 2^28 (about 0.1 s) keeps it spinning through the optimizer's update, on the
    core that Adam's threads (optim.each_piece) need: Adam's step at batch 16, 2 threads, took
    26 ms against 18 ms.
  - Sleeping at once (2^4) costs a wake-up at nearly every matmul of a step, as they come tens of
    microseconds apart: SGD's whole step 42.2 against 40.5 ms (medians of 5 runs each).
  - 2^20, a few tenths of a millisecond, gets both (2-core AMD EPYC, 2026-12-06).

OMP_NUM_THREADS and OPENBLAS_NUM_THREADS, when an MPI launcher starts several ranks on this
machine (MPICH's MPI_LOCALNRANKS, Open MPI's OMPI_COMM_WORLD_LOCAL_SIZE): BLAS would start a
thread per CPU in every rank, ranks × CPUs threads fighting for the CPUs. Each rank gets its
share instead, CPUs / ranks and at least 1: `mpirun -n 8 python examples/train_pixel.py` on 2
CPUs trained in 12.7 s with 2 threads a rank, 7.4 s with 1.
"""
from __future__ import annotations

import os

SPIN_LOG2_CYCLES = "20"
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
_LOCAL_RANKS_VARIABLES = ("MPI_LOCALNRANKS", "OMPI_COMM_WORLD_LOCAL_SIZE")


def configure(environ=os.environ) -> None:
    """Set the variables above in `environ` where they are unset."""
    environ.setdefault("OPENBLAS_THREAD_TIMEOUT", SPIN_LOG2_CYCLES)
    ranks = local_ranks(environ)
    if ranks > 1 and not any(name in environ for name in _THREAD_VARIABLES):
        share = str(max(1, cpu_count() // ranks))
        environ["OMP_NUM_THREADS"] = environ["OPENBLAS_NUM_THREADS"] = share


def local_ranks(environ) -> int:
    """How many ranks the MPI launcher started on this machine (1 without one)."""
    for name in _LOCAL_RANKS_VARIABLES:
        value = environ.get(name, "").strip()
        if value.isdigit() and int(value) > 0:
            return int(value)
    return 1


def cpu_count() -> int:
    """The CPUs this process may run on."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1
