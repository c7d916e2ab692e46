"""Time to the optimum: SQUAREM-accelerated EM against plain EM and scikit-learn (issue 21).

For each case every method starts from the same parameters (k-means++ centres of
scikit-learn's ``kmeans_plusplus`` for the seed, equal weights, the covariances of the
nearest-centre partition) and runs at ``tol`` = 1e-8 ... 1e-11:

- ``plain``: ``GaussianMixture.fit(method="em", accelerate=False)``;
- ``squarem``: the default, ``accelerate=True``;
- ``sklearn``: ``sklearn.mixture.GaussianMixture(tol=tol, max_iter=100_000,
  reg_covar=1e-12)``, its own convergence rule (the change of the mean log-likelihood).

The optimum is each implementation's own fit at ``tol=1e-14`` from the same start
(bayesmix plain EM for plain and SQUAREM, scikit-learn for scikit-learn), so that the gap
measures how far a run stops short of where its iterations lead, not the two libraries'
different regularisation. Printed per case, method and tol: E-steps (bayesmix: the start's,
one per iteration, one per extrapolated point; scikit-learn: ``n_iter_ + 1``), the relative
gap ``(L* - L) / |L*|`` and the median seconds of ``--repeats`` timed fits after a warm-up;
then per case "to the optimum": the cheapest tol whose gap is at most 1e-10 (the issue's
criterion), its E-steps and seconds, and the ratios plain/SQUAREM (E-steps) and
scikit-learn/SQUAREM (seconds).

Run: ``python -m benchmarks.squarem [--repeats 3]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
from sklearn.cluster import kmeans_plusplus
from sklearn.datasets import load_iris
from sklearn.mixture import GaussianMixture as SkGaussianMixture

import bayesmix as bm

TOLS = (1e-8, 1e-9, 1e-10, 1e-11)
TARGET_GAP = 1e-10


def _overlapping() -> np.ndarray:
    rng = np.random.default_rng(1)
    return np.concatenate(
        [
            rng.normal(0.0, 1.0, (400, 3)),
            rng.normal(1.2, 1.0, (400, 3)),
            rng.normal([0.0, 2.0, 0.0], 1.3, (400, 3)),
        ]
    )


def cases() -> list[tuple[str, np.ndarray, int]]:
    faithful = bm.datasets.load_faithful().to_numpy()
    galaxies = bm.datasets.load_galaxies().to_numpy()
    return [
        ("faithful K=3", faithful, 3),
        ("faithful K=4", faithful, 4),
        ("galaxies K=4", galaxies, 4),
        ("galaxies K=5", galaxies, 5),
        ("galaxies K=6", galaxies, 6),
        ("iris K=3", load_iris().data, 3),
        ("overlapping 1200x3 K=3", _overlapping(), 3),
    ]


def start(X: np.ndarray, n_components: int, seed: int) -> dict[str, np.ndarray]:
    centres, _ = kmeans_plusplus(X, n_components, random_state=seed)
    labels = ((X[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
    ridge = 1e-3 * np.diag(np.atleast_1d(np.var(X, axis=0)))
    covariances = np.stack(
        [
            np.atleast_2d(np.cov(X[labels == k].T)) + ridge
            if (labels == k).sum() > X.shape[1]
            else np.atleast_2d(np.cov(X.T))
            for k in range(n_components)
        ]
    )
    return {
        "means": centres,
        "weights": np.full(n_components, 1.0 / n_components),
        "covariances": covariances,
    }


def fit_bayesmix(X, n_components, init, tol, accelerate):
    model = bm.GaussianMixture(n_components, covariance_type="full")
    result = model.fit(X, init=init, tol=tol, max_iter=100_000, accelerate=accelerate)
    e_steps = 1 + result.n_iter + result.settings["n_extrapolated"]
    return result.log_likelihood, e_steps


def fit_sklearn(X, n_components, init, tol):
    model = SkGaussianMixture(
        n_components,
        tol=tol,
        max_iter=100_000,
        reg_covar=1e-12,
        weights_init=init["weights"],
        means_init=init["means"],
        precisions_init=np.linalg.inv(init["covariances"]),
    ).fit(X)
    return model.score(X) * len(X), model.n_iter_ + 1


METHODS = {
    "plain": lambda X, K, init, tol: fit_bayesmix(X, K, init, tol, False),
    "squarem": lambda X, K, init, tol: fit_bayesmix(X, K, init, tol, True),
    "sklearn": fit_sklearn,
}


def timed(method, X, n_components, init, tol, repeats):
    method(X, n_components, init, tol)  # warm-up
    seconds = []
    for _ in range(repeats):
        begin = time.perf_counter()
        log_lik, e_steps = method(X, n_components, init, tol)
        seconds.append(time.perf_counter() - begin)
    return log_lik, e_steps, statistics.median(seconds)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    summary = []
    print("| case | method | tol | E-steps | gap (relative) | seconds |")
    print("| --- | --- | --- | --- | --- | --- |")
    for name, X, n_components in cases():
        init = start(X, n_components, args.seed)
        optimum = {
            "plain": fit_bayesmix(X, n_components, init, 1e-14, False)[0],
            "sklearn": fit_sklearn(X, n_components, init, 1e-14)[0],
        }
        optimum["squarem"] = optimum["plain"]
        best = {}
        for method_name, method in METHODS.items():
            for tol in TOLS:
                log_lik, e_steps, seconds = timed(method, X, n_components, init, tol, args.repeats)
                gap = (optimum[method_name] - log_lik) / abs(optimum[method_name])
                print(
                    f"| {name} | {method_name} | {tol:.0e} | {e_steps} | {gap:.1e} | "
                    f"{seconds:.4f} |"
                )
                if gap <= TARGET_GAP and method_name not in best:
                    best[method_name] = (tol, e_steps, seconds)
        summary.append((name, best))
    print()
    print(f"To the optimum (relative gap <= {TARGET_GAP:.0e}, the loosest tol that reaches it):")
    print()
    print(
        "| case | plain E-steps (s) | SQUAREM E-steps (s) | sklearn E-steps (s) | "
        "E-steps plain/SQUAREM | seconds sklearn/SQUAREM |"
    )
    print("| --- | --- | --- | --- | --- | --- |")
    for name, best in summary:
        cells = []
        for method_name in METHODS:
            if method_name in best:
                tol, e_steps, seconds = best[method_name]
                cells.append(f"{e_steps} ({seconds:.4f}, tol {tol:.0e})")
            else:
                cells.append("not reached")
        ratios = []
        for numerator, index in (("plain", 1), ("sklearn", 2)):
            if numerator in best and "squarem" in best:
                ratios.append(f"{best[numerator][index] / best['squarem'][index]:.1f}")
            else:
                ratios.append("-")
        print(f"| {name} | {' | '.join(cells)} | {' | '.join(ratios)} |")


if __name__ == "__main__":
    main()
