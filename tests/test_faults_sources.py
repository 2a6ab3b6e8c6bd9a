"""Faults at the data sources: planted credentials, outages mid-pull, HMI's TAI slots, full disks.

Each test injects one fault and checks that nothing leaks, nothing is lost and nothing wrong is
accepted silently (issue 18, findings 3, 4, 7 and the pull's side of 9).
"""

from __future__ import annotations

import asyncio
import base64
import copy
import errno
import gc
import json
import os
import subprocess
import threading
import time
from pathlib import Path

import aiohttp
import numpy as np
import pandas as pd
import pytest
import yaml
import zarr
from multidict import CIMultiDict, CIMultiDictProxy
from yarl import URL

from sdofm import SdofmError
from sdofm.cli import main
from sdofm.config import validate_config
from sdofm.dataset.build import match_times, partitions, pull_windows
from sdofm.sources.credentials import redact_library_logs, redact_url
from sdofm.sources.sdoml import frame_times, parse_tobs, pull_store
from tests.conftest import ROOT, snakemake_command
from tests.test_sdoml_resume import CHUNK, _Flaky, serving

T = pd.Timestamp
SECRET = "pl4nted-S3cret-7f3a9"  # the password a test plants; nothing written may hold it
USER = "heliophysicist"
TOKEN = base64.b64encode(f"{USER}:{SECRET}".encode()).decode()
IMAGE_STORES = {"aia": "sdomlv2_small.zarr", "hmi": "sdomlv2_hmi.zarr"}


# --------------------------------------------------------------------------------------------
# A mirror behind basic auth that can go down


class _Guarded(_Flaky):
    """The flaky mirror (chunk requests after the ``fail_after``-th fail with 503, an outage)
    behind basic auth: only requests with the planted token are served."""

    refused = 0

    def do_GET(self):
        if self.headers.get("Authorization") != f"Basic {TOKEN}":
            with type(self).lock:
                type(self).refused += 1
            self.send_error(401, "who are you")
            return
        super().do_GET()


@pytest.fixture
def guarded(synthetic_mirror):
    with serving(_Guarded, synthetic_mirror) as served:
        yield served


def _files_holding(root: Path, *needles: str) -> list[str]:
    """Every file under ``root`` whose bytes hold one of ``needles``."""
    hits = []
    for path in root.rglob("*"):
        if path.is_file() and not path.is_symlink():
            data = path.read_bytes()
            hits += [f"{path}: {n}" for n in needles if n.encode() in data]
    return hits


# --------------------------------------------------------------------------------------------
# Finding 3: credentials


@pytest.mark.parametrize(
    "options",
    [
        {"key": "AKIAEXAMPLE", "secret": SECRET},
        {"anon": False, "client_kwargs": {"aws_secret_access_key": SECRET}},
        {"client_kwargs": {"headers": {"Authorization": f"Basic {TOKEN}"}}},
        {"token": SECRET},
        {"password": SECRET},
        {"endpoint_url": f"https://{USER}:{SECRET}@minio.example.org"},
    ],
)
def test_config_refuses_credentials_with_one_line(tiny_config, options):
    config = copy.deepcopy(tiny_config)
    config["sources"]["storage_options"] = options
    with pytest.raises(SdofmError) as err:
        validate_config(config)
    text = str(err.value)
    assert "\n" not in text and "sources.storage_options." in text
    assert "FSSPEC_" in text and "environment" in text  # where they belong instead
    assert SECRET not in text and TOKEN not in text


def test_config_refuses_a_url_with_a_password_but_keeps_public_options(tiny_config):
    config = copy.deepcopy(tiny_config)
    config["sources"]["sdoml"] = f"https://{USER}:{SECRET}@example.org/sdoml/"
    with pytest.raises(SdofmError, match="sources.sdoml") as err:
        validate_config(config)
    assert SECRET not in str(err.value)
    config["sources"]["sdoml"] = "s3://gov-nasa-hdrl-data1/contrib/fdl-sdoml/fdl-sdoml-v2/"
    public = {"anon": True, "requester_pays": False, "endpoint_url": "https://s3.example.org"}
    config["sources"]["storage_options"] = dict(public, token="anon")
    assert validate_config(config)["sources"]["storage_options"]["anon"] is True


