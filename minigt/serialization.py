"""Checkpoints: `save(obj, path)` / `load(path)` for nested dicts, lists and tuples of tensors,
arrays, numbers, strings, bools and None (a model's and an optimizer's state dicts).

The file is an ordinary NumPy `.npz` archive and holds no pickled code, so loading one never runs
anything: each array is its own entry (`a0`, `a1`, ...), and the nesting around them is JSON in
one more entry, `__minigt__`, where an array appears as `{"kind": "tensor", "key": "a0"}`.
Writes are atomic: a crash mid-save leaves the previous file at `path` as it was.
"""
from __future__ import annotations

import json
import os
import uuid
import zipfile
from typing import Any

import numpy as np

from .backends import ARRAY_TYPES, parse_device, to_device
from .tensor import Tensor

FORMAT = "minigt-checkpoint"
VERSION = 1
_HEADER = "__minigt__"  # the archive entry that holds the JSON structure


def save(obj: Any, path: str | os.PathLike) -> None:
    """Write `obj` to `path` as a minigt checkpoint (an .npz archive), atomically.

    GPU tensors are copied to host memory first; `load` puts them back where you ask.
    """
    arrays: dict[str, np.ndarray] = {}
    tree = _Encoder(arrays).encode(obj, "obj")
    header = json.dumps({"format": FORMAT, "version": VERSION, "tree": tree})
    arrays[_HEADER] = np.frombuffer(header.encode("utf-8"), dtype=np.uint8)
    _atomic_write(os.fspath(path), arrays)


def load(path: str | os.PathLike, map_location: str | None = None, *,
         device: str | None = None) -> Any:
    """Read a checkpoint written by `save`. Tensors land on `map_location` (or its alias
    `device`): 'cpu', the default, or 'cuda[:N]'. Arrays come back as NumPy arrays. Every dtype
    comes back as it was saved."""
    path = os.fspath(path)
    target = parse_device(device or map_location or "cpu")
    if not os.path.exists(path):
        raise FileNotFoundError(f"minigt.load: no checkpoint at {path!r}")
    arrays = _read_arrays(path)
    return _Decoder(arrays, target).decode(_read_tree(path, arrays))


def _read_arrays(path: str) -> dict[str, np.ndarray]:
    """Every entry of the .npz archive at `path`, or a clear error if it is not one."""
    not_an_archive = f"minigt.load: {path!r} is not a minigt checkpoint (not an .npz archive)"
    try:
        archive = np.load(path, allow_pickle=False)  # never unpickle: loading runs no code
        if isinstance(archive, np.lib.npyio.NpzFile):
            with archive:
                return {name: archive[name] for name in archive.files}
    except (ValueError, OSError, EOFError, zipfile.BadZipFile) as error:
        raise ValueError(not_an_archive) from error
    raise ValueError(f"{not_an_archive}: it is an .npy file holding one bare array")


def _read_tree(path: str, arrays: dict[str, np.ndarray]) -> Any:
    """Take the JSON structure out of `arrays` and check that it is one this version reads."""
    if _HEADER not in arrays:
        raise ValueError(f"minigt.load: {path!r} is an .npz archive but not a minigt checkpoint: "
                         f"it has no {_HEADER!r} entry (written by numpy.savez?)")
    try:
        header = json.loads(arrays.pop(_HEADER).tobytes().decode("utf-8"))
        kind, version, tree = header["format"], header["version"], header["tree"]
    except (ValueError, TypeError, KeyError) as error:
        raise ValueError(f"minigt.load: {path!r} has a damaged {_HEADER!r} entry") from error
    if kind != FORMAT or version > VERSION:
        raise ValueError(f"minigt.load: {path!r} has format {kind!r} version {version}; this "
                         f"minigt reads {FORMAT!r} up to version {VERSION}")
    return tree


