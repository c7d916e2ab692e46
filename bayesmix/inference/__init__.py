"""Inference backends: EM and MAP-EM (:mod:`bayesmix.inference.em`, in memory and on
Dask) and full Bayes (:mod:`bayesmix.inference.bayes`: NUTS, ADVI, the conjugate Gibbs
sampler). Each reads a declaration and returns a result of :mod:`bayesmix.results`."""
