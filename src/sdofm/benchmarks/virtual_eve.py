"""Virtual EVE: MEGS-A line irradiances from AIA (Szenicer et al. 2019; Indaco et al. 2023).

Models, all trained on the same split:
- ``fm_head``: a head (linear or MLP) on the frozen foundation-model embeddings;
- ``baseline``: the paper's model, a linear model on per-channel mean and standard deviation of
  the AIA images fitted with a Huber loss, plus a CNN on the images fitted to its residual;
- ``climatology``: the training mean of each line.
Metric: relative absolute error per line (%) on the test split, its median and maximum over
lines, with bootstrap confidence intervals over test time steps.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from sdofm.benchmarks.common import (
    Standardise,
    TaskInputs,
    bootstrap_ci,
    fit,
    provenance,
    split_rows,
    write_outputs,
)
from sdofm.dataset.loader import Normaliser
from sdofm.io import atomic_output
from sdofm.sources.sdoml import AIA_CHANNELS

__all__ = ["BaselineCNN", "relative_absolute_error", "run"]

AIA = AIA_CHANNELS


def relative_absolute_error(pred: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """Mean |pred − truth| / truth per line, in percent: (N, L) -> (L,)."""
    return 100.0 * np.mean(np.abs(pred - truth) / np.abs(truth), axis=0)


class BaselineCNN(nn.Module):
    """The residual CNN of the virtual-EVE baseline: conv blocks, global pooling, linear."""

    def __init__(self, in_chans: int, n_out: int, width: int = 32):
        super().__init__()
        layers, c = [], in_chans
        for w in (width, width * 2, width * 2):
            layers += [nn.Conv2d(c, w, 3, padding=1), nn.BatchNorm2d(w), nn.ReLU(), nn.MaxPool2d(2)]
            c = w
        self.features = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out = nn.Linear(c, n_out)
        nn.init.zeros_(self.out.weight)  # starts as "no correction" to the linear part
        nn.init.zeros_(self.out.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.out(self.features(x))


class _LinearPlusCNN(nn.Module):
    def __init__(self, linear: nn.Module, cnn: nn.Module):
        super().__init__()
        self.linear, self.cnn = linear, cnn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(_mean_std(x)) + self.cnn(x)


def _mean_std(images: torch.Tensor) -> torch.Tensor:
    """Per-channel spatial mean and standard deviation: (N, C, H, W) -> (N, 2C)."""
    return torch.cat([images.mean(dim=(2, 3)), images.std(dim=(2, 3))], dim=1)


def _standardise(train: np.ndarray, *others: np.ndarray) -> tuple[list[torch.Tensor], tuple]:
    """Arrays standardised with the training rows' statistics, and those (mean, std)."""
    mu, sd = train.mean(axis=0), train.std(axis=0) + 1e-8
    tensors = [torch.tensor((a - mu) / sd, dtype=torch.float32) for a in (train, *others)]
    return tensors, (mu, sd)


