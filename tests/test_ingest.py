"""Level-1 FITS ingest: real sunpy AIA file, synthetic AIA/HMI files, bad input, JSOC queries."""

from __future__ import annotations

import shutil
from pathlib import Path

import aiapy
import astropy.units as u
import numpy as np
import pandas as pd
import pytest
import sunpy.data.test
import sunpy.map
import zarr
from astropy.io import fits

from sdofm import SdofmError
from sdofm.dataset.build import index_frames
from sdofm.sources import ingest as ingest_mod
from sdofm.sources.ingest import HMI_LOS, RSUN_ARCSEC, ingest_fits, qc_path
from sdofm.sources.jsoc import aia_queries, aia_query, hmi_query, jsoc_cadence
from sdofm.sources.sdoml import frame_times, open_store
from sdofm.sources.synthetic import SyntheticSun, generate

AIA_FILE = Path(sunpy.data.test.get_test_filepath("aia_171_level1.fits"))
V8_TABLE = Path(aiapy.__file__).parent / "tests/data/aia_V8_20171210_050627_response_table.txt"
SUN = SyntheticSun(
    seed=5,
    start="2011-02-01",
    end="2011-02-01T03:00",
    cadence_minutes=60,
    eve_cadence_minutes=60,
    goes_cadence_minutes=60,
    image_size=32,
    regions_per_day=3.0,
    fits_start="2011-02-01",
    fits_end="2011-02-01T03:00",
    fits_image_size=64,
)


