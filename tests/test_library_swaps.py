"""Hand-rolled numerics replaced by scikit-learn give the same results (within tolerance)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from sdofm.training.callbacks import ridge_r2


def _ridge_r2_by_hand(z_fit, y_fit, z, y) -> float:
    """The probe's former closed form: standardise, solve (AᵀA + n I) w = Aᵀt, median R²."""
    mu, sd = z_fit.mean(0), z_fit.std(0)
    sd = np.maximum(sd, 0.01 * sd.mean() + 1e-12)
    a, b = (z_fit - mu) / sd, (z - mu) / sd
    ym, ys = y_fit.mean(0), y_fit.std(0) + 1e-12
    t_fit, t = (y_fit - ym) / ys, (y - ym) / ys
    w = np.linalg.solve(a.T @ a + len(a) * np.eye(a.shape[1]), a.T @ t_fit)
    resid = ((b @ w - t) ** 2).sum(0)
    total = ((t - t.mean(0)) ** 2).sum(0)
    return float(np.median(1.0 - resid / total))


def test_probe_ridge_equals_the_closed_form():
    rng = np.random.default_rng(0)
    z = rng.normal(size=(120, 40))
    y = z[:, :3] @ rng.normal(size=(3, 5)) + 0.5 * rng.normal(size=(120, 5))
    ours = ridge_r2(z[:80], y[:80], z[80:], y[80:])
    assert abs(ours - _ridge_r2_by_hand(z[:80], y[:80], z[80:], y[80:])) < 1e-9
    assert 0.2 < ours < 1.0  # a real signal is found


def test_embedding_map_is_the_training_rows_pca(embeddings, dataset, tmp_path):
    """PC coordinates equal the SVD of the centred training rows, up to each axis' sign."""
    from sdofm.embeddings.explore import embedding_map

    info = embedding_map(embeddings, dataset, tmp_path / "map.png", tmp_path / "map.csv")
    table = pd.read_csv(tmp_path / "map.csv")
    emb = xr.open_zarr(embeddings)
    z = emb.embedding.values
    ok = np.isfinite(z).all(axis=1)
    train = ok & (emb.split.values.astype(str) == "train")
    mu = z[train].mean(axis=0)
    _, s, vt = np.linalg.svd(z[train] - mu, full_matrices=False)
    xy = (z[ok] - mu) @ vt[:2].T
    for k in range(2):
        ours = table[f"pc{k + 1}"].to_numpy()
        assert np.allclose(np.abs(ours), np.abs(xy[:, k]), rtol=1e-4, atol=1e-5)  # float32
    explained = s[:2] ** 2 / (s**2).sum()
    assert np.allclose([info["explained_pc1"], info["explained_pc2"]], explained, rtol=1e-6)


def _similar_by_hand(z, times, split, q, k, exclude_hours):
    """`similar_times`' former search: centre on the training mean, cosine by hand, argsort."""
    train = split == "train"
    zc = z - z[train].mean(axis=0)
    unit = zc / np.linalg.norm(zc, axis=1, keepdims=True)
    dist = 1.0 - unit @ (zc[q] / np.linalg.norm(zc[q]))
    far = np.abs(times - times[q]) > pd.Timedelta(hours=exclude_hours)
    order = np.argsort(np.where(far, dist, np.inf))[: min(k, int(far.sum()))]
    return times[order], dist[order]


@pytest.mark.parametrize(("k", "exclude_hours"), [(5, 24.0), (40, 0.0), (200, 36.0)])
def test_similar_times_nearest_neighbours_equal_the_hand_search(tmp_path, k, exclude_hours):
    """sklearn's NearestNeighbors (cosine) finds the same times, in the same order, at the same
    distances as the former argsort over hand-computed cosine distances."""
    from sdofm.embeddings.explore import similar_times

    rng = np.random.default_rng(1)
    n = 120
    times = pd.date_range("2011-01-01", periods=n, freq="6h")
    z = (rng.normal(size=(n, 16)) + 3.0).astype("f4")  # a large common part, as real ones have
    split = np.array(["train"] * 80 + ["val"] * 20 + ["test"] * 20)
    xr.Dataset(
        {"embedding": (("time", "feature"), z), "split": ("time", split)}, coords={"time": times}
    ).to_zarr(tmp_path / "e.zarr", consolidated=True, zarr_format=2)
    q = 57
    found = similar_times(tmp_path / "e.zarr", str(times[q]), k=k, exclude_hours=exclude_hours)
    ref_times, ref_dist = _similar_by_hand(z, times, split, q, k, exclude_hours)
    assert len(found) == min(k, len(ref_times)) > 0
    assert list(found["time"]) == list(ref_times)
    assert np.allclose(found["cosine_distance"], ref_dist, rtol=1e-5, atol=1e-6)
    assert found.attrs["query"] == str(times[q])


