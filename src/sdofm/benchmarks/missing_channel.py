"""Missing channel: one AIA channel from the others (Salvatelli et al. 2019, 2022; Lim et al. 2021).

Models, all trained on the same split to predict the normalised target channel (log1p then
standardised with the training statistics), with a squared error on the solar disk only:
- ``fm_head``: the backbone sees every channel normalised as usual except the target, which is
  set to 0 (its training mean); a decoder turns the patch-token grid ``net.tokens(x)`` into a
  full-resolution image (1x1 convolutions, then pixel shuffle by the patch size), optionally
  concatenated with the other AIA channels at full resolution (``head_skip``) before two last
  convolutions. The backbone is frozen unless ``finetune`` is set;
- ``baseline``: the papers' model, a U-Net (encoder-decoder with skip connections) on the
  other AIA channels;
- ``climatology``: the per-pixel training mean of the target channel, in DN/s.
Metrics on disk pixels, in DN/s after inverting the normalisation, per test image then
averaged over test images with bootstrap CIs: ppe10 / ppe50 (fraction of pixels with relative
error below 10 % / 50 %), pixel Pearson correlation (the headline), RMSE, and the relative
difference of the total disk flux; the same restricted to test times inside a flare.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch import nn
from torch.nn import functional as F

from sdofm import SdofmError
from sdofm.benchmarks.common import (
    TaskInputs,
    bootstrap_ci,
    ci,
    fit,
    provenance,
    split_rows,
    write_outputs,
)
from sdofm.dataset.loader import CDELT_512, RSUN_ARCSEC, Normaliser, disk_mask
from sdofm.io import atomic_output
from sdofm.sources.events import goes_class_to_flux, read_flare_list
from sdofm.sources.sdoml import AIA_CHANNELS

__all__ = ["METRICS", "TokenDecoder", "UNet", "flaring_times", "image_metrics", "run"]

AIA = AIA_CHANNELS
METRICS = ("ppe10", "ppe50", "correlation", "rmse", "flux_diff", "abs_flux_diff")
MODELS = ("fm_head", "baseline", "climatology")


def image_metrics(pred: np.ndarray, truth: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-image metrics on the ``mask`` pixels: (N, H, W) twice -> (N, len(METRICS)).

    Columns follow `METRICS`: fraction of pixels with |pred − truth| / truth below 0.1 and 0.5,
    Pearson correlation over pixels (NaN if either image is constant), root-mean-square error,
    signed and absolute relative difference of the summed flux, (Σpred − Σtruth) / Σtruth.
    """
    p = pred[:, mask].astype(np.float64)
    t = truth[:, mask].astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        rel = np.abs(p - t) / np.abs(t)  # a zero truth pixel counts as a miss
        pc, tc = p - p.mean(axis=1, keepdims=True), t - t.mean(axis=1, keepdims=True)
        denom = np.sqrt((pc**2).sum(axis=1) * (tc**2).sum(axis=1))
        corr = np.where(denom > 0, (pc * tc).sum(axis=1) / denom, np.nan)
        flux = (p.sum(axis=1) - t.sum(axis=1)) / t.sum(axis=1)
    return np.stack(
        [
            (rel < 0.1).mean(axis=1),
            (rel < 0.5).mean(axis=1),
            corr,
            np.sqrt(((p - t) ** 2).mean(axis=1)),
            flux,
            np.abs(flux),
        ],
        axis=1,
    )


def flaring_times(times: np.ndarray, flares: pd.DataFrame, min_class: str) -> np.ndarray:
    """Whether each time lies within [start, end] of a listed flare of at least ``min_class``."""
    if flares.empty:
        return np.zeros(len(times), bool)
    size = np.array(
        [
            goes_class_to_flux(c) if isinstance(c, str) and c.strip() else f
            for c, f in zip(flares["goes_class"], flares["peak_flux"], strict=True)
        ],
        dtype=float,
    )
    big = flares[size >= goes_class_to_flux(min_class)]
    t = pd.DatetimeIndex(times).to_numpy()[:, None]
    start = big["start"].to_numpy(dtype="datetime64[ns]")[None, :]
    end = big["end"].to_numpy(dtype="datetime64[ns]")[None, :]
    return ((t >= start) & (t <= end)).any(axis=1)


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


