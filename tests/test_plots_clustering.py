"""Clustering plots render, draw what they should, and reject bad input clearly."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.collections import LineCollection, PathCollection  # noqa: E402

import bayesmix as bm  # noqa: E402
from bayesmix.analysis.clustering import memberships, point_partition  # noqa: E402
from bayesmix.viz.clustering import (  # noqa: E402
    plot_clusters_2d,
    plot_co_clustering,
    plot_membership_uncertainty,
)

slow = pytest.mark.slow


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def saved(ax, tmp_path, name):
    path = tmp_path / f"{name}.png"
    ax.figure.savefig(path)
    assert path.stat().st_size > 5000
    return path


def scatter_points(ax):
    return sum(len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection))


# -- membership uncertainty -------------------------------------------------------------------
def test_membership_uncertainty_em(tmp_path, faithful, faithful_em):
    ax = plot_membership_uncertainty(faithful_em, faithful, threshold=0.01)
    saved(ax, tmp_path, "uncertainty_em")
    found = memberships(faithful_em, faithful, threshold=0.01)
    assert scatter_points(ax) == len(faithful)
    flagged = [c for c in ax.collections if isinstance(c, PathCollection)][1]
    assert len(flagged.get_offsets()) == found.uncertain.sum() >= 1
    # the flagged points are the most uncertain, at the right end
    assert flagged.get_offsets()[:, 0].min() >= len(faithful) - found.uncertain.sum()
    assert sum(isinstance(c, LineCollection) for c in ax.collections) == 1  # interval bars
    assert [t.get_text() for t in ax.get_legend().get_texts()][-1] == "1 - threshold = 0.99"


@slow
def test_membership_uncertainty_bayes_on_given_axes(tmp_path, faithful_nuts):
    found = memberships(faithful_nuts)
    fig, ax = plt.subplots()
    out = plot_membership_uncertainty(found, ax=ax)
    assert out is ax
    saved(ax, tmp_path, "uncertainty_nuts")
    bars = next(c for c in ax.collections if isinstance(c, LineCollection))
    segments = bars.get_segments()
    assert len(segments) == found.n_obs
    # bars span the credible intervals of the assigned component
    order = np.argsort(found.dataset["uncertainty"].values, kind="stable")
    np.testing.assert_allclose(
        [s[0, 1] for s in segments], found.dataset["assigned_lower"].values[order]
    )
    with pytest.raises(ValueError, match="X was given with a Memberships object"):
        plot_membership_uncertainty(found, faithful_nuts.data.values)


# -- co-clustering heat map ---------------------------------------------------------------------
@slow
def test_co_clustering_heat_map_bayes(tmp_path, faithful_nuts):
    partition = point_partition(faithful_nuts)
    ax = plot_co_clustering(partition)
    saved(ax, tmp_path, "co_clustering_nuts")
    assert len(ax.images) == 1
    image = ax.images[0].get_array()
    assert image.shape == (272, 272)
    # ordered by cluster: the first cluster is one block of high co-clustering
    size = int((partition.labels == np.unique(partition.labels)[0]).sum())
    assert image[:size, :size].mean() > 0.95 and image[:size, size:].mean() < 0.05
    boundaries = [line for line in ax.lines if line.get_color() == "white"]
    assert len(boundaries) == 2 * (partition.n_clusters - 1)
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels == [f"{k} ({n})" for k, n in partition.sizes.items()]


def test_co_clustering_heat_map_em_with_given_labels(tmp_path, faithful, faithful_em):
    fig, ax = plt.subplots()
    out = plot_co_clustering(faithful_em, faithful, labels=faithful_em.predict(faithful), ax=ax)
    assert out is ax
    saved(ax, tmp_path, "co_clustering_em")
    assert len(ax.images) == 1 and len(fig.axes) == 2  # heat map and colour bar
    with pytest.raises(ValueError, match=r"labels must have shape \(272,\)"):
        plot_co_clustering(faithful_em, faithful, labels=[0, 1])
    with pytest.raises(TypeError, match="source must be a fitted result"):
        plot_co_clustering(np.eye(3))
    with pytest.raises(ValueError, match="loss must be one of"):
        plot_co_clustering(faithful_em, faithful, loss="hamming")


# -- 2-D scatter with ellipses -------------------------------------------------------------------
@slow
def test_clusters_2d_bayes_with_em_overlay(tmp_path, faithful, faithful_nuts, faithful_em):
    ax = plot_clusters_2d(
        faithful_nuts, levels=(0.5, 0.9, 0.99), n_draw_ellipses=25, overlay={"EM": faithful_em}
    )
    saved(ax, tmp_path, "clusters_nuts")
    draws = [c for c in ax.collections if isinstance(c, LineCollection)]
    assert len(draws) == 2 and all(len(c.get_segments()) == 25 for c in draws)
    solid = [line for line in ax.lines if line.get_linestyle() == "-"]
    dashed = [line for line in ax.lines if line.get_linestyle() == "--"]
    assert len(solid) == 2 * 3 and len(dashed) == 2 * 3  # K x levels, for each result
    assert scatter_points(ax) == len(faithful)
    texts = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "EM (50%, 90%, 99%)" in texts
    assert "NUTS posterior mean (50%, 90%, 99%)" in texts
    assert "25 posterior draws (99%)" in texts
    assert ax.get_xlabel() == "eruptions" and ax.get_ylabel() == "waiting"


def test_clusters_2d_ellipse_holds_the_stated_probability(tmp_path, faithful, faithful_em):
    fig, ax = plt.subplots()
    out = plot_clusters_2d(faithful_em, faithful, features=("waiting", "eruptions"), ax=ax)
    assert out is ax
    saved(ax, tmp_path, "clusters_em")
    assert ax.get_xlabel() == "waiting" and ax.get_ylabel() == "eruptions"
    assert not [c for c in ax.collections if isinstance(c, LineCollection)]  # one draw
    # each 95% ellipse: points on it sit at Mahalanobis radius^2 = chi2_2(0.95)
    from scipy.stats import chi2

    curves = [line.get_xydata() for line in ax.lines if len(line.get_xydata()) > 2]
    assert len(curves) == 2 * 2
    level95 = curves[2:]
    for k, curve in enumerate(level95):
        mean = faithful_em.means[k, ::-1]
        cov = faithful_em.covariances[k][::-1, ::-1]
        d = curve - mean
        radius2 = np.einsum("nd,de,ne->n", d, np.linalg.inv(cov), d)
        np.testing.assert_allclose(radius2, chi2.ppf(0.95, 2), rtol=1e-8)


def test_clusters_2d_reuses_given_memberships(faithful, faithful_em):
    members = memberships(faithful_em, faithful, threshold=0.5)
    fig, (left, right) = plt.subplots(1, 2)
    plot_clusters_2d(faithful_em, faithful, members=members, ax=left)
    plot_clusters_2d(faithful_em, faithful, threshold=0.5, ax=right)
    sizes = [np.concatenate([c.get_sizes() for c in ax.collections]) for ax in (left, right)]
    np.testing.assert_array_equal(*sizes)
    with pytest.raises(ValueError, match="members must be memberships"):
        plot_clusters_2d(faithful_em, faithful.iloc[:10], members=members)


def test_clusters_2d_bad_input(faithful, faithful_em):
    one = bm.GaussianMixture(2, "full").fit(faithful[["waiting"]], method="em", random_state=0)
    with pytest.raises(ValueError, match="needs a result with at least 2 features; this one has 1"):
        plot_clusters_2d(one, faithful[["waiting"]])
    with pytest.raises(ValueError, match="unknown feature 'duration'"):
        plot_clusters_2d(faithful_em, faithful, features=("duration", "waiting"))
    with pytest.raises(ValueError, match="index 5 is out of range for 2 features"):
        plot_clusters_2d(faithful_em, faithful, features=(0, 5))
    with pytest.raises(ValueError, match="two different features"):
        plot_clusters_2d(faithful_em, faithful, features=("waiting", 1))
    with pytest.raises(ValueError, match="features must be a pair"):
        plot_clusters_2d(faithful_em, faithful, features="waiting")
    with pytest.raises(ValueError, match="levels must be probabilities strictly between 0 and 1"):
        plot_clusters_2d(faithful_em, faithful, levels=(0.5, 1.0))
    with pytest.raises(ValueError, match="X is required for EMResult"):
        plot_clusters_2d(faithful_em)
    with pytest.raises(ValueError, match="X has 3 features but the model was fitted on 2"):
        plot_clusters_2d(faithful_em, np.ones((5, 3)))
    with pytest.raises(ValueError, match="ci_prob must lie strictly between 0 and 1"):
        plot_clusters_2d(faithful_em, faithful, ci_prob=94)
    renamed = faithful.rename(columns={"waiting": "wait"})
    other = bm.GaussianMixture(2, "full").fit(renamed, method="em", random_state=0)
    with pytest.raises(ValueError, match="overlay 'EM estimate' was fitted on features"):
        plot_clusters_2d(faithful_em, faithful, overlay=other)
    with pytest.raises(TypeError, match="overlay must be a fitted result"):
        plot_clusters_2d(faithful_em, faithful, overlay=[faithful])
    with pytest.raises(TypeError, match="ax must be a matplotlib Axes"):
        plot_clusters_2d(faithful_em, faithful, ax="left")
