"""Solar-aware masking: the weight geometry and the weighted draw's contract and statistics."""

import math

import pytest
import torch

from sdofm.dataset.loader import disk_mask
from sdofm.models import MaskedAutoencoder
from sdofm.models.masking import solar_patch_weights, weighted_random_masking


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors run fastest on one thread (and do not fight other jobs for cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _tokens(b=3, n=16, d=5, seed=0):
    return torch.randn(b, n, d, generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("ratio", [0.75, 0.5, 0.9, 0.99, 0.0])
def test_ratio_exact_and_kept_tokens_gathered(ratio):
    """round(L*(1-ratio)) tokens kept, in shuffle order; they are exactly the unmasked ones."""
    x = _tokens()
    weights = torch.linspace(0.1, 5.0, 16)
    kept, mask, restore = weighted_random_masking(
        x, ratio, weights, torch.Generator().manual_seed(1)
    )
    keep = max(1, round(16 * (1 - ratio)))
    assert kept.shape == (3, keep, 5) and mask.shape == (3, 16) and restore.shape == (3, 16)
    assert torch.equal(mask.sum(dim=1), torch.full((3,), float(16 - keep)))
    shuffle = restore.argsort(dim=1)
    for b in range(3):
        assert torch.equal(restore[b].sort().values, torch.arange(16))
        assert torch.equal(kept[b], x[b, shuffle[b, :keep]])
        assert torch.equal(mask[b, shuffle[b, :keep]], torch.zeros(keep))
        assert torch.equal(mask[b, shuffle[b, keep:]], torch.ones(16 - keep))


def test_equal_weights_reproduce_random_masking_exactly():
    """Gumbel noise is monotone in the uniform draw: equal weights give the MAE's own masking."""
    mae = MaskedAutoencoder(img_size=8, patch_size=2, in_chans=1, embed_dim=16, depth=1)
    x = _tokens(b=4, n=16)
    torch.manual_seed(7)
    expected = mae.random_masking(x, 0.75)
    torch.manual_seed(7)
    got = weighted_random_masking(x, 0.75, torch.ones(16))
    for e, g in zip(expected, got, strict=True):
        assert torch.equal(e, g)


def test_equal_weights_are_uniform():
    """Over many draws every position is hidden with frequency ratio (binomial tolerance)."""
    draws, n, ratio = 4000, 16, 0.75
    x = torch.zeros(draws, n, 1)
    _, mask, _ = weighted_random_masking(
        x, ratio, torch.full((n,), 3.0), torch.Generator().manual_seed(2)
    )
    freq = mask.mean(dim=0)
    tol = 5 * math.sqrt(ratio * (1 - ratio) / draws)
    assert (freq - ratio).abs().max() < tol


def test_active_latitudes_hidden_more_often_than_polar():
    """Weighted by solar_patch_weights, belt patches are hidden more often than polar/off-disk."""
    w = solar_patch_weights(32, 4, rsun_px=14.0)
    grid = w.reshape(8, 8)
    belt, polar, corner = grid[2, 3], grid[0, 3], grid[0, 0]  # 10-25° N, the north cap, space
    assert belt > polar > corner
    draws = 3000
    _, mask, _ = weighted_random_masking(
        torch.zeros(draws, 64, 1), 0.5, w, torch.Generator().manual_seed(3)
    )
    freq = mask.mean(dim=0).reshape(8, 8)
    assert freq[2, 3] > freq[0, 3] + 0.1 > freq[0, 0] + 0.2
    assert freq.mean().item() == pytest.approx(0.5)  # exact ratio per draw
    # Over the draws, hiding frequency increases with weight across the whole grid.
    order = w.argsort()
    low, high = freq.flatten()[order[:16]].mean(), freq.flatten()[order[-16:]].mean()
    assert high > low + 0.3


def test_weights_peak_at_active_latitude_and_follow_the_disk():
    """Pixel weights peak at ±15° latitude; patch weights match loader.disk_mask's disk."""
    size, r = 201, 90.0
    w = solar_patch_weights(size, 1, rsun_px=r, strength=2.0, off_disk=0.5).reshape(size, size)
    column = w[:, size // 2]
    c = (size - 1) / 2
    row = int(column[: size // 2].argmax())
    lat = math.degrees(math.asin((c - row) / r))
    assert abs(lat - 15.0) < 1.0
    assert torch.allclose(column, column.flip(0))  # north-south symmetric
    peak = 1 + 2 * math.exp(-((lat - 15) ** 2) / 128)
    equator = 1 + 2 * math.exp(-(15**2) / 128)
    assert (column[row] / column[size // 2]).item() == pytest.approx(peak / equator, rel=1e-5)

    # With no belt, a patch weight is (on-disk fraction + off_disk * off-disk fraction).
    on = torch.from_numpy(disk_mask(64, 21.5)).double()
    frac = on.reshape(8, 8, 8, 8).mean(dim=(1, 3)).flatten()
    expected = frac + 0.2 * (1 - frac)
    got = solar_patch_weights(64, 8, rsun_px=21.5, strength=0.0, off_disk=0.2)
    torch.testing.assert_close(got.double(), expected / expected.mean())


def test_per_sample_weights_and_bad_input():
    """(B, L) weights are accepted; wrong shapes and non-positive weights are refused."""
    x = _tokens(b=2, n=16)
    w = torch.ones(2, 16)
    w[1, :4] = 1e6  # sample 1 almost surely hides its first four tokens
    _, mask, _ = weighted_random_masking(x, 0.5, w, torch.Generator().manual_seed(4))
    assert torch.equal(mask[1, :4], torch.ones(4))
    with pytest.raises(ValueError, match="do not match 16 tokens"):
        weighted_random_masking(x, 0.5, torch.ones(15))
    with pytest.raises(ValueError, match="positive"):
        weighted_random_masking(x, 0.5, torch.zeros(16))
    with pytest.raises(ValueError, match="multiple of patch size"):
        solar_patch_weights(30, 4)
