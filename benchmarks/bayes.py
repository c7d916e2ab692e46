"""Full Bayes and ADVI: bayesmix against the PyMC gallery-style mixture model.

NUTS: for each case and tool, a fresh Python process is started; "cold" is the wall time from
its launch (imports and compilation included) until a posterior with bulk ESS >= 1000 for
every identified parameter (weights, means, standard deviations, correlations) and
r_hat <= 1.01; "warm" is the same for a second data set of the same shape (the rows
permuted) in that process. A tool that misses the target on a run samples again with twice
the draws, and the time of the misses counts.

The reference is the model of the PyMC example gallery: Dirichlet weights, the first mean
coordinate ordered, one ``LKJCholeskyCov`` per component (one shared for ``tied``),
``pm.Mixture`` over a batched ``pm.MvNormal`` (``pm.NormalMixture`` in 1-D), sampled by
``pm.sample()`` with its defaults (which in PyMC 6 is nutpie when it is installed: 1000 draws,
nutpie's default of 400 tuning steps; 4 chains). bayesmix fits its own
declaration (conjugate priors, marginalised with one log-sum-exp) with fewer tuning steps.
The two models' priors differ, so the posterior means printed side by side agree only to
about a posterior standard deviation.

ADVI: time until the ELBO has converged, bayesmix's mean-field ADVI (from a MAP-EM start)
against scikit-learn's ``BayesianGaussianMixture`` (coordinate-ascent VB) on the same data,
in one process: the first fit of a case (compile included) and warm refits, medians.
Minibatch ADVI: seconds per 1000 iterations, full batch against ``batch_size``, on 10^6
simulated rows, and the accuracy of complete minibatch fits (posterior means and standard
deviations) against the large-sample posterior of the full data.

Run: ``python -m benchmarks.bayes [--cases ...] [--tools ...] [--repeats 3] [--skip-advi]
[--skip-nuts] [--skip-minibatch] [--minibatch-n 1000000] [--batch-sizes 1000,10000]
[--minibatch-methods advi,fullrank_advi] [--minibatch-seeds 1,2] [--minibatch-cases D2-K2]``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import warnings

import numpy as np

ESS_TARGET = 1000
RHAT_TARGET = 1.01
CASES = {
    "faithful-full-K2": ("faithful", 2, "full"),
    "faithful-tied-K3": ("faithful", 3, "tied"),
    "galaxies-K4": ("galaxies", 4, "full"),
}
# bayesmix's first attempt; the reference starts at pm.sample()'s defaults
BAYESMIX_TUNE, BAYESMIX_DRAWS = 400, 400
REFERENCE_TUNE, REFERENCE_DRAWS = None, 1000  # pm.sample()'s defaults


def load(name: str):
    """Standardised data set (pandas DataFrame)."""
    import bayesmix as bm

    X = bm.datasets.load_faithful() if name == "faithful" else bm.datasets.load_galaxies()
    return (X - X.mean()) / X.std()


def meets_target(posterior) -> tuple[bool, float, float]:
    """Whether an identified-parameter Dataset reaches the ESS and r_hat targets
    (``arviz_stats.summary``, which ``arviz.summary`` re-exports, without the rest of the
    ``arviz`` namespace: a cold process of either tool pays only for what the check uses)."""
    import arviz_stats

    table = arviz_stats.summary(posterior, kind="diagnostics").dropna()
    ess, rhat = float(table["ess_bulk"].min()), float(table["r_hat"].max())
    return ess >= ESS_TARGET and rhat <= RHAT_TARGET, ess, rhat


# -- the gallery-style reference --------------------------------------------------------
def reference_model(X: np.ndarray, n_components: int, covariance_type: str):
    """The PyMC gallery's mixture: LKJ covariances, pm.Mixture of a batched MvNormal."""
    import pymc as pm
    import pytensor.tensor as pt
    from pymc.distributions.transforms import ordered

    n_features = X.shape[1]
    first = np.linspace(-1.0, 1.0, n_components)
    with pm.Model() as model:
        data = pm.Data("X", X)
        weights = pm.Dirichlet("weights", np.ones(n_components))
        if n_features == 1:
            means = pm.Normal("means", 0, 2, shape=n_components, transform=ordered, initval=first)
            stds = pm.HalfNormal("stds", 1.0, shape=n_components)
            pm.NormalMixture("obs", w=weights, mu=means, sigma=stds, observed=data[:, 0])
            return model
        mean0 = pm.Normal("mean0", 0, 2, shape=n_components, transform=ordered, initval=first)
        rest = pm.Normal("mean_rest", 0, 2, shape=(n_components, n_features - 1))
        means = pm.Deterministic("means", pt.concatenate([mean0[:, None], rest], axis=1))
        sd_dist = pm.HalfNormal.dist(1.0, shape=n_features)
        n_cov = 1 if covariance_type == "tied" else n_components
        chols = [
            pm.LKJCholeskyCov(f"chol{k}", n=n_features, eta=2.0, sd_dist=sd_dist)[0]
            for k in range(n_cov)
        ]
        chol = chols[0] if covariance_type == "tied" else pt.stack(chols)
        components = pm.MvNormal.dist(mu=means, chol=chol)
        pm.Mixture("obs", w=weights, comp_dists=components, observed=data)
    return model


