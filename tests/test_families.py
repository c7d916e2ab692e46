"""Count families (Poisson, negative binomial) against independent references (issue 17).

The references are independent of bayesmix's code: scipy.stats' log mass functions and
prior densities, the mixture log-likelihood written here with scipy and maximised by
scipy.optimize from many starts, closed-form posterior modes, simulated truth, and R's
flexmix on the bioChemists data (tests/data/flexmix_biochemists.json, produced by
tests/data/flexmix_biochemists.R; R is not needed to run these tests).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import optimize, stats
from scipy.special import logsumexp

import bayesmix as bm
from bayesmix.datasets import load_biochemists

FLEXMIX_JSON = Path(__file__).parent / "data" / "flexmix_biochemists.json"


# -- independent references ------------------------------------------------------------------
def poisson_logpmf(X, rates):
    """``log p(x_n | k)`` ``(n, K)`` by scipy: sum over columns (local independence)."""
    return stats.poisson.logpmf(X[:, None, :], rates[None]).sum(axis=2)


def nb_logpmf(X, means, dispersions):
    """PyMC's NegativeBinomial(mu, alpha) is scipy's nbinom(n=alpha, p=alpha/(alpha+mu))."""
    alpha, mu = dispersions[None], means[None]
    return stats.nbinom.logpmf(X[:, None, :], alpha, alpha / (alpha + mu)).sum(axis=2)


def mixture_loglik(X, weights, component_logpmf):
    return float(logsumexp(np.log(weights) + component_logpmf, axis=1).sum())


def unpack(theta, n_components, n_features, n_arrays):
    """Unconstrained vector -> (weights, [positive (K, D) arrays]): softmax of K-1 logits
    (the first fixed at 0) and exp of the logs."""
    logits = np.concatenate([[0.0], theta[: n_components - 1]])
    weights = np.exp(logits - logsumexp(logits))
    rest = np.exp(theta[n_components - 1 :]).reshape(n_arrays, n_components, n_features)
    return weights, list(rest)


def best_optimum(objective, starts):
    """The best of the BFGS runs from ``starts``."""
    best = None
    for start in starts:
        with np.errstate(all="ignore"):
            run = optimize.minimize(objective, start, method="BFGS", options={"gtol": 1e-8})
        if np.isfinite(run.fun) and (best is None or run.fun < best.fun):
            best = run
    return best


def numerical_hessian(f, x, step=1e-4):
    n = x.size
    hessian = np.empty((n, n))
    for i in range(n):
        for j in range(i, n):
            ei, ej = np.eye(n)[i] * step, np.eye(n)[j] * step
            value = (f(x + ei + ej) - f(x + ei - ej) - f(x - ei + ej) + f(x - ei - ej)) / (
                4 * step**2
            )
            hessian[i, j] = hessian[j, i] = value
    return hessian


def standard_errors(negloglik, theta):
    """Standard errors of the unconstrained parameters from the observed information."""
    return np.sqrt(np.diag(np.linalg.inv(numerical_hessian(negloglik, theta))))


# -- simulated data --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def poisson_data():
    """200 rows, 2 columns, K = 2 (weights 0.6/0.4, rates (2, 5) and (9, 3))."""
    rng = np.random.default_rng(17)
    z = rng.random(200) < 0.4
    rates = np.where(z[:, None], [9.0, 3.0], [2.0, 5.0])
    return rng.poisson(rates).astype(float)


@pytest.fixture(scope="module")
def nb_data():
    """300 rows, 1 column, K = 2 overdispersed components: (mu 2, alpha 2) and (mu 20,
    alpha 5), weights 0.6/0.4."""
    rng = np.random.default_rng(18)
    z = rng.random(300) < 0.4
    mu, alpha = np.where(z, 20.0, 2.0), np.where(z, 5.0, 2.0)
    return rng.negative_binomial(alpha, alpha / (alpha + mu)).astype(float)[:, None]


@pytest.fixture(scope="module")
def poisson_em(poisson_data):
    return bm.Mixture(2, bm.families.Poisson()).fit(poisson_data, random_state=0, tol=1e-12)


@pytest.fixture(scope="module")
def nb_em(nb_data):
    return bm.Mixture(2, bm.families.NegativeBinomial()).fit(nb_data, random_state=0, tol=1e-12)


@pytest.fixture(scope="module")
def named_fit():
    """Poisson K = 2 on a DataFrame with columns art and ment, well separated."""
    rng = np.random.default_rng(5)
    z = rng.random(600) < 0.3
    rates = np.where(z[:, None], [8.0, 2.0], [1.0, 12.0])
    X = pd.DataFrame(rng.poisson(rates).astype(float), columns=["art", "ment"])
    return X, bm.Mixture(2, bm.families.Poisson()).fit(X, random_state=0)


# -- log densities and priors ----------------------------------------------------------------
def test_poisson_log_density_matches_scipy():
    rng = np.random.default_rng(0)
    X = rng.poisson(4.0, (50, 3)).astype(float)
    rates = np.array([[0.5, 3.0, 10.0], [4.0, 4.0, 4.0]])
    got = bm.families.Poisson().log_density(X, {"rates": rates, "weights": np.full(2, 0.5)})
    np.testing.assert_allclose(got, poisson_logpmf(X, rates), rtol=1e-12, atol=1e-10)


def test_negative_binomial_log_density_matches_scipy():
    rng = np.random.default_rng(1)
    X = rng.negative_binomial(2.0, 0.2, (50, 3)).astype(float)
    means = np.array([[0.5, 3.0, 10.0], [8.0, 1.0, 30.0]])
    dispersions = np.array([[0.3, 2.0, 50.0], [1.0, 1e4, 5.0]])
    params = {"means": means, "dispersions": dispersions, "weights": np.full(2, 0.5)}
    got = bm.families.NegativeBinomial().log_density(X, params)
    np.testing.assert_allclose(got, nb_logpmf(X, means, dispersions), rtol=1e-10, atol=1e-8)


def test_poisson_log_prior_matches_scipy_gamma():
    family = bm.families.Poisson()
    X = np.array([[1.0, 4.0], [3.0, 8.0], [2.0, 0.0]])
    priors = family.resolve_priors({}, X, np.ones(3))
    np.testing.assert_allclose(priors["rate_shape"], [2.0, 2.0])
    np.testing.assert_allclose(priors["rate_mean"], [2.0, 4.0])
    rates = np.array([[0.7, 2.0], [3.5, 9.0]])
    shape, mean = priors["rate_shape"], priors["rate_mean"]
    expected = stats.gamma.logpdf(rates, a=shape, scale=mean / shape).sum()
    assert family.log_prior({"rates": rates}, priors) == pytest.approx(expected, rel=1e-12)


def test_negative_binomial_log_prior_matches_scipy_gamma_and_lognorm():
    family = bm.families.NegativeBinomial()
    X = np.array([[1.0], [5.0], [3.0]])
    given = {"mean_shape": 3.0, "dispersion_log_loc": 1.0, "dispersion_log_scale": 0.5}
    priors = family.resolve_priors(given, X, np.ones(3))
    np.testing.assert_allclose(priors["mean_mean"], [3.0])
    means, dispersions = np.array([[0.5], [6.0]]), np.array([[1.5], [40.0]])
    expected = (
        stats.gamma.logpdf(means, a=3.0, scale=3.0 / 3.0).sum()
        + stats.lognorm.logpdf(dispersions, s=0.5, scale=np.exp(1.0)).sum()
    )
    got = family.log_prior({"means": means, "dispersions": dispersions}, priors)
    assert got == pytest.approx(expected, rel=1e-12)


@pytest.mark.parametrize(
    "family", [bm.families.Poisson(), bm.families.NegativeBinomial()], ids=lambda f: f.name
)
def test_mixture_log_prior_adds_the_dirichlet(family):
    rng = np.random.default_rng(2)
    X = rng.poisson(3.0, (40, 2)).astype(float)
    model = bm.Mixture(3, family, priors={"weight_concentration": [2.0, 3.0, 5.0]})
    priors = model.resolve_priors(X)
    params = {name: rng.uniform(0.5, 5.0, (3, 2)) for name in family.parameters}
    params["weights"] = np.array([0.2, 0.3, 0.5])
    expected = stats.dirichlet.logpdf(params["weights"], [2.0, 3.0, 5.0]) + family.log_prior(
        params, priors
    )
    assert model.log_prior(params, priors) == pytest.approx(expected, rel=1e-12)


# -- EM reaches the maximum likelihood -------------------------------------------------------
def test_poisson_em_reaches_the_optimisers_maximum(poisson_data, poisson_em):
    X = poisson_data

    def negloglik(theta):
        weights, (rates,) = unpack(theta, 2, 2, 1)
        return -mixture_loglik(X, weights, poisson_logpmf(X, rates))

    rng = np.random.default_rng(0)
    starts = [np.concatenate([[0.0], np.log(rng.uniform(0.5, 12.0, 4))]) for _ in range(10)]
    best = best_optimum(negloglik, starts)
    weights, (rates,) = unpack(best.x, 2, 2, 1)
    order = np.argsort(rates[:, 0])
    assert poisson_em.log_likelihood >= -best.fun - 1e-6, (poisson_em.log_likelihood, -best.fun)
    assert poisson_em.log_likelihood == pytest.approx(-best.fun, abs=1e-5)
    np.testing.assert_allclose(poisson_em.weights, weights[order], rtol=1e-3)
    np.testing.assert_allclose(poisson_em.parameters["rates"], rates[order], rtol=1e-3)
    # the reported log-likelihood is the scipy mixture log-likelihood at EM's estimate
    reference = mixture_loglik(
        X, poisson_em.weights, poisson_logpmf(X, poisson_em.parameters["rates"])
    )
    assert poisson_em.log_likelihood == pytest.approx(reference, rel=1e-12)


def test_negative_binomial_em_reaches_the_optimisers_maximum(nb_data, nb_em):
    X = nb_data

    def negloglik(theta):
        weights, (means, dispersions) = unpack(theta, 2, 1, 2)
        return -mixture_loglik(X, weights, nb_logpmf(X, means, dispersions))

    rng = np.random.default_rng(1)
    starts = [
        np.concatenate([[0.0], np.log(rng.uniform(0.5, 30.0, 2)), np.log(rng.uniform(0.3, 20, 2))])
        for _ in range(10)
    ]
    best = best_optimum(negloglik, starts)
    weights, (means, dispersions) = unpack(best.x, 2, 1, 2)
    order = np.argsort(means[:, 0])
    params = nb_em.parameters
    assert (params["dispersions"] < 1e5).all(), params  # overdispersed, not at the bound
    assert nb_em.log_likelihood >= -best.fun - 1e-6, (nb_em.log_likelihood, -best.fun)
    assert nb_em.log_likelihood == pytest.approx(-best.fun, abs=1e-5)
    np.testing.assert_allclose(nb_em.weights, weights[order], rtol=1e-3)
    np.testing.assert_allclose(params["means"], means[order], rtol=1e-3)
    np.testing.assert_allclose(params["dispersions"], dispersions[order], rtol=1e-2)
    reference = mixture_loglik(
        X, nb_em.weights, nb_logpmf(X, params["means"], params["dispersions"])
    )
    assert nb_em.log_likelihood == pytest.approx(reference, rel=1e-12)


# -- MAP ---------------------------------------------------------------------------------------
def test_poisson_map_single_component_is_the_gamma_posterior_mode():
    rng = np.random.default_rng(3)
    X = rng.poisson(3.0, (80, 2)).astype(float)
    a = 2.5
    model = bm.Mixture(1, bm.families.Poisson(), priors={"rate_shape": a})
    em = model.fit(X, method="map", random_state=0)
    m = X.mean(axis=0)  # the default prior mean
    expected = (a - 1.0 + X.sum(axis=0)) / (a / m + X.shape[0])
    np.testing.assert_allclose(em.parameters["rates"][0], expected, rtol=1e-10)
    np.testing.assert_allclose(em.weights, [1.0])


def test_poisson_map_two_components_reaches_the_optimisers_maximum(poisson_data):
    X = poisson_data
    model = bm.Mixture(2, bm.families.Poisson())
    em = model.fit(X, method="map", random_state=0, tol=1e-12)
    priors = model.resolve_priors(X)
    shape, mean = priors["rate_shape"], priors["rate_mean"]

    def neglogpost(theta):
        weights, (rates,) = unpack(theta, 2, 2, 1)
        log_prior = stats.dirichlet.logpdf(weights, priors["weight_concentration"])
        log_prior += stats.gamma.logpdf(rates, a=shape, scale=mean / shape).sum()
        return -mixture_loglik(X, weights, poisson_logpmf(X, rates)) - log_prior

    rng = np.random.default_rng(4)
    starts = [np.concatenate([[0.0], np.log(rng.uniform(0.5, 12.0, 4))]) for _ in range(6)]
    best = best_optimum(neglogpost, starts)
    objective = em.log_likelihood + model.log_prior(em.params, priors)
    assert objective >= -best.fun - 1e-6, (objective, -best.fun)
    assert em.log_posterior_trace[-1] == pytest.approx(objective, rel=1e-12)
    weights, (rates,) = unpack(best.x, 2, 2, 1)
    order = np.argsort(rates[:, 0])
    np.testing.assert_allclose(em.parameters["rates"], rates[order], rtol=1e-3)


def test_negative_binomial_map_single_component_matches_the_optimiser(nb_data):
    X = nb_data
    model = bm.Mixture(1, bm.families.NegativeBinomial())
    em = model.fit(X, method="map", random_state=0, tol=1e-12)
    priors = model.resolve_priors(X)

    def neglogpost(theta):
        mu, alpha = np.exp(theta)
        log_prior = stats.gamma.logpdf(
            mu, a=priors["mean_shape"][0], scale=priors["mean_mean"][0] / priors["mean_shape"][0]
        ) + stats.lognorm.logpdf(
            alpha,
            s=priors["dispersion_log_scale"][0],
            scale=np.exp(priors["dispersion_log_loc"][0]),
        )
        return -nb_logpmf(X, np.array([[mu]]), np.array([[alpha]])).sum() - log_prior

    best = best_optimum(neglogpost, [np.log([X.mean(), a]) for a in (0.1, 1.0, 10.0)])
    np.testing.assert_allclose(em.parameters["means"][0, 0], np.exp(best.x[0]), rtol=1e-5)
    np.testing.assert_allclose(em.parameters["dispersions"][0, 0], np.exp(best.x[1]), rtol=1e-4)
    objective = em.log_likelihood + model.log_prior(em.params, priors)
    assert objective >= -best.fun - 1e-6


# -- parameter recovery ---------------------------------------------------------------------
def test_poisson_recovers_three_separated_components():
    rng = np.random.default_rng(6)
    weights = np.array([0.5, 0.3, 0.2])
    rates = np.array([[1.0, 8.0, 3.0], [6.0, 1.0, 12.0], [15.0, 5.0, 1.0]])
    z = rng.choice(3, size=3000, p=weights)
    X = rng.poisson(rates[z]).astype(float)
    em = bm.Mixture(3, bm.families.Poisson()).fit(X, random_state=0, order_by=0)

    def negloglik(theta):
        w, (r,) = unpack(theta, 3, 3, 1)
        return -mixture_loglik(X, w, poisson_logpmf(X, r))

    estimate = em.parameters
    log_w = np.log(estimate["weights"])
    theta = np.concatenate([log_w[1:] - log_w[0], np.log(estimate["rates"]).ravel()])
    se = standard_errors(negloglik, theta)
    truth = np.concatenate([np.log(weights[1:] / weights[0]), np.log(rates).ravel()])
    z_scores = (theta - truth) / se
    assert np.abs(z_scores).max() < 4.0, z_scores


def test_negative_binomial_recovers_dispersions_two_and_five():
    rng = np.random.default_rng(7)
    weights, mu, alpha = np.array([0.6, 0.4]), np.array([3.0, 30.0]), np.array([2.0, 5.0])
    z = rng.choice(2, size=3000, p=weights)
    X = rng.negative_binomial(alpha[z], alpha[z] / (alpha[z] + mu[z])).astype(float)[:, None]
    em = bm.Mixture(2, bm.families.NegativeBinomial()).fit(X, random_state=0)

    def negloglik(theta):
        w, (m, a) = unpack(theta, 2, 1, 2)
        return -mixture_loglik(X, w, nb_logpmf(X, m, a))

    estimate = em.parameters
    theta = np.concatenate(
        [
            [np.log(estimate["weights"][1] / estimate["weights"][0])],
            np.log(estimate["means"]).ravel(),
            np.log(estimate["dispersions"]).ravel(),
        ]
    )
    se = standard_errors(negloglik, theta)
    truth = np.concatenate([[np.log(0.4 / 0.6)], np.log(mu), np.log(alpha)])
    z_scores = (theta - truth) / se
    assert np.abs(z_scores).max() < 4.0, z_scores


# -- flexmix on bioChemists --------------------------------------------------------------------
@pytest.fixture(scope="module")
def articles():
    return load_biochemists()[["art"]]


@pytest.fixture(scope="module")
def flexmix():
    return json.loads(FLEXMIX_JSON.read_text())


def flexmix_best(flexmix, n_components):
    """flexmix's best log-likelihood for K components over both stored settings, and
    the fits."""
    fits = [
        next(fit for fit in fits if fit["K"] == n_components) for fits in flexmix["fits"].values()
    ]
    return max(fit["log_likelihood"] for fit in fits), fits


# flexmix 2.3.18 (R 4.2.2), stepFlexmix with 20 starts, best of its default control and of
# minprior = 0 with tolerance 1e-9: K = 1 -1742.573475, K = 2 -1624.722350 (minprior0;
# the default control stops at -1624.732291), K = 3 -1604.752850 (minprior0; the default
# drops to 2 components), K = 4 -1603.865283 (minprior0, one component at rate 1.8e-4;
# the default drops to 2). bayesmix with tol=1e-10, max_iter=5000, n_init=10,
# random_state=0 (Aitken-projected tol): -1742.573475, -1624.722340, -1604.752829,
# -1603.865144 (all at or above flexmix).
@pytest.mark.parametrize("n_components", [1, 2, 3, 4])
def test_poisson_em_reaches_flexmix_on_biochemists(
    articles, flexmix, n_components, record_property
):
    reference, fits = flexmix_best(flexmix, n_components)
    em = bm.Mixture(n_components, bm.families.Poisson()).fit(
        articles, random_state=0, tol=1e-10, max_iter=5000
    )
    record_property("flexmix_log_likelihood", reference)
    record_property("bayesmix_log_likelihood", em.log_likelihood)
    assert em.log_likelihood >= reference - 1e-3, (
        f"K={n_components}: bayesmix {em.log_likelihood:.6f} < flexmix {reference:.6f} "
        f"(flexmix kept {[fit['n_components_kept'] for fit in fits]} components)"
    )
    if n_components == 1:
        assert em.parameters["rates"][0, 0] == pytest.approx(fits[0]["rates"][0], rel=1e-8)
        assert em.log_likelihood == pytest.approx(reference, abs=1e-8)
    if n_components == 3:  # a well-identified optimum: the same components as flexmix's
        minprior0 = next(fit for fit in flexmix["fits"]["minprior0"] if fit["K"] == 3)
        np.testing.assert_allclose(em.weights, minprior0["weights"], rtol=0.02)
        np.testing.assert_allclose(em.means[:, 0], minprior0["rates"], rtol=0.01)


def test_poisson_em_with_default_settings_reaches_flexmix_on_biochemists(articles, flexmix):
    """The defaults (10 starts, Aitken-projected tol 1e-8, MAP-step starts that keep a
    cluster of zeros off a zero rate) reach flexmix's best K=3 optimum."""
    reference, _ = flexmix_best(flexmix, 3)
    em = bm.Mixture(3, bm.families.Poisson()).fit(articles, random_state=0)
    assert em.log_likelihood >= reference - 1e-3, (em.log_likelihood, reference)


