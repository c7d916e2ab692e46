"""When EM has converged: the objective's gain still to come, projected by Aitken's
acceleration, per unit of weight."""

from __future__ import annotations

from dataclasses import dataclass

import numba as nb
import numpy as np

__all__ = ["ConvergenceTest", "ROUNDING_STEPS", "projected_change"]

# a step of the objective within this many eps of its size is rounding: converged
ROUNDING_STEPS = 1000


@dataclass(frozen=True)
class ConvergenceTest:
    """When a run has converged: ``|change| / total_weight < tol``.

    By default the change is the gain still to come, projected by Aitken's
    acceleration from the last three objectives (Böhning et al. 1994; McNicholas et al.
    2010): EM converges linearly, ``L_{k+1} - L_k ~ a (L_k - L_{k-1})``, so the limit is
    ``L_k + (L_k - L_{k-1}) a / (1 - a)``; a run stops when that gain, not just the last
    step, is below ``tol`` per unit of weight (where the steps do not shrink, ``a >= 1``,
    it does not stop unless the step is at rounding level). ``lagged``: the change of the
    iteration before the newest (scikit-learn's; the objective before the start is
    ``reference`` per unit of weight).
    """

    total_weight: float
    tol: float
    lagged: bool
    reference: float

    def change(self, trace: list[float]) -> float:
        """The change per unit of weight that decides, ``trace`` ending with the
        objective after the newest M-step."""
        if self.lagged:
            before = trace[-3] / self.total_weight if len(trace) > 2 else self.reference
            return trace[-2] / self.total_weight - before
        older = trace[-3] if len(trace) > 2 else np.nan
        return projected_change(trace[-1], trace[-2], older, len(trace), self.total_weight)


@nb.njit(cache=True)
def projected_change(newest, previous, older, n_values, total_weight, rate_floor=0.0):
    """:meth:`ConvergenceTest.change` (not lagged) from the last three objectives
    (``n_values`` of them exist, at least 2; ``older`` is ignored with fewer than 3);
    compiled, so the compiled EM loops of
    :mod:`bayesmix.families.gaussian.em_loop` test convergence the same way.
    ``rate_floor``: the rate of convergence is taken to be at least this (SQUAREM's
    runs, :func:`~bayesmix.inference.em.squarem.accelerated_change`)."""
    step = newest - previous
    rounding = ROUNDING_STEPS * np.finfo(np.float64).eps * max(abs(newest), total_weight)
    if n_values < 3 or step <= rounding:  # also a decrease: rounding at the optimum
        return step / total_weight
    before = previous - older
    rate = max(step / before if before > 0 else np.inf, rate_floor)
    gain = step * rate / (1.0 - rate) if 0.0 <= rate < 1.0 else np.inf
    return max(step, gain) / total_weight