def reference_identified(tree, n_features: int, covariance_type: str):
    """Weights, means, standard deviations and correlations of a reference posterior."""
    import xarray as xr

    post = tree["posterior"].dataset
    keep = {"weights": post["weights"], "means": post["means"]}
    if n_features == 1:
        keep["stds"] = post["stds"]
        return xr.Dataset(keep)
    rows, cols = np.triu_indices(n_features, 1)
    names = sorted(v for v in post.data_vars if v.startswith("chol") and v.endswith("_stds"))
    for name in names:
        keep[name] = post[name]
        corr = post[name.replace("_stds", "_corr")].values[..., rows, cols]
        keep[name.replace("_stds", "_corr")] = (("chain", "draw", "pair"), corr)
    return xr.Dataset(keep)


def run_reference(X, n_components, covariance_type, model=None, seed=0):
    import pymc as pm

    model = model or reference_model(X, n_components, covariance_type)
    draws, attempts = REFERENCE_DRAWS, []
    while True:
        with model:
            pm.set_data({"X": X})
            tree = pm.sample(
                draws,
                tune=REFERENCE_TUNE,
                chains=4,
                random_seed=seed,
                progressbar=False,
                compute_convergence_checks=False,
            )
        ok, ess, rhat = meets_target(reference_identified(tree, X.shape[1], covariance_type))
        attempts.append(draws)
        if ok or draws >= 8 * REFERENCE_DRAWS:
            break
        draws *= 2
    post = tree["posterior"].dataset
    summary = {
        "weights": post["weights"].mean(("chain", "draw")).values.round(3).tolist(),
        "means": post["means"].mean(("chain", "draw")).values.round(3).tolist(),
    }
    return model, {"ok": ok, "ess": ess, "rhat": rhat, "draws": attempts, **summary}


def run_bayesmix(X, n_components, covariance_type, sampler, seed=0):
    import bayesmix as bm

    model = bm.GaussianMixture(n_components, covariance_type)
    draws, attempts = BAYESMIX_DRAWS, []
    while True:
        fit = model.fit(
            X,
            method="nuts",
            sampler=sampler,
            chains=4,
            draws=draws,
            tune=BAYESMIX_TUNE,
            random_state=seed,
            order_by=0,
        )
        ok, ess, rhat = meets_target(fit._summary_dataset())
        attempts.append(draws)
        if ok or draws >= 8 * BAYESMIX_DRAWS:
            break
        draws *= 2
    summary = {"weights": fit.weights.round(3).tolist(), "means": fit.means.round(3).tolist()}
    return {"ok": ok, "ess": ess, "rhat": rhat, "draws": attempts, **summary}


