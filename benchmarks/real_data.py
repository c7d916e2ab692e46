"""Full Bayes on real data: bayesmix's Gibbs sampler and NUTS against the PyMC gallery model.

Cases (issue 16): scikit-learn's bundled iris (K=3), wine (K=3) and breast_cancer (K=2),
full covariances, the raw columns as shipped (``sklearn.datasets.load_*``), and the galaxies
velocities (K=4, standardised; no labels, so no ARI; its ESS target is 1000). Targets, each a
pass/fail column: r_hat <= 1.01 and bulk ESS >= 400 on every identified parameter (weights,
means, standard deviations, correlations), no divergences, at most 60 s warm, an ARI of
``result.predict(X)`` to the true labels at least that of scikit-learn's
``GaussianMixture(K, n_init=10, random_state=0)`` minus 0.05, and at least 10x faster than
the reference.

Protocol. Every case and tool runs in a fresh Python process: first a short warm-up fit
(50 tuning steps + 50 draws) on the data with its rows permuted, which loads numba's and
PyTensor's caches and compiles what the tool compiles, then the timed ("warm") fit.

- ``gibbs``: ``method="gibbs"``, 4 chains, 500 tuning sweeps, 1000 draws, ``identify=
  "relabel"``; a fit missing the r_hat or ESS target is repeated with twice the draws (up
  to 8000), and the seconds of the misses count.
- ``nuts``: one ``method="nuts"`` fit with bayesmix's defaults (nutpie, 4 chains, 1000
  tuning steps + 1000 draws, ``identify="ordered"``).
- ``reference``: the gallery model of :mod:`benchmarks.bayes` (its priors are on the
  standardised scale, so it gets standardised columns) sampled once by ``pm.sample()``
  with its defaults, 4 chains; its ARI is that of the posterior-mean memberships. The
  timed fit is killed after ``--reference-timeout`` seconds (30 min) and reported as not
  finished.

r_hat and bulk ESS come from :func:`benchmarks.bayes.meets_target` for every tool; the
reference/tool ratio uses the tool's total warm seconds (misses included), and a reference
that did not finish gives a lower bound. Records are merged into ``real_data.json`` next
to this module (one per case and tool; a rerun replaces its own) and the table is printed.

Run: ``python -m benchmarks.real_data [--cases iris,wine,breast_cancer]
[--tools gibbs,nuts,reference] [--reference-timeout 1800] [--tool-timeout SECONDS]
[--seed 0]``.
"""

from __future__ import annotations

import argparse
import json
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np

from benchmarks.bayes import meets_target, reference_identified, reference_model

CASES = {"iris": 3, "wine": 3, "breast_cancer": 2, "galaxies": 4}
# the ESS target where it is not ESS_TARGET
ESS_TARGETS = {"galaxies": 1000}
TOOLS = ("gibbs", "nuts", "reference")
RHAT_TARGET, ESS_TARGET, SECONDS_TARGET, ARI_SLACK, SPEED_TARGET = 1.01, 400, 60.0, 0.05, 10.0
GIBBS_TUNE, GIBBS_DRAWS, GIBBS_MAX_DRAWS = 500, 1000, 8000
WARMUP = {"tune": 50, "draws": 50}
RECORDS = Path(__file__).with_suffix(".json")


def load(case: str) -> tuple[np.ndarray, np.ndarray | None]:
    """The raw columns and true labels of a scikit-learn bundled data set (galaxies: the
    standardised velocities, no labels)."""
    if case == "galaxies":
        import bayesmix as bm

        X = np.asarray(bm.datasets.load_galaxies(), dtype=float).reshape(-1, 1)
        return (X - X.mean()) / X.std(), None
    from sklearn import datasets

    return getattr(datasets, f"load_{case}")(return_X_y=True)


def sklearn_ari(X: np.ndarray, y: np.ndarray, n_components: int) -> float:
    """ARI of scikit-learn's ``GaussianMixture(K, n_init=10, random_state=0)`` labels."""
    from sklearn.metrics import adjusted_rand_score
    from sklearn.mixture import GaussianMixture

    labels = GaussianMixture(n_components, n_init=10, random_state=0).fit_predict(X)
    return float(adjusted_rand_score(y, labels))


