"""The GaussianMixture declaration, its fit options, sampling, and the fitted result's
interface (predictions, information criteria, DataTree export) against scikit-learn."""

from __future__ import annotations

import dataclasses
import importlib.util

import numpy as np
import pandas as pd
import pytest
import xarray as xr
from scipy import stats
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

import bayesmix as bm

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")


@pytest.fixture(scope="module")
def faithful():
    return bm.datasets.load_faithful()


@pytest.fixture(scope="module")
def fitted(faithful):
    """One EM fit per covariance type on Old Faithful."""
    return {
        ct: bm.GaussianMixture(3, ct).fit(faithful, n_init=2, random_state=0)
        for ct in COVARIANCE_TYPES
    }


@pytest.fixture(scope="module")
def new_points(faithful):
    """Held-out points around (and outside) the data range."""
    rng = np.random.default_rng(9)
    lo, hi = faithful.min().to_numpy(), faithful.max().to_numpy()
    return rng.uniform(lo - 1.0, hi + 1.0, size=(40, 2))


# ---------------------------------------------------------------------------------------
# declaration


def test_declaration_defaults_and_is_frozen():
    model = bm.GaussianMixture(3)
    assert model.n_components == 3
    assert model.covariance_type == "full"
    assert model.priors is None
    assert model.structure.name == "full"
    with pytest.raises(dataclasses.FrozenInstanceError):
        model.n_components = 4
    assert "n_components=3" in repr(model) and "'full'" in repr(model)


def test_numpy_integer_components_are_accepted():
    model = bm.GaussianMixture(np.int64(2))
    assert model.n_components == 2 and type(model.n_components) is int


def test_priors_mapping_becomes_priors():
    model = bm.GaussianMixture(2, priors={"weight_concentration": 3.0, "mean_scale": 2.0})
    assert model.priors == bm.Priors(weight_concentration=3.0, mean_scale=2.0)


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (0, ValueError, "n_components must be >= 1; got 0"),
        (-2, ValueError, "n_components must be >= 1"),
        (2.0, TypeError, "n_components must be an integer"),
        (2.5, TypeError, "n_components must be an integer"),
        (True, TypeError, "n_components must be an integer"),
        ("2", TypeError, "n_components must be an integer"),
        (None, TypeError, "n_components must be an integer"),
    ],
)
def test_bad_n_components(value, error, match):
    with pytest.raises(error, match=match):
        bm.GaussianMixture(value)


@pytest.mark.parametrize(
    ("value", "error", "match"),
    [
        (
            "Full",
            ValueError,
            r"covariance_type must be one of \['full', 'tied', 'diag', 'spherical', 'EII', ",
        ),
        ("VVX", ValueError, r"covariance_type must be one of .*'VVV'\]; got 'VVX'"),
        (3, TypeError, "covariance_type must be a string"),
        (None, TypeError, "covariance_type must be a string"),
    ],
)
def test_bad_covariance_type(value, error, match):
    with pytest.raises(error, match=match):
        bm.GaussianMixture(2, value)


def test_bad_priors_argument():
    with pytest.raises(TypeError, match="priors must be None, a bayesmix.Priors or a mapping"):
        bm.GaussianMixture(2, priors=3.0)
    with pytest.raises(TypeError, match="priors: .*unexpected keyword argument 'mean'"):
        bm.GaussianMixture(2, priors={"mean": 0.0})
    with pytest.raises(ValueError, match="priors.mean_scale must be finite and > 0"):
        bm.GaussianMixture(2, priors={"mean_scale": -1.0})


# ---------------------------------------------------------------------------------------
# fit options


