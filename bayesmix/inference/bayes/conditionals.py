"""The Gaussian mixture's parameters as the Gibbs sampler holds them, and their conjugate
conditional laws: draws and log densities of the weights (Dirichlet) and of the means given
the covariances (normal); the covariances' laws belong to each
:class:`~bayesmix.families.gaussian.covariance.CovarianceStructure`."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
from scipy.special import gammaln

from bayesmix.families.gaussian.covariance import LOG_2PI

if TYPE_CHECKING:
    from bayesmix.families.gaussian.covariance import CovarianceStructure
    from bayesmix.families.gaussian.missing import Pattern
    from bayesmix.priors import ResolvedPriors

__all__ = [
    "GibbsState",
    "component_precisions",
    "log_joint",
    "log_likelihood",
    "log_dirichlet_draw",
    "dirichlet_log_density",
    "mean_draw",
    "mean_log_density",
    "mean_log_density_pairs",
    "impute_missing",
]


@dataclass(frozen=True)
class GibbsState:
    """The parameters of ``R`` replicas (chains, and their tempered copies): log weights
    ``(R, K)``, means ``(R, K, D)``, covariances in natural form and their precision
    factors (``(R,) + natural shape``; ``inv(cov) = F F^T``)."""

    log_weights: np.ndarray
    means: np.ndarray
    covariances: np.ndarray
    prec_chol: np.ndarray

    def arrays(self) -> tuple[np.ndarray, ...]:
        """The four arrays (not copied)."""
        return self.log_weights, self.means, self.covariances, self.prec_chol

    def take(self, index: np.ndarray) -> GibbsState:
        """The replicas in the order ``index``."""
        return GibbsState(*(array[index] for array in self.arrays()))

    def where(self, mask: np.ndarray, other: GibbsState) -> GibbsState:
        """Replica ``r`` from ``other`` where ``mask[r]``, from ``self`` elsewhere."""
        return GibbsState(
            *(
                np.where(mask.reshape((-1,) + (1,) * (mine.ndim - 1)), theirs, mine)
                for mine, theirs in zip(self.arrays(), other.arrays(), strict=True)
            )
        )

    def put(self, index: np.ndarray, other: GibbsState) -> GibbsState:
        """A copy whose replicas ``index`` are ``other``'s."""
        arrays = []
        for mine, theirs in zip(self.arrays(), other.arrays(), strict=True):
            mine = mine.copy()
            mine[index] = theirs
            arrays.append(mine)
        return GibbsState(*arrays)

    @classmethod
    def concatenate(cls, states: list[GibbsState]) -> GibbsState:
        """The replicas of ``states``, one after the other."""
        columns = zip(*(state.arrays() for state in states), strict=True)
        return cls(*(np.concatenate(values) for values in columns))

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(R, K, D)``."""
        return self.means.shape

    @property
    def weights(self) -> np.ndarray:
        """``(R, K)``, every component's weight at least the smallest positive float."""
        return np.maximum(np.exp(self.log_weights), np.finfo(float).tiny)


def _component_view(state: GibbsState, structure: CovarianceStructure):
    """Every replica's components side by side: the structure that evaluates them and
    their precision factors ``(R K, ...)`` (a shared factor repeated per component, read
    by the unshared structure of the same form: tied as full, EII as spherical, EEI as
    diag)."""
    n_replicas, n_components, _ = state.shape
    if structure.shared_across_components:
        return structure.per_component(), np.repeat(state.prec_chol, n_components, axis=0)
    factors = state.prec_chol.reshape((n_replicas * n_components,) + state.prec_chol.shape[2:])
    return structure, factors


def component_precisions(state: GibbsState, structure: CovarianceStructure) -> np.ndarray:
    """Every component's precision matrix, ``(R, K, D, D)``."""
    n_replicas, n_components, n_features = state.shape
    evaluator, factors = _component_view(state, structure)
    precision = evaluator.precision_matrices(factors, n_replicas * n_components, n_features)
    return precision.reshape(n_replicas, n_components, n_features, n_features)


def log_joint(X: np.ndarray, state: GibbsState, structure: CovarianceStructure) -> np.ndarray:
    """``log w_k + log N(x_n | mu_k, cov_k)`` of every replica, shape ``(N, R, K)``;
    ``X`` is ``(N, D)``, or ``(R, N, D)`` when every replica has its own completion."""
    n_replicas, n_components, n_features = state.shape
    if X.ndim == 3:
        columns = [log_joint(X[r], state.take(np.array([r])), structure) for r in range(n_replicas)]
        return np.concatenate(columns, axis=1)
    evaluator, factors = _component_view(state, structure)
    flat_means = state.means.reshape(n_replicas * n_components, n_features)
    log_prob = evaluator.log_prob(X, flat_means, factors)
    return log_prob.reshape(len(X), n_replicas, n_components) + state.log_weights


