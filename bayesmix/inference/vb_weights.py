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

A ``concentration`` below is ``q``'s parameters: ``(K,)`` for the Dirichlet, ``(2, K)``
(the rows ``a`` and ``b``) for the sticks.
"""

from __future__ import annotations

import numpy as np
from scipy.special import betaln, digamma, gammaln

from bayesmix.priors import WEIGHT_CONCENTRATION

__all__ = [
    "DP_CONCENTRATION",
    "INTERFACE_WEIGHT_PRIORS",
    "WEIGHT_PRIORS",
    "expected_log_weights",
    "expected_weights",
    "interface_concentration",
    "log_normaliser",
    "posterior_concentration",
    "prior_log_normaliser",
    "sample_weights",
    "weights_kl",
]

#: the two weight priors: a truncated Dirichlet process (stick-breaking) or a symmetric
#: Dirichlet distribution
WEIGHT_PRIORS = ("dirichlet_process", "dirichlet_distribution")
#: the ``weight_prior`` option of ``fit(method="vb")`` and :data:`WEIGHT_PRIORS`' names
INTERFACE_WEIGHT_PRIORS = {
    "dirichlet": "dirichlet_distribution",
    "dirichlet_process": "dirichlet_process",
}
#: the Dirichlet process' concentration when the declaration has default priors
DP_CONCENTRATION = 1.0


def posterior_concentration(weight_prior: str, alpha: float, mass: np.ndarray) -> np.ndarray:
    """``q(pi)``'s parameters given the components' responsibility masses ``(K,)``."""
    mass = np.asarray(mass, dtype=float)
    if weight_prior == "dirichlet_distribution":
        return alpha + mass
    later = np.concatenate((np.cumsum(mass[::-1])[-2::-1], [0.0]))  # sum_{j > k} N_j
    return np.stack((1.0 + mass, alpha + later))


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


def prior_log_normaliser(weight_prior: str, alpha: float, n_components: int) -> float:
    """:func:`log_normaliser` of the prior (``K`` components, concentration ``alpha``)."""
    if weight_prior == "dirichlet_distribution":
        return float(gammaln(n_components * alpha) - n_components * gammaln(alpha))
    return float(n_components * np.log(alpha))  # -log B(1, alpha) per stick


def weights_kl(weight_prior: str, concentration: np.ndarray, alpha: float) -> float:
    """``KL(q(pi) || p(pi))`` (for the sticks: ``sum_k KL(q(v_k) || Beta(1, alpha))``)."""
    concentration = np.asarray(concentration, dtype=float)
    n_components = concentration.shape[-1]
    difference = log_normaliser(weight_prior, concentration) - prior_log_normaliser(
        weight_prior, alpha, n_components
    )
    if weight_prior == "dirichlet_distribution":
        log_pi = digamma(concentration) - digamma(concentration.sum())
        return float(difference + (concentration - alpha) @ log_pi)
    a, b = concentration
    log_total = digamma(a + b)
    return float(
        difference
        + ((a - 1.0) * (digamma(a) - log_total)).sum()
        + ((b - alpha) * (digamma(b) - log_total)).sum()
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
    ``"dirichlet_process"``: that value when the declaration sets it to another value
    than the Dirichlet's default 4, else :data:`DP_CONCENTRATION` (1).

    Raises
    ------
    ValueError
        An asymmetric ``weight_concentration`` (one value per component that differ).
    """
    concentration = np.atleast_1d(np.asarray(concentration, dtype=float))
    if not np.allclose(concentration, concentration[0]):
        raise ValueError(
            "method='vb' takes a symmetric weight prior: priors weight_concentration must "
            f"be one value; got {concentration.tolist()}."
        )
    if weight_prior == "dirichlet_process" and (
        not explicit or np.all(concentration == WEIGHT_CONCENTRATION)
    ):
        return DP_CONCENTRATION
    return float(concentration[0])
