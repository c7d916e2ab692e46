"""EM iterations inside one compiled call, for small data in memory.

On a few hundred rows an EM iteration is a 10 us E-step pass and a 2 us M-step, but
driving them from Python (the statistics, the M-step's numpy calls, the precision
factors, the convergence test) cost about 100-300 us an iteration: mclust's table of 14
models x 9 component counts makes about 25,000 iterations on iris. Here the M-step of a
structure, its precision factors, the one-chunk E-step kernel of
:mod:`bayesmix.families.gaussian.kernels` and the convergence test run in one compiled
loop, called with the number of iterations it may make.

The loop keeps to the regular case: maximum likelihood (no priors), every component with
responsibility mass, covariances positive definite, a finite log-likelihood. Before an
iteration that is not regular it returns, with the parameters and statistics of the last
regular one, and the caller makes that iteration the general way (the M-step's
re-seeding, jitter and warnings) before calling it again.

Each loop is a twin of :func:`_em_loop` compiled for one storage of the covariances
(``full``, ``tied``, ``diag``, ``spherical``, ``shared_diag``, ``shared_spherical``) and,
like the E-step kernels, compiled by a child process and loaded from numba's disk cache,
so every process runs the same machine code (bitwise reproducible fits).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numba as nb
import numpy as np

from bayesmix.families.gaussian import constrained_kernels, covariance, kernels
from bayesmix.families.gaussian.constrained_kernels import MODELS
from bayesmix.families.gaussian.stats import Params, SufficientStats
from bayesmix.inference.em import convergence, squarem
from bayesmix.inference.em.convergence import projected_change
from bayesmix.inference.em.squarem import (
    accelerated_change,
    acceleration_state,
    adapted_step_max,
    extrapolated,
    squared_steps,
    step_length,
)
from bayesmix.inference.interrupt import deferred_sigint
from bayesmix.jit import cached_twin, read_only

__all__ = ["LOOP_KINDS", "LoopStep", "compile_loop", "compiled_loop"]

# what the M-step adds to every mass (scikit-learn's; stats.MASS_EPS)
MASS_EPS = 10 * np.finfo(np.float64).eps

#: Data with more rows are left to the general route, whose E-step runs the chunks on
#: all threads: there a pass costs more than the Python around it.
MAX_ROWS = 16_384

# statuses of a loop call
RUNNING, CONVERGED, IRREGULAR, CAPPED = 0, 1, 2, 3


@dataclass(frozen=True)
class LoopStep:
    """What one call of a compiled loop did.

    Attributes
    ----------
    objectives : list of float
        The log-likelihoods of the iterations made.
    converged : bool
        Whether the run converged under the convergence test.
    capped : bool
        Whether it stopped after an M-step whose inner iterations stopped at
        ``INNER_MAX_ITER``.
    n_extrapolated : int
        E-steps made at extrapolated points (not iterations: the work beyond them).
    first : float
        The start's log-likelihood, where the call started the run (NaN otherwise, and
        where the start was left to the general route).
    """

    objectives: list
    converged: bool
    capped: bool
    n_extrapolated: int
    first: float = math.nan


# Functions here that call kernels of other modules are not cached on disk by themselves:
# numba keys a cached function by its own file's time stamp only, so a cached one would
# keep the callees' code of the day it was compiled (the constrained M-steps of before
# 65b3742 ran in the loop, twice as slow as the current ones, until this file changed).
# They are compiled into each loop twin, whose cache name holds the digest of those
# modules' sources (:func:`_twin`).
_UNCACHED = {"cache": False}


# -- M-steps: (mass, sum_x, sum_xx, reg, previous covariances, whether there are any
#    (a run's first M-step has none), constrained model's code, inner tol, inner
#    max_iter) -> weights, means, covariances, whether the inner iterations converged and
#    their last relative change (the closed forms ignore the last five arguments) --------
@nb.njit(cache=True, inline="always")
def _weights_means(mass, sum_x):
    mass = mass + MASS_EPS
    return mass, mass / mass.sum(), sum_x / mass.reshape((-1, 1))


@nb.njit(cache=True)
def _mstep_full(mass, sum_x, sum_xx, reg, previous, has_previous, code, tol, max_iter):
    mass, weights, means = _weights_means(mass, sum_x)
    n_components, n_features = means.shape
    cov = np.empty((n_components, n_features, n_features))
    for k in range(n_components):
        for i in range(n_features):
            for j in range(i + 1):
                scatter = (
                    sum_xx[k, i, j]
                    - sum_x[k, i] * means[k, j]
                    - means[k, i] * sum_x[k, j]
                    + mass[k] * means[k, i] * means[k, j]
                )
                cov[k, i, j] = cov[k, j, i] = scatter / mass[k]
            cov[k, i, i] += reg[i]
    return weights, means, cov, True, 0.0


@nb.njit(cache=True)
def _mstep_tied(mass, sum_x, sum_xx, reg, previous, has_previous, code, tol, max_iter):
    mass, weights, means = _weights_means(mass, sum_x)
    n_components, n_features = means.shape
    cov = np.empty((n_features, n_features))
    total = mass.sum()
    for i in range(n_features):
        for j in range(i + 1):
            scatter = sum_xx[i, j]
            for k in range(n_components):
                scatter += (
                    mass[k] * means[k, i] * means[k, j]
                    - sum_x[k, i] * means[k, j]
                    - means[k, i] * sum_x[k, j]
                )
            cov[i, j] = cov[j, i] = scatter / total
        cov[i, i] += reg[i]
    return weights, means, cov, True, 0.0


@nb.njit(cache=True, inline="always")
def _axis_scatter(mass, sum_x, sum_xx, means):
    """``sum r (x_d - mu_kd)^2`` ``(K, D)`` from raw moments, floored at zero."""
    return np.maximum(sum_xx - 2.0 * sum_x * means + mass.reshape((-1, 1)) * means**2, 0.0)


@nb.njit(cache=True)
def _mstep_diag(mass, sum_x, sum_xx, reg, previous, has_previous, code, tol, max_iter):
    mass, weights, means = _weights_means(mass, sum_x)
    cov = _axis_scatter(mass, sum_x, sum_xx, means) / mass.reshape((-1, 1)) + reg
    return weights, means, cov, True, 0.0


@nb.njit(cache=True)
def _mstep_spherical(mass, sum_x, sum_xx, reg, previous, has_previous, code, tol, max_iter):
    mass, weights, means = _weights_means(mass, sum_x)
    n_features = means.shape[1]
    scatter = np.maximum(
        sum_xx - 2.0 * (sum_x * means).sum(axis=1) + mass * (means**2).sum(axis=1), 0.0
    )
    return weights, means, scatter / (mass * n_features) + reg.mean(), True, 0.0


@nb.njit(cache=True)
def _mstep_shared_diag(mass, sum_x, sum_xx, reg, previous, has_previous, code, tol, max_iter):
    mass, weights, means = _weights_means(mass, sum_x)
    raw = sum_xx - 2.0 * (sum_x * means).sum(axis=0)  # sum_xx pooled: (D,)
    scatter = np.maximum(raw + (mass.reshape((-1, 1)) * means**2).sum(axis=0), 0.0)
    return weights, means, scatter / mass.sum() + reg, True, 0.0


@nb.njit(cache=True)
def _mstep_shared_spherical(mass, sum_x, sum_xx, reg, previous, has_previous, code, tol, max_iter):
    mass, weights, means = _weights_means(mass, sum_x)
    n_features = means.shape[1]
    raw = sum_xx.sum() - 2.0 * (sum_x * means).sum() + (mass * (means**2).sum(axis=1)).sum()
    cov = np.empty(1)
    cov[0] = max(raw, 0.0) / (mass.sum() * n_features) + reg.mean()
    return weights, means, cov, True, 0.0


@nb.njit(**_UNCACHED)
def _mstep_diag_constrained(mass, sum_x, sum_xx, reg, previous, has_previous, code, tol, max_iter):
    mass, weights, means = _weights_means(mass, sum_x)
    cov, _, converged, change = constrained_kernels.diag_m_step(
        code,
        mass,
        sum_x,
        sum_xx,
        means,
        False,
        0.0,
        sum_xx,
        reg,
        previous,
        has_previous,
        tol,
        max_iter,
    )
    return weights, means, cov, converged, change


@nb.njit(**_UNCACHED)
def _mstep_matrix_constrained(
    mass, sum_x, sum_xx, reg, previous, has_previous, code, tol, max_iter
):
    mass, weights, means = _weights_means(mass, sum_x)
    cov, _, converged, change = constrained_kernels.matrix_m_step(
        code,
        mass,
        sum_x,
        sum_xx,
        means,
        False,
        0.0,
        sum_xx,
        reg,
        previous,
        has_previous,
        tol,
        max_iter,
    )
    return weights, means, cov, converged, change


# -- precision factors: (means, cov) -> ok, natural factors, the E-step kernel's scale,
#    its means argument and log det of the precision factors per component -------------
@nb.njit(**_UNCACHED)
def _factors_full(means, cov):
    lower, ok = kernels.cholesky_lower(cov)
    inverse = kernels.lower_inverse(lower) if ok else lower  # U^T, inv(cov) = U U^T
    n_components, n_features = means.shape
    log_det = np.zeros(n_components)
    for k in range(n_components):
        for d in range(n_features):
            log_det[k] += math.log(inverse[k, d, d]) if ok else 0.0
    return ok, np.ascontiguousarray(inverse.transpose(0, 2, 1)), inverse, means, log_det


@nb.njit(**_UNCACHED)
def _factors_tied(means, cov):
    n_features = cov.shape[0]
    lower, ok = kernels.cholesky_lower(cov.reshape((1, n_features, n_features)))
    inverse = (kernels.lower_inverse(lower) if ok else lower)[0]
    upper = np.ascontiguousarray(inverse.T)
    log_det = 0.0
    for d in range(n_features):
        log_det += math.log(inverse[d, d]) if ok else 0.0
    return ok, upper, inverse, means @ upper, np.full(means.shape[0], log_det)


@nb.njit(cache=True)
def _factors_diag(means, cov):
    ok = np.all(cov > 0.0)
    factor = 1.0 / np.sqrt(np.maximum(cov, 1e-300))
    return ok, factor, factor**2, means, np.log(factor).sum(axis=1)


@nb.njit(cache=True)
def _factors_spherical(means, cov):
    ok = np.all(cov > 0.0)
    factor = 1.0 / np.sqrt(np.maximum(cov, 1e-300))
    return ok, factor, factor**2, means, means.shape[1] * np.log(factor)


@nb.njit(cache=True)
def _factors_shared_diag(means, cov):
    ok = np.all(cov > 0.0)
    factor = 1.0 / np.sqrt(np.maximum(cov, 1e-300))
    n_components = means.shape[0]
    precision = np.empty(means.shape)
    for k in range(n_components):
        precision[k] = factor**2
    return ok, factor, precision, means, np.full(n_components, np.log(factor).sum())


@nb.njit(cache=True)
def _factors_shared_spherical(means, cov):
    ok = cov[0] > 0.0
    factor = 1.0 / np.sqrt(np.maximum(cov, 1e-300))
    n_components, n_features = means.shape
    precision = np.full(n_components, factor[0] ** 2)
    return ok, factor, precision, means, np.full(n_components, n_features * np.log(factor[0]))


# -- the statistics in the structure's form, from the kernel's summed over chunks ---------
@nb.njit(cache=True)
def _mirrored(sum_xx):
    """The kernel fills the lower triangle of each matrix: mirror it (in place)."""
    out = sum_xx
    size = out.shape[-1]
    flat = out.reshape((-1, size, size))
    for b in range(flat.shape[0]):
        for i in range(size):
            for j in range(i):
                flat[b, j, i] = flat[b, i, j]
    return out


@nb.njit(cache=True)
def _as_is(sum_xx):
    return sum_xx


@nb.njit(cache=True)
def _pooled_features(sum_xx):
    return sum_xx.sum(axis=0)


@nb.njit(cache=True)
def _pooled_all(sum_xx):
    out = np.empty(1)
    out[0] = sum_xx.sum()
    return out


# The parts the loop calls: each compiled twin binds its kind's (:func:`_twin`).
_estep = _mstep = _factors = _pool = _expectation = _em_iteration = None


# Explicit loops below rather than array expressions and ``sum(axis=...)``: numba
# compiles those with generic reduction and shape-error code, which took most of a loop
# twin's compile time (measured with numba's "numba:compile" events).
@nb.njit(cache=True)
def _chunk_sum(per_chunk):
    """``per_chunk.sum(axis=0)`` of a C-contiguous array, the chunks added in order."""
    n_chunks = per_chunk.shape[0]
    flat = per_chunk.reshape((n_chunks, per_chunk.size // n_chunks))
    out = flat[0].copy()
    for chunk in range(1, n_chunks):
        for i in range(out.size):
            out[i] += flat[chunk, i]
    return out.reshape(per_chunk.shape[1:])


@nb.njit(cache=True)
def _has_empty_component(mass):
    """Whether a component's responsibility mass is at most 1e-12 of the total."""
    total = 0.0
    for k in range(mass.size):
        total += mass[k]
    for k in range(mass.size):
        if mass[k] <= 1e-12 * total:
            return True
    return False


