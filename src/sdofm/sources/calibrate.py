"""One level-1 AIA/HMI FITS file to one SDOML v2 frame, or a one-line reason it cannot be.

The file's kind is checked first (JPEG 2000 from Helioviewer, netCDF, CDF, images, text are
named, never parsed as FITS); then sunpy reads it, aiapy registers it (level 1.5), AIA is put in
DN/s and corrected for degradation, and the Sun is scaled to 976″ and mean-downsampled with
the keywords converted as SDOML v2 converts them (`sdoml_geometry`).
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import ndimage

from sdofm.sources.sdoml import AIA_CHANNELS, HMI_LOS, parse_tobs
from sdofm.sources.sdoml_layout import RSUN_SDOML, sdoml_geometry

__all__ = ["HMI_LOS", "Reject", "file_kind", "header_time", "one_line", "process_file"]

MIN_EXPTIME = 0.01  # SDOML divides by max(EXPTIME, 0.01) s
REQUIRED = {
    "aia": ("EXPTIME", "WAVELNTH", "CDELT1", "CDELT2", "CRPIX1", "CRPIX2", "RSUN_OBS"),
    "hmi": ("CDELT1", "CDELT2", "CRPIX1", "CRPIX2", "RSUN_OBS"),
}
# Leading bytes of the file kinds we name rather than try to read as FITS.
_MAGIC = (
    (b"\x00\x00\x00\x0cjP  \r\n\x87\n", "JPEG 2000 (JP2)"),
    (b"\xff\x4f\xff\x51", "JPEG 2000 codestream (J2K)"),
    (b"\x89HDF\r\n\x1a\n", "HDF5/netCDF-4"),
    (b"CDF\x01", "netCDF-3"),
    (b"CDF\x02", "netCDF-3"),
    (b"\xcd\xf3\x00\x01", "NASA CDF"),
    (b"#ASDF", "ASDF"),
    (b"\x89PNG", "PNG image"),
    (b"\xff\xd8\xff", "JPEG image"),
)


class Reject(Exception):
    """A file that is quarantined; the message is the QC reason (one line)."""


def one_line(err: BaseException) -> str:
    text = " ".join(str(err).split())
    return f"{type(err).__name__}: {text[:200]}"


def _jp2_summary(path: Path) -> str:
    """What a Helioviewer JP2 shows, from the FITS keywords in its XML box (no decoder needed)."""
    head = path.read_bytes()[:200_000]
    found = {}
    for key in ("TELESCOP", "INSTRUME", "WAVELNTH", "DATE-OBS", "DATE_OBS", "T_OBS"):
        m = re.search(rf"<{key}(\s[^>]*)?>([^<]*)</{key}>".encode(), head, re.IGNORECASE)
        if m:
            found[key] = m.group(2).decode(errors="replace").strip()
    source = "/".join(dict.fromkeys(found[k] for k in ("TELESCOP", "INSTRUME") if k in found))
    what = " ".join(x for x in (source, found.get("WAVELNTH", "")) if x)
    when = found.get("T_OBS") or found.get("DATE-OBS") or found.get("DATE_OBS")
    return f"{what} at {when}" if what and when else what or "an image"


def file_kind(path: Path) -> str:
    """``fits`` for FITS (plain or gzip), else raise `Reject` naming the file's kind."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head.startswith(b"SIMPLE  =") or head.startswith(b"\x1f\x8b"):
        return "fits"
    if not head:
        raise Reject("empty file (0 bytes)")
    for magic, kind in _MAGIC:
        if head.startswith(magic):
            if kind.startswith("JPEG 2000"):
                raise Reject(
                    f"unsupported file kind {kind} (Helioviewer: {_jp2_summary(path)}): scaled "
                    f"8-bit pixels, not DN/s or gauss; ingest takes level-1 FITS"
                )
            raise Reject(f"unsupported file kind {kind}: not a FITS image")
    if all(32 <= b < 127 or b in (9, 10, 13) for b in head):
        raise Reject("unsupported file kind text: not a FITS image (no SIMPLE card)")
    raise Reject("unreadable FITS: unknown binary file (no SIMPLE card)")


