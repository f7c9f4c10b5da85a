"""The Tensor: an array (NumPy or CuPy) plus what autograd needs to differentiate through it.

The math lives in `minigt/ops/`; `minigt/tensor_methods.py` attaches it as methods and operators.
"""
from __future__ import annotations

import numpy as np

from .backends import array_module, device_of, parse_device, to_device


class Tensor:
    """An n-dimensional array that can record the ops applied to it.

    >>> x = minigt.tensor([1.0, 2.0], requires_grad=True)
    >>> (x * x).sum().backward(); x.grad      # tensor([2., 4.])
    """

    __slots__ = ("data", "requires_grad", "grad", "grad_fn", "_version", "__weakref__")
    placement = None  # a plain tensor is local to its process; see minigt.distributed

    def __init__(self, data, dtype=None, requires_grad: bool = False, device=None):
        self.data = as_array(data, dtype, device)
        self.requires_grad = False
        self.grad = None
        self.grad_fn = None
        self._version = [0]
        if requires_grad:
            self.requires_grad_()

    @classmethod
    def _make(cls, data, requires_grad: bool, grad_fn):
        """Wrap an array without checks (the fast path every op result takes)."""
        t = object.__new__(cls)
        t.data = data
        t.requires_grad = requires_grad
        t.grad = None
        t.grad_fn = grad_fn
        t._version = [0]  # a list, so views of the same memory can share one counter
        return t

    # ---- array facts -------------------------------------------------------------------------
    @property
    def shape(self) -> tuple:
        """The size of each dim, as a tuple of ints (a DTensor's is the global shape)."""
        return tuple(self.data.shape)

    @property
    def ndim(self) -> int:
        """How many dims: len(shape)."""
        return self.data.ndim

    @property
    def dtype(self):
        """The element type, a NumPy dtype (float32, float64, int64, bool, ...)."""
        return self.data.dtype

    @property
    def device(self) -> str:
        """Where the data lives: 'cpu' (a NumPy array) or 'cuda:N' (a CuPy array on GPU N)."""
        return device_of(self.data)

    @property
    def is_leaf(self) -> bool:
        """True when no op made this tensor (grad_fn is None): backward stops here."""
        return self.grad_fn is None

    def dim(self) -> int:
        """The number of dims (PyTorch's spelling of ndim)."""
        return self.ndim

    def numel(self) -> int:
        """The number of elements."""
        return int(self.data.size)

    def __len__(self) -> int:
        if self.ndim == 0:
            raise TypeError("len() of a 0-d tensor: it has no first dimension; use .item()")
        return self.data.shape[0]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    # ---- autograd ----------------------------------------------------------------------------
    def backward(self, gradient=None, retain_graph: bool = False) -> None:
        """Accumulate the gradient of this tensor into every leaf that requires grad.

        Without `gradient` the tensor must hold one element (a loss). The graph is freed
        afterwards unless `retain_graph=True`.
        """
        autograd.backward(self, gradient, retain_graph)

    def requires_grad_(self, requires_grad: bool = True) -> Tensor:
        """Mark this leaf as a parameter whose gradient backward() should compute."""
        if self.grad_fn is not None and not requires_grad:
            raise RuntimeError(
                "requires_grad_(False) on a non-leaf tensor; use .detach() to cut it from the graph"
            )
        if requires_grad and self.data.dtype.kind not in "fc":
            raise TypeError(
                f"requires_grad_: only floating-point tensors can require gradients, not "
                f"{self.data.dtype}; convert with .float() first"
            )
        self.requires_grad = bool(requires_grad)
        return self

    def _grad_from(self, array) -> Tensor:
        """A gradient tensor for this tensor holding `array` (sharded tensors keep placement)."""
        return Tensor._make(array, False, None)

    def retain_grad(self) -> None:
        """Keep this intermediate tensor's gradient in `.grad` after backward()."""
        if self.grad_fn is not None:
            autograd.retain(self)

    def detach(self) -> Tensor:
        """The same data (shared, not copied) cut from the graph."""
        t = Tensor._make(self.data, False, None)
        t._version = self._version  # writes through it must still be seen by autograd
        return t

    def _bump_version(self) -> None:
        """Record an in-place change, so graphs that saved the old values refuse backward."""
        self._version[0] += 1

    # ---- conversion --------------------------------------------------------------------------
    def numpy(self) -> np.ndarray:
        """The data as a NumPy array (shared on the CPU, copied from a GPU)."""
        return to_device(self.data, "cpu")

    def __array__(self, dtype=None, copy=None):
        array = self.numpy()
        return array if dtype is None else array.astype(dtype, copy=False)

    def item(self):
        """The single element as a Python number."""
        if self.data.size != 1:
            raise ValueError(
                f"item(): the tensor has {self.data.size} elements (shape {self.shape}); only a "
                "one-element tensor converts to a Python number. Index or reduce it first."
            )
        return self.data.item()

    def tolist(self):
        """The values as (nested) Python lists of numbers."""
        return self.numpy().tolist()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self.data.dtype.kind not in "iub":
            raise TypeError(f"only integer tensors can be used as an index, not {self.data.dtype}")
        return int(self.item())

    def __bool__(self):
        if self.data.size != 1:
            raise RuntimeError(
                f"the truth value of a tensor with {self.data.size} elements is ambiguous; "
                "use .any() or .all()"
            )
        return bool(self.item())

    def contiguous(self) -> Tensor:
        """Present for PyTorch code; arrays here are laid out as their backend sees fit."""
        return self

    # ---- in place (outside the graph) --------------------------------------------------------
    def _check_inplace(self, op: str) -> None:
        if autograd.is_grad_enabled() and self.requires_grad:
            where = "a leaf that requires grad" if self.grad_fn is None else "part of the graph"
            raise RuntimeError(
                f"{op}: in-place change of a tensor that is {where} (shape {self.shape}). "
                "Update parameters inside `with minigt.no_grad():`, or write it out of place (x = x + y)."
            )

    def _assign(self, op: str, new_data) -> Tensor:
        """Write `new_data` into this tensor's storage, keeping its shape and dtype."""
        self._check_inplace(op)
        new_data = _unwrap(new_data)
        if array_module(new_data) is not array_module(self.data) and not np.isscalar(new_data):
            raise RuntimeError(f"{op}: value is on {device_of(new_data)}, tensor on {self.device}")
        self.data[...] = new_data
        self._bump_version()
        return self

    def copy_(self, src) -> Tensor:
        """Write src's values into this tensor (cast to its dtype), outside the graph."""
        return self._assign("copy_", src)

    def zero_(self) -> Tensor:
        """Set every element to 0, outside the graph."""
        return self._assign("zero_", 0)

    def fill_(self, value) -> Tensor:
        """Set every element to `value`, outside the graph."""
        return self._assign("fill_", value)

    def _arithmetic_(self, op: str, result) -> Tensor:
        """Store an in-place arithmetic result, refusing to truncate floats into an int tensor."""
        if self.data.dtype.kind in "biu" and result.dtype.kind == "f":
            raise TypeError(
                f"{op}: the result is floating point but the tensor is {self.data.dtype}; "
                "convert it first (x = x.float())"
            )
        return self._assign(op, result)

    def add_(self, other, alpha: float = 1.0) -> Tensor:
        """self += alpha·other, outside the graph."""
        other = _unwrap(other)
        return self._arithmetic_("add_", self.data + (other if alpha == 1.0 else alpha * other))

    def sub_(self, other, alpha: float = 1.0) -> Tensor:
        """self -= alpha·other, outside the graph."""
        return self.add_(other, alpha=-alpha)

    def mul_(self, other) -> Tensor:
        """self *= other, outside the graph."""
        return self._arithmetic_("mul_", self.data * _unwrap(other))

    def div_(self, other) -> Tensor:
        """self /= other, outside the graph."""
        return self._arithmetic_("div_", self.data / _unwrap(other))

    def __iadd__(self, other):
        return self.add_(other)

    def __isub__(self, other):
        return self.sub_(other)

    def __imul__(self, other):
        return self.mul_(other)

    def __itruediv__(self, other):
        return self.div_(other)

    # ---- display -----------------------------------------------------------------------------
    def __repr__(self) -> str:
        body = np.array2string(self.numpy(), separator=", ", prefix="tensor(", threshold=200)
        extras = [f"dtype={self.dtype}", f"device='{self.device}'"]
        if self.grad_fn is not None:
            extras.append(f"grad_fn={self.grad_fn!r}")
        elif self.requires_grad:
            extras.append("requires_grad=True")
        return f"tensor({body}, {', '.join(extras)})"

    __hash__ = object.__hash__  # tensors are hashed by identity (dict keys, sets), as in PyTorch


