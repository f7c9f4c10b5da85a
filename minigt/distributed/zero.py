"""A sharded optimizer (ZeRO stages 1 and 2): each rank of the data group updates 1/N of the model.

Plain data parallelism keeps the whole optimizer state on every rank, and every rank repeats the
same update. Here the parameters live back to back in flat buffers -- the same layout as their
gradient buckets (gradsync.py), each parameter's `.data` a view of its place -- and every rank
owns one contiguous part of each buffer (the `shard_sizes` split; a part may be empty):

    backward   each bucket is reduce-scattered: this rank receives the sum of its part only
               (or, where Linear layers were fed few rows, all ranks' rows of g and x are
               gathered and this rank multiplies out its part alone: gradsync.Factors)
    step()     the ordinary optimizer (SGD, Adam, ...) updates this rank's parts: 1/N of the
               work, and 1/N of its state (momentum, Adam's moments) is all a rank keeps
    then       the updated parts are all-gathered into every rank's buffers

A reduce-scatter and an all-gather move the same bytes as the one all-reduce they replace;
gathered rows move fewer.
`state_dict()` gives the state per parameter, whole, exactly as the unsharded optimizer's, so a
checkpoint resumes at any rank count, with or without sharding.
"""
from __future__ import annotations

from typing import Any, Iterable

from ..autograd import no_grad
from ..nn.parameter import Parameter
from ..tensor import Tensor
from . import collectives, gradsync


