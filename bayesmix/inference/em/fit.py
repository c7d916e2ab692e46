"""The EM loop: initialisation, restarts, convergence; maximum likelihood or MAP."""

from __future__ import annotations

import hashlib
import numbers
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import TYPE_CHECKING, Any

import numpy as np

from bayesmix.data import Data, check_sample_weight
from bayesmix.exceptions import ConvergenceWarning, DegenerateComponentWarning
from bayesmix.families.gaussian.covariance import (
    CovarianceStructure,
    capped_m_steps,
    variance_rounding,
)
from bayesmix.families.gaussian.em_loop import compiled_loop
from bayesmix.families.gaussian.missing import (
    MissingEStep,
    check_missing,
    drop_unobserved_rows,
    missing_layout,
    observed_moments,
)
from bayesmix.families.gaussian.stats import (
    Params,
    SufficientStats,
    block_rows,
    e_step,
    iter_blocks,
    m_step,
    stats_from_responsibilities,
)
from bayesmix.inference.em.convergence import ConvergenceTest
from bayesmix.inference.em.degeneracy import CollapseJudge, feature_resolution, warn_degenerate
from bayesmix.inference.em.init import (
    INIT_METHODS,
    hc_model_name,
    initial_responsibilities,
    nearest,
    shared_entries,
    shared_summary,
)
from bayesmix.inference.em.squarem import (
    accelerated_change,
    acceleration_state,
    adapted_step_max,
    extrapolated,
    squared_steps,
    step_length,
)
from bayesmix.inference.interrupt import (
    INTERRUPTS,
    is_interrupt,
    keeps_partial_work,
    sigint_scope,
    warn_interrupted,
)
from bayesmix.ordering import (
    best_separated_feature,
    component_order,
    permute_params,
    resolve_order_by,
)
from bayesmix.priors import ResolvedPriors
from bayesmix.validation import check_float, check_int, reproducible_rng

if TYPE_CHECKING:
    from bayesmix.model import GaussianMixture
    from bayesmix.results import EMResult

__all__ = [
    "fit_em",
    "EMRun",
    "EMProgress",
    "EM_DEFAULTS",
    "regularisation",
    "start_statistics",
]

# The native defaults: run to the local optimum (the Aitken-projected gain below tol per
# observation, Böhning et al. 1994), from a hierarchical start and k-means++ restarts,
# with regularisation relative to each feature's variance. The scikit-learn estimator
# keeps scikit-learn's (tol 1e-3 on the last change, 100 iterations, one k-means start,
# absolute reg_covar).
EM_DEFAULTS = {"init": "auto", "n_init": 5, "max_iter": 1000, "tol": 1e-8, "reg_covar": 1e-8}
# iterations every start gets before only the best continue (see best_run)
SCREEN_ITER = 20
# iterations between two looks for a collapsing component (see _run_em)
SPURIOUS_CHECK = 50
# init="auto": the first start is the hierarchical one, the others k-means++, extra runs
# after all were spurious random
AUTO_STARTS = ("hc", "kmeans++", "random")


@dataclass(frozen=True)
class EMRun:
    """One EM run from one initialisation (parameters in shifted units); ``spurious``:
    why it is a spurious maximum (empty if it is not), ``n_spurious``: how many of the
    runs it was chosen from were, ``n_runs``: how many starts there were,
    ``n_repeated_starts``: how many of them repeated an earlier start and were not run,
    ``stopped``: whether it was stopped as collapsing (see :func:`best_run` and
    :func:`_run_em`)."""

    params: Params
    stats: SufficientStats
    log_likelihood_trace: np.ndarray
    log_posterior_trace: np.ndarray | None
    converged: bool
    n_iter: int
    spurious: tuple[str, ...] = ()
    n_spurious: int = 0
    n_runs: int = 1
    stopped: bool = False
    interrupted: bool = False
    n_extrapolated: int = 0
    n_repeated_starts: int = 0


class InterruptedRun(KeyboardInterrupt):
    """A ``KeyboardInterrupt`` raised out of :func:`_run_em`, carrying the run's last
    consistent state (``run``) for :func:`best_run` to keep."""

    def __init__(self, run: EMRun) -> None:
        super().__init__()
        self.run = run
        self.index = 0  # the run's start, set by best_run


@dataclass(frozen=True)
class EMProgress:
    """What ``fit_em``'s ``callback`` receives: once when a run has its initial
    parameters (``n_iter=0``), after every iteration, and once when the run ends
    (``done=True``).

    Attributes
    ----------
    init : int
        Index of the run (initialisation), from 0.
    n_iter : int
        Iterations (M-steps) done so far in this run.
    objective : float
        Log-likelihood (log posterior for MAP) per unit of weight at the current
        parameters.
    change : float
        The change of ``objective`` per unit of weight that the convergence test
        compared with ``tol`` (``nan`` before the first iteration).
    converged : bool
        Whether the run has converged.
    done : bool
        Whether the run has ended.
    """

    init: int
    n_iter: int
    objective: float
    change: float
    converged: bool
    done: bool


