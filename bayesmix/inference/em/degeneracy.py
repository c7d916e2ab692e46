"""Plain-language warnings when a maximum-likelihood fit ends on degenerate data.

A maximum-likelihood M-step sets each covariance to the component's scatter plus
``reg_covar`` on the diagonal. Where the scatter has no spread in some direction, the
covariance there is ``reg_covar`` alone: the parameters stay finite, but that direction of
the fit reflects ``reg_covar`` rather than the data. This module finds such directions and
says which observations or features caused them.
"""

from __future__ import annotations

import warnings

import numpy as np

from bayesmix.exceptions import DegenerateComponentWarning
from bayesmix.families.gaussian.covariance import CovarianceStructure, variance_rounding
from bayesmix.families.gaussian.stats import Params

__all__ = [
    "CollapseJudge",
    "collapse_reasons",
    "degeneracy_messages",
    "feature_resolution",
    "warn_degenerate",
]

# Features are judged on their own scale. A feature is constant when its variance is within
# rounding of zero for values of its size and of reg_covar (the scatter is the covariance
# minus reg_covar). A direction has no spread when its variance, in units of each feature's
# standard deviation (a scale-free, correlation-like matrix), is below RELATIVE_SPREAD plus
# the rounding of that direction.
RELATIVE_SPREAD = 1e-9
# A fitted spread below this fraction of the standard deviation of rounding to the data's
# resolution (h / sqrt(12)) marks a collapsed component: iris, recorded to 0.1 cm, has
# rounding sd 0.029 and mclust's thinnest component there sd 0.015; its spurious maxima
# reach 0.001 (reg_covar alone).
RESOLUTION_SD = 0.3
# feature_resolution looks at no more rows than this
RESOLUTION_ROWS = 100_000
# A null direction within this angle of a feature axis is reported as that feature.
AXIS_ALIGNMENT = 0.99


def degeneracy_messages(
    params: Params,
    structure: CovarianceStructure,
    reg_covar: float,
    feature_names: tuple[str, ...],
    n_obs: float,
    regularisation: np.ndarray | float | None = None,
    floor_name: str | None = None,
) -> list[str]:
    """Messages naming each degenerate direction of a maximum-likelihood fit.

    Parameters
    ----------
    params : Params
        The fitted parameters in data units.
    structure : CovarianceStructure
        The covariance structure that was fitted.
    reg_covar : float
        The regularisation the M-step added to the covariance diagonals.
    feature_names : tuple of str
        Names of the features, used in the messages.
    n_obs : float
        Total (weighted) number of observations.
    regularisation : numpy.ndarray or float, optional
        What the M-step added to each feature's variance (``(D,)``); default
        ``reg_covar``.
    floor_name : str, optional
        How the messages name that addition when it is not a ``reg_covar`` the user
        can raise (:class:`~bayesmix.families.Normal`'s variance floor); default
        ``"reg_covar=<value>"``, with the advice to raise it.

    Returns
    -------
    list of str
        One message per problem found; empty when the fit is not degenerate.
    """
    n_components, n_features = params.means.shape
    floor_text = f"reg_covar={reg_covar:g}" if floor_name is None else floor_name
    raise_hint = "raise reg_covar, " if floor_name is None else ""
    added = structure.representable_variances(
        reg_covar if regularisation is None else regularisation, n_features
    )
    covariances = structure.to_full(params.covariances, n_components, n_features)
    scatter = covariances - np.diag(added)
    within = np.einsum("k,kdd->d", params.weights, scatter)
    data_variance = _mixture_variance(params.weights, params.means, within)
    if np.all(data_variance <= added):
        return [
            f"the spread of X (largest feature variance {data_variance.max():.3g}) is not above "
            f"reg_covar={reg_covar:g}, so the covariances reflect reg_covar rather than the "
            "data; standardise the columns of X or lower reg_covar."
        ]
    floor = variance_rounding(_mixture_mean(params), added)
    constant = np.flatnonzero(data_variance <= floor)
    scatter, relative_floor = _standardised(scatter, data_variance, floor)
    messages = []
    if constant.size:
        messages.append(
            f"feature {_names(feature_names, constant)} is constant in X, so every covariance "
            f"is {floor_text} along it; drop the feature or fit with priors "
            "(method='map')."
        )
    values, vectors = np.linalg.eigh(scatter)
    # an eigenvalue's rounding: each feature's relative floor, weighted by the direction
    thresholds = RELATIVE_SPREAD + np.einsum("...dj,d->...j", vectors**2, relative_floor)
    shared = structure.shared_across_components
    for k in range(structure.n_covariances(n_components)):
        null = values[k] <= thresholds[k]
        if not null.any():
            continue
        components = "all components" if shared else f"component {k}"
        mass = n_obs if shared else params.weights[k] * n_obs
        if null.all():
            where = (
                "all components sit on identical points (the observations of each component "
                "are identical)"
                if shared
                else f"component {k} sits on identical points (about {mass:.0f} observations "
                f"at {np.array2string(params.means[k], precision=4, separator=', ')})"
            )
            messages.append(
                f"{where}: the covariance is only {floor_text} and the likelihood "
                f"is unbounded. Remove duplicated rows, use fewer components, {raise_hint}"
                "or fit with priors (method='map')."
            )
            continue
        if mass < n_features + 1:
            messages.append(
                f"{components} has about {mass:.1f} observations for {n_features} features, "
                f"too few to estimate its covariance, which is singular up to "
                f"{floor_text}. Use fewer components, covariance_type='diag', "
                "'spherical' or 'tied', or fit with priors (method='map')."
            )
            continue
        axes = np.abs(vectors[k][:, null])
        aligned = np.flatnonzero((axes >= AXIS_ALIGNMENT).any(axis=1))
        aligned = np.setdiff1d(aligned, constant)
        involved = np.flatnonzero((axes > 1e-3).any(axis=1))
        if aligned.size:
            messages.append(
                f"feature {_names(feature_names, aligned)} is constant within {components} "
                f"(about {mass:.0f} observations): its variance there is only "
                f"{floor_text}. Use fewer components, {raise_hint}or fit with "
                "priors (method='map')."
            )
        elif not np.isin(involved, constant).all():
            messages.append(
                f"features {_names(feature_names, involved)} are collinear within {components} "
                f"(about {mass:.0f} observations lie on a lower-dimensional subspace), so its "
                f"covariance is singular up to {floor_text}. Drop a redundant "
                f"feature, {raise_hint}or fit with priors (method='map')."
            )
    return messages


