"""What pretraining shows while it runs: a linear probe and masked reconstructions.

Both callbacks work on a few fixed samples, draw no numbers from the training RNG (so an
interrupted and resumed run stays exact) and keep their history in the checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pandas as pd
import torch

from sdofm.dataset.loader import open_dataset

__all__ = ["LinearProbe", "ReconstructionMonitor", "plot_loss_curve", "ridge_r2"]

# The channels the reconstruction figure shows, when the data set has them.
FIGURE_CHANNELS = ("171A", "193A", "304A", "Bz")


def _stack(dataset: Any, indices: np.ndarray, module: L.LightningModule) -> torch.Tensor:
    """Items ``indices`` of a data set as one batch, normalised on the module's device."""
    x = torch.stack([dataset[int(i)][0] for i in indices]).to(module.device)
    dm = module.trainer.datamodule
    return dm.on_after_batch_transfer((x, None), 0)[0] if dm is not None else x


def ridge_r2(z_fit: np.ndarray, y_fit: np.ndarray, z: np.ndarray, y: np.ndarray) -> float:
    """Median R² over targets of a ridge model fitted on (z_fit, y_fit), scored on (z, y).

    Features and targets are standardised with the fitting rows (a feature that barely varies
    there is not blown up: its scale is floored at 1 % of the mean scale); the penalty is one
    per fitting row (the probe has more features than rows, so it must be regularised).
    """
    from sklearn.linear_model import Ridge
    from sklearn.metrics import r2_score

    mu, sd = z_fit.mean(0), z_fit.std(0)
    sd = np.maximum(sd, 0.01 * sd.mean() + 1e-12)
    ym, ys = y_fit.mean(0), y_fit.std(0) + 1e-12
    model = Ridge(alpha=len(z_fit), fit_intercept=False, solver="cholesky")
    model.fit((z_fit - mu) / sd, (y_fit - ym) / ys)
    scores = r2_score((y - ym) / ys, model.predict((z - mu) / sd), multioutput="raw_values")
    return float(np.median(scores))  # the median: a flare can swamp one line


