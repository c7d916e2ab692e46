"""EM per iteration of the latent class families against StepMix.

Target: at least 10x StepMix's EM iteration on 100000 rows x 20 binary items, K=5
(``Bernoulli()`` against ``measurement="binary"``), and on mixed data of the same size
(``--mixed``: 5 continuous columns, 10 binary items and 5 categorical items of 4
categories; ``Independent({...: Normal(), ...: Bernoulli(), ...: Categorical()})``
against StepMix's nested ``gaussian_diag`` + ``binary`` + ``categorical`` measurement).
Data: a 5-class model with random parameters. Both run from one random start the same
number of EM iterations: bayesmix the iteration ``Mixture.fit`` runs (the E-step of
``block_estep``: the family's fused pass when it has one; its M-step, the weights'
step), StepMix its ``_e_step`` and ``_m_step`` (the loop of its ``em``). Their
log-likelihood traces are compared (they agree to rounding), and ``--repeats`` rounds,
interleaved after a warm-up (each loop after a rest of ``SETTLE`` seconds), give the
median seconds per iteration, wall-clock and process CPU (all threads), the median of the
rounds' ratios StepMix / bayesmix, the same after the first iteration (one-off
preparation excluded) and the ratio of the fastest rounds.

Run: ``python -m benchmarks.latent_class [--mixed] [--quick]``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
from threadpoolctl import threadpool_limits

import bayesmix as bm
from bayesmix.inference.em.family import block_estep, weights_step

CASE = (100_000, 20, 5)
QUICK_CASE = (5_000, 8, 3)
TARGET = 10.0
#: seconds of rest before each timed loop: the other tool's idle threads (OpenBLAS's
#: spin before they sleep) would otherwise share the cores with it
SETTLE = 0.5
#: the mixed data's columns: continuous, binary, categorical (of ``CATEGORIES``)
MIXED_COLUMNS = (5, 10, 5)
QUICK_MIXED_COLUMNS = (2, 4, 2)
CATEGORIES = 4


@dataclass
class Case:
    """One comparison: the data, bayesmix's family and start (``weights`` included),
    StepMix's measurement and how its measurement parameters take the same start."""

    label: str
    X: np.ndarray
    family: bm.families.ComponentFamily
    start: dict[str, np.ndarray]
    measurement: Any
    set_start: Callable[[dict[str, Any]], None]


def simulate(n_obs: int, n_features: int, n_components: int, seed: int = 0) -> np.ndarray:
    """Binary items of a latent class model: class sizes from Dirichlet(5), item
    probabilities uniform on (0.05, 0.95)."""
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(n_components, 5.0))
    p = rng.uniform(0.05, 0.95, (n_components, n_features))
    z = rng.choice(n_components, size=n_obs, p=weights)
    return (rng.uniform(size=(n_obs, n_features)) < p[z]).astype(float)


def simulate_mixed(
    n_obs: int, columns: tuple[int, int, int], n_components: int, seed: int = 0
) -> np.ndarray:
    """Continuous, binary and categorical columns (in that order) of a ``n_components``
    class model: class sizes from Dirichlet(5); Normal means uniform on (-3, 3), sds on
    (0.5, 2); item probabilities uniform on (0.05, 0.95); category probabilities from
    Dirichlet(1)."""
    n_continuous, n_binary, n_categorical = columns
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(n_components, 5.0))
    means = rng.uniform(-3.0, 3.0, (n_components, n_continuous))
    sds = rng.uniform(0.5, 2.0, (n_components, n_continuous))
    p = rng.uniform(0.05, 0.95, (n_components, n_binary))
    table = rng.dirichlet(np.ones(CATEGORIES), size=(n_components, n_categorical))
    z = rng.choice(n_components, size=n_obs, p=weights)
    continuous = rng.normal(means[z], sds[z])
    binary = rng.uniform(size=(n_obs, n_binary)) < p[z]
    cumulative = np.cumsum(table[z], axis=-1)[..., :-1]
    codes = (rng.uniform(size=(n_obs, n_categorical))[..., None] >= cumulative).sum(axis=-1)
    return np.column_stack([continuous, binary, codes]).astype(float)