def reference_memberships(post, X: np.ndarray, n_components: int) -> np.ndarray:
    """Membership probabilities ``(n_obs, K)`` averaged over a reference posterior's draws."""
    from scipy.special import softmax

    n_features = X.shape[1]
    weights = post["weights"].values.reshape(-1, n_components)
    means = post["means"].values.reshape(-1, n_components, n_features)
    covs = np.stack(
        [
            post[f"chol{k}_stds"].values[..., :, None]
            * post[f"chol{k}_corr"].values
            * post[f"chol{k}_stds"].values[..., None, :]
            for k in range(n_components)
        ],
        axis=2,
    ).reshape(-1, n_components, n_features, n_features)
    total = np.zeros((X.shape[0], n_components))
    for w, mu, cov in zip(weights, means, covs, strict=True):
        lower = np.linalg.cholesky(cov)
        z = np.linalg.solve(lower, np.swapaxes(X[None] - mu[:, None], 1, 2))  # (K, D, n)
        log_det = np.log(np.diagonal(lower, axis1=1, axis2=2)).sum(axis=1)
        log_joint = np.log(w) - log_det - 0.5 * (z**2).sum(axis=1).T
        total += softmax(log_joint, axis=1)
    return total / len(weights)


def _fit(tool: str, X: np.ndarray, n_components: int, seed: int, **options):
    """One fit: ``(seconds, draws, max r_hat, min bulk ESS, divergences, labels)``."""
    if tool == "reference":
        import pymc as pm

        Xs = (X - X.mean(axis=0)) / X.std(axis=0, ddof=1)
        model = reference_model(Xs, n_components, "full")
        start = time.perf_counter()
        with model:
            tree = pm.sample(
                options.get("draws", 1000),
                tune=options.get("tune"),
                chains=4,
                random_seed=seed,
                progressbar=False,
                compute_convergence_checks=False,
            )
        seconds = time.perf_counter() - start
        _, ess, rhat = meets_target(reference_identified(tree, X.shape[1], "full"))
        post = tree["posterior"].dataset
        divergences = int(tree["sample_stats"].dataset["diverging"].sum())
        labels = reference_memberships(post, Xs, n_components).argmax(axis=1)
        return seconds, post.sizes["draw"], rhat, ess, divergences, labels
    import bayesmix as bm

    model = bm.GaussianMixture(n_components, "full")
    extra = {"identify": "relabel"} if tool == "gibbs" else {}
    start = time.perf_counter()
    fit = model.fit(X, method=tool, random_state=seed, progressbar=False, **extra, **options)
    seconds = time.perf_counter() - start
    _, ess, rhat = meets_target(fit._summary_dataset())
    stats = fit.sample_stats
    divergences = int(stats["diverging"].sum()) if "diverging" in stats else 0
    return seconds, fit.posterior.sizes["draw"], rhat, ess, divergences, fit.predict(X)


