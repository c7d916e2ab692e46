"""EM on Dask: throughput against the in-memory engine and Spark MLlib, and a fit on data
larger than the workers' memory.

1. Throughput (``--rows`` x 8 features, K=8, full covariance, data from
   :func:`benchmarks.em.make_data`): bayesmix in memory, bayesmix on a 2-worker
   ``LocalCluster`` (one thread per worker process, data persisted in 8 chunks) through
   its worker actors and, for comparison, through a task graph per iteration
   (``distributed.WORKER_ACTORS = False``), and Spark MLlib's ``GaussianMixture``
   (``local[2]``, data cached). Every tool's time per iteration is
   ``(t(maxIter=11) - t(maxIter=1)) / 10``, so start-up and initialisation cancel;
   ``--repeats`` runs, the engines interleaved within each, medians; the 1-minute load
   average is printed before and after each repeat (the machine may be shared). bayesmix
   fits start from the same given parameters with ``tol=0``; Spark from its own random
   start with ``tol=0``.
2. Out of memory: ``--oom-rows`` x 8 rows generated chunk by chunk on the workers (each
   chunk a seeded draw from a known 8-component mixture; nothing persisted, so every pass
   regenerates the data) fitted on a 2-worker ``LocalCluster`` with ``--worker-memory``
   per worker. Reported: data size against the workers' total memory limit, seconds per
   E-step pass (rows per second per iteration), total fit time, and the peak resident
   memory of each worker process during the fit (Linux ``VmHWM``, reset just before it;
   not ``ru_maxrss``, which a spawned worker inherits from the process that started
   it); the in-memory engine runs on a slice of the same data that fits
   (``--slice-rows``).

Run: ``python -m benchmarks.dask_em`` (full) or ``python -m benchmarks.dask_em --quick
--no-spark``. Spark needs ``pyspark`` and Java 17 (``pip install 'bayesmix[bench]'``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from contextlib import contextmanager
from typing import Any

import numpy as np

import bayesmix as bm
from bayesmix.inference.em import distributed
from benchmarks.em import make_data

N_FEATURES, N_COMPONENTS = 8, 8
ITERATIONS = (1, 11)


def initial_parameters(X: np.ndarray, seed: int = 1) -> dict[str, Any]:
    """Random rows as means, equal weights, the data covariance for every component."""
    rng = np.random.default_rng(seed)
    cov = np.cov(X[:100_000], rowvar=False)
    return {
        "means": X[rng.choice(min(len(X), 100_000), N_COMPONENTS, replace=False)],
        "weights": np.full(N_COMPONENTS, 1.0 / N_COMPONENTS),
        "covariances": np.repeat(cov[None], N_COMPONENTS, axis=0),
    }


def bayesmix_seconds_per_iteration(X: Any, init: dict) -> tuple[float, float]:
    """``(t(11) - t(1)) / 10`` of ``GaussianMixture.fit`` and the final log-likelihood."""
    model = bm.GaussianMixture(N_COMPONENTS, "full")
    times = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.exceptions.ConvergenceWarning)
        for max_iter in ITERATIONS:
            start = time.perf_counter()
            result = model.fit(X, init=init, max_iter=max_iter, tol=0)
            times[max_iter] = time.perf_counter() - start
    return (times[ITERATIONS[1]] - times[ITERATIONS[0]]) / (
        ITERATIONS[1] - ITERATIONS[0]
    ), result.log_likelihood


def spark_session():
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    os.environ.setdefault("PYSPARK_DRIVER_PYTHON", sys.executable)
    from pyspark.sql import SparkSession

    spark = (
        SparkSession.builder.master("local[2]")
        .appName("bayesmix-bench")
        .config("spark.driver.memory", "4g")
        .config("spark.sql.execution.arrow.pyspark.enabled", "true")
        .config("spark.ui.enabled", "false")
        .config("spark.ui.showConsoleProgress", "false")
        .config("spark.sql.shuffle.partitions", "2")
        .getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    return spark


def spark_frame(spark, X: np.ndarray):
    import pandas as pd
    from pyspark.ml.feature import VectorAssembler

    columns = [f"x{i}" for i in range(X.shape[1])]
    frame = spark.createDataFrame(pd.DataFrame(X, columns=columns)).repartition(2)
    features = VectorAssembler(inputCols=columns, outputCol="features").transform(frame)
    features = features.select("features").cache()
    features.count()
    return features


def spark_seconds_per_iteration(frame) -> float:
    from pyspark.ml.clustering import GaussianMixture as SparkGaussianMixture

    times = {}
    for max_iter in ITERATIONS:
        gmm = SparkGaussianMixture(k=N_COMPONENTS, maxIter=max_iter, tol=0.0, seed=1)
        start = time.perf_counter()
        gmm.fit(frame)
        times[max_iter] = time.perf_counter() - start
    return (times[ITERATIONS[1]] - times[ITERATIONS[0]]) / (ITERATIONS[1] - ITERATIONS[0])


@contextmanager
def _stopping(spark):
    try:
        yield spark
    finally:
        spark.stop()


def mixture_truth(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=4.0, size=(N_COMPONENTS, N_FEATURES))
    mixing = rng.normal(size=(N_COMPONENTS, N_FEATURES, N_FEATURES)) / np.sqrt(N_FEATURES)
    factors = mixing + np.eye(N_FEATURES)
    weights = rng.dirichlet(np.full(N_COMPONENTS, 5.0))
    return {"weights": weights, "means": means, "factors": factors}


def generate_chunk(block_info=None, truth=None, seed=0):
    """One chunk of the out-of-memory data, seeded by its position (map_blocks)."""
    info = block_info[None]
    index, rows = info["chunk-location"][0], info["chunk-shape"][0]
    rng = np.random.default_rng([seed, index])
    labels = rng.choice(N_COMPONENTS, size=rows, p=truth["weights"])
    X = rng.standard_normal((rows, N_FEATURES))
    for k in range(N_COMPONENTS):  # per component, not per row
        hit = labels == k
        X[hit] = truth["means"][k] + X[hit] @ truth["factors"][k]
    return X


def generated_array(n_rows: int, chunk_rows: int, truth: dict, seed: int = 0):
    import dask.array as da

    chunks = (chunk_rows,) * (n_rows // chunk_rows)
    if n_rows % chunk_rows:
        chunks += (n_rows % chunk_rows,)
    return da.map_blocks(
        generate_chunk,
        truth=truth,
        seed=seed,
        chunks=(chunks, (N_FEATURES,)),
        dtype=np.float64,
        meta=np.empty((0, 0)),
    )


def _reset_peak_rss() -> None:
    """Restart this process's peak resident memory (VmHWM) from its current size."""
    with open("/proc/self/clear_refs", "w") as refs:
        refs.write("5")


