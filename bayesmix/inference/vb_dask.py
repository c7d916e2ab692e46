"""Closed-form variational Bayes on Dask: full-batch CAVI and stochastic VB over chunks.

``GaussianMixture(K, covariance_type).fit(X, method="vb")`` with ``X`` a Dask array or
DataFrame fits the variational posterior of :mod:`bayesmix.inference.vb` (the same prior,
updates and lower bound) without bringing ``X`` into memory, in one of two modes:

``mode="cavi"`` (default): full-batch coordinate ascent. Every iteration is one pass over
the chunks: each chunk's responsibility-weighted statistics under ``q`` (the compiled
kernel of the in-memory E-step, with ``E[log pi_k]``, ``E[log|Lambda_k|]`` and the
Wishart's expected precision, :func:`~bayesmix.inference.vb.component_log_weights`) are
summed in chunk order, and the client runs the in-memory M-step and lower bound
(:func:`~bayesmix.inference.vb.run_cavi`, the in-memory loop itself). The fit equals the
in-memory fit to rounding (``tests/test_vb_dask.py``: 1e-10).

``mode="stochastic"``: stochastic variational inference (Hoffman, Blei, Wang & Paisley
2013, *JMLR* 14:1303). The conjugate updates make the natural parameters of ``q(pi)``
and ``q(mu_k, Lambda_k)`` the prior's plus the responsibility-weighted statistics
(mass, ``sum r x``, ``sum r x x^T``), so the natural-gradient step with step size
``rho_t`` is the same convex combination of those statistics:

    S_t = (1 - rho_t) S_(t-1) + rho_t (N / |B_t|) S(B_t),   q_t = M-step(S_t),

where ``S(B_t)`` are the statistics of the minibatch ``B_t`` (``batch_chunks`` chunks,
``|B_t|`` their rows) under ``q_(t-1)`` and ``rho_t = (learning_offset + t) ^
-learning_decay`` (``t = 0, 1, ...``). Hoffman et al.'s step size family, which
converges for decays in ``(0.5, 1]`` (Robbins-Monro). Defaults ``learning_offset = 1``
(the first step takes the first minibatch's statistics whole: the start is forgotten at
once) and ``learning_decay = 0.6``: the steps' sum, about ``t^(1 - kappa) / (1 -
kappa)``, must reach the number of CAVI iterations the data need, and it grows slowly.
Measured (``tests/test_vb_dask.py``'s data, offsets 1, 4, 16; 1-2 chunks per step):
with 0.6 every fit converged within 3e-6 nats per observation of the CAVI optimum; with
0.7 (scikit-learn's online LDA) a 3000-row fit whose CAVI takes 24 iterations stopped at
``max_iter`` up to 6e-3 short, with 0.9 up to 0.15 short; on 2e4 rows (12 CAVI
iterations) all converged within 1.5e-6. For full covariances the
recursion is exactly Hoffman et al.'s natural-gradient step on the Normal-Wishart and
Dirichlet (or Beta-stick) factors; for tied, diag and spherical it is the same recursion
on the statistics that scikit-learn's updates read. When a minibatch holds every chunk the
gradient is exact and ``rho = 1``: the steps are CAVI's iterations (tested).

Minibatches are drawn per epoch: a seeded random permutation of the chunks split into
groups of ``batch_chunks`` (every chunk once per epoch), so the sequence depends only on
``random_state`` and the chunking, never on which worker holds which chunk.

ELBO bookkeeping (``result.elbo``): after every step the noisy estimate of the lower bound
of :mod:`bayesmix.inference.vb` from the minibatch alone (its statistics and entropy
scaled by ``N / |B|``, the bound of the M-step on them), then, as the last entry, one
full-data pass: an E-step under the final ``q`` and an M-step, whose lower bound is
exactly the in-memory bound of that ``q`` and which gives the returned ``q``
(``settings["elbo"]``). The stop rule reads the averaged bound: the bound of the smoothed
statistics ``S_t`` (with the entropy smoothed alike), compared at the end of every epoch;
the fit has converged when it changed by less than ``tol`` per observation over the last
epoch, else it stops after ``max_iter`` steps. Ctrl-C during the steps returns the ``q``
reached (with an :class:`~bayesmix.InterruptedFitWarning`) without the full-data pass:
``settings["elbo"]`` is then the averaged bound.

A worker lost mid-fit costs time, not the fit: every pass goes through
:meth:`bayesmix.inference.em.distributed.DaskSource.map_chunks` (the EM's worker actors
or task graph and their recovery), whose result is the fault-free one bit for bit, so
both modes end where the fault-free fit ends (``settings["worker_losses"]`` counts the
passes redone); data that cannot be recomputed raise
:class:`~bayesmix.exceptions.WorkerLostError`.
"""

