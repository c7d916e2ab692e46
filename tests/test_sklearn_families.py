"""bayesmix.sklearn.Mixture: a scikit-learn estimator for any component family (issue 17).

References: scikit-learn's own estimator checks; the closed-form K=1 Poisson estimate
(the column means, weighted means with sample weights); the declaration's fit
(``bm.Mixture(...).fit``) with the same options and seed; scipy's Poisson mass; repeated
rows for integer sample weights; a manual K-fold loop for GridSearchCV's scores.
"""

from __future__ import annotations

import pickle
import warnings

import numpy as np
import pandas as pd
import pytest
import sklearn.exceptions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.testing import assert_allclose, assert_array_equal
from scipy.stats import poisson
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, StandardScaler
from sklearn.utils.estimator_checks import parametrize_with_checks

import bayesmix as bm
from bayesmix.sklearn import ConvergenceWarning, Mixture

# Checks whose data are continuous random numbers (uniform or normal draws, shifted to be
# non-negative because a count family's tags say positive_only): a Poisson or negative
# binomial component has non-negative integer support, so fit rightly raises ValueError
# on them and the check cannot run. scikit-learn has no tag for integer-valued input. What
# these checks test (pickling, idempotent fits, row-order and subset invariance, dtypes,
# pipelines, n_features_in_, unchanged parameters and __dict__, sample weights as lists,
# read-only and F-ordered input) is replayed on counts in test_count_family_api_on_counts
# and the tests after it; the Student-t estimators run the checks themselves.
CONTINUOUS_DATA_CHECKS = (
    "check_dict_unchanged",
    "check_dont_overwrite_parameters",
    "check_dtype_object",
    "check_estimators_dtypes",
    "check_estimators_fit_returns_self",
    "check_estimators_nan_inf",
    "check_estimators_overwrite_params",
    "check_estimators_pickle",
    "check_f_contiguous_array_estimator",
    "check_fit2d_1feature",
    "check_fit2d_predict1d",
    "check_fit_check_is_fitted",
    "check_fit_idempotent",
    "check_fit_score_takes_y",
    "check_methods_sample_order_invariance",
    "check_methods_subset_invariance",
    "check_n_features_in",
    "check_n_features_in_after_fitting",
    "check_pipeline_consistency",
    "check_readonly_memmap_input",
    "check_sample_weight_equivalence_on_dense_data",
    "check_sample_weights_list",
)


def expected_failed_checks(estimator: Mixture) -> dict[str, str]:
    """Checks that cannot pass for a configuration, with the reason.

    Count families: every check that fits continuous random data (see
    ``CONTINUOUS_DATA_CHECKS``). Student-t: none with one component; with two or more,
    check_sample_weight_equivalence_on_dense_data compares a weighted fit on shuffled
    rows with a fit on repeated rows, and the k-means starts drawn from the same seed
    differ between the two, so EM can reach another local optimum (scikit-learn marks
    the check the same way for KMeans; the weighting itself is exact, see
    test_integer_weights_equal_repeated_rows).
    """
    family = estimator.family
    count = family in ("poisson", "negative_binomial") or isinstance(
        family, (bm.families.Poisson, bm.families.NegativeBinomial)
    )
    if count:
        reason = "fits continuous random data; a count family accepts non-negative integers only"
        return dict.fromkeys(CONTINUOUS_DATA_CHECKS, reason)
    if estimator.n_components > 1:
        return {
            "check_sample_weight_equivalence_on_dense_data": (
                "random k-means starts are not invariant to shuffling and repeating rows"
            )
        }
    return {}


@parametrize_with_checks(
    [
        Mixture(),
        Mixture(family="negative_binomial"),
        Mixture(family="student_t"),
        Mixture(family=bm.families.StudentT("diag", dof=4)),
        Mixture(family="student_t", map=True),
        Mixture(2, family=bm.families.StudentT("diag"), n_init=2, random_state=0),
    ],
    expected_failed_checks=expected_failed_checks,
)
def test_sklearn_compatible_estimator(estimator, check):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        check(estimator)


def test_student_t_expects_no_failures():
    assert expected_failed_checks(Mixture(family="student_t")) == {}
    assert expected_failed_checks(Mixture(family=bm.families.StudentT("diag", dof=3))) == {}


# -- data ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def articles() -> pd.DataFrame:
    return bm.datasets.load_biochemists()[["art"]]


