"""EM on Dask: the in-memory EM loop with the E-step mapped over chunks and tree-summed.

The E-step's statistics add up over blocks of rows (:mod:`bayesmix.families.gaussian.stats`), so
EM on a chunked :class:`dask.array.Array` is the in-memory loop of :mod:`bayesmix.inference.em.fit`
(``best_run`` / ``_run_em``) with another ``estep``: every chunk's
:func:`~bayesmix.families.gaussian.stats.e_step` runs where the chunk lives, the
:class:`~bayesmix.families.gaussian.stats.SufficientStats` (``K x D x D`` numbers) are summed
in a tree of fixed shape, and only that sum reaches the client; one :func:`dask.compute` per
iteration, under whatever scheduler is active (the threaded default or a
``dask.distributed.Client``).

Passes over the data:

1. a scan: the weighted mean and variance (merged per chunk by Chan's formula), checks for
   NaN, infinite or huge values and bad weights, and a seeded random sample of rows
   (``INIT_SAMPLE_ROWS`` in expectation, drawn per chunk) for the initialisation;
2. per restart, one pass that hard-assigns every row to the centres that k-means++ (or
   k-means, or random rows) chose on the sample and sums the statistics;
3. one pass per EM iteration.

Nothing is persisted: a lazily generated or file-backed array is read again on every
pass, so memory stays at a few chunks per worker thread. If the data fit in the workers'
memory, ``X = X.persist()`` before fitting saves regenerating them each iteration, and
under a ``dask.distributed`` client the iterations then schedule no tasks: one actor per
worker holds its chunks (:class:`_WorkerChunks`) and an E-step is one actor call per
worker (relayed by the scheduler, or direct with ``Client(direct_to_workers=True)``), a
few milliseconds of overhead instead of tens for a task graph.

A worker that dies mid-fit (out of memory, a killed process, a lost machine) does not lose
the fit. On a task graph, distributed reruns the lost tasks and recomputes lost persisted
chunks from their graph; on the worker actors the pass that failed is redone: the lost
chunks are recomputed by distributed, the actors are placed again on the workers there
are (a restarted one included) and the same E-step is run again. Every pass sums its
chunks' statistics in chunk order whichever worker computed them, so the fit ends where
the fault-free fit ends, to the last bit. If the data cannot be recomputed (the only copy
of scattered data was on the dead worker), or no worker is there to compute them for
``WORKER_LOSS_TIMEOUT`` seconds, the fit raises a one-line
:class:`~bayesmix.exceptions.WorkerLostError`.

``init="kmeans||"`` (:func:`kmeans_parallel_centres`) chooses the initial centres over
all rows in a few more passes instead of on the sample; anomaly thresholds on Dask input
use the exact :func:`blockwise_quantiles`.

Dask is imported lazily: bayesmix imports without it, and only Dask input loads it.
"""

from __future__ import annotations

import re
import time
import warnings
from collections.abc import Callable, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial, reduce
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from bayesmix.data import (
    MAX_ABS_VALUE,
    DaskData,
    Data,
    as_dask_data,
    check_sample_weight,
    import_dask,
    is_dask_input,
)
from bayesmix.exceptions import MissingDataWarning, RechunkWarning, WorkerLostError
from bayesmix.families.base import DataSummary
from bayesmix.families.gaussian.stats import (
    Params,
    SufficientStats,
    e_step,
    iter_blocks,
    m_step,
    stats_from_responsibilities,
)
from bayesmix.inference.em.degeneracy import collapse_reasons, feature_resolution
from bayesmix.inference.em.family import (
    FamilyEMOptions,
    add_statistics,
    block_assigned,
    block_estep,
    block_final,
    run_family_em,
)
from bayesmix.inference.em.fit import (
    EM_DEFAULTS,
    EMOptions,
    best_run,
    em_result,
    regularisation,
    start_method,
    user_params,
)
from bayesmix.inference.em.init import hc_labels, hc_model_name, kmeans, kmeans_plusplus, nearest
from bayesmix.ordering import resolve_order_by
from bayesmix.priors import Priors, ResolvedPriors
from bayesmix.validation import reproducible_rng

if TYPE_CHECKING:
    from bayesmix.families.base import ComponentFamily, Parameters
    from bayesmix.mixture import Mixture
    from bayesmix.model import GaussianMixture
    from bayesmix.results import EMResult

__all__ = [
    "DaskData",
    "RechunkWarning",
    "as_dask_data",
    "assign_chunks",
    "blockwise_quantiles",
    "check_scan",
    "fit_em_dask",
    "family_chunks",
    "fit_family_em_dask",
    "is_dask_input",
    "kmeans_parallel_centres",
    "sample_centres",
]

# Rows the initialisation sample holds in expectation (k-means++ runs on it in memory).
INIT_SAMPLE_ROWS = 100_000
# Rows per slice of the scan's centred-moment computation (bounds its temporaries).
_SCAN_ROWS = 65_536
# Partial sums combined per node of the reduction tree.
TREE_FAN_IN = 8
# EM iterations on data persisted on a dask.distributed cluster call one actor per worker
# (False: a task graph per iteration, as for any other data).
WORKER_ACTORS = True
# After losing a worker, a fit waits at most this many seconds for the lost chunks to be
# back in the cluster's memory (distributed recomputes them from their graph) and for a
# worker to compute on, then raises WorkerLostError; a pass is redone at most
# WORKER_LOSS_RETRIES times in a row. Both are settings (assign them on this module):
# every fit on Dask input checks them first (_loss_timeout, _loss_retries).
WORKER_LOSS_TIMEOUT = 60.0
WORKER_LOSS_RETRIES = 3
# Seconds between looks at the cluster while a pass waits for its result.
_POLL_SECONDS = 0.5


def _dask_weights(sample_weight: Any, data: DaskData) -> Any:
    """Weights as a Dask array with the row chunks of ``data`` (None: unit weights)."""
    if sample_weight is None:
        return None
    _, da = import_dask()
    if is_dask_input(sample_weight):
        weights = sample_weight
        if hasattr(weights, "to_dask_array"):
            weights = weights.to_dask_array(lengths=True)
        elif isinstance(weights, xr.DataArray):
            weights = da.asarray(weights.data)
        if weights.ndim != 1:
            raise ValueError(
                f"sample_weight must be 1-D with one weight per row of X; got shape "
                f"{weights.shape}."
            )
        if any(np.isnan(c) for c in weights.chunks[0]):
            raise ValueError(
                "sample_weight has unknown chunk sizes; compute them first with "
                "sample_weight = sample_weight.compute_chunk_sizes()."
            )
        if weights.shape[0] != data.n_obs:
            raise ValueError(
                f"sample_weight must have shape ({data.n_obs},), one weight per row of X; "
                f"got shape {weights.shape}."
            )
        if weights.dtype.kind not in "biuf":
            raise TypeError(f"sample_weight must be numeric; got dtype {weights.dtype}.")
        # finiteness, signs and the sum are checked by the scan
        return weights.astype(np.float64).rechunk((data.row_chunks,))
    weights = check_sample_weight(sample_weight, data.n_obs)
    return da.from_array(weights, chunks=(data.row_chunks,))


# -- per-chunk work (runs on the workers) ------------------------------------------------


@contextmanager
def _numba_threads(n_threads: int = 1):
    """Run the compiled E-step on ``n_threads`` threads (numba's thread count is
    thread-local). One inside a graph task: Dask already runs one task per core."""
    import numba

    before = numba.get_num_threads()
    numba.set_num_threads(max(1, min(n_threads, numba.config.NUMBA_NUM_THREADS)))
    try:
        yield
    finally:
        numba.set_num_threads(before)


def _block(x: Any, w: Any) -> tuple[np.ndarray, np.ndarray]:
    x = np.ascontiguousarray(x, dtype=np.float64)
    w = np.ones(x.shape[0]) if w is None else np.ascontiguousarray(w, dtype=np.float64)
    return x, w


@dataclass(frozen=True)
class _Scan:
    """Summary of one pass over the data, merged over chunks in order."""

    total_weight: float
    mean: np.ndarray
    m2: np.ndarray  # sum_n w_n (x_n - mean)^2 per feature
    n_positive: int
    n_bad: int  # NaN or infinite values of X
    first_bad: tuple[int, int] | None  # (global row, column)
    max_abs: float
    n_bad_weights: int
    n_negative_weights: int
    sample: np.ndarray
    sample_weight: np.ndarray


def _scan_block(x, w, offset, keep, seed) -> _Scan:
    x, w = _block(x, w)
    n_features = x.shape[1]
    low, high = (x.min(), x.max()) if x.size else (0.0, 0.0)
    n_bad, first_bad = 0, None
    if not (np.isfinite(low) and np.isfinite(high)):
        bad = ~np.isfinite(x)
        n_bad = int(bad.sum())
        row, col = np.argwhere(bad)[0]
        first_bad = (offset + int(row), int(col))
    bad_w = ~np.isfinite(w)
    total = float(w.sum()) if not bad_w.any() else 0.0
    if n_bad == 0 and total > 0 and not bad_w.any():
        mean = w @ x / total
        m2 = np.zeros(n_features)
        for rows in iter_blocks(x.shape[0], _SCAN_ROWS):  # bounded temporaries
            centred = x[rows] - mean
            m2 += w[rows] @ (centred * centred)
    else:
        mean, m2 = np.zeros(n_features), np.zeros(n_features)
    if keep >= 1.0:
        chosen = slice(None)
    else:
        chosen = np.random.default_rng(seed).random(x.shape[0]) < keep
    return _Scan(
        total_weight=total,
        mean=mean,
        m2=m2,
        n_positive=int(np.count_nonzero(w > 0)),
        n_bad=n_bad,
        first_bad=first_bad,
        max_abs=float(max(-low, high)) if n_bad == 0 else 0.0,
        n_bad_weights=int(bad_w.sum()),
        n_negative_weights=int(np.count_nonzero(w < 0)),
        sample=x[chosen].copy(),
        sample_weight=w[chosen].copy(),
    )


