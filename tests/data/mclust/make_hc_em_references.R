# EM from a hierarchical start of a chosen criterion, for tests/test_hierarchical.py
# (bayesmix's init="hc:EEE", mclust's mclust.options(hcModelName = "EEE")).
#
# Usage:
#   Rscript make_hc_em_references.R OUTDIR NAME=PATH.csv [NAME=PATH.csv ...]
#
# Each input CSV has a header row and numeric columns only. For each data set it writes
# OUTDIR/hc_em_NAME.csv, one row per (model, hc_model, G):
#   model, hc_model, use, G, loglik, bic, loglik_tight
# from Mclust(X, G, modelNames = model,
#             initialization = list(hcPairs = hc(X, modelName = hc_model, use = "SVD")))
# (every row its own group at the start, as hc's default). loglik is the log-likelihood
# and bic mclust's BIC (larger is better) where mclust's EM stops (default tolerance
# 1e-5, relative); loglik_tight the same run with control = emControl(tol = c(1e-12,
# sqrt(eps))), which reaches the optimum itself.

suppressPackageStartupMessages(library(mclust))
stopifnot(packageVersion("mclust") == "6.0.0")

args <- commandArgs(trailingOnly = TRUE)
outdir <- args[1]
specs <- args[-1]

for (spec in specs) {
  parts <- strsplit(spec, "=", fixed = TRUE)[[1]]
  name <- parts[1]
  X <- as.matrix(read.csv(parts[2]))
  rows <- list()
  for (hc_model in c("EEE", "VII")) {
    tree <- hc(X, modelName = hc_model, use = "SVD")
    for (G in 2:4) {
      fit <- Mclust(X, G = G, modelNames = "EEE", initialization = list(hcPairs = tree),
                    verbose = FALSE)
      tight <- Mclust(X, G = G, modelNames = "EEE", initialization = list(hcPairs = tree),
                      control = emControl(tol = c(1e-12, sqrt(.Machine$double.eps))),
                      verbose = FALSE)
      rows[[length(rows) + 1]] <- data.frame(model = "EEE", hc_model = hc_model, use = "SVD",
                                             G = G, loglik = sprintf("%.12f", fit$loglik),
                                             bic = sprintf("%.12f", fit$bic),
                                             loglik_tight = sprintf("%.12f", tight$loglik))
    }
  }
  write.csv(do.call(rbind, rows), file.path(outdir, paste0("hc_em_", name, ".csv")),
            row.names = FALSE, quote = FALSE)
  cat(name, ": ", length(rows), " fits\n", sep = "")
}