@pytest.fixture(scope="module")
def small():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(30, 2))
    X[:15] += 4.0
    return X


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        (
            {"method": "mcmc"},
            ValueError,
            r"method must be one of \['em', 'map', 'gibbs', 'nuts', 'advi', 'fullrank_advi', "
            r"'vb'\]; got 'mcmc'",
        ),
        ({"method": None}, ValueError, "method must be one of"),
        ({"n_iter": 5}, TypeError, r"unknown option\(s\) \['n_iter'\] for method='em'"),
        ({"draws": 100, "tune": 5}, TypeError, r"unknown option\(s\) \['draws', 'tune'\]"),
        ({"init": "kmeans+"}, ValueError, "init must be 'auto', one of .*got 'kmeans\\+'"),
        ({"init": 3}, TypeError, "init must be a method name or a mapping"),
        ({"init": {"weights": [0.5, 0.5]}}, ValueError, "init mapping needs a 'means' entry"),
        (
            {"init": {"means": np.zeros((2, 2)), "cov": 1}},
            ValueError,
            "got keys \\['cov', 'means'\\]",
        ),
        (
            {"init": {"means": np.zeros((3, 2))}},
            ValueError,
            r"init\['means'\] must have shape \(2, 2\); got \(3, 2\)",
        ),
        ({"init": {"means": np.zeros(4)}}, ValueError, r"init\['means'\] must have shape"),
        ({"init": {"means": [[np.nan, 0], [0, 0]]}}, ValueError, r"init\['means'\] contains NaN"),
        ({"init": {"means": [["a", 0], [0, 0]]}}, TypeError, r"init\['means'\] must be numeric"),
        (
            {"init": {"means": np.zeros((2, 2)), "weights": [0.3, 0.3]}},
            ValueError,
            r"init\['weights'\] must be non-negative and sum to 1",
        ),
        (
            {"init": {"means": np.zeros((2, 2)), "weights": [1.5, -0.5]}},
            ValueError,
            r"init\['weights'\] must be non-negative",
        ),
        (
            {"init": {"means": np.zeros((2, 2)), "weights": [0.2, 0.3, 0.5]}},
            ValueError,
            r"init\['weights'\] must have shape \(2,\); got \(3,\)",
        ),
        (
            {"init": {"means": np.zeros((2, 2)), "covariances": np.ones((3, 2, 2))}},
            ValueError,
            r"init\['covariances'\] must have shape \(2, 2, 2\); got \(3, 2, 2\)",
        ),
        (
            {"init": {"means": np.zeros((2, 2)), "covariances": np.zeros((2, 2, 2))}},
            ValueError,
            r"init\['covariances'\] must be symmetric positive definite",
        ),
        (
            {"init": {"means": np.zeros((2, 2)), "covariances": [[[1, 0.5], [0, 1]]] * 2}},
            ValueError,
            r"init\['covariances'\] must be symmetric positive definite",
        ),
        ({"n_init": 0}, ValueError, "n_init must be >= 1; got 0"),
        ({"n_init": 1.5}, TypeError, "n_init must be an integer"),
        ({"max_iter": 0}, ValueError, "max_iter must be >= 1"),
        ({"tol": -1e-3}, ValueError, "tol must be finite and >= 0"),
        ({"tol": np.nan}, ValueError, "tol must be finite"),
        ({"tol": "small"}, TypeError, "tol must be a real number"),
        ({"reg_covar": -1.0}, ValueError, "reg_covar must be finite and >= 0"),
        ({"random_state": -1}, ValueError, "random_state must be >= 0"),
        ({"random_state": "seed"}, TypeError, "random_state must be None, an int"),
        ({"random_state": True}, TypeError, "random_state must be None, an int"),
    ],
)
def test_bad_fit_options(small, kwargs, error, match):
    with pytest.raises(error, match=match):
        bm.GaussianMixture(2).fit(small, **kwargs)


@pytest.mark.parametrize(
    ("covariance_type", "covariances", "match"),
    [
        ("diag", -np.ones((2, 2)), r"init\['covariances'\] must be positive"),
        ("spherical", [1.0, 0.0], r"init\['covariances'\] must be positive"),
        ("spherical", np.ones((2, 2)), r"init\['covariances'\] must have shape \(2,\)"),
        ("tied", np.ones(2), r"init\['covariances'\] must have shape \(2, 2\)"),
    ],
)
def test_bad_init_covariances_per_structure(small, covariance_type, covariances, match):
    init = {"means": np.zeros((2, 2)), "covariances": covariances}
    with pytest.raises(ValueError, match=match):
        bm.GaussianMixture(2, covariance_type).fit(small, init=init)


@pytest.mark.parametrize(
    ("sample_weight", "error", "match"),
    [
        (-np.ones(30), ValueError, "sample_weight contains negative values"),
        (np.zeros(30), ValueError, "sample_weight sums to zero"),
        (np.ones(29), ValueError, r"sample_weight must have shape \(30,\).*got shape \(29,\)"),
        (np.ones((30, 1)), ValueError, r"sample_weight must have shape \(30,\)"),
        (np.r_[np.inf, np.ones(29)], ValueError, "sample_weight contains NaN or infinite"),
        (np.array(["a"] * 30), TypeError, "sample_weight must be numeric"),
        (np.r_[1.0, np.zeros(29)], ValueError, "1 rows with positive weight but n_components=2"),
    ],
)
def test_bad_sample_weight(small, sample_weight, error, match):
    with pytest.raises(error, match=match):
        bm.GaussianMixture(2).fit(small, sample_weight=sample_weight)


