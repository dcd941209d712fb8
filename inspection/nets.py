"""The networks (torch, training only): a small CNN and a tiny ViT for NEU, a U-Net with two heads for tiles."""

from __future__ import annotations

from typing import Callable, TypeVar

import torch
from torch import nn

T = TypeVar("T", torch.Tensor, tuple[torch.Tensor, ...])


def mirror_mean(f: Callable[[torch.Tensor], T], x: torch.Tensor) -> T:
    """The mean of f's outputs over the image and its left-right mirror; an output that is a map (4-d) is flipped back
    first. Two calls, not one batch of 2n: the exported graph keeps a plain dynamic batch axis."""
    a, b = f(x), f(x.flip(3))
    if isinstance(a, torch.Tensor):
        return (a + (b.flip(3) if b.dim() == 4 else b)) / 2
    return tuple((p + (q.flip(3) if q.dim() == 4 else q)) / 2 for p, q in zip(a, b))


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def _conv(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SmallCnn(nn.Module):
    """A stride-2 stem, one conv per stage (16-32-64-128 channels, pooled between), global average pool, head.
    With mirror, eval-mode logits are the mean over the image and its left-right mirror (training sees one view)."""

    def __init__(self, classes: int, width: int = 16, mirror: bool = False) -> None:
        super().__init__()
        w = width
        self.mirror = mirror
        self.features = nn.Sequential(nn.Conv2d(1, w, 3, stride=2, padding=1), nn.ReLU(inplace=True),
                                      _conv(w, 2 * w), nn.MaxPool2d(2),
                                      _conv(2 * w, 4 * w), nn.MaxPool2d(2), _conv(4 * w, 8 * w))
        self.head = nn.Linear(8 * w, classes)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of one view of a (n, 1, h, w) batch."""
        return self.head(self.features(x).mean(dim=(2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a (n, 1, h, w) batch."""
        return mirror_mean(self.logits, x) if self.mirror and not self.training else self.logits(x)


class TinyVit(nn.Module):
    """A vision transformer: patch embedding, class token, a few pre-norm encoder layers, linear head. With mirror, as
    SmallCnn."""

    def __init__(self, classes: int, size: int, patch: int = 8, dim: int = 48, depth: int = 3, heads: int = 4,
                 mirror: bool = False) -> None:
        super().__init__()
        self.mirror = mirror
        self.embed = nn.Conv2d(1, dim, patch, stride=patch)
        tokens = (size // patch) ** 2
        self.cls = nn.Parameter(torch.zeros(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, tokens + 1, dim) * 0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim * 2, dropout=0.0, batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, depth, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        """Logits of one view of a (n, 1, h, w) batch."""
        t = self.embed(x).flatten(2).transpose(1, 2)
        t = torch.cat([self.cls.expand(t.shape[0], -1, -1), t], dim=1) + self.pos
        return self.head(self.norm(self.encoder(t)[:, 0]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits for a (n, 1, h, w) batch."""
        return mirror_mean(self.logits, x) if self.mirror and not self.training else self.logits(x)


class TileUnet(nn.Module):
    """A four-level U-Net for tiles: a defect mask logit per pixel, a defect score from the mask, a type head.

    The encoder starts with a stride-2 conv, so every level runs at half the input size or less (the CPU budget);
    the mask is predicted at half size and upsampled bilinearly to the input size. The image's defect logit is the
    mean of the `top` highest half-size mask logits (a defect is where the mask is strongest, however small), and
    the type logits read decoder features pooled under the predicted mask plus the pooled bottleneck. The class
    logits are [log(1 - s), log(s) + log_softmax(types)] with s = sigmoid(defect logit), so their softmax is exactly
    P(Free) = 1 - s and P(type) = s * P(type | defect): the serving contract (class logits + mask logits) holds.
    With mirror, forward() averages the defect logit, type logits and mask over the image and its left-right mirror.
    """

    def __init__(self, classes: int, width: int = 16, top: int = 16, mirror: bool = False) -> None:
        super().__init__()
        w = width
        self.top = top
        self.mirror = mirror
        self.stem = nn.Sequential(nn.Conv2d(1, w, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(w),
                                  nn.ReLU(inplace=True), _conv(w, w))
        self.e2 = nn.Sequential(nn.MaxPool2d(2), _block(w, 2 * w))
        self.e3 = nn.Sequential(nn.MaxPool2d(2), _block(2 * w, 4 * w))
        self.e4 = nn.Sequential(nn.MaxPool2d(2), _block(4 * w, 8 * w))
        # one conv per decoder level: the decoder only has to place what the encoder found
        self.d3, self.d2, self.d1 = _conv(12 * w, 4 * w), _conv(6 * w, 2 * w), _conv(3 * w, w)
        self.mask = nn.Conv2d(w, 1, 1)
        self.types = nn.Linear(12 * w, classes - 1)

    def parts(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(defect logit (n,), type logits (n, classes - 1), half-size mask logits) for a (n, 1, h, w) batch."""
        a = self.stem(x)
        b = self.e2(a)
        c = self.e3(b)
        z = self.e4(c)
        y3 = self.d3(torch.cat([nn.functional.interpolate(z, scale_factor=2.0), c], 1))
        y2 = self.d2(torch.cat([nn.functional.interpolate(y3, scale_factor=2.0), b], 1))
        y1 = self.d1(torch.cat([nn.functional.interpolate(y2, scale_factor=2.0), a], 1))
        m = self.mask(y1)
        defect = torch.topk(m.flatten(1), self.top, dim=1).values.mean(1)
        wt = nn.functional.avg_pool2d(torch.sigmoid(m), 4)  # the mask at y3's scale (1/8)
        under = (y3 * wt).sum(dim=(2, 3)) / (wt.sum(dim=(2, 3)) + 1e-3)
        types = self.types(torch.cat([under, z.mean(dim=(2, 3))], 1))
        return defect, types, m

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(class logits (n, classes), mask logits (n, 1, h, w)) for a (n, 1, h, w) batch."""
        defect, types, m = mirror_mean(self.parts, x) if self.mirror else self.parts(x)
        d = defect[:, None]
        logits = torch.cat([nn.functional.logsigmoid(-d), nn.functional.logsigmoid(d) + types.log_softmax(1)], 1)
        return logits, nn.functional.interpolate(m, scale_factor=2.0, mode="bilinear", align_corners=False)
