"""EM on Dask: equality with in-memory EM on a real LocalCluster, lazy predictions,
bounded worker memory on data larger than the workers' memory, and clear input errors."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pandas as pd
import pytest
import xarray as xr

import bayesmix as bm
from bayesmix.data import is_dask_input
from bayesmix.exceptions import ConvergenceWarning
from bayesmix.inference.em import distributed
from bayesmix.inference.em.distributed import RechunkWarning

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")
dd = pytest.importorskip("dask.dataframe")
pytest.importorskip("distributed")

WORKER_MEMORY = 450 * 2**20  # bytes per worker; an idle worker with bayesmix holds 300-450 MB


@pytest.fixture(scope="module")
def client():
    from distributed import Client, LocalCluster

    # No pausing, spilling or restarting (the statistics are tiny): the memory test asserts
    # the bound on each worker's peak resident memory itself.
    no_pause = {
        f"distributed.worker.memory.{k}": False for k in ("target", "spill", "pause", "terminate")
    }
    # Compile (and cache on disk) every E-step kernel here first, so the workers load them
    # from the cache: a compile inside a worker peaks at several hundred MB of LLVM memory,
    # which the memory test would mistake for data.
    X, _ = _mixture(600, seed=9)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        for covariance_type in ("full", "tied", "diag", "spherical"):
            bm.GaussianMixture(2, covariance_type).fit(X, max_iter=1, random_state=0)
    with (
        dask.config.set(no_pause),
        LocalCluster(
            n_workers=2,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            memory_limit=WORKER_MEMORY,
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        yield client


def _mixture(n_obs, seed=0):
    """Three well-separated 3-D Gaussians with known weights (0.5, 0.3, 0.2)."""
    rng = np.random.default_rng(seed)
    z = rng.choice(3, size=n_obs, p=[0.5, 0.3, 0.2])
    centres = np.array([[0.0, 0.0, 0.0], [6.0, 0.0, 3.0], [0.0, 7.0, -4.0]])
    scales = np.array([1.0, 0.5, 1.5])
    return centres[z] + scales[z, None] * rng.standard_normal((n_obs, 3)), z


def _assert_same_fit(got, want, rtol=1e-10):
    assert got.n_iter == want.n_iter
    for name in ("weights", "means", "covariances"):
        a, b = getattr(got, name), getattr(want, name)
        assert np.max(np.abs(a - b)) <= rtol * np.max(np.abs(b)), name
    assert got.log_likelihood == pytest.approx(want.log_likelihood, rel=rtol)
    np.testing.assert_allclose(got.log_likelihood_trace, want.log_likelihood_trace, rtol=rtol)


def test_detects_dask_input_without_importing_it_for_others():
    X, _ = _mixture(100)
    dX = da.from_array(X, chunks=(30, 3))
    assert is_dask_input(dX) and is_dask_input(dd.from_array(X))
    assert is_dask_input(xr.DataArray(dX, dims=("obs", "feature")))
    assert is_dask_input(xr.Dataset({"a": ("obs", dX[:, 0])}))
    assert not is_dask_input(X) and not is_dask_input(pd.DataFrame(X))
    assert not is_dask_input(xr.DataArray(X, dims=("obs", "feature")))


def test_cluster_em_and_map_equal_in_memory(client):
    X, _ = _mixture(6_000)
    weights = np.random.default_rng(1).uniform(0.5, 2.0, size=len(X))
    dX = da.from_array(X, chunks=(700, 3))  # uneven last chunk
    dw = da.from_array(weights, chunks=1_000)  # other chunks than X: realigned
    with dask.config.set(scheduler=client.get):
        for model, method, init in [
            (bm.GaussianMixture(3, "full"), "em", "kmeans++"),  # same seed -> same start
            (bm.GaussianMixture(3, "tied"), "map", {"means": X[:3]}),
        ]:
            options = dict(method=method, init=init, n_init=1, random_state=3)
            want = model.fit(X, sample_weight=weights, **options)
            got = model.fit(dX, sample_weight=dw, **options)
            _assert_same_fit(got, want)
            assert got.settings["backend"] == "dask" and got.settings["n_chunks"] == 9
            assert got.n_obs == pytest.approx(weights.sum(), rel=1e-12)
    assert client.run(lambda: 1)  # the workers are still alive


def test_persisted_data_on_cluster_go_through_worker_actors(client):
    X, _ = _mixture(5_000, seed=3)
    weights = np.random.default_rng(2).uniform(0.5, 2.0, size=len(X))
    dX = client.persist(da.from_array(X, chunks=(600, 3)))
    dw = da.from_array(weights, chunks=1_000)  # not persisted: computed onto the workers
    model = bm.GaussianMixture(3, "full")
    start = {"means": X[:3], "weights": [0.3, 0.3, 0.4]}
    want = model.fit(X, sample_weight=weights, init=start, max_iter=20, tol=0)
    with dask.config.set(scheduler=client.get), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        got = model.fit(dX, sample_weight=dw, init=start, max_iter=20, tol=0)
    assert got.settings["estep"] == "worker-actors"
    _assert_same_fit(got, want)
    # the actors and the weights computed for them are released after the fit
    for _ in range(100):
        held = [k for k in client.who_has() if "_ChunkHolder" in str(k)]
        if not held:
            break
        time.sleep(0.1)
    assert not held


def test_assign_chunks_balances_rows_per_worker_thread():
    a, b, c = "tcp://a", "tcp://b", "tcp://c"
    # six chunks on a, two on b: two of a's move to b
    owners = distributed.assign_chunks([[a]] * 6 + [[b]] * 2, [10] * 8, {a: 1, b: 1})
    assert owners == [a] * 4 + [b] * 4
    # replicas are used where they balance; a worker with two threads takes twice the rows
    owners = distributed.assign_chunks([[a, b]] * 6, [10] * 6, {a: 2, b: 1})
    assert owners.count(a) == 4 and owners.count(b) == 2
    # chunks on a worker that has left go to the least loaded worker; uneven chunk sizes
    owners = distributed.assign_chunks([[c], [a], [a]], [20, 10, 10], {a: 1, b: 1})
    assert owners == [b, a, a]


def test_threaded_scheduler_dataframe_xarray_and_priors():
    X, _ = _mixture(3_000, seed=2)
    frame = pd.DataFrame(X, columns=["a", "b", "c"])
    model = bm.GaussianMixture(3, "diag", priors={"weight_concentration": 2.0})
    # one k-means++ start: the same in memory and on Dask (Dask's default is one start)
    options = dict(init="kmeans++", n_init=1, random_state=0)
    want = model.fit(frame, **options)
    ddf = dd.from_pandas(frame, npartitions=4)
    array = xr.DataArray(X, dims=("obs", "feature"), coords={"feature": ["a", "b", "c"]})
    with dask.config.set(scheduler="threads"):
        for data in (
            ddf,
            array.chunk({"obs": 800}),
            array.chunk({"obs": 800}).to_dataset("feature"),
        ):
            got = model.fit(data, **options)
            _assert_same_fit(got, want)
            assert got.feature_names == ("a", "b", "c")
            assert got.settings["method"] == "map"  # explicit priors: MAP, as in memory


def test_sampled_initialisation_recovers_truth_reproducibly(monkeypatch):
    # More rows than the initialisation sample: k-means++ etc. run on a seeded sample.
    monkeypatch.setattr(distributed, "INIT_SAMPLE_ROWS", 500)
    X, z = _mixture(8_000, seed=4)
    dX = da.from_array(X, chunks=(1_000, 3))
    true_weights = np.bincount(z) / len(z)
    model = bm.GaussianMixture(3, "full")
    with dask.config.set(scheduler="sync"):
        for init in ("kmeans++", "kmeans", "random_from_data", "random"):
            first = model.fit(dX, init=init, n_init=2, tol=1e-6, random_state=7)
            again = model.fit(dX, init=init, n_init=2, tol=1e-6, random_state=7)
            np.testing.assert_array_equal(first.means, again.means)
            assert np.sort(first.weights) == pytest.approx(np.sort(true_weights), abs=0.01), init
            # the fixed point of in-memory EM: one more in-memory iteration changes nothing
            start = {k: getattr(first, k) for k in ("weights", "means", "covariances")}
            step = model.fit(X, init=start, max_iter=1, tol=0)
            assert step.means == pytest.approx(first.means, abs=1e-3)


def test_kmeans_parallel_finds_separated_clusters_without_materialising(monkeypatch):
    # nine clusters on a grid, one holding 0.5% of the rows
    rng = np.random.default_rng(12)
    grid = np.array([(i, j) for i in range(3) for j in range(3)], dtype=float) * 20.0
    share = np.r_[np.full(8, 0.995 / 8), 0.005]
    z = rng.choice(9, size=20_000, p=share)
    X = grid[z] + rng.standard_normal((20_000, 2))
    dX = da.from_array(X, chunks=(2_500, 2))

    def refuse(*args, **kwargs):
        raise AssertionError("the whole array was materialised")

    monkeypatch.setattr(da.Array, "compute", refuse)
    monkeypatch.setattr(da.Array, "__array__", refuse)
    source = distributed.DaskSource(distributed.as_dask_data(dX), None)
    with dask.config.set(scheduler="sync"):
        scan = source.scan(np.random.default_rng(0), 1_000)  # a small sample, as for big data
        centres = distributed.kmeans_parallel_centres(source, scan, 9, np.random.default_rng(1))
        result = bm.GaussianMixture(9, "spherical").fit(dX, init="kmeans||", random_state=3)
    distance = np.linalg.norm(centres[:, None] - grid[None], axis=-1)
    assert sorted(distance.argmin(axis=1)) == list(range(9))  # one centre per cluster
    assert distance.min(axis=1).max() < 3.0
    order = np.linalg.norm(result.means[:, None] - grid[None], axis=-1).argmin(axis=0)
    np.testing.assert_allclose(result.weights[order], np.bincount(z) / len(z), atol=1e-3)
    assert result.settings["init"] == "kmeans||"


def test_lazy_predictions_equal_in_memory(client):
    X, _ = _mixture(2_000, seed=5)
    result = bm.GaussianMixture(3, "full").fit(X, random_state=0)
    calls = []

    def source(block):
        calls.append(len(block))
        return block

    dX = da.from_array(X, chunks=(500, 3)).map_blocks(source, meta=np.empty((0, 0)))
    lazy = {
        "predict_proba": result.predict_proba(dX),
        "predict": result.predict(dX),
        "score_samples": result.score_samples(dX),
    }
    assert not calls  # nothing computed yet
    assert lazy["predict_proba"].shape == (2_000, 3) and lazy["predict"].shape == (2_000,)
    with dask.config.set(scheduler="sync"):
        for kind, value in lazy.items():
            assert isinstance(value, da.Array)
            np.testing.assert_allclose(value.compute(), getattr(result, kind)(X), rtol=1e-12)
    assert calls  # computed only now
    chunked = xr.DataArray(X, dims=("obs", "feature")).chunk({"obs": 700})
    with dask.config.set(scheduler=client.get):
        got = result.predict(chunked).compute()
    np.testing.assert_array_equal(got, result.predict(X))


def test_blockwise_quantiles_equal_numpy(monkeypatch):
    rng = np.random.default_rng(8)
    values = rng.standard_normal((7_001, 4))
    values[:, 0] = np.round(values[:, 0], 1)  # many ties
    values[:, 3] = 2.5  # one value only
    chunked = da.from_array(values, chunks=(900, 4))

    def columns(x):  # two groups of columns, as the anomaly scores yield them
        yield slice(0, 3), x[:, :3]
        yield slice(3, 4), x[:, 3:]

    with dask.config.set(scheduler="sync"):
        for level in (0.5, 0.99, 0.9999):
            got = distributed.blockwise_quantiles(chunked, columns, 4, level)
            np.testing.assert_array_equal(got, np.quantile(values, level, axis=0))
        monkeypatch.setattr(distributed, "QUANTILE_COLLECT", 2)  # narrow down to few values
        got = distributed.blockwise_quantiles(chunked, columns, 4, 0.95)
    np.testing.assert_array_equal(got, np.quantile(values, 0.95, axis=0))


def test_anomaly_scores_on_dask_equal_in_memory(client):
    X, _ = _mixture(4_000, seed=7)
    X[:5] += 12.0  # clear outliers
    result = bm.GaussianMixture(3, "full").fit(X, random_state=0)
    want = bm.anomaly_scores(result, X[:1_000], reference=X, contamination=0.01)
    calls = []

    def source(block):
        calls.append(len(block))
        return block

    dX = da.from_array(X, chunks=(700, 3))
    with dask.config.set(scheduler=client.get):  # the threshold's passes run on the cluster
        got = bm.anomaly_scores(
            result,
            dX[:1_000].map_blocks(source, meta=np.empty((0, 0))),
            reference=xr.DataArray(dX, dims=("obs", "feature")),
            contamination=0.01,
        )
    # computed now. Exact quantiles of the same values are tested above; here the scores
    # come from 700-row chunks instead of in-memory blocks (GEMMs of other shapes, whose
    # last bits a BLAS need not keep), so equal up to rounding of a score of ~10 (1e-12
    # relative is ~5e3 eps), far tighter than any approximate quantile would be.
    assert got.threshold == pytest.approx(want.threshold, rel=1e-12, abs=0)
    np.testing.assert_allclose(got.draw_thresholds, want.draw_thresholds, rtol=1e-12)
    assert got.is_lazy and not calls  # scores of X not computed yet
    assert isinstance(got.score, da.Array) and isinstance(got.is_anomaly, da.Array)
    assert "lazy" in repr(got)
    with dask.config.set(scheduler="sync"):
        done = got.compute()
    assert calls  # computed only now
    np.testing.assert_allclose(done.score, want.score, rtol=1e-12)
    np.testing.assert_allclose(done.reference_score, want.reference_score, rtol=1e-12)
    np.testing.assert_array_equal(done.is_anomaly, want.is_anomaly)
    np.testing.assert_array_equal(done.probability, want.probability)
    assert set(range(5)) <= set(done.anomalies) and done.n_anomalies == want.n_anomalies
    # in-memory reference, Dask X; and X=None scores the Dask reference itself
    mixed = bm.anomaly_scores(result, dX, reference=X, quantile=0.99)
    alone = bm.anomaly_scores(result, reference=dX, quantile=0.99)
    assert mixed.threshold == bm.anomaly_scores(result, reference=X).threshold  # same path
    assert alone.threshold == pytest.approx(mixed.threshold, rel=1e-12, abs=0)  # as above
    np.testing.assert_array_equal(mixed.is_anomaly.compute(), alone.is_anomaly.compute())
    bad = X.copy()
    bad[1_500, 1] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite"):
        bm.anomaly_scores(result, reference=da.from_array(bad, chunks=(700, 3)))


def _tiled_chunk(block_info=None):
    """A chunk of copies of the same seeded 8-D two-component sample: data of any size,
    generated on the worker, whose fit equals the in-memory fit of one copy."""
    rows = block_info[None]["chunk-shape"][0]
    base = _tile_base()
    return np.tile(base, (rows // len(base), 1))


def _tile_base():
    rng = np.random.default_rng(11)
    z = rng.random(10_000) < 0.3
    base = rng.standard_normal((10_000, 8))
    base[z] = base[z] * 0.5 + 3.0
    return base


def test_worker_memory_stays_bounded_on_data_larger_than_workers(client):
    chunk_rows, n_chunks = 200_000, 80  # 12.8 MB chunks, 1.02 GB in all
    X = da.map_blocks(
        _tiled_chunk, chunks=((chunk_rows,) * n_chunks, (8,)), dtype=float, meta=np.empty((0, 0))
    )
    n_workers = len(client.scheduler_info()["workers"])
    assert X.nbytes > n_workers * WORKER_MEMORY
    model = bm.GaussianMixture(2, "diag")
    init = {"means": [np.zeros(8), np.full(8, 2.0)], "weights": [0.5, 0.5]}
    init["covariances"] = np.ones((2, 8))
    idle = client.run(_reset_peak_memory)
    with dask.config.set(scheduler=client.get), warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        got = model.fit(X, init=init, max_iter=1, tol=0)  # scan + 2 E-step passes
        want = model.fit(_tile_base(), init=init, max_iter=1, tol=0)
    assert got.n_obs == X.shape[0]
    np.testing.assert_allclose(got.means, want.means, rtol=1e-9)
    np.testing.assert_allclose(got.covariances, want.covariances, rtol=1e-9)
    # What a worker added while streaming its half of the data (510 MB) stays within a few
    # chunks; its idle size (imports, compiled kernels, earlier tests) is not the fit's.
    peaks = client.run(_peak_memory)
    growth = {worker: peak - idle[worker] for worker, peak in peaks.items()}
    chunk_bytes = X.nbytes // n_chunks
    assert max(growth.values()) < 8 * chunk_bytes, {k: v / 2**20 for k, v in growth.items()}


def _reset_peak_memory() -> int:
    """Start a worker's peak resident memory (VmHWM) afresh from its current size, which is
    returned in bytes. Not ``getrusage``: its peak survives ``exec``, so a spawned worker
    reports the peak of the process that started it."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")
    return _status_bytes("VmRSS")


