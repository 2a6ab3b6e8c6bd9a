"""Label efficiency: the FM head against a CNN from scratch at 1 … 100 % of the training labels.

The claim behind foundation models for SDO (SDO-FM, Walsh et al. 2024; Surya, Roy et al. 2025;
for masked autoencoders in general He et al. 2022) is that a head on pretrained embeddings needs
far fewer labels than a network trained from scratch. This task measures it on two targets:

- ``regression``: the EVE MEGS-A line irradiances of the store (log10, standardised with the
  labelled subset's statistics); metric the median over lines of the relative absolute error (%)
  on the test split, as in `virtual_eve`;
- ``classification``: a flare of at least ``min_class`` peaking within ``horizon`` of each time
  step; metrics the true skill statistic (TSS, threshold chosen on the validation split) and the
  ROC AUC on the test split.

Models, trained at each fraction of the training labels and ``repeats`` times per fraction:

- ``fm_head``: a head (linear or MLP) on the frozen embeddings (``finetune: true``: the backbone
  and head trained together);
- ``baseline_from_scratch``: a small CNN on the normalised images of every channel, the same
  network for both targets apart from its output layer;
- ``climatology``: the labelled subset's mean irradiance / flare base rate (TSS 0, AUC 0.5).

Subsets are contiguous blocks of the training period (``subset: contiguous``; the blocks of the
repeats start in different parts of the period), or one random step from each of k equal slices
of it (``subset: stratified``). Contiguous blocks are the honest choice for temporally correlated
data: k labelled steps from one stretch of time carry about as much information as k labels do
in practice, whereas k steps spread over the period sample every phase of the activity. Only the
labels are scarce: the unlabelled inputs (image normalisation, embedding standardisation) use the
statistics of the whole training split, and the validation split (early stopping, threshold) is
the same for every fraction. Every fraction gets the same number of optimiser steps.

Uncertainty of each curve point: ``ci95`` resamples both the repeats and the test time steps;
``ci95_test_bootstrap`` only the test time steps (metric averaged over repeats);
``ci95_repeats`` is the t interval over the repeats.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from scipy import stats
from torch import nn

from sdofm import SdofmError
from sdofm.benchmarks.common import TaskInputs, ci, provenance, split_rows, write_outputs
from sdofm.dataset.loader import Normaliser
from sdofm.io import atomic_output
from sdofm.sources.events import flare_labels, goes_class_to_flux, read_flare_list

__all__ = [
    "SmallCNN",
    "best_threshold",
    "median_rae",
    "roc_auc",
    "run",
    "training_subset",
    "true_skill_statistic",
]

TASK_NAMES = ("regression", "classification")
MODELS = ("fm_head", "baseline_from_scratch", "climatology")
# Curve name -> (task, metric, lower is better, label); the first of a task is its main metric.
CURVES = {
    "regression_median_rae": (
        "regression",
        "median_rae",
        True,
        "EVE median relative absolute error over lines (%)",
    ),
    "classification_tss": ("classification", "tss", False, "flare TSS"),
    "classification_roc_auc": ("classification", "roc_auc", False, "flare ROC AUC"),
}
HEADLINE = "regression_median_rae"


# --------------------------------------------------------------------------------------------
# Metrics


def median_rae(pred: np.ndarray, truth: np.ndarray) -> float:
    """Median over lines of the mean relative absolute error per line (%): (N, L) -> float."""
    return float(np.median(100.0 * np.mean(np.abs(pred - truth) / np.abs(truth), axis=0)))


def true_skill_statistic(scores: np.ndarray, labels: np.ndarray, threshold: float) -> float:
    """TSS = hit rate − false-alarm rate of ``scores >= threshold``; NaN without both classes."""
    labels = np.asarray(labels, bool)
    pos, neg = labels.sum(), (~labels).sum()
    if pos == 0 or neg == 0:
        return float("nan")
    yes = np.asarray(scores) >= threshold
    return float((yes & labels).sum() / pos - (yes & ~labels).sum() / neg)


def roc_auc(scores: np.ndarray, labels: np.ndarray) -> float:
    """Area under the ROC curve (Mann–Whitney, ties count half); NaN without both classes."""
    labels = np.asarray(labels, bool)
    pos, neg = int(labels.sum()), int((~labels).sum())
    if pos == 0 or neg == 0:
        return float("nan")
    ranks = stats.rankdata(scores)
    return float((ranks[labels].sum() - pos * (pos + 1) / 2) / (pos * neg))


def best_threshold(scores: np.ndarray, labels: np.ndarray, default: float = 0.5) -> float:
    """The threshold on ``scores`` that maximises the TSS on (validation) ``labels``.

    Candidates are the midpoints between consecutive distinct scores; ``default`` when the labels
    lack a class or the scores are all equal.
    """
    labels = np.asarray(labels, bool)
    s = np.unique(np.asarray(scores, float))
    if labels.all() or not labels.any() or len(s) < 2:
        return default
    candidates = (s[1:] + s[:-1]) / 2
    tss = [true_skill_statistic(scores, labels, t) for t in candidates]
    return float(candidates[int(np.argmax(tss))])


# --------------------------------------------------------------------------------------------
# Subsets of the training labels


def training_subset(
    n: int, percent: float, repeat: int, repeats: int, *, how: str = "contiguous", seed: int = 0
) -> np.ndarray:
    """Positions (sorted) of the labelled subset among ``n`` time-ordered training rows.

    ``contiguous``: one block of ``k = max(1, round(percent/100 · n))`` consecutive rows; the
    block of repeat r starts at a random place in the r-th of ``repeats`` equal slices of the
    possible starts, so repeats cover different parts of the period. ``stratified``: one random
    row from each of k equal slices of the period. Repeat r always gets the same subset.
    """
    k = min(n, max(1, round(percent / 100.0 * n)))
    rng = np.random.default_rng([seed, k, repeat])
    if how == "contiguous":
        starts = n - k + 1
        lo, hi = (repeat * starts) // repeats, ((repeat + 1) * starts) // repeats
        start = int(rng.integers(lo, hi)) if hi > lo else int(rng.integers(0, starts))
        return np.arange(start, start + k)
    if how == "stratified":
        edges = np.linspace(0, n, k + 1).round().astype(int)
        return rng.integers(edges[:-1], edges[1:])
    msg = f"label_efficiency: subset must be 'contiguous' or 'stratified', not {how!r}"
    raise SdofmError(msg)


# --------------------------------------------------------------------------------------------
# Models


class SmallCNN(nn.Module):
    """Three stride-2 conv blocks (GroupNorm, ReLU), global average pooling, linear output.

    GroupNorm instead of BatchNorm: at 1 % of the labels a batch holds a handful of images.
    """

    def __init__(self, in_chans: int, n_out: int, width: int = 8):
        super().__init__()
        layers, c = [], in_chans
        for w in (width, width * 2, width * 4):
            layers += [nn.Conv2d(c, w, 3, stride=2, padding=1), nn.GroupNorm(1, w), nn.ReLU()]
            c = w
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out = nn.Linear(c, n_out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, n_out)."""
        return self.out(self.features(x))


