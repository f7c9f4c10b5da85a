"""The optimizer base: parameter groups, per-parameter state, and the update loop.

Every optimizer here is the same loop with a different per-parameter rule. `Optimizer` owns the
loop, the groups and the state (and so `zero_grad`, `step`, `state_dict`, `load_state_dict`); a
subclass only says what state a parameter starts with (`_init_state`) and how one update
changes the raw arrays (`_update`).
"""
from __future__ import annotations

import os
from abc import ABC, abstractmethod
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Iterable

import numpy as np

from ..autograd import enable_grad, no_grad, recycle
from .. import blas_setup
from ..backends import ARRAY_TYPES, array_module, blas, device_of, to_device
from ..nn.parameter import Parameter
from ..tensor import Tensor


class Optimizer(ABC):
    """Base class: holds `param_groups` (dicts of params + hyperparameters) and `state`.

    `params` is an iterable of tensors, or of dicts `{"params": [...], "lr": ...}` to give some
    parameters their own hyperparameters; keys a group leaves out come from `defaults`.
    """

    def __init__(self, params: Iterable, defaults: dict[str, Any]):
        self.defaults = dict(defaults)
        self.state: dict[Tensor, dict[str, Any]] = {}  # keyed by the parameter itself (by identity)
        self.param_groups: list[dict[str, Any]] = []
        groups = _ordered_list(params, type(self).__name__)
        if not groups:
            raise ValueError(f"{type(self).__name__} got an empty parameter list")
        if not isinstance(groups[0], dict):
            groups = [{"params": groups}]
        for group in groups:
            self.add_param_group(group)

    def add_param_group(self, group: dict[str, Any]) -> None:
        """Add a group of parameters with its own hyperparameters (missing ones from defaults)."""
        group = dict(group)
        params = group["params"]
        params = [params] if isinstance(params, Tensor) else _ordered_list(params, "param group")
        seen = {id(p) for g in self.param_groups for p in g["params"]}
        for p in params:
            if not isinstance(p, Tensor):
                raise TypeError(f"optimizer can only optimize Tensors, got {type(p).__name__}")
            if not p.is_leaf:
                raise ValueError("can't optimize a non-leaf tensor (one computed by an op); "
                                 "optimize the leaf it came from")
            if id(p) in seen:
                raise ValueError("a parameter appears twice in the optimizer's parameter groups")
            seen.add(id(p))
        group["params"] = params
        for key, value in self.defaults.items():
            group.setdefault(key, value)
        self.param_groups.append(group)

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Clear every parameter's gradient: drop it (None, the default) or fill it with zeros."""
        for group in self.param_groups:
            for p in group["params"]:
                if set_to_none:
                    grad, p.grad = p.grad, None
                    if grad is not None:
                        recycle(grad)  # a large one the next backward may compute into
                elif p.grad is not None:
                    p.grad.zero_()

    def step(self, closure: Callable[[], Any] | None = None) -> Any:
        """Update every parameter that has a gradient; returns `closure()` if one is given.

        `closure` (optional) recomputes the loss with gradients enabled, as in PyTorch.
        """
        loss = None
        if closure is not None:
            with enable_grad():
                loss = closure()
        with no_grad():  # an update is not part of any model: never record it
            for group in self.param_groups:
                for p in group["params"]:
                    if p.grad is None:
                        continue  # unused this step (or frozen): leave it and its state alone
                    grad = p.grad.data
                    if grad.shape != p.data.shape:
                        raise RuntimeError(
                            f"{type(self).__name__}.step: a parameter of shape {p.shape} has a "
                            f"gradient of shape {tuple(grad.shape)}"
                        )
                    state = self.state.get(p)
                    if state is None:
                        state = self.state[p] = self._init_state(p.data, group)
                    self._update(p.data, grad, state, group)  # in place on the arrays
                    p._bump_version()  # so a graph that saved p before the update refuses backward
        return loss

    # ---- what a subclass defines -------------------------------------------------------------
    def _init_state(self, param, group: dict[str, Any]) -> dict[str, Any]:
        """The state a parameter starts with (e.g. zeroed moment tensors); empty by default."""
        return {}

    @abstractmethod  # each optimizer's own rule: a subclass without one cannot be constructed
    def _update(self, param, grad, state: dict[str, Any], group: dict[str, Any]) -> None:
        """Change `param` (and `state`) in place from `grad`; the arrays, not tensors."""

    # ---- checkpoints -------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """`{"state": {index: {...}}, "param_groups": [{..., "params": [index, ...]}]}`.

        Parameters are numbered 0, 1, ... in group order, so the dict does not depend on object
        identity and loads into a new optimizer over new (same-shaped) parameters. As in PyTorch,
        state tensors are shared, not copied: `minigt.save` it (or deep-copy it) for a snapshot.
        A tensor-parallel parameter's state is gathered whole (collective), as its value is in
        Module.state_dict(), so a checkpoint resumes at any tensor-parallel size.
        """
        index: dict[int, int] = {}
        groups = []
        for group in self.param_groups:
            packed = {key: value for key, value in group.items() if key != "params"}
            packed["params"] = [index.setdefault(id(p), len(index)) for p in group["params"]]
            groups.append(packed)
        state = {index[id(p)]: {key: _whole(p, value) for key, value in s.items()}
                 for p, s in self.state.items() if id(p) in index}
        return {"state": state, "param_groups": groups}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore hyperparameters and state saved by `state_dict()` (copied onto each parameter's
        device and dtype). Checks everything before changing anything."""
        name = type(self).__name__
        saved_groups = state_dict["param_groups"]
        if len(saved_groups) != len(self.param_groups):
            raise ValueError(f"{name}.load_state_dict: the state dict has {len(saved_groups)} "
                             f"parameter groups, this optimizer has {len(self.param_groups)}")
        param_at: dict[int, Tensor] = {}
        for i, (saved, group) in enumerate(zip(saved_groups, self.param_groups)):
            if len(saved["params"]) != len(group["params"]):
                raise ValueError(f"{name}.load_state_dict: parameter group {i} has "
                                 f"{len(saved['params'])} parameters in the state dict but "
                                 f"{len(group['params'])} in this optimizer")
            param_at.update(zip((int(k) for k in saved["params"]), group["params"]))
        state = {}
        for key, saved_state in state_dict["state"].items():
            p = param_at.get(int(key))
            if p is None:
                raise ValueError(f"{name}.load_state_dict: state for parameter {key}, which is in "
                                 "no parameter group of the state dict")
            state[p] = {k: _state_value_for(p, k, v, int(key)) for k, v in saved_state.items()}
        for saved, group in zip(saved_groups, self.param_groups):
            group.update({k: v for k, v in saved.items() if k != "params"})
        self.state = state

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__} ("]
        for i, group in enumerate(self.param_groups):
            settings = ", ".join(f"{k}={v}" for k, v in group.items() if k != "params")
            lines.append(f"  group {i}: {len(group['params'])} params, {settings}")
        return "\n".join(lines + [")"])


def _ordered_list(params: Iterable, where: str) -> list:
    if isinstance(params, Tensor):
        raise TypeError(f"{where}: params must be an iterable of tensors (e.g. "
                        "model.parameters() or [w, b]), not a single tensor")
    if isinstance(params, (set, frozenset)):
        # state_dict() numbers parameters in order, so the order must be the same every run
        raise TypeError(f"{where}: params must be an ordered collection (a list), not a set")
    return list(params)


def check_non_negative(optimizer: str, **hyperparameters: float) -> None:
    """Refuse a negative lr, momentum, eps, ...: a typo that would otherwise train backwards."""
    for name, value in hyperparameters.items():
        if value < 0.0:
            raise ValueError(f"{optimizer}: invalid {name} {value} (must be >= 0)")


# elements: a scratch this small stays in cache and is allocated once. An SGD step in pieces
# (before SGD took BLAS's axpy) on 13.4M float32 took 7.0 / 5.3 / 4.6 ms in pieces of 64K / 128K
# / 256K at 2 threads (10.0 / 9.3 / 9.6 at one; Adam 2 threads 29 / 26 / 27, one 40 / 41 / 46) on
# the 2-core Intel VM: 128K it is.
_CHUNK = 1 << 17
_SHARE = 4 * _CHUNK  # elements: below this, another thread would cost more than it saves
_helpers: dict = {}  # helper-thread count -> the pool of `each_piece`'s helper threads


def each_piece(work: Callable, target, *others) -> None:
    """work(target, *others, scratch) over matching pieces of same-shaped arrays (None passes
    through). On the CPU, large contiguous arrays come in 128K-element pieces with one small reused
    scratch, so an update needs no temporary as large as the parameter (a fresh mapping and its
    page faults, every step); the pieces are shared among `update_threads()` threads, as NumPy's
    own loops use one (work must be elementwise: the numbers do not depend on the sharing).
    Otherwise `work` gets the whole arrays once, with a scratch like `target`."""
    arrays = (target, *others)
    xp = array_module(target)
    if xp is not np or target.size <= _CHUNK or not all(a is None or a.flags.c_contiguous for a in arrays):
        work(*arrays, xp.empty_like(target))
        return
    flat = [None if a is None else a.reshape(-1) for a in arrays]

    def run(start: int, stop: int) -> None:  # one thread's share, with its own scratch
        scratch = np.empty(_CHUNK, target.dtype)
        for lo in range(start, stop, _CHUNK):
            hi = min(lo + _CHUNK, stop)
            work(*[None if a is None else a[lo:hi] for a in flat], scratch[:hi - lo])

    shares = max(1, min(update_threads(), target.size // _SHARE))
    if shares == 1:
        run(0, target.size)
        return
    chunks = -(-target.size // _CHUNK)  # shares of whole chunks, the last share the shortest
    bounds = [min(target.size, -(-chunks * i // shares) * _CHUNK) for i in range(shares + 1)]
    helpers = _pool(shares - 1)
    shared = [helpers.submit(run, bounds[i], bounds[i + 1]) for i in range(1, shares)]
    run(bounds[0], bounds[1])
    for share in shared:
        share.result()  # re-raises a helper's error here


def update_threads() -> int:
    """Threads a large update is shared among: OMP_NUM_THREADS (what NumPy's BLAS reads), else
    every CPU this process may run on."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    if value.isdigit() and int(value) > 0:
        return int(value)
    return blas_setup.cpu_count()


def _pool(workers: int) -> ThreadPoolExecutor:
    """`workers` helper threads for `each_piece`, made on first use (idle threads cost nothing)."""
    if workers not in _helpers:
        _helpers[workers] = ThreadPoolExecutor(workers, thread_name_prefix="minigt-update")
    return _helpers[workers]


_SMALL = 1 << 12  # elements: see `is_small`


def is_small(array) -> bool:
    """Whether `array` is small enough (4K elements) for the textbook update, which makes a dozen
    temporaries its size: they then come cached from the allocator's free lists and the step costs
    what an in-place one does. Past that they cost memory traffic, and from 128 KiB each is a
    fresh mapping, page faults and all (an Adam step on 64K float32 elements: about 5x slower)."""
    return array.size <= _SMALL


def add_scaled_(target, alpha: float, x) -> None:
    """target += alpha·x in place: in one pass through BLAS where it can (see backends.blas: it
    rounds once, not twice), else piece by piece (see `each_piece`)."""
    if blas.axpy_(alpha, x, target):
        return
    xp = array_module(target)

    def add(part, x_part, scratch):
        part += xp.multiply(x_part, alpha, out=scratch)

    each_piece(add, target, x)


def axpy(alpha: float, x, y):
    """alpha·x + y as one new array (one temporary, where `alpha * x + y` makes two)."""
    xp = array_module(x)
    out = xp.multiply(x, alpha, out=xp.empty_like(x))  # out=: a 0-d result stays an array
    out += y
    return out


def _whole(param: Tensor, value: Any) -> Any:
    """A state entry as state_dict() gives it: a tensor shaped like a parameter is the whole of
    it (`Parameter.full_value`); anything else (a step count) as it is."""
    if isinstance(value, Tensor) and isinstance(param, Parameter) and \
            value.shape == param.data.shape:  # (this rank's part of a split parameter)
        return param.full_value(value)
    return value


def _state_value_for(param: Tensor, key: str, value: Any, index: int) -> Any:
    """A loaded state entry as this optimizer keeps it: arrays become owned tensors shaped,
    typed and placed like the parameter; numbers (a step count) stay as they are."""
    if not isinstance(value, (Tensor, *ARRAY_TYPES)):
        return value
    array = value.data if isinstance(value, Tensor) else value
    if isinstance(param, Parameter):  # a split parameter keeps its own slice of the whole
        array = param.local_part(array)
    if tuple(array.shape) != tuple(param.data.shape):  # this rank's part of a split parameter
        raise ValueError(f"optimizer load_state_dict: state {key!r} of parameter {index} has shape "
                         f"{tuple(array.shape)}, but the parameter has shape {param.shape}")
    array = to_device(array, device_of(param.data))
    # astype copies, so the loaded optimizer never shares arrays with the dict it came from
    return Tensor._make(array.astype(param.dtype, copy=True), False, None)
