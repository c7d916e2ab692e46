"""The marginalised Student-t mixture's log posterior density and its gradient, written
by hand and compiled by numba with an on-disk cache, for nutpie to sample without PyMC.

The density is that of :func:`bayesmix.inference.bayes.family.build_family_pymc` for
:class:`bayesmix.families.StudentT` on complete data, in the same unconstrained
coordinates (PyMC's simplex and log transforms, Jacobians included), so it equals the
PyMC model's ``logp`` to rounding; compiling that model costs seconds in every fresh
process, these functions load from numba's cache.

Flat layout of the unconstrained vector ``theta`` (the free variables of
:meth:`~bayesmix.families.StudentT.pymc_parameters`, in the PyMC model's order):

1. ``K - 1`` simplex coordinates of the weights (:mod:`bayesmix.families.simplex`), or
   under a stick-breaking prior the sticks' logits (:mod:`bayesmix.families.sticks`);
2. the means ``(K, D)`` row-major, untransformed;
3. ``full``: the logs of the Bartlett chi-squares ``scales_chi2`` ``(K, D)``, then the
   below-diagonal normals ``scales_normal`` ``(K, D (D - 1) / 2)`` in
   ``numpy.tril_indices(D, -1)`` order; the precision factor is ``F = C A`` with
   ``C = chol(scale_scale^-1)``. ``diag``: the logs of the variances ``scales`` ``(K, D)``;
4. when the degrees of freedom are estimated, their logs ``(K,)``.

One pass over the rows computes the responsibilities ``r_nk``, the t weights
``u_nk = (nu_k + D) / (nu_k + delta_nk)`` and ``L_nk = log(1 + delta_nk / nu_k)``, and
per component the sums ``sum r``, ``sum r u``, ``sum r L``, the first moment
``sum r u (x - mu)`` and the scatter ``sum r u (x - mu)(x - mu)^T``. The gradients in the
means and the scale parameters are then the Gaussian ones
(:mod:`bayesmix.families.gaussian.logdensity`) with the moments weighted by ``r u`` and
the log-determinant's count ``sum r``; the gradient in ``nu_k`` is
``(sum r (psi((nu + D) / 2) - psi(nu / 2) + 1) - sum r L - sum r u) / 2``.

The diagonal scales' prior ``InverseGamma(scale_dof / 2, scale_scale / 2)`` of a
variance ``v`` is the Gaussian family's ``InverseGamma(scale_dof / 2, 1 / 2)`` of the
dimensionless ``v / scale_scale``, whose log coordinate is ``log v - log scale_scale``
(a shift: no Jacobian), so the Gaussian functions serve on shifted coordinates.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np

from bayesmix.families import count_logdensity, simplex, sticks
from bayesmix.families.count_logdensity import digamma, gamma_log_prior
from bayesmix.families.gaussian import logdensity as gaussian_logdensity
from bayesmix.families.gaussian.logdensity import (
    KINDS,
    bartlett,
    bartlett_log_prior,
    factor_gradient,
    inverse_gamma_log_prior,
    precision_times,
    variance_gradient,
    variances,
    whiten,
)
from bayesmix.families.simplex import normalise_joint
from bayesmix.families.sticks import (
    flat_mixture_weights,
    mixture_log_weights,
    mixture_weights_gradient,
    weight_log_prior,
    weight_prior_inputs,
)
from bayesmix.jit import cached

__all__ = [
    "StudentTDensity",
    "student_t_density",
    "normal_log_prior",
    "nutpie_logp",
    "nutpie_expand",
]

_FULL, _DIAG = KINDS["full"], KINDS["diag"]
_LOG_PI = math.log(math.pi)
_LOG_2PI = math.log(2.0 * math.pi)
_NAMES = ("means", "scales", "dof")

# header of the packed buffer: its first _HEADER values, at these positions
(
    _N_ROWS,
    _N_FEATURES,
    _N_COMPONENTS,
    _KIND,
    _ESTIMATE_DOF,
    _SCALE_DOF,
    _DOF_SHAPE,
    _DOF_RATE,
    _HEADER,
) = range(9)


def student_t_density(
    covariance_type: str,
    dof: float | None,
    X: np.ndarray,
    priors: dict[str, np.ndarray],
    n_components: int,
) -> StudentTDensity:
    """The density of a Student-t mixture of ``n_components`` (``covariance_type``
    ``"full"`` or ``"diag"``; degrees of freedom fixed at ``dof``, or estimated when
    None) on the complete rows ``X`` under the resolved ``priors``."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    n, D = X.shape
    K, kind = n_components, KINDS[covariance_type]
    if kind == _FULL:
        inverse = np.linalg.inv(np.asarray(priors["scale_scale"], dtype=np.float64))
        scale = np.linalg.cholesky(inverse)
    else:
        scale = np.broadcast_to(np.asarray(priors["scale_scale"], dtype=np.float64), (K, D))
    header = np.zeros(_HEADER)
    header[[_N_ROWS, _N_FEATURES, _N_COMPONENTS, _KIND, _ESTIMATE_DOF]] = (
        n,
        D,
        K,
        kind,
        dof is None,
    )
    header[[_SCALE_DOF, _DOF_SHAPE, _DOF_RATE]] = [
        float(priors[name]) for name in ("scale_dof", "dof_shape", "dof_rate")
    ]
    parts = [header, X, weight_prior_inputs(priors, K)]
    parts += [np.broadcast_to(priors[name], (D,)) for name in ("mean_loc", "mean_scale")]
    parts += [scale, np.full(K, np.nan if dof is None else dof)]
    buffer = np.concatenate([np.ravel(np.asarray(p, dtype=np.float64)) for p in parts])
    expected = _buffer_size(n, D, K, kind)
    if buffer.size != expected:
        raise RuntimeError(f"packed {buffer.size} values where the callbacks read {expected}")
    buffer.flags.writeable = False
    return StudentTDensity(kind, K, D, dof is None, buffer)


