"""Files are read once, by rank 0, and what it read is sent to every rank.

Ranks on different machines may see different disks. If each rank decided for itself whether a
checkpoint exists and read its own copy, a file missing on one node would start that rank from
scratch beside ranks that resumed: a wrong run, and then a wrong checkpoint over the good one.
"""
from __future__ import annotations

import os
import tempfile

import numpy as np

from .. import serialization
from . import collectives, world

_MISSING, _UNREADABLE = -1, -2  # what rank 0 sends instead of the file's length


def load(path: str | os.PathLike, map_location: str | None = None):
    """`minigt.load(path)` as rank 0 sees it, on every rank (collective).

    Rank 0 reads the file and broadcasts its bytes; each rank decodes the same bytes. When rank
    0 has no file there, every rank raises FileNotFoundError; a damaged file raises the same
    ValueError on every rank."""
    path = os.fspath(path)
    length, blob = _read(path) if world.rank() == 0 else (0, None)
    length = int(collectives.broadcast(np.array(length, np.int64)))
    if length == _MISSING:
        raise FileNotFoundError(f"minigt.distributed.load: rank 0 finds no file at {path!r}")
    if length == _UNREADABLE:
        raise OSError(f"minigt.distributed.load: rank 0 cannot read {path!r}")
    blob = collectives.broadcast(np.empty(length, np.uint8) if blob is None else blob)
    with tempfile.TemporaryDirectory(prefix="minigt-load-") as folder:
        copy = os.path.join(folder, "checkpoint")  # minigt.load reads a file: this rank's own
        blob.tofile(copy)
        try:
            return serialization.load(copy, map_location)
        except ValueError as error:  # name the file the user gave, not the copy
            raise ValueError(str(error).replace(repr(copy), repr(path))) from None


def _read(path: str) -> tuple[int, np.ndarray | None]:
    try:
        with open(path, "rb") as f:
            blob = np.frombuffer(f.read(), np.uint8)
    except FileNotFoundError:
        return _MISSING, None
    except OSError:
        return _UNREADABLE, None
    return blob.size, blob
