"""Collectives on arrays: NumPy or CuPy arrays in, new arrays out, the same call on every rank.

No autograd here (minigt.distributed.functions wraps these in Functions). Tensor data moves only
through buffers (mpi4py's upper-case methods, or NCCL), never through pickle. Parts along `dim`
may differ in length between ranks, and may be empty. With one rank each call is a copy.
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..backends import array_module
from . import trace, world
from .transports import select_transport

REDUCE_OPS = ("sum", "mean", "max", "min")


def shard_sizes(n: int, world_size: int) -> list[int]:
    """Lengths of the parts when n rows are split over world_size ranks (first ranks get more)."""
    base, extra = divmod(n, world_size)
    return [base + (r < extra) for r in range(world_size)]


def shard_range(n: int, world_size: int, rank: int) -> tuple[int, int]:
    """[start, stop) of rank's part of n rows split the shard_sizes way."""
    base, extra = divmod(n, world_size)
    start = rank * base + min(rank, extra)
    return start, start + base + (rank < extra)


def exchange_sizes(n: int) -> list[int]:
    """Every rank's `n`, in rank order (a small Allgather)."""
    if world.world_size() == 1:
        return [n]
    sizes = np.empty(world.world_size(), np.int64)
    world.comm().Allgather(np.array([n], np.int64), sizes)
    return sizes.tolist()


def all_reduce(array, op: str = "sum"):
    """`array` combined elementwise over all ranks by op ('sum', 'mean', 'max', 'min')."""
    _check_op(op, array.dtype)
    if world.world_size() == 1:
        return array.copy()
    send = _wire(array)
    recv = array_module(send).empty_like(send)
    transport = select_transport(send)
    with trace.span("all_reduce", "collective", bytes=send.nbytes, op=op, path=transport.name):
        transport.allreduce(send, recv, _wire_op(op, array.dtype))
    return _unwire(recv, array.dtype, op)


def all_gather(array, dim: int = 0, sizes: Sequence[int] | None = None):
    """Every rank's `array` joined along `dim`; `sizes` (each rank's length there) saves a step."""
    dim = _check_dim(dim, array.ndim)
    if sizes is None:
        sizes = _exchange_shapes(array, dim)
    sizes = _check_sizes(sizes, mine=array.shape[dim])
    if world.world_size() == 1:
        return array.copy()
    part = _wire(_dim_first(array, dim))
    rest = part.shape[1:]
    out = array_module(part).empty((sum(sizes), *rest), part.dtype)
    row = math.prod(rest)
    transport = select_transport(part)
    with trace.span("all_gather", "collective", bytes=out.nbytes, path=transport.name):
        transport.allgatherv(part, out, [s * row for s in sizes])
    return _dim_back(_unwire(out, array.dtype), dim)


def reduce_scatter(array, dim: int = 0, sizes: Sequence[int] | None = None, op: str = "sum"):
    """The op over ranks of `array`, of which rank r keeps its part along `dim` (`sizes` long)."""
    dim = _check_dim(dim, array.ndim)
    _check_op(op, array.dtype)
    n = array.shape[dim]
    sizes = shard_sizes(n, world.world_size()) if sizes is None else sizes
    sizes = _check_sizes(sizes, total=n)
    if world.world_size() == 1:
        return array.copy()
    full = _wire(_dim_first(array, dim))
    rest = full.shape[1:]
    out = array_module(full).empty((sizes[world.rank()], *rest), full.dtype)
    row = math.prod(rest)
    transport = select_transport(full)
    with trace.span("reduce_scatter", "collective", bytes=full.nbytes, op=op, path=transport.name):
        transport.reduce_scatter(full, out, [s * row for s in sizes], _wire_op(op, array.dtype))
    return _dim_back(_unwire(out, array.dtype, op), dim)


