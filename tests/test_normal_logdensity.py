"""The hand-written log posterior density of ``Normal`` mixtures
(``bayesmix.families.normal_logdensity``) against PyMC's log density and automatic
gradient of the same model (:func:`build_family_pymc`) and against scipy, its gradient
against central finite differences, its C callbacks against the Python entry points, its
start and expansion against the MAP-EM estimate; NUTS (nutpie) and ADVI on it; and the
degeneracy warnings of ``Normal``'s maximum-likelihood EM.

Two PyMC models are compiled, in ``FAST_COMPILE`` mode (no numba): K = 2, D = 3 and
K = 1, D = 1.
"""

from __future__ import annotations

import ctypes
import warnings

import numpy as np
import pytest
from conftest import density_and_pymc, density_problem, points_around, pymc_point
from scipy import stats

import bayesmix as bm

# (K, D)
CASES = [(2, 3), (1, 1)]
IDS = [f"K{k}-D{d}" for k, d in CASES]


def _rows(D: int, n: int = 60, seed: int = 5) -> np.ndarray:
    """Two Gaussian clusters ``n x D`` with different spreads per feature."""
    rng = np.random.default_rng(seed)
    z = rng.integers(0, 2, n)
    centres = np.array([[0.0, 1.0, -1.0], [5.0, -2.0, 3.0]])[:, :D]
    return centres[z] + rng.standard_normal((n, D)) * np.array([1.0, 0.5, 2.0])[:D]


def _problem(K, D):
    return density_problem(bm.Mixture(K, bm.families.Normal()), _rows(D))


@pytest.fixture(scope="module", params=CASES, ids=IDS)
def problem(request):
    return density_and_pymc(*_problem(*request.param))


def test_density_and_gradient_equal_pymc(problem):
    """The log density equals the PyMC model's compiled ``logp`` (Jacobians included) to
    1e-12 relative, the differences between points to 1e-10, and the gradient its
    ``dlogp`` to 1e-10, at the MAP-EM start and around it (PyMC's inverse-gamma and
    Normal log densities add no constant of their own here: measured differences
    ~1e-13 absolute on log densities of ~-1000)."""
    _, _, _, density, pm_model, _, start = problem
    names = [pm_model.rvs_to_values[rv].name for rv in pm_model.free_RVs]
    assert names == ["weights_simplex__", "means", "variances_log__"]
    logp = pm_model.compile_logp(jacobian=True, mode="FAST_COMPILE")
    dlogp = pm_model.compile_dlogp(jacobian=True, mode="FAST_COMPILE")
    ours, theirs = [], []
    for theta in points_around(density, density.flat_start(start)):
        grad = np.empty(density.n_dim)
        ours.append(density.log_density(theta, grad))
        point = pymc_point(pm_model, theta)
        theirs.append(float(logp(point)))
        np.testing.assert_allclose(grad, dlogp(point), rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=0)
    np.testing.assert_allclose(np.diff(ours), np.diff(theirs), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradient_equals_central_differences(case):
    _, _, _, density = _problem(*case)
    theta = 0.5 * np.random.default_rng(2).standard_normal(density.n_dim)
    grad, scratch, numeric = (np.empty(density.n_dim) for _ in range(3))
    density.log_density(theta, grad)
    step = 1e-5
    for i in range(density.n_dim):
        up, down = theta.copy(), theta.copy()
        up[i] += step
        down[i] -= step
        numeric[i] = (density.log_density(up, scratch) - density.log_density(down, scratch)) / (
            2 * step
        )
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6)


def test_density_equals_scipy_at_constrained_values():
    """K = 2, D = 3: Dirichlet, Normal and inverse-gamma priors, the mixture likelihood
    by scipy, plus the simplex and log transforms' Jacobians."""
    model, X, priors, density = _problem(2, 3)
    theta = 0.3 * np.random.default_rng(3).standard_normal(density.n_dim)
    expanded = density.expand(theta)
    weights, means, variances = expanded[:2], expanded[2:8].reshape(2, 3), expanded[8:]
    variances = variances.reshape(2, 3)
    joint = np.log(weights) + np.column_stack(
        [stats.norm(means[k], np.sqrt(variances[k])).logpdf(X).sum(axis=1) for k in range(2)]
    )
    want = np.logaddexp(joint[:, 0], joint[:, 1]).sum()
    want += stats.dirichlet(priors["weight_concentration"]).logpdf(weights)
    want += np.log(2.0) + np.log(weights).sum()  # the simplex transform's Jacobian
    want += stats.norm(priors["mean_loc"], priors["mean_scale"]).logpdf(means).sum()
    shape, scale = 0.5 * priors["variance_dof"], 0.5 * priors["variance_scale"]
    want += stats.invgamma(shape, scale=scale).logpdf(variances).sum()
    want += np.log(variances).sum()
    assert density.log_density(theta, np.empty(density.n_dim)) == pytest.approx(want, rel=1e-12)


