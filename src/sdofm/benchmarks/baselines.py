"""The papers' classical baselines and features (their networks: `baseline_nets`).

- `channel_statistics`: the inputs of the linear virtual-EVE model, the physical mean and
  standard deviation of each AIA channel (Szenicer et al. 2019, Sci. Adv. 5, eaaw6548), which
  the task fits with the Huber loss;
- `dimming_ratio` (`quiet_sun_mask`, `quiet_sun_mode`): the non-ML auto-calibration baseline
  (Dos Santos et al. 2021, A&A 648, A53);
- `ridge_on_val`: ridge regression with its penalty chosen on validation rows;
- `disk_features`: the classical F10.7 regressors, log10 AIA disk means and the total unsigned
  HMI flux (the regressions of F10.7 on EUV and magnetic flux, e.g. Schonfeld et al. 2015, ApJ);
- `flare_persistence`, `goes_persistence`: the flare forecasters' persistence references, from
  the flare list and from the GOES 1-8 Å series, using only what is known at forecast time;
- `planted_sun`: the synthetic Sun's own generator model, rebuilt from its ground-truth folder,
  for the oracle ceilings (F10.7, flares, missing channel).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from sklearn.linear_model import Ridge

from sdofm import SdofmError

if TYPE_CHECKING:
    import torch

__all__ = [
    "attentive_arm",
    "channel_statistics",
    "climatology_arm",
    "cnn_arm",
    "dimming_ratio",
    "disk_features",
    "flare_persistence",
    "goes_persistence",
    "planted_sun",
    "quiet_sun_mask",
    "quiet_sun_mode",
    "ridge_arm",
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
    """Ridge on standardised x[train], penalty of lowest validation MSE: (model, alpha).

    Every penalty's solution comes from one SVD of the centred training features (the ridge
    path), then scikit-learn's `Ridge` is fitted once at the chosen penalty.
    """
    mean, std = x[train].mean(axis=0), x[train].std(axis=0) + 1e-12
    z = (x - mean) / std
    zc = z[train] - z[train].mean(axis=0)
    yt = np.asarray(y[train], float).reshape(len(train), -1)
    u, sv, vt = np.linalg.svd(zc, full_matrices=False)
    uy = u.T @ (yt - yt.mean(axis=0))
    zv = z[val] - z[train].mean(axis=0)
    yv = np.asarray(y[val], float).reshape(len(val), -1) - yt.mean(axis=0)
    errors = [
        float(np.mean((zv @ (vt.T @ (uy * (sv / (sv**2 + a))[:, None])) - yv) ** 2))
        for a in RIDGE_ALPHAS
    ]
    alpha = float(RIDGE_ALPHAS[int(np.argmin(errors))])
    model = Ridge(alpha=alpha).fit(z[train], y[train])
    model.feature_mean_, model.feature_std_ = mean, std
    return model, alpha


def ridge_arm(x: np.ndarray, *, log: bool = False):
    """An arm's ``train``: `ridge_on_val` from features ``x`` (T, F) to the targets, standardised
    with the training rows (of log10 with ``log``); returns the predictor of sample rows."""
    from sdofm.benchmarks.heads import TargetScaler

    def train(f):
        tr, va = f.rows["train"], f.rows["val"]
        scale = TargetScaler(f.y[tr], log=log)
        y = np.zeros((len(f.y), *np.shape(f.y)[1:]))
        for rows in (tr, va):
            y[rows] = scale(f.y[rows]).numpy().reshape(y[rows].shape)
        model, _ = ridge_on_val(x, y, tr, va)
        z = (np.nan_to_num(x) - model.feature_mean_) / model.feature_std_
        return lambda rows: scale.inverse(model.predict(z[rows]))

    return train


def cnn_arm(images, *, width: int, epochs: int, patience: int, log: bool = False):
    """An arm's ``train``: a `ResidualCNN` from scratch on ``images`` (T, C, H, W), a tensor,
    to the targets standardised with the training rows (of log10 with ``log``)."""
    from sdofm.benchmarks.baseline_nets import ResidualCNN
    from sdofm.benchmarks.heads import TargetScaler, fit, predict

    def train(f):
        scale = TargetScaler(f.y[f.rows["train"]], log=log)
        net = ResidualCNN(images.shape[1], f.y.shape[1], width=width)
        data = [(images[r], scale(f.y[r])) for r in (f.rows["train"], f.rows["val"])]
        net = fit(net, *data, **f.kwargs(epochs=epochs, batch_size=32, patience=patience))
        return lambda rows: scale.inverse(predict(net, images[rows], device=f.device))

    return train


def attentive_arm(grid: torch.Tensor, *, epochs: int, patience: int):
    """An arm's ``train``: an `AttentiveProbe` on a frozen token grid ``grid`` (T, D, gh, gw),
    a tensor, to the targets standardised with the training rows."""
    from sdofm.benchmarks.heads import AttentiveProbe, TargetScaler, fit, predict

    def train(f):
        scale = TargetScaler(f.y[f.rows["train"]])
        probe = AttentiveProbe(grid[f.rows["train"]], f.y.shape[1])
        data = [(grid[r], scale(f.y[r])) for r in (f.rows["train"], f.rows["val"])]
        kw = f.kwargs(epochs=epochs, batch_size=32, patience=patience, weight_decay=1e-2)
        probe = fit(probe, *data, **kw)
        return lambda rows: scale.inverse(predict(probe, grid[rows], device=f.device))

    return train


def climatology_arm(f):
    """An arm's ``train``: the mean of the training rows' targets, for every row."""
    mean = f.y[f.rows["train"]].mean(axis=0)
    return lambda rows: np.tile(mean, (len(rows), 1))


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


def planted_sun(truth: Path):
    """The generator's model of the synthetic Sun whose ground truth is the folder ``truth``.

    Rebuilt from the settings in ``parameters.json`` (regions, flares and the quiet-Sun network
    come from the seed, nothing is rendered) and refused unless its active regions are those
    of ``regions.csv``: an oracle must read this run's truth, not another generator's.
    """
    from sdofm.sources.synthetic.model import SunModel, SyntheticSun
    from sdofm.sources.synthetic.sun import read_regions

    try:
        model = SunModel(SyntheticSun.from_parameters(truth / "parameters.json"))
        table = read_regions(truth / "regions.csv")
        cols = ["latitude_deg", "longitude_deg", "flux_mx", "lifetime_days", "complexity"]
        same = table[cols].shape == model.regions[cols].shape and np.allclose(
            table[cols].to_numpy(float), model.regions[cols].to_numpy(float), rtol=1e-9
        )
        drift = (table.emergence - model.regions.emergence).abs().max() if same else None
        same = same and (drift is pd.NaT or drift <= pd.Timedelta(seconds=1))
    except (OSError, KeyError, TypeError, ValueError) as err:
        same, model = False, err
    if not same:
        msg = f"the ground truth in {truth} was not written by this package's synthetic Sun"
        raise SdofmError(msg + (f" ({model})" if isinstance(model, Exception) else ""))
    return model
