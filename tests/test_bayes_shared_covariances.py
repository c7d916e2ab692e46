"""Full Bayes for mclust's EII (one variance for every component and feature) and EEI (one
diagonal covariance for every component): the conjugate inverse-gamma priors and
conditionals against scipy's closed forms, an exact conjugate check at K = 1, Gibbs and
NUTS recovering simulated truths (module-scoped fits on n = 400 rows, K = 2, D = 2), the
PyMC density against the EM log-likelihood plus the log prior, and the netCDF round trip.

The PyMC model is compiled in ``FAST_COMPILE`` mode (no numba) and NUTS runs on the
hand-written nutpie density, so the file compiles no slow PyMC model except in the ADVI
test (marked slow: one PyMC compile per structure, 30 s with warm caches, 80-100 s cold, on
the loaded 2-core machine).
"""

from __future__ import annotations

import arviz as az
import numpy as np
import pytest
from scipy import stats

import bayesmix as bm
from bayesmix.data import as_data
from bayesmix.families.gaussian import builder
from bayesmix.families.gaussian.covariance import bayes_structures, get_structure

N_OBS = 400
MEANS = np.array([[-3.0, 0.0], [3.0, 1.0]])
WEIGHTS = np.array([0.6, 0.4])
# the true shared variances: EII one for all features, EEI one per feature
TRUTH = {"EII": np.array([0.64, 0.64]), "EEI": np.array([0.36, 2.25])}
SHARED = ("EII", "EEI")


def _simulate(covariance_type: str, seed: int = 1) -> np.ndarray:
    rng = np.random.default_rng(seed)
    labels = (rng.random(N_OBS) < WEIGHTS[1]).astype(int)
    noise = rng.standard_normal((N_OBS, 2)) * np.sqrt(TRUTH[covariance_type])
    return MEANS[labels] + noise


@pytest.fixture(scope="module", params=SHARED)
def simulated(request):
    return request.param, _simulate(request.param)


def _sorted_posterior(result):
    """Weights ``(S, K)``, means ``(S, K, D)`` and per-feature variances ``(S, D)`` with the
    components in the order of their first feature's posterior mean, and the chain count."""
    post = result.posterior
    chains = post.sizes["chain"]
    weights = post["weights"].values.reshape(-1, 2)
    means = post["means"].values.reshape(-1, 2, 2)
    order = np.argsort(means[:, :, 0].mean(axis=0))
    cov = post["covariances"].values.reshape(-1, 2, 2, 2)
    np.testing.assert_array_equal(cov[:, 0], cov[:, 1])  # shared by the components
    variances = np.diagonal(cov[:, 0], axis1=-2, axis2=-1)
    return weights[:, order], means[:, order], variances, chains


def _check_recovery(result, covariance_type: str):
    """Every posterior mean within 4 posterior sds of the truth; returns the largest
    error in posterior sds."""
    weights, means, variances, _ = _sorted_posterior(result)
    worst = 0.0
    for draws, truth in ((weights, WEIGHTS), (means, MEANS), (variances, TRUTH[covariance_type])):
        z = np.abs(draws.mean(axis=0) - truth) / draws.std(axis=0)
        worst = max(worst, float(z.max()))
    assert worst < 4.0, worst
    return worst


