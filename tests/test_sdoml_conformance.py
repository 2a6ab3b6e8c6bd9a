"""SDOML v2 layout facts, one assertion each, on three kinds of store: the synthetic mirror, the
output of `sdofm pull`, and a real level-1 AIA file (sunpy's) ingested with `sdofm ingest`.

The facts are those of the public SDOML v2 conversion code: year groups of (N, S, S) float32
frame arrays in 15-frame chunks; EVE's MEGS-A group with 39 float32 lines plus a ``<U23``
``Time``, zarr's default chunks and per-line attrs; Blosc zstd 5 with bit-shuffle everywhere;
every FITS keyword a per-frame list; RSUN_OBS as observed, CDELT = cdelt·f·RSUN_OBS/976,
CRPIX = crpix/f, X0_MP/Y0_MP.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr
from zarr.core.chunk_grids import _guess_chunks

from sdofm.sources.sdoml import AIA_CHANNELS, HMI_COMPONENTS, frame_times
from sdofm.sources.sdoml_layout import EVE_LINES, eve_line_attrs

BLOSC = {"id": "blosc", "cname": "zstd", "clevel": 5, "shuffle": 2, "blocksize": 0}
SDOML_LINES = [name for name, *_ in EVE_LINES]
PLATE_SCALE = 0.6  # arcsec per pixel of the 4096² AIA/HMI CCD (after registration)
AIA_KEYWORDS = {"T_OBS", "EXPTIME", "WAVELNTH", "DEG_COR", "PIXLUNIT", "X0_MP", "Y0_MP", "FSN"}
HMI_KEYWORDS = {"T_OBS", "PIXLUNIT", "CONTENT", "DSUN_OBS", "CRLT_OBS"}
GEOMETRY = {"CDELT1", "CDELT2", "CRPIX1", "CRPIX2", "NAXIS1", "NAXIS2", "RSUN_OBS", "R_SUN"}


def _zarray(store: Path, path: str) -> dict:
    return json.loads((store / path / ".zarray").read_text())


# The three kinds of store --------------------------------------------------------------------


@pytest.fixture(scope="module")
def ingested(tmp_path_factory) -> Path:
    from sunpy.data.test import get_test_filepath

    from sdofm.sources.ingest import ingest_fits

    out = tmp_path_factory.mktemp("conformance") / "aia.zarr"
    ingest_fits([get_test_filepath("aia_171_level1.fits")], out, image_size=64)
    return out


@pytest.fixture(params=["mirror", "pulled"])
def stores(request, synthetic_mirror, pulled) -> dict[str, Path]:
    if request.param == "mirror":
        names = ("sdomlv2_small.zarr", "sdomlv2_hmi.zarr", "sdomlv2_eve.zarr")
        return dict(zip(("aia", "hmi", "eve"), (synthetic_mirror / n for n in names), strict=True))
    return {k: pulled / f"{k}.zarr" for k in ("aia", "hmi", "eve")}


def _frame_stores(stores: dict[str, Path], ingested: Path):
    yield stores["aia"], "aia"
    yield stores["hmi"], "hmi"
    yield ingested, "aia"


# Frame stores (AIA, HMI) --------------------------------------------------------------------


def _arrays(store: Path) -> list[tuple[str, zarr.Array]]:
    root = zarr.open_group(store, mode="r")
    assert json.loads((store / ".zgroup").read_text())["zarr_format"] == 2
    years = sorted(root.group_keys())
    assert years and all(re.fullmatch(r"\d{4}", y) for y in years), years
    return [(f"{y}/{n}", root[y][n]) for y in years for n in sorted(root[y].array_keys())]


def test_frame_arrays_names_dtype_shape_chunks_codec(stores, ingested):
    for store, instrument in _frame_stores(stores, ingested):
        allowed = AIA_CHANNELS if instrument == "aia" else HMI_COMPONENTS
        for path, arr in _arrays(store):
            assert arr.basename in allowed, path
            meta = _zarray(store, path)
            n, size = arr.shape[0], arr.shape[-1]
            assert meta["dtype"] == "<f4" and arr.ndim == 3 and arr.shape[1] == size, path
            assert meta["chunks"] == [15, size, size], path
            assert meta["compressor"] == BLOSC and meta["filters"] is None, path
            assert n > 0 and np.isfinite(arr[0]).all(), path


def test_every_keyword_is_a_per_frame_list(stores, ingested):
    for store, instrument in _frame_stores(stores, ingested):
        for path, arr in _arrays(store):
            attrs = arr.attrs.asdict()
            need = GEOMETRY | (AIA_KEYWORDS if instrument == "aia" else HMI_KEYWORDS)
            assert need <= set(attrs), (path, need - set(attrs))
            # The full level-1 keyword set: far more than the geometry.
            assert len(attrs) >= (150 if instrument == "aia" else 80), (path, len(attrs))
            assert "SIMPLE" not in attrs and "KEYCOMMENTS" not in attrs
            for key, values in attrs.items():
                assert isinstance(values, list) and len(values) == arr.shape[0], (path, key)


def test_time_keywords(stores, ingested):
    pattern = {
        "aia": r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d\dZ",
        "hmi": r"\d{4}\.\d\d\.\d\d_\d\d:\d\d:\d\d_TAI",
    }
    for store, instrument in _frame_stores(stores, ingested):
        for path, arr in _arrays(store):
            assert all(re.fullmatch(pattern[instrument], t) for t in arr.attrs["T_OBS"]), path
            assert frame_times(arr).is_monotonic_increasing, path


def test_geometry_in_the_sdoml_v2_convention(stores, ingested):
    """RSUN_OBS as observed (from DSUN_OBS); CDELT = 0.6″·f·RSUN_OBS/976 so that R_SUN, the
    disk radius in pixels, is 976″ at the pixel scale 0.6″·f; CRPIX = crpix/f, the image
    centre within a pixel; NAXIS the stored size; PIXLUNIT DN/s or Gauss."""
    for store, instrument in _frame_stores(stores, ingested):
        for path, arr in _arrays(store):
            a = {k: np.asarray(v, dtype=object) for k, v in arr.attrs.asdict().items()}
            size = arr.shape[-1]
            f = 4096 / size
            rsun = a["RSUN_OBS"].astype(float)
            seen = np.rad2deg(np.arcsin(6.96e8 / a["DSUN_OBS"].astype(float))) * 3600
            np.testing.assert_allclose(rsun, seen, atol=0.5, err_msg=path)
            assert ((rsun > 940) & (rsun < 980)).all(), path
            cdelt = a["CDELT1"].astype(float)
            np.testing.assert_allclose(cdelt, PLATE_SCALE * f * rsun / 976, rtol=2e-3)
            np.testing.assert_allclose(a["CDELT2"].astype(float), cdelt, rtol=1e-6)
            np.testing.assert_allclose(a["R_SUN"].astype(float) * cdelt, rsun, rtol=1e-6)
            for key in ("CRPIX1", "CRPIX2"):
                assert (np.abs(a[key].astype(float) - (size + 1) / 2) <= 1.0).all(), (path, key)
            assert (a["NAXIS1"].astype(float) == size).all(), path
            unit = {"aia": "DN/s", "hmi": "Gauss"}[instrument]
            assert set(a["PIXLUNIT"]) == {unit}, path
            if instrument == "aia":
                for key in ("X0_MP", "Y0_MP"):  # the disk centre, in stored pixels (0-based)
                    assert (np.abs(a[key].astype(float) - (size - 1) / 2) < 1.5).all(), path
                assert ((a["DEG_COR"].astype(float) > 0) & (a["DEG_COR"].astype(float) <= 1)).all()


# EVE ---------------------------------------------------------------------------------------


def _megsa(store: Path) -> zarr.Group:
    root = zarr.open_group(store, mode="r")
    assert list(root.group_keys()) == ["MEGS-A"]
    return root["MEGS-A"]


def test_eve_lines_are_sdoml_v2s(stores, tiny_config):
    group = _megsa(stores["eve"])
    names = sorted(group.array_keys())
    assert "Time" in names
    lines = [n for n in names if n != "Time"]
    if stores["eve"].name == "sdomlv2_eve.zarr":
        assert sorted(lines) == sorted(SDOML_LINES) and len(lines) == 39  # the mirror: all
    else:
        assert sorted(lines) == sorted(tiny_config["data"]["eve_lines"])  # a pull: its lines
    for name in lines:
        attrs = group[name].attrs.asdict()
        assert {k: attrs[k] for k in ("wavelength", "logT", "ion")} == eve_line_attrs(name)
        assert re.fullmatch(r"\d+(\.\d+)? nm", attrs["wavelength"])
        assert re.fullmatch(r"\d\.\d+ MK", attrs["logT"])
        assert attrs["ion"] == name.split("_")[0]


def test_eve_time_dtype_codec_and_chunks(stores):
    store, group = stores["eve"], _megsa(stores["eve"])
    n = group["Time"].shape[0]
    for name in group.array_keys():
        meta = _zarray(store, f"MEGS-A/{name}")
        dtype = np.dtype(meta["dtype"])
        assert meta["shape"] == [n], name
        assert meta["compressor"] == BLOSC and meta["filters"] is None, name
        assert tuple(meta["chunks"]) == _guess_chunks((n,), dtype.itemsize), name
        assert meta["dtype"] == ("<U23" if name == "Time" else "<f4"), name
    text = group["Time"][:]
    assert text.dtype == np.dtype("<U23") and all(len(t) == 23 for t in text)
    times = pd.to_datetime(list(text), format="%Y-%m-%d %H:%M:%S.%f")
    assert times.is_monotonic_increasing and n > 10


def test_eve_missing_values_are_negative(stores):
    group = _megsa(stores["eve"])
    for name in group.array_keys():
        if name != "Time":
            v = group[name][:]
            assert np.isfinite(v).all() and (v != 0).all(), name  # missing: < 0, never NaN