def _head(width: int, n_out: int, kind: str) -> nn.Module:
    if kind == "linear":
        return nn.Linear(width, n_out)
    return nn.Sequential(nn.Linear(width, 256), nn.GELU(), nn.Dropout(0.1), nn.Linear(256, n_out))


class _FineTuned(nn.Module):
    """Backbone embedding ([CLS, mean token], standardised) -> head, trained end to end."""

    def __init__(self, net: nn.Module, head: nn.Module, mean: np.ndarray, std: np.ndarray):
        super().__init__()
        self.net, self.head = net, head
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        latent, _, _ = self.net.forward_encoder(x, 0.0)
        z = torch.cat([latent[:, 0], latent[:, 1:].mean(dim=1)], dim=1)
        return self.head((z - self.mean) / self.std)


def _predict(model: nn.Module, x: torch.Tensor, batch: int = 256) -> torch.Tensor:
    with torch.no_grad():
        if len(x) == 0:
            return model(x)
        return torch.cat([model(x[i : i + batch]) for i in range(0, len(x), batch)])


def _train(
    model: nn.Module,
    train: tuple[torch.Tensor, torch.Tensor],
    val: tuple[torch.Tensor, torch.Tensor],
    *,
    loss_fn,
    steps: int,
    lr: float,
    weight_decay: float,
    batch_size: int,
    eval_every: int,
    patience: int,
    seed: int,
) -> tuple[nn.Module, int]:
    """AdamW for ``steps`` optimiser steps; keep the weights with the lowest validation loss.

    Returns the model (in eval mode) and the step of its best validation loss.

    Unlike `common.fit`, which validates once per epoch, validation runs every ``eval_every``
    steps, so a 1 % subset (one step per epoch) gets the same budget and schedule as 100 %.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    x, y = train
    bs = min(batch_size, len(x))
    order = torch.empty(0, dtype=torch.long)
    best, best_state, best_step, stale = float("inf"), copy.deepcopy(model.state_dict()), 0, 0
    for step in range(1, steps + 1):
        if len(order) < bs:
            order = torch.cat([order, torch.randperm(len(x), generator=gen)])
        idx, order = order[:bs], order[bs:]
        model.train()
        opt.zero_grad()
        loss_fn(model(x[idx]), y[idx]).backward()
        opt.step()
        if step % eval_every and step != steps:
            continue
        if len(val[0]) == 0:  # nothing to stop on: keep the last weights
            best_state, best_step = copy.deepcopy(model.state_dict()), step
            continue
        model.eval()
        v = float(loss_fn(_predict(model, val[0]), val[1]))
        if v < best:
            best, best_state, best_step, stale = v, copy.deepcopy(model.state_dict()), step, 0
        else:
            stale += 1
            if stale > patience:
                break
    model.load_state_dict(best_state)
    return model.eval(), best_step


# --------------------------------------------------------------------------------------------
# The benchmark


def _check_params(params: dict[str, Any]) -> list[float]:
    percents = [float(p) for p in params["fractions_percent"]]
    if not percents or any(not 0 < p <= 100 for p in percents):
        msg = f"label_efficiency: fractions_percent must be in (0, 100], got {percents}"
        raise SdofmError(msg)
    if len(set(percents)) != len(percents):
        msg = f"label_efficiency: fractions_percent has duplicates: {percents}"
        raise SdofmError(msg)
    if params["repeats"] < 1:
        msg = f"label_efficiency: repeats must be at least 1, got {params['repeats']}"
        raise SdofmError(msg)
    training_subset(1, 100.0, 0, 1, how=params["subset"])  # an unknown subset kind raises
    if isinstance(params["min_class"], str):
        goes_class_to_flux(params["min_class"])  # raises on a malformed class
    try:
        horizon = pd.Timedelta(params["horizon"])
    except ValueError:
        horizon = pd.Timedelta(0)
    if horizon <= pd.Timedelta(0):
        msg = f"label_efficiency: horizon must be a positive duration, got {params['horizon']!r}"
        raise SdofmError(msg)
    return sorted(percents)


def _labels(ds, inputs: TaskInputs, params: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per task: the target of every time step ("y") and which time steps can be used."""
    valid = ds.valid.values
    eve = ds.eve.values.astype(np.float64)
    flares = read_flare_list(inputs.event_file("flares.csv"))
    times = ds.time.values
    horizon = pd.Timedelta(params["horizon"])
    flare = flare_labels(flares, times, horizon=horizon, min_class=params["min_class"])
    # A label needs the whole horizon inside the data (the event list ends with the data).
    cadence = pd.Timedelta(np.median(np.diff(times))) if len(times) > 1 else pd.Timedelta(0)
    complete = times + horizon <= times.max() + cadence
    return {
        "regression": {
            "y": eve,
            "usable": valid & np.isfinite(eve).all(axis=1) & (eve > 0).all(axis=1),
        },
        "classification": {"y": flare.astype(np.float64), "usable": valid & complete},
    }