# -- information criteria ----------------------------------------------------------------------
def test_bic_counts_the_free_parameters(poisson_data, poisson_em, nb_data, nb_em):
    n, d = poisson_data.shape
    expected = -2 * poisson_em.log_likelihood + ((2 - 1) + 2 * d) * np.log(n)
    assert poisson_em.bic() == pytest.approx(expected, rel=1e-12)
    assert poisson_em.bic(poisson_data) == pytest.approx(expected, rel=1e-10)
    n, d = nb_data.shape
    expected = -2 * nb_em.log_likelihood + ((2 - 1) + 2 * 2 * d) * np.log(n)
    assert nb_em.bic() == pytest.approx(expected, rel=1e-12)


# -- validation ----------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("values", "error", "pattern"),
    [
        ([[1.0], [1.5]], ValueError, r"X must hold non-negative integer counts.*'x0'.*1\.5"),
        ([[1.0], [-2.0]], ValueError, r"X must hold non-negative integer counts.*'x0'.*-2"),
        ([["a"], ["b"]], TypeError, r"X must be numeric"),
        ([[1.0], [np.nan]], ValueError, r"X contains 1 NaN"),
    ],
    ids=["fraction", "negative", "strings", "nan"],
)
@pytest.mark.parametrize(
    "family", [bm.families.Poisson(), bm.families.NegativeBinomial()], ids=lambda f: f.name
)
def test_rejects_data_outside_the_support(family, values, error, pattern):
    with pytest.raises(error, match=pattern) as info:
        bm.Mixture(1, family).fit(values)
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("values", "error", "pattern"),
    [
        ([[1.5]], ValueError, r"X must hold non-negative integer counts.*'x0'"),
        ([[-1.0]], ValueError, r"X must hold non-negative integer counts"),
        (np.array([["a"]]), TypeError, r"X must be numeric"),
        ([[np.nan]], ValueError, r"X contains 1 NaN"),
    ],
    ids=["fraction", "negative", "strings", "nan"],
)
def test_rejects_data_outside_the_support_at_predict_time(nb_em, values, error, pattern):
    for method in (nb_em.predict_proba, nb_em.score_samples, nb_em.predict):
        with pytest.raises(error, match=pattern) as info:
            method(values)
        assert "\n" not in str(info.value)


