"""Every collective is checked: before data moves, the ranks agree that they make the same call.

SPMD goes wrong quietly when ranks drift apart: rank 0 calls `loss.item()` for a log line while
rank 1 is already in the next step's gradient all-reduce, and MPI pairs the two, adding a loss to
a gradient. So before each collective every rank of the group sends a signature of five int64:

    call    a hash of the collective's name and how (op, dim, root), its dtype, its shape
            (three numbers: all_reduce (sum) of float32 (2, 3))
    line    a hash of the user's line that made it: the first frame outside minigt and the
            standard library (file name and line number), so two `.item()` calls of the same
            shape on different lines still differ
    extra   0, or a hash the caller adds (a gradient bucket's parameters, see `bucket_signature`)

over a copy of the group's communicator kept for this (`Group.checks`), so signatures never
meet data. Equal everywhere: the collective goes on. Otherwise every rank gathers the readable
descriptions and raises `CollectiveMismatch` naming each rank's call and line; no data has moved.

MINIGT_CHECK_COLLECTIVES=0 turns the checks off (one small all-gather saved per collective; see
benchmarks/bench_checks.py for what it costs), and with them the watch on ranks that exit
(exits.py), which takes part in this same exchange.
"""
from __future__ import annotations

import linecache
import os
import sys
import sysconfig
import zlib

import numpy as np

from ..backends import to_device
from . import waiting

ENABLED = os.environ.get("MINIGT_CHECK_COLLECTIVES", "1") != "0"

HINT = """\
Every rank must make the same collectives, in the same order, from the same line of the program,
with the same shapes and dtypes. Reading a DTensor's value is a collective too: .item(),
.numpy(), .tolist(), float(), int() and bool() of it, and so print(t.item()), must run on every
rank. Compute the value on all ranks, then print on one (`value = loss.item()`, then
`if dist.rank() == 0: print(value)`), or take this rank's own part without communication with
dist.local(t) (t.local). MINIGT_CHECK_COLLECTIVES=0 turns this check off."""


class CollectiveMismatch(RuntimeError):
    """The ranks of a group were not making the same collective call; raised on all of them."""


# ---- where the user's program made the call ------------------------------------------------------

_MINIGT = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep
_PATHS = sysconfig.get_paths()
_STDLIB = _PATHS["stdlib"] + os.sep
_SITE = tuple({_PATHS["purelib"] + os.sep, _PATHS["platlib"] + os.sep})
_library: dict[str, bool] = {}  # file name -> whether it is minigt's or the standard library's


def _in_library(filename: str) -> bool:
    known = _library.get(filename)
    if known is None:
        known = _library[filename] = (
            filename.startswith((_MINIGT, "<frozen "))
            or (filename.startswith(_STDLIB) and not filename.startswith(_SITE)))
    return known


def call_site() -> tuple[str, int]:
    """(file, line) of the innermost frame outside minigt and the standard library: the line of
    the user's program that led here (the outermost frame when there is none)."""
    frame = sys._getframe(1)
    while frame.f_back is not None and _in_library(frame.f_code.co_filename):
        frame = frame.f_back
    return frame.f_code.co_filename, frame.f_lineno


# ---- the exchange ---------------------------------------------------------------------------------


def check(g, name: str, how: str = "", shape=None, dtype=None, extra=None) -> None:
    """Return when every rank of group `g` makes this call from the same line; otherwise raise
    CollectiveMismatch on all of them. `how` (op, dim, root ...), `shape` (a tuple; -1 where the
    ranks' lengths may differ, see `free_dim`) and `dtype` describe the call; `extra` is
    (hash, description) or None."""
    if not ENABLED or g.checks is None:
        return
    file, line = call_site()
    # numbers only: the readable text is made when the ranks disagree (ints hash alike everywhere)
    mine = np.array([zlib.crc32(f"{name}|{how}".encode()), 0 if dtype is None else dtype.num,
                     0 if shape is None else hash(shape),
                     zlib.crc32(f"{os.path.basename(file)}:{line}".encode()),
                     0 if extra is None else extra[0]], np.int64)
    request, table = start(g, mine)
    waiting.wait(request)
    settle(g, table, mine, lambda: _describe(name, how, shape, dtype, extra, file, line))