@pytest.fixture(scope="module")
def counts() -> np.ndarray:
    rng = np.random.default_rng(3)
    return np.concatenate([rng.poisson([1.0, 4.0], (150, 2)), rng.poisson([7.0, 1.0], (100, 2))])


@pytest.fixture(scope="module")
def faithful() -> pd.DataFrame:
    return bm.datasets.load_faithful()


# -- agreement with the declaration and with closed forms ------------------------------
# A two-component negative binomial mixture of the articles converges slowly (its
# dispersions drift along a flat ridge); the comparison holds at max_iter all the same.
@pytest.mark.filterwarnings("ignore::bayesmix.ConvergenceWarning")
@pytest.mark.parametrize(
    ("family", "options"),
    [
        ("poisson", {}),
        ("negative_binomial", {}),
        (bm.families.NegativeBinomial(), {"map": True}),
    ],
)
def test_log_likelihood_equals_declaration_fit(articles, family, options):
    est = Mixture(2, family, random_state=4, n_init=3, **options).fit(articles)
    family = bm.families.FAMILIES[family]() if isinstance(family, str) else family
    method = "map" if options.get("map") else "em"
    ref = bm.Mixture(2, family).fit(articles, method=method, n_init=3, random_state=4)
    assert est.result_.log_likelihood == pytest.approx(ref.log_likelihood, rel=1e-12)
    assert est.converged_ == ref.converged and est.n_iter_ == ref.n_iter
    for name, value in ref.parameters.items():
        assert_allclose(getattr(est, f"{name}_"), value, rtol=1e-12)
    # score of the training data is the fitted mean log-likelihood (scipy's mass for
    # Poisson: an independent evaluation of the same number)
    assert est.score(articles) == pytest.approx(ref.log_likelihood / len(articles), rel=1e-10)
    if family == bm.families.Poisson():
        x = articles["art"].to_numpy()
        mass = (est.weights_ * poisson.pmf(x[:, None], est.rates_[:, 0])).sum(axis=1)
        assert_allclose(est.score_samples(articles), np.log(mass), rtol=1e-10)


def test_student_t_equals_declaration_fit(faithful):
    family = bm.families.StudentT("diag", dof=4)
    est = Mixture(2, family, n_init=2, random_state=1).fit(faithful)
    ref = bm.Mixture(2, family).fit(faithful, n_init=2, random_state=1)
    assert est.result_.log_likelihood == pytest.approx(ref.log_likelihood, rel=1e-12)
    assert est.score(faithful) * len(faithful) == pytest.approx(ref.log_likelihood, rel=1e-10)
    assert_allclose(est.dof_, [4.0, 4.0])
    assert est.scales_.shape == (2, 2) and est.means_.shape == (2, 2)
    assert_allclose(est.means_, ref.parameters["means"])


def test_one_component_poisson_rates_are_column_means(counts):
    est = Mixture(1, "poisson").fit(counts)
    assert_allclose(est.rates_, counts.mean(axis=0)[None, :], rtol=1e-12)
    assert_allclose(est.weights_, [1.0])
    weights = np.random.default_rng(0).integers(0, 4, len(counts)).astype(float)
    weighted = Mixture(1, "poisson").fit(counts, sample_weight=weights)
    assert_allclose(weighted.rates_[0], np.average(counts, axis=0, weights=weights), rtol=1e-12)
    # the maximum-likelihood objective per sample at the fitted rates, by scipy
    expected = poisson.logpmf(counts, counts.mean(axis=0)).sum(axis=1).mean()
    assert est.lower_bound_ == pytest.approx(expected, rel=1e-12)
    assert est.lower_bounds_[-1] == est.lower_bound_


def test_integer_weights_equal_repeated_rows(counts):
    weights = np.random.default_rng(1).integers(0, 3, len(counts))
    weighted = Mixture(1, "negative_binomial").fit(counts, sample_weight=weights)
    repeated = Mixture(1, "negative_binomial").fit(np.repeat(counts, weights, axis=0))
    assert_allclose(weighted.means_, repeated.means_, rtol=1e-10)
    assert_allclose(weighted.dispersions_, repeated.dispersions_, rtol=1e-6)


def test_map_objective_is_log_posterior(articles):
    est = Mixture(2, "poisson", map=True, n_init=2, random_state=0).fit(articles)
    assert est.result_.settings["method"] == "map"
    trace = est.result_.log_posterior_trace
    assert est.lower_bound_ == pytest.approx(trace[-1] / len(articles))
    # priors given: MAP whatever map says
    with_priors = Mixture(2, "poisson", priors={"rate_shape": 3.0}, random_state=0).fit(articles)
    assert with_priors.result_.settings["method"] == "map"


