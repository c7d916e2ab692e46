"""NUTS for a count or Student-t mixture in a fresh process against the Gaussian fast path
(issue 17's target: a Poisson K=3 mixture of 10,000 rows within 3x of the Gaussian fast
path's time; the Student-t family's: no tens of seconds compiling in a fresh process).

Each run is a fresh Python process that simulates its data, fits by NUTS with the
defaults (4 chains, 1000 tuning steps, 1000 draws, relabelling for the families,
nutpie on bayesmix's hand-written density in both cases) and reports the fit's own
seconds (MAP-EM start, sampling, relabelling); the wall time of the whole process
(imports, data, fit) is measured from outside. Cases:

- ``poisson``: ``Mixture(3, Poisson())`` on 10,000 x D counts (rates 1-15);
- ``negative_binomial``: ``Mixture(3, NegativeBinomial())`` on the same shape (alpha 5);
- ``gaussian``: ``GaussianMixture(3, "diag")`` on 10,000 x D well-separated rows;
- ``student_t``: ``Mixture(3, StudentT("full"))`` on 2,000 x D rows of three t clusters
  (4 degrees of freedom), by nutpie on the hand-written density;
- ``student_t_pymc``: the same fit by the former route (PyMC's model compiled and
  sampled by PyMC's NUTS: ``StudentT.nutpie_density`` switched off in the child);
- ``gaussian_t_data``: ``GaussianMixture(3, "full")`` on the Student-t case's rows (the
  Gaussian fast path on the same data);
- ``normal``: ``Mixture(3, Normal())`` (diagonal Gaussian components, latent profiles) on
  2,000 x D rows of three Gaussian clusters, by nutpie on the hand-written density
  (:mod:`bayesmix.families.normal_logdensity`);
- ``normal_pymc``: the same fit by the PyMC route (``Normal.nutpie_density`` switched
  off in the child: PyMC's model compiled and sampled by PyMC's NUTS).

Besides the wall time, the CPU seconds of each child process (user + system, from the
parent's ``RUSAGE_CHILDREN``) are reported: the machine may be shared, and the PyMC route
runs its chains in worker processes.

Warm: numba's on-disk cache is filled by one run first, then ``--repeats`` runs, medians.
Cold: one run with ``NUMBA_CACHE_DIR`` pointing at an empty directory (every numba
function of bayesmix compiles in that process, the EM kernels included).

Run: ``python -m benchmarks.family_nuts [--features 2] [--repeats 3] [--cases poisson,gaussian]
[--skip-cold]``. The child alone (for an outside timer): ``python -c "$(python -c
'from benchmarks.family_nuts import CHILD; print(CHILD)')" CASE D N``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

N_ROWS, N_COMPONENTS = 10_000, 3
#: rows of the Student-t cases
T_ROWS = 2_000
T_CASES = ("student_t", "student_t_pymc", "gaussian_t_data", "normal", "normal_pymc")
#: each case's baseline in the ratios printed at the end
BASELINES = {"student_t": "gaussian_t_data", "student_t_pymc": "gaussian_t_data"}
BASELINES |= {"normal_pymc": "normal"}

CHILD = """
import json, sys, time, warnings
warnings.simplefilter("ignore")
started = time.perf_counter()
import numpy as np
import bayesmix as bm
imported = time.perf_counter() - started
case, D, N = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(0)
z = rng.choice(3, size=N, p=[0.3, 0.3, 0.4])
centres = np.array([[1.0, 8.0, 3.0], [6.0, 2.0, 9.0], [15.0, 12.0, 1.5]])[:, :D]
if case == "poisson":
    X = rng.poisson(centres[z]).astype(float)
    model = bm.Mixture(3, bm.families.Poisson())
elif case == "negative_binomial":
    X = rng.negative_binomial(5.0, 5.0 / (5.0 + centres[z])).astype(float)
    model = bm.Mixture(3, bm.families.NegativeBinomial())
elif case in ("student_t", "student_t_pymc", "gaussian_t_data"):
    locations = np.array([[0.0, 0.0, 0.0], [6.0, -3.0, 4.0], [-4.0, 6.0, 8.0]])[:, :D]
    X = locations[z] + rng.standard_t(4.0, (N, D))
    model = bm.Mixture(3, bm.families.StudentT("full"))
    if case == "student_t_pymc":
        bm.families.StudentT.nutpie_density = lambda *args: None
    elif case == "gaussian_t_data":
        model = bm.GaussianMixture(3, "full")
elif case in ("normal", "normal_pymc"):
    locations = np.array([[0.0, 0.0, 0.0], [4.0, -3.0, 4.0], [-4.0, 4.0, 6.0]])[:, :D]
    X = locations[z] + rng.standard_normal((N, D)) * np.array([1.0, 0.5, 2.0])[:D]
    model = bm.Mixture(3, bm.families.Normal())
    if case == "normal_pymc":
        bm.families.Normal.nutpie_density = lambda *args: None
