"""Checkpoints: `save(obj, path)` / `load(path)` for nested dicts, lists and tuples of tensors,
arrays, numbers, strings, bools and None (a model's and an optimizer's state dicts).

The file is an ordinary NumPy `.npz` archive and holds no pickled code, so loading one never runs
anything: each array is its own entry (`a0`, `a1`, ...), and the nesting around them is JSON in
one more entry, `__minigt__`, where an array appears as `{"kind": "tensor", "key": "a0"}`.
Writes are atomic: a crash mid-save leaves the previous file at `path` as it was, and a process
killed mid-save leaves no temporary file behind (where the system cannot make an unnamed file,
the next save to the same path removes it).
"""
from __future__ import annotations

import json
import os
import re
import stat
import uuid
import zipfile
from typing import Any

import numpy as np

from .backends import ARRAY_TYPES, parse_device, to_device
from .tensor import Tensor

FORMAT = "minigt-checkpoint"
VERSION = 1
_HEADER = "__minigt__"  # the archive entry that holds the JSON structure
_ARRAY_KINDS = ("tensor", "scalar", "array")  # the nodes that point at an archive entry


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
    tree = _read_tree(path, arrays)
    try:
        return _Decoder(arrays, target).decode(tree, "obj")
    except (_Damaged, KeyError, TypeError, ValueError) as error:  # a header no save wrote
        what = error if isinstance(error, _Damaged) else f"{type(error).__name__}: {error}"
        raise ValueError(f"minigt.load: {path!r} has a damaged {_HEADER!r} entry: {what}") from None


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


class _Damaged(Exception):
    """What is wrong in a checkpoint's header (load names the file)."""


class _Decoder:
    """The inverse of `_Encoder`: JSON nodes back to objects, arrays taken from the archive."""

    def __init__(self, arrays: dict[str, np.ndarray], device: str):
        self.arrays, self.device = arrays, device
        self.made: dict[str, Any] = {}  # entry -> the object built from it (keeps sharing)

    def decode(self, node: Any, where: str) -> Any:
        if isinstance(node, list):
            return [self.decode(item, f"{where}[{i}]") for i, item in enumerate(node)]
        if not isinstance(node, dict):
            return node
        kind = node.get("kind")
        if kind == "tuple":
            return tuple(self.decode(item, f"{where}[{i}]") for i, item in enumerate(node["items"]))
        if kind == "dict":
            return {key: self.decode(value, f"{where}[{key!r}]") for key, value in node["items"]}
        if kind not in _ARRAY_KINDS:
            raise _Damaged(f"{where} is a node of unknown kind {kind!r}")
        key = node.get("key")
        if key not in self.made:
            if key not in self.arrays:
                raise _Damaged(f"it names the array {key!r} for {where}, which the archive lacks")
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
    target = _replaceable(path)
    directory, name = os.path.split(target)
    temp = os.path.join(directory, f".{name}.{uuid.uuid4().hex}.tmp")
    try:
        _remove_stale_temps(directory, name)
        with _new_file(directory, temp) as file:
            _write_arrays(file, arrays)
            file.flush()
            os.fsync(file.fileno())  # the data is on disk before the rename can be
            if file.name != temp:  # an unnamed file (its name is its fd): name it, to rename
                _name(file, temp)
        os.replace(temp, target)
        _fsync_directory(directory)
    except BaseException as error:
        if os.path.lexists(temp):
            os.remove(temp)
        if isinstance(error, OSError):  # name the user's path, not only the temporary file's
            message = f"minigt.save: cannot write {path!r}: {error.strerror or error}"
            raise (OSError(error.errno, message) if error.errno else OSError(message)) from error
        raise


def _replaceable(path: str) -> str:
    """The file a save to `path` replaces, through any symlinks: a regular file or none yet."""
    target = os.path.realpath(path)
    try:
        mode = os.stat(target).st_mode
    except FileNotFoundError:
        return target
    if stat.S_ISREG(mode):
        return target
    kind = {stat.S_ISDIR: "a folder", stat.S_ISCHR: "a character device", stat.S_ISBLK:
            "a block device", stat.S_ISFIFO: "a named pipe", stat.S_ISSOCK: "a socket"}
    what = next((name for test, name in kind.items() if test(mode)), "not a regular file")
    where = f"{path!r} is" if target == os.path.abspath(path) else f"{path!r} leads to {target!r},"
    message = (f"minigt.save: {where} {what}; a checkpoint replaces only a regular file (or "
               "makes a new one): give a file's path")
    raise IsADirectoryError(message) if stat.S_ISDIR(mode) else ValueError(message)


def _new_file(directory: str, temp: str):
    """The file a save writes: unnamed (O_TMPFILE, Linux), so that a process killed mid-write,
    even by SIGKILL, leaves nothing; where that is not possible, a new file named `temp`."""
    if hasattr(os, "O_TMPFILE") and os.path.isdir("/proc/self/fd"):
        try:
            return os.fdopen(os.open(directory, os.O_TMPFILE | os.O_WRONLY, 0o666), "wb")
        except OSError:  # a file system without unnamed files: fall through to a named one
            pass
    return open(temp, "xb")


def _name(file, temp: str) -> None:
    """Give the unnamed `file` the name `temp`: linkat through /proc. (os.link would call link(),
    which links the /proc symlink itself, unless a directory fd makes it call linkat.)"""
    folder = os.open(os.path.dirname(temp), os.O_RDONLY)
    try:
        os.link(f"/proc/self/fd/{file.fileno()}", os.path.basename(temp), dst_dir_fd=folder)
    finally:
        os.close(folder)


def _remove_stale_temps(directory: str, name: str) -> None:
    """Remove the named temporary files that earlier saves to `name`, killed mid-way, left."""
    stale = re.compile(rf"\.{re.escape(name)}\.[0-9a-f]{{32}}\.tmp")
    for entry in os.listdir(directory):
        if stale.fullmatch(entry):
            os.remove(os.path.join(directory, entry))


def _fsync_directory(directory: str) -> None:
    """Make the rename itself durable (POSIX; Windows has no directory handles to sync)."""
    if os.name != "posix":
        return
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
