"""Full-disk flare forecasting: a flare of at least M1.0 within 24 h (Pandey et al. 2023).

Pandey, Angryk & Aydin (2023, ICMLA) predict >=M1.0 flares within 24 h from full-disk HMI
line-of-sight magnetograms with CNNs, cross-validated over four time-segmented folds, and score
the recall of near-limb flares (beyond 70 degrees of longitude) separately.

Label: for each time step t, whether a flare of at least ``min_class`` peaks in (t, t + horizon]
(`sdofm.sources.events.flare_labels` on the event folder's ``flares.csv``).

Cross-validation instead of the store's split: flares are rare, so, as the paper does with
tri-monthly partitions, the usable time steps are cut into ``folds`` contiguous segments of
equal duration. Each fold tests on one segment and trains on the others, less ``buffer_days``
on each side of the test segment (no neighbouring frame, and no shared flare, on both sides);
the last ``early_stop_fraction`` of the remaining training time (again behind a buffer) is held
out for early stopping and for choosing the probability threshold. Every usable time step is
tested exactly once.

Models, all trained per fold on the same rows:
- ``fm_head``: a logistic (``head: linear``) or MLP head on the frozen foundation-model
  embeddings, class-weighted binary cross-entropy; with ``finetune: true`` the backbone is then
  fine-tuned with the head through its encoder (linear probe, then fine-tuning);
- ``baseline``: after the paper, a CNN on the HMI magnetogram channels (``baseline_channels``),
  here small and trained from scratch, with class-weighted binary cross-entropy;
- ``climatology``: the training base rate, which never reaches a TSS-useful threshold, so it
  always forecasts "no flare" (TSS 0, HSS2 0).
Class-weighted losses inflate the odds of a flare by the weight; the probabilities reported are
corrected back (logit − log weight), which leaves TSS and ROC AUC unchanged and makes the Brier
score and reliability diagram meaningful.

Metrics: TSS (headline) and HSS2 at the threshold maximising TSS on the fold's early-stopping
rows, ROC AUC and Brier score, per fold (mean ± sd) and pooled over the folds' test rows with
bootstrap CIs (blocks of one horizon, so a flare's neighbouring frames are resampled together);
recall for flares beyond ``limb_deg`` of central-meridian distance against central ones;
integrated-gradient saliency of the FM head through the backbone for a few flaring test events.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr
from scipy.stats import rankdata
from scipy.stats import t as student_t
from torch import nn

from sdofm import SdofmError
from sdofm.benchmarks.common import TaskInputs, ci, fit, provenance, write_outputs
from sdofm.dataset.loader import CDELT_512, RSUN_ARCSEC, SDOImages
from sdofm.io import atomic_output, file_sha256
from sdofm.sources.events import flare_labels, goes_class_to_flux, read_flare_list

__all__ = [
    "FMClassifier",
    "FlareCNN",
    "best_threshold",
    "brier",
    "flare_in_window",
    "hss2",
    "integrated_gradients",
    "roc_auc",
    "run",
    "time_folds",
    "tss",
]

MODELS = ("fm_head", "baseline", "climatology")
METRICS = ("tss", "hss2", "roc_auc", "brier")


# --------------------------------------------------------------------------------------------
# Scores


def _confusion(y: np.ndarray, yes: np.ndarray) -> tuple[int, int, int, int]:
    """(TP, FN, FP, TN) of binary forecasts ``yes`` against outcomes ``y``."""
    y, yes = np.asarray(y, bool), np.asarray(yes, bool)
    tp = int(np.sum(y & yes))
    fn = int(np.sum(y & ~yes))
    fp = int(np.sum(~y & yes))
    return tp, fn, fp, len(y) - tp - fn - fp


def tss(y: np.ndarray, yes: np.ndarray) -> float:
    """True skill statistic TP/(TP+FN) − FP/(FP+TN); NaN without positives or negatives."""
    tp, fn, fp, tn = _confusion(y, yes)
    if tp + fn == 0 or fp + tn == 0:
        return float("nan")
    return tp / (tp + fn) - fp / (fp + tn)


def hss2(y: np.ndarray, yes: np.ndarray) -> float:
    """Heidke skill score 2: 2(TP·TN − FN·FP) / ((TP+FN)(FN+TN) + (TP+FP)(FP+TN)).

    NaN when the denominator is 0 (a single outcome class forecast perfectly).
    """
    tp, fn, fp, tn = _confusion(y, yes)
    den = (tp + fn) * (fn + tn) + (tp + fp) * (fp + tn)
    return 2.0 * (tp * tn - fn * fp) / den if den else float("nan")


def roc_auc(y: np.ndarray, p: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney, ties count half); NaN with one class."""
    y = np.asarray(y, bool)
    n_pos, n_neg = int(y.sum()), int((~y).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(p)
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def brier(y: np.ndarray, p: np.ndarray) -> float:
    """Brier score: mean squared difference of probability and outcome (0 is perfect)."""
    return float(np.mean((np.asarray(p, float) - np.asarray(y, float)) ** 2))


def best_threshold(y: np.ndarray, p: np.ndarray) -> float:
    """The probability threshold (forecast "flare" where p >= it) maximising TSS on (y, p).

    Candidates lie between consecutive distinct probabilities, below the smallest and above the
    largest ("never"); ties go to the highest threshold (fewest false alarms). NaN when TSS is
    undefined (one outcome class).
    """
    y, p = np.asarray(y, bool), np.asarray(p, float)
    if y.all() or not y.any():
        return float("nan")
    u = np.unique(p)
    cand = np.concatenate([[u[0] / 2], (u[:-1] + u[1:]) / 2, [(u[-1] + 1) / 2]])
    # TPR and FPR at every candidate, from sorted probabilities.
    pos, neg = np.sort(p[y]), np.sort(p[~y])
    tpr = 1 - np.searchsorted(pos, cand, side="left") / len(pos)
    fpr = 1 - np.searchsorted(neg, cand, side="left") / len(neg)
    score = tpr - fpr
    best = np.flatnonzero(score >= score.max() - 1e-12)
    return float(cand[best[-1]])


def _scores(y: np.ndarray, p: np.ndarray, yes: np.ndarray) -> np.ndarray:
    """[TSS, HSS2, ROC AUC, Brier] in the order of `METRICS`."""
    return np.array([tss(y, yes), hss2(y, yes), roc_auc(y, p), brier(y, p)])


def _bootstrap(stat, blocks: np.ndarray, *, resamples: int, seed: int):
    """Point value and 95 % percentile interval of ``stat(rows)``, resampling whole blocks.

    ``blocks`` gives each row's block number; NaN draws (e.g. a resample without a near-limb
    flare) are left out of the percentiles.
    """
    rng = np.random.default_rng(seed)
    ids = np.unique(blocks)
    members = [np.flatnonzero(blocks == b) for b in ids]
    point = np.asarray(stat(np.arange(len(blocks))), float)
    draws = np.empty((resamples, len(point)))
    for d in range(resamples):
        pick = rng.integers(0, len(ids), len(ids))
        draws[d] = stat(np.concatenate([members[j] for j in pick]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column stays NaN
        lo, hi = np.nanpercentile(draws, [2.5, 97.5], axis=0)
    return point, lo, hi


# --------------------------------------------------------------------------------------------
# Labels and folds


def flare_in_window(
    flares: pd.DataFrame, times: Any, horizon: pd.Timedelta, min_class: str
) -> pd.DataFrame:
    """The largest flare of at least ``min_class`` peaking in (t, t + horizon], for each t.

    Returns columns goes_class, peak_flux, lat, lon (NaN/empty where there is none), one row per
    time. Size is the GOES class's flux, as `flare_labels` counts it.
    """
    size = np.array(
        [goes_class_to_flux(c) if isinstance(c, str) and c else np.nan for c in flares.goes_class]
    )
    size = np.where(np.isfinite(size), size, flares.peak_flux.to_numpy(float))
    keep = size >= goes_class_to_flux(min_class) * (1 - 1e-9)
    q = flares[keep].reset_index(drop=True)
    q_size = size[keep]
    peak = pd.DatetimeIndex(q.peak).as_unit("ns").asi8
    order = np.argsort(peak, kind="stable")
    peak, q, q_size = peak[order], q.iloc[order].reset_index(drop=True), q_size[order]
    t = pd.DatetimeIndex(times).as_unit("ns").asi8
    lo = np.searchsorted(peak, t, side="right")
    hi = np.searchsorted(peak, t + horizon.value, side="right")
    out = pd.DataFrame(
        {"goes_class": "", "peak_flux": np.nan, "lat": np.nan, "lon": np.nan}, index=range(len(t))
    )
    for i in np.flatnonzero(hi > lo):
        j = lo[i] + int(np.argmax(q_size[lo[i] : hi[i]]))
        out.loc[i, ["goes_class", "peak_flux", "lat", "lon"]] = [
            q.goes_class[j],
            q_size[j],
            q.lat[j],
            q.lon[j],
        ]
    return out


def time_folds(
    times: np.ndarray,
    rows: np.ndarray,
    *,
    folds: int,
    buffer: pd.Timedelta,
    early_stop_fraction: float,
) -> list[dict[str, np.ndarray]]:
    """Time-segmented cross-validation folds of ``rows`` (row numbers into ``times``).

    The span of ``times[rows]`` is cut into ``folds`` segments of equal duration; fold k tests
    on segment k, trains on the rows more than ``buffer`` away from it, and holds out the last
    ``early_stop_fraction`` of those training rows (in time; the rows within ``buffer`` before
    it are dropped) as its early-stopping ("val") rows.
    """
    t = pd.DatetimeIndex(times[rows]).as_unit("ns").asi8
    edges = np.linspace(t[0], t[-1], folds + 1)
    seg = np.clip(np.searchsorted(edges, t, side="right") - 1, 0, folds - 1)
    out = []
    for k in range(folds):
        test = rows[seg == k]
        if len(test) < 2:
            msg = f"flare_forecast: test fold {k + 1} of {folds} has {len(test)} usable time steps"
            raise SdofmError(msg)
        t0, t1 = t[seg == k][0], t[seg == k][-1]
        cand = (seg != k) & ((t < t0 - buffer.value) | (t > t1 + buffer.value))
        idx = np.flatnonzero(cand)
        n_val = int(np.ceil(early_stop_fraction * len(idx)))
        val_idx = idx[len(idx) - n_val :] if n_val else idx[:0]
        start = t[val_idx[0]] if n_val else np.inf
        train_idx = idx[t[idx] < start - buffer.value]
        if len(train_idx) < 2 or len(val_idx) < 2:
            msg = (
                f"flare_forecast: fold {k + 1} of {folds} has {len(train_idx)} training and "
                f"{len(val_idx)} early-stopping time steps (too few for {folds} folds with a "
                f"{buffer} buffer)"
            )
            raise SdofmError(msg)
        out.append({"train": rows[train_idx], "val": rows[val_idx], "test": test})
    return out


# --------------------------------------------------------------------------------------------
# Models

MAG_SCALE_G = 20.0  # the CNN sees arcsinh(B / 20 G): linear in weak fields, compressed in spots


class FlareCNN(nn.Module):
    """The baseline: a strided conv and two conv blocks, mean and max pooling, one logit.

    Small enough to train in seconds on a CPU at 64². While training, each image is flipped
    east-west and north-south at random (the flare rate does not depend on either), and the
    pooled features see dropout.
    """

    def __init__(self, in_chans: int, width: int = 8, dropout: float = 0.3):
        super().__init__()
        w = width
        self.features = nn.Sequential(
            nn.Conv2d(in_chans, w, 5, stride=2, padding=2),
            nn.BatchNorm2d(w),
            nn.ReLU(),
            nn.Conv2d(w, 2 * w, 3, padding=1),
            nn.BatchNorm2d(2 * w),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(2 * w, 4 * w, 3, padding=1),
            nn.BatchNorm2d(4 * w),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.drop = nn.Dropout(dropout)
        self.out = nn.Linear(8 * w, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, 1)
        if self.training:
            for dim in (2, 3):
                flip = torch.rand(x.shape[0], 1, 1, 1, device=x.device) < 0.5
                x = torch.where(flip, x.flip(dim), x)
        f = self.features(x)
        return self.out(self.drop(torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1)))


class FMClassifier(nn.Module):
    """Backbone encoder + the FM head: normalised images (B, C, H, W) -> flare logit (B, 1).

    The embedding is the backbone's ``embed`` ([CLS, mean patch token] of the unmasked encoder)
    computed through ``forward_encoder``, so that gradients flow (``embed`` itself runs without
    them), then standardised with the fold's training statistics as the head saw it.
    """

    def __init__(self, net: nn.Module, head: nn.Module, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.net, self.head = net, head
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def embed(self, x: torch.Tensor) -> torch.Tensor:  # (B, C, H, W) -> (B, 2D)
        latent, _, _ = self.net.forward_encoder(x, 0.0)
        return torch.cat([latent[:, 0], latent[:, 1:].mean(dim=1)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head((self.embed(x) - self.mean) / self.std)


def integrated_gradients(f: Callable, x: torch.Tensor, steps: int = 32) -> torch.Tensor:
    """Integrated gradients of the scalar function ``f`` (batch -> (B,)) at ``x`` (C, H, W).

    The path starts at the zero image (the normalised training mean); midpoint rule over
    ``steps`` points, so the attributions sum to about f(x) − f(0) (completeness).
    """
    alphas = (torch.arange(steps, dtype=x.dtype) + 0.5) / steps
    path = (alphas[:, None, None, None] * x[None]).requires_grad_(True)
    (grad,) = torch.autograd.grad(f(path).sum(), path)
    return (x * grad.mean(dim=0)).detach()


def _head(width: int, kind: str) -> nn.Module:
    if kind == "linear":
        return nn.Linear(width, 1)
    return nn.Sequential(nn.Linear(width, 64), nn.GELU(), nn.Dropout(0.2), nn.Linear(64, 1))


def _probability(logit: torch.Tensor, pos_weight: float) -> np.ndarray:
    """Flare probability from a logit trained with positive-class weight ``pos_weight``."""
    return torch.sigmoid(logit.detach().reshape(-1) - np.log(pos_weight)).double().numpy()


def _target(y: np.ndarray) -> torch.Tensor:
    return torch.tensor(y, dtype=torch.float32)[:, None]


# --------------------------------------------------------------------------------------------
# The task


@dataclass
class _Data:
    """Everything the folds share: labels, the flare of each window, inputs of each model."""

    times: np.ndarray
    labels: np.ndarray  # bool per time step
    rows: np.ndarray  # usable time steps
    where: pd.DataFrame  # largest qualifying flare of each time step's window
    period: str
    z: np.ndarray  # embeddings (time, feature)
    mags: np.ndarray  # arcsinh-compressed magnetograms of the usable rows (row, C, H, W)
    images: SDOImages  # normalised images of every channel, indexed like rows
    net: nn.Module | None  # the backbone, for fine-tuning and saliency

    def position(self, rows: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.rows, rows)

    def full(self, rows: np.ndarray) -> torch.Tensor:
        """Normalised all-channel images of ``rows``, as the backbone takes them."""
        return torch.stack([self.images[int(i)][0] for i in self.position(rows)])


def _prepare(inputs: TaskInputs, ds: xr.Dataset, emb: xr.Dataset, params: dict) -> _Data:
    """Check the settings, label every time step and load each model's inputs."""
    horizon = pd.Timedelta(hours=float(params["horizon_hours"]))
    min_class = str(params["min_class"])
    goes_class_to_flux(min_class)  # a clear error for a bad class, before any work
    channels = [str(c) for c in ds.channel.values]
    missing = [c for c in params["baseline_channels"] if c not in channels]
    if missing:
        msg = f"flare_forecast: baseline channels {missing} are not in the data set {channels}"
        raise SdofmError(msg)
    sha = file_sha256(inputs.checkpoint)
    if emb.attrs.get("checkpoint_sha256") not in (None, sha):
        msg = (
            f"flare_forecast: embeddings {inputs.embeddings} come from checkpoint "
            f"{emb.attrs['checkpoint_sha256']}, not {inputs.checkpoint} ({sha}): "
            "re-run `sdofm embed`"
        )
        raise SdofmError(msg)

    # Labels, for the time steps whose whole window lies inside the flare list's period.
    times = ds.time.values
    flares = read_flare_list(inputs.event_file("flares.csv"))
    labels = flare_labels(flares, times, horizon=horizon, min_class=min_class)
    step = pd.Series(times).diff().median() if len(times) > 1 else pd.Timedelta(0)
    covered = np.asarray(pd.DatetimeIndex(times) + horizon <= pd.Timestamp(times[-1]) + step)
    z = emb.embedding.values
    rows = np.flatnonzero(ds.valid.values & np.isfinite(z).all(axis=1) & covered)
    if len(rows) < 2 * params["folds"]:
        msg = f"flare_forecast: {len(rows)} usable time steps, too few for {params['folds']} folds"
        raise SdofmError(msg)
    first, last = pd.Timestamp(times[rows[0]]), pd.Timestamp(times[rows[-1]])
    period = f"{first:%Y-%m-%d %H:%M} to {last:%Y-%m-%d %H:%M}"
    if not labels[rows].any():
        msg = (
            f"flare_forecast: no flare of class {min_class} or above peaks within {horizon} of "
            f"any usable time step from {period} ({len(flares)} flares listed): lower "
            f"min_class or use a longer period"
        )
        raise SdofmError(msg)

    mag_idx = [channels.index(c) for c in params["baseline_channels"]]
    mags = ds.images.isel(channel=mag_idx).values[rows].astype(np.float32)
    mags = np.arcsinh(np.nan_to_num(mags) / MAG_SCALE_G)
    net = None
    if params["finetune"] or params["saliency_events"]:
        from sdofm.training.pretrain import load_backbone

        net, _ = load_backbone(inputs.checkpoint)
        for p in net.parameters():
            p.requires_grad_(False)
    return _Data(
        times=times,
        labels=labels,
        rows=rows,
        where=flare_in_window(flares, times, horizon, min_class),
        period=period,
        z=z,
        mags=mags,
        images=SDOImages(inputs.dataset, rows),
        net=net,
    )


def _fit_fold(
    k: int, f: dict[str, np.ndarray], data: _Data, params: dict
) -> tuple[dict[str, dict[str, np.ndarray]], FMClassifier | None]:
    """Each model's flare probabilities on the fold's train/val/test rows, and the FM classifier.

    Without a flaring training row there is nothing to learn: every model forecasts the base
    rate (0), and there is no classifier to explain.
    """
    y = {s: data.labels[r] for s, r in f.items()}
    base_rate = float(y["train"].mean())
    const = {s: np.full(len(r), base_rate) for s, r in f.items()}
    prob = {m: const for m in MODELS}
    n_pos = int(y["train"].sum())
    if n_pos == 0:
        return prob, None
    w = (len(y["train"]) - n_pos) / n_pos
    loss = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([w]))
    seed = int(params["seed"]) + k
    torch.manual_seed(seed)

    # Foundation-model head on the frozen embeddings, standardised with training statistics.
    z = data.z
    mu, sd = z[f["train"]].mean(axis=0), z[f["train"]].std(axis=0) + 1e-6
    e = {s: torch.tensor((z[r] - mu) / sd, dtype=torch.float32) for s, r in f.items()}
    head = fit(
        _head(z.shape[1], params["head"]),
        (e["train"], _target(y["train"])),
        (e["val"], _target(y["val"])),
        loss_fn=loss,
        epochs=params["max_epochs"],
        lr=1e-3,
        weight_decay=1e-2,
        seed=seed,
    )
    with torch.no_grad():
        prob["fm_head"] = {s: _probability(head(e[s]), w) for s in f}
    clf = None
    if data.net is not None:
        mu_t, sd_t = (torch.tensor(a, dtype=torch.float32) for a in (mu, sd))
        clf = FMClassifier(data.net, head, mu_t, sd_t)
    if params["finetune"]:  # linear probe first, then the backbone and head together
        clf = copy.deepcopy(clf)
        clf.requires_grad_(True)
        clf = fit(
            clf,
            (data.full(f["train"]), _target(y["train"])),
            (data.full(f["val"]), _target(y["val"])),
            loss_fn=loss,
            epochs=params["finetune_epochs"],
            lr=1e-4,
            weight_decay=0.05,
            batch_size=16,
            patience=3,
            seed=seed,
        )
        clf.requires_grad_(False)
        with torch.no_grad():
            prob["fm_head"] = {s: _probability(clf(data.full(r)), w) for s, r in f.items()}

    # Baseline: a CNN from scratch on the magnetograms, standardised with training statistics.
    m = {s: data.mags[data.position(r)] for s, r in f.items()}
    m_mu = m["train"].mean(axis=(0, 2, 3))[:, None, None]
    m_sd = m["train"].std(axis=(0, 2, 3))[:, None, None] + 1e-6
    x = {s: torch.from_numpy((v - m_mu) / m_sd) for s, v in m.items()}
    cnn = fit(
        FlareCNN(x["train"].shape[1], params["baseline_width"]),
        (x["train"], _target(y["train"])),
        (x["val"], _target(y["val"])),
        loss_fn=loss,
        epochs=params["baseline_epochs"],
        lr=2e-3,
        weight_decay=1e-3,
        batch_size=32,
        patience=params["baseline_patience"],
        seed=seed,
    )
    with torch.no_grad():
        prob["baseline"] = {s: _probability(cnn(v), w) for s, v in x.items()}
    return prob, clf


def _score_fold(k: int, f: dict, data: _Data, prob: dict) -> dict[str, Any]:
    """Fold sizes, each model's threshold (maximising TSS on the early-stopping rows) and scores.

    The threshold comes from the training rows when the early-stopping rows hold one class, and
    is "never" when those do too. TSS, HSS2 and AUC are undefined (NaN) for a test segment with
    one class.
    """
    times = data.times
    y = {s: data.labels[r] for s, r in f.items()}
    info: dict[str, Any] = {
        "fold": k + 1,
        "test_range": [str(times[f["test"][0]]), str(times[f["test"][-1]])],
        "val_range": [str(times[f["val"][0]]), str(times[f["val"][-1]])],
        **{f"n_{s}": int(len(r)) for s, r in f.items()},
        **{f"n_{s}_positive": int(y[s].sum()) for s in f},
    }
    src = next((s for s in ("val", "train") if 0 < y[s].sum() < len(y[s])), None)
    info["threshold_from"] = src or "none"
    info["models"] = {}
    one_class = not 0 < y["test"].sum() < len(y["test"])
    for m in MODELS:
        p = prob[m]
        th = best_threshold(y[src], p[src]) if src else (p["test"].max() + 1) / 2
        scores = _scores(y["test"], p["test"], p["test"] >= th)
        if one_class:
            scores[:3] = np.nan
        info["models"][m] = {"threshold": th, **dict(zip(METRICS, scores, strict=True))}
    notes = []
    if not y["train"].any():
        notes.append("no positive training samples: every model forecasts the base rate")
    if one_class:
        what = "positive" if not y["test"].any() else "negative"
        notes.append(f"no {what} test samples: TSS, HSS2 and ROC AUC undefined")
    if notes:
        info["note"] = "; ".join(notes)
    return info


def run(inputs: TaskInputs, out_dir: str | Path, params: dict[str, Any]) -> dict[str, Any]:
    """Cross-validate every model; write samples.nc, predictions.csv and metrics.json."""
    ds, emb = inputs.open()
    data = _prepare(inputs, ds, emb, params)
    horizon = pd.Timedelta(hours=float(params["horizon_hours"]))
    folds = time_folds(
        data.times,
        data.rows,
        folds=int(params["folds"]),
        buffer=pd.Timedelta(days=float(params["buffer_days"])),
        early_stop_fraction=float(params["early_stop_fraction"]),
    )
    prob = {m: np.full(len(data.times), np.nan) for m in MODELS}
    threshold = {m: np.full(len(data.times), np.nan) for m in MODELS}
    fold_of = np.zeros(len(data.times), dtype=int)
    fold_info, classifiers = [], {}
    for k, f in enumerate(folds):
        fold_prob, clf = _fit_fold(k, f, data, params)
        info = _score_fold(k, f, data, fold_prob)
        for m in MODELS:
            prob[m][f["test"]] = fold_prob[m]["test"]
            threshold[m][f["test"]] = info["models"][m]["threshold"]
        fold_of[f["test"]] = k + 1
        if clf is not None:
            classifiers[k + 1] = clf
        fold_info.append(info)

    # Pooled test rows, each forecast at its own fold's threshold.
    test = np.concatenate([f["test"] for f in folds])
    y = data.labels[test]
    p = {m: prob[m][test] for m in MODELS}
    yes = {m: p[m] >= threshold[m][test] for m in MODELS}
    lon = data.where.lon.to_numpy(float)[test]
    near = y & (np.abs(lon) > float(params["limb_deg"]))
    central = y & (np.abs(lon) <= float(params["limb_deg"]))
    t = pd.DatetimeIndex(data.times[test]).as_unit("ns").asi8
    blocks = (t - t.min()) // max(horizon.value, 1)
    metrics = _pooled_metrics(y, p, yes, near, central, blocks, params)
    summary = {
        m: {s: _mean_sd([i["models"][m][s] for i in fold_info]) for s in METRICS} for m in MODELS
    }
    for m in MODELS:
        for s in METRICS:
            v = summary[m][s]
            metrics[m][f"{s}_fold_mean"] = {
                "value": v["mean"],
                "ci95": v["ci95"],
                "sd": v["sd"],
                "n_folds": v["n"],
            }

    out_dir = Path(out_dir)
    samples = _saliency_samples(ds, data, classifiers, fold_of, prob, params)
    with atomic_output(out_dir / "samples.nc") as tmp:
        samples.to_netcdf(tmp, engine="h5netcdf")
    result = _result(inputs, emb, data, folds, fold_info, summary, metrics, params)
    table = pd.DataFrame(
        {
            "time": data.times[test],
            "fold": fold_of[test],
            "label": y.astype(int),
            "flare_lon": lon,
            "flare_lat": data.where.lat.to_numpy(float)[test],
            "flare_class": data.where.goes_class.to_numpy()[test],
            **p,
        }
    )
    write_outputs(result, table, out_dir)
    return result


def _result(inputs, emb, data, folds, fold_info, summary, metrics, params) -> dict[str, Any]:
    """metrics.json's content."""
    rows, labels, n_folds = data.rows, data.labels, int(params["folds"])
    result = {
        "task": "flare_forecast",
        "metric": (
            f"true skill statistic of a >={params['min_class']} flare within "
            f"{float(params['horizon_hours']):g} h, pooled over {n_folds} time-segmented "
            "cross-validation folds"
        ),
        "label": {
            "min_class": str(params["min_class"]),
            "horizon_hours": float(params["horizon_hours"]),
            "base_rate": float(labels[rows].mean()),
            "positives": int(labels[rows].sum()),
            "usable_time_steps": int(len(rows)),
            "period": data.period,
        },
        "split": {
            "scheme": (
                f"{n_folds} contiguous time segments of equal duration (cross-validation); the "
                "store's train/val/test split is NOT used, because flares are rare"
            ),
            "store_split_used": False,
            "train": int(sum(len(f["train"]) for f in folds)),
            "val": int(sum(len(f["val"]) for f in folds)),
            "test": int(sum(len(f["test"]) for f in folds)),
            "note": (
                "train and val are summed over the folds (a row trains in up to folds-1 folds); "
                "test counts every usable row once; val is each fold's early-stopping chunk"
            ),
            "buffer_days": float(params["buffer_days"]),
        },
        "split_ranges": {f"test_fold{i['fold']}": i["test_range"] for i in fold_info},
        "folds": fold_info,
        "fold_summary": summary,
        "models": metrics,
        "headline": {
            "metric": "tss",
            "label": "TSS (true skill statistic, pooled over the test folds; dimensionless)",
            "higher_is_better": True,
        },
        "published_anchor": {
            "tss": 0.53,
            "hss2": 0.37,
            "source": "Pandey, Angryk & Aydin 2023, AlexNet on full-disk HMI LoS magnetograms, "
            ">=M1.0 in 24 h, 4-fold CV (real SDO data)",
            "others": [
                {"tss": 0.44, "source": "Surya foundation model, Roy et al. 2025 (real SDO data)"}
            ],
        },
        "provenance": provenance(params, checkpoint=inputs.checkpoint),
    }
    result["provenance"]["embeddings_checkpoint_sha256"] = emb.attrs.get("checkpoint_sha256")
    return result


def _mean_sd(values: list[float]) -> dict[str, Any]:
    """Mean, sample sd and a t-based 95 % interval of the defined (finite) fold values."""
    v = np.array([x for x in values if x is not None and np.isfinite(x)], float)
    out: dict[str, Any] = {"mean": None, "sd": None, "n": int(len(v)), "ci95": [None, None]}
    if len(v):
        out["mean"] = float(v.mean())
    if len(v) > 1:
        out["sd"] = float(v.std(ddof=1))
        half = float(student_t.ppf(0.975, len(v) - 1) * out["sd"] / np.sqrt(len(v)))
        out["ci95"] = [out["mean"] - half, out["mean"] + half]
    return out


def _pooled_metrics(y, p, yes, near, central, blocks, params) -> dict[str, Any]:
    """Pooled scores, recalls and the FM − baseline TSS, with a block bootstrap."""

    def recall(hit, mask):
        return hit[mask].mean() if mask.any() else np.nan

    def stat(i):
        parts = []
        for m in MODELS:
            parts += list(_scores(y[i], p[m][i], yes[m][i]))
            parts += [recall(yes[m][i], mask[i]) for mask in (y, near, central)]
        parts.append(tss(y[i], yes["fm_head"][i]) - tss(y[i], yes["baseline"][i]))
        return np.array(parts, float)

    point, lo, hi = _bootstrap(
        stat, blocks, resamples=int(params["bootstrap"]), seed=params["seed"]
    )
    names = [*METRICS, "recall", "recall_near_limb", "recall_central"]
    out: dict[str, Any] = {}
    j = 0
    for m in MODELS:
        out[m] = {}
        for name in names:
            out[m][name] = ci(point[j], lo[j], hi[j])
            j += 1
        out[m]["n_near_limb"] = int(near.sum())
        out[m]["n_central"] = int(central.sum())
    out["fm_head_minus_baseline_tss"] = ci(point[j], lo[j], hi[j])
    return out


def _saliency_samples(ds, data: _Data, classifiers, fold_of, prob, params) -> xr.Dataset:
    """Magnetograms and integrated-gradient maps of the FM head for a few flaring test events.

    The largest distinct flares among the flaring test time steps (one time step per flare,
    the last before it), with the largest near-limb flare swapped in if none was picked; each
    explained by the FM classifier of the fold that tested it.
    """
    n = int(params["saliency_events"])
    channels = [str(c) for c in ds.channel.values]
    size = ds.sizes["y"]
    rsun_px = float(ds.attrs.get("rsun_px", RSUN_ARCSEC / (CDELT_512 * 512 / size)))
    cand = [int(r) for r in data.rows if data.labels[r] and int(fold_of[r]) in classifiers]
    picked: list[int] = []
    if n and cand:
        info = data.where.iloc[cand].assign(row=cand)
        info = info.sort_values(["peak_flux", "row"], ascending=[False, False])
        info = info.drop_duplicates(["goes_class", "lat", "lon"])  # one frame per flare
        limb = np.abs(info.lon.to_numpy(float)) > float(params["limb_deg"])
        picked = [int(r) for r in info.row[:n]]
        if limb.any() and not limb[: len(picked)].any():
            picked[-1] = int(info.row[limb].iloc[0])
    bz = channels.index("Bz" if "Bz" in channels else params["baseline_channels"][0])
    hmi = [i for i, c in enumerate(channels) if c in ("Bx", "By", "Bz")]
    shape = (len(picked), size, ds.sizes["x"])
    sal, sal_hmi = np.zeros(shape, np.float32), np.zeros(shape, np.float32)
    for j, r in enumerate(picked):
        clf = classifiers[int(fold_of[r])]
        ig = integrated_gradients(lambda b, clf=clf: clf(b)[:, 0], data.full(np.array([r]))[0])
        sal[j], sal_hmi[j] = ig.sum(dim=0).numpy(), ig[hmi].sum(dim=0).numpy()
    mag = ds.images.isel(channel=bz).values[picked].astype(np.float32).reshape(shape)
    ev = data.where.iloc[picked]
    dims = ("event", "y", "x")
    return xr.Dataset(
        {
            "magnetogram": (dims, mag, {"units": "G", "channel": channels[bz]}),
            "saliency": (dims, sal, {"description": "integrated gradients, sum over channels"}),
            "saliency_hmi": (dims, sal_hmi, {"description": "the same over the HMI channels"}),
            "time": ("event", data.times[picked].astype("datetime64[ns]")),
            "fold": ("event", fold_of[picked].astype(np.int64)),
            "flare_class": ("event", ev.goes_class.to_numpy().astype(str)),
            "flare_lon": ("event", ev.lon.to_numpy(float)),
            "flare_lat": ("event", ev.lat.to_numpy(float)),
            **{f"p_{m}": ("event", prob[m][picked]) for m in MODELS},
        },
        attrs={
            "rsun_px": rsun_px,
            "arcsec_per_px": RSUN_ARCSEC / rsun_px,
            "method": "integrated gradients of the FM head's logit (32 steps) from the zero "
            "(training-mean) image, through the frozen backbone",
        },
    )
