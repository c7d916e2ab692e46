"""ADVI on the families' hand-written densities (:mod:`bayesmix.inference.bayes.advi`),
against closed forms and nutpie's NUTS on the same density; no PyMC model is compiled.

Constant-rate Adam stops at a noisy last iterate (as PyMC's ADVI does): on the K=1
Poisson model the approximation's mean lands within about 0.4 posterior sds of the exact
one and its sd within about 10% (seeds 0-5), so the tolerances below are those.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import digamma, polygamma

import bayesmix as bm
from bayesmix.inference.bayes.advi import fit_advi


class GaussianDensity:
    """A Gaussian log density with the families' density interface."""

    def __init__(self, mean, covariance):
        self.mean = np.asarray(mean, dtype=float)
        self.precision = np.linalg.inv(covariance)
        self.n_dim = self.mean.size
        self.shapes = {"x": (self.n_dim,)}

    def log_density(self, theta, grad):
        residual = theta - self.mean
        grad[:] = -self.precision @ residual
        return -0.5 * residual @ self.precision @ residual

    def expand(self, theta):
        return np.array(theta, dtype=float)


def _fit(X, K, method, family=None, **options):
    family = bm.families.Poisson() if family is None else family
    options.setdefault("random_state", 0)
    return bm.Mixture(K, family).fit(X, method=method, progressbar=False, **options)


def _log_draws(post, names):
    """The draws' logs, one column per scalar (chain and draw flattened)."""
    columns = [post.posterior[name].values for name in names]
    return np.log(np.concatenate([c.reshape(c.shape[0] * c.shape[1], -1) for c in columns], 1))


@pytest.fixture(scope="module")
def counts():
    """Two well separated Poisson components in two columns."""
    rates = np.repeat([[2.0, 6.0], [9.0, 1.0]], [150, 100], axis=0)
    return np.random.default_rng(11).poisson(rates).astype(float)


@pytest.fixture(scope="module")
def overlapping():
    """One column, two close Poisson components: weights and rates strongly correlated."""
    rng = np.random.default_rng(5)
    return np.concatenate([rng.poisson(2.0, (120, 1)), rng.poisson(5.0, (80, 1))]).astype(float)


def test_k1_poisson_advi_matches_the_exact_log_rate_posterior():
    """The rate's posterior is Gamma(a + sum x, a/m + n): the log rate's mean is
    digamma(shape) - log(rate), its variance trigamma(shape); the best Gaussian in KL
    is within O(shape**-2) of both."""
    rng = np.random.default_rng(3)
    X = rng.poisson([3.0, 0.7], (60, 2)).astype(float)
    model = bm.Mixture(1, bm.families.Poisson(), priors={"rate_shape": 2.0, "rate_mean": 2.0})
    post = model.fit(X, method="advi", draws=4000, random_state=0, progressbar=False)
    shape, rate = 2.0 + X.sum(axis=0), 2.0 / 2.0 + X.shape[0]
    mean, sd = digamma(shape) - np.log(rate), np.sqrt(polygamma(1, shape))
    log_rates = _log_draws(post, ["rates"])
    assert np.all(np.abs(log_rates.mean(axis=0) - mean) < 0.4 * sd)
    np.testing.assert_allclose(log_rates.std(axis=0), sd, rtol=0.12)
    np.testing.assert_allclose(log_rates.mean(axis=0), mean, rtol=0.05)
    assert post.settings["log_density"] == "bayesmix"


def test_poisson_advi_agrees_with_nuts_on_the_same_density(counts):
    nuts = _fit(counts, 2, "nuts", draws=500, tune=500, chains=2)
    for method in ("advi", "fullrank_advi"):
        vi = _fit(counts, 2, method)
        sd = nuts.posterior["rates"].std(("chain", "draw")).values
        assert np.all(np.abs(vi.means - nuts.means) < 0.5 * sd), method
        weight_sd = nuts.posterior["weights"].std(("chain", "draw")).values
        assert np.all(np.abs(vi.weights - nuts.weights) < 0.5 * weight_sd), method


