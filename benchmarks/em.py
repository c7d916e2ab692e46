"""EM speed against scikit-learn: same data, same initial parameters, same iterations.

For each case both libraries run ``--iterations`` EM iterations with ``tol=0`` from
identical initial parameters, interleaved (sklearn, bayesmix, sklearn, ...) after a
warm-up, ``--repeats`` times. Printed per case: median seconds, the ratio
sklearn / bayesmix, the relative difference of the final log-likelihoods, the peak memory
each fit allocated (tracemalloc, numpy buffers included; measured in a separate untimed
run because tracing slows allocation) beside the data size, the
effective GFLOP/s of bayesmix against a model of the floating-point work per iteration,
and bayesmix on the same data in float32 (through :class:`bayesmix.sklearn.GaussianMixture`,
which keeps float32 data float32 and runs the float32 E-step kernels; timed in the same
interleaved rounds): its median seconds, the speed ratio float64 / float32 and the relative
difference of its final log-likelihood from the float64 fit's.

bayesmix runs plain EM here (``accelerate=False``): SQUAREM, its default, would take a
different path from scikit-learn's, and the log-likelihoods would not be comparable.

On a shared machine, wall time counts the time a process waited for a core; the CPU
columns (``time.process_time``, all of the process's threads) do not, and with one thread
each their ratio is the fairer comparison under load.

The reference rate, printed first and as the last column: numpy's dgemm (1024 x 1024
products) on one thread, measured in the same run, times the number of numba threads the
kernels use; "% of dgemm" is bayesmix's GFLOP/s against it.

Run: ``python -m benchmarks.em`` (full table) or ``python -m benchmarks.em --quick``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import tracemalloc
import warnings
from dataclasses import dataclass
from functools import partial

import numba
import numpy as np
from sklearn.mixture import GaussianMixture as SklearnGaussianMixture

import bayesmix as bm
from bayesmix.sklearn import GaussianMixture as BayesmixEstimator

CASES = [
    (1_000_000, 2, 8, "full"),
    (100_000, 16, 8, "full"),
    (200_000, 32, 16, "full"),
    (100_000, 16, 8, "diag"),
    (100_000, 16, 8, "spherical"),
    (100_000, 16, 8, "tied"),
]
QUICK_CASES = [(3_000, 3, 4, kind) for kind in ("full", "diag", "spherical", "tied")]


@dataclass
class CaseResult:
    n_obs: int
    n_features: int
    n_components: int
    covariance_type: str
    sklearn_seconds: float
    bayesmix_seconds: float
    log_likelihood_rel_diff: float
    sklearn_peak_mb: float
    bayesmix_peak_mb: float
    data_mb: float
    gflops: float
    float32_seconds: float
    float32_log_likelihood_rel_diff: float
    sklearn_cpu_seconds: float
    bayesmix_cpu_seconds: float

    @property
    def ratio(self) -> float:
        return self.sklearn_seconds / self.bayesmix_seconds

    @property
    def cpu_ratio(self) -> float:
        return self.sklearn_cpu_seconds / self.bayesmix_cpu_seconds

    @property
    def float32_ratio(self) -> float:
        """How many times faster bayesmix runs on float32 data than on float64."""
        return self.bayesmix_seconds / self.float32_seconds


def make_data(n_obs: int, n_features: int, n_components: int, seed: int = 0) -> np.ndarray:
    """Draws from a random mixture with well-spread components."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(scale=4.0, size=(n_components, n_features))
    labels = rng.integers(n_components, size=n_obs)
    mixing = rng.normal(size=(n_components, n_features, n_features)) / np.sqrt(n_features)
    noise = rng.standard_normal((n_obs, n_features))
    X = np.empty((n_obs, n_features))
    for k in range(n_components):  # per component, not per row
        rows = labels == k
        X[rows] = centres[k] + noise[rows] @ (mixing[k] + np.eye(n_features))
    return X


def initial_parameters(X: np.ndarray, n_components: int, covariance_type: str, seed: int = 1):
    """Identical starting parameters for both libraries: random rows as means, equal
    weights, the data covariance for every component (in each natural shape)."""
    rng = np.random.default_rng(seed)
    means = X[rng.choice(X.shape[0], n_components, replace=False)]
    cov = np.cov(X, rowvar=False)
    natural = {
        "full": np.repeat(cov[None], n_components, axis=0),
        "tied": cov,
        "diag": np.repeat(np.diag(cov)[None], n_components, axis=0),
        "spherical": np.full(n_components, np.diag(cov).mean()),
    }[covariance_type]
    precisions = np.linalg.inv(natural) if kind_is_matrix(covariance_type) else 1.0 / natural
    weights = np.full(n_components, 1.0 / n_components)
    return weights, means, natural, precisions


def kind_is_matrix(covariance_type: str) -> bool:
    return covariance_type in ("full", "tied")


def flops_per_iteration(n_obs: int, n_features: int, n_components: int, kind: str) -> float:
    """Multiply-adds counted as 2 flops: whitening plus second moments (spherical: the
    squared norm of a row, shared by the components)."""
    d = n_features
    per_component = {
        "full": d * (d + 1),
        "tied": d * (d + 1) / n_components,
        "diag": 4 * d,
        "spherical": d / n_components,
    }
    return 2.0 * n_obs * n_components * (per_component[kind] + 2 * d)


def dgemm_gflops(size: int = 1024, repeats: int = 7) -> float:
    """numpy's matrix product of two ``size x size`` float64 matrices on one BLAS thread,
    in GFLOP/s (``2 size^3`` flops), the median of ``repeats`` after a warm-up."""
    from threadpoolctl import threadpool_limits

    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, size, size))
    out = np.empty((size, size))
    with threadpool_limits(limits=1, user_api="blas"):
        np.matmul(a, b, out=out)
        times = [_timed(partial(np.matmul, a, b, out=out))[1] for _ in range(repeats)]
    return 2.0 * size**3 / statistics.median(times) / 1e9


