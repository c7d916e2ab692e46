"""Dirichlet-process mixtures by NUTS: bayesmix's truncated stick-breaking prior against
the PyMC example gallery's model ("Dirichlet process mixtures for density estimation"),
on Old Faithful and galaxies.

The gallery's model, written here as the gallery writes it (1-D standardised waiting
times, ``K`` Beta sticks, a Gamma(1, 1) hyperprior on the concentration, Gamma
precisions and ``pm.NormalMixture``)::

    alpha ~ Gamma(1, 1); v_k ~ Beta(1, alpha); w_k = v_k prod_{j<k} (1 - v_j)
    tau_k ~ Gamma(1, 1); lambda_k ~ Gamma(10, 1); mu_k ~ Normal(0, 1 / (lambda_k tau_k))
    x ~ NormalMixture(w, mu, tau = lambda tau)

One change: PyMC 6's mixtures need weights that sum to one (else the log density is
``-inf``), so the gallery's ``w`` is renormalised over the ``K`` sticks (as scikit-learn's
``BayesianGaussianMixture`` and bayesmix's VB do). It is compiled once for nutpie
(``nutpie.compile_pymc_model``) and sampled with nutpie's defaults; the compile is not
in the seconds.

bayesmix: ``GaussianMixture(K, "full").fit(X, method="nuts",
weight_prior="dirichlet_process")`` with its defaults (``K - 1`` sticks ``Beta(1, 1)``
and the remainder, sampled in simplex coordinates through the hand-written log density
on nutpie; see :func:`bayesmix.inference.bayes.fit.weight_priors`), on the same 1-D
waiting times, on both columns and on galaxies (as the gallery's, standardised for
the gallery's model; in km/s for bayesmix, whose priors scale with the data). Its
seconds are the fit's (MAP-EM start included).

Every fit: 4 chains, 1000 tuning steps, 1000 draws; the table gives, per model, the
median over ``--seeds`` seeds of the divergent transitions (all 4 chains) and seconds,
the worst seed's divergences, the posterior mean number of occupied clusters
(allocations drawn per draw, :func:`bayesmix.n_clusters_posterior` for bayesmix; the same
draws computed from the gallery's parameters) and its r_hat across chains. The machine's
load average is printed: ratios in one run are what to compare.

Run: ``PYTHONPATH=. python -m benchmarks.dp_nuts [--seeds 3] [--components 8]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import warnings

import numpy as np

CHAINS, TUNE, DRAWS = 4, 1000, 1000


def gallery_model(x: np.ndarray, n_components: int):
    """The gallery's DP mixture of 1-D ``x`` (standardised), weights renormalised."""
    import pymc as pm
    import pytensor.tensor as pt

    coords = {"component": np.arange(n_components), "obs_id": np.arange(x.size)}
    with pm.Model(coords=coords) as model:
        alpha = pm.Gamma("alpha", 1.0, 1.0)
        beta = pm.Beta("beta", 1.0, alpha, dims="component")
        remaining = pt.concatenate([[1.0], pt.extra_ops.cumprod(1.0 - beta)[:-1]])
        sticks = beta * remaining
        w = pm.Deterministic("w", sticks / sticks.sum(), dims="component")
        tau = pm.Gamma("tau", 1.0, 1.0, dims="component")
        lambda_ = pm.Gamma("lambda_", 10.0, 1.0, dims="component")
        pm.Normal("mu", 0.0, tau=lambda_ * tau, dims="component")
        pm.NormalMixture("obs", w, model["mu"], tau=lambda_ * tau, observed=x, dims="obs_id")
    return model


def _occupied(weights, means, sds, x, rng) -> np.ndarray:
    """Occupied clusters per draw ``(chain, draw)``: allocations drawn from the
    memberships of 1-D Gaussian components."""
    chains, draws, K = weights.shape
    counts = np.empty((chains, draws), dtype=int)
    for c in range(chains):
        for d in range(draws):
            log_joint = (
                np.log(np.maximum(weights[c, d], 1e-300))
                - np.log(sds[c, d])
                - 0.5 * ((x[:, None] - means[c, d]) / sds[c, d]) ** 2
            )
            log_joint -= log_joint.max(axis=1, keepdims=True)
            resp = np.exp(log_joint)
            cumulative = np.cumsum(resp, axis=1)
            u = rng.uniform(size=x.size) * cumulative[:, -1]
            z = np.minimum((u[:, None] > cumulative).sum(axis=1), K - 1)
            counts[c, d] = np.unique(z).size
    return counts


