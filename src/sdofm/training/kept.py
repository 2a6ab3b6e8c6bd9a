"""Checkpoints kept during pretraining, evenly spaced in optimiser steps, and their check.

``pretrain.keep_checkpoints: n`` keeps the backbone at steps round(k·T/n), k = 0 … n-1 (T: the
run's optimiser steps; step 0 is the initialisation this pretraining started from, the final
weights are model.ckpt itself). They are written (weights and hyper-parameters only) into a
staging folder beside the rolling checkpoints, so a resumed run keeps them, and moved to
``kept_checkpoints/`` next to model.ckpt when the run ends. model.ckpt records each file's
SHA-256 (the callback's state), so `kept_checkpoints` can refuse a file another run wrote.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import lightning as L

from sdofm import SdofmError
from sdofm.io import file_sha256

__all__ = ["KEPT_DIR", "KeepCheckpoints", "kept_checkpoints", "publish_kept"]

KEPT_DIR = "kept_checkpoints"  # beside model.ckpt


def kept_steps(count: int, total: int) -> list[int]:
    """The steps kept of a ``total``-step run: round(k·total/count), k = 0 … count-1, distinct."""
    if count <= 0:
        return []
    return sorted({round(k * total / count) for k in range(count)})


class KeepCheckpoints(L.Callback):
    """Save the backbone at `kept_steps` into ``folder``; the list of files travels in the
    checkpoints (its state), so a resumed run neither repeats nor forgets one."""

    def __init__(self, folder: str | Path, count: int):
        self.folder, self.count = Path(folder), count
        self.kept: list[dict[str, Any]] = []
        self._todo: list[int] = []

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        done = {k["step"] for k in self.kept}
        total = int(trainer.estimated_stepping_batches)
        self._todo = [s for s in kept_steps(self.count, total) if s not in done]
        self._maybe_save(trainer)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._maybe_save(trainer)

    def _maybe_save(self, trainer: L.Trainer) -> None:
        step = trainer.global_step
        if not self._todo or self._todo[0] != step:
            return
        self._todo.pop(0)
        path = self.folder / f"step{step:07d}.ckpt"
        self.folder.mkdir(parents=True, exist_ok=True)
        trainer.save_checkpoint(path, weights_only=True)  # every rank (it synchronises)
        sha = file_sha256(path) if trainer.global_rank == 0 else None
        self.kept.append({"step": step, "file": path.name, "sha256": sha})

    def state_dict(self) -> dict[str, Any]:
        return {"kept": self.kept, "count": self.count}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.kept = list(state["kept"])


def publish_kept(staging: Path, out_dir: Path) -> Path:
    """Move the staged kept checkpoints to ``out_dir/kept_checkpoints`` (empty if none)."""
    target = out_dir / KEPT_DIR
    shutil.rmtree(target, ignore_errors=True)
    if staging.exists():
        staging.replace(target)
    else:
        target.mkdir(parents=True)
    return target


def kept_checkpoints(model_ckpt: str | Path) -> tuple[int, list[tuple[int, Path]]]:
    """(final step, [(step, path) of each kept checkpoint]) of the run that wrote ``model_ckpt``.

    Every file that run recorded must be in ``kept_checkpoints/`` beside it with the recorded
    SHA-256, and no other: a checkpoint from another pretraining is refused in one line.
    """
    from sdofm.models.checkpoint import safe_load

    model_ckpt = Path(model_ckpt)
    folder = model_ckpt.with_name(KEPT_DIR)
    ckpt = safe_load(model_ckpt)
    states = [v for k, v in ckpt.get("callbacks", {}).items() if k.startswith("KeepCheckpoints")]
    recorded = {k["file"]: k for k in states[0]["kept"]} if states else {}
    found = sorted(p.name for p in folder.glob("*.ckpt")) if folder.is_dir() else []
    for name in found:
        if name not in recorded:
            msg = f"{folder / name} was not kept by the pretraining that wrote {model_ckpt}"
            raise SdofmError(msg)
    out = []
    for name, entry in sorted(recorded.items(), key=lambda kv: kv[1]["step"]):
        path = folder / name
        if not path.exists():
            msg = f"{path} is missing: {model_ckpt} records it (re-run the pretraining)"
            raise SdofmError(msg)
        if file_sha256(path) != entry["sha256"]:
            msg = f"{path} is not the checkpoint the pretraining that wrote {model_ckpt} kept"
            raise SdofmError(msg + " (its SHA-256 differs)")
        out.append((int(entry["step"]), path))
    return int(ckpt.get("global_step", 0)), out
