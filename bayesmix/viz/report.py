"""Reports of fitted mixtures: a summary table, netCDF files, PNG plots and one HTML page.

:func:`write_report` is what ``bayesmix fit`` and ``bayesmix demo`` write; it works on any
results fitted in Python too. The HTML page is self-contained (plots embedded as base64
data URIs, inline styles, no scripts or external references), so it can be mailed or
archived as one file.
"""

from __future__ import annotations

import base64
import copy
import datetime
import html
import os
import re
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from bayesmix.analysis.clustering import memberships
from bayesmix.analysis.latent_class import response_probabilities
from bayesmix.data import Data
from bayesmix.exceptions import BayesmixWarning, LabelSwitchingWarning
from bayesmix.families.bernoulli import Bernoulli
from bayesmix.families.categorical import CategoryFamily
from bayesmix.inference.em.fit import EM_DEFAULTS
from bayesmix.inference.interrupt import nested_fits
from bayesmix.results import MixtureResult, parameter_draws
from bayesmix.validation import check_choice, check_ci_prob

__all__ = [
    "ReportFiles",
    "describe_model",
    "feature_ranking",
    "fit_methods",
    "summary_table",
    "supported_methods",
    "write_report",
]

#: A fit projected to run longer than this many seconds is announced before it starts.
LONG_FIT_SECONDS = 60.0
#: NUTS with full or tied covariances is announced as slow from this many features.
NUTS_SLOW_FEATURES = 10

#: At most this many features are drawn in the pairwise scatter grid and the comparison
#: plot: the ones that separate the components most (see :func:`feature_ranking`).
MAX_PLOT_FEATURES = 4
#: At most this many features get a marginal density panel.
MAX_DENSITY_FEATURES = 6
#: Trace plots have at most this many rows (two panels each: ArviZ draws at most
#: ``arviz_base.rcParams["plot.max_subplots"]`` = 40 panels).
MAX_TRACE_ROWS = 20
#: The HTML tables leave out the correlations when a fit has more than this many (they
#: stay in ``summary.csv`` and ``comparison.csv``).
MAX_TABLE_CORRELATIONS = 30
#: Resolution of the grids of scatter and density panels (about 1,250 pixels wide).
GRID_DPI = 90
_SUMMARY_COLUMNS = (
    "method",
    "parameter",
    "estimate",
    "sd",
    "lower",
    "upper",
    "ci_prob",
    "r_hat",
    "ess_bulk",
    "ess_tail",
)


@dataclass
class ReportFiles:
    """What :func:`write_report` wrote.

    Attributes
    ----------
    directory : pathlib.Path
    html : pathlib.Path
        The self-contained report.
    summary : pathlib.Path
        ``summary.csv``: one row per fit and parameter.
    comparison : pathlib.Path or None
        ``comparison.csv`` (several fits only): :func:`bayesmix.compare`'s parameter table.
    netcdf : dict of str to pathlib.Path
        One netCDF file per fit (read back with ``bayesmix.results.io.load``).
    plots : dict of str to pathlib.Path
        PNG files by plot name.
    problems : list of str
        Files that could not be written, and why.
    """

    directory: Path
    html: Path
    summary: Path
    comparison: Path | None = None
    netcdf: dict[str, Path] = field(default_factory=dict)
    plots: dict[str, Path] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        """One line per file written (and per problem), for printing."""
        out = [f"report:      {self.html}", f"summary:     {self.summary}"]
        if self.comparison is not None:
            out.append(f"comparison:  {self.comparison}")
        out += [f"netCDF:      {path}" for path in self.netcdf.values()]
        out += [f"plot:        {path}" for path in self.plots.values()]
        out += [f"not written: {problem}" for problem in self.problems]
        return out

    def __repr__(self) -> str:
        return "\n".join([f"Report in {self.directory}"] + ["  " + line for line in self.lines()])


# -- the summary table --------------------------------------------------------------------
def _default_names(results: Sequence[MixtureResult]) -> list[str]:
    methods = [str(r.settings.get("method", type(r).__name__)).lower() for r in results]
    counts = {m: methods.count(m) for m in methods}
    seen: dict[str, int] = {}
    names = []
    for method in methods:
        seen[method] = seen.get(method, 0) + 1
        names.append(method if counts[method] == 1 else f"{method}{seen[method]}")
    return names


def _check_results(results: Any) -> dict[str, MixtureResult]:
    if isinstance(results, MixtureResult):
        results = [results]
    if isinstance(results, Mapping):
        named = dict(results)
    elif isinstance(results, Sequence) and not isinstance(results, (str, bytes)):
        named = dict(zip(_default_names(list(results)), results, strict=True))
    else:
        raise TypeError(
            "results must be a fitted result, a sequence of them or a mapping "
            f"{{name: result}}; got {type(results).__name__}."
        )
    if not named:
        raise ValueError("results is empty; pass at least one fitted result.")
    for name, result in named.items():
        if not isinstance(name, str) or not re.fullmatch(r"[A-Za-z0-9_.-]+", name):
            raise ValueError(
                f"result names become file names: use letters, digits, '_', '-' or '.'; "
                f"got {name!r}."
            )
        if not isinstance(result, MixtureResult):
            raise TypeError(
                f"results[{name!r}] must be a fitted result (GaussianMixture.fit(...) or "
                "Mixture.fit(...)); "
                f"got {type(result).__name__}."
            )
    features = {r.feature_names for r in named.values()}
    if len(features) > 1:
        raise ValueError(
            f"the results were fitted on different features {sorted(features)}; report fits "
            "of the same data together."
        )
    return named


def _aligned(
    named: dict[str, MixtureResult], data: Data, ci_prob: float
) -> tuple[dict[str, MixtureResult], dict[str, Any], Any]:
    """Results as compared (label switching resolved, components matched to the first
    result's) with their posteriors, and the :class:`~bayesmix.analysis.compare.Comparison` when
    there are several results with the same number of components."""
    from bayesmix.analysis.compare import compare

    names = list(named)
    if len(named) > 1:
        comparison = compare(*named.values(), X=data, names=names, ci_prob=ci_prob)
        results = dict(zip(names, comparison.results, strict=True))
        return results, dict(comparison.posteriors), comparison
    results = {name: _relabelled_if_switched(result) for name, result in named.items()}
    return results, {n: r.posterior for n, r in results.items()}, None


def _relabel_notes(named: dict[str, MixtureResult], aligned: dict[str, MixtureResult]) -> dict:
    return {
        name: [
            "the chains labelled the components differently (label switching); the draws "
            "were relabelled by Stephens' algorithm (result.relabel()) for this report."
        ]
        for name in named
        if aligned[name] is not named[name]
    }