def _rhat(counts: np.ndarray) -> float:
    import arviz as az
    import xarray as xr

    if np.ptp(counts) == 0:
        return 1.0
    return float(az.rhat(xr.DataArray(counts.astype(float), dims=("chain", "draw"))))


def run_gallery(x: np.ndarray, n_components: int, seeds: list[int]) -> list[dict]:
    import nutpie

    compiled = nutpie.compile_pymc_model(gallery_model(x, n_components))
    rows = []
    for seed in seeds:
        start = time.perf_counter()
        tree = nutpie.sample(
            compiled, chains=CHAINS, tune=TUNE, draws=DRAWS, seed=seed, progress_bar=False
        )
        seconds = time.perf_counter() - start
        post = tree["posterior"].dataset
        sds = 1.0 / np.sqrt(post["lambda_"].values * post["tau"].values)
        counts = _occupied(post["w"].values, post["mu"].values, sds, x, np.random.default_rng(seed))
        rows.append(
            dict(
                seconds=seconds,
                divergences=int(tree["sample_stats"].dataset["diverging"].sum()),
                clusters=float(counts.mean()),
                rhat=_rhat(counts),
            )
        )
    return rows


def run_bayesmix(X, n_components: int, seeds: list[int]) -> list[dict]:
    import bayesmix as bm

    rows = []
    for seed in seeds:
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = bm.GaussianMixture(n_components, "full").fit(
                X,
                method="nuts",
                weight_prior="dirichlet_process",
                chains=CHAINS,
                tune=TUNE,
                draws=DRAWS,
                random_state=seed,
                progressbar=False,
            )
            clusters = bm.n_clusters_posterior(fit, random_state=seed)
        rows.append(
            dict(
                seconds=time.perf_counter() - start,
                divergences=int(fit.sample_stats["diverging"].sum()),
                clusters=clusters.attrs["mean"],
                rhat=clusters.attrs["r_hat"],
            )
        )
    return rows


def summarise(name: str, rows: list[dict]) -> dict:
    return dict(
        model=name,
        divergences=statistics.median(r["divergences"] for r in rows),
        worst=max(r["divergences"] for r in rows),
        seconds=statistics.median(r["seconds"] for r in rows),
        clusters=statistics.median(r["clusters"] for r in rows),
        rhat=statistics.median(r["rhat"] for r in rows),
    )


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--components", type=int, default=8)
    args = parser.parse_args(argv)
    import bayesmix as bm

    seeds = list(range(args.seeds))
    K = args.components
    frame = bm.datasets.load_faithful()
    waiting = frame[["waiting"]]
    x = ((waiting - waiting.mean()) / waiting.std()).to_numpy()[:, 0]
    # warm-up: numba's cache and nutpie's first sampler (not timed)
    run_bayesmix(waiting, K, [99])
    galaxies = bm.datasets.load_galaxies()
    g = ((galaxies - galaxies.mean()) / galaxies.std()).to_numpy()[:, 0]
    results = [
        summarise(f"PyMC gallery DP, waiting (1-D), K={K}", run_gallery(x, K, seeds)),
        summarise(f"bayesmix DP, waiting (1-D), K={K}", run_bayesmix(waiting, K, seeds)),
        summarise(f"bayesmix DP, faithful (2-D), K={K}", run_bayesmix(frame, K, seeds)),
        summarise(f"PyMC gallery DP, galaxies, K={K}", run_gallery(g, K, seeds)),
        summarise(f"bayesmix DP, galaxies, K={K}", run_bayesmix(galaxies, K, seeds)),
    ]
    print(f"load average {os.getloadavg()[0]:.1f}; {len(seeds)} seeds, medians")
    print("| model | divergences (median) | worst seed | seconds | mean clusters | r_hat |")
    print("|---|---|---|---|---|---|")
    for r in results:
        print(
            f"| {r['model']} | {r['divergences']:g} | {r['worst']} | {r['seconds']:.1f} | "
            f"{r['clusters']:.2f} | {r['rhat']:.3f} |"
        )
    return results


if __name__ == "__main__":
    main()