def run_case(
    tool: str,
    case: str,
    seed: int = 0,
    draws: int = GIBBS_DRAWS,
    tune: int = GIBBS_TUNE,
    max_draws: int = GIBBS_MAX_DRAWS,
    warmup: dict | None = None,
    on_warm=None,
) -> dict:
    """Warm-up fit on permuted rows, then the timed fit(s) of one case with one tool.

    Parameters
    ----------
    tool : {"gibbs", "nuts", "reference"}
        What to fit.
    case : str
        A key of ``CASES``.
    seed : int
        ``random_state`` of the timed fit (the warm-up uses ``seed + 1`` and permutes the
        rows with ``seed``).
    draws, tune, max_draws : int
        Gibbs only: the first attempt's draws and tuning sweeps per chain, and the most
        draws a refit (twice the previous draws) may use.
    warmup : dict, optional
        ``draws`` and ``tune`` of the warm-up fit (default ``WARMUP``).
    on_warm : callable, optional
        Called with the warm-up's seconds once it is done.

    Returns
    -------
    dict
        The record: seconds (warm, misses included), draws per attempt, max r_hat, min bulk
        ESS, divergences, ARI, scikit-learn's ARI and a pass/fail flag per target.
    """
    from sklearn.metrics import adjusted_rand_score

    warnings.simplefilter("ignore")
    X, y = load(case)
    n_components = CASES[case]
    permuted = X[np.random.default_rng(seed).permutation(len(X))]
    start = time.perf_counter()
    _fit(tool, permuted, n_components, seed + 1, **(warmup or WARMUP))
    warm_up = time.perf_counter() - start
    if on_warm is not None:
        on_warm(warm_up)
    options = {"draws": draws, "tune": tune} if tool == "gibbs" else {}
    seconds, attempts = 0.0, []
    while True:
        spent, used, rhat, ess, divergences, labels = _fit(tool, X, n_components, seed, **options)
        seconds += spent
        attempts.append(int(used))
        mixed = rhat <= RHAT_TARGET and ess >= ESS_TARGETS.get(case, ESS_TARGET)
        if tool != "gibbs" or mixed or 2 * options["draws"] > max_draws:
            break
        options["draws"] *= 2
    ari = reference_ari = None
    if y is not None:
        ari = float(adjusted_rand_score(y, labels))
        reference_ari = sklearn_ari(X, y, n_components)
    return {
        "case": case,
        "tool": tool,
        "seed": seed,
        "status": "ok",
        "n_obs": int(X.shape[0]),
        "n_features": int(X.shape[1]),
        "n_components": n_components,
        "warmup_seconds": warm_up,
        "seconds": seconds,
        "draws": attempts,
        "max_rhat": rhat,
        "min_ess_bulk": ess,
        "divergences": divergences,
        "ari": ari,
        "sklearn_ari": reference_ari,
        "pass": {
            "r_hat": rhat <= RHAT_TARGET,
            "ess": ess >= ESS_TARGETS.get(case, ESS_TARGET),
            "divergences": divergences == 0,
            "seconds": seconds <= SECONDS_TARGET,
            "ari": None if ari is None else ari >= reference_ari - ARI_SLACK,
        },
    }


def child(tool: str, case: str, seed: int) -> None:
    """Run one case in this (fresh) process; prints a warm-up line, then the record."""

    def warmed(seconds: float) -> None:
        print(json.dumps({"warmed_up": seconds}), flush=True)

    print(json.dumps(run_case(tool, case, seed, on_warm=warmed)), flush=True)


def run_child(tool: str, case: str, seed: int, timeout: float | None) -> dict:
    """One case and tool in a fresh process; the timed fit is killed after ``timeout`` s."""
    command = [sys.executable, "-m", "benchmarks.real_data", "--child", tool, case, str(seed)]
    errors = tempfile.TemporaryFile("w+")
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=errors, text=True, start_new_session=True
    )
    lines: queue.Queue = queue.Queue()

    def read() -> None:
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    threading.Thread(target=read, daemon=True).start()
    base = {"case": case, "tool": tool, "seed": seed, "n_components": CASES[case]}
    base["warmup_seconds"] = None
    while True:
        try:  # a warm-up longer than the timeout also ends the run
            line = lines.get(timeout=timeout)
        except queue.Empty:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            stage = "timed fit" if base["warmup_seconds"] is not None else "warm-up"
            return {**base, "status": f"did not finish ({stage}) in {timeout:.0f} s"} | {
                "timeout": timeout
            }
        if line is None:
            break
        try:
            got = json.loads(line)
        except ValueError:
            continue
        if isinstance(got, dict) and "warmed_up" in got:
            base["warmup_seconds"] = got["warmed_up"]
        elif isinstance(got, dict):
            proc.wait()
            return got
    proc.wait()
    errors.seek(0)
    tail = errors.read().strip().splitlines()
    return {**base, "status": f"failed: {tail[-1] if tail else proc.returncode}"}


