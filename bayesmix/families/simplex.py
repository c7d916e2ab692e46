"""The mixture weights in PyMC's simplex coordinates, and the normalisation of a row's
log joint densities into responsibilities, for the hand-written log densities that
nutpie samples (:mod:`bayesmix.families.gaussian.logdensity`,
:mod:`bayesmix.families.count_logdensity`, :mod:`bayesmix.families.student_t_logdensity`,
:mod:`bayesmix.families.category_logdensity`): numba functions, cached on disk.

``weights ~ Dirichlet(concentration)`` is sampled through ``K - 1`` unconstrained
coordinates ``y``: ``w = softmax([y, -sum(y)])``, log Jacobian ``log K + sum log w``.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

__all__ = [
    "log_weights",
    "dirichlet_log_prior",
    "weights_gradient",
    "flat_weights",
    "normalise_joint",
]


def flat_weights(weights: np.ndarray) -> np.ndarray:
    """The ``K - 1`` simplex coordinates of ``weights`` (PyMC's forward transform)."""
    log_w = np.log(np.asarray(weights, dtype=np.float64))
    return log_w[:-1] - log_w.mean()


@nb.njit(cache=True, nogil=True, error_model="numpy")
def log_weights(theta, K):
    """``log softmax([y, -sum(y)])`` from the first ``K - 1`` coordinates."""
    z = np.empty(K)
    last = 0.0
    for k in range(K - 1):
        z[k] = theta[k]
        last -= theta[k]
    z[K - 1] = last
    top = z.max()
    total = 0.0
    for k in range(K):
        total += math.exp(z[k] - top)
    return z - (top + math.log(total))


@nb.njit(cache=True, nogil=True, error_model="numpy")
def dirichlet_log_prior(log_w, concentration):
    """Dirichlet log density plus the simplex transform's log Jacobian (log K + sum log w)."""
    K = log_w.shape[0]
    logp = math.log(K) + math.lgamma(concentration.sum())
    for k in range(K):
        logp += concentration[k] * log_w[k] - math.lgamma(concentration[k])
    return logp


@nb.njit(cache=True, nogil=True, error_model="numpy")
def weights_gradient(log_w, concentration, counts, grad):
    """Gradient in the simplex coordinates of sum_k (alpha_k + N_k) log w_k, written into
    ``grad[:K - 1]``; ``counts`` are the components' responsibility totals."""
    K = log_w.shape[0]
    total = concentration.sum() + counts.sum()
    last = concentration[K - 1] + counts[K - 1] - total * math.exp(log_w[K - 1])
    for k in range(K - 1):
        grad[k] = concentration[k] + counts[k] - total * math.exp(log_w[k]) - last


@nb.njit(cache=True, nogil=True, error_model="numpy", inline="always")
def normalise_joint(joint, weight):
    """Replace a row's log joint densities ``log w_k + log p(x | theta_k)`` (``joint``,
    length ``K``) by its responsibilities times ``weight``, in place, and return the
    row's log density ``log sum_k exp(joint_k)`` (NaN when every entry is ``-inf``; the
    callers then return ``-inf``)."""
    top = -np.inf
    for k in range(joint.shape[0]):
        top = max(top, joint[k])
    total = 0.0
    for k in range(joint.shape[0]):
        joint[k] = math.exp(joint[k] - top)
        total += joint[k]
    scale = weight / total
    for k in range(joint.shape[0]):
        joint[k] *= scale
    return top + math.log(total)
