"""Closed-form VB on Dask input (:mod:`bayesmix.inference.vb_dask`).

Full-batch CAVI on a Dask array equals the in-memory VB fit (every covariance type and
weight prior); stochastic VB with every chunk in each step makes CAVI's iterations, and
with minibatches reaches the CAVI optimum's ELBO and the simulated truth; seeded fits
repeat bit for bit; bad options raise. On a real 2-worker LocalCluster with processes, a
worker killed (SIGKILL) mid-fit does not change the result of either mode, and data that
cannot be recomputed raise a one-line WorkerLostError within seconds.
"""

from __future__ import annotations

import os
import signal
import time
import warnings

import numpy as np
import pytest

import bayesmix as bm
from bayesmix.exceptions import ConvergenceWarning, WorkerLostError
from bayesmix.inference.em import distributed

dask = pytest.importorskip("dask")
da = pytest.importorskip("dask.array")

TRUE_MEANS = np.array([[0.0, 0.0, 0.0, 0.0], [4.0, 0.0, 3.0, 1.0], [0.0, 5.0, -3.0, 2.0]])
TRUE_WEIGHTS = np.array([0.5, 0.3, 0.2])


def _simulate(n_obs, seed=0):
    rng = np.random.default_rng(seed)
    z = rng.choice(3, size=n_obs, p=TRUE_WEIGHTS)
    return TRUE_MEANS[z] + rng.standard_normal((n_obs, 4))


X = _simulate(20_000)
DX = da.from_array(X, chunks=(1_000, 4))  # 20 chunks
SMALL = X[:3_000]
DSMALL = da.from_array(SMALL, chunks=(500, 4))