def _revision() -> dict:
    """The repository's commit and whether ``bayesmix/`` had uncommitted changes."""

    def git(*args: str) -> str:
        root = str(Path(__file__).parents[1])
        return subprocess.run(["git", "-C", root, *args], capture_output=True, text=True).stdout

    dirty = git("status", "--porcelain", "--", "bayesmix")
    return {"commit": git("rev-parse", "--short", "HEAD").strip(), "bayesmix_dirty": bool(dirty)}


def _speed(ref: dict | None, seconds: float) -> tuple[str, bool | None]:
    """reference/tool ratio as text (a lower bound if the reference did not finish)."""
    if ref is None:
        return "-", None
    if ref["status"] == "ok":
        ratio = ref["seconds"] / seconds
        return f"{ratio:.1f}", ratio >= SPEED_TARGET
    if "timeout" in ref:
        ratio = ref["timeout"] / seconds
        return f"> {ratio:.0f}", ratio >= SPEED_TARGET
    return "-", None


def table(records: dict) -> None:
    """Print one row per case, tool and seed, with the targets' pass/fail columns (the
    reference/tool ratio against the reference of the lowest seed)."""
    print(
        "| case | tool | seed | warm s | draws per chain | max r_hat | min bulk ESS | "
        "divergences | ARI | sklearn ARI | r_hat | ESS | no div. | <= 60 s | ARI | "
        "reference/tool | 10x |"
    )
    print("| --- " * 17 + "|")
    mark = {True: "pass", False: "**miss**", None: "-"}
    for case in CASES:
        refs = [r for r in records.values() if (r["case"], r["tool"]) == (case, "reference")]
        ref = min(refs, key=lambda r: r["seed"], default=None)
        rows = [r for r in records.values() if r["case"] == case and r["tool"] != "reference"]
        for r in [*refs, *sorted(rows, key=lambda r: (TOOLS.index(r["tool"]), r["seed"]))]:
            tool = f"{r['tool']} | {r['seed']}"
            if r["status"] != "ok":
                print(f"| {case} | {tool} | {r['status']} |" + " - |" * 13)
                continue
            speed, fast = ("1", None) if r is ref else _speed(ref, r["seconds"])
            flags = " | ".join(mark[r["pass"][k]] for k in r["pass"])
            aris = " | ".join(
                "-" if a is None else f"{a:.3f}" for a in (r["ari"], r["sklearn_ari"])
            )
            print(
                f"| {case} | {tool} | {r['seconds']:.1f} | {'+'.join(map(str, r['draws']))} | "
                f"{r['max_rhat']:.3f} | {r['min_ess_bulk']:.0f} | {r['divergences']} | "
                f"{aris} | {flags} | {speed} | {mark[fast]} |"
            )


def main(argv: list[str] | None = None) -> dict:
    """Run the requested cases and tools, merge their records into ``RECORDS``, print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--child", nargs=3, metavar=("TOOL", "CASE", "SEED"), help="internal")
    parser.add_argument("--cases", default=",".join(CASES))
    parser.add_argument("--tools", default=",".join(TOOLS))
    parser.add_argument("--reference-timeout", type=float, default=1800.0)
    parser.add_argument("--tool-timeout", type=float, help="the same for gibbs and nuts")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.child:
        child(args.child[0], args.child[1], int(args.child[2]))
        return {}
    stored = json.loads(RECORDS.read_text()) if RECORDS.exists() else {"records": {}}
    records = stored["records"]
    for case in args.cases.split(","):
        for tool in args.tools.split(","):
            timeout = args.reference_timeout if tool == "reference" else args.tool_timeout
            print(f"{time.strftime('%Y-%m-%d %H:%M:%S')} {case} {tool} ...", flush=True)
            record = run_child(tool, case, args.seed, timeout)
            record.update(date=time.strftime("%Y-%m-%d %H:%M"), **_revision())
            records[f"{case}/{tool}/seed{args.seed}"] = record
            stored["machine"] = f"{os.cpu_count()} cores, shared with other work"
            RECORDS.write_text(json.dumps(stored, indent=1) + "\n")
    table(records)
    return records


if __name__ == "__main__":
    main()