def test_rejects_unknown_prior_names():
    with pytest.raises(ValueError, match=r"unknown names \['rate_shap'\].*valid names"):
        bm.Mixture(2, bm.families.Poisson(), priors={"rate_shap": 2.0})
    with pytest.raises(ValueError, match=r"unknown names \['rate_mean'\]"):
        bm.Mixture(2, bm.families.NegativeBinomial(), priors={"rate_mean": 2.0})


def test_rejects_bad_prior_values(poisson_data):
    model = bm.Mixture(2, bm.families.Poisson(), priors={"rate_shape": -1.0})
    with pytest.raises(ValueError, match=r"priors\['rate_shape'\] must be finite and > 0"):
        model.fit(poisson_data)


def test_rejects_an_unknown_method_listing_the_valid_ones(poisson_data):
    with pytest.raises(ValueError, match="method must be one of") as info:
        bm.Mixture(2, bm.families.Poisson()).fit(poisson_data, method="gibbs-ish")
    message = str(info.value)
    assert "'gibbs-ish'" in message and "\n" not in message
    assert "'em'" in message and "'map'" in message


def test_rejects_a_family_given_by_name():
    with pytest.raises(TypeError, match="family must be a component family"):
        bm.Mixture(2, "poisson")


# -- the result interface ----------------------------------------------------------------------
def test_predict_proba_predict_and_score_samples(poisson_data, poisson_em):
    X = poisson_data
    proba = poisson_em.predict_proba(X)
    assert proba.shape == (200, 2)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, rtol=1e-12)
    labels = poisson_em.predict(X)
    assert labels.shape == (200,)
    np.testing.assert_array_equal(labels, proba.argmax(axis=1))
    log_joint = np.log(poisson_em.weights) + poisson_logpmf(X, poisson_em.parameters["rates"])
    np.testing.assert_allclose(poisson_em.score_samples(X), logsumexp(log_joint, axis=1))
    np.testing.assert_allclose(proba, np.exp(log_joint - logsumexp(log_joint, axis=1)[:, None]))


