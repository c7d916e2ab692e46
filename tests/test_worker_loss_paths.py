"""The worker-loss paths ``test_worker_loss.py`` does not reach (issue 22, part 1):

* a chunk whose computation kills its worker every time: distributed gives up on the
  task (``KilledWorker`` after ``allowed-failures`` deaths) and the fit raises a one-line
  :class:`~bayesmix.exceptions.WorkerLostError` saying so within seconds — EM and VB on
  the task-graph route;
* a pass of the worker actors that loses a worker at every attempt: after
  ``WORKER_LOSS_RETRIES + 1`` failures in a row, a one-line ``WorkerLostError`` instead
  of retrying for ever — EM and VB on the worker-actor route;
* a task-graph pass the cluster cancels (``Client.cancel``): submitted again (the fit
  ends at the fault-free one), or, cancelled at every attempt, a one-line
  ``WorkerLostError`` after ``WORKER_LOSS_RETRIES + 1`` attempts — EM and VB;
* the worker actors' recovery timeout: a killed worker's chunks not back within
  ``WORKER_LOSS_TIMEOUT`` seconds (their recomputation hangs) give a one-line
  ``WorkerLostError`` naming the setting; the setting validated before any pass;
* the time a killed worker costs: the E-step it hits returns within seconds with the
  fault-free result, on both routes;
* Ctrl-C (a real SIGINT to a subprocess) during EM (both routes) and closed-form VB on a
  cluster: the iterations made are kept and no actor is left on the workers.

Real 2-worker ``LocalCluster`` with processes (the Nanny restarts a killed worker); the
workers are killed with SIGKILL, nothing of Dask is mocked (bayesmix's own functions are
wrapped to place the faults). ``allowed-failures`` is 1 here, and the tests that need
every attempt to fail lower ``WORKER_LOSS_RETRIES``.
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


# -- the task graph's cancelled passes ----------------------------------------------------


class _CancelPasses:
    """Have the scheduler cancel (``Client.cancel``, a real cancellation of the pass's
    future) the attempts ``cancel`` (numbered from 1 over the fit's passes on the
    cluster) before the fit waits for them."""

    def __init__(self, monkeypatch, cancel):
        self.cancel, self.attempts, self.cancelled = cancel, 0, []
        original = distributed._await_future

        def await_future(client, future):
            self.attempts += 1
            if self.cancel(self.attempts):
                client.cancel(future)
                self.cancelled.append(self.attempts)
            return original(client, future)

        monkeypatch.setattr(distributed, "_await_future", await_future)


def test_a_pass_cancelled_once_is_submitted_again(cluster, monkeypatch):
    """The task graph's pass cancelled by the cluster (not a loss of data) is submitted
    again: the fit ends at the fault-free fit, to 1e-9 relative (the same sums)."""
    monkeypatch.setattr(distributed, "WORKER_ACTORS", False)
    dX = _persisted(cluster, da.from_array(X, chunks=(CHUNK_ROWS, 4)))
    want = _fit(dX, "em")
    cancels = _CancelPasses(monkeypatch, lambda attempt: attempt in (6, 9))
    got = _fit(dX, "em")
    assert cancels.cancelled == [6, 9], cancels.cancelled
    assert got.settings["estep"] == want.settings["estep"] == "task-graph"
    assert got.n_iter == want.n_iter == 20
    assert got.log_likelihood == pytest.approx(want.log_likelihood, rel=1e-9, abs=0)
    np.testing.assert_array_equal(got.log_likelihood_trace, want.log_likelihood_trace)


@pytest.mark.parametrize("method", ["em", "vb"])
def test_a_pass_cancelled_every_time_gives_up(cluster, monkeypatch, method):
    """A pass the cluster cancels at every attempt ends the fit after
    WORKER_LOSS_RETRIES + 1 attempts with a one-line WorkerLostError, within seconds."""
    monkeypatch.setattr(distributed, "WORKER_ACTORS", False)
    monkeypatch.setattr(distributed, "WORKER_LOSS_RETRIES", 2)
    dX = _persisted(cluster, da.from_array(X, chunks=(CHUNK_ROWS, 4)))
    cancels = _CancelPasses(monkeypatch, lambda attempt: attempt >= 5)
    began = time.perf_counter()
    with pytest.raises(WorkerLostError) as caught:
        _fit(dX, method)
    elapsed = time.perf_counter() - began
    _assert_one_line(caught.value, "cancelled a pass of the fit over X 3 times in a row")
    assert cancels.cancelled == [5, 6, 7], cancels.cancelled  # then no more attempts
    assert elapsed < ERROR_BOUND, elapsed
    cluster.wait_for_workers(2, timeout=30)  # the cluster is unharmed
    assert dX.sum().compute() == pytest.approx(X.sum())


# -- the worker actors' recovery timeout ----------------------------------------------------


def _slow_to_recompute(chunks, release):
    """A chunk of X read from a source that is slow the second time: its first
    computation records itself in ``chunks`` (a directory), a recomputation waits until
    the file ``release`` exists (at most 120 s). Built in a closure (cloudpickle sends it
    by value)."""

    def chunk(index, n_rows):
        import time
        from pathlib import Path

        done = Path(chunks) / f"chunk-{index}"
        if done.exists():
            deadline = time.monotonic() + 120.0
            while not Path(release).exists() and time.monotonic() < deadline:
                time.sleep(0.05)
        done.touch()
        rng = np.random.default_rng(index)
        return rng.standard_normal((n_rows, 4)) + 4.0 * (rng.random((n_rows, 1)) < 0.5)

    return chunk


def _kill_a_holder(client, dX, also=()) -> int:
    """SIGKILL the worker holding the first chunk of the persisted ``dX``, after
    dropping the extra copies of its chunks (and of the futures ``also``) that passes
    or actors made on other workers (``Client.replicate(n=1)``), so that the chunk is
    lost with it. The killed process id."""
    futures = [*client.futures_of(dX), *also]
    client.replicate(futures, n=1)
    holders = client.who_has(futures)
    first = distributed._chunk_futures(client, dX)[0].key
    victim = client.run(os.getpid)[next(iter(holders[first]))]
    os.kill(victim, signal.SIGKILL)
    return victim


def test_worker_actors_give_up_after_the_loss_timeout(cluster, monkeypatch, tmp_path):
    """A worker holding chunks of X is killed (SIGKILL) mid-fit and distributed cannot
    get them back (their recomputation hangs): the actor route waits
    WORKER_LOSS_TIMEOUT seconds (2 here), then raises a one-line WorkerLostError naming
    the setting; never a hang."""
    monkeypatch.setattr(distributed, "WORKER_LOSS_TIMEOUT", 2.0)
    release = tmp_path / "release"
    source = dask.delayed(_slow_to_recompute(str(tmp_path), str(release)), pure=False)
    dX = _persisted(
        cluster,
        da.concatenate(
            [
                da.from_delayed(source(i, CHUNK_ROWS), shape=(CHUNK_ROWS, 4), dtype=float)
                for i in range(4)
            ]
        ),
    )
    original = distributed._WorkerChunks.call
    state = {"calls": 0, "victim": None, "killed_at": None}

    def call(self, *args, **kwargs):
        """At the 3rd E-step, kill a worker holding the only copy of a chunk of X."""
        state["calls"] += 1
        if state["calls"] == 3:
            state["victim"] = _kill_a_holder(cluster, dX)
            state["killed_at"] = time.perf_counter()
        return original(self, *args, **kwargs)

    monkeypatch.setattr(distributed._WorkerChunks, "call", call)
    try:
        with pytest.raises(WorkerLostError) as caught:
            _fit(dX, "em")
        elapsed = time.perf_counter() - state["killed_at"]
    finally:
        release.touch()  # the recomputation may finish now
    _assert_one_line(caught.value, "did not have X's chunks", "WORKER_LOSS_TIMEOUT=2 s")
    # 2 s of timeout, at most 2 s for the scheduler to drop the dead worker and the
    # actor call's polling, on a loaded machine
    assert 2.0 <= elapsed < ERROR_BOUND, elapsed
    cluster.wait_for_workers(2, timeout=30)
    assert state["victim"] not in cluster.run(os.getpid).values()  # really killed


def _kill_before_pass(client, monkeypatch, dX, method, at, also=()):
    """SIGKILL a worker holding chunks of ``dX`` (:func:`_kill_a_holder`) just before
    the pass ``at`` over X of the next fit (EM's E-step, VB's map_chunks); the state
    records the victim, the time of the kill and the seconds the pass hit took."""
    name = "estep" if method == "em" else "map_chunks"
    original = getattr(distributed.DaskSource, name)
    state = {"calls": 0, "victim": None, "killed_at": None, "hit": None}

    def hit_by_a_kill(self, *args, **kwargs):
        state["calls"] += 1
        if state["calls"] != at:
            return original(self, *args, **kwargs)
        state["victim"] = _kill_a_holder(client, dX, also)
        state["killed_at"] = time.perf_counter()
        try:
            return original(self, *args, **kwargs)
        finally:
            state["hit"] = time.perf_counter() - state["killed_at"]

    monkeypatch.setattr(distributed.DaskSource, name, hit_by_a_kill)
    return state


@pytest.mark.parametrize(
    ("method", "actors"),
    [("em", True), ("em", False), ("vb", True)],
    ids=["em-worker-actors", "em-task-graph", "vb-worker-actors"],
)
def test_a_killed_worker_costs_a_bounded_time(cluster, monkeypatch, method, actors):
    """A worker holding chunks of X killed (SIGKILL) just before the 5th pass over X
    (EM's E-step; VB's map_chunks): the fit ends at the fault-free fit (1e-9 relative,
    same iterations) and the pass hit by the kill, recovery included, returns within
    ERROR_BOUND seconds."""
    monkeypatch.setattr(distributed, "WORKER_ACTORS", actors)
    # keys of its own (name=False): no copy of an earlier test's chunks on the workers
    dX = _persisted(cluster, da.from_array(X, chunks=(CHUNK_ROWS, 4), name=False))
    want = _fit(dX, method)
    state = _kill_before_pass(cluster, monkeypatch, dX, method, at=5)
    got = _fit(dX, method)
    assert state["hit"] is not None and state["hit"] < ERROR_BOUND, state
    assert got.settings["estep"] == want.settings["estep"]
    assert got.settings["estep"] == ("worker-actors" if actors else "task-graph")
    assert got.settings["worker_losses"] >= (1 if actors else 0)
    if method == "em":
        assert got.n_iter == want.n_iter
        assert got.log_likelihood == pytest.approx(want.log_likelihood, rel=1e-9, abs=0)
    else:
        assert got.settings["n_iter"] == want.settings["n_iter"]
        assert got.settings["elbo"] == pytest.approx(want.settings["elbo"], rel=1e-9, abs=0)
    cluster.wait_for_workers(2, timeout=30)
    assert state["victim"] not in cluster.run(os.getpid).values()  # really killed


def test_vb_lost_data_on_the_task_graph_raise_one_line_error_within_seconds(cluster, monkeypatch):
    """Scattered chunks (no graph to recompute them) whose worker is killed (SIGKILL)
    during closed-form VB on the task-graph route: a one-line WorkerLostError saying the
    data cannot be recomputed, within ERROR_BOUND seconds of the kill."""
    monkeypatch.setattr(distributed, "WORKER_ACTORS", False)
    parts = [X[i : i + CHUNK_ROWS] for i in range(0, len(X), CHUNK_ROWS)]
    futures = cluster.scatter(parts, hash=False)
    chunks = [
        da.from_delayed(f, shape=p.shape, dtype=float) for f, p in zip(futures, parts, strict=True)
    ]
    dX = _persisted(cluster, da.concatenate(chunks))
    state = _kill_before_pass(cluster, monkeypatch, dX, "vb", at=3, also=futures)
    with pytest.raises(WorkerLostError) as caught:
        _fit(dX, "vb")
    assert state["killed_at"] is not None
    assert time.perf_counter() - state["killed_at"] < ERROR_BOUND
    _assert_one_line(caught.value, "cannot be recomputed", "from a source Dask can recompute")
    del futures


@pytest.mark.parametrize(
    ("setting", "value", "error", "match"),
    [
        ("WORKER_LOSS_TIMEOUT", 0.0, ValueError, "WORKER_LOSS_TIMEOUT must be a finite"),
        ("WORKER_LOSS_TIMEOUT", -1, ValueError, "WORKER_LOSS_TIMEOUT must be a finite"),
        ("WORKER_LOSS_TIMEOUT", float("inf"), ValueError, "WORKER_LOSS_TIMEOUT must be a fin"),
        ("WORKER_LOSS_TIMEOUT", float("nan"), ValueError, "WORKER_LOSS_TIMEOUT must be a fin"),
        ("WORKER_LOSS_TIMEOUT", "60", TypeError, "WORKER_LOSS_TIMEOUT must be a number"),
        ("WORKER_LOSS_TIMEOUT", True, TypeError, "WORKER_LOSS_TIMEOUT must be a number"),
        ("WORKER_LOSS_RETRIES", -1, ValueError, "WORKER_LOSS_RETRIES must be >= 0"),
        ("WORKER_LOSS_RETRIES", 2.0, TypeError, "WORKER_LOSS_RETRIES must be an integer"),
        ("WORKER_LOSS_RETRIES", None, TypeError, "WORKER_LOSS_RETRIES must be an integer"),
    ],
)
@pytest.mark.parametrize("method", ["em", "vb"])
def test_bad_worker_loss_settings_are_refused_before_any_pass(
    monkeypatch, setting, value, error, match, method
):
    """The settings are checked when a fit on Dask input starts (no cluster needed)."""
    monkeypatch.setattr(distributed, setting, value)
    passes = []
    monkeypatch.setattr(distributed.DaskSource, "map_reduce", lambda *a, **k: passes.append(a))
    with pytest.raises(error, match=match) as caught:
        _fit(da.from_array(X[:400], chunks=(100, 4)), method)
    assert "\n" not in str(caught.value) and not passes


# -- Ctrl-C during EM on a cluster ----------------------------------------------------------

_CHILD = """
import json, sys, time, warnings
from pathlib import Path

