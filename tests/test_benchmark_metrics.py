"""Metrics: hand-checked cases and agreement with scikit-learn / numpy references."""

import numpy as np
import pytest
from sklearn import metrics as skm

from sdofm.benchmarks import metrics as m


def test_relative_absolute_error_and_median_by_hand():
    truth = np.array([[1.0, 10.0, 2.0], [2.0, 20.0, 2.0], [4.0, 5.0, 2.0]])
    pred = np.array([[1.1, 9.0, 2.0], [2.0, 22.0, 3.0], [3.0, 5.0, 2.0]])
    # lines: (0.1 + 0 + 0.25)/3, (0.1 + 0.1 + 0)/3, (0 + 0.5 + 0)/3
    expected = 100 * np.array([0.35, 0.2, 0.5]) / 3
    np.testing.assert_allclose(m.relative_absolute_error(truth, pred), expected)
    assert m.median_rae(truth, pred) == pytest.approx(100 * 0.35 / 3)


def test_regression_metrics_match_references():
    rng = np.random.default_rng(0)
    y = rng.uniform(50, 200, 100)
    p = y + rng.normal(0, 10, 100)
    assert m.rmse(y, p) == pytest.approx(np.sqrt(skm.mean_squared_error(y, p)))
    assert m.mae(y, p) == pytest.approx(skm.mean_absolute_error(y, p))
    assert m.mape(y, p) == pytest.approx(100 * skm.mean_absolute_percentage_error(y, p))
    assert m.pearson_r(y, p) == pytest.approx(np.corrcoef(y, p)[0, 1])
    assert np.isnan(m.pearson_r(y, np.full(100, 3.0)))  # a constant (climatology) has no r


def test_frac_within():
    f = m.frac_within(0.05)
    assert f(np.array([0.5, 0.5, 0.5, 0.5]), np.array([0.5, 0.54, 0.56, 0.2])) == 0.5
    assert f.__name__ == "frac_within_0.05"


def test_tss_hss2_by_hand_and_against_sklearn():
    y = np.array([1, 1, 1, 0, 0, 0, 0, 0])
    yes = np.array([1, 1, 0, 1, 0, 0, 0, 0])
    # TP 2, FN 1, FP 1, TN 4: TSS = 2/3 - 1/5
    assert m.tss(y, yes) == pytest.approx(2 / 3 - 1 / 5)
    recall = skm.recall_score(y, yes)
    fpr = 1 - skm.recall_score(1 - y, 1 - yes)
    assert m.tss(y, yes) == pytest.approx(recall - fpr)
    # HSS2 = 2(TP TN - FN FP) / ((TP+FN)(FN+TN) + (TP+FP)(FP+TN)) = 2·7 / (3·5 + 3·5)
    assert m.hss2(y, yes) == pytest.approx(14 / 30)
    # HSS2 equals Cohen's kappa
    assert m.hss2(y, yes) == pytest.approx(skm.cohen_kappa_score(y, yes))
    assert np.isnan(m.tss(np.zeros(4), np.array([1, 0, 1, 0])))


def test_roc_auc_and_brier():
    y = np.array([0, 0, 1, 1])
    p = np.array([0.1, 0.4, 0.35, 0.8])
    assert m.roc_auc(y, p) == pytest.approx(0.75)
    assert m.roc_auc(y, np.array([0.5, 0.5, 0.5, 0.5])) == pytest.approx(0.5)  # ties count half
    assert np.isnan(m.roc_auc(np.ones(4), p))
    assert m.brier(y, p) == pytest.approx(np.mean((p - y) ** 2))


def test_best_threshold_maximises_tss_and_prefers_fewer_false_alarms():
    y = np.array([0, 0, 0, 1, 1, 0])
    score = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    th = m.best_threshold(y, score, m.tss)
    assert m.tss(y, score >= th) == pytest.approx(1 - 1 / 4)  # both flares, one false alarm
    # Ties: a constant score gives TSS 0 at every threshold: take "never" (the highest).
    th = m.best_threshold(y, np.full(6, 0.5), m.tss)
    assert not (np.full(6, 0.5) >= th).any()
    assert np.isnan(m.best_threshold(np.zeros(3), np.array([0.1, 0.2, 0.3]), m.tss))


def test_image_metrics_per_image():
    truth = np.array([[1.0, 2.0, 4.0, 8.0], [2.0, 2.0, 2.0, 2.0]])
    pred = np.array([[1.05, 2.5, 4.0, 4.0], [2.0, 2.0, 2.0, 2.0]])
    np.testing.assert_allclose(m.ppe(0.1)(truth, pred), [0.5, 1.0])
    np.testing.assert_allclose(m.ppe(0.5)(truth, pred), [0.75, 1.0])  # 4 vs 8: 50 %, not below
    r = m.pixel_correlation(truth, pred)
    assert r[0] == pytest.approx(np.corrcoef(truth[0], pred[0])[0, 1])
    assert np.isnan(r[1])  # constant images have no correlation
    np.testing.assert_allclose(m.row_rmse(truth, pred), [np.sqrt((0.05**2 + 0.25 + 16) / 4), 0])
    np.testing.assert_allclose(m.relative_flux_difference(truth, pred), [3.45 / 15, 0])