def check_dtype(dtype, op: str):
    try:
        return np.dtype(dtype)
    except TypeError as error:
        raise TypeError(f"{op}: {dtype!r} is not a dtype; use e.g. minigt.float32") from error


def as_array(data, dtype=None, device=None):
    """An array on `device` from a tensor, array, number or (nested) list."""
    if isinstance(data, Tensor):
        data = data.data
    if array_module(data) is np:
        try:
            array = np.array(data)
        except ValueError as error:
            raise ValueError(
                f"tensor(): could not build an array from the data ({error}); nested lists must "
                "be rectangular, e.g. [[1, 2], [3, 4]]"
            ) from None
        if array.dtype.kind not in "biuf":
            raise TypeError(
                f"tensor(): unsupported data of dtype {array.dtype} (from {type(data).__name__}); "
                "give numbers, nested lists of numbers, or arrays of them"
            )
        if dtype is None and array.dtype == np.float64 and not isinstance(data, (np.ndarray, np.generic)):
            array = array.astype(np.float32)  # Python floats become float32, as in PyTorch
    else:
        array = data.copy()
    if dtype is not None:
        array = array.astype(check_dtype(dtype, "tensor"), copy=False)
    return to_device(array, target_device(array, device))


def target_device(array, device=None) -> str:
    """Where tensor(array, device=device) puts its data: `device`, else a GPU array's own
    device, else the default device."""
    if device is not None:
        return parse_device(device)
    return device_of(array) if array_module(array) is not np else parse_device(None)