@pytest.fixture(scope="module")
def sun(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("ingest") / "sun"
    generate(SUN, out)
    return out


def _aia(sun: Path, channel: str) -> list[Path]:
    return sorted((sun / "fits" / "aia").glob(f"aia.lev1.{channel}_*.fits"))


def _disk(size: int, r_sun: float, scale: float = 0.95) -> np.ndarray:
    """Pixels within ``scale`` solar radii (``r_sun`` pixels) of the image centre."""
    yy, xx = np.mgrid[:size, :size] - (size - 1) / 2
    return np.hypot(xx, yy) < scale * r_sun


def _qc(out: Path) -> dict[str, str]:
    table = pd.read_csv(qc_path(out))
    return {Path(f).name: r for f, r in zip(table["file"], table["reason"], strict=True)}


def test_real_aia_file(tmp_path):
    """sunpy's level-1 AIA 171 file: one frame in DN/s, T_OBS kept, Sun scaled to 976″, the
    keywords converted as SDOML v2 converts them (RSUN_OBS as observed)."""
    m = sunpy.map.Map(AIA_FILE)
    assert m.data.shape == (128, 128)
    out = tmp_path / "aia.zarr"
    result = ingest_fits([AIA_FILE], out, image_size=64, correction_table=V8_TABLE)
    assert result["frames"] == {"171A": 1} and result["quarantined"] == []
    store = open_store(str(out))
    arr = store["2011"]["171A"]
    assert arr.shape == (1, 64, 64) and arr.dtype == np.float32 and arr.chunks[0] == 15
    assert arr.attrs["T_OBS"] == [m.meta["t_obs"]]
    assert frame_times(arr)[0] == pd.Timestamp(m.meta["t_obs"].rstrip("Z"))
    frames = index_frames(store, ["171A"])
    assert len(frames["171A"].times) == 1
    deg = arr.attrs["DEG_COR"][0]
    assert 0.9 < deg < 1.0  # V8 table, Feb 2011
    cdelt, rsun = arr.attrs["CDELT1"][0], m.meta["rsun_obs"]
    assert arr.attrs["RSUN_OBS"][0] == rsun  # as observed, 971.8″ in February
    assert cdelt == pytest.approx(0.6 * 4096 / 64 * rsun / RSUN_ARCSEC)  # cdelt·f·RSUN_OBS/976
    assert arr.attrs["CRPIX1"][0] == pytest.approx(64.5 / 2)  # crpix/f (f = 2)
    assert arr.attrs["R_SUN"][0] * cdelt == pytest.approx(rsun)
    assert arr.attrs["R_SUN"][0] == pytest.approx(RSUN_ARCSEC / (0.6 * 4096 / 64))
    assert arr.attrs["X0_MP"][0] == pytest.approx(m.meta["x0_mp"] * 64 / 4096)
    assert arr.attrs["NAXIS1"][0] == 64 and arr.attrs["PIXLUNIT"][0] == "DN/s"
    # Every keyword of the file's header, less SIMPLE and the comments.
    skip = {"keycomments", "simple", "history", "comment", "crota2"}  # register: CROTA2 → PC
    assert {k.upper() for k in m.meta if k not in skip} <= set(arr.attrs)
    assert arr.attrs["EXPTIME"][0] == pytest.approx(m.exposure_time.to_value(u.s))
    assert arr.attrs["WAVELNTH"][0] == 171 and arr.attrs["LVL_NUM"][0] == 1.5
    # DN/s: the on-disk median matches raw DN / EXPTIME / DEG_COR.
    raw_rsun = m.meta["rsun_obs"] / m.scale.axis1.to_value(u.arcsec / u.pix)
    yy, xx = np.mgrid[:128, :128]
    raw_disk = np.hypot(xx - m.meta["crpix1"] + 1, yy - m.meta["crpix2"] + 1) < 0.95 * raw_rsun
    expected = np.median(m.data[raw_disk]) / m.exposure_time.to_value(u.s) / deg
    got = np.median(arr[0][_disk(64, arr.attrs["R_SUN"][0])])
    assert got == pytest.approx(expected, rel=0.05)


def test_synthetic_aia_matches_store(sun, tmp_path):
    """Ingested synthetic FITS agree with the synthetic SDOML store at the same times."""
    paths = _aia(sun, "171A") + _aia(sun, "193A") + _aia(sun, "1600A")
    out = tmp_path / "aia.zarr"
    result = ingest_fits(
        paths, out, image_size=32, correction_table=sun / "aia_correction_table.txt"
    )
    n = len(SUN.times)
    assert result["frames"] == {"171A": n, "193A": n, "1600A": n}
    ours = open_store(str(out))["2011"]
    ref = zarr.open_group(sun / "sdomlv2_small.zarr", mode="r")["2011"]
    for ch in ("171A", "193A", "1600A"):
        assert list(frame_times(ours[ch])) == list(frame_times(ref[ch]))
        assert ours[ch].attrs["DEG_COR"] == pytest.approx(ref[ch].attrs["DEG_COR"], rel=1e-5)
        assert ours[ch].attrs["CDELT1"] == pytest.approx(ref[ch].attrs["CDELT1"])
        assert ours[ch].attrs["R_SUN"] == pytest.approx(ref[ch].attrs["R_SUN"])
        a, b = ours[ch][:], ref[ch][:]
        np.testing.assert_allclose(a.mean(axis=(1, 2)), b.mean(axis=(1, 2)), rtol=0.03)


def test_synthetic_hmi_is_line_of_sight(sun, tmp_path):
    """HMI LOS magnetograms become their own product Blos (never the vector field's Bz), with
    the header's TAI T_OBS and the store's frame times."""
    paths = sorted((sun / "fits" / "hmi").glob("*.fits"))
    out = tmp_path / "hmi.zarr"
    result = ingest_fits(paths, out, image_size=32, instrument="hmi")
    assert result["frames"] == {HMI_LOS: len(paths)} and HMI_LOS == "Blos"
    store = open_store(str(out))
    blos = store["2011"][HMI_LOS]
    assert sorted(store["2011"].array_keys()) == ["Blos"]
    headers = [fits.getheader(p, 1)["T_OBS"] for p in paths]
    assert blos.attrs["T_OBS"] == sorted(headers)
    assert set(blos.attrs["PIXLUNIT"]) == {"Gauss"}
    ref = zarr.open_group(sun / "sdomlv2_hmi.zarr", mode="r")["2011"]["Bz"]
    assert list(frame_times(blos)) == list(frame_times(ref))
    # The file's field (the Sun at its observed radius, 974″) scaled to 976″ and block-averaged
    # 2×2: nearly the 2×2 block mean of the file, pixel by pixel.
    raw = np.stack([fits.getdata(p, 1) for p in paths]).astype(np.float64)
    binned = raw.reshape(len(paths), 32, 2, 32, 2).mean(axis=(2, 4))
    slope = np.polyfit(binned.ravel(), blos[:].ravel().astype(np.float64), 1)[0]
    assert slope == pytest.approx(1.0, abs=0.05)
    assert np.corrcoef(binned.ravel(), blos[:].ravel())[0, 1] > 0.97
    # Bz of the store is the radial field seen along z, Blos the same with its own noise.
    assert np.corrcoef(blos[:].ravel(), ref[:].ravel())[0, 1] > 0.5
    assert len(index_frames(store, [HMI_LOS])[HMI_LOS].times) == len(paths)


def _bad_files(sun: Path, d: Path) -> dict[str, Path]:
    """One bad file of each kind, named for what is wrong with it."""
    d.mkdir()
    src = _aia(sun, "193A")[0]
    truncated = d / "truncated.fits"
    truncated.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    text = d / "text.fits"
    text.write_text("this is not a FITS file\n")
    no_exptime = d / "no_exptime.fits"
    with fits.open(_aia(sun, "211A")[0]) as hdus:
        del hdus[1].header["EXPTIME"]
        hdus.writeto(no_exptime)
    all_nan = d / "all_nan.fits"
    header = fits.getheader(_aia(sun, "304A")[0], 1)
    fits.HDUList(
        [fits.PrimaryHDU(), fits.ImageHDU(np.full((64, 64), np.nan, np.float32), header)]
    ).writeto(all_nan)
    negative = d / "negative.fits"
    header = fits.getheader(_aia(sun, "335A")[0], 1)
    data = -np.ones((64, 64), np.float32)
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(data, header)]).writeto(negative)
    duplicate = d / "zz_duplicate.fits"  # sorts after the original at the same T_OBS
    shutil.copy(_aia(sun, "171A")[0], duplicate)
    hmi = d / "hmi.fits"
    shutil.copy(sorted((sun / "fits" / "hmi").glob("*.fits"))[0], hmi)
    return {
        "truncated": truncated,
        "text": text,
        "no_exptime": no_exptime,
        "all_nan": all_nan,
        "negative": negative,
        "duplicate": duplicate,
        "hmi": hmi,
    }


