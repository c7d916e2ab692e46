"""Closed-form mean-field variational Bayes (CAVI) for Gaussian mixtures.

Coordinate ascent on ``q(z) q(pi) prod_k q(mu_k, Lambda_k)`` (Bishop 2006, section 10.2;
Blei & Jordan 2006 for the stick-breaking weights) under scikit-learn's conjugate prior
family, so that from the same start the fit reproduces
:class:`sklearn.mixture.BayesianGaussianMixture`:

* weights: a symmetric Dirichlet(``weight_concentration``) on K weights
  (``"dirichlet_distribution"``; small values give sparse, overfitted mixtures), or a
  Dirichlet process truncated at K sticks, ``v_k ~ Beta(1, weight_concentration)``
  (``"dirichlet_process"``);
* ``mu_k | Lambda_k ~ N(mean, (mean_precision Lambda_k)^-1)``;
* ``Lambda_k ~ Wishart(degrees_of_freedom, inv(covariance))``: ``covariance`` is the
  prior's scale matrix ``W_0^-1`` (``(D, D)`` for full and tied, per-feature variances
  ``(D,)`` for diag, one value for spherical).

The variational factors keep scikit-learn's parametrisation: ``q(Lambda_k)`` is
Wishart(``nu_k``, ``W_k``), stored as ``degrees_of_freedom`` ``nu_k`` and the normalised
``covariances = inv(nu_k W_k)`` (the inverse of ``E[Lambda_k]``) with their precision
Cholesky factors. For ``tied``, ``diag`` and ``spherical`` the updates are scikit-learn's
(tied: one Wishart whose statistics are the components' average; diag and spherical: the
Wishart's expectations with per-feature or per-component scales), not a separate
derivation, so that the two implementations agree.

The E-step is one pass of the compiled EM kernel
(:meth:`bayesmix.families.gaussian.covariance.CovarianceStructure.fused_statistics`): under
``q`` the expected log joint of row ``n`` and component ``k`` is

    E[log pi_k] + E[log|Lambda_k|] / 2 - D / (2 beta_k) - D log(2 pi) / 2
        - nu_k (x_n - m_k)^T W_k (x_n - m_k) / 2,

a Gaussian log density with precision ``nu_k W_k`` (the normalised covariances' precision
Cholesky factor) plus a per-component constant, which is folded into the kernel's log
weights. The kernel's responsibility-weighted statistics (mass, ``sum r x``, ``sum r x
x^T``) then give the M-step, and with its ``sum_n log sum_k exp(...)`` they give the
entropy of ``q(z)`` — no ``(N, K)`` array is formed.

Lower bound
-----------
:func:`fit_vb` reports scikit-learn's ``lower_bound_``: the evidence lower bound evaluated,
as scikit-learn does, after each M-step (``q(z)`` from the E-step before it, ``q(pi, mu,
Lambda)`` from the M-step), with the terms that do not depend on the variational
parameters dropped:

    L = H[q(z)] - sum_k log B(W_k, nu_k) - log C(q(pi)) - (D / 2) sum_k log beta_k,

where ``H[q(z)] = -sum_nk w_n r_nk log r_nk``, ``log B`` is the log Wishart normaliser
without its ``pi^(D (D - 1) / 4)`` factor (K times the shared one for tied) and ``log C``
the log normaliser of the Dirichlet (or of the K Beta sticks). For full covariances the
dropped terms are the same constant at every iteration, :func:`elbo_offset`; adding it
gives the exact ELBO, ``log p(X) - KL(q || p)``. Each CAVI step can only raise ``L``, so the
trace never decreases (``tests/test_vb.py`` checks it for every covariance type and weight
prior).
"""

from __future__ import annotations

import math
import numbers
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from scipy.special import betaln, digamma, gammaln

from bayesmix.exceptions import ConvergenceWarning
from bayesmix.families.gaussian.covariance import CovarianceStructure, get_structure
from bayesmix.families.gaussian.stats import MASS_EPS
from bayesmix.inference.em.init import INIT_METHODS, initial_responsibilities
from bayesmix.validation import check_random_state

