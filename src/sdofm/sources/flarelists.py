"""Flare lists: HEK and NOAA/SWPC CSV files, HEK queries (sunpy), and flare labels for times."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sdofm import SdofmError
from sdofm.sources.goes import canonical_class, flux_to_goes_class, goes_class_to_flux
from sdofm.sources.tables import naive_utc, numbers, read_csv_checked

__all__ = ["FLARE_COLUMNS", "HEK_COLUMNS", "fetch_hek_flares", "flare_labels", "read_flare_list"]

FLARE_COLUMNS = ("start", "peak", "end", "goes_class", "peak_flux", "lat", "lon", "noaa_ar")
HEK_COLUMNS = (
    "event_starttime",
    "event_peaktime",
    "event_endtime",
    "fl_goescls",
    "fl_peakflux",
    "hgs_x",
    "hgs_y",
    "ar_noaanum",
    "frm_name",
)
WHAT = "flare list"


def _times(values: pd.Series | None, path: Path, what: str, required: bool, n: int) -> pd.Series:
    """Parse ISO-like times; NaT allowed only where the cell is empty and not ``required``."""
    out = pd.Series(pd.NaT, index=range(n), dtype="datetime64[ns]")
    if values is None:
        return out
    for i, s in values.astype("string").str.strip().items():
        if pd.isna(s) or s == "":
            if required:
                msg = f"{path} line {i + 2}: the {what} time is empty"
                raise SdofmError(msg)
            continue
        try:
            t = pd.Timestamp(s)
        except (ValueError, TypeError):
            msg = f"{path} line {i + 2}: cannot read {what} time {s!r} (expected ISO 8601)"
            raise SdofmError(msg) from None
        out[i] = t.tz_convert("UTC").tz_localize(None) if t.tzinfo is not None else t
    return out


def _hhmm(date: pd.Timestamp, value: Any) -> pd.Timestamp | None:
    """``date`` at an SWPC ``hhmm`` time (``"0953"``, ``"B0953"``, ``953``); None when blank."""
    if pd.isna(value):
        return None
    digits = re.sub(r"\D", "", str(value).strip().split(".")[0])
    if digits == "":
        return None  # SWPC writes '////' for an unknown time
    digits = digits.zfill(4)
    hh, mm = int(digits[:-2]), int(digits[-2:])
    if len(digits) != 4 or hh > 23 or mm > 59:
        msg = f"time {value!r} is not hhmm"
        raise ValueError(msg)
    return date + pd.Timedelta(hours=hh, minutes=mm)


def _swpc_hhmm_times(df: pd.DataFrame, path: Path) -> tuple[pd.Series, ...]:
    """start, peak, end from ``event_date`` + hhmm ``start``/``max``/``end``, across midnight."""
    cols = {"start": [], "peak": [], "end": []}
    for i, row in df.iterrows():
        try:
            date = pd.to_datetime(str(row["event_date"]).strip().split(".")[0], format="%Y%m%d")
            begin = _hhmm(date, row["start"])
            peak = _hhmm(date, row["max"])
            end = _hhmm(date, row.get("end"))
        except ValueError as err:
            why = str(err).splitlines()[0] if str(err) else type(err).__name__
            msg = f"{path} line {i + 2}: cannot read the event date (YYYYMMDD) or times: {why}"
            raise SdofmError(msg) from None
        if peak is None:
            msg = f"{path} line {i + 2}: the peak ('max') time is empty"
            raise SdofmError(msg)
        # Times are hhmm on the event (start) date; later ones past midnight are the next day.
        if begin is not None and peak < begin:
            peak += pd.Timedelta(days=1)
        if end is not None and end < peak:
            end += pd.Timedelta(days=1)
        for k, v in (("start", begin), ("peak", peak), ("end", end)):
            cols[k].append(pd.NaT if v is None else v)
    return tuple(pd.Series(pd.DatetimeIndex(cols[k]), index=df.index) for k in cols)


def _location(values: pd.Series, path: Path) -> tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude (deg, east negative) from SWPC locations like ``S21W63``."""
    lat = np.full(len(values), np.nan)
    lon = np.full(len(values), np.nan)
    for j, s in enumerate(values.astype("string").fillna("").str.strip()):
        if s == "":
            continue
        m = re.fullmatch(r"([NS])(\d{1,2})([EW])(\d{1,3})", s.upper())
        if m is None:
            msg = f"{path} line {j + 2}: location {s!r} is not like N08W11 (or empty)"
            raise SdofmError(msg)
        lat[j] = float(m.group(2)) * (1 if m.group(1) == "N" else -1)
        lon[j] = float(m.group(4)) * (1 if m.group(3) == "W" else -1)
    return lat, lon


