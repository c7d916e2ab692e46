"""Model-based agglomerative hierarchical clustering against R mclust 6.0.0's ``hc``.

The references (``tests/data/mclust/hc_*.csv``) were written by
``tests/data/mclust/make_hc_references.R``; R is not needed to run these tests.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.datasets import load_breast_cancer, load_iris, load_wine
from sklearn.metrics import adjusted_rand_score

import bayesmix as bm
from bayesmix.inference.em.hierarchical import hc_transform, hierarchical_tree
from bayesmix.inference.em.init import INIT_METHODS, hc_labels, initial_responsibilities

DATA = Path(__file__).parent / "data" / "mclust"
FAITHFUL = Path(bm.__file__).parent / "datasets" / "faithful.csv"


def _load(name: str) -> np.ndarray:
    if name == "iris":
        return load_iris().data
    if name == "wine":
        return load_wine().data
    if name == "breast_cancer":
        return load_breast_cancer().data
    if name == "faithful":
        return pd.read_csv(FAITHFUL).to_numpy(float)
    return bm.datasets.load_galaxies(thousands=True).to_numpy(float)


NAMES = ("iris", "faithful", "galaxies", "wine", "breast_cancer")
CASES = [
    (name, *key)
    for name in NAMES
    for key in pd.read_csv(DATA / f"hc_{name}_pairs.csv")[["model", "use", "partition"]]
    .drop_duplicates()
    .itertuples(index=False)
]

# Trees that part from mclust's: (first merge that differs, at least this many identical
# merges before it; smallest adjusted Rand index over G = 1..9). Every default tree (VVV or
# V on the SVD-transformed data) and every other cell agrees exactly for G = 1..9.
# - ties broken by rounding: the two candidate merges cost the same to 3e-16 (iris PCR) or
#   5e-15 (galaxies V SVD, equal gaps between rounded values) relative;
# - faithful VARS/PCS/SPH: mclust merges a pair of cost 0.376 at step 207 where one of cost
#   -1.909 (a duplicated point with its neighbour) exists; restarting mclust's hcVVV from its
#   own partition (partition=) picks the cheaper merge, so its running bookkeeping is off;
# - wine and breast_cancer SPH (sphered, covariance eigenvalues spanning 8e-8 and 2e-12):
#   the merge costs mclust reports drift from the criterion recomputed from the groups (1e-7
#   relative from step 161 of wine, 0.5% by the first differing merge).
DEVIATIONS = {
    ("iris", "VVV", "PCR"): (3, 0.6),
    ("galaxies", "V", "SVD"): (1, 0.55),
    ("faithful", "VVV", "VARS"): (207, 0.95),
    ("faithful", "VVV", "PCS"): (207, 0.95),
    ("faithful", "VVV", "SPH"): (212, 0.8),
    ("wine", "VVV", "SPH"): (169, -0.2),
    ("breast_cancer", "VVV", "SPH"): (504, 0.0),
    ("faithful", "EEE", "STD"): (17, 0.7),
}

# VII and EEE (iris, faithful, wine) are checked merge for merge: the partition after every
# merge equals mclust's except after the merges listed here, where two (or three) merges
# of exactly equal cost in exact arithmetic (the data lie on a grid of 0.1 or 1: equal
# difference vectors) are made in the other order, rounding breaking the tie; the partitions
# agree again right after. mclust's hcEEE computes the trace increments from rows scaled
# by 1/sqrt(N) in its own order of operations, which bayesmix reproduces, so on the data as
# given (VARS) even these ties fall as in mclust; standardised data (STD, SVD) already
# differ from R's in the last bits. faithful EEE STD (in DEVIATIONS) parts at such a tie at
# merge 17 and does not come back (adjusted Rand index >= 0.71 for G = 1..9).
TIES_IN_OTHER_ORDER = {
    ("iris", "VII", "VARS"): [67],
    ("iris", "EEE", "STD"): [18],
    ("iris", "EEE", "SVD"): [11, 20],
    ("faithful", "VII", "STD"): [252, 253],
    ("faithful", "EEE", "SVD"): [20, 27, 29, 37, 41, 42, 56, 57, 58, 69, 75, 76, 83, 84, 121, 140],
}


def _steps_with_other_partition(merges: np.ndarray, reference: np.ndarray) -> list[int]:
    """Merges after which the two trees' partitions differ."""
    n = merges.shape[0] + 1
    ours, theirs = np.arange(n), np.arange(n)
    steps = []
    for step, ((i, j), (k, m)) in enumerate(zip(merges, reference, strict=True)):
        ours[ours == j] = i
        theirs[theirs == m] = k
        if not np.array_equal(
            np.unique(ours, return_inverse=True)[1], np.unique(theirs, return_inverse=True)[1]
        ):
            steps.append(step)
    return steps