def fit_em(
    model: GaussianMixture,
    data: Data,
    *,
    use_priors: bool,
    sample_weight: Any = None,
    n_init: int = EM_DEFAULTS["n_init"],
    init: str | Mapping = EM_DEFAULTS["init"],
    max_iter: int = EM_DEFAULTS["max_iter"],
    tol: float = EM_DEFAULTS["tol"],
    reg_covar: float = EM_DEFAULTS["reg_covar"],
    random_state: Any = None,
    missing: str = "error",
    order_by: Any = None,
    callback: Callable[[EMProgress], None] | None = None,
    sklearn_bookkeeping: bool = False,
    previous_objective: float | None = None,
    accelerate: bool = True,
    extra_starts: Sequence[Mapping] = (),
) -> EMResult:
    """Fit ``model`` to ``data`` by EM; see :meth:`GaussianMixture.fit` for the options.

    Options beyond :meth:`GaussianMixture.fit`'s:

    - ``callback(progress)`` is called with an :class:`EMProgress` as the runs go
      (verbose output, progress bars).
    - ``sklearn_bookkeeping=True`` follows scikit-learn's EM loop (for
      :class:`bayesmix.sklearn.GaussianMixture`): iteration ``n`` tests the change
      between the objectives at the parameters of iterations ``n - 1`` and ``n - 2`` and
      then still takes its M-step, so a run converges one iteration later than by
      default; restarts are ranked by the objective before the last M-step; and
      ``max_iter=0`` is allowed and returns the initial parameters (``converged=False``,
      no warning); ``init`` may be a mapping without ``"means"``, whose ``"weights"``
      and/or ``"covariances"`` replace those of the initialisation named by its
      ``"method"`` (default ``"kmeans++"``; still random, so ``n_init`` runs are made).
      ``previous_objective`` (per unit of weight) stands in for the objective before the
      start in the first test (scikit-learn's warm start); ``None`` is minus infinity.
      ``reg_covar`` is then absolute (scikit-learn's), not relative to each feature's
      variance.

    ``init="hc:EEE"`` (any criterion of
    :data:`~bayesmix.inference.em.hierarchical.HC_MODEL_NAMES` after ``"hc:"``) starts
    from the hierarchical tree of that criterion instead of mclust's default VVV
    (mclust's ``mclust.options(hcModelName = "EEE")``).

    ``data.values`` may be float32: the E-step then runs float32 kernels
    (:mod:`bayesmix.families.gaussian.kernels`); initialisation, M-step and parameters stay float64.
    """

    sklearn = bool(sklearn_bookkeeping)
    options = EMOptions.checked(
        use_priors,
        init,
        n_init,
        max_iter,
        tol,
        reg_covar,
        random_state,
        order_by,
        sklearn=sklearn,
        accelerate=accelerate,
    )
    weights = check_sample_weight(sample_weight, data.n_obs)
    if callback is not None and not callable(callback):
        raise TypeError(f"callback must be callable or None; got {type(callback).__name__}.")
    reference = -np.inf if previous_objective is None else float(previous_objective)
    extra_starts = check_extra_starts(extra_starts)
    resolve_order_by(order_by, data.feature_names)
    missing = check_missing(missing)
    has_missing = missing == "marginalize" and data.has_missing
    if has_missing:
        data, weights = drop_unobserved_rows(data, weights, stacklevel=3)
    if np.count_nonzero(weights) < model.n_components:
        raise ValueError(
            f"X has {np.count_nonzero(weights)} rows with positive weight but "
            f"n_components={model.n_components}; use fewer components or more data."
        )
    rng, seed_record = reproducible_rng(random_state)
    structure = model.structure
    X = data.values
    estep = None
    if has_missing:
        shift, X, estep = _missing_setup(data, weights, structure)
    else:
        shift = weights @ X / weights.sum()  # weighted mean by one GEMV, no N x D temporary
    priors = model.resolve_priors(data, sample_weight=weights) if use_priors else None
    shifted_priors = priors.shifted(shift) if priors is not None else None

    start = time.perf_counter()
    reg = options.reg_covar if sklearn else regularisation(X, weights, options.reg_covar)
    if estep is None:
        estep = partial(e_step, X, weights, shift, structure=structure)
    judge = CollapseJudge(
        structure,
        reg,
        shared_summary("feature_resolution", X, weights, feature_resolution),
        float(weights.sum()),
    )
    with sigint_scope():  # one handler for the compiled loop's calls
        best = best_run(
            lambda index, statistics=False: _initial_params(
                start_method(init, index, options.n_init) if index >= 0 else extra_starts[~index],
                X,
                weights,
                shift,
                model,
                shifted_priors,
                reg,
                rng,
                statistics=statistics,
            ),
            estep,
            float(weights.sum()),
            structure,
            shifted_priors,
            options,
            reg_covar=reg,
            callback=callback,
            lagged=sklearn,
            reference=reference,
            judge=judge,
            compiled=None
            if has_missing
            else partial(compiled_loop, structure, X, weights, shift, reg),
            n_extra=len(extra_starts),
        )
    settings = options.settings(
        seed_record,
        start,
        missing=missing,
        reg_covar_scale="absolute" if sklearn else "feature variance",
    )
    return em_result(
        model,
        best,
        shift,
        priors,
        options,
        feature_names=data.feature_names,
        n_obs=float(weights.sum()),
        settings=settings,
        regularisation=reg,
        judge=judge,
    )


def regularisation(X: np.ndarray, weights: np.ndarray, reg_covar: float) -> np.ndarray:
    """What the M-step adds to each feature's variance: ``reg_covar`` times the feature's
    weighted variance in ``X`` (NaN ignored), so that the regularisation means the same on
    every scale; a constant feature (or one whose variance is subnormal) uses its squared
    mean, or 1 if that is 0 or subnormal (:func:`feature_scale`; computed once for fits
    of the same data within :func:`~bayesmix.inference.em.init.shared_starts`)."""
    return reg_covar * shared_summary("feature_scale", X, weights, feature_scale)


