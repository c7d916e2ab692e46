"""mclust's 14 covariance structures, each defined in one place.

``full`` (VVV), ``tied`` (EEE), ``diag`` (VVI) and ``spherical`` (VII) keep scikit-learn's
names; the other ten (EII, EEI, VEI, EVI, VEE, EVE, VVE, EEV, VEV, EVV, with
``Sigma_k = lambda_k D_k A_k D_k^T``) are named by their mclust names and reuse the storage
and the E-step kernels of the basic four (see the section on them below). Every structure
knows, for its *natural* storage (the shapes scikit-learn uses):

* ``full``: ``(K, D, D)``; ``tied``: ``(D, D)``; ``diag``: ``(K, D)``; ``spherical``: ``(K,)``;
  ``EII``: ``()``; ``EEI``: ``(D,)``; ``VEI``, ``EVI``: ``(K, D)``; the other six ``(K, D, D)``,

how many free parameters it has, the sufficient second-moment statistic of a block of
rows, the M-step (maximum likelihood, or MAP under its conjugate prior), the precision
Cholesky factor ``U`` with ``inv(cov) = U @ U.T``, the Gaussian log density, the log prior
density, and the conversion to full ``(K, D, D)`` matrices used by the shared result
interface. Other modules read what differs between structures from the structure
(``shared_across_components``, ``axis_aligned``, :meth:`CovarianceStructure.n_covariances`,
...), never by comparing its ``name``; ``tests/test_architecture.py`` checks it.

Conjugate priors: ``full`` and ``tied`` covariances are inverse-Wishart(``dof``, ``scale``)
with ``scale`` a ``(D, D)`` matrix; ``diag`` and ``spherical`` variances are
inverse-gamma(``dof / 2``, ``scale / 2``) with ``scale`` of shape ``(D,)`` or scalar, the
one-dimensional case of the same inverse-Wishart family; so are the variances shared by
all components of ``EEI`` (``(D,)``) and ``EII`` (one), whose conditional posteriors pool
every component's scatter as ``tied``'s does. These six support full Bayes (Gibbs, NUTS,
ADVI: :func:`bayes_structures`); the other eight, EM and MAP-EM only.
"""

from __future__ import annotations

import warnings
from abc import ABC, abstractmethod
from collections import deque
from typing import ClassVar

import numpy as np
from scipy.special import gammaln, multigammaln

from bayesmix.exceptions import ConvergenceWarning, DegenerateComponentWarning
from bayesmix.families.gaussian import constrained_kernels, kernels
from bayesmix.families.gaussian.kernels import n_chunks_for

__all__ = [
    "ALIASES",
    "BASIC_STRUCTURES",
    "CovarianceStructure",
    "INNER_MAX_ITER",
    "record_inner_iterations",
    "capped_m_steps",
    "INNER_TOL",
    "MCLUST_MODELS",
    "accepted_names",
    "bayes_structures",
    "canonical_name",
    "get_structure",
    "inverse_wishart_logpdf",
    "STRUCTURES",
    "variance_rounding",
]

LOG_2PI = np.log(2.0 * np.pi)
# how many units of rounding (eps times the size) a variance may sit from zero by rounding
VARIANCE_ROUNDING = 16.0


def variance_rounding(mean: np.ndarray, offset: float = 0.0) -> np.ndarray:
    """The variance a constant feature with this mean may show by rounding alone: a
    variance at or below it is zero on the feature's own scale. Each value of size
    ``|mean|`` is stored to ``eps |mean|``, and the variances are computed about a centre
    (never as the mean square less the squared mean), so a constant feature's variance is
    of order ``(eps mean)^2`` (3.3 repeated has variance 1e-30 to 3e-29, not 0; 1e6 +
    0.1 repeated ~1e-20): the floor is ``(VARIANCE_ROUNDING * eps * mean)^2``. A floor of
    ``eps mean^2`` called the column ``1e8 + N(0, 1)`` constant (variance 1 below 35)
    and regularised it with its squared mean. ``offset``: a variance that was added and
    subtracted again (``reg_covar``), whose rounding ``eps * offset`` counts too."""
    eps = np.finfo(float).eps
    return np.square(VARIANCE_ROUNDING * eps * mean) + VARIANCE_ROUNDING * eps * offset


