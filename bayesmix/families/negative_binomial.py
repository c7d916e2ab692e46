"""Negative binomial components: overdispersed counts, one mean and one dispersion per
component and column.

Parametrised as PyMC's ``NegativeBinomial(mu, alpha)``: mean ``mu``, variance
``mu + mu**2 / alpha`` (``alpha -> inf`` is the Poisson limit). Columns are independent
given the component. Log mass of one column:
``lgamma(x + a) - lgamma(a) - lgamma(x + 1) + a log(a / (a + mu)) + x log(mu / (a + mu))``.

Sufficient statistics: per component and column the responsibility mass, the weighted
sum, and the weighted histogram of the column's distinct values (the ``lgamma(x + a)``
term needs it); they add over blocks of rows. The M-step is a conditional maximisation
(ECM): ``mu`` in closed form given ``alpha`` (the weighted mean without priors; the root
of a quadratic under the Gamma prior), then ``alpha`` by safeguarded Newton steps in
``log alpha`` from the previous value, vectorised over components and columns.

Priors: ``mu_kd ~ Gamma(mean_shape, mean_shape / mean_mean_d)`` (mean_mean defaults to
the column's data mean, shape 2), ``log alpha_kd ~ Normal(dispersion_log_loc,
dispersion_log_scale)`` (defaults 0 and 2.5: 95% of the prior mass on alpha in
0.007-134, from heavy overdispersion to nearly Poisson).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse
from scipy.special import digamma, gammaln, polygamma

from bayesmix.families.base import (
    CountData,
    CountFamily,
    DataSummary,
    Parameters,
    positive_hyperparameter,
    pymc_dims,
    real_hyperparameter,
)
from bayesmix.families.kernels import table_chunks, table_pass
from bayesmix.families.poisson import PRIOR_MEAN_FLOOR, RATE_FLOOR, log_gamma_density

__all__ = ["NegativeBinomial"]

# Bracket of the dispersion's M-step (alpha = 1e6 is Poisson to within 1e-6 relative variance).
DISPERSION_BOUNDS = (1e-4, 1e6)
NEWTON_STEPS, NEWTON_TOL = 50, 1e-6
# Largest count for which the dispersion step sums 1 / (a + j) instead of calling digamma.
TAIL_SUM_MAX = 10_000
DISPERSION_LOG_LOC, DISPERSION_LOG_SCALE = 0.0, 2.5


@dataclass(frozen=True)
class CountHistogram:
    """The data's distinct observed values, a sparse one-hot map rows -> (column, value)
    over the observed entries, the counts themselves (:class:`CountData`), and each
    entry's value index ``(n_obs, D)``, unsigned (``len(values)`` for a missing entry:
    the bins of :func:`~bayesmix.families.kernels.table_pass`)."""

    values: np.ndarray
    one_hot: scipy.sparse.csr_matrix
    data: CountData
    bins: np.ndarray


class NegativeBinomial(CountFamily):
    """Negative binomial components for overdispersed counts, one mean and one
    dispersion ``alpha`` (variance ``mu + mu**2 / alpha``) per component and column.

    Priors (``Mixture(..., priors={...})``): ``mean_shape`` (2), ``mean_mean`` (column
    means), ``dispersion_log_loc`` (0), ``dispersion_log_scale`` (2.5).
    """

    name = "negative_binomial"
    parameters = {"means": ("feature",), "dispersions": ("feature",)}
    prior_defaults = {
        "mean_shape": 2.0,
        "mean_mean": None,
        "dispersion_log_loc": DISPERSION_LOG_LOC,
        "dispersion_log_scale": DISPERSION_LOG_SCALE,
    }

    def n_parameters(self, n_features: int) -> int:
        return 2 * n_features

    def resolve_priors(
        self, given: Mapping[str, Any], X: np.ndarray, weights: np.ndarray
    ) -> dict[str, np.ndarray]:
        n_features = X.shape[1]
        data_mean = self.data_means(X, weights, PRIOR_MEAN_FLOOR)
        loc = real_hyperparameter(given, "dispersion_log_loc", DISPERSION_LOG_LOC, n_features)
        return {
            "mean_shape": positive_hyperparameter(given, "mean_shape", 2.0, n_features),
            "mean_mean": positive_hyperparameter(given, "mean_mean", data_mean, n_features),
            "dispersion_log_loc": loc,
            "dispersion_log_scale": positive_hyperparameter(
                given, "dispersion_log_scale", DISPERSION_LOG_SCALE, n_features
            ),
        }

    def log_prior(self, params: Parameters, priors: Mapping[str, np.ndarray]) -> float:
        means = log_gamma_density(params["means"], priors["mean_shape"], priors["mean_mean"])
        return float(means.sum() + _log_lognormal(params["dispersions"], priors).sum())

    def prepare(self, X: np.ndarray, summary: DataSummary | None = None) -> CountHistogram:
        """The histogram's map over the distinct counts of ``X``, or of all rows
        (``summary.values``) when ``X`` is one block of them."""
        data = CountData.of(X)
        observed = ~np.isnan(X)
        if summary is None:
            values, index = np.unique(X[observed], return_inverse=True)
        else:
            values = summary.values
            index = np.searchsorted(values, X[observed])
        n_obs, n_features = X.shape
        rows, cols = np.nonzero(observed)
        one_hot = scipy.sparse.csr_matrix(
            (np.ones(rows.size), (rows, cols * values.size + index)),
            shape=(n_obs, n_features * values.size),
        )
        bins = np.full((n_obs, n_features), values.size, dtype=np.uint64)
        bins[observed] = index
        return CountHistogram(values, one_hot, data, bins)

    def initial_parameters(
        self, X: np.ndarray, centres: np.ndarray, weights: np.ndarray
    ) -> Parameters:
        return {
            "means": np.maximum(centres, 0.0) + 0.5,
            "dispersions": np.full(centres.shape, 10.0),
        }

    def statistics(
        self, X: np.ndarray, resp: np.ndarray, params: Parameters, prepared: CountHistogram
    ) -> Parameters:
        n_components, n_features = resp.shape[1], X.shape[1]
        histogram = np.asarray(prepared.one_hot.T @ resp)  # (D * V, K)
        histogram = histogram.reshape(n_features, -1, n_components).transpose(2, 0, 1)
        return {
            "sum_x": resp.T @ prepared.data.values,
            "histogram": histogram,
            "observed_mass": prepared.data.observed_mass(resp),
        }

    def expectation(
        self,
        X: np.ndarray,
        weights: np.ndarray,
        log_weights: np.ndarray,
        params: Parameters,
        prepared: CountHistogram,
    ) -> tuple[float, np.ndarray, Parameters] | None:
        """One fused pass (:func:`~bayesmix.families.kernels.table_pass`): each entry's
        log mass ``lgamma(x + a) - lgamma(a) + a log(a / (a + mu)) + x log(mu / (a +
        mu))`` from a table over the distinct counts (one ``lgamma`` per component,
        column and value, not per entry), whose weighted histogram the pass returns with
        it; ``sum r x`` is the histogram times the values. None (the unfused path) when
        the table would be larger than the data."""
        mu, alpha = params["means"], params["dispersions"]
        n_values = prepared.values.size
        n_cells = alpha.size * (n_values + 1)
        if n_values > X.shape[0] or n_cells > X.size:
            return None
        log_total = np.log(alpha + mu)
        table = np.zeros(alpha.shape + (n_values + 1,))  # the last bin: missing entries
        table[..., :n_values] = (
            gammaln(prepared.values + alpha[..., None])
            - gammaln(alpha)[..., None]
            + (alpha * (np.log(alpha) - log_total))[..., None]
            + prepared.values * (np.log(mu) - log_total)[..., None]
        )
        log_lik, mass, histogram = table_pass(
            prepared.bins,
            weights,
            log_weights,
            table,
            prepared.data.row_constant,
            table_chunks(*X.shape, n_cells),
        )
        histogram = histogram[..., :n_values]
        stats = {
            "sum_x": histogram @ prepared.values,
            "histogram": histogram,
            "observed_mass": histogram.sum(axis=-1),
        }
        return log_lik, mass, stats

    def maximise(
        self,
        mass: np.ndarray,
        stats: Parameters,
        priors: Mapping[str, np.ndarray] | None,
        previous: Parameters,
        prepared: CountHistogram,
    ) -> Parameters:
        alive = (mass > 0)[:, None]
        mass = stats["observed_mass"]
        means = _conditional_means(mass, stats["sum_x"], previous["dispersions"], priors)
        means = np.where(alive, np.maximum(means, RATE_FLOOR), previous["means"])
        dispersions = _conditional_dispersions(
            mass,
            stats["sum_x"],
            stats["histogram"],
            prepared.values,
            means,
            previous["dispersions"],
            priors,
        )
        return {
            "means": means,
            "dispersions": np.where(alive, dispersions, previous["dispersions"]),
        }

    def log_density(
        self, X: np.ndarray, params: Parameters, prepared: CountHistogram | None = None
    ) -> np.ndarray:
        mu, alpha = params["means"], params["dispersions"]
        prepared = self.prepare(X) if prepared is None else prepared
        log_total = np.log(alpha + mu)
        return (
            prepared.data.values @ (np.log(mu) - log_total).T
            + prepared.data.column_sums(alpha * (np.log(alpha) - log_total))
            + _log_rising_factorials(X, alpha, prepared)
        )

    def component_means(self, params: Parameters) -> np.ndarray:
        return params["means"]

    def component_variances(self, params: Parameters) -> np.ndarray:
        return params["means"] + params["means"] ** 2 / params["dispersions"]

    def sample(
        self, params: Parameters, components: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        mu, alpha = params["means"][components], params["dispersions"][components]
        return rng.negative_binomial(alpha, alpha / (alpha + mu)).astype(float)

    supports_pymc = True

    def nutpie_density(self, X: np.ndarray, priors: Mapping[str, np.ndarray], n_components: int):
        """The hand-written density of the PyMC model
        (:mod:`bayesmix.families.count_logdensity`)."""
        from bayesmix.families.count_logdensity import count_density

        return count_density("negative_binomial", X, priors, n_components)

    def pymc_parameters(self, priors: Mapping[str, np.ndarray], prefix: str = "") -> dict[str, Any]:
        import pymc as pm

        dims = pymc_dims(prefix, ("component", "feature"))
        shape = priors["mean_shape"]
        rate = shape / priors["mean_mean"]
        means = pm.Gamma(f"{prefix}means", alpha=shape, beta=rate, dims=dims)
        dispersions = pm.LogNormal(
            f"{prefix}dispersions",
            mu=priors["dispersion_log_loc"],
            sigma=priors["dispersion_log_scale"],
            dims=dims,
        )
        return {"means": means, "dispersions": dispersions}

    def pymc_log_density(self, X: Any, params: Mapping[str, Any]) -> Any:
        import pytensor.tensor as pt

        mu, alpha = params["means"], params["dispersions"]
        log_total = pt.log(alpha + mu)
        rising = pt.gammaln(X[:, None, :] + alpha[None]) - pt.gammaln(alpha)[None]
        return (
            X @ (pt.log(mu) - log_total).T
            + (alpha * (pt.log(alpha) - log_total)).sum(axis=1)
            + rising.sum(axis=2)
            - pt.gammaln(X + 1.0).sum(axis=1)[:, None]
        )


def _log_rising_factorials(X: np.ndarray, alpha: np.ndarray, prepared: CountHistogram):
    """``sum_d lgamma(x_nd + a_kd) - lgamma(a_kd) - lgamma(x_nd + 1)`` over each row's
    observed entries, shape ``(n_obs, K)``: from a table over the distinct counts (one
    ``lgamma`` per component, column and value, not per row) summed per row by the sparse
    one-hot product, or per entry when there are more distinct values than rows."""
    data = prepared.data
    if prepared.values.size > X.shape[0]:
        terms = gammaln(data.values[:, None, :] + alpha[None]) - gammaln(alpha)[None]
        if data.observed is not None:
            terms = terms * data.observed[:, None, :]
        return terms.sum(axis=2) - data.row_constant[:, None]
    table = gammaln(prepared.values + alpha[..., None]) - gammaln(alpha)[..., None]  # (K, D, V)
    return prepared.one_hot @ table.reshape(alpha.shape[0], -1).T - data.row_constant[:, None]


def _log_lognormal(alpha: np.ndarray, priors: Mapping[str, np.ndarray]) -> np.ndarray:
    loc, scale = priors["dispersion_log_loc"], priors["dispersion_log_scale"]
    z = (np.log(alpha) - loc) / scale
    return -np.log(alpha) - np.log(scale) - 0.5 * np.log(2 * np.pi) - 0.5 * z**2


def _conditional_means(mass, sum_x, alpha, priors):
    """``mu`` maximising the (MAP) objective given the dispersions ``alpha``."""
    if priors is None:
        return np.divide(sum_x, mass, out=np.zeros_like(sum_x), where=mass > 0)
    shape = priors["mean_shape"]
    rate = shape / priors["mean_mean"]
    # root of rate mu^2 + B mu - C = 0 in its cancellation-free form for the sign of B
    # (2 C / (B + root) alone divided by ~0 for B < 0: counts of 1e15 gave mu = inf)
    c = np.maximum(shape - 1.0 + sum_x, 0.0) * alpha
    b = alpha * (rate + mass) - (shape - 1.0)
    root = np.sqrt(b**2 + 4.0 * rate * c)
    with np.errstate(divide="ignore", invalid="ignore"):
        positive = 2.0 * c / (b + root)
    return np.where(b >= 0, positive, (root - b) / (2.0 * rate))


def _count_terms(histogram: np.ndarray, values: np.ndarray):
    """``alpha -> (sum_v H_v [psi(v + a) - psi(a)], sum_v H_v [psi'(v + a) - psi'(a)])``
    per component and column, for the weighted count histogram ``H`` ``(K, D, V)``.

    For counts up to :data:`TAIL_SUM_MAX` the differences are finite sums,
    ``psi(v + a) - psi(a) = sum_{j < v} 1 / (a + j)``, so with the tail masses
    ``T_j = sum_{v > j} H_v`` the terms are ``sum_j T_j / (a + j)`` and
    ``-sum_j T_j / (a + j)^2``: divisions instead of digamma and trigamma (Hurwitz zeta)
    calls, ten times faster. Larger counts use the special functions."""
    top = int(values.max(initial=0.0))
    if top > TAIL_SUM_MAX:

        def special(alpha):
            a = alpha[..., None]
            first = (histogram * (digamma(values + a) - digamma(a))).sum(axis=-1)
            second = (histogram * (polygamma(1, values + a) - polygamma(1, a))).sum(axis=-1)
            return first, second

        return special
    dense = np.zeros(histogram.shape[:2] + (top + 1,))
    dense[..., values.astype(np.intp)] = histogram
    # T_j = mass of counts > j, for j = 0 .. top - 1
    tails = (dense[..., ::-1].cumsum(axis=-1)[..., ::-1])[..., 1:]
    steps = np.arange(top, dtype=float)

    def finite_sums(alpha):
        inverse = 1.0 / (alpha[..., None] + steps)
        return (tails * inverse).sum(axis=-1), -(tails * inverse**2).sum(axis=-1)

    return finite_sums


def _conditional_dispersions(mass, sum_x, histogram, values, means, start, priors):
    """``alpha`` maximising the (MAP) objective given ``means``, for all components and
    columns at once: Newton steps in ``t = log alpha`` from ``start`` on the derivative's
    root, safeguarded by a bracket that starts at :data:`DISPERSION_BOUNDS` and shrinks
    with the derivative's sign (a step leaving it bisects instead)."""

    count_terms = _count_terms(histogram, values)

    def slope_and_curvature(t):
        alpha = np.exp(t)
        total = alpha + means
        slope, curve = count_terms(alpha)
        slope = slope + mass * (np.log(alpha / total) + means / total) - sum_x / total
        curve = curve + mass * (1.0 / alpha - 1.0 / total - means / total**2) + sum_x / total**2
        if priors is not None:
            scale = priors["dispersion_log_scale"]
            z = (t - priors["dispersion_log_loc"]) / scale
            slope -= (1.0 + z / scale) / alpha
            curve += (1.0 + z / scale - 1.0 / scale**2) / alpha**2
        # d/dt = alpha d/dalpha
        return slope * alpha, curve * alpha**2 + slope * alpha

    low = np.full(means.shape, np.log(DISPERSION_BOUNDS[0]))
    high = np.full(means.shape, np.log(DISPERSION_BOUNDS[1]))
    # Still rising at the upper bound (no overdispersion: the Poisson limit) or falling at
    # the lower one: the bound is the answer; the bracket collapses onto it.
    at_high = slope_and_curvature(high)[0] >= 0
    at_low = ~at_high & (slope_and_curvature(low)[0] <= 0)
    low = np.where(at_high, high, low)
    high = np.where(at_low, low, high)
    t = np.clip(np.log(start), low, high)
    for _ in range(NEWTON_STEPS):
        slope, curve = slope_and_curvature(t)
        low = np.where(slope > 0, t, low)
        high = np.where(slope > 0, high, t)
        with np.errstate(divide="ignore", invalid="ignore"):
            step = np.where(curve < 0, -slope / curve, np.nan)
        proposal = t + step
        # Closed bracket: at the root the slope's sign is rounding noise, and a step of
        # ~0 then lands on the end the bracket just moved to; bisecting that (an open
        # bracket) jumped away from the root and took 20+ steps to come back.
        inside = np.isfinite(proposal) & (proposal >= low) & (proposal <= high)
        new = np.where(inside, proposal, 0.5 * (low + high))
        if np.all(np.abs(new - t) < NEWTON_TOL):
            t = new
            break
        t = new
    return np.exp(t)
