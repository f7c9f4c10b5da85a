"""MultiheadAttention, with PyTorch's parameter names (in_proj_weight, in_proj_bias, out_proj), so
state dicts move between the two unchanged."""
from __future__ import annotations

from ..creation import zeros
from ..tensor import Tensor
from . import functional as F
from . import init
from .functional.attention import additive_mask, attention, causal_mask
from .linear import Linear
from .module import Module
from .parameter import Parameter


class MultiheadAttention(Module):
    """Attention over `num_heads` heads of size embed_dim / num_heads.

    q, k, v = the three row blocks of in_proj_weight applied to query, key, value; each head
    attends softmax(q kᵀ/√d + mask) v; the heads are joined and mapped by out_proj.
    Masks as PyTorch: bool True = "may not attend"; float masks are added to the scores.
    """

    def __init__(self, embed_dim: int, num_heads: int, dropout: float = 0.0, bias: bool = True,
                 batch_first: bool = False, device=None, dtype=None) -> None:
        super().__init__()
        if embed_dim % num_heads:
            raise ValueError(
                f"MultiheadAttention: embed_dim {embed_dim} must be divisible by num_heads {num_heads}"
            )
        self.embed_dim, self.num_heads, self.dropout = embed_dim, num_heads, dropout
        self.head_dim, self.batch_first = embed_dim // num_heads, batch_first
        self.in_proj_weight = Parameter(zeros(3 * embed_dim, embed_dim, dtype=dtype, device=device))
        if bias:
            self.in_proj_bias = Parameter(zeros(3 * embed_dim, dtype=dtype, device=device))
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(embed_dim, embed_dim, bias=bias, device=device, dtype=dtype)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """As PyTorch: Xavier over the packed (3E, E) matrix, zero biases; out_proj as Linear."""
        init.xavier_uniform_(self.in_proj_weight)
        if self.in_proj_bias is not None:
            init.zeros_(self.in_proj_bias)
            init.zeros_(self.out_proj.bias)

    def forward(self, query: Tensor, key: Tensor, value: Tensor,
                key_padding_mask: Tensor | None = None, need_weights: bool = True,
                attn_mask: Tensor | None = None, average_attn_weights: bool = True,
                is_causal: bool = False) -> tuple[Tensor, Tensor | None]:
        """(output, weights): output like `query`; weights (B, L, S) averaged over heads, or
        (B, H, L, S) with average_attn_weights=False, or None when need_weights=False.

        `is_causal` without an `attn_mask` applies the causal mask (PyTorch requires the mask too).
        """
        unbatched = query.ndim == 2
        if unbatched:
            query, key, value = query.unsqueeze(0), key.unsqueeze(0), value.unsqueeze(0)
            if key_padding_mask is not None:
                key_padding_mask = key_padding_mask.unsqueeze(0)
        elif not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        self._check_shapes(query, key, value)
        batch, q_len, _ = query.shape
        k_len = key.shape[1]

        q, k, v = self._project(query, key, value)
        mask = self._mask(attn_mask, key_padding_mask, is_causal, batch, q_len, k_len, q)
        out, weights = attention(q, k, v, mask, self.dropout if self.training else 0.0)
        out = out.permute(0, 2, 1, 3).reshape(batch, q_len, self.embed_dim)
        out = self.out_proj(out)

        if unbatched:
            out, weights = out.squeeze(0), weights.squeeze(0)
        elif not self.batch_first:
            out = out.transpose(0, 1)
        if not need_weights:
            return out, None
        return out, (weights.mean(dim=-3) if average_attn_weights else weights)

    def _check_shapes(self, query: Tensor, key: Tensor, value: Tensor) -> None:
        for name, t in (("query", query), ("key", key), ("value", value)):
            if t.ndim != 3 or t.shape[-1] != self.embed_dim:
                raise ValueError(
                    f"MultiheadAttention: {name} must be (batch, seq, embed_dim={self.embed_dim}) "
                    f"(batch_first={self.batch_first}), got shape {t.shape}"
                )
        if key.shape[:2] != value.shape[:2]:
            raise ValueError(f"MultiheadAttention: key {key.shape} and value {value.shape} differ")

    def _project(self, query: Tensor, key: Tensor, value: Tensor) -> list:
        """q, k, v each of shape (batch, heads, seq, head_dim)."""
        e = self.embed_dim
        w, b = self.in_proj_weight, self.in_proj_bias
        if query is key is value:  # self-attention: one product with the packed weight
            packed = F.linear(query, w, b)
            parts = [packed[..., i * e:(i + 1) * e] for i in range(3)]
        else:
            parts = [
                F.linear(x, w[i * e:(i + 1) * e], None if b is None else b[i * e:(i + 1) * e])
                for i, x in enumerate((query, key, value))
            ]
        batch = query.shape[0]
        return [
            p.reshape(batch, -1, self.num_heads, self.head_dim).permute(0, 2, 1, 3) for p in parts
        ]

    def _mask(self, attn_mask, key_padding_mask, is_causal, batch, q_len, k_len, like):
        """One additive mask broadcastable to (batch, heads, q_len, k_len), or None."""
        masks = []
        if attn_mask is not None:
            if attn_mask.shape not in ((q_len, k_len), (batch * self.num_heads, q_len, k_len)):
                raise ValueError(
                    f"MultiheadAttention: attn_mask must be ({q_len}, {k_len}) or "
                    f"({batch * self.num_heads}, {q_len}, {k_len}), got {attn_mask.shape}"
                )
            m = additive_mask(attn_mask, like.dtype, true_means_keep=False)
            masks.append(m.reshape(batch, self.num_heads, q_len, k_len) if m.ndim == 3 else m)
        elif is_causal:
            masks.append(causal_mask(q_len, k_len, like.dtype, like))
        if key_padding_mask is not None:
            if key_padding_mask.shape != (batch, k_len):
                raise ValueError(
                    f"MultiheadAttention: key_padding_mask must be ({batch}, {k_len}), got "
                    f"{key_padding_mask.shape}"
                )
            m = additive_mask(key_padding_mask, like.dtype, true_means_keep=False)
            masks.append(m.reshape(batch, 1, 1, k_len))
        if not masks:
            return None
        return masks[0] if len(masks) == 1 else masks[0] + masks[1]

    def extra_repr(self) -> str:
        return (f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}, "
                f"batch_first={self.batch_first}")
