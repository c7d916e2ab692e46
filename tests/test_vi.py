"""ADVI: compiled step functions reused across fits, and minibatch ADVI.

References are independent: a fresh compile (for the cache), the simulation's truth,
EM's maximum-likelihood estimate and closed-form large-sample posterior standard
deviations (for minibatch ADVI). The faithful fits reuse the
session fixture's compiled model; the minibatch graph is compiled once, by the first fit
of the module fixture.
"""

from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import bayesmix as bm
from bayesmix.data import as_data
from bayesmix.inference.bayes import fit as bayes_fit
from bayesmix.inference.bayes.fit import clear_compiled_models, fit_vi

pytestmark = pytest.mark.slow

TRUTH = {
    "weights": np.array([0.4, 0.6]),
    "means": np.array([[-3.0, 1.0], [3.0, -1.0]]),
    "covariances": np.array([[[1.0, 0.4], [0.4, 0.8]], [[0.6, -0.2], [-0.2, 1.2]]]),
}
BATCH = 500


def assert_same_fit(a, b) -> None:
    xr.testing.assert_identical(a.posterior, b.posterior)
    np.testing.assert_array_equal(a.elbo, b.elbo)


def test_refit_is_cached_and_bitwise_identical(faithful, faithful_advi):
    cached = dict(bayes_fit._VI_CACHE)
    # batch_size >= n_obs is the full batch: the same compiled graph, the same fit
    refit = bm.GaussianMixture(2, "full").fit(
        faithful, method="advi", random_state=0, batch_size=len(faithful)
    )
    assert bayes_fit._VI_CACHE == cached
    assert refit.settings["batch_size"] == len(faithful)
    assert_same_fit(refit, faithful_advi)


def test_clear_compiled_models_empties_both_caches():
    saved = dict(bayes_fit._NUTPIE_CACHE), dict(bayes_fit._VI_CACHE)
    try:
        clear_compiled_models()
        assert not bayes_fit._NUTPIE_CACHE and not bayes_fit._VI_CACHE
    finally:  # keep the compiled models for the other tests
        bayes_fit._NUTPIE_CACHE.update(saved[0])
        bayes_fit._VI_CACHE.update(saved[1])


@pytest.fixture(scope="module")
def minibatch():
    """Minibatch ADVI on 20000 draws from a known mixture: a fresh compile, then a fit on
    other data (another length) and the first fit repeated from the cache."""
    model = bm.GaussianMixture(2, "full")
    X, _ = model.sample(20_000, TRUTH, random_state=1)
    other, _ = model.sample(15_000, TRUTH, random_state=2)
    for key in [k for k in bayes_fit._VI_CACHE if k[2] == BATCH]:
        del bayes_fit._VI_CACHE[key]  # the first fit below compiles afresh
    options = dict(method="advi", batch_size=BATCH, order_by=0)
    fresh = model.fit(X, random_state=3, **options)
    on_other = model.fit(other, random_state=4, **options)
    cached = model.fit(X, random_state=3, **options)
    em = model.fit(X, method="em", random_state=0)
    return X, fresh, on_other, cached, em


def test_minibatch_refit_on_other_data_equals_a_fresh_compile(minibatch):
    _, fresh, on_other, cached, _ = minibatch
    assert sum(k[2] == BATCH for k in bayes_fit._VI_CACHE) == 1
    assert on_other.data.n_obs == 15_000 and on_other.settings["batch_size"] == BATCH
    assert_same_fit(cached, fresh)


def complete_data_sds(em, n_obs: int) -> dict[str, np.ndarray]:
    """Large-sample posterior standard deviations of a well-separated mixture, whose
    memberships are all but certain (closed forms from EM's estimates): a mean
    coordinate sqrt(Sigma_dd / n_k), a weight sqrt(w (1 - w) / n), a covariance entry
    sqrt((Sigma_ij^2 + Sigma_ii Sigma_jj) / n_k) (Wishart), with n_k = n w_k."""
    counts = n_obs * em.weights
    variances = np.diagonal(em.covariances, axis1=1, axis2=2)
    cov = em.covariances
    return {
        "means": np.sqrt(variances / counts[:, None]),
        "weights": np.sqrt(em.weights * (1 - em.weights) / n_obs),
        "covariances": np.sqrt(
            (cov**2 + np.einsum("kii,kjj->kij", cov, cov)) / counts[:, None, None]
        ),
    }


def mean_field_ordered_sds(sds: np.ndarray) -> np.ndarray:
    """What mean-field ADVI can give for the ordered feature's means (K=2): PyMC's
    ordered transform has coordinates (mu_0, log(mu_1 - mu_0)), and a mean-field
    Gaussian keeps their conditional variances: 1 / (1/s_0^2 + 1/s_1^2) for mu_0, that
    plus s_1^2 (the difference given mu_0) for mu_1."""
    first = 1.0 / np.sqrt(1.0 / sds[0] ** 2 + 1.0 / sds[1] ** 2)
    return np.array([first, np.sqrt(first**2 + sds[1] ** 2)])