# -- the estimator protocol --------------------------------------------------------------
def test_params_round_trip_and_clone():
    family = bm.families.StudentT("diag", dof=4)
    est = Mixture(3, family, priors={"dof_shape": 3.0}, map=True, n_init=2, random_state=5)
    params = est.get_params()
    assert params["family"] is family and params["n_components"] == 3
    copy = clone(est)
    assert copy.get_params()["family"] == family
    assert {k: v for k, v in copy.get_params().items() if k != "family"} == {
        k: v for k, v in params.items() if k != "family"
    }
    est.set_params(family="poisson", n_components=2)
    assert est.family == "poisson" and est.n_components == 2
    assert Mixture(**params).get_params() == params


def test_refit_with_another_family_replaces_parameter_attributes(counts):
    est = Mixture(1, "poisson").fit(counts)
    assert hasattr(est, "rates_")
    est.set_params(family="negative_binomial").fit(counts)
    assert not hasattr(est, "rates_")
    assert est.means_.shape == est.dispersions_.shape == (1, 2)


@pytest.mark.parametrize(
    "method", ["predict", "predict_proba", "score", "score_samples", "bic", "aic"]
)
def test_not_fitted(method, counts):
    with pytest.raises(NotFittedError):
        getattr(Mixture(), method)(counts)


def test_sample_not_fitted():
    with pytest.raises(NotFittedError):
        Mixture().sample(2)


def test_fitted_attributes_and_methods(articles):
    est = Mixture(2, "poisson", n_init=2, random_state=0).fit(articles)
    assert isinstance(est.result_, bm.EMResult)
    assert est.n_features_in_ == 1
    assert_array_equal(est.feature_names_in_, ["art"])
    assert est.result_.feature_names == ("art",)  # the result is labelled by the columns
    assert est.rates_.shape == (2, 1) and est.weights_.shape == (2,)
    proba = est.predict_proba(articles)
    assert_allclose(proba.sum(axis=1), 1.0)
    assert_array_equal(est.predict(articles), proba.argmax(axis=1))
    assert_array_equal(est.fit_predict(articles), est.predict(articles))
    assert est.bic(articles) == pytest.approx(est.result_.bic(articles))
    assert est.aic(articles) == pytest.approx(est.result_.aic(articles))
    assert est.bic(articles) == pytest.approx(
        -2 * est.score(articles) * len(articles) + 3 * np.log(len(articles))
    )
    X, z = est.sample(50)
    assert X.shape == (50, 1) and z.shape == (50,)
    assert_array_equal(X, np.floor(X)) and (X >= 0).all()
    assert_array_equal(est.sample(50)[0], X)  # an int random_state repeats the draws


def test_count_family_api_on_counts(counts, tmp_path):
    """What the continuous-data checks test, on counts (see CONTINUOUS_DATA_CHECKS)."""
    est = Mixture(2, "negative_binomial", n_init=2, random_state=0)
    params = est.get_params()
    assert est.fit(counts) is est
    assert est.get_params() == params  # parameters not overwritten
    state = dict(est.__dict__)
    for method in ("predict", "predict_proba", "score_samples"):
        out = getattr(est, method)(counts)
        assert_array_equal(getattr(est, method)(counts), out)
        perm = np.random.default_rng(0).permutation(len(counts))
        assert_allclose(getattr(est, method)(counts[perm]), out[perm])  # row order
        assert_allclose(getattr(est, method)(counts[:7]), out[:7])  # subsets
        for dtype in (np.int32, np.int64, np.float32):
            assert_allclose(getattr(est, method)(counts.astype(dtype)), out)
        assert_allclose(getattr(est, method)(np.asfortranarray(counts)), out)
    assert est.__dict__.keys() == state.keys()  # prediction sets nothing
    again = clone(est).fit(counts)  # idempotent with the same seed
    assert_allclose(again.predict_proba(counts), est.predict_proba(counts))
    restored = pickle.loads(pickle.dumps(est))
    assert_allclose(restored.score_samples(counts), est.score_samples(counts))
    path = tmp_path / "counts.npy"
    np.save(path, counts)
    readonly = np.load(path, mmap_mode="r")
    assert_allclose(clone(est).fit(readonly).score_samples(readonly), est.score_samples(counts))
    listed = clone(est).fit(counts, sample_weight=[1] * len(counts))
    assert_allclose(listed.score_samples(counts), est.score_samples(counts))
    with pytest.raises(ValueError, match="3 features"):
        est.predict(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="2D array"):
        est.predict(counts[:, 0])