def binary_case(n_obs: int, n_features: int, n_components: int) -> Case:
    """``Bernoulli()`` against StepMix's ``binary`` measurement, from random weights and
    item probabilities uniform on (0.2, 0.8)."""
    rng = np.random.default_rng(1)
    weights = rng.dirichlet(np.full(n_components, 5.0))
    p = rng.uniform(0.2, 0.8, (n_components, n_features))

    def set_start(measurement: dict[str, Any]) -> None:
        measurement["pis"] = p.copy()

    return Case(
        f"{n_obs} x {n_features} binary, K={n_components}",
        simulate(n_obs, n_features, n_components),
        bm.families.Bernoulli(),
        {"probabilities": p, "weights": weights},
        "binary",
        set_start,
    )


def mixed_case(n_obs: int, columns: tuple[int, int, int], n_components: int) -> Case:
    """``Independent`` of Normal, Bernoulli and Categorical blocks against StepMix's
    nested ``gaussian_diag`` (``reg_covar=0``), ``binary`` and ``categorical``
    measurement, from random weights, means (Normal(0, 1.5)), variances (uniform on
    (0.5, 2)), item probabilities (uniform on (0.2, 0.8)) and category probabilities
    (Dirichlet(3))."""
    n_continuous, n_binary, n_categorical = columns
    X = simulate_mixed(n_obs, columns, n_components)
    blocks = np.split(np.arange(X.shape[1]), np.cumsum(columns)[:-1])
    family = bm.families.Independent(
        {
            tuple(int(d) for d in block): family
            for block, family in zip(
                blocks,
                (bm.families.Normal(), bm.families.Bernoulli(), bm.families.Categorical()),
                strict=True,
            )
        }
    ).for_data(X)
    rng = np.random.default_rng(1)
    shape = (n_components, n_continuous)
    start = {
        "normal_means": rng.normal(0.0, 1.5, shape),
        "normal_variances": rng.uniform(0.5, 2.0, shape),
        "bernoulli_probabilities": rng.uniform(0.2, 0.8, (n_components, n_binary)),
        "categorical_probabilities": rng.dirichlet(
            np.full(CATEGORIES, 3.0), size=(n_components, n_categorical)
        ),
        "weights": rng.dirichlet(np.full(n_components, 5.0)),
    }
    measurement = {
        "cont": {"model": "gaussian_diag", "n_columns": n_continuous, "reg_covar": 0.0},
        "bin": {"model": "binary", "n_columns": n_binary},
        "cat": {"model": "categorical", "n_columns": n_categorical},
    }

    def set_start(params: dict[str, Any]) -> None:
        params["cont"] = {
            "means": start["normal_means"].copy(),
            "covariances": start["normal_variances"].copy(),
        }
        params["bin"]["pis"] = start["bernoulli_probabilities"].copy()
        table = start["categorical_probabilities"]
        params["cat"]["pis"] = table.reshape(n_components, -1).copy()

    label = (
        f"{n_obs} x ({n_continuous} continuous + {n_binary} binary + {n_categorical} "
        f"categorical of {CATEGORIES}), K={n_components}"
    )
    return Case(label, X, family, start, measurement, set_start)


def bayesmix_loop(case: Case, iterations: int):
    """``iterations`` EM steps of the case's family from its start: the log-likelihood
    before each, wall and CPU seconds (the family's ``prepare`` included) and wall
    seconds after the first iteration (the designs the passes keep are built in it)."""
    X, family = case.X, case.family
    row_weights = np.ones(X.shape[0])
    wall, cpu = time.perf_counter(), time.process_time()
    prepared = family.prepare(X)
    params = dict(case.start)
    trace = []
    with threadpool_limits(1, "blas"):  # as Mixture.fit's loop
        for _ in range(iterations):
            log_lik, mass, stats = block_estep(
                family, X, row_weights, prepared, np.log(params["weights"]), params
            )
            trace.append(log_lik)
            params = {
                **family.maximise(mass, stats, None, params, prepared),
                "weights": weights_step(mass, None),
            }
            if len(trace) == 1:
                first = time.perf_counter()
    return _timed(trace, wall, cpu, first)