def test_fewer_rows_than_components():
    with pytest.raises(ValueError, match="X has 3 rows but at least 4 are needed"):
        bm.GaussianMixture(4).fit(np.arange(6.0).reshape(3, 2))


@pytest.mark.parametrize(
    ("X", "error", "match"),
    [
        (np.array([[1.0, np.nan], [2.0, 1.0], [0.0, 3.0]]), ValueError, "NaN or infinite"),
        (np.array([[1.0, 2.0], [np.inf, 1.0], [0.0, 3.0]]), ValueError, "NaN or infinite"),
        (np.empty((0, 2)), ValueError, "X has 0 rows"),
        (np.ones(5), ValueError, "X must be 2-D .*got 1-D"),
        (np.ones((5, 2, 2)), ValueError, "X must be 2-D .*got 3-D"),
        (
            pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": list("xyz")}),
            TypeError,
            r"non-numeric columns \['b'\]",
        ),
        (
            pd.DataFrame({"a": [1.0, 2.0, 3.0], "c": pd.Categorical([1, 2, 3])}),
            TypeError,
            r"non-numeric columns \['c'\]",
        ),
    ],
)
def test_bad_X_at_fit(X, error, match):
    with pytest.raises(error, match=match):
        bm.GaussianMixture(1).fit(X)


def test_feature_count_mismatch_at_predict_time(fitted):
    res = fitted["full"]
    for method in (res.predict, res.predict_proba, res.score_samples, res.score, res.bic):
        with pytest.raises(ValueError, match="X has 3 features but the model was fitted on 2"):
            method(np.ones((4, 3)))
    with pytest.raises(ValueError, match="X must be 2-D"):
        res.predict(np.ones(2))
    with pytest.raises(ValueError, match="NaN or infinite"):
        res.predict(np.array([[np.nan, 1.0]]))


# ---------------------------------------------------------------------------------------
# parameter counts and information criteria against scikit-learn


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("n_components", [1, 2, 5])
@pytest.mark.parametrize("n_features", [1, 2, 4])
def test_n_parameters_match_sklearn(covariance_type, n_components, n_features):
    sk = SklearnGaussianMixture(n_components, covariance_type=covariance_type)
    sk.means_ = np.zeros((n_components, n_features))
    model = bm.GaussianMixture(n_components, covariance_type)
    assert model.n_parameters(n_features) == sk._n_parameters()


def test_n_parameters_closed_forms():
    k, d = 3, 4
    mixing_and_means = (k - 1) + k * d
    assert bm.GaussianMixture(k, "full").n_parameters(d) == mixing_and_means + k * d * (d + 1) // 2
    assert bm.GaussianMixture(k, "tied").n_parameters(d) == mixing_and_means + d * (d + 1) // 2
    assert bm.GaussianMixture(k, "diag").n_parameters(d) == mixing_and_means + k * d
    assert bm.GaussianMixture(k, "spherical").n_parameters(d) == mixing_and_means + k
    with pytest.raises(ValueError, match="n_features must be >= 1"):
        bm.GaussianMixture(k).n_parameters(0)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_information_criteria_match_sklearn(ref, fitted, faithful, new_points, covariance_type):
    res = fitted[covariance_type]
    sk = ref.sklearn_at(covariance_type, res.weights, res.means, res.params.covariances)
    X = faithful.to_numpy()
    assert res.n_parameters == sk._n_parameters()
    np.testing.assert_allclose(res.bic(), sk.bic(X), rtol=1e-12)
    np.testing.assert_allclose(res.bic(faithful), sk.bic(X), rtol=1e-12)
    np.testing.assert_allclose(res.aic(), sk.aic(X), rtol=1e-12)
    np.testing.assert_allclose(res.aic(X), sk.aic(X), rtol=1e-12)
    np.testing.assert_allclose(res.bic(new_points), sk.bic(new_points), rtol=1e-12)
    np.testing.assert_allclose(res.aic(new_points), sk.aic(new_points), rtol=1e-12)
    # ICL = BIC - 2 sum_n log max_k z_nk, with z from scikit-learn.
    for data in (X, new_points):
        entropy_term = 2.0 * np.log(sk.predict_proba(data).max(axis=1)).sum()
        np.testing.assert_allclose(res.icl(data), sk.bic(data) - entropy_term, rtol=1e-10)
    entropy_term = 2.0 * np.log(sk.predict_proba(X).max(axis=1)).sum()
    np.testing.assert_allclose(res.icl(), sk.bic(X) - entropy_term, rtol=1e-10)
    assert res.icl() >= res.bic()


