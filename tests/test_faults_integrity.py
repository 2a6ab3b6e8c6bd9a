"""Fault injection on the stored data: deleted, truncated and corrupt chunks, a full disk.

Each fault must end in one line naming the store, the chunk and its time, never in a blank
frame, a codec's anonymous error, a segfault or a traceback whose last line hides the cause.
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest
import torch
import xarray as xr
import zarr

from sdofm import SdofmError
from sdofm.cli import main
from sdofm.dataset.loader import SDOImages, open_dataset


@pytest.fixture
def copy(dataset, tmp_path):
    """A private copy of the built store, and a valid training row of it with its time."""
    out = tmp_path / "dataset.zarr"
    shutil.copytree(dataset, out)
    ds = xr.open_zarr(out, consolidated=True)
    row = int(np.flatnonzero(ds.valid.values & (ds.split.values == "train"))[3])
    time = np.datetime_as_string(ds.time.values[row], unit="s")
    return out, row, time


def _last_line(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


def _params(tiny_config) -> str:
    return json.dumps({"data": tiny_config["data"], "splits": tiny_config["splits"]})


def test_missing_chunk_is_refused_at_open_naming_it(copy, capsys):
    path, row, time = copy
    (path / "images" / f"{row}.0.0.0").unlink()
    assert main(["verify", str(path)]) == 1
    line = _last_line(capsys)
    assert line.startswith("sdofm verify: error:")
    assert str(path) in line and f"images/{row}.0.0.0" in line and time in line
    with pytest.raises(SdofmError, match=f"images/{row}.0.0.0 \\(time {time}\\) is missing"):
        SDOImages.split(path, "train")


def test_chunk_lost_after_open_is_an_error_not_a_blank_frame(copy):
    """Every read path (the loader's items and batches, xarray as the benchmarks read) fails."""
    path, row, time = copy
    data = SDOImages.split(path, "train")
    ds = open_dataset(path)
    i = int(np.flatnonzero(data.rows == row)[0])
    assert torch.isfinite(data[i][0]).all()  # readable before
    (path / "images" / f"{row}.0.0.0").unlink()
    named = f"{path}: chunk images/{row}.0.0.0 \\(time {time}\\) is missing"
    with pytest.raises(SdofmError, match=named):
        data[i]
    with pytest.raises(SdofmError, match=named):
        data.__getitems__([0, i])
    with pytest.raises(SdofmError, match=named):
        ds.images.isel(time=[row - 1, row]).load()


def test_truncated_chunk_is_named_not_a_blosc_error(copy, capsys):
    path, row, time = copy
    chunk = path / "images" / f"{row}.0.0.0"
    data = SDOImages.split(path, "train")
    i = int(np.flatnonzero(data.rows == row)[0])
    chunk.write_bytes(chunk.read_bytes()[:100])
    with pytest.raises(SdofmError, match=f"images/{row}.0.0.0 \\(time {time}\\) has 100 bytes"):
        data[i]  # opened before the damage: caught at the read
    assert main(["verify", str(path)]) == 1  # and at the next open
    assert f"images/{row}.0.0.0 (time {time}) has 100 bytes" in _last_line(capsys)


def test_truncated_chunk_without_manifest_is_named(tmp_path):
    """A store with no manifest: the Blosc header's own size gives the truncation away."""
    from sdofm.dataset.build import IMAGE_COMPRESSOR
    from sdofm.dataset.integrity import open_checked

    arr = zarr.open_group(tmp_path / "s.zarr", mode="w", zarr_format=2).create_array(
        "images", shape=(4, 2, 8, 8), chunks=(1, 2, 8, 8), dtype="f4", compressors=IMAGE_COMPRESSOR
    )
    arr[:] = np.random.default_rng(0).normal(size=arr.shape).astype("f4")
    chunk = tmp_path / "s.zarr" / "images" / "2.0.0.0"
    chunk.write_bytes(chunk.read_bytes()[:40])
    store = open_checked(tmp_path / "s.zarr")
    checked = zarr.open_array(store=store, path="images", mode="r")
    store.watch(checked, ["t0", "t1", "t2", "t3"])
    with pytest.raises(SdofmError, match=r"chunk images/2.0.0.0 \(time t2\) is truncated \(40 of"):
        checked[2]
    np.testing.assert_array_equal(checked[1], arr[1])


def test_corrupt_chunk_is_named_by_the_loader_and_verify(copy, capsys):
    """Same size, garbage payload: the codec fails (named) or `verify` sees the CRC differ."""
    path, row, time = copy
    chunk = path / "images" / f"{row}.0.0.0"
    raw = bytearray(chunk.read_bytes())
    raw[16:] = b"\xff" * (len(raw) - 16)  # keep the Blosc header, destroy the lz4 stream
    chunk.write_bytes(bytes(raw))
    data = SDOImages.split(path, "train")  # presence and size are right: opens
    i = int(np.flatnonzero(data.rows == row)[0])
    with pytest.raises(SdofmError, match=f"images/{row}.* \\(time {time}\\) cannot be decoded"):
        data[i]
    assert main(["verify", str(path)]) == 1
    assert f"images/{row}.0.0.0 (time {time}) does not match the CRC-32" in _last_line(capsys)
    capsys.readouterr()


def test_verify_passes_a_sound_store(dataset, capsys):
    assert main(["verify", str(dataset)]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["manifest"] and summary["chunks"] == int(open_dataset(dataset).valid.sum())


def test_truncated_chunk_in_pulled_store_fails_the_build_in_one_line(pulled, tiny_config, tmp_path):
    """Was a segfault (exit 139, empty log): now exit 1, one line with the chunk and its frames."""
    sdoml = tmp_path / "sdoml"
    shutil.copytree(pulled, sdoml)
    chunk = sdoml / "aia.zarr" / "2011" / "171A" / "1.0.0"
    raw = chunk.read_bytes()
    chunk.write_bytes(raw[: len(raw) // 2])  # numcodecs' Blosc reads past the end: SIGSEGV
    tobs = zarr.open_array(sdoml / "aia.zarr" / "2011" / "171A", mode="r").attrs["T_OBS"]
    out = tmp_path / "part.zarr"
    args = ["build", "--sdoml", str(sdoml), "--out", str(out), "--period", "2011-01"]
    run = subprocess.run(
        [sys.executable, "-m", "sdofm.cli", *args, "--params", _params(tiny_config)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert run.returncode == 1, run.stderr[-2000:]
    line = run.stderr.strip().splitlines()[-1]
    assert line.startswith("sdofm build: error:") and "aia.zarr" in line
    assert "chunk 2011/171A/1.0.0" in line and f"{tobs[15]} to {tobs[29]}" in line
    assert not out.exists() and not list(tmp_path.glob("part.partial*"))


def _full_disk(monkeypatch, after: int = 0) -> None:
    """Every zarr file write after the first ``after`` fails as on a full disk (no path)."""
    import zarr.storage._local as local

    real, calls = local._put, []

    def put(path, value, exclusive=False):
        calls.append(path)
        if len(calls) > after:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(path, value, exclusive=exclusive)

    monkeypatch.setattr(local, "_put", put)


def test_full_disk_in_build_ends_with_one_line_naming_the_path(
    pulled, tiny_config, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "part.zarr"
    _full_disk(monkeypatch, after=5)
    args = ["build", "--sdoml", str(pulled), "--out", str(out), "--period", "2011-02"]
    assert main([*args, "--params", _params(tiny_config)]) == 1
    line = _last_line(capsys)
    assert line == f"sdofm build: error: cannot write {out}: No space left on device; " + (
        "free space and rerun"
    )
    assert not out.exists() and not list(tmp_path.glob("part.partial*"))


@pytest.fixture(scope="module")
def parts(pulled, tiny_config, tmp_path_factory) -> list[str]:
    """The three monthly partitions of the tiny build, through the CLI."""
    root = tmp_path_factory.mktemp("parts")
    out = []
    for period in ("2011-01", "2011-02", "2011-03"):
        out.append(str(root / f"{period}.zarr"))
        args = ["build", "--sdoml", str(pulled), "--out", out[-1], "--period", period]
        assert main([*args, "--params", _params(tiny_config)]) == 0
    return out


def test_full_disk_in_merge_ends_with_one_line_naming_the_path(
    parts, tiny_config, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "dataset.zarr"
    _full_disk(monkeypatch, after=2)
    assert main(["merge", *parts, "--out", str(out), "--params", _params(tiny_config)]) == 1
    assert f"cannot write {out}: No space left on device" in _last_line(capsys)
    assert not out.exists() and not list(tmp_path.glob("dataset.partial*"))


def test_merge_refuses_a_partition_missing_a_valid_rows_chunk(parts, tiny_config, tmp_path, capsys):
    """Was skipped silently (the merged row read as NaN, then 0): now one line at the merge."""
    copies = [tmp_path / os.path.basename(p) for p in parts]  # the merge orders by path
    for src, dst in zip(parts, copies, strict=True):
        shutil.copytree(src, dst)
    damaged = copies[1]
    ds = xr.open_zarr(damaged, consolidated=True)
    row = int(np.flatnonzero(ds.valid.values)[5])
    time = np.datetime_as_string(ds.time.values[row], unit="s")
    (damaged / "images" / f"{row}.0.0.0").unlink()
    out = tmp_path / "dataset.zarr"
    args = ["merge", *map(str, copies), "--out", str(out)]
    assert main([*args, "--params", _params(tiny_config)]) == 1
    line = _last_line(capsys)
    assert f"{damaged}/images/{row}.0.0.0 (time {time}, a valid row) is missing" in line
    assert not out.exists()


def test_embed_stops_on_a_missing_chunk_before_any_compute(copy, checkpoint, tiny_config, capsys):
    """The embed job of a finished run whose store lost a chunk: one line, no output."""
    path, row, time = copy
    (path / "images" / f"{row}.0.0.0").unlink()
    out = path.with_name("emb.zarr")
    params = json.dumps(tiny_config["embed"])
    args = ["embed", "--dataset", str(path), "--checkpoint", str(checkpoint), "--out", str(out)]
    assert main([*args, "--params", params]) == 1
    line = _last_line(capsys)
    assert line.startswith("sdofm embed: error:") and f"images/{row}.0.0.0 (time {time})" in line
    assert not out.exists()
