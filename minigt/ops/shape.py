"""Ops that rearrange elements without changing them: reshape, permute, expand, cat and friends.
Backward undoes the rearrangement."""
from __future__ import annotations

import math
import numbers

from ..autograd import Function
from ..backends import array_module
from ..tensor import Tensor
from .dims import normalize_dim, same_device


class Reshape(Function):
    """x viewed with a new shape of the same size;  dx = g reshaped back."""

    output_is_view = True

    def forward(self, x, shape):
        self.shape = x.shape
        return x.reshape(shape)

    def backward(self, g):
        return g.reshape(self.shape)


class Permute(Function):
    """x with its dims reordered;  dx = g with the inverse order."""

    output_is_view = True

    def forward(self, x, dims):
        self.inverse = tuple(sorted(range(len(dims)), key=dims.__getitem__))
        return x.transpose(dims)

    def backward(self, g):
        return g.transpose(self.inverse)


class BroadcastTo(Function):
    """x repeated along new leading dims and dims of size 1;  dx = Σ g over them (done centrally
    by the engine's reduce_to_shape)."""

    output_is_view = True

    def forward(self, x, shape):
        return array_module(x).broadcast_to(x, shape)

    def backward(self, g):
        return g


class Cat(Function):
    """Inputs joined along `dim`;  each input's gradient is its slice of g."""

    def forward(self, *xs, dim):
        self.dim = dim
        self.bounds = [0]
        for x in xs:
            self.bounds.append(self.bounds[-1] + x.shape[dim])
        return array_module(xs[0]).concatenate(xs, axis=dim)

    def backward(self, g):
        index = [slice(None)] * g.ndim
        grads = []
        for start, stop in zip(self.bounds, self.bounds[1:]):
            index[self.dim] = slice(start, stop)
            grads.append(g[tuple(index)])
        return tuple(grads)


def _size_args(shape, op: str, keyword: str = "shape", by_keyword=None) -> tuple:
    """Sizes given spread out (2, 3), as one tuple ((2, 3),), or by keyword (shape=(2, 3))."""
    if by_keyword is not None:
        if shape:
            raise TypeError(f"{op}: give the sizes as arguments or as {keyword}=, not both")
        shape = (by_keyword,)
    if len(shape) == 1 and isinstance(shape[0], (tuple, list)):
        shape = tuple(shape[0])
    if not all(isinstance(n, numbers.Integral) for n in shape):
        raise TypeError(f"{op}: sizes must be ints, got {shape}")
    return tuple(int(n) for n in shape)