@nb.njit(cache=True)
def _all_positive(values):
    for i in range(values.size):
        if not values[i] > 0.0:
            return False
    return True


def _expectation_template(X, sample_weight, shift, n_chunks, weights, centres, scale, log_det):
    """The statistics ``(mass, sum_x, sum_xx, log_lik, log_max)`` at the parameters whose
    E-step arguments are given, over ``n_chunks`` chunks of the rows (the chunks' sums
    added in order, as :mod:`~bayesmix.families.gaussian.kernels` does)."""
    raw = _estep(X, sample_weight, shift, np.log(weights), centres, scale, log_det, n_chunks)
    pooled = _pool(_chunk_sum(raw[2]))
    return (_chunk_sum(raw[0]), _chunk_sum(raw[1]), pooled, raw[3].sum(), raw[4].sum())


def _em_iteration_template(
    X, sample_weight, shift, n_chunks, state, stats, previous, has_previous, reg, inner
):
    """One EM iteration from ``state`` and its statistics ``stats``: ``(regular, state,
    stats, inner_ok, inner_change)``, with the state and statistics given back unchanged
    where the iteration is not regular (a component without mass, covariances not
    positive definite, a log-likelihood not finite). ``previous``: the covariances the
    constrained M-steps' inner iterations start from, where ``has_previous`` (not at a
    run's start, whose M-step is made from the start's statistics alone)."""
    mass, sum_x, sum_xx = stats[0], stats[1], stats[2]
    if _has_empty_component(mass):
        return False, state, stats, True, 0.0
    weights, means, cov, inner_ok, inner_change = _mstep(
        mass, sum_x, sum_xx, reg, previous, has_previous, *inner
    )
    ok, factors, scale, centres, log_det = _factors(means, cov)
    if not ok:
        return False, state, stats, True, 0.0
    following = _expectation(X, sample_weight, shift, n_chunks, weights, centres, scale, log_det)
    if not math.isfinite(following[3]):
        return False, state, stats, True, 0.0
    return True, (weights, means, cov, factors), following, inner_ok, inner_change