class CovarianceStructure(ABC):
    """Operations of one covariance structure; stateless singletons."""

    name: ClassVar[str]
    # what the model constrains, in words (declarations and reports show it)
    description: ClassVar[str]
    #: the model's name in mclust (Fraley & Raftery), e.g. ``"VVV"`` for ``full``
    mclust_name: ClassVar[str]

    # -- bookkeeping ---------------------------------------------------------------
    natural_dims: ClassVar[tuple[str, ...]]
    pymc_precision_name: ClassVar[str]  # the Deterministic holding the precision parameter
    # one covariance for all components (tied), not one per component
    shared_across_components: ClassVar[bool] = False
    # for a shared covariance: the unshared structure of the same form (per_component)
    unshared_name: ClassVar[str | None] = None
    # variances only (diag, spherical): no correlations, no matrices to factorise
    axis_aligned: ClassVar[bool] = False
    #: full Bayes (Gibbs, NUTS, ADVI) available: conjugate updates and a PyMC prior
    supports_bayes: ClassVar[bool] = True
    #: the components' covariances share a part (a volume, shape or orientation) without
    #: being one shared covariance (VEI, EVI, VEE, EVE, VVE, EEV, VEV, EVV): no component's
    #: covariance can be counted or updated on its own
    couples_components: ClassVar[bool] = False

    def natural_shape(self, n_components: int, n_features: int) -> tuple[int, ...]:
        """Shape of the covariances in this structure's storage."""
        sizes = {"component": n_components, "feature": n_features, "feature_": n_features}
        return tuple(sizes[dim] for dim in self.natural_dims)

    def n_covariances(self, n_components: int) -> int:
        """Number of distinct covariances: one per component, or one shared by all."""
        return 1 if self.shared_across_components else n_components

    def per_component(self) -> CovarianceStructure:
        """The structure that evaluates one component's covariance on its own: this
        one, or for a covariance shared by all components the unshared structure of
        the same form (``unshared_name``; tied: full; EII: spherical; EEI: diag), whose
        precision factors are the shared one's repeated per component."""
        return STRUCTURES[self.unshared_name] if self.shared_across_components else self

    def min_observations(self, n_features: int) -> int:
        """Effective observations a covariance needs to have spread in every direction:
        ``D + 1`` for a matrix (fewer cannot span the space), 2 for variances (one point
        has no spread)."""
        return n_features + 1

    def representable_variances(self, values: np.ndarray | float, n_features: int) -> np.ndarray:
        """Per-feature variances ``(D,)`` as this structure represents them.

        Parameters
        ----------
        values : numpy.ndarray or float
            One value per feature (``(D,)``) or one for all.
        n_features : int

        Returns
        -------
        numpy.ndarray of shape (n_features,)
            ``values`` broadcast; a spherical covariance, one variance for all features,
            holds their mean (as :meth:`m_step` adds the mean of a per-feature
            ``reg_covar``).
        """
        return np.broadcast_to(np.asarray(values, dtype=float), (n_features,))

    def pool_second_moments(self, moments: np.ndarray) -> np.ndarray:
        """Reduce per-component second moments to this structure's statistic.

        Parameters
        ----------
        moments : numpy.ndarray
            ``sum_n r_nk x_n x_n^T`` as ``(K, D, D)`` for matrix structures, or its
            diagonal ``(K, D)`` for axis-aligned ones.

        Returns
        -------
        numpy.ndarray
            The :meth:`second_moment` form: pooled over components (tied) or over
            features (spherical), else unchanged.
        """
        return moments

    def natural_precisions(self, prec_chol: np.ndarray) -> np.ndarray:
        """Precisions ``U U^T`` (``U**2`` for variances) in the natural storage shape,
        as scikit-learn's ``precisions_``."""
        return prec_chol @ np.swapaxes(prec_chol, -1, -2)

    @abstractmethod
    def n_parameters(self, n_components: int, n_features: int) -> int:
        """Number of free covariance parameters."""

    @abstractmethod
    def to_full(self, cov: np.ndarray, n_components: int, n_features: int) -> np.ndarray:
        """Expand natural storage to ``(..., K, D, D)`` matrices."""

    @abstractmethod
    def from_full(self, cov_full: np.ndarray) -> np.ndarray:
        """Reduce ``(K, D, D)`` matrices to natural storage (the structure's projection)."""

    @abstractmethod
    def default_prior_scale(self, target_variances: np.ndarray) -> np.ndarray | float:
        """Prior scale whose prior mean covariance has ``target_variances`` on the diagonal."""

    @abstractmethod
    def default_prior_dof(self, n_features: int) -> float:
        """Default prior degrees of freedom (the weakest with a finite prior mean)."""

    # -- EM --------------------------------------------------------------------------
    @abstractmethod
    def second_moment(self, X: np.ndarray, resp: np.ndarray) -> np.ndarray:
        """Sufficient statistic ``sum_n r_nk x_n x_n^T`` in the structure's reduced form."""

    @abstractmethod
    def m_step(
        self,
        mass: np.ndarray,
        sum_x: np.ndarray,
        sum_xx: np.ndarray,
        means: np.ndarray,
        dof: float | None,
        scale: np.ndarray | float | None,
        reg_covar: float | np.ndarray,
        start: np.ndarray | None = None,
    ) -> np.ndarray:
        """Covariances maximising the expected complete-data log posterior given ``means``.

        With ``dof=None`` (no prior) this is the maximum-likelihood update. ``reg_covar``
        is added to the variances: a scalar, or one value per feature (``(D,)``; a
        spherical covariance adds their mean). ``start``: the previous covariances
        (natural form), where the iterative M-steps (VEI, VEE, VEV, EVE, VVE) start
        their inner iterations; the closed-form ones ignore it.
        """

    @abstractmethod
    def fused_statistics(
        self,
        X: np.ndarray,
        sample_weight: np.ndarray,
        shift: np.ndarray,
        log_weights: np.ndarray,
        means: np.ndarray,
        prec_chol: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, float, float]:
        """One fused pass (see :mod:`bayesmix.families.gaussian.kernels`): ``mass``, ``sum_x``,
        ``sum_xx`` (this structure's form), log-likelihood and ``sum log max_k r``."""

    # -- densities -----------------------------------------------------------------
    @abstractmethod
    def precision_cholesky(self, cov: np.ndarray) -> np.ndarray:
        """Factor ``U`` with ``inv(cov) = U U^T`` (upper triangular for matrices)."""

    def positive_definite(self, cov: np.ndarray) -> bool:
        """Whether covariances in this structure's form are all positive definite (to
        rounding, without jitter)."""
        return kernels.cholesky_factors(cov) is not None

    @abstractmethod
    def precision_matrices(self, prec_chol: np.ndarray, n_components: int, n_features: int):
        """Precision matrices ``(K, D, D)``."""

    @abstractmethod
    def log_det_precision_cholesky(self, prec_chol: np.ndarray, n_features: int) -> np.ndarray:
        """``log det U`` per component, shape ``(K,)`` (or broadcastable)."""

    @abstractmethod
    def mahalanobis(self, X: np.ndarray, means: np.ndarray, prec_chol: np.ndarray) -> np.ndarray:
        """Squared Mahalanobis distances ``(n, K)``."""

    @abstractmethod
    def log_prior(self, cov: np.ndarray, dof: float, scale: np.ndarray | float) -> float:
        """Log density of the conjugate prior at ``cov`` (summed over components)."""

    @abstractmethod
    def log_prior_draws(
        self, cov: np.ndarray, prec_chol: np.ndarray, dof: float, scale: np.ndarray | float
    ) -> np.ndarray:
        """:meth:`log_prior` of a batch of draws (leading axis) whose precision factors
        ``prec_chol`` (any triangular ``F`` with ``inv(cov) = F F^T``) are known."""

    @abstractmethod
    def conditional_parameters(
        self,
        mass: np.ndarray,
        sum_x: np.ndarray,
        sum_xx: np.ndarray,
        means: np.ndarray,
        dof: float,
        scale: np.ndarray | float,
    ) -> tuple[np.ndarray, np.ndarray]:
        """The parameters of the covariances' conditional posterior given the means and
        the statistics of the observations allocated to each component (the conjugate
        update whose mode is :meth:`m_step` with the same prior): ``(dof, scale)`` of an
        inverse-Wishart for full and tied, ``(shape, rate)`` of inverse-gammas for diag
        and spherical. The statistics may carry leading batch axes before the component
        axis (except for tied, whose one covariance pools the components)."""

    @abstractmethod
    def conditional_draw(
        self, parameters: tuple[np.ndarray, np.ndarray], rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray]:
        """Covariances (natural form) drawn from :meth:`conditional_parameters`' law,
        and their triangular precision factors ``F`` (``inv(cov) = F F^T``)."""

    @abstractmethod
    def conditional_log_density(
        self, cov: np.ndarray, prec_chol: np.ndarray, parameters: tuple[np.ndarray, np.ndarray]
    ) -> np.ndarray:
        """Log density of each covariance (one per component; one in all for tied) under
        :meth:`conditional_parameters`' law; batch axes broadcast."""

    def posterior_draw(
        self,
        mass: np.ndarray,
        sum_x: np.ndarray,
        sum_xx: np.ndarray,
        means: np.ndarray,
        dof: float,
        scale: np.ndarray | float,
        rng: np.random.Generator,
    ) -> tuple[np.ndarray, np.ndarray]:
        """One draw of the covariances from their conditional posterior given the means
        and the statistics of the observations allocated to each component.

        Returns
        -------
        covariances : numpy.ndarray
            Natural form.
        prec_chol : numpy.ndarray
            A triangular factor ``F`` with ``inv(cov) = F F^T``, as :meth:`log_prob`
            takes it.
        """
        parameters = self.conditional_parameters(mass, sum_x, sum_xx, means, dof, scale)
        return self.conditional_draw(parameters, rng)

    # -- PyMC ------------------------------------------------------------------------
    @abstractmethod
    def pymc_scale(self, scale: np.ndarray | float) -> np.ndarray:
        """The prior scale as the PyMC parametrisation consumes it (a data input)."""

    @abstractmethod
    def pymc_precision(self, dof, scale, n_components: int, n_features: int, prefix: str = ""):
        """Create the covariance prior's variables in the active ``pm.Model``.

        ``prefix`` prefixes the variables' names and their dims other than
        ``component`` (a Gaussian block of an Independent family, ``"gaussian_"``).

        ``dof`` and ``scale`` (from :meth:`pymc_scale`) may be shared data tensors, so a
        compiled model can be reused with other priors. Free variables are
        dimensionless; the returned tensor (also registered as a Deterministic) is the
        precision parameter of :meth:`pymc_log_prob`.
        """

    @abstractmethod
    def pymc_start(
        self, cov: np.ndarray, scale: np.ndarray, prefix: str = ""
    ) -> dict[str, np.ndarray]:
        """Values of the free variables of :meth:`pymc_precision` that reproduce ``cov``
        (natural form), given the PyMC scale from :meth:`pymc_scale` (names prefixed
        with ``prefix``)."""

    @abstractmethod
    def pymc_log_prob(self, X, means, precision):
        """Gaussian log densities ``(n, K)`` as a pytensor graph."""

    @abstractmethod
    def pymc_observed_log_prob(self, X, means, precision, observed: np.ndarray):
        """``log N(x_o | mu_k,o, Sigma_k,oo)`` ``(n, K)`` over the ``observed`` features
        (an index array), as a pytensor graph: ``X`` holds those features only, ``means``
        and ``precision`` (:meth:`pymc_precision`'s) all of them."""

    @abstractmethod
    def covariance_from_precision(self, precision: np.ndarray, n_features: int) -> np.ndarray:
        """Full covariance matrices ``(..., K, D, D)`` from draws of the precision parameter."""

    def log_prob(self, X: np.ndarray, means: np.ndarray, prec_chol: np.ndarray) -> np.ndarray:
        """Gaussian log densities ``log N(x_n | mu_k, cov_k)``, shape ``(n, K)``."""
        n_features = X.shape[1]
        log_det = self.log_det_precision_cholesky(prec_chol, n_features)
        return -0.5 * (n_features * LOG_2PI + self.mahalanobis(X, means, prec_chol)) + log_det

    def __repr__(self) -> str:
        return f"{type(self).__name__}()"


# ---------------------------------------------------------------------------------------
# helpers shared by the matrix structures


