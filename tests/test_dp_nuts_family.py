"""Stick-breaking weight priors (Dirichlet and Pitman-Yor processes) for ``Mixture(K,
family)`` by NUTS and ADVI.

References are independent of the code under test: PyMC's own log density and automatic
gradient of the same model (``FAST_COMPILE``: no slow compile), the sticks' closed-form
prior means, and a blocked Gibbs sampler of the same truncated Poisson mixture
(Ishwaran & James 2001: conjugate updates of the allocations, sticks and rates, in numpy:
``benchmarks.dp_nuts_family.blocked_gibbs_clusters``).
"""

from __future__ import annotations

import math
import time
import warnings

import numpy as np
import pytest
from conftest import call_nutpie_callbacks, points_around, pymc_point
from scipy.special import expit, log_expit

import bayesmix as bm
from bayesmix.inference.bayes.family import build_family_pymc, family_weight_prior
from benchmarks.dp_nuts_family import blocked_gibbs_clusters, poisson_data

K_FIT = 5  # the truncation of the NUTS fit
REFUSAL_SECONDS = 5.0


def _counts(n: int = 120, seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    z = rng.integers(0, 2, n)
    return rng.poisson(np.array([[1.5, 6.0], [9.0, 2.0]])[z]).astype(float)


def _codes(n: int = 90, seed: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.integers(0, c, n) for c in (3, 2, 4)]).astype(float)


def _problem(family: str, weight_prior: str, discount: float):
    """A family mixture with a stick-breaking prior: ``(model, X, priors, density,
    pm_model)``, the priors carrying the sticks as the fit passes them."""
    if family == "poisson":
        X, model = _counts(), bm.Mixture(4, bm.families.Poisson(), {"weight_concentration": 1.5})
    else:
        X = _codes()
        model = bm.Mixture(3, bm.families.Categorical().for_data(X))
    data = model.check_data(X)
    sticks, _ = family_weight_prior(model, weight_prior, discount)
    priors = {**model.resolve_priors(data), "weight_sticks": sticks}
    density = model.family.nutpie_density(X, priors, model.n_components)
    return model, X, priors, density, build_family_pymc(model, data, priors)


CASES = [("poisson", "pitman_yor", 0.3), ("categorical", "dirichlet_process", 0.0)]


@pytest.fixture(scope="module", params=CASES, ids=[c[0] for c in CASES])
def stick_problem(request):
    return _problem(*request.param)


def _broken_sticks(u: np.ndarray) -> np.ndarray:
    """Weights from stick logits, written out: ``w_k = v_k prod_{j<k} (1 - v_j)``."""
    v = expit(u)
    rest = np.concatenate(([1.0], np.cumprod(1.0 - v)))
    return np.concatenate((v, [1.0])) * rest


def test_density_and_gradient_equal_pymc(stick_problem):
    """The hand-written density under the sticks equals PyMC's graph of the same model
    (its first free variable the sticks on the log-odds scale), value and gradient, and
    expands to the broken sticks."""
    model, X, priors, density, pm_model = stick_problem
    K = model.n_components
    assert pm_model.free_RVs[0].name == "weights_sticks"
    logp = pm_model.compile_logp(mode="FAST_COMPILE")
    dlogp = pm_model.compile_dlogp(mode="FAST_COMPILE")
    em = model.fit(X, method="map", random_state=0)
    start = {"weights_sticks": np.full(K - 1, 0.4)}
    start.update(model.family.pymc_initial_values(em.parameters, em.priors))
    centre = density.flat_start(start)
    np.testing.assert_allclose(centre[: K - 1], math.log(0.4 / 0.6), rtol=1e-14)
    ours, theirs = [], []
    for theta in points_around(density, centre):
        grad = np.empty(density.n_dim)
        value = density.log_density(theta, grad)
        point = pymc_point(pm_model, theta)
        np.testing.assert_allclose(grad, dlogp(point), rtol=1e-9, atol=1e-9)
        ours.append(value)
        theirs.append(float(logp(point)))
        expanded = density.expand(theta)[:K]
        np.testing.assert_allclose(expanded, _broken_sticks(theta[: K - 1]), rtol=1e-12)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-6)
    np.testing.assert_allclose(np.diff(ours), np.diff(theirs), rtol=1e-10, atol=1e-9)


