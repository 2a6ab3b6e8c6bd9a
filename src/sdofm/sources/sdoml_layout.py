"""The facts of the SDOML v2 layout: EVE lines and their attrs, array shapes, codecs, geometry.

From the public SDOML v2 conversion code (fdl-sdoml-v2): AIA and HMI frames are (N, 512, 512)
float32 in chunks of 15 frames; EVE MEGS-A is one float32 array per line plus ``Time``
(``<U23``) with zarr's default chunking; everything Blosc zstd level 5 with bit-shuffle. Every
FITS keyword (but ``SIMPLE``, comments and history) is a per-frame attrs list; the Sun is scaled
to 976″ about the reference pixel and mean-downsampled by ``f``, keeping ``RSUN_OBS`` as
observed, with ``CDELT = cdelt·f·RSUN_OBS/976``, ``CRPIX = crpix/f``, ``NAXIS = naxis/f``,
``X0_MP/Y0_MP`` (AIA) in units of the downsampled CCD and ``PIXLUNIT`` (``DN/s`` or ``Gauss``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import Any

import numcodecs
import numpy as np
import pandas as pd
import zarr

__all__ = [
    "AIA_CCD",
    "COMPRESSOR",
    "EVE_GROUP",
    "EVE_LINES",
    "EVE_TIME_DTYPE",
    "FRAME_CHUNK",
    "RSUN_SDOML",
    "create_eve_arrays",
    "create_frame_array",
    "eve_line_attrs",
    "format_eve_times",
    "sdoml_geometry",
]

# SDOML v2 compresses with Blosc zstd level 5 and bit-shuffle.
COMPRESSOR = numcodecs.Blosc(cname="zstd", clevel=5, shuffle=numcodecs.Blosc.BITSHUFFLE)
EVE_GROUP = "MEGS-A"
RSUN_SDOML = 976.0  # arcsec: every SDOML image shows the Sun at this radius
FRAME_CHUNK = 15  # frames per chunk of the AIA and HMI arrays
AIA_CCD = 4096  # pixels per side of the AIA CCD, the frame of X0_MP/Y0_MP
EVE_TIME_DTYPE = "<U23"  # "2010-05-01 00:00:00.000"
# The 39 MEGS-A lines of SDOML v2 in the store's order: name, ion, wavelength (nm), log10 T (K)
# of peak formation, as in EVE's level-2 line list. Repeated ions get "_2", "_3".
EVE_LINES: tuple[tuple[str, str, float, float], ...] = (
    ("Fe XVIII", "Fe XVIII", 9.393, 6.81),
    ("Fe VIII", "Fe VIII", 13.124, 5.57),
    ("Fe XX", "Fe XX", 13.285, 7.02),
    ("Fe IX", "Fe IX", 17.107, 5.81),
    ("Fe X", "Fe X", 17.725, 6.04),
    ("Fe XI", "Fe XI", 18.044, 6.13),
    ("Fe XII", "Fe XII", 19.512, 6.19),
    ("Fe XIII", "Fe XIII", 20.204, 6.27),
    ("Fe XIV", "Fe XIV", 21.132, 6.3),
    ("He II", "He II", 25.632, 4.92),
    ("Fe XV", "Fe XV", 28.415, 6.35),
    ("He II_2", "He II", 30.378, 4.7),
    ("Fe XVI", "Fe XVI", 33.541, 6.43),
    ("Fe XVI_2", "Fe XVI", 36.076, 6.43),
    ("Mg IX", "Mg IX", 36.807, 5.99),
    ("S XIV", "S XIV", 44.569, 6.27),
    ("Ne VII", "Ne VII", 46.522, 5.71),
    ("Si XII", "Si XII", 49.937, 6.29),
    ("Si XII_2", "Si XII", 52.07, 6.29),
    ("O III", "O III", 52.58, 4.92),
    ("He I", "He I", 53.703, 4.16),
    ("O IV", "O IV", 55.437, 5.19),
    ("Fe XX_2", "Fe XX", 56.76, 7.02),
    ("He I_2", "He I", 58.433, 4.16),
    ("Fe XIX", "Fe XIX", 59.22, 6.93),
    ("O III_2", "O III", 59.96, 4.92),
    ("Mg X", "Mg X", 60.979, 6.05),
    ("Mg X_2", "Mg X", 62.494, 6.05),
    ("O V", "O V", 62.973, 5.37),
    ("O II", "O II", 71.85, 4.47),
    ("Fe XX_3", "Fe XX", 72.156, 7.02),
    ("Ne VIII", "Ne VIII", 77.041, 5.81),
    ("O IV_2", "O IV", 78.77, 5.19),
    ("O II_2", "O II", 83.4, 4.47),
    ("H I", "H I", 94.974, 4.2),
    ("H I_2", "H I", 97.254, 4.2),
    ("C III", "C III", 97.702, 4.84),
    ("H I_3", "H I", 102.572, 4.2),
    ("O VI", "O VI", 103.191, 5.47),
)
_LINES = {name: (ion, wave, logt) for name, ion, wave, logt in EVE_LINES}


def eve_line_attrs(name: str) -> dict[str, str]:
    """SDOML v2's attrs of one EVE line array (strings: ``"9.393 nm"``, ``"6.81 MK"``, ion)."""
    ion, wave, logt = _LINES[name]
    return {"wavelength": f"{wave} nm", "logT": f"{logt} MK", "ion": ion}


