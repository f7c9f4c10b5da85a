"""minigt: a small tensor library with define-by-run autograd on NumPy and CuPy arrays.

>>> import minigt as gt
>>> x = gt.tensor([1.0, 2.0, 3.0], requires_grad=True)
>>> (x * x).sum().backward()
>>> x.grad
tensor([2., 4., 6.], dtype=float32, device='cpu')
"""
import os as _os
import sys as _sys

if "numpy" not in _sys.modules:  # BLAS threads: see blas_setup (it does not import NumPy)
    from . import blas_setup as _blas_setup
    _blas_setup.configure()

from . import nn, optim
from . import tensor_methods  # noqa: F401 - attaches ops as Tensor methods
from .autograd import enable_grad, is_grad_enabled, no_grad, set_grad_enabled
from .backends import cuda_available
from .creation import (
    arange, as_tensor, bool_, eye, float16, float32, float64, from_numpy, full, full_like, int32, int64,
    manual_seed, ones, ones_like, rand, randint, randn, randperm, tensor, uint8, zeros, zeros_like,
)
from .devices import device
from .ops import (
    abs, add, all, amax, amin, any, argmax, argmin, broadcast_to, cast, cat, chunk, clamp, clone,
    cos, div, eq, exp, expand, flatten, ge, gelu, getitem, gt, le, log, log_softmax, logical_not,
    logsumexp, lt, masked_fill, matmul, max, maximum, mean, min, minimum, mul, ne, neg, permute,
    pow, relu, reshape, rsqrt, sigmoid, sin, softmax, split, sqrt, squeeze, stack, std, sub, sum,
    tanh, transpose, unsqueeze, var, view, where,
)
from .ops import __all__ as _ops_all
from .serialization import load, save
from .tensor import Tensor

if _os.environ.get("GT_AUTO_SHARD", "0") == "1":  # data made from here on is split across ranks
    from . import distributed  # noqa: F401 - installs creation's auto-shard hook


def __getattr__(name: str):
    """`minigt.distributed` on first use, as `torch.distributed` after `import torch`: imported
    lazily, since it costs startup time and brings in MPI."""
    if name == "distributed":
        import importlib
        return importlib.import_module(".distributed", __name__)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

__version__ = "0.1.0"

__all__ = [
    "Tensor", "tensor", "as_tensor", "from_numpy", "zeros", "ones", "full", "arange", "eye", "randn", "rand",
    "randint", "randperm", "zeros_like", "ones_like", "full_like", "manual_seed",
    "no_grad", "enable_grad", "set_grad_enabled", "is_grad_enabled", "cuda_available",
    "float16", "float32", "float64", "int32", "int64", "uint8", "bool_",
    "save", "load", "device", "nn", "optim",
] + list(_ops_all)