@nb.njit(**_UNCACHED)
def _extrapolation(start, middle, end, step_max):
    """SQUAREM's step from the cycle's three states (:mod:`~bayesmix.inference.em.squarem`):
    the step length and the extrapolated weights, means and covariances."""
    r_weights, v_weights = squared_steps(start[0], middle[0], end[0])
    r_means, v_means = squared_steps(start[1], middle[1], end[1])
    r_cov, v_cov = squared_steps(start[2], middle[2], end[2])
    step = step_length(r_weights + r_means + r_cov, v_weights + v_means + v_cov, step_max)
    return (
        step,
        extrapolated(start[0], middle[0], end[0], step),
        extrapolated(start[1], middle[1], end[1], step),
        extrapolated(start[2], middle[2], end[2], step),
    )


def _em_loop(
    X,
    sample_weight,
    shift,
    n_chunks,
    state,
    stats,
    fresh,
    reg,
    n_steps,
    tol,
    total_weight,
    recent,
    inner,
    acceleration,
):
    """Up to ``n_steps`` EM iterations from ``state = (weights, means, cov, factors)``
    and its statistics ``stats = (mass, sum_x, sum_xx, log_lik, log_max)``, the E-step
    over ``n_chunks`` chunks of the rows (``kernels.n_chunks_for``: the chunks of the
    parallel kernel, so the sums are those of the general route) in this thread.

    ``fresh``: the run starts here. ``stats`` then holds the start's statistics (those
    of its responsibilities; the log-likelihoods are ignored) and ``state`` only gives
    the shapes: the start's state is the M-step from them (without previous
    covariances) and its E-step, as a run's first state on the general route; its
    log-likelihood is returned as ``first`` and ``recent`` is ignored. Where that first
    iteration is not regular nothing is made (``first`` is NaN): the caller starts the
    run the general way.

    ``recent`` holds the last three objectives (NaN where there are fewer; the newest
    last); ``inner = (code, tol, max_iter)``: the constrained model's index in
    :data:`~bayesmix.families.gaussian.constrained_kernels.MODELS` and its inner
    iterations' stopping rule.

    ``acceleration = [step_max, rate, ...]``
    (:func:`~bayesmix.inference.em.squarem.acceleration_state`): with ``step_max`` >= 1
    SQUAREM accelerates EM (:mod:`~bayesmix.inference.em.squarem`; 0 for plain EM): every
    two iterations the
    run extrapolates, makes one iteration from the extrapolated point and keeps it if its
    log-likelihood is at least that of the second iteration. The objectives recorded are
    those of the EM iterations kept (from EM's own parameters, never from an extrapolated
    point), and the convergence test is
    :func:`~bayesmix.inference.em.squarem.accelerated_change`, made only where the last
    three are EM iterations in a row, with the rates of its previous tests.
    ``acceleration`` is updated in place.

    Returns the state and statistics after the last regular iteration, ``first`` (the
    start's log-likelihood where ``fresh``, else NaN), the objectives
    ``(n_steps,)`` of which the first ``n_made`` were made, ``n_made``, and the status:
    ``CONVERGED``, ``IRREGULAR`` (the next iteration needs the general route),
    ``CAPPED`` (the last M-step stopped its inner iterations at ``max_iter``: still an
    improvement, kept as in the general route, but the sign of a component collapsing, for
    the caller to judge) or ``RUNNING`` (``n_steps`` made), how many M-steps were
    capped (0 or 1) with the last relative change of their inner iterations, and the
    number of E-steps at extrapolated points.
    """
    objectives = np.empty(n_steps)
    older, previous, newest = recent[0], recent[1], recent[2]
    capped, capped_change, n_extrapolated = 0, 0.0, 0
    first = np.nan
    if fresh:  # the start's state: the M-step from its statistics and the E-step
        regular, state, stats, inner_ok, inner_change = _em_iteration(
            X, sample_weight, shift, n_chunks, state, stats, state[2], False, reg, inner
        )
        if not regular:
            return state, stats, first, objectives, 0, IRREGULAR, 0, 0.0, 0
        if not inner_ok:  # recorded, as the general route records it; not judged
            capped, capped_change = 1, inner_change
        first = stats[3]
        older, previous, newest = np.nan, np.nan, first
    # the objectives at the end of the run that are plain EM iterations in a row
    step_max = acceleration[0]
    chain = 1
    if step_max == 0.0:  # plain EM: every objective given counts
        chain = 3 - math.isnan(older) - math.isnan(previous) - math.isnan(newest)
    made, status = 0, RUNNING
    cycle_start = cycle_middle = kept_state = state
    kept_stats, in_cycle, trial, step = stats, 0, False, 1.0
    while made < n_steps:
        regular, following, following_stats, inner_ok, inner_change = _em_iteration(
            X,
            sample_weight,
            shift,
            n_chunks,
            state,
            stats,
            kept_state[2] if trial else state[2],
            True,
            reg,
            inner,
        )
        if trial:  # from the extrapolated point: kept if at least as good as EM's
            trial = False
            kept = regular and following_stats[3] >= kept_stats[3]
            step_max = adapted_step_max(step, step_max, kept)
            if not kept:
                state, stats = kept_state, kept_stats
                cycle_start = state
                continue
            chain, in_cycle = 0, -1
        elif not regular:
            status = IRREGULAR
            break
        state, stats = following, following_stats
        if not inner_ok:
            capped += 1
            capped_change = max(capped_change, inner_change)
        log_lik = stats[3]
        objectives[made] = log_lik
        made += 1
        older, previous, newest = previous, newest, log_lik
        chain += 1
        if step_max == 0.0:  # plain EM: as ConvergenceTest.change
            change = projected_change(newest, previous, older, chain, total_weight)
        elif chain >= 3:
            change = accelerated_change(newest, previous, older, total_weight, acceleration[1:])
        else:
            change = np.inf
        if abs(change) < tol:
            status = CONVERGED
            break
        if not inner_ok:
            status = CAPPED
            break
        if step_max == 0.0:
            continue
        in_cycle += 1
        if in_cycle == 0:  # the kept stabilising iteration starts the next cycle
            cycle_start = state
        elif in_cycle == 1:
            cycle_middle = state
        else:
            in_cycle = 0
            step, weights, means, cov = _extrapolation(cycle_start, cycle_middle, state, step_max)
            cycle_start = state
            if made == n_steps:
                continue
            if step == 1.0:
                step_max = adapted_step_max(step, step_max, True)
                continue
            ok, factors, scale, centres, log_det = _factors(means, cov)
            if not ok or not _all_positive(weights):
                step_max = adapted_step_max(step, step_max, False)
                continue
            trial_stats = _expectation(
                X, sample_weight, shift, n_chunks, weights, centres, scale, log_det
            )
            n_extrapolated += 1
            if not math.isfinite(trial_stats[3]):
                step_max = adapted_step_max(step, step_max, False)
                continue
            kept_state, kept_stats = state, stats
            state, stats, trial = (weights, means, cov, factors), trial_stats, True
    if trial:  # out of iterations before the stabilising one: back to EM's state
        state, stats = kept_state, kept_stats
    acceleration[0] = step_max
    return state, stats, first, objectives, made, status, capped, capped_change, n_extrapolated