def _quiet(fit, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return fit(*args, **kwargs)


def _by_first_feature_order(result):
    """q's posterior means of weights and means, components in the fits' order."""
    post = result.posterior.mean(("chain", "draw"))
    return post["weights"].values, post["means"].values


# -- full-batch CAVI ---------------------------------------------------------------------


@pytest.mark.parametrize("weight_prior", ["dirichlet", "dirichlet_process"])
@pytest.mark.parametrize("covariance_type", ["full", "tied", "diag", "spherical"])
def test_cavi_on_dask_equals_the_in_memory_fit(covariance_type, weight_prior):
    model = bm.GaussianMixture(3, covariance_type)
    options = dict(weight_prior=weight_prior, n_init=1, random_state=4, draws=50)
    want = model.fit(SMALL, method="vb", **options)
    got = model.fit(DSMALL, method="vb", **options)
    assert got.settings["mode"] == "cavi" and got.settings["backend"] == "dask"
    assert got.settings["n_iter"] == want.settings["n_iter"] == len(got.elbo)
    assert got.settings["converged"] == want.settings["converged"] == 1
    np.testing.assert_allclose(got.elbo, want.elbo, rtol=1e-10, atol=0)
    assert np.all(np.diff(got.elbo) >= -1e-9 * abs(got.elbo[-1]))
    # the same start and the same generator afterwards: the same draws from q
    for name in ("weights", "means", "covariances"):
        np.testing.assert_allclose(
            got.posterior[name].values, want.posterior[name].values, rtol=1e-8, atol=1e-10
        )


# -- stochastic VB -------------------------------------------------------------------------


def test_stochastic_with_every_chunk_per_step_makes_cavi_iterations():
    model = bm.GaussianMixture(3, "full")
    cavi = _quiet(model.fit, SMALL, method="vb", n_init=1, max_iter=6, tol=1e-300, random_state=2)
    steps = _quiet(
        model.fit,
        DSMALL,
        method="vb",
        mode="stochastic",
        batch_chunks=DSMALL.numblocks[0],
        max_iter=5,
        tol=1e-300,
        random_state=2,
    )
    # five steps (rho = 1: CAVI iterations), then the full-data pass: CAVI's sixth
    assert steps.settings["n_iter"] == 5 and len(steps.elbo) == 6
    np.testing.assert_allclose(steps.elbo, cavi.elbo, rtol=1e-10, atol=0)
    assert steps.settings["elbo"] == pytest.approx(cavi.settings["elbo"], rel=1e-12, abs=0)


@pytest.fixture(scope="module")
def cavi_optimum():
    return bm.GaussianMixture(3, "full").fit(X, method="vb", n_init=1, random_state=1)


@pytest.mark.parametrize("batch_chunks", [1, 4])
def test_stochastic_reaches_the_cavi_optimum_and_the_truth(cavi_optimum, batch_chunks):
    got = bm.GaussianMixture(3, "full").fit(
        DX, method="vb", mode="stochastic", batch_chunks=batch_chunks, random_state=1
    )
    assert got.settings["converged"] == 1 and got.settings["mode"] == "stochastic"
    assert got.settings["batch_chunks"] == batch_chunks
    assert len(got.elbo) == got.settings["n_iter"] + 1
    assert got.elbo[-1] == got.settings["elbo"]
    # within 1e-6 nats per observation of the CAVI optimum's ELBO (measured: 2e-8)
    gap = (cavi_optimum.settings["elbo"] - got.settings["elbo"]) / len(X)
    assert abs(gap) < 1e-6
    weights, means = _by_first_feature_order(got)
    want_weights, want_means = _by_first_feature_order(cavi_optimum)
    np.testing.assert_allclose(means, want_means, atol=0.01)
    np.testing.assert_allclose(weights, want_weights, atol=0.005)
    # the simulated truth, in the fit's order
    truth = np.argsort(TRUE_MEANS[:, got.feature_names.index(got.settings["order_feature"])])
    np.testing.assert_allclose(means, TRUE_MEANS[truth], atol=0.05)
    np.testing.assert_allclose(weights, TRUE_WEIGHTS[truth], atol=0.015)
    # the noisy per-step estimates scatter about the optimum
    assert np.median(np.abs(got.elbo[-20:-1] / cavi_optimum.settings["elbo"] - 1)) < 0.01


def test_stochastic_fits_repeat_bit_for_bit_and_keep_the_best_start():
    model = bm.GaussianMixture(3, "diag")
    options = dict(method="vb", mode="stochastic", batch_chunks=2, max_iter=40, draws=20)
    one = _quiet(model.fit, DX, random_state=7, **options)
    again = _quiet(model.fit, DX, random_state=7, **options)
    np.testing.assert_array_equal(one.elbo, again.elbo)
    for name in ("weights", "means", "covariances"):
        np.testing.assert_array_equal(one.posterior[name].values, again.posterior[name].values)
    other = _quiet(model.fit, DX, random_state=8, **options)
    assert not np.array_equal(one.elbo, other.elbo)
    # n_init=3: the first start is the n_init=1 start, and the best final ELBO is kept
    best = _quiet(model.fit, DX, random_state=7, n_init=3, **options)
    assert best.settings["elbo"] >= one.settings["elbo"]


def test_the_result_is_the_common_interface(tmp_path):
    result = bm.GaussianMixture(3, "full").fit(
        DSMALL, method="vb", mode="stochastic", batch_chunks=2, random_state=0, draws=30
    )
    assert result.settings["converged"] == 1
    assert result.method == "vb"
    assert dict(result.posterior.sizes) == {
        "chain": 1,
        "draw": 30,
        "component": 3,
        "feature": 4,
        "feature_": 4,
    }
    for key in ("converged", "n_iter", "mode", "worker_losses", "learning_decay", "epochs"):
        assert key in result.settings
    assert result.settings["worker_losses"] == 0
    tree = result.to_datatree(SMALL[:200])
    assert tree["posterior"]["means"].shape == (1, 30, 3, 4)
    labels = result.predict(SMALL[:200])
    assert labels.shape == (200,)
    # the training data stay on Dask: the per-row groups need X in memory, and saving refuses
    with pytest.raises(ValueError, match=r"fitted on Dask input.*to_datatree\(X\)"):
        result.to_datatree()
    with pytest.raises(ValueError, match=r"membership_draws\(X\)"):
        result.memberships()
    with pytest.raises(ValueError, match="cannot be saved"):
        result.save(tmp_path / "vb.nc")


@pytest.mark.parametrize("init", ["kmeans||", "kmeans", "random", "random_from_data"])
def test_every_start_method(init):
    result = bm.GaussianMixture(3, "diag").fit(
        DSMALL, method="vb", init=init, random_state=0, draws=10
    )
    assert result.settings["init"] == init and result.settings["converged"] == 1
    # every start reaches the optimum of these well-separated data
    optimum = bm.GaussianMixture(3, "diag").fit(SMALL, method="vb", n_init=1, random_state=0)
    assert result.settings["elbo"] == pytest.approx(optimum.settings["elbo"], rel=1e-6)


def test_a_dask_dataframe_names_the_features():
    dd = pytest.importorskip("dask.dataframe")
    pd = pytest.importorskip("pandas")
    frame = dd.from_pandas(pd.DataFrame(SMALL, columns=["a", "b", "c", "d"]), npartitions=3)
    result = bm.GaussianMixture(3, "full").fit(
        frame, method="vb", mode="stochastic", batch_chunks=1, random_state=0, draws=10
    )
    assert list(result.posterior["feature"].values) == ["a", "b", "c", "d"]
    assert result.settings["n_chunks"] == 3


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        (dict(mode="svi"), ValueError, "mode must be one of"),
        (dict(batch_chunks=2), ValueError, "mode='stochastic'"),
        (dict(learning_decay=0.7), ValueError, "mode='stochastic'"),
        (dict(mode="stochastic", batch_chunks=7), ValueError, "at most the number of chunks"),
        (dict(mode="stochastic", batch_chunks=0), ValueError, "batch_chunks"),
        (dict(mode="stochastic", batch_chunks=1.5), TypeError, "batch_chunks"),
        (dict(mode="stochastic", learning_decay=0.5), ValueError, r"\(0.5, 1\]"),
        (dict(mode="stochastic", learning_offset=0.0), ValueError, "learning_offset"),
        (dict(init=np.ones((3_000, 3)) / 3), TypeError, "in-memory start"),
        (dict(missing="marginalize"), ValueError, "not supported for Dask input"),
        (dict(sample_weight=np.ones(3_000)), TypeError, "unknown option"),
    ],
)
def test_bad_options_raise(options, error, match):
    with pytest.raises(error, match=match):
        bm.GaussianMixture(3).fit(DSMALL, method="vb", **options)


