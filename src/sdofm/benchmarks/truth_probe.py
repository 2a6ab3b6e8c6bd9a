"""Known-truth probe: does the frozen embedding hold the synthetic Sun's planted regions?

Only the synthetic Sun knows its truth (``regions.csv``, ``flares.csv``), so the task needs
``--truth`` and refuses to run without it. Targets of each time step (not disk-integrated):
the number of visible active regions (|longitude| < 90°, flux >= 10^``min_log10_flux`` Mx),
the log10 flux of the largest, its latitude and longitude, and a δ flag (a visible region
of complexity >= ``delta_complexity``). Rows: the valid time steps with a visible region.
Arms (the runner adds the random-init control and the label-efficiency curve, `fractions`):
- ``fm_head``: a ridge probe on the frozen embedding (penalty chosen on validation);
- ``pooled_stats``: the same ridge probe on pooled per-channel statistics of the normalised
  images (mean, std and the 1/10/50/90/99th percentiles of every channel);
- ``cnn_supervised``: a small CNN trained from scratch on the normalised images;
- ``climatology``: the training mean (R² ≈ 0). No oracle: the targets are the truth itself.
Metrics: R² per continuous target, their mean (headline), and the δ flag's ROC AUC.
``extra``: the definitions; and per named run (`group_extra`, in the run's arm job, where its
backbone is loaded; the first run's at the top, every run's under ``per_run``) the probe at
every checkpoint kept during pretraining (headline with its interval against the step;
`sdofm.training.kept` refuses files from another run); a spatial readout, the same targets from
an `AttentiveProbe` on the token grid of the pretrained and the random-init backbone and on
per-patch statistics of the images on the same grid (the pooled embedding's ridge cannot say
where the largest region is); and flare location (lat/lon of a front-side flare in progress at
the frame), a separate subset scored by the mean great-circle error of ridge probes when every
split has enough such rows.
"""

from __future__ import annotations

from functools import cached_property
from typing import Any

import numpy as np
import pandas as pd
import torch

from sdofm import SdofmError
from sdofm.benchmarks import scoring
from sdofm.benchmarks.arm_groups import BASELINES
from sdofm.benchmarks.baselines import attentive_arm, climatology_arm, cnn_arm, ridge_arm
from sdofm.benchmarks.inputs import Backbone
from sdofm.benchmarks.metrics import Metric, mean_r2, on_column, r2, roc_auc
from sdofm.benchmarks.runner import Arm, Samples, Task, arm_predictions, log

__all__ = ["TruthProbe", "patch_statistics", "planted_targets"]

TARGETS = ["n_visible", "log10_flux_max", "lat_max_deg", "lon_max_deg", "delta"]
PERCENTILES = (1, 10, 50, 90, 99)


def planted_targets(regions: pd.DataFrame, times, *, min_flux: float, delta: int) -> np.ndarray:
    """(T, 5) targets `TARGETS` at ``times`` from the region table; NaN with no visible region."""
    from sdofm.sources.synthetic.sun import region_states

    out = np.full((len(times), len(TARGETS)), np.nan)
    for i, t in enumerate(pd.DatetimeIndex(times)):
        s = region_states(regions, t)
        seen = s.visible & (s.flux >= min_flux)
        if not seen.any():
            continue
        k = np.flatnonzero(seen)[np.argmax(s.flux[seen])]
        out[i] = [seen.sum(), np.log10(s.flux[k]), s.lat[k], s.lon[k], 0.0]
        out[i, 4] = float((s.complexity[seen] >= delta).any())
    return out


