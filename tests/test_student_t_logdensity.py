"""The hand-written log posterior density of Student-t mixtures
(``bayesmix.families.student_t_logdensity``) against PyMC's log density and automatic
gradient of the same model (:func:`build_family_pymc`) and against scipy, its gradient
against central finite differences, its C callbacks against the Python entry points, its
start and expansion against the MAP-EM estimate, and a NUTS fit by nutpie on simulated
t data.

Four PyMC models are compiled, in ``FAST_COMPILE`` mode (no numba): full and diag
scales, degrees of freedom estimated and fixed, K = 1 and 2, D = 1 and 3.
"""

from __future__ import annotations

import ctypes

import numpy as np
import pytest
from conftest import density_and_pymc, density_problem, map_em_start, points_around, pymc_point
from scipy import stats

import bayesmix as bm
from bayesmix.families.student_t_logdensity import student_t_density

# (covariance_type, dof, K, D)
CASES = [("full", None, 2, 3), ("diag", None, 2, 3), ("full", 5.0, 1, 1), ("diag", 4.0, 2, 1)]
IDS = [f"{c}-dof{d}-K{k}-D{n}" for c, d, k, n in CASES]


def _rows(D: int, n: int = 60, seed: int = 5) -> np.ndarray:
    """Two t clusters (3 degrees of freedom) ``n x D``."""
    rng = np.random.default_rng(seed)
    z = rng.integers(0, 2, n)
    centres = np.array([[0.0, 1.0, -1.0], [5.0, -2.0, 3.0]])[:, :D]
    return centres[z] + rng.standard_t(3.0, (n, D)) * np.array([1.0, 0.5, 2.0])[:D]


def _problem(covariance_type, dof, K, D):
    return density_problem(bm.Mixture(K, bm.families.StudentT(covariance_type, dof)), _rows(D))


@pytest.fixture(scope="module", params=CASES, ids=IDS)
def problem(request):
    return density_and_pymc(*_problem(*request.param))