def test_start_and_expansion_round_trip(problem):
    """``flat_start`` of the MAP-EM estimate expands back to its weights, means and
    variances."""
    _, _, _, density, _, em, start = problem
    expanded = density.expand(density.flat_start(start))
    want = np.concatenate([np.ravel(em.parameters[name]) for name in ("weights", *density.names)])
    np.testing.assert_allclose(expanded, want, rtol=1e-10, atol=1e-12)
    assert (
        density.n_expanded
        == expanded.size
        == sum(int(np.prod(shape)) for shape in density.shapes.values())
    )


_DOUBLE = ctypes.POINTER(ctypes.c_double)


def test_c_callbacks_read_the_packed_buffer():
    """The callbacks nutpie calls give exactly what the Python entry points give, and
    report a non-finite density as a rejected step (code 4)."""
    _, _, _, density = _problem(2, 3)
    theta = 0.3 * np.random.default_rng(1).standard_normal(density.n_dim)
    want_grad = np.empty(density.n_dim)
    want = density.log_density(theta, want_grad)
    buffer = ctypes.c_void_p(density.buffer.ctypes.data)

    def logp(x):
        grad, value = np.empty(density.n_dim), np.empty(1)
        pointers = [array.ctypes.data_as(_DOUBLE) for array in (x, grad, value)]
        return density.nutpie_logp.ctypes(density.n_dim, *pointers, buffer), value[0], grad

    code, value, grad = logp(theta)
    assert (code, value) == (0, want)
    np.testing.assert_array_equal(grad, want_grad)
    far = theta.copy()
    far[-1] = -800.0  # a variance of exp(-800): its prior is -inf
    assert logp(far)[0] == 4
    out = np.empty(density.n_expanded)
    pointers = [array.ctypes.data_as(_DOUBLE) for array in (theta, out)]
    code = density.nutpie_expand.ctypes(density.n_dim, density.n_expanded, *pointers, buffer)
    assert code == 0
    np.testing.assert_array_equal(out, density.expand(theta))


@pytest.mark.slow
def test_nuts_by_nutpie_recovers_simulated_truth():
    """Two diagonal Gaussian components of 300 and 200 rows: NUTS samples the
    hand-written density with nutpie and its posterior means recover the truth."""
    rng = np.random.default_rng(0)
    n = np.array([300, 200])
    locations = np.array([[0.0, 0.0], [5.0, 3.0]])
    sds = np.array([[1.0, 0.5], [0.7, 1.5]])
    z = np.repeat([0, 1], n)
    X = locations[z] + sds[z] * rng.standard_normal((n.sum(), 2))
    fit = bm.Mixture(2, bm.families.Normal()).fit(
        X, method="nuts", draws=300, tune=300, chains=2, random_state=1, progressbar=False
    )
    assert (fit.settings["sampler"], fit.settings["log_density"]) == ("nutpie", "bayesmix")
    posterior = fit.posterior
    means = posterior["means"].mean(("chain", "draw")).values
    order = np.argsort(means[:, 0])
    np.testing.assert_allclose(means[order], locations, atol=0.25)
    variances = posterior["variances"].mean(("chain", "draw")).values[order]
    np.testing.assert_allclose(np.sqrt(variances), sds, rtol=0.15)
    weights = posterior["weights"].mean(("chain", "draw")).values[order]
    np.testing.assert_allclose(weights, n / n.sum(), atol=0.06)


