"""GOES X-ray classes, XRS 1-8 Å series (CSV, NOAA netCDF, NASCOM FITS) and their flares."""

from __future__ import annotations

import glob
import re
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sdofm import SdofmError
from sdofm.sources.tables import naive_utc, read_csv_checked

__all__ = [
    "GOES_SCALE",
    "detect_flares",
    "flux_to_goes_class",
    "goes_class_to_flux",
    "read_goes_xrs",
    "write_goes_csv",
]

# Lower edge of each GOES class in W/m^2 (1-8 Å peak flux). sunkit-instruments' goes_xrs
# flareclass_to_flux / flux_to_flareclass convert alike (tests/test_library_swaps.py holds ours
# equal to them) but are not imported at run time: that package imports sunpy.timeseries and
# matplotlib.pyplot (~1.5 s CPU in each job that converts), checks no class string and gives
# 3 significant digits ("C9.99"), not the flare lists' one decimal ("M1.0").
GOES_SCALE = {"A": 1e-8, "B": 1e-7, "C": 1e-6, "M": 1e-5, "X": 1e-4}
_CLASS_RE = re.compile(r"^\s*([ABCMX])\s*(\d+(?:\.\d*)?|\.\d+)\s*$", re.IGNORECASE)
# NOAA/SWPC event definition on 1-minute 1-8 Å data: four minutes of monotonic rise ending at
# least 1.4 times the first; the end is when the flux is half-way back to the start level.
RISE_MINUTES = 4
RISE_RATIO = 1.4


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


def canonical_class(cls: str) -> str:
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
# XRS series