@pytest.fixture(scope="module")
def references():
    return {
        name: (
            pd.read_csv(DATA / f"hc_{name}.csv"),
            pd.read_csv(DATA / f"hc_{name}_pairs.csv"),
        )
        for name in NAMES
    }


@pytest.mark.parametrize(("name", "model", "use", "partition"), CASES)
def test_partitions_equal_mclust(references, name, model, use, partition):
    classes, pairs = references[name]
    pick = lambda t: t[(t.model == model) & (t.use == use) & (t.partition == partition)]  # noqa: E731
    expected = pick(classes)
    tree = hierarchical_tree(
        _load(name), model_name=model, use=use, group_duplicates=partition == "dupPartition"
    )
    mclust_merges = pick(pairs)[["i", "j"]].to_numpy() - 1
    assert tree.merges.shape == mclust_merges.shape
    deviation = DEVIATIONS.get((name, model, use))
    for g in range(1, 10):
        reference = expected[f"G{g}"].to_numpy() - 1
        labels = tree.labels(g)
        if deviation is None:
            np.testing.assert_array_equal(labels, reference, err_msg=f"G={g}")
        else:
            assert adjusted_rand_score(labels, reference) >= deviation[1]
    if deviation is not None:
        first = deviation[0]
        np.testing.assert_array_equal(tree.merges[:first], mclust_merges[:first])
    elif model in ("VII", "EEE"):
        assert _steps_with_other_partition(tree.merges, mclust_merges) == TIES_IN_OTHER_ORDER.get(
            (name, model, use), []
        )


def test_default_tree_on_breast_cancer():
    """mclust's defaults (VVV on SVD), N=569, D=30: about 0.25 s (mclust 0.28 s)."""
    X = load_breast_cancer().data
    tree = hierarchical_tree(X)
    assert tree.model_name == "VVV" and tree.use == "SVD"
    assert tree.n_groups == X.shape[0]
    assert np.bincount(tree.labels(9)).sum() == X.shape[0]


@pytest.mark.parametrize("model", ["VVV", "EII", "VII", "EEE"])
def test_weight_two_equals_duplicated_row(model):
    X = load_iris().data[::3]
    rows = [4, 17, 30]
    weights = np.ones(X.shape[0])
    weights[rows] = 2.0
    doubled = np.concatenate([X, X[rows]])
    weighted = hierarchical_tree(X, weights, model_name=model)
    duplicated = hierarchical_tree(doubled, model_name=model)
    np.testing.assert_array_equal(weighted.merges, duplicated.merges)
    np.testing.assert_allclose(weighted.costs, duplicated.costs, rtol=1e-9, atol=1e-9)
    for g in (2, 3, 5):
        np.testing.assert_array_equal(weighted.labels(g), duplicated.labels(g)[: X.shape[0]])


def test_univariate_weights_and_duplicates():
    x = _load("galaxies")
    weights = np.ones(x.shape[0])
    weights[[3, 40]] = 3.0
    tripled = np.concatenate([x, x[[3, 3, 40, 40]]])
    for model in ("V", "E"):
        weighted = hierarchical_tree(x, weights, model_name=model)
        repeated = hierarchical_tree(tripled, model_name=model)
        np.testing.assert_array_equal(weighted.labels(4), repeated.labels(4)[: x.shape[0]])


def test_zero_weight_rows_take_no_part():
    X = pd.read_csv(FAITHFUL).to_numpy(float)
    weights = np.ones(X.shape[0])
    weights[::5] = 0.0
    live = weights > 0
    tree = hierarchical_tree(X, weights)
    alone = hierarchical_tree(X[live])
    np.testing.assert_array_equal(tree.merges, alone.merges)
    assert (tree.initial[~live] == -1).all()
    labels = tree.labels(3)
    sub = labels[live]
    assert adjusted_rand_score(sub, alone.labels(3)) == 1.0  # same partition of the rest
    # The others go to the nearest group mean in the transformed space.
    Z = tree.data
    means = np.stack([Z[live][sub == k].mean(0) for k in range(3)])
    nearest = ((Z[~live, None, :] - means) ** 2).sum(-1).argmin(1)
    np.testing.assert_array_equal(labels[~live], nearest)