_CLASSES = [
    *(f"{c}{m:.1f}" for c in "ABCMX" for m in np.arange(1.0, 10.0, 0.1)),
    *["A0.5", "a0.05", "c3.25", "m9.99", "X9.9", "X10.0", "X10", "x12.5", "X25.3", "X130"],
]


def test_goes_class_to_flux_equals_sunkit_instruments():
    """Class → flux is sunkit-instruments' `flareclass_to_flux`, to the bit."""
    import astropy.units as u
    from sunkit_instruments.goes_xrs import flareclass_to_flux

    from sdofm.sources.goes import goes_class_to_flux

    for cls in _CLASSES:
        assert goes_class_to_flux(cls) == flareclass_to_flux(cls).to_value(u.W / u.m**2), cls


def test_flux_to_goes_class_agrees_with_sunkit_instruments():
    """Flux → class: sunkit-instruments' letter and magnitude, ours rounded to one decimal (the
    flare lists' form, "C9.9"); a magnitude that rounds to 10 moves up a letter (9.96e-6 is
    M1.0, not C10.0) except in X, which has no letter above (X130.0)."""
    import astropy.units as u
    from sunkit_instruments.goes_xrs import flareclass_to_flux, flux_to_flareclass

    from sdofm.sources.goes import GOES_SCALE, flux_to_goes_class

    edges = [1e-8, 1e-7, 1e-6, 1e-5, 1e-4, 1e-3, 1e-2]
    fluxes = np.concatenate(
        [
            np.logspace(-9.5, -1.5, 4001),
            [9.99e-6, 1e-5, 9.949e-6, 9.95e-6, 9.96e-6, 9.99e-5, 1e-4, 9.9e-4, 1.3e-2, 1e-9],
            np.multiply.outer(edges, [1 - 1e-12, 1 + 1e-12]).ravel(),
        ]
    )
    letters = list(GOES_SCALE)
    for flux in fluxes.tolist():  # Python floats: numpy's round() rounds differently
        ours = flux_to_goes_class(flux)
        theirs = flux_to_flareclass(flux * u.W / u.m**2)
        scale = GOES_SCALE[theirs[0]]
        assert scale == pytest.approx(flareclass_to_flux(f"{theirs[0]}1").to_value(u.W / u.m**2))
        magnitude = round(flux / scale, 1)
        if magnitude >= 10 and theirs[0] != "X":
            letter = letters[letters.index(theirs[0]) + 1]
            assert ours == f"{letter}{round(flux / (10 * scale), 1):.1f}", (flux, theirs)
        else:
            assert ours == f"{theirs[0]}{magnitude:.1f}", (flux, theirs)
    assert [flux_to_goes_class(f) for f in (9.99e-6, 1e-5, 9.949e-6, 2.5e-3)] == [
        "M1.0",
        "M1.0",
        "C9.9",
        "X25.0",
    ]


def _integrated_gradients_by_hand(f, x, steps):
    """The saliency's former integrated gradients: midpoint rule from the zero image, one batch."""
    import torch

    alphas = (torch.arange(steps, dtype=x.dtype) + 0.5) / steps
    path = (alphas[:, None, None, None] * x[None]).requires_grad_(True)
    (grad,) = torch.autograd.grad(f(path).sum(), path)
    return (x * grad.mean(dim=0)).detach()


