"""bayesmix: Bayesian mixture models, fitted by EM, MCMC and variational inference."""

from bayesmix import bayes, datasets
from bayesmix.exceptions import (
    BayesmixWarning,
    ConvergenceWarning,
    DegenerateComponentWarning,
    LabelSwitchingWarning,
    SamplerWarning,
)
from bayesmix.model import GaussianMixture
from bayesmix.priors import Priors
from bayesmix.results import EMResult, MixtureResult

__version__ = "0.1.0"

__all__ = [
    "BayesmixWarning",
    "ConvergenceWarning",
    "DegenerateComponentWarning",
    "EMResult",
    "GaussianMixture",
    "LabelSwitchingWarning",
    "MixtureResult",
    "Priors",
    "SamplerWarning",
    "bayes",
    "datasets",
]