def _merge_scans(a: _Scan, b: _Scan) -> _Scan:
    """Chan et al.'s pairwise update of weighted means and squared deviations."""
    total = a.total_weight + b.total_weight
    if total > 0:
        delta = b.mean - a.mean
        mean = a.mean + delta * (b.total_weight / total)
        m2 = a.m2 + b.m2 + delta * delta * (a.total_weight * b.total_weight / total)
    else:
        mean, m2 = a.mean, a.m2
    return _Scan(
        total_weight=total,
        mean=mean,
        m2=m2,
        n_positive=a.n_positive + b.n_positive,
        n_bad=a.n_bad + b.n_bad,
        first_bad=a.first_bad if a.first_bad is not None else b.first_bad,
        max_abs=max(a.max_abs, b.max_abs),
        n_bad_weights=a.n_bad_weights + b.n_bad_weights,
        n_negative_weights=a.n_negative_weights + b.n_negative_weights,
        sample=np.concatenate([a.sample, b.sample]),
        sample_weight=np.concatenate([a.sample_weight, b.sample_weight]),
    )


def _in_threads(n_threads: int, func: Callable, x, w, *args: Any) -> Any:
    """``func`` on a chunk as contiguous float64 (and its weights, ones when unweighted)
    with numba on ``n_threads`` threads (:meth:`DaskSource.map_chunks`)."""
    x, w = _block(x, w)
    with _numba_threads(n_threads):
        return func(x, w, *args)


def _estep_block(x, w, shift, params, structure) -> SufficientStats:
    x, w = _block(x, w)
    with _numba_threads(1):
        return e_step(x, w, shift, params, structure)


def _assigned_block(x, w, shift, centres, structure) -> SufficientStats:
    """Statistics of the hard assignment of a chunk's rows to the nearest centre."""
    x, w = _block(x, w)
    labels, _ = nearest(x - shift, centres)
    resp = np.zeros((x.shape[0], centres.shape[0]))
    resp[np.arange(x.shape[0]), labels] = 1.0
    return stats_from_responsibilities(x, w, shift, resp, structure)


def _random_block(x, w, seed, shift, n_components, structure) -> SufficientStats:
    """Statistics of uniform random responsibilities (``init="random"``), seeded per chunk."""
    x, w = _block(x, w)
    resp = np.random.default_rng(seed).uniform(size=(x.shape[0], n_components))
    resp /= resp.sum(axis=1, keepdims=True)
    return stats_from_responsibilities(x, w, shift, resp, structure)


def _sum_all(*parts):
    return reduce(lambda a, b: a + b, parts)


def _merge_all(*parts):
    return reduce(_merge_scans, parts)


# -- the data source: one map-reduce per pass --------------------------------------------


class DaskSource:
    """Chunked data and weights; every pass is a map over chunks and a fixed-shape tree
    reduction, evaluated by one :func:`dask.compute` under the active scheduler.

    The E-step of EM iterations goes through :class:`_WorkerChunks` instead when a
    ``dask.distributed`` client is active and every chunk of ``X`` is already in the
    cluster's memory (``X = X.persist()``): one actor per worker holds its chunks, and an
    iteration is one actor call per worker rather than a task graph (see
    :attr:`estep_path`).
    """

    def __init__(self, data: DaskData, weights: Any) -> None:
        dask, _ = import_dask()
        self.data = data
        self.n_chunks = len(data.row_chunks)
        self._weights = weights
        _loss_timeout(), _loss_retries()  # bad settings refused before any pass
        self._cluster = _active_client(data.array)  # a dask.distributed client, or None
        self._client = _persisted_on_client(data.array) if WORKER_ACTORS else None
        self._workers: _WorkerChunks | None = None
        self.worker_losses = 0  # passes of the worker actors redone after losing a worker
        self._x = list(data.array.to_delayed(optimize_graph=True).ravel())
        self._w = (
            [None] * self.n_chunks
            if weights is None
            else list(weights.to_delayed(optimize_graph=True).ravel())
        )
        self._delayed = dask.delayed
        self._compute = dask.compute

    def map_reduce(
        self, func: Callable, combine: Callable, *args: Any, per_chunk=None, chunks=None
    ) -> Any:
        """``combine`` over chunks (in chunk order, tree-shaped) of
        ``func(x_chunk, w_chunk, *per_chunk[i], *args)``; small ``args`` are sent once.
        ``chunks``: the indices of the chunks to map over (default: all)."""
        delayed = self._delayed
        shared = [
            delayed(a) if isinstance(a, (np.ndarray, Params, dict, DataSummary)) else a
            for a in args
        ]
        task = delayed(func, pure=False)
        node = delayed(combine, pure=False)
        selected = range(self.n_chunks) if chunks is None else sorted(chunks)

        def graph():  # new keys at each call (pure=False)
            parts = [
                task(self._x[i], self._w[i], *(() if per_chunk is None else per_chunk[i]), *shared)
                for i in selected
            ]
            while len(parts) > 1:
                parts = [
                    node(*parts[i : i + TREE_FAN_IN]) for i in range(0, len(parts), TREE_FAN_IN)
                ]
            return parts[0]

        if self._cluster is None:
            return self._compute(graph())[0]
        return _cluster_result(self._cluster, graph, self.data.array)

    def scan(self, rng: np.random.Generator, sample_rows: int) -> _Scan:
        keep = min(1.0, sample_rows / max(self.data.n_obs, 1))
        # Whole data as the "sample" when it is small: no random numbers are drawn, so
        # k-means++ sees exactly what the in-memory fit sees with the same seed.
        seeds = [None] * self.n_chunks if keep >= 1.0 else rng.integers(2**63, size=self.n_chunks)
        offsets = np.concatenate([[0], np.cumsum(self.data.row_chunks)[:-1]])
        per_chunk = [(int(offsets[i]), keep, seeds[i]) for i in range(self.n_chunks)]
        return self.map_reduce(_scan_block, _merge_all, per_chunk=per_chunk)

    @property
    def estep_path(self) -> str:
        """``"worker-actors"`` (persisted data, distributed client) or ``"task-graph"``."""
        return "task-graph" if self._client is None else "worker-actors"

    def map_chunks(self, func: Callable, combine: Callable, *args: Any, chunks=None) -> Any:
        """``combine`` over chunks (in chunk order, tree-shaped) of ``func(x, w, *args)``
        with ``x`` a chunk of X as contiguous float64 and ``w`` its weights (ones when
        unweighted), by the E-step's route (:attr:`estep_path`): the worker actors for
        data persisted on a ``dask.distributed`` cluster, else a task graph. Either route
        survives losing a worker (:meth:`on_workers`, :func:`_cluster_result`) with the
        fault-free result. ``func`` must be importable on the workers (a module-level
        function); it runs with numba on the worker's threads (actors) or one thread (a
        graph task). ``chunks``: the indices of the chunks to map over (default: all).
        """
        if self._client is None:
            return self.map_reduce(partial(_in_threads, 1, func), combine, *args, chunks=chunks)
        selected = range(self.n_chunks) if chunks is None else chunks
        return self.on_workers("apply", combine, func, *args, chunks=selected)

    def estep(self, params: Params, *, shift: np.ndarray, structure) -> SufficientStats:
        if self._client is None:
            return _finite(self.map_reduce(_estep_block, _sum_all, shift, params, structure))
        return _finite(self.on_workers("estep", _sum_all, shift, params, structure))

    def on_workers(self, method: str, combine: Callable, *args: Any, chunks=None) -> Any:
        """``combine`` over chunks (in chunk order, the tree of :meth:`map_reduce`) of the
        worker actors' per-chunk results of ``method(*args)``.

        The actors are placed at the first call. A pass that loses a worker (a call that
        fails to reach it or an actor's worker that left the cluster) is redone: the
        actors are released, the lost chunks of the persisted array are awaited back in
        memory (distributed recomputes them from their graph), the actors are placed
        again on the workers there are and the same call runs again. Its result is the
        fault-free one: the chunks' results are summed in chunk order, whichever worker
        computed them. ``chunks``: the indices of the chunks to call on (default: all).

        Raises
        ------
        WorkerLostError
            If the lost chunks cannot be recomputed, are not back within
            ``WORKER_LOSS_TIMEOUT`` seconds, or the pass failed ``WORKER_LOSS_RETRIES + 1``
            times in a row.
        """
        lost_types = _worker_loss_types()
        failures = 0
        while True:
            workers = self._workers
            try:
                if workers is None:
                    workers = self._workers = _WorkerChunks(
                        self._client, self.data.array, self._weights
                    )
                return _tree_reduce(workers.call(method, *args, chunks=chunks), combine)
            except lost_types as error:
                if self._client.status != "running":  # the client closed: not a worker loss
                    raise
                addresses = [] if workers is None else workers.addresses
                self.close()
                failures += 1
                if failures > _loss_retries():
                    raise WorkerLostError(
                        f"the Dask cluster lost a worker {failures} times in a row during one "
                        f"pass of the fit over X (last: {type(error).__name__}: {error}); "
                        "check the workers' logs (memory?) and fit again."
                    ) from None
                self._await_chunks(addresses)
                self.worker_losses += 1

    def _await_chunks(self, addresses: list[str]) -> None:
        """After a failed actor pass: wait until the scheduler has removed a lost worker
        (it notices a killed process within milliseconds; two seconds at most, in case
        the failure was another one) and every chunk of X is in memory again."""
        from concurrent.futures import CancelledError

        client = self._client
        deadline = time.monotonic() + _loss_timeout()
        settle = time.monotonic() + 2.0
        while addresses and set(addresses) <= set(client.nthreads()):
            if time.monotonic() > settle:
                break
            time.sleep(0.02)
        try:
            futures = _chunk_futures(client, self.data.array)
            with client.as_current():
                _distributed().wait(futures, timeout=max(deadline - time.monotonic(), 0.0))
        except TimeoutError:
            raise WorkerLostError(_timeout_message()) from None
        except CancelledError:  # distributed gave up on some chunks
            raise WorkerLostError(_lost_data_message()) from None
        gone = [f for f in futures if f.status != "finished"]
        if gone:
            raise WorkerLostError(_lost_data_message(len(gone), len(futures)))

    def close(self) -> None:
        """Release the actors (and the chunk copies they hold)."""
        if self._workers is not None:
            self._workers.close()
            self._workers = None

    def assigned_stats(self, centres: np.ndarray, *, shift: np.ndarray, structure):
        return _finite(self.map_reduce(_assigned_block, _sum_all, shift, centres, structure))

    def random_stats(self, n_components: int, rng, *, shift: np.ndarray, structure):
        seeds = rng.integers(2**63, size=self.n_chunks)
        return _finite(
            self.map_reduce(
                _random_block,
                _sum_all,
                shift,
                n_components,
                structure,
                per_chunk=[(int(s),) for s in seeds],
            )
        )


