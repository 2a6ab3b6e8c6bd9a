"""The `sdofm` command: every stage is a subcommand; user errors are one line and exit 1."""

import json

import pytest

from sdofm.cli import main
from tests.conftest import ROOT


def test_every_stage_has_a_subcommand(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    text = capsys.readouterr().out
    for command in ("simulate", "pull", "build", "pretrain", "embed", "benchmark", "report"):
        assert command in text


def test_pull_from_a_missing_store_is_one_line(tmp_path, capsys):
    code = main(
        [
            "pull",
            "--config",
            str(ROOT / "config" / "config.yaml"),
            "--source",
            f"file://{tmp_path}/missing",
            "--out",
            str(tmp_path / "out"),
        ]
    )
    err = capsys.readouterr().err.strip()
    assert code == 1
    assert err.startswith("sdofm pull: error: no SDOML v2 store at")
    assert "\n" not in err
    assert not (tmp_path / "out").exists()


def test_params_as_json_and_bad_params(tmp_path, capsys):
    assert main(["build", "--params", "not-a-file", "--sdoml", "x", "--out", "y"]) == 1
    assert "neither JSON nor an existing file" in capsys.readouterr().err
    settings = {
        "seed": 1,
        "start": "2011-01-01",
        "end": "2011-01-03",
        "cadence_minutes": 720,
        "eve_cadence_minutes": 60,
        "image_size": 16,
        "regions_per_day": 0.2,
        "megsa_end": "2014-05-26",
    }
    out = tmp_path / "mirror"
    assert main(["simulate", "--params", json.dumps(settings), "--out", str(out)]) == 0
    assert (out / "sdomlv2_small.zarr" / "2011" / "171A" / ".zarray").exists()


def test_unknown_benchmark_task(tmp_path, capsys):
    code = main(
        [
            "benchmark",
            "nope",
            "--params",
            "{}",
            "--dataset",
            "d",
            "--embeddings",
            "e",
            "--checkpoint",
            "c",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 1
    assert "unknown benchmark task 'nope'" in capsys.readouterr().err


def test_ingest_the_real_sunpy_aia_file(tmp_path, capsys):
    from sunpy.data.test import get_test_filepath

    from sdofm.sources.sdoml import frame_times, open_store

    out = tmp_path / "aia.zarr"
    code = main(
        [
            "ingest",
            str(get_test_filepath("aia_171_level1.fits")),
            "--out",
            str(out),
            "--image-size",
            "64",
        ]
    )
    assert code == 0, capsys.readouterr().err
    frames = open_store(str(out))["2011/171A"]
    assert frames.shape == (1, 64, 64)
    assert str(frame_times(frames)[0]) == "2011-02-15 00:00:01.340000"
    assert frames.attrs["R_SUN"][0] * frames.attrs["CDELT1"][0] == pytest.approx(
        frames.attrs["RSUN_OBS"][0]
    )
