"""Predictive densities with credible bands, 1-D marginals, and anomaly scores.

Written once against the shared result interface: every function reads
``result.posterior`` (dims ``chain, draw, component, feature, feature_``), so an EM point
estimate (one draw) and posterior draws from NUTS or ADVI go through the same code. For
one draw the credible interval collapses to the point estimate and anomaly
probabilities are 0 or 1.

Per-draw log densities ``log p(x_n | theta_s)`` are computed vectorised over draws,
components and rows, in blocks whose temporaries stay below a fixed memory budget.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from functools import partial
from typing import Any

import numpy as np
import pandas as pd
import xarray as xr

from bayesmix.data import Data, as_dask_data, is_dask_input
from bayesmix.families.gaussian.covariance import get_structure
from bayesmix.results import MixtureResult, require_gaussian
from bayesmix.validation import DEFAULT_CI_PROB, check_bool, check_ci_prob, check_int

__all__ = [
    "AnomalyScores",
    "anomaly_scores",
    "density",
    "log_density_draws",
    "marginal_density",
]

# Bytes of whitening temporaries one evaluation block may allocate.
BLOCK_BYTES = 16 * 2**20
# Rows one Gaussian evaluation block aims at (fewer draws per block when needed).
ROWS_PER_BLOCK = 256
# Bytes of per-draw results (draws x rows [x components]) held before reducing them.
OUTPUT_BYTES = 64 * 2**20


# ---------------------------------------------------------------------------------------
# per-draw evaluation


class _MixtureDraws:
    """Stacked parameters of all draws, ready for blocked evaluation.

    The Gaussian log densities are those of the covariance structures
    (:meth:`bayesmix.families.gaussian.covariance.CovarianceStructure.log_prob`, the one
    numpy Gaussian density): the draws' components are stacked into one long component
    axis, so a block of draws is one call (one GEMM for full matrices).

    Parameters
    ----------
    weights : array (S, K)
    means : array (S, K, D)
    covariances : array (S, K, D, D)
        Full matrices. When every off-diagonal entry is zero (diag and spherical
        structures, 1-D marginals) only the variances are used.
    """

    def __init__(self, weights: np.ndarray, means: np.ndarray, covariances: np.ndarray) -> None:
        self.n_draws, self.n_components, self.n_features = means.shape
        n_features = self.n_features
        covariances = np.asarray(covariances, dtype=float)
        off_diagonal = ~np.eye(n_features, dtype=bool)
        if np.any(covariances[..., off_diagonal]):
            self.structure = get_structure("full")
            covariances = covariances.transpose(1, 0, 2, 3)
        else:
            self.structure = get_structure("diag")
            covariances = np.diagonal(covariances, axis1=-2, axis2=-1).transpose(1, 0, 2)
            if not (covariances > 0).all():
                raise ValueError(
                    "the result has non-positive variances; its covariance matrices must be "
                    "positive definite."
                )
        # component-major (K, S, ...): a block of draws is a strided slice of every
        # component, and the structure's (n, K * S_b) output reshapes to (n, K, S_b)
        self.prec_chol = self.structure.precision_cholesky(covariances)
        self.means = np.asarray(means, dtype=float).transpose(1, 0, 2)
        with np.errstate(divide="ignore"):
            self.log_weights = np.log(np.asarray(weights, dtype=float)).T  # (K, S)

    @classmethod
    def from_result(cls, result: MixtureResult) -> _MixtureDraws:
        require_gaussian(result, "this analysis")
        flat = result.posterior.stack(sample=("chain", "draw")).transpose("sample", ...)
        return cls(flat["weights"].values, flat["means"].values, flat["covariances"].values)

    def log_joint(self, X: np.ndarray, draws: slice) -> np.ndarray:
        """``log w_k + log N(x_n | mu_k, Sigma_k)`` per draw, shape ``(n, K, S_b)``."""
        start, stop, _ = draws.indices(self.n_draws)
        n_obs = X.shape[0]
        out = np.empty((n_obs, self.n_components, stop - start))
        # draws per sub-block: the whitened temporaries of ROWS_PER_BLOCK rows fit the
        # budget, so the per-call set-up (stacking the factors) is amortised over rows
        per_draw = 8 * self.n_components * self.n_features  # bytes per row and draw
        draws_per_block = max(1, BLOCK_BYTES // (per_draw * min(max(n_obs, 1), ROWS_PER_BLOCK)))
        for sub in _blocks(start, stop, draws_per_block):
            rows_per_block = max(1, BLOCK_BYTES // (per_draw * (sub.stop - sub.start)))
            target = slice(sub.start - start, sub.stop - start)
            means = self.means[:, sub].reshape(-1, self.n_features)
            prec_chol = self.prec_chol[:, sub].reshape(-1, *self.prec_chol.shape[2:])
            shape = (self.n_components, sub.stop - sub.start)
            for rows in _blocks(0, n_obs, rows_per_block):
                log_prob = self.structure.log_prob(X[rows], means, prec_chol)
                out[rows, :, target] = log_prob.reshape(-1, *shape) + self.log_weights[:, sub]
        return out

    def log_density(self, X: np.ndarray, draws: slice) -> np.ndarray:
        """``log p(x_n | theta_s)``, shape ``(n, S_b)``."""
        return _logsumexp(self.log_joint(X, draws), axis=1)


class _FamilyDraws:
    """The draws of a non-Gaussian family's result, evaluated through the declaration's
    log joint (:meth:`bayesmix.Mixture.log_joint`), one draw at a time (vectorised over
    rows and components); the same interface as :class:`_MixtureDraws`."""

    def __init__(self, model: Any, params: list[dict[str, np.ndarray]], n_features: int) -> None:
        self.model = model
        self.params = params
        self.n_draws = len(params)
        self.n_components = model.n_components
        self.n_features = n_features

    @classmethod
    def from_result(cls, result: MixtureResult) -> _FamilyDraws:
        model = result.model
        return cls(model, model.draw_parameters(result.posterior), result.n_features)

    @classmethod
    def marginal(cls, result: MixtureResult, feature: int) -> _FamilyDraws:
        """The draws of feature ``feature``'s marginal mixture (a one-feature declaration
        of the family's marginal)."""
        model = result.model
        family = model.family
        # the marginal declaration only evaluates densities: no priors (an Independent's
        # are named by block)
        one = type(model)(model.n_components, family.marginal_family(feature))
        params = [
            {"weights": p["weights"], **family.marginal_parameters(p, feature)}
            for p in model.draw_parameters(result.posterior)
        ]
        return cls(one, params, 1)

    def log_joint(self, X: np.ndarray, draws: slice) -> np.ndarray:
        """``log w_k + log p(x_n | theta_k)`` per draw, shape ``(n, K, S_b)``."""
        start, stop, _ = draws.indices(self.n_draws)
        return np.stack(
            [self.model.log_joint(X, self.params[s]) for s in range(start, stop)], axis=-1
        )

    def log_density(self, X: np.ndarray, draws: slice) -> np.ndarray:
        """``log p(x_n | theta_s)``, shape ``(n, S_b)``."""
        return _logsumexp(self.log_joint(X, draws), axis=1)


