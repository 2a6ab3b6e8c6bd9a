"""Level-1 FITS folders (a JSOC export) as a workflow source: one month at a time into stores.

``sources.fits`` names AIA and HMI level-1 files (a glob or a folder; relative to the config
file) and an aiapy correction table. Each month's job ingests the files observed in that month
(plus the alignment tolerance on each side) with `ingest_fits` into ``aia.zarr`` and ``hmi.zarr``
(line-of-sight: ``Blos``), and the month's build partition reads its frames from there. With
the synthetic Sun, unset entries are the mirror's ``fits/`` files and correction table.
"""

from __future__ import annotations

import glob
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import zarr

from sdofm import SdofmError
from sdofm.io import atomic_output
from sdofm.sources.eventsources import config_path
from sdofm.sources.ingest import ingest_fits
from sdofm.sources.sdoml import HMI_COMPONENTS, HMI_LOS

__all__ = ["fits_files", "fits_inputs", "ingest_period", "period_window", "resolve_fits_sources"]

KEYS = ("aia", "hmi", "correction_table")
MIRROR = {"aia": "fits/aia/*.fits", "hmi": "fits/hmi/*.fits", "correction_table": None}
MIRROR_TABLE = "aia_correction_table.txt"


def resolve_fits_sources(
    fits: dict[str, Any] | None,
    data: dict[str, Any],
    *,
    synthetic: bool,
    config_files: Sequence[str | Path] = (),
) -> dict[str, str | None] | None:
    """``sources.fits`` with absolute paths, checked against the channels the run asks for.

    Level-1 HMI files are line-of-sight magnetograms, so with HMI FITS ``data.hmi_components``
    may hold only ``Blos``; without them, no HMI component at all.
    """
    if fits is None:
        return None
    out = {
        k: config_path(v, f"sources.fits.{k}", config_files) if v else None
        for k, v in ((k, fits.get(k)) for k in KEYS)
    }
    if not synthetic and out["aia"] is None:
        msg = "config key 'sources.fits.aia': level-1 FITS runs need AIA files (a glob or folder)"
        raise SdofmError(msg)
    hmi = list(data.get("hmi_components", []))
    has_hmi = out["hmi"] is not None or synthetic
    vector = [c for c in hmi if c in HMI_COMPONENTS]
    if has_hmi and vector:
        msg = (
            f"config key 'data.hmi_components': level-1 HMI FITS are line-of-sight magnetograms, "
            f"not {vector}: use [{HMI_LOS}]"
        )
        raise SdofmError(msg)
    if hmi and not has_hmi:
        msg = "config key 'data.hmi_components': no HMI files in sources.fits.hmi to give them"
        raise SdofmError(msg)
    return out


def fits_files(spec: str | Path) -> list[Path]:
    """The FITS files of a glob pattern or a folder (``*.fits``, ``*.fits.gz``, ``*.fts``)."""
    path = Path(spec)
    if path.is_dir():
        found = [p for pat in ("*.fits", "*.fits.gz", "*.fts") for p in path.glob(pat)]
    else:
        found = [Path(p) for p in glob.glob(str(spec))]
    return sorted(found)


def fits_inputs(resolved: dict[str, str | None] | None) -> dict[str, list[str]]:
    """The files each month's ingest reads (for the rule's inputs); the mirror's are not listed."""
    out: dict[str, list[str]] = {}
    for key in KEYS:
        if resolved and resolved[key]:
            files = fits_files(resolved[key]) if key != "correction_table" else [resolved[key]]
            if not files:
                msg = f"config key 'sources.fits.{key}': no FITS file matches {resolved[key]}"
                raise SdofmError(msg)
            out[key] = [str(f) for f in files]
    return out


def period_window(data: dict[str, Any], period: str) -> tuple[pd.Timestamp, pd.Timestamp]:
    """Partition ``period`` (its months) within [data.start, data.end), widened by the
    alignment tolerance."""
    month = pd.Period(period, freq="M")
    tol = pd.Timedelta(minutes=data["tolerance_minutes"])
    lo = max(month.start_time, pd.Timestamp(data["start"]))
    hi = min((month + data.get("partition_months", 1)).start_time, pd.Timestamp(data["end"]))
    if hi <= lo:
        msg = f"month {period} is outside the data range {data['start']} to {data['end']}"
        raise SdofmError(msg)
    return lo - tol, hi + tol


def ingest_period(
    out: str | Path,
    *,
    data: dict[str, Any],
    period: str,
    aia: Sequence[str | Path] = (),
    hmi: Sequence[str | Path] = (),
    correction_table: str | Path | None = None,
) -> dict[str, Any]:
    """Ingest the ``aia`` and ``hmi`` files observed in month ``period`` into ``out``.

    ``out`` becomes a folder with ``aia.zarr`` and ``hmi.zarr`` (empty stores when no file of
    the month), their QC tables beside them, written through `atomic_output`.
    """
    window = period_window(data, period)
    summary: dict[str, Any] = {"period": period}
    with atomic_output(out) as tmp:
        tmp.mkdir()
        for instrument, files in (("aia", aia), ("hmi", hmi)):
            store = tmp / f"{instrument}.zarr"
            try:
                result = ingest_fits(
                    files,
                    store,
                    image_size=data["image_size"],
                    correction_table=correction_table if instrument == "aia" else None,
                    instrument=instrument,
                    window=window,
                )
            except SdofmError as err:
                if not str(err).startswith(f"no {instrument.upper()} FITS observed between"):
                    raise
                zarr.open_group(store, mode="w", zarr_format=2)  # no file in this month: gaps
                result = {"frames": {}}
            summary[instrument] = result["frames"]
    return summary
