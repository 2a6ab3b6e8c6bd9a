"""Loaders for the non-image sources: EVE lines, flare lists, F10.7 and GOES XRS."""

from __future__ import annotations

import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sdofm import SdofmError
from sdofm.sources.sdoml import EVE_GROUP, eve_times, open_store

__all__ = [
    "FLARE_COLUMNS",
    "collect_events",
    "flare_labels",
    "flux_to_goes_class",
    "goes_class_to_flux",
    "read_eve",
    "read_f107",
    "read_flare_list",
    "read_goes_xrs",
]

# Lower edge of each GOES class in W/m^2 (1-8 Å peak flux).
GOES_SCALE = {"A": 1e-8, "B": 1e-7, "C": 1e-6, "M": 1e-5, "X": 1e-4}
_CLASS_RE = re.compile(r"^\s*([ABCMX])\s*(\d+(?:\.\d*)?|\.\d+)\s*$", re.IGNORECASE)
FLARE_COLUMNS = ("start", "peak", "end", "goes_class", "peak_flux", "lat", "lon", "noaa_ar")
# F10.7 fill values and GOES XRS fills are caught by these bounds (sfu; W/m^2).
_F107_MAX = 990.0


def _naive_utc(values: Any) -> pd.DatetimeIndex:
    """A DatetimeIndex in UTC without a time zone (aware inputs are converted first)."""
    idx = pd.DatetimeIndex(values)
    if idx.tz is not None:
        idx = idx.tz_convert("UTC").tz_localize(None)
    return idx


# --------------------------------------------------------------------------------------------
# EVE


def read_eve(
    url_or_path: str | Path,
    lines: Sequence[str] | None = None,
    start: Any = None,
    end: Any = None,
    storage_options: dict[str, Any] | None = None,
) -> pd.DataFrame:
    """EVE MEGS-A line irradiances (W/m^2) from an SDOML v2 store at any fsspec URL.

    Returns one column per line (all lines when ``lines`` is None) indexed by observation time
    (UTC, naive), limited to [start, end). Negative values (the store's fill, -1) become NaN.
    """
    url = str(url_or_path)
    store = open_store(url, storage_options)
    if EVE_GROUP not in store:
        msg = f"{url} has no {EVE_GROUP} group: not an SDOML v2 EVE store"
        raise SdofmError(msg)
    group = store[EVE_GROUP]
    available = [k for k in group.array_keys() if k != "Time"]
    names = list(available if lines is None else lines)
    for name in names:
        if name not in available:
            msg = f"EVE line {name!r} is not in {url}/{EVE_GROUP} (available: {sorted(available)})"
            raise SdofmError(msg)
    times = eve_times(group)
    lo = pd.Timestamp.min if start is None else pd.Timestamp(start)
    hi = pd.Timestamp.max if end is None else pd.Timestamp(end)
    keep = np.flatnonzero((times >= lo) & (times < hi))
    i0, i1 = (int(keep[0]), int(keep[-1]) + 1) if len(keep) else (0, 0)
    data = {}
    for name in names:
        values = np.asarray(group[name][i0:i1])[keep - i0].astype(np.float64)
        values[~(values >= 0)] = np.nan
        data[name] = values
    return pd.DataFrame(data, index=times[keep].rename("time"), columns=names)


# --------------------------------------------------------------------------------------------
# GOES classes


def _parse_class(cls: str) -> tuple[str, str]:
    match = _CLASS_RE.match(str(cls))
    if match is None or float(match.group(2)) <= 0:
        msg = f"GOES class {cls!r} is not A/B/C/M/X followed by a positive number (e.g. M1.5)"
        raise SdofmError(msg)
    return match.group(1).upper(), match.group(2)


def goes_class_to_flux(cls: str) -> float:
    """Peak 1-8 Å flux in W/m^2 of a GOES class string: ``"C3.2"`` → 3.2e-6, ``"x10"`` → 1e-3."""
    letter, number = _parse_class(cls)
    return float(number) * GOES_SCALE[letter]