def run(inputs: TaskInputs, out_dir: str | Path, params: dict[str, Any]) -> dict[str, Any]:
    """Label-efficiency curves of every model on both targets; metrics.json + predictions.csv."""
    percents = _check_params(params)
    ds, emb = inputs.open()
    labels = _labels(ds, inputs, params)
    rows = {t: split_rows(ds, labels[t]["usable"], f"label_efficiency {t}") for t in TASK_NAMES}

    # Inputs: all channels, normalised with the training statistics, for the CNN (pooled) and for
    # fine-tuning (full size); embeddings standardised with the whole training split.
    channels = [str(c) for c in ds.channel.values]
    net = None
    if params["finetune"]:
        from sdofm.training.pretrain import load_backbone

        net, hp = load_backbone(inputs.checkpoint)
        channels = list(hp.get("channels", channels))
    norm = Normaliser(ds, channels)
    needed = np.unique(np.concatenate([r for t in TASK_NAMES for r in rows[t].values()]))
    where = np.full(ds.sizes["time"], -1)
    where[needed] = np.arange(len(needed))
    full = torch.from_numpy(norm(ds.images.isel(time=needed).values[:, norm.index]))
    pooled = nn.functional.avg_pool2d(full, params["cnn_pool"]) if params["cnn_pool"] > 1 else full
    if not params["finetune"]:
        full = None

    z = emb.embedding.values.astype(np.float64)
    z_train = z[np.union1d(rows["regression"]["train"], rows["classification"]["train"])]
    z_mu, z_sd = z_train.mean(axis=0), z_train.std(axis=0) + 1e-6
    z = torch.tensor(np.nan_to_num((z - z_mu) / z_sd), dtype=torch.float32)
    data = _Inputs(z, z_mu, z_sd, pooled, full, where, net)

    records, preds = [], {}
    for t in TASK_NAMES:
        preds[t] = {}
        for p in percents:
            for r in range(params["repeats"]):
                pos = training_subset(
                    len(rows[t]["train"]),
                    p,
                    r,
                    params["repeats"],
                    how=params["subset"],
                    seed=params["seed"],
                )
                sub = rows[t]["train"][pos]
                seed = params["seed"] + 1000 * r + round(10 * p)
                out = _fit_models(t, sub, rows[t], labels[t]["y"], data, params, seed)
                for m, (pred, extra) in out.items():
                    preds[t].setdefault(m, {}).setdefault(p, []).append(pred)
                    records.append(
                        {
                            "task": t,
                            "model": m,
                            "fraction_percent": p,
                            "repeat": r,
                            "n_train": len(sub),
                            "n_positive": int(labels[t]["y"][sub].sum())
                            if t == "classification"
                            else None,
                            "train_start": str(ds.time.values[sub].min()),
                            "train_end": str(ds.time.values[sub].max()),
                            **extra,
                        }
                    )

    table = pd.DataFrame.from_records(records)
    truth = {t: labels[t]["y"][rows[t]["test"]] for t in TASK_NAMES}
    curves, draws = _curves(preds, truth, table, percents, params)
    top = percents[-1]
    models = {m: _at(curves, m, top) for m in MODELS}
    models["fm_head_minus_baseline"] = _paired_difference(draws, top)

    result = {
        "task": "label_efficiency",
        "metric": (
            "metrics on the test split against the fraction of training labels: EVE median "
            "relative absolute error over lines (%), flare TSS and ROC AUC"
        ),
        "split": {s: int(len(v)) for s, v in rows["regression"].items()},
        "split_by_task": {t: {s: int(len(v)) for s, v in rows[t].items()} for t in TASK_NAMES},
        "split_ranges": {
            s: [str(ds.time.values[v].min()), str(ds.time.values[v].max())]
            for s, v in rows["regression"].items()
            if len(v)
        },
        "models": models,
        "models_fraction_percent": top,
        "headline": {
            "metric": HEADLINE,
            "label": f"EVE MEGS-A median relative absolute error over lines at {top:g} % of "
            "the training labels (%)",
            "higher_is_better": False,
        },
        "curves": curves,
        "curve_labels": {
            k: {"task": t, "metric": m, "higher_is_better": not low, "label": label}
            for k, (t, m, low, label) in CURVES.items()
        },
        "fm_head_matches_baseline_at_percent": {k: _crossover(curves, k, percents) for k in CURVES},
        "fm_head_matches_baseline_from_percent": {
            k: _crossover(curves, k, percents, sustained=True) for k in CURVES
        },
        "targets": {
            "regression": {"lines": [str(v) for v in ds.line.values]},
            "classification": {
                "min_class": params["min_class"],
                "horizon": params["horizon"],
                "positive_rate": {
                    s: float(labels["classification"]["y"][v].mean()) if len(v) else None
                    for s, v in rows["classification"].items()
                },
            },
        },
        "subset": params["subset"],
        "published_anchor": None,
        "provenance": provenance(params, checkpoint=inputs.checkpoint),
    }
    result["provenance"]["embeddings_checkpoint_sha256"] = emb.attrs.get("checkpoint_sha256")

    timeline = pd.DataFrame(
        {
            "time": ds.time.values,
            "split": ds.split.values,
            "eve_total": np.where(
                labels["regression"]["usable"], labels["regression"]["y"].sum(1), np.nan
            ),
            "flare": np.where(
                labels["classification"]["usable"], labels["classification"]["y"], np.nan
            ),
        }
    )
    with atomic_output(Path(out_dir) / "labels.csv") as tmp:
        timeline.to_csv(tmp, index=False)
    write_outputs(result, table, out_dir)
    return result