def _finite(stats: SufficientStats) -> SufficientStats:
    """The scan found only finite values; NaN now means the data changed between passes."""
    if not (np.isfinite(stats.log_likelihood) and np.isfinite(stats.sum_xx).all()):
        raise ValueError(
            "X produced NaN or infinite values during an EM pass although the scan before "
            "EM found none: the data changed between passes (e.g. an unseeded or "
            "non-deterministic source). Make X deterministic (seeded generation) or "
            "X = X.persist() it, and drop or impute non-finite values."
        )
    return stats


# -- persisted data on a distributed cluster: one actor per worker ----------------------


def _active_client(array: Any) -> Any:
    """The ``dask.distributed`` client that would compute ``array`` (running), else None."""
    try:
        from dask.base import get_scheduler
        from distributed import Client
    except ImportError:
        return None
    client = getattr(get_scheduler(collections=[array]), "__self__", None)
    return client if isinstance(client, Client) and client.status == "running" else None


def _persisted_on_client(array: Any) -> Any:
    """The active ``dask.distributed`` client if every chunk of ``array`` is a future in
    its cluster's memory (``array.persist()`` under that client), else None."""
    client = _active_client(array)
    if client is None:
        return None
    keys = {f.key for f in client.futures_of(array)}
    return client if keys and keys.issuperset(_chunk_keys(array)) else None


def _chunk_keys(array: Any) -> list:
    from dask.core import flatten

    return list(flatten(array.__dask_keys__()))


def _chunk_futures(client: Any, array: Any) -> list:
    """The futures of a persisted array's chunks, in chunk order."""
    futures = {f.key: f for f in client.futures_of(array)}
    return [futures[key] for key in _chunk_keys(array)]


# -- losing a worker ---------------------------------------------------------------------


def _distributed():
    import distributed

    return distributed


def _worker_loss_types() -> tuple[type[BaseException], ...]:
    """What a pass raises when a worker it used died: a call that could not reach the
    worker (``OSError``, incl. distributed's ``CommClosedError``), futures cancelled
    because their data are gone, a task that killed every worker it ran on."""
    from concurrent.futures import CancelledError

    return (OSError, CancelledError, _distributed().KilledWorker)


def _loss_timeout() -> float:
    """``WORKER_LOSS_TIMEOUT``, checked: a finite number of seconds > 0 (a TypeError or
    ValueError naming the setting otherwise; an infinite wait would be a hang)."""
    value = WORKER_LOSS_TIMEOUT
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(
            "bayesmix.inference.em.distributed.WORKER_LOSS_TIMEOUT must be a number of "
            f"seconds, got {type(value).__name__} {value!r}; set it to e.g. 60.0."
        )
    if not (np.isfinite(value) and value > 0):
        raise ValueError(
            "bayesmix.inference.em.distributed.WORKER_LOSS_TIMEOUT must be a finite number "
            f"of seconds > 0, got {value!r}; set it to e.g. 60.0."
        )
    return float(value)


def _loss_retries() -> int:
    """``WORKER_LOSS_RETRIES``, checked: an integer >= 0 (a TypeError or ValueError
    naming the setting otherwise)."""
    value = WORKER_LOSS_RETRIES
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(
            "bayesmix.inference.em.distributed.WORKER_LOSS_RETRIES must be an integer, got "
            f"{type(value).__name__} {value!r}; set it to e.g. 3."
        )
    if value < 0:
        raise ValueError(
            "bayesmix.inference.em.distributed.WORKER_LOSS_RETRIES must be >= 0 (the times "
            f"a pass is redone after losing a worker), got {value!r}; set it to e.g. 3."
        )
    return int(value)


def _lost_data_message(n_lost: int | None = None, n_chunks: int | None = None) -> str:
    which = "X's chunks" if n_lost is None else f"{n_lost} of X's {n_chunks} chunks"
    return (
        f"a Dask worker died during the fit and {which} were lost with it and cannot be "
        "recomputed (their only copy, e.g. scattered data, was on that worker); build X "
        "from a source Dask can recompute (da.from_array, files, a seeded generator), "
        "persist that, and fit again."
    )


def _timeout_message() -> str:
    return (
        f"a Dask worker died during the fit and the cluster did not have X's chunks (or "
        f"any worker) back within WORKER_LOSS_TIMEOUT={_loss_timeout():g} s; check "
        "that the cluster has running workers (client.nthreads()) and fit again."
    )


def _cluster_result(client: Any, graph: Callable[[], Any], array: Any) -> Any:
    """``graph()`` (a delayed object over the chunks of ``array``) computed on a
    ``dask.distributed`` cluster.

    distributed reruns the tasks a dead worker was running or held results of, and
    recomputes lost persisted chunks from their graph. A pass it cancels is submitted
    again (up to ``WORKER_LOSS_RETRIES`` times; a new ``graph()``, with new keys: the
    client keeps a cancelled key cancelled, so the same graph would come back cancelled
    at once) unless chunks of ``array`` are gone;
    data that cannot be recomputed, no worker for ``WORKER_LOSS_TIMEOUT`` seconds or a
    task that killed every worker it ran on raise a
    :class:`~bayesmix.exceptions.WorkerLostError` instead of a hang or distributed's own
    message.
    """
    from concurrent.futures import CancelledError

    attempts = _loss_retries() + 1
    for _ in range(attempts):
        future = client.compute(graph())
        try:
            _await_future(client, future)
            if future.status != "cancelled":
                return future.result()
        except _distributed().KilledWorker as error:
            raise WorkerLostError(
                f"the task {error.task!r} of the fit over X was running on each of the "
                f"{error.allowed_failures + 1} Dask workers that died while running it; it "
                "probably exhausts a worker's memory: use smaller chunks or give the "
                "workers more memory (and see the workers' logs), then fit again."
            ) from None
        finally:
            future.release()
        if client.status != "running":
            raise CancelledError("the Dask client closed during the fit")
        if _chunks_lost(client, array):
            raise WorkerLostError(_lost_data_message())
    raise WorkerLostError(
        f"the Dask cluster cancelled a pass of the fit over X {attempts} "
        "times in a row (workers lost?); check the cluster's workers and fit again."
    )


def _chunks_lost(client: Any, array: Any) -> bool:
    """Whether chunks of a persisted ``array`` were cancelled (lost for good)."""
    from concurrent.futures import CancelledError

    try:
        futures = client.futures_of(array)
    except CancelledError:
        return True
    return any(f.status == "cancelled" for f in futures)


def _await_future(client: Any, future: Any) -> None:
    """Wait until ``future`` is finished, erred or cancelled, looking at the cluster every
    ``_POLL_SECONDS``: ``WorkerLostError`` when it has had no worker for
    ``WORKER_LOSS_TIMEOUT`` seconds."""
    from concurrent.futures import CancelledError

    wait = _distributed().wait
    no_workers_since = None
    while True:
        try:
            with client.as_current():
                wait([future], timeout=_POLL_SECONDS)
            return
        except CancelledError:
            return
        except TimeoutError:
            pass
        if client.nthreads():
            no_workers_since = None
        elif no_workers_since is None:
            no_workers_since = time.monotonic()
        elif time.monotonic() - no_workers_since > _loss_timeout():
            raise WorkerLostError(_timeout_message()) from None


