"""Closed-form VB on Dask: in-memory CAVI, full-batch CAVI on Dask, stochastic VB on Dask,
and scikit-learn's ``BayesianGaussianMixture`` on the in-memory data as the reference.

``--rows`` x 8 features, K=8, full covariance (data from :func:`benchmarks.em.make_data`,
eight well-spread components with equal weights in expectation). Every bayesmix fit has
the same prior (``fit(method="vb")``'s defaults: a symmetric Dirichlet on the weights)
and the same start: the Dask fits' ``init="kmeans"`` (k-means on the scan's seeded sample
of 1e5 rows, ``random_state=0``, then every row assigned to the nearest centre), which the
in-memory fit receives as its ``init`` responsibilities (with k-means++ on all rows in
memory against k-means++ on the sample, the fits reached different optima: -12.66 and
-13.48 nats per observation); ``tol`` = 1e-6 nats per observation for CAVI
(``tol=1e-6 * N``); stochastic VB runs its defaults (a tenth of the chunks per step,
``(1 + t)^-0.6``, the epoch-averaged stop rule at 1e-5 per observation) and its final
full-data pass. Dask fits run on a 2-worker ``LocalCluster`` (one thread per worker
process) with the data persisted in ``--chunks`` chunks. scikit-learn runs with its own
defaults (``max_iter=100``) except ``n_components=8`` and ``covariance_type="full"``,
once (its prior differs, so its lower bound is not comparable; reported: seconds,
iterations and the adjusted Rand index of its labels against bayesmix's in-memory fit on
the first 1e5 rows). With ``max_iter=1000`` it took 595 s and 557 iterations on 1e5 rows
at load 4-7.

Reported per engine: seconds of the whole fit (median of ``--repeats``, after a warm-up
fit that compiles and caches the kernels), iterations or steps, and the ELBO per
observation reached (bayesmix's bookkeeping, the same for the three bayesmix engines).
The 1-minute load average is printed before and after.

Run: ``python -m benchmarks.vb_dask`` (1e6 rows) or ``python -m benchmarks.vb_dask
--quick`` (1e5 rows, one repeat).
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import numpy as np

import bayesmix as bm
from benchmarks.em import make_data

N_FEATURES, N_COMPONENTS = 8, 8


def _timed(fit, repeats: int):
    """Median seconds of ``repeats`` calls of ``fit()`` and the last result."""
    seconds, result = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fit()
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), result


def run(n_obs: int, n_chunks: int, repeats: int, sklearn: bool = True) -> list[dict]:
    import dask.array as da
    from distributed import Client, LocalCluster, wait
    from sklearn.metrics import adjusted_rand_score
    from sklearn.mixture import BayesianGaussianMixture

    X = make_data(n_obs, N_FEATURES, N_COMPONENTS, seed=0)
    model = bm.GaussianMixture(N_COMPONENTS, "full")
    tol = 1e-6 * n_obs
    common = dict(method="vb", n_init=1, random_state=0, draws=200)
    rows: list[dict] = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", bm.exceptions.ConvergenceWarning)
        warnings.simplefilter("ignore", UserWarning)  # distributed's large-graph notes
        cluster = LocalCluster(
            n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
        )
        client = Client(cluster)
        try:
            dX = client.persist(da.from_array(X, chunks=(-(-n_obs // n_chunks), N_FEATURES)))
            wait(client.futures_of(dX))
            start = dask_start(dX, X)
            model.fit(X[:5000], max_iter=3, **common)  # warm-up: kernels compiled and cached
            seconds, memory = _timed(
                lambda: model.fit(X, tol=tol, **{**common, "init": start}), repeats
            )
            label = "bayesmix in memory (CAVI, 2 numba threads)"
            rows.append(result_row(label, seconds, memory, n_obs))
            common["init"] = "kmeans"
            model.fit(dX[:5000], max_iter=3, **common)  # warm-up on the workers
            for mode, label, options in (
                ("cavi", "bayesmix on Dask, full-batch CAVI", dict(tol=tol)),
                ("stochastic", "bayesmix on Dask, stochastic VB", {}),
            ):
                seconds, result = _timed(
                    lambda mode=mode, options=options: model.fit(
                        dX, mode=mode, **options, **common
                    ),
                    repeats,
                )
                rows.append(result_row(label, seconds, result, n_obs))
        finally:
            client.close()
            cluster.close()
        if sklearn:
            reference = BayesianGaussianMixture(
                n_components=N_COMPONENTS, covariance_type="full", random_state=0
            )
            seconds, fitted = _timed(lambda: reference.fit(X), 1)
            sample = X[:100_000]
            ari = adjusted_rand_score(memory.predict(sample), fitted.predict(sample))
            rows.append(
                {
                    "engine": "scikit-learn BayesianGaussianMixture (in memory)",
                    "seconds": seconds,
                    "iterations": int(fitted.n_iter_),
                    "elbo_per_obs": float("nan"),
                    "note": f"own prior (lower bound {fitted.lower_bound_:.1f}), "
                    f"converged={int(fitted.converged_)}; ARI vs bayesmix in memory {ari:.4f}",
                }
            )
    reference_elbo = rows[0]["elbo_per_obs"]
    for row in rows:
        row["gap_per_obs"] = reference_elbo - row["elbo_per_obs"]
    return rows


def dask_start(dX, X: np.ndarray) -> np.ndarray:
    """The responsibilities of the Dask fits' start (``init="kmeans"``,
    ``random_state=0``): the same scan, sample and k-means as
    :func:`bayesmix.inference.vb_dask.fit_vb_dask`, every row of ``X`` assigned to the
    nearest centre."""
    from bayesmix.data import as_dask_data
    from bayesmix.inference.em.distributed import INIT_SAMPLE_ROWS, DaskSource, sample_centres
    from bayesmix.inference.em.init import nearest

    rng = np.random.default_rng(0)
    source = DaskSource(as_dask_data(dX), None)
    scan = source.scan(rng, INIT_SAMPLE_ROWS)
    labels, _ = nearest(X, sample_centres("kmeans", scan, N_COMPONENTS, rng))
    return np.eye(N_COMPONENTS)[labels]


def result_row(engine: str, seconds: float, result, n_obs: int) -> dict:
    """A row of :func:`table`: a VB fit's seconds, iterations, ELBO per observation and
    notes (for stochastic VB its minibatches and epochs)."""
    settings = result.settings
    note = f"converged={settings['converged']}"
    if settings.get("mode") == "stochastic":
        note += (
            f", {settings['batch_chunks']} of {settings['n_chunks']} chunks per step, "
            f"{settings['epochs']:.1f} epochs"
        )
    return {
        "engine": engine,
        "seconds": seconds,
        "iterations": settings["n_iter"],
        "elbo_per_obs": settings["elbo"] / n_obs,
        "note": note,
    }


def table(rows: list[dict]) -> str:
    lines = [
        "| engine | seconds | iterations / steps | ELBO per obs | gap to in-memory | notes |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        gap = "" if np.isnan(r["gap_per_obs"]) else f"{r['gap_per_obs']:.2e}"
        elbo = "" if np.isnan(r["elbo_per_obs"]) else f"{r['elbo_per_obs']:.8f}"
        lines.append(
            f"| {r['engine']} | {r['seconds']:.2f} | {r['iterations']} | {elbo} | {gap} | "
            f"{r['note']} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--chunks", type=int, default=40)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="1e5 rows, one repeat")
    parser.add_argument("--no-sklearn", action="store_true")
    args = parser.parse_args(argv)
    if args.quick:
        args.rows, args.repeats = 100_000, 1
    print(f"load before: {os.getloadavg()[0]:.2f}")
    rows = run(args.rows, args.chunks, args.repeats, sklearn=not args.no_sklearn)
    print(f"load after: {os.getloadavg()[0]:.2f}")
    print(f"{args.rows} x {N_FEATURES}, K={N_COMPONENTS} full, {args.chunks} chunks")
    print(table(rows))
    return rows


if __name__ == "__main__":
    main()
