"""Every op of minigt, grouped by kind. `DIFFERENTIABLE` lists the public ops whose gradient
the property suite must check; `NON_DIFFERENTIABLE` those checked for their forward alone."""
from .comparison import all, any, argmax, argmin, eq, ge, gt, le, logical_not, lt, ne
from .elementwise import add, clamp, div, masked_fill, maximum, minimum, mul, pow, sub, where
from .unary import (
    abs, cast, clone, cos, exp, gelu, log, neg, relu, rsqrt, sigmoid, sin, sqrt, tanh,
)
from .indexing import getitem
from .linalg import matmul
from .reductions import (
    amax, amin, log_softmax, logsumexp, max, mean, min, softmax, std, sum, var,
)
from .shape import (
    broadcast_to, cat, chunk, expand, flatten, permute, reshape, split, squeeze, stack, transpose,
    unsqueeze, view,
)

DIFFERENTIABLE = (
    # elementwise
    "add", "sub", "mul", "div", "pow", "neg", "exp", "log", "sqrt", "rsqrt", "abs", "tanh",
    "sigmoid", "relu", "gelu", "sin", "cos", "clamp", "maximum", "minimum", "where",
    "masked_fill", "clone", "cast",
    # reductions
    "sum", "mean", "max", "min", "amax", "amin", "var", "std", "logsumexp", "softmax",
    "log_softmax",
    # shape and indexing
    "reshape", "view", "permute", "transpose", "flatten", "squeeze", "unsqueeze", "expand",
    "broadcast_to", "cat", "stack", "split", "chunk", "getitem",
    # linear algebra
    "matmul",
)
NON_DIFFERENTIABLE = (
    "eq", "ne", "lt", "le", "gt", "ge", "argmax", "argmin", "logical_not", "any", "all",
)
__all__ = list(DIFFERENTIABLE + NON_DIFFERENTIABLE)