def test_density_and_gradient_equal_pymc(problem):
    """The log density equals the PyMC model's compiled ``logp`` (Jacobians included) to
    1e-9 relative, and the gradient its ``dlogp``, at the MAP-EM start and around it.

    The two differ by a constant of up to a few 1e-8: PyMC's ``Gamma`` and
    ``InverseGamma`` log densities are off by about 1e-8 at some shapes (1.56e-8 at
    shape 1.5, rate 0.5, against scipy, whatever the value); ours equal scipy's
    (:func:`test_density_equals_scipy_at_constrained_values`), and the differences
    between points agree to rounding."""
    model, X, _, density, pm_model, _, start = problem
    names = [pm_model.rvs_to_values[rv].name for rv in pm_model.free_RVs]
    assert names[0] == "weights_simplex__"
    logp = pm_model.compile_logp(jacobian=True, mode="FAST_COMPILE")
    dlogp = pm_model.compile_dlogp(jacobian=True, mode="FAST_COMPILE")
    ours, theirs = [], []
    for theta in points_around(density, density.flat_start(start)):
        grad = np.empty(density.n_dim)
        ours.append(density.log_density(theta, grad))
        point = pymc_point(pm_model, theta)
        theirs.append(float(logp(point)))
        np.testing.assert_allclose(grad, dlogp(point), rtol=1e-9, atol=1e-9)
    np.testing.assert_allclose(ours, theirs, rtol=1e-9, atol=0)
    np.testing.assert_allclose(np.diff(ours), np.diff(theirs), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_gradient_equals_central_differences(case):
    _, _, _, density = _problem(*case)
    rng = np.random.default_rng(2)
    theta = 0.5 * rng.standard_normal(density.n_dim)
    grad = np.empty(density.n_dim)
    density.log_density(theta, grad)
    step, scratch = 1e-5, np.empty(density.n_dim)
    numeric = np.empty(density.n_dim)
    for i in range(density.n_dim):
        up, down = theta.copy(), theta.copy()
        up[i] += step
        down[i] -= step
        numeric[i] = (density.log_density(up, scratch) - density.log_density(down, scratch)) / (
            2 * step
        )
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("covariance_type", ["full", "diag"])
def test_density_equals_scipy_at_constrained_values(covariance_type):
    """K = 1: Normal, (Bartlett) inverse-Wishart or inverse-gamma, Gamma priors and the
    t likelihood by scipy, plus the log transforms' Jacobians."""
    model, X, priors, density = _problem(covariance_type, None, 1, 3)
    _, start = map_em_start(model, X)
    theta = density.flat_start(start) + 0.1
    params = density.expand(theta)
    means, nu = params[1:4], params[-1]
    scales = params[4:-1].reshape((3, 3)) if covariance_type == "full" else params[4:-1]
    shape = np.diag(scales) if covariance_type == "diag" else scales
    want = stats.multivariate_t(means, shape, df=nu).logpdf(X).sum()
    want += stats.norm(priors["mean_loc"], priors["mean_scale"]).logpdf(means).sum()
    want += stats.gamma(priors["dof_shape"], scale=1 / priors["dof_rate"]).logpdf(nu) + theta[-1]
    scale_dof = float(priors["scale_dof"])
    if covariance_type == "full":
        pos = 3  # the Bartlett variables: chi-squares, then normals
        chi2 = np.exp(theta[pos : pos + 3])
        want += stats.chi2(scale_dof - np.arange(3)).logpdf(chi2).sum() + theta[pos : pos + 3].sum()
        want += stats.norm().logpdf(theta[pos + 3 : pos + 6]).sum()
    else:
        inverse_gamma = stats.invgamma(0.5 * scale_dof, scale=0.5 * priors["scale_scale"])
        want += inverse_gamma.logpdf(scales).sum() + np.log(scales).sum()
    assert density.log_density(theta, np.empty(density.n_dim)) == pytest.approx(want, rel=1e-12)


def test_start_and_expansion_round_trip(problem):
    """``flat_start`` of the MAP-EM estimate expands back to its weights, means, scales
    and degrees of freedom (fixed ones too)."""
    _, _, _, density, _, em, start = problem
    expanded = density.expand(density.flat_start(start))
    want = np.concatenate([np.ravel(em.parameters[name]) for name in ("weights", *density.names)])
    np.testing.assert_allclose(expanded, want, rtol=1e-10, atol=1e-12)
    assert (
        expanded.size
        == density.n_expanded
        == sum(int(np.prod(shape)) for shape in density.shapes.values())
    )


_DOUBLE = ctypes.POINTER(ctypes.c_double)


def _callback_logp(density, x):
    """The logp callback called as nutpie calls it: ``(code, value, gradient)``."""
    grad, value = np.empty(density.n_dim), np.empty(1)
    pointers = [array.ctypes.data_as(_DOUBLE) for array in (x, grad, value)]
    buffer = ctypes.c_void_p(density.buffer.ctypes.data)
    return density.nutpie_logp.ctypes(density.n_dim, *pointers, buffer), value[0], grad


def _callback_expand(density, x):
    """The expansion callback called as nutpie calls it: ``(code, expanded)``."""
    out = np.empty(density.n_expanded)
    pointers = [array.ctypes.data_as(_DOUBLE) for array in (x, out)]
    buffer = ctypes.c_void_p(density.buffer.ctypes.data)
    return density.nutpie_expand.ctypes(density.n_dim, density.n_expanded, *pointers, buffer), out


@pytest.mark.parametrize("case", CASES[:2], ids=IDS[:2])
def test_c_callbacks_read_the_packed_buffer(case):
    """The callbacks nutpie calls give exactly what the Python entry points give, and
    report a non-finite density as a rejected step (code 4)."""
    _, _, _, density = _problem(*case)
    theta = 0.3 * np.random.default_rng(1).standard_normal(density.n_dim)
    want_grad = np.empty(density.n_dim)
    want = density.log_density(theta, want_grad)
    code, value, grad = _callback_logp(density, theta)
    assert (code, value) == (0, want)
    np.testing.assert_array_equal(grad, want_grad)
    far = theta.copy()
    far[-1] = 800.0  # a degree of freedom of exp(800)
    assert _callback_logp(density, far)[0] == 4
    code, expanded = _callback_expand(density, theta)
    assert code == 0
    np.testing.assert_array_equal(expanded, density.expand(theta))


def test_fixed_dof_has_no_coordinates():
    X = _rows(2)
    priors = bm.Mixture(2, bm.families.StudentT("diag")).resolve_priors(bm.data.as_data(X))
    free = student_t_density("diag", None, X, priors, 2)
    fixed = student_t_density("diag", 7.0, X, priors, 2)
    assert free.n_dim == fixed.n_dim + 2
    assert fixed.expand(np.zeros(fixed.n_dim))[-2:].tolist() == [7.0, 7.0]


def test_nuts_by_nutpie_recovers_simulated_truth():
    """Two t components (3 degrees of freedom) of 150 and 100 rows: NUTS samples the
    hand-written density with nutpie and its posterior means recover the truth."""
    rng = np.random.default_rng(0)
    n = np.array([150, 100])
    locations = np.array([[0.0, 0.0], [6.0, 3.0]])
    z = np.repeat([0, 1], n)
    X = locations[z] + rng.standard_t(3.0, (n.sum(), 2))
    fit = bm.Mixture(2, bm.families.StudentT("full")).fit(
        X, method="nuts", draws=300, tune=300, chains=2, random_state=1, progressbar=False
    )
    assert (fit.settings["sampler"], fit.settings["log_density"]) == ("nutpie", "bayesmix")
    posterior = fit.posterior
    means = posterior["means"].mean(("chain", "draw")).values
    order = np.argsort(means[:, 0])
    np.testing.assert_allclose(means[order], locations, atol=0.4)
    weights = posterior["weights"].mean(("chain", "draw")).values[order]
    np.testing.assert_allclose(weights, n / n.sum(), atol=0.08)
    dof = posterior["dof"].mean(("chain", "draw")).values
    assert np.all((dof > 1.5) & (dof < 10.0)), dof
