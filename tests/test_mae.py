"""The masked autoencoder: patching, masking, the masked-only loss and training."""

import pytest
import torch

from sdofm import SdofmError
from sdofm.models import BACKBONES, MaskedAutoencoder, build_backbone

SMALL = dict(
    img_size=16,
    patch_size=4,
    in_chans=3,
    embed_dim=32,
    depth=1,
    num_heads=2,
    decoder_dim=16,
    decoder_depth=1,
    decoder_heads=2,
)


def _model(**kw):
    torch.manual_seed(0)
    return MaskedAutoencoder(**{**SMALL, **kw})


def _images(n=4, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(n, 3, 16, 16, generator=g)


def test_patchify_layout_and_round_trip():
    """Patch 0 is the top-left p x p block (channels last); unpatchify inverts patchify."""
    m = _model()
    x = _images()
    p = m.patchify(x)
    assert p.shape == (4, 16, 4 * 4 * 3)
    torch.testing.assert_close(p[:, 0].reshape(4, 4, 4, 3), x[:, :, :4, :4].permute(0, 2, 3, 1))
    torch.testing.assert_close(p[:, 1].reshape(4, 4, 4, 3), x[:, :, :4, 4:8].permute(0, 2, 3, 1))
    torch.testing.assert_close(p[:, 4].reshape(4, 4, 4, 3), x[:, :, 4:8, :4].permute(0, 2, 3, 1))
    assert torch.equal(m.unpatchify(p), x)


def test_loss_only_on_masked_patches():
    """With a fixed mask, only predictions on masked patches change the loss."""
    m = _model()
    x = _images()
    pred = torch.randn(4, 16, 48, generator=torch.Generator().manual_seed(2))
    mask = torch.zeros(4, 16)
    mask[:, [1, 5, 6, 11]] = 1.0
    loss = m.forward_loss(x, pred, mask)
    per_patch = ((pred - m.patchify(x)) ** 2).mean(dim=-1)
    torch.testing.assert_close(loss, per_patch[mask.bool()].mean())

    visible = pred.clone()
    visible[:, [0, 2, 15]] += 10.0
    torch.testing.assert_close(m.forward_loss(x, visible, mask), loss)
    hidden = pred.clone()
    hidden[2, 5] += 1.0
    assert not torch.isclose(m.forward_loss(x, hidden, mask), loss)


@pytest.mark.parametrize("ratio", [0.75, 0.5, 0.9, 0.0, 0.99])
def test_random_masking_counts(ratio):
    """round(L*(1-ratio)) tokens are kept (at least one); mask marks the others."""
    m = _model()
    torch.manual_seed(3)
    x = torch.randn(3, 16, 8)
    kept, mask, restore = m.random_masking(x, ratio)
    keep = max(1, round(16 * (1 - ratio)))
    assert kept.shape == (3, keep, 8)
    assert torch.equal(mask.sum(dim=1), torch.full((3,), float(16 - keep)))
    for b in range(3):
        visible = x[b][mask[b] == 0]  # kept tokens are exactly the unmasked ones
        assert torch.equal(visible[visible[:, 0].argsort()], kept[b][kept[b][:, 0].argsort()])
        assert torch.equal(restore[b].sort().values, torch.arange(16))


def test_embed_shape_and_determinism():
    """embed gives [CLS, mean patch] of the unmasked encoder, the same on every call."""
    m = _model().eval()
    x = _images(5)
    torch.manual_seed(10)
    a = m.embed(x)
    torch.manual_seed(11)  # a different shuffle of the (unmasked) tokens
    b = m.embed(x)
    assert a.shape == (5, 2 * SMALL["embed_dim"])
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
    assert not torch.allclose(a[0], a[1])  # different images, different embeddings
    torch.testing.assert_close(m.embed(x[:2]), a[:2], rtol=1e-5, atol=1e-5)


def test_seeded_forward_is_finite_and_reproducible():
    """A seeded forward pass gives a finite loss, the same each time."""
    m = _model()
    x = _images()
    torch.manual_seed(5)
    loss, pred, mask = m(x)
    torch.manual_seed(5)
    loss2, _, _ = m(x)
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert pred.shape == (4, 16, 48) and mask.shape == (4, 16)
    assert torch.equal(mask.sum(dim=1), torch.full((4,), 12.0))
    assert loss.item() == loss2.item()


def test_training_reduces_loss():
    """A few AdamW steps on one batch reduce the (same-mask) reconstruction loss."""
    m = _model()
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    x = torch.stack([torch.sin(xx / 3 + k) * torch.cos(yy / 4) for k in range(3)])[None]
    x = x.repeat(4, 1, 1, 1)

    def loss_at_fixed_mask():
        torch.manual_seed(123)
        with torch.no_grad():
            return m(x)[0].item()

    before = loss_at_fixed_mask()
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    torch.manual_seed(0)
    for _ in range(25):
        opt.zero_grad()
        m(x)[0].backward()
        opt.step()
    assert loss_at_fixed_mask() < 0.6 * before


def test_norm_pix_loss_targets_normalised_patches():
    """With norm_pix_loss the target is each patch standardised, not the raw pixels."""
    x = _images() * 3.0 + 5.0
    mask = torch.ones(4, 16)
    target = _model().patchify(x)
    normed = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    m = _model(norm_pix_loss=True)
    assert m.forward_loss(x, normed, mask).item() < 1e-8
    assert m.forward_loss(x, target, mask).item() > 1.0
    assert _model().forward_loss(x, target, mask).item() == 0.0
    torch.manual_seed(0)
    assert torch.isfinite(m(x)[0])


def test_build_backbone():
    """Presets build for the data's size and channels; unknown names are refused."""
    net = build_backbone("mae_tiny", img_size=32, in_chans=12, mask_ratio=0.5)
    assert net.grid == 4 and net.in_chans == 12 and net.mask_ratio == 0.5
    assert net.embed_dim == BACKBONES["mae_tiny"][1]["embed_dim"]
    torch.manual_seed(0)
    assert net.embed(torch.zeros(1, 12, 32, 32)).shape == (1, 2 * net.embed_dim)
    with pytest.raises(SdofmError, match="unknown backbone 'mae_huge'"):
        build_backbone("mae_huge", img_size=32, in_chans=12)
    with pytest.raises(ValueError, match="multiple of patch size"):
        build_backbone("mae_tiny", img_size=30, in_chans=12)


def test_sdoml_scale_presets_are_large():
    """At 512² with patch 16 the base and large presets are ViT-B and ViT-L sized."""
    with torch.device("meta"):  # no memory: only the shapes
        base = build_backbone("mae_base", img_size=512, in_chans=12)
        large = build_backbone("mae_large", img_size=512, in_chans=12)
    assert 100e6 < base.n_params < 130e6
    assert 300e6 < large.n_params < 360e6
    assert large.grid == 32
