"""Closed-form mean-field variational Bayes (CAVI) for Gaussian mixtures.

Coordinate ascent on ``q(z) q(pi) prod_k q(mu_k, Lambda_k)`` (Bishop 2006, section 10.2;
Blei & Jordan 2006 for the stick-breaking weights) under scikit-learn's conjugate prior
family, so that from the same start the fit reproduces
:class:`sklearn.mixture.BayesianGaussianMixture`:

* weights: a symmetric Dirichlet(``weight_concentration``) on K weights
  (``"dirichlet_distribution"``; small values give sparse, overfitted mixtures), or a
  Dirichlet process truncated at K sticks, ``v_k ~ Beta(1, weight_concentration)``
  (``"dirichlet_process"``), or a Pitman-Yor process truncated at K sticks, ``v_k ~
  Beta(1 - discount, weight_concentration + k discount)`` (``"pitman_yor"``;
  :mod:`bayesmix.inference.vb_weights`);
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

import hashlib
import math
import numbers
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np
from scipy.special import digamma, gammaln

from bayesmix.exceptions import ConvergenceWarning
from bayesmix.families.gaussian import kernels
from bayesmix.families.gaussian.covariance import (
    BASIC_STRUCTURES,
    CovarianceStructure,
    get_structure,
)
from bayesmix.families.gaussian.stats import MASS_EPS
from bayesmix.inference import vb_loop
from bayesmix.inference.em.init import (
    INIT_METHODS,
    KMEANS_MAX_ITER,
    KMEANS_MAX_ROWS,
    KMEANS_RESTARTS,
    KMEANS_TOL,
    initial_responsibilities,
    nearest,
)
from bayesmix.inference.em.kmeans_kernels import kmeans_labels, start_statistics
from bayesmix.inference.interrupt import (
    INTERRUPTS,
    is_interrupt,
    keeps_partial_work,
    warn_vb_unfinished,
)
from bayesmix.inference.vb_weights import (
    INTERFACE_WEIGHT_PRIORS,
    STICK_PRIORS,
    WEIGHT_PRIORS,
    check_discount,
    check_stick_prior,
    expected_log_weights,
    expected_weights,
    interface_concentration,
    log_normaliser,
    posterior_concentration,
    prior_log_normaliser,
    sample_weights,
    truncated_stick_parameters,
)
from bayesmix.jit import read_only
from bayesmix.validation import check_choice, check_float, check_int, check_random_state

if TYPE_CHECKING:
    from bayesmix.data import Data
    from bayesmix.model import GaussianMixture
    from bayesmix.priors import ResolvedPriors
    from bayesmix.results.posterior import BayesResult

# VB's start methods: EM's, and "auto" (the default): the first run from k-means, the
# others from k-means++ seeds. On iris, wine and breast_cancer (standardised, 5 starts)
# neither alone always reaches the highest lower bound: k-means finds scikit-learn's
# solution (wine: -275.7 against k-means++' -306.4), k-means++ a higher bound on iris
# (164.0 against 155.3) and breast_cancer (15762.7 against 15583.6)
VB_INIT_METHODS = ("auto", *INIT_METHODS)

__all__ = [
    "VB_STRUCTURES",
    "WEIGHT_PRIORS",
    "VBPrior",
    "VBParams",
    "VBResult",
    "default_prior",
    "cavi_m_step",
    "check_vb_model",
    "component_log_weights",
    "elbo_offset",
    "estep_entropy",
    "expected_log_joint",
    "fit_vb",
    "fit_vb_result",
    "interface_prior",
    "lower_bound",
    "resolve_seed",
    "result_priors",
    "run_cavi",
    "sample_q",
    "vb_bayes_result",
    "vb_priors",
]

#: the covariance structures closed-form VB supports (scikit-learn's four)
VB_STRUCTURES = BASIC_STRUCTURES
_LOG_2 = math.log(2.0)
_LOG_2PI = math.log(2.0 * math.pi)
# up to this many features the full kernel's unpadded path beats the sparse kernel
_SMALL_FEATURES = 3
# full covariances with N K D^2 up to this: each run in one compiled call (vb_loop)
_COMPILED_LOOP_SIZE = 1_000_000


@dataclass(frozen=True)
class VBPrior:
    """scikit-learn's conjugate prior (see the module docstring); data units.
    ``discount``: the Pitman-Yor prior's (0 for the other weight priors)."""

    weight_prior: str
    weight_concentration: float
    mean_precision: float
    mean: np.ndarray
    degrees_of_freedom: float
    covariance: np.ndarray
    discount: float = 0.0

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
        return expected_weights(self.weight_prior, self.weight_concentration)

    def expected_log_weights(self) -> np.ndarray:
        """``E_q[log pi_k]``."""
        return expected_log_weights(self.weight_prior, self.weight_concentration)

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
    interrupted: bool = False  # Ctrl-C stopped the runs (see fit_vb)
    n_repeated_starts: int = 0  # starts equal to an earlier one, not run again

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
    weights). scikit-learn's two weight priors (:data:`WEIGHT_PRIORS`); the Pitman-Yor
    prior is ``replace(prior, weight_prior="pitman_yor", discount=d)`` of the Dirichlet
    process' (:func:`interface_prior`).

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
        # one GEMM on the centred rows (np.cov copies the transposed data first)
        weighted = centred if sample_weight is None else centred * weights[:, None]
        data_cov = weighted.T @ centred / (total - 1.0)
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
        cross = (coef[:, None] * a)[:, :, None] * b[:, None, :]  # (coef_k a_kd) b_ke
        moments = 0.5 * (cross + np.swapaxes(cross, 1, 2))
    return structure.pool_second_moments(moments)


