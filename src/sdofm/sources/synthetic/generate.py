"""Write the synthetic Sun: SDOML v2 stores, event lists, indices, FITS files and ground truth.

Generation streams frame by frame (and EVE/GOES in bounded buffers), so memory does not grow
with the time range; output is written through `atomic_output`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import zarr

from sdofm.io import atomic_output
from sdofm.sources.sdoml import AIA_CHANNELS, HMI_COMPONENTS
from sdofm.sources.sdoml_layout import (
    EVE_LINES as SDOML_EVE_LINES,
)
from sdofm.sources.sdoml_layout import (
    create_eve_arrays,
    create_frame_array,
    format_eve_times,
    sdoml_geometry,
)
from sdofm.sources.synthetic import flares as fl
from sdofm.sources.synthetic import sun as sun_model
from sdofm.sources.synthetic.eve import EVE_LINES, eve_irradiance
from sdofm.sources.synthetic.fits import (
    aia_filename,
    level1_keywords,
    observer,
    write_aia_fits,
    write_hmi_fits,
)
from sdofm.sources.synthetic.instrument import (
    CHANNELS,
    DegradationTable,
    flare_sigma,
    render_channel,
)
from sdofm.sources.synthetic.network import make_network
from sdofm.sources.synthetic.sun import (
    RSUN_ARCSEC,
    RSUN_CM,
    Disk,
    b0_angle,
    make_regions,
    radial_field,
    region_states,
)

__all__ = ["SyntheticSun", "generate"]

EVE_FLUSH_ROWS = 10_080  # EVE rows buffered between writes (a week at 1-min cadence)
CHUNK = 15  # frames per chunk, as in SDOML v2
F107_LIMB_DEG = 10.0  # width of the fade of a region's radio emission across the limb
HMI_NOISE_G = 10.0  # per-pixel noise of the HMI field components at full resolution (4096²)


def hmi_noise(size: int) -> float:
    """Per-pixel noise (G) of HMI binned to ``size``²: binning k×k pixels divides it by k."""
    return HMI_NOISE_G * size / 4096


@dataclass(frozen=True)
class SyntheticSun:
    """Settings of the synthetic Sun (the ``synthetic:`` config block)."""

    seed: int = 42
    start: str = "2011-01-01"
    end: str = "2012-01-01"
    cadence_minutes: int = 720
    eve_cadence_minutes: int = 60
    goes_cadence_minutes: int = 1
    image_size: int = 64
    regions_per_day: float = 0.3
    b0: bool = False
    megsa_end: str = "2014-05-26"
    fits_start: str | None = None
    fits_end: str | None = None
    fits_image_size: int = 256

    @property
    def times(self) -> pd.DatetimeIndex:
        return pd.date_range(
            self.start, self.end, freq=f"{self.cadence_minutes}min", inclusive="left"
        )


class _Sun:
    """Everything that is fixed for a run: catalogues, calibration, cached geometry."""

    def __init__(self, sun: SyntheticSun):
        self.sun = sun
        rng = np.random.default_rng(sun.seed)
        start, end = pd.Timestamp(sun.start), pd.Timestamp(sun.end)
        days = (end - start) / pd.Timedelta(days=1) + 30
        self.regions = make_regions(rng, rng.poisson(sun.regions_per_day * days), start, end)
        self.flares = fl.make_flares(rng, self.regions, start - pd.Timedelta(days=1), end)
        self.flare_set = fl.FlareSet(self.flares)
        self.degradation = DegradationTable()
        # Its own stream: adding the network left the regions and flares of a seed as they were.
        self.network = make_network(np.random.default_rng([sun.seed, 5]), start)
        self._disks: dict[tuple[int, float, float], Disk] = {}
        self._hot: dict[pd.Timestamp, float] = {}
        # B0 of every frame in one ephemeris call (evaluated one at a time it costs ~30 ms)
        self._b0 = pd.Series(b0_angle(sun.times), index=sun.times) if sun.b0 else None

    def disk(self, t: pd.Timestamp, size: int, rsun_arcsec: float = RSUN_ARCSEC) -> Disk:
        b0 = 0.0
        if self._b0 is not None:
            b0 = round(float(self._b0[t]) if t in self._b0.index else b0_angle(t), 2)
        key = (size, b0, rsun_arcsec)
        if key not in self._disks:  # at most two geometries (SDOML, FITS): memory stays flat
            self._disks = {k: v for k, v in self._disks.items() if k[0] != size}
            self._disks[key] = Disk(size, b0, rsun_arcsec)
        return self._disks[key]

    def unsigned_flux(self, t: pd.Timestamp, limb_deg: float = 0.0) -> float:
        """Total unsigned flux (Mx) of the regions on the visible hemisphere; with ``limb_deg``
        a region's weight falls smoothly from 1 to 0 over that many degrees across the limb."""
        s = region_states(self.regions, t)
        if limb_deg <= 0:
            return float(2 * s.flux[s.visible].sum())
        weight = 0.5 * (1.0 + np.tanh((90.0 - np.abs(s.lon)) / (limb_deg / 4)))
        return float(2 * (s.flux * weight).sum())

    def render(
        self, t: pd.Timestamp, size: int, rsun_arcsec: float = RSUN_ARCSEC
    ) -> tuple[Disk, np.ndarray, dict[str, np.ndarray]]:
        """Noise-free radial field and AIA intensities at ``t`` (the Sun ``rsun_arcsec`` wide)."""
        disk = self.disk(t, size, rsun_arcsec)
        state = region_states(self.regions, t)
        network, network_field = self.network.maps(t, disk)
        br = radial_field(state, disk) + network_field
        front = np.flatnonzero(np.abs(state.lon) < 95.0)
        regions = [
            (
                disk.distance(state.lat[i], state.lon[i]),
                np.deg2rad(state.separation[i]),
                state.flux[i] / 1e22,
                state.complexity[i],
            )
            for i in front
        ]
        images = {}
        fs = self.flare_set
        for name in AIA_CHANNELS:
            idx, level = fs.levels(t, CHANNELS[name].flare_delay_min)
            flare_maps = [
                (disk.distance(fs.lat[f], fs.lon[f]), lv)
                for f, lv in zip(idx, level[0], strict=True)
                if lv > 1e-3
            ]
            images[name] = render_channel(name, disk, regions, flare_maps, network)
        return disk, br, images

    def hot_cores(self, t: pd.Timestamp) -> float:
        """Σ over front-side regions of the square of their hot-core (94 Å) emission, in units
        of a β region of 1e22 Mx (the hot plasma's DEM weight, for EVE)."""
        if t not in self._hot:  # each frame's value is asked for twice (as lo, then as t)
            self._hot = {k: v for k, v in self._hot.items() if k >= t - pd.Timedelta(days=1)}
            self._hot[t] = self._hot_cores(region_states(self.regions, t))
        return self._hot[t]

    @staticmethod
    def _hot_cores(s) -> float:
        front = np.abs(s.lon) < 90.0
        hot = CHANNELS["94A"]
        core = (s.flux[front] / 1e22) ** hot.gamma * hot.core(s.complexity[front])
        return float((core**2).sum())

    def flare_disk_mean(self, times: pd.DatetimeIndex, name: str, size: int) -> np.ndarray:
        """Flare emission of channel ``name`` averaged over the image at ``times`` (for EVE)."""
        fs = self.flare_set
        idx, level = fs.levels(times, CHANNELS[name].flare_delay_min)
        if len(idx) == 0:
            return np.zeros(len(times))
        disk = self.disk(times[0], size)
        sigma_px = flare_sigma(disk) * disk.rsun_px
        mu = np.cos(np.deg2rad(fs.lat[idx])) * np.cos(np.deg2rad(fs.lon[idx]))
        area = 2 * np.pi * sigma_px**2 * np.clip(mu, 0.05, 1.0)  # foreshortened kernel
        ch = CHANNELS[name]
        return ch.quiet * ch.flare_gain * (level * area).sum(axis=1) / size**2


