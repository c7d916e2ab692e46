"""Fused E-step kernels: one pass over the rows computes the additive sufficient statistics.

Each kernel walks the rows once, in parallel chunks, and for every row computes the
component log densities, the log-sum-exp, the responsibilities and adds them into the
chunk's statistics — no ``(N, K)`` or ``(N, K, D)`` temporaries. Chunk statistics are
summed at the end, in a fixed order, so results do not depend on thread scheduling.

Within a chunk, rows go in blocks of 64-256 (about ``_FULL_BLOCK_ELEMENTS`` values),
copied transposed (features x rows),
so every inner loop runs over the rows of a block: contiguous, the same length each time
and vectorised by LLVM (SIMD) — about twice as fast as looping over components and
features row by row. The block length is a run-time value on purpose: LLVM fully unrolls
a loop of constant length into scalar code instead of vectorising it. The last block of a
chunk is padded with zero-weight rows.

The matrix products of every kernel are register-tiled by hand, 4 x 4 tiles so each
load feeds four multiply-adds, with the factors, features and components zero-padded to
a multiple of four: the whitening ``L (x - mu_k)`` (``_whiten_quad``; full and tied),
the scatter ``sum r x x^T`` and the moments ``R [x; x^2]^T`` (``_product_tile``), the
spherical dots ``M x`` (``_combine_quad``). With at most three features the full
kernel takes unpadded loops instead (``_small_log_prob``, ``_small_moments``): there the
padding to four cost more than the tiles saved. (The tied kernel did too until the path
measured no faster there, 2.5 vs 2.6 ms at 100,000 x 2, K = 8, and cost 40% of its
compile.)
Compiled code is cached on disk (``cache=True``): only the first use on a machine pays
for compilation.

Float32 data is read as float32: the rows, the shift, the means and the precision factors
are float32 and the per-row arithmetic (whitening, distances, ``r x`` products) and the
moment sums within a block (at most 256 rows) run in float32, twice as many
lanes per SIMD instruction as float64. Responsibilities, the log-sum-exp, the
log-likelihood and every running sum across blocks stay float64, so rounding does not
grow with the number of rows. Each data type is a separate compiled specialisation.

Conventions (shifted units, i.e. ``x - shift``): ``lower[k]`` is the transpose of the
upper precision Cholesky factor ``U_k`` (``inv(cov_k) = U_k U_k^T``), so the whitened row
is ``y_j = sum_{i <= j} lower[k, j, i] (x_i - mu_ki)``.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import math
import os
import subprocess
import sys
import threading
import types

import numba as nb
import numpy as np

from bayesmix.jit import read_only

__all__ = [
    "estep_full",
    "estep_full_sparse",
    "estep_tied",
    "estep_diag",
    "estep_spherical",
    "cholesky_factors",
    "cholesky_lower",
    "compile_in_child",
    "lower_inverse",
    "serial_estep",
    "kernel_dtype",
    "lower_triangular_inverse",
    "n_chunks_for",
]

# Idle OpenMP workers sleep instead of spinning (GNU OpenMP, numba's default threading
# layer here, spins): on a busy machine (a test suite on every core, other processes) a
# spinning worker holds the core that the thread with the work needs, and a 3,000-row fit
# took 1 s instead of 10 ms. Waking a sleeping worker costs microseconds per pass. Read when
# the first parallel kernel starts the thread pool; a value the user set is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "passive")

_HALF_LOG_2PI = 0.5 * math.log(2.0 * math.pi)
# Let LLVM reassociate sums (SIMD reductions) and fuse multiply-adds; no assumptions about
# NaN or infinity (a zero weight has log weight -inf).
_FASTMATH = {"reassoc", "contract", "nsz", "arcp"}
_KERNEL_OPTIONS = {"parallel": True, "cache": True, "fastmath": _FASTMATH}


BLOCK_ROWS = 64
# The full kernel's blocks: rows x (padded) features about 4096 values (32 KB in float64,
# a level-1 cache), 64 to 256 rows. Its second moments are sums over the rows of a block
# with a horizontal (across SIMD lanes) reduction per entry at the end of each block: the
# longer the block, the fewer of those (1.2-1.5x faster than 64 rows at D = 16 and 32).
_FULL_BLOCK_ELEMENTS = 4096
_FULL_BLOCK_MAX = 256
# At most this many features, the full kernel takes an unpadded path (_small_log_prob)
_SMALL_FEATURES = 3
# the largest K for which K**_PRODUCT_ROWS stays far below the largest float (1e308)
_MAX_COMPONENTS_PRODUCT = 10_000
_PRODUCT_ROWS = 64
_EXP_FLOOR = -40.0
_EXP_TAYLOR = 1.0 / np.cumprod(np.concatenate(([1.0], np.arange(1.0, 13.0))))  # 1/i!


# Chunks per pass: enough to balance the threads of any common machine, few enough to keep
# the per-chunk sums cheap. Fixed, so results do not depend on the number of threads.
MAX_CHUNKS = 64


def n_chunks_for(n_obs: int) -> int:
    """Chunks for ``n_obs`` rows: at least 512 rows each, at most :data:`MAX_CHUNKS`."""
    return max(1, min(n_obs // 512, MAX_CHUNKS))


@nb.njit(cache=True, inline="always")
def _load_block(X, sample_weight, shift, start, stop, xt, w):
    """Rows ``start:stop`` minus ``shift``, transposed into the first ``D`` rows of
    ``xt``; weights into ``w``; the rest of the block is padded with zero rows of zero
    weight."""
    size = stop - start
    for b in range(size):
        w[b] = sample_weight[start + b]
    w[size:] = 0.0
    for d in range(X.shape[1]):
        centre = shift[d]
        for b in range(size):
            xt[d, b] = X[start + b, d] - centre
        xt[d, size:] = 0.0


@nb.njit(cache=True, inline="always")
def _normalise_block(log_prob, w, peak, total):
    """Turn ``log_prob (K, B)`` into weighted responsibilities ``w_b r_kb`` in place; return
    the block's weighted log-likelihood and weighted sum of ``log max_k r``."""
    n_components, block = log_prob.shape
    for b in range(block):
        peak[b] = log_prob[0, b]
        total[b] = 0.0
    for k in range(1, n_components):
        for b in range(block):
            peak[b] = max(peak[b], log_prob[k, b])
    for k in range(n_components):
        for b in range(block):
            # exp without a libm call, so the loop vectorises: e^x = (e^(x/128))^128 with
            # e^(x/128) from its Taylor polynomial (|x/128| <= 0.32: relative error 6e-15
            # after squaring). Terms below e^-40 of the row's largest (1) are dropped.
            x = log_prob[k, b] - peak[b]
            y = max(x, _EXP_FLOOR) * (1.0 / 128.0)
            p = _EXP_TAYLOR[12]
            for i in range(11, -1, -1):
                p = p * y + _EXP_TAYLOR[i]
            for _ in range(7):
                p *= p
            log_prob[k, b] = p if x > _EXP_FLOOR else 0.0
            total[b] += log_prob[k, b]
    log_lik = 0.0
    unit_weights = True
    for b in range(block):
        log_lik += w[b] * peak[b]
        unit_weights &= w[b] == 0.0 or w[b] == 1.0
    if unit_weights and n_components <= _MAX_COMPONENTS_PRODUCT:
        # One log per 64 rows: every total is in [1, K], so their product (at most
        # K**64) cannot overflow, and its log is the sum of their logs.
        log_max = 0.0
        for segment in range(0, block, _PRODUCT_ROWS):
            product = 1.0
            for b in range(segment, min(segment + _PRODUCT_ROWS, block)):
                product *= total[b] if w[b] > 0.0 else 1.0
            log_max -= math.log(product)
    else:
        log_max = 0.0
        for b in range(block):
            log_max -= w[b] * math.log(total[b])
    log_lik -= log_max
    for b in range(block):
        total[b] = w[b] / total[b]
    for k in range(n_components):
        for b in range(block):
            log_prob[k, b] *= total[b]
    return log_lik, log_max


