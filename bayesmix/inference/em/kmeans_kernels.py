"""Compiled k-means passes for the k-means start (:func:`bayesmix.inference.em.init.kmeans`).

Five entry points, all serial and without ``fastmath``, so a freshly compiled function
and the one numba loads from its disk cache (``cache=True``) give the same bits, whatever
the number of threads:

- :func:`transposed_blocks`: the rows in blocks of ``BLOCK_ROWS``, each stored
  feature-major, once per data set (every seeding and Lloyd run of a k-means start reads
  them);
- :func:`squared_distances`: ``|x_n - c_k|^2`` for every centre and row (the greedy
  k-means++ trials);
- :func:`lloyd_passes`: Lloyd's iterations, each one pass over the rows that assigns
  every row to its nearest centre and adds it to that centre's weighted sums (in row
  order); then the assignment to the final centres (labels, squared distances);
- :func:`start_statistics`: the responsibility-weighted moments of a start (VB's first
  M-step), each row only for its non-zero responsibilities.
- :func:`kmeans_labels`: the restarts of a k-means start (seeds and Lloyd runs) in one
  call, from the generator's draws made beforehand (VB's k-means start, where the numpy
  calls of :func:`bayesmix.inference.em.init.kmeans`' seeding cost more than their work
  on small data and ~2 ms on its 10,000-row subsample).

Distances are summed as ``sum_d (x_d - c_d)^2`` in feature order, exact up to rounding
wherever the data lie (no ``|x|^2 - 2 x.c + |c|^2`` cancellation). The innermost loops run
over the rows of a transposed block: independent sums, vectorised by LLVM without
reassociating any of them. Ties go to the first centre, as ``numpy.argmin``. The data,
weights and centres are C-contiguous float64 arrays passed read-only
(:func:`~bayesmix.jit.read_only`), so each function is compiled for one signature only.
"""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = [
    "BLOCK_ROWS",
    "lloyd_passes",
    "kmeans_labels",
    "squared_distances",
    "start_statistics",
    "transposed_blocks",
]


# rows per block: the block's transposed rows and distances stay in the level-1 cache
BLOCK_ROWS = 256


@nb.njit(cache=True, inline="always")
def _transpose(X, start, stop, xt):
    """Rows ``start:stop`` of ``X`` into the first columns of ``xt`` ``(D, BLOCK_ROWS)``."""
    for b in range(stop - start):
        for d in range(X.shape[1]):
            xt[d, b] = X[start + b, d]


@nb.njit(cache=True, inline="always")
def _block_distances(xt, size, centres, dist):
    """``dist[k, b] = |x_b - c_k|^2`` for the ``size`` rows stored transposed in the
    first columns of ``xt`` ``(D, BLOCK_ROWS)``, summed over the features in order.
    The inner loops run over the rows of the block (independent sums: SIMD), four
    features per pass over ``dist`` (the same order of additions as one at a time)."""
    n_features = xt.shape[0]
    for k in range(centres.shape[0]):
        for b in range(size):
            dist[k, b] = 0.0
        d = 0
        while d + 4 <= n_features:
            c0, c1, c2, c3 = centres[k, d], centres[k, d + 1], centres[k, d + 2], centres[k, d + 3]
            for b in range(size):
                e0 = xt[d, b] - c0
                e1 = xt[d + 1, b] - c1
                e2 = xt[d + 2, b] - c2
                e3 = xt[d + 3, b] - c3
                dist[k, b] = (((dist[k, b] + e0 * e0) + e1 * e1) + e2 * e2) + e3 * e3
            d += 4
        while d < n_features:
            centre = centres[k, d]
            for b in range(size):
                e0 = xt[d, b] - centre
                dist[k, b] += e0 * e0
            d += 1


@nb.njit(cache=True, inline="always")
def _block_nearest(size, dist, best, best_dist):
    """``best[b]``: the nearest centre of row ``b`` of a block (the first of ties, as
    ``numpy.argmin``), ``best_dist[b]`` its squared distance."""
    for b in range(size):
        best[b] = 0
        best_dist[b] = dist[0, b]
    for k in range(1, dist.shape[0]):
        for b in range(size):
            if dist[k, b] < best_dist[b]:
                best[b] = k
                best_dist[b] = dist[k, b]


