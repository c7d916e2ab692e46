"""The E-step kernels' blocking against a plain numpy/scipy reference.

The kernels (``bayesmix/families/gaussian/kernels.py``) pad the features (and
components) to a multiple of four, whiten and accumulate moments in 4 x 4 register
tiles, walk the rows in blocks of 64-256 and take one log per 64 rows of unit weight; the
full and tied kernels take an unpadded path for up to three features. These tests
exercise the edges of that scheme: one row, one feature, one component, row counts that
are not a multiple of the block, features that are not a multiple of four, several row
chunks, wildly different feature scales, and many components whose row totals would
overflow one product over a 256-row block; for every covariance type.
"""

from __future__ import annotations

import functools

import numba as nb
import numpy as np
import pytest
from scipy.linalg import solve_triangular
from scipy.special import logsumexp
from scipy.stats import multivariate_normal

from bayesmix.families.gaussian import kernels


def _problem(n_obs, n_features, n_components, seed=0, scales=None, offset=0.0, unit=True):
    """Random rows, means, covariances and weights; the kernel's arguments and the
    covariances for the reference."""
    rng = np.random.default_rng(seed)
    scales = np.ones(n_features) if scales is None else scales
    X = offset + rng.normal(size=(n_obs, n_features)) * scales
    means = offset + rng.normal(size=(n_components, n_features)) * scales
    covs = np.empty((n_components, n_features, n_features))
    for k in range(n_components):
        a = rng.normal(size=(n_features, n_features)) / np.sqrt(n_features)
        covs[k] = (a @ a.T + np.eye(n_features)) * np.outer(scales, scales)
    sample_weight = np.ones(n_obs) if unit else rng.uniform(0.2, 3.0, n_obs)
    log_weights = np.log(rng.dirichlet(np.ones(n_components)))
    shift = X.mean(axis=0)
    return X, sample_weight, shift, log_weights, means, covs


def _kernel(
    X, sample_weight, shift, log_weights, means, covs, dtype=np.float64, estep=kernels.estep_full
):
    """The public kernel call, as ``FullCovariance.fused_statistics`` makes it (``estep``:
    or VB's :func:`~bayesmix.families.gaussian.kernels.estep_full_sparse`)."""
    # upper precision factor U (inv(cov) = U U^T) is the inverse transpose of chol(cov)
    chol = np.linalg.cholesky(covs)
    eye = np.eye(X.shape[1])
    upper = np.stack([solve_triangular(c, eye, lower=True).T for c in chol])
    lower = np.ascontiguousarray(np.swapaxes(upper, 1, 2))
    log_det = np.log(np.diagonal(upper, axis1=1, axis2=2)).sum(axis=1)
    return estep(
        X.astype(dtype),
        sample_weight,
        shift,
        log_weights,
        means - shift,
        lower,
        log_det,
        kernels.n_chunks_for(len(X)),
    )


def _reference(X, sample_weight, shift, log_weights, means, covs):
    """Mass, sum r x, sum r x x^T (shifted units), log-likelihood and sum log max_k r,
    row by row from triangular solves and scipy's logsumexp; and the size of each (the
    sum of the magnitudes of its terms)."""
    n_obs, n_features = X.shape
    log_prob = np.empty((n_obs, len(means)))
    for k, (mean, cov) in enumerate(zip(means, covs, strict=True)):
        chol = np.linalg.cholesky(cov)
        whitened = solve_triangular(chol, (X - mean).T, lower=True)
        log_prob[:, k] = (
            log_weights[k]
            - 0.5 * (whitened**2).sum(axis=0)
            - np.log(np.diag(chol)).sum()
            - 0.5 * n_features * np.log(2 * np.pi)
        )
    total = logsumexp(log_prob, axis=1)
    resp = np.exp(log_prob - total[:, None])
    weighted = resp * sample_weight[:, None]
    centred = X - shift
    log_max = np.log(resp.max(axis=1))
    statistics = (
        weighted.sum(axis=0),
        weighted.T @ centred,
        np.einsum("nk,ni,nj->kij", weighted, centred, centred),
        float(sample_weight @ total),
        float(sample_weight @ log_max),
    )
    magnitudes = (
        weighted.sum(),
        np.abs(weighted.T @ np.abs(centred)).max(),
        (weighted.T @ centred**2).max(),
        float(sample_weight @ np.abs(total)),
        float(sample_weight @ np.abs(log_max)),
    )
    return statistics, magnitudes


