"""Solar-aware MAE masking: hide patches at active latitudes more often than polar ones."""

from __future__ import annotations

import torch

__all__ = ["SDOML_RSUN_PX_512", "solar_patch_weights", "weighted_random_masking"]

# The SDOML v2 disk radius at 512²: 976″ at 4.8″/px (as in sdofm.dataset.loader.disk_mask).
SDOML_RSUN_PX_512 = 976.0 / 4.8


def solar_patch_weights(
    img_size: int,
    patch_size: int,
    *,
    rsun_px: float | None = None,
    strength: float = 2.0,
    active_lat_deg: float = 15.0,
    width_deg: float = 8.0,
    off_disk: float = 0.25,
) -> torch.Tensor:
    """Masking weight of each patch, (L,) in row-major patch order (as ``patchify``).

    A pixel on the disk weighs ``1 + strength * exp(-(|lat| - active_lat)² / (2 width²))``, where
    the heliographic latitude of the pixel at row ``y`` is ``asin((c - y) / rsun_px)`` for an
    upright disk centred at ``c = (img_size - 1) / 2`` with B0 = 0 (SDOML's P-angle-corrected
    images; |B0| <= 7.25° is neglected). A pixel off the disk weighs ``off_disk``. A patch weighs
    the mean of its pixels, so limb patches lie between the two; the weights have mean 1.

    Parameters
    ----------
    img_size, patch_size
        Square image side and patch side in pixels; ``img_size`` a multiple of ``patch_size``.
    rsun_px
        Disk radius in pixels; default the SDOML v2 scale (976″ at 4.8″/px at 512²).
    strength
        Extra weight at the active latitude (0: every disk pixel weighs 1).
    active_lat_deg, width_deg
        Centre and Gaussian width (degrees) of the activity belts.
    off_disk
        Weight of a pixel off the disk, > 0.

    Examples
    --------
    >>> w = solar_patch_weights(64, 8, rsun_px=25.0)
    >>> w.shape, bool(w[27] > w[11] > w[3])  # low latitude > polar cap > off the disk
    (torch.Size([64]), True)
    """
    if img_size % patch_size:
        msg = f"image size {img_size} is not a multiple of patch size {patch_size}"
        raise ValueError(msg)
    if off_disk <= 0 or strength < 0 or width_deg <= 0:
        msg = (
            f"need off_disk > 0, strength >= 0 and width_deg > 0; "
            f"got {off_disk}, {strength}, {width_deg}"
        )
        raise ValueError(msg)
    r = SDOML_RSUN_PX_512 * img_size / 512 if rsun_px is None else float(rsun_px)
    c = (img_size - 1) / 2
    pix = torch.arange(img_size, dtype=torch.float64)
    yy, xx = torch.meshgrid(pix, pix, indexing="ij")
    on_disk = (yy - c) ** 2 + (xx - c) ** 2 <= r**2
    lat = torch.rad2deg(torch.asin(((c - yy) / r).clamp(-1, 1)))
    belt = torch.exp(-((lat.abs() - active_lat_deg) ** 2) / (2 * width_deg**2))
    pixel = torch.where(on_disk, 1 + strength * belt, torch.full_like(belt, off_disk))
    g = img_size // patch_size
    patch = pixel.reshape(g, patch_size, g, patch_size).mean(dim=(1, 3)).flatten()
    return (patch / patch.mean()).float()


def weighted_random_masking(
    x: torch.Tensor,
    ratio: float,
    weights: torch.Tensor,
    generator: torch.Generator | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Hide a ``ratio`` of tokens, drawn without replacement with probability ∝ ``weights``.

    The contract of ``MaskedAutoencoder.random_masking``: (B, L, D) -> kept tokens
    (B, L_keep, D) with ``L_keep = max(1, round(L * (1 - ratio)))``, mask (B, L) with 1 where a
    token is hidden, and restore (B, L), the argsort of the shuffle. The hidden set is the top
    ``L - L_keep`` of ``log(weights) + Gumbel noise`` (Gumbel top-k = successive sampling ∝
    weight). The Gumbel transform is monotone in the uniform noise, so with equal weights and
    the same random state this returns exactly what ``random_masking`` does.

    ``weights`` is (L,) or (B, L), positive; ``ratio == 0`` keeps every token in order and
    draws no random numbers.
    """
    b, n, d = x.shape
    if weights.shape not in ((n,), (b, n)):
        msg = f"weights of shape {tuple(weights.shape)} do not match {n} tokens (batch {b})"
        raise ValueError(msg)
    # Checked where it is free: on a GPU, or inside a compiled graph, the check would cost a
    # host sync (or a graph break) on every step; there the weights are the model's buffer.
    on_host = weights.device.type == "cpu" and not torch.compiler.is_compiling()
    if on_host and not bool((weights > 0).all()):
        msg = "masking weights must all be positive"
        raise ValueError(msg)
    if ratio == 0:
        idx = torch.arange(n, device=x.device).expand(b, n)
        return x, torch.zeros(b, n, device=x.device), idx
    keep = max(1, int(round(n * (1 - ratio))))
    u = torch.rand(b, n, device=x.device, generator=generator)
    gumbel = -torch.log(-torch.log(u.clamp_min(1e-20)))
    score = torch.log(weights.to(device=x.device, dtype=gumbel.dtype)).expand(b, n) + gumbel
    shuffle = torch.argsort(score, dim=1)  # kept first (lowest scores), hidden last
    restore = torch.argsort(shuffle, dim=1)
    kept = torch.gather(x, 1, shuffle[:, :keep, None].expand(-1, -1, d))
    mask = torch.ones(b, n, device=x.device)
    mask[:, :keep] = 0
    return kept, torch.gather(mask, 1, restore), restore
