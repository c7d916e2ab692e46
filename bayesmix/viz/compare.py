"""Forest plot of a :class:`~bayesmix.analysis.compare.Comparison`: every fit's parameters
side by side."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from bayesmix.analysis.compare import Comparison

__all__ = ["plot_comparison"]

_OUTSIDE_COLOUR = "#fde2e1"


def _is_comparison(comparison: Any) -> bool:
    """Whether ``comparison`` has what the forest plot reads from a
    :class:`~bayesmix.analysis.compare.Comparison` (checked by its attributes: this module sits
    below :mod:`bayesmix.analysis.compare`, whose ``Comparison.plot`` calls it)."""
    return isinstance(getattr(comparison, "parameters", None), pd.DataFrame) and all(
        hasattr(comparison, name) for name in ("names", "outside", "fits")
    )


def plot_comparison(
    comparison: Comparison,
    *,
    var_names: str | Sequence[str] | None = None,
    features: Sequence[str] | None = None,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Forest plot of the parameters of several fits, grouped by parameter.

    One panel per scalar parameter, each with its own x-axis (weights, means in each
    feature's units, standard deviations and correlations live on different scales). In a
    panel, every fit with draws shows its credible interval as a line and its posterior
    mean as a dot; every point estimate (EM, MAP) is a diamond with a dashed vertical
    line through it, so one sees at a glance which intervals contain it. Panels where a
    point estimate falls outside some interval are shaded.

    Parameters
    ----------
    comparison : Comparison
        The output of :func:`bayesmix.compare`.
    var_names : str or sequence of str, optional
        Parameter groups to draw: for Gaussian mixtures among ``"weights"``,
        ``"means"``, ``"stds"`` and ``"correlations"``, for other families among their
        own (``"rates"``; ``"means"``, ``"dispersions"``; ``"scales"``, ``"dof"``);
        default all present.
    features : sequence of str, optional
        Draw only the parameters of these features: the weights (and other parameters
        of no feature, such as a Student-t's ``dof``), the parameters in one of these
        features (means, standard deviations, rates, ...) and those between two of them
        (correlations, Student-t scales), for data with many features; default every
        feature.
    figsize : (float, float), optional
        Figure size in inches; default 7 wide and about 0.2 inch per fit and panel.

    Returns
    -------
    matplotlib.figure.Figure
        One axes per parameter (``fig.axes``), top to bottom in table order.
    """
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D

    if not _is_comparison(comparison):
        raise TypeError(
            f"comparison must be the output of bayesmix.compare; got {type(comparison).__name__}."
        )
    table = comparison.parameters
    if not len(table):
        raise ValueError(
            "this comparison has no parameter table (the results have different numbers of "
            "components); compare the fits through comparison.fits instead."
        )
    groups = table.index.str.split("[").str[0].to_numpy()
    present = list(dict.fromkeys(groups))
    if var_names is None:
        selected = present
    else:
        selected = [var_names] if isinstance(var_names, str) else list(var_names)
        unknown = [v for v in selected if v not in present]
        if unknown or not selected:
            raise ValueError(
                f"var_names must name parameter groups among {present}; got {var_names!r}."
            )
    keep = np.isin(groups, selected)
    if features is not None:
        keep &= table.index.isin(_feature_rows(comparison, features))
    table, groups = table[keep], groups[keep]
    outside = comparison.outside[keep].to_numpy()

    names = comparison.names
    colours = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    colour = {name: colours[i % len(colours)] for i, name in enumerate(names)}
    ypos = {name: len(names) - 1 - i for i, name in enumerate(names)}
    panel = 0.18 * len(names) + 0.32
    if figsize is None:
        figsize = (7.0, 0.9 + panel * len(table))
    # a fixed layout: constrained layout costs seconds per dozen panels; the parameter
    # labels and the legend sit outside the axes (savefig(..., bbox_inches="tight"))
    fig, axes = plt.subplots(
        len(table),
        1,
        figsize=figsize,
        squeeze=False,
        gridspec_kw={"hspace": 0.5 / panel + 0.6, "top": 1.0, "bottom": 0.0},
    )
    axes = axes[:, 0]
    for i, (label, row) in enumerate(table.iterrows()):
        ax = axes[i]
        for name in comparison.bayes_fits:
            mean, lower, upper = row[(name, "mean")], row[(name, "lower")], row[(name, "upper")]
            if not np.isfinite(mean):
                continue
            y = ypos[name]
            ax.plot([lower, upper], [y, y], color=colour[name], lw=2.2, solid_capstyle="butt")
            ax.plot([mean], [y], "o", color=colour[name], ms=5)
        for name in comparison.point_fits:
            estimate = row[(name, "estimate")]
            if not np.isfinite(estimate):
                continue
            ax.axvline(estimate, color=colour[name], lw=0.8, ls="--", alpha=0.7)
            ax.plot([estimate], [ypos[name]], "D", color=colour[name], ms=5, mec="black", mew=0.5)
        ax.set_ylim(-0.7, len(names) - 0.3)
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center", fontsize=8)
        ax.tick_params(axis="x", labelsize=7)
        ax.margins(x=0.1)
        if outside[i]:
            ax.set_facecolor(_OUTSIDE_COLOUR)
        if i == 0 or groups[i] != groups[i - 1]:
            ax.set_title(groups[i], loc="left", fontsize=9, fontweight="bold")
    handles = []
    for name in names:
        if name in comparison.bayes_fits:
            handles.append(Line2D([], [], color=colour[name], lw=2.2, marker="o", ms=5, label=name))
        else:
            handles.append(
                Line2D([], [], color=colour[name], ls="none", marker="D", ms=5, mec="black",
                       mew=0.5, label=f"{name} (point estimate)")
            )  # fmt: skip
    title = f"{100 * comparison.ci_prob:.4g}% equal-tailed intervals and posterior means"
    if outside.any():
        title += "; shaded: a point estimate outside an interval"
    fig.legend(
        handles=handles,
        loc="lower center",
        bbox_to_anchor=(0.5, 1.0 + 0.3 / figsize[1]),
        ncol=len(names),
        fontsize=8,
        title=title,
        title_fontsize=9,
        frameon=False,
    )
    return fig