def _canonical_class(cls: str) -> str:
    """Upper-case letter and the given magnitude, with at least one decimal: 'm1' → 'M1.0'."""
    letter, number = _parse_class(cls)
    whole, _, frac = number.partition(".")
    return f"{letter}{int(whole or 0)}.{frac or 0}"


def flux_to_goes_class(flux: float) -> str:
    """GOES class of a 1-8 Å peak flux in W/m^2, magnitude to one decimal: 3.2e-6 → ``"C3.2"``.

    Fluxes of 1e-3 and above stay X class (``"X10.0"``); below 1e-8 they stay A (``"A0.5"``).
    """
    flux = float(flux)
    if not np.isfinite(flux) or flux <= 0:
        msg = f"cannot give a GOES class to flux {flux!r}: it must be a positive number of W/m^2"
        raise SdofmError(msg)
    letters = list(GOES_SCALE)
    i = int(np.clip(np.floor(np.log10(flux) + 8 + 1e-12), 0, len(letters) - 1))
    magnitude = round(flux / GOES_SCALE[letters[i]], 1)
    if magnitude >= 10 and i < len(letters) - 1:  # 9.96e-6 rounds up to M1.0, not C10.0
        i += 1
        magnitude = round(flux / GOES_SCALE[letters[i]], 1)
    return f"{letters[i]}{magnitude:.1f}"


# --------------------------------------------------------------------------------------------
# Flare lists


def _times(values: pd.Series, path: Path, what: str, required: bool) -> pd.Series:
    """Parse ISO-like times; NaT allowed only where the cell is empty and not ``required``."""
    text = values.astype("string").str.strip()
    out = pd.Series(pd.NaT, index=values.index, dtype="datetime64[ns]")
    for i, s in text.items():
        if pd.isna(s) or s == "":
            if required:
                msg = f"{path} line {i + 2}: the {what} time is empty"
                raise SdofmError(msg)
            continue
        try:
            t = pd.Timestamp(s)
        except (ValueError, TypeError):
            msg = f"{path} line {i + 2}: cannot read {what} time {s!r}"
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
            date = pd.Timestamp(str(row["event_date"]).strip().split(".")[0])
            begin = _hhmm(date, row["start"])
            peak = _hhmm(date, row["max"])
            end = _hhmm(date, row.get("end"))
        except ValueError as err:
            msg = f"{path} line {i + 2}: cannot read the event date or times: {err}"
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