def test_stick_prior_is_the_beta_sticks_on_the_logit_scale():
    """Dirichlet-prior and stick-prior densities of the same Poisson mixture differ by
    exactly the weights' log priors: the sticks' ``Beta(1 - d, alpha + k d)`` densities
    times the logit Jacobian against the Dirichlet's (written out here)."""
    model, X, priors, density, _ = _problem("poisson", "pitman_yor", 0.3)
    flat = {name: value for name, value in priors.items() if name != "weight_sticks"}
    dirichlet = model.family.nutpie_density(X, flat, model.n_components)
    K, alpha, d = model.n_components, 1.5, 0.3
    rng = np.random.default_rng(2)
    u = rng.normal(size=K - 1)
    weights = _broken_sticks(u)
    y = np.log(weights[:-1]) - np.log(weights).mean()  # the same weights, simplex coords
    rates = rng.uniform(0.5, 8.0, size=(K, 2))
    grad = np.empty(density.n_dim)
    stick_value = density.log_density(np.concatenate([u, np.log(rates).ravel()]), grad)
    dirichlet_value = dirichlet.log_density(np.concatenate([y, np.log(rates).ravel()]), grad)
    k = np.arange(1, K)
    a, b = np.full(K - 1, 1.0 - d), alpha + k * d
    log_beta = (
        np.array([math.lgamma(x) for x in a])
        + np.array([math.lgamma(x) for x in b])
        - np.array([math.lgamma(x) for x in a + b])
    )
    sticks = np.sum(a * log_expit(u) + b * log_expit(-u) - log_beta)
    c = np.full(K, alpha)  # the declaration's Dirichlet
    dirichlet_prior = (
        math.log(K) + math.lgamma(c.sum()) - sum(math.lgamma(x) for x in c) + c @ np.log(weights)
    )
    assert stick_value - dirichlet_value == pytest.approx(sticks - dirichlet_prior, abs=1e-9)


def test_c_callbacks_read_the_sticks():
    """nutpie's callbacks (through the packed buffer) give what the Python entry points
    give under the sticks, the expansion included."""
    _, _, _, density, _ = _problem("poisson", "pitman_yor", 0.3)
    theta = np.random.default_rng(1).standard_normal(density.n_dim)
    want_grad = np.empty(density.n_dim)
    want = density.log_density(theta, want_grad)
    logp_code, value, grad, expand_code, out = call_nutpie_callbacks(density, theta)
    assert logp_code == 0 and value == want
    np.testing.assert_array_equal(grad, want_grad)
    assert expand_code == 0
    np.testing.assert_array_equal(out, density.expand(theta))
    K = density.n_components
    np.testing.assert_allclose(out[:K], _broken_sticks(theta[: K - 1]), rtol=1e-12)


@pytest.mark.parametrize("weight_prior, discount, alpha", [("pitman_yor", 0.25, 1.5)])
def test_prior_draws_match_the_sticks_prior_means(weight_prior, discount, alpha):
    """Prior draws of the weights of a product family's PyMC model (the route of
    families without a hand-written density) sum to one and average ``E[pi_k] =
    E[v_k] prod_{j<k} (1 - E[v_j])``, ``v_k ~ Beta(1 - d, alpha + k d)``, the remainder
    last."""
    import pymc as pm

    K, n_draws = 5, 4000
    family = bm.families.Independent({0: bm.families.Poisson(), 1: bm.families.Bernoulli()})
    model = bm.Mixture(K, family, {"weight_concentration": alpha})
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.poisson(3.0, 40), rng.integers(0, 2, 40)]).astype(float)
    data = model.check_data(X)
    sticks, settings = family_weight_prior(model, weight_prior, discount)
    assert settings == {
        "weight_prior": weight_prior,
        "weight_concentration": alpha,
        "discount": discount,
    }
    priors = {**model.resolve_priors(data), "weight_sticks": sticks}
    pm_model = build_family_pymc(model, data, priors)
    with warnings.catch_warnings():  # the likelihood Potential plays no part a priori
        warnings.filterwarnings("ignore", "The effect of Potentials", UserWarning)
        prior = pm.sample_prior_predictive(
            n_draws,
            model=pm_model,
            var_names=["weights"],
            random_seed=3,
            compile_kwargs={"mode": "FAST_COMPILE"},
        )
    weights = prior["prior"]["weights"].values.reshape(-1, K)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    k = np.arange(1, K)
    mean_stick = (1.0 - discount) / (1.0 - discount + alpha + k * discount)
    want = np.concatenate((mean_stick, [1.0])) * np.concatenate(
        ([1.0], np.cumprod(1.0 - mean_stick))
    )
    standard_error = weights.std(axis=0) / math.sqrt(n_draws)
    assert np.all(np.abs(weights.mean(axis=0) - want) < 4.0 * standard_error)


# -- a NUTS fit against a blocked Gibbs sampler of the same model ------------------------


@pytest.fixture(scope="module")
def dp_poisson():
    x = poisson_data()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return x, bm.Mixture(K_FIT, bm.families.Poisson()).fit(
            x,
            method="nuts",
            weight_prior="dirichlet_process",
            chains=2,
            draws=300,  # tune: the default 1000 (300 left 13-17 divergent transitions
            random_state=1,  # in one chain of two for 2 seeds of 3 at target_accept 0.9)
            progressbar=False,
        )


