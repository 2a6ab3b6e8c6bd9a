"""The benchmark runner: one protocol for every task.

A task module says what is predicted (`Samples`: targets, times and split of each sample),
by which arms (`Arm`: a function that trains on the training rows and returns a predictor),
and how it is scored (a list of `Metric`). The runner does the rest the same way for every task:

1. checks the split's buffers and that the backbone never saw a test row;
2. adds the foundation-model head and its **random-init control** (same architecture and head,
   untrained weights) from the task's `fm_arm`;
3. chooses each trained arm's settings from the protocol grid on the validation rows (seed 0),
   then trains every seed; thresholds of yes/no metrics are chosen on validation too;
4. scores every arm on the test rows: the mean over seeds, with a circular block bootstrap whose
   resamples also draw a seed, and the paired difference FM head − each arm;
5. writes predictions.csv, samples.nc (the task's figure data) and, last, metrics.json.
"""

from __future__ import annotations

import dataclasses
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import xarray as xr

from sdofm import SdofmError
from sdofm.benchmarks import protocol as pr
from sdofm.benchmarks import scoring
from sdofm.benchmarks.arm_groups import BASELINES, ArmGroup
from sdofm.benchmarks.inputs import Backbone, Context, TaskInputs
from sdofm.benchmarks.metrics import Metric, best_threshold
from sdofm.benchmarks.result import KINDS, write_json
from sdofm.io import atomic_output, file_sha256

__all__ = [
    "Arm",
    "NotApplicable",
    "Samples",
    "Task",
    "TaskInputs",
    "arm_predictions",
    "baseline_group",
    "fm_group",
    "prepare",
    "run_task",
    "score_groups",
]

Predictor = Callable[[np.ndarray], np.ndarray]


class NotApplicable(SdofmError):
    """The task cannot use this run's backbone (e.g. a temporal one for a single-image task)."""


@dataclass
class Samples:
    """What a task predicts: one entry per sample (a time step, a day, a dimmed image, ...).

    ``split`` is train/val/test, or ``extra`` for rows predicted but not scored (the virtual
    instrument after MEGS-A); anything else is ignored. ``y`` holds the targets (NaN-free on
    the scored rows); ``outputs`` names the columns of a 2-D target for predictions.csv
    (None: the target is not written, e.g. images).
    """

    times: np.ndarray
    split: np.ndarray
    y: np.ndarray
    unit: str = "time steps"
    outputs: list[str] | None = None
    rows: np.ndarray | None = None  # store row of each sample, where a task needs it

    def where(self, split: str) -> np.ndarray:
        return np.flatnonzero(self.split == split)


@dataclass
class Arm:
    """One compared model. ``train(fit)`` returns a predictor of sample rows.

    ``seeded``: trained from a random initialisation (once per protocol seed); otherwise one
    deterministic fit. ``tuned``: its settings come from the protocol grid.
    """

    kind: str
    description: str
    train: Callable[[Fit], Predictor] | None  # None: loaded from a saved arm group
    seeded: bool = True
    tuned: bool = True


@dataclass
class Fit:
    """What an arm's ``train`` receives: the rows to learn from, the seed, the device, settings."""

    rows: dict[str, np.ndarray]
    y: np.ndarray
    seed: int
    device: torch.device
    settings: dict[str, Any] = field(default_factory=dict)

    def kwargs(self, **defaults: Any) -> dict[str, Any]:
        """Keyword arguments for `heads.fit`: the task's defaults, then the grid's settings."""
        return defaults | self.settings | {"seed": self.seed, "device": self.device}

    def targets(self, split: str) -> torch.Tensor:
        y = torch.as_tensor(self.y[self.rows[split]], dtype=torch.float32)
        return y[:, None] if y.ndim == 1 else y


