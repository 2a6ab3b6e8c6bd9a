"""The `sdofm` command: every stage is a subcommand; user errors are one line and exit 1."""

import argparse
import json

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from sdofm import __version__
from sdofm.cli import _parser, main
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
    assert main(["build", "--params", "not-a-file", "--sdoml", str(tmp_path), "--out", "y"]) == 1
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


def test_benchmark_lists_the_registered_tasks(tmp_path, capsys):
    from sdofm.benchmarks import TASKS

    args = ["--params", "{}", "--dataset", "d", "--embeddings", "e", "--checkpoint", "c"]
    with pytest.raises(SystemExit) as exit_:
        main(["benchmark", "nope", *args, "--out", str(tmp_path)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'nope'" in err
    for task in TASKS:
        assert task in err
    choices = next(a for a in _subparser("benchmark")._actions if a.dest == "task").choices
    assert sorted(choices) == sorted(TASKS)


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in _parser()._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def _subparser(name: str) -> argparse.ArgumentParser:
    return _subparsers()[name]


def test_every_option_has_help():
    undocumented = [
        f"{name} {action.option_strings or action.dest}"
        for name, parser in {"sdofm": _parser(), **_subparsers()}.items()
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction)
        and (not action.help or action.help == argparse.SUPPRESS)
    ]
    assert undocumented == []


def test_version(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["--version"])
    assert exit_.value.code == 0
    assert capsys.readouterr().out.strip() == f"sdofm {__version__}"


@pytest.mark.parametrize(
    ("argv", "threads"),
    [
        (["--threads", "3", "pretrain"], 3),
        (["pretrain", "--threads", "4"], 4),
        (["--threads", "3", "pretrain", "--threads", "4"], 4),
        (["pretrain"], None),
    ],
)
def test_global_options_before_or_after_the_subcommand(argv, threads):
    args = _parser().parse_args([*argv, "--dataset", "d.zarr", "--out", "m.ckpt"])
    assert args.threads == threads


def test_threads_limit_numpys_blas_too(tmp_path):
    """``--threads 1`` holds numpy's BLAS to one thread: a second, spinning thread per job made
    the ridge fits of the benchmarks ten times slower on a busy 2-core machine."""
    from threadpoolctl import threadpool_info, threadpool_limits

    with threadpool_limits(limits=2):  # restored on exit, for the other tests
        main(
            [
                "--threads",
                "1",
                "similar",
                "--embeddings",
                str(tmp_path / "no.zarr"),
                "--time",
                "2011-01-01",
            ]
        )
        blas = [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]
    assert blas and set(blas) == {1}


@pytest.mark.parametrize(
    ("argv", "option"),
    [
        (["similar", "--time", "2011-01-01"], "--embeddings"),
        (["map", "--dataset", "{tmp}", "--png", "m.png", "--csv", "m.csv"], "--embeddings"),
        (["pretrain", "--params", "{{}}", "--out", "m.ckpt"], "--dataset"),
        (["report", "--executed", "r.ipynb", "--html", "r.html"], "--notebook"),
    ],
)
def test_a_missing_input_path_is_one_line(tmp_path, capsys, argv, option):
    missing = str(tmp_path / "nope.zarr")
    argv = [a.format(tmp=tmp_path) for a in argv]
    assert main([*argv, option, missing]) == 1
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"error: {option}: {missing} does not exist")
    assert "\n" not in err


def test_similar_prints_labelled_columns_and_its_summary_on_stderr(tmp_path, capsys):
    times = pd.date_range("2011-01-01", periods=12, freq="12h")
    rng = np.random.default_rng(0)
    xr.Dataset(
        {
            "embedding": (("time", "feature"), rng.normal(size=(12, 4)).astype("f4")),
            "split": ("time", np.array(["train"] * 8 + ["test"] * 4)),
        },
        coords={"time": times},
    ).to_zarr(tmp_path / "e.zarr", consolidated=True, zarr_format=2)
    argv = ["similar", "--embeddings", str(tmp_path / "e.zarr"), "--time", "2011-01-03", "-k", "3"]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].split() == ["time", "(UTC)", "cosine_distance", "split"]
    assert len(lines) == 4
    for line in lines[1:]:
        stamp, distance, split = line.split()
        pd.Timestamp(stamp), float(distance)
        assert split in ("train", "test")
    assert json.loads(err.strip().splitlines()[-1])["found"] == 3


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
