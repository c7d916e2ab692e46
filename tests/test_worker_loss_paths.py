"""The worker-loss paths ``test_worker_loss.py`` does not reach (issue 22, part 1):

* a chunk whose computation kills its worker every time: distributed gives up on the
  task (``KilledWorker`` after ``allowed-failures`` deaths) and the fit raises a one-line
  :class:`~bayesmix.exceptions.WorkerLostError` saying so within seconds — EM and VB on
  the task-graph route;
* a pass of the worker actors that loses a worker at every attempt: after
  ``WORKER_LOSS_RETRIES + 1`` failures in a row, a one-line ``WorkerLostError`` instead
  of retrying for ever — EM and VB on the worker-actor route.

Real 2-worker ``LocalCluster`` with processes (the Nanny restarts a killed worker); the
workers are killed with SIGKILL, nothing of Dask is mocked. ``allowed-failures`` is 1
and ``WORKER_LOSS_RETRIES`` 1 here, so each test kills two workers.
"""

from __future__ import annotations

import os
import signal
import time
import warnings

import numpy as np
import pytest
from test_worker_loss import _gaussian, _persisted, module_cluster

import bayesmix as bm
from bayesmix.exceptions import ConvergenceWarning, WorkerLostError
from bayesmix.inference.em import distributed

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")
distributed_lib = pytest.importorskip("distributed")

X = _gaussian(8_000, seed=4)
CHUNK_ROWS = 2_000
# seconds a test may take from the start of the fit to the error (two workers killed
# and restarted by their Nannies on a loaded machine)
ERROR_BOUND = 30.0


@pytest.fixture(scope="module")
def clusters():
    # the E-step kernels compiled (and cached on disk) before the workers load them
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        bm.GaussianMixture(2, "full").fit(X[:600], max_iter=1, random_state=0)
        bm.GaussianMixture(2, "full").fit(X[:600], method="vb", max_iter=1, draws=5)
    # KilledWorker at a task's second death
    with module_cluster({"distributed.scheduler.allowed-failures": 1}) as holder:
        yield holder


@pytest.fixture
def cluster(clusters):
    client = clusters.both_workers()
    with client.as_current(), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)  # distributed's large-graph notes
        yield client


def _fit(dX, method):
    model = bm.GaussianMixture(3, "full")
    if method == "vb":
        return model.fit(dX, method="vb", max_iter=20, draws=5, random_state=0)
    return model.fit(dX, max_iter=20, tol=0, random_state=0)


def _chunk_killer():
    """A chunk of X whose computation kills (SIGKILL) the worker computing it. Built in a
    closure so that cloudpickle sends the function by value (the workers cannot import
    this test module)."""

    def poisoned_chunk(n_rows, n_features):
        import os
        import signal

        os.kill(os.getpid(), signal.SIGKILL)
        return np.zeros((n_rows, n_features))  # never reached

    return poisoned_chunk


def _assert_one_line(error, *phrases):
    message = str(error)
    assert "\n" not in message, message
    for phrase in phrases:
        assert phrase in message, message


@pytest.mark.parametrize("method", ["em", "vb"])
def test_a_chunk_that_kills_every_worker_raises_within_seconds(cluster, method):
    """distributed's KilledWorker (the task ran on each worker that died) becomes a
    one-line WorkerLostError naming the cause, within ERROR_BOUND seconds; the cluster
    is left with its workers (the Nannies restart them)."""
    poisoned = da.from_delayed(
        dask.delayed(_chunk_killer(), pure=False)(CHUNK_ROWS, 4),
        shape=(CHUNK_ROWS, 4),
        dtype=float,
    )
    dX = da.concatenate([da.from_array(X, chunks=(CHUNK_ROWS, 4)), poisoned])
    pids_before = set(cluster.run(os.getpid).values())
    began = time.perf_counter()
    with pytest.raises(WorkerLostError) as caught:
        _fit(dX, method)
    elapsed = time.perf_counter() - began
    _assert_one_line(caught.value, "was running on each of the 2 Dask workers that died")
    assert "exhausts a worker's memory" in str(caught.value)
    assert elapsed < ERROR_BOUND, elapsed
    cluster.wait_for_workers(2, timeout=30)  # killed workers restarted: really killed
    assert set(cluster.run(os.getpid).values()) != pids_before


@pytest.mark.parametrize("method", ["em", "vb"])
def test_a_pass_losing_a_worker_every_time_gives_up(cluster, monkeypatch, method):
    """The worker actors' pass redone after each loss; a worker killed at every attempt
    ends the fit after WORKER_LOSS_RETRIES + 1 failures with a one-line WorkerLostError
    (never a retry loop), within ERROR_BOUND seconds."""
    monkeypatch.setattr(distributed, "WORKER_LOSS_RETRIES", 1)
    dX = _persisted(cluster, da.from_array(X, chunks=(CHUNK_ROWS, 4)))
    original = distributed._WorkerChunks.call
    kills = []

    def call_after_killing(self, *args, **kwargs):
        """Kill (SIGKILL) the worker of this pass's first actor, then make the call."""
        victim = cluster.run(os.getpid)[self.addresses[0]]
        os.kill(victim, signal.SIGKILL)
        kills.append(victim)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(distributed._WorkerChunks, "call", call_after_killing)
    began = time.perf_counter()
    with pytest.raises(WorkerLostError) as caught:
        _fit(dX, method)
    elapsed = time.perf_counter() - began
    _assert_one_line(caught.value, "lost a worker 2 times in a row during one pass")
    assert len(kills) == 2 and len(set(kills)) == 2, kills
    assert elapsed < ERROR_BOUND, elapsed