#: the storages of the covariances a loop exists for: E-step kernel, M-step, factors,
#: the statistics' form
_PARTS = {
    "full": ("full", _mstep_full, _factors_full, _mirrored),
    "tied": ("tied", _mstep_tied, _factors_tied, _mirrored),
    "diag": ("diag", _mstep_diag, _factors_diag, _as_is),
    "spherical": ("spherical", _mstep_spherical, _factors_spherical, _as_is),
    "shared_diag": ("diag", _mstep_shared_diag, _factors_shared_diag, _pooled_features),
    "shared_spherical": (
        "spherical",
        _mstep_shared_spherical,
        _factors_shared_spherical,
        _pooled_all,
    ),
    "diag_constrained": ("diag", _mstep_diag_constrained, _factors_diag, _as_is),
    "matrix_constrained": ("full", _mstep_matrix_constrained, _factors_full, _mirrored),
}
LOOP_KINDS = tuple(_PARTS)


def _twin(kind: str):
    """:func:`_em_loop` compiled for ``kind``, named ``_em_loop_<kind>_<digest>``, with
    its E-step and iteration (:func:`_expectation_template`, :func:`_em_iteration_template`)
    compiled for the same kind: numba's disk cache is keyed by the function's name and
    checks only this file's time stamp, and the loop compiles in kernels of other modules,
    so the digest of their sources names a new entry whenever they change
    (:func:`bayesmix.jit.cached_twin`)."""
    estep, mstep, factors, pool = _PARTS[kind]
    scope = {
        **globals(),
        "_estep": kernels.serial_estep(estep),
        "_mstep": mstep,
        "_factors": factors,
        "_pool": pool,
    }
    for part, source in (
        ("_expectation", _expectation_template),
        ("_em_iteration", _em_iteration_template),
        ("_em_loop", _em_loop),
    ):
        name = f"{part}_{kind}"
        twin = cached_twin(source, _KERNELS, name=name, scope=scope, error_model="numpy")
        scope[part] = globals()[twin.__name__] = twin
    return scope["_em_loop"]