def _peak_rss() -> int:
    """This process's peak resident memory in bytes since :func:`_reset_peak_rss`."""
    with open("/proc/self/status") as status:
        line = next(line for line in status if line.startswith("VmHWM:"))
    return int(line.split()[1]) * 1024


def out_of_memory_fit(client, n_rows: int, chunk_rows: int, iterations: int) -> dict:
    """Fit generated data on ``client``; per-pass seconds of the E-step map-reduce."""
    truth = mixture_truth()
    X = generated_array(n_rows, chunk_rows, truth)
    init = {
        "means": truth["means"] + 0.5,
        "weights": np.full(N_COMPONENTS, 1.0 / N_COMPONENTS),
        "covariances": np.repeat(2.0 * np.eye(N_FEATURES)[None], N_COMPONENTS, axis=0),
    }
    pass_seconds = []
    original = distributed.DaskSource.estep

    def timed(self, params, **kw):
        start = time.perf_counter()
        out = original(self, params, **kw)
        pass_seconds.append(time.perf_counter() - start)
        return out

    distributed.DaskSource.estep = timed
    client.run(_reset_peak_rss)
    try:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", bm.exceptions.ConvergenceWarning)
            import dask

            with dask.config.set(scheduler=client.get):
                result = bm.GaussianMixture(N_COMPONENTS, "full").fit(
                    X, init=init, max_iter=iterations, tol=0
                )
        total = time.perf_counter() - start
    finally:
        distributed.DaskSource.estep = original
    order = np.argsort(result.weights)
    return {
        "rows": n_rows,
        "gigabytes": X.nbytes / 1e9,
        "fit_seconds": total,
        "pass_seconds": statistics.median(pass_seconds),
        "rows_per_s": n_rows / statistics.median(pass_seconds),
        "peak_rss": client.run(_peak_rss),
        "weights_error": float(np.abs(result.weights[order] - np.sort(truth["weights"])).max()),
        "X": X,
    }