def test_negative_binomial_score_samples_matches_scipy(nb_data, nb_em):
    params = nb_em.parameters
    log_joint = np.log(params["weights"]) + nb_logpmf(
        nb_data, params["means"], params["dispersions"]
    )
    np.testing.assert_allclose(nb_em.score_samples(nb_data), logsumexp(log_joint, axis=1))


@pytest.mark.parametrize("which", ["poisson", "negative_binomial"])
def test_sample_draws_counts_with_the_weights(which, poisson_em, nb_em):
    em = poisson_em if which == "poisson" else nb_em
    X, z = em.sample(4000, random_state=0)
    assert X.shape == (4000, em.n_features) and X.dtype == np.float64
    assert z.shape == (4000,)
    np.testing.assert_array_equal(X, np.round(X))
    assert (X >= 0).all()
    np.testing.assert_allclose(np.bincount(z, minlength=2) / 4000, em.weights, atol=0.03)
    for k in range(2):
        np.testing.assert_allclose(X[z == k].mean(axis=0), em.means[k], rtol=0.1)
    X2, z2 = em.sample(4000, random_state=0)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(z, z2)


def test_to_datatree_groups_and_dims(named_fit):
    X, em = named_fit
    tree = em.to_datatree(X)
    posterior = tree["posterior"].to_dataset()
    assert posterior["weights"].dims == ("chain", "draw", "component")
    assert posterior["rates"].dims == ("chain", "draw", "component", "feature")
    assert list(posterior["feature"].values) == ["art", "ment"]
    np.testing.assert_allclose(posterior["rates"].values[0, 0], em.parameters["rates"])
    assert posterior.attrs["family"] == "poisson"
    log_lik = tree["log_likelihood"].to_dataset()["X"]
    assert log_lik.dims == ("chain", "draw", "obs")
    assert log_lik.shape == (1, 1, 600)
    assert float(log_lik.sum()) == pytest.approx(em.log_likelihood, rel=1e-12)
    observed = tree["observed_data"].to_dataset()["X"]
    assert observed.dims == ("obs", "feature")


