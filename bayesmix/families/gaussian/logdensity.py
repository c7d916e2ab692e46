"""The marginalised mixture's log posterior density and its gradient, written by hand and
compiled by numba with an on-disk cache, for nutpie to sample without PyMC.

The density is that of :func:`bayesmix.families.gaussian.builder.build_pymc` on complete
data, in the same unconstrained coordinates (PyMC's simplex, ordered and log transforms, Jacobians
included), so it equals the PyMC model's ``logp`` to rounding. Compiling the PyMC model
for nutpie takes 20-30 s in every fresh process (numba cannot cache that graph); these
functions compile once per machine and load from the cache in a fraction of a second.

One pass over the rows computes the responsibilities and each component's weighted
count, centred first moment and centred scatter; every gradient follows from those
sufficient statistics in closed form.

Flat layout of the unconstrained vector ``theta``:

1. ``K - 1`` coordinates of the weights: under the Dirichlet prior PyMC's simplex
   coordinates, ``w = softmax([y, -sum(y)])``; under the truncated stick-breaking prior
   (``sticks`` given: ``weight_prior="dirichlet_process"`` or ``"pitman_yor"``) the
   logits ``u_k`` of the sticks ``v_k ~ Beta(a_k, b_k)``, ``w_k = v_k prod_{j<k} (1 -
   v_j)``, the K-th weight the remainder (PyMC's ``Beta`` with its log-odds transform).
   On the logit scale every stick's prior is a smooth log-concave density independent of
   the others, an empty component's stick has exponential tails instead of the Beta's
   pile-up at ``v -> 0``, and the likelihood's gradient is conjugate-like:
   ``(a_k + N_k) sigma(-u_k) - (b_k + N_{>k}) sigma(u_k)`` (shared with the other
   families: :mod:`bayesmix.families.sticks`);
2. the standardised means ``raw`` (``means = loc + scale * raw``): with an ordered
   coordinate ``j``, ``K`` ordered coordinates (``z[0, j] = o_0``, then increments
   ``exp(o_i)``) followed by the other coordinates of ``z`` ``(K, D - 1)`` row-major, and
   ``raw = z R^T`` with the orthogonal ``rotation`` ``R`` (the identity orders feature
   ``j``; a rotation whose column ``j`` is a direction orders the means' projections on
   it, :func:`bayesmix.ordering.direction_rotation`; log Jacobian 0, and the isotropic
   prior of ``raw`` is that of ``z``); without, ``raw`` ``(K, D)`` row-major;
3. the covariance parameters: for ``full`` (``tied``: one set) the logs of the Bartlett
   chi-squares ``(K, D)`` and then the below-diagonal normals ``(K, D (D - 1) / 2)`` in
   ``numpy.tril_indices(D, -1)`` order, the precision factor being ``F = L A``; for
   ``diag`` (``spherical``) the logs of the dimensionless variances ``(K, D)`` (``(K,)``),
   the variances being ``exp(u) * scale``; for the shared variances of ``EEI``
   (``EII``) the same ``(D,)`` (one value), repeated for every component.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np

from bayesmix.data import Data
from bayesmix.families import simplex, sticks
from bayesmix.families.gaussian.covariance import CovarianceStructure, get_structure
from bayesmix.families.simplex import (
    dirichlet_log_prior,
    log_weights,
    normalise_joint,
    weights_gradient,
)
from bayesmix.families.sticks import (
    flat_mixture_weights,
    stick_log_prior,
    stick_log_weights,
    stick_weights_gradient,
)
from bayesmix.jit import cached
from bayesmix.priors import ResolvedPriors

__all__ = [
    "KINDS",
    "Layout",
    "density_inputs",
    "flat_start",
    "log_density",
    "expand",
    "pack_inputs",
    "nutpie_logp",
    "nutpie_expand",
    "bartlett",
    "bartlett_log_prior",
    "factor_gradient",
    "inverse_gamma_log_prior",
    "precision_times",
    "variance_gradient",
    "variances",
    "whiten",
]

_FULL, _TIED, _DIAG, _SPHERICAL, _EII, _EEI = 0, 1, 2, 3, 4, 5
KINDS = {
    "full": _FULL,
    "tied": _TIED,
    "diag": _DIAG,
    "spherical": _SPHERICAL,
    "EII": _EII,
    "EEI": _EEI,
}
_LOG_2PI = math.log(2.0 * math.pi)


# compiled under a name carrying the digest of the modules whose compiled functions
# they call (bayesmix.jit.cached): numba keys a cached function by its own file only
_cached = cached(simplex, sticks, nogil=True, error_model="numpy")


@dataclass(frozen=True)
class Layout:
    """Sizes of the blocks of ``theta`` for one model graph."""

    covariance_type: str
    n_components: int
    n_features: int
    order_feature: int  # -1: exchangeable means

    @property
    def structure(self) -> CovarianceStructure:
        """The covariance structure whose parameters the covariance block holds."""
        return get_structure(self.covariance_type)

    @property
    def kind(self) -> int:
        return KINDS[self.covariance_type]

    @property
    def n_factors(self) -> int:
        """Precision factors (full: one per component; tied: one)."""
        return self.structure.n_covariances(self.n_components)

    @property
    def n_covariance(self) -> int:
        """Free covariance coordinates (Bartlett variables or log variances)."""
        return self.structure.n_parameters(self.n_components, self.n_features)

    @property
    def n_dim(self) -> int:
        K, D = self.n_components, self.n_features
        return K - 1 + K * D + self.n_covariance

    @property
    def precision_shape(self) -> tuple[int, ...]:
        """Shape of the precision parameter (factors or variances)."""
        return self.structure.natural_shape(self.n_components, self.n_features)

    @property
    def n_expanded(self) -> int:
        K, D = self.n_components, self.n_features
        return K + K * D + int(np.prod(self.precision_shape))


def density_inputs(
    data: Data,
    priors: ResolvedPriors,
    structure: CovarianceStructure,
    n_components: int,
    rotation: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """The arrays :func:`log_density` reads besides ``theta``: data and priors, each
    broadcast to one fixed rank so that one compiled function serves every model, and
    the ordered means' ``rotation`` (default: the identity, which orders one feature).
    ``sticks`` ``(2, K)``: the stick-breaking prior's Beta parameters
    (``StickBreakingPriors.weight_sticks``) in the first ``K - 1`` columns, zeros for
    the Dirichlet."""
    K, D = n_components, data.n_features
    scale = np.asarray(structure.pymc_scale(priors.covariance_scale), dtype=np.float64)
    # one fixed rank: matrices (D, D), variances one row per component ((K, D) or (K, 1))
    scale = np.broadcast_to(scale, _covariance_scale_shape(D, K, KINDS[structure.name]))
    return {
        "X": np.ascontiguousarray(data.values, dtype=np.float64),
        "concentration": np.ascontiguousarray(
            np.broadcast_to(priors.weight_concentration, (K,)), dtype=np.float64
        ),
        "mean_loc": np.ascontiguousarray(np.broadcast_to(priors.mean_loc, (K, D)), np.float64),
        "mean_scale": np.ascontiguousarray(
            np.broadcast_to(priors.mean_scale, (K, D)), dtype=np.float64
        ),
        "dof": np.array([priors.covariance_dof], dtype=np.float64),
        "covariance_scale": np.ascontiguousarray(scale, dtype=np.float64),
        "rotation": np.ascontiguousarray(np.eye(D) if rotation is None else rotation, np.float64),
        "sticks": _sticks_input(priors, K),
    }


def _sticks_input(priors: ResolvedPriors, K: int) -> np.ndarray:
    sticks = np.zeros((2, K))
    if getattr(priors, "weight_sticks", None) is not None:  # StickBreakingPriors
        sticks[:, : K - 1] = priors.weight_sticks
    return sticks


def flat_start(layout: Layout, start: dict[str, np.ndarray]) -> np.ndarray:
    """``theta`` of a start point given as constrained values of the PyMC model's free
    variables (:func:`bayesmix.families.gaussian.builder.point_estimate_start`)."""
    blocks = [flat_mixture_weights(start)]  # the sticks' logits or simplex coordinates
    if layout.order_feature < 0:
        blocks.append(np.ravel(start["means_raw"]))
    else:
        ordered = np.asarray(start["means_ordered_raw"], dtype=float)
        blocks += [ordered[:1], np.log(np.diff(ordered))]
        if layout.n_features > 1:
            blocks.append(np.ravel(start["means_rest_raw"]))
    if not layout.structure.axis_aligned:
        blocks.append(np.log(np.ravel(start["precision_factor_chi2"])))
        if layout.n_features > 1:
            blocks.append(np.ravel(start["precision_factor_normal"]))
    else:
        blocks.append(np.log(np.ravel(start["variances_raw"])))
    theta = np.concatenate(blocks).astype(np.float64)
    if theta.size != layout.n_dim:
        raise RuntimeError(f"start has {theta.size} coordinates, the layout {layout.n_dim}")
    return theta


# ---------------------------------------------------------------------------------------
# unconstrained -> model parameters (shared by the density and the expansion)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _raw_means(theta, pos, K, D, order_feature, rotation):
    """Standardised means ``(K, D)`` and the log Jacobian of the ordered transform."""
    z, log_jac = _ordered_coordinates(theta, pos, K, D, order_feature)
    if order_feature < 0:
        return z, log_jac
    return z @ rotation.T, log_jac


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _ordered_coordinates(theta, pos, K, D, order_feature):
    """``z`` ``(K, D)`` (column ``order_feature`` increasing) and its log Jacobian."""
    raw = np.empty((K, D))
    log_jac = 0.0
    if order_feature < 0:
        for k in range(K):
            for d in range(D):
                raw[k, d] = theta[pos + k * D + d]
        return raw, log_jac
    acc = theta[pos]
    raw[0, order_feature] = acc
    for k in range(1, K):
        acc += math.exp(theta[pos + k])
        raw[k, order_feature] = acc
        log_jac += theta[pos + k]
    pos += K
    for k in range(K):
        for d in range(D):
            if d != order_feature:
                raw[k, d] = theta[pos]
                pos += 1
    return raw, log_jac


@nb.njit(cache=True, nogil=True, error_model="numpy")
def bartlett(theta, pos, lower, n_factors, D):
    """Bartlett matrices ``A`` ``(F, D, D)`` and precision factors ``L A``."""
    A = np.zeros((n_factors, D, D))
    for f in range(n_factors):
        for d in range(D):
            A[f, d, d] = math.exp(0.5 * theta[pos + f * D + d])
    pos += n_factors * D
    for f in range(n_factors):
        for r in range(1, D):
            for c in range(r):
                A[f, r, c] = theta[pos]
                pos += 1
    factors = np.zeros((n_factors, D, D))
    for f in range(n_factors):
        for r in range(D):
            for c in range(r + 1):
                total = 0.0
                for m in range(c, r + 1):
                    total += lower[r, m] * A[f, m, c]
                factors[f, r, c] = total
    return A, factors


@nb.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _per_feature(kind):
    """One variance per feature (diag, EEI), not one for all features."""
    return kind == _DIAG or kind == _EEI


@nb.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _variance_index(kind, k, d, D):
    """Offset in the covariance block of the log raw variance of component ``k`` and
    feature ``d`` (shared variances: the same for every component)."""
    if kind == _DIAG:
        return k * D + d
    if kind == _SPHERICAL:
        return k
    if kind == _EEI:
        return d
    return 0


@nb.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _n_variances(kind, K, D):
    if kind == _DIAG:
        return K * D
    if kind == _SPHERICAL:
        return K
    if kind == _EEI:
        return D
    return 1


@nb.njit(cache=True, nogil=True, error_model="numpy")
def variances(theta, pos, scale, K, D, kind):
    """Variances ``(K, D)`` (spherical, EII: each row constant; EII, EEI: every row the
    same) from their log raw values."""
    var = np.empty((K, D))
    per_feature = _per_feature(kind)
    for k in range(K):
        for d in range(D):
            u = theta[pos + _variance_index(kind, k, d, D)]
            var[k, d] = math.exp(u) * scale[k, d if per_feature else 0]
    return var


# ---------------------------------------------------------------------------------------
# the density


def log_density(
    theta,
    X,
    concentration,
    mean_loc,
    mean_scale,
    dof,
    covariance_scale,
    kind,
    order_feature,
    grad,
    rotation=None,
    sticks=None,
):
    """Log posterior density at ``theta`` (see the module docstring for the layout);
    its gradient is written into ``grad``. Returns ``-inf`` outside the support.
    ``rotation`` (default: the identity) is that of the ordered means; ``sticks``
    (default: zeros, the Dirichlet) the stick-breaking prior's (:func:`density_inputs`)."""
    if rotation is None:
        rotation = np.eye(X.shape[1])
    if sticks is None:
        sticks = np.zeros((2, concentration.shape[0]))
    return _log_density(
        theta,
        X,
        concentration,
        mean_loc,
        mean_scale,
        dof,
        covariance_scale,
        np.ascontiguousarray(rotation, dtype=np.float64),
        np.ascontiguousarray(sticks, dtype=np.float64),
        kind,
        order_feature,
        grad,
    )