class ShardedOptimizer:
    """`optimizer_class(params, **options)`, with its state and updates split over the data
    group. Make it after the model is on its device and dtype (it takes the parameters' storage).

    >>> opt = dist.ShardedOptimizer(model.parameters(), minigt.optim.Adam, lr=1e-3)
    """

    def __init__(self, params: Iterable, optimizer_class, **options):
        self.params = list(params)
        if not self.params or not all(isinstance(p, Tensor) for p in self.params):
            raise TypeError("ShardedOptimizer: params must be a non-empty list of tensors "
                            "(parameter groups as dicts are not supported)")
        # backward reaches the last layers first: lay the buckets out in that order
        self.buckets = gradsync.adopt(self.params[::-1], scatter=True)
        self.flats = [self._take_storage(bucket) for bucket in self.buckets]
        self.parts = [Parameter(Tensor._make(flat[bucket.part], False, None))
                      for bucket, flat in zip(self.buckets, self.flats)]
        self.optimizer = optimizer_class(self.parts, **options)
        self.param_groups = self.optimizer.param_groups  # lr schedulers change these

    @staticmethod
    def _take_storage(bucket):
        """A flat buffer holding the bucket's parameters; each parameter's data becomes a view."""
        flat = bucket.xp.empty_like(bucket.flat)
        for slot, param in enumerate(bucket.params()):
            view = bucket.view(flat, slot)
            view[...] = param.data
            param.data = view
        return flat

    def zero_grad(self, set_to_none: bool = True) -> None:
        """Forget the summed gradient parts (set_to_none is accepted for PyTorch's signature)."""
        for bucket in self.buckets:
            bucket.grad_part = None
            for param in bucket.params():
                param.grad = None

    def step(self, closure=None):
        """Update this rank's parts, then all-gather them into every rank's parameters."""
        for bucket, part in zip(self.buckets, self.parts):
            grad = _with_whole_grads(bucket, bucket.grad_part)
            part.grad = None if grad is None else Tensor._make(grad, False, None)
        loss = self.optimizer.step(closure)
        with no_grad():
            for bucket, flat in zip(self.buckets, self.flats):
                collectives.all_gather_in_place(flat, bucket.counts, group=bucket.group)
                for param in bucket.params():
                    param._bump_version()  # graphs that saved the old values refuse backward
        return loss

    # ---- checkpoints: the unsharded optimizer's format ----------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Per parameter and whole (gathered: collective), as `optimizer_class`'s state_dict()."""
        index = {id(p): i for i, p in enumerate(self.params)}
        state: dict[int, dict] = {}
        for bucket, part in zip(self.buckets, self.parts):
            for key, value in self.optimizer.state.get(part, {}).items():
                if isinstance(value, Tensor):  # a part of a flat state: gather, cut per slot
                    whole = bucket.xp.empty_like(bucket.flat)
                    whole[bucket.part] = value.data
                    collectives.all_gather_in_place(whole, bucket.counts, group=bucket.group)
                for slot, param in enumerate(bucket.params()):
                    entry = state.setdefault(index[id(param)], {})
                    if isinstance(value, Tensor):
                        value_here = Tensor._make(bucket.view(whole, slot), False, None)
                        entry[key] = _whole(param, value_here)
                    else:
                        entry[key] = value  # a step count: the same on every rank
        group = {k: v for k, v in self.param_groups[0].items() if k != "params"}
        numbers = list(range(len(self.params)))
        return {"state": state, "param_groups": [{**group, "params": numbers}]}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore a state dict of this optimizer, or of the unsharded one, from any rank count."""
        (saved_group,) = state_dict["param_groups"]
        if len(saved_group["params"]) != len(self.params):
            raise ValueError(f"ShardedOptimizer.load_state_dict: the state dict has "
                             f"{len(saved_group['params'])} parameters, this optimizer "
                             f"{len(self.params)}")
        saved = {int(k): v for k, v in state_dict["state"].items()}
        index = {id(p): i for i, p in enumerate(self.params)}
        state = {}
        for bucket, part in zip(self.buckets, self.parts):
            entries = [saved.get(index[id(p)]) for p in bucket.params()]
            if all(e is None for e in entries):
                continue
            if any(e is None for e in entries) or len({tuple(sorted(e)) for e in entries}) > 1:
                raise ValueError("ShardedOptimizer.load_state_dict: parameters that share a "
                                 "bucket must all have the same kinds of state, or none")
            state[part] = {key: self._part_of(bucket, part, [e[key] for e in entries])
                           for key in entries[0]}
        self.param_groups[0].update({k: v for k, v in saved_group.items() if k != "params"})
        self.optimizer.state = state

    @staticmethod
    def _part_of(bucket, part, values: list):
        """This rank's part of one kind of state, from each slot's whole value."""
        if not isinstance(values[0], Tensor) and not hasattr(values[0], "shape"):
            return values[0]  # a step count
        flat = bucket.xp.empty_like(bucket.flat)
        for slot, (param, value) in enumerate(zip(bucket.params(), values)):
            array = value.data if isinstance(value, Tensor) else value
            if isinstance(param, Parameter):
                array = param.local_part(array)  # a tensor-parallel slice keeps its own
            bucket.view(flat, slot)[...] = bucket.xp.asarray(array)
        return Tensor._make(flat[bucket.part].copy(), False, None)

    def __repr__(self) -> str:
        return f"ShardedOptimizer({self.optimizer!r})"


def _with_whole_grads(bucket, grad_part):
    """`grad_part` plus this rank's part of any `.grad` that backward set itself: a parameter
    that met sharded compute through another op (a cast, say) has its gradient summed in the
    graph, so it never came to the bucket as a share."""
    params = bucket.params()
    if all(p.grad is None for p in params):
        return grad_part
    flat = bucket.xp.zeros_like(bucket.flat)
    for slot, param in enumerate(params):
        if param.grad is not None:
            bucket.view(flat, slot)[...] = param.grad.data
    mine = flat[bucket.part]
    return mine if grad_part is None else grad_part + mine


def _whole(param, value: Tensor) -> Tensor:
    """A state value as the unsharded optimizer saves it: a copy, whole over tensor parallelism."""
    if isinstance(param, Parameter):
        return param.full_value(Tensor._make(value.data.copy(), False, None))
    return Tensor._make(value.data.copy(), False, None)