# compiled under a name carrying the digest of the modules whose compiled functions
# they call (bayesmix.jit.cached): numba keys a cached function by its own file only
_cached = cached(
    count_logdensity, gaussian_logdensity, simplex, sticks, nogil=True, error_model="numpy"
)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _buffer_size(n, D, K, kind):
    return _HEADER + n * D + 3 * K + 2 * D + (D * D if kind == _FULL else K * D) + K


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _unpack(buffer):
    n, D, K = int(buffer[_N_ROWS]), int(buffer[_N_FEATURES]), int(buffer[_N_COMPONENTS])
    kind = int(buffer[_KIND])
    pos = _HEADER
    X = buffer[pos : pos + n * D].reshape((n, D))
    pos += n * D
    weight_prior = buffer[pos : pos + 3 * K].reshape((3, K))
    pos += 3 * K
    mean_loc, mean_scale = buffer[pos : pos + D], buffer[pos + D : pos + 2 * D]
    pos += 2 * D
    rows = D if kind == _FULL else K
    scale = buffer[pos : pos + rows * D].reshape((rows, D))
    pos += rows * D
    fixed_dof = buffer[pos : pos + K]
    priors = buffer[_SCALE_DOF : _DOF_RATE + 1]  # scale_dof, dof_shape, dof_rate
    estimate_dof = buffer[_ESTIMATE_DOF] > 0.5
    return X, weight_prior, mean_loc, mean_scale, scale, fixed_dof, priors, kind, estimate_dof


# ---------------------------------------------------------------------------------------
# the density


