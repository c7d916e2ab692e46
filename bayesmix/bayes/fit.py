"""NUTS and ADVI fits of a declaration through PyMC, returned as :class:`BayesResult`."""

from __future__ import annotations

import importlib.util
import time
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from bayesmix.bayes.builder import (
    ModelSpec,
    build_pymc,
    choose_order_feature,
    initial_point,
    missing_patterns,
    point_estimate_start,
    pymc_inputs,
)
from bayesmix.bayes.result import BayesResult
from bayesmix.data import Data
from bayesmix.exceptions import ConvergenceWarning
from bayesmix.results import parameters_dataset
from bayesmix.validation import check_choice, check_float, check_int, check_random_state

if TYPE_CHECKING:
    from bayesmix.model import GaussianMixture

__all__ = [
    "fit_nuts",
    "fit_vi",
    "quick_em",
    "SAMPLERS",
    "IDENTIFICATIONS",
    "clear_compiled_models",
]

SAMPLERS = ("nutpie", "pymc", "numpyro", "blackjax")
INITIAL_VI_SD = 0.1
IDENTIFICATIONS = ("ordered", "relabel", "none")
_EXTRA = {
    "nutpie": ("nutpie", "nutpie"),
    "numpyro": ("numpyro", "jax"),
    "blackjax": ("blackjax", "jax"),
}

# nutpie models compiled in this process, keyed by what fixes their graph; data and priors
# are swapped in with ``with_data``, so a refit skips the compile.
_NUTPIE_CACHE: dict[ModelSpec, Any] = {}


def clear_compiled_models() -> None:
    """Forget the compiled models kept for reuse in this process."""
    _NUTPIE_CACHE.clear()


def _seed(random_state: Any) -> int:
    if random_state is not None and not isinstance(random_state, np.random.Generator):
        check_random_state(random_state)  # validates type and sign
        if isinstance(random_state, (int, np.integer)):
            return int(random_state)
    return int(check_random_state(random_state).integers(2**31 - 1))