def test_credentials_in_a_url_are_used_but_never_written(guarded, tmp_path):
    """A URL carrying user:password reaches the server, but the pulled store (its provenance
    attrs, its progress file while partial) and every error message hold no trace of it."""
    handler, port = guarded
    url = f"http://{USER}:{SECRET}@127.0.0.1:{port}/{IMAGE_STORES['aia']}"
    kw = dict(kind="aia", start=T("2011-01-05"), end=T("2011-01-08"), names=["171A"])
    assert pull_store(url, tmp_path / "aia.zarr", **kw) == {"171A": 6}
    assert handler.refused == 0  # the credentials were sent
    source = zarr.open_group(tmp_path / "aia.zarr", mode="r").attrs["sdofm_source"]
    assert source == f"http://***@127.0.0.1:{port}/{IMAGE_STORES['aia']}"
    # An outage after the first block of a longer pull: the error and the partial kept for the
    # re-run hold no password either.
    handler.fail_after = handler.chunk_requests + 4  # the first block: 60 frames, 4 chunks
    with pytest.raises(SdofmError) as err:
        pull_store(
            url,
            tmp_path / "again.zarr",
            **kw | {"start": T("2011-01-01"), "end": T("2011-02-15")},
            retries=0,
        )
    assert SECRET not in str(err.value) and USER not in str(err.value)
    assert (tmp_path / "again.partial.zarr" / ".sdofm_pull.json").exists()
    assert _files_holding(tmp_path, SECRET, USER) == []


def test_an_unawaited_request_error_logs_no_credentials(caplog):
    """What leaked in a workflow run: zarr reads chunks concurrently, and when one read fails
    the others' errors are logged by asyncio ("Task exception was never retrieved") as their
    repr, the request's headers and so the Authorization from FSSPEC_HTTP included."""
    url = URL("http://127.0.0.1:1/sdomlv2_small.zarr/2011/171A/0.0.0")
    headers = CIMultiDictProxy(CIMultiDict({"Authorization": f"Basic {TOKEN}"}))
    info = aiohttp.RequestInfo(url, "GET", headers, url)

    async def read():
        raise aiohttp.ClientResponseError(info, (), status=503, message="try again")

    async def reads():
        task = asyncio.ensure_future(read())
        await asyncio.sleep(0.01)  # failed, never awaited
        del task
        gc.collect()

    redact_library_logs()
    asyncio.run(reads())
    assert "Task exception was never retrieved" in caplog.text
    assert "'Authorization': '***'" in caplog.text and "503" in caplog.text
    assert TOKEN not in caplog.text and SECRET not in caplog.text


def test_redact_url_leaves_plain_urls_alone():
    plain = "s3://bucket/key@v2 http://127.0.0.1:8000/a file:///data/x"
    assert redact_url(plain) == plain
    assert redact_url(f"at https://{USER}:{SECRET}@h/p.") == "at https://***@h/p."


# --------------------------------------------------------------------------------------------
# Finding 7: nearest-frame thinning, HMI's TAI slots


def _hmi_store(path: Path, first: str, last: str) -> pd.DatetimeIndex:
    """An SDOML v2 HMI store of 4×4 Bz frames on HMI's 720 s TAI slots (``*_HH:MM:00_TAI``,
    34 s before the UTC minute in 2011), grouped by the year of their TAI label; each frame's
    pixels hold its position in time so a copy can be traced. Returns the frames' UTC times."""
    labels = pd.date_range(first, last, freq="12min")  # the TAI labels
    root = zarr.open_group(path, mode="w", zarr_format=2)
    utc = []
    for year in sorted(set(labels.year)):
        sel = labels[labels.year == year]
        t_obs = [f"{t:%Y.%m.%d_%H:%M:%S}_TAI" for t in sel]
        offset = int(np.flatnonzero(labels.year == year)[0])
        arr = root.require_group(str(year)).create_array(
            "Bz", shape=(len(sel), 4, 4), chunks=(15, 4, 4), dtype="float32"
        )
        arr[:] = np.broadcast_to(
            (offset + np.arange(len(sel), dtype="float32"))[:, None, None], arr.shape
        )
        arr.update_attributes({"T_OBS": t_obs})
        utc.append(frame_times(arr))
    return utc[0].append(utc[1:]) if len(utc) > 1 else utc[0]


def _pulled_frames(path: Path) -> tuple[pd.DatetimeIndex, list[float], np.ndarray]:
    group = zarr.open_group(path, mode="r")
    arrays = [group[y]["Bz"] for y in sorted(group.group_keys())]
    times = [frame_times(a) for a in arrays]
    offsets = [o for a in arrays for o in a.attrs.get("sdofm_step_offset_s", [])]
    values = np.concatenate([a[:, 0, 0] for a in arrays])
    return times[0].append(times[1:]) if len(times) > 1 else times[0], offsets, values