def main(argv: list[str] | None = None, client=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes (smoke test)")
    parser.add_argument("--no-spark", action="store_true", help="skip Spark MLlib")
    parser.add_argument("--rows", type=float, default=1e6, help="0 skips this part")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--oom-rows", type=float, default=2e8, help="0 skips this part")
    parser.add_argument("--chunk-rows", type=float, default=1e6)
    parser.add_argument("--slice-rows", type=float, default=2e6)
    parser.add_argument("--oom-iterations", type=int, default=2)
    parser.add_argument("--worker-memory", type=float, default=1.0, help="GiB per worker")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.repeats, args.oom_rows = 20_000, 1, 200_000
        args.chunk_rows, args.slice_rows, args.oom_iterations = 50_000, 50_000, 1
    n_rows, oom_rows = int(args.rows), int(args.oom_rows)
    chunk_rows, slice_rows = int(args.chunk_rows), int(args.slice_rows)
    memory_limit = int(args.worker_memory * 2**30)

    from contextlib import ExitStack

    import dask
    import dask.array as da
    from distributed import Client, LocalCluster

    report: dict[str, Any] = {}
    with ExitStack() as stack:
        if client is None:
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=2,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    memory_limit=memory_limit,
                )
            )
            client = stack.enter_context(Client(cluster, set_as_default=False))
        n_workers = len(client.scheduler_info()["workers"])
        limit = sum(w["memory_limit"] for w in client.scheduler_info()["workers"].values())

        # -- 1. throughput ------------------------------------------------------------
        if n_rows > 0:  # --rows 0: out-of-memory part only
            X = make_data(n_rows, N_FEATURES, N_COMPONENTS)
            init = initial_parameters(X)
            dX = client.persist(da.from_array(X, chunks=(max(1, n_rows // 8), N_FEATURES)))
            bayesmix_seconds_per_iteration(X[:2_000], init)  # warm-up (compiled code, imports)
            with dask.config.set(scheduler=client.get):
                bayesmix_seconds_per_iteration(dX[:2_000], init)
                bayesmix_seconds_per_iteration(dX, init)  # the workers' actors too
            spark = frame = None
            if not args.no_spark:
                spark = stack.enter_context(_stopping(spark_session()))
                frame = spark_frame(spark, X)
                spark_seconds_per_iteration(frame)  # warm-up (JIT, broadcast)
            times: dict[str, list[float]] = {"memory": [], "actors": [], "graph": [], "spark": []}
            diffs, loads = [], [os.getloadavg()[0]]
            for _ in range(args.repeats):  # interleaved, so that load changes hit every engine
                t_mem, ll_mem = bayesmix_seconds_per_iteration(X, init)
                with dask.config.set(scheduler=client.get):
                    t_actors, ll_actors = bayesmix_seconds_per_iteration(dX, init)
                    distributed.WORKER_ACTORS = False
                    try:
                        t_graph, ll_graph = bayesmix_seconds_per_iteration(dX, init)
                    finally:
                        distributed.WORKER_ACTORS = True
                times["memory"].append(t_mem)
                times["actors"].append(t_actors)
                times["graph"].append(t_graph)
                if frame is not None:
                    times["spark"].append(spark_seconds_per_iteration(frame))
                diffs += [abs(ll - ll_mem) / abs(ll_mem) for ll in (ll_actors, ll_graph)]
                loads.append(os.getloadavg()[0])
            del dX
            if spark is not None:
                spark.stop()  # before the out-of-memory part (stopping again is a no-op)
            median = {k: statistics.median(v) for k, v in times.items() if v}
            report["seconds_per_iteration"] = median
            report["memory_rows_per_s"] = n_rows / median["memory"]
            report["dask_rows_per_s"] = n_rows / median["actors"]
            report["dask_graph_rows_per_s"] = n_rows / median["graph"]
            if "spark" in median:
                report["spark_rows_per_s"] = n_rows / median["spark"]
            report["log_likelihood_rel_diff"] = max(diffs)
            report["load_average"] = loads
            print(
                f"Throughput: N={n_rows:,}, D={N_FEATURES}, K={N_COMPONENTS}, full; seconds per "
                f"iteration = (t(maxIter=11) - t(maxIter=1)) / 10, median of {args.repeats} "
                "interleaved repeats"
            )
            print("| engine | s / iteration | rows / s / iteration | vs Spark | vs in-memory |")
            print("| --- | --- | --- | --- | --- |")
            names = {
                "memory": "bayesmix in memory (2 numba threads)",
                "actors": f"bayesmix on Dask, {n_workers}-worker LocalCluster (worker actors)",
                "graph": f"bayesmix on Dask, {n_workers}-worker LocalCluster (task graph per "
                "iteration)",
                "spark": "Spark MLlib GaussianMixture (local[2])",
            }
            rows = [(names[k], v) for k, v in median.items()]
            spark_rate = report.get("spark_rows_per_s")
            for name, seconds in rows:
                rate = n_rows / seconds
                vs_spark = f"{rate / spark_rate:.1f}x" if spark_rate else "-"
                print(
                    f"| {name} | {seconds:.3f} | {rate:,.0f} | {vs_spark} | "
                    f"{rate / report['memory_rows_per_s']:.2f}x |"
                )
            print(
                f"max relative difference of log-likelihoods, Dask vs in memory: {max(diffs):.1e}"
            )
            print(f"1-minute load average before and after each repeat: {loads}")

        # -- 2. out of memory ---------------------------------------------------------
        if oom_rows <= 0:  # --oom-rows 0: throughput only
            return report
        oom = out_of_memory_fit(client, oom_rows, chunk_rows, args.oom_iterations)
        slice_X = oom["X"][:slice_rows].compute(scheduler="sync")
        t_slice, _ = bayesmix_seconds_per_iteration(slice_X, initial_parameters(slice_X))
        report["memory_slice_rows_per_s"] = slice_rows / t_slice
        report["oom"] = {k: v for k, v in oom.items() if k != "X"}
        peak = max(oom["peak_rss"].values())
        print(
            f"\nOut of memory: {oom_rows:,} x {N_FEATURES} float64 = {oom['gigabytes']:.1f} GB "
            f"generated per chunk ({chunk_rows:,} rows) on {n_workers} workers with "
            f"{limit / 2**30:.2f} GiB memory limit in total"
        )
        print(
            f"  fit (scan + {args.oom_iterations + 1} E-step passes): {oom['fit_seconds']:.0f} s; "
            f"E-step pass {oom['pass_seconds']:.1f} s = {oom['rows_per_s']:,.0f} rows/s/iteration"
            " (data regenerated every pass)"
        )
        print(
            f"  in memory on a {slice_rows:,}-row slice: {report['memory_slice_rows_per_s']:,.0f} "
            f"rows/s/iteration; Dask/in-memory {oom['rows_per_s'] / (slice_rows / t_slice):.2f}x"
        )
        print(
            f"  peak worker memory during the fit (VmHWM): {peak / 2**20:,.0f} MiB of "
            f"{limit / n_workers / 2**20:,.0f} MiB limit per worker; largest weight error "
            f"{oom['weights_error']:.4f}"
        )
    return report


if __name__ == "__main__":
    main()
