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

from bayesmix.covariance import CovarianceStructure, variance_rounding
from bayesmix.em.stats import Params
from bayesmix.exceptions import DegenerateComponentWarning

__all__ = ["degeneracy_messages", "warn_degenerate"]

# Features are judged on their own scale. A feature is constant when its variance is within
# rounding of zero for values of its size and of reg_covar (the scatter is the covariance
# minus reg_covar). A direction has no spread when its variance, in units of each feature's
# standard deviation (a scale-free, correlation-like matrix), is below RELATIVE_SPREAD plus
# the rounding of that direction.
RELATIVE_SPREAD = 1e-9
# A null direction within this angle of a feature axis is reported as that feature.
AXIS_ALIGNMENT = 0.99


def degeneracy_messages(
    params: Params,
    structure: CovarianceStructure,
    reg_covar: float,
    feature_names: tuple[str, ...],
    n_obs: float,
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

    Returns
    -------
    list of str
        One message per problem found; empty when the fit is not degenerate.
    """
    n_components, n_features = params.means.shape
    covariances = structure.to_full(params.covariances, n_components, n_features)
    scatter = covariances - reg_covar * np.eye(n_features)
    data_variance = _mixture_variance(params.weights, params.means, scatter)
    if data_variance.max() <= reg_covar:
        return [
            f"the spread of X (largest feature variance {data_variance.max():.3g}) is not above "
            f"reg_covar={reg_covar:g}, so the covariances reflect reg_covar rather than the "
            "data; standardise the columns of X or lower reg_covar."
        ]
    floor = variance_rounding(_mixture_mean(params), reg_covar)
    constant = np.flatnonzero(data_variance <= floor)
    scatter, relative_floor = _standardised(scatter, data_variance, floor)
    messages = []
    if constant.size:
        messages.append(
            f"feature {_names(feature_names, constant)} is constant in X, so every covariance "
            f"is reg_covar={reg_covar:g} along it; drop the feature or fit with priors "
            "(method='map')."
        )
    values, vectors = np.linalg.eigh(scatter)
    # an eigenvalue's rounding: each feature's relative floor, weighted by the direction
    thresholds = RELATIVE_SPREAD + np.einsum("...dj,d->...j", vectors**2, relative_floor)
    for k in range(values.shape[0] if structure.name != "tied" else 1):
        null = values[k] <= thresholds[k]
        if not null.any():
            continue
        components = "all components" if structure.name == "tied" else f"component {k}"
        mass = params.weights[k] * n_obs if structure.name != "tied" else n_obs
        if null.all():
            where = (
                "all components sit on identical points (the observations of each component "
                "are identical)"
                if structure.name == "tied"
                else f"component {k} sits on identical points (about {mass:.0f} observations "
                f"at {np.array2string(params.means[k], precision=4, separator=', ')})"
            )
            messages.append(
                f"{where}: the covariance is only reg_covar={reg_covar:g} and the likelihood "
                "is unbounded. Remove duplicated rows, use fewer components, raise reg_covar, "
                "or fit with priors (method='map')."
            )
            continue
        if mass < n_features + 1:
            messages.append(
                f"{components} has about {mass:.1f} observations for {n_features} features, "
                f"too few to estimate its covariance, which is singular up to "
                f"reg_covar={reg_covar:g}. Use fewer components, covariance_type='diag', "
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
                f"reg_covar={reg_covar:g}. Use fewer components, raise reg_covar, or fit with "
                "priors (method='map')."
            )
        elif not np.isin(involved, constant).all():
            messages.append(
                f"features {_names(feature_names, involved)} are collinear within {components} "
                f"(about {mass:.0f} observations lie on a lower-dimensional subspace), so its "
                f"covariance is singular up to reg_covar={reg_covar:g}. Drop a redundant "
                "feature, raise reg_covar, or fit with priors (method='map')."
            )
    return messages


def warn_degenerate(
    params: Params,
    structure: CovarianceStructure,
    reg_covar: float,
    feature_names: tuple[str, ...],
    n_obs: float,
) -> None:
    """Issue a :class:`~bayesmix.DegenerateComponentWarning` per problem found by
    :func:`degeneracy_messages`."""
    for message in degeneracy_messages(params, structure, reg_covar, feature_names, n_obs):
        warnings.warn(message, DegenerateComponentWarning, stacklevel=5)


def _mixture_mean(params: Params) -> np.ndarray:
    return params.weights @ params.means


def _standardised(
    scatter: np.ndarray, data_variance: np.ndarray, floor: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The scatter in units of each feature's standard deviation in X (constant features
    keep unit scale), and each feature's rounding floor in those units."""
    scale = np.sqrt(np.where(data_variance > floor, data_variance, 1.0))
    return scatter / np.multiply.outer(scale, scale), floor / scale**2


def _mixture_variance(weights: np.ndarray, means: np.ndarray, scatter: np.ndarray) -> np.ndarray:
    """Per-feature variance of the fitted mixture without ``reg_covar`` (the data's)."""
    centre = weights @ means
    within = np.einsum("k,kdd->d", weights, scatter)
    between = weights @ (means - centre) ** 2
    return np.maximum(within + between, 0.0)


def _names(feature_names: tuple[str, ...], index: np.ndarray) -> str:
    return ", ".join(repr(feature_names[i]) for i in index)
