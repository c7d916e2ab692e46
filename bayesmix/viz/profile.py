"""The latent class profile plot: every class's response probabilities across the items."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bayesmix.analysis.latent_class import response_probabilities
from bayesmix.validation import DEFAULT_CI_PROB

if TYPE_CHECKING:
    import matplotlib.axes
    from matplotlib.figure import Figure

    from bayesmix.results import MixtureResult

__all__ = ["plot_profile"]

#: Horizontal spread of the classes' points at one item, so their interval bars do not overlap.
_DODGE = 0.08


def _categories(categories: Any, table_categories: np.ndarray, binary: bool) -> list[int]:
    """The category panels to draw: default ``[1]`` for Bernoulli items, all for Categorical."""
    if categories is None:
        return [1] if binary else [int(c) for c in table_categories]
    items = [categories] if np.isscalar(categories) else list(categories)
    if not items:
        raise ValueError("categories is empty; give at least one category code.")
    unknown = [c for c in items if c not in set(table_categories.tolist())]
    if unknown:
        raise ValueError(
            f"categories {unknown} are not categories of the fit; choose from "
            f"{table_categories.tolist()}."
        )
    return [int(c) for c in items]


def _draw_panel(
    ax: matplotlib.axes.Axes, grid: Any, features: list[str], weights: np.ndarray
) -> None:
    """One line per class across ``features``: ``grid`` holds ``mean``, ``lower``,
    ``upper`` and ``label`` indexed ``(component, feature)``; an item without the
    category is a gap. An item's tick names the category's label when it is not the
    code (``smoker (yes)``)."""
    components = grid.index.get_level_values("component").unique()
    positions = np.arange(len(features), dtype=float)
    for j, component in enumerate(components):
        rows = grid.loc[component].reindex(features)
        x = positions + (j - (len(components) - 1) / 2.0) * _DODGE
        (line,) = ax.plot(
            x, rows["mean"].to_numpy(), marker="o", label=f"class {component} ({weights[j]:.0%})"
        )
        if rows["lower"].notna().any():
            ax.vlines(x, rows["lower"], rows["upper"], colors=line.get_color(), linewidth=1.5)
    labels = grid.loc[components[0], "label"].reindex(features)
    codes = str(grid.attrs.get("category", ""))
    ticks = [
        str(f) if pd.isna(label) or label == codes else f"{f}\n({label})"
        for f, label in zip(features, labels, strict=True)
    ]
    ax.set_xticks(positions, ticks, rotation=45 if len(features) > 8 else 0)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(axis="y", alpha=0.3)


def plot_profile(
    result: MixtureResult,
    categories: int | Sequence[int] | None = None,
    *,
    ci_prob: float = DEFAULT_CI_PROB,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Latent class profile plot: ``P(item = category | class)`` across the items.

    The usual picture of a latent class model (poLCA, Mplus, StepMix): items on the
    x-axis, a response probability on the y-axis, one line per class (labelled with its
    weight). A Bayesian fit adds a vertical bar per point, its equal-tailed credible
    interval; a point estimate (EM, MAP) has none. The plotted values are those of
    :func:`bayesmix.response_probabilities`.

    Parameters
    ----------
    result : MixtureResult
        A fit of Bernoulli or Categorical components, or of an
        :class:`~bayesmix.families.Independent` family with such blocks (its items are
        drawn; its other columns are not).
    categories : int or sequence of int, optional
        Category codes to draw, one panel each; default ``1`` (``P(item = 1)``) when
        every item has two categories, else every category (an item without a category
        leaves a gap in that panel). An item's tick names the category's label when the
        fit coded labelled columns (``smoker (yes)``).
    ci_prob : float
        Mass of the credible intervals, in (0, 1).
    figsize : (float, float), optional
        Figure size; default grows with the number of items and panels.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per category (``fig.axes``), a legend on the first.
    """
    import matplotlib.pyplot as plt

    table = response_probabilities(result, ci_prob=ci_prob)
    features = list(table.index.get_level_values("feature").unique())  # the items
    first = table.xs(table.index[0][0], level="component")
    binary = bool((first.groupby(level="feature", sort=False).size() == 2).all())
    chosen = _categories(categories, table.index.get_level_values("category").unique(), binary)
    if figsize is None:
        figsize = (max(4.8, 0.6 * len(features) + 2.0), 3.2 * len(chosen))
    fig, axes = plt.subplots(len(chosen), 1, figsize=figsize, squeeze=False, layout="constrained")
    weights = result.posterior["weights"].mean(("chain", "draw")).values
    for ax, category in zip(axes[:, 0], chosen, strict=True):
        grid = table.xs(category, level="category")
        grid.attrs["category"] = category
        _draw_panel(ax, grid, features, weights)
        ax.set_title(f"P(item = category {category} | class)")
        ax.set_ylabel("probability")
    axes[0, 0].legend(fontsize="small", loc="best")
    axes[-1, 0].set_xlabel("item")
    return fig
