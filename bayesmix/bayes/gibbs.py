"""The conjugate Gibbs sampler of a Gaussian mixture (data augmentation, Diebolt &
Robert 1994), returned as :class:`BayesResult`.

Every sweep draws, in turn,

1. the allocations ``z_n ~ Categorical(p(z_n = k | x_n, theta))``;
2. the weights ``w ~ Dirichlet(concentration + n_k)`` (through log-gamma variates, so a
   sparse prior's empty components keep a finite log weight);
3. each mean given its covariance: ``mu_k ~ Normal(A^-1 b, A^-1)`` with
   ``A = diag(1 / mean_scale^2) + n_k inv(cov_k)`` and
   ``b = mean_loc / mean_scale^2 + inv(cov_k) sum_{z_n = k} x_n``;
4. the covariances given the means, from the structure's conjugate update
   (:meth:`~bayesmix.covariance.CovarianceStructure.posterior_draw`: inverse-Wishart
   for full and tied, inverse-gamma for diag and spherical).

The allocations' statistics are the EM kernels' sufficient statistics with hard
memberships, and the priors are the declaration's own (:class:`~bayesmix.Priors`), so
the sampler targets the same posterior as NUTS. A sweep is a handful of matrix products
over all rows and components: no gradient, no step size, no tuning, and no divergences.
"""

from __future__ import annotations

import time
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from bayesmix.bayes.fit import (
    IDENTIFICATIONS,
    order_feature,
    posterior_result,
    progress_bar,
    quick_em,
    resolve_seed,
    show_progress,
)
from bayesmix.bayes.result import BayesResult
from bayesmix.data import Data
from bayesmix.ordering import resolve_order_by
from bayesmix.validation import check_choice, check_int

if TYPE_CHECKING:
    from bayesmix.covariance import CovarianceStructure
    from bayesmix.model import GaussianMixture
    from bayesmix.priors import ResolvedPriors

__all__ = ["fit_gibbs", "GibbsState", "gibbs_sweep"]

_TINY = np.finfo(float).tiny


class GibbsState:
    """The parameters of one chain: log weights, means, covariances (natural form) and
    their precision factors."""

    def __init__(self, log_weights, means, covariances, prec_chol) -> None:
        self.log_weights = log_weights
        self.means = means
        self.covariances = covariances
        self.prec_chol = prec_chol


