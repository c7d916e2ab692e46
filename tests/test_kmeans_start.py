"""The compiled k-means passes of the k-means start (bayesmix/inference/em/kmeans_kernels.py)
against scikit-learn's KMeans and direct numpy distances."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.cluster import KMeans

from bayesmix.inference.em.init import KMEANS_TOL, kmeans_plusplus, lloyd, nearest
from bayesmix.inference.em.kmeans_kernels import start_statistics
from bayesmix.jit import read_only


def _blobs(n_obs: int, n_features: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-5.0, 5.0, size=(6, n_features))
    return centres[rng.integers(6, size=n_obs)] + rng.normal(size=(n_obs, n_features))


@pytest.mark.parametrize("n_features", [1, 3, 4, 9])
def test_lloyd_is_sklearns_lloyd_from_the_same_seeds(n_features):
    """Rows not a multiple of the block (2,003), features not a multiple of four."""
    X = _blobs(2_003, n_features, n_features)
    weights = np.random.default_rng(1).uniform(0.5, 2.0, X.shape[0])
    seeds = kmeans_plusplus(X, weights, 6, np.random.default_rng(2))
    centres, cost = lloyd(X, weights, seeds)
    reference = KMeans(6, init=seeds, n_init=1, algorithm="lloyd", tol=KMEANS_TOL).fit(
        X, sample_weight=weights
    )
    np.testing.assert_allclose(centres, reference.cluster_centers_, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(cost, reference.inertia_, rtol=1e-10)
    np.testing.assert_array_equal(nearest(X, centres)[0], reference.labels_)


def test_nearest_is_exact_far_from_zero():
    """Data around 1e8 with unit spread: the distances are those of ``x - c`` formed
    directly, the labels those of the direct argmin."""
    rng = np.random.default_rng(3)
    X = 1e8 + rng.normal(size=(1_000, 5))
    centres = 1e8 + rng.normal(size=(4, 5))
    labels, dist = nearest(X, centres)
    direct = ((X[:, None, :] - centres[None]) ** 2).sum(-1)
    np.testing.assert_array_equal(labels, direct.argmin(1))
    np.testing.assert_allclose(dist, direct.min(1), rtol=1e-12)


def test_ties_go_to_the_first_centre_and_empty_centres_stay():
    X = np.array([[0.0], [2.0], [10.0]])
    labels, dist = nearest(X, np.array([[1.0], [1.0], [100.0]]))
    np.testing.assert_array_equal(labels, [0, 0, 0])
    np.testing.assert_array_equal(dist, [1.0, 1.0, 81.0])
    centres, cost = lloyd(X, np.ones(3), np.array([[0.0], [10.0], [100.0]]))
    np.testing.assert_array_equal(centres, [[1.0], [10.0], [100.0]])  # the third is empty
    assert cost == 2.0


def test_start_statistics_are_the_weighted_moments():
    """Against numpy's sums, for a hard start with zero weights and a soft one."""
    rng = np.random.default_rng(4)
    X = rng.normal(size=(500, 5)) + 3.0
    weights = rng.uniform(0.0, 2.0, 500)
    weights[::7] = 0.0
    shift = X.mean(axis=0)
    hard = np.eye(4)[rng.integers(4, size=500)]
    soft = rng.dirichlet(np.ones(4), size=500)
    for resp in (hard, soft):
        mass, sum_x, sum_xx = start_statistics(
            read_only(X), read_only(weights), read_only(shift), read_only(resp)
        )
        weighted = resp * weights[:, None]
        centred = X - shift
        np.testing.assert_allclose(mass, weighted.sum(axis=0), rtol=1e-12)
        np.testing.assert_allclose(sum_x, weighted.T @ centred, rtol=1e-12, atol=1e-12)
        expected = np.einsum("nk,nd,ne->kde", weighted, centred, centred)
        np.testing.assert_allclose(sum_xx, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("n_components", [1, 3, 6])
def test_kmeans_labels_are_the_kmeans_start_from_the_same_draws(n_components):
    """The whole small-data k-means start in one call (VB's): ``init.kmeans``' labels
    from the same generator, which one vector of its draws leaves where ``kmeans``'s
    calls leave it; unit and integer weights, rows not a multiple of the block."""
    from bayesmix.inference.em.init import KMEANS_MAX_ITER, KMEANS_RESTARTS, kmeans
    from bayesmix.inference.em.kmeans_kernels import kmeans_labels

    X = _blobs(601, 3, 5)
    n_trials = 2 + int(np.log(n_components))
    for seed in range(4):
        for weights in (np.ones(601), np.random.default_rng(seed).integers(1, 4, 601) * 1.0):
            reference_rng, rng = np.random.default_rng(seed), np.random.default_rng(seed)
            reference = kmeans(X, weights, n_components, reference_rng)
            uniforms = rng.random(KMEANS_RESTARTS * (1 + (n_components - 1) * n_trials))
            labels, centres = kmeans_labels(
                read_only(X), read_only(weights), read_only(uniforms), n_components,
                n_trials, KMEANS_RESTARTS, KMEANS_MAX_ITER,
                KMEANS_TOL * float(X.var(axis=0).mean()),
            )  # fmt: skip
            np.testing.assert_array_equal(labels, reference)
            np.testing.assert_array_equal(nearest(X, centres)[0], reference)
            assert rng.bit_generator.state == reference_rng.bit_generator.state
