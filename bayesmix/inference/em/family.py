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

One loop serves data in memory and chunked (Dask) data: it sees the rows only through a
*source* whose passes return sums over rows — the E-step's ``(log-likelihood, mass,
statistics)``, the statistics of a start's hard assignment, and the final
log-likelihood — computed block by block by :func:`block_estep`,
:func:`block_assigned` and :func:`block_final` and added with :func:`add_statistics`.
:class:`InMemoryRows` is one block; :mod:`bayesmix.inference.em.distributed` maps the same block
functions over a Dask array's chunks and tree-sums them. A family's
:meth:`~bayesmix.families.base.ComponentFamily.prepare` of a block, given the
:class:`~bayesmix.families.base.DataSummary` of all rows, makes the blocks' statistics
add up to those of all rows; ``prepare`` of no rows gives what the M-step needs.

The iterations run with one BLAS thread: their products are tall and skinny (rows by
components or features), where OpenBLAS's threads gain nothing and, on a loaded
two-core machine, made one ``(D, N) @ (N, K D)`` product 100x slower (777 ms against
7.8 ms for 20000 x 10, K=4).
"""

from __future__ import annotations

import time
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from threadpoolctl import threadpool_limits

from bayesmix.data import Data, check_sample_weight
from bayesmix.exceptions import ConvergenceWarning, DegenerateComponentWarning
from bayesmix.families.gaussian.stats import log_normalise
from bayesmix.inference.em.convergence import ConvergenceTest
from bayesmix.inference.em.init import kmeans, nearest
from bayesmix.ordering import best_separated_feature, resolve_order_by
from bayesmix.results import EMResult
from bayesmix.validation import check_float, check_int, reproducible_rng

if TYPE_CHECKING:
    from bayesmix.families.base import ComponentFamily, Parameters
    from bayesmix.mixture import Mixture

__all__ = [
    "InMemoryRows",
    "add_statistics",
    "block_assigned",
    "block_estep",
    "block_final",
    "FamilyEMOptions",
    "fit_family_em",
    "run_family_em",
    "weights_step",
]


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
    options = FamilyEMOptions.checked(
        use_priors, n_init, max_iter, tol, random_state, order_by, data.feature_names, started
    )
    weights = check_sample_weight(sample_weight, data.n_obs)
    default_priors = model.resolve_priors(data, weights)
    source = InMemoryRows(model.family, data.values, weights)
    return run_family_em(model, source, default_priors, options)


@dataclass(frozen=True)
class FamilyEMOptions:
    """The checked options of one family EM fit, passed as one object from the fit (in
    memory, :func:`fit_family_em`; on Dask,
    :func:`~bayesmix.inference.em.distributed.fit_family_em_dask`) to
    :func:`run_family_em`.

    Attributes
    ----------
    use_priors : bool
    n_init, max_iter : int
    tol : float
    rng : numpy.random.Generator
        The fit's generator (from ``random_state``).
    seed_record : dict
        How ``random_state`` is recorded (:func:`~bayesmix.validation.reproducible_rng`).
    order_feature : int or None
        The feature whose means number the components (None: the best-separated one).
    feature_names : tuple of str
    started : float
        ``perf_counter`` time the fit began.
    """

    use_priors: bool
    n_init: int
    max_iter: int
    tol: float
    rng: np.random.Generator
    seed_record: dict[str, Any]
    order_feature: int | None
    feature_names: tuple[str, ...]
    started: float

    @classmethod
    def checked(
        cls,
        use_priors: bool,
        n_init: Any,
        max_iter: Any,
        tol: Any,
        random_state: Any,
        order_by: Any,
        feature_names: tuple[str, ...],
        started: float,
    ) -> FamilyEMOptions:
        """The options validated (``ValueError``/``TypeError`` naming the option), the
        order feature (``order_by`` among ``feature_names``) resolved and the generator
        made from ``random_state``."""
        n_init, max_iter = check_int(n_init, "n_init"), check_int(max_iter, "max_iter")
        tol = check_float(tol, "tol")
        order_feature = resolve_order_by(order_by, feature_names)
        rng, seed_record = reproducible_rng(random_state)
        return cls(
            bool(use_priors),
            n_init,
            max_iter,
            tol,
            rng,
            seed_record,
            order_feature,
            feature_names,
            started,
        )


class InMemoryRows:
    """The rows in memory as the source of :func:`run_family_em`: every pass is one
    block, the family's :meth:`prepare` of all rows computed once.

    A source has ``total_weight``, ``prepared`` (for the M-step), the rows the starts'
    k-means sees (``sample``, ``sample_weight``; ``sample_is_data`` when they are all
    the rows, in order) and three passes: :meth:`estep`, :meth:`assigned`, :meth:`final`.
    """

    sample_is_data = True

    def __init__(self, family: ComponentFamily, X: np.ndarray, weights: np.ndarray) -> None:
        self.family, self.X, self.weights = family, X, weights
        self.prepared = family.prepare(X)
        self.total_weight = weights.sum()
        self.sample, self.sample_weight = X, weights

    def estep(self, log_weights: np.ndarray, params: Parameters):
        """``(log-likelihood, mass, statistics)`` of all rows (:func:`block_estep`)."""
        return block_estep(self.family, self.X, self.weights, self.prepared, log_weights, params)

    def assigned(self, labels: np.ndarray | None, centres: np.ndarray | None, params):
        """``(mass, statistics)`` of the rows' hard assignment (:func:`block_assigned`)."""
        return block_assigned(
            self.family, self.X, self.weights, self.prepared, labels, centres, params
        )

    def final(self, log_weights: np.ndarray, params: Parameters) -> tuple[float, float]:
        """``(log-likelihood, sum_n w_n max_k log r_nk)`` (:func:`block_final`)."""
        return block_final(self.family, self.X, self.weights, self.prepared, log_weights, params)


