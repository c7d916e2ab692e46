"""Clustering with uncertainty: memberships, co-clustering, point partitions, agreement.

Everything here is written once against the shared result interface
(:class:`~bayesmix.results.MixtureResult`), so it works for an EM point estimate (one
draw), NUTS draws and variational (ADVI) draws alike.

- :func:`memberships`: per observation and component, the membership probability
  averaged over draws with a credible interval, the hard assignment, two measures of
  assignment uncertainty and a flag for uncertain observations.
- :func:`co_clustering`: the posterior similarity matrix ``P(z_i = z_j | X)``.
- :func:`point_partition` / :func:`partition_from_psm`: the partition minimising the
  posterior expected Binder loss or variation of information; :func:`expected_loss`
  scores any partition.
- :func:`adjusted_rand_index`: agreement between two partitions.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bayesmix.data import Data
from bayesmix.families.gaussian.stats import log_normalise
from bayesmix.results import MixtureResult
from bayesmix.validation import (
    DEFAULT_CI_PROB,
    check_choice,
    check_ci_prob,
    check_float,
    check_int,
)

__all__ = [
    "Memberships",
    "Partition",
    "adjusted_rand_index",
    "co_clustering",
    "expected_loss",
    "memberships",
    "partition_from_psm",
    "point_partition",
]

#: Bytes of per-draw membership probabilities held at once.
BLOCK_BYTES = 64 * 2**20
#: Default largest number of observations for an ``N x N`` co-clustering matrix (0.8 GB).
MAX_OBS = 10_000
LOSSES = ("binder", "vi")
_TINY = 1e-300


# -- shared helpers ----------------------------------------------------------------------
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


def result_data(result: Any, X: Any, caller: str) -> Data:
    """Validated observations for ``result``: ``X``, or a Bayesian result's training data.

    Parameters
    ----------
    result : MixtureResult
        A fitted result.
    X : array-like or None
        Observations; None takes the result's training data (Bayesian results keep it).
    caller : str
        The public function's name, used in error messages.

    Returns
    -------
    Data
    """
    if not isinstance(result, MixtureResult):
        raise TypeError(
            f"result must be a fitted mixture (the return value of GaussianMixture.fit); "
            f"got {type(result).__name__}."
        )
    if X is None:
        X = getattr(result, "data", None)
        if X is None:
            raise ValueError(
                f"X is required for {type(result).__name__}, which does not keep its "
                f"training data; pass the observations to cluster, e.g. {caller}(result, X)."
            )
    return result.check_data(X)


def _check_threshold(threshold: Any) -> float:
    value = check_float(threshold, "threshold")
    if not 0.0 <= value < 1.0:
        raise ValueError(
            "threshold must be in [0, 1): it is the largest tolerated probability of "
            f"belonging elsewhere, 1 - p(assigned component); got {value}."
        )
    return value


def _draw_memberships(result: MixtureResult, data: Data, draws: range) -> np.ndarray:
    """``p(z_n = k | x_n, theta_s)`` for the given flattened draws, shape ``(s, n, K)``."""
    params = result._draw_params
    return np.stack([np.exp(log_normalise(result._log_joint(data, params[s]))[1]) for s in draws])


def _draw_blocks(result: MixtureResult, n_obs: int) -> Iterator[range]:
    """Consecutive ranges of draws whose memberships of ``n_obs`` rows fit BLOCK_BYTES."""
    per_draw = 8 * n_obs * result.model.n_components
    size = max(1, BLOCK_BYTES // per_draw)
    for start in range(0, result.n_draws, size):
        yield range(start, min(start + size, result.n_draws))


def _one_hot(labels: np.ndarray, n_groups: int) -> np.ndarray:
    out = np.zeros((labels.shape[0], n_groups))
    out[np.arange(labels.shape[0]), labels] = 1.0
    return out


# -- memberships -----------------------------------------------------------------------
class Memberships:
    """Membership probabilities with their uncertainty (returned by :func:`memberships`).

    Attributes
    ----------
    dataset : xarray.Dataset
        Variables ``probability``, ``lower``, ``upper`` (dims ``obs, component``) and
        ``assignment``, ``assigned_probability``, ``assigned_lower``, ``assigned_upper``,
        ``uncertainty``, ``entropy``, ``uncertain`` (dim ``obs``); attributes
        ``ci_prob``, ``threshold``, ``method`` and ``n_draws``.
    """

    def __init__(self, dataset: xr.Dataset) -> None:
        self.dataset = dataset

    def __getitem__(self, name: str) -> xr.DataArray:
        return self.dataset[name]

    @property
    def probabilities(self) -> np.ndarray:
        """Mean membership probabilities, shape ``(n_obs, K)``."""
        return self.dataset["probability"].values

    @property
    def labels(self) -> np.ndarray:
        """Hard assignment (most probable component), shape ``(n_obs,)``."""
        return self.dataset["assignment"].values

    @property
    def uncertain(self) -> np.ndarray:
        """Boolean flag of observations whose assignment is uncertain."""
        return self.dataset["uncertain"].values

    @property
    def n_obs(self) -> int:
        return self.dataset.sizes["obs"]

    @property
    def n_components(self) -> int:
        return self.dataset.sizes["component"]

    def to_dataframe(self) -> pd.DataFrame:
        """One row per observation: ``assignment``, ``probability`` of the assigned
        component with its interval (``lower``, ``upper``), ``uncertainty``,
        ``entropy``, ``uncertain``, then ``p[k]``, ``p[k] lower``, ``p[k] upper`` per
        component ``k``."""
        ds = self.dataset
        table = pd.DataFrame(
            {
                "assignment": ds["assignment"].values,
                "probability": ds["assigned_probability"].values,
                "lower": ds["assigned_lower"].values,
                "upper": ds["assigned_upper"].values,
                "uncertainty": ds["uncertainty"].values,
                "entropy": ds["entropy"].values,
                "uncertain": ds["uncertain"].values,
            },
            index=pd.Index(ds["obs"].values, name="obs"),
        )
        for j, k in enumerate(ds["component"].values):
            table[f"p[{k}]"] = ds["probability"].values[:, j]
            table[f"p[{k}] lower"] = ds["lower"].values[:, j]
            table[f"p[{k}] upper"] = ds["upper"].values[:, j]
        return table

    def _header(self) -> str:
        attrs = self.dataset.attrs
        n_uncertain = int(self.uncertain.sum())
        return (
            f"Memberships of {self.n_obs} observations in {self.n_components} components "
            f"({attrs['method']}, {attrs['n_draws']} draw(s), {attrs['ci_prob']:.0%} "
            f"equal-tailed intervals); {n_uncertain} uncertain at threshold "
            f"{attrs['threshold']:g}"
        )

    def __repr__(self) -> str:
        with pd.option_context("display.max_rows", 10, "display.width", 100):
            table = self.to_dataframe().iloc[:, :7]
            return f"{self._header()}\n{table.to_string(max_rows=10, float_format='{:.3f}'.format)}"

    def _repr_html_(self) -> str:
        table = self.to_dataframe()
        body = table.to_html(max_rows=20, float_format="{:.3f}".format)
        return f"<p>{self._header()}</p>\n{body}"


def memberships(
    result: MixtureResult,
    X: Any = None,
    *,
    ci_prob: float = DEFAULT_CI_PROB,
    threshold: float = 0.2,
) -> Memberships:
    """Membership probabilities of observations, with their uncertainty.

    For every flattened draw ``s`` the membership probabilities
    ``p_nk^s = p(z_n = k | x_n, theta_s)`` are computed with ``z`` marginalised; their
    mean over draws is the posterior membership probability (for EM, the
    responsibilities at the estimate).

    Parameters
    ----------
    result : MixtureResult
        Any fit: EM (one draw, the intervals collapse to the point), NUTS or ADVI.
    X : array-like of shape (n_obs, n_features), optional
        Observations. Defaults to the training data for a Bayesian result; required
        for an EM result, which does not keep its training data.
    ci_prob : float
        Mass of the equal-tailed credible interval of each probability over draws.
    threshold : float
        Tolerated probability of belonging elsewhere, in ``[0, 1)``. An observation is
        flagged ``uncertain`` when ``1 - max_k p_nk > threshold`` (mclust's
        uncertainty) **or** when the lower end of the credible interval of its assigned
        component's probability is below ``1 - threshold`` (its assignment is not
        confident in a credible share of the draws). For EM the two coincide.

    Returns
    -------
    Memberships
        ``.dataset`` (an :class:`xarray.Dataset`) holding, per observation and
        component, ``probability`` (mean over draws), ``lower``/``upper`` (the
        interval); per observation ``assignment`` (argmax of the mean probability),
        ``assigned_probability`` with ``assigned_lower``/``assigned_upper``,
        ``uncertainty = 1 - max_k p_nk`` (mclust), ``entropy = -sum_k p_nk log p_nk``
        (nats, at most ``log K``) and the ``uncertain`` flag. ``.to_dataframe()``
        gives a table, which notebooks display.

    Notes
    -----
    Per-component probabilities and intervals, and the assignment, are only
    meaningful when the component labels are identified: under label switching a
    draw's component 0 may be another draw's component 1, the mean probabilities drift
    towards ``1/K`` and the intervals span ``[0, 1]``. Fit with ``identify="ordered"``
    (the default) or call ``result.relabel()`` first, which resolves label switching
    by Stephens' algorithm. The label-invariant summaries are :func:`co_clustering` and
    :func:`point_partition`.

    The intervals are equal-tailed quantiles of the per-draw probabilities; for a
    probability extremely close to 0 or 1 (heavily skewed draws) the mean can fall a
    negligible distance outside them. Probabilities of all draws of a block of
    observations are held at once (blocks of about 64 MB).
    """
    data = result_data(result, X, "memberships")
    ci_prob = check_ci_prob(ci_prob)
    threshold = _check_threshold(threshold)
    n_obs, n_components, n_draws = data.n_obs, result.model.n_components, result.n_draws
    rows_per_block = max(1, BLOCK_BYTES // (8 * n_draws * n_components))
    mean = np.empty((n_obs, n_components))
    lower = np.empty_like(mean)
    upper = np.empty_like(mean)
    quantiles = [(1.0 - ci_prob) / 2.0, (1.0 + ci_prob) / 2.0]
    for start in range(0, n_obs, rows_per_block):
        rows = slice(start, min(start + rows_per_block, n_obs))
        block = replace(data, values=data.values[rows], obs_names=data.obs_names[rows])
        probs = _draw_memberships(result, block, range(n_draws))
        mean[rows] = probs.mean(axis=0)
        lower[rows], upper[rows] = np.quantile(probs, quantiles, axis=0)
    assignment = mean.argmax(axis=1)
    index = np.arange(n_obs)
    assigned = mean[index, assignment]
    assigned_lower = lower[index, assignment]
    uncertainty = 1.0 - assigned
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(mean > 0, mean * np.log(mean), 0.0).sum(axis=1)
    uncertain = (uncertainty > threshold) | (assigned_lower < 1.0 - threshold)
    components = result.posterior["component"].values
    dataset = xr.Dataset(
        {
            "probability": (("obs", "component"), mean),
            "lower": (("obs", "component"), lower),
            "upper": (("obs", "component"), upper),
            "assignment": ("obs", components[assignment]),
            "assigned_probability": ("obs", assigned),
            "assigned_lower": ("obs", assigned_lower),
            "assigned_upper": ("obs", upper[index, assignment]),
            "uncertainty": ("obs", uncertainty),
            "entropy": ("obs", np.maximum(entropy, 0.0)),
            "uncertain": ("obs", uncertain),
        },
        coords={"obs": data.obs_names, "component": components},
        attrs={
            "ci_prob": ci_prob,
            "threshold": threshold,
            "method": str(result.settings.get("method", "unknown")),
            "n_draws": n_draws,
            "interval": "equal-tailed",
        },
    )
    return Memberships(dataset)


# -- co-clustering -------------------------------------------------------------------
def _check_size(n_obs: int, max_obs: Any) -> None:
    max_obs = check_int(max_obs, "max_obs")
    if n_obs > max_obs:
        gigabytes = 8 * n_obs**2 / 1e9
        raise ValueError(
            f"X has {n_obs} observations: the {n_obs} x {n_obs} co-clustering matrix would "
            f"need {gigabytes:.1f} GB. Pass a subsample of at most {max_obs} observations "
            f"(e.g. X.sample({max_obs}) for a DataFrame), or raise max_obs= if that much "
            "memory is available."
        )


def _psm_pass(
    result: MixtureResult, data: Data, keep_draw_labels: bool
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None, np.ndarray | None]:
    """One pass over the draws: the PSM, the mean memberships and (optionally) the
    distinct per-draw hard assignments with their counts."""
    n_obs, n_components = data.n_obs, result.model.n_components
    psm = np.zeros((n_obs, n_obs))
    total = np.zeros((n_obs, n_components))
    uniques, counts = [], []
    for draws in _draw_blocks(result, n_obs):
        probs = _draw_memberships(result, data, draws)  # (s, N, K)
        stacked = probs.transpose(1, 0, 2).reshape(n_obs, -1)  # (N, s K)
        psm += stacked @ stacked.T
        total += probs.sum(axis=0)
        if keep_draw_labels:
            hard = probs.argmax(axis=2).astype(np.min_scalar_type(n_components))
            labels, count = np.unique(hard, axis=0, return_counts=True)
            uniques.append(labels)
            counts.append(count)
    psm /= result.n_draws  # exactly symmetric: numpy computes A @ A.T by BLAS syrk
    np.clip(psm, 0.0, 1.0, out=psm)
    np.fill_diagonal(psm, 1.0)
    mean = total / result.n_draws
    if not keep_draw_labels:
        return psm, mean, None, None
    return psm, mean, np.concatenate(uniques), np.concatenate(counts)


def _psm_array(psm: np.ndarray, data: Data, n_draws: int) -> xr.DataArray:
    return xr.DataArray(
        psm,
        dims=("obs", "obs_"),
        coords={"obs": data.obs_names, "obs_": data.obs_names},
        name="co_clustering",
        attrs={"n_draws": n_draws, "description": "P(z_i = z_j | X)"},
    )


def co_clustering(result: MixtureResult, X: Any = None, *, max_obs: int = MAX_OBS) -> xr.DataArray:
    """Posterior similarity (co-clustering) matrix ``P(z_i = z_j | X)``.

    Given the parameters ``theta_s`` of a draw, the allocations are independent, so
    ``P_ij = mean_s sum_k p_ik^s p_jk^s`` for ``i != j``: one matrix product of the
    stacked ``(N, S K)`` membership matrix with itself, accumulated over blocks of
    draws. ``P_ii = 1`` by definition. The matrix does not depend on how components are
    labelled in each draw, so it is safe under label switching. For EM (one draw) it is
    ``sum_k r_ik r_jk``, the probability that two observations share a component at
    the estimate.

    Parameters
    ----------
    result : MixtureResult
    X : array-like of shape (n_obs, n_features), optional
        Observations; defaults to a Bayesian result's training data, required for EM.
    max_obs : int
        Refuse more observations than this: the matrix takes ``8 N^2`` bytes (about
        twice that while it is computed), 0.8 GB at the default 10 000.

    Returns
    -------
    xarray.DataArray
        Dims ``(obs, obs_)`` with the observation labels as coordinates.
    """
    data = result_data(result, X, "co_clustering")
    _check_size(data.n_obs, max_obs)
    psm, _, _, _ = _psm_pass(result, data, keep_draw_labels=False)
    return _psm_array(psm, data, result.n_draws)


# -- expected losses -------------------------------------------------------------------
def _check_psm(psm: Any) -> np.ndarray:
    values = np.asarray(psm.values if isinstance(psm, xr.DataArray) else psm, dtype=float)
    if values.ndim != 2 or values.shape[0] != values.shape[1] or values.shape[0] == 0:
        raise ValueError(
            f"psm must be a square (n_obs, n_obs) co-clustering matrix; got shape "
            f"{values.shape}. Compute it with bm.co_clustering(result, X)."
        )
    if not np.isfinite(values).all() or values.min() < -1e-9 or values.max() > 1 + 1e-9:
        raise ValueError("psm must hold probabilities in [0, 1]; it has values outside.")
    if not np.allclose(values, values.T, atol=1e-8):
        raise ValueError("psm must be symmetric (P_ij = P_ji); it is not.")
    if not np.allclose(np.diagonal(values), 1.0, atol=1e-8):
        raise ValueError("psm must have a unit diagonal (P_ii = 1); it does not.")
    return np.clip(values, 0.0, 1.0)


def _canonical(labels: np.ndarray) -> np.ndarray:
    """Relabel each row of ``(M, N)`` non-negative integer labels by order of first
    appearance (``0, 1, ...``), so equal partitions get equal rows."""
    n_rows, n_obs = labels.shape
    n_labels = int(labels.max()) + 1
    first = np.full((n_rows, n_labels), n_obs)
    rows = np.repeat(np.arange(n_rows), n_obs)
    np.minimum.at(first, (rows, labels.ravel()), np.tile(np.arange(n_obs), n_rows))
    rank = np.argsort(np.argsort(first, axis=1, kind="stable"), axis=1, kind="stable")
    return np.take_along_axis(rank, labels, axis=1)


def _integer_labels(labels: np.ndarray) -> np.ndarray:
    return np.unique(labels, return_inverse=True)[1].reshape(labels.shape)


def _losses(psm: np.ndarray, candidates: np.ndarray, loss: str) -> np.ndarray:
    """Expected loss of each row of canonical ``(M, N)`` candidate labels.

    With ``s_i = sum_{j: c_j = c_i} P_ij`` and ``n_i`` the size of ``i``'s cluster:
    Binder ``= sum_{i<j} P_ij + (sum_i (n_i - 2 s_i) + N) / 2`` and the VI lower bound
    ``= mean_i (log2 n_i + log2 sum_j P_ij - 2 log2 s_i)``. All ``s_i`` of a block of
    candidates come from one product of the PSM with their stacked one-hot matrices.
    """
    n_cand, n_obs = candidates.shape
    out = np.empty(n_cand)
    groups = candidates.max(axis=1) + 1
    per_block = max(1, (BLOCK_BYTES // (8 * n_obs)) // max(1, int(groups.max())))
    obs = np.arange(n_obs)[None, :]
    if loss == "binder":
        constant = (psm.sum() - np.trace(psm)) / 2.0
    else:
        log_row = np.log2(psm.sum(axis=1))
    for start in range(0, n_cand, per_block):
        block = slice(start, min(start + per_block, n_cand))
        offsets = np.concatenate([[0], np.cumsum(groups[block])[:-1]])
        columns = candidates[block] + offsets[:, None]
        onehot = np.zeros((n_obs, int(groups[block].sum())))
        onehot[np.broadcast_to(obs, columns.shape), columns] = 1.0
        within = (psm @ onehot)[obs, columns]  # s_i, shape (m, N)
        sizes = onehot.sum(axis=0)[columns]  # n_i
        if loss == "binder":
            out[block] = constant + ((sizes - 2.0 * within).sum(axis=1) + n_obs) / 2.0
        else:
            out[block] = (np.log2(sizes) + log_row - 2.0 * np.log2(within)).mean(axis=1)
    return out


def expected_loss(psm: Any, labels: Any, loss: str = "binder") -> float:
    """Posterior expected loss of a partition, computed from the co-clustering matrix.

    Parameters
    ----------
    psm : array-like or xarray.DataArray of shape (n_obs, n_obs)
        Co-clustering matrix from :func:`co_clustering`.
    labels : array-like of shape (n_obs,)
        The partition (any label values).
    loss : {"binder", "vi"}
        ``"binder"``: Binder's loss with equal costs, exact: ``sum_{i<j} |1(c_i = c_j)
        - P_ij|``, the expected number of pairs the partition gets wrong.
        ``"vi"``: the lower bound of the expected variation of information (in bits)
        by Jensen's inequality (Wade & Ghahramani 2018):
        ``(1/N) sum_i [log2 n_i + log2 sum_j P_ij - 2 log2 sum_j 1(c_j = c_i) P_ij]``.

    Returns
    -------
    float
    """
    values = _check_psm(psm)
    loss = check_choice(loss, "loss", LOSSES)
    array = _labels(labels, "labels")
    if array.shape[0] != values.shape[0]:
        raise ValueError(
            f"labels has {array.shape[0]} entries but psm is for {values.shape[0]} "
            "observations; pass one label per observation."
        )
    return float(_losses(values, _integer_labels(array)[None, :], loss)[0])


# -- greedy refinement -----------------------------------------------------------------
def _xlog2x(n: np.ndarray) -> np.ndarray:
    n = np.asarray(n, dtype=float)
    return np.where(n > 0, n * np.log2(np.maximum(n, 1.0)), 0.0)


def _move_deltas(
    psm: np.ndarray, labels: np.ndarray, within: np.ndarray, sizes: np.ndarray, loss: str
) -> np.ndarray:
    """Change of the loss when observation ``i`` moves to cluster ``h``, for every ``i``
    and every ``h`` (the last column: a new singleton cluster), shape ``(N, G + 1)``.

    ``within[i, g] = sum_{j in g} P_ij`` (the PSM times the one-hot partition matrix),
    ``sizes[g]`` the cluster sizes. Staying put gets ``+inf``.
    """
    n_obs, n_groups = within.shape
    obs = np.arange(n_obs)
    if loss == "binder":
        # A = 1 - 2P; sum_{j in h} A_ij = n_h - 2 within_ih; without j = i in i's own
        # cluster add 1 (A_ii = -1).
        gain = sizes[None, :] - 2.0 * within
        leave = gain[obs, labels] + 1.0
        delta = np.concatenate([gain - leave[:, None], -leave[:, None]], axis=1)
    else:
        own = within[obs, labels]  # s_j
        log_own = np.log2(own)
        onehot = _one_hot(labels, n_groups)
        minus = np.log2(np.maximum(own[None, :] - psm, _TINY)) - log_own[None, :]
        np.fill_diagonal(minus, 0.0)
        plus = np.log2(own[None, :] + psm) - log_own[None, :]
        leave_terms = (minus @ onehot)[obs, labels]  # s_j of i's old cluster lose P_ij
        join_terms = np.concatenate([plus @ onehot, np.zeros((n_obs, 1))], axis=1)
        new_own = np.log2(np.concatenate([within, np.zeros((n_obs, 1))], axis=1) + 1.0)
        size_out = _xlog2x(sizes[labels] - 1) - _xlog2x(sizes[labels])
        size_in = np.append(_xlog2x(sizes + 1) - _xlog2x(sizes), 0.0)
        delta = (
            size_out[:, None]
            + size_in[None, :]
            - 2.0 * (leave_terms[:, None] + join_terms + new_own - log_own[:, None])
        ) / n_obs
    delta[obs, labels] = np.inf
    singleton = sizes[labels] == 1
    delta[singleton, n_groups] = np.inf  # a singleton moving to a new cluster: no change
    return delta


def _refine(
    psm: np.ndarray, labels: np.ndarray, loss: str, max_moves: int
) -> tuple[np.ndarray, int]:
    """Greedy descent over single-observation moves (to another cluster or a new one).

    Each step computes the change of the loss for all ``N (G + 1)`` moves at once and
    makes the best one. For the VI bound, whose step costs ``O(N^2 G)``, a step first
    tries moving every observation with an improving move to its best existing cluster
    at once, and keeps that batch if its exact loss beats the single best move. Stops
    when no move lowers the loss (a local minimum) or after ``max_moves`` moves.
    """
    labels = _integer_labels(labels).copy()
    n_obs = labels.shape[0]
    tol = 1e-10 * max(1.0, float(n_obs))
    current = float(_losses(psm, labels[None, :], loss)[0])
    moves = 0
    rebuild = True
    while moves < max_moves:
        if rebuild:
            n_groups = int(labels.max()) + 1
            within = psm @ _one_hot(labels, n_groups)
            sizes = np.bincount(labels, minlength=n_groups).astype(float)
            rebuild = False
        delta = _move_deltas(psm, labels, within, sizes, loss)
        best = int(np.argmin(delta))
        i, target = divmod(best, n_groups + 1)
        if not delta[i, target] < -tol:
            break
        if loss == "vi":
            existing = delta[:, :n_groups]
            targets = existing.argmin(axis=1)
            movers = np.flatnonzero(existing[np.arange(n_obs), targets] < -tol)
            if movers.size > 1 and moves + movers.size <= max_moves:
                trial = labels.copy()
                trial[movers] = targets[movers]
                trial = _integer_labels(trial)
                value = float(_losses(psm, trial[None, :], loss)[0])
                if value < current + delta[i, target] - tol:
                    labels, current, rebuild = trial, value, True
                    moves += movers.size
                    continue
        source = labels[i]
        if target == n_groups:
            within = np.concatenate([within, np.zeros((n_obs, 1))], axis=1)
            sizes = np.append(sizes, 0.0)
            n_groups += 1
        within[:, source] -= psm[:, i]
        within[:, target] += psm[:, i]
        sizes[source] -= 1
        sizes[target] += 1
        labels[i] = target
        current += float(delta[i, target])
        if sizes[source] == 0:
            within = np.delete(within, source, axis=1)
            sizes = np.delete(sizes, source)
            labels[labels > source] -= 1
            n_groups -= 1
        moves += 1
    return labels, moves


# -- point partitions ------------------------------------------------------------------
@dataclass(frozen=True)
class Partition:
    """A point estimate of the partition (returned by :func:`point_partition`).

    Attributes
    ----------
    labels : numpy.ndarray of shape (n_obs,)
        Cluster of each observation.
    expected_loss : float
        Posterior expected loss of ``labels`` (see :func:`expected_loss`).
    loss : str
        ``"binder"`` or ``"vi"``.
    start : str
        The candidate the greedy search started from.
    n_moves : int
        Single-observation moves made by the greedy refinement.
    obs_names : numpy.ndarray
        Observation labels.
    co_clustering : xarray.DataArray
        The co-clustering matrix the loss was computed from.
    """

    labels: np.ndarray
    expected_loss: float
    loss: str
    start: str
    n_moves: int
    obs_names: np.ndarray
    co_clustering: xr.DataArray = field(repr=False)

    @property
    def n_clusters(self) -> int:
        return int(np.unique(self.labels).size)

    @property
    def sizes(self) -> pd.Series:
        """Number of observations per cluster."""
        values, counts = np.unique(self.labels, return_counts=True)
        return pd.Series(counts, index=pd.Index(values, name="cluster"), name="size")

    def to_series(self) -> pd.Series:
        """Cluster labels indexed by observation."""
        return pd.Series(self.labels, index=pd.Index(self.obs_names, name="obs"), name="cluster")

    def __repr__(self) -> str:
        name = "Binder's loss" if self.loss == "binder" else "VI lower bound"
        sizes = ", ".join(f"{k}: {n}" for k, n in self.sizes.items())
        return (
            f"Partition of {self.labels.size} observations into {self.n_clusters} clusters "
            f"minimising {name} (expected loss {self.expected_loss:.4g}); sizes {{{sizes}}}; "
            f"started from {self.start}, {self.n_moves} greedy move(s)"
        )


def _hierarchical_candidates(psm: np.ndarray, max_clusters: int) -> np.ndarray:
    """Cuts into 1..max_clusters clusters of average-linkage clustering of 1 - PSM."""
    from scipy.cluster.hierarchy import fcluster, linkage
    from scipy.spatial.distance import squareform

    n_obs = psm.shape[0]
    if n_obs < 2:
        return np.zeros((1, n_obs), dtype=int)
    distance = 1.0 - psm
    np.fill_diagonal(distance, 0.0)
    tree = linkage(squareform(distance, checks=False), method="average")
    cuts = [
        fcluster(tree, k, criterion="maxclust") - 1 for k in range(1, min(max_clusters, n_obs) + 1)
    ]
    return np.stack(cuts)


def _search(
    psm: np.ndarray,
    candidates: list[tuple[str, np.ndarray]],
    loss: str,
    max_moves: int,
) -> tuple[np.ndarray, float, str, int]:
    names = [name for name, block in candidates for _ in range(block.shape[0])]
    stacked = _canonical(np.concatenate([block for _, block in candidates]).astype(np.intp))
    stacked, first = np.unique(stacked, axis=0, return_index=True)
    values = _losses(psm, stacked, loss)
    best = int(np.argmin(values))
    labels, moves = _refine(psm, stacked[best], loss, max_moves)
    value = float(_losses(psm, _canonical(labels[None, :]), loss)[0])
    return labels, value, names[first[best]], moves


def _check_search_options(max_clusters: Any, max_moves: Any, n_obs: int) -> tuple[int, int]:
    max_clusters = 10 if max_clusters is None else check_int(max_clusters, "max_clusters")
    max_moves = 10 * n_obs if max_moves is None else check_int(max_moves, "max_moves", 0)
    return max_clusters, max_moves


def _by_size(labels: np.ndarray) -> np.ndarray:
    """Relabel clusters 0, 1, ... by decreasing size (ties: first appearance)."""
    canonical = _canonical(labels[None, :])[0]
    counts = np.bincount(canonical)
    order = np.argsort(-counts, kind="stable")
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    return rank[canonical]


def _match_components(labels: np.ndarray, assignment: np.ndarray, n_components: int):
    """Name clusters after the mixture component they share most observations with;
    clusters left without one get ``K, K + 1, ...``."""
    from scipy.optimize import linear_sum_assignment

    labels = _by_size(labels)
    n_clusters = int(labels.max()) + 1
    table = np.zeros((n_clusters, n_components))
    np.add.at(table, (labels, assignment), 1.0)
    rows, cols = linear_sum_assignment(-table)
    names = np.full(n_clusters, -1)
    keep = table[rows, cols] > 0
    names[rows[keep]] = cols[keep]
    spare = np.flatnonzero(names < 0)
    names[spare] = n_components + np.arange(spare.size)
    return names[labels]


def partition_from_psm(
    psm: Any,
    loss: str = "binder",
    *,
    candidates: Any = None,
    max_clusters: int | None = None,
    max_moves: int | None = None,
) -> Partition:
    """The partition minimising a posterior expected loss, from a co-clustering matrix.

    Candidates are the cuts into ``1 .. max_clusters`` clusters of average-linkage
    hierarchical clustering of ``1 - psm`` plus any ``candidates`` given; the best is
    refined by greedy single-observation moves (to another cluster or a new one) until
    no move lowers the loss.

    Parameters
    ----------
    psm : array-like or xarray.DataArray of shape (n_obs, n_obs)
        Co-clustering matrix (:func:`co_clustering`).
    loss : {"binder", "vi"}
        See :func:`expected_loss`.
    candidates : array-like of shape (n_candidates, n_obs), optional
        Extra starting partitions (e.g. sampled allocations).
    max_clusters : int, optional
        Largest hierarchical cut (default 10).
    max_moves : int, optional
        Cap on greedy moves (default ``10 n_obs``).

    Returns
    -------
    Partition
        Clusters labelled ``0, 1, ...`` by decreasing size.
    """
    values = _check_psm(psm)
    loss = check_choice(loss, "loss", LOSSES)
    n_obs = values.shape[0]
    max_clusters, max_moves = _check_search_options(max_clusters, max_moves, n_obs)
    pool = [("average-linkage cut", _hierarchical_candidates(values, max_clusters))]
    if candidates is not None:
        extra = np.asarray(candidates)
        if extra.ndim == 1:
            extra = extra[None, :]
        if extra.ndim != 2 or extra.shape[1] != n_obs:
            raise ValueError(
                f"candidates must have shape (n_candidates, {n_obs}), one label per "
                f"observation in each row; got shape {extra.shape}."
            )
        pool.append(("given candidate", _integer_labels(extra)))
    labels, value, start, moves = _search(values, pool, loss, max_moves)
    if isinstance(psm, xr.DataArray):
        obs_names, array = psm[psm.dims[0]].values, psm
    else:
        obs_names = np.arange(n_obs)
        array = xr.DataArray(
            values, dims=("obs", "obs_"), coords={"obs": obs_names, "obs_": obs_names}
        )
    return Partition(_by_size(labels), value, loss, start, moves, obs_names, array)


def point_partition(
    result: MixtureResult,
    X: Any = None,
    *,
    loss: str = "binder",
    max_clusters: int | None = None,
    max_candidates: int = 100,
    max_moves: int | None = None,
    max_obs: int = MAX_OBS,
) -> Partition:
    """The partition of the observations minimising the posterior expected loss.

    Unlike the argmax of mean memberships, this summary is invariant to label switching
    and may use fewer clusters than components (surplus components are merged) — see
    Wade & Ghahramani (2018), "Bayesian cluster analysis: point estimation and credible
    balls".

    The co-clustering matrix ``P`` is computed (:func:`co_clustering`); candidates are
    the distinct per-draw hard assignments ``argmax_k p_nk^s`` (the ``max_candidates``
    most frequent), the argmax of the mean memberships and the cuts into
    ``1 .. max_clusters`` clusters of average-linkage hierarchical clustering of
    ``1 - P``. Their losses are evaluated together (one matrix product per block of
    candidates); the best is refined by greedy single-observation moves (to another
    cluster or a new one; for VI also batches of such moves when they do better) until
    no move lowers the loss, so the result is a local minimum of the expected loss.

    Parameters
    ----------
    result : MixtureResult
    X : array-like of shape (n_obs, n_features), optional
        Observations; defaults to a Bayesian result's training data, required for EM.
    loss : {"binder", "vi"}
        ``"binder"``: Binder's loss with equal costs, computed exactly from ``P``
        (expected number of misclassified pairs). ``"vi"``: the variation of
        information, through the lower bound of its expectation computed from ``P``
        (Wade & Ghahramani 2018; in bits), as in R's ``mcclust.ext::minVI``.
        VI favours fewer, larger clusters than Binder's loss when clusters overlap.
    max_clusters : int, optional
        Largest hierarchical cut (default ``max(10, 2 K)``).
    max_candidates : int
        Most distinct per-draw assignments evaluated.
    max_moves : int, optional
        Cap on greedy moves (default ``10 n_obs``).
    max_obs : int
        Refuse more observations: the ``N x N`` matrix takes ``8 N^2`` bytes, and the
        search holds about three such matrices.

    Returns
    -------
    Partition
        ``labels``, ``expected_loss``, ``co_clustering`` and how the search went.
        Clusters are named after the mixture component they share most observations
        with (by the mean memberships); clusters without one get ``K, K + 1, ...``.
    """
    data = result_data(result, X, "point_partition")
    loss = check_choice(loss, "loss", LOSSES)
    max_candidates = check_int(max_candidates, "max_candidates")
    n_components = result.model.n_components
    if max_clusters is None:
        max_clusters = max(10, 2 * n_components)
    max_clusters, max_moves = _check_search_options(max_clusters, max_moves, data.n_obs)
    _check_size(data.n_obs, max_obs)
    psm, mean, draw_labels, counts = _psm_pass(result, data, keep_draw_labels=True)
    # merge repeated assignments across draw blocks, keep the most frequent
    canonical = _canonical(draw_labels.astype(np.intp))
    distinct, inverse = np.unique(canonical, axis=0, return_inverse=True)
    frequency = np.bincount(inverse.ravel(), weights=counts)
    keep = np.argsort(-frequency, kind="stable")[:max_candidates]
    argmax = mean.argmax(axis=1)
    pool = [
        ("per-draw hard assignment", distinct[keep]),
        ("argmax of mean memberships", argmax[None, :]),
        ("average-linkage cut", _hierarchical_candidates(psm, max_clusters)),
    ]
    labels, value, start, moves = _search(psm, pool, loss, max_moves)
    labels = _match_components(labels, argmax, n_components)
    return Partition(
        labels, value, loss, start, moves, data.obs_names, _psm_array(psm, data, result.n_draws)
    )


# -- agreement -----------------------------------------------------------------------
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
