"""Fused E-step kernels: one pass over the rows computes the additive sufficient statistics.

Each kernel walks the rows once, in parallel chunks, and for every row computes the
component log densities, the log-sum-exp, the responsibilities and adds them into the
chunk's statistics — no ``(N, K)`` or ``(N, K, D)`` temporaries. Chunk statistics are
summed at the end, in a fixed order, so results do not depend on thread scheduling.
Compiled code is cached on disk (``cache=True``): only the first use on a machine pays
for compilation.

Conventions (shifted units, i.e. ``x - shift``): ``lower[k]`` is the transpose of the
upper precision Cholesky factor ``U_k`` (``inv(cov_k) = U_k U_k^T``), so the whitened row
is ``y_j = sum_{i <= j} lower[k, j, i] (x_i - mu_ki)``.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

__all__ = ["estep_full", "estep_tied", "estep_diag", "n_chunks_for"]

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
# Let LLVM reassociate sums (SIMD reductions) and fuse multiply-adds; no assumptions about
# NaN or infinity (a zero weight has log weight -inf).
_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}


def n_chunks_for(n_obs: int) -> int:
    """Enough chunks to balance the threads, few enough to keep per-chunk sums cheap."""
    return max(1, min(n_obs // 512, 8 * nb.get_num_threads()))


@nb.njit(cache=True, inline="always")
def _normalise_row(log_prob, n_components):
    """Turn ``log_prob`` into responsibilities in place; return the row's log-sum-exp
    and ``log max_k r``. One ``exp`` per component."""
    peak = log_prob[0]
    for k in range(1, n_components):
        peak = max(peak, log_prob[k])
    total = 0.0
    for k in range(n_components):
        log_prob[k] = math.exp(log_prob[k] - peak)
        total += log_prob[k]
    for k in range(n_components):
        log_prob[k] /= total
    log_total = math.log(total)
    return peak + log_total, -log_total


@nb.njit(parallel=True, cache=True, fastmath=_FASTMATH)
def estep_full(X, sample_weight, shift, log_weights, means, lower, log_det, n_chunks):
    """Statistics for per-component full covariances.

    Returns ``mass (K,)``, ``sum_x (K, D)``, ``sum_xx (K, D, D)``, the weighted
    log-likelihood and the weighted sum of ``log max_k r_nk``.
    """
    n_obs, n_features = X.shape
    n_components = means.shape[0]
    mass = np.zeros((n_chunks, n_components))
    sum_x = np.zeros((n_chunks, n_components, n_features))
    sum_xx = np.zeros((n_chunks, n_components, n_features, n_features))
    log_lik = np.zeros(n_chunks)
    log_max = np.zeros(n_chunks)
    const = log_weights + log_det - n_features * _HALF_LOG_2PI
    for c in nb.prange(n_chunks):
        # chunk-local accumulators: no aliasing with other chunks' rows of the outputs
        chunk_mass = np.zeros(n_components)
        chunk_x = np.zeros((n_components, n_features))
        chunk_xx = np.zeros((n_components, n_features, n_features))
        chunk_lik = 0.0
        chunk_max = 0.0
        x = np.empty(n_features)
        diff = np.empty(n_features)
        log_prob = np.empty(n_components)
        for n in range(c * n_obs // n_chunks, (c + 1) * n_obs // n_chunks):
            for d in range(n_features):
                x[d] = X[n, d] - shift[d]
            for k in range(n_components):
                for d in range(n_features):
                    diff[d] = x[d] - means[k, d]
                maha = 0.0
                for j in range(n_features):
                    y = 0.0
                    for i in range(j + 1):
                        y += lower[k, j, i] * diff[i]
                    maha += y * y
                log_prob[k] = const[k] - 0.5 * maha
            log_norm, log_top = _normalise_row(log_prob, n_components)
            w = sample_weight[n]
            chunk_lik += w * log_norm
            chunk_max += w * log_top
            for k in range(n_components):
                r = w * log_prob[k]
                chunk_mass[k] += r
                for i in range(n_features):
                    rx = r * x[i]
                    chunk_x[k, i] += rx
                    for j in range(i + 1):
                        chunk_xx[k, i, j] += rx * x[j]
        mass[c] = chunk_mass
        sum_x[c] = chunk_x
        sum_xx[c] = chunk_xx
        log_lik[c] = chunk_lik
        log_max[c] = chunk_max
    out = sum_xx.sum(axis=0)
    for i in range(n_features):
        for j in range(i):
            out[:, j, i] = out[:, i, j]
    return mass.sum(axis=0), sum_x.sum(axis=0), out, log_lik.sum(), log_max.sum()


@nb.njit(parallel=True, cache=True, fastmath=_FASTMATH)
def estep_tied(X, sample_weight, shift, log_weights, centres, lower, log_det, n_chunks):
    """Statistics for one shared covariance; ``centres[k] = mu_k @ U`` (whitened means).

    ``sum_xx`` is the weighted scatter of the rows, ``(D, D)``.
    """
    n_obs, n_features = X.shape
    n_components = centres.shape[0]
    mass = np.zeros((n_chunks, n_components))
    sum_x = np.zeros((n_chunks, n_components, n_features))
    sum_xx = np.zeros((n_chunks, n_features, n_features))
    log_lik = np.zeros(n_chunks)
    log_max = np.zeros(n_chunks)
    const = log_weights + log_det - n_features * _HALF_LOG_2PI
    for c in nb.prange(n_chunks):
        chunk_mass = np.zeros(n_components)
        chunk_x = np.zeros((n_components, n_features))
        chunk_xx = np.zeros((n_features, n_features))
        chunk_lik = 0.0
        chunk_max = 0.0
        x = np.empty(n_features)
        y = np.empty(n_features)
        log_prob = np.empty(n_components)
        for n in range(c * n_obs // n_chunks, (c + 1) * n_obs // n_chunks):
            for d in range(n_features):
                x[d] = X[n, d] - shift[d]
            for j in range(n_features):
                acc = 0.0
                for i in range(j + 1):
                    acc += lower[j, i] * x[i]
                y[j] = acc
            for k in range(n_components):
                maha = 0.0
                for j in range(n_features):
                    delta = y[j] - centres[k, j]
                    maha += delta * delta
                log_prob[k] = const[k] - 0.5 * maha
            log_norm, log_top = _normalise_row(log_prob, n_components)
            w = sample_weight[n]
            chunk_lik += w * log_norm
            chunk_max += w * log_top
            for k in range(n_components):
                r = w * log_prob[k]
                chunk_mass[k] += r
                for i in range(n_features):
                    chunk_x[k, i] += r * x[i]
            for i in range(n_features):
                wx = w * x[i]
                for j in range(i + 1):
                    chunk_xx[i, j] += wx * x[j]
        mass[c] = chunk_mass
        sum_x[c] = chunk_x
        sum_xx[c] = chunk_xx
        log_lik[c] = chunk_lik
        log_max[c] = chunk_max
    out = sum_xx.sum(axis=0)
    for i in range(n_features):
        for j in range(i):
            out[j, i] = out[i, j]
    return mass.sum(axis=0), sum_x.sum(axis=0), out, log_lik.sum(), log_max.sum()


@nb.njit(parallel=True, cache=True, fastmath=_FASTMATH)
def estep_diag(X, sample_weight, shift, log_weights, means, precision, log_det, n_chunks):
    """Statistics for axis-aligned covariances; ``precision (K, D)`` holds ``1 / var``
    (spherical: the same value across features). ``sum_xx`` is ``sum r x^2``, ``(K, D)``."""
    n_obs, n_features = X.shape
    n_components = means.shape[0]
    mass = np.zeros((n_chunks, n_components))
    sum_x = np.zeros((n_chunks, n_components, n_features))
    sum_xx = np.zeros((n_chunks, n_components, n_features))
    log_lik = np.zeros(n_chunks)
    log_max = np.zeros(n_chunks)
    const = log_weights + log_det - n_features * _HALF_LOG_2PI
    for c in nb.prange(n_chunks):
        chunk_mass = np.zeros(n_components)
        chunk_x = np.zeros((n_components, n_features))
        chunk_xx = np.zeros((n_components, n_features))
        chunk_lik = 0.0
        chunk_max = 0.0
        x = np.empty(n_features)
        log_prob = np.empty(n_components)
        for n in range(c * n_obs // n_chunks, (c + 1) * n_obs // n_chunks):
            for d in range(n_features):
                x[d] = X[n, d] - shift[d]
            for k in range(n_components):
                maha = 0.0
                for d in range(n_features):
                    delta = x[d] - means[k, d]
                    maha += precision[k, d] * delta * delta
                log_prob[k] = const[k] - 0.5 * maha
            log_norm, log_top = _normalise_row(log_prob, n_components)
            w = sample_weight[n]
            chunk_lik += w * log_norm
            chunk_max += w * log_top
            for k in range(n_components):
                r = w * log_prob[k]
                chunk_mass[k] += r
                for d in range(n_features):
                    rx = r * x[d]
                    chunk_x[k, d] += rx
                    chunk_xx[k, d] += rx * x[d]
        mass[c] = chunk_mass
        sum_x[c] = chunk_x
        sum_xx[c] = chunk_xx
        log_lik[c] = chunk_lik
        log_max[c] = chunk_max
    return (
        mass.sum(axis=0),
        sum_x.sum(axis=0),
        sum_xx.sum(axis=0),
        log_lik.sum(),
        log_max.sum(),
    )