def _placed(client: Any, future: Any) -> Any:
    """The actor of a submitted :class:`_ChunkHolder` (``WorkerLostError`` when the
    cluster has no worker to place it on for ``WORKER_LOSS_TIMEOUT`` seconds)."""
    _await_future(client, future)
    return future.result()


def _actor_result(client: Any, call: Any, address: str) -> Any:
    """The result of an actor call, raising ``ConnectionError`` (a worker loss) if the
    actor's worker left the cluster while the call was waiting."""
    while True:
        try:
            return call.result(timeout=_POLL_SECONDS)
        except TimeoutError:
            if call.done():
                raise
        if address not in client.nthreads():
            raise ConnectionError(f"the Dask worker {address} left the cluster during the call")


def _tree_reduce(parts: list, combine: Callable) -> Any:
    """``combine`` over ``parts`` in the tree of :meth:`DaskSource.map_reduce`."""
    while len(parts) > 1:
        parts = [combine(*parts[i : i + TREE_FAN_IN]) for i in range(0, len(parts), TREE_FAN_IN)]
    return parts[0]


def assign_chunks(
    holders: list[list[str]], sizes: list[int], threads: Mapping[str, int]
) -> list[str]:
    """The worker that serves each chunk in the E-step, balancing rows per worker thread.

    A chunk stays on a worker holding it while that worker's rows, with half of the
    chunk, stay within its share (``n_rows * threads / total threads``); the other
    chunks go, in chunk order, to the worker with the fewest rows per thread after taking
    them (they are copied there once per fit). The workers' largest load never grows:
    only workers below their share receive copies.

    Parameters
    ----------
    holders : list of list of str
        Per chunk, the addresses of the workers holding it (``Client.who_has``).
    sizes : list of int
        Rows per chunk.
    threads : mapping of str to int
        Threads per worker address.

    Returns
    -------
    list of str
        Per chunk, the address of its worker.
    """
    workers = sorted(threads)
    total_threads = sum(threads[w] for w in workers)
    share = {w: sum(sizes) * threads[w] / total_threads for w in workers}
    load = dict.fromkeys(workers, 0)
    owners: list[str | None] = [None] * len(sizes)
    for i, held in enumerate(holders):
        held = sorted(w for w in held if w in threads)
        if held:
            w = min(held, key=lambda h: load[h] / threads[h])
            if load[w] + sizes[i] / 2 <= share[w]:
                owners[i] = w
                load[w] += sizes[i]
    for i, owner in enumerate(owners):
        if owner is None:
            w = min(workers, key=lambda h: (load[h] + sizes[i]) / threads[h])
            owners[i] = w
            load[w] += sizes[i]
    return owners


class _ChunkHolder:
    """Dask actor on one worker: its chunks of a persisted array (references to the
    worker's own chunks, copies of chunks moved to it) and their weights."""

    def __init__(self, chunks: list, weights: list) -> None:
        from distributed import get_worker

        self._chunks = [np.ascontiguousarray(x, dtype=np.float64) for x in chunks]
        self._weights = weights
        self._n_threads = get_worker().state.nthreads

    def estep(self, shift, params, structure) -> list[SufficientStats]:
        """The E-step statistics of each of this worker's chunks, computed on the worker's
        threads (the same numbers on any number of threads); the client sums them."""
        with _numba_threads(self._n_threads):
            return [
                e_step(*_block(x, w), shift, params, structure)
                for x, w in zip(self._chunks, self._weights, strict=True)
            ]

    def apply(self, positions: list[int], func: Callable, *args: Any) -> list:
        """``func(x, w, *args)`` on this worker's chunks at ``positions`` in its list, on
        the worker's threads (:meth:`DaskSource.map_chunks`)."""
        return [
            _in_threads(self._n_threads, func, self._chunks[i], self._weights[i], *args)
            for i in positions
        ]

    def family_estep(self, family, summary, drop_empty, log_weights, params) -> list:
        """:func:`~bayesmix.inference.em.family.block_estep` of each of this worker's
        chunks; the chunks are prepared for the family once per fit (the actors live for
        one fit)."""
        if getattr(self, "_family_rows", None) is None:
            self._family_rows = [
                _family_rows(x, w, family, summary, drop_empty)
                for x, w in zip(self._chunks, self._weights, strict=True)
            ]
        return [block_estep(family, *rows, log_weights, params) for rows in self._family_rows]


class _WorkerChunks:
    """The E-step over a persisted array as one actor call per worker.

    A task graph per iteration costs tens of milliseconds of scheduler round trips (one
    task per chunk plus the reduction tree); an actor holds each worker's chunks for
    the whole fit, and an iteration is one call per worker (a few milliseconds) that
    returns its chunks' ``K x D x D`` statistics, which the client sums in chunk order
    (the task graph's tree): the same sum whichever worker holds which chunk. Chunks are
    balanced over the workers' threads once (:func:`assign_chunks`); weights are
    computed onto the workers that serve their chunks.
    """

    def __init__(self, client: Any, array: Any, weights: Any) -> None:
        self._client = client
        chunks = _chunk_futures(client, array)
        self._n_chunks = len(chunks)
        who_has = client.who_has(chunks)
        threads = client.nthreads()
        owners = assign_chunks(
            [list(who_has.get(f.key, ())) for f in chunks],
            [int(c) for c in array.chunks[0]],
            threads,
        )
        self.addresses = sorted(set(owners))
        self._mine = [[i for i, owner in enumerate(owners) if owner == w] for w in self.addresses]
        self._actors: list = []
        self._futures: list = []
        try:
            self._place(client, chunks, weights)
        except BaseException:
            self.close()  # what was submitted so far
            raise

    def _place(self, client: Any, chunks: list, weights: Any) -> None:
        """One :class:`_ChunkHolder` actor per worker, with its chunks and their weights."""
        w_parts = None if weights is None else weights.to_delayed(optimize_graph=True).ravel()
        for worker, mine in zip(self.addresses, self._mine, strict=True):
            w = (
                [None] * len(mine)
                if w_parts is None
                else client.compute([w_parts[i] for i in mine], workers=[worker])
            )
            self._futures.append(
                client.submit(
                    _ChunkHolder,
                    [chunks[i] for i in mine],
                    w,
                    workers=[worker],
                    allow_other_workers=True,  # if the worker left meanwhile
                    actor=True,
                    pure=False,
                )
            )
        with client.as_current():  # the actor proxies bind to this client
            self._actors = [_placed(client, future) for future in self._futures]

    def call(self, method: str, *args: Any, chunks=None) -> list:
        """Per chunk, in chunk order, the result of the actors' ``method(*args)``; with
        ``chunks`` (indices) only for those, calling ``method(positions, *args)`` with
        the positions of the selected chunks among each actor's own."""
        if chunks is None:
            calls = [getattr(actor, method)(*args) for actor in self._actors]
            served = self._mine
        else:
            wanted = set(chunks)
            served, calls = [], []
            for actor, mine in zip(self._actors, self._mine, strict=True):
                positions = [p for p, i in enumerate(mine) if i in wanted]
                served.append([mine[p] for p in positions])
                calls.append(getattr(actor, method)(positions, *args) if positions else None)
        parts: dict = {}
        for call, address, mine in zip(calls, self.addresses, served, strict=True):
            if call is None:
                continue
            for i, part in zip(mine, _actor_result(self._client, call, address), strict=True):
                parts[i] = part
        return [parts[i] for i in sorted(parts)]

    def close(self) -> None:
        # The proxies hold futures of their own, which a reference cycle inside
        # distributed's Actor keeps alive until the next garbage collection: release them
        # too, so the actors (and chunk copies) go now.
        proxies = [getattr(actor, "_future", None) for actor in self._actors]
        for future in [*self._futures, *proxies]:
            if future is not None:
                future.release()
        self._actors, self._futures = [], []


# -- the fit -----------------------------------------------------------------------------


def check_scan(scan: _Scan, data: DaskData, n_components: int) -> None:
    """Raise a ValueError naming what the scan of X found wrong: NaN or infinite values
    (the first one's row and column), values whose squares overflow, bad weights, fewer
    rows of positive weight than components."""
    if scan.n_bad:
        row, col = scan.first_bad
        raise ValueError(
            f"X contains {scan.n_bad} NaN or infinite value(s), the first in row {row}, "
            f"column {data.feature_names[col]!r}; drop or impute them before fitting (e.g. "
            "X = X[da.isfinite(X).all(axis=1)].compute_chunk_sizes())."
        )
    if scan.max_abs > MAX_ABS_VALUE:
        raise ValueError(
            f"X has values larger than {MAX_ABS_VALUE:g} in magnitude, whose squares "
            "overflow float64; rescale the data (e.g. standardise the columns)."
        )
    if scan.n_bad_weights:
        raise ValueError("sample_weight contains NaN or infinite values; pass finite weights.")
    if scan.n_negative_weights:
        raise ValueError("sample_weight contains negative values; weights must be >= 0.")
    if scan.total_weight <= 0:
        raise ValueError("sample_weight sums to zero; at least one weight must be positive.")
    if scan.n_positive < n_components:
        raise ValueError(
            f"X has {scan.n_positive} rows with positive weight but "
            f"n_components={n_components}; use fewer components or more data."
        )


