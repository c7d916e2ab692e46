"""The scikit-learn estimator :class:`bayesmix.sklearn.GaussianMixture`."""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn
import sklearn.exceptions
import sklearn.mixture
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.base import clone
from sklearn.datasets import load_iris, make_blobs
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import bayesmix as bm
from bayesmix.sklearn import ConvergenceWarning, GaussianMixture

COVARIANCE_TYPES = ["full", "tied", "diag", "spherical"]


def expected_failed_checks(estimator: GaussianMixture) -> dict[str, str]:
    """Checks that cannot pass for a given configuration, with the reason.

    The default estimator (and every one-component configuration) passes every check.
    With two or more components the fit starts from a random initialisation (k-means++
    seeding), and check_sample_weight_equivalence_on_dense_data compares a weighted fit
    on *shuffled* rows with a fit on repeated rows: the same seed then picks different
    starting points, so EM may reach another local optimum. The weighting itself is
    exact (see test_integer_weights_equal_repetition, from a deterministic start);
    scikit-learn marks the same check as an expected failure for KMeans for this reason.
    """
    if estimator.n_components > 1:
        return {
            "check_sample_weight_equivalence_on_dense_data": (
                "random initialisation is not invariant to shuffling the rows"
            )
        }
    return {}


@parametrize_with_checks(
    [
        GaussianMixture(),
        *(GaussianMixture(covariance_type=t) for t in COVARIANCE_TYPES[1:]),
        GaussianMixture(map=True),
        GaussianMixture(n_components=2, covariance_type="diag", max_iter=20, random_state=0),
    ],
    expected_failed_checks=expected_failed_checks,
)
def test_sklearn_compatible_estimator(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def test_default_estimator_expects_no_failures():
    assert expected_failed_checks(GaussianMixture()) == {}


# -- data ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def blobs() -> np.ndarray:
    X, _ = make_blobs(
        n_samples=150, n_features=3, centers=3, cluster_std=[1.0, 2.0, 0.5], random_state=1
    )
    return X


def _same_start_pair(X, covariance_type, n_iter=5):
    """scikit-learn's and bayesmix's estimators run ``n_iter`` EM steps from one start.

    The start is a rough (one-iteration) scikit-learn fit, so the iterations that follow
    still move the parameters.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
        start = sklearn.mixture.GaussianMixture(
            3, covariance_type=covariance_type, max_iter=1, random_state=0
        ).fit(X)
        params = dict(
            covariance_type=covariance_type,
            weights_init=start.weights_,
            means_init=start.means_,
            precisions_init=start.precisions_,
            tol=0.0,
            max_iter=n_iter,
        )
        reference = sklearn.mixture.GaussianMixture(3, **params).fit(X)
        ours = GaussianMixture(3, **params).fit(X)
    return reference, ours


def _assert_close(actual, desired, rtol=1e-10):
    """Element-wise closeness relative to the array's scale (off-diagonals may be ~0)."""
    assert actual.shape == desired.shape
    assert_allclose(actual, desired, rtol=rtol, atol=rtol * np.abs(desired).max())


# -- agreement with scikit-learn ---------------------------------------------------------


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_fitted_attributes_match_sklearn(blobs, covariance_type):
    reference, ours = _same_start_pair(blobs, covariance_type)
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        _assert_close(getattr(ours, name), getattr(reference, name))
    assert ours.n_iter_ == reference.n_iter_ == 5
    assert ours.converged_ is reference.converged_ is False
    assert ours.n_features_in_ == reference.n_features_in_ == 3
    # scikit-learn's bookkeeping: the value before each iteration's M-step
    assert_allclose(ours.lower_bound_, reference.lower_bound_, rtol=1e-12)
    assert_allclose(ours.lower_bounds_, reference.lower_bounds_, rtol=1e-12)
    assert ours.lower_bounds_[-1] == ours.lower_bound_
    assert_allclose(ours.result_.log_likelihood_trace[-1] / len(blobs), reference.score(blobs))
    assert_allclose(ours.score_samples(blobs), reference.score_samples(blobs), rtol=1e-11)
    assert_allclose(ours.predict_proba(blobs), reference.predict_proba(blobs), atol=1e-10)
    assert_array_equal(ours.predict(blobs), reference.predict(blobs))


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_bic_aic_match_sklearn(blobs, covariance_type):
    reference, ours = _same_start_pair(blobs, covariance_type)
    assert ours.result_.n_parameters == reference._n_parameters()
    new = blobs[::2] + 0.5  # other data than the training set
    for X in (blobs, new):
        assert_allclose(ours.bic(X), reference.bic(X), rtol=1e-12)
        assert_allclose(ours.aic(X), reference.aic(X), rtol=1e-12)
        assert_allclose(ours.score(X), reference.score(X), rtol=1e-12)


def test_converged_fit_matches_sklearn_likelihood():
    """Run to convergence, both reach the same optimum of Old Faithful."""
    X = bm.datasets.load_faithful().to_numpy()
    reference = sklearn.mixture.GaussianMixture(2, n_init=3, random_state=0, tol=1e-8).fit(X)
    ours = GaussianMixture(2, n_init=3, random_state=0, tol=1e-8).fit(X)
    assert ours.converged_
    order = np.argsort(ours.means_[:, 0]), np.argsort(reference.means_[:, 0])
    assert_allclose(ours.means_[order[0]], reference.means_[order[1]], rtol=1e-5)
    assert_allclose(ours.score(X), reference.score(X), rtol=1e-8)


# -- sample weights --------------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_integer_weights_equal_repetition(blobs, covariance_type):
    sample_weight = np.random.default_rng(0).integers(0, 4, size=len(blobs))
    params = dict(covariance_type=covariance_type, means_init=blobs[:3], tol=0.0, max_iter=8)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        weighted = GaussianMixture(3, **params).fit(blobs, sample_weight=sample_weight)
        repeated = GaussianMixture(3, **params).fit(np.repeat(blobs, sample_weight, axis=0))
    for name in ("weights_", "means_", "covariances_", "precisions_cholesky_"):
        _assert_close(getattr(weighted, name), getattr(repeated, name))
    # weighted and repeated rows sum in other orders and block sizes: rounding of a sum
    # of ~1e3 terms, not the last bits (as test_em's weighted-vs-repeated check)
    assert_allclose(weighted.lower_bound_, repeated.lower_bound_, rtol=1e-10)
    assert_allclose(weighted.lower_bounds_, repeated.lower_bounds_, rtol=1e-10)


def test_zero_weights_equal_dropping_rows(blobs):
    extra = blobs[:40] + 10.0
    X = np.vstack([blobs, extra])
    sample_weight = np.r_[np.ones(len(blobs)), np.zeros(len(extra))]
    weighted = GaussianMixture(3, random_state=3).fit(X, sample_weight=sample_weight)
    dropped = GaussianMixture(3, random_state=3).fit(blobs)
    _assert_close(weighted.means_, dropped.means_)
    _assert_close(weighted.covariances_, dropped.covariances_)


def test_unit_weights_equal_no_weights(blobs):
    weighted = GaussianMixture(3, random_state=0).fit(blobs, sample_weight=np.ones(len(blobs)))
    plain = GaussianMixture(3, random_state=0).fit(blobs)
    assert_array_equal(weighted.means_, plain.means_)
    assert weighted.lower_bound_ == plain.lower_bound_


def test_sample_weight_moves_the_fit(blobs):
    labels = GaussianMixture(3, random_state=0).fit_predict(blobs)
    heavy = np.where(labels == labels[0], 10.0, 1.0)
    weighted = GaussianMixture(3, random_state=0).fit(blobs, sample_weight=heavy)
    assert weighted.weights_[weighted.predict(blobs[:1])[0]] > 0.5
    # the log-likelihood per unit of weight (lower_bound_ is its value one M-step earlier)
    expected = np.average(weighted.score_samples(blobs), weights=heavy)
    trace = weighted.result_.log_likelihood_trace / heavy.sum()
    assert_allclose(trace[-1], expected, rtol=1e-12)
    assert weighted.lower_bound_ == trace[-2]


@pytest.mark.parametrize(
    ("sample_weight", "message"),
    [
        (np.zeros(150), "zero"),
        (-np.ones(150), "(?i)negative"),
        (np.ones(149), "shape"),
    ],
)
def test_bad_sample_weight(blobs, sample_weight, message):
    with pytest.raises(ValueError, match=message):
        GaussianMixture(2).fit(blobs, sample_weight=sample_weight)


# -- scikit-learn machinery --------------------------------------------------------------


@pytest.mark.parametrize("dataset", ["iris", "faithful"])
def test_pipeline_with_pca(dataset):
    X = load_iris().data if dataset == "iris" else bm.datasets.load_faithful()
    pipe = Pipeline(
        [
            ("scale", StandardScaler()),
            ("pca", PCA(2)),
            ("gmm", GaussianMixture(3, random_state=0)),
        ]
    ).fit(X)
    gmm = pipe.named_steps["gmm"]
    assert gmm.means_.shape == (3, 2)
    assert gmm.covariances_.shape == (3, 2, 2)
    labels = pipe.predict(X)
    assert labels.shape == (len(X),)
    assert set(np.unique(labels)) <= {0, 1, 2}
    assert_allclose(pipe.predict_proba(X).sum(axis=1), 1.0)
    assert np.isfinite(pipe.score(X))
    assert_allclose(pipe.score_samples(X).mean(), pipe.score(X))


def test_pipeline_routes_sample_weight(blobs):
    weights = np.random.default_rng(1).integers(1, 4, size=len(blobs)).astype(float)
    pipe = Pipeline([("scale", StandardScaler()), ("gmm", GaussianMixture(3, random_state=0))])
    pipe.fit(blobs, gmm__sample_weight=weights)
    direct = GaussianMixture(3, random_state=0).fit(
        StandardScaler().fit_transform(blobs), sample_weight=weights
    )
    assert_array_equal(pipe[-1].means_, direct.means_)
    # and through metadata routing
    with sklearn.config_context(enable_metadata_routing=True):
        gmm = GaussianMixture(3, random_state=0).set_fit_request(sample_weight=True)
        scaler = StandardScaler().set_fit_request(sample_weight=False)
        routed = Pipeline([("scale", scaler), ("gmm", gmm)])
        routed.fit(blobs, sample_weight=weights)
    assert_array_equal(routed[-1].means_, direct.means_)


def test_grid_search_over_n_components():
    X, _ = make_blobs(n_samples=240, centers=3, cluster_std=0.6, random_state=0)
    search = GridSearchCV(GaussianMixture(random_state=0), {"n_components": [1, 2, 3]}, cv=3).fit(X)
    assert search.best_params_ == {"n_components": 3}
    assert search.best_estimator_.weights_.shape == (3,)
    means = search.cv_results_["mean_test_score"]
    assert means[2] > means[1] > means[0]


def test_dataframe_feature_names():
    X = bm.datasets.load_faithful()
    gmm = GaussianMixture(2, random_state=0).fit(X)
    assert_array_equal(gmm.feature_names_in_, ["eruptions", "waiting"])
    assert gmm.result_.feature_names == ("eruptions", "waiting")
    assert "means[0, waiting]" in gmm.result_.summary().index
    with pytest.raises(ValueError, match="feature names"):
        gmm.predict(X[["waiting", "eruptions"]])
    assert not hasattr(GaussianMixture(2).fit(X.to_numpy()), "feature_names_in_")


def test_clone_and_pickle_roundtrip(blobs):
    gmm = GaussianMixture(3, covariance_type="tied", random_state=0).fit(blobs)
    assert clone(gmm).get_params() == gmm.get_params()
    restored = pickle.loads(pickle.dumps(gmm))
    assert_array_equal(restored.predict_proba(blobs), gmm.predict_proba(blobs))


def test_unfitted_raises():
    with pytest.raises(NotFittedError):
        GaussianMixture().predict(np.zeros((3, 2)))
    with pytest.raises(NotFittedError):
        GaussianMixture().sample()


# -- behaviour -------------------------------------------------------------------------


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_attribute_shapes(blobs, covariance_type):
    gmm = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(blobs)
    natural = {
        "full": (3, 3, 3),
        "tied": (3, 3),
        "diag": (3, 3),
        "spherical": (3,),
    }[covariance_type]
    assert gmm.weights_.shape == (3,)
    assert gmm.means_.shape == (3, 3)
    for name in ("covariances_", "precisions_", "precisions_cholesky_"):
        assert getattr(gmm, name).shape == natural
    assert isinstance(gmm.result_, bm.EMResult)
    assert isinstance(gmm.converged_, bool)
    assert isinstance(gmm.n_iter_, int)
    assert isinstance(gmm.lower_bound_, float)


def test_fit_predict_equals_fit_then_predict(blobs):
    gmm = GaussianMixture(3, random_state=0)
    labels = gmm.fit_predict(blobs)
    assert_array_equal(labels, gmm.predict(blobs))
    assert_array_equal(labels, GaussianMixture(3, random_state=0).fit(blobs).predict(blobs))


def test_sample(blobs):
    gmm = GaussianMixture(3, random_state=0).fit(blobs)
    X, y = gmm.sample(500)
    assert X.shape == (500, 3)
    assert y.shape == (500,)
    assert set(np.unique(y)) <= {0, 1, 2}
    # an int random_state makes sampling reproducible, as in scikit-learn
    assert_array_equal(gmm.sample(5)[0], gmm.sample(5)[0])
    X1, y1 = gmm.sample()
    assert X1.shape == (1, 3)
    # draws of one component come from that component
    assert_array_equal(gmm.predict(X[:50]) == y[:50], np.ones(50, dtype=bool))


def test_map_uses_priors(blobs):
    ml = GaussianMixture(3, random_state=0).fit(blobs)
    mapped = GaussianMixture(3, map=True, random_state=0).fit(blobs)
    assert ml.result_.log_posterior_trace is None
    assert mapped.result_.log_posterior_trace is not None
    assert mapped.result_.settings["method"] == "map"
    priors = bm.Priors(weight_concentration=2.0)
    explicit = GaussianMixture(3, priors=priors, random_state=0).fit(blobs)
    assert explicit.result_.priors is not None
    as_dict = GaussianMixture(3, priors={"weight_concentration": 2.0}, random_state=0)
    assert_allclose(as_dict.fit(blobs).means_, explicit.means_)


def test_map_keeps_a_collapsing_component_away_from_zero_variance():
    # a component on a duplicated point makes the likelihood unbounded
    X = np.r_[np.random.default_rng(0).normal(size=(40, 1)), np.full((5, 1), 3.0)]
    means = np.array([[0.0], [3.0]])
    params = dict(means_init=means, reg_covar=0.0, max_iter=50, covariance_type="spherical")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ml = GaussianMixture(2, **params).fit(X)
        mapped = GaussianMixture(2, map=True, **params).fit(X)
    assert ml.covariances_.min() < 1e-8
    assert mapped.covariances_.min() > 1e-3


def test_init_params_and_alias(blobs):
    fits = {
        init: GaussianMixture(3, init_params=init, random_state=0).fit(blobs)
        for init in ("kmeans++", "k-means++", "kmeans", "random", "random_from_data")
    }
    assert_array_equal(fits["kmeans++"].means_, fits["k-means++"].means_)
    assert fits["kmeans++"].result_.settings["init"] == "kmeans++"
    with pytest.raises(ValueError, match="init must be .auto., one of"):
        GaussianMixture(2, init_params="spectral").fit(blobs)


def test_means_init_alone(blobs):
    fitted = GaussianMixture(3, random_state=0).fit(blobs)
    gmm = GaussianMixture(3, means_init=fitted.means_ + 0.5, n_init=5).fit(blobs)
    assert gmm.result_.settings["init"] == "user"
    assert gmm.converged_
    _assert_close(gmm.means_, fitted.means_, rtol=1e-2)


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        (dict(weights_init=[0.5, 0.6]), ValueError, "should be normalized"),
        (dict(weights_init=[[0.5, 0.5]]), ValueError, "'weights' should have the shape"),
        (dict(precisions_init=np.ones(3)), ValueError, "should have the shape"),
        (
            dict(means_init=np.zeros((2, 3)), precisions_init=np.ones((2, 3))),
            ValueError,
            "shape",
        ),
        (
            dict(means_init=np.zeros((2, 3)), precisions_init=-np.ones((2, 3, 3))),
            ValueError,
            "positive-definite",
        ),
        (
            dict(
                covariance_type="diag",
                means_init=np.zeros((2, 3)),
                precisions_init=np.zeros((2, 3)),
            ),
            ValueError,
            "positive",
        ),
        (dict(means_init=np.zeros((3, 3))), ValueError, "shape"),
        (dict(covariance_type="banana"), ValueError, "covariance_type"),
        (dict(map="yes"), TypeError, "map must be a bool"),
        (dict(max_iter=-1), ValueError, "max_iter"),
        (dict(warm_start="yes"), TypeError, "warm_start must be a bool"),
        (dict(verbose=-1), ValueError, "verbose must be"),
        (dict(verbose=1, verbose_interval=0), ValueError, "verbose_interval"),
        (dict(n_components=200), ValueError, "n_samples >= n_components"),
    ],
)
def test_invalid_parameters_raise_at_fit(blobs, params, error, match):
    gmm = GaussianMixture(**{"n_components": 2, **params})  # never raises in __init__
    with pytest.raises(error, match=match):
        gmm.fit(blobs)


