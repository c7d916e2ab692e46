"""Additive sufficient statistics: the E-step over blocks of rows and the M-step.

The E-step over any block of rows returns a :class:`SufficientStats` whose fields are sums,
so statistics of blocks add up to the statistics of their union. In-memory, chunked and
distributed EM differ only in how blocks are produced and reduced.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from bayesmix.exceptions import DegenerateComponentWarning
from bayesmix.families.gaussian.covariance import CovarianceStructure
from bayesmix.priors import ResolvedPriors

__all__ = ["Params", "SufficientStats", "e_step", "m_step", "stats_from_responsibilities"]

# Bytes of temporaries one E-step block may allocate.
BLOCK_BYTES = 16 * 2**20
# scikit-learn adds this to every component mass to avoid division by zero.
MASS_EPS = 10 * np.finfo(np.float64).eps


@dataclass(frozen=True)
class Params:
    """One parameter set; covariances and precision Cholesky factors in natural form."""

    weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray


@dataclass(frozen=True)
class SufficientStats:
    """Sums over observations: ``mass_k = sum r_nk``, ``sum_x_k``, ``sum_xx_k`` (structure
    form), the log-likelihood ``sum w_n log p(x_n)`` and ``sum w_n log max_k r_nk`` (ICL)."""

    mass: np.ndarray
    sum_x: np.ndarray
    sum_xx: np.ndarray
    log_likelihood: float
    log_max_resp: float

    def __add__(self, other: SufficientStats) -> SufficientStats:
        return SufficientStats(
            self.mass + other.mass,
            self.sum_x + other.sum_x,
            self.sum_xx + other.sum_xx,
            self.log_likelihood + other.log_likelihood,
            self.log_max_resp + other.log_max_resp,
        )


def block_rows(n_obs: int, n_features: int, n_components: int) -> int:
    """Rows per block so the E-step temporaries (about ``K * D`` floats a row) fit."""
    per_row = 8 * (n_components * (n_features + 2) + n_features * (n_features + 3) // 2)
    return int(max(256, min(n_obs, BLOCK_BYTES // per_row)))


def iter_blocks(n_obs: int, size: int) -> Iterator[slice]:
    """Consecutive row slices of at most ``size`` rows."""
    for start in range(0, n_obs, size):
        yield slice(start, min(start + size, n_obs))


def log_joint(X: np.ndarray, params: Params, structure: CovarianceStructure) -> np.ndarray:
    """``log w_k + log N(x_n | mu_k, cov_k)``, shape ``(n, K)``."""
    with np.errstate(divide="ignore"):
        log_weights = np.log(params.weights)
    return structure.log_prob(X, params.means, params.precisions_cholesky) + log_weights


def log_normalise(log_prob: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row-wise log-sum-exp and the normalised log responsibilities."""
    peak = log_prob.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(log_prob - peak).sum(axis=1, keepdims=True)) + peak
    return log_norm[:, 0], log_prob - log_norm


def e_step(
    X: np.ndarray,
    sample_weight: np.ndarray,
    shift: np.ndarray,
    params: Params,
    structure: CovarianceStructure,
) -> SufficientStats:
    """Sufficient statistics of ``X - shift`` under ``params`` (given in shifted units),
    from one fused compiled pass over the rows (:mod:`bayesmix.families.gaussian.kernels`; it beat
    BLAS-blocked passes at every size measured, up to 32 features)."""
    with np.errstate(divide="ignore"):
        log_weights = np.log(params.weights)
    mass, sum_x, sum_xx, log_lik, log_max = structure.fused_statistics(
        X, sample_weight, shift, log_weights, params.means, params.precisions_cholesky
    )
    return SufficientStats(mass, sum_x, sum_xx, float(log_lik), float(log_max))


