"""The job: which rank this process is, how many there are, and which GPU it drives.

One process per GPU runs the same program (SPMD), started by an MPI launcher such as
`mpirun -n 4 python train.py`. Without a launcher minigt is rank 0 of 1 and never touches MPI.
mpi4py is imported on first use, not when minigt is imported: it costs startup time, and
importing it starts MPI. That first use (any function below) is collective: every rank makes
it, as every rank runs the same program.

Groups: `init_parallel(tensor_parallel=tp)` splits the world into tensor groups of tp consecutive
ranks and data groups of the ranks at the same place in each tensor group (dp x tp = world size).
Collectives take a `group=`; without one they span the whole world. Each group of several ranks
keeps a second communicator for checks.py's signatures; exits.py ends the job when a rank leaves.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field

from ..backends import cuda_available, gpu_count, use_gpu
from . import checks, exits, waiting

# What each launcher sets in the processes it starts: (rank variable, size variable or None).
_LAUNCHER_VARIABLES = (
    ("PMI_RANK", "PMI_SIZE"),  # MPICH's hydra, Intel MPI
    ("OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE"),  # Open MPI
    ("MV2_COMM_WORLD_RANK", "MV2_COMM_WORLD_SIZE"),  # MVAPICH
    ("PMIX_RANK", None),  # PMIx launchers (prterun, srun --mpi=pmix)
)


@dataclass(frozen=True)
class _World:
    comm: object  # an mpi4py communicator, or None when running alone
    rank: int
    size: int
    local_rank: int  # rank among the processes on this machine
    local_size: int


_world: _World | None = None


@dataclass(frozen=True)
class Group:
    """Ranks that run collectives together, seen from one of them: its rank there, their count."""

    comm: object  # an mpi4py communicator over the group, or None for a group of one
    rank: int
    size: int
    # a copy of comm for checks.py's signatures (None: unchecked), so they never meet data
    checks: object = field(default=None, compare=False)


_ALONE = Group(comm=None, rank=0, size=1)


@dataclass(frozen=True)
class _Parallel:
    tensor_parallel: int
    tensor: Group
    data: Group


_world_group: Group | None = None
before_free: list = []  # called with a communicator about to be freed (transports drop theirs)
_parallel: _Parallel | None = None  # None: tensor_parallel 1, the default


def launcher_rank_size(environ=None) -> tuple[int, int | None] | None:
    """(rank, size) announced by an MPI launcher's environment (size None if not said), or None."""
    environ = os.environ if environ is None else environ
    for rank_name, size_name in _LAUNCHER_VARIABLES:
        if rank_name in environ:
            size = environ.get(size_name) if size_name else None
            return int(environ[rank_name]), None if size is None else int(size)
    return None


def init() -> None:
    """Join the job (collective on first call, then free); every function below calls it."""
    global _world, _world_group
    if _world is not None:
        return
    _world = _join()
    waiting.configure(_world.local_size)
    _world_group = _group_of(_world.comm)
    if _world.size > 1:
        exits.install(_world.comm, _world.rank, _my_groups)
    if _world.comm is not None:  # launched: one GPU per rank (alone, keep the current one)
        bind_device()


def _join() -> _World:
    alone = _World(comm=None, rank=0, size=1, local_rank=0, local_size=1)
    launched = launcher_rank_size()
    if launched is None:
        return alone
    try:
        from mpi4py import MPI
    except ImportError:
        if (launched[1] or 1) > 1:  # N copies each thinking it is alone would be silently wrong
            raise RuntimeError(
                f"launched as one of {launched[1]} MPI processes, but mpi4py is not installed: "
                "pip install mpi4py (and an MPI, e.g. pip install mpich)"
            ) from None
        return alone
    # A private copy of COMM_WORLD, so a user's own MPI messages never mix with ours.
    comm = MPI.COMM_WORLD.Dup()
    node = comm.Split_type(MPI.COMM_TYPE_SHARED)  # the ranks sharing this machine's memory
    local_rank, local_size = node.Get_rank(), node.Get_size()
    node.Free()
    return _World(comm, comm.Get_rank(), comm.Get_size(), local_rank, local_size)