def _assert_matches(ours, reference, rtol):
    """Each statistic within ``rtol`` of the reference, relative to the sum of the
    magnitudes of its terms (sums that cancel to about zero, such as ``sum r x`` about
    the data mean for one component, are compared at that scale)."""
    names = ("mass", "sum_x", "sum_xx", "log_lik", "log_max")
    for name, got, want, scale in zip(names, ours, *reference, strict=True):
        np.testing.assert_allclose(got, want, rtol=rtol, atol=rtol * scale, err_msg=name)


@pytest.mark.parametrize("unit", [True, False], ids=["unit-weights", "weighted"])
@pytest.mark.parametrize(
    ("n_obs", "n_features", "n_components"),
    [
        (1, 1, 1),  # one row, one feature, one component
        (1, 3, 2),  # one row
        (7, 1, 3),  # one feature (padded to four)
        (1000, 3, 4),  # one chunk of 256-row blocks, the last one 232 rows
        (3001, 5, 3),  # five chunks of 600 rows; features padded 5 -> 8
        (700, 16, 1),  # one component
        (1100, 16, 8),  # two chunks, 256-row blocks
        (600, 32, 3),  # 128-row blocks
    ],
)
def test_full_kernel_matches_reference(n_obs, n_features, n_components, unit):
    problem = _problem(n_obs, n_features, n_components, unit=unit)
    _assert_matches(_kernel(*problem), _reference(*problem), rtol=1e-12)


@pytest.mark.parametrize("n_features", [2, 16, 32])
def test_full_kernel_extreme_scales(n_features):
    """Features from 1e-6 to 1e6 around an offset of 1e8 (shifted by the data mean)."""
    scales = np.logspace(-6, 6, n_features)
    problem = _problem(900, n_features, 3, seed=3, scales=scales, offset=1e8)
    _assert_matches(_kernel(*problem), _reference(*problem), rtol=1e-12)


def test_many_components_long_block():
    """400 equal components: every row total is K = 400, so one product over a 256-row
    block (400**256, 1e666) would overflow; the kernel takes a log per 64 rows."""
    n_obs, n_components = 300, 400
    X = np.linspace(-1.0, 1.0, n_obs)[:, None]
    means = np.zeros((n_components, 1))
    covs = np.ones((n_components, 1, 1))
    log_weights = np.full(n_components, -np.log(n_components))
    problem = (X, np.ones(n_obs), np.zeros(1), log_weights, means, covs)
    ours = _kernel(*problem)
    assert ours[4] == pytest.approx(-n_obs * np.log(n_components), rel=1e-13)
    _assert_matches(ours, _reference(*problem), rtol=1e-12)


def test_full_kernel_float32():
    """Float32 rows: per-row arithmetic and 256-row block sums in float32."""
    problem = _problem(1100, 16, 4, seed=5)
    reference = _reference(*problem)
    ours = _kernel(*problem, dtype=np.float32)
    _assert_matches(ours, reference, rtol=2e-5)


def _structured(problem, kind):
    """``problem`` with its covariances made tied (all the first one), diagonal or
    spherical (the mean variance)."""
    X, sample_weight, shift, log_weights, means, covs = problem
    n_components, n_features = means.shape
    if kind == "tied":
        covs = np.repeat(covs[:1], n_components, axis=0)
    elif kind == "diag":
        covs = np.stack([np.diag(np.diag(c)) for c in covs])
    elif kind == "spherical":
        covs = np.stack([np.eye(n_features) * np.diag(c).mean() for c in covs])
    return X, sample_weight, shift, log_weights, means, covs