def test_missing_values_are_refused_as_for_em():
    holes = SMALL.copy()
    holes[1234, 2] = np.nan
    with pytest.raises(ValueError, match=r"NaN or infinite value\(s\), the first in row 1234"):
        bm.GaussianMixture(3).fit(da.from_array(holes, chunks=(500, 4)), method="vb")


# -- a worker killed mid-fit (real worker processes) --------------------------------------

N_CLUSTER, CHUNK_CLUSTER = 80_000, 10_000
XC = _simulate(N_CLUSTER, seed=3)
ERROR_BOUND = 15.0  # seconds from the kill to the error when the data are gone


@pytest.fixture(scope="module")
def cluster():
    distributed_lib = pytest.importorskip("distributed")
    # compile (and cache on disk) the kernels first, for the workers to load them
    _quiet(bm.GaussianMixture(3, "full").fit, SMALL, method="vb", n_init=1, max_iter=2)
    with dask.config.set({"distributed.deploy.lost-worker-timeout": "1h"}):
        local = distributed_lib.LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = distributed_lib.Client(local, set_as_default=False)
        try:
            yield client
        finally:
            client.close()
            local.close()


@pytest.fixture
def client(cluster):
    cluster.wait_for_workers(2, timeout=60)
    with cluster.as_current(), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)  # distributed's large-graph notes
        yield cluster


def _persisted(client, array):
    import distributed as distributed_lib

    persisted = client.persist(array)
    distributed_lib.wait(client.futures_of(persisted))
    return persisted


def _kill_at_pass(client, monkeypatch, at):
    """SIGKILL one worker process before the VB pass ``at`` of the next fit."""
    pids = client.run(os.getpid)
    victim = pids[sorted(pids)[0]]
    original = distributed.DaskSource.map_chunks
    state = {"calls": 0, "killed_at": None}

    def map_chunks(self, *args, **kwargs):
        state["calls"] += 1
        if state["calls"] == at:
            state["killed_at"] = time.perf_counter()
            os.kill(victim, signal.SIGKILL)
        return original(self, *args, **kwargs)

    monkeypatch.setattr(distributed.DaskSource, "map_chunks", map_chunks)
    return state, victim