__all__ = [
    "WEIGHT_PRIORS",
    "VBPrior",
    "VBParams",
    "VBResult",
    "default_prior",
    "elbo_offset",
    "expected_log_joint",
    "fit_vb",
]

#: the two weight priors: a truncated Dirichlet process (stick-breaking) or a symmetric
#: Dirichlet distribution
WEIGHT_PRIORS = ("dirichlet_process", "dirichlet_distribution")
_LOG_2 = math.log(2.0)
_LOG_2PI = math.log(2.0 * math.pi)


@dataclass(frozen=True)
class VBPrior:
    """scikit-learn's conjugate prior (see the module docstring); data units."""

    weight_prior: str
    weight_concentration: float
    mean_precision: float
    mean: np.ndarray
    degrees_of_freedom: float
    covariance: np.ndarray

    def shifted(self, shift: np.ndarray) -> VBPrior:
        """The same prior for the data ``X - shift``."""
        return replace(self, mean=self.mean - shift)


@dataclass(frozen=True)
class VBParams:
    """Parameters of the variational posterior ``q``, scikit-learn's fitted attributes.

    ``weight_concentration``: ``(K,)`` Dirichlet parameters, or ``(2, K)`` the Beta
    parameters ``(a_k, b_k)`` of the sticks; ``mean_precision`` ``beta_k`` ``(K,)``;
    ``means`` ``m_k`` ``(K, D)``; ``degrees_of_freedom`` ``nu_k`` ``(K,)`` (a scalar for
    tied); ``covariances`` ``inv(nu_k W_k)`` in the structure's natural storage and their
    ``precisions_cholesky``.
    """

    weight_prior: str
    weight_concentration: np.ndarray
    mean_precision: np.ndarray
    means: np.ndarray
    degrees_of_freedom: np.ndarray
    covariances: np.ndarray
    precisions_cholesky: np.ndarray

    @property
    def weights(self) -> np.ndarray:
        """Expected weights ``E_q[pi_k]`` (normalised for the truncated stick-breaking)."""
        concentration = np.asarray(self.weight_concentration)
        if self.weight_prior == "dirichlet_distribution":
            return concentration / concentration.sum()
        a, b = concentration
        stick = a / (a + b)
        remaining = np.concatenate(([1.0], np.cumprod(b / (a + b))[:-1]))
        weights = stick * remaining
        return weights / weights.sum()

    def expected_log_weights(self) -> np.ndarray:
        """``E_q[log pi_k]``."""
        concentration = np.asarray(self.weight_concentration)
        if self.weight_prior == "dirichlet_distribution":
            return digamma(concentration) - digamma(concentration.sum())
        a, b = concentration
        log_total = digamma(a + b)
        log_rest = np.concatenate(([0.0], np.cumsum(digamma(b) - log_total)[:-1]))
        return digamma(a) - log_total + log_rest

    def shifted(self, shift: np.ndarray) -> VBParams:
        """The same parameters for the data ``X - shift``."""
        return replace(self, means=self.means - shift)


@dataclass(frozen=True)
class VBResult:
    """One VB fit: the kept run's variational parameters and its lower-bound trace.

    ``lower_bound_trace[i]`` is the lower bound after iteration ``i + 1`` (scikit-learn's
    ``lower_bounds_``; module docstring); ``lower_bound`` the last of them (``-inf`` with
    ``max_iter=0``). ``n_iter`` counts E-step/M-step pairs of the kept run.
    """

    params: VBParams
    prior: VBPrior
    structure: CovarianceStructure
    lower_bound: float
    lower_bound_trace: np.ndarray
    converged: bool
    n_iter: int
    n_obs: float

    @property
    def elbo(self) -> float:
        """The exact evidence lower bound (full covariances): ``lower_bound`` plus
        :func:`elbo_offset`."""
        n_components = self.params.means.shape[0]
        return self.lower_bound + elbo_offset(self.prior, self.structure, n_components, self.n_obs)


# -- the prior -------------------------------------------------------------------------