_KERNELS = (kernels, constrained_kernels, convergence, squarem)

#: the loop's storage for each structure that has one (by structure name)
_KIND_OF = {
    "full": "full",
    "tied": "tied",
    "diag": "diag",
    "spherical": "spherical",
    "EEI": "shared_diag",
    "EII": "shared_spherical",
    **dict.fromkeys(("VEI", "EVI"), "diag_constrained"),
    **dict.fromkeys(("VEE", "VEV", "EEV", "EVV", "EVE", "VVE"), "matrix_constrained"),
}

_compiled: dict[str, Callable] = {}
_first_call = threading.Lock()


def _loop(kind: str, args: tuple) -> Callable:
    """The loop of ``kind``, compiled (by a child process if numba's cache lacks it)."""
    if kind not in _compiled:
        with _first_call:
            if kind not in _compiled:
                twin = _twin(kind)
                kernels.compile_in_child(
                    twin, args, f"import {__name__} as m; m.compile_loop({kind!r})"
                )
                _compiled[kind] = twin
    return _compiled[kind]


def _array(value) -> np.ndarray:
    """A float64 C-contiguous array of at least one dimension (a shared spherical
    covariance, its factor and its statistic are scalars in the structure's form)."""
    return np.ascontiguousarray(np.atleast_1d(np.asarray(value, dtype=np.float64)))


