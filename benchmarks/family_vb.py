"""Closed-form VB for the conjugate families against MAP-EM, ADVI and NUTS.

Data and fits (one process; every method run once untimed first, so numba's kernels are
loaded from its disk cache before the timed runs; medians of ``--repeats`` runs):

- ``poisson``: ``Mixture(3, Poisson())`` on the 10,000 x 3 counts of
  ``benchmarks/family_advi.py`` (rates 1-15, weights 0.3, 0.3, 0.4): ``vb`` (5 starts,
  1000 draws), ``map`` (MAP-EM, 10 starts, the default), ``advi`` (bayesmix's density
  route, defaults) and ``nuts`` (nutpie on the hand-written density, defaults). The
  posterior means and sds of VB and ADVI are compared with NUTS's, in NUTS's posterior
  sds.
- ``lca``: ``Mixture(3, Bernoulli())`` on 100,000 x 10 binary items (item probabilities
  uniform on 0.1-0.9 per class): ``vb`` against ``map`` (5 starts each).
- ``mixed``: ``Mixture(2, Independent({Normal, Bernoulli, Poisson, Categorical}))`` on
  10,000 rows: ``vb`` against ``map`` (5 starts each).

On Dask (``--dask``): ``Mixture(3, Bernoulli())`` on ``--dask-rows`` (1e6) x 10 binary
items drawn as ``lca``, persisted in ``--chunks`` (20) chunks on a 2-worker
``LocalCluster`` (one thread per worker process): in-memory CAVI, full-batch CAVI on
Dask and stochastic VB on Dask (its defaults: a tenth of the chunks per step, ``(1 +
t)^-0.6``, the epoch-averaged stop rule at 1e-5 per observation, then a full-data pass),
all from one start (the Dask fits' ``init="kmeans"``: k-means on the scan's seeded
sample of 1e5 rows, every row then joining its nearest centre, given to the in-memory
fit as its ``init`` responsibilities), CAVI's ``tol`` 1e-8 per observation (the
default). Printed: seconds (median of ``--repeats`` after a warm-up fit), iterations or
steps, ELBO per observation and its gap to the in-memory fit, and the 1-minute load
average before and after.

Run: ``python -m benchmarks.family_vb [--repeats 3] [--skip-bayes] [--dask [--dask-rows
N] [--chunks C]]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
from functools import partial

import numpy as np


def poisson_data():
    """The counts of ``benchmarks/family_advi.py``."""
    rng = np.random.default_rng(0)
    z = rng.choice(3, size=10_000, p=[0.3, 0.3, 0.4])
    centres = np.array([[1.0, 8.0, 3.0], [6.0, 2.0, 9.0], [15.0, 12.0, 1.5]])
    return rng.poisson(centres[z]).astype(float)


def lca_data():
    rng = np.random.default_rng(0)
    probabilities = rng.uniform(0.1, 0.9, (3, 10))
    z = rng.choice(3, size=100_000, p=[0.5, 0.3, 0.2])
    return rng.binomial(1, probabilities[z]).astype(float)


def mixed_data():
    rng = np.random.default_rng(0)
    n = 10_000
    z = rng.integers(2, size=n)
    third = np.where(
        z == 1, rng.choice(3, n, p=[0.1, 0.1, 0.8]), rng.choice(3, n, p=[0.7, 0.2, 0.1])
    )
    return np.column_stack(
        [rng.normal(3.0 * z, 1.0), rng.binomial(1, 0.3 + 0.4 * z), rng.poisson(1 + 4 * z), third]
    ).astype(float)


def lca_rows(n_obs: int) -> np.ndarray:
    """``n_obs`` x 10 binary items of three latent classes, drawn as :func:`lca_data`."""
    rng = np.random.default_rng(0)
    probabilities = rng.uniform(0.1, 0.9, (3, 10))
    z = rng.choice(3, size=n_obs, p=[0.5, 0.3, 0.2])
    return (rng.random((n_obs, 10)) < probabilities[z]).astype(float)


def dask_start(model, dX, X: np.ndarray) -> np.ndarray:
    """The responsibilities of the Dask fits' start (``init="kmeans"``,
    ``random_state=0``): the same scan, sample and k-means as
    :func:`bayesmix.inference.vb_family_dask.fit_family_vb_dask`, every row of ``X``
    joining the nearest centre in the family's start transform."""
    from bayesmix.data import as_dask_data
    from bayesmix.inference.em.distributed import family_chunks
    from bayesmix.inference.em.init import kmeans, nearest

    rng = np.random.default_rng(0)
    data = as_dask_data(dX, min_obs=model.n_components)
    model, chunks, _ = family_chunks(model, data, None, "error", rng)
    chunks.source.close()
    family, k = model.family, model.n_components
    transformed = family.start_transform(chunks.sample)
    labels = kmeans(transformed, chunks.sample_weight, k, rng)
    centres = np.stack([transformed[labels == j].mean(axis=0) for j in range(k)])
    labels, _ = nearest(family.start_transform(X), centres)
    return np.eye(k)[labels]


