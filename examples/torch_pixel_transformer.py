"""The same Pixel Transformer in PyTorch, parameter for parameter, for the equality tests and the
benchmarks (state_dict keys and shapes match examples/pixel_transformer.py)."""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


class SelfAttention(nn.Module):
    def __init__(self, dim: int, heads: int):
        super().__init__()
        self.heads = heads
        self.q, self.k, self.v = nn.Linear(dim, dim), nn.Linear(dim, dim), nn.Linear(dim, dim)
        self.out = nn.Linear(dim, dim)

    def forward(self, x):
        batch, seq, dim = x.shape
        by_head = lambda t: t.reshape(batch, seq, self.heads, dim // self.heads).permute(0, 2, 1, 3)  # noqa: E731
        mixed = F.scaled_dot_product_attention(by_head(self.q(x)), by_head(self.k(x)), by_head(self.v(x)))
        return self.out(mixed.permute(0, 2, 1, 3).reshape(batch, seq, dim))


class Block(nn.Module):
    def __init__(self, dim: int, heads: int, hidden: int):
        super().__init__()
        self.norm1, self.attn = nn.LayerNorm(dim), SelfAttention(dim, heads)
        self.norm2 = nn.LayerNorm(dim)
        self.ffn = nn.Module()
        self.ffn.up, self.ffn.down = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.ffn.down(F.gelu(self.ffn.up(self.norm2(x))))


class PixelTransformer(nn.Module):
    def __init__(self, img=200, seq=4, dim=256, heads=4, layers=4, ff=1024, classes=10):
        super().__init__()
        self.embed = nn.Linear(img * img, dim)
        self.position = nn.Parameter(torch.randn(seq, dim) * 0.02)
        self.blocks = nn.ModuleList([Block(dim, heads, ff) for _ in range(layers)])
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, images):
        batch, seq = images.shape[:2]
        x = self.embed(images.reshape(batch, seq, -1)) + self.position
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x).mean(dim=1))


def from_minigt(model, dtype=torch.float64) -> PixelTransformer:
    """A PyTorch twin holding a copy of a minigt PixelTransformer's weights."""
    config = model.config
    twin = PixelTransformer(**config).to(dtype)
    state = {name: torch.from_numpy(value.numpy().copy()) for name, value in model.state_dict().items()}
    twin.load_state_dict(state, strict=True)
    return twin