def test_bic_prefers_the_true_number_of_components(ref):
    X, _ = ref.simulate(
        [150, 150, 150], [[0.0, 0.0], [6.0, 0.0], [0.0, 6.0]], [np.eye(2)] * 3, seed=3
    )
    bics = [bm.GaussianMixture(k).fit(X, n_init=2, random_state=0).bic() for k in (1, 2, 3, 4, 5)]
    assert int(np.argmin(bics)) + 1 == 3


# ---------------------------------------------------------------------------------------
# predictions against scikit-learn on the same parameters


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_predictions_match_sklearn(ref, fitted, faithful, new_points, covariance_type):
    res = fitted[covariance_type]
    sk = ref.sklearn_at(covariance_type, res.weights, res.means, res.params.covariances)
    # Each side factorises the covariances itself: Mahalanobis terms agree to about
    # eps * cond(covariance) relative (observed up to 87 eps at cond 764); 16 is margin.
    rtol = max(1e-12, 16 * np.finfo(float).eps * np.linalg.cond(res.covariances).max())
    for X in (faithful.to_numpy(), new_points):
        np.testing.assert_allclose(res.predict_proba(X), sk.predict_proba(X), rtol=1e-9, atol=1e-14)
        np.testing.assert_array_equal(res.predict(X), sk.predict(X))
        np.testing.assert_allclose(res.score_samples(X), sk.score_samples(X), rtol=rtol)
        np.testing.assert_allclose(res.score(X), sk.score(X), rtol=rtol)
    weights = np.random.default_rng(0).uniform(0.0, 3.0, new_points.shape[0])
    np.testing.assert_allclose(
        res.score(new_points, sample_weight=weights),
        np.average(sk.score_samples(new_points), weights=weights),
        rtol=rtol,
    )


def test_score_samples_matches_scipy_mixture_density(fitted, new_points):
    res = fitted["full"]
    density = sum(
        w * stats.multivariate_normal.pdf(new_points, m, c)
        for w, m, c in zip(res.weights, res.means, res.covariances, strict=True)
    )
    np.testing.assert_allclose(res.score_samples(new_points), np.log(density), rtol=1e-10)


def test_predictions_accept_dataframes_and_keep_row_labels(fitted, faithful):
    res = fitted["diag"]
    frame = faithful.iloc[::10].set_index(faithful.index[::10] + 1000)
    np.testing.assert_array_equal(res.predict(frame), res.predict(frame.to_numpy()))
    membership = res.membership_draws(frame)
    assert membership.dims == ("chain", "draw", "obs", "component")
    np.testing.assert_array_equal(membership["obs"].values, frame.index.to_numpy())
    np.testing.assert_allclose(membership.values[0, 0], res.predict_proba(frame))


def test_training_log_likelihood_matches_sklearn_score(ref, fitted, faithful):
    for covariance_type, res in fitted.items():
        sk = ref.sklearn_at(covariance_type, res.weights, res.means, res.params.covariances)
        np.testing.assert_allclose(
            res.log_likelihood, sk.score(faithful.to_numpy()) * len(faithful), rtol=1e-12
        )
        assert res.n_obs == len(faithful)


# ---------------------------------------------------------------------------------------
# sampling


def _sample_params():
    return {
        "weights": np.array([0.6, 0.4]),
        "means": np.array([[0.0, 10.0], [10.0, 0.0]]),
        "covariances": np.array([[[1.0, 0.8], [0.8, 2.0]], [[0.5, 0.0], [0.0, 3.0]]]),
    }


def test_sample_matches_the_declared_distribution():
    params = _sample_params()
    X, z = bm.GaussianMixture(2).sample(20000, params, random_state=0)
    assert X.shape == (20000, 2) and z.shape == (20000,)
    # Component counts are Binomial(n, 0.4): within 4 standard deviations.
    assert abs((z == 1).mean() - 0.4) < 4 * np.sqrt(0.24 / 20000)
    for k in range(2):
        np.testing.assert_allclose(X[z == k].mean(0), params["means"][k], atol=0.06)
        np.testing.assert_allclose(np.cov(X[z == k].T), params["covariances"][k], atol=0.1)
        # Each coordinate is normal: a Kolmogorov-Smirnov test does not reject.
        for d in range(2):
            scaled = (X[z == k, d] - params["means"][k, d]) / np.sqrt(
                params["covariances"][k, d, d]
            )
            assert stats.kstest(scaled, "norm").pvalue > 1e-3


