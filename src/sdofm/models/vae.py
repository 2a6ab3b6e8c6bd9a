"""A convolutional beta-VAE (Higgins et al. 2017) that reconstructs multi-channel SDO images."""

from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["VAE_PRESETS", "ConvVAE", "build_vae", "kl_to_standard_normal"]


def kl_to_standard_normal(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)) elementwise; zero exactly at mu = 0, logvar = 0."""
    return 0.5 * (mu**2 + logvar.exp() - 1 - logvar)


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(8, ch), ch)


class _ResBlock(nn.Module):
    """Two 3x3 convolutions with GroupNorm and SiLU around a skip connection."""

    def __init__(self, ch: int):
        super().__init__()
        self.body = nn.Sequential(
            _norm(ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1),
            _norm(ch), nn.SiLU(), nn.Conv2d(ch, ch, 3, padding=1),
        )  # fmt: skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, ch, h, w) -> same
        return x + self.body(x)


class ConvVAE(nn.Module):
    """Beta-VAE with a spatial latent grid: (B, C, H, W) -> z (B, latent_ch, H/f, W/f).

    ``f = 2 ** len(widths)``: each width is a stride-2 stage of the encoder (and an
    upsample-then-convolve stage of the decoder), with ``blocks`` residual blocks per stage.
    The latent is a grid, not a vector, so reconstructions keep the disk's spatial detail and
    ``tokens`` is a patch grid like the MAE's. The decoder output is the mean of a Gaussian
    likelihood in normalised units.

    Loss = [sum (x - x_hat)^2 + beta * sum KL] / (B*C*H*W): both terms summed per image and
    divided by the number of input values, so the scale matches the MAE's per-pixel MSE and
    beta = 1 is the negative ELBO of a decoder with variance 1/2 (up to a constant). ``beta``
    is a plain attribute: a KL warm-up sets it each step. ``last_terms`` holds the detached
    reconstruction and KL terms of the latest forward pass.
    """

    def __init__(
        self,
        *,
        img_size: int = 64,
        in_chans: int = 12,
        widths: tuple[int, ...] = (32, 64, 128),
        blocks: int = 1,
        latent_ch: int = 16,
        beta: float = 1.0,
        embed_grid: int = 4,
    ):
        super().__init__()
        factor = 2 ** len(widths)
        if img_size % factor or (img_size // factor) % embed_grid:
            msg = (
                f"image size {img_size} must be a multiple of the downsampling {factor}, and "
                f"the latent grid {img_size // factor} a multiple of embed_grid {embed_grid}"
            )
            raise ValueError(msg)
        self.img_size, self.in_chans, self.beta = img_size, in_chans, beta
        self.grid, self.embed_grid = img_size // factor, embed_grid
        self.embed_dim = latent_ch  # channels of `tokens`
        self.last_terms: dict[str, torch.Tensor] = {}

        enc: list[nn.Module] = []
        ch = in_chans
        for w in widths:
            enc += [nn.Conv2d(ch, w, 4, stride=2, padding=1)]
            enc += [_ResBlock(w) for _ in range(blocks)]
            ch = w
        enc += [_norm(ch), nn.SiLU(), nn.Conv2d(ch, 2 * latent_ch, 1)]
        self.encoder = nn.Sequential(*enc)

        dec: list[nn.Module] = [nn.Conv2d(latent_ch, widths[-1], 3, padding=1)]
        ch = widths[-1]
        for w in reversed(widths):
            dec += [_ResBlock(ch) for _ in range(blocks)]
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(ch, w, 3, padding=1)]
            ch = w
        dec += [_norm(ch), nn.SiLU(), nn.Conv2d(ch, in_chans, 3, padding=1)]
        self.decoder = nn.Sequential(*dec)

    def _check(self, x: torch.Tensor) -> None:
        want = (self.in_chans, self.img_size, self.img_size)
        if x.ndim != 4 or tuple(x.shape[1:]) != want:
            msg = f"expected images (B, C, H, W) = (B, *{want}); got {tuple(x.shape)}"
            raise ValueError(msg)

    def encode(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, C, H, W) -> posterior mean and log-variance, each (B, latent_ch, H/f, W/f)."""
        self._check(x)
        mu, logvar = self.encoder(x).chunk(2, dim=1)
        return mu, logvar.clamp(-30.0, 20.0)

    def decode(self, z: torch.Tensor) -> torch.Tensor:
        """(B, latent_ch, H/f, W/f) -> reconstruction (B, C, H, W)."""
        return self.decoder(z)

    def forward_loss(
        self, x: torch.Tensor, recon: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor
    ) -> torch.Tensor:
        """[sum squared error + beta * sum KL] / number of input values."""
        n = x.numel()
        rec = F.mse_loss(recon, x, reduction="sum") / n
        kl = kl_to_standard_normal(mu, logvar).sum() / n
        self.last_terms = {"recon": rec.detach(), "kl": kl.detach()}
        return rec + self.beta * kl

    def forward(
        self,
        x: torch.Tensor,
        mask_ratio: float | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple:
        """Returns (loss, reconstruction (B, C, H, W) of ``x``, mask (B, 1) of ones).

        The reconstruction decodes one reparameterised sample of the posterior of ``x``, its
        noise drawn from ``generator`` if given (a fixed validation draw), else the global
        stream. ``mask_ratio`` is accepted for the backbone interface and ignored; the
        all-ones mask says that the whole image is reconstructed (and scored).
        """
        mu, logvar = self.encode(x)
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        recon = self.decode(mu + eps * (0.5 * logvar).exp())
        mask = torch.ones(x.shape[0], 1, device=x.device)
        return self.forward_loss(x, recon, mu, logvar), recon, mask

    @torch.no_grad()
    def reconstruct(self, pred: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """The prediction of ``forward`` as images in the units of ``x``: it already is one."""
        return pred.detach()

    @torch.no_grad()
    def reconstruct_mean(self, x: torch.Tensor) -> torch.Tensor:
        """Deterministic reconstruction: decode the posterior mean, (B, C, H, W)."""
        return self.decode(self.encode(x)[0])

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior mean on the latent grid, (B, latent_ch, H/f, W/f); differentiable."""
        return self.encode(x)[0]

    @torch.no_grad()
    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Posterior mean average-pooled to embed_grid², flattened: (B, latent_ch*embed_grid²)."""
        mu = self.encode(x)[0]
        return F.adaptive_avg_pool2d(mu, self.embed_grid).flatten(1)

    @property
    def n_params(self) -> int:
        return sum(math.prod(p.shape) for p in self.parameters())


# Presets: tiny runs on a CPU (64² -> 8x8x16 latent, f = 8 like mae_tiny's patches); base is
# for 512² (f = 16 like mae_base's patches, 32x32x32 latent, two residual blocks per stage).
VAE_PRESETS = {
    "vae_tiny": dict(widths=(32, 64, 128), blocks=1, latent_ch=16, embed_grid=4),
    "vae_base": dict(widths=(64, 128, 256, 256), blocks=2, latent_ch=32, embed_grid=4),
}


def build_vae(name: str, *, img_size: int, in_chans: int, **kwargs) -> ConvVAE:
    """Instantiate a named VAE preset for the image size and channel count.

    ``mask_ratio`` (passed to every backbone by the pretraining code) does not apply to a VAE
    and is dropped; so is ``norm_pix_loss=False``, while ``True`` is refused.
    """
    if name not in VAE_PRESETS:
        msg = f"unknown VAE backbone {name!r}; choose one of {sorted(VAE_PRESETS)}"
        raise ValueError(msg)
    kwargs.pop("mask_ratio", None)
    if kwargs.pop("norm_pix_loss", False):
        msg = "norm_pix_loss applies to the masked autoencoders only; set it false for a VAE"
        raise ValueError(msg)
    return ConvVAE(img_size=img_size, in_chans=in_chans, **{**VAE_PRESETS[name], **kwargs})
