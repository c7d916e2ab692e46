"""Missing values (NaN) by marginalisation: exact EM and densities for data missing at random.

A row with observed features ``o`` and missing features ``m`` contributes through the
marginal density of what was observed, ``sum_k w_k N(x_o | mu_k,o, Sigma_k,oo)``. EM stays
exact (Ghahramani & Jordan 1994): the E-step weighs each row by its responsibilities
under that marginal and fills the sufficient statistics with conditional expectations,

* ``E[x_m | x_o, k] = mu_k,m + Sigma_k,mo Sigma_k,oo^-1 (x_o - mu_k,o)``,
* ``E[x x^T | x_o, k] = E[x | x_o, k] E[x | x_o, k]^T + C_k`` with the conditional
  covariance ``C_k = Sigma_k,mm - Sigma_k,mo Sigma_k,oo^-1 Sigma_k,om`` on the missing block,

so the usual M-step (:func:`bayesmix.families.gaussian.stats.m_step`) maximises the expected
complete-data log-likelihood and the observed-data log-likelihood never decreases.
For ``diag`` and ``spherical`` covariances ``Sigma_k,mo = 0``: the conditional mean of a
missing coordinate is its component mean and its conditional variance the component
variance. ``tied`` shares ``Sigma`` but the conditional moments still depend on ``k``
through the means, so its pooled second moment sums the per-component expectations.

Rows are grouped by missingness pattern (``np.unique`` over the rows of the NaN mask):
complete rows keep the fused compiled E-step, every pattern is one vectorised pass (in
blocks of rows), and their statistics add up because they are sums.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from bayesmix.data import Data
from bayesmix.exceptions import MissingDataWarning
from bayesmix.families.gaussian.covariance import CovarianceStructure, get_structure
from bayesmix.families.gaussian.stats import (
    Params,
    SufficientStats,
    block_rows,
    e_step,
    iter_blocks,
    log_joint,
    log_normalise,
)
from bayesmix.validation import check_choice

__all__ = [
    "MISSING_POLICIES",
    "MissingDataWarning",
    "MissingLayout",
    "Pattern",
    "MissingEStep",
    "check_missing",
    "completed_statistics",
    "missing_layout",
    "drop_unobserved_rows",
    "observed_moments",
    "marginal_log_joint",
]

MISSING_POLICIES = ("error", "marginalize")


def check_missing(missing: Any) -> str:
    """Validate the ``missing`` option: ``"error"`` (NaN is rejected) or
    ``"marginalize"`` (incomplete rows contribute their observed features)."""
    return check_choice(missing, "missing", MISSING_POLICIES)


@dataclass(frozen=True)
class Pattern:
    """Rows sharing one missingness pattern.

    Attributes
    ----------
    observed, missing : numpy.ndarray
        Column indices of the observed and of the missing features.
    rows : numpy.ndarray
        Row indices (into the data) with this pattern, ascending.
    """

    observed: np.ndarray
    missing: np.ndarray
    rows: np.ndarray


@dataclass(frozen=True)
class MissingLayout:
    """Complete rows and the incomplete rows grouped by missingness pattern.

    Attributes
    ----------
    complete : numpy.ndarray
        Indices of the rows without NaN, ascending.
    patterns : tuple of Pattern
        One entry per distinct pattern of the incomplete rows, in the order of
        ``np.unique`` over the boolean NaN-mask rows.
    n_features : int
    """

    complete: np.ndarray
    patterns: tuple[Pattern, ...]
    n_features: int

    @property
    def has_missing(self) -> bool:
        return bool(self.patterns)

    @property
    def key(self) -> tuple[tuple[bool, ...], ...]:
        """The patterns as hashable observed-feature masks (what fixes a PyMC graph)."""
        keys = []
        for pattern in self.patterns:
            mask = np.zeros(self.n_features, dtype=bool)
            mask[pattern.observed] = True
            keys.append(tuple(bool(v) for v in mask))
        return tuple(keys)


def missing_layout(X: np.ndarray | Data) -> MissingLayout:
    """Group the rows of ``X`` by their pattern of NaN.

    Parameters
    ----------
    X : numpy.ndarray of shape (n_obs, n_features) or Data
        For :class:`~bayesmix.data.Data`, its cached ``missing_mask``.

    Returns
    -------
    MissingLayout
    """
    if isinstance(X, Data) and not X.has_missing:
        return MissingLayout(np.arange(X.n_obs), (), X.n_features)
    if isinstance(X, Data):
        X, mask = X.values, X.missing_mask
    else:
        X = np.asarray(X, dtype=float)
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D (n_obs, n_features); got shape {X.shape}.")
        mask = np.isnan(X)
    incomplete_row = mask.any(axis=1)
    complete = np.flatnonzero(~incomplete_row)
    incomplete = np.flatnonzero(incomplete_row)
    if incomplete.size == 0:
        return MissingLayout(complete, (), X.shape[1])
    unique, inverse = np.unique(mask[incomplete], axis=0, return_inverse=True)
    inverse = np.ravel(inverse)
    order = np.argsort(inverse, kind="stable")
    bounds = np.cumsum(np.bincount(inverse, minlength=unique.shape[0]))[:-1]
    groups = np.split(incomplete[order], bounds)
    patterns = tuple(
        Pattern(np.flatnonzero(~row), np.flatnonzero(row), rows)
        for row, rows in zip(unique, groups, strict=True)
    )
    return MissingLayout(complete, patterns, X.shape[1])


def drop_unobserved_rows(
    data: Data, sample_weight: np.ndarray, *, stacklevel: int = 2
) -> tuple[Data, np.ndarray]:
    """Remove rows with no observed feature, with a :class:`MissingDataWarning` that
    says how many; check that every feature has an observed value.

    Parameters
    ----------
    data : Data
    sample_weight : numpy.ndarray of shape (n_obs,)

    Returns
    -------
    data : Data
        The rows with at least one observed feature.
    sample_weight : numpy.ndarray
        Their weights.
    """
    if not data.has_missing:
        return data, sample_weight
    mask = data.missing_mask
    unobserved = mask.all(axis=1)
    never = mask[~unobserved].all(axis=0) if (~unobserved).any() else np.ones(mask.shape[1], bool)
    if never.any():
        names = [data.feature_names[j] for j in np.flatnonzero(never)]
        raise ValueError(
            f"feature(s) {names} of X have no observed value; drop these columns before fitting."
        )
    if not unobserved.any():
        return data, sample_weight
    n_dropped = int(unobserved.sum())
    warnings.warn(
        f"{n_dropped} row(s) of X have no observed feature and were dropped: they carry no "
        "information about the mixture (with missing='marginalize').",
        MissingDataWarning,
        stacklevel=stacklevel + 1,
    )
    keep = ~unobserved
    kept = replace(data, values=data.values[keep], obs_names=np.asarray(data.obs_names)[keep])
    return kept, sample_weight[keep]


def observed_moments(
    X: np.ndarray | Data, sample_weight: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Weighted mean and (population) variance of every feature over its observed
    (non-NaN) values.

    Parameters
    ----------
    X : numpy.ndarray of shape (n_obs, n_features) or Data
        For :class:`~bayesmix.data.Data`, its cached NaN mask.
    sample_weight : numpy.ndarray of shape (n_obs,), optional

    Returns
    -------
    mean, var : numpy.ndarray of shape (n_features,)
        NaN for a feature without observed values of positive weight.
    """
    if isinstance(X, Data):
        X, observed = X.values, ~X.missing_mask
    else:
        X = np.asarray(X, dtype=float)
        observed = ~np.isnan(X)
    weights = np.ones(X.shape[0]) if sample_weight is None else np.asarray(sample_weight)
    filled = np.where(observed, X, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        total = weights @ observed
        mean = weights @ filled / total
        centred = np.where(observed, filled - mean, 0.0)
        var = weights @ (centred * centred) / total
    return mean, var


# ---------------------------------------------------------------------------------------
# per-pattern densities and conditional moments (any units: X and means alike)


def _full_covariances(structure: CovarianceStructure, covariances: np.ndarray, shape):
    n_components, n_features = shape
    return np.asarray(structure.to_full(covariances, n_components, n_features))


def _variances(structure: CovarianceStructure, covariances: np.ndarray, shape) -> np.ndarray:
    """Per-component, per-feature variances ``(K, D)`` of an axis-aligned structure."""
    full = structure.to_full(np.asarray(covariances, dtype=float), *shape)
    return np.diagonal(full, axis1=-2, axis2=-1)


class _PatternGaussians:
    """The observed-marginal Gaussians of one pattern and the conditionals of its
    missing block, for one parameter set (all components)."""

    def __init__(self, pattern: Pattern, params: Params, structure: CovarianceStructure):
        obs, mis = pattern.observed, pattern.missing
        means = params.means
        self.obs, self.mis = obs, mis
        self.mean_obs = means[:, obs]  # (K, o)
        if structure.axis_aligned:
            var = _variances(structure, params.covariances, means.shape)
            # the observed block's Gaussian, as a diag structure's precision factor
            self.observed = get_structure("diag"), 1.0 / np.sqrt(var[:, obs])
            self.mean_mis = means[:, mis]
            self.cond_var = var[:, mis]  # diagonal of C_k
            self.regression = None
            return
        cov = _full_covariances(structure, params.covariances, means.shape)
        cov_oo = cov[:, obs[:, None], obs]  # (K, o, o)
        lower = np.linalg.cholesky(cov_oo)
        self.lower_inv = np.linalg.inv(lower)  # (K, o, o), lower triangular
        # inv(Sigma_oo) = U U^T with the upper-triangular U = L^-T
        self.observed = get_structure("full"), np.swapaxes(self.lower_inv, 1, 2)
        # B_k = Sigma_mo Sigma_oo^-1 = (Sigma_mo L^-T) L^-1
        cov_mo = cov[:, mis[:, None], obs]  # (K, m, o)
        half = cov_mo @ np.swapaxes(self.lower_inv, 1, 2)
        self.regression = half @ self.lower_inv  # (K, m, o)
        self.mean_mis = means[:, mis]
        cond = cov[:, mis[:, None], mis] - half @ np.swapaxes(half, 1, 2)
        self.cond_cov = 0.5 * (cond + np.swapaxes(cond, 1, 2))  # (K, m, m)

    def log_density(self, xo: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``log N(x_o | mu_k,o, Sigma_k,oo)`` ``(n, K)`` and the centred rows
        ``(K, n, o)``."""
        structure, prec_chol = self.observed
        diff = xo[None, :, :] - self.mean_obs[:, None, :]  # (K, n, o)
        return structure.log_prob(xo, self.mean_obs, prec_chol), diff

    def completed(self, xo: np.ndarray, diff: np.ndarray, n_features: int) -> np.ndarray:
        """Rows with the missing block filled by ``E[x_m | x_o, k]``: ``(K, n, D)``."""
        n_components, n_rows = diff.shape[:2]
        filled = np.empty((n_components, n_rows, n_features))
        filled[:, :, self.obs] = xo[None]
        if self.regression is None:
            filled[:, :, self.mis] = self.mean_mis[:, None, :]
        else:
            filled[:, :, self.mis] = self.mean_mis[:, None, :] + diff @ np.swapaxes(
                self.regression, 1, 2
            )
        return filled


def _pattern_log_joint(xo, pattern, params, structure) -> np.ndarray:
    if pattern.observed.size == 0:  # nothing observed: the marginal density is 1
        return np.broadcast_to(_log_weights(params), (xo.shape[0], params.weights.size)).copy()
    log_dens, _ = _PatternGaussians(pattern, params, structure).log_density(xo)
    return log_dens + _log_weights(params)


def _log_weights(params: Params) -> np.ndarray:
    with np.errstate(divide="ignore"):
        return np.log(params.weights)


def marginal_log_joint(
    X: np.ndarray | Data, params: Params, structure: CovarianceStructure
) -> np.ndarray:
    """``log w_k + log N(x_n,o | mu_k,o, Sigma_k,oo)`` over each row's observed features.

    Parameters
    ----------
    X : numpy.ndarray of shape (n_obs, n_features) or Data
        Observations, NaN where missing. A row without observed features gets
        ``log w_k`` (the marginal density of nothing is 1). A
        :class:`~bayesmix.data.Data` lends its cached NaN mask.
    params : Params
        One parameter set (natural-form covariances), in the units of ``X``.
    structure : CovarianceStructure

    Returns
    -------
    numpy.ndarray of shape (n_obs, n_components)
    """
    layout = missing_layout(X)
    X = X.values if isinstance(X, Data) else np.asarray(X, dtype=float)
    n_obs, n_features = X.shape
    n_components = params.weights.size
    out = np.empty((n_obs, n_components))
    complete = layout.complete
    size = block_rows(max(complete.size, 1), n_features, n_components)
    for rows in iter_blocks(complete.size, size):
        index = complete[rows]
        out[index] = log_joint(X[index], params, structure)
    for pattern in layout.patterns:
        size = block_rows(pattern.rows.size, n_features, n_components)
        for rows in iter_blocks(pattern.rows.size, size):
            index = pattern.rows[rows]
            xo = X[index][:, pattern.observed]
            out[index] = _pattern_log_joint(xo, pattern, params, structure)
    return out


# ---------------------------------------------------------------------------------------
# the E-step


def _zero_stats(structure: CovarianceStructure, n_components: int, n_features: int):
    sum_xx = np.zeros(structure.natural_shape(n_components, n_features))
    return SufficientStats(
        np.zeros(n_components), np.zeros((n_components, n_features)), sum_xx, 0.0, 0.0
    )


def _pattern_stats(xo, weights, pattern, gaussians, params, structure, n_features):
    """Sufficient statistics (structure form) of one block of rows of one pattern."""
    log_dens, diff = gaussians.log_density(xo)
    log_norm, log_resp = log_normalise(log_dens + _log_weights(params))
    resp = np.exp(log_resp) * weights[:, None]  # (n, K), weighted
    mass, sum_x, sum_xx = _completed_moments(
        xo, resp, diff, pattern, gaussians, structure, n_features
    )
    log_lik = float(weights @ log_norm)
    log_max = float(weights @ log_resp.max(axis=1))
    return SufficientStats(mass, sum_x, sum_xx, log_lik, log_max)


def _completed_moments(xo, resp, diff, pattern, gaussians, structure, n_features):
    """``mass``, ``sum_x`` and ``sum_xx`` (structure form) of one block of rows of one
    pattern with the (weighted) responsibilities ``resp`` ``(n, K)``: the missing block
    filled by its conditional expectations."""
    mass = resp.sum(axis=0)
    filled = gaussians.completed(xo, diff, n_features)  # (K, n, D)
    weighted = filled * resp.T[:, :, None]
    sum_x = weighted.sum(axis=1)
    mis = pattern.missing
    if structure.axis_aligned:
        moments = (weighted * filled).sum(axis=1)  # (K, D)
        moments[:, mis] += mass[:, None] * gaussians.cond_var
    else:
        moments = np.swapaxes(weighted, 1, 2) @ filled  # (K, D, D)
        moments[:, mis[:, None], mis] += mass[:, None, None] * gaussians.cond_cov
    return mass, sum_x, structure.pool_second_moments(moments)


def completed_statistics(
    X: np.ndarray,
    resp: np.ndarray,
    params: Params,
    structure: CovarianceStructure,
    layout: MissingLayout | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """The expected sufficient statistics of rows with NaN for given responsibilities.

    For responsibilities that come from elsewhere (a Gaussian block of an
    :class:`~bayesmix.families.independent.Independent` family, whose responsibilities
    are the product family's), the statistics the M-step
    (:func:`~bayesmix.families.gaussian.stats.m_step`) needs: ``sum_n r_nk E[x_n | x_n,o,
    k]`` and ``sum_n r_nk E[x_n x_n^T | x_n,o, k]`` (structure form), with the missing
    entries' conditional moments under ``params``.

    Parameters
    ----------
    X : numpy.ndarray of shape (n_obs, n_features)
        Observations, NaN where missing, in the units of ``params``.
    resp : numpy.ndarray of shape (n_obs, n_components)
        Responsibilities, sample weights multiplied in.
    params : Params
        The current parameters (the weights are not used).
    structure : CovarianceStructure
    layout : MissingLayout, optional
        ``missing_layout(X)``, computed when not given.

    Returns
    -------
    sum_x : numpy.ndarray of shape (n_components, n_features)
    sum_xx : numpy.ndarray
        :meth:`~bayesmix.families.gaussian.covariance.CovarianceStructure.second_moment`'s
        form.
    """
    layout = missing_layout(X) if layout is None else layout
    n_features = X.shape[1]
    complete = layout.complete
    rows, weights = X[complete], resp[complete]
    sum_x = weights.T @ rows
    sum_xx = structure.second_moment(rows, weights)
    for pattern in layout.patterns:
        pattern_resp = resp[pattern.rows]
        xo = X[pattern.rows][:, pattern.observed]  # no column: the components' own moments
        gaussians = _PatternGaussians(pattern, params, structure)
        diff = xo[None, :, :] - gaussians.mean_obs[:, None, :]
        _, part_x, part_xx = _completed_moments(
            xo, pattern_resp, diff, pattern, gaussians, structure, n_features
        )
        sum_x = sum_x + part_x
        sum_xx = sum_xx + part_xx
    return sum_x, sum_xx


class MissingEStep:
    """The E-step over data with NaN: the fused kernel on the complete rows plus one
    vectorised pass per missingness pattern; statistics add.

    Parameters
    ----------
    X : numpy.ndarray of shape (n_obs, n_features)
        Observations with NaN where missing (no row entirely NaN).
    sample_weight : numpy.ndarray of shape (n_obs,)
    shift : numpy.ndarray of shape (n_features,)
        Statistics are of ``X - shift``; parameters are given in those units.
    structure : CovarianceStructure
    layout : MissingLayout, optional
        ``missing_layout(X)``, computed when not given.

    Calling the object with a :class:`~bayesmix.families.gaussian.stats.Params` returns the
    :class:`~bayesmix.families.gaussian.stats.SufficientStats` of all rows;
    ``log_likelihood`` is the weighted sum of observed-data marginal log densities.
    """

    def __init__(
        self,
        X: np.ndarray,
        sample_weight: np.ndarray,
        shift: np.ndarray,
        structure: CovarianceStructure,
        layout: MissingLayout | None = None,
    ) -> None:
        self.structure = structure
        self.shift = shift
        self.layout = missing_layout(X) if layout is None else layout
        self.n_features = X.shape[1]
        complete = self.layout.complete
        self.X_complete = np.ascontiguousarray(X[complete])
        self.w_complete = np.ascontiguousarray(sample_weight[complete])
        self.blocks = []  # (pattern, shifted observed values, weights) per block of rows
        for pattern in self.layout.patterns:
            xo = X[pattern.rows][:, pattern.observed] - shift[pattern.observed]
            weights = sample_weight[pattern.rows]
            self.blocks.append((pattern, xo, weights))

    def __call__(self, params: Params) -> SufficientStats:
        n_components = params.weights.size
        if self.X_complete.shape[0]:
            total = e_step(self.X_complete, self.w_complete, self.shift, params, self.structure)
        else:
            total = _zero_stats(self.structure, n_components, self.n_features)
        for pattern, xo, weights in self.blocks:
            gaussians = _PatternGaussians(pattern, params, self.structure)
            size = block_rows(xo.shape[0], self.n_features, n_components)
            for rows in iter_blocks(xo.shape[0], size):
                total = total + _pattern_stats(
                    xo[rows],
                    weights[rows],
                    pattern,
                    gaussians,
                    params,
                    self.structure,
                    self.n_features,
                )
        return total
