"""Dirichlet-process mixtures of the non-Gaussian families by NUTS:
``Mixture(K, family).fit(X, method="nuts", weight_prior="dirichlet_process")``.

Cases: two Poisson clusters (rates 2 and 12, 300 rows) and three latent classes of 6
binary items (500 rows), truncation K=5, the DP's default ``alpha = 1`` and a declared
``alpha = 0.1`` (``priors={"weight_concentration": 0.1}``). Every fit: ``--chains``
chains, ``--tune`` tuning steps and ``--draws`` draws (``--target-accept``: default
0.9 under the sticks), through the family's hand-written
log density on nutpie (no PyMC). The table gives, per case, the median seconds of the fit
(MAP-EM start and relabelling included), the divergent transitions (median, worst seed,
seeds with any), and the posterior of the number of occupied clusters
(:func:`bayesmix.n_clusters_posterior`) averaged over seeds. For the Poisson cases the
same posterior by a blocked Gibbs sampler of the same truncated model (Ishwaran & James
2001: conjugate updates of allocations, sticks and Gamma rates; 20,000 sweeps) is the
reference. The machine's load average is printed.

Run: ``PYTHONPATH=. python -m benchmarks.dp_nuts_family [--seeds 3] [--cases poisson]
[--alphas 1,0.1] [--target-accept 0.95]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import numpy as np

K = 5


def poisson_data(n: int = 300, seed: int = 0) -> np.ndarray:
    """Two Poisson clusters (rates 2 and 12), equally likely, ``(n, 1)``."""
    rng = np.random.default_rng(seed)
    z = rng.integers(0, 2, n)
    return rng.poisson(np.array([2.0, 12.0])[z]).astype(float)[:, None]


def binary_data(n: int = 500, seed: int = 0) -> np.ndarray:
    """Three latent classes of 6 binary items, ``(n, 6)``."""
    rng = np.random.default_rng(seed)
    items = np.array(
        [
            [0.9, 0.8, 0.9, 0.2, 0.1, 0.2],
            [0.1, 0.2, 0.1, 0.8, 0.9, 0.8],
            [0.9, 0.9, 0.1, 0.1, 0.9, 0.9],
        ]
    )
    z = rng.choice(3, size=n, p=[0.4, 0.35, 0.25])
    return (rng.random((n, 6)) < items[z]).astype(float)


def blocked_gibbs_clusters(x, n_components, alpha, shape, rate, iterations=6000, burn=1000, seed=1):
    """Posterior ``(K,)`` of the number of occupied components of the truncated DP
    mixture of Poissons (``K - 1`` sticks ``Beta(1, alpha)`` and the remainder, rates
    ``Gamma(shape, rate)``) by blocked Gibbs sampling (Ishwaran & James 2001), from 1-D
    counts ``x``."""
    rng = np.random.default_rng(seed)
    x = np.asarray(x, dtype=float).ravel()
    rates = np.quantile(x, np.linspace(0.1, 0.9, n_components)) + 0.5
    v = np.full(n_components - 1, 0.5)
    occupied = []
    for it in range(iterations):
        weights = np.concatenate([v, [1.0]]) * np.concatenate([[1.0], np.cumprod(1.0 - v)])
        joint = np.log(np.maximum(weights, 1e-300)) + x[:, None] * np.log(rates) - rates
        p = np.exp(joint - joint.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        z = (p.cumsum(axis=1) > rng.random((x.size, 1))).argmax(axis=1)
        n = np.bincount(z, minlength=n_components)
        later = n[::-1].cumsum()[::-1]
        v = rng.beta(1.0 + n[:-1], alpha + later[1:])
        rates = rng.gamma(shape + np.bincount(z, weights=x, minlength=n_components), 1 / (rate + n))
        if it >= burn:
            occupied.append(np.count_nonzero(n))
    return np.bincount(occupied, minlength=n_components + 1)[1:] / len(occupied)


def cases():
    import bayesmix as bm

    return {
        "poisson": (bm.families.Poisson(), poisson_data()),
        "bernoulli": (bm.families.Bernoulli(), binary_data()),
    }


def run(name, family, X, alpha, seeds, chains, tune, draws, target_accept=None) -> dict:
    import bayesmix as bm

    priors = None if alpha == 1.0 else {"weight_concentration": alpha}
    model = bm.Mixture(K, family, priors)
    seconds, divergences, clusters = [], [], []
    for seed in seeds:
        started = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = model.fit(
                X,
                method="nuts",
                weight_prior="dirichlet_process",
                chains=chains,
                tune=tune,
                draws=draws,
                target_accept=target_accept,
                random_state=seed,
                progressbar=False,
            )
            seconds.append(time.perf_counter() - started)
            clusters.append(bm.n_clusters_posterior(fit, random_state=0).values)
        divergences.append(int(fit.sample_stats["diverging"].sum()))
    row = {
        "case": name,
        "alpha": alpha,
        "seconds": statistics.median(seconds),
        "divergences": statistics.median(divergences),
        "worst": max(divergences),
        "seeds_with": sum(d > 0 for d in divergences),
        "clusters": np.mean(clusters, axis=0),
    }
    if name == "poisson":
        resolved = model.resolve_priors(model.check_data(X))
        shape = float(resolved["rate_shape"][0])
        rate = shape / float(resolved["rate_mean"][0])
        row["gibbs"] = blocked_gibbs_clusters(X, K, alpha, shape, rate, iterations=21000)
    return row


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--tune", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--alphas", default="1,0.1")
    parser.add_argument("--target-accept", type=float, default=None)
    parser.add_argument("--cases", default="poisson,bernoulli")
    args = parser.parse_args(argv)
    seeds = list(range(args.seeds))
    print(f"load average before: {os.getloadavg()}")
    rows = []
    chosen = args.cases.split(",")
    for name, (family, X) in cases().items():
        if name not in chosen:
            continue
        for alpha in (float(a) for a in args.alphas.split(",")):
            options = (seeds, args.chains, args.tune, args.draws, args.target_accept)
            rows.append(run(name, family, X, alpha, *options))
            row = rows[-1]
            reference = " ".join(f"{p:.3f}" for p in row.get("gibbs", []))
            print(
                f"{name:10s} alpha={alpha:<4g} target_accept={args.target_accept} "
                f"{row['seconds']:6.1f} s  divergences median "
                f"{row['divergences']:g} worst {row['worst']} ({row['seeds_with']} of "
                f"{len(seeds)} seeds)  P(1..{K}) "
                + " ".join(f"{p:.3f}" for p in row["clusters"])
                + (f"  Gibbs {reference}" if reference else ""),
                flush=True,
            )
    print(f"load average after: {os.getloadavg()}")
    return rows


if __name__ == "__main__":
    main()
