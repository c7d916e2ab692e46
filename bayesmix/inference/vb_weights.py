"""The mixture weights' factor ``q(pi)`` of closed-form variational Bayes, shared by the
Gaussian CAVI (:mod:`bayesmix.inference.vb`) and the conjugate families' CAVI
(:mod:`bayesmix.inference.vb_family`).

Two priors on the K weights:

* ``"dirichlet_distribution"``: a symmetric ``Dirichlet(alpha, ..., alpha)``; ``q(pi)``
  is ``Dirichlet(c)`` with ``c_k = alpha + N_k`` (``N_k`` the responsibility mass of
  component ``k``);
* ``"dirichlet_process"``: a Dirichlet process truncated at K sticks (Blei & Jordan
  2006), ``pi_k = v_k prod_{j<k} (1 - v_j)`` with ``v_k ~ Beta(1, alpha)``; ``q(v_k)``
  is ``Beta(a_k, b_k)`` with ``a_k = 1 + N_k`` and ``b_k = alpha + sum_{j>k} N_j``.
  As in scikit-learn's ``BayesianGaussianMixture``, every one of the K sticks is a Beta
  (the last is not fixed at 1), and expected or drawn weights are renormalised over
  the K components.

A third, ``"pitman_yor"`` (Pitman & Yor 1997; Ishwaran & James 2001), generalises the
sticks with a ``discount`` ``0 <= d < 1``: ``v_k ~ Beta(1 - d, alpha + k d)`` (``k = 1, 2,
...``), ``alpha > -d``; ``q(v_k)`` is ``Beta(1 - d + N_k, alpha + k d + sum_{j>k} N_j)``
and at ``d = 0`` every quantity is the Dirichlet process' (the functions below take
``discount`` as a keyword, 0 by default). The number of clusters among N draws grows as
``N^d`` rather than ``alpha log N``.

A ``concentration`` below is ``q``'s parameters: ``(K,)`` for the Dirichlet, ``(2, K)``
(the rows ``a`` and ``b``) for the sticks.

NUTS and ADVI (:func:`bayesmix.inference.bayes.fit.fit_nuts`) sample the same
stick-breaking priors with the same ``alpha`` (default :data:`DP_CONCENTRATION`) but
truncated as Ishwaran & James (2001): ``K - 1`` sticks and the remainder
``pi_K = prod_{j<K} (1 - v_j)``, so that the weights sum to one without renormalising
(:func:`truncated_stick_parameters`, :func:`truncated_prior_mean_weights`).
"""

from __future__ import annotations

import numbers
from typing import Any

import numpy as np
from scipy.special import betaln, digamma, gammaln

from bayesmix.priors import WEIGHT_CONCENTRATION

__all__ = [
    "DP_CONCENTRATION",
    "INTERFACE_WEIGHT_PRIORS",
    "STICK_PRIORS",
    "VB_WEIGHT_PRIORS",
    "WEIGHT_PRIORS",
    "check_discount",
    "check_stick_prior",
    "expected_log_weights",
    "expected_weights",
    "interface_concentration",
    "log_normaliser",
    "posterior_concentration",
    "prior_log_normaliser",
    "prior_mean_n_clusters",
    "sample_weights",
    "stick_prior_parameters",
    "truncated_prior_mean_weights",
    "truncated_stick_parameters",
    "weights_kl",
]

#: scikit-learn's two weight priors (its ``weight_concentration_prior_type``): a
#: truncated Dirichlet process (stick-breaking) or a symmetric Dirichlet distribution
WEIGHT_PRIORS = ("dirichlet_process", "dirichlet_distribution")
#: the weight priors of closed-form VB: :data:`WEIGHT_PRIORS` and a truncated Pitman-Yor
#: process (stick-breaking with a ``discount``)
VB_WEIGHT_PRIORS = (*WEIGHT_PRIORS, "pitman_yor")
#: the ``weight_prior`` option of ``fit(method="vb")`` and :data:`WEIGHT_PRIORS`' names
INTERFACE_WEIGHT_PRIORS = {
    "dirichlet": "dirichlet_distribution",
    "dirichlet_process": "dirichlet_process",
    "pitman_yor": "pitman_yor",
}
#: the Dirichlet process' concentration when the declaration has default priors
DP_CONCENTRATION = 1.0
#: the stick-breaking weight priors: ``v_k ~ Beta(1 - d, alpha + k d)``, ``d = 0`` for the
#: Dirichlet process
STICK_PRIORS = ("dirichlet_process", "pitman_yor")