class TokenDecoder(nn.Module):
    """Patch tokens (B, D, g, g) [+ images (B, C, g·p, g·p)] -> one image (B, 1, g·p, g·p).

    Each token is mapped (1x1 convolutions) to a p×p patch of ``width`` features, laid out at full
    resolution by pixel shuffle; with ``skip_chans`` the full-resolution images are concatenated
    before two last convolutions, so the head is not limited to the patch size.
    """

    def __init__(
        self, dim: int, patch: int, *, width: int = 16, hidden: int = 128, skip_chans: int = 0
    ):
        super().__init__()
        self.expand = nn.Sequential(
            nn.Conv2d(dim, hidden, 1),
            nn.GELU(),
            nn.Conv2d(hidden, width * patch * patch, 1),
            nn.PixelShuffle(patch),
        )
        self.skip_chans = skip_chans
        self.fuse = nn.Sequential(
            nn.Conv2d(width + skip_chans, width, 3, padding=1),
            nn.GELU(),
            nn.Conv2d(width, 1, 1),
        )

    def forward(self, tokens: torch.Tensor, images: torch.Tensor | None = None) -> torch.Tensor:
        x = self.expand(tokens)
        if self.skip_chans:
            x = torch.cat([x, images], dim=1)
        return self.fuse(x)