def test_pipelines(articles, faithful):
    # counts: select the column in the pipeline (a scaler would leave the support)
    frame = bm.datasets.load_biochemists()
    pipe = Pipeline(
        [
            ("select", FunctionTransformer(lambda df: df[["art"]])),
            ("mix", Mixture(2, "poisson", n_init=2, random_state=0)),
        ]
    ).fit(frame)
    direct = Mixture(2, "poisson", n_init=2, random_state=0).fit(articles)
    assert_allclose(pipe[-1].rates_, direct.rates_)
    assert pipe.score(frame) == pytest.approx(direct.score(articles))
    # continuous: standardise, then a Student-t mixture
    family = bm.families.StudentT(dof=4)
    t_pipe = make_pipeline(StandardScaler(), Mixture(2, family, n_init=2, random_state=0))
    labels = t_pipe.fit(faithful).predict(faithful)
    scaled = StandardScaler().fit_transform(faithful)
    ref = Mixture(2, family, n_init=2, random_state=0).fit(scaled)
    assert_array_equal(labels, ref.predict(scaled))


def test_grid_search_n_components_on_biochemists(articles):
    cv = KFold(3, shuffle=True, random_state=0)
    base = Mixture(family="poisson", n_init=2, random_state=0)
    search = GridSearchCV(base, {"n_components": [1, 2, 3]}, cv=cv).fit(articles)
    assert search.best_params_["n_components"] in (1, 2, 3)
    scores = search.cv_results_["mean_test_score"]
    assert np.isfinite(scores).all()
    # the held-out scores, recomputed by hand
    for k, score in zip([1, 2, 3], scores, strict=True):
        folds = [
            clone(base)
            .set_params(n_components=k)
            .fit(articles.iloc[train])
            .score(articles.iloc[test])
            for train, test in cv.split(articles)
        ]
        assert score == pytest.approx(np.mean(folds), rel=1e-12)
    # a Poisson mixture of articles beats one Poisson on held-out rows (overdispersion)
    assert scores[1] > scores[0]
    assert search.best_estimator_.n_components == 1 + int(np.argmax(scores))


def test_grid_search_over_families(articles):
    search = GridSearchCV(
        Mixture(n_init=2, random_state=0),
        {"family": ["poisson", "negative_binomial"], "n_components": [1, 2]},
        cv=3,
    ).fit(articles)
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    assert search.best_params_["family"] in ("poisson", "negative_binomial")


# -- errors ------------------------------------------------------------------------------
def test_count_family_rejects_data_outside_its_support(counts):
    with pytest.raises(ValueError, match="Negative values in data passed to"):
        Mixture().fit(counts - 3)
    with pytest.raises(ValueError, match="non-negative integer counts"):
        Mixture().fit(counts + 0.5)
    est = Mixture().fit(counts)
    with pytest.raises(ValueError, match="non-negative integer counts"):
        est.predict(counts + 0.5)
    with pytest.raises(ValueError, match="Negative values"):
        est.score_samples(-counts)


@pytest.mark.parametrize(
    ("family", "error", "match"),
    [
        ("gaussian", ValueError, "GaussianMixture"),
        (bm.families.Gaussian("diag"), ValueError, "GaussianMixture"),
        ("binomial", ValueError, "family must be one of"),
        (bm.families.Poisson, TypeError, "not the class"),
        (3, TypeError, "family must be a name"),
    ],
)
def test_bad_family(counts, family, error, match):
    with pytest.raises(error, match=match):
        Mixture(family=family).fit(counts)


@pytest.mark.parametrize(
    ("params", "error", "match"),
    [
        ({"n_components": 0}, ValueError, "n_components"),
        ({"n_components": 2.5}, TypeError, "n_components"),
        ({"map": "yes"}, TypeError, "map must be a bool"),
        ({"priors": {"bogus": 1}}, ValueError, "unknown names"),
        ({"n_init": 0}, ValueError, "n_init"),
        ({"max_iter": 0}, ValueError, "max_iter"),
        ({"tol": -1.0}, ValueError, "tol"),
        ({"verbose": -1}, ValueError, "verbose"),
        ({"missing": "drop"}, ValueError, "missing"),
    ],
)
def test_bad_params(counts, params, error, match):
    with pytest.raises(error, match=match):
        Mixture(**params).fit(counts)


