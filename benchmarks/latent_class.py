"""EM per iteration of the Bernoulli family against StepMix (latent class analysis).

Target: at least 10x StepMix's EM iteration on 100000 rows x 20 binary items, K=5.
Data: a 5-class latent class model with random item probabilities. Both run from one
random start (weights and item probabilities) the same number of EM iterations: bayesmix
the iteration ``Mixture.fit`` runs (the family's fused pass, its M-step, the weights'
step), StepMix its ``_e_step`` and ``_m_step`` (the loop of its ``em``). Their
log-likelihood traces are compared (they agree to rounding), and ``--repeats`` rounds,
interleaved after a warm-up, give the median seconds per iteration, wall-clock and
process CPU (all threads), and the median of the rounds' ratios StepMix / bayesmix.

Run: ``python -m benchmarks.latent_class`` or ``python -m benchmarks.latent_class --quick``.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import numpy as np
from threadpoolctl import threadpool_limits

import bayesmix as bm
from bayesmix.inference.em.family import weights_step

CASE = (100_000, 20, 5)
QUICK_CASE = (5_000, 8, 3)
TARGET = 10.0


def simulate(n_obs: int, n_features: int, n_components: int, seed: int = 0) -> np.ndarray:
    """Binary items of a latent class model: class sizes from Dirichlet(5), item
    probabilities uniform on (0.05, 0.95)."""
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.full(n_components, 5.0))
    p = rng.uniform(0.05, 0.95, (n_components, n_features))
    z = rng.choice(n_components, size=n_obs, p=weights)
    return (rng.uniform(size=(n_obs, n_features)) < p[z]).astype(float)


def random_start(n_features: int, n_components: int, seed: int = 1):
    rng = np.random.default_rng(seed)
    return rng.dirichlet(np.full(n_components, 5.0)), rng.uniform(
        0.2, 0.8, (n_components, n_features)
    )


def bayesmix_loop(X: np.ndarray, weights: np.ndarray, p: np.ndarray, iterations: int):
    """``iterations`` EM steps of the Bernoulli family from ``(weights, p)``: the
    log-likelihood before each, and wall and CPU seconds."""
    family = bm.families.Bernoulli()
    row_weights = np.ones(X.shape[0])
    wall, cpu = time.perf_counter(), time.process_time()
    prepared = family.prepare(X)
    params = {"probabilities": p, "weights": weights}
    trace = []
    with threadpool_limits(1, "blas"):  # as Mixture.fit's loop
        for _ in range(iterations):
            log_lik, mass, stats = family.expectation(
                X, row_weights, np.log(params["weights"]), params, prepared
            )
            trace.append(log_lik)
            params = {
                **family.maximise(mass, stats, None, params, prepared),
                "weights": weights_step(mass, None),
            }
    return np.array(trace), time.perf_counter() - wall, time.process_time() - cpu


def stepmix_loop(X: np.ndarray, weights: np.ndarray, p: np.ndarray, iterations: int):
    """The same steps by StepMix's ``binary`` measurement model."""
    from stepmix import StepMix

    model = StepMix(n_components=len(weights), measurement="binary", n_init=1, max_iter=1)
    model.set_params(progress_bar=0, verbose=0, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X[:1000])
    params = model.get_parameters()
    params["weights"], params["measurement"]["pis"] = weights.copy(), p.copy()
    model.set_parameters(params)
    trace = []
    wall, cpu = time.perf_counter(), time.process_time()
    for _ in range(iterations):
        average, log_resp = model._e_step(X)
        trace.append(average * X.shape[0])
        model._m_step(X, np.exp(log_resp))
    return np.array(trace), time.perf_counter() - wall, time.process_time() - cpu


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_CASE} instead of {CASE}")
    parser.add_argument("--iterations", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    n_obs, n_features, n_components = QUICK_CASE if args.quick else CASE
    X = simulate(n_obs, n_features, n_components)
    weights, p = random_start(n_features, n_components)
    bayesmix_loop(X, weights, p, 2)  # warm-up: numba's cache, BLAS
    stepmix_loop(X, weights, p, 2)
    rounds = []
    for _ in range(args.repeats):
        ours = bayesmix_loop(X, weights, p, args.iterations)
        theirs = stepmix_loop(X, weights, p, args.iterations)
        rounds.append((ours, theirs))
    difference = max(float(np.max(np.abs(a[0] - b[0]) / np.abs(b[0]))) for a, b in rounds)
    per = {
        "bayesmix_wall": statistics.median(a[1] for a, _ in rounds) / args.iterations,
        "bayesmix_cpu": statistics.median(a[2] for a, _ in rounds) / args.iterations,
        "stepmix_wall": statistics.median(b[1] for _, b in rounds) / args.iterations,
        "stepmix_cpu": statistics.median(b[2] for _, b in rounds) / args.iterations,
        "ratio_wall": statistics.median(b[1] / a[1] for a, b in rounds),
        "ratio_cpu": statistics.median(b[2] / a[2] for a, b in rounds),
        "log_likelihood_rel_diff": difference,
    }
    print(f"{n_obs} x {n_features} binary, K={n_components}: seconds per EM iteration (median)")
    print(f"  bayesmix  wall {per['bayesmix_wall']:.4f}  cpu {per['bayesmix_cpu']:.4f}")
    print(f"  StepMix   wall {per['stepmix_wall']:.4f}  cpu {per['stepmix_cpu']:.4f}")
    print(
        f"  StepMix/bayesmix  wall {per['ratio_wall']:.1f}x  cpu {per['ratio_cpu']:.1f}x "
        f"(target {TARGET:g}x); log-likelihoods agree to {difference:.1e} relative"
    )
    return per


if __name__ == "__main__":
    main()
