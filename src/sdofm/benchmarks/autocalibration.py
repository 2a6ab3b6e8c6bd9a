"""Auto-calibration: AIA dimming factors from dimmed images (Dos Santos et al. 2021, A&A 648, A53).

A sample is a (time step, draw) pair: the step's AIA channels are multiplied, in DN/s, by factors
α uniform in [alpha_min, 1], one per channel (fixed draws, seeded by the protocol's first seed).
Every arm predicts α per channel from the dimmed images; the runner adds the random-init control.
- ``fm_head``: MLP + sigmoid on the backbone's embedding of the dimmed images (all channels,
  normalised as in pretraining);
- ``paper_multichannel`` / ``paper_singlechannel``: the paper's CNN on the full-disk dimmed AIA
  images at the store's resolution, all channels at once or one independent CNN per channel;
- ``paper_ratio``: the paper's non-ML baseline (quiet-Sun log-normal mode, dimmed over undimmed);
- ``inner_median``, a shortcut (`shortcuts.inner_disk_median`): the inner-disk median (within
  half the radius) of the dimmed image over the training mean of that of the undimmed images,
  zero parameters; unlike ``paper_ratio`` no quiet-Sun mask, log-normal mode or clipping: if it
  wins, a constant quiet Sun gives α away;
- ``climatology``: the training mean of α; ``oracle``: the dimmed over the true undimmed image's
  total, i.e. the planted α: it scores 1 unless the dimming or the scoring is broken.
Metrics: fraction of α within 0.05 (headline) and 0.01, over channels and samples; the MAE. On the
synthetic Sun valid steps are also predicted with the planted degradation put back into their
corrected images (``extra`` rows): each arm's recovered degradation curve against the planted one.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr
from torch import nn

from sdofm import SdofmError
from sdofm.benchmarks.baseline_nets import DimmingCNN
from sdofm.benchmarks.baselines import dimming_ratio, quiet_sun_mask, quiet_sun_mode
from sdofm.benchmarks.heads import BackboneHead, fit, make_head, predict
from sdofm.benchmarks.metrics import Metric, frac_within, row_mae
from sdofm.benchmarks.runner import Arm, Samples, Task
from sdofm.benchmarks.shortcuts import inner_disk_median
from sdofm.dataset.loader import CDELT_512, Normaliser, store_rsun_px
from sdofm.sources.sdoml import AIA_CHANNELS

__all__ = ["Autocalibration", "Dimmed", "planted_dimming"]

CURVE_EVERY = 4  # the planted curve at one valid time step in four (it changes slowly)


def planted_dimming(path: Path, times, channels: list[str], reference, low: float) -> np.ndarray:
    """The planted degradation at ``times`` over its value at ``reference``, in [low, 1]: (T, C).

    ``degradation.csv`` holds the daily fraction of the launch sensitivity the store's images were
    divided by; multiplying them by factor(t) / factor(reference) gives what an instrument
    calibrated at ``reference`` records, so that ratio is the dimming a model should find.
    """
    table = pd.read_csv(path, index_col="time", parse_dates=["time"])
    at = pd.DatetimeIndex(np.append(times, reference)).as_unit("ns")
    days = pd.DatetimeIndex(table.index).as_unit("ns")
    covered = days.min() <= at.min() and at.max() <= days.max() + pd.Timedelta("1D")
    if not covered or {*channels} - {*table}:
        msg = f"{path} does not cover every time step and the channels {channels}"
        raise SdofmError(msg)
    factor = np.stack([np.interp(at.asi8, days.asi8, table[c]) for c in channels], axis=1)
    return np.clip(factor[:-1] / factor[-1], low, 1.0)


class Dimmed(nn.Module):
    """``model(prep(images[row] with its AIA channels × α))`` of (store row, α) inputs; the
    images stay in host memory, out of the state dict (and of early stopping's copies)."""

    def __init__(self, model: nn.Module, images: torch.Tensor, aia: list[int], prep):
        super().__init__()
        self.model, self.images, self.aia, self.prep = model, images, aia, prep

    def forward(self, rows: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
        x = self.images[rows.cpu()].to(alpha.device)
        x[:, self.aia] *= alpha[:, :, None, None]
        return self.model(self.prep(x))


class Autocalibration(Task):
    name = "autocalibration"
    single_frame = True  # a temporal backbone's runs are not applicable
    title = "Auto-calibration: AIA dimming factors from the images"
    description = (
        "Per-channel dimming factors α, uniform in [alpha_min, 1], from artificially dimmed AIA "
        "images; fraction of test samples with |α̂ − α| below 0.05 and 0.01, and the MAE"
    )
    metrics = (
        Metric("frac_within_0.05", frac_within(0.05), True, "fraction with |α̂ − α| < 0.05"),
        Metric("frac_within_0.01", frac_within(0.01), True, "fraction with |α̂ − α| < 0.01"),
        Metric("mae", row_mae, False, "mean |α̂ − α|", per_row=True),
    )
    headline = "frac_within_0.05"
    published_anchor = {
        "source": "Dos Santos et al. 2021, A&A 648, A53 (real SDO data, 256² images)",
        "values": {"frac_within_0.05_multichannel": 0.99, "frac_within_0.05_singlechannel": 0.84},
        "note": "the multi-channel CNN above the single-channel one, both far above the baseline",
    }

    def samples(self) -> Samples:
        ctx, p, ds = self.ctx, self.params, self.ctx.ds
        self.aia = [ctx.channels.index(c) for c in AIA_CHANNELS if c in ctx.channels]
        if not self.aia or ctx.hp.get("frames", 1) > 1:
            msg = (
                f"autocalibration needs AIA channels (the store has {ctx.channels}) and a "
                f"single-frame backbone (it takes {ctx.hp.get('frames', 1)} frames)"
            )
            raise SdofmError(msg)
        valid, split = np.flatnonzero(ds.valid.values), ds.split.values.astype(str)
        shape = (ds.sizes["time"], len(ctx.channels), ds.sizes["y"], ds.sizes["x"])
        self.phys = np.full(shape, np.nan, np.float32)
        self.phys[valid] = ctx.physical(valid)
        self.images, train = torch.from_numpy(self.phys), valid[split[valid] == "train"]
        self.mean = torch.from_numpy(np.nanmean(self.phys[train][:, self.aia], axis=(0, 2, 3)))
        draws = {"train": p["train_draws"], "val": p["eval_draws"], "test": p["eval_draws"]}
        rows = np.concatenate([np.repeat(valid[split[valid] == s], d) for s, d in draws.items()])
        rng = np.random.default_rng(ctx.protocol.seeds[0])
        alpha = rng.uniform(p["alpha_min"], 1.0, (len(rows), len(self.aia)))
        kinds, names = split[rows], [ctx.channels[k] for k in self.aia]
        truth, times = ctx.inputs.truth_file("degradation.csv"), ds.time.values
        self.reference = str(times[train[0]]) if len(train) else None
        if truth is not None and len(train):  # the planted curve: predicted, not scored
            step = valid[::CURVE_EVERY]
            planted = planted_dimming(truth, times[step], names, times[train[0]], p["alpha_min"])
            rows, kinds = np.append(rows, step), np.append(kinds, np.full(len(step), "extra"))
            alpha = np.concatenate([alpha, planted])
        self.rows, self.alpha = rows, torch.tensor(alpha, dtype=torch.float32)
        self._emb: dict[str, torch.Tensor] = {}
        return Samples(times[rows], kinds, alpha, unit="dimmed samples", outputs=names, rows=rows)

    def _x(self, idx) -> tuple[torch.Tensor, torch.Tensor]:
        return torch.from_numpy(self.rows[idx]), self.alpha[idx]

    def _per_chunk(self, fn):
        """A predictor applying ``fn(dimmed AIA images (N, C, H, W), sample rows)`` in chunks."""

        def run(part: np.ndarray) -> np.ndarray:
            x = self.phys[self.rows[part]][:, self.aia]
            return fn(x * self.alpha.numpy()[part][:, :, None, None], part)

        return lambda idx: np.concatenate(
            [run(k) for k in np.array_split(idx, len(idx) // 256 + 1)]
        )

    def _embedding(self, backbone) -> torch.Tensor:
        """The backbone's embedding of every sample's dimmed images (computed once)."""
        if backbone.name not in self._emb:
            net = BackboneHead(backbone.net, nn.Identity(), pool="embedding", finetune=False)
            model = Dimmed(net, self.images, self.aia, Normaliser(self.ctx.ds).torch)
            z = predict(model, self._x(slice(None)), device=self.ctx.device, batch_size=128)
            self._emb[backbone.name] = torch.tensor(z, dtype=torch.float32)
        return self._emb[backbone.name]

    def fm_arm(self, backbone) -> Arm:
        def train(f):
            z, tr, p = self._embedding(backbone), f.rows["train"], self.params
            head = make_head(z[tr].numpy(), len(self.aia), "mlp", hidden=p["head_hidden"])
            data = [(z[f.rows[s]], f.targets(s)) for s in ("train", "val")]
            kw = f.kwargs(epochs=p["max_epochs"], weight_decay=1e-2)
            model = fit(nn.Sequential(head, nn.Sigmoid()), *data, **kw)
            return lambda rows: predict(model, z[rows], device=f.device)

        what = f"MLP + sigmoid on the {backbone.name} backbone's embedding of the dimmed images"
        return Arm("fm", what, train)

    def _scale(self, x: torch.Tensor) -> torch.Tensor:
        """The CNN's input: the AIA channels over their training means (linear, as the paper)."""
        return torch.nan_to_num(x[:, self.aia]) / self.mean.to(x)[None, :, None, None]

    def _cnn(self, groups: int, filters: list[int]):
        def train(f):
            cnn = DimmingCNN(len(self.aia), self.phys.shape[-1], groups=groups, filters=filters)
            data = [(self._x(f.rows[s]), f.targets(s)) for s in ("train", "val")]
            kw = f.kwargs(epochs=self.params["cnn_epochs"], batch_size=16, weight_decay=0.0)
            model = fit(Dimmed(cnn, self.images, self.aia, self._scale), *data, **kw, patience=5)
            return lambda rows: predict(model, self._x(rows), device=f.device)

        return train

    def _ratio(self, f):
        """The paper's non-ML baseline (without HMI Bz, its quiet Sun is the central half)."""
        ch, gauss = self.ctx.channels, self.params["quiet_sun_gauss"]
        bz = self.phys[:, ch.index("Bz")] if "Bz" in ch else np.zeros_like(self.phys[:, 0])
        quiet = quiet_sun_mask(bz, gauss=gauss)
        train, floor = np.unique(self.rows[f.rows["train"]]), self.params["quiet_sun_floor"]
        modes = quiet_sun_mode(self.phys[train][:, self.aia], quiet[train], floor=floor)
        ref = np.nanmedian(modes, axis=0)
        return self._per_chunk(lambda x, k: dimming_ratio(x, quiet[self.rows[k]], ref, floor=floor))

    def _inner_median(self, f):
        """The shortcut: inner-disk median, dimmed over the training mean of the undimmed."""
        rsun = store_rsun_px(self.ctx.ds)
        train = np.unique(self.rows[f.rows["train"]])
        ref = inner_disk_median(self.phys[train][:, self.aia], rsun).mean(axis=0)
        return self._per_chunk(lambda x, k: inner_disk_median(x, rsun) / ref)

    def arms(self, samples: Samples) -> dict[str, Arm]:
        multi, single = self.params["cnn_filters"], self.params["cnn_filters_single"]
        n, cnn = len(self.aia), "the paper's CNN on the full-disk dimmed AIA images"
        total = np.nansum(self.phys[:, self.aia], axis=(2, 3))

        def climatology(f):
            mean = f.y[f.rows["train"]].mean(axis=0)
            return lambda rows: np.tile(mean, (len(rows), 1))

        def oracle(f):
            return self._per_chunk(lambda x, k: np.nansum(x, axis=(2, 3)) / total[self.rows[k]])

        ratio = "the paper's non-ML baseline: quiet-Sun log-normal mode, dimmed over training"
        median = "inner-disk median, dimmed over the training mean (zero parameters)"
        oracle_what = "dimmed over true undimmed image total: the planted α"
        return {
            "paper_multichannel": Arm("paper", f"{cnn}, all at once", self._cnn(1, multi)),
            "paper_singlechannel": Arm("paper", f"{cnn}, one per channel", self._cnn(n, single)),
            "paper_ratio": Arm("paper", ratio, self._ratio, seeded=False, tuned=False),
            "inner_median": Arm("shortcut", median, self._inner_median, False, False),
            "climatology": Arm("trivial", "training mean of α", climatology, seeded=False),
            "oracle": Arm("oracle", oracle_what, oracle, seeded=False, tuned=False),
        }

    def extra(self, samples: Samples, preds: dict[str, list[np.ndarray]]) -> dict[str, Any]:
        """The paper's ordering (multi- above single-channel) per seed; the planted curve."""
        test, ex, y = samples.where("test"), samples.where("extra"), samples.y
        score = {a: [frac_within(0.05)(y[test], p[test]) for p in r] for a, r in preds.items()}
        multi, single = score["paper_multichannel"], score["paper_singlechannel"]
        holds = bool(np.mean(multi) > np.mean(single))
        out = {"multi_vs_single": {"multi": multi, "single": single, "paper_ordering": holds}}
        if len(ex):
            late = self.ctx.ds.split.values[samples.rows[ex]] == "test"
            err = {
                a: np.mean([np.abs(p[ex] - y[ex]) for p in r], axis=(0, 2))
                for a, r in preds.items()
            }
            curve = {"mae_test_period": late, "mae_all_times": slice(None)}
            out["planted_curve"] = {
                k: {a: e[w].mean() for a, e in err.items()} for k, w in curve.items()
            }
            out["planted_curve"]["reference_time"] = self.reference
        return out

    def figures(self, samples: Samples, preds: dict[str, list[np.ndarray]]) -> xr.Dataset:
        """Three test time steps: their undimmed AIA images, true α and each arm's (seed 0)."""
        first = samples.where("test")[:: self.params["eval_draws"]]
        pick = first[np.unique(np.linspace(0, len(first) - 1, 3).round().astype(int))]
        images = self.phys[samples.rows[pick]][:, self.aia]
        pred = np.stack([r[0][pick] for r in preds.values()])
        return xr.Dataset(
            {
                "images": (("example", "channel", "y", "x"), images),
                "alpha_true": (("example", "channel"), samples.y[pick]),
                "channel": (("channel",), samples.outputs),
                "alpha_pred": (("arm", "example", "channel"), pred),
            },
            coords={"time": ("example", samples.times[pick]), "arm": [*preds]},
            attrs={"arcsec_per_px": CDELT_512 * 512 / images.shape[-1], "units": "DN/s"},
        )
