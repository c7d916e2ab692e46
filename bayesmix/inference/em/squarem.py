"""SQUAREM: squared extrapolation of the EM map (Varadhan & Roland 2008).

From ``theta_0`` two EM iterations give ``theta_1`` and ``theta_2``; with
``r = theta_1 - theta_0`` and ``v = theta_2 - 2 theta_1 + theta_0`` the extrapolated point is

    theta' = theta_0 + 2 a r + a^2 v,    a = |r| / |v|  (their scheme S3),

``a = 1`` giving ``theta_2`` back. One EM iteration from ``theta'`` (the stabilising step,
which also returns the parameters to the model: the extrapolation of a constrained
model's covariances is not one of its covariances) gives ``theta_3``, kept only if its
objective is at least ``theta_2``'s (the monotonicity safeguard); otherwise the run goes on
from ``theta_2``. Where EM converges slowly (overlapping components, ``|r|`` shrinking by a
factor close to 1 an iteration) ``a`` is large and one cycle does the work of many
iterations.

The step is bounded by ``step_max``, which starts at 1 and is multiplied by
:data:`STEP_FACTOR` each time the step reaches it (and the extrapolation is kept), divided by
it when an extrapolation is rejected (the SQUAREM package's global adaptation; Du &
Varadhan 2020).

Convergence. After an extrapolation the error along EM's fast directions is amplified
(by up to ``a^2``) and decays over the next iterations, so the ratio of the next two
log-likelihood steps understates EM's rate of convergence, the rate at which the slow
direction's error shrinks, and Aitken's projection of the remaining gain
(:func:`~bayesmix.inference.em.convergence.projected_change`) understates it with it:
measured on 1,200 simulated rows, a run stopped 4e-4 below the optimum at ``tol=1e-8``.
A run therefore tests convergence only after two EM iterations in a row, with the rate at
least the largest of the rates measured at its previous ``N_RATES`` tests
(:func:`accelerated_change`).

The functions are compiled, so the compiled EM loops of
:mod:`bayesmix.families.gaussian.em_loop` and the general route of
:mod:`bayesmix.inference.em.fit` extrapolate the same way.
"""

from __future__ import annotations

import math

import numba as nb
import numpy as np

from bayesmix.inference.em import convergence
from bayesmix.inference.em.convergence import projected_change
from bayesmix.jit import cached

__all__ = [
    "N_RATES",
    "STEP_FACTOR",
    "acceleration_state",
    "accelerated_change",
    "adapted_step_max",
    "extrapolated",
    "squared_steps",
    "step_length",
]

#: factor by which the bound on the step length grows (and shrinks)
STEP_FACTOR = 4.0
#: how many of the last convergence tests' rates bound the rate of the next
N_RATES = 3


def acceleration_state(accelerate: bool) -> np.ndarray:
    """The state a run carries: ``[step_max, rate, ..., rate]`` (``N_RATES`` rates),
    ``step_max`` 1 to start SQUAREM, 0 for plain EM."""
    state = np.zeros(1 + N_RATES)
    state[0] = 1.0 if accelerate else 0.0
    return state


@nb.njit(cache=True)
def squared_steps(start, middle, end):
    """``(|r|^2, |v|^2)`` of one parameter array (any shape) at the three points of a
    cycle: ``r = middle - start``, ``v = end - 2 middle + start``."""
    a, b, c = start.ravel(), middle.ravel(), end.ravel()
    r_squared = v_squared = 0.0
    for i in range(a.size):
        r = b[i] - a[i]
        v = c[i] - b[i] - r
        r_squared += r * r
        v_squared += v * v
    return r_squared, v_squared


@nb.njit(cache=True)
def step_length(r_squared, v_squared, step_max):
    """Scheme S3's step ``|r| / |v|`` bounded to ``[1, step_max]`` (1 where ``v`` is 0
    or the norms are not finite)."""
    if not (v_squared > 0.0 and math.isfinite(r_squared) and math.isfinite(v_squared)):
        return 1.0
    return min(max(math.sqrt(r_squared / v_squared), 1.0), step_max)


@nb.njit(cache=True)
def adapted_step_max(step, step_max, kept):
    """The bound for the next cycle: larger where the step reached it and its
    extrapolation was kept, smaller where an extrapolation was rejected."""
    if not kept:
        return max(1.0, step_max / STEP_FACTOR)
    return step_max * STEP_FACTOR if step >= step_max else step_max


@nb.njit(cache=True)
def extrapolated(start, middle, end, step):
    """``start + 2 step r + step^2 v`` for one parameter array (a new C-contiguous
    array of ``start``'s shape)."""
    a, b, c = start.ravel(), middle.ravel(), end.ravel()
    out = np.empty(a.size)
    for i in range(a.size):
        r = b[i] - a[i]
        out[i] = a[i] + 2.0 * step * r + step * step * (c[i] - b[i] - r)
    return out.reshape(start.shape)


@cached(convergence)  # the digest of convergence.py names its cache entry
def accelerated_change(newest, previous, older, total_weight, rates):
    """The convergence test's change of a SQUAREM run whose last three objectives are EM
    iterations in a row: Aitken's projected gain per unit of weight with the rate at least
    the largest of ``rates``, the rates measured at the run's previous tests, which are
    updated in place (newest first)."""
    floor = rates[0]
    for i in range(rates.size - 1, 0, -1):  # loops: cheaper to compile than slices
        floor = max(floor, rates[i])
        rates[i] = rates[i - 1]
    change = projected_change(newest, previous, older, 3, total_weight, floor)
    before = previous - older
    rates[0] = (newest - previous) / before if before > 0.0 else np.inf
    return change
