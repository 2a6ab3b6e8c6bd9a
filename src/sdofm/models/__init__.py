"""Backbones as plain torch modules (no Lightning, no torchvision/timm).

Every backbone has the same interface: ``forward(x) -> (loss, prediction, mask)``,
``reconstruct(prediction, x)`` (images in the units of ``x``), ``embed(x) -> (B, F)`` and
``tokens(x)`` (the latent grid). Presets are named ``<family>_<size>``.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from sdofm import SdofmError
from sdofm.models.mae import PRESETS as MAE_PRESETS
from sdofm.models.mae import MaskedAutoencoder
from sdofm.models.temporal_mae import TEMPORAL_PRESETS, TemporalMAE
from sdofm.models.vae import VAE_PRESETS, ConvVAE

__all__ = [
    "BACKBONES",
    "ConvVAE",
    "MaskedAutoencoder",
    "TemporalMAE",
    "backbone_kwargs",
    "build_backbone",
]

BACKBONES: dict[str, tuple[type[nn.Module], dict[str, Any]]] = {
    **{name: (MaskedAutoencoder, preset) for name, preset in MAE_PRESETS.items()},
    **{name: (TemporalMAE, preset) for name, preset in TEMPORAL_PRESETS.items()},
    **{name: (ConvVAE, preset) for name, preset in VAE_PRESETS.items()},
}


def backbone_kwargs(
    params: dict[str, Any], *, img_size: int, in_chans: int, rsun_px: float | None = None
) -> dict[str, Any]:
    """The constructor arguments of the configured backbone, from the ``pretrain`` block.

    Saved in the checkpoint, so `build_backbone(name, **kwargs)` rebuilds the same network.
    ``rsun_px`` is the disk radius of the data set's images, for solar-aware masking.
    """
    name = params["backbone"]
    if name not in BACKBONES:
        msg = f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}"
        raise SdofmError(msg)
    kwargs: dict[str, Any] = {"img_size": img_size, "in_chans": in_chans}
    if name.startswith(("mae_", "tmae_")):
        kwargs |= {"mask_ratio": params["mask_ratio"], "norm_pix_loss": params["norm_pix_loss"]}
        if params.get("patch_size"):
            kwargs["patch_size"] = params["patch_size"]
        if params["masking"] == "solar":
            kwargs |= {"solar_weight": params["solar_weight"], "rsun_px": rsun_px}
    if name.startswith("tmae_"):
        kwargs["frames"] = params["frames"]
    if name.startswith("vae_"):
        kwargs["beta"] = params["beta"]
    return kwargs


def build_backbone(name: str, **kwargs: Any) -> nn.Module:
    """Instantiate a named preset; ``kwargs`` (image size, channels, ...) override it."""
    if name not in BACKBONES:
        msg = f"unknown backbone {name!r}; choose one of {sorted(BACKBONES)}"
        raise SdofmError(msg)
    cls, preset = BACKBONES[name]
    return cls(**(preset | kwargs))
