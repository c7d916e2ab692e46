"""NUTS for a latent class mixture in a fresh process: the hand-written density
(``bayesmix/families/category_logdensity.py``, nutpie, no PyMC) against the former
route (the PyMC model of ``build_family_pymc`` compiled and sampled by PyMC's NUTS).

Each run is one fresh Python process (time it from outside, the whole process):
``python -m benchmarks.latent_class_nuts CASE``. Cases, all on 2,000 simulated rows,
K=3, 2 chains x 500 tuning steps + 500 draws, seed 0:

- ``bernoulli``: ``Mixture(3, Bernoulli()).fit(X, method="nuts")`` on 10 binary items;
- ``bernoulli_pymc``: the same model and start (the MAP-EM estimate) by
  ``build_family_pymc`` + ``pm.sample`` called here directly (there is no public switch);
- ``categorical``, ``categorical_pymc``: the same for ``Categorical()`` on 10 items of
  2 to 5 categories.

The child prints one JSON line: the seconds of the fit (``fit``: EM start, sampling,
relabelling; ``pymc``: EM start, model build, compile and sampling), the route, whether
PyMC was imported and the smallest bulk ESS of the item probabilities.
"""

from __future__ import annotations

import json
import sys
import time
import warnings

N_ROWS, N_ITEMS, N_COMPONENTS = 2_000, 10, 3
SETTINGS = dict(chains=2, draws=500, tune=500)
CASES = ("bernoulli", "bernoulli_pymc", "categorical", "categorical_pymc")


def simulate(kind: str, rng) -> object:
    """``N_ROWS`` rows of ``N_ITEMS`` items from three classes (weights 0.5, 0.3, 0.2)."""
    import numpy as np

    z = rng.choice(N_COMPONENTS, size=N_ROWS, p=[0.5, 0.3, 0.2])
    if kind == "bernoulli":
        items = rng.uniform(0.05, 0.95, (N_COMPONENTS, N_ITEMS))
        return (rng.uniform(size=(N_ROWS, N_ITEMS)) < items[z]).astype(float)
    sizes = 2 + np.arange(N_ITEMS) % 4
    columns = []
    for size in sizes:
        table = rng.dirichlet(np.ones(size), N_COMPONENTS)
        cumulative = np.cumsum(table[z], axis=1)
        columns.append((rng.uniform(size=(N_ROWS, 1)) > cumulative[:, :-1]).sum(axis=1))
    return np.column_stack(columns).astype(float)


def pymc_route(model, X, seed: int):
    """The former route, as ``fit_family_nuts`` took it: the MAP-EM start, the PyMC model,
    PyMC's NUTS. Returns the sampler's DataTree."""
    import pymc as pm

    from bayesmix.inference.bayes.family import build_family_pymc

    data = model.check_data(X)
    em = model.fit(data, method="map", random_state=seed, n_init=5)
    start = {"weights": em.parameters["weights"]}
    start.update(model.family.pymc_initial_values(em.parameters, em.priors))
    with build_family_pymc(model, data, em.priors):
        return pm.sample(
            SETTINGS["draws"],
            tune=SETTINGS["tune"],
            chains=SETTINGS["chains"],
            random_seed=seed,
            nuts_sampler="pymc",
            initvals=start,
            progressbar=False,
            compute_convergence_checks=False,
        )


def main(case: str) -> dict:
    warnings.simplefilter("ignore")
    import numpy as np

    import bayesmix as bm

    kind = case.removesuffix("_pymc")
    X = simulate(kind, np.random.default_rng(0))
    family = bm.families.Bernoulli() if kind == "bernoulli" else bm.families.Categorical()
    model = bm.Mixture(N_COMPONENTS, family.for_data(X))
    started = time.perf_counter()
    if case.endswith("_pymc"):
        import arviz as az

        tree = pymc_route(model, X, 0)
        posterior = tree["posterior"].dataset
        names = [name for name in posterior.data_vars if name.startswith("probabilities")]
        ess = float(np.nanmin([np.nanmin(az.ess(posterior[name]).values) for name in names]))
        route = "pymc"
    else:
        fit = model.fit(X, method="nuts", random_state=0, progressbar=False, **SETTINGS)
        table = fit.summary()
        table = table[table.index.str.startswith("probabilities") & (table["sd"] > 0)]
        ess = float(table["ess_bulk"].astype(float).min())
        route = fit.settings["log_density"]
    report = {
        "case": case,
        "seconds": time.perf_counter() - started,
        "route": route,
        "pymc_imported": "pymc" in sys.modules,
        "min_ess_bulk": ess,
    }
    print(json.dumps(report))
    return report


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "bernoulli")