@dataclass(frozen=True)
class _Inputs:
    """What the models of one training see: embeddings, images, and the backbone to fine-tune."""

    z: torch.Tensor  # (T, F) standardised embeddings of every time step
    z_mu: np.ndarray
    z_sd: np.ndarray
    pooled: torch.Tensor  # (N, C, h, w) normalised, pooled images of the needed rows
    full: torch.Tensor | None  # (N, C, H, W) the same at full size (fine-tuning only)
    where: np.ndarray  # time row -> position in `pooled`/`full`
    net: nn.Module | None


def _too_few(task: str, y_sub: np.ndarray) -> str | None:
    """Why a model cannot be trained on this subset, or None."""
    n = len(y_sub)
    if n < 2:
        return f"{n} labelled time step; at least 2 are needed"
    if task == "classification":
        pos = int(y_sub.sum())
        if pos == 0:
            return f"no flare among the {n} labelled time steps"
        if pos == n:
            return f"all {n} labelled time steps precede a flare; no negative to learn from"
    return None


def _fit_models(
    task: str,
    sub: np.ndarray,
    rows: dict[str, np.ndarray],
    y: np.ndarray,
    data: _Inputs,
    params: dict[str, Any],
    seed: int,
) -> dict[str, tuple[dict | None, dict]]:
    """Train every model on the ``sub`` rows; per model (test prediction or None, table extras)."""
    val, test = rows["val"], rows["test"]
    regression = task == "regression"
    out: dict[str, tuple[dict | None, dict]] = {}

    # Climatology: the subset's mean irradiance / base rate, whatever the subset size.
    if regression:
        clim = np.tile(y[sub].mean(axis=0), (len(test), 1))
        out["climatology"] = ({"pred": clim}, {"median_rae": median_rae(clim, y[test])})
    else:
        rate = np.full(len(test), y[sub].mean())
        thr = best_threshold(np.full(len(val), y[sub].mean()), y[val] > 0)
        extra = {
            "tss": true_skill_statistic(rate, y[test] > 0, thr),
            "roc_auc": roc_auc(rate, y[test] > 0),
            "threshold": thr,
        }
        out["climatology"] = ({"pred": rate, "threshold": thr}, extra)

    reason = _too_few(task, y[sub])
    if reason:
        for m in ("fm_head", "baseline_from_scratch"):
            out[m] = (None, {"reason": reason})
        return out

    if regression:
        logy = np.log10(y)
        mu, sd = logy[sub].mean(axis=0), np.maximum(logy[sub].std(axis=0), 1e-6)

        def target(r):
            return torch.tensor((logy[r] - mu) / sd, dtype=torch.float32)

        loss_fn = nn.functional.mse_loss
        n_out = y.shape[1]
    else:
        pos = float(y[sub].sum())

        def target(r):
            return torch.tensor(y[r, None], dtype=torch.float32)

        loss_fn = nn.BCEWithLogitsLoss(pos_weight=torch.tensor([(len(sub) - pos) / pos]))
        n_out = 1

    # Per model: network (initialised from a seed of its own), inputs, optimiser settings.
    torch.manual_seed(seed)
    if params["finetune"]:
        head = _head(data.z.shape[1], n_out, params["head"])
        fm = _FineTuned(copy.deepcopy(data.net), head, data.z_mu, data.z_sd)
        fm_x, fm_kw = data.full, {"rows": data.where, "lr": params["finetune_lr"], "wd": 1e-2}
        fm_kw |= {"steps": params["cnn_steps"], "batch": params["cnn_batch_size"]}
    else:
        fm = _head(data.z.shape[1], n_out, params["head"])
        fm_x = data.z
        fm_kw = {"rows": np.arange(len(data.z)), "lr": 1e-3, "wd": 1e-2}
        fm_kw |= {"steps": params["head_steps"], "batch": 64}
    torch.manual_seed(seed + 1)
    cnn = SmallCNN(data.pooled.shape[1], n_out, params["cnn_width"])
    cnn_kw = {"rows": data.where, "lr": params["cnn_lr"], "wd": 1e-4}
    cnn_kw |= {"steps": params["cnn_steps"], "batch": params["cnn_batch_size"]}

    for m, model, x, kw in [
        ("fm_head", fm, fm_x, fm_kw),
        ("baseline_from_scratch", cnn, data.pooled, cnn_kw),
    ]:
        x_sub, x_val, x_test = (x[kw["rows"][r]] for r in (sub, val, test))
        model, best_step = _train(
            model,
            (x_sub, target(sub)),
            (x_val, target(val)),
            loss_fn=loss_fn,
            steps=kw["steps"],
            lr=kw["lr"],
            weight_decay=kw["wd"],
            batch_size=kw["batch"],
            eval_every=params["eval_every"],
            patience=params["patience"],
            seed=seed,
        )
        if regression:
            pred = 10 ** (_predict(model, x_test).numpy().astype(np.float64) * sd + mu)
            extra = {"median_rae": median_rae(pred, y[test]), "best_step": best_step}
            out[m] = ({"pred": pred}, extra)
            continue
        s_val = torch.sigmoid(_predict(model, x_val))[:, 0].numpy().astype(np.float64)
        s_test = torch.sigmoid(_predict(model, x_test))[:, 0].numpy().astype(np.float64)
        thr = best_threshold(s_val, y[val] > 0)
        extra = {
            "tss": true_skill_statistic(s_test, y[test] > 0, thr),
            "roc_auc": roc_auc(s_test, y[test] > 0),
            "threshold": thr,
            "best_step": best_step,
        }
        out[m] = ({"pred": s_test, "threshold": thr}, extra)
    return out


