"""EM and MAP-EM: the iteration loop, starts (k-means, model-based hierarchical
clustering), convergence, degeneracy warnings, the family loop and the Dask routes."""