def run(inputs: TaskInputs, out_dir: str | Path, params: dict[str, Any]) -> dict[str, Any]:
    """Train and evaluate every model; write metrics.json and predictions.csv to ``out_dir``."""
    ds, emb = inputs.open()
    lines = [str(v) for v in ds.line.values]
    eve = ds.eve.values.astype(np.float64)
    usable = ds.valid.values & np.isfinite(eve).all(axis=1) & (eve > 0).all(axis=1)
    rows = split_rows(ds, usable, "virtual_eve")

    # Targets: log irradiance standardised with training statistics only.
    logy = np.log10(eve)
    (y_tr, y_va, y_te), (mu, sd) = _standardise(
        logy[rows["train"]], logy[rows["val"]], logy[rows["test"]]
    )

    def to_physical(z: torch.Tensor) -> np.ndarray:
        return 10 ** (z.detach().numpy() * sd + mu)

    seed, preds = params["seed"], {}
    torch.manual_seed(seed)

    # Foundation-model head on frozen embeddings.
    z = emb.embedding.values
    (e_tr, e_va, e_te), _ = _standardise(z[rows["train"]], z[rows["val"]], z[rows["test"]])
    width = e_tr.shape[1]
    head = (
        nn.Linear(width, len(lines))
        if params["head"] == "linear"
        else nn.Sequential(
            nn.Linear(width, 256), nn.GELU(), nn.Dropout(0.1), nn.Linear(256, len(lines))
        )
    )
    head = fit(
        head,
        (e_tr, y_tr),
        (e_va, y_va),
        epochs=params["max_epochs"],
        lr=1e-3,
        weight_decay=1e-2,
        seed=seed,
    )
    preds["fm_head"] = to_physical(head(e_te))

    # Baseline: linear on channel mean/std with Huber loss, then a CNN on its residual.
    norm = Normaliser(ds, [c for c in AIA if c in ds.channel.values])
    images = {
        s: torch.from_numpy(norm(ds.images.isel(time=r).values[:, norm.index]))
        for s, r in rows.items()
    }
    feats = {s: _mean_std(x) for s, x in images.items()}
    f_mu, f_sd = feats["train"].mean(0), feats["train"].std(0) + 1e-6
    linear = nn.Sequential(Standardise(f_mu, f_sd), nn.Linear(feats["train"].shape[1], len(lines)))
    linear = fit(
        linear,
        (feats["train"], y_tr),
        (feats["val"], y_va),
        loss_fn=nn.HuberLoss(),
        epochs=params["max_epochs"],
        lr=1e-2,
        weight_decay=0.0,
        seed=seed,
    )
    for p in linear.parameters():
        p.requires_grad_(False)
    model = _LinearPlusCNN(linear, BaselineCNN(images["train"].shape[1], len(lines)))
    if params["baseline_cnn_epochs"]:
        model = fit(
            model,
            (images["train"], y_tr),
            (images["val"], y_va),
            epochs=params["baseline_cnn_epochs"],
            lr=1e-3,
            batch_size=32,
            seed=seed,
            patience=10,
        )
    with torch.no_grad():
        preds["baseline_linear"] = to_physical(linear(feats["test"]))
        preds["baseline"] = to_physical(model(images["test"]))
    climatology = eve[rows["train"]].mean(axis=0)
    preds["climatology"] = np.tile(climatology, (len(rows["test"]), 1))

    # After MEGS-A: the same models as a virtual instrument on every later time step.
    after = _after_megsa(ds, eve)
    virtual = {}
    if len(after):
        x_after = torch.from_numpy(norm(ds.images.isel(time=after).values[:, norm.index]))
        e_after = _standardise(z[rows["train"]], z[after])[0][1]
        with torch.no_grad():
            virtual = {
                "fm_head": to_physical(head(e_after)),
                "baseline": to_physical(model(x_after)),
                "climatology": np.tile(climatology, (len(after), 1)),
            }

    after_summary, after_truth = _virtual_instrument(
        ds, after, virtual, lines, inputs.truth, params
    )
    truth = eve[rows["test"]]
    metrics = _metrics(preds, truth, lines, params)
    result = {
        "task": "virtual_eve",
        "metric": "relative absolute error (%) per line on the test split",
        "lines": lines,
        "split": {s: int(len(r)) for s, r in rows.items()},
        "split_ranges": {
            s: [str(ds.time.values[r].min()), str(ds.time.values[r].max())]
            for s, r in rows.items()
            if len(r)
        },
        "models": metrics,
        "headline": {
            "metric": "median",
            "label": "median RAE over lines (%)",
            "higher_is_better": False,
        },
        "after_megsa": after_summary,
        "published_anchor": {
            "median_rae_percent": 1.6,
            "source": "Szenicer et al. 2019 (real SDO data)",
        },
        "provenance": provenance(params, checkpoint=inputs.checkpoint),
    }
    result["provenance"]["embeddings_checkpoint_sha256"] = emb.attrs.get("checkpoint_sha256")
    table = pd.concat(
        [
            pd.DataFrame(
                {
                    "time": ds.time.values[rows["test"]],
                    "line": line,
                    "truth": truth[:, k],
                    **{m: p[:, k] for m, p in preds.items()},
                }
            )
            for k, line in enumerate(lines)
        ]
    )
    if len(after):
        frames = [
            pd.DataFrame(
                {
                    "time": ds.time.values[after],
                    "line": line,
                    "truth": after_truth[:, k],  # NaN on real data: MEGS-A measures no more
                    **{m: p[:, k] for m, p in virtual.items()},
                }
            )
            for k, line in enumerate(lines)
        ]
        with atomic_output(Path(out_dir) / "predictions_after_megsa.csv") as tmp:
            pd.concat(frames).to_csv(tmp, index=False)
    write_outputs(result, table, out_dir)
    return result


