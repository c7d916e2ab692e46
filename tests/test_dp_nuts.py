"""Stick-breaking weight priors (Dirichlet and Pitman-Yor processes) for NUTS, ADVI and
closed-form VB.

References are independent of the code under test: scipy's Beta densities and numerical
integration, the closed-form prior moments of the sticks, Pitman's closed form for the
expected number of clusters, PyMC's own log density and gradient of the same model
(``FAST_COMPILE``: no slow compile), and scikit-learn-style VB fits.
"""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from scipy import integrate, stats
from scipy.special import betaln, expit, log_expit, logsumexp

import bayesmix as bm
from bayesmix.data import as_data
from bayesmix.families.gaussian import builder, logdensity
from bayesmix.inference.bayes.fit import weight_priors
from bayesmix.inference.vb_weights import (
    DP_CONCENTRATION,
    check_stick_prior,
    expected_log_weights,
    posterior_concentration,
    prior_mean_n_clusters,
    stick_prior_parameters,
    truncated_prior_mean_weights,
    truncated_stick_parameters,
    weights_kl,
)

# -- the prior -----------------------------------------------------------------------------


@pytest.mark.parametrize("alpha, discount", [(1.0, 0.0), (0.5, 0.3), (-0.2, 0.4)])
def test_stick_density_is_the_beta_sticks(alpha, discount):
    """The hand-written density of the stick logits is the sticks' Beta densities times
    the logit's Jacobian ``v (1 - v)``, and the weights are the broken sticks."""
    K = 4
    sticks = np.zeros((2, K))
    sticks[:, : K - 1] = truncated_stick_parameters(alpha, K, discount)
    rng = np.random.default_rng(1)
    for _ in range(5):
        u = 3.0 * rng.normal(size=K - 1)
        v = expit(u)
        want = sum(
            stats.beta.logpdf(v[k], sticks[0, k], sticks[1, k]) + math.log(v[k] * (1 - v[k]))
            for k in range(K - 1)
        )
        assert logdensity.stick_log_prior(u, sticks, K) == pytest.approx(want, rel=1e-10)
        weights = np.append(v, 1.0) * np.concatenate([[1.0], np.cumprod(1.0 - v)])
        np.testing.assert_allclose(np.exp(logdensity.stick_log_weights(u, K)), weights, rtol=1e-12)
    # far out on the logit scale the log density stays finite (no overflow)
    assert np.isfinite(logdensity.stick_log_prior(np.array([-800.0, 0.0, 800.0]), sticks, K))


@pytest.mark.parametrize("discount", [0.0, 0.3])
def test_stick_gradient_matches_finite_differences(discount):
    K = 5
    sticks = np.zeros((2, K))
    sticks[:, : K - 1] = truncated_stick_parameters(0.7, K, discount)
    counts = np.array([40.0, 0.5, 12.0, 0.0, 3.0])

    def value(u):
        return logdensity.stick_log_prior(u, sticks, K) + counts @ logdensity.stick_log_weights(
            u, K
        )

    rng = np.random.default_rng(2)
    for _ in range(3):
        u = 2.0 * rng.normal(size=K - 1)
        grad = np.zeros(K - 1)
        logdensity.stick_weights_gradient(u, sticks, counts, grad)
        step = 1e-6 * np.eye(K - 1)
        numeric = [(value(u + s) - value(u - s)) / 2e-6 for s in step]
        np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("alpha, discount", [(DP_CONCENTRATION, 0.0), (1.5, 0.25)])
