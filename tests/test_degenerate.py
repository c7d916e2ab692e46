"""EM on degenerate data ends with finite parameters and a warning naming what happened."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


def _fit_recording(X, n_components=2, covariance_type="full", **options):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = bm.GaussianMixture(n_components, covariance_type).fit(X, random_state=0, **options)
    for name in ("weights", "means", "covariances"):
        assert np.isfinite(result.posterior[name].values).all(), name
    messages = [str(w.message) for w in caught if w.category is bm.DegenerateComponentWarning]
    return result, messages


@pytest.fixture(scope="module")
def rng():
    return np.random.default_rng(3)


@pytest.mark.parametrize("covariance_type", ["full", "diag", "spherical"])
def test_identical_points_are_named(rng, covariance_type):
    X = np.vstack([rng.normal(size=(50, 2)), np.tile([[6.0, 6.0]], (30, 1))])
    result, messages = _fit_recording(X, covariance_type=covariance_type)
    collapsed = int(np.argmin(np.abs(result.means - 6.0).sum(axis=1)))
    assert any(
        f"component {collapsed} sits on identical points (about 30 observations" in m
        for m in messages
    ), messages
    assert any("Remove duplicated rows" in m for m in messages)


def test_identical_points_under_a_tied_covariance(rng):
    X = np.repeat(rng.normal(size=(2, 2)), 20, axis=0)
    _, messages = _fit_recording(X, covariance_type="tied")
    assert any("all components sit on identical points" in m for m in messages), messages


@pytest.mark.parametrize("covariance_type", ["full", "diag", "tied"])
def test_constant_feature_is_named(rng, covariance_type):
    X = pd.DataFrame({"height": rng.normal(size=80), "site": 3.0})
    _, messages = _fit_recording(X, covariance_type=covariance_type)
    assert any("feature 'site' is constant in X" in m for m in messages), messages


def test_feature_constant_within_one_component(rng):
    a = np.column_stack([rng.normal(size=40), np.full(40, 2.0)])
    b = np.column_stack([rng.normal(8.0, 1.0, size=40), rng.normal(size=40)])
    X = pd.DataFrame(np.vstack([a, b]), columns=["x", "dose"])
    result, messages = _fit_recording(X)
    k = int(np.argmin(result.means[:, 0]))
    assert any(f"feature 'dose' is constant within component {k}" in m for m in messages), messages


@pytest.mark.parametrize("covariance_type", ["full", "tied"])
def test_collinear_features_are_named(rng, covariance_type):
    t = rng.normal(size=90)
    X = pd.DataFrame({"a": t, "b": 2.0 * t - 1.0, "c": rng.normal(size=90)})
    _, messages = _fit_recording(X, covariance_type=covariance_type)
    assert any("features 'a', 'b' are collinear within" in m for m in messages), messages


def test_too_few_observations_for_a_full_covariance(rng):
    X = np.vstack([rng.normal(size=(60, 5)), rng.normal(10.0, 1.0, size=(4, 5))])
    # started on the 4-point cluster (EM's own starts set such a spurious fit aside)
    start = {"means": [X[:60].mean(axis=0), X[60:].mean(axis=0)]}
    _, messages = _fit_recording(X, init=start)
    assert any("has about 4.0 observations for 5 features" in m for m in messages), messages
    assert any("spurious maximum" in m and "fewer than the 6 its covariance" in m for m in messages)


def test_data_below_reg_covar(rng):
    X = rng.normal(size=(60, 2)) * 1e-200
    _, messages = _fit_recording(X)
    assert any("the spread of X" in m and "standardise" in m for m in messages), messages


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_healthy_data_gives_no_degeneracy_warning(rng, covariance_type):
    X = np.vstack([rng.normal(size=(60, 3)), rng.normal(5.0, 1.0, size=(60, 3))])
    _, messages = _fit_recording(X, covariance_type=covariance_type)
    assert messages == []


def test_map_fit_of_identical_points_stays_finite_and_quiet(rng):
    X = np.vstack([rng.normal(size=(50, 2)), np.tile([[6.0, 6.0]], (30, 1))])
    result, messages = _fit_recording(X, method="map")
    assert messages == []
    assert np.linalg.eigvalsh(result.covariances).min() > 1e-3


@pytest.mark.parametrize("name", ["breast_cancer", "wine", "iris"])
@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_real_data_on_mixed_scales_gives_no_degeneracy_warning(name, covariance_type):
    # breast_cancer mixes variances from 7e-6 to 3e5: features with standard deviations of
    # 0.003 and ~500 distinct values are neither constant nor collinear
    datasets = pytest.importorskip("sklearn.datasets")
    X = getattr(datasets, f"load_{name}")().data
    _, messages = _fit_recording(X, n_components=1, covariance_type=covariance_type)
    assert messages == []


def test_tiny_scale_feature_is_not_constant(rng):
    X = pd.DataFrame({"x": rng.normal(size=100), "tiny": 1e-6 * (1.0 + 0.3 * rng.normal(size=100))})
    for covariance_type in COVARIANCE_TYPES:
        _, messages = _fit_recording(X, n_components=1, covariance_type=covariance_type)
        assert messages == [], covariance_type


def test_constant_feature_at_a_large_value_is_named(rng):
    X = pd.DataFrame({"x": rng.normal(size=100), "serial": 1e6})
    _, messages = _fit_recording(X, n_components=1)
    assert any("feature 'serial' is constant in X" in m for m in messages), messages


def test_a_large_offset_changes_neither_the_fit_nor_the_verdict(rng):
    """A column far from zero with unit spread (1e8 + N(0, 1)) is not constant: the fit
    on it equals the fit on the centred column (the floor of a variance by rounding is
    (eps * mean)^2, not eps * mean^2, which called it constant and regularised it with
    its squared mean: variances of 1e8); the same column held at 1e8 + 0.1 still is."""
    x = np.concatenate([rng.normal(0.0, 1.0, 300), rng.normal(5.0, 1.0, 300)])[:, None]
    centred, _ = _fit_recording(x, n_components=2)
    for offset in (1e8, 1e12):
        shifted, messages = _fit_recording(x + offset, n_components=2)
        assert messages == [], offset
        np.testing.assert_allclose(shifted.means - offset, centred.means, atol=1e-3)
        np.testing.assert_allclose(shifted.covariances, centred.covariances, rtol=1e-3)
    X = pd.DataFrame({"x": rng.normal(size=100), "held": 1e8 + 0.1})
    _, messages = _fit_recording(X, n_components=1)
    assert any("feature 'held' is constant in X" in m for m in messages), messages


def test_collinear_tiny_scale_features_are_named(rng):
    t = 1e-6 * rng.normal(size=100)
    X = pd.DataFrame({"a": t, "b": 3.0 * t + 1e-6, "big": rng.normal(1e6, 1.0, size=100)})
    _, messages = _fit_recording(X, n_components=1)
    assert any("features 'a', 'b' are collinear within" in m for m in messages), messages
