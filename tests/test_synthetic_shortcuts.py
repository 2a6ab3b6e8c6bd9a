"""Shortcuts through the synthetic Sun, measured on the files it writes (issue 14).

An audit of the default run found that each benchmark could be solved without the images'
spatial structure. Each test here measures one such shortcut on a small generated Sun and checks
that it no longer works: the structure of the images has to carry the signal.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import zarr
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from sdofm.sources.sdoml import AIA_CHANNELS
from sdofm.sources.synthetic import SyntheticSun, generate
from sdofm.sources.synthetic.sun import RSUN_ARCSEC, RSUN_CM, Disk, region_states

# Three months of 12-hourly 64² frames (the default run's resolution), no FITS.
SUN = SyntheticSun(
    seed=7,
    start="2011-01-01",
    end="2011-04-01",
    cadence_minutes=720,
    eve_cadence_minutes=720,
    goes_cadence_minutes=60,
    image_size=64,
    regions_per_day=0.4,
    megsa_end="2011-04-01",
)



@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shortcuts") / "sun"
    generate(SUN, out)
    return out


def _frames(store: Path, name: str) -> np.ndarray:
    group = zarr.open_group(store, mode="r")
    return np.concatenate([group[y][name][:] for y in sorted(group) if y.isdigit()])


def _regions(run: Path) -> pd.DataFrame:
    return pd.read_csv(run / "ground_truth" / "regions.csv", parse_dates=["emergence"])


MAX_ANGLE_DEG = 70.0  # flux is measured within this angle of the disk centre, as for HMI


def true_visible_flux(regions: pd.DataFrame, times, max_angle: float = 90.0) -> np.ndarray:
    """Unsigned flux (Mx, both polarities) of the regions within ``max_angle`` of disk centre."""
    out = []
    for t in times:
        s = region_states(regions, pd.Timestamp(t))
        cos_angle = np.cos(np.deg2rad(s.lat)) * np.cos(np.deg2rad(s.lon))
        seen = (cos_angle > np.cos(np.deg2rad(max_angle))) & s.visible
        out.append(2 * s.flux[seen].sum())
    return np.array(out)


def image_flux(bz: np.ndarray, disk: Disk) -> np.ndarray:
    """Unsigned flux (Mx) measured from Bz frames within `MAX_ANGLE_DEG` of the disk centre:
    |B_r| = |Bz|/μ over pixels above 3σ of the noise (its robust spread in the inner disk), a
    pixel's surface area its projected area / μ."""
    pix_cm = disk.cdelt / RSUN_ARCSEC * RSUN_CM
    ok = disk.mu > np.cos(np.deg2rad(MAX_ANGLE_DEG))
    mu = np.where(ok, disk.mu, 1.0)
    noise = 1.4826 * np.median(np.abs(bz[:, disk.r < 0.5]))
    strong = (np.abs(bz) > 3 * noise) & ok
    return (np.abs(bz) / mu**2 * strong).sum(axis=(-2, -1)) * pix_cm**2


def hmi_flux_correlation(run: Path) -> float:
    bz = _frames(run / "sdomlv2_hmi.zarr", "Bz")
    measured = image_flux(bz, Disk(SUN.image_size))
    truth = true_visible_flux(_regions(run), SUN.times, MAX_ANGLE_DEG)
    return float(np.corrcoef(measured, truth)[0, 1])


def test_hmi_spots_resolved(run):
    """The unsigned flux measured from the HMI images follows the planted flux (r >= 0.97)."""
    r = hmi_flux_correlation(run)
    assert r >= 0.97, r


def autocalibration_shortcut(run: Path, alpha_min: float = 0.01) -> float:
    """Success (|α̂ − α| < 0.05) of the zero-parameter estimator: the inner-disk median of the
    dimmed image over its training mean (first half of the frames), over channels and frames."""
    disk = Disk(SUN.image_size)
    inner = disk.r < 0.5
    rng = np.random.default_rng(0)
    hits = []
    for name in AIA_CHANNELS:
        med = np.median(_frames(run / "sdomlv2_small.zarr", name)[:, inner], axis=1)
        half = len(med) // 2
        alpha = rng.uniform(alpha_min, 1.0, len(med) - half)
        estimate = alpha * med[half:] / med[:half].mean()
        hits.append(np.abs(estimate - alpha) < 0.05)
    return float(np.mean(hits))


def test_quiet_sun_is_not_a_constant(run):
    """Inner-disk median / training mean no longer recovers the dimming (success <= 0.8)."""
    success = autocalibration_shortcut(run)
    assert success <= 0.8, success