def _mean_posterior(x, loc, scale, dof, variance_scale):
    """Posterior mean and sd of ``mu`` for one Normal component and feature: the
    variance integrates out in closed form, ``p(mu | x) ∝ N(mu; loc, scale) (b +
    S(mu) / 2)^-(a + n / 2)`` with ``S(mu) = sum (x - mu)^2``, ``a = dof / 2``, ``b =
    variance_scale / 2``; the one-dimensional remainder by quadrature on a fine grid."""
    a, b, n = 0.5 * dof, 0.5 * variance_scale, x.size
    centre, spread = x.mean(), x.std() / np.sqrt(n)
    grid = np.linspace(centre - 12 * spread, centre + 12 * spread, 20001)
    scatter = ((x[:, None] - grid) ** 2).sum(axis=0)
    log_post = stats.norm(loc, scale).logpdf(grid) - (a + 0.5 * n) * np.log(b + 0.5 * scatter)
    weight = np.exp(log_post - log_post.max())
    weight /= weight.sum()
    mean = (weight * grid).sum()
    return mean, np.sqrt((weight * (grid - mean) ** 2).sum())


@pytest.mark.slow
def test_one_component_nuts_equals_the_exact_posterior_of_the_means():
    """K = 1: each mean's exact marginal posterior (:func:`_mean_posterior`, the
    variance integrated out analytically) against NUTS by nutpie. 2 chains x 1000
    draws; the means' effective sample size is at least half the draws for this
    near-Gaussian, uncorrelated posterior, so the posterior mean is within 4 Monte Carlo
    standard errors (sd / sqrt(1000)) and the sd within 10%."""
    rng = np.random.default_rng(2)
    X = rng.normal([1.0, -3.0], [2.0, 0.3], (40, 2))
    model = bm.Mixture(1, bm.families.Normal())
    fit = model.fit(
        X, method="nuts", chains=2, draws=1000, tune=500, random_state=1, progressbar=False
    )
    assert fit.settings["log_density"] == "bayesmix"
    priors = fit.priors
    draws = fit.posterior["means"].values.reshape(-1, 2)
    for d in range(2):
        mean, sd = _mean_posterior(
            X[:, d],
            priors["mean_loc"][d],
            priors["mean_scale"][d],
            priors["variance_dof"][d],
            priors["variance_scale"][d],
        )
        se = sd / np.sqrt(draws.shape[0] / 2)
        assert abs(draws[:, d].mean() - mean) < 4 * se
        assert draws[:, d].std() == pytest.approx(sd, rel=0.1)


@pytest.mark.slow
def test_advi_takes_the_hand_written_density():
    rng = np.random.default_rng(5)
    z = rng.choice(2, 600)
    X = np.where(z[:, None] == 0, 0.0, 4.0) + rng.standard_normal((600, 2))
    fit = bm.Mixture(2, bm.families.Normal()).fit(
        X, method="advi", random_state=0, progressbar=False
    )
    assert fit.settings["log_density"] == "bayesmix"
    means = fit.posterior["means"].mean(("chain", "draw")).values
    np.testing.assert_allclose(np.sort(means[:, 0]), [0.0, 4.0], atol=0.2)
    variances = fit.posterior["variances"].mean(("chain", "draw")).values
    np.testing.assert_allclose(variances, 1.0, atol=0.25)


# -- degeneracy warnings of the maximum-likelihood EM ---------------------------------


def test_collapsed_component_warns():
    """A column with a few identical outliers: with K = 3 maximum-likelihood EM gives
    them a component whose variance along that column is only the floor, and Normal
    says so with a DegenerateComponentWarning, as the diagonal Gaussian does."""
    rng = np.random.default_rng(0)
    X = np.column_stack([rng.normal(0.0, 1.0, 200), rng.normal(5.0, 2.0, 200)])
    X = np.concatenate([X, rng.normal(3.0, 1.0, (200, 2))])
    X[:6, 0] = 25.0  # six identical outliers in the first column
    with pytest.warns(bm.DegenerateComponentWarning, match="constant within component"):
        fit = bm.Mixture(3, bm.families.Normal()).fit(X, method="em", random_state=0)
    assert np.min(fit.parameters["variances"][:, 0]) < 1e-6


def test_healthy_fits_do_not_warn():
    """Iris (4 measurements, K = 3) by maximum-likelihood EM, and the collapsing data
    above by MAP-EM (the inverse-gamma prior keeps the variance off the floor): no
    DegenerateComponentWarning."""
    from sklearn.datasets import load_iris

    X = load_iris().data
    with warnings.catch_warnings():
        warnings.simplefilter("error", bm.DegenerateComponentWarning)
        bm.Mixture(3, bm.families.Normal()).fit(X, method="em", random_state=0)
        Y = X.copy()
        Y[:6, 0] = 25.0
        bm.Mixture(3, bm.families.Normal()).fit(Y, method="map", random_state=0)