def _timed(fn):
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def _timed_cpu(fn):
    """``fn()``, its wall seconds and its CPU seconds (every thread of the process)."""
    cpu = time.process_time()
    out, seconds = _timed(fn)
    return out, seconds, time.process_time() - cpu


def _peak_mb(fn) -> float:
    """Peak traced memory of one call (a separate, untimed run: tracing slows allocation)."""
    tracemalloc.start()
    fn()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return peak / 2**20


def run_case(n_obs, n_features, n_components, kind, iterations, repeats) -> CaseResult:
    X = make_data(n_obs, n_features, n_components)
    weights, means, covariances, precisions = initial_parameters(X, n_components, kind)

    def estimator_fit(estimator_class, data):
        """scikit-learn's estimator, or bayesmix's with the same interface, from the start."""
        return estimator_class(
            n_components,
            covariance_type=kind,
            weights_init=weights,
            means_init=means,
            precisions_init=precisions,
            max_iter=iterations,
            tol=0.0,
            reg_covar=0.0,  # bayesmix's native reg_covar is relative, scikit-learn's absolute
        ).fit(data)

    sklearn_fit = partial(estimator_fit, SklearnGaussianMixture, X)
    # float32 data kept float32 by bayesmix's scikit-learn estimator (float32 kernels)
    float32_fit = partial(estimator_fit, BayesmixEstimator, X.astype(np.float32))

    def bayesmix_fit():
        init = {"weights": weights, "means": means, "covariances": covariances}
        return bm.GaussianMixture(n_components, kind).fit(
            X, init=init, max_iter=iterations, tol=0.0, reg_covar=0.0, accelerate=False
        )

    sk_times, bm_times, f32_times, sk_cpu, bm_cpu = [], [], [], [], []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sklearn_fit(), bayesmix_fit(), float32_fit()  # warm-up (imports, caches, compiles)
        for _ in range(repeats):
            sk, seconds, cpu = _timed_cpu(sklearn_fit)
            sk_times.append(seconds)
            sk_cpu.append(cpu)
            ours, seconds, cpu = _timed_cpu(bayesmix_fit)
            bm_times.append(seconds)
            bm_cpu.append(cpu)
            ours32, seconds = _timed(float32_fit)
            f32_times.append(seconds)
        sk_peak, bm_peak = _peak_mb(sklearn_fit), _peak_mb(bayesmix_fit)
    sk_loglik = sk.score(X) * n_obs
    bm_loglik = ours.score(X) * n_obs
    f32_loglik = ours32.result_.score(X) * n_obs  # the float32 fit's parameters on X
    bm_median = statistics.median(bm_times)
    return CaseResult(
        n_obs,
        n_features,
        n_components,
        kind,
        statistics.median(sk_times),
        bm_median,
        abs(bm_loglik - sk_loglik) / abs(sk_loglik),
        sk_peak,
        bm_peak,
        X.nbytes / 2**20,
        # plain EM makes iterations + 1 E-steps: the last one scores the final parameters
        flops_per_iteration(n_obs, n_features, n_components, kind)
        * (iterations + 1)
        / bm_median
        / 1e9,
        statistics.median(f32_times),
        abs(f32_loglik - bm_loglik) / abs(bm_loglik),
        statistics.median(sk_cpu),
        statistics.median(bm_cpu),
    )


def main(argv: list[str] | None = None) -> list[CaseResult]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny cases (a smoke test)")
    parser.add_argument("--iterations", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--cases", help="comma-separated row numbers (from 0) of the table to run; default all"
    )
    args = parser.parse_args(argv)
    cases = QUICK_CASES if args.quick else CASES
    if args.cases:
        cases = [cases[int(i)] for i in args.cases.split(",")]
    threads = numba.get_num_threads()
    reference = dgemm_gflops() * threads
    print(f"{args.iterations} EM iterations, tol=0, median of {args.repeats} interleaved runs")
    print(f"numba threads: {threads}; dgemm reference: {reference:.1f} GFLOP/s\n")
    print(
        "| N | D | K | covariance | sklearn s | bayesmix s | sklearn/bayesmix | rel. diff log L |"
        " peak MB sklearn | peak MB bayesmix | data MB | bayesmix GFLOP/s |"
        " bayesmix float32 s | float64/float32 | float32 rel. diff log L | % of dgemm |"
        " sklearn CPU s | bayesmix CPU s | sklearn/bayesmix CPU |"
    )
    print("| --- " * 19 + "|")
    results = []
    for case in cases:
        r = run_case(*case, iterations=args.iterations, repeats=args.repeats)
        results.append(r)
        print(
            f"| {r.n_obs:,} | {r.n_features} | {r.n_components} | {r.covariance_type} "
            f"| {r.sklearn_seconds:.2f} | {r.bayesmix_seconds:.2f} | {r.ratio:.2f} "
            f"| {r.log_likelihood_rel_diff:.1e} | {r.sklearn_peak_mb:.0f} "
            f"| {r.bayesmix_peak_mb:.0f} | {r.data_mb:.0f} | {r.gflops:.2f} "
            f"| {r.float32_seconds:.2f} | {r.float32_ratio:.2f} "
            f"| {r.float32_log_likelihood_rel_diff:.1e} | {100 * r.gflops / reference:.0f} "
            f"| {r.sklearn_cpu_seconds:.2f} | {r.bayesmix_cpu_seconds:.2f} | {r.cpu_ratio:.2f} |",
            flush=True,
        )
    return results


if __name__ == "__main__":
    main()