def check_stick_prior(weight_prior: str, alpha: float, discount: float) -> tuple[float, float]:
    """``(alpha, discount)`` of a stick-breaking prior, checked.

    Raises
    ------
    ValueError
        ``weight_prior`` not one of :data:`STICK_PRIORS`; a ``discount`` outside
        ``[0, 1)`` (or not 0 for the Dirichlet process); ``alpha <= -discount`` (a
        Dirichlet process needs ``alpha > 0``).
    """
    if weight_prior not in STICK_PRIORS:
        raise ValueError(f"weight_prior must be one of {list(STICK_PRIORS)}; got {weight_prior!r}.")
    if isinstance(discount, bool) or not isinstance(discount, (int, float, np.number)):
        raise TypeError(f"discount must be a number in [0, 1); got {discount!r}.")
    discount = float(discount)
    if weight_prior == "dirichlet_process" and discount != 0.0:
        raise ValueError(
            f"discount={discount:g} needs weight_prior='pitman_yor'; the Dirichlet process "
            "has discount 0."
        )
    if not 0.0 <= discount < 1.0:
        raise ValueError(f"discount must satisfy 0 <= discount < 1; got {discount:g}.")
    alpha = float(alpha)
    if not (np.isfinite(alpha) and alpha > -discount) or (discount == 0.0 and alpha <= 0.0):
        raise ValueError(
            f"the stick-breaking concentration must be > -discount = {-discount:g} (> 0 "
            f"for the Dirichlet process); got weight_concentration {alpha:g}."
        )
    return alpha, discount


def check_discount(weight_prior: str, discount: Any) -> float:
    """The ``discount`` option given with ``weight_prior`` (an interface name of
    :data:`INTERFACE_WEIGHT_PRIORS` or one of :data:`VB_WEIGHT_PRIORS`), checked before any
    work: any ``0 <= discount < 1`` for ``"pitman_yor"``, 0 for the others.

    The concentration's bound ``alpha > -discount`` is :func:`check_stick_prior`'s, once
    ``alpha`` is read from the declaration (a declared ``weight_concentration`` is > 0,
    so it holds).

    Raises
    ------
    TypeError
        ``discount`` not a real number (a bool included).
    ValueError
        ``discount`` outside ``[0, 1)``, or not 0 with another prior than ``"pitman_yor"``.
    """
    if weight_prior in STICK_PRIORS:
        return check_stick_prior(weight_prior, DP_CONCENTRATION, discount)[1]
    if isinstance(discount, bool | np.bool_) or not isinstance(discount, numbers.Real):
        raise TypeError(f"discount must be a number in [0, 1); got {discount!r}.")
    if discount != 0:
        raise ValueError(
            f"discount={discount!r} needs weight_prior='pitman_yor'; the Dirichlet weight "
            "prior has no discount."
        )
    return 0.0


def stick_prior_parameters(alpha: float, n_sticks: int, discount: float = 0.0) -> np.ndarray:
    """The prior Beta parameters ``(2, n_sticks)`` of the sticks: ``a_k = 1 - d``,
    ``b_k = alpha + k d`` for ``k = 1 .. n_sticks``."""
    k = np.arange(1, n_sticks + 1, dtype=float)
    return np.stack((np.full(n_sticks, 1.0 - discount), alpha + k * discount))


def truncated_stick_parameters(alpha: float, n_components: int, discount: float = 0.0):
    """The Beta parameters ``(2, K - 1)`` of the ``K - 1`` free sticks of NUTS' and
    ADVI's truncation (the K-th weight is the remainder)."""
    return stick_prior_parameters(alpha, n_components - 1, discount)