@_cached
def _log_density(
    theta,
    X,
    concentration,
    mean_loc,
    mean_scale,
    dof,
    covariance_scale,
    rotation,
    sticks,
    kind,
    order_feature,
    grad,
):
    D = X.shape[1]
    K = concentration.shape[0]
    tied, matrix = kind == _TIED, kind == _FULL or kind == _TIED
    grad[:] = 0.0
    stick_breaking = K > 1 and sticks[0, 0] > 0.0
    log_w = stick_log_weights(theta, K) if stick_breaking else log_weights(theta, K)
    raw, log_jac = _raw_means(theta, K - 1, K, D, order_feature, rotation)
    means = mean_loc + mean_scale * raw
    if stick_breaking:
        logp = stick_log_prior(theta, sticks, K) + log_jac
    else:
        logp = dirichlet_log_prior(log_w, concentration) + log_jac
    logp -= 0.5 * (np.sum(raw**2) + K * D * _LOG_2PI)
    pos = K - 1 + K * D  # the covariance parameters
    if matrix:
        n_factors = 1 if tied else K
        A, factors = bartlett(theta, pos, covariance_scale, n_factors, D)
        logp += bartlett_log_prior(theta, pos, n_factors, D, dof[0])
        var = np.empty((0, 0))
        precision = factors
        log_det = np.zeros(n_factors)  # log det F = sum log L_dd + u_d / 2
        for f in range(n_factors):
            for d in range(D):
                log_det[f] += math.log(covariance_scale[d, d]) + 0.5 * theta[pos + f * D + d]
    else:
        A = factors = np.empty((0, 0, 0))
        var = variances(theta, pos, covariance_scale, K, D, kind)
        logp += inverse_gamma_log_prior(theta[pos : pos + _n_variances(kind, K, D)], dof[0])
        precision = 1.0 / var.reshape((K, 1, D))
        log_det = np.zeros(K)  # log det of the precision / 2 = -sum (u + log scale) / 2
        per_feature = _per_feature(kind)
        for k in range(K):
            for d in range(D):
                u = theta[pos + _variance_index(kind, k, d, D)]
                log_det[k] -= 0.5 * (u + math.log(covariance_scale[k, d if per_feature else 0]))
    if not math.isfinite(logp):
        return -np.inf

    base = np.empty(K)  # log w_k + log det F_k
    for k in range(K):
        base[k] = log_w[k] + log_det[0 if tied else k]
    counts, first = np.zeros(K), np.zeros((K, D))
    scatter = np.zeros((K, D, D)) if matrix else np.zeros((K, 1, D))
    logp += _row_statistics(X, means, precision, base, matrix, tied, counts, first, scatter)
    if not math.isfinite(logp):
        return -np.inf

    if stick_breaking:
        stick_weights_gradient(theta, sticks, counts, grad)
    else:
        weights_gradient(log_w, concentration, counts, grad)
    g_means = precision_times(first, factors, var, matrix, tied)
    _raw_means_gradient(theta, K - 1, mean_scale * g_means - raw, order_feature, rotation, grad)
    if matrix:
        factor_gradient(
            theta, pos, A, factors, covariance_scale, counts, scatter, dof[0], kind, grad
        )
    else:
        variance_gradient(theta, pos, var, counts, scatter, dof[0], kind, grad)
    return logp