# -- the passes over one block of rows (additive: blocks add up by add_statistics) -------


def block_estep(
    family: ComponentFamily,
    X: np.ndarray,
    weights: np.ndarray,
    prepared: Any,
    log_weights: np.ndarray,
    params: Parameters,
) -> tuple[float, np.ndarray, Parameters]:
    """The E-step of a block: its weighted log-likelihood, responsibility mass ``(K,)``
    and the family's statistics, from the family's fused pass when it has one, else
    from its log density and :meth:`statistics`."""
    fused = family.expectation(X, weights, log_weights, params, prepared)
    if fused is not None:
        return fused
    log_norm, log_resp = log_normalise(log_weights + family.log_density(X, params, prepared))
    resp = np.exp(log_resp) * weights[:, None]
    return float(weights @ log_norm), resp.sum(axis=0), family.statistics(X, resp, params, prepared)


def block_assigned(
    family: ComponentFamily,
    X: np.ndarray,
    weights: np.ndarray,
    prepared: Any,
    labels: np.ndarray | None,
    centres: np.ndarray | None,
    params: Parameters,
) -> tuple[np.ndarray, Parameters]:
    """Mass and statistics of a block's rows assigned to one component each: by
    ``labels``, or (``labels=None``) to the nearest of ``centres`` in the family's
    start transform."""
    if labels is None:
        labels, _ = nearest(family.start_transform(X), centres)
    resp = np.zeros((X.shape[0], _n_components(params)))
    resp[np.arange(X.shape[0]), labels] = weights
    return resp.sum(axis=0), family.statistics(X, resp, params, prepared)


def block_final(
    family: ComponentFamily,
    X: np.ndarray,
    weights: np.ndarray,
    prepared: Any,
    log_weights: np.ndarray,
    params: Parameters,
) -> tuple[float, float]:
    """A block's weighted log-likelihood and ``sum_n w_n max_k log r_nk`` (for ICL)."""
    log_norm, log_resp = log_normalise(log_weights + family.log_density(X, params, prepared))
    return float(weights @ log_norm), float(weights @ log_resp.max(axis=1))