def _frame_arrays(group: zarr.Group, names, n: int, size: int) -> dict[str, zarr.Array]:
    return {name: create_frame_array(group, name, n, size) for name in names}


# Ground truth: the EVE lines after MEGS-A's end (time + one column per line, W/m^2).
EVE_AFTER_MEGSA = "eve_after_megsa.csv"


class _EveWriter:
    """Writes the rows of the MEGS-A group in week-sized blocks (bounded memory).

    All 39 SDOML v2 lines, in the store's order, with their attrs; the row count is known up
    front so the arrays get SDOML's chunking for their length.
    """

    def __init__(self, path: Path, n: int):
        root = zarr.open_group(path, mode="w", zarr_format=2)
        self.arrays = create_eve_arrays(root, n, [name for name, *_ in SDOML_EVE_LINES])
        for line, (_, _, weights) in EVE_LINES.items():
            self.arrays[line].update_attributes({"units": "W/m^2", "channels": sorted(weights)})
        self.buffer: dict[str, list] = {k: [] for k in self.arrays}
        self.written = 0

    def add(self, times: pd.DatetimeIndex, values: dict[str, np.ndarray]) -> None:
        self.buffer["Time"].extend(times)
        for line, v in values.items():
            self.buffer[line].extend(np.asarray(v, np.float32))
        if len(self.buffer["Time"]) >= EVE_FLUSH_ROWS:
            self.flush()

    def flush(self) -> None:
        rows = len(self.buffer["Time"])
        if not rows:
            return
        lo, hi = self.written, self.written + rows
        for name, arr in self.arrays.items():
            block = self.buffer[name]
            arr[lo:hi] = format_eve_times(block) if name == "Time" else np.array(block, np.float32)
            self.buffer[name] = []
        self.written = hi