def default_prior(
    X: np.ndarray,
    n_components: int,
    covariance_type: str | CovarianceStructure = "full",
    weight_prior: str = "dirichlet_process",
    *,
    sample_weight: np.ndarray | None = None,
    weight_concentration: float | None = None,
    mean_precision: float | None = None,
    mean: Any = None,
    degrees_of_freedom: float | None = None,
    covariance: Any = None,
) -> VBPrior:
    """scikit-learn's prior, with its defaults for the values not given.

    Defaults: ``weight_concentration = 1 / K``, ``mean_precision = 1``, ``mean`` the data
    mean, ``degrees_of_freedom = D`` and ``covariance`` the data covariance (``ddof=1``:
    the matrix for full and tied, its diagonal for diag, the diagonal's mean for
    spherical). With ``sample_weight`` the mean and covariance are weighted (frequency
    weights).

    Raises
    ------
    ValueError
        ``weight_prior`` unknown, ``degrees_of_freedom <= D - 1``, a non-positive
        concentration or precision, or a ``mean`` or ``covariance`` of the wrong shape.
    """
    structure = (
        covariance_type
        if isinstance(covariance_type, CovarianceStructure)
        else get_structure(covariance_type)
    )
    if weight_prior not in WEIGHT_PRIORS:
        raise ValueError(
            f"weight_concentration_prior_type must be one of {list(WEIGHT_PRIORS)}; got "
            f"{weight_prior!r}."
        )
    X = np.asarray(X, dtype=np.float64)
    n_obs, n_features = X.shape
    weights = np.ones(n_obs) if sample_weight is None else np.asarray(sample_weight, float)
    total = weights.sum()
    data_mean = weights @ X / total
    if weight_concentration is None:
        weight_concentration = 1.0 / n_components
    if mean_precision is None:
        mean_precision = 1.0
    for name, value in (
        ("weight_concentration_prior", weight_concentration),
        ("mean_precision_prior", mean_precision),
    ):
        if not (isinstance(value, numbers.Real) and value > 0):
            raise ValueError(f"{name} must be a number > 0; got {value!r}.")
    if mean is None:
        mean = data_mean
    mean = np.asarray(mean, dtype=np.float64)
    if mean.shape != (n_features,):
        raise ValueError(
            f"The parameter 'means' should have the shape of {(n_features,)}, but got "
            f"{mean.shape}; pass mean_prior with one value per feature."
        )
    if degrees_of_freedom is None:
        degrees_of_freedom = float(n_features)
    elif not degrees_of_freedom > n_features - 1.0:
        raise ValueError(
            "The parameter 'degrees_of_freedom_prior' should be greater than "
            f"{n_features - 1}, but got {degrees_of_freedom:.3f}."
        )
    if covariance is None:
        centred = X - data_mean
        if sample_weight is None:
            data_cov = np.atleast_2d(np.cov(X.T))
        else:
            data_cov = (centred.T * weights) @ centred / (total - 1.0)
        variances = np.diagonal(data_cov).copy()
        covariance = _in_form(structure, data_cov, variances)
    covariance = np.asarray(covariance, dtype=np.float64)
    expected = structure.natural_shape(1, n_features)
    expected = expected[1:] if not structure.shared_across_components else expected
    if covariance.shape != expected:
        raise ValueError(
            f"The parameter '{structure.name} covariance_prior' should have the shape of "
            f"{expected}, but got {covariance.shape}."
        )
    return VBPrior(
        weight_prior,
        float(weight_concentration),
        float(mean_precision),
        mean,
        float(degrees_of_freedom),
        covariance,
    )


def _in_form(structure: CovarianceStructure, matrix: np.ndarray, variances: np.ndarray):
    """A prior scale in the structure's storage for one component: the matrix, the
    variances or their mean."""
    if not structure.axis_aligned:
        return matrix
    return structure.pool_second_moments(variances[None, :])[0] / _pooled_count(
        structure, 1, len(variances)
    )


def _pooled_count(structure: CovarianceStructure, n_components: int, n_features: int) -> int:
    """How many per-component values the structure pools into one (tied: K components,
    spherical: D features, else 1)."""
    unpooled = n_components * (n_features if structure.axis_aligned else n_features**2)
    pooled = math.prod(structure.natural_shape(n_components, n_features))
    return unpooled // pooled


