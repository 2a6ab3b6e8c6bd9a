"""The papers' baselines, each as its paper describes it, plus the shared classical pieces.

- `channel_statistics`: the inputs of the linear virtual-EVE model, the physical mean and
  standard deviation of each AIA channel (Szenicer et al. 2019, Sci. Adv. 5, eaaw6548), which
  the task fits with the Huber loss;
- `ResidualCNN`: the CNN that corrects the linear model's residual (Szenicer et al. 2019) and, as
  a from-scratch regressor, the label-efficiency baseline;
- `DimmingCNN`: the auto-calibration CNN, single- and multi-channel (Dos Santos et al. 2021,
  A&A 648, A53); `dimming_ratio` (`quiet_sun_mask`, `quiet_sun_mode`): its non-ML baseline;
- `UNet`: the missing-channel model (Salvatelli et al. 2019, 2022);
- `FlareResNet`: a ResNet of the family Pandey et al. (2023) use on full-disk magnetograms;
- `ridge_on_val`: ridge regression with its penalty chosen on validation rows;
- `disk_features`: the classical F10.7 regressors, log10 AIA disk means and the total unsigned
  HMI flux (the regressions of F10.7 on EUV and magnetic flux, e.g. Schonfeld et al. 2015, ApJ);
- `flare_persistence`, `goes_persistence`: the flare forecasters' persistence references, from
  the flare list and from the GOES 1-8 Å series, using only what is known at forecast time.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import Ridge
from torch import nn
from torch.nn import functional as F

__all__ = [
    "DimmingCNN",
    "FlareResNet",
    "ResidualCNN",
    "UNet",
    "channel_statistics",
    "dimming_ratio",
    "disk_features",
    "flare_persistence",
    "goes_persistence",
    "quiet_sun_mask",
    "quiet_sun_mode",
    "ridge_on_val",
]

RIDGE_ALPHAS = np.logspace(-4, 4, 17)
KM_PER_ARCSEC = 725.27  # at 1 AU
MU_MIN = 0.1  # the unsigned flux leaves out the limb (beyond ~84 deg), where 1/mu explodes


def channel_statistics(images: np.ndarray, *, log: bool = False) -> np.ndarray:
    """Per-channel spatial mean and standard deviation: (N, C, H, W) -> (N, 2C).

    Physical units (DN/s) as the paper uses them; ``log`` takes log10 of both (floored at 1e-3).
    """
    x = np.nan_to_num(np.asarray(images, np.float64))
    stats = np.concatenate([x.mean(axis=(2, 3)), x.std(axis=(2, 3))], axis=1)
    return np.log10(np.clip(stats, 1e-3, None)) if log else stats


def disk_features(
    images: np.ndarray, channels: list[str], rsun_px: float, *, field: str = "b"
) -> np.ndarray:
    """log10 on-disk mean (DN/s) of each AIA channel and the total unsigned HMI flux (Mx).

    ``images``: (N, C, H, W) in physical units, channels named by ``channels`` (AIA ones end in
    "A"). The flux is the sum of |B_r| dA over on-disk pixels with mu > `MU_MIN` (mu: cosine of
    the heliocentric angle; dA = pixel area / mu); |B_r| is |B| (``field="b"``, needs Bx, By,
    Bz) or |Bz| / mu (``"bz"``: the radial-field approximation of a line-of-sight field).
    Returns (N, n_aia + 1); NaN where an image lacks data.
    """
    from sdofm.dataset.loader import RSUN_ARCSEC, disk_mask

    size = images.shape[-1]
    aia = [i for i, c in enumerate(channels) if c.endswith("A")]
    hmi = [channels.index(c) for c in (["Bz"] if field == "bz" else ["Bx", "By", "Bz"])]
    disk = disk_mask(size, rsun_px)
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    mu = np.sqrt(np.clip(1.0 - (yy**2 + xx**2) / rsun_px**2, 0.0, 1.0))[disk]
    pixel_cm2 = (RSUN_ARCSEC / rsun_px * KM_PER_ARCSEC * 1e5) ** 2
    area = np.where(mu > MU_MIN, pixel_cm2 / np.maximum(mu, MU_MIN), 0.0)
    to_radial = 1.0 / np.maximum(mu, MU_MIN) if field == "bz" else 1.0
    img = np.asarray(images, np.float64)[:, :, disk]  # (N, C, P)
    with np.errstate(invalid="ignore", divide="ignore"):
        means = np.log10(np.clip(np.nanmean(img[:, aia], axis=2), 1e-3, None))
        b_r = np.sqrt(np.sum(img[:, hmi] ** 2, axis=1)) * to_radial
        flux = np.where(np.isnan(b_r).all(axis=1), np.nan, np.nansum(b_r * area, axis=1))
    return np.concatenate([means, flux[:, None]], axis=1)


def ridge_on_val(
    x: np.ndarray, y: np.ndarray, train: np.ndarray, val: np.ndarray
) -> tuple[Ridge, float]:
    """Ridge on standardised x[train], penalty of lowest validation MSE: (model, alpha)."""
    mean, std = x[train].mean(axis=0), x[train].std(axis=0) + 1e-12
    z = (x - mean) / std
    best = None
    for a in RIDGE_ALPHAS:
        model = Ridge(alpha=a).fit(z[train], y[train])
        err = float(np.mean((model.predict(z[val]) - y[val]) ** 2))
        if best is None or err < best[0]:
            best = (err, model, a)
    _, model, alpha = best
    model.feature_mean_, model.feature_std_ = mean, std
    return model, float(alpha)


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


def quiet_sun_mask(bz: np.ndarray, *, gauss: float = 5.0) -> np.ndarray:
    """The quiet Sun of Dos Santos et al. (2021): the central half of the image (away from the
    limb) where HMI |Bz| <= ``gauss``. ``bz`` (N, H, W) in G; NaN is not quiet."""
    h, w = bz.shape[-2:]
    central = np.zeros((h, w), bool)
    central[h // 4 : h // 4 + h // 2, w // 4 : w // 4 + w // 2] = True
    return central & (np.abs(np.nan_to_num(bz, nan=np.inf)) <= gauss)


def quiet_sun_mode(images: np.ndarray, quiet: np.ndarray, *, floor: float = 0.1) -> np.ndarray:
    """The most probable quiet-Sun intensity of each image and channel (Dos Santos et al. 2021).

    A log-normal fitted by maximum likelihood (location 0, as ``scipy.stats.lognorm.fit`` with
    ``floc=0``) to the pixels of ``quiet`` at or above ``floor`` (DN/s); its mode is
    exp(μ − σ²) with μ, σ the mean and standard deviation of their logarithm.
    ``images`` (N, C, H, W) physical, ``quiet`` (N, H, W) bool -> (N, C); NaN with < 2 pixels.
    """
    x = np.asarray(images, np.float64)
    with np.errstate(invalid="ignore"):
        ok = np.asarray(quiet, bool)[:, None] & (x >= floor)
    n = ok.sum(axis=(2, 3))
    log = np.log(np.where(ok, x, 1.0))
    with np.errstate(invalid="ignore", divide="ignore"):
        mu = log.sum(axis=(2, 3)) / n
        var = (((log - mu[..., None, None]) * ok) ** 2).sum(axis=(2, 3)) / n
    return np.where(n >= 2, np.exp(mu - var), np.nan)


def dimming_ratio(
    dimmed: np.ndarray, quiet: np.ndarray, reference: np.ndarray, *, floor: float = 0.1
) -> np.ndarray:
    """The non-ML baseline of Dos Santos et al. (2021): α̂ = mode(dimmed) / mode(reference).

    ``quiet_sun_mode`` of the dimmed images (N, C, H, W) over ``reference`` (C,), the quiet-Sun
    mode of undimmed images. The paper (and its code, spaceml-org/expanding-sdo-capabilities,
    ``notebooks/baselines/Baseline_autocalib_corrected.ipynb``) takes the quiet Sun as the
    central half of the disk where HMI |Bz| <= 5 G and one reference image at the start. An
    image with no quiet-Sun pixel above ``floor`` gets 0; α̂ is clipped to [0, 1].
    """
    ratio = quiet_sun_mode(dimmed, quiet, floor=floor) / np.asarray(reference)[None]
    return np.clip(np.nan_to_num(ratio, nan=0.0), 0.0, 1.0)


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


def flare_persistence(flares: pd.DataFrame, times, horizon: pd.Timedelta, min_class: str):
    """1 where a flare >= ``min_class`` peaked in (t - horizon, t], else 0: the past only.

    ``flares``: a `sdofm.sources.events.read_flare_list` frame; the flare counting is
    `flare_labels`' (the label looks at (t, t + horizon]).
    """
    from sdofm.sources.events import flare_labels

    past = flare_labels(flares, pd.DatetimeIndex(times) - horizon, horizon, min_class)
    return past.astype(np.float64)


def goes_persistence(xrs: pd.DataFrame, times, horizon: pd.Timedelta) -> np.ndarray:
    """The largest GOES 1-8 Å flux (W/m^2) measured in (t - horizon, t], for each t.

    ``xrs``: a `sdofm.sources.events.read_goes_xrs` frame. A time before the first measurement
    gets NaN; within a data gap the last window that ended before t is used (never a later one).
    """
    peak = xrs["xrsb"].dropna().rolling(horizon, closed="right").max()
    return peak.asof(pd.DatetimeIndex(times)).to_numpy(np.float64)
