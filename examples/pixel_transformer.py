"""The Pixel Transformer of the project's brief, written with minigt.nn.

A sample is a sequence of `seq` images of img×img pixels. Each image is flattened and embedded by
one Linear layer, a learnable position embedding is added, and `layers` pre-norm blocks
(x + MHA(LN(x)), x + FFN(LN(x))) mix the images. The sequence is averaged and classified.
"""
from __future__ import annotations

import minigt as gt
import minigt.distributed as dist
from minigt import nn
from minigt.nn import functional as F


def linear_layers(parallel: bool):
    """(first, second) layer classes of a pair: with tensor parallelism the first splits its
    outputs and the second its inputs across the tensor group (see minigt.distributed)."""
    if parallel:
        return dist.ColumnParallelLinear, dist.RowParallelLinear
    return nn.Linear, nn.Linear


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate q, k, v and output projections; with tensor
    parallelism each rank of the tensor group computes heads / tp of the heads."""

    def __init__(self, dim: int, heads: int, parallel: bool = False):
        super().__init__()
        split = dist.tensor_group().size if parallel else 1
        if dim % heads or heads % split:
            raise ValueError(f"SelfAttention: dim {dim} must divide by heads {heads}, and heads "
                             f"by the tensor-parallel size {split}")
        first, second = linear_layers(parallel)
        self.head_dim = dim // heads
        self.q, self.k, self.v = first(dim, dim), first(dim, dim), first(dim, dim)
        self.out = second(dim, dim)

    def forward(self, x: gt.Tensor) -> gt.Tensor:
        batch, seq, _ = x.shape

        def by_head(t):  # (B, S, heads·head_dim) -> (B, heads, S, head_dim)
            return t.reshape(batch, seq, -1, self.head_dim).permute(0, 2, 1, 3)

        mixed = F.scaled_dot_product_attention(by_head(self.q(x)), by_head(self.k(x)), by_head(self.v(x)))
        return self.out(mixed.permute(0, 2, 1, 3).reshape(batch, seq, -1))


class FeedForward(nn.Module):
    """Linear -> GELU -> Linear."""

    def __init__(self, dim: int, hidden: int, parallel: bool = False):
        super().__init__()
        first, second = linear_layers(parallel)
        self.up, self.down = first(dim, hidden), second(hidden, dim)

    def forward(self, x: gt.Tensor) -> gt.Tensor:
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + ffn(LN(x))."""

    def __init__(self, dim: int, heads: int, hidden: int, parallel: bool = False):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), SelfAttention(dim, heads, parallel)
        self.norm2, self.ffn = nn.LayerNorm(dim), FeedForward(dim, hidden, parallel)

    def forward(self, x: gt.Tensor) -> gt.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class PixelTransformer(nn.Module):
    """(B, seq, img, img) images -> (B, classes) scores. `parallel`: split attention heads and
    feed-forward width over the tensor group (call dist.init_parallel first)."""

    def __init__(self, img=200, seq=4, dim=256, heads=4, layers=4, ff=1024, classes=10,
                 parallel=False):
        super().__init__()
        self.config = dict(img=img, seq=seq, dim=dim, heads=heads, layers=layers, ff=ff, classes=classes)
        self.embed = nn.Linear(img * img, dim)
        self.position = nn.Parameter(gt.randn(seq, dim) * 0.02)
        self.blocks = nn.ModuleList([Block(dim, heads, ff, parallel) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, images: gt.Tensor) -> gt.Tensor:
        batch, seq = images.shape[:2]
        x = self.embed(images.reshape(batch, seq, -1)) + self.position
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x).mean(dim=1))
