"""Shortcuts: estimators that ignore the images' spatial structure, run as arms (kind "shortcut").

An audit of the synthetic Sun (issue 14) found tasks a trick could solve without the spatial
structure a foundation model is meant to learn. Each trick runs as an arm of its task, on the
same rows, seeds and resamples as the paper's method, so every report shows whether it still
wins; where it does, the task (or the synthetic Sun) does not test what the real task tests.

- `per_pixel_arm`: missing channel, a quadratic in log intensity of the other channels fitted
  per pixel by least squares (``2C + 1`` parameters for ``C`` inputs; 17 for eight AIA channels);
- `inner_disk_median`: auto-calibration's zero-parameter estimator, the inner-disk median of a
  dimmed image over the training mean of that of the undimmed images.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = [
    "PixelQuadratic",
    "inner_disk_median",
    "least_squares",
    "per_pixel_arm",
    "quadratic_features",
]

RIDGE = 1e-3  # a tiny ridge on the normal equations, for stability only
CHUNK = 32  # images per block of the normal equations (bounded memory on long series)


def quadratic_features(logs: np.ndarray) -> np.ndarray:
    """Per-pixel features of log intensities (..., C, P): (..., P, 2C + 1), an intercept, each
    channel's log intensity and its square."""
    x = np.moveaxis(np.asarray(logs, np.float64), -2, -1)
    return np.concatenate([np.ones((*x.shape[:-1], 1)), x, x**2], axis=-1)


def least_squares(blocks: Iterable[tuple[np.ndarray, np.ndarray]], ridge: float = RIDGE):
    """Weights w minimising Σ |a w − b|² (+ ridge |w|²) over blocks (a (n, F), b (n,)), from
    the normal equations accumulated block by block."""
    ata, atb = 0.0, 0.0
    for a, b in blocks:
        ata, atb = ata + a.T @ a, atb + a.T @ b
    return np.linalg.solve(ata + ridge * np.eye(len(atb)), atb)


class PixelQuadratic:
    """log1p(target) as `quadratic_features` of log1p(inputs), the same weights at every pixel.

    Inputs (N, C, P) and targets (N, P) in physical units (DN/s, clipped at 0); a NaN input is
    that channel's training-mean log intensity (what the trained arms' normalisation gives it).
    """

    def fit(self, x: np.ndarray, y: np.ndarray) -> PixelQuadratic:
        with np.errstate(invalid="ignore"):
            self.fill = np.nanmean(np.log1p(np.clip(x, 0.0, None)), axis=(0, 2))
        target = np.log1p(np.clip(np.asarray(y, np.float64), 0.0, None))
        blocks = (
            (self._features(x[k : k + CHUNK]), target[k : k + CHUNK].ravel())
            for k in range(0, len(x), CHUNK)
        )
        self.coef = least_squares(blocks)
        return self

    def _features(self, x: np.ndarray) -> np.ndarray:
        """(n, C, P) inputs -> (n * P, 2C + 1) rows of the regression."""
        return quadratic_features(self._logs(x)).reshape(-1, 2 * len(self.fill) + 1)

    def _logs(self, x: np.ndarray) -> np.ndarray:
        logs = np.log1p(np.clip(np.asarray(x, np.float64), 0.0, None))
        return np.where(np.isnan(logs), self.fill[:, None], logs)

    def predict(self, x: np.ndarray) -> np.ndarray:
        """Physical targets (N, P) of inputs (N, C, P)."""
        out = np.empty((len(x), np.shape(x)[-1]))
        for k in range(0, len(x), CHUNK):
            part = x[k : k + CHUNK]
            out[k : k + CHUNK] = np.expm1(self._features(part) @ self.coef).reshape(len(part), -1)
        return out


def per_pixel_arm(x: np.ndarray):
    """An arm's ``train``: `PixelQuadratic` from inputs ``x`` (N, C, P) of every sample to the
    targets, fitted on the training rows only; returns the predictor of sample rows."""

    def train(f):
        tr = f.rows["train"]
        model = PixelQuadratic().fit(x[tr], f.y[tr])
        return lambda rows: model.predict(x[rows])

    return train


def inner_disk_median(
    images: np.ndarray, rsun_px: float | None = None, *, fraction: float = 0.5
) -> np.ndarray:
    """The median of each image (..., H, W) within ``fraction`` of the disk radius: (...).

    ``rsun_px``: the disk radius in pixels (None: the SDOML v2 scale at this size)."""
    from sdofm.dataset.loader import disk_mask, sdoml_rsun_px

    size = np.shape(images)[-1]
    rsun = rsun_px or sdoml_rsun_px(size)
    return np.nanmedian(np.asarray(images)[..., disk_mask(size, fraction * rsun)], axis=-1)