@nb.njit(cache=True, inline="always")
def _first_moments(resp, k, xt, rx, mass, sum_x, zero):
    """Add component ``k``'s mass and ``sum r x`` of a block; leave ``r x`` in ``rx``.
    ``zero`` is a zero of the data type: the block's sums run in that type."""
    acc = 0.0
    for b in range(xt.shape[1]):
        acc += resp[k, b]
    mass[k] += acc
    for i in range(sum_x.shape[1]):
        acc_x = zero
        for b in range(xt.shape[1]):
            rx[i, b] = resp[k, b] * xt[i, b]
            acc_x += rx[i, b]
        sum_x[k, i] += acc_x


@nb.njit(cache=True, inline="always")
def _whiten_quad(lower, j, diff, y0, y1, y2, y3, maha):
    """Whitened features ``j .. j + 3`` of a block, ``y = lower[j:j+4] @ diff``, and their
    squares added into ``maha``. ``lower`` and ``diff`` are zero-padded to a multiple of
    four features, so every pass over the block takes a 4 x 4 tile of the factor: each
    load of ``diff`` serves four multiply-adds, and each load and store of ``y`` four."""
    block = diff.shape[1]
    for i in range(0, j + 4, 4):
        f0, f1, f2, f3 = lower[j], lower[j + 1], lower[j + 2], lower[j + 3]
        a0, a1, a2, a3 = f0[i], f0[i + 1], f0[i + 2], f0[i + 3]
        b0, b1, b2, b3 = f1[i], f1[i + 1], f1[i + 2], f1[i + 3]
        c0, c1, c2, c3 = f2[i], f2[i + 1], f2[i + 2], f2[i + 3]
        e0, e1, e2, e3 = f3[i], f3[i + 1], f3[i + 2], f3[i + 3]
        if i == 0:
            for b in range(block):
                d0, d1, d2, d3 = diff[0, b], diff[1, b], diff[2, b], diff[3, b]
                y0[b] = (a0 * d0 + a1 * d1) + (a2 * d2 + a3 * d3)
                y1[b] = (b0 * d0 + b1 * d1) + (b2 * d2 + b3 * d3)
                y2[b] = (c0 * d0 + c1 * d1) + (c2 * d2 + c3 * d3)
                y3[b] = (e0 * d0 + e1 * d1) + (e2 * d2 + e3 * d3)
        else:
            for b in range(block):
                d0, d1, d2, d3 = diff[i, b], diff[i + 1, b], diff[i + 2, b], diff[i + 3, b]
                y0[b] += (a0 * d0 + a1 * d1) + (a2 * d2 + a3 * d3)
                y1[b] += (b0 * d0 + b1 * d1) + (b2 * d2 + b3 * d3)
                y2[b] += (c0 * d0 + c1 * d1) + (c2 * d2 + c3 * d3)
                y3[b] += (e0 * d0 + e1 * d1) + (e2 * d2 + e3 * d3)
    for b in range(block):
        maha[b] += (y0[b] * y0[b] + y1[b] * y1[b]) + (y2[b] * y2[b] + y3[b] * y3[b])


@nb.njit(cache=True, fastmath=_FASTMATH)
def _product_tile(p, i, q, j, out, zero):
    """``out[i:i+4, j:j+4] += p[i:i+4] @ q[j:j+4].T``, the sums over a block's rows (the
    second axis): sixteen sums per pass over the block, each load serving four
    multiply-adds. ``zero`` is a zero of the data type: the block's sums run in it.

    Not inlined: compiled once per data type and shared by the four kernels through the
    disk cache (inlined, it made each kernel's cold compile 9-18% longer)."""
    s00 = s01 = s02 = s03 = s10 = s11 = s12 = s13 = zero
    s20 = s21 = s22 = s23 = s30 = s31 = s32 = s33 = zero
    for b in range(p.shape[1]):
        p0, p1, p2, p3 = p[i, b], p[i + 1, b], p[i + 2, b], p[i + 3, b]
        x0, x1, x2, x3 = q[j, b], q[j + 1, b], q[j + 2, b], q[j + 3, b]
        s00 += p0 * x0
        s01 += p0 * x1
        s02 += p0 * x2
        s03 += p0 * x3
        s10 += p1 * x0
        s11 += p1 * x1
        s12 += p1 * x2
        s13 += p1 * x3
        s20 += p2 * x0
        s21 += p2 * x1
        s22 += p2 * x2
        s23 += p2 * x3
        s30 += p3 * x0
        s31 += p3 * x1
        s32 += p3 * x2
        s33 += p3 * x3
    out[i, j] += s00
    out[i, j + 1] += s01
    out[i, j + 2] += s02
    out[i, j + 3] += s03
    out[i + 1, j] += s10
    out[i + 1, j + 1] += s11
    out[i + 1, j + 2] += s12
    out[i + 1, j + 3] += s13
    out[i + 2, j] += s20
    out[i + 2, j + 1] += s21
    out[i + 2, j + 2] += s22
    out[i + 2, j + 3] += s23
    out[i + 3, j] += s30
    out[i + 3, j + 1] += s31
    out[i + 3, j + 2] += s32
    out[i + 3, j + 3] += s33


@nb.njit(cache=True, inline="always")
def _scatter_quad(rx, xt, i, out, zero):
    """Rows ``i .. i + 3`` of a block's weighted scatter ``rx @ xt.T``, columns up to
    ``i + 3``, added into ``out`` (4 x 4 tiles, :func:`_product_tile`)."""
    for j in range(0, i + 4, 4):
        _product_tile(rx, i, xt, j, out, zero)