def test_thinning_keeps_hmi_frames_on_tai_slots_before_the_utc_hour(tmp_path):
    """Every hourly step of a day has its HMI record 34 s before it (TAI slot 00:00:00 is
    23:59:26 UTC, in the next year's group at New Year): all 24 are kept, with their offsets."""
    utc = _hmi_store(tmp_path / "hmi_src.zarr", "2010-12-31T12:00", "2011-01-02T12:00")
    counts = pull_store(
        str(tmp_path / "hmi_src.zarr"),
        tmp_path / "hmi.zarr",
        kind="hmi",
        start=T("2011-01-01"),
        end=T("2011-01-02"),
        names=["Bz"],
        cadence=pd.Timedelta(hours=1),
        tolerance=pd.Timedelta(minutes=6),
    )
    steps = pd.date_range("2011-01-01", "2011-01-02", freq="h", inclusive="left")
    times, offsets, values = _pulled_frames(tmp_path / "hmi.zarr")
    assert counts == {"Bz": 24}
    assert (match_times(steps, times, pd.Timedelta(minutes=6)) >= 0).sum() == 24
    assert list(times) == list(steps - pd.Timedelta(seconds=34))
    assert offsets == [-34.0] * 24
    np.testing.assert_array_equal(values, utc.get_indexer(times))  # the very frames
    assert times[0] == T("2010-12-31T23:59:26")  # the 2011 group's first slot


def _thinned(tmp_path, stamps: list, steps: pd.DatetimeIndex) -> zarr.Array:
    """A 171A array with frames at ``stamps`` (value = position), pulled at the 2 h cadence
    of ``steps`` within 6 min."""
    root = zarr.open_group(tmp_path / "aia_src.zarr", mode="w", zarr_format=2)
    arr = root.require_group("2011").create_array(
        "171A", shape=(len(stamps), 2, 2), chunks=(1, 2, 2), dtype="float32"
    )
    arr[:] = np.arange(len(stamps), dtype="float32")[:, None, None] * np.ones((2, 2))
    arr.update_attributes({"T_OBS": [f"{t:%Y-%m-%dT%H:%M:%S.%f}"[:-4] + "Z" for t in stamps]})
    pull_store(
        str(tmp_path / "aia_src.zarr"),
        tmp_path / "aia.zarr",
        kind="aia",
        start=steps[0],
        end=steps[-1] + pd.Timedelta(hours=2),
        names=["171A"],
        cadence=pd.Timedelta(hours=2),
        tolerance=pd.Timedelta(minutes=6),
    )
    return zarr.open_group(tmp_path / "aia.zarr", mode="r")["2011/171A"]


def test_thinning_takes_the_nearest_frame_before_or_after(tmp_path):
    """Around each step one frame 34 s before and one 7 s after (and one 50 s after a step
    with nothing before): the nearest is kept, never one beyond the tolerance."""
    steps = pd.date_range("2011-03-01", periods=6, freq="2h")
    stamps = [t + pd.Timedelta(seconds=s) for t in steps[:4] for s in (-34, 7)]
    stamps += [steps[4] + pd.Timedelta(seconds=50), steps[5] + pd.Timedelta(minutes=7)]
    dst = _thinned(tmp_path, stamps, steps)
    assert dst[:, 0, 0].tolist() == [1, 3, 5, 7, 8]  # +7 s four times, then +50 s; not +7 min
    assert dst.attrs["sdofm_step_offset_s"] == [7.0, 7.0, 7.0, 7.0, 50.0]
    assert pd.DatetimeIndex(dst.attrs["sdofm_step"]).equals(steps[:5])


def test_thinning_passes_duplicate_timestamps_on_to_the_build_qc(tmp_path):
    """A frame repeating the kept frame's timestamp is copied after it, for the same step (the
    build's QC quarantines and records it: tests/test_faults_qc.py), not dropped unseen."""
    steps = pd.date_range("2011-03-01", periods=3, freq="2h")
    dst = _thinned(tmp_path, [steps[0], steps[1], steps[1], steps[2]], steps)
    assert dst[:, 0, 0].tolist() == [0, 1, 2, 3]  # the repeat right after the first of its time
    assert dst.attrs["sdofm_step"][1:3] == [f"{steps[1]:%Y-%m-%dT%H:%M:%S}"] * 2
    assert parse_tobs(dst.attrs["T_OBS"]).duplicated().sum() == 1


