"""Scaled dot-product attention, built from core ops (matmul, add, softmax, dropout), so the core
gradient checks cover it. Masks are turned into one additive float mask (0 or -inf)."""
from __future__ import annotations

import math

import numpy as np

from ... import backends
from ...backends import array_module
from ...ops import matmul, softmax
from ...tensor import Tensor
from .activations import dropout


def additive_mask(mask: Tensor, dtype, true_means_keep: bool) -> Tensor:
    """A float mask to add to attention scores: bool masks become 0 (attend) or -inf (don't);
    float masks are cast to `dtype` (differentiably). PyTorch's two APIs read bool masks
    oppositely: True means "attend" for scaled_dot_product_attention, "masked out" for
    MultiheadAttention."""
    if mask.dtype.kind != "b":
        return mask.to(dtype)
    xp = array_module(mask.data)
    blocked = ~mask.data if true_means_keep else mask.data
    return Tensor._make(xp.where(blocked, -np.inf, 0.0).astype(dtype), False, None)


def causal_mask(query_len: int, key_len: int, dtype, like: Tensor) -> Tensor:
    """-inf above the diagonal: query i attends keys 0..i (aligned at the top-left, as PyTorch)."""
    xp = array_module(like.data)
    above = xp.triu(xp.ones((query_len, key_len), dtype=bool), k=1)
    return Tensor._make(xp.where(above, -np.inf, 0.0).astype(dtype), False, None)


def attention(query: Tensor, key: Tensor, value: Tensor, mask: Tensor | None = None,
              dropout_p: float = 0.0, scale: float | None = None) -> tuple[Tensor, Tensor]:
    """(softmax(q kᵀ · scale + mask) v, the attention weights); `mask` is additive.

    A query whose keys are all masked out gets zero weights (not softmax's 0/0 = NaN, which would
    also poison every gradient), as PyTorch's scaled_dot_product_attention does. On the CPU the
    two fills below run only when such a row exists; on a GPU they always run (they change
    nothing when none does), since asking whether one exists would wait for the GPU.
    """
    scale = 1.0 / math.sqrt(query.shape[-1]) if scale is None else scale
    scores = matmul(query * scale, key.transpose(-2, -1))
    blocked = None
    if mask is not None:
        blocked = array_module(mask.data).isneginf(mask.data).all(axis=-1, keepdims=True)
        if not backends.host_checks(blocked) or blocked.any():
            blocked = Tensor._make(blocked, False, None)
            mask = mask.masked_fill(blocked, 0.0)  # any finite row: its weights are zeroed below
        else:
            blocked = None
        scores = scores + mask
    weights = softmax(scores, dim=-1)
    if blocked is not None:
        weights = weights.masked_fill(blocked, 0.0)
    weights = dropout(weights, dropout_p, training=dropout_p > 0)
    return matmul(weights, value), weights


def scaled_dot_product_attention(query: Tensor, key: Tensor, value: Tensor,
                                 attn_mask: Tensor | None = None, dropout_p: float = 0.0,
                                 is_causal: bool = False, scale: float | None = None) -> Tensor:
    """softmax(q kᵀ · scale + mask) v over (..., L, E) queries and (..., S, E) keys/values.

    `attn_mask` is bool (True = attend) or float (added); `is_causal` adds the causal mask (PyTorch
    refuses both at once; here they combine). `scale` defaults to 1/√E.
    """
    if query.shape[-1] != key.shape[-1] or key.shape[-2] != value.shape[-2]:
        raise ValueError(
            f"scaled_dot_product_attention: query {query.shape}, key {key.shape} and value "
            f"{value.shape} do not fit: need query (..., L, E), key (..., S, E), value (..., S, Ev)"
        )
    mask = None if attn_mask is None else additive_mask(attn_mask, query.dtype, true_means_keep=True)
    if is_causal:
        causal = causal_mask(query.shape[-2], key.shape[-2], query.dtype, query)
        mask = causal if mask is None else mask + causal
    return attention(query, key, value, mask, dropout_p, scale)[0]