def test_summary_labels(named_fit):
    _, em = named_fit
    table = em.summary()
    assert list(table.index) == [
        "weights[0]",
        "weights[1]",
        "rates[0, art]",
        "rates[0, ment]",
        "rates[1, art]",
        "rates[1, ment]",
    ]
    assert table.loc["rates[1, ment]", "estimate"] == pytest.approx(em.parameters["rates"][1, 1])
    nb = bm.Mixture(1, bm.families.NegativeBinomial()).fit(
        pd.DataFrame({"art": [0.0, 1.0, 3.0, 7.0, 2.0]}), random_state=0
    )
    assert list(nb.summary().index) == ["weights[0]", "means[0, art]", "dispersions[0, art]"]


@pytest.mark.parametrize(
    "family", [bm.families.Poisson(), bm.families.NegativeBinomial()], ids=lambda f: f.name
)
def test_integer_sample_weight_equals_repeated_rows(family, poisson_data):
    X = poisson_data[:80]
    counts = np.random.default_rng(8).integers(1, 4, size=80)
    model = bm.Mixture(2, family)
    weighted = model.fit(X, sample_weight=counts, random_state=0, tol=1e-12)
    repeated = model.fit(np.repeat(X, counts, axis=0), random_state=0, tol=1e-12)
    assert weighted.n_obs == counts.sum()
    assert weighted.log_likelihood == pytest.approx(repeated.log_likelihood, rel=1e-8)
    for name, value in weighted.parameters.items():
        np.testing.assert_allclose(value, repeated.parameters[name], rtol=1e-4, err_msg=name)
    assert weighted.bic() == pytest.approx(repeated.bic(), rel=1e-8)


