"""Closed-form VB with the Pitman-Yor weight prior (``fit(method="vb",
weight_prior="pitman_yor", discount=d)``) for Gaussian mixtures (in memory and on Dask)
and the conjugate families, and saved stick-breaking priors.

The weight factor is checked against the Beta-Bernoulli marginal of the sticks (a closed
form that does not go through the KL's digammas); the fits' ELBO never decreases; at
``d = 0`` the fit is the Dirichlet process' to rounding; on Dask (synchronous scheduler)
CAVI is the in-memory fit; bad discounts are refused naming ``discount``; saved DP and PY
results load with their :class:`~bayesmix.priors.StickBreakingPriors`.
"""

from __future__ import annotations

import dataclasses
import json
import warnings
from dataclasses import replace

import h5py
import numpy as np
import pytest
from scipy.special import betaln

import bayesmix as bm
from bayesmix.families import Bernoulli, Poisson
from bayesmix.inference.vb import default_prior, fit_vb
from bayesmix.inference.vb_weights import (
    expected_log_weights,
    posterior_concentration,
    stick_prior_parameters,
    weights_kl,
)
from bayesmix.priors import ResolvedPriors, StickBreakingPriors

DISCOUNTS = (0.1, 0.5, 0.9)
RNG = np.random.default_rng(20)
# three Gaussian clusters in 2-D, 150 rows
X = np.concatenate(
    [RNG.normal(centre, 1.0, size=(50, 2)) for centre in ([0.0, 0.0], [6.0, 0.0], [0, 6.0])]
)


def _quiet(fit, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.ConvergenceWarning)
        return fit(*args, **kwargs)


def _fit(covariance_type, X=X, K=6, **options):
    options = {"n_init": 1, "random_state": 3, "draws": 50, **options}
    return _quiet(bm.GaussianMixture(K, covariance_type).fit, X, method="vb", **options)


def _monotone(trace):
    trace = np.asarray(trace)
    return trace.size >= 3 and np.diff(trace).min() >= -1e-9 * np.abs(trace).max()


# -- the weight factor -------------------------------------------------------------------


@pytest.mark.parametrize("discount", (0.0, *DISCOUNTS))
def test_weight_factor_is_the_sticks_beta_bernoulli_marginal(discount):
    """For hard assignments with masses ``N``, ``max_q E_q[log p(z | v)] - KL(q || p)`` is
    ``log p(z) = sum_k log B(a_k + N_k, b_k + N_>k) - log B(a_k, b_k)`` with the prior
    sticks ``a_k = 1 - d``, ``b_k = alpha + k d``."""
    alpha, mass = 1.3, np.array([40.0, 0.0, 7.0, 1.0, 3.0, 0.0])
    q = posterior_concentration("pitman_yor", alpha, mass, discount=discount)
    bound = mass @ expected_log_weights("pitman_yor", q) - weights_kl(
        "pitman_yor", q, alpha, discount=discount
    )
    k = np.arange(1, mass.size + 1)
    a, b = 1.0 - discount, alpha + k * discount
    later = mass.sum() - np.cumsum(mass)
    want = (betaln(a + mass, b + later) - betaln(a, b)).sum()
    np.testing.assert_allclose(bound, want, rtol=1e-12)
    np.testing.assert_array_equal(stick_prior_parameters(alpha, 6, discount), [np.full(6, a), b])


# -- Gaussian VB in memory ---------------------------------------------------------------


@pytest.mark.parametrize("discount", DISCOUNTS)
def test_one_component_elbo_adds_the_sticks_marginal(discount):
    """K = 1: ``q`` is exact, and the ELBO is the Normal-Wishart log evidence (the
    Dirichlet fit's ELBO, tests/test_vb.py) plus the one stick's ``log B(1 - d + N,
    alpha + d) - log B(1 - d, alpha + d)``."""
    alpha = 0.7
    common = dict(mean_precision=0.5, weight_concentration=alpha)
    dirichlet = default_prior(X, 1, "full", "dirichlet_distribution", **common)
    sticks = replace(
        default_prior(X, 1, "full", "dirichlet_process", **common),
        weight_prior="pitman_yor",
        discount=discount,
    )
    fits = {
        prior.weight_prior: fit_vb(X, 1, "full", prior, max_iter=3, reg_covar=0.0)
        for prior in (dirichlet, sticks)
    }
    n_obs = len(X)
    stick = betaln(1 - discount + n_obs, alpha + discount) - betaln(1 - discount, alpha + discount)
    got = fits["pitman_yor"].elbo - fits["dirichlet_distribution"].elbo
    assert got == pytest.approx(stick, rel=1e-9)