def _location(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """Latitude and longitude (deg, east negative) from SWPC locations like ``S21W63``."""
    lat = np.full(len(values), np.nan)
    lon = np.full(len(values), np.nan)
    for j, s in enumerate(values.astype("string").fillna("")):
        m = re.fullmatch(r"\s*([NS])(\d{1,2})([EW])(\d{1,3})\s*", s.upper())
        if m:
            lat[j] = float(m.group(2)) * (1 if m.group(1) == "N" else -1)
            lon[j] = float(m.group(4)) * (1 if m.group(3) == "W" else -1)
    return lat, lon


def _first(df: pd.DataFrame, *names: str) -> pd.Series | None:
    for name in names:
        if name in df.columns:
            return df[name]
    return None


def read_flare_list(path: str | Path) -> pd.DataFrame:
    """A flare list as one row per flare, sorted by peak time.

    Reads three CSV layouts:

    * HEK (``event_starttime, event_peaktime, event_endtime, fl_goescls, fl_peakflux, hgs_x,
      hgs_y, ar_noaanum``), as the synthetic Sun and HEK queries write it;
    * SWPC/NOAA event lists: either ISO times ``start_time, peak_time, end_time`` or the edited
      events layout ``event_date`` (YYYYMMDD) with ``start, max, end`` as hhmm (times before the
      previous one are the next day; ``////`` is unknown), plus ``goes_class`` (or
      ``particulars``, first token), optional ``peak_flux``, ``noaa_active_region`` (or
      ``region``) and ``location`` (e.g. ``S21W63``);
    * this function's own output columns (`FLARE_COLUMNS`), as `collect_events` writes them.

    Returns columns start, peak, end (UTC, naive), goes_class (``"M1.5"``), peak_flux (W/m^2;
    from the class where not given), lat, lon (heliographic deg, east negative; NaN when absent)
    and noaa_ar (nullable int; 0 is no region). A bad class or time raises SdofmError naming the
    file line.
    """
    path = Path(path)
    if not path.exists():
        msg = f"no flare list at {path}"
        raise SdofmError(msg)
    df = pd.read_csv(path, dtype=str, skipinitialspace=True)
    df.columns = [c.strip().lower() for c in df.columns]
    lat = lon = np.full(len(df), np.nan)
    if "event_peaktime" in df.columns:  # HEK
        start = _times(df.get("event_starttime", pd.Series(index=df.index)), path, "start", False)
        peak = _times(df["event_peaktime"], path, "peak", True)
        end = _times(df.get("event_endtime", pd.Series(index=df.index)), path, "end", False)
        cls, flux, ar = df.get("fl_goescls"), df.get("fl_peakflux"), df.get("ar_noaanum")
        if "hgs_x" in df.columns and "hgs_y" in df.columns:
            lon = pd.to_numeric(df["hgs_x"], errors="coerce").to_numpy(float)
            lat = pd.to_numeric(df["hgs_y"], errors="coerce").to_numpy(float)
    elif "peak_time" in df.columns or {"event_date", "max"} <= set(df.columns):  # SWPC
        if "peak_time" in df.columns:
            start = _times(df.get("start_time", pd.Series(index=df.index)), path, "start", False)
            peak = _times(df["peak_time"], path, "peak", True)
            end = _times(df.get("end_time", pd.Series(index=df.index)), path, "end", False)
        else:
            start, peak, end = _swpc_hhmm_times(df, path)
        cls = _first(df, "goes_class", "xray_class", "particulars")
        if cls is not None:
            cls = cls.astype("string").str.strip().str.split().str[0]
        flux = _first(df, "peak_flux", "xray_peak_flux")
        ar = _first(df, "noaa_active_region", "noaa_ar", "region", "reg#")
        if "location" in df.columns:
            lat, lon = _location(df["location"])
    elif {"peak", "goes_class"} <= set(df.columns):  # this module's own layout (FLARE_COLUMNS)
        start = _times(df.get("start", pd.Series(index=df.index)), path, "start", False)
        peak = _times(df["peak"], path, "peak", True)
        end = _times(df.get("end", pd.Series(index=df.index)), path, "end", False)
        cls, flux, ar = df["goes_class"], df.get("peak_flux"), df.get("noaa_ar")
        lat = pd.to_numeric(df.get("lat"), errors="coerce").to_numpy(float)
        lon = pd.to_numeric(df.get("lon"), errors="coerce").to_numpy(float)
    else:
        msg = (
            f"{path} is not a known flare list: expected HEK columns (event_peaktime, fl_goescls, "
            f"...) or SWPC columns (peak_time, goes_class, ... or event_date, start, max, end); "
            f"found {list(df.columns)}"
        )
        raise SdofmError(msg)
    classes, fluxes = _classes_and_fluxes(df.index, cls, flux, path)
    ar_num = pd.to_numeric(ar, errors="coerce") if ar is not None else pd.Series(np.nan, df.index)
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


def _classes_and_fluxes(index, cls, flux, path: Path) -> tuple[list[str], np.ndarray]:
    """Canonical classes and peak fluxes; each derived from the other when one is missing."""
    given = pd.to_numeric(flux, errors="coerce") if flux is not None else None
    classes, fluxes = [], np.full(len(index), np.nan)
    for j, i in enumerate(index):
        c = None if cls is None or pd.isna(cls[i]) or str(cls[i]).strip() == "" else str(cls[i])
        f = None if given is None or not given[i] > 0 else float(given[i])
        try:
            if c is not None:
                classes.append(_canonical_class(c))
                fluxes[j] = f if f is not None else goes_class_to_flux(c)
            elif f is not None:
                classes.append(flux_to_goes_class(f))
                fluxes[j] = f
            else:
                msg = "no GOES class and no peak flux"
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
    peaks = _naive_utc(flares["peak"])[size >= threshold * (1 - 1e-9)].dropna()
    peak_ns = np.sort(peaks.as_unit("ns").asi8)
    t_ns = _naive_utc(times).as_unit("ns").asi8
    h_ns = pd.Timedelta(horizon).value
    after = np.searchsorted(peak_ns, t_ns, side="right")  # peaks <= t are excluded
    upto = np.searchsorted(peak_ns, t_ns + h_ns, side="right")  # peaks <= t + horizon included
    return upto > after


# --------------------------------------------------------------------------------------------
# F10.7


def _read_penticton_text(path: Path) -> pd.DataFrame:
    """NRCan/Penticton text: whitespace columns fluxdate (YYYYMMDD), fluxtime (HHMMSS), ..."""
    rows = [ln.split() for ln in path.read_text().splitlines() if ln.strip()]
    header, body = rows[0], [r for r in rows[1:] if not set("".join(r)) <= {"-"}]
    df = pd.DataFrame([r[: len(header)] for r in body], columns=header)
    stamp = df["fluxdate"].str.zfill(8) + df["fluxtime"].str.zfill(6)
    time = pd.to_datetime(stamp, format="%Y%m%d%H%M%S", errors="coerce")
    return pd.DataFrame(
        {"time": time, "observed_flux": df["fluxobsflux"], "adjusted_flux": df["fluxadjflux"]}
    )


def read_f107(path: str | Path) -> pd.DataFrame:
    """Daily F10.7 radio flux in sfu (1e-22 W m^-2 Hz^-1), columns observed_flux, adjusted_flux.

    Reads a NOAA/LISIRD-like CSV (a ``time`` column, columns containing ``obs`` and ``adj``) or
    the NRCan/Penticton text layout (``fluxdate fluxtime ... fluxobsflux fluxadjflux``). The
    index is every day from the first to the last (named ``time``, midnight); of several
    measurements a day the one nearest 20 UT (Penticton's noon) is kept. Values <= 0 or
    >= 990 (fills such as 999.9) and missing days are NaN.
    """
    path = Path(path)
    if not path.exists():
        msg = f"no F10.7 file at {path}"
        raise SdofmError(msg)
    first = next((ln for ln in path.read_text().splitlines() if ln.strip()), "")
    if first.split() and first.split()[0].lower() == "fluxdate":
        raw = _read_penticton_text(path)
    else:
        df = pd.read_csv(path, skipinitialspace=True)
        cols = {c: str(c).strip().lower() for c in df.columns}
        pick = {
            "time": [c for c, low in cols.items() if low.startswith("time") or low == "date"],
            "observed_flux": [c for c, low in cols.items() if "obs" in low],
            "adjusted_flux": [c for c, low in cols.items() if "adj" in low],
        }
        if not pick["time"] or not (pick["observed_flux"] or pick["adjusted_flux"]):
            msg = (
                f"{path} is not an F10.7 file: expected columns time, observed_flux, adjusted_flux "
                f"(or the Penticton fluxdate/fluxtime layout); found {list(df.columns)}"
            )
            raise SdofmError(msg)
        raw = pd.DataFrame(
            {k: df[v[0]] if v else np.nan for k, v in pick.items()}, index=df.index
        ).assign(time=lambda d: pd.to_datetime(d["time"], errors="coerce", format="ISO8601"))
    raw["time"] = _naive_utc(raw["time"])
    raw = raw.dropna(subset=["time"])
    if raw.empty:
        msg = f"{path} has no F10.7 rows with a readable time"
        raise SdofmError(msg)
    for col in ("observed_flux", "adjusted_flux"):
        v = pd.to_numeric(raw[col], errors="coerce")
        raw[col] = v.where((v > 0) & (v < _F107_MAX))
    day = raw["time"].dt.floor("D")
    raw["_off"] = (raw["time"] - day - pd.Timedelta(hours=20)).abs()
    raw["_day"] = day
    daily = raw.sort_values(["_day", "_off"]).groupby("_day").first()
    daily = daily[["observed_flux", "adjusted_flux"]].astype(float).asfreq("D")
    daily.index = daily.index.rename("time")
    return daily


# --------------------------------------------------------------------------------------------
# GOES XRS


def _xrs_frame(index: Any, xrsb: Any, xrsa: Any) -> pd.DataFrame:
    """Columns xrsb, xrsa (W/m^2) with non-positive values and fills as NaN, sorted, unique."""
    out = pd.DataFrame(
        {"xrsb": np.asarray(xrsb, np.float64), "xrsa": np.asarray(xrsa, np.float64)},
        index=_naive_utc(index).rename("time"),
    )
    out = out.where((out > 0) & (out < 1))
    out = out.sort_index()
    return out[~out.index.duplicated(keep="first")]


def _read_goes_fits(path: Path) -> pd.DataFrame:
    """GOES XRS FITS (``go15YYYYMMDD.fits``) read as sunpy's XRSTimeSeries reads it."""
    from astropy.io import fits

    with fits.open(path) as hdus:
        head = hdus[0].header
        if len(hdus) == 4:
            date = str(head["DATE-OBS"])
            fmt = "%d/%m/%Y" if len(date.split("/")[-1]) == 4 else "%d/%m/%y"
            t0 = pd.to_datetime(date, format=fmt)
            table = hdus[2].data
            seconds = np.asarray(table["TIME"][0], np.float64)
            flux = np.asarray(table["FLUX"][0], np.float64)
            xrsb, xrsa = flux[:, 0], flux[:, 1]
        elif 1 <= len(hdus) <= 3:
            # TIMEZERO is in seconds since 1979-01-01 without leap seconds (sunpy's "utime").
            t0 = pd.Timestamp("1979-01-01") + pd.Timedelta(seconds=float(head["TIMEZERO"]))
            data = np.asarray(hdus[0].data, np.float64)
            seconds, xrsb, xrsa = data[0], data[1], data[2]
        else:
            msg = f"{path} is not a GOES XRS FITS file ({len(hdus)} HDUs)"
            raise SdofmError(msg)
    index = t0 + pd.to_timedelta(seconds, unit="s")
    return _xrs_frame(index, xrsb, xrsa)


def _read_goes_sunpy(path: Path) -> pd.DataFrame:
    """GOES XRS FITS or netCDF through sunpy's XRSTimeSeries; FITS without sunpy's extras too."""
    try:
        with warnings.catch_warnings():  # sunpy warns when its timeseries extras are missing
            warnings.simplefilter("ignore")
            from sunpy.timeseries import TimeSeries
    except ImportError as err:
        if ".fits" in path.name.lower() or ".fts" in path.name.lower():
            return _read_goes_fits(path)
        msg = (
            f"reading GOES XRS {path.name} needs sunpy's timeseries extras "
            f"(pip install 'sunpy[timeseries]'): {err}"
        )
        raise SdofmError(msg) from None
    try:
        with warnings.catch_warnings():  # e.g. the leap-second rounding note
            warnings.simplefilter("ignore")
            series = TimeSeries(str(path))
    except Exception as err:  # sunpy raises many types for a file it cannot read
        msg = f"cannot read GOES XRS file {path}: {type(err).__name__}: {err}"
        raise SdofmError(msg) from None
    df = series.to_dataframe()
    if "xrsb" not in df.columns:
        msg = f"{path} is not a GOES XRS file: sunpy read columns {list(df.columns)}"
        raise SdofmError(msg)
    return _xrs_frame(df.index, df["xrsb"], df.get("xrsa", np.nan))


def read_goes_xrs(path: str | Path) -> pd.DataFrame:
    """GOES XRS flux in W/m^2: columns xrsb (1-8 Å) and xrsa (0.5-4 Å, NaN when absent).

    Reads our CSV (``time, xrsb_flux[, xrsa_flux]``) and the real GOES files sunpy's
    XRSTimeSeries reads (NASCOM ``go15YYYYMMDD.fits``, NOAA ``sci_gxrs-l2-irrad`` and GOES-R
    ``sci_xrsf-l2-*`` netCDF; netCDF needs ``sunpy[timeseries]``). The index is the sample time
    (UTC, naive), sorted and unique. Values <= 0 (fills, negative low-flux noise) become NaN;
    quality flags are not applied.
    """
    path = Path(path)
    if not path.exists():
        msg = f"no GOES XRS file at {path}"
        raise SdofmError(msg)
    if path.suffix.lower() != ".csv":
        return _read_goes_sunpy(path)
    df = pd.read_csv(path, skipinitialspace=True)
    df.columns = [str(c).strip().lower() for c in df.columns]
    if "time" not in df.columns or "xrsb_flux" not in df.columns:
        msg = f"{path} is not a GOES XRS CSV: expected columns time, xrsb_flux[, xrsa_flux]"
        raise SdofmError(msg)
    time = pd.to_datetime(df["time"], errors="coerce", format="ISO8601")
    if time.isna().any():
        i = int(np.flatnonzero(time.isna())[0])
        msg = f"{path} line {i + 2}: cannot read time {df['time'].iloc[i]!r}"
        raise SdofmError(msg)
    xrsb = pd.to_numeric(df["xrsb_flux"], errors="coerce")
    xrsa = pd.to_numeric(df["xrsa_flux"], errors="coerce") if "xrsa_flux" in df else np.nan
    return _xrs_frame(time, xrsb, np.broadcast_to(xrsa, len(df)))


# --------------------------------------------------------------------------------------------
# The workflow's copy of the event data


def collect_events(
    flares: str | Path, f107: str | Path, out: str | Path, *, start: Any, end: Any
) -> dict[str, int]:
    """Read a flare list and an F10.7 file (any layout the loaders know) into ``out``.

    Writes ``out/flares.csv`` (`FLARE_COLUMNS`, ISO times) and ``out/f107.csv`` (daily, columns
    time, observed_flux, adjusted_flux), both cut to [start, end), so the tasks read one
    canonical layout whatever the source. Nothing is written unless both files read cleanly.
    """
    from sdofm.io import atomic_output

    start, end = pd.Timestamp(start), pd.Timestamp(end)
    fl = read_flare_list(flares)
    fl = fl[(fl["peak"] >= start) & (fl["peak"] < end)]
    daily = read_f107(f107)
    daily = daily[(daily.index >= start.floor("D")) & (daily.index < end)]
    if daily["observed_flux"].notna().sum() + daily["adjusted_flux"].notna().sum() == 0:
        msg = f"{f107} has no F10.7 values between {start:%Y-%m-%d} and {end:%Y-%m-%d}"
        raise SdofmError(msg)
    with atomic_output(out) as tmp:
        tmp.mkdir()
        fl.to_csv(tmp / "flares.csv", index=False, date_format="%Y-%m-%dT%H:%M:%S")
        daily.to_csv(tmp / "f107.csv", date_format="%Y-%m-%d", float_format="%.2f")
    return {"flares": len(fl), "f107_days": len(daily)}
