"""Missing channel: one AIA channel from the others (Salvatelli et al. 2019, 2022; Lim et al. 2021).

A sample is a time step, its target the withheld channel's image on the disk (DN/s); trained arms
learn it normalised (log1p, standardised) with a squared error on the disk. Arms (the runner adds
the random-init control): ``fm_head``, a decoder of the backbone's token grid computed with the
target withheld (set to its training mean), with ``head_skip`` also given the other AIA channels
at full resolution (frozen tokens computed once; ``finetune`` trains the backbone with it);
``paper``, the papers' U-Net on the other AIA channels; ``per_pixel``, a shortcut
(`shortcuts.per_pixel_arm`): a quadratic in log intensity of the other channels, the same at
every pixel, fitted by least squares on the training images (no spatial context: if it beats the
U-Net, the task needs none); ``persistence``, the target's image at the previous usable time
step (taken before, never the one predicted); ``climatology``, the per-pixel training mean;
``oracle`` (synthetic Sun, with ``--truth``), the target's noise-free image, rendered again by
the generator from the ground truth (`planted_images`): only the photon noise of the stored
image is left, the ceiling of any reconstruction. Metrics per test image on the disk, averaged:
pixel correlation (headline), ppe10 and ppe50 (pixels within 10 % / 50 %), RMSE, relative error
of the disk-integrated flux.
``extra``: the same on the test images taken inside a listed flare.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
import xarray as xr

from sdofm import SdofmError
from sdofm.benchmarks.baseline_nets import UNet
from sdofm.benchmarks.baselines import planted_sun
from sdofm.benchmarks.heads import BackboneHead, TokenDecoder, fit, frozen_tokens, predict
from sdofm.benchmarks.metrics import Metric, pixel_correlation, ppe, row_rmse
from sdofm.benchmarks.metrics import relative_flux_difference as flux_error
from sdofm.benchmarks.runner import Arm, Samples, Task
from sdofm.benchmarks.shortcuts import per_pixel_arm
from sdofm.dataset.loader import CDELT_512, Normaliser, disk_mask, store_rsun_px
from sdofm.sources.events import goes_class_to_flux, read_flare_list
from sdofm.sources.sdoml import AIA_CHANNELS

__all__ = ["MissingChannel", "flaring_times", "planted_images"]


def planted_images(truth: Path, times, channel: str, size: int) -> np.ndarray:
    """The noise-free ``channel`` images (DN/s) of the synthetic Sun at the frames nearest
    ``times``, mean-downsampled to ``size``² as the store's: (N, size, size).

    The generator renders them again from its ground truth (`planted_sun`); each one's disk
    mean must be the one it wrote then (``aia_disk_mean.csv``), or the truth is refused.
    """
    from sdofm.dataset.build import downsample

    model = planted_sun(Path(truth))
    frames = model.sun.times[model.sun.times.get_indexer(pd.DatetimeIndex(times), "nearest")]
    written = pd.read_csv(Path(truth) / "aia_disk_mean.csv", index_col=0, parse_dates=True)
    out = np.zeros((len(frames), size, size), np.float32)
    for k, t in enumerate(frames):
        image = model.render(t, model.sun.image_size)[2][channel]
        if not np.isclose(image.mean(), written[channel].get(t, np.nan), rtol=1e-6):
            msg = f"{truth}: the {channel} image of {t} is not the one this truth was written with"
            raise SdofmError(msg)
        out[k] = downsample(image, size)
    return out


def flaring_times(times: np.ndarray, flares: pd.DataFrame, min_class: str) -> np.ndarray:
    """Whether each time lies within [start, end] of a listed flare of at least ``min_class``."""
    pairs = zip(flares["goes_class"], flares["peak_flux"], strict=True)
    size = [goes_class_to_flux(c) if isinstance(c, str) and c.strip() else f for c, f in pairs]
    big = flares[np.asarray(size, float) >= goes_class_to_flux(min_class)]
    t = pd.DatetimeIndex(times).to_numpy()[:, None]
    start = big["start"].to_numpy(dtype="datetime64[ns]")[None, :]
    end = big["end"].to_numpy(dtype="datetime64[ns]")[None, :]
    return ((t >= start) & (t <= end)).any(axis=1)


class MissingChannel(Task):
    name = "missing_channel"
    single_frame = True  # a temporal backbone's runs are not applicable
    title = "Missing channel: one AIA channel reconstructed from the others"
    description = (
        "The withheld AIA channel's image from the other AIA channels of the same time step; "
        "per-image scores on the solar disk (DN/s), averaged over the test images"
    )
    metrics = (
        Metric("pixel_correlation", pixel_correlation, True, "pixel correlation", per_row=True),
        Metric("ppe10", ppe(0.1), True, "pixels within 10 % (ppe10)", per_row=True),
        Metric("ppe50", ppe(0.5), True, "pixels within 50 % (ppe50)", per_row=True),
        Metric("rmse", row_rmse, False, "RMSE on the disk (DN/s)", per_row=True),
        Metric("flux_difference", flux_error, False, "|Δ disk flux| / flux", per_row=True),
    )
    headline = "pixel_correlation"
    published_anchor = {
        "source": "Lim et al. 2021, ApJL 915, L31 (real SDO data)",
        "values": {"pixel_correlation_min": 0.84, "pixel_correlation_max": 0.97},
        "note": "average on-disk pixel correlation over the nine AIA channels, each from the best "
        "1 (0.84), 2 (0.95) or 3 (0.97) other channels, by a conditional GAN",
    }

    def samples(self) -> Samples:
        ctx, p, ds = self.ctx, self.params, self.ctx.ds
        channels, target = ctx.channels, p["target"]
        aia = [c for c in AIA_CHANNELS if c in channels]
        if target not in aia or len(aia) < 2 or ctx.hp.get("frames", 1) > 1:
            msg = (
                f"missing_channel: target {target!r} must be one of at least two AIA channels of "
                f"the store {aia}, for a single-frame backbone (frames: {ctx.hp.get('frames', 1)})"
            )
            raise SdofmError(msg)
        self.t = channels.index(target)
        if str(ds.transform.values[self.t]) != "log1p":
            msg = f"missing_channel: target {target!r} is not log1p-normalised in the store"
            raise SdofmError(msg)
        flares = None
        if ctx.inputs.events is not None:  # read before any training: a broken list fails fast
            flares = read_flare_list(ctx.inputs.event_file("flares.csv"))
        size = int(ds.sizes["y"])
        if size % 2 ** p["unet_levels"]:
            msg = f"missing_channel: image size {size} is not divisible by 2^unet_levels"
            raise SdofmError(msg)
        self.rsun_px = store_rsun_px(ds)
        self.mask = disk_mask(size, self.rsun_px)
        valid = np.flatnonzero(ds.valid.values)
        phys = ctx.physical(valid)
        ok = np.isfinite(phys[:, self.t][:, self.mask]).all(axis=1)
        rows, phys = valid[ok], phys[ok]
        norm = Normaliser(ds)
        z = torch.from_numpy(norm(phys))
        self.others = [channels.index(c) for c in aia if c != target]
        self.pixels = phys[:, self.others][:, :, self.mask]  # the shortcut's inputs (DN/s)
        self.skip, self.y_norm = z[:, self.others].contiguous(), z[:, [self.t]].contiguous()
        z[:, self.t] = 0.0  # withheld: the training mean in normalised units
        self.z_fm, self.tokens = z, {}
        self.mean, self.std = float(norm.mean[self.t, 0, 0]), float(norm.std[self.t, 0, 0])
        times = ds.time.values[rows]
        frame = pd.DatetimeIndex(ds.frame_time.values[rows, self.t]) if "frame_time" in ds else None
        self.when = times if frame is None else np.where(frame.isna(), times, frame.to_numpy())
        self.flaring = (
            None if flares is None else flaring_times(self.when, flares, p["min_flare_class"])
        )
        y = phys[:, self.t][:, self.mask].astype(np.float64)
        split = ds.split.values.astype(str)[rows]
        return Samples(times, split, y, unit="images", rows=rows)

    def _physical(self, z: np.ndarray) -> np.ndarray:
        """Normalised target images (N, 1, H, W) -> DN/s on the disk pixels (N, P)."""
        return np.expm1(z[:, 0][:, self.mask] * self.std + self.mean)

    def _disk_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        m = torch.as_tensor(self.mask, device=pred.device)
        return ((pred - target)[:, :, m] ** 2).mean()

    def _fit(self, model, x: tuple[torch.Tensor, ...], f):
        """Train ``model`` on inputs ``x`` (one tensor per argument, indexed by sample row)."""
        p = self.params
        data = [(tuple(t[f.rows[s]] for t in x), self.y_norm[f.rows[s]]) for s in ("train", "val")]
        kw = f.kwargs(epochs=p["max_epochs"], batch_size=p["batch_size"], patience=p["patience"])
        model = fit(model, *data, **kw, loss_fn=self._disk_loss)
        return lambda rows: self._physical(
            predict(model, tuple(t[rows] for t in x), device=f.device, batch_size=64)
        )

    def fm_arm(self, backbone) -> Arm:
        p = self.params
        skip = (self.skip,) if p["head_skip"] else ()

        def train(f):
            if backbone.name not in self.tokens:  # frozen tokens, computed once per backbone
                self.tokens[backbone.name] = frozen_tokens(backbone.net, self.z_fm, self.ctx.device)
            tokens = self.tokens[backbone.name]
            width, chans = p["head_width"], len(self.others) if skip else 0
            patch = self.mask.shape[0] // tokens.shape[-1]
            decoder = TokenDecoder(tokens.shape[1], patch, width=width, skip_chans=chans)
            if not p["finetune"]:
                return self._fit(decoder, (tokens, *skip), f)
            model = BackboneHead(copy.deepcopy(backbone.net), decoder, pool="tokens", finetune=True)
            return self._fit(model, (self.z_fm, *skip), f)

        how = "fine-tuned with" if p["finetune"] else "frozen under"
        extra = " and the other AIA channels" if p["head_skip"] else ""
        return Arm(
            "fm", f"decoder of the token grid{extra}; {backbone.name} backbone {how} it", train
        )

    def arms(self, samples: Samples) -> dict[str, Arm]:
        p = self.params

        def unet(f):
            net = UNet(len(self.others), width=p["unet_width"], levels=p["unet_levels"])
            return self._fit(net, (self.skip,), f)

        def climatology(f):
            mean = f.y[f.rows["train"]].mean(axis=0)
            return lambda rows: np.tile(mean, (len(rows), 1))

        def persistence(f):
            # Samples are the usable store rows in time order: the previous sample is the
            # target's last image before this one, whatever its split (it was taken earlier).
            previous = np.concatenate([[f.y[f.rows["train"]].mean(axis=0)], f.y[:-1]])
            return lambda rows: previous[rows]

        before = "the target's image at the previous time step"
        n = 2 * len(self.others) + 1
        quadratic = (
            f"per-pixel quadratic in log intensity of the other channels ({n} parameters, "
            "least squares on the training images, no spatial context)"
        )
        arms = {
            "paper": Arm("paper", "U-Net on the other AIA channels (Salvatelli et al.)", unet),
            "per_pixel": Arm("shortcut", quadratic, per_pixel_arm(self.pixels), False, False),
            "persistence": Arm("persistence", before, persistence, seeded=False, tuned=False),
            "climatology": Arm("trivial", "per-pixel training mean", climatology, seeded=False),
        }
        path = self.ctx.inputs.truth_file("aia_disk_mean.csv")
        if path is not None:
            what = "the noise-free target image, rendered again from the synthetic ground truth"
            arms["oracle"] = Arm("oracle", what, self._oracle(path.parent), False, False)
        return arms

    def _oracle(self, truth: Path):
        def images(rows: np.ndarray) -> np.ndarray:
            size, target = self.mask.shape[0], self.params["target"]
            return planted_images(truth, self.when[rows], target, size)[:, self.mask]

        return lambda f: images

    def extra(self, samples: Samples, preds: dict[str, list[np.ndarray]]) -> dict[str, Any]:
        """Every metric on the test images taken during a listed flare (mean over seeds)."""
        test = samples.where("test")
        info: dict[str, Any] = {"min_class": self.params["min_flare_class"], "count": 0}
        if self.flaring is None:
            return {"flare_times": info | {"note": "no flare list given"}}
        rows = test[self.flaring[test]]
        info["count"] = int(len(rows))
        for arm, runs in preds.items() if len(rows) else ():
            scores = {
                m.name: [np.nanmean(m.fn(samples.y[rows], p[rows])) for p in runs]
                for m in self.metrics
            }
            info.setdefault("metrics", {})[arm] = {k: float(np.mean(v)) for k, v in scores.items()}
        return {"flare_times": info}

    def figures(self, samples: Samples, preds: dict[str, list[np.ndarray]]) -> xr.Dataset:
        """A few test images (truth and each arm, seed 0) and 2-D histograms of disk pixels."""
        test, n = samples.where("test"), self.params["n_samples"]
        pick = test[np.unique(np.linspace(0, len(test) - 1, min(n, len(test))).round().astype(int))]
        if self.flaring is not None and self.flaring[test].any() and not self.flaring[pick].any():
            fl = test[self.flaring[test]]
            pick = np.unique(np.append(pick[:-1], fl[np.argmax(samples.y[fl].sum(axis=1))]))
        names, size = list(preds), self.mask.shape[0]

        def image(v: np.ndarray) -> np.ndarray:
            out = np.full((len(v), size, size), np.nan, np.float32)
            out[:, self.mask] = v
            return out

        t = samples.y[test]
        edges = np.linspace(np.log10(max(t[t > 0].min(), 1e-3)), np.log10(t.max()), 61)
        clip = lambda v: np.log10(np.clip(v, 10 ** edges[0], 10 ** edges[-1])).ravel()  # noqa: E731
        hist = [np.histogram2d(clip(t), clip(preds[a][0][test]), [edges, edges])[0] for a in names]
        flaring = np.zeros(len(pick), bool) if self.flaring is None else self.flaring[pick]
        return xr.Dataset(
            {
                "truth": (("sample", "y", "x"), image(samples.y[pick])),
                "prediction": (
                    ("arm", "sample", "y", "x"),
                    np.stack([image(preds[a][0][pick]) for a in names]),
                ),
                "flaring": (("sample",), flaring),
                "hist": (("arm", "true_bin", "pred_bin"), np.stack(hist).astype(np.int64)),
                "bin_edges": (("edge",), edges),
            },
            coords={"time": (("sample",), samples.times[pick]), "arm": names},
            attrs={"channel": self.params["target"], "units": "DN/s", "rsun_px": self.rsun_px}
            | {"arcsec_per_px": CDELT_512 * 512 / size},
        )