def test_prior_draws_sum_to_one_and_match_the_prior_means(alpha, discount):
    """``pm.sample_prior_predictive`` of the PyMC model's weights; their mean is
    ``E[pi_k] = E[v_k] prod_{j<k} (1 - E[v_j])`` (the remainder last)."""
    import pymc as pm

    K, n_draws = 5, 4000
    with pm.Model(coords={"component": np.arange(K)}) as model:
        sticks = pm.Data("sticks", truncated_stick_parameters(alpha, K, discount))
        builder.stick_breaking_weights("weights", sticks, K)
    prior = pm.sample_prior_predictive(
        n_draws, model=model, random_seed=3, compile_kwargs={"mode": "FAST_COMPILE"}
    )
    weights = prior["prior"]["weights"].values.reshape(-1, K)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=0, atol=1e-12)
    want = truncated_prior_mean_weights(alpha, K, discount)
    a, b = truncated_stick_parameters(alpha, K, discount)
    assert want[0] == pytest.approx(a[0] / (a[0] + b[0]))
    assert want.sum() == pytest.approx(1.0)
    standard_error = weights.std(axis=0) / math.sqrt(n_draws)
    assert np.all(np.abs(weights.mean(axis=0) - want) < 4.0 * standard_error)


@pytest.mark.parametrize("alpha, discount", [(1.0, 0.0), (1.0, 0.5), (0.5, 0.25)])
def test_pitman_yor_expected_clusters_match_the_closed_form(alpha, discount):
    """Sticks ``Beta(1 - d, alpha + k d)`` with a long truncation, ``n`` allocations
    each: the mean number of distinct clusters is Pitman's closed form."""
    n_obs, n_sticks, n_draws = 8, 3000, 4000
    rng = np.random.default_rng(4)
    a, b = stick_prior_parameters(alpha, n_sticks, discount)
    v = rng.beta(a, b, size=(n_draws, n_sticks))
    rest = np.cumprod(1.0 - v, axis=1)
    weights = v * np.concatenate([np.ones((n_draws, 1)), rest[:, :-1]], axis=1)
    cumulative = np.cumsum(weights, axis=1)
    u = rng.uniform(size=(n_draws, n_obs)) * cumulative[:, -1:]
    counts = np.array(
        [np.unique(np.searchsorted(c, row)).size for c, row in zip(cumulative, u, strict=True)]
    )
    want = prior_mean_n_clusters(alpha, n_obs, discount)
    assert abs(counts.mean() - want) < 4.0 * counts.std() / math.sqrt(n_draws)
    if discount == 0.0:
        assert want == pytest.approx(sum(alpha / (alpha + i) for i in range(n_obs)))


# -- validation ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "weight_prior, alpha, discount, match",
    [
        ("pitman_yor", 1.0, 1.0, "0 <= discount < 1"),
        ("pitman_yor", 1.0, -0.1, "0 <= discount < 1"),
        ("pitman_yor", -0.5, 0.3, "> -discount"),
        ("dirichlet_process", 0.0, 0.0, "> -discount"),
        ("dirichlet_process", 1.0, 0.2, "needs weight_prior='pitman_yor'"),
        ("stick", 1.0, 0.0, "weight_prior must be one of"),
    ],
)
def test_bad_stick_options_are_refused(weight_prior, alpha, discount, match):
    with pytest.raises(ValueError, match=match):
        check_stick_prior(weight_prior, alpha, discount)


def test_bad_fit_options_are_refused(faithful):
    model = bm.GaussianMixture(2, "full")
    data = as_data(faithful)
    with pytest.raises(ValueError, match="weight_prior"):
        weight_priors(model, data, "dirichlet_processes")
    with pytest.raises(ValueError, match="needs weight_prior='pitman_yor'"):
        weight_priors(model, data, "dirichlet", 0.3)
    with pytest.raises(ValueError, match="0 <= discount < 1"):
        model.fit(faithful, method="nuts", weight_prior="pitman_yor", discount=1.2)
    with pytest.raises(TypeError, match="discount"):
        model.fit(faithful, method="nuts", weight_prior="pitman_yor", discount="half")
    with pytest.raises(TypeError, match="unknown option"):
        model.fit(faithful, method="gibbs", weight_prior="dirichlet_process")
    family = bm.Mixture(2, bm.families.Poisson())
    counts = np.random.default_rng(0).poisson(3.0, size=(30, 1))
    with pytest.raises(ValueError, match="options of the Bayesian methods"):
        family.fit(counts, method="em", weight_prior="dirichlet_process")


