"""JSOC record-set queries and exports of AIA/HMI level-1 FITS files (needs internet and drms)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from sdofm import SdofmError

__all__ = ["AIA_SERIES", "aia_queries", "aia_query", "fetch", "hmi_query", "jsoc_cadence"]

# Which JSOC series holds each AIA wavelength (Å).
AIA_SERIES = {
    **dict.fromkeys((94, 131, 171, 193, 211, 304, 335), "aia.lev1_euv_12s"),
    **dict.fromkeys((1600, 1700), "aia.lev1_uv_24s"),
    4500: "aia.lev1_vis_1h",
}


def _wavelength(channel: str | int) -> int:
    """``"171A"``, ``"171"`` or ``171`` → 171."""
    text = str(channel).strip().upper().removesuffix("A")
    if not text.isdigit() or int(text) not in AIA_SERIES:
        msg = f"unknown AIA channel {channel!r}: expected one of {sorted(AIA_SERIES)} (Å)"
        raise SdofmError(msg)
    return int(text)


def jsoc_cadence(cadence: str | pd.Timedelta | None) -> str:
    """A cadence as JSOC writes it after ``@``: ``12m``, ``1h``, ``45s``, ``1d``."""
    if cadence is None:
        return ""
    seconds = int(pd.Timedelta(cadence).total_seconds())
    if seconds <= 0:
        msg = f"cadence must be positive, got {cadence!r}"
        raise SdofmError(msg)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _range(start, end, cadence) -> str:
    t0, t1 = pd.Timestamp(start), pd.Timestamp(end)
    if t1 <= t0:
        msg = f"query end {t1} is not after its start {t0}"
        raise SdofmError(msg)
    fmt = "%Y-%m-%dT%H:%M:%SZ"
    step = jsoc_cadence(cadence)
    return f"{t0:{fmt}}-{t1:{fmt}}" + (f"@{step}" if step else "")


def aia_queries(
    start, end, channels: Iterable[str | int], cadence: str | pd.Timedelta | None = "12min"
) -> list[str]:
    """One record-set string per JSOC series the channels live in (EUV, UV, visible)."""
    by_series: dict[str, list[int]] = {}
    for ch in channels:
        wave = _wavelength(ch)
        waves = by_series.setdefault(AIA_SERIES[wave], [])
        if wave not in waves:
            waves.append(wave)
    if not by_series:
        msg = "no AIA channels given for the JSOC query"
        raise SdofmError(msg)
    span = _range(start, end, cadence)
    return [
        f"{series}[{span}][{','.join(str(w) for w in sorted(waves))}]"
        for series, waves in by_series.items()
    ]


def aia_query(
    start, end, channels: Iterable[str | int], cadence: str | pd.Timedelta | None = "12min"
) -> str:
    """Record set of one AIA series, e.g.
    ``aia.lev1_euv_12s[2011-01-01T00:00:00Z-2011-01-02T00:00:00Z@12m][171,193]``."""
    queries = aia_queries(start, end, channels, cadence)
    if len(queries) > 1:
        msg = f"channels span several JSOC series ({queries}); use aia_queries"
        raise SdofmError(msg)
    return queries[0]


def hmi_query(
    start, end, cadence: str | pd.Timedelta | None = "12min", series: str = "hmi.M_720s"
) -> str:
    """Record set of an HMI line-of-sight magnetogram series, e.g. ``hmi.M_720s[...@12m]``."""
    return f"{series}[{_range(start, end, cadence)}]"


def fetch(
    query: str, out_dir: str | Path, *, email: str, protocol: str = "fits", method: str = "url"
) -> list[Path]:
    """Export ``query`` from JSOC with drms and download the files to ``out_dir``.

    ``email`` must be registered at http://jsoc.stanford.edu/ajax/register_email.html.
    Returns the downloaded paths.
    """
    try:
        import drms
    except ImportError:
        msg = "fetching from JSOC needs the drms package (pip install drms); it is not installed"
        raise SdofmError(msg) from None
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    try:
        request = drms.Client(email=email).export(query, method=method, protocol=protocol)
        request.wait()
        table = request.download(str(out_dir))
    except Exception as err:  # drms raises many types (HTTP, DrmsExportError, ...)
        msg = f"JSOC export of {query} failed: {type(err).__name__}: {err}".replace("\n", " ")
        raise SdofmError(msg) from None
    return [Path(p) for p in table["download"] if isinstance(p, str)]