@pytest.mark.filterwarnings("ignore::bayesmix.ConvergenceWarning")
def test_precisions_init_is_inverted(blobs):
    """A start given by precisions equals the same start given as covariances."""
    covariances = np.stack([np.eye(3) * s for s in (1.0, 2.0)])
    means = blobs[:2]
    by_precision = GaussianMixture(
        2, means_init=means, precisions_init=np.linalg.inv(covariances), max_iter=1, reg_covar=0
    ).fit(blobs)
    direct = bm.GaussianMixture(2).fit(  # reg_covar 0: the native one is relative
        blobs, init={"means": means, "covariances": covariances}, max_iter=1, reg_covar=0
    )
    _assert_close(by_precision.covariances_, direct.params.covariances)


def test_convergence_warning_is_sklearns_and_bayesmixs(blobs):
    with pytest.warns(sklearn.exceptions.ConvergenceWarning, match="did not converge"):
        GaussianMixture(3, max_iter=1, tol=0.0).fit(blobs)
    with pytest.warns(bm.ConvergenceWarning):
        GaussianMixture(3, max_iter=1, tol=0.0).fit(blobs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        GaussianMixture(3, random_state=0).fit(blobs)  # converges: no warning


def test_parameters_are_not_modified(blobs):
    weights = np.array([0.2, 0.3, 0.5])
    means = blobs[:3].copy()
    gmm = GaussianMixture(3, weights_init=weights, means_init=means).fit(blobs)
    assert gmm.weights_init is weights
    assert_array_equal(gmm.means_init, blobs[:3])


def test_dataframe_input_equals_array_input():
    frame = bm.datasets.load_faithful()
    a = GaussianMixture(2, random_state=0).fit(frame)
    b = GaussianMixture(2, random_state=0).fit(frame.to_numpy())
    assert_array_equal(a.means_, b.means_)
    assert_array_equal(a.predict(frame), b.predict(frame.to_numpy()))


def test_list_input_equals_array_input():
    X, _ = make_blobs(n_samples=60, centers=2, random_state=0)
    a = GaussianMixture(2, random_state=0).fit(X)
    b = GaussianMixture(2, random_state=0).fit(X.tolist())
    assert_array_equal(a.means_, b.means_)
    assert a.score(pd.DataFrame(X)) == b.score(X.tolist())


# -- scikit-learn's contract: dtypes, max_iter=0, partial starts, warm start, verbose -----


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_float32_data_gives_sklearns_dtypes(blobs, covariance_type):
    X32 = blobs.astype(np.float32)
    reference = sklearn.mixture.GaussianMixture(
        3, covariance_type=covariance_type, random_state=0
    ).fit(X32)
    ours = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(X32)
    for name in ("weights_", "means_", "covariances_", "precisions_", "precisions_cholesky_"):
        assert getattr(ours, name).dtype == getattr(reference, name).dtype == np.float32, name
    for method in ("score_samples", "predict_proba"):
        assert getattr(ours, method)(X32).dtype == getattr(reference, method)(X32).dtype
        assert getattr(ours, method)(blobs).dtype == np.float64  # as scikit-learn's
    # float32 rounding only: the same optimum as the float64 fit
    ours64 = GaussianMixture(3, covariance_type=covariance_type, random_state=0).fit(blobs)
    assert_allclose(ours.means_, ours64.means_, rtol=1e-4, atol=1e-4)
    assert_allclose(ours.score(X32), ours64.score(blobs), rtol=1e-5)


def test_float32_data_runs_the_float32_kernels(blobs):
    from bayesmix.families.gaussian import kernels

    GaussianMixture(2, random_state=0).fit(blobs.astype(np.float32))
    # a one-chunk pass (these few rows) runs the kernel's serial twin
    compiled = [*kernels._estep_full.overloads, *kernels._estep_full_serial.overloads]
    assert any(str(signature[0].dtype) == "float32" for signature in compiled)


def test_native_api_stays_float64(blobs):
    for X in (blobs, blobs.astype(np.float32)):
        result = bm.GaussianMixture(2).fit(X, method="em", random_state=0)
        assert result.params.means.dtype == result.params.covariances.dtype == np.float64


def test_max_iter_zero_initialises_only(blobs):
    means = GaussianMixture(3, random_state=0).fit(blobs).means_ + 0.25
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scikit-learn does not warn for max_iter=0
        gmm = GaussianMixture(3, means_init=means, max_iter=0).fit(blobs)
    assert_allclose(gmm.means_, means)
    assert gmm.n_iter_ == 0 and gmm.converged_ is False
    assert gmm.lower_bound_ == -np.inf and gmm.lower_bounds_ == []
    reference = sklearn.mixture.GaussianMixture(3, means_init=means, max_iter=0).fit(blobs)
    assert reference.lower_bound_ == -np.inf and reference.lower_bounds_ == []


def test_weights_or_precisions_without_means(blobs):
    weights = np.array([0.2, 0.3, 0.5])
    only_weights = GaussianMixture(3, weights_init=weights, max_iter=0, random_state=0)
    assert_allclose(only_weights.fit(blobs).weights_, weights)
    precisions = np.stack([np.eye(3) * p for p in (1.0, 2.0, 4.0)])
    only_precisions = GaussianMixture(3, precisions_init=precisions, max_iter=0, random_state=0)
    assert_allclose(only_precisions.fit(blobs).precisions_, precisions, atol=1e-12)
    # the means come from init_params, as without a start (numbered in the order of the
    # given precisions, while a fit without a start numbers its components canonically)
    plain = GaussianMixture(3, max_iter=0, random_state=0).fit(blobs)
    order = [np.argsort(m[:, 0]) for m in (only_precisions.means_, plain.means_)]
    assert_array_equal(only_precisions.means_[order[0]], plain.means_[order[1]])
    fitted = GaussianMixture(3, weights_init=weights, random_state=0).fit(blobs)
    assert fitted.converged_


@pytest.mark.filterwarnings("ignore::bayesmix.ConvergenceWarning")
def test_warm_start_continues_the_previous_fit(blobs):
    two = GaussianMixture(3, max_iter=2, random_state=0).fit(blobs)
    warm = GaussianMixture(3, max_iter=1, random_state=0, warm_start=True, n_init=4)
    warm.fit(blobs)
    assert warm.n_iter_ == 1
    warm.fit(blobs)  # one more iteration from where the first fit stopped (n_init ignored)
    _assert_close(warm.means_, two.means_)
    _assert_close(warm.covariances_, two.covariances_)
    assert warm.result_.settings["init"] == "user"
    with pytest.raises(ValueError, match="warm_start=True continues"):
        warm.set_params(n_components=2).fit(blobs)


def test_verbose_prints_sklearns_progress_lines(blobs, capsys):
    GaussianMixture(3, random_state=0, verbose=1, verbose_interval=2).fit(blobs)
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "Initialization 0" and out[-1] == "Initialization converged."
    assert "  Iteration 2" in out
    GaussianMixture(3, random_state=0, verbose=2, verbose_interval=1, n_init=2).fit(blobs)
    out = capsys.readouterr().out
    assert "Initialization 1" in out and "ll change" in out and "lower bound" in out
    GaussianMixture(3, random_state=0).fit(blobs)
    assert capsys.readouterr().out == ""


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_collapsed_data_without_regularisation_raises_like_sklearn(covariance_type):
    X = np.vstack((np.ones((5, 5)), np.zeros((5, 5))))
    gmm = GaussianMixture(10, reg_covar=0, covariance_type=covariance_type, random_state=0)
    with pytest.raises(ValueError, match="ill-defined empirical covariance"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gmm.fit(X)
    with pytest.raises(ValueError, match="ill-defined empirical covariance"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            sklearn.mixture.GaussianMixture(
                10, reg_covar=0, covariance_type=covariance_type, random_state=0
            ).fit(X)
    # the native API keeps fitting, with warnings
    with pytest.warns(bm.DegenerateComponentWarning):
        bm.GaussianMixture(10, covariance_type).fit(X, reg_covar=0, random_state=0)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_n_iter_and_lower_bounds_match_sklearn_at_convergence(blobs, covariance_type):
    start = sklearn.mixture.GaussianMixture(
        3, covariance_type=covariance_type, max_iter=1, random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", sklearn.exceptions.ConvergenceWarning)
        start.fit(blobs)
    params = dict(
        covariance_type=covariance_type,
        weights_init=start.weights_,
        means_init=start.means_,
        precisions_init=start.precisions_,
        tol=1e-6,
    )
    reference = sklearn.mixture.GaussianMixture(3, **params).fit(blobs)
    ours = GaussianMixture(3, **params).fit(blobs)
    assert ours.converged_ and reference.converged_
    assert ours.n_iter_ == reference.n_iter_
    assert_allclose(ours.lower_bounds_, reference.lower_bounds_, rtol=1e-10)
    assert_allclose(ours.lower_bound_, reference.lower_bound_, rtol=1e-10)


def test_convergence_warning_has_sklearns_wording(blobs):
    with pytest.warns(ConvergenceWarning, match="^Best performing initialization did not"):
        GaussianMixture(3, max_iter=1, tol=0.0).fit(blobs)


def test_sample_rejects_bad_n_samples(blobs):
    gmm = GaussianMixture(2, random_state=0).fit(blobs)
    for bad in (0, -1, 1.5, True):
        with pytest.raises(ValueError, match="Invalid value for 'n_samples'"):
            gmm.sample(bad)