def test_stick_priors_read_alpha_as_vb_does(faithful):
    data = as_data(faithful)
    priors, spec = weight_priors(bm.GaussianMixture(4, "full"), data, "pitman_yor", 0.25)
    assert spec == "stick_breaking"
    np.testing.assert_allclose(priors.weight_sticks, [[0.75] * 3, [1.25, 1.5, 1.75]])
    explicit = bm.GaussianMixture(3, "full", priors=bm.Priors(weight_concentration=2.0))
    priors, _ = weight_priors(explicit, data, "dirichlet_process")
    np.testing.assert_allclose(priors.weight_sticks, [[1.0, 1.0], [2.0, 2.0]])
    # the covariance prior of VB's Dirichlet process: scaled for one cluster
    one = bm.GaussianMixture(3, "full", priors=bm.Priors(covariance_clusters=1.0))
    np.testing.assert_allclose(
        priors.covariance_scale, one.resolve_priors(data).covariance_scale, rtol=1e-12
    )


# -- the hand-written density against PyMC's ---------------------------------------------


@pytest.fixture(scope="module", params=[("full", 0), ("diag", None)], ids=["full-ordered", "diag"])
def dp_problem(request, faithful):
    covariance_type, order = request.param
    K = 3
    model = bm.GaussianMixture(K, covariance_type)
    data = as_data(faithful.iloc[::4])
    priors, weight_spec = weight_priors(model, data, "pitman_yor", 0.3)
    spec = builder.ModelSpec(covariance_type, K, 2, order, weight_prior=weight_spec)
    em = model.fit(data.values, method="map", random_state=0)
    start = builder.point_estimate_start(
        spec, model.structure, priors, em.weights, em.means, em.params.covariances
    )
    pm_model = builder.build_pymc(spec, model.structure, data, priors)
    layout = logdensity.Layout(covariance_type, K, 2, -1 if order is None else order)
    inputs = logdensity.density_inputs(data, priors, model.structure, K)
    return pm_model, layout, inputs, start


def test_stick_density_and_gradient_equal_pymc(dp_problem):
    pm_model, layout, inputs, start = dp_problem
    logp = pm_model.compile_logp(mode="FAST_COMPILE")
    dlogp = pm_model.compile_dlogp(mode="FAST_COMPILE")
    rng = np.random.default_rng(0)
    centre = logdensity.flat_start(layout, start)
    ours, theirs = [], []
    for theta in [centre] + [centre + 0.5 * rng.standard_normal(layout.n_dim) for _ in range(3)]:
        grad = np.empty_like(theta)
        value = logdensity.log_density(
            theta, **inputs, kind=layout.kind, order_feature=layout.order_feature, grad=grad
        )
        point, pos = {}, 0
        for rv in pm_model.free_RVs:
            name = pm_model.rvs_to_values[rv].name
            shape = pm_model.initial_point()[name].shape
            point[name] = theta[pos : pos + int(np.prod(shape))].reshape(shape)
            pos += int(np.prod(shape))
        np.testing.assert_allclose(grad, dlogp(point), rtol=1e-9, atol=1e-9)
        ours.append(value)
        theirs.append(float(logp(point)))
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.diff(ours), np.diff(theirs), rtol=1e-10, atol=1e-9)


# -- closed-form VB: the Pitman-Yor sticks -----------------------------------------------


def _weights_cavi(log_lik, alpha, discount, n_iter=60):
    """CAVI over q(z) and q(v) alone (component densities held fixed): the ELBO after
    every update of q(v)."""
    K = log_lik.shape[1]
    resp = np.full(log_lik.shape, 1.0 / K)
    trace = []
    for _ in range(n_iter):
        concentration = posterior_concentration(
            "pitman_yor", alpha, resp.sum(axis=0), discount=discount
        )
        log_pi = expected_log_weights("pitman_yor", concentration)
        joint = log_lik + log_pi
        resp = np.exp(joint - logsumexp(joint, axis=1, keepdims=True))
        entropy = -(resp * np.log(np.maximum(resp, 1e-300))).sum()
        elbo = (resp * joint).sum() + entropy
        trace.append(elbo - weights_kl("pitman_yor", concentration, alpha, discount=discount))
    return np.array(trace), concentration


