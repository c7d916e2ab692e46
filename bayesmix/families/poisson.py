"""Poisson components: counts in one or more columns, one rate per component and column.

Columns are independent given the component (local independence), so a component's
log density is the sum of one Poisson log mass per column:
``log p(x | lambda_k) = sum_d x_d log lambda_kd - lambda_kd - log x_d!``.

Prior: ``lambda_kd ~ Gamma(rate_shape, rate_shape / rate_mean_d)`` (shape-rate), with
prior mean ``rate_mean_d`` = the data mean of column ``d`` by default and shape 2, so
the prior is weakly informative (sd = mean / sqrt(2)) and its mode is half the mean.
The M-step is closed form: ``lambda_kd = (a - 1 + S_kd) / (b_d + N_k)`` under the prior,
``S_kd / N_k`` without it, where ``N_k`` is the component's responsibility mass and
``S_kd`` its responsibility-weighted sum of column ``d``.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
from scipy.special import digamma, gammaln

from bayesmix.families.base import (
    CountData,
    CountFamily,
    DataSummary,
    Parameters,
    gamma_kl,
    positive_hyperparameter,
    pymc_dims,
)
from bayesmix.families.kernels import count_pass

__all__ = ["Poisson"]

# Rates are kept above this, so that log rates stay finite for columns of zeros.
RATE_FLOOR = 1e-10
# Smallest count mean that sets a default prior (a column of zeros still gets a prior).
PRIOR_MEAN_FLOOR = 1e-2
# the bins of a table without bins (no missing entries)
NO_BINS = np.zeros((0, 0), dtype=np.intp)


class Poisson(CountFamily):
    """Poisson components for count data (non-negative integers), one rate per column.

    Priors (``Mixture(..., priors={...})``): ``rate_shape`` (Gamma shape, default 2) and
    ``rate_mean`` (Gamma mean, one per column or a scalar; default the column means).

    Examples
    --------
    >>> import numpy as np, bayesmix as bm
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.poisson(2.0, (300, 1)), rng.poisson(12.0, (200, 1))])
    >>> em = bm.Mixture(2, bm.families.Poisson()).fit(X, random_state=0)
    >>> em.parameters["rates"].round(1)
    array([[ 2.1],
           [12.1]])
    """

    name = "poisson"
    parameters = {"rates": ("feature",)}
    prior_defaults = {"rate_shape": 2.0, "rate_mean": None}

    def n_parameters(self, n_features: int) -> int:
        return n_features

    def resolve_priors(
        self, given: Mapping[str, Any], X: np.ndarray, weights: np.ndarray
    ) -> dict[str, np.ndarray]:
        n_features = X.shape[1]
        data_mean = self.data_means(X, weights, PRIOR_MEAN_FLOOR)
        return {
            "rate_shape": positive_hyperparameter(given, "rate_shape", 2.0, n_features),
            "rate_mean": positive_hyperparameter(given, "rate_mean", data_mean, n_features),
        }

    def log_prior(self, params: Parameters, priors: Mapping[str, np.ndarray]) -> float:
        return float(
            log_gamma_density(params["rates"], priors["rate_shape"], priors["rate_mean"]).sum()
        )

    def initial_parameters(
        self, X: np.ndarray, centres: np.ndarray, weights: np.ndarray
    ) -> Parameters:
        return {"rates": np.maximum(centres, 0.0) + 0.5}

    def statistics(
        self, X: np.ndarray, resp: np.ndarray, params: Parameters, prepared: Any
    ) -> Parameters:
        return {"sum_x": resp.T @ prepared.values, "observed_mass": prepared.observed_mass(resp)}

    def expectation(
        self,
        X: np.ndarray,
        weights: np.ndarray,
        log_weights: np.ndarray,
        params: Parameters,
        prepared: CountData,
    ) -> tuple[float, np.ndarray, Parameters]:
        """One fused pass (:func:`~bayesmix.families.kernels.count_pass`): ``x log lambda``
        by one product with the log rates, ``-lambda`` in the constant (or, with missing
        entries, in a table over observed / missing whose histogram is the observed mass)."""
        rates = np.maximum(params["rates"], RATE_FLOOR)
        return self._pass(X, weights, log_weights, rates, np.log(rates), prepared)

    def _pass(self, X, weights, log_weights, rates, log_rates, prepared: CountData):
        """:func:`~bayesmix.families.kernels.count_pass` with ``rates`` in the ``-lambda``
        term and ``log_rates`` as the factor of ``x``."""
        if prepared.observed is None:
            constant = log_weights - rates.sum(axis=1)
            table = np.zeros(rates.shape + (0,))
        else:
            constant = log_weights
            table = np.stack([-rates, np.zeros_like(rates)], axis=-1)
        log_lik, mass, sum_x, histogram = count_pass(
            prepared.values,
            NO_BINS if prepared.observed is None else prepared.missing_bins,
            weights,
            constant,
            log_rates,
            table,
            prepared.row_constant,
        )
        observed_mass = (
            np.repeat(mass[:, None], rates.shape[1], axis=1)
            if prepared.observed is None
            else histogram[..., 0]
        )
        return log_lik, mass, {"sum_x": sum_x, "observed_mass": observed_mass}

    def maximise(
        self,
        mass: np.ndarray,
        stats: Parameters,
        priors: Mapping[str, np.ndarray] | None,
        previous: Parameters,
        prepared: Any,
    ) -> Parameters:
        sum_x, mass = stats["sum_x"], stats["observed_mass"]
        if priors is None:
            rates = np.divide(sum_x, mass, out=previous["rates"].copy(), where=mass > 0)
        else:
            shape, rate = priors["rate_shape"], priors["rate_shape"] / priors["rate_mean"]
            rates = np.maximum(shape - 1.0 + sum_x, 0.0) / (rate + mass)
        return {"rates": np.maximum(rates, RATE_FLOOR)}

    def prepare(self, X: np.ndarray, summary: DataSummary | None = None) -> CountData:
        """The counts with missing entries zeroed, their mask and ``sum_d log x_nd!``
        (row by row: ``summary`` is not needed)."""
        return CountData.of(X)

    def log_density(
        self, X: np.ndarray, params: Parameters, prepared: CountData | None = None
    ) -> np.ndarray:
        rates = np.maximum(params["rates"], RATE_FLOOR)
        data = self.prepare(X) if prepared is None else prepared
        return data.values @ np.log(rates).T - data.column_sums(rates) - data.row_constant[:, None]

    def component_means(self, params: Parameters) -> np.ndarray:
        return params["rates"]

    def component_variances(self, params: Parameters) -> np.ndarray:
        return params["rates"]

    def sample(
        self, params: Parameters, components: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        return rng.poisson(params["rates"][components]).astype(float)

    # -- closed-form VB: lambda_kd ~ Gamma(shape, rate) under q -----------------------
    supports_vb = True

    def vb_posterior(
        self, stats: Parameters, priors: Mapping[str, np.ndarray], prepared: Any
    ) -> Parameters:
        """``q(lambda_kd) = Gamma(a + S_kd, b_d + N_kd)`` (shape-rate) under the prior
        ``Gamma(a, b)``, ``a = rate_shape``, ``b = rate_shape / rate_mean``: the EM
        statistics' responsibility-weighted sums ``S`` and observed masses ``N``."""
        shape, rate = priors["rate_shape"], priors["rate_shape"] / priors["rate_mean"]
        return {"shape": shape + stats["sum_x"], "rate": rate + stats["observed_mass"]}

    @staticmethod
    def _vb_moments(q: Parameters) -> tuple[np.ndarray, np.ndarray]:
        """``E_q[lambda]`` and ``E_q[log lambda]``."""
        return q["shape"] / q["rate"], digamma(q["shape"]) - np.log(q["rate"])

    def vb_log_density(
        self, X: np.ndarray, q: Parameters, prepared: CountData | None = None
    ) -> np.ndarray:
        """``sum_d x_d E[log lambda_kd] - E[lambda_kd] - log x_d!`` over the observed
        entries."""
        data = self.prepare(X) if prepared is None else prepared
        mean, log_mean = self._vb_moments(q)
        return data.values @ log_mean.T - data.column_sums(mean) - data.row_constant[:, None]

    def vb_expectation(
        self,
        X: np.ndarray,
        weights: np.ndarray,
        log_weights: np.ndarray,
        q: Parameters,
        prepared: CountData,
    ) -> tuple[float, np.ndarray, Parameters]:
        """The EM pass (:meth:`expectation`) with ``E[log lambda]`` for ``log lambda`` and
        ``E[lambda]`` for ``lambda``."""
        mean, log_mean = self._vb_moments(q)
        return self._pass(X, weights, log_weights, mean, log_mean, prepared)

    def vb_kl(self, q: Parameters, priors: Mapping[str, np.ndarray]) -> float:
        """Sum of the Gamma KL divergences."""
        shape, rate = priors["rate_shape"], priors["rate_shape"] / priors["rate_mean"]
        return float(gamma_kl(q["shape"], q["rate"], shape, rate).sum())

    def vb_mean(self, q: Parameters) -> Parameters:
        return {"rates": q["shape"] / q["rate"]}

    def vb_sample(self, q: Parameters, n_draws: int, rng: np.random.Generator) -> Parameters:
        shape = q["shape"]
        rates = rng.gamma(shape, 1.0 / q["rate"], size=(n_draws,) + shape.shape)
        return {"rates": np.maximum(rates, RATE_FLOOR)}

    supports_pymc = True

    def nutpie_density(self, X: np.ndarray, priors: Mapping[str, np.ndarray], n_components: int):
        """The hand-written density of the PyMC model
        (:mod:`bayesmix.families.count_logdensity`)."""
        from bayesmix.families.count_logdensity import count_density

        return count_density("poisson", X, priors, n_components)

    def pymc_parameters(self, priors: Mapping[str, np.ndarray], prefix: str = "") -> dict[str, Any]:
        import pymc as pm

        shape = priors["rate_shape"]
        rates = pm.Gamma(
            f"{prefix}rates",
            alpha=shape,
            beta=shape / priors["rate_mean"],
            dims=pymc_dims(prefix, ("component", "feature")),
        )
        return {"rates": rates}

    def pymc_log_density(self, X: Any, params: Mapping[str, Any]) -> Any:
        import pytensor.tensor as pt

        rates = params["rates"]
        row_constant = pt.gammaln(X + 1.0).sum(axis=1)
        return X @ pt.log(rates).T - rates.sum(axis=1) - row_constant[:, None]


def log_gamma_density(value: np.ndarray, shape: np.ndarray, mean: np.ndarray) -> np.ndarray:
    """Elementwise log density of ``Gamma(shape, rate=shape / mean)`` at ``value``."""
    rate = shape / mean
    return shape * np.log(rate) - gammaln(shape) + (shape - 1.0) * np.log(value) - rate * value