from __future__ import annotations

import math
import operator
import time
from dataclasses import replace
from functools import partial, reduce
from typing import TYPE_CHECKING, Any

import numpy as np

from bayesmix.data import Data, as_dask_data
from bayesmix.families.gaussian.stats import SufficientStats
from bayesmix.inference.em.distributed import (
    INIT_SAMPLE_ROWS,
    DaskSource,
    check_scan,
    kmeans_parallel_centres,
    sample_centres,
)
from bayesmix.inference.em.init import INIT_METHODS
from bayesmix.inference.interrupt import (
    INTERRUPTS,
    is_interrupt,
    keeps_partial_work,
    warn_vb_unfinished,
)
from bayesmix.inference.vb import (
    VBParams,
    VBResult,
    cavi_m_step,
    check_vb_model,
    component_log_weights,
    estep_entropy,
    interface_prior,
    lower_bound,
    resolve_seed,
    run_cavi,
    vb_bayes_result,
    vb_priors,
)
from bayesmix.ordering import resolve_order_by
from bayesmix.validation import check_choice, check_float, check_int

if TYPE_CHECKING:
    from bayesmix.model import GaussianMixture
    from bayesmix.results.posterior import BayesResult

__all__ = [
    "VB_DASK_MODES",
    "check_stochastic_options",
    "dask_vb_record",
    "fit_vb_dask",
    "run_stochastic",
]

#: the modes of ``fit(X_dask, method="vb", mode=...)``
VB_DASK_MODES = ("cavi", "stochastic")
#: default step size ``(learning_offset + t) ^ -learning_decay`` (module docstring)
LEARNING_OFFSET = 1.0
LEARNING_DECAY = 0.6
#: default minibatch: this share of the chunks (at least one)
BATCH_SHARE = 0.1


# -- per-chunk work (runs on the workers) ------------------------------------------------


def _vb_estep_block(x, w, shift, log_weights, means, precisions_cholesky, structure):
    """A chunk's statistics under ``q``: the in-memory VB E-step's kernel call."""
    mass, sum_x, sum_xx, log_lik, log_max = structure.fused_statistics(
        x, w, shift, log_weights, means, precisions_cholesky
    )
    return SufficientStats(mass, sum_x, sum_xx, float(log_lik), float(log_max))


def _add(*parts):
    return reduce(operator.add, parts)


def _estep(source: DaskSource, shift, structure, params: VBParams, chunks=None):
    """The E-step over the chunks (all, or ``chunks``): the summed statistics as the
    in-memory kernel returns them (mass, ``sum r x``, ``sum r x x^T``, log-sum-exp total,
    ``sum log max r``) and the entropy of ``q(z)``."""
    log_weights = component_log_weights(params)
    stats = source.map_chunks(
        _vb_estep_block,
        _add,
        shift,
        log_weights,
        params.means,
        params.precisions_cholesky,
        structure,
        chunks=chunks,
    )
    stats = (stats.mass, stats.sum_x, stats.sum_xx, stats.log_likelihood, stats.log_max_resp)
    return stats, estep_entropy(stats, params, structure, log_weights)


# -- stochastic VB -----------------------------------------------------------------------


def _batches(rng: np.random.Generator, n_chunks: int, batch_chunks: int):
    """Minibatches of chunk indices (sorted), epoch after epoch: a fresh permutation of
    the chunks per epoch, cut into groups of ``batch_chunks``; yields ``(batch,
    last_of_epoch)``."""
    while True:
        order = rng.permutation(n_chunks)
        for start in range(0, n_chunks, batch_chunks):
            batch = np.sort(order[start : start + batch_chunks])
            yield batch.tolist(), start + batch_chunks >= n_chunks


