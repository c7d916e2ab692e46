"""One component order for every backend of a declaration.

A mixture's likelihood does not change when its components are renumbered, so every
backend would number them differently. bayesmix numbers them by one rule, whatever the
method (EM, MAP, NUTS, ADVI) and wherever the result goes (attributes, summaries,
saved files, comparisons, plots, reports):

    component ``k`` has the ``k``-th smallest mean of the *order feature*.

The order feature is ``order_by`` when the fit names one; otherwise the feature along
which the fitted components are best separated (:func:`best_separated_feature`, from
the fit's own estimate for EM and MAP, from the MAP-EM start for NUTS and ADVI). Draws
of NUTS and ADVI fitted with ``identify="ordered"`` satisfy the rule draw by draw;
with ``identify="relabel"``, ``"none"`` or (NUTS) ``"direction"`` (the means'
projections on :func:`best_separating_direction` ordered in every draw) the components
are numbered by their posterior mean. An EM fit started from an explicit ``init``
mapping keeps the numbering of that start. ``result.settings["order_feature"]`` names
the feature used (and ``result.settings["order_direction"]`` the direction, if any).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from bayesmix.families.gaussian.stats import Params
from bayesmix.validation import check_int

if TYPE_CHECKING:
    import xarray as xr

__all__ = [
    "best_separated_feature",
    "separation",
    "best_separating_direction",
    "direction_rotation",
    "resolve_order_by",
    "component_order",
    "permute_params",
    "order_posterior",
]


def best_separated_feature(means: np.ndarray, covariances: np.ndarray) -> int:
    """The feature along which the components are best separated.

    The largest, over features, of the smallest gap between neighbouring sorted
    component means in units of the two components' standard deviations. Ordering the
    means of that feature identifies the components with the least distortion of the
    posterior.

    Parameters
    ----------
    means : numpy.ndarray of shape (K, D)
    covariances : numpy.ndarray of shape (K, D, D)
        Full covariance matrices.

    Returns
    -------
    int
        The feature's index (0 for a single component).
    """
    if means.shape[0] == 1:
        return 0
    sds = np.sqrt(np.diagonal(covariances, axis1=-2, axis2=-1))  # (K, D)
    order = np.argsort(means, axis=0, kind="stable")
    sorted_means = np.take_along_axis(means, order, axis=0)
    sorted_sds = np.take_along_axis(sds, order, axis=0)
    gaps = np.diff(sorted_means, axis=0) / (sorted_sds[1:] + sorted_sds[:-1])
    return int(np.argmax(gaps.min(axis=0)))


def separation(means: np.ndarray, covariances: np.ndarray, direction: np.ndarray) -> float:
    """How well the components are separated along ``direction``: the smallest gap
    between neighbouring sorted projected means, in units of the sum of the two
    components' projected standard deviations (the criterion of
    :func:`best_separated_feature`, for any direction).

    Parameters
    ----------
    means : numpy.ndarray of shape (K, D)
    covariances : numpy.ndarray of shape (K, D, D)
    direction : numpy.ndarray of shape (D,)

    Returns
    -------
    float
        ``inf`` for a single component.
    """
    if means.shape[0] == 1:
        return float("inf")
    projected = means @ direction
    sds = np.sqrt(np.maximum(np.einsum("d,kde,e->k", direction, covariances, direction), 0.0))
    order = np.argsort(projected, kind="stable")
    gaps = np.diff(projected[order]) / (sds[order][1:] + sds[order][:-1] + 1e-300)
    return float(gaps.min())


def best_separating_direction(
    means: np.ndarray, covariances: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """The direction along which the components are best separated, by
    :func:`separation`, among the features' axes, the discriminant directions of the
    components (eigenvectors of ``W^-1 B``, ``W`` the weighted within-component and ``B``
    the between-component covariance) and, for every pair of components, Fisher's
    direction ``(Sigma_i + Sigma_j)^-1 (mu_j - mu_i)``.

    Ordering the projections of the component means on it identifies the components
    where no single feature separates them all (e.g. two clusters that overlap in every
    feature but not in a combination of features). A feature's axis is kept unless
    another direction separates strictly better.

    Parameters
    ----------
    means : numpy.ndarray of shape (K, D)
    covariances : numpy.ndarray of shape (K, D, D)
        Full covariance matrices.
    weights : numpy.ndarray of shape (K,), optional
        Component weights (equal when not given).

    Returns
    -------
    numpy.ndarray of shape (D,)
        A unit vector in the data's units; an axis ``e_j`` when a feature is best.
    """
    K, D = means.shape
    axes = np.eye(D)
    if K == 1:
        return axes[0]
    weights = np.full(K, 1.0 / K) if weights is None else np.asarray(weights) / np.sum(weights)
    candidates = [axes[best_separated_feature(means, covariances)]]
    within = np.einsum("k,kde->de", weights, covariances)
    centred = means - weights @ means
    between = np.einsum("k,kd,ke->de", weights, centred, centred)
    ridge = 1e-9 * np.trace(within) / D * np.eye(D)
    try:
        values, vectors = np.linalg.eig(np.linalg.solve(within + ridge, between))
        order = np.argsort(-values.real)[: K - 1]
        candidates += list(vectors.real[:, order].T)
        for i in range(K):
            for j in range(i + 1, K):
                pooled = covariances[i] + covariances[j] + ridge
                candidates.append(np.linalg.solve(pooled, means[j] - means[i]))
    except np.linalg.LinAlgError:
        pass
    best, best_score = candidates[0], separation(means, covariances, candidates[0])
    for candidate in candidates[1:]:
        norm = np.linalg.norm(candidate)
        if not np.isfinite(norm) or norm == 0:
            continue
        score = separation(means, covariances, candidate / norm)
        if score > best_score * (1 + 1e-9):
            best, best_score = candidate / norm, score
    return best / np.linalg.norm(best)


def direction_rotation(direction: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """An orthogonal matrix ``R`` whose first column is ``scale * direction``,
    normalised: with means ``loc + scale * R z``, ordering ``z[:, 0]`` orders the
    projections ``direction @ mean`` (``R`` maps an isotropic prior on ``z`` onto the
    same prior on the standardised means, with log Jacobian 0).

    Parameters
    ----------
    direction : numpy.ndarray of shape (D,)
    scale : numpy.ndarray of shape (D,)
        The means' prior scales.

    Returns
    -------
    numpy.ndarray of shape (D, D)
        A Householder reflection (the identity when the direction is the first axis).
    """
    v = np.asarray(direction, dtype=float) * np.asarray(scale, dtype=float)
    v = v / np.linalg.norm(v)
    u = v.copy()
    u[0] -= 1.0
    norm2 = u @ u
    if norm2 < 1e-24:
        return np.eye(v.size)
    return np.eye(v.size) - 2.0 * np.outer(u, u) / norm2


def resolve_order_by(order_by: Any, feature_names: tuple[str, ...]) -> int | None:
    """The index of the feature ``order_by`` names (a feature name or index), or None.

    Raises
    ------
    ValueError
        If ``order_by`` is not one of the features.
    """
    if order_by is None:
        return None
    if isinstance(order_by, str):
        if order_by not in feature_names:
            raise ValueError(
                f"order_by={order_by!r} is not a feature; choose one of {list(feature_names)}."
            )
        return feature_names.index(order_by)
    index = check_int(order_by, "order_by", minimum=0)
    if index >= len(feature_names):
        raise ValueError(
            f"order_by={index} is out of range for {len(feature_names)} features; give an "
            f"index below {len(feature_names)} or a name from {list(feature_names)}."
        )
    return index


def component_order(means: np.ndarray, feature: int) -> np.ndarray:
    """``perm``: the component that becomes component ``k`` is ``perm[k]`` (ascending
    mean of ``feature``; ties keep their order)."""
    return np.argsort(means[:, feature], kind="stable")


def permute_params(params: Params, perm: np.ndarray, shared_covariance: bool) -> Params:
    """``params`` with component ``k`` taken from component ``perm[k]``; a shared
    (tied) covariance stays as it is."""
    covariances, factors = params.covariances, params.precisions_cholesky
    if not shared_covariance:
        covariances, factors = covariances[perm], factors[perm]
    return Params(params.weights[perm], params.means[perm], covariances, factors)


def order_posterior(
    posterior: xr.Dataset, feature: int, means: np.ndarray | None = None
) -> xr.Dataset:
    """Draws with components numbered by their posterior mean of ``feature``'s mean;
    ``means`` ``(K, D)``: the posterior mean component means, when the posterior has no
    ``means`` variable (count families' ``rates``)."""
    if means is None:
        means = posterior["means"].mean(("chain", "draw")).values
    perm = component_order(means, feature)
    if np.array_equal(perm, np.arange(perm.size)):
        return posterior
    return posterior.isel(component=perm).assign_coords(component=np.arange(perm.size))
