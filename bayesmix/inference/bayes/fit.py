"""NUTS (nutpie on bayesmix's own log density, or PyMC's samplers) and ADVI (PyMC) fits of a
declaration, returned as :class:`BayesResult`."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import importlib.util
import numbers
import sys
import time
import types
import warnings
from typing import TYPE_CHECKING, Any

import numpy as np
import xarray as xr

from bayesmix.data import Data
from bayesmix.exceptions import ConvergenceWarning
from bayesmix.families.gaussian.builder import (
    ModelSpec,
    build_pymc,
    initial_point,
    missing_patterns,
    point_estimate_start,
    pymc_inputs,
)
from bayesmix.inference.em.fit import fit_em
from bayesmix.inference.interrupt import (
    INTERRUPTS,
    completed_draws,
    deferred_sigint,
    is_interrupt,
    keeps_partial_work,
    nested_fits,
    warn_interrupted,
    watch_sigint,
)
from bayesmix.ordering import (
    best_separated_feature,
    best_separating_direction,
    direction_rotation,
    order_posterior,
    resolve_order_by,
)
from bayesmix.results import parameters_dataset
from bayesmix.results.posterior import BayesResult
from bayesmix.validation import check_choice, check_float, check_int, check_random_state

if TYPE_CHECKING:
    from bayesmix.model import GaussianMixture

__all__ = [
    "fit_nuts",
    "fit_vi",
    "quick_em",
    "SAMPLERS",
    "IDENTIFICATIONS",
    "NUTS_IDENTIFICATIONS",
    "clear_compiled_models",
    "posterior_result",
    "identified_result",
    "check_nuts_settings",
    "progress_bar",
    "show_progress",
    "resolve_seed",
    "order_feature",
    "order_rotation",
    "callback_nutpie_model",
    "sample_nutpie",
    "sample_pymc",
    "NUTS_WEIGHT_PRIORS",
    "default_identification",
    "weight_priors",
]

SAMPLERS = ("nutpie", "pymc", "numpyro", "blackjax")
MASS_MATRICES = ("auto", "diag", "low_rank")
INITIAL_VI_SD = 0.1
# Minibatch ADVI (see fit_vi). The Laplace start's Hessian is averaged over minibatches
# of about CURVATURE_ROWS rows in all. Adam's step per coordinate is MINIBATCH_RATE (the
# default learning_rate) x sqrt(batch / N) x its Laplace sd, MINIBATCH_SCALE_RATE times
# that for the log-scale parameters, decaying as (1 + t / (MINIBATCH_DECAY_EPOCHS * N /
# batch)) ** -MINIBATCH_DECAY_POWER. Parameters are averaged over windows of
# MINIBATCH_WINDOW steps; at least MINIBATCH_MIN_WINDOWS windows run; the default
# tolerance is MINIBATCH_MEAN_TOLERANCE posterior sds (see _tail_settled).
CURVATURE_ROWS = 2_000
MINIBATCH_RATE = 1.0
MINIBATCH_SCALE_RATE = 0.2
MINIBATCH_DECAY_POWER = 0.6
MINIBATCH_DECAY_EPOCHS = 1.0
MINIBATCH_WINDOW = 500
MINIBATCH_MIN_WINDOWS = 4
MINIBATCH_MEAN_TOLERANCE = 0.5
IDENTIFICATIONS = ("ordered", "relabel", "none")
# the weight priors of NUTS and ADVI: the declaration's symmetric Dirichlet, or the
# truncated stick-breaking priors of the Dirichlet and Pitman-Yor processes
NUTS_WEIGHT_PRIORS = ("dirichlet", "dirichlet_process", "pitman_yor")
# NUTS' default target acceptance under a stick-breaking weight prior, for Gaussian
# mixtures and the families. Measured (benchmarks/README.md, "Dirichlet-process mixtures
# by NUTS" and "... of the families"): galaxies K=8, 4 chains x 1000 draws, divergent
# transitions 3 and 0 (seeds 0, 1) at 0.8, 0, 0 and 1 (seeds 0-2) at 0.9, none at 0.95;
# Old Faithful K=8: none at 0.8 (seeds 0, 1) nor at 0.9; Poisson (300 rows, K=5) 0, 2
# and 7 at 0.9, none at 0.95; Bernoulli latent classes (500 x 6) 0, 1 and 349 at 0.9,
# none at 0.95
STICK_TARGET_ACCEPT = 0.95
# NUTS also orders along the best-separating direction (see order_rotation)
NUTS_IDENTIFICATIONS = ("ordered", "direction", "relabel", "none")
_EXTRA = {
    "nutpie": ("nutpie", "nutpie"),
    "numpyro": ("numpyro", "jax"),
    "blackjax": ("blackjax", "jax"),
}

# nutpie models compiled from PyMC graphs in this process (data with missing values; complete
# data use bayesmix.families.gaussian.logdensity), keyed by what fixes their graph; data
# and priors are swapped in with ``with_data``, so a refit skips the compile.
_NUTPIE_CACHE: dict[ModelSpec, Any] = {}
# ADVI step and draw functions, keyed by (ModelSpec, method, batch_size); see _CompiledVI
_VI_CACHE: dict[tuple[ModelSpec, str, int | None], _CompiledVI] = {}


def clear_compiled_models() -> None:
    """Forget the compiled models (NUTS and ADVI) kept for reuse in this process."""
    _NUTPIE_CACHE.clear()
    _VI_CACHE.clear()


def resolve_seed(random_state: Any) -> int:
    """One integer seed from ``random_state`` (an int is used as it is)."""
    if random_state is not None and not isinstance(random_state, np.random.Generator):
        check_random_state(random_state)  # validates type and sign
        if isinstance(random_state, (int, np.integer)):
            return int(random_state)
    return int(check_random_state(random_state).integers(2**31 - 1))


def quick_em(model: GaussianMixture, data: Data, seed: int):
    """A MAP-EM point estimate (3 restarts) to choose the ordered feature and to start
    variational fits; MAP keeps it inside the prior's support. ``data`` is the fit's
    validated data, passed down as it is."""
    with warnings.catch_warnings(), nested_fits():  # Ctrl-C here stops the whole fit
        warnings.simplefilter("ignore")
        return map_em(model, data, n_init=3, random_state=seed)


def map_em(model: GaussianMixture, data: Data, **options: Any):
    """``model.fit(data, method="map", **options)`` without going back through the
    door: ``data`` is validated already, NaN marginalised when it allows them."""
    missing = "marginalize" if data.allow_missing else "error"
    return fit_em(model, data, use_priors=True, missing=missing, **options)


def weight_priors(
    model: GaussianMixture, data: Data, weight_prior: Any = "dirichlet", discount: Any = 0.0
):
    """The resolved priors of a NUTS or ADVI fit with ``weight_prior`` and the model
    graph's weight prior (``"dirichlet"`` or ``"stick_breaking"``).

    ``"dirichlet"``: :meth:`~bayesmix.GaussianMixture.resolve_priors`. ``"dirichlet_process"``
    and ``"pitman_yor"`` (``discount`` ``d``): the sticks ``v_k ~ Beta(1 - d, alpha + k
    d)``, ``k = 1 .. K - 1``, the K-th weight the remainder, with ``alpha`` and the
    covariance prior those of ``fit(method="vb")``'s Dirichlet process
    (:func:`bayesmix.inference.vb_weights.interface_concentration`: the declaration's
    ``weight_concentration`` when set to another value than 4, else
    :data:`~bayesmix.inference.vb_weights.DP_CONCENTRATION` = 1;
    :func:`bayesmix.inference.vb.vb_priors`: ``covariance_clusters=1`` unless set).
    ``alpha`` is fixed (no hyperprior).

    Raises
    ------
    ValueError
        An unknown ``weight_prior``; a ``discount`` outside ``[0, 1)`` or given with
        another prior than ``"pitman_yor"``; ``alpha <= -discount``; an asymmetric
        ``weight_concentration`` with a stick-breaking prior.
    """
    from bayesmix.inference.vb import vb_priors
    from bayesmix.inference.vb_weights import (
        check_discount,
        check_stick_prior,
        interface_concentration,
        truncated_stick_parameters,
    )
    from bayesmix.priors import StickBreakingPriors

    weight_prior = check_choice(weight_prior, "weight_prior", NUTS_WEIGHT_PRIORS)
    if weight_prior == "dirichlet":
        check_discount(weight_prior, discount)
        return model.resolve_priors(data), "dirichlet"
    resolved = vb_priors(model, data, "dirichlet_process")
    alpha = interface_concentration(
        weight_prior, resolved.weight_concentration, model.priors is not None
    )
    alpha, discount = check_stick_prior(weight_prior, alpha, discount)
    sticks = truncated_stick_parameters(alpha, model.n_components, discount)
    return StickBreakingPriors(**vars(resolved), weight_sticks=sticks), "stick_breaking"


def default_identification(identify: Any, weight_prior: Any) -> Any:
    """``identify`` of NUTS and ADVI, ``None`` meaning ``"ordered"`` under the Dirichlet
    and ``"relabel"`` under a stick-breaking prior.

    The stick-breaking prior is not exchangeable: ordering the means would tie the
    k-th stick to the k-th smallest mean (another prior than the process'), and its
    sampler meets the ordered transform's walls where empty components cross
    (measured on Old Faithful, K=6: 215 divergent transitions of 2000 ordered, 0
    exchangeable; ``benchmarks/README.md``). So the model is sampled as declared and
    its draws relabelled afterwards (Stephens' KL algorithm).
    """
    if identify is not None:
        return identify
    return "relabel" if weight_prior in ("dirichlet_process", "pitman_yor") else "ordered"


def model_spec(
    model: GaussianMixture,
    data: Data,
    identify: str,
    order_by: Any,
    em,
    weight_prior: str = "dirichlet",
) -> ModelSpec:
    """The model's graph; ``em`` (a point estimate) picks the ordered feature when
    ``order_by`` is not given.

    Parameters
    ----------
    model : GaussianMixture
    data : Data
    identify : {"ordered", "relabel", "none"}
        How labels are identified (see :data:`IDENTIFICATIONS`).
    order_by : str or int or None
        The ordered feature; None lets ``em`` choose it.
    em : MixtureResult or None
        A point estimate, needed only when the feature is chosen.
    weight_prior : {"dirichlet", "stick_breaking"}
        The graph's weight prior (the second value :func:`weight_priors` returns).

    Returns
    -------
    ModelSpec
    """
    identify = check_choice(identify, "identify", IDENTIFICATIONS)
    ordered = identify == "ordered" and model.n_components > 1
    return ModelSpec(
        model.covariance_type,
        model.n_components,
        data.n_features,
        order_feature(data, order_by, em) if ordered else None,
        missing_patterns(data),
        weight_prior,
    )


def _check_identification(data: Data, identify: Any, order_by: Any) -> None:
    """Refuse a bad ``identify`` or ``order_by`` before the MAP-EM start is computed."""
    check_choice(identify, "identify", IDENTIFICATIONS)
    resolve_order_by(order_by, data.feature_names)


def order_feature(data: Data, order_by: Any, em) -> int:
    """The feature that numbers the components (:mod:`bayesmix.ordering`): ``order_by``,
    or the one along which the point estimate ``em`` separates them best."""
    index = resolve_order_by(order_by, data.feature_names)
    return best_separated_feature(em.means, em.covariances) if index is None else index


def order_rotation(spec: ModelSpec, data: Data, priors, em):
    """The direction of ``identify="direction"``: ``(spec, rotation, direction)``.

    The components are ordered along the direction that separates the MAP-EM estimate
    ``em``'s components best (:func:`bayesmix.ordering.best_separating_direction`: a
    feature's axis, a discriminant direction or a pairwise Fisher direction). When that
    is not a feature's axis, the model orders ``z[:, 0]`` of the means
    ``loc + scale * z R^T`` with ``R = direction_rotation(direction, scale)``; the
    returned spec's ordered coordinate is then 0. Otherwise (one feature, an
    exchangeable model, or an axis best) the spec orders that feature, with
    ``rotation = direction = None``.

    Returns
    -------
    spec : ModelSpec
    rotation : numpy.ndarray of shape (D, D) or None
    direction : numpy.ndarray of shape (D,) or None
        Unit vector in the data's units.
    """
    if spec.order_feature is None or data.n_features == 1:
        return spec, None, None
    direction = best_separating_direction(em.means, em.covariances, em.weights)
    axis = np.flatnonzero(np.abs(direction) > 1.0 - 1e-12)
    if axis.size == 1:
        return dataclasses.replace(spec, order_feature=int(axis[0])), None, None
    rotation = direction_rotation(direction, np.broadcast_to(priors.mean_scale, direction.shape))
    return dataclasses.replace(spec, order_feature=0), rotation, direction


def _mass_matrix(mass_matrix: Any, sampler: str, n_features: int) -> str:
    """The mass matrix NUTS adapts: ``"auto"`` is nutpie's ``"low_rank"`` (a diagonal
    plus the directions of the largest posterior correlations) for two or more features,
    ``"diag"`` for one; other samplers adapt a diagonal one.

    Measured (``benchmarks/README.md``): on Old Faithful with K=3 tied, low-rank
    adaptation gave 3x the ESS per draw of the diagonal one with fewer leapfrog steps;
    on 1-D galaxies with K=4 its chains agreed less (r_hat 1.1-1.6 against 1.02-1.05).
    """
    mass_matrix = check_choice(mass_matrix, "mass_matrix", MASS_MATRICES)
    if sampler != "nutpie":
        if mass_matrix == "low_rank":
            raise ValueError(
                f"mass_matrix='low_rank' needs sampler='nutpie'; sampler={sampler!r} "
                "adapts a diagonal mass matrix (use mass_matrix='auto' or 'diag')."
            )
        return "diag"
    if mass_matrix == "auto":
        return "low_rank" if n_features >= 2 else "diag"
    return mass_matrix


def _require(sampler: str) -> None:
    if sampler in _EXTRA and importlib.util.find_spec(_EXTRA[sampler][0]) is None:
        module, extra = _EXTRA[sampler]
        raise ImportError(
            f"sampler={sampler!r} needs the package {module!r}; install it with "
            f"pip install 'bayesmix[{extra}]'."
        )


def check_nuts_settings(
    draws: Any, tune: Any, chains: Any, cores: Any, target_accept: Any
) -> tuple[int, int, int, int, float]:
    """NUTS' settings checked (one-line errors naming them), with the defaults filled:
    1000 tuning steps, ``min(chains, 2)`` cores."""
    draws = check_int(draws, "draws")
    chains = check_int(chains, "chains")
    tune = 1000 if tune is None else check_int(tune, "tune", minimum=0)
    cores = min(chains, 2) if cores is None else check_int(cores, "cores")
    target_accept = check_float(target_accept, "target_accept", minimum=0.0, inclusive=False)
    if target_accept >= 1:
        raise ValueError(f"target_accept must be < 1; got {target_accept}.")
    return draws, tune, chains, cores, target_accept


def fit_nuts(
    model: GaussianMixture,
    data: Data,
    *,
    draws: int = 1000,
    tune: int | None = None,
    chains: int = 4,
    cores: int | None = None,
    sampler: str | None = None,
    target_accept: float | None = None,
    mass_matrix: str = "auto",
    identify: str | None = None,
    order_by: Any = None,
    weight_prior: str = "dirichlet",
    discount: float = 0.0,
    random_state: Any = None,
    progressbar: bool | None = None,
) -> BayesResult:
    """Sample the posterior by NUTS; see :meth:`GaussianMixture.fit`. ``weight_prior``
    and ``discount``: :func:`weight_priors`. ``target_accept`` defaults to 0.8, and to
    :data:`STICK_TARGET_ACCEPT` under a stick-breaking weight prior."""
    weight_prior = check_choice(weight_prior, "weight_prior", NUTS_WEIGHT_PRIORS)
    if target_accept is None:
        stick = weight_prior in ("dirichlet_process", "pitman_yor")
        target_accept = STICK_TARGET_ACCEPT if stick else 0.8
    draws, tune, chains, cores, target_accept = check_nuts_settings(
        draws, tune, chains, cores, target_accept
    )
    progressbar = show_progress(progressbar)
    sampler = "nutpie" if sampler is None else check_choice(sampler, "sampler", SAMPLERS)
    mass_matrix = _mass_matrix(mass_matrix, sampler, data.n_features)
    _require(sampler)
    seed = resolve_seed(random_state)
    start = time.perf_counter()
    identify = check_choice(
        default_identification(identify, weight_prior), "identify", NUTS_IDENTIFICATIONS
    )
    if identify == "direction" and order_by is not None:
        raise ValueError(
            f"order_by={order_by!r} names a feature to order, identify='direction' orders "
            "along a direction: give identify='ordered' with order_by, or leave order_by out."
        )
    resolve_order_by(order_by, data.feature_names)  # before any work
    priors, weight_spec = weight_priors(model, data, weight_prior, discount)
    em = quick_em(model, data, seed)
    spec = model_spec(
        model, data, "ordered" if identify == "direction" else identify, order_by, em, weight_spec
    )
    spec, rotation, direction = (
        order_rotation(spec, data, priors, em) if identify == "direction" else (spec, None, None)
    )
    em_start = point_estimate_start(
        spec, model.structure, priors, em.weights, em.means, em.params.covariances, rotation
    )
    settings = dict(
        draws=draws,
        tune=tune,
        chains=chains,
        sampler=sampler,
        target_accept=target_accept,
        mass_matrix=mass_matrix,
        weight_prior=weight_prior,
        # nutpie samples bayesmix's own density of complete data, PyMC's model otherwise
        log_density="bayesmix" if sampler == "nutpie" and not spec.missing_patterns else "pymc",
    )
    if sampler == "nutpie":
        tree = _sample_nutpie(
            spec, model, data, priors, em_start, rotation, seed, progressbar, cores, **settings
        )
    else:
        pm_model = build_pymc(spec, model.structure, data, priors, rotation=rotation)
        tree = sample_pymc(
            pm_model,
            draws,
            tune=tune,
            chains=chains,
            cores=cores,
            random_seed=seed,
            nuts_sampler=sampler,
            initvals=em_start,
            progressbar=progressbar,
            compute_convergence_checks=False,
            target_accept=target_accept,
        )
    settings.update(
        method="nuts",
        identify=identify,
        order_feature=data.feature_names[order_feature(data, order_by, em)],
        random_state=seed,
        seed=seed,
        fit_seconds=time.perf_counter() - start,
    )
    if direction is not None:
        settings["order_direction"] = [float(v) for v in direction]
    if weight_prior == "pitman_yor":
        settings["discount"] = float(discount)
    settings.update(tree.attrs.get("bayesmix_interrupted", {}))
    params = _tree_params(tree, model.structure)
    return _result(model, data, priors, spec, params, settings, sample_stats=_sample_stats(tree))


def _sample_nutpie(
    spec, model, data, priors, em_start, rotation, seed, progressbar, cores, **settings
):
    if settings["log_density"] == "bayesmix":
        compiled = _numba_nutpie_model(spec, model.structure, data, priors, em_start, rotation)
    else:
        compiled = _pymc_nutpie_model(spec, model, data, priors, em_start, rotation)
    return sample_nutpie(
        compiled,
        draws=settings["draws"],
        tune=settings["tune"],
        chains=settings["chains"],
        cores=cores,
        seed=seed,
        save_warmup=False,
        progress_bar=progressbar,
        target_accept=settings["target_accept"],
        adaptation=settings["mass_matrix"],
    )


# What nutpie reads from its module-level ``import arviz`` (nutpie 0.16, ``sample.py``): the
# DataTree constructors, which are arviz_base's own functions re-exported by ``arviz``.
NUTPIE_ARVIZ_NAMES = frozenset({"from_dict", "dict_to_dataset"})


class _ArvizOnUse(types.ModuleType):
    """What nutpie's ``import arviz`` binds when :func:`import_nutpie` imports it: the
    names nutpie uses come from ``arviz_base`` (the same objects ``arviz`` exports); any
    other name imports the real ``arviz`` and is read from it.

    ``__spec__`` is ``None`` (set by ``ModuleType``), so ``import arviz`` takes this module
    as loaded without touching ``__getattr__``."""

    def __getattr__(self, name: str) -> Any:
        if name in NUTPIE_ARVIZ_NAMES:
            import arviz_base

            return getattr(arviz_base, name)
        if name.startswith("__"):
            raise AttributeError(name)
        if sys.modules.get("arviz") is self:  # read while nutpie is being imported
            del sys.modules["arviz"]
        import arviz

        return getattr(arviz, name)


def import_nutpie() -> types.ModuleType:
    """``import nutpie``, without the full ``arviz`` namespace nutpie imports.

    ArviZ 1's ``arviz`` imports arviz_stats (with ``scipy.stats``) and arviz_plots (with
    ``matplotlib.pyplot``), 1.5-3 s of a cold NUTS fit, for two functions of arviz_base.
    While nutpie is first imported (and no ``arviz`` is loaded yet) ``sys.modules["arviz"]``
    holds :class:`_ArvizOnUse`; it is removed right after, so every later ``import
    arviz`` (the user's, ArviZ summaries, plots) loads the real package."""
    if "nutpie" in sys.modules or "arviz" in sys.modules:
        import nutpie

        return nutpie
    on_use = sys.modules["arviz"] = _ArvizOnUse("arviz")
    try:
        import nutpie
    finally:
        if sys.modules.get("arviz") is on_use:
            del sys.modules["arviz"]
    return nutpie


def sample_nutpie(compiled, **options: Any) -> xr.DataTree:
    """``nutpie.sample(compiled, **options)``, keeping the draws made when interrupted.

    nutpie samples in the background while Python waits; on ``KeyboardInterrupt``
    (Ctrl-C) the sampler is stopped and its trace so far taken (``abort``), every chain
    cut to the shortest one's completed draws (:func:`interrupted_tree`). Nested in
    another fit (:func:`~bayesmix.inference.interrupt.nested_fits`) the draws are
    discarded and the interrupt raised again."""
    sampler = import_nutpie().sample(compiled, blocking=False, **options)
    try:
        return sampler.wait()
    except KeyboardInterrupt:
        if not keeps_partial_work():
            sampler.cancel()
            raise
        tree = sampler.abort()
    return interrupted_tree(tree, options["draws"], options["chains"])


def sample_pymc(pm_model, draws: int, **options: Any) -> xr.DataTree:
    """``pm.sample(draws, **options)`` in ``pm_model``, keeping the draws made when
    interrupted.

    PyMC catches a ``KeyboardInterrupt`` itself and returns the chains so far (dropping
    chains to keep the most draws in all, as :func:`pymc.sampling.mcmc._choose_chains`
    does); the SIGINT is counted here (:func:`~bayesmix.inference.interrupt.watch_sigint`)
    so that the result is labelled (:func:`interrupted_tree`). PyMC's own NUTS on one
    core samples its chains one after the other and would start the next chain after
    an interrupt: a callback stops every later chain too. With no draw made, or nested
    in another fit, the interrupt is raised again."""
    import pymc as pm

    with watch_sigint() as watch, pm_model:
        if options.get("nuts_sampler", "pymc") == "pymc":

            def stop_after_interrupt(trace, draw) -> None:
                if watch.interrupted:
                    raise KeyboardInterrupt

            options["callback"] = stop_after_interrupt
        try:
            tree = pm.sample(draws, **options)
        except ValueError as error:  # PyMC: "Not enough samples to build a trace."
            if watch.interrupted:
                raise KeyboardInterrupt from error
            raise
    posterior = tree["posterior"].dataset
    if not watch.interrupted and posterior.sizes["draw"] == draws:
        return tree
    if not keeps_partial_work():
        raise KeyboardInterrupt
    return interrupted_tree(tree, draws, options.get("chains"))


def interrupted_tree(tree: xr.DataTree, draws: int, chains: int | None) -> xr.DataTree:
    """The posterior and sample statistics of an interrupted sampler's ``tree``, every
    chain cut to the number of draws all chains completed (nutpie pads unfinished chains
    with NaN), with an :class:`~bayesmix.InterruptedFitWarning`; its ``attrs`` carry
    the settings a result records (``"bayesmix_interrupted"``). Re-raises
    ``KeyboardInterrupt`` when no chain has a completed draw (interrupted while tuning).
    A tree whose chains are all complete is returned as it is."""
    posterior = tree["posterior"].dataset
    completed = [completed_draws(var.values) for var in posterior.data_vars.values()]
    per_chain = np.min(completed, axis=0) if completed else np.zeros(0, dtype=int)
    kept = int(per_chain.min()) if per_chain.size else 0
    n_chains = posterior.sizes.get("chain", 0)
    if kept == 0:
        raise KeyboardInterrupt
    if kept == draws and (chains is None or n_chains == chains):
        return tree
    groups = {"posterior": posterior.isel(draw=slice(0, kept))}
    if "sample_stats" in tree.children:
        groups["sample_stats"] = tree["sample_stats"].dataset.isel(draw=slice(0, kept))
    out = xr.DataTree.from_dict(groups)
    dropped = "" if chains is None or n_chains == chains else f" ({n_chains} of {chains} chains)"
    warn_interrupted(
        "NUTS",
        kept,
        draws,
        "draws per chain",
        stacklevel=5,
        holds=(
            f"the result holds those {kept} draws of every chain{dropped}, after the full "
            "tuning, and its diagnostics (r_hat, ESS, divergences) are computed on them"
        ),
    )
    out.attrs["bayesmix_interrupted"] = {
        "interrupted": True,
        "draws": kept,
        "draws_requested": draws,
        "chains": n_chains,
    }
    return out


def _numba_nutpie_model(spec, structure, data, priors, em_start, rotation=None):
    """nutpie's model of complete data: the hand-written log density of
    :mod:`bayesmix.families.gaussian.logdensity` (:func:`callback_nutpie_model`)."""
    from bayesmix.families.gaussian import logdensity

    K, D = spec.n_components, spec.n_features
    order = -1 if spec.order_feature is None else spec.order_feature
    layout = logdensity.Layout(spec.covariance_type, K, D, order)
    inputs = logdensity.density_inputs(data, priors, structure, K, rotation)
    precision = structure.pymc_precision_name
    return callback_nutpie_model(
        logdensity.nutpie_logp,
        logdensity.nutpie_expand,
        logdensity.pack_inputs(layout, inputs),
        shapes={"weights": (K,), "means": (K, D), precision: layout.precision_shape},
        dims={
            "weights": ("component",),
            "means": ("component", "feature"),
            precision: structure.natural_dims,
        },
        feature_names=data.feature_names,
        centre=logdensity.flat_start(layout, em_start),
    )


def callback_nutpie_model(
    logp_callback,
    expand_callback,
    user_data: np.ndarray,
    shapes: dict[str, tuple[int, ...]],
    dims: dict[str, tuple[str, ...]],
    feature_names,
    centre: np.ndarray,
):
    """nutpie's model of a hand-written log density given as numba C callbacks (loaded
    from numba's disk cache, so neither PyMC nor a compile is needed, and the sampler
    threads run without the GIL): ``logp_callback(n_dim, x, grad, logp, user_data)`` and
    ``expand_callback(n_dim, n_expanded, x, out, user_data)``, which writes the
    variables of ``shapes`` flattened in that order; ``user_data`` is the buffer both
    read; the chains start around ``centre`` (:data:`NUTS_START_JITTER`).

    The container is nutpie's own for numba C callbacks (named for PyMC, which is not
    involved here); what it must hold is what its ``_make_model`` reads (nutpie 0.16:
    the callbacks' addresses, ``user_data``, ``n_expanded``, the names and shapes in
    ``shape_info``, ``_n_dim``, ``_coords``, ``dims`` and ``initial_point_func``)."""
    CompiledPyMCModel = import_nutpie().compile_pymc.CompiledPyMCModel
    K = shapes["weights"][0]
    coords = {
        "component": np.arange(K),
        "feature": list(feature_names),
        "feature_": list(feature_names),
    }
    for name, names in dims.items():  # any other axis (a Categorical's category) numbered
        for dim, size in zip(names, shapes.get(name, ()), strict=False):
            coords.setdefault(dim, np.arange(size))
    return CompiledPyMCModel(
        dims=dims,
        compiled_logp_func=logp_callback,
        compiled_expand_func=expand_callback,
        initial_point_func=_jittered_start(centre),
        shared_data={},
        shared_var_keys={},
        user_data=user_data,
        n_expanded=int(sum(np.prod(shape, dtype=int) for shape in shapes.values())),
        shape_info=(list(shapes), None, list(shapes.values())),
        logp_func=None,
        expand_func=None,
        _n_dim=centre.size,
        _shapes=shapes,
        _coords=coords,
    )


def _pymc_nutpie_model(spec, model, data, priors, em_start, rotation=None):
    """nutpie's model compiled from the PyMC graph (data with missing values), kept per
    graph for the process: a refit swaps data and priors in with ``with_data``."""
    nutpie = import_nutpie()
    cached = _NUTPIE_CACHE.get(spec)
    if cached is None:
        pm_model = build_pymc(spec, model.structure, data, priors, rotation=rotation)
        compiled = nutpie.compile_pymc_model(pm_model, initial_points=initial_point(spec))
        value_names = [pm_model.rvs_to_values[rv].name for rv in pm_model.free_RVs]
        cached = _NUTPIE_CACHE[spec] = (compiled, *_start_flattener(pm_model, value_names))
        compiled_with_data = compiled
    else:
        inputs = pymc_inputs(data, priors, model.structure, rotation)
        compiled_with_data = cached[0].with_data(**inputs)
    _, names, to_flat = cached
    centre = np.asarray(to_flat(*(em_start[name] for name in names)), dtype=np.float64)
    return dataclasses.replace(compiled_with_data, initial_point_func=_jittered_start(centre))


# Half-width of the uniform jitter (unconstrained units) around the MAP-EM point at which
# each NUTS chain starts: still a few posterior standard deviations of the means for N
# above about a hundred rows, so r_hat compares dispersed starts, but inside the dominant
# mode. Measured (benchmarks/README.md, "NUTS identification beyond two features"): with
# 0.5 the four chains of wine K=3 full settled in different modes (r_hat 1.04-1.5 on the
# raw and the standardised columns); with 0.1 they agreed in 3 of 4 runs (r_hat
# 1.005-1.008; the fourth found a second, higher-density mode). On iris the jitter made
# no measurable difference.
NUTS_START_JITTER = 0.1


def _start_flattener(pm_model, value_names: list[str]):
    """The free variables' names (in ``value_names``' order) and a compiled map from their
    constrained values to one flat unconstrained vector, the layout nutpie and ADVI use."""
    import pytensor.tensor as pt
    from pymc.pytensorf import compile as compile_pymc

    value_vars = {value.name: value for value in pm_model.value_vars}
    names, inputs, flat = [], [], []
    for name in value_names:
        rv = pm_model.values_to_rvs[value_vars[name]]
        value = rv.type(name=rv.name)
        transform = pm_model.rvs_to_transforms.get(rv)
        unconstrained = value if transform is None else transform.forward(value, *rv.owner.inputs)
        names.append(rv.name)
        inputs.append(value)
        flat.append(pt.flatten(unconstrained))
    return names, compile_pymc(inputs, pt.concatenate(flat), random_seed=False)


def _jittered_start(centre: np.ndarray):
    """nutpie's per-chain start: ``centre`` plus uniform jitter, seeded by the chain."""

    def start(seed) -> np.ndarray:
        jitter = np.random.default_rng(seed).uniform(-1.0, 1.0, centre.shape)
        return centre + NUTS_START_JITTER * jitter

    return start


def fit_vi(
    model: GaussianMixture,
    data: Data,
    method: str,
    *,
    n: int = 30000,
    draws: int = 1000,
    learning_rate: float | None = None,
    tolerance: float | None = None,
    batch_size: int | None = None,
    identify: str | None = None,
    order_by: Any = None,
    weight_prior: str = "dirichlet",
    discount: float = 0.0,
    random_state: Any = None,
    progressbar: bool | None = None,
) -> BayesResult:
    """Fit a variational approximation with PyMC (``advi`` or ``fullrank_advi``).
    ``weight_prior`` and ``discount``: :func:`weight_priors`.

    Full batch (``batch_size=None``): Adam with a constant ``learning_rate`` (default
    0.005) from the MAP-EM estimate at standard deviation ``INITIAL_VI_SD``, stopped when
    the mean ELBO over windows of 500 iterations changes by less than ``tolerance``
    (default 1e-4, relative) or than its Monte Carlo noise.

    Minibatch (``batch_size`` rows per step): the approximation starts at the Laplace
    approximation of the MAP-EM estimate (the curvature averaged over minibatches of
    about ``CURVATURE_ROWS`` rows); Adam's step of each coordinate is ``learning_rate``
    (default 1) times ``sqrt(batch_size / n_obs)`` times its start standard deviation
    (the mean) or times 1 (the log-scale parameters), decaying as
    ``(1 + t / epoch) ** -MINIBATCH_DECAY_POWER`` with ``epoch = n_obs / batch_size``
    steps; the result is the average of the approximation's parameters over the last
    half of the windows of ``MINIBATCH_WINDOW`` iterations (Polyak-Ruppert), converged
    once the two halves of that tail agree to ``tolerance`` (default 0.5) approximate
    posterior standard deviations in every mean coordinate and to ``tolerance / 5`` in
    every log standard deviation.

    The compiled ADVI step and the draws of the fitted approximation are kept per model
    graph (:class:`ModelSpec`, method, minibatch size) for the process: a refit swaps
    data and priors into the model's ``pm.Data`` and resets the approximation, the
    optimiser and the random streams, so it gives what a fresh compile gives.
    """
    n = check_int(n, "n")
    draws = check_int(draws, "draws")
    progressbar = show_progress(progressbar)
    batch_size = _check_batch_size(batch_size, data)
    minibatch = batch_size is not None
    if learning_rate is None:
        learning_rate = MINIBATCH_RATE if minibatch else 0.005
    learning_rate = check_float(learning_rate, "learning_rate", inclusive=False)
    if tolerance is None:
        tolerance = MINIBATCH_MEAN_TOLERANCE if minibatch else 1e-4
    tolerance = check_float(tolerance, "tolerance", inclusive=False)
    if batch_size is not None and np.isnan(data.values).any():
        raise ValueError(
            "batch_size (minibatch ADVI) does not support missing values; fit the full "
            "batch (batch_size=None) or drop the incomplete rows."
        )
    seed = resolve_seed(random_state)
    start = time.perf_counter()
    weight_prior = check_choice(weight_prior, "weight_prior", NUTS_WEIGHT_PRIORS)
    identify = default_identification(identify, weight_prior)
    _check_identification(data, identify, order_by)  # before any work
    priors, weight_spec = weight_priors(model, data, weight_prior, discount)
    em = quick_em(model, data, seed)
    spec = model_spec(model, data, identify, order_by, em, weight_spec)
    key = (spec, method, batch_size)
    compiled = _VI_CACHE.get(key)
    if compiled is None:
        compiled = _CompiledVI(spec, model.structure, data, priors, method, batch_size)
        _VI_CACHE[key] = compiled
    else:
        compiled.set_data(data, priors, model.structure)
    em_start = point_estimate_start(
        spec, model.structure, priors, em.weights, em.means, em.params.covariances
    )
    if minibatch:
        compiled.reset(em_start, learning_rate * np.sqrt(batch_size / data.n_obs), seed)
        losses, converged = compiled.optimise_averaged(n, tolerance, progressbar)
        rule = (
            f"the averaged means still moved by more than {tolerance} posterior standard "
            f"deviations, or the standard deviations by more than {tolerance / 5:.0%}"
        )
    else:
        compiled.reset(em_start, learning_rate, seed)
        losses, converged = compiled.optimise(n, tolerance, progressbar)
        rule = f"relative ELBO change >= {tolerance}"
    weights, means, precision = compiled.draw(draws, seed)
    interrupted = converged is None
    if interrupted:
        converged = False
        warn_interrupted(
            method,
            len(losses),
            n,
            "iterations",
            holds="the result holds draws from the approximation reached then (not "
            "converged), and its ELBO history stops there",
        )
    elif not converged:
        warnings.warn(
            f"{method} did not converge in n={n} iterations ({rule}); increase n.",
            ConvergenceWarning,
            stacklevel=3,
        )
    settings = dict(
        method=method,
        n=n,
        n_iter=len(losses),
        converged=int(converged),
        draws=draws,
        learning_rate=learning_rate,
        batch_size=data.n_obs if batch_size is None else batch_size,
        weight_prior=weight_prior,
        identify=identify,
        order_feature=data.feature_names[order_feature(data, order_by, em)],
        random_state=seed,
        seed=seed,
        fit_seconds=time.perf_counter() - start,
    )
    if weight_prior == "pitman_yor":
        settings["discount"] = float(discount)
    if interrupted:
        settings["interrupted"] = True
    params = (weights[None], means[None], precision[None])  # one chain
    return _result(model, data, priors, spec, params, settings, elbo=-losses)


def _check_batch_size(batch_size: Any, data: Data) -> int | None:
    """``None`` for the full batch (also for ``batch_size >= n_obs``), else the size."""
    if batch_size is None:
        return None
    if isinstance(batch_size, bool) or not isinstance(batch_size, numbers.Integral):
        raise TypeError(
            f"batch_size must be None (full batch) or an integer between 1 and the number "
            f"of observations ({data.n_obs}); got {batch_size!r}."
        )
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1 (or None for the full batch); got {batch_size}.")
    return None if batch_size >= data.n_obs else int(batch_size)


class _CompiledVI:
    """One ADVI problem compiled for reuse: the model (data and priors in ``pm.Data``),
    its approximation, the Adam step returning the loss (negative ELBO; minibatch ADVI's
    step, a per-coordinate scaled and decaying Adam, also returns the gradient in the
    approximation's mean, for the start's curvature), the map from a start point to
    the approximation's mean, and the draws of the approximation.

    Random streams are seeded by :meth:`reset` and :meth:`draw`, never at compile time,
    and every optimiser state goes back to its initial value in :meth:`reset`: a cached
    fit repeats a fresh one bit for bit.
    """

    def __init__(self, spec, structure, data, priors, method, batch_size) -> None:
        import pymc as pm
        import pytensor
        import pytensor.tensor as pt
        from pymc.pytensorf import compile as compile_pymc
        from pymc.pytensorf import find_rng_nodes
        from pytensor.graph.replace import vectorize_graph

        self.model = build_pymc(spec, structure, data, priors, batch_size=batch_size)
        self.batch_size, self.n_obs = batch_size, data.n_obs
        with self.model:
            inference_class = pm.ADVI if method == "advi" else pm.FullRankADVI
            inference = inference_class(start=initial_point(spec), random_seed=0)
        self.approx = inference.approx
        (group,) = self.approx.groups  # ADVI and full-rank ADVI: one group, every variable
        self._group = group
        self._learning_rate = pytensor.shared(np.float64(0.005), "learning_rate")
        self.minibatch = batch_size is not None
        if self.minibatch:
            # a step per coordinate, set from the start's curvature by reset()
            self._rates = {
                name: pytensor.shared(np.zeros_like(param.get_value()), f"rate_{name}")
                for name, param in group.shared_params.items()
            }
            self._decay = pytensor.shared(np.float64(0.0), "decay_power")
            self._decay_steps = pytensor.shared(np.float64(1.0), "decay_steps")
            gradients: dict = {}  # the minibatch step also returns its gradient in mu
            optimizer = functools.partial(
                _scaled_adam,
                gradients=gradients,
                rates=self._rates,
                decay_power=self._decay,
                decay_steps=self._decay_steps,
            )
        else:
            optimizer = pm.adam(learning_rate=self._learning_rate)
        with self.model:
            updates = inference.objective.updates(obj_optimizer=optimizer)
            outputs = updates.loss
            if self.minibatch:  # PyMC divides the loss by N / batch_size
                scale = self.approx.symbolic_normalizing_constant
                outputs = [updates.loss, gradients["mu"] * scale]
            self._step, rng_updates = compile_pymc(
                [], outputs, updates=updates, random_seed=False, return_updates=True
            )
        self._step_rngs = list(rng_updates)
        # Adam's moments and step count, and the approximation's parameters
        self._initial_state = [(var, var.get_value(borrow=False)) for var in updates]

        # start point (constrained values) -> the approximation's mean (unconstrained, flat)
        position = 0
        for name, (_, slc, _, _) in group.ordering.items():
            if slc.start != position:
                raise RuntimeError(f"unexpected layout of the ADVI parameters at {name!r}")
            position = slc.stop
        self._start_names, self._to_flat = _start_flattener(self.model, list(group.ordering))
        value_vars = {value.name: value for value in self.model.value_vars}

        # draws of weights, means and the precision parameter, vectorised over draws
        size = pt.iscalar("draws")
        names = ("weights", "means", structure.pymc_precision_name)
        outputs = self.model.replace_rvs_by_values([self.model[name] for name in names])
        batched = {value_vars[name]: self.approx.rslice(name) for name in group.ordering}
        outputs = vectorize_graph(outputs, replace=batched)
        outputs = self.approx.set_size_and_deterministic(outputs, size, 0)
        self._draw = compile_pymc([size], outputs, random_seed=False)
        self._draw_rngs = find_rng_nodes(outputs)

    def set_data(self, data: Data, priors, structure) -> None:
        """Swap another data set of the same graph (any number of rows) and its priors
        into the ``pm.Data`` containers. Shapes are symbolic there; the model's ``obs``
        coords keep the first data set's names (nothing here reads them)."""
        self.n_obs = data.n_obs
        for name, value in pymc_inputs(data, priors, structure).items():
            self.model[name].set_value(np.asarray(value, dtype=float))

    @property
    def epoch(self) -> float:
        """Minibatch steps per pass over the data."""
        return self.n_obs / self.batch_size

    @property
    def curvature_batches(self) -> int:
        """Minibatches whose gradients give the Laplace start: about CURVATURE_ROWS rows."""
        return int(np.clip(np.ceil(CURVATURE_ROWS / self.batch_size), 1, 50))

    def reset(self, start: dict[str, np.ndarray], learning_rate: float, seed: int) -> None:
        """Back to iteration 0: optimiser state cleared, the approximation's mean at
        ``start`` (constrained values of every free variable), random streams seeded
        from ``seed``. The full batch starts at standard deviation ``INITIAL_VI_SD``;
        minibatch ADVI at the Laplace approximation of the start (its curvature, averaged
        over minibatches), with steps of ``learning_rate`` times that scale."""
        from pymc.pytensorf import reseed_rngs

        for var, value in self._initial_state:
            var.set_value(value.copy())
        self._learning_rate.set_value(np.float64(learning_rate))
        mean = np.asarray(self._to_flat(*(start[name] for name in self._start_names)), float)
        self._group.params_dict["mu"].set_value(mean)
        reseed_rngs(self._step_rngs, [seed, 0])
        if not self.minibatch:
            _narrow_start(self.approx, INITIAL_VI_SD)
            return
        params = self._group.shared_params
        hessian = _curvature(
            self._step, self._step_rngs, params, mean, self.curvature_batches, seed
        )
        for var, value in self._initial_state:  # undo the curvature's steps
            var.set_value(value.copy())
        params["mu"].set_value(mean)
        reseed_rngs(self._step_rngs, [seed, 0])
        covariance = _laplace_covariance(hessian)
        self._decay.set_value(np.float64(MINIBATCH_DECAY_POWER))
        self._decay_steps.set_value(np.float64(max(1.0, MINIBATCH_DECAY_EPOCHS * self.epoch)))
        self._laplace_start(covariance, learning_rate)

    def _laplace_start(self, covariance: np.ndarray, learning_rate: float) -> None:
        """The approximation's scale at ``covariance`` (mean-field: the conditional
        standard deviations, which the mean-field optimum has for a Gaussian posterior;
        full-rank: its Cholesky factor), and each coordinate's step: ``learning_rate``
        times its marginal standard deviation for the mean, ``MINIBATCH_SCALE_RATE *
        learning_rate`` for the log-scale parameters (times the row's marginal standard
        deviation for the off-diagonal entries of the full-rank Cholesky factor)."""
        params = self._group.shared_params
        marginal = np.sqrt(np.diag(covariance))
        self._rates["mu"].set_value(learning_rate * marginal)
        if "rho" in params:
            sd = 1.0 / np.sqrt(np.diag(np.linalg.inv(covariance)))
            params["rho"].set_value(_sigma_to_rho(sd))
            self._rates["rho"].set_value(np.full_like(sd, MINIBATCH_SCALE_RATE * learning_rate))
        else:
            chol = np.linalg.cholesky(covariance)
            rows, cols = np.tril_indices(len(chol))
            diagonal = rows == cols
            entries = np.where(diagonal, _sigma_to_rho(np.diag(chol)[rows]), chol[rows, cols])
            params["L_tril"].set_value(entries)
            # off-diagonal entries of row i are in the units of coordinate i
            rate = MINIBATCH_SCALE_RATE * learning_rate
            self._rates["L_tril"].set_value(rate * np.where(diagonal, 1.0, marginal[rows]))

    def optimise(
        self, n: int, tolerance: float, progressbar: bool
    ) -> tuple[np.ndarray, bool | None]:
        """At most ``n`` Adam steps; the losses (negative ELBO) and whether they
        converged (``None``: interrupted, see :func:`_interruptible`)."""
        convergence = _ElboConvergence(tolerance)
        losses = np.empty(n)
        step = self._step
        done = 0
        with _interruptible() as interrupt, deferred_sigint() as sigint:
            with progress_bar(n, progressbar, "ADVI") as advance:
                for i in range(n):
                    sigint.release()  # a Ctrl-C during a compiled step ends the steps here
                    loss = step()
                    if np.isnan(loss):
                        raise FloatingPointError(
                            f"the ELBO became NaN at iteration {i + 1}; lower learning_rate "
                            f"(now {float(self._learning_rate.get_value())})."
                        )
                    losses[i] = loss
                    done = i + 1
                    if (i + 1) % convergence.window == 0:
                        advance(convergence.window)
                        if convergence.check(losses[: i + 1]):
                            return losses[: i + 1], True
        if interrupt:
            return _interrupted_losses(losses[:done])
        return losses, False

    def optimise_averaged(
        self, n: int, tolerance: float, progressbar: bool
    ) -> tuple[np.ndarray, bool]:
        """Minibatch ADVI: at most ``n`` steps, the approximation's parameters averaged
        over windows of iterations; the estimate is the average over the last half of
        the windows (Polyak-Ruppert tail averaging), converged once that tail's two
        halves agree (see :func:`_tail_settled`). Sets the approximation to the
        estimate; returns the losses and whether they converged."""
        params = self._group.shared_params
        window = MINIBATCH_WINDOW
        sums = {name: np.zeros_like(param.get_value()) for name, param in params.items()}
        windows: list[dict[str, np.ndarray]] = []
        losses = np.empty(n)
        step, converged, done = self._step, False, 0
        with _interruptible() as interrupt, deferred_sigint() as sigint:
            with progress_bar(n, progressbar, "ADVI") as advance:
                for i in range(n):
                    sigint.release()  # a Ctrl-C during a compiled step ends the steps here
                    loss = step()[0]
                    if np.isnan(loss):
                        raise FloatingPointError(
                            f"the ELBO became NaN at iteration {i + 1}; lower learning_rate."
                        )
                    losses[i] = loss
                    for name, param in params.items():
                        sums[name] += param.get_value(borrow=True)
                    done = i + 1
                    if done % window == 0:
                        windows.append({name: total / window for name, total in sums.items()})
                        for total in sums.values():
                            total[:] = 0.0
                        advance(window)
                        if _tail_settled(windows, self._marginal_sds, tolerance):
                            converged = True
                            break
        if windows:
            tail = windows[len(windows) // 2 :]
            for name, param in params.items():
                param.set_value(np.mean([w[name] for w in tail], axis=0))
        if interrupt:
            return _interrupted_losses(losses[:done])
        return losses[:done], converged

    def _marginal_sds(self, values: dict[str, np.ndarray]) -> np.ndarray:
        """The approximation's marginal standard deviations at parameters ``values``."""
        if "rho" in values:
            return np.logaddexp(0.0, values["rho"])
        d = len(values["mu"])
        chol = np.zeros((d, d))
        chol[np.tril_indices(d)] = values["L_tril"]
        chol[np.diag_indices(d)] = np.logaddexp(0.0, np.diag(chol))
        return np.sqrt((chol**2).sum(axis=1))

    def draw(self, draws: int, seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``draws`` draws of (weights, means, precision parameter) from the approximation."""
        from pymc.pytensorf import reseed_rngs

        reseed_rngs(self._draw_rngs, [seed, 1])
        return tuple(np.asarray(x) for x in self._draw(draws))


class _Interrupt:
    """Whether the block of :func:`_interruptible` was interrupted."""

    def __init__(self) -> None:
        self.caught = False

    def __bool__(self) -> bool:
        return self.caught


@contextlib.contextmanager
def _interruptible():
    """Ends the block at a ``KeyboardInterrupt`` (the yielded flag is then true), unless
    nested in another fit (:func:`~bayesmix.inference.interrupt.nested_fits`)."""
    interrupt = _Interrupt()
    try:
        yield interrupt
    except INTERRUPTS as error:
        if not (is_interrupt(error) and keeps_partial_work()):
            raise
        interrupt.caught = True


def _interrupted_losses(losses: np.ndarray) -> tuple[np.ndarray, None]:
    """An interrupted optimisation's losses and ``None`` for "converged"; the interrupt
    is raised again when no step was made."""
    if losses.size == 0:
        raise KeyboardInterrupt
    return losses, None


def show_progress(progressbar: Any) -> bool:
    """Resolve the ``progressbar`` option: ``None`` shows progress in a Jupyter kernel or
    an interactive terminal, and hides it in scripts, logs and tests."""
    if progressbar is None:
        ipython = sys.modules.get("IPython")
        shell = ipython.get_ipython() if ipython is not None else None
        in_kernel = shell is not None and "IPKernelApp" in getattr(shell, "config", {})
        return bool(in_kernel or sys.stderr.isatty())
    if not isinstance(progressbar, (bool, np.bool_)):
        raise TypeError(
            f"progressbar must be True, False or None (automatic); got {progressbar!r}."
        )
    return bool(progressbar)


@contextlib.contextmanager
def progress_bar(n: int, show: bool, description: str):
    """A progress bar over ``n`` steps with the elapsed and the estimated remaining time
    (rich, as PyMC's bars), advanced by the yielded function."""
    if not show:
        yield lambda steps: None
        return
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("left"),
        TimeRemainingColumn(),
    )
    with Progress(*columns) as progress:
        task = progress.add_task(description, total=n)
        yield lambda steps: progress.update(task, advance=steps)


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


def _sigma_to_rho(sd: np.ndarray) -> np.ndarray:
    """The inverse of the softplus PyMC maps its scale parameters through."""
    sd = np.asarray(sd, dtype=float)
    return sd + np.log(-np.expm1(-sd))


def _scaled_adam(grads, params, gradients, rates, decay_power, decay_steps, beta1=0.9, beta2=0.999):
    """Adam (as ``pm.adam``) with a step per coordinate, ``rates[param.name]``, times a
    Robbins-Monro decay ``(1 + t / decay_steps) ** -decay_power``; the gradients are put
    in ``gradients`` by parameter name."""
    from collections import OrderedDict

    import pytensor
    import pytensor.tensor as pt

    t_prev = pytensor.shared(np.float64(0.0), "adam_t")
    t = t_prev + 1.0
    a_t = pt.sqrt(1.0 - beta2**t) / (1.0 - beta1**t) * (1.0 + t / decay_steps) ** -decay_power
    updates = OrderedDict()
    for param, grad in zip(params, grads, strict=True):
        gradients[param.name] = grad
        value = param.get_value(borrow=True)
        m_prev = pytensor.shared(np.zeros_like(value), shape=param.type.shape)
        v_prev = pytensor.shared(np.zeros_like(value), shape=param.type.shape)
        m_t = beta1 * m_prev + (1.0 - beta1) * grad
        v_t = beta2 * v_prev + (1.0 - beta2) * grad**2
        updates[m_prev] = m_t
        updates[v_prev] = v_t
        updates[param] = param - a_t * rates[param.name] * m_t / (pt.sqrt(v_t) + 1e-8)
    updates[t_prev] = t
    return updates


def _curvature(step, rngs, params, point: np.ndarray, batches: int, seed: int) -> np.ndarray:
    """The Hessian of the negative log density (log-likelihood of a minibatch scaled to
    the whole data, priors, Jacobians) at ``point``, averaged over ``batches``
    minibatches: central differences of the gradient the minibatch step returns (in the
    whole data's units), taken with the approximation's scale at 1e-13 (its gradient in
    the mean is then the log density's), the step's streams reseeded before each
    evaluation so that every difference is taken on one minibatch's rows. The step's
    updates are undone by the caller (:meth:`_CompiledVI.reset`)."""
    from pymc.pytensorf import reseed_rngs

    tiny = {
        name: _sigma_to_rho(np.full(param.get_value().shape, 1e-13))
        for name, param in params.items()
        if name != "mu"
    }
    d = len(point)
    if "L_tril" in tiny:
        rows, cols = np.tril_indices(d)
        tiny["L_tril"] = np.where(rows == cols, tiny["L_tril"], 0.0)
    steps = 1e-5 * np.maximum(1.0, np.abs(point))
    hessian = np.zeros((d, d))
    for batch in range(batches):
        for i in range(d):
            shifted = []
            for sign in (1.0, -1.0):
                x = point.copy()
                x[i] += sign * steps[i]
                params["mu"].set_value(x)
                for name, value in tiny.items():
                    params[name].set_value(value)
                reseed_rngs(rngs, [seed, 2, batch])
                shifted.append(np.asarray(step()[1]))
            hessian[:, i] += (shifted[0] - shifted[1]) / (2.0 * steps[i])
    return hessian / batches


def _laplace_covariance(hessian: np.ndarray) -> np.ndarray:
    """The inverse of a (symmetrised) Hessian, its eigenvalues floored at
    ``INITIAL_VI_SD ** -2``: no direction starts wider than the full batch does."""
    eigenvalues, vectors = np.linalg.eigh(0.5 * (hessian + hessian.T))
    eigenvalues = np.maximum(eigenvalues, INITIAL_VI_SD**-2)
    return (vectors / eigenvalues) @ vectors.T


def _tail_settled(windows: list[dict[str, np.ndarray]], marginal_sds, tolerance: float) -> bool:
    """Whether the last half of the window averages is stationary: its first and second
    halves' averages differ by at most ``tolerance`` of the approximation's standard
    deviation in every mean coordinate and by at most ``tolerance / 5`` in every log
    standard deviation. At least ``MINIBATCH_MIN_WINDOWS`` windows."""
    if len(windows) < MINIBATCH_MIN_WINDOWS:
        return False
    tail = windows[len(windows) // 2 :]
    halves = [tail[: len(tail) // 2], tail[len(tail) // 2 :]]
    first, second = (
        {name: np.mean([w[name] for w in half], axis=0) for name in tail[0]} for half in halves
    )
    sd_first, sd_second = marginal_sds(first), marginal_sds(second)
    shift = np.abs(first["mu"] - second["mu"]) / np.sqrt(sd_first * sd_second)
    scale = np.abs(np.log(sd_first / sd_second))
    return bool(shift.max() <= tolerance and scale.max() <= tolerance / 5)


class _ElboConvergence:
    """Converged once the mean loss over a window of iterations differs from the
    window before by less than ``tolerance`` (relative) or by less than twice the
    standard error of that difference (the ELBO is flat within its Monte Carlo noise)."""

    def __init__(self, tolerance: float, window: int = 500) -> None:
        self.tolerance = tolerance
        self.window = window

    def check(self, losses: np.ndarray) -> bool:
        if len(losses) < 2 * self.window:
            return False
        recent, before = losses[-self.window :], losses[-2 * self.window : -self.window]
        change = abs(np.mean(recent) - np.mean(before))
        noise = 2.0 * np.sqrt((np.var(recent) + np.var(before)) / self.window)
        return bool(change <= max(self.tolerance * abs(np.mean(before)), noise))


def _tree_params(tree: xr.DataTree, structure) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights, means and the precision parameter ``(chain, draw, ...)`` of a PyMC trace."""
    posterior = tree["posterior"].dataset
    names = ("weights", "means", structure.pymc_precision_name)
    return tuple(posterior[name].values for name in names)


def _result(model, data, priors, spec, params, settings, sample_stats=None, elbo=None):
    """:func:`posterior_result` of draws ``params`` = (weights, means, precision
    parameter), each ``(chain, draw, ...)``."""
    weights, means, precision = params
    covariances = model.structure.covariance_from_precision(precision, spec.n_features)
    covariances = np.broadcast_to(covariances, means.shape + (spec.n_features,)).copy()
    return posterior_result(
        model, data, priors, (weights, means, covariances), settings, sample_stats, elbo
    )


def posterior_result(
    model: GaussianMixture,
    data: Data,
    priors,
    draws: tuple[np.ndarray, np.ndarray, np.ndarray],
    settings: dict,
    sample_stats: xr.Dataset | None = None,
    elbo: np.ndarray | None = None,
) -> BayesResult:
    """The :class:`BayesResult` of ``draws`` = (weights, means, full covariance
    matrices), each ``(chain, draw, ...)``, identified as ``settings["identify"]`` says
    and with components numbered by :mod:`bayesmix.ordering`'s rule."""
    weights, means, covariances = draws
    posterior = parameters_dataset(weights, means, covariances, data.feature_names)
    # draws ordered on the feature follow the rule; relabel() applies it; draws ordered
    # along a direction (settings["order_direction"]) are renumbered as a whole
    if settings["identify"] == "none" or settings.get("order_direction") is not None:
        posterior = order_posterior(posterior, data.feature_names.index(settings["order_feature"]))
    return identified_result(model, data, priors, posterior, settings, sample_stats, elbo)


def identified_result(
    model: Any,
    data: Data,
    priors: Any,
    posterior: xr.Dataset,
    settings: dict,
    sample_stats: xr.Dataset | None = None,
    elbo: np.ndarray | None = None,
) -> BayesResult:
    """The :class:`BayesResult` of ``posterior``, relabelled when
    ``settings["identify"]`` is ``"relabel"`` (any declaration: Gaussian or family)."""
    result = BayesResult(
        model=model,
        posterior=posterior,
        data=data,
        priors=priors,
        sample_stats=sample_stats,
        elbo=elbo,
        settings=settings,
    )
    if settings["identify"] == "relabel" and model.n_components > 1:
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