def test_monthly_pulls_of_tai_slots_add_up_to_the_whole_pull(tmp_path):
    """Each month's share (`pull_windows`) holds exactly the frames of the whole pull inside its
    window, including the slot 34 s before the month's first step; together they hold all."""
    _hmi_store(tmp_path / "src.zarr", "2010-12-30", "2011-03-02")
    data = {
        "start": "2011-01-01",
        "end": "2011-03-01",
        "cadence_minutes": 720,
        "tolerance_minutes": 6,
        "eve_tolerance_minutes": 30,
        "partition_months": 1,
    }
    kw = dict(
        kind="hmi",
        start=T(data["start"]),
        end=T(data["end"]),
        names=["Bz"],
        cadence=pd.Timedelta(minutes=720),
        tolerance=pd.Timedelta(minutes=6),
    )
    pull_store(str(tmp_path / "src.zarr"), tmp_path / "whole.zarr", **kw)
    whole = _pulled_frames(tmp_path / "whole.zarr")
    assert len(whole[0]) == 2 * 59 and set(whole[1]) == {-34.0}
    covered = np.zeros(len(whole[0]), bool)
    for period in partitions(data):
        lo, hi = pull_windows(data, period)["images"]
        pull_store(str(tmp_path / "src.zarr"), tmp_path / f"{period}.zarr", **kw, window=(lo, hi))
        times, offsets, values = _pulled_frames(tmp_path / f"{period}.zarr")
        mine = (whole[0] >= lo) & (whole[0] < hi)
        assert times.equals(whole[0][mine]) and times[0] < T(f"{period}-01")
        assert offsets == list(np.asarray(whole[1])[mine])
        np.testing.assert_array_equal(values, whole[2][mine])
        covered |= mine
    assert covered.all()


# --------------------------------------------------------------------------------------------
# Finding 4 (function and CLI level; the workflow level is the test at the end)


def _pull_args(tiny_config, out, **sources):
    params = {
        "sources": {**tiny_config["sources"], "retries": 0, **sources},
        "data": tiny_config["data"],
    }
    return ["pull", "--params", json.dumps(params), "--period", "2011-01", "--out", str(out)]


def test_an_interrupted_period_pull_resumes_where_it_stopped(guarded, tiny_config, tmp_path):
    """`sdofm pull` of one month, cut off by an outage, then run again: the second run fetches
    only the chunks the first did not copy (the partial lives beside the output)."""
    handler, port = guarded
    url = f"http://{USER}:{SECRET}@127.0.0.1:{port}/"
    assert main(_pull_args(tiny_config, tmp_path / "ref", sdoml=url)) == 0
    total = handler.chunk_requests
    handler.chunk_requests, handler.fail_after = 0, total // 2
    out = tmp_path / "2011-01"
    assert main(_pull_args(tiny_config, out, sdoml=url)) == 1
    assert not out.exists() and (tmp_path / "2011-01.partial").is_dir()
    handler.chunk_requests, handler.fail_after = 0, None
    assert main(_pull_args(tiny_config, out, sdoml=url)) == 0
    assert 0 < handler.chunk_requests <= total - total // 2 + 3  # + a block cut mid-way
    assert not (tmp_path / "2011-01.partial").exists()
    for kind in ("aia", "hmi", "eve"):
        ref = zarr.open_group(tmp_path / "ref" / f"{kind}.zarr", mode="r")
        got = zarr.open_group(out / f"{kind}.zarr", mode="r")
        for name, arr in ref.arrays():
            np.testing.assert_array_equal(got[name][:], arr[:])
        for year, group in ref.groups():
            for name, arr in group.arrays():
                np.testing.assert_array_equal(got[year][name][:], arr[:])
                assert got[year][name].attrs.asdict() == arr.attrs.asdict()
    assert _files_holding(tmp_path, SECRET) == []


# --------------------------------------------------------------------------------------------
# Finding 9 (the pull's side): a full disk


def test_a_full_disk_is_one_line_and_no_write_lands_after_it(
    synthetic_mirror, tmp_path, monkeypatch
):
    """One chunk write fails with ENOSPC while the others of its block are still being written
    by zarr's I/O threads: the error is one line naming the path, and it is raised only once
    those writes are over, so nothing appears on disk after it (a cleanup would not race)."""
    import zarr.storage._local as local

    real_put = local._put

    def put(path, value, exclusive=False):
        if CHUNK.search(str(path)) and path.parent.name == "171A":
            if path.name == "1.0.0":
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            time.sleep(0.5)  # a slow disk: this write lands after the failure
        return real_put(path, value, exclusive)

    monkeypatch.setattr(local, "_put", put)
    out = tmp_path / "aia.zarr"
    with pytest.raises(SdofmError) as err:
        pull_store(
            f"file://{synthetic_mirror / IMAGE_STORES['aia']}",
            out,
            kind="aia",
            start=T("2011-01-01"),
            end=T("2011-02-01"),
            names=["171A"],
        )
    text = str(err.value)
    assert "\n" not in text and "no space left on device" in text
    assert str(tmp_path / "aia.partial.zarr") in text
    before = sorted(p for p in tmp_path.rglob("*"))
    time.sleep(1.0)
    assert sorted(p for p in tmp_path.rglob("*")) == before
    assert (tmp_path / "aia.partial.zarr" / "2011" / "171A" / "0.0.0").exists()