def f107_rmse_from_image_times(run: Path) -> float:
    """RMSE (sfu) of F10.7 predicted linearly from the true visible flux at the image time
    nearest each observation; fit on the first half of the days, scored on the second."""
    f107 = pd.read_csv(run / "f107.csv", parse_dates=["time"])
    times = SUN.times
    nearest = times[times.get_indexer(f107["time"], method="nearest")]
    x = true_visible_flux(_regions(run), nearest)
    y = f107["adjusted_flux"].to_numpy()
    half = len(y) // 2
    a, b = np.polyfit(x[:half], y[:half], 1)
    return float(np.sqrt(np.mean((a * x[half:] + b - y[half:]) ** 2)))


def test_f107_observed_at_image_times(run):
    """The true flux at the image times determines F10.7 to within 5 sfu RMSE."""
    rmse = f107_rmse_from_image_times(run)
    assert rmse <= 5.0, rmse


RING = np.linspace(0.0, 2 * np.pi, 16, endpoint=False)


def polarity_changes(b: np.ndarray, radius: float = 1.5) -> int:
    """Sign changes of B_r around the region's strongest pixel, on a ring of ``radius`` px
    (pixels above a tenth of the peak): 2 for a bipole, more where opposite polarity intrudes."""
    r0, c0 = np.unravel_index(np.abs(b).argmax(), b.shape)
    rr = np.clip(np.round(r0 + radius * np.sin(RING)).astype(int), 0, b.shape[0] - 1)
    cc = np.clip(np.round(c0 + radius * np.cos(RING)).astype(int), 0, b.shape[1] - 1)
    v = b[rr, cc]
    sign = np.sign(v[np.abs(v) > 0.1 * np.abs(b).max()])
    return int((sign != np.roll(sign, 1)).sum()) if len(sign) > 1 else 0


def _region_samples(run: Path, crop: int = 4, min_peak_g: float = 20.0) -> pd.DataFrame:
    """One row per (frame, front-side region within 60° of the centre whose crop peaks above
    ``min_peak_g``): HMI features from a crop around the region and the label "a ≥C1 flare
    from this region in the next 24 h"."""
    disk = Disk(SUN.image_size)
    bz = _frames(run / "sdomlv2_hmi.zarr", "Bz")
    br = bz / np.where(disk.on, np.maximum(disk.mu, 0.1), 1.0)
    flares = pd.read_csv(run / "ground_truth" / "flares.csv", parse_dates=["peak_time"])
    regions = _regions(run)
    c = (SUN.image_size - 1) / 2
    rows = []
    for k, t in enumerate(SUN.times):
        s = region_states(regions, t)
        for i in np.flatnonzero((np.abs(s.lon) < 60) & (np.abs(s.lat) < 60)):
            lat, lon = np.deg2rad(s.lat[i]), np.deg2rad(s.lon[i])
            col = int(round(c + disk.rsun_px * np.cos(lat) * np.sin(lon)))
            row = int(round(c + disk.rsun_px * np.sin(lat)))
            b = br[k, row - crop : row + crop + 1, col - crop : col + crop + 1]
            if np.abs(b).max() < min_peak_g:
                continue
            soon = flares[
                (flares["region_id"] == s.region_id[i])
                & (flares["peak_time"] > t)
                & (flares["peak_time"] <= t + pd.Timedelta(hours=24))
            ]
            rows.append(
                {
                    "time": t,
                    "flux": np.log10(np.abs(b).sum()),
                    "pil": polarity_changes(b),
                    "flare": len(soon) > 0,
                }
            )
    return pd.DataFrame(rows)


def flare_aucs(run: Path) -> tuple[float, float]:
    """Held-out AUC of logistic regressions on (flux) and on (flux, PIL gradient), trained on
    the first 60 % of the frames."""
    df = _region_samples(run)
    train = df["time"] < SUN.times[int(0.6 * len(SUN.times))]
    aucs = []
    for cols in (["flux"], ["flux", "pil"]):
        model = LogisticRegression().fit(df.loc[train, cols], df.loc[train, "flare"])
        p = model.predict_proba(df.loc[~train, cols])[:, 1]
        aucs.append(float(roc_auc_score(df.loc[~train, "flare"], p)))
    return aucs[0], aucs[1]


def test_flare_complexity_visible_in_hmi(run):
    """An HMI polarity-inversion-line measure adds to flux in forecasting a region's flares."""
    flux_only, with_pil = flare_aucs(run)
    assert with_pil >= flux_only + 0.03, (flux_only, with_pil)
