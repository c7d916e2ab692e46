"""Variational Bayes: bayesmix against scikit-learn's BayesianGaussianMixture (issue 20).

Both estimators with their defaults (``BayesianGaussianMixture(n_components=K,
random_state=0)`` from :mod:`sklearn.mixture` and from :mod:`bayesmix.sklearn`: k-means
start, stick-breaking weights, ``tol=1e-3``, ``max_iter=100``), full covariances, on

- Old Faithful (272 x 2), K = 2;
- simulated data, N = 100,000, D = 16, K = 8 (eight Gaussian clusters with random means
  and covariances, ``--rows`` to change N).

Prints, per case, the median seconds per fit over ``--repeats`` timed fits (after one
untimed warm-up fit of each, which also compiles bayesmix's kernels), the ratio
scikit-learn / bayesmix, iterations and convergence of each, and the adjusted Rand index
between their clusterings of the data. The bayesmix estimator draws scikit-learn's starts
(its KMeans from the same ``random_state``), so the two fit the same iterates; a second
table times :func:`bayesmix.inference.vb.fit_vb` with bayesmix's own default start
(``init="kmeans"``: the best of three Lloyd runs from greedy k-means++ seeds on at most
10,000 rows, then every row to its nearest centre), one run as scikit-learn's default;
the third, ``GaussianMixture(K).fit(X, method="vb")`` with all of bayesmix's defaults
(5 starts, ``init="auto"``: the first from k-means, the others from k-means++ seeds,
those equal to an earlier one not run again; ``tol=1e-6``; 1000 draws from ``q`` and the
DataTree result).

``--cpu``: instead of the wall-time tables, CPU time (:func:`time.process_time`) with one
thread for everything (``threadpoolctl`` for BLAS and OpenMP, ``numba.set_num_threads(1)``),
scikit-learn's fit and bayesmix's two one-run fits (the same starts; the own start)
alternated in one process after a warm-up, ``--cpu-repeats`` rounds per case (default: 41
on faithful, 9 on the simulated data), medians and the ratios of those medians: a loaded
machine slows all three alike within a round, which wall medians of separate blocks do not
control.

Run: ``python -m benchmarks.vb`` (``--quick`` for a small smoke run, ``--cpu`` for the CPU
table).
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import adjusted_rand_score
from sklearn.mixture import BayesianGaussianMixture as SklearnBGMM

import bayesmix as bm
from bayesmix.inference.vb import expected_log_joint, fit_vb
from bayesmix.sklearn import BayesianGaussianMixture


@dataclass
class Result:
    case: str
    sklearn_seconds: float
    bayesmix_seconds: float
    sklearn_iter: int
    bayesmix_iter: int
    sklearn_converged: bool
    bayesmix_converged: bool
    ari: float
    native_seconds: float
    native_iter: int
    native_ari: float
    interface_seconds: float
    interface_ari: float
    interface_runs: int

    @property
    def interface_ratio(self) -> float:
        return self.sklearn_seconds / self.interface_seconds

    @property
    def native_ratio(self) -> float:
        return self.sklearn_seconds / self.native_seconds

    @property
    def ratio(self) -> float:
        return self.sklearn_seconds / self.bayesmix_seconds


def simulate(n_obs: int, n_features: int = 16, n_components: int = 8, seed: int = 0):
    """Eight well-separated Gaussian clusters with random covariances."""
    rng = np.random.default_rng(seed)
    means = rng.normal(scale=4.0, size=(n_components, n_features))
    labels = rng.integers(n_components, size=n_obs)
    X = np.empty((n_obs, n_features))
    for k in range(n_components):
        factor = rng.normal(scale=0.3, size=(n_features, n_features)) + np.eye(n_features)
        rows = labels == k
        X[rows] = means[k] + rng.standard_normal((rows.sum(), n_features)) @ factor.T
    return X


class _Native:
    """``fit_vb`` with bayesmix's own default start (k-means++ seeds, then nearest)."""

    def __init__(self, n_components: int) -> None:
        self.n_components = n_components

    def fit(self, X):
        self.result_ = fit_vb(X, self.n_components, "full", random_state=0, warn=False)
        return self

    def predict(self, X):
        params = self.result_.params
        return expected_log_joint(X, params, self.result_.structure).argmax(axis=1)


class _Interface:
    """``GaussianMixture(K).fit(X, method="vb")`` with all of bayesmix's defaults."""

    def __init__(self, n_components: int) -> None:
        self.n_components = n_components

    def fit(self, X):
        self.result_ = bm.GaussianMixture(self.n_components).fit(X, method="vb", random_state=0)
        return self

    def predict(self, X):
        return self.result_.predict(X)


def _time(make, X, repeats):
    make().fit(X)  # warm-up
    seconds, fitted = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        fitted = make().fit(X)
        seconds.append(time.perf_counter() - start)
    return statistics.median(seconds), fitted


def run_case(name: str, X: np.ndarray, n_components: int, repeats: int) -> Result:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sk_seconds, sk = _time(
            lambda: SklearnBGMM(n_components=n_components, random_state=0), X, repeats
        )
        bm_seconds, ours = _time(
            lambda: BayesianGaussianMixture(n_components=n_components, random_state=0),
            X,
            repeats,
        )
        native_seconds, native = _time(lambda: _Native(n_components), X, repeats)
        interface_seconds, interface = _time(lambda: _Interface(n_components), X, repeats)
    settings = interface.result_.settings
    return Result(
        name,
        sk_seconds,
        bm_seconds,
        sk.n_iter_,
        ours.n_iter_,
        bool(sk.converged_),
        bool(ours.converged_),
        adjusted_rand_score(sk.predict(X), ours.predict(X)),
        native_seconds,
        native.result_.n_iter,
        adjusted_rand_score(sk.predict(X), native.predict(X)),
        interface_seconds,
        adjusted_rand_score(sk.predict(X), interface.predict(X)),
        settings["n_init"] - settings["n_repeated_starts"],
    )


