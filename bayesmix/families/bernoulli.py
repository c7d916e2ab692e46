"""Bernoulli components (latent class analysis of binary items): one probability of a 1
per component and feature.

Features are independent given the component (local independence):
``log p(x | pi_k) = sum_d x_d log pi_kd + (1 - x_d) log(1 - pi_kd)`` over the observed
features; a missing entry (NaN) contributes nothing, which marginalises it exactly.

Prior: ``pi_kd ~ Beta(probability_alpha, probability_beta)``, default ``Beta(1.5, 1.5)``
whatever the data (half a pseudo-count for each outcome: the MAP estimate stays off 0
and 1). The M-step is closed form: ``pi_kd = (S_kd + a - 1) / (N_kd + a + b - 2)``,
``S_kd / N_kd`` without the prior, where ``N_kd`` is component ``k``'s responsibility
mass over the rows observing feature ``d`` and ``S_kd`` that of its ones.

A Bernoulli is a :class:`~bayesmix.families.categorical.Categorical` with two categories
stored as ``P(x = 1)``: the EM pass, the start and the rest are
:class:`~bayesmix.families.categorical.CategoryFamily`'s.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from bayesmix.families.base import (
    DataSummary,
    Parameters,
    positive_hyperparameter,
    pymc_dims,
)
from bayesmix.families.categorical import (
    DEFAULT_CONCENTRATION,
    PROBABILITY_FLOOR,
    PYMC_START_FLOOR,
    CategoryFamily,
)

__all__ = ["Bernoulli"]


class Bernoulli(CategoryFamily):
    """Bernoulli components for binary data (0/1 per feature, NaN: missing), features
    independent given the component (latent class analysis).

    Priors (``Mixture(..., priors={...})``): ``probability_alpha`` and
    ``probability_beta`` (Beta, one per feature or a scalar; default 1.5 each).

    Examples
    --------
    >>> import numpy as np, bayesmix as bm
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.binomial(1, 0.9, (300, 5)), rng.binomial(1, 0.2, (200, 5))])
    >>> em = bm.Mixture(2, bm.families.Bernoulli()).fit(X, random_state=0)
    >>> em.weights.round(1)
    array([0.4, 0.6])
    """

    name = "bernoulli"
    parameters = {"probabilities": ("feature",)}
    prior_defaults = {
        "probability_alpha": DEFAULT_CONCENTRATION,
        "probability_beta": DEFAULT_CONCENTRATION,
    }

    def n_parameters(self, n_features: int) -> int:
        return n_features

    def check_values(self, values: np.ndarray, feature_names: tuple[str, ...], name: str) -> None:
        self.check_codes(values, np.full(values.shape[1], 2.0), feature_names, name)

    def resolve_priors(
        self, given: Mapping[str, Any], X: np.ndarray, weights: np.ndarray
    ) -> dict[str, np.ndarray]:
        """``probability_alpha`` and ``probability_beta`` per feature (default 1.5 each,
        whatever the data)."""
        return {
            key: positive_hyperparameter(given, key, DEFAULT_CONCENTRATION, X.shape[1])
            for key in self.prior_defaults
        }

    def category_mask(self, n_features: int, n_bins: int) -> np.ndarray:
        return np.ones((n_features, n_bins), dtype=bool)

    def n_bins(self, X: np.ndarray, summary: DataSummary | None = None) -> int:
        return 2

    def sizes(self, n_features: int) -> np.ndarray:
        """Two categories per feature."""
        return np.full(n_features, 2)

    def marginal_grid(self, low: float, high: float, n_grid: int) -> np.ndarray:
        """The two outcomes."""
        return np.array([0.0, 1.0])

    def table(self, params: Parameters) -> np.ndarray:
        p = params["probabilities"]
        return np.stack([1.0 - p, p], axis=-1)

    def from_table(self, table: np.ndarray) -> Parameters:
        return {"probabilities": np.ascontiguousarray(table[..., 1])}

    def concentrations(self, priors: Mapping[str, np.ndarray], n_bins: int) -> np.ndarray:
        return np.stack([priors["probability_beta"], priors["probability_alpha"]], axis=-1)

    # -- PyMC ------------------------------------------------------------------------------
    def pymc_parameters(self, priors: Mapping[str, np.ndarray], prefix: str = "") -> dict[str, Any]:
        import pymc as pm

        probabilities = pm.Beta(
            f"{prefix}probabilities",
            alpha=priors["probability_alpha"],
            beta=priors["probability_beta"],
            dims=pymc_dims(prefix, ("component", "feature")),
        )
        return {"probabilities": probabilities}

    def pymc_log_density(self, X: Any, params: Mapping[str, Any]) -> Any:
        import pytensor.tensor as pt

        p = pt.clip(params["probabilities"], PROBABILITY_FLOOR, 1.0 - PROBABILITY_FLOOR)
        return X @ pt.log(p).T + (1.0 - X) @ pt.log1p(-p).T

    def pymc_initial_values(
        self, params: Parameters, priors: Mapping[str, np.ndarray]
    ) -> dict[str, np.ndarray]:
        """The estimate, kept off 0 and 1 (its log-odds must be finite)."""
        p = np.asarray(params["probabilities"], dtype=float)
        return {"probabilities": np.clip(p, PYMC_START_FLOOR, 1.0 - PYMC_START_FLOOR)}