def run_stochastic(
    steps: Any,
    start: Any,
    effective: Any,
    rows: np.ndarray,
    *,
    rng: np.random.Generator,
    batch_chunks: int,
    learning_offset: float,
    learning_decay: float,
    max_iter: int,
    tol: float,
) -> tuple[Any, np.ndarray, bool | None, float]:
    """One stochastic VB run (module docstring) from ``q = start`` with smoothed
    statistics ``effective``, over chunks of ``rows`` rows each; the model's work is
    ``steps``' (Gaussian mixtures here, the conjugate families in
    :mod:`bayesmix.inference.vb_family_dask`):

    - ``steps.estep(q, batch)``: the statistics of the chunks ``batch`` under ``q``
      (``ValueError`` when they are not finite);
    - ``steps.scaled(stats, factor, q)``: ``(statistics scaled to all rows, the step's
      noisy ELBO estimate)``;
    - ``steps.blend(effective, scaled, rho)``: ``(1 - rho) effective + rho scaled``;
    - ``steps.update(effective)``: ``q`` from smoothed statistics;
    - ``steps.averaged(effective, q)``: the ELBO the stop rule compares at the end of
      every epoch (and the bound returned when interrupted);
    - ``steps.full_pass(q)``: ``(q, ELBO)`` after one pass over all the data.

    Returns the final ``q``, the trace (noisy estimates, then the full-data ELBO),
    ``converged`` (None when interrupted: then no full-data pass, the ELBO the averaged
    one) and the final ELBO."""
    rows = np.asarray(rows, dtype=float)
    n_obs, n_chunks = float(rows.sum()), len(rows)
    params = start
    trace: list[float] = []
    averaged_before = None
    converged: bool | None = False
    batches = _batches(rng, n_chunks, batch_chunks)
    try:
        for step in range(max_iter):
            batch, epoch_end = next(batches)
            stats = steps.estep(params, batch)
            scaled, noisy = steps.scaled(stats, n_obs / rows[batch].sum(), params)
            trace.append(noisy)
            rho = 1.0 if len(batch) == n_chunks else (learning_offset + step) ** -learning_decay
            effective = steps.blend(effective, scaled, rho)
            params = steps.update(effective)
            if epoch_end:
                averaged = steps.averaged(effective, params)
                if averaged_before is not None and abs(averaged - averaged_before) < tol * n_obs:
                    converged = True
                    break
                averaged_before = averaged
    except INTERRUPTS as error:  # Ctrl-C: the steps so far, without the full-data pass
        if not (is_interrupt(error) and keeps_partial_work() and trace):
            raise
        return params, np.array(trace), None, steps.averaged(effective, params)
    params, bound = steps.full_pass(params)
    trace.append(bound)
    return params, np.array(trace), converged, bound


class _GaussianSteps:
    """:func:`run_stochastic`'s steps for a Gaussian mixture: the statistics (mass,
    ``sum r x``, ``sum r x x^T``) and the entropy of ``q(z)`` (smoothed alike), the
    M-step and the lower bound of :mod:`bayesmix.inference.vb`."""

    def __init__(self, source, shift, prior, structure, reg_covar) -> None:
        self.source, self.shift, self.prior = source, shift, prior
        self.structure, self.reg_covar = structure, reg_covar

    def estep(self, params: VBParams, batch: list[int]) -> tuple:
        stats, entropy = _estep(self.source, self.shift, self.structure, params, chunks=batch)
        if not (np.isfinite(stats[3]) and np.isfinite(stats[2]).all()):
            raise ValueError(
                "the variational E-step gave non-finite statistics on a minibatch: a "
                "component's precision overflowed; consider a larger reg_covar or "
                "larger minibatches (batch_chunks)."
            )
        return (*stats[:3], entropy)

    def scaled(self, stats: tuple, factor: float, params: VBParams) -> tuple[tuple, float]:
        scaled = (stats[0] * factor, stats[1] * factor, stats[2] * factor)
        noisy = self.update(scaled)
        n_components = params.means.shape[0]
        return (*scaled, factor * stats[3]), lower_bound(
            factor * stats[3], noisy, self.structure, n_components
        )

    @staticmethod
    def blend(effective: tuple, scaled: tuple, rho: float) -> tuple:
        return tuple((1.0 - rho) * e + rho * s for e, s in zip(effective, scaled, strict=True))

    def update(self, effective: tuple) -> VBParams:
        return cavi_m_step(*effective[:3], self.prior, self.structure, self.reg_covar)

    def averaged(self, effective: tuple, params: VBParams) -> float:
        return lower_bound(effective[3], params, self.structure, params.means.shape[0])

    def full_pass(self, params: VBParams) -> tuple[VBParams, float]:
        stats, entropy = _estep(self.source, self.shift, self.structure, params)
        params = cavi_m_step(*stats[:3], self.prior, self.structure, self.reg_covar)
        return params, lower_bound(entropy, params, self.structure, params.means.shape[0])


