"""Making tensors: from data, filled, ranges and random draws (seeded by `manual_seed`)."""
from __future__ import annotations

import contextlib
import numbers

import numpy as np

from .backends import (
    ARRAY_TYPES, array_module, device_of, device_context, module_for, parse_device, to_device,
)
from .tensor import Tensor, check_dtype, target_device

float32, float64 = np.dtype("float32"), np.dtype("float64")
float16 = np.dtype("float16")
int32, int64 = np.dtype("int32"), np.dtype("int64")
uint8, bool_ = np.dtype("uint8"), np.dtype("bool")
default_float = float32

_rng = np.random.default_rng(0)
_gpu_rngs: dict = {}  # device -> CuPy generator, seeded from _rng on first use

# Where minigt.distributed plugs in under GT_AUTO_SHARD=1: `auto_shard_hook(t)` returns a tensor
# made from data split along dim 0 across MPI ranks. Modules pause it, so parameters and
# constants they make stay whole.
auto_shard_hook = None
_auto_shard_paused = 0


@contextlib.contextmanager
def no_auto_shard():
    """Inside, creation ops never shard (used by nn.Module for parameters and constants)."""
    global _auto_shard_paused
    _auto_shard_paused += 1
    try:
        yield
    finally:
        _auto_shard_paused -= 1


def _placed(t: Tensor) -> Tensor:
    """`t`, or under GT_AUTO_SHARD its dim-0 shards, for data made outside modules."""
    if auto_shard_hook is None or _auto_shard_paused or t.ndim == 0 or t.requires_grad:
        return t
    return auto_shard_hook(t)


def manual_seed(seed: int) -> None:
    """Seed every random draw minigt makes (randn, rand, init helpers, dropout)."""
    global _rng
    _rng = np.random.default_rng(seed)
    _gpu_rngs.clear()


def generator() -> np.random.Generator:
    """The generator behind minigt's random draws (draws happen on the CPU, then move)."""
    return _rng


def uniform_on(device: str, shape) -> object:
    """float32 draws from U[0, 1) made on `device` itself: on a GPU by a CuPy generator for it
    (seeded from minigt's on first use, so manual_seed repeats them), for draws in every training
    step (dropout masks) that should not be copied from the host."""
    if device == "cpu":
        return _rng.random(shape, dtype=np.float32)
    with device_context(device):
        if device not in _gpu_rngs:
            _gpu_rngs[device] = module_for(device).random.RandomState(int(_rng.integers(2**63)))
        return _gpu_rngs[device].random_sample(shape, dtype=np.float32)


def tensor(data, dtype=None, requires_grad: bool = False, device=None) -> Tensor:
    """A new tensor holding a copy of `data` (numbers, nested lists, arrays or tensors).

    Python floats give float32, ints int64, bools bool; arrays keep their dtype.
    >>> minigt.tensor([[1.0, 2.0]], requires_grad=True)
    """
    return _placed(Tensor(data, dtype=dtype, requires_grad=requires_grad, device=device))


def as_tensor(data, dtype=None, device=None) -> Tensor:
    """`data` as a tensor without a copy when it is already an array or tensor of that dtype on
    that device (sharing its memory, as torch.as_tensor); otherwise a copy, as tensor() makes."""
    array = data.data if isinstance(data, Tensor) else data
    if isinstance(array, ARRAY_TYPES) and array.dtype.kind in "biuf" and \
            (dtype is None or array.dtype == check_dtype(dtype, "as_tensor")) and \
            device_of(array) == target_device(array, device):
        return data if isinstance(data, Tensor) else _placed(Tensor._make(array, False, None))
    return tensor(data, dtype=dtype, device=device)


def from_numpy(array: np.ndarray) -> Tensor:
    """A tensor sharing memory with a NumPy array."""
    if not isinstance(array, np.ndarray):
        raise TypeError(f"from_numpy: expected a numpy.ndarray, got {type(array).__name__}")
    return _placed(Tensor._make(array, False, None))


def _shape(size, op: str) -> tuple:
    if len(size) == 1 and isinstance(size[0], (tuple, list)):
        size = tuple(size[0])
    if not all(isinstance(n, numbers.Integral) and n >= 0 for n in size):
        raise ValueError(f"{op}: size must be non-negative integers, got {size}")
    return tuple(int(n) for n in size)


