#!/usr/bin/env Rscript
# References for mclust's 14 covariance models (issue 19): every model x G = 1..GMAX.
#
# Usage:
#   Rscript make_model_references.R OUTDIR NAME=PATH.csv[:GMAX] ... [--timing=NAME1,NAME2]
# Each input CSV has a header and numeric columns only; every column is used.
# Writes per data set:
#   OUTDIR/models_NAME.csv   one row per model and G, tolerances 1e-10 (the optimum mclust
#                            reaches from its hierarchical start), plus the BIC of mclust's
#                            everyday call mclustBIC(X) at its default tolerances
#   OUTDIR/summary_NAME.csv  summary(mclustBIC(X)): the top 3 model,G by BIC (default call)
#   OUTDIR/lrt_NAME.csv      mclustBootstrapLRT(X, "VVV", maxG = 4, nboot = 99): observed
#                            statistics (deterministic) and bootstrap p-values (random),
#                            only for the data sets named in --lrt (all when it is absent)
# and OUTDIR/timings.csv with the elapsed seconds of mclustBIC(X) (default call, G = 1..9,
# all 14 models), median of 3 runs, for the data sets named in --timing.
suppressPackageStartupMessages(library(mclust))

args <- commandArgs(trailingOnly = TRUE)
option <- function(flag) {
  opt <- grepl(paste0("^--", flag, "="), args)
  if (!any(opt)) return(NULL)
  value <- unlist(strsplit(sub(paste0("^--", flag, "="), "", args[opt]), ","))
  args <<- args[!opt]
  value
}
timing <- option("timing")
lrt_sets <- option("lrt")
outdir <- args[1]
specs <- args[-1]
ctrl <- emControl(tol = c(1e-10, 1e-10))
models <- mclust.options("emModelNames")

min_eigen_of <- function(fit) {
  sig <- fit$parameters$variance$sigma
  min(apply(sig, 3, function(s) min(eigen(s, symmetric = TRUE, only.values = TRUE)$values)))
}

timing_rows <- list()
for (spec in specs) {
  name <- sub("=.*$", "", spec)
  rest <- sub("^[^=]*=", "", spec)
  gmax <- 9L
  if (grepl(":[0-9]+$", rest)) {
    gmax <- as.integer(sub("^.*:", "", rest))
    rest <- sub(":[0-9]+$", "", rest)
  }
  X <- as.matrix(read.csv(rest, check.names = FALSE))
  storage.mode(X) <- "double"
  Gs <- seq_len(gmax)
  data_max_eigen <- max(eigen(cov(X), symmetric = TRUE, only.values = TRUE)$values)
  t0 <- proc.time()[["elapsed"]]

  default_bic <- mclustBIC(X, G = Gs, verbose = FALSE)
  top <- summary(default_bic, X, k = 3)
  best <- pickBIC(default_bic, k = 3)
  write.csv(data.frame(data = name, rank = seq_along(best),
                       model = sub(",.*$", "", names(best)),
                       G = as.integer(sub("^.*,", "", names(best))),
                       bic_mclust = unname(best)),
            file.path(outdir, paste0("summary_", name, ".csv")), row.names = FALSE)

  tight <- mclustBIC(X, G = Gs, control = ctrl, verbose = FALSE)
  # the whole initialisation: above mclust.options("subset") rows (2000) the tree is
  # built on a subset, which Mclust needs along with the hcPairs
  init <- attr(tight, "initialization")
  rows <- list()
  for (m in models) {
    for (g in Gs) {
      fit <- tryCatch(
        Mclust(X, G = g, modelNames = m, control = ctrl,
               initialization = init, verbose = FALSE),
        error = function(e) NULL)
      default <- default_bic[as.character(g), m]
      if (is.null(fit) || is.null(fit$loglik) || !is.finite(fit$loglik)) {
        rows[[length(rows) + 1]] <- data.frame(
          data = name, model = m, G = g, loglik = NA, bic_mclust = NA, icl_mclust = NA,
          n_parameters = nMclustParams(m, ncol(X), g), min_eigen_ratio = NA,
          bic_mclust_default = default)
      } else {
        rows[[length(rows) + 1]] <- data.frame(
          data = name, model = m, G = g, loglik = fit$loglik, bic_mclust = fit$bic,
          icl_mclust = icl(fit), n_parameters = fit$df,
          min_eigen_ratio = min_eigen_of(fit) / data_max_eigen,
          bic_mclust_default = default)
      }
    }
  }
  write.csv(do.call(rbind, rows), file.path(outdir, paste0("models_", name, ".csv")),
            row.names = FALSE, na = "NA")

  if (is.null(lrt_sets) || name %in% lrt_sets) {
    set.seed(1)
    lrt <- mclustBootstrapLRT(X, modelName = "VVV", maxG = 4, nboot = 99, verbose = FALSE)
    write.csv(data.frame(data = name, model = "VVV", G0 = seq_along(lrt$obs),
                         lrt_observed = lrt$obs, p_value = lrt$p.value, nboot = 99),
              file.path(outdir, paste0("lrt_", name, ".csv")), row.names = FALSE)
  }
  message(sprintf("%s: n=%d d=%d G=1..%d: %.1f s", name, nrow(X), ncol(X), gmax,
                  proc.time()[["elapsed"]] - t0))

  if (name %in% timing) {
    seconds <- replicate(3, system.time(mclustBIC(X, verbose = FALSE))[["elapsed"]])
    timing_rows[[length(timing_rows) + 1]] <- data.frame(
      data = name, n = nrow(X), d = ncol(X), seconds_median = median(seconds),
      seconds_min = min(seconds), seconds_max = max(seconds),
      mclust = as.character(packageVersion("mclust")), R = R.version.string,
      load_1min = as.numeric(strsplit(readLines("/proc/loadavg"), " ")[[1]][1]))
  }
}
if (length(timing_rows)) {
  write.csv(do.call(rbind, timing_rows), file.path(outdir, "timings.csv"), row.names = FALSE)
}
