"""EM's starts: k-means++ draws, starts that repeat an earlier one, and the starts that
the fits of one K share in ``select_components`` (issue 19: the table's speed)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_iris

import bayesmix as bm
from bayesmix.data import as_data
from bayesmix.inference.em import init as em_init
from bayesmix.inference.em.fit import fit_em


def reference_kmeans_plusplus(X, sample_weight, n_components, rng):
    """D^2 seeding written with ``rng.choice`` and direct distances."""
    centres = [X[rng.choice(len(X), p=sample_weight / sample_weight.sum())]]
    dist = ((X - centres[0]) ** 2).sum(axis=1)
    for _ in range(1, n_components):
        score = sample_weight * dist
        total = score.sum()
        probs = score / total if total > 0 else sample_weight / sample_weight.sum()
        centres.append(X[rng.choice(len(X), p=probs)])
        dist = np.minimum(dist, ((X - centres[-1]) ** 2).sum(axis=1))
    return np.array(centres)


@pytest.mark.parametrize("seed", range(12))
def test_kmeans_plusplus_draws_what_rng_choice_draws(seed):
    rng = np.random.default_rng(seed)
    n_obs = int(rng.integers(5, 300))
    X = rng.normal(size=(n_obs, int(rng.integers(1, 5)))) * 10.0 ** rng.integers(-3, 4)
    if seed % 3 == 0:
        X[: n_obs // 2] = X[0]  # many coinciding rows: zero distances
    weights = rng.random(n_obs) if seed % 2 else np.ones(n_obs)
    n_components = int(rng.integers(1, 9))
    ours = em_init.kmeans_plusplus(X, weights, n_components, np.random.default_rng(seed))
    theirs = reference_kmeans_plusplus(X, weights, n_components, np.random.default_rng(seed))
    np.testing.assert_array_equal(ours, theirs)


@pytest.fixture(scope="module")
def iris():
    return load_iris().data


def test_one_component_is_fitted_once(iris):
    fit = bm.GaussianMixture(1, "full").fit(iris, random_state=0)
    assert fit.settings["n_runs"] == 5
    assert fit.settings["n_repeated_starts"] == 4  # every start of K=1 is the same
    np.testing.assert_allclose(fit.means[0], iris.mean(axis=0), rtol=1e-12)


@pytest.mark.parametrize(
    ("n_components", "covariance_type", "seed"), [(2, "full", 2), (2, "EII", 4), (3, "VEV", 0)]
)
def test_skipping_repeated_starts_keeps_the_optimum(iris, n_components, covariance_type, seed):
    """With a progress callback every start is run (on the general route): the same
    optimum."""
    model = bm.GaussianMixture(n_components, covariance_type)
    skipping = model.fit(iris, random_state=seed)
    every = fit_em(
        model, as_data(iris), use_priors=False, random_state=seed, callback=lambda progress: None
    )
    assert skipping.settings["n_repeated_starts"] == (n_components == 2)
    assert every.settings["n_repeated_starts"] == 0
    np.testing.assert_allclose(skipping.log_likelihood, every.log_likelihood, rtol=1e-10)
    np.testing.assert_allclose(skipping.means, every.means, rtol=1e-6, atol=1e-8)


def test_models_of_one_k_share_their_starts(iris, monkeypatch):
    drawn = []
    original = em_init._drawn_responsibilities

    def counting(method, *args):
        drawn.append(method)
        return original(method, *args)

    monkeypatch.setattr(em_init, "_drawn_responsibilities", counting)
    types = ["VVV", "EEE", "VEV", "EII"]
    selection = bm.select_components(iris, [2, 3], types, random_state=0)
    # five starts (hc + four k-means++) per K, drawn once for the four models
    assert len(drawn) == 2 * 5
    monkeypatch.undo()
    for covariance_type in types:
        for n_components in (2, 3):
            cell = selection.fits["em", covariance_type, n_components]
            alone = bm.GaussianMixture(n_components, covariance_type).fit(
                iris, random_state=cell.settings["random_state"]
            )
            assert alone.log_likelihood == cell.log_likelihood  # the same starts, bit for bit


def test_data_summaries_are_computed_once_per_data(iris):
    """The regularisation's feature scales and the spurious-maximum judge's feature
    resolutions: once per data set for a grid, the values computed directly."""
    from bayesmix.inference.em.degeneracy import feature_resolution
    from bayesmix.inference.em.fit import feature_scale, regularisation

    weights = np.ones(len(iris))
    calls = []

    def counting(X, sample_weight):
        calls.append(1)
        return feature_scale(X, sample_weight)

    other = iris[::-1].copy()
    with em_init.shared_starts(0):
        first = em_init.shared_summary("scale", iris, weights, counting)
        again = em_init.shared_summary("scale", iris.copy(), weights, counting)
        em_init.shared_summary("scale", other, weights, counting)  # other data: computed
        em_init.shared_summary("scale", iris, weights * 2.0, counting)  # other weights
        resolution = em_init.shared_summary("resolution", iris, weights, feature_resolution)
    assert len(calls) == 3
    assert again is first and not first.flags.writeable
    np.testing.assert_allclose(first, iris.var(axis=0), rtol=1e-12)
    np.testing.assert_allclose(regularisation(iris, weights, 1e-6), 1e-6 * iris.var(axis=0))
    np.testing.assert_allclose(resolution, [0.1, 0.1, 0.1, 0.1], rtol=1e-9)
    em_init.shared_summary("scale", iris, weights, counting)  # outside the block: computed
    assert len(calls) == 4