def broadcast(array, root: int = 0):
    """Rank root's `array` on every rank (each passes one of the same shape and dtype)."""
    if not 0 <= root < world.world_size():
        raise ValueError(f"broadcast: root {root} is not a rank of a world of {world.world_size()}")
    if world.world_size() == 1:
        return array.copy()
    buf = _wire(array).copy()
    transport = select_transport(buf)
    with trace.span("broadcast", "collective", bytes=buf.nbytes, root=root, path=transport.name):
        transport.bcast(buf, root)
    return _unwire(buf, array.dtype)


def barrier() -> None:
    """Wait until every rank gets here."""
    if world.world_size() > 1:
        with trace.span("barrier", "collective"):
            world.comm().Barrier()


# ---- helpers -------------------------------------------------------------------------------------


def _check_op(op: str, dtype) -> None:
    if op not in REDUCE_OPS:
        raise ValueError(f"unknown reduce op {op!r}: expected one of {', '.join(REDUCE_OPS)}")
    if op == "mean" and dtype.kind != "f":
        raise TypeError(f"op 'mean' needs a floating-point array, got {dtype}")


def _check_dim(dim: int, ndim: int) -> int:
    if not -ndim <= dim < ndim:
        raise ValueError(f"dim {dim} is out of range for an array with {ndim} dims")
    return dim % ndim


def _check_sizes(sizes: Sequence[int], total: int | None = None, mine: int | None = None):
    """`sizes` as a list of one length >= 0 per rank, checked against their sum and this rank's."""
    sizes = [int(s) for s in sizes]
    n, r = world.world_size(), world.rank()
    if len(sizes) != n or min(sizes) < 0:
        raise ValueError(f"sizes {sizes}: need one length >= 0 for each of the {n} ranks")
    if total is not None and sum(sizes) != total:
        raise ValueError(f"sizes {sizes} add up to {sum(sizes)}, not to the {total} rows there are")
    if mine is not None and sizes[r] != mine:
        raise ValueError(f"sizes {sizes} give rank {r} {sizes[r]} rows, but it has {mine}")
    return sizes


def _exchange_shapes(array, dim: int) -> list[int]:
    """Every rank's length along `dim`, after checking that their other dims agree."""
    if world.world_size() == 1:
        return [array.shape[dim]]
    shapes = np.empty((world.world_size(), array.ndim), np.int64)
    world.comm().Allgather(np.array(array.shape, np.int64), shapes)
    others = np.delete(shapes, dim, axis=1)
    if (others != others[0]).any():  # same check on every rank, so all raise together
        raise ValueError(f"all_gather along dim {dim}: ranks' shapes differ elsewhere: "
                         f"{[tuple(s) for s in shapes.tolist()]}")
    return shapes[:, dim].tolist()


def _contiguous(array):
    """`array` itself when C-contiguous, else a C-contiguous copy (keeps 0-d arrays 0-d)."""
    return array if array.flags.c_contiguous else array.copy()


def _wire(array):
    """A contiguous buffer MPI and NCCL can carry: bool travels as uint8 (MPI cannot sum bools)."""
    array = _contiguous(array)
    return array.view(np.uint8) if array.dtype == np.bool_ else array


def _wire_op(op: str, dtype) -> str:
    """The op the transport runs: mean is a sum divided afterwards; on bools, sum is 'any'."""
    if op == "mean":
        return "sum"
    if op == "sum" and dtype == np.bool_:  # as torch.distributed does
        return "max"
    return op


def _unwire(buf, dtype, op: str = ""):
    """The transport's buffer back in `dtype` (a view), with a mean divided out."""
    if dtype == np.bool_:
        return buf.view(dtype)
    if op == "mean":
        buf /= world.world_size()
    return buf


def _dim_first(array, dim: int):
    return array if dim == 0 else array_module(array).moveaxis(array, dim, 0)


def _dim_back(array, dim: int):
    return array if dim == 0 else _contiguous(array_module(array).moveaxis(array, 0, dim))