def test_components_are_numbered_by_the_order_feature(named_fit):
    X, em = named_fit
    # rates (1, 12) and (8, 2): the order feature is numbered ascending
    feature = em.feature_names.index(em.settings["order_feature"])
    assert np.all(np.diff(em.means[:, feature]) > 0)
    by_art = bm.Mixture(2, bm.families.Poisson()).fit(X, random_state=0, order_by="art")
    assert by_art.settings["order_feature"] == "art"
    assert by_art.means[0, 0] < by_art.means[1, 0]
    assert by_art.means[0, 1] > by_art.means[1, 1]
    by_ment = bm.Mixture(2, bm.families.Poisson()).fit(X, random_state=0, order_by="ment")
    assert by_ment.settings["order_feature"] == "ment"
    assert by_ment.means[0, 1] < by_ment.means[1, 1]
    np.testing.assert_allclose(by_ment.weights, by_art.weights[::-1])
    np.testing.assert_allclose(by_ment.parameters["rates"], by_art.parameters["rates"][::-1])
    by_index = bm.Mixture(2, bm.families.Poisson()).fit(X, random_state=0, order_by=1)
    np.testing.assert_allclose(by_index.parameters["rates"], by_ment.parameters["rates"])


# -- the Gaussian family is the Gaussian mixture --------------------------------------------
def test_gaussian_family_declares_a_gaussian_mixture():
    model = bm.Mixture(3, bm.families.Gaussian("diag"))
    assert isinstance(model, bm.GaussianMixture)
    assert model == bm.GaussianMixture(3, "diag")
    assert model.covariance_type == "diag" and model.n_components == 3


# -- missing values (count families) ------------------------------------------------------------
@pytest.fixture(scope="module")
def counts_with_gaps():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.poisson([1.0, 4.0], (120, 2)), rng.poisson([7.0, 2.0], (80, 2))])
    X = X.astype(float)
    X[rng.random(X.shape) < 0.2] = np.nan
    return X