def test_too_few_rows():
    with pytest.raises(ValueError, match="n_samples >= n_components"):
        Mixture(3).fit(np.array([[1.0], [2.0]]))


def test_convergence_warning_is_both_categories(articles):
    with pytest.warns(ConvergenceWarning, match="did not converge") as record:
        est = Mixture(3, "negative_binomial", max_iter=1, n_init=1, random_state=0).fit(articles)
    assert not est.converged_
    assert issubclass(record[0].category, sklearn.exceptions.ConvergenceWarning)
    assert issubclass(record[0].category, bm.ConvergenceWarning)


# -- missing values and verbosity ------------------------------------------------------------
def test_missing_marginalize(counts):
    holes = counts.astype(float)
    holes[::7, 0] = np.nan
    est = Mixture(2, "poisson", missing="marginalize", n_init=2, random_state=0).fit(holes)
    ref = bm.Mixture(2, bm.families.Poisson()).fit(
        holes, missing="marginalize", n_init=2, random_state=0
    )
    assert est.result_.log_likelihood == pytest.approx(ref.log_likelihood, rel=1e-12)
    assert_allclose(est.score_samples(holes), ref.score_samples(holes))
    assert est.__sklearn_tags__().input_tags.allow_nan
    with pytest.raises(ValueError, match="NaN"):
        Mixture(2, "poisson").fit(holes)


def test_tags():
    assert Mixture().__sklearn_tags__().input_tags.positive_only
    assert not Mixture(family="student_t").__sklearn_tags__().input_tags.positive_only
    assert not Mixture(family="bogus").__sklearn_tags__().input_tags.positive_only


def test_verbose_prints_one_line(counts, capsys):
    Mixture(2, verbose=1, n_init=2, random_state=0).fit(counts)
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and "best of 2 start(s) converged" in out[0]


def test_rows_without_observed_entries_leave_the_fit_with_their_weights(counts):
    holes = counts.astype(float)
    holes[[3, 10], :] = np.nan
    weights = np.random.default_rng(2).integers(1, 4, len(counts)).astype(float)
    keep = np.ones(len(counts), bool)
    keep[[3, 10]] = False
    with pytest.warns(bm.MissingDataWarning, match="2 row"):
        est = Mixture(1, "poisson", missing="marginalize").fit(holes, sample_weight=weights)
    ref = Mixture(1, "poisson").fit(counts[keep], sample_weight=weights[keep])
    assert_allclose(est.rates_, ref.rates_, rtol=1e-12)
    assert_allclose(est.rates_[0], np.average(counts[keep], axis=0, weights=weights[keep]))
    # such a row's memberships are the weights
    assert_allclose(est.predict_proba(holes[[3]]), est.weights_[None, :])


# -- every input fits finitely or gets a one-line error ---------------------------------
PROPERTY_SETTINGS = settings(
    max_examples=60,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)


@PROPERTY_SETTINGS
@given(
    X=hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 12), st.integers(1, 3)),
        elements=st.integers(0, 30).map(float),
    ),
    n_components=st.integers(1, 3),
    family=st.sampled_from(["poisson", "negative_binomial"]),
)
def test_count_estimator_fits_finitely_or_refuses(X, n_components, family):
    est = Mixture(n_components, family, n_init=1, max_iter=50, random_state=0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # only bayesmix's own warnings are expected
            warnings.simplefilter("ignore", bm.BayesmixWarning)
            est.fit(X)
    except (ValueError, TypeError) as error:
        assert "\n" not in str(error)
        return
    assert np.isfinite(est.score_samples(X)).all()
    assert_allclose(est.predict_proba(X).sum(axis=1), 1.0)
    assert np.isfinite(est.lower_bound_)


@PROPERTY_SETTINGS
@given(
    X=hnp.arrays(
        np.float64,
        st.tuples(st.integers(1, 12), st.integers(1, 3)),
        elements=st.floats(-1e3, 1e3, allow_subnormal=False),
    ),
    n_components=st.integers(1, 3),
    covariance_type=st.sampled_from(["full", "diag"]),
)
def test_student_t_estimator_fits_finitely_or_refuses(X, n_components, covariance_type):
    family = bm.families.StudentT(covariance_type)
    est = Mixture(n_components, family, n_init=1, max_iter=50, random_state=0)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            warnings.simplefilter("ignore", bm.BayesmixWarning)
            est.fit(X)
    except (ValueError, TypeError) as error:
        assert "\n" not in str(error)
        return
    assert np.isfinite(est.score_samples(X)).all()
    assert np.isfinite(est.lower_bound_)
