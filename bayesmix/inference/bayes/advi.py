"""Mean-field and full-rank ADVI (Kucukelbir et al. 2017, JMLR 18(14)) on a hand-written
log density with its gradient, with no PyMC model to build or compile.

The density is any object with ``n_dim``, ``shapes`` (each expanded variable's shape, in
the expansion's order), ``log_density(theta, grad)`` (the log posterior at the
unconstrained vector ``theta``, Jacobians included, its gradient written into ``grad``)
and ``expand(theta)`` (the constrained variables, flattened), as the families'
``nutpie_density`` return (:mod:`bayesmix.families.count_logdensity`).

The approximation is Gaussian in the unconstrained space, parametrised as PyMC's (so the
optimisation and its stopping rule are those of ``pm.ADVI`` / ``pm.FullRankADVI``):
mean-field ``q = N(mu, diag(softplus(rho))**2)``; full-rank ``q = N(mu, L L^T)`` with ``L``
lower triangular, its diagonal the softplus of the free diagonal (for small scales the
softplus is the exponential, so ``rho`` is the log standard deviation). The start is
PyMC's: ``mu`` at the given point, ``rho = 0`` (sd ``log 2``) or ``L``'s free entries the
identity's (sd ``softplus(1)``).

Each step draws ``n_mc`` standard normal vectors ``eps``, evaluates the density at
``z = mu + sigma * eps`` (or ``mu + L eps``) and ascends the reparameterisation gradient
of the ELBO, whose entropy term ``sum log sigma`` (``sum log diag L``) is exact, by Adam
(PyMC's: ``beta1=0.9, beta2=0.999, epsilon=1e-8``). The ELBO history is the estimate at
each step (PyMC's ``-approx.hist``). The fit stops as PyMC's
``CheckParametersConvergence(every=100, tolerance, diff="relative")``: the parameters
after step 1 are kept, and at every 100th step the infinity norm of ``(|new - old| +
1e-6) / (|old| + 1e-6)`` against the parameters kept is computed, the new ones kept;
below ``tolerance`` the fit stops.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numba as nb
import numpy as np

from bayesmix.inference.bayes.fit import progress_bar
from bayesmix.inference.interrupt import (
    INTERRUPTS,
    deferred_sigint,
    is_interrupt,
    keeps_partial_work,
    warn_interrupted,
)

__all__ = ["VI_METHODS", "AdviFit", "fit_advi"]

VI_METHODS = ("advi", "fullrank_advi")
CHECK_EVERY = 100  # PyMC's CheckParametersConvergence default
_EPS = 1e-6  # PyMC's relative difference's offset
_BETA1, _BETA2, _ADAM_EPS = 0.9, 0.999, 1e-8
_LOG_2PI_E = math.log(2.0 * math.pi) + 1.0


@dataclass(frozen=True)
class AdviFit:
    """The outcome of :func:`fit_advi`.

    Attributes
    ----------
    draws : dict of str to numpy.ndarray
        Draws of each expanded variable, shaped ``(1, n_draws, *shape)`` (one chain).
    elbo : numpy.ndarray
        The ELBO's estimate at each step.
    iterations : int
        The number of steps taken.
    converged : bool
        Whether the stopping rule fired before the step budget ran out.
    mean : numpy.ndarray
        The approximation's mean in the unconstrained space.
    scale : numpy.ndarray
        Its Cholesky factor ``(n_dim, n_dim)`` (diagonal for mean-field).
    interrupted : bool
        Whether a ``KeyboardInterrupt`` stopped the steps (the draws are then from the
        approximation reached; see :func:`fit_advi`).
    """

    draws: dict[str, np.ndarray]
    elbo: np.ndarray
    iterations: int
    converged: bool
    mean: np.ndarray
    scale: np.ndarray
    interrupted: bool = False


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _softplus(x):
    return max(x, 0.0) + math.log1p(math.exp(-abs(x)))


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _initial_params(start, full):
    """``[mu, rho]`` (mean-field) or ``[mu, L's lower triangle row by row]`` at PyMC's
    start: ``rho = 0``, ``L``'s free entries the identity's."""
    d = start.shape[0]
    params = np.zeros(d + (d * (d + 1) // 2 if full else d))
    params[:d] = start
    if full:
        for i in range(d):
            params[d + i * (i + 1) // 2 + i] = 1.0
    return params


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _scale(params, d, full):
    """The Cholesky factor ``L`` of the approximation's covariance (diagonal for
    mean-field); its diagonal is the softplus of the free entries."""
    L = np.zeros((d, d))
    pos = d
    for i in range(d):
        if full:
            for j in range(i):
                L[i, j] = params[pos + j]
            pos += i
        L[i, i] = _softplus(params[pos])
        pos += 1
    return L


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _draw(params, eps, full, out):
    """``out[s] = mu + L eps[s]``."""
    d = out.shape[1]
    L = _scale(params, d, full)
    for s in range(eps.shape[0]):
        for i in range(d):
            total = params[i]
            for j in range(0 if full else i, i + 1):
                total += L[i, j] * eps[s, j]
            out[s, i] = total


@nb.njit(cache=True, nogil=True, error_model="numpy")
def _ascend(params, m, v, t, learning_rate, eps, grads, full):
    """The ELBO's gradient from the density's gradients ``grads`` at the draws of
    ``eps`` (reparameterisation; the entropy ``sum log diag L`` exactly), then Adam's
    ``t``-th step up it; returns the entropy up to its constant."""
    n_mc, d = eps.shape
    gradient = np.zeros(params.shape[0])
    for s in range(n_mc):
        for i in range(d):
            gradient[i] += grads[s, i] / n_mc
    entropy = 0.0
    pos = d
    for i in range(d):
        if full:
            for j in range(i):
                for s in range(n_mc):
                    gradient[pos + j] += grads[s, i] * eps[s, j] / n_mc
            pos += i
        raw = params[pos]
        sigma = _softplus(raw)
        entropy += math.log(sigma)
        total = 0.0
        for s in range(n_mc):
            total += grads[s, i] * eps[s, i]
        gradient[pos] = (total / n_mc + 1.0 / sigma) / (1.0 + math.exp(-raw))
        pos += 1
    rate = learning_rate * math.sqrt(1.0 - _BETA2**t) / (1.0 - _BETA1**t)
    for i in range(params.shape[0]):
        g = gradient[i]
        m[i] = _BETA1 * m[i] + (1.0 - _BETA1) * g
        v[i] = _BETA2 * v[i] + (1.0 - _BETA2) * g * g
        params[i] += rate * m[i] / (math.sqrt(v[i]) + _ADAM_EPS)
    return entropy


class _Convergence:
    """PyMC's ``CheckParametersConvergence(every=100, tolerance, diff="relative")``."""

    def __init__(self, tolerance: float) -> None:
        self.tolerance = tolerance
        self.previous: np.ndarray | None = None

    def check(self, params: np.ndarray, step: int) -> bool:
        """Whether to stop after ``step`` (counted from 1)."""
        if self.previous is None:
            self.previous = params.copy()
            return False
        if step % CHECK_EVERY or step < CHECK_EVERY:
            return False
        change = (np.abs(params - self.previous) + _EPS) / (np.abs(self.previous) + _EPS)
        self.previous = params.copy()
        return float(np.max(change)) < self.tolerance


