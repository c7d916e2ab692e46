#!/usr/bin/env Rscript
# Reference log-likelihoods, BIC and ICL from R's mclust for bayesmix's EM tests.
#
# Usage:
#   Rscript make_references.R OUTDIR NAME=PATH.csv [NAME=PATH.csv ...]
#   (optionally NAME=PATH.csv:GMAX to cap G at GMAX for a slow data set;
#    --four-only=NAME1,NAME2 skips the choice among all 14 models for those data sets,
#    which is slow in 30 dimensions)
# Each input CSV has a header and numeric columns only; every column is used.
# Writes OUTDIR/NAME.csv per data set and OUTDIR/bic_choice.csv.
# Settings: mclust defaults (hierarchical start: hc with mclust.options("hcModelName"),
# hcUse = "SVD") and control = emControl(tol = c(1e-10, 1e-10)).
suppressPackageStartupMessages(library(mclust))

args <- commandArgs(trailingOnly = TRUE)
four_only <- character(0)
opt <- grepl("^--four-only=", args)
if (any(opt)) {
  four_only <- unlist(strsplit(sub("^--four-only=", "", args[opt]), ","))
  args <- args[!opt]
}
if (length(args) < 2) stop("usage: Rscript make_references.R OUTDIR NAME=PATH.csv[:GMAX] ...")
outdir <- args[1]
specs <- args[-1]

ctrl <- emControl(tol = c(1e-10, 1e-10))
# mclust name -> bayesmix covariance type
multi_map <- c(VII = "spherical", VVI = "diag", EEE = "tied", VVV = "full")
# univariate data: mclust has only E (equal variance) and V (varying variance);
# bayesmix's spherical/diag/full all reduce to V, tied to E.
uni_map <- c(V = "spherical", V = "diag", E = "tied", V = "full")

cov_label <- function(m, d) {
  if (d == 1) return(if (m == "E") "tied" else "spherical;diag;full")
  if (m %in% names(multi_map)) multi_map[[m]] else ""
}

min_eigen_of <- function(fit, d) {
  if (d == 1) {
    return(min(fit$parameters$variance$sigmasq))
  }
  sig <- fit$parameters$variance$sigma
  min(apply(sig, 3, function(s) min(eigen(s, symmetric = TRUE, only.values = TRUE)$values)))
}

# One row of bic_choice.csv: the model and G with the highest BIC in `bic`.
bic_choice <- function(bic, name, among, d, gmax) {
  best <- pickBIC(bic, k = 1)
  model <- sub(",.*$", "", names(best))
  data.frame(
    data = name, among = among, model = model,
    bayesmix_covariance = cov_label(model, d),
    G = as.integer(sub("^.*,", "", names(best))), bic_mclust = unname(best), G_max = gmax)
}

choice_rows <- list()
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
  d <- ncol(X)
  if (d == 1) X <- X[, 1]
  Gs <- seq_len(gmax)
  data_max_eigen <- if (d == 1) var(X) else max(eigen(cov(X), symmetric = TRUE, only.values = TRUE)$values)
  map <- if (d == 1) uni_map else multi_map
  models <- unique(names(map))
  t0 <- proc.time()[["elapsed"]]

  # BIC over the four models (this also computes the hierarchical start once)
  bic4 <- mclustBIC(X, G = Gs, modelNames = models, control = ctrl, verbose = FALSE)
  hcp <- attr(bic4, "initialization")$hcPairs

  rows <- list()
  for (i in seq_along(map)) {
    m <- names(map)[i]
    for (g in Gs) {
      fit <- tryCatch(
        Mclust(X, G = g, modelNames = m, control = ctrl,
               initialization = list(hcPairs = hcp), verbose = FALSE),
        error = function(e) NULL)
      if (is.null(fit) || is.null(fit$loglik) || !is.finite(fit$loglik)) {
        rows[[length(rows) + 1]] <- data.frame(
          data = name, model = m, bayesmix_covariance = map[[i]], G = g,
          loglik = NA, bic_mclust = NA, icl_mclust = NA, n_parameters = NA,
          min_eigen_ratio = NA)
      } else {
        rows[[length(rows) + 1]] <- data.frame(
          data = name, model = m, bayesmix_covariance = map[[i]], G = g,
          loglik = fit$loglik, bic_mclust = fit$bic, icl_mclust = icl(fit),
          n_parameters = fit$df,
          min_eigen_ratio = min_eigen_of(fit, d) / data_max_eigen)
      }
    }
  }
  tab <- do.call(rbind, rows)
  write.csv(tab, file.path(outdir, paste0(name, ".csv")), row.names = FALSE, na = "NA")

  choice_rows[[length(choice_rows) + 1]] <- bic_choice(bic4, name, "four", d, gmax)
  message(sprintf("%s: n=%d d=%d G=1..%d, four models: %.1f s", name, NROW(X), d, gmax,
                  proc.time()[["elapsed"]] - t0))
  if (name %in% four_only) next
  # overall among all of mclust's models (14 multivariate, 2 univariate)
  all_models <- if (d == 1) c("E", "V") else mclust.options("emModelNames")
  # with x = bic4, mclustBIC reuses its control, hc start and already fitted cells
  bic_all <- mclustBIC(X, G = Gs, modelNames = all_models, x = bic4)
  choice_rows[[length(choice_rows) + 1]] <- bic_choice(bic_all, name, "all", d, gmax)
  message(sprintf("%s: n=%d d=%d G=1..%d, with all models: %.1f s", name, NROW(X), d, gmax,
                  proc.time()[["elapsed"]] - t0))
}
write.csv(do.call(rbind, choice_rows), file.path(outdir, "bic_choice.csv"),
          row.names = FALSE, na = "NA")