def _peak_memory() -> int:
    """A worker's peak resident memory in bytes since :func:`_reset_peak_memory`."""
    return _status_bytes("VmHWM")


def _status_bytes(field: str) -> int:
    """One memory field of this process's ``/proc/self/status``, in bytes."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith(f"{field}:"))
    return int(line.split()[1]) * 1024


def test_bad_input_errors_name_problem_and_fix():
    X, _ = _mixture(400, seed=6)
    model = bm.GaussianMixture(2, "full")
    dX = da.from_array(X, chunks=(100, 3))
    with dask.config.set(scheduler="sync"):
        with pytest.warns(RechunkWarning, match=r"rechunk\(\{1: -1\}\)"):
            model.fit(da.from_array(X, chunks=(100, 2)), max_iter=3, random_state=0)
        with pytest.raises(ValueError, match="compute_chunk_sizes"):
            model.fit(dX[dX[:, 0] > -100])
        bad = X.copy()
        bad[321, 2] = np.nan
        with pytest.raises(
            ValueError, match=r"1 NaN or infinite value\(s\), the first in row 321, column 'x2'"
        ):
            model.fit(da.from_array(bad, chunks=(100, 3)))
        passes = []

        def flaky(block):  # finite on the first pass only: NaN appears mid-stream
            passes.append(1)
            return block if len(passes) <= 4 else block * np.nan

        with pytest.raises(ValueError, match="during an EM pass"):
            start = {"means": X[:2], "weights": [0.5, 0.5], "covariances": [np.eye(3)] * 2}
            model.fit(dX.map_blocks(flaky, meta=np.empty((0, 0))), init=start)
        with pytest.raises(ValueError, match="negative"):
            model.fit(dX, sample_weight=-da.ones(400, chunks=100))
        with pytest.raises(ValueError, match=r"shape \(400,\)"):
            model.fit(dX, sample_weight=da.ones(300, chunks=100))
        with pytest.raises(TypeError, match="non-numeric columns \\['s'\\]"):
            model.fit(dd.from_pandas(pd.DataFrame({"a": X[:, 0], "s": "x"}), npartitions=2))
        with pytest.raises(ValueError, match="reshape"):
            model.fit(dX[:, 0])
        with pytest.raises(ValueError, match="needs the data in memory"):
            model.fit(dX, method="nuts")
        with pytest.raises(ValueError, match="not supported for Dask"):
            model.fit(dX, missing="marginalize")
        with pytest.raises(TypeError, match="unknown option"):
            model.fit(dX, draws=10)
        result = model.fit(X, random_state=0)
        with pytest.raises(ValueError, match="fitted on 3"):
            result.predict(dX[:, :2])


def test_benchmark_script_runs_quick(client):
    from benchmarks import dask_em

    report = dask_em.main(["--quick", "--no-spark"], client=client)
    # (seconds per iteration are differences of two fits: on tiny data, noise can make
    # them negative, so only their presence is checked)
    assert set(report["seconds_per_iteration"]) == {"memory", "actors", "graph"}
    assert report["log_likelihood_rel_diff"] < 1e-10
    assert report["oom"]["weights_error"] < 0.05 and report["oom"]["peak_rss"]