def _resolve_priors(model: GaussianMixture, scan: _Scan) -> ResolvedPriors:
    """The model's priors with data-scaled defaults from the scan's weighted moments.

    :meth:`Priors.resolve` reads the weighted mean and variance of its data; two rows at
    ``mean -+ sd`` with equal weights have exactly those moments (to rounding).
    """
    sd = np.sqrt(scan.m2 / scan.total_weight)
    two_rows = np.stack([scan.mean - sd, scan.mean + sd])
    priors = model.priors if model.priors is not None else Priors()
    return priors.resolve(two_rows, model.n_components, model.structure, np.ones(2))


def sample_centres(init: str, scan: _Scan, n_components: int, rng) -> np.ndarray:
    """Initial centres (data units) chosen on the scan's sample."""
    sample, weights = scan.sample, scan.sample_weight
    if np.count_nonzero(weights) < n_components:
        raise ValueError(
            f"the initialisation sample holds {np.count_nonzero(weights)} rows with positive "
            f"weight, fewer than n_components={n_components}; use init='random' or give "
            "initial means (init={'means': ...})."
        )
    if init == "kmeans++":
        return kmeans_plusplus(sample, weights, n_components, rng)
    if init == "random_from_data":
        candidates = np.flatnonzero(weights > 0)
        chosen = rng.choice(candidates, size=n_components, replace=False)
        return sample[chosen]
    if hc_model_name(init) != "":  # the hierarchical groups of the sample, as centres
        labels = hc_labels(sample, weights, n_components, rng, hc_model_name(init))
    else:  # "kmeans"
        labels = kmeans(sample, weights, n_components, rng)
    return _group_centres(sample, weights, labels, n_components, rng)


def _kmeans_centres(points, weights, n_components, rng) -> np.ndarray:
    """Centres of weighted k-means (Lloyd from k-means++) on points held in memory."""
    labels = kmeans(points, weights, n_components, rng)
    return _group_centres(points, weights, labels, n_components, rng)


def _group_centres(points, weights, labels, n_components, rng) -> np.ndarray:
    """Weighted means of the labelled groups; an empty group takes a random point."""
    mass = np.bincount(labels, weights=weights, minlength=n_components)
    sums = np.stack(
        [np.bincount(labels, points[:, d] * weights, n_components) for d in range(points.shape[1])],
        axis=1,
    )
    centres = sums / np.where(mass > 0, mass, 1.0)[:, None]
    empty = mass <= 0
    if empty.any():
        centres[empty] = points[rng.choice(np.flatnonzero(weights > 0), int(empty.sum()))]
    return centres


# -- k-means|| (Bahmani et al. 2012) ------------------------------------------------------

# Sampling rounds and oversampling factor (candidates per round, in expectation, per
# component) of init="kmeans||".
KMEANS_PARALLEL_ROUNDS = 5
KMEANS_PARALLEL_OVERSAMPLING = 2.0


def _candidates_block(x, w, seed, centres, oversampling) -> tuple:
    """One k-means|| round on a chunk: its cost ``sum w d^2`` to the nearest centre, and
    the rows that may be sampled once the total cost is known.

    A row is sampled with probability ``min(1, l * w * d^2 / cost)`` (Bahmani et al.):
    with a uniform ``u`` per row it is sampled iff its key ``l * w * d^2 / u`` exceeds the
    total cost. The total is at least this chunk's cost, so the rows whose key exceeds
    the chunk's cost (about ``l`` of them) are a superset; the client keeps those above
    the total.
    """
    x, w = _block(x, w)
    _, d2 = nearest(x, centres)
    cost = float(w @ d2)
    u = np.random.default_rng(seed).random(x.shape[0])
    score = oversampling * w * d2
    keep = score > u * cost
    with np.errstate(divide="ignore"):
        keys = score[keep] / u[keep]
    return cost, x[keep].copy(), keys


def _merge_candidates(*parts) -> tuple:
    return (
        sum(p[0] for p in parts),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
    )


def _nearest_mass_block(x, w, centres) -> np.ndarray:
    x, w = _block(x, w)
    labels, _ = nearest(x, centres)
    return np.bincount(labels, weights=w, minlength=centres.shape[0])


def kmeans_parallel_centres(
    source: DaskSource, scan: _Scan, n_components: int, rng: np.random.Generator
) -> np.ndarray:
    """Initial centres by k-means|| (Bahmani et al. 2012, "Scalable k-means++").

    The first centre is a row of the scan's sample drawn in proportion to its weight.
    Each of :data:`KMEANS_PARALLEL_ROUNDS` passes over the chunks then samples every row
    independently with probability ``min(1, l * w * d^2 / cost)``, ``l =
    KMEANS_PARALLEL_OVERSAMPLING * n_components``, ``d`` its distance to the nearest
    centre so far and ``cost`` the sum of ``w * d^2`` over all rows, and adds the sampled
    rows to the centres (about ``l`` per round). One more pass weights each candidate by
    the rows nearest to it, and weighted k-means (k-means++ then Lloyd) reduces the
    candidates to ``n_components`` centres in memory. Only candidates travel; the array
    is never materialised. Data units.
    """
    sample, weights = scan.sample, scan.sample_weight
    if np.count_nonzero(weights) < 1:
        raise ValueError(
            "the initialisation sample holds no row with positive weight; use "
            "init='random' or give initial means (init={'means': ...})."
        )
    centres = sample[[rng.choice(sample.shape[0], p=weights / weights.sum())]]
    oversampling = KMEANS_PARALLEL_OVERSAMPLING * n_components
    for _ in range(KMEANS_PARALLEL_ROUNDS):
        seeds = rng.integers(2**63, size=source.n_chunks)
        cost, rows, keys = source.map_reduce(
            _candidates_block,
            _merge_candidates,
            centres,
            oversampling,
            per_chunk=[(int(s),) for s in seeds],
        )
        if cost <= 0:  # every row sits on a centre
            break
        centres = np.concatenate([centres, rows[keys > cost]])
    mass = source.map_reduce(_nearest_mass_block, _sum_all, centres)
    if np.count_nonzero(mass) < n_components:
        raise ValueError(
            f"k-means|| found {np.count_nonzero(mass)} distinct candidate centres, fewer "
            f"than n_components={n_components} (too few distinct rows?); use fewer "
            "components or init='random'."
        )
    return _kmeans_centres(centres, mass, n_components, rng)


def _initial_params(init, source: DaskSource, scan, shift, model, priors, reg_covar, rng):
    structure = model.structure
    if isinstance(init, Mapping):
        assigned = partial(source.assigned_stats, shift=shift, structure=structure)
        return user_params(init, source.data.n_features, shift, model, priors, reg_covar, assigned)
    if init == "random":
        stats = source.random_stats(model.n_components, rng, shift=shift, structure=structure)
    else:
        if init == "kmeans||":
            centres = kmeans_parallel_centres(source, scan, model.n_components, rng) - shift
        else:
            centres = sample_centres(init, scan, model.n_components, rng) - shift
        stats = source.assigned_stats(centres, shift=shift, structure=structure)
    return m_step(stats, structure, priors, reg_covar)


def _dask_start(init, index: int, n_init: int):
    """:func:`~bayesmix.inference.em.fit.start_method` with k-means|| for k-means++ under
    ``init="auto"`` (the hierarchical start runs on the scan's sample)."""
    method = start_method(init, index, n_init)
    return "kmeans||" if method == "kmeans++" and init == "auto" else method


def fit_em_dask(
    model: GaussianMixture,
    X: Any,
    *,
    use_priors: bool,
    sample_weight: Any = None,
    n_init: int = 1,
    init: str | Mapping = EM_DEFAULTS["init"],
    max_iter: int = EM_DEFAULTS["max_iter"],
    tol: float = EM_DEFAULTS["tol"],
    reg_covar: float = EM_DEFAULTS["reg_covar"],
    random_state: Any = None,
    order_by: Any = None,
    accelerate: bool = True,
) -> EMResult:
    """Fit ``model`` by EM (or MAP-EM) to Dask input without materialising it.

    The options are those of :meth:`GaussianMixture.fit` for ``method="em"``. The EM
    loop is the in-memory one; the E-step maps over chunks and tree-sums their
    statistics (see the module docstring for the passes). With the same data and the
    same initial parameters (``init={"means": ..., "weights": ..., "covariances":
    ...}``) the result equals the in-memory fit's to rounding; for data of at most
    ``INIT_SAMPLE_ROWS`` rows the k-means++ start is the in-memory one for the same
    seed too. On more rows k-means++ (or k-means, or random rows) runs on a seeded
    random sample of about ``INIT_SAMPLE_ROWS`` rows.

    Defaults are the in-memory ones except the number of starts: one (``n_init=1``, each
    start costs passes over all the data); under ``init="auto"`` it is the hierarchical
    start on the sample, further starts k-means||.
    ``reg_covar`` is relative to each feature's variance on the sample, and spurious
    maxima are judged with the sample's resolution.

    Returns
    -------
    EMResult
        ``settings`` also records ``backend="dask"`` and ``n_chunks``.
    """
    options = EMOptions.checked(
        use_priors,
        init,
        n_init,
        max_iter,
        tol,
        reg_covar,
        random_state,
        order_by,
        accelerate=accelerate,
    )
    data = as_dask_data(X, min_obs=model.n_components)
    resolve_order_by(order_by, data.feature_names)  # before any pass over the data
    weights = _dask_weights(sample_weight, data)
    rng, seed_record = reproducible_rng(random_state)
    structure = model.structure

    start = time.perf_counter()
    source = DaskSource(data, weights)
    try:
        scan = source.scan(rng, INIT_SAMPLE_ROWS)
        check_scan(scan, data, model.n_components)
        shift = scan.mean
        priors = _resolve_priors(model, scan) if use_priors else None
        shifted_priors = priors.shifted(shift) if priors is not None else None
        reg = regularisation(scan.sample, scan.sample_weight, options.reg_covar)
        judge = partial(
            collapse_reasons,
            structure=structure,
            regularisation=reg,
            resolution=feature_resolution(scan.sample, scan.sample_weight),
            n_obs=scan.total_weight,
        )
        best = best_run(
            lambda index: _initial_params(
                _dask_start(init, index, n_init),
                source,
                scan,
                shift,
                model,
                shifted_priors,
                reg,
                rng,
            ),
            partial(source.estep, shift=shift, structure=structure),
            scan.total_weight,
            structure,
            shifted_priors,
            options,
            reg_covar=reg,
            judge=judge,
        )
    finally:
        source.close()
    settings = options.settings(
        seed_record,
        start,
        backend="dask",
        n_chunks=source.n_chunks,
        estep=source.estep_path,
        worker_losses=source.worker_losses,
        reg_covar_scale="feature variance",
    )
    return em_result(
        model,
        best,
        shift,
        priors,
        options,
        feature_names=data.feature_names,
        n_obs=scan.total_weight,
        settings=settings,
        regularisation=reg,
        judge=judge,
    )


