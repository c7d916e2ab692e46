#!/usr/bin/env Rscript
# Reference fits from R's flexmix for bayesmix's Poisson mixtures (tests/test_families.py).
#
# Usage (from the repository root):
#   Rscript tests/data/flexmix_biochemists.R > tests/data/flexmix_biochemists.json
#
# Data: flexmix's `bioChemists` (Long 1990; the same 915 rows as
# bayesmix/datasets/biochemists.csv). Model: a mixture of K Poisson distributions of
# `art` with no covariates, `flexmix(art ~ 1, k = K, model = FLXMRglm(family = "poisson"))`,
# maximum likelihood by EM, K = 1..4, the best of `nrep` random starts (`stepFlexmix`).
# Two settings per K:
#   * "default": flexmix's default control (tolerance 1e-6 on the relative change of the
#     log-likelihood, iter.max 200, minprior 0.05: flexmix removes components whose weight
#     falls below 5% during EM, so it may end with fewer than K), what a user gets;
#   * "minprior0": minprior = 0 (no component is removed unless it empties) and tighter
#     convergence (tolerance 1e-9, iter.max 3000): the maximum likelihood with K components.
# The (setting, K) fits run in parallel on 2 cores (parallel::mclapply); each has its own
# seed, so the output does not depend on the number of cores.
# Output (JSON on stdout, written by hand: jsonlite is not installed here): R and flexmix
# versions, the date, and per setting and K the log-likelihood, the number of components
# kept, and the kept components' weights and rates (exp of the intercepts), ordered by
# increasing rate.
# R is a tool here, never a dependency: the output is stored as data.

suppressPackageStartupMessages(library(flexmix))
library(parallel)

data("bioChemists", package = "flexmix")
nrep <- 20
ks <- 1:4
settings <- list(
  default = list(),
  minprior0 = list(tolerance = 1e-9, iter.max = 3000, minprior = 0)
)

num <- function(x) {
  paste0("[", paste(trimws(formatC(x, digits = 17, format = "g")), collapse = ", "), "]")
}

fit_one <- function(k, control) {
  set.seed(1990 + k)
  if (k == 1) {
    best <- flexmix(art ~ 1, data = bioChemists, k = 1,
                    model = FLXMRglm(family = "poisson"), control = control)
  } else {
    step <- stepFlexmix(art ~ 1, data = bioChemists, k = k, nrep = nrep, verbose = FALSE,
                        model = FLXMRglm(family = "poisson"), control = control)
    best <- step
  }
  rates <- exp(as.numeric(parameters(best)))  # one coefficient (the intercept) per component
  weights <- as.numeric(prior(best))
  o <- order(rates)
  sprintf(
    paste0('{"K": %d, "log_likelihood": %s, "n_components_kept": %d, ',
           '"weights": %s, "rates": %s, "iterations": %d, "converged": %s}'),
    k, trimws(formatC(as.numeric(logLik(best)), digits = 17, format = "g")),
    length(rates), num(weights[o]), num(rates[o]), best@iter,
    tolower(as.character(best@converged))
  )
}

jobs <- expand.grid(k = ks, setting = names(settings), stringsAsFactors = FALSE)
fits <- mclapply(seq_len(nrow(jobs)), function(i) {
  fit_one(jobs$k[i], as.list(settings[[jobs$setting[i]]]))
}, mc.cores = 2, mc.preschedule = FALSE)
stopifnot(all(vapply(fits, is.character, logical(1))))
fits <- unlist(fits)
blocks <- vapply(names(settings), function(name) {
  sprintf('    "%s": [\n      %s\n    ]', name,
          paste(fits[jobs$setting == name], collapse = ",\n      "))
}, character(1))

cat("{\n")
cat(sprintf('  "r_version": "%s",\n', R.version.string))
cat(sprintf('  "flexmix_version": "%s",\n', as.character(packageVersion("flexmix"))))
cat(sprintf('  "date": "%s",\n', format(Sys.Date())))
cat('  "data": "flexmix::bioChemists$art (n = 915)",\n')
cat(sprintf(
  '  "model": "stepFlexmix(art ~ 1, k = K, nrep = %d, model = FLXMRglm(family = \\"poisson\\")), best log-likelihood; K = 1 a single flexmix() fit",\n',
  nrep))
cat('  "fits": {\n')
cat(paste(blocks, collapse = ",\n"))
cat("\n  }\n}\n")