def _outer_sums(X: np.ndarray, resp: np.ndarray) -> np.ndarray:
    """``sum_n resp_nk x_n x_n^T`` as ``(K, D, D)`` through one GEMM: ``X^T`` times the
    rows weighted per component (``N K D^2`` flops), or times the rows' unique products
    (``N K D (D + 1) / 2``) when there are more components than features plus one (the
    products' gather costs more than it saves otherwise)."""
    n_obs, n_features = X.shape
    n_components = resp.shape[1]
    if n_components <= n_features + 1:
        weighted = (resp[:, :, None] * X[:, None, :]).reshape(n_obs, n_components * n_features)
        out = (X.T @ weighted).reshape(n_features, n_components, n_features).transpose(1, 0, 2)
        return 0.5 * (out + np.swapaxes(out, 1, 2))
    rows, cols = np.triu_indices(n_features)
    products = X[:, rows] * X[:, cols]  # (n, D(D+1)/2)
    packed = resp.T @ products  # (K, D(D+1)/2)
    out = np.empty((n_components, n_features, n_features))
    out[:, rows, cols] = packed
    out[:, cols, rows] = packed
    return out


def _scatter_about(sum_xx, sum_x, mass, means):
    """``sum_n r (x - mu)(x - mu)^T`` from raw moments, shape ``(K, D, D)``."""
    cross = sum_x[..., :, None] * means[..., None, :]
    return (
        sum_xx
        - cross
        - np.swapaxes(cross, -1, -2)
        + mass[..., None, None] * means[..., :, None] * means[..., None, :]
    )


def jittered_cholesky(cov: np.ndarray) -> np.ndarray:
    """Batched lower Cholesky factor; adds growing jitter to components that fail.

    Parameters
    ----------
    cov : numpy.ndarray of shape (..., D, D)
        Covariance matrices.

    Returns
    -------
    numpy.ndarray of shape (..., D, D)
        Lower factors ``L`` with ``L @ L.T`` equal to ``cov`` (plus jitter where needed).
    """
    try:
        return np.linalg.cholesky(cov)
    except np.linalg.LinAlgError:
        pass
    batch = cov.reshape((-1,) + cov.shape[-2:]).copy()
    eye = np.eye(cov.shape[-1])
    for k in range(batch.shape[0]):
        try:  # only the components that fail get jitter (and a warning)
            batch[k] = np.linalg.cholesky(batch[k])
            continue
        except np.linalg.LinAlgError:
            pass
        base = max(np.abs(np.diag(batch[k])).mean(), 1.0) * 1e-12
        for power in range(11):  # at most 1% of the mean variance
            try:
                batch[k] = np.linalg.cholesky(batch[k] + base * 10.0**power * eye)
                break
            except np.linalg.LinAlgError:
                continue
        else:
            raise ValueError(
                "a covariance matrix is not positive definite even after adding jitter; "
                "increase reg_covar or check the data for constant or duplicated columns."
            )
        warnings.warn(
            f"covariance matrix {k} was not positive definite and was regularised with "
            f"jitter {base * 10.0**power:.3g}; consider a larger reg_covar.",
            DegenerateComponentWarning,
            stacklevel=3,
        )
    return batch.reshape(cov.shape)


def _upper_precision_cholesky(cov: np.ndarray) -> np.ndarray:
    """``U = inv(L)^T`` for ``cov = L L^T`` (batched), so ``inv(cov) = U U^T``."""
    lower = kernels.cholesky_factors(cov)
    if lower is None:  # not positive definite to rounding: jitter, and say so
        lower = jittered_cholesky(cov)
    return np.swapaxes(kernels.lower_triangular_inverse(lower), -1, -2)


def inverse_wishart_logpdf(
    prec_chol: np.ndarray, dof: float | np.ndarray, scale: np.ndarray
) -> np.ndarray:
    """Inverse-Wishart log density of ``cov = inv(U U^T)`` for each ``U`` in the batch;
    ``dof`` and ``scale`` may carry batch axes too (broadcast)."""
    n_features = scale.shape[-1]
    log_det_cov = -2.0 * np.log(np.abs(np.diagonal(prec_chol, axis1=-2, axis2=-1))).sum(-1)
    trace = ((scale @ prec_chol) * prec_chol).sum(axis=(-2, -1))  # tr(F^T S F)
    _, log_det_scale = np.linalg.slogdet(scale)
    return (
        0.5 * dof * log_det_scale
        - 0.5 * dof * n_features * np.log(2.0)
        - multigammaln(0.5 * dof, n_features)
        - 0.5 * (dof + n_features + 1) * log_det_cov
        - 0.5 * trace
    )


def _inverse_gamma_logpdf(var: np.ndarray, shape: float, rate) -> np.ndarray:
    return shape * np.log(rate) - gammaln(shape) - (shape + 1) * np.log(var) - rate / var