# -- the updates ----------------------------------------------------------------------


def _outer(structure: CovarianceStructure, a: np.ndarray, b: np.ndarray, coef: np.ndarray):
    """``sum over the pooled axis of coef_k (a_k b_k^T + b_k a_k^T) / 2`` in the
    structure's second-moment form."""
    if structure.axis_aligned:
        moments = coef[:, None] * a * b
    else:
        cross = np.einsum("k,kd,ke->kde", coef, a, b)
        moments = 0.5 * (cross + np.swapaxes(cross, 1, 2))
    return structure.pool_second_moments(moments)


def _identity(structure: CovarianceStructure, coef: np.ndarray, n_features: int):
    """``coef_k I`` per component, pooled into the structure's form."""
    n_components = coef.shape[0]
    if structure.axis_aligned:
        moments = np.repeat(coef[:, None], n_features, axis=1)
    else:
        moments = coef[:, None, None] * np.eye(n_features)
        moments = np.broadcast_to(moments, (n_components, n_features, n_features))
    return structure.pool_second_moments(moments)


def _m_step(
    mass: np.ndarray,
    sum_x: np.ndarray,
    sum_xx: np.ndarray,
    prior: VBPrior,
    structure: CovarianceStructure,
    reg_covar: float,
) -> VBParams:
    """``q(pi, mu, Lambda)`` given the responsibilities' statistics (shifted units)."""
    n_components, n_features = sum_x.shape
    nk = mass + MASS_EPS  # as scikit-learn, so empty components stay finite
    if prior.weight_prior == "dirichlet_distribution":
        concentration = prior.weight_concentration + nk
    else:
        later = np.concatenate((np.cumsum(nk[::-1])[-2::-1], [0.0]))  # sum_{j > k} N_j
        concentration = np.stack((1.0 + nk, prior.weight_concentration + later))
    beta = prior.mean_precision + nk
    means = (prior.mean_precision * prior.mean + sum_x) / beta[:, None]
    xbar = sum_x / nk[:, None]
    offset = xbar - prior.mean
    # Scatter about each xbar_k: sum_xx - sum_k c_k S_k S_k^T, c_k = (2 nk - mass) / nk^2.
    scatter = sum_xx - _outer(structure, sum_x, sum_x, (2.0 * nk - mass) / nk**2)
    pooled = (
        scatter
        + _identity(structure, nk * reg_covar, n_features)
        + _outer(structure, offset, offset, nk * prior.mean_precision / beta)
    )
    count = _pooled_count(structure, n_components, n_features)
    scale = prior.covariance + pooled / count
    if structure.shared_across_components:
        dof = np.asarray(prior.degrees_of_freedom + nk.sum() / n_components)
        covariances = scale / dof
    else:
        dof = prior.degrees_of_freedom + nk
        covariances = scale / dof.reshape((-1,) + (1,) * (scale.ndim - 1))
    if not structure.axis_aligned:
        covariances = 0.5 * (covariances + np.swapaxes(covariances, -1, -2))
    return VBParams(
        prior.weight_prior,
        concentration,
        beta,
        means,
        dof,
        covariances,
        structure.precision_cholesky(covariances),
    )


def _expected_log_det(dof: np.ndarray, n_features: int) -> np.ndarray:
    """``E[log|Lambda|] - log|W|`` of a Wishart(``dof``, ``W``)."""
    halves = 0.5 * (np.asarray(dof)[..., None] - np.arange(n_features))
    return n_features * _LOG_2 + digamma(halves).sum(-1)


def _log_weights(params: VBParams, n_features: int) -> np.ndarray:
    """The per-component constants of ``E_q[log p(x, z = k)]`` beyond the Gaussian log
    density with the normalised precision: ``E[log pi_k] + (E[log|Lambda_k|] -
    log|nu_k W_k|) / 2 - D / (2 beta_k)``."""
    dof = params.degrees_of_freedom
    return (
        params.expected_log_weights()
        + 0.5 * (_expected_log_det(dof, n_features) - n_features * np.log(dof))
        - 0.5 * n_features / params.mean_precision
    )