@nb.njit(cache=True, nogil=True, error_model="numpy")
def transposed_blocks(X):
    """The rows of ``X`` ``(n, D)`` in blocks of ``BLOCK_ROWS``, each transposed:
    ``(n_blocks, D, BLOCK_ROWS)`` (the last block's spare columns are not set)."""
    n_obs, n_features = X.shape
    n_blocks = (n_obs + BLOCK_ROWS - 1) // BLOCK_ROWS
    blocks = np.empty((n_blocks, n_features, BLOCK_ROWS))
    for block in range(n_blocks):
        start = block * BLOCK_ROWS
        _transpose(X, start, min(start + BLOCK_ROWS, n_obs), blocks[block])
    return blocks


@nb.njit(cache=True, nogil=True, error_model="numpy")
def squared_distances(blocks, n_obs, centres):
    """``|x_n - c_k|^2`` ``(K, n)`` for the ``n_obs`` rows in ``blocks``
    (:func:`transposed_blocks`) and ``centres`` ``(K, D)``."""
    out = np.empty((centres.shape[0], n_obs))
    dist = np.empty((centres.shape[0], BLOCK_ROWS))
    for block in range(blocks.shape[0]):
        start = block * BLOCK_ROWS
        stop = min(start + BLOCK_ROWS, n_obs)
        _block_distances(blocks[block], stop - start, centres, dist)
        out[:, start:stop] = dist[:, : stop - start]
    return out


@nb.njit(cache=True, nogil=True, error_model="numpy")
def lloyd_passes(X, blocks, sample_weight, centres, max_iter, threshold):
    """Weighted Lloyd iterations from ``centres`` ``(K, D)``, then the assignment.

    ``blocks``: ``X``'s :func:`transposed_blocks`, or an empty ``(0, D, BLOCK_ROWS)``
    array: each block is then transposed when it is read (one pass, no iterations,
    needs no copy of the data).

    Each iteration assigns every row to its nearest centre and adds ``w_n`` and ``w_n
    x_n`` to that centre's sums (in row order); a centre with mass moves to its
    weighted mean, one without stays. Stops after the iteration whose squared move,
    summed over the centres, is at most ``threshold``, or after ``max_iter``
    iterations (``0``: only the assignment).

    Returns
    -------
    centres : (K, D); labels : (n,) int64; distances : (n,) squared distance to the
    nearest final centre; n_iter : int
    """
    n_obs, n_features = X.shape
    n_components = centres.shape[0]
    current = centres.copy()
    labels = np.empty(n_obs, dtype=np.int64)
    dist = np.empty(n_obs)
    n_blocks = (n_obs + BLOCK_ROWS - 1) // BLOCK_ROWS
    kept = blocks.shape[0] > 0
    scratch = np.empty((n_features, BLOCK_ROWS))
    block_dist = np.empty((n_components, BLOCK_ROWS))
    best = np.empty(BLOCK_ROWS, dtype=np.int64)
    best_dist = np.empty(BLOCK_ROWS)
    mass = np.empty(n_components)
    sums = np.empty((n_components, n_features))
    n_iter = 0
    while True:
        last = n_iter == max_iter  # the assignment to the final centres
        mass[:] = 0.0
        sums[:] = 0.0
        for block in range(n_blocks):
            start = block * BLOCK_ROWS
            stop = min(start + BLOCK_ROWS, n_obs)
            if kept:
                rows = blocks[block]
            else:
                rows = scratch
                _transpose(X, start, stop, rows)
            _block_distances(rows, stop - start, current, block_dist)
            _block_nearest(stop - start, block_dist, best, best_dist)
            if last:
                labels[start:stop] = best[: stop - start]
                dist[start:stop] = best_dist[: stop - start]
                continue
            for b in range(stop - start):
                k = best[b]
                weight = sample_weight[start + b]
                mass[k] += weight
                for d in range(n_features):
                    sums[k, d] += X[start + b, d] * weight
        if last:
            return current, labels, dist, n_iter
        n_iter += 1
        shift = 0.0
        for k in range(n_components):
            if mass[k] > 0.0:
                for d in range(n_features):
                    moved = sums[k, d] / mass[k]
                    shift += (moved - current[k, d]) ** 2
                    current[k, d] = moved
        if shift <= threshold:
            max_iter = n_iter  # converged: the next pass is the assignment