def summary_table(
    results: MixtureResult | Sequence[MixtureResult] | Mapping[str, MixtureResult],
    X: Any,
    *,
    ci_prob: float = 0.94,
) -> pd.DataFrame:
    """One row per fit and scalar parameter: estimate, spread and MCMC diagnostics.

    Components of every fit are matched to the first fit's (as in
    :func:`bayesmix.compare`, after resolving label switching), so ``means[0, x]`` means
    the same component in every row.

    Parameters
    ----------
    results : MixtureResult, sequence of them or mapping {name: result}
        Fits of the same features; names default to the fit methods.
    X : array-like of shape (n_obs, n_features), DataFrame or DataArray
        The observations (used to match components across fits).
    ci_prob : float
        Probability mass of the equal-tailed credible intervals, in (0, 1).

    Returns
    -------
    pandas.DataFrame
        Columns ``method`` (the fit's name), ``parameter`` (``weights[k]``,
        ``means[k, feature]``, ``stds[k, feature]``, ``correlations[k, feature, feature]``
        for Gaussian fits; the family's own names for other families, e.g.
        ``rates[k, feature]``, as its ``summary()`` labels them),
        ``estimate`` (the point estimate of EM/MAP, the posterior mean otherwise), ``sd``,
        ``lower`` and ``upper`` (the credible interval; posterior draws only), ``ci_prob``,
        and for NUTS ``r_hat``, ``ess_bulk`` and ``ess_tail`` (missing where they do not
        apply).
    """
    named = _check_results(results)
    ci_prob = check_ci_prob(ci_prob)
    data = next(iter(named.values())).check_data(X)
    aligned, posteriors, _ = _aligned(named, data, ci_prob)
    return _summary_rows(aligned, posteriors, ci_prob)


def _summary_rows(
    results: dict[str, MixtureResult], posteriors: dict[str, Any], ci_prob: float
) -> pd.DataFrame:
    import xarray as xr

    tail = (1.0 - ci_prob) / 2.0
    frames = []
    for name, result in results.items():
        posterior = posteriors[name]
        labels, draws = parameter_draws(result.model.identified_parameters(posterior))
        draws = draws.reshape(-1, len(labels))
        frame = pd.DataFrame({"method": name, "parameter": labels, "estimate": draws.mean(axis=0)})
        frame["sd"] = frame["lower"] = frame["upper"] = np.nan
        frame["ci_prob"] = np.nan
        frame["r_hat"] = frame["ess_bulk"] = frame["ess_tail"] = np.nan
        if draws.shape[0] > 1:
            frame["sd"] = draws.std(axis=0, ddof=1)
            lower, upper = np.quantile(draws, [tail, 1.0 - tail], axis=0)
            frame["lower"], frame["upper"], frame["ci_prob"] = lower, upper, ci_prob
        if getattr(result, "is_mcmc", False):
            import arviz_stats

            shape = (posterior.sizes["chain"], posterior.sizes["draw"], len(labels))
            values = xr.DataArray(draws.reshape(shape), dims=("chain", "draw", "parameter"))
            if shape[0] > 1:
                frame["r_hat"] = np.asarray(arviz_stats.rhat(values))
            frame["ess_bulk"] = np.asarray(arviz_stats.ess(values, method="bulk"))
            frame["ess_tail"] = np.asarray(arviz_stats.ess(values, method="tail"))
        frames.append(frame[np.isfinite(frame["estimate"])])
    return pd.concat(frames, ignore_index=True)[list(_SUMMARY_COLUMNS)]


def fit_methods(
    X: Any,
    model: Any,
    methods: Sequence[str],
    options: Mapping[str, Mapping[str, Any]] | None = None,
    *,
    echo: Callable[[str], None] = print,
    warn: Callable[[str], None] | None = None,
    on_result: Callable[[str, MixtureResult], None] | None = None,
) -> tuple[dict[str, MixtureResult], dict[str, list[str]]]:
    """Fit one declaration by several methods, reporting progress and collecting warnings.

    Parameters
    ----------
    X : array-like of shape (n_obs, n_features), DataFrame or DataArray
    model : GaussianMixture or Mixture
        The declaration (any component family).
    methods : sequence of str
        Fit methods (``"em"``, ``"map"``, ``"nuts"``, ``"advi"``, ``"fullrank_advi"``).
    options : mapping {method: mapping of fit options}, optional
        Keyword arguments of the declaration's ``fit`` per method.
    echo : callable
        Receives one progress line per fit (``print`` by default).
    warn : callable, optional
        Receives each warning message as it is caught (default: ``echo``).
    on_result : callable, optional
        Called as ``on_result(method, result)`` as soon as each fit is done, before the
        next starts (the CLI saves each result there, so a later fit that fails or is
        interrupted loses nothing finished).

    Returns
    -------
    results : dict {method: MixtureResult}
    fit_warnings : dict {method: list of str}
        The distinct warnings (bayesmix's, and user/runtime warnings of the libraries)
        raised by each fit, for :func:`write_report`.
    """
    from bayesmix.mixture import Mixture
    from bayesmix.model import GaussianMixture

    if not isinstance(model, (GaussianMixture, Mixture)):
        raise TypeError(
            "model must be a bayesmix.GaussianMixture or bayesmix.Mixture; got "
            f"{type(model).__name__}."
        )
    allowed = supported_methods(model)
    if isinstance(methods, str):
        methods = [methods]
    methods = list(methods)
    if not methods:
        raise ValueError(f"methods is empty; choose from {list(allowed)}.")
    for method in methods:
        if isinstance(model, Mixture) and isinstance(method, str) and method not in allowed:
            raise ValueError(
                f"method {method!r} is not available for the {model.family.name} family; "
                f"it is fitted by {', '.join(allowed)}."
            )
        check_choice(method, "methods", allowed)
    options = {} if options is None else dict(options)
    warn = echo if warn is None else warn
    results: dict[str, MixtureResult] = {}
    caught_by_method: dict[str, list[str]] = {}
    for method in methods:
        kwargs = dict(options.get(method, {}))
        echo(_fitting_line(method, kwargs, family=isinstance(model, Mixture)))
        caution = _long_fit_caution(method, model, X, kwargs)
        if caution:
            echo(caution)
        start = time.perf_counter()
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            with nested_fits():  # Ctrl-C stops the whole report, not one fit
                fit = model.fit(X, method=method, **kwargs)
            results[method] = _resolve_label_switching(fit)
        messages = list(
            dict.fromkeys(
                _one_line(w.message)
                for w in caught
                if issubclass(w.category, (BayesmixWarning, UserWarning, RuntimeWarning))
            )
        )
        caught_by_method[method] = messages
        echo(f"  {method} done in {time.perf_counter() - start:.1f} s")
        for message in messages:
            warn(f"({method}) {message}")
        if on_result is not None:
            on_result(method, results[method])
    return results, caught_by_method


