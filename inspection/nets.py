"""The networks (torch, training only): a small CNN and a tiny ViT for NEU, a small U-Net with a type head for tiles."""

from __future__ import annotations

import torch
from torch import nn


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallCnn(nn.Module):
    """A stride-2 stem, one conv per stage (16-32-64-128 channels, pooled between), global average pool, head."""

    def __init__(self, classes: int, width: int = 16) -> None:
        super().__init__()
        w = width
        self.features = nn.Sequential(nn.Conv2d(1, w, 3, stride=2, padding=1), nn.ReLU(inplace=True),
                                      _conv(w, 2 * w), nn.MaxPool2d(2),
                                      _conv(2 * w, 4 * w), nn.MaxPool2d(2), _conv(4 * w, 8 * w))
        self.head = nn.Linear(8 * w, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a (n, 1, h, w) batch."""
        return self.head(self.features(x).mean(dim=(2, 3)))


class TinyVit(nn.Module):
    """A vision transformer: patch embedding, class token, a few pre-norm encoder layers, linear head."""

    def __init__(self, classes: int, size: int, patch: int = 8, dim: int = 48, depth: int = 3, heads: int = 4) -> None:
        super().__init__()
        self.embed = nn.Conv2d(1, dim, patch, stride=patch)
        tokens = (size // patch) ** 2
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim * 2, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a (n, 1, h, w) batch."""
        t = self.embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], dim=1) + self.pos
        return self.head(self.norm(self.encoder(t)[:, 0]))


class TileUnet(nn.Module):
    """A three-level U-Net: a defect mask logit per pixel, and class logits (Free + types) from the bottleneck."""

    def __init__(self, classes: int, width: int = 8) -> None:
        super().__init__()
        w = width
        self.d1, self.d2, self.d3 = _block(1, w), _block(w, 2 * w), _block(2 * w, 4 * w)
        self.bottom = _block(4 * w, 8 * w)
        self.pool = nn.MaxPool2d(2)
        self.u3, self.c3 = nn.ConvTranspose2d(8 * w, 4 * w, 2, stride=2), _block(8 * w, 4 * w)
        self.u2, self.c2 = nn.ConvTranspose2d(4 * w, 2 * w, 2, stride=2), _block(4 * w, 2 * w)
        self.u1, self.c1 = nn.ConvTranspose2d(2 * w, w, 2, stride=2), _block(2 * w, w)
        self.mask = nn.Conv2d(w, 1, 1)
        self.head = nn.Linear(8 * w + 1, classes)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(class logits (n, classes), mask logits (n, 1, h, w)) for a (n, 1, h, w) batch."""
        a = self.d1(x)
        b = self.d2(self.pool(a))
        c = self.d3(self.pool(b))
        z = self.bottom(self.pool(c))
        y = self.c3(torch.cat([self.u3(z), c], 1))
        y = self.c2(torch.cat([self.u2(y), b], 1))
        y = self.c1(torch.cat([self.u1(y), a], 1))
        m = self.mask(y)
        peak = torch.amax(m, dim=(2, 3))  # the mask's strongest pixel tells the head where a defect is
        return self.head(torch.cat([z.mean(dim=(2, 3)), peak], 1)), m