# --------------------------------------------------------------------------------------------
# The workflow: a pull through Snakemake with a planted secret and an outage


def _watch_cmdlines(stop: threading.Event, seen: list[str]) -> None:
    """Sample every process's command line (what `ps` shows every user) until ``stop``."""
    while not stop.is_set():
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                seen.append(proc.joinpath("cmdline").read_bytes().replace(b"\0", b" ").decode())
            except OSError:
                continue
        stop.wait(0.05)


@pytest.mark.workflow
def test_pull_rule_resumes_and_leaks_no_secret(guarded, synthetic_mirror, tiny_config, tmp_path):
    """The `pull_sdoml` rule on a mirror behind basic auth whose credentials are in the
    environment (fsspec's FSSPEC_HTTP): an outage stops the first run; the re-run fetches only
    what is missing; no command line, log, .snakemake file or output holds the secret."""
    handler, port = guarded
    base = yaml.safe_load((ROOT / "tests" / "configs" / "tiny.yaml").read_text())
    base["sources"] = {
        "sdoml": f"http://127.0.0.1:{port}/",
        "storage_options": {"anon": True},
        "retries": 0,
        "events": {
            "flares": str(synthetic_mirror / "flares.csv"),
            "f107": str(synthetic_mirror / "f107.csv"),
        },
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(base))
    work = tmp_path / "run"
    target = "results/data/sdoml/2011-01"
    cmd, env = snakemake_command(
        work, "-s", str(ROOT / "workflow" / "Snakefile"), "--cores", "1", "--printshellcmds"
    )
    config = ["--configfile", str(tmp_path / "config.yaml")]  # last: it takes what follows
    auth = {"client_kwargs": {"headers": {"Authorization": f"Basic {TOKEN}"}}}
    env = {**env, "FSSPEC_HTTP": json.dumps(auth), "PYTHONPATH": str(ROOT / "src")}

    def snakemake(*args):
        stop, seen = threading.Event(), []
        watcher = threading.Thread(target=_watch_cmdlines, args=(stop, seen))
        watcher.start()
        try:
            done = subprocess.run([*cmd, *args, *config], env=env, capture_output=True, text=True)
        finally:
            stop.set()
            watcher.join()
        assert [c for c in seen if SECRET in c or TOKEN in c] == []
        return done, seen

    # A clean pull of the same month, to count the chunk requests a whole pull takes.
    url = f"http://{USER}:{SECRET}@127.0.0.1:{port}/"
    assert main(_pull_args(tiny_config, tmp_path / "ref", sdoml=url)) == 0
    total, handler.chunk_requests, handler.fail_after = handler.chunk_requests, 0, 40
    (first, seen), partial = snakemake(target), work / f"{target}.partial"
    assert first.returncode != 0 and handler.refused == 0, first.stderr[-3000:]
    assert any("sdofm pull --params" in c for c in seen)  # the watcher saw the job run
    assert not (work / target).exists() and partial.is_dir()
    handler.chunk_requests, handler.fail_after = 0, None
    second, _ = snakemake(target)
    assert second.returncode == 0, second.stderr[-3000:]
    assert 0 < handler.chunk_requests <= total - 40 + 3  # what the outage cut off (+ a cut block)
    assert not partial.exists() and handler.refused == 0
    for kind in ("aia", "hmi"):
        ref = zarr.open_group(tmp_path / "ref" / f"{kind}.zarr", mode="r")["2011"]
        got = zarr.open_group(work / target / f"{kind}.zarr", mode="r")["2011"]
        for name, arr in ref.arrays():
            np.testing.assert_array_equal(got[name][:], arr[:])
    # A dry run of the event collection: its command line carries no storage options.
    dry, _ = snakemake("-n", "results/data/events")
    assert "sdofm events" in dry.stdout and "storage_options" not in dry.stdout
    outputs = [first.stdout, first.stderr, second.stdout, second.stderr, dry.stdout]
    assert not any(SECRET in o or TOKEN in o for o in outputs)
    assert (work / ".snakemake" / "log").is_dir()
    assert _files_holding(work, SECRET, TOKEN) == []