class _FMHead(nn.Module):
    """The decoder on the backbone's tokens; ``backbone`` None means the tokens come precomputed."""

    def __init__(self, decoder: TokenDecoder, backbone: nn.Module | None = None):
        super().__init__()
        self.decoder, self.backbone = decoder, backbone

    def forward(self, x: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
        tokens = x if self.backbone is None else self.backbone.tokens(x)
        return self.decoder(tokens, images)


class _ByRow(nn.Module):
    """Lets `fit` train a model on row numbers: its inputs are looked up in tensors kept out of
    the state dict (so early stopping does not copy the data with every best state)."""

    def __init__(self, model: nn.Module, *tables: torch.Tensor):
        super().__init__()
        self.model, self._tables = model, tables

    def forward(self, rows: torch.Tensor) -> torch.Tensor:
        return self.model(*(t[rows] for t in self._tables))


def _disk_loss(mask: np.ndarray):
    """Mean squared error over the disk pixels, (B, 1, H, W) each."""
    m = torch.from_numpy(mask.astype(np.float32))[None, None]
    n = float(m.sum())

    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (((pred - target) ** 2) * m).sum() / (n * len(pred))

    return loss


@torch.no_grad()
def _predict(model: nn.Module, *inputs: torch.Tensor, batch: int = 64) -> np.ndarray:
    model.eval()
    parts = [model(*(x[i : i + batch] for x in inputs)) for i in range(0, len(inputs[0]), batch)]
    return torch.cat(parts)[:, 0].numpy()


def _rsun_px(ds: xr.Dataset, size: int) -> float:
    """Disk radius in pixels: the store's ``rsun_px`` if it records one, else the SDOML scale."""
    for attrs in (ds.attrs, ds["images"].attrs):
        if "rsun_px" in attrs:
            return float(attrs["rsun_px"])
    return RSUN_ARCSEC / (CDELT_512 * 512 / size)


def _check(
    ds: xr.Dataset, net: nn.Module, hparams: dict[str, Any], params: dict[str, Any]
) -> tuple[int, list]:
    """Index of the target channel and of the input AIA channels; errors for unusable input."""
    channels = [str(c) for c in ds.channel.values]
    target = params["target"]
    aia = [c for c in AIA if c in channels]
    if target not in aia:
        msg = f"missing_channel: target {target!r} is not an AIA channel of the data set {aia}"
        raise SdofmError(msg)
    if str(ds.transform.values[channels.index(target)]) != "log1p":
        msg = f"missing_channel: target {target!r} is not log1p-normalised in the data set"
        raise SdofmError(msg)
    if len(aia) < 2:
        msg = f"missing_channel: needs at least one AIA channel besides {target!r}, got {aia}"
        raise SdofmError(msg)
    if list(hparams.get("channels", channels)) != channels:
        msg = (
            f"missing_channel: the backbone was trained on channels {hparams.get('channels')}, "
            f"the data set has {channels}"
        )
        raise SdofmError(msg)
    size = int(ds.sizes["y"])
    if not hasattr(net, "tokens") or getattr(net, "img_size", size) != size:
        msg = (
            f"missing_channel: the backbone ({hparams.get('backbone')}) must be an image model "
            f"with a patch-token grid for {size}² images"
        )
        raise SdofmError(msg)
    if size % 2 ** params["unet_levels"]:
        msg = f"missing_channel: image size {size} is not divisible by 2^unet_levels"
        raise SdofmError(msg)
    return channels.index(target), [channels.index(c) for c in aia if c != target]


def run(inputs: TaskInputs, out_dir: str | Path, params: dict[str, Any]) -> dict[str, Any]:
    """Train and evaluate every model; write samples.nc, predictions.csv and metrics.json."""
    from sdofm.training.pretrain import load_backbone

    ds, emb = inputs.open()
    net, hparams = load_backbone(inputs.checkpoint)
    t_idx, others = _check(ds, net, hparams, params)
    # Read the flare list before any training, so a missing or broken file fails fast.
    flares = None if inputs.events is None else read_flare_list(inputs.event_file("flares.csv"))
    size = int(ds.sizes["y"])
    mask = disk_mask(size, _rsun_px(ds, size))

    # Rows with a valid, finite target on the disk; everything else uses the usual NaN -> 0.
    candidates = np.flatnonzero(
        ds.valid.values & np.isin(ds.split.values, ["train", "val", "test"])
    )
    raw = ds.images.isel(time=candidates).values  # (N, C, H, W) physical
    finite = np.isfinite(raw[:, t_idx][:, mask]).all(axis=1)
    usable = np.zeros(ds.sizes["time"], bool)
    usable[candidates[finite]] = True
    rows = split_rows(ds, usable, "missing_channel")
    where = {r: k for k, r in enumerate(candidates)}  # store row -> position in raw
    pos = {s: torch.tensor([where[r] for r in rs], dtype=torch.long) for s, rs in rows.items()}

    norm = Normaliser(ds)
    z = torch.from_numpy(norm(raw))
    y = z[:, [t_idx]]
    skip = z[:, others].contiguous()
    z_fm = z.clone()
    z_fm[:, t_idx] = 0.0  # withheld: the training mean in normalised units
    del z
    mean, std = float(norm.mean[t_idx, 0, 0]), float(norm.std[t_idx, 0, 0])

    def to_physical(v: np.ndarray) -> np.ndarray:
        return np.expm1(v * std + mean)

    loss = _disk_loss(mask)
    train, val = (pos["train"], y[pos["train"]]), (pos["val"], y[pos["val"]])
    seed, preds = params["seed"], {}
    kw = dict(
        loss_fn=loss,
        epochs=params["max_epochs"],
        lr=params["lr"],
        batch_size=params["batch_size"],
        patience=params["patience"],
        seed=seed,
    )

    # Foundation-model head on the token grid, with the target channel withheld.
    torch.manual_seed(seed)
    with torch.no_grad():
        dim, grid = net.eval().tokens(z_fm[:1]).shape[1:3]
    decoder = TokenDecoder(
        dim,
        size // grid,
        width=params["head_width"],
        skip_chans=len(others) if params["head_skip"] else 0,
    )
    if params["finetune"]:
        head, table = _FMHead(decoder, net.train()), z_fm
    else:
        for p in net.parameters():
            p.requires_grad_(False)
        net.eval()
        with torch.no_grad():
            table = torch.cat([net.tokens(z_fm[i : i + 64]) for i in range(0, len(z_fm), 64)])
        head = _FMHead(decoder)
    fm = fit(_ByRow(head, table, skip), train, val, **kw)
    preds["fm_head"] = to_physical(_predict(fm, pos["test"]))

    # Baseline: U-Net on the other AIA channels.
    torch.manual_seed(seed)
    unet = UNet(len(others), width=params["unet_width"], levels=params["unet_levels"])
    unet = fit(_ByRow(unet, skip), train, val, **kw)
    preds["baseline"] = to_physical(_predict(unet, pos["test"]))

    # Climatology: per-pixel training mean of the target in DN/s.
    target = raw[:, t_idx]
    clim = np.nanmean(target[pos["train"].numpy()].astype(np.float64), axis=0)
    n_test = len(rows["test"])
    preds["climatology"] = np.broadcast_to(clim, (n_test, size, size))
    truth = target[pos["test"].numpy()].astype(np.float64)

    # Time of the target channel's frame, for matching flares (nominal time if unknown).
    times = pd.DatetimeIndex(ds.time.values[rows["test"]])
    if "frame_time" in ds:
        ft = pd.DatetimeIndex(ds.frame_time.values[rows["test"], t_idx])
        times = pd.DatetimeIndex(np.where(ft.isna(), times, ft))
    min_class = params["min_flare_class"]
    flaring = np.zeros(n_test, bool) if flares is None else flaring_times(times, flares, min_class)

    per_sample = {m: image_metrics(p, truth, mask) for m, p in preds.items()}
    result = {
        "task": "missing_channel",
        "metric": (
            f"AIA {params['target']} from the other AIA channels: on-disk pixel correlation, "
            "ppe10/ppe50, RMSE (DN/s) and relative total-flux difference, mean over test images"
        ),
        "target": params["target"],
        "inputs": [str(ds.channel.values[i]) for i in others],
        "split": {s: int(len(r)) for s, r in rows.items()},
        "split_ranges": {
            s: [str(ds.time.values[r].min()), str(ds.time.values[r].max())]
            for s, r in rows.items()
            if len(r)
        },
        "models": _summarise(per_sample, np.arange(n_test), params),
        "headline": {
            "metric": "correlation",
            "label": f"pixel Pearson correlation on the disk, AIA {params['target']} (DN/s)",
            "higher_is_better": True,
        },
        "fm_head_minus_baseline": _paired(per_sample, params),
        "flare_times": {
            "min_class": min_class,
            "count": int(flaring.sum()),
            "models": (
                _summarise(per_sample, np.flatnonzero(flaring), params) if flaring.any() else None
            ),
        },
        "published_anchor": {
            "correlation": [0.84, 0.97],
            "note": (
                "average on-disk pixel correlation over the nine AIA channels, each translated "
                "from the best 1 (0.84), 2 (0.95) or 3 (0.97) other channels by a conditional GAN"
            ),
            "source": "Lim et al. 2021, ApJL 915 L31 (real SDO data)",
        },
        "provenance": provenance(params, checkpoint=inputs.checkpoint),
    }
    result["provenance"]["embeddings_checkpoint_sha256"] = emb.attrs.get("checkpoint_sha256")

    table = pd.concat(
        [
            pd.DataFrame(
                {
                    "time": ds.time.values[rows["test"]],
                    "model": name,
                    **{k: v[:, j] for j, k in enumerate(METRICS)},
                    "flaring": flaring,
                }
            )
            for name, v in per_sample.items()
        ],
        ignore_index=True,
    )
    _write_samples(
        Path(out_dir) / "samples.nc",
        truth,
        preds,
        mask,
        ds.time.values[rows["test"]],
        flaring,
        params,
        rsun_px=_rsun_px(ds, size),
    )
    write_outputs(result, table, out_dir)
    return result


def _summarise(per_sample: dict, idx: np.ndarray, params: dict) -> dict[str, Any]:
    """Mean of each per-image metric over the rows ``idx``, with bootstrap CIs."""
    out = {}
    for name, v in per_sample.items():
        sub = v[idx]
        point, lo, hi = bootstrap_ci(
            lambda i, sub=sub: np.nanmean(sub[i], axis=0),
            len(sub),
            resamples=params["bootstrap"],
            seed=params["seed"],
        )
        out[name] = {k: ci(point[j], lo[j], hi[j]) for j, k in enumerate(METRICS)}
    return out


def _paired(per_sample: dict, params: dict) -> dict[str, Any]:
    """FM head minus baseline mean correlation, on the same bootstrap resamples."""
    j = METRICS.index("correlation")
    d = per_sample["fm_head"][:, j] - per_sample["baseline"][:, j]
    point, lo, hi = bootstrap_ci(
        lambda i: np.array([np.nanmean(d[i])]),
        len(d),
        resamples=params["bootstrap"],
        seed=params["seed"],
    )
    return {"correlation": ci(point[0], lo[0], hi[0])}


def _write_samples(
    path: Path,
    truth: np.ndarray,
    preds: dict[str, np.ndarray],
    mask: np.ndarray,
    times: np.ndarray,
    flaring: np.ndarray,
    params: dict,
    *,
    rsun_px: float,
    bins: int = 60,
) -> None:
    """A few test images (truth and every model, DN/s) and 2-D histograms of all disk pixels."""
    n = len(truth)
    pick = np.unique(np.linspace(0, n - 1, min(params["n_samples"], n)).round().astype(int))
    if flaring.any() and not flaring[pick].any():  # show the brightest flaring time too
        fl = np.flatnonzero(flaring)
        pick[len(pick) // 2] = fl[np.argmax(truth[fl][:, mask].sum(axis=1))]
        pick = np.unique(pick)
    t = truth[:, mask]
    lo, hi = np.log10(max(t[t > 0].min(), 1e-3)), np.log10(t.max())
    edges = np.linspace(lo, hi, bins + 1)
    names = list(preds)
    hist = np.stack(
        [
            np.histogram2d(
                np.log10(np.clip(t.ravel(), 10**lo, 10**hi)),
                np.log10(np.clip(preds[m][:, mask].ravel(), 10**lo, 10**hi)),
                bins=[edges, edges],
            )[0]
            for m in names
        ]
    )
    size = truth.shape[-1]
    out = xr.Dataset(
        {
            "truth": (("sample", "y", "x"), truth[pick].astype(np.float32)),
            "prediction": (
                ("model", "sample", "y", "x"),
                np.stack([preds[m][pick] for m in names]).astype(np.float32),
            ),
            "flaring": (("sample",), flaring[pick]),
            "hist": (("model", "true_bin", "pred_bin"), hist.astype(np.int64)),
            "bin_edges": (("edge",), edges),
        },
        coords={"time": (("sample",), times[pick]), "model": names},
        attrs={
            "channel": params["target"],
            "units": "DN/s",
            "rsun_px": rsun_px,
            "arcsec_per_px": CDELT_512 * 512 / size,
            "hist_note": "counts of all test disk pixels, log10 DN/s bins, values clipped to range",
        },
    )
    with atomic_output(path) as tmp:
        out.to_netcdf(tmp)
