"""Learning-rate schedules: each `step()` moves a counter and rewrites every group's `lr`.

>>> sched = CosineWithWarmup(opt, warmup_steps=100, total_steps=1000)
>>> for batch in data: loss.backward(); opt.step(); opt.zero_grad(); sched.step()
"""
from __future__ import annotations

import math
from abc import ABC, abstractmethod
from typing import Any, Callable, Sequence

from .optimizer import Optimizer


class LRScheduler(ABC):
    """Base class. `last_epoch` counts `step()` calls (0 right after construction, as in PyTorch);
    a subclass's `get_lr()` gives each group's lr for the current count from its `base_lrs`.

    `last_epoch=N` resumes, as in PyTorch: the schedule goes on at step N + 1 from each group's
    'initial_lr' (which an optimizer's loaded state dict holds)."""

    def __init__(self, optimizer: Optimizer, last_epoch: int = -1):
        name = type(self).__name__
        self.optimizer = optimizer
        for i, group in enumerate(_param_groups(optimizer, name)):
            if last_epoch == -1:
                # remembered in the group so a second scheduler (or a reload) sees the original lr
                group.setdefault("initial_lr", group["lr"])
            elif "initial_lr" not in group:
                raise KeyError(
                    f"{name}: resuming at last_epoch={last_epoch} needs each group's "
                    f"'initial_lr', and param_groups[{i}] has none; load the optimizer's "
                    "state_dict() first, or start afresh with last_epoch=-1"
                )
        self.base_lrs: list[float] = [group["initial_lr"] for group in optimizer.param_groups]
        self.last_epoch = last_epoch
        self.step()  # apply the schedule's value at step last_epoch + 1 (0 when new)

    @abstractmethod  # each schedule's own formula: a subclass without one cannot be constructed
    def get_lr(self) -> list[float]:
        """Each group's learning rate at step `self.last_epoch`."""

    def step(self) -> None:
        """Advance one step and write the new learning rates into the optimizer's groups."""
        self.last_epoch += 1
        self._last_lr = self.get_lr()
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr

    def get_last_lr(self) -> list[float]:
        """The learning rates the last `step()` set, one per group."""
        return list(self._last_lr)

    def state_dict(self) -> dict[str, Any]:
        """The schedule's progress (not its functions, which a checkpoint cannot hold)."""
        return {"last_epoch": self.last_epoch, "base_lrs": list(self.base_lrs),
                "last_lr": list(self._last_lr)}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Resume from `state_dict()`, and put the schedule's current lr back into the groups (so
        the order of loading the optimizer and the scheduler does not matter)."""
        if len(state_dict["base_lrs"]) != len(self.base_lrs):
            raise ValueError(f"{type(self).__name__}.load_state_dict: the state dict has "
                             f"{len(state_dict['base_lrs'])} groups, the optimizer has "
                             f"{len(self.base_lrs)}")
        self.last_epoch = int(state_dict["last_epoch"])
        self.base_lrs = list(state_dict["base_lrs"])
        self._last_lr = list(state_dict["last_lr"])
        for group, lr in zip(self.optimizer.param_groups, self._last_lr):
            group["lr"] = lr


def _param_groups(optimizer: Optimizer, scheduler: str) -> list[dict[str, Any]]:
    if not isinstance(optimizer, Optimizer):
        raise TypeError(f"{scheduler} needs a minigt.optim.Optimizer, "
                        f"got {type(optimizer).__name__}")
    return optimizer.param_groups


class LambdaLR(LRScheduler):
    """lr = base_lr · f(step), with one function for all groups or one per group."""

    def __init__(self, optimizer: Optimizer,
                 lr_lambda: Callable[[int], float] | Sequence[Callable[[int], float]],
                 last_epoch: int = -1):
        groups = len(_param_groups(optimizer, "LambdaLR"))
        lambdas = list(lr_lambda) if isinstance(lr_lambda, (list, tuple)) else [lr_lambda] * groups
        if len(lambdas) != groups:
            raise ValueError(f"LambdaLR: {len(lambdas)} lr_lambdas for {groups} parameter groups")
        self.lr_lambdas = lambdas
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [base * f(self.last_epoch) for base, f in zip(self.base_lrs, self.lr_lambdas)]


class CosineWithWarmup(LRScheduler):
    """Linear warm-up from 0 to base_lr over `warmup_steps`, then a half cosine down to `min_lr`
    at `total_steps` (and `min_lr` after):  lr = min_lr + (base_lr − min_lr)·(1 + cos(π·s))/2,
    with s = (step − warmup_steps)/(total_steps − warmup_steps) the progress of the decay."""

    def __init__(self, optimizer: Optimizer, warmup_steps: int, total_steps: int,
                 min_lr: float = 0.0, last_epoch: int = -1):
        if not 0 <= warmup_steps <= total_steps:
            raise ValueError(f"CosineWithWarmup: need 0 <= warmup_steps <= total_steps, got "
                             f"warmup_steps={warmup_steps}, total_steps={total_steps}")
        self.warmup_steps, self.total_steps, self.min_lr = warmup_steps, total_steps, min_lr
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        step = self.last_epoch
        if step < self.warmup_steps:
            return [base * step / self.warmup_steps for base in self.base_lrs]
        if step >= self.total_steps:
            return [self.min_lr for _ in self.base_lrs]
        progress = (step - self.warmup_steps) / (self.total_steps - self.warmup_steps)
        cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
        return [self.min_lr + (base - self.min_lr) * cosine for base in self.base_lrs]


class StepLR(LRScheduler):
    """lr = base_lr · gamma^⌊step / step_size⌋: multiplied by `gamma` every `step_size` steps."""

    def __init__(self, optimizer: Optimizer, step_size: int, gamma: float = 0.1,
                 last_epoch: int = -1):
        if not isinstance(step_size, int) or step_size < 1:
            raise ValueError(f"StepLR: step_size must be a positive int, got {step_size!r}")
        self.step_size, self.gamma = step_size, gamma
        super().__init__(optimizer, last_epoch)

    def get_lr(self) -> list[float]:
        return [base * self.gamma ** (self.last_epoch // self.step_size) for base in self.base_lrs]