def log_likelihood(joint: np.ndarray) -> np.ndarray:
    """The mixture's log-likelihood of each replica from its :func:`log_joint`, ``(R,)``."""
    return np.logaddexp.reduce(joint, axis=2).sum(axis=0)


def log_dirichlet_draw(concentration: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``log w`` for ``w ~ Dirichlet(concentration)`` along the last axis:
    ``Gamma(a) = Gamma(a + 1) U^(1/a)`` keeps tiny concentrations (a sparse prior's
    empty components) finite in log space."""
    log_gamma = (
        np.log(rng.gamma(concentration + 1.0))
        + np.log(rng.random(concentration.shape)) / concentration
    )
    return log_gamma - np.logaddexp.reduce(log_gamma, axis=-1, keepdims=True)


def dirichlet_log_density(log_weights: np.ndarray, concentration: np.ndarray) -> np.ndarray:
    """Log density of ``Dirichlet(concentration)`` (last axis) at ``exp(log_weights)``."""
    return (
        gammaln(concentration.sum(axis=-1))
        - gammaln(concentration).sum(axis=-1)
        + ((concentration - 1.0) * log_weights).sum(axis=-1)
    )


def _mean_conditional(mass, sum_x, precision, priors: ResolvedPriors):
    """The conditional posterior of a mean given its covariance, ``N(A^-1 b, A^-1)`` with
    ``A = diag(1 / mean_scale^2) + mass inv(cov)`` and ``b = mean_loc / mean_scale^2 +
    inv(cov) sum_x``: returns ``A`` and ``b`` (batch axes broadcast)."""
    n_features = sum_x.shape[-1]
    prior_precision = priors.mean_scale**-2.0
    posterior_precision = precision * np.asarray(mass)[..., None, None]
    idx = np.arange(n_features)
    posterior_precision[..., idx, idx] += prior_precision
    shift = np.einsum("...de,...e->...d", precision, sum_x) + prior_precision * priors.mean_loc
    return posterior_precision, shift


def mean_draw(
    mass: np.ndarray,
    sum_x: np.ndarray,
    precision: np.ndarray,
    priors: ResolvedPriors,
    rng: np.random.Generator,
) -> np.ndarray:
    """Means ``(M, D)`` of ``M`` components from their conditional posterior given the
    covariances (the prior on each coordinate is an independent normal)."""
    posterior_precision, shift = _mean_conditional(mass, sum_x, precision, priors)
    lower = np.linalg.cholesky(posterior_precision)
    centre = np.linalg.solve(posterior_precision, shift[..., None])[..., 0]
    noise = rng.standard_normal(sum_x.shape)[..., None]
    return centre + np.linalg.solve(np.swapaxes(lower, -1, -2), noise)[..., 0]


def mean_log_density(
    means: np.ndarray,
    mass: np.ndarray,
    sum_x: np.ndarray,
    precision: np.ndarray,
    priors: ResolvedPriors,
) -> np.ndarray:
    """Log density of ``means`` under the law :func:`mean_draw` samples (batch axes of
    every argument broadcast; the last is the feature)."""
    posterior_precision, shift = _mean_conditional(mass, sum_x, precision, priors)
    lower = np.linalg.cholesky(posterior_precision)
    centre = np.linalg.solve(posterior_precision, shift[..., None])[..., 0]
    diff = means - centre
    quadratic = np.einsum("...d,...de,...e->...", diff, posterior_precision, diff)
    log_det = np.log(np.diagonal(lower, axis1=-2, axis2=-1)).sum(axis=-1)
    return log_det - 0.5 * (means.shape[-1] * LOG_2PI + quadratic)


def mean_log_density_pairs(
    means: np.ndarray,
    precision: np.ndarray,
    mass: np.ndarray,
    sum_x: np.ndarray,
    priors: ResolvedPriors,
) -> np.ndarray:
    """:func:`mean_log_density` of every mean ``j`` (with its precision) under every
    conditional ``k`` (its mass and sum), ``(R, M, K, J)`` for means ``(R, J, D)``,
    precisions ``(R, J, D, D)`` and statistics ``(M, K)``, ``(M, K, D)``.

    With ``P = diag(1 / mean_scale^2)`` and ``W_j = P^-1/2 inv(cov_j) P^-1/2 = Q_j E_j
    Q_j^T`` (one eigendecomposition per mean, not per pair), ``A = P^1/2 Q (I + n E)
    Q^T P^1/2``: the log determinant is ``log det P + sum log(1 + n e)`` and the
    quadratic form is diagonal in ``Q_j``'s basis.
    """
    n_features = means.shape[-1]
    root = 1.0 / priors.mean_scale  # P^1/2
    whitened = precision / root[:, None] / root[None, :]  # P^-1/2 inv(cov) P^-1/2
    eigenvalues, basis = np.linalg.eigh(whitened)  # (R, J, D), (R, J, D, D)
    basis_t = np.swapaxes(basis, -1, -2)
    nu = np.einsum("rjed,rjd->rje", basis_t, means * root)  # Q^T P^1/2 mu
    # beta = P^-1/2 b = P^-1/2 inv(cov) s + P^1/2 mu0 = W P^1/2 s + P^1/2 mu0, rotated
    scaled_sums = (sum_x * root).reshape(-1, n_features)  # (M K, D)
    rotated_sums = np.einsum("rjed,cd->rjce", basis_t, scaled_sums)  # Q^T P^1/2 s
    rotated_prior = np.einsum("rjed,d->rje", basis_t, priors.mean_loc * root)
    beta = eigenvalues[:, :, None, :] * rotated_sums + rotated_prior[:, :, None, :]
    scale = 1.0 + mass.reshape(-1)[None, None, :, None] * eigenvalues[:, :, None, :]
    nu = nu[:, :, None, :]
    quadratic = (scale * nu**2 - 2.0 * nu * beta + beta**2 / scale).sum(axis=-1)
    log_det = np.log(root).sum() + 0.5 * np.log(scale).sum(axis=-1)
    values = log_det - 0.5 * (n_features * LOG_2PI + quadratic)  # (R, J, M K)
    n_replicas, n_means = means.shape[:2]
    values = values.reshape(n_replicas, n_means, *mass.shape)
    return np.moveaxis(values, 1, -1)


def impute_missing(
    X: np.ndarray,
    patterns: tuple[Pattern, ...],
    state: GibbsState,
    allocation: np.ndarray,
    betas: np.ndarray,
    structure: CovarianceStructure,
    rng: np.random.Generator,
) -> None:
    """Draw every replica's missing values from their conditional given the observed
    features of the row, its allocation and the parameters (data augmentation):
    ``x_m ~ N(mu_k,m + B_k (x_o - mu_k,o), C_k / beta)`` with ``B_k = Sigma_k,mo
    Sigma_k,oo^-1`` and ``C_k = Sigma_k,mm - B_k Sigma_k,om`` (a replica tempered at
    ``beta`` weighs its likelihood by ``beta``). ``X`` ``(R, N, D)`` is updated in place.

    Parameters
    ----------
    X : numpy.ndarray of shape (R, N, D)
    patterns : tuple of Pattern
        The missingness patterns (:func:`bayesmix.families.gaussian.missing.missing_layout`).
    state : GibbsState
    allocation : numpy.ndarray of shape (N, R)
    betas : numpy.ndarray of shape (R,)
    structure : CovarianceStructure
    rng : numpy.random.Generator
    """
    n_replicas, n_components, n_features = state.shape
    covariances = structure.to_full(state.covariances, n_components, n_features)
    covariances = np.broadcast_to(covariances, (n_replicas, n_components, n_features, n_features))
    for pattern in patterns:
        obs, mis, rows = pattern.observed, pattern.missing, pattern.rows
        cov_mm = covariances[:, :, mis[:, None], mis]  # (R, K, m, m)
        if obs.size:
            cov_oo = covariances[:, :, obs[:, None], obs]
            cov_om = covariances[:, :, obs[:, None], mis]
            regression = np.swapaxes(np.linalg.solve(cov_oo, cov_om), -1, -2)  # (R, K, m, o)
            conditional = cov_mm - regression @ cov_om
        else:
            regression, conditional = None, cov_mm
        conditional = 0.5 * (conditional + np.swapaxes(conditional, -1, -2))
        lower = np.linalg.cholesky(conditional / betas[:, None, None, None])
        replica = np.arange(n_replicas)[:, None]
        component = allocation[rows].T  # (R, n)
        centre = state.means[replica, component][..., mis]  # (R, n, m)
        if regression is not None:
            observed = X[:, rows][..., obs] - state.means[replica, component][..., obs]
            centre += np.einsum("rnmo,rno->rnm", regression[replica, component], observed)
        noise = rng.standard_normal(centre.shape)
        draws = centre + np.einsum("rnmj,rnj->rnm", lower[replica, component], noise)
        X[:, rows[:, None], mis] = draws
