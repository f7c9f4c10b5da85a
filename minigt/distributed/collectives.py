"""Collectives on arrays: NumPy or CuPy arrays in, new arrays out, the same call on every rank.

No autograd here (minigt.distributed.functions wraps these in Functions). Tensor data moves only
through buffers (mpi4py's upper-case methods, or NCCL), never through pickle. Parts along `dim`
may differ in length between ranks, and may be empty. Each call runs among the ranks of a `group`
(minigt.distributed.world.Group; the whole world when None), where ranks, sizes and roots are
group ranks. In a group of one each call is a copy. Before data moves, every call checks that
the group's ranks are all making it, from the same line (checks.py).
"""
from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from ..backends import array_module
from . import checks, trace, transports, waiting, world
from .placement import shard_sizes
from .transports import select_transport
from .world import Group

REDUCE_OPS = ("sum", "mean", "max", "min")


def exchange_sizes(n: int, *, group: Group | None = None) -> list[int]:
    """Every group rank's `n`, in group rank order (a small Allgather)."""
    g = _group(group)
    if g.size == 1:
        return [n]
    checks.check(g, "exchange_sizes")
    sizes = np.empty(g.size, np.int64)
    g.comm.Allgather(np.array([n], np.int64), sizes)
    return sizes.tolist()


def all_reduce(array, op: str = "sum", *, group: Group | None = None, in_place: bool = False):
    """`array` combined elementwise over the group's ranks by op ('sum', 'mean', 'max', 'min').

    `in_place=True` writes the result into `array` (when it is contiguous) and returns it: no
    second buffer of the same size, which matters for large gradient buckets."""
    _check_op(op, array.dtype)
    g = _group(group)
    if g.size == 1:
        return array if in_place else array.copy()
    checks.check(g, "all_reduce", op, array.shape, array.dtype)
    send = _wire(array)
    recv = send if in_place and send is array else array_module(send).empty_like(send)
    transport = select_transport(send, g)
    with _span("all_reduce", g, transport, bytes=send.nbytes, op=op):
        transport.allreduce(send, recv, _wire_op(op, array.dtype))
    return _unwire(recv, array.dtype, op, g.size)


def all_reduce_number(value, op: str = "sum", *, group: Group | None = None):
    """A number -- a float, or a 0-d array that stays on its device -- combined over the group,
    given back as the same kind."""
    total = all_reduce(np.asarray(value) if isinstance(value, float) else value, op, group=group)
    return float(total) if isinstance(value, float) else total


def start_all_reduce(array, op: str = "sum", *, group: Group | None = None,
                     extra: tuple[int, str] | None = None):
    """Begin summing (op) the C-contiguous `array` over the group in place; returns a request
    whose Wait() ends it and Test() helps it along. Transports without a nonblocking call do the
    work at once. For large gradient buckets: backward goes on while they travel. `extra`: more
    for the ranks to agree on (checks.bucket_signature)."""
    _check_op(op, array.dtype)
    g = _group(group)
    if g.size == 1:
        return transports.DONE
    checks.check(g, "all_reduce", op, array.shape, array.dtype, extra)
    transport = select_transport(array, g)
    with _span("start_all_reduce", g, transport, bytes=array.nbytes, op=op):
        return transport.start_allreduce(array, _wire_op(op, array.dtype))


def start_reduce_scatter(array, out, counts: Sequence[int], op: str = "sum", *,
                         group: Group | None = None, extra: tuple[int, str] | None = None):
    """Begin reducing the flat, C-contiguous `array` over the group into `out`, this rank's part
    (part r: the counts[r] elements after the parts of the ranks before it); returns a request
    whose Wait() ends it. Transports without a nonblocking call do the work at once."""
    _check_op(op, array.dtype)
    g = _group(group)
    counts = _check_sizes(counts, g, total=array.size)
    if g.size == 1:
        out[...] = array
        return transports.DONE
    checks.check(g, "reduce_scatter", f"{op}, counts {tuple(counts)}", array.shape, array.dtype,
                 extra)
    transport = select_transport(array, g)
    with _span("start_reduce_scatter", g, transport, bytes=array.nbytes, op=op):
        return transport.start_reduce_scatter(array, out, list(counts), _wire_op(op, array.dtype))


def all_gather_in_place(array, counts: Sequence[int], *, group: Group | None = None,
                        extra: tuple[int, str] | None = None) -> None:
    """Every rank's part of the flat, C-contiguous `array` (laid out as in start_reduce_scatter)
    into every rank's `array`. `extra`: as in start_all_reduce."""
    g = _group(group)
    counts = _check_sizes(counts, g, total=array.size)
    if g.size == 1:
        return
    checks.check(g, "all_gather", f"in place, counts {tuple(counts)}", array.shape, array.dtype,
                 extra)
    transport = select_transport(array, g)
    with _span("all_gather", g, transport, bytes=array.nbytes):
        transport.allgatherv(None, array, list(counts))  # None: this rank's part is in place