# -- mixtures of any component family (bayesmix.families) ---------------------------------


@dataclass(frozen=True)
class _FamilyScan:
    """One pass over the data for a component family, merged over chunks in order.

    Moments are per column over the observed entries: unweighted (the families'
    :class:`~bayesmix.families.base.DataSummary`) and weighted (the priors' data-scaled
    defaults), merged by Chan's formula."""

    rows: tuple[int, ...]  # rows kept (with an observed entry) per chunk
    n_empty: int  # rows without any observed entry (left out, missing="marginalize")
    total_weight: float
    n_positive: int
    n_nan: int  # NaN entries, an error unless missing values are allowed
    first_nan: tuple[int, int] | None
    n_inf: int
    first_inf: tuple[int, int] | None
    support_error: str | None  # the family's check_values message (first chunk failing)
    max_abs: float
    n_bad_weights: int
    n_negative_weights: int
    count: np.ndarray
    mean: np.ndarray
    m2: np.ndarray
    weight: np.ndarray
    weighted_mean: np.ndarray
    weighted_m2: np.ndarray
    values: np.ndarray | None  # distinct observed values (discrete families)
    maximum: np.ndarray  # largest observed value per column (-inf: none)
    sample: np.ndarray
    sample_weight: np.ndarray


def _column_moments(x, w, observed) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per column: total weight, weighted mean and squared deviations of the observed
    entries. The mean is taken about each column's first observed entry: a column held
    at ``1e8 + 0.1`` then has that mean and no deviations exactly (about its plain
    mean, a chunk of 20000 such rows showed a variance of 3e-13, above the rounding
    floor ``(16 eps 1e8)^2 = 1.3e-13``, which called it not constant)."""
    first = observed.argmax(axis=0)
    centre = np.where(observed.any(axis=0), x[first, np.arange(x.shape[1])], 0.0)
    zeroed = np.where(observed, x - centre, 0.0)
    total = w @ observed
    mean = centre + np.divide(w @ zeroed, total, out=np.zeros(x.shape[1]), where=total > 0)
    m2 = np.zeros(x.shape[1])
    for rows in iter_blocks(x.shape[0], _SCAN_ROWS):  # bounded temporaries
        centred = np.where(observed[rows], x[rows] - mean, 0.0)
        m2 += w[rows] @ (centred * centred)
    return total, mean, m2


def _chan(total_a, mean_a, m2_a, total_b, mean_b, m2_b):
    """Chan et al.'s pairwise merge of per-column (weights, means, squared deviations)."""
    total = total_a + total_b
    safe = np.where(total > 0, total, 1.0)
    delta = mean_b - mean_a
    mean = np.where(total > 0, mean_a + delta * (total_b / safe), mean_a)
    m2 = m2_a + m2_b + np.where(total > 0, delta * delta * (total_a * total_b / safe), 0.0)
    return total, mean, m2


def _family_scan_block(x, w, offset, keep, seed, family, feature_names, allow_missing):
    x, w = _block(x, w)
    nan, inf = np.isnan(x), np.isinf(x)
    n_nan, first_nan = 0, None
    if not allow_missing and nan.any():
        n_nan = int(nan.sum())
        row, col = np.argwhere(nan | inf)[0]
        first_nan = (offset + int(row), int(col))
    n_inf, first_inf = int(inf.sum()), None
    if n_inf:
        row, col = np.argwhere(inf)[0]
        first_inf = (offset + int(row), int(col))
    n_empty, kept = 0, None
    if allow_missing:
        empty = nan.all(axis=1)
        n_empty = int(empty.sum())
        if n_empty:
            kept = np.flatnonzero(~empty)
            x, w, nan = x[kept], w[kept], nan[kept]
    observed = ~nan
    bad_w = ~np.isfinite(w)
    n_features = x.shape[1]
    support_error = None
    if not (n_nan or n_inf or bad_w.any()):
        try:
            family.check_block(x, feature_names, "X")
        except ValueError as error:
            support_error = _global_row(str(error), offset, kept)
    if n_nan or n_inf or bad_w.any() or support_error:
        zeros = np.zeros(n_features)
        count, mean, m2, weight, weighted_mean, weighted_m2 = (zeros,) * 6
        max_abs, values = 0.0, None
        maximum = np.full(n_features, -np.inf)
    else:
        count, mean, m2 = _column_moments(x, np.ones(x.shape[0]), observed)
        weight, weighted_mean, weighted_m2 = _column_moments(x, w, observed)
        finite = x[observed]
        max_abs = float(np.abs(finite).max(initial=0.0))
        values = np.unique(finite) if family.discrete else None
        maximum = np.where(observed, x, -np.inf).max(axis=0, initial=-np.inf)
    chosen = slice(None) if keep >= 1.0 else np.random.default_rng(seed).random(len(x)) < keep
    return _FamilyScan(
        rows=(int(x.shape[0]),),
        n_empty=n_empty,
        total_weight=float(w.sum()) if not bad_w.any() else 0.0,
        n_positive=int(np.count_nonzero(w > 0)),
        n_nan=n_nan,
        first_nan=first_nan,
        n_inf=n_inf,
        first_inf=first_inf,
        support_error=support_error,
        max_abs=max_abs,
        n_bad_weights=int(bad_w.sum()),
        n_negative_weights=int(np.count_nonzero(w < 0)),
        count=count,
        mean=mean,
        m2=m2,
        weight=weight,
        weighted_mean=weighted_mean,
        weighted_m2=weighted_m2,
        values=values,
        maximum=maximum,
        sample=x[chosen].copy(),
        sample_weight=w[chosen].copy(),
    )


def _global_row(message: str, offset: int, kept: np.ndarray | None) -> str:
    """A family's support message about a chunk's rows, its ``row N`` made a row of X."""

    def replace(match):
        row = int(match.group(1))
        return f"row {offset + (row if kept is None else int(kept[row]))}"

    changed, n = re.subn(r"\brow (\d+)", replace, message, count=1)
    return changed if n else f"{message} (in the Dask chunk starting at row {offset})"


def _merge_family_scans(a: _FamilyScan, b: _FamilyScan) -> _FamilyScan:
    count, mean, m2 = _chan(a.count, a.mean, a.m2, b.count, b.mean, b.m2)
    weight, weighted_mean, weighted_m2 = _chan(
        a.weight, a.weighted_mean, a.weighted_m2, b.weight, b.weighted_mean, b.weighted_m2
    )
    values = a.values if b.values is None else b.values
    if a.values is not None and b.values is not None:
        values = np.union1d(a.values, b.values)
    return _FamilyScan(
        rows=a.rows + b.rows,
        n_empty=a.n_empty + b.n_empty,
        total_weight=a.total_weight + b.total_weight,
        n_positive=a.n_positive + b.n_positive,
        n_nan=a.n_nan + b.n_nan,
        first_nan=a.first_nan if a.first_nan is not None else b.first_nan,
        n_inf=a.n_inf + b.n_inf,
        first_inf=a.first_inf if a.first_inf is not None else b.first_inf,
        support_error=a.support_error or b.support_error,
        max_abs=max(a.max_abs, b.max_abs),
        n_bad_weights=a.n_bad_weights + b.n_bad_weights,
        n_negative_weights=a.n_negative_weights + b.n_negative_weights,
        count=count,
        mean=mean,
        m2=m2,
        weight=weight,
        weighted_mean=weighted_mean,
        weighted_m2=weighted_m2,
        values=values,
        maximum=np.maximum(a.maximum, b.maximum),
        sample=np.concatenate([a.sample, b.sample]),
        sample_weight=np.concatenate([a.sample_weight, b.sample_weight]),
    )