def test_pitman_yor_cavi_elbo_never_decreases_and_kl_is_the_betas():
    rng = np.random.default_rng(5)
    x = np.concatenate([rng.normal(-2.0, 1.0, 120), rng.normal(2.5, 0.7, 60)])
    centres = np.array([-3.0, -1.0, 0.5, 2.0, 3.0, 5.0])
    log_lik = stats.norm.logpdf(x[:, None], centres, 1.0)
    for discount in (0.0, 0.3, 0.7):
        trace, concentration = _weights_cavi(log_lik, 0.8, discount)
        assert np.all(np.diff(trace) >= -1e-9 * np.abs(trace[1:]))
    # KL(q || p) summed over the sticks, by numerical integration of the Betas (on the
    # logit scale, where the prior's Beta(0.3, .) has no singularity)
    prior = stick_prior_parameters(0.8, 6, 0.7)
    numeric = 0.0
    for a, b, a0, b0 in zip(*concentration, *prior, strict=True):

        def integrand(u, a=a, b=b, a0=a0, b0=b0):
            # log densities of logit(v) (KL is invariant under the change of variable)
            log_q = a * log_expit(u) + b * log_expit(-u) - betaln(a, b)
            log_p = a0 * log_expit(u) + b0 * log_expit(-u) - betaln(a0, b0)
            return math.exp(log_q) * (log_q - log_p)

        numeric += integrate.quad(integrand, -300.0, 300.0, limit=500, points=[0.0])[0]
    assert weights_kl("pitman_yor", concentration, 0.8, discount=0.7) == pytest.approx(
        numeric, rel=1e-6
    )


def test_pitman_yor_at_zero_discount_is_the_dirichlet_process():
    mass = np.array([50.0, 20.5, 3.2, 0.1, 0.0])
    dp = posterior_concentration("dirichlet_process", 1.3, mass)
    py = posterior_concentration("pitman_yor", 1.3, mass, discount=0.0)
    np.testing.assert_allclose(py, dp, rtol=0, atol=1e-12)
    shifted = dp * 1.1
    assert weights_kl("pitman_yor", shifted, 1.3, discount=0.0) == pytest.approx(
        weights_kl("dirichlet_process", shifted, 1.3), abs=1e-12
    )
    small = weights_kl("pitman_yor", shifted, 1.3, discount=1e-9)
    assert small == pytest.approx(weights_kl("dirichlet_process", shifted, 1.3), abs=1e-6)


# -- NUTS on Old Faithful ------------------------------------------------------------------


@pytest.fixture(scope="module")
def dp_nuts(faithful):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return bm.GaussianMixture(6, "full").fit(
            faithful,
            method="nuts",
            weight_prior="dirichlet_process",
            chains=4,
            draws=300,
            tune=1000,  # 600 left one chain of four with a step size 3x too small
            random_state=1,
            progressbar=False,
        )


def test_dp_nuts_on_faithful_has_no_divergences(dp_nuts):
    assert int(dp_nuts.sample_stats["diverging"].sum()) == 0
    weights = dp_nuts.posterior["weights"].values
    np.testing.assert_allclose(weights.sum(axis=-1), 1.0, rtol=0, atol=1e-12)
    assert dp_nuts.settings["weight_prior"] == "dirichlet_process"