def _after_megsa(ds, eve: np.ndarray) -> np.ndarray:
    """Valid rows after the store's last EVE measurement (MEGS-A failed on 2014-05-26)."""
    measured = np.flatnonzero(np.isfinite(eve).all(axis=1) & (eve > 0).all(axis=1))
    if not len(measured):
        return measured
    rows = np.flatnonzero(ds.valid.values)
    return rows[rows > measured[-1]]


def _virtual_instrument(
    ds, after, virtual, lines, truth_dir, params
) -> tuple[dict[str, Any], np.ndarray]:
    """The models' lines after MEGS-A, scored against the synthetic Sun's truth if it has one.

    Returns the summary for metrics.json and the truth at each step (NaN where there is none).
    """
    truth = np.full((len(after), len(lines)), np.nan)
    if not len(after):
        return {"steps": 0, "reason": "no valid time step after the last EVE measurement"}, truth
    times = pd.DatetimeIndex(ds.time.values[after])
    out: dict[str, Any] = {"steps": len(after), "start": str(times[0]), "end": str(times[-1])}
    path = Path(truth_dir) / "eve_after_megsa.csv" if truth_dir else None
    if path is None or not path.exists():
        out["truth"] = None  # real data: nothing measured these lines any more
        return out, truth
    table = pd.read_csv(path, parse_dates=["time"]).set_index("time").sort_index()
    pos = table.index.get_indexer(times, method="nearest", tolerance=pd.Timedelta("1h"))
    found = pos >= 0
    truth[found] = table[lines].to_numpy(np.float64)[pos[found]]
    out["truth"] = "synthetic ground truth (eve_after_megsa.csv)"
    out["scored_steps"] = int(found.sum())
    if found.sum() >= 2:
        scored = {m: p[found] for m, p in virtual.items()}
        out["models"] = _metrics(scored, truth[found], lines, params)
    return out, truth


def _metrics(preds: dict, truth: np.ndarray, lines: list[str], params: dict) -> dict[str, Any]:
    """Per-line RAE with bootstrap CIs, and median/max over lines, for each model."""
    out: dict[str, Any] = {}
    n, b, seed = len(truth), params["bootstrap"], params["seed"]
    for name, p in preds.items():

        def stat(i, p=p):
            rae = relative_absolute_error(p[i], truth[i])
            return np.concatenate([rae, [np.median(rae), rae.max()]])

        point, lo, hi = bootstrap_ci(stat, n, resamples=b, seed=seed)
        k = len(lines)
        out[name] = {
            "per_line": {
                line: {"value": point[j], "ci95": [lo[j], hi[j]]} for j, line in enumerate(lines)
            },
            "median": {"value": point[k], "ci95": [lo[k], hi[k]]},
            "max": {"value": point[k + 1], "ci95": [lo[k + 1], hi[k + 1]]},
        }

    # Paired difference of medians on the same resamples: is the FM head better than the paper?
    def diff(i):
        med = [
            np.median(relative_absolute_error(preds[m][i], truth[i]))
            for m in ("fm_head", "baseline")
        ]
        return np.array([med[0] - med[1]])

    point, lo, hi = bootstrap_ci(diff, n, resamples=b, seed=seed)
    out["fm_head_minus_baseline_median"] = {"value": point[0], "ci95": [lo[0], hi[0]]}
    return out
