"""The truncated stick-breaking weight prior (Dirichlet and Pitman-Yor processes) of NUTS
and ADVI, shared by every hand-written log density nutpie samples
(:mod:`bayesmix.families.gaussian.logdensity`, :mod:`bayesmix.families.count_logdensity`,
:mod:`bayesmix.families.category_logdensity`, :mod:`bayesmix.families.normal_logdensity`,
:mod:`bayesmix.families.student_t_logdensity`) and by the PyMC models
(:func:`stick_breaking_weights`).

``K - 1`` sticks ``v_k ~ Beta(a_k, b_k)`` (Ishwaran & James 2001; ``a_k = 1 - d``,
``b_k = alpha + k d``, :func:`bayesmix.inference.vb_weights.truncated_stick_parameters`)
give ``w_k = v_k prod_{j<k} (1 - v_j)`` and the K-th weight the remainder
``prod_{j<K} (1 - v_j)``, so the weights sum to one without renormalising. They are
sampled as the logits ``u_k = logit(v_k)`` (PyMC's ``Beta`` with its log-odds
transform): on that scale every stick's prior is smooth, log-concave and independent of
the others, an empty component's stick has exponential tails instead of the Beta's
pile-up at ``v -> 0``, and the likelihood's gradient is conjugate-like,
``(a_k + N_k) sigma(-u_k) - (b_k + N_{>k}) sigma(u_k)``.

The family densities carry their weight prior as one ``(3, K)`` block
(:func:`weight_prior_inputs`): the Dirichlet's concentration in row 0, the sticks' Beta
parameters in rows 1-2 (first ``K - 1`` columns; zeros under the Dirichlet), and
:func:`mixture_log_weights`, :func:`weight_log_prior` and
:func:`mixture_weights_gradient` take whichever prior the block holds (the Dirichlet's in
:mod:`bayesmix.families.simplex`'s coordinates).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numba as nb
import numpy as np

from bayesmix.families import simplex
from bayesmix.families.simplex import (
    dirichlet_log_prior,
    flat_weights,
    log_weights,
    weights_gradient,
)
from bayesmix.jit import cached

__all__ = [
    "STICKS_KEY",
    "log_sigmoid",
    "stick_log_weights",
    "stick_log_prior",
    "stick_weights_gradient",
    "stick_breaking_weights",
    "flat_sticks",
    "flat_mixture_weights",
    "weight_prior_inputs",
    "is_stick_breaking",
    "mixture_log_weights",
    "weight_log_prior",
    "mixture_weights_gradient",
]

# compiled under a name carrying the digest of the modules whose compiled functions
# they call (bayesmix.jit.cached): numba keys a cached function by its own file only
_cached = cached(simplex, nogil=True, error_model="numpy")

#: where a family's resolved priors (a mapping) carry the sticks' Beta parameters
#: ``(2, K - 1)`` when the weights have a stick-breaking prior
STICKS_KEY = "weight_sticks"


@nb.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def log_sigmoid(u):
    """``log(1 / (1 + exp(-u)))`` without overflow."""
    if u >= 0.0:
        return -math.log1p(math.exp(-u))
    return u - math.log1p(math.exp(u))


@nb.njit(cache=True, nogil=True, error_model="numpy")
def stick_log_weights(theta, K):
    """``log w`` ``(K,)`` from the stick logits ``theta[:K - 1]``: ``log w_k = log
    sigma(u_k) + sum_{j<k} log sigma(-u_j)``, the K-th the remainder."""
    log_w = np.empty(K)
    rest = 0.0  # log prod_{j<k} (1 - v_j)
    for k in range(K - 1):
        log_w[k] = log_sigmoid(theta[k]) + rest
        rest += log_sigmoid(-theta[k])
    log_w[K - 1] = rest
    return log_w


@nb.njit(cache=True, nogil=True, error_model="numpy")
def stick_log_prior(theta, sticks, K):
    """Log density of the stick logits ``u_k = logit(v_k)``, ``v_k ~ Beta(a_k, b_k)``
    (``sticks[:, k] = (a_k, b_k)``), log Jacobian included: ``sum_k a_k log sigma(u_k)
    + b_k log sigma(-u_k) - log B(a_k, b_k)``."""
    logp = 0.0
    for k in range(K - 1):
        a, b = sticks[0, k], sticks[1, k]
        logp += a * log_sigmoid(theta[k]) + b * log_sigmoid(-theta[k])
        logp -= math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)
    return logp


@nb.njit(cache=True, nogil=True, error_model="numpy")
def stick_weights_gradient(theta, sticks, counts, grad):
    """Gradient in the stick logits of :func:`stick_log_prior` plus ``sum_k N_k log
    w_k`` (``counts`` the responsibility totals), written into ``grad[:K - 1]``:
    ``(a_k + N_k) sigma(-u_k) - (b_k + sum_{j>k} N_j) sigma(u_k)``."""
    K = counts.shape[0]
    later = 0.0
    for k in range(K - 1, 0, -1):
        later += counts[k]  # sum_{j > k - 1} N_j
        u = theta[k - 1]
        sig = math.exp(log_sigmoid(u))
        grad[k - 1] = (sticks[0, k - 1] + counts[k - 1]) * (1.0 - sig) - (
            sticks[1, k - 1] + later
        ) * sig


@nb.njit(cache=True, nogil=True, error_model="numpy")
def is_stick_breaking(weight_prior):
    """Whether a ``(3, K)`` block of :func:`weight_prior_inputs` holds sticks (K > 1 and
    a positive first Beta parameter)."""
    return weight_prior.shape[1] > 1 and weight_prior[1, 0] > 0.0


@_cached
def mixture_log_weights(theta, weight_prior):
    """``log w`` ``(K,)`` from the first ``K - 1`` coordinates of ``theta``: the sticks'
    logits or the Dirichlet's simplex coordinates, as ``weight_prior`` says."""
    K = weight_prior.shape[1]
    if is_stick_breaking(weight_prior):
        return stick_log_weights(theta, K)
    return log_weights(theta, K)