@_cached
def _log_density(theta, buffer, grad):
    """Log posterior density at ``theta`` of the model packed in ``buffer``; its
    gradient is written into ``grad``. Returns ``-inf`` outside the support."""
    X, weight_prior, mean_loc, mean_scale, scale, fixed_dof, priors, kind, estimate_dof = _unpack(
        buffer
    )
    D = X.shape[1]
    K = weight_prior.shape[1]
    full = kind == _FULL
    grad[:] = 0.0
    log_w = mixture_log_weights(theta, weight_prior)
    means = theta[K - 1 : K - 1 + K * D].copy().reshape((K, D))
    logp = weight_log_prior(theta, log_w, weight_prior)
    logp += normal_log_prior(means, mean_loc, mean_scale)
    pos = K - 1 + K * D  # the scale parameters
    shifted, A, factors, var, log_det, prior = _scales(theta, pos, scale, priors[0], kind, K, D)
    pos_dof = pos + K * D + (K * D * (D - 1) // 2 if full else 0)
    nu, dof_prior = _degrees(theta, pos_dof, fixed_dof, priors, estimate_dof)
    logp += prior + dof_prior
    if not math.isfinite(logp):
        return -np.inf
    base = np.empty(K)  # log w_k + log det F_k + the t's normalising constant
    for k in range(K):
        base[k] = log_w[k] + log_det[k] + math.lgamma(0.5 * (nu[k] + D))
        base[k] -= math.lgamma(0.5 * nu[k]) + 0.5 * D * (math.log(nu[k]) + _LOG_PI)
    sums = np.zeros((3, K))  # sum r, sum r u, sum r L
    first = np.zeros((K, D))
    scatter = np.zeros((K, D, D)) if full else np.zeros((K, 1, D))
    logp += _row_statistics(X, means, factors, var, nu, base, full, sums, first, scatter)
    if not math.isfinite(logp):
        return -np.inf
    mixture_weights_gradient(theta, log_w, weight_prior, sums[0], grad)
    g_means = precision_times(first, factors, var, full, False)
    for k in range(K):
        for d in range(D):
            z = (means[k, d] - mean_loc[d]) / mean_scale[d]
            grad[K - 1 + k * D + d] = g_means[k, d] - z / mean_scale[d]
    if full:
        factor_gradient(theta, pos, A, factors, scale, sums[0], scatter, priors[0], kind, grad)
    else:
        variance_gradient(shifted, pos, var, sums[0], scatter, priors[0], kind, grad)
    if estimate_dof:
        _dof_gradient(theta, pos_dof, nu, D, sums, priors, grad)
    return logp


@nb.njit(cache=True, nogil=True, error_model="numpy")
def normal_log_prior(means, mean_loc, mean_scale):
    """``Normal(mean_loc_d, mean_scale_d)`` log densities of the means."""
    K, D = means.shape
    logp = -0.5 * K * D * _LOG_2PI
    for k in range(K):
        for d in range(D):
            z = (means[k, d] - mean_loc[d]) / mean_scale[d]
            logp -= 0.5 * z * z + math.log(mean_scale[d])
    return logp


@_cached
def _scales(theta, pos, scale, scale_dof, kind, K, D):
    """The scale parameters at ``theta``: ``(shifted, A, factors, var, log_det, prior)``
    with ``shifted`` ``theta`` with diag's log variances made dimensionless (module
    notes), the Bartlett matrices and precision factors (full) or the variances (diag),
    each component's log determinant of the precision factor, and the log prior with its
    Jacobian."""
    shifted = theta.copy()
    log_det = np.zeros(K)
    if kind == _FULL:
        A, factors = bartlett(theta, pos, scale, K, D)
        for k in range(K):
            for d in range(D):
                log_det[k] += math.log(scale[d, d]) + 0.5 * theta[pos + k * D + d]
        prior = bartlett_log_prior(theta, pos, K, D, scale_dof)
        return shifted, A, factors, np.empty((0, 0)), log_det, prior
    for k in range(K):
        for d in range(D):
            shifted[pos + k * D + d] -= math.log(scale[k, d])
            log_det[k] -= 0.5 * theta[pos + k * D + d]
    var = variances(shifted, pos, scale, K, D, kind)
    prior = inverse_gamma_log_prior(shifted[pos : pos + K * D], scale_dof)
    return shifted, np.empty((0, 0, 0)), np.empty((0, 0, 0)), var, log_det, prior


@_cached
def _degrees(theta, pos, fixed_dof, priors, estimate_dof):
    """The degrees of freedom and (estimated) their ``Gamma(dof_shape, dof_rate)`` log
    prior with the log transform's Jacobian."""
    K = fixed_dof.shape[0]
    if not estimate_dof:
        return fixed_dof.copy(), 0.0
    nu, prior = np.empty(K), 0.0
    for k in range(K):
        nu[k] = math.exp(theta[pos + k])
        prior += gamma_log_prior(theta[pos + k], priors[1], priors[2])
    return nu, prior


@_cached
def _row_statistics(X, means, factors, var, nu, base, full, sums, first, scatter):
    """Sum over rows of ``log sum_k w_k t(x | mu_k, Sigma_k, nu_k)``; adds each
    component's ``sum r``, ``sum r u``, ``sum r L`` (``sums``), first moment
    ``sum r u (x - mu)`` and scatter (lower triangle; the diagonal only, in
    ``scatter[:, 0]``, for diag) to the accumulators."""
    n, D = X.shape
    K = means.shape[0]
    joint, u, log1p = np.empty(K), np.empty(K), np.empty(K)
    centred = np.empty((K, D))
    total_logp = 0.0
    for i in range(n):
        for k in range(K):
            delta = 0.0
            for d in range(D):
                centred[k, d] = X[i, d] - means[k, d]
                if not full:
                    delta += centred[k, d] * centred[k, d] / var[k, d]
            if full:
                for c in range(D):
                    white = whiten(factors[k], centred[k], c)
                    delta += white * white
            log1p[k] = math.log1p(delta / nu[k])
            u[k] = (nu[k] + D) / (nu[k] + delta)
            joint[k] = base[k] - 0.5 * (nu[k] + D) * log1p[k]
        total_logp += normalise_joint(joint, 1.0)
        for k in range(K):
            r = joint[k]
            sums[0, k] += r
            sums[1, k] += r * u[k]
            sums[2, k] += r * log1p[k]
            _add_moments(centred[k], r * u[k], full, first[k], scatter[k])
    return total_logp


@nb.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def _add_moments(centred, weight, full, first, scatter):
    """Adds ``weight`` times the centred row to ``first`` and times its outer product
    (lower triangle, or the diagonal in ``scatter[0]``) to ``scatter``."""
    D = centred.shape[0]
    for a in range(D):
        weighted = weight * centred[a]
        first[a] += weighted
        if full:
            for b in range(a + 1):
                scatter[a, b] += weighted * centred[b]
        else:
            scatter[0, a] += weighted * centred[a]


@_cached
def _dof_gradient(theta, pos, nu, D, sums, priors, grad):
    """Gradient in the log degrees of freedom: likelihood from the sums ``sum r``,
    ``sum r u``, ``sum r L`` plus the Gamma prior and its Jacobian."""
    for k in range(nu.shape[0]):
        m = sums[0, k]
        slope = m * (digamma(0.5 * (nu[k] + D)) - digamma(0.5 * nu[k]) + 1.0)
        slope -= sums[2, k] + sums[1, k]
        grad[pos + k] = 0.5 * nu[k] * slope + priors[1] - priors[2] * nu[k]


# ---------------------------------------------------------------------------------------
# unconstrained -> model parameters


@_cached
def _expand(theta, buffer, out):
    """Weights, means, scales (full: ``(F F^T)^-1``) and degrees of freedom of the model
    packed in ``buffer`` at ``theta``, flattened into ``out``."""
    X, weight_prior, _, _, scale, fixed_dof, priors, kind, estimate_dof = _unpack(buffer)
    D, K = X.shape[1], weight_prior.shape[1]
    log_w = mixture_log_weights(theta, weight_prior)
    for k in range(K):
        out[k] = math.exp(log_w[k])
    pos = K - 1
    out[K : K + K * D] = theta[pos : pos + K * D]
    pos += K * D
    i = K + K * D
    _, _, factors, var, _, _ = _scales(theta, pos, scale, priors[0], kind, K, D)
    if kind == _FULL:
        for k in range(K):
            out[i : i + D * D] = _inverse_gram(factors[k]).ravel()
            i += D * D
        pos += K * D * (D + 1) // 2
    else:
        out[i : i + K * D] = var.ravel()
        i += K * D
        pos += K * D
    nu, _ = _degrees(theta, pos, fixed_dof, priors, estimate_dof)
    out[i : i + K] = nu


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _inverse_gram(factor):
    """``(F F^T)^-1 = M^T M`` with ``M = F^-1`` for a lower-triangular ``F``."""
    D = factor.shape[0]
    M = np.zeros((D, D))
    for c in range(D):  # forward substitution, column c of F^-1
        M[c, c] = 1.0 / factor[c, c]
        for r in range(c + 1, D):
            total = 0.0
            for m in range(c, r):
                total += factor[r, m] * M[m, c]
            M[r, c] = -total / factor[r, r]
    out = np.empty((D, D))
    for a in range(D):
        for b in range(a + 1):
            total = 0.0
            for m in range(a, D):  # M is lower triangular
                total += M[m, a] * M[m, b]
            out[a, b] = out[b, a] = total
    return out


# ---------------------------------------------------------------------------------------
# C callbacks for nutpie: it calls them from its sampler threads without the GIL, passing
# the address of the packed buffer (:func:`student_t_density`)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _buffer_at(address):
    header = nb.carray(address, (_HEADER,), np.float64)
    n, D = int(header[_N_ROWS]), int(header[_N_FEATURES])
    K, kind = int(header[_N_COMPONENTS]), int(header[_KIND])
    return nb.carray(address, (_buffer_size(n, D, K, kind),), np.float64)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _status(value, grad):
    """nutpie's code of an evaluation: 0, or 4 (density not finite), 3 (gradient not
    finite)."""
    if not math.isfinite(value):
        return 4
    return 0 if np.isfinite(grad).all() else 3


_pointer = nb.types.CPointer(nb.types.double)
_LOGP = nb.types.int64(nb.types.uint64, _pointer, _pointer, _pointer, nb.types.voidptr)
_EXPAND = nb.types.int64(nb.types.uint64, nb.types.uint64, _pointer, _pointer, nb.types.voidptr)


@cached(
    count_logdensity, gaussian_logdensity, simplex, sticks, signature=_LOGP, error_model="numpy"
)
def nutpie_logp(n_dim, x_address, grad_address, logp_address, inputs_address):
    """nutpie's log density callback: 0 on success; a positive code (4: density not finite,
    3: gradient not finite, 1: an error) makes nutpie reject the step as a divergence."""
    try:
        x = nb.carray(x_address, (n_dim,))
        grad = nb.carray(grad_address, (n_dim,))
        value = _log_density(x, _buffer_at(inputs_address), grad)
        nb.carray(logp_address, (1,))[0] = value
        return _status(value, grad)
    except Exception:  # noqa: BLE001 - an exception cannot cross into nutpie's threads
        return 1


@cached(
    count_logdensity, gaussian_logdensity, simplex, sticks, signature=_EXPAND, error_model="numpy"
)
def nutpie_expand(n_dim, n_expanded, x_address, out_address, inputs_address):
    """nutpie's callback storing the weights, means, scales and degrees of freedom of a
    draw; 0 on success, 1 on an error."""
    try:
        x = nb.carray(x_address, (n_dim,))
        out = nb.carray(out_address, (n_expanded,))
        _expand(x, _buffer_at(inputs_address), out)
    except Exception:  # noqa: BLE001 - an exception cannot cross into nutpie's threads
        return 1
    return 0


@dataclass(frozen=True)
class StudentTDensity:
    """One Student-t mixture's hand-written density: its scale structure (``kind``, a
    value of :data:`KINDS`), sizes, whether the degrees of freedom are free, and the
    read-only buffer the callbacks read (:func:`student_t_density`)."""

    kind: int
    n_components: int
    n_features: int
    estimate_dof: bool
    buffer: np.ndarray

    #: nutpie's callbacks (C functions reading :attr:`buffer`), not fields
    nutpie_logp = nutpie_logp
    nutpie_expand = nutpie_expand

    @property
    def names(self) -> tuple[str, ...]:
        """The expanded variables after ``weights`` (``dof`` also when fixed)."""
        return _NAMES

    @property
    def full(self) -> bool:
        """Full scale matrices (Bartlett coordinates), else diagonal (log variances)."""
        return self.kind == _FULL

    @property
    def n_covariance(self) -> int:
        """Free coordinates of the scales (Bartlett variables or log variances)."""
        K, D = self.n_components, self.n_features
        return K * D + (K * D * (D - 1) // 2 if self.full else 0)

    @property
    def n_dim(self) -> int:
        K, D = self.n_components, self.n_features
        return K - 1 + K * D + self.n_covariance + (K if self.estimate_dof else 0)

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Each expanded variable's shape (``weights`` first), in the expansion's order."""
        K, D = self.n_components, self.n_features
        scales = (K, D, D) if self.full else (K, D)
        return {"weights": (K,), "means": (K, D), "scales": scales, "dof": (K,)}

    @property
    def n_expanded(self) -> int:
        return int(sum(np.prod(shape) for shape in self.shapes.values()))

    def flat_start(self, start: dict[str, np.ndarray]) -> np.ndarray:
        """``theta`` at the PyMC model's free variables given as constrained values
        (:meth:`~bayesmix.families.StudentT.pymc_initial_values` plus ``weights``)."""
        blocks = [flat_mixture_weights(start), np.ravel(start["means"])]
        if self.full:
            blocks.append(np.log(np.ravel(start["scales_chi2"])))
            if self.n_features > 1:
                blocks.append(np.ravel(start["scales_normal"]))
        else:
            blocks.append(np.log(np.ravel(start["scales"])))
        if self.estimate_dof:
            blocks.append(np.log(np.ravel(start["dof"])))
        theta = np.concatenate(blocks).astype(np.float64)
        if theta.size != self.n_dim:
            raise RuntimeError(f"start has {theta.size} coordinates, the density {self.n_dim}")
        return theta

    def log_density(self, theta: np.ndarray, grad: np.ndarray) -> float:
        """Log posterior density at ``theta``; its gradient is written into ``grad``."""
        theta = np.ascontiguousarray(theta, dtype=np.float64)
        return float(_log_density(theta, self.buffer, grad))

    def expand(self, theta: np.ndarray) -> np.ndarray:
        """Weights, means, scales and degrees of freedom at ``theta``, flattened."""
        out = np.empty(self.n_expanded)
        theta = np.ascontiguousarray(theta, dtype=np.float64)
        _expand(theta, self.buffer, out)
        return out