def _write_csv_block(df: pd.DataFrame, path: Path) -> None:
    df.to_csv(path, mode="a", header=not path.exists(), index=False, float_format="%.6e")


def _write_goes(sun: SyntheticSun, model: _Sun, path: Path) -> None:
    """GOES XRS 1–8 Å series, a day at a time; background rises with the visible flux."""
    start, end = pd.Timestamp(sun.start), pd.Timestamp(sun.end)
    for day in pd.date_range(start.floor("D"), end, freq="D", inclusive="left"):
        times = pd.date_range(
            max(day, start),
            min(day + pd.Timedelta(days=1), end),
            freq=f"{sun.goes_cadence_minutes}min",
            inclusive="left",
        )
        if len(times) == 0:
            continue
        ends = [model.unsigned_flux(times[0]), model.unsigned_flux(times[-1])]
        flux = np.interp(np.arange(len(times)), [0, len(times) - 1], ends)
        background = fl.BACKGROUND * (1 + flux / 2e22) ** 1.5
        xrsb = fl.goes_xrs(times, model.flare_set, background)
        _write_csv_block(pd.DataFrame({"time": times, "xrsb_flux": xrsb}), path)


def _f107_times(sun: SyntheticSun) -> pd.DatetimeIndex:
    """When the synthetic radio telescope observes, once a day: at the image time of the day
    nearest 20 UT (Penticton's local noon), so the images see the Sun F10.7 saw; at 20 UT on a
    day without images."""
    days = pd.date_range(pd.Timestamp(sun.start).floor("D"), sun.end, freq="D", inclusive="left")
    noon = pd.Series(days + pd.Timedelta(hours=20), index=days)
    frames = pd.Series(sun.times, index=sun.times.floor("D"))
    off = (frames - noon.reindex(frames.index).to_numpy()).abs()
    best = frames[off.groupby(level=0).transform("min").eq(off).to_numpy()]
    best = best[~best.index.duplicated()]  # two frames as near: the earlier
    return pd.DatetimeIndex(best.reindex(days).fillna(noon))