@_cached
def weight_log_prior(theta, log_w, weight_prior):
    """The weights' log prior in their coordinates, Jacobian included: the sticks'
    (:func:`stick_log_prior`) or the Dirichlet's (``dirichlet_log_prior`` of ``log_w``)."""
    if is_stick_breaking(weight_prior):
        return stick_log_prior(theta, weight_prior[1:], weight_prior.shape[1])
    return dirichlet_log_prior(log_w, weight_prior[0])


@_cached
def mixture_weights_gradient(theta, log_w, weight_prior, counts, grad):
    """Gradient in the weights' coordinates of :func:`weight_log_prior` plus ``sum_k N_k
    log w_k`` (``counts`` the components' responsibility totals), into ``grad[:K - 1]``."""
    if is_stick_breaking(weight_prior):
        stick_weights_gradient(theta, weight_prior[1:], counts, grad)
    else:
        weights_gradient(log_w, weight_prior[0], counts, grad)


def weight_prior_inputs(priors: Mapping[str, np.ndarray], n_components: int) -> np.ndarray:
    """The ``(3, K)`` weight-prior block of a family's resolved ``priors``: row 0 the
    Dirichlet's ``weight_concentration``; rows 1-2 the sticks' Beta parameters
    ``priors["weight_sticks"]`` ``(2, K - 1)`` in the first ``K - 1`` columns when
    present (a stick-breaking prior), else zeros."""
    K = n_components
    block = np.zeros((3, K))
    block[0] = np.broadcast_to(np.asarray(priors["weight_concentration"], dtype=float), (K,))
    sticks = priors.get(STICKS_KEY)
    if sticks is not None and K > 1:
        block[1:, : K - 1] = np.asarray(sticks, dtype=float)
    return block


def flat_sticks(weights: np.ndarray) -> np.ndarray:
    """The sticks ``v_k = w_k / sum_{j>=k} w_j`` ``(K - 1,)`` of ``weights`` ``(K,)``,
    kept inside ``[1e-6, 1 - 1e-6]`` so that their logits are finite."""
    weights = np.asarray(weights, dtype=float)
    tail = np.cumsum(weights[::-1])[::-1]
    return np.clip(weights[:-1] / tail[:-1], 1e-6, 1.0 - 1e-6)


def flat_mixture_weights(start: Mapping[str, np.ndarray]) -> np.ndarray:
    """The ``K - 1`` weight coordinates of a start: the logits of ``start["weights_sticks"]``
    (the stick-breaking prior's free variable) when given, else the simplex coordinates
    of ``start["weights"]``."""
    if "weights_sticks" in start:
        v = np.asarray(start["weights_sticks"], dtype=float)
        return np.log(v) - np.log1p(-v)
    return flat_weights(start["weights"])


def stick_breaking_weights(name: str, sticks, n_components: int):
    """Weights ``(K,)`` (a Deterministic, dims ``component``) under the truncated
    stick-breaking prior with Beta parameters ``sticks`` ``(2, K - 1)``, in the current
    ``pm.Model``: the free variable ``{name}_sticks`` ``v ~ Beta(a, b)`` ``(K - 1,)``,
    sampled on PyMC's log-odds scale, and ``w_k = v_k prod_{j<k} (1 - v_j)``, the K-th
    weight the remainder ``prod_{j<K} (1 - v_j)`` (the module notes). The hand-written
    densities use the same coordinates."""
    import pymc as pm
    import pytensor.tensor as pt

    v = pm.Beta(f"{name}_sticks", alpha=sticks[0], beta=sticks[1], shape=(n_components - 1,))
    rest = pt.cumprod(1.0 - v)
    before = pt.concatenate([pt.ones((1,)), rest[:-1]])
    return pm.Deterministic(name, pt.concatenate([v * before, rest[-1:]]), dims="component")