def supported_methods(model: Any) -> tuple[str, ...]:
    """The fit methods a declaration takes.

    Parameters
    ----------
    model : GaussianMixture or Mixture

    Returns
    -------
    tuple of str
        Every method for Gaussian mixtures (``em``, ``map``, ``gibbs``, ``nuts``, ``advi``,
        ``fullrank_advi``, and ``vb`` for the basic four covariance types) whose covariance
        structure supports full Bayes, ``em`` and
        ``map`` for the others (mclust's coupled models such as ``VEV``); for the other
        families ``em``, ``map``, ``nuts``, ``advi`` and ``fullrank_advi`` (every family
        has a PyMC parametrisation), and ``vb`` for the conjugate ones
        (``family.supports_vb``: Poisson, Bernoulli, Categorical, Normal and products
        of them, and the Student-t with diagonal scales).
    """
    from bayesmix.families.gaussian.covariance import BASIC_STRUCTURES
    from bayesmix.mixture import FAMILY_METHODS, Mixture
    from bayesmix.model import EM_METHODS, FIT_METHODS

    if not isinstance(model, Mixture):
        if not model.structure.supports_bayes:
            return tuple(EM_METHODS)
        vb = model.covariance_type in BASIC_STRUCTURES  # closed-form VB's four
        return tuple(m for m in FIT_METHODS if vb or m != "vb")
    pymc, vb = model.family.supports_pymc, model.family.supports_vb
    return tuple(
        m
        for m in FAMILY_METHODS
        if m in ("em", "map") or (m == "vb" and vb) or (m not in ("em", "map", "vb") and pymc)
    )


def describe_model(model: Any) -> str:
    """The declaration in words: ``"2 poisson components"``, ``"3 Gaussian components
    with full covariance matrices"``.

    Parameters
    ----------
    model : GaussianMixture or Mixture

    Returns
    -------
    str
    """
    from bayesmix.mixture import Mixture

    k = model.n_components
    if not isinstance(model, Mixture):
        return (
            f"{k} Gaussian components with {model.covariance_type} covariance matrices "
            f"({model.structure.description})"
        )
    family = model.family
    words = {
        "poisson": "Poisson",
        "negative_binomial": "negative binomial",
        "student_t": "Student-t",
    }.get(family.name, family.name)
    text = f"{k} {words} component{'s' if k != 1 else ''}"
    covariance = getattr(family, "covariance_type", None)
    if covariance is not None:
        text += f" with {covariance} scale matrices"
        dof = getattr(family, "dof", None)
        if dof is None:
            text += " and degrees of freedom estimated per component"
        else:
            text += f" and {dof:g} degrees of freedom"
    elif getattr(family, "discrete", False):
        text += " (counts; the columns independent given the component)"
    return text


def _location_name(result: MixtureResult) -> str:
    """The parameter that locates the components (``means``; Poisson's ``rates``)."""
    names = result.model.parameter_names
    return "means" if "means" in names else names[1]


def _relabelled_if_switched(result: MixtureResult) -> MixtureResult:
    """``result``, or ``result.relabel()`` if its chains label the components differently."""
    if not hasattr(result, "relabel") or result.model.n_components == 1:
        return result
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        problems = result.diagnose()
    if not any(issubclass(category, LabelSwitchingWarning) for _, category in problems):
        return result
    return result.relabel()


def _resolve_label_switching(result: MixtureResult) -> MixtureResult:
    """``result``, relabelled once (with a warning) if its chains label the components
    differently, so that the saved file, the console, the tables and the plots all show
    the same draws in the same order."""
    relabelled = _relabelled_if_switched(result)
    if relabelled is result:
        return result
    warnings.warn(
        "the chains labelled the components differently (label switching): the draws were "
        "relabelled by Stephens' algorithm (result.relabel()); the saved file, tables, plots "
        "and diagnostics below are those of the relabelled draws.",
        LabelSwitchingWarning,
        stacklevel=2,
    )
    return relabelled


def _fitting_line(method: str, options: Mapping[str, Any], family: bool = False) -> str:
    """The line announcing a fit; ``family``: of a non-Gaussian family, whose NUTS and ADVI
    compile their PyMC model on every fit."""
    if family and method in ("nuts", "advi", "fullrank_advi"):
        draws = (
            f"{options.get('chains', 4)} chains x {options.get('draws', 1000)} draws after "
            f"{options.get('tune', 1000)} tuning steps"
            if method == "nuts"
            else f"{options.get('draws', 1000)} draws from the approximation"
        )
        return (
            f"Fitting {method}: {draws} (compiles the family's PyMC model first: seconds when "
            "PyTensor's cache is warm, tens of seconds otherwise) ..."
        )
    if method == "gibbs":
        return (
            f"Fitting gibbs: {options.get('chains', 4)} chains x {options.get('draws', 1000)} "
            f"draws after {options.get('tune', 500)} burn-in sweeps ..."
        )
    if method == "nuts":
        return (
            f"Fitting nuts: {options.get('chains', 4)} chains x {options.get('draws', 1000)} "
            f"draws after {options.get('tune', 1000)} tuning steps (the first use on a machine "
            "compiles bayesmix's log density, about 20 s, cached on disk; with missing values "
            "the PyMC model is compiled, tens of seconds per process) ..."
        )
    if method == "vb":
        return (
            f"Fitting vb: closed-form variational Bayes ({options.get('n_init', 5)} start(s)), "
            f"{options.get('draws', 1000)} draws from the approximation ..."
        )
    if method in ("advi", "fullrank_advi"):
        return (
            f"Fitting {method} (compiles the PyMC model first: seconds when PyTensor's cache "
            "is warm, up to about 2 minutes on an empty cache) ..."
        )
    return f"Fitting {method} ({options.get('n_init', EM_DEFAULTS['n_init'])} start(s)) ..."


def _long_fit_caution(method: str, model: Any, X: Any, options: Mapping[str, Any]) -> str:
    """Said before a fit that will clearly take long: the Gibbs sampler's projected
    time (a few timed sweeps) when above ``LONG_FIT_SECONDS``; for NUTS with full or
    tied covariances in ``NUTS_SLOW_FEATURES`` or more dimensions, that it is slow
    there and what is faster."""
    n_features = np.shape(X)[1] if np.ndim(X) == 2 else 1
    if method == "gibbs":
        from bayesmix.inference.bayes.gibbs import projected_seconds

        keys = ("draws", "tune", "chains", "thin", "temperatures", "mode_jumps")
        seconds = projected_seconds(model, X, **{k: options[k] for k in keys if k in options})
        if seconds > LONG_FIT_SECONDS:
            return (
                f"  this Gibbs fit will take about {seconds / 60:.0f} min (projected from "
                "timed sweeps); fewer draws= or chains= shorten it"
            )
        return ""
    if (
        method == "nuts"
        and not getattr(getattr(model, "structure", None), "axis_aligned", True)
        and n_features >= NUTS_SLOW_FEATURES
    ):
        return (
            f"  NUTS with {model.covariance_type} covariances in {n_features} dimensions can "
            "take tens of minutes or more (scikit-learn's breast_cancer, 30 features: no "
            "result after 30 minutes); method gibbs samples the same posterior in minutes "
            "or less"
        )
    return ""


