"""Level-1 AIA and HMI headers with every keyword of the real ones, and FITS files carrying them.

The keyword set (and the values of the housekeeping keywords the Sun does not change) is that
of a real level-1 header of each instrument (``level1_keywords.json``: sunpy's test files
``aia_171_level1.fits`` and ``resampled_hmi.fits``, less the heliocentric and geocentric
observer positions HAE*/GAE*, which would contradict the synthetic observer); time, geometry,
observer, exposure and image statistics are set per frame. The same headers, converted, are
the SDOML v2 attrs of the mirror.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from astropy.io import fits

from sdofm.sources.sdoml import format_tai
from sdofm.sources.synthetic.sun import Disk

__all__ = [
    "aia_filename",
    "level1_keywords",
    "observer",
    "write_aia_fits",
    "write_hmi_fits",
]

RSUN_REF_M = 696_000_000.0
AU_M = 149_597_870_700.0
AIA_TELESCOPE = {131: 1, 335: 1, 193: 2, 211: 2, 171: 3, 304: 3, 94: 4, 1600: 4, 1700: 4}
_STATS = {"DATAP01": 1, "DATAP10": 10, "DATAP25": 25, "DATAMEDN": 50, "DATAP75": 75}
_STATS |= {"DATAP90": 90, "DATAP95": 95, "DATAP98": 98, "DATAP99": 99}


@cache
def _templates() -> dict[str, dict[str, Any]]:
    return json.loads(Path(__file__).with_name("level1_keywords.json").read_text())


def aia_filename(channel: str, t: pd.Timestamp) -> str:
    """JSOC export name, e.g. ``aia.lev1.171A_2011-01-01T00_00_07.84Z.image_lev1.fits``."""
    return f"aia.lev1.{channel}_{t.strftime('%Y-%m-%dT%H_%M_%S.%f')[:-4]}Z.image_lev1.fits"


def observer(t: pd.Timestamp) -> tuple[float, float]:
    """SDO's distance from the Sun (m) and the Sun's apparent radius (arcsec) at ``t``.

    Earth's orbit (perihelion about 4 January, eccentricity 0.0167); the radius is that of
    RSUN_REF (696 Mm) seen from there, as AIA's RSUN_OBS: ~976″ in January, ~944″ in July.
    """
    dsun = AU_M * (1 - 0.0167 * np.cos(2 * np.pi * (t.dayofyear - 4) / 365.25))
    return float(dsun), float(np.rad2deg(np.arcsin(RSUN_REF_M / dsun)) * 3600)


def _statistics(image: np.ndarray) -> dict[str, float]:
    """DATAMIN … DATAP99 of an image (percentiles and moments from at most 256² pixels)."""
    step = max(1, image.shape[-1] // 256)
    values = np.asarray(image[::step, ::step], np.float64).ravel()
    q = np.percentile(values, list(_STATS.values()))
    mean, std = float(values.mean()), float(values.std())
    z = (values - mean) / std if std > 0 else np.zeros_like(values)
    return {
        "DATAMIN": float(image.min()),
        "DATAMAX": float(image.max()),
        "DATAMEAN": round(mean, 4),
        "DATARMS": round(std, 4),
        "DATASKEW": round(float((z**3).mean()), 4),
        "DATAKURT": round(float((z**4).mean() - 3), 4),
        **{k: float(v) for k, v in zip(_STATS, q, strict=True)},
    }


def level1_keywords(
    instrument: str,
    image: np.ndarray,
    *,
    t_obs: pd.Timestamp,
    size: int,
    rsun_px: float,
    b0_deg: float,
    exptime: float = 0.0,
    channel: str = "",
) -> dict[str, Any]:
    """Every keyword of a level-1 ``instrument`` (``aia``/``hmi``) header for one image.

    ``image`` (raw DN for AIA, G for HMI) gives the statistics keywords; the geometry is a
    ``size``² image with the disk (``rsun_px`` pixels, the observed radius) at its centre.
    """
    dsun, rsun_obs = observer(t_obs)
    cdelt = rsun_obs / rsun_px
    centre = (size + 1) / 2  # FITS pixels are 1-based
    keys = dict(_templates()[instrument])
    keys.update(
        {
            "BITPIX": 16 if instrument == "aia" else -32,
            "NAXIS": 2,
            "NAXIS1": size,
            "NAXIS2": size,
            "DATE": "2020-01-01T00:00:00",
            "DATE-OBS": (t_obs - pd.Timedelta(seconds=exptime / 2)).strftime(
                "%Y-%m-%dT%H:%M:%S.%f"
            )[:-3],
            "CTYPE1": "HPLN-TAN",
            "CTYPE2": "HPLT-TAN",
            "CUNIT1": "arcsec",
            "CUNIT2": "arcsec",
            "CDELT1": cdelt,
            "CDELT2": cdelt,
            "CRPIX1": centre,
            "CRPIX2": centre,
            "CRVAL1": 0.0,
            "CRVAL2": 0.0,
            "CROTA2": 0.0,
            "DSUN_OBS": dsun,
            "DSUN_REF": AU_M,
            "RSUN_REF": RSUN_REF_M,
            "RSUN_OBS": rsun_obs,
            "R_SUN": rsun_px,
            "HGLN_OBS": 0.0,
            "HGLT_OBS": b0_deg,
            "CRLN_OBS": 0.0,
            "CRLT_OBS": b0_deg,
            "QUALITY": 0,
            "ORIGIN": "sdofm synthetic Sun",
            **_statistics(image),
            "TOTVALS": int(image.size),
            "DATAVALS": int(image.size),
            "MISSVALS": 0,
        }
    )
    if instrument == "aia":
        wave = int(channel[:-1])
        tel = AIA_TELESCOPE[wave]
        keys.update(
            {
                "T_OBS": t_obs.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-4] + "Z",
                "T_REC": t_obs.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "TELESCOP": "SDO/AIA",
                "INSTRUME": f"AIA_{tel}",
                "CAMERA": tel,
                "WAVELNTH": wave,
                "WAVEUNIT": "angstrom",
                "WAVE_STR": f"{wave}_THIN" if wave < 1000 else str(wave),
                "EXPTIME": exptime,
                "LVL_NUM": 1.0,
                "PIXLUNIT": "DN",
                "IMG_TYPE": "LIGHT",
                # Disk centre in 0-based pixels of the 4096² CCD, and its plate scale.
                "X0_MP": (centre - 0.5) * 4096 / size - 0.5,
                "Y0_MP": (centre - 0.5) * 4096 / size - 0.5,
                "IMSCL_MP": cdelt * size / 4096,
            }
        )
    else:
        keys.update(
            {
                "T_OBS": format_tai(t_obs),
                "T_REC": format_tai(t_obs),
                "TELESCOP": "SDO/HMI",
                "INSTRUME": "HMI_FRONT2",
                "CONTENT": "MAGNETOGRAM",
                "BUNIT": "Gauss",
                "WAVELNTH": 6173.0,
                "CADENCE": 720.0,
            }
        )
    return keys


def _header(keys: dict[str, Any]) -> fits.Header:
    skip = {"BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "BLANK"}  # astropy writes these itself
    return fits.Header({k: v for k, v in keys.items() if k not in skip and v is not None})


def write_aia_fits(
    path: str | Path,
    counts: np.ndarray,
    *,
    channel: str,
    t_obs: pd.Timestamp,
    exptime: float,
    disk: Disk,
) -> None:
    """Write raw counts (DN, int16, saturating like the CCD) as an AIA level-1 image."""
    data = np.clip(np.round(counts), -32768, 32767).astype(np.int16)
    keys = level1_keywords(
        "aia",
        data,
        t_obs=t_obs,
        size=disk.size,
        rsun_px=disk.rsun_px,
        b0_deg=disk.b0_deg,
        exptime=exptime,
        channel=channel,
    )
    hdus = fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, _header(keys))])
    hdus.writeto(path, overwrite=True)


def write_hmi_fits(path: str | Path, blos: np.ndarray, *, t_obs: pd.Timestamp, disk: Disk) -> None:
    """Write a line-of-sight magnetogram (G) as an HMI ``hmi.M_720s``-like level-1.5 image."""
    data = blos.astype(np.float32)
    keys = level1_keywords(
        "hmi", data, t_obs=t_obs, size=disk.size, rsun_px=disk.rsun_px, b0_deg=disk.b0_deg
    )
    # Not tile-compressed: float tiles that cannot be quantised (the zeros off the disk) fall
    # back to gzip, whose header holds the clock time, so the same Sun gave different bytes.
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, _header(keys))]).writeto(
        path, overwrite=True
    )
