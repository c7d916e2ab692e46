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
    pymc_inputs,
)
from bayesmix.bayes.relabel import apply_permutations, stephens_permutations
from bayesmix.bayes.result import BayesResult
from bayesmix.data import Data
from bayesmix.results import parameters_dataset
from bayesmix.validation import check_choice, check_float, check_int, check_random_state

if TYPE_CHECKING:
    from bayesmix.model import GaussianMixture

__all__ = ["fit_nuts", "fit_vi", "SAMPLERS", "IDENTIFICATIONS", "clear_compiled_models"]

SAMPLERS = ("nutpie", "pymc", "numpyro", "blackjax")
IDENTIFICATIONS = ("ordered", "relabel", "none")
_EXTRA = {"nutpie": ("nutpie", "nutpie"), "numpyro": ("numpyro", "jax"), "blackjax": ("blackjax", "jax")}

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


def _spec(
    model: GaussianMixture, data: Data, identify: str, order_by: Any, seed: int
) -> ModelSpec:
    identify = check_choice(identify, "identify", IDENTIFICATIONS)
    order_feature = None
    if identify == "ordered" and model.n_components > 1:
        order_feature = _order_feature(model, data, order_by, seed)
    return ModelSpec(model.covariance_type, model.n_components, data.n_features, order_feature)


def _order_feature(model: GaussianMixture, data: Data, order_by: Any, seed: int) -> int:
    if order_by is None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            em = model.fit(data, method="em", n_init=3, random_state=seed)
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
    spec = _spec(model, data, identify, order_by, seed)
    priors = model.resolve_priors(data)

    start = time.perf_counter()
    settings = dict(draws=draws, tune=tune, chains=chains, sampler=sampler, target_accept=target_accept)
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
    learning_rate: float = 0.02,
    tolerance: float = 1e-3,
    identify: str = "ordered",
    order_by: Any = None,
    random_state: Any = None,
    progressbar: bool = False,
) -> BayesResult:
    """Fit a variational approximation with PyMC (``advi`` or ``fullrank_advi``)."""
    import pymc as pm
    from pymc.variational.callbacks import CheckParametersConvergence

    n = check_int(n, "n")
    draws = check_int(draws, "draws")
    learning_rate = check_float(learning_rate, "learning_rate", inclusive=False)
    tolerance = check_float(tolerance, "tolerance", inclusive=False)
    seed = _seed(random_state)
    spec = _spec(model, data, identify, order_by, seed)
    priors = model.resolve_priors(data)
    pm_model = build_pymc(spec, model.structure, data, priors)
    start = time.perf_counter()
    with pm_model:
        approx = pm.fit(
            n=n,
            method=method,
            random_seed=seed,
            start=initial_point(spec),
            progressbar=progressbar,
            obj_optimizer=pm.adam(learning_rate=learning_rate),
            callbacks=[CheckParametersConvergence(every=100, tolerance=tolerance, diff="relative")],
        )
        tree = approx.sample(draws, random_seed=seed)
    elbo = -np.asarray(approx.hist, dtype=float)
    settings = dict(
        method=method,
        n=n,
        n_iter=len(elbo),
        converged=int(len(elbo) < n),
        draws=draws,
        learning_rate=learning_rate,
        identify=identify,
        order_feature=-1 if spec.order_feature is None else spec.order_feature,
        random_state=seed,
        fit_seconds=time.perf_counter() - start,
    )
    return _result(model, data, priors, spec, tree, settings, elbo=elbo)


def _result(model, data, priors, spec, tree, settings, sample_stats=False, elbo=None):
    structure = model.structure
    posterior = tree["posterior"].dataset
    weights = posterior["weights"].values
    means = posterior["means"].values
    precision = posterior[structure.pymc_precision_name].values
    covariances = structure.covariance_from_precision(precision, spec.n_features)
    covariances = np.broadcast_to(covariances, means.shape + (spec.n_features,)).copy()
    if settings["identify"] == "relabel" and spec.n_components > 1:
        weights, means, covariances, sweeps = _relabel(model, data, weights, means, covariances)
        settings["relabel_sweeps"] = sweeps
    params = parameters_dataset(weights, means, covariances, data.feature_names)
    stats = _sample_stats(tree) if sample_stats else None
    return BayesResult(
        model=model,
        posterior=params,
        data=data,
        priors=priors,
        sample_stats=stats,
        elbo=elbo,
        settings=settings,
    )


def _relabel(model, data, weights, means, covariances):
    """Stephens' relabelling of every parameter from the per-draw memberships."""
    n_chains, n_draws = weights.shape[:2]
    provisional = BayesResult(
        model=model,
        posterior=parameters_dataset(weights, means, covariances, data.feature_names),
        data=data,
        priors=None,
        settings={},
    )
    membership = provisional.membership_draws(data).values.reshape(n_chains * n_draws, data.n_obs, -1)
    perms, sweeps = stephens_permutations(membership)
    flat = [a.reshape((n_chains * n_draws,) + a.shape[2:]) for a in (weights, means, covariances)]
    relabelled = [apply_permutations(a, perms, axis=1) for a in flat]
    return (*(a.reshape((n_chains, n_draws) + a.shape[1:]) for a in relabelled), sweeps)


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