import dask.array as da
import distributed
import numpy as np

import bayesmix as bm
from bayesmix.inference.em import distributed as dist

if __name__ == "__main__":
    folder = Path(sys.argv[1])
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0"
    )
    client = distributed.Client(cluster)
    rng = np.random.default_rng(0)
    # overlapping clusters: EM still moves when the signal lands
    X = np.concatenate([rng.normal(m, 1.0, (4_000, 4)) for m in (0.0, 1.0, 2.0)])
    dX = client.persist(da.from_array(X, chunks=(2_000, 4)))
    distributed.wait(client.futures_of(dX))
    model = bm.GaussianMixture(3, "full")
    CASES = (("em", "worker-actors"), ("em", "task-graph"), ("vb", "worker-actors"))

    def actors_left():  # the actors' release reaches the workers within moments
        for _ in range(100):
            left = sum(client.run(lambda dask_worker: len(dask_worker.state.actors)).values())
            if not left:
                break
            time.sleep(0.1)
        return left

    for method, route in CASES:
        dist.WORKER_ACTORS = route == "worker-actors"
        name = "estep" if method == "em" else "map_chunks"  # a pass over X
        original, calls = getattr(dist.DaskSource, name), []
        marker = folder / f"{method}-{route}"

        def watched(self, *args, _original=original, _marker=marker, **kwargs):
            calls.append(1)  # only watches: marks the 8th pass
            if len(calls) == 8:
                _marker.write_text("started")
            return _original(self, *args, **kwargs)

        setattr(dist.DaskSource, name, watched)
        options = dict(n_init=1, random_state=0, tol=0)
        if method == "vb":
            options.update(method="vb", mode="cavi", tol=1e-300, draws=20)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            got = model.fit(dX, max_iter=10**7, **options)
        setattr(dist.DaskSource, name, original)
        after_interrupt = actors_left()
        n_iter = got.n_iter if method == "em" else got.settings["n_iter"]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            same = model.fit(dX, max_iter=n_iter, **options)
        if method == "em":
            value, again, trace = got.log_likelihood, same.log_likelihood, got.log_likelihood_trace
            means, converged = got.means, got.converged
        else:
            value, again, trace = got.settings["elbo"], same.settings["elbo"], got.elbo
            means, converged = got.posterior["means"].values, got.settings["converged"]
        print(json.dumps({
            "warnings": [f"{type(w.message).__name__}: {w.message}" for w in caught],
            "interrupted": got.settings.get("interrupted"), "converged": bool(converged),
            "estep": got.settings["estep"], "n_iter": n_iter, "calls": len(calls),
            "value": value, "same_n_iter": again, "last_step": float(np.diff(trace)[-1]),
            "finite": bool(np.isfinite(means).all()),
            "actors_left": after_interrupt, "actors_left_after_a_fit": actors_left(),
            "sum": float(dX.sum().compute()), "want_sum": float(X.sum()),
        }), flush=True)
    client.close()
    cluster.close()
