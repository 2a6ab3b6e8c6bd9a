"""Ingest JSOC level-1 AIA/HMI FITS files into a store in the SDOML v2 layout."""

from __future__ import annotations

import math
import shutil
import warnings
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import zarr
from scipy import ndimage

from sdofm import SdofmError
from sdofm.io import atomic_output
from sdofm.sources.sdoml import AIA_CHANNELS, COMPRESSOR, frame_times, parse_tobs

__all__ = ["RSUN_ARCSEC", "ingest_fits", "qc_path"]

RSUN_ARCSEC = 976.0  # SDOML v2 scales every image to this solar radius
MIN_EXPTIME = 0.01  # SDOML divides by max(EXPTIME, 0.01) s
CHUNK = 15  # frames per chunk, as in SDOML v2
REQUIRED = {
    "aia": ("EXPTIME", "WAVELNTH", "CDELT1", "CDELT2", "CRPIX1", "CRPIX2", "RSUN_OBS"),
    "hmi": ("CDELT1", "CDELT2", "CRPIX1", "CRPIX2", "RSUN_OBS"),
}
# Header statistics (DATAMEAN, DATAP01, ...) are kept as JSOC wrote them: they describe raw DN.
_SKIP_META = {"keycomments"}


class _Reject(Exception):
    """A file that is quarantined; the message is the QC reason."""


def qc_path(out: str | Path) -> Path:
    """The QC table written beside the store: ``<out>.qc.csv``."""
    out = Path(out)
    return out.with_name(f"{out.name}.qc.csv")


def _one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:200]}"


def _header_time(path: Path) -> pd.Timestamp:
    """Observation time from the header alone (T_OBS, else DATE-OBS), to order the files."""
    from astropy.io import fits

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path) as hdus:
                headers = [h.header for h in hdus]
    except Exception as err:
        raise _Reject(f"unreadable FITS: {_one_line(err)}") from None
    size = path.stat().st_size
    if size % 2880:  # FITS files are whole 2880-byte blocks
        raise _Reject(f"truncated FITS: {size} bytes is not a whole number of 2880-byte blocks")
    for header in headers:
        for key in ("T_OBS", "DATE-OBS"):
            if header.get(key):
                try:
                    return parse_tobs([header[key]])[0]
                except Exception:
                    raise _Reject(f"unparsable {key} {header[key]!r}") from None
    raise _Reject("no T_OBS or DATE-OBS keyword")


def _json_value(value: Any) -> Any:
    """A header value as a JSON-safe attrs entry (non-finite floats become None)."""
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _rescale(data: np.ndarray, centre: tuple[float, float], zoom: float) -> np.ndarray:
    """Magnify ``data`` by ``zoom`` about ``centre`` (row, col, 0-based) onto the image centre."""
    n = data.shape[0]
    c_out = (n - 1) / 2
    if abs(zoom - 1) < 1e-9 and max(abs(centre[0] - c_out), abs(centre[1] - c_out)) < 1e-6:
        return data
    offset = np.array(centre) - c_out / zoom
    return ndimage.affine_transform(
        data, np.full(2, 1 / zoom), offset=offset, order=1, mode="constant", cval=0.0
    )


