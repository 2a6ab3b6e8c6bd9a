"""F10.7 solar radio flux: LISIRD/NOAA CSV, Penticton text, NOAA SWPC JSON, and LISIRD queries."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from sdofm import SdofmError
from sdofm.sources.tables import json_records, naive_utc, read_csv_checked, read_text

__all__ = ["LISIRD_URL", "fetch_lisird_f107", "read_f107"]

WHAT = "F10.7 file"
F107_MAX = 990.0  # fills such as 999.9 (sfu) are at or above this
LISIRD_URL = "https://lasp.colorado.edu/lisird/latis/dap/penticton_radio_flux.csv"
_MONTH = re.compile(r"^\d{4}-\d{2}$")


def _parse_times(text: list[str], lines: list[int], path: Path, fmt: str | None) -> list:
    out = []
    for s, line in zip(text, lines, strict=True):
        try:
            t = pd.to_datetime(s, format=fmt) if fmt else pd.Timestamp(s)
        except (ValueError, TypeError):
            expected = "YYYYMMDD HHMMSS" if fmt else "an ISO 8601 time"
            msg = f"{path} line {line}: cannot read time {s!r} (expected {expected})"
            raise SdofmError(msg) from None
        if pd.isna(t):
            msg = f"{path} line {line}: the time is empty"
            raise SdofmError(msg)
        out.append(t)
    return out


def _flux(values: list[Any], lines: list[int], path: Path, what: str) -> np.ndarray:
    out = np.full(len(values), np.nan)
    for j, (v, line) in enumerate(zip(values, lines, strict=True)):
        if v is None or (isinstance(v, str) and v.strip() in ("", "nan", "NaN")):
            continue
        try:
            out[j] = float(v)
        except (TypeError, ValueError):
            msg = f"{path} line {line}: {what} {v!r} is not a number (sfu)"
            raise SdofmError(msg) from None
    return out


def _read_penticton(path: Path, text: str) -> pd.DataFrame:
    """NRCan/Penticton text: whitespace columns fluxdate (YYYYMMDD), fluxtime (HHMMSS), ..."""
    rows = [(i + 1, ln.split()) for i, ln in enumerate(text.splitlines()) if ln.strip()]
    header = rows[0][1]
    need = ["fluxdate", "fluxtime", "fluxobsflux", "fluxadjflux"]
    missing = [c for c in need if c not in header]
    if missing:
        msg = f"{path} line {rows[0][0]}: Penticton header lacks {missing} (found {header})"
        raise SdofmError(msg)
    body = [(i, r) for i, r in rows[1:] if not set("".join(r)) <= {"-"}]
    for i, r in body:
        if len(r) < len(header):
            names = " ".join(header)
            msg = f"{path} line {i}: expected {len(header)} columns ({names}), got {len(r)}"
            raise SdofmError(msg)
    col = {name: header.index(name) for name in need}
    lines = [i for i, _ in body]
    stamps = [r[col["fluxdate"]].zfill(8) + r[col["fluxtime"]].zfill(6) for _, r in body]
    return pd.DataFrame(
        {
            "time": _parse_times(stamps, lines, path, "%Y%m%d%H%M%S"),
            "observed_flux": _flux([r[col["fluxobsflux"]] for _, r in body], lines, path, "flux"),
            "adjusted_flux": _flux([r[col["fluxadjflux"]] for _, r in body], lines, path, "flux"),
        }
    )


def _read_json(path: Path) -> tuple[pd.DataFrame, str]:
    """NOAA SWPC JSON: daily ``f107_cm_flux.json`` or monthly observed solar-cycle indices."""
    records = json_records(path, WHAT)
    if not records:
        msg = f"{path} line 1: expected at least one F10.7 record, found an empty array"
        raise SdofmError(msg)
    lines, times, obs, adj = [], [], [], []
    for line, rec in records:
        tkey = next((k for k in ("time_tag", "time-tag", "time") if k in rec), None)
        fkey = next((k for k in ("f10.7", "flux", "observed_flux") if k in rec), None)
        if tkey is None or fkey is None:
            msg = (
                f"{path} line {line}: expected a record with a time ('time_tag' or 'time-tag') "
                f"and a flux ('flux' or 'f10.7'), found keys {sorted(rec)}"
            )
            raise SdofmError(msg)
        if "frequency" in rec and float(rec["frequency"] or 0) != 2800:
            continue  # other radio frequencies in the same feed
        lines.append(line)
        times.append(str(rec[tkey]))
        obs.append(rec[fkey])
        adj.append(rec.get("adjusted_flux"))
    monthly = bool(times) and all(_MONTH.match(t) for t in times)
    frame = pd.DataFrame(
        {
            "time": _parse_times(times, lines, path, "%Y-%m" if monthly else None),
            "observed_flux": _flux(obs, lines, path, "flux"),
            "adjusted_flux": _flux(adj, lines, path, "adjusted flux"),
        }
    )
    return frame, "monthly" if monthly else "daily"


def _read_csv(path: Path) -> pd.DataFrame:
    df = read_csv_checked(path, WHAT)
    pick = {
        "time": [c for c in df.columns if c.startswith("time") or c == "date"],
        "observed_flux": [c for c in df.columns if "obs" in c],
        "adjusted_flux": [c for c in df.columns if "adj" in c],
    }
    if not pick["time"] or not (pick["observed_flux"] or pick["adjusted_flux"]):
        msg = (
            f"{path} line 1: not an F10.7 file: expected columns time, observed_flux, "
            f"adjusted_flux (LISIRD/NOAA CSV), the Penticton fluxdate/fluxtime layout or NOAA "
            f"JSON; found {list(df.columns)}"
        )
        raise SdofmError(msg)
    lines = [int(i) + 2 for i in df.index]
    out = {"time": _parse_times(list(df[pick["time"][0]]), lines, path, None)}
    for key in ("observed_flux", "adjusted_flux"):
        values = list(df[pick[key][0]]) if pick[key] else [None] * len(df)
        out[key] = _flux(values, lines, path, key)
    return pd.DataFrame(out)


def read_f107(path: str | Path) -> pd.DataFrame:
    """F10.7 radio flux in sfu (1e-22 W m^-2 Hz^-1), columns observed_flux, adjusted_flux.

    Reads a NOAA/LISIRD CSV (a ``time`` column, columns containing ``obs`` and ``adj``), the
    NRCan/Penticton text layout (``fluxdate fluxtime ... fluxobsflux fluxadjflux``) and NOAA
    SWPC JSON: the daily ``f107_cm_flux.json`` records (``time_tag``, ``flux``; 2800 MHz) or
    the monthly observed solar-cycle indices (``time-tag`` ``YYYY-MM``, ``f10.7``).

    Daily data: the index is every day from the first to the last (named ``time``, midnight);
    of several measurements a day the one nearest 20 UT (Penticton's noon) is kept. Monthly
    data: one row per month (month start), ``attrs["cadence"] == "monthly"``. Values <= 0 or
    >= 990 (fills such as 999.9) and missing days are NaN. Unreadable times or numbers raise
    SdofmError naming the file line.
    """
    path = Path(path)
    text = read_text(path, WHAT)
    first = next((ln for ln in text.splitlines() if ln.strip()), "")
    cadence = "daily"
    if first.lstrip()[:1] in ("[", "{"):
        raw, cadence = _read_json(path)
    elif first.split() and first.split()[0].lower() == "fluxdate":
        raw = _read_penticton(path, text)
    else:
        raw = _read_csv(path)
    raw["time"] = naive_utc(raw["time"])
    if raw.empty:
        msg = f"{path} has no F10.7 rows"
        raise SdofmError(msg)
    for col in ("observed_flux", "adjusted_flux"):
        v = raw[col].astype(float)
        raw[col] = v.where((v > 0) & (v < F107_MAX))
    if cadence == "monthly":
        out = raw.set_index("time")[["observed_flux", "adjusted_flux"]].sort_index()
        out = out[~out.index.duplicated(keep="first")].asfreq("MS")
        out.attrs["cadence"] = "monthly"
        return out
    day = raw["time"].dt.floor("D")
    raw["_off"] = (raw["time"] - day - pd.Timedelta(hours=20)).abs()
    raw["_day"] = day
    daily = raw.sort_values(["_day", "_off"]).groupby("_day").first()
    daily = daily[["observed_flux", "adjusted_flux"]].astype(float).asfreq("D")
    daily.index = daily.index.rename("time")
    daily.attrs["cadence"] = "daily"
    return daily


def fetch_lisird_f107(start: Any, end: Any, out: str | Path, *, timeout: float = 60.0) -> int:
    """Download Penticton F10.7 for [start, end) from LISIRD's LaTiS server (needs internet).

    Writes the CSV LISIRD serves (``time``, ``observed_flux``, ``adjusted_flux``) to ``out``
    through `atomic_output` and checks that `read_f107` reads it. Returns the number of days.
    """
    import requests

    from sdofm.io import atomic_output

    t0, t1 = pd.Timestamp(start), pd.Timestamp(end)
    query = f"?&time>={t0:%Y-%m-%dT%H:%M:%SZ}&time<{t1:%Y-%m-%dT%H:%M:%SZ}"
    try:
        response = requests.get(LISIRD_URL + query, timeout=timeout)
        response.raise_for_status()
    except requests.RequestException as err:
        text = " ".join(str(err).split())[:200]
        msg = f"LISIRD F10.7 download failed (offline?): {type(err).__name__}: {text}"
        raise SdofmError(msg) from None
    with atomic_output(out) as tmp:
        tmp.write_bytes(response.content)
        days = read_f107(tmp)
    return int(days["observed_flux"].notna().sum())
