"""Pictures of predictive densities and anomaly scores (matplotlib)."""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np

from bayesmix.analysis.density import (
    DEFAULT_CI_PROB,
    AnomalyScores,
    anomaly_scores,
    as_points,
    check_result,
    feature_index,
    is_discrete,
    marginal_density,
    marginal_grid,
    training_data,
)
from bayesmix.results import MixtureResult
from bayesmix.validation import check_bool, check_int

__all__ = ["plot_density", "plot_anomalies"]


def _new_axes(ax: Any, figsize: tuple[float, float]):
    import matplotlib.pyplot as plt
    from matplotlib.axes import Axes

    if ax is None:
        _, ax = plt.subplots(figsize=figsize)
    elif not isinstance(ax, Axes):
        raise TypeError(f"ax must be a matplotlib Axes or None; got {type(ax).__name__}.")
    return ax


def plot_density(
    result: MixtureResult,
    X: Any = None,
    *,
    feature: int | str = 0,
    ci_prob: float = DEFAULT_CI_PROB,
    components: bool = True,
    bins: int | str = "auto",
    n_grid: int = 300,
    ax: Any = None,
) -> Any:
    """Histogram of one feature with the fitted (marginal) density and its components.

    Parameters
    ----------
    result : MixtureResult
        Any fitted result. For several features the exact marginal of ``feature`` is
        drawn (see :func:`bayesmix.analysis.density.marginal_density`).
    X : array-like of shape (n_obs, n_features), optional
        Data for the histogram (density-normalised). Default: the training data of a
        Bayesian result; an EM result without ``X`` draws the curves only.
    feature : int or str
        The feature to show, by name or position.
    ci_prob : float
        Mass of the equal-tailed credible band around the predictive density (drawn
        only for results with more than one draw).
    components : bool
        Draw the weighted component densities ``w_k N(x | mu_kd, Sigma_k[d, d])``
        (posterior means per label; relabel Bayesian results first).
    bins : int or str
        Histogram bins, as in :func:`numpy.histogram_bin_edges`.
    n_grid : int
        Number of grid points of the curves.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is created otherwise.

    Returns
    -------
    matplotlib.axes.Axes
    """
    result = check_result(result)
    components = check_bool(components, "components")
    n_grid = check_int(n_grid, "n_grid", minimum=2)
    index = feature_index(result, feature)
    name = result.feature_names[index]
    if X is None:
        data = training_data(result)
    else:
        data = as_points(result, X)
    column = None if data is None else data.values[:, index]
    if isinstance(bins, bool) or not isinstance(bins, (numbers.Integral, str)):
        raise TypeError(
            f"bins must be an integer or a numpy bin rule such as 'auto'; got {bins!r}."
        )
    discrete = is_discrete(result, index)
    edges = None
    if column is not None and discrete:  # one bar per count
        column = column[~np.isnan(column)]
        edges = np.arange(column.min(), column.max() + 2.0) - 0.5
    elif column is not None:
        try:
            edges = np.histogram_bin_edges(column, bins=bins)
        except ValueError as exc:
            raise ValueError(f"bins={bins!r} is not a valid histogram rule: {exc}") from None
    # grid over the components and the data
    default = marginal_density(result, index, n_grid=n_grid, ci_prob=ci_prob)
    lo, hi = float(default["grid"].min()), float(default["grid"].max())
    if column is not None:
        pad = 0.05 * (column.max() - column.min() or 1.0)
        lo, hi = min(lo, column.min() - pad), max(hi, column.max() + pad)
    categories = getattr(result.model, "categories", None)
    labels = categories[index] if categories is not None and discrete else None
    if labels is not None:  # the column's categories, named by their labels
        lo, hi = -0.5, len(labels) - 0.5
    marginal = marginal_density(
        result, index, marginal_grid(result, lo, hi, n_grid, index), ci_prob=ci_prob
    )
    # a probability mass is drawn as points at the counts (joined to guide the eye)
    style = {"marker": "o", "markersize": 3.5} if discrete else {}

    ax = _new_axes(ax, (6.4, 4.0))
    grid = marginal["grid"].values
    if column is not None:
        ax.hist(
            column,
            bins=edges,
            density=True,
            color="0.85",
            edgecolor="0.6",
            linewidth=0.5,
            label=f"data (n={column.size})",
        )
    many = marginal.attrs["n_draws"] > 1
    if many:
        ax.fill_between(
            grid,
            marginal["lower"].values,
            marginal["upper"].values,
            color="C0",
            alpha=0.25,
            linewidth=0,
            label=f"{ci_prob:.0%} credible band",
        )
    ax.plot(
        grid,
        marginal["density"].values,
        color="C0",
        linewidth=2.0,
        label=("posterior predictive" if many else "fitted ")
        + ("" if many else "mass" if discrete else "density"),
        **style,
    )
    if components:
        for k in range(marginal.sizes["component"]):
            ax.plot(
                grid,
                marginal["components"].values[k],
                color=f"C{(k + 1) % 10}",
                linestyle="--",
                linewidth=1.4,
                zorder=3,
                label=f"component {marginal['component'].values[k]}",
                **style,
            )
    ax.set_xlim(lo, hi)
    if labels is not None:
        long = max(len(label) for label in labels) > 6 or len(labels) > 6
        ax.set_xticks(range(len(labels)), labels, rotation=30 if long else 0)
    ax.set_ylim(bottom=0)
    ax.set_xlabel(name)
    ax.set_ylabel("probability" if discrete else "density")
    kind = "probability mass" if discrete else "density"
    title = kind if result.n_features == 1 else f"marginal {kind} of {name}"
    ax.set_title(f"{title} ({result.settings.get('method', 'fit')})")
    ax.legend(frameon=False, fontsize="small")
    return ax