def _observed_log_likelihood(X, weights, rates):
    """The observed-data log-likelihood written independently: missing entries drop out."""
    observed = ~np.isnan(X)
    per_component = [
        np.where(observed, stats.poisson.logpmf(np.nan_to_num(X), rate), 0.0).sum(axis=1)
        for rate in rates
    ]
    return float(logsumexp(np.log(weights) + np.stack(per_component, axis=1), axis=1).sum())


def test_poisson_em_marginalises_missing_entries(counts_with_gaps, tmp_path):
    X = counts_with_gaps
    em = bm.Mixture(2, bm.families.Poisson()).fit(X, missing="marginalize", random_state=0)
    expected = _observed_log_likelihood(X, em.weights, em.parameters["rates"])
    assert em.log_likelihood == pytest.approx(expected, abs=1e-9)

    def negative(theta):
        weight = 1.0 / (1.0 + np.exp(-theta[0]))
        rates = np.exp(theta[1:]).reshape(2, 2)
        return -_observed_log_likelihood(X, [weight, 1.0 - weight], rates)

    rng = np.random.default_rng(1)
    best = min(
        (
            optimize.minimize(
                negative,
                np.r_[0.0, np.log(rng.uniform(0.5, 8.0, 4))],
                method="Nelder-Mead",
                options={"maxiter": 20000, "xatol": 1e-9, "fatol": 1e-10},
            )
            for _ in range(6)
        ),
        key=lambda run: run.fun,
    )
    assert em.log_likelihood >= -best.fun - 1e-5
    proba = em.predict_proba(X)  # NaN accepted at prediction time too
    np.testing.assert_allclose(proba.sum(axis=1), 1.0)
    path = tmp_path / "gaps.nc"
    em.save(path)
    np.testing.assert_array_equal(bm.load(path).predict_proba(X), proba)


def test_negative_binomial_em_with_missing_entries_is_finite(counts_with_gaps):
    em = bm.Mixture(2, bm.families.NegativeBinomial()).fit(
        counts_with_gaps, missing="marginalize", random_state=0
    )
    assert all(np.isfinite(v).all() for v in em.parameters.values())
    complete = bm.Mixture(2, bm.families.NegativeBinomial()).fit(
        np.nan_to_num(counts_with_gaps[~np.isnan(counts_with_gaps).any(axis=1)]), random_state=0
    )
    np.testing.assert_allclose(em.means, complete.means, rtol=0.35)


def test_missing_values_are_refused_clearly_where_not_supported(counts_with_gaps):
    X = counts_with_gaps
    with pytest.raises(ValueError, match="missing='marginalize'"):
        bm.Mixture(2, bm.families.Poisson()).fit(X)  # the error suggests marginalising
    with pytest.raises(ValueError, match="missing must be 'error' or 'marginalize'"):
        bm.Mixture(2, bm.families.Poisson()).fit(X, method="nuts", missing="drop")
    with pytest.raises(ValueError, match="no observed value"):
        gaps = X.copy()
        gaps[:, 1] = np.nan
        bm.Mixture(2, bm.families.Poisson()).fit(gaps, missing="marginalize")
    with pytest.warns(bm.MissingDataWarning, match="no observed entry"):
        gaps = X.copy()
        gaps[0] = np.nan
        bm.Mixture(2, bm.families.Poisson()).fit(gaps, missing="marginalize", random_state=0)


# -- the fused E-step pass -------------------------------------------------------------------
def _unfused_expectation(family, X, weights, log_weights, params, prepared, reference_logpmf):
    """Log-likelihood by scipy, responsibilities from it, statistics by the family's
    ``statistics`` (what EM computed before the fused pass)."""
    log_joint = log_weights + reference_logpmf
    log_norm = logsumexp(log_joint, axis=1)
    resp = np.exp(log_joint - log_norm[:, None]) * weights[:, None]
    stats_ = family.statistics(X, resp, params, prepared)
    return float(weights @ log_norm), resp.sum(axis=0), stats_


