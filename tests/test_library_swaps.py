"""Hand-rolled numerics replaced by scikit-learn give the same results (within tolerance)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

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
    import xarray as xr

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
        assert np.allclose(np.abs(ours), np.abs(xy[:, k]), rtol=1e-4, atol=1e-6)
    explained = s[:2] ** 2 / (s**2).sum()
    assert np.allclose([info["explained_pc1"], info["explained_pc2"]], explained, rtol=1e-6)


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