def all_gather(array, dim: int = 0, sizes: Sequence[int] | None = None, *,
               group: Group | None = None):
    """Every group rank's `array` joined along `dim`; `sizes` (their lengths there) saves a step."""
    dim = _check_dim(dim, array.ndim)
    g = _group(group)
    if g.size > 1:
        how = f"dim {dim}" + ("" if sizes is None else f", sizes {tuple(sizes)}")
        checks.check(g, "all_gather", how, checks.free_dim(array.shape, dim), array.dtype)
    if sizes is None:
        sizes = _exchange_shapes(array, dim, g)
    sizes = _check_sizes(sizes, g, mine=array.shape[dim])
    if g.size == 1:
        return array.copy()
    part = _wire(_dim_first(array, dim))
    rest = part.shape[1:]
    out = array_module(part).empty((sum(sizes), *rest), part.dtype)
    row = math.prod(rest)
    transport = select_transport(part, g)
    with _span("all_gather", g, transport, bytes=out.nbytes):
        transport.allgatherv(part, out, [s * row for s in sizes])
    return _dim_back(_unwire(out, array.dtype), dim)


def reduce_scatter(array, dim: int = 0, sizes: Sequence[int] | None = None, op: str = "sum", *,
                   group: Group | None = None):
    """The op over the group of `array`, of which group rank r keeps part r along `dim`."""
    dim = _check_dim(dim, array.ndim)
    _check_op(op, array.dtype)
    g = _group(group)
    n = array.shape[dim]
    sizes = shard_sizes(n, g.size) if sizes is None else sizes
    sizes = _check_sizes(sizes, g, total=n)
    if g.size == 1:
        return array.copy()
    checks.check(g, "reduce_scatter", f"{op}, dim {dim}, sizes {tuple(sizes)}", array.shape,
                 array.dtype)
    full = _wire(_dim_first(array, dim))
    rest = full.shape[1:]
    out = array_module(full).empty((sizes[g.rank], *rest), full.dtype)
    row = math.prod(rest)
    transport = select_transport(full, g)
    with _span("reduce_scatter", g, transport, bytes=full.nbytes, op=op):
        transport.reduce_scatter(full, out, [s * row for s in sizes], _wire_op(op, array.dtype))
    return _dim_back(_unwire(out, array.dtype, op, g.size), dim)


def broadcast(array, root: int = 0, *, group: Group | None = None):
    """Group rank root's `array` on every group rank (each passes one of the same shape, dtype)."""
    g = _group(group)
    if not 0 <= root < g.size:
        raise ValueError(f"broadcast: root {root} is not a rank of a group of {g.size}")
    if g.size == 1:
        return array.copy()
    checks.check(g, "broadcast", f"root {root}", array.shape, array.dtype)
    buf = _wire(array.copy())  # a C-ordered copy: the buffer the root's value lands in
    transport = select_transport(buf, g)
    with _span("broadcast", g, transport, bytes=buf.nbytes, root=root):
        transport.bcast(buf, root)
    return _unwire(buf, array.dtype)


def barrier(*, group: Group | None = None) -> None:
    """Wait until every rank of the group gets here."""
    g = _group(group)
    if g.size > 1:
        checks.check(g, "barrier")
        with _span("barrier", g):
            waiting.wait(g.comm.Ibarrier())


# ---- helpers -------------------------------------------------------------------------------------


def _group(group: Group | None) -> Group:
    return world.world_group() if group is None else group


def _span(name: str, g: Group, transport=None, **args):
    """A trace span for one collective, noting the path taken and the group's size."""
    if transport is not None:
        args["path"] = transport.name
    return trace.span(name, "collective", group_size=g.size, **args)


def _check_op(op: str, dtype) -> None:
    if op not in REDUCE_OPS:
        raise ValueError(f"unknown reduce op {op!r}: expected one of {', '.join(REDUCE_OPS)}")
    if op == "mean" and dtype.kind != "f":
        raise TypeError(f"op 'mean' needs a floating-point array, got {dtype}")


def _check_dim(dim: int, ndim: int) -> int:
    if not -ndim <= dim < ndim:
        raise ValueError(f"dim {dim} is out of range for an array with {ndim} dims")
    return dim % ndim


def _check_sizes(sizes: Sequence[int], g: Group, total: int | None = None,
                 mine: int | None = None) -> list[int]:
    """`sizes` as one length >= 0 per group rank, checked against their sum and this rank's."""
    sizes = [int(s) for s in sizes]
    if len(sizes) != g.size or min(sizes) < 0:
        raise ValueError(f"sizes {sizes}: need one length >= 0 for each of the {g.size} ranks")
    if total is not None and sum(sizes) != total:
        raise ValueError(f"sizes {sizes} add up to {sum(sizes)}, not to the {total} rows there are")
    if mine is not None and sizes[g.rank] != mine:
        raise ValueError(f"sizes {sizes} give rank {g.rank} {sizes[g.rank]} rows, "
                         f"but it has {mine}")
    return sizes


def _exchange_shapes(array, dim: int, g: Group) -> list[int]:
    """Every group rank's length along `dim`, after checking that their other dims agree."""
    if g.size == 1:
        return [array.shape[dim]]
    shapes = np.empty((g.size, array.ndim), np.int64)
    g.comm.Allgather(np.array(array.shape, np.int64), shapes)
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


def _unwire(buf, dtype, op: str = "", n_ranks: int = 1):
    """The transport's buffer back in `dtype` (a view), with a mean over n_ranks divided out."""
    if dtype == np.bool_:
        return buf.view(dtype)
    if op == "mean":
        buf /= n_ranks
    return buf


def _dim_first(array, dim: int):
    return array if dim == 0 else array_module(array).moveaxis(array, dim, 0)


def _dim_back(array, dim: int):
    return array if dim == 0 else _contiguous(array_module(array).moveaxis(array, 0, dim))