def _first(df: pd.DataFrame, *names: str) -> pd.Series | None:
    return next((df[name] for name in names if name in df.columns), None)


def read_flare_list(path: str | Path) -> pd.DataFrame:
    """A flare list as one row per flare, sorted by peak time.

    Reads three CSV layouts:

    * HEK (``event_starttime, event_peaktime, event_endtime, fl_goescls, fl_peakflux, hgs_x,
      hgs_y, ar_noaanum``), as the synthetic Sun and `fetch_hek_flares` write it;
    * SWPC/NOAA event lists: either ISO times ``start_time, peak_time, end_time`` or the edited
      events layout ``event_date`` (YYYYMMDD) with ``start, max, end`` as hhmm (times before the
      previous one are the next day; ``////`` is unknown), plus ``goes_class`` (or
      ``particulars``, first token), optional ``peak_flux``, ``noaa_active_region`` (or
      ``region``) and ``location`` (e.g. ``S21W63``);
    * this function's own output columns (`FLARE_COLUMNS`), as `collect_events` writes them.

    Returns columns start, peak, end (UTC, naive), goes_class (``"M1.5"``), peak_flux (W/m^2;
    from the class where not given), lat, lon (heliographic deg, east negative; NaN when absent)
    and noaa_ar (nullable int; 0 is no region). Any unreadable cell raises SdofmError naming the
    file line and what was expected.
    """
    path = Path(path)
    df = read_csv_checked(path, WHAT)
    n = len(df)
    lat = lon = np.full(n, np.nan)
    if "event_peaktime" in df.columns:  # HEK
        start = _times(df.get("event_starttime"), path, "start", False, n)
        peak = _times(df["event_peaktime"], path, "peak", True, n)
        end = _times(df.get("event_endtime"), path, "end", False, n)
        cls, flux, ar = df.get("fl_goescls"), df.get("fl_peakflux"), df.get("ar_noaanum")
        lon = numbers(df.get("hgs_x"), path, "hgs_x (longitude)", n)
        lat = numbers(df.get("hgs_y"), path, "hgs_y (latitude)", n)
    elif "peak_time" in df.columns or {"event_date", "max"} <= set(df.columns):  # SWPC
        if "peak_time" in df.columns:
            start = _times(df.get("start_time"), path, "start", False, n)
            peak = _times(df["peak_time"], path, "peak", True, n)
            end = _times(df.get("end_time"), path, "end", False, n)
        else:
            start, peak, end = _swpc_hhmm_times(df, path)
        cls = _first(df, "goes_class", "xray_class", "particulars")
        if cls is not None:
            cls = cls.astype("string").str.strip().str.split().str[0]
        flux = _first(df, "peak_flux", "xray_peak_flux")
        ar = _first(df, "noaa_active_region", "noaa_ar", "region", "reg#")
        if "location" in df.columns:
            lat, lon = _location(df["location"], path)
    elif {"peak", "goes_class"} <= set(df.columns):  # this module's own layout (FLARE_COLUMNS)
        start = _times(df.get("start"), path, "start", False, n)
        peak = _times(df["peak"], path, "peak", True, n)
        end = _times(df.get("end"), path, "end", False, n)
        cls, flux, ar = df["goes_class"], df.get("peak_flux"), df.get("noaa_ar")
        lat = numbers(df.get("lat"), path, "lat", n)
        lon = numbers(df.get("lon"), path, "lon", n)
    else:
        msg = (
            f"{path} line 1: not a known flare list: expected HEK columns (event_peaktime, "
            f"fl_goescls, ...) or SWPC columns (peak_time, goes_class, ... or event_date, start, "
            f"max, end); found {list(df.columns)}"
        )
        raise SdofmError(msg)
    classes, fluxes = _classes_and_fluxes(df.index, cls, numbers(flux, path, "peak flux", n), path)
    ar_num = pd.Series(numbers(ar, path, "NOAA active region number", n))
    out = pd.DataFrame(
        {
            "start": start.to_numpy(),
            "peak": peak.to_numpy(),
            "end": end.to_numpy(),
            "goes_class": pd.array(classes, dtype="string"),
            "peak_flux": fluxes,
            "lat": lat,
            "lon": lon,
            "noaa_ar": ar_num.where(ar_num > 0).round().astype("Int64").to_numpy(),
        }
    )
    return out.sort_values("peak", kind="stable").reset_index(drop=True)


