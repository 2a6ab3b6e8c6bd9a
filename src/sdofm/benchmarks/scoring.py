"""Scoring under the protocol: point values, block-bootstrap-plus-seed intervals, differences.

Every arm's point value is the mean over its seeds of the metric on all test rows. Each bootstrap
resample takes circular blocks of test time and one seed per arm, so the interval carries the
autocorrelation of the errors and the spread between seeds. The difference FM head − arm is taken
on the same resample, which is what makes it paired.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from sdofm.benchmarks import protocol as pr
from sdofm.benchmarks.metrics import best_threshold
from sdofm.benchmarks.result import Result, provenance

__all__ = [
    "estimates",
    "predictions_table",
    "result",
    "run_entry",
    "score",
    "shortcuts",
    "verdict",
]

FM = "fm_head"


class _Views:
    """Each arm's test predictions as each metric takes them, per seed (thresholds from val)."""

    def __init__(self, task, samples, preds):
        self.metrics = task.metrics
        self.test, val = samples.where("test"), samples.where("val")
        self.y = samples.y[self.test]
        fn = next((m.fn for m in task.metrics if m.name == task.threshold_metric), None)
        self.thresholds: dict[str, list[float]] = {}
        self.runs: dict[str, list[dict[str, np.ndarray]]] = {}
        for name, runs in preds.items():
            self.thresholds[name], self.runs[name] = [], []
            for p in runs:
                th = np.nan
                if fn is not None:
                    pr.check_choice_rows(val, samples.split, f"{name}'s threshold")
                    th = best_threshold(samples.y[val], p[val], fn)
                self.thresholds[name].append(th)
                kinds = {"value": p[self.test], "score": p[self.test], "decision": None}
                kinds["decision"] = p[self.test] >= th
                self.runs[name].append(
                    {
                        m.name: m.fn(self.y, kinds[m.kind]) if m.per_row else kinds[m.kind]
                        for m in self.metrics
                    }
                )

    def values(
        self, idx: np.ndarray, seeds: dict[str, int], arms=None, metrics=None
    ) -> dict[str, np.ndarray]:
        """Each metric (default all) of each arm (default all) on test rows ``idx``, each arm
        at its seed index."""
        out = {}
        for name in self.runs if arms is None else arms:
            runs = self.runs[name]
            v = runs[seeds.get(name, 0) % len(runs)]
            out[name] = np.array(
                [
                    np.nanmean(v[m.name][idx]) if m.per_row else m.fn(self.y[idx], v[m.name][idx])
                    for m in (self.metrics if metrics is None else metrics)
                ],
                float,
            )
        return out


def score(task, samples, preds, proto) -> dict[str, Any]:
    """Per-seed values and bootstrap draws for all test rows and for each fold's rows."""
    views = _Views(task, samples, preds)
    times = samples.times[views.test]
    groups = {"all": np.arange(len(views.test))}
    if task.folds > 1:
        fold = pr.test_folds(samples.times, views.test, task.folds)
        groups |= {f"fold{k}": np.flatnonzero(fold == k) for k in range(1, task.folds + 1)}
    rng = np.random.default_rng(proto.seeds[0])
    out: dict[str, Any] = {"thresholds": views.thresholds, "groups": {}}
    for group, idx in groups.items():
        per_seed = {
            n: [views.values(idx, {n: s}, [n])[n] for s in range(len(r))]
            for n, r in views.runs.items()
        }
        draws = []
        for boot in pr.block_resamples(
            times[idx], block_days=proto.block_days, resamples=proto.bootstrap, rng=rng
        ):
            seeds = {n: int(rng.integers(0, len(r))) for n, r in views.runs.items()}
            draws.append(views.values(idx[boot], seeds))
        out["groups"][group] = {"per_seed": per_seed, "draws": draws}
    out["block_rows"] = pr.block_length(times, proto.block_days)
    out["iid_ratio"] = _iid_ratio(task, views, proto, out["groups"]["all"]["draws"])
    return out