def _log_densities(density: Any, points: np.ndarray, grads: np.ndarray, step: int) -> float:
    """The mean log density at ``points``, gradients into ``grads``; refuses a
    non-finite value."""
    total = 0.0
    for s in range(points.shape[0]):
        total += density.log_density(points[s], grads[s])
    if not (math.isfinite(total) and np.isfinite(grads).all()):
        raise FloatingPointError(
            f"the log density is not finite at a draw of ADVI's step {step}; lower learning_rate."
        )
    return total / points.shape[0]


def _optimise(density, params, full, rng, n, learning_rate, tolerance, n_mc, progressbar):
    """At most ``n`` Adam steps of ``params`` (in place): ``(elbo history,
    converged)``. A ``KeyboardInterrupt`` after the first step ends the steps there
    (the history is then that far; see :func:`fit_advi`), unless nested in another fit."""
    try:
        return _adam_steps(
            density, params, full, rng, n, learning_rate, tolerance, n_mc, progressbar
        )
    except _Interrupted as stop:
        if not keeps_partial_work() or stop.elbo.size == 0:
            raise KeyboardInterrupt from None
        return stop.elbo, None


class _Interrupted(KeyboardInterrupt):
    """A ``KeyboardInterrupt`` carrying the ELBO history of the steps made."""

    def __init__(self, elbo: np.ndarray) -> None:
        super().__init__()
        self.elbo = elbo


