"""Pulling over HTTP survives transient errors (retries, backoff) and resumes after an outage."""

from __future__ import annotations

import functools
import re
import threading
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr

from sdofm import SdofmError
from sdofm.sources import sdoml_copy
from sdofm.sources.sdoml import pull_store

CHUNK = re.compile(r"/\d+\.\d+\.\d+$")  # a chunk of a 3-D frame array


class _Flaky(SimpleHTTPRequestHandler):
    """Serves files; chunk requests fail with 503 as the class attributes say."""

    fail_first = 0  # the first N chunk requests fail
    fail_after = None  # every chunk request after the N-th fails (an outage)
    chunk_requests = 0
    lock = threading.Lock()

    def do_GET(self):
        if CHUNK.search(self.path):
            cls = type(self)
            with cls.lock:
                cls.chunk_requests += 1
                n = cls.chunk_requests
            if n <= cls.fail_first or (cls.fail_after is not None and n > cls.fail_after):
                self.send_error(503, "try again")
                return
        super().do_GET()

    def log_message(self, format, *args):
        pass


@contextmanager
def serving(base: type[_Flaky], directory: Path):
    """``directory`` over HTTP on a free loopback port with a fresh subclass of ``base`` (its
    counters start at zero): (handler class, port)."""
    handler = type("Handler", (base,), {"lock": threading.Lock(), "chunk_requests": 0})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=directory))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        yield handler, httpd.server_address[1]
    finally:
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def server(synthetic_mirror):
    with serving(_Flaky, synthetic_mirror) as (handler, port):
        yield handler, f"http://127.0.0.1:{port}"


@pytest.fixture(autouse=True)
def fast_backoff(monkeypatch):
    monkeypatch.setattr(sdoml_copy, "BACKOFF_SECONDS", 0.01)
    monkeypatch.setattr(sdoml_copy, "RETRIES", 3)


def _pull(url, out, tiny_config):
    data = tiny_config["data"]
    return pull_store(
        f"{url}/sdomlv2_small.zarr",
        out,
        kind="aia",
        start=pd.Timestamp(data["start"]),
        end=pd.Timestamp(data["end"]),
        names=["171A", "193A"],
    )


def test_transient_errors_are_retried(server, tmp_path, tiny_config, synthetic_mirror):
    handler, url = server
    handler.fail_first = 3
    counts = _pull(url, tmp_path / "aia.zarr", tiny_config)
    reference = _pull(f"file://{synthetic_mirror}", tmp_path / "ref.zarr", tiny_config)
    assert counts == reference
    got = zarr.open_group(tmp_path / "aia.zarr", mode="r")
    want = zarr.open_group(tmp_path / "ref.zarr", mode="r")
    np.testing.assert_array_equal(got["2011/171A"][:], want["2011/171A"][:])


def test_interrupted_pull_resumes_with_only_the_missing_frames(server, tmp_path, tiny_config):
    handler, url = server
    out = tmp_path / "aia.zarr"
    # A full pull, to count the chunk requests it takes.
    _pull(url, tmp_path / "full.zarr", tiny_config)
    total = handler.chunk_requests
    assert total > 8
    # An outage half-way: the pull gives up after its retries, keeping what it has.
    handler.chunk_requests, handler.fail_after = 0, total // 2
    with pytest.raises(SdofmError, match="failed after 4 attempts"):
        _pull(url, out, tiny_config)
    assert not out.exists()
    partial = out.with_name("aia.partial.zarr")
    assert (partial / ".sdofm_pull.json").exists()
    # The service is back: the re-run fetches only what is missing and completes.
    handler.chunk_requests, handler.fail_after = 0, None
    _pull(url, out, tiny_config)
    assert 0 < handler.chunk_requests < total
    assert not partial.exists() and not (out / ".sdofm_pull.json").exists()
    got = zarr.open_group(out, mode="r")
    want = zarr.open_group(tmp_path / "full.zarr", mode="r")
    for name in ("2011/171A", "2011/193A"):
        np.testing.assert_array_equal(got[name][:], want[name][:])
        assert got[name].attrs["T_OBS"] == want[name].attrs["T_OBS"]


def test_a_different_request_does_not_reuse_a_partial_pull(server, tmp_path, tiny_config):
    handler, url = server
    out = tmp_path / "aia.zarr"
    handler.fail_after = 2
    with pytest.raises(SdofmError):
        _pull(url, out, tiny_config)
    handler.fail_after = None
    other = {**tiny_config, "data": {**tiny_config["data"], "end": "2011-02-01"}}
    counts = _pull(url, out, other)
    frames = zarr.open_group(out, mode="r")["2011/171A"]
    assert frames.shape[0] == counts["171A"] == 62  # 31 days at 12 h: nothing stale mixed in