def quick_em(model: GaussianMixture, data: Data, seed: int):
    """A MAP-EM point estimate (3 restarts) to choose the ordered feature and to start
    variational fits; MAP keeps it inside the prior's support."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return model.fit(data, method="map", n_init=3, random_state=seed)


def _spec(model: GaussianMixture, data: Data, identify: str, order_by: Any, em) -> ModelSpec:
    """The model's graph; ``em`` (a point estimate) picks the ordered feature when
    ``order_by`` is not given."""
    identify = check_choice(identify, "identify", IDENTIFICATIONS)
    order_feature = None
    if identify == "ordered" and model.n_components > 1:
        order_feature = _order_feature(data, order_by, em)
    return ModelSpec(
        model.covariance_type,
        model.n_components,
        data.n_features,
        order_feature,
        missing_patterns(data),
    )


def _order_feature(data: Data, order_by: Any, em) -> int:
    if order_by is None:
        return choose_order_feature(data, em.means, em.covariances)
    if isinstance(order_by, str):
        if order_by not in data.feature_names:
            raise ValueError(
                f"order_by={order_by!r} is not a feature; choose one of {list(data.feature_names)}."
            )
        return data.feature_names.index(order_by)
    index = check_int(order_by, "order_by", minimum=0)
    if index >= data.n_features:
        raise ValueError(f"order_by={index} is out of range for {data.n_features} features.")
    return index


def _require(sampler: str) -> None:
    if sampler in _EXTRA and importlib.util.find_spec(_EXTRA[sampler][0]) is None:
        module, extra = _EXTRA[sampler]
        raise ImportError(
            f"sampler={sampler!r} needs the package {module!r}; install it with "
            f"pip install 'bayesmix[{extra}]'."
        )


def fit_nuts(
    model: GaussianMixture,
    data: Data,
    *,
    draws: int = 1000,
    tune: int | None = None,
    chains: int = 4,
    cores: int | None = None,
    sampler: str | None = None,
    target_accept: float = 0.8,
    identify: str = "ordered",
    order_by: Any = None,
    random_state: Any = None,
    progressbar: bool = False,
) -> BayesResult:
    """Sample the posterior by NUTS; see :meth:`GaussianMixture.fit`."""
    draws = check_int(draws, "draws")
    chains = check_int(chains, "chains")
    tune = 1000 if tune is None else check_int(tune, "tune", minimum=0)
    cores = min(chains, 2) if cores is None else check_int(cores, "cores")
    target_accept = check_float(target_accept, "target_accept", minimum=0.0, inclusive=False)
    if target_accept >= 1:
        raise ValueError(f"target_accept must be < 1; got {target_accept}.")
    sampler = "nutpie" if sampler is None else check_choice(sampler, "sampler", SAMPLERS)
    _require(sampler)
    seed = _seed(random_state)
    start = time.perf_counter()
    needs_em = identify == "ordered" and order_by is None and model.n_components > 1
    spec = _spec(model, data, identify, order_by, quick_em(model, data, seed) if needs_em else None)
    priors = model.resolve_priors(data)
    settings = dict(
        draws=draws, tune=tune, chains=chains, sampler=sampler, target_accept=target_accept
    )
    if sampler == "nutpie":
        tree = _sample_nutpie(spec, model, data, priors, seed, progressbar, cores, **settings)
    else:
        import pymc as pm

        pm_model = build_pymc(spec, model.structure, data, priors)
        with pm_model:
            tree = pm.sample(
                draws,
                tune=tune,
                chains=chains,
                cores=cores,
                random_seed=seed,
                nuts_sampler=sampler,
                initvals=initial_point(spec),
                progressbar=progressbar,
                compute_convergence_checks=False,
                target_accept=target_accept,
            )
    settings.update(
        method="nuts",
        identify=identify,
        order_feature=-1 if spec.order_feature is None else spec.order_feature,
        random_state=seed,
        fit_seconds=time.perf_counter() - start,
    )
    return _result(model, data, priors, spec, tree, settings, sample_stats=True)


def _sample_nutpie(spec, model, data, priors, seed, progressbar, cores, **settings):
    import nutpie

    compiled = _NUTPIE_CACHE.get(spec)
    if compiled is None:
        pm_model = build_pymc(spec, model.structure, data, priors)
        compiled = nutpie.compile_pymc_model(pm_model, initial_points=initial_point(spec))
        _NUTPIE_CACHE[spec] = compiled
    else:
        compiled = compiled.with_data(**pymc_inputs(data, priors, model.structure))
    return nutpie.sample(
        compiled,
        draws=settings["draws"],
        tune=settings["tune"],
        chains=settings["chains"],
        cores=cores,
        seed=seed,
        save_warmup=False,
        progress_bar=progressbar,
        target_accept=settings["target_accept"],
    )


def fit_vi(
    model: GaussianMixture,
    data: Data,
    method: str,
    *,
    n: int = 30000,
    draws: int = 1000,
    learning_rate: float = 0.005,
    tolerance: float = 1e-4,
    identify: str = "ordered",
    order_by: Any = None,
    random_state: Any = None,
    progressbar: bool = False,
) -> BayesResult:
    """Fit a variational approximation with PyMC (``advi`` or ``fullrank_advi``)."""
    import pymc as pm

    n = check_int(n, "n")
    draws = check_int(draws, "draws")
    learning_rate = check_float(learning_rate, "learning_rate", inclusive=False)
    tolerance = check_float(tolerance, "tolerance", inclusive=False)
    seed = _seed(random_state)
    start = time.perf_counter()
    em = quick_em(model, data, seed)
    spec = _spec(model, data, identify, order_by, em)
    priors = model.resolve_priors(data)
    pm_model = build_pymc(spec, model.structure, data, priors)
    em_start = point_estimate_start(
        spec, model.structure, priors, em.weights, em.means, em.params.covariances
    )
    convergence = _ElboConvergence(tolerance)
    with pm_model:
        inference_class = pm.ADVI if method == "advi" else pm.FullRankADVI
        inference = inference_class(start=em_start, random_seed=seed)
        _narrow_start(inference.approx, INITIAL_VI_SD)
        approx = inference.fit(
            n,
            obj_optimizer=pm.adam(learning_rate=learning_rate),
            callbacks=[convergence],
            progressbar=progressbar,
        )
        tree = approx.sample(draws, random_seed=seed)
    elbo = -np.asarray(approx.hist, dtype=float)
    if not convergence.converged:
        warnings.warn(
            f"{method} did not converge in n={n} iterations (relative ELBO change >= "
            f"{tolerance}); increase n or learning_rate.",
            ConvergenceWarning,
            stacklevel=3,
        )
    settings = dict(
        method=method,
        n=n,
        n_iter=len(elbo),
        converged=int(convergence.converged),
        draws=draws,
        learning_rate=learning_rate,
        identify=identify,
        order_feature=-1 if spec.order_feature is None else spec.order_feature,
        random_state=seed,
        fit_seconds=time.perf_counter() - start,
    )
    return _result(model, data, priors, spec, tree, settings, elbo=elbo)


def _narrow_start(approx, sd: float) -> None:
    """Start the approximation at standard deviation ``sd`` around the point estimate
    (PyMC starts at about 0.7 (mean-field) or 1.3 (full-rank) in unconstrained space,
    wide enough to lose the EM start)."""
    rho = np.log(np.expm1(sd))  # inverse of the softplus PyMC applies
    for group in approx.groups:
        params = group.shared_params
        if "rho" in params:
            params["rho"].set_value(np.full_like(params["rho"].get_value(), rho))
        if "L_tril" in params:
            rows, cols = np.tril_indices(group.ddim)
            params["L_tril"].set_value(np.where(rows == cols, rho, 0.0))


class _ElboConvergence:
    """Stops ``pm.fit`` once the mean loss over a window of iterations differs from the
    window before by less than ``tolerance`` (relative) or by less than twice the
    standard error of that difference (the ELBO is flat within its Monte Carlo noise)."""

    def __init__(self, tolerance: float, window: int = 500) -> None:
        self.tolerance = tolerance
        self.window = window
        self.converged = False

    def __call__(self, approx, losses, i) -> None:
        if i % self.window or len(losses) < 2 * self.window:
            return
        recent, before = losses[-self.window :], losses[-2 * self.window : -self.window]
        change = abs(np.mean(recent) - np.mean(before))
        noise = 2.0 * np.sqrt((np.var(recent) + np.var(before)) / self.window)
        if change <= max(self.tolerance * abs(np.mean(before)), noise):
            self.converged = True
            raise StopIteration


def _result(model, data, priors, spec, tree, settings, sample_stats=False, elbo=None):
    structure = model.structure
    posterior = tree["posterior"].dataset
    weights = posterior["weights"].values
    means = posterior["means"].values
    precision = posterior[structure.pymc_precision_name].values
    covariances = structure.covariance_from_precision(precision, spec.n_features)
    covariances = np.broadcast_to(covariances, means.shape + (spec.n_features,)).copy()
    result = BayesResult(
        model=model,
        posterior=parameters_dataset(weights, means, covariances, data.feature_names),
        data=data,
        priors=priors,
        sample_stats=_sample_stats(tree) if sample_stats else None,
        elbo=elbo,
        settings=settings,
    )
    if settings["identify"] == "relabel" and spec.n_components > 1:
        result = result.relabel()
    return result


def _sample_stats(tree: xr.DataTree) -> xr.Dataset | None:
    if "sample_stats" not in tree.children:
        return None
    stats = tree["sample_stats"].dataset
    numeric = [
        name
        for name, var in stats.data_vars.items()
        if var.dtype.kind in "biuf" and set(var.dims) <= {"chain", "draw"}
    ]
    return stats[numeric]
