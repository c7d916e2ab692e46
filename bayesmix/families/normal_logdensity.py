"""The marginalised mixture's log posterior density and its gradient for
:class:`bayesmix.families.Normal` (diagonal Gaussian components, local independence),
written by hand and compiled by numba with an on-disk cache, for nutpie (and
:func:`bayesmix.inference.bayes.advi.fit_advi`) to fit without PyMC.

The density is that of :func:`bayesmix.inference.bayes.family.build_family_pymc` for
``Normal`` on complete data, in the same unconstrained coordinates, Jacobians included,
so it equals the PyMC model's ``logp`` to rounding. Flat layout of ``theta`` (the free
variables in the PyMC model's order):

1. ``K - 1`` simplex coordinates of the weights (:mod:`bayesmix.families.simplex`), or
   under a stick-breaking prior the sticks' logits (:mod:`bayesmix.families.sticks`);
2. the means ``(K, D)`` row-major, untransformed (``Normal(mean_loc_d, mean_scale_d)``);
3. the log variances ``u = log s2`` ``(K, D)`` row-major: ``s2_kd ~ InverseGamma(a_d,
   b_d)`` with ``a_d = variance_dof_d / 2``, ``b_d = variance_scale_d / 2``, whose log
   density plus the log transform's Jacobian ``u`` is ``a log b - lgamma(a) - a u -
   b exp(-u)``.

One pass over the rows computes the responsibilities ``r_nk`` and per component and
feature the sums ``N_k = sum r``, ``sum r (x - mu)`` and ``sum r (x - mu)^2``; the
gradient follows in closed form: ``sum r (x - mu) / s2 - (mu - mean_loc) /
mean_scale^2`` in a mean, ``(sum r (x - mu)^2 / s2 - N_k) / 2 - a + b exp(-u)`` in a
log variance.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np

from bayesmix.families import simplex, sticks, student_t_logdensity
from bayesmix.families.simplex import normalise_joint
from bayesmix.families.sticks import (
    flat_mixture_weights,
    mixture_log_weights,
    mixture_weights_gradient,
    weight_log_prior,
    weight_prior_inputs,
)
from bayesmix.families.student_t_logdensity import normal_log_prior
from bayesmix.jit import cached

__all__ = ["NormalDensity", "normal_density", "nutpie_logp", "nutpie_expand"]

_LOG_2PI = math.log(2.0 * math.pi)
_NAMES = ("means", "variances")

# header of the packed buffer: its first _HEADER values, at these positions
_N_ROWS, _N_FEATURES, _N_COMPONENTS, _HEADER = range(4)


def normal_density(X: np.ndarray, priors: dict[str, np.ndarray], n_components: int):
    """The density of a ``Normal`` mixture of ``n_components`` on the complete rows ``X``
    ``(n_obs, D)`` under the resolved ``priors`` (``weight_concentration``,
    ``mean_loc``, ``mean_scale``, ``variance_dof``, ``variance_scale``)."""
    X = np.ascontiguousarray(X, dtype=np.float64)
    n, D = X.shape
    K = n_components
    header = np.zeros(_HEADER)
    header[[_N_ROWS, _N_FEATURES, _N_COMPONENTS]] = n, D, K
    parts = [header, X, weight_prior_inputs(priors, K)]
    names = ("mean_loc", "mean_scale", "variance_dof", "variance_scale")
    parts += [np.broadcast_to(priors[name], (D,)) for name in names]
    buffer = np.concatenate([np.ravel(np.asarray(p, dtype=np.float64)) for p in parts])
    expected = _buffer_size(n, D, K)
    if buffer.size != expected:
        raise RuntimeError(f"packed {buffer.size} values where the callbacks read {expected}")
    buffer.flags.writeable = False
    return NormalDensity(K, D, buffer)


# compiled under a name carrying the digest of the modules whose compiled functions
# they call (bayesmix.jit.cached): numba keys a cached function by its own file only
_cached = cached(simplex, sticks, student_t_logdensity, nogil=True, error_model="numpy")


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _buffer_size(n, D, K):
    return _HEADER + n * D + 3 * K + 4 * D


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _unpack(buffer):
    n, D, K = int(buffer[_N_ROWS]), int(buffer[_N_FEATURES]), int(buffer[_N_COMPONENTS])
    pos = _HEADER
    X = buffer[pos : pos + n * D].reshape((n, D))
    pos += n * D
    weight_prior = buffer[pos : pos + 3 * K].reshape((3, K))
    pos += 3 * K
    priors = buffer[pos : pos + 4 * D].reshape((4, D))  # loc, scale, dof, variance scale
    return X, weight_prior, priors


# ---------------------------------------------------------------------------------------
# the density


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _variance_log_prior(log_var, dof, scale):
    """``InverseGamma(dof_d / 2, scale_d / 2)`` log densities of ``exp(log_var)``
    ``(K, D)``, log Jacobian included."""
    K, D = log_var.shape
    logp = 0.0
    for d in range(D):
        a, b = 0.5 * dof[d], 0.5 * scale[d]
        logp += K * (a * math.log(b) - math.lgamma(a))
        for k in range(K):
            logp -= a * log_var[k, d] + b * math.exp(-log_var[k, d])
    return logp


@_cached
def _log_density(theta, buffer, grad):
    """Log posterior density at ``theta`` of the model packed in ``buffer``; its
    gradient is written into ``grad``. Returns ``-inf`` outside the support."""
    X, weight_prior, priors = _unpack(buffer)
    n, D = X.shape
    K = weight_prior.shape[1]
    grad[:] = 0.0
    log_w = mixture_log_weights(theta, weight_prior)
    pos = K - 1
    means = theta[pos : pos + K * D].copy().reshape((K, D))
    log_var = theta[pos + K * D : pos + 2 * K * D].copy().reshape((K, D))
    logp = weight_log_prior(theta, log_w, weight_prior)
    logp += normal_log_prior(means, priors[0], priors[1])
    logp += _variance_log_prior(log_var, priors[2], priors[3])
    if not math.isfinite(logp):
        return -np.inf
    precision = np.exp(-log_var)
    base = np.empty(K)  # log w_k - sum_d (log 2 pi + log s2_kd) / 2
    for k in range(K):
        base[k] = log_w[k] - 0.5 * D * _LOG_2PI
        for d in range(D):
            base[k] -= 0.5 * log_var[k, d]
    counts, first, scatter = np.zeros(K), np.zeros((K, D)), np.zeros((K, D))
    joint, centred = np.empty(K), np.empty((K, D))
    for i in range(n):
        for k in range(K):
            total = 0.0
            for d in range(D):
                c = X[i, d] - means[k, d]
                centred[k, d] = c
                total += c * c * precision[k, d]
            joint[k] = base[k] - 0.5 * total
        logp += normalise_joint(joint, 1.0)
        for k in range(K):
            r = joint[k]
            counts[k] += r
            for d in range(D):
                weighted = r * centred[k, d]
                first[k, d] += weighted
                scatter[k, d] += weighted * centred[k, d]
    if not math.isfinite(logp):
        return -np.inf
    mixture_weights_gradient(theta, log_w, weight_prior, counts, grad)
    for k in range(K):
        for d in range(D):
            loc, sd = priors[0, d], priors[1, d]
            grad[pos + k * D + d] = first[k, d] * precision[k, d] - (means[k, d] - loc) / sd**2
            a, b = 0.5 * priors[2, d], 0.5 * priors[3, d]
            slope = 0.5 * (scatter[k, d] * precision[k, d] - counts[k])
            grad[pos + K * D + k * D + d] = slope - a + b * precision[k, d]
    return logp


@_cached
def _expand(theta, buffer, out):
    """Weights, means and variances at ``theta``, flattened into ``out``."""
    X, weight_prior, _ = _unpack(buffer)
    D, K = X.shape[1], weight_prior.shape[1]
    log_w = mixture_log_weights(theta, weight_prior)
    for k in range(K):
        out[k] = math.exp(log_w[k])
    pos = K - 1
    out[K : K + K * D] = theta[pos : pos + K * D]
    for j in range(K * D):
        out[K + K * D + j] = math.exp(theta[pos + K * D + j])


# ---------------------------------------------------------------------------------------
# C callbacks for nutpie: it calls them from its sampler threads without the GIL, passing
# the address of the packed buffer (:func:`normal_density`)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _buffer_at(address):
    header = nb.carray(address, (_HEADER,), np.float64)
    n, D, K = int(header[_N_ROWS]), int(header[_N_FEATURES]), int(header[_N_COMPONENTS])
    return nb.carray(address, (_buffer_size(n, D, K),), np.float64)


_DOUBLES = nb.types.CPointer(nb.types.double)
_LOGP = nb.types.int64(nb.types.uint64, _DOUBLES, _DOUBLES, _DOUBLES, nb.types.voidptr)
_EXPAND = nb.types.int64(nb.types.uint64, nb.types.uint64, _DOUBLES, _DOUBLES, nb.types.voidptr)


@cached(simplex, sticks, student_t_logdensity, signature=_LOGP, error_model="numpy")
def nutpie_logp(n_dim, x_address, grad_address, logp_address, inputs_address):
    """nutpie's log density callback: 0 on success; a positive code (4: density not finite,
    3: gradient not finite, 1: an error) makes nutpie reject the step as a divergence."""
    try:
        grad = nb.carray(grad_address, (n_dim,))
        value = _log_density(nb.carray(x_address, (n_dim,)), _buffer_at(inputs_address), grad)
        nb.carray(logp_address, (1,))[0] = value
        if not math.isfinite(value):
            return 4
        return 0 if np.isfinite(grad).all() else 3
    except Exception:  # noqa: BLE001 - an exception cannot cross into nutpie's threads
        return 1


@cached(simplex, sticks, student_t_logdensity, signature=_EXPAND, error_model="numpy")
def nutpie_expand(n_dim, n_expanded, x_address, out_address, inputs_address):
    """nutpie's callback storing the weights, means and variances of a draw; 0 on
    success, 1 on an error."""
    try:
        out = nb.carray(out_address, (n_expanded,))
        _expand(nb.carray(x_address, (n_dim,)), _buffer_at(inputs_address), out)
    except Exception:  # noqa: BLE001 - an exception cannot cross into nutpie's threads
        return 1
    return 0


@dataclass(frozen=True)
class NormalDensity:
    """One ``Normal`` mixture's hand-written density: its sizes and the read-only buffer
    the callbacks read (:func:`normal_density`)."""

    n_components: int
    n_features: int
    buffer: np.ndarray

    #: nutpie's callbacks (C functions reading :attr:`buffer`), not fields
    nutpie_logp = nutpie_logp
    nutpie_expand = nutpie_expand

    @property
    def names(self) -> tuple[str, ...]:
        """The expanded variables after ``weights``."""
        return _NAMES

    @property
    def n_dim(self) -> int:
        """Length of ``theta``."""
        return self.n_components - 1 + 2 * self.n_components * self.n_features

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Each expanded variable's shape (``weights`` first), in the expansion's order."""
        K, D = self.n_components, self.n_features
        return {"weights": (K,), "means": (K, D), "variances": (K, D)}

    @property
    def n_expanded(self) -> int:
        """Length of the expansion."""
        return int(sum(np.prod(shape) for shape in self.shapes.values()))

    def flat_start(self, start: dict[str, np.ndarray]) -> np.ndarray:
        """``theta`` at constrained values of the free variables: ``weights``, ``means``
        and ``variances`` (as the family's ``pymc_initial_values``)."""
        blocks = [flat_mixture_weights(start), np.ravel(start["means"])]
        blocks.append(np.log(np.ravel(start["variances"])))
        theta = np.concatenate(blocks).astype(np.float64)
        if theta.size != self.n_dim:
            raise RuntimeError(f"start has {theta.size} coordinates, the density {self.n_dim}")
        return theta

    def log_density(self, theta: np.ndarray, grad: np.ndarray) -> float:
        """Log posterior density at ``theta`` (the module's layout); its gradient is
        written into ``grad`` (``-inf`` where it is not finite; ``grad`` then means
        nothing)."""
        theta = np.ascontiguousarray(theta, dtype=np.float64)
        return float(_log_density(theta, self.buffer, grad))

    def expand(self, theta: np.ndarray) -> np.ndarray:
        """Weights, means and variances at ``theta``, flattened (:attr:`shapes`)."""
        out = np.empty(self.n_expanded)
        theta = np.ascontiguousarray(theta, dtype=np.float64)
        _expand(theta, self.buffer, out)
        return out
