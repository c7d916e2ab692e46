"""ADVI for a count mixture in a fresh process: bayesmix's hand-written density
(:mod:`bayesmix.inference.bayes.advi`) against PyMC's ADVI on the compiled PyMC model.

Each run is a fresh Python process that simulates its data (``Mixture(3, Poisson())`` on
10,000 x 3 counts, rates 1-15, as ``benchmarks/family_nuts.py``), fits by ADVI with the
defaults (at most 30,000 Adam steps at learning rate 0.005, PyMC's stopping rule, 1000
draws, relabelling) and prints its fit's own seconds, its iterations and the posterior
means and sds; the wall time of the whole process (imports, data, fit) is measured from
outside. Routes:

- ``bayesmix``: the default (complete data, a family with ``nutpie_density``);
- ``pymc``: the same family with ``nutpie_density`` returning None (a subclass), which is
  what the family fit falls back to: PyMC's model is built and compiled in the process.

The posterior means of each route are compared with each other and with nutpie's NUTS
on the hand-written density (defaults, one run).

Warm: numba's on-disk cache is filled by one run of each route first, then
``--repeats`` runs of each, alternating; medians.

Run: ``python -m benchmarks.family_advi [--repeats 3] [--method advi]``; one fit:
``python -m benchmarks.family_advi --child bayesmix``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

N_ROWS, N_FEATURES, N_COMPONENTS = 10_000, 3, 3
ROUTES = ("bayesmix", "pymc")
REFERENCE = "nuts"  # nutpie's NUTS on the hand-written density (defaults), run once


def simulate():
    """10,000 x 3 Poisson counts from three components (weights 0.3, 0.3, 0.4)."""
    import numpy as np

    rng = np.random.default_rng(0)
    z = rng.choice(N_COMPONENTS, size=N_ROWS, p=[0.3, 0.3, 0.4])
    centres = np.array([[1.0, 8.0, 3.0], [6.0, 2.0, 9.0], [15.0, 12.0, 1.5]])
    return rng.poisson(centres[z][:, :N_FEATURES]).astype(float)


def child(route: str, method: str) -> dict:
    """One fit by ``route`` in this process: its report."""
    started = time.perf_counter()
    import bayesmix as bm

    imported = time.perf_counter() - started
    family = bm.families.Poisson()
    if route == "pymc":

        class PyMCPoisson(bm.families.Poisson):
            def nutpie_density(self, X, priors, n_components):
                return None

        family = PyMCPoisson()
    fit = bm.Mixture(N_COMPONENTS, family).fit(
        simulate(),
        method="nuts" if route == REFERENCE else method,
        random_state=0,
        progressbar=False,
    )
    draws = fit.posterior
    return {
        "import_seconds": imported,
        "fit_seconds": fit.settings["fit_seconds"],
        "iterations": fit.settings.get("iterations", 0),
        "log_density": fit.settings["log_density"],
        "pymc_imported": "pymc" in sys.modules,
        "rates": fit.means.tolist(),
        "weights": fit.weights.tolist(),
        "rates_sd": draws["rates"].std(("chain", "draw")).values.tolist(),
        "weights_sd": draws["weights"].std(("chain", "draw")).values.tolist(),
    }


def run_once(route: str, method: str) -> dict:
    """One fresh process: its report plus ``process_seconds`` (wall, from outside)."""
    started = time.perf_counter()
    command = [sys.executable, "-m", "benchmarks.family_advi", "--child", route]
    run = subprocess.run([*command, "--method", method], capture_output=True, text=True, check=True)
    out = json.loads(run.stdout.splitlines()[-1])
    out["process_seconds"] = time.perf_counter() - started
    return out


def agreement(new: dict, old: dict) -> dict:
    """The largest difference of the posterior means (rates, weights) between routes,
    absolute and in units of the new route's posterior sd."""
    import numpy as np

    out = {}
    for name in ("rates", "weights"):
        difference = np.abs(np.subtract(new[name], old[name]))
        out[name] = float(difference.max())
        out[f"{name}_in_sd"] = float((difference / np.asarray(new[f"{name}_sd"])).max())
    return out


def _summary(runs: list[dict]) -> dict:
    keys = ("process_seconds", "fit_seconds", "import_seconds", "iterations")
    summary = {key: statistics.median(r[key] for r in runs) for key in keys}
    summary.update(log_density=runs[0]["log_density"], pymc=any(r["pymc_imported"] for r in runs))
    return summary


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--method", default="advi", choices=("advi", "fullrank_advi"))
    parser.add_argument(
        "--child", choices=(*ROUTES, REFERENCE), help="one fit in this process (JSON)"
    )
    args = parser.parse_args(argv)
    if args.child:
        report = child(args.child, args.method)
        print(json.dumps(report))
        return report
    for route in ROUTES:
        run_once(route, args.method)  # fills numba's cache
    runs = {route: [] for route in ROUTES}
    for _ in range(args.repeats):
        for route in ROUTES:
            runs[route].append(run_once(route, args.method))
    results = {route: _summary(runs[route]) for route in ROUTES}
    reference = run_once(REFERENCE, args.method)
    results["agreement"] = {
        "bayesmix - pymc": agreement(runs["bayesmix"][0], runs["pymc"][0]),
        **{f"nuts - {route}": agreement(reference, runs[route][0]) for route in ROUTES},
    }
    print(f"N={N_ROWS}, K={N_COMPONENTS}, D={N_FEATURES}, {args.method} defaults")
    print(f"{'route':<9} {'process s':>9} {'fit s':>7} {'import s':>8} {'iterations':>10}  pymc")
    for route in ROUTES:
        r = results[route]
        print(
            f"{route:<9} {r['process_seconds']:9.2f} {r['fit_seconds']:7.2f} "
            f"{r['import_seconds']:8.2f} {r['iterations']:10.0f}  {r['pymc']}"
        )
    ratio = results["pymc"]["process_seconds"] / results["bayesmix"]["process_seconds"]
    print(f"pymc / bayesmix (median of {args.repeats}): process {ratio:.1f}x")
    print("posterior means, largest difference (in posterior sds of the first named):")
    for pair, a in results["agreement"].items():
        print(
            f"  {pair}: rates "
            f"{a['rates']:.4f} ({a['rates_in_sd']:.2f} sd), weights {a['weights']:.4f} "
            f"({a['weights_in_sd']:.2f} sd)"
        )
    return results


if __name__ == "__main__":
    main()