def eve_line_label(name: str) -> str:
    """A line for a reader: its ion and wavelength (``"He II_2"`` -> ``"He II 30.38 nm"``);
    names outside SDOML v2's list are returned as they are."""
    if name not in _LINES:
        return name
    ion, wave, _ = _LINES[name]
    return f"{ion} {wave:.2f} nm"


def format_eve_times(times: Iterable[pd.Timestamp]) -> np.ndarray:
    """``Time`` values as SDOML v2 writes them: ``<U23`` ``%Y-%m-%d %H:%M:%S.%f`` (ms)."""
    text = [t.strftime("%Y-%m-%d %H:%M:%S.%f")[:-3] for t in pd.DatetimeIndex(list(times))]
    return np.array(text, dtype=EVE_TIME_DTYPE)


def create_eve_arrays(root: zarr.Group, n: int, names: Sequence[str]) -> dict[str, zarr.Array]:
    """The MEGS-A group with ``Time`` and one float32 array per line, ``n`` rows each.

    Chunks are zarr's default for the shape (as the conversion left them); lines unknown to
    SDOML v2 get no attrs.
    """
    group = root.require_group(EVE_GROUP)
    arrays = {
        "Time": group.create_array(
            "Time", shape=(n,), dtype=EVE_TIME_DTYPE, compressors=COMPRESSOR, overwrite=True
        )
    }
    for name in names:
        arr = group.create_array(
            name, shape=(n,), dtype="float32", compressors=COMPRESSOR, overwrite=True
        )
        if name in _LINES:
            arr.update_attributes(eve_line_attrs(name))
        arrays[name] = arr
    return arrays


def create_frame_array(group: zarr.Group, name: str, n: int, size: int) -> zarr.Array:
    """An AIA/HMI array: (n, size, size) float32, 15-frame chunks, Blosc zstd 5 bit-shuffle."""
    return group.create_array(
        name,
        shape=(n, size, size),
        chunks=(FRAME_CHUNK, size, size),
        dtype="float32",
        compressors=COMPRESSOR,
        overwrite=True,
    )


def _json(value: Any) -> Any:
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:  # most keywords: as they are
        return value
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def sdoml_geometry(meta: dict[str, Any], f: float, *, instrument: str) -> dict[str, Any]:
    """One frame's keywords after SDOML v2's rescaling to 976″ and mean-downsampling by ``f``.

    ``meta`` holds the input image's FITS keywords (upper case; CDELT, CRPIX, NAXIS in its
    pixels, RSUN_OBS as observed, X0_MP/Y0_MP in AIA CCD pixels). Returns every keyword
    (JSON-safe) with the SDOML v2 convention applied: RSUN_OBS kept, ``CDELT = cdelt·f·RSUN_OBS
    /976``, ``CRPIX = crpix/f``, ``NAXIS = naxis/f``, ``R_SUN = RSUN_OBS/CDELT`` (976/(cdelt·f)
    pixels), X0_MP/Y0_MP scaled to the output size (AIA) and PIXLUNIT.
    """
    out = {
        k.upper(): _json(v)
        for k, v in meta.items()
        if k.upper() not in ("SIMPLE", "KEYCOMMENTS", "HISTORY", "COMMENT")
    }
    rsun = float(out["RSUN_OBS"])
    for axis in ("1", "2"):
        out[f"NAXIS{axis}"] = float(out[f"NAXIS{axis}"]) / f
        out[f"CDELT{axis}"] = float(out[f"CDELT{axis}"]) * f * rsun / RSUN_SDOML
        out[f"CRPIX{axis}"] = float(out[f"CRPIX{axis}"]) / f
    out["R_SUN"] = rsun / out["CDELT1"]
    if instrument == "aia":
        size = out["NAXIS1"]
        for key in ("X0_MP", "Y0_MP"):
            if out.get(key) is not None:
                out[key] = float(out[key]) * size / AIA_CCD
        out["PIXLUNIT"] = "DN/s"
    else:
        out["PIXLUNIT"] = "Gauss"
    return out
