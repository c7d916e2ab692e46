"""Time of one compiled M-step of each matrix-constrained covariance model (VEE, VEV, EEV,
EVV, EVE, VVE), called from compiled code as the EM loop calls it (no dispatch cost).

The statistics are those of random soft responsibilities (Dirichlet(0.3) rows, seed 0) on
iris (150 x 4) or the Swiss bank notes (200 x 6), K = 3 and 6; the inner iterations start
from the model's own M-step of the same statistics (as late in EM, where the previous
covariances are near the new ones), with bayesmix's inner stopping rule. Medians of 5 CPU
timings (``time.process_time``) of 2,000 calls, after a warm-up call.

Run: ``python -m benchmarks.constrained_mstep [--data iris,banknote]`` (one thread:
``NUMBA_NUM_THREADS=1``).
"""

from __future__ import annotations

import argparse
import statistics
import time

import numba as nb
import numpy as np

from bayesmix.families.gaussian import constrained_kernels
from bayesmix.families.gaussian.covariance import INNER_MAX_ITER, INNER_TOL
from benchmarks.mclust_table import load

MATRIX_MODELS = ("VEE", "VEV", "EEV", "EVV", "EVE", "VVE")
N_CALLS = 2000


@nb.njit
def _repeat(n_calls, code, mass, sum_x, sum_xx, means, reg, start, tol, max_iter):
    total = 0.0
    for _ in range(n_calls):
        cov = constrained_kernels.matrix_m_step(
            code, mass, sum_x, sum_xx, means, False, 0.0, sum_xx, reg, start, True, tol, max_iter
        )[0]
        total += cov[0, 0, 0]
    return total


def microseconds(X: np.ndarray, n_components: int, model: str) -> float:
    """Median CPU microseconds of one M-step of ``model`` on statistics of ``X``."""
    rng = np.random.default_rng(0)
    resp = rng.dirichlet(np.full(n_components, 0.3), size=len(X))
    mass = resp.sum(axis=0)
    sum_x = resp.T @ X
    sum_xx = np.einsum("nk,ni,nj->kij", resp, X, X)
    means = sum_x / mass[:, None]
    reg = np.full(X.shape[1], 1e-6)
    code = constrained_kernels.MODELS.index(model)
    start = constrained_kernels.matrix_m_step(
        code, mass, sum_x, sum_xx, means, False, 0.0, sum_xx, reg, sum_xx, False, 1e-10, 1000
    )[0]
    args = (code, mass, sum_x, sum_xx, means, reg, start, INNER_TOL, INNER_MAX_ITER)
    _repeat(1, *args)
    timings = []
    for _ in range(5):
        begin = time.process_time()
        _repeat(N_CALLS, *args)
        timings.append((time.process_time() - begin) / N_CALLS * 1e6)
    return statistics.median(timings)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="iris,banknote")
    args = parser.parse_args(argv)
    for name in args.data.split(","):
        X = load(name).to_numpy(dtype=float)
        for n_components in (3, 6):
            row = "  ".join(
                f"{model} {microseconds(X, n_components, model):6.1f}" for model in MATRIX_MODELS
            )
            print(f"{name} K={n_components} (us per M-step): {row}", flush=True)


if __name__ == "__main__":
    main()
