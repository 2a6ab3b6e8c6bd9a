"""Rebuild a backbone from a checkpoint written by `sdofm pretrain`, loading tensors only."""

from __future__ import annotations

import pickle
import re
from pathlib import Path
from typing import Any

import torch
from torch import nn

from sdofm import SdofmError
from sdofm.models import build_backbone

__all__ = ["load_backbone", "random_backbone", "safe_load", "unsafe_checkpoint"]


def unsafe_checkpoint(path: str | Path, err: pickle.UnpicklingError) -> SdofmError:
    """The one-line refusal of a file that pickles more than tensors and plain data."""
    text = str(err)
    found = re.search(r"GLOBAL (\S+)", text)
    other = re.search(r"Unsupported [^\n.]+", text)
    what = f"it pickles {found.group(1)}" if found else other.group(0) if other else "not tensors"
    msg = (
        f"{path} is not a checkpoint this package can load safely ({what}): unpickling it "
        f"could run code; use only checkpoints written by `sdofm pretrain`"
    )
    return SdofmError(msg)


def safe_load(path: str | Path) -> Any:
    """``torch.load`` with ``weights_only=True``: a crafted file is refused, never run.

    A file holding anything but tensors and plain types is an `SdofmError`; a truncated or
    unreadable file raises what ``torch.load`` raises (``RuntimeError``, ``EOFError``,
    ``OSError``), so a caller can tell a damaged checkpoint from a hostile one.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        raise unsafe_checkpoint(path, err) from None


def _read(ckpt_path: str | Path) -> dict[str, Any]:
    """The checkpoint's contents, loaded safely, or an `SdofmError` saying what is wrong."""
    try:
        ckpt = safe_load(ckpt_path)
    except (RuntimeError, EOFError, OSError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        msg = f"{ckpt_path} is not a checkpoint this package can read ({first})"
        raise SdofmError(msg) from None
    if not isinstance(ckpt, dict) or "net_kwargs" not in ckpt.get("hyper_parameters", {}):
        msg = f"{ckpt_path} is not a checkpoint written by `sdofm pretrain`"
        raise SdofmError(msg)
    return ckpt


def load_backbone(ckpt_path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """The pretrained backbone of a checkpoint, in eval mode, and its hyper-parameters."""
    ckpt = _read(ckpt_path)
    hp = dict(ckpt["hyper_parameters"])
    net = build_backbone(hp["backbone"], **hp["net_kwargs"])
    net.load_state_dict({k.removeprefix("net."): v for k, v in ckpt["state_dict"].items()})
    return net.eval(), hp


def random_backbone(hp: dict[str, Any], *, seed: int) -> nn.Module:
    """The same architecture as a checkpoint's backbone with untrained (seeded) weights."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        net = build_backbone(hp["backbone"], **hp["net_kwargs"])
    return net.eval()
