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

Run: ``python -m benchmarks.family_vb [--repeats 3] [--skip-bayes]``.
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


def timed(fit, repeats):
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
    args = parser.parse_args()
    warnings.simplefilter("ignore")
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
