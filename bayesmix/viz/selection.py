"""Pictures for choosing the number of components."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from bayesmix.model import BAYES_METHODS, EM_METHODS
from bayesmix.validation import check_choice

if TYPE_CHECKING:
    import matplotlib.axes

    from bayesmix.analysis.selection import SelectionResult

__all__ = ["plot_selection", "plot_n_clusters"]


def _is_selection(selection: Any) -> bool:
    """Whether ``selection`` has what :func:`plot_selection` reads from a
    :class:`~bayesmix.analysis.selection.SelectionResult` (checked by its attributes: this module
    sits below :mod:`bayesmix.analysis.selection`, whose ``SelectionResult.plot`` calls it)."""
    return isinstance(getattr(selection, "table", None), pd.DataFrame) and all(
        hasattr(selection, name) for name in ("criteria", "methods")
    )


# criterion -> (table column, best-flag column, label, lower is better)
_CURVES = {
    "bic": ("bic", "best_bic", "BIC", True),
    "aic": ("aic", "best_aic", "AIC", True),
    "abic": ("abic", "best_abic", "aBIC", True),
    "icl": ("icl", "best_icl", "ICL", True),
    "mclust_bic": ("mclust_bic", "best_bic", "mclust BIC", False),
    "mclust_icl": ("mclust_icl", "best_icl", "mclust ICL", False),
    "loo": ("elpd_loo", "best_loo", "elpd_loo", False),
}
_POINT_CRITERIA = ("bic", "aic", "abic", "icl", "mclust_bic", "mclust_icl")


def _get_ax(ax: Any) -> matplotlib.axes.Axes:
    import matplotlib.axes
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6.4, 4.2), layout="constrained")
    elif not isinstance(ax, matplotlib.axes.Axes):
        raise TypeError(f"ax must be a matplotlib Axes or None; got {type(ax).__name__}.")
    return ax


def plot_selection(
    selection: SelectionResult,
    criterion: str | None = None,
    ax: matplotlib.axes.Axes | None = None,
) -> matplotlib.axes.Axes:
    """Criterion against the number of components, one line per method and covariance type.

    The best fit of each method is marked with a star. Point estimates (``em``,
    ``map``) are drawn with their information criterion, posterior fits with
    ``elpd_loo`` and error bars of one standard error. When both kinds are drawn, the
    posterior fits are put on the deviance scale of BIC (``-2 elpd_loo``, error bars
    of two standard errors), so that lower is better for every line.

    Parameters
    ----------
    selection : SelectionResult
        Output of :func:`bayesmix.select_components`.
    criterion : {"bic", "aic", "abic", "icl", "mclust_bic", "mclust_icl", "loo"}, optional
        What to draw; default: the headline criterion of each method. An EM criterion
        draws the EM methods only, ``"loo"`` the Bayesian ones only.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is made by default.

    Returns
    -------
    matplotlib.axes.Axes
    """
    if not _is_selection(selection):
        raise TypeError(
            "selection must be the result of bayesmix.select_components; "
            f"got {type(selection).__name__}."
        )
    if criterion is None:
        chosen = dict(selection.criteria)
    else:
        check_choice(criterion, "criterion", tuple(_CURVES))
        family = EM_METHODS if criterion in _POINT_CRITERIA else BAYES_METHODS
        chosen = {m: criterion for m in selection.methods if m in family}
        if not chosen:
            kind = "EM (em, map)" if criterion in _POINT_CRITERIA else "Bayesian (nuts, advi)"
            raise ValueError(
                f"criterion={criterion!r} needs {kind} fits, but the selection ran "
                f"{selection.methods}."
            )
    ax = _get_ax(ax)
    mixed = any(c == "loo" for c in chosen.values()) and any(c != "loo" for c in chosen.values())
    table = selection.table
    methods = table.index.get_level_values("method")
    covariance_types = list(dict.fromkeys(table.index.get_level_values("covariance_type")))
    colors = {c: f"C{i % 10}" for i, c in enumerate(covariance_types)}  # colour: structure
    styles = ("-", "--", ":", "-.", (0, (5, 1, 1, 1)))  # line style: method
    labels_y: dict[str, list[str]] = {}
    stars = []
    for i, (method, crit) in enumerate(chosen.items()):
        column, best_column, label, _ = _CURVES[crit]
        rows = table[methods == method]
        deviance = mixed and crit == "loo"
        scale = -2.0 if deviance else 1.0
        labels_y.setdefault("-2 elpd_loo" if deviance else label, []).append(method)
        style = dict(marker="o", linestyle=styles[i % len(styles)])
        for covariance_type, group in rows.groupby(level="covariance_type", sort=False):
            ks = group.index.get_level_values("n_components").to_numpy()
            values = scale * group[column].to_numpy(dtype=float)
            color = colors[covariance_type]
            name = f"{method} · {covariance_type}"
            if crit == "loo":
                errors = abs(scale) * group["se"].to_numpy(dtype=float)
                ax.errorbar(ks, values, yerr=errors, capsize=3, color=color, label=name, **style)
            else:
                ax.plot(ks, values, color=color, label=name, **style)
            best = group[best_column].to_numpy(dtype=bool)
            if best.any():
                stars.append((ks[best][0], values[best][0], color, method, covariance_type))
    for k, value, color, method, covariance_type in stars:
        ax.plot(
            [k],
            [value],
            linestyle="none",
            marker="*",
            markersize=18,
            markerfacecolor=color,
            markeredgecolor="black",
            zorder=5,
            label=f"best {method}: K={int(k)}, {covariance_type}",
        )
    lower = all(_CURVES[c][3] for c in chosen.values()) or mixed
    direction = "lower is better" if lower else "higher is better"
    ax.set_xlabel("number of components K")
    ylabel = "; ".join(f"{name} ({', '.join(m)})" for name, m in labels_y.items())
    ax.set_ylabel(f"{ylabel}\n({direction})")
    ks_all = np.unique(table.index.get_level_values("n_components"))
    ax.set_xticks(ks_all)
    ax.set_title("Choosing the number of components")
    handles, labels = ax.get_legend_handles_labels()
    order = sorted(range(len(labels)), key=lambda i: labels[i].startswith("best "))
    ax.legend([handles[i] for i in order], [labels[i] for i in order], fontsize="small")
    ax.grid(alpha=0.3)
    return ax


def plot_n_clusters(
    probabilities: pd.Series, ax: matplotlib.axes.Axes | None = None
) -> matplotlib.axes.Axes:
    """Bar chart of the posterior of the number of clusters, the mode highlighted.

    Parameters
    ----------
    probabilities : pandas.Series
        Output of :func:`bayesmix.n_clusters_posterior`.
    ax : matplotlib.axes.Axes, optional

    Returns
    -------
    matplotlib.axes.Axes
    """
    if not isinstance(probabilities, pd.Series) or probabilities.index.name != "n_clusters":
        raise TypeError(
            "probabilities must be the Series returned by bayesmix.n_clusters_posterior."
        )
    ax = _get_ax(ax)
    ks = probabilities.index.to_numpy()
    values = probabilities.to_numpy(dtype=float)
    mode = int(ks[np.argmax(values)])
    colors = ["tab:blue" if k == mode else "tab:gray" for k in ks]
    bars = ax.bar(ks, values, color=colors)
    ax.bar_label(bars, labels=[f"{v:.2f}" if v >= 0.005 else "" for v in values], padding=2)
    ax.set_xticks(ks)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("number of occupied components")
    ax.set_ylabel("posterior probability")
    ax.set_title(f"Posterior number of clusters (mode {mode})")
    return ax