# --------------------------------------------------------------------------------------------
# Curves and their uncertainty


def _counts(n: int, resamples: int, seed: int) -> np.ndarray:
    """(resamples, n) multiplicities of bootstrap resamples of n rows (as `bootstrap_ci` draws)."""
    rng = np.random.default_rng(seed)
    return np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(resamples)])


def _resampled(metric: str, pred: dict, truth: np.ndarray, w: np.ndarray) -> np.ndarray:
    """The metric on each bootstrap resample with multiplicities ``w`` (B, n) -> (B,)."""
    w = w.astype(np.float64)
    if metric == "median_rae":
        err = np.abs(pred["pred"] - truth) / np.abs(truth)  # (n, L)
        return np.median(100.0 * (w @ err) / w.sum(axis=1, keepdims=True), axis=1)
    y = truth > 0
    n_pos, n_neg = w[:, y].sum(axis=1), w[:, ~y].sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        if metric == "tss":
            yes = pred["pred"] >= pred["threshold"]
            return w @ (yes & y) / n_pos - w @ (yes & ~y) / n_neg
        s = pred["pred"]
        pairs = (s[y, None] > s[None, ~y]) + 0.5 * (s[y, None] == s[None, ~y])  # (pos, neg)
        return ((w[:, y] @ pairs) * w[:, ~y]).sum(axis=1) / (n_pos * n_neg)