LEAVING = np.array([zlib.crc32(b"exit"), 0, 0, 0, 0], np.int64)  # the signature of exits.py


def start(g, mine: np.ndarray):
    """Begin the all-gather of signature `mine` over `g`: (request, table it fills).
    Nonblocking, so that a rank leaving can wait in several groups at once (exits.py); a
    nonblocking collective matches only nonblocking ones, so every rank uses this form."""
    table = np.empty((g.size, mine.size), np.int64)
    return g.checks.Iallgather(mine, table), table


def settle(g, table, mine, describe) -> None:
    """After `start`'s request completed: raise CollectiveMismatch on every rank unless all rows
    are equal. `describe()` gives this rank's call as the error shows it."""
    if table.tobytes() == mine.tobytes() * g.size:
        return
    from mpi4py import MPI

    # Every rank saw the same table, so all of them are here: gather the readable rows.
    rows = g.checks.allgather((MPI.COMM_WORLD.Get_rank(), describe()))  # small: pickle is fine
    lines = "\n".join(f"  rank {rank}: {row}" for rank, row in rows)
    raise CollectiveMismatch(f"the {g.size} ranks of a group are not making the same collective "
                             f"call (no data was sent):\n{lines}\n{HINT}")


def free_dim(shape, dim: int) -> tuple:
    """`shape` with -1 at `dim`, where the ranks' lengths may differ (shown as *)."""
    return tuple(-1 if d == dim else n for d, n in enumerate(shape))


def _describe(name, how, shape, dtype, extra, file, line) -> str:
    """all_reduce (sum) of float32 (2, *), ... at train.py:12  `source line`"""
    text = name + (f" ({how})" if how else "")
    if shape is not None:
        dims = ", ".join("*" if n == -1 else str(n) for n in shape)
        text += f" of {dtype} ({dims}{',' if len(shape) == 1 else ''})"
    text += f"{extra[1] if extra else ''} at {file}:{line}"
    source = linecache.getline(file, line).strip()
    return text + (f"  `{source}`" if source else "")


# ---- which parameters a gradient bucket holds -----------------------------------------------------


def parameter_prints(leaves) -> np.ndarray | None:
    """Fingerprints of parameters, comparable across ranks (None when checks are off).

    Object ids mean nothing on another rank, and shapes do not tell two layers of the same shape
    apart. Values do: every rank's copy of a parameter starts equal (the same seed, or the same
    checkpoint), while two layers drawn at random differ. So a parameter is known by its shape,
    dtype and a sample of its values, taken when its gradient bucket is laid out (the first
    backward, before any step). Ranks that use different layers, or whose copies started apart,
    then disagree. (Layers whose values are all equal, such as two fresh LayerNorms, look alike.)
    """
    if not ENABLED:
        return None
    prints = []
    for leaf in leaves:
        flat = leaf.data.reshape(-1)
        sample = to_device(flat[::max(1, flat.size // 32)], "cpu")
        prints.append(zlib.crc32(f"{flat.dtype} {leaf.data.shape}".encode() + sample.tobytes()))
    return np.array(prints, np.int64)


def bucket_signature(prints: np.ndarray | None, used) -> tuple[int, str] | None:
    """`check`'s extra for a gradient bucket: which parameters it sums (their `parameter_prints`)
    and which of them this backward reached (slot numbers `used`)."""
    if prints is None or not ENABLED:
        return None
    mark = zlib.crc32(prints.tobytes() + np.array(sorted(used), np.int64).tobytes())
    return mark, (f", the gradients of {prints.size} parameters ({len(used)} reached by this "
                  f"backward), known by their values and use as {mark:08x}")
