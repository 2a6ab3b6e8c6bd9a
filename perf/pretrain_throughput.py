"""Pretraining and embedding throughput of the backbones: eager fp32, torch.compile, bf16 autocast.

For each preset at its image size (default ``mae_tiny`` at 64² and ``mae_base`` at 512², 12
channels), on the CPU and, where ``torch.cuda.is_available()``, also on the GPU:

* training: forward + backward + AdamW step on synthetic normalised input (standard normal),
  a fresh seeded network per mode, warm-up steps excluded, the timed steps of the modes
  interleaved (one step of each in turn, so a change in a shared machine's load hits them
  alike); median and best step, images/s, tokens/s (patches the encoder sees,
  ``L_keep = round(L * (1 - mask_ratio))``) and patches/s (all ``L`` patches of the image).
  Modes: eager fp32; ``torch.compile`` (default mode; its first step, i.e. the compilation,
  reported apart; skipped with the error if it fails); bf16 autocast eager
  (``torch.autocast(device_type, dtype=torch.bfloat16)``); optionally compile + bf16. The
  FLOPs of one step are counted with ``FlopCounterMode`` (matmuls, convolutions and attention,
  including the CPU flash-attention kernels it does not know) on the first eager warm-up step:
  achieved GFLOP/s on every device, and on a GPU the model FLOPs utilisation against
  ``--peak-tflops`` (default 989, H100/H200 SXM bf16 dense);
* embedding extraction: ``net.embed`` under ``inference_mode`` (batch 64; 4 for the large
  presets on a CPU), in samples/s and seconds per sample, against SDO-FM's reported 2.68 s per
  sample (a different model, image pipeline and machine: an order of magnitude, no more).

On a CPU a 512² ViT-B step takes seconds, so heavy cases (any non-tiny preset or images over
128²) default to batch 2, 1 warm-up and 3 timed steps. ``--quick`` runs ``mae_tiny`` at 64² only
with fewer steps. Compilation dominates both runs when the inductor cache (/tmp) is cold.

Usage: ``python perf/pretrain_throughput.py [--quick] [--presets mae_tiny mae_base]
[--sizes 64 512] [--batch N] [--steps N] [--threads N] [--modes eager compile bf16]``
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from sdofm.models import BACKBONES, build_backbone
from sdofm.models.flops import flop_counter_mode, make_input

SDOFM_S_PER_SAMPLE = 2.68  # SDO-FM's reported embedding cost per sample
MODES = ("eager", "compile", "bf16", "compile-bf16")
LABELS = {"eager": "eager fp32", "compile": "compile fp32", "bf16": "eager bf16"}
LABELS["compile-bf16"] = "compile bf16"


@dataclass
class Plan:
    """How much to run for one case on one device."""

    batch: int
    warmup: int
    steps: int
    embed_batch: int
    embed_repeats: int


def plan_for(preset: str, size: int, device: str, args: argparse.Namespace) -> Plan:
    """Defaults by weight class (tiny at <= 128² is light), then the command-line overrides."""
    light = preset.endswith("_tiny") and size <= 128
    if device == "cuda":
        plan = Plan(256, 5, 20, 64, 5) if light else Plan(32, 3, 10, 64, 5)
    elif light:
        plan = Plan(16, 3, 10, 64, 3) if not args.quick else Plan(16, 2, 5, 64, 1)
    else:
        plan = Plan(2, 1, 3, 4, 1) if not args.quick else Plan(2, 1, 2, 2, 1)
    for field in ("batch", "warmup", "steps", "embed_batch"):
        if getattr(args, field) is not None:
            setattr(plan, field, getattr(args, field))
    plan.warmup = max(plan.warmup, 1)  # the first step (compilation, FLOP count) is never timed
    return plan


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _timed(fn: Callable[[], object], device: torch.device) -> float:
    _sync(device)
    t0 = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t0


def geometry(net: torch.nn.Module) -> tuple[int, int]:
    """Patches per sample ``L`` and how many the encoder sees (a VAE: its latent cells, all)."""
    if hasattr(net, "mask_ratio"):
        n = net.pos.shape[1]
        return n, max(1, int(round(n * (1 - net.mask_ratio))))
    return net.grid**2, net.grid**2


def n_params(net: torch.nn.Module) -> tuple[int, int]:
    """Encoder and decoder parameter counts (decoder = ``decoder*`` and ``mask_token``)."""
    dec = sum(p.numel() for k, p in net.named_parameters() if k.startswith(("decoder", "mask_")))
    return sum(p.numel() for p in net.parameters()) - dec, dec


def flops_estimate(net: torch.nn.Module, batch: int) -> float | None:
    """6 · parameters · tokens through them (patch embedding on all L); None for a VAE."""
    if not hasattr(net, "mask_ratio"):
        return None
    n, keep = geometry(net)
    enc, dec = n_params(net)
    embed = net.patch_embed.weight.numel() + net.patch_embed.bias.numel()
    return 6.0 * batch * ((enc - embed) * (keep + 1) + embed * n + dec * n)


class Trainer:
    """One mode's seeded network, AdamW and input; on creation its first step and warm-up run.

    The first step is timed (for ``torch.compile`` it is the compilation) and, in eager fp32,
    its FLOPs are counted (forward + backward; the optimiser step has no matmuls).
    """

    def __init__(self, build: Callable[[], torch.nn.Module], mode: str, device, plan: Plan):
        torch.manual_seed(0)
        self.net = build().to(device).train()
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=1e-4)
        self.model = torch.compile(self.net) if mode.startswith("compile") else self.net
        self.x = make_input(self.net, plan.batch, device)
        self.bf16, self.device = "bf16" in mode, device
        self.flops = None
        if mode == "eager":
            counter = flop_counter_mode()
            with counter:
                self.first = _timed(self.step, device)
            self.flops = counter.get_total_flops()
        else:
            self.first = _timed(self.step, device)
        for _ in range(plan.warmup - 1):
            self.step()

    def step(self) -> None:
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            loss = self.model(self.x)[0]
        loss.backward()
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)


def train_times(trainers: dict[str, Trainer], steps: int) -> dict[str, list[float]]:
    """Seconds of each timed step, the modes interleaved so that load changes hit them alike."""
    times: dict[str, list[float]] = {m: [] for m in trainers}
    for _ in range(steps):
        for mode, trainer in trainers.items():
            times[mode].append(_timed(trainer.step, trainer.device))
    return times


def _num(v: float) -> str:
    """Three significant figures at most, no exponent (0.0531, 2.25, 26.9, 2252)."""
    return f"{v:.0f}" if v >= 100 else f"{v:.1f}" if v >= 10 else f"{v:.3g}"


def embed_rate(build: Callable[[], torch.nn.Module], device: torch.device, plan: Plan) -> float:
    """Seconds per sample of ``net.embed`` (median over the repeats, after a 1-sample warm-up)."""
    torch.manual_seed(0)
    net = build().to(device).eval()
    x = make_input(net, plan.embed_batch, device)
    with torch.inference_mode():
        net.embed(x[:1])
        times = [_timed(lambda: net.embed(x), device) for _ in range(plan.embed_repeats)]
    return statistics.median(times) / plan.embed_batch


def run_case(preset: str, size: int, device: torch.device, args: argparse.Namespace) -> None:
    """Measure and print one preset at one size on one device."""

    def build() -> torch.nn.Module:
        return build_backbone(preset, img_size=size, in_chans=args.channels)

    plan = plan_for(preset, size, device.type, args)
    probe = build()
    n, keep = geometry(probe)
    enc, dec = n_params(probe)
    estimate = flops_estimate(probe, plan.batch)
    unit = "patches" if n != keep else "latent cells"
    stack = f" (a sample is a {probe.frames}-frame stack)" if hasattr(probe, "frames") else ""
    del probe
    print(
        f"\n{preset} at {size}² × {args.channels} channels on {device.type}, batch {plan.batch}, "
        f"{plan.warmup} warm-up + {plan.steps} timed steps (median): {n} {unit}/sample, "
        f"{keep} seen by the encoder; {enc / 1e6:.2f} M encoder + {dec / 1e6:.2f} M decoder "
        f"parameters{stack}"
    )
    trainers: dict[str, Trainer] = {}
    for mode in args.modes:
        try:
            trainers[mode] = Trainer(build, mode, device, plan)
        except Exception as err:  # compilation can fail on a machine without a working toolchain
            if not mode.startswith("compile"):
                raise
            msg = str(err).strip().splitlines()[0] if str(err).strip() else ""
            print(f"  {LABELS[mode]} skipped: {type(err).__name__}: {msg[:200]}")
    times = train_times(trainers, plan.steps)
    flops = trainers["eager"].flops if "eager" in trainers else None
    sec = {m: statistics.median(t) for m, t in times.items()}
    cuda = device.type == "cuda"
    head = f"  {'mode':<13}{'ms/step':>9}{'best ms':>9}{'images/s':>10}{'tokens/s':>10}"
    head += f"{'patches/s':>11}{'GFLOP/s':>9}" + (f"{'MFU':>7}" if cuda else "")
    print(head + f"{'vs eager':>9}{'first step s':>14}")
    for mode, s in sec.items():
        img = plan.batch / s
        line = f"  {LABELS[mode]:<13}{1e3 * s:>9.1f}{1e3 * min(times[mode]):>9.1f}"
        line += f"{_num(img):>10}{_num(img * keep):>10}{_num(img * n):>11}"
        line += f"{_num(flops / s / 1e9):>9}" if flops else f"{'-':>9}"
        if cuda:
            line += f"{flops / s / (args.peak_tflops * 1e12):>7.1%}" if flops else f"{'-':>7}"
        line += f"{sec['eager'] / s:>8.2f}×" if "eager" in sec else f"{'-':>9}"
        note = " (compile)" if mode.startswith("compile") else ""
        print(line + f"{trainers[mode].first:>14.2f}{note}")
    del trainers
    torch._dynamo.reset()
    if flops:
        est = f"; 6·N·tokens estimate {estimate / 1e9:.2f} (no attention)" if estimate else ""
        print(f"  FLOPs counted per training step: {flops / 1e9:.2f} G{est}")
    if sec:
        best = min(sec, key=sec.get)
        vs = f" ({sec['eager'] / sec[best]:.2f}× eager fp32)" if best != "eager" else ""
        vs = vs if "eager" in sec else ""
        print(f"  fastest on {device.type} (median step): {LABELS[best]}{vs}")
    if not args.no_embed:
        s = embed_rate(build, device, plan)
        print(
            f"  embedding (net.embed, inference_mode, batch {plan.embed_batch}): "
            f"{_num(1 / s)} samples/s, {_num(s)} s/sample; SDO-FM reported "
            f"{SDOFM_S_PER_SAMPLE} s/sample: ours is {_num(SDOFM_S_PER_SAMPLE / s)}× that rate"
        )


def _cpu_description() -> str:
    name, flags = platform.processor() or "cpu", set()
    with contextlib.suppress(OSError), open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
                break
    bf16 = sorted(flags & {"avx512_bf16", "amx_bf16", "amx_tile", "avx_vnni"}) or ["none"]
    return f"{name}; bf16/matrix ISA: {', '.join(bf16)}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--presets", nargs="+", choices=sorted(BACKBONES), help="backbone presets")
    ap.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        help="image size per preset, or one for all (default: 64 tiny, 512 others)",
    )
    ap.add_argument("--channels", type=int, default=12)
    ap.add_argument("--modes", nargs="+", choices=MODES, default=["eager", "compile", "bf16"])
    ap.add_argument("--devices", nargs="+", choices=("cpu", "cuda"), help="default: cpu [cuda]")
    ap.add_argument("--batch", type=int, help="training batch (default by case and device)")
    ap.add_argument("--warmup", type=int, help="untimed steps per mode (at least 1)")
    ap.add_argument("--steps", type=int, help="timed steps per mode")
    ap.add_argument(
        "--embed-batch", type=int, help="embedding batch (default 64; 4 for heavy cases on a CPU)"
    )
    ap.add_argument("--no-embed", action="store_true", help="skip embedding extraction")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads")
    ap.add_argument("--peak-tflops", type=float, default=989.0, help="GPU peak bf16 dense")
    ap.add_argument("--quick", action="store_true", help="mae_tiny at 64² only, fewer steps")
    args = ap.parse_args()
    presets = args.presets or (["mae_tiny"] if args.quick else ["mae_tiny", "mae_base"])
    sizes = args.sizes or [64 if p.endswith("_tiny") else 512 for p in presets]
    if len(sizes) == 1:
        sizes = sizes * len(presets)
    if len(sizes) != len(presets):
        ap.error(f"give one size or one per preset; got {len(sizes)} for {len(presets)} presets")
    devices = args.devices or ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])
    if "cuda" in devices and not torch.cuda.is_available():
        ap.error("--devices cuda: no CUDA device is available")
    torch.set_num_threads(args.threads)
    torch._logging.set_logs(dynamo=logging.ERROR)  # the masking's graph break, once per case
    gpu = f"; GPU {torch.cuda.get_device_name()}" if "cuda" in devices else ""
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} CPU threads of {os.cpu_count()}, "
        f"capability {torch.backends.cpu.get_cpu_capability()}; {_cpu_description()}{gpu}"
    )
    print("load average at start: " + " ".join(f"{v:.2f}" for v in os.getloadavg()))
    t0 = time.perf_counter()
    for device in devices:
        for preset, size in zip(presets, sizes, strict=True):
            run_case(preset, size, torch.device(device), args)
    print(
        f"\ntotal {time.perf_counter() - t0:.0f} s; load average at end: "
        + " ".join(f"{v:.2f}" for v in os.getloadavg())
    )


if __name__ == "__main__":
    main()
