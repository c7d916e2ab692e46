"""Plots of fitted mixtures (matplotlib); every function returns its axes or figure.

Trace and rank plots go through arviz-plots and return its ``PlotCollection``.
"""

from bayesmix.plots.clustering import (
    plot_clusters_2d,
    plot_co_clustering,
    plot_membership_uncertainty,
)
from bayesmix.plots.compare import plot_comparison
from bayesmix.plots.density import plot_anomalies, plot_density
from bayesmix.plots.diagnostics import plot_rank, plot_trace
from bayesmix.plots.selection import plot_n_clusters, plot_selection

__all__ = [
    "plot_anomalies",
    "plot_clusters_2d",
    "plot_co_clustering",
    "plot_comparison",
    "plot_density",
    "plot_membership_uncertainty",
    "plot_n_clusters",
    "plot_rank",
    "plot_selection",
    "plot_trace",
]