def patch_statistics(images: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Each channel's mean, std, max and min over the patches of a ``grid`` (gh, gw) tiling:
    (N, C, H, W) -> (N, 4C, gh, gw), the pixel statistics on a backbone's token grid."""
    n, c, h, w = images.shape
    gh, gw = grid
    if h % gh or w % gw:
        msg = f"images of {h}x{w} px do not tile into a {gh}x{gw} token grid"
        raise SdofmError(msg)
    x = images.reshape(n, c, gh, h // gh, gw, w // gw).permute(0, 1, 2, 4, 3, 5).flatten(4)
    return torch.cat([x.mean(-1), x.std(-1), x.amax(-1), x.amin(-1)], dim=1)


def flares_in_progress(flares: pd.DataFrame, times) -> np.ndarray:
    """(T, 2) lat/lon of the largest front-side flare in progress at each time; NaN if none."""
    out = np.full((len(times), 2), np.nan)
    front = flares[flares["front_side"].astype(bool)].sort_values("peak_flux")
    start, end = pd.to_datetime(front["start_time"]), pd.to_datetime(front["end_time"])
    for i, t in enumerate(pd.DatetimeIndex(times)):
        on = np.flatnonzero((start <= t).to_numpy() & (end >= t).to_numpy())
        if len(on):
            out[i] = front[["latitude_deg", "longitude_deg"]].to_numpy(float)[on[-1]]
    return out


class TruthProbe(Task):
    name = "truth_probe"
    title = "Known-truth probe: planted active regions from the frozen embedding"
    description = (
        "number, largest flux and position of the visible active regions and a delta flag of "
        "the synthetic Sun, probed from each representation; R² per target on the test split "
        "(headline: their mean) and the delta flag's ROC AUC"
    )
    metrics = (
        Metric("mean_r2", mean_r2([0, 1, 2, 3]), True, "mean R² of count, flux, lat, lon"),
        Metric("r2_count", on_column(r2, 0), True, "R² visible-region count"),
        Metric("r2_log_flux", on_column(r2, 1), True, "R² log10 largest flux"),
        Metric("r2_lat", on_column(r2, 2), True, "R² largest region's latitude"),
        Metric("r2_lon", on_column(r2, 3), True, "R² largest region's longitude"),
        Metric("delta_auc", on_column(roc_auc, 4), True, "delta flag ROC AUC", kind="score"),
    )
    headline = "mean_r2"

    @property
    def fractions(self) -> tuple[float, ...]:
        return tuple(self.params["fractions_percent"])

    def samples(self) -> Samples:
        path = self.ctx.inputs.truth_file("regions.csv")
        if path is None:
            msg = "truth_probe needs the synthetic Sun's ground truth (--truth): none on real data"
            raise SdofmError(msg)
        from sdofm.sources.synthetic.sun import read_regions

        ds, p = self.ctx.ds, self.params
        regions = read_regions(path)
        y = planted_targets(
            regions,
            ds.time.values,
            min_flux=10.0 ** p["min_log10_flux"],
            delta=p["delta_complexity"],
        )
        ok = ds.valid.values & np.isfinite(y).all(1)
        ok &= np.isfinite(self.ctx.pretrained.embeddings).all(axis=1)
        split = np.where(ok, ds.split.values.astype(str), "none")
        return Samples(ds.time.values, split, y, outputs=TARGETS)

    @cached_property
    def checkpoints(self) -> tuple[int, list[tuple[int, Any]]]:
        """(the final step, [(step, path)] of the checkpoints kept during pretraining)."""
        from sdofm.training.kept import kept_checkpoints

        return kept_checkpoints(self.ctx.inputs.checkpoint)

    def fm_arm(self, backbone: Backbone) -> Arm:
        if backbone is self.ctx.pretrained:  # refuse another run's kept files before training
            log(f"{self.name}: {len(self.checkpoints[1])} checkpoints kept during pretraining")
        train = ridge_arm(backbone.embeddings)
        desc = f"ridge probe on the {backbone.name} embedding (penalty chosen on validation)"
        return Arm("fm", desc, train, seeded=False)

    @cached_property
    def images(self) -> tuple[np.ndarray, np.ndarray]:
        """(pooled statistics (T, 7C), normalised images (T, C, H, W)) of every channel."""
        ds = self.ctx.ds
        rows = np.flatnonzero(ds.valid.values)
        n, c = ds.sizes["time"], len(self.ctx.channels)
        stats = np.full((n, len(PERCENTILES) * c + 2 * c), np.nan)
        norm = np.zeros((n, c, ds.sizes["y"], ds.sizes["x"]), np.float32)
        for part in np.array_split(rows, max(1, len(rows) // 128)):
            z = norm[part] = self.ctx.normalised(part)
            flat = z.reshape(len(part), c, -1)
            pct = np.percentile(flat, PERCENTILES, axis=2).transpose(1, 0, 2).reshape(len(part), -1)
            stats[part] = np.concatenate([flat.mean(2), flat.std(2), pct], axis=1)
        return stats, norm

    def arms(self, samples: Samples) -> dict[str, Arm]:
        stats, images = self.images
        p = self.params
        probe = "ridge probe on each channel's mean, std and 1/10/50/90/99th percentiles"
        net = cnn_arm(
            torch.from_numpy(images), width=p["cnn_width"], epochs=p["cnn_epochs"], patience=3
        )
        arms = {"pooled_stats": Arm("paper", probe, ridge_arm(stats), seeded=False)}
        arms["cnn_supervised"] = Arm("paper", "a small CNN trained on the images from scratch", net)
        arms["climatology"] = Arm("trivial", "training mean", climatology_arm, seeded=False)
        return arms

    def extra(self, samples: Samples, preds: dict[str, list[np.ndarray]]) -> dict[str, Any]:
        p = self.params
        out = {
            "targets": {
                "n_visible": f"regions at |lon| < 90 deg with flux >= 1e{p['min_log10_flux']:g} Mx",
                "log10_flux_max": "log10 flux (Mx) of the largest visible region",
                "lat_max_deg": "its latitude (deg)",
                "lon_max_deg": "its Stonyhurst longitude (deg)",
                "delta": f"1 if a visible region has complexity >= {p['delta_complexity']}",
            },
            "delta_rate": {
                s: float(np.mean(samples.y[samples.where(s), 4])) for s in ("train", "val", "test")
            },
        }
        runs = {g: e for g, e in self.groups.items() if g != BASELINES}
        if runs:  # the first run's at the top (what the report shows), every run's below
            out |= next(iter(runs.values()))
        if len(runs) > 1:
            out["per_run"] = runs
        return out

    def group_extra(self, group: str, samples: Samples, preds) -> dict[str, Any]:
        if group == BASELINES:
            return {}
        return {
            "pretraining_steps": self._steps(samples, preds),
            "token_probe": self._token_probe(samples),
            "flare_location": self._flare_location(samples),
        }

    def _token_probe(self, samples: Samples) -> dict[str, Any]:
        """The attentive probe on each representation's token grid: headline and targets with
        intervals, and the pretrained grid minus the others with verdicts (same resamples)."""
        from sdofm.benchmarks.heads import frozen_tokens

        if self.ctx.hp.get("frames", 1) > 1:
            return {"scored": "no: the backbone's tokens span several frames"}
        x, p = torch.from_numpy(self.images[1]), self.params
        backbones = {"fm_head": self.ctx.pretrained, "random_init": self.ctx.random_init}
        grids = {n: frozen_tokens(b.net, x, self.ctx.device) for n, b in backbones.items()}
        grids["patch_stats"] = patch_statistics(x, tuple(grids["fm_head"].shape[-2:]))
        preds = {}
        for name, grid in grids.items():
            probe = attentive_arm(
                grid, epochs=p["token_probe_epochs"], patience=p["token_probe_patience"]
            )
            arm = Arm("fm", f"attentive probe on the {name} token grid", probe)
            preds[name] = arm_predictions(self, f"{name} token probe", arm, samples)
        proto = self.ctx.protocol
        group = scoring.score(self, samples, preds, proto)["groups"]["all"]
        arms, diffs = scoring.estimates(self, group, proto.level)
        grid = "x".join(map(str, grids["fm_head"].shape[-2:]))
        return {"scored": "yes", "grid": grid, "arms": arms, "differences": diffs}

    def _steps(self, samples: Samples, preds) -> dict[str, Any]:
        """The probe's headline at every kept checkpoint and at the end (the FM head)."""
        from sdofm.models.checkpoint import load_backbone

        final_step, kept = self.checkpoints
        runs = {f"step{final_step}": preds["fm_head"]}
        for step, path in kept:
            net, hp = load_backbone(path)
            if hp["net_kwargs"] != self.ctx.hp["net_kwargs"]:
                msg = f"{path}: another architecture than {self.ctx.inputs.checkpoint}"
                raise SdofmError(msg)
            log(f"{self.name}: embedding with the checkpoint of step {step}")
            bb = Backbone(f"step {step}", net, hp, self.ctx)
            runs[f"step{step}"] = arm_predictions(self, f"step{step}", self.fm_arm(bb), samples)
        proto = self.ctx.protocol
        runs = {"fm_head": runs.pop(f"step{final_step}"), **runs}
        est, _ = scoring.estimates(
            self, scoring.score(self, samples, runs, proto)["groups"]["all"], proto.level
        )
        steps = sorted([(s, f"step{s}") for s, _ in kept] + [(final_step, "fm_head")])
        curve = [
            {"step": s, **{m: est[name][m] for m in (self.headline, "delta_auc")}}
            for s, name in steps
        ]
        return {"final_step": final_step, "kept": len(kept), "curve": curve}

    def _flare_location(self, samples: Samples) -> dict[str, Any]:
        """Ridge probes to the location of a flare in progress, on the rows that have one."""
        from sdofm.benchmarks.metrics import angular_error
        from sdofm.benchmarks.runner import Fit

        path = self.ctx.inputs.truth_file("flares.csv")
        if path is None:
            return {"rows": {}, "scored": "no: the ground truth has no flares.csv"}
        loc = flares_in_progress(pd.read_csv(path), samples.times)
        has = np.isfinite(loc).all(1) & np.isin(samples.split, ["train", "val", "test"])
        rows = {s: np.flatnonzero(has & (samples.split == s)) for s in ("train", "val", "test")}
        out: dict[str, Any] = {"rows": {s: int(len(r)) for s, r in rows.items()}}
        need = self.params["min_flare_rows"]
        if min(len(r) for r in rows.values()) < need:
            out["scored"] = f"no: fewer than {need} rows with a flare in progress in a split"
            return out
        feats = {
            "fm_head": self.ctx.pretrained.embeddings,
            "random_init": self.ctx.random_init.embeddings,
            "pooled_stats": self.images[0],
        }
        fit_rows = {"train": rows["train"], "val": rows["val"]}
        errors = {}
        for name, x in feats.items():
            f = Fit(fit_rows, loc, self.ctx.protocol.seeds[0], self.ctx.device)
            errors[name] = angular_error(loc[rows["test"]], ridge_arm(x)(f)(rows["test"]))
        centre = np.tile(loc[rows["train"]].mean(0), (len(rows["test"]), 1))
        errors["climatology"] = angular_error(loc[rows["test"]], centre)
        return out | {"scored": "yes", "mean_great_circle_error_deg": errors}
