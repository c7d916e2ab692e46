"""Warning classes of bayesmix, so users can filter them with :mod:`warnings`, and its
own error classes."""

from __future__ import annotations


class BayesmixWarning(UserWarning):
    """Base class of every warning bayesmix emits."""


class ConvergenceWarning(BayesmixWarning):
    """An iterative fit stopped before meeting its convergence criterion."""


class DegenerateComponentWarning(BayesmixWarning):
    """A component lost (almost) all its responsibility mass or became singular."""


class LabelSwitchingWarning(BayesmixWarning):
    """Posterior draws show components exchanging their labels."""


class SamplerWarning(BayesmixWarning):
    """MCMC diagnostics (r_hat, ESS, divergences) indicate an unreliable posterior."""


class ParetoKWarning(BayesmixWarning):
    """PSIS-LOO found observations with a high Pareto shape ``k``: the elpd estimate
    of that fit is unreliable."""


class MissingDataWarning(BayesmixWarning):
    """Rows were dropped because none of their features was observed."""


class RechunkWarning(BayesmixWarning):
    """Dask input was chunked along the feature axis and was rechunked to whole rows."""


class InterruptedFitWarning(BayesmixWarning):
    """A fit was interrupted (Ctrl-C, ``KeyboardInterrupt``) and returned the work done
    so far: the draws or iterations made before the interrupt (see the guide's "What
    Ctrl-C gives back")."""


class WorkerLostError(RuntimeError):
    """A fit on Dask input lost a worker and could not recover: the data lived only on
    that worker and cannot be recomputed, or the cluster did not get them back (or get a
    worker) within ``bayesmix.inference.em.distributed.WORKER_LOSS_TIMEOUT`` seconds."""