# -- the fit -----------------------------------------------------------------------------


def _initial_stats(init: str, source, scan, shift, n_components, structure, rng):
    """The statistics of the hard assignment to the start's centres (or of random
    responsibilities), one pass over the chunks."""
    if init == "random":
        return source.random_stats(n_components, rng, shift=shift, structure=structure)
    if init == "kmeans||":
        centres = kmeans_parallel_centres(source, scan, n_components, rng)
    else:
        centres = sample_centres(init, scan, n_components, rng)
    return source.assigned_stats(centres - shift, shift=shift, structure=structure)


def _moment_data(scan, feature_names) -> Data:
    """Two equally weighted rows ``mean -+ sd`` with the data's weighted mean and
    variance: what the declaration's data-scaled priors read."""
    sd = np.sqrt(scan.m2 / scan.total_weight)
    rows = np.stack([scan.mean - sd, scan.mean + sd])
    return Data(rows, tuple(feature_names), np.arange(2))


def check_stochastic_options(
    n_chunks: int,
    mode: str,
    batch_chunks: int | None,
    learning_offset: float | None,
    learning_decay: float | None,
    max_iter: int | None,
    tol: float | None,
    cavi_tol: float,
) -> tuple[int | None, float | None, float | None, int, float]:
    """The checked ``mode`` and options of VB on ``n_chunks`` chunks with their defaults:
    ``(batch_chunks, learning_offset, learning_decay)`` (all None for ``mode="cavi"``,
    which refuses them), ``max_iter`` (1000 iterations; steps: 100 epochs' worth, at
    least 1000) and ``tol`` (CAVI: ``cavi_tol``; stochastic: 1e-5). ``ValueError``
    naming the option and the fix."""
    steps = _steps_options(n_chunks, mode, batch_chunks, learning_offset, learning_decay)
    if max_iter is None:
        max_iter = 1000
        if mode == "stochastic":
            max_iter = max(max_iter, 100 * math.ceil(n_chunks / steps[0]))
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    if tol is None:
        tol = 1e-5 if mode == "stochastic" else cavi_tol
    return (*steps, max_iter, check_float(tol, "tol", inclusive=False))


def dask_vb_record(
    source: DaskSource,
    mode: str,
    batch_chunks: int | None,
    learning_offset: float | None,
    learning_decay: float | None,
    n_iter: int,
) -> dict[str, Any]:
    """What a VB fit on Dask adds to ``settings``: ``mode``, ``backend``, ``n_chunks``,
    ``estep``, ``worker_losses`` and, stochastic, the steps' options and ``epochs``."""
    record = dict(
        mode=mode,
        backend="dask",
        n_chunks=source.n_chunks,
        estep=source.estep_path,
        worker_losses=source.worker_losses,
    )
    if mode == "stochastic":
        record.update(
            batch_chunks=batch_chunks,
            learning_offset=learning_offset,
            learning_decay=learning_decay,
            epochs=n_iter * batch_chunks / source.n_chunks,
        )
    return record