def not_a_tensor(value, context: str) -> TypeError:
    """The error for `value` (a NumPy array, a torch tensor, a list, ...) where minigt needs a
    Tensor: `context` ("linear: input must be a minigt Tensor, got") and then what was passed and
    how to make a tensor of it."""
    kind = type(value)
    name = f"{kind.__module__.partition('.')[0]}.{kind.__qualname__}"
    if name.startswith("torch."):
        return TypeError(
            f"{context} a torch.Tensor of shape {tuple(value.shape)} and dtype {value.dtype}; "
            "convert it with minigt.from_numpy(t.detach().cpu().numpy())"
        )
    if hasattr(value, "shape") and hasattr(value, "dtype"):  # NumPy, CuPy and their like
        return TypeError(
            f"{context} a {name} of shape {tuple(value.shape)} and dtype {value.dtype}; wrap it "
            "with minigt.from_numpy(array) (shares its memory) or minigt.tensor(array) (a copy)"
        )
    if isinstance(value, (list, tuple)):
        try:
            shape = f" of shape {np.shape(value)}"
        except ValueError:  # ragged
            shape = ""
        return TypeError(f"{context} a {kind.__name__}{shape}; wrap it with minigt.tensor(...)")
    return TypeError(f"{context} a {kind.__name__} ({value!r:.40}); pass a minigt tensor "
                     "(minigt.tensor(...) makes one of numbers, lists or arrays)")


def _unwrap(value):
    """A tensor's array; anything else as it is. (Not getattr(value, "data", value): a CuPy
    array's `.data` is its device pointer, and a NumPy array's a memoryview.)"""
    return value.data if isinstance(value, Tensor) else value


# autograd.py builds Tensors, and Tensor methods call into autograd: import it once Tensor exists.
from . import autograd  # noqa: E402
