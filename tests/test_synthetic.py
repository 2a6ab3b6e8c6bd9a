"""The synthetic Sun: SDOML v2 layout, determinism and the physics the benchmarks rely on."""

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr

from sdofm.sources.sdoml import AIA_CHANNELS, EVE_GROUP, HMI_COMPONENTS, eve_times, frame_times
from sdofm.sources.synthetic import EVE_LINES, SyntheticSun, generate

AIA_TOBS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{2}Z$")
HMI_TOBS = re.compile(r"^\d{4}\.\d{2}\.\d{2}_\d{2}:\d{2}:\d{2}_TAI$")
CHUNK = re.compile(r"^\d+(\.\d+)*$")
EUV = ("94A", "131A", "171A", "193A", "211A", "304A", "335A")
UV = ("1600A", "1700A")

# Ten daily frames across a year boundary, with MEGS-A failing inside the range.
SMALL = dict(
    start="2011-12-27",
    end="2012-01-06",
    cadence_minutes=1440,
    eve_cadence_minutes=360,
    image_size=16,
    regions_per_day=0.5,
    megsa_end="2012-01-03",
)


@pytest.fixture(scope="module")
def small(tmp_path_factory):
    """The small Sun generated twice with seed 1 and once with seed 2."""
    root = tmp_path_factory.mktemp("small")
    out = {}
    for name, seed in [("a", 1), ("b", 1), ("c", 2)]:
        generate(SyntheticSun(seed=seed, **SMALL), root / name)
        out[name] = root / name
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*") if p.is_file()}


def _chunks(files: dict[str, bytes], store: str) -> dict[str, bytes]:
    return {k: v for k, v in files.items() if k.startswith(store) and CHUNK.match(Path(k).name)}


def _geometry(array: zarr.Array) -> np.ndarray:
    """Distance from disk centre in solar radii, from the array's own WCS attrs."""
    attrs = array.attrs
    size = array.shape[-1]
    c = attrs["CRPIX1"][0] - 1.0
    yy, xx = np.mgrid[0:size, 0:size]
    return np.hypot(xx - c, yy - c) / attrs["R_SUN"][0]


def _zarray(store: Path, path: str) -> dict:
    return json.loads((store / path / ".zarray").read_text())


def test_same_seed_gives_identical_bytes(small):
    """Every file, array chunks included, is byte-identical for the same seed."""
    a, b = _files(small["a"]), _files(small["b"])
    assert a.keys() == b.keys()
    assert len(_chunks(a, "sdomlv2_small.zarr")) >= len(AIA_CHANNELS)
    for key in a:
        assert a[key] == b[key], key


def test_different_seed_gives_different_images(small):
    """Another seed changes every AIA and HMI chunk and the EVE lines."""
    a, c = _files(small["a"]), _files(small["c"])
    for store in ("sdomlv2_small.zarr", "sdomlv2_hmi.zarr"):
        ca, cc = _chunks(a, store), _chunks(c, store)
        assert ca.keys() == cc.keys() and ca
        assert all(ca[k] != cc[k] for k in ca)
    line = f"sdomlv2_eve.zarr/{EVE_GROUP}/Fe IX/0"
    assert a[line] != c[line]


def test_year_groups_split_frames(small):
    """Frames are filed under their year; T_OBS lists match their group."""
    aia = zarr.open_group(small["a"] / "sdomlv2_small.zarr", mode="r")
    assert sorted(aia.group_keys()) == ["2011", "2012"]
    for year in ("2011", "2012"):
        arr = aia[year]["171A"]
        assert arr.shape == (5, 16, 16)
        times = frame_times(arr)
        assert (times.year == int(year)).all()
    first = frame_times(aia["2012"]["94A"])[0]
    assert pd.Timestamp("2012-01-01") <= first < pd.Timestamp("2012-01-01 00:00:13")


def test_megsa_missing_after_end(small):
    """EVE is negative (missing) from megsa_end on and mostly present before."""
    g = zarr.open_group(small["a"] / "sdomlv2_eve.zarr", mode="r")[EVE_GROUP]
    after = eve_times(g) >= pd.Timestamp(SMALL["megsa_end"])
    assert after.any() and (~after).any()
    for line in ("Fe IX", "He II", "Fe XVIII"):
        v = np.asarray(g[line][:])
        assert (v[after] < 0).all()
        assert (v[~after] > 0).mean() > 0.9


