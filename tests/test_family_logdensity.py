"""The hand-written log posterior densities of the count families
(``bayesmix.families.count_logdensity``) against PyMC's own log density and automatic
gradient of the same model (:func:`build_family_pymc`), their C callbacks against the
Python entry points, and a NUTS fit in a fresh process that never imports PyMC against
the PyMC route's posterior.

PyMC's functions are compiled in ``FAST_COMPILE`` mode (no numba), so these tests add no
slow compile to the suite.
"""

from __future__ import annotations

import ctypes
import json
import subprocess
import sys

import numpy as np
import pytest
from scipy import special

import bayesmix as bm
from bayesmix.families import count_logdensity
from bayesmix.inference.bayes.family import build_family_pymc

FAMILIES = {"poisson": bm.families.Poisson, "negative_binomial": bm.families.NegativeBinomial}
CASES = [(family, K, D) for family in FAMILIES for K in (1, 2, 3) for D in (1, 2, 3)]


def _counts(family: str, D: int, n: int = 120, seed: int = 5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    means = np.array([[1.5, 6.0, 0.4], [9.0, 2.0, 40.0]])[:, :D]
    z = rng.integers(0, 2, n)
    if family == "poisson":
        return rng.poisson(means[z]).astype(float)
    alpha = 2.5
    return rng.negative_binomial(alpha, alpha / (alpha + means[z])).astype(float)


def _problem(family: str, K: int, D: int):
    X = _counts(family, D)
    model = bm.Mixture(K, FAMILIES[family]())
    data = model.check_data(X)
    priors = model.resolve_priors(data)
    pm_model = build_family_pymc(model, data, priors)
    density = count_logdensity.count_density(family, X, priors, K)
    return model, pm_model, density, X, priors


def _pymc_point(pm_model, theta):
    """Split ``theta`` into the PyMC model's value variables, in the model's order."""
    point, pos = {}, 0
    for rv in pm_model.free_RVs:
        value = pm_model.rvs_to_values[rv]
        shape = pm_model.initial_point()[value.name].shape
        size = int(np.prod(shape))
        point[value.name] = theta[pos : pos + size].reshape(shape)
        pos += size
    assert pos == theta.size
    return point


@pytest.fixture(scope="module", params=CASES, ids=[f"{f}-K{k}-D{d}" for f, k, d in CASES])
def problem(request):
    return _problem(*request.param)


def test_density_and_gradient_equal_pymc(problem):
    model, pm_model, density, X, _ = problem
    assert [rv.name for rv in pm_model.free_RVs] == ["weights", *density.names]
    logp = pm_model.compile_logp(mode="FAST_COMPILE")
    dlogp = pm_model.compile_dlogp(mode="FAST_COMPILE")
    rng = np.random.default_rng(0)
    em = model.fit(X, method="map", random_state=0)
    start = {"weights": em.parameters["weights"]}
    start.update({name: em.parameters[name] for name in density.names})
    centre = density.flat_start(start)
    thetas = [centre] + [centre + 0.7 * rng.standard_normal(density.n_dim) for _ in range(4)]
    ours, theirs = [], []
    for theta in thetas:
        grad = np.empty(density.n_dim)
        value = density.log_density(theta, grad)
        point = _pymc_point(pm_model, theta)
        np.testing.assert_allclose(grad, dlogp(point), rtol=1e-9, atol=1e-8)
        ours.append(value)
        theirs.append(float(logp(point)))
    np.testing.assert_allclose(ours, theirs, rtol=1e-12, atol=1e-6)
    np.testing.assert_allclose(np.diff(ours), np.diff(theirs), rtol=1e-10, atol=1e-8)
    # the expansion is the constrained free variables
    expanded = density.expand(centre)
    weights = start["weights"] / start["weights"].sum()
    want = np.concatenate([weights] + [np.ravel(start[name]) for name in density.names])
    np.testing.assert_allclose(expanded, want, rtol=1e-12)


def test_digamma_equals_scipy():
    x = np.concatenate([np.geomspace(1e-4, 1e6, 300), np.arange(1.0, 60.0)])
    ours = np.array([count_logdensity.digamma(v) for v in x])
    np.testing.assert_allclose(ours, special.digamma(x), rtol=2e-15, atol=1e-15)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_c_callbacks_read_the_packed_buffer(family):
    """The callbacks nutpie calls give exactly what the Python entry points give, and
    report a zero density as a rejected step (code 4)."""
    _, _, density, X, priors = _problem(family, 3, 2)
    theta = np.random.default_rng(1).standard_normal(density.n_dim)
    want_grad = np.empty(density.n_dim)
    want = density.log_density(theta, want_grad)
    double = ctypes.POINTER(ctypes.c_double)
    grad, value = np.empty(density.n_dim), np.empty(1)

    def call(x):
        return density.nutpie_logp.ctypes(
            density.n_dim,
            x.ctypes.data_as(double),
            grad.ctypes.data_as(double),
            value.ctypes.data_as(double),
            ctypes.c_void_p(density.buffer.ctypes.data),
        )

    assert call(theta) == 0
    assert value[0] == want
    np.testing.assert_array_equal(grad, want_grad)
    far = theta.copy()
    far[density.n_components - 1] = 800.0  # a rate (or mean) of exp(800)
    assert call(far) == 4
    out = np.empty(density.n_expanded)
    code = density.nutpie_expand.ctypes(
        density.n_dim,
        density.n_expanded,
        theta.ctypes.data_as(double),
        out.ctypes.data_as(double),
        ctypes.c_void_p(density.buffer.ctypes.data),
    )
    assert code == 0
    np.testing.assert_array_equal(out, density.expand(theta))


FRESH_FIT = """
import json, sys, warnings
warnings.simplefilter("ignore")
import numpy as np
import bayesmix as bm

X = np.array(json.loads(sys.argv[1]))
fit = bm.Mixture(2, getattr(bm.families, sys.argv[2])()).fit(
    X, method="nuts", chains=2, draws=1000, tune=500, random_state=0, progressbar=False
)
table = fit.summary()
print(json.dumps({
    "imported": [m for m in ("pymc", "pytensor") if m in sys.modules],
    "sampler": fit.settings["sampler"],
    "log_density": fit.settings["log_density"],
    "mean": table["mean"].astype(float).tolist(),
    "mcse": table["mcse_mean"].astype(float).tolist(),
    "index": list(table.index),
}))
"""


@pytest.mark.slow
@pytest.mark.parametrize("family", ["Poisson", "NegativeBinomial"])
def test_fresh_process_nuts_never_imports_pymc_and_matches_the_pymc_route(family, monkeypatch):
    """A fresh process fits by nutpie on the hand-written density without importing
    PyMC or PyTensor; its posterior means equal those of the PyMC route (the same model
    compiled by PyMC and sampled by PyMC's NUTS) within the Monte Carlo error."""
    rng = np.random.default_rng(3)
    if family == "Poisson":
        X = np.concatenate([rng.poisson(2.0, (200, 1)), rng.poisson(9.0, (100, 1))])
    else:  # overdispersed (alpha = 4): the dispersions are identified
        X = np.concatenate(
            [rng.negative_binomial(4.0, 4.0 / 6.0, (200, 1)), rng.poisson(12.0, (100, 1))]
        )
    run = subprocess.run(
        [sys.executable, "-c", FRESH_FIT, json.dumps(X.astype(float).tolist()), family],
        capture_output=True,
        text=True,
        check=True,
        timeout=600,
    )
    fast = json.loads(run.stdout.splitlines()[-1])
    assert fast["imported"] == []
    assert (fast["sampler"], fast["log_density"]) == ("nutpie", "bayesmix")

    monkeypatch.setattr(getattr(bm.families, family), "nutpie_density", lambda *args: None)
    slow = bm.Mixture(2, getattr(bm.families, family)()).fit(
        X, method="nuts", chains=2, draws=1000, tune=500, random_state=0, progressbar=False
    )
    assert (slow.settings["sampler"], slow.settings["log_density"]) == ("pymc", "pymc")
    table = slow.summary()
    assert list(table.index) == fast["index"]
    difference = np.abs(np.array(fast["mean"]) - table["mean"].astype(float).values)
    mcse = np.hypot(fast["mcse"], table["mcse_mean"].astype(float).values)
    assert np.all(difference < 4.0 * mcse + 1e-3), (difference, mcse)