def _classes_and_fluxes(index, cls, given: np.ndarray, path: Path) -> tuple[list[str], np.ndarray]:
    """Canonical classes and peak fluxes; each derived from the other when one is missing."""
    classes, fluxes = [], np.full(len(index), np.nan)
    for j, i in enumerate(index):
        c = None if cls is None or pd.isna(cls[i]) or str(cls[i]).strip() == "" else str(cls[i])
        f = float(given[j]) if given[j] > 0 else None
        try:
            if c is not None:
                classes.append(canonical_class(c))
                fluxes[j] = f if f is not None else goes_class_to_flux(c)
            elif f is not None:
                classes.append(flux_to_goes_class(f))
                fluxes[j] = f
            else:
                msg = "no GOES class and no peak flux (expected e.g. M1.5 or 1.5e-5)"
                raise SdofmError(msg)
        except SdofmError as err:
            msg = f"{path} line {i + 2}: {err}"
            raise SdofmError(msg) from None
    return classes, fluxes


def flare_labels(
    flares: pd.DataFrame,
    times: Any,
    horizon: str | pd.Timedelta = "24h",
    min_class: str | float = "M1.0",
) -> np.ndarray:
    """For each time t, whether a flare of at least ``min_class`` peaks in (t, t + horizon].

    ``flares`` is a `read_flare_list` frame; a flare's size is the flux of its GOES class (its
    ``peak_flux`` where it has none), so an ``M1.0`` flare counts for ``min_class="M1.0"``.
    ``min_class`` is a class string or a flux in W/m^2. Returns a bool array, one per time.
    """
    threshold = goes_class_to_flux(min_class) if isinstance(min_class, str) else float(min_class)
    size = pd.to_numeric(flares["peak_flux"], errors="coerce").to_numpy(float)
    if "goes_class" in flares.columns:
        from_class = [
            goes_class_to_flux(c) if isinstance(c, str) and c else np.nan
            for c in flares["goes_class"]
        ]
        size = np.where(np.isfinite(from_class), from_class, size)
    peaks = naive_utc(flares["peak"])[size >= threshold * (1 - 1e-9)].dropna()
    peak_ns = np.sort(peaks.as_unit("ns").asi8)
    t_ns = naive_utc(times).as_unit("ns").asi8
    h_ns = pd.Timedelta(horizon).value
    after = np.searchsorted(peak_ns, t_ns, side="right")  # peaks <= t are excluded
    upto = np.searchsorted(peak_ns, t_ns + h_ns, side="right")  # peaks <= t + horizon included
    return upto > after


def fetch_hek_flares(start: Any, end: Any, out: str | Path) -> int:
    """Query HEK (sunpy's client, needs internet) for the SWPC flares in [start, end).

    Writes ``out`` as a HEK CSV (`HEK_COLUMNS`, ISO times) that `read_flare_list` reads, through
    `atomic_output`. Returns the number of flares. A failed query is one SdofmError.
    """
    from sunpy.net import attrs as a
    from sunpy.net import hek

    from sdofm.io import atomic_output

    t0, t1 = pd.Timestamp(start), pd.Timestamp(end)
    try:
        table = hek.HEKClient().search(
            a.Time(t0.isoformat(), t1.isoformat()),
            a.hek.EventType("FL"),
            a.hek.FRM.Name == "SWPC",
        )
    except Exception as err:  # urllib/HTTP/parsing errors of many types
        text = " ".join(str(err).split())[:200]
        msg = f"HEK query for flares {t0} to {t1} failed (offline?): {type(err).__name__}: {text}"
        raise SdofmError(msg) from None
    raw = getattr(table, "raw", table)
    rows = {}
    for col in HEK_COLUMNS:
        values = list(raw[col]) if col in getattr(raw, "colnames", []) else [None] * len(raw)
        if col.endswith("time"):
            values = [
                pd.Timestamp(str(v)).strftime("%Y-%m-%dT%H:%M:%S") if v else None for v in values
            ]
        rows[col] = values
    df = pd.DataFrame(rows, columns=list(HEK_COLUMNS))
    if len(df):
        df = df[pd.to_datetime(df["event_peaktime"]).between(t0, t1, inclusive="left")]
    with atomic_output(out) as tmp:
        df.to_csv(tmp, index=False)
    return len(df)
