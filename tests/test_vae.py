"""The convolutional beta-VAE: shapes, the KL term, the loss, and reconstruction of its input."""

import pytest
import torch
from torch.distributions import Normal, kl_divergence

from sdofm.models.vae import VAE_PRESETS, ConvVAE, build_vae, kl_to_standard_normal

SMALL = dict(img_size=16, in_chans=3, widths=(8, 16), blocks=1, latent_ch=4, embed_grid=2)


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors run fastest on one thread (and do not fight other jobs for cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(**kw):
    torch.manual_seed(0)
    return ConvVAE(**{**SMALL, **kw})


def _images(n=4):
    """Distinct smooth patterns, one per image, of unit-ish amplitude."""
    yy, xx = torch.meshgrid(torch.arange(16.0), torch.arange(16.0), indexing="ij")
    return torch.stack(
        [
            torch.stack([torch.sin(xx / (2 + i) + c) * torch.cos(yy / (3 + i)) for c in range(3)])
            for i in range(n)
        ]
    )


def test_shapes():
    """forward -> (loss, recon like x, ones mask (B, 1)); tokens (B, z, H/f, W/f); embed (B, F)."""
    m = _model()
    x = _images()
    loss, recon, mask = m(x, mask_ratio=0.75)  # the ratio is accepted and ignored
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert recon.shape == x.shape and torch.equal(mask, torch.ones(4, 1))
    assert m.tokens(x).shape == (4, 4, 4, 4) and m.embed_dim == 4
    assert m.embed(x).shape == (4, 4 * 2 * 2)
    assert set(m.last_terms) == {"recon", "kl"}
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        m(torch.zeros(2, 3, 32, 32))


def test_generator_fixes_the_posterior_sample():
    """A seeded generator (validation) gives the same sample and loss; the global RNG is unused."""
    m = _model()
    x = _images()
    torch.manual_seed(0)
    state = torch.get_rng_state()
    a = m(x, generator=torch.Generator().manual_seed(5))
    b = m(x, generator=torch.Generator().manual_seed(5))
    c = m(x, generator=torch.Generator().manual_seed(6))
    assert torch.equal(a[1], b[1]) and a[0].item() == b[0].item()
    assert not torch.equal(a[1], c[1])
    assert torch.equal(torch.get_rng_state(), state)


def test_kl_is_zero_at_the_prior():
    """KL(q || N(0, 1)) is 0 at mu = 0, logvar = 0, positive elsewhere, and the closed form."""
    zero = torch.zeros(2, 4, 3, 3)
    assert torch.equal(kl_to_standard_normal(zero, zero), zero)
    g = torch.Generator().manual_seed(0)
    mu, logvar = torch.randn(2, 4, 3, 3, generator=g), torch.randn(2, 4, 3, 3, generator=g)
    kl = kl_to_standard_normal(mu, logvar)
    ref = kl_divergence(Normal(mu, (0.5 * logvar).exp()), Normal(0.0, 1.0))
    torch.testing.assert_close(kl, ref)
    assert (kl > 0).all()


def test_loss_is_summed_error_plus_beta_kl_per_input_value():
    """loss = [sum (x - recon)^2 + beta * sum KL] / numel(x); beta is settable (KL warm-up)."""
    m = _model()
    x = _images()
    g = torch.Generator().manual_seed(1)
    recon = torch.randn(x.shape, generator=g)
    mu, logvar = torch.randn(4, 4, 4, 4, generator=g), torch.randn(4, 4, 4, 4, generator=g)
    rec = ((x - recon) ** 2).sum() / x.numel()
    kl = kl_to_standard_normal(mu, logvar).sum() / x.numel()
    for beta in (0.0, 0.5, 4.0):
        m.beta = beta
        torch.testing.assert_close(m.forward_loss(x, recon, mu, logvar), rec + beta * kl)
    torch.testing.assert_close(m.last_terms["kl"], kl)


def test_training_reduces_loss_and_reconstructs_each_input():
    """After overfitting one batch, each image's reconstruction is nearest to that image."""
    m = _model()
    x = _images()
    torch.manual_seed(3)
    with torch.no_grad():
        before = m(x)[0].item()
    opt = torch.optim.Adam(m.parameters(), lr=3e-3)
    torch.manual_seed(0)
    for step in range(50):
        m.beta = min(1.0, step / 25)  # KL warm-up through the attribute
        opt.zero_grad()
        m(x)[0].backward()
        opt.step()
    torch.manual_seed(3)
    with torch.no_grad():
        after = m(x)[0].item()
    assert after < 0.5 * before
    recon = m.reconstruct_mean(x)
    dist = torch.cdist(recon.flatten(1), x.flatten(1))  # (recon i, image j)
    assert torch.equal(dist.argmin(dim=1), torch.arange(4))
    _, sampled, _ = m(x, generator=torch.Generator().manual_seed(0))  # forward's own output
    nearest = torch.cdist(m.reconstruct(sampled, x).flatten(1), x.flatten(1)).argmin(dim=1)
    assert torch.equal(nearest, torch.arange(4))
    # And it follows its input: swap the batch order, the reconstructions swap too.
    torch.testing.assert_close(m.reconstruct_mean(x.flip(0)), recon.flip(0), rtol=1e-4, atol=1e-4)


def test_embed_is_pooled_posterior_mean():
    """embed is the posterior mean pooled to embed_grid², deterministic and without grad."""
    m = _model().eval()
    x = _images()
    torch.manual_seed(1)
    a = m.embed(x)
    torch.manual_seed(2)
    b = m.embed(x)
    assert not a.requires_grad
    torch.testing.assert_close(a, b)
    mu = m.encode(x)[0]
    pooled = mu.reshape(4, 4, 2, 2, 2, 2).mean(dim=(3, 5)).flatten(1)
    torch.testing.assert_close(a, pooled)
    assert not torch.allclose(a[0], a[1])
    assert m.tokens(x).requires_grad


def test_presets_and_builder():
    """vae_tiny on 64²; vae_base on 512²; MAE-only options dropped or refused clearly."""
    m = build_vae("vae_tiny", img_size=64, in_chans=12, mask_ratio=0.75, norm_pix_loss=False)
    assert m.grid == 8 and m.embed(torch.zeros(1, 12, 64, 64)).shape == (1, 16 * 16)
    with torch.device("meta"):
        base = build_vae("vae_base", img_size=512, in_chans=12)
    assert base.grid == 32 and 5e6 < base.n_params < 50e6
    assert set(VAE_PRESETS) == {"vae_tiny", "vae_base"}
    with pytest.raises(ValueError, match="norm_pix_loss"):
        build_vae("vae_tiny", img_size=64, in_chans=12, norm_pix_loss=True)
    with pytest.raises(ValueError, match="multiple of the downsampling"):
        build_vae("vae_tiny", img_size=60, in_chans=12)
    with pytest.raises(ValueError, match="unknown VAE backbone"):
        build_vae("nvae", img_size=64, in_chans=12)
