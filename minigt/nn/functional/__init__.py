"""minigt.nn.functional: the stateless functions behind the layers, in PyTorch's names.

Most are compositions of core ops (so the core gradient checks cover them). `FUSED` names those
written as their own `Function`, for speed or for a stable gradient; the property suite must hold
a gradient spec for each.
"""
from ...ops import gelu, log_softmax, relu, sigmoid, softmax, tanh
from .activations import dropout
from .attention import scaled_dot_product_attention
from .binary_losses import binary_cross_entropy, binary_cross_entropy_with_logits, logsigmoid
from .linear import embedding, linear, one_hot
from .losses import cross_entropy, mse_loss
from .normalization import layer_norm

FUSED = ("linear", "layer_norm", "cross_entropy", "logsigmoid", "binary_cross_entropy")

__all__ = [
    "linear", "embedding", "one_hot", "relu", "gelu", "tanh", "sigmoid", "softmax", "log_softmax",
    "dropout",
    "layer_norm", "scaled_dot_product_attention", "cross_entropy", "mse_loss", "logsigmoid",
    "binary_cross_entropy", "binary_cross_entropy_with_logits", "FUSED",
]
