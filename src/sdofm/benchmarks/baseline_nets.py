"""The papers' networks, built from torch as each paper describes them.

- `ResidualCNN`: the CNN that corrects the linear virtual-EVE model's residual (Szenicer et al.
  2019, Sci. Adv. 5, eaaw6548) and, as a from-scratch regressor, the label-efficiency baseline;
- `DimmingCNN`: the auto-calibration CNN, single- and multi-channel (Dos Santos et al. 2021,
  A&A 648, A53);
- `UNet`: the missing-channel model (Salvatelli et al. 2019, 2022);
- `FlareResNet`: a ResNet of the family Pandey et al. (2023) use on full-disk magnetograms.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["DimmingCNN", "FlareResNet", "ResidualCNN", "UNet"]


class ResidualCNN(nn.Module):
    """Three conv blocks (conv, batch norm, ReLU, max-pool), global pooling, linear.

    With ``zero_init`` the output starts at zero: as the residual of a linear model, it begins
    as "no correction".
    """

    def __init__(self, in_chans: int, n_out: int, width: int = 32, *, zero_init: bool = False):
        super().__init__()
        layers, c = [], in_chans
        for w in (width, width * 2, width * 2):
            layers += [nn.Conv2d(c, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2)]
            c = w
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out = nn.Linear(c, n_out)
        if zero_init:
            nn.init.zeros_(self.out.weight)
            nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor, *base: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) [+ the linear model's prediction (B, n_out)] -> (B, n_out)."""
        out = self.out(self.features(x))
        return out + base[0] if base else out


class DimmingCNN(nn.Module):
    """Dos Santos et al. (2021): (3×3 conv → ReLU → 3×3 max-pool) twice, dense, sigmoid.

    As the paper's code (model version 6, 64 and 128 filters, unpadded convolutions) on the
    full-disk image. ``groups=1`` is the multi-channel model; ``groups=channels`` gives
    independent single-channel models (grouped convolutions and a block-diagonal dense layer:
    no channel sees another).
    """

    def __init__(self, channels: int, size: int, *, groups: int = 1, filters=(64, 128)):
        super().__init__()
        f1, f2 = filters
        self.features = nn.Sequential(
            nn.Conv2d(channels, f1 * groups, 3, groups=groups),
            nn.ReLU(),
            nn.MaxPool2d(3),
            nn.Conv2d(f1 * groups, f2 * groups, 3, groups=groups),
            nn.ReLU(),
            nn.MaxPool2d(3),
        )
        side = ((size - 2) // 3 - 2) // 3
        n_in, n_out = f2 * side**2, channels // groups
        self.groups = groups
        bound = n_in**-0.5  # nn.Linear's initialisation, per group
        self.weight = nn.Parameter(torch.empty(groups, n_in, n_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(groups, n_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, C) in (0, 1)
        h = self.features(x).reshape(len(x), self.groups, -1)
        out = torch.einsum("bgf,gfo->bgo", h, self.weight) + self.bias
        return torch.sigmoid(out.reshape(len(x), -1))


def _conv_block(c_in: int, c_out: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 3, padding=1),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
        nn.Conv2d(c_out, c_out, 3, padding=1),
        nn.BatchNorm2d(c_out),
        nn.ReLU(),
    )


class UNet(nn.Module):
    """U-Net: ``levels`` poolings, widths width·2^k, transposed-conv upsampling, skip concat."""

    def __init__(self, in_chans: int, out_chans: int = 1, *, width: int = 16, levels: int = 3):
        super().__init__()
        self.down, c = nn.ModuleList(), in_chans
        for k in range(levels):
            self.down.append(_conv_block(c, width * 2**k))
            c = width * 2**k
        self.bottom = _conv_block(c, 2 * c)
        c *= 2
        self.up, self.dec = nn.ModuleList(), nn.ModuleList()
        for k in reversed(range(levels)):
            w = width * 2**k
            self.up.append(nn.ConvTranspose2d(c, w, 2, stride=2))
            self.dec.append(_conv_block(2 * w, w))
            c = w
        self.out = nn.Conv2d(c, out_chans, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, out, H, W)
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
            x = F.max_pool2d(x, 2)
        x = self.bottom(x)
        for up, dec, skip in zip(self.up, self.dec, reversed(skips), strict=True):
            x = dec(torch.cat([up(x), skip], dim=1))
        return self.out(x)


class _ResidualBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.skip = (
            nn.Identity()
            if stride == 1 and c_in == c_out
            else nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.body(x) + self.skip(x))


class FlareResNet(nn.Module):
    """A ResNet for full-disk flare forecasting (the family of Pandey et al. 2023).

    Stem (strided 5×5 conv), three residual stages halving the resolution and doubling the
    width, global average and max pooling, dropout, one logit. East-west and north-south flips
    while training (the flare rate depends on neither).
    """

    def __init__(self, in_chans: int, width: int = 16, dropout: float = 0.3):
        super().__init__()
        w = width
        self.stem = nn.Sequential(
            nn.Conv2d(in_chans, w, 5, 2, 2, bias=False), nn.BatchNorm2d(w), nn.ReLU()
        )
        self.stages = nn.Sequential(
            _ResidualBlock(w, w, 1), _ResidualBlock(w, 2 * w, 2), _ResidualBlock(2 * w, 4 * w, 2)
        )
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(8 * w, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, 1) logit
        if self.training:
            for dim in (2, 3):
                flip = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < 0.5
                x = torch.where(flip, x.flip(dim), x)
        f = self.stages(self.stem(x))
        return self.out(self.drop(torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)))
