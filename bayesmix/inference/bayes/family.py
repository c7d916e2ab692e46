"""NUTS and ADVI for mixtures of a non-Gaussian family (:class:`bayesmix.Mixture`).

The PyMC model: ``weights ~ Dirichlet(weight_concentration)`` or (``weight_prior=
"dirichlet_process"`` or ``"pitman_yor"``) the truncated stick-breaking prior of
:mod:`bayesmix.families.sticks` (the same as :class:`~bayesmix.GaussianMixture`'s, its
``alpha`` read as closed-form VB reads it: :func:`family_weight_prior`), the family's
parameters with their priors (:meth:`~bayesmix.families.base.ComponentFamily.pymc_parameters`), and
the marginal likelihood ``sum_n logsumexp_k(log w_k + log p(x_n | theta_k))`` as a
potential (the allocations are summed out). The model is exchangeable (under the
stick-breaking priors only its likelihood is, the sticks' order being a prior choice): draws
are identified afterwards by Stephens' relabelling (``identify="relabel"``, default) and the
components numbered by :mod:`bayesmix.ordering`'s rule, as for Gaussians. Every chain
starts at the MAP-EM estimate, mapped into the free variables by the family
(:meth:`~bayesmix.families.base.ComponentFamily.pymc_initial_values`). Missing entries
(``missing="marginalize"``) are marginalised in the likelihood (:func:`build_family_pymc`).

Complete data of a family with a hand-written density
(:meth:`~bayesmix.families.base.ComponentFamily.nutpie_density`) skip PyMC: NUTS is
nutpie on that density, ADVI :func:`bayesmix.inference.bayes.advi.fit_advi` on it
(``settings["log_density"]`` is ``"bayesmix"``, else ``"pymc"``).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from bayesmix.data import Data
from bayesmix.families.sticks import STICKS_KEY, flat_sticks, stick_breaking_weights
from bayesmix.inference.bayes.advi import fit_advi
from bayesmix.inference.bayes.fit import (
    NUTS_WEIGHT_PRIORS,
    STICK_TARGET_ACCEPT,
    callback_nutpie_model,
    check_nuts_settings,
    identified_result,
    resolve_seed,
    sample_nutpie,
    sample_pymc,
    show_progress,
)
from bayesmix.inference.interrupt import (
    is_interrupt,
    keeps_partial_work,
    nested_fits,
    warn_interrupted,
    watch_sigint,
)
from bayesmix.inference.vb_weights import (
    STICK_PRIORS,
    check_discount,
    check_stick_prior,
    interface_concentration,
    truncated_stick_parameters,
)
from bayesmix.ordering import resolve_order_by
from bayesmix.priors import WEIGHT_CONCENTRATION
from bayesmix.results.posterior import BayesResult
from bayesmix.validation import check_choice, check_float, check_int

if TYPE_CHECKING:
    from bayesmix.mixture import Mixture

__all__ = [
    "build_family_pymc",
    "family_weight_prior",
    "fit_family_nuts",
    "fit_family_vi",
]

IDENTIFY = ("relabel", "none")
# what an interrupted ADVI fit returns
VI_HOLDS = (
    "the result holds draws from the approximation reached then (not converged), and its "
    "ELBO history stops there"
)


def build_family_pymc(model: Mixture, data: Data, priors: dict[str, np.ndarray]):
    """The PyMC model of ``model`` for ``data`` (see the module notes).

    Missing entries (NaN, ``missing="marginalize"``) are marginalised exactly by the
    family (:meth:`~bayesmix.families.base.ComponentFamily.pymc_missing_log_density`:
    masked terms for families whose columns are independent given the component, the
    marginal density per pattern of observed features for others; an
    :class:`~bayesmix.families.Independent` family each block as its own family does).

    ``priors`` holding ``"weight_sticks"`` (:func:`family_weight_prior`) give the
    weights the truncated stick-breaking prior
    (:func:`~bayesmix.families.sticks.stick_breaking_weights`).

    Returns
    -------
    pymc.Model
        Free variables ``weights`` (dims ``component``; under the stick-breaking prior
        ``weights_sticks`` ``(K - 1,)``, ``weights`` a Deterministic) and the family's
        parameters; the potential ``log_likelihood``.
    """
    import pymc as pm
    import pytensor.tensor as pt

    family = model.family
    features = list(data.feature_names)
    coords = {"component": np.arange(model.n_components), "feature": features}
    if any("feature_" in dims for dims in family.parameters.values()):
        coords["feature_"] = features
    coords.update(family.coords(data.feature_names))
    values = data.values
    with pm.Model(coords=coords) as pm_model:
        sticks = priors.get(STICKS_KEY)
        if sticks is not None and model.n_components > 1:
            weights = stick_breaking_weights("weights", sticks, model.n_components)
        else:
            weights = pm.Dirichlet("weights", a=priors["weight_concentration"], dims="component")
        params = family.pymc_parameters(priors)
        if not np.isnan(values).any():
            X = pm.Data("X", values, dims=("obs", "feature"))
            log_density = family.pymc_log_density(X, params)
        else:
            log_density = family.pymc_missing_log_density(values, params)
        log_weights = pt.log(weights)
        log_likelihood = pm.math.logsumexp(log_weights + log_density, axis=1).sum()
        pm.Potential("log_likelihood", log_likelihood)
    return pm_model


def family_weight_prior(
    model: Mixture, weight_prior: Any = "dirichlet", discount: Any = 0.0
) -> tuple[np.ndarray | None, dict[str, Any]]:
    """The weight prior of a family's NUTS or ADVI fit, checked before any work:
    ``(sticks, settings)``.

    ``"dirichlet"`` (default): the declaration's ``weight_concentration``; ``sticks`` is
    None. ``"dirichlet_process"`` and ``"pitman_yor"`` (``discount`` ``d``): the
    Beta parameters ``(2, K - 1)`` of the sticks ``v_k ~ Beta(1 - d, alpha + k d)``
    (:func:`~bayesmix.inference.vb_weights.truncated_stick_parameters`), ``alpha`` the
    declaration's ``weight_concentration`` when set to another value than 4, else 1
    (:func:`~bayesmix.inference.vb_weights.interface_concentration`, as
    ``fit(method="vb")`` and :class:`~bayesmix.GaussianMixture`'s NUTS read it).
    ``settings`` records ``weight_prior``, and under the sticks ``weight_concentration``
    (``alpha``) and, for Pitman-Yor, ``discount``.

    Raises
    ------
    ValueError
        An unknown ``weight_prior``; a ``discount`` outside ``[0, 1)`` or given with
        another prior than ``"pitman_yor"``; an asymmetric declared
        ``weight_concentration`` with a stick-breaking prior.
    TypeError
        A ``discount`` that is not a real number.
    """
    weight_prior = check_choice(weight_prior, "weight_prior", NUTS_WEIGHT_PRIORS)
    discount = check_discount(weight_prior, discount)
    if weight_prior not in STICK_PRIORS:
        return None, {"weight_prior": weight_prior}
    declared = model.priors or {}
    alpha = interface_concentration(
        weight_prior,
        declared.get("weight_concentration", WEIGHT_CONCENTRATION),
        "weight_concentration" in declared,
    )
    alpha, discount = check_stick_prior(weight_prior, alpha, discount)
    settings = {"weight_prior": weight_prior, "weight_concentration": alpha}
    if weight_prior == "pitman_yor":
        settings["discount"] = discount
    return truncated_stick_parameters(alpha, model.n_components, discount), settings


def _prepare(
    model: Mixture, data: Data, identify, order_by, random_state, progressbar, sticks=None
):
    """The checks every method shares, then the MAP-EM start: ``(progressbar, seed,
    start, priors, started, order_by)``; without ``order_by`` the components are
    numbered by the start's order feature, chosen by EM's rule, so that EM, MAP and the
    posterior number them alike. Under a stick-breaking prior (``sticks``, see
    :func:`family_weight_prior`) the start's weights are its sticks
    (``weights_sticks``), and ``priors`` (those the density, the PyMC model and the
    result read; saved with it) carry ``sticks`` as ``"weight_sticks"``."""
    check_choice(identify, "identify", IDENTIFY)
    resolve_order_by(order_by, data.feature_names)
    progressbar = show_progress(progressbar)
    seed = resolve_seed(random_state)
    started = time.perf_counter()
    missing = "marginalize" if np.isnan(data.values).any() else "error"
    with nested_fits():  # Ctrl-C during the start stops the whole fit
        em = model.fit(data, method="map", random_state=seed, n_init=5, missing=missing)
    start = {"weights": em.parameters["weights"]}
    priors = em.priors
    if sticks is not None and model.n_components > 1:
        weights = np.maximum(em.parameters["weights"], 1e-3)  # no stick at 0 or 1
        start = {"weights_sticks": flat_sticks(weights / weights.sum())}
        priors = {**priors, STICKS_KEY: sticks}
    start.update(model.family.pymc_initial_values(em.parameters, em.priors))
    if order_by is None:
        order_by = em.settings["order_feature"]
    return progressbar, seed, start, priors, started, order_by


def fit_family_nuts(
    model: Mixture,
    data: Data,
    *,
    draws: int = 1000,
    tune: int = 1000,
    chains: int = 4,
    cores: int | None = None,
    target_accept: float | None = None,
    identify: str = "relabel",
    order_by: Any = None,
    weight_prior: str = "dirichlet",
    discount: float = 0.0,
    random_state: Any = None,
    progressbar: bool | None = None,
) -> BayesResult:
    """Posterior draws by NUTS; see :meth:`bayesmix.Mixture.fit`. ``weight_prior`` and
    ``discount``: :func:`family_weight_prior`; ``target_accept`` defaults to 0.8, and to
    :data:`~bayesmix.inference.bayes.fit.STICK_TARGET_ACCEPT` (0.95) under a
    stick-breaking weight prior."""
    sticks, weight_settings = family_weight_prior(model, weight_prior, discount)
    if target_accept is None:
        target_accept = 0.8 if sticks is None else STICK_TARGET_ACCEPT
    draws, tune, chains, cores, target_accept = check_nuts_settings(
        draws, tune, chains, cores, target_accept
    )
    progressbar, seed, start, priors, started, order_by = _prepare(
        model, data, identify, order_by, random_state, progressbar, sticks
    )
    # complete data of a family with a hand-written density: nutpie samples it, with no
    # PyMC graph to compile; otherwise (missing entries) PyMC's model and NUTS
    density = None
    if not np.isnan(data.values).any():
        density = model.family.nutpie_density(data.values, priors, model.n_components)
    if density is not None:
        compiled = callback_nutpie_model(
            density.nutpie_logp,
            density.nutpie_expand,
            density.buffer,
            shapes=density.shapes,
            dims={"weights": ("component",)}
            | {name: ("component", *model.family.parameters[name]) for name in density.names},
            feature_names=data.feature_names,
            centre=density.flat_start(start),
        )
        tree = sample_nutpie(
            compiled,
            draws=draws,
            tune=tune,
            chains=chains,
            cores=cores,
            seed=seed,
            save_warmup=False,
            progress_bar=progressbar,
            target_accept=target_accept,
        )
    else:
        tree = sample_pymc(
            build_family_pymc(model, data, priors),
            draws,
            tune=tune,
            chains=chains,
            cores=cores,
            random_seed=seed,
            nuts_sampler="pymc",
            initvals=start,
            progressbar=progressbar,
            compute_convergence_checks=False,
            target_accept=target_accept,
        )
    stats = tree["sample_stats"].dataset
    numeric = [
        name
        for name, var in stats.data_vars.items()
        if var.dtype.kind in "biuf" and set(var.dims) <= {"chain", "draw"}
    ]
    settings = dict(
        method="nuts",
        sampler="pymc" if density is None else "nutpie",
        log_density="pymc" if density is None else "bayesmix",
        draws=draws,
        tune=tune,
        chains=chains,
        target_accept=target_accept,
        identify=identify,
        random_state=seed,
        seed=seed,
        **weight_settings,
    )
    settings.update(tree.attrs.get("bayesmix_interrupted", {}))
    return _result(
        model, data, priors, _tree_draws(tree), settings, order_by, started, stats[numeric]
    )


def fit_family_vi(
    model: Mixture,
    data: Data,
    method: str,
    *,
    n: int = 30000,
    draws: int = 1000,
    learning_rate: float = 0.005,
    identify: str = "relabel",
    order_by: Any = None,
    weight_prior: str = "dirichlet",
    discount: float = 0.0,
    random_state: Any = None,
    progressbar: bool | None = None,
) -> BayesResult:
    """Draws from the mean-field (``advi``) or full-rank (``fullrank_advi``) Gaussian
    approximation, started at the MAP-EM estimate; see :meth:`bayesmix.Mixture.fit`.

    Complete data of a family with a hand-written density (``nutpie_density``) are fitted
    on it by :func:`bayesmix.inference.bayes.advi.fit_advi`, with no PyMC model to
    compile; otherwise (missing entries, no such density) by PyMC's ADVI. Both run the
    same optimisation (Adam, PyMC's start and stopping rule). ``weight_prior`` and
    ``discount``: :func:`family_weight_prior`."""
    sticks, weight_settings = family_weight_prior(model, weight_prior, discount)
    n = check_int(n, "n")
    draws = check_int(draws, "draws")
    learning_rate = check_float(learning_rate, "learning_rate", minimum=0.0, inclusive=False)
    progressbar, seed, start, priors, started, order_by = _prepare(
        model, data, identify, order_by, random_state, progressbar, sticks
    )
    density = None
    if not np.isnan(data.values).any():
        density = model.family.nutpie_density(data.values, priors, model.n_components)
    options = dict(
        method=method, n=n, draws=draws, learning_rate=learning_rate, progressbar=progressbar
    )
    if density is not None:
        fitted = fit_advi(density, density.flat_start(start), seed=seed, **options)
        samples, elbo, interrupted = fitted.draws, fitted.elbo, fitted.interrupted
    else:
        pm_model = build_family_pymc(model, data, priors)
        samples, elbo, interrupted = _pymc_vi(pm_model, start, seed, **options)
    settings = dict(
        method=method,
        log_density="pymc" if density is None else "bayesmix",
        n=n,
        draws=draws,
        learning_rate=learning_rate,
        iterations=len(elbo),
        identify=identify,
        random_state=seed,
        seed=seed,
        **weight_settings,
    )
    if interrupted:
        settings["interrupted"] = True
    return _result(model, data, priors, samples, settings, order_by, started, elbo=elbo)


def _pymc_vi(pm_model, start, seed, *, method, n, draws, learning_rate, progressbar):
    """PyMC's ADVI on ``pm_model`` (:func:`build_family_pymc`): ``(draws, elbo
    history, interrupted)``. PyMC stops at a ``KeyboardInterrupt`` and returns the
    approximation reached; the SIGINT is counted here to label it (raised again when
    nested in another fit). A SIGINT that lands inside the compiled graph comes out of
    PyMC as numba's SystemError, past PyMC's handler: the approximation reached is kept
    all the same, with the losses a callback recorded."""
    import pymc as pm
    from pymc.variational.callbacks import CheckParametersConvergence
    from pymc.variational.updates import adam

    with pm_model, watch_sigint() as watch:
        kind = pm.ADVI if method == "advi" else pm.FullRankADVI
        inference = kind(start=start, random_seed=seed)
        losses = []

        def record(approximation, scores, iteration):
            losses[:] = [scores]

        try:
            approx = inference.fit(
                n,
                obj_optimizer=adam(learning_rate=learning_rate),
                callbacks=[CheckParametersConvergence(tolerance=1e-3, diff="relative"), record],
                progressbar=progressbar,
            )
            elbo = -np.asarray(approx.hist)
        except Exception as error:
            if not (is_interrupt(error) and watch.interrupted):
                raise
            approx, elbo = inference.approx, -np.asarray(losses[0] if losses else [])
    if watch.interrupted:
        if not keeps_partial_work() or elbo.size == 0:
            raise KeyboardInterrupt
        warn_interrupted(method, elbo.size, n, "iterations", stacklevel=4, holds=VI_HOLDS)
    tree = approx.sample(draws, random_seed=seed)
    return _tree_draws(tree), elbo, watch.interrupted


def _tree_draws(tree) -> dict[str, np.ndarray]:
    """The posterior group's variables of a sampler's DataTree, ``(chain, draw, ...)``."""
    posterior = tree["posterior"].dataset
    return {name: posterior[name].values for name in posterior.data_vars}


def _result(
    model, data, priors, samples, settings, order_by, started, sample_stats=None, elbo=None
):
    """The :class:`BayesResult` of the draws ``samples`` (name to ``(chain, draw, ...)``):
    relabelled when asked, components numbered by the order feature (``order_by`` or the
    best separated one at the posterior mean)."""
    from bayesmix.ordering import best_separated_feature, order_posterior

    draws = {name: samples[name] for name in model.parameter_names}
    dataset = model.posterior_from_draws(draws, data.feature_names)
    mean = {name: value.mean(axis=(0, 1)) for name, value in draws.items()}
    means = model.family.component_means(mean)
    feature = resolve_order_by(order_by, data.feature_names)
    if feature is None:
        variances = model.family.component_variances(mean)
        feature = best_separated_feature(means, variances[..., None] * np.eye(means.shape[1]))
    settings.update(order_feature=data.feature_names[feature])
    posterior = order_posterior(dataset, feature, means)
    result = identified_result(model, data, priors, posterior, settings, sample_stats, elbo)
    result.settings["fit_seconds"] = time.perf_counter() - started
    return result