def child(tool: str, case: str) -> None:
    """One cold and one warm fit in this (fresh) process; prints one JSON line."""
    warnings.simplefilter("ignore")
    data_name, n_components, covariance_type = CASES[case]
    frame = load(data_name)
    X = frame.to_numpy()
    permuted = frame.sample(frac=1.0, random_state=0).to_numpy()
    rows = []
    if tool == "reference":
        model, cold = run_reference(X, n_components, covariance_type, seed=1)
        rows.append({**cold, "done": time.time()})
        start = time.perf_counter()
        _, warm = run_reference(permuted, n_components, covariance_type, model=model, seed=2)
    else:
        cold = run_bayesmix(X, n_components, covariance_type, tool, seed=1)
        rows.append({**cold, "done": time.time()})
        start = time.perf_counter()
        warm = run_bayesmix(permuted, n_components, covariance_type, tool, seed=2)
    rows.append({**warm, "seconds": time.perf_counter() - start})
    print(json.dumps(rows))


def run_child(tool: str, case: str) -> tuple[float, dict, dict]:
    launched = time.time()
    out = subprocess.run(
        [sys.executable, "-m", "benchmarks.bayes", "--child", tool, case],
        capture_output=True,
        text=True,
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr.strip().splitlines()[-1] if out.stderr else "failed")
    cold, warm = json.loads(out.stdout.strip().splitlines()[-1])
    return cold["done"] - launched, cold, warm