def _log_dirichlet_draw(concentration: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """``log w`` for ``w ~ Dirichlet(concentration)``: ``Gamma(a) = Gamma(a + 1) U^(1/a)``
    keeps tiny concentrations (a sparse prior's empty components) finite in log space."""
    log_gamma = np.log(rng.gamma(concentration + 1.0)) + np.log(rng.random(concentration.size)) / (
        concentration
    )
    return log_gamma - np.logaddexp.reduce(log_gamma)


def _mean_draw(
    mass: np.ndarray,
    sum_x: np.ndarray,
    precision: np.ndarray,
    priors: ResolvedPriors,
    rng: np.random.Generator,
) -> np.ndarray:
    """Means ``(K, D)`` from their conditional posterior given the covariances (the
    prior on each coordinate is an independent normal)."""
    n_features = sum_x.shape[1]
    prior_precision = priors.mean_scale**-2.0
    posterior_precision = precision * mass[:, None, None]
    idx = np.arange(n_features)
    posterior_precision[:, idx, idx] += prior_precision
    shift = np.einsum("kde,ke->kd", precision, sum_x) + prior_precision * priors.mean_loc
    lower = np.linalg.cholesky(posterior_precision)
    centre = np.linalg.solve(posterior_precision, shift[..., None])[..., 0]
    noise = rng.standard_normal(sum_x.shape)[..., None]
    return centre + np.linalg.solve(np.swapaxes(lower, -1, -2), noise)[..., 0]


def gibbs_sweep(
    X: np.ndarray,
    state: GibbsState,
    structure: CovarianceStructure,
    priors: ResolvedPriors,
    rng: np.random.Generator,
) -> tuple[GibbsState, float, int]:
    """One sweep from ``state``: allocations, weights, means, covariances.

    Returns
    -------
    state : GibbsState
        The next state.
    log_likelihood : float
        The observed-data log-likelihood of the *incoming* state.
    occupied : int
        How many components the sweep's allocations use.
    """
    n_components = state.means.shape[0]
    log_joint = structure.log_prob(X, state.means, state.prec_chol) + state.log_weights
    log_norm = np.logaddexp.reduce(log_joint, axis=1)
    cumulative = np.cumsum(np.exp(log_joint - log_norm[:, None]), axis=1)
    u = rng.random(X.shape[0]) * cumulative[:, -1]
    allocation = np.minimum((cumulative < u[:, None]).sum(axis=1), n_components - 1)
    hard = (allocation[:, None] == np.arange(n_components)).astype(float)
    mass = hard.sum(axis=0)
    sum_x = hard.T @ X
    sum_xx = structure.second_moment(X, hard)
    log_weights = _log_dirichlet_draw(priors.weight_concentration + mass, rng)
    precision = np.broadcast_to(
        structure.precision_matrices(state.prec_chol, n_components, X.shape[1]),
        (n_components, X.shape[1], X.shape[1]),
    )
    means = _mean_draw(mass, sum_x, precision, priors, rng)
    covariances, prec_chol = structure.posterior_draw(
        mass, sum_x, sum_xx, means, priors.covariance_dof, priors.covariance_scale, rng
    )
    return (
        GibbsState(log_weights, means, covariances, prec_chol),
        float(log_norm.sum()),
        int((mass > 0).sum()),
    )


def fit_gibbs(
    model: GaussianMixture,
    data: Data,
    *,
    draws: int = 2000,
    tune: int = 500,
    chains: int = 4,
    thin: int = 1,
    identify: str = "relabel",
    order_by: Any = None,
    random_state: Any = None,
    progressbar: bool | None = None,
) -> BayesResult:
    """Sample the posterior by the conjugate Gibbs sampler; see :meth:`GaussianMixture.fit`.

    Every chain starts at the MAP-EM estimate; its first ``tune`` sweeps are discarded
    and then every ``thin``-th of ``draws * thin`` sweeps is kept.
    """
    draws = check_int(draws, "draws")
    tune = check_int(tune, "tune", minimum=0)
    chains = check_int(chains, "chains")
    thin = check_int(thin, "thin")
    identify = check_choice(identify, "identify", IDENTIFICATIONS)
    resolve_order_by(order_by, data.feature_names)
    progressbar = show_progress(progressbar)
    if np.isnan(data.values).any():
        raise ValueError(
            "method='gibbs' needs complete data; X has missing values. Fit "
            "method='nuts' with missing='marginalize', or drop the incomplete rows."
        )
    seed = resolve_seed(random_state)
    start = time.perf_counter()
    em = quick_em(model, data, seed)
    priors = model.resolve_priors(data)
    shift = data.values.mean(axis=0)  # centred data: better conditioned moments
    X, centred_priors = data.values - shift, priors.shifted(shift)
    structure = model.structure
    K, D = model.n_components, data.n_features
    weights = np.empty((chains, draws, K))
    means = np.empty((chains, draws, K, D))
    covariances = np.empty((chains, draws) + structure.natural_shape(K, D))
    log_posterior = np.empty((chains, draws))
    occupied = np.empty((chains, draws), dtype=np.int64)
    sweeps = tune + draws * thin
    start_state = GibbsState(
        np.log(np.maximum(em.weights, _TINY)),
        em.means - shift,
        em.params.covariances,
        em.params.precisions_cholesky,
    )
    with progress_bar(chains * sweeps, progressbar, "Gibbs") as advance:

        def run(chain: int) -> None:
            rng = np.random.default_rng([seed, chain])
            state = start_state
            for sweep in range(sweeps):
                kept = sweep - tune
                keep = kept >= 0 and kept % thin == 0
                if keep:
                    draw = kept // thin
                    weights[chain, draw] = np.exp(state.log_weights)
                    means[chain, draw] = state.means + shift
                    covariances[chain, draw] = state.covariances
                new_state, log_likelihood, n_occupied = gibbs_sweep(
                    X, state, structure, centred_priors, rng
                )
                if keep:
                    log_posterior[chain, draw] = log_likelihood + centred_priors.log_density(
                        np.maximum(np.exp(state.log_weights), _TINY),
                        state.means,
                        state.covariances,
                        structure,
                    )
                    occupied[chain, draw] = n_occupied
                state = new_state
                if sweep % 100 == 99:
                    advance(100)
            advance(sweeps % 100)

        for chain in range(chains):  # threads measured slower: the GIL, BLAS's own threads
            run(chain)
    weights = np.maximum(weights, _TINY)
    weights /= weights.sum(axis=-1, keepdims=True)
    full = structure.to_full(covariances.reshape((chains * draws,) + covariances.shape[2:]), K, D)
    full = np.broadcast_to(full, (chains * draws, K, D, D)).reshape(chains, draws, K, D, D)
    settings = dict(
        method="gibbs",
        sampler="gibbs",
        draws=draws,
        tune=tune,
        chains=chains,
        thin=thin,
        identify=identify,
        order_feature=data.feature_names[order_feature(data, order_by, em)],
        random_state=seed,
        seed=seed,
    )
    stats = _sample_stats(log_posterior, occupied)
    if identify == "ordered" and K > 1:
        weights, means, full = _ordered(weights, means, full, data, settings)
    with warnings.catch_warnings():
        result = posterior_result(model, data, priors, (weights, means, full), settings, stats)
    result.settings["fit_seconds"] = time.perf_counter() - start
    return result


def _ordered(weights, means, covariances, data: Data, settings: dict):
    """Every draw's components sorted by the order feature's mean: for an
    exchangeable prior, the posterior restricted to ordered means (what NUTS samples
    with ``identify="ordered"``) is the sorted draws' distribution."""
    feature = data.feature_names.index(settings["order_feature"])
    order = np.argsort(means[..., feature], axis=-1, kind="stable")
    weights = np.take_along_axis(weights, order, axis=-1)
    means = np.take_along_axis(means, order[..., None], axis=-2)
    covariances = np.take_along_axis(covariances, order[..., None, None], axis=-3)
    return weights, means, covariances


def _sample_stats(log_posterior: np.ndarray, occupied: np.ndarray) -> xr.Dataset:
    chains, draws = log_posterior.shape
    coords = {"chain": np.arange(chains), "draw": np.arange(draws)}
    return xr.Dataset(
        {
            "lp": (("chain", "draw"), log_posterior),
            "occupied_components": (("chain", "draw"), occupied),
        },
        coords=coords,
    )
