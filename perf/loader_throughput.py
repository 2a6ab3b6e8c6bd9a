"""Throughput of the training loader against the raw-read ceiling and a per-channel layout.

Builds ML-ready-like stores (layout of ``sdofm.dataset.build``: ``images`` (time, channel, y, x)
float32, one (1, C, H, W) chunk per sample, ``IMAGE_COMPRESSOR``; plus valid/split/norm_*/
transform, consolidated) at 128² and 512² with 12 channels in a temporary directory, and beside
each the per-channel layout SDO-FM reads (one (N, H, W) array per channel, chunks (1, H, W)).
Then, warm (every pass is preceded by an untimed pass, so the files are in the page cache):

* ours: ``SDOImages`` through a torch ``DataLoader`` (batch 16, workers 0 and 2) as training
  uses it: physical values, normalised on the accelerator after the transfer (not timed here;
  a few element-wise kernels on a GPU);
* ours + CPU normalisation: the same with the normalisation done in the loader (what a CPU-only
  run pays, and the like-for-like comparison with the per-channel pattern);
* ceiling: a sequential single-process read of the same chunks, ``arr[i]`` with zarr and the
  raw chunk bytes Blosc-decoded (the faster of the two is the ceiling); no normalisation;
* per-channel: one zarr read per channel per sample, stacked and normalised (the original
  ``Normaliser``), through the same ``DataLoader`` settings.

Usage: ``python perf/loader_throughput.py [--store DIR] [--sizes 128 512]`` (``--store`` keeps
and reuses the stores in DIR instead of a temporary directory).
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numcodecs
import numpy as np
import torch
import xarray as xr
import zarr
from torch.utils.data import DataLoader, Dataset

from sdofm.dataset.build import IMAGE_COMPRESSOR, transform_for
from sdofm.dataset.loader import Normaliser, SDOImages, collate, open_dataset
from sdofm.training.datamodule import _worker_init

CHANNELS = ["94A", "131A", "171A", "193A", "211A", "304A", "335A", "1600A", "1700A"]
CHANNELS += ["Bx", "By", "Bz"]
SAMPLES = {128: 480, 512: 64}  # ~2 min in all on 2 cores
BATCH = 16


def _frames(size: int, n_distinct: int, rng: np.random.Generator) -> np.ndarray:
    """A few distinct synthetic samples: a limb-brightened disk with noise, HMI signed."""
    c = (size - 1) / 2
    r = 976 / (4.8 * 512 / size)
    yy, xx = np.ogrid[:size, :size]
    rho = np.sqrt((yy - c) ** 2 + (xx - c) ** 2) / r
    disk = np.where(rho <= 1, 1.0, np.exp(-(rho - 1) * 20)).astype(np.float32)
    out = np.empty((n_distinct, len(CHANNELS), size, size), np.float32)
    for k in range(n_distinct):
        for ch, name in enumerate(CHANNELS):
            if name.startswith("B"):
                x = rng.normal(0, 20, (size, size)) * (rho <= 1)
            else:
                x = disk * 100 * (ch + 1) * rng.lognormal(0, 0.3, (size, size))
            out[k, ch] = np.round(x * 8) / 8  # DN-like quantisation, as real data compresses
    return out


def build_store(path: Path, size: int, n: int) -> None:
    """Write an ML-ready-like store at ``path`` and the per-channel layout at ``path``.perch."""
    rng = np.random.default_rng(0)
    frames = _frames(size, 8, rng)
    n_ch = len(CHANNELS)
    group = zarr.open_group(path, mode="w", zarr_format=2)
    images = group.create_array(
        "images",
        shape=(n, n_ch, size, size),
        chunks=(1, n_ch, size, size),
        dtype="float32",
        compressors=IMAGE_COMPRESSOR,
        fill_value=np.nan,
    )
    images.attrs["_ARRAY_DIMENSIONS"] = ["time", "channel", "y", "x"]
    perch = zarr.open_group(path.with_suffix(".perch"), mode="w", zarr_format=2)
    per = [
        perch.create_array(
            name,
            shape=(n, size, size),
            chunks=(1, size, size),
            dtype="float32",
            compressors=IMAGE_COMPRESSOR,
            fill_value=np.nan,
        )
        for name in CHANNELS
    ]
    for i in range(n):
        x = frames[i % len(frames)]
        images[i] = x
        for ch, arr in enumerate(per):
            arr[i] = x[ch]
    transforms = [transform_for(c) for c in CHANNELS]
    from sdofm.dataset.build import apply_transform

    z = apply_transform(frames, transforms)
    xr.Dataset(
        {
            "valid": ("time", np.ones(n, bool)),
            "split": ("time", np.array(["train"] * n)),
            "transform": ("channel", np.array(transforms)),
            "norm_mean": ("channel", z.mean(axis=(0, 2, 3)).astype(np.float32)),
            "norm_std": ("channel", z.std(axis=(0, 2, 3)).astype(np.float32)),
        },
        coords={"time": np.arange(n), "channel": CHANNELS},
    ).to_zarr(path, mode="a", zarr_format=2, consolidated=True)


class PerItem(SDOImages):
    """Our loader without the batched path: ``__getitem__`` per sample, default collate."""

    __getitems__ = None


class PerChannel(Dataset):
    """The per-channel pattern: one zarr read per channel per sample, then normalise."""

    def __init__(self, path: Path, rows: np.ndarray):
        self.path, self.rows = path, rows
        self.norm = Normaliser(open_dataset(path))
        self._arrays: list | None = None

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        if self._arrays is None:
            group = zarr.open_group(self.path.with_suffix(".perch"), mode="r")
            self._arrays = [group[c] for c in CHANNELS]
        row = int(self.rows[i])
        x = np.stack([a[row] for a in self._arrays])
        return torch.from_numpy(self.norm(x)), row


def _rate(run: Callable[[], int], repeats: int = 3) -> float:
    """Best samples/s of ``run`` (returns the samples it read) after an untimed warm pass."""
    run()
    best = 0.0
    for _ in range(repeats):
        t0 = time.perf_counter()
        n = run()
        best = max(best, n / (time.perf_counter() - t0))
    return best


def _loader_rate(data: Dataset, workers: int, ours: bool = True) -> float:
    """Samples/s through a ``DataLoader`` set up as ``SDODataModule`` does (if ``ours``)."""
    loader = DataLoader(
        data,
        batch_size=BATCH,
        num_workers=workers,
        prefetch_factor=2 if workers else None,
        persistent_workers=workers > 0,
        collate_fn=collate if ours else None,
        worker_init_fn=_worker_init if ours and workers else None,
    )

    def run() -> int:
        return sum(len(x) for x, _ in loader)

    return _rate(run)


def bench(path: Path, size: int) -> dict[str, float]:
    """Samples/s of every read pattern on the store at ``path``."""
    rows = np.arange(open_dataset(path).sizes["time"])
    arr = zarr.open_array(path / "images", mode="r")
    codec = numcodecs.get_codec(IMAGE_COMPRESSOR.get_config())
    buf = np.empty(arr.shape[1:], np.float32)
    perch = zarr.open_group(path.with_suffix(".perch"), mode="r")
    per_arrays = [perch[c] for c in CHANNELS]

    def zarr_seq() -> int:
        for i in rows:
            arr[int(i)]
        return len(rows)

    def raw_seq() -> int:
        for i in rows:
            codec.decode((path / "images" / f"{i}.0.0.0").read_bytes(), out=buf)
        return len(rows)

    def perch_seq() -> int:
        for i in rows:
            np.stack([a[int(i)] for a in per_arrays])
        return len(rows)

    out = {"ceiling zarr arr[i]": _rate(zarr_seq), "ceiling raw decode": _rate(raw_seq)}
    out["per-channel raw read"] = _rate(perch_seq)
    for w in (0, 2):
        out[f"ours w{w}"] = _loader_rate(SDOImages(path, rows, normalise=False), w)
        out[f"ours+CPU-norm w{w}"] = _loader_rate(SDOImages(path, rows), w)
        out[f"per-channel w{w}"] = _loader_rate(PerChannel(path, rows), w, ours=False)
        if w == 0:
            per_item = PerItem(path, rows)
            out["ours+CPU-norm per-item"] = _loader_rate(per_item, 0, ours=False)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--store", type=Path, help="keep and reuse the stores in this directory")
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 512])
    args = ap.parse_args()
    root = args.store or Path(tempfile.mkdtemp(prefix="sdofm-loader-"))
    root.mkdir(parents=True, exist_ok=True)
    torch.set_num_threads(1)
    try:
        for size in args.sizes:
            path = root / f"ml_{size}.zarr"
            n = SAMPLES.get(size, 64)
            if not (path / ".zmetadata").exists() or not path.with_suffix(".perch").exists():
                t0 = time.perf_counter()
                build_store(path, size, n)
                print(f"built {path} ({n} samples) in {time.perf_counter() - t0:.1f} s")
            r = bench(path, size)
            ceiling = max(r["ceiling zarr arr[i]"], r["ceiling raw decode"])
            mb = 4 * len(CHANNELS) * size * size / 1e6
            print(f"\n{size}² × {len(CHANNELS)} channels ({mb:.1f} MB/sample), warm page cache")
            print(f"  {'pattern':<24}{'samples/s':>10}{'MB/s':>9}")
            for k, v in r.items():
                print(f"  {k:<24}{v:>10.1f}{v * mb:>9.0f}")
            for w in (0, 2):
                ours, cpu, per = (r[f"{k} w{w}"] for k in ("ours", "ours+CPU-norm", "per-channel"))
                print(
                    f"  workers={w}: ours/ceiling = {ours / ceiling:.2f}, "
                    f"ours/per-channel = {ours / per:.2f}; with CPU normalisation: "
                    f"/ceiling = {cpu / ceiling:.2f}, /per-channel = {cpu / per:.2f}"
                )
    finally:
        if args.store is None:
            shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
