"""The marginalised mixture's log posterior density and its gradient for the count
families (Poisson, negative binomial), written by hand and compiled by numba with an
on-disk cache, for nutpie to sample without PyMC.

The density is that of :func:`bayesmix.inference.bayes.family.build_family_pymc` on
complete data, in the same unconstrained coordinates (PyMC's simplex and log transforms,
Jacobians included), so it equals the PyMC model's ``logp`` to rounding; compiling that
model costs seconds to tens of seconds in every fresh process, these functions load from
numba's cache.

Flat layout of the unconstrained vector ``theta``: ``K - 1`` coordinates of the weights
(the Dirichlet's simplex coordinates, or under a stick-breaking prior the sticks' logits:
:mod:`bayesmix.families.sticks`), then per parameter (Poisson: ``rates``;
negative binomial: ``means``, then ``dispersions``) its logs ``(K, D)`` row-major.

Priors (those of the families' ``pymc_parameters``): rates and NB means
``Gamma(shape_d, rate_d)``, NB dispersions ``LogNormal(loc_d, scale_d)``.

Identical rows are summed once with their multiplicity (count data repeat rows often).
One pass over the distinct rows computes the responsibilities and the sufficient sums:
each component's mass and (Poisson) weighted column sums, or (negative binomial) the
weighted histogram over each column's distinct values, from which the gradient follows
in closed form. The negative binomial's ``lgamma(x + a) - lgamma(a)`` and its derivative
are tabulated per component over each column's distinct values, once per evaluation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numba as nb
import numpy as np
from scipy.special import gammaln

from bayesmix.families import simplex, sticks
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
    "KINDS",
    "CountDensity",
    "count_density",
    "digamma",
    "gamma_log_prior",
    "nutpie_logp",
    "nutpie_expand",
]

_POISSON, _NEGATIVE_BINOMIAL = 0, 1
KINDS = {"poisson": _POISSON, "negative_binomial": _NEGATIVE_BINOMIAL}
# the free variables of each kind after the weights, in the PyMC model's order
_NAMES = {_POISSON: ("rates",), _NEGATIVE_BINOMIAL: ("means", "dispersions")}
_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
# counts up to this use the finite sum psi(x + a) - psi(a) = sum_{j < x} 1 / (a + j)
_FINITE_SUM_MAX = 32

# header of the packed buffer: its first _HEADER values, at these positions
_N_ROWS, _N_FEATURES, _N_COMPONENTS, _KIND, _N_VALUES, _CONSTANT, _HEADER = range(7)


def count_density(
    family: str, X: np.ndarray, priors: dict[str, np.ndarray], n_components: int
) -> CountDensity:
    """The density of a ``family`` (``"poisson"`` or ``"negative_binomial"``) mixture of
    ``n_components`` on the complete counts ``X`` under the resolved ``priors``."""
    kind = KINDS[family]
    X = np.asarray(X, dtype=np.float64)
    D, K = X.shape[1], n_components
    rows, multiplicity = np.unique(X, axis=0, return_counts=True)
    multiplicity = multiplicity.astype(np.float64)
    constant = -float(multiplicity @ gammaln(rows + 1.0).sum(axis=1))
    weight_prior = weight_prior_inputs(priors, K)
    if kind == _POISSON:
        shape, mean = priors["rate_shape"], priors["rate_mean"]
        loc = scale = np.zeros(D)
        values = columns = bins = np.zeros(0)
    else:
        shape, mean = priors["mean_shape"], priors["mean_mean"]
        loc, scale = priors["dispersion_log_loc"], priors["dispersion_log_scale"]
        values, columns, bins = [], [], np.empty(rows.shape)
        for d in range(D):
            distinct, index = np.unique(rows[:, d], return_inverse=True)
            bins[:, d] = np.ravel(index) + sum(v.size for v in values)
            values.append(distinct)
            columns.append(np.full(distinct.size, d, dtype=np.float64))
        values, columns = np.concatenate(values), np.concatenate(columns)
    shape = np.broadcast_to(np.asarray(shape, dtype=np.float64), (D,))
    rate = shape / np.broadcast_to(np.asarray(mean, dtype=np.float64), (D,))
    header = np.zeros(_HEADER)
    header[[_N_ROWS, _N_FEATURES, _N_COMPONENTS, _KIND, _N_VALUES, _CONSTANT]] = (
        rows.shape[0],
        D,
        K,
        kind,
        values.size,
        constant,
    )
    parts = [header, rows, multiplicity, weight_prior, shape, rate, loc, scale]
    parts += [values, columns, bins]
    buffer = np.concatenate([np.ravel(np.asarray(p, dtype=np.float64)) for p in parts])
    expected = _buffer_size(rows.shape[0], D, K, kind, values.size)
    if buffer.size != expected:
        raise RuntimeError(f"packed {buffer.size} values where the callbacks read {expected}")
    buffer.flags.writeable = False
    return CountDensity(kind, K, D, buffer)


# compiled under a name carrying the digest of the modules whose compiled functions
# they call (bayesmix.jit.cached): numba keys a cached function by its own file only
_cached = cached(simplex, sticks, nogil=True, error_model="numpy")


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _buffer_size(n, D, K, kind, V):
    bins = n * D if kind == _NEGATIVE_BINOMIAL else 0
    return _HEADER + n * D + n + 3 * K + 4 * D + 2 * V + bins


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _unpack(buffer):
    n, D = int(buffer[_N_ROWS]), int(buffer[_N_FEATURES])
    K, kind, V = int(buffer[_N_COMPONENTS]), int(buffer[_KIND]), int(buffer[_N_VALUES])
    pos = _HEADER
    rows = buffer[pos : pos + n * D].reshape((n, D))
    pos += n * D
    multiplicity = buffer[pos : pos + n]
    pos += n
    weight_prior = buffer[pos : pos + 3 * K].reshape((3, K))
    pos += 3 * K
    shape = buffer[pos : pos + D]
    rate = buffer[pos + D : pos + 2 * D]
    loc = buffer[pos + 2 * D : pos + 3 * D]
    scale = buffer[pos + 3 * D : pos + 4 * D]
    pos += 4 * D
    values = buffer[pos : pos + V]
    columns = buffer[pos + V : pos + 2 * V]
    pos += 2 * V
    n_bins = n if kind == _NEGATIVE_BINOMIAL else 0
    bins = buffer[pos : pos + n_bins * D].reshape((n_bins, D))
    constant = buffer[_CONSTANT]
    return (
        rows,
        multiplicity,
        weight_prior,
        shape,
        rate,
        loc,
        scale,
        values,
        columns,
        bins,
        constant,
        kind,
    )


@nb.njit(cache=True, nogil=True, error_model="numpy")
def digamma(x):
    """The digamma function for ``x > 0``: recurrence up to 10, then the asymptotic
    series to ``x**-14`` (relative error below 1e-15)."""
    result = 0.0
    while x < 10.0:
        result -= 1.0 / x
        x += 1.0
    inv2 = 1.0 / (x * x)
    series = inv2 * (
        1.0 / 12.0
        - inv2
        * (
            1.0 / 120.0
            - inv2
            * (
                1.0 / 252.0
                - inv2
                * (1.0 / 240.0 - inv2 * (1.0 / 132.0 - inv2 * (691.0 / 32760.0 - inv2 / 12.0)))
            )
        )
    )
    return result + math.log(x) - 0.5 / x - series


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _digamma_difference(x, a):
    """``psi(x + a) - psi(a)`` for a count ``x``."""
    if x <= _FINITE_SUM_MAX:
        total = 0.0
        for j in range(int(x)):
            total += 1.0 / (a + j)
        return total
    return digamma(x + a) - digamma(a)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def gamma_log_prior(u, shape, rate):
    """``Gamma(shape, rate)`` log density of ``exp(u)`` plus the log Jacobian ``u``."""
    return shape * math.log(rate) - math.lgamma(shape) + shape * u - rate * math.exp(u)


@_cached
def _log_density(
    theta,
    rows,
    multiplicity,
    weight_prior,
    shape,
    rate,
    loc,
    scale,
    values,
    columns,
    bins,
    constant,
    kind,
    grad,
):
    if kind == _POISSON:
        return _poisson(theta, rows, multiplicity, weight_prior, shape, rate, constant, grad)
    return _negative_binomial(
        theta,
        rows,
        multiplicity,
        weight_prior,
        shape,
        rate,
        loc,
        scale,
        values,
        columns,
        bins,
        constant,
        grad,
    )


@_cached
def _poisson(theta, rows, multiplicity, weight_prior, shape, rate, constant, grad):
    n, D = rows.shape
    K = weight_prior.shape[1]
    grad[:] = 0.0
    log_w = mixture_log_weights(theta, weight_prior)
    logp = weight_log_prior(theta, log_w, weight_prior) + constant
    pos = K - 1
    rates = np.empty((K, D))
    base = np.empty(K)  # log w_k - sum_d lambda_kd
    for k in range(K):
        base[k] = log_w[k]
        for d in range(D):
            u = theta[pos + k * D + d]
            rates[k, d] = math.exp(u)
            base[k] -= rates[k, d]
            logp += gamma_log_prior(u, shape[d], rate[d])
    if not math.isfinite(logp):
        return -np.inf
    counts, sums = np.zeros(K), np.zeros((K, D))
    joint = np.empty(K)
    for i in range(n):
        for k in range(K):
            total = base[k]
            for d in range(D):
                total += rows[i, d] * theta[pos + k * D + d]
            joint[k] = total
        logp += multiplicity[i] * normalise_joint(joint, multiplicity[i])
        for k in range(K):
            r = joint[k]
            counts[k] += r
            for d in range(D):
                sums[k, d] += r * rows[i, d]
    if not math.isfinite(logp):
        return -np.inf
    mixture_weights_gradient(theta, log_w, weight_prior, counts, grad)
    for k in range(K):
        for d in range(D):
            grad[pos + k * D + d] = sums[k, d] - (counts[k] + rate[d]) * rates[k, d] + shape[d]
    return logp


@_cached
def _negative_binomial(
    theta,
    rows,
    multiplicity,
    weight_prior,
    shape,
    rate,
    loc,
    scale,
    values,
    columns,
    bins,
    constant,
    grad,
):
    n, D = rows.shape
    K = weight_prior.shape[1]
    V = values.shape[0]
    grad[:] = 0.0
    log_w = mixture_log_weights(theta, weight_prior)
    logp = weight_log_prior(theta, log_w, weight_prior) + constant
    pos_mu, pos_a = K - 1, K - 1 + K * D
    mu, alpha, log_total = np.empty((K, D)), np.empty((K, D)), np.empty((K, D))
    base = np.empty(K)  # log w_k + sum_d a log(a / (a + mu))
    for k in range(K):
        base[k] = log_w[k]
        for d in range(D):
            u, v = theta[pos_mu + k * D + d], theta[pos_a + k * D + d]
            mu[k, d], alpha[k, d] = math.exp(u), math.exp(v)
            log_total[k, d] = max(u, v) + math.log1p(math.exp(-abs(u - v)))  # log(a + mu)
            base[k] += alpha[k, d] * (v - log_total[k, d])
            logp += gamma_log_prior(u, shape[d], rate[d])
            z = (v - loc[d]) / scale[d]
            logp -= math.log(scale[d]) + _HALF_LOG_2PI + 0.5 * z * z
    if not math.isfinite(logp):
        return -np.inf
    # lgamma(x + a) - lgamma(a) + x log(mu / (a + mu)) over each column's distinct values
    table = np.empty((K, V))
    for k in range(K):
        for g in range(V):
            d = int(columns[g])
            x, a = values[g], alpha[k, d]
            table[k, g] = (
                math.lgamma(x + a)
                - math.lgamma(a)
                + x * (theta[pos_mu + k * D + d] - log_total[k, d])
            )
    counts, histogram = np.zeros(K), np.zeros((K, V))
    joint = np.empty(K)
    for i in range(n):
        for k in range(K):
            total = base[k]
            for d in range(D):
                total += table[k, int(bins[i, d])]
            joint[k] = total
        logp += multiplicity[i] * normalise_joint(joint, multiplicity[i])
        for k in range(K):
            r = joint[k]
            counts[k] += r
            for d in range(D):
                histogram[k, int(bins[i, d])] += r
    if not math.isfinite(logp):
        return -np.inf
    mixture_weights_gradient(theta, log_w, weight_prior, counts, grad)
    sums, rising = np.zeros((K, D)), np.zeros((K, D))  # sum r x, sum r [psi(x + a) - psi(a)]
    for k in range(K):
        for g in range(V):
            d = int(columns[g])
            sums[k, d] += histogram[k, g] * values[g]
            rising[k, d] += histogram[k, g] * _digamma_difference(values[g], alpha[k, d])
    for k in range(K):
        for d in range(D):
            m, a, total = mu[k, d], alpha[k, d], mu[k, d] + alpha[k, d]
            v = theta[pos_a + k * D + d]
            grad[pos_mu + k * D + d] = (
                a / total * (sums[k, d] - m * counts[k]) + shape[d] - rate[d] * m
            )
            slope = (
                rising[k, d] + counts[k] * (v - log_total[k, d] + m / total) - sums[k, d] / total
            )
            grad[pos_a + k * D + d] = a * slope - (v - loc[d]) / (scale[d] * scale[d])
    return logp


@_cached
def _expand(theta, weight_prior, out):
    """Weights, then the exponentials of the other coordinates (every count parameter is
    the exponential of its coordinates)."""
    K = weight_prior.shape[1]
    log_w = mixture_log_weights(theta, weight_prior)
    for k in range(K):
        out[k] = math.exp(log_w[k])
    for i in range(K - 1, theta.shape[0]):
        out[i + 1] = math.exp(theta[i])


# ---------------------------------------------------------------------------------------
# C callbacks for nutpie: it calls them from its sampler threads without the GIL, passing
# the address of the packed buffer (:func:`count_density`)


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _buffer_at(address):
    header = nb.carray(address, (_HEADER,), np.float64)
    n, D = int(header[_N_ROWS]), int(header[_N_FEATURES])
    K, kind, V = int(header[_N_COMPONENTS]), int(header[_KIND]), int(header[_N_VALUES])
    return nb.carray(address, (_buffer_size(n, D, K, kind, V),), np.float64)


@_cached
def _evaluate(address, theta, grad):
    """:func:`_log_density` on the buffer at ``address``."""
    return _log_density(theta, *_unpack(_buffer_at(address)), grad)


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
        logp[0] = _evaluate(inputs_address, x, grad)
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
    """nutpie's callback storing the weights and the family's parameters of a draw; 0 on
    success, 1 on an error."""
    try:
        weight_prior = _unpack(_buffer_at(inputs_address))[2]
        x = nb.carray(x_address, (n_dim,))
        out = nb.carray(out_address, (n_expanded,))
        _expand(x, weight_prior, out)
    except Exception:  # noqa: BLE001 - an exception cannot cross into nutpie's threads
        return 1
    return 0


@dataclass(frozen=True)
class CountDensity:
    """One model's hand-written density: its kind, sizes and the read-only buffer the
    callbacks read (:func:`count_density`)."""

    kind: int
    n_components: int
    n_features: int
    buffer: np.ndarray

    #: nutpie's callbacks (C functions reading :attr:`buffer`), not fields
    nutpie_logp = nutpie_logp
    nutpie_expand = nutpie_expand

    @property
    def names(self) -> tuple[str, ...]:
        """The free variables after ``weights``, in ``theta``'s order."""
        return _NAMES[self.kind]

    @property
    def n_dim(self) -> int:
        K, D = self.n_components, self.n_features
        return K - 1 + len(self.names) * K * D

    @property
    def n_expanded(self) -> int:
        return self.n_dim + 1

    @property
    def shapes(self) -> dict[str, tuple[int, ...]]:
        """Each expanded variable's shape (``weights`` first), in the expansion's order."""
        K, D = self.n_components, self.n_features
        return {"weights": (K,), **{name: (K, D) for name in self.names}}

    def flat_start(self, start: dict[str, np.ndarray]) -> np.ndarray:
        """``theta`` at constrained values of the free variables (``weights`` and the
        family's parameters)."""
        blocks = [flat_mixture_weights(start)]
        blocks += [np.log(np.ravel(start[name])) for name in self.names]
        return np.concatenate(blocks).astype(np.float64)

    def log_density(self, theta: np.ndarray, grad: np.ndarray) -> float:
        """Log posterior density at ``theta``; its gradient is written into ``grad``."""
        theta = np.ascontiguousarray(theta, dtype=np.float64)
        return float(_log_density(theta, *_unpack(self.buffer), grad))

    def expand(self, theta: np.ndarray) -> np.ndarray:
        """Weights and the family's parameters at ``theta``, flattened."""
        out = np.empty(self.n_expanded)
        weight_prior = _unpack(self.buffer)[2]
        _expand(np.ascontiguousarray(theta, dtype=np.float64), weight_prior, out)
        return out