def _merge_all_family(*parts):
    return reduce(_merge_family_scans, parts)


def _sum_statistics(*parts):
    return reduce(add_statistics, parts)


def _family_rows(x, w, family, summary, drop_empty) -> tuple[np.ndarray, np.ndarray, Any]:
    """A chunk's rows (without those that have no observed entry, when missing values
    are allowed), weights and the family's :meth:`prepare` of them given the summary of
    all rows."""
    x, w = _block(x, w)
    if drop_empty:
        keep = ~np.isnan(x).all(axis=1)
        if not keep.all():
            x, w = x[keep], w[keep]
    return x, w, family.prepare(x, summary)


def _rows_call(x, w, extra, func, family, summary, drop_empty, *args):
    """:meth:`FamilyChunks.map_rows`' per-chunk call."""
    return func(family, *_family_rows(x, w, family, summary, drop_empty), *extra, *args)


def _family_estep_block(x, w, family, summary, drop_empty, log_weights, params):
    return block_estep(
        family, *_family_rows(x, w, family, summary, drop_empty), log_weights, params
    )


def _family_assigned_block(x, w, labels, family, summary, drop_empty, centres, params):
    rows = _family_rows(x, w, family, summary, drop_empty)
    return block_assigned(family, *rows, labels, centres, params)


def _family_final_block(x, w, family, summary, drop_empty, log_weights, params):
    return block_final(
        family, *_family_rows(x, w, family, summary, drop_empty), log_weights, params
    )


class FamilyChunks:
    """The chunks of a Dask array as the source of
    :func:`~bayesmix.inference.em.family.run_family_em`: every pass maps the in-memory
    block functions of :mod:`bayesmix.inference.em.family` over the chunks and tree-sums
    their results (:class:`DaskSource`); on data persisted on a ``dask.distributed``
    cluster the E-step is one actor call per worker, each actor keeping its chunks
    prepared for the family."""

    def __init__(self, source: DaskSource, family: ComponentFamily, allow_missing: bool) -> None:
        self.source, self.family, self.drop_empty = source, family, allow_missing

    def scan(self, rng: np.random.Generator, sample_rows: int) -> _FamilyScan:
        """The scan; sets the summary, the total weight and the sample (:meth:`bind`
        then sets the family the data fix and ``prepared``)."""
        source, data = self.source, self.source.data
        keep = min(1.0, sample_rows / max(data.n_obs, 1))
        # Whole data as the "sample" when it is small: no random numbers are drawn, so the
        # starts' k-means sees exactly what the in-memory fit sees with the same seed.
        seeds = (
            [None] * source.n_chunks if keep >= 1.0 else rng.integers(2**63, size=source.n_chunks)
        )
        offsets = np.concatenate([[0], np.cumsum(data.row_chunks)[:-1]])
        scan = source.map_reduce(
            _family_scan_block,
            _merge_all_family,
            self.family,
            data.feature_names,
            self.drop_empty,
            per_chunk=[(int(offsets[i]), keep, seeds[i]) for i in range(source.n_chunks)],
        )
        self.summary = DataSummary(
            scan.count,
            scan.mean,
            np.divide(scan.m2, scan.count, out=np.zeros_like(scan.m2), where=scan.count > 0),
            scan.values,
            scan.maximum,
        )
        self.total_weight = scan.total_weight
        self.sample, self.sample_weight = scan.sample, scan.sample_weight
        self.sample_is_data = keep >= 1.0
        self._bounds = np.concatenate([[0], np.cumsum(scan.rows)])
        return scan

    def bind(self, family: ComponentFamily) -> None:
        """Fit ``family`` (the scanned one with the settings the data fix,
        :meth:`~bayesmix.families.base.ComponentFamily.for_summary`): the chunks are
        prepared for it."""
        self.family = family
        n_features = self.source.data.n_features
        self.prepared = family.prepare(np.empty((0, n_features)), self.summary)

    def _shared(self) -> tuple:
        return self.family, self.summary, self.drop_empty

    def estep(self, log_weights: np.ndarray, params: Parameters):
        source = self.source
        if source._client is None:
            return source.map_reduce(
                _family_estep_block, _sum_statistics, *self._shared(), log_weights, params
            )
        return source.on_workers(
            "family_estep", _sum_statistics, *self._shared(), log_weights, params
        )

    def assigned(self, labels: np.ndarray | None, centres: np.ndarray | None, params):
        bounds = self._bounds
        per_chunk = [
            (None if labels is None else labels[bounds[i] : bounds[i + 1]],)
            for i in range(self.source.n_chunks)
        ]
        return self.source.map_reduce(
            _family_assigned_block,
            _sum_statistics,
            *self._shared(),
            centres,
            params,
            per_chunk=per_chunk,
        )

    def final(self, log_weights: np.ndarray, params: Parameters) -> tuple[float, float]:
        return self.source.map_reduce(
            _family_final_block, _sum_statistics, *self._shared(), log_weights, params
        )

    def map_rows(
        self, func: Callable, combine: Callable, *args: Any, per_chunk=None, chunks=None
    ) -> Any:
        """``combine`` over chunks (in chunk order) of ``func(family, x, w, prepared,
        *per_chunk[i], *args)``, each chunk's rows as the family's passes see them (rows
        without an observed entry left out under ``missing="marginalize"``, the
        family's :meth:`prepare` given the summary of all rows): another fit's passes
        (closed-form VB's) by the E-step's route, :meth:`DaskSource.map_chunks`, and its
        recovery from a lost worker. ``per_chunk`` (a tuple per chunk, e.g. a start's
        labels cut by :meth:`chunk_rows`): by the task graph
        (:meth:`DaskSource.map_reduce`). ``chunks``: the indices of the chunks to map
        over (default: all)."""
        shared = (func, *self._shared())
        if per_chunk is not None:
            return self.source.map_reduce(
                _rows_call, combine, *shared, *args, per_chunk=[(p,) for p in per_chunk]
            )
        return self.source.map_chunks(_rows_call, combine, (), *shared, *args, chunks=chunks)

    def chunk_rows(self, values: np.ndarray) -> list[np.ndarray]:
        """``values`` of the rows the passes see (the scan's, in order) cut by chunk."""
        bounds = self._bounds
        return [values[bounds[i] : bounds[i + 1]] for i in range(self.source.n_chunks)]


def _check_family_scan(scan: _FamilyScan, model: Mixture, data: DaskData) -> None:
    names, family = data.feature_names, model.family
    if scan.n_nan:
        row, col = scan.first_nan
        hint = (
            ", or fit with missing='marginalize' to use the observed features of incomplete rows"
            if family.supports_missing
            else ""
        )
        raise ValueError(
            f"X contains {scan.n_nan + scan.n_inf} NaN or infinite value(s), the first in row "
            f"{row}, column {names[col]!r}; drop or impute them before fitting{hint}."
        )
    if scan.n_inf:
        row, col = scan.first_inf
        raise ValueError(
            f"X contains {scan.n_inf} infinite value(s), the first in row {row}, column "
            f"{names[col]!r}; only NaN marks a missing value: replace infinite values by "
            "NaN or drop them."
        )
    if scan.n_bad_weights:
        raise ValueError("sample_weight contains NaN or infinite values; pass finite weights.")
    if scan.support_error:
        raise ValueError(scan.support_error)
    if scan.max_abs > MAX_ABS_VALUE:
        raise ValueError(
            f"X has values larger than {MAX_ABS_VALUE:g} in magnitude, whose squares "
            "overflow float64; rescale the data (e.g. standardise the columns)."
        )
    if scan.n_negative_weights:
        raise ValueError("sample_weight contains negative values; weights must be >= 0.")
    empty = scan.count == 0
    if empty.any():
        column = names[int(np.argmax(empty))]
        raise ValueError(f"X's column {column!r} has no observed value; drop the column.")
    if scan.n_empty:
        warnings.warn(
            f"{scan.n_empty} row(s) of X have no observed entry and are left out of the fit.",
            MissingDataWarning,
            stacklevel=4,
        )
    n_rows = sum(scan.rows)
    if n_rows < model.n_components:
        raise ValueError(
            f"X has {n_rows} rows; a mixture of {model.n_components} components needs at "
            f"least {model.n_components}."
        )
    if scan.total_weight <= 0:
        raise ValueError("sample_weight sums to zero; at least one weight must be positive.")
    if scan.n_positive < model.n_components:
        raise ValueError(
            f"X has {scan.n_positive} rows with positive weight but "
            f"n_components={model.n_components}; use fewer components or more data."
        )


