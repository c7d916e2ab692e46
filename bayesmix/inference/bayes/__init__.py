"""The PyMC backend: model builder, NUTS and ADVI fits, relabelling, Bayesian results."""

from bayesmix.results.posterior import BayesResult

__all__ = ["BayesResult"]
