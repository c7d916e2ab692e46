"""Prior specifications of a Gaussian mixture and their data-scaled defaults.

The same priors drive MAP-EM (closed-form conjugate M-steps) and the PyMC backend:

* weights ``w ~ Dirichlet(weight_concentration)``, 4 per component by default;
* means ``mu_kd ~ Normal(mean_loc_d, mean_scale_d)``, independent of the covariances;
* covariances: inverse-Wishart(``covariance_dof``, ``covariance_scale``) for ``full`` and
  ``tied``; inverse-gamma(``covariance_dof / 2``, ``covariance_scale / 2``) on each
  variance for ``diag`` and ``spherical``. Both are zero-avoiding: their density
  vanishes as a variance goes to 0, where the mixture likelihood is unbounded.

The weights' default concentration of 4 keeps every component populated when ``K`` is
meant to be ``K`` (Fruehwirth-Schnatter 2006, sec. 4.2.3): under the uniform Dirichlet(1)
the posterior of a full-covariance mixture of iris with K=3 puts much of its mass on two
clusters and a component holding a handful of rows (Gibbs chains fall into it and stay;
NUTS chains too), which is BIC's answer for K=2 and not a three-cluster posterior. An
overfitted mixture (:func:`bayesmix.overfitted_mixture`) wants the opposite, a
concentration well below 1, and sets it.

Other defaults (any field left ``None``), in the spirit of mclust's ``defaultPrior``: the means
centred on the data mean with a scale of 2.5 data standard deviations; covariances whose
prior mean has the data variances divided by ``K^(2/D)`` on its diagonal (the data volume
shared among ``K`` components), with the fewest degrees of freedom that keep that mean
finite (``D + 2`` for inverse-Wishart, 3 for inverse-gamma).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from scipy.special import betaln, gammaln

from bayesmix.families.gaussian.covariance import CovarianceStructure, variance_rounding

__all__ = [
    "Priors",
    "ResolvedPriors",
    "StickBreakingPriors",
    "MEAN_SCALE_IN_SDS",
    "WEIGHT_CONCENTRATION",
]

MEAN_SCALE_IN_SDS = 2.5
WEIGHT_CONCENTRATION = 4.0


def _optional_array(value: Any, name: str) -> np.ndarray | None:
    if value is None:
        return None
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"priors.{name} must be numeric; got {value!r}.") from None
    if not np.isfinite(array).all():
        raise ValueError(f"priors.{name} must be finite; got {value!r}.")
    return array


def _optional_positive(value: Any, name: str) -> np.ndarray | None:
    array = _optional_array(value, name)
    if array is not None and (array <= 0).any():
        raise ValueError(f"priors.{name} must be finite and > 0; got {value!r}.")
    return array


@dataclass(frozen=True)
class Priors:
    """Priors on the weights, means and covariances of a Gaussian mixture.

    Parameters
    ----------
    weight_concentration : float or array-like of shape (K,), optional
        Dirichlet concentration of the weights. Default 4 (``WEIGHT_CONCENTRATION``):
        keeps components from emptying (see the module notes). ``1`` is uniform;
        values below 1 favour sparse weights (an overfitted mixture empties surplus
        components).
    mean_loc : float or array-like of shape (D,), optional
        Prior location of every component mean. Default: the data mean.
    mean_scale : float or array-like of shape (D,), optional
        Prior standard deviation of the means. Default: 2.5 data standard deviations.
    covariance_dof : float, optional
        Degrees of freedom of the inverse-Wishart (full, tied; must exceed ``D - 1``)
        or twice the shape of the inverse-gamma (diag, spherical). Default ``D + 2``
        resp. 3.
    covariance_scale : float or array-like, optional
        Scale matrix ``(D, D)`` (full, tied), scale vector ``(D,)`` (diag) or scalar
        (spherical). Default: prior mean covariance ``diag(var(X)) / C^(2/D)``, the
        data volume shared among ``C`` clusters.
    covariance_clusters : float, optional
        ``C`` of the default ``covariance_scale``: how many clusters the data are
        expected to hold. Default ``K``; an overfitted mixture sets 1, as its sparse
        weight prior expects few clusters, not ``K``.
    """

    weight_concentration: Any = WEIGHT_CONCENTRATION
    mean_loc: Any = None
    mean_scale: Any = None
    covariance_dof: float | None = None
    covariance_scale: Any = None
    covariance_clusters: float | None = None

    def __post_init__(self) -> None:
        _optional_positive(self.weight_concentration, "weight_concentration")
        _optional_positive(self.mean_scale, "mean_scale")
        dof = _optional_positive(self.covariance_dof, "covariance_dof")
        if dof is not None and dof.ndim != 0:
            raise ValueError(f"priors.covariance_dof must be a scalar; got shape {dof.shape}.")
        _optional_array(self.mean_loc, "mean_loc")
        _optional_array(self.covariance_scale, "covariance_scale")
        clusters = _optional_positive(self.covariance_clusters, "covariance_clusters")
        if clusters is not None and clusters.ndim != 0:
            raise ValueError(
                f"priors.covariance_clusters must be a scalar; got shape {clusters.shape}."
            )

    def resolve(
        self,
        X: np.ndarray,
        n_components: int,
        structure: CovarianceStructure,
        sample_weight: np.ndarray | None = None,
    ) -> ResolvedPriors:
        """Fill defaults from the data and check shapes.

        Parameters
        ----------
        X : numpy.ndarray of shape (n_obs, n_features)
            Validated observations.
        n_components : int
            Number of components K.
        structure : CovarianceStructure
            Covariance structure, which fixes the form of the covariance prior.
        sample_weight : numpy.ndarray, optional
            Frequency weights for the data moments.

        Returns
        -------
        ResolvedPriors
        """
        n_features = X.shape[1]
        weights = np.ones(X.shape[0]) if sample_weight is None else sample_weight
        data_mean = np.average(X, axis=0, weights=weights)
        data_var = np.average((X - data_mean) ** 2, axis=0, weights=weights)
        # Constant columns have no scale of their own: borrow one so priors stay proper.
        spread = data_var > variance_rounding(data_mean)
        fallback = data_var[spread].mean() if spread.any() else 1.0
        data_var = np.where(spread, data_var, fallback)

        concentration = self._vector(
            self.weight_concentration,
            np.full(n_components, WEIGHT_CONCENTRATION),
            n_components,
            "weight_concentration",
        )
        mean_loc = self._vector(self.mean_loc, data_mean, n_features, "mean_loc")
        mean_scale = self._vector(
            self.mean_scale, MEAN_SCALE_IN_SDS * np.sqrt(data_var), n_features, "mean_scale"
        )
        dof = (
            structure.default_prior_dof(n_features)
            if self.covariance_dof is None
            else float(self.covariance_dof)
        )
        if not structure.axis_aligned and dof <= n_features - 1:
            raise ValueError(
                f"priors.covariance_dof must exceed n_features - 1 = {n_features - 1} for an "
                f"inverse-Wishart prior; got {dof}."
            )
        clusters = n_components if self.covariance_clusters is None else self.covariance_clusters
        default_scale = structure.default_prior_scale(data_var / clusters ** (2.0 / n_features))
        scale = np.asarray(
            default_scale if self.covariance_scale is None else self.covariance_scale, dtype=float
        )
        scale = self._check_scale(scale, np.shape(default_scale), structure)
        return ResolvedPriors(concentration, mean_loc, mean_scale, dof, scale)

    @staticmethod
    def _vector(value, default, length, name):
        if value is None:
            return default
        array = np.asarray(value, dtype=float)
        try:
            return np.broadcast_to(array, (length,)).copy()
        except ValueError:
            raise ValueError(
                f"priors.{name} must be a scalar or have shape ({length},); "
                f"got shape {array.shape}."
            ) from None

    @staticmethod
    def _check_scale(scale, shape, structure):
        if structure.axis_aligned and scale.ndim == 0:  # one value for every variance
            scale = np.full(shape, float(scale))
        if scale.shape != tuple(shape):
            raise ValueError(
                f"priors.covariance_scale for covariance_type={structure.name!r} must have "
                f"shape {tuple(shape)}; got {scale.shape}."
            )
        if scale.ndim == 2:
            if not np.allclose(scale, scale.T):
                raise ValueError("priors.covariance_scale must be a symmetric matrix.")
            if np.linalg.eigvalsh(scale).min() <= 0:
                raise ValueError("priors.covariance_scale must be positive definite.")
        elif (scale <= 0).any():
            raise ValueError("priors.covariance_scale must be > 0.")
        return scale


@dataclass(frozen=True)
class ResolvedPriors:
    """Concrete prior parameters for data of a known shape (see :class:`Priors`)."""

    weight_concentration: np.ndarray
    mean_loc: np.ndarray
    mean_scale: np.ndarray
    covariance_dof: float
    covariance_scale: np.ndarray | float

    def shifted(self, shift: np.ndarray) -> ResolvedPriors:
        """The same priors for data translated by ``-shift`` (covariances are invariant)."""
        return ResolvedPriors(
            self.weight_concentration,
            self.mean_loc - shift,
            self.mean_scale,
            self.covariance_dof,
            self.covariance_scale,
        )

    def log_density(
        self,
        weights: np.ndarray,
        means: np.ndarray,
        covariances: np.ndarray,
        structure: CovarianceStructure,
    ) -> float:
        """Joint log prior density of one parameter set (covariances in natural form)."""
        factor = structure.precision_cholesky(covariances)
        return float(
            self.log_density_draws(
                weights[None], means[None], covariances[None], factor[None], structure
            )[0]
        )

    def log_density_draws(
        self,
        weights: np.ndarray,
        means: np.ndarray,
        covariances: np.ndarray,
        prec_chol: np.ndarray,
        structure: CovarianceStructure,
    ) -> np.ndarray:
        """:meth:`log_density` of a batch of parameter sets (leading axis, ``S``) whose
        precision factors are known (``inv(cov) = F F^T``); shape ``(S,)``."""
        # Components emptied by a sparse prior (weight exactly 0, where the density of a
        # concentration < 1 is infinite) leave the model: the Dirichlet is evaluated over
        # the remaining components, so the objective stays finite and comparable.
        log_dirichlet = self.weights_log_density(weights)
        z = (means - self.mean_loc) / self.mean_scale
        log_normal = -0.5 * (z**2).sum(axis=(1, 2)) - means.shape[1] * (
            np.log(self.mean_scale).sum() + 0.5 * means.shape[2] * np.log(2 * np.pi)
        )
        log_cov = structure.log_prior_draws(
            covariances, prec_chol, self.covariance_dof, self.covariance_scale
        )
        return log_dirichlet + log_normal + log_cov

    def weights_log_density(self, weights: np.ndarray) -> np.ndarray:
        """Log prior density ``(S,)`` of weights ``(S, K)``: the Dirichlet over the
        components alive."""
        alive = weights > 0
        alpha = np.where(alive, self.weight_concentration, 0.0)
        weight_terms = np.where(alive, (alpha - 1.0) * np.log(np.where(alive, weights, 1.0)), 0.0)
        return (
            gammaln(alpha.sum(axis=1))
            - np.where(alive, gammaln(np.where(alive, alpha, 1.0)), 0.0).sum(axis=1)
            + weight_terms.sum(axis=1)
        )


@dataclass(frozen=True)
class StickBreakingPriors(ResolvedPriors):
    """:class:`ResolvedPriors` whose weights have the truncated stick-breaking prior of
    NUTS, ADVI and VB (``weight_prior="dirichlet_process"`` or ``"pitman_yor"``):
    ``weight_sticks`` holds the Beta parameters ``(2, K - 1)`` of the ``K - 1`` sticks,
    the K-th weight the remainder
    (:func:`bayesmix.inference.vb_weights.truncated_stick_parameters`; VB's ``q`` keeps K
    sticks, :func:`bayesmix.inference.vb.result_priors`);
    ``weight_concentration`` is unused. A saved result keeps ``weight_sticks``
    (:mod:`bayesmix.results.io`; a file without them loads as :class:`ResolvedPriors`)."""

    weight_sticks: np.ndarray | None = None

    def shifted(self, shift: np.ndarray) -> StickBreakingPriors:
        """The same priors for data translated by ``-shift``."""
        base = ResolvedPriors.shifted(self, shift)
        return StickBreakingPriors(**vars(base), weight_sticks=self.weight_sticks)

    def weights_log_density(self, weights: np.ndarray) -> np.ndarray:
        """Log prior density ``(S,)`` of weights ``(S, K)`` under the sticks."""
        return _stick_log_density(weights, self.weight_sticks)


def _stick_log_density(weights: np.ndarray, sticks: np.ndarray) -> np.ndarray:
    """Log density ``(S,)`` of weights ``(S, K)`` under the truncated stick-breaking prior
    with ``K - 1`` sticks ``v_k = pi_k / R_k ~ Beta(a_k, b_k)`` (``R_k = sum_{j>=k} pi_j``,
    the K-th weight the remainder; ``sticks`` = ``(a, b)``, ``(2, K - 1)``): ``sum_k
    log Beta(v_k) - log R_k`` (the generalised Dirichlet of Connor & Mosimann 1969)."""
    a, b = np.asarray(sticks, dtype=float)
    tail = np.cumsum(weights[:, ::-1], axis=1)[:, ::-1]  # R_k
    n_sticks = a.size
    with np.errstate(divide="ignore"):
        log_w, log_tail = np.log(weights[:, :n_sticks]), np.log(tail)
    terms = (
        (a - 1.0) * log_w
        + (b - 1.0) * log_tail[:, 1 : n_sticks + 1]
        - (a + b - 1.0) * log_tail[:, :n_sticks]
        - betaln(a, b)
    )
    return terms.sum(axis=1)