def test_dp_nuts_and_dp_vb_agree_on_the_number_of_clusters(dp_nuts, faithful):
    vb = bm.GaussianMixture(6, "full").fit(
        faithful, method="vb", weight_prior="dirichlet_process", random_state=0
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # r_hat of the count, reported in attrs
        nuts_clusters = bm.n_clusters_posterior(dp_nuts, random_state=0)
    vb_clusters = bm.n_clusters_posterior(vb, random_state=0)
    assert nuts_clusters.sum() == pytest.approx(1.0)
    # two eruption types, sometimes a third small cluster: both put most mass on 2-3.
    # Measured: NUTS P(2, 3, 4) = 0.23, 0.58, 0.18 (mean 2.98), VB 0.78, 0.21, 0.01 (mean
    # 2.24): mean-field VB (and its Normal-Wishart prior) favours fewer clusters
    assert nuts_clusters.loc[2:3].sum() > 0.6 and vb_clusters.loc[2:3].sum() > 0.6
    assert abs(nuts_clusters.attrs["mean"] - vb_clusters.attrs["mean"]) < 1.0


def test_c_callbacks_read_the_sticks(dp_problem):
    """nutpie's callbacks (through the packed buffer) give what the Python entry points
    give under the stick-breaking prior: density, gradient and weights."""
    import ctypes

    _, layout, inputs, start = dp_problem
    buffer = logdensity.pack_inputs(layout, inputs)
    theta = logdensity.flat_start(layout, start) + 0.2
    want_grad = np.empty_like(theta)
    want = logdensity.log_density(
        theta, **inputs, kind=layout.kind, order_feature=layout.order_feature, grad=want_grad
    )
    double = ctypes.POINTER(ctypes.c_double)
    grad, value, out = np.empty(layout.n_dim), np.empty(1), np.empty(layout.n_expanded)
    code = logdensity.nutpie_logp.ctypes(
        layout.n_dim,
        theta.ctypes.data_as(double),
        grad.ctypes.data_as(double),
        value.ctypes.data_as(double),
        ctypes.c_void_p(buffer.ctypes.data),
    )
    assert code == 0 and value[0] == want
    np.testing.assert_array_equal(grad, want_grad)
    code = logdensity.nutpie_expand.ctypes(
        layout.n_dim,
        layout.n_expanded,
        theta.ctypes.data_as(double),
        out.ctypes.data_as(double),
        ctypes.c_void_p(buffer.ctypes.data),
    )
    K = layout.n_components
    u = theta[: K - 1]
    v = 1.0 / (1.0 + np.exp(-u))
    weights = np.append(v, 1.0) * np.concatenate([[1.0], np.cumprod(1.0 - v)])
    assert code == 0
    np.testing.assert_allclose(out[:K], weights, rtol=1e-12)


def test_pitman_yor_nuts_counts_clusters():
    galaxies = bm.datasets.load_galaxies()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = bm.GaussianMixture(5, "full").fit(
            galaxies,
            method="nuts",
            weight_prior="pitman_yor",
            discount=0.25,
            chains=2,
            draws=200,
            tune=500,
            random_state=0,
            progressbar=False,
        )
        clusters = bm.n_clusters_posterior(fit, random_state=0)
    assert fit.settings["discount"] == 0.25 and fit.settings["identify"] == "relabel"
    assert fit.settings["target_accept"] == 0.95
    np.testing.assert_allclose(fit.posterior["weights"].values.sum(axis=-1), 1.0, atol=1e-12)
    # galaxies: three to five velocity groups (Roeder 1990; Richardson & Green 1997)
    assert clusters.index[0] == 1 and clusters.sum() == pytest.approx(1.0)
    assert 3.0 <= clusters.attrs["mean"] <= 5.0


def test_stick_priors_log_density_and_saved_result(dp_nuts, tmp_path):
    """``StickBreakingPriors`` evaluates the weights under the sticks (scipy's Betas and
    the Jacobian ``1 / R_k``); a saved DP fit loads with its draws (and the base priors)."""
    priors = dp_nuts.priors
    a, b = priors.weight_sticks
    weights = np.random.default_rng(6).dirichlet(np.ones(6), size=3)
    tail = np.cumsum(weights[:, ::-1], axis=1)[:, ::-1]
    v = weights[:, :5] / tail[:, :5]
    want = (stats.beta.logpdf(v, a, b) - np.log(tail[:, :5])).sum(axis=1)
    np.testing.assert_allclose(priors.weights_log_density(weights), want, rtol=1e-10)
    assert priors.shifted(np.ones(2)).weight_sticks is priors.weight_sticks
    path = tmp_path / "dp.nc"
    dp_nuts.save(path)
    loaded = bm.load(path)
    assert loaded.settings["weight_prior"] == "dirichlet_process"
    np.testing.assert_array_equal(
        loaded.posterior["weights"].values, dp_nuts.posterior["weights"].values
    )