@pytest.mark.parametrize(
    ("covariance_type", "natural"),
    [
        ("tied", np.array([[1.0, 0.3], [0.3, 2.0]])),
        ("diag", np.array([[1.0, 2.0], [0.5, 0.25]])),
        ("spherical", np.array([1.0, 4.0])),
    ],
)
def test_sample_accepts_natural_or_full_covariances(ref, covariance_type, natural):
    model = bm.GaussianMixture(2, covariance_type)
    params = {"weights": [0.5, 0.5], "means": [[0.0, 0.0], [5.0, 5.0]], "covariances": natural}
    full = dict(params, covariances=ref.expand(covariance_type, natural, 2, 2))
    X1, z1 = model.sample(50, params, random_state=4)
    X2, z2 = model.sample(50, full, random_state=4)
    np.testing.assert_array_equal(X1, X2)
    np.testing.assert_array_equal(z1, z2)


def test_sample_is_reproducible_and_result_samples(fitted):
    model = bm.GaussianMixture(2)
    a = model.sample(30, _sample_params(), random_state=1)
    b = model.sample(30, _sample_params(), random_state=np.random.default_rng(1))
    np.testing.assert_array_equal(a[0], b[0])
    res = fitted["full"]
    X, z = model.sample(500, res, random_state=0)
    assert X.shape == (500, 2) and set(np.unique(z)) <= {0, 1, 2}
    np.testing.assert_array_equal(X, res.sample(500, random_state=0)[0])


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"weights": [0.5, 0.5], "means": np.zeros((2, 2))}, TypeError, "mapping with 'weights'"),
        ([0.5, 0.5], TypeError, "params must be a fitted result or a mapping"),
        (
            dict(_sample_params(), weights=[0.5, 0.6]),
            ValueError,
            r"params\['weights'\] must have shape \(2,\)",
        ),
        (dict(_sample_params(), weights=[1.5, -0.5]), ValueError, r"be >= 0 and sum to 1"),
        (
            dict(_sample_params(), means=np.zeros((3, 2))),
            ValueError,
            r"params\['means'\] must have shape \(2, n_features\)",
        ),
        (
            dict(_sample_params(), covariances=np.ones((2, 2, 2))),
            ValueError,
            "must be positive definite",
        ),
    ],
)
def test_sample_rejects_bad_params(params, error, match):
    with pytest.raises(error, match=match):
        bm.GaussianMixture(2).sample(10, params)


def test_sample_rejects_bad_n_samples():
    with pytest.raises(ValueError, match="n_samples must be >= 1"):
        bm.GaussianMixture(2).sample(0, _sample_params())
    with pytest.raises(TypeError, match="n_samples must be an integer"):
        bm.GaussianMixture(2).sample(10.0, _sample_params())


# ---------------------------------------------------------------------------------------
# results as a DataTree


def test_datatree_layout(fitted, faithful):
    res = fitted["full"]
    tree = res.to_datatree(faithful)
    assert set(tree.children) == {"posterior", "observed_data", "log_likelihood", "fit_trace"}
    post = tree["posterior"].to_dataset()
    assert post["means"].dims == ("chain", "draw", "component", "feature")
    assert post["covariances"].dims == ("chain", "draw", "component", "feature", "feature_")
    assert post["weights"].dims == ("chain", "draw", "component")
    assert list(post["feature"].values) == ["eruptions", "waiting"]
    assert list(post["feature_"].values) == ["eruptions", "waiting"]
    np.testing.assert_array_equal(post["component"].values, [0, 1, 2])
    np.testing.assert_array_equal(post["means"].values[0, 0], res.means)
    np.testing.assert_array_equal(post["covariances"].values[0, 0], res.covariances)
    np.testing.assert_allclose(
        post["stds"].values[0, 0], np.sqrt(np.diagonal(res.covariances, axis1=1, axis2=2))
    )
    np.testing.assert_allclose(
        post["means"].sel(feature="waiting").values[0, 0], faithful_means(res)["waiting"]
    )
    attrs = tree["posterior"].attrs
    assert attrs["n_components"] == 3 and attrs["covariance_type"] == "full"
    assert attrs["method"] == "em" and attrs["converged"] == 1
    np.testing.assert_array_equal(tree["observed_data"]["X"].values, faithful.to_numpy())
    np.testing.assert_allclose(
        tree["log_likelihood"]["X"].values[0, 0], res.score_samples(faithful), rtol=1e-12
    )
    np.testing.assert_array_equal(
        tree["fit_trace"]["log_likelihood"].values, res.log_likelihood_trace
    )