def truncated_prior_mean_weights(
    alpha: float, n_components: int, discount: float = 0.0
) -> np.ndarray:
    """``E[pi_k]`` ``(K,)`` under the truncation of :func:`truncated_stick_parameters`:
    ``E[v_k] prod_{j<k} E[1 - v_j]`` (the sticks are independent) and the remainder
    ``prod_{j<K} E[1 - v_j]``."""
    a, b = truncated_stick_parameters(alpha, n_components, discount)
    stick = a / (a + b)
    rest = np.concatenate(([1.0], np.cumprod(1.0 - stick)))
    return np.concatenate((stick, [1.0])) * rest


def prior_mean_n_clusters(alpha: float, n_obs: int, discount: float = 0.0) -> float:
    """The prior expected number of clusters among ``n_obs`` draws of an (untruncated)
    Pitman-Yor process (Pitman 2006, eq. 3.13): ``alpha sum_{i<n} 1 / (alpha + i)`` for
    ``d = 0``, else ``(Gamma(alpha + d + n) Gamma(alpha + 1) / (Gamma(alpha + d)
    Gamma(alpha + n)) - alpha) / d`` (``-> n^d Gamma(alpha + 1) / (d Gamma(alpha + d))``)."""
    if discount == 0.0:
        return float(alpha * np.sum(1.0 / (alpha + np.arange(n_obs))))
    log_ratio = (
        gammaln(alpha + discount + n_obs)
        + gammaln(alpha + 1.0)
        - gammaln(alpha + discount)
        - gammaln(alpha + n_obs)
    )
    return float((np.exp(log_ratio) - alpha) / discount)


def posterior_concentration(
    weight_prior: str, alpha: float, mass: np.ndarray, *, discount: float = 0.0
) -> np.ndarray:
    """``q(pi)``'s parameters given the components' responsibility masses ``(K,)``
    (``discount``: the Pitman-Yor prior's, 0 for the Dirichlet process)."""
    mass = np.asarray(mass, dtype=float)
    if weight_prior == "dirichlet_distribution":
        return alpha + mass
    # stick_prior_parameters(alpha, K, discount) + [mass; sum_{j > k} N_j], written into
    # one array (the same additions; CAVI calls this at every iteration)
    concentration = np.empty((2, mass.size))
    np.add(1.0 - discount, mass, out=concentration[0])
    concentration[1, -1] = 0.0
    concentration[1, :-1] = np.cumsum(mass[::-1])[-2::-1]
    concentration[1] += alpha + np.arange(1, mass.size + 1, dtype=float) * discount
    return concentration


def expected_weights(weight_prior: str, concentration: np.ndarray) -> np.ndarray:
    """``E_q[pi_k]`` (normalised over the K sticks for the truncated stick-breaking)."""
    concentration = np.asarray(concentration, dtype=float)
    if weight_prior == "dirichlet_distribution":
        return concentration / concentration.sum()
    a, b = concentration
    stick = a / (a + b)
    remaining = np.concatenate(([1.0], np.cumprod(b / (a + b))[:-1]))
    weights = stick * remaining
    return weights / weights.sum()


def expected_log_weights(weight_prior: str, concentration: np.ndarray) -> np.ndarray:
    """``E_q[log pi_k]`` ``(K,)``."""
    concentration = np.asarray(concentration, dtype=float)
    if weight_prior == "dirichlet_distribution":
        return digamma(concentration) - digamma(concentration.sum())
    a, b = concentration
    log_total = digamma(a + b)
    log_rest = np.concatenate(([0.0], np.cumsum(digamma(b) - log_total)[:-1]))
    return digamma(a) - log_total + log_rest


def log_normaliser(weight_prior: str, concentration: np.ndarray) -> float:
    """The log normaliser of ``q(pi)``: ``log Gamma(sum c) - sum log Gamma(c_k)`` for the
    Dirichlet, ``-sum_k log B(a_k, b_k)`` for the sticks."""
    concentration = np.asarray(concentration, dtype=float)
    if weight_prior == "dirichlet_distribution":
        return float(gammaln(concentration.sum()) - gammaln(concentration).sum())
    return float(-betaln(concentration[0], concentration[1]).sum())


