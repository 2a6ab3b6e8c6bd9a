"""F10.7: the daily 10.7 cm radio flux (sfu) from the day's SDO images.

A sample is a day: its input is the mean over the day's valid time steps, its target that day's
F10.7 (as observed, or adjusted to 1 AU). A day belongs to a split when all its time steps do.
Arms (the runner adds the random-init control):
- ``fm_head``: ridge on the day's mean embedding with the penalty of lowest validation error
  (`ridge_on_val`), or an MLP head (``head: mlp``);
- ``paper``: the classical regression, ridge on the day's mean image features (`disk_features`:
  log10 AIA disk means and the total unsigned HMI flux), penalty chosen on validation;
- ``persistence``: the last F10.7 measured before the day (normally the day before);
- ``climatology``: the training mean;
- ``oracle`` (synthetic Sun, with ``--truth``): ridge from the true unsigned flux of the regions
  the radio telescope saw at the day's observation time (the generator's own limb fade) to the
  flux at 1 AU, times the day's observed over adjusted flux ((1 AU / Earth's distance)²) for
  the observed flux: everything but the planted noise, so its RMSE is that noise (3 sfu).
Metrics: RMSE (sfu, headline), MAPE (%), Pearson r.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr

from sdofm import SdofmError
from sdofm.benchmarks.arm_groups import BASELINES
from sdofm.benchmarks.baselines import disk_features, planted_sun, ridge_on_val
from sdofm.benchmarks.heads import TargetScaler, fit, make_head, predict
from sdofm.benchmarks.metrics import Metric, mape, pearson_r, rmse
from sdofm.benchmarks.runner import Arm, Samples, Task
from sdofm.dataset.loader import CDELT_512, RSUN_ARCSEC
from sdofm.sources.events import read_f107

__all__ = ["F107", "planted_f107"]


def planted_f107(truth: Path, days) -> np.ndarray:
    """The unsigned flux (Mx) of the regions the synthetic radio telescope saw when it observed
    each day, with the generator's own fade across the limb: what its F10.7 is made of, before
    the noise. NaN on days it never observed."""
    from sdofm.sources.synthetic.indices import F107_LIMB_DEG, f107_times

    model = planted_sun(Path(truth))
    when = f107_times(model.sun)
    when = pd.Series(when, index=when.floor("D")).reindex(pd.DatetimeIndex(days))
    flux = np.full(len(when), np.nan)
    seen = when.notna().to_numpy()
    flux[seen] = [model.unsigned_flux(t, limb_deg=F107_LIMB_DEG) for t in when[seen]]
    return flux


class F107(Task):
    name = "f107"
    title = "F10.7: the daily 10.7 cm radio flux from SDO images"
    description = (
        "The day's F10.7 (sfu) from the mean over the day's images; RMSE (sfu), MAPE (%) and "
        "Pearson r over the test days"
    )
    headline = "rmse"
    metrics = (
        Metric("rmse", rmse, False, "RMSE (sfu)"),
        Metric("mape", mape, False, "MAPE (%)"),
        Metric("pearson_r", pearson_r, True, "Pearson r"),
    )
    published_anchor = {
        "source": "temporal convolutional networks forecasting F10.7 1-3 days ahead from the "
        "F10.7 series alone (real data; the design's anchor)",
        "values": {"rmse": 5.0},
        "note": "about 5 sfu, a forecast from the series over a solar cycle, not a nowcast "
        "from images: a scale, not a like-for-like number",
    }

    def samples(self) -> Samples:
        ds, p, self.alpha = self.ctx.ds, self.params, {}
        need = ["Bz"] if p["hmi_field"] == "bz" else ["Bx", "By", "Bz"]
        if not set(need) <= set(self.ctx.channels):
            msg = f"f107: hmi_field {p['hmi_field']!r} needs HMI {need}; the store has "
            raise SdofmError(msg + f"{self.ctx.channels}")
        series = read_f107(self.ctx.inputs.event_file("f107.csv"))[p["target"]].dropna()
        series.index = pd.DatetimeIndex(series.index).floor("D")
        series = series[~series.index.duplicated()]
        self.usable = ds.valid.values & np.isfinite(self.ctx.pretrained.embeddings).all(axis=1)
        self.rsun = float(ds.attrs.get("rsun_px", RSUN_ARCSEC / CDELT_512 / 512 * ds.sizes["x"]))
        steps = pd.DataFrame(
            {"day": pd.DatetimeIndex(ds.time.values).floor("D"), "split": ds.split.values}
        )
        self.day = steps.day.to_numpy()
        days = steps.groupby("day").split.agg(lambda s: s.iloc[0] if s.nunique() == 1 else "-")
        y = series.reindex(days.index).to_numpy(np.float64)
        if not np.isfinite(y).any():
            msg = f"f107: no {p['target']} value on any day of the store "
            raise SdofmError(msg + f"({days.index[0]:%Y-%m-%d} to {days.index[-1]:%Y-%m-%d})")
        self.days = days.index
        self.previous = series.shift(1).reindex(days.index).to_numpy(np.float64)
        has = np.isin(days.index, self.day[self.usable]) & np.isfinite(y + self.previous)
        split = np.where(has, days.to_numpy().astype(str), "none")
        return Samples(days.index.to_numpy(), split, y, unit="days")

    def _daily(self, per_step: np.ndarray) -> np.ndarray:
        """The mean over each day's usable steps of a (time, F) array: (day, F), 0 if none."""
        frame = pd.DataFrame(per_step[self.usable]).groupby(self.day[self.usable]).mean()
        return np.nan_to_num(frame.reindex(self.days).to_numpy(np.float64))

    def _ridge(self, name: str, x: np.ndarray):
        def train(f):
            xv = x()
            model, self.alpha[name] = ridge_on_val(xv, f.y, f.rows["train"], f.rows["val"])
            z = (xv - model.feature_mean_) / model.feature_std_
            return lambda rows: model.predict(z[rows])

        return train

    def fm_arm(self, backbone) -> Arm:
        def embeddings():
            return self._daily(np.nan_to_num(backbone.embeddings))

        what = f"on the day's mean {backbone.name} embedding"
        if self.params["head"] == "ridge":
            train = self._ridge(backbone.name, embeddings)
            return Arm("fm", f"ridge (penalty on validation) {what}", train, False, False)

        def mlp(f):
            z, (tr, va) = embeddings(), (f.rows["train"], f.rows["val"])
            scale = TargetScaler(f.y[tr])
            head = make_head(z[tr], 1, "mlp", hidden=self.params["hidden"])
            data = [(torch.tensor(z[r], dtype=torch.float32), scale(f.y[r])) for r in (tr, va)]
            model = fit(
                head, *data, **f.kwargs(epochs=self.params["max_epochs"], weight_decay=1e-2)
            )
            x = torch.tensor(z, dtype=torch.float32)
            return lambda rows: scale.inverse(predict(model, x[rows], device=f.device)[:, 0])

        return Arm("fm", f"MLP head {what}", mlp)

    def _features(self) -> np.ndarray:
        """`disk_features` of every usable time step, averaged per day."""
        ds, rows = self.ctx.ds, np.flatnonzero(self.usable)
        feats = np.full(
            (ds.sizes["time"], 1 + sum(c.endswith("A") for c in self.ctx.channels)), 0.0
        )
        for part in np.array_split(rows, max(1, len(rows) // 128)):
            phys = self.ctx.physical(part)
            feats[part] = disk_features(
                phys, self.ctx.channels, self.rsun, field=self.params["hmi_field"]
            )
        return self._daily(feats)

    def arms(self, samples: Samples) -> dict[str, Arm]:
        features = self._features()
        mean = float(samples.y[samples.where("train")].mean())
        arms = {
            "paper": Arm(
                "paper",
                "ridge on log10 AIA disk means and the total unsigned HMI flux, day means",
                self._ridge("paper", lambda: features),
                seeded=False,
                tuned=False,
            ),
            "persistence": Arm(
                "persistence",
                "the last F10.7 measured before the day",
                lambda f: lambda rows: self.previous[rows],
                seeded=False,
            ),
            "climatology": Arm(
                "trivial", "training mean", lambda f: lambda rows: np.full(len(rows), mean), False
            ),
        }
        truth = self.ctx.inputs.truth_file("regions.csv")
        if truth is not None:
            arms["oracle"] = Arm(
                "oracle",
                "ridge on the true unsigned flux the radio telescope saw (synthetic ground "
                "truth), scaled to Earth's distance: the planted noise is the floor",
                self._oracle(truth.parent),
                seeded=False,
                tuned=False,
            )
        return arms

    def _oracle(self, truth: Path):
        flux, factor = planted_f107(truth, self.days), np.ones(len(self.days))
        if self.params["target"] == "observed_flux":  # (1 AU / Earth's distance)², noise-free
            table = read_f107(self.ctx.inputs.event_file("f107.csv"))
            table.index = pd.DatetimeIndex(table.index).floor("D")
            table = table[~table.index.duplicated()].reindex(self.days)
            factor = (table.observed_flux / table.adjusted_flux).to_numpy(np.float64)

        def train(f):
            x = np.nan_to_num(flux)[:, None]
            model, _ = ridge_on_val(x, f.y / factor, f.rows["train"], f.rows["val"])
            z = (x - model.feature_mean_) / model.feature_std_
            return lambda rows: model.predict(z[rows]) * factor[rows]

        return train

    def group_extra(self, group: str, samples: Samples, preds) -> dict[str, Any]:
        return {"ridge_alpha": dict(self.alpha)}  # the penalties its ridge arms chose

    def extra(self, samples: Samples, preds: dict[str, list[np.ndarray]]) -> dict[str, Any]:
        steps = np.diff(samples.y)[np.diff(samples.times) == np.timedelta64(1, "D")]
        alpha = {}  # the first run's (unnamed, as its arms) and the baselines', then other runs'
        for k, (group, extra) in enumerate(self.groups.items()):
            suffix = "" if k == 0 or group == BASELINES else f"@{group}"
            alpha |= {f"{arm}{suffix}": a for arm, a in extra.get("ridge_alpha", {}).items()}
        return {
            "target": self.params["target"],
            "hmi_field": self.params["hmi_field"],
            "ridge_alpha": alpha,
            "rms_day_to_day_change_sfu": float(np.sqrt(np.nanmean(steps**2))),
        }

    def figures(self, samples: Samples, preds: dict[str, list[np.ndarray]]) -> xr.Dataset:
        """The daily series and split, and AIA 171 / HMI Bz on the quietest and most active
        test days (their first usable time step)."""
        test = samples.where("test")
        picks = test[[np.argmin(samples.y[test]), np.argmax(samples.y[test])]]
        rows = [np.flatnonzero(self.usable & (self.day == samples.times[d]))[0] for d in picks]
        channels = [c for c in ("171A", "Bz") if c in self.ctx.channels]
        images = self.ctx.ds.images.isel(time=rows).sel(channel=channels)
        return xr.Dataset(
            {
                "images": (("pick", "channel", "y", "x"), images.values, {"units": "DN/s, G"}),
                "image_time": ("pick", images.time.values),
                "image_f107": ("pick", samples.y[picks]),
                "f107": ("day", samples.y),
                "split": ("day", samples.split.astype(str)),
            },
            coords={"day": samples.times, "channel": channels},
            attrs={"rsun_px": self.rsun, "arcsec_per_px": RSUN_ARCSEC / self.rsun},
        )
