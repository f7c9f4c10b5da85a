"""In-place initialisers, drawn from minigt's generator (so `minigt.manual_seed` fixes them).

Each fills a tensor (usually a Parameter) under no_grad and returns it, as torch.nn.init does.
Fans follow PyTorch: for a weight of shape (out, in, *kernel), fan_in = in·k, fan_out = out·k.
"""
from __future__ import annotations

import math

import numpy as np

from ..autograd import no_grad
from ..backends import to_device
from ..creation import generator
from ..tensor import Tensor

_GAINS = {"linear": 1.0, "identity": 1.0, "sigmoid": 1.0, "conv1d": 1.0, "conv2d": 1.0,
          "conv3d": 1.0, "tanh": 5.0 / 3, "relu": math.sqrt(2.0), "selu": 0.75}


def calculate_gain(nonlinearity: str, param: float | None = None) -> float:
    """The factor that keeps activations' variance steady through `nonlinearity`."""
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope**2))
    if nonlinearity not in _GAINS:
        raise ValueError(f"calculate_gain: unknown nonlinearity {nonlinearity!r}; use one of "
                         f"{sorted(_GAINS) + ['leaky_relu']}")
    return _GAINS[nonlinearity]


def fan_in_and_fan_out(tensor: Tensor) -> tuple[int, int]:
    """(fan_in, fan_out) of a weight with at least 2 dims."""
    if tensor.ndim < 2:
        raise ValueError(f"fan in/out need a tensor with at least 2 dims, got shape {tensor.shape}")
    receptive = math.prod(tensor.shape[2:])
    return tensor.shape[1] * receptive, tensor.shape[0] * receptive


# Set by minigt.distributed.sharded_init: tensor -> the (start, stop) rows of it this rank keeps,
# or None for all of them.
rows_to_keep = None


def _fill(tensor: Tensor, draw, scale: float, shift: float) -> Tensor:
    """Write `draw(shape, dtype) * scale + shift` (NumPy) into `tensor` in place, on its device.
    float32 tensors get float32 draws: half the work of float64 ones, and no cast."""
    dtype = tensor.dtype if tensor.dtype in (np.float32, np.float64) else np.float64
    kept = rows_to_keep(tensor) if rows_to_keep is not None else None
    if kept is not None:
        return _fill_rows(tensor, draw, scale, shift, dtype, *kept)
    values = draw(tensor.shape, dtype=dtype)
    values *= scale
    values += shift
    with no_grad():
        tensor.copy_(to_device(values.astype(tensor.dtype, copy=False), tensor.device))
    return tensor


def _fill_rows(tensor: Tensor, draw, scale, shift, dtype, start: int, stop: int) -> Tensor:
    """`_fill` writing only rows [start, stop): every row is still drawn, a block at a time, so
    the generator moves on as for the whole tensor and the kept rows get the same values."""
    rows, row_size = tensor.shape[0], math.prod(tensor.shape[1:])
    block = max(1, (1 << 20) // max(row_size, 1))
    for first in range(0, rows, block):
        last = min(first + block, rows)
        values = draw((last - first, *tensor.shape[1:]), dtype=dtype)
        lo, hi = max(first, start), min(last, stop)
        if lo < hi:
            part = values[lo - first:hi - first] * scale + shift
            tensor.data[lo:hi] = to_device(part.astype(tensor.dtype, copy=False), tensor.device)
    return tensor


def uniform_(tensor: Tensor, a: float = 0.0, b: float = 1.0) -> Tensor:
    """Fill with U(a, b)."""
    return _fill(tensor, generator().random, b - a, a)


def normal_(tensor: Tensor, mean: float = 0.0, std: float = 1.0) -> Tensor:
    """Fill with N(mean, std²)."""
    return _fill(tensor, generator().standard_normal, std, mean)


def constant_(tensor: Tensor, value: float) -> Tensor:
    """Fill with `value`."""
    with no_grad():
        return tensor.fill_(value)


def zeros_(tensor: Tensor) -> Tensor:
    """Fill with 0."""
    return constant_(tensor, 0.0)


def ones_(tensor: Tensor) -> Tensor:
    """Fill with 1."""
    return constant_(tensor, 1.0)


def xavier_uniform_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    """U(-a, a) with a = gain·√(6 / (fan_in + fan_out))  (Glorot & Bengio, 2010)."""
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    bound = gain * math.sqrt(6.0 / (fan_in + fan_out))
    return uniform_(tensor, -bound, bound)


def xavier_normal_(tensor: Tensor, gain: float = 1.0) -> Tensor:
    """N(0, std²) with std = gain·√(2 / (fan_in + fan_out))."""
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    return normal_(tensor, 0.0, gain * math.sqrt(2.0 / (fan_in + fan_out)))


def _kaiming_std(tensor: Tensor, a: float, mode: str, nonlinearity: str) -> float:
    if mode not in ("fan_in", "fan_out"):
        raise ValueError(f"kaiming init: mode must be 'fan_in' or 'fan_out', got {mode!r}")
    fan_in, fan_out = fan_in_and_fan_out(tensor)
    if tensor.numel() == 0:  # nothing to fill, and its fan may be 0 (nn.Linear(0, 3))
        return 0.0
    fan = fan_in if mode == "fan_in" else fan_out
    return calculate_gain(nonlinearity, a) / math.sqrt(fan)


def kaiming_uniform_(tensor: Tensor, a: float = 0.0, mode: str = "fan_in",
                     nonlinearity: str = "leaky_relu") -> Tensor:
    """U(-b, b) with b = gain·√(3 / fan)  (He et al., 2015)."""
    bound = math.sqrt(3.0) * _kaiming_std(tensor, a, mode, nonlinearity)
    return uniform_(tensor, -bound, bound)


def kaiming_normal_(tensor: Tensor, a: float = 0.0, mode: str = "fan_in",
                    nonlinearity: str = "leaky_relu") -> Tensor:
    """N(0, std²) with std = gain / √fan."""
    return normal_(tensor, 0.0, _kaiming_std(tensor, a, mode, nonlinearity))
