"""Heads on the foundation model, and the one training loop every trained arm uses.

- `fit`: mini-batch AdamW with early stopping on the validation loss; it moves the model and
  each batch to the device, so a GPU node's GPU is used and tensors stay in host memory.
- `predict`: batched inference on the device, numpy out.
- `make_head`: a linear or MLP head, with the training rows' standardisation built in.
- `BackboneHead`: backbone + head in one module, frozen or fine-tuned, on the pooled embedding
  or on the token grid; `frozen_tokens`: a frozen backbone's token grid of every image;
  `TokenDecoder`: a head from the token grid to a full-resolution image;
  `AttentiveProbe`: a probe from the token grid that can pick out and locate single tokens.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from sdofm import SdofmError

__all__ = [
    "AttentiveProbe",
    "BackboneHead",
    "Standardise",
    "TargetScaler",
    "TokenDecoder",
    "balanced_bce",
    "fit",
    "frozen_tokens",
    "make_head",
    "pooled",
    "predict",
    "standardiser",
]

Inputs = torch.Tensor | Sequence[torch.Tensor]


class Standardise(nn.Module):
    """A fixed standardisation ``(x - mean) / std`` with statistics of the training rows."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean, dtype=torch.float32))
        self.register_buffer("std", torch.as_tensor(std, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def standardiser(train: np.ndarray | torch.Tensor, dims: tuple[int, ...] = (0,)) -> Standardise:
    """A `Standardise` with the mean and std of ``train`` over ``dims`` (std floored at 1e-6)."""
    t = torch.as_tensor(np.asarray(train), dtype=torch.float64)
    mean, std = t.mean(dim=dims, keepdim=True), t.std(dim=dims, keepdim=True)
    keep = [d for d in range(t.ndim) if d not in dims]
    shape = [t.shape[d] if d in keep else 1 for d in range(t.ndim)][1:]
    return Standardise(mean.reshape(shape).float(), std.clamp_min(1e-6).reshape(shape).float())


def make_head(
    train: np.ndarray, n_out: int, kind: str = "linear", *, hidden: int = 256
) -> nn.Module:
    """A head from features (B, F) to (B, n_out), standardising with ``train``'s statistics."""
    width = train.shape[1]
    if kind == "linear":
        layers: list[nn.Module] = [nn.Linear(width, n_out)]
    elif kind == "mlp":
        layers = [nn.Linear(width, hidden), nn.GELU(), nn.Dropout(0.1), nn.Linear(hidden, n_out)]
    else:
        msg = f"unknown head {kind!r}: expected 'linear' or 'mlp'"
        raise SdofmError(msg)
    return nn.Sequential(standardiser(train), *layers)


def pooled(net: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The backbone's embedding of ``x`` ([CLS, mean token] for a ViT), with gradients."""
    if hasattr(net, "forward_encoder"):
        latent, _, _ = net.forward_encoder(x, 0.0)
        return torch.cat([latent[:, 0], latent[:, 1:].mean(dim=1)], dim=1)
    return nn.functional.adaptive_avg_pool2d(net.tokens(x), net.embed_grid).flatten(1)


class BackboneHead(nn.Module):
    """Backbone and head as one model: images (B, C, H, W) [+ extra inputs] -> head output.

    ``pool="embedding"`` feeds the head the pooled embedding (as `sdofm embed` stores it);
    ``pool="tokens"`` the token grid (B, D, gh, gw), with any extra inputs passed on to the head.
    With ``finetune`` the backbone trains with the head; otherwise it is frozen.
    """

    def __init__(self, net: nn.Module, head: nn.Module, *, pool: str, finetune: bool):
        super().__init__()
        self.net, self.head, self.pool = net, head, pool
        self.net.requires_grad_(finetune)
        self.finetune = finetune

    def train(self, mode: bool = True) -> BackboneHead:
        super().train(mode)
        if not self.finetune:
            self.net.eval()
        return self

    def forward(self, x: torch.Tensor, *extra: torch.Tensor) -> torch.Tensor:
        with torch.set_grad_enabled(self.finetune and torch.is_grad_enabled()):
            z = pooled(self.net, x) if self.pool == "embedding" else self.net.tokens(x)
        return self.head(z, *extra)


def frozen_tokens(net: nn.Module, images: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """The token grid (N, D, gh, gw) of a frozen backbone ``net`` on ``images`` (N, C, H, W)."""
    head = BackboneHead(net, nn.Identity(), pool="tokens", finetune=False)
    return torch.tensor(predict(head, images, device=device, batch_size=64), dtype=torch.float32)


class AttentiveProbe(nn.Module):
    """Token grid (B, D, gh, gw) -> (B, n_out): ``heads`` learned softmax poolings over the
    tokens and the mean token, into one linear layer.

    Each pooling's weights come from a linear score of every token, and a token's pooled value
    carries its grid position (y, x in [-1, 1]), so the probe can find the token that holds
    something (the largest region) and say where it is; a linear probe on pooled features
    cannot. Standardised per feature with the training rows' statistics, ``train``.
    """

    def __init__(self, train: torch.Tensor, n_out: int, *, heads: int = 4):
        super().__init__()
        d, gh, gw = train.shape[1:]
        self.norm = standardiser(train, dims=(0, 2, 3))
        y, x = torch.meshgrid(torch.linspace(-1, 1, gh), torch.linspace(-1, 1, gw), indexing="ij")
        self.register_buffer("coords", torch.stack([y.flatten(), x.flatten()], dim=1))
        self.score = nn.Linear(d, heads)
        nn.init.zeros_(self.score.weight)  # uniform weights at first: no token favoured by chance
        self.out = nn.Sequential(nn.Dropout(0.1), nn.Linear(heads * (d + 2) + d, n_out))

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        z = self.norm(grid).flatten(2).transpose(1, 2)  # (B, L, D)
        weights = self.score(z).softmax(dim=1)  # (B, L, heads)
        values = torch.cat([z, self.coords.expand(len(z), -1, -1)], dim=2)
        pools = torch.einsum("blh,bld->bhd", weights, values).flatten(1)
        return self.out(torch.cat([pools, z.mean(dim=1)], dim=1))


class TokenDecoder(nn.Module):
    """Token grid (B, D, g, g) [+ images (B, C, g·p, g·p)] -> one image (B, 1, g·p, g·p).

    Each token becomes a p×p patch of ``width`` features (1×1 convolutions, pixel shuffle);
    with ``skip_chans`` the full-resolution images are concatenated before two last
    convolutions, so the output is not limited to the patch size.
    """

    def __init__(self, dim: int, patch: int, *, width: int = 16, skip_chans: int = 0):
        super().__init__()
        self.expand = nn.Sequential(
            nn.Conv2d(dim, 128, 1),
            nn.GELU(),
            nn.Conv2d(128, width * patch * patch, 1),
            nn.PixelShuffle(patch),
        )
        self.fuse = nn.Sequential(
            nn.Conv2d(width + skip_chans, width, 3, padding=1), nn.GELU(), nn.Conv2d(width, 1, 1)
        )

    def forward(self, tokens: torch.Tensor, *images: torch.Tensor) -> torch.Tensor:
        return self.fuse(torch.cat([self.expand(tokens), *images], dim=1))


def _batch(x: Inputs, idx: torch.Tensor, device: torch.device) -> tuple[torch.Tensor, ...]:
    parts = (x,) if isinstance(x, torch.Tensor) else tuple(x)
    return tuple(p[idx].to(device, non_blocking=True) for p in parts)


def _length(x: Inputs) -> int:
    return len(x) if isinstance(x, torch.Tensor) else len(x[0])


def predict(
    model: nn.Module, x: Inputs, *, device: torch.device | str = "cpu", batch_size: int = 256
) -> np.ndarray:
    """``model`` over ``x`` in batches on ``device``, without gradients: float64 numpy."""
    model = model.to(device).eval()
    out = []
    with torch.no_grad():
        for idx in torch.arange(_length(x)).split(batch_size):
            out.append(model(*_batch(x, idx, torch.device(device))).float().cpu())
    if not out:
        return np.zeros((0,))
    return torch.cat(out).double().numpy()


def fit(
    model: nn.Module,
    train: tuple[Inputs, torch.Tensor],
    val: tuple[Inputs, torch.Tensor],
    *,
    loss_fn: Callable = nn.functional.mse_loss,
    epochs: int = 200,
    lr: float = 1e-3,
    weight_decay: float = 1e-4,
    batch_size: int = 64,
    patience: int = 20,
    seed: int = 0,
    device: torch.device | str = "cpu",
    **_: Any,
) -> nn.Module:
    """Train ``model`` with AdamW; keep the weights of the lowest validation loss.

    Inputs may be a tensor or a tuple of tensors (one model argument each), kept on the host;
    each batch goes to ``device``. Deterministic for a seed on the CPU.
    """
    device = torch.device(device)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    model = model.to(device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    (x, y), (xv, yv) = train, val
    best, best_state, stale = float("inf"), copy.deepcopy(model.state_dict()), 0
    for _epoch in range(epochs):
        model.train()
        for idx in torch.randperm(len(y), generator=gen).split(batch_size):
            opt.zero_grad(set_to_none=True)
            loss_fn(model(*_batch(x, idx, device)), y[idx].to(device)).backward()
            opt.step()
        if len(yv) == 0:
            best_state = model.state_dict()
            continue
        with torch.no_grad():
            pred = torch.from_numpy(predict(model, xv, device=device)).float()
            v = float(loss_fn(pred.to(device), yv.to(device)))
        if v < best:
            best, best_state, stale = v, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale > patience:
                break
    model.load_state_dict(best_state)
    return model.eval()


def balanced_bce(y_train: np.ndarray) -> tuple[Callable, float]:
    """Binary cross-entropy on logits with positives weighted n_negative / n_positive.

    Returns (loss, log weight). The weight inflates the odds of a positive by itself, so
    ``sigmoid(logit - log_weight)`` is the calibrated probability (ranks, TSS and ROC AUC are
    unchanged by the shift; the Brier score and reliability need it).
    """
    y = np.asarray(y_train, bool)
    if not y.any() or y.all():
        msg = "class-weighted BCE needs positive and negative training rows"
        raise SdofmError(msg)
    weight = float((~y).sum() / y.sum())

    def loss(logit: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        pos = torch.tensor([weight], device=logit.device, dtype=logit.dtype)
        return nn.functional.binary_cross_entropy_with_logits(logit, target, pos_weight=pos)

    return loss, float(np.log(weight))


class TargetScaler:
    """Targets standardised with the training rows' statistics (optionally of log10)."""

    def __init__(self, y_train: np.ndarray, *, log: bool = False):
        self.log = log
        t = self._forward(np.asarray(y_train, np.float64))
        self.mean, self.std = t.mean(axis=0), t.std(axis=0) + 1e-12

    def _forward(self, y: np.ndarray) -> np.ndarray:
        return np.log10(y) if self.log else y

    def __call__(self, y: np.ndarray) -> torch.Tensor:
        z = (self._forward(np.asarray(y, np.float64)) - self.mean) / self.std
        z = torch.as_tensor(z, dtype=torch.float32)
        return z[:, None] if z.ndim == 1 else z

    def inverse(self, z: np.ndarray) -> np.ndarray:
        t = np.asarray(z, np.float64).reshape(len(z), *np.shape(self.mean)) * self.std + self.mean
        return 10**t if self.log else t