@nb.njit(cache=True, inline="always")
def _to_data_type(resp, rk):
    """Responsibilities ``resp (K, B)`` (float64) into ``rk`` (the data type, components
    padded to a multiple of four with zero rows); return the masses ``sum_b r_kb``."""
    mass = np.zeros(resp.shape[0])
    for k in range(resp.shape[0]):
        acc = 0.0
        for b in range(resp.shape[1]):
            acc += resp[k, b]
            rk[k, b] = resp[k, b]
        mass[k] = acc
    return mass


@nb.njit(cache=True, inline="always")
def _log_densities(xt, means, factors, const, diff, y0, y1, y2, y3, maha, log_prob):
    """Component log densities of a block into ``log_prob (K, B)``: ``const_k`` minus half
    the squared norm of the whitened difference ``factors[k] (x - mu_k)``, four whitened
    features per pass (:func:`_whiten_quad`; ``xt``, ``diff`` and ``factors`` zero-padded
    to a multiple of four features)."""
    n_components, n_features = means.shape
    padded, block = xt.shape
    for k in range(n_components):
        for d in range(n_features):
            for b in range(block):
                diff[d, b] = xt[d, b] - means[k, d]
        maha[:] = 0.0
        for j in range(0, padded, 4):
            _whiten_quad(factors[k], j, diff, y0, y1, y2, y3, maha)
        for b in range(block):
            log_prob[k, b] = const[k] - 0.5 * maha[b]


@nb.njit(cache=True, inline="always")
def _store_chunk(c, chunk_mass, chunk_x, chunk_xx, mass, sum_x, sum_xx):
    """Chunk ``c``'s statistics into the kernel's outputs (the first ``D`` features of the
    padded scatter)."""
    n_components, n_features = chunk_x.shape
    mass[c] = chunk_mass
    sum_x[c] = chunk_x
    for k in range(n_components):
        for i in range(n_features):
            for j in range(n_features):
                sum_xx[c, k, i, j] = chunk_xx[k, i, j]


@nb.njit(cache=True, fastmath=_FASTMATH)
def _small_log_prob(xt, means, lower, const, n_features, log_prob):
    """Component log densities of a block with at most three features, into ``log_prob``:
    ``xt``, ``means`` and ``lower`` are zero-padded (to four features), one pass over the
    block per component with the difference, the whitening and the squared norm in
    registers. One or two features take the two-feature loop (the padding is zero)."""
    block = xt.shape[1]
    for k in range(means.shape[0]):
        m0, m1, m2 = means[k, 0], means[k, 1], means[k, 2]
        f = lower[k]
        l00, l10, l11 = f[0, 0], f[1, 0], f[1, 1]
        l20, l21, l22 = f[2, 0], f[2, 1], f[2, 2]
        c = const[k]
        if n_features == 3:
            for b in range(block):
                d0, d1, d2 = xt[0, b] - m0, xt[1, b] - m1, xt[2, b] - m2
                y0 = l00 * d0
                y1 = l10 * d0 + l11 * d1
                y2 = (l20 * d0 + l21 * d1) + l22 * d2
                log_prob[k, b] = c - 0.5 * ((y0 * y0 + y1 * y1) + y2 * y2)
        else:
            for b in range(block):
                d0, d1 = xt[0, b] - m0, xt[1, b] - m1
                y0 = l00 * d0
                y1 = l10 * d0 + l11 * d1
                log_prob[k, b] = c - 0.5 * (y0 * y0 + y1 * y1)


@nb.njit(cache=True, fastmath=_FASTMATH)
def _small_moments(resp, xt, n_features, rk, mass, sum_x, sum_xx, zero):
    """Add a block's mass, ``sum r x`` and the lower triangle of ``sum r x x^T`` for at
    most three features (``xt`` zero-padded), one pass over the block per component after
    the responsibilities are converted to the data type (into ``rk``)."""
    block = xt.shape[1]
    for k in range(resp.shape[0]):
        acc = 0.0
        for b in range(block):
            acc += resp[k, b]
            rk[b] = resp[k, b]
        mass[k] += acc
        s0 = s1 = s2 = s00 = s10 = s11 = s20 = s21 = s22 = zero
        if n_features == 3:
            for b in range(block):
                x0, x1, x2 = xt[0, b], xt[1, b], xt[2, b]
                p0, p1, p2 = rk[b] * x0, rk[b] * x1, rk[b] * x2
                s0 += p0
                s1 += p1
                s2 += p2
                s00 += p0 * x0
                s10 += p1 * x0
                s11 += p1 * x1
                s20 += p2 * x0
                s21 += p2 * x1
                s22 += p2 * x2
        else:
            for b in range(block):
                x0, x1 = xt[0, b], xt[1, b]
                p0, p1 = rk[b] * x0, rk[b] * x1
                s0 += p0
                s1 += p1
                s00 += p0 * x0
                s10 += p1 * x0
                s11 += p1 * x1
        sum_x[k, 0] += s0
        sum_xx[k, 0, 0] += s00
        if n_features > 1:
            sum_x[k, 1] += s1
            sum_xx[k, 1, 0] += s10
            sum_xx[k, 1, 1] += s11
        if n_features > 2:
            sum_x[k, 2] += s2
            sum_xx[k, 2, 0] += s20
            sum_xx[k, 2, 1] += s21
            sum_xx[k, 2, 2] += s22