"""


@pytest.mark.skipif(os.name != "posix", reason="SIGINT to a subprocess")
def test_ctrl_c_during_a_fit_on_a_cluster_keeps_the_work_done(tmp_path):
    """A real SIGINT to a process fitting on a 2-worker LocalCluster (processes), during
    EM on each route and during closed-form VB (CAVI) on the worker actors: the fit
    returns the state of the iterations made (the log-likelihood or ELBO of an
    uninterrupted fit of that many iterations, 1e-9 relative) with one
    InterruptedFitWarning, converged=False, no actor left on the workers, and the
    cluster and persisted data still usable."""
    import json
    import subprocess
    import sys

    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    proc = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    cases = (("em", "worker-actors"), ("em", "task-graph"), ("vb", "worker-actors"))
    pending = [tmp_path / f"{m}-{r}" for m, r in cases]  # a SIGINT as each marker appears
    deadline = time.monotonic() + 400
    while pending and proc.poll() is None and time.monotonic() < deadline:
        if pending[0].exists():
            os.kill(proc.pid, signal.SIGINT)
            pending.pop(0)
        time.sleep(0.05)
    if pending:  # the child ended or stalled before a marker
        proc.kill()
    try:
        out, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert not pending and proc.returncode == 0, f"{pending}\n{out}\n{err}"
    reports = [json.loads(line) for line in out.strip().splitlines()[-3:]]
    for (method, route), report in zip(cases, reports, strict=True):
        kept = [w for w in report["warnings"] if w.startswith("InterruptedFitWarning")]
        holds = "best state reached so far" if method == "em" else "the best run so far"
        assert len(kept) == 1 and holds in kept[0], report["warnings"]
        assert report["interrupted"] is True and report["converged"] is False
        assert report["estep"] == route and report["finite"]
        assert 2 <= report["n_iter"] <= report["calls"] and report["last_step"] > 0
        assert report["value"] == pytest.approx(report["same_n_iter"], rel=1e-9, abs=0)
        assert report["actors_left"] == report["actors_left_after_a_fit"] == 0
        assert report["sum"] == pytest.approx(report["want_sum"], rel=1e-12)
