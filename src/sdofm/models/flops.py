"""FLOPs of a training step, counted by torch's FlopCounterMode (forward + backward).

One place for `perf/pretrain_throughput.py` and the runs' budget table: a run's training
compute is the FLOPs of one step at its batch size times its optimiser steps.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch.utils import flop_counter
from torch.utils.flop_counter import FlopCounterMode

__all__ = ["flop_counter_mode", "make_input", "step_flops", "training_flops"]


def _cpu_flash_fwd(query, key, value, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_flop_count(query, key, value)


def _cpu_flash_bwd(grad_out, query, key, value, *args, out_shape=None, **kwargs) -> int:
    return flop_counter.sdpa_backward_flop_count(grad_out, query, key, value)


def flop_counter_mode() -> FlopCounterMode:
    """``FlopCounterMode`` that also counts the CPU flash-attention kernels."""
    aten = torch.ops.aten
    custom = {}
    if hasattr(aten, "_scaled_dot_product_flash_attention_for_cpu"):
        custom[aten._scaled_dot_product_flash_attention_for_cpu] = _cpu_flash_fwd
        custom[aten._scaled_dot_product_flash_attention_for_cpu_backward] = _cpu_flash_bwd
    return FlopCounterMode(display=False, custom_mapping=custom)


def make_input(net: torch.nn.Module, batch: int, device: torch.device) -> torch.Tensor:
    """Synthetic normalised samples: (B, C, H, W), or (B, C, T, H, W) for a temporal MAE."""
    shape = (batch, net.in_chans, net.img_size, net.img_size)
    if hasattr(net, "frames"):
        shape = (batch, net.in_chans, net.frames, net.img_size, net.img_size)
    return torch.randn(shape, generator=torch.Generator().manual_seed(1)).to(device)


def step_flops(net: torch.nn.Module, batch: int) -> int:
    """FLOPs of one training step (forward and backward; the optimiser has no matmuls)."""
    x = make_input(net, batch, torch.device("cpu"))
    counter = flop_counter_mode()
    with counter:
        net(x)[0].backward()
    net.zero_grad(set_to_none=True)
    return int(counter.get_total_flops())


def training_flops(checkpoint: str | Path, batch: int, steps: int) -> float:
    """A pretraining run's compute: one step's FLOPs at ``batch`` times its ``steps``."""
    from sdofm.models.checkpoint import load_backbone

    net, _ = load_backbone(checkpoint)
    return float(step_flops(net.train(), batch)) * steps
