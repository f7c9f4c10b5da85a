"""Array backends: NumPy on the CPU, CuPy on NVIDIA GPUs, behind one small interface.

Everything that differs between the two lives here, so op code is written once against `xp`
(the array module of its inputs), as in Chainer.
"""
from __future__ import annotations

import contextlib
import os

import numpy as np

from . import special

try:  # CuPy is optional: without it (or without a GPU) minigt runs on NumPy alone.
    import cupy as _cupy

    _cupy.cuda.runtime.getDeviceCount()
except Exception:  # ImportError, or CUDA present but no usable device/driver
    _cupy = None


ARRAY_TYPES = (np.ndarray,) if _cupy is None else (np.ndarray, _cupy.ndarray)


def ensure_array(value):
    """NumPy turns 0-d results into scalars (np.float32); make them 0-d arrays again."""
    return value if isinstance(value, ARRAY_TYPES) else np.asarray(value)


def cuda_available() -> bool:
    """True when CuPy imports and sees at least one GPU."""
    return _cupy is not None


def gpu_count() -> int:
    """How many GPUs this process sees (0 without CuPy)."""
    return 0 if _cupy is None else _cupy.cuda.runtime.getDeviceCount()


def use_gpu(index: int) -> None:
    """Make GPU `index` current for this process."""
    _cupy.cuda.Device(index).use()


def gpu_names() -> list[str]:
    """'cuda:N <name>' for each visible GPU."""
    props = _cupy.cuda.runtime.getDeviceProperties if _cupy is not None else None
    return [f"cuda:{i} {props(i)['name'].decode()}" for i in range(gpu_count())]


def array_module(array):
    """NumPy or CuPy, whichever owns `array` (NumPy for scalars and lists)."""
    if _cupy is not None and isinstance(array, _cupy.ndarray):
        return _cupy
    return np


def host_checks(array) -> bool:
    """Whether an op may read `array`'s values in Python to check them (`if bad.any(): raise`).

    True for NumPy arrays. False for GPU arrays: reading a value there waits for every kernel
    queued before it (a host synchronisation), so ops skip such checks on the GPU and write the
    result in a way that needs no branch on the data (see cross_entropy, embedding, attention).
    """
    return array_module(array) is np


def parse_device(device) -> str:
    """Normalise 'cpu', 'cuda', 'cuda:N' (or None for the default) to 'cpu' or 'cuda:N'."""
    if device is None:
        device = default_device()
    device = str(device)
    if device == "cpu":
        return "cpu"
    if device == "cuda" or device.startswith("cuda:"):
        index = device.partition(":")[2] or None
        if not cuda_available():
            raise RuntimeError(
                f"device {device!r} requested but CuPy with a GPU is not available; "
                "install minigt[gpu] on a machine with an NVIDIA GPU, or use device='cpu'"
            )
        if index is None:
            index = _cupy.cuda.runtime.getDevice()
        return f"cuda:{int(index)}"
    raise ValueError(f"unknown device {device!r}: expected 'cpu', 'cuda' or 'cuda:N'")


def default_device() -> str:
    """The device new tensors land on: $MINIGT_DEVICE, else 'cpu'."""
    return os.environ.get("MINIGT_DEVICE", "cpu")


def device_of(array) -> str:
    """'cpu' for a NumPy array, 'cuda:N' for a CuPy array on GPU N."""
    if array_module(array) is np:
        return "cpu"
    return f"cuda:{array.device.id}"


def module_for(device: str):
    """The array module that stores arrays on `device` (already parsed)."""
    return np if device == "cpu" else _cupy


def to_device(array, device: str):
    """Copy `array` to `device` ('cpu' or 'cuda:N'); returns it unchanged when already there."""
    if device_of(array) == device:
        return array
    if device == "cpu":
        return _cupy.asnumpy(array)
    with _cupy.cuda.Device(int(device.partition(":")[2])):
        return _cupy.asarray(array)


def device_context(device: str):
    """A context manager that makes `device` current for allocations (a no-op on the CPU)."""
    if device == "cpu":
        return contextlib.nullcontext()
    return _cupy.cuda.Device(int(device.partition(":")[2]))


def scatter_add(target, index, values) -> None:
    """target[index] += values, accumulating repeated indices (the one NumPy/CuPy difference)."""
    if array_module(target) is np:
        np.add.at(target, index, values)
    elif hasattr(_cupy.add, "at"):
        _cupy.add.at(target, index, values)
    else:  # CuPy without ufunc.at: cupyx.scatter_add does the same
        import cupyx

        cupyx.scatter_add(target, index, values)


def erf(x):
    """The error function, elementwise: CuPy's on a GPU, backends/special.py's on the CPU (NumPy
    has none)."""
    if array_module(x) is not np:
        import cupyx.scipy.special

        return cupyx.scipy.special.erf(x)
    return special.erf(x).astype(x.dtype, copy=False)