def _write_f107(sun: SyntheticSun, model: _Sun, path: Path) -> None:
    """Daily F10.7 from the unsigned flux of the regions the radio telescope sees.

    Gyroresonance sources sit above the regions, so a region fades out smoothly across the
    limb (`F107_LIMB_DEG` wide) instead of at a hard visible/invisible cut.
    """
    times = _f107_times(sun)
    rng = np.random.default_rng([sun.seed, 3])
    flux = np.array([model.unsigned_flux(t, limb_deg=F107_LIMB_DEG) for t in times])
    adjusted = 65.0 + 2.5e-21 * flux + rng.normal(0.0, 3.0, len(times))
    # Observed flux is not corrected to 1 AU: it varies ±3.4 % over the year.
    dist = 1 - 0.0167 * np.cos(2 * np.pi * (times.dayofyear - 4) / 365.25)
    pd.DataFrame(
        {
            "time": times.strftime("%Y-%m-%dT%H:%M:%S"),
            "observed_flux": adjusted / dist**2,
            "adjusted_flux": adjusted,
        }
    ).to_csv(path, index=False, float_format="%.2f")


def _write_flare_lists(flares: pd.DataFrame, public: Path, truth: Path) -> None:
    """The public event list (front side, HEK column names) and the full truth catalogue."""
    front = flares[flares["front_side"]]
    fmt = "%Y-%m-%dT%H:%M:%S"
    pd.DataFrame(
        {
            "event_starttime": front["start_time"].dt.strftime(fmt),
            "event_peaktime": front["peak_time"].dt.strftime(fmt),
            "event_endtime": front["end_time"].dt.strftime(fmt),
            "fl_goescls": front["goes_class"],
            "fl_peakflux": front["peak_flux"],
            "hgs_x": front["longitude_deg"].round(2),
            "hgs_y": front["latitude_deg"].round(2),
            "ar_noaanum": front["noaa_number"],
            "frm_name": "SWPC",
        }
    ).to_csv(public, index=False)
    flares.to_csv(truth, index=False, date_format=fmt)


