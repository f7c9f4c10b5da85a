"""Module: the base class of layers and models.

Assigning a `Parameter` or a `Module` to an attribute registers it, so `parameters()`,
`state_dict()`, `train()` and `to()` reach everything a model holds without a list to keep.
"""
from __future__ import annotations

import functools
from collections import namedtuple
from typing import Callable, Iterator

import numpy as np

from ..autograd import no_grad
from ..backends import ARRAY_TYPES, parse_device, to_device
from ..creation import no_auto_shard
from ..tensor import Tensor
from .parameter import Parameter

IncompatibleKeys = namedtuple("IncompatibleKeys", ["missing_keys", "unexpected_keys"])


def _without_auto_shard(init):
    """Wrap a Module's __init__ so the parameters it creates are never auto-sharded."""

    @functools.wraps(init)
    def build(self, *args, **kwargs):
        with no_auto_shard():
            init(self, *args, **kwargs)

    return build


class Module:
    """Base class: subclasses set parameters and submodules in `__init__` and define `forward`.

    >>> class Net(Module):
    ...     def __init__(self):
    ...         super().__init__()
    ...         self.fc = minigt.nn.Linear(4, 2)
    ...     def forward(self, x):
    ...         return self.fc(x).relu()
    """

    training: bool

    def __init__(self) -> None:
        # object.__setattr__: these dicts must exist before our __setattr__ can consult them
        object.__setattr__(self, "_parameters", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_non_persistent", set())
        object.__setattr__(self, "_modules", {})
        object.__setattr__(self, "training", True)

    def forward(self, *args, **kwargs):
        """The computation, defined by each subclass; call the module, not forward()."""
        raise NotImplementedError(f"{type(self).__name__} does not define forward()")

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        if "__init__" in cls.__dict__:
            cls.__init__ = _without_auto_shard(cls.__dict__["__init__"])

    def __call__(self, *args, **kwargs):
        # Tensors a module makes for itself (masks, positions) are constants, never data to shard.
        with no_auto_shard():
            return self.forward(*args, **kwargs)

    # ---- registration ------------------------------------------------------------------------
    def __setattr__(self, name: str, value) -> None:
        if "_parameters" not in self.__dict__:
            raise AttributeError(
                f"cannot assign {name!r} before Module.__init__() ran: call super().__init__() "
                f"first in {type(self).__name__}.__init__"
            )
        if isinstance(value, Parameter):
            self._forget(name, keep=self._parameters)
            self._parameters[name] = value
        elif isinstance(value, Module):
            self._forget(name, keep=self._modules)
            self._modules[name] = value
        elif name in self._parameters:
            if value is not None:
                raise TypeError(
                    f"cannot assign a {type(value).__name__} to parameter {name!r} of "
                    f"{type(self).__name__}: give a minigt.nn.Parameter or None"
                )
            self._parameters[name] = None
        elif name in self._modules:
            if value is not None:
                raise TypeError(
                    f"cannot assign a {type(value).__name__} to submodule {name!r} of "
                    f"{type(self).__name__}: give a Module or None"
                )
            self._modules[name] = None
        elif name in self._buffers:
            if value is not None and not isinstance(value, Tensor):
                raise TypeError(f"buffer {name!r} must be a Tensor or None, not {type(value).__name__}")
            self._buffers[name] = value
        else:
            object.__setattr__(self, name, value)

    def __getattr__(self, name: str):
        # Only called when normal lookup fails: registered things live in the three dicts.
        for registry in ("_parameters", "_buffers", "_modules"):
            found = self.__dict__.get(registry, {})
            if name in found:
                return found[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __delattr__(self, name: str) -> None:
        if not self._forget(name):
            object.__delattr__(self, name)

    def _forget(self, name: str, keep: dict | None = None) -> bool:
        """Remove `name` from wherever it is registered but `keep` (an attribute may change kind;
        replacing one of the same kind keeps its place in the order)."""
        found = False
        for registry in (self._parameters, self._buffers, self._modules):
            if name in registry and registry is not keep:
                del registry[name]
                found = True
        self._non_persistent.discard(name)
        if name in self.__dict__:
            object.__delattr__(self, name)
            found = True
        return found

    def register_parameter(self, name: str, param: Parameter | None) -> None:
        """Register `param` (or None, a declared-but-absent parameter such as bias=False)."""
        if param is not None and not isinstance(param, Parameter):
            raise TypeError(f"register_parameter: {name!r} must be a Parameter or None")
        self._forget(name, keep=self._parameters)
        self._parameters[name] = param

    def register_buffer(self, name: str, tensor: Tensor | None, persistent: bool = True) -> None:
        """Register state that is not learned (moved by `to()`; saved when `persistent`)."""
        if tensor is not None and not isinstance(tensor, Tensor):
            raise TypeError(f"register_buffer: {name!r} must be a Tensor or None")
        self._forget(name, keep=self._buffers)
        self._buffers[name] = tensor
        if not persistent:
            self._non_persistent.add(name)

    def add_module(self, name: str, module: Module | None) -> None:
        """Register `module` as the child `name` (what `self.name = module` does)."""
        self._forget(name, keep=self._modules)
        self._modules[name] = module

    # ---- traversal ---------------------------------------------------------------------------
    def named_modules(self, prefix: str = "", memo: set | None = None) -> Iterator[tuple[str, Module]]:
        """(dotted name, module) for this module and every descendant, each once."""
        memo = set() if memo is None else memo
        if self in memo:
            return
        memo.add(self)
        yield prefix, self
        for name, child in self._modules.items():
            if child is not None:
                yield from child.named_modules(f"{prefix}.{name}" if prefix else name, memo)

    def modules(self) -> Iterator[Module]:
        """This module and every descendant, each once."""
        for _, module in self.named_modules():
            yield module

    def named_children(self) -> Iterator[tuple[str, Module]]:
        """(name, module) for each direct child."""
        for name, child in self._modules.items():
            if child is not None:
                yield name, child

    def children(self) -> Iterator[Module]:
        """Each direct child module."""
        for _, child in self.named_children():
            yield child

    def _named_members(self, registry: str, recurse: bool):
        """(dotted name, tensor) from `registry` of each module; shared tensors appear once."""
        seen = set()
        modules = self.named_modules() if recurse else [("", self)]
        for prefix, module in modules:
            for name, value in getattr(module, registry).items():
                if value is None or id(value) in seen:
                    continue
                seen.add(id(value))
                yield (f"{prefix}.{name}" if prefix else name), value

    def named_parameters(self, recurse: bool = True) -> Iterator[tuple[str, Parameter]]:
        """(dotted name, parameter) here and, with `recurse`, in every submodule; each once."""
        return self._named_members("_parameters", recurse)

    def parameters(self, recurse: bool = True) -> Iterator[Parameter]:
        """Every parameter, as `named_parameters` without the names (what optimizers take)."""
        for _, param in self.named_parameters(recurse):
            yield param

    def named_buffers(self, recurse: bool = True) -> Iterator[tuple[str, Tensor]]:
        """(dotted name, buffer): state that is saved but not trained."""
        return self._named_members("_buffers", recurse)

    def buffers(self, recurse: bool = True) -> Iterator[Tensor]:
        """Every buffer, as `named_buffers` without the names."""
        for _, buffer in self.named_buffers(recurse):
            yield buffer

    def apply(self, fn: Callable[[Module], None]) -> Module:
        """Call `fn` on every submodule, then on this module (e.g. a custom initialisation)."""
        for child in self.children():
            child.apply(fn)
        fn(self)
        return self

    # ---- modes and gradients -----------------------------------------------------------------
    def train(self, mode: bool = True) -> Module:
        """Set training mode (dropout active) here and in every submodule."""
        for module in self.modules():
            object.__setattr__(module, "training", bool(mode))
        return self

    def eval(self) -> Module:
        """Evaluation mode: `train(False)`."""
        return self.train(False)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Drop every parameter's gradient (or fill it with zeros when `set_to_none=False`)."""
        for param in self.parameters():
            if set_to_none:
                param.grad = None
            elif param.grad is not None:
                param.grad.zero_()

    def requires_grad_(self, requires_grad: bool = True) -> Module:
        """Turn gradients on or off for every parameter (e.g. to freeze a part)."""
        for param in self.parameters():
            param.requires_grad_(requires_grad)
        return self

    # ---- state -------------------------------------------------------------------------------
    def state_dict(self, prefix: str = "") -> dict:
        """{dotted name: tensor} of every parameter and persistent buffer, sharing storage."""
        return {key: (t.full_value() if isinstance(t, Parameter) else t.detach())
                for key, t in self._state_tensors(prefix).items()}

    def load_state_dict(self, state_dict: dict, strict: bool = True) -> IncompatibleKeys:
        """Copy values (minigt tensors, NumPy arrays, CPU torch tensors) into this model in place.

        Shapes must match exactly; with `strict`, so must the set of keys. Values are cast to each
        tensor's dtype and moved to its device; parameters keep their identity.
        """
        own = self._state_tensors()
        missing = [key for key in own if key not in state_dict]
        unexpected = [key for key in state_dict if key not in own]
        errors = []
        for key, target in own.items():
            if key not in state_dict:
                continue
            value = _as_numpy_or_backend(state_dict[key])
            whole_shape = tuple(value.shape)
            if isinstance(target, Parameter):  # a split parameter: the part this rank keeps
                value = target.local_part(value)
            if tuple(value.shape) != tuple(target.data.shape):
                errors.append(
                    f"size mismatch for {key!r}: the model has shape {target.shape}, the state "
                    f"dict has {whole_shape}"
                )
        if strict:
            if missing:
                errors.append("missing keys: " + ", ".join(repr(k) for k in missing))
            if unexpected:
                errors.append("unexpected keys: " + ", ".join(repr(k) for k in unexpected))
        if errors:
            raise RuntimeError(
                f"load_state_dict into {type(self).__name__} failed:\n  " + "\n  ".join(errors)
            )
        with no_grad():
            for key, target in own.items():
                if key in state_dict:
                    value = _as_numpy_or_backend(state_dict[key])
                    if isinstance(target, Parameter):
                        value = target.local_part(value)
                    # this rank's part into its own storage (Tensor's copy_, not a sharded one's)
                    value = to_device(value, target.device).astype(target.dtype, copy=False)
                    Tensor.copy_(target, value)
        return IncompatibleKeys(missing, unexpected)

    def _state_tensors(self, prefix: str = "") -> dict:
        """The live tensors behind `state_dict()`'s keys (not detached copies)."""
        state = {}
        for name, param in self._parameters.items():
            if param is not None:
                state[prefix + name] = param
        for name, buffer in self._buffers.items():
            if buffer is not None and name not in self._non_persistent:
                state[prefix + name] = buffer
        for name, child in self._modules.items():
            if child is not None:
                state.update(child._state_tensors(f"{prefix}{name}."))
        return state

    # ---- devices and dtypes ------------------------------------------------------------------
    def to(self, device=None, dtype=None) -> Module:
        """Move/cast every parameter and buffer in place (same Parameter objects): `to('cuda')`,
        `to(minigt.float64)`. Gradients follow their parameters."""
        if device is not None and not isinstance(device, str) and dtype is None:
            device, dtype = None, device  # model.to(minigt.float64)
        device = parse_device(device) if device is not None else None
        dtype = np.dtype(dtype) if dtype is not None else None

        def convert(array):
            if device is not None:
                array = to_device(array, device)
            if dtype is not None and array.dtype.kind == "f":  # integer buffers keep their dtype
                array = array.astype(dtype, copy=False)
            return array

        for tensor in list(self.parameters()) + list(self.buffers()):
            tensor.data = convert(tensor.data)
            if tensor.grad is not None:
                tensor.grad.data = convert(tensor.grad.data)
        return self

    def cpu(self) -> Module:
        """Move every parameter and buffer to host memory: `to('cpu')`."""
        return self.to("cpu")

    def cuda(self, device: int | None = None) -> Module:
        """Move every parameter and buffer to a GPU (the current one, or `device`)."""
        return self.to("cuda" if device is None else f"cuda:{device}")

    def float(self) -> Module:
        """Cast floating-point parameters and buffers to float32."""
        return self.to(dtype=np.float32)

    def double(self) -> Module:
        """Cast floating-point parameters and buffers to float64."""
        return self.to(dtype=np.float64)

    # ---- display -----------------------------------------------------------------------------
    def extra_repr(self) -> str:
        """The constructor arguments shown inside `Name(...)`; layers override it."""
        return ""

    def __repr__(self) -> str:
        children = [
            f"({name}): " + repr(child).replace("\n", "\n  ") for name, child in self._modules.items()
        ]
        extra = self.extra_repr()
        if not children:
            return f"{type(self).__name__}({extra})"
        lines = ([extra] if extra else []) + children
        return f"{type(self).__name__}(\n  " + "\n  ".join(lines) + "\n)"


def _as_numpy_or_backend(value):
    """A state-dict value as an array: minigt tensors give their array, others go through NumPy."""
    if isinstance(value, Tensor):
        return value.data
    if isinstance(value, ARRAY_TYPES):  # a CuPy array stays one (np.asarray would refuse it)
        return value
    return np.asarray(value)