def feature_scale(X: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Each feature's weighted variance in ``X`` (NaN ignored), or for a constant feature
    (or one whose variance is subnormal) its squared mean, or 1 if that is 0 or
    subnormal: the scale :func:`regularisation` multiplies by ``reg_covar``."""
    n_obs, n_features = X.shape
    sums = np.zeros((3, n_features))  # weight, weighted sum, weighted sum of squares
    sample = X[:: max(1, n_obs // 1000)]
    if np.isnan(sample).any():  # nanmedian costs ~1 ms a call even on a few rows
        centre = np.nanmedian(sample, axis=0)  # avoids cancellation
    else:
        centre = np.median(sample, axis=0)
    centre = np.where(np.isfinite(centre), centre, 0.0)
    for rows in iter_blocks(n_obs, block_rows(n_obs, n_features, 1)):
        block = np.asarray(X[rows], dtype=float) - centre
        observed = ~np.isnan(block)
        w = weights[rows, None] * observed
        block = np.where(observed, block, 0.0)
        sums += [w.sum(axis=0), (w * block).sum(axis=0), (w * block**2).sum(axis=0)]
    total = np.maximum(sums[0], np.finfo(float).tiny)
    offset = sums[1] / total
    variance = np.maximum(sums[2] / total - offset**2, 0.0)
    mean = centre + offset
    # a subnormal variance (data at 1e-160) is as good as none: relative to it, reg_covar
    # would add 0 and the precisions overflow
    tiny = np.finfo(float).tiny
    constant = (variance <= variance_rounding(mean)) | (variance < tiny)
    square = np.square(mean)
    return np.where(~constant, variance, np.where(square >= tiny, square, 1.0))


def start_method(init: str | Mapping, index: int, n_init: int) -> str | Mapping:
    """The start of run ``index`` (from 0) of ``n_init``: ``init="auto"`` makes the first
    run's start the hierarchical one (``"hc"``), the others k-means++, and the extra runs
    made when all ``n_init`` were spurious random responsibilities (soft starts, which
    put no component on a single point); any other ``init`` is used by every run."""
    if isinstance(init, str) and init == "auto":
        return AUTO_STARTS[min(index, 1)] if index < n_init else AUTO_STARTS[2]
    return init


@dataclass(frozen=True)
class EMOptions:
    """The checked options of one Gaussian EM fit, passed as one object from the fit (in
    memory, :func:`fit_em`; on Dask,
    :func:`~bayesmix.inference.em.distributed.fit_em_dask`) to :func:`best_run`,
    :func:`em_result` and the settings the result records.

    Attributes
    ----------
    use_priors : bool
        MAP-EM (with the declaration's priors or their defaults) rather than ML.
    init : str or mapping
    n_init, max_iter : int
    tol, reg_covar : float
        ``reg_covar`` as given (the fit turns it into what the M-step adds).
    random_state : int, Generator or None
        As given (recorded by its label).
    order_by : str, int or None
        The feature whose means number the components.
    accelerate : bool
        SQUAREM (:mod:`~bayesmix.inference.em.squarem`); never with scikit-learn's
        bookkeeping.
    """

    use_priors: bool
    init: str | Mapping
    n_init: int
    max_iter: int
    tol: float
    reg_covar: float
    random_state: Any
    order_by: Any = None
    accelerate: bool = True

    @classmethod
    def checked(
        cls,
        use_priors: bool,
        init: Any,
        n_init: Any,
        max_iter: Any,
        tol: Any,
        reg_covar: Any,
        random_state: Any,
        order_by: Any = None,
        *,
        sklearn: bool = False,
        accelerate: Any = True,
    ) -> EMOptions:
        """The options validated, in the order of the attributes (``TypeError`` or
        ``ValueError`` naming the option);
        ``sklearn``: scikit-learn's bookkeeping, which allows ``max_iter=0`` and an
        ``init`` mapping without ``"means"``."""
        n_init = check_int(n_init, "n_init")
        max_iter = check_int(max_iter, "max_iter", minimum=0 if sklearn else 1)
        tol = check_float(tol, "tol")
        reg_covar = check_float(reg_covar, "reg_covar")
        check_init(init, partial=sklearn)
        if not isinstance(accelerate, (bool, np.bool_)):
            raise TypeError(
                f"accelerate must be True (SQUAREM, the default) or False (plain EM); got "
                f"{accelerate!r}."
            )
        return cls(
            bool(use_priors),
            init,
            n_init,
            max_iter,
            tol,
            reg_covar,
            random_state,
            order_by,
            bool(accelerate) and not sklearn,
        )

    def settings(self, seed_record: dict[str, Any], start: float, **extra: Any) -> dict[str, Any]:
        """The settings an EM result records (``start`` is the ``perf_counter`` time the
        fit began); ``extra`` entries are added after the common ones."""
        return {
            "method": "map" if self.use_priors else "em",
            "n_init": 1 if _explicit(self.init) else self.n_init,
            "init": self.init if isinstance(self.init, str) else "user",
            "max_iter": self.max_iter,
            "tol": self.tol,
            "reg_covar": self.reg_covar,
            "acceleration": "squarem" if self.accelerate else "none",
            "random_state": _seed_label(self.random_state),
            **seed_record,
            **extra,
            "fit_seconds": time.perf_counter() - start,
        }


def best_run(
    initial,
    estep,
    total_weight,
    structure,
    priors,
    options: EMOptions,
    *,
    reg_covar,
    callback=None,
    lagged=False,
    reference=-np.inf,
    judge=None,
    compiled=None,
    n_extra=0,
) -> EMRun:
    """The best of ``options.n_init`` EM runs, run ``i`` from ``initial(i)`` (one run when
    ``options.init`` gives the start explicitly, as a mapping with means); warns if it did not
    converge (unless ``max_iter`` is 0: initialisation only). ``callback``, ``lagged`` and
    ``reference`` are :func:`fit_em`'s ``callback``, ``sklearn_bookkeeping`` and
    ``previous_objective``; ``reg_covar`` is what the M-step adds to the variances.

    Under ``init="auto"``, short runs first (emEM; Biernacki, Celeux & Govaert 2003):
    every start gets ``SCREEN_ITER`` iterations, then only the first (the hierarchical
    one, mclust's) and the best of the others by objective continue to convergence. Any
    other ``init`` (and ``lagged``, scikit-learn's loop) runs every start to convergence.
    There, without ``callback``, a start equal to an earlier one (k-means++ often draws
    the same partition; every start of one component is the same) is not run again: it
    would make the same run; the best of the others continues in its place.

    ``judge(params)`` lists why a run ended on a spurious maximum
    (:func:`~bayesmix.inference.em.degeneracy.collapse_reasons`): the best run is the one of highest
    objective among those it does not reject. If it rejects all, up to ``n_init`` more
    runs are made (``initial`` with the next indices, run to convergence), stopping at the
    first sound one; if all are rejected the best is chosen among all. The returned run's
    ``spurious`` holds its reasons and ``n_spurious`` counts the rejected runs.

    ``estep(params)`` returns the sufficient statistics of all the data: one fused pass in
    memory, a map over chunks and a tree sum on Dask (:mod:`bayesmix.inference.em.distributed`).
    ``compiled(test)``, where given, returns the structure's compiled EM loop for the
    convergence test ``test`` (:func:`~bayesmix.families.gaussian.em_loop.compiled_loop`)
    or ``None``: maximum-likelihood runs without progress reports iterate inside it, and
    start there: ``initial(i, True)`` may then return the statistics of the start's
    responsibilities instead of its parameters (the loop makes their M-step and E-step).

    A ``KeyboardInterrupt`` (Ctrl-C) returns the best state reached so far: the best of
    the runs made and the interrupted run's last state, with ``converged=False`` and
    ``interrupted=True``, and an :class:`~bayesmix.InterruptedFitWarning`; it is raised
    again when no run has parameters yet, or inside
    :func:`~bayesmix.inference.interrupt.nested_fits`.
    """
    init, n_init, max_iter, tol = options.init, options.n_init, options.max_iter, options.tol
    test = ConvergenceTest(total_weight, tol, lagged, reference)
    judge = judge if priors is None else None
    loop = None if compiled is None or priors is not None else compiled(test)
    n_runs = 1 if _explicit(init) else n_init
    screened_starts = init == "auto" and not lagged and n_runs > 1
    screen = min(SCREEN_ITER, max_iter) if screened_starts else max_iter

    def reporter(index):
        if callback is None:
            return None
        shown = index if index >= 0 else n_runs + ~index  # the extra starts after the others
        return partial(_report, callback, shown, total_weight)

    # id(params) -> (params, reasons): each state judged once, whether at a run's checks
    # or when the runs are ranked (a screening run ends on a check)
    judged: dict[int, tuple] = {}

    def judged_once(params):
        entry = judged.get(id(params))
        if entry is None:
            entry = judged[id(params)] = (params, tuple(judge(params)))
        return entry[1]

    def verdict(result):
        return () if judge is None else judged_once(result.params)

    starts_made: set[bytes] = set()
    skip_repeats = screened_starts and callback is None
    in_loop = loop is not None and callback is None  # runs start inside the loop

    def run(index, resume=None, limit=max_iter):
        start = None
        if resume is None:
            start = initial(index, True) if in_loop else initial(index)
        if skip_repeats and start is not None:
            key = _start_key(start)
            if key in starts_made:  # the same start gives the same run: not run again
                return None
            starts_made.add(key)
        try:
            return _run_em(
                estep,
                start,
                structure,
                priors,
                limit,
                reg_covar,
                test,
                reporter(index),
                None if judge is None else judged_once,
                resume,
                end=limit == max_iter,
                loop=loop if callback is None else None,
                accelerate=options.accelerate and not lagged,
            )
        except InterruptedRun as interrupt:
            interrupt.index = index
            raise

    screened: list[EMRun] = []
    try:
        return _best_of_runs(
            screened, run, verdict, reporter, (n_runs, n_extra), screen, options, callback, lagged
        )
    except INTERRUPTS as interrupt:
        if not (is_interrupt(interrupt) and keeps_partial_work()):
            raise
        return _interrupted_best(screened, interrupt, verdict, lagged, n_runs)


def _start_key(start: Params | SufficientStats) -> bytes:
    """A digest of a run's starting parameters, or of the statistics they are the
    M-step of: equal starts make equal runs."""
    digest = hashlib.blake2b(digest_size=16)
    if isinstance(start, SufficientStats):
        parts = (b"statistics", start.mass, start.sum_x, start.sum_xx)
    else:
        parts = (b"parameters", start.weights, start.means, start.covariances)
    for part in parts:
        digest.update(part if isinstance(part, bytes) else np.ascontiguousarray(part).tobytes())
    return digest.digest()


def _interrupted_best(screened, interrupt, verdict, lagged, n_runs) -> EMRun:
    """The best state reached before a ``KeyboardInterrupt``: the best of the runs made
    so far and the interrupted run's last state; re-raised if there is none (interrupted
    while initialising the first run)."""
    runs, begun = list(screened), len(screened)
    if isinstance(interrupt, InterruptedRun):
        runs.append(interrupt.run)
        begun = max(begun, interrupt.index + 1)
    if not runs:
        raise interrupt
    best = max(runs, key=lambda r: (not verdict(r), _objective(r, lagged)))
    warn_interrupted(
        "EM",
        begun,
        max(begun, n_runs),
        "starts",
        stacklevel=5,
        holds="the result is the best state reached so far, with converged=False",
    )
    n_spurious = sum(bool(verdict(r)) for r in runs)
    return replace(
        best,
        spurious=verdict(best),
        converged=False,
        interrupted=True,
        n_spurious=n_spurious,
        n_runs=begun,
    )


def _best_of_runs(screened, run, verdict, reporter, counts, screen, options, callback, lagged):
    """:func:`best_run`'s runs (appended to ``screened`` as they end, so that an
    interrupt keeps them) and its choice; ``counts``: the starts and the extra starts
    (``initial(-1)``, ``initial(-2)``, ...: run to the end after the others)."""
    init, max_iter, tol = options.init, options.max_iter, options.tol
    n_runs, n_extra = counts
    starts = []  # the index of each screened run's start
    for index in range(n_runs):
        screen_run = run(index, limit=screen)
        if screen_run is not None:  # None: the start repeats an earlier one
            screened.append(screen_run)
            starts.append(index)
    if screen < max_iter:
        # the best of the other starts: the highest objective the judge does not reject
        # (judged in that order, as far as needed), else the highest
        ranked = sorted(
            range(1, len(screened)), key=lambda i: _objective(screened[i]), reverse=True
        )
        sound = (i for i in ranked if not verdict(screened[i]))
        best_other = next(sound, ranked[0] if ranked else None)
        for position, screen_run in enumerate(screened):
            index = starts[position]
            if screen_run.converged or screen_run.stopped:
                continue
            if position in (0, best_other):
                screened[position] = run(index, resume=screen_run)
            elif callback is not None:  # cut short by the screen: its last report
                reporter(index)(screen_run.n_iter, _objective(screen_run), np.nan, False, True)
        # the continued runs and those that converged within the screen
        finished = [r for r in screened if r.converged or r.n_iter >= max_iter or r.stopped]
    else:
        finished = list(screened)
    for extra in range(1, n_extra + 1):
        extra_run = run(-extra)
        if extra_run is not None:
            screened.append(extra_run)
            finished.append(extra_run)
    best, best_key, best_reasons, n_spurious = None, None, (), 0
    index = n_runs
    while finished:
        result = finished.pop(0)
        reasons = verdict(result)
        n_spurious += bool(reasons)
        key = (not reasons, _objective(result, lagged))
        if best is None or key > best_key:
            best, best_key, best_reasons = result, key, reasons
        while not finished and best_reasons and index < 2 * n_runs and not _explicit(init):
            extra = run(index)  # all spurious: another start, to the end
            index += 1
            if extra is not None:
                screened.append(extra)
                finished.append(extra)
    n_repeated = index + n_extra - len(screened)
    best = replace(
        best,
        spurious=best_reasons,
        n_spurious=n_spurious,
        n_runs=index + n_extra,
        n_repeated_starts=n_repeated,
    )
    if not best.converged and max_iter > 0:
        warnings.warn(
            f"EM did not converge in max_iter={max_iter} iterations (tol={tol}); increase "
            "max_iter or tol, or try other initialisations (n_init).",
            ConvergenceWarning,
            stacklevel=5,
        )
    return best


def em_result(
    model,
    best,
    shift,
    priors,
    options: EMOptions,
    *,
    feature_names,
    n_obs,
    settings,
    regularisation=None,
    judge=None,
) -> EMResult:
    """The :class:`EMResult` of the best run, parameters shifted back to data units,
    components numbered by :mod:`bayesmix.ordering`'s rule (an explicit start keeps its
    numbering). ``regularisation``: what the M-step added to each feature's variance
    (default ``settings["reg_covar"]``); ``judge``: :func:`best_run`'s, to name the
    collapsed components of a spurious result by their final numbers."""
    from bayesmix.results import EMResult

    params = Params(
        best.params.weights,
        best.params.means + shift,
        best.params.covariances,
        best.params.precisions_cholesky,
    )
    feature = resolve_order_by(options.order_by, feature_names)
    if feature is None:
        n_components, n_features = params.means.shape
        covariances = model.structure.to_full(params.covariances, n_components, n_features)
        feature = best_separated_feature(params.means, np.asarray(covariances))
    if settings["init"] != "user":
        perm = component_order(params.means, feature)
        params = permute_params(
            params, perm, shared_covariance=model.structure.shared_across_components
        )
    settings["order_feature"] = feature_names[feature]
    if best.spurious and judge is not None:
        best = replace(best, spurious=tuple(judge(params)))
    settings["n_spurious_runs"] = best.n_spurious
    settings["n_extrapolated"] = best.n_extrapolated
    settings["n_runs"] = best.n_runs
    settings["n_repeated_starts"] = best.n_repeated_starts
    if best.interrupted:  # Ctrl-C: the best state reached (see best_run)
        settings["interrupted"] = True
    reg = settings["reg_covar"] if regularisation is None else regularisation
    if priors is None:
        warn_degenerate(params, model.structure, settings["reg_covar"], feature_names, n_obs, reg)
    if best.spurious:
        n_made = best.n_runs - best.n_repeated_starts
        warnings.warn(
            f"every EM run ended on a spurious maximum of the likelihood ({best.n_spurious} "
            f"of {n_made} starts run to the end"
            + (
                f", the others left after the {SCREEN_ITER}-iteration screen"
                if best.n_spurious < n_made
                else ""
            )
            + f"): {'; '.join(best.spurious)}. The "
            "likelihood is unbounded there; use fewer components, more starts (n_init), "
            "another covariance_type, or fit with priors (method='map').",
            DegenerateComponentWarning,
            stacklevel=4,
        )
    return EMResult(
        model=model,
        params=params,
        feature_names=feature_names,
        n_obs=n_obs,
        log_likelihood=best.stats.log_likelihood,
        log_max_resp=best.stats.log_max_resp,
        log_likelihood_trace=best.log_likelihood_trace,
        log_posterior_trace=best.log_posterior_trace,
        converged=best.converged,
        n_iter=best.n_iter,
        priors=priors,
        settings=settings,
        spurious=best.spurious,
    )


def _seed_label(random_state: Any) -> int | str | None:
    """The seed as recorded in the settings: an int (numpy integers too), None or
    ``"generator"``."""
    if isinstance(random_state, numbers.Integral):
        return int(random_state)
    return None if random_state is None else "generator"


def _objective(run: EMRun, lagged: bool = False) -> float:
    """The objective that ranks runs: at the fitted parameters or, ``lagged``, at those
    before the last M-step (scikit-learn's lower bound)."""
    trace = (
        run.log_posterior_trace if run.log_posterior_trace is not None else run.log_likelihood_trace
    )
    return float(trace[-2] if lagged and len(trace) > 1 else trace[-1])


def _report(callback, index, total_weight, n_iter, objective, change, converged, done):
    callback(EMProgress(index, n_iter, objective / total_weight, change, converged, done))


def _run_em(
    estep,
    params,
    structure,
    priors,
    max_iter,
    reg_covar,
    test,
    report,
    judge=None,
    resume=None,
    end=True,
    loop=None,
    accelerate=False,
) -> EMRun:
    """One EM run from ``params``, or continuing the run ``resume``, until it converges or
    has made ``max_iter`` iterations in all. ``params`` may be the statistics of the
    start's responsibilities (:class:`SufficientStats`, for maximum likelihood): the
    start is then their M-step, made by ``loop`` where it has one. With ``judge``
    (maximum likelihood only), a run found spurious at two checks ``SPURIOUS_CHECK``
    iterations apart stops there (``stopped``): the collapse goes on without end and no
    more iterations can make it sound; so does a run found spurious right after an
    M-step whose inner iterations stopped at ``INNER_MAX_ITER`` (a constrained model's
    M-step chasing a collapsing component, at up to 1,000 inner iterations an EM
    iteration). ``report`` announces the start (not on resuming), every iteration and
    the end (converged, stopped, or out of iterations where ``end``: a screening run that
    is not continued gets its last report from :func:`best_run`).

    ``accelerate``: SQUAREM (:mod:`~bayesmix.inference.em.squarem`) in the compiled loop
    and, without one, on the general route: after every two iterations an extrapolated
    point, one iteration from it kept if its objective is at least the second's. Only the
    iterations kept are in the traces and ``n_iter``; ``n_extrapolated`` counts the
    E-steps at extrapolated points."""
    start_stats = None  # the start's statistics, where its M-step is the loop's
    if resume is None and isinstance(params, SufficientStats):
        start_stats, params = params, None
        if loop is None:
            params = m_step(start_stats, structure, priors, reg_covar)
    if resume is None and params is None:  # the run starts in the loop
        stats, log_lik, log_post, n_extrapolated = start_stats, [], [], 0
    elif resume is None:
        stats = estep(params)
        log_lik = [stats.log_likelihood]
        log_post = (
            [] if priors is None else [stats.log_likelihood + _log_prior(params, priors, structure)]
        )
        n_extrapolated = 0
    else:
        params, stats = resume.params, resume.stats
        log_lik = list(resume.log_likelihood_trace)
        log_post = [] if priors is None else list(resume.log_posterior_trace)
        n_extrapolated = resume.n_extrapolated
    trace = log_lik if priors is None else log_post
    if report is not None and resume is None and trace:
        report(0, trace[-1], np.nan, False, False)
    converged = collapsing = stopped = False
    cycle = Cycle(accelerate, structure)
    cycle.restart(params)  # the loop's calls and the general route's cycles end together
    try:
        while len(log_lik) <= max_iter:
            made = len(log_lik) - 1
            if params is None:  # the start (and the first iterations) in the loop
                steps = min(max_iter, SPURIOUS_CHECK)
                params, stats, step = loop(None, start_stats, steps, (), cycle.acceleration)
                if params is None:  # not a regular start: the general way
                    params = m_step(start_stats, structure, priors, reg_covar)
                    stats = estep(params)
                    log_lik.append(stats.log_likelihood)
                    cycle.restart(params)
                    continue
                log_lik.append(step.first)
                made = 0
                log_lik.extend(step.objectives)
                converged, capped = step.converged, step.capped
                n_extrapolated += step.n_extrapolated
                cycle.restart(params)
            elif loop is not None:  # compiled, up to the next check for a collapse
                steps = min(max_iter - made, SPURIOUS_CHECK - made % SPURIOUS_CHECK)
                params, stats, step = loop(params, stats, steps, log_lik[-3:], cycle.acceleration)
                log_lik.extend(step.objectives)
                converged, capped = step.converged, step.capped
                n_extrapolated += step.n_extrapolated
                cycle.restart(params)
            if len(log_lik) - 1 == made:  # the general route (also where the loop stopped)
                before = capped_m_steps()
                following = m_step(stats, structure, priors, reg_covar, previous=cycle.kept(params))
                capped = capped_m_steps() > before
                following_stats = estep(following)
                objective = following_stats.log_likelihood
                if priors is not None:
                    objective += _log_prior(following, priors, structure)
                if cycle.trial is not None and not cycle.keep(objective, trace[-1]):
                    params, stats = cycle.trial  # the extrapolation did not pay: EM's state
                    cycle.trial, cycle.points = None, [params]
                    continue
                params, stats = following, following_stats  # one state: an interrupt keeps both
                log_lik.append(stats.log_likelihood)
                if priors is not None:
                    log_post.append(objective)
                change = cycle.change(trace, test)
                converged = abs(change) < test.tol
                if report is not None:
                    report(len(log_lik) - 1, trace[-1], change, converged, False)
            if converged:
                break
            if capped and judge is not None and judge(params):
                stopped = True
                break
            if judge is not None and (len(log_lik) - 1) % SPURIOUS_CHECK == 0:
                spurious = bool(judge(params))
                stopped = spurious and collapsing
                if stopped:
                    break
                collapsing = spurious
            made = len(log_lik) - 1
            if loop is not None:
                continue
            if capped or made % SPURIOUS_CHECK == 0 or made == max_iter:
                cycle.restart(params)  # where the compiled loop's calls end: the same fit
                continue
            point = cycle.advance(params)
            if point is not None:  # the next iteration starts from the extrapolated point
                point_stats = estep(point)
                n_extrapolated += 1
                if np.isfinite(point_stats.log_likelihood):
                    cycle.trial = (params, stats)
                    params, stats = point, point_stats
                else:
                    cycle.reject()
        if cycle.trial is not None:  # out of iterations before the stabilising one
            params, stats = cycle.trial
    except INTERRUPTS as error:
        if not is_interrupt(error) or params is None:  # no state yet: as before the start
            raise
        if cycle.trial is not None:
            params, stats = cycle.trial
        run = _interrupted_run(params, stats, log_lik, log_post, priors, structure)
        raise InterruptedRun(run) from None
    if report is not None and (converged or stopped or end):
        report(len(log_lik) - 1, trace[-1], np.nan, converged, True)
    return EMRun(
        params,
        stats,
        np.asarray(log_lik),
        None if priors is None else np.asarray(log_post),
        converged,
        len(log_lik) - 1,
        stopped=stopped,
        n_extrapolated=n_extrapolated,
    )


class Cycle:
    """SQUAREM's bookkeeping for one run on the general route
    (:mod:`~bayesmix.inference.em.squarem`): the states of the current cycle, the state
    kept while an iteration from an extrapolated point is under trial, and the state the
    compiled loop shares (``acceleration``: the bound on the step and the rates of the
    last convergence tests; ``step_max`` 0 where not accelerating)."""

    def __init__(self, accelerate: bool, structure: CovarianceStructure) -> None:
        self.acceleration = acceleration_state(accelerate)
        self.structure = structure
        self.points: list[Params] = []
        self.chain = 1  # EM iterations in a row at the end of the trace (their objectives)
        self.trial: tuple[Params, SufficientStats] | None = None
        self.step = 1.0

    @property
    def accelerating(self) -> bool:
        return self.acceleration[0] > 0.0

    def restart(self, params: Params) -> None:
        """A new cycle from ``params`` (after the compiled loop, or a rejected trial)."""
        self.points = [params]
        self.trial = None
        if self.accelerating:
            self.chain = 1

    def kept(self, params: Params) -> Params:
        """The parameters the M-step's inner iterations start from: EM's, not the
        extrapolated point's."""
        return params if self.trial is None else self.trial[0]

    def keep(self, objective: float, before: float) -> bool:
        """Whether the iteration from the extrapolated point is kept (its objective at
        least ``before``, the objective of EM's state); adapts the step's bound."""
        kept = bool(objective >= before)
        self.acceleration[0] = adapted_step_max(self.step, self.acceleration[0], kept)
        if kept:
            self.trial, self.points, self.chain = None, [], 0
        return kept

    def change(self, trace: list[float], test: ConvergenceTest) -> float:
        """The convergence test's change after an iteration (``trace`` ends with its
        objective): ``test``'s for plain EM, SQUAREM's test where the last three
        objectives are EM iterations in a row, infinite otherwise."""
        self.chain += 1
        if not self.accelerating:
            return test.change(trace)
        if self.chain < 3:
            return np.inf
        return accelerated_change(
            trace[-1], trace[-2], trace[-3], test.total_weight, self.acceleration[1:]
        )

    def reject(self) -> None:
        """An extrapolated point without a finite objective: a smaller step next."""
        self.acceleration[0] = adapted_step_max(self.step, self.acceleration[0], False)

    def advance(self, params: Params) -> Params | None:
        """Add the state of an iteration; after two, the extrapolated point (``None``
        where the step is 1 or the point is not a valid state)."""
        if not self.accelerating:
            return None
        self.points.append(params)
        if len(self.points) < 3:
            return None
        start, middle, end = self.points
        self.points = [params]
        parts = [(p.weights, p.means, np.atleast_1d(p.covariances)) for p in (start, middle, end)]
        r_squared = v_squared = 0.0
        for index in range(3):
            pair = squared_steps(*(np.ascontiguousarray(part[index]) for part in parts))
            r_squared, v_squared = r_squared + pair[0], v_squared + pair[1]
        self.step = step_length(r_squared, v_squared, self.acceleration[0])
        if self.step == 1.0:
            self.acceleration[0] = adapted_step_max(1.0, self.acceleration[0], True)
            return None
        weights, means, covariances = (
            extrapolated(*(np.ascontiguousarray(part[index]) for part in parts), self.step)
            for index in range(3)
        )
        if np.any(weights <= 0.0) or not self.structure.positive_definite(covariances):
            self.reject()
            return None
        if np.ndim(end.covariances) == 0:
            covariances = covariances.reshape(())
        return Params(weights, means, covariances, self.structure.precision_cholesky(covariances))


def _interrupted_run(params, stats, log_lik, log_post, priors, structure) -> EMRun:
    """The EMRun of an interrupted run at its last state (``params`` and ``stats``,
    assigned together), its traces ending at that state's objective."""
    if log_lik[-1] != stats.log_likelihood:  # interrupted before the trace was appended
        log_lik = [*log_lik, stats.log_likelihood]
    if priors is not None:
        log_post = log_post[: len(log_lik)]
        if len(log_post) < len(log_lik):
            log_post.append(stats.log_likelihood + _log_prior(params, priors, structure))
    return EMRun(
        params,
        stats,
        np.asarray(log_lik),
        None if priors is None else np.asarray(log_post),
        False,
        len(log_lik) - 1,
        interrupted=True,
    )


def _log_prior(params: Params, priors: ResolvedPriors, structure: CovarianceStructure) -> float:
    return priors.log_density(params.weights, params.means, params.covariances, structure)


def _explicit(init: Any) -> bool:
    """Whether ``init`` gives the start explicitly (a mapping with means): one run."""
    return isinstance(init, Mapping) and "means" in init


def check_extra_starts(extra_starts: Any) -> tuple[Mapping, ...]:
    """The ``extra_starts`` option validated: a list or tuple of ``init`` mappings with
    ``means`` (and optionally ``weights`` and ``covariances``)."""
    if not isinstance(extra_starts, (list, tuple)):
        raise TypeError(
            "extra_starts must be a list of init mappings (each with 'means' and optionally "
            f"'weights' and 'covariances'); got {type(extra_starts).__name__}."
        )
    for start in extra_starts:
        if not _explicit(start):
            raise ValueError(
                "every entry of extra_starts must be a mapping with 'means' (and optionally "
                f"'weights' and 'covariances'), as init takes; got {start!r:.80}."
            )
        check_init(start)
    return tuple(extra_starts)


def check_init(init: Any, partial: bool = False) -> None:
    """Validate ``init``; ``partial`` accepts a mapping without ``"means"`` (its
    ``"method"`` initialises the parameters it does not give)."""
    if isinstance(init, str):
        if init != "auto" and init not in INIT_METHODS and hc_model_name(init) == "":
            raise ValueError(
                f"init must be 'auto', one of {list(INIT_METHODS)}, 'hc:<criterion>' "
                f"(e.g. 'hc:EEE') or a mapping; got {init!r}."
            )
        return
    if not isinstance(init, Mapping):
        raise TypeError(
            "init must be a method name or a mapping with 'means' and optionally 'weights' "
            f"and 'covariances'; got {type(init).__name__}."
        )
    if partial and "means" not in init:
        unknown = set(init) - {"weights", "covariances", "method"}
        if unknown or not ({"weights", "covariances"} & set(init)):
            raise ValueError(
                "init mapping without 'means' needs 'weights' and/or 'covariances' and may "
                f"have 'method' (how the rest is initialised); got keys {sorted(init)}."
            )
        check_init(init.get("method", "kmeans++"))
        return
    unknown = set(init) - {"weights", "means", "covariances"}
    if unknown or "means" not in init:
        raise ValueError(
            "init mapping needs a 'means' entry and may have 'weights' and 'covariances'; "
            f"got keys {sorted(init)}."
        )


def _initial_params(
    init, X, weights, shift, model, priors, reg_covar, rng, statistics=False
) -> Params | SufficientStats:
    """The start ``init`` (a method's name or a user's mapping): its parameters or,
    where ``statistics`` and the start is drawn by a method, the statistics of its
    responsibilities (their M-step is the start; the compiled loop makes it)."""
    structure = model.structure
    if isinstance(init, Mapping) and "means" not in init:
        method = _initial_params(
            init.get("method", "kmeans++"), X, weights, shift, model, priors, reg_covar, rng
        )
        return _given_parts(init, method, structure)
    if isinstance(init, Mapping):
        return user_params(
            init,
            X.shape[1],
            shift,
            model,
            priors,
            reg_covar,
            partial(_assigned_stats, X, weights, shift, structure=structure),
        )
    stats = start_statistics(init, X, weights, shift, structure, model.n_components, rng)
    if statistics and priors is None:
        return stats
    return m_step(stats, structure, priors, reg_covar)


def start_statistics(
    method: str,
    X: np.ndarray,
    weights: np.ndarray,
    shift: np.ndarray,
    structure: CovarianceStructure,
    n_components: int,
    rng: np.random.Generator,
) -> SufficientStats:
    """The sufficient statistics (in ``structure``'s form, about ``shift``) of the
    responsibilities that the start ``method``
    (:func:`~bayesmix.inference.em.init.initial_responsibilities`) draws from ``rng``.

    Within :func:`~bayesmix.inference.em.init.shared_starts`, where the models of one K
    share their starts, a start's statistics are computed once per form of the second
    moments (full matrices, diagonals, ...: the models of one form, e.g. VVV and the six
    matrix-constrained ones, need the same sums), read-only, bit for bit the statistics
    computed outside the block."""
    resp = initial_responsibilities(method, X, weights, n_components, rng)
    entries = shared_entries(X, weights)
    if entries is None:
        return stats_from_responsibilities(X, weights, shift, resp, structure)
    # the shared responsibilities are kept alive by the entries: their id is a key
    key = (id(resp), type(structure).second_moment, shift.tobytes())
    stats = entries["statistics"].get(key)
    if stats is None:
        stats = stats_from_responsibilities(X, weights, shift, resp, structure)
        for part in (stats.mass, stats.sum_x, stats.sum_xx):
            part.flags.writeable = False  # shared: an M-step must not write into them
        entries["statistics"][key] = stats
    return stats


def _given_parts(init, params: Params, structure: CovarianceStructure) -> Params:
    """``params`` with the weights and/or covariances that ``init`` gives."""
    n_components, n_features = params.means.shape
    w, cov = params.weights, params.covariances
    if init.get("weights") is not None:
        w = _user_weights(init["weights"], n_components)
    if init.get("covariances") is not None:
        cov = _user_covariances(init["covariances"], structure, n_components, n_features)
    precisions_cholesky = (
        params.precisions_cholesky
        if cov is params.covariances
        else structure.precision_cholesky(cov)
    )
    return Params(w, params.means, cov, precisions_cholesky)


def _user_weights(value: Any, n_components: int) -> np.ndarray:
    w = _array(value, "init['weights']", (n_components,))
    if (w < 0).any() or not np.isclose(w.sum(), 1.0, rtol=1e-6):
        raise ValueError("init['weights'] must be non-negative and sum to 1.")
    return w / w.sum()


def _assigned_stats(X, weights, shift, centres, structure) -> SufficientStats:
    """Statistics of the hard assignment of every row to its nearest centre (centres in
    shifted units)."""
    labels, _ = nearest(X - shift, centres)
    resp = np.zeros((X.shape[0], centres.shape[0]))
    resp[np.arange(X.shape[0]), labels] = 1.0
    return stats_from_responsibilities(X, weights, shift, resp, structure)


def user_params(init, n_features, shift, model, priors, reg_covar, assigned_stats) -> Params:
    """Parameters from a user's start; missing weights or covariances come from the
    hard assignment of every row to its nearest given mean (``assigned_stats(means)``)."""
    structure = model.structure
    n_components = model.n_components
    means = _array(init["means"], "init['means']", (n_components, n_features)) - shift
    given_weights, given_cov = init.get("weights"), init.get("covariances")
    if given_weights is None or given_cov is None:
        stats = assigned_stats(means)
        mass = stats.mass + 10 * np.finfo(float).eps

    if given_weights is not None:
        w = _user_weights(given_weights, n_components)
    else:
        w = mass / mass.sum()

    if given_cov is not None:
        cov = _user_covariances(given_cov, structure, n_components, n_features)
    else:
        dof, scale = (
            (None, None) if priors is None else (priors.covariance_dof, priors.covariance_scale)
        )
        cov = structure.m_step(mass, stats.sum_x, stats.sum_xx, means, dof, scale, reg_covar)
    return Params(w, means, cov, structure.precision_cholesky(cov))


def _user_covariances(value, structure, n_components: int, n_features: int) -> np.ndarray:
    cov = np.asarray(value, dtype=float)
    natural_shape = structure.natural_shape(n_components, n_features)
    if cov.shape == (n_components, n_features, n_features) and cov.shape != natural_shape:
        cov = structure.from_full(cov)
    cov = _array(cov, "init['covariances']", natural_shape)
    if structure.axis_aligned:
        if (cov <= 0).any():
            raise ValueError("init['covariances'] must be positive.")
        return cov
    matrices = cov.reshape((-1, n_features, n_features))
    if not np.allclose(matrices, np.swapaxes(matrices, 1, 2)) or (
        np.linalg.eigvalsh(matrices).min() <= 0
    ):
        raise ValueError("init['covariances'] must be symmetric positive definite.")
    return cov


def _array(value: Any, name: str, shape: tuple[int, ...]) -> np.ndarray:
    try:
        array = np.asarray(value, dtype=float)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be numeric.") from None
    if array.shape != shape:
        raise ValueError(f"{name} must have shape {shape}; got {array.shape}.")
    if not np.isfinite(array).all():
        raise ValueError(f"{name} contains NaN or infinite values.")
    return array


def _missing_setup(data: Data, weights: np.ndarray, structure: CovarianceStructure):
    """For data with NaN (``missing="marginalize"``): the weighted mean of the observed
    values as shift, the data with NaN replaced by that mean (used only to initialise)
    and the pattern-wise E-step of :mod:`bayesmix.families.gaussian.missing`."""
    shift, _ = observed_moments(data, weights)
    imputed = np.where(data.missing_mask, shift, data.values)
    layout = missing_layout(data)
    return shift, imputed, MissingEStep(data.values, weights, shift, structure, layout)