def _writable(value) -> np.ndarray:
    """:func:`_array`, copied where it is read-only (a start's statistics shared between
    fits, a start given as ``init``, which validation returns read-only): numba types a
    read-only array apart, and would compile the loop again."""
    array = _array(value)
    return array if array.flags.writeable else array.copy()


def _data_arguments(X, sample_weight, shift, reg) -> tuple:
    """The arguments of every call of one fit's loop that depend on the data only."""
    return (
        read_only(X),
        read_only(sample_weight),
        read_only(shift),
        kernels.n_chunks_for(len(X)),
    ), _array(reg)


def _arguments(
    data,
    reg,
    params,
    stats,
    fresh,
    n_steps,
    tol,
    total_weight,
    recent,
    inner,
    acceleration,
):
    """The loop's arguments: ``data`` and ``reg`` from :func:`_data_arguments`, the state
    ``params`` (ignored where ``fresh``: zeros of the statistics' shapes stand in) and
    the statistics ``stats`` as tuples."""
    moments = (_writable(stats[0]), _writable(stats[1]), _writable(stats[2]))
    if fresh:
        mass, sum_x, sum_xx = moments
        cov = np.zeros_like(sum_xx)  # the covariances and factors have its shape
        state = (np.zeros_like(mass), np.zeros_like(sum_x), cov, cov)
    else:
        state = tuple(_writable(part) for part in params)
    return (
        *data,
        state,
        (*moments, float(stats[3]), float(stats[4])),
        bool(fresh),
        reg,
        int(n_steps),
        float(tol),
        float(total_weight),
        _array(recent),
        (int(inner[0]), float(inner[1]), int(inner[2])),
        acceleration,
    )