def _interval(draws: np.ndarray) -> list[float]:
    draws = draws[np.isfinite(draws)]
    if len(draws) == 0:
        return [float("nan"), float("nan")]
    return [float(v) for v in np.percentile(draws, [2.5, 97.5])]


def _curve_point(
    metric: str,
    entries: list[dict | None],
    points: list[float],
    truth: np.ndarray,
    w: np.ndarray,
    seed: int,
) -> tuple[dict[str, Any], tuple[np.ndarray, np.ndarray]]:
    """Mean over repeats with its three intervals; also the per-repeat values (R,) and
    resampled values (B, R), NaN for repeats without a model."""
    vals = np.array([v if e is not None else np.nan for v, e in zip(points, entries, strict=True)])
    draws = np.full((len(w), len(entries)), np.nan)
    for i, e in enumerate(entries):
        if e is not None:
            draws[:, i] = _resampled(metric, e, truth, w)
    ok = np.flatnonzero([e is not None for e in entries])
    if not len(ok):
        return {"value": float("nan"), "ci95": [float("nan")] * 2}, (vals, draws)
    v, d = vals[ok], draws[:, ok]
    pick = np.random.default_rng(seed).integers(0, len(ok), d.shape)  # resample repeats too
    both = np.take_along_axis(d, pick, axis=1).mean(axis=1)
    repeats_ci, sd = [float("nan")] * 2, float("nan")
    if len(ok) > 1:
        sd = float(v.std(ddof=1))
        half = stats.t.ppf(0.975, len(ok) - 1) * sd / math.sqrt(len(ok))
        repeats_ci = [v.mean() - half, v.mean() + half]
    point = {
        "value": float(v.mean()),
        "ci95": _interval(both),
        "ci95_test_bootstrap": _interval(d.mean(axis=1)),
        "ci95_repeats": [float(x) for x in repeats_ci],
        "sd_repeats": sd,
        "repeats": [float(x) for x in v],
        "n_repeats": len(ok),
    }
    return point, (vals, draws)