def _xrs_frame(index: Any, xrsb: Any, xrsa: Any) -> pd.DataFrame:
    """Columns xrsb, xrsa (W/m^2) with non-positive values and fills as NaN, sorted, unique."""
    out = pd.DataFrame(
        {"xrsb": np.asarray(xrsb, np.float64), "xrsa": np.asarray(xrsa, np.float64)},
        index=naive_utc(index).rename("time"),
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
        text = " ".join(str(err).split())[:200]
        msg = f"cannot read GOES XRS file {path}: {type(err).__name__}: {text}"
        raise SdofmError(msg) from None
    df = series.to_dataframe()
    if "xrsb" not in df.columns:
        msg = f"{path} is not a GOES XRS file: sunpy read columns {list(df.columns)}"
        raise SdofmError(msg)
    return _xrs_frame(df.index, df["xrsb"], df.get("xrsa", np.nan))


def _read_goes_csv(path: Path) -> pd.DataFrame:
    df = read_csv_checked(path, "GOES XRS CSV", required=["time", "xrsb_flux"])
    time = pd.to_datetime(df["time"], errors="coerce", format="ISO8601")
    bad = time.isna() & df["time"].notna()
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        msg = f"{path} line {i + 2}: cannot read time {df['time'].iloc[i]!r} (expected ISO 8601)"
        raise SdofmError(msg)
    columns = {}
    for col in ("xrsb_flux", "xrsa_flux"):
        text = df[col] if col in df else pd.Series(np.nan, index=df.index)
        values = pd.to_numeric(text, errors="coerce")
        bad = values.isna() & text.notna() & (text.astype("string").str.strip() != "")
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            msg = f"{path} line {i + 2}: {col} {text.iloc[i]!r} is not a number (W/m^2)"
            raise SdofmError(msg)
        columns[col] = values
    keep = time.notna()
    return _xrs_frame(time[keep], columns["xrsb_flux"][keep], columns["xrsa_flux"][keep])


def _read_one(path: Path) -> pd.DataFrame:
    if not path.exists():
        msg = f"no GOES XRS file at {path}"
        raise SdofmError(msg)
    name = path.name.lower()
    if name.endswith(".csv"):
        return _read_goes_csv(path)
    if name.endswith((".fits", ".fits.gz", ".fts")):
        # NASCOM FITS read directly (as sunpy reads them; a test keeps the two equal): sunpy's
        # TimeSeries takes seconds a file, which adds up over a year of daily files.
        try:
            return _read_goes_fits(path)
        except SdofmError:
            raise
        except Exception as err:  # astropy raises many types for a file it cannot read
            text = " ".join(str(err).split())[:200]
            msg = f"cannot read GOES XRS FITS {path}: {type(err).__name__}: {text}"
            raise SdofmError(msg) from None
    return _read_goes_sunpy(path)


def read_goes_xrs(path: str | Path | Sequence[str | Path]) -> pd.DataFrame:
    """GOES XRS flux in W/m^2: columns xrsb (1-8 Å) and xrsa (0.5-4 Å, NaN when absent).

    Reads our CSV (``time, xrsb_flux[, xrsa_flux]``) and the real GOES files sunpy's
    XRSTimeSeries reads (NASCOM ``go15YYYYMMDD.fits``, NOAA ``sci_gxrs-l2-irrad`` and GOES-R
    ``sci_xrsf-l2-*`` netCDF; netCDF needs ``sunpy[timeseries]``). ``path`` may be a glob
    pattern or a list of files (e.g. one a day): they are joined in time order. The index is
    the sample time (UTC, naive), sorted and unique. Values <= 0 (fills, negative low-flux
    noise) become NaN; quality flags are not applied.
    """
    if isinstance(path, str | Path) and not glob.has_magic(str(path)):
        return _read_one(Path(path))
    files = sorted(glob.glob(str(path))) if isinstance(path, str | Path) else list(path)
    if not files:
        msg = f"no GOES XRS file matches {path}"
        raise SdofmError(msg)
    joined = pd.concat([_read_one(Path(f)) for f in files]).sort_index()
    return joined[~joined.index.duplicated(keep="first")]


def write_goes_csv(xrs: pd.DataFrame, path: str | Path) -> None:
    """The 1-8 Å series as ``time, xrsb_flux`` (ISO times, W/m^2; empty where missing)."""
    out = pd.DataFrame(
        {"time": xrs.index.strftime("%Y-%m-%dT%H:%M:%S"), "xrsb_flux": xrs["xrsb"].to_numpy()}
    )
    out.to_csv(path, index=False, float_format="%.6e")


# --------------------------------------------------------------------------------------------
# Flares from the 1-8 Å series


def detect_flares(xrs: pd.DataFrame, *, min_class: str = "B1.0") -> pd.DataFrame:
    """Flares in a 1-8 Å series by the NOAA/SWPC event definition, one row per flare.

    The series is averaged to 1-minute bins. A flare starts at the first of four minutes of
    strictly rising flux whose last is at least 1.4 times the first; it peaks at the highest
    flux before the end, which is the first minute back below half-way between the peak and the
    start level (or the start of the next flare, or the last sample). Flares whose peak is below
    ``min_class`` are dropped. Returns columns start, peak, end, goes_class, peak_flux (the
    layout of `read_flare_list`, without positions).
    """
    if xrs.empty or xrs["xrsb"].notna().sum() == 0:
        msg = "the GOES XRS series has no 1-8 Å values: no flares can be derived from it"
        raise SdofmError(msg)
    minute = xrs["xrsb"].resample("1min").mean()
    f = minute.to_numpy(np.float64)
    times = minute.index
    n = len(f)
    rise = np.zeros(n, bool)
    if n >= RISE_MINUTES:
        w = np.lib.stride_tricks.sliding_window_view(f, RISE_MINUTES)
        steps = np.diff(w, axis=1)
        rise[: n - RISE_MINUTES + 1] = (
            np.isfinite(w).all(axis=1)
            & (steps > 0).all(axis=1)
            & (w[:, -1] >= RISE_RATIO * w[:, 0])
        )
    rows, i = [], 0
    starts = np.flatnonzero(rise)
    while i < n:
        k = np.searchsorted(starts, i)
        if k == len(starts):
            break
        s = int(starts[k])
        peak, end = s + RISE_MINUTES - 1, None
        j = peak + 1
        while j < n:
            if rise[j] and f[j] <= f[peak]:  # the next flare starts during this one's decay
                end = j
                break
            if np.isfinite(f[j]):
                if f[j] > f[peak]:
                    peak = j
                elif f[j] <= (f[peak] + f[s]) / 2:
                    end = j
                    break
            j += 1
        rows.append((times[s], times[peak], times[end] if end is not None else pd.NaT, f[peak]))
        i = end if end is not None else n
    out = pd.DataFrame(rows, columns=["start", "peak", "end", "peak_flux"])
    out = out[out["peak_flux"] >= goes_class_to_flux(min_class) * (1 - 1e-9)]
    out.insert(3, "goes_class", [flux_to_goes_class(v) for v in out["peak_flux"]])
    return out.reset_index(drop=True)