def test_minibatch_posterior_means_and_sds_match_the_complete_data_posterior(minibatch):
    """Means within a posterior sd of EM's maximum-likelihood estimate and posterior
    sds within a factor 1.5 of the closed forms (at N=20,000 the posterior is close to
    Gaussian and the priors are weak); the ordered feature's means against what a
    mean-field Gaussian can represent there."""
    X, fit, on_other, _, em = minibatch
    order = np.argsort(em.means[:, 0])  # ADVI orders the means of feature 0
    ref = complete_data_sds(em, len(X))
    ref = {name: value[order] for name, value in ref.items()}
    for result in (fit, on_other):
        assert result.settings["converged"] == 1
        assert np.abs(result.means - TRUTH["means"]).max() < 0.1
        assert np.abs(result.weights - TRUTH["weights"]).max() < 0.02
        assert np.abs(result.covariances - TRUTH["covariances"]).max() < 0.15
    post = fit.posterior
    sds = {name: post[name].std(("chain", "draw")).values for name in ref}
    for name, estimate in (
        ("means", fit.means),
        ("weights", fit.weights),
        ("covariances", fit.covariances),
    ):
        error = np.abs(estimate - getattr(em, name)[order]) / ref[name]
        assert error.max() < 1.0, (name, error)
    expected_sds = {**ref, "means": ref["means"].copy()}
    expected_sds["means"][:, 0] = mean_field_ordered_sds(ref["means"][:, 0])
    for name, sd in sds.items():
        ratio = sd / expected_sds[name]
        assert (ratio > 1 / 1.5).all() and (ratio < 1.5).all(), (name, ratio)


def test_minibatch_result_has_the_usual_form(minibatch, faithful_advi):
    X, fit, _, _, _ = minibatch
    assert type(fit) is type(faithful_advi)
    assert set(fit.posterior.data_vars) == set(faithful_advi.posterior.data_vars)
    assert dict(fit.posterior.sizes) == dict(faithful_advi.posterior.sizes)
    assert fit.data.n_obs == len(X) and np.isfinite(fit.elbo).all()
    tree = fit.to_datatree(X[:50])
    assert set(tree.children) == set(faithful_advi.to_datatree(X[:50]).children)
    assert tree["log_likelihood"].dataset.sizes["obs"] == 50


@pytest.mark.parametrize(
    ("batch_size", "error", "match"),
    [
        (0, ValueError, "batch_size must be >= 1"),
        (-5, ValueError, "batch_size must be >= 1"),
        (2.5, TypeError, "batch_size must be None"),
        ("100", TypeError, "batch_size must be None"),
        (True, TypeError, "batch_size must be None"),
    ],
)
def test_bad_batch_size_is_refused(faithful, batch_size, error, match):
    with pytest.raises(error, match=match):
        bm.GaussianMixture(2).fit(faithful, method="advi", batch_size=batch_size)


def test_minibatch_refuses_missing_values(faithful):
    X = faithful.to_numpy().copy()
    X[3, 1] = np.nan
    data = as_data(X, allow_missing=True)  # as fit(..., missing="marginalize") passes it
    with pytest.raises(ValueError, match="does not support missing values"):
        fit_vi(bm.GaussianMixture(2), data, "advi", batch_size=50)


def test_minibatch_stops_only_when_the_averaged_tail_is_stationary():
    """The stopping rule on synthetic window averages: stationary noise well inside the
    tolerance stops, a drift of one sd per window or a scale that keeps shrinking does
    not, nor does a run shorter than the minimum."""
    rng = np.random.default_rng(0)

    def sds(values):  # mean-field: softplus(rho)
        return np.logaddexp(0.0, values["rho"])

    rho = np.log(np.expm1(np.full(3, 0.01)))  # sd 0.01

    def windows(mu_step=0.0, rho_step=0.0, noise=0.001, count=8):
        return [
            {"mu": i * mu_step + noise * rng.standard_normal(3), "rho": rho + i * rho_step}
            for i in range(count)
        ]

    settled = bayes_fit._tail_settled
    assert settled(windows(), sds, 0.5)
    assert not settled(windows(count=bayes_fit.MINIBATCH_MIN_WINDOWS - 1), sds, 0.5)
    assert not settled(windows(mu_step=0.01), sds, 0.5)
    assert not settled(windows(rho_step=-0.1), sds, 0.5)
    assert not settled(windows(noise=0.02), sds, 0.5)


def test_minibatch_that_runs_out_of_steps_warns(minibatch):
    X = minibatch[0]
    with pytest.warns(bm.ConvergenceWarning, match="posterior standard deviations"):
        fit = bm.GaussianMixture(2, "full").fit(
            X, method="advi", batch_size=BATCH, order_by=0, n=1200, random_state=0
        )
    assert fit.settings["converged"] == 0 and fit.settings["n_iter"] == 1200