class Task:
    """Base of a task module's class: override `samples`, `arms` and `fm_arm`."""

    name = ""
    title = ""
    description = ""
    metrics: tuple[Metric, ...] = ()
    headline = ""
    threshold_metric: str | None = None  # yes/no metrics: threshold maximising it on val
    published_anchor: dict[str, Any] | None = None
    folds = 1
    single_frame = False  # True: the FM arms need a backbone of single frames
    fractions: tuple[float, ...] = ()  # label-efficiency curve: % of the training labels
    groups: dict[str, dict[str, Any]] = {}  # the scoring step's: each group's `group_extra`

    def __init__(self, ctx: Context):
        self.ctx, self.params = ctx, ctx.params

    def samples(self) -> Samples:
        raise NotImplementedError

    def fm_arm(self, backbone: Backbone) -> Arm:
        raise NotImplementedError

    def arms(self, samples: Samples) -> dict[str, Arm]:
        raise NotImplementedError

    def extra(self, samples: Samples, preds: dict[str, list[np.ndarray]]) -> dict[str, Any]:
        """Task-specific results for metrics.json's ``extra`` (none by default)."""
        return {}

    def group_extra(self, group: str, samples: Samples, preds: dict[str, list[np.ndarray]]):
        """What a group's training job knows and the scoring step does not (the penalties its
        arms chose, a run's probes at its kept checkpoints, saliency through its backbone):
        JSON-able, saved with the group; the scoring step sets ``self.groups`` (group name ->
        this, named runs first, then the baselines) before `extra` and `figures`."""
        return {}

    def figures(self, samples: Samples, preds: dict[str, list[np.ndarray]]) -> xr.Dataset:
        """Data for the report's figures, written to samples.nc (empty by default)."""
        return xr.Dataset()


def log(message: str) -> None:
    """A progress line in the job log (flushed, so `tail -f` follows it)."""
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def prepare(task_cls: type[Task], inputs: TaskInputs, params: dict) -> tuple[Task, Samples]:
    """Open the inputs, check the split's buffers and build the task's samples."""
    ctx = Context.open(inputs, params)
    if task_cls.single_frame and ctx.hp.get("frames", 1) > 1:
        msg = f"{task_cls.name} takes single images; this backbone takes {ctx.hp['frames']} frames"
        raise NotApplicable(msg)
    task = task_cls(ctx)
    pr.check_split_buffers(ctx.ds.time.values, ctx.ds.split.values, ctx.protocol.buffer_days)
    samples = task.samples()
    for s in ("train", "val", "test"):
        if len(samples.where(s)) < 2:
            msg = f"{task.name}: the {s} split has {len(samples.where(s))} usable {samples.unit}"
            raise SdofmError(msg)
    return task, samples


def fm_group(task: Task, samples: Samples, run: str) -> ArmGroup:
    """The FM head and its random-init control on the backbone of named run ``run``."""
    ctx = task.ctx
    test_times = samples.times[samples.where("test")]
    pr.check_pretraining(test_times, ctx.pretraining_intervals, str(ctx.inputs.checkpoint))
    arms = {"fm_head": task.fm_arm(ctx.pretrained), "random_init": task.fm_arm(ctx.random_init)}
    arms["random_init"].kind = "control"
    arms["random_init"].description += " (control: the same network with untrained weights)"
    meta = {
        "checkpoint_sha256": file_sha256(ctx.inputs.checkpoint),
        "embeddings_checkpoint_sha256": ctx.embeddings_sha,
        "pretraining_intervals": ctx.pretraining_intervals,
    }
    return _train_group(task, samples, run, arms, meta)


def baseline_group(task: Task, samples: Samples) -> ArmGroup:
    """The task's own arms (paper, shortcut, persistence, trivial, oracle): trained once for
    all runs."""
    return _train_group(task, samples, BASELINES, task.arms(samples), {})


def _train_group(task, samples, name, arms, meta) -> ArmGroup:
    proto, device = task.ctx.protocol, task.ctx.device
    preds, info = {}, {}
    for arm_name, arm in arms.items():
        if arm.kind not in KINDS:
            msg = f"{task.name}: arm {arm_name} has kind {arm.kind!r}, not one of {KINDS}"
            raise SdofmError(msg)
        preds[arm_name], chosen = _train_arm(task, arm_name, arm, samples, proto, device)
        info[arm_name] = {"kind": arm.kind, "description": arm.description, "chosen": chosen}
    curves = {
        float(p): {n: _train_arm(task, n, a, samples, proto, device, p)[0] for n, a in arms.items()}
        for p in task.fractions
        if p < 100
    }
    meta = meta | {"extra": task.group_extra(name, samples, preds)}
    return ArmGroup(name, samples.times, samples.split, info, preds, curves, meta)