def expected_log_joint(X: np.ndarray, params: VBParams, structure: CovarianceStructure):
    """``E_q[log p(x_n, z_n = k)]`` up to ``q``-free terms, ``(n, K)``: log responsibilities
    before normalising (scikit-learn's ``_estimate_weighted_log_prob``)."""
    n_features = params.means.shape[1]
    log_density = structure.log_prob(X, params.means, params.precisions_cholesky)
    return log_density + _log_weights(params, n_features)


def _lower_bound(
    entropy: float, params: VBParams, structure: CovarianceStructure, n_components: int
) -> float:
    """scikit-learn's lower bound after an M-step (module docstring)."""
    n_features = params.means.shape[1]
    dof = params.degrees_of_freedom
    log_det = structure.log_det_precision_cholesky(params.precisions_cholesky, n_features)
    log_det_w = log_det - 0.5 * n_features * np.log(dof)  # log |W|^(1/2)
    halves = 0.5 * (np.asarray(dof)[..., None] - np.arange(n_features))
    log_wishart = -(dof * log_det_w + 0.5 * n_features * _LOG_2 * dof + gammaln(halves).sum(-1))
    log_wishart = np.broadcast_to(log_wishart, (n_components,)).sum()
    concentration = np.asarray(params.weight_concentration)
    if params.weight_prior == "dirichlet_distribution":
        log_norm = gammaln(concentration.sum()) - gammaln(concentration).sum()
    else:
        log_norm = -betaln(concentration[0], concentration[1]).sum()
    return float(
        entropy - log_wishart - log_norm - 0.5 * n_features * np.log(params.mean_precision).sum()
    )


def elbo_offset(
    prior: VBPrior, structure: CovarianceStructure, n_components: int, n_obs: float
) -> float:
    """What scikit-learn's lower bound leaves out of the ELBO, a constant: the prior's
    normalisers, ``-(N D / 2) log(2 pi)`` and the Wishart normalisers' ``pi`` factors.
    Exact for full covariances; for the other types it adds the same prior terms to
    scikit-learn's bound (their updates are scikit-learn's, module docstring)."""
    n_features = prior.mean.shape[0]
    dof = prior.degrees_of_freedom
    scale = structure.to_full(
        np.asarray(prior.covariance)[None]
        if not structure.shared_across_components
        else np.asarray(prior.covariance),
        1,
        n_features,
    )
    scale = np.asarray(scale).reshape(-1, n_features, n_features)[0]
    log_det_w0 = -np.linalg.slogdet(scale)[1]  # log |W_0|
    halves = 0.5 * (dof - np.arange(n_features))
    log_wishart_prior = (
        -0.5 * dof * log_det_w0
        - 0.5 * n_features * _LOG_2 * dof
        - 0.25 * n_features * (n_features - 1) * math.log(math.pi)
        - gammaln(halves).sum()
    )
    pi_terms = 0.25 * n_features * (n_features - 1) * math.log(math.pi)
    alpha = prior.weight_concentration
    if prior.weight_prior == "dirichlet_distribution":
        log_norm_prior = gammaln(n_components * alpha) - n_components * gammaln(alpha)
    else:
        log_norm_prior = n_components * math.log(alpha)  # -betaln(1, alpha) per stick
    return float(
        n_components * (log_wishart_prior + pi_terms)
        + log_norm_prior
        + 0.5 * n_features * n_components * math.log(prior.mean_precision)
        - 0.5 * n_obs * n_features * _LOG_2PI
    )