def nuts_table(cases: list[str], tools: list[str], repeats: int) -> None:
    print(
        f"NUTS until bulk ESS >= {ESS_TARGET} and r_hat <= {RHAT_TARGET} for every identified "
        f"parameter; medians of {repeats} fresh processes per tool, interleaved"
    )
    print()
    print(
        "| case | tool | cold s | warm s | reference/tool cold | reference/tool warm | draws "
        "per chain (warm) | min ESS (warm) | max r_hat (warm) | posterior mean weights (warm) "
        "| posterior means (warm) |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for case in cases:
        runs = {tool: [] for tool in ["reference", *tools]}
        for _ in range(repeats):
            for tool in runs:
                try:
                    runs[tool].append(run_child(tool, case))
                except RuntimeError as exc:
                    print(f"| {case} | {tool} | failed: {str(exc)[:80]} |", flush=True)
        medians = {
            tool: (
                statistics.median(r[0] for r in got),
                statistics.median(r[2]["seconds"] for r in got),
                got[-1][2],
            )
            for tool, got in runs.items()
            if got
        }
        ref_cold, ref_warm, _ = medians.get("reference", (np.nan, np.nan, None))
        for tool, (cold, warm, last) in medians.items():
            flag = "" if last["ok"] else " (target missed)"
            print(
                f"| {case} | {tool} | {cold:.1f} | {warm:.1f} | {ref_cold / cold:.1f} | "
                f"{ref_warm / warm:.1f} | {'+'.join(map(str, last['draws']))}{flag} | "
                f"{last['ess']:.0f} | {last['rhat']:.3f} | {last['weights']} | {last['means']} |",
                flush=True,
            )


def advi_table(repeats: int) -> None:
    """bayesmix ADVI against scikit-learn's BayesianGaussianMixture, same process.

    "cold" is the first ADVI fit of a case in this process (its graph compiled; imports
    and numba's disk cache already warm), "warm" the median of ``repeats`` refits with
    other seeds (compiled step reused). BGM runs with its defaults (tol 1e-3)."""
    from sklearn.mixture import BayesianGaussianMixture

    import bayesmix as bm

    print()
    print(f"ADVI until the ELBO converges; warm: medians of {repeats}, same process")
    print()
    print(
        "| case | bayesmix ADVI cold s | bayesmix ADVI warm s | iterations | "
        "BayesianGaussianMixture s | BGM iterations | BGM/bayesmix warm | bayesmix weights | "
        "BGM weights |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for case, (data_name, n_components, covariance_type) in CASES.items():
        X = load(data_name)
        model = bm.GaussianMixture(n_components, covariance_type)
        sk = BayesianGaussianMixture(
            n_components=n_components,
            covariance_type=covariance_type,
            max_iter=1000,
            weight_concentration_prior_type="dirichlet_distribution",
            random_state=0,
        )
        start = time.perf_counter()
        model.fit(X, method="advi", random_state=100)  # compiles this case's graph
        cold = time.perf_counter() - start
        ours, theirs = [], []
        for seed in range(repeats):
            start = time.perf_counter()
            fit = model.fit(X, method="advi", random_state=seed)
            ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            sk.set_params(random_state=seed).fit(X.to_numpy())
            theirs.append(time.perf_counter() - start)
        a, b = statistics.median(ours), statistics.median(theirs)
        print(
            f"| {case} | {cold:.2f} | {a:.2f} | {fit.settings['n_iter']} | {b:.3f} | "
            f"{sk.n_iter_} | {b / a:.3f} | {np.round(np.sort(fit.weights), 3).tolist()} | "
            f"{np.round(np.sort(sk.weights_), 3).tolist()} |",
            flush=True,
        )


# well-separated mixtures with known truth: name -> truth (K from the weights, full)
MINIBATCH_CASES = {
    "D2-K2": {
        "weights": np.array([0.4, 0.6]),
        "means": np.array([[-3.0, 1.0], [3.0, -1.0]]),
        "covariances": np.array([[[1.0, 0.4], [0.4, 0.8]], [[0.6, -0.2], [-0.2, 1.2]]]),
    },
    "D3-K3": {
        "weights": np.array([0.2, 0.3, 0.5]),
        "means": np.array([[-6.0, 0.0, 1.0], [0.0, 4.0, -1.0], [6.0, -2.0, 0.0]]),
        "covariances": np.array(
            [
                np.eye(3) + 0.3 * (np.ones((3, 3)) - np.eye(3)),
                np.diag([0.5, 1.0, 2.0]),
                0.8 * np.eye(3),
            ]
        ),
    },
}


def complete_data_sds(weights, covariances, n_obs: int) -> dict[str, np.ndarray]:
    """Large-sample posterior standard deviations of a well-separated mixture (memberships
    all but certain): a mean coordinate sqrt(Sigma_dd / n_k), a weight sqrt(w (1-w) / n),
    a covariance entry sqrt((Sigma_ij^2 + Sigma_ii Sigma_jj) / n_k), n_k = n w_k."""
    counts = n_obs * weights
    variances = np.diagonal(covariances, axis1=1, axis2=2)
    outer = np.einsum("kii,kjj->kij", covariances, covariances)
    return {
        "means": np.sqrt(variances / counts[:, None]),
        "weights": np.sqrt(weights * (1 - weights) / n_obs),
        "covariances": np.sqrt((covariances**2 + outer) / counts[:, None, None]),
    }


def minibatch_table(
    case: str,
    n_obs: int,
    batch_sizes: list[int],
    full_steps: int,
    methods: list[str],
    seeds: list[int],
) -> None:
    """Minibatch ADVI on ``n_obs`` draws of a well-separated full mixture
    (``MINIBATCH_CASES[case]``).

    Speed: seconds per 1000 iterations of the compiled step alone, timed after the fit
    compiled it (the full batch over ``full_steps`` steps, scaled). Accuracy of complete
    default fits (one per seed): the reference posterior is the large-sample one of the
    full data, centred at EM's maximum-likelihood estimate (prior influence ~1/N) with
    the closed-form complete-data standard deviations (:func:`complete_data_sds`); the
    error of the posterior means is given in those standard deviations, and the posterior
    standard deviations of the fit as ratios to them: of the means apart from the
    ordered feature, of the ordered feature's means (mean-field ADVI can only represent
    their conditional spread in PyMC's ordered coordinates), of the weights and
    covariance entries."""
    import bayesmix as bm
    from bayesmix.inference.bayes import fit as bayes_fit

    truth = MINIBATCH_CASES[case]
    n_components, n_features = truth["means"].shape
    model = bm.GaussianMixture(n_components, "full")
    X, _ = model.sample(n_obs, truth, random_state=0)
    em = model.fit(X, method="em", random_state=0, tol=1e-10)
    order = np.argsort(em.means[:, 0])  # fits with order_by=0 order feature 0's means
    reference = {"weights": em.weights[order], "means": em.means[order]}
    reference["covariances"] = em.covariances[order]
    ref_sds = complete_data_sds(reference["weights"], reference["covariances"], n_obs)
    print()
    print(
        f"ADVI on N={n_obs:,} (D={n_features}, K={n_components} full); step only, after "
        f"its compile; complete default fits with random_state in {seeds}; reference: "
        f"EM's estimate and the closed-form complete-data posterior sds (means: "
        f"{ref_sds['means'].min():.4f}-{ref_sds['means'].max():.4f})"
    )
    print()
    print(
        "| method | batch | s per 1000 iterations | full/minibatch | complete fit s | "
        "iterations | max abs error of the means | max error / reference sd (means, "
        "weights, covariances) | sd ratio: means (other features) | sd ratio: means "
        "(ordered feature 0) | sd ratio: weights, covariances |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    per_1000 = {}
    for method in methods:
        for batch in [None, *batch_sizes]:
            if batch is None and method != methods[0]:
                continue
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                model.fit(X, method=method, batch_size=batch, n=10, draws=10, order_by=0)
            key = next(k for k in bayes_fit._VI_CACHE if k[1:] == (method, batch))
            compiled = bayes_fit._VI_CACHE[key]
            steps = full_steps if batch is None else 1000
            start = time.perf_counter()
            for _ in range(steps):
                compiled._step()
            per_1000[batch] = (time.perf_counter() - start) * 1000 / steps
            label = "full" if batch is None else f"{batch:,}"
            ratio = per_1000[None] / per_1000[batch]
            if batch is None:
                print(
                    f"| {method} | {label} | {per_1000[batch]:.2f} | 1 | - | - | - | - | - "
                    "| - | - |",
                    flush=True,
                )
                continue
            for seed in seeds:
                start = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    fit = model.fit(
                        X, method=method, batch_size=batch, order_by=0, random_state=seed
                    )
                seconds = time.perf_counter() - start
                post = fit.posterior
                errors = {
                    name: np.abs(post[name].mean(("chain", "draw")).values - reference[name])
                    for name in reference
                }
                z = max((errors[name] / ref_sds[name]).max() for name in reference)
                sd = {
                    name: post[name].std(("chain", "draw")).values / ref_sds[name]
                    for name in reference
                }
                rest = np.concatenate([sd["weights"].ravel(), sd["covariances"].ravel()])
                flag = "" if fit.settings["converged"] else " (not converged)"
                print(
                    f"| {method} | {label} | {per_1000[batch]:.2f} | {ratio:.0f} | "
                    f"{seconds:.1f} | {fit.settings['n_iter']}{flag} | "
                    f"{errors['means'].max():.5f} | {z:.2f} | "
                    f"{sd['means'][:, 1:].min():.2f}-{sd['means'][:, 1:].max():.2f} | "
                    f"{sd['means'][:, 0].min():.2f}-{sd['means'][:, 0].max():.2f} | "
                    f"{rest.min():.2f}-{rest.max():.2f} |",
                    flush=True,
                )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=2, metavar=("TOOL", "CASE"), help=argparse.SUPPRESS)
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--tools", default="nutpie", help="bayesmix samplers, comma-separated")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip-advi", action="store_true")
    parser.add_argument("--skip-nuts", action="store_true")
    parser.add_argument("--skip-minibatch", action="store_true")
    parser.add_argument("--minibatch-n", type=int, default=1_000_000)
    parser.add_argument("--batch-sizes", default="1000,10000")
    parser.add_argument("--full-steps", type=int, default=50, help="full-batch steps timed")
    parser.add_argument("--minibatch-methods", default="advi,fullrank_advi")
    parser.add_argument("--minibatch-seeds", default="1,2")
    parser.add_argument("--minibatch-cases", default="D2-K2", help=", ".join(MINIBATCH_CASES))
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    print("started", time.strftime("%Y-%m-%d %H:%M"))
    if not args.skip_nuts:
        nuts_table(args.cases.split(","), args.tools.split(","), args.repeats)
    if not args.skip_advi:
        advi_table(args.repeats)
    if not args.skip_minibatch:
        batch_sizes = [int(b) for b in args.batch_sizes.split(",")]
        methods = args.minibatch_methods.split(",")
        seeds = [int(seed) for seed in args.minibatch_seeds.split(",")]
        for case in args.minibatch_cases.split(","):
            minibatch_table(case, args.minibatch_n, batch_sizes, args.full_steps, methods, seeds)


if __name__ == "__main__":
    main()
