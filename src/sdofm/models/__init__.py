"""Backbones as plain torch modules (no Lightning, no torchvision/timm)."""

from sdofm.models.mae import BACKBONES, MaskedAutoencoder, build_backbone

__all__ = ["BACKBONES", "MaskedAutoencoder", "build_backbone"]
