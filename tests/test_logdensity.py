"""The hand-written log posterior density that nutpie samples
(``bayesmix.families.gaussian.logdensity``) against PyMC's own log density and automatic
gradient of the same model, its C callbacks against the Python entry point, and a NUTS fit in a
fresh process that never imports PyMC.

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

import bayesmix as bm
from bayesmix.data import as_data
from bayesmix.families.gaussian import builder, logdensity

# (covariance type, ordered feature or None, K, D): every structure ordered and exchangeable
# at K = D = 3, and the edge sizes K = 1 (no simplex coordinate), D = 1 (no Bartlett normal)
SIZES = [(1, 3, None), (2, 1, 0), (1, 1, None)]
CASES = [
    (cov, order, 3, 3) for cov in ("full", "tied", "diag", "spherical") for order in (1, None)
] + [(cov, order, K, D) for cov in ("full", "tied", "diag", "spherical") for K, D, order in SIZES]
# the variances shared by all components (mclust's EII, EEI): ordered and exchangeable, and
# the edge sizes
CASES += [("EII", 1, 3, 3), ("EEI", None, 3, 3), ("EII", None, 1, 3), ("EEI", 0, 2, 1)]


def _problem(covariance_type: str, order_feature: int | None, K: int = 3, D: int = 3):
    """A K-component model on D skewed features, its PyMC model, the hand-written density's
    layout and inputs, the MAP-EM start as the PyMC free variables and the EM fit."""
    rng = np.random.default_rng(7)
    X = np.vstack(
        [
            rng.standard_normal((40, 3)) * [1.0, 2.0, 0.5] + [0.0, 1.0, -1.0],
            rng.standard_normal((30, 3)) + [3.0, -2.0, 2.0],
        ]
    )[:, :D]
    model = bm.GaussianMixture(K, covariance_type)
    data = as_data(X)
    priors = model.resolve_priors(data)
    spec = builder.ModelSpec(covariance_type, K, D, order_feature)
    em = model.fit(X, method="map", random_state=0)
    start = builder.point_estimate_start(
        spec, model.structure, priors, em.weights, em.means, em.params.covariances
    )
    pm_model = builder.build_pymc(spec, model.structure, data, priors)
    layout = logdensity.Layout(
        covariance_type, K, D, -1 if order_feature is None else order_feature
    )
    inputs = logdensity.density_inputs(data, priors, model.structure, K)
    return model, pm_model, layout, inputs, start, em


def _ours(theta, layout, inputs):
    grad = np.empty_like(theta)
    value = logdensity.log_density(
        theta, **inputs, kind=layout.kind, order_feature=layout.order_feature, grad=grad
    )
    return value, grad


def _expanded(theta, layout, inputs):
    out = np.empty(layout.n_expanded)
    logdensity.expand(
        theta,
        inputs["mean_loc"],
        inputs["mean_scale"],
        inputs["covariance_scale"],
        layout.kind,
        layout.order_feature,
        out,
    )
    return out


def _pymc_point(pm_model, theta):
    """Split ``theta`` into the PyMC model's value variables: the layout's blocks are the
    free variables in the model's order, each raveled row-major."""
    point, pos = {}, 0
    for rv in pm_model.free_RVs:
        value = pm_model.rvs_to_values[rv]
        shape = pm_model.initial_point()[value.name].shape
        size = int(np.prod(shape))
        point[value.name] = theta[pos : pos + size].reshape(shape)
        pos += size
    assert pos == theta.size
    return point


def _deterministics(pm_model, names):
    """PyMC's map from the value variables (unconstrained) to the named variables."""
    outputs = pm_model.replace_rvs_by_values([pm_model[name] for name in names])
    function = pm_model.compile_fn(
        outputs, inputs=pm_model.value_vars, mode="FAST_COMPILE", on_unused_input="ignore"
    )
    return function


@pytest.fixture(scope="module", params=CASES, ids=[f"{c}-{o}-K{k}-D{d}" for c, o, k, d in CASES])
def problem(request):
    return _problem(*request.param)


def test_density_and_gradient_equal_pymc(problem):
    _, pm_model, layout, inputs, start, _ = problem
    logp = pm_model.compile_logp(mode="FAST_COMPILE")
    dlogp = pm_model.compile_dlogp(mode="FAST_COMPILE")
    rng = np.random.default_rng(0)
    centre = logdensity.flat_start(layout, start)
    thetas = [centre] + [centre + 0.5 * rng.standard_normal(layout.n_dim) for _ in range(4)]
    ours, theirs = [], []
    for theta in thetas:
        value, grad = _ours(theta, layout, inputs)
        point = _pymc_point(pm_model, theta)
        np.testing.assert_allclose(grad, dlogp(point), rtol=1e-9, atol=1e-9)
        ours.append(value)
        theirs.append(float(logp(point)))
    # PyMC evaluates some constants (log 0.5, log 2) in float32: equal up to ~1e-8,
    # and differences between points equal to rounding
    np.testing.assert_allclose(ours, theirs, rtol=0, atol=1e-6)
    np.testing.assert_allclose(np.diff(ours), np.diff(theirs), rtol=1e-10, atol=1e-9)


def test_expanded_parameters_equal_pymc_deterministics(problem):
    model, pm_model, layout, inputs, start, _ = problem
    names = ["weights", "means", model.structure.pymc_precision_name]
    evaluate = _deterministics(pm_model, names)
    theta = logdensity.flat_start(layout, start) + 0.3
    out = _expanded(theta, layout, inputs)
    want = np.concatenate([np.ravel(v) for v in evaluate(_pymc_point(pm_model, theta))])
    np.testing.assert_allclose(out, want, rtol=1e-12, atol=1e-14)


