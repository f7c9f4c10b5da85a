"""Fully sharded data parallelism (ZeRO stage 3, FSDP): parameters kept as Shard(0) rows.

Data parallelism keeps a whole copy of every parameter on every rank. `fully_shard(module)`
keeps only this rank's rows of each (a `ShardedParameter`: a DTensor placed Shard(0) over the
data group, so the ordinary optimizer updates the rows and keeps state for them alone), and
makes the module's forward a unit that borrows the whole parameters just while it runs:

    forward    all-gather the unit's parameters (whole, placed Replicate), run the module
               without recording its graph, drop them: only the unit's output is kept
    backward   all-gather them again, run the module once more with its graph, and backward
               through it: each weight's gradient share is reduce-scattered straight to the
               rows that own it (see dtensor.ReplicatedUse), and the gathered values are freed

A unit moves all its parameters in one call each way: one all-gather of their rows packed back
to back (this rank's rows of every parameter, then the next rank's), and one reduce-scatter of
their gradient shares when its backward is done (`_Unit.flush`; the model's own unit, which does
not recompute, at the end of backward). Per step each parameter byte crosses the network three
times (two all-gathers, one reduce-scatter: 3(N-1)/N of the parameter bytes), against two for an
all-reduce; the price of memory is one more forward of each unit in backward. A Linear unit fed
fewer rows than it has outputs moves its inputs instead and never gathers its weight
(fsdp_linear.py). Call `fully_shard` on the blocks first, then on the model (which then gathers
only what its blocks do not); inside `sharded_init()` no rank ever holds the model whole.
"""
from __future__ import annotations

import contextlib
import math

from .. import autograd, creation
from ..autograd import Function, accumulate_into, enable_grad, is_grad_enabled, no_grad
from ..backends import array_module
from ..nn import Module, init
from ..nn.parameter import Parameter
from ..tensor import Tensor
from . import collectives, fsdp_linear, gradsync
from .dtensor import DTensor, GatherShards, group, local_range, standard_sizes
from .placement import Replicate, Shard, shard_range


class ShardedParameter(DTensor, Parameter):
    """A parameter of which this rank keeps its Shard(0) rows over the data group; state dicts
    carry the whole value, so checkpoints load at any rank count, sharded or not."""

    __slots__ = ()

    @classmethod
    def of(cls, param: Parameter) -> ShardedParameter:
        """This rank's rows of `param` (copied), as a ShardedParameter."""
        sizes, (start, stop) = _rows_of(param)
        _partly_drawn.pop(id(param), None)
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


def _rows_of(param) -> tuple:
    """(every rank's row count, this rank's [start, stop)) of a parameter to be sharded."""
    sizes = standard_sizes(param.shape[0])
    return sizes, local_range(sizes)


_partly_drawn: dict = {}  # id -> parameter whose other ranks' rows sharded_init left unwritten