def score_groups(task: Task, samples: Samples, groups: list[ArmGroup], out_dir: str | Path):
    """Score every arm of ``groups`` (named runs first, the first run's arms unrenamed, then the
    baselines) on the same test rows and resamples; write the task's outputs; return metrics.json.
    """
    proto = task.ctx.protocol
    skipped = {g.name: g.meta["not_applicable"] for g in groups if "not_applicable" in g.meta}
    groups = [g for g in groups if g.name not in skipped]
    names = {g.name for g in groups}
    if BASELINES not in names or names == {BASELINES}:
        msg = f"{task.name}: scoring needs the {BASELINES} group and at least one named run"
        raise SdofmError(msg)
    # every arm on the same rows: those that every run's backbone embedded
    aligned = [g.aligned(samples.times, samples.split, task.name) for g in groups]
    groups = [g for g, _ in aligned]
    runs = [g for g in groups if g.name != BASELINES]
    scored = np.isin(samples.split, ["val", "test"])
    dropped = {g.name: int(np.sum(scored & ~has)) for g, has in aligned if np.any(scored & ~has)}
    kept = np.logical_and.reduce([has for _, has in aligned])
    samples = dataclasses.replace(samples, split=np.where(kept, samples.split, "none"))

    def arm_name(group: ArmGroup, arm: str) -> str:
        return arm if group.name == BASELINES or group is runs[0] else f"{arm}@{group.name}"

    ordered = [*runs, *[g for g in groups if g.name == BASELINES]]
    arms, preds, chosen = {}, {}, {}
    for g in ordered:
        for arm, info in g.arms.items():
            name = arm_name(g, arm)
            run = "" if g.name == BASELINES else f" [run {g.name}]"
            arms[name] = Arm(info["kind"], info["description"] + run, train=None)
            preds[name], chosen[name] = g.preds[arm], info["chosen"]
    log(f"{task.name}: scoring {len(arms)} arms, {proto.bootstrap} block-bootstrap resamples")
    scores = scoring.score(task, samples, preds, proto)
    result = scoring.result(task, samples, arms, chosen, scores, task.ctx, runs[0].meta)
    result.runs = {
        g.name: scoring.run_entry(
            task, scores["groups"]["all"], proto.level, arm_name(g, "fm_head"), g.meta
        )
        | {
            "control": arm_name(g, "random_init"),
            # what a sweep chooses on: the FM head's headline on validation, mean over seeds
            "validation": float(
                np.nanmean([_on_validation(task, samples, p) for p in g.preds["fm_head"]])
            ),
        }
        for g in runs
    }
    task.groups = {g.name: g.meta.get("extra", {}) for g in ordered}
    result.extra = task.extra(samples, preds)
    suns = pr.split_suns(
        samples.times, samples.split, task.ctx.inputs.truth_file("parameters.json")
    )
    if suns:
        result.extra["suns"] = suns
    if skipped:
        result.extra["not_applicable"] = skipped
    if dropped:  # validation/test rows left out for all arms: a run has no embedding there
        result.extra["rows_without_embedding"] = dropped
    if task.fractions:
        result.extra["curves"] = _curves(task, samples, ordered, arm_name, proto)
        result.extra["curves"]["100"] = {
            "n_train": result.split["train"],
            "arms": {a: v["metrics"] for a, v in result.arms.items()},
            "differences": result.differences,
        }
    data = result.to_json()  # validated before anything is written
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_output(out_dir / "samples.nc") as tmp:
        task.figures(samples, preds).to_netcdf(tmp, engine="h5netcdf")
    with atomic_output(out_dir / "predictions.csv") as tmp:
        scoring.predictions_table(samples, preds, scores["thresholds"]).to_csv(tmp, index=False)
    write_json(data, out_dir / "metrics.json")  # last: Snakemake's sign the task is done
    return data


def run_task(task_cls: type[Task], inputs: TaskInputs, out_dir: str | Path, params: dict) -> dict:
    """Run one task under the protocol in one process (the FM run's arms and the baselines, then
    the scoring step); write its outputs to ``out_dir``; return metrics.json."""
    task, samples = prepare(task_cls, inputs, params)
    groups = [fm_group(task, samples, Path(inputs.checkpoint).parent.name or "fm")]
    return score_groups(task, samples, [*groups, baseline_group(task, samples)], out_dir)