def _entropy(
    stats: tuple, params: VBParams, structure: CovarianceStructure, log_weights: np.ndarray
) -> float:
    """``-sum_nk w_n r_nk log r_nk`` from the E-step's statistics: ``log r = log rho -
    log Z_n`` with ``log rho_nk = const_k - maha_nk / 2``, and ``sum_n r_nk maha_nk``
    from the moments (shifted units)."""
    mass, sum_x, sum_xx, log_lik, _ = stats
    n_features = sum_x.shape[1]
    means = params.means
    precision = structure.natural_precisions(params.precisions_cholesky)
    moments = sum_xx - _outer(structure, sum_x, means, 2.0 * np.ones(len(mass)))
    moments = moments + _outer(structure, means, means, mass)
    maha = float(np.sum(precision * moments))
    log_det = structure.log_det_precision_cholesky(params.precisions_cholesky, n_features)
    const = log_weights + log_det - 0.5 * n_features * _LOG_2PI
    return float(log_lik - mass @ const + 0.5 * maha)


def _statistics(X, sample_weight, shift, resp, structure):
    """Mass, ``sum r x`` and the structure's ``sum r x x^T`` for given responsibilities
    (the start): one GEMM per component over the rows it holds, so a hard assignment
    costs ``N D^2`` in all, not ``K N D^2``."""
    centred = X - shift
    weighted = resp * sample_weight[:, None]
    mass = weighted.sum(axis=0)
    sum_x = weighted.T @ centred
    if structure.axis_aligned:
        moments = weighted.T @ (centred * centred)
    else:
        n_components, n_features = sum_x.shape
        moments = np.empty((n_components, n_features, n_features))
        for k in range(n_components):  # components, not rows
            rows = np.flatnonzero(weighted[:, k])
            block = centred[rows]
            moments[k] = (block * weighted[rows, k, None]).T @ block
        moments = 0.5 * (moments + np.swapaxes(moments, 1, 2))
    return mass, sum_x, structure.pool_second_moments(moments)


def _e_step(X, sample_weight, shift, params, structure):
    """The kernel's statistics under ``q`` and the entropy of the responsibilities."""
    log_weights = _log_weights(params, params.means.shape[1])
    stats = structure.fused_statistics(
        X, sample_weight, shift, log_weights, params.means, params.precisions_cholesky
    )
    return stats, _entropy(stats, params, structure, log_weights)


# -- the fit --------------------------------------------------------------------------


def _run(X, sample_weight, shift, start, prior, structure, max_iter, tol, reg_covar, previous):
    """One CAVI run from ``start`` (shifted units)."""
    params = start
    trace: list[float] = []
    lower = -np.inf if previous is None else previous
    converged = False
    n_components = params.means.shape[0]
    for _ in range(max_iter):
        prev = lower
        stats, entropy = _e_step(X, sample_weight, shift, params, structure)
        mass, sum_x, sum_xx = stats[0], stats[1], stats[2]
        if not (np.isfinite(stats[3]) and np.isfinite(sum_xx).all()):
            raise ValueError(
                "the variational E-step gave non-finite statistics: the data contain "
                "NaN or infinite values, or a component's precision overflowed; check X "
                "and consider a larger reg_covar."
            )
        params = _m_step(mass, sum_x, sum_xx, prior, structure, reg_covar)
        lower = _lower_bound(entropy, params, structure, n_components)
        trace.append(lower)
        if abs(lower - prev) < tol:
            converged = True
            break
    return params, np.array(trace), converged


