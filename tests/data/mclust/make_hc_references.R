# Reference partitions from mclust's model-based agglomerative hierarchical clustering
# (`hc`, Fraley 1998), for tests/test_hierarchical.py.
#
# Usage:
#   Rscript make_hc_references.R OUTDIR NAME=PATH.csv [NAME=PATH.csv ...]
#
# Each input CSV has a header row and numeric columns only; all columns are used. For each
# data set it writes OUTDIR/hc_NAME.csv with one row per (model, use, observation):
#   model, use, partition, obs (1-based row), G1, ..., G9
# where Gk is mclust's `hclass(hc(X, modelName = model, use = use), 1:9)[, k]` (labels
# 1..k, numbered by first appearance), and OUTDIR/hc_NAME_pairs.csv with the whole tree,
# one row per merge: model, use, partition, step, i, j (mclust's `hcPairs`: group i < j of
# the initial partition, the merged group keeps the label i).
# `partition` is "rows" for hc's default call (every row starts alone: mclust 6.0.0's hc()
# does not pass its `partition = dupPartition(data)` default on to hcVVV and friends) and
# "dupPartition" for `hc(X, ..., partition = dupPartition(X))` (identical rows start as one
# group), written only for data with duplicate rows, for the default model and use.
# Multivariate data: VVV with every `use` except RND; EII with VARS, STD and SVD; and, for
# data of at most 300 rows (iris, faithful, wine; hcEEE takes O(n^3 p^2) time), VII and EEE
# with VARS, STD and SVD (written after the others, so older rows keep their place).
# Univariate data: V and E with VARS, STD and SVD.

suppressPackageStartupMessages(library(mclust))
stopifnot(packageVersion("mclust") == "6.0.0")

args <- commandArgs(trailingOnly = TRUE)
outdir <- args[1]
specs <- args[-1]

G <- 1:9
for (spec in specs) {
  parts <- strsplit(spec, "=", fixed = TRUE)[[1]]
  name <- parts[1]
  X <- as.matrix(read.csv(parts[2]))
  if (ncol(X) == 1) {
    combos <- expand.grid(use = c("VARS", "STD", "SVD"), model = c("V", "E"),
                          stringsAsFactors = FALSE)
    X <- X[, 1]
  } else {
    combos <- rbind(
      expand.grid(use = c("VARS", "STD", "SPH", "PCS", "PCR", "SVD"), model = "VVV",
                  stringsAsFactors = FALSE),
      expand.grid(use = c("VARS", "STD", "SVD"), model = "EII", stringsAsFactors = FALSE)
    )
  }
  combos$partition <- "rows"
  if (any(duplicated(X))) {
    combos <- rbind(combos, data.frame(use = "SVD", model = if (is.matrix(X)) "VVV" else "V",
                                       partition = "dupPartition"))
  }
  if (is.matrix(X) && nrow(X) <= 300) {
    extra <- expand.grid(use = c("VARS", "STD", "SVD"), model = c("VII", "EEE"),
                         stringsAsFactors = FALSE)
    extra$partition <- "rows"
    combos <- rbind(combos, extra)
  }
  n <- NROW(X)
  classes <- list()
  pairs <- list()
  for (r in seq_len(nrow(combos))) {
    model <- combos$model[r]
    use <- combos$use[r]
    partition <- combos$partition[r]
    tree <- if (partition == "rows") {
      hc(X, modelName = model, use = use)
    } else {
      hc(X, modelName = model, use = use, partition = dupPartition(X))
    }
    cl <- hclass(tree, G)
    colnames(cl) <- paste0("G", G)
    classes[[r]] <- data.frame(model = model, use = use, partition = partition,
                               obs = seq_len(n), cl, check.names = FALSE)
    hp <- t(as.matrix(tree))
    pairs[[r]] <- data.frame(model = model, use = use, partition = partition,
                             step = seq_len(nrow(hp)), i = hp[, 1], j = hp[, 2])
  }
  write.csv(do.call(rbind, classes), file.path(outdir, paste0("hc_", name, ".csv")),
            row.names = FALSE, quote = FALSE)
  write.csv(do.call(rbind, pairs), file.path(outdir, paste0("hc_", name, "_pairs.csv")),
            row.names = FALSE, quote = FALSE)
  cat(name, ": n =", n, ",", nrow(combos), "trees\n")
}
