"""Compiled M-steps of mclust's ten constrained covariance models (VEI, EVI, VEE, VEV,
EEV, EVV, EVE, VVE; the other four are the basic structures).

One call does a whole M-step: the component scatters from the raw moments about the new
means (plus the conjugate prior's scale and count under MAP), the components whose
scatter is more than rounding, the eigenvalue floors, the start from the previous
covariances, the inner iterations of the iterative models, the rebuilt covariances and
``reg_covar`` on their diagonals. In numpy the same steps cost hundreds of calls of
microseconds each on matrices of a few features: 0.1-0.2 ms an M-step, most of the time of
mclust's 14-model BIC table on small data.

The mathematics (objectives, closed forms, floors, stopping rule) is documented where the
models are declared, :mod:`bayesmix.families.gaussian.covariance`. The inner iterations
stop when the objective's relative change ``|F_old - F_new| / (1 + |F_new|)`` is at most
``tol`` or after ``max_iter`` iterations; the kernels return the number of iterations,
whether they converged and the last relative change, so that the caller records and warns.

The kernels are compiled without ``fastmath`` (as the E-step kernels' rules require, see
:mod:`bayesmix.families.gaussian.kernels`): code compiled in this process and code loaded
from numba's disk cache (``cache=True``) compute the same bits, so no child-process
compile is needed. Every array reaches them C-contiguous, float64 and writable, so each
kernel has one specialisation. Eigen-decompositions are :func:`descending_eigh`'s: a
compiled cyclic Jacobi method up to :data:`JACOBI_MAX_FEATURES` features (about 2.5 times
faster than LAPACK through numba at D = 4), LAPACK's ``dsyevd`` above, as in
``numpy.linalg.eigh``; VEE keeps its shape as an eigen-decomposition, so its volumes need
no inverse. Against LAPACK and the inverses (iris statistics, start given, compiled calls,
one thread): the M-steps cost about half (VEE 15.4 -> 7.4 us at K = 3, EVE 12.3 -> 7.2,
EEV 7.1 -> 3.6).
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

__all__ = [
    "JACOBI_MAX_FEATURES",
    "MODELS",
    "common_orientation",
    "descending_eigh",
    "diag_m_step",
    "m_step",
    "matrix_m_step",
]

#: The models these kernels fit, by mclust name.
MODELS = ("VEI", "EVI", "VEE", "VEV", "EEV", "EVV", "EVE", "VVE")
_CODES = {name: code for code, name in enumerate(MODELS)}
_DIAG = frozenset({"VEI", "EVI"})
_VEI, _EVI, _VEE, _VEV, _EEV, _EVV, _EVE, _VVE = range(len(MODELS))

# numpy's error model: a zero count or scatter gives inf or NaN as in numpy, not an
# exception from inside the kernel
_OPTIONS = {"cache": True, "error_model": "numpy"}
_EPS = float(np.finfo(np.float64).eps)


def m_step(
    model: str,
    mass: np.ndarray,
    sum_x: np.ndarray,
    sum_xx: np.ndarray,
    means: np.ndarray,
    dof: float | None,
    scale,
    reg_covar,
    start: np.ndarray | None,
    tol: float,
    max_iter: int,
) -> tuple[np.ndarray, int, bool, float]:
    """The M-step of ``model`` (one of :data:`MODELS`) in one compiled call.

    Parameters
    ----------
    model : str
        mclust's name of the model.
    mass, sum_x, sum_xx : numpy.ndarray
        Responsibility mass ``(K,)``, ``sum r x`` ``(K, D)`` and the second moments:
        ``sum r x^2`` ``(K, D)`` for VEI and EVI, ``sum r x x^T`` ``(K, D, D)`` otherwise.
    means : numpy.ndarray of shape (K, D)
        The new means: scatters are taken about them.
    dof, scale : float or None, array-like
        The conjugate prior (``None``: maximum likelihood): the scatters get ``scale``
        (broadcast to the scatters' shape) and the counts ``dof + 2`` (VEI, EVI: the
        inverse-gamma of each variance) or ``dof + D + 1`` (the inverse-Wishart of each
        matrix).
    reg_covar : float or array-like of shape (D,)
        Added to every covariance's diagonal.
    start : numpy.ndarray or None
        The previous covariances (the iterative models' start).
    tol, max_iter : float, int
        The inner iterations' stopping rule.

    Returns
    -------
    covariances : numpy.ndarray
        ``(K, D)`` variances (VEI, EVI) or ``(K, D, D)`` matrices.
    iterations : int
        Inner iterations made (0 for the closed-form models EVI, EEV, EVV).
    converged : bool
    change : float
        The last inner iteration's relative change of the objective.
    """
    code = _CODES[model]
    n_features = means.shape[-1]
    sum_xx = _c(sum_xx)
    has_prior = dof is not None
    prior_scale = _c(np.broadcast_to(scale, sum_xx.shape)) if has_prior else sum_xx
    has_start = start is not None
    args = (
        code,
        _c(mass),
        _c(sum_x),
        sum_xx,
        _c(means),
        has_prior,
        float(dof) if has_prior else 0.0,
        prior_scale,
        _c(np.broadcast_to(reg_covar, (n_features,))),
        _c(start) if has_start else sum_xx,
        has_start,
        float(tol),
        int(max_iter),
    )
    if model in _DIAG:
        return diag_m_step(*args)
    return matrix_m_step(*args)


def _c(array) -> np.ndarray:
    """``array`` as a C-contiguous, writable float64 array (copied only if needed)."""
    out = np.ascontiguousarray(array, dtype=np.float64)
    return out if out.flags.writeable else out.copy()


# ---------------------------------------------------------------------------------------
# compiled entry points (callable from other compiled code): ``code`` is the model's index
# in MODELS; the arguments are m_step's, prepared as it prepares them (``scale`` and
# ``start`` any array of the right shape when unused)


@nb.njit(**_OPTIONS)
def diag_m_step(
    code, mass, sum_x, sum_xx, means, has_prior, dof, scale, reg, start, has_start, tol, max_iter
):
    n_components, n_features = means.shape
    scatter = np.empty((n_components, n_features))
    count = mass.copy()
    for k in range(n_components):
        for d in range(n_features):
            value = sum_xx[k, d] - 2.0 * sum_x[k, d] * means[k, d] + mass[k] * means[k, d] ** 2
            scatter[k, d] = max(value, 0.0)
    if has_prior:  # the inverse-gamma prior of every variance
        for k in range(n_components):
            count[k] = mass[k] + dof + 2.0
            for d in range(n_features):
                scatter[k, d] += scale[k, d]
    if code == _VEI:
        cov, iterations, converged, change = _vei(scatter, count, start, has_start, tol, max_iter)
    else:
        cov, iterations, converged, change = _evi(scatter, count), 0, True, 0.0
    for k in range(n_components):
        for d in range(n_features):
            cov[k, d] += reg[d]
    return cov, iterations, converged, change


@nb.njit(**_OPTIONS)
def matrix_m_step(
    code, mass, sum_x, sum_xx, means, has_prior, dof, scale, reg, start, has_start, tol, max_iter
):
    n_components, n_features = means.shape
    raw = np.empty((n_components, n_features, n_features))
    for k in range(n_components):
        for i in range(n_features):
            for j in range(n_features):
                raw[k, i, j] = (
                    sum_xx[k, i, j]
                    - sum_x[k, i] * means[k, j]
                    - sum_x[k, j] * means[k, i]
                    + mass[k] * means[k, i] * means[k, j]
                )
    count = mass.copy()
    if has_prior:  # the inverse-Wishart prior of every component
        for k in range(n_components):
            count[k] = mass[k] + dof + n_features + 1
        raw += scale
    scatter = np.empty_like(raw)
    for k in range(n_components):
        for i in range(n_features):
            for j in range(n_features):
                scatter[k, i, j] = 0.5 * (raw[k, i, j] + raw[k, j, i])
    iterations, converged, change = 0, True, 0.0
    if code == _VEE:
        cov, iterations, converged, change = _vee(scatter, count, start, has_start, tol, max_iter)
    elif code == _VEV:
        cov, iterations, converged, change = _vev(scatter, count, start, has_start, tol, max_iter)
    elif code == _EEV:
        cov = _eev(scatter, count)
    elif code == _EVV:
        cov = _evv(scatter, count)
    else:
        equal_volume = code == _EVE
        cov, iterations, converged, change = _eve_vve(
            scatter, count, start, has_start, equal_volume, tol, max_iter
        )
    out = np.empty_like(cov)
    for k in range(n_components):
        for i in range(n_features):
            for j in range(n_features):
                out[k, i, j] = 0.5 * (cov[k, i, j] + cov[k, j, i])
            out[k, i, i] += reg[i]
    return out, iterations, converged, change


# ---------------------------------------------------------------------------------------
# shared steps


@nb.njit(**_OPTIONS)
def _floored(values):
    """Rows of eigenvalues or variances ``(K, D)`` made strictly positive: at least
    ``eps`` times the largest of their row (a singular scatter stays finite)."""
    out = np.empty_like(values)
    for k in range(values.shape[0]):
        floor = max(_EPS * values[k].max(), 1e-300)
        for d in range(values.shape[1]):
            out[k, d] = max(values[k, d], floor)
    return out


@nb.njit(**_OPTIONS)
def _informative(trace, count):
    """Components whose scatter is more than rounding: per observation, a trace above
    ``1e-14`` of the pooled one's (all of them when none is)."""
    positive = np.maximum(trace, 0.0)
    threshold = 1e-14 * (positive.sum() / count.sum())
    keep = positive / count > threshold
    if not keep.any():
        keep[:] = True
    return keep


@nb.njit(**_OPTIONS)
def _geometric_mean(values):
    """``prod(values) ** (1 / D)`` of a vector."""
    return math.exp(np.log(values).sum() / values.shape[0])


@nb.njit(**_OPTIONS)
def _trace(scatter):
    out = np.zeros(scatter.shape[0])
    for k in range(scatter.shape[0]):
        for d in range(scatter.shape[1]):
            out[k] += scatter[k, d, d]
    return out


#: Largest ``D`` whose eigen-decompositions use the compiled cyclic Jacobi method instead
#: of LAPACK (measured through numba, one thread: 0.7 against 1.9 us at D = 4, 2.3 against
#: 3.4 at D = 6, 4.9 against 5.3 at D = 8, 9.4 against 7.8 at D = 10).
JACOBI_MAX_FEATURES = 7
# Jacobi sweeps before giving up (a sweep at D <= 7 converges quadratically: 4-6 suffice)
_MAX_SWEEPS = 50


@nb.njit(**_OPTIONS)
def descending_eigh(matrix):
    """Eigenvalues (descending) and eigenvectors (columns) of the symmetric part of a
    ``(D, D)`` matrix, as ``numpy.linalg.eigh`` gives them in reverse order; NaN for a
    matrix with NaN or infinite entries (as numpy gives, where numba's ``eigh`` raises).

    Up to :data:`JACOBI_MAX_FEATURES` features by the cyclic Jacobi method (Golub & Van
    Loan, Algorithm 8.5.3, with the rotations of Rutishauser's stable form): each plane
    rotation zeroes one off-diagonal entry, sweeps repeat until an entry is below
    rounding relative to its diagonal (``|a_pq| <= eps sqrt(|a_pp a_qq|) / 2``, Demmel
    & Veselic's criterion, which gives the eigenvalues of a positive definite matrix to
    high relative accuracy) for all pairs; larger matrices by LAPACK's ``dsyevd``.
    """
    size = matrix.shape[0]
    values = np.empty(size)
    vectors = np.empty((size, size))
    _descending_eigh_into(matrix, values, vectors, True)
    return values, vectors


@nb.njit(**_OPTIONS)
def _descending_eigh_into(matrix, values, vectors, with_vectors):
    """:func:`descending_eigh` written into ``values`` ``(D,)`` and ``vectors``
    ``(D, D)``; without ``with_vectors`` the Jacobi method updates no vectors (the same
    eigenvalues: its rotations do not depend on them) and ``vectors`` is left undefined."""
    size = matrix.shape[0]
    finite = True
    for i in range(size):
        for j in range(size):
            if not math.isfinite(matrix[i, j]):
                finite = False
    if not finite:
        values[:] = np.nan
        vectors[:] = np.nan
        return
    if size > JACOBI_MAX_FEATURES:
        found, basis = np.linalg.eigh(0.5 * (matrix + matrix.T))
        for i in range(size):
            values[i] = found[size - 1 - i]
            for j in range(size):
                vectors[j, i] = basis[j, size - 1 - i]
        return
    work = np.empty((size, size))
    for i in range(size):
        for j in range(size):
            work[i, j] = 0.5 * (matrix[i, j] + matrix[j, i])
            vectors[i, j] = 0.0
        vectors[i, i] = 1.0
    for _ in range(_MAX_SWEEPS):
        rotated = False
        for p in range(size - 1):
            for q in range(p + 1, size):
                off = work[p, q]
                if off == 0.0:
                    continue
                diag_p, diag_q = work[p, p], work[q, q]
                if abs(off) <= 0.5 * _EPS * math.sqrt(abs(diag_p * diag_q)):
                    work[p, q] = work[q, p] = 0.0  # below rounding
                    continue
                rotated = True
                theta = (diag_q - diag_p) / (2.0 * off)
                if abs(theta) > 1e150:  # theta^2 would overflow
                    t = 0.5 / theta
                else:
                    t = 1.0 / (abs(theta) + math.sqrt(theta * theta + 1.0))
                    if theta < 0.0:
                        t = -t
                c = 1.0 / math.sqrt(t * t + 1.0)
                s = t * c
                work[p, p] = diag_p - t * off
                work[q, q] = diag_q + t * off
                work[p, q] = work[q, p] = 0.0
                for r in range(size):
                    if r != p and r != q:
                        left, right = work[r, p], work[r, q]
                        work[r, p] = work[p, r] = c * left - s * right
                        work[r, q] = work[q, r] = s * left + c * right
                for r in range(size if with_vectors else 0):
                    left, right = vectors[r, p], vectors[r, q]
                    vectors[r, p] = c * left - s * right
                    vectors[r, q] = s * left + c * right
        if not rotated:
            break
    for i in range(size):
        values[i] = work[i, i]
    for i in range(1, size):  # insertion sort, descending (stable: ties keep their order)
        j = i
        while j > 0 and values[j - 1] < values[j]:
            values[j - 1], values[j] = values[j], values[j - 1]
            for r in range(size if with_vectors else 0):
                vectors[r, j - 1], vectors[r, j] = vectors[r, j], vectors[r, j - 1]
            j -= 1


@nb.njit(**_OPTIONS)
def _rebuild(vectors, values):
    """``V diag(values) V^T`` (``(D, D)``), symmetric."""
    size = values.shape[0]
    out = np.empty((size, size))
    for i in range(size):
        for j in range(i + 1):
            acc = 0.0
            for m in range(size):
                acc += vectors[i, m] * values[m] * vectors[j, m]
            out[i, j] = acc
            out[j, i] = acc
    return out


@nb.njit(**_OPTIONS)
def _normalised_eigen(matrix):
    """The eigenvalues (floored, divided by their geometric mean) and eigenvectors of
    ``M / det(M)^(1/D)``, ``M`` positive definite."""
    values, vectors = descending_eigh(matrix)
    values = _floored(values.reshape(1, -1))[0]
    return values / _geometric_mean(values), vectors


@nb.njit(**_OPTIONS)
def _normalised(matrix):
    """``M / det(M)^(1/D)`` of the symmetric part of a positive definite matrix
    (eigenvalues floored at ``eps`` times the largest).

    ``det M`` by a Cholesky factorisation where it proves the floor inactive (``det M >=
    eps tr(M)^D``, which bounds the smallest eigenvalue below by ``eps`` times the
    largest): the iterative models' start costs one factorisation a component instead of
    one eigen-decomposition (0.1 against 0.8 us at D = 4). Otherwise by the floored
    eigenvalues."""
    size = matrix.shape[0]
    out = np.empty((size, size))
    lower = np.zeros((size, size))
    trace = 0.0
    log_det = 0.0
    definite = True
    for i in range(size):
        for j in range(size):
            out[i, j] = 0.5 * (matrix[i, j] + matrix[j, i])
        trace += out[i, i]
    for j in range(size):
        pivot = out[j, j]
        for m in range(j):
            pivot -= lower[j, m] * lower[j, m]
        if not pivot > 0.0:  # also NaN
            definite = False
            break
        lower[j, j] = math.sqrt(pivot)
        log_det += math.log(pivot)
        for i in range(j + 1, size):
            acc = out[i, j]
            for m in range(j):
                acc -= lower[i, m] * lower[j, m]
            lower[i, j] = acc / lower[j, j]
    if definite and math.isfinite(trace) and log_det >= math.log(_EPS) + size * math.log(trace):
        out *= math.exp(-log_det / size)
        return out
    values, vectors = _normalised_eigen(matrix)
    return _rebuild(vectors, values)


@nb.njit(**_OPTIONS)
def _shape_from(cov, keep):
    """A common shape (variances ``(D,)``, det 1) from the kept rows of ``cov`` ``(K, D)``:
    the geometric mean of their normalised shapes."""
    values = np.log(_floored(cov))
    n_features = values.shape[1]
    log_shape = np.zeros(n_features)
    kept = 0
    for k in range(values.shape[0]):
        if keep[k]:
            kept += 1
            centre = values[k].sum() / n_features
            for d in range(n_features):
                log_shape[d] += values[k, d] - centre
    log_shape /= kept
    return np.exp(log_shape - log_shape.sum() / n_features)


@nb.njit(**_OPTIONS)
def _volumes(values, count, shape):
    """The optimal volumes ``lambda_k = sum_d values_kd / shape_d / (D count_k)`` given
    a shape (floored at 1e-300)."""
    n_components, n_features = values.shape
    out = np.empty(n_components)
    for k in range(n_components):
        acc = 0.0
        for d in range(n_features):
            acc += values[k, d] / shape[d]
        out[k] = max(acc / (n_features * count[k]), 1e-300)
    return out


@nb.njit(**_OPTIONS)
def _common_shape(values, count, keep, shape, full_objective, tol, max_iter):
    """The shared shape of VEI (``values`` the scatters' diagonals, ``full_objective``)
    and VEV (the scatters' eigenvalues): alternately the volumes given the shape and the
    shape given the volumes (the kept components' pooled ``values / lambda_k``,
    normalised), until the objective settles. The objective is VEI's ``sum_k [n_k D log
    lambda_k + sum_d values_kd / (lambda_k shape_d)]`` or VEV's ``sum_k n_k D (log
    lambda_k + 1)`` (equal at the optimal volumes), over the kept components."""
    n_components, n_features = values.shape
    value = _shape_objective(values, count, keep, shape, full_objective)
    change = 0.0
    for iteration in range(1, max_iter + 1):
        volumes = _volumes(values, count, shape)
        pooled = np.zeros(n_features)
        for k in range(n_components):
            if keep[k]:
                for d in range(n_features):
                    pooled[d] += values[k, d] / volumes[k]
        shape = pooled / _geometric_mean(pooled)
        new = _shape_objective(values, count, keep, shape, full_objective)
        change = abs(value - new) / (1.0 + abs(new))
        if abs(value - new) <= tol * (1.0 + abs(new)):
            return shape, iteration, True, change
        value = new
    return shape, max_iter, False, change


@nb.njit(**_OPTIONS)
def _shape_objective(values, count, keep, shape, full_objective):
    volumes = _volumes(values, count, shape)
    n_features = values.shape[1]
    total = 0.0
    for k in range(values.shape[0]):
        if not keep[k]:
            continue
        log_volume = math.log(volumes[k])
        if full_objective:
            scaled = 0.0
            for d in range(n_features):
                scaled += values[k, d] / (volumes[k] * shape[d])
            total += count[k] * n_features * log_volume + scaled
        else:
            total += count[k] * n_features * (log_volume + 1.0)
    return total


# ---------------------------------------------------------------------------------------
# the models (scatters already symmetric, with the prior's terms)


@nb.njit(**_OPTIONS)
def _vei(scatter, count, start, has_start, tol, max_iter):
    """VEI: ``lambda_k A``, axis-aligned."""
    keep = _informative(scatter.sum(axis=1), count)
    scatter = _floored(scatter)
    shape = _shape_from(start if has_start else scatter, keep)
    shape, iterations, converged, change = _common_shape(
        scatter, count, keep, shape, True, tol, max_iter
    )
    volumes = _volumes(scatter, count, shape)
    cov = np.empty_like(scatter)
    for k in range(scatter.shape[0]):
        cov[k] = volumes[k] * shape
    return cov, iterations, converged, change


@nb.njit(**_OPTIONS)
def _evi(scatter, count):
    """EVI: ``lambda A_k``, axis-aligned, closed form."""
    scatter = _floored(scatter)
    sizes = np.empty(scatter.shape[0])
    for k in range(scatter.shape[0]):
        sizes[k] = _geometric_mean(scatter[k])  # |diag W_k|^(1/D)
    volume = sizes.sum() / count.sum()
    cov = np.empty_like(scatter)
    for k in range(scatter.shape[0]):
        cov[k] = volume * (scatter[k] / sizes[k])  # volume * scatter overflows at 1e100
    return cov


@nb.njit(**_OPTIONS)
def _eigen(scatter):
    """Descending eigenvalues ``(K, D)`` and eigenvectors ``(K, D, D)`` of each matrix."""
    n_components, n_features, _ = scatter.shape
    values = np.empty((n_components, n_features))
    vectors = np.empty_like(scatter)
    for k in range(n_components):
        _descending_eigh_into(scatter[k], values[k], vectors[k], True)
    return values, vectors


@nb.njit(**_OPTIONS)
def _vee_volumes(scatter, count, values, vectors):
    """VEE's optimal volumes given the shape ``C = V diag(a) V^T`` (``values`` ``a``,
    ``vectors`` ``V``): ``tr(W_k C^-1) / (D n_k) = sum_m v_m^T W_k v_m / a_m / (D n_k)``
    (NaN for a shape with NaN entries, as numpy's inverse gives)."""
    n_components, n_features, _ = scatter.shape
    out = np.empty(n_components)
    for k in range(n_components):
        acc = 0.0
        for m in range(n_features):
            quadratic = 0.0
            for d in range(n_features):
                row = 0.0
                for e in range(n_features):
                    row += scatter[k, d, e] * vectors[e, m]
                quadratic += vectors[d, m] * row
            acc += quadratic / values[m]
        out[k] = max(acc / (n_features * count[k]), 1e-300) if math.isfinite(acc) else np.nan
    return out


@nb.njit(**_OPTIONS)
def _vee_objective(count, keep, volumes, n_features):
    # tr(W_k C^-1) / lambda_k = D n_k at the optimal volumes
    total = 0.0
    for k in range(count.shape[0]):
        if keep[k]:
            total += count[k] * n_features * (math.log(volumes[k]) + 1.0)
    return total


@nb.njit(**_OPTIONS)
def _vee(scatter, count, start, has_start, tol, max_iter):
    """VEE: ``lambda_k C`` with ``det C = 1``: alternately the volumes given ``C`` and
    ``C`` the normalised pooled ``W_k / lambda_k`` of the kept components. ``C`` is kept
    as its eigen-decomposition, which gives the volumes in closed form (one
    eigen-decomposition an iteration, no inverse)."""
    n_components, n_features, _ = scatter.shape
    keep = _informative(_trace(scatter), count)
    base = np.zeros((n_features, n_features))
    if has_start:
        kept = 0
        for k in range(n_components):
            if keep[k]:
                base += _normalised(start[k])
                kept += 1
        base /= kept
    else:
        for k in range(n_components):
            base += scatter[k]
    values, vectors = _normalised_eigen(base)
    volumes = _vee_volumes(scatter, count, values, vectors)
    value = _vee_objective(count, keep, volumes, n_features)
    change = 0.0
    iterations, converged = max_iter, False
    pooled = np.empty((n_features, n_features))
    for iteration in range(1, max_iter + 1):
        pooled[:] = 0.0
        for k in range(n_components):
            if keep[k]:
                for d in range(n_features):
                    for e in range(n_features):
                        pooled[d, e] += scatter[k, d, e] / volumes[k]
        values, vectors = _normalised_eigen(pooled)
        volumes = _vee_volumes(scatter, count, values, vectors)
        new = _vee_objective(count, keep, volumes, n_features)
        change = abs(value - new) / (1.0 + abs(new))
        if abs(value - new) <= tol * (1.0 + abs(new)):
            iterations, converged = iteration, True
            break
        value = new
    shape = _rebuild(vectors, values)
    cov = np.empty_like(scatter)
    for k in range(n_components):
        cov[k] = volumes[k] * shape
    return cov, iterations, converged, change


@nb.njit(**_OPTIONS)
def _vev(scatter, count, start, has_start, tol, max_iter):
    """VEV: ``lambda_k D_k A D_k^T``: ``D_k`` the eigenvectors of ``W_k``, then VEI's
    iteration on the eigenvalues."""
    n_components, n_features, _ = scatter.shape
    keep = _informative(_trace(scatter), count)
    values, vectors = _eigen(scatter)
    values = _floored(values)
    if has_start:
        start_values = np.empty_like(values)
        work = np.empty((n_features, n_features))
        for k in range(n_components):
            _descending_eigh_into(start[k], start_values[k], work, False)
        shape = _shape_from(_floored(start_values), keep)
    else:
        shape = _shape_from(values, keep)
    shape, iterations, converged, change = _common_shape(
        values, count, keep, shape, False, tol, max_iter
    )
    volumes = _volumes(values, count, shape)
    cov = np.empty_like(scatter)
    for k in range(n_components):
        cov[k] = _rebuild(vectors[k], volumes[k] * shape)
    return cov, iterations, converged, change


@nb.njit(**_OPTIONS)
def _eev(scatter, count):
    """EEV: ``lambda D_k A D_k^T``, closed form: the pooled eigenvalues."""
    values, vectors = _eigen(scatter)
    pooled = np.maximum(values, 0.0).sum(axis=0) / count.sum()
    pooled = _floored(pooled.reshape(1, -1))[0]  # lambda A
    cov = np.empty_like(scatter)
    for k in range(scatter.shape[0]):
        cov[k] = _rebuild(vectors[k], pooled)
    return cov


@nb.njit(**_OPTIONS)
def _evv(scatter, count):
    """EVV: ``lambda C_k`` with ``det C_k = 1``, closed form."""
    values, vectors = _eigen(scatter)
    values = _floored(values)
    sizes = np.empty(scatter.shape[0])
    for k in range(scatter.shape[0]):
        sizes[k] = _geometric_mean(values[k])  # |W_k|^(1/D)
    volume = sizes.sum() / count.sum()
    cov = np.empty_like(scatter)
    for k in range(scatter.shape[0]):
        cov[k] = _rebuild(vectors[k], volume * (values[k] / sizes[k]))  # no overflow
    return cov


@nb.njit(**_OPTIONS)
def _eve_vve(scatter, count, start, has_start, equal_volume, tol, max_iter):
    """EVE (``equal_volume``) and VVE: the common orientation's loop from the
    eigenvectors of the summed scatters, or of the previous covariances' normalised
    shapes weighted ``1, ..., K`` (a tie of the sum is no tie of each)."""
    n_components, n_features, _ = scatter.shape
    base = np.zeros((n_features, n_features))
    if has_start:
        for k in range(n_components):
            base += (k + 1.0) * _normalised(start[k])
    else:
        for k in range(n_components):
            base += scatter[k]
    orientation = descending_eigh(base)[1]
    orientation, variances, iterations, converged, change = _common_orientation(
        scatter, count, orientation, equal_volume, tol, max_iter
    )
    cov = np.empty_like(scatter)
    for k in range(n_components):
        cov[k] = _rebuild(orientation, variances[k])
    return cov, iterations, converged, change


# ---------------------------------------------------------------------------------------
# EVE and VVE's common orientation (Jacobi plane rotations, as Flury & Gautschi 1986 for
# common principal components)


def common_orientation(
    scatter: np.ndarray,
    count: np.ndarray,
    orientation: np.ndarray,
    equal_volume: bool,
    tol: float,
    max_iter: int,
) -> tuple[np.ndarray, np.ndarray, int, bool, float]:
    """The M-step of mclust's EVE (``equal_volume``) and VVE models from a given
    orientation: covariances ``D diag(v_k) D^T`` with one orientation ``D``, minimising
    ``sum_k [count_k sum_j log v_kj + tr(W_k D diag(1 / v_k) D^T)]``.

    Alternates a sweep of plane rotations of ``D`` (each pair of axes turned to the exact
    minimum of ``sum_k tr(D^T W_k D diag(1 / v_k))`` over that plane's rotations, in closed
    form) with the closed-form variances given ``D`` (EVE: one volume, ``v_k``
    proportional to ``diag(D^T W_k D)`` with the geometric means pooled; VVE: ``diag(D^T
    W_k D) / count_k``), from
    ``orientation``, until the objective's relative change is at most ``tol`` or
    ``max_iter`` steps were made; each step never increases the objective. (:func:`m_step`
    runs it for EVE and VVE from their starting orientation.)

    mclust takes the majorise-minimise (MM) steps of Browne & McNicholas (2014), which
    crawl where a component collapses (1,000 iterations an M-step against a median of 3
    here: iris VVE, K=9). For EVE they reach the same optima (EM from mclust's
    hierarchical start ends at mclust's log-likelihood to 1e-7 per observation in 29 of
    the 31 cells K = 2..9 of iris, faithful, banknote and sim5000). For VVE mclust
    weighs its MM steps by the inverse det-1 shapes ``1 / A_k`` instead of the inverse
    variances ``1 / (lambda_k A_k)``: its orientation minimises ``sum_k tr(D^T W_k D
    A_k^-1)``, not this objective, and its EM stops where the likelihood still rises
    (banknote, K=5: one M-step here from mclust's fit lowers the objective by 1.58, as
    the MM steps with the right weights do, and EM climbs from mclust's -625.529 to
    -624.514; ``tests/test_common_orientation.py``). From the same hierarchical start
    the two EMs then end at different maxima: higher here in 26 of those 31 VVE cells,
    lower in 5 (banknote K=5: -625.912 against -625.529).

    Returns
    -------
    orientation : numpy.ndarray of shape (D, D)
    variances : numpy.ndarray of shape (K, D)
    iterations : int
    converged : bool
    change : float
        The last step's relative change of the objective.
    """
    return _common_orientation(
        _c(scatter), _c(count), _c(orientation), bool(equal_volume), float(tol), int(max_iter)
    )


@nb.njit(**_OPTIONS)
def _orientation_variances(rotated, count, equal_volume):
    """The variances given the orientation, from ``diag(D^T W_k D)`` ``rotated``
    ``(K, D)``: floored at ``eps`` times each row's largest (a singular scatter stays
    finite), then EVE's or VVE's closed form."""
    rotated = _floored(rotated)
    n_components, size = rotated.shape
    if not equal_volume:
        for k in range(n_components):
            rotated[k] /= count[k]
        return rotated
    sizes = np.exp(np.log(rotated).sum(axis=1) / size)
    volume = sizes.sum() / count.sum()
    for k in range(n_components):
        rotated[k] *= volume / sizes[k]
    return rotated


@nb.njit(**_OPTIONS)
def _diagonals(rotated_scatter):
    n_components, size, _ = rotated_scatter.shape
    out = np.empty((n_components, size))
    for k in range(n_components):
        for j in range(size):
            out[k, j] = rotated_scatter[k, j, j]
    return out


@nb.njit(**_OPTIONS)
def _orientation_objective(diagonals, count, variances):
    value = 0.0
    for k in range(diagonals.shape[0]):
        for j in range(diagonals.shape[1]):
            value += count[k] * math.log(variances[k, j]) + diagonals[k, j] / variances[k, j]
    return value


@nb.njit(**_OPTIONS)
def _jacobi_sweep(rotated, orientation, inverse):
    """One sweep of plane rotations over every pair of axes ``(i, j)``, each the exact
    minimiser of ``sum_k tr(A_k diag(inverse_k))`` over the rotations of that plane,
    with ``A_k = D^T W_k D`` (``rotated``, updated in place with ``orientation``).

    Rotating axes ``i, j`` by ``t`` changes the sum by ``a cos 2t + b sin 2t`` plus a
    constant, with ``a = sum_k (B_ki - B_kj)(A_kii - A_kjj) / 2`` and ``b = sum_k
    (B_ki - B_kj) A_kij``: the minimum is at ``(cos 2t, sin 2t) = -(a, b) / |(a, b)|``.
    """
    n_components, size, _ = rotated.shape
    for i in range(size - 1):
        for j in range(i + 1, size):
            a = 0.0
            b = 0.0
            for k in range(n_components):
                gap = inverse[k, i] - inverse[k, j]
                a += 0.5 * gap * (rotated[k, i, i] - rotated[k, j, j])
                b += gap * rotated[k, i, j]
            radius = math.hypot(a, b)
            if radius == 0.0 or b == 0.0 and a <= 0.0:  # already the plane's minimum
                continue
            angle = 0.5 * math.atan2(-b, -a)
            c, s = math.cos(angle), math.sin(angle)
            for d in range(size):  # D <- D G, G the rotation of axes i and j
                left, right = orientation[d, i], orientation[d, j]
                orientation[d, i] = c * left + s * right
                orientation[d, j] = -s * left + c * right
            for k in range(n_components):  # A_k <- G^T A_k G
                for d in range(size):
                    left, right = rotated[k, d, i], rotated[k, d, j]
                    rotated[k, d, i] = c * left + s * right
                    rotated[k, d, j] = -s * left + c * right
                for d in range(size):
                    left, right = rotated[k, i, d], rotated[k, j, d]
                    rotated[k, i, d] = c * left + s * right
                    rotated[k, j, d] = -s * left + c * right


@nb.njit(**_OPTIONS)
def _common_orientation(scatter, count, orientation, equal_volume, tol, max_iter):
    n_components, size, _ = scatter.shape
    orientation = orientation.copy()
    rotated = np.empty_like(scatter)
    half = np.empty((size, size))
    for k in range(n_components):  # D^T W_k D
        for i in range(size):
            for j in range(size):
                acc = 0.0
                for d in range(size):
                    acc += scatter[k, i, d] * orientation[d, j]
                half[i, j] = acc
        for i in range(size):
            for j in range(i + 1):
                acc = 0.0
                for d in range(size):
                    acc += orientation[d, i] * half[d, j]
                rotated[k, i, j] = rotated[k, j, i] = acc
    variances = _orientation_variances(_diagonals(rotated), count, equal_volume)
    value = _orientation_objective(_diagonals(rotated), count, variances)
    change = 0.0
    for iteration in range(1, max_iter + 1):
        _jacobi_sweep(rotated, orientation, 1.0 / variances)
        diagonals = _diagonals(rotated)
        variances = _orientation_variances(diagonals.copy(), count, equal_volume)
        new = _orientation_objective(diagonals, count, variances)
        change = abs(value - new) / (1.0 + abs(new))
        if abs(value - new) <= tol * (1.0 + abs(new)):
            return orientation, variances, iteration, True, change
        value = new
    return orientation, variances, max_iter, False, change