def rank() -> int:
    """This process's rank, 0 <= rank < world_size()."""
    init()
    return _world.rank


def world_size() -> int:
    """How many processes run the program (1 without an MPI launcher)."""
    init()
    return _world.size


def local_rank() -> int:
    """This process's rank among those on the same machine."""
    init()
    return _world.local_rank


def local_size() -> int:
    """How many of the job's processes run on this machine."""
    init()
    return _world.local_size


def comm():
    """The mpi4py communicator minigt uses (a copy of COMM_WORLD), or None when not launched."""
    init()
    return _world.comm


def world_group() -> Group:
    """The whole job as a group."""
    init()
    return _world_group


def init_parallel(tensor_parallel: int = 1) -> None:
    """Split the world into tensor and data groups of tensor_parallel and world_size // it ranks.

    Collective. Tensor groups are consecutive ranks [k*tp, (k+1)*tp); a data group holds the ranks
    at the same place in each tensor group. Again with the same value it does nothing; with
    another it frees the groups it made and splits anew.
    """
    global _parallel
    size, tp = world_size(), tensor_parallel
    if not isinstance(tp, int) or tp < 1 or size % tp:
        raise ValueError(f"init_parallel: tensor_parallel={tp!r} must be a whole number >= 1 "
                         f"that divides the world size {size}")
    checks.check(world_group(), "init_parallel", how=f"tensor_parallel={tp}")
    if (1 if _parallel is None else _parallel.tensor_parallel) == tp:
        return
    _free_parallel()
    if tp > 1:  # tp 1 is the default: each rank its own tensor group, the world one data group
        me = rank()
        _parallel = _Parallel(tp, tensor=_split(me // tp, tp), data=_split(me % tp, size // tp))


def tensor_group() -> Group:
    """This rank's tensor-parallel group (by default, this rank alone)."""
    return _ALONE if _parallel is None else _parallel.tensor


def data_group() -> Group:
    """This rank's data-parallel group (by default, the world)."""
    return world_group() if _parallel is None else _parallel.data


def _my_groups() -> tuple:
    """Every group this rank is in (exits.py waits in each when the rank leaves)."""
    return _world_group, tensor_group(), data_group()


def _split(color: int, size: int) -> Group:
    """This rank's group when the world splits into groups of `size` (collective unless trivial)."""
    # Every rank knows `size`, so all skip the Split alike: no new communicator (nor NCCL one)
    # for a group of one or for a copy of the world.
    if size == 1:
        return _ALONE
    if size == world_size():
        return world_group()
    return _group_of(_world.comm.Split(color, key=_world.rank))  # key: members by world rank


def _group_of(comm) -> Group:
    """The group of `comm` (None: this rank alone), with its copy for checks when they are on."""
    if comm is None:
        return _ALONE
    copy = comm.Dup() if checks.ENABLED and comm.Get_size() > 1 else None
    return Group(comm, comm.Get_rank(), comm.Get_size(), checks=copy)


def _free_parallel() -> None:
    """Free the communicators init_parallel made (and the transports bound to them)."""
    global _parallel
    if _parallel is None:
        return
    for group in (_parallel.tensor, _parallel.data):
        if group.comm is not None and group.comm is not _world.comm:
            for hook in before_free:
                hook(group.comm)
            group.comm.Free()
            if group.checks is not None:
                group.checks.Free()
    _parallel = None


def bind_device() -> str:
    """Make GPU local_rank % GPU count current on this rank; returns it ('cpu' without CuPy)."""
    if not cuda_available():
        return "cpu"
    index = local_rank() % gpu_count()
    use_gpu(index)
    return f"cuda:{index}"