def _steps_options(n_chunks, mode, batch_chunks, learning_offset, learning_decay):
    check_choice(mode, "mode", VB_DASK_MODES)
    if mode == "cavi":
        given = [
            name
            for name, value in (
                ("batch_chunks", batch_chunks),
                ("learning_offset", learning_offset),
                ("learning_decay", learning_decay),
            )
            if value is not None
        ]
        if given:
            raise ValueError(
                f"{', '.join(given)} set the steps of stochastic VB; pass mode='stochastic' "
                "with them, or drop them for the full-batch fit (mode='cavi')."
            )
        return None, None, None
    if batch_chunks is None:
        batch_chunks = max(1, round(BATCH_SHARE * n_chunks))
    batch_chunks = check_int(batch_chunks, "batch_chunks", minimum=1)
    if batch_chunks > n_chunks:
        raise ValueError(
            f"batch_chunks must be at most the number of chunks of X ({n_chunks}); got "
            f"{batch_chunks}. Rechunk X into smaller row chunks (X.rechunk((rows, -1))) for "
            "smaller minibatches."
        )
    offset = LEARNING_OFFSET if learning_offset is None else learning_offset
    offset = check_float(offset, "learning_offset", inclusive=False)
    if offset < 1.0:
        raise ValueError(
            f"learning_offset must be >= 1 (the first step (learning_offset + 0) ^ "
            f"-learning_decay must not exceed 1: a larger one extrapolates past the "
            f"minibatch's statistics to invalid ones); got {offset!r}."
        )
    decay = LEARNING_DECAY if learning_decay is None else learning_decay
    decay = check_float(decay, "learning_decay", inclusive=False)
    if not 0.5 < decay <= 1.0:
        raise ValueError(
            f"learning_decay must be in (0.5, 1] (Robbins-Monro: the steps' sum diverges, "
            f"their squares' sum converges); got {decay!r}. Hoffman et al. 2013 use 0.5-1."
        )
    return batch_chunks, offset, decay