@nb.njit(cache=True, nogil=True, error_model="numpy")
def start_statistics(X, sample_weight, shift, resp):
    """Mass ``sum_n w_n r_nk``, ``sum_n w_n r_nk (x_n - s)`` and ``sum_n w_n r_nk (x_n -
    s)(x_n - s)^T`` ``(K, D, D)`` of a start's responsibilities ``resp`` ``(n, K)``, ``s``
    the ``shift``: one pass over the rows, each row's terms only for its non-zero
    responsibilities (a hard start, such as the k-means labels, costs ``N D^2``, not
    ``K N D^2``), added in row order. Entry ``(d, e)`` adds ``(w r x_d) x_e``: symmetric
    up to rounding."""
    n_obs, n_features = X.shape
    n_components = resp.shape[1]
    mass = np.zeros(n_components)
    sum_x = np.zeros((n_components, n_features))
    sum_xx = np.zeros((n_components, n_features, n_features))
    row = np.empty(n_features)
    for n in range(n_obs):
        for d in range(n_features):
            row[d] = X[n, d] - shift[d]
        for k in range(n_components):
            weight = resp[n, k] * sample_weight[n]
            if weight == 0.0:
                continue
            mass[k] += weight
            for d in range(n_features):
                scaled = weight * row[d]
                sum_x[k, d] += scaled
                for e in range(n_features):
                    sum_xx[k, d, e] += scaled * row[e]
    return mass, sum_x, sum_xx


@nb.njit(cache=True, nogil=True, error_model="numpy")
def kmeans_labels(
    X, sample_weight, uniforms, n_components, n_trials, restarts, max_iter, threshold
):
    """The k-means fit of a k-means start in one call: ``restarts`` times greedy
    k-means++ seeds and Lloyd's iterations from them (:func:`lloyd_passes`) on the rows
    ``X`` (those :func:`bayesmix.inference.em.init.kmeans` fits: the rows of positive
    weight, or its subsample of them); returns the labels of these rows by the centres of
    the lowest cost (the first of equal costs) and those centres, as ``kmeans`` makes
    them from the same ``uniforms``
    (its generator's draws in order: per restart one for the first centre, then
    ``n_trials`` per further centre; ``n_trials`` 1 for plain k-means++): each centre
    the first row whose normalised cumulative ``w`` (first) or ``w d^2`` exceeds the
    uniform, of several trials the one with the lowest weighted cost."""
    n_obs, n_features = X.shape
    blocks = transposed_blocks(X)
    centres = np.empty((n_components, n_features))
    candidates = np.empty((n_trials, n_features))
    cdf = np.empty(n_obs)
    best_cost = np.inf
    best_labels = np.zeros(n_obs, dtype=np.int64)
    best_centres = centres.copy()
    used = 0
    for _ in range(restarts):
        _cumulative(sample_weight, cdf)
        row = _inverse_cdf(cdf, uniforms[used])
        used += 1
        centres[0] = X[row]
        dist = squared_distances(blocks, n_obs, centres[:1])[0]
        for k in range(1, n_components):
            score = sample_weight * dist
            if not score.sum() > 0.0:  # all rows on centres: draw by the weights
                score = sample_weight
            _cumulative(score, cdf)
            for t in range(n_trials):
                candidates[t] = X[min(_inverse_cdf(cdf, uniforms[used]), n_obs - 1)]
                used += 1
            trials = squared_distances(blocks, n_obs, candidates)
            best, lowest = 0, np.inf
            for t in range(n_trials):
                cost = 0.0
                for n in range(n_obs):
                    trials[t, n] = min(dist[n], trials[t, n])
                    cost += trials[t, n] * sample_weight[n]
                if cost < lowest:
                    best, lowest = t, cost
            centres[k] = candidates[best]
            dist = trials[best].copy()
        fitted, labels, dist, _ = lloyd_passes(
            X, blocks, sample_weight, centres, max_iter, threshold
        )
        cost = 0.0
        for n in range(n_obs):
            cost += sample_weight[n] * dist[n]
        if cost < best_cost:
            best_cost = cost
            best_labels = labels
            best_centres = fitted
    return best_labels, best_centres


@nb.njit(cache=True, inline="always")
def _inverse_cdf(cdf, uniform):
    """The first index whose ``cdf / cdf[-1]`` exceeds ``uniform`` (numpy's
    ``searchsorted(uniform, side="right")`` of the normalised ``cdf``)."""
    low, high = 0, cdf.shape[0]
    while low < high:
        middle = (low + high) // 2
        if cdf[middle] / cdf[-1] > uniform:
            high = middle
        else:
            low = middle + 1
    return low


@nb.njit(cache=True, inline="always")
def _cumulative(score, cdf):
    """``cdf = cumsum(score / score.sum())`` (``init._draw``'s probabilities)."""
    total = score.sum()
    running = 0.0
    for n in range(score.shape[0]):
        running += score[n] / total
        cdf[n] = running
