"""The shipped data sets and the simulated benchmark."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import bayesmix as bm
from bayesmix.datasets import (
    load_banknote,
    load_biochemists,
    load_faithful,
    load_galaxies,
    make_shifted_stretched,
)


def test_load_faithful():
    X = load_faithful()
    assert isinstance(X, pd.DataFrame)
    assert X.shape == (272, 2)
    assert list(X.columns) == ["eruptions", "waiting"]
    assert all(pd.api.types.is_numeric_dtype(t) for t in X.dtypes)
    assert not X.isna().any().any()
    # R's datasets::faithful: first row 3.600 / 79, known summary statistics.
    assert tuple(X.iloc[0]) == (3.6, 79)
    assert X["eruptions"].min() == 1.6 and X["eruptions"].max() == 5.1
    assert X["waiting"].min() == 43 and X["waiting"].max() == 96
    np.testing.assert_allclose(X.mean().to_numpy(), [3.487783, 70.897059], atol=1e-6)


def test_load_faithful_returns_a_fresh_frame():
    first = load_faithful()
    first.iloc[0, 0] = -1.0
    assert load_faithful().iloc[0, 0] == 3.6


def test_load_banknote():
    X = load_banknote()
    assert X.shape == (200, 6)
    assert list(X.columns) == ["Length", "Left", "Right", "Bottom", "Top", "Diagonal"]
    assert all(pd.api.types.is_float_dtype(t) for t in X.dtypes)
    # R's mclust::banknote: first row and column means
    assert tuple(X.iloc[0]) == (214.8, 131.0, 131.1, 9.0, 9.7, 141.0)
    np.testing.assert_allclose(
        X.mean().to_numpy(), [214.896, 130.1215, 129.9565, 9.4175, 10.6505, 140.4835]
    )
    labelled = load_banknote(status=True)
    assert labelled.columns[0] == "Status"
    assert labelled["Status"].value_counts().to_dict() == {"genuine": 100, "counterfeit": 100}
    assert (labelled["Status"].iloc[:100] == "genuine").all()


def test_load_biochemists():
    X = load_biochemists()
    assert isinstance(X, pd.DataFrame)
    assert X.shape == (915, 6)
    assert list(X.columns) == ["art", "fem", "mar", "kid5", "phd", "ment"]
    assert not X.isna().any().any()
    for column in ("art", "kid5", "ment"):
        assert pd.api.types.is_integer_dtype(X[column])
    assert X["phd"].dtype == np.float64
    # flexmix::bioChemists: first row, factor levels and counts, summary statistics.
    assert tuple(X.iloc[0]) == (0, "Men", "Married", 0, 2.52, 7)
    assert X["fem"].value_counts().to_dict() == {"Men": 494, "Women": 421}
    assert X["mar"].value_counts().to_dict() == {"Married": 606, "Single": 309}
    assert X["art"].sum() == 1549 and X["art"].max() == 19
    assert (X["art"] == 0).sum() == 275
    assert X["kid5"].sum() == 453 and X["ment"].sum() == 8022
    assert X["phd"].min() == 0.755 and X["phd"].max() == 4.62
    assert X["phd"].sum() == pytest.approx(2839.345)
    # the counts fit a count family directly
    em = bm.Mixture(1, bm.families.Poisson()).fit(X[["art"]], random_state=0)
    assert em.parameters["rates"][0, 0] == pytest.approx(1549 / 915)


@pytest.mark.parametrize("thousands", [False, True])
def test_load_galaxies(thousands):
    X = load_galaxies(thousands=thousands)
    assert X.shape == (82, 1)
    assert list(X.columns) == ["velocity"]
    assert X["velocity"].dtype == np.float64
    scale = 1000.0 if thousands else 1.0
    # MASS::galaxies: range 9172 .. 34279 km/s, median 20833.5.
    assert X["velocity"].min() * scale == pytest.approx(9172.0)
    assert X["velocity"].max() * scale == pytest.approx(34279.0)
    assert X["velocity"].median() * scale == pytest.approx(20833.5)


def test_galaxies_thousands_is_a_rescaling():
    np.testing.assert_allclose(
        load_galaxies(thousands=True).to_numpy() * 1000.0, load_galaxies().to_numpy()
    )


def test_shipped_data_fit_directly():
    res = bm.GaussianMixture(2).fit(load_galaxies(thousands=True), random_state=0)
    assert res.feature_names == ("velocity",)
    res = bm.GaussianMixture(2).fit(load_faithful(), random_state=0)
    assert res.feature_names == ("eruptions", "waiting")


@pytest.mark.parametrize("n_samples", [2, 7, 300])
def test_make_shifted_stretched_shapes_and_labels(n_samples):
    X, labels = make_shifted_stretched(n_samples, random_state=0)
    assert isinstance(X, pd.DataFrame)
    assert X.shape == (n_samples, 2)
    assert list(X.columns) == ["x0", "x1"]
    assert labels.shape == (n_samples,)
    assert np.bincount(labels).tolist() == [n_samples // 2, n_samples - n_samples // 2]
    assert set(labels.tolist()) == {0, 1}


def test_make_shifted_stretched_distribution():
    X, labels = make_shifted_stretched(40000, random_state=1)
    X = X.to_numpy()
    a = np.array([[0.0, -0.7], [3.5, 0.7]])
    np.testing.assert_allclose(X[labels == 0].mean(0), [20.0, 20.0], atol=0.03)
    np.testing.assert_allclose(np.cov(X[labels == 0].T), np.eye(2), atol=0.04)
    np.testing.assert_allclose(X[labels == 1].mean(0), [0.0, 0.0], atol=0.1)
    np.testing.assert_allclose(np.cov(X[labels == 1].T), a.T @ a, rtol=0.03, atol=0.03)


def test_make_shifted_stretched_is_reproducible():
    X1, y1 = make_shifted_stretched(50, random_state=3)
    X2, y2 = make_shifted_stretched(50, random_state=np.random.default_rng(3))
    X3, _ = make_shifted_stretched(50, random_state=4)
    pd.testing.assert_frame_equal(X1, X2)
    np.testing.assert_array_equal(y1, y2)
    assert not np.allclose(X1.to_numpy(), X3.to_numpy())


def test_make_shifted_stretched_rejects_bad_arguments():
    with pytest.raises(ValueError, match="n_samples must be >= 2; got 1"):
        make_shifted_stretched(1)
    with pytest.raises(TypeError, match="n_samples must be an integer"):
        make_shifted_stretched(10.5)
    with pytest.raises(TypeError, match="random_state must be None, an int"):
        make_shifted_stretched(10, random_state="x")