@pytest.mark.parametrize("discount", DISCOUNTS)
@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_gaussian_elbo_never_decreases(covariance_type, discount):
    result = _fit(covariance_type, weight_prior="pitman_yor", discount=discount, init="random")
    assert _monotone(result.elbo)
    assert result.settings["discount"] == discount
    assert result.settings["vb_prior"]["discount"] == discount
    sticks = result.priors.weight_sticks
    np.testing.assert_allclose(sticks[0], 1.0 - discount)
    np.testing.assert_allclose(sticks[1], 1.0 + discount * np.arange(1, 6))


@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_zero_discount_is_the_dirichlet_process(covariance_type):
    dp = _fit(covariance_type, weight_prior="dirichlet_process")
    py = _fit(covariance_type, weight_prior="pitman_yor", discount=0.0)
    np.testing.assert_allclose(py.elbo, dp.elbo, rtol=1e-12, atol=0)
    for name in ("weights", "means", "covariances"):
        np.testing.assert_allclose(py.posterior[name].values, dp.posterior[name].values, atol=1e-12)
    for field in dataclasses.fields(ResolvedPriors):
        np.testing.assert_array_equal(
            getattr(py.priors, field.name), getattr(dp.priors, field.name)
        )
    np.testing.assert_array_equal(py.priors.weight_sticks, dp.priors.weight_sticks)


def test_n_clusters_posterior_reads_a_pitman_yor_fit():
    result = _fit("full", weight_prior="pitman_yor", discount=0.5, draws=200)
    probabilities = bm.n_clusters_posterior(result, random_state=0)
    assert probabilities.index.tolist() == list(range(1, 7))
    assert probabilities.sum() == pytest.approx(1.0)
    assert probabilities.attrs["mode"] == 3  # the simulated three clusters


# -- conjugate families ------------------------------------------------------------------


def _family_data(name):
    rng = np.random.default_rng(5)
    z = rng.integers(2, size=200)
    if name == "poisson":
        return rng.poisson(np.where(z[:, None] == 1, [9.0, 3.0], [2.0, 6.0])).astype(float)
    return rng.binomial(1, np.where(z[:, None] == 1, 0.85, 0.2), (200, 4)).astype(float)


FAMILIES = {"poisson": Poisson, "bernoulli": Bernoulli}


@pytest.mark.parametrize("discount", DISCOUNTS)
@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_elbo_never_decreases(name, discount):
    model = bm.Mixture(4, FAMILIES[name]())
    options = dict(weight_prior="pitman_yor", discount=discount, init="random", n_init=1)
    result = _quiet(model.fit, _family_data(name), method="vb", random_state=2, draws=50, **options)
    assert _monotone(result.elbo)
    assert result.settings["discount"] == discount


@pytest.mark.parametrize("name", list(FAMILIES))
def test_family_zero_discount_is_the_dirichlet_process(name):
    model = bm.Mixture(4, FAMILIES[name]())
    options = dict(random_state=2, draws=50, n_init=2)
    dp = _quiet(
        model.fit, _family_data(name), method="vb", weight_prior="dirichlet_process", **options
    )
    py = _quiet(
        model.fit,
        _family_data(name),
        method="vb",
        weight_prior="pitman_yor",
        discount=0.0,
        **options,
    )
    np.testing.assert_allclose(py.elbo, dp.elbo, rtol=1e-12, atol=0)
    np.testing.assert_allclose(
        py.posterior["weights"].values, dp.posterior["weights"].values, atol=1e-12
    )


# -- Dask --------------------------------------------------------------------------------


def test_cavi_on_dask_equals_the_in_memory_fit():
    dask = pytest.importorskip("dask")
    da = pytest.importorskip("dask.array")
    options = dict(weight_prior="pitman_yor", discount=0.5, random_state=4)
    want = _fit("full", **options)
    with dask.config.set(scheduler="synchronous"):
        got = _fit("full", X=da.from_array(X, chunks=(50, 2)), **options)
    assert got.settings["backend"] == "dask" and got.settings["discount"] == 0.5
    assert got.settings["n_iter"] == want.settings["n_iter"]
    np.testing.assert_allclose(got.elbo, want.elbo, rtol=1e-10, atol=0)
    np.testing.assert_allclose(
        got.posterior["weights"].values, want.posterior["weights"].values, rtol=1e-8, atol=1e-10
    )
    np.testing.assert_array_equal(got.priors.weight_sticks, want.priors.weight_sticks)
    with pytest.raises(ValueError, match="discount"):
        bm.GaussianMixture(3, "full").fit(da.from_array(X), method="vb", discount=0.3)
    # stochastic VB with every chunk in each step (rho = 1) makes CAVI's iterations
    cavi = _fit("full", max_iter=6, tol=1e-300, **options)
    with dask.config.set(scheduler="synchronous"):
        steps = _fit(
            "full",
            X=da.from_array(X, chunks=(50, 2)),
            mode="stochastic",
            batch_chunks=3,
            max_iter=5,
            tol=1e-300,
            **options,
        )
    assert steps.settings["discount"] == 0.5 and len(steps.elbo) == 6
    np.testing.assert_allclose(steps.elbo, cavi.elbo, rtol=1e-10, atol=0)


