"""How collective data travels: MPI for host memory; NCCL, CUDA-aware MPI or host copies for GPUs.

A transport moves contiguous buffers among one group's ranks: `send` in, a preallocated `recv`
filled, counts in elements. `select_transport(array, group)` picks one per array and group;
$MINIGT_COLLECTIVES=auto|nccl|mpi|host overrides the choice for GPU arrays. All paths give the
same results. This file and minigt/backends are the only places that know about CuPy.
"""
from __future__ import annotations

import ctypes
import functools
import os

import numpy as np

from ..backends import array_module, cuda_available, gpu_count
from . import waiting, world
from .placement import shard_range
from .world import Group

SETTINGS = ("auto", "nccl", "mpi", "host")
_ENV = "MINIGT_COLLECTIVES"

# Variables that ask an MPI library to accept GPU memory (Cray MPICH, MVAPICH, Open MPI).
_CUDA_MPI_HINTS = ("MPICH_GPU_SUPPORT_ENABLED", "MV2_USE_CUDA", "OMPI_MCA_opal_cuda_support")


def choose_path(on_gpu: bool, setting: str, nccl_ok: bool, cuda_aware: bool) -> str:
    """'mpi', 'nccl' or 'host': host memory always goes through MPI; GPU memory per `setting`."""
    if setting not in SETTINGS:
        raise ValueError(f"{_ENV}={setting!r}: expected one of {', '.join(SETTINGS)}")
    if not on_gpu:
        return "mpi"
    if setting == "nccl" and not nccl_ok:
        raise RuntimeError(
            f"{_ENV}=nccl, but NCCL is not usable here (cupy.cuda.nccl is missing, or ranks on "
            "this machine outnumber its GPUs); use auto, mpi or host"
        )
    if setting != "auto":  # 'mpi' trusts you that MPI reads GPU memory, when detection missed it
        return setting
    if nccl_ok:
        return "nccl"
    return "mpi" if cuda_aware else "host"


_cache: dict[tuple[int, str, bool], object] = {}  # (id(comm), path, on_gpu) -> transport


def select_transport(array, group: Group | None = None):
    """The transport that carries `array`'s buffers in `group` (the world when None)."""
    on_gpu = array_module(array) is not np
    comm = (world.world_group() if group is None else group).comm
    path = _path(on_gpu)
    # One transport per communicator and path, so each group makes its NCCL communicator once.
    # Making one is collective over the group; every rank makes the same calls in the same order,
    # so the ranks of a group fill their caches alike. id(comm) stays unique while cached, as the
    # transport holds the comm (mpi4py communicators are unhashable).
    key = (id(comm), path, on_gpu)
    if key not in _cache:
        _cache[key] = _make_transport(comm, path, on_gpu)
    return _cache[key]


def release(comm) -> None:
    """Drop (and for NCCL, destroy) the transports bound to `comm`, before it is freed."""
    for key in [key for key in _cache if key[0] == id(comm)]:
        transport = _cache.pop(key)
        if isinstance(transport, NCCLTransport):
            transport.close()


world.before_free.append(release)


def path_for_backend(name: str) -> str:
    """The path collectives of 'numpy' or 'cupy' arrays take here ('n/a' for cupy without a GPU)."""
    if name == "cupy" and not cuda_available():
        return "n/a"
    return _path(on_gpu=name == "cupy")


def _path(on_gpu: bool) -> str:
    setting = os.environ.get(_ENV, "auto")
    return choose_path(on_gpu, setting, on_gpu and nccl_available(), on_gpu and cuda_aware_mpi())


def _make_transport(comm, path: str, on_gpu: bool):
    if path == "nccl":
        return NCCLTransport(comm)
    if path == "host":
        return HostCopyTransport(MPITransport(comm, on_gpu=False))
    return MPITransport(comm, on_gpu)


# ---- what this machine offers --------------------------------------------------------------------


@functools.cache
def nccl_available() -> bool:
    """True when CuPy has NCCL and each rank on this machine can have a GPU of its own."""
    try:
        from cupy.cuda import nccl
    except ImportError:
        return False
    return getattr(nccl, "available", True) and world.local_size() <= gpu_count()


@functools.cache
def cuda_aware_mpi() -> bool:
    """Best guess whether the MPI library reads GPU memory directly (see _mpix_query_cuda)."""
    answer = _mpix_query_cuda()
    if answer is not None:
        return answer
    return "cuda" in _memory_alloc_kinds() or _cuda_hint_in(os.environ)


