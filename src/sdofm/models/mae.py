"""A ViT masked autoencoder (He et al. 2022) for multi-channel SDO images."""

from __future__ import annotations

import math

import torch
from torch import nn

from sdofm.models.masking import solar_patch_weights, weighted_random_masking

__all__ = ["PRESETS", "Block", "MaskedAutoencoder", "sincos_pos_embed_2d"]


def sincos_pos_embed_2d(dim: int, grid: int) -> torch.Tensor:
    """Fixed 2-D sine-cosine position embeddings, (grid*grid, dim)."""
    if dim % 4:
        msg = f"embedding width {dim} must be divisible by 4 for 2-D sin-cos positions"
        raise ValueError(msg)
    omega = 1.0 / 10000 ** (torch.arange(dim // 4, dtype=torch.float64) / (dim // 4))
    ys, xs = torch.meshgrid(torch.arange(grid), torch.arange(grid), indexing="ij")
    parts = []
    for coord in (ys.flatten(), xs.flatten()):
        angle = coord[:, None].double() * omega[None, :]
        parts += [torch.sin(angle), torch.cos(angle)]
    return torch.cat(parts, dim=1).float()


class Block(nn.Module):
    """Pre-norm transformer block."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float = 4.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, L, D) -> (B, L, D)
        h = self.norm1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.norm2(x))


class MaskedAutoencoder(nn.Module):
    """MAE with a ViT encoder; the loss is computed on masked patches only.

    The token geometry (``patchify``, ``unpatchify``, ``_positions``, ``token_grid``) is what
    a subclass changes, e.g. `TemporalMAE` for tubelets over time.
    """

    def __init__(
        self,
        *,
        img_size: int = 64,
        patch_size: int = 8,
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
        if img_size % patch_size:
            msg = f"image size {img_size} is not a multiple of patch size {patch_size}"
            raise ValueError(msg)
        self.img_size, self.patch_size, self.in_chans = img_size, patch_size, in_chans
        self.mask_ratio, self.norm_pix_loss = mask_ratio, norm_pix_loss
        self.grid = img_size // patch_size
        patch_dim = self._patch_dim()
        self.embed_dim = embed_dim

        self.patch_embed = nn.Linear(patch_dim, embed_dim)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.register_buffer("pos", self._positions(embed_dim)[None], False)
        self.blocks = nn.ModuleList(Block(embed_dim, num_heads) for _ in range(depth))
        self.norm = nn.LayerNorm(embed_dim)

        self.decoder_embed = nn.Linear(embed_dim, decoder_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, decoder_dim))
        self.register_buffer("dec_pos", self._positions(decoder_dim)[None], False)
        self.decoder_blocks = nn.ModuleList(
            Block(decoder_dim, decoder_heads) for _ in range(decoder_depth)
        )
        self.decoder_norm = nn.LayerNorm(decoder_dim)
        self.decoder_pred = nn.Linear(decoder_dim, patch_dim)
        # Solar-aware masking (solar_weight > 0): active-latitude patches are hidden more often.
        weights = None
        if solar_weight > 0:  # the same spatial weights for every slot in time
            weights = solar_patch_weights(
                img_size, patch_size, rsun_px=rsun_px, strength=solar_weight
            ).repeat(math.prod(self.token_grid[:-2]))
        self.register_buffer("mask_weights", weights, False)
        self._init_weights()

    @property
    def token_grid(self) -> tuple[int, ...]:
        """The shape the tokens tile: (H/p, W/p) here."""
        return (self.grid, self.grid)

    def _patch_dim(self) -> int:
        return self.patch_size * self.patch_size * self.in_chans

    def _positions(self, dim: int) -> torch.Tensor:
        """Fixed sin-cos positions of the tokens, (L, dim)."""
        return sincos_pos_embed_2d(dim, self.grid)

    def _check(self, x: torch.Tensor) -> None:
        """Refuse input of the wrong shape with a message that says which one is expected."""
        want = (self.in_chans, self.img_size, self.img_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            msg = f"expected images (B, C, H, W) = (B, *{want}); got {tuple(x.shape)}"
            raise ValueError(msg)

    def _init_weights(self) -> None:
        nn.init.normal_(self.cls_token, std=0.02)
        nn.init.normal_(self.mask_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.xavier_uniform_(m.weight)
                if m.bias is not None:
                    nn.init.zeros_(m.bias)

    def patchify(self, imgs: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, L, p*p*C)."""
        b, c, _, _ = imgs.shape
        p, g = self.patch_size, self.grid
        x = imgs.reshape(b, c, g, p, g, p).permute(0, 2, 4, 3, 5, 1)
        return x.reshape(b, g * g, p * p * c)

    def unpatchify(self, x: torch.Tensor) -> torch.Tensor:
        """(B, L, p*p*C) -> (B, C, H, W)."""
        b = x.shape[0]
        p, g, c = self.patch_size, self.grid, self.in_chans
        x = x.reshape(b, g, g, p, p, c).permute(0, 5, 1, 3, 2, 4)
        return x.reshape(b, c, g * p, g * p)

    def random_masking(
        self, x: torch.Tensor, ratio: float, generator: torch.Generator | None = None
    ) -> tuple:
        """Keep a random (1-ratio) of tokens: (B, L, D) -> (B, L_keep, D), mask, restore.

        Uniform unless built with ``solar_weight``; ``generator`` draws the mask from its own
        stream (e.g. a fixed validation mask) instead of the global one.
        """
        weights = self.mask_weights
        if weights is None:
            weights = torch.ones(x.shape[1], device=x.device)
        return weighted_random_masking(x, ratio, weights, generator)

    def forward_encoder(
        self, imgs: torch.Tensor, ratio: float, generator: torch.Generator | None = None
    ) -> tuple:
        """(B, C, H, W) -> latent (B, 1+L_keep, D), mask (B, L), restore (B, L)."""
        self._check(imgs)
        x = self.patch_embed(self.patchify(imgs)) + self.pos
        x, mask, restore = self.random_masking(x, ratio, generator)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1)
        for blk in self.blocks:
            x = blk(x)
        return self.norm(x), mask, restore

    def forward_decoder(self, latent: torch.Tensor, restore: torch.Tensor) -> torch.Tensor:
        """latent (B, 1+L_keep, D) -> predicted patches (B, L, p*p*C)."""
        x = self.decoder_embed(latent)
        b, n = restore.shape
        tokens = x[:, 1:]
        fill = self.mask_token.expand(b, n - tokens.shape[1], -1)
        tokens = torch.cat([tokens, fill], dim=1)
        tokens = torch.gather(tokens, 1, restore[:, :, None].expand(-1, -1, x.shape[2]))
        x = tokens + self.dec_pos
        for blk in self.decoder_blocks:
            x = blk(x)
        return self.decoder_pred(self.decoder_norm(x))

    def forward_loss(self, imgs: torch.Tensor, pred: torch.Tensor, mask: torch.Tensor):
        """Mean squared error over the masked patches only."""
        target = self.patchify(imgs)
        if self.norm_pix_loss:
            mean = target.mean(dim=-1, keepdim=True)
            var = target.var(dim=-1, keepdim=True)
            target = (target - mean) / (var + 1e-6) ** 0.5
        per_patch = ((pred - target) ** 2).mean(dim=-1)
        return (per_patch * mask).sum() / mask.sum().clamp(min=1)

    def forward(
        self,
        imgs: torch.Tensor,
        mask_ratio: float | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple:
        """Returns (loss, predicted patches, mask) with mask 1 where a patch was hidden."""
        ratio = self.mask_ratio if mask_ratio is None else mask_ratio
        latent, mask, restore = self.forward_encoder(imgs, ratio, generator)
        pred = self.forward_decoder(latent, restore)
        return self.forward_loss(imgs, pred, mask), pred, mask

    def tokens(self, imgs: torch.Tensor) -> torch.Tensor:
        """Tokens of the unmasked encoder on their grid: (B, D, *token_grid).

        Not under ``no_grad``: a task that fine-tunes the backbone back-propagates through it.
        """
        latent, _, _ = self.forward_encoder(imgs, 0.0)
        b, _, d = latent.shape
        return latent[:, 1:].transpose(1, 2).reshape(b, d, *self.token_grid)

    def reconstruct(self, pred: torch.Tensor, imgs: torch.Tensor) -> torch.Tensor:
        """Predicted patches as images, in the units of ``imgs`` (undoes ``norm_pix_loss``)."""
        if self.norm_pix_loss:
            target = self.patchify(imgs)
            mean, var = target.mean(dim=-1, keepdim=True), target.var(dim=-1, keepdim=True)
            pred = pred * (var + 1e-6) ** 0.5 + mean
        return self.unpatchify(pred)

    @torch.no_grad()
    def embed(self, imgs: torch.Tensor) -> torch.Tensor:
        """Embedding of each image by the unmasked encoder: [CLS, mean patch token], (B, 2D)."""
        latent, _, _ = self.forward_encoder(imgs, 0.0)
        return torch.cat([latent[:, 0], latent[:, 1:].mean(dim=1)], dim=1)

    @property
    def n_params(self) -> int:
        return sum(math.prod(p.shape) for p in self.parameters())


# Presets: tiny runs on a laptop CPU in minutes; base (ViT-B, ~110 M) and large (ViT-L,
# ~330 M parameters) are for 512² SDOML images with patch 16 on GPUs.
PRESETS = {
    "mae_tiny": dict(
        patch_size=8,
        embed_dim=128,
        depth=4,
        num_heads=4,
        decoder_dim=64,
        decoder_depth=2,
        decoder_heads=4,
    ),
    "mae_small": dict(
        patch_size=16,
        embed_dim=384,
        depth=12,
        num_heads=6,
        decoder_dim=256,
        decoder_depth=4,
        decoder_heads=8,
    ),
    "mae_base": dict(
        patch_size=16,
        embed_dim=768,
        depth=12,
        num_heads=12,
        decoder_dim=512,
        decoder_depth=8,
        decoder_heads=16,
    ),
    "mae_large": dict(
        patch_size=16,
        embed_dim=1024,
        depth=24,
        num_heads=16,
        decoder_dim=512,
        decoder_depth=8,
        decoder_heads=16,
    ),
}
