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

__all__ = ["plot_selection", "plot_n_clusters", "plot_bic", "plot_bootstrap_lrt"]


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


# -- mclust's BIC plot ---------------------------------------------------------------------
# mclust's options "bicPlotSymbols" (R's pch codes) and "bicPlotColors" (grey and black for
# EII and VII; for the others colorRampPalette(c("forestgreen", "royalblue1", "red3"),
# space = "Lab")(12), computed once with the CIE Lab (D65) formulas), keyed by model name.
_MCLUST_PCH = {
    "EII": 17, "VII": 2, "EEI": 16, "EVI": 10, "VEI": 13, "VVI": 1, "EEE": 15,
    "EVE": 5, "VEE": 8, "VVE": 9, "EEV": 12, "VEV": 7, "EVV": 14, "VVV": 0,
    "E": 17, "V": 2,
}  # fmt: skip
_MCLUST_COLORS = {
    "EII": "#BEBEBE", "VII": "#000000", "EEI": "#228B22", "EVI": "#428850",
    "VEI": "#518577", "VVI": "#59819D", "EEE": "#5A7DC4", "EVE": "#5178EB",
    "VEE": "#726FE7", "VVE": "#9C60B9", "EEV": "#B3508C", "VEV": "#C13F61",
    "EVV": "#C92A36", "VVV": "#CD0000", "E": "#BEBEBE", "V": "#000000",
}  # fmt: skip
_MCLUST_LABELS = {
    "bic": "BIC",
    "icl": "ICL",
    "aic": "AIC (mclust's sign)",
    "abic": "adjusted BIC (mclust's sign)",
    "log_likelihood": "log-likelihood",
}


def _pch_marker(code: int) -> tuple[Any, bool]:
    """The matplotlib marker drawing R's plotting symbol ``pch = code``, and whether it
    is filled."""
    from matplotlib.path import Path

    simple = {0: ("s", False), 1: ("o", False), 2: ("^", False), 5: ("D", False)}
    simple |= {15: ("s", True), 16: ("o", True), 17: ("^", True), 8: ((8, 2, 0), False)}
    if code in simple:
        return simple[code]
    move, line, close = Path.MOVETO, Path.LINETO, Path.CLOSEPOLY
    square = [((-1, -1), move), ((1, -1), line), ((1, 1), line), ((-1, 1), line), ((-1, -1), close)]
    diamond = [((0, -1.3), move), ((1.3, 0), line), ((0, 1.3), line), ((-1.3, 0), line)]
    diamond.append(((0, -1.3), close))
    plus = [((-1, 0), move), ((1, 0), line), ((0, -1), move), ((0, 1), line)]
    r = 0.7071
    cross = [((-r, -r), move), ((r, r), line), ((-r, r), move), ((r, -r), line)]
    square_cross = [((-1, -1), move), ((1, 1), line), ((-1, 1), move), ((1, -1), line)]
    diamond_plus = [((-1.3, 0), move), ((1.3, 0), line), ((0, -1.3), move), ((0, 1.3), line)]
    triangle = [((-1, -1), move), ((0, 1), line), ((1, -1), line)]
    parts = {
        7: square + square_cross,
        9: diamond + diamond_plus,
        10: plus,
        12: square + plus,
        13: cross,
        14: square + triangle,
    }[code]
    vertices = [v for v, _ in parts]
    codes = [c for _, c in parts]
    path = Path(vertices, codes)
    if code in (10, 13):  # a circle around the plus or cross
        path = Path.make_compound_path(Path.unit_circle(), path)
    return path, False


