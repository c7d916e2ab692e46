"""EM per iteration of the component families against the Gaussian kernels (issue 17).

Targets: Poisson and negative binomial within 2x of the Gaussian ``diag`` EM iteration on
the same ``N x D x K``; Student-t within 1.5x of the Gaussian ``full`` iteration. Data:
counts simulated from a ``K``-component negative binomial mixture (the Gaussian and the
Student-t fit them as real numbers). Each fit runs ``--iterations`` EM iterations (default
20 at 100000 rows, 2e6 / N below) with
``tol=0`` from one start; a one-iteration fit is subtracted, so the figure is the cost of
an iteration without the start. Fits are interleaved (reference, family, reference, ...)
after a warm-up, and medians of ``--repeats`` rounds are printed with the ratio family /
reference (the median of the rounds' ratios): wall-clock, and CPU time of the process
(all threads; the same threads for both: numba's ``NUMBA_NUM_THREADS``, one BLAS
thread in the family loop). On a shared machine the CPU figure is the steadier one: a
thread that waits for a core costs wall-clock time, not CPU time.

Run: ``python -m benchmarks.families`` or ``python -m benchmarks.families --quick``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np

import bayesmix as bm

CASES = [(100_000, 16, 8), (20_000, 10, 4)]
QUICK_CASES = [(2_000, 3, 3)]
# family name -> (Gaussian covariance type it is compared with, target ratio)
TARGETS = {"poisson": ("diag", 2.0), "negative_binomial": ("diag", 2.0), "student_t": ("full", 1.5)}


def simulate(n_obs: int, n_features: int, n_components: int, seed: int = 0) -> np.ndarray:
    """Overdispersed counts: a negative binomial mixture with means spread over 1..30 and
    dispersions over 2..20 (variance 1.05-1.5 times a Poisson's at the middle mean)."""
    rng = np.random.default_rng(seed)
    means = rng.uniform(1.0, 30.0, (n_components, n_features))
    alpha = rng.uniform(2.0, 20.0, (n_components, n_features))
    z = rng.integers(n_components, size=n_obs)
    return rng.negative_binomial(alpha[z], alpha[z] / (alpha[z] + means[z])).astype(float)


def seconds_per_iteration(model, X: np.ndarray, iterations: int, **options) -> float:
    """Wall-clock seconds of one EM iteration (:func:`per_iteration`)."""
    return per_iteration(model, X, iterations, **options)[0]


def per_iteration(model, X: np.ndarray, iterations: int, **options) -> tuple[float, float]:
    """Wall-clock and process CPU seconds of one EM iteration: an ``iterations``-long fit
    minus a one-iteration fit, divided by the iterations they differ by (a fit whose
    objective stops changing in the last bit stops early even at ``tol=0``)."""

    def timed(max_iter: int) -> tuple[float, float, int]:
        wall, cpu = time.perf_counter(), time.process_time()
        result = model.fit(X, n_init=1, max_iter=max_iter, tol=0.0, random_state=0, **options)
        return time.perf_counter() - wall, time.process_time() - cpu, result.n_iter

    (long, long_cpu, long_iter), (short, short_cpu, short_iter) = (
        timed(iterations + 1),
        timed(1),
    )
    steps = max(long_iter - short_iter, 1)
    return (long - short) / steps, (long_cpu - short_cpu) / steps


def available_families(names=None) -> dict[str, object]:
    """The benchmarked families this bayesmix has (``names``: only these), constructed
    with their defaults."""
    return {
        name: family()
        for name, family in bm.families.FAMILIES.items()
        if name in TARGETS and (names is None or name in names)
    }


def iterations_for(n_obs: int) -> int:
    """EM iterations per timed fit: 20 at 100000 rows, more for fewer rows, so the
    iterations outweigh the start (k-means) whose noise the subtraction leaves."""
    return max(20, 2_000_000 // max(n_obs, 1))


def run(cases, iterations: int | None, repeats: int, families=None) -> list[dict]:
    rows = []
    families = available_families(families)
    for n_obs, n_features, n_components in cases:
        X = simulate(n_obs, n_features, n_components)
        n_iter = iterations_for(n_obs) if iterations is None else iterations
        for name, family in families.items():
            covariance_type, target = TARGETS[name]
            reference = bm.GaussianMixture(n_components, covariance_type)
            mixture = bm.Mixture(n_components, family)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # tol=0 never converges, by design
                per_iteration(reference, X, 2, init="kmeans++")  # warm-up (numba)
                per_iteration(mixture, X, 2)
                pairs = [
                    (
                        per_iteration(reference, X, n_iter, init="kmeans++"),
                        per_iteration(mixture, X, n_iter),
                    )
                    for _ in range(repeats)
                ]
            ref = statistics.median(p[0][0] for p in pairs)
            fam = statistics.median(p[1][0] for p in pairs)
            ratio = statistics.median(p[1][0] / p[0][0] for p in pairs)
            cpu_ratio = statistics.median(p[1][1] / p[0][1] for p in pairs)
            rows.append(
                {
                    "case": f"{n_obs} x {n_features}, K={n_components}",
                    "family": name,
                    "reference": f"gaussian {covariance_type}",
                    "reference_ms": 1e3 * ref,
                    "family_ms": 1e3 * fam,
                    "ratio": ratio,
                    "reference_cpu_ms": 1e3 * statistics.median(p[0][1] for p in pairs),
                    "family_cpu_ms": 1e3 * statistics.median(p[1][1] for p in pairs),
                    "cpu_ratio": cpu_ratio,
                    "target": target,
                    "meets": ratio <= target,
                }
            )
    return rows


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one small case, few repeats")
    parser.add_argument(
        "--iterations", type=int, default=None, help="default: 2e6 / N, at least 20"
    )
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--families", nargs="*", choices=sorted(TARGETS), help="default: all")
    parser.add_argument(
        "--case",
        type=int,
        nargs=3,
        action="append",
        metavar=("N", "D", "K"),
        help="N D K (repeatable; default: the cases of the issue's record)",
    )
    args = parser.parse_args(argv)
    cases = QUICK_CASES if args.quick else (args.case or CASES)
    repeats = 2 if args.quick else args.repeats
    iterations = 10 if args.quick and args.iterations is None else args.iterations
    rows = run(cases, iterations, repeats, args.families)
    print(
        f"{'case':<22} {'family':<18} {'reference':<15} {'ref ms':>8} {'fam ms':>8} "
        f"{'ratio':>6} {'ref cpu':>8} {'fam cpu':>8} {'cpu ratio':>9} {'target':>6}"
    )
    for row in rows:
        print(
            f"{row['case']:<22} {row['family']:<18} {row['reference']:<15} "
            f"{row['reference_ms']:8.2f} {row['family_ms']:8.2f} {row['ratio']:6.2f} "
            f"{row['reference_cpu_ms']:8.2f} {row['family_cpu_ms']:8.2f} "
            f"{row['cpu_ratio']:9.2f} {row['target']:6.1f}{'' if row['meets'] else '  MISS'}"
        )
    return rows


if __name__ == "__main__":
    main()