class _Encoder:
    """Turns a nested object into JSON-able nodes, moving each array into `arrays`."""

    def __init__(self, arrays: dict[str, np.ndarray]):
        self.arrays = arrays
        self.keys: dict[int, str] = {}  # id(tensor/array) -> its entry: shared stays shared
        self.alive: list = []  # keeps encoded objects alive so their ids are not reused meanwhile

    def encode(self, obj: Any, where: str) -> Any:
        if isinstance(obj, np.generic):  # a NumPy scalar such as np.float32(1.5): keep its dtype
            return {"kind": "scalar", "key": self.store(obj, np.asarray(obj), where)}
        if obj is None or isinstance(obj, (bool, int, float, str)):
            return obj
        if isinstance(obj, Tensor):
            return {"kind": "tensor", "key": self.store(obj, obj.data, where),
                    "requires_grad": bool(obj.requires_grad and obj.is_leaf)}
        if isinstance(obj, ARRAY_TYPES):
            return {"kind": "array", "key": self.store(obj, obj, where)}
        if isinstance(obj, list):
            return [self.encode(item, f"{where}[{i}]") for i, item in enumerate(obj)]
        if isinstance(obj, tuple):
            return {"kind": "tuple", "items": [self.encode(item, f"{where}[{i}]")
                                               for i, item in enumerate(obj)]}
        if isinstance(obj, dict):
            for key in obj:
                if not (key is None or isinstance(key, (bool, int, float, str))):
                    raise TypeError(f"minigt.save: {where} has a key of type {type(key).__name__}; "
                                    "dict keys must be str, int, float, bool or None")
            return {"kind": "dict", "items": [[key, self.encode(value, f"{where}[{key!r}]")]
                                              for key, value in obj.items()]}
        raise TypeError(f"minigt.save: cannot save {where} of type {type(obj).__name__}; a "
                        "checkpoint holds tensors, arrays, numbers, str, bool, None and "
                        "dicts/lists/tuples of them")

    def store(self, owner: Any, array, where: str) -> str:
        if id(owner) in self.keys:
            return self.keys[id(owner)]
        if array.dtype.hasobject:
            raise TypeError(f"minigt.save: {where} is an array of Python objects, which only "
                            "pickle could store; convert it to a numeric dtype")
        key = f"a{len(self.keys)}"
        self.keys[id(owner)] = key
        self.alive.append(owner)
        self.arrays[key] = to_device(array, "cpu")
        return key


class _Decoder:
    """The inverse of `_Encoder`: JSON nodes back to objects, arrays taken from the archive."""

    def __init__(self, arrays: dict[str, np.ndarray], device: str):
        self.arrays, self.device = arrays, device
        self.made: dict[str, Any] = {}  # entry -> the object built from it (keeps sharing)

    def decode(self, node: Any) -> Any:
        if isinstance(node, list):
            return [self.decode(item) for item in node]
        if not isinstance(node, dict):
            return node
        kind = node["kind"]
        if kind == "tuple":
            return tuple(self.decode(item) for item in node["items"])
        if kind == "dict":
            return {key: self.decode(value) for key, value in node["items"]}
        key = node["key"]
        if key not in self.made:
            array = self.arrays[key]
            if kind == "tensor":
                tensor = Tensor._make(to_device(array, self.device), False, None)
                self.made[key] = tensor.requires_grad_(node["requires_grad"])
            elif kind == "scalar":
                self.made[key] = array[()]
            else:
                self.made[key] = array
        return self.made[key]


def _write_arrays(file, arrays: dict[str, np.ndarray]) -> None:
    """The archive itself (uncompressed: checkpoints are mostly incompressible floats)."""
    np.savez(file, **arrays)


def _atomic_write(path: str, arrays: dict[str, np.ndarray]) -> None:
    """Write to a new file beside `path`, make it durable, then rename it over `path`.

    A rename within one directory is atomic, so readers (and a crash) see either the old file
    or the complete new one, never a half-written checkpoint.
    """
    directory = os.path.dirname(os.path.abspath(path))
    temp = os.path.join(directory, f".{os.path.basename(path)}.{uuid.uuid4().hex}.tmp")
    try:
        with open(temp, "xb") as file:
            _write_arrays(file, arrays)
            file.flush()
            os.fsync(file.fileno())  # the data is on disk before the rename can be
        os.replace(temp, path)
    except BaseException:
        if os.path.exists(temp):
            os.remove(temp)
        raise
    _fsync_directory(directory)


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable (POSIX; Windows has no directory handles to sync)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