def test_aia_layout(tiny_config, synthetic_mirror):
    """AIA: year group, one float32 (N, size, size) zstd array per channel, per-frame attrs."""
    syn = tiny_config["synthetic"]
    nominal = SyntheticSun(**syn).times
    n, size = len(nominal), syn["image_size"]
    store = synthetic_mirror / "sdomlv2_small.zarr"
    aia = zarr.open_group(store, mode="r")
    assert list(aia.group_keys()) == ["2011"]
    assert set(aia["2011"].array_keys()) == set(AIA_CHANNELS)
    for ch in AIA_CHANNELS:
        arr = aia["2011"][ch]
        assert arr.shape == (n, size, size) and arr.dtype == np.float32
        comp = _zarray(store, f"2011/{ch}")["compressor"]
        assert comp["id"] == "blosc" and comp["cname"] == "zstd"
        for key in ("T_OBS", "EXPTIME", "DEG_COR"):
            assert len(arr.attrs[key]) == n, (ch, key)
        assert all(AIA_TOBS.match(t) for t in arr.attrs["T_OBS"])
        lag = (frame_times(arr) - nominal).total_seconds()
        assert ((lag >= 0) & (lag < 13)).all()
        assert 0 < min(arr.attrs["DEG_COR"]) <= max(arr.attrs["DEG_COR"]) <= 1


def test_hmi_layout(tiny_config, synthetic_mirror):
    """HMI: Bx/By/Bz float32 arrays, T_OBS in the TAI format, 34 s ahead of UTC."""
    syn = tiny_config["synthetic"]
    nominal = SyntheticSun(**syn).times
    store = synthetic_mirror / "sdomlv2_hmi.zarr"
    hmi = zarr.open_group(store, mode="r")
    assert set(hmi["2011"].array_keys()) == set(HMI_COMPONENTS)
    for comp in HMI_COMPONENTS:
        arr = hmi["2011"][comp]
        assert arr.shape == (len(nominal), syn["image_size"], syn["image_size"])
        assert arr.dtype == np.float32
        assert _zarray(store, f"2011/{comp}")["compressor"]["cname"] == "zstd"
        assert all(HMI_TOBS.match(t) for t in arr.attrs["T_OBS"])
        assert arr.attrs["T_OBS"][0] == "2011.01.01_00:00:34_TAI"
        assert (frame_times(arr) == nominal).all()


def test_eve_layout(tiny_config, synthetic_mirror):
    """EVE: a MEGS-A group with Time strings and one float32 array per line."""
    syn = tiny_config["synthetic"]
    g = zarr.open_group(synthetic_mirror / "sdomlv2_eve.zarr", mode="r")[EVE_GROUP]
    times = [str(t) for t in np.asarray(g["Time"][:])]
    expected = pd.date_range(
        syn["start"], syn["end"], freq=f"{syn['eve_cadence_minutes']}min", inclusive="left"
    )
    parsed = pd.to_datetime(times, format="%Y-%m-%d %H:%M:%S.%f")
    assert (parsed == expected).all()
    for line in tiny_config["data"]["eve_lines"]:
        arr = g[line]
        assert arr.dtype == np.float32 and arr.shape == (len(times),)
        v = np.asarray(arr[:])
        assert (v > 0).mean() > 0.95  # rare dropouts only: MEGS-A is alive until 2014


@pytest.fixture(scope="module")
def aligned(synthetic_mirror):
    """Disk means of every AIA channel and the EVE lines at the AIA frame times."""
    aia = zarr.open_group(synthetic_mirror / "sdomlv2_small.zarr", mode="r")["2011"]
    eve = zarr.open_group(synthetic_mirror / "sdomlv2_eve.zarr", mode="r")[EVE_GROUP]
    t = frame_times(aia["171A"])
    pos = pd.Index(eve_times(eve)).get_indexer(t, method="nearest", tolerance=pd.Timedelta("1min"))
    assert (pos >= 0).all()
    means = {ch: aia[ch][:].astype(np.float64).mean(axis=(1, 2)) for ch in AIA_CHANNELS}
    lines = {k: np.asarray(eve[k][:], np.float64)[pos] for k in eve.array_keys() if k != "Time"}
    params = json.loads((synthetic_mirror / "ground_truth" / "parameters.json").read_text())
    return means, lines, params