def _kernel_structured(kind, X, sample_weight, shift, log_weights, means, covs, dtype=np.float64):
    """The public tied, diag or spherical kernel call, as ``fused_statistics`` makes it."""
    shifted = means - shift
    n_chunks = kernels.n_chunks_for(len(X))
    if kind == "tied":
        chol = np.linalg.cholesky(covs[0])
        upper = solve_triangular(chol, np.eye(X.shape[1]), lower=True).T
        log_det = np.full(len(means), np.log(np.diag(upper)).sum())
        return kernels.estep_tied(
            X.astype(dtype),
            sample_weight,
            shift,
            log_weights,
            shifted @ upper,
            np.ascontiguousarray(upper.T),
            log_det,
            n_chunks,
        )
    variances = np.diagonal(covs, axis1=1, axis2=2)
    if kind == "diag":
        call, precision = kernels.estep_diag, 1.0 / variances
        log_det = -0.5 * np.log(variances).sum(axis=1)
    else:
        call, precision = kernels.estep_spherical, 1.0 / variances[:, 0]
        log_det = -0.5 * X.shape[1] * np.log(variances[:, 0])
    args = (X.astype(dtype), sample_weight, shift, log_weights, shifted, precision, log_det)
    return call(*args, n_chunks)


def _reference_structured(kind, *problem):
    """The full reference's statistics in the kernel's shapes: the tied scatter summed
    over the components, the diagonal of each scatter, or its trace."""
    (mass, sum_x, sum_xx, log_lik, log_max), scales = _reference(*problem)
    if kind == "tied":
        sum_xx = sum_xx.sum(axis=0)
    elif kind == "diag":
        sum_xx = np.diagonal(sum_xx, axis1=1, axis2=2)
    else:
        sum_xx = np.trace(sum_xx, axis1=1, axis2=2)
        scales = (*scales[:2], scales[2] * problem[0].shape[1], *scales[3:])
    return (mass, sum_x, sum_xx, log_lik, log_max), scales


STRUCTURED_SHAPES = [
    (1, 1, 1),  # one row, one feature, one component
    (7, 1, 3),  # one feature
    (1000, 2, 4),  # the everyday two features
    (1000, 3, 20),  # three features, twenty components (padded to 20)
    (3001, 5, 3),  # five chunks; features padded 5 -> 8, components 3 -> 4
    (1100, 16, 8),  # two chunks
    (600, 40, 5),  # forty features
]


@pytest.mark.parametrize("kind", ["tied", "diag", "spherical"])
@pytest.mark.parametrize("unit", [True, False], ids=["unit-weights", "weighted"])
@pytest.mark.parametrize(("n_obs", "n_features", "n_components"), STRUCTURED_SHAPES)
def test_structured_kernels_match_reference(kind, n_obs, n_features, n_components, unit):
    problem = _structured(_problem(n_obs, n_features, n_components, unit=unit), kind)
    ours = _kernel_structured(kind, *problem)
    _assert_matches(ours, _reference_structured(kind, *problem), rtol=1e-12)


@pytest.mark.parametrize(("n_obs", "n_features", "n_components"), [(1000, 2, 20), (600, 40, 5)])
def test_full_kernel_wide_and_many(n_obs, n_features, n_components):
    """Twenty components on two features (the unpadded path), forty features, weighted."""
    problem = _problem(n_obs, n_features, n_components, seed=11, unit=False)
    _assert_matches(_kernel(*problem), _reference(*problem), rtol=1e-12)


@pytest.mark.parametrize("kind", ["tied", "diag", "spherical"])
def test_structured_kernels_extreme_scales(kind):
    """Features from 1e-6 to 1e6 around an offset of 1e8 (shifted by the data mean)."""
    scales = np.logspace(-6, 6, 6)
    problem = _structured(_problem(900, 6, 3, seed=3, scales=scales, offset=1e8), kind)
    _assert_matches(
        _kernel_structured(kind, *problem), _reference_structured(kind, *problem), rtol=1e-12
    )


@pytest.mark.parametrize("kind", ["tied", "diag", "spherical"])
@pytest.mark.parametrize("n_features", [2, 16])
def test_structured_kernels_float32(kind, n_features):
    """Float32 rows: per-row arithmetic and block sums in float32."""
    problem = _structured(_problem(1100, n_features, 4, seed=5, unit=False), kind)
    ours = _kernel_structured(kind, *problem, dtype=np.float32)
    _assert_matches(ours, _reference_structured(kind, *problem), rtol=2e-5)


