"""Memberships with uncertainty, co-clustering and point partitions.

References are independent of bayesmix's own clustering code: scipy densities for the
responsibilities, Monte Carlo allocations for the co-clustering matrix, direct pair sums
and the loop form of Wade & Ghahramani's VI bound for the losses, brute-force single
moves for the greedy search, and simulated data with known labels.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy.special import logsumexp
from scipy.stats import entropy, multivariate_normal

import bayesmix as bm
from bayesmix.analysis.clustering import (
    Memberships,
    adjusted_rand_index,
    co_clustering,
    expected_loss,
    memberships,
    partition_from_psm,
    point_partition,
)
from bayesmix.data import as_data
from bayesmix.results import parameters_dataset
from bayesmix.results.posterior import BayesResult

slow = pytest.mark.slow


# -- independent references ------------------------------------------------------------
def scipy_responsibilities(X, weights, means, covariances):
    """p(z = k | x) from scipy's multivariate normal densities."""
    log_joint = np.column_stack(
        [
            np.log(w) + multivariate_normal(m, c).logpdf(X)
            for w, m, c in zip(weights, means, covariances, strict=True)
        ]
    )
    return np.exp(log_joint - logsumexp(log_joint, axis=1, keepdims=True))


def binder_direct(psm, labels):
    """sum_{i<j} |1(c_i = c_j) - P_ij| over the upper triangle."""
    same = labels[:, None] == labels[None, :]
    upper = np.triu_indices(len(labels), 1)
    return np.abs(same.astype(float) - psm)[upper].sum()


def vi_lower_bound_loop(psm, labels):
    """Wade & Ghahramani's VI lower bound, written as mcclust.ext's VI.lb loop."""
    n = len(labels)
    total = 0.0
    for i in range(n):
        same = labels == labels[i]
        total += (
            np.log2(same.sum()) + np.log2(psm[i].sum()) - 2 * np.log2((same * psm[i]).sum())
        ) / n
    return total


def direct_loss(psm, labels, loss):
    return binder_direct(psm, labels) if loss == "binder" else vi_lower_bound_loop(psm, labels)


def loss_rounding(psm, labels, loss):
    """How far two correct computations of ``expected_loss`` may differ by rounding.

    bayesmix computes the loss from sums over the whole PSM whose terms largely cancel
    (Binder: ``sum P_ij``, ``sum n_i``, ``2 sum s_i``; VI: three logarithms per row), so a
    loss that is zero up to rounding carries an absolute error of a few eps times the sum
    of the magnitudes of those terms, not of the loss. Blocked sums of length N (BLAS,
    numpy) round like a random walk, about sqrt(N) eps relative each; 4 is margin.
    """
    n = len(labels)
    same = (labels[:, None] == labels[None, :]).astype(float)
    if loss == "binder":
        magnitude = (psm.sum() + same.sum() + 2.0 * (same * psm).sum() + 2 * n) / 2.0
    else:
        sizes, rows, within = same.sum(1), psm.sum(1), (same * psm).sum(1)
        terms = np.abs(np.log2(sizes)) + np.abs(np.log2(rows)) + 2.0 * np.abs(np.log2(within))
        magnitude = terms.mean()
    return 4.0 * np.sqrt(n) * np.finfo(float).eps * magnitude


def permuted_result(result, rng):
    """The same posterior with the components of every draw permuted at random."""
    post = result.posterior
    n_chains, n_draws, k = post["weights"].shape
    perms = np.argsort(rng.random((n_chains, n_draws, k)), axis=-1)

    def take(values):
        shape = perms.shape + (1,) * (values.ndim - 3)
        return np.take_along_axis(values, perms.reshape(shape), axis=2)

    return BayesResult(
        model=result.model,
        posterior=parameters_dataset(
            take(post["weights"].values),
            take(post["means"].values),
            take(post["covariances"].values),
            result.feature_names,
        ),
        data=result.data,
        priors=result.priors,
        settings=result.settings,
    )


# -- fits and summaries shared within this module --------------------------------------------
@pytest.fixture(scope="module")
def nuts_memberships(faithful_nuts):
    return memberships(faithful_nuts)


