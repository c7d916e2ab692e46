"""EM versus full Bayes: parameters, fit and assignments of several results side by side.

:func:`compare` puts point estimates (EM, MAP) next to posterior means and equal-tailed
credible intervals (NUTS, ADVI), after resolving label switching and matching every
result's components to the first result's. It also compares what does not depend on
labels: the log predictive density of the data and the agreement of the hard assignments.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import xarray as xr
from scipy.optimize import linear_sum_assignment

from bayesmix.analysis.clustering import adjusted_rand_index
from bayesmix.data import Data
from bayesmix.exceptions import LabelSwitchingWarning
from bayesmix.model import GaussianMixture
from bayesmix.results import MixtureResult, parameter_draws
from bayesmix.validation import DEFAULT_CI_PROB, check_ci_prob

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from bayesmix.families.gaussian.covariance import CovarianceStructure

__all__ = ["Comparison", "compare"]


@dataclass(frozen=True)
class _Row:
    """One scalar parameter: its label, variable and position in the posterior arrays."""

    label: str
    variable: str
    component: int
    feature: int
    feature_: int


def compare(
    *results: MixtureResult,
    X: Any,
    names: Sequence[str] | None = None,
    ci_prob: float = DEFAULT_CI_PROB,
) -> Comparison:
    """Compare fits of the same mixture side by side (EM versus full Bayes).

    Works for every component family: Gaussian mixtures (``GaussianMixture.fit``) and
    the families of :class:`~bayesmix.Mixture` (Poisson and negative binomial fitted by
    EM, MAP, NUTS or ADVI; Student-t by EM or MAP), whose parameters are shown under the
    family's own names (``rates[k, feature]``, ``dispersions[k, feature]``,
    ``scales[k, feature]``, ``dof[k]``, ...).

    Bayesian results whose chains use different component labels (reported by
    :meth:`~bayesmix.results.posterior.BayesResult.diagnose` as label switching) are relabelled
    first (:meth:`~bayesmix.results.posterior.BayesResult.relabel`). Then every result's
    components are matched to the first result's by the Hungarian algorithm on the
    (posterior mean) component means ``E[x | k]``, standardised by the standard deviation
    of ``X``.

    Parameters
    ----------
    *results : MixtureResult
        Two or more fitted results (``GaussianMixture.fit(...)``, ``Mixture.fit(...)``)
        on the same features, e.g. ``compare(em, nuts, advi, X=X)``. The first is the
        reference for the component matching and the assignment agreement.
    X : array-like of shape (n_obs, n_features), DataFrame or DataArray
        Observations for the log predictive density, the assignments and the feature
        scales used to match components (usually the training data); in the support of
        every result's family (counts for Poisson and negative binomial fits).
    names : sequence of str, optional
        One unique name per result; default the fit methods (``"em"``, ``"nuts"``, ...),
        numbered when repeated.
    ci_prob : float
        Probability mass of the equal-tailed credible intervals, in (0, 1).

    Returns
    -------
    Comparison
        ``.parameters`` (point estimates, posterior means and intervals, whether each
        point estimate lies inside each interval), ``.fits`` (method, draws, log
        predictive density, adjusted Rand index against the first result, fitting time),
        ``.agreement`` (pairwise adjusted Rand indices), ``.notes`` and ``.plot()``.

    Notes
    -----
    Results with different numbers of components are compared only through the
    label-free quantities (log predictive density, assignment agreement, time); their
    parameter table is empty, and the notes say so. Results with different covariance
    structures are compared parameter by parameter: correlations that a structure fixes
    at 0 (``diag``, ``spherical``) are shown as missing. Results of different families
    (a Student-t against a Gaussian mixture, a negative binomial against a Poisson one)
    share the rows of the parameters they have in common (``weights``, and ``means`` for
    Gaussian, Student-t and negative binomial components); each family's other
    parameters are missing for the fits of the other families. The log predictive
    density of an EM or MAP fit is its log-likelihood at the estimate.

    Examples
    --------
    >>> import bayesmix as bm
    >>> X = bm.datasets.load_faithful()
    >>> model = bm.GaussianMixture(2, "full")
    >>> em = model.fit(X, method="em", random_state=0)
    >>> nuts = model.fit(X, method="nuts", random_state=0)  # doctest: +SKIP
    >>> bm.compare(em, nuts, X=X)  # doctest: +SKIP

    A Poisson mixture of article counts, EM against NUTS:

    >>> art = bm.datasets.load_biochemists()[["art"]]
    >>> counts = bm.Mixture(2, bm.families.Poisson())
    >>> em = counts.fit(art, random_state=0)
    >>> nuts = counts.fit(art, method="nuts", random_state=0)  # doctest: +SKIP
    >>> bm.compare(em, nuts, X=art).parameters  # doctest: +SKIP
    """
    results = _check_results(results)
    names = _check_names(names, results)
    ci_prob = check_ci_prob(ci_prob)
    data = _check_X(X, results)

    notes: list[str] = []
    results = _resolve_labels(results, names, notes)
    n_components = [r.model.n_components for r in results]
    same_k = len(set(n_components)) == 1
    if same_k:
        scale = data.values.std(axis=0)
        scale = np.where(scale > 0, scale, 1.0)
        permutations = {
            name: _match_components(results[0], result, scale)
            for name, result in zip(names, results, strict=True)
        }
        for name, perm in list(permutations.items())[1:]:
            if not np.array_equal(perm, np.arange(perm.size)):
                notes.append(
                    f"{name}: components reordered to match {names[0]}; shown components "
                    f"{list(range(perm.size))} are {name}'s components {perm.tolist()}."
                )
        posteriors = {
            name: _permute(result.posterior, permutations[name])
            for name, result in zip(names, results, strict=True)
        }
    else:
        permutations = None
        posteriors = {name: r.posterior for name, r in zip(names, results, strict=True)}
        sizes = ", ".join(f"{n}: {k}" for n, k in zip(names, n_components, strict=True))
        notes.append(
            f"The results have different numbers of components ({sizes}): their parameters "
            "cannot be matched component by component, so only the fit table (log predictive "
            "density, assignment agreement, time) is compared and the parameter table is empty."
        )
    gaussian = all(_is_gaussian(r) for r in results)
    families = list(dict.fromkeys(_family(r) for r in results))
    if same_k and gaussian:
        structures = sorted({r.model.covariance_type for r in results})
        if len(structures) > 1:
            notes.append(
                f"The covariance structures differ ({', '.join(structures)}): correlations "
                "fixed at 0 by a structure are shown as missing; tied stds are repeated per "
                "component."
            )
    elif same_k and len(families) > 1:
        notes.append(
            f"The component families differ ({', '.join(families)}): parameters of the same "
            "name share a row (the weights, and the means where families have them); the "
            "other parameters are missing for the fits whose family lacks them."
        )

    if not same_k:
        labels = []
        draws = {n: np.empty((r.n_draws, 0)) for n, r in zip(names, results, strict=True)}
    elif gaussian:
        rows = _rows(results, data.feature_names)
        labels = [row.label for row in rows]
        draws = {
            name: _row_draws(posteriors[name], result.model.structure, rows)
            for name, result in zip(names, results, strict=True)
        }
    else:
        labels, draws = _family_rows(results, names, posteriors)
    parameters = _parameter_table(results, names, draws, labels, ci_prob)
    labels = [r.predict(data) for r in results]  # validated: no conversion per result
    agreement = pd.DataFrame(
        [[adjusted_rand_index(a, b) for b in labels] for a in labels],
        index=pd.Index(names, name="fit"),
        columns=pd.Index(names, name="fit"),
    )
    fits = _fit_table(results, names, data, agreement)
    notes.append(
        "lpd is the log predictive density of X (log mean over draws of p(x | theta)); "
        "on the training data it is an in-sample measure that favours flexible fits — "
        "use az.loo on result.to_datatree(X) for out-of-sample comparison."
    )
    return Comparison(
        parameters=parameters,
        fits=fits,
        agreement=agreement,
        notes=tuple(notes),
        names=tuple(names),
        results=tuple(results),
        posteriors=posteriors,
        permutations=permutations,
        ci_prob=ci_prob,
        n_obs=data.n_obs,
    )


class Comparison:
    """Fits of one mixture side by side; returned by :func:`compare`.

    Attributes
    ----------
    parameters : pandas.DataFrame
        One row per scalar parameter (Gaussian: ``weights[k]``, ``means[k, feature]``,
        ``stds[k, feature]``, ``correlations[k, feature, feature]``; other families their
        own, e.g. ``rates[k, feature]`` for Poisson, ``means`` and ``dispersions`` for
        the negative binomial, ``means``, ``scales`` and ``dof[k]`` for Student-t); columns
        ``(fit, "estimate")`` for point estimates, ``(fit, "mean")``, ``(fit, "lower")``,
        ``(fit, "upper")`` for posterior draws and ``(fit, "<point fit> inside")``: whether
        that point estimate lies in the credible interval (missing where either is).
    fits : pandas.DataFrame
        One row per result: ``method``, ``n_components``, ``family`` (``"gaussian"``,
        ``"poisson"``, ...), ``covariance_type`` (empty for count families), ``n_draws``,
        ``lpd`` (sum of ``score_samples(X)``: the log-likelihood for EM and MAP fits),
        ``lpd_per_obs``, ``ari``
        (adjusted Rand index of ``predict(X)`` against the first result) and
        ``fit_seconds``.
    agreement : pandas.DataFrame
        Adjusted Rand index between the assignments of every pair of results.
    notes : tuple of str
        What was done to make the results comparable (relabelling, reordering) and
        caveats.
    names : tuple of str
    results : tuple of MixtureResult
        The results as compared (relabelled where label switching was found).
    posteriors : dict of str to xarray.Dataset
        Every result's parameters with components in the first result's order.
    permutations : dict of str to numpy.ndarray, or None
        ``permutations[name][k]``: the component of ``name`` matched to component ``k``
        of the first result (``None`` when the numbers of components differ).
    ci_prob : float
    """

    def __init__(
        self,
        *,
        parameters: pd.DataFrame,
        fits: pd.DataFrame,
        agreement: pd.DataFrame,
        notes: tuple[str, ...],
        names: tuple[str, ...],
        results: tuple[MixtureResult, ...],
        posteriors: dict[str, xr.Dataset],
        permutations: dict[str, np.ndarray] | None,
        ci_prob: float,
        n_obs: int,
    ) -> None:
        self.parameters = parameters
        self.fits = fits
        self.agreement = agreement
        self.notes = notes
        self.names = names
        self.results = results
        self.posteriors = posteriors
        self.permutations = permutations
        self.ci_prob = ci_prob
        self.n_obs = n_obs

    # -- which fits are which ---------------------------------------------------------
    @property
    def point_fits(self) -> tuple[str, ...]:
        """Names of the point-estimate results (one draw: EM, MAP)."""
        return tuple(n for n, r in zip(self.names, self.results, strict=True) if r.n_draws == 1)

    @property
    def bayes_fits(self) -> tuple[str, ...]:
        """Names of the results with posterior (or variational) draws."""
        return tuple(n for n, r in zip(self.names, self.results, strict=True) if r.n_draws > 1)

    @property
    def outside(self) -> pd.Series:
        """Per parameter, whether some point estimate lies outside some credible interval."""
        flags = [c for c in self.parameters.columns if c[1].endswith(" inside")]
        if not flags:
            return pd.Series(False, index=self.parameters.index, name="outside")
        inside = self.parameters[flags].astype("boolean")
        return (~inside).fillna(False).any(axis=1).astype(bool).rename("outside")

    def plot(self, **kwargs: Any) -> Figure:
        """Forest plot of the parameters; see :func:`bayesmix.viz.compare.plot_comparison`."""
        from bayesmix.viz.compare import plot_comparison

        return plot_comparison(self, **kwargs)

    # -- display ----------------------------------------------------------------------
    def _header(self) -> str:
        parts = []
        for name, result in zip(self.names, self.results, strict=True):
            method = str(result.settings.get("method", type(result).__name__))
            sizes = result.posterior.sizes
            if result.n_draws == 1:
                detail = "point estimate"
            elif sizes["chain"] == 1:
                detail = f"{sizes['draw']} draws"
            else:
                detail = f"{sizes['chain']} chains x {sizes['draw']} draws"
            label = name if name == method else f"{name}: {method}"
            parts.append(f"{label} ({detail})")
        return (
            f"Comparison of {', '.join(parts)} on {self.n_obs} observations; "
            f"{_percent(self.ci_prob)} equal-tailed credible intervals"
        )

    def _display_parameters(self) -> tuple[pd.DataFrame, list[str]]:
        """Parameter cells as strings (``"mean [lo, hi]"``, ✓/✗) and the inside columns."""
        table = self.parameters
        cells: dict[str, list[str]] = {}
        flag_columns: list[str] = []
        for name in self.names:
            if (name, "estimate") in table.columns:
                cells[name] = [_fmt(v) for v in table[(name, "estimate")]]
                continue
            cells[name] = [
                _interval(m, lo, hi)
                for m, lo, hi in zip(
                    table[(name, "mean")],
                    table[(name, "lower")],
                    table[(name, "upper")],
                    strict=True,
                )
            ]
            for point in self.point_fits:
                column = f"{point} in {name}"
                cells[column] = [_mark(v) for v in table[(name, f"{point} inside")]]
                flag_columns.append(column)
        return pd.DataFrame(cells, index=table.index), flag_columns

    def _display_fits(self) -> pd.DataFrame:
        fits = self.fits
        return pd.DataFrame(
            {
                "method": fits["method"],
                "K": fits["n_components"].astype(str),
                **({} if set(fits["family"]) == {"gaussian"} else {"family": fits["family"]}),
                "covariance": fits["covariance_type"].replace("", "—"),
                "draws": fits["n_draws"].astype(str),
                "lpd": [f"{v:.2f}" for v in fits["lpd"]],
                "lpd / obs": [f"{v:.4f}" for v in fits["lpd_per_obs"]],
                f"ARI vs {self.names[0]}": [f"{v:.3f}" for v in fits["ari"]],
                "time (s)": [_fmt(v, 3) for v in fits["fit_seconds"]],
            },
            index=fits.index,
        )

    def __repr__(self) -> str:
        lines = [self._header(), ""]
        if len(self.parameters):
            shown, _ = self._display_parameters()
            lines += ["parameters:", shown.to_string(), ""]
        lines += ["fits:", self._display_fits().to_string()]
        if len(self.names) > 2:
            agreement = self.agreement.map(lambda v: f"{v:.3f}")
            lines += ["", "assignment agreement (adjusted Rand index):", agreement.to_string()]
        if self.notes:
            lines += ["", "notes:"] + [f"  - {note}" for note in self.notes]
        return "\n".join(lines)

    def _repr_html_(self) -> str:
        parts = [
            '<div class="bayesmix-comparison">',
            f"<p><b>{html.escape(self._header())}</b></p>",
        ]
        if len(self.parameters):
            shown, flags = self._display_parameters()
            outside = self.outside.to_numpy()
            parts.append(_html_table(shown, row_highlight=outside, flag_columns=flags))
            if outside.any():
                parts.append(
                    '<p style="font-size:smaller">Highlighted rows: a point estimate lies '
                    "outside a credible interval.</p>"
                )
        parts.append("<p><b>Fits</b></p>")
        parts.append(_html_table(self._display_fits()))
        if len(self.names) > 2:
            parts.append("<p><b>Assignment agreement</b> (adjusted Rand index)</p>")
            parts.append(_html_table(self.agreement.map(lambda v: f"{v:.3f}")))
        if self.notes:
            items = "".join(f"<li>{html.escape(n)}</li>" for n in self.notes)
            parts.append(f'<ul style="font-size:smaller">{items}</ul>')
        parts.append("</div>")
        return "\n".join(parts)


# -- validation ---------------------------------------------------------------------------
def _check_results(results: tuple[Any, ...]) -> tuple[MixtureResult, ...]:
    if len(results) == 1 and isinstance(results[0], (list, tuple)):
        raise TypeError(
            "compare takes the results as separate arguments: compare(em, nuts, X=X); "
            "unpack a list with compare(*fits, X=X)."
        )
    for i, result in enumerate(results):
        if not isinstance(result, MixtureResult):
            raise TypeError(
                f"results[{i}] is a {type(result).__name__}, not a fitted bayesmix result; "
                "pass the objects returned by GaussianMixture.fit(X, method=...) or "
                "Mixture.fit(X, method=...)."
            )
    if len(results) < 2:
        raise ValueError(
            f"compare needs at least two results, e.g. compare(em, nuts, X=X); got {len(results)}."
        )
    reference = results[0].feature_names
    for i, result in enumerate(results[1:], start=1):
        if result.feature_names != reference:
            raise ValueError(
                f"results[{i}] was fitted on features {list(result.feature_names)} but "
                f"results[0] on {list(reference)}; compare fits of the same features."
            )
    return results


def _check_names(names: Any, results: tuple[MixtureResult, ...]) -> list[str]:
    if names is None:
        methods = [str(r.settings.get("method", type(r).__name__)) for r in results]
        out = []
        for i, method in enumerate(methods):
            repeated = methods.count(method) > 1
            out.append(f"{method}_{methods[: i + 1].count(method)}" if repeated else method)
        return out
    if isinstance(names, str) or not isinstance(names, Sequence):
        raise TypeError(
            f"names must be a list of strings, one per result; got {type(names).__name__}."
        )
    names = list(names)
    if len(names) != len(results):
        raise ValueError(
            f"names has {len(names)} entries but {len(results)} results were given; "
            "pass one name per result."
        )
    if not all(isinstance(n, str) and n for n in names):
        raise TypeError(f"names must be non-empty strings; got {names!r}.")
    if len(set(names)) != len(names):
        raise ValueError(f"names must be unique; got {names!r}.")
    return names


def _check_X(X: Any, results: tuple[MixtureResult, ...]):
    reference = results[0]
    data = reference.check_data(X)
    expected = reference.feature_names
    default = tuple(f"x{i}" for i in range(reference.n_features))
    if isinstance(X, pd.DataFrame) and expected != default and data.feature_names != expected:
        hint = (
            f" Reorder the columns: X[{list(expected)}]."
            if sorted(data.feature_names) == sorted(expected)
            else ""
        )
        raise ValueError(
            f"X has columns {list(data.feature_names)} but the results were fitted on "
            f"{list(expected)}.{hint}"
        )
    for result in results[1:]:  # the family's support: counts for count families
        result.model.check_values(data.values, data.feature_names, "X")
    return data


# -- making the results comparable ----------------------------------------------------------
def _resolve_labels(
    results: tuple[MixtureResult, ...], names: list[str], notes: list[str]
) -> tuple[MixtureResult, ...]:
    """Relabel Bayesian results whose diagnostics report label switching; record the
    remaining diagnostics (of the relabelled draws) in the notes."""
    from bayesmix.results.posterior import BayesResult

    out = []
    for name, result in zip(names, results, strict=True):
        if isinstance(result, BayesResult) and result.model.n_components > 1:
            problems = result.diagnose()
            if any(issubclass(category, LabelSwitchingWarning) for _, category in problems):
                result = result.relabel()
                notes.append(
                    f"{name}: label switching between chains; relabelled with Stephens' "
                    "algorithm (result.relabel()) before comparing."
                )
                problems = result.diagnose()  # r_hat and ESS of the relabelled draws
            notes.extend(
                f"{name}: {message}"
                for message, category in problems
                if not issubclass(category, LabelSwitchingWarning)
            )
        out.append(result)
    return tuple(out)


def _match_components(
    reference: MixtureResult, result: MixtureResult, scale: np.ndarray
) -> np.ndarray:
    """``perm[k]``: the component of ``result`` matched to component ``k`` of
    ``reference`` (Hungarian algorithm on the standardised posterior mean of the
    component means ``E[x | k]``, which every family defines)."""
    ref = reference.model.component_means(reference.posterior).mean(axis=(0, 1)) / scale
    other = result.model.component_means(result.posterior).mean(axis=(0, 1)) / scale
    cost = ((ref[:, None, :] - other[None, :, :]) ** 2).sum(axis=-1)
    rows, cols = linear_sum_assignment(cost)
    perm = np.empty(ref.shape[0], dtype=np.intp)
    perm[rows] = cols
    return perm


def _permute(posterior: xr.Dataset, perm: np.ndarray) -> xr.Dataset:
    return posterior.isel(component=perm).assign_coords(component=np.arange(perm.size))


# -- the tables ---------------------------------------------------------------------------
def _rows(results: tuple[MixtureResult, ...], features: tuple[str, ...]) -> list[_Row]:
    """Scalar parameters shown for these results, without the redundant ones of a shared
    structure (one std per spherical component, one set of stds and correlations when
    every result is tied)."""
    structures = [r.model.structure for r in results]
    n_components = results[0].model.n_components
    n_features = len(features)
    all_tied = all(s.shared_across_components for s in structures)
    rows = [_Row(f"weights[{k}]", "weights", k, 0, 0) for k in range(n_components)]
    rows += [
        _Row(f"means[{k}, {f}]", "means", k, d, 0)
        for k in range(n_components)
        for d, f in enumerate(features)
    ]
    if all(s.natural_dims == ("component",) for s in structures):  # one std per component
        rows += [_Row(f"stds[{k}]", "stds", k, 0, 0) for k in range(n_components)]
    elif all_tied:
        rows += [_Row(f"stds[{f}]", "stds", 0, d, 0) for d, f in enumerate(features)]
    else:
        rows += [
            _Row(f"stds[{k}, {f}]", "stds", k, d, 0)
            for k in range(n_components)
            for d, f in enumerate(features)
        ]
    if not all(s.axis_aligned for s in structures) and n_features > 1:
        pairs = [(i, j) for i in range(n_features) for j in range(i + 1, n_features)]
        components = [None] if all_tied else range(n_components)
        for k in components:
            prefix = "" if k is None else f"{k}, "
            rows += [
                _Row(
                    f"correlations[{prefix}{features[i]}, {features[j]}]",
                    "correlations",
                    0 if k is None else k,
                    i,
                    j,
                )
                for i, j in pairs
            ]
    return rows


def _row_draws(
    posterior: xr.Dataset, structure: CovarianceStructure, rows: list[_Row]
) -> np.ndarray:
    """Values of every row for every draw, shape ``(n_draws, n_rows)`` (NaN where the
    structure fixes the parameter)."""
    flat = {
        name: posterior[name].stack(sample=("chain", "draw")).transpose("sample", ...).values
        for name in ("weights", "means", "stds", "correlations")
    }
    n_draws = flat["weights"].shape[0]
    out = np.full((n_draws, len(rows)), np.nan)
    fixed = structure.axis_aligned  # no correlations
    for variable in ("weights", "means", "stds", "correlations"):
        index = [i for i, row in enumerate(rows) if row.variable == variable]
        if not index or (variable == "correlations" and fixed):
            continue
        k = np.array([rows[i].component for i in index])
        d = np.array([rows[i].feature for i in index])
        if variable == "weights":
            out[:, index] = flat[variable][:, k]
        elif variable == "correlations":
            e = np.array([rows[i].feature_ for i in index])
            out[:, index] = flat[variable][:, k, d, e]
        else:
            out[:, index] = flat[variable][:, k, d]
    return out


def _family_rows(
    results: tuple[MixtureResult, ...], names: list[str], posteriors: dict[str, xr.Dataset]
) -> tuple[list[str], dict[str, np.ndarray]]:
    """Rows of results of any family: every result's identified parameters under the
    family's names (as its ``summary()`` labels them), the union over the results in the
    order first met, NaN where a result's family lacks a row's parameter.

    Returns
    -------
    labels : list of str
    draws : dict of str to numpy.ndarray
        Per result, its values of every row for every draw, ``(n_draws, n_rows)``.
    """
    own: dict[str, tuple[list[str], np.ndarray]] = {}
    for name, result in zip(names, results, strict=True):
        labels, values = parameter_draws(result.model.identified_parameters(posteriors[name]))
        own[name] = (labels, values.reshape(-1, len(labels)))
    # group rows by parameter name, the groups in the order first met
    groups: dict[str, list[str]] = {}
    for labels, _ in own.values():
        for label in labels:
            group = groups.setdefault(label.split("[")[0], [])
            if label not in group:
                group.append(label)
    rows = [label for group in groups.values() for label in group]
    position = {label: i for i, label in enumerate(rows)}
    draws = {}
    for name, (labels, values) in own.items():
        out = np.full((values.shape[0], len(rows)), np.nan)
        out[:, [position[label] for label in labels]] = values
        draws[name] = out
    return rows, draws


def _parameter_table(
    results: tuple[MixtureResult, ...],
    names: list[str],
    draws: dict[str, np.ndarray],
    labels: list[str],
    ci_prob: float,
) -> pd.DataFrame:
    index = pd.Index(labels, name="parameter", dtype=object)
    columns: dict[tuple[str, str], Any] = {}
    points = {}
    for name, result in zip(names, results, strict=True):
        if result.n_draws == 1:
            values = draws[name][0]
            columns[(name, "estimate")] = values
            points[name] = values
    tail = (1.0 - ci_prob) / 2.0
    for name, result in zip(names, results, strict=True):
        if result.n_draws == 1:
            continue
        values = draws[name]
        with np.errstate(invalid="ignore"):
            lower, upper = np.quantile(values, [tail, 1.0 - tail], axis=0)
        columns[(name, "mean")] = values.mean(axis=0)
        columns[(name, "lower")] = lower
        columns[(name, "upper")] = upper
        for point, estimate in points.items():
            inside = pd.array((lower <= estimate) & (estimate <= upper), dtype="boolean")
            inside[np.isnan(estimate) | np.isnan(lower)] = pd.NA
            columns[(name, f"{point} inside")] = inside
    table = pd.DataFrame(columns, index=index)
    table.columns = pd.MultiIndex.from_tuples(list(columns), names=["fit", "statistic"])
    return table


def _fit_table(
    results: tuple[MixtureResult, ...],
    names: list[str],
    data: Data,
    agreement: pd.DataFrame,
) -> pd.DataFrame:
    lpd = np.array([r.score_samples(data).sum() for r in results])
    return pd.DataFrame(
        {
            "method": [str(r.settings.get("method", type(r).__name__)) for r in results],
            "n_components": [r.model.n_components for r in results],
            "family": [_family(r) for r in results],
            "covariance_type": [_covariance_type(r) for r in results],
            "n_draws": [r.n_draws for r in results],
            "lpd": lpd,
            "lpd_per_obs": lpd / data.n_obs,
            "ari": agreement.iloc[0].to_numpy(),
            "fit_seconds": [float(r.settings.get("fit_seconds", np.nan)) for r in results],
        },
        index=pd.Index(names, name="fit"),
    )


def _is_gaussian(result: MixtureResult) -> bool:
    return isinstance(result.model, GaussianMixture)


def _family(result: MixtureResult) -> str:
    """The component family's name (``"gaussian"``, ``"poisson"``, ...)."""
    return "gaussian" if _is_gaussian(result) else str(result.model.family.name)