def _adam_steps(density, params, full, rng, n, learning_rate, tolerance, n_mc, progressbar):
    """:func:`_optimise`'s steps; an interrupt raises :class:`_Interrupted`."""
    d = density.n_dim
    m, v = np.zeros_like(params), np.zeros_like(params)
    convergence = _Convergence(tolerance)
    constant = 0.5 * d * _LOG_2PI_E
    points, grads = np.empty((n_mc, d)), np.empty((n_mc, d))
    elbo = np.empty(n)
    done = 0  # steps whose ELBO is recorded
    try:
        with deferred_sigint() as sigint, progress_bar(n, progressbar, "ADVI") as advance:
            for first in range(0, n, CHECK_EVERY):
                block = rng.standard_normal((min(CHECK_EVERY, n - first), n_mc, d))
                for offset, eps in enumerate(block):
                    sigint.release()  # a Ctrl-C during a compiled call ends the steps here
                    step = first + offset + 1
                    _draw(params, eps, full, points)
                    log_p = _log_densities(density, points, grads, step)
                    entropy = _ascend(params, m, v, step, learning_rate, eps, grads, full)
                    elbo[step - 1] = log_p + entropy + constant
                    done = step
                    if convergence.check(params, step):
                        advance(offset + 1)
                        return elbo[:step], True
                advance(block.shape[0])
    except INTERRUPTS as error:
        if not is_interrupt(error):
            raise
        raise _Interrupted(elbo[:done]) from None
    return elbo, False


def _expanded_draws(density: Any, points: np.ndarray) -> dict[str, np.ndarray]:
    """The constrained variables at ``points`` ``(n, n_dim)``: ``(1, n, *shape)`` each."""
    flat = np.stack([density.expand(point) for point in points])
    draws, pos = {}, 0
    for name, shape in density.shapes.items():
        size = math.prod(shape)
        draws[name] = flat[:, pos : pos + size].reshape((1, len(points), *shape))
        pos += size
    return draws


def fit_advi(
    density: Any,
    start: np.ndarray,
    *,
    method: str = "advi",
    n: int = 30000,
    draws: int = 1000,
    learning_rate: float = 0.005,
    tolerance: float = 1e-3,
    n_mc: int = 1,
    seed: int | np.random.Generator | None = None,
    progressbar: bool = False,
) -> AdviFit:
    """Fit a Gaussian approximation to ``density`` by ADVI and draw from it.

    Parameters
    ----------
    density : object
        The log density (see the module notes).
    start : numpy.ndarray of shape (n_dim,)
        The approximation's initial mean (unconstrained), e.g. the MAP-EM estimate's
        ``density.flat_start``.
    method : {"advi", "fullrank_advi"}
        Mean-field or full-rank Gaussian.
    n : int
        The step budget.
    draws : int
        The number of draws from the fitted approximation.
    learning_rate : float
        Adam's learning rate.
    tolerance : float
        The stopping rule's tolerance (see the module notes).
    n_mc : int
        Monte Carlo draws per step for the gradient.
    seed : int or numpy.random.Generator or None
        Seeds the steps' draws and then the approximation's draws.
    progressbar : bool
        Show a progress bar.

    Returns
    -------
    AdviFit

    A ``KeyboardInterrupt`` (Ctrl-C) during the steps stops them: the draws are from
    the approximation reached, ``interrupted`` is set and an
    :class:`~bayesmix.InterruptedFitWarning` is emitted; it is raised again before the
    first step ends, or inside :func:`~bayesmix.inference.interrupt.nested_fits`.
    """
    if method not in VI_METHODS:
        raise ValueError(f"method must be one of {VI_METHODS}; got {method!r}.")
    rng = np.random.default_rng(seed)
    start = np.array(start, dtype=np.float64).ravel()
    if start.size != density.n_dim:
        raise ValueError(f"start has {start.size} values; the density has {density.n_dim}.")
    full = method == "fullrank_advi"
    params = _initial_params(start, full)
    elbo, converged = _optimise(
        density, params, full, rng, n, learning_rate, tolerance, n_mc, progressbar
    )
    interrupted = converged is None
    if interrupted:
        converged = False
        warn_interrupted(
            method,
            elbo.size,
            n,
            "iterations",
            stacklevel=4,
            holds="the result holds draws from the approximation reached then (not "
            "converged), and its ELBO history stops there",
        )
    points = np.empty((draws, start.size))
    _draw(params, rng.standard_normal((draws, start.size)), full, points)
    return AdviFit(
        draws=_expanded_draws(density, points),
        elbo=elbo,
        iterations=elbo.size,
        converged=converged,
        mean=params[: start.size].copy(),
        scale=_scale(params, start.size, full),
        interrupted=interrupted,
    )