@pytest.mark.parametrize("n_features", [2, 16])
def test_full_kernel_float32_small_and_wide(n_features):
    """Float32 through the unpadded path (two features) and the tiles, weighted rows."""
    problem = _problem(1100, n_features, 4, seed=5, unit=False)
    _assert_matches(_kernel(*problem, dtype=np.float32), _reference(*problem), rtol=2e-5)


@pytest.mark.parametrize("kind", ["full", "tied", "diag", "spherical", "full_sparse"])
@pytest.mark.parametrize("n_features", [2, 7])
def test_kernels_thread_count_bitwise(kind, n_features):
    """Several chunks: the same bits with one thread and with every thread."""
    problem = _problem(4000, n_features, 3, seed=7, unit=False)
    if kind == "full":
        call = _kernel
    elif kind == "full_sparse":  # VB's kernel, on separated components
        problem = _separated(4000, n_features, 3, seed=7, unit=False)
        call = _sparse
    else:
        problem = _structured(problem, kind)
        call = functools.partial(_kernel_structured, kind)
    threads = nb.get_num_threads()
    try:
        nb.set_num_threads(1)
        single = call(*problem)
    finally:
        nb.set_num_threads(threads)
    every = call(*problem)
    for a, b in zip(single, every, strict=True):
        np.testing.assert_array_equal(a, b)


def _separated(n_obs, n_features, n_components, seed=0, unit=True):
    """:func:`_problem` with every row drawn near one of the means, eight standard
    deviations apart: most responsibilities are exact zeros (below ``e^-40``)."""
    X, sample_weight, shift, log_weights, means, covs = _problem(
        n_obs, n_features, n_components, seed=seed, unit=unit
    )
    rng = np.random.default_rng(seed + 100)
    means = 8.0 * means
    labels = rng.integers(n_components, size=n_obs)
    chol = np.linalg.cholesky(covs)
    X = means[labels] + np.einsum("nij,nj->ni", chol[labels], rng.normal(size=X.shape))
    return X, sample_weight, X.mean(axis=0), log_weights, means, covs


_sparse = functools.partial(_kernel, estep=kernels.estep_full_sparse)


@pytest.mark.parametrize("separated", [True, False], ids=["separated", "overlapping"])
@pytest.mark.parametrize("unit", [True, False], ids=["unit-weights", "weighted"])
@pytest.mark.parametrize(
    ("n_obs", "n_features", "n_components"),
    [
        (1100, 16, 8),  # two chunks, 256-row blocks
        (3001, 5, 3),  # five chunks; features padded 5 -> 8
        (5000, 4, 1),  # one component: every row in its buffer
        (2000, 33, 12),  # 64-row blocks, buffers flushed part-filled at the chunk ends
    ],
)
def test_sparse_full_kernel_matches_reference(n_obs, n_features, n_components, unit, separated):
    """VB's kernel (moments over each component's rows of non-zero responsibility)."""
    make = _separated if separated else _problem
    problem = make(n_obs, n_features, n_components, seed=11, unit=unit)
    statistics, sizes = _reference(*problem)
    if separated and n_components > 1:  # most (row, component) pairs are skipped
        X, _, _, log_weights, means, covs = problem
        log_prob = np.column_stack(
            [
                w + multivariate_normal(m, c).logpdf(X)
                for w, m, c in zip(log_weights, means, covs, strict=True)
            ]
        )
        assert np.mean(log_prob - log_prob.max(axis=1, keepdims=True) < -40.0) > 0.5
    # sum log max_k r: with separated components every term is about -1e-15 and the
    # kernel's log of a row total near 1 is exact to eps (1e-16) at best, so its scale is
    # n_obs * 1e-4 at rtol 1e-12 (the dense kernel rounds the same)
    sizes = (*sizes[:4], max(sizes[4], 1e-4 * len(problem[0])))
    _assert_matches(_sparse(*problem), (statistics, sizes), rtol=1e-12)


def test_sparse_full_kernel_float32():
    problem = _separated(1100, 16, 4, seed=5, unit=False)
    statistics, sizes = _reference(*problem)
    sizes = (*sizes[:4], max(sizes[4], 1e-4 * len(problem[0])))  # as above
    _assert_matches(_sparse(*problem, dtype=np.float32), (statistics, sizes), rtol=2e-5)
