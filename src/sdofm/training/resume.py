"""Which checkpoint a pretraining run may resume: the record of everything that decides the
trained weights, saved in every checkpoint, and its comparison with the run about to start.

A resumed run must end with the weights an uninterrupted run of the same settings would have.
So resuming compares the whole resolved ``pretrain`` config, the data set's identity and the
numerics of the run (versions, device, ranks, threads), and refuses any difference except the
few settings in `HARMLESS`, which cannot change the result.
"""

from __future__ import annotations

import hashlib
import platform
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
import xarray as xr

import sdofm
from sdofm import SdofmError
from sdofm.models.checkpoint import safe_load

__all__ = ["HARMLESS", "dataset_identity", "differences", "resume_point", "runtime"]

# Settings a checkpoint may be resumed with changed: none of them enters the arithmetic of a
# training step, the data order or the random numbers drawn (the resume test checks the weights
# bit for bit). Anything not listed here, changed, stops the resume.
HARMLESS = {
    # When checkpoints are written; saving one reads the RNG states but draws nothing.
    "config.checkpoint_every_n_steps": "checkpoint interval",
    # The probe embeds fixed rows in eval mode without masking (no random numbers, no
    # gradients); its interval changes only where probe.csv has points.
    "config.probe_every_n_steps": "probe interval",
    # Progress lines in the job log.
    "config.progress_every_n_steps": "progress interval",
    # Where the losses are written (CSV, TensorBoard), not what they are.
    "config.loggers": "loggers",
    # Loader processes only read and decode samples: the order comes from (seed, epoch, rank)
    # in the main process, the workers draw no random numbers, normalisation is on the device.
    "config.num_workers": "loader processes",
    # Inter-op threads only run independent operators side by side (TorchScript forks); each
    # operator computes the same numbers. (Intra-op threads split reductions: they count.)
    "runtime.inter_op_threads": "inter-op threads",
}
# On a GPU the model's arithmetic runs in CUDA kernels; the CPU threads only decode and copy
# samples, which gives the same numbers with any thread count (and the count follows the node
# a requeued job lands on). The GPU model is recorded but not compared: GPU training is not
# bit-reproducible even on one device (cuDNN/cuBLAS pick kernels and sum atomically), and a
# requeued job lands on whichever GPU type its partition has.
HARMLESS_ON_GPU = {
    "runtime.intra_op_threads": "CPU threads of a GPU run",
    "runtime.device": "GPU model",
}


def runtime(accelerator: str, world_size: int) -> dict[str, Any]:
    """The numerics of this process: library versions, device, ranks and thread counts.

    Recorded in the checkpoint (and summary.json) because each can change the weights: a
    reduction split over 2 threads sums in another order than over 1.
    """
    gpu = accelerator == "gpu"
    return {
        "torch": str(torch.__version__),  # (a str subclass that weights_only refuses)
        "lightning": L.__version__,
        "sdofm": sdofm.__version__,
        "device": torch.cuda.get_device_name() if gpu else f"cpu ({platform.machine()})",
        "world_size": int(world_size),
        "intra_op_threads": torch.get_num_threads(),
        "inter_op_threads": torch.get_num_interop_threads(),
    }


def dataset_identity(ds: xr.Dataset) -> dict[str, Any]:
    """The data set's config hash and a fingerprint of its content.

    The fingerprint covers the time index, splits, validity and the normalisation statistics
    (computed from every training pixel), so a store rebuilt from other source data differs
    even under the same config; a copy of the same store at another path does not.
    """
    digest = hashlib.sha256()
    for name in ("time", "channel", "split", "valid", "transform", "norm_mean", "norm_std"):
        if name not in ds.variables:
            continue
        values = np.asarray(ds[name].values)
        digest.update(name.encode())
        if values.dtype.kind in "OUS":
            digest.update("\x1f".join(map(str, values.ravel())).encode())
        else:
            digest.update(np.ascontiguousarray(values).tobytes())
    return {
        "config_hash": str(ds.attrs.get("config_hash", "")),
        "rows": int(ds.sizes["time"]),
        "fingerprint": digest.hexdigest()[:16],
    }


def _flat(record: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in record.items():
        if isinstance(value, dict):
            out.update(_flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def differences(saved: dict[str, Any], ours: dict[str, Any]) -> list[str]:
    """Each setting (dotted key) whose value differs, with both values, harmless ones left out."""
    harmless = set(HARMLESS)
    if ours.get("config", {}).get("accelerator") == "gpu":
        harmless |= set(HARMLESS_ON_GPU)
    theirs, mine = _flat(saved), _flat(ours)
    changed = []
    for key in sorted(set(theirs) | set(mine)):
        if key in harmless or theirs.get(key) == mine.get(key):
            continue
        was = repr(theirs[key]) if key in theirs else "absent"
        now = repr(mine[key]) if key in mine else "absent"
        changed.append(f"{key} ({was} in the checkpoint, {now} now)")
    return changed


def resume_point(ckpt_dir: Path, hparams: dict[str, Any]) -> Path | None:
    """The newest checkpoint in ``ckpt_dir`` written with these very settings, if any.

    Candidates are the rolling ``last.ckpt``/``step.ckpt`` and ``requeue.ckpt`` (written when
    SLURM signals the time limit, see `sdofm.training.cluster.Requeue`). Each is loaded with
    ``weights_only=True``; one that pickles anything else stops the run. A checkpoint of other
    settings stops the run too: resuming it would be wrong and deleting it could lose days of
    training.
    """
    newest_first = sorted(ckpt_dir.glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    for ckpt in newest_first:
        try:
            saved = safe_load(ckpt)
        except (RuntimeError, EOFError, OSError) as err:  # killed while writing it
            first = (str(err).strip() or type(err).__name__).splitlines()[0]
            print(f"ignoring {ckpt}: unreadable ({first})")
            continue
        if not isinstance(saved, dict) or "hyper_parameters" not in saved:
            msg = f"{ckpt} is not a checkpoint written by `sdofm pretrain`: move it away"
            raise SdofmError(msg)
        changed = differences(dict(saved["hyper_parameters"]), hparams)
        if not changed:
            step = saved.get("global_step")
            print(f"resuming from {ckpt} (epoch {saved.get('epoch')}, step {step})")
            return ckpt
        shown = "; ".join(changed[:6]) + (f"; and {len(changed) - 6} more" if changed[6:] else "")
        msg = (
            f"{ckpt} was written by another configuration (differs in: {shown}); restore those "
            f"settings to resume it, or delete {ckpt_dir} to start over"
        )
        raise SdofmError(msg)
    return None