@nb.njit(**_KERNEL_OPTIONS)
def _estep_full(X, sample_weight, shift, log_weights, means, lower, log_det, n_chunks):
    """Statistics for per-component full covariances.

    Returns ``mass (K,)``, ``sum_x (K, D)``, ``sum_xx (K, D, D)``, the weighted
    log-likelihood and the weighted sum of ``log max_k r_nk``.
    """
    n_obs, n_features = X.shape
    n_components = means.shape[0]
    padded = (n_features + 3) // 4 * 4
    block = min(max(BLOCK_ROWS, _FULL_BLOCK_ELEMENTS // padded), _FULL_BLOCK_MAX, n_obs)
    mass = np.zeros((n_chunks, n_components))
    sum_x = np.zeros((n_chunks, n_components, n_features))
    sum_xx = np.zeros((n_chunks, n_components, n_features, n_features))
    log_lik = np.zeros(n_chunks)
    log_max = np.zeros(n_chunks)
    const = log_weights + log_det - n_features * _HALF_LOG_2PI
    factors = np.zeros((n_components, padded, padded), X.dtype)
    factors[:, :n_features, :n_features] = lower
    zero = np.zeros(1, X.dtype)[0]
    # Up to three features: one fused pass per component and block, no padding to four
    small = n_features <= _SMALL_FEATURES
    centres = np.zeros((n_components, padded), X.dtype)
    centres[:, :n_features] = means
    for c in nb.prange(n_chunks):
        chunk_mass = np.zeros(n_components)
        chunk_x = np.zeros((n_components, n_features))
        chunk_xx = np.zeros((n_components, padded, padded))
        # padded features stay zero
        xt = np.zeros((padded, block), X.dtype)
        diff = np.zeros((padded, block), X.dtype)
        rx = np.zeros((padded, block), X.dtype)
        resp = np.empty((n_components, block))
        w = np.empty(block)
        y0 = np.empty(block, X.dtype)
        y1 = np.empty(block, X.dtype)
        y2 = np.empty(block, X.dtype)
        y3 = np.empty(block, X.dtype)
        maha = np.empty(block, X.dtype)
        peak = np.empty(block)
        total = np.empty(block)
        stop = (c + 1) * n_obs // n_chunks
        for start in range(c * n_obs // n_chunks, stop, block):
            _load_block(X, sample_weight, shift, start, min(start + block, stop), xt, w)
            if small:
                _small_log_prob(xt, centres, factors, const, n_features, resp)
            else:
                _log_densities(xt, means, factors, const, diff, y0, y1, y2, y3, maha, resp)
            block_lik, block_max = _normalise_block(resp, w, peak, total)
            log_lik[c] += block_lik
            log_max[c] += block_max
            if small:
                _small_moments(resp, xt, n_features, y0, chunk_mass, chunk_x, chunk_xx, zero)
                continue
            for k in range(n_components):
                _first_moments(resp, k, xt, rx, chunk_mass, chunk_x, zero)
                for i in range(0, padded, 4):
                    _scatter_quad(rx, xt, i, chunk_xx[k], zero)
        _store_chunk(c, chunk_mass, chunk_x, chunk_xx, mass, sum_x, sum_xx)
    return mass, sum_x, sum_xx, log_lik, log_max


@nb.njit(cache=True, inline="always")
def _flush_rows(k, gathered, weights, fill, rx, mass, sum_x, sum_xx, zero):
    """Add component ``k``'s gathered rows (``gathered[k]``, features x rows, and their
    responsibilities ``weights[k]``; the first ``fill[k]`` of them) into its mass, ``sum
    r x`` and lower scatter (4 x 4 tiles, :func:`_scatter_quad`), and empty the buffer.
    A partly filled buffer is zeroed past ``fill[k]``: those columns add exact zeros."""
    padded, capacity = rx.shape
    n_features = sum_x.shape[1]
    x = gathered[k]
    r = weights[k]
    for t in range(fill[k], capacity):
        r[t] = 0.0
        for i in range(n_features):
            x[i, t] = zero
    acc = 0.0
    for t in range(capacity):
        acc += r[t]
    mass[k] += acc
    for i in range(n_features):
        acc_x = zero
        for t in range(capacity):
            rx[i, t] = r[t] * x[i, t]
            acc_x += rx[i, t]
        sum_x[k, i] += acc_x
    for i in range(0, padded, 4):
        _scatter_quad(rx, x, i, sum_xx[k], zero)
    fill[k] = 0


@nb.njit(**_KERNEL_OPTIONS)
def _estep_full_sparse(X, sample_weight, shift, log_weights, means, lower, log_det, n_chunks):
    """:func:`_estep_full` with each component's moments summed over only the rows that it
    holds: a responsibility below ``e^-40`` of the row's largest is exactly zero
    (:func:`_normalise_block`), and with well-separated components most are. Each
    block's rows of non-zero responsibility are copied into the component's buffer
    (features x rows, as many rows as a block), and a full buffer is added into the
    statistics in 4 x 4 tiles (:func:`_flush_rows`): the scatter, half of the dense
    kernel's work, shrinks by up to K times. The same statistics up to the order of the
    sums; any number of features (no small-feature path).
    """
    n_obs, n_features = X.shape
    n_components = means.shape[0]
    padded = (n_features + 3) // 4 * 4
    block = min(max(BLOCK_ROWS, _FULL_BLOCK_ELEMENTS // padded), _FULL_BLOCK_MAX, n_obs)
    mass = np.zeros((n_chunks, n_components))
    sum_x = np.zeros((n_chunks, n_components, n_features))
    sum_xx = np.zeros((n_chunks, n_components, n_features, n_features))
    log_lik = np.zeros(n_chunks)
    log_max = np.zeros(n_chunks)
    const = log_weights + log_det - n_features * _HALF_LOG_2PI
    factors = np.zeros((n_components, padded, padded), X.dtype)
    factors[:, :n_features, :n_features] = lower
    zero = np.zeros(1, X.dtype)[0]
    for c in nb.prange(n_chunks):
        chunk_mass = np.zeros(n_components)
        chunk_x = np.zeros((n_components, n_features))
        chunk_xx = np.zeros((n_components, padded, padded))
        # padded features stay zero
        xt = np.zeros((padded, block), X.dtype)
        diff = np.zeros((padded, block), X.dtype)
        rx = np.zeros((padded, block), X.dtype)
        gathered = np.zeros((n_components, padded, block), X.dtype)
        weights = np.zeros((n_components, block))  # float64, as resp
        fill = np.zeros(n_components, np.intp)
        rows = np.empty(block, np.intp)
        resp = np.empty((n_components, block))
        w = np.empty(block)
        y0 = np.empty(block, X.dtype)
        y1 = np.empty(block, X.dtype)
        y2 = np.empty(block, X.dtype)
        y3 = np.empty(block, X.dtype)
        maha = np.empty(block, X.dtype)
        peak = np.empty(block)
        total = np.empty(block)
        stop = (c + 1) * n_obs // n_chunks
        for start in range(c * n_obs // n_chunks, stop, block):
            _load_block(X, sample_weight, shift, start, min(start + block, stop), xt, w)
            _log_densities(xt, means, factors, const, diff, y0, y1, y2, y3, maha, resp)
            block_lik, block_max = _normalise_block(resp, w, peak, total)
            log_lik[c] += block_lik
            log_max[c] += block_max
            for k in range(n_components):
                # the rows holding mass, in order (branch-free), then copied a buffer's
                # worth at a time, feature by feature
                count = 0
                for b in range(block):
                    rows[count] = b
                    count += resp[k, b] != 0.0
                done = 0
                while done < count:
                    first = fill[k]
                    take = min(count - done, block - first)
                    x = gathered[k]
                    for d in range(n_features):
                        for t in range(take):
                            x[d, first + t] = xt[d, rows[done + t]]
                    for t in range(take):
                        weights[k, first + t] = resp[k, rows[done + t]]
                    fill[k] = first + take
                    done += take
                    if fill[k] == block:
                        _flush_rows(
                            k, gathered, weights, fill, rx, chunk_mass, chunk_x, chunk_xx, zero
                        )
        for k in range(n_components):
            if fill[k] > 0:
                _flush_rows(k, gathered, weights, fill, rx, chunk_mass, chunk_x, chunk_xx, zero)
        _store_chunk(c, chunk_mass, chunk_x, chunk_xx, mass, sum_x, sum_xx)
    return mass, sum_x, sum_xx, log_lik, log_max


@nb.njit(**_KERNEL_OPTIONS)
def _estep_tied(X, sample_weight, shift, log_weights, centres, lower, log_det, n_chunks):
    """Statistics for one shared covariance; ``centres[k] = mu_k @ U`` (whitened means).

    ``sum_xx`` is the weighted scatter of the rows, ``(D, D)``. The three products of a
    block run in 4 x 4 register tiles, features (and components) zero-padded to a
    multiple of four: the whitening ``y = L x`` (:func:`_whiten_quad`), the first moments
    ``R X^T`` and the scatter ``(w X) X^T`` (:func:`_product_tile`); the distances
    ``|y - c_k|^2`` take four features per pass over the block.
    """
    n_obs, n_features = X.shape
    n_components = centres.shape[0]
    padded = (n_features + 3) // 4 * 4
    padded_k = (n_components + 3) // 4 * 4
    block = min(max(BLOCK_ROWS, _FULL_BLOCK_ELEMENTS // padded), _FULL_BLOCK_MAX, n_obs)
    mass = np.zeros((n_chunks, n_components))
    sum_x = np.zeros((n_chunks, n_components, n_features))
    sum_xx = np.zeros((n_chunks, n_features, n_features))
    log_lik = np.zeros(n_chunks)
    log_max = np.zeros(n_chunks)
    const = log_weights + log_det - n_features * _HALF_LOG_2PI
    factor = np.zeros((padded, padded), X.dtype)
    factor[:n_features, :n_features] = lower
    whitened_centres = np.zeros((n_components, padded), X.dtype)
    whitened_centres[:, :n_features] = centres
    # Sums over one block (at most _FULL_BLOCK_MAX rows) run in the data type, in SIMD;
    # the chunk's running sums are float64.
    zero = np.zeros(1, X.dtype)[0]
    for c in nb.prange(n_chunks):
        chunk_mass = np.zeros(n_components)
        chunk_x = np.zeros((padded_k, padded))
        chunk_xx = np.zeros((padded, padded))
        # padded features and components stay zero
        xt = np.zeros((padded, block), X.dtype)
        yt = np.zeros((padded, block), X.dtype)
        rx = np.zeros((padded, block), X.dtype)
        rk = np.zeros((padded_k, block), X.dtype)
        norms = np.empty(block, X.dtype)
        dist = np.empty(block, X.dtype)
        resp = np.empty((n_components, block))
        w = np.empty(block)
        peak = np.empty(block)
        total = np.empty(block)
        stop = (c + 1) * n_obs // n_chunks
        for start in range(c * n_obs // n_chunks, stop, block):
            _load_block(X, sample_weight, shift, start, min(start + block, stop), xt, w)
            norms[:] = 0.0
            for j in range(0, padded, 4):
                _whiten_quad(factor, j, xt, yt[j], yt[j + 1], yt[j + 2], yt[j + 3], norms)
            for k in range(n_components):
                for j in range(0, padded, 4):
                    c0, c1 = whitened_centres[k, j], whitened_centres[k, j + 1]
                    c2, c3 = whitened_centres[k, j + 2], whitened_centres[k, j + 3]
                    if j == 0:
                        for b in range(block):
                            e0, e1 = yt[j, b] - c0, yt[j + 1, b] - c1
                            e2, e3 = yt[j + 2, b] - c2, yt[j + 3, b] - c3
                            dist[b] = (e0 * e0 + e1 * e1) + (e2 * e2 + e3 * e3)
                    else:
                        for b in range(block):
                            e0, e1 = yt[j, b] - c0, yt[j + 1, b] - c1
                            e2, e3 = yt[j + 2, b] - c2, yt[j + 3, b] - c3
                            dist[b] += (e0 * e0 + e1 * e1) + (e2 * e2 + e3 * e3)
                for b in range(block):
                    resp[k, b] = const[k] - 0.5 * dist[b]
            block_lik, block_max = _normalise_block(resp, w, peak, total)
            log_lik[c] += block_lik
            log_max[c] += block_max
            chunk_mass += _to_data_type(resp, rk)
            for k in range(0, padded_k, 4):
                for i in range(0, padded, 4):
                    _product_tile(rk, k, xt, i, chunk_x, zero)
            for i in range(n_features):
                for b in range(block):
                    rx[i, b] = w[b] * xt[i, b]
            for i in range(0, padded, 4):
                _scatter_quad(rx, xt, i, chunk_xx, zero)
        mass[c] = chunk_mass
        sum_x[c] = chunk_x[:n_components, :n_features]
        sum_xx[c] = chunk_xx[:n_features, :n_features]
    return mass, sum_x, sum_xx, log_lik, log_max


@nb.njit(cache=True, fastmath=_FASTMATH)
def _moment_rows(xt, n_features, count, extra, out):
    """A block's rows for the moment products: ``out[:D] = xt[:D]``; then, from row
    ``D``, the squares of the first ``count`` features (diag: all of them) and, if
    ``extra`` (spherical), the squared norms ``|x|^2`` as one row. ``out`` is
    zero-padded to a multiple of four rows."""
    block = xt.shape[1]
    for d in range(n_features):
        for b in range(block):
            out[d, b] = xt[d, b]
    for d in range(count):
        for b in range(block):
            out[n_features + d, b] = xt[d, b] * xt[d, b]
    if extra:
        norms = out[n_features + count]
        for b in range(block):
            norms[b] = 0.0
        for d in range(n_features):
            for b in range(block):
                norms[b] += xt[d, b] * xt[d, b]


@nb.njit(cache=True, inline="always")
def _moment_products(resp, rk, rows, n_rows, mass, moments, zero):
    """Add a block's masses and ``R @ rows.T`` (components and rows in 4 x 4 tiles,
    :func:`_product_tile`) into ``mass`` and ``moments``."""
    mass += _to_data_type(resp, rk)
    for k in range(0, rk.shape[0], 4):
        for i in range(0, n_rows, 4):
            _product_tile(rk, k, rows, i, moments, zero)


@nb.njit(**_KERNEL_OPTIONS)
def _estep_diag(X, sample_weight, shift, log_weights, means, precision, log_det, n_chunks):
    """Statistics for axis-aligned covariances; ``precision (K, D)`` holds ``1 / var``
    (spherical: the same value across features). ``sum_xx`` is ``sum r x^2``, ``(K, D)``.

    The distances take four features per pass over the block (features zero-padded to a
    multiple of four, with zero precision); ``sum r x`` and ``sum r x^2`` are one product
    of the responsibilities with the rows ``[x; x^2]`` in 4 x 4 tiles."""
    n_obs, n_features = X.shape
    n_components = means.shape[0]
    padded = (n_features + 3) // 4 * 4
    padded_k = (n_components + 3) // 4 * 4
    n_rows = (2 * n_features + 3) // 4 * 4
    block = min(max(BLOCK_ROWS, _FULL_BLOCK_ELEMENTS // n_rows), _FULL_BLOCK_MAX, n_obs)
    mass = np.zeros((n_chunks, n_components))
    sum_x = np.zeros((n_chunks, n_components, n_features))
    sum_xx = np.zeros((n_chunks, n_components, n_features))
    log_lik = np.zeros(n_chunks)
    log_max = np.zeros(n_chunks)
    const = log_weights + log_det - n_features * _HALF_LOG_2PI
    centres = np.zeros((n_components, padded), X.dtype)
    centres[:, :n_features] = means
    scales = np.zeros((n_components, padded), X.dtype)
    scales[:, :n_features] = precision
    # Sums over one block (at most _FULL_BLOCK_MAX rows) run in the data type, in SIMD;
    # the chunk's running sums are float64.
    zero = np.zeros(1, X.dtype)[0]
    for c in nb.prange(n_chunks):
        chunk_mass = np.zeros(n_components)
        moments = np.zeros((padded_k, n_rows))
        # padded features, rows and components stay zero
        xt = np.zeros((padded, block), X.dtype)
        rows = np.zeros((n_rows, block), X.dtype)
        rk = np.zeros((padded_k, block), X.dtype)
        dist = np.empty(block, X.dtype)
        resp = np.empty((n_components, block))
        w = np.empty(block)
        peak = np.empty(block)
        total = np.empty(block)
        stop = (c + 1) * n_obs // n_chunks
        for start in range(c * n_obs // n_chunks, stop, block):
            _load_block(X, sample_weight, shift, start, min(start + block, stop), xt, w)
            for k in range(n_components):
                for j in range(0, padded, 4):
                    m0, m1, m2, m3 = (
                        centres[k, j],
                        centres[k, j + 1],
                        centres[k, j + 2],
                        centres[k, j + 3],
                    )
                    p0, p1, p2, p3 = (
                        scales[k, j],
                        scales[k, j + 1],
                        scales[k, j + 2],
                        scales[k, j + 3],
                    )
                    if j == 0:
                        for b in range(block):
                            e0, e1 = xt[j, b] - m0, xt[j + 1, b] - m1
                            e2, e3 = xt[j + 2, b] - m2, xt[j + 3, b] - m3
                            dist[b] = (p0 * e0 * e0 + p1 * e1 * e1) + (p2 * e2 * e2 + p3 * e3 * e3)
                    else:
                        for b in range(block):
                            e0, e1 = xt[j, b] - m0, xt[j + 1, b] - m1
                            e2, e3 = xt[j + 2, b] - m2, xt[j + 3, b] - m3
                            dist[b] += (p0 * e0 * e0 + p1 * e1 * e1) + (p2 * e2 * e2 + p3 * e3 * e3)
                for b in range(block):
                    resp[k, b] = const[k] - 0.5 * dist[b]
            block_lik, block_max = _normalise_block(resp, w, peak, total)
            log_lik[c] += block_lik
            log_max[c] += block_max
            _moment_rows(xt, n_features, n_features, False, rows)
            _moment_products(resp, rk, rows, n_rows, chunk_mass, moments, zero)
        mass[c] = chunk_mass
        sum_x[c] = moments[:n_components, :n_features]
        sum_xx[c] = moments[:n_components, n_features : 2 * n_features]
    return mass, sum_x, sum_xx, log_lik, log_max


@nb.njit(cache=True, fastmath=_FASTMATH)
def _combine_quad(coefs, k, rows, count, out):
    """``out[k:k+4] = coefs[k:k+4, :count] @ rows[:count]`` (``count`` a multiple of
    four): four outputs from four input rows per pass over the block, each load of
    ``rows`` serving four multiply-adds and each load and store of ``out`` four."""
    o0, o1, o2, o3 = out[k], out[k + 1], out[k + 2], out[k + 3]
    for i in range(0, count, 4):
        a0, a1, a2, a3 = coefs[k, i], coefs[k, i + 1], coefs[k, i + 2], coefs[k, i + 3]
        b0, b1, b2, b3 = (
            coefs[k + 1, i],
            coefs[k + 1, i + 1],
            coefs[k + 1, i + 2],
            coefs[k + 1, i + 3],
        )
        c0, c1, c2, c3 = (
            coefs[k + 2, i],
            coefs[k + 2, i + 1],
            coefs[k + 2, i + 2],
            coefs[k + 2, i + 3],
        )
        e0, e1, e2, e3 = (
            coefs[k + 3, i],
            coefs[k + 3, i + 1],
            coefs[k + 3, i + 2],
            coefs[k + 3, i + 3],
        )
        if i == 0:
            for b in range(rows.shape[1]):
                d0, d1, d2, d3 = rows[i, b], rows[i + 1, b], rows[i + 2, b], rows[i + 3, b]
                o0[b] = (a0 * d0 + a1 * d1) + (a2 * d2 + a3 * d3)
                o1[b] = (b0 * d0 + b1 * d1) + (b2 * d2 + b3 * d3)
                o2[b] = (c0 * d0 + c1 * d1) + (c2 * d2 + c3 * d3)
                o3[b] = (e0 * d0 + e1 * d1) + (e2 * d2 + e3 * d3)
        else:
            for b in range(rows.shape[1]):
                d0, d1, d2, d3 = rows[i, b], rows[i + 1, b], rows[i + 2, b], rows[i + 3, b]
                o0[b] += (a0 * d0 + a1 * d1) + (a2 * d2 + a3 * d3)
                o1[b] += (b0 * d0 + b1 * d1) + (b2 * d2 + b3 * d3)
                o2[b] += (c0 * d0 + c1 * d1) + (c2 * d2 + c3 * d3)
                o3[b] += (e0 * d0 + e1 * d1) + (e2 * d2 + e3 * d3)


@nb.njit(**_KERNEL_OPTIONS)
def _estep_spherical(X, sample_weight, shift, log_weights, means, precision, log_det, n_chunks):
    """Statistics for one variance per component; ``precision (K,)`` holds ``1 / var``.

    With the same variance in every direction, ``|x - mu_k|^2 = |x|^2 - 2 mu_k . x +
    |mu_k|^2``: the squared norm of a row is shared by the components, so each component
    costs one multiply-add per feature for the distances and one for ``sum r x``.
    ``sum_xx`` is ``sum r |x|^2``, ``(K,)``. Both products (the dots ``M X`` and the
    moments ``R [X; |x|^2]^T``) run in 4 x 4 tiles, zero-padded to multiples of four.
    """
    n_obs, n_features = X.shape
    n_components = means.shape[0]
    padded = (n_features + 3) // 4 * 4
    padded_k = (n_components + 3) // 4 * 4
    n_rows = (n_features + 4) // 4 * 4
    block = min(max(BLOCK_ROWS, _FULL_BLOCK_ELEMENTS // n_rows), _FULL_BLOCK_MAX, n_obs)
    mass = np.zeros((n_chunks, n_components))
    sum_x = np.zeros((n_chunks, n_components, n_features))
    sum_xx = np.zeros((n_chunks, n_components))
    log_lik = np.zeros(n_chunks)
    log_max = np.zeros(n_chunks)
    const = log_weights + log_det - n_features * _HALF_LOG_2PI
    # Sums over one block (at most _FULL_BLOCK_MAX rows) run in the data type, in SIMD;
    # the chunk's running sums are float64.
    zero = np.zeros(1, X.dtype)[0]
    mean_norms = (means * means).sum(axis=1)
    centres = np.zeros((padded_k, padded), X.dtype)
    for k in range(n_components):
        for d in range(n_features):
            centres[k, d] = means[k, d]
    for c in nb.prange(n_chunks):
        chunk_mass = np.zeros(n_components)
        moments = np.zeros((padded_k, n_rows))
        # padded features, rows and components stay zero
        xt = np.zeros((padded, block), X.dtype)
        rows = np.zeros((n_rows, block), X.dtype)
        rk = np.zeros((padded_k, block), X.dtype)
        dot = np.empty((padded_k, block), X.dtype)
        resp = np.empty((n_components, block))
        w = np.empty(block)
        peak = np.empty(block)
        total = np.empty(block)
        stop = (c + 1) * n_obs // n_chunks
        for start in range(c * n_obs // n_chunks, stop, block):
            _load_block(X, sample_weight, shift, start, min(start + block, stop), xt, w)
            _moment_rows(xt, n_features, 0, True, rows)
            for k in range(0, padded_k, 4):
                _combine_quad(centres, k, xt, padded, dot)
            for k in range(n_components):
                half_precision = 0.5 * precision[k]
                for b in range(block):
                    squared = max(rows[n_features, b] - 2.0 * dot[k, b] + mean_norms[k], 0.0)
                    resp[k, b] = const[k] - half_precision * squared
            block_lik, block_max = _normalise_block(resp, w, peak, total)
            log_lik[c] += block_lik
            log_max[c] += block_max
            _moment_products(resp, rk, rows, n_rows, chunk_mass, moments, zero)
        mass[c] = chunk_mass
        sum_x[c] = moments[:n_components, :n_features]
        sum_xx[c] = moments[:n_components, n_features]
    return mass, sum_x, sum_xx, log_lik, log_max


def _serial_twin(kernel):
    """``kernel`` compiled without ``parallel=True`` (``prange`` runs as ``range``), under
    its own name ``<name>_serial`` (numba's disk cache is keyed by the function's name, so
    the twins never overwrite each other's entries).

    A one-chunk pass (fewer than 1,024 rows) runs in the calling thread: the parallel
    launch alone cost 30-250 us a call on this machine (more when it is busy), against
    about 10 us for the whole pass over iris; EM on small data makes thousands of
    passes (mclust's table over 14 models and K = 1..9)."""
    source = kernel.py_func
    name = f"{source.__name__}_serial"
    twin = types.FunctionType(
        source.__code__, source.__globals__, name, source.__defaults__, source.__closure__
    )
    twin.__qualname__ = f"{source.__qualname__}_serial"
    twin.__doc__ = source.__doc__
    # numpy's error model, as the parallel kernel's prange body has: a NaN row (data
    # that turns non-finite mid-stream) gives NaN statistics for the caller to report,
    # not a ZeroDivisionError from inside the kernel
    options = {**_KERNEL_OPTIONS, "parallel": False, "error_model": "numpy"}
    compiled = nb.njit(**options)(twin)
    globals()[name] = compiled
    return compiled


def _summed_over_chunks(kernel, symmetric: bool):
    """``kernel`` called with read-only inputs, its per-chunk statistics summed in order.

    Numba compiles one specialisation per argument type, and a read-only array (a memmap, a
    Dask chunk, an array a caller froze) is a different type from a writable one: passing
    every array read-only means each kernel is compiled, and cached, exactly once.

    The chunk sums are added here by numpy, in chunk order, rather than inside the
    ``parallel=True`` kernel, where numba would split the reduction by thread: with a
    chunk count that does not depend on the thread count either, results are bitwise the
    same whatever ``NUMBA_NUM_THREADS`` is. Kernels fill only the lower triangle of
    symmetric second moments; it is mirrored here.

    Every process runs the kernel as loaded from numba's disk cache, never the code of a
    compile in this process: with ``fastmath`` reassociation, the machine code of a fresh
    compile and the code numba loads from its cache round differently in the last bits
    (measured: the full and tied kernels), so a process that compiled a kernel would not
    reproduce the fits of the processes that load it. A kernel missing from the cache is
    therefore compiled, and cached, by a child process (:func:`compile_in_child`).
    """
    first_call = threading.Lock()
    ready: set[tuple[np.dtype, bool]] = set()
    serial = _serial_twin(kernel)

    @functools.wraps(kernel.py_func)
    def call(X, sample_weight, shift, log_weights, means, scale, log_det, n_chunks):
        dtype = kernel_dtype(X.dtype)
        frozen = [
            read_only(X, dtype),
            read_only(sample_weight),
            read_only(shift, dtype),
            read_only(log_weights),
            read_only(means, dtype),
            read_only(scale, dtype),
            read_only(log_det),
            n_chunks,
        ]
        one_chunk = n_chunks == 1
        if (dtype, one_chunk) not in ready:
            with first_call:
                compile_in_child(serial if one_chunk else kernel, frozen)
                ready.add((dtype, one_chunk))
        if one_chunk:
            mass, sum_x, sum_xx, log_lik, log_max = serial(*frozen)
        else:
            # No more threads than chunks: waking idle workers costs more than a small
            # pass (and far more on a busy machine). Results do not depend on the thread
            # count.
            threads = nb.get_num_threads()
            nb.set_num_threads(max(1, min(n_chunks, threads)))
            try:
                mass, sum_x, sum_xx, log_lik, log_max = kernel(*frozen)
            finally:
                nb.set_num_threads(threads)
        if one_chunk:
            mass, sum_x, sum_xx, log_lik, log_max = (
                mass[0],
                sum_x[0],
                sum_xx[0],
                log_lik[0],
                log_max[0],
            )
        else:
            mass, sum_x, sum_xx = mass.sum(axis=0), sum_x.sum(axis=0), sum_xx.sum(axis=0)
            log_lik, log_max = log_lik.sum(), log_max.sum()
        if symmetric:
            rows, cols = _upper_indices(sum_xx.shape[-1])
            sum_xx[..., rows, cols] = sum_xx[..., cols, rows]
        return mass, sum_x, sum_xx, log_lik, log_max

    return call


_CHILD_COMPILE_TIMEOUT = 900.0  # seconds; a cold compile takes 20-30


def cholesky_factors(cov: np.ndarray) -> np.ndarray | None:
    """Lower Cholesky factors of symmetric matrices ``(..., D, D)`` in one compiled call,
    or ``None`` if any of them is not numerically positive definite (a pivot not above
    zero): the caller then takes the careful route (``jittered_cholesky``).

    ``numpy.linalg.cholesky`` on a stack of small matrices costs ~25 us a call in
    checks and dispatch; this costs ~2 us for K = 9 factors of size 4.
    """
    cov = np.asarray(cov, dtype=np.float64)
    batch = np.ascontiguousarray(cov.reshape((-1,) + cov.shape[-2:]))
    lower, ok = cholesky_lower(batch)
    return lower.reshape(cov.shape) if ok else None


@nb.njit(cache=True, error_model="numpy")
def cholesky_lower(cov):
    """Compiled core of :func:`cholesky_factors` (``cov`` ``(B, D, D)`` C-contiguous):
    the lower factors and whether every pivot was positive."""
    n_matrices, size, _ = cov.shape
    lower = np.zeros_like(cov)
    for b in range(n_matrices):
        for j in range(size):
            pivot = cov[b, j, j]
            for m in range(j):
                pivot -= lower[b, j, m] * lower[b, j, m]
            if not pivot > 0.0:  # also NaN
                return lower, False
            diagonal = math.sqrt(pivot)
            lower[b, j, j] = diagonal
            for i in range(j + 1, size):
                acc = cov[b, i, j]
                for m in range(j):
                    acc -= lower[b, i, m] * lower[b, j, m]
                lower[b, i, j] = acc / diagonal
    return lower, True


def lower_triangular_inverse(lower: np.ndarray) -> np.ndarray:
    """Inverses of lower-triangular matrices ``(..., D, D)`` by forward substitution.

    One compiled call for the whole batch: LAPACK's ``dtrtri`` called once per matrix
    cost ~8 us a call from Python, and EM inverts the K Cholesky factors at every
    iteration (thousands of iterations for mclust's 14-model table on small data).
    """
    lower = np.asarray(lower, dtype=np.float64)
    batch = np.ascontiguousarray(lower.reshape((-1,) + lower.shape[-2:]))
    return lower_inverse(batch).reshape(lower.shape)


@nb.njit(cache=True)
def lower_inverse(lower):
    """Compiled core of :func:`lower_triangular_inverse` (``lower`` ``(B, D, D)``)."""
    n_matrices, size, _ = lower.shape
    out = np.zeros_like(lower)
    for b in range(n_matrices):
        for j in range(size):
            out[b, j, j] = 1.0 / lower[b, j, j]
            for i in range(j + 1, size):
                acc = 0.0
                for m in range(j, i):
                    acc += lower[b, i, m] * out[b, m, j]
                out[b, i, j] = -acc / lower[b, i, i]
    return out


@functools.cache
def _upper_indices(n_features: int) -> tuple[np.ndarray, np.ndarray]:
    """Row and column indices of the strict upper triangle of a ``D x D`` matrix."""
    return np.triu_indices(n_features, 1)


def compile_in_child(kernel, args, command: str | None = None) -> None:
    """Compile ``kernel`` in a child Python process if it is not in numba's disk cache yet,
    so that this process loads it from there. ``command``: the Python code the child
    runs to compile it for ``args``' types (default: :func:`compile_kernel` for an E-step
    kernel).

    If the child fails (or caching is unavailable), this process compiles the kernel itself
    on its first call, as numba always does: fits stay correct, and bitwise equal across
    processes that all compiled their own.
    """
    signature = tuple(nb.typeof(arg) for arg in args)
    if signature in kernel.overloads:  # another thread got here first
        return
    if kernel._cache.load_overload(signature, kernel.targetctx) is not None:
        return
    if command is None:
        name = kernel.py_func.__name__.removeprefix("_estep_")
        dtype = args[0].dtype.name
        command = f"import {__name__} as k; k.compile_kernel({name!r}, {dtype!r})"
    with _compile_lock(kernel, signature):
        # another process may have compiled it while this one waited for the lock
        if kernel._cache.load_overload(signature, kernel.targetctx) is not None:
            return
        try:
            subprocess.run(
                [sys.executable, "-c", command],
                env={**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, sys.path))},
                capture_output=True,
                timeout=_CHILD_COMPILE_TIMEOUT,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired):
            pass  # this process compiles on the first call instead


@contextlib.contextmanager
def _compile_lock(kernel, signature):
    """An exclusive lock, across processes, on compiling ``kernel`` for ``signature``:
    processes that start a fit on a fresh machine at the same time (pytest-xdist workers,
    Dask workers) would otherwise each compile the same kernel in a child of their own,
    the CPU of every compile spent once per process. A lock file in numba's cache
    directory (none where ``fcntl`` or the directory is unavailable: no lock)."""
    try:
        import fcntl

        key = f"{kernel.py_func.__qualname__}-{signature}".encode()
        digest = hashlib.sha1(key).hexdigest()[:16]
        os.makedirs(kernel._cache.cache_path, exist_ok=True)
        handle = open(os.path.join(kernel._cache.cache_path, f"compile-{digest}.lock"), "a")
    except (ImportError, OSError, AttributeError):
        yield
        return
    try:
        fcntl.flock(handle, fcntl.LOCK_EX)
        yield
    finally:
        handle.close()  # releases the lock


def compile_kernel(name: str, dtype: str = "float64") -> None:
    """Compile (and cache on disk) the E-step kernel ``_estep_<name>`` (``name``: ``full``,
    ``tied``, ``diag``, ``spherical``, or one of them with ``_serial``, its one-chunk twin)
    for data of type ``dtype`` on a tiny problem."""
    data_type = kernel_dtype(np.dtype(dtype))
    rows = read_only(np.linspace(-1.0, 1.0, 6).reshape(3, 2), data_type)
    ones, pair = read_only(np.ones(3)), read_only(np.zeros(2))
    lower = np.stack([np.eye(2)] * 2)
    scale = {"full": lower, "tied": lower[0], "diag": np.ones((2, 2)), "spherical": np.ones(2)}
    globals()[f"_estep_{name}"](
        rows,
        ones,
        read_only(pair, data_type),
        pair,
        rows[:2],
        read_only(scale[name.removesuffix("_serial").removesuffix("_sparse")], data_type),
        pair,
        1,
    )


def serial_estep(name: str):
    """The one-chunk (serial) E-step kernel ``name`` (``full``, ``tied``, ``diag``,
    ``spherical``) for use inside other compiled code; its arguments are those of the
    parallel kernel, with ``n_chunks = 1``."""
    return globals()[f"_estep_{name}_serial"]


def kernel_dtype(dtype: np.dtype) -> np.dtype:
    """The floating type the kernels compute in for data of type ``dtype``: float32 for
    float32 data, float64 for everything else."""
    return np.dtype(np.float32) if dtype == np.float32 else np.dtype(np.float64)


estep_full = _summed_over_chunks(_estep_full, symmetric=True)
estep_full_sparse = _summed_over_chunks(_estep_full_sparse, symmetric=True)
estep_tied = _summed_over_chunks(_estep_tied, symmetric=True)
estep_diag = _summed_over_chunks(_estep_diag, symmetric=False)
estep_spherical = _summed_over_chunks(_estep_spherical, symmetric=False)