# -- what the plots show --------------------------------------------------------------------
def feature_ranking(result: MixtureResult, X: Any) -> pd.Series:
    """How strongly each feature separates the components of a fit, most separating first.

    The share of a feature's variance that lies between the groups of observations with
    the same most probable component (the correlation ratio, eta squared): near 1 when
    the components differ in that feature and each is tight in it, 0 when every group
    has the same mean. The report draws the features with the largest shares when there
    are too many to draw them all.

    Parameters
    ----------
    result : MixtureResult
        Any fitted result.
    X : array-like of shape (n_obs, n_features), DataFrame or DataArray
        The observations (usually the training data).

    Returns
    -------
    pandas.Series
        The share (in [0, 1]) by feature name, sorted from the largest.

    Notes
    -----
    A column of categories (text or categorical columns of a fit that keeps their
    labels, ``result.model.categories``; ``X`` may hold the labels or their codes) counts
    as its categories' indicators, their between-group variances summed over their
    variances summed: the share does not depend on the order of the codes.
    """
    categories = getattr(result.model, "categories", None)
    data = result.check_data(X)
    labels = np.asarray(result.predict(data.values))
    between, total = _between_and_total(data.values, labels)
    for d, column in enumerate(categories or ()):
        if column is not None and len(column) > 2:  # two categories: the codes' share
            indicators = data.values[:, d, None] == np.arange(len(column))
            parts = _between_and_total(indicators.astype(float), labels)
            between[d], total[d] = parts[0].sum(), parts[1].sum()
    share = np.divide(between, total, out=np.zeros_like(between), where=total > 0)
    ranking = pd.Series(share, index=list(data.feature_names), name="between_share")
    return ranking.sort_values(ascending=False, kind="stable")