# -- bad options -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("weight_prior", "discount", "error"),
    [
        ("pitman_yor", 1.0, ValueError),
        ("pitman_yor", -0.1, ValueError),
        ("pitman_yor", float("nan"), ValueError),
        ("pitman_yor", True, TypeError),
        ("pitman_yor", "0.5", TypeError),
        ("dirichlet_process", 0.5, ValueError),
        ("dirichlet", 0.5, ValueError),
        ("dirichlet", False, TypeError),
    ],
)
def test_bad_discount_is_refused_naming_it(weight_prior, discount, error):
    options = dict(method="vb", weight_prior=weight_prior, discount=discount)
    with pytest.raises(error, match="discount"):
        bm.GaussianMixture(3, "full").fit(X, **options)
    with pytest.raises(error, match="discount"):
        bm.Mixture(2, Poisson()).fit(_family_data("poisson"), **options)


# -- saving ------------------------------------------------------------------------------


def _priors_equal(got, want):
    assert type(got) is type(want)
    for field in dataclasses.fields(want):
        np.testing.assert_array_equal(getattr(got, field.name), getattr(want, field.name))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A DP and a PY VB fit, saved."""
    paths = {}
    for weight_prior, discount in (("dirichlet_process", 0.0), ("pitman_yor", 0.4)):
        result = _fit("diag", weight_prior=weight_prior, discount=discount)
        path = tmp_path_factory.mktemp("py") / f"{weight_prior}.nc"
        result.save(path)
        paths[weight_prior] = (path, result)
    return paths


@pytest.mark.parametrize("weight_prior", ["dirichlet_process", "pitman_yor"])
def test_stick_breaking_priors_round_trip(saved, weight_prior):
    path, result = saved[weight_prior]
    loaded = bm.load(path)
    assert isinstance(result.priors, StickBreakingPriors)
    _priors_equal(loaded.priors, result.priors)
    assert loaded.settings["weight_prior"] == weight_prior
    assert loaded.settings.get("discount") == result.settings.get("discount")
    weights = result.posterior["weights"].values[0, :5]
    np.testing.assert_array_equal(
        loaded.priors.weights_log_density(weights), result.priors.weights_log_density(weights)
    )


def _edit_priors(path, edit):
    with h5py.File(path, "r+") as handle:
        value = handle.attrs["bayesmix_priors"]
        priors = json.loads(value.decode() if isinstance(value, bytes) else value)
        handle.attrs["bayesmix_priors"] = json.dumps(edit(priors))


def test_a_file_without_sticks_loads_with_the_base_priors(saved, tmp_path):
    path, result = saved["pitman_yor"]
    old = tmp_path / "old.nc"
    old.write_bytes(path.read_bytes())
    _edit_priors(old, lambda p: {k: v for k, v in p.items() if k != "weight_sticks"})
    loaded = bm.load(old)
    assert type(loaded.priors) is ResolvedPriors
    for field in dataclasses.fields(ResolvedPriors):
        np.testing.assert_array_equal(
            getattr(loaded.priors, field.name), getattr(result.priors, field.name)
        )


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda s: {**s, "shape": [2, 3], "data": s["data"][:6]}, r"has shape \(2, 3\)"),
        (lambda s: {**s, "data": [-1.0] + s["data"][1:]}, "must be finite and > 0"),
        (lambda s: [1.0, 2.0], "must be numeric; got list"),
    ],
)
def test_bad_sticks_name_the_field(saved, tmp_path, edit, message):
    path, _ = saved["pitman_yor"]
    bad = tmp_path / "bad.nc"
    bad.write_bytes(path.read_bytes())
    _edit_priors(bad, lambda p: {**p, "weight_sticks": edit(p["weight_sticks"])})
    with pytest.raises(ValueError, match=rf"priors\.weight_sticks {message}") as info:
        bm.load(bad)
    assert "\n" not in str(info.value)