def test_start_reproduces_the_point_estimate(problem):
    """``flat_start`` inverts the transforms: PyMC's deterministics at the start are the
    MAP-EM estimate, components sorted along the ordered feature."""
    model, pm_model, layout, _, start, em = problem
    theta = logdensity.flat_start(layout, start)
    precision = model.structure.pymc_precision_name
    weights, means, factor = _deterministics(pm_model, ["weights", "means", precision])(
        _pymc_point(pm_model, theta)
    )
    order = np.argsort(em.means[:, max(layout.order_feature, 0)], kind="stable")
    covariances = model.structure.covariance_from_precision(factor, layout.n_features)
    want_cov = em.params.covariances
    if not model.structure.shared_across_components:
        want_cov = want_cov[order]
    np.testing.assert_allclose(weights, em.weights[order] / em.weights.sum(), rtol=1e-9)
    np.testing.assert_allclose(means, em.means[order], rtol=1e-9, atol=1e-12)
    full_want = model.structure.to_full(want_cov, layout.n_components, layout.n_features)
    np.testing.assert_allclose(
        np.broadcast_to(covariances, full_want.shape), full_want, rtol=1e-9, atol=1e-12
    )


# a chi-square of exp(2000) or a variance of exp(-2000): prior density zero
FAR = {
    "full": 2000.0,
    "tied": 2000.0,
    "diag": -2000.0,
    "spherical": -2000.0,
    "EII": -2000.0,
    "EEI": -2000.0,
}


@pytest.mark.parametrize("covariance_type", list(FAR))
def test_c_callbacks_read_the_packed_inputs(covariance_type):
    """The callbacks nutpie calls (through the packed buffer) give exactly what the Python
    entry points give, and report a zero prior density as a rejected step (code 4)."""
    _, _, layout, inputs, start, _ = _problem(covariance_type, 1, K=3, D=2)
    buffer = logdensity.pack_inputs(layout, inputs)
    theta = logdensity.flat_start(layout, start) + 0.2
    want, want_grad = _ours(theta, layout, inputs)
    double = ctypes.POINTER(ctypes.c_double)
    grad, value = np.empty(layout.n_dim), np.empty(1)

    def call(x):
        return logdensity.nutpie_logp.ctypes(
            layout.n_dim,
            x.ctypes.data_as(double),
            grad.ctypes.data_as(double),
            value.ctypes.data_as(double),
            ctypes.c_void_p(buffer.ctypes.data),
        )

    assert call(theta) == 0
    assert value[0] == want
    np.testing.assert_array_equal(grad, want_grad)
    far = theta.copy()
    far[layout.n_dim - layout.n_covariance] = FAR[covariance_type]
    assert call(far) == 4
    out = np.empty(layout.n_expanded)
    code = logdensity.nutpie_expand.ctypes(
        layout.n_dim,
        layout.n_expanded,
        theta.ctypes.data_as(double),
        out.ctypes.data_as(double),
        ctypes.c_void_p(buffer.ctypes.data),
    )
    assert code == 0
    np.testing.assert_array_equal(out, _expanded(theta, layout, inputs))


@pytest.mark.parametrize("covariance_type", ["spherical", "diag"])
def test_one_component_posterior_is_the_conjugate_normal_one(covariance_type):
    """K=1 through nutpie on the hand-written density: with 2000 rows the posterior of the
    mean is the sample mean with standard deviation sqrt(variance / n), and the variance
    sits at the sample variance (the prior's weight is negligible)."""
    rng = np.random.default_rng(4)
    X = rng.standard_normal((2000, 2)) * [1.5, 1.5] + [2.0, -1.0]
    fit = bm.GaussianMixture(1, covariance_type).fit(
        X, method="nuts", chains=2, draws=500, tune=300, random_state=0, progressbar=False
    )
    assert fit.settings["log_density"] == "bayesmix"
    means = fit.posterior["means"].values.reshape(-1, 2)
    sd = np.sqrt(X.var(axis=0) / len(X))
    assert np.all(np.abs(means.mean(axis=0) - X.mean(axis=0)) < 0.2 * sd)
    np.testing.assert_allclose(means.std(axis=0), sd, rtol=0.15)
    variances = np.diagonal(fit.covariances, axis1=-2, axis2=-1)[0]
    want = X.var(axis=0) if covariance_type == "diag" else np.full(2, X.var(axis=0).mean())
    np.testing.assert_allclose(variances, want, rtol=0.03)


def test_nuts_on_complete_data_never_imports_pymc():
    """A fresh process fits by NUTS (nutpie) on the hand-written density: neither PyMC nor
    PyTensor is imported, and the settings say which density was sampled."""
    code = (
        "import json, sys, warnings; warnings.simplefilter('ignore'); import bayesmix as bm\n"
        "X = bm.datasets.load_faithful()\n"
        "fit = bm.GaussianMixture(2, 'full').fit(X, method='nuts', chains=2, draws=200,"
        " tune=200, random_state=0, progressbar=False)\n"
        "print(json.dumps({'imported': [m for m in ('pymc', 'pytensor') if m in sys.modules],"
        " 'log_density': fit.settings['log_density'], 'weights': fit.weights.tolist()}))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=600
    )
    out = json.loads(run.stdout.splitlines()[-1])
    assert out["imported"] == [] and out["log_density"] == "bayesmix"
    np.testing.assert_allclose(sorted(out["weights"]), [0.36, 0.64], atol=0.03)