def stats_from_responsibilities(
    X: np.ndarray,
    sample_weight: np.ndarray,
    shift: np.ndarray,
    resp: np.ndarray,
    structure: CovarianceStructure,
) -> SufficientStats:
    """Sufficient statistics for given responsibilities (initialisation)."""
    n_obs, n_features = X.shape
    size = block_rows(n_obs, n_features, resp.shape[1])
    total = None
    for rows in iter_blocks(n_obs, size):
        block = X[rows] - shift
        weighted = resp[rows] * sample_weight[rows, None]
        stats = SufficientStats(
            weighted.sum(axis=0),
            weighted.T @ block,
            structure.second_moment(block, weighted),
            0.0,
            0.0,
        )
        total = stats if total is None else total + stats
    return total


def m_step(
    stats: SufficientStats,
    structure: CovarianceStructure,
    priors: ResolvedPriors | None,
    reg_covar: float,
    previous: Params | None = None,
) -> Params:
    """Parameters maximising the expected complete-data log-likelihood (or log posterior).

    With priors this is one ECM cycle: weights, then means given the previous precisions,
    then covariances given the new means, each a closed-form conditional maximum, so the
    log posterior never decreases. Components without responsibility mass take the
    moments of all the data (with weight ~0) and a :class:`DegenerateComponentWarning`.
    """
    mass, sum_x, sum_xx = _fill_empty(stats, structure)
    weights = _weights(mass, priors)
    if priors is None or previous is None:
        means = sum_x / mass[:, None]
    else:
        means = _map_means(mass, sum_x, priors, structure, previous)
    start = None if previous is None else previous.covariances  # iterative M-steps' start
    if priors is None:
        covariances = structure.m_step(
            mass, sum_x, sum_xx, means, None, None, reg_covar, start=start
        )
    else:
        covariances = structure.m_step(
            mass,
            sum_x,
            sum_xx,
            means,
            priors.covariance_dof,
            priors.covariance_scale,
            reg_covar,
            start=start,
        )
    return Params(weights, means, covariances, structure.precision_cholesky(covariances))


def _fill_empty(stats: SufficientStats, structure: CovarianceStructure):
    mass = stats.mass + MASS_EPS
    empty = stats.mass <= 1e-12 * stats.mass.sum()
    if not empty.any():
        return mass, stats.sum_x, stats.sum_xx
    warnings.warn(
        f"component(s) {np.flatnonzero(empty).tolist()} received no responsibility mass; "
        "they were re-seeded with the moments of all the data at weight ~0. Consider fewer "
        "components or another initialisation.",
        DegenerateComponentWarning,
        stacklevel=4,
    )
    share = np.where(empty, mass / stats.mass.sum(), 1.0)
    sum_x = np.where(empty[:, None], stats.sum_x.sum(0) * share[:, None], stats.sum_x)
    sum_xx = stats.sum_xx
    if not structure.shared_across_components:  # a shared one is pooled already
        per_component = (-1,) + (1,) * (sum_xx.ndim - 1)
        pooled = sum_xx.sum(0) * share.reshape(per_component)
        sum_xx = np.where(empty.reshape(per_component), pooled, sum_xx)
    return mass, sum_x, sum_xx


def _weights(mass: np.ndarray, priors: ResolvedPriors | None) -> np.ndarray:
    if priors is None:
        return mass / mass.sum()
    unnormalised = np.maximum(mass + priors.weight_concentration - 1.0, 0.0)
    if unnormalised.sum() <= 0:
        return mass / mass.sum()
    return unnormalised / unnormalised.sum()


def _map_means(mass, sum_x, priors, structure, previous):
    n_components, n_features = sum_x.shape
    precision = structure.precision_matrices(previous.precisions_cholesky, n_components, n_features)
    prior_precision = np.diag(1.0 / priors.mean_scale**2)
    lhs = mass[:, None, None] * precision + prior_precision
    rhs = np.einsum("kde,ke->kd", precision, sum_x) + prior_precision @ priors.mean_loc
    return np.linalg.solve(lhs, rhs[:, :, None])[:, :, 0]