def arm_predictions(task: Task, name: str, arm: Arm, samples: Samples) -> list[np.ndarray]:
    """One more arm trained under the protocol (all labels): its predictions, one per seed.

    For a task's ``extra`` comparisons (e.g. the backbone at earlier pretraining steps)."""
    return _train_arm(task, name, arm, samples, task.ctx.protocol, task.ctx.device)[0]


def _train_arm(task, name, arm, samples, proto, device, percent: float = 100.0):
    """Predictions of every seed on every sample row (NaN on train rows), and chosen settings.

    Below 100 % of the labels each seed trains on its own contiguous block of the training rows
    (`protocol.label_subset`), so every arm, deterministic ones included, runs once per seed.
    """
    train, val = samples.where("train"), samples.where("val")
    predict_rows = np.flatnonzero(np.isin(samples.split, ["val", "test", "extra"]))
    subset = percent < 100
    seeds = proto.seeds if arm.seeded or subset else proto.seeds[:1]
    points = proto.grid_points() if arm.tuned and arm.seeded else [{}]

    def run(seed: int, settings: dict) -> np.ndarray:
        k = proto.seeds.index(seed)
        rows = {"train": pr.label_subset(train, percent, k, len(seeds)), "val": val}
        log(f"{task.name}: {name} seed {seed} {percent:g} % {settings or ''}".rstrip())
        torch.manual_seed(seed)  # the initial weights, built before heads.fit, are the seed's too
        predictor = arm.train(Fit(rows, samples.y, seed, device, settings))
        out = np.full((len(samples.split), *np.shape(samples.y)[1:]), np.nan)
        out[predict_rows] = np.asarray(predictor(predict_rows), float).reshape(
            len(predict_rows), *np.shape(samples.y)[1:]
        )
        return out

    seed0 = None
    setting = points[0]
    if len(points) > 1:
        pr.check_choice_rows(val, samples.split, f"{name}'s settings")
        first = [run(seeds[0], point) for point in points]
        k_best = _best_on_validation(task, samples, first)
        setting, seed0 = points[k_best], first[k_best]
    out = [seed0 if seed0 is not None else run(seeds[0], setting)]
    out += [run(s, setting) for s in seeds[1:]]
    return out, setting


def _curves(task, samples, groups, arm_name, proto) -> dict[str, Any]:
    """Every arm at each fraction of the training labels (`Task.fractions`), under the protocol."""
    curves = {}
    for percent in sorted(groups[0].curves):
        preds = {arm_name(g, a): g.curves[percent][a] for g in groups for a in g.arms}
        group = scoring.score(task, samples, preds, proto)["groups"]["all"]
        est, diffs = scoring.estimates(task, group, proto.level)
        n = len(pr.label_subset(samples.where("train"), percent, 0, len(proto.seeds)))
        curves[f"{percent:g}"] = {"n_train": n, "arms": est, "differences": diffs}
    return curves


def _on_validation(task, samples, pred) -> float:
    """The headline metric of predictions ``pred`` on the validation rows (NaN if undefined)."""
    metric = next(m for m in task.metrics if m.name == task.headline)
    val = samples.where("val")
    p = pred[val]
    if metric.kind == "decision":
        th = best_threshold(samples.y[val], p, _threshold_fn(task))
        p = p >= th
    v = metric.fn(samples.y[val], p)
    return float(np.nanmean(v)) if metric.per_row else float(v)


def _best_on_validation(task, samples, candidates) -> int:
    """Index of the candidate predictions with the best headline metric on validation rows."""
    metric = next(m for m in task.metrics if m.name == task.headline)
    values = [_on_validation(task, samples, pred) for pred in candidates]
    values = np.where(np.isfinite(values), values, -np.inf if metric.higher_is_better else np.inf)
    return int(np.argmax(values) if metric.higher_is_better else np.argmin(values))


def _threshold_fn(task):
    return next(m.fn for m in task.metrics if m.name == task.threshold_metric)