def _between_and_total(values: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per column: the sum of squares between the groups of rows with the same label and
    the total sum of squares about the mean."""
    centred = values - values.mean(axis=0)
    between = np.zeros(values.shape[1])
    for k in np.unique(labels):
        members = centred[labels == k]
        between += len(members) * members.mean(axis=0) ** 2
    return between, (centred**2).sum(axis=0)


@dataclass(frozen=True)
class _Shown:
    """Which features the plots draw when there are too many to draw them all."""

    ranking: pd.Series
    features: tuple[str, ...]

    def names(self, limit: int) -> list[str]:
        """Every feature in the data's order if they fit, else the most separating ones."""
        if len(self.features) <= limit:
            return list(self.features)
        return list(self.ranking.index[:limit])

    def positions(self, limit: int) -> list[int]:
        return [self.features.index(name) for name in self.names(limit)]

    def note(self, limit: int) -> str:
        """The sentence saying which features were drawn and which were left out."""
        if len(self.features) <= limit:
            return ""
        shown = self.ranking.iloc[:limit]
        return (
            f" Drawn: the {limit} of {len(self.features)} features that separate the "
            "components most (share of their variance between the assigned components: "
            + ", ".join(f"{name} {share:.2f}" for name, share in shown.items())
            + f"); not drawn: {', '.join(self.ranking.index[limit:])}."
        )


# -- plots ----------------------------------------------------------------------------------
def _save(fig: Any, path: Path, dpi: int = 110) -> None:
    import matplotlib.pyplot as plt

    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    plt.close(fig)


def _feature_grid(n_panels: int, width: float = 4.6, height: float = 4.0):
    import matplotlib.pyplot as plt

    n_cols = min(n_panels, 3)
    n_rows = -(-n_panels // n_cols)
    fig, axes = plt.subplots(
        n_rows,
        n_cols,
        figsize=(width * n_cols, height * n_rows),
        squeeze=False,
        layout="constrained",  # titles clear of the tick labels of the panel above
    )
    for ax in axes.flat[n_panels:]:
        ax.set_visible(False)
    return fig, list(axes.flat[:n_panels])


def _plot_clusters(
    result: MixtureResult, overlay: dict, data: Data, shown: _Shown, members: Any, path: Path
) -> str:
    from bayesmix.viz import plot_clusters_2d

    items = _item_columns(result)
    features = [
        data.feature_names.index(f) for f in shown.names(len(shown.features)) if f not in items
    ][:MAX_PLOT_FEATURES]
    pairs = [(i, j) for n, i in enumerate(features) for j in features[n + 1 :]]
    fig, axes = _feature_grid(len(pairs), 6.0 if len(pairs) == 1 else 4.6, 5.0)
    for n, (ax, pair) in enumerate(zip(axes, pairs, strict=True)):
        plot_clusters_2d(
            result, data, features=pair, overlay=overlay or None, members=members, ax=ax
        )
        legend = ax.get_legend()
        if n and legend is not None:
            legend.remove()
    _save(fig, path, dpi=GRID_DPI)
    gaussian = "covariances" in result.posterior
    caption = _CAPTIONS["clusters"] if gaussian else _CAPTIONS["clusters_family"]
    if items:
        return caption + " Category columns are drawn in the profile plot, not here."
    return caption + shown.note(MAX_PLOT_FEATURES)


def _item_columns(result: MixtureResult) -> list[str]:
    """The columns a fit models by Bernoulli or Categorical components (latent class
    items; the profile plot draws them), in the data's order."""
    try:
        table = response_probabilities(result)
    except ValueError:  # no category components
        return []
    return list(table.index.get_level_values("feature").unique())


def _plot_profile(result: MixtureResult, path: Path) -> str:
    from bayesmix.viz import plot_profile

    _save(plot_profile(result), path)
    return _CAPTIONS["profile"]


def _plot_densities(result: MixtureResult, data: Data, shown: _Shown, path: Path) -> str:
    from bayesmix.viz import plot_density

    features = shown.positions(MAX_DENSITY_FEATURES)
    fig, axes = _feature_grid(len(features), 6.0 if len(features) == 1 else 4.6, 3.6)
    for n, (ax, feature) in enumerate(zip(axes, features, strict=True)):
        plot_density(result, data, feature=feature, ax=ax)
        legend = ax.get_legend()
        if n and legend is not None:
            legend.remove()
    _save(fig, path, dpi=GRID_DPI)
    discrete = getattr(getattr(result.model, "family", None), "discrete", False)
    caption = _CAPTIONS["mass"] if discrete else _CAPTIONS["density"]
    return caption + shown.note(MAX_DENSITY_FEATURES)


def _plot_membership(members: Any, path: Path) -> str:
    from bayesmix.viz import plot_membership_uncertainty

    ax = plot_membership_uncertainty(members)
    _save(ax.figure, path)
    return _CAPTIONS["membership"]


def _plot_trace(result: MixtureResult, shown: _Shown, summary: pd.DataFrame, path: Path) -> str:
    """Traces of the weights and of the means of the most separating features, as many
    as fit in :data:`MAX_TRACE_ROWS` rows."""
    import matplotlib.pyplot as plt

    from bayesmix.viz import plot_trace

    n_components = result.model.n_components
    n_features = min(MAX_PLOT_FEATURES, (MAX_TRACE_ROWS - n_components) // n_components)
    features = shown.names(MAX_PLOT_FEATURES)[: max(n_features, 0)]
    components = list(range(min(n_components, MAX_TRACE_ROWS)))
    coords: dict[str, list] = {"component": components}
    if features:
        coords["feature"] = features
    location = _location_name(result)
    collection = plot_trace(
        result, var_names=["weights", location][: 1 + bool(features)], coords=coords
    )
    figure = collection.viz["figure"].item()
    figure.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(figure)
    return _trace_caption(result, features, components, summary)


def _trace_caption(
    result: MixtureResult, features: list[str], components: list[int], summary: pd.DataFrame
) -> str:
    drawn = (
        "the weights"
        if len(components) == result.model.n_components
        else (f"the weights of components 0-{components[-1]}")
    )
    if features:
        drawn += f" and the {_location_name(result)} in {', '.join(features)}"
    caption = (
        f"NUTS traces and marginal posteriors, chain by chain, of {drawn}; the other "
        "parameters are not drawn (r_hat and ESS of every parameter are in summary.csv)."
    )
    method = str(result.settings.get("method", ""))
    rows = summary[summary["method"] == method].dropna(subset=["r_hat"])
    if len(rows):
        worst = rows.loc[rows["r_hat"].idxmax()]
        caption += f" Largest r_hat: {worst['r_hat']:.3f} ({worst['parameter']})."
    return caption


def _plot_comparison(comparison: Any, shown: _Shown, path: Path) -> str:
    features = shown.names(MAX_PLOT_FEATURES)
    if len(features) == len(shown.features):
        _save(comparison.plot(), path)
        return _CAPTIONS["comparison"]
    groups = list(dict.fromkeys(comparison.parameters.index.str.split("[").str[0]))
    if "correlations" in groups:  # Gaussian: the weights, means and stds
        groups = [g for g in groups if g in ("weights", "means", "stds")]
        drawn = "the means and stds"
    else:
        drawn = "the " + " and ".join(g for g in groups if g != "weights")
    _save(comparison.plot(var_names=groups, features=features), path)
    return _CAPTIONS["comparison"] + (
        f" Drawn: the weights, and {drawn} in the {len(features)} features that "
        f"separate the components most ({', '.join(features)}); every parameter is in "
        "comparison.csv."
    )


def _plot_selection(selection: Any, path: Path) -> str:
    _save(selection.plot().figure, path)
    return _CAPTIONS["selection"]


_CAPTIONS = {
    "clusters": "Observations coloured by their most probable component, with the ellipses "
    "holding 50% and 95% of each component (thin lines: posterior draws; black: point "
    "estimates for comparison). Larger points are less certain assignments.",
    "profile": "Response probabilities of the category columns (items) by class, one panel "
    "per category code (the ticks name each item's label of that code); vertical bars are "
    "credible intervals for posterior fits.",
    "clusters_family": "Observations coloured by their most probable component, with each "
    "component's mean (posterior mean for posterior fits). Larger points are less certain "
    "assignments.",
    "density": "Histogram of each drawn feature with the fitted marginal density (credible "
    "band for posterior fits) and its weighted components.",
    "mass": "Share of each count among the observations of each drawn feature (bars) with "
    "the fitted marginal probability mass (credible band for posterior fits) and its "
    "weighted components.",
    "membership": "Probability of each observation's assigned component, from the most to the "
    "least certain, with credible intervals over posterior draws.",
    "comparison": "Parameters by fit: posterior means with credible intervals, point "
    "estimates as diamonds; shaded panels have a point estimate outside an interval.",
    "selection": "Model selection over the number of components.",
}


def _plot_jobs(
    results: dict[str, MixtureResult],
    data: Data,
    members: dict[str, Any],
    shown: _Shown,
    summary: pd.DataFrame,
    comparison: Any,
    selection: Any,
) -> list[tuple[str, Callable[[Path], str]]]:
    """Each plot's name and the function drawing it into a path (returning its caption)."""
    points = {n: r for n, r in results.items() if r.n_draws == 1}
    jobs: list[tuple[str, Callable[[Path], str]]] = []
    for name, result in results.items():
        if data.n_features - len(_item_columns(result)) >= 2:
            overlay = {n: r for n, r in points.items() if n != name and result.n_draws > 1}
            jobs.append(
                (
                    f"clusters_{name}",
                    partial(_plot_clusters, result, overlay, data, shown, members[name]),
                )
            )
        if _item_columns(result):
            jobs.append((f"profile_{name}", partial(_plot_profile, result)))
        jobs.append((f"density_{name}", partial(_plot_densities, result, data, shown)))
        jobs.append((f"membership_{name}", partial(_plot_membership, members[name])))
        if getattr(result, "is_mcmc", False):
            jobs.append((f"trace_{name}", partial(_plot_trace, result, shown, summary)))
    if comparison is not None and len(comparison.parameters):
        jobs.append(("comparison", partial(_plot_comparison, comparison, shown)))
    if selection is not None:
        jobs.append(("selection", partial(_plot_selection, selection)))
    return jobs


def _plots(
    jobs: list[tuple[str, Callable[[Path], str]]], out: Path, problems: list[str]
) -> tuple[dict[str, Path], dict[str, str]]:
    """Draw every plot; returns the paths written and their captions by plot name."""
    written: dict[str, Path] = {}
    captions: dict[str, str] = {}
    for key, draw in jobs:
        path = out / f"{key}.png"
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                captions[key] = draw(path)
        except Exception as exc:  # one failed plot must not cost the whole report
            import matplotlib.pyplot as plt

            plt.close("all")
            problems.append(f"{path.name}: {type(exc).__name__}: {_one_line(str(exc))}")
            continue
        written[key] = path
    return written, captions


# -- the HTML page ------------------------------------------------------------------------
_STYLE = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; margin: 2em auto;
       max-width: 1100px; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { font-size: 1.6em; border-bottom: 2px solid #4c72b0; padding-bottom: .2em; }
h2 { font-size: 1.25em; margin-top: 1.8em; border-bottom: 1px solid #ccc; }
h3 { font-size: 1.05em; margin-bottom: .3em; }
table { border-collapse: collapse; font-size: .88em; margin: .5em 0 1em 0; display: block;
        overflow-x: auto; max-width: 100%; }
th, td { padding: 2px 8px; border-bottom: 1px solid #ddd; text-align: right; }
th { background: #f3f5f9; }
tbody th, td.label { text-align: left; }
code, pre { background: #f3f3f3; padding: 1px 4px; border-radius: 3px; }
pre { padding: .6em; overflow-x: auto; white-space: pre-wrap; }
figure { margin: 1em 0 1.6em 0; }
figure img { max-width: 100%; border: 1px solid #e4e4e4; }
figcaption { font-size: .88em; color: #555; }
.ok { color: #2e7d32; }
.problem { color: #b23c17; }
.small { font-size: .85em; color: #555; }
"""


def _one_line(text: str) -> str:
    return " ".join(str(text).split())


def _esc(value: Any) -> str:
    return html.escape(str(value))


def _frame_html(frame: pd.DataFrame, index: bool = True, digits: int = 4) -> str:
    def fmt(value: float) -> str:
        return "" if not np.isfinite(value) else f"{value:.{digits}g}"

    return frame.to_html(index=index, float_format=fmt, na_rep="", border=0, escape=True)


def _image(path: Path, caption: str) -> str:
    encoded = base64.b64encode(path.read_bytes()).decode("ascii")
    return (
        f'<figure><img alt="{_esc(path.stem)}" src="data:image/png;base64,{encoded}">'
        f"<figcaption>{_esc(caption)}</figcaption></figure>"
    )


def _declaration_column(model: Any) -> dict[str, str]:
    """The declaration's settings for the settings table: the covariance structure of a
    Gaussian mixture; a family's name and its settings."""
    from bayesmix.mixture import Mixture

    if not isinstance(model, Mixture):
        return {"covariance_type": str(model.covariance_type)}
    column = {"family": model.family.name}
    column.update({key: str(value) for key, value in model.family.settings().items()})
    return column


def _settings_table(results: dict[str, MixtureResult]) -> pd.DataFrame:
    skip = {"versions"}
    table: dict[str, dict[str, str]] = {}
    for name, result in results.items():
        column = _declaration_column(result.model)
        column["n_components"] = str(result.model.n_components)
        for key, value in result.settings.items():
            if key in skip:
                continue
            if key == "fit_seconds":
                value = f"{float(value):.2f}"
            column[key] = str(value)
        table[name] = column
    frame = pd.DataFrame(table)
    first = [k for k in ("method", "fit_seconds") if k in frame.index]
    return frame.loc[first + [k for k in frame.index if k not in first]].fillna("")


def _diagnostics(name: str, result: MixtureResult, data: Data) -> list[tuple[bool, str]]:
    """Plain-language findings about one fit: ``(is_problem, sentence)``."""
    from bayesmix.results import EMResult

    found: list[tuple[bool, str]] = []
    if isinstance(result, EMResult):
        kind = "MAP-EM" if result.log_posterior_trace is not None else "EM"
        if result.converged:
            found.append((False, f"{kind} converged in {result.n_iter} iterations."))
        else:
            found.append(
                (
                    True,
                    f"{kind} did NOT converge in {result.n_iter} iterations: the estimates may "
                    "still move; raise max_iter or try more restarts (--n-init).",
                )
            )
        found.append(
            (
                False,
                f"Log-likelihood {result.log_likelihood:.2f}; BIC {result.bic():.2f}, "
                f"AIC {result.aic():.2f}, ICL {result.icl():.2f} (lower is better).",
            )
        )
        return found
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        problems = result.diagnose()
    for message, _ in problems:
        found.append((True, message))
    if getattr(result, "is_mcmc", False):
        if not problems:
            found.append(
                (
                    False,
                    "No sampling problems: every r_hat <= 1.01, bulk ESS >= 100 per chain, no "
                    "divergent transitions, all chains agree on the component labels.",
                )
            )
    else:
        converged = result.settings.get("converged")
        if converged is not None and not int(converged):
            found.append(
                (True, "The variational fit did not converge: raise n or the learning rate.")
            )
        found.append(
            (
                False,
                "Variational draws come from an approximation of the posterior that usually "
                "understates its spread; check important conclusions with NUTS.",
            )
        )
    return found


def _clusters_table(results: dict[str, MixtureResult], members: dict[str, Any]) -> pd.DataFrame:
    rows = {}
    for name, result in results.items():
        counts = np.bincount(members[name].labels, minlength=result.model.n_components)
        row = {f"component {k}": int(c) for k, c in enumerate(counts)}
        row["uncertain"] = int(members[name].uncertain.sum())
        rows[name] = row
    return pd.DataFrame(rows).T.fillna(0).astype(int)


def _labelled_parameters(result: MixtureResult) -> dict[str, str]:
    """The summary's names of a Bernoulli or Categorical fit's probabilities -> names by
    the categories' labels (``probabilities[0, city, Oslo]`` and a Bernoulli's
    ``probabilities[0, smoker]``, the probability of code 1, -> ``probabilities[0,
    city = Oslo]``, ``probabilities[0, smoker = True]``); empty for fits without labels."""
    model = result.model
    categories = getattr(model, "categories", None)
    if categories is None or not isinstance(model.family, CategoryFamily):
        return {}
    binary = isinstance(model.family, Bernoulli)
    features = [str(f) for f in result.posterior["feature"].values]
    names = {}
    for name in model.family.parameters:
        for k in range(model.n_components):
            for feature, labels in zip(features, categories, strict=True):
                if labels is None:
                    continue
                if binary:
                    names[f"{name}[{k}, {feature}]"] = f"{name}[{k}, {feature} = {labels[1]}]"
                    continue
                for label in labels:
                    names[f"{name}[{k}, {feature}, {label}]"] = f"{name}[{k}, {feature} = {label}]"
    return names


def _category_counts(data: Data, categories: Sequence[Any]) -> pd.DataFrame:
    """Per labelled column and label (code order): the number and the share of the
    observed entries with that label."""
    rows = []
    for d, labels in enumerate(categories):
        if labels is None:
            continue
        column = data.values[:, d]
        observed = column[~np.isnan(column)]
        for code, label in enumerate(labels):
            count = int(np.count_nonzero(observed == code))
            share = count / observed.size if observed.size else np.nan
            rows.append((data.feature_names[d], label, count, share))
    frame = pd.DataFrame(rows, columns=["feature", "category", "count", "share"])
    return frame.set_index(["feature", "category"])


def _parameters_html(
    summary: pd.DataFrame,
    comparison: Any,
    plots: dict[str, Path],
    captions: dict[str, str],
    ci_prob: float,
    labelled: Mapping[str, str],
) -> list[str]:
    """The parameter tables (without the correlations when there are many) and the
    comparison plot; ``labelled`` renames category parameters by their labels
    (:func:`_labelled_parameters`)."""
    summary = summary.assign(parameter=summary["parameter"].replace(dict(labelled)))
    parameters = summary["parameter"]
    is_correlation = parameters.str.startswith("correlations[")
    n_correlations = int(is_correlation[summary["method"] == summary["method"].iloc[0]].sum())
    hide = n_correlations > MAX_TABLE_CORRELATIONS
    parts = ["<h2>Parameters</h2>"]
    if hide:
        parts.append(
            f"<p>The {n_correlations} correlations of each fit are left out of the tables "
            "below; every parameter is in <code>summary.csv</code>"
            + (" and <code>comparison.csv</code>" if comparison is not None else "")
            + ".</p>"
        )
    if comparison is not None:
        parts.append(
            "<p>Point estimates next to posterior means with "
            f"{100 * ci_prob:g}% equal-tailed credible intervals "
            "(components matched across fits):</p>"
        )
        table = copy.copy(comparison)
        table.parameters = table.parameters.rename(index=dict(labelled))
        if hide:
            table.parameters = table.parameters[
                ~table.parameters.index.str.startswith("correlations[")
            ]
        parts.append(table._repr_html_())
        if "comparison" in plots:
            parts.append(_image(plots["comparison"], captions["comparison"]))
    parts.append(
        "<p>The summary table (<code>summary.csv</code>): estimate is the point estimate of "
        "EM/MAP and the posterior mean otherwise; lower and upper bound the "
        f"{100 * ci_prob:g}% credible interval; r_hat and ESS are for NUTS."
        + (
            " A category's probability is named by its label: "
            f"<code>{_esc(next(iter(labelled.values())))}</code>."
            if labelled
            else ""
        )
        + "</p>"
    )
    shown = summary[~is_correlation] if hide else summary
    parts.append(_frame_html(shown.set_index(["method", "parameter"]).dropna(axis=1, how="all")))
    return parts


def _html(
    *,
    title: str,
    results: dict[str, MixtureResult],
    data: Data,
    members: dict[str, Any],
    data_info: Mapping[str, Any],
    summary: pd.DataFrame,
    comparison: Any,
    selection: Any,
    plots: dict[str, Path],
    captions: dict[str, str],
    fit_warnings: Mapping[str, Sequence[str]],
    notes: Mapping[str, Sequence[str]],
    problems: list[str],
    command: str | None,
    ci_prob: float,
) -> str:
    first = next(iter(results.values()))
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{_esc(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
        f'<p class="small">Written {datetime.datetime.now().astimezone():%Y-%m-%d %H:%M %Z} '
        f"by bayesmix {_esc(first.settings['versions'].get('bayesmix', ''))}.</p>",
    ]
    if command:
        parts.append(f"<p>Command: <code>{_esc(command)}</code></p>")

    parts.append("<h2>Model</h2>")
    parts.append(f"<pre>{_esc(repr(first.model))}</pre>")
    parts.append(
        f"<p>{_esc(describe_model(first.model))} on {data.n_features} feature(s); fitted by "
        f"{', '.join(_esc(n) for n in results)}.</p>"
    )

    parts.append("<h2>Data</h2>")
    info = {"observations": data.n_obs, "features": ", ".join(data.feature_names)}
    info.update({str(k): v for k, v in data_info.items()})
    parts.append(
        "<table><tbody>"
        + "".join(
            f'<tr><th>{_esc(k)}</th><td class="label">{_esc(v)}</td></tr>' for k, v in info.items()
        )
        + "</tbody></table>"
    )
    categories = getattr(first.model, "categories", None) or (None,) * data.n_features
    numeric = [d for d, labels in enumerate(categories) if labels is None]
    if numeric:
        values = data.values[:, numeric]
        names = [data.feature_names[d] for d in numeric]
        parts.append(_frame_html(pd.DataFrame(values, columns=names).describe().T))
    if len(numeric) < data.n_features:
        parts.append("<p>Observations per category of the category columns:</p>")
        parts.append(_frame_html(_category_counts(data, categories), digits=3))

    if selection is not None:
        parts.append("<h2>Choosing the number of components</h2>")
        parts.append(selection._repr_html_())
        if "selection" in plots:
            parts.append(_image(plots["selection"], captions["selection"]))

    parts.append("<h2>Fits</h2>")
    parts.append("<h3>Settings and timings</h3>")
    parts.append(
        '<p class="small">fit_seconds is the wall-clock time of each fit in this run, '
        "including any compilation it triggered: the first NUTS fit on a machine compiles "
        "bayesmix's log density (about 20 s, then cached on disk), the first ADVI fit "
        "PyTensor's model (up to about 2 minutes with an empty cache). Repeated runs are "
        "faster."
        + (
            " NUTS and ADVI fits of a non-Gaussian family compile their PyMC model on every "
            "fit (seconds when PyTensor's cache is warm)."
            if any(r.n_draws > 1 and "covariances" not in r.posterior for r in results.values())
            else ""
        )
        + "</p>"
    )
    parts.append(_frame_html(_settings_table(results)))
    parts.append("<h3>Diagnostics</h3>")
    for name, result in results.items():
        findings = _diagnostics(name, result, data)
        findings += [(True, f"warning during the fit: {w}") for w in fit_warnings.get(name, ())]
        findings += [(False, note) for note in notes.get(name, ())]
        items = "".join(
            f'<li class="{"problem" if bad else "ok"}">{_esc(text)}</li>' for bad, text in findings
        )
        parts.append(f"<p><b>{_esc(name)}</b></p><ul>{items}</ul>")

    labelled = {
        key: value for r in results.values() for key, value in _labelled_parameters(r).items()
    }
    parts += _parameters_html(summary, comparison, plots, captions, ci_prob, labelled)

    parts.append("<h2>Clusters</h2>")
    try:
        table = _clusters_table(results, members)
        parts.append(
            "<p>Observations per most probable component; <i>uncertain</i> counts those "
            "whose assignment probability is below 0.8 (1 - max p &gt; 0.2).</p>"
        )
        parts.append(_frame_html(table))
    except Exception as exc:  # the page is still worth writing without this table
        problems.append(f"clusters table: {type(exc).__name__}: {_one_line(str(exc))}")
    for name in results:
        shown = [f"{kind}_{name}" for kind in ("clusters", "profile", "density", "membership")]
        shown = [k for k in shown if k in plots]
        if shown:
            parts.append(f"<h3>{_esc(name)}</h3>")
        for key in shown:
            parts.append(_image(plots[key], captions[key]))

    traces = [k for k in plots if k.startswith("trace_")]
    if traces:
        parts.append("<h2>Sampler traces</h2>")
        for key in traces:
            parts.append(_image(plots[key], captions[key]))

    if problems:
        parts.append("<h2>Not written</h2><ul>")
        parts += [f'<li class="problem">{_esc(p)}</li>' for p in problems]
        parts.append("</ul>")

    parts.append("<h2>Versions</h2>")
    versions = first.settings.get("versions", {})
    parts.append(
        "<p>"
        + ", ".join(f"{_esc(k)} {_esc(v)}" for k, v in versions.items())
        + "</p></body></html>"
    )
    return "\n".join(parts)


# -- the entry point ----------------------------------------------------------------------
def write_report(
    results: MixtureResult | Sequence[MixtureResult] | Mapping[str, MixtureResult],
    X: Any,
    out: str | os.PathLike,
    *,
    title: str = "bayesmix report",
    data_info: Mapping[str, Any] | None = None,
    selection: Any = None,
    fit_warnings: Mapping[str, Sequence[str]] | None = None,
    plots: bool = True,
    netcdf: bool = True,
    ci_prob: float = 0.94,
    command: str | None = None,
) -> ReportFiles:
    """Write the summary table, netCDF files, plots and a self-contained HTML report.

    Parameters
    ----------
    results : MixtureResult, sequence of them or mapping {name: result}
        Fits of the same features (usually one declaration fitted by several methods),
        of any component family: Gaussian mixtures and the families of
        :class:`~bayesmix.Mixture` (their parameter tables use the family's names; count
        families get a probability mass plot instead of a density, and no ellipses).
        Names (default: the fit methods) become file names.
    X : array-like of shape (n_obs, n_features), DataFrame or DataArray
        The observations the results were fitted to.
    out : str or path-like
        Directory to write into (created if needed; existing files are overwritten).
    title : str
        Heading of the HTML page.
    data_info : mapping, optional
        Extra lines for the report's data section (e.g. the source file, dropped columns).
    selection : bayesmix.SelectionResult, optional
        A model-selection table to include (with its plot).
    fit_warnings : mapping {name: list of str}, optional
        Warnings raised while fitting, shown with each fit's diagnostics.
    plots : bool
        Draw the PNG plots (clusters or densities, membership uncertainty, comparison,
        NUTS traces).
    netcdf : bool
        Save every result with ``result.save`` as ``<name>.nc``.
    ci_prob : float
        Probability mass of the credible intervals, in (0, 1).
    command : str, optional
        The command that produced the fits, shown in the report.

    Returns
    -------
    ReportFiles
        The paths written: ``html``, ``summary``, ``comparison``, ``netcdf``, ``plots``,
        and ``problems`` (files that could not be written, with the reason).

    Examples
    --------
    >>> import bayesmix as bm
    >>> from bayesmix.viz.report import write_report
    >>> X = bm.datasets.load_faithful()
    >>> em = bm.GaussianMixture(2).fit(X, random_state=0)
    >>> files = write_report(em, X, "faithful-report")  # doctest: +SKIP
    >>> files.html  # doctest: +SKIP
    PosixPath('faithful-report/report.html')
    >>> art = bm.datasets.load_biochemists()[["art"]]
    >>> poisson = bm.Mixture(2, bm.families.Poisson()).fit(art, random_state=0)
    >>> files = write_report(poisson, art, "articles-report")  # doctest: +SKIP
    """
    named = _check_results(results)
    ci_prob = check_ci_prob(ci_prob)
    first = next(iter(named.values()))
    # text columns coded by the labels of the fit (codes pass as they are)
    data = first.check_data(X)
    if not isinstance(title, str):
        raise TypeError(f"title must be a string; got {type(title).__name__}.")
    if data_info is not None and not isinstance(data_info, Mapping):
        raise TypeError(f"data_info must be a mapping; got {type(data_info).__name__}.")
    if fit_warnings is not None and not isinstance(fit_warnings, Mapping):
        raise TypeError(f"fit_warnings must be a mapping; got {type(fit_warnings).__name__}.")
    if selection is not None:
        from bayesmix.analysis.selection import SelectionResult

        if not isinstance(selection, SelectionResult):
            raise TypeError(
                "selection must be the output of bayesmix.select_components; "
                f"got {type(selection).__name__}."
            )
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ValueError(f"out={str(out)!r} is a file; pass a directory to write the report to.")
    out.mkdir(parents=True, exist_ok=True)

    problems: list[str] = []
    captions: dict[str, str] = {}
    with warnings.catch_warnings():
        # what these warn about is in the diagnostics section already
        warnings.simplefilter("ignore", BayesmixWarning)
        aligned, posteriors, comparison = _aligned(named, data, ci_prob)
    files = ReportFiles(directory=out, html=out / "report.html", summary=out / "summary.csv")
    # once per fit for the clusters table and the scatter and membership plots
    members = {name: memberships(result, data) for name, result in aligned.items()}
    summary = _summary_rows(aligned, posteriors, ci_prob)
    summary.to_csv(files.summary, index=False)
    if comparison is not None and len(comparison.parameters):
        files.comparison = out / "comparison.csv"
        table = comparison.parameters.copy()
        table.columns = [f"{fit}_{stat}".replace(" ", "_") for fit, stat in table.columns]
        table.to_csv(files.comparison)
    if netcdf:
        for name, result in named.items():
            path = out / f"{name}.nc"
            try:
                result.save(path)
            except ImportError as exc:  # e.g. no netCDF engine installed
                problems.append(f"{path.name}: {_one_line(str(exc))}")
                continue
            files.netcdf[name] = path
    if plots:
        shown = _Shown(feature_ranking(next(iter(aligned.values())), data), data.feature_names)
        jobs = _plot_jobs(aligned, data, members, shown, summary, comparison, selection)
        files.plots, captions = _plots(jobs, out, problems)
    page = _html(
        title=title,
        results=aligned,
        data=data,
        members=members,
        data_info=data_info or {},
        summary=summary,
        comparison=comparison,
        selection=selection,
        plots=files.plots,
        captions=captions,
        fit_warnings=fit_warnings or {},
        notes=_relabel_notes(named, aligned),
        problems=problems,
        command=command,
        ci_prob=ci_prob,
    )
    files.html.write_text(page, encoding="utf-8")
    files.problems = problems
    return files