def prior_log_normaliser(
    weight_prior: str, alpha: float, n_components: int, *, discount: float = 0.0
) -> float:
    """:func:`log_normaliser` of the prior (``K`` components, concentration ``alpha``,
    the Pitman-Yor ``discount``)."""
    if weight_prior == "dirichlet_distribution":
        return float(gammaln(n_components * alpha) - n_components * gammaln(alpha))
    if discount == 0.0:
        return float(n_components * np.log(alpha))  # -log B(1, alpha) per stick
    a, b = stick_prior_parameters(alpha, n_components, discount)
    return float(-betaln(a, b).sum())


def weights_kl(
    weight_prior: str, concentration: np.ndarray, alpha: float, *, discount: float = 0.0
) -> float:
    """``KL(q(pi) || p(pi))`` (for the sticks: ``sum_k KL(q(v_k) || Beta(1 - d, alpha +
    k d))``, ``d = discount``)."""
    concentration = np.asarray(concentration, dtype=float)
    n_components = concentration.shape[-1]
    difference = log_normaliser(weight_prior, concentration) - prior_log_normaliser(
        weight_prior, alpha, n_components, discount=discount
    )
    if weight_prior == "dirichlet_distribution":
        log_pi = digamma(concentration) - digamma(concentration.sum())
        return float(difference + (concentration - alpha) @ log_pi)
    a, b = concentration
    prior_a, prior_b = stick_prior_parameters(alpha, n_components, discount)
    log_total = digamma(a + b)
    return float(
        difference
        + ((a - prior_a) * (digamma(a) - log_total)).sum()
        + ((b - prior_b) * (digamma(b) - log_total)).sum()
    )


def sample_weights(
    weight_prior: str, concentration: np.ndarray, n_draws: int, rng: np.random.Generator
) -> np.ndarray:
    """``(n_draws, K)`` weights drawn from ``q(pi)``: Dirichlet, or stick-breaking with
    ``v_k ~ Beta(a_k, b_k)`` renormalised over the K sticks (as :func:`expected_weights`)."""
    concentration = np.asarray(concentration, dtype=float)
    if weight_prior == "dirichlet_distribution":
        return rng.dirichlet(concentration, size=n_draws)
    n_components = concentration.shape[1]
    sticks = rng.beta(concentration[0], concentration[1], size=(n_draws, n_components))
    rest = np.cumprod(1.0 - sticks, axis=1)
    weights = sticks * np.concatenate((np.ones((n_draws, 1)), rest[:, :-1]), axis=1)
    return weights / weights.sum(axis=1, keepdims=True)


def interface_concentration(weight_prior: str, concentration: np.ndarray, explicit: bool) -> float:
    """The weight prior's ``alpha`` in ``fit(method="vb")`` from the declaration's resolved
    ``weight_concentration`` (``explicit``: whether the declaration sets it).

    ``weight_prior="dirichlet"``: the declaration's (symmetric) value (default 4);
    ``"dirichlet_process"`` or ``"pitman_yor"``: that value when the declaration sets it
    to another value than the Dirichlet's default 4, else :data:`DP_CONCENTRATION` (1).
    NUTS and ADVI read ``alpha`` the same way.

    Raises
    ------
    ValueError
        An asymmetric ``weight_concentration`` (one value per component that differ).
    """
    concentration = np.atleast_1d(np.asarray(concentration, dtype=float))
    if not np.allclose(concentration, concentration[0]):
        raise ValueError(
            f"weight_prior={weight_prior!r} takes one concentration (method='vb' a "
            "symmetric weight prior): priors weight_concentration must be one value; got "
            f"{concentration.tolist()}."
        )
    if weight_prior in STICK_PRIORS and (
        not explicit or np.all(concentration == WEIGHT_CONCENTRATION)
    ):
        return DP_CONCENTRATION
    return float(concentration[0])
