"""A Dask worker killed (SIGKILL) while EM iterates over persisted data does not lose the
fit: on a real 2-worker LocalCluster with processes (the Nanny restarts the killed
worker), the fit ends with the fault-free fit's log-likelihood on both E-step routes
(worker actors and task graph), for Gaussian and other families; data that cannot be
recomputed give a one-line WorkerLostError within seconds."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import warnings

import numpy as np
import pytest

import bayesmix as bm
from bayesmix.exceptions import ConvergenceWarning, WorkerLostError
from bayesmix.families import Poisson
from bayesmix.inference.em import distributed

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed_lib = pytest.importorskip("distributed")

N_OBS, CHUNK_ROWS = 200_000, 25_000
MAX_ITER = 40
# seconds from the kill to the error when the data are gone
ERROR_BOUND = 15.0


class _Cluster:
    """One 2-worker LocalCluster with processes at a time; started again if a killed
    worker does not come back."""

    def __init__(self):
        self.cluster = self.client = None

    def start(self):
        self.close()
        self.cluster = distributed_lib.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        )
        self.client = distributed_lib.Client(self.cluster, set_as_default=False)

    def both_workers(self):
        try:
            self.client.wait_for_workers(2, timeout=20)
        except TimeoutError:  # WorkerStartTimeoutError
            self.start()
            self.client.wait_for_workers(2, timeout=60)
        return self.client

    def close(self):
        if self.client is not None:
            self.client.close()
            self.cluster.close()


@pytest.fixture(scope="module")
def clusters():
    # compile (and cache on disk) the E-step kernels here, so the workers (the restarted
    # ones too) load them from the cache
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        bm.GaussianMixture(2, "full").fit(_gaussian(600), max_iter=1, random_state=0)
    with module_cluster() as holder:
        yield holder


@contextlib.contextmanager
def module_cluster(config: dict | None = None):
    """A test module's :class:`_Cluster`, started, with the dask settings ``config`` while
    it runs; closed at the end."""
    holder = _Cluster()
    # A LocalCluster closes a worker's Nanny when no worker of its name is registered 15 s
    # (lost-worker-timeout) after one was lost: here, when the restarted worker was killed
    # again by the next test.
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "1h", **(config or {})}):
        holder.start()
        try:
            yield holder
        finally:
            holder.close()


@pytest.fixture
def cluster(clusters):
    """A client of the module's cluster with both workers up (a killed one is restarted
    by its Nanny)."""
    client = clusters.both_workers()
    with client.as_current(), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)  # tol=0: max_iter iterations
        warnings.simplefilter("ignore", UserWarning)  # distributed's large-graph notes
        yield client


def _gaussian(n_obs, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.choice(3, size=n_obs, p=[0.5, 0.3, 0.2])
    centres = np.array([[0.0, 0.0, 0.0, 0.0], [4.0, 0.0, 3.0, 1.0], [0.0, 5.0, -3.0, 2.0]])
    return centres[z] + rng.standard_normal((n_obs, 4))


X = _gaussian(N_OBS)
START = {"means": X[:3]}


def _fit_gaussian(dX):
    model = bm.GaussianMixture(3, "full")
    return model.fit(dX, init=START, max_iter=MAX_ITER, tol=0, random_state=0)


def _persisted(client, array):
    dX = client.persist(array)
    distributed_lib.wait(client.futures_of(dX))
    return dX


class _KillAt:
    """Kill (SIGKILL) one worker process at the E-step call ``at`` of the next fit:
    before the call (``during=False``) or from a thread while it runs."""

    def __init__(self, client, monkeypatch, owner, at=5, during=False):
        self.client, self.at, self.during = client, at, during
        self.calls, self.killed_at = 0, None
        pids = client.run(os.getpid)
        self.victim = pids[sorted(pids)[0]]
        original = owner.estep

        def estep(this, *args, **kwargs):
            self.calls += 1
            if self.calls == self.at:
                if self.during:
                    threading.Thread(target=self.kill, args=(0.005,)).start()
                else:
                    self.kill()
            return original(this, *args, **kwargs)

        monkeypatch.setattr(owner, "estep", estep)

    def kill(self, delay=0.0):
        time.sleep(delay)
        self.killed_at = time.perf_counter()
        os.kill(self.victim, signal.SIGKILL)


@pytest.fixture(scope="module")
def fault_free(clusters):
    """The fault-free fit of the persisted Gaussian data (worker actors)."""
    client = clusters.both_workers()
    with client.as_current(), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        dX = _persisted(client, da.from_array(X, chunks=(CHUNK_ROWS, 4)))
        fit = _fit_gaussian(dX)
        del dX
    assert fit.settings["estep"] == "worker-actors" and fit.settings["worker_losses"] == 0
    return fit


def _assert_same_fit(got, want):
    assert got.n_iter == want.n_iter
    assert got.log_likelihood == pytest.approx(want.log_likelihood, rel=1e-9, abs=0)
    np.testing.assert_allclose(got.log_likelihood_trace, want.log_likelihood_trace, rtol=1e-12)
    np.testing.assert_allclose(got.means, want.means, rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(got.covariances, want.covariances, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("during", [False, True], ids=["between-calls", "during-call"])
def test_worker_actors_survive_a_killed_worker(cluster, monkeypatch, fault_free, during):
    dX = _persisted(cluster, da.from_array(X, chunks=(CHUNK_ROWS, 4)))
    kill = _KillAt(cluster, monkeypatch, distributed.DaskSource, during=during)
    got = _fit_gaussian(dX)
    assert kill.killed_at is not None and kill.victim not in cluster.run(os.getpid).values()
    assert got.settings["estep"] == "worker-actors"
    assert got.settings["worker_losses"] >= 1  # the pass was redone
    _assert_same_fit(got, fault_free)


def test_task_graph_survives_a_killed_worker(cluster, monkeypatch, fault_free):
    monkeypatch.setattr(distributed, "WORKER_ACTORS", False)
    dX = _persisted(cluster, da.from_array(X, chunks=(CHUNK_ROWS, 4)))
    kill = _KillAt(cluster, monkeypatch, distributed.DaskSource)
    got = _fit_gaussian(dX)
    assert kill.killed_at is not None and kill.victim not in cluster.run(os.getpid).values()
    assert got.settings["estep"] == "task-graph"
    _assert_same_fit(got, fault_free)


@pytest.mark.parametrize("actors", [True, False], ids=["worker-actors", "task-graph"])
def test_family_em_survives_a_killed_worker(cluster, monkeypatch, actors):
    monkeypatch.setattr(distributed, "WORKER_ACTORS", actors)
    rng = np.random.default_rng(1)
    z = rng.choice(2, size=60_000)
    counts = rng.poisson(np.array([[1.0, 6.0], [8.0, 2.0]])[z]).astype(float)
    dX = _persisted(cluster, da.from_array(counts, chunks=(7_500, 2)))
    model = bm.Mixture(2, Poisson())
    want = model.fit(dX, max_iter=MAX_ITER, tol=0, random_state=3)
    kill = _KillAt(cluster, monkeypatch, distributed.FamilyChunks)
    got = model.fit(dX, max_iter=MAX_ITER, tol=0, random_state=3)
    assert kill.killed_at is not None and kill.victim not in cluster.run(os.getpid).values()
    assert got.settings["estep"] == want.settings["estep"]
    assert got.settings["estep"] == ("worker-actors" if actors else "task-graph")
    assert got.n_iter == want.n_iter
    assert got.log_likelihood == pytest.approx(want.log_likelihood, rel=1e-9, abs=0)


def _scattered(client):
    """X built from chunks scattered to the workers: data Dask cannot recompute."""
    parts = [X[i : i + CHUNK_ROWS] for i in range(0, N_OBS, CHUNK_ROWS)]
    futures = client.scatter(parts, hash=False)
    chunks = [
        da.from_delayed(f, shape=p.shape, dtype=float) for f, p in zip(futures, parts, strict=True)
    ]
    return _persisted(client, da.concatenate(chunks)), futures


@pytest.mark.parametrize("actors", [True, False], ids=["worker-actors", "task-graph"])
def test_lost_data_raise_one_line_error_within_seconds(cluster, monkeypatch, actors):
    monkeypatch.setattr(distributed, "WORKER_ACTORS", actors)
    dX, futures = _scattered(cluster)
    kill = _KillAt(cluster, monkeypatch, distributed.DaskSource)
    with pytest.raises(WorkerLostError) as error:
        _fit_gaussian(dX)
    elapsed = time.perf_counter() - kill.killed_at
    message = str(error.value)
    assert "\n" not in message and "died during the fit" in message
    assert "cannot be recomputed" in message and "from a source Dask can recompute" in message
    assert elapsed < ERROR_BOUND


def test_a_cluster_without_workers_raises_within_the_timeout(clusters, monkeypatch):
    """Never a hang: no worker to compute on for WORKER_LOSS_TIMEOUT seconds is an error."""
    monkeypatch.setattr(distributed, "WORKER_LOSS_TIMEOUT", 2.0)
    client = clusters.both_workers()
    dX = da.from_array(X, chunks=(CHUNK_ROWS, 4))
    clusters.cluster.scale(0)
    for _ in range(100):
        if not client.nthreads():
            break
        time.sleep(0.1)
    began = time.perf_counter()
    try:
        with client.as_current(), pytest.raises(WorkerLostError) as error:
            _fit_gaussian(dX)
        elapsed = time.perf_counter() - began
    finally:
        clusters.start()  # a cluster with workers for what comes next
    assert "\n" not in str(error.value) and "WORKER_LOSS_TIMEOUT=2 s" in str(error.value)
    assert elapsed < 10