def test_dp_nuts_counts_clusters_as_blocked_gibbs(dp_poisson):
    """Poisson data of two clusters, truncation 5, the DP's default ``alpha = 1``: no
    divergent transition, the weights sum to one, and the posterior of the number of
    clusters equals that of a blocked Gibbs sampler of the same truncated model
    (``benchmarks/dp_nuts_family.py``; total variation < 0.12).

    That posterior is not concentrated on the two true clusters: the DP with
    ``alpha = 1`` expects ``sum_{i<300} 1 / (1 + i)`` = 6.3 clusters among 300 rows a
    priori, and extra Poisson components holding a few rows each cost little under the
    data-scaled Gamma(2) rate prior: Gibbs gives P(2, 3, 4, 5) = 0.01, 0.06, 0.23, 0.70
    (Miller & Harrison 2013 on DP mixtures' excess clusters)."""
    x, fit = dp_poisson
    assert int(fit.sample_stats["diverging"].sum()) == 0
    np.testing.assert_allclose(fit.posterior["weights"].values.sum(axis=-1), 1.0, atol=1e-12)
    assert fit.settings["weight_prior"] == "dirichlet_process"
    assert fit.settings["weight_concentration"] == 1.0
    assert fit.settings["target_accept"] == 0.95
    assert fit.settings["log_density"] == "bayesmix"
    np.testing.assert_array_equal(fit.priors["weight_sticks"], [[1.0] * 4, [1.0] * 4])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clusters = bm.n_clusters_posterior(fit, random_state=0)
    priors = bm.Mixture(K_FIT, bm.families.Poisson()).resolve_priors(
        bm.Mixture(K_FIT, bm.families.Poisson()).check_data(x)
    )
    shape = float(priors["rate_shape"][0])
    want = blocked_gibbs_clusters(x, K_FIT, 1.0, shape, shape / float(priors["rate_mean"][0]))
    assert 0.5 * np.abs(clusters.values - want).sum() < 0.12
    assert clusters.loc[1] == 0.0


def test_dp_fit_saves_and_reloads(dp_poisson, tmp_path):
    _, fit = dp_poisson
    path = tmp_path / "dp.nc"
    fit.save(path)
    back = bm.load(path)
    assert back.settings["weight_prior"] == "dirichlet_process"
    np.testing.assert_array_equal(back.priors["weight_sticks"], fit.priors["weight_sticks"])
    np.testing.assert_array_equal(back.posterior["weights"].values, fit.posterior["weights"].values)


def test_pitman_yor_advi_on_the_hand_written_density():
    """ADVI under the Pitman-Yor sticks runs on the family's density (no PyMC), its
    draws are weights on the simplex, and the settings record the prior."""
    x = poisson_data(120)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bm.Mixture(3, bm.families.Poisson()).fit(
            x,
            method="advi",
            weight_prior="pitman_yor",
            discount=0.4,
            n=3000,
            draws=200,
            random_state=0,
            progressbar=False,
        )
    assert fit.settings["log_density"] == "bayesmix"
    assert fit.settings["discount"] == 0.4
    np.testing.assert_allclose(fit.posterior["weights"].values.sum(axis=-1), 1.0, atol=1e-12)
    clusters = bm.n_clusters_posterior(fit, random_state=0)
    assert clusters.sum() == pytest.approx(1.0)


# -- refusals ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "method, options, error, match",
    [
        ("nuts", {"weight_prior": "dp"}, ValueError, "weight_prior"),
        ("advi", {"weight_prior": "pitman_yor", "discount": 1.0}, ValueError, "discount"),
        ("nuts", {"weight_prior": "dirichlet_process", "discount": 0.2}, ValueError, "discount"),
        ("fullrank_advi", {"weight_prior": "pitman_yor", "discount": "0.3"}, TypeError, "discount"),
        ("nuts", {"weight_prior": "dirichlet", "discount": 0.5}, ValueError, "discount"),
        ("em", {"weight_prior": "dirichlet_process"}, ValueError, "weight_prior"),
        ("map", {"discount": 0.0}, ValueError, "discount"),
    ],
)
def test_bad_weight_priors_are_refused_before_any_work(method, options, error, match):
    x = poisson_data(40)
    start = time.perf_counter()
    with pytest.raises(error, match=match):
        bm.Mixture(2, bm.families.Poisson()).fit(x, method=method, draws=5, **options)
    assert time.perf_counter() - start < REFUSAL_SECONDS


def test_asymmetric_concentration_is_refused_under_the_sticks():
    model = bm.Mixture(3, bm.families.Poisson(), {"weight_concentration": [1.0, 2.0, 3.0]})
    with pytest.raises(ValueError, match="weight_concentration"):
        model.fit(poisson_data(40), method="nuts", weight_prior="dirichlet_process")
