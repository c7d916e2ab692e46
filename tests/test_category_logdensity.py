"""The hand-written log posterior densities of the latent class families
(``bayesmix.families.category_logdensity``) against PyMC's log density and automatic
gradient of the same model (:func:`build_family_pymc`) and central finite differences;
their C callbacks against the Python entry points; NUTS (nutpie on the hand-written
density) recovering simulated item probabilities and, for one class, the closed-form
Beta and Dirichlet posteriors.

PyMC's functions are compiled in ``FAST_COMPILE`` mode, three models in all.
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys

import numpy as np
import pytest
from conftest import pymc_point
from scipy import stats

import bayesmix as bm
from bayesmix.inference.bayes.family import build_family_pymc

SIZES = (3, 2, 4, 3)  # unequal numbers of categories: three Dirichlet groups in PyMC
ITEMS = np.array([[0.85, 0.2, 0.7, 0.9, 0.3], [0.15, 0.75, 0.25, 0.2, 0.8]])


def _codes(family: str, n: int = 60, seed: int = 4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    if family == "bernoulli":
        return (rng.uniform(size=(n, 4)) < 0.5).astype(float)
    return np.column_stack([rng.integers(0, c, n) for c in SIZES]).astype(float)


def _problem(family: str, K: int):
    X = _codes(family)
    kind = bm.families.Bernoulli() if family == "bernoulli" else bm.families.Categorical()
    model = bm.Mixture(K, kind.for_data(X))
    data = model.check_data(X)
    priors = model.resolve_priors(data)
    density = model.family.nutpie_density(X, priors, K)
    return model, data, priors, density, X


PYMC_CASES = [("bernoulli", 2), ("categorical", 1), ("categorical", 2)]


@pytest.fixture(scope="module", params=PYMC_CASES, ids=[f"{f}-K{k}" for f, k in PYMC_CASES])
def compiled(request):
    model, data, priors, density, X = _problem(*request.param)
    pm_model = build_family_pymc(model, data, priors)
    return (
        density,
        pm_model,
        pm_model.compile_logp(mode="FAST_COMPILE"),
        pm_model.compile_dlogp(mode="FAST_COMPILE"),
    )


def test_density_and_gradient_equal_pymc(compiled):
    """At random points, and at one where a probability is under the likelihood's floor
    (PyMC clips it and passes no gradient), value and gradient equal PyMC's."""
    density, pm_model, logp, dlogp = compiled
    rng = np.random.default_rng(0)
    thetas = [1.5 * rng.standard_normal(density.n_dim) for _ in range(5)]
    floored = thetas[0].copy()
    floored[-1] = -45.0  # a probability near exp(-45), under 1e-15
    for theta in [*thetas, floored]:
        grad = np.empty(density.n_dim)
        value = density.log_density(theta, grad)
        point = pymc_point(pm_model, theta)
        np.testing.assert_allclose(value, float(logp(point)), rtol=1e-9)
        np.testing.assert_allclose(grad, dlogp(point), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("family", ["bernoulli", "categorical"])
@pytest.mark.parametrize("K", [1, 2, 3])
def test_gradient_equals_central_differences(family, K):
    *_, density, _ = _problem(family, K)
    rng = np.random.default_rng(K)
    theta = rng.standard_normal(density.n_dim)
    grad = np.empty(density.n_dim)
    density.log_density(theta, grad)
    h, scratch = 1e-5, np.empty(density.n_dim)
    numeric = np.empty(density.n_dim)
    for i in range(density.n_dim):
        step = np.zeros(density.n_dim)
        step[i] = h
        numeric[i] = (
            density.log_density(theta + step, scratch) - density.log_density(theta - step, scratch)
        ) / (2 * h)
    np.testing.assert_allclose(grad, numeric, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("family", ["bernoulli", "categorical"])
def test_start_expansion_and_c_callbacks(family):
    """The start's coordinates expand back to it (the Categorical's table padded with
    zeros), and the callbacks nutpie calls give exactly what the Python entry points
    give."""
    model, _, priors, density, X = _problem(family, 2)
    em = model.fit(X, method="map", random_state=0)
    start = {"weights": em.parameters["weights"]}
    start.update(model.family.pymc_initial_values(em.parameters, em.priors))
    theta = density.flat_start(start)
    assert theta.size == density.n_dim
    expanded = density.expand(theta)
    K = density.n_components
    np.testing.assert_allclose(expanded[:K], start["weights"], rtol=1e-12)
    table = expanded[K:].reshape(density.shapes["probabilities"])
    if family == "bernoulli":
        np.testing.assert_allclose(table, start["probabilities"], rtol=1e-12)
    else:
        for d, size in enumerate(SIZES):
            part = start[f"probabilities_{size}"][:, SIZES[:d].count(size)]
            np.testing.assert_allclose(table[:, d, :size], part, rtol=1e-12)
            assert (table[:, d, size:] == 0).all()

    double = ctypes.POINTER(ctypes.c_double)
    address = ctypes.c_void_p(density.buffer.ctypes.data)
    want_grad = np.empty(density.n_dim)
    want = density.log_density(theta, want_grad)
    grad, value = np.empty(density.n_dim), np.empty(1)
    code = density.nutpie_logp.ctypes(
        density.n_dim,
        theta.ctypes.data_as(double),
        grad.ctypes.data_as(double),
        value.ctypes.data_as(double),
        address,
    )
    assert code == 0
    assert value[0] == want
    np.testing.assert_array_equal(grad, want_grad)
    out = np.empty(density.n_expanded)
    code = density.nutpie_expand.ctypes(
        density.n_dim,
        density.n_expanded,
        theta.ctypes.data_as(double),
        out.ctypes.data_as(double),
        address,
    )
    assert code == 0
    np.testing.assert_array_equal(out, expanded)


def test_missing_entries_have_no_hand_written_density():
    X = _codes("bernoulli")
    X[0, 1] = np.nan
    priors = {
        "weight_concentration": np.ones(2),
        "probability_alpha": np.full(4, 1.5),
        "probability_beta": np.full(4, 1.5),
    }
    assert bm.families.Bernoulli().nutpie_density(X, priors, 2) is None


@pytest.mark.slow
def test_nuts_recovers_item_probabilities():
    """Two classes of five binary items: NUTS by nutpie on the hand-written density (no
    PyMC), posterior means within 0.07 of the simulated item probabilities."""
    rng = np.random.default_rng(11)
    z = rng.choice(2, 1500, p=[0.6, 0.4])
    X = (rng.uniform(size=(z.size, ITEMS.shape[1])) < ITEMS[z]).astype(float)
    fit = bm.Mixture(2, bm.families.Bernoulli()).fit(
        X, method="nuts", chains=2, draws=500, tune=500, random_state=0, progressbar=False
    )
    assert (fit.settings["sampler"], fit.settings["log_density"]) == ("nutpie", "bayesmix")
    mean = fit.posterior["probabilities"].mean(("chain", "draw")).values
    if np.abs(mean - ITEMS).sum() > np.abs(mean[::-1] - ITEMS).sum():
        mean = mean[::-1]
    np.testing.assert_allclose(mean, ITEMS, atol=0.07)


@pytest.mark.slow
@pytest.mark.parametrize("family", ["bernoulli", "categorical"])
def test_one_class_nuts_equals_the_conjugate_posterior(family):
    """With one class the posterior of each item is Beta (Dirichlet): NUTS's means and
    sds equal the closed form within Monte Carlo error."""
    rng = np.random.default_rng(2)
    if family == "bernoulli":
        X = (rng.uniform(size=(150, 3)) < [0.2, 0.5, 0.9]).astype(float)
        kind = bm.families.Bernoulli()
        a = 1.5 + X.sum(axis=0)
        b = 1.5 + (1 - X).sum(axis=0)
    else:
        X = np.column_stack([rng.integers(0, c, 150) for c in (3, 2)]).astype(float)
        kind = bm.families.Categorical()
        # the Dirichlet's marginal of category 0 is Beta(a_0, sum of the others)
        a = np.array([1.5 + (X[:, d] == 0).sum() for d in range(2)])
        b = np.array([1.5 * c + X.shape[0] for c in (3, 2)]) - a
    fit = bm.Mixture(1, kind).fit(
        X, method="nuts", chains=2, draws=1000, tune=500, random_state=1, progressbar=False
    )
    assert fit.settings["sampler"] == "nutpie"
    draws = fit.posterior["probabilities"].values[:, :, 0]
    if family == "categorical":
        draws = draws[..., 0]
    draws = draws.reshape(-1, draws.shape[-1])
    exact = stats.beta(a, b)
    se = exact.std() / np.sqrt(draws.shape[0] / 2)  # an ESS of at least half the draws
    np.testing.assert_array_less(np.abs(draws.mean(axis=0) - exact.mean()), 4 * se)
    np.testing.assert_allclose(draws.std(axis=0), exact.std(), rtol=0.1)


@pytest.mark.slow
def test_advi_takes_the_hand_written_density():
    rng = np.random.default_rng(5)
    z = rng.choice(2, 800)
    X = np.column_stack(
        [
            np.where(z == 0, rng.choice(3, z.size, p=p), rng.choice(3, z.size, p=p[::-1]))
            for p in ([0.8, 0.15, 0.05], [0.7, 0.2, 0.1], [0.6, 0.3, 0.1])
        ]
    ).astype(float)
    fit = bm.Mixture(2, bm.families.Categorical()).fit(
        X, method="advi", random_state=0, progressbar=False
    )
    assert fit.settings["log_density"] == "bayesmix"
    first = fit.posterior["probabilities"].mean(("chain", "draw")).values[:, 0, 0]
    np.testing.assert_allclose(np.sort(first), [0.05, 0.8], atol=0.1)


FRESH_FIT = """
import json, sys, warnings
warnings.simplefilter("ignore")
import numpy as np
import bayesmix as bm

rng = np.random.default_rng(0)
X = np.column_stack([rng.integers(0, c, 200) for c in (3, 2, 4)]).astype(float)
fit = bm.Mixture(2, bm.families.Categorical()).fit(
    X, method="nuts", chains=1, draws=200, tune=200, random_state=0, progressbar=False
)
print(json.dumps({
    "imported": [m for m in ("pymc", "pytensor") if m in sys.modules],
    "sampler": fit.settings["sampler"],
    "shape": list(fit.posterior["probabilities"].shape),
}))
"""


@pytest.mark.slow
def test_fresh_process_nuts_never_imports_pymc():
    run = subprocess.run(
        [sys.executable, "-c", FRESH_FIT], capture_output=True, text=True, check=True, timeout=600
    )
    out = json.loads(run.stdout.splitlines()[-1])
    assert out == {"imported": [], "sampler": "nutpie", "shape": [1, 200, 2, 3, 4]}