def fit_vb_dask(
    model: GaussianMixture,
    X: Any,
    *,
    mode: str = "cavi",
    weight_prior: str = "dirichlet",
    discount: float = 0.0,
    n_init: int = 1,
    init: str = "kmeans",
    max_iter: int | None = None,
    tol: float | None = None,
    reg_covar: float = 1e-6,
    batch_chunks: int | None = None,
    learning_offset: float | None = None,
    learning_decay: float | None = None,
    draws: int = 1000,
    order_by: Any = None,
    random_state: Any = None,
) -> BayesResult:
    """``model.fit(X, method="vb")`` for Dask input, without bringing ``X`` into memory.

    The prior, the updates, the lower bound and the result are those of the in-memory
    :func:`~bayesmix.inference.vb.fit_vb_result`; see the module docstring for the two
    modes, the step sizes and the ELBO bookkeeping.

    Parameters
    ----------
    model : GaussianMixture
        Covariance type ``full``, ``tied``, ``diag`` or ``spherical``.
    X : dask.array.Array or dask.dataframe.DataFrame
        Complete data (NaN or infinite values raise); persist it (``X = X.persist()``)
        when it fits in the workers' memory, to read it once.
    mode : {"cavi", "stochastic"}, default "cavi"
        Full-batch coordinate ascent (one pass per iteration, the in-memory fit), or
        stochastic VB on minibatches of chunks (Hoffman et al. 2013).
    weight_prior, discount, reg_covar, draws, order_by, random_state
        As in memory (``discount`` with ``weight_prior="pitman_yor"``).
    n_init : int, default 1
        Starts; the highest final lower bound is kept (each start costs passes).
    init : str, default "kmeans"
        Start method: hard assignment to centres chosen on a seeded sample of about
        ``INIT_SAMPLE_ROWS`` rows (``"kmeans++"``, ``"kmeans"``, ``"random_from_data"``,
        ``"hc"``; on at most that many rows the sample is all of ``X`` and the start is
        the in-memory one for the same seed), k-means|| over all rows (``"kmeans||"``),
        or random responsibilities (``"random"``).
    max_iter : int, optional
        Iterations (CAVI, default 1000) or minibatch steps (stochastic, default 100
        epochs' worth, at least 1000).
    tol : float, optional
        CAVI: the change of the lower bound that counts as converged (default 1e-6, as in
        memory). Stochastic: the change per observation of the averaged lower bound over
        one epoch (default 1e-5).
    batch_chunks : int, optional
        Stochastic only: chunks per minibatch (default a tenth of the chunks, at least
        one); the minibatch's statistics are scaled by ``N / |B|``.
    learning_offset, learning_decay : float, optional
        Stochastic only: the step size ``(learning_offset + t) ^ -learning_decay``
        (defaults 1 and 0.6; the decay must lie in ``(0.5, 1]``, the offset be at least
        1: the first step, ``t = 0``, is at most 1, as a larger one would extrapolate past
        the minibatch's estimate to invalid (negative) statistics).

    Returns
    -------
    BayesResult
        ``elbo`` the ELBO trace (CAVI: per iteration, never decreasing; stochastic: the
        noisy per-step estimates, then the full-data pass's ELBO); ``settings`` records
        ``mode``, ``converged``, ``n_iter``, ``worker_losses``, ``backend="dask"``,
        ``n_chunks`` and, for stochastic VB, ``batch_chunks``, ``learning_offset``,
        ``learning_decay`` and ``epochs``.

    Raises
    ------
    ValueError
        An option out of range, a stochastic option with ``mode="cavi"``, or data with
        NaN or infinite values.
    WorkerLostError
        A worker died and the data cannot be recomputed (or no worker came back).
    """
    start_time = time.perf_counter()
    structure = model.structure
    discount = check_vb_model(model, weight_prior, discount)
    n_init = check_int(n_init, "n_init", minimum=1)
    reg_covar = check_float(reg_covar, "reg_covar")
    draws = check_int(draws, "draws")
    if not isinstance(init, str):
        raise TypeError(
            f"init on Dask input must be one of {list(INIT_METHODS)}; got "
            f"{type(init).__name__} (responsibilities of every row are an in-memory "
            "start: fit X.compute() instead)."
        )
    check_choice(init, "init", INIT_METHODS)
    data = as_dask_data(X, min_obs=model.n_components)
    feature = resolve_order_by(order_by, data.feature_names)
    source = DaskSource(data, None)
    batch_chunks, learning_offset, learning_decay, max_iter, tol = check_stochastic_options(
        source.n_chunks, mode, batch_chunks, learning_offset, learning_decay, max_iter, tol, 1e-6
    )
    stochastic = mode == "stochastic"
    seed = resolve_seed(random_state)
    rng = np.random.default_rng(seed)
    try:
        scan = source.scan(rng, INIT_SAMPLE_ROWS)
        check_scan(scan, data, model.n_components)
        moments = _moment_data(scan, data.feature_names)
        resolved = vb_priors(model, moments, weight_prior)
        prior = interface_prior(model, moments, resolved, weight_prior, discount)
        shift = scan.mean
        shifted_prior = prior.shifted(shift)
        estep = partial(_estep, source, shift, structure)
        best: VBResult | None = None
        for _ in range(n_init):
            stats = _initial_stats(init, source, scan, shift, model.n_components, structure, rng)
            start = cavi_m_step(
                stats.mass, stats.sum_x, stats.sum_xx, shifted_prior, structure, reg_covar
            )
            if stochastic:
                params, trace, converged, bound = run_stochastic(
                    _GaussianSteps(source, shift, shifted_prior, structure, reg_covar),
                    start,
                    (stats.mass, stats.sum_x, stats.sum_xx, 0.0),
                    source.data.row_chunks,
                    rng=rng,
                    batch_chunks=batch_chunks,
                    learning_offset=learning_offset,
                    learning_decay=learning_decay,
                    max_iter=max_iter,
                    tol=tol,
                )
            else:
                params, trace, converged = run_cavi(
                    estep, start, shifted_prior, structure, max_iter, tol, reg_covar
                )
                bound = float(trace[-1])
            interrupted = converged is None
            result = VBResult(
                params.shifted(-shift),
                prior,
                structure,
                bound,
                trace,
                bool(converged),
                len(trace) - (1 if stochastic and not interrupted else 0),
                scan.total_weight,
                interrupted,
            )
            if best is None or result.lower_bound > best.lower_bound:
                best = result
            if interrupted:
                best = replace(best, converged=False, interrupted=True)
                break
    finally:
        source.close()
    warn_vb_unfinished(best.interrupted, best.converged, best.n_iter, max_iter, tol)
    settings = dict(
        weight_prior=weight_prior,
        n_init=n_init,
        init=init,
        max_iter=max_iter,
        tol=tol,
        reg_covar=reg_covar,
        random_state=seed,
        seed=seed,
        **dask_vb_record(source, mode, batch_chunks, learning_offset, learning_decay, best.n_iter),
    )
    return vb_bayes_result(
        model,
        data,
        best,
        resolved,
        draws=draws,
        feature=feature,
        rng=rng,
        settings=settings,
        start_time=start_time,
    )