@pytest.mark.parametrize("group_duplicates", [True, False])
def test_duplicate_rows(group_duplicates):
    rng = np.random.default_rng(3)
    centres = np.array([[0.0, 0.0], [5.0, 0.0], [0.0, 5.0]])
    X = np.repeat(centres, 20, axis=0) + rng.normal(scale=0.01, size=(60, 2)).round(1)
    tree = hierarchical_tree(X, group_duplicates=group_duplicates)
    assert tree.n_groups == (len(np.unique(X, axis=0)) if group_duplicates else 60)
    labels = tree.labels(3)
    assert adjusted_rand_score(labels, np.repeat([0, 1, 2], 20)) == 1.0
    for model in ("EII", "VVV"):
        hierarchical_tree(np.repeat(centres, 4, axis=0), model_name=model)


def test_shift_does_not_change_the_tree():
    X = load_wine().data
    for use in ("SVD", "VARS"):
        a = hierarchical_tree(X, use=use)
        b = hierarchical_tree(X - X.mean(0) + 3.0, use=use)
        np.testing.assert_array_equal(a.labels(5), b.labels(5))


def test_subsample_path():
    rng = np.random.default_rng(0)
    X = np.concatenate([rng.normal(size=(300, 3)), rng.normal(6.0, 1.0, size=(300, 3))])
    tree = hierarchical_tree(X, max_rows=150, rng=np.random.default_rng(1))
    assert tree.subsampled
    assert tree.masses.sum() == 150
    assert tree.n_groups <= 150
    labels = tree.labels(2)
    assert labels.shape == (600,)
    assert adjusted_rand_score(labels, np.repeat([0, 1], 300)) > 0.95
    again = hierarchical_tree(X, max_rows=150, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(again.labels(2), labels)
    # A heavy row is drawn in proportion to its weight.
    weights = np.ones(600)
    weights[7] = 100.0
    heavy = hierarchical_tree(X, weights, max_rows=140, rng=np.random.default_rng(2))
    assert heavy.masses[7] in (20.0, 21.0) and heavy.masses.sum() == 140


def test_transform_svd_is_scaled_principal_components():
    X = load_iris().data
    Z = hc_transform(X, np.ones(X.shape[0]), "SVD")
    Y = (X - X.mean(0)) / X.std(0, ddof=1)
    singular = np.linalg.svd(Y, compute_uv=False)
    np.testing.assert_allclose(Z.T @ Z, np.diag(singular), atol=1e-10)
    assert hc_transform(X, np.ones(150), "STD").std(0, ddof=1) == pytest.approx(np.ones(4))
    constant = np.column_stack([X, np.full(150, 2.5)])
    assert hc_transform(constant, np.ones(150), "SVD").shape == (150, 4)


def test_bad_input():
    X = load_iris().data
    with pytest.raises(ValueError, match="NaN"):
        hierarchical_tree(np.where(np.eye(150, 4) > 0, np.nan, X))
    with pytest.raises(ValueError, match="model_name"):
        hierarchical_tree(X, model_name="EEV")
    with pytest.raises(ValueError, match="use must"):
        hierarchical_tree(X, use="RND")
    with pytest.raises(ValueError, match="univariate"):
        hierarchical_tree(X, model_name="V")
    with pytest.raises(ValueError, match="negative"):
        hierarchical_tree(X, -np.ones(150))
    with pytest.raises(ValueError, match="shape"):
        hierarchical_tree(X, np.ones(10))
    with pytest.raises(ValueError, match="max_rows"):
        hierarchical_tree(X, max_rows=1)
    with pytest.raises(ValueError, match="no varying column"):
        hierarchical_tree(np.ones((5, 2)), group_duplicates=False)
    tree = hierarchical_tree(X[:10])
    with pytest.raises(ValueError, match="between 1 and"):
        tree.labels(0)
    with pytest.raises(ValueError, match="between 1 and"):
        tree.labels(11)
    with pytest.raises(TypeError, match="integer"):
        tree.labels(2.0)


def test_init_hc_is_deterministic_and_mclusts_start():
    assert "hc" in INIT_METHODS
    X = load_iris().data
    X = X - X.mean(0)
    w = np.ones(X.shape[0])
    a = initial_responsibilities("hc", X, w, 3, np.random.default_rng(0))
    b = initial_responsibilities("hc", X, w, 3, np.random.default_rng(99))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (150, 3) and set(np.unique(a)) == {0.0, 1.0}
    expected = pd.read_csv(DATA / "hc_iris.csv").query(
        "model == 'VVV' and use == 'SVD' and partition == 'rows'"
    )
    # Unweighted rows each start as their own group, as in mclust's hc(X)
    for g in range(1, 10):
        labels = hc_labels(X, w, g, np.random.default_rng(g))
        assert adjusted_rand_score(labels, expected[f"G{g}"]) == 1.0
    # Fewer distinct rows than components: unweighted, identical rows split among groups
    # but no group mixes distinct rows; weighted, identical rows are one group and the
    # surplus components stay empty
    few = np.repeat(X[:2], 5, axis=0)
    labels = hc_labels(few, np.ones(10), 4, np.random.default_rng(0))
    assert np.unique(labels).size == 4
    assert all(np.unique(few[labels == k], axis=0).shape[0] == 1 for k in range(4))
    weighted = hc_labels(few, np.full(10, 2.0), 4, np.random.default_rng(0))
    assert np.bincount(weighted).size == 2


def test_em_from_hc_start():
    X = pd.read_csv(FAITHFUL)
    model = bm.GaussianMixture(n_components=3, covariance_type="full")
    first = model.fit(X, method="em", init="hc", n_init=1, random_state=0)
    second = model.fit(X, method="em", init="hc", n_init=1, random_state=1)
    np.testing.assert_allclose(first.bic(X), second.bic(X))


def test_em_from_a_chosen_criterion_reaches_mclusts_optimum():
    """``init="hc:EEE"`` (mclust's ``hcModelName``): EEE EM from the EEE and VII trees on
    iris reaches mclust's optima from the same starts (hc_em_iris.csv, written by
    make_hc_em_references.R; ``loglik_tight``: mclust run to tolerance 1e-12). At K = 4
    the two starts lead to optima 27 apart, in both."""
    X = load_iris().data
    reference = pd.read_csv(DATA / "hc_em_iris.csv")
    for row in reference.itertuples(index=False):
        model = bm.GaussianMixture(n_components=row.G, covariance_type=row.model)
        fit = model.fit(X, method="em", init=f"hc:{row.hc_model}", n_init=1)
        assert fit.log_likelihood == pytest.approx(row.loglik_tight, abs=1e-5), row
        assert fit.log_likelihood >= row.loglik  # mclust's default stop is a little short
    with pytest.raises(ValueError, match="after 'hc:'"):
        bm.GaussianMixture(n_components=2).fit(X, method="em", init="hc:EEV")
    with pytest.raises(ValueError, match="hc:<criterion>"):
        bm.GaussianMixture(n_components=2).fit(X, method="em", init="hcEEE")
    w = np.ones(X.shape[0])
    default = hc_labels(X, w, 4, np.random.default_rng(0))
    eee = initial_responsibilities("hc:EEE", X, w, 4, np.random.default_rng(0)).argmax(1)
    expected = pd.read_csv(DATA / "hc_iris.csv").query("model == 'EEE' and use == 'SVD'")
    np.testing.assert_array_equal(eee, expected["G4"].to_numpy() - 1)
    assert adjusted_rand_score(default, eee) < 1.0


def test_eee_pruned_search_equals_full_search(monkeypatch):
    """EEE evaluates determinants only for pairs whose trace increment leaves them a
    chance; with every pair evaluated the trees are the same (data on a grid with
    duplicates, in all three phases: the determinant phase is reached on VARS at these
    scales)."""
    from bayesmix.inference.em import hierarchical

    rng = np.random.default_rng(5)
    grid = np.repeat(rng.normal(size=(30, 3)), 2, axis=0).round(1)
    scaled = rng.normal(size=(120, 4)) * [10.0, 100.0, 1000.0, 1000.0]
    cases = [(grid, "SVD", False), (grid, "VARS", True), (scaled, "SVD", False)]
    cases.append((scaled, "VARS", False))
    build = lambda X, use, grouped: hierarchical_tree(  # noqa: E731
        X, model_name="EEE", use=use, group_duplicates=grouped
    )
    pruned = [build(*case) for case in cases]

    def every_pair(self, active, limit):
        return np.triu_indices(active, 1)

    monkeypatch.setattr(hierarchical._EEE, "_candidates", every_pair)
    for tree, case in zip(pruned, cases, strict=True):
        full = build(*case)
        np.testing.assert_array_equal(tree.merges, full.merges)
        np.testing.assert_array_equal(tree.costs, full.costs)
