"""A temporal ViT masked autoencoder over tubelets of SDO image sequences (Prithvi-style)."""

from __future__ import annotations

import torch

from sdofm.models.mae import PRESETS as MAE_PRESETS
from sdofm.models.mae import MaskedAutoencoder

__all__ = [
    "TEMPORAL_PRESETS",
    "TemporalMAE",
    "build_temporal_backbone",
    "sincos_pos_embed_3d",
]


def _sincos_1d(dim: int, pos: torch.Tensor) -> torch.Tensor:
    """(n,) positions -> (n, dim) [sin, cos] at geometric frequencies 1 ... 1/10000."""
    omega = 1.0 / 10000 ** (torch.arange(dim // 2, dtype=torch.float64) / (dim // 2))
    angle = pos.double()[:, None] * omega[None, :]
    return torch.cat([torch.sin(angle), torch.cos(angle)], dim=1)


def sincos_pos_embed_3d(dim: int, frames: int, grid: int) -> torch.Tensor:
    """Fixed 3-D sine-cosine positions, (frames*grid*grid, dim), t-major then y then x.

    The width is split as time dim/4, y 3dim/8, x 3dim/8 (each half sine, half cosine).

    Examples
    --------
    >>> sincos_pos_embed_3d(32, 2, 4).shape
    torch.Size([32, 32])
    """
    if dim % 16:
        msg = f"embedding width {dim} must be divisible by 16 for 3-D sin-cos positions"
        raise ValueError(msg)
    dt, ds = dim // 4, 3 * dim // 8
    ts, ys, xs = torch.meshgrid(
        torch.arange(frames), torch.arange(grid), torch.arange(grid), indexing="ij"
    )
    parts = [
        _sincos_1d(dt, ts.flatten()),
        _sincos_1d(ds, ys.flatten()),
        _sincos_1d(ds, xs.flatten()),
    ]
    return torch.cat(parts, dim=1).float()


class TemporalMAE(MaskedAutoencoder):
    """MAE over (B, C, T, H, W) stacks: tubelets of t frames x p x p pixels, masked-only loss.

    Tokens are ordered (T/t, H/p, W/p), t-major; the patch embedding is a linear map of the
    explicitly patchified tubelets (a Conv3d with kernel = stride, written out). Positions are
    fixed 3-D sin-cos, nothing learnt. ``solar_weight > 0`` masks with `solar_patch_weights`
    (the same spatial weights in every time slot) instead of uniformly. Everything else (the
    encoder, decoder, loss, embedding) is the 2-D MAE's.
    """

    def __init__(self, *, frames: int = 4, tubelet: int = 2, **kwargs):
        if frames % tubelet:
            msg = f"frames {frames} must be a multiple of tubelet {tubelet}"
            raise ValueError(msg)
        self.frames, self.tubelet, self.t_grid = frames, tubelet, frames // tubelet
        super().__init__(**kwargs)

    @property
    def token_grid(self) -> tuple[int, ...]:
        """(T/t, H/p, W/p)."""
        return (self.t_grid, self.grid, self.grid)

    def _patch_dim(self) -> int:
        return self.tubelet * self.patch_size * self.patch_size * self.in_chans

    def _positions(self, dim: int) -> torch.Tensor:
        return sincos_pos_embed_3d(dim, self.t_grid, self.grid)

    def _check(self, x: torch.Tensor) -> None:
        want = (self.in_chans, self.frames, self.img_size, self.img_size)
        if x.ndim != 5 or tuple(x.shape[1:]) != want:
            msg = f"expected stacks (B, C, T, H, W) = (B, *{want}); got {tuple(x.shape)}"
            raise ValueError(msg)

    def patchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, T, H, W) -> (B, L, t*p*p*C), tubelet layout (t, p, p, C)."""
        b, c = x.shape[:2]
        t, p, tg, g = self.tubelet, self.patch_size, self.t_grid, self.grid
        x = x.reshape(b, c, tg, t, g, p, g, p).permute(0, 2, 4, 6, 3, 5, 7, 1)
        return x.reshape(b, tg * g * g, t * p * p * c)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, t*p*p*C) -> (B, C, T, H, W)."""
        b = x.shape[0]
        t, p, tg, g, c = self.tubelet, self.patch_size, self.t_grid, self.grid, self.in_chans
        x = x.reshape(b, tg, g, g, t, p, p, c).permute(0, 7, 1, 4, 2, 5, 3, 6)
        return x.reshape(b, c, tg * t, g * p, g * p)


# Presets: the widths of the 2-D MAE presets with a tubelet. tmae_tiny: CPU in minutes (64²,
# patch 8, 4 frames). tmae_base: Prithvi-100M widths (ViT-B encoder, 8 x 512 decoder) at 512²,
# patch 16, one frame per tubelet (3-4 frames).
TEMPORAL_PRESETS = {
    "tmae_tiny": {**MAE_PRESETS["mae_tiny"], "tubelet": 2},
    "tmae_base": {**MAE_PRESETS["mae_base"], "tubelet": 1},
}


def build_temporal_backbone(
    name: str, *, img_size: int, in_chans: int, frames: int, **kwargs
) -> TemporalMAE:
    """Instantiate a named temporal preset for the image size, channel and frame counts."""
    if name not in TEMPORAL_PRESETS:
        msg = f"unknown temporal backbone {name!r}; choose one of {sorted(TEMPORAL_PRESETS)}"
        raise ValueError(msg)
    preset = {**TEMPORAL_PRESETS[name], **kwargs}
    return TemporalMAE(img_size=img_size, in_chans=in_chans, frames=frames, **preset)
