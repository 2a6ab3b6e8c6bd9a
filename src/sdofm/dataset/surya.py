"""NASA-IMPACT/Surya's data format: one NetCDF file per time step, an index CSV, scalers YAML.

Export writes the valid rows of an ML-ready store as Surya reads them (`HelioNetCDFDataset`):
``<out>/<YYYY>/<MM>/<YYYYMMDD_HHMM>.nc`` with one 2-D float32 variable per channel named as
Surya names them (``aia94`` … ``aia1700``, ``hmi_m`` for line-of-sight, ``hmi_bx/by/bz``),
``index.csv`` (``timestep, path, present``) and ``scalers.yaml`` (Surya's StandardScaler per
channel: mean and std of sign(x)·log1p(|x|·sl_scale_factor) over the training rows). Import
reads such a folder back into SDOML v2-layout stores (``aia.zarr``, ``hmi.zarr``) that
`build_partition` takes as its frames, so Surya data (e.g. SuryaBench) builds like ours.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr
import yaml
import zarr

from sdofm import SdofmError
from sdofm.io import atomic_output
from sdofm.sources.sdoml import AIA_CHANNELS, HMI_PRODUCTS, format_tai
from sdofm.sources.sdoml_layout import create_frame_array

__all__ = ["SURYA_NAMES", "export_surya", "import_surya"]

SURYA_NAMES = {
    **{ch: f"aia{ch[:-1]}" for ch in AIA_CHANNELS},
    "Blos": "hmi_m",
    "Bx": "hmi_bx",
    "By": "hmi_by",
    "Bz": "hmi_bz",
}
OURS = {v: k for k, v in SURYA_NAMES.items()}
EPSILON = 1e-8
SCALER_BASE = "surya.datasets.transformations"


def _signum_log(x: np.ndarray, scale: float = 1.0) -> np.ndarray:
    x = np.asarray(x, np.float64) * scale
    return np.sign(x) * np.log1p(np.abs(x))


def _scaler(n: int, s1: float, s2: float, lo: float, hi: float) -> dict[str, Any]:
    """Surya's ``StandardScaler.to_dict()`` (numbers as strings, as Surya writes them)."""
    mean = s1 / n
    std = float(np.sqrt(max(s2 / n - mean**2, 0.0)))
    return {
        "base": SCALER_BASE,
        "class": "StandardScaler",
        "epsilon": str(EPSILON),
        "mean": str(mean),
        "std": str(std),
        "is_fitted": True,
        "min": str(lo),
        "max": str(hi),
        "sl_scale_factor": "1.0",
    }


def export_surya(dataset: str | Path, out: str | Path) -> dict[str, int]:
    """Write the valid rows of the ML-ready store ``dataset`` in Surya's format to ``out``."""
    ds = xr.open_zarr(dataset, consolidated=True)
    channels = [str(c) for c in ds.channel.values]
    unknown = [c for c in channels if c not in SURYA_NAMES]
    if unknown:
        msg = f"channels {unknown} have no Surya name (known: {sorted(SURYA_NAMES)})"
        raise SdofmError(msg)
    valid = ds.valid.values
    train = valid & (ds.split.values == "train")
    stats = {c: [0, 0.0, 0.0, np.inf, -np.inf] for c in channels}
    rows = []
    with atomic_output(out) as tmp:
        for i, t in enumerate(pd.DatetimeIndex(ds.time.values)):
            if not valid[i]:
                rows.append({"timestep": t.isoformat(), "path": "", "present": 0})
                continue
            images = ds.images[i].values
            rel = Path(f"{t:%Y}") / f"{t:%m}" / f"{t:%Y%m%d_%H%M}.nc"
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            xr.Dataset(
                {SURYA_NAMES[c]: (("y", "x"), images[k]) for k, c in enumerate(channels)},
                attrs={"timestep": t.isoformat(), "source": "sdofm export"},
            ).to_netcdf(
                tmp / rel,
                engine="h5netcdf",
                encoding={SURYA_NAMES[c]: {"compression": "gzip"} for c in channels},
            )
            rows.append({"timestep": t.isoformat(), "path": str(Path(out) / rel), "present": 1})
            if train[i]:
                for k, c in enumerate(channels):
                    z = _signum_log(images[k])
                    st = stats[c]
                    st[0] += z.size
                    st[1] += float(z.sum())
                    st[2] += float((z**2).sum())
                    st[3], st[4] = min(st[3], float(z.min())), max(st[4], float(z.max()))
        if not train.any():
            msg = f"{dataset} has no valid training row: the scalers cannot be fitted"
            raise SdofmError(msg)
        pd.DataFrame(rows, columns=["timestep", "path", "present"]).to_csv(
            tmp / "index.csv", index=False
        )
        scalers = {SURYA_NAMES[c]: _scaler(*stats[c]) for c in channels}
        (tmp / "scalers.yaml").write_text(yaml.safe_dump(scalers, sort_keys=False))
    return {"steps": len(rows), "files": int(valid.sum()), "train": int(train.sum())}


def _read_index(index: Path) -> pd.DataFrame:
    from sdofm.sources.tables import read_csv_checked

    df = read_csv_checked(index, "Surya index", required=["timestep", "path", "present"])
    df = df[pd.to_numeric(df["present"], errors="coerce") == 1].copy()
    df["timestep"] = pd.to_datetime(df["timestep"], format="ISO8601")
    df["path"] = [p if Path(p).is_absolute() else str(index.parent / p) for p in df["path"]]
    return df.sort_values("timestep").reset_index(drop=True)


def import_surya(index: str | Path, out: str | Path) -> dict[str, int]:
    """Read a Surya folder (``index.csv`` and its NetCDF files) into ``out``/aia.zarr, hmi.zarr.

    Each present time step becomes one frame per channel at T_OBS = the time step (AIA style
    for AIA, TAI for HMI), in the SDOML v2 layout; Surya channels we do not use are skipped.
    """
    index = Path(index)
    df = _read_index(index)
    if df.empty:
        msg = f"{index} lists no present time step"
        raise SdofmError(msg)
    with xr.open_dataset(df["path"].iloc[0], engine="h5netcdf") as first:
        names = [OURS[v] for v in first.data_vars if v in OURS]
        size = first[SURYA_NAMES[names[0]]].shape[-1] if names else 0
    if not names:
        msg = f"{df['path'].iloc[0]} has none of Surya's SDO channels ({sorted(OURS)})"
        raise SdofmError(msg)
    with atomic_output(out) as tmp:
        stores = {
            k: zarr.open_group(tmp / f"{k}.zarr", mode="w", zarr_format=2) for k in ("aia", "hmi")
        }
        years = df["timestep"].dt.year.to_numpy()
        for year in np.unique(years):
            part = df[years == year]
            arrays = {
                c: create_frame_array(
                    stores["hmi" if c in HMI_PRODUCTS else "aia"].require_group(str(year)),
                    c,
                    len(part),
                    size,
                )
                for c in names
            }
            for j, path in enumerate(part["path"]):
                with xr.open_dataset(path, engine="h5netcdf") as nc:
                    for c in names:
                        arrays[c][j] = nc[SURYA_NAMES[c]].values.astype(np.float32)
            aia_t = [f"{t:%Y-%m-%dT%H:%M:%S.%f}"[:-4] + "Z" for t in part["timestep"]]
            hmi_t = [format_tai(t) for t in part["timestep"]]
            for c, arr in arrays.items():
                arr.update_attributes({"T_OBS": hmi_t if c in HMI_PRODUCTS else aia_t})
    return {"steps": len(df), "channels": len(names)}