else:
    X = np.array([[0.0] * 3, [4.0, -4.0, 4.0], [-4.0, 4.0, 4.0]])[:, :D][z]
    X = X + rng.standard_normal(X.shape)
    model = bm.GaussianMixture(3, "diag")
fit = model.fit(X, method="nuts", random_state=0, progressbar=False)
table = fit.summary()
print(json.dumps({
    "import_seconds": imported,
    "fit_seconds": fit.settings["fit_seconds"],
    "log_density": fit.settings.get("log_density"),
    "pymc_imported": "pymc" in sys.modules,
    "min_ess_bulk": float(table["ess_bulk"].astype(float).min()),
    "max_r_hat": float(table["r_hat"].astype(float).max()),
}))
"""


def rows(case: str) -> int:
    """The number of rows of ``case``'s data."""
    return T_ROWS if case in T_CASES else N_ROWS


def run_once(case: str, n_features: int, env: dict | None = None) -> dict:
    """One fresh process: its report plus ``process_seconds`` (wall, from outside) and
    ``cpu_seconds`` (the process and its children, user + system)."""
    cpu = _children_cpu()
    started = time.perf_counter()
    run = subprocess.run(
        [sys.executable, "-c", CHILD, case, str(n_features), str(rows(case))],
        capture_output=True,
        text=True,
        check=True,
        env=env,
    )
    out = json.loads(run.stdout.splitlines()[-1])
    out["process_seconds"] = time.perf_counter() - started
    out["cpu_seconds"] = _children_cpu() - cpu
    return out


def _children_cpu() -> float:
    """User + system CPU seconds of the finished child processes so far."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--cases", default="poisson,negative_binomial,gaussian")
    parser.add_argument("--skip-cold", action="store_true")
    args = parser.parse_args(argv)
    cases = args.cases.split(",")
    results = {}
    for case in cases:
        run_once(case, args.features)  # fills numba's cache
        runs = [run_once(case, args.features) for _ in range(args.repeats)]
        results[case] = {
            "process_seconds": statistics.median(r["process_seconds"] for r in runs),
            "cpu_seconds": statistics.median(r["cpu_seconds"] for r in runs),
            "fit_seconds": statistics.median(r["fit_seconds"] for r in runs),
            "import_seconds": statistics.median(r["import_seconds"] for r in runs),
            "min_ess_bulk": min(r["min_ess_bulk"] for r in runs),
            "max_r_hat": max(r["max_r_hat"] for r in runs),
            "log_density": runs[0]["log_density"],
            "pymc_imported": any(r["pymc_imported"] for r in runs),
        }
        if not args.skip_cold:
            with tempfile.TemporaryDirectory() as cache:
                cold = run_once(case, args.features, env={**os.environ, "NUMBA_CACHE_DIR": cache})
            results[case]["cold_process_seconds"] = cold["process_seconds"]
            results[case]["cold_fit_seconds"] = cold["fit_seconds"]
    print(
        f"N={N_ROWS} (Student-t cases {T_ROWS}), K={N_COMPONENTS}, D={args.features}, "
        "NUTS defaults (4 chains)"
    )
    print(
        f"{'case':<18} {'process s':>9} {'cpu s':>7} {'fit s':>7} {'import s':>8} "
        f"{'cold proc s':>11} "
        f"{'cold fit s':>10} {'min ESS':>8} {'max rhat':>8}  density  pymc"
    )
    for case, r in results.items():
        print(
            f"{case:<18} {r['process_seconds']:9.2f} {r['cpu_seconds']:7.2f} "
            f"{r['fit_seconds']:7.2f} "
            f"{r['import_seconds']:8.2f} {r.get('cold_process_seconds', float('nan')):11.2f} "
            f"{r.get('cold_fit_seconds', float('nan')):10.2f} {r['min_ess_bulk']:8.0f} "
            f"{r['max_r_hat']:8.3f}  {r['log_density']:<8} {r['pymc_imported']}"
        )
    for case in results:
        base = BASELINES.get(case, "gaussian")
        if case != base and base in results:
            process = results[case]["process_seconds"] / results[base]["process_seconds"]
            cpu = results[case]["cpu_seconds"] / results[base]["cpu_seconds"]
            fit = results[case]["fit_seconds"] / results[base]["fit_seconds"]
            print(
                f"{case} / {base} (warm, median of {args.repeats}): "
                f"process {process:.2f}x, cpu {cpu:.2f}x, fit {fit:.2f}x"
            )
    return results


if __name__ == "__main__":
    main()
