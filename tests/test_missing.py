"""Missing values by marginalisation (``missing="marginalize"``), against independent
references: scipy's multivariate normal evaluated on each row's observed features,
numerical gradients of that observed-data log-likelihood (an exact EM stops at a
stationary point of it), complete-data fits of the same simulated data before values
were removed, and row duplication for frequency weights."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from conftest import expand_covariances, natural_covariances
from scipy import stats
from scipy.special import logsumexp

import bayesmix as bm
from bayesmix.data import as_data
from bayesmix.families.gaussian.covariance import get_structure
from bayesmix.families.gaussian.missing import (
    MissingDataWarning,
    marginal_log_joint,
    missing_layout,
)
from bayesmix.families.gaussian.stats import Params

COVARIANCE_TYPES = ("full", "tied", "diag", "spherical")

WEIGHTS = np.array([0.45, 0.55])
MEANS = np.array([[-2.0, 1.0, 0.5], [2.5, -1.0, 2.0]])
COVARIANCES = np.array(
    [
        [[1.0, 0.5, 0.2], [0.5, 1.2, -0.3], [0.2, -0.3, 0.8]],
        [[0.7, -0.2, 0.1], [-0.2, 0.9, 0.4], [0.1, 0.4, 1.1]],
    ]
)


def _true_covariances(covariance_type):
    """The simulation's covariances in ``covariance_type``'s structure, as full matrices."""
    natural = natural_covariances(covariance_type, COVARIANCES)
    return expand_covariances(covariance_type, natural, 2, 3)


def _simulate(n_obs, seed, covariance_type="full"):
    rng = np.random.default_rng(seed)
    full = _true_covariances(covariance_type)
    z = rng.choice(2, size=n_obs, p=WEIGHTS)
    X = np.empty((n_obs, 3))
    for k in range(2):
        X[z == k] = rng.multivariate_normal(MEANS[k], full[k], size=(z == k).sum())
    return X


def _remove(X, fraction, seed):
    """MCAR: every value is removed independently with probability ``fraction``."""
    rng = np.random.default_rng(seed)
    out = X.copy()
    out[rng.random(X.shape) < fraction] = np.nan
    return out


def _scipy_log_joint(X, weights, means, full):
    """``log w_k + log N(x_o | mu_o, S_oo)`` with scipy (the reference), one scipy call
    per component and set of observed features."""
    out = np.empty((X.shape[0], len(weights)))
    observed = ~np.isnan(X)
    for mask in {tuple(row) for row in observed}:
        obs = np.array(mask)
        rows = (observed == obs).all(axis=1)
        for k in range(len(weights)):
            log_dens = (
                stats.multivariate_normal(means[k, obs], full[k][np.ix_(obs, obs)]).logpdf(
                    X[np.ix_(rows, obs)]
                )
                if obs.any()
                else 0.0
            )
            out[rows, k] = np.log(weights[k]) + log_dens
    return out


def _scipy_log_likelihood(X, weights, means, full):
    return logsumexp(_scipy_log_joint(X, weights, means, full), axis=1).sum()


def _fit(model, X, **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingDataWarning)
        return model.fit(X, **options)


# ---------------------------------------------------------------------------------------
# validation and the door


def test_as_data_allow_missing_keeps_nan_and_rejects_inf():
    X = np.array([[1.0, np.nan], [np.nan, 2.0], [3.0, 4.0]])
    with pytest.raises(ValueError, match="missing='marginalize'"):
        as_data(X)
    data = as_data(X, allow_missing=True)
    assert data.allow_missing and np.array_equal(np.isnan(data.values), np.isnan(X))
    assert as_data(data).allow_missing  # a validated Data keeps the permission
    with pytest.raises(ValueError, match=r"1 infinite value\(s\), the first in row 1"):
        as_data(np.array([[1.0, np.nan], [np.inf, 2.0]]), allow_missing=True)
    with pytest.raises(ValueError, match="larger than"):
        as_data(np.array([[1e200, np.nan], [1.0, 2.0]]), allow_missing=True)
    with pytest.raises(TypeError, match="allow_missing must be True or False"):
        as_data(X, allow_missing="yes")
    frame = pd.DataFrame({"a": [1.0, None, 3.0], "b": pd.array([1, 2, None], dtype="Int64")})
    data = as_data(frame, allow_missing=True)
    assert np.isnan(data.values[1, 0]) and np.isnan(data.values[2, 1])


def test_default_rejects_nan_and_bad_options_are_named():
    X = _remove(_simulate(40, 0), 0.1, 0)
    model = bm.GaussianMixture(2)
    with pytest.raises(ValueError, match="NaN or infinite.*missing='marginalize'"):
        model.fit(X)
    with pytest.raises(ValueError, match="missing must be one of"):
        model.fit(X, missing="drop")
    with pytest.raises(ValueError, match="missing must be one of"):
        model.fit(X, method="nuts", missing=True)
    X[:, 2] = np.nan
    with pytest.raises(ValueError, match=r"feature\(s\) \['x2'\] of X have no observed value"):
        model.fit(X, missing="marginalize")


def test_layout_groups_rows_by_pattern():
    X = np.array([[1.0, 2.0, 3.0], [np.nan, 2.0, 3.0], [1.0, np.nan, np.nan], [np.nan, 5.0, 6.0]])
    layout = missing_layout(X)
    assert layout.complete.tolist() == [0]
    found = {tuple(p.missing.tolist()): p.rows.tolist() for p in layout.patterns}
    assert found == {(0,): [1, 3], (1, 2): [2]}
    assert sorted(layout.key) == [(False, True, True), (True, False, False)]


# ---------------------------------------------------------------------------------------
# densities


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_marginal_log_joint_matches_scipy(covariance_type):
    model = bm.GaussianMixture(2, covariance_type)
    natural = natural_covariances(covariance_type, COVARIANCES)
    structure = model.structure
    params = Params(WEIGHTS, MEANS, natural, structure.precision_cholesky(natural))
    X = _remove(_simulate(60, 1), 0.3, 1)
    X[5] = np.nan  # nothing observed: log w_k
    expected = _scipy_log_joint(
        X, WEIGHTS, MEANS, expand_covariances(covariance_type, natural, 2, 3)
    )
    assert np.allclose(marginal_log_joint(X, params, structure), expected, rtol=1e-10)


# ---------------------------------------------------------------------------------------
# EM


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_em_log_likelihood_is_the_observed_data_marginal(covariance_type):
    X = _remove(_simulate(150, 2, covariance_type), 0.2, 2)
    fit = _fit(bm.GaussianMixture(2, covariance_type), X, missing="marginalize", random_state=0)
    rows = ~np.isnan(X).all(axis=1)
    expected = _scipy_log_likelihood(X[rows], fit.weights, fit.means, fit.covariances)
    assert fit.log_likelihood == pytest.approx(expected, rel=1e-9)
    assert fit.n_obs == rows.sum()
    assert np.all(np.diff(fit.log_likelihood_trace) > -1e-8 * abs(expected))  # EM ascends
    p = fit.n_parameters
    assert fit.bic() == pytest.approx(-2 * expected + p * np.log(rows.sum()), rel=1e-9)
    assert fit.bic(X) == pytest.approx(fit.bic(), rel=1e-9)


def _unpack(covariance_type, theta):
    """Parameters from a flat vector: logit weight, means, covariance free entries."""
    w1 = 1.0 / (1.0 + np.exp(-theta[0]))
    weights = np.array([1.0 - w1, w1])
    means = theta[1:7].reshape(2, 3)
    rest = theta[7:]
    if covariance_type in ("full", "tied"):
        rows, cols = np.triu_indices(3)
        mats = np.zeros((rest.size // 6, 3, 3))
        mats[:, rows, cols] = rest.reshape(-1, 6)
        mats[:, cols, rows] = rest.reshape(-1, 6)
        natural = mats if covariance_type == "full" else mats[0]
    else:
        natural = rest.reshape(2, 3) if covariance_type == "diag" else rest
    return weights, means, expand_covariances(covariance_type, natural, 2, 3)


def _pack(covariance_type, fit):
    natural = natural_covariances(covariance_type, fit.covariances)
    if covariance_type in ("full", "tied"):
        rows, cols = np.triu_indices(3)
        natural = np.asarray(natural)[..., rows, cols]
    w = fit.weights
    return np.concatenate([[np.log(w[1] / w[0])], fit.means.ravel(), np.ravel(natural)])


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_em_stops_at_a_stationary_point_of_the_observed_likelihood(covariance_type):
    """Exact EM converges to a stationary point of the observed-data likelihood; an
    imputation shortcut (filling conditional means without the conditional covariance)
    would not: its covariances are too small."""
    X = _remove(_simulate(120, 3, covariance_type), 0.25, 3)
    fit = _fit(
        bm.GaussianMixture(2, covariance_type),
        X,
        missing="marginalize",
        random_state=0,
        tol=1e-12,
        max_iter=2000,
        reg_covar=0.0,
    )
    assert fit.converged
    X = X[~np.isnan(X).all(axis=1)]
    theta = _pack(covariance_type, fit)
    step = 1e-5
    grad = np.empty(theta.size)
    for i in range(theta.size):
        up, down = theta.copy(), theta.copy()
        up[i] += step
        down[i] -= step
        grad[i] = (
            _scipy_log_likelihood(X, *_unpack(covariance_type, up))
            - _scipy_log_likelihood(X, *_unpack(covariance_type, down))
        ) / (2 * step)
    assert np.abs(grad).max() < 1e-3 * len(X) ** 0.5


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_em_with_20_percent_mcar_recovers_the_complete_data_estimates(covariance_type):
    X = _simulate(3000, 4, covariance_type)
    model = bm.GaussianMixture(2, covariance_type)
    complete = model.fit(X, random_state=0)
    fit = _fit(model, _remove(X, 0.2, 4), missing="marginalize", random_state=0)
    ref, got = np.argsort(complete.means[:, 0]), np.argsort(fit.means[:, 0])  # labels
    # Monte Carlo error of the estimates on 3000 rows is about 0.02-0.04 for these
    # parameters; 20% fewer values inflate it modestly.
    assert np.allclose(fit.weights[got], complete.weights[ref], atol=0.02)
    assert np.allclose(fit.means[got], complete.means[ref], atol=0.1)
    assert np.allclose(fit.covariances[got], complete.covariances[ref], atol=0.12)
    truth = _true_covariances(covariance_type)
    assert np.allclose(fit.means[got], MEANS, atol=0.15)
    assert np.allclose(fit.covariances[got], truth, atol=0.2)


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
@pytest.mark.parametrize("method", ["em", "map"])
def test_without_nan_marginalize_is_bitwise_the_default(covariance_type, method):
    X = _simulate(200, 5, covariance_type)
    model = bm.GaussianMixture(2, covariance_type)
    default = model.fit(X, method=method, n_init=2, random_state=1)
    other = model.fit(X, method=method, n_init=2, random_state=1, missing="marginalize")
    assert np.array_equal(default.means, other.means)
    assert np.array_equal(default.covariances, other.covariances)
    assert np.array_equal(default.weights, other.weights)
    assert np.array_equal(default.log_likelihood_trace, other.log_likelihood_trace)
    assert other.settings["missing"] == "marginalize"


def test_frequency_weights_equal_duplicated_rows():
    X = _remove(_simulate(80, 6), 0.25, 6)
    counts = np.random.default_rng(6).integers(1, 4, size=len(X))
    model = bm.GaussianMixture(2, "full")
    start = {"means": MEANS}
    weighted = _fit(model, X, sample_weight=counts, missing="marginalize", init=start, tol=1e-10)
    repeated = _fit(
        model, np.repeat(X, counts, axis=0), missing="marginalize", init=start, tol=1e-10
    )
    assert np.allclose(weighted.means, repeated.means, atol=1e-8)
    assert np.allclose(weighted.covariances, repeated.covariances, atol=1e-8)
    assert weighted.log_likelihood == pytest.approx(repeated.log_likelihood, rel=1e-10)


def test_rows_without_observed_features_are_dropped_with_a_warning():
    X = _remove(_simulate(100, 7), 0.15, 7)
    X[[3, 10, 11]] = np.nan
    n_unobserved = int(np.isnan(X).all(axis=1).sum())
    with pytest.warns(MissingDataWarning, match=f"^{n_unobserved} row\\(s\\) of X have no"):
        fit = bm.GaussianMixture(2).fit(X, missing="marginalize", random_state=0)
    assert fit.n_obs == len(X) - n_unobserved


def test_map_priors_use_the_observed_moments():
    X = _remove(_simulate(200, 8), 0.3, 8)
    model = bm.GaussianMixture(2, "diag")
    priors = model.resolve_priors(X)
    complete_rows = bm.Priors().resolve(np.zeros((1, 3)), 2, model.structure)  # shapes only
    assert np.allclose(priors.mean_loc, np.nanmean(X, axis=0))
    assert np.allclose(priors.mean_scale, 2.5 * np.nanstd(X, axis=0))
    assert np.shape(priors.covariance_scale) == np.shape(complete_rows.covariance_scale)
    assert np.allclose(priors.covariance_scale, np.nanvar(X, axis=0) / 2 ** (2 / 3))
    fit = _fit(model, X, method="map", missing="marginalize", random_state=0)
    assert fit.log_posterior_trace is not None
    assert np.all(np.diff(fit.log_posterior_trace) > -1e-8 * abs(fit.log_posterior_trace[-1]))


# ---------------------------------------------------------------------------------------
# prediction


@pytest.fixture(scope="module")
def missing_fit():
    X = _remove(_simulate(200, 9), 0.2, 9)
    X = X[~np.isnan(X).all(axis=1)]
    return X, bm.GaussianMixture(2, "full").fit(X, missing="marginalize", random_state=0)


def test_prediction_marginalises_for_a_marginalize_fit(missing_fit):
    X, fit = missing_fit
    X = np.vstack([X, np.full((1, 3), np.nan)])
    reference = _scipy_log_joint(X, fit.weights, fit.means, fit.covariances)
    log_norm = logsumexp(reference, axis=1)
    proba = fit.predict_proba(X)
    assert np.allclose(proba, np.exp(reference - log_norm[:, None]), rtol=1e-9)
    assert np.allclose(proba[-1], fit.weights)  # nothing observed: the prior memberships
    assert np.allclose(fit.score_samples(X), log_norm, rtol=1e-9)
    assert fit.predict(X).tolist() == proba.argmax(axis=1).tolist()
    assert fit.score(X) == pytest.approx(log_norm.mean(), rel=1e-9)
    tree = fit.to_datatree(X)
    assert np.allclose(tree["log_likelihood"]["X"].values[0, 0], log_norm, rtol=1e-9)
    assert np.isnan(tree["observed_data"]["X"].values).sum() == np.isnan(X).sum()
    draws = fit.membership_draws(X)
    assert np.allclose(draws.values[0, 0], proba)


def test_a_complete_data_fit_rejects_nan_in_prediction(missing_fit):
    X, _ = missing_fit
    fit = bm.GaussianMixture(2, "full").fit(np.nan_to_num(X), random_state=0)
    for method in (fit.predict_proba, fit.score_samples, fit.membership_draws, fit.bic):
        with pytest.raises(ValueError, match="NaN or infinite"):
            method(X)
    # an explicitly validated Data opts in
    assert np.isfinite(fit.score_samples(as_data(X, allow_missing=True))).all()


# ---------------------------------------------------------------------------------------
# the PyMC model and NUTS


@pytest.mark.parametrize("covariance_type", COVARIANCE_TYPES)
def test_pymc_likelihood_is_the_observed_data_marginal(covariance_type):
    """The observed variables' log density at a point equals scipy's marginal mixture
    density of every row (compiled without the numba backend: no sampling here)."""
    from pytensor.compile.mode import Mode

    from bayesmix.families.gaussian.builder import ModelSpec, build_pymc, missing_patterns

    model = bm.GaussianMixture(2, covariance_type)
    X = _remove(_simulate(40, 10), 0.3, 10)
    X = X[~np.isnan(X).all(axis=1)]
    data = as_data(X, allow_missing=True)
    spec = ModelSpec(covariance_type, 2, 3, None, missing_patterns(data))
    pm_model = build_pymc(spec, model.structure, data, model.resolve_priors(data))
    assert len(pm_model.observed_RVs) == 1 + len(spec.missing_patterns)
    rng = np.random.default_rng(0)  # any unconstrained point (known shapes: no compile)
    shapes = {v.name: v.type.shape for v in pm_model.value_vars}
    shapes["weights_simplex__"] = (1,)  # K - 1 free weights
    point = {name: 0.5 * rng.normal(size=shape) for name, shape in shapes.items()}
    python = Mode(linker="py", optimizer="fast_compile")  # nothing to compile to C
    log_lik = pm_model.compile_logp(vars=pm_model.observed_RVs, mode=python)(point)
    names = ["weights", "means", model.structure.pymc_precision_name]
    outputs = pm_model.replace_rvs_by_values([pm_model[n] for n in names])
    weights, means, precision = pm_model.compile_fn(
        outputs, inputs=pm_model.value_vars, on_unused_input="ignore", mode=python
    )(point)
    full = np.broadcast_to(
        model.structure.covariance_from_precision(np.asarray(precision), 3), (2, 3, 3)
    )
    assert log_lik == pytest.approx(_scipy_log_likelihood(X, weights, means, full), rel=1e-9)
    other = as_data(_remove(_simulate(40, 11), 0.3, 11), allow_missing=True)
    with pytest.raises(ValueError, match="missingness patterns differ"):
        build_pymc(spec, model.structure, other, model.resolve_priors(other))


@pytest.fixture(scope="module")
def faithful_missing(faithful):
    """Old Faithful with 10% of the values removed at random, and its NUTS fit."""
    X = faithful.copy()
    X[np.random.default_rng(12).random(X.shape) < 0.1] = np.nan
    X = X[X.notna().any(axis=1)]
    fit = bm.GaussianMixture(2, "full").fit(
        X, method="nuts", missing="marginalize", chains=2, draws=500, tune=500, random_state=3
    )
    return X, fit


@pytest.mark.slow
def test_nuts_posterior_with_missing_values_is_near_the_complete_data_posterior(
    faithful_nuts, faithful_missing
):
    X, fit = faithful_missing
    assert fit.settings["missing"] == "marginalize"
    # the missing-data likelihood is PyMC's graph, the complete-data one bayesmix's own
    assert (fit.settings["log_density"], faithful_nuts.settings["log_density"]) == (
        "pymc",
        "bayesmix",
    )
    full_sd = faithful_nuts.posterior["means"].std(("chain", "draw")).values
    missing_sd = fit.posterior["means"].std(("chain", "draw")).values
    assert np.all(np.abs(fit.means - faithful_nuts.means) < 1.5 * full_sd)
    assert np.allclose(fit.weights, faithful_nuts.weights, atol=0.05)
    stds = ("chain", "draw")
    assert np.allclose(
        fit.posterior["stds"].mean(stds), faithful_nuts.posterior["stds"].mean(stds), rtol=0.1
    )
    assert missing_sd.mean() > full_sd.mean()  # fewer values, a wider posterior


@pytest.mark.slow
def test_nuts_log_likelihood_is_per_observation_and_marginal(faithful_missing):
    X, fit = faithful_missing
    tree = fit.to_datatree()
    log_lik = tree["log_likelihood"]["X"]
    assert log_lik.sizes["obs"] == len(X)
    assert list(tree["observed_data"]["obs"].values) == list(X.index)
    post = fit.posterior
    for chain, draw in [(0, 0), (1, 499)]:
        at = post.isel(chain=chain, draw=draw)
        expected = logsumexp(
            _scipy_log_joint(
                X.to_numpy(), at["weights"].values, at["means"].values, at["covariances"].values
            ),
            axis=1,
        )
        assert np.allclose(log_lik.values[chain, draw], expected, rtol=1e-9)
    proba = fit.predict_proba(X)
    assert np.all(np.isfinite(proba)) and np.allclose(proba.sum(axis=1), 1.0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.BayesmixWarning)
        table = fit.summary()  # diagnostics scale features by their observed spread
    assert np.isfinite(table["mean"]).all()


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_gibbs_imputes_from_the_gaussian_conditional(covariance_type):
    """One imputation over many replicas in the same state: draws of a row's missing
    values have the conditional mean mu_m + S_mo S_oo^-1 (x_o - mu_o) and covariance
    (S_mm - S_mo S_oo^-1 S_om) / beta of the component it is allocated to (numpy's
    closed form, not bayesmix's)."""
    from bayesmix.families.gaussian.missing import missing_layout
    from bayesmix.inference.bayes.conditionals import GibbsState, impute_missing

    structure = get_structure(covariance_type)
    rng = np.random.default_rng(5)
    cov_full = np.array(
        [
            [[2.0, 0.6, 0.3], [0.6, 1.0, -0.2], [0.3, -0.2, 1.5]],
            [[1.0, -0.4, 0.1], [-0.4, 2.0, 0.5], [0.1, 0.5, 0.8]],
        ]
    )
    natural = structure.from_full(cov_full)
    full = np.broadcast_to(structure.to_full(natural, 2, 3), (2, 3, 3))
    means = np.array([[0.0, 1.0, -1.0], [2.0, -1.0, 0.5]])
    replicas = 20000
    state = GibbsState(
        np.log(np.full((replicas, 2), 0.5)),
        np.repeat(means[None], replicas, axis=0),
        np.repeat(natural[None], replicas, axis=0),
        np.repeat(structure.precision_cholesky(natural)[None], replicas, axis=0),
    )
    row = np.array([[0.7, np.nan, np.nan], [np.nan, 0.2, -0.3]])
    patterns = missing_layout(row).patterns
    X = np.repeat(np.nan_to_num(row)[None], replicas, axis=0)
    allocation = np.tile([[1], [0]], (1, replicas))  # row 0 in component 1, row 1 in 0
    betas = np.full(replicas, 0.5)
    impute_missing(X, patterns, state, allocation, betas, structure, rng)
    for index, k, obs, mis in ((0, 1, [0], [1, 2]), (1, 0, [1, 2], [0])):
        S = full[k]
        B = S[np.ix_(mis, obs)] @ np.linalg.inv(S[np.ix_(obs, obs)])
        mean = means[k, mis] + B @ (row[index, obs] - means[k, obs])
        cov = (S[np.ix_(mis, mis)] - B @ S[np.ix_(obs, mis)]) / 0.5
        draws = X[:, index, mis]
        se = np.sqrt(np.diag(cov) / replicas)
        np.testing.assert_allclose(draws.mean(0), mean, atol=5 * se.max())
        cov_se = np.sqrt((np.outer(np.diag(cov), np.diag(cov)) + cov**2) / replicas)
        assert np.all(np.abs(np.atleast_2d(np.cov(draws.T)) - cov) < 5 * cov_se)
        np.testing.assert_array_equal(
            X[:, index, obs], np.broadcast_to(row[index, obs], (replicas, len(obs)))
        )


@pytest.mark.slow
def test_gibbs_with_missing_values_samples_nuts_posterior(faithful_missing):
    """Gibbs with data augmentation and NUTS on PyMC's marginal likelihood sample the same
    posterior of Old Faithful with 10% of its values missing: posterior means within
    0.3 posterior sds, posterior sds within 20%."""
    X, nuts = faithful_missing
    gibbs = bm.GaussianMixture(2, "full").fit(
        X, method="gibbs", missing="marginalize", draws=2000, random_state=4, progressbar=False
    )
    assert gibbs.settings["missing"] == "marginalize" and gibbs.settings["mode_jumps"] is False
    draws = ("chain", "draw")
    for name in ("weights", "means", "stds"):
        g, n = gibbs.posterior[name], nuts.posterior[name]
        sd = n.std(draws).values
        np.testing.assert_array_less(np.abs(g.mean(draws).values - n.mean(draws).values), 0.3 * sd)
        np.testing.assert_allclose(g.std(draws).values, sd, rtol=0.2)
    # predictions on incomplete rows use the observed features' marginal
    assert gibbs.predict_proba(X).shape == (len(X), 2)