def _mcse(draws: np.ndarray, chains: int) -> np.ndarray:
    """Monte Carlo standard errors of the means of ``draws`` ``(S, ...)`` (ArviZ's ESS)."""
    flat = draws.reshape(chains, len(draws) // chains, -1)
    return np.array([float(az.mcse(flat[..., j])) for j in range(flat.shape[-1])])


@pytest.fixture(scope="module")
def gibbs_fits():
    return {
        name: bm.GaussianMixture(2, name).fit(
            _simulate(name), method="gibbs", draws=400, tune=100, chains=2, random_state=0
        )
        for name in SHARED
    }


@pytest.fixture(scope="module")
def nuts_fits():
    return {
        name: bm.GaussianMixture(2, name).fit(
            _simulate(name), method="nuts", draws=400, tune=300, chains=2, random_state=0
        )
        for name in SHARED
    }


# ---------------------------------------------------------------------------------------
# priors and conditionals against the inverse-gamma closed forms


def test_default_priors_are_one_inverse_gamma_per_shared_variance(simulated):
    name, X = simulated
    priors = bm.GaussianMixture(2, name).resolve_priors(as_data(X))
    variances = X.var(axis=0) / 2.0  # the data's variance shared out among K = 2 clusters
    assert priors.covariance_dof == 3.0  # the weakest prior with a finite mean
    if name == "EII":
        assert np.shape(priors.covariance_scale) == ()
        np.testing.assert_allclose(priors.covariance_scale, variances.mean())
    else:
        assert np.shape(priors.covariance_scale) == (2,)
        np.testing.assert_allclose(priors.covariance_scale, variances)


def test_log_prior_is_the_inverse_gamma_density(simulated):
    name, _ = simulated
    structure = get_structure(name)
    dof = 5.0
    scale = 1.3 if name == "EII" else np.array([1.3, 0.4])
    draws = np.array([0.7, 2.0, 0.05]) if name == "EII" else np.array([[0.7, 2.0], [0.1, 3.0]])
    want = stats.invgamma(0.5 * dof, scale=0.5 * np.asarray(scale)).logpdf(draws)
    want = want if name == "EII" else want.sum(axis=1)
    for draw, value in zip(draws, want, strict=True):
        assert structure.log_prior(draw, dof, scale) == pytest.approx(value, rel=1e-12)
    factors = structure.precision_cholesky(draws)
    np.testing.assert_allclose(
        structure.log_prior_draws(draws, factors, dof, scale), want, rtol=1e-12
    )


def test_conditional_pools_the_scatter_of_every_component(simulated):
    name, X = simulated
    structure = get_structure(name)
    rng = np.random.default_rng(3)
    allocation = (X[:, 0] > 0).astype(int)
    resp = np.eye(2)[allocation]
    means = MEANS + 0.1 * rng.standard_normal(MEANS.shape)  # any means, not the mean of the rows
    mass, sum_x, sum_xx = resp.sum(axis=0), resp.T @ X, structure.second_moment(X, resp)
    dof, scale = 4.0, (0.9 if name == "EII" else np.array([0.9, 1.7]))
    shape, rate = structure.conditional_parameters(mass, sum_x, sum_xx, means, dof, scale)
    squares = (X - means[allocation]) ** 2  # (n, D)
    if name == "EII":  # one variance: n D squared deviations
        want_shape, want_rate = 0.5 * dof + 0.5 * N_OBS * 2, 0.5 * (scale + squares.sum())
    else:  # one variance per feature: n squared deviations each
        want_shape, want_rate = np.full(2, 0.5 * (dof + N_OBS)), 0.5 * (scale + squares.sum(0))
    np.testing.assert_allclose(shape, want_shape, rtol=1e-12)
    np.testing.assert_allclose(rate, want_rate, rtol=1e-10)
    # its density and its draws are the inverse-gamma's
    value = np.asarray(want_rate / (want_shape - 1.0))
    law = stats.invgamma(want_shape, scale=want_rate)
    density = structure.conditional_log_density(
        value, structure.precision_cholesky(value), (shape, rate)
    )
    assert density == pytest.approx(np.sum(law.logpdf(value)), rel=1e-12)
    many = tuple(np.broadcast_to(p, (20000,) + np.shape(p)) for p in (shape, rate))
    draws, factors = structure.conditional_draw(many, np.random.default_rng(0))
    np.testing.assert_allclose(factors, 1.0 / np.sqrt(draws), rtol=1e-12)
    sd = law.std()
    np.testing.assert_array_less(np.abs(draws.mean(axis=0) - law.mean()), 4.0 * sd / np.sqrt(20000))


# ---------------------------------------------------------------------------------------
# K = 1, means known: the shared variance's posterior is exactly inverse-gamma


@pytest.mark.parametrize("name", SHARED)
def test_k1_posterior_of_the_shared_variance_is_the_conjugate_closed_form(name):
    rng = np.random.default_rng(11)
    mean = np.array([1.0, -2.0])
    X = mean + rng.standard_normal((60, 2)) * np.sqrt(TRUTH[name])
    dof, scale = 4.0, (0.5 if name == "EII" else np.array([0.5, 1.5]))
    # a prior on the means so narrow that they are known
    priors = bm.Priors(mean_loc=mean, mean_scale=1e-7, covariance_dof=dof, covariance_scale=scale)
    model = bm.GaussianMixture(1, name, priors=priors)
    draws, chains = 2000, 2
    fit = model.fit(X, method="gibbs", draws=draws, tune=20, chains=chains, random_state=5)
    variances = np.diagonal(fit.posterior["covariances"].values[:, :, 0], axis1=-2, axis2=-1)
    squares = (X - mean) ** 2
    if name == "EII":
        variances = variances[..., :1]
        law = stats.invgamma(0.5 * (dof + X.size), scale=0.5 * (scale + squares.sum()))
    else:
        law = stats.invgamma(0.5 * (dof + len(X)), scale=0.5 * (scale + squares.sum(axis=0)))
    flat = variances.reshape(chains * draws, -1)
    mcse = _mcse(flat, chains)
    np.testing.assert_array_less(np.abs(flat.mean(axis=0) - law.mean()), 4.0 * mcse)
    # the sd of a sample sd of S nearly normal draws is about sd / sqrt(2 S)
    sd_error = 4.0 * law.std() / np.sqrt(2.0 * chains * draws) * 1.5  # a little tail allowance
    np.testing.assert_array_less(np.abs(flat.std(axis=0) - law.std()), sd_error)


# ---------------------------------------------------------------------------------------
# the samplers on simulated mixtures


def test_gibbs_recovers_the_truth(gibbs_fits):
    for name, fit in gibbs_fits.items():
        _check_recovery(fit, name)


def test_nuts_recovers_the_truth_and_agrees_with_gibbs(nuts_fits, gibbs_fits):
    for name, fit in nuts_fits.items():
        assert fit.settings["log_density"] == "bayesmix"  # the hand-written density
        _check_recovery(fit, name)
        ours, theirs = _sorted_posterior(fit), _sorted_posterior(gibbs_fits[name])
        for a, b in zip(ours[:3], theirs[:3], strict=True):
            a, b = a.reshape(len(a), -1), b.reshape(len(b), -1)
            error = np.hypot(_mcse(a, ours[3]), _mcse(b, theirs[3]))
            np.testing.assert_array_less(np.abs(a.mean(0) - b.mean(0)), 4.5 * error)


@pytest.mark.slow
@pytest.mark.parametrize("name", SHARED)
def test_advi_recovers_the_truth(name):
    fit = bm.GaussianMixture(2, name).fit(_simulate(name), method="advi", random_state=0)
    weights, means, variances, _ = _sorted_posterior(fit)
    # mean-field ADVI under-disperses: judge it on the truth's scale, not its own sds
    np.testing.assert_allclose(weights.mean(0), WEIGHTS, atol=0.06)
    np.testing.assert_allclose(means.mean(0), MEANS, atol=0.2)
    np.testing.assert_allclose(variances.mean(0), TRUTH[name], rtol=0.15)


@pytest.mark.parametrize("name", SHARED)
def test_pymc_density_is_em_log_likelihood_plus_log_prior(name):
    """The PyMC model's log density (no Jacobians) at the MAP-EM estimate is its
    log-likelihood plus the log prior, up to the constants of the dimensionless free
    variables (``means = loc + scale * raw``, ``variances = scale * raw``)."""
    X = _simulate(name)
    model = bm.GaussianMixture(2, name)
    data = as_data(X)
    priors = model.resolve_priors(data)
    em = model.fit(X, method="map", random_state=0)
    spec = builder.ModelSpec(name, 2, 2, None)
    start = builder.point_estimate_start(
        spec, model.structure, priors, em.weights, em.means, em.params.covariances
    )
    pm_model = builder.build_pymc(spec, model.structure, data, priors)
    assert pm_model["variances"].ndim == len(model.structure.natural_dims)
    point = {}
    for rv in pm_model.free_RVs:
        value = pm_model.rvs_to_values[rv]
        transform = pm_model.rvs_to_transforms[rv]
        raw = np.asarray(start[rv.name], dtype=float)
        point[value.name] = raw if transform is None else transform.forward(raw).eval()
    logp = pm_model.compile_logp(jacobian=False, mode="FAST_COMPILE")(point)
    constants = 2 * np.log(priors.mean_scale).sum() + np.log(priors.covariance_scale).sum()
    log_prior = priors.log_density(em.weights, em.means, em.params.covariances, model.structure)
    want = em.score_samples(X).sum() + log_prior + constants
    assert logp == pytest.approx(want, rel=1e-12, abs=1e-8)


@pytest.mark.parametrize("name", SHARED)
def test_pymc_observed_log_prob_marginalises_the_missing_features(name):
    """The PyMC density of rows with missing features (the observed features' marginal)."""
    import pytensor.tensor as pt

    structure = get_structure(name)
    X = _simulate(name)[:5]
    means = np.array([[0.0, 1.0], [3.0, -1.0]])
    variances = np.float64(1.7) if name == "EII" else np.array([0.5, 2.5])
    observed = np.array([1])
    got = structure.pymc_observed_log_prob(
        pt.as_tensor(X[:, observed]), pt.as_tensor(means), pt.as_tensor(variances), observed
    ).eval()
    sd = np.sqrt(np.broadcast_to(variances, (2,))[observed])
    want = np.stack(
        [stats.norm(means[k, observed], sd).logpdf(X[:, observed]).sum(1) for k in range(2)], 1
    )
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_independent_family_blocks_with_shared_variances():
    """Gaussian("EEI") and Gaussian("EII") blocks of an Independent family: the PyMC
    log-likelihood at the MAP-EM estimate is the family's own, and the blocks'
    ``covariances`` Deterministics are the estimate's (K = D = 2, where a (D,) vector
    broadcast as (K, 1) would go unnoticed by the shapes)."""
    import pytensor
    from scipy.special import logsumexp

    from bayesmix.families import Gaussian, Independent
    from bayesmix.inference.bayes.family import build_family_pymc

    X = np.hstack([_simulate("EEI"), _simulate("EII", seed=2)[:, ::-1]])
    family = Independent({(0, 1): Gaussian("EEI"), (2, 3): Gaussian("EII")})
    fit = bm.Mixture(2, family).fit(X, method="map", random_state=0)
    model, params = fit.model, fit.parameters
    pm_model = build_family_pymc(model, as_data(X), fit.priors)
    start = {"weights": params["weights"]}
    start.update(model.family.pymc_initial_values(params, fit.priors))
    replace = {pm_model[name]: np.asarray(value, dtype=float) for name, value in start.items()}

    def evaluate(variable):
        graph = pytensor.graph.graph_replace(variable, replace, strict=False)
        return graph.eval(mode="FAST_COMPILE")

    (potential,) = pm_model.potentials
    log_joint = np.log(params["weights"]) + model.family.log_density(X, params)
    assert evaluate(potential) == pytest.approx(logsumexp(log_joint, axis=1).sum(), rel=1e-10)
    for block in ("gaussian1", "gaussian2"):
        name = f"{block}_covariances"
        np.testing.assert_allclose(evaluate(pm_model[name]), params[name], rtol=1e-10)


def test_fit_round_trips_through_netcdf(gibbs_fits, tmp_path):
    for name, fit in gibbs_fits.items():
        path = tmp_path / f"{name}.nc"
        fit.save(path)
        loaded = bm.load(path)
        assert loaded.model.covariance_type == name
        for var in ("weights", "means", "covariances"):
            np.testing.assert_array_equal(loaded.posterior[var].values, fit.posterior[var].values)
        np.testing.assert_allclose(
            loaded.score_samples(_simulate(name)), fit.score_samples(_simulate(name))
        )


# ---------------------------------------------------------------------------------------
# the door


def test_unsupported_model_names_the_shared_ones_among_the_supported():
    assert {"EII", "EEI"} <= set(bayes_structures())
    with pytest.raises(ValueError, match="supports EM only") as info:
        bm.GaussianMixture(2, "VEV").fit(_simulate("EII"), method="nuts")
    for name in ("EII", "EEI", "full", "tied", "diag", "spherical"):
        assert repr(name) in str(info.value)
