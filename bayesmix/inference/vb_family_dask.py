"""Closed-form VB of the conjugate families on Dask: full-batch CAVI and stochastic VB.

``Mixture(K, family).fit(X, method="vb")`` with ``X`` a Dask array or DataFrame fits the
variational posterior of :mod:`bayesmix.inference.vb_family` (the same priors, updates
and ELBO; every family with ``supports_vb``: ``Poisson()``, ``Bernoulli()``,
``Categorical()``, ``Normal()``, ``Independent`` products of them and
``StudentT("diag")``) without bringing ``X`` into memory. The data pass through the
route of family EM on Dask (:func:`bayesmix.inference.em.distributed.family_chunks`:
one scan that checks the data and fixes the family's settings, the default priors from
the weighted moments, the chunks prepared for the family given the summary of all
rows), and every pass maps the in-memory block functions
(:func:`~bayesmix.inference.vb_family.block_vb_estep`,
:func:`~bayesmix.inference.vb_family.block_vb_assigned`) over the chunks through
:meth:`~bayesmix.inference.em.distributed.DaskSource.map_chunks`, summed in chunk order
(:func:`~bayesmix.inference.vb_family.add_vb_statistics`), so a lost worker costs time,
not the fit (``settings["worker_losses"]`` counts the passes redone).

``mode="cavi"`` (default): the in-memory loop itself
(:func:`~bayesmix.inference.vb_family.run_family_cavi`) with the E-step summed over the
chunks: from the same start it equals the in-memory fit to rounding
(``tests/test_vb_family_dask.py``: 1e-10). The start is the in-memory one: k-means on
the family's start transform of the rows (of a seeded sample of about
``INIT_SAMPLE_ROWS`` rows when there are more, every row then joining its nearest
centre), one pass for the statistics of that hard assignment.

``mode="stochastic"``: stochastic VB (Hoffman, Blei, Wang & Paisley 2013) by the loop
of the Gaussian one (:func:`bayesmix.inference.vb_dask.run_stochastic`: the same
minibatches of chunks, step sizes ``(learning_offset + t) ^ -learning_decay``, options,
defaults and checks). Every factor's natural parameters are the prior's plus additive
statistics (the mass and the family's :meth:`vb_statistics`), so the natural-gradient
step is the convex combination of the smoothed statistics and the minibatch's scaled
by ``N / |B|``. The per-step ELBO estimate is that of the current ``q`` from the
minibatch (its log-sum-exp total scaled by ``N / |B|``, less the KL terms: unbiased
for the ELBO of ``q``). The stop rule, at the end of every epoch as the Gaussian one's,
reads the epoch's ELBO: the log-sum-exp totals of its minibatches, which hold every row
once, less the KL terms of the ``q`` of its last step (no sampling noise: the scaled
estimates smoothed by the step sizes, tried first, did not settle within ``tol`` in
1000 steps of 3 of 20 chunks on ``tests/test_vb_family_dask.py``'s 4,000 counts); converged
when it changed by less than ``tol`` per observation over an epoch. The last entry of
``result.elbo`` is one
full-data pass: the exact ELBO of the returned ``q`` (``settings["elbo"]``). A minibatch
of all chunks has ``rho = 1``: the steps are then CAVI's iterations. Ctrl-C keeps the
steps so far (the last entry of the trace is then the last step's estimate).
"""

from __future__ import annotations

import time
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from bayesmix.data import as_dask_data
from bayesmix.inference.em.distributed import family_chunks
from bayesmix.inference.em.init import kmeans
from bayesmix.inference.interrupt import warn_vb_unfinished
from bayesmix.inference.vb import resolve_seed
from bayesmix.inference.vb_dask import check_stochastic_options, dask_vb_record, run_stochastic
from bayesmix.inference.vb_family import (
    FamilyVBResult,
    add_vb_statistics,
    block_vb_assigned,
    block_vb_estep,
    combine_vb_statistics,
    family_elbo,
    family_vb_result,
    keep_best_run,
    run_family_cavi,
    start_parameters,
    vb_unsupported_message,
    vb_weight_prior,
)
from bayesmix.inference.vb_weights import (
    INTERFACE_WEIGHT_PRIORS,
    check_discount,
    expected_log_weights,
    posterior_concentration,
)
from bayesmix.ordering import resolve_order_by
from bayesmix.validation import check_choice, check_int