class LinearProbe(L.Callback):
    """Every N optimiser steps, R² of a ridge probe from embeddings to the EVE lines.

    Up to ``rows`` training samples spread over the training period are split alternately
    into fitting and scoring halves. It is a monitor of the representation while it trains
    (a rising ``probe_r2`` says it learns what the Sun's irradiance depends on), not a
    benchmark: the tasks are scored on the test split.
    """

    def __init__(self, dataset: str | Path, *, every_n_steps: int, rows: int = 128):
        self.path, self.every, self.rows = str(dataset), every_n_steps, rows
        self.history: list[dict[str, float]] = []
        self._sets: tuple | None = None

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        ds = open_dataset(self.path)
        if self.every <= 0 or "eve" not in ds:
            return
        data = trainer.datamodule.train_set
        eve = ds.eve.values.astype(np.float64)[np.asarray(data.rows)]
        ok = np.flatnonzero(np.isfinite(eve).all(1) & (eve > 0).all(1))
        pick = ok[np.linspace(0, len(ok) - 1, min(self.rows, len(ok))).astype(int)]
        if len(pick) < 8:
            print("linear probe off: fewer than 8 training samples with EVE lines")
            return
        y = np.log10(eve[pick])
        self._sets = (data, pick[::2], y[::2], data, pick[1::2], y[1::2])

    @torch.no_grad()
    def score(self, pl_module: L.LightningModule) -> float:
        """The probe's R² with the backbone as it is now."""
        fit_set, fit_idx, y_fit, val_set, val_idx, y_val = self._sets
        was_training = pl_module.net.training
        pl_module.net.eval()
        z = [
            torch.cat(
                [
                    pl_module.net.embed(_stack(data, chunk, pl_module))
                    for chunk in np.array_split(idx, max(1, len(idx) // 32))
                ]
            )
            .float()
            .cpu()
            .numpy()
            for data, idx in ((fit_set, fit_idx), (val_set, val_idx))
        ]
        pl_module.net.train(was_training)
        return ridge_r2(z[0], y_fit, z[1], y_val)

    def _record(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        r2 = self.score(pl_module)
        pl_module.log("probe_r2", r2, on_step=True, on_epoch=False, rank_zero_only=True)
        self.history.append(
            {"step": trainer.global_step, "epoch": trainer.current_epoch, "probe_r2": r2}
        )

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        step = trainer.global_step
        last = self.history[-1]["step"] if self.history else -1
        if self._sets and step % self.every == 0 and step != last:
            self._record(trainer, pl_module)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._sets and (not self.history or self.history[-1]["step"] != trainer.global_step):
            r2 = self.score(pl_module)
            self.history.append(
                {"step": trainer.global_step, "epoch": trainer.current_epoch, "probe_r2": r2}
            )

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.history = list(state["history"])

    def table(self) -> pd.DataFrame:
        """The probe history (step, epoch, probe_r2); it travels in the checkpoint."""
        return pd.DataFrame(self.history, columns=["step", "epoch", "probe_r2"])


class ReconstructionMonitor(L.Callback):
    """After each validation pass, the masked reconstruction of one fixed sample with one fixed
    mask; writes ``reconstructions.png`` (first epoch vs last) and keeps the error per epoch."""

    def __init__(self, out_dir: str | Path, seed: int = 1234):
        self.out_dir, self.seed = Path(out_dir), seed
        self.errors: list[dict[str, float]] = []
        self.first: dict[str, np.ndarray] | None = None
        self.last: dict[str, np.ndarray] | None = None

    def _sample(self, trainer: L.Trainer) -> tuple[Any, np.ndarray]:
        dm = trainer.datamodule
        data = dm.val_set if len(dm.val_set) else dm.train_set
        return data, np.array([len(data) // 2])

    @torch.no_grad()
    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or trainer.global_rank != 0:
            return
        data, idx = self._sample(trainer)
        x = _stack(data, idx, pl_module)
        net = pl_module.net
        gen = torch.Generator(device=x.device).manual_seed(self.seed)
        loss, pred, mask = net(x, generator=gen)
        images = masked_views(net, x, pred, mask)
        shown = {  # the sample, or for temporal stacks its newest frame
            k: (v[0, :, -1] if v.ndim == 5 else v[0]).float().cpu().numpy()
            for k, v in images.items()
        }
        self.errors.append({"epoch": trainer.current_epoch, "masked_mse": float(loss)})
        if self.first is None:
            self.first = shown
        self.last = shown

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_rank != 0 or self.first is None:
            return
        channels = list(pl_module.hparams.channels)
        pd.DataFrame(self.errors).to_csv(self.out_dir / "reconstruction_error.csv", index=False)
        _plot_reconstructions(self.first, self.last, self.errors, channels, self.out_dir)

    def state_dict(self) -> dict[str, Any]:
        def tensors(images):  # tensors, so the checkpoint loads with weights_only=True
            return {k: torch.from_numpy(v) for k, v in images.items()} if images else None

        return {"errors": self.errors, "first": tensors(self.first), "last": tensors(self.last)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        def arrays(images):
            return {k: v.numpy() for k, v in images.items()} if images else None

        self.errors = state["errors"]
        self.first, self.last = arrays(state["first"]), arrays(state["last"])


def masked_views(net: Any, x: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor) -> dict:
    """The input, what the encoder saw (hidden patches NaN, drawn grey) and the reconstruction
    with the visible patches pasted back from the input, as MAE figures show it: the model is
    only asked for the hidden patches, so its output elsewhere means nothing."""
    recon = net.reconstruct(pred, x)
    if not hasattr(net, "patchify"):  # the VAE reconstructs the whole image
        return {"input": x, "recon": recon}
    patches = net.patchify(x)
    hidden = net.unpatchify(mask[..., None].expand_as(patches).to(patches.dtype)) > 0.5
    return {
        "input": x,
        "masked": x.masked_fill(hidden, float("nan")),
        "recon": torch.where(hidden, recon, x),
    }


def _cmap(channel: str) -> Any:
    import matplotlib as mpl
    import sunpy.visualization.colormaps  # noqa: F401  (registers the SDO colour maps)

    # Magnetograms in grey (black: negative, white: positive), as they are usually shown:
    # hmimag's colours are made for a ±1500 G scale, not for normalised values.
    name = "gray" if channel.startswith("B") else f"sdoaia{channel.removesuffix('A')}"
    return mpl.colormaps[name] if name in mpl.colormaps else mpl.colormaps["gray"]


def _plot_reconstructions(first, last, errors, channels, out_dir: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    show = [c for c in FIGURE_CHANNELS if c in channels] or channels[:3]
    cols = [("input", "input", last), ("masked", "visible to the encoder", last)]
    cols += [("recon", f"epoch {errors[0]['epoch']}", first)]
    cols += [("recon", f"epoch {errors[-1]['epoch']}", last)]
    cols = [c for c in cols if c[0] in c[2]]
    fig, axes = plt.subplots(
        len(show), len(cols), figsize=(2.4 * len(cols) + 1, 2.4 * len(show)), layout="constrained"
    )
    axes = np.atleast_2d(axes)
    for r, ch in enumerate(show):
        k = channels.index(ch)
        ref = last["input"][k]
        lo, hi = np.percentile(ref, [1, 99])
        if ch.startswith("B"):  # a signed field: symmetric about 0 G, as hmimag is drawn
            hi = float(np.percentile(np.abs(ref), 99.9)) or 1.0
            lo = -hi
        cmap = _cmap(ch).with_extremes(bad="tab:cyan" if ch.startswith("B") else "0.6")
        for c, (key, title, source) in enumerate(cols):
            ax = axes[r, c]
            im = ax.imshow(source[key][k], cmap=cmap, vmin=lo, vmax=hi, origin="lower")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=9)
            if c == 0:
                ax.set_ylabel(ch)
        fig.colorbar(im, ax=axes[r, :], shrink=0.85, label="normalised", pad=0.01)
    fig.suptitle(
        f"masked reconstruction of one validation sample (normalised); hidden patches shaded in "
        f"column 2, visible ones pasted back in the reconstructions\nmasked MSE "
        f"{errors[0]['masked_mse']:.3f} → {errors[-1]['masked_mse']:.3f}",
        fontsize=9,
    )
    fig.savefig(out_dir / "reconstructions.png", dpi=110)
    plt.close(fig)


def plot_loss_curve(history: pd.DataFrame, probe: pd.DataFrame, path: Path) -> None:
    """Training and validation loss per epoch, and the linear probe's R², in one figure."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5))
    for col, style in (("train_loss", "-o"), ("val_loss", "-s")):
        if col in history and history[col].notna().any():
            ax.plot(history.index, history[col], style, ms=3, label=col.replace("_", " "))
    ax.set_xlabel("epoch")
    ax.set_ylabel("masked reconstruction loss")
    ax.legend(loc="upper left", fontsize=8)
    if len(probe):
        ax2 = ax.twinx()
        steps_per_epoch = max(1, probe["step"].max()) / max(1, history.index.max() + 1)
        ax2.plot(probe["step"] / steps_per_epoch, probe["probe_r2"], "g-^", ms=3)
        ax2.set_ylabel("linear probe R² (EVE lines)", color="g")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