def _process(path: Path, instrument: str, image_size: int, table) -> tuple[str, np.ndarray, dict]:
    """Calibrate one file to an SDOML frame: (array name, image, header keywords)."""
    import astropy.units as u
    import sunpy.map
    from aiapy.calibrate import degradation, register
    from sunpy.map.sources import AIAMap, HMIMap

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            m = sunpy.map.Map(path)
            raw = np.asarray(m.data, dtype=np.float64)
        except Exception as err:
            raise _Reject(f"unreadable FITS: {_one_line(err)}") from None
        if isinstance(m, list):
            raise _Reject(f"{len(m)} images in one file; expected one")
        want = AIAMap if instrument == "aia" else HMIMap
        if not isinstance(m, want):
            raise _Reject(f"not an {instrument.upper()} image (read as {type(m).__name__})")
        missing = [k for k in REQUIRED[instrument] if m.meta.get(k.lower()) is None]
        if not (m.meta.get("t_obs") or m.meta.get("date-obs")):
            missing.insert(0, "T_OBS/DATE-OBS")
        if missing:
            raise _Reject(f"missing keywords {', '.join(missing)}")
        if raw.ndim != 2 or raw.shape[0] != raw.shape[1]:
            raise _Reject(f"image is {raw.shape}, not square")
        n = raw.shape[0]
        if n % image_size:
            raise _Reject(f"cannot mean-downsample {n}x{n} to {image_size}x{image_size}")
        finite = np.isfinite(raw)
        if not finite.any():
            raise _Reject("all pixels are NaN")
        if instrument == "aia" and not (raw[finite] > 0).any():
            raise _Reject("no positive pixels (negative-only data)")
        if instrument == "hmi":
            if "magnetogram" not in str(m.meta.get("content", "magnetogram")).lower():
                raise _Reject(f"not a magnetogram (CONTENT={m.meta.get('content')!r})")
            if not (raw[finite] != 0).any():
                raise _Reject("all pixels are zero")
        try:
            # sunpy's rotate fails on integer images (JSOC AIA level 1 is int16): use floats.
            m = sunpy.map.Map(raw, m.meta)
            reg = register(m, missing=0.0)  # level 1 → 1.5: north up, centred, 0.6″·4096/N
        except Exception as err:
            raise _Reject(f"registration failed: {_one_line(err)}") from None
    data = np.where(np.isfinite(reg.data), reg.data, 0.0)
    meta = {k.upper(): v for k, v in reg.meta.items() if k not in _SKIP_META}
    if instrument == "aia":
        name = f"{round(m.wavelength.to_value(u.AA))}A"
        if name not in AIA_CHANNELS:
            raise _Reject(f"channel {name} is not an SDOML AIA channel")
        exptime = max(float(m.exposure_time.to_value(u.s)), MIN_EXPTIME)
        deg = 1.0
        if table is not None:
            try:
                with warnings.catch_warnings():  # ERFA's "dubious year" for far T_STOP rows
                    warnings.simplefilter("ignore")
                    factor = degradation(m.wavelength, m.reference_date, correction_table=table)
                deg = float(np.ravel(factor.value)[0])
            except Exception as err:
                raise _Reject(f"no degradation factor: {_one_line(err)}") from None
        data = data / (exptime * deg)
        if not meta.get("T_OBS"):
            meta["T_OBS"] = m.reference_date.utc.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-4] + "Z"
        meta.update({"DEG_COR": round(deg, 6), "PIXLUNIT": "DN/s", "BUNIT": "DN/s"})
    else:
        name = "Bz"
        if not meta.get("T_OBS"):
            meta["T_OBS"] = m.reference_date.tai.strftime("%Y.%m.%d_%H:%M:%S") + "_TAI"
    # SDOML: scale the Sun to 976″ about disk centre (the disk centre goes to the image centre).
    cdelt = float(meta["CDELT1"])
    rsun = float(meta["RSUN_OBS"])
    centre = (
        float(meta["CRPIX2"]) - 1 - float(meta.get("CRVAL2", 0.0)) / float(meta["CDELT2"]),
        float(meta["CRPIX1"]) - 1 - float(meta.get("CRVAL1", 0.0)) / cdelt,
    )
    data = _rescale(data, centre, RSUN_ARCSEC / rsun)
    f = n // image_size
    frame = data.reshape(image_size, f, image_size, f).mean(axis=(1, 3)).astype(np.float32)
    centre_px = (image_size + 1) / 2
    meta.update(
        {
            "NAXIS1": image_size,
            "NAXIS2": image_size,
            "BITPIX": -32,
            "CDELT1": cdelt * f,
            "CDELT2": float(meta["CDELT2"]) * f,
            "CRPIX1": centre_px,
            "CRPIX2": centre_px,
            "CRVAL1": 0.0,
            "CRVAL2": 0.0,
            "RSUN_OBS": RSUN_ARCSEC,
            "RSUN_OBS_L1": rsun,
            "R_SUN": RSUN_ARCSEC / (cdelt * f),
            "SOURCE_FILE": path.name,
        }
    )
    return name, frame, {k: _json_value(v) for k, v in meta.items()}


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
            self.array = group.create_array(
                name,
                shape=(0, size, size),
                chunks=(CHUNK, size, size),
                dtype="float32",
                compressors=COMPRESSOR,
            )
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
        self.array.attrs.update(self.lists)


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
) -> dict[str, Any]:
    """Calibrate level-1 FITS files and append them to the SDOML v2 store ``out``.

    AIA (``instrument="aia"``): `aiapy.calibrate.register` (level 1 → 1.5), divide by
    max(EXPTIME, 0.01 s) to DN/s, divide by the degradation factor of ``correction_table`` (an
    aiapy ``aia_V*_response_table.txt``; recorded as DEG_COR, 1.0 without a table), scale the
    Sun to a 976″ radius about disk centre, mean-downsample to ``image_size``² and append to
    ``<year>/<wavelength>A``. HMI (``instrument="hmi"``): level-1 files are line-of-sight
    magnetograms, so only ``Bz`` (the LOS field, G) is written; there is no vector field to fill
    Bx/By. T_OBS is kept as in the header (TAI for HMI).

    Every header keyword of the processed map becomes a per-frame attrs list (None where a frame
    lacks it); CDELT, CRPIX, CRVAL, R_SUN, RSUN_OBS (976, the original in RSUN_OBS_L1) and NAXIS
    describe the stored frame. Unusable files (unreadable, wrong instrument, missing keywords,
    all-NaN or negative-only data, a time already in the store) are skipped and listed in
    ``<out>.qc.csv``. The store is written to a temporary copy and renamed at the end.
    Returns ``{"files", "frames" (per array), "quarantined" (file, reason), "qc", "notes"}``.
    """
    if instrument not in REQUIRED:
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
            msg = f"cannot read AIA correction table {table_path}: {_one_line(err)}"
            raise SdofmError(msg) from None
    elif instrument == "aia":
        notes.append("no correction table: degradation not corrected (DEG_COR = 1.0)")

    rejected: list[dict[str, str]] = []
    timed = []
    for p in map(Path, paths):
        try:
            timed.append((_header_time(p), str(p), p))
        except _Reject as why:
            rejected.append({"file": str(p), "reason": str(why)})
    timed.sort()

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
                    name, frame, meta = _process(p, instrument, image_size, table)
                    when = parse_tobs([meta["T_OBS"]])[0]
                    key = (str(when.year), name)
                    if key not in arrays:
                        arrays[key] = _Array(root.require_group(key[0]), name, image_size)
                        seen.setdefault(name, set()).update(arrays[key].times)
                    if when in seen[name]:
                        raise _Reject(f"duplicate: {name} at T_OBS {meta['T_OBS']} already stored")
                except _Reject as why:
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
            root.attrs.update({"sdofm_source": f"ingest of level-1 {instrument.upper()} FITS"})
    finally:
        qc = _write_qc(out, rejected)
    return {
        "files": sum(counts.values()),
        "frames": counts,
        "quarantined": rejected,
        "qc": qc,
        "notes": notes,
    }
