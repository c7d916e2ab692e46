"""Child process of tests/test_interrupt.py: ``python interrupt_child.py MODE MARKER``.

Fits a small model by the method MODE names, with budgets far too long to finish, and
writes the file MARKER once the fit has done some work worth keeping (draws kept past
tuning, ADVI iterations, finished EM starts): the parent then sends a real SIGINT. The
hooks below only watch (or, for ADVI, switch off the stopping rule so that the fit cannot
end on its own); the interrupt itself goes through bayesmix's code untouched. Prints one
JSON line describing the result (settings, draws' shape and finiteness, warnings).

Modes: gibbs, nuts (nutpie on bayesmix's density), nuts_missing (nutpie on the compiled
PyMC model of data with NaN), nuts_pymc (PyMC's own NUTS on the compiled PyMC model), advi
and advi_minibatch (PyMC-compiled ADVI, full batch and minibatch), family_nuts and
family_advi (a Poisson mixture: nutpie and ADVI on the hand-written density),
family_advi_missing (PyMC's ADVI on the Poisson mixture's model of data with NaN), vb,
vb_dask (stochastic VB on a Dask array), em;
nuts_tuning (SIGINT while nothing is kept: the interrupt must come through); gibbs_twice
(a second SIGINT while the partial result is assembled: it must interrupt that too).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import time
import warnings
from pathlib import Path

import numpy as np

import bayesmix as bm

MODE, MARKER = sys.argv[1], Path(sys.argv[2])
TUNE, KEPT = 50, 20  # tuning steps; draws (per chain) made before the marker


def mark() -> None:
    if not MARKER.exists():
        MARKER.write_text("started")


rng = np.random.default_rng(0)
X = np.vstack([rng.normal(-3.0, 1.0, (100, 2)), rng.normal(3.0, 1.0, (100, 2))])
model = bm.GaussianMixture(2, covariance_type="diag")

if MODE in ("gibbs", "gibbs_twice"):
    import bayesmix.inference.bayes.gibbs as gibbs

    sweep, calls = gibbs.gibbs_sweep, []

    def counted(*args, **kwargs):
        calls.append(1)
        if len(calls) >= TUNE + KEPT:
            mark()
        return sweep(*args, **kwargs)

    gibbs.gibbs_sweep = counted
    if MODE == "gibbs_twice":  # a second Ctrl-C while the partial result is assembled
        warn = gibbs.warn_interrupted

        def warn_then_interrupt(*args, **kwargs):
            warn(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(5.0)  # the signal arrives here
            print("the second interrupt was swallowed", flush=True)

        gibbs.warn_interrupted = warn_then_interrupt
    options = dict(method="gibbs", draws=1_000_000, tune=TUNE, chains=2, mode_jumps=False)
elif MODE in ("nuts", "nuts_tuning", "family_nuts", "nuts_missing"):
    import nutpie

    sample = nutpie.sample

    def progress(chains) -> None:  # nutpie's progress report, every 100 ms
        if MODE == "nuts_tuning" or all(
            not c.tuning and c.finished_draws >= TUNE + KEPT for c in chains
        ):
            mark()

    def watched(*args, **kwargs):
        return sample(*args, progress_callback=progress, **kwargs)

    nutpie.sample = watched
    tune = 1_000_000 if MODE == "nuts_tuning" else TUNE
    options = dict(method="nuts", draws=1_000_000, tune=tune, chains=2)
    if MODE == "nuts_missing":  # nutpie on the compiled PyMC model (data with NaN)
        X[::10, 1] = np.nan
        options["missing"] = "marginalize"
elif MODE == "nuts_pymc":
    import pymc as pm

    sample, reached = pm.sample, {}

    def watched(*args, **kwargs):
        callback = kwargs.get("callback")

        def watch(trace, draw):  # the chains run in parallel, each at its own pace
            reached[draw.chain] = draw.draw_idx
            if len(reached) == 2 and min(reached.values()) >= TUNE + KEPT:
                mark()
            if callback is not None:
                callback(trace=trace, draw=draw)

        return sample(*args, **{**kwargs, "callback": watch})

    pm.sample = watched
    options = dict(method="nuts", sampler="pymc", draws=1_000_000, tune=TUNE, chains=2)
elif MODE in ("advi", "family_advi", "advi_minibatch"):
    import bayesmix.inference.bayes.advi as advi
    import bayesmix.inference.bayes.fit as bayes_fit

    module = advi if MODE == "family_advi" else bayes_fit
    bar = module.progress_bar

    @contextlib.contextmanager
    def marking_bar(n, show, description):
        with bar(n, show, description) as advance:
            yield lambda steps: (mark(), advance(steps))

    module.progress_bar = marking_bar
    # never converged: the fit can only end by the interrupt
    bayes_fit._ElboConvergence.check = lambda self, losses: False
    advi._Convergence.check = lambda self, params, step: False
    bayes_fit._tail_settled = lambda windows, sds, tolerance: False
    options = dict(method="advi", n=10_000_000)
    if MODE == "advi_minibatch":
        options["batch_size"] = 50
elif MODE == "family_advi_missing":  # PyMC's own ADVI (a family's model with NaN)
    from pymc.variational.callbacks import CheckParametersConvergence

    def marking_check(self, approx, loss, i):  # never stops; marks after 200 steps
        if i >= 200:
            mark()

    CheckParametersConvergence.__call__ = marking_check
    options = dict(method="advi", n=10_000_000, missing="marginalize")
elif MODE == "vb":
    import bayesmix.inference.vb as vb

    bound, bounds = vb._lower_bound, []

    def counted_bound(*args, **kwargs):
        bounds.append(1)
        if len(bounds) >= 20:  # iterations made
            mark()
        return bound(*args, **kwargs)

    vb._lower_bound = counted_bound
    # random starts: k-means' would repeat, and repeated starts are not run again
    options = dict(method="vb", n_init=1_000_000, max_iter=1000, init="random")
elif MODE == "vb_dask":  # stochastic VB on a Dask array (dask's threaded scheduler)
    import dask.array as da

    import bayesmix.inference.vb_dask as vb_dask

    estep, steps = vb_dask._estep, []

    def counted_estep(*args, **kwargs):
        steps.append(1)
        if len(steps) > 30:  # 30 minibatch steps made
            mark()
        return estep(*args, **kwargs)

    vb_dask._estep = counted_estep
    X = da.from_array(np.vstack([X] * 10), chunks=(100, 2))  # 2,000 rows, 20 chunks
    # a step size that stays large and a tol no change meets: only Ctrl-C ends the fit
    options = dict(
        method="vb",
        mode="stochastic",
        batch_chunks=1,
        learning_decay=0.51,
        max_iter=10_000_000,
        tol=1e-300,
    )
elif MODE == "em":
    import bayesmix.inference.em.fit as em_fit

    run, runs = em_fit._run_em, []

    def counted_run(*args, **kwargs):
        runs.append(1)
        if len(runs) >= 3:  # two starts have run
            mark()
        return run(*args, **kwargs)

    em_fit._run_em = counted_run
    X = np.vstack([rng.normal(-3.0, 1.0, (800, 4)), rng.normal(3.0, 1.0, (800, 4))])
    model = bm.GaussianMixture(6, covariance_type="full")
    options = dict(method="em", n_init=500, tol=0.0, max_iter=100_000)
else:
    raise SystemExit(f"unknown mode {MODE!r}")

if MODE.startswith("family"):
    X = np.concatenate([rng.poisson(2.0, (100, 2)), rng.poisson(12.0, (100, 2))])
    if MODE == "family_advi_missing":
        X = X.astype(float)
        X[::10, 1] = np.nan
    model = bm.Mixture(2, bm.families.Poisson())

with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    result = model.fit(X, random_state=0, **options)
if hasattr(result, "posterior"):
    values = np.stack([result.posterior[name].values for name in ("weights",)])
    n_draws = result.posterior.sizes["draw"]
else:
    values, n_draws = result.means, 1
print(
    json.dumps(
        {
            "settings": {
                k: v for k, v in result.settings.items() if isinstance(v, (int, float, str, bool))
            },
            "n_draws": int(n_draws),
            "finite": bool(np.isfinite(values).all()),
            "converged": bool(getattr(result, "converged", False)),
            "warnings": [f"{w.category.__name__}: {w.message}" for w in caught],
        }
    )
)
