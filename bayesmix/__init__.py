"""bayesmix: Bayesian mixture models, fitted by EM, MCMC and variational inference."""

from bayesmix import datasets, families
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


def __getattr__(name: str):
    """Import ``bayesmix.viz`` (and so matplotlib) only when it is first used."""
    if name == "plots":
        import importlib

        return importlib.import_module("bayesmix.viz")
    raise AttributeError(f"module 'bayesmix' has no attribute {name!r}")