@dataclass
class CpuResult:
    case: str
    rounds: int
    sklearn_ms: float
    same_start_ms: float
    own_start_ms: float
    same_start_ari: float
    own_start_ari: float
    own_start_iter: int
    sklearn_iter: int

    @property
    def same_start_ratio(self) -> float:
        return self.sklearn_ms / self.same_start_ms

    @property
    def own_start_ratio(self) -> float:
        return self.sklearn_ms / self.own_start_ms


def run_cpu_case(name: str, X: np.ndarray, n_components: int, rounds: int) -> CpuResult:
    """Interleaved CPU times of one fit each (module docstring, ``--cpu``)."""
    makers = (
        lambda: SklearnBGMM(n_components=n_components, random_state=0),
        lambda: BayesianGaussianMixture(n_components=n_components, random_state=0),
        lambda: _Native(n_components),
    )
    seconds: list[list[float]] = [[] for _ in makers]
    fitted = [make().fit(X) for make in makers]  # warm-up (and compiles)
    for _ in range(rounds):
        for i, make in enumerate(makers):
            start = time.process_time()
            fitted[i] = make().fit(X)
            seconds[i].append(time.process_time() - start)
    ms = [1e3 * statistics.median(s) for s in seconds]
    reference = fitted[0].predict(X)
    return CpuResult(
        name,
        rounds,
        *ms,
        adjusted_rand_score(reference, fitted[1].predict(X)),
        adjusted_rand_score(reference, fitted[2].predict(X)),
        fitted[2].result_.n_iter,
        fitted[0].n_iter_,
    )


def main_cpu(cases, rounds: int | None) -> list[CpuResult]:
    """The ``--cpu`` table (one thread for everything)."""
    import numba
    from threadpoolctl import threadpool_limits

    numba.set_num_threads(1)
    results = []
    with threadpool_limits(limits=1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for name, X, k in cases:
            n_rounds = rounds if rounds is not None else (41 if len(X) < 10_000 else 9)
            results.append(run_cpu_case(name, X, k, n_rounds))
    print(
        f"{'case':<26} {'rounds':>6} {'sklearn ms':>10} {'same start ms':>13} {'ratio':>6} "
        f"{'own start ms':>12} {'ratio':>6} {'ARI same/own':>13} {'iter sk/own':>11}"
    )
    for r in results:
        print(
            f"{r.case:<26} {r.rounds:>6} {r.sklearn_ms:>10.3f} {r.same_start_ms:>13.3f} "
            f"{r.same_start_ratio:>6.2f} {r.own_start_ms:>12.3f} {r.own_start_ratio:>6.2f} "
            f"{r.same_start_ari:>6.3f}/{r.own_start_ari:<6.3f} "
            f"{r.sklearn_iter:>5}/{r.own_start_iter:<5}"
        )
    return results


def main(argv: list[str] | None = None) -> list[Result] | list[CpuResult]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--quick", action="store_true", help="2,000 simulated rows, 1 repeat")
    parser.add_argument("--cpu", action="store_true", help="interleaved CPU times, one thread")
    parser.add_argument("--cpu-repeats", type=int, default=None, help="rounds of --cpu")
    parser.add_argument("--only", choices=("faithful", "simulated"), default=None)
    args = parser.parse_args(argv)
    rows, repeats = (2_000, 1) if args.quick else (args.rows, args.repeats)
    cases = [
        ("faithful 272x2 K=2", bm.datasets.load_faithful().to_numpy(dtype=float), 2),
        (f"simulated {rows}x16 K=8", simulate(rows), 8),
    ]
    if args.only is not None:
        cases = [case for case in cases if case[0].startswith(args.only)]
    if args.cpu:
        return main_cpu(cases, 1 if args.quick else args.cpu_repeats)
    results = [run_case(name, X, k, repeats) for name, X, k in cases]
    header = (
        f"{'case':<26} {'sklearn s':>10} {'bayesmix s':>11} {'sklearn/bayesmix':>17} "
        f"{'iter sk/bm':>11} {'converged sk/bm':>16} {'ARI':>6}"
    )
    print(header)
    for r in results:
        print(
            f"{r.case:<26} {r.sklearn_seconds:>10.3f} {r.bayesmix_seconds:>11.4f} "
            f"{r.ratio:>17.1f} {r.sklearn_iter:>5}/{r.bayesmix_iter:<5} "
            f"{str(r.sklearn_converged):>7}/{str(r.bayesmix_converged):<8} {r.ari:>6.3f}"
        )
    print("\nfit_vb with bayesmix's default start (init='kmeans'), one run:")
    for r in results:
        print(
            f"{r.case:<26} {r.native_seconds:>10.4f} s  sklearn/bayesmix {r.native_ratio:>6.1f}  "
            f"iterations {r.native_iter:>4}  ARI with sklearn {r.native_ari:.3f}"
        )
    print("\nGaussianMixture(K).fit(X, method='vb'), all defaults (5 starts, tol 1e-6, draws):")
    for r in results:
        print(
            f"{r.case:<26} {r.interface_seconds:>10.4f} s  sklearn/bayesmix "
            f"{r.interface_ratio:>6.1f}  VB runs made {r.interface_runs}  "
            f"ARI with sklearn {r.interface_ari:.3f}"
        )
    return results


if __name__ == "__main__":
    main()
