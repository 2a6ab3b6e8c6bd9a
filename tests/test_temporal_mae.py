"""The temporal MAE: tubelets, 3-D positions, masked-only loss, embeddings and training."""

import pytest
import torch

from sdofm.models.masking import solar_patch_weights
from sdofm.models.temporal_mae import (
    TEMPORAL_PRESETS,
    TemporalMAE,
    build_temporal_backbone,
    sincos_pos_embed_3d,
)

SMALL = dict(
    img_size=16,
    patch_size=4,
    tubelet=2,
    frames=4,
    in_chans=2,
    embed_dim=32,
    depth=1,
    num_heads=2,
    decoder_dim=16,
    decoder_depth=1,
    decoder_heads=2,
)
L = 2 * 4 * 4  # (T/t) * (H/p) * (W/p)
PATCH = 2 * 4 * 4 * 2  # t * p * p * C


@pytest.fixture(autouse=True)
def _one_thread():
    """Tiny tensors run fastest on one thread (and do not fight other jobs for cores)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _model(**kw):
    torch.manual_seed(0)
    return TemporalMAE(**{**SMALL, **kw})


def _stacks(n=3, seed=1):
    return torch.randn(n, 2, 4, 16, 16, generator=torch.Generator().manual_seed(seed))


def test_patchify_layout_and_round_trip():
    """Token 0 is frames 0-1 of the top-left p x p block, (t, p, p, C); t-major token order."""
    m = _model()
    x = _stacks()
    p = m.patchify(x)
    assert p.shape == (3, L, PATCH)

    def block(t, y, xx):
        return x[:, :, t : t + 2, y : y + 4, xx : xx + 4].permute(0, 2, 3, 4, 1)

    torch.testing.assert_close(p[:, 0].reshape(3, 2, 4, 4, 2), block(0, 0, 0))
    torch.testing.assert_close(p[:, 1].reshape(3, 2, 4, 4, 2), block(0, 0, 4))
    torch.testing.assert_close(p[:, 4].reshape(3, 2, 4, 4, 2), block(0, 4, 0))
    torch.testing.assert_close(p[:, 16].reshape(3, 2, 4, 4, 2), block(2, 0, 0))
    assert torch.equal(m.unpatchify(p), x)


def test_3d_positions_fixed_and_distinct():
    """(T'*G*G, D) sin-cos positions, one distinct vector per token, shared time part per slot."""
    pos = sincos_pos_embed_3d(32, 2, 4)
    assert pos.shape == (L, 32)
    assert torch.cdist(pos, pos).add(torch.eye(L) * 1e3).min() > 0.1
    time_part = pos[:, :8].reshape(2, 16, 8)
    assert torch.equal(time_part, time_part[:, :1].expand(-1, 16, -1))
    assert not torch.equal(time_part[0], time_part[1])
    m = _model()
    assert m.pos.shape == (1, L, 32) and m.dec_pos.shape == (1, L, 16)
    assert torch.equal(m.pos[0], pos)
    names = {n for n, _ in m.named_parameters()}
    assert not names & {"pos", "dec_pos"} and "pos" not in m.state_dict()
    with pytest.raises(ValueError, match="divisible by 16"):
        sincos_pos_embed_3d(40, 2, 4)


def test_loss_ignores_visible_tubelets():
    """With a fixed mask, neither predictions nor targets at visible tubelets change the loss."""
    m = _model()
    x = _stacks()
    pred = torch.randn(3, L, PATCH, generator=torch.Generator().manual_seed(2))
    mask = torch.zeros(3, L)
    hidden = [1, 5, 6, 17, 30]
    mask[:, hidden] = 1.0
    loss = m.forward_loss(x, pred, mask)
    per_token = ((pred - m.patchify(x)) ** 2).mean(dim=-1)
    torch.testing.assert_close(loss, per_token[mask.bool()].mean())

    visible = torch.ones(L, dtype=torch.bool)
    visible[hidden] = False
    corrupt_pred = pred.clone()
    corrupt_pred[:, visible] += 10.0
    torch.testing.assert_close(m.forward_loss(x, corrupt_pred, mask), loss)
    bump = torch.zeros(3, L, PATCH)
    bump[:, visible] = 7.0
    corrupt_target = x + m.unpatchify(bump)  # changes only the visible tubelets' content
    torch.testing.assert_close(m.forward_loss(corrupt_target, pred, mask), loss)
    changed = pred.clone()
    changed[0, 17] += 1.0
    assert not torch.isclose(m.forward_loss(x, changed, mask), loss)


@pytest.mark.parametrize("ratio", [0.75, 0.5, 0.9])
def test_forward_shapes_and_mask_ratio(ratio):
    """forward -> (scalar loss, (B, L, t*p*p*C) predictions, (B, L) mask of round(L*ratio))."""
    m = _model()
    torch.manual_seed(5)
    loss, pred, mask = m(_stacks(), mask_ratio=ratio)
    hidden = L - max(1, round(L * (1 - ratio)))
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert pred.shape == (3, L, PATCH) and mask.shape == (3, L)
    assert torch.equal(mask.sum(dim=1), torch.full((3,), float(hidden)))
    torch.manual_seed(5)
    assert m(_stacks(), mask_ratio=ratio)[0].item() == loss.item()


def test_generator_fixes_the_mask_without_touching_the_global_stream():
    """A seeded generator (validation) gives the same mask each time; the global RNG is unused."""
    m = _model()
    torch.manual_seed(0)
    state = torch.get_rng_state()
    _, _, a = m(_stacks(), generator=torch.Generator().manual_seed(9))
    _, _, b = m(_stacks(), generator=torch.Generator().manual_seed(9))
    _, _, c = m(_stacks(), generator=torch.Generator().manual_seed(10))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(torch.get_rng_state(), state)


def test_embed_and_tokens():
    """embed: [CLS, mean token], deterministic, no grad; tokens: differentiable (B, D, T', G, G)."""
    m = _model().eval()
    x = _stacks(4)
    torch.manual_seed(10)
    a = m.embed(x)
    torch.manual_seed(11)
    b = m.embed(x)
    assert a.shape == (4, 64) and not a.requires_grad
    torch.testing.assert_close(a, b)
    assert not torch.allclose(a[0], a[1])
    tok = m.tokens(x)
    assert tok.shape == (4, 32, 2, 4, 4) and tok.requires_grad
    torch.testing.assert_close(a[:, 32:], tok.mean(dim=(2, 3, 4)), rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match=r"\(B, C, T, H, W\)"):
        m.embed(x.transpose(1, 2))  # (B, T, C, H, W) is refused, not silently misread


def test_training_reduces_loss():
    """AdamW steps on one fixed batch reduce the (same-mask) loss of the masked tubelets."""
    m = _model()
    tt, yy, xx = torch.meshgrid(
        torch.arange(4.0), torch.arange(16.0), torch.arange(16.0), indexing="ij"
    )
    x = torch.stack([torch.sin(xx / 3 + 0.3 * tt + k) * torch.cos(yy / 4) for k in range(2)])
    x = x[None].repeat(4, 1, 1, 1, 1)

    def loss_at_fixed_mask():
        torch.manual_seed(123)
        with torch.no_grad():
            return m(x)[0].item()

    before = loss_at_fixed_mask()
    opt = torch.optim.AdamW(m.parameters(), lr=3e-3)
    torch.manual_seed(0)
    for _ in range(40):
        opt.zero_grad()
        m(x)[0].backward()
        opt.step()
    assert loss_at_fixed_mask() < 0.5 * before


def test_norm_pix_loss_and_solar_masking():
    """norm_pix_loss targets standardised tubelets; solar weights repeat across time slots."""
    x = _stacks() * 3.0 + 5.0
    m = _model(norm_pix_loss=True)
    target = m.patchify(x)
    normed = (target - target.mean(-1, keepdim=True)) / (target.var(-1, keepdim=True) + 1e-6).sqrt()
    assert m.forward_loss(x, normed, torch.ones(3, L)).item() < 1e-8
    torch.testing.assert_close(m.reconstruct(normed, x), x, rtol=1e-4, atol=1e-4)
    assert torch.equal(_model().reconstruct(target, x), x)  # plain target: just unpatchify
    assert m.mask_weights is None

    s = _model(solar_weight=2.0, rsun_px=6.0)
    spatial = solar_patch_weights(16, 4, rsun_px=6.0, strength=2.0)
    assert torch.equal(s.mask_weights, torch.cat([spatial, spatial]))
    torch.manual_seed(1)
    _, mask = s(torch.zeros(400, 2, 4, 16, 16), mask_ratio=0.5)[1:]
    freq = mask.mean(dim=0).reshape(2, 16)
    assert freq[:, spatial.argmax()].min() > freq[:, spatial.argmin()].max()


def test_presets_and_builder():
    """Tiny preset on 64² stacks; tmae_base (SDOML 512², ViT-B) is ~100M parameters."""
    m = build_temporal_backbone("tmae_tiny", img_size=64, in_chans=3, frames=4, mask_ratio=0.5)
    assert (m.t_grid, m.grid, m.mask_ratio) == (2, 8, 0.5)
    assert m.tokens(torch.zeros(1, 3, 4, 64, 64)).shape == (1, 128, 2, 8, 8)
    with torch.device("meta"):  # count parameters without allocating ~0.5 GB
        base = build_temporal_backbone("tmae_base", img_size=512, in_chans=12, frames=3)
    assert 90e6 < base.n_params < 130e6
    assert set(TEMPORAL_PRESETS) == {"tmae_tiny", "tmae_base"}
    with pytest.raises(ValueError, match="multiple of tubelet"):
        build_temporal_backbone("tmae_tiny", img_size=64, in_chans=3, frames=3)
    with pytest.raises(ValueError, match="unknown temporal backbone"):
        build_temporal_backbone("tmae_huge", img_size=64, in_chans=3, frames=4)
