"""The masked-reconstruction figure: visible patches pasted back, hidden ones grey."""

from __future__ import annotations

import torch

from sdofm.models import build_backbone
from sdofm.training.callbacks import _plot_reconstructions, masked_views


def test_visible_patches_are_the_input_and_hidden_ones_are_marked(tmp_path):
    torch.manual_seed(0)
    net = build_backbone("mae_tiny", img_size=32, in_chans=3).eval()
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        _, pred, mask = net(x, generator=torch.Generator().manual_seed(1))
        views = masked_views(net, x, pred, mask)
    hidden = torch.isnan(views["masked"])
    assert 0.5 < hidden.float().mean() < 0.95  # mask_ratio 0.75 of the patches
    assert torch.equal(views["recon"][~hidden], x[~hidden])  # the input where it was seen
    raw = net.reconstruct(pred, x)
    assert torch.equal(views["recon"][hidden], raw[hidden])  # the model where it was not
    shown = {k: v[0].numpy() for k, v in views.items()}
    errors = [{"epoch": 0, "masked_mse": 1.0}, {"epoch": 1, "masked_mse": 0.5}]
    _plot_reconstructions(shown, shown, errors, ["171A", "193A", "Bz"], tmp_path)
    assert (tmp_path / "reconstructions.png").stat().st_size > 10_000
