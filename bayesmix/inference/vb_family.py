"""Closed-form mean-field variational Bayes (CAVI) for the conjugate non-Gaussian families.

Coordinate ascent on ``q(z) q(pi) prod_k q(theta_k)`` (Bishop 2006, ch. 10; Blei & Jordan
2006 for the stick-breaking weights) for a :class:`bayesmix.Mixture` whose family has
closed-form updates (``family.supports_vb``):

========================  ====================================  ===========================
family                    conjugate prior (from its priors)     ``q(theta_k)``
========================  ====================================  ===========================
``Poisson()``             ``lambda ~ Gamma(rate_shape,          Gamma per component and
                          rate_shape / rate_mean)``             column
``Bernoulli()``           ``p ~ Beta(probability_alpha,         Beta per component and
                          probability_beta)``                   column
``Categorical()``         ``pi_d ~ Dirichlet(                   Dirichlet per component and
                          probability_concentration)``          column
``Normal()``              Normal-Gamma (``Normal.vb_prior``)    Normal-Gamma per component
                                                                and column
``Independent({...})``    every block's own                     every block's own
``StudentT``, diag        Normal-Gamma (``StudentT.vb_prior``)  Normal-Gamma per component
                                                                and column; ``q(u | z)``
                                                                Gamma per row
========================  ====================================  ===========================

``StudentT("diag")``: a Student-t component is a scale mixture of Normals, ``x | u ~
N(mu, Sigma / u)`` with ``u ~ Gamma(nu / 2, nu / 2)``: with diagonal scales it is
conjugate given the latent scales, and ``q(z_n, u_n) = q(z_n) q(u_n | z_n)`` (Svensén &
Bishop 2005; Archambeau & Verleysen 2007) keeps every update closed form; the rows'
``E[u]`` weight the Normal-Gamma statistics. The degrees of freedom are fixed
(``StudentT("diag", dof=nu)``) or a point estimate (MAP-EM's update with ``E_q[log u -
u]``; the bound then is on ``log p(X, nu)``, its Gamma prior included). It needs complete
data and cannot be a block of a product (its statistics need its latent scales).

The priors are the declaration's resolved priors (:meth:`bayesmix.Mixture.resolve_priors`),
the values MAP-EM, NUTS and ADVI use, so that for large N the VB posterior means approach
the MAP-EM estimate; ``Normal()`` and ``StudentT`` read their independent Normal and
inverse-gamma priors into the conjugate Normal-Gamma family
(:func:`bayesmix.families.base.normal_gamma_prior`). Weights:
:mod:`bayesmix.inference.vb_weights` (symmetric Dirichlet or truncated stick-breaking).

One iteration is the family's E-step under ``q`` — the EM kernels' pass with ``E_q[log
theta]`` in place of ``log theta`` (:meth:`~bayesmix.families.base.ComponentFamily.
vb_expectation`), or, for products of families, the blocks' expected log densities
normalised here (:meth:`~bayesmix.families.base.ComponentFamily.vb_log_density`) and
EM's :meth:`~bayesmix.families.base.ComponentFamily.statistics` — and then every
factor's closed-form update from those same additive statistics
(:meth:`~bayesmix.families.base.ComponentFamily.vb_posterior`). Missing entries
(``missing="marginalize"``) drop out of the statistics as in EM.

Evidence lower bound
--------------------
After each E-step, with ``q(z)`` optimal for the current ``q(pi) q(theta)``, the ELBO is
exact and cheap:

    ELBO = sum_n w_n log sum_k exp(E[log pi_k] + E[log p(x_n | theta_k)])
           - KL(q(pi) || p(pi)) - sum_k KL(q(theta_k) || p(theta_k)),

the first term being the E-step pass's log-likelihood. Each CAVI update maximises the
ELBO over one factor, so the trace never decreases (``tests/test_vb_families.py``); for
``K = 1`` with the Dirichlet weight prior ``q`` is the exact posterior and the ELBO is
the log marginal likelihood. The fit stops when the ELBO gains less than ``tol`` per
(weighted) observation.

The pieces are functions of a block of rows (:func:`block_vb_estep`,
:func:`block_vb_assigned`, added by :func:`add_vb_statistics`) and of the E-step
(:func:`run_family_cavi`), so that Dask input runs the same loop over chunks, or
stochastic VB on minibatches of them (:mod:`bayesmix.inference.vb_family_dask`).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial, reduce
from typing import TYPE_CHECKING, Any

import numpy as np

from bayesmix.exceptions import ConvergenceWarning
from bayesmix.families.gaussian.stats import log_normalise
from bayesmix.inference.em.init import kmeans, nearest
from bayesmix.inference.interrupt import (
    INTERRUPTS,
    is_interrupt,
    keeps_partial_work,
    warn_vb_unfinished,
)
from bayesmix.inference.vb import resolve_seed
from bayesmix.inference.vb_weights import (
    INTERFACE_WEIGHT_PRIORS,
    STICK_PRIORS,
    VB_WEIGHT_PRIORS,
    check_discount,
    check_stick_prior,
    expected_log_weights,
    expected_weights,
    interface_concentration,
    posterior_concentration,
    sample_weights,
    truncated_stick_parameters,
    weights_kl,
)
from bayesmix.validation import check_choice, check_float, check_int, check_random_state

if TYPE_CHECKING:
    from bayesmix.data import Data
    from bayesmix.families.base import ComponentFamily
    from bayesmix.mixture import Mixture
    from bayesmix.results.posterior import BayesResult

__all__ = [
    "FAMILY_VB_INITS",
    "FamilyVBResult",
    "add_vb_statistics",
    "block_vb_assigned",
    "block_vb_estep",
    "combine_vb_statistics",
    "family_elbo",
    "family_vb_result",
    "fit_family_vb",
    "fit_family_vb_result",
    "keep_best_run",
    "run_family_cavi",
    "start_parameters",
    "vb_family_names",
    "vb_unsupported_message",
    "vb_weight_prior",
]

#: the start methods of :func:`fit_family_vb`: k-means on the family's start transform
#: (EM's start), or random responsibilities
FAMILY_VB_INITS = ("kmeans", "random")


def vb_family_names() -> str:
    """The families closed-form VB supports, for error messages."""
    return (
        "Gaussian (full, tied, diag, spherical), Poisson(), Bernoulli(), Categorical(), "
        "Normal(), Independent({...}) products of these, and StudentT('diag') (diagonal "
        "scales, not in a product)"
    )


def vb_unsupported_message(family: ComponentFamily) -> str:
    """Why ``fit(method="vb")`` refuses ``family``: the supported families and, for a
    product, its blocks without closed-form VB."""
    blocks = family.vb_unsupported() if hasattr(family, "vb_unsupported") else []
    which = f" (block(s) {', '.join(blocks)})" if blocks else ""
    gaussian = any("GaussianBlock" in block for block in blocks)
    hint = (
        " In a product, give Gaussian columns as a Normal() block (diagonal, with a "
        "Normal-Gamma prior) for vb."
        if gaussian
        else ""
    )
    return (
        f"method='vb' is not available for the {family.name} family{which}: closed-form "
        f"variational Bayes supports {vb_family_names()}. Fit it with method='em', 'map', "
        f"'nuts' or 'advi'.{hint}"
    )


@dataclass(frozen=True)
class FamilyVBResult:
    """One CAVI fit: the kept run's ``q`` and its ELBO trace.

    Attributes
    ----------
    q : dict of numpy.ndarray
        The family's variational parameters (:meth:`~bayesmix.families.base.
        ComponentFamily.vb_posterior`).
    weight_prior : str
        ``"dirichlet_distribution"``, ``"dirichlet_process"`` or ``"pitman_yor"``.
    weight_concentration : numpy.ndarray
        ``q(pi)``'s parameters (:mod:`bayesmix.inference.vb_weights`).
    alpha : float
        The weight prior's concentration.
    elbo_trace : numpy.ndarray
        The ELBO after each E-step of the kept run (never decreasing).
    converged : bool
    n_iter : int
        Iterations of the kept run.
    n_obs : float
        Total weight of the rows.
    interrupted : bool
        Ctrl-C stopped the runs: the best run so far is kept (not converged).
    discount : float
        The Pitman-Yor prior's discount (0 for the other weight priors).
    """

    q: dict[str, np.ndarray]
    weight_prior: str
    weight_concentration: np.ndarray
    alpha: float
    elbo_trace: np.ndarray
    converged: bool
    n_iter: int
    n_obs: float
    interrupted: bool = False
    discount: float = 0.0

    @property
    def elbo(self) -> float:
        """The last ELBO (``-inf`` without iterations)."""
        return float(self.elbo_trace[-1]) if len(self.elbo_trace) else -np.inf

    @property
    def weights(self) -> np.ndarray:
        """``E_q[pi]``."""
        return expected_weights(self.weight_prior, self.weight_concentration)


def block_vb_estep(family, X, weights, prepared, log_weights, q):
    """``(sum_n w_n log sum_k exp(...), mass, statistics)`` of a block of rows under
    ``q``: the family's fused pass, else its expected log density normalised and the
    statistics of the responsibilities (:meth:`vb_statistics`; the parameters at
    ``q``'s means passed for their names). Blocks add up by :func:`add_vb_statistics`."""
    fused = family.vb_expectation(X, weights, log_weights, q, prepared)
    if fused is not None:
        return fused
    log_norm, log_resp = log_normalise(log_weights + family.vb_log_density(X, q, prepared))
    resp = np.exp(log_resp) * weights[:, None]
    stats = family.vb_statistics(X, resp, family.vb_mean(q), prepared)
    return float(weights @ log_norm), resp.sum(axis=0), stats


def block_vb_assigned(family, X, weights, prepared, labels, centres, params):
    """``(mass, statistics)`` of a block's rows assigned to one component each (their
    weights as responsibilities): by ``labels``, or (``labels=None``) to the nearest of
    ``centres`` in the family's start transform; ``params`` name the statistics."""
    if labels is None:
        labels, _ = nearest(family.start_transform(X), centres)
    resp = np.zeros((X.shape[0], _n_rows(params)))
    resp[np.arange(X.shape[0]), labels] = weights
    return resp.sum(axis=0), family.vb_statistics(X, resp, params, prepared)


def _n_rows(params) -> int:
    return next(iter(params.values())).shape[0]


def add_vb_statistics(shared: tuple[str, ...], *parts: Any) -> Any:
    """The sum of blocks' :func:`block_vb_estep` (or :func:`block_vb_assigned`)
    results: numbers and arrays add, tuples and dicts elementwise, except the entries
    named in ``shared`` (the family's :attr:`~bayesmix.families.base.ComponentFamily.
    vb_shared`: an origin or a fixed parameter, the same in every block), kept."""
    return reduce(partial(_add_tree, shared), parts)


def _add_tree(shared, a, b):
    if isinstance(a, dict):
        return {
            key: a[key]
            if key in shared and not isinstance(a[key], dict)
            else _add_tree(shared, a[key], b[key])
            for key in a
        }
    if isinstance(a, tuple):
        return tuple(_add_tree(shared, x, y) for x, y in zip(a, b, strict=True))
    return a + b


def combine_vb_statistics(shared: tuple[str, ...], a: Any, b: Any, scale_a: float, scale_b: float):
    """``scale_a a + scale_b b`` entry by entry (tuples and dicts of numbers and arrays),
    the entries named in ``shared`` taken from ``b``: stochastic VB's scaled minibatch
    statistics and their smoothing."""
    if isinstance(a, dict):
        return {
            key: b[key]
            if key in shared and not isinstance(a[key], dict)
            else combine_vb_statistics(shared, a[key], b[key], scale_a, scale_b)
            for key in a
        }
    if isinstance(a, tuple):
        return tuple(
            combine_vb_statistics(shared, x, y, scale_a, scale_b) for x, y in zip(a, b, strict=True)
        )
    return scale_a * a + scale_b * b


def _start_resp(family, X, weights, n_components, init, rng) -> np.ndarray:
    """Initial responsibilities ``(n_obs, K)``: one-hot k-means clusters of the family's
    start transform, random (Dirichlet(1) rows), or the given array."""
    if isinstance(init, np.ndarray):
        return init
    if init == "random":
        return rng.dirichlet(np.ones(n_components), size=X.shape[0])
    labels = kmeans(family.start_transform(X), weights, n_components, rng)
    resp = np.zeros((X.shape[0], n_components))
    resp[np.arange(X.shape[0]), labels] = 1.0
    return resp


def start_parameters(family, X, resp, weights) -> dict[str, np.ndarray]:
    """Parameters with the family's names (what :meth:`statistics` indexes), at the
    responsibility-weighted centres of the rows (NaN filled by column means)."""
    missing = np.isnan(X)
    filled = np.where(missing, np.nanmean(X, axis=0), X) if missing.any() else X
    weighted = resp * weights[:, None]
    centres = weighted.T @ filled / np.maximum(weighted.sum(axis=0), 1e-300)[:, None]
    return family.initial_parameters(X, centres, weights)


def fit_family_vb(
    family: ComponentFamily,
    X: np.ndarray,
    priors: dict[str, np.ndarray],
    n_components: int,
    *,
    weight_prior: str = "dirichlet_distribution",
    alpha: float = 1.0,
    discount: float = 0.0,
    sample_weight: np.ndarray | None = None,
    init: str | np.ndarray = "kmeans",
    n_init: int = 5,
    max_iter: int = 1000,
    tol: float = 1e-8,
    random_state: Any = None,
    warn: bool = True,
) -> FamilyVBResult:
    """Fit ``q`` by coordinate ascent on the ELBO; keep the best of ``n_init`` runs.

    Parameters
    ----------
    family : ComponentFamily
        A family with ``supports_vb`` (its settings fixed by the data, as
        :meth:`bayesmix.Mixture.fit` fixes them).
    X : numpy.ndarray of shape (n_obs, n_features)
        Data in the family's support; NaN marks a missing entry.
    priors : dict
        The family's resolved priors (:meth:`bayesmix.Mixture.resolve_priors`).
    n_components : int
        K (the truncation level for the Dirichlet process).
    weight_prior : {"dirichlet_distribution", "dirichlet_process", "pitman_yor"}
    alpha : float
        The weight prior's concentration.
    discount : float
        The Pitman-Yor prior's discount, ``0 <= discount < 1`` (0 for the others).
    sample_weight : numpy.ndarray of shape (n_obs,), optional
        Frequency weights.
    init : {"kmeans", "random"} or numpy.ndarray
        Initial responsibilities: k-means on the family's start transform (EM's start),
        Dirichlet(1) rows, or an ``(n_obs, K)`` array (every run starts there).
    n_init : int
        Runs; the one with the highest final ELBO is kept.
    max_iter : int
        Iterations per run (``0``: the start's ``q``, no ELBO).
    tol : float
        Stop when the ELBO gains less than ``tol`` per (weighted) observation.
    random_state : None, int or numpy.random.Generator
    warn : bool
        Warn (:class:`bayesmix.ConvergenceWarning`) when the kept run did not converge.

    Returns
    -------
    FamilyVBResult

    Raises
    ------
    ValueError
        A family without closed-form VB, an unknown ``weight_prior`` or ``init``, a
        non-positive ``alpha``, a ``discount`` out of range or with another prior than
        ``"pitman_yor"`` (:func:`~bayesmix.inference.vb_weights.check_discount`),
        responsibilities of the wrong shape, or a non-finite
        ELBO.
    """
    if not family.supports_vb:
        raise ValueError(vb_unsupported_message(family))
    check_choice(weight_prior, "weight_prior", VB_WEIGHT_PRIORS)
    discount = check_discount(weight_prior, discount)
    alpha = check_float(alpha, "alpha", inclusive=False)
    n_init = check_int(n_init, "n_init")
    max_iter = check_int(max_iter, "max_iter", minimum=0)
    tol = check_float(tol, "tol")
    X = np.asarray(X, dtype=np.float64)
    n_obs = X.shape[0]
    weights = np.ones(n_obs) if sample_weight is None else np.asarray(sample_weight, float)
    if isinstance(init, np.ndarray):
        if init.shape != (n_obs, n_components):
            raise ValueError(
                f"init responsibilities must have shape {(n_obs, n_components)}; got {init.shape}."
            )
        init = np.asarray(init, dtype=np.float64)
    else:
        check_choice(init, "init", FAMILY_VB_INITS)
    rng = check_random_state(random_state)
    prepared = family.prepare(X)
    total = float(weights.sum())
    estep = partial(block_vb_estep, family, X, weights, prepared)
    settings = (weight_prior, alpha, discount, max_iter, tol * total)

    def run() -> FamilyVBResult:
        resp = _start_resp(family, X, weights, n_components, init, rng) * weights[:, None]
        params = start_parameters(family, X, resp, weights)
        stats = family.vb_statistics(X, resp, params, prepared)
        q = family.vb_posterior(stats, priors, prepared)
        concentration = posterior_concentration(
            weight_prior, alpha, resp.sum(axis=0), discount=discount
        )
        return run_family_cavi(estep, family, priors, prepared, q, concentration, settings, total)

    best = keep_best_run(run, n_init)
    if warn and max_iter > 0 and not best.converged and not best.interrupted:
        warnings.warn(
            f"vb did not converge in max_iter={max_iter} iterations (last change of the "
            f"ELBO per observation above tol={tol}); increase max_iter or tol.",
            ConvergenceWarning,
            stacklevel=2,
        )
    return best


def keep_best_run(run: Callable[[], FamilyVBResult], n_init: int) -> FamilyVBResult:
    """The run of ``n_init`` calls of ``run`` with the highest final ELBO; Ctrl-C (in
    a run that iterated, or between runs) keeps the best so far, marked interrupted,
    and starts no more runs."""
    best = None
    try:
        for _ in range(n_init):
            result = run()
            if best is None or result.elbo > best.elbo:
                best = result
            if result.interrupted:  # no more runs
                best = replace(best, converged=False, interrupted=True)
                break
    except INTERRUPTS as error:  # Ctrl-C while a later run started: the best so far
        if not (is_interrupt(error) and keeps_partial_work() and best is not None):
            raise
        best = replace(best, converged=False, interrupted=True)
    return best


def run_family_cavi(
    estep: Callable[[np.ndarray, dict], tuple[float, np.ndarray, Any]],
    family: ComponentFamily,
    priors: dict[str, np.ndarray],
    prepared: Any,
    q: dict[str, np.ndarray],
    concentration: np.ndarray,
    settings: tuple,
    total: float,
) -> FamilyVBResult:
    """One CAVI run from ``(q, concentration)``: ``estep(log_weights, q)`` gives the
    E-step's ``(log-likelihood, mass, statistics)`` over all rows (in memory one block,
    on Dask the chunks' sum), then every factor's closed-form update. ``settings`` is
    ``(weight_prior, alpha, discount, max_iter, tolerance)``, the tolerance in nats
    (``tol`` times ``total``, the rows' total weight). Ctrl-C after at least one
    iteration returns the run so far, ``interrupted`` (raised before, or when nested in
    another fit)."""
    weight_prior, alpha, discount, max_iter, tolerance = settings
    trace: list[float] = []
    converged: bool | None = False
    try:
        for _ in range(max_iter):
            log_weights = expected_log_weights(weight_prior, concentration)
            log_lik, mass, stats = estep(log_weights, q)
            elbo = family_elbo(family, priors, log_lik, q, concentration, settings)
            trace.append(elbo)
            if len(trace) > 1 and abs(trace[-1] - trace[-2]) < tolerance:
                converged = True
                break
            q = family.vb_posterior(stats, priors, prepared)
            concentration = posterior_concentration(weight_prior, alpha, mass, discount=discount)
    except INTERRUPTS as error:  # Ctrl-C: the run so far (converged None), if it iterated
        if not (is_interrupt(error) and keeps_partial_work() and trace):
            raise
        converged = None
    return FamilyVBResult(
        q,
        weight_prior,
        np.asarray(concentration),
        alpha,
        np.asarray(trace),
        bool(converged),
        len(trace),
        total,
        converged is None,
        discount,
    )


def family_elbo(family, priors, log_lik, q, concentration, settings) -> float:
    """The ELBO of ``q`` after an E-step under it whose log-sum-exp total is
    ``log_lik``: that total less the weights' and the components' KL divergences
    (module docstring); ``ValueError`` when it is not finite. ``settings`` as in
    :func:`run_family_cavi`."""
    weight_prior, alpha, discount = settings[:3]
    weight_kl = weights_kl(weight_prior, concentration, alpha, discount=discount)
    elbo = float(log_lik - weight_kl - family.vb_kl(q, priors))
    if not np.isfinite(elbo):
        raise ValueError(
            "the variational E-step gave a non-finite ELBO: X holds values outside "
            f"the {family.name} family's support or infinite values; check X."
        )
    return elbo


def fit_family_vb_result(
    model: Mixture,
    data: Data,
    *,
    weight_prior: str = "dirichlet",
    discount: float = 0.0,
    sample_weight: Any = None,
    n_init: int = 5,
    init: Any = "kmeans",
    max_iter: int = 1000,
    tol: float = 1e-8,
    draws: int = 1000,
    order_by: Any = None,
    random_state: Any = None,
) -> BayesResult:
    """``Mixture(K, family).fit(X, method="vb")``: :func:`fit_family_vb` under the
    declaration's resolved priors (those of MAP-EM), then ``draws`` draws from ``q`` as a
    one-chain :class:`~bayesmix.results.posterior.BayesResult`.

    ``weight_prior="dirichlet"``: the symmetric Dirichlet with the declaration's
    ``weight_concentration`` (default 4, as MAP-EM); ``"dirichlet_process"``: sticks
    ``Beta(1, alpha)``, ``alpha`` the declaration's ``weight_concentration`` when set to
    another value than 4, else 1 (:func:`~bayesmix.inference.vb_weights.
    interface_concentration`); ``"pitman_yor"``: sticks ``Beta(1 - discount, alpha + k
    discount)``, ``alpha`` as the Dirichlet process'. Components are numbered by
    :mod:`bayesmix.ordering`'s rule applied to ``q``'s means. ``result.elbo`` is the kept
    run's ELBO trace; ``settings`` records ``method="vb"``, ``converged``, ``n_iter``,
    ``elbo`` and the options (``discount`` under ``"pitman_yor"``).

    Raises
    ------
    ValueError
        A family without closed-form VB (naming the supported ones and, for a product,
        the blocks without), or a bad option (named).
    TypeError
        ``init`` neither a method name nor an array.
    """
    from bayesmix.data import check_sample_weight
    from bayesmix.ordering import resolve_order_by

    started = time.perf_counter()
    family = model.family
    if not family.supports_vb:
        raise ValueError(vb_unsupported_message(family))
    check_choice(weight_prior, "weight_prior", tuple(INTERFACE_WEIGHT_PRIORS))
    discount = check_discount(weight_prior, discount)
    n_init = check_int(n_init, "n_init")
    max_iter = check_int(max_iter, "max_iter")
    tol = check_float(tol, "tol", inclusive=False)
    draws = check_int(draws, "draws")
    if isinstance(init, str):
        check_choice(init, "init", FAMILY_VB_INITS)
    elif not isinstance(init, np.ndarray):
        raise TypeError(
            f"init must be one of {list(FAMILY_VB_INITS)} or an (n_obs, n_components) "
            f"array of responsibilities; got {type(init).__name__}."
        )
    feature = resolve_order_by(order_by, data.feature_names)  # before any work
    weights = check_sample_weight(sample_weight, data.n_obs)
    seed = resolve_seed(random_state)
    rng = np.random.default_rng(seed)
    priors = model.resolve_priors(data, weights)
    internal, alpha, discount = vb_weight_prior(model, priors, weight_prior, discount)
    fit = fit_family_vb(
        family,
        data.values,
        priors,
        model.n_components,
        weight_prior=internal,
        alpha=alpha,
        discount=discount,
        sample_weight=weights,
        init=init,
        n_init=n_init,
        max_iter=max_iter,
        tol=tol,
        random_state=rng,
        warn=False,
    )
    warn_vb_unfinished(
        fit.interrupted,
        fit.converged,
        fit.n_iter,
        max_iter,
        tol,
        change="ELBO per observation",
        stacklevel=4,
    )
    settings = dict(
        n_init=n_init,
        init=init if isinstance(init, str) else "array",
        max_iter=max_iter,
        tol=tol,
    )
    return family_vb_result(
        model,
        data,
        fit,
        priors,
        weight_prior=weight_prior,
        draws=draws,
        feature=feature,
        seed=seed,
        rng=rng,
        settings=settings,
        started=started,
    )


def vb_weight_prior(
    model: Mixture, priors: dict[str, np.ndarray], weight_prior: str, discount: float
) -> tuple[str, float, float]:
    """The weight prior of a family VB fit from the option ``weight_prior`` (checked)
    and the resolved ``priors``: ``(internal name, alpha, discount)``
    (:func:`~bayesmix.inference.vb_weights.interface_concentration`)."""
    internal = INTERFACE_WEIGHT_PRIORS[weight_prior]
    alpha = interface_concentration(
        internal,
        priors["weight_concentration"],
        model.priors is not None and "weight_concentration" in model.priors,
    )
    if internal in STICK_PRIORS:
        alpha, discount = check_stick_prior(internal, alpha, discount)
    return internal, alpha, discount


def family_vb_result(
    model: Mixture,
    data: Any,
    fit: FamilyVBResult,
    priors: dict[str, np.ndarray],
    *,
    weight_prior: str,
    draws: int,
    feature: int | None,
    seed: int,
    rng: np.random.Generator,
    settings: dict,
    started: float,
) -> BayesResult:
    """The :class:`~bayesmix.results.posterior.BayesResult` of a family VB fit (in
    memory or on Dask: ``data`` a :class:`~bayesmix.data.Data` or
    :class:`~bayesmix.data.DaskData`): ``draws`` draws from ``q`` with ``rng`` as one
    chain, components numbered by the order ``feature`` (default: the best-separated
    feature of ``q``'s means), ``elbo`` the kept run's trace. ``settings`` (the fit's
    options) gains ``method``, ``family``, the weight prior, ``n_iter``, ``converged``,
    ``elbo``, ``draws``, ``order_feature``, the seed, ``fit_seconds`` (since
    ``started``) and ``interrupted`` when Ctrl-C stopped the fit. Under the
    stick-breaking priors the result's priors hold ``weight_sticks``, the Beta
    parameters ``(2, K - 1)`` of the truncation NUTS and ADVI sample
    (:func:`~bayesmix.inference.vb_weights.truncated_stick_parameters`), as a Gaussian
    VB result's :class:`~bayesmix.priors.StickBreakingPriors`."""
    from bayesmix.ordering import best_separated_feature, order_posterior
    from bayesmix.results.posterior import BayesResult

    family, internal, alpha = model.family, fit.weight_prior, fit.alpha
    arrays = {"weights": sample_weights(internal, fit.weight_concentration, draws, rng)}
    arrays.update(family.vb_sample(fit.q, draws, rng))
    posterior = model.posterior_from_draws(
        {name: value[None] for name, value in arrays.items()}, data.feature_names
    )
    mean = family.vb_mean(fit.q)
    means = family.component_means(mean)
    if feature is None:
        variances = family.component_variances(mean)
        feature = best_separated_feature(means, variances[..., None] * np.eye(means.shape[1]))
    posterior = order_posterior(posterior, feature, means)
    settings = dict(
        method="vb",
        family=family.name,
        weight_prior=weight_prior,
        weight_concentration=alpha,
        **({"discount": fit.discount} if internal == "pitman_yor" else {}),
        **settings,
        n_iter=fit.n_iter,
        converged=int(fit.converged),
        elbo=fit.elbo,
        draws=draws,
        order_feature=data.feature_names[feature],
        random_state=seed,
        seed=seed,
        fit_seconds=time.perf_counter() - started,
    )
    if fit.interrupted:
        settings["interrupted"] = True
    if internal in STICK_PRIORS:
        sticks = truncated_stick_parameters(alpha, model.n_components, fit.discount)
        priors = {**priors, "weight_sticks": sticks}
    return BayesResult(
        model=model,
        posterior=posterior,
        data=data,
        priors=priors,
        elbo=fit.elbo_trace,
        settings=settings,
    )