if TYPE_CHECKING:
    from bayesmix.mixture import Mixture
    from bayesmix.results.posterior import BayesResult

__all__ = ["VB_FAMILY_DASK_INITS", "fit_family_vb_dask"]

#: start methods on Dask input (k-means, as in memory; random responsibilities or an
#: array of them are in-memory starts)
VB_FAMILY_DASK_INITS = ("kmeans",)


class _Passes:
    """The E-step and the start over the chunks, and the family's updates: what the
    CAVI loop and :func:`~bayesmix.inference.vb_dask.run_stochastic`'s steps call."""

    def __init__(self, chunks, family, priors, weight_prior, alpha, discount) -> None:
        self.chunks, self.family, self.priors = chunks, family, priors
        self.weight_prior, self.alpha, self.discount = weight_prior, alpha, discount
        self.shared = family.vb_shared
        self.combine = partial(add_vb_statistics, self.shared)
        self.prepared = chunks.prepared

    def estep(self, log_weights: np.ndarray, q: dict, batch: list[int] | None = None):
        """``(log-likelihood, mass, statistics)`` of the chunks (all, or ``batch``)."""
        return self.chunks.map_rows(block_vb_estep, self.combine, log_weights, q, chunks=batch)

    def update(self, mass: np.ndarray, stats: Any) -> tuple[dict, np.ndarray]:
        """``(q, q(pi)'s parameters)`` from the mass and the family's statistics."""
        q = self.family.vb_posterior(stats, self.priors, self.prepared)
        concentration = posterior_concentration(
            self.weight_prior, self.alpha, mass, discount=self.discount
        )
        return q, concentration

    def start(self, n_components: int, rng: np.random.Generator):
        """The in-memory start (:func:`~bayesmix.inference.vb_family.fit_family_vb`'s
        k-means) on the scan's sample: ``(q, concentration, mass, statistics)``, the
        statistics of every row's hard assignment (to its k-means cluster when the
        sample is all rows, else to the nearest centre) in one pass."""
        chunks, family = self.chunks, self.family
        sample, weights = chunks.sample, chunks.sample_weight
        transformed = family.start_transform(sample)
        labels = kmeans(transformed, weights, n_components, rng)
        resp = np.zeros((sample.shape[0], n_components))
        resp[np.arange(sample.shape[0]), labels] = 1.0
        resp *= weights[:, None]
        params = start_parameters(family, sample, resp, weights)
        if chunks.sample_is_data:
            per_chunk = [(part,) for part in chunks.chunk_rows(labels)]
            mass, stats = chunks.map_rows(
                block_vb_assigned, self.combine, None, params, per_chunk=per_chunk
            )
        else:
            mass = resp.sum(axis=0)
            centres = (resp.T @ transformed) / np.where(mass > 0, mass, 1.0)[:, None]
            mass, stats = chunks.map_rows(block_vb_assigned, self.combine, None, centres, params)
        return (*self.update(mass, stats), mass, stats)