def _fresh(array: np.ndarray, device, requires_grad: bool) -> Tensor:
    """A tensor around an array made just now (no one else holds it: no copy), on `device`."""
    if array.dtype.kind not in "biuf":
        raise TypeError(f"tensor(): unsupported data of dtype {array.dtype} (from ndarray); "
                        "give numbers, nested lists of numbers, or arrays of them")
    array = to_device(array, parse_device(device))
    return _placed(Tensor._make(array, False, None).requires_grad_(requires_grad))


def _filled(op: str, size, fill, dtype, device, requires_grad) -> Tensor:
    device = parse_device(device)
    dtype = default_float if dtype is None else check_dtype(dtype, op)
    shape, xp = _shape(size, op), module_for(device)
    with device_context(device):  # zeros are calloc'd: pages cost memory only once written
        array = xp.zeros(shape, dtype) if fill == 0 else xp.full(shape, fill, dtype=dtype)
    return _placed(Tensor._make(array, False, None).requires_grad_(requires_grad))


def zeros(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A tensor of zeros: `zeros(2, 3)` or `zeros((2, 3))`."""
    return _filled("zeros", size, 0, dtype, device, requires_grad)


def ones(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A tensor of ones."""
    return _filled("ones", size, 1, dtype, device, requires_grad)


def full(size, fill_value, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """A tensor of `size` filled with `fill_value`."""
    if dtype is None and isinstance(fill_value, (bool, np.bool_)):
        dtype = bool_
    elif dtype is None and isinstance(fill_value, numbers.Integral):
        dtype = int64
    return _filled("full", (size,), fill_value, dtype, device, requires_grad)


def _like(op, t: Tensor, fill, dtype, device, requires_grad):
    return _filled(op, t.shape, fill, dtype or t.dtype, device or t.device, requires_grad)


def zeros_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _like("zeros_like", t, 0, dtype, device, requires_grad)


def ones_like(t: Tensor, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    return _like("ones_like", t, 1, dtype, device, requires_grad)


def full_like(t: Tensor, fill_value, dtype=None, device=None, requires_grad=False) -> Tensor:
    return _like("full_like", t, fill_value, dtype, device, requires_grad)


def arange(start, end=None, step=1, dtype=None, device=None, requires_grad=False) -> Tensor:
    """Evenly spaced values in [start, end): int64 for integer arguments, float32 otherwise."""
    if end is None:
        start, end = 0, start
    if step == 0:
        raise ValueError("arange: step must be non-zero")
    integral = all(isinstance(v, numbers.Integral) for v in (start, end, step))
    dtype = check_dtype(dtype, "arange") if dtype is not None else (int64 if integral else default_float)
    return _fresh(np.arange(start, end, step).astype(dtype), device, requires_grad)


def eye(n: int, m: int | None = None, dtype=None, device=None, requires_grad=False) -> Tensor:
    """The n×m identity matrix."""
    return _fresh(np.eye(n, m, dtype=dtype or default_float), device, requires_grad)


def _random(op, draw, size, dtype, device, requires_grad) -> Tensor:
    dtype = default_float if dtype is None else check_dtype(dtype, op)
    return _fresh(draw(_shape(size, op)).astype(dtype, copy=False), device, requires_grad)


def randn(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Standard normal samples."""
    return _random("randn", _rng.standard_normal, size, dtype, device, requires_grad)


def rand(*size, dtype=None, device=None, requires_grad: bool = False) -> Tensor:
    """Uniform samples in [0, 1)."""
    return _random("rand", _rng.random, size, dtype, device, requires_grad)


def randint(low: int, high: int, size, dtype=None, device=None) -> Tensor:
    """Uniform integers in [low, high)."""
    array = _rng.integers(low, high, size=_shape((size,), "randint"))
    return _placed(Tensor(array, dtype=dtype or int64, device=device))


def randperm(n: int, device=None) -> Tensor:
    """A random permutation of 0..n-1."""
    return _placed(Tensor(_rng.permutation(n), dtype=int64, device=device))