def add_statistics(a: Any, b: Any) -> Any:
    """The sum of two blocks' pass results (numbers, arrays, and tuples or dicts of them)."""
    if isinstance(a, dict):
        return {key: add_statistics(a[key], b[key]) for key in a}
    if isinstance(a, tuple):
        return tuple(add_statistics(x, y) for x, y in zip(a, b, strict=True))
    return a + b


def _n_components(params: Parameters) -> int:
    return next(iter(params.values())).shape[0]


# -- the loop ---------------------------------------------------------------------------


def run_family_em(
    model: Mixture,
    source: Any,
    default_priors: dict[str, np.ndarray],
    options: FamilyEMOptions,
    **settings: Any,
) -> EMResult:
    """EM from ``options.n_init`` starts over the rows of ``source``
    (:class:`InMemoryRows` or the Dask chunks of :mod:`bayesmix.inference.em.distributed`);
    the best start's estimate, components ordered, as an :class:`EMResult` (its record
    holds ``options.seed_record`` and then ``settings``)."""
    use_priors, n_init, max_iter, tol = (
        options.use_priors,
        options.n_init,
        options.max_iter,
        options.tol,
    )
    rng, order_feature, feature_names = options.rng, options.order_feature, options.feature_names
    priors = default_priors if use_priors else None
    with threadpool_limits(1, "blas"):  # tall-skinny products; threads thrash (module notes)
        rows = _start_rows(model.family, source)
        runs = [
            _run(
                model,
                source,
                priors,
                _start(model, source, default_priors, rng, rows),
                max_iter,
                tol,
            )
            for _ in range(n_init)
        ]
        healthy = [
            run
            for run in runs
            if not _degeneracy(model, source, priors, run["params"], feature_names)
        ]
        best = max(healthy or runs, key=lambda run: run["trace"][-1])
        params = _ordered(model, best["params"], order_feature)
        with np.errstate(divide="ignore"):
            log_weights = np.log(params["weights"])
        log_likelihood, log_max_resp = source.final(log_weights, params)
    messages = _degeneracy(model, source, priors, params, feature_names)
    for message in messages:
        warnings.warn(message, DegenerateComponentWarning, stacklevel=4)
    if messages:  # every start ended on a floor: a spurious maximum, never chosen
        warnings.warn(
            f"every EM run ended on a spurious maximum of the likelihood ({len(runs)} "
            "starts): a component rests on a floor, not on the data. Fit with priors "
            "(method='map'), another family (counts: Poisson() or NegativeBinomial()) or "
            "fewer components.",
            DegenerateComponentWarning,
            stacklevel=4,
        )
    if not best["converged"]:
        warnings.warn(
            f"EM did not converge in max_iter={max_iter} iterations (tol={tol}); increase "
            "max_iter or tol, or try other starts (n_init).",
            ConvergenceWarning,
            stacklevel=4,
        )
    record = {
        "method": "map" if use_priors else "em",
        "family": model.family.name,
        "n_init": n_init,
        "max_iter": max_iter,
        "tol": tol,
        **options.seed_record,
        **settings,
        "order_feature": feature_names[_order_index(model, params, order_feature)],
        "n_spurious_runs": len(runs) - len(healthy),
    }
    record["fit_seconds"] = time.perf_counter() - options.started
    return EMResult(
        model=model,
        params=params,
        feature_names=feature_names,
        n_obs=float(source.total_weight),
        log_likelihood=float(log_likelihood),
        log_max_resp=float(log_max_resp),
        log_likelihood_trace=np.array(best["log_likelihood"]),
        log_posterior_trace=np.array(best["trace"]) if use_priors else None,
        converged=best["converged"],
        n_iter=best["n_iter"],
        priors=priors,
        settings=record,
        spurious=tuple(messages),
    )


