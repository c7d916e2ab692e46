"""Analyses written once against the shared result interface: memberships and
partitions (:mod:`~bayesmix.analysis.clustering`), densities and anomaly scores
(:mod:`~bayesmix.analysis.density`), the choice of K (:mod:`~bayesmix.analysis.selection`),
EM-versus-Bayes comparisons (:mod:`~bayesmix.analysis.compare`) and the outputs of latent
class analysis (:mod:`~bayesmix.analysis.latent_class`: response probabilities, class
sizes, classification table, entropy R², sample-size-adjusted BIC)."""