def header_time(path: Path) -> pd.Timestamp:
    """Observation time from the header alone (T_OBS, else DATE-OBS), to order the files."""
    from astropy.io import fits

    file_kind(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with fits.open(path) as hdus:
                headers = [h.header for h in hdus]
    except Exception as err:
        raise Reject(f"unreadable FITS: {one_line(err)}") from None
    size = path.stat().st_size
    if size % 2880 and not path.read_bytes()[:2] == b"\x1f\x8b":  # whole 2880-byte blocks
        raise Reject(f"truncated FITS: {size} bytes is not a whole number of 2880-byte blocks")
    for header in headers:
        for key in ("T_OBS", "DATE-OBS"):
            if header.get(key):
                try:
                    return parse_tobs([header[key]])[0]
                except Exception:
                    raise Reject(f"unparsable {key} {header[key]!r}") from None
    raise Reject("no T_OBS or DATE-OBS keyword")


def _zoom_about(data: np.ndarray, centre: tuple[float, float], zoom: float) -> np.ndarray:
    """Magnify ``data`` by ``zoom`` about ``centre`` (row, col, 0-based), which stays put."""
    if abs(zoom - 1) < 1e-9:
        return data
    offset = np.array(centre) * (1 - 1 / zoom)
    return ndimage.affine_transform(
        data, np.full(2, 1 / zoom), offset=offset, order=1, mode="constant", cval=0.0
    )


def _read(path: Path, instrument: str, image_size: int):
    """sunpy's map of the file and its data, after every check that needs no computation."""
    import sunpy.map
    from sunpy.map.sources import AIAMap, HMIMap

    try:
        m = sunpy.map.Map(path)
        raw = np.asarray(m.data, dtype=np.float64)
    except Exception as err:
        raise Reject(f"unreadable FITS: {one_line(err)}") from None
    if isinstance(m, list):
        raise Reject(f"{len(m)} images in one file; expected one")
    want = AIAMap if instrument == "aia" else HMIMap
    if not isinstance(m, want):
        raise Reject(f"not an {instrument.upper()} image (read as {type(m).__name__})")
    if instrument == "hmi":  # what the image is comes before how big it is
        content = str(m.meta.get("content", "magnetogram"))
        if "magnetogram" not in content.lower():
            raise Reject(f"not a magnetogram (CONTENT={content!r}): only HMI magnetograms")
    missing = [k for k in REQUIRED[instrument] if m.meta.get(k.lower()) is None]
    if not (m.meta.get("t_obs") or m.meta.get("date-obs")):
        missing.insert(0, "T_OBS/DATE-OBS")
    if missing:
        raise Reject(f"missing keywords {', '.join(missing)}")
    if raw.ndim != 2 or raw.shape[0] != raw.shape[1]:
        raise Reject(f"image is {raw.shape}, not square")
    n = raw.shape[0]
    if n % image_size:
        raise Reject(f"cannot mean-downsample {n}x{n} to {image_size}x{image_size}")
    finite = np.isfinite(raw)
    if not finite.any():
        raise Reject("all pixels are NaN")
    if instrument == "aia" and not (raw[finite] > 0).any():
        raise Reject("no positive pixels (negative-only data)")
    if instrument == "hmi" and not (raw[finite] != 0).any():
        raise Reject("all pixels are zero")
    return m, raw


def _aia_units(m, data: np.ndarray, meta: dict, table) -> tuple[str, np.ndarray]:
    """Channel name and DN/s corrected for degradation; DEG_COR, PIXLUNIT in ``meta``."""
    import astropy.units as u
    from aiapy.calibrate import degradation

    name = f"{round(m.wavelength.to_value(u.AA))}A"
    if name not in AIA_CHANNELS:
        raise Reject(f"channel {name} is not an SDOML AIA channel")
    exptime = max(float(m.exposure_time.to_value(u.s)), MIN_EXPTIME)
    deg = 1.0
    if table is not None:
        try:
            with warnings.catch_warnings():  # ERFA's "dubious year" for far T_STOP rows
                warnings.simplefilter("ignore")
                factor = degradation(m.wavelength, m.reference_date, correction_table=table)
            deg = float(np.ravel(factor.value)[0])
        except Exception as err:
            raise Reject(f"no degradation factor: {one_line(err)}") from None
    if not meta.get("T_OBS"):
        meta["T_OBS"] = m.reference_date.utc.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-4] + "Z"
    meta.update({"DEG_COR": round(deg, 6), "BUNIT": "DN/s"})
    return name, data / (exptime * deg)


def process_file(
    path: Path, instrument: str, image_size: int, table
) -> tuple[str, np.ndarray, dict[str, Any]]:
    """Calibrate one file to an SDOML v2 frame: (array name, image, per-frame keywords).

    HMI magnetograms are line-of-sight (``Blos``): level-1 series carry no vector field.
    """
    import sunpy.map
    from aiapy.calibrate import register

    file_kind(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m, raw = _read(path, instrument, image_size)
        try:
            # sunpy's rotate fails on integer images (JSOC AIA level 1 is int16): use floats.
            reg = register(sunpy.map.Map(raw, m.meta), missing=0.0)  # level 1.5
        except Exception as err:
            raise Reject(f"registration failed: {one_line(err)}") from None
    data = np.where(np.isfinite(reg.data), reg.data, 0.0)
    meta = {k.upper(): v for k, v in reg.meta.items()}
    if instrument == "aia":
        name, data = _aia_units(m, data, meta, table)
    else:
        name = HMI_LOS
        meta["BUNIT"] = "Gauss"
        if not meta.get("T_OBS"):
            meta["T_OBS"] = m.reference_date.tai.strftime("%Y.%m.%d_%H:%M:%S") + "_TAI"
    # SDOML v2: the Sun to 976″ about the reference pixel (register put it at the centre),
    # then the mean of f×f blocks; the keywords follow (RSUN_OBS as observed).
    rsun = float(meta["RSUN_OBS"])
    centre = (float(meta["CRPIX2"]) - 1, float(meta["CRPIX1"]) - 1)
    data = _zoom_about(data, centre, RSUN_SDOML / rsun)
    n = data.shape[0]
    f = n // image_size
    frame = data.reshape(image_size, f, image_size, f).mean(axis=(1, 3)).astype(np.float32)
    meta.update({"NAXIS1": n, "NAXIS2": n, "BITPIX": -32, "SOURCE_FILE": path.name})
    return name, frame, sdoml_geometry(meta, f, instrument=instrument)