@nb.njit(cache=True, nogil=True, error_model="numpy")
def bartlett_log_prior(theta, pos, n_factors, D, dof):
    """Log densities of the Bartlett variables, log Jacobian included: ChiSquared(dof - d)
    of the diagonal ``exp(u)`` and standard normals below it."""
    logp = 0.0
    for f in range(n_factors):
        for d in range(D):
            nu = dof - d
            u = theta[pos + f * D + d]
            logp += 0.5 * nu * (u - math.log(2.0)) - 0.5 * math.exp(u) - math.lgamma(0.5 * nu)
    normals = theta[pos + n_factors * D : pos + n_factors * (D + D * (D - 1) // 2)]
    return logp - 0.5 * (np.sum(normals**2) + normals.size * _LOG_2PI)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def inverse_gamma_log_prior(log_raw, dof):
    """InverseGamma(dof / 2, 1 / 2) log densities of ``exp(log_raw)``, log Jacobian included."""
    shape = 0.5 * dof
    logp = log_raw.size * (shape * math.log(0.5) - math.lgamma(shape))
    for u in log_raw:
        logp -= shape * u + 0.5 * math.exp(-u)
    return logp


@nb.njit(cache=True, nogil=True, error_model="numpy")
def precision_times(first, factors, var, matrix, tied):
    """``Sigma_k^-1 first_k`` for every component: ``F (F^T first_k)`` or ``first / var``."""
    K, D = first.shape
    out = np.zeros((K, D))
    for k in range(K):
        if matrix:
            f = 0 if tied else k
            for c in range(D):
                white = whiten(factors[f], first[k], c)
                for r in range(c, D):
                    out[k, r] += factors[f, r, c] * white
        else:
            for d in range(D):
                out[k, d] = first[k, d] / var[k, d]
    return out


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _raw_means_gradient(theta, pos, g_raw, order_feature, rotation, grad):
    """Chain ``g_raw`` (the gradient in the standardised means) through the rotation
    and the ordered transform (log Jacobian included) into ``grad``."""
    K, D = g_raw.shape
    if order_feature < 0:
        for k in range(K):
            for d in range(D):
                grad[pos + k * D + d] = g_raw[k, d]
        return
    g_raw = g_raw @ rotation  # raw = z R^T
    tail = 0.0  # sum over the components from k on of the ordered column's gradient
    for k in range(K - 1, 0, -1):
        tail += g_raw[k, order_feature]
        grad[pos + k] = math.exp(theta[pos + k]) * tail + 1.0
    grad[pos] = tail + g_raw[0, order_feature]
    i = pos + K
    for k in range(K):
        for d in range(D):
            if d != order_feature:
                grad[i] = g_raw[k, d]
                i += 1


@nb.njit(cache=True, nogil=True, error_model="numpy")
def variance_gradient(theta, pos, var, counts, scatter, dof, kind, grad):
    """Gradient in the log raw variances: likelihood (centred scatter diagonals, summed
    over the components that share a variance) plus the inverse-gamma prior and its
    Jacobian."""
    K, D = var.shape
    for i in range(pos, pos + _n_variances(kind, K, D)):
        grad[i] = -0.5 * dof + 0.5 * math.exp(-theta[i])
    for k in range(K):
        if _per_feature(kind):
            for d in range(D):
                i = pos + _variance_index(kind, k, d, D)
                grad[i] += 0.5 * scatter[k, 0, d] / var[k, d] - 0.5 * counts[k]
        else:
            i = pos + _variance_index(kind, k, 0, D)
            grad[i] += 0.5 * scatter[k, 0].sum() / var[k, 0] - 0.5 * D * counts[k]


@_cached
def _row_statistics(X, means, precision, base, matrix, tied, counts, first, scatter):
    """Sum over rows of log sum_k w_k N(x | mu_k, Sigma_k); adds each component's
    responsibility total, centred first moment and centred scatter (lower triangle; the
    diagonal only, in ``scatter[:, 0]``, when not ``matrix``) to the accumulators.
    ``precision`` holds the precision factors F (``matrix``) or the inverse variances
    ``(K, 1, D)``."""
    n, D = X.shape
    K = means.shape[0]
    joint = np.empty(K)
    centred = np.empty((K, D))
    total_logp = 0.0
    for i in range(n):
        for k in range(K):
            for d in range(D):
                centred[k, d] = X[i, d] - means[k, d]
            quad = 0.0
            if matrix:
                f = 0 if tied else k
                for c in range(D):
                    white = whiten(precision[f], centred[k], c)
                    quad += white * white
            else:
                for d in range(D):
                    quad += centred[k, d] * centred[k, d] * precision[k, 0, d]
            joint[k] = base[k] - 0.5 * quad
        total_logp += normalise_joint(joint, 1.0)
        for k in range(K):
            r = joint[k]
            counts[k] += r
            for a in range(D):
                weighted = r * centred[k, a]
                first[k, a] += weighted
                if matrix:
                    for b in range(a + 1):
                        scatter[k, a, b] += weighted * centred[k, b]
                else:
                    scatter[k, 0, a] += weighted * centred[k, a]
    return total_logp - 0.5 * n * D * _LOG_2PI


@nb.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def whiten(factor, vector, c):
    """``(F^T v)_c`` for a lower-triangular ``F``."""
    total = 0.0
    for r in range(c, vector.shape[0]):
        total += factor[r, c] * vector[r]
    return total


@nb.njit(cache=True, nogil=True, error_model="numpy")
def factor_gradient(theta, pos, A, factors, lower, counts, scatter, dof, kind, grad):
    """Gradient in the Bartlett coordinates: with ``G = -C F + N diag(1 / F_dd)`` the
    gradient in ``F`` (``C`` the centred scatter, lower triangle stored), the gradient in
    ``A`` is the lower triangle of ``L^T G``."""
    n_factors, D = factors.shape[0], factors.shape[1]
    n_tri = D * (D - 1) // 2
    for f in range(n_factors):
        G = np.zeros((D, D))  # lower triangle: all that L^T G reads below
        for k in range(counts.shape[0]) if kind == _TIED else range(f, f + 1):
            for a in range(D):
                for c in range(a + 1):
                    total = 0.0
                    for b in range(c, D):  # F is lower triangular
                        s = scatter[k, a, b] if b <= a else scatter[k, b, a]
                        total += s * factors[f, b, c]
                    G[a, c] -= total
                G[a, a] += counts[k] / factors[f, a, a]
        i = pos + n_factors * D + f * n_tri
        for r in range(D):
            for c in range(r + 1):
                g_a = 0.0
                for m in range(r, D):  # L lower, G lower: m >= r >= c
                    g_a += lower[m, r] * G[m, c]
                if r == c:
                    u = theta[pos + f * D + r]
                    nu = dof - r
                    grad[pos + f * D + r] = 0.5 * A[f, r, r] * g_a + 0.5 * nu - 0.5 * math.exp(u)
                else:
                    grad[i] = g_a - theta[i]
                    i += 1


def expand(
    theta,
    mean_loc,
    mean_scale,
    covariance_scale,
    kind,
    order_feature,
    out,
    rotation=None,
    sticks=None,
):
    """Weights, means and the precision parameter at ``theta``, flattened into ``out``;
    ``rotation`` (default: the identity) is that of the ordered means, ``sticks``
    (default: zeros, the Dirichlet's simplex coordinates) the stick-breaking prior's."""
    if rotation is None:
        rotation = np.eye(mean_loc.shape[1])
    if sticks is None:
        sticks = np.zeros((2, mean_loc.shape[0]))
    rotation = np.ascontiguousarray(rotation, dtype=np.float64)
    sticks = np.ascontiguousarray(sticks, dtype=np.float64)
    _expand(
        theta, mean_loc, mean_scale, covariance_scale, rotation, sticks, kind, order_feature, out
    )


@_cached
def _expand(
    theta, mean_loc, mean_scale, covariance_scale, rotation, sticks, kind, order_feature, out
):
    K, D = mean_loc.shape
    if K > 1 and sticks[0, 0] > 0.0:
        log_w = stick_log_weights(theta, K)
    else:
        log_w = log_weights(theta, K)
    for k in range(K):
        out[k] = math.exp(log_w[k])
    pos = K - 1
    raw, _ = _raw_means(theta, pos, K, D, order_feature, rotation)
    for k in range(K):
        for d in range(D):
            out[K + k * D + d] = mean_loc[k, d] + mean_scale[k, d] * raw[k, d]
    pos += K * D
    i = K + K * D
    if kind == _FULL or kind == _TIED:
        n_factors = 1 if kind == _TIED else K
        _, factors = bartlett(theta, pos, covariance_scale, n_factors, D)
        for f in range(n_factors):
            for r in range(D):
                for c in range(D):
                    out[i] = factors[f, r, c]
                    i += 1
    else:
        var = variances(theta, pos, covariance_scale, K, D, kind)
        shared = kind == _EII or kind == _EEI
        for k in range(1 if shared else K):
            for d in range(D if _per_feature(kind) else 1):
                out[i] = var[k, d]
                i += 1


# ---------------------------------------------------------------------------------------
# C callbacks for nutpie: it calls them from its sampler threads without the GIL, passing
# the address of one float64 buffer (:func:`pack_inputs`) holding the sizes, data and priors

# header of the buffer: its first _HEADER values, at these positions
_N_OBS, _N_FEATURES, _N_COMPONENTS, _KIND, _ORDER_FEATURE, _DOF, _HEADER = range(7)


def pack_inputs(layout: Layout, inputs: dict[str, np.ndarray]) -> np.ndarray:
    """One read-only float64 buffer with the sizes, the model's kind and the arrays of
    :func:`density_inputs`, read back by the C callbacks."""
    n = inputs["X"].shape[0]
    header = np.zeros(_HEADER)
    header[[_N_OBS, _N_FEATURES, _N_COMPONENTS, _KIND, _ORDER_FEATURE, _DOF]] = (
        n,
        layout.n_features,
        layout.n_components,
        layout.kind,
        layout.order_feature,
        inputs["dof"][0],
    )
    parts = [header]
    D = layout.n_features
    rotation = inputs.get("rotation", np.eye(D))
    for name in ("X", "concentration", "mean_loc", "mean_scale"):
        parts.append(np.ravel(inputs[name]))
    parts.append(np.ravel(inputs.get("sticks", np.zeros((2, layout.n_components)))))
    parts += [np.ravel(rotation), np.ravel(inputs["covariance_scale"])]
    buffer = np.concatenate(parts)
    expected = _buffer_size(n, layout.n_features, layout.n_components, layout.kind)
    if buffer.size != expected:
        raise RuntimeError(f"packed {buffer.size} values where the callbacks read {expected}")
    buffer.flags.writeable = False
    return buffer


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _covariance_scale_shape(D, K, kind):
    if kind == _FULL or kind == _TIED:
        return (D, D)
    return (K, D if kind == _DIAG or kind == _EEI else 1)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _buffer_size(n, D, K, kind):
    rows, cols = _covariance_scale_shape(D, K, kind)
    return _HEADER + n * D + K + 2 * K * D + 2 * K + D * D + rows * cols


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _unpack(address):
    """The packed buffer's arrays and sizes, in :func:`_log_density`'s argument order."""
    header = nb.carray(address, (_HEADER,), np.float64)
    n, D = int(header[_N_OBS]), int(header[_N_FEATURES])
    K, kind = int(header[_N_COMPONENTS]), int(header[_KIND])
    buffer = nb.carray(address, (_buffer_size(n, D, K, kind),), np.float64)
    pos = _HEADER
    X = buffer[pos : pos + n * D].reshape((n, D))
    pos += n * D
    concentration = buffer[pos : pos + K]
    pos += K
    mean_loc = buffer[pos : pos + K * D].reshape((K, D))
    pos += K * D
    mean_scale = buffer[pos : pos + K * D].reshape((K, D))
    pos += K * D
    sticks = buffer[pos : pos + 2 * K].reshape((2, K))
    pos += 2 * K
    rotation = buffer[pos : pos + D * D].reshape((D, D))
    pos += D * D
    covariance_scale = buffer[pos:].reshape(_covariance_scale_shape(D, K, kind))
    dof = buffer[_DOF : _DOF + 1]
    order = int(header[_ORDER_FEATURE])
    arrays = (X, concentration, mean_loc, mean_scale, dof, covariance_scale, rotation, sticks)
    return arrays + (kind, order)


_double_pointer = nb.types.CPointer(nb.types.double)


@cached(
    simplex,
    sticks,
    signature=nb.types.int64(
        nb.types.uint64, _double_pointer, _double_pointer, _double_pointer, nb.types.voidptr
    ),
    error_model="numpy",
)
def nutpie_logp(n_dim, x_address, grad_address, logp_address, inputs_address):
    """nutpie's log density callback: 0 on success; a positive code (4: density not finite,
    3: gradient not finite, 1: an error) makes nutpie reject the step as a divergence."""
    try:
        x = nb.carray(x_address, (n_dim,))
        grad = nb.carray(grad_address, (n_dim,))
        logp = nb.carray(logp_address, (1,))
        # _unpack returns _log_density's inputs between theta and grad, in its order
        logp[0] = _log_density(*((x,) + _unpack(inputs_address) + (grad,)))
        if not math.isfinite(logp[0]):
            return 4
        for i in range(n_dim):
            if not math.isfinite(grad[i]):
                return 3
    except Exception:  # noqa: BLE001 - an exception cannot cross into nutpie's threads
        return 1
    return 0


@cached(
    simplex,
    sticks,
    signature=nb.types.int64(
        nb.types.uint64, nb.types.uint64, _double_pointer, _double_pointer, nb.types.voidptr
    ),
    error_model="numpy",
)
def nutpie_expand(n_dim, n_expanded, x_address, out_address, inputs_address):
    """nutpie's callback storing weights, means and the precision parameter of a draw;
    0 on success, 1 on an error."""
    try:
        _, _, mean_loc, mean_scale, _, covariance_scale, rotation, sticks, kind, order = _unpack(
            inputs_address
        )
        x = nb.carray(x_address, (n_dim,))
        out = nb.carray(out_address, (n_expanded,))
        _expand(x, mean_loc, mean_scale, covariance_scale, rotation, sticks, kind, order, out)
    except Exception:  # noqa: BLE001 - an exception cannot cross into nutpie's threads
        return 1
    return 0