def compile_loop(kind: str) -> None:
    """Compile (and cache on disk) the loop of ``kind`` on a tiny problem (run by the
    child process of :func:`~bayesmix.families.gaussian.kernels.compile_in_child`)."""
    n_components, n_features = 2, 2
    full = np.stack([np.eye(n_features)] * n_components)
    shapes = {
        "full": (full, (n_components, n_features, n_features)),
        "tied": (full[0], (n_features, n_features)),
        "diag": (np.ones((n_components, n_features)), (n_components, n_features)),
        "spherical": (np.ones(n_components), (n_components,)),
        "shared_diag": (np.ones(n_features), (n_features,)),
        "shared_spherical": (np.ones(1), (1,)),
    }
    shapes["diag_constrained"] = shapes["diag"]
    shapes["matrix_constrained"] = shapes["full"]
    cov, moment_shape = shapes[kind]
    X = np.linspace(-1.0, 1.0, 6).reshape(3, n_features)
    params = (np.full(n_components, 0.5), X[:n_components], cov, cov)
    stats = (np.ones(n_components), X[:n_components], np.ones(moment_shape), 0.0, 0.0)
    args = _arguments(
        *_data_arguments(X, np.ones(3), np.zeros(n_features), np.zeros(n_features)),
        params,
        stats,
        False,
        1,
        1e-8,
        3.0,
        np.full(3, np.nan),
        (0, 1e-8, 10),
        acceleration_state(True),
    )
    _twin(kind)(*args)