def test_fullrank_advi_recovers_the_posterior_correlations(overlapping):
    names = ["weights", "rates"]
    nuts = np.corrcoef(_log_draws(_fit(overlapping, 2, "nuts", draws=800, chains=2), names).T)
    full = np.corrcoef(_log_draws(_fit(overlapping, 2, "fullrank_advi"), names).T)
    mean_field = np.corrcoef(_log_draws(_fit(overlapping, 2, "advi"), names).T)
    assert abs(nuts[2, 3]) > 0.4  # the two rates, and each rate with the weights
    np.testing.assert_allclose(full, nuts, atol=0.15)
    assert abs(mean_field[2, 3]) < 0.15 and abs(mean_field[0, 2]) < 0.15


def test_fullrank_advi_fits_a_gaussian_exactly():
    """On a Gaussian target the full-rank family holds the posterior itself; mean-field
    finds the conditional sds ``1 / sqrt(precision_ii)``."""
    covariance = np.array([[4.0, 0.9, 0.0], [0.9, 0.25, 0.0], [0.0, 0.0, 1.0]])
    density = GaussianDensity([5.0, -3.0, 20.0], covariance)
    full = fit_advi(density, [4.0, -2.0, 19.0], method="fullrank_advi", seed=0, n=20000)
    fitted = full.scale @ full.scale.T
    np.testing.assert_allclose(full.mean, density.mean, atol=0.1)
    np.testing.assert_allclose(np.sqrt(np.diag(fitted)), np.sqrt(np.diag(covariance)), rtol=0.1)
    assert fitted[0, 1] / np.sqrt(fitted[0, 0] * fitted[1, 1]) == pytest.approx(0.9, abs=0.05)
    mean_field = fit_advi(density, [4.0, -2.0, 19.0], seed=0, n=20000)
    np.testing.assert_allclose(
        np.diag(mean_field.scale), 1 / np.sqrt(np.diag(density.precision)), rtol=0.1
    )
    assert mean_field.draws["x"].shape == (1, 1000, 3)


def test_advi_is_reproducible_and_its_elbo_rises(counts):
    first, again = _fit(counts, 2, "advi", n=3000), _fit(counts, 2, "advi", n=3000)
    np.testing.assert_array_equal(first.posterior["rates"].values, again.posterior["rates"].values)
    np.testing.assert_array_equal(first.elbo, again.elbo)
    other = _fit(counts, 2, "advi", n=3000, random_state=1)
    assert not np.array_equal(first.elbo, other.elbo)
    assert first.elbo[:300].mean() < first.elbo[-300:].mean()
    assert first.settings["log_density"] == "bayesmix"
    assert first.settings["iterations"] == first.elbo.size == 3000
    assert first.posterior.sizes["chain"] == 1 and first.posterior.sizes["draw"] == 1000


def test_the_stopping_rule_is_pymcs():
    """CheckParametersConvergence: the parameters after step 1 kept, then checked every
    100 steps by the relative change's max norm (rho starts at 0, so its relative change
    over the first 99 steps is large)."""
    density = GaussianDensity([5.0, -3.0], np.eye(2))
    fitted = fit_advi(density, [5.0, -3.0], seed=0, tolerance=10.0)
    assert fitted.converged and fitted.iterations in (100, 200)
    fitted = fit_advi(density, [5.0, -3.0], seed=0, n=250)
    assert not fitted.converged and fitted.iterations == fitted.elbo.size == 250


@pytest.mark.parametrize(
    "options, match",
    [
        ({"n": 0}, "n"),
        ({"draws": -1}, "draws"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"identify": "x"}, "identify"),
    ],
)
def test_bad_arguments_are_refused(counts, options, match):
    with pytest.raises(ValueError, match=match):
        _fit(counts, 2, "advi", **options)


def test_fit_advi_refuses_a_bad_method_or_start():
    density = GaussianDensity([0.0, 0.0], np.eye(2))
    with pytest.raises(ValueError, match="method"):
        fit_advi(density, [0.0, 0.0], method="svgd")
    with pytest.raises(ValueError, match="start"):
        fit_advi(density, [0.0, 0.0, 0.0])