def fit_family_em_dask(
    model: Mixture,
    X: Any,
    *,
    use_priors: bool,
    missing: str = "error",
    sample_weight: Any = None,
    n_init: int = 1,
    max_iter: int = 1000,
    tol: float = 1e-8,
    random_state: Any = None,
    order_by: Any = None,
) -> EMResult:
    """Fit a mixture of any component family by EM (or MAP-EM) to Dask input without
    materialising it.

    The options are those of :meth:`bayesmix.Mixture.fit` for ``method="em"``, and the
    loop is the in-memory one (:func:`~bayesmix.inference.em.family.run_family_em`) with passes
    that map the same block functions over the chunks and tree-sum them: one scan (data
    checks, the family's :class:`~bayesmix.families.base.DataSummary`, the weighted
    moments behind the default priors, the starts' sample), per start one pass for its
    hard assignment, one pass per iteration and a final one. With the same data, seed
    and options the result equals the in-memory fit's to rounding when the data have at
    most ``INIT_SAMPLE_ROWS`` rows (k-means then runs on all of them); on more rows
    k-means runs on a seeded random sample of about ``INIT_SAMPLE_ROWS`` rows and every
    row joins its nearest centre. ``missing="marginalize"`` (count families) leaves
    rows without an observed entry out, with a ``MissingDataWarning``.

    Defaults are the in-memory ones except the number of starts: one (``n_init=1``; each
    start costs passes over all the data), as for Gaussian mixtures on Dask.

    Returns
    -------
    EMResult
        ``settings`` also records ``backend="dask"``, ``n_chunks`` and ``estep``.
    """
    started = time.perf_counter()
    # a Dask DataFrame's typed columns coded as in memory (Mixture.coding)
    data = as_dask_data(X, min_obs=model.n_components, categories=model.coding)
    options = FamilyEMOptions.checked(
        use_priors, n_init, max_iter, tol, random_state, order_by, data.feature_names, started
    )
    model, chunks, default_priors = family_chunks(model, data, sample_weight, missing, options.rng)
    source = chunks.source
    try:
        result = run_family_em(
            model,
            chunks,
            default_priors,
            options,
            backend="dask",
            n_chunks=source.n_chunks,
            estep=source.estep_path,
        )
    finally:
        source.close()
    result.settings["worker_losses"] = source.worker_losses
    return result


def family_chunks(
    model: Mixture, data: DaskData, sample_weight: Any, missing: str, rng: np.random.Generator
) -> tuple[Mixture, FamilyChunks, dict[str, np.ndarray]]:
    """The start of every family fit on Dask input (EM, MAP-EM, closed-form VB): the
    scan of the chunks (``rng`` draws the starts' sample when ``data`` has more than
    ``INIT_SAMPLE_ROWS`` rows) and its checks, the declaration with the settings the
    data fix, the chunks bound to its family, and the declaration's resolved default
    priors from the data's weighted moments. Returns ``(model, chunks,
    default_priors)``; close ``chunks.source`` when done. ``ValueError`` (named) for
    data the scan finds wrong."""
    weights = _dask_weights(sample_weight, data)
    source = DaskSource(data, weights)
    try:
        chunks = FamilyChunks(source, model.family, missing == "marginalize")
        scan = chunks.scan(rng, INIT_SAMPLE_ROWS)
        _check_family_scan(scan, model, data)
        # the settings the data fix (Categorical's numbers of categories, an Independent's
        # blocks by position) and a Dask DataFrame's labels, as Mixture.fit in memory
        model = model.fixed_by_summary(chunks.summary, data)
        chunks.bind(model.family)
        # Two rows at mean -+ sd with equal weights have the data's weighted mean and
        # variance per column (to rounding), all the families' default priors read.
        sd = np.sqrt(scan.weighted_m2 / np.where(scan.weight > 0, scan.weight, 1.0))
        two_rows = np.stack([scan.weighted_mean - sd, scan.weighted_mean + sd])
        default_priors = model.resolve_priors(
            Data(two_rows, data.feature_names, np.arange(2)), np.ones(2)
        )
    except BaseException:
        source.close()
        raise
    return model, chunks, default_priors


# -- exact quantiles of per-row values over chunks -----------------------------------------

# Values a collection pass may return per target rank (the bracket is narrowed until then).
QUANTILE_COLLECT = 4096
# Counters per selection pass and chunk (targets x bins).
_QUANTILE_COUNTERS = 2**20


def blockwise_quantiles(
    array: Any, columns: Callable[[np.ndarray], Any], n_columns: int, level: float
) -> np.ndarray:
    """Exact ``np.quantile(values, level, axis=0)`` of ``values = columns(rows)`` over all
    rows of a chunked Dask array, without holding the values.

    ``columns(x)`` maps a chunk's rows to their values, yielding ``(column_slice,
    block)`` pairs (``block`` of shape ``(n_rows, n_slice)``) so that it may compute the
    columns in memory-bounded groups. Each quantile is numpy's ``"linear"`` one: the
    order statistics of rank ``k = floor((n - 1) * level)`` and ``k + 1``, interpolated.
    They are found by bracketing: a pass for each column's smallest and largest finite
    value, then passes that count the values in equal bins of every rank's bracket and
    keep the bin holding the rank (a ``bins``-fold narrowing per pass), until each
    bracket holds at most :data:`QUANTILE_COLLECT` values (or one float); a last pass
    collects them. Typically 4 passes (2 counting passes for ``1e8`` rows at 1024 bins);
    every pass is one :func:`dask.compute` under the active scheduler and re-evaluates
    ``columns``. The result is exact, equal to ``np.quantile`` of all values.

    Returns
    -------
    numpy.ndarray of shape (n_columns,)
    """
    dask, _ = import_dask()
    n_obs = int(array.shape[0])
    chunks = list(array.to_delayed(optimize_graph=True).ravel())
    if n_obs == 0:
        raise ValueError("no values: the quantile of an empty array is undefined.")

    def run(func, *args):
        task = dask.delayed(func, pure=False)
        return dask.compute(*[task(chunk, columns, *args) for chunk in chunks])

    position = (n_obs - 1) * level
    rank = int(np.floor(position))
    gamma = position - rank
    ranks = np.array([rank, min(rank + 1, n_obs - 1)])
    # targets: (column, rank) pairs, column-major
    target_column = np.repeat(np.arange(n_columns), 2)
    target_rank = np.tile(ranks, n_columns)
    extremes = run(_column_extremes, n_columns)
    low = np.min([e[0] for e in extremes], axis=0)
    high = np.max([e[1] for e in extremes], axis=0)
    n_finite = np.sum([e[2] for e in extremes], axis=0)
    lo = low[target_column]
    hi = np.nextafter(high[target_column], np.inf)  # brackets are [lo, hi)
    below = np.zeros(target_rank.shape[0], dtype=np.int64)
    inside = n_finite[target_column].astype(np.int64)
    bins = int(max(16, min(1024, _QUANTILE_COUNTERS // max(target_rank.shape[0], 1))))
    values = np.full(target_rank.shape[0], np.inf)  # ranks beyond the finite values: +inf
    active = target_rank < below + inside
    while True:
        narrow = active & (inside > QUANTILE_COLLECT) & (np.nextafter(lo, np.inf) < hi)
        if not narrow.any():
            break
        edges = np.linspace(lo, hi, bins + 1, axis=1)  # (T, bins + 1)
        edges[:, -1] = hi
        counts = np.sum(run(_bracket_counts, target_column, edges, narrow), axis=0)
        cumulative = below[:, None] + np.cumsum(counts[:, 1:-1], axis=1)  # (T, bins)
        idx = np.flatnonzero(narrow)
        chosen = np.argmax(cumulative[idx] > target_rank[idx, None], axis=1)
        below[idx] = cumulative[idx, chosen] - counts[idx, chosen + 1]
        inside[idx] = counts[idx, chosen + 1]
        lo[idx], hi[idx] = edges[idx, chosen], edges[idx, chosen + 1]
    single = active & (inside > QUANTILE_COLLECT)  # one float left in the bracket
    values[single] = lo[single]
    collect = active & ~single
    if collect.any():
        parts = run(_bracket_values, target_column, lo, hi, collect)
        for t in np.flatnonzero(collect):
            inner = np.sort(np.concatenate([part[t] for part in parts]))
            values[t] = inner[target_rank[t] - below[t]]
    pairs = values.reshape(n_columns, 2)
    return np.array([np.quantile(pair, gamma) for pair in pairs])


def _column_extremes(chunk, columns, n_columns):
    low, high = np.full(n_columns, np.inf), np.full(n_columns, -np.inf)
    n_finite = np.zeros(n_columns, dtype=np.int64)
    for cols, block in columns(np.asarray(chunk)):
        finite = np.isfinite(block)
        low[cols] = np.where(finite, block, np.inf).min(axis=0, initial=np.inf)
        high[cols] = np.where(finite, block, -np.inf).max(axis=0, initial=-np.inf)
        n_finite[cols] = finite.sum(axis=0)
    return low, high, n_finite


def _bracket_counts(chunk, columns, target_column, edges, narrow):
    """Per target: values below its bracket, in each bin, and at or above its top."""
    counts = np.zeros((edges.shape[0], edges.shape[1] + 1), dtype=np.int64)
    for cols, block in columns(np.asarray(chunk)):
        first = cols.start
        for t in np.flatnonzero(narrow & (target_column >= first) & (target_column < cols.stop)):
            where = np.searchsorted(edges[t], block[:, target_column[t] - first], side="right")
            counts[t] = np.bincount(where, minlength=counts.shape[1])
    return counts


def _bracket_values(chunk, columns, target_column, lo, hi, collect):
    """Per target: the values inside its bracket ``[lo, hi)`` (empty if not collected)."""
    out = [np.empty(0)] * target_column.shape[0]
    for cols, block in columns(np.asarray(chunk)):
        first = cols.start
        for t in np.flatnonzero(collect & (target_column >= first) & (target_column < cols.stop)):
            column = block[:, target_column[t] - first]
            out[t] = column[(column >= lo[t]) & (column < hi[t])]
    return out