def compiled_loop(structure, X, sample_weight, shift, reg, test):
    """A function running EM iterations of ``structure`` on ``X`` in one compiled call,
    or ``None`` where there is none: a structure without a loop, data that are not
    float64 or have more than :data:`MAX_ROWS` rows, or scikit-learn's lagged
    convergence test.

    The function ``run(params, stats, n_steps, recent, acceleration)`` makes at most
    ``n_steps`` iterations from ``params`` (a
    :class:`~bayesmix.families.gaussian.stats.Params`) and its statistics ``stats``
    (``recent``: the last log-likelihoods so far, up to three), accelerated by SQUAREM
    where ``acceleration[0]`` >= 1 (``acceleration``: SQUAREM's state, which the run
    carries from call to call and the loop updates in place; see :func:`_em_loop`), and
    returns ``(params, stats, step)`` after the last regular iteration, ``step``
    a :class:`LoopStep`. It makes fewer iterations than asked,
    without converging, where the next one is irregular or the last was capped. The
    constrained models' inner iterations follow
    :data:`~bayesmix.families.gaussian.covariance.INNER_TOL` and ``INNER_MAX_ITER`` as
    they are at each call.

    ``params=None`` starts the run in the same call: ``stats`` are then the statistics of
    the start's responsibilities, its state is their M-step (without previous
    covariances) and E-step, its log-likelihood ``step.first``; where that is not
    regular (a component without mass, ...) nothing is made and ``params`` comes back
    ``None``, for the caller to start the run the general way.
    """
    kind = _KIND_OF.get(structure.name)
    if kind is None or test.lagged or X.dtype != np.float64:
        return None
    if len(X) > MAX_ROWS:
        return None
    scalar = kind == "shared_spherical"
    code = MODELS.index(structure.name) if structure.name in MODELS else 0
    data, reg = _data_arguments(X, sample_weight, shift, reg)
    no_recent = np.full(3, np.nan)

    def run(params, stats, n_steps, recent, acceleration):
        fresh = params is None
        if fresh or not len(recent):
            last = no_recent
        else:
            last = np.full(3, np.nan)
            last[3 - len(recent) :] = recent
        moments = (stats.mass, stats.sum_x, stats.sum_xx, stats.log_likelihood, stats.log_max_resp)
        args = _arguments(
            data,
            reg,
            None if fresh else params_tuple(params),
            moments,
            fresh,
            n_steps,
            test.tol,
            test.total_weight,
            last,
            (code, covariance.INNER_TOL, covariance.INNER_MAX_ITER),
            acceleration,
        )
        compiled = _loop(kind, args)
        with deferred_sigint():  # a Ctrl-C inside compiled code crashed the process
            out = compiled(*args)
        state, moments, first, objectives, n_made, status, capped, change, n_extra = out
        if capped:  # as the general route does at every such M-step
            covariance.record_inner_iterations(
                covariance.INNER_MAX_ITER, False, structure.name, change
            )
        if fresh and math.isnan(first):  # the start is left to the general route
            return None, stats, LoopStep([], False, False, n_extra)
        if n_made == 0 and not fresh:
            return params, stats, LoopStep([], False, False, n_extra)
        weights, means, cov, factors = state
        mass, sum_x, sum_xx, log_lik, log_max = moments
        if scalar:
            cov, factors, sum_xx = cov.reshape(()), factors.reshape(()), sum_xx.reshape(())
        step = LoopStep(
            objectives[:n_made].tolist(),
            status == CONVERGED,
            status == CAPPED,
            n_extra,
            float(first),
        )
        return (
            Params(weights, means, cov, factors),
            SufficientStats(mass, sum_x, sum_xx, float(log_lik), float(log_max)),
            step,
        )

    return run


def params_tuple(params) -> tuple:
    return (params.weights, params.means, params.covariances, params.precisions_cholesky)