def _interval(draws: list[float], level: float) -> list[float | None]:
    a = np.asarray(draws, float)
    if not np.isfinite(a).any():
        return [None, None]
    tail = 50 * (1 - level)
    return [float(x) for x in np.nanpercentile(a, [tail, 100 - tail])]


def _iid_ratio(task, views, proto, draws) -> float | None:
    """Our FM headline interval's width over that of an iid bootstrap of one seed's errors."""
    k = [m.name for m in task.metrics].index(task.headline)
    n, headline = len(views.test), [task.metrics[k]]
    rng = np.random.default_rng(proto.seeds[0] + 1)
    iid = [
        views.values(rng.integers(0, n, n), {}, [FM], headline)[FM][0]
        for _ in range(proto.bootstrap)
    ]
    lo_i, hi_i = _interval(iid, proto.level)
    lo, hi = _interval([d[FM][k] for d in draws], proto.level)
    if None in (lo_i, hi_i, lo, hi) or hi_i <= lo_i:
        return None
    return (hi - lo) / (hi_i - lo_i)


def verdict(lo: float | None, hi: float | None, higher_is_better: bool, who: str = "FM") -> str:
    """What a paired difference ``who`` − arm (FM head or shortcut) with interval [lo, hi]
    supports."""
    if lo is None or hi is None:
        return "undefined"
    if lo > 0 or hi < 0:
        return f"{who} better" if (lo > 0) == higher_is_better else f"{who} worse"
    return "not distinguishable"


def _difference(task, group, level, arms, a: str, b: str, who: str = "FM") -> dict[str, Any]:
    """Per metric: arm ``a`` − arm ``b`` (point values ``arms``), interval on the same
    resamples, verdict."""
    out = {}
    for j, m in enumerate(task.metrics):
        va, vb = arms[a][m.name]["value"], arms[b][m.name]["value"]
        ci = _interval([d[a][j] - d[b][j] for d in group["draws"]], level)
        out[m.name] = {
            "value": None if va is None or vb is None else va - vb,
            "ci": ci,
            "verdict": verdict(*ci, m.higher_is_better, who),
        }
    return out


def estimates(task, group: dict[str, Any], level: float, fm: str = FM) -> tuple[dict, dict]:
    """(arm -> metric -> estimate, arm -> metric -> FM − arm estimate with its verdict), the
    differences taken from the FM head ``fm`` (one named run's)."""
    names = [m.name for m in task.metrics]
    arms, diffs = {}, {}
    for arm, runs in group["per_seed"].items():
        arms[arm] = {}
        for j, metric in enumerate(names):
            per = [float(r[j]) for r in runs]
            with np.errstate(all="ignore"):
                value = float(np.nanmean(per)) if np.isfinite(per).any() else None
            ci = _interval([d[arm][j] for d in group["draws"]], level)
            arms[arm][metric] = {"value": value, "ci": ci, "per_seed": per}
    diffs = {arm: _difference(task, group, level, arms, fm, arm) for arm in arms if arm != fm}
    return arms, diffs


def shortcuts(task, group, level, arms, kinds: dict[str, str]) -> dict[str, Any]:
    """Each shortcut arm minus each paper baseline (``kinds``: arm -> kind), per metric."""
    papers = [a for a, k in kinds.items() if k == "paper"]
    return {
        s: {p: _difference(task, group, level, arms, s, p, "shortcut") for p in papers}
        for s, k in kinds.items()
        if k == "shortcut"
    }


def run_entry(task, group: dict[str, Any], level: float, fm: str, meta: dict) -> dict[str, Any]:
    """metrics.json's entry of one named run: its FM head's headline, interval and paired
    differences against every other arm (other runs' included), and its backbone's hashes."""
    arms, diffs = estimates(task, group, level, fm)
    head = arms[fm][task.headline]
    return {
        "fm": fm,
        "headline": {"value": head["value"], "ci": head["ci"]},
        "differences": diffs,
        "checkpoint_sha256": meta.get("checkpoint_sha256"),
        "pretraining_intervals": meta.get("pretraining_intervals"),
    }


