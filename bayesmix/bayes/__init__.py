"""The PyMC backend: model builder, NUTS and ADVI fits, relabelling, Bayesian results."""

from bayesmix.bayes.result import BayesResult

__all__ = ["BayesResult"]