def plot_bic(
    selection: SelectionResult,
    criterion: str = "bic",
    *,
    method: str | None = None,
    ax: matplotlib.axes.Axes | None = None,
    legend: bool = True,
) -> matplotlib.axes.Axes:
    """mclust's BIC plot: the criterion against K, one line per covariance model.

    Draws :meth:`SelectionResult.mclust_table` as R's ``plot(mclustBIC(X))`` does: each
    model's line with mclust's symbol and colour (``mclust.options("bicPlotSymbols")``,
    ``"bicPlotColors"``), mclust's sign (higher is better), NA cells (failed or spurious
    fits) left out, and a legend of the model names.

    Parameters
    ----------
    selection : SelectionResult
        Output of :func:`bayesmix.select_components` with Gaussian covariance models fitted
        by EM (e.g. ``covariance_types="all"``).
    criterion : {"bic", "icl", "aic", "abic", "log_likelihood"}
        What to draw, in mclust's sign.
    method : {"em", "map"}, optional
        Which EM method's fits; default the first.
    ax : matplotlib.axes.Axes, optional
        Axes to draw on; a new figure is made by default.
    legend : bool
        Whether to draw the legend of model names (two columns, lower right).

    Returns
    -------
    matplotlib.axes.Axes
        One line per model, labelled with its mclust name.
    """
    if not _is_selection(selection):
        raise TypeError(
            "selection must be the result of bayesmix.select_components; "
            f"got {type(selection).__name__}."
        )
    check_choice(criterion, "criterion", tuple(_MCLUST_LABELS))
    table = selection.mclust_table(criterion, method=method)
    if table.columns.empty:
        raise ValueError(
            "the selection has no Gaussian covariance models to draw; use e.g. "
            "select_components(X, range(1, 10), covariance_types='all')."
        )
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(7.0, 5.0), layout="constrained")
    ax = _get_ax(ax)
    ks = table.index.to_numpy()
    for i, model in enumerate(table.columns):
        marker, filled = _pch_marker(_MCLUST_PCH[model])
        color = _MCLUST_COLORS.get(model, f"C{i % 10}")
        ax.plot(
            ks,
            table[model].to_numpy(dtype=float),
            color=color,
            linewidth=1.0,
            marker=marker,
            markersize=7,
            markerfacecolor=color if filled else "none",
            markeredgecolor=color,
            label=model,
        )
    ax.set_xticks(ks)
    ax.set_xlabel("Number of components")
    ax.set_ylabel(_MCLUST_LABELS[criterion])
    if legend:
        ax.legend(loc="lower right", ncol=2, fontsize="small", framealpha=0.8)
    return ax


def plot_bootstrap_lrt(
    result: Any,
    n_components: int | None = None,
    ax: matplotlib.axes.Axes | None = None,
) -> Any:
    """Histogram of the bootstrap likelihood-ratio statistics with the observed one.

    mclust's ``plot(mclustBootstrapLRT(...), G = k)``: the bootstrap distribution of
    ``2 (log L_{k+1} - log L_k)`` under the ``k``-component fit (density histogram) and
    the observed statistic (dashed vertical line), titled with the p-value.

    Parameters
    ----------
    result : BootstrapLRTResult
        Output of :func:`bayesmix.bootstrap_lrt`.
    n_components : int, optional
        The number of components under the null of the test to draw; default every
        test, side by side.
    ax : matplotlib.axes.Axes, optional
        Axes for a single test (``n_components`` given).

    Returns
    -------
    matplotlib.axes.Axes or numpy.ndarray of Axes
        The axes of the test drawn, or an array with one axes per test.
    """
    if not all(hasattr(result, name) for name in ("observed", "bootstrap", "p_values")):
        raise TypeError(
            f"result must be the result of bayesmix.bootstrap_lrt; got {type(result).__name__}."
        )
    tests = list(result.observed.index)
    if n_components is None and ax is not None and len(tests) > 1:
        raise ValueError(
            "ax draws one test; pass n_components= (one of "
            f"{tests}) or leave ax out to draw every test."
        )
    if n_components is None and len(tests) > 1:
        import matplotlib.pyplot as plt

        fig, axes = plt.subplots(
            1, len(tests), figsize=(3.6 * len(tests), 3.4), layout="constrained", squeeze=False
        )
        for k, axis in zip(tests, axes[0], strict=True):
            plot_bootstrap_lrt(result, k, ax=axis)
        fig.suptitle(f"Bootstrap sequential LRT, model {result.model}")
        return axes[0]
    k = tests[0] if n_components is None else n_components
    if k not in tests:
        raise ValueError(f"n_components must be one of the tested {tests}; got {k!r}.")
    ax = _get_ax(ax)
    boot = result.bootstrap[k].dropna().to_numpy(dtype=float)
    observed = float(result.observed[k])
    ax.hist(boot, bins="scott", density=True, color="lightgrey", edgecolor="grey")
    ax.axvline(observed, color="forestgreen", linestyle="--", linewidth=2, label="observed")
    ax.set_xlabel("LRTS")
    ax.set_ylabel("density")
    ax.set_title(
        f"{result.model}: {k} vs {k + 1} components, p = {result.p_values[k]:.3g}",
        fontsize="medium",
    )
    ax.legend(fontsize="small")
    return ax
