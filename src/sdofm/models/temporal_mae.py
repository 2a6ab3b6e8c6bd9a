"""A temporal ViT masked autoencoder over tubelets of SDO image sequences (Prithvi-style)."""

from __future__ import annotations

import math

import torch
from torch import nn

from sdofm.models.mae import Block
from sdofm.models.masking import solar_patch_weights, weighted_random_masking

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


class TemporalMAE(nn.Module):
    """MAE over (B, C, T, H, W) stacks: tubelets of t frames x p x p pixels, masked-only loss.

    Tokens are ordered (T/t, H/p, W/p), t-major; the patch embedding is a linear map of the
    explicitly patchified tubelets (a Conv3d with kernel = stride, written out). Positions are
    fixed 3-D sin-cos, nothing learnt. ``solar_weight > 0`` masks with `solar_patch_weights`
    (the same spatial weights in every time slot) instead of uniformly.
    """

    def __init__(
        self,
        *,
        img_size: int = 64,
        patch_size: int = 8,
        tubelet: int = 2,
        frames: int = 4,
        in_chans: int = 12,
        embed_dim: int = 128,
        depth: int = 4,
        num_heads: int = 4,
        decoder_dim: int = 64,
        decoder_depth: int = 2,
        decoder_heads: int = 4,
        mask_ratio: float = 0.75,
        norm_pix_loss: bool = False,
        solar_weight: float = 0.0,
        rsun_px: float | None = None,
    ):
        super().__init__()
        if img_size % patch_size or frames % tubelet:
            msg = (
                f"image size {img_size} must be a multiple of patch size {patch_size} and "
                f"frames {frames} a multiple of tubelet {tubelet}"
            )
            raise ValueError(msg)
        self.img_size, self.patch_size, self.in_chans = img_size, patch_size, in_chans
        self.tubelet, self.frames = tubelet, frames
        self.mask_ratio, self.norm_pix_loss = mask_ratio, norm_pix_loss
        self.grid, self.t_grid = img_size // patch_size, frames // tubelet
        self.embed_dim = embed_dim
        patch_dim = tubelet * patch_size * patch_size * in_chans

        self.patch_embed = nn.Linear(patch_dim, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        pos = sincos_pos_embed_3d(embed_dim, self.t_grid, self.grid)[None]
        self.register_buffer("pos", pos, False)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim)

        self.decoder_embed = nn.Linear(embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        dec_pos = sincos_pos_embed_3d(decoder_dim, self.t_grid, self.grid)[None]
        self.register_buffer("dec_pos", dec_pos, False)
        self.decoder_blocks = nn.ModuleList(
            Block(decoder_dim, decoder_heads) for _ in range(decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, patch_dim)

        weights = None
        if solar_weight > 0:
            spatial = solar_patch_weights(
                img_size, patch_size, rsun_px=rsun_px, strength=solar_weight
            )
            weights = spatial.repeat(self.t_grid)
        self.register_buffer("mask_weights", weights, False)
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

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

    def random_masking(
        self, x: torch.Tensor, ratio: float, generator: torch.Generator | None = None
    ) -> tuple:
        """Keep a random (1-ratio) of tokens: (B, L, D) -> (B, L_keep, D), mask, restore.

        Uniform unless built with ``solar_weight``; ``generator`` (e.g. a fixed validation
        mask) replaces the global random stream.
        """
        weights = self.mask_weights
        if weights is None:
            weights = torch.ones(x.shape[1], device=x.device)
        return weighted_random_masking(x, ratio, weights, generator)

    def forward_encoder(
        self, x: torch.Tensor, ratio: float, generator: torch.Generator | None = None
    ) -> tuple:
        """(B, C, T, H, W) -> latent (B, 1+L_keep, D), mask (B, L), restore (B, L)."""
        self._check(x)
        h = self.patch_embed(self.patchify(x)) + self.pos
        h, mask, restore = self.random_masking(h, ratio, generator)
        h = torch.cat([self.cls_token.expand(h.shape[0], -1, -1), h], dim=1)
        for blk in self.blocks:
            h = blk(h)
        return self.norm(h), mask, restore

    def forward_decoder(self, latent: torch.Tensor, restore: torch.Tensor) -> torch.Tensor:
        """latent (B, 1+L_keep, D) -> predicted tubelets (B, L, t*p*p*C)."""
        h = self.decoder_embed(latent)[:, 1:]
        b, n = restore.shape
        fill = self.mask_token.expand(b, n - h.shape[1], -1)
        h = torch.cat([h, fill], dim=1)
        h = torch.gather(h, 1, restore[:, :, None].expand(-1, -1, h.shape[2])) + self.dec_pos
        for blk in self.decoder_blocks:
            h = blk(h)
        return self.decoder_pred(self.decoder_norm(h))

    def forward_loss(self, x: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor):
        """Mean squared error over the masked tubelets only."""
        target = self.patchify(x)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6) ** 0.5
        per_token = ((pred - target) ** 2).mean(dim=-1)
        return (per_token * mask).sum() / mask.sum().clamp(min=1)

    def forward(
        self,
        x: torch.Tensor,
        mask_ratio: float | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple:
        """Returns (loss, predicted tubelets (B, L, t*p*p*C), mask (B, L)), mask 1 = hidden."""
        ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        latent, mask, restore = self.forward_encoder(x, ratio, generator)
        pred = self.forward_decoder(latent, restore)
        return self.forward_loss(x, pred, mask), pred, mask

    @torch.no_grad()
    def reconstruct(self, pred: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """Predicted tubelets as stacks (B, C, T, H, W) in the units of ``x``.

        Undoes ``norm_pix_loss`` with each tubelet's own statistics from ``x``.
        """
        if self.norm_pix_loss:
            target = self.patchify(x)
            mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
            pred = pred * (var + 1e-6) ** 0.5 + mean
        return self.unpatchify(pred)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Tokens of the unmasked encoder on the tubelet grid: (B, D, T/t, H/p, W/p).

        Not under ``no_grad``: a task that fine-tunes the backbone back-propagates through it.
        """
        latent, _, _ = self.forward_encoder(x, 0.0)
        b, _, d = latent.shape
        grid = latent[:, 1:].transpose(1, 2)
        return grid.reshape(b, d, self.t_grid, self.grid, self.grid)

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Embedding of each stack by the unmasked encoder: [CLS, mean token], (B, 2D)."""
        latent, _, _ = self.forward_encoder(x, 0.0)
        return torch.cat([latent[:, 0], latent[:, 1:].mean(dim=1)], dim=1)

    @property
    def n_params(self) -> int:
        return sum(math.prod(p.shape) for p in self.parameters())


# Presets. tmae_tiny: CPU in minutes (64², patch 8, 4 frames). tmae_base: Prithvi-100M widths
# (ViT-B encoder, 8 x 512 decoder) at 512², patch 16, one frame per tubelet (3-4 frames).
TEMPORAL_PRESETS = {
    "tmae_tiny": dict(
        patch_size=8,
        tubelet=2,
        embed_dim=128,
        depth=4,
        num_heads=4,
        decoder_dim=64,
        decoder_depth=2,
        decoder_heads=4,
    ),
    "tmae_base": dict(
        patch_size=16,
        tubelet=1,
        embed_dim=768,
        depth=12,
        num_heads=12,
        decoder_dim=512,
        decoder_depth=8,
        decoder_heads=16,
    ),
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