def warn_degenerate(
    params: Params,
    structure: CovarianceStructure,
    reg_covar: float,
    feature_names: tuple[str, ...],
    n_obs: float,
    regularisation: np.ndarray | float | None = None,
) -> None:
    """Issue a :class:`~bayesmix.DegenerateComponentWarning` per problem found by
    :func:`degeneracy_messages`."""
    messages = degeneracy_messages(
        params, structure, reg_covar, feature_names, n_obs, regularisation
    )
    for message in messages:
        warnings.warn(message, DegenerateComponentWarning, stacklevel=5)


def feature_resolution(X: np.ndarray, sample_weight: np.ndarray) -> np.ndarray:
    """Each feature's resolution: the smallest positive gap between its distinct values
    (among rows of positive weight, on at most ``RESOLUTION_ROWS`` evenly spaced rows).

    Data recorded to 0.1 cm have resolution 0.1; continuous data have a tiny one. A
    feature with a single value has resolution 0.
    """
    rows = X[sample_weight > 0]
    step = max(1, -(-rows.shape[0] // RESOLUTION_ROWS))
    values = np.sort(rows[::step], axis=0)
    gaps = np.diff(values, axis=0)
    gaps = np.where(gaps > 0, gaps, np.inf)
    resolution = gaps.min(axis=0) if gaps.shape[0] else np.full(X.shape[1], np.inf)
    return np.where(np.isfinite(resolution), resolution, 0.0)


def collapse_reasons(
    params: Params,
    structure: CovarianceStructure,
    regularisation: np.ndarray | float,
    resolution: np.ndarray,
    n_obs: float,
) -> list[str]:
    """Why a fit is a spurious maximum of the likelihood; empty when it is not.

    The Gaussian likelihood is unbounded: a component that shrinks onto a few points, or
    onto a line or plane that rounded data happen to fill, raises it without limit. Such
    a component is *collapsed* here when

    - it has fewer effective observations (summed responsibilities) than its covariance
      needs: features + 1 for a full covariance (fewer cannot span the space), 2 for a
      diagonal or spherical one (one point has no spread), or
    - its variance in some direction, less the regularisation, is below what the data's
      resolution supports: ``RESOLUTION_SD**2`` times the variance of rounding to the
      resolution ``h`` (``h**2 / 12`` per feature, combined along the direction), or
      ``RELATIVE_SPREAD`` times the feature variances where the data are continuous.

    Parameters
    ----------
    params : Params
        Fitted parameters (means may be in shifted units: only spreads are read).
    structure : CovarianceStructure
        The fitted covariance structure.
    regularisation : numpy.ndarray or float
        What the M-step added to each feature's variance.
    resolution : numpy.ndarray
        Each feature's resolution (:func:`feature_resolution`).
    n_obs : float
        Total (weighted) number of observations.

    Returns
    -------
    list of str
        One reason per collapsed component.
    """
    return CollapseJudge(structure, regularisation, resolution, n_obs)(params)


class CollapseJudge:
    """:func:`collapse_reasons` for the fits of one structure to one data set: called
    with the parameters (``judge(params)``), it returns their reasons, with what depends
    only on the data and the structure (the regularisation as the structure represents
    it, the resolution's floor) computed once; EM judges a fit's runs many times."""

    def __init__(
        self,
        structure: CovarianceStructure,
        regularisation: np.ndarray | float,
        resolution: np.ndarray,
        n_obs: float,
    ) -> None:
        self.structure = structure
        self.regularisation = regularisation
        self.n_obs = n_obs
        self.resolution_floor = RESOLUTION_SD**2 * np.square(resolution) / 12.0
        # by number of features: the regularisation as represented, as a diagonal matrix,
        # and whether the structure represents per-feature variances by their mean
        self._added: dict[int, tuple[np.ndarray, np.ndarray, bool]] = {}

    def _represented(self, n_features: int) -> tuple[np.ndarray, np.ndarray, bool]:
        known = self._added.get(n_features)
        if known is None:
            structure = self.structure
            added = structure.representable_variances(self.regularisation, n_features)
            probe = np.arange(1.0, n_features + 1.0)
            averages = not np.array_equal(
                structure.representable_variances(probe, n_features), probe
            )
            known = self._added[n_features] = (added, np.diag(added), averages)
        return known

    def __call__(self, params: Params) -> list[str]:
        structure = self.structure
        weights = params.weights
        n_components, n_features = params.means.shape
        added, added_matrix, averages = self._represented(n_features)
        n_covariances = structure.n_covariances(n_components)
        if structure.axis_aligned:  # diagonal matrices: their eigenvalues are the variances
            scatter = _component_variances(structure, params.covariances, n_components, n_features)
            scatter = scatter - added
            within = np.einsum("k,kd->d", weights, scatter)
        else:
            covariances = structure.to_full(params.covariances, n_components, n_features)
            scatter = np.asarray(covariances) - added_matrix
            within = np.einsum("k,kdd->d", weights, scatter)
        data_variance = _mixture_variance(weights, params.means, within)
        floor = np.maximum(self.resolution_floor, RELATIVE_SPREAD * data_variance)
        if averages:  # else representable_variances(floor) is floor itself
            floor = structure.representable_variances(floor, n_features)
        if structure.axis_aligned:
            values = scatter[:n_covariances]
            thresholds = floor  # the same for every covariance
            thin = (values < floor).any(axis=1)
        else:  # a shared covariance: one eigen-decomposition
            values, vectors = np.linalg.eigh(scatter[:n_covariances])
            thresholds = np.einsum("kdj,d->kj", vectors**2, floor)
            thin = (values < thresholds).any(axis=1)
        mass = weights * self.n_obs
        least = structure.min_observations(n_features)  # observations a spread needs
        shared = structure.shared_across_components  # a shared covariance pools all observations
        if shared:
            flagged = thin
        else:
            few = mass < least
            flagged = thin | few
        if not flagged.any():
            return []
        if shared:
            few = np.zeros(n_covariances, dtype=bool)
        thresholds = np.broadcast_to(thresholds, values.shape)
        reasons = []
        for k in np.flatnonzero(flagged).tolist():
            who = "the shared covariance" if shared else f"component {k}"
            if few[k]:
                reasons.append(
                    f"{who} has {mass[k]:.1f} effective observations, fewer than the {least} "
                    f"its covariance needs"
                )
            else:
                j = int(np.argmin(values[k] - thresholds[k]))
                reasons.append(
                    f"{who} has standard deviation {np.sqrt(max(values[k, j], 0.0)):.3g} "
                    f"along a direction where the data's resolution supports no less than "
                    f"{np.sqrt(thresholds[k, j]):.3g}"
                )
        return reasons


def _component_variances(
    structure: CovarianceStructure, covariances: np.ndarray, n_components: int, n_features: int
) -> np.ndarray:
    """The diagonals ``(K, D)`` of an axis-aligned structure's covariances (stored per
    component or shared, per feature or one for all features)."""
    variances = np.asarray(covariances, dtype=float)
    if variances.shape == (n_components, n_features):  # stored per component and feature
        return variances
    if "component" not in structure.natural_dims:
        variances = variances[None]
    if "feature" not in structure.natural_dims:
        variances = variances[..., None]
    return np.broadcast_to(variances, (n_components, n_features))


def _mixture_mean(params: Params) -> np.ndarray:
    return params.weights @ params.means


def _standardised(
    scatter: np.ndarray, data_variance: np.ndarray, floor: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The scatter in units of each feature's standard deviation in X (constant features
    keep unit scale), and each feature's rounding floor in those units."""
    scale = np.sqrt(np.where(data_variance > floor, data_variance, 1.0))
    return scatter / np.multiply.outer(scale, scale), floor / scale**2


def _mixture_variance(weights: np.ndarray, means: np.ndarray, within: np.ndarray) -> np.ndarray:
    """Per-feature variance of the fitted mixture without ``reg_covar`` (the data's), from
    ``within``, the weighted mean of the components' variances less ``reg_covar``."""
    centre = weights @ means
    between = weights @ (means - centre) ** 2
    return np.maximum(within + between, 0.0)


def _names(feature_names: tuple[str, ...], index: np.ndarray) -> str:
    return ", ".join(repr(feature_names[i]) for i in index)