@pytest.fixture(scope="module")
def nuts_psm(faithful_nuts):
    return co_clustering(faithful_nuts)


@pytest.fixture(scope="module")
def separated():
    """Two well-separated simulated clusters with known labels, and a NUTS fit (same
    PyMC graph as faithful_nuts, so no new compile)."""
    rng = np.random.default_rng(42)
    a = rng.multivariate_normal([0.0, 0.0], [[1.0, 0.3], [0.3, 0.6]], size=70)
    b = rng.multivariate_normal([9.0, 6.0], [[0.8, -0.2], [-0.2, 1.0]], size=50)
    X = np.vstack([a, b])
    truth = np.repeat([0, 1], [70, 50])
    fit = bm.GaussianMixture(2, "full").fit(
        X, method="nuts", chains=2, draws=500, tune=500, random_state=3, order_by=0
    )
    return X, truth, fit


@pytest.fixture(scope="module")
def surplus():
    """A synthetic posterior with one surplus component and label switching: 3
    components for 2 true clusters, components permuted at random in every draw."""
    rng = np.random.default_rng(7)
    X = np.vstack(
        [rng.normal([0.0, 0.0], 0.7, size=(60, 2)), rng.normal([8.0, 8.0], 0.7, size=(60, 2))]
    )
    truth = np.repeat([0, 1], 60)
    n_draws = 300
    weights = np.column_stack(
        [np.full(n_draws, 0.5), np.full(n_draws, 0.45), np.full(n_draws, 0.05)]
    )
    base = np.array([[0.0, 0.0], [8.0, 8.0], [8.0, 8.0]])
    means = base + rng.normal(scale=0.1, size=(n_draws, 3, 2))
    covs = np.stack([0.5 * np.eye(2), 0.5 * np.eye(2), 3.0 * np.eye(2)])
    covs = np.broadcast_to(covs, (n_draws, 3, 2, 2)).copy()
    perms = np.argsort(rng.random((n_draws, 3)), axis=1)
    weights = np.take_along_axis(weights, perms, axis=1)
    means = np.take_along_axis(means, perms[:, :, None], axis=1)
    covs = np.take_along_axis(covs, perms[:, :, None, None], axis=1)
    model = bm.GaussianMixture(3, "full")
    data = as_data(X)
    result = BayesResult(
        model=model,
        posterior=parameters_dataset(weights[None], means[None], covs[None], data.feature_names),
        data=data,
        priors=model.resolve_priors(X),
        settings={"method": "nuts"},
    )
    return X, truth, result


