"""Ingest JSOC level-1 AIA/HMI FITS files into a store in the SDOML v2 layout."""

from __future__ import annotations

import shutil
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr

from sdofm import SdofmError
from sdofm.io import atomic_output
from sdofm.sources.calibrate import Reject, header_time, one_line, process_file
from sdofm.sources.sdoml import HMI_LOS, frame_times, parse_tobs
from sdofm.sources.sdoml_layout import RSUN_SDOML, create_frame_array

__all__ = ["HMI_LOS", "RSUN_ARCSEC", "ingest_fits", "qc_path"]

RSUN_ARCSEC = RSUN_SDOML  # SDOML v2 scales every image to this solar radius


def qc_path(out: str | Path) -> Path:
    """The QC table written beside the store: ``<out>.qc.csv``."""
    out = Path(out)
    return out.with_name(f"{out.name}.qc.csv")


class _Array:
    """One frame array of the store being written, with its per-frame attrs lists."""

    def __init__(self, group: zarr.Group, name: str, size: int):
        if name in group:
            self.array = group[name]
            if self.array.shape[1:] != (size, size):
                msg = (
                    f"store array {self.array.path} has {self.array.shape[1:]} frames, "
                    f"not {size}x{size}: ingest with image_size={self.array.shape[1]}"
                )
                raise SdofmError(msg)
            self.times = list(frame_times(self.array))
        else:
            self.array = create_frame_array(group, name, 0, size)
            self.times = []
        n = len(self.times)
        attrs = self.array.attrs.asdict()
        self.lists = {k: v for k, v in attrs.items() if isinstance(v, list) and len(v) == n}

    def append(self, frame: np.ndarray, meta: dict, when: pd.Timestamp) -> None:
        n = len(self.times)
        self.array.append(frame[None], axis=0)
        for key in meta.keys() - self.lists.keys():
            self.lists[key] = [None] * n
        for key, values in self.lists.items():
            values.append(meta.get(key))
        self.times.append(when)

    def finish(self) -> None:
        """Write the attrs; put the frames in time order if an append landed out of order."""
        order = np.argsort(pd.DatetimeIndex(self.times).to_numpy(), kind="stable")
        if np.any(order != np.arange(len(order))):
            self.array[:] = self.array[:][order]
            self.lists = {k: [v[i] for i in order] for k, v in self.lists.items()}
        self.array.update_attributes(self.lists)


def _write_qc(out: Path, rows: list[dict[str, str]]) -> Path:
    path = qc_path(out)
    with atomic_output(path) as tmp:
        pd.DataFrame(rows, columns=["file", "reason"]).to_csv(tmp, index=False)
    return path


def ingest_fits(
    paths: Iterable[str | Path],
    out: str | Path,
    *,
    image_size: int,
    correction_table: str | Path | None = None,
    instrument: str = "aia",
    window: tuple[pd.Timestamp, pd.Timestamp] | None = None,
) -> dict[str, Any]:
    """Calibrate level-1 FITS files and append them to the SDOML v2 store ``out``.

    AIA (``instrument="aia"``): `aiapy.calibrate.register` (level 1 → 1.5), divide by
    max(EXPTIME, 0.01 s) to DN/s, divide by the degradation factor of ``correction_table`` (an
    aiapy ``aia_V*_response_table.txt``; recorded as DEG_COR, 1.0 without a table), scale the
    Sun to a 976″ radius about the reference pixel, mean-downsample to ``image_size``² and
    append to ``<year>/<wavelength>A``. HMI (``instrument="hmi"``): level-1 magnetograms are
    line-of-sight, written as their own product ``Blos`` (G), never as the vector field's Bz.
    T_OBS is kept as in the header (TAI for HMI).

    Every header keyword becomes a per-frame attrs list (None where a frame lacks it), converted
    as SDOML v2 does (`sdoml_geometry`: RSUN_OBS as observed, CDELT = cdelt·f·RSUN_OBS/976,
    CRPIX = crpix/f, X0_MP/Y0_MP). Unusable files (another file kind such as Helioviewer JP2,
    unreadable, wrong instrument or content, missing keywords, all-NaN or negative-only data, a
    time already in the store) are skipped and listed in ``<out>.qc.csv`` with a one-line
    reason. With ``window`` = (start, end), files observed outside [start, end) are passed over
    (not quarantined). The store is written to a temporary copy and renamed at the end.
    Returns ``{"files", "frames" (per array), "quarantined" (file, reason), "qc", "notes"}``.
    """
    if instrument not in ("aia", "hmi"):
        msg = f"instrument must be 'aia' or 'hmi', got {instrument!r}"
        raise SdofmError(msg)
    if image_size < 1:
        msg = f"image_size must be a positive integer, got {image_size}"
        raise SdofmError(msg)
    out = Path(out)
    notes: list[str] = []
    table = None
    if instrument == "aia" and correction_table is not None:
        from aiapy.calibrate.util import get_correction_table

        table_path = Path(correction_table)  # a Path: aiapy would fetch "JSOC"/"SSW" strings
        if not table_path.is_file():
            msg = f"AIA correction table {table_path} does not exist"
            raise SdofmError(msg)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                table = get_correction_table(table_path)
        except Exception as err:
            msg = f"cannot read AIA correction table {table_path}: {one_line(err)}"
            raise SdofmError(msg) from None
    elif instrument == "aia":
        notes.append("no correction table: degradation not corrected (DEG_COR = 1.0)")

    rejected: list[dict[str, str]] = []
    timed = []
    for p in map(Path, paths):
        try:
            when = header_time(p)
        except Reject as why:
            rejected.append({"file": str(p), "reason": str(why)})
            continue
        if window is None or window[0] <= when < window[1]:
            timed.append((when, str(p), p))
    timed.sort()
    if window is not None and not timed:
        _write_qc(out, rejected)
        msg = f"no {instrument.upper()} FITS observed between {window[0]} and {window[1]}"
        raise SdofmError(msg)

    counts: dict[str, int] = {}
    try:
        with atomic_output(out) as tmp:
            if out.exists():
                shutil.copytree(out, tmp)
            root = zarr.open_group(tmp, mode="a", zarr_format=2)
            arrays: dict[tuple[str, str], _Array] = {}
            seen: dict[str, set] = {}
            for _, _, p in timed:
                try:
                    name, frame, meta = process_file(p, instrument, image_size, table)
                    when = parse_tobs([meta["T_OBS"]])[0]
                    key = (str(when.year), name)
                    if key not in arrays:
                        arrays[key] = _Array(root.require_group(key[0]), name, image_size)
                        seen.setdefault(name, set()).update(arrays[key].times)
                    if when in seen[name]:
                        raise Reject(f"duplicate: {name} at T_OBS {meta['T_OBS']} already stored")
                except Reject as why:
                    rejected.append({"file": str(p), "reason": str(why)})
                    continue
                arrays[key].append(frame, meta, when)
                seen[name].add(when)
                counts[name] = counts.get(name, 0) + 1
            if not counts:
                msg = (
                    f"no usable {instrument.upper()} FITS among {len(rejected)} files: "
                    f"see {qc_path(out)}"
                )
                raise SdofmError(msg)
            for arr in arrays.values():
                arr.finish()
            root.update_attributes({"sdofm_source": f"ingest of level-1 {instrument.upper()} FITS"})
    finally:
        qc = _write_qc(out, rejected)
    return {
        "files": sum(counts.values()),
        "frames": counts,
        "quarantined": rejected,
        "qc": qc,
        "notes": notes,
    }
