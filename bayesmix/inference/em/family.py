"""EM and MAP-EM for mixtures of any component family (:mod:`bayesmix.families`).

Every iteration is the family's additive statistics of the responsibility-weighted rows
followed by its M-step. The log-likelihood, responsibilities and statistics come from the
family's fused pass over the rows when it has one
(:meth:`~bayesmix.families.base.ComponentFamily.expectation`; Poisson, negative
binomial, Student-t), else from its log density, normalised here, and its
statistics. The weights take the Dirichlet's MAP (or the mass fractions without
priors). Starts: weighted k-means on the family's start transform of the data
(square roots for counts, which stabilise their variances; the data themselves
otherwise), each start from its own seeds; the start with the largest objective
(log-likelihood, or log posterior for MAP) is kept.

The iterations run with one BLAS thread: their products are tall and skinny (rows by
components or features), where OpenBLAS's threads gain nothing and, on a loaded
two-core machine, made one ``(D, N) @ (N, K D)`` product 100x slower (777 ms against
7.8 ms for 20000 x 10, K=4).
"""

from __future__ import annotations

import time
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
from threadpoolctl import threadpool_limits

from bayesmix.data import Data, check_sample_weight
from bayesmix.exceptions import ConvergenceWarning
from bayesmix.families.gaussian.stats import log_normalise
from bayesmix.inference.em.convergence import ConvergenceTest
from bayesmix.inference.em.init import kmeans
from bayesmix.ordering import best_separated_feature, resolve_order_by
from bayesmix.results import EMResult
from bayesmix.validation import check_float, check_int, reproducible_rng

if TYPE_CHECKING:
    from bayesmix.families.base import Parameters
    from bayesmix.mixture import Mixture

__all__ = ["fit_family_em", "weights_step"]


def fit_family_em(
    model: Mixture,
    data: Data,
    *,
    use_priors: bool,
    sample_weight: Any = None,
    n_init: int = 10,
    max_iter: int = 1000,
    tol: float = 1e-8,
    random_state: Any = None,
    order_by: Any = None,
) -> EMResult:
    """Maximum-likelihood (``use_priors=False``) or MAP estimate by EM.

    Parameters
    ----------
    model : Mixture
    data : Data
        Validated observations in the family's support.
    use_priors : bool
    sample_weight : array-like of shape (n_obs,), optional
        Frequency weights.
    n_init : int
        Starts (k-means on ``sqrt(X)``, each from its own seeds).
    max_iter : int
        Iterations per start.
    tol : float
        Convergence: the objective's gain per (weighted) observation still to come,
        projected by Aitken's acceleration
        (:class:`~bayesmix.inference.em.convergence.ConvergenceTest`, as for Gaussians).
    random_state : int, Generator or None
    order_by : str or int, optional
        Feature whose component means number the components (default: the
        best-separated feature).

    Returns
    -------
    EMResult
    """
    started = time.perf_counter()
    n_init = check_int(n_init, "n_init")
    max_iter = check_int(max_iter, "max_iter")
    tol = check_float(tol, "tol")
    weights = check_sample_weight(sample_weight, data.n_obs)
    order_feature = resolve_order_by(order_by, data.feature_names)
    rng, seed_record = reproducible_rng(random_state)
    default_priors = model.resolve_priors(data, weights)
    priors = default_priors if use_priors else None
    X = data.values
    prepared = model.family.prepare(X)
    with threadpool_limits(1, "blas"):  # tall-skinny products; threads thrash (module notes)
        runs = [
            _run(
                model,
                X,
                weights,
                priors,
                prepared,
                _start(model, X, weights, prepared, default_priors, rng),
                max_iter,
                tol,
            )
            for _ in range(n_init)
        ]
    best = max(runs, key=lambda run: run["trace"][-1])
    if not best["converged"]:
        warnings.warn(
            f"EM did not converge in max_iter={max_iter} iterations (tol={tol}); increase "
            "max_iter or tol, or try other starts (n_init).",
            ConvergenceWarning,
            stacklevel=3,
        )
    params = _ordered(model, best["params"], order_feature)
    log_norm, log_resp = log_normalise(model.log_joint(X, params, prepared))
    settings = {
        "method": "map" if use_priors else "em",
        "family": model.family.name,
        "n_init": n_init,
        "max_iter": max_iter,
        "tol": tol,
        **seed_record,
        "order_feature": data.feature_names[_order_index(model, params, order_feature)],
        "fit_seconds": time.perf_counter() - started,
    }
    return EMResult(
        model=model,
        params=params,
        feature_names=data.feature_names,
        n_obs=float(weights.sum()),
        log_likelihood=float(weights @ log_norm),
        log_max_resp=float(weights @ log_resp.max(axis=1)),
        log_likelihood_trace=np.array(best["log_likelihood"]),
        log_posterior_trace=np.array(best["trace"]) if use_priors else None,
        converged=best["converged"],
        n_iter=best["n_iter"],
        priors=priors,
        settings=settings,
    )