def _drive(line, means, params):
    quiet = {ch: v["quiet"] for ch, v in params["channel_physics"].items()}
    weights = params["eve_lines"][line]["weights"]
    return sum(w * means[ch] / quiet[ch] for ch, w in weights.items())


def test_eve_reproduced_from_aia_store(tiny_config, aligned):
    """Each line equals base * drive**power of the stored AIA disk means, to the 1 % noise."""
    means, lines, params = aligned
    for line in tiny_config["data"]["eve_lines"]:
        p = params["eve_lines"][line]
        y = lines[line]
        ok = y > 0
        res = (
            np.log(y[ok]) - np.log(p["base"]) - p["power"] * np.log(_drive(line, means, params))[ok]
        )
        assert abs(res.mean()) < 0.005, line
        assert res.std() < 0.04, line


@pytest.mark.parametrize("line", list(EVE_LINES))
def test_eve_line_correlates_with_source_channels(line, aligned):
    """Pearson r between a line and the disk mean of its source channels is > 0.8."""
    means, lines, params = aligned
    y = lines[line]
    ok = y > 0
    r = np.corrcoef(_drive(line, means, params)[ok], y[ok])[0, 1]
    assert r > 0.8, f"{line}: r = {r:.3f}"


def test_fe_ix_follows_171_not_1700(aligned):
    """Fe IX forms at 171A temperatures: it correlates better with 171A than with 1700A."""
    means, lines, _ = aligned
    y = lines["Fe IX"]
    ok = y > 0
    r171 = np.corrcoef(means["171A"][ok], y[ok])[0, 1]
    r1700 = np.corrcoef(means["1700A"][ok], y[ok])[0, 1]
    assert r171 > r1700 + 0.02, (r171, r1700)


def test_fe_xviii_follows_94_not_1700(aligned):
    """A hot line tracks its own channel (94A) much better than the UV continuum."""
    means, lines, _ = aligned
    y = lines["Fe XVIII"]
    ok = y > 0
    r94 = np.corrcoef(means["94A"][ok], y[ok])[0, 1]
    r1700 = np.corrcoef(means["1700A"][ok], y[ok])[0, 1]
    assert r94 > 0.95 and r94 > r1700 + 0.05, (r94, r1700)


def test_hmi_zero_off_disk(synthetic_mirror):
    """HMI field is zero off the disk and carries signal on it."""
    hmi = zarr.open_group(synthetic_mirror / "sdomlv2_hmi.zarr", mode="r")["2011"]
    r = _geometry(hmi["Bz"])
    for comp in HMI_COMPONENTS:
        b = hmi[comp][:]
        assert np.abs(b[:, r > 1.05]).max() < 1e-3, comp
    bz = hmi["Bz"][:]
    assert bz[:, r < 0.9].std() > 8.0
    assert np.abs(bz).max() > 100.0  # active regions, not only noise


def test_limb_brightening_and_darkening(synthetic_mirror):
    """EUV channels are brighter near the limb than at disk centre; 1600A/1700A darker."""
    aia = zarr.open_group(synthetic_mirror / "sdomlv2_small.zarr", mode="r")["2011"]
    r = _geometry(aia["171A"])
    limb, centre = (r > 0.8) & (r < 0.97), r < 0.4
    assert limb.sum() > 20 and centre.sum() > 20
    for ch in (*EUV, *UV):
        img = np.median(aia[ch][:], axis=0)  # median over time: quiet Sun, not regions
        ratio = np.median(img[limb]) / np.median(img[centre])
        if ch in EUV:
            assert ratio > 1.1, (ch, ratio)
        else:
            assert ratio < 0.9, (ch, ratio)