def test_bad_input_is_quarantined(sun, tmp_path):
    """Each bad file is skipped with its reason in the QC table; the good files are ingested."""
    bad = _bad_files(sun, tmp_path / "bad")
    good = _aia(sun, "171A")
    out = tmp_path / "aia.zarr"
    result = ingest_fits([*good, *bad.values()], out, image_size=32)
    assert result["frames"] == {"171A": len(good)}
    assert any("DEG_COR = 1.0" in note for note in result["notes"])
    qc = _qc(out)
    assert set(qc) == {p.name for p in bad.values()}
    assert qc["truncated.fits"].startswith("truncated FITS")
    assert qc["text.fits"].startswith("unsupported file kind text")
    assert "EXPTIME" in qc["no_exptime.fits"]
    assert "NaN" in qc["all_nan.fits"]
    assert "negative" in qc["negative.fits"]
    assert qc["zz_duplicate.fits"].startswith("duplicate")
    assert "not an AIA image" in qc["hmi.fits"]
    arr = open_store(str(out))["2011"]["171A"]
    assert arr.attrs["DEG_COR"] == [1.0] * len(good)
    assert arr.attrs["SOURCE_FILE"] == [p.name for p in good]


def test_append_keeps_order_and_rejects_duplicates(sun, tmp_path):
    """A second ingest appends (frames kept in time order, attrs aligned) and skips repeats."""
    files = _aia(sun, "171A")
    out = tmp_path / "aia.zarr"
    ingest_fits(files[1:], out, image_size=32)
    result = ingest_fits(files, out, image_size=32)
    assert result["frames"] == {"171A": 1}
    assert len(result["quarantined"]) == len(files) - 1
    arr = open_store(str(out))["2011"]["171A"]
    assert arr.shape[0] == len(files)
    times = frame_times(arr)
    assert times.is_monotonic_increasing
    assert arr.attrs["SOURCE_FILE"] == [p.name for p in files]
    for key, values in arr.attrs.asdict().items():
        assert len(values) == len(files), key


