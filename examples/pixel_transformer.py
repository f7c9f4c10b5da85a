"""The Pixel Transformer of the project's brief, written with minigt.nn.

A sample is a sequence of `seq` images of img×img pixels. Each image is flattened and embedded by
one Linear layer, a learnable position embedding is added, and `layers` pre-norm blocks
(x + MHA(LN(x)), x + FFN(LN(x))) mix the images. The sequence is averaged and classified.
"""
from __future__ import annotations

import minigt as gt
from minigt import nn
from minigt.nn import functional as F


class SelfAttention(nn.Module):
    """Multi-head self-attention with separate q, k, v and output projections."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"SelfAttention: dim {dim} is not divisible by heads {heads}")
        self.heads = heads
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x: gt.Tensor) -> gt.Tensor:
        batch, seq, dim = x.shape

        def by_head(t):  # (B, S, E) -> (B, H, S, E/H)
            return t.reshape(batch, seq, self.heads, dim // self.heads).permute(0, 2, 1, 3)

        mixed = F.scaled_dot_product_attention(by_head(self.q(x)), by_head(self.k(x)), by_head(self.v(x)))
        return self.out(mixed.permute(0, 2, 1, 3).reshape(batch, seq, dim))


class FeedForward(nn.Module):
    """Linear -> GELU -> Linear."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.up, self.down = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: gt.Tensor) -> gt.Tensor:
        return self.down(F.gelu(self.up(x)))


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(LN(x)), then x + ffn(LN(x))."""

    def __init__(self, dim: int, heads: int, hidden: int):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), SelfAttention(dim, heads)
        self.norm2, self.ffn = nn.LayerNorm(dim), FeedForward(dim, hidden)

    def forward(self, x: gt.Tensor) -> gt.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class PixelTransformer(nn.Module):
    """(B, seq, img, img) images -> (B, classes) scores."""

    def __init__(self, img=200, seq=4, dim=256, heads=4, layers=4, ff=1024, classes=10):
        super().__init__()
        self.config = dict(img=img, seq=seq, dim=dim, heads=heads, layers=layers, ff=ff, classes=classes)
        self.embed = nn.Linear(img * img, dim)
        self.position = nn.Parameter(gt.randn(seq, dim) * 0.02)
        self.blocks = nn.ModuleList([Block(dim, heads, ff) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, images: gt.Tensor) -> gt.Tensor:
        batch, seq = images.shape[:2]
        x = self.embed(images.reshape(batch, seq, -1)) + self.position
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x).mean(dim=1))
