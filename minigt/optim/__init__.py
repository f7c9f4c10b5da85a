"""Optimizers that update parameters from their gradients, and learning-rate schedules.

>>> opt = minigt.optim.AdamW(model.parameters(), lr=3e-4)
>>> loss.backward(); opt.step(); opt.zero_grad()
"""
from . import lr_scheduler
from .adam import Adam, AdamW
from .optimizer import Optimizer
from .sgd import SGD

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "lr_scheduler"]
