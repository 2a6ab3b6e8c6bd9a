"""The shortcut arms (kind "shortcut"): what they can and cannot learn, on training rows only,
and how metrics.json and the reports say whether one beats the paper's method."""

import json

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter

from sdofm.benchmarks import scoring
from sdofm.benchmarks.metrics import Metric, pixel_correlation
from sdofm.benchmarks.result import KINDS, SCHEMA_PATH
from sdofm.benchmarks.runner import Fit
from sdofm.benchmarks.shortcuts import inner_disk_median, per_pixel_arm
from sdofm.dataset.loader import disk_mask
from sdofm.reports.tables import KIND_COLOUR, KIND_LABEL, shortcut_sentence

RNG = np.random.default_rng(3)
N, C, S = 24, 3, 16  # images, input channels, side


def _inputs() -> np.ndarray:
    """Log-normal images with structure on a few pixels' scale: (N, C, S, S) DN/s."""
    z = gaussian_filter(RNG.normal(size=(N, C, S, S)), (0, 0, 1, 1))
    return np.exp(3.0 + 4.0 * z)


def _fit(x, y) -> np.ndarray:
    """The per-pixel arm trained on rows 0-11 (rows 12-15 given as validation): predictions of
    all rows."""
    rows = {"train": np.arange(12), "val": np.arange(12, 16)}
    return per_pixel_arm(x)(Fit(rows, y, 0, torch.device("cpu")))(np.arange(N))


def _corr(y, p) -> float:
    return float(np.mean(pixel_correlation(y[12:], p[12:])))


def test_per_pixel_recovers_a_per_pixel_quadratic():
    """A target that is a quadratic in log intensity of the inputs, pixel by pixel: r > 0.99."""
    x = _inputs().reshape(N, C, -1)
    logs = np.log1p(x)
    y = np.expm1(0.5 + 0.3 * logs[:, 0] - 0.1 * logs[:, 1] + 0.04 * logs[:, 2] ** 2)
    assert _corr(y, _fit(x, y)) > 0.99


def test_per_pixel_cannot_use_the_neighbourhood():
    """A target made of each pixel's neighbourhood (a wide blur of one input) is out of reach."""
    x = _inputs()
    y = np.exp(gaussian_filter(np.log(x[:, 0]), (0, 4, 4), mode="wrap") * 2).reshape(N, -1)
    x = x.reshape(N, C, -1)
    assert _corr(y, _fit(x, y)) < 0.6


def test_per_pixel_learns_from_training_rows_only():
    """Targets changed on validation and test rows leave every prediction as it was; changed on
    training rows, they move it."""
    x = _inputs().reshape(N, C, -1)
    y = np.expm1(1.0 + 0.5 * np.log1p(x[:, 1]))
    before = _fit(x, y)
    planted = y.copy()
    planted[12:] = planted[12:] ** 2 + 1e4  # validation and test rows
    np.testing.assert_array_equal(_fit(x, planted), before)
    planted[:12] = planted[:12] ** 2 + 1e4
    assert not np.allclose(_fit(x, planted), before)


def test_per_pixel_fills_a_missing_input_pixel():
    """A NaN input pixel is the channel's training-mean log intensity: predictions stay finite."""
    x = _inputs().reshape(N, C, -1)
    y = np.expm1(1.0 + 0.5 * np.log1p(x[:, 1]))
    x[3, 1, :5] = x[20, 0, 7] = np.nan
    assert np.isfinite(_fit(x, y)).all()


def test_inner_disk_median_recovers_a_dimming_on_a_constant_quiet_sun():
    """Constant quiet Sun, a bright region on a third of the inner disk: the inner-disk median
    over its undimmed training mean is the planted α (the mean would be fooled by the region)."""
    size, rsun = 32, 12.0
    quiet = np.array([50.0, 300.0])[:, None, None] * disk_mask(size, rsun)
    images = np.repeat(quiet[None], 6, axis=0)
    inner = disk_mask(size, rsun / 2)
    region = inner & (np.arange(size)[None, :] < 14)
    assert 0.2 < region.sum() / inner.sum() < 0.45
    images[3:, :, region] *= 20.0  # a region on the later images only
    ref = inner_disk_median(images[:3], rsun).mean(axis=0)
    alpha = np.array([[0.3, 0.9], [0.05, 0.6], [1.0, 0.02]])
    got = inner_disk_median(images[3:] * alpha[:, :, None, None], rsun) / ref
    np.testing.assert_allclose(got, alpha, rtol=1e-12)
    by_mean = (images[3:] * alpha[:, :, None, None])[:, :, inner].mean(axis=2) / ref
    assert np.abs(by_mean - alpha).max() > 0.5


def test_kinds_are_one_list():
    """The schema's kinds, the reports' labels and colours are the runner's kinds."""
    schema = json.loads(SCHEMA_PATH.read_text())
    enum = schema["properties"]["arms"]["additionalProperties"]["properties"]["kind"]["enum"]
    assert set(enum) == set(KINDS) == set(KIND_LABEL) == set(KIND_COLOUR)
    assert "shortcut" in KINDS


class _Task:
    metrics = (Metric("r", pixel_correlation, True, "r", per_row=True),)


def _group(shortcut: float, paper: float, fm: float, spread: float = 0.002) -> dict:
    """Scores of three arms on 200 resamples, around the given values."""
    r = np.random.default_rng(0)
    values = dict(zip(ARMS, (shortcut, paper, fm), strict=True))
    draws = [
        {a: np.array([v + spread * r.normal()]) for a, v in values.items()} for _ in range(200)
    ]
    return {"per_seed": {a: [[v]] for a, v in values.items()}, "draws": draws}


ARMS = ("quad", "unet", "fm_head")
KIND = {"quad": "shortcut", "unet": "paper", "fm_head": "fm"}


@pytest.mark.parametrize(
    ("values", "against_paper", "against_fm", "says"),
    [
        ((0.97, 0.95, 0.96), "shortcut better", "FM worse", "No paper baseline beats it"),
        ((0.90, 0.95, 0.96), "shortcut worse", "FM better", "The paper's method (unet) beats it"),
    ],
)
def test_the_report_says_whether_the_shortcut_wins(values, against_paper, against_fm, says):
    """metrics.json's shortcuts section (shortcut − paper on the same resamples) and the report's
    sentence: a shortcut above the paper's method is reported as beating it, and not otherwise."""
    group = _group(*values)
    arms, diffs = scoring.estimates(_Task, group, 0.95)
    tricks = scoring.shortcuts(_Task, group, 0.95, arms, KIND)
    assert list(tricks) == ["quad"] and list(tricks["quad"]) == ["unet"]
    d = tricks["quad"]["unet"]["r"]
    assert d["verdict"] == against_paper and d["value"] == pytest.approx(values[0] - values[1])
    assert diffs["quad"]["r"]["verdict"] == against_fm
    result = {
        "headline": {"metric": "r", "label": "r"},
        "arms": {a: {"kind": KIND[a], "description": a, "metrics": arms[a]} for a in ARMS},
        "differences": diffs,
        "shortcuts": tricks,
    }
    text = shortcut_sentence(result)
    assert says in text
    beats_paper = "**beats** the paper's baseline unet" in text
    assert beats_paper == (against_paper == "shortcut better")
    assert ("**beats** the FM head" in text) == (against_fm == "FM worse")
    assert shortcut_sentence(result | {"shortcuts": {}}) == ""
