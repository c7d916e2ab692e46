"""bayesmix: Bayesian mixture models, fitted by EM, MCMC and variational inference.

The public names load on first use (PEP 562 module ``__getattr__``): ``import bayesmix``
imports none of numpy's heavy neighbours (pandas, scipy, xarray, numba, PyMC, ArviZ,
matplotlib, Dask, scikit-learn); ``bm.GaussianMixture`` imports the declaration and what it
needs, ``bm.plots`` matplotlib, a NUTS fit PyMC or nutpie. ``from bayesmix import X``,
``dir(bayesmix)`` and tab completion see every name of ``__all__`` as before.
"""

from __future__ import annotations

import importlib
from importlib.util import find_spec
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from bayesmix import datasets, families
    from bayesmix import viz as plots  # noqa: F401  (not in __all__: matplotlib)
    from bayesmix.analysis.clustering import (
        Memberships,
        Partition,
        adjusted_rand_index,
        co_clustering,
        expected_loss,
        memberships,
        partition_from_psm,
        point_partition,
    )
    from bayesmix.analysis.compare import Comparison, compare
    from bayesmix.analysis.density import (
        AnomalyScores,
        anomaly_scores,
        density,
        log_density_draws,
        marginal_density,
    )
    from bayesmix.analysis.latent_class import (
        adjusted_bic,
        class_sizes,
        classification_table,
        entropy_r2,
        response_probabilities,
    )
    from bayesmix.analysis.lrt import BootstrapLRTResult, bootstrap_lrt
    from bayesmix.analysis.selection import (
        SelectionResult,
        fit_overfitted,
        n_clusters_draws,
        n_clusters_posterior,
        overfitted_mixture,
        select_components,
    )
    from bayesmix.exceptions import (
        BayesmixWarning,
        ConvergenceWarning,
        DegenerateComponentWarning,
        InterruptedFitWarning,
        LabelSwitchingWarning,
        MissingDataWarning,
        ParetoKWarning,
        RechunkWarning,
        SamplerWarning,
    )
    from bayesmix.inference import bayes
    from bayesmix.mixture import Mixture
    from bayesmix.model import GaussianMixture
    from bayesmix.priors import Priors
    from bayesmix.results import EMResult, MixtureResult
    from bayesmix.results.io import load

__version__ = "0.1.0"

#: public name -> the module that defines it (imported on first use of the name)
_ATTRIBUTES: dict[str, str] = {
    **dict.fromkeys(
        (
            "Memberships",
            "Partition",
            "adjusted_rand_index",
            "co_clustering",
            "expected_loss",
            "memberships",
            "partition_from_psm",
            "point_partition",
        ),
        "bayesmix.analysis.clustering",
    ),
    **dict.fromkeys(("Comparison", "compare"), "bayesmix.analysis.compare"),
    **dict.fromkeys(
        ("AnomalyScores", "anomaly_scores", "density", "log_density_draws", "marginal_density"),
        "bayesmix.analysis.density",
    ),
    **dict.fromkeys(
        (
            "adjusted_bic",
            "class_sizes",
            "classification_table",
            "entropy_r2",
            "response_probabilities",
        ),
        "bayesmix.analysis.latent_class",
    ),
    **dict.fromkeys(("BootstrapLRTResult", "bootstrap_lrt"), "bayesmix.analysis.lrt"),
    **dict.fromkeys(
        (
            "SelectionResult",
            "fit_overfitted",
            "n_clusters_draws",
            "n_clusters_posterior",
            "overfitted_mixture",
            "select_components",
        ),
        "bayesmix.analysis.selection",
    ),
    **dict.fromkeys(
        (
            "BayesmixWarning",
            "ConvergenceWarning",
            "DegenerateComponentWarning",
            "InterruptedFitWarning",
            "LabelSwitchingWarning",
            "MissingDataWarning",
            "ParetoKWarning",
            "RechunkWarning",
            "SamplerWarning",
        ),
        "bayesmix.exceptions",
    ),
    "Mixture": "bayesmix.mixture",
    "GaussianMixture": "bayesmix.model",
    "Priors": "bayesmix.priors",
    "EMResult": "bayesmix.results",
    "MixtureResult": "bayesmix.results",
    "load": "bayesmix.results.io",
}

#: public name -> the subpackage it is (``bm.plots`` is :mod:`bayesmix.viz`, with matplotlib)
_SUBPACKAGES: dict[str, str] = {
    "bayes": "bayesmix.inference.bayes",
    "datasets": "bayesmix.datasets",
    "families": "bayesmix.families",
    "plots": "bayesmix.viz",
}

__all__ = [
    "AnomalyScores",
    "BootstrapLRTResult",
    "BayesmixWarning",
    "Comparison",
    "ConvergenceWarning",
    "DegenerateComponentWarning",
    "EMResult",
    "GaussianMixture",
    "InterruptedFitWarning",
    "LabelSwitchingWarning",
    "Memberships",
    "MissingDataWarning",
    "Mixture",
    "MixtureResult",
    "ParetoKWarning",
    "Partition",
    "Priors",
    "RechunkWarning",
    "SamplerWarning",
    "SelectionResult",
    "adjusted_bic",
    "adjusted_rand_index",
    "anomaly_scores",
    "bayes",
    "bootstrap_lrt",
    "class_sizes",
    "classification_table",
    "co_clustering",
    "compare",
    "datasets",
    "families",
    "density",
    "entropy_r2",
    "expected_loss",
    "fit_overfitted",
    "load",
    "log_density_draws",
    "marginal_density",
    "memberships",
    "n_clusters_draws",
    "n_clusters_posterior",
    "overfitted_mixture",
    "partition_from_psm",
    "point_partition",
    "response_probabilities",
    "select_components",
]


def __getattr__(name: str) -> Any:
    """Import a public name's module on its first use and keep the name in this module.

    Parameters
    ----------
    name : str
        A name of ``__all__``, ``"plots"`` (:mod:`bayesmix.viz`) or a submodule of
        bayesmix (``bm.analysis``, ``bm.sklearn``, ...).

    Returns
    -------
    object
        The public object, subpackage or submodule.

    Raises
    ------
    AttributeError
        If bayesmix has no such name or submodule.
    """
    if name in _ATTRIBUTES:
        value = getattr(importlib.import_module(_ATTRIBUTES[name]), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(_SUBPACKAGES[name])
    elif not name.startswith("_") and find_spec(f"{__name__}.{name}") is not None:
        # a submodule (``bm.analysis``, ``bm.sklearn``): reachable as an attribute, as it was
        # when this module imported everything eagerly
        value = importlib.import_module(f"{__name__}.{name}")
    else:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    """The module's names with every public name, loaded or not (tab completion).

    Returns
    -------
    list of str
    """
    return sorted({*globals(), *__all__, *_SUBPACKAGES})
