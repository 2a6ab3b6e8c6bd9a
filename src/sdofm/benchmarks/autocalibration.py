"""Auto-calibration: AIA dimming factors from dimmed images (Dos Santos et al. 2021, A&A 648, A53).

Every AIA channel of every sample is multiplied, in physical units (DN/s), by a dimming factor
α drawn uniformly from [alpha_min, 1]; the draws are seeded per split, with several draws per
time step. Each model predicts α per channel from the dimmed images.

Models, all trained on the same split and the same draws:
- ``fm_head``: an MLP with a sigmoid output on the frozen backbone's embedding of the dimmed
  images (normalised with the store's training statistics, HMI channels as they are); with
  ``finetune`` the backbone is trained with the head;
- ``baseline_multichannel``: the paper's CNN (conv → ReLU → max-pool, twice, then dense and
  sigmoid) on all AIA channels, one α per channel;
- ``baseline_singlechannel``: the same CNN once per channel, each seeing only its own channel;
- ``climatology``: the training-mean α of each channel.
Metric: fraction of test samples with |α̂ − α| < 0.05 (and < 0.01) per channel, its mean over
channels (the headline), and the mean absolute error, with bootstrap CIs over test time steps.
On the synthetic Sun the planted degradation is put back into the (degradation-corrected)
images, relative to the start of the training period, and each model's recovered degradation
curve is compared with the planted one.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch import nn

from sdofm import SdofmError
from sdofm.benchmarks.common import (
    Standardise,
    TaskInputs,
    bootstrap_ci,
    ci,
    fit,
    provenance,
    split_rows,
    write_outputs,
)
from sdofm.dataset.loader import CDELT_512, RSUN_ARCSEC, Normaliser
from sdofm.io import atomic_output
from sdofm.sources.sdoml import AIA_CHANNELS
from sdofm.training.pretrain import load_backbone

__all__ = [
    "DimmingCNN",
    "calibration_scores",
    "dimming_factors",
    "planted_dimming",
    "run",
]

AIA = AIA_CHANNELS
SPLITS = ("train", "val", "test")
THRESHOLDS = (0.05, 0.01)
HEADLINE = "frac_within_0.05"
PAIRED_BASELINE = "baseline_multichannel"
N_EXAMPLES = 3  # test time steps kept with their images for the report


def dimming_factors(
    n: int, draws: int, channels: int, *, seed: int, split: str, low: float
) -> np.ndarray:
    """Dimming factors uniform in [low, 1], reproducible per (seed, split): (n, draws, channels)."""
    rng = np.random.default_rng([seed, SPLITS.index(split)])
    return rng.uniform(low, 1.0, size=(n, draws, channels))


def calibration_scores(pred: np.ndarray, truth: np.ndarray) -> dict[str, np.ndarray]:
    """Per-channel scores of α̂ against α, both (..., C): fraction within each threshold, MAE."""
    err = np.abs(pred - truth).reshape(-1, truth.shape[-1])
    out = {f"frac_within_{t}": (err < t).mean(axis=0) for t in THRESHOLDS}
    out["mae"] = err.mean(axis=0)
    return out


def planted_dimming(
    truth: str | Path, times: np.ndarray, channels: list[str], reference: np.datetime64, low: float
) -> np.ndarray:
    """The planted degradation at ``times`` relative to ``reference``, clipped to [low, 1]: (T, C).

    ``degradation.csv`` holds the daily fraction of the launch sensitivity; the store's images
    were divided by it. Multiplying them by factor(t) / factor(reference) gives what an
    instrument calibrated at ``reference`` (the start of the training period) would record, so
    that ratio is the dimming a model trained on corrected images should find.
    """
    path = Path(truth) / "degradation.csv"
    if not path.exists():
        msg = f"no planted degradation curve {path} in the ground-truth folder"
        raise SdofmError(msg)
    table = pd.read_csv(path, index_col="time", parse_dates=["time"])
    missing = [c for c in channels if c not in table.columns]
    if missing:
        msg = f"{path} has no column for the channels {missing}"
        raise SdofmError(msg)
    days = table.index.values.astype("datetime64[ns]").astype(np.int64).astype(np.float64)
    at = np.append(times, reference).astype("datetime64[ns]").astype(np.int64).astype(np.float64)
    if at.min() < days.min() or at.max() > days.max() + 86400e9:
        msg = f"{path} covers {table.index.min()} to {table.index.max()}, not every time step"
        raise SdofmError(msg)
    factor = np.stack([np.interp(at, days, table[c].to_numpy(float)) for c in channels], axis=1)
    return np.clip(factor[:-1] / factor[-1], low, 1.0)


class DimmingCNN(nn.Module):
    """The paper's CNN: (conv → ReLU → max-pool) twice, then dense and sigmoid; α per channel.

    ``groups=1``: the multi-channel model (every channel in, one α per channel out).
    ``groups=channels``: independent single-channel models, one per channel, each seeing only
    its own channel (grouped convolutions and a block-diagonal dense layer: no weight is shared
    and no channel sees another; they only share the optimiser's batches and early stopping).
    """

    def __init__(
        self,
        channels: int,
        size: int,
        *,
        groups: int = 1,
        filters: tuple[int, int] = (16, 32),
        kernel: int = 3,
        pool: int = 2,
    ):
        super().__init__()
        if channels % groups:
            msg = f"{channels} channels cannot be split into {groups} groups"
            raise ValueError(msg)
        f1, f2 = filters
        pad = kernel // 2
        self.features = nn.Sequential(
            nn.Conv2d(channels, f1 * groups, kernel, padding=pad, groups=groups),
            nn.ReLU(),
            nn.MaxPool2d(pool),
            nn.Conv2d(f1 * groups, f2 * groups, kernel, padding=pad, groups=groups),
            nn.ReLU(),
            nn.MaxPool2d(pool),
        )
        side = size // pool // pool
        n_in, n_out = f2 * side * side, channels // groups
        self.groups = groups
        bound = n_in**-0.5  # nn.Linear's initialisation, per group
        self.weight = nn.Parameter(torch.empty(groups, n_in, n_out).uniform_(-bound, bound))
        self.bias = nn.Parameter(torch.empty(groups, n_out).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> α (B, C) in (0, 1)."""
        h = self.features(x).reshape(len(x), self.groups, -1)  # grouped outputs are contiguous
        out = torch.einsum("bgf,gfo->bgo", h, self.weight) + self.bias
        return torch.sigmoid(out.reshape(len(x), -1))


class _FineTuned(nn.Module):
    """Backbone encoder ([CLS, mean patch token], as ``net.embed``) and head, trained together."""

    def __init__(self, net: nn.Module, head: nn.Module):
        super().__init__()
        self.net, self.head = net, head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        latent, _, _ = self.net.forward_encoder(x, 0.0)
        return self.head(torch.cat([latent[:, 0], latent[:, 1:].mean(dim=1)], dim=1))


class _Samples:
    """Physical images of the usable rows, and the dimmed inputs every model sees."""

    def __init__(self, ds: xr.Dataset, rows: np.ndarray, aia: list[str], params: dict[str, Any]):
        channels = [str(c) for c in ds.channel.values]
        self.aia_index = [channels.index(c) for c in aia]
        self.row_pos = {int(r): k for k, r in enumerate(rows)}
        self.physical = ds.images.isel(time=rows).values.astype(np.float32)  # (N, C_all, H, W)
        self.norm = Normaliser(ds)  # every channel, as the backbone was trained
        # CNN inputs: AIA binned, then scaled by the training mean of each channel (linear, so a
        # dimming stays a multiplicative factor, as in the paper).
        b = params["cnn_bin"]
        aia_phys = np.nan_to_num(self.physical[:, self.aia_index], nan=0.0)
        n, c, h, w = aia_phys.shape
        if h % b or w % b:
            msg = f"cnn_bin {b} does not divide the image size {h}x{w}"
            raise SdofmError(msg)
        self.cnn = aia_phys.reshape(n, c, h // b, b, w // b, b).mean(axis=(3, 5))
        self.size = h // b

    def scale_cnn(self, train_rows: np.ndarray) -> None:
        """Divide the CNN inputs by the training split's mean of each channel."""
        pos = [self.row_pos[int(r)] for r in train_rows]
        mean = self.cnn[pos].mean(axis=(0, 2, 3), dtype=np.float64)
        if not (mean > 0).all():
            msg = f"the training mean of an AIA channel is not positive: {mean}"
            raise SdofmError(msg)
        self.cnn /= mean[None, :, None, None].astype(np.float32)

    def cnn_input(self, rows: np.ndarray, alpha: np.ndarray) -> torch.Tensor:
        """Dimmed CNN inputs, one per (row, draw): alpha (n, D, C) -> (n·D, C, h, w)."""
        x = self.cnn[[self.row_pos[int(r)] for r in rows]]
        dimmed = x[:, None] * alpha[..., None, None].astype(np.float32)
        return torch.from_numpy(dimmed.reshape(-1, *x.shape[1:]))

    def backbone_input(self, rows: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """Normalised images with the AIA channels dimmed: (n·D, C_all, H, W)."""
        x = np.repeat(self.physical[[self.row_pos[int(r)] for r in rows]], alpha.shape[1], axis=0)
        x[:, self.aia_index] *= alpha.reshape(-1, alpha.shape[2])[..., None, None]
        return self.norm(x)

    def embed(self, net: nn.Module, rows: np.ndarray, alpha: np.ndarray) -> np.ndarray:
        """Backbone embeddings of the dimmed images, a few rows at a time: (n·D, 2D)."""
        step = max(1, 256 // alpha.shape[1])
        parts = [
            _batched(net.embed, self.backbone_input(rows[i : i + step], alpha[i : i + step]), 256)
            for i in range(0, max(len(rows), 1), step)  # one (empty) part when there are no rows
        ]
        return np.concatenate(parts).astype(np.float32)


def _batched(fn, x: torch.Tensor | np.ndarray, batch: int = 128) -> np.ndarray:
    """``fn`` over the first axis in batches, without gradients (float64 numpy out)."""
    with torch.no_grad():
        if len(x) == 0:  # the output width from one blank sample
            width = fn(torch.zeros((1, *x.shape[1:]))).shape[1:]
            return np.zeros((0, *width))
        out = [fn(torch.as_tensor(x[i : i + batch])).numpy() for i in range(0, len(x), batch)]
    return np.concatenate(out).astype(np.float64)


def _mlp(width: int, hidden: int, n_out: int, mean: torch.Tensor, std: torch.Tensor) -> nn.Module:
    return nn.Sequential(
        Standardise(mean, std),
        nn.Linear(width, hidden),
        nn.GELU(),
        nn.Linear(hidden, n_out),
        nn.Sigmoid(),
    )


def _check_params(params: dict[str, Any]) -> None:
    if not 0.0 < params["alpha_min"] < 1.0:
        msg = f"alpha_min must lie in (0, 1), got {params['alpha_min']}"
        raise SdofmError(msg)
    for key in ("train_draws", "eval_draws", "cnn_bin"):
        if int(params[key]) < 1:
            msg = f"{key} must be at least 1, got {params[key]}"
            raise SdofmError(msg)


def _open_checked(
    inputs: TaskInputs, params: dict[str, Any]
) -> tuple[xr.Dataset, xr.Dataset, nn.Module, list[str]]:
    """The store, its embeddings, the backbone and the AIA channels, checked to fit together."""
    ds, emb = inputs.open()
    aia = [c for c in AIA if c in ds.channel.values]
    if not aia:
        msg = f"{inputs.dataset} has no AIA channel (expected some of {list(AIA)})"
        raise SdofmError(msg)
    net, hp = load_backbone(inputs.checkpoint)
    store_channels = [str(c) for c in ds.channel.values]
    if list(hp.get("channels", store_channels)) != store_channels:
        msg = (
            f"the backbone was trained on channels {hp['channels']}, the store has {store_channels}"
        )
        raise SdofmError(msg)
    size = hp.get("net_kwargs", hp).get("img_size", ds.sizes["x"])
    if size != ds.sizes["x"] or hp.get("frames", 1) != 1:
        msg = (
            f"the backbone takes {hp.get('frames', 1)} frame(s) of {size}² images; this task "
            f"gives it single {ds.sizes['x']}² images"
        )
        raise SdofmError(msg)
    if params["finetune"] and not hasattr(net, "forward_encoder"):
        msg = f"finetune needs an MAE backbone (with forward_encoder), not {hp.get('backbone')}"
        raise SdofmError(msg)
    return ds, emb, net, aia


def run(inputs: TaskInputs, out_dir: str | Path, params: dict[str, Any]) -> dict[str, Any]:
    """Train and evaluate every model; write metrics.json, predictions.csv and the figures' data."""
    _check_params(params)
    ds, emb, net, aia = _open_checked(inputs, params)
    rows = split_rows(ds, ds.valid.values, "autocalibration")
    usable = np.flatnonzero(ds.valid.values)  # every split, and the buffers for the curve
    seed, low, n_c = params["seed"], params["alpha_min"], len(aia)
    torch.manual_seed(seed)

    # The planted degradation (synthetic Sun only), read before any training.
    planted = None
    if inputs.truth is not None:
        reference = ds.time.values[rows["train"][0]]
        planted = planted_dimming(inputs.truth, ds.time.values[usable], aia, reference, low)

    samples = _Samples(ds, usable, aia, params)
    samples.scale_cnn(rows["train"])
    alpha = {
        s: dimming_factors(
            len(r),
            params["train_draws"] if s == "train" else params["eval_draws"],
            n_c,
            seed=seed,
            split=s,
            low=low,
        )
        for s, r in rows.items()
    }

    predictors = {
        "fm_head": _fit_fm_head(net, samples, rows, alpha, params),
        **_fit_cnns(samples, rows, alpha, params),
    }
    clim = alpha["train"].reshape(-1, n_c).mean(axis=0)
    predictors["climatology"] = lambda r, a: np.tile(clim, (len(r) * a.shape[1], 1))

    def predict(r: np.ndarray, a: np.ndarray) -> dict[str, np.ndarray]:
        """Every model's α̂ for the rows ``r`` dimmed by ``a`` (n, D, C)."""
        return {m: f(r, a).reshape(a.shape) for m, f in predictors.items()}

    test_pred = predict(rows["test"], alpha["test"])
    metrics = _metrics(test_pred, alpha["test"], aia, params)

    # The planted degradation curve, put back into the corrected images (synthetic Sun only).
    curve = None
    if planted is not None:
        times = ds.time.values[usable]
        recovered = predict(usable, planted[:, None, :])
        is_test = np.isin(usable, rows["test"])
        _curve_metrics(metrics, recovered, planted, is_test, aia, params)
        split = ds.split.values[usable]
        curve = pd.concat(
            [
                pd.DataFrame(
                    {
                        "time": times,
                        "split": split,
                        "channel": c,
                        "planted": planted[:, k],
                        **{m: p[:, 0, k] for m, p in recovered.items()},
                    }
                )
                for k, c in enumerate(aia)
            ]
        )

    result = {
        "task": "autocalibration",
        "metric": "fraction of test samples with |alpha_hat - alpha| < 0.05 per AIA channel "
        "(mean over channels), for random dimmings alpha in [alpha_min, 1]",
        "channels": aia,
        "split": {s: int(len(r)) for s, r in rows.items()},
        "samples": {s: int(a.shape[0] * a.shape[1]) for s, a in alpha.items()},
        "split_ranges": {
            s: [str(ds.time.values[r].min()), str(ds.time.values[r].max())]
            for s, r in rows.items()
            if len(r)
        },
        "models": metrics,
        "headline": {
            "metric": HEADLINE,
            "label": "fraction of test samples with |α̂ − α| < 0.05 (mean over channels)",
            "higher_is_better": True,
        },
        "paired_baseline": PAIRED_BASELINE,
        "curve_note": "curve_mae: mean |recovered - planted| over test time steps; "
        "curve_mae_all_times: over every valid time step, training period included (images "
        "the models were trained on, with other dimmings)",
        "curve_reference_time": str(ds.time.values[rows["train"][0]])
        if curve is not None
        else None,
        "published_anchor": {
            "frac_within_0.05_multichannel": 0.99,
            "frac_within_0.05_singlechannel": 0.84,
            "source": "Dos Santos et al. 2021, A&A 648, A53 (real SDO data)",
        },
        "provenance": provenance(params, checkpoint=inputs.checkpoint),
    }
    result["provenance"]["embeddings_checkpoint_sha256"] = emb.attrs.get("checkpoint_sha256")

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    if curve is not None:
        with atomic_output(out_dir / "curve.csv") as tmp:
            curve.to_csv(tmp, index=False)
    _write_examples(
        out_dir / "samples.nc", ds, samples, rows["test"], alpha["test"], test_pred, aia
    )
    n_t, n_d = alpha["test"].shape[:2]
    table = pd.DataFrame(
        {
            "time": np.repeat(ds.time.values[rows["test"]], n_d * n_c),
            "draw": np.tile(np.repeat(np.arange(n_d), n_c), n_t),
            "channel": np.tile(aia, n_t * n_d),
            "alpha_true": alpha["test"].ravel(),
            **{m: p.ravel() for m, p in test_pred.items()},
        }
    )
    write_outputs(result, table, out_dir)
    return result


def _targets(alpha: np.ndarray) -> torch.Tensor:
    """α (n, D, C) as training targets, one row per (time step, draw)."""
    return torch.tensor(alpha.reshape(-1, alpha.shape[-1]), dtype=torch.float32)


def _fit_fm_head(
    net: nn.Module,
    samples: _Samples,
    rows: dict[str, np.ndarray],
    alpha: dict[str, np.ndarray],
    params: dict[str, Any],
) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """The MLP head on frozen embeddings of the dimmed images (then the backbone, with finetune).

    Returns the predictor ``(rows, alpha) -> α̂ (n·D, C)``.
    """
    seed, n_c = params["seed"], alpha["train"].shape[-1]
    for p in net.parameters():
        p.requires_grad_(False)
    z = {s: samples.embed(net, rows[s], alpha[s]) for s in ("train", "val")}
    mean, std = z["train"].mean(axis=0), z["train"].std(axis=0) + 1e-6
    head = _mlp(
        z["train"].shape[1], params["head_hidden"], n_c, torch.tensor(mean), torch.tensor(std)
    )
    head = fit(
        head,
        (torch.from_numpy(z["train"]), _targets(alpha["train"])),
        (torch.from_numpy(z["val"]), _targets(alpha["val"])),
        epochs=params["max_epochs"],
        lr=1e-3,
        weight_decay=1e-2,
        seed=seed,
    )
    if not params["finetune"]:
        return lambda r, a: _batched(head, samples.embed(net, r, a))
    # Fine-tuning starts from the head fitted on frozen embeddings.
    for p in net.parameters():
        p.requires_grad_(True)
    inputs = {
        s: torch.from_numpy(samples.backbone_input(rows[s], alpha[s])) for s in ("train", "val")
    }
    tuned = fit(
        _FineTuned(net, head),
        (inputs["train"], _targets(alpha["train"])),
        (inputs["val"], _targets(alpha["val"])),
        epochs=params["finetune_epochs"],
        lr=params["finetune_lr"],
        weight_decay=1e-2,
        batch_size=32,
        patience=5,
        seed=seed,
    )
    for p in net.parameters():
        p.requires_grad_(False)
    return lambda r, a: _batched(tuned, samples.backbone_input(r, a), 64)


def _fit_cnns(
    samples: _Samples,
    rows: dict[str, np.ndarray],
    alpha: dict[str, np.ndarray],
    params: dict[str, Any],
) -> dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]]:
    """The paper's CNNs, multi-channel and single-channel, trained on the same draws."""
    n_c = alpha["train"].shape[-1]
    x = {s: samples.cnn_input(rows[s], alpha[s]) for s in ("train", "val")}
    out = {}
    for name, groups, filters in (
        ("baseline_multichannel", 1, params["cnn_filters"]),
        ("baseline_singlechannel", n_c, params["cnn_filters_single"]),
    ):
        torch.manual_seed(params["seed"])
        cnn = DimmingCNN(n_c, samples.size, groups=groups, filters=tuple(filters))
        cnn = fit(
            cnn,
            (x["train"], _targets(alpha["train"])),
            (x["val"], _targets(alpha["val"])),
            epochs=params["cnn_epochs"],
            lr=params["cnn_lr"],
            weight_decay=0.0,
            batch_size=32,
            patience=10,
            seed=params["seed"],
        )
        out[name] = lambda r, a, cnn=cnn: _batched(cnn, samples.cnn_input(r, a))
    return out


def _metrics(
    preds: dict[str, np.ndarray], truth: np.ndarray, channels: list[str], params: dict[str, Any]
) -> dict[str, Any]:
    """Per-channel and channel-mean scores with CIs over test time steps, and the paired delta."""
    n, b, seed = len(truth), params["bootstrap"], params["seed"]
    names = [*(f"frac_within_{t}" for t in THRESHOLDS), "mae"]
    k = len(channels)
    out: dict[str, Any] = {}
    for model, p in preds.items():

        def stat(i, p=p):
            s = calibration_scores(p[i], truth[i])
            return np.concatenate([np.concatenate([s[m], [s[m].mean()]]) for m in names])

        point, lo, hi = bootstrap_ci(stat, n, resamples=b, seed=seed)
        entry: dict[str, Any] = {"per_channel": {}}
        for j, m in enumerate(names):
            o = j * (k + 1)
            entry[m] = ci(point[o + k], lo[o + k], hi[o + k])
            entry["per_channel"][m] = {
                c: ci(point[o + q], lo[o + q], hi[o + q]) for q, c in enumerate(channels)
            }
        out[model] = entry

    def diff(i):
        d = [calibration_scores(preds[m][i], truth[i]) for m in ("fm_head", PAIRED_BASELINE)]
        return np.array([d[0][m].mean() - d[1][m].mean() for m in names])

    point, lo, hi = bootstrap_ci(diff, n, resamples=b, seed=seed)
    out["fm_head_minus_baseline"] = {m: ci(point[j], lo[j], hi[j]) for j, m in enumerate(names)}
    return out


def _curve_metrics(
    metrics: dict[str, Any],
    recovered: dict[str, np.ndarray],
    planted: np.ndarray,
    is_test: np.ndarray,
    channels: list[str],
    params: dict[str, Any],
) -> None:
    """MAE between each model's recovered degradation curve and the planted one (test steps)."""
    for model, p in recovered.items():
        err = np.abs(p[:, 0] - planted)

        def stat(i, e=err[is_test]):
            m = e[i].mean(axis=0)
            return np.concatenate([m, [m.mean()]])

        b, seed, k = params["bootstrap"], params["seed"], len(channels)
        point, lo, hi = bootstrap_ci(stat, int(is_test.sum()), resamples=b, seed=seed)
        metrics[model]["curve_mae"] = ci(point[k], lo[k], hi[k])
        everywhere = bootstrap_ci(lambda i, e=err: e[i].mean(), len(err), resamples=b, seed=seed)
        metrics[model]["curve_mae_all_times"] = ci(*everywhere)
        metrics[model]["per_channel"]["curve_mae"] = {
            c: ci(point[q], lo[q], hi[q]) for q, c in enumerate(channels)
        }


def _write_examples(
    path: Path,
    ds: xr.Dataset,
    samples: _Samples,
    test_rows: np.ndarray,
    alpha: np.ndarray,
    preds: dict[str, np.ndarray],
    channels: list[str],
) -> None:
    """A few test time steps (undimmed physical AIA images, first draw) for the report."""
    pick = np.unique(np.linspace(0, len(test_rows) - 1, N_EXAMPLES).round().astype(int))
    rows = test_rows[pick]
    images = samples.physical[[samples.row_pos[int(r)] for r in rows]][:, samples.aia_index]
    size = images.shape[-1]
    out = xr.Dataset(
        {
            "images": (("example", "channel", "y", "x"), images),
            "alpha_true": (("example", "channel"), alpha[pick, 0]),
            "alpha_pred": (
                ("model", "example", "channel"),
                np.stack([p[pick, 0] for p in preds.values()]),
            ),
        },
        coords={
            "time": ("example", ds.time.values[rows]),
            "channel": channels,
            "model": list(preds),
        },
        attrs={
            "arcsec_per_px": CDELT_512 * 512 / size,
            "rsun_arcsec": RSUN_ARCSEC,
            "note": "undimmed physical AIA images (DN/s); the dimmed input is images * alpha_true",
        },
    )
    with atomic_output(path) as tmp:
        out.to_netcdf(tmp)