def _mpix_query_cuda() -> bool | None:
    """Ask the loaded MPI library's MPIX_Query_cuda_support() (Open MPI, MPICH >= 4.1), if any.

    mpi4py does not wrap this extension, so find the library in this process's memory map
    and call it through ctypes. None when the library has no such function (or not on Linux).
    """
    try:
        with open("/proc/self/maps") as maps:
            paths = {line.split()[-1] for line in maps if "/libmpi" in line}
    except OSError:
        return None
    for path in sorted(paths):
        try:  # RTLD_NOLOAD: only look at a library that is already loaded
            query = ctypes.CDLL(path, mode=os.RTLD_NOLOAD).MPIX_Query_cuda_support
        except (OSError, AttributeError):
            continue
        query.restype, query.argtypes = ctypes.c_int, []
        return bool(query())
    return None


def _memory_alloc_kinds() -> str:
    """MPI 4.1's 'mpi_memory_alloc_kinds' of COMM_WORLD, e.g. 'mpi,system,cuda:device'."""
    if world.comm() is None:
        return ""
    from mpi4py import MPI

    return dict(MPI.COMM_WORLD.Get_info().items()).get("mpi_memory_alloc_kinds", "")


def _cuda_hint_in(environ) -> bool:
    """Whether the environment switches on an MPI's GPU support (a hint, not proof)."""
    return any(environ.get(name, "").lower() in ("1", "true", "yes") for name in _CUDA_MPI_HINTS)


# ---- the transports ------------------------------------------------------------------------------


class _Done:
    """The request of a call that finished when it was made."""

    def Wait(self) -> None:  # noqa: N802 - the name mpi4py's requests use
        pass

    def Test(self) -> bool:  # noqa: N802
        return True


DONE = _Done()


class MPITransport:
    """mpi4py's buffer methods: host memory, or GPU memory with a CUDA-aware MPI."""

    name = "mpi"

    def __init__(self, comm, on_gpu: bool):
        self.comm, self.on_gpu = comm, on_gpu

    def _ready(self) -> None:
        """Wait for queued GPU work: MPI knows no CUDA streams, and must read finished data."""
        if self.on_gpu:
            import cupy

            cupy.cuda.get_current_stream().synchronize()

    def allreduce(self, send, recv, op: str) -> None:
        self._ready()
        from mpi4py import MPI

        # one buffer for both: MPI's in-place form (passing it twice is not allowed)
        waiting.wait(self.comm.Iallreduce(MPI.IN_PLACE if send is recv else send, recv,
                                          op=_mpi_op(op)))

    def start_allreduce(self, buf, op: str):
        """Begin an in-place all-reduce of `buf`; the returned request's Wait() ends it."""
        self._ready()
        from mpi4py import MPI

        return self.comm.Iallreduce(MPI.IN_PLACE, buf, op=_mpi_op(op))

    def start_reduce_scatter(self, send, recv, counts: list[int], op: str):
        """Begin a reduce-scatter; the returned request's Wait() ends it."""
        self._ready()
        return self.comm.Ireduce_scatter(send, recv, counts, op=_mpi_op(op))

    def allgatherv(self, send, recv, counts: list[int]) -> None:
        """Every rank's `send` into `recv`, back to back; send None: this rank's part is in
        `recv` already (in place, as with every allgatherv here)."""
        self._ready()
        from mpi4py import MPI

        waiting.wait(self.comm.Iallgatherv(MPI.IN_PLACE if send is None else send, [recv, counts]))

    def reduce_scatter(self, send, recv, counts: list[int], op: str) -> None:
        self._ready()
        waiting.wait(self.comm.Ireduce_scatter(send, recv, counts, op=_mpi_op(op)))

    def bcast(self, buf, root: int) -> None:
        self._ready()
        waiting.wait(self.comm.Ibcast(buf, root=root))


class HostCopyTransport:
    """GPU arrays staged through host memory, for an MPI that cannot read GPU memory."""

    name = "host"

    def __init__(self, mpi: MPITransport):
        self.mpi = mpi

    def allreduce(self, send, recv, op: str) -> None:
        self._staged(self.mpi.allreduce, send, recv, op)

    def start_allreduce(self, buf, op: str):
        self.allreduce(buf, buf, op)  # the staging copies wait for the GPU anyway: done at once
        return DONE

    def start_reduce_scatter(self, send, recv, counts: list[int], op: str):
        self.reduce_scatter(send, recv, counts, op)
        return DONE

    def allgatherv(self, send, recv, counts: list[int]) -> None:
        if send is None:  # in place: this rank's part travels in recv
            host = recv.get()
            self.mpi.allgatherv(None, host, counts)
            recv.set(host)
            return
        self._staged(self.mpi.allgatherv, send, recv, counts)

    def reduce_scatter(self, send, recv, counts: list[int], op: str) -> None:
        self._staged(self.mpi.reduce_scatter, send, recv, counts, op)

    def bcast(self, buf, root: int) -> None:
        host = buf.get()
        self.mpi.bcast(host, root)
        buf.set(host)

    @staticmethod
    def _staged(move, send, recv, *args) -> None:
        host_recv = np.empty(recv.shape, recv.dtype)
        move(send.get(), host_recv, *args)  # get() is a blocking copy: it waits for the GPU
        recv.set(host_recv)