@pytest.mark.parametrize("which", ["poisson", "negative_binomial"])
@pytest.mark.parametrize("with_gaps", [False, True])
def test_fused_expectation_equals_scipy_and_the_statistics(which, with_gaps):
    """The count families' one-pass E-step (kernels.count_pass / table_pass, several
    chunks) gives the scipy log-likelihood and the same statistics as ``statistics`` of
    the scipy responsibilities, to 1e-10, with sample weights and missing entries."""
    rng = np.random.default_rng(3)
    X = rng.negative_binomial(4.0, 4.0 / (4.0 + rng.uniform(1, 20, (1, 5))), (3000, 5))
    X = X.astype(float)
    if with_gaps:
        X[rng.random(X.shape) < 0.1] = np.nan
    weights = rng.integers(1, 4, len(X)).astype(float)
    family = bm.families.FAMILIES[which]()
    prepared = family.prepare(X)
    log_weights = np.log([0.2, 0.3, 0.5])
    means = rng.uniform(1.0, 20.0, (3, 5))
    if which == "poisson":
        params = {"rates": means}
        logpmf = stats.poisson.logpmf(np.nan_to_num(X)[:, None, :], means[None])
    else:
        alpha = rng.uniform(0.5, 30.0, (3, 5))
        params = {"means": means, "dispersions": alpha}
        logpmf = stats.nbinom.logpmf(
            np.nan_to_num(X)[:, None, :], alpha[None], (alpha / (alpha + means))[None]
        )
    logpmf = np.where(np.isnan(X)[:, None, :], 0.0, logpmf).sum(axis=2)
    fused = family.expectation(X, weights, log_weights, params, prepared)
    assert fused is not None
    expected = _unfused_expectation(family, X, weights, log_weights, params, prepared, logpmf)
    np.testing.assert_allclose(fused[0], expected[0], rtol=1e-12)
    np.testing.assert_allclose(fused[1], expected[1], rtol=1e-10)
    assert fused[2].keys() == expected[2].keys()
    for name in expected[2]:
        np.testing.assert_allclose(fused[2][name], expected[2][name], rtol=1e-10, atol=1e-9)


def test_table_pass_equals_the_count_pass_it_replaced():
    """The negative binomial's pass (kernels.table_pass: every per-entry term, x log(mu /
    (mu + a)) included, in one table; sum r x from the histogram) against the pass it
    replaced (kernels.count_pass: x log(mu / (mu + a)) by a product, the rest from the
    table), with zero and integer sample weights, missing entries, a component of zero
    weight, and 1, 3 or 64 chunks: the same log-likelihood, mass and statistics to
    1e-12."""
    from scipy.special import gammaln

    from bayesmix.families.kernels import count_pass, table_pass

    rng = np.random.default_rng(11)
    X = rng.negative_binomial(3.0, 3.0 / (3.0 + rng.uniform(1, 15, (1, 4))), (40_000, 4))
    X = X.astype(float)
    X[rng.random(X.shape) < 0.05] = np.nan
    weights = rng.integers(0, 3, len(X)).astype(float)
    family = bm.families.NegativeBinomial()
    prepared = family.prepare(X)
    values = prepared.values
    mu, alpha = rng.uniform(1, 15, (3, 4)), rng.uniform(0.5, 20, (3, 4))
    log_weights = np.log([0.0, 0.4, 0.6])
    log_total = np.log(alpha + mu)
    table = np.zeros(alpha.shape + (values.size + 1,))
    table[..., :-1] = (
        gammaln(values + alpha[..., None])
        - gammaln(alpha)[..., None]
        + (alpha * (np.log(alpha) - log_total))[..., None]
    )
    old_lik, old_mass, old_sum_x, old_histogram = count_pass(
        prepared.data.values,
        prepared.bins.astype(np.intp),
        weights,
        log_weights,
        np.log(mu) - log_total,
        table,
        prepared.data.row_constant,
    )
    table[..., :-1] += values * (np.log(mu) - log_total)[..., None]
    for chunks in (1, 3, 64):
        lik, mass, histogram = table_pass(
            prepared.bins, weights, log_weights, table, prepared.data.row_constant, chunks
        )
        np.testing.assert_allclose(lik, old_lik, rtol=1e-12)
        np.testing.assert_allclose(mass, old_mass, rtol=1e-12)
        assert mass[0] == 0.0
        np.testing.assert_allclose(histogram, old_histogram, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(histogram[..., :-1] @ values, old_sum_x, rtol=1e-12)


def test_negative_binomial_without_a_small_value_table_takes_the_unfused_path():
    """More distinct counts than rows: no fused pass (None), EM still fits."""
    X = np.arange(40.0).reshape(20, 2) * 7
    family = bm.families.NegativeBinomial()
    params = {"means": np.full((2, 2), 50.0), "dispersions": np.full((2, 2), 5.0)}
    assert family.expectation(X, np.ones(20), np.log([0.5, 0.5]), params, family.prepare(X)) is None
    fit = bm.Mixture(2, family).fit(X, n_init=1, random_state=0)
    assert np.isfinite(fit.log_likelihood)


def test_sample_weight_with_unobserved_rows_drops_their_weights(poisson_data):
    """missing='marginalize' leaves rows with no observed entry out of the fit, and their
    weights with them: the fit equals the one without those rows."""
    X = np.asarray(poisson_data[:60], dtype=float).copy()
    X[[3, 20], :] = np.nan
    weights = np.random.default_rng(9).integers(1, 4, size=60).astype(float)
    model = bm.Mixture(2, bm.families.Poisson())
    with pytest.warns(bm.MissingDataWarning):
        dropped = model.fit(X, missing="marginalize", sample_weight=weights, random_state=0)
    keep = ~np.isnan(X).all(axis=1)
    direct = model.fit(X[keep], sample_weight=weights[keep], random_state=0)
    assert dropped.log_likelihood == pytest.approx(direct.log_likelihood, rel=1e-10)
