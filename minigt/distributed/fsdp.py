"""Fully sharded data parallelism (ZeRO stage 3, FSDP): parameters kept as Shard(0) rows.

Data parallelism keeps a whole copy of every parameter on every rank. `fully_shard(module)`
keeps only this rank's rows of each (a `ShardedParameter`: a DTensor placed Shard(0) over the
data group, so the ordinary optimizer updates the rows and keeps state for them alone), and
makes the module's forward a unit that borrows the whole parameters just while it runs:

    forward    all-gather the unit's parameters (redistribute to Replicate), run the module
               without recording its graph, drop them: only the unit's output is kept
    backward   all-gather them again, run the module once more with its graph, and backward
               through it: each weight's gradient share is reduce-scattered straight to the
               rows that own it (see dtensor.ReplicatedUse), and the gathered values are freed

Per step each parameter byte crosses the network three times (two all-gathers, one
reduce-scatter: 3(N-1)/N of the parameter bytes), against two for an all-reduce; the price of
memory is one more forward of each unit in backward. Call `fully_shard` on the blocks first,
then on the model (which then gathers only what its blocks do not), after moving the model.
"""
from __future__ import annotations

from .. import autograd, creation
from ..autograd import Function, enable_grad, is_grad_enabled, no_grad
from ..nn import Module
from ..nn.parameter import Parameter
from ..tensor import Tensor
from . import collectives
from .dtensor import DTensor, group, local_range, redistribute, standard_sizes
from .placement import Replicate, Shard


class ShardedParameter(DTensor, Parameter):
    """A parameter of which this rank keeps its Shard(0) rows over the data group; state dicts
    carry the whole value, so checkpoints load at any rank count, sharded or not."""

    __slots__ = ()

    @classmethod
    def of(cls, param: Parameter) -> ShardedParameter:
        """This rank's rows of `param` (copied), as a ShardedParameter."""
        sizes = standard_sizes(param.shape[0])
        start, stop = local_range(sizes)
        rows = cls._make(param.data[start:stop].copy(), param.requires_grad, None)
        rows.placement, rows.global_shape, rows.sizes = Shard(0), param.shape, sizes
        return rows

    def full_value(self, part: Tensor | None = None) -> Tensor:
        """The whole parameter (or the whole of `part`, e.g. its optimizer state): collective."""
        rows = self.data if part is None else part.data
        return Tensor._make(collectives.all_gather(rows, 0, self.sizes, group=group()), False, None)

    def local_part(self, whole):
        """This rank's rows of a whole value being loaded."""
        if tuple(whole.shape) != self.shape:
            return whole  # let the loader report the mismatch against the whole shape
        start, stop = local_range(self.sizes)
        return whole[start:stop]

    @staticmethod
    def combine_parts(value, op: str):
        """Rows of one weight: this rank's part of a norm is combined over the data group."""
        return collectives.all_reduce_number(value, op, group=group())


def fully_shard(module: Module) -> Module:
    """Keep `module`'s own parameters (those of no fully sharded submodule) as Shard(0) rows
    over the data group, gathered whole only while its forward (and backward) runs."""
    owned = []
    for owner in _modules_not_sharded_apart(module):
        for name, param in list(owner._parameters.items()):
            if param is None or isinstance(param, ShardedParameter) or param.ndim == 0:
                continue  # a 0-d parameter has no rows: it stays whole (replicated)
            rows = ShardedParameter.of(param)
            owner.register_parameter(name, rows)
            owned.append((owner, name, rows))
    inner = any("_fully_sharded" in m.__dict__ for m in _all_modules(module) if m is not module)
    unit = _Unit(module, owned, recompute=not inner)
    object.__setattr__(module, "forward", unit.forward)
    object.__setattr__(module, "_fully_sharded", unit)
    return module


def _modules_not_sharded_apart(module: Module):
    """`module` and its submodules, except those a `fully_shard` call took (and theirs)."""
    yield module
    for child in module._modules.values():
        if child is not None and "_fully_sharded" not in child.__dict__:
            yield from _modules_not_sharded_apart(child)


def _all_modules(module: Module):
    yield module
    for child in module._modules.values():
        if child is not None:
            yield from _all_modules(child)


class _Unit:
    """A fully sharded module's forward: its whole parameters borrowed for the call.

    A unit without fully sharded units inside runs as described above (`recompute`). One with
    such units inside (the model around its blocks) keeps its own gathered parameters until
    backward instead: running it again would run all of its units again."""

    def __init__(self, module: Module, owned: list, recompute: bool):
        self.module, self.owned, self.recompute = module, owned, recompute
        self.run = type(module).forward.__get__(module)  # the module's own forward

    def forward(self, *inputs):
        if not (self.recompute and is_grad_enabled()):
            return self.call(inputs)
        rng_state = creation.generator().bit_generator.state  # recomputation draws the same
        with no_grad():
            out = self.call(inputs)
        if not isinstance(out, Tensor):
            raise TypeError(f"fully_shard: {type(self.module).__name__}.forward must return one "
                            f"tensor, got {type(out).__name__}")
        tensors = tuple(t for t in inputs if isinstance(t, Tensor))
        recorded = UnitForward.apply_local(tensors + tuple(rows for _, _, rows in self.owned),
                                           dict(unit=self, inputs=inputs, out=out,
                                                rng_state=rng_state))
        if isinstance(out, DTensor):
            return DTensor._wrap(recorded, out.placement, out.shape, out.sizes)
        return recorded

    def call(self, inputs):
        """The module's forward with each owned parameter's whole value in its place."""
        for owner, name, rows in self.owned:
            object.__setattr__(owner, name, redistribute(rows, Replicate()))  # shadows the rows
        try:
            return self.run(*inputs)
        finally:
            for owner, name, _ in self.owned:
                object.__delattr__(owner, name)


class UnitForward(Function):
    """y = unit(x), its graph not kept;  backward gathers the parameters again, reruns the unit
    with its graph and backward through it (the parameters' rows get their gradients there)."""

    def forward(self, *arrays, unit, inputs, out, rng_state):
        self.unit, self.given, self.rng_state = unit, inputs, rng_state
        return out.data

    def backward(self, g):
        n = sum(isinstance(t, Tensor) for t in self.given)
        again = iter(_fresh_leaf(t) for t in self.inputs[:n])
        inputs = [next(again) if isinstance(t, Tensor) else t for t in self.given]
        saved = creation.generator().bit_generator.state
        creation.generator().bit_generator.state = self.rng_state
        try:
            with enable_grad():
                out = self.unit.call(inputs)
        finally:
            creation.generator().bit_generator.state = saved
        autograd.backward(out, g)
        leaves = [t for t in inputs if isinstance(t, Tensor)]
        return tuple(t.grad.data if t.grad is not None else None for t in leaves) + \
            (None,) * (len(self.inputs) - n)


def _fresh_leaf(t: Tensor) -> Tensor:
    """`t` cut from the graph (placement kept), requiring grad where it did."""
    leaf = t.detach()
    return leaf.requires_grad_() if t.requires_grad else leaf


__all__ = ["ShardedParameter", "fully_shard"]