def _aia_hmi_frames(sun: SyntheticSun, model: _Sun, tmp: Path, eve: _EveWriter) -> pd.DataFrame:
    """Render every frame, write AIA and HMI stores (and FITS in the window) and EVE rows.

    Returns the noise-free disk mean of each channel per frame (ground truth, one row a frame).
    """
    times = sun.times
    aia = zarr.open_group(tmp / "sdomlv2_small.zarr", mode="w", zarr_format=2)
    hmi = zarr.open_group(tmp / "sdomlv2_hmi.zarr", mode="w", zarr_format=2)
    fits_window = (pd.Timestamp(sun.fits_start or sun.end), pd.Timestamp(sun.fits_end or sun.end))
    fits_dir = tmp / "fits"
    (fits_dir / "aia").mkdir(parents=True)
    (fits_dir / "hmi").mkdir(parents=True)
    size, shape = sun.image_size, (sun.image_size, sun.image_size)
    quiet_mean = {
        n: render_channel(n, model.disk(times[0], size), [], []).mean() for n in AIA_CHANNELS
    }
    eve_times = _eve_times(sun)
    megsa_end = pd.Timestamp(sun.megsa_end)
    disk_means = np.zeros((len(times), len(AIA_CHANNELS)))
    degradation = {n: model.degradation.factor(n, times) for n in AIA_CHANNELS}  # not per frame
    prev = None
    years = times.year.to_numpy()
    for year in np.unique(years):
        idx = np.flatnonzero(years == year)
        arrays = {
            **_frame_arrays(aia.require_group(str(year)), AIA_CHANNELS, len(idx), size),
            **_frame_arrays(hmi.require_group(str(year)), HMI_COMPONENTS, len(idx), size),
        }
        attrs: dict[str, dict[str, list]] = {n: {} for n in arrays}
        buf = np.zeros((len(arrays), CHUNK, *shape), np.float32)
        for j, i in enumerate(idx):
            t, b = times[i], j % CHUNK
            rng = np.random.default_rng([sun.seed, int(i)])
            disk, br, images = model.render(t, size)
            in_fits = fits_window[0] <= t < fits_window[1]
            if in_fits:  # level-1 files at their own resolution and the observed radius
                rsun_obs = observer(t)[1]
                fits_disk, fits_br, fits_images = model.render(t, sun.fits_image_size, rsun_obs)
                write_hmi_fits(
                    fits_dir / "hmi" / f"hmi.m_45s.{t:%Y%m%d_%H%M%S}_TAI.fits",
                    fits_br * fits_disk.mu
                    + rng.normal(0.0, hmi_noise(sun.fits_image_size), fits_br.shape) * fits_disk.on,
                    t_obs=t,
                    disk=fits_disk,
                )
            for k, comp in enumerate(HMI_COMPONENTS):  # the radial field seen along x, y, z
                proj = (disk.x, disk.y, disk.mu)[k]
                buf[len(AIA_CHANNELS) + k, b] = (
                    br * proj + rng.normal(0.0, hmi_noise(size), shape) * disk.on
                )
                _frame_attrs(attrs[comp], "hmi", buf[len(AIA_CHANNELS) + k, b], disk, t)
            for k, name in enumerate(AIA_CHANNELS):
                ch = CHANNELS[name]
                disk_means[i, k] = images[name].mean()
                exptime = round(ch.exptime * rng.uniform(0.85, 1.0), 4)
                deg = float(degradation[name][i])
                counts = rng.poisson(images[name] * exptime * deg)  # what the CCD records
                # SDOML v2: divided by exposure and degradation.
                buf[k, b] = counts / (exptime * deg)
                t_obs = t + pd.Timedelta(seconds=round(float(rng.uniform(0, 12)), 2))
                _frame_attrs(
                    attrs[name], "aia", counts, disk, t_obs, exptime=exptime, deg=deg, channel=name
                )
                if in_fits:  # raw counts: degraded, not exposure-normalised
                    raw = rng.poisson(fits_images[name] * exptime * deg)
                    write_aia_fits(
                        fits_dir / "aia" / aia_filename(name, t_obs),
                        raw,
                        channel=name,
                        t_obs=t_obs,
                        exptime=exptime,
                        disk=fits_disk,
                    )
            if b == CHUNK - 1 or j == len(idx) - 1:
                for k, arr in enumerate(arrays.values()):
                    arr[j - b : j + 1] = buf[k, : b + 1]
            lo = times[i - 1] if i else pd.Timestamp(sun.start)
            hi = t if i < len(times) - 1 else pd.Timestamp(sun.end) + pd.Timedelta(microseconds=1)
            sel = eve_times[(eve_times >= lo) & (eve_times < hi)]
            if len(sel):
                before = prev if prev is not None else disk_means[i]
                values = _eve_rows(sun, model, sel, lo, t, before, disk_means[i], quiet_mean, i)
                after = sel >= megsa_end
                missing = after | (rng.uniform(size=len(sel)) < 0.005)
                eve.add(sel, {ln: np.where(missing, -1.0, v) for ln, v in values.items()})
                if after.any():  # what MEGS-A would have measured: truth for a virtual EVE
                    block = {"time": sel[after], **{ln: v[after] for ln, v in values.items()}}
                    _write_csv_block(pd.DataFrame(block), tmp / "ground_truth" / EVE_AFTER_MEGSA)
            prev = disk_means[i].copy()
        for name, arr in arrays.items():
            arr.update_attributes(attrs[name])
    eve.flush()
    return pd.DataFrame(disk_means, index=times.rename("time"), columns=list(AIA_CHANNELS))


def _eve_rows(sun, model, sel, lo, t, before, now, quiet_mean, i) -> dict[str, np.ndarray]:
    """EVE lines at times ``sel`` in [lo, t]: the disk-integrated emission interpolated between
    the frames at lo and t, plus the flares at each EVE time (flares are shorter than a cadence;
    the little flare light already in the two frames is not removed)."""
    frac = np.clip((sel - lo) / max(t - lo, pd.Timedelta(seconds=1)), 0, 1)
    relative = {}
    for k, name in enumerate(AIA_CHANNELS):
        base = before[k] + (now[k] - before[k]) * np.asarray(frac)
        flare = model.flare_disk_mean(sel, name, sun.image_size)
        relative[name] = (base + flare) / quiet_mean[name]
    # Hot plasma: the regions' hot cores (between the frames) and the flares, each squared.
    h_lo, h_t = model.hot_cores(lo), model.hot_cores(t)
    cores = h_lo + (h_t - h_lo) * np.asarray(frac)
    _, level = model.flare_set.levels(sel)
    hot = np.log1p(cores + ((level / 10.0) ** 2).sum(axis=1))
    return eve_irradiance(relative, np.random.default_rng([sun.seed, 2, int(i)]), hot)


