"""Plots of fitted mixtures (matplotlib); every function returns its axes or figure.

Trace and rank plots go through arviz-plots and return its ``PlotCollection``.
"""

from bayesmix.viz.clustering import (
    plot_clusters_2d,
    plot_co_clustering,
    plot_membership_uncertainty,
)
from bayesmix.viz.compare import plot_comparison
from bayesmix.viz.density import plot_anomalies, plot_density
from bayesmix.viz.diagnostics import plot_rank, plot_trace
from bayesmix.viz.profile import plot_profile
from bayesmix.viz.selection import (
    plot_bic,
    plot_bootstrap_lrt,
    plot_n_clusters,
    plot_selection,
)

__all__ = [
    "plot_anomalies",
    "plot_bic",
    "plot_bootstrap_lrt",
    "plot_clusters_2d",
    "plot_co_clustering",
    "plot_comparison",
    "plot_density",
    "plot_membership_uncertainty",
    "plot_n_clusters",
    "plot_profile",
    "plot_rank",
    "plot_selection",
    "plot_trace",
]