def _feature_rows(comparison: Comparison, features: Sequence[str]) -> set[str]:
    """Labels of the parameter-table rows that involve only ``features``: every compared
    result's rows (labelled as its ``summary()`` does) when its parameters are restricted
    to those features."""
    from bayesmix.results import parameter_draws

    known = comparison.results[0].feature_names
    features = [features] if isinstance(features, str) else list(features)
    unknown = [f for f in features if f not in known]
    if unknown or not features:
        raise ValueError(f"features must name features among {list(known)}; got {features!r}.")
    subset = [f for f in known if f in features]  # the data's order, as pair labels have it
    labels: set[str] = set()
    for name, result in zip(comparison.names, comparison.results, strict=True):
        posterior = comparison.posteriors[name]
        selection = {dim: subset for dim in ("feature", "feature_") if dim in posterior.sizes}
        identified = result.model.identified_parameters(posterior.sel(selection))
        labels.update(parameter_draws(identified)[0])
    # a Gaussian parameter shown per component for a structure that shares it (tied stds
    # next to full ones) keeps its per-component label in the table
    components = range(comparison.results[0].model.n_components)
    for label in list(labels):
        group, _, inside = label.partition("[")
        parts = inside.rstrip("]").split(", ")
        if group in ("stds", "correlations") and parts[0] not in map(str, components):
            labels |= {f"{group}[{k}, {inside.rstrip(']')}]" for k in components}
        if group == "stds" and len(parts) == 1 and parts[0] in map(str, components):
            labels |= {f"stds[{parts[0]}, {f}]" for f in subset}
    return labels
