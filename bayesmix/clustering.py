"""Clustering with uncertainty: memberships, co-clustering, point partitions, agreement."""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["adjusted_rand_index"]


def _labels(labels: Any, name: str) -> np.ndarray:
    """One cluster label per observation, as a 1-D array."""
    array = np.asarray(labels)
    if array.ndim != 1:
        raise ValueError(
            f"{name} must be 1-D (one label per observation); got shape {array.shape}."
        )
    if array.size == 0:
        raise ValueError(f"{name} is empty; pass one label per observation.")
    if array.dtype.kind == "f" and not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or inf; labels must be finite.")
    return array


def adjusted_rand_index(labels_a: Any, labels_b: Any) -> float:
    """Adjusted Rand index (Hubert & Arabie 1985) between two partitions.

    1 for identical partitions up to relabelling, about 0 for independent ones.

    Parameters
    ----------
    labels_a, labels_b : array-like of shape (n_obs,)
        Cluster labels of the same observations; label values need not match.

    Returns
    -------
    float
    """
    from sklearn.metrics import adjusted_rand_score

    a, b = _labels(labels_a, "labels_a"), _labels(labels_b, "labels_b")
    if a.shape != b.shape:
        raise ValueError(
            f"labels_a and labels_b must label the same observations; got {a.size} and {b.size}."
        )
    return float(adjusted_rand_score(a, b))
