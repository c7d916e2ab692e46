"""StepMix (a test-only dependency) driven one EM step at a time, the reference of the
latent class, mixed-family and Gaussian-block tests: an estimator set to a chosen start,
then its ``_e_step`` and ``_m_step`` (the loop of its ``em`` without the restarts)."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np

STEPMIX_QUIET = {"random_state": 0, "progress_bar": 0, "verbose": 0}


def stepmix_at(
    X: np.ndarray,
    n_components: int,
    measurement: Any,
    weights: np.ndarray,
    set_measurement: Callable[[dict], None],
):
    """A StepMix estimator of ``measurement`` at the start ``weights`` and the measurement
    parameters that ``set_measurement`` writes into its ``get_parameters()["measurement"]``
    (fitted for one step first: StepMix sets parameters only on a fitted model)."""
    import stepmix

    model = stepmix.StepMix(
        n_components, measurement=measurement, n_init=1, max_iter=1, **STEPMIX_QUIET
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model.fit(X)
    params = model.get_parameters()
    params["weights"] = np.array(weights, dtype=float)
    set_measurement(params["measurement"])
    model.set_parameters(params)
    return model


def stepmix_step(model, X: np.ndarray) -> float:
    """One StepMix EM step: the log-likelihood before it."""
    average, log_resp = model._e_step(X)
    model._m_step(X, np.exp(log_resp))
    return average * X.shape[0]


def stepmix_iterations(model, X: np.ndarray, n_iter: int):
    """StepMix's log-likelihood before each of ``n_iter`` EM steps, and its parameters
    after them."""
    trace = [stepmix_step(model, X) for _ in range(n_iter)]
    return np.array(trace), model.get_parameters()