def test_all_bad_raises_and_leaves_no_store(sun, tmp_path):
    bad = _bad_files(sun, tmp_path / "bad")
    out = tmp_path / "aia.zarr"
    paths = [p for k, p in bad.items() if k != "duplicate"]
    with pytest.raises(SdofmError, match="no usable AIA FITS"):
        ingest_fits(paths, out, image_size=32)
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []
    assert len(_qc(out)) == len(paths)


def test_crash_mid_way_keeps_old_store(sun, tmp_path, monkeypatch):
    """An unexpected error while appending leaves the previous store as it was."""
    files = _aia(sun, "171A")
    out = tmp_path / "aia.zarr"
    ingest_fits(files[:1], out, image_size=32)
    real = ingest_mod.process_file
    calls = []

    def crash(*args, **kwargs):
        calls.append(1)
        if len(calls) > 1:
            raise RuntimeError("killed")
        return real(*args, **kwargs)

    monkeypatch.setattr(ingest_mod, "process_file", crash)
    with pytest.raises(RuntimeError):
        ingest_fits(files[1:], out, image_size=32)
    assert open_store(str(out))["2011"]["171A"].shape[0] == 1
    assert [p.name for p in tmp_path.iterdir() if "partial" in p.name] == []


def test_option_errors(tmp_path):
    with pytest.raises(SdofmError, match="instrument"):
        ingest_fits([AIA_FILE], tmp_path / "x.zarr", image_size=32, instrument="eve")
    with pytest.raises(SdofmError, match="correction table"):
        ingest_fits([AIA_FILE], tmp_path / "x.zarr", image_size=32, correction_table="SSW")
    with pytest.raises(SdofmError, match="no usable"):
        ingest_fits([AIA_FILE], tmp_path / "x.zarr", image_size=100)
    assert "downsample" in _qc(tmp_path / "x.zarr")[AIA_FILE.name]


def test_jsoc_queries():
    assert (
        aia_query("2011-01-01", "2011-01-02", ["171A", 193], "12min")
        == "aia.lev1_euv_12s[2011-01-01T00:00:00Z-2011-01-02T00:00:00Z@12m][171,193]"
    )
    assert aia_queries("2011-01-01", "2011-01-01T06:00", ["1600A", "94A", "171"], "1h") == [
        "aia.lev1_uv_24s[2011-01-01T00:00:00Z-2011-01-01T06:00:00Z@1h][1600]",
        "aia.lev1_euv_12s[2011-01-01T00:00:00Z-2011-01-01T06:00:00Z@1h][94,171]",
    ]
    assert hmi_query("2011-01-01", "2011-01-02", "720s") == (
        "hmi.M_720s[2011-01-01T00:00:00Z-2011-01-02T00:00:00Z@12m]"
    )
    assert jsoc_cadence("45s") == "45s" and jsoc_cadence("1D") == "1d"
    assert aia_query("2011-01-01", "2011-01-02", ["171A"], None).endswith("Z][171]")
    with pytest.raises(SdofmError, match="several JSOC series"):
        aia_query("2011-01-01", "2011-01-02", ["171A", "1700A"])
    with pytest.raises(SdofmError, match="unknown AIA channel"):
        aia_query("2011-01-01", "2011-01-02", ["172A"])
    with pytest.raises(SdofmError, match="not after"):
        aia_query("2011-01-02", "2011-01-01", ["171A"])
