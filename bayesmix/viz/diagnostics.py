"""MCMC diagnostic plots (trace, rank) of a Bayesian fit's identified parameters.

Drawn by ArviZ's ``arviz_plots`` on the weights, means, standard deviations and (for
``full``/``tied``) correlations, without the redundant entries of the stored matrices.
Both functions return an :class:`arviz_plots.PlotCollection`: save it with
``pc.savefig(path)``, reach the matplotlib figure as ``pc.viz["figure"].item()``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import xarray as xr

from bayesmix.results import MixtureResult

if TYPE_CHECKING:
    from arviz_plots import PlotCollection

    from bayesmix.results.posterior import BayesResult

__all__ = ["plot_trace", "plot_rank"]


def plot_trace(
    result: BayesResult,
    var_names: str | Sequence[str] | None = None,
    *,
    compact: bool = False,
    combined: bool = False,
    kind: str | None = None,
    **kwargs: Any,
) -> PlotCollection:
    """Trace and marginal density of every identified parameter, chain by chain.

    Wraps :func:`arviz_plots.plot_trace_dist` on ``result``'s weights, means, stds and
    correlations (one row per scalar parameter unless ``compact``); divergent
    transitions of NUTS fits are marked on the traces.

    Parameters
    ----------
    result : BayesResult
        A NUTS or ADVI fit (ADVI draws are independent, so its trace is flat noise).
    var_names : str or sequence of str, optional
        Among ``"weights"``, ``"means"``, ``"stds"``, ``"correlations"``; default all.
    compact : bool
        Overlay the components and features of a variable in one row (their scales
        differ, so the default gives every scalar its own row).
    combined : bool
        One density for all chains instead of one per chain.
    kind : {"kde", "hist", "ecdf", "dot"}, optional
        How the marginal distribution is drawn (ArviZ's default: KDE).
    **kwargs
        Passed to :func:`arviz_plots.plot_trace_dist` (``coords``, ``visuals``,
        ``figure_kwargs={"figsize": (w, h)}``, ``backend``, ...).

    Returns
    -------
    arviz_plots.PlotCollection
        ``.savefig(path)``; ``.viz["figure"].item()`` is the matplotlib figure.
    """
    import arviz_plots

    data = _diagnostic_tree(result, "plot_trace", min_chains=1)
    return arviz_plots.plot_trace_dist(
        data,
        var_names=_check_var_names(var_names, data),
        compact=compact,
        combined=combined,
        kind=kind,
        **kwargs,
    )


def plot_rank(
    result: BayesResult,
    var_names: str | Sequence[str] | None = None,
    *,
    dist: bool = False,
    **kwargs: Any,
) -> PlotCollection:
    """Rank plots of every identified parameter: do the chains sample the same distribution?

    With ``dist=False`` (default), :func:`arviz_plots.plot_rank`: per scalar parameter,
    the ECDF of each chain's fractional ranks (over all chains) minus the uniform CDF,
    with the p-value of ArviZ's multi-chain uniformity test; chains that wander far from
    zero disagree (e.g. label switching). Pass ``method="envelope"`` for a simultaneous
    band instead. With ``dist=True``, :func:`arviz_plots.plot_rank_dist`: marginal
    densities next to the rank ECDFs, one row per scalar parameter.

    Parameters
    ----------
    result : BayesResult
        An MCMC (NUTS) fit with at least two chains.
    var_names : str or sequence of str, optional
        Among ``"weights"``, ``"means"``, ``"stds"``, ``"correlations"``; default all.
    dist : bool
        Add the marginal densities (:func:`arviz_plots.plot_rank_dist`).
    **kwargs
        Passed to the ArviZ function (``coords``, ``visuals``, ``figure_kwargs``, ...).

    Returns
    -------
    arviz_plots.PlotCollection
        ``.savefig(path)``; ``.viz["figure"].item()`` is the matplotlib figure.
    """
    import arviz_plots

    data = _diagnostic_tree(result, "plot_rank", min_chains=2)
    var_names = _check_var_names(var_names, data)
    if _is_matplotlib(kwargs.get("backend")):
        # the default layout lets each panel's title run into the tick labels above
        kwargs["figure_kwargs"] = {"layout": "constrained", **kwargs.get("figure_kwargs", {})}
    if dist:
        kwargs.setdefault("compact", False)
        return arviz_plots.plot_rank_dist(data, var_names=var_names, **kwargs)
    return arviz_plots.plot_rank(data, var_names=var_names, **kwargs)


def _diagnostic_tree(result: Any, caller: str, min_chains: int) -> xr.DataTree:
    """The identified parameters (and sampler statistics) as an ArviZ DataTree."""
    from bayesmix.results.posterior import BayesResult

    if isinstance(result, MixtureResult) and result.n_draws == 1:
        raise ValueError(
            f"{caller} needs posterior draws, but this is a point estimate "
            f"({result.settings.get('method', 'em')}: one draw, no chains). Fit with "
            "method='nuts' (or 'advi') to get draws to diagnose."
        )
    if not isinstance(result, BayesResult):
        raise TypeError(
            f"{caller} takes a Bayesian fit (GaussianMixture.fit(X, method='nuts')); got "
            f"{type(result).__name__}."
        )
    n_chains = result.posterior.sizes["chain"]
    if n_chains < min_chains:
        raise ValueError(
            f"{caller} compares chains, but this {result.method} fit has {n_chains} chain; "
            "fit with method='nuts' and chains >= 2, or use plot_trace."
        )
    groups = {"posterior": result._summary_dataset()}
    stats = result.sample_stats
    if stats is not None and "diverging" in stats:
        groups["sample_stats"] = stats[["diverging"]]
    return xr.DataTree.from_dict(groups)


def _is_matplotlib(backend: str | None) -> bool:
    if backend is None:
        from arviz_base import rcParams

        backend = rcParams["plot.backend"]
    return backend == "matplotlib"


def _check_var_names(var_names: Any, data: xr.DataTree) -> list[str]:
    available = list(data["posterior"].data_vars)
    if var_names is None:
        return available
    selected = [var_names] if isinstance(var_names, str) else var_names
    if not isinstance(selected, Sequence) or not selected:
        raise TypeError(f"var_names must be a name or a list of names among {available}.")
    selected = list(selected)
    unknown = [v for v in selected if v not in available]
    if unknown:
        raise ValueError(
            f"var_names {unknown} are not parameters of this fit; choose among {available}."
        )
    return selected