def _difference(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray]) -> dict:
    """Paired a − b: over the repeats both have, on the same test resamples."""
    both = np.isfinite(a[0]) & np.isfinite(b[0])
    if not both.any():
        return ci(float("nan"), float("nan"), float("nan"))
    point = float(np.mean(a[0][both] - b[0][both]))
    return ci(point, *_interval((a[1][:, both] - b[1][:, both]).mean(axis=1)))


def _curves(
    preds: dict, truth: dict, table: pd.DataFrame, percents: list[float], params: dict
) -> tuple[dict[str, Any], dict]:
    """curves[task_metric][model][fraction] and the per-repeat draws for paired differences.

    Each trained model's point also carries ``minus_climatology``, the paired difference from
    the climatology of the same subsets.
    """
    curves: dict[str, Any] = {}
    draws: dict = {}
    w = {t: _counts(len(truth[t]), params["bootstrap"], params["seed"]) for t in TASK_NAMES}
    for key, (task, metric, _, _) in CURVES.items():
        curves[key] = {m: {} for m in MODELS}
        for p in percents:
            for model in MODELS:
                part = table[
                    (table.task == task) & (table.model == model) & (table.fraction_percent == p)
                ].sort_values("repeat")
                entries = preds[task][model][p]
                point, d = _curve_point(
                    metric, entries, list(part[metric]), truth[task], w[task], params["seed"]
                )
                point["n_train"] = int(part.n_train.iloc[0])
                if all(e is None for e in entries):
                    point["reason"] = str(part.reason.dropna().iloc[0])
                curves[key][model][f"{p:g}"] = point
                draws[key, model, p] = d
            for model in ("fm_head", "baseline_from_scratch"):
                curves[key][model][f"{p:g}"]["minus_climatology"] = _difference(
                    draws[key, model, p], draws[key, "climatology", p]
                )
    return curves, draws


def _at(curves: dict, model: str, percent: float) -> dict[str, Any]:
    """A model's metrics at one fraction, as metrics.json "models" stores them."""
    out = {}
    for key, curve in curves.items():
        point = curve[model][f"{percent:g}"]
        out[key] = {
            k: point[k]
            for k in ("value", "ci95", "ci95_test_bootstrap", "ci95_repeats", "reason")
            if k in point
        }
    return out


def _paired_difference(draws: dict, percent: float) -> dict[str, Any]:
    """FM head minus from-scratch at one fraction, on the same subsets and test resamples."""
    return {
        key: _difference(
            draws[key, "fm_head", percent], draws[key, "baseline_from_scratch", percent]
        )
        for key in CURVES
    }


def _crossover(
    curves: dict, key: str, percents: list[float], *, sustained: bool = False
) -> float | None:
    """The smallest fraction (%) at which the FM head is at least as good as the from-scratch
    model with all (the largest fraction of) the labels; None if it never is.

    ``sustained``: the smallest fraction from which on it stays at least as good at every larger
    fraction (less sensitive to one lucky subset).
    """
    target = curves[key]["baseline_from_scratch"][f"{percents[-1]:g}"]["value"]
    if not np.isfinite(target):
        return None
    lower = CURVES[key][2]
    values = np.array([curves[key]["fm_head"][f"{p:g}"]["value"] for p in percents])
    with np.errstate(invalid="ignore"):
        good = np.isfinite(values) & ((values <= target) if lower else (values >= target))
    if sustained:
        bad = np.flatnonzero(~good)
        first = bad[-1] + 1 if len(bad) else 0
        return percents[first] if first < len(percents) else None
    return percents[int(np.argmax(good))] if good.any() else None
