"""Pictures of clusterings with their uncertainty: memberships, co-clustering, 2-D scatter.

Every function draws on one matplotlib axes (``ax=``, or a new figure) and returns it.
"""

from __future__ import annotations

import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from bayesmix.analysis.clustering import (
    Memberships,
    Partition,
    co_clustering,
    memberships,
    point_partition,
    result_data,
)
from bayesmix.results import MixtureResult
from bayesmix.validation import DEFAULT_CI_PROB, check_int, check_random_state

__all__ = ["plot_clusters_2d", "plot_co_clustering", "plot_membership_uncertainty"]

_LINESTYLES = ("--", ":", "-.")


def _axes(ax: Any, figsize: tuple[float, float]):
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
        return ax
    from matplotlib.axes import Axes

    if not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes or None; got {type(ax).__name__}.")
    return ax


def _colour(k: int) -> str:
    return f"C{int(k) % 10}"


# -- membership uncertainty --------------------------------------------------------------
def plot_membership_uncertainty(
    source: MixtureResult | Memberships,
    X: Any = None,
    *,
    ci_prob: float = DEFAULT_CI_PROB,
    threshold: float = 0.2,
    ax: Any = None,
):
    """Probability of each observation's assigned component, sorted by uncertainty.

    Observations run along the x axis from the most to the least certain assignment
    (mclust's ``1 - max_k p_nk``); each shows the mean probability of its assigned
    component (coloured by component) with its credible interval over draws as a
    vertical bar. Observations flagged ``uncertain`` (see
    :func:`bayesmix.analysis.clustering.memberships`) are drawn larger with a black edge; the
    dashed line marks ``1 - threshold``.

    Parameters
    ----------
    source : MixtureResult or Memberships
        A fit (memberships are computed with ``X``, ``ci_prob`` and ``threshold``) or
        the output of :func:`~bayesmix.analysis.clustering.memberships`.
    X : array-like, optional
        Observations; defaults to a Bayesian result's training data, required for EM.
    ci_prob, threshold : float
        Passed to :func:`~bayesmix.analysis.clustering.memberships` when ``source`` is a result.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    from matplotlib.lines import Line2D

    if isinstance(source, Memberships):
        if X is not None:
            raise ValueError(
                "X was given with a Memberships object, which already holds its "
                "observations; pass the fitted result instead to use X."
            )
        found = source
    else:
        found = memberships(source, X, ci_prob=ci_prob, threshold=threshold)
    ax = _axes(ax, (8, 4))
    ds = found.dataset
    order = np.argsort(ds["uncertainty"].values, kind="stable")
    position = np.arange(order.size)
    assignment = ds["assignment"].values[order]
    probability = ds["assigned_probability"].values[order]
    flagged = ds["uncertain"].values[order]
    colours = [_colour(k) for k in assignment]
    ax.vlines(
        position,
        ds["assigned_lower"].values[order],
        ds["assigned_upper"].values[order],
        colors=colours,
        alpha=0.6,
        linewidth=1.2,
    )
    ax.scatter(position[~flagged], probability[~flagged], s=12, c=np.array(colours)[~flagged])
    if flagged.any():
        ax.scatter(
            position[flagged],
            probability[flagged],
            s=45,
            c=np.array(colours)[flagged],
            edgecolors="black",
            linewidths=1.2,
            zorder=3,
        )
    limit = 1.0 - ds.attrs["threshold"]
    ax.axhline(limit, color="grey", linestyle="--", linewidth=1)
    handles = [
        Line2D([], [], marker="o", linestyle="", color=_colour(k), label=f"component {k}")
        for k in np.unique(ds["assignment"].values)
    ]
    handles.append(
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            markerfacecolor="white",
            markeredgecolor="black",
            markersize=7,
            label=f"uncertain ({int(flagged.sum())})",
        )
    )
    handles.append(Line2D([], [], color="grey", linestyle="--", label=f"1 - threshold = {limit:g}"))
    ax.legend(handles=handles, loc="lower left", fontsize="small")
    lowest = min(1.0 / found.n_components, float(ds["assigned_lower"].min()))
    ax.set_ylim(max(0.0, lowest - 0.05), 1.02)
    ax.set_xlim(-1, order.size)
    ax.set_xlabel("observations, from most to least certain assignment")
    ax.set_ylabel("probability of assigned component")
    ax.set_title(
        f"Membership uncertainty ({ds.attrs['method']}, {ds.attrs['ci_prob']:.0%} intervals)"
    )
    return ax


# -- co-clustering heat map ----------------------------------------------------------------
def plot_co_clustering(
    source: MixtureResult | Partition,
    X: Any = None,
    *,
    labels: Any = None,
    loss: str = "binder",
    cmap: str = "viridis",
    ax: Any = None,
):
    """Heat map of the co-clustering matrix ``P(z_i = z_j | X)``, ordered by cluster.

    Observations are grouped by the point partition (clusters in label order, and
    within a cluster by decreasing mean co-clustering with its members, so the
    ambiguous observations sit at the cluster's end); white lines mark cluster
    boundaries.

    Parameters
    ----------
    source : MixtureResult or Partition
        A fit, whose point partition is computed with ``loss``
        (:func:`~bayesmix.analysis.clustering.point_partition`), or a computed
        :class:`~bayesmix.analysis.clustering.Partition` (its matrix and labels are used).
    X : array-like, optional
        Observations, for a result; defaults to a Bayesian result's training data.
    labels : array-like of shape (n_obs,), optional
        Order by this partition instead (e.g. ``em.predict(X)``).
    loss : {"binder", "vi"}
    cmap : str
        Matplotlib colour map.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    if isinstance(source, Partition):
        if X is not None:
            raise ValueError(
                "X was given with a Partition, which already holds its co-clustering "
                "matrix; pass the fitted result instead to use X."
            )
        psm = source.co_clustering.values
        groups = source.labels
    elif isinstance(source, MixtureResult):
        if labels is None:
            partition = point_partition(source, X, loss=loss)
            psm, groups = partition.co_clustering.values, partition.labels
        else:
            psm = co_clustering(source, X).values
    else:
        raise TypeError(
            "source must be a fitted result or a bayesmix.analysis.clustering.Partition; got "
            f"{type(source).__name__}."
        )
    if labels is not None:
        groups = np.asarray(labels)
        if groups.ndim != 1 or groups.shape[0] != psm.shape[0]:
            raise ValueError(
                f"labels must have shape ({psm.shape[0]},), one label per observation; "
                f"got shape {groups.shape}."
            )
    ax = _axes(ax, (6, 5))
    names, codes = np.unique(groups, return_inverse=True)
    onehot = np.zeros((codes.size, names.size))
    onehot[np.arange(codes.size), codes] = 1.0
    cohesion = (psm @ onehot)[np.arange(codes.size), codes] / onehot.sum(axis=0)[codes]
    order = np.lexsort((-cohesion, codes))
    image = ax.imshow(
        psm[np.ix_(order, order)], vmin=0.0, vmax=1.0, cmap=cmap, interpolation="nearest"
    )
    ax.figure.colorbar(image, ax=ax, label="P(z_i = z_j | X)")
    sizes = np.bincount(codes)
    edges = np.cumsum(sizes)
    for edge in edges[:-1]:
        ax.axhline(edge - 0.5, color="white", linewidth=1.2)
        ax.axvline(edge - 0.5, color="white", linewidth=1.2)
    centres = edges - sizes / 2.0 - 0.5
    ticks = [f"{name} ({size})" for name, size in zip(names, sizes, strict=True)]
    ax.set_xticks(centres, ticks)
    ax.set_yticks(centres, ticks, rotation=90, va="center")
    ax.set_xlabel("cluster (size)")
    ax.set_ylabel("cluster (size)")
    ax.set_title("Co-clustering probabilities")
    return ax


# -- 2-D scatter with component ellipses ----------------------------------------------------
def _feature_index(result: MixtureResult, feature: Any) -> int:
    names = list(result.feature_names)
    if isinstance(feature, str):
        if feature not in names:
            raise ValueError(f"features: unknown feature {feature!r}; choose from {names}.")
        return names.index(feature)
    if isinstance(feature, numbers.Integral) and not isinstance(feature, bool):
        if not 0 <= feature < len(names):
            raise ValueError(
                f"features: index {feature} is out of range for {len(names)} features {names}."
            )
        return int(feature)
    raise TypeError(f"features must name two features or give their indices; got {feature!r}.")


def _check_levels(levels: Any) -> np.ndarray:
    values = np.atleast_1d(np.asarray(levels, dtype=float))
    if values.ndim != 1 or values.size == 0 or not ((values > 0) & (values < 1)).all():
        raise ValueError(
            "levels must be probabilities strictly between 0 and 1 (e.g. (0.5, 0.95)); "
            f"got {levels!r}."
        )
    return np.sort(values)


def _ellipses(means: np.ndarray, covs: np.ndarray, level: float, n_points: int = 120):
    """Boundary of the ellipse holding probability ``level`` of each 2-D Gaussian
    ``(..., 2)``, ``(..., 2, 2)``: points ``(..., n_points, 2)`` (none for the empty
    covariances of a non-Gaussian family)."""
    if covs.shape[-1] == 0:
        return np.zeros(means.shape[:-1] + (0, 2))
    radius = np.sqrt(-2.0 * np.log1p(-level))  # chi-square(2) quantile, square root
    angle = np.linspace(0.0, 2.0 * np.pi, n_points)
    circle = np.stack([np.cos(angle), np.sin(angle)], axis=-1) * radius  # (n, 2)
    factor = np.linalg.cholesky(covs)
    return means[..., None, :] + np.einsum("...de,ne->...nd", factor, circle)


def _point_estimate(result: MixtureResult, pair: list[int]) -> tuple[np.ndarray, np.ndarray]:
    """Posterior mean component means and covariances of the pair of features; for a
    non-Gaussian family the means and no covariances (``(K, 0, 0)``: no ellipses, whose
    probability levels hold for Gaussians only)."""
    post = result.posterior
    means = result.model.component_means(post).mean(axis=(0, 1))[:, pair]
    if "covariances" not in post:
        return means, np.zeros((means.shape[0], 0, 0))
    covs = post["covariances"].mean(("chain", "draw")).values[:, pair][:, :, pair]
    return means, covs


def _result_label(result: MixtureResult) -> str:
    method = str(result.settings.get("method", "fit")).upper()
    return f"{method} posterior mean" if result.n_draws > 1 else f"{method} estimate"


def _overlays(overlay: Any) -> list[tuple[str, MixtureResult]]:
    if overlay is None:
        return []
    if isinstance(overlay, MixtureResult):
        return [(_result_label(overlay), overlay)]
    if isinstance(overlay, Mapping):
        items = [(str(k), v) for k, v in overlay.items()]
    elif isinstance(overlay, Sequence) and not isinstance(overlay, str):
        items = [
            (_result_label(v), v) if isinstance(v, MixtureResult) else ("", v) for v in overlay
        ]
    else:
        items = [("", overlay)]
    for _, value in items:
        if not isinstance(value, MixtureResult):
            raise TypeError(
                "overlay must be a fitted result, a list of them or a mapping "
                f"{{label: result}}; got an item of type {type(value).__name__}."
            )
    return items


def plot_clusters_2d(
    result: MixtureResult,
    X: Any = None,
    *,
    features: Sequence[Any] = (0, 1),
    levels: Any = (0.5, 0.95),
    n_draw_ellipses: int = 40,
    overlay: Any = None,
    ci_prob: float = DEFAULT_CI_PROB,
    threshold: float = 0.2,
    random_state: Any = 0,
    members: Memberships | None = None,
    ax: Any = None,
):
    """Scatter of two features coloured by assignment, with component ellipses.

    Points are coloured by their most probable component; marker size grows with
    the assignment uncertainty ``1 - max_k p_nk`` and observations flagged
    ``uncertain`` (see :func:`bayesmix.analysis.clustering.memberships`) get a black edge.
    Solid lines are the ellipses holding probability ``levels`` of each component's
    2-D marginal at the result's point estimate (EM's parameters, or the posterior
    means of the means and covariances — meaningful when labels are identified; see
    ``result.relabel()``). For a result with several draws, thin lines show the
    outermost-level ellipses of ``n_draw_ellipses`` random posterior draws. Each
    ``overlay`` result adds its point-estimate ellipses as black lines of another style
    (dashed, dotted, dash-dotted), drawn on top.

    Parameters
    ----------
    result : MixtureResult
    X : array-like, optional
        Observations; defaults to a Bayesian result's training data, required for EM.
    features : pair of str or int
        The two features to plot, by name or index.
    levels : sequence of float
        Probability levels of the ellipses, each in ``(0, 1)``.
    n_draw_ellipses : int
        Posterior draws whose ellipses show the spread (0 for none).
    overlay : MixtureResult, list of them, or mapping {label: result}, optional
        Other fits to compare with (e.g. EM over a posterior); labelled in the legend
        by method unless a mapping gives labels.
    ci_prob, threshold : float
        Passed to :func:`~bayesmix.analysis.clustering.memberships`.
    random_state : int or numpy.random.Generator, optional
        Choice of the posterior draws shown.
    members : Memberships, optional
        ``memberships(result, X, ...)`` computed once for several panels of the same fit
        and data (``ci_prob`` and ``threshold`` are then not used).
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    from matplotlib.collections import LineCollection
    from matplotlib.lines import Line2D

    if not isinstance(result, MixtureResult):
        raise TypeError(
            f"result must be a fitted mixture (GaussianMixture.fit); got {type(result).__name__}."
        )
    if result.n_features < 2:
        raise ValueError(
            f"plot_clusters_2d needs a result with at least 2 features; this one has "
            f"{result.n_features} ({list(result.feature_names)}). For one feature use "
            "plot_membership_uncertainty."
        )
    if isinstance(features, str) or not isinstance(features, Sequence) or len(features) != 2:
        raise ValueError(
            f"features must be a pair of feature names or indices, e.g. (0, 1); got {features!r}."
        )
    pair = [_feature_index(result, f) for f in features]
    if pair[0] == pair[1]:
        raise ValueError(f"features must be two different features; got {features!r}.")
    levels = _check_levels(levels)
    n_draw_ellipses = check_int(n_draw_ellipses, "n_draw_ellipses", 0)
    overlays = _overlays(overlay)
    for label, other in overlays:
        if other.feature_names != result.feature_names:
            raise ValueError(
                f"overlay {label!r} was fitted on features {list(other.feature_names)}, "
                f"not {list(result.feature_names)}; overlay fits of the same data."
            )
    data = result_data(result, X, "plot_clusters_2d")
    found = members
    if found is None:
        found = memberships(result, data, ci_prob=ci_prob, threshold=threshold)
    elif not isinstance(found, Memberships) or found.dataset.sizes["obs"] != data.n_obs:
        raise ValueError(
            "members must be memberships(result, X) of this result and these observations."
        )
    rng = check_random_state(random_state)
    ax = _axes(ax, (7, 6))

    points = data.values[:, pair]
    ds = found.dataset
    assignment = ds["assignment"].values
    n_components = result.model.n_components
    spread = 1.0 - 1.0 / n_components if n_components > 1 else 1.0
    sizes = 10.0 + 110.0 * np.clip(ds["uncertainty"].values / spread, 0.0, 1.0)
    flagged = ds["uncertain"].values
    colours = np.array([_colour(k) for k in assignment])
    ax.scatter(
        points[~flagged, 0], points[~flagged, 1], s=sizes[~flagged], c=colours[~flagged], alpha=0.6
    )
    if flagged.any():
        ax.scatter(
            points[flagged, 0],
            points[flagged, 1],
            s=sizes[flagged],
            c=colours[flagged],
            edgecolors="black",
            linewidths=1.2,
            zorder=3,
        )

    handles = [
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            color=_colour(k),
            label=f"component {k} ({int((assignment == k).sum())})",
        )
        for k in range(n_components)
    ]
    handles.append(
        Line2D(
            [],
            [],
            marker="o",
            linestyle="",
            markerfacecolor="white",
            markeredgecolor="black",
            label=f"uncertain ({int(flagged.sum())})",
        )
    )

    if result.n_draws > 1 and n_draw_ellipses > 0 and "covariances" in result.posterior:
        flat = result.posterior.stack(sample=("chain", "draw")).transpose("sample", ...)
        chosen = rng.choice(
            result.n_draws, size=min(n_draw_ellipses, result.n_draws), replace=False
        )
        means = flat["means"].values[chosen][:, :, pair]
        covs = flat["covariances"].values[chosen][:, :, pair][:, :, :, pair]
        curves = _ellipses(means, covs, levels[-1])  # (draws, K, n, 2)
        for k in range(n_components):
            ax.add_collection(
                LineCollection(curves[:, k], colors=_colour(k), linewidths=0.6, alpha=0.25)
            )
        handles.append(
            Line2D(
                [],
                [],
                color="grey",
                linewidth=0.6,
                alpha=0.6,
                label=f"{chosen.size} posterior draws ({levels[-1]:.0%})",
            )
        )

    level_text = (
        ", ".join(f"{p:.0%}" for p in levels)
        if "covariances" in result.posterior
        else "component means"  # ellipses' probability levels hold for Gaussians only
    )
    means, covs = _point_estimate(result, pair)
    for level in levels:
        for k, curve in enumerate(_ellipses(means, covs, level)):
            ax.plot(curve[:, 0], curve[:, 1], color=_colour(k), linewidth=1.8)
    ax.plot(means[:, 0], means[:, 1], "k+", markersize=10, markeredgewidth=1.5)
    handles.append(
        Line2D(
            [], [], color="black", linewidth=1.8, label=f"{_result_label(result)} ({level_text})"
        )
    )

    for number, (label, other) in enumerate(overlays):
        style = _LINESTYLES[number % len(_LINESTYLES)]
        means, covs = _point_estimate(other, pair)
        for level in levels:
            for curve in _ellipses(means, covs, level):
                ax.plot(
                    curve[:, 0],
                    curve[:, 1],
                    color="black",
                    linestyle=style,
                    linewidth=1.3,
                    zorder=4,
                )
        handles.append(
            Line2D(
                [],
                [],
                color="black",
                linestyle=style,
                linewidth=1.5,
                label=f"{label or _result_label(other)} ({level_text})",
            )
        )

    ax.set_xlabel(result.feature_names[pair[0]])
    ax.set_ylabel(result.feature_names[pair[1]])
    ax.legend(handles=handles, fontsize="small", loc="best")
    ax.set_title(f"Clusters ({str(result.settings.get('method', 'fit')).upper()})")
    return ax