class _FamilySteps:
    """:func:`~bayesmix.inference.vb_dask.run_stochastic`'s steps for a conjugate
    family: ``q`` is ``(q(theta), q(pi)'s parameters)``, the smoothed statistics
    ``(mass, the family's statistics)``; the stop rule's ELBO is the epoch's (module
    docstring), summed here step by step."""

    def __init__(self, passes: _Passes) -> None:
        self.passes = passes
        self.elbo_settings = (passes.weight_prior, passes.alpha, passes.discount)
        self.epoch_log_lik, self.last_q = 0.0, None

    def _elbo(self, log_lik: float, params) -> float:
        passes = self.passes
        return family_elbo(
            passes.family, passes.priors, log_lik, params[0], params[1], self.elbo_settings
        )

    def _log_weights(self, params) -> np.ndarray:
        return expected_log_weights(self.passes.weight_prior, params[1])

    def estep(self, params, batch: list[int]):
        log_lik, mass, stats = self.passes.estep(self._log_weights(params), params[0], batch)
        if not np.isfinite(log_lik):
            raise ValueError(
                "the variational E-step gave a non-finite log-likelihood on a minibatch: X "
                f"holds values outside the {self.passes.family.name} family's support; "
                "check X."
            )
        return log_lik, mass, stats

    def scaled(self, stats, factor: float, params):
        log_lik, mass, family_stats = stats
        self.epoch_log_lik += log_lik
        self.last_q = params
        shared = self.passes.shared
        scaled = combine_vb_statistics(shared, family_stats, family_stats, factor, 0.0)
        return (factor * mass, scaled), self._elbo(factor * log_lik, params)

    def blend(self, effective, scaled, rho: float):
        return combine_vb_statistics(self.passes.shared, effective, scaled, 1.0 - rho, rho)

    def update(self, effective):
        return self.passes.update(*effective)

    def averaged(self, effective, params) -> float:
        """The epoch's ELBO: its minibatches' log-sum-exp totals (every row once) less
        the KL terms of the ``q`` of its last step; the sum starts again."""
        total, self.epoch_log_lik = self.epoch_log_lik, 0.0
        return self._elbo(total, self.last_q)

    def full_pass(self, params):
        log_lik, _, _ = self.passes.estep(self._log_weights(params), params[0])
        return params, self._elbo(log_lik, params)