@pytest.mark.parametrize("steps", [2, 32])
def test_integrated_gradients_equal_the_hand_midpoint_rule(steps):
    """Captum's IntegratedGradients (riemann_middle) gives the former attributions."""
    import torch

    from sdofm.benchmarks.flare_forecast import integrated_gradients

    torch.manual_seed(0)
    conv = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.GELU(), torch.nn.Flatten())
    head = torch.nn.Linear(4 * 10 * 10, 1)

    def f(b):
        return head(conv(b))[:, 0]

    x = torch.randn(3, 12, 12)
    ours = integrated_gradients(f, x, steps=steps)
    ref = _integrated_gradients_by_hand(f, x, steps)
    assert ours.shape == x.shape
    assert torch.allclose(ours, ref, rtol=1e-5, atol=1e-7)
    assert float(ref.abs().max()) > 1e-3  # a real attribution, not zeros


def _tai_by_hand(texts):
    """`parse_tobs`' former TAI reading: rewrite the JSOC form as ISO, then astropy TAI → UTC."""
    from astropy.time import Time

    iso = []
    for text in texts:
        date, clock = text[:-4].split("_")
        iso.append(f"{date.replace('.', '-')}T{clock}")
    return pd.DatetimeIndex(Time(iso, format="isot", scale="tai").utc.to_datetime())


def test_hmi_tai_times_by_sunpy_parse_time_equal_the_hand_parser(monkeypatch):
    """HMI T_OBS (``2011.01.01_00:00:34_TAI``, also with fractional seconds) read through
    sunpy.time.parse_time give the former UTC times, across leap seconds (2012-07-01,
    2015-07-01, 2017-01-01), with AIA's UTC strings in the same list left as they were."""
    import sunpy.time

    from sdofm.sources.sdoml import format_tai, parse_tobs

    calls = []
    parse = sunpy.time.parse_time
    monkeypatch.setattr(sunpy.time, "parse_time", lambda t: calls.append(t) or parse(t))
    rng = np.random.default_rng(2)
    steps = pd.date_range("2010-05-01", "2020-01-01", freq="7D")
    near = [pd.Timestamp(d) + pd.Timedelta(s, "s") for d in ("2012-07-01", "2017-01-01")
            for s in (-40, -1, 0, 1, 40)]  # fmt: skip
    whole = [format_tai(t) for t in [*steps, *near]]
    fraction = [
        f"{t[:-4]}.{rng.integers(0, 1000):03d}_TAI" for t in whole[::3]
    ]  # e.g. 2019.09.15_00:00:02.898_TAI
    texts = whole + fraction
    assert list(parse_tobs(texts)) == list(_tai_by_hand(texts))
    assert sorted(map(len, calls)) == sorted([len(whole), len(fraction)])  # sunpy read them
    aia = "2011-01-01T00:00:07.84Z"
    mixed = parse_tobs([aia, whole[0], fraction[0]])
    assert mixed[0] == pd.Timestamp("2011-01-01T00:00:07.84")
    assert list(mixed[1:]) == list(_tai_by_hand([whole[0], fraction[0]]))
    assert parse_tobs(["2011.01.01_00:00:34_TAI"])[0] == pd.Timestamp("2011-01-01")


def _b0_by_hand(t: pd.Timestamp) -> float:
    """The synthetic Sun's former B0: a sinusoid of ±7.25°, zero near 6 June."""
    day = (t - pd.Timestamp(t.year, 6, 6)) / pd.Timedelta(days=365.25)
    return 7.25 * float(np.sin(2 * np.pi * day))


def test_synthetic_b0_is_sunpys_and_agrees_with_the_sinusoid():
    """The synthetic Sun's B0 is sunpy's ephemeris; it differs from the former sinusoid by less
    than 0.4° (the sinusoid's peak and zero dates are a few days off), and an index of times is
    evaluated at once to the same values as one time at a time."""
    from sunpy.coordinates.sun import B0

    from sdofm.sources.synthetic.sun import b0_angle

    times = pd.date_range("2011-01-01", "2012-01-01", freq="5D")
    ours = b0_angle(times)
    assert np.abs(ours - np.array([_b0_by_hand(t) for t in times])).max() < 0.4
    assert ours.max() == pytest.approx(7.25, abs=0.05)
    t = times[40]
    assert b0_angle(t) == pytest.approx(ours[40], abs=1e-9)
    assert b0_angle(t) == pytest.approx(B0(t.to_pydatetime()).deg, abs=1e-9)