def _inverse_wishart_draw(
    scale: np.ndarray, dof: np.ndarray | float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Draws ``cov ~ InverseWishart(dof, scale)`` for a batch of ``scale`` matrices, and
    the lower-triangular factor ``F = L A`` of the precision (Bartlett: ``L =
    chol(inv(scale))``, ``A_ii = sqrt(chi2(dof - i))``, ``A_ij ~ N(0, 1)`` below the
    diagonal), so ``inv(cov) = F F^T``."""
    n_features = scale.shape[-1]
    batch = scale.shape[:-2]
    lower = np.linalg.cholesky(np.linalg.inv(0.5 * (scale + np.swapaxes(scale, -1, -2))))
    bartlett = np.zeros(scale.shape)
    idx = np.arange(n_features)
    dof = np.asarray(dof, dtype=float)[..., None]
    bartlett[..., idx, idx] = np.sqrt(rng.chisquare(np.broadcast_to(dof - idx, batch + idx.shape)))
    rows, cols = np.tril_indices(n_features, -1)
    bartlett[..., rows, cols] = rng.standard_normal(batch + rows.shape)
    factor = lower @ bartlett
    return _covariance_from_factor(factor), factor


def _inverse_gamma_draw(shape: np.ndarray, rate: np.ndarray, rng: np.random.Generator):
    """Variances ``~ InverseGamma(shape, rate)`` and their precision factors ``1/sd``."""
    shape, rate = np.broadcast_arrays(shape, rate)
    var = rate / rng.gamma(shape)
    return var, 1.0 / np.sqrt(var)


# ---------------------------------------------------------------------------------------
# PyMC parametrisations (pymc is imported lazily: EM users never pay for it)


def _bartlett_factor(
    name: str, dof, lower, n_features: int, batch: tuple[int, ...], dims, prefix: str = ""
):
    """Lower-triangular ``F = L A`` with ``F F^T ~ Wishart(dof, inv(scale))``, i.e. the
    covariance ``inv(F F^T) ~ InverseWishart(dof, scale)`` (Bartlett decomposition):
    ``L = chol(inv(scale))``, ``A_ii = sqrt(c_i)`` with ``c_i ~ ChiSquared(dof - i)`` and
    ``A_ij ~ Normal(0, 1)`` below the diagonal."""
    import pymc as pm
    import pytensor.tensor as pt

    chi2 = pm.ChiSquared(
        f"{name}_chi2", nu=dof - np.arange(n_features), shape=batch + (n_features,)
    )
    idx = np.arange(n_features)
    factor = pt.zeros(batch + (n_features, n_features))
    factor = pt.set_subtensor(factor[..., idx, idx], pt.sqrt(chi2))
    rows, cols = np.tril_indices(n_features, -1)
    if rows.size:
        normal = pm.Normal(f"{name}_normal", 0.0, 1.0, shape=batch + (rows.size,))
        factor = pt.set_subtensor(factor[..., rows, cols], normal)
    dims = _prefixed_dims(prefix, dims + ("feature", "feature_"))
    return pm.Deterministic(name, pt.matmul(lower, factor), dims=dims)


def _prefixed_dims(prefix: str, dims: tuple[str, ...]) -> tuple[str, ...]:
    """``dims`` with every dim but ``component`` prefixed."""
    return tuple(dim if dim == "component" else f"{prefix}{dim}" for dim in dims)


def _variances(name: str, dof: float, scale, shape, dims, prefix: str = ""):
    """``scale * v`` with ``v ~ InverseGamma(dof / 2, 1 / 2)``: the same as
    ``InverseGamma(dof / 2, scale / 2)`` with a dimensionless free variable."""
    import pymc as pm

    raw = pm.InverseGamma(f"{name}_raw", alpha=0.5 * dof, beta=0.5, shape=shape)
    return pm.Deterministic(name, raw * scale, dims=_prefixed_dims(prefix, dims))


def _factor_log_prob(X, means, factor):
    """Log densities ``(n, K)`` for lower-triangular precision factors ``(K, D, D)``."""
    import pytensor.tensor as pt

    whitened = pt.matmul(X, factor) - pt.matmul(means[:, None, :], factor)  # (K, n, D)
    log_det = pt.log(pt.diagonal(factor, axis1=-2, axis2=-1)).sum(-1)
    n_features = X.shape[-1]
    return (-0.5 * (whitened**2).sum(-1) + log_det[:, None]).T - 0.5 * n_features * LOG_2PI


def _observed_factor(factor, observed):
    """Upper-triangular precision factors ``(K, o, o)`` of the ``observed`` features'
    marginal covariances, from lower-triangular precision factors ``(K, D, D)``."""
    import pytensor.tensor as pt

    # precision = F F^T with lower-triangular F: Sigma = F^-T F^-1
    eye = pt.eye(factor.shape[-1])
    factor_inv = pt.linalg.solve_triangular(factor, pt.broadcast_to(eye, factor.shape), lower=True)
    cov = pt.matmul(factor_inv.mT, factor_inv)
    cov_oo = cov[:, observed][:, :, observed]
    lower = pt.linalg.cholesky(cov_oo)
    lower_inv = pt.linalg.solve_triangular(
        lower, pt.broadcast_to(pt.eye(observed.size), lower.shape), lower=True
    )
    # whitening by L^-1: the upper factor L^-T plays the precision factor's role
    return lower_inv.mT


def _bartlett_start(name: str, cov: np.ndarray, lower: np.ndarray) -> dict[str, np.ndarray]:
    """Invert the Bartlett map: ``A = inv(L) chol(inv(cov))``."""
    factor = np.linalg.solve(lower, np.linalg.cholesky(np.linalg.inv(cov)))
    rows, cols = np.tril_indices(cov.shape[-1], -1)
    start = {f"{name}_chi2": np.diagonal(factor, axis1=-2, axis2=-1) ** 2}
    if rows.size:
        start[f"{name}_normal"] = factor[..., rows, cols]
    return start


def _covariance_from_factor(factor: np.ndarray) -> np.ndarray:
    inverse = np.linalg.inv(factor)
    cov = np.swapaxes(inverse, -1, -2) @ inverse
    return 0.5 * (cov + np.swapaxes(cov, -1, -2))


# ---------------------------------------------------------------------------------------


class Full(CovarianceStructure):
    """One unrestricted covariance matrix per component (mclust's VVV)."""

    name = "full"
    mclust_name = "VVV"
    description = "one unrestricted covariance per component, mclust's VVV"
    natural_dims = ("component", "feature", "feature_")
    pymc_precision_name = "precision_factor"

    def n_parameters(self, n_components, n_features):
        return n_components * n_features * (n_features + 1) // 2

    def to_full(self, cov, n_components, n_features):
        return cov

    def from_full(self, cov_full):
        return cov_full

    def default_prior_scale(self, target_variances):
        return np.diag(target_variances)

    def default_prior_dof(self, n_features):
        return n_features + 2.0

    def second_moment(self, X, resp):
        return _outer_sums(X, resp)

    def m_step(self, mass, sum_x, sum_xx, means, dof, scale, reg_covar, start=None):
        scatter = _scatter_about(sum_xx, sum_x, mass, means)
        n_features = means.shape[1]
        if dof is None:
            cov = scatter / mass[:, None, None]
        else:
            cov = (scatter + scale) / (mass + dof + n_features + 1)[:, None, None]
        cov = 0.5 * (cov + np.swapaxes(cov, 1, 2))
        cov[:, np.arange(n_features), np.arange(n_features)] += reg_covar
        return cov

    def fused_statistics(self, X, sample_weight, shift, log_weights, means, prec_chol):
        lower = np.ascontiguousarray(np.swapaxes(prec_chol, 1, 2))
        log_det = self.log_det_precision_cholesky(prec_chol, X.shape[1])
        return kernels.estep_full(
            X, sample_weight, shift, log_weights, means, lower, log_det, n_chunks_for(len(X))
        )

    def precision_cholesky(self, cov):
        return _upper_precision_cholesky(cov)

    def precision_matrices(self, prec_chol, n_components, n_features):
        return prec_chol @ np.swapaxes(prec_chol, -1, -2)

    def log_det_precision_cholesky(self, prec_chol, n_features):
        return np.log(np.diagonal(prec_chol, axis1=-2, axis2=-1)).sum(-1)

    def mahalanobis(self, X, means, prec_chol):
        # Whiten for every component with one GEMM: X @ [U_1 | ... | U_K], the columns
        # ordered (whitened coordinate, component) so the sum over coordinates adds
        # contiguous slabs of K.
        n_components, n_features, _ = prec_chol.shape
        stacked = prec_chol.transpose(1, 2, 0).reshape(n_features, n_features * n_components)
        centres = np.einsum("kd,kde->ek", means, prec_chol).reshape(-1)
        whitened = X @ stacked
        whitened -= centres
        np.square(whitened, out=whitened)
        return whitened.reshape(len(X), n_features, n_components).sum(axis=1)

    def log_prior(self, cov, dof, scale):
        return float(inverse_wishart_logpdf(self.precision_cholesky(cov), dof, scale).sum())

    def log_prior_draws(self, cov, prec_chol, dof, scale):
        return inverse_wishart_logpdf(prec_chol, dof, scale).sum(axis=-1)

    def conditional_parameters(self, mass, sum_x, sum_xx, means, dof, scale):
        return dof + mass, _scatter_about(sum_xx, sum_x, mass, means) + scale

    def conditional_draw(self, parameters, rng):
        dof, scale = parameters
        return _inverse_wishart_draw(scale, dof, rng)

    def conditional_log_density(self, cov, prec_chol, parameters):
        dof, scale = parameters
        return inverse_wishart_logpdf(prec_chol, dof, scale)

    def pymc_scale(self, scale):
        return np.linalg.cholesky(np.linalg.inv(scale))

    def pymc_precision(self, dof, scale, n_components, n_features, prefix=""):
        return _bartlett_factor(
            f"{prefix}precision_factor",
            dof,
            scale,
            n_features,
            (n_components,),
            ("component",),
            prefix,
        )

    def pymc_start(self, cov, scale, prefix=""):
        return _bartlett_start(f"{prefix}precision_factor", cov, scale)

    def pymc_log_prob(self, X, means, precision):
        return _factor_log_prob(X, means, precision)

    def pymc_observed_log_prob(self, X, means, precision, observed):
        return _factor_log_prob(X, means[:, observed], _observed_factor(precision, observed))

    def covariance_from_precision(self, precision, n_features):
        return _covariance_from_factor(precision)


class Tied(CovarianceStructure):
    """One covariance matrix shared by all components (mclust's EEE)."""

    name = "tied"
    mclust_name = "EEE"
    description = "one covariance shared by all components, mclust's EEE"
    natural_dims = ("feature", "feature_")
    pymc_precision_name = "precision_factor"
    shared_across_components = True
    unshared_name = "full"

    def pool_second_moments(self, moments):
        return moments.sum(axis=0)

    def n_parameters(self, n_components, n_features):
        return n_features * (n_features + 1) // 2

    def to_full(self, cov, n_components, n_features):
        return np.broadcast_to(
            cov[..., None, :, :], cov.shape[:-2] + (n_components,) + cov.shape[-2:]
        )

    def from_full(self, cov_full):
        return np.asarray(cov_full).mean(axis=-3)

    def default_prior_scale(self, target_variances):
        return np.diag(target_variances)

    def default_prior_dof(self, n_features):
        return n_features + 2.0

    def second_moment(self, X, resp):
        return _outer_sums(X, resp.sum(axis=1, keepdims=True))[0]

    def m_step(self, mass, sum_x, sum_xx, means, dof, scale, reg_covar, start=None):
        cross = sum_x.T @ means  # sum_k S_k mu_k^T
        scatter = sum_xx - cross - cross.T + (means.T * mass) @ means
        n_features = means.shape[1]
        total = mass.sum()
        if dof is None:
            cov = scatter / total
        else:
            cov = (scatter + scale) / (total + dof + n_features + 1)
        cov = 0.5 * (cov + cov.T)
        cov[np.arange(n_features), np.arange(n_features)] += reg_covar
        return cov

    def fused_statistics(self, X, sample_weight, shift, log_weights, means, prec_chol):
        log_det = np.full(means.shape[0], self.log_det_precision_cholesky(prec_chol, X.shape[1]))
        return kernels.estep_tied(
            X,
            sample_weight,
            shift,
            log_weights,
            means @ prec_chol,
            np.ascontiguousarray(prec_chol.T),
            log_det,
            n_chunks_for(len(X)),
        )

    def precision_cholesky(self, cov):
        return _upper_precision_cholesky(cov)

    def precision_matrices(self, prec_chol, n_components, n_features):
        return self.to_full(prec_chol @ prec_chol.T, n_components, n_features)

    def log_det_precision_cholesky(self, prec_chol, n_features):
        return np.log(np.diag(prec_chol)).sum()

    def mahalanobis(self, X, means, prec_chol):
        whitened = X @ prec_chol
        centres = means @ prec_chol
        dist = (
            np.einsum("nd,nd->n", whitened, whitened)[:, None]
            - 2.0 * whitened @ centres.T
            + np.einsum("kd,kd->k", centres, centres)
        )
        return np.maximum(dist, 0.0)

    def log_prior(self, cov, dof, scale):
        return float(inverse_wishart_logpdf(self.precision_cholesky(cov), dof, scale))

    def log_prior_draws(self, cov, prec_chol, dof, scale):
        return inverse_wishart_logpdf(prec_chol, dof, scale)

    def conditional_parameters(self, mass, sum_x, sum_xx, means, dof, scale):
        cross = sum_x.T @ means
        scatter = sum_xx - cross - cross.T + (means.T * mass) @ means
        return dof + mass.sum(), scatter + scale

    conditional_draw = Full.conditional_draw
    conditional_log_density = Full.conditional_log_density

    def pymc_scale(self, scale):
        return np.linalg.cholesky(np.linalg.inv(scale))

    def pymc_precision(self, dof, scale, n_components, n_features, prefix=""):
        return _bartlett_factor(f"{prefix}precision_factor", dof, scale, n_features, (), (), prefix)

    def pymc_start(self, cov, scale, prefix=""):
        return _bartlett_start(f"{prefix}precision_factor", cov, scale)

    def pymc_log_prob(self, X, means, precision):
        return _factor_log_prob(X, means, precision[None].repeat(means.shape[0], axis=0))

    def pymc_observed_log_prob(self, X, means, precision, observed):
        upper = _observed_factor(precision[None], observed)
        return _factor_log_prob(X, means[:, observed], upper.repeat(means.shape[0], axis=0))

    def covariance_from_precision(self, precision, n_features):
        return _covariance_from_factor(precision)[..., None, :, :]


class Diag(CovarianceStructure):
    """Axis-aligned covariances, one variance per component and feature (mclust's VVI)."""

    name = "diag"
    mclust_name = "VVI"
    description = "one diagonal covariance per component, mclust's VVI"
    natural_dims = ("component", "feature")
    pymc_precision_name = "variances"
    axis_aligned = True

    def min_observations(self, n_features):
        return 2

    def positive_definite(self, cov):
        return bool(np.all(np.asarray(cov) > 0.0))

    def natural_precisions(self, prec_chol):
        return prec_chol**2

    def n_parameters(self, n_components, n_features):
        return n_components * n_features

    def to_full(self, cov, n_components, n_features):
        n_features = cov.shape[-1]
        out = np.zeros(cov.shape + (n_features,))
        idx = np.arange(n_features)
        out[..., idx, idx] = cov
        return out

    def from_full(self, cov_full):
        return np.diagonal(cov_full, axis1=-2, axis2=-1).copy()

    def default_prior_scale(self, target_variances):
        return np.asarray(target_variances, dtype=float)

    def default_prior_dof(self, n_features):
        return 3.0

    def second_moment(self, X, resp):
        return resp.T @ (X * X)

    def _scatter(self, mass, sum_x, sum_xx, means):
        return sum_xx - 2.0 * sum_x * means + mass[..., None] * means**2

    def m_step(self, mass, sum_x, sum_xx, means, dof, scale, reg_covar, start=None):
        scatter = np.maximum(self._scatter(mass, sum_x, sum_xx, means), 0.0)
        if dof is None:
            var = scatter / mass[:, None]
        else:
            var = (scatter + scale) / (mass + dof + 2.0)[:, None]
        return var + reg_covar

    def fused_statistics(self, X, sample_weight, shift, log_weights, means, prec_chol):
        log_det = self.log_det_precision_cholesky(prec_chol, X.shape[1])
        return self._kernel(
            X, sample_weight, shift, log_weights, means, prec_chol**2, log_det, n_chunks_for(len(X))
        )

    _kernel = staticmethod(kernels.estep_diag)

    def precision_cholesky(self, cov):
        cov = np.asarray(cov, dtype=float)
        singular = ~(cov > 0)
        if singular.any():
            # As jittered_cholesky does for matrices: a tiny variance relative to the component.
            jitter = np.maximum(np.abs(cov).mean(axis=-1, keepdims=True), 1.0) * 1e-12
            cov = np.where(singular, np.broadcast_to(jitter, cov.shape), cov)
            warnings.warn(
                f"{int(singular.sum())} variance(s) were not positive and were regularised "
                "with jitter; consider a larger reg_covar.",
                DegenerateComponentWarning,
                stacklevel=3,
            )
        return 1.0 / np.sqrt(cov)

    def precision_matrices(self, prec_chol, n_components, n_features):
        return self.to_full(prec_chol**2, n_components, n_features)

    def log_det_precision_cholesky(self, prec_chol, n_features):
        return np.log(prec_chol).sum(-1)

    def mahalanobis(self, X, means, prec_chol):
        # feature-major (D, K) operands: numpy's matmul is slow on transposed views
        precision = np.ascontiguousarray(np.square(prec_chol.T))
        means = np.ascontiguousarray(means.T)
        dist = (X * X) @ precision
        dist -= X @ (2.0 * means * precision)
        dist += np.einsum("dk,dk->k", np.square(means), precision)
        return np.maximum(dist, 0.0, out=dist)

    def log_prior(self, cov, dof, scale):
        return float(_inverse_gamma_logpdf(cov, 0.5 * dof, 0.5 * np.asarray(scale)).sum())

    def log_prior_draws(self, cov, prec_chol, dof, scale):
        log_density = _inverse_gamma_logpdf(cov, 0.5 * dof, 0.5 * np.asarray(scale))
        return log_density.reshape(len(cov), -1).sum(axis=1)

    def conditional_parameters(self, mass, sum_x, sum_xx, means, dof, scale):
        scatter = np.maximum(self._scatter(mass, sum_x, sum_xx, means), 0.0)
        shape = 0.5 * (dof + mass * self._values_per_variance(means.shape[-1]))
        if scatter.ndim > shape.ndim:
            shape = shape[..., None]
        return np.broadcast_to(shape, scatter.shape), 0.5 * (scatter + scale)

    def conditional_draw(self, parameters, rng):
        return _inverse_gamma_draw(*parameters, rng)

    def conditional_log_density(self, cov, prec_chol, parameters):
        return self._per_component(_inverse_gamma_logpdf(cov, *parameters))

    @staticmethod
    def _per_component(values: np.ndarray) -> np.ndarray:
        """One variance per feature: a component's log density sums them."""
        return values.sum(axis=-1)

    @staticmethod
    def _values_per_variance(n_features: int) -> int:
        """Squared deviations that inform one variance per observation."""
        return 1

    def pymc_scale(self, scale):
        return np.asarray(scale, dtype=float)

    def pymc_precision(self, dof, scale, n_components, n_features, prefix=""):
        return _variances(
            f"{prefix}variances",
            dof,
            np.asarray(scale),
            (n_components, n_features),
            ("component", "feature"),
            prefix,
        )

    def pymc_start(self, cov, scale, prefix=""):
        return {f"{prefix}variances_raw": np.asarray(cov) / scale}

    def pymc_log_prob(self, X, means, precision):
        import pytensor.tensor as pt

        var = pt.broadcast_to(self.pymc_variances(precision), means.shape)
        sq = ((X[None, :, :] - means[:, None, :]) ** 2 / var[:, None, :]).sum(-1)
        return (-0.5 * (sq + pt.log(var).sum(-1)[:, None])).T - 0.5 * X.shape[-1] * LOG_2PI

    def pymc_observed_log_prob(self, X, means, precision, observed):
        return self.pymc_log_prob(
            X, means[:, observed], self._observed_variances(precision, observed)
        )

    @staticmethod
    def pymc_variances(variances):
        """The variances of :meth:`pymc_precision` (a pytensor tensor) in a shape that
        broadcasts to ``(K, D)``."""
        return variances

    @staticmethod
    def _observed_variances(variances, observed):
        """The variances of the ``observed`` features (spherical: all the same)."""
        return variances[:, observed]

    def covariance_from_precision(self, precision, n_features):
        return self.to_full(precision, None, n_features)


class Spherical(Diag):
    """One variance per component shared by all features (mclust's VII)."""

    name = "spherical"
    mclust_name = "VII"
    description = "one variance per component, mclust's VII"
    natural_dims = ("component",)

    def representable_variances(self, values, n_features):
        values = super().representable_variances(values, n_features)
        return np.full(n_features, values.mean())

    def pool_second_moments(self, moments):
        return moments.sum(axis=1)

    @staticmethod
    def pymc_variances(variances):
        import pytensor.tensor as pt

        return pt.shape_padright(variances)  # (K, 1)

    @staticmethod
    def _observed_variances(variances, observed):
        return variances

    def n_parameters(self, n_components, n_features):
        return n_components

    def to_full(self, cov, n_components, n_features):
        variances = np.repeat(np.asarray(cov)[..., None], n_features, axis=-1)
        return super().to_full(variances, n_components, n_features)

    def from_full(self, cov_full):
        return np.diagonal(cov_full, axis1=-2, axis2=-1).mean(-1)

    def default_prior_scale(self, target_variances):
        return float(np.mean(target_variances))

    # sum_xx is sum_n r_nk |x_n|^2, shape (K,): the variance needs no more
    _kernel = staticmethod(kernels.estep_spherical)

    def second_moment(self, X, resp):
        return resp.T @ np.einsum("nd,nd->n", X, X)

    def _scatter(self, mass, sum_x, sum_xx, means):
        return sum_xx - 2.0 * np.einsum("...d,...d->...", sum_x, means) + mass * (means**2).sum(-1)

    def m_step(self, mass, sum_x, sum_xx, means, dof, scale, reg_covar, start=None):
        scatter = np.maximum(self._scatter(mass, sum_x, sum_xx, means), 0.0)
        n_features = means.shape[1]
        if dof is None:
            var = scatter / (mass * n_features)
        else:
            var = (scatter + scale) / (mass * n_features + dof + 2.0)
        return var + np.mean(reg_covar)  # per-feature regularisation: its mean

    def precision_matrices(self, prec_chol, n_components, n_features):
        return self.to_full(prec_chol**2, n_components, n_features)

    def log_det_precision_cholesky(self, prec_chol, n_features):
        return n_features * np.log(prec_chol)

    def mahalanobis(self, X, means, prec_chol):
        precision = prec_chol**2
        dist = (
            np.einsum("nd,nd->n", X, X)[:, None]
            - 2.0 * X @ means.T
            + np.einsum("kd,kd->k", means, means)
        ) * precision
        return np.maximum(dist, 0.0)

    def pymc_precision(self, dof, scale, n_components, n_features, prefix=""):
        return _variances(f"{prefix}variances", dof, scale, (n_components,), ("component",))

    @staticmethod
    def _values_per_variance(n_features: int) -> int:
        return n_features

    @staticmethod
    def _per_component(values: np.ndarray) -> np.ndarray:
        return values


# ---------------------------------------------------------------------------------------
# mclust's other ten models: Sigma_k = lambda_k D_k A_k D_k^T with det(A_k) = 1
#
# Every M-step below maximises sum_k [-n_k/2 log|Sigma_k| - 1/2 tr(W_k Sigma_k^-1)] over
# the model's constraint set (Celeux & Govaert 1995; for the common orientation of EVE and
# VVE, Jacobi plane rotations as in Flury & Gautschi 1986), with W_k the component scatter
# about the new means and n_k its mass. Under the conjugate prior (MAP) the same objective
# is maximised with W_k + scale and n_k + dof + D + 1 for the matrix models (the inverse-
# Wishart of ``full`` on each component), n_k + dof + 2 for the variances of the axis-
# aligned ones (the inverse-gamma of ``diag``), and once for a covariance shared by all
# components: the log prior is that density evaluated at the constrained covariances, so
# MAP-EM is monotone.

#: Inner iterations of the iterative M-steps (VEI, VEE, VEV, EVE, VVE) stop when the
#: relative change of the objective ``|F_old - F_new| / (1 + |F_new|)`` is at most
#: ``INNER_TOL`` (mclust's ``emControl(tol = c(1e-5, sqrt(.Machine$double.eps)))``) or
#: after ``INNER_MAX_ITER`` iterations, with a :class:`~bayesmix.exceptions.ConvergenceWarning`.
#: Module constants, read at every M-step: assign to change them. Each M-step starts
#: from the previous EM iteration's covariances, so a few iterations usually suffice.
INNER_TOL = float(np.sqrt(np.finfo(float).eps))
INNER_MAX_ITER = 1000


def record_inner_iterations(iterations: int, converged: bool, model: str, change: float) -> None:
    """Record an iterative M-step's inner iterations; warn if it stopped at the cap
    (``change``: the relative change of its objective at the last inner iteration)."""
    _INNER_COUNTS.append(iterations)
    if converged:
        return
    global _capped_m_steps
    _capped_m_steps += 1
    warnings.warn(
        f"the {model} M-step did not converge in INNER_MAX_ITER={INNER_MAX_ITER} inner "
        f"iterations (relative change {change:.2g}), INNER_TOL={INNER_TOL:.2g}; the "
        "covariances still improve the objective. Raise "
        "bayesmix.families.gaussian.covariance.INNER_MAX_ITER if this recurs.",
        ConvergenceWarning,
        stacklevel=5,
    )


#: Inner iteration counts of the latest iterative M-steps (diagnostics; bounded).
_INNER_COUNTS: deque[int] = deque(maxlen=10_000)
_capped_m_steps = 0


def capped_m_steps() -> int:
    """How many M-steps of this process stopped their inner iterations at
    ``INNER_MAX_ITER`` (EM compares the count before and after an M-step)."""
    return _capped_m_steps


class _Unsupported:
    """Mixin of the models without full-Bayes support: their conjugate and PyMC
    methods refuse (``GaussianMixture.fit`` refuses the Bayes methods first)."""

    supports_bayes = False

    def _refuse(self, *args, **kwargs):
        raise ValueError(
            f"covariance_type {self.name!r} supports EM and MAP-EM only; full Bayes "
            f"(gibbs, nuts, advi, fullrank_advi) is available for {bayes_structures()}."
        )

    conditional_parameters = _refuse
    conditional_draw = _refuse
    conditional_log_density = _refuse
    pymc_precision = _refuse
    pymc_start = _refuse
    pymc_log_prob = _refuse
    pymc_observed_log_prob = _refuse


class _Constrained(_Unsupported):
    """The ten constrained models: each M-step is one compiled call
    (:func:`bayesmix.families.gaussian.constrained_kernels.m_step`, keyed by the model's
    mclust name; the steps of each model are described in its class docstring)."""

    couples_components = True

    def m_step(self, mass, sum_x, sum_xx, means, dof, scale, reg_covar, start=None):
        cov, iterations, converged, change = constrained_kernels.m_step(
            self.name,
            mass,
            sum_x,
            sum_xx,
            means,
            dof,
            scale,
            reg_covar,
            start,
            INNER_TOL,
            INNER_MAX_ITER,
        )
        if iterations:  # an iterative model (VEI, VEE, VEV, EVE, VVE)
            record_inner_iterations(iterations, converged, self.name, change)
        return cov

    def _constrained(self, scatter: np.ndarray, count: np.ndarray, start) -> np.ndarray:
        """The constrained covariances minimising ``sum_k count_k log|S_k| +
        tr(scatter_k S_k^-1)`` (axis-aligned models: ``sum_kd count_k log v_kd +
        scatter_kd / v_kd``): the M-step with scatters ``scatter`` (about zero means),
        masses ``count``, no prior and no ``reg_covar``."""
        zeros = np.zeros(np.shape(count) + np.shape(scatter)[-1:])
        return self.m_step(count, zeros, scatter, zeros, None, None, 0.0, start)


class _ConstrainedDiag(_Constrained, Diag):
    """Axis-aligned models stored as ``(K, D)`` variances (VEI, EVI). The scatters are
    the diagonals ``sum_n r (x - mu)^2`` (floored at zero); under MAP each variance has
    ``diag``'s inverse-gamma prior (scatter + ``scale``, count ``n_k + dof + 2``)."""

    def from_full(self, cov_full):
        """The constrained covariances nearest (in Kullback-Leibler divergence, equal
        weights) to the diagonals of ``cov_full``."""
        variances = np.diagonal(np.asarray(cov_full, dtype=float), axis1=-2, axis2=-1)
        out = np.empty_like(variances)
        for index in np.ndindex(variances.shape[:-2]):
            out[index] = self._constrained(variances[index], np.ones(variances.shape[-2]), None)
        return out


class VEI(_ConstrainedDiag):
    """Axis-aligned covariances of one shape, varying volume: ``lambda_k A``.

    M-step: the components whose scatter is more than rounding (per observation, a trace
    above ``1e-14`` of the pooled one's) set the shape; the diagonals ``w_k`` floored at
    ``eps`` times their largest; from the geometric mean of the normalised shapes of the
    start (the previous covariances, else the scatters), alternately the volumes
    ``lambda_k = sum_d w_kd / A_d / (D n_k)`` and the shape ``A`` the normalised pooled
    ``sum_k w_k / lambda_k`` until ``sum_k [n_k D log lambda_k + sum_d w_kd / (lambda_k
    A_d)]`` settles (:data:`INNER_TOL`, :data:`INNER_MAX_ITER`).
    """

    name = "VEI"
    mclust_name = "VEI"
    description = "diagonal, equal shape, varying volume"

    def n_parameters(self, n_components, n_features):
        return n_components + n_features - 1


class EVI(_ConstrainedDiag):
    """Axis-aligned covariances of one volume, varying shape: ``lambda A_k``.

    M-step (closed form): with the diagonals ``w_k`` floored at ``eps`` times their
    largest, ``A_k = w_k / |diag w_k|^(1/D)`` and ``lambda = sum_k |diag w_k|^(1/D) /
    sum_k n_k``.
    """

    name = "EVI"
    mclust_name = "EVI"
    description = "diagonal, equal volume, varying shape"

    def n_parameters(self, n_components, n_features):
        return 1 + n_components * (n_features - 1)

    def min_observations(self, n_features):
        return 2


class _ConstrainedMatrix(_Constrained, Full):
    """Matrix models stored as ``(K, D, D)`` (VEE, EVE, VVE, EEV, VEV, EVV). The
    scatters ``W_k = sum_n r (x - mu)(x - mu)^T`` are symmetrised; under MAP each has
    ``full``'s inverse-Wishart prior (scatter + ``scale``, count ``n_k + dof + D + 1``).
    Eigenvalues are floored at ``eps`` times the largest of their matrix."""

    def from_full(self, cov_full):
        """The constrained covariances nearest (in Kullback-Leibler divergence, equal
        weights) to ``cov_full``: the M-step with scatter ``cov_full`` and unit masses."""
        cov_full = np.asarray(cov_full, dtype=float)
        out = np.empty_like(cov_full)
        for index in np.ndindex(cov_full.shape[:-3]):
            out[index] = self._constrained(cov_full[index], np.ones(cov_full.shape[-3]), None)
        return out


class VEE(_ConstrainedMatrix):
    """One shape and orientation, varying volume: ``lambda_k C`` with ``det C = 1``.

    M-step: the informative components (as VEI's) set ``C``; from the normalised sum of
    the scatters (or the mean of the start's normalised covariances ``S / |S|^(1/D)``),
    alternately the volumes ``lambda_k = tr(W_k C^-1) / (D n_k)`` and ``C`` the
    normalised ``sum_k W_k / lambda_k``, until ``sum_k n_k D (log lambda_k + 1)`` settles.
    """

    name = "VEE"
    mclust_name = "VEE"
    description = "equal shape and orientation, varying volume"

    def n_parameters(self, n_components, n_features):
        return n_components + n_features * (n_features + 1) // 2 - 1

    def min_observations(self, n_features):
        return 2


class VEV(_ConstrainedMatrix):
    """One shape, varying volume and orientation: ``lambda_k D_k A D_k^T``.

    M-step: ``D_k`` the eigenvectors of ``W_k`` (eigenvalues descending), then VEI's
    iteration on the eigenvalues, stopped when ``sum_k n_k D (log lambda_k + 1)`` settles
    (the shape starts from the start's eigenvalues when there is a start).
    """

    name = "VEV"
    mclust_name = "VEV"
    description = "equal shape, varying volume and orientation"

    def n_parameters(self, n_components, n_features):
        d = n_features
        return n_components + (d - 1) + n_components * d * (d - 1) // 2

    def min_observations(self, n_features):
        return 2


class EEV(_ConstrainedMatrix):
    """One volume and shape, varying orientation: ``lambda D_k A D_k^T``.

    M-step (closed form): ``D_k`` the eigenvectors of ``W_k``, ``lambda A`` the summed
    eigenvalues (descending, negative ones zeroed) over ``sum_k n_k``.
    """

    name = "EEV"
    mclust_name = "EEV"
    description = "equal volume and shape, varying orientation"

    def n_parameters(self, n_components, n_features):
        d = n_features
        return 1 + (d - 1) + n_components * d * (d - 1) // 2

    def min_observations(self, n_features):
        return 1


class EVV(_ConstrainedMatrix):
    """One volume, varying shape and orientation: ``lambda C_k`` with ``det C_k = 1``.

    M-step (closed form): ``C_k = W_k / |W_k|^(1/D)``, ``lambda = sum_k |W_k|^(1/D) /
    sum_k n_k``.
    """

    name = "EVV"
    mclust_name = "EVV"
    description = "equal volume, varying shape and orientation"

    def n_parameters(self, n_components, n_features):
        d = n_features
        return 1 + n_components * (d * (d + 1) // 2 - 1)


class _CommonOrientation(_ConstrainedMatrix):
    """EVE and VVE: ``Sigma_k = D diag(v_k) D^T`` with one orientation ``D``, found by
    sweeps of plane rotations alternated with the closed-form variances given ``D``
    (:func:`~bayesmix.families.gaussian.constrained_kernels.common_orientation`), from
    the eigenvectors of the summed scatters, or of the start's normalised covariances
    weighted ``1, ..., K`` (a tie of the sum is no tie of each)."""

    def min_observations(self, n_features):
        return n_features + 1


class EVE(_CommonOrientation):
    """One volume and orientation, varying shape: ``lambda D A_k D^T``."""

    name = "EVE"
    mclust_name = "EVE"
    description = "equal volume and orientation, varying shape"

    def n_parameters(self, n_components, n_features):
        d = n_features
        return 1 + n_components * (d - 1) + d * (d - 1) // 2


class VVE(_CommonOrientation):
    """One orientation, varying volume and shape: ``lambda_k D A_k D^T``."""

    name = "VVE"
    mclust_name = "VVE"
    description = "equal orientation, varying volume and shape"

    def n_parameters(self, n_components, n_features):
        d = n_features
        return n_components * d + d * (d - 1) // 2


class EII(Spherical):
    """One variance shared by all features and components: ``lambda I`` (the tied form
    of ``spherical``).

    Conjugate prior: one inverse-gamma(``dof / 2``, ``scale / 2``) on the shared variance
    (``scale`` a scalar). Given the means and the allocations its conditional posterior
    pools every component's scatter: inverse-gamma(``(dof + n D) / 2``, ``(scale +
    sum_k sum_(n in k) |x_n - mu_k|^2) / 2``). PyMC: one dimensionless
    ``InverseGamma(dof / 2, 1 / 2)`` variable times ``scale`` (the Deterministic
    ``variances``, no dims), broadcast to every component and feature; nutpie samples
    the hand-written density of :mod:`bayesmix.families.gaussian.logdensity`.
    """

    name = "EII"
    mclust_name = "EII"
    description = "one variance shared by all components and features"
    natural_dims = ()
    shared_across_components = True
    unshared_name = "spherical"

    def pool_second_moments(self, moments):
        return np.sum(moments)

    def n_parameters(self, n_components, n_features):
        return 1

    def to_full(self, cov, n_components, n_features):
        cov = np.asarray(cov, dtype=float)
        matrix = cov[..., None, None, None] * np.eye(n_features)
        return np.broadcast_to(matrix, cov.shape + (n_components, n_features, n_features))

    def from_full(self, cov_full):
        return np.diagonal(np.asarray(cov_full), axis1=-2, axis2=-1).mean(axis=(-2, -1))

    def second_moment(self, X, resp):
        return np.asarray(resp.sum(axis=1) @ np.einsum("nd,nd->n", X, X))

    def _scatter(self, mass, sum_x, sum_xx, means):
        return (
            sum_xx
            - 2.0 * np.einsum("...kd,...kd->...", sum_x, means)
            + np.einsum("...k,...k->...", mass, (means**2).sum(-1))
        )

    def m_step(self, mass, sum_x, sum_xx, means, dof, scale, reg_covar, start=None):
        scatter = np.maximum(self._scatter(mass, sum_x, sum_xx, means), 0.0)
        count = mass.sum() * means.shape[1]
        if dof is None:
            var = scatter / count
        else:  # one inverse-gamma prior for the one variance
            var = (scatter + scale) / (count + dof + 2.0)
        return np.asarray(var + np.mean(reg_covar), dtype=float)

    def fused_statistics(self, X, sample_weight, shift, log_weights, means, prec_chol):
        n_components = means.shape[0]
        precision = np.full(n_components, float(prec_chol) ** 2)
        log_det = np.full(n_components, X.shape[1] * np.log(float(prec_chol)))
        mass, sum_x, sum_xx, log_lik, log_max = kernels.estep_spherical(
            X, sample_weight, shift, log_weights, means, precision, log_det, n_chunks_for(len(X))
        )
        return mass, sum_x, np.asarray(sum_xx.sum()), log_lik, log_max

    def precision_cholesky(self, cov):
        return Diag.precision_cholesky(self, np.asarray(cov, dtype=float)[..., None])[..., 0]

    def precision_matrices(self, prec_chol, n_components, n_features):
        return self.to_full(np.asarray(prec_chol) ** 2, n_components, n_features)

    def conditional_parameters(self, mass, sum_x, sum_xx, means, dof, scale):
        scatter = np.maximum(self._scatter(mass, sum_x, sum_xx, means), 0.0)
        shape = 0.5 * (dof + mass.sum(axis=-1) * means.shape[-1])
        return np.broadcast_to(shape, scatter.shape), 0.5 * (scatter + scale)

    def pymc_precision(self, dof, scale, n_components, n_features, prefix=""):
        return _variances(f"{prefix}variances", dof, scale, (), (), prefix)

    @staticmethod
    def pymc_variances(variances):
        return variances  # a scalar broadcasts to (K, D)

    def covariance_from_precision(self, precision, n_features):
        variance = np.asarray(precision, dtype=float)
        return variance[..., None, None, None] * np.eye(n_features)


class EEI(Diag):
    """One axis-aligned covariance shared by all components: ``lambda A`` (the tied
    form of ``diag``).

    Conjugate prior: one inverse-gamma(``dof / 2``, ``scale_d / 2``) per feature's shared
    variance (``scale`` of shape ``(D,)``). Given the means and the allocations, feature
    ``d``'s variance is inverse-gamma(``(dof + n) / 2``, ``(scale_d + sum_k sum_(n in k)
    (x_nd - mu_kd)^2) / 2``), pooling every component. PyMC: ``(D,)`` dimensionless
    ``InverseGamma(dof / 2, 1 / 2)`` variables times ``scale`` (the Deterministic
    ``variances``, dims ``feature``), broadcast to every component; nutpie samples the
    hand-written density of :mod:`bayesmix.families.gaussian.logdensity`.
    """

    name = "EEI"
    mclust_name = "EEI"
    description = "one diagonal covariance shared by all components"
    natural_dims = ("feature",)
    shared_across_components = True
    unshared_name = "diag"

    def pool_second_moments(self, moments):
        return moments.sum(axis=0)

    def n_parameters(self, n_components, n_features):
        return n_features

    def to_full(self, cov, n_components, n_features):
        matrix = Diag.to_full(self, cov, n_components, n_features)
        return np.broadcast_to(
            matrix[..., None, :, :], matrix.shape[:-2] + (n_components,) + matrix.shape[-2:]
        )

    def from_full(self, cov_full):
        return np.diagonal(np.asarray(cov_full), axis1=-2, axis2=-1).mean(axis=-2)

    def second_moment(self, X, resp):
        return resp.sum(axis=1) @ (X * X)

    def _scatter(self, mass, sum_x, sum_xx, means):
        return sum_xx - 2.0 * (sum_x * means).sum(-2) + (mass[..., None] * means**2).sum(-2)

    def m_step(self, mass, sum_x, sum_xx, means, dof, scale, reg_covar, start=None):
        scatter = np.maximum(self._scatter(mass, sum_x, sum_xx, means), 0.0)
        if dof is None:
            var = scatter / mass.sum()
        else:  # one inverse-gamma prior per feature
            var = (scatter + scale) / (mass.sum() + dof + 2.0)
        return var + reg_covar

    def fused_statistics(self, X, sample_weight, shift, log_weights, means, prec_chol):
        n_components = means.shape[0]
        precision = np.ascontiguousarray(np.broadcast_to(prec_chol**2, means.shape))
        log_det = np.full(n_components, np.log(prec_chol).sum())
        mass, sum_x, sum_xx, log_lik, log_max = kernels.estep_diag(
            X, sample_weight, shift, log_weights, means, precision, log_det, n_chunks_for(len(X))
        )
        return mass, sum_x, sum_xx.sum(axis=0), log_lik, log_max

    def precision_matrices(self, prec_chol, n_components, n_features):
        return self.to_full(prec_chol**2, n_components, n_features)

    def mahalanobis(self, X, means, prec_chol):
        return Diag.mahalanobis(self, X, means, np.broadcast_to(prec_chol, means.shape))

    def conditional_parameters(self, mass, sum_x, sum_xx, means, dof, scale):
        scatter = np.maximum(self._scatter(mass, sum_x, sum_xx, means), 0.0)
        shape = np.asarray(0.5 * (dof + mass.sum(axis=-1)))[..., None]
        return np.broadcast_to(shape, scatter.shape), 0.5 * (scatter + scale)

    def pymc_precision(self, dof, scale, n_components, n_features, prefix=""):
        return _variances(f"{prefix}variances", dof, scale, (n_features,), ("feature",), prefix)

    @staticmethod
    def _observed_variances(variances, observed):
        return variances[observed]

    def covariance_from_precision(self, precision, n_features):
        return Diag.to_full(self, precision, None, n_features)[..., None, :, :]


#: mclust's 14 covariance models in mclust's order (``Sigma_k = lambda_k D_k A_k D_k^T``:
#: volume, shape, orientation; E equal across components, V varying, I identity).
MCLUST_MODELS = (
    "EII", "VII", "EEI", "VEI", "EVI", "VVI", "EEE",
    "VEE", "EVE", "VVE", "EEV", "VEV", "EVV", "VVV",
)  # fmt: skip
#: The four scikit-learn names: the default list of :func:`bayesmix.select_components`.
BASIC_STRUCTURES = ("full", "tied", "diag", "spherical")

#: Every implemented structure under its canonical name: the scikit-learn name for the
#: four basic ones, the mclust name for the others.
STRUCTURES: dict[str, CovarianceStructure] = {
    s.name: s
    for s in (Full(), Tied(), Diag(), Spherical())
    + (EII(), EEI(), VEI(), EVI(), VEE(), EVE(), VVE(), EEV(), VEV(), EVV())
}
#: mclust names of the basic structures, aliases of their canonical names.
ALIASES = {"VVV": "full", "EEE": "tied", "VVI": "diag", "VII": "spherical"}


def accepted_names() -> list[str]:
    """Every name :func:`get_structure` accepts: canonical names, then mclust aliases."""
    return list(STRUCTURES) + [name for name in MCLUST_MODELS if name not in STRUCTURES]


def bayes_structures() -> list[str]:
    """Canonical names of the structures with full-Bayes support (Gibbs, NUTS, ADVI)."""
    return [name for name, structure in STRUCTURES.items() if structure.supports_bayes]


def canonical_name(covariance_type: str) -> str:
    """The canonical name of ``covariance_type`` (``"VVV"`` -> ``"full"``); raises as
    :func:`get_structure` does for an unknown name."""
    return get_structure(covariance_type).name


def get_structure(covariance_type: str) -> CovarianceStructure:
    """Return the structure named ``covariance_type``; raise a clear error otherwise.

    Parameters
    ----------
    covariance_type : str
        A canonical name (``"full"``, ``"tied"``, ``"diag"``, ``"spherical"`` or one of
        the other mclust models, e.g. ``"VEV"``) or an mclust alias of a basic structure
        (``"VVV"``, ``"EEE"``, ``"VVI"``, ``"VII"``); mclust's names in any case
        (``"vev"``).

    Returns
    -------
    CovarianceStructure
        The structure's singleton: an alias returns the same object as its canonical name.
    """
    if not isinstance(covariance_type, str):
        raise TypeError(
            f"covariance_type must be a string, one of {accepted_names()}; "
            f"got {type(covariance_type).__name__}."
        )
    if covariance_type.upper() in MCLUST_MODELS:
        covariance_type = covariance_type.upper()
    name = ALIASES.get(covariance_type, covariance_type)
    try:
        return STRUCTURES[name]
    except KeyError:
        pass
    raise ValueError(f"covariance_type must be one of {accepted_names()}; got {covariance_type!r}.")