def fit_family_vb_dask(
    model: Mixture,
    X: Any,
    *,
    mode: str = "cavi",
    weight_prior: str = "dirichlet",
    discount: float = 0.0,
    sample_weight: Any = None,
    n_init: int = 1,
    init: Any = "kmeans",
    max_iter: int | None = None,
    tol: float | None = None,
    batch_chunks: int | None = None,
    learning_offset: float | None = None,
    learning_decay: float | None = None,
    draws: int = 1000,
    order_by: Any = None,
    random_state: Any = None,
    missing: str = "error",
) -> BayesResult:
    """``Mixture(K, family).fit(X, method="vb")`` for Dask input, without bringing ``X``
    into memory (module docstring).

    Parameters
    ----------
    model : Mixture
        A declaration whose family has closed-form VB (``family.supports_vb``).
    X : dask.array.Array or dask.dataframe.DataFrame
        Data in the family's support; persist it (``X = X.persist()``) when it fits in
        the workers' memory, to read it once.
    mode : {"cavi", "stochastic"}, default "cavi"
        Full-batch coordinate ascent (one pass per iteration: the in-memory fit), or
        stochastic VB on minibatches of chunks.
    weight_prior, discount, sample_weight, draws, order_by, random_state, missing
        As in memory (:func:`~bayesmix.inference.vb_family.fit_family_vb_result`);
        ``sample_weight`` may be a Dask array.
    n_init : int, default 1
        Starts (each costs passes over the data); the highest final ELBO is kept.
    init : {"kmeans"}
        The in-memory start.
    max_iter : int, optional
        Iterations (CAVI, default 1000) or minibatch steps (stochastic, default 100
        epochs' worth, at least 1000).
    tol : float, optional
        The change of the ELBO per observation that counts as converged: per iteration
        (CAVI, default 1e-8 as in memory) or of the averaged ELBO over an epoch
        (stochastic, default 1e-5 as for Gaussian mixtures).
    batch_chunks, learning_offset, learning_decay : optional
        Stochastic only: chunks per minibatch (default a tenth of the chunks, at least
        one) and the step size ``(learning_offset + t) ^ -learning_decay`` (defaults 1
        and 0.6), checked as for Gaussian mixtures
        (:func:`~bayesmix.inference.vb_dask.check_stochastic_options`).

    Returns
    -------
    BayesResult
        The in-memory result's fields; ``settings`` adds ``mode``, ``backend="dask"``,
        ``n_chunks``, ``estep``, ``worker_losses`` and, stochastic, ``batch_chunks``,
        ``learning_offset``, ``learning_decay`` and ``epochs``.

    Raises
    ------
    ValueError
        A family without closed-form VB, an option out of range (named, with the fix),
        a stochastic option with ``mode="cavi"``, or data the scan finds wrong.
    TypeError
        ``init`` not a method name (responsibilities of every row are an in-memory
        start).
    WorkerLostError
        A worker died and the data cannot be recomputed.
    """
    started = time.perf_counter()
    if not model.family.supports_vb:
        raise ValueError(vb_unsupported_message(model.family))
    check_choice(weight_prior, "weight_prior", tuple(INTERFACE_WEIGHT_PRIORS))
    discount = check_discount(weight_prior, discount)
    n_init = check_int(n_init, "n_init", minimum=1)
    draws = check_int(draws, "draws")
    if not isinstance(init, str):
        raise TypeError(
            f"init on Dask input must be one of {list(VB_FAMILY_DASK_INITS)}; got "
            f"{type(init).__name__} (responsibilities of every row are an in-memory start: "
            "fit X.compute() instead)."
        )
    if init == "random":
        raise ValueError(
            "init='random' (random responsibilities of every row) is an in-memory start; "
            "on Dask input use init='kmeans' (the default), or fit X.compute()."
        )
    check_choice(init, "init", VB_FAMILY_DASK_INITS)
    data = as_dask_data(X, min_obs=model.n_components, categories=model.coding)
    feature = resolve_order_by(order_by, data.feature_names)
    n_chunks = len(data.row_chunks)
    batch_chunks, learning_offset, learning_decay, max_iter, tol = check_stochastic_options(
        n_chunks, mode, batch_chunks, learning_offset, learning_decay, max_iter, tol, 1e-8
    )
    stochastic = mode == "stochastic"
    seed = resolve_seed(random_state)
    rng = np.random.default_rng(seed)
    model, chunks, priors = family_chunks(model, data, sample_weight, missing, rng)
    source = chunks.source
    try:
        internal, alpha, discount = vb_weight_prior(model, priors, weight_prior, discount)
        passes = _Passes(chunks, model.family, priors, internal, alpha, discount)
        total = float(chunks.total_weight)
        settings = (internal, alpha, discount, max_iter, tol * total)

        def run() -> FamilyVBResult:
            q, concentration, mass, stats = passes.start(model.n_components, rng)
            if not stochastic:
                return run_family_cavi(
                    lambda log_weights, q: passes.estep(log_weights, q),
                    passes.family,
                    priors,
                    passes.prepared,
                    q,
                    concentration,
                    settings,
                    total,
                )
            params, trace, converged, _ = run_stochastic(
                _FamilySteps(passes),
                (q, concentration),
                (mass, stats),
                source.data.row_chunks,
                rng=rng,
                batch_chunks=batch_chunks,
                learning_offset=learning_offset,
                learning_decay=learning_decay,
                max_iter=max_iter,
                tol=tol,
            )
            interrupted = converged is None
            return FamilyVBResult(
                params[0],
                internal,
                np.asarray(params[1]),
                alpha,
                trace,
                bool(converged),
                len(trace) - (0 if interrupted else 1),
                total,
                interrupted,
                discount,
            )

        fit = keep_best_run(run, n_init)
    finally:
        source.close()
    warn_vb_unfinished(
        fit.interrupted,
        fit.converged,
        fit.n_iter,
        max_iter,
        tol,
        change="ELBO per observation" if not stochastic else "averaged ELBO per observation",
        stacklevel=5,
    )
    record = dict(
        n_init=n_init,
        init=init,
        max_iter=max_iter,
        tol=tol,
        **dask_vb_record(source, mode, batch_chunks, learning_offset, learning_decay, fit.n_iter),
    )
    return family_vb_result(
        model,
        data,
        fit,
        priors,
        weight_prior=weight_prior,
        draws=draws,
        feature=feature,
        seed=seed,
        rng=rng,
        settings=record,
        started=started,
    )