def reshape(x: Tensor, *sizes, shape=None) -> Tensor:
    """The same elements in a new shape; one size may be -1 (inferred). `view` is the same op."""
    shape = _size_args(sizes, "reshape", "shape", shape)
    if shape.count(-1) > 1:
        raise ValueError(f"reshape: only one dim can be -1, got {shape} for a tensor of shape {x.shape}")
    if any(n < -1 for n in shape):
        raise ValueError(
            f"reshape: invalid size in {shape} for a tensor of shape {x.shape}; sizes must be >= 0 or -1"
        )
    known = math.prod(n for n in shape if n != -1)
    size = x.numel()
    if -1 in shape:
        if known == 0 or size % known:
            raise ValueError(
                f"reshape: cannot reshape {x.shape} ({size} elements) to {shape}: {size} is not "
                f"divisible by {known}"
            )
        shape = tuple(size // known if n == -1 else n for n in shape)
    elif known != size:
        raise ValueError(
            f"reshape: cannot reshape {x.shape} ({size} elements) to {shape} ({known} elements)"
        )
    if shape == x.shape:
        return x
    return Reshape.apply(x, shape=shape)


view = reshape


def permute(x: Tensor, *order, dims=None) -> Tensor:
    """Reorder the dims: `permute(x, 0, 2, 1, 3)`."""
    dims = _size_args(order, "permute", "dims", dims)
    if len(dims) != x.ndim:
        raise ValueError(f"permute: got {len(dims)} dims {dims} for a tensor with {x.ndim} dims")
    dims = tuple(normalize_dim(d, x.ndim, "permute") for d in dims)
    if len(set(dims)) != len(dims):
        raise ValueError(
            f"permute: dims {dims} repeat a dim for a tensor of shape {x.shape}; give each dim exactly once"
        )
    return Permute.apply(x, dims=dims)


def transpose(x: Tensor, dim0: int, dim1: int) -> Tensor:
    """Swap two dims."""
    if x.ndim == 0:  # dims 0 and -1 name the tensor itself, as in PyTorch
        normalize_dim(dim0, 0, "transpose"), normalize_dim(dim1, 0, "transpose")
        return x
    dims = list(range(x.ndim))
    a, b = normalize_dim(dim0, x.ndim, "transpose"), normalize_dim(dim1, x.ndim, "transpose")
    dims[a], dims[b] = dims[b], dims[a]
    return permute(x, *dims)


def flatten(x: Tensor, start_dim: int = 0, end_dim: int = -1) -> Tensor:
    """Merge dims start_dim..end_dim into one."""
    if x.ndim == 0:
        return reshape(x, 1)
    start = normalize_dim(start_dim, x.ndim, "flatten")
    end = normalize_dim(end_dim, x.ndim, "flatten")
    if start > end:
        raise ValueError(f"flatten: start_dim {start_dim} comes after end_dim {end_dim}")
    shape = x.shape[:start] + (math.prod(x.shape[start:end + 1]),) + x.shape[end + 1:]
    return reshape(x, shape)


def squeeze(x: Tensor, dim=None) -> Tensor:
    """Drop dims of size 1 (all of them, or the given one(s) when they have size 1)."""
    if dim is None:
        dims = {i for i, n in enumerate(x.shape) if n == 1}
    else:
        dims = {normalize_dim(d, x.ndim, "squeeze") for d in ((dim,) if isinstance(dim, int) else dim)}
        if x.ndim == 0:  # dims 0 and -1 name the tensor itself, as in PyTorch
            return x
        dims = {d for d in dims if x.shape[d] == 1}
    return reshape(x, tuple(n for i, n in enumerate(x.shape) if i not in dims))


def unsqueeze(x: Tensor, dim: int) -> Tensor:
    """Insert a dim of size 1 at `dim` (negative counts from the end of the result)."""
    dim = normalize_dim(dim, x.ndim + 1, "unsqueeze")
    return reshape(x, x.shape[:dim] + (1,) + x.shape[dim:])


def broadcast_to(x: Tensor, *sizes, shape=None) -> Tensor:
    """x repeated (without copying) to `shape`, following broadcasting rules."""
    shape = _size_args(sizes, "broadcast_to", "shape", shape)
    lead = len(shape) - x.ndim
    if lead < 0 or any(
        n != m and n != 1 for n, m in zip(x.shape, shape[lead:])
    ):
        raise ValueError(
            f"broadcast_to: cannot broadcast {x.shape} to {shape}; only new leading dims and dims "
            "of size 1 can grow"
        )
    if shape == x.shape:
        return x
    return BroadcastTo.apply(x, shape=shape)


def expand(x: Tensor, *sizes) -> Tensor:
    """PyTorch's expand: broadcast_to where -1 keeps a dim's size."""
    sizes = _size_args(sizes, "expand")
    lead = len(sizes) - x.ndim
    shape = tuple(x.shape[i - lead] if n == -1 and i >= lead else n for i, n in enumerate(sizes))
    return broadcast_to(x, shape)


def cat(tensors, dim: int = 0) -> Tensor:
    """Join tensors along an existing dim; all other dims must match."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("cat: expected a non-empty list of tensors")
    first = tensors[0]
    dim = normalize_dim(dim, first.ndim, "cat")
    for i, t in enumerate(tensors):
        if t.ndim != first.ndim or t.shape[:dim] + t.shape[dim + 1:] != first.shape[:dim] + first.shape[dim + 1:]:
            raise ValueError(
                f"cat: tensor {i} has shape {t.shape} but tensor 0 has {first.shape}; all dims "
                f"except dim {dim} must match"
            )
    same_device("cat", *tensors)
    return Cat.apply(*tensors, dim=dim)


def stack(tensors, dim: int = 0) -> Tensor:
    """Join same-shape tensors along a new dim."""
    tensors = list(tensors)
    if not tensors:
        raise ValueError("stack: expected a non-empty list of tensors")
    for i, t in enumerate(tensors):
        if t.shape != tensors[0].shape:
            raise ValueError(f"stack: tensor {i} has shape {t.shape} but tensor 0 has {tensors[0].shape}")
    dim = normalize_dim(dim, tensors[0].ndim + 1, "stack")
    return cat([unsqueeze(t, dim) for t in tensors], dim)


def split(x: Tensor, split_size_or_sections=None, dim: int = 0, *, split_size=None) -> tuple:
    """Pieces along `dim`: of equal size (the last may be smaller), or of the listed sizes.
    The sizes' keyword is torch.split's `split_size_or_sections` or Tensor.split's `split_size`."""
    if (split_size_or_sections is None) == (split_size is None):
        raise TypeError("split: give the piece size (or sizes) once, as the second argument, "
                        "split_size_or_sections= or split_size=")
    if split_size_or_sections is None:
        split_size_or_sections = split_size
    dim = normalize_dim(dim, x.ndim, "split")
    length = x.shape[dim]
    if isinstance(split_size_or_sections, numbers.Integral):
        step = int(split_size_or_sections)
        if step <= 0:
            raise ValueError(f"split: split_size must be positive, got {step}")
        sizes = [min(step, length - start) for start in range(0, length, step)] or [0]
    else:
        sizes = [int(n) for n in split_size_or_sections]
        if sum(sizes) != length:
            raise ValueError(f"split: sizes {sizes} add up to {sum(sizes)}, but dim {dim} has {length}")
    pieces, start = [], 0
    for n in sizes:
        index = (slice(None),) * dim + (slice(start, start + n),)
        pieces.append(x[index])
        start += n
    return tuple(pieces)


def chunk(x: Tensor, chunks: int, dim: int = 0) -> tuple:
    """`chunks` pieces along `dim` of size ceil(n / chunks) (fewer when n is small)."""
    if chunks <= 0:
        raise ValueError(f"chunk: chunks must be positive, got {chunks}")
    length = x.shape[normalize_dim(dim, x.ndim, "chunk")]
    return split(x, max(1, -(-length // chunks)), dim)