def _degeneracy(
    model: Mixture, source: Any, priors: Any, params: Parameters, feature_names: tuple[str, ...]
) -> list[str]:
    """What a maximum-likelihood estimate owes to a floor rather than to the data (the
    family's :meth:`~bayesmix.families.base.ComponentFamily.degeneracy_messages`); none
    with priors, which keep the parameters off the floors."""
    if priors is not None:
        return []
    return model.family.degeneracy_messages(
        params, source.prepared, feature_names, float(source.total_weight)
    )


def weights_step(mass: np.ndarray, concentration: np.ndarray | None) -> np.ndarray:
    """Mixture weights from the component masses: the mass fractions, or the MAP under
    ``Dirichlet(concentration)`` (components whose mass cannot pay ``1 - alpha`` get 0)."""
    if concentration is None:
        return mass / mass.sum()
    unnormalised = np.maximum(mass + concentration - 1.0, 0.0)
    return unnormalised / unnormalised.sum()


def _start_rows(family: ComponentFamily, source: Any) -> tuple[np.ndarray, np.ndarray]:
    """The source's sample as every start reads it, computed once for all starts: the
    family's :meth:`~bayesmix.families.base.ComponentFamily.start_transform` (what
    k-means clusters) and the rows with NaN replaced by their column's mean (the
    clusters' centres)."""
    X = source.sample
    missing = np.isnan(X)
    filled = np.where(missing, np.nanmean(X, axis=0), X) if missing.any() else X
    return family.start_transform(X), filled


def _start(
    model: Mixture, source: Any, priors, rng, rows: tuple[np.ndarray, np.ndarray]
) -> Parameters:
    """MAP parameters (under the default priors, which keep a cluster of zeros off a
    zero rate) of the clusters of weighted k-means on the family's
    :meth:`~bayesmix.families.base.ComponentFamily.start_transform` of the source's
    sample (``rows``, from :func:`_start_rows`): of all rows in memory (and of chunked
    data small enough to be its own sample); otherwise every row joins the nearest
    k-means centre."""
    family, n_components = model.family, model.n_components
    X, weights = source.sample, source.sample_weight
    transformed, filled = rows
    labels = kmeans(transformed, weights, n_components, rng)
    mass = np.bincount(labels, weights=weights, minlength=n_components)
    picks = [None if mass[k] > 0 else int(rng.integers(len(X))) for k in range(n_components)]
    centres = np.stack(
        [
            filled[labels == k].mean(axis=0) if pick is None else filled[pick]
            for k, pick in enumerate(picks)
        ]
    )
    params = family.initial_parameters(X, centres, weights)
    if source.sample_is_data:
        mass, stats = source.assigned(labels, None, params)
    else:
        sums = np.stack(
            [
                np.bincount(labels, transformed[:, d] * weights, n_components)
                for d in range(X.shape[1])
            ],
            axis=1,
        )
        middles = sums / np.where(mass > 0, mass, 1.0)[:, None]
        for k, pick in enumerate(picks):
            if pick is not None:
                middles[k] = transformed[pick]
        mass, stats = source.assigned(None, middles, params)
    params = family.maximise(mass, stats, priors, params, source.prepared)
    params["weights"] = np.full(n_components, 1.0 / n_components)
    return params


def _run(model, source, priors, params, max_iter, tol) -> dict:
    """EM from ``params`` until the objective gains less than ``tol`` per observation."""
    family = model.family
    test = ConvergenceTest(source.total_weight, tol, lagged=False, reference=0.0)
    concentration = None if priors is None else priors["weight_concentration"]
    log_likelihood, trace, converged = [], [], False
    for n_iter in range(max_iter + 1):
        with np.errstate(divide="ignore"):
            log_weights = np.log(params["weights"])
        total, mass, stats = source.estep(log_weights, params)
        log_likelihood.append(float(total))
        objective = log_likelihood[-1] + (
            0.0 if priors is None else model.log_prior(params, priors)
        )
        trace.append(objective)
        if n_iter > 0 and abs(test.change(trace)) < tol:
            converged = True
            break
        if n_iter == max_iter:
            break
        params = {
            **family.maximise(mass, stats, priors, params, source.prepared),
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