def fit_vb(
    X: np.ndarray,
    n_components: int,
    covariance_type: str | CovarianceStructure = "full",
    prior: VBPrior | None = None,
    *,
    sample_weight: np.ndarray | None = None,
    init: str | np.ndarray | Callable[[int], np.ndarray] | VBParams = "kmeans++",
    n_init: int = 1,
    max_iter: int = 100,
    tol: float = 1e-3,
    reg_covar: float = 1e-6,
    random_state: Any = None,
    previous_lower_bound: float | None = None,
    callback: Callable[[int, VBResult], None] | None = None,
    warn: bool = True,
) -> VBResult:
    """Fit ``q`` by coordinate ascent on the lower bound; keep the best of ``n_init`` runs.

    Parameters
    ----------
    X : numpy.ndarray of shape (n_obs, n_features)
        Float64 or float32 data without missing values.
    n_components : int
        Truncation level K (components of the variational posterior).
    covariance_type : {"full", "tied", "diag", "spherical"} or CovarianceStructure
    prior : VBPrior, optional
        Default: :func:`default_prior` (scikit-learn's defaults, stick-breaking weights).
    sample_weight : numpy.ndarray of shape (n_obs,), optional
        Frequency weights.
    init : str, numpy.ndarray, callable or VBParams, default "kmeans++"
        A method of :data:`bayesmix.inference.em.init.INIT_METHODS` for the initial
        responsibilities, an ``(n_obs, K)`` array of them (every run starts there), a
        function ``init(run)`` returning them for each run, or variational parameters to
        continue from (a warm start; one run).
    n_init : int, default 1
        Runs from different initial responsibilities; the one with the highest final
        lower bound is kept.
    max_iter : int, default 100
        Iterations (E-step and M-step) per run; ``0`` returns the initial ``q``.
    tol : float, default 1e-3
        Stop when the lower bound changes by less than this (absolute, as scikit-learn).
    reg_covar : float, default 1e-6
        Added to the responsibility-weighted covariances (scikit-learn's ``reg_covar``).
    random_state : None, int or numpy Generator
    previous_lower_bound : float, optional
        The lower bound a warm start continues from (the first change is measured
        against it).
    callback : callable, optional
        ``callback(run, result)`` after each run.
    warn : bool, default True
        Warn (:class:`bayesmix.ConvergenceWarning`) when the kept run did not converge.

    Returns
    -------
    VBResult
    """
    structure = (
        covariance_type
        if isinstance(covariance_type, CovarianceStructure)
        else get_structure(covariance_type)
    )
    X = np.asarray(X)
    if X.dtype not in (np.float32, np.float64):
        X = X.astype(np.float64)
    n_obs, n_features = X.shape
    weights = np.ones(n_obs) if sample_weight is None else np.asarray(sample_weight, np.float64)
    if prior is None:
        prior = default_prior(X, n_components, structure, sample_weight=sample_weight)
    shift = weights @ X.astype(np.float64, copy=False) / weights.sum()
    shifted_prior = prior.shifted(shift)
    rng = check_random_state(random_state)
    best = None
    runs = 1 if isinstance(init, VBParams) else n_init
    X64 = X.astype(np.float64, copy=False)
    for run in range(runs):
        if isinstance(init, VBParams):
            start = init.shifted(shift)
        else:
            if callable(init):
                resp = np.asarray(init(run), dtype=np.float64)
            elif isinstance(init, np.ndarray):
                resp = np.asarray(init, dtype=np.float64)
            elif isinstance(init, str) and init in INIT_METHODS:
                resp = initial_responsibilities(init, X64, weights, n_components, rng)
            else:
                raise ValueError(
                    f"init must be one of {list(INIT_METHODS)}, an (n_obs, n_components) "
                    f"array of responsibilities, a function of the run returning one, or "
                    f"VBParams; got {init!r}."
                )
            if resp.shape != (n_obs, n_components):
                raise ValueError(
                    f"init responsibilities must have shape {(n_obs, n_components)}; "
                    f"got {resp.shape}."
                )
            mass, sum_x, sum_xx = _statistics(X64, weights, shift, resp, structure)
            start = _m_step(mass, sum_x, sum_xx, shifted_prior, structure, reg_covar)
        if max_iter == 0:
            params, trace, converged = start, np.array([]), False
        else:
            params, trace, converged = _run(
                X,
                weights,
                shift,
                start,
                shifted_prior,
                structure,
                max_iter,
                tol,
                reg_covar,
                previous_lower_bound,
            )
        lower = float(trace[-1]) if len(trace) else -np.inf
        result = VBResult(
            params.shifted(-shift),
            prior,
            structure,
            lower,
            trace,
            converged,
            len(trace),
            float(weights.sum()),
        )
        if callback is not None:
            callback(run, result)
        if best is None or lower > best.lower_bound:
            best = result
    if warn and max_iter > 0 and not best.converged:
        warnings.warn(
            f"variational Bayes did not converge in max_iter={max_iter} iterations (last "
            f"change of the lower bound above tol={tol}); increase max_iter or tol.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return best