def predictions_table(samples, preds, thresholds) -> pd.DataFrame:
    """predictions.csv: one row per predicted sample, arm and seed (val, test and extra rows)."""
    rows = np.flatnonzero(np.isin(samples.split, ["val", "test", "extra"]))
    frames = []
    for arm, runs in preds.items():
        for s, p in enumerate(runs):
            frame = pd.DataFrame(
                {"time": samples.times[rows], "split": samples.split[rows], "arm": arm, "seed": s}
            )
            if samples.y.ndim == 1:
                frame["y_true"], frame["y_pred"] = samples.y[rows], p[rows]
            elif samples.outputs is not None:
                for k, out in enumerate(samples.outputs):
                    frame[f"true:{out}"], frame[f"pred:{out}"] = samples.y[rows, k], p[rows, k]
            frame["threshold"] = thresholds[arm][s]
            frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def result(task, samples, arms, chosen, scores, ctx, meta: dict) -> Result:
    """metrics.json's content, less the task's extra and runs; ``meta``: the (first) named run's
    backbone (checkpoint and embeddings hashes, pretraining intervals)."""
    proto = ctx.protocol
    head = next(m for m in task.metrics if m.name == task.headline)
    arm_est, diffs = estimates(task, scores["groups"]["all"], proto.level)
    entries = {
        name: {
            "kind": arm.kind,
            "description": arm.description,
            "seeds": len(arm_est[name][head.name]["per_seed"]),
            "chosen": chosen[name],
            "metrics": arm_est[name],
        }
        for name, arm in arms.items()
    }
    for group, data in scores["groups"].items():
        if group != "all":
            fold_est, _ = estimates(task, data, proto.level)
            for name in entries:
                entries[name].setdefault("folds", {})[group] = fold_est[name]
    verdicts = [
        f"FM head vs {name} ({arms[name].kind}) on {head.label}: {d[head.name]['verdict']}"
        for name, d in diffs.items()
    ]
    kinds = {name: arm.kind for name, arm in arms.items()}
    tricks = shortcuts(task, scores["groups"]["all"], proto.level, arm_est, kinds)
    verdicts += [
        f"Shortcut {name} vs {paper} (paper) on {head.label}: {d[head.name]['verdict']}"
        for name, against in tricks.items()
        for paper, d in against.items()
    ]
    ranges = {}
    for s in ("train", "val", "test"):
        t = samples.times[samples.where(s)]
        ranges[s] = [str(np.min(t)), str(np.max(t))]
    return Result(
        task=task.name,
        title=task.title,
        description=task.description,
        headline={
            "metric": head.name,
            "label": head.label,
            "higher_is_better": head.higher_is_better,
        },
        metrics={
            m.name: {"label": m.label, "higher_is_better": m.higher_is_better, "kind": m.kind}
            for m in task.metrics
        },
        split={s: len(samples.where(s)) for s in ("train", "val", "test")}
        | {"unit": samples.unit, "ranges": ranges},
        protocol={
            "seeds": list(proto.seeds),
            "bootstrap": proto.bootstrap,
            "block_days": proto.block_days,
            "block_rows": scores["block_rows"],
            "buffer_days": proto.buffer_days,
            "level": proto.level,
            "grid": proto.grid,
            "device": str(ctx.device),
            "folds": task.folds,
            "pretraining_intervals": meta.get("pretraining_intervals"),
            "iid_ci_width_ratio": scores["iid_ratio"],
        },
        arms=entries,
        differences=diffs,
        verdicts=verdicts,
        shortcuts=tricks,
        published_anchor=task.published_anchor,
        provenance=provenance(
            ctx.raw_params,
            checkpoint_sha=meta.get("checkpoint_sha256"),
            embeddings_sha=meta.get("embeddings_checkpoint_sha256"),
        ),
    )
