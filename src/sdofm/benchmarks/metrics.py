"""Scores of predictions against the truth: one function per metric, ``(y_true, y_pred)``.

Regression metrics take arrays of shape (N,) or (N, K); classification metrics take labels and
either probabilities (``roc_auc``, ``brier``) or yes/no forecasts (``tss``, ``hss2``). Image
metrics (``ppe``, ``pixel_correlation``, ...) take (N, P) arrays of on-disk pixels and return
one value per image (``per_row``): the runner averages them and resamples the images.
A `Metric` names a function, its direction and what kind of prediction it scores.

Examples
--------
>>> import numpy as np
>>> float(tss(np.array([1, 1, 0, 0]), np.array([1, 0, 0, 0])))
0.5
>>> round(float(roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8]))), 2)
0.75
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

__all__ = [
    "Metric",
    "angular_error",
    "best_threshold",
    "brier",
    "frac_within",
    "hss2",
    "mae",
    "mape",
    "mean_r2",
    "median_rae",
    "on_column",
    "pearson_r",
    "pixel_correlation",
    "ppe",
    "r2",
    "relative_absolute_error",
    "relative_flux_difference",
    "rmse",
    "roc_auc",
    "row_mae",
    "row_rmse",
    "tss",
]


@dataclass(frozen=True)
class Metric:
    """A named score. ``kind``: what the arm's prediction is, as the function receives it.

    - ``"value"``: the prediction itself (regression);
    - ``"score"``: a probability or score (ROC AUC, Brier);
    - ``"decision"``: yes/no forecasts, the score thresholded where the task's threshold metric
      is best on the validation rows (TSS, HSS2).
    ``per_row``: the function returns one value per row (image), the metric is their mean.
    """

    name: str
    fn: Callable[[np.ndarray, np.ndarray], float | np.ndarray]
    higher_is_better: bool
    label: str
    kind: str = "value"
    per_row: bool = False


def relative_absolute_error(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Mean |pred − truth| / |truth| per output column, in percent: (N, K) -> (K,)."""
    return 100.0 * np.mean(np.abs(y_pred - y_true) / np.abs(y_true), axis=0)


def median_rae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Median over outputs (EVE lines) of the relative absolute error per output (%)."""
    return float(np.median(relative_absolute_error(y_true, y_pred)))


# Plain numpy (tested against scikit-learn): these run in every bootstrap resample, where
# scikit-learn's input checks cost milliseconds a call.


def rmse(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Root-mean-square error over every element."""
    return float(np.sqrt(np.mean((np.asarray(y_pred, float) - y_true) ** 2)))