def _draws(result: MixtureResult) -> _MixtureDraws | _FamilyDraws:
    """The evaluator of ``result``'s draws: Gaussian kernels, or the family's density."""
    if "covariances" in result.posterior:
        return _MixtureDraws.from_result(result)
    return _FamilyDraws.from_result(result)


def _logsumexp(a: np.ndarray, axis: int) -> np.ndarray:
    """``log(sum(exp(a)))`` along ``axis``, stable, ``-inf`` where every term is."""
    peak = a.max(axis=axis, keepdims=True)
    peak[~np.isfinite(peak)] = 0.0
    with np.errstate(divide="ignore"):
        total = np.log(np.exp(a - peak).sum(axis=axis))
    return total + np.squeeze(peak, axis=axis)


def _blocks(start: int, stop: int, size: int) -> Iterator[slice]:
    for begin in range(start, stop, size):
        yield slice(begin, min(begin + size, stop))


def _summarise(
    draws: _MixtureDraws, X: np.ndarray, ci_prob: float, components: bool = False
) -> dict[str, np.ndarray]:
    """Log-scale summaries over draws of ``log p(x_n | theta_s)`` for every row.

    Rows are processed in blocks so that the ``(rows, K, S)`` per-draw values of one
    block fit :data:`OUTPUT_BYTES`; all draws of a block are reduced before the next.
    """
    n_obs = X.shape[0]
    n_draws, n_components = draws.n_draws, draws.n_components
    rows_per_block = max(1, OUTPUT_BYTES // (8 * n_draws * n_components))
    tail = (1.0 - ci_prob) / 2.0
    levels = np.array([tail, 0.5, 1.0 - tail])
    out = {
        "log_mean": np.empty(n_obs),
        "log_quantiles": np.empty((3, n_obs)),
    }
    if components:
        out["log_components"] = np.empty((n_components, n_obs))
    log_n = np.log(n_draws)
    for rows in _blocks(0, n_obs, rows_per_block):
        joint = draws.log_joint(X[rows], slice(None))  # (n_b, K, S)
        log_p = _logsumexp(joint, axis=1)  # (n_b, S)
        out["log_mean"][rows] = _logsumexp(log_p, axis=1) - log_n
        out["log_quantiles"][:, rows] = np.quantile(log_p, levels, axis=1)
        if components:
            out["log_components"][:, rows] = (_logsumexp(joint, axis=2) - log_n).T
    return out


def _iter_log_density(draws: _MixtureDraws, X: np.ndarray) -> Iterator[tuple[slice, np.ndarray]]:
    """``(draw_slice, log p(X | theta_s) of shape (N, S_b))`` over blocks of draws whose
    ``(N, K, S_b)`` values fit :data:`OUTPUT_BYTES` (at least one draw per block)."""
    per_draw = 8 * draws.n_components * max(X.shape[0], 1)
    size = max(1, OUTPUT_BYTES // per_draw)
    for block in _blocks(0, draws.n_draws, size):
        yield block, draws.log_density(X, block)


# ---------------------------------------------------------------------------------------
# validation helpers


def check_result(result: Any) -> MixtureResult:
    """Return ``result`` if it is a fitted bayesmix result.

    Parameters
    ----------
    result : Any
        The value passed as ``result`` to a density or anomaly function.

    Returns
    -------
    MixtureResult

    Raises
    ------
    TypeError
        ``result`` is not an :class:`~bayesmix.results.MixtureResult`.
    """
    if not isinstance(result, MixtureResult):
        raise TypeError(
            "result must be a fitted bayesmix result (EMResult or BayesResult from "
            f"GaussianMixture.fit); got {type(result).__name__}."
        )
    return result


def feature_index(result: MixtureResult, feature: Any) -> int:
    """Position of ``feature`` (a name or an integer index) among the result's features.

    Raises
    ------
    ValueError
        Unknown name or index out of range (the message lists the features).
    TypeError
        Neither a string nor an integer.
    """
    names = result.feature_names
    if isinstance(feature, str):
        if feature not in names:
            raise ValueError(
                f"feature {feature!r} is not one of the result's features {list(names)}; "
                "pass one of these names or an integer index."
            )
        return names.index(feature)
    if isinstance(feature, (bool, np.bool_)) or not isinstance(feature, numbers.Integral):
        raise TypeError(
            f"feature must be a feature name or an integer index; got {feature!r} "
            f"(features: {list(names)})."
        )
    index = int(feature)
    if not -len(names) <= index < len(names):
        raise ValueError(
            f"feature index {index} is out of range for {len(names)} feature(s) {list(names)}."
        )
    return index % len(names)


def as_points(result: MixtureResult, X: Any, name: str = "X") -> Data:
    """Validate points for ``result``: the fitted number of features and, when both
    carry real column names, the same names in the same order.

    Raises
    ------
    ValueError
        Wrong number of features, or named columns that differ from the fitted ones.
    """
    data = result.check_data(X, name)
    return _same_columns(data, result, name)


def _same_columns(data, result: MixtureResult, name: str):
    """``data`` (in memory or Dask) if its columns are the fitted ones, when both are named."""
    default = tuple(f"x{i}" for i in range(result.n_features))
    named = data.feature_names != default and result.feature_names != default
    if named and data.feature_names != result.feature_names:
        raise ValueError(
            f"{name} has columns {list(data.feature_names)} but the model was fitted on "
            f"{list(result.feature_names)}; select and order the columns as at fit time "
            f"(e.g. {name}[{list(result.feature_names)}])."
        )
    return data


def training_data(result: MixtureResult) -> Data | None:
    """The observations a result was fitted to, when it keeps them.

    Parameters
    ----------
    result : MixtureResult

    Returns
    -------
    Data or None
        The result's ``data`` attribute; None when it keeps no training data.
    """
    data = getattr(result, "data", None)
    return data if isinstance(data, Data) else None


def _obs_coord(data: Data) -> np.ndarray:
    return np.asarray(data.obs_names)


# ---------------------------------------------------------------------------------------
# densities


def log_density_draws(result: MixtureResult, X: Any) -> xr.DataArray:
    """Log density of every observation under every draw, ``log p(x_n | theta_s)``.

    Parameters
    ----------
    result : MixtureResult
        Any fitted result (EM: one draw).
    X : array-like of shape (n_obs, n_features)

    Returns
    -------
    xarray.DataArray
        Dims ``(chain, draw, obs)``. This holds ``S * N`` numbers; :func:`density`
        summarises over draws without keeping them all.
    """
    result = check_result(result)
    data = as_points(result, X)
    draws = _draws(result)
    values = np.empty((draws.n_draws, data.n_obs))
    for block, log_p in _iter_log_density(draws, data.values):
        values[block] = log_p.T
    n_chains, n_draw = result.posterior.sizes["chain"], result.posterior.sizes["draw"]
    return xr.DataArray(
        values.reshape(n_chains, n_draw, data.n_obs),
        dims=("chain", "draw", "obs"),
        coords={
            "chain": result.posterior["chain"].values,
            "draw": result.posterior["draw"].values,
            "obs": _obs_coord(data),
        },
        name="log_density",
    )


def density(
    result: MixtureResult, X: Any, ci_prob: float = DEFAULT_CI_PROB, log: bool = False
) -> xr.Dataset:
    """Posterior predictive density at new points, with equal-tailed credible bands.

    Parameters
    ----------
    result : MixtureResult
        Any fitted result. For an EM point estimate (one draw) the interval and the
        median equal the density.
    X : array-like of shape (n_obs, n_features)
        Points at which to evaluate the density (the fitted features, in order).
    ci_prob : float
        Probability mass of the equal-tailed credible interval, in (0, 1).
    log : bool
        Return natural logarithms of every quantity (finite even where the density
        underflows to 0).

    Returns
    -------
    xarray.Dataset
        Over dim ``obs`` (from ``X``'s index), variables

        - ``density``: posterior predictive density ``mean_s p(x | theta_s)``;
        - ``median``: median over draws of ``p(x | theta_s)``;
        - ``lower``, ``upper``: the ``(1 - ci_prob) / 2`` and ``(1 + ci_prob) / 2``
          quantiles over draws of ``p(x | theta_s)``.

        Attributes ``ci_prob``, ``log`` and ``n_draws``.

    Notes
    -----
    Quantiles are computed on the log scale (linear interpolation between order
    statistics of ``log p``) and exponentiated, so ``log=True`` returns exactly the
    logarithm of ``log=False`` and far-away points do not underflow. The predictive
    density is the mean on the density scale (a log-sum-exp). The ``(S, N)`` per-draw
    values are computed block by block and reduced immediately.

    Examples
    --------
    >>> import bayesmix as bm
    >>> from bayesmix.analysis.density import density
    >>> X = bm.datasets.load_faithful()
    >>> em = bm.GaussianMixture(2).fit(X, method="em", random_state=0)
    >>> bands = density(em, X.iloc[:5], ci_prob=0.9)
    >>> bool((bands["lower"] <= bands["upper"]).all())
    True
    """
    result = check_result(result)
    ci_prob = check_ci_prob(ci_prob)
    log = check_bool(log, "log")
    data = as_points(result, X)
    draws = _draws(result)
    summary = _summarise(draws, data.values, ci_prob)
    values = {
        "density": summary["log_mean"],
        "lower": summary["log_quantiles"][0],
        "median": summary["log_quantiles"][1],
        "upper": summary["log_quantiles"][2],
    }
    if not log:
        values = {name: np.exp(v) for name, v in values.items()}
    return xr.Dataset(
        {name: ("obs", v) for name, v in values.items()},
        coords={"obs": _obs_coord(data)},
        attrs={"ci_prob": ci_prob, "log": int(log), "n_draws": draws.n_draws},
    )


def is_discrete(result: MixtureResult, feature: int | None = None) -> bool:
    """Whether ``result`` models discrete data (a count family: its densities are
    probability masses, defined at the counts only); with ``feature``, that feature
    (an :class:`~bayesmix.families.Independent` family's column: its block's family)."""
    family = getattr(result.model, "family", None)
    if family is not None and feature is not None:
        family = family.marginal_family(feature)
    return bool(getattr(family, "discrete", False))


def marginal_grid(
    result: MixtureResult, low: float, high: float, n_grid: int, feature: int | None = None
) -> np.ndarray:
    """Points spanning ``[low, high]`` at which ``result``'s one-feature marginal (of
    ``feature``, which an :class:`~bayesmix.families.Independent` family needs) is
    defined: ``n_grid`` evenly spaced values, or the counts for a count family."""
    family = getattr(result.model, "family", None)
    if family is None:
        return np.linspace(low, high, n_grid)
    return family.marginal_family(feature).marginal_grid(low, high, n_grid)


def _default_grid(result: MixtureResult, index: int, n_grid: int) -> np.ndarray:
    if "stds" in result.posterior:
        means = result.posterior["means"].isel(feature=index).values
        stds = result.posterior["stds"].isel(feature=index).values
    else:  # another family: its component means and standard deviations
        family = result.model.family
        arrays = {name: result.posterior[name].values for name in family.parameters}
        means = family.component_means(arrays)[..., index]
        stds = family.component_spreads(arrays)[..., index]
    lo = float(np.quantile(means - 4.0 * stds, 0.01))
    hi = float(np.quantile(means + 4.0 * stds, 0.99))
    lo = min(lo, float((means - 4.0 * stds).mean(axis=(0, 1)).min()))
    hi = max(hi, float((means + 4.0 * stds).mean(axis=(0, 1)).max()))
    data = training_data(result)
    if data is not None:
        column = data.values[:, index]
        lo, hi = min(lo, np.nanmin(column)), max(hi, np.nanmax(column))
    return marginal_grid(result, lo, hi, n_grid, index)


def marginal_density(
    result: MixtureResult,
    feature: int | str = 0,
    grid: Any = None,
    *,
    n_grid: int = 200,
    ci_prob: float = DEFAULT_CI_PROB,
) -> xr.Dataset:
    """Exact 1-D marginal density of one feature, with bands and component curves.

    The marginal of a Gaussian mixture in one coordinate ``d`` is the mixture of the
    component marginals ``sum_k w_k N(x | mu_kd, Sigma_k[d, d])``, so no integration
    is needed.

    Parameters
    ----------
    result : MixtureResult
        Any fitted result.
    feature : int or str
        The feature, by name or position.
    grid : array-like of shape (n,), optional
        Points at which to evaluate. Default: ``n_grid`` points spanning the components
        (means +- 4 standard deviations) and, for Bayesian results, the training data.
    n_grid : int
        Number of default grid points (ignored when ``grid`` is given).
    ci_prob : float
        Mass of the equal-tailed credible band, in (0, 1).

    Returns
    -------
    xarray.Dataset
        Dim ``grid`` (coordinate: the evaluation points) with ``density``, ``median``,
        ``lower``, ``upper`` as in :func:`density`, and ``components`` (dims
        ``component, grid``): the posterior mean of the weighted component densities
        ``w_k N(x | mu_kd, Sigma_k[d, d])``, which sum to ``density``. Attribute
        ``feature`` holds the feature name.

    Notes
    -----
    ``components`` averages over draws per label, which is meaningful only when the
    labels are identified (EM, ordered fits, or ``BayesResult.relabel()``); the total
    ``density`` is label-invariant.
    """
    result = check_result(result)
    ci_prob = check_ci_prob(ci_prob)
    index = feature_index(result, feature)
    if grid is None:
        grid = _default_grid(result, index, check_int(n_grid, "n_grid", minimum=2))
    else:
        try:
            grid = np.asarray(grid, dtype=float)
        except (TypeError, ValueError):
            raise TypeError("grid must be a 1-D array of numbers.") from None
        if grid.ndim != 1 or grid.size == 0:
            raise ValueError(
                f"grid must be a non-empty 1-D array of points; got shape {grid.shape}."
            )
        if not np.isfinite(grid).all():
            raise ValueError("grid contains NaN or infinite values; pass finite points.")
        names = (result.feature_names[index],)
        if "covariances" in result.posterior:
            result.model.check_values(grid[:, None], names, "grid")
        else:  # the feature's own support (per-feature settings are the whole model's)
            family = result.model.family.marginal_family(index)
            family.check_block(grid[:, None], names, "grid")
    if "covariances" in result.posterior:
        flat = result.posterior.stack(sample=("chain", "draw")).transpose("sample", ...)
        means = flat["means"].values[:, :, index : index + 1]
        variances = flat["covariances"].values[:, :, index, index][..., None, None]
        draws = _MixtureDraws(flat["weights"].values, means, variances)
    else:
        draws = _FamilyDraws.marginal(result, index)
    summary = _summarise(draws, grid[:, None], ci_prob, components=True)
    name = result.feature_names[index]
    quantiles = np.exp(summary["log_quantiles"])
    return xr.Dataset(
        {
            "density": ("grid", np.exp(summary["log_mean"])),
            "lower": ("grid", quantiles[0]),
            "median": ("grid", quantiles[1]),
            "upper": ("grid", quantiles[2]),
            "components": (("component", "grid"), np.exp(summary["log_components"])),
        },
        coords={"grid": grid, "component": result.posterior["component"].values},
        attrs={
            "feature": name,
            "ci_prob": ci_prob,
            "n_draws": draws.n_draws,
            "discrete": int(is_discrete(result, index)),
        },
    )


# ---------------------------------------------------------------------------------------
# anomalies


class AnomalyScores:
    """Anomaly scores of observations under a fitted mixture.

    For Dask input the per-observation arrays (``score``, ``is_anomaly``,
    ``probability``, ``obs_names``, and ``reference_score`` for a Dask reference) are
    lazy :class:`dask.array.Array` objects while the thresholds are numbers (see
    :func:`anomaly_scores`); :meth:`compute` returns the in-memory equivalent, and
    ``n_anomalies``, ``anomalies``, ``to_dataframe()`` compute what they need.

    Attributes
    ----------
    score : numpy.ndarray of shape (n_obs,)
        ``-log`` posterior predictive density; higher is more anomalous.
    threshold : float
        Scores above it are flagged: the ``level`` quantile of the reference scores.
    is_anomaly : numpy.ndarray of bool, shape (n_obs,)
        ``score > threshold``.
    probability : numpy.ndarray of shape (n_obs,)
        Posterior probability of being an anomaly: the fraction of draws ``s`` with
        ``-log p(x | theta_s)`` above draw ``s``'s own threshold (the ``level`` quantile
        of the reference scores under ``theta_s``). 0 or 1 for an EM point estimate,
        where it equals ``is_anomaly``.
    obs_names : numpy.ndarray
        Labels of the observations.
    level : float
        Quantile of the reference scores used as threshold (``1 - contamination``).
    reference_score : numpy.ndarray
        Scores of the reference observations.
    draw_thresholds : numpy.ndarray of shape (n_draws,)
        Per-draw thresholds behind ``probability``.
    """

    def __init__(
        self,
        *,
        score: np.ndarray,
        threshold: float,
        probability: np.ndarray,
        obs_names: np.ndarray,
        level: float,
        reference_score: np.ndarray,
        draw_thresholds: np.ndarray,
        method: str,
    ) -> None:
        self.score = score
        self.threshold = float(threshold)
        self.is_anomaly = score > self.threshold
        self.probability = probability
        self.obs_names = obs_names
        self.level = float(level)
        self.reference_score = reference_score
        self.draw_thresholds = draw_thresholds
        self.method = method

    @property
    def contamination(self) -> float:
        """Expected share of reference observations flagged, ``1 - level``."""
        return 1.0 - self.level

    @property
    def is_lazy(self) -> bool:
        """Whether the per-observation arrays are lazy Dask arrays (Dask input)."""
        return not isinstance(self.score, np.ndarray) or not isinstance(
            self.reference_score, np.ndarray
        )

    def compute(self) -> AnomalyScores:
        """The same scores with every lazy array computed (one :func:`dask.compute`, one
        pass over the data); ``self`` when nothing is lazy."""
        if not self.is_lazy:
            return self
        import dask

        score, probability, obs_names, reference_score = dask.compute(
            self.score, self.probability, self.obs_names, self.reference_score
        )
        return AnomalyScores(
            score=score,
            threshold=self.threshold,
            probability=probability,
            obs_names=obs_names,
            level=self.level,
            reference_score=reference_score,
            draw_thresholds=self.draw_thresholds,
            method=self.method,
        )

    @property
    def n_draws(self) -> int:
        return int(self.draw_thresholds.shape[0])

    @property
    def n_anomalies(self) -> int:
        return int(self.is_anomaly.sum())

    @property
    def anomalies(self) -> np.ndarray:
        """Labels of the flagged observations, most anomalous first (computed for Dask
        input)."""
        if self.is_lazy:
            return self.compute().anomalies
        order = np.argsort(-self.score[self.is_anomaly], kind="stable")
        return self.obs_names[self.is_anomaly][order]

    def __len__(self) -> int:
        return int(self.score.shape[0])

    def to_dataframe(self) -> pd.DataFrame:
        """One row per observation: ``score``, ``threshold``, ``is_anomaly``,
        ``probability`` (index: the observation labels); computed for Dask input."""
        if self.is_lazy:
            return self.compute().to_dataframe()
        frame = pd.DataFrame(
            {
                "score": self.score,
                "threshold": np.full(len(self), self.threshold),
                "is_anomaly": self.is_anomaly,
                "probability": self.probability,
            },
            index=pd.Index(self.obs_names, name="obs"),
        )
        return frame

    def _headline(self) -> str:
        return (
            f"{self.n_anomalies} of {len(self)} observations flagged as anomalies "
            f"(score > {self.threshold:.4g}, the {self.level:.4g} quantile of "
            f"{self.reference_score.shape[0]} reference scores; {self.method}, "
            f"{self.n_draws} draw(s))"
        )

    def _top(self, n: int = 10) -> pd.DataFrame:
        return self.to_dataframe().sort_values("score", ascending=False, kind="stable").head(n)

    def _lazy_headline(self) -> str:
        return (
            f"lazy Dask scores of {len(self)} observations (.compute() evaluates them); "
            f"threshold {self.threshold:.4g}, the {self.level:.4g} quantile of "
            f"{self.reference_score.shape[0]} reference scores; {self.method}, "
            f"{self.n_draws} draw(s)"
        )

    def __repr__(self) -> str:
        if self.is_lazy:
            return f"AnomalyScores: {self._lazy_headline()}"
        top = self._top()
        return f"AnomalyScores: {self._headline()}\nhighest scores:\n" + top.to_string(
            float_format=lambda v: f"{v:.4g}"
        )

    def _repr_html_(self) -> str:
        if self.is_lazy:
            return f"<p><b>AnomalyScores</b>: {self._lazy_headline()}</p>"
        table = self._top().to_html(float_format=lambda v: f"{v:.4g}", border=0)
        return f"<p><b>AnomalyScores</b>: {self._headline()}; highest scores:</p>" + table


def _check_level(quantile: Any, contamination: Any) -> float:
    if quantile is not None and contamination is not None:
        raise ValueError(
            "pass either quantile or contamination, not both: contamination c is the "
            "same as quantile 1 - c."
        )
    if contamination is not None:
        if isinstance(contamination, bool) or not isinstance(contamination, numbers.Real):
            raise TypeError(f"contamination must be a number in (0, 0.5]; got {contamination!r}.")
        contamination = float(contamination)
        if not 0.0 < contamination <= 0.5:
            raise ValueError(
                "contamination (the expected share of anomalies in the reference data) "
                f"must lie in (0, 0.5]; got {contamination}."
            )
        return 1.0 - contamination
    if quantile is None:
        return 0.99
    if isinstance(quantile, bool) or not isinstance(quantile, numbers.Real):
        raise TypeError(f"quantile must be a number in (0, 1), e.g. 0.99; got {quantile!r}.")
    quantile = float(quantile)
    if not 0.0 < quantile < 1.0:
        raise ValueError(
            f"quantile must lie strictly between 0 and 1 (e.g. 0.99 flags about 1% of the "
            f"reference data); got {quantile}."
        )
    return quantile


def anomaly_scores(
    result: MixtureResult,
    X: Any = None,
    *,
    reference: Any = None,
    quantile: float | None = None,
    contamination: float | None = None,
) -> AnomalyScores:
    """Score observations by how unlikely they are under the fitted mixture.

    The score is ``-log`` of the posterior predictive density (the density for EM).
    Observations whose score exceeds the ``quantile`` of the reference data's scores
    (equivalently the ``1 - contamination`` quantile) are flagged.

    For posterior draws, each observation also gets the probability of being an
    anomaly: for every draw ``s`` the threshold ``t_s`` is the same quantile of the
    reference scores ``-log p(x_ref | theta_s)`` under that draw, and the probability
    is the fraction of draws with ``-log p(x | theta_s) > t_s``. It measures how sure
    the posterior is that the point lies in the tail; an EM result gives 0 or 1.

    Parameters
    ----------
    result : MixtureResult
        Any fitted result.
    X : array-like of shape (n_obs, n_features), optional
        Observations to score. Default: the reference data.
    reference : array-like of shape (n_ref, n_features), optional
        Data defining "normal" scores. Default: the training data of a
        :class:`~bayesmix.results.posterior.BayesResult`; required for EM results, which do
        not store their training data.
    quantile : float, optional
        Threshold quantile of the reference scores, in (0, 1). Default 0.99.
    contamination : float, optional
        Expected share of anomalies in the reference data, in (0, 0.5]; the same as
        ``quantile = 1 - contamination``. Give ``quantile`` or ``contamination``, not both.

    Returns
    -------
    AnomalyScores
        ``.score``, ``.threshold``, ``.is_anomaly``, ``.probability``,
        ``.to_dataframe()``.

    Notes
    -----
    Dask input (``X`` or ``reference`` a Dask array, DataFrame or Dask-backed xarray
    object, as accepted by ``fit``): the thresholds are computed now and exactly, the
    per-observation arrays stay lazy. A Dask ``reference``'s thresholds (the overall
    one and, for several draws, one per draw) are exact ``np.quantile`` values found by
    :func:`bayesmix.inference.em.distributed.blockwise_quantiles` in a few passes over it (about
    four, each evaluating the densities of every draw again) without holding its scores;
    an in-memory reference is scored in memory. For Dask ``X`` (or a Dask reference
    scored as ``X``) ``score``, ``is_anomaly``, ``probability``, ``reference_score``
    and ``obs_names`` (positions ``0..n-1``) are lazy Dask arrays chunked like its rows;
    :meth:`AnomalyScores.compute` evaluates them in one pass.

    Examples
    --------
    >>> import bayesmix as bm
    >>> from bayesmix.analysis.density import anomaly_scores
    >>> X = bm.datasets.load_faithful()
    >>> em = bm.GaussianMixture(2).fit(X, method="em", random_state=0)
    >>> scores = anomaly_scores(em, reference=X, contamination=0.05)
    >>> scores.n_anomalies
    14
    """
    result = check_result(result)
    level = _check_level(quantile, contamination)
    if _is_dask(X) or _is_dask(reference):
        return _dask_anomaly_scores(result, X, reference, level)
    if reference is None:
        ref = training_data(result)
        if ref is None:
            raise ValueError(
                f"reference is required for a {type(result).__name__}, which does not store "
                "its training data: pass reference=X_train (the data that define normal "
                "scores)."
            )
    else:
        ref = as_points(result, reference, name="reference")
    data = ref if X is None else as_points(result, X)
    same = data is ref
    draws = _draws(result)
    n_ref, n_obs = ref.n_obs, data.n_obs
    acc_ref = np.full(n_ref, -np.inf)
    acc_obs = np.full(0 if same else n_obs, -np.inf)
    exceed = np.zeros(n_obs)
    draw_thresholds = np.empty(draws.n_draws)
    values = ref.values if same else np.vstack([ref.values, data.values])
    for block, log_p in _iter_log_density(draws, values):  # (N_ref [+ N], S_b)
        log_ref = log_p[:n_ref]
        log_obs = log_ref if same else log_p[n_ref:]
        thresholds = np.quantile(-log_ref, level, axis=0)  # (S_b,)
        draw_thresholds[block] = thresholds
        exceed += (-log_obs > thresholds).sum(axis=1)
        acc_ref = np.logaddexp(acc_ref, _logsumexp(log_ref, axis=1))
        if not same:
            acc_obs = np.logaddexp(acc_obs, _logsumexp(log_obs, axis=1))
    log_n = np.log(draws.n_draws)
    reference_score = -(acc_ref - log_n)
    score = reference_score if same else -(acc_obs - log_n)
    return AnomalyScores(
        score=score,
        threshold=float(np.quantile(reference_score, level)),
        probability=exceed / draws.n_draws,
        obs_names=_obs_coord(data),
        level=level,
        reference_score=reference_score,
        draw_thresholds=draw_thresholds,
        method=str(result.settings.get("method", type(result).__name__)),
    )


# ---------------------------------------------------------------------------------------
# anomalies on Dask input


def _is_dask(X: Any) -> bool:
    return X is not None and is_dask_input(X)


def _score_columns(x: np.ndarray, draws: _MixtureDraws, per_draw: bool) -> Iterator:
    """``(column_slice, block)`` pairs of the anomaly scores of rows ``x``: column 0 the
    score under the posterior predictive, columns ``1..S`` (with ``per_draw``) the
    scores under each draw, computed over memory-bounded blocks of draws."""
    x = _finite_rows(x)
    acc = np.full(x.shape[0], -np.inf)
    for block, log_p in _iter_log_density(draws, x):
        acc = np.logaddexp(acc, _logsumexp(log_p, axis=1))
        if per_draw:
            yield slice(1 + block.start, 1 + block.stop), -log_p
    yield slice(0, 1), -(acc - np.log(draws.n_draws))[:, None]


def _score_block(x: np.ndarray, draws: _MixtureDraws, draw_thresholds: np.ndarray) -> np.ndarray:
    """``(n, 2)``: each row's score and the fraction of draws whose own threshold its
    per-draw score exceeds (the in-memory computation, on one chunk)."""
    x = _finite_rows(x)
    acc = np.full(x.shape[0], -np.inf)
    exceed = np.zeros(x.shape[0])
    for block, log_p in _iter_log_density(draws, x):
        exceed += (-log_p > draw_thresholds[block]).sum(axis=1)
        acc = np.logaddexp(acc, _logsumexp(log_p, axis=1))
    return np.stack([-(acc - np.log(draws.n_draws)), exceed / draws.n_draws], axis=1)


def _finite_rows(x: Any) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float64)
    if not np.isfinite(x).all():
        raise ValueError(
            "a chunk of the Dask data holds NaN or infinite values; drop or impute them "
            "before scoring (e.g. X = X[da.isfinite(X).all(axis=1)].compute_chunk_sizes())."
        )
    return x


def _dask_points(result: MixtureResult, X: Any, name: str):
    """:func:`as_points` for Dask input: the fitted feature count and, when both are
    named, the fitted feature names."""
    return _same_columns(as_dask_data(X, name=name, n_features=result.n_features), result, name)


def _lazy_scores(data, draws: _MixtureDraws, draw_thresholds: np.ndarray):
    """Lazy ``(score, probability, obs_names)`` of Dask points."""
    import dask.array as da

    rows = data.array.chunks[0]
    both = data.array.map_blocks(
        _score_block,
        draws=draws,
        draw_thresholds=draw_thresholds,
        chunks=(rows, (2,)),
        dtype=np.float64,
        meta=np.empty((0, 0)),
    )
    return both[:, 0], both[:, 1], da.arange(data.n_obs, chunks=(rows,))


def _dask_anomaly_scores(
    result: MixtureResult, X: Any, reference: Any, level: float
) -> AnomalyScores:
    from bayesmix.inference.em.distributed import blockwise_quantiles

    draws = _draws(result)
    per_draw = draws.n_draws > 1
    if _is_dask(reference):
        ref = _dask_points(result, reference, "reference")
        columns = partial(_score_columns, draws=draws, per_draw=per_draw)
        found = blockwise_quantiles(ref.array, columns, 1 + draws.n_draws * per_draw, level)
        threshold, draw_thresholds = found[0], (found[1:] if per_draw else found[:1])
        ref_lazy = _lazy_scores(ref, draws, draw_thresholds)
        reference_score = ref_lazy[0]
    else:
        if reference is None:
            ref = training_data(result)
            if ref is None:
                raise ValueError(
                    f"reference is required for a {type(result).__name__}, which does not "
                    "store its training data: pass reference=X_train (the data that "
                    "define normal scores)."
                )
        else:
            ref = as_points(result, reference, name="reference")
        reference_score, draw_thresholds = _memory_reference(draws, ref.values, level)
        threshold = float(np.quantile(reference_score, level))
    if X is None and _is_dask(reference):
        score, probability, obs_names = ref_lazy
    elif X is None:
        both = _score_block(ref.values, draws, draw_thresholds)
        score, probability, obs_names = both[:, 0], both[:, 1], _obs_coord(ref)
    elif _is_dask(X):
        score, probability, obs_names = _lazy_scores(
            _dask_points(result, X, "X"), draws, draw_thresholds
        )
    else:
        data = as_points(result, X)
        both = _score_block(data.values, draws, draw_thresholds)
        score, probability, obs_names = both[:, 0], both[:, 1], _obs_coord(data)
    return AnomalyScores(
        score=score,
        threshold=threshold,
        probability=probability,
        obs_names=obs_names,
        level=level,
        reference_score=reference_score,
        draw_thresholds=draw_thresholds,
        method=str(result.settings.get("method", type(result).__name__)),
    )


def _memory_reference(draws: _MixtureDraws, values: np.ndarray, level: float):
    """In-memory reference scores and per-draw thresholds (as in :func:`anomaly_scores`)."""
    acc = np.full(values.shape[0], -np.inf)
    draw_thresholds = np.empty(draws.n_draws)
    for block, log_p in _iter_log_density(draws, values):
        draw_thresholds[block] = np.quantile(-log_p, level, axis=0)
        acc = np.logaddexp(acc, _logsumexp(log_p, axis=1))
    return -(acc - np.log(draws.n_draws)), draw_thresholds
