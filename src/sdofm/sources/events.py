"""The non-image sources: EVE lines, and the event data (flares, F10.7, GOES XRS) of a run.

Flare lists are read in `sdofm.sources.flarelists`, F10.7 in `sdofm.sources.f107` and GOES XRS
in `sdofm.sources.goes`; this module re-exports their readers and writes the workflow's copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sdofm import SdofmError
from sdofm.sources.credentials import redact_url
from sdofm.sources.f107 import read_f107
from sdofm.sources.flarelists import FLARE_COLUMNS, flare_labels, read_flare_list
from sdofm.sources.goes import (
    detect_flares,
    flux_to_goes_class,
    goes_class_to_flux,
    read_goes_xrs,
    write_goes_csv,
)
from sdofm.sources.sdoml import EVE_GROUP, eve_times, open_store

__all__ = [
    "EVENT_FILES",
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

# What `collect_events` writes (and the tasks read): flare list, daily F10.7, GOES 1-8 Å.
EVENT_FILES = {"flares": "flares.csv", "f107": "f107.csv", "goes": "goes_xrs.csv"}


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
    store = open_store(str(url_or_path), storage_options)
    url = redact_url(str(url_or_path))  # what messages name: no user or password
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
# The workflow's copy of the event data


def collect_events(
    flares: str | Path,
    f107: str | Path,
    out: str | Path,
    *,
    start: Any,
    end: Any,
    goes: str | Path | None = None,
) -> dict[str, int]:
    """Read a flare list, an F10.7 file and optionally a GOES XRS series into ``out``.

    Writes ``out/flares.csv`` (`FLARE_COLUMNS`, ISO times), ``out/f107.csv`` (daily, columns
    time, observed_flux, adjusted_flux) and, with ``goes``, ``out/goes_xrs.csv`` (time,
    xrsb_flux: the 1-8 Å flux in W/m^2), all cut to [start, end), so the tasks read one layout
    whatever the source. ``flares="goes"`` derives the flare list from the GOES series
    (`detect_flares`). Nothing is written unless every file reads cleanly.
    """
    from sdofm.io import atomic_output

    start, end = pd.Timestamp(start), pd.Timestamp(end)
    xrs = None
    if goes is not None:
        xrs = read_goes_xrs(goes)
        xrs = xrs[(xrs.index >= start) & (xrs.index < end)]
        if xrs["xrsb"].notna().sum() == 0:
            msg = f"{goes} has no GOES 1-8 Å values between {start} and {end}"
            raise SdofmError(msg)
    if str(flares) == "goes":
        if xrs is None:
            msg = "the flare list is to be derived from GOES ('goes') but no GOES XRS file is given"
            raise SdofmError(msg)
        fl = detect_flares(xrs).reindex(columns=list(FLARE_COLUMNS))
        fl["noaa_ar"] = fl["noaa_ar"].astype("Int64")
    else:
        fl = read_flare_list(flares)
    fl = fl[(fl["peak"] >= start) & (fl["peak"] < end)]
    daily = read_f107(f107)
    if daily.attrs.get("cadence") == "monthly":
        msg = (
            f"{f107} holds monthly F10.7 means (NOAA solar-cycle indices): the tasks need daily "
            f"values: give NOAA's daily f107_cm_flux.json, a LISIRD CSV or Penticton's flux table"
        )
        raise SdofmError(msg)
    daily = daily[(daily.index >= start.floor("D")) & (daily.index < end)]
    if daily["observed_flux"].notna().sum() + daily["adjusted_flux"].notna().sum() == 0:
        msg = f"{f107} has no F10.7 values between {start:%Y-%m-%d} and {end:%Y-%m-%d}"
        raise SdofmError(msg)
    with atomic_output(out) as tmp:
        tmp.mkdir()
        fl.to_csv(tmp / EVENT_FILES["flares"], index=False, date_format="%Y-%m-%dT%H:%M:%S")
        daily.to_csv(tmp / EVENT_FILES["f107"], date_format="%Y-%m-%d", float_format="%.2f")
        if xrs is not None:
            write_goes_csv(xrs, tmp / EVENT_FILES["goes"])
    counts = {"flares": len(fl), "f107_days": len(daily)}
    return counts | ({"goes_samples": len(xrs)} if xrs is not None else {})