def _eve_times(sun: SyntheticSun) -> pd.DatetimeIndex:
    return pd.date_range(sun.start, sun.end, freq=f"{sun.eve_cadence_minutes}min", inclusive="left")


def _frame_attrs(
    attrs: dict[str, list],
    instrument: str,
    image: np.ndarray,
    disk: Disk,
    t: pd.Timestamp,
    *,
    exptime: float = 0.0,
    deg: float = 1.0,
    channel: str = "",
) -> None:
    """Append one frame's keywords to the per-array attrs lists, as SDOML v2 keeps them: the
    frame's full level-1 header (the Sun at its observed radius, ``image``'s statistics)
    converted to the 976″ geometry of the stored frame."""
    keys = level1_keywords(
        instrument,
        image,
        t_obs=t,
        size=disk.size,
        rsun_px=observer(t)[1] / disk.cdelt,
        b0_deg=disk.b0_deg,
        exptime=exptime,
        channel=channel,
    )
    keys["LVL_NUM"] = 1.5  # registered: north up, disk centred
    keys = sdoml_geometry(keys, 1.0, instrument=instrument)
    if instrument == "aia":
        keys["DEG_COR"] = round(deg, 6)
    for k, v in keys.items():
        attrs.setdefault(k, []).append(v)


def generate(sun: SyntheticSun, out: str | Path) -> dict[str, Path]:
    """Write the synthetic Sun to ``out`` and return its top-level entries by name."""
    with atomic_output(out) as tmp:
        tmp.mkdir()
        model = _Sun(sun)
        truth = tmp / "ground_truth"
        truth.mkdir()  # before the frames: EVE truth after MEGS-A is written as they go
        eve = _EveWriter(tmp / "sdomlv2_eve.zarr", len(_eve_times(sun)))
        disk_means = _aia_hmi_frames(sun, model, tmp, eve)
        assert eve.written == len(_eve_times(sun)), "every EVE row is written once"
        disk_means.to_csv(truth / "aia_disk_mean.csv")
        _write_goes(sun, model, tmp / "goes_xrs.csv")
        _write_f107(sun, model, tmp / "f107.csv")
        _write_flare_lists(model.flares, tmp / "flares.csv", truth / "flares.csv")
        model.degradation.write(tmp / "aia_correction_table.txt")
        days = pd.date_range(pd.Timestamp(sun.start).floor("D"), sun.end, freq="D")
        pd.DataFrame(
            {n: model.degradation.factor(n, days) for n in AIA_CHANNELS}, index=days.rename("time")
        ).to_csv(truth / "degradation.csv")
        model.regions.to_csv(truth / "regions.csv", index=False, date_format="%Y-%m-%dT%H:%M:%S")
        params = {
            "settings": asdict(sun),
            "channels": {n: asdict(c) for n, c in CHANNELS.items()},
            "eve_lines": {
                k: {"base": b, "power": p, "weights": w} for k, (b, p, w) in EVE_LINES.items()
            },
            "flares": {
                "index": fl.FLARE_INDEX,
                "min_peak": fl.MIN_PEAK,
                "rate_per_day": fl.RATE_PER_DAY,
            },
            "rsun_cm": RSUN_CM,
            "spots": {
                "min_sigma_px": sun_model.MIN_SPOT_PX,
                "min_pair_sigmas": sun_model.MIN_PAIR_SIGMAS,
                "delta_share": sun_model.DELTA_SHARE,
                "delta_sigmas": sun_model.DELTA_SIGMAS,
            },
            "network": model.network.to_dict(),
            "f107_limb_deg": F107_LIMB_DEG,
            "hmi_noise_g": hmi_noise(sun.image_size),
        }
        (truth / "parameters.json").write_text(json.dumps(params, indent=2))
    return {p.name: p for p in Path(out).iterdir()}