def _identity(structure: CovarianceStructure, coef: np.ndarray, n_features: int):
    """``coef_k I`` per component, pooled into the structure's form."""
    if structure.axis_aligned:
        moments = np.repeat(coef[:, None], n_features, axis=1)
    else:
        moments = coef[:, None, None] * np.eye(n_features)  # (K, D, D)
    return structure.pool_second_moments(moments)


def cavi_m_step(
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
    concentration = posterior_concentration(
        prior.weight_prior, prior.weight_concentration, nk, discount=prior.discount
    )
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


def component_log_weights(params: VBParams) -> np.ndarray:
    """The per-component constants of ``E_q[log p(x, z = k)]`` beyond the Gaussian log
    density with the normalised precision: ``E[log pi_k] + (E[log|Lambda_k|] -
    log|nu_k W_k|) / 2 - D / (2 beta_k)``."""
    n_features = params.means.shape[1]
    dof = params.degrees_of_freedom
    return (
        params.expected_log_weights()
        + 0.5 * (_expected_log_det(dof, n_features) - n_features * np.log(dof))
        - 0.5 * n_features / params.mean_precision
    )


def expected_log_joint(X: np.ndarray, params: VBParams, structure: CovarianceStructure):
    """``E_q[log p(x_n, z_n = k)]`` up to ``q``-free terms, ``(n, K)``: log responsibilities
    before normalising (scikit-learn's ``_estimate_weighted_log_prob``)."""
    log_density = structure.log_prob(X, params.means, params.precisions_cholesky)
    return log_density + component_log_weights(params)


def lower_bound(
    entropy: float, params: VBParams, structure: CovarianceStructure, n_components: int
) -> float:
    """scikit-learn's lower bound after an M-step (module docstring): ``entropy`` of the
    E-step's ``q(z)`` (:func:`estep_entropy`), ``params`` the M-step's ``q``."""
    return _lower_bound(entropy, params, structure, n_components)


def _lower_bound(
    entropy: float, params: VBParams, structure: CovarianceStructure, n_components: int
) -> float:
    """:func:`lower_bound` (tests count its calls)."""
    n_features = params.means.shape[1]
    dof = params.degrees_of_freedom
    log_det = structure.log_det_precision_cholesky(params.precisions_cholesky, n_features)
    log_det_w = log_det - 0.5 * n_features * np.log(dof)  # log |W|^(1/2)
    halves = 0.5 * (np.asarray(dof)[..., None] - np.arange(n_features))
    log_wishart = -(dof * log_det_w + 0.5 * n_features * _LOG_2 * dof + gammaln(halves).sum(-1))
    log_wishart = np.broadcast_to(log_wishart, (n_components,)).sum()
    log_norm = log_normaliser(params.weight_prior, params.weight_concentration)
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
    log_norm_prior = prior_log_normaliser(
        prior.weight_prior, prior.weight_concentration, n_components, discount=prior.discount
    )
    return float(
        n_components * (log_wishart_prior + pi_terms)
        + log_norm_prior
        + 0.5 * n_features * n_components * math.log(prior.mean_precision)
        - 0.5 * n_obs * n_features * _LOG_2PI
    )


def estep_entropy(
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


def _hard_labels(resp: np.ndarray) -> np.ndarray | None:
    """The component of each row when every row has at most one non-zero responsibility
    (a hard start: k-means, k-means++, hc), else None."""
    if np.count_nonzero(resp) > resp.shape[0]:
        return None
    labels = resp.argmax(axis=1)
    if np.count_nonzero(resp[np.arange(resp.shape[0]), labels]) != np.count_nonzero(resp):
        return None
    return labels


def _start_digest(resp: np.ndarray, labels: np.ndarray | None) -> bytes:
    """A digest of the start's responsibilities (of a hard start's labels and values)."""
    if labels is None:
        return hashlib.blake2b(resp.tobytes(), digest_size=16).digest()
    values = resp[np.arange(resp.shape[0]), labels]
    digest = hashlib.blake2b(labels.astype(np.int32).tobytes(), digest_size=16)
    digest.update(values.tobytes())
    return digest.digest()


def _data_prior(second_moments, mean, n_components, total):
    """:func:`default_prior` (full or tied, the default weight prior) from a start's
    second moments about the data ``mean`` ``(K, D, D)`` (full) or pooled ``(D, D)``
    (tied) of responsibilities whose rows sum to one: their sum over the components is
    the data's weighted scatter, the prior's covariance that over ``total - 1``."""
    scatter = second_moments.sum(axis=0) if second_moments.ndim == 3 else second_moments
    return VBPrior(
        "dirichlet_process",
        1.0 / n_components,
        1.0,
        mean.copy(),
        float(mean.shape[0]),
        scatter / (total - 1.0),
    )


def _start_responsibilities(method, X, sample_weight, n_components, rng):
    """:func:`~bayesmix.inference.em.init.initial_responsibilities`, with a k-means
    start's seeds and Lloyd runs in one compiled call
    (:func:`~bayesmix.inference.em.kmeans_kernels.kmeans_labels`): the same algorithm on
    the same draws of ``rng`` (the subsample of at most ``KMEANS_MAX_ROWS`` rows of
    positive weight, then one vector of uniforms), which it leaves where ``kmeans`` leaves
    it; every row then to its nearest centre (:func:`~bayesmix.inference.em.init.nearest`)
    unless the fitted rows are all rows."""
    if method != "kmeans":
        return initial_responsibilities(method, X, sample_weight, n_components, rng)
    n_obs = X.shape[0]
    rows = np.flatnonzero(sample_weight > 0)
    if rows.size > KMEANS_MAX_ROWS:
        rows = np.sort(rng.choice(rows, KMEANS_MAX_ROWS, replace=False))
    subset = read_only(X if rows.size == n_obs else X[rows])
    n_trials = 2 + int(np.log(n_components))
    uniforms = rng.random(KMEANS_RESTARTS * (1 + (n_components - 1) * n_trials))
    threshold = KMEANS_TOL * float(subset.var(axis=0).mean())
    labels, centres = kmeans_labels(
        subset,
        read_only(sample_weight if rows.size == n_obs else sample_weight[rows]),
        read_only(uniforms),
        n_components,
        n_trials,
        KMEANS_RESTARTS,
        KMEANS_MAX_ITER,
        threshold,
    )
    if rows.size != n_obs:
        labels = nearest(X, centres)[0]
    resp = np.zeros((n_obs, n_components))
    resp[np.arange(n_obs), labels] = 1.0
    return resp


def _statistics(X, sample_weight, shift, resp, structure, labels=None):
    """Mass, ``sum r x`` and the structure's ``sum r x x^T`` for given responsibilities
    (the start). A matrix structure (full, tied) with a hard start (at most one non-zero
    responsibility per row: k-means, k-means++, hc; at most N non-zeros in all) takes
    one compiled pass over the rows
    (:func:`~bayesmix.inference.em.kmeans_kernels.start_statistics`: ``N D^2``, no copy
    of the rows); otherwise one GEMM per component over the rows it holds, so a hard
    assignment costs ``N D^2`` in all, not ``K N D^2``.
    ``labels``: a hard start's components (:func:`_hard_labels`), which give those rows
    without reading ``resp`` by column."""
    if not structure.axis_aligned and (
        labels is not None or np.count_nonzero(resp) <= resp.shape[0]
    ):
        mass, sum_x, moments = start_statistics(
            read_only(X), read_only(sample_weight), read_only(shift), read_only(resp)
        )
        moments = 0.5 * (moments + np.swapaxes(moments, 1, 2))
        return mass, sum_x, structure.pool_second_moments(moments)
    n_components = resp.shape[1]
    if labels is None:
        weighted = resp * sample_weight[:, None]
        members = [np.flatnonzero(weighted[:, k]) for k in range(n_components)]
        row_weights = [weighted[rows_k, k] for k, rows_k in enumerate(members)]
    else:
        members, row_weights = [], []
        for k in range(n_components):
            rows_k = np.flatnonzero(labels == k)
            w = resp[rows_k, k] * sample_weight[rows_k]
            held = w != 0.0
            members.append(rows_k[held])
            row_weights.append(w[held])
    n_features = X.shape[1]
    mass = np.zeros(n_components)
    sum_x = np.zeros((n_components, n_features))
    if structure.axis_aligned:
        moments = np.zeros((n_components, n_features))
    else:
        moments = np.zeros((n_components, n_features, n_features))
    # each row one opaque item: numpy's fancy indexing of (n, D) rows costs 5x more
    rows = np.ascontiguousarray(X, dtype=np.float64)
    rows = rows.view(np.dtype((np.void, rows.itemsize * n_features))).ravel()
    for k, (rows_k, w) in enumerate(zip(members, row_weights, strict=True)):  # components
        block = np.take(rows, rows_k).view(np.float64).reshape(-1, n_features)
        block -= shift
        mass[k] = w.sum()
        sum_x[k] = w @ block
        unit = bool(np.all(w == 1.0))
        if structure.axis_aligned:
            moments[k] = w @ (block * block)
        else:
            moments[k] = (block if unit else block * w[:, None]).T @ block
    if not structure.axis_aligned:
        moments = 0.5 * (moments + np.swapaxes(moments, 1, 2))
    return mass, sum_x, structure.pool_second_moments(moments)


def _e_step(X, sample_weight, shift, params, *, structure):
    """The kernel's statistics under ``q`` and the entropy of the responsibilities.

    Full covariances (a matrix per component) with more than three features and more
    than one chunk of rows take
    :func:`~bayesmix.families.gaussian.kernels.estep_full_sparse` (each component's
    moments over only the rows it holds: the same statistics up to the order of the
    sums); the rest the structure's EM kernel."""
    log_weights = component_log_weights(params)
    prec_chol = params.precisions_cholesky
    n_obs, n_features = X.shape
    n_chunks = kernels.n_chunks_for(n_obs)
    per_component_matrices = not (structure.axis_aligned or structure.shared_across_components)
    if per_component_matrices and n_features > _SMALL_FEATURES and n_chunks > 1:
        stats = kernels.estep_full_sparse(
            X,
            sample_weight,
            shift,
            log_weights,
            params.means,
            np.ascontiguousarray(np.swapaxes(prec_chol, 1, 2)),
            structure.log_det_precision_cholesky(prec_chol, n_features),
            n_chunks,
        )
    else:
        stats = structure.fused_statistics(
            X, sample_weight, shift, log_weights, params.means, prec_chol
        )
    return stats, estep_entropy(stats, params, structure, log_weights)


# -- the fit --------------------------------------------------------------------------


def _compiled_run(X, weights, shift, statistics, prior, reg_covar, max_iter, tol, previous):
    """One CAVI run of full covariances in one compiled call
    (:func:`~bayesmix.inference.vb_loop.cavi_full`) from the start's statistics, as
    :func:`run_cavi` returns it; ``None`` when the careful route must run instead (a
    covariance not positive definite to rounding, non-finite statistics)."""
    code = vb_loop.DIRICHLET if prior.weight_prior == "dirichlet_distribution" else vb_loop.STICKS
    *fitted, trace, status = vb_loop.cavi_full(
        read_only(X),
        read_only(weights),
        read_only(shift),
        *(read_only(value) for value in statistics),
        read_only(prior.mean),
        read_only(prior.covariance),
        float(prior.mean_precision),
        float(prior.degrees_of_freedom),
        code,
        float(prior.weight_concentration),
        float(prior.discount),
        float(reg_covar),
        int(max_iter),
        float(tol),
        -np.inf if previous is None else float(previous),
    )
    if status in (vb_loop.NOT_POSITIVE_DEFINITE, vb_loop.NOT_FINITE):
        return None
    concentration, beta, means, dof, cov, prec_chol = fitted
    if code == vb_loop.DIRICHLET:
        concentration = concentration[0].copy()
    params = VBParams(prior.weight_prior, concentration, beta, means, dof, cov, prec_chol)
    return params, trace.copy(), status == vb_loop.CONVERGED


def run_cavi(
    estep: Callable[[VBParams], tuple[tuple, float]],
    start: VBParams,
    prior: VBPrior,
    structure: CovarianceStructure,
    max_iter: int,
    tol: float,
    reg_covar: float,
    previous: float | None = None,
) -> tuple[VBParams, np.ndarray, bool | None]:
    """One CAVI run from ``start`` (shifted units), with any E-step.

    ``estep(params)`` returns the responsibilities' statistics under ``q`` (a tuple or
    :class:`~bayesmix.families.gaussian.stats.SufficientStats`: mass, ``sum r x``, the
    structure's ``sum r x x^T``, the log-sum-exp total and one more value) and the
    entropy of ``q(z)`` (:func:`estep_entropy`): one pass over the rows in memory, or over
    the chunks of a Dask array (:mod:`bayesmix.inference.vb_dask`). Each iteration is that
    E-step, :func:`cavi_m_step` and the lower bound (module docstring); the run stops when
    the bound changes by less than ``tol`` or after ``max_iter`` iterations.

    Returns
    -------
    params, trace, converged
        ``converged`` is ``None`` when a ``KeyboardInterrupt`` stopped the run after at
        least one iteration (raised before, or inside
        :func:`~bayesmix.inference.interrupt.nested_fits`).
    """
    params = start
    trace: list[float] = []
    lower = -np.inf if previous is None else previous
    converged: bool | None = False
    n_components = params.means.shape[0]
    try:
        for _ in range(max_iter):
            prev = lower
            stats, entropy = estep(params)
            mass, sum_x, sum_xx = stats[0], stats[1], stats[2]
            if not (np.isfinite(stats[3]) and np.isfinite(sum_xx).all()):
                raise ValueError(
                    "the variational E-step gave non-finite statistics: the data contain "
                    "NaN or infinite values, or a component's precision overflowed; check X "
                    "and consider a larger reg_covar."
                )
            params = cavi_m_step(mass, sum_x, sum_xx, prior, structure, reg_covar)
            lower = _lower_bound(entropy, params, structure, n_components)
            trace.append(lower)
            if abs(lower - prev) < tol:
                converged = True
                break
    except INTERRUPTS as error:  # Ctrl-C: the run so far (converged None), if it iterated
        if not (is_interrupt(error) and keeps_partial_work() and trace):
            raise
        converged = None
    return params, np.array(trace), converged


def fit_vb(
    X: np.ndarray,
    n_components: int,
    covariance_type: str | CovarianceStructure = "full",
    prior: VBPrior | None = None,
    *,
    sample_weight: np.ndarray | None = None,
    init: str | np.ndarray | Callable[[int], np.ndarray] | VBParams = "auto",
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
    init : str, numpy.ndarray, callable or VBParams, default "auto"
        ``"auto"``: the first run from k-means (:func:`~bayesmix.inference.em.init.kmeans`),
        the others from k-means++ seeds; or a method of
        :data:`bayesmix.inference.em.init.INIT_METHODS` for the initial
        responsibilities, an ``(n_obs, K)`` array of them (every run starts there), a
        function ``init(run)`` returning them for each run, or variational parameters to
        continue from (a warm start; one run).
    n_init : int, default 1
        Runs from different initial responsibilities; the one with the highest final
        lower bound is kept. A start equal to an earlier one (the same responsibilities,
        as k-means often finds from different seeds) is not run again: the run is
        deterministic given its start (``result.n_repeated_starts`` counts them).
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
    # the default prior of full and tied covariances from the first start's statistics
    # (their sum over the components is the data's scatter): no pass over the data
    matrices = not (structure.axis_aligned or structure.couples_components)  # full, tied
    from_start = prior is None and matrices and isinstance(init, str)
    if prior is None and not from_start:
        prior = default_prior(X, n_components, structure, sample_weight=sample_weight)
    shift = weights @ X.astype(np.float64, copy=False) / weights.sum()
    shifted_prior = None if from_start else prior.shifted(shift)
    rng = check_random_state(random_state)
    best, seen, n_repeated = None, set(), 0
    runs = 1 if isinstance(init, VBParams) else n_init
    X64 = X.astype(np.float64, copy=False)
    # small in-memory data: the whole run in one compiled call (vb_loop)
    compiled_loop = (
        matrices
        and not structure.shared_across_components
        and X.dtype == np.float64
        and max_iter > 0
        and n_obs * n_components * n_features**2 <= _COMPILED_LOOP_SIZE
    )
    try:
        for run in range(runs):
            ran = None
            if isinstance(init, VBParams):
                start = init.shifted(shift)
            else:
                if callable(init):
                    resp = np.asarray(init(run), dtype=np.float64)
                elif isinstance(init, np.ndarray):
                    resp = np.asarray(init, dtype=np.float64)
                elif isinstance(init, str) and init in VB_INIT_METHODS:
                    method = init if init != "auto" else "kmeans" if run == 0 else "kmeans++"
                    resp = _start_responsibilities(method, X64, weights, n_components, rng)
                else:
                    raise ValueError(
                        f"init must be one of {list(VB_INIT_METHODS)}, an (n_obs, n_components) "
                        f"array of responsibilities, a function of the run returning one, or "
                        f"VBParams; got {init!r}."
                    )
                if resp.shape != (n_obs, n_components):
                    raise ValueError(
                        f"init responsibilities must have shape {(n_obs, n_components)}; "
                        f"got {resp.shape}."
                    )
                digest_needed = not callable(init) and runs > 1
                # a hard start's labels: for the digest, and the axis-aligned statistics
                labels = _hard_labels(resp) if digest_needed or structure.axis_aligned else None
                if digest_needed:  # a start seen before ends where it ended
                    digest = _start_digest(resp, labels)
                    if digest in seen:
                        n_repeated += 1
                        continue
                    seen.add(digest)
                mass, sum_x, sum_xx = _statistics(X64, weights, shift, resp, structure, labels)
                if shifted_prior is None:
                    prior = _data_prior(sum_xx, shift, n_components, float(weights.sum()))
                    shifted_prior = prior.shifted(shift)
                if compiled_loop:
                    ran = _compiled_run(
                        X64, weights, shift, (mass, sum_x, sum_xx), shifted_prior, reg_covar,
                        max_iter, tol, previous_lower_bound,
                    )  # fmt: skip
                if ran is None:
                    start = cavi_m_step(mass, sum_x, sum_xx, shifted_prior, structure, reg_covar)
            if ran is not None:
                params, trace, converged = ran
            elif max_iter == 0:
                params, trace, converged = start, np.array([]), False
            else:
                params, trace, converged = run_cavi(
                    partial(_e_step, X, weights, shift, structure=structure),
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
                bool(converged),
                len(trace),
                float(weights.sum()),
            )
            if callback is not None:
                callback(run, result)
            if best is None or lower > best.lower_bound:
                best = result
            if converged is None:  # interrupted: no more runs
                best = replace(best, converged=False, interrupted=True)
                break
    except INTERRUPTS as error:  # Ctrl-C while a later run started: the best so far
        if not (is_interrupt(error) and keeps_partial_work() and best is not None):
            raise
        best = replace(best, converged=False, interrupted=True)
    best = replace(best, n_repeated_starts=n_repeated)
    if warn and max_iter > 0 and not best.converged and not best.interrupted:
        warnings.warn(
            f"variational Bayes did not converge in max_iter={max_iter} iterations (last "
            f"change of the lower bound above tol={tol}); increase max_iter or tol.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return best


# -- the common result interface (GaussianMixture.fit(method="vb")) -------------------


def interface_prior(
    model: GaussianMixture,
    data: Data,
    resolved: ResolvedPriors,
    weight_prior: str,
    discount: float = 0.0,
) -> VBPrior:
    """The Normal-Wishart prior of ``fit(method="vb")``, read from the declaration.

    The conjugate family of closed-form VB (module docstring) cannot take bayesmix's
    independent Normal and inverse-Wishart priors as they are; it takes their data-scaled
    values (:meth:`bayesmix.GaussianMixture.resolve_priors`, the values MAP-EM, Gibbs,
    NUTS and ADVI use) as follows:

    * weights: ``weight_prior="dirichlet"``: the symmetric Dirichlet with the
      declaration's ``weight_concentration`` (default 4; :func:`bayesmix.overfitted_mixture`
      sets a sparse 0.02); ``"dirichlet_process"``: sticks ``Beta(1, alpha)`` with
      ``alpha`` the declaration's ``weight_concentration`` when it is set to another
      value than the Dirichlet's default 4, else
      :data:`~bayesmix.inference.vb_weights.DP_CONCENTRATION` (1). The Dirichlet process
      expects few clusters, so its default covariance prior is scaled
      for one cluster spanning the data (``covariance_clusters=1``, as
      :func:`bayesmix.overfitted_mixture`) unless the declaration sets
      ``covariance_clusters`` (:func:`vb_priors`); ``"pitman_yor"``: sticks
      ``Beta(1 - discount, alpha + k discount)``, ``alpha`` and the covariance prior as
      the Dirichlet process';
    * ``Lambda_k ~ Wishart(nu, inv(covariance_scale))``, i.e. an inverse-Wishart on the
      covariance with bayesmix's ``covariance_scale``; ``nu`` is ``priors.covariance_dof``
      when given, else ``D + 2`` (for every structure: the weakest whose prior mean
      covariance ``covariance_scale / (nu - D - 1)`` is finite, equal to bayesmix's
      default prior mean covariance);
    * ``mu_k | Lambda_k ~ N(mean_loc, (beta Lambda_k)^-1)`` with ``beta`` chosen so
      that, at the prior mean covariance, the means' prior standard deviations are
      bayesmix's ``mean_scale`` (default 2.5 data standard deviations; averaged over
      features: ``beta = mean_d(prior variance_d / mean_scale_d^2)``).

    Raises
    ------
    ValueError
        An asymmetric ``weight_concentration``, ``covariance_dof <= D - 1``, or a bad
        ``discount`` (:func:`~bayesmix.inference.vb_weights.check_stick_prior`).
    """
    n_features = data.n_features
    internal = INTERFACE_WEIGHT_PRIORS[weight_prior]
    alpha = interface_concentration(
        internal, resolved.weight_concentration, model.priors is not None
    )
    if internal in STICK_PRIORS:
        alpha, discount = check_stick_prior(internal, alpha, discount)
    explicit_dof = model.priors is not None and model.priors.covariance_dof is not None
    dof = float(resolved.covariance_dof) if explicit_dof else n_features + 2.0
    if not dof > n_features - 1:
        raise ValueError(
            f"method='vb' needs priors.covariance_dof > n_features - 1 = {n_features - 1} "
            f"(a Wishart prior on the precisions); got {dof:g}."
        )
    scale = np.asarray(resolved.covariance_scale, dtype=float)
    diagonal = np.diagonal(scale) if scale.ndim == 2 else np.broadcast_to(scale, (n_features,))
    prior_variances = diagonal / max(dof - n_features - 1.0, 1.0)
    mean_precision = float(np.mean(prior_variances / np.asarray(resolved.mean_scale) ** 2))
    prior = default_prior(
        data.values,
        model.n_components,
        model.structure,
        "dirichlet_process" if internal == "pitman_yor" else internal,
        weight_concentration=alpha,
        mean_precision=mean_precision,
        mean=np.asarray(resolved.mean_loc, dtype=float),
        degrees_of_freedom=dof,
        covariance=scale,
    )
    if internal == "pitman_yor":
        prior = replace(prior, weight_prior=internal, discount=discount)
    return prior


def vb_priors(model: GaussianMixture, data: Data, weight_prior: str) -> ResolvedPriors:
    """The declaration's resolved priors that :func:`interface_prior` reads: those of
    :meth:`~bayesmix.GaussianMixture.resolve_priors`, but for the Dirichlet and
    Pitman-Yor processes with ``covariance_clusters=1`` unless the declaration sets it."""
    priors = model.priors
    if weight_prior in STICK_PRIORS and (priors is None or priors.covariance_clusters is None):
        from bayesmix.priors import Priors

        priors = replace(Priors() if priors is None else priors, covariance_clusters=1.0)
        model = replace(model, priors=priors)
    return model.resolve_priors(data)


def _wishart_cholesky(
    dof: np.ndarray, factor: np.ndarray, size: int, rng: np.random.Generator
) -> np.ndarray:
    """Upper-triangular ``R`` with ``R R^T ~ Wishart(dof_k, factor_k factor_k^T)``, ``size``
    draws for each of the upper-triangular ``factor`` ``(K, D, D)``: ``(size, K, D, D)``.

    Bartlett decomposition with the features in reverse order: ``B`` upper triangular,
    ``B_ii^2 ~ chi2(dof - D + 1 + i)``, standard normals above the diagonal, gives ``B B^T
    ~ Wishart(dof, I)`` (``P A P`` of the usual lower factor ``A``, ``P`` the reversal);
    ``R = factor B`` is upper triangular as a product of two."""
    n_components, n_features, _ = factor.shape
    bartlett = np.zeros((size, n_components, n_features, n_features))
    diagonal = np.arange(n_features)
    degrees = np.asarray(dof, dtype=float)[:, None] - (n_features - 1) + diagonal  # (K, D)
    bartlett[..., diagonal, diagonal] = np.sqrt(
        rng.chisquare(degrees, size=(size, n_components, n_features))
    )
    upper = np.triu_indices(n_features, 1)
    bartlett[..., upper[0], upper[1]] = rng.standard_normal((size, n_components, upper[0].size))
    return factor @ bartlett


def sample_q(
    params: VBParams, structure: CovarianceStructure, n_draws: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Draws of ``(weights, means, covariances)`` from the variational posterior ``q``.

    Weights: Dirichlet(``weight_concentration``), or stick-breaking ``pi_k = v_k
    prod_{j<k} (1 - v_j)`` with ``v_k ~ Beta(a_k, b_k)``, renormalised over the K
    sticks of the truncation (as :attr:`VBParams.weights`). Precisions: full,
    ``Lambda_k ~ Wishart(nu_k, W_k)`` with ``nu_k W_k = inv(covariances_k)``; tied, one
    such Wishart shared by every component; diag, ``lambda_kd ~ Gamma(nu_k / 2, rate
    nu_k sigma2_kd / 2)``; spherical, ``lambda_k ~ Gamma(D nu_k / 2, rate D nu_k
    sigma2_k / 2)`` (the Gamma posteriors scikit-learn's diag and spherical updates
    are; in every case ``E[Lambda] = inv(covariances)``). Means: ``mu_k | Lambda_k ~
    N(m_k, (beta_k Lambda_k)^-1)``.

    Full and tied precisions are drawn as their upper Cholesky-type factor ``R``
    (``Lambda = R R^T``, :func:`_wishart_cholesky`, all draws and components at once);
    ``M = R^-T`` (one batched triangular inversion) is the lower Cholesky factor of the
    covariance ``Sigma = M M^T``, and ``mu = m + M z / sqrt(beta)``: no general inverse
    and no further factorisation.

    Returns
    -------
    weights : (n_draws, K); means : (n_draws, K, D); covariances : (n_draws, K, D, D)
    """
    n_components, n_features = params.means.shape
    weights = sample_weights(params.weight_prior, params.weight_concentration, n_draws, rng)
    dof = np.asarray(params.degrees_of_freedom, dtype=float)
    if not structure.axis_aligned:
        prec_chol = np.asarray(params.precisions_cholesky, dtype=float)
        if structure.shared_across_components:  # tied: one Wishart for every component
            factor = (prec_chol / np.sqrt(dof))[None]
            dof_k = dof.reshape(1)
        else:
            factor = prec_chol / np.sqrt(dof)[:, None, None]
            dof_k = dof
        root = _wishart_cholesky(dof_k, factor, n_draws, rng)
        # R^-T = inverse of the lower-triangular R^T
        cov_chol = kernels.lower_triangular_inverse(np.swapaxes(root, -1, -2))
        covariances = cov_chol @ np.swapaxes(cov_chol, -1, -2)
        covariances = 0.5 * (covariances + np.swapaxes(covariances, -1, -2))
        if structure.shared_across_components:
            covariances = np.broadcast_to(
                covariances, (n_draws, n_components, n_features, n_features)
            ).copy()
            cov_chol = np.broadcast_to(cov_chol, covariances.shape)
    else:
        # diag: one Gamma per feature; spherical: one per component, pooling D features
        pooled = _pooled_count(structure, n_components, n_features)
        variances = np.asarray(params.covariances, dtype=float).reshape(n_components, -1)
        shape = np.broadcast_to(0.5 * pooled * dof[:, None], variances.shape)
        precisions = rng.gamma(shape, 1.0 / (shape * variances), size=(n_draws,) + shape.shape)
        drawn = np.broadcast_to(1.0 / precisions, (n_draws, n_components, n_features))
        diagonal = np.arange(n_features)
        covariances = np.zeros((n_draws, n_components, n_features, n_features))
        covariances[:, :, diagonal, diagonal] = drawn
        cov_chol = np.zeros_like(covariances)
        cov_chol[:, :, diagonal, diagonal] = np.sqrt(drawn)
    noise = rng.standard_normal((n_draws, n_components, n_features, 1))
    scale = 1.0 / np.sqrt(np.asarray(params.mean_precision, dtype=float))
    means = params.means[None] + scale[None, :, None] * (cov_chol @ noise)[..., 0]
    return weights, means, covariances


def resolve_seed(random_state: Any) -> int:
    """One integer seed from ``random_state`` (an int is used as it is)."""
    if isinstance(random_state, (int, np.integer)) and not isinstance(random_state, bool):
        check_random_state(random_state)  # validates the sign
        return int(random_state)
    return int(check_random_state(random_state).integers(2**31 - 1))


def fit_vb_result(
    model: GaussianMixture,
    data: Data,
    *,
    weight_prior: str = "dirichlet",
    discount: float = 0.0,
    n_init: int = 5,
    init: Any = "auto",
    max_iter: int = 1000,
    tol: float = 1e-6,
    reg_covar: float = 1e-6,
    draws: int = 1000,
    order_by: Any = None,
    random_state: Any = None,
) -> BayesResult:
    """``model.fit(data, method="vb")``: CAVI (:func:`fit_vb`) under :func:`interface_prior`,
    then ``draws`` draws from ``q`` (:func:`sample_q`) as a one-chain
    :class:`~bayesmix.results.posterior.BayesResult`.

    Components are numbered by :mod:`bayesmix.ordering`'s rule applied to ``q``'s means
    (``order_by`` or the best-separated feature of ``q``'s expected parameters).
    ``result.elbo`` is the ELBO after every iteration of the kept run (exact for full
    covariances; for the others scikit-learn's bound plus the same constant,
    :func:`elbo_offset`), never decreasing; ``settings`` records ``method="vb"``,
    ``converged``, ``n_iter``, the options and the prior (``vb_prior``; ``discount``
    under ``weight_prior="pitman_yor"``). ``discount``: the Pitman-Yor prior's
    (:func:`~bayesmix.inference.vb_weights.check_discount`).
    """
    import time

    from bayesmix.ordering import resolve_order_by

    start_time = time.perf_counter()
    structure = model.structure
    discount = check_vb_model(model, weight_prior, discount)
    n_init = check_int(n_init, "n_init")
    max_iter = check_int(max_iter, "max_iter")
    tol = check_float(tol, "tol", inclusive=False)
    reg_covar = check_float(reg_covar, "reg_covar")
    draws = check_int(draws, "draws")
    if isinstance(init, str):
        check_choice(init, "init", VB_INIT_METHODS)
    elif not isinstance(init, np.ndarray):
        raise TypeError(
            f"init must be one of {list(VB_INIT_METHODS)} or an (n_obs, n_components) array of "
            f"responsibilities; got {type(init).__name__}."
        )
    feature = resolve_order_by(order_by, data.feature_names)  # before any work
    if data.has_missing:
        raise ValueError(
            "method='vb' needs complete data: X has missing values (NaN). Drop or impute "
            "the incomplete rows, or fit by em/map, gibbs, nuts or advi with "
            "missing='marginalize'."
        )
    seed = resolve_seed(random_state)
    rng = np.random.default_rng(seed)
    resolved = vb_priors(model, data, weight_prior)
    prior = interface_prior(model, data, resolved, weight_prior, discount)
    fit = fit_vb(
        data.values,
        model.n_components,
        structure,
        prior,
        init=init,
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        reg_covar=reg_covar,
        random_state=rng,
        warn=False,
    )
    warn_vb_unfinished(fit.interrupted, fit.converged, fit.n_iter, max_iter, tol)
    settings = dict(
        weight_prior=weight_prior,
        n_init=n_init,
        n_repeated_starts=fit.n_repeated_starts,
        init=init if isinstance(init, str) else "array",
        max_iter=max_iter,
        tol=tol,
        reg_covar=reg_covar,
        random_state=seed,
        seed=seed,
    )
    return vb_bayes_result(
        model,
        data,
        fit,
        resolved,
        draws=draws,
        feature=feature,
        rng=rng,
        settings=settings,
        start_time=start_time,
    )


def check_vb_model(model: GaussianMixture, weight_prior: str, discount: Any = 0.0) -> float:
    """Raise a ValueError unless closed-form VB fits ``model`` (covariance types
    :data:`VB_STRUCTURES`) with ``weight_prior`` and ``discount``; return the discount
    (:func:`~bayesmix.inference.vb_weights.check_discount`; a TypeError for a
    non-number)."""
    if model.covariance_type not in VB_STRUCTURES:
        raise ValueError(
            f"method='vb' supports covariance_type {list(VB_STRUCTURES)} (mclust's VVV, EEE, "
            f"VVI and VII); got {model.covariance_type!r}. Fit it with method='em' or 'map', "
            "or by gibbs/nuts/advi where supported."
        )
    check_choice(weight_prior, "weight_prior", tuple(INTERFACE_WEIGHT_PRIORS))
    return check_discount(weight_prior, discount)


def result_priors(resolved: ResolvedPriors, prior: VBPrior, n_components: int):
    """The priors a VB result records: ``resolved`` under the Dirichlet weight prior;
    under the Dirichlet and Pitman-Yor processes a
    :class:`~bayesmix.priors.StickBreakingPriors` with ``prior``'s ``alpha`` and
    ``discount``, its weight density the process truncated at K as NUTS and ADVI
    truncate it (``K - 1`` sticks and the remainder; ``q`` keeps K sticks,
    renormalised, as scikit-learn)."""
    if prior.weight_prior not in STICK_PRIORS:
        return resolved
    from bayesmix.priors import StickBreakingPriors

    sticks = truncated_stick_parameters(prior.weight_concentration, n_components, prior.discount)
    return StickBreakingPriors(**vars(resolved), weight_sticks=sticks)


def vb_bayes_result(
    model: GaussianMixture,
    data: Any,
    fit: VBResult,
    resolved: ResolvedPriors,
    *,
    draws: int,
    feature: int | None,
    rng: np.random.Generator,
    settings: dict,
    start_time: float,
) -> BayesResult:
    """The :class:`~bayesmix.results.posterior.BayesResult` of a VB fit: ``draws`` draws
    from ``q`` (:func:`sample_q`, with ``rng``) as one chain, components numbered by the
    order ``feature`` (default: the best-separated feature of ``q``'s expected
    parameters), ``elbo`` the kept run's lower-bound trace plus :func:`elbo_offset`.

    ``settings`` (the fit's options) gains ``method="vb"``, ``n_iter``, ``converged``,
    ``elbo``, ``draws``, ``order_feature``, ``vb_prior``, ``fit_seconds`` (since
    ``start_time``, a :func:`time.perf_counter` value) and ``interrupted`` when Ctrl-C
    stopped the fit. ``data`` is the training :class:`~bayesmix.data.Data`, or the
    :class:`~bayesmix.data.DaskData` of a fit on Dask input.
    """
    import time

    from bayesmix.ordering import best_separated_feature, order_posterior
    from bayesmix.results import parameters_dataset
    from bayesmix.results.posterior import BayesResult

    structure, prior, params = fit.structure, fit.prior, fit.params
    n_components, n_features = params.means.shape
    weights, means, covariances = sample_q(params, structure, draws, rng)
    posterior = parameters_dataset(
        weights[None], means[None], covariances[None], data.feature_names
    )
    if feature is None:
        full = np.broadcast_to(
            structure.to_full(params.covariances, n_components, n_features),
            (n_components, n_features, n_features),
        )
        feature = best_separated_feature(params.means, full)
    posterior = order_posterior(posterior, feature, params.means)
    offset = elbo_offset(prior, structure, n_components, fit.n_obs)
    settings = dict(
        method="vb",
        **settings,
        n_iter=fit.n_iter,
        converged=int(fit.converged),
        elbo=fit.lower_bound + offset,
        draws=draws,
        order_feature=data.feature_names[feature],
        **({"discount": prior.discount} if prior.weight_prior == "pitman_yor" else {}),
        vb_prior={
            "weight_prior": prior.weight_prior,
            "weight_concentration": prior.weight_concentration,
            **({"discount": prior.discount} if prior.weight_prior == "pitman_yor" else {}),
            "mean_precision": prior.mean_precision,
            "mean": prior.mean.tolist(),
            "degrees_of_freedom": prior.degrees_of_freedom,
            "covariance": np.asarray(prior.covariance).tolist(),
        },
        fit_seconds=time.perf_counter() - start_time,
    )
    if fit.interrupted:
        settings["interrupted"] = True
    return BayesResult(
        model=model,
        posterior=posterior,
        data=data,
        priors=result_priors(resolved, prior, n_components),
        elbo=fit.lower_bound_trace + offset,
        settings=settings,
    )
