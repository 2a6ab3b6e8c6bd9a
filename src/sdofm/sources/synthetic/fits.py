"""Level-1-like AIA and HMI FITS files with the header keywords sunpy and aiapy rely on."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits

from sdofm.sources.sdoml import format_tai
from sdofm.sources.synthetic.sun import RSUN_ARCSEC, Disk

__all__ = ["aia_filename", "write_aia_fits", "write_hmi_fits"]

RSUN_REF_M = 696_000_000.0
AU_M = 149_597_870_700.0


def aia_filename(channel: str, t: pd.Timestamp) -> str:
    """JSOC export name, e.g. ``aia.lev1.171A_2011-01-01T00_00_07.84Z.image_lev1.fits``."""
    return f"aia.lev1.{channel}_{t.strftime('%Y-%m-%dT%H_%M_%S.%f')[:-4]}Z.image_lev1.fits"


def _geometry(disk: Disk, t: pd.Timestamp, dsun_m: float) -> dict:
    c = (disk.size + 1) / 2  # FITS pixels are 1-based
    return {
        "CTYPE1": "HPLN-TAN",
        "CTYPE2": "HPLT-TAN",
        "CUNIT1": "arcsec",
        "CUNIT2": "arcsec",
        "CDELT1": disk.cdelt,
        "CDELT2": disk.cdelt,
        "CRPIX1": c,
        "CRPIX2": c,
        "CRVAL1": 0.0,
        "CRVAL2": 0.0,
        "CROTA2": 0.0,
        "DSUN_OBS": dsun_m,
        "DSUN_REF": AU_M,
        "RSUN_REF": RSUN_REF_M,
        "RSUN_OBS": RSUN_ARCSEC,
        "R_SUN": disk.rsun_px,
        "HGLN_OBS": 0.0,
        "HGLT_OBS": disk.b0_deg,
        "CRLN_OBS": 0.0,
        "CRLT_OBS": disk.b0_deg,
        "DATE": pd.Timestamp("2020-01-01").strftime("%Y-%m-%dT%H:%M:%S"),
    }


def write_aia_fits(
    path: str | Path,
    counts: np.ndarray,
    *,
    channel: str,
    t_obs: pd.Timestamp,
    exptime: float,
    disk: Disk,
    quality: int = 0,
) -> None:
    """Write raw counts (DN, int16, saturating like the CCD) as an AIA level-1 image."""
    wave = int(channel[:-1])
    date_obs = t_obs - pd.Timedelta(seconds=exptime / 2)  # DATE-OBS is the exposure start
    header = fits.Header(
        {
            "TELESCOP": "SDO/AIA",
            "INSTRUME": "AIA_3" if wave in (171, 304) else "AIA_4",
            "WAVELNTH": wave,
            "WAVEUNIT": "angstrom",
            "WAVE_STR": f"{wave}_THIN",
            "T_OBS": t_obs.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-4] + "Z",
            "DATE-OBS": date_obs.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],
            "EXPTIME": exptime,
            "LVL_NUM": 1.0,
            "BUNIT": "DN",
            "PIXLUNIT": "DN",
            "QUALITY": quality,
            "IMG_TYPE": "LIGHT",
            "ORIGIN": "sdofm synthetic Sun",
            **_geometry(disk, t_obs, AU_M),
        }
    )
    data = np.clip(np.round(counts), -32768, 32767).astype(np.int16)
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, header)]).writeto(path, overwrite=True)


def write_hmi_fits(path: str | Path, blos: np.ndarray, *, t_obs: pd.Timestamp, disk: Disk) -> None:
    """Write a line-of-sight magnetogram (G) as an HMI ``hmi.M_45s``-like level-1.5 image."""
    header = fits.Header(
        {
            "TELESCOP": "SDO/HMI",
            "INSTRUME": "HMI_FRONT2",
            "CONTENT": "MAGNETOGRAM",
            "WAVELNTH": 6173.0,
            "WAVEUNIT": "angstrom",
            "T_OBS": format_tai(t_obs),
            "DATE-OBS": t_obs.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3],
            "BUNIT": "Mx/cm^2",
            "QUALITY": 0,
            "ORIGIN": "sdofm synthetic Sun",
            **_geometry(disk, t_obs, AU_M),
        }
    )
    # Not tile-compressed: float tiles that cannot be quantised (the zeros off the disk) fall
    # back to gzip, whose header holds the clock time, so the same Sun gave different bytes.
    hdu = fits.ImageHDU(blos.astype(np.float32), header)
    fits.HDUList([fits.PrimaryHDU(), hdu]).writeto(path, overwrite=True)