class NCCLTransport:
    """NCCL on the current CUDA stream; uneven parts use grouped broadcasts / reduces."""

    name = "nccl"

    def __init__(self, comm):
        self.comm = comm
        self._nccl_comm = None  # made on first use: creating it is collective

    def _nccl(self):
        from cupy.cuda import nccl

        if self._nccl_comm is None:
            # Rank 0 makes the id (metadata, so pickled bcast is fine); bind_device ran already.
            uid = self.comm.bcast(nccl.get_unique_id() if self.comm.Get_rank() == 0 else None)
            self._nccl_comm = nccl.NcclCommunicator(self.comm.Get_size(), uid, self.comm.Get_rank())
        return nccl, self._nccl_comm

    def close(self) -> None:
        """Destroy the NCCL communicator, if one was made."""
        if self._nccl_comm is not None:
            self._nccl_comm.destroy()
            self._nccl_comm = None

    def start_allreduce(self, buf, op: str):
        self.allreduce(buf, buf, op)  # queued on the stream: later GPU work waits for it anyway
        return DONE

    def start_reduce_scatter(self, send, recv, counts: list[int], op: str):
        self.reduce_scatter(send, recv, counts, op)  # queued on the stream, as above
        return DONE

    def allreduce(self, send, recv, op: str) -> None:
        nccl, comm = self._nccl()
        comm.allReduce(send.data.ptr, recv.data.ptr, send.size, _dtype(nccl, send), _op(nccl, op),
                       _stream())

    def allgatherv(self, send, recv, counts: list[int]) -> None:
        nccl, comm = self._nccl()
        if send is None:  # in place: NCCL's form reads this rank's slot of recv
            send = recv[slice(*shard_range(counts, self.comm.Get_rank()))]
        dtype, stream = _dtype(nccl, send), _stream()
        if len(set(counts)) == 1:
            comm.allGather(send.data.ptr, recv.data.ptr, send.size, dtype, stream)
            return
        nccl.groupStart()  # rank r broadcasts its part into its slot of recv
        for root, (start, count) in enumerate(_slots(counts, recv.itemsize)):
            comm.broadcast(send.data.ptr, recv.data.ptr + start, count, dtype, root, stream)
        nccl.groupEnd()

    def reduce_scatter(self, send, recv, counts: list[int], op: str) -> None:
        nccl, comm = self._nccl()
        dtype, nccl_op, stream = _dtype(nccl, send), _op(nccl, op), _stream()
        if len(set(counts)) == 1:
            comm.reduceScatter(send.data.ptr, recv.data.ptr, recv.size, dtype, nccl_op, stream)
            return
        nccl.groupStart()  # slot r of every rank's send is reduced onto rank r
        for root, (start, count) in enumerate(_slots(counts, send.itemsize)):
            comm.reduce(send.data.ptr + start, recv.data.ptr, count, dtype, nccl_op, root, stream)
        nccl.groupEnd()

    def bcast(self, buf, root: int) -> None:
        nccl, comm = self._nccl()
        comm.broadcast(buf.data.ptr, buf.data.ptr, buf.size, _dtype(nccl, buf), root, _stream())


def _mpi_op(op: str):
    from mpi4py import MPI

    return getattr(MPI, op.upper())  # MPI.SUM, MPI.MAX, MPI.MIN


def _slots(counts: list[int], itemsize: int):
    """(byte offset, count) of each rank's part in a buffer holding them back to back."""
    start = 0
    for count in counts:
        yield start, count
        start += count * itemsize


def _dtype(nccl, array) -> int:
    try:  # NCCL_FLOAT32, NCCL_INT64, NCCL_UINT8, ... follow NumPy's names
        return getattr(nccl, f"NCCL_{array.dtype.name.upper()}")
    except AttributeError:
        raise TypeError(f"NCCL cannot carry dtype {array.dtype}") from None


def _op(nccl, op: str) -> int:
    return getattr(nccl, f"NCCL_{op.upper()}")  # NCCL_SUM, NCCL_MAX, NCCL_MIN


def _stream() -> int:
    import cupy

    return cupy.cuda.get_current_stream().ptr