@contextlib.contextmanager
def sharded_init():
    """Build a model to be fully sharded without holding it whole on any rank: within the block,
    minigt.nn.init draws each parameter whole and in order (the values of one process) but
    writes only this rank's rows; every module built inside must be fully sharded before the
    block ends (checked). Parameters start as zeros, which cost no memory until written."""
    def rows_to_keep(tensor):
        if not isinstance(tensor, Parameter) or isinstance(tensor, DTensor) or tensor.ndim == 0:
            return None
        _partly_drawn[id(tensor)] = tensor
        return _rows_of(tensor)[1]  # the rows ShardedParameter.of will take

    if init.rows_to_keep is not None:
        raise RuntimeError("sharded_init: already inside a sharded_init block")
    init.rows_to_keep = rows_to_keep
    try:
        yield
    finally:
        init.rows_to_keep = None
        left = [p.shape for p in _partly_drawn.values()]
        _partly_drawn.clear()
    if left:
        raise RuntimeError(
            f"sharded_init: {len(left)} parameter(s) of shape {', '.join(map(str, left[:4]))} hold "
            "only this rank's rows but were not fully sharded: call dist.fully_shard on the "
            "modules holding them inside the `with` block")


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
        self.shares: dict = {}  # id(rows) -> this rank's share of the whole parameter's gradient
        self.run = type(module).forward.__get__(module)  # the module's own forward

    def forward(self, *inputs):
        if fsdp_linear.gathers_inputs(self.module, self.owned, inputs):
            return fsdp_linear.linear(self.module, inputs[0])
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
        for (owner, name, rows), whole in zip(self.owned, self.gather()):
            borrowed = UnitGathered.apply_local((rows,), dict(whole=whole, unit=self,
                                                              sizes=rows.sizes))
            # shadows the rows
            object.__setattr__(owner, name, DTensor._wrap(borrowed, Replicate(), rows.shape))
        try:
            return self.run(*inputs)
        finally:
            for owner, name, _ in self.owned:
                object.__delattr__(owner, name)

    def _layout(self):
        """Per rank, the element count of its rows of every owned parameter, back to back."""
        rows = [r for _, _, r in self.owned]
        per_row = [math.prod(r.shape[1:]) for r in rows]
        return rows, per_row, [sum(r.sizes[k] * n for r, n in zip(rows, per_row))
                               for k in range(group().size)]

    def gather(self) -> list:
        """Every owned parameter's whole value, from one all-gather of all their rows."""
        rows, per_row, counts = self._layout()
        if not rows:
            return []
        xp = array_module(rows[0].data)
        flat = xp.empty(sum(counts), rows[0].data.dtype)
        at = sum(counts[:group().rank])
        for r in rows:
            flat[at:at + r.data.size] = r.data.reshape(-1)
            at += r.data.size
        collectives.all_gather_in_place(flat, counts, group=group())
        wholes = [xp.empty(r.shape, r.data.dtype) for r in rows]
        at = 0
        for k in range(group().size):
            for r, n, whole in zip(rows, per_row, wholes):
                start, stop = shard_range(r.sizes, k)
                whole[start:stop] = flat[at:at + (stop - start) * n].reshape(whole[start:stop].shape)
                at += (stop - start) * n
        return wholes

    def collect(self, rows: Tensor, share) -> None:
        """Take this rank's share of the gradient of `rows`' whole parameter (see flush): an
        array, or the rows it is made of (gradsync.Factors, from a Linear)."""
        if not self.shares:
            pending.append(self)
        self.shares.setdefault(id(rows), []).append(share)

    def flush(self) -> None:
        """Sum the collected shares over the data group and add each parameter's rows of the
        sum to its gradient. Parameters whose shares all came as factors, if gathering their
        rows pays (gradsync's test), get their rows of gᵀx computed from all ranks' rows; the
        rest go in one reduce-scatter, packed as in `gather`."""
        if not self.shares:
            return
        taken = [(r, self.shares[id(r)]) for _, _, r in self.owned if id(r) in self.shares]
        self.shares = {}
        factored = [(r, s) for r, s in taken if all(isinstance(f, gradsync.Factors) for f in s)]
        if factored and gradsync.gathering_pays([f for _, s in factored for f in s],
                                                sum(math.prod(r.shape) for r, _ in factored)):
            self._sum_by_gathering(factored)
            taken = [(r, s) for r, s in taken if not any(r is f for f, _ in factored)]
        if taken:
            self._reduce_scatter([(r, sum(f.product() if isinstance(f, gradsync.Factors) else f
                                          for f in s)) for r, s in taken])

    @staticmethod
    def _sum_by_gathering(factored: list) -> None:
        """Each parameter's rows of gᵀx (or Σ g, a bias) from every rank's rows of g and x."""
        gathered = gradsync.gather_rows([shares for _, shares in factored], group())
        for (rows, _), (left, right) in zip(factored, gathered):
            start, stop = local_range(rows.sizes)
            mine = left[:, start:stop]
            part = mine.sum(axis=0) if right is None else mine.T @ right
            accumulate_into(rows, part, owned=True)

    @staticmethod
    def _reduce_scatter(taken: list) -> None:
        """[(rows, whole share)]: the shares summed in one reduce-scatter, each rank its rows."""
        per_row = [math.prod(r.shape[1:]) for r, _ in taken]
        xp = array_module(taken[0][1])
        counts = [sum(r.sizes[k] * n for (r, _), n in zip(taken, per_row))
                  for k in range(group().size)]
        flat = xp.empty(sum(counts), taken[0][1].dtype)
        at = 0
        for k in range(group().size):
            for (r, share), n in zip(taken, per_row):
                start, stop = shard_range(r.sizes, k)
                flat[at:at + (stop - start) * n] = share[start:stop].reshape(-1)
                at += (stop - start) * n
        mine = collectives.reduce_scatter(flat, 0, counts, group=group())
        at = 0
        for r, _ in taken:
            accumulate_into(r, mine[at:at + r.data.size].reshape(r.data.shape), owned=True)
            at += r.data.size


pending: list = []  # units holding gradient shares not yet summed
_rerunning = 0  # > 0 while a unit's backward runs its own inner backward


def flush_pending() -> None:
    """Sum every unit's collected shares when the (outer) backward ends: autograd runs it."""
    while pending and not _rerunning:
        pending.pop().flush()


autograd.post_backward_hooks.append(flush_pending)


class UnitGathered(GatherShards):
    """A fully sharded parameter's rows -> its whole value, gathered with the rest of its unit;
    shares of its gradient from sharded compute go to the unit (`collect`)."""

    def forward(self, rows, whole, unit, sizes):
        self.dim, self.sizes, self.unit = 0, sizes, unit
        return whole

    def collect(self, g) -> None:
        self.unit.collect(self.inputs[0], g)


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
        global _rerunning
        _rerunning += 1
        try:
            autograd.backward(out, g)
        finally:
            _rerunning -= 1
        if self.unit in pending:  # its shares are complete: sum them now, not at the end
            pending.remove(self.unit)
            self.unit.flush()
        leaves = [t for t in inputs if isinstance(t, Tensor)]
        return tuple(t.grad.data if t.grad is not None else None for t in leaves) + \
            (None,) * (len(self.inputs) - n)


def _fresh_leaf(t: Tensor) -> Tensor:
    """`t` cut from the graph (placement kept), requiring grad where it did."""
    leaf = t.detach()
    return leaf.requires_grad_() if t.requires_grad else leaf


__all__ = ["ShardedParameter", "fully_shard", "sharded_init"]