CLUSTER_FITS = {
    "cavi": dict(mode="cavi", max_iter=12, tol=1e-300),
    "stochastic": dict(mode="stochastic", batch_chunks=2, max_iter=16, tol=1e-300),
}


@pytest.mark.parametrize(
    ("mode", "actors"),
    [("cavi", True), ("cavi", False), ("stochastic", True), ("stochastic", False)],
    ids=[
        "cavi-worker-actors",
        "cavi-task-graph",
        "stochastic-worker-actors",
        "stochastic-task-graph",
    ],
)
def test_a_killed_worker_does_not_change_the_fit(client, monkeypatch, mode, actors):
    monkeypatch.setattr(distributed, "WORKER_ACTORS", actors)
    dX = _persisted(client, da.from_array(XC, chunks=(CHUNK_CLUSTER, 4)))
    model = bm.GaussianMixture(3, "full")
    options = dict(method="vb", n_init=1, random_state=5, draws=20, **CLUSTER_FITS[mode])
    want = model.fit(dX, **options)
    assert want.settings["worker_losses"] == 0
    state, victim = _kill_at_pass(client, monkeypatch, at=4)
    got = model.fit(dX, **options)
    assert state["killed_at"] is not None and victim not in client.run(os.getpid).values()
    assert got.settings["estep"] == want.settings["estep"]
    assert got.settings["estep"] == ("worker-actors" if actors else "task-graph")
    if actors:
        assert got.settings["worker_losses"] >= 1  # the pass was redone
    assert got.settings["n_iter"] == want.settings["n_iter"]
    assert got.settings["elbo"] == pytest.approx(want.settings["elbo"], rel=1e-9, abs=0)
    np.testing.assert_array_equal(got.elbo, want.elbo)  # the same sums: bit for bit
    np.testing.assert_array_equal(got.posterior["means"].values, want.posterior["means"].values)


def test_lost_data_raise_one_line_error_within_seconds(client, monkeypatch):
    parts = [XC[i : i + CHUNK_CLUSTER] for i in range(0, N_CLUSTER, CHUNK_CLUSTER)]
    futures = client.scatter(parts, hash=False)
    chunks = [
        da.from_delayed(f, shape=p.shape, dtype=float) for f, p in zip(futures, parts, strict=True)
    ]
    dX = _persisted(client, da.concatenate(chunks))
    state, _ = _kill_at_pass(client, monkeypatch, at=3)
    with pytest.raises(WorkerLostError) as error:
        bm.GaussianMixture(3, "full").fit(
            dX, method="vb", mode="stochastic", batch_chunks=2, max_iter=30, random_state=0
        )
    elapsed = time.perf_counter() - state["killed_at"]
    message = str(error.value)
    assert "\n" not in message and "cannot be recomputed" in message
    assert elapsed < ERROR_BOUND
    del futures


def test_benchmark_script_runs():
    from benchmarks import vb_dask

    rows = vb_dask.run(6_000, 6, repeats=1, sklearn=False)
    assert [r["engine"].split(",")[0] for r in rows] == [
        "bayesmix in memory (CAVI",
        "bayesmix on Dask",
        "bayesmix on Dask",
    ]
    assert abs(rows[1]["gap_per_obs"]) < 1e-10  # full-batch CAVI on Dask: the same fit
    assert rows[1]["iterations"] == rows[0]["iterations"]
    assert "| engine | seconds |" in vb_dask.table(rows)


@pytest.mark.parametrize("mode", ["cavi", "stochastic"])
def test_ctrl_c_keeps_the_steps_made(monkeypatch, mode):
    from bayesmix.exceptions import InterruptedFitWarning
    from bayesmix.inference import vb_dask

    original, calls = vb_dask._estep, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 6:  # after five E-steps
            raise KeyboardInterrupt
        return original(*args, **kwargs)

    monkeypatch.setattr(vb_dask, "_estep", interrupted)
    options = dict(method="vb", mode=mode, random_state=0, draws=10)
    if mode == "stochastic":
        options["batch_chunks"] = 1
    with pytest.warns(InterruptedFitWarning):
        result = bm.GaussianMixture(3, "full").fit(DSMALL, **options)
    assert result.settings["interrupted"] and result.settings["converged"] == 0
    assert result.settings["n_iter"] == len(result.elbo) == 5
    assert np.isfinite(result.settings["elbo"])