def plot_anomalies(
    scores: AnomalyScores | MixtureResult,
    X: Any = None,
    *,
    sort: bool = False,
    color_by_probability: bool | None = None,
    max_labels: int = 15,
    yscale: str = "linear",
    ax: Any = None,
    **score_options: Any,
) -> Any:
    """Anomaly scores per observation, the threshold, and the flagged points.

    Parameters
    ----------
    scores : AnomalyScores or MixtureResult
        Output of :func:`bayesmix.analysis.density.anomaly_scores`, or a fitted result to score
        (then ``X`` and ``score_options`` such as ``reference=`` or
        ``contamination=`` go to :func:`~bayesmix.analysis.density.anomaly_scores`).
    X : array-like, optional
        Observations to score when ``scores`` is a result.
    sort : bool
        Plot the scores in increasing order (x = rank) instead of observation order.
    color_by_probability : bool, optional
        Colour points by their posterior probability of being an anomaly (with a
        colour bar). Default: when the scores come from more than one draw.
    max_labels : int
        Label at most this many flagged points (the highest scores) with their
        observation names; 0 for none.
    yscale : {"linear", "symlog"}
        Scale of the score axis; ``symlog`` keeps far outliers and the bulk readable.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    if isinstance(scores, MixtureResult):
        scores = anomaly_scores(scores, X, **score_options)
    elif not isinstance(scores, AnomalyScores):
        raise TypeError(
            "scores must be an AnomalyScores (from bayesmix.analysis.density.anomaly_scores) or a "
            f"fitted result; got {type(scores).__name__}."
        )
    elif X is not None or score_options:
        raise ValueError(
            "X and scoring options (reference=, quantile=, contamination=) apply only when "
            "a fitted result is passed; these scores are already computed."
        )
    sort = check_bool(sort, "sort")
    max_labels = check_int(max_labels, "max_labels", minimum=0)
    if not isinstance(yscale, str) or yscale not in ("linear", "symlog"):
        raise ValueError(f"yscale must be 'linear' or 'symlog'; got {yscale!r}.")
    if color_by_probability is None:
        color_by_probability = scores.n_draws > 1
    color_by_probability = check_bool(color_by_probability, "color_by_probability")

    order = np.argsort(scores.score, kind="stable") if sort else np.arange(len(scores))
    position = np.empty(len(scores))
    position[order] = np.arange(len(scores))
    flagged = scores.is_anomaly

    ax = _new_axes(ax, (7.0, 4.0))
    inlier = ~flagged
    common = {"s": 14, "zorder": 2}
    if color_by_probability:
        mappable = ax.scatter(
            position[inlier],
            scores.score[inlier],
            c=scores.probability[inlier],
            cmap="viridis",
            vmin=0.0,
            vmax=1.0,
            label="not flagged",
            **common,
        )
        ax.scatter(
            position[flagged],
            scores.score[flagged],
            c=scores.probability[flagged],
            cmap="viridis",
            vmin=0.0,
            vmax=1.0,
            s=40,
            edgecolors="C3",
            linewidths=1.5,
            label="flagged",
            zorder=3,
        )
        ax.figure.colorbar(mappable, ax=ax, label="P(anomaly)", pad=0.02)
    else:
        ax.scatter(
            position[inlier], scores.score[inlier], color="0.55", label="not flagged", **common
        )
        ax.scatter(
            position[flagged], scores.score[flagged], color="C3", s=30, label="flagged", zorder=3
        )
    ax.axhline(
        scores.threshold,
        color="C3",
        linestyle="--",
        linewidth=1.0,
        label=f"threshold ({scores.level:.3g} quantile of reference)",
    )
    if yscale == "symlog":
        # linear up to the threshold (the bulk), logarithmic above (the outliers)
        from matplotlib.ticker import ScalarFormatter, SymmetricalLogLocator

        linthresh = max(1.0, abs(scores.threshold))
        ax.set_yscale("symlog", linthresh=linthresh)
        ax.yaxis.set_major_locator(
            SymmetricalLogLocator(linthresh=linthresh, base=10, subs=(1.0, 2.0, 5.0))
        )
        ax.yaxis.set_major_formatter(ScalarFormatter())
    ax.margins(y=0.08)
    if max_labels and flagged.any():
        top = np.flatnonzero(flagged)[np.argsort(-scores.score[flagged], kind="stable")]
        _label_points(
            ax,
            position[top[:max_labels]],
            scores.score[top[:max_labels]],
            [str(scores.obs_names[i]) for i in top[:max_labels]],
        )
    ax.set_xlabel("rank of score" if sort else "observation")
    ax.set_ylabel("anomaly score (-log predictive density)")
    ax.set_title(f"{scores.n_anomalies} of {len(scores)} observations flagged ({scores.method})")
    ax.legend(frameon=False, fontsize="small", loc="upper left")
    return ax


def _label_points(ax: Any, x: np.ndarray, y: np.ndarray, labels: list[str]) -> None:
    """Label points without overlapping labels.

    Each label sits beside its point (to the left near the right edge of the axes).
    Labels whose horizontal extents overlap form a group whose heights are the
    closest (least squares) to their points' heights keeping one text line between
    neighbours and their vertical order (isotonic regression); moved labels are
    joined to their points by a thin line.
    """
    ax.autoscale_view()
    points = ax.transData.transform(np.column_stack([x, y]))  # display pixels
    px_per_pt = ax.figure.dpi / 72.0
    line, char, pad = 9.0 * px_per_pt, 4.8 * px_per_pt, 6.0 * px_per_pt  # x-small text
    box = ax.get_window_extent()
    leftward = points[:, 0] > box.x0 + 0.85 * box.width
    widths = np.array([len(text) * char for text in labels])
    lefts = np.where(leftward, points[:, 0] - pad - widths, points[:, 0] + pad)
    heights = points[:, 1].copy()
    for group in _overlapping_groups(lefts, lefts + widths):
        order = group[np.argsort(points[group, 1], kind="stable")]
        stacked = _stack(points[order, 1], line)
        # keep the group inside the axes when it fits
        stacked += max(0.0, box.y0 + line / 2 - stacked[0])
        stacked -= max(0.0, stacked[-1] - (box.y1 - line / 2))
        heights[order] = stacked
    for j, text in enumerate(labels):
        dy = (heights[j] - points[j, 1]) / px_per_pt
        ax.annotate(
            text,
            (x[j], y[j]),
            xytext=(-pad / px_per_pt if leftward[j] else pad / px_per_pt, dy),
            textcoords="offset points",
            ha="right" if leftward[j] else "left",
            va="center",
            fontsize="x-small",
            color="C3",
            arrowprops={"arrowstyle": "-", "color": "C3", "lw": 0.5} if abs(dy) > 2 else None,
        )


def _overlapping_groups(lefts: np.ndarray, rights: np.ndarray) -> list[np.ndarray]:
    """Indices of intervals grouped into chains of horizontal overlap."""
    order = np.argsort(lefts, kind="stable")
    groups, current, reach = [], [order[0]], rights[order[0]]
    for i in order[1:]:
        if lefts[i] <= reach:
            current.append(i)
            reach = max(reach, rights[i])
        else:
            groups.append(np.array(current))
            current, reach = [i], rights[i]
    groups.append(np.array(current))
    return groups


def _stack(desired: np.ndarray, gap: float) -> np.ndarray:
    """Heights ``t`` closest to ascending ``desired`` with ``t[i+1] - t[i] >= gap``:
    isotonic regression (pool adjacent violators) of ``desired - i * gap``."""
    offsets = gap * np.arange(desired.size)
    means: list[float] = []
    counts: list[int] = []
    for value in desired - offsets:
        means.append(float(value))
        counts.append(1)
        while len(means) > 1 and means[-2] > means[-1]:
            count = counts[-2] + counts[-1]
            means[-2] = (means[-2] * counts[-2] + means[-1] * counts[-1]) / count
            counts[-2] = count
            means.pop()
            counts.pop()
    return np.repeat(means, counts) + offsets
