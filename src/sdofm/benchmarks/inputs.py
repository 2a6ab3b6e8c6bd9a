"""What a task reads: the ML-ready store, its embeddings, the pretrained and random backbone."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from sdofm import SdofmError
from sdofm.benchmarks.protocol import Protocol
from sdofm.io import file_sha256

__all__ = ["Backbone", "Context", "TaskInputs"]


@dataclass(frozen=True)
class TaskInputs:
    """Paths a task reads. ``events``: the folder `sdofm events` writes (flares.csv, f107.csv,
    goes_xrs.csv); ``truth``: the synthetic Sun's ``ground_truth`` folder (None on real data,
    where the oracle arms are left out)."""

    dataset: Path
    embeddings: Path | None  # None with checkpoint None: the baselines only (no backbone)
    checkpoint: Path | None
    events: Path | None = None
    truth: Path | None = None

    def event_file(self, name: str) -> Path:
        """``events/name``, or a clear error when the task was run without it."""
        if self.events is None or not (Path(self.events) / name).exists():
            msg = f"no {name} in the event folder {self.events} (run `sdofm events`)"
            raise SdofmError(msg)
        return Path(self.events) / name

    def truth_file(self, name: str) -> Path | None:
        """``truth/name`` when the run has ground truth that holds it, else None."""
        if self.truth is None or not (Path(self.truth) / name).exists():
            return None
        return Path(self.truth) / name


class Backbone:
    """A backbone as the arms see it: the network and the embedding of every time step.

    The pretrained backbone's embeddings come from `sdofm embed`; the random-init control's are
    computed here the same way (`compute_embeddings`) on first use.
    """

    def __init__(self, name: str, net: nn.Module, hp: dict[str, Any], ctx: Context, emb=None):
        self.name, self.net, self.hp, self._ctx, self._emb = name, net, hp, ctx, emb

    @cached_property
    def embeddings(self) -> np.ndarray:
        """(time, feature) float64; NaN where a time step has no embedding."""
        if self._emb is None:
            from sdofm.embeddings.extract import compute_embeddings

            self._emb, _, _ = compute_embeddings(
                self._ctx.inputs.dataset,
                self._ctx.ds,
                self.net,
                self.hp,
                batch_size=64,
                device=self._ctx.device,
            )
            self.net.cpu()
        return np.asarray(self._emb, np.float64)


class Context:
    """The opened inputs of one task run: store, embeddings, backbones, settings and device."""

    def __init__(self, inputs: TaskInputs, params: dict[str, Any]):
        from sdofm.dataset.loader import open_dataset
        from sdofm.embeddings.extract import open_embeddings
        from sdofm.models.checkpoint import load_backbone, random_backbone

        self.inputs = inputs
        self.raw_params = params
        self.params = {k: v for k, v in params.items() if k != "protocol"}
        self.protocol = Protocol.from_config(params.get("protocol", {}))
        self.ds = open_dataset(inputs.dataset)
        self.device = _device(self.protocol.accelerator)
        if inputs.checkpoint is None:  # the baselines' and the scoring step's: no backbone
            self.hp, self.pretraining_intervals, self.embeddings_sha = {}, None, None
            # no features: every time step counts as embedded (the scoring step checks that
            # each run's arms predict the same samples)
            self.pretrained = Backbone("none", None, {}, self, np.zeros((self.ds.sizes["time"], 0)))
            self.random_init = None
            return
        emb = open_embeddings(inputs.embeddings)
        if not np.array_equal(emb.time.values, self.ds.time.values):
            msg = f"embeddings {inputs.embeddings} do not cover the time steps of {inputs.dataset}"
            raise SdofmError(msg + ": re-run `sdofm embed`")
        self.embeddings_sha = emb.attrs.get("checkpoint_sha256")
        if self.embeddings_sha != file_sha256(inputs.checkpoint):
            msg = (
                f"embeddings {inputs.embeddings} were computed with another checkpoint than "
                f"{inputs.checkpoint}: re-run `sdofm embed`"
            )
            raise SdofmError(msg)
        net, hp = load_backbone(inputs.checkpoint)
        channels = [str(c) for c in self.ds.channel.values]
        if list(hp["channels"]) != channels:
            msg = f"the backbone was trained on channels {hp['channels']}, the store has {channels}"
            raise SdofmError(msg)
        self.hp = hp
        self.pretraining_intervals = hp.get("pretrain_intervals")
        self.pretrained = Backbone("pretrained", net, hp, self, emb.embedding.values)
        self.random_init = Backbone(
            "random-init", random_backbone(hp, seed=self.protocol.seeds[0]), hp, self
        )

    @classmethod
    def open(cls, inputs: TaskInputs, params: dict[str, Any]) -> Context:
        return cls(inputs, params)

    @property
    def channels(self) -> list[str]:
        return [str(c) for c in self.ds.channel.values]

    def physical(self, rows: np.ndarray, channels: list[str] | None = None) -> np.ndarray:
        """Images of store ``rows`` in physical units (DN/s, G): (N, C, H, W) float32."""
        images = self.ds.images.isel(time=np.asarray(rows, int))
        if channels is not None:
            images = images.sel(channel=channels)
        return images.values.astype(np.float32)

    def normalised(self, rows: np.ndarray) -> np.ndarray:
        """Images of store ``rows`` normalised as the backbone saw them: (N, C, H, W)."""
        from sdofm.dataset.loader import Normaliser

        return Normaliser(self.ds)(self.physical(rows))


def _device(accelerator: str) -> torch.device:
    if accelerator == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if accelerator == "gpu":
        msg = "protocol.accelerator is 'gpu' but this process sees no CUDA GPU"
        raise SdofmError(msg)
    return torch.device("cpu")