def weights_step(mass: np.ndarray, concentration: np.ndarray | None) -> np.ndarray:
    """Mixture weights from the component masses: the mass fractions, or the MAP under
    ``Dirichlet(concentration)`` (components whose mass cannot pay ``1 - alpha`` get 0)."""
    if concentration is None:
        return mass / mass.sum()
    unnormalised = np.maximum(mass + concentration - 1.0, 0.0)
    return unnormalised / unnormalised.sum()


def _start(model: Mixture, X, weights, prepared, priors, rng) -> Parameters:
    """MAP parameters (under the default priors, which keep a cluster of zeros off a
    zero rate) of the clusters of weighted k-means on the family's
    :meth:`~bayesmix.families.base.ComponentFamily.start_transform` of ``X``."""
    n_components = model.n_components
    labels = kmeans(model.family.start_transform(X), weights, n_components, rng)
    resp = np.zeros((X.shape[0], n_components))
    resp[np.arange(X.shape[0]), labels] = weights
    mass = resp.sum(axis=0)
    filled = np.where(np.isnan(X), np.nanmean(X, axis=0), X) if np.isnan(X).any() else X
    centres = np.stack(
        [
            filled[labels == k].mean(axis=0) if mass[k] > 0 else filled[rng.integers(len(X))]
            for k in range(n_components)
        ]
    )
    params = model.family.initial_parameters(X, centres, weights)
    stats = model.family.statistics(X, resp, params, prepared)
    params = model.family.maximise(mass, stats, priors, params, prepared)
    params["weights"] = np.full(n_components, 1.0 / n_components)
    return params


def _run(model, X, weights, priors, prepared, params, max_iter, tol) -> dict:
    """EM from ``params`` until the objective gains less than ``tol`` per observation."""
    family, total = model.family, weights.sum()
    test = ConvergenceTest(total, tol, lagged=False, reference=0.0)
    concentration = None if priors is None else priors["weight_concentration"]
    log_likelihood, trace, converged = [], [], False
    for n_iter in range(max_iter + 1):
        with np.errstate(divide="ignore"):
            log_weights = np.log(params["weights"])
        fused = family.expectation(X, weights, log_weights, params, prepared)
        if fused is None:
            log_norm, log_resp = log_normalise(model.log_joint(X, params, prepared))
            log_likelihood.append(float(weights @ log_norm))
        else:
            log_likelihood.append(fused[0])
        objective = log_likelihood[-1] + (
            0.0 if priors is None else model.log_prior(params, priors)
        )
        trace.append(objective)
        if n_iter > 0 and abs(test.change(trace)) < tol:
            converged = True
            break
        if n_iter == max_iter:
            break
        if fused is None:
            resp = np.exp(log_resp) * weights[:, None]
            mass = resp.sum(axis=0)
            stats = family.statistics(X, resp, params, prepared)
        else:
            mass, stats = fused[1], fused[2]
        params = {
            **family.maximise(mass, stats, priors, params, prepared),
            "weights": weights_step(mass, concentration),
        }
    return {
        "params": params,
        "trace": trace,
        "log_likelihood": log_likelihood,
        "converged": converged,
        "n_iter": n_iter,
    }


def _order_index(model: Mixture, params: Parameters, order_feature: int | None) -> int:
    if order_feature is not None:
        return order_feature
    means = model.family.component_means(params)
    variances = model.family.component_variances(params)
    return best_separated_feature(means, variances[..., None] * np.eye(means.shape[1]))


def _ordered(model: Mixture, params: Parameters, order_feature: int | None) -> Parameters:
    """Components numbered by ascending mean of the order feature."""
    feature = _order_index(model, params, order_feature)
    perm = np.argsort(model.family.component_means(params)[:, feature], kind="stable")
    return {name: value[perm] for name, value in params.items()}