# -- memberships ------------------------------------------------------------------------------
def test_em_memberships_are_scipy_responsibilities(faithful, faithful_em):
    reference = scipy_responsibilities(
        faithful.values, faithful_em.weights, faithful_em.means, faithful_em.covariances
    )
    found = memberships(faithful_em, faithful)
    ds = found.dataset
    assert ds["probability"].dims == ("obs", "component")
    np.testing.assert_allclose(ds["probability"].values, reference, rtol=1e-8, atol=1e-12)
    # one draw: the intervals collapse to the point
    np.testing.assert_allclose(ds["lower"].values, reference, rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(ds["upper"].values, reference, rtol=1e-8, atol=1e-12)
    np.testing.assert_array_equal(found.labels, reference.argmax(axis=1))
    np.testing.assert_allclose(ds["uncertainty"].values, 1 - reference.max(axis=1), atol=1e-8)
    np.testing.assert_allclose(ds["entropy"].values, entropy(reference, axis=1), atol=1e-8)
    np.testing.assert_array_equal(ds["obs"].values, faithful.index.values)
    assert ds.attrs["n_draws"] == 1


@slow
@pytest.mark.parametrize("name", ["faithful_nuts", "faithful_advi"])
def test_bayes_mean_memberships_are_predict_proba(request, faithful, name):
    result = request.getfixturevalue(name)
    found = memberships(result, ci_prob=0.9)  # X defaults to the training data
    mean = found.dataset["probability"].values
    np.testing.assert_allclose(mean, result.predict_proba(faithful), rtol=1e-10, atol=1e-14)
    lower, upper = found.dataset["lower"].values, found.dataset["upper"].values
    # an equal-tailed interval may miss the mean of extremely skewed draws, here only
    # for probabilities within 1e-9 of 0 or 1
    assert np.all(lower <= mean + 1e-9) and np.all(mean <= upper + 1e-9)
    # the interval is the equal-tailed 90% range of the per-draw probabilities
    draws = result.membership_draws(faithful).stack(sample=("chain", "draw"))
    draws = draws.transpose("sample", "obs", "component").values
    np.testing.assert_allclose(lower, np.quantile(draws, 0.05, axis=0), atol=1e-12)
    np.testing.assert_allclose(upper, np.quantile(draws, 0.95, axis=0), atol=1e-12)
    assert (upper - lower).max() > 0.1  # some assignments really are uncertain
    assert found.dataset.attrs["n_draws"] == result.n_draws


@slow
def test_uncertain_flag_follows_the_documented_rule(faithful_nuts):
    counts = []
    for threshold in (0.01, 0.05, 0.2):
        ds = memberships(faithful_nuts, threshold=threshold).dataset
        expected = (1 - ds["probability"].values.max(axis=1) > threshold) | (
            ds["assigned_lower"].values < 1 - threshold
        )
        np.testing.assert_array_equal(ds["uncertain"].values, expected)
        counts.append(int(expected.sum()))
    assert counts[0] >= counts[1] >= counts[2] >= 1
    # the flag also catches a confident mean with a wide interval (at threshold 0.05 on
    # this posterior: probability above 0.95, interval reaching below it)
    ds = memberships(faithful_nuts, threshold=0.05).dataset
    caught = ds["uncertain"].values & (ds["uncertainty"].values <= 0.05)
    assert caught.any()


@slow
def test_memberships_table_and_notebook_display(faithful, nuts_memberships):
    table = nuts_memberships.to_dataframe()
    assert isinstance(nuts_memberships, Memberships)
    assert table.shape[0] == len(faithful)
    assert list(table.index) == list(faithful.index)
    assert {"assignment", "probability", "lower", "upper", "uncertainty", "entropy"} <= set(
        table.columns
    )
    assert {"p[0]", "p[1] lower", "p[1] upper"} <= set(table.columns)
    assert table["uncertain"].sum() == nuts_memberships.uncertain.sum()
    html = nuts_memberships._repr_html_()
    assert "<table" in html and "uncertain" in html
    assert repr(nuts_memberships).startswith("Memberships of 272 observations in 2 components")


def test_memberships_bad_input(faithful, faithful_em):
    with pytest.raises(ValueError, match="X is required for EMResult"):
        memberships(faithful_em)
    three = np.column_stack([faithful.values, faithful.values[:, 0]])
    with pytest.raises(ValueError, match="X has 3 features but the model was fitted on 2"):
        memberships(faithful_em, three)
    for bad in (0.0, 1.0, 1.5):
        with pytest.raises(ValueError, match="ci_prob must lie strictly between 0 and 1"):
            memberships(faithful_em, faithful, ci_prob=bad)
    with pytest.raises(TypeError, match="ci_prob must be a number in"):
        memberships(faithful_em, faithful, ci_prob="94%")
    with pytest.raises(ValueError, match="threshold must be in"):
        memberships(faithful_em, faithful, threshold=1.0)
    with pytest.raises(TypeError, match="result must be a fitted mixture"):
        memberships(faithful.values, faithful)


# -- co-clustering ----------------------------------------------------------------------------
def test_em_co_clustering_is_product_of_responsibilities(faithful, faithful_em):
    r = scipy_responsibilities(
        faithful.values, faithful_em.weights, faithful_em.means, faithful_em.covariances
    )
    expected = r @ r.T
    np.fill_diagonal(expected, 1.0)
    psm = co_clustering(faithful_em, faithful)
    assert psm.dims == ("obs", "obs_")
    np.testing.assert_array_equal(psm["obs"].values, faithful.index.values)
    np.testing.assert_allclose(psm.values, expected, atol=1e-10)


@slow
def test_co_clustering_is_a_similarity_matrix(faithful, nuts_psm):
    P = nuts_psm.values
    assert P.shape == (len(faithful), len(faithful))
    np.testing.assert_array_equal(P, P.T)
    np.testing.assert_array_equal(np.diagonal(P), 1.0)
    assert P.min() >= 0.0 and P.max() <= 1.0
    # pairs across the two Old Faithful groups almost never co-cluster, within almost always
    off = P[~np.eye(len(P), dtype=bool)]
    assert np.mean(off < 0.01) > 0.4 and np.mean(off > 0.99) > 0.4


@slow
def test_co_clustering_is_invariant_to_label_permutations(faithful_nuts, nuts_psm):
    shuffled = permuted_result(faithful_nuts, np.random.default_rng(0))
    # the permutation really scrambles the labels ...
    mixed = memberships(shuffled).probabilities
    assert np.abs(mixed - 0.5).max() < 0.2
    # ... but not the co-clustering
    np.testing.assert_allclose(co_clustering(shuffled).values, nuts_psm.values, atol=1e-12)


@slow
def test_co_clustering_agrees_with_sampled_allocations(faithful, faithful_nuts, nuts_psm):
    rng = np.random.default_rng(1)
    probs = faithful_nuts.membership_draws(faithful).stack(sample=("chain", "draw"))
    probs = probs.transpose("sample", "obs", "component").values  # (S, N, K)
    cumulative = probs.cumsum(axis=2)
    n_rep = 4
    agree = np.zeros((probs.shape[1], probs.shape[1]))
    for _ in range(n_rep):
        u = rng.random(probs.shape[:2])
        z = (u[:, :, None] > cumulative).sum(axis=2)  # one allocation per draw and obs
        for k in range(probs.shape[2]):
            indicator = (z == k).astype(float)
            agree += indicator.T @ indicator
    estimate = agree / (n_rep * probs.shape[0])
    error = np.abs(estimate - nuts_psm.values)
    assert error.max() < 0.03
    assert error.mean() < 0.002


def test_co_clustering_refuses_huge_matrices(faithful, faithful_em):
    with pytest.raises(ValueError, match=r"272 x 272 co-clustering matrix.*subsample"):
        co_clustering(faithful_em, faithful, max_obs=100)
    with pytest.raises(ValueError, match="raise max_obs="):
        point_partition(faithful_em, faithful, max_obs=100)


# -- point partitions -------------------------------------------------------------------------
@slow
@pytest.mark.parametrize("loss", ["binder", "vi"])
def test_partition_recovers_well_separated_truth(separated, loss):
    X, truth, fit = separated
    partition = point_partition(fit, loss=loss)
    assert adjusted_rand_index(partition.labels, truth) == 1.0
    assert partition.n_clusters == 2
    psm = partition.co_clustering.values
    np.testing.assert_allclose(psm, co_clustering(fit, X).values, atol=1e-12)
    np.testing.assert_allclose(
        partition.expected_loss,
        direct_loss(psm, partition.labels, loss),
        rtol=1e-10,
        atol=loss_rounding(psm, partition.labels, loss),
    )


@pytest.mark.parametrize("loss", ["binder", "vi"])
def test_partition_merges_surplus_components_under_label_switching(surplus, loss):
    X, truth, result = surplus
    # label switching makes the per-component memberships uninformative ...
    ds = memberships(result).dataset
    assert ds["probability"].values.max() < 0.5
    assert (ds["upper"] - ds["lower"]).values.min() > 0.75
    # ... while the loss-based partition finds the two true clusters
    partition = point_partition(result, loss=loss)
    assert partition.n_clusters == 2
    assert adjusted_rand_index(partition.labels, truth) == 1.0
    psm = partition.co_clustering.values
    np.testing.assert_allclose(
        partition.expected_loss,
        direct_loss(psm, partition.labels, loss),
        rtol=1e-10,
        atol=loss_rounding(psm, partition.labels, loss),
    )


def test_em_partition_is_the_em_assignment(faithful, faithful_em):
    partition = point_partition(faithful_em, faithful)
    # clusters are named after the component they share most observations with
    np.testing.assert_array_equal(partition.labels, faithful_em.predict(faithful))
    np.testing.assert_allclose(
        partition.expected_loss,
        binder_direct(co_clustering(faithful_em, faithful).values, partition.labels),
    )
    series = partition.to_series()
    assert list(series.index) == list(faithful.index)
    assert "Partition of 272 observations into 2 clusters" in repr(partition)


@pytest.mark.parametrize("loss", ["binder", "vi"])
def test_greedy_search_ends_in_a_local_minimum(loss):
    rng = np.random.default_rng(5)
    n, k = 24, 3
    probs = rng.dirichlet(np.full(k, 0.4), size=(40, n))  # 40 draws of memberships
    psm = np.einsum("snk,smk->nm", probs, probs) / 40
    np.fill_diagonal(psm, 1.0)
    partition = partition_from_psm(psm, loss)
    best = direct_loss(psm, partition.labels, loss)
    np.testing.assert_allclose(partition.expected_loss, best, rtol=1e-10)
    # no single observation moved to another (or a new) cluster lowers the loss
    labels = partition.labels
    for i in range(n):
        for target in range(labels.max() + 2):
            moved = labels.copy()
            moved[i] = target
            assert direct_loss(psm, moved, loss) >= best - 1e-9
    # and it beats the candidates it started from
    random_labels = rng.integers(0, 3, size=(20, n))
    assert all(direct_loss(psm, c, loss) >= best - 1e-9 for c in random_labels)


@pytest.mark.parametrize("loss", ["binder", "vi"])
def test_expected_loss_matches_direct_computation(loss):
    rng = np.random.default_rng(8)
    probs = rng.dirichlet(np.ones(4), size=(30, 50))
    psm = np.einsum("snk,smk->nm", probs, probs) / 30
    np.fill_diagonal(psm, 1.0)
    for labels in (rng.integers(0, 4, size=50), np.zeros(50, int), np.arange(50)):
        np.testing.assert_allclose(
            expected_loss(psm, labels, loss), direct_loss(psm, labels, loss), rtol=1e-12
        )


def test_partition_bad_input(faithful, faithful_em):
    with pytest.raises(ValueError, match=r"loss must be one of \['binder', 'vi'\]"):
        point_partition(faithful_em, faithful, loss="squared")
    with pytest.raises(ValueError, match="loss must be one of"):
        expected_loss(np.eye(3), [0, 1, 1], loss="ari")
    with pytest.raises(ValueError, match="psm must be a square"):
        expected_loss(np.ones((3, 4)), [0, 1, 1])
    with pytest.raises(ValueError, match="psm must be symmetric"):
        expected_loss(np.array([[1.0, 0.2], [0.8, 1.0]]), [0, 1])
    with pytest.raises(ValueError, match="labels has 2 entries but psm is for 3"):
        expected_loss(np.eye(3), [0, 1])
    with pytest.raises(ValueError, match="X is required"):
        point_partition(faithful_em)
    with pytest.raises(ValueError, match=r"candidates must have shape \(n_candidates, 3\)"):
        partition_from_psm(np.eye(3), candidates=[[0, 1]])
    with pytest.raises(ValueError, match="psm must have a unit diagonal"):
        partition_from_psm(np.full((3, 3), 0.5))


def test_adjusted_rand_index_against_known_values():
    assert adjusted_rand_index([0, 0, 1, 1], [5, 5, 2, 2]) == 1.0
    # Hubert & Arabie's formula by hand for a small table: [[2, 0], [1, 1]]
    a, b = [0, 0, 1, 1], [0, 0, 0, 1]
    index, expected_index, max_index = 1.0, (2 * 3) / 6, (2 + 3) / 2
    ari = (index - expected_index) / (max_index - expected_index)
    assert adjusted_rand_index(a, b) == pytest.approx(ari)
    with pytest.raises(ValueError, match="must label the same observations"):
        adjusted_rand_index([0, 1], [0, 1, 2])