def stepmix_loop(case: Case, iterations: int):
    """The same steps by StepMix's measurement model."""
    from stepmix import StepMix

    X, weights = case.X, case.start["weights"]
    model = StepMix(len(weights), measurement=case.measurement, n_init=1, max_iter=1)
    model.set_params(progress_bar=0, verbose=0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X[:2000])  # StepMix sets parameters only on a fitted model
    params = model.get_parameters()
    params["weights"] = weights.copy()
    case.set_start(params["measurement"])
    model.set_parameters(params)
    trace = []
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(iterations):
        average, log_resp = model._e_step(X)
        trace.append(average * X.shape[0])
        model._m_step(X, np.exp(log_resp))
        if len(trace) == 1:
            first = time.perf_counter()
    return _timed(trace, wall, cpu, first)


def _timed(trace: list[float], wall: float, cpu: float, first: float):
    """The trace, and the loop's wall and CPU seconds since ``wall`` and ``cpu`` and its
    wall seconds since ``first`` (the end of the first iteration: one-off preparation
    excluded)."""
    now = time.perf_counter()
    return np.array(trace), now - wall, time.process_time() - cpu, now - first


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a small case instead")
    parser.add_argument("--mixed", action="store_true", help="mixed data instead of binary")
    parser.add_argument("--iterations", type=int, default=10, help="at least 2")
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    n_obs, n_features, n_components = QUICK_CASE if args.quick else CASE
    if args.mixed:
        columns = QUICK_MIXED_COLUMNS if args.quick else MIXED_COLUMNS
        case = mixed_case(n_obs, columns, n_components)
    else:
        case = binary_case(n_obs, n_features, n_components)
    bayesmix_loop(case, 2)  # warm-up: numba's cache, BLAS
    stepmix_loop(case, 2)
    rounds = []
    for _ in range(args.repeats):
        time.sleep(SETTLE)
        ours = bayesmix_loop(case, args.iterations)
        time.sleep(SETTLE)
        theirs = stepmix_loop(case, args.iterations)
        rounds.append((ours, theirs))
    difference = max(float(np.max(np.abs(a[0] - b[0]) / np.abs(b[0]))) for a, b in rounds)
    ratios = [b[1] / a[1] for a, b in rounds]
    per = {
        "bayesmix_wall": statistics.median(a[1] for a, _ in rounds) / args.iterations,
        "bayesmix_cpu": statistics.median(a[2] for a, _ in rounds) / args.iterations,
        "stepmix_wall": statistics.median(b[1] for _, b in rounds) / args.iterations,
        "stepmix_cpu": statistics.median(b[2] for _, b in rounds) / args.iterations,
        "ratio_wall": statistics.median(ratios),
        "ratio_wall_min": min(ratios),
        "ratio_wall_max": max(ratios),
        "ratio_cpu": statistics.median(b[2] / a[2] for a, b in rounds),
        "ratio_best": min(b[1] for _, b in rounds) / min(a[1] for a, _ in rounds),
        "ratio_best_steady": min(b[3] for _, b in rounds) / min(a[3] for a, _ in rounds),
        "bayesmix_steady": statistics.median(a[3] for a, _ in rounds) / (args.iterations - 1),
        "stepmix_steady": statistics.median(b[3] for _, b in rounds) / (args.iterations - 1),
        "ratio_steady": statistics.median(b[3] / a[3] for a, b in rounds),
        "log_likelihood_rel_diff": difference,
    }
    print(f"{case.label}: seconds per EM iteration (median)")
    print(f"  bayesmix  wall {per['bayesmix_wall']:.4f}  cpu {per['bayesmix_cpu']:.4f}")
    print(f"  StepMix   wall {per['stepmix_wall']:.4f}  cpu {per['stepmix_cpu']:.4f}")
    print(
        f"  StepMix/bayesmix  wall {per['ratio_wall']:.1f}x ({min(ratios):.1f}-"
        f"{max(ratios):.1f}x)  cpu {per['ratio_cpu']:.1f}x (target {TARGET:g}x); "
        f"log-likelihoods agree to {difference:.1e} relative"
    )
    print(
        f"  after the first iteration (one-off preparation excluded): bayesmix wall "
        f"{per['bayesmix_steady']:.4f}, StepMix {per['stepmix_steady']:.4f}, "
        f"{per['ratio_steady']:.1f}x"
    )
    print(
        f"  fastest rounds' ratio: {per['ratio_best']:.1f}x, after the first iteration "
        f"{per['ratio_best_steady']:.1f}x"
    )
    return per


if __name__ == "__main__":
    main()