def dask_case(n_obs: int, n_chunks: int, repeats: int) -> list[dict]:
    """In-memory CAVI, full-batch CAVI and stochastic VB on Dask (module docstring)."""
    import dask.array as da
    from distributed import Client, LocalCluster, wait

    import bayesmix as bm
    from benchmarks.vb_dask import result_row

    X = lca_rows(n_obs)
    model = bm.Mixture(3, bm.families.Bernoulli())
    common = dict(method="vb", n_init=1, random_state=0, draws=200)
    rows = []
    cluster = LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    )
    client = Client(cluster)
    try:
        dX = client.persist(da.from_array(X, chunks=(-(-n_obs // n_chunks), -1)))
        wait(client.futures_of(dX))
        start = dask_start(model, dX, X)
        fits = [
            ("in memory, CAVI", lambda: model.fit(X, init=start, **common), X[:5000]),
            ("Dask, full-batch CAVI", lambda: model.fit(dX, mode="cavi", **common), dX[:5000]),
            (
                "Dask, stochastic VB",
                lambda: model.fit(dX, mode="stochastic", **common),
                None,
            ),
        ]
        for label, fit, warm in fits:
            if warm is not None:  # kernels compiled or loaded, on the client and workers
                model.fit(warm, max_iter=3, method="vb", n_init=1, random_state=0, draws=10)
            seconds, result = timed(fit, repeats, warm_up=False)
            rows.append(result_row(label, seconds, result, n_obs))
    finally:
        client.close()
        cluster.close()
    for row in rows:
        row["gap_per_obs"] = rows[0]["elbo_per_obs"] - row["elbo_per_obs"]
    return rows


def timed(fit, repeats, warm_up=True):
    if warm_up:
        fit()  # warm-up: kernels loaded from numba's cache
    seconds, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = fit()
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds), result


def moments(result, name):
    draws = result.posterior[name]
    return draws.mean(("chain", "draw")).values, draws.std(("chain", "draw")).values


def main() -> None:
    import warnings

    import bayesmix as bm

    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-bayes", action="store_true", help="no ADVI and NUTS")
    parser.add_argument("--dask", action="store_true", help="only the Dask case")
    parser.add_argument("--dask-rows", type=int, default=1_000_000)
    parser.add_argument("--chunks", type=int, default=20)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    if args.dask:
        import os

        from benchmarks.vb_dask import table

        print(f"load before: {os.getloadavg()[0]:.2f}")
        rows = dask_case(args.dask_rows, args.chunks, args.repeats)
        print(f"load after: {os.getloadavg()[0]:.2f}")
        print(f"Mixture(3, Bernoulli()), {args.dask_rows} x 10, {args.chunks} chunks")
        print(table(rows))
        return
    families = bm.families
    cases = {
        "poisson": (bm.Mixture(3, families.Poisson()), poisson_data(), 5),
        "lca": (bm.Mixture(3, families.Bernoulli()), lca_data(), 5),
        "mixed": (
            bm.Mixture(
                2,
                families.Independent(
                    {
                        0: families.Normal(),
                        1: families.Bernoulli(),
                        2: families.Poisson(),
                        3: families.Categorical(),
                    }
                ),
            ),
            mixed_data(),
            5,
        ),
    }
    print("| data | method | seconds | VB iterations |")
    print("|---|---|---|---|")
    fits = {}
    for case, (model, X, n_init) in cases.items():
        options = {
            "vb": dict(n_init=n_init, random_state=0),
            "map": dict(n_init=n_init if case != "poisson" else 10, random_state=0),
        }
        if case == "poisson" and not args.skip_bayes:
            options["advi"] = dict(random_state=0, progressbar=False)
            options["nuts"] = dict(random_state=0, progressbar=False)
        for method, kwargs in options.items():
            repeats = 1 if method in ("advi", "nuts") else args.repeats
            seconds, result = timed(partial(model.fit, X, method, **kwargs), repeats)
            fits[case, method] = result
            iterations = result.settings.get("n_iter", "") if method == "vb" else ""
            print(f"| {case} {X.shape} | {method} | {seconds:.3f} | {iterations} |")
    if ("poisson", "nuts") in fits:
        print("\n| pair | rates: max mean diff (NUTS sds) | sd ratio to NUTS (range) |")
        print("|---|---|---|")
        reference_mean, reference_sd = moments(fits["poisson", "nuts"], "rates")
        for method in ("vb", "advi"):
            mean, sd = moments(fits["poisson", method], "rates")
            gap = np.abs(mean - reference_mean) / reference_sd
            ratio = sd / reference_sd
            print(f"| {method} - nuts | {gap.max():.2f} | {ratio.min():.2f}-{ratio.max():.2f} |")


if __name__ == "__main__":
    main()
