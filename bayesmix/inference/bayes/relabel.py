"""Label switching: Stephens' (2000) KL relabelling and a cross-chain diagnostic."""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

__all__ = ["stephens_permutations", "chain_permutations", "apply_permutations"]

_TINY = 1e-300


def _best_permutations(cost: np.ndarray) -> np.ndarray:
    """For each ``(K, K)`` cost matrix ``cost[s, k, j]`` (new label ``k`` <- old label
    ``j``), the permutation minimising the total cost, as ``perm[s, k] = j``."""
    perms = np.empty(cost.shape[:2], dtype=np.intp)
    for s in range(cost.shape[0]):
        rows, cols = linear_sum_assignment(cost[s])
        perms[s, rows] = cols
    return perms


def stephens_permutations(membership: np.ndarray, max_iter: int = 100) -> tuple[np.ndarray, int]:
    """Stephens' KL relabelling of membership probabilities.

    Finds per-draw permutations so that the permuted membership matrices are all close,
    in Kullback-Leibler divergence, to their average ``Q``: starting from ``Q`` = the
    first draw's memberships, alternately solve, per draw, the assignment problem with
    cost ``C[k, j] = -sum_n Q_nk log p_nj`` (Hungarian algorithm) and set ``Q`` to the
    mean of the relabelled matrices, until no label changes.

    Parameters
    ----------
    membership : numpy.ndarray of shape (S, N, K)
        ``p(z_n = k | x_n, theta_s)`` for every draw ``s``.
    max_iter : int
        Upper bound on the number of sweeps.

    Returns
    -------
    perms : numpy.ndarray of shape (S, K)
        ``perms[s, k]`` is the old label that becomes label ``k`` in draw ``s``.
    n_sweeps : int
        Sweeps until the permutations stopped changing.
    """
    log_p = np.log(np.maximum(membership, _TINY))
    # Start from the first draw as pivot: averaging unrelabelled draws would give a
    # near-uniform target with no labelling to pull towards.
    target = membership[0]
    perms = None
    for sweep in range(1, max_iter + 1):
        cost = -np.einsum("nk,snj->skj", target, log_p)
        new = _best_permutations(cost)
        if perms is not None and np.array_equal(new, perms):
            return perms, sweep
        perms = new
        target = np.take_along_axis(membership, perms[:, None, :], axis=2).mean(axis=0)
    return perms, max_iter


def chain_permutations(chain_means: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Permutations matching each chain's component means to chain 0's.

    Parameters
    ----------
    chain_means : numpy.ndarray of shape (C, K, D)
        Posterior mean of every component mean, per chain.
    scale : numpy.ndarray of shape (D,)
        Feature scales for the distances.

    Returns
    -------
    numpy.ndarray of shape (C, K)
        ``perm[c, k]``: the label of chain ``c`` that corresponds to label ``k`` of chain
        0. Any row that is not the identity means the chains disagree on labels.
    """
    scaled = chain_means / scale
    diff = scaled[0][None, :, None, :] - scaled[:, None, :, :]  # (C, K, K, D)
    return _best_permutations((diff**2).sum(-1))


def apply_permutations(values: np.ndarray, perms: np.ndarray, axis: int) -> np.ndarray:
    """Reorder the component axis of ``values`` (leading dim = draws) by ``perms``."""
    shape = [1] * values.ndim
    shape[0] = perms.shape[0]
    shape[axis] = perms.shape[1]
    return np.take_along_axis(values, perms.reshape(shape), axis=axis)
