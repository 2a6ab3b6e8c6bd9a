"""The synthetic Sun as a user of real data meets it: SDOML v2 stores served over loopback HTTP,
GOES XRS as NASCOM FITS files (one a day), daily F10.7 as NOAA SWPC JSON.

What the real-data configuration runs on in CI (``tests/test_realdata.py``) and in
``perf/realdata_run.py``: the same code path as the public bucket, without the internet.
"""

from __future__ import annotations

import functools
import json
import shutil
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pandas as pd
from astropy.io import fits

from sdofm.sources.f107 import read_f107
from sdofm.sources.goes import read_goes_xrs
from sdofm.sources.synthetic.generate import SyntheticSun, generate

__all__ = ["STORES", "real_format_events", "serve", "synthetic_mirror", "write_goes_fits"]

STORES = ("sdomlv2_small.zarr", "sdomlv2_hmi.zarr", "sdomlv2_eve.zarr")


def write_goes_fits(xrs: pd.DataFrame, out_dir: str | Path, *, satellite: int = 15) -> list[Path]:
    """The 1-8 Å series as NASCOM GOES XRS files, ``go<sat><YYYYMMDD>.fits``, one per day.

    The layout sunpy's XRSTimeSeries reads: a primary header (TELESCOP, DATE-OBS DD/MM/YYYY),
    EDGES, FLUXES (TIME in s from the day's start; FLUX (N, 2): 1-8 Å, 0.5-4 Å) and STATUS.
    0.5-4 Å is not simulated: NaN.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for day, part in xrs.groupby(xrs.index.floor("D")):
        seconds = ((part.index - day) / pd.Timedelta(seconds=1)).to_numpy(np.float64)
        flux = np.stack([part["xrsb"].to_numpy(), np.full(len(part), np.nan)], axis=1)
        primary = fits.PrimaryHDU()
        primary.header.update(
            {
                "TELESCOP": f"GOES {satellite}",
                "INSTRUME": "X-ray Detector",
                "OBJECT": "Sun",
                "ORIGIN": "sdofm synthetic Sun",
                "DATE-OBS": f"{day:%d/%m/%Y}",
                "TIME-OBS": f"{part.index[0]:%H:%M:%S.%f}"[:-3],
                "DATE-END": f"{day:%d/%m/%Y}",
                "TIME-END": f"{part.index[-1]:%H:%M:%S.%f}"[:-3],
            }
        )
        n = len(part)
        edges = fits.BinTableHDU.from_columns(
            [fits.Column("EDGES", "4E", array=np.array([[1.0, 8.0, 0.5, 4.0]]))], name="EDGES"
        )
        fluxes = fits.BinTableHDU.from_columns(
            [
                fits.Column("TIME", f"{n}D", unit="s", array=seconds[None]),
                fits.Column("FLUX", f"{2 * n}E", unit="W /m**2", dim=f"(2,{n})", array=flux[None]),
            ],
            name="FLUXES",
        )
        status = fits.BinTableHDU.from_columns(
            [fits.Column("STATUS", "1E", array=np.zeros((1, 1)))], name="STATUS"
        )
        path = out_dir / f"go{satellite}{day:%Y%m%d}.fits"
        fits.HDUList([primary, edges, fluxes, status]).writeto(path, overwrite=True)
        paths.append(path)
    return paths


def write_noaa_f107_json(f107: pd.DataFrame, path: str | Path) -> None:
    """Daily F10.7 as NOAA SWPC's ``f107_cm_flux.json`` records (2800 MHz, local noon)."""
    records = [
        {"time_tag": f"{t:%Y-%m-%d}T20:00:00", "frequency": 2800, "flux": round(float(v), 1)}
        for t, v in f107["observed_flux"].dropna().items()
    ]
    Path(path).write_text(json.dumps(records, indent=1))


def synthetic_mirror(sun: SyntheticSun, served: Path, work: Path) -> Path:
    """Generate ``sun`` in ``work`` and move its three SDOML v2 stores into ``served``."""
    generate(sun, work)
    served.mkdir(parents=True, exist_ok=True)
    for name in STORES:
        shutil.move(str(work / name), str(served / name))
    return work


def real_format_events(work: Path, project: Path, events: dict[str, str]) -> None:
    """The mirror's GOES series and F10.7 written where ``sources.events`` (relative to the
    ``project`` folder holding the config) expects them: GOES as daily NASCOM FITS in the
    folder of the ``goes`` glob, F10.7 as NOAA JSON at ``f107``."""
    goes_dir = (project / events["goes"]).parent
    write_goes_fits(read_goes_xrs(work / "goes_xrs.csv"), goes_dir)
    target = project / events["f107"]
    target.parent.mkdir(parents=True, exist_ok=True)
    write_noaa_f107_json(read_f107(work / "f107.csv"), target)


class _Quiet(SimpleHTTPRequestHandler):
    requests = 0

    def log_message(self, format, *args):  # noqa: A002 (the base class's signature)
        type(self).requests += 1


@contextmanager
def serve(directory: str | Path) -> Iterator[tuple[str, type[_Quiet]]]:
    """Serve ``directory`` over HTTP on a free loopback port: (base URL, request counter)."""
    handler = type("Handler", (_Quiet,), {"requests": 0})
    server = ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(handler, directory=str(directory))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/", handler
    finally:
        server.shutdown()
        server.server_close()
