"""Analyses written once against the shared result interface: memberships and
partitions (:mod:`~bayesmix.analysis.clustering`), densities and anomaly scores
(:mod:`~bayesmix.analysis.density`), the choice of K (:mod:`~bayesmix.analysis.selection`)
and EM-versus-Bayes comparisons (:mod:`~bayesmix.analysis.compare`)."""