def _covariance_type(result: MixtureResult) -> str:
    """The covariance structure (Gaussian and Student-t); empty for count families."""
    if _is_gaussian(result):
        return str(result.model.covariance_type)
    return str(getattr(result.model.family, "covariance_type", ""))


# -- formatting ---------------------------------------------------------------------------
def _percent(prob: float) -> str:
    return f"{100 * prob:.4g}%"


def _fmt(value: float, digits: int = 4) -> str:
    return "—" if value is None or not np.isfinite(value) else f"{value:.{digits}g}"


def _interval(mean: float, lower: float, upper: float) -> str:
    if not np.isfinite(mean):
        return "—"
    return f"{_fmt(mean)} [{_fmt(lower)}, {_fmt(upper)}]"


def _mark(flag: Any) -> str:
    if flag is pd.NA or flag is None:
        return ""
    return "✓" if bool(flag) else "✗"


_CELL = "padding:2px 8px;border-bottom:1px solid #ddd;"
_HIGHLIGHT = "background-color:#fde2e1;"


def _html_table(
    table: pd.DataFrame,
    row_highlight: np.ndarray | None = None,
    flag_columns: Sequence[str] = (),
) -> str:
    """A plain HTML table (no pandas Styler, which needs jinja2) with highlighted rows and
    coloured ✓/✗ marks."""
    head = "".join(
        f'<th style="{_CELL}text-align:center">{html.escape(str(c))}</th>' for c in table.columns
    )
    index_name = html.escape(str(table.index.name or ""))
    body = []
    for i, (label, row) in enumerate(table.iterrows()):
        style = _HIGHLIGHT if row_highlight is not None and row_highlight[i] else ""
        cells = [f'<th style="{_CELL}text-align:left">{html.escape(str(label))}</th>']
        for column, value in row.items():
            text = html.escape(str(value))
            colour = ""
            if column in flag_columns and value:
                colour = "color:#2e7d32;" if value == "✓" else "color:#c62828;font-weight:bold;"
            align = "center" if column in flag_columns else "right"
            cells.append(f'<td style="{_CELL}text-align:{align};{colour}">{text}</td>')
        body.append(f'<tr style="{style}">{"".join(cells)}</tr>')
    return (
        '<table style="border-collapse:collapse;font-family:monospace,monospace">'
        f'<thead><tr><th style="{_CELL}text-align:left">{index_name}</th>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )
