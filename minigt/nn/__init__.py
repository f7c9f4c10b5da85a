"""minigt.nn: modules, layers, initialisers and losses in PyTorch's shape.

>>> import minigt.nn as nn
>>> model = nn.Sequential(nn.Linear(4, 16), nn.ReLU(), nn.Linear(16, 3))
>>> loss = nn.functional.cross_entropy(model(x), labels)
"""
from . import functional, init, utils
from .activation import GELU, Dropout, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from .attention import MultiheadAttention
from .containers import ModuleList, Sequential
from .linear import Embedding, Linear
from .loss import BCELoss, BCEWithLogitsLoss, CrossEntropyLoss, MSELoss
from .module import Module
from .normalization import LayerNorm
from .parameter import Parameter
from .transformer import TransformerEncoderLayer

__all__ = [
    "Module", "Parameter", "ModuleList", "Sequential", "Linear", "Embedding", "LayerNorm",
    "ReLU", "GELU", "Tanh", "Sigmoid", "Softmax", "LogSoftmax", "Dropout", "MultiheadAttention", "TransformerEncoderLayer",
    "CrossEntropyLoss", "MSELoss", "BCELoss", "BCEWithLogitsLoss",
    "functional", "init", "utils",
]