def mae(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute error over every element."""
    return float(np.mean(np.abs(np.asarray(y_pred, float) - y_true)))


def mape(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean absolute percentage error, in percent."""
    return 100.0 * float(np.mean(np.abs(np.asarray(y_pred, float) - y_true) / np.abs(y_true)))


def pearson_r(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Pearson correlation of the flattened arrays; NaN when either is constant."""
    a, b = np.ravel(y_true).astype(float), np.ravel(y_pred).astype(float)
    if np.ptp(a) == 0 or np.ptp(b) == 0:
        return float("nan")
    return float(np.corrcoef(a, b)[0, 1])


def r2(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Coefficient of determination 1 − SS_res/SS_tot (as `sklearn.metrics.r2_score` for one
    output); NaN when the truth is constant."""
    y, p = np.asarray(y_true, float), np.asarray(y_pred, float)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return 1.0 - float(np.sum((p - y) ** 2)) / ss_tot if ss_tot > 0 else float("nan")


def mean_r2(columns: list[int]) -> Callable[[np.ndarray, np.ndarray], float]:
    """The mean R² of output ``columns`` of (N, K) arrays (NaN columns left out)."""

    def score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        values = [r2(y_true[:, k], y_pred[:, k]) for k in columns]
        return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")

    score.__name__ = "mean_r2"
    return score


def on_column(fn: Callable, column: int) -> Callable[[np.ndarray, np.ndarray], float]:
    """``fn`` scored on one output column of (N, K) arrays (one target of several)."""

    def score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return fn(y_true[:, column], y_pred[:, column])

    score.__name__ = f"{fn.__name__}_{column}"
    return score


def angular_error(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Mean great-circle distance (deg) between (latitude, longitude) pairs in degrees: (N, 2)."""
    lat1, lon1 = np.radians(np.asarray(y_true, float)).T
    lat2, lon2 = np.radians(np.asarray(y_pred, float)).T
    c = np.sin(lat1) * np.sin(lat2) + np.cos(lat1) * np.cos(lat2) * np.cos(lon2 - lon1)
    return float(np.degrees(np.arccos(np.clip(c, -1.0, 1.0))).mean())


def frac_within(tolerance: float) -> Callable[[np.ndarray, np.ndarray], float]:
    """The fraction of elements with |pred − truth| < ``tolerance`` (Dos Santos et al. 2021)."""

    def score(y_true: np.ndarray, y_pred: np.ndarray) -> float:
        return float(np.mean(np.abs(np.asarray(y_pred) - y_true) < tolerance))

    score.__name__ = f"frac_within_{tolerance:g}"
    return score


def _confusion(y_true: np.ndarray, yes: np.ndarray) -> tuple[int, int, int, int]:
    """(TP, FN, FP, TN) of yes/no forecasts against outcomes (counted directly: the bootstrap
    calls this thousands of times, where `sklearn.metrics.confusion_matrix`'s checks dominate)."""
    y, f = np.asarray(y_true, bool), np.asarray(yes, bool)
    tp, pos, alarms = np.count_nonzero(y & f), np.count_nonzero(y), np.count_nonzero(f)
    return tp, pos - tp, alarms - tp, len(y) - pos - alarms + tp


def tss(y_true: np.ndarray, yes: np.ndarray) -> float:
    """True skill statistic TP/(TP+FN) − FP/(FP+TN); NaN without positives or negatives."""
    tp, fn, fp, tn = _confusion(y_true, yes)
    if tp + fn == 0 or fp + tn == 0:
        return float("nan")
    return tp / (tp + fn) - fp / (fp + tn)


def hss2(y_true: np.ndarray, yes: np.ndarray) -> float:
    """Heidke skill score 2(TP·TN − FN·FP) / ((TP+FN)(FN+TN) + (TP+FP)(FP+TN)); NaN if 0/0."""
    tp, fn, fp, tn = _confusion(y_true, yes)
    den = (tp + fn) * (fn + tn) + (tp + fp) * (fp + tn)
    return 2.0 * (tp * tn - fn * fp) / den if den else float("nan")


def roc_auc(y_true: np.ndarray, score: np.ndarray) -> float:
    """Area under the ROC curve (ties count half); NaN with a single outcome class.

    The Mann-Whitney form, from `scipy.stats.rankdata` (equal to `sklearn.metrics.roc_auc_score`
    and much cheaper per bootstrap resample).
    """
    y = np.asarray(y_true, bool)
    n_pos = np.count_nonzero(y)
    if n_pos in (0, len(y)):
        return float("nan")
    ranks = rankdata(np.asarray(score, float))
    return float((ranks[y].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * (len(y) - n_pos)))


def brier(y_true: np.ndarray, prob: np.ndarray) -> float:
    """Brier score: mean squared difference of probability and outcome (0 is perfect)."""
    y = np.asarray(y_true, bool).astype(float)
    return float(np.mean((np.clip(np.asarray(prob, float), 0.0, 1.0) - y) ** 2))


def best_threshold(y_true: np.ndarray, score: np.ndarray, metric: Callable = tss) -> float:
    """The threshold (forecast yes where score >= it) maximising ``metric`` on (y, score).

    Candidates are midpoints between consecutive distinct scores, plus one below all ("always")
    and one above all ("never"). Ties go to the highest threshold (fewest false alarms). NaN
    when ``metric`` is undefined everywhere (one outcome class).
    """
    u = np.unique(np.asarray(score, float))
    if len(u) == 0:
        return float("nan")
    cand = np.concatenate([[u[0] - 1.0], (u[:-1] + u[1:]) / 2, [u[-1] + 1.0]])
    values = np.array([metric(y_true, score >= c) for c in cand], float)
    if not np.isfinite(values).any():
        return float("nan")
    best = np.flatnonzero(values >= np.nanmax(values) - 1e-12)
    return float(cand[best[-1]])


# Image metrics: (N, P) on-disk pixels -> one value per image.


def ppe(tolerance: float) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Per image, the fraction of pixels with |pred − truth| / |truth| below ``tolerance``."""

    def score(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.abs(y_pred - y_true) / np.abs(y_true)  # a zero-truth pixel is a miss
        return (rel < tolerance).mean(axis=1)

    score.__name__ = f"ppe{round(100 * tolerance)}"
    return score


def pixel_correlation(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Per image, the Pearson correlation over pixels (NaN when either image is constant)."""
    t = y_true - y_true.mean(axis=1, keepdims=True)
    p = y_pred - y_pred.mean(axis=1, keepdims=True)
    den = np.sqrt((t**2).sum(axis=1) * (p**2).sum(axis=1))
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(den > 0, (t * p).sum(axis=1) / den, np.nan)


def row_mae(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Per row (image, or sample of several outputs), the mean absolute error: (N, K) -> (N,).

    Their mean over rows is `mae` on equal-length rows, without sklearn's per-call checks
    (milliseconds each, in every bootstrap resample).
    """
    return np.abs(np.asarray(y_pred, float) - y_true).mean(axis=1)


def row_rmse(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Per image, the root-mean-square error over pixels."""
    return np.sqrt(((y_pred - y_true) ** 2).mean(axis=1))


def relative_flux_difference(y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Per image, |Σpred − Σtruth| / Σtruth: the error of the total (disk-integrated) flux."""
    total = y_true.sum(axis=1)
    return np.abs(y_pred.sum(axis=1) - total) / np.abs(total)
