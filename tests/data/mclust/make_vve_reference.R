#!/usr/bin/env Rscript
# mclust's VVE fit of the Swiss bank notes with G = 5 from its everyday hierarchical
# start (issue 19: the cell where bayesmix's log-likelihood was below mclust's).
#
# Usage:
#   python -c "import bayesmix as bm; bm.datasets.load_banknote().to_csv('banknote.csv', index=False)"
#   Rscript make_vve_reference.R banknote.csv vve_banknote.csv
# Writes one long table (quantity, component, row, column, value), components and
# rows/columns numbered from 1:
#   loglik_default  me() at emControl()'s defaults from hclass(hcPairs, 5)
#   loglik_tight    me() at tolerances 1e-10 (both loops)
#   iterations_tight
#   class           the hierarchical partition (component = class, row = observation)
#   pro, mean, sigma  the tight fit's weights, means (row = feature) and covariances
#   orientation     its common orientation D (mclust's $variance$orientation)
#   scale, shape    its volumes lambda_k and det-1 shapes A_k (row = axis)
suppressPackageStartupMessages(library(mclust))
args <- commandArgs(trailingOnly = TRUE)
X <- as.matrix(read.csv(args[1], check.names = FALSE))
storage.mode(X) <- "double"
G <- 5L
bic <- mclustBIC(X, G = G, modelNames = "VVE", verbose = FALSE)
cl <- hclass(attr(bic, "initialization")$hcPairs, G)
z <- unmap(cl)
fit_default <- me(X, "VVE", z)
fit <- me(X, "VVE", z, control = emControl(tol = c(1e-10, 1e-10)))
rows <- list()
add <- function(quantity, value, component = NA, row = NA, column = NA) {
  rows[[length(rows) + 1]] <<- data.frame(quantity = quantity, component = component,
                                          row = row, column = column, value = value)
}
add("loglik_default", fit_default$loglik)
add("loglik_tight", fit$loglik)
add("iterations_tight", attr(fit, "info")[[1]])
add("class", as.integer(cl), component = as.integer(cl), row = seq_along(cl))
p <- fit$parameters
d <- ncol(X)
add("pro", p$pro, component = seq_len(G))
add("mean", as.vector(p$mean), component = rep(seq_len(G), each = d), row = rep(seq_len(d), G))
idx <- expand.grid(row = seq_len(d), column = seq_len(d), component = seq_len(G))
add("sigma", as.vector(p$variance$sigma), component = idx$component, row = idx$row,
    column = idx$column)
o <- expand.grid(row = seq_len(d), column = seq_len(d))
add("orientation", as.vector(p$variance$orientation), row = o$row, column = o$column)
add("scale", p$variance$scale, component = seq_len(G))
add("shape", as.vector(p$variance$shape), component = rep(seq_len(G), each = d),
    row = rep(seq_len(d), G))
out <- do.call(rbind, rows)
write.csv(out, args[2], row.names = FALSE)
cat(sprintf("VVE,%d: default %.10f, tight %.10f (%d iterations)\n", G, fit_default$loglik,
            fit$loglik, attr(fit, "info")[[1]]))