def faithful_means(res):
    return dict(zip(res.feature_names, res.means.T, strict=True))


def test_datatree_of_a_map_fit_records_the_log_posterior(faithful):
    res = bm.GaussianMixture(2, "spherical").fit(faithful, method="map", random_state=0)
    tree = res.to_datatree()
    assert set(tree.children) == {"posterior", "fit_trace"}
    np.testing.assert_array_equal(
        tree["fit_trace"]["log_posterior"].values, res.log_posterior_trace
    )
    assert tree["posterior"].attrs["method"] == "map"


def test_feature_names_from_numpy_and_dataarray(faithful):
    res = bm.GaussianMixture(1).fit(faithful.to_numpy())
    assert res.feature_names == ("x0", "x1")
    array = xr.DataArray(
        faithful.to_numpy(), dims=("row", "var"), coords={"var": ["duration", "gap"]}
    )
    res = bm.GaussianMixture(1).fit(array)
    assert list(res.to_datatree()["posterior"]["feature"].values) == ["duration", "gap"]


def _roundtrip(tree, path, engine):
    if engine == "zarr":
        tree.to_zarr(path, mode="w", consolidated=False)
        return xr.open_datatree(path, engine="zarr", consolidated=False)
    tree.to_netcdf(path)
    return xr.open_datatree(path)


@pytest.mark.parametrize("engine", ["netcdf", "zarr"])
def test_datatree_survives_a_file_roundtrip(fitted, faithful, tmp_path, engine):
    if engine == "zarr" and importlib.util.find_spec("zarr") is None:
        pytest.skip("zarr is not installed")
    if engine == "netcdf" and not any(
        importlib.util.find_spec(name) for name in ("h5py", "netCDF4")
    ):
        pytest.skip("neither h5py nor netCDF4 is installed: no writer for netCDF4 groups")
    tree = fitted["tied"].to_datatree(faithful)
    loaded = _roundtrip(tree, tmp_path / f"fit.{engine}", engine)
    try:
        for group in ("posterior", "observed_data", "log_likelihood", "fit_trace"):
            xr.testing.assert_allclose(loaded[group].to_dataset(), tree[group].to_dataset())
        assert list(loaded["posterior"]["feature"].values) == ["eruptions", "waiting"]
        assert loaded["posterior"].attrs["covariance_type"] == "tied"
        assert loaded["posterior"].attrs["n_iter"] == fitted["tied"].n_iter
    finally:
        loaded.close()


def test_datatree_works_with_arviz(fitted, faithful):
    az = pytest.importorskip("arviz")
    res = fitted["full"]
    tree = res.to_datatree(faithful)
    # One draw: the spread and diagnostics are undefined, the mean is the estimate.
    table = az.summary(tree, kind="stats", round_to="none")
    np.testing.assert_allclose(table.loc["weights[0]", "mean"], res.weights[0])
    np.testing.assert_allclose(table.loc["means[1, waiting]", "mean"], res.means[1, 1])
    np.testing.assert_allclose(
        table.loc["covariances[2, eruptions, waiting]", "mean"], res.covariances[2, 0, 1]
    )


def test_em_result_summary_and_repr(fitted):
    res = fitted["full"]
    table = res.summary()
    assert table.loc["weights[1]", "estimate"] == res.weights[1]
    np.testing.assert_allclose(
        table.loc["stds[0, waiting]", "estimate"], np.sqrt(res.covariances[0, 1, 1])
    )
    corr = res.covariances[2, 0, 1] / np.sqrt(res.covariances[2, 0, 0] * res.covariances[2, 1, 1])
    np.testing.assert_allclose(table.loc["correlations[2, eruptions, waiting]", "estimate"], corr)
    text = repr(res)
    assert "EM (maximum likelihood)" in text and f"{res.bic():.2f}" in text


def test_sample_names_a_wrongly_shaped_covariance():
    params = dict(_sample_params(), covariances=np.ones(3))
    with pytest.raises(ValueError, match="shape"):
        bm.GaussianMixture(2).sample(10, params)
