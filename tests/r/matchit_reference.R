#!/usr/bin/env Rscript
# Reference results from R for tests/test_matchit_agreement.py and benchmarks/matching.py.
#
#   Rscript matchit_reference.R match <data.csv> <outdir> <spec> [<spec> ...]
#     data.csv: id, treated, score (rows in id order).  Each spec is
#     "<ratio>_<replace TRUE|FALSE>_<order>_<interleave TRUE|FALSE>"; for each it runs
#       matchit(treated ~ score, method = "nearest", distance = score, caliper = 0.2,
#               std.caliper = TRUE, m.order = order, replace = replace, ratio = ratio)
#     and writes <outdir>/<spec>_pairs.csv (treated_id, control_id, rank) and
#     <outdir>/<spec>_weights.csv (id, weight); prints "<spec> elapsed=<seconds>".
#     interleave = TRUE puts a discarded placeholder row after every row (see the test
#     module: it neutralises MatchIt 4.5.1's off-by-one exclusion for ratio > 1).
#
#   Rscript matchit_reference.R smd <data.csv> <out.csv>
#     data.csv: treated, w_match, w_iptw, then balance columns (NA = missing).  Writes the
#     balance table with cobalt's definitions (s.d.denom = "pooled" on the unadjusted
#     sample, binary variance p(1 - p), weighted variance as in cov.wt(method = "unbiased"))
#     computed with base R.

args <- commandArgs(trailingOnly = TRUE)
mode <- args[1]

run_match <- function(path, outdir, specs) {
  suppressPackageStartupMessages(library(MatchIt))
  d <- read.csv(path, colClasses = c(id = "character", treated = "integer", score = "numeric"))
  for (spec in specs) {
    p <- strsplit(spec, "_", fixed = TRUE)[[1]]
    ratio <- as.integer(p[1]); replace <- as.logical(p[2]); order <- p[3]
    interleave <- as.logical(p[4])
    dd <- d
    discard <- rep(FALSE, nrow(d))
    if (interleave) {
      dd <- d[rep(seq_len(nrow(d)), each = 2), ]
      discard <- rep(c(FALSE, TRUE), nrow(d))
      dd$treated[discard] <- 0L
      dd$id[discard] <- paste0("placeholder", dd$id[discard])
    }
    rownames(dd) <- dd$id
    t0 <- proc.time()[["elapsed"]]
    m <- suppressWarnings(matchit(treated ~ score, data = dd, method = "nearest",
                                  distance = dd$score, discard = discard,
                                  caliper = 0.2, std.caliper = TRUE, m.order = order,
                                  replace = replace, ratio = ratio))
    elapsed <- proc.time()[["elapsed"]] - t0
    mm <- m$match.matrix
    pairs <- data.frame(treated_id = rep(rownames(mm), ncol(mm)),
                        control_id = as.vector(mm),
                        rank = rep(seq_len(ncol(mm)), each = nrow(mm)))
    pairs <- pairs[!is.na(pairs$control_id), ]
    write.csv(pairs, file.path(outdir, paste0(spec, "_pairs.csv")), row.names = FALSE)
    w <- data.frame(id = names(m$weights), weight = unname(m$weights))
    w <- w[!startsWith(w$id, "placeholder"), ]
    write.csv(w, file.path(outdir, paste0(spec, "_weights.csv")), row.names = FALSE)
    cat(sprintf("%s elapsed=%.6f\n", spec, elapsed))
  }
  cat(sprintf("MatchIt %s\n", as.character(packageVersion("MatchIt"))))
}

# Base-R versions of cobalt's col_w_mean / col_w_sd / col_w_smd / col_w_vr definitions.
mean_w <- function(x, w) weighted.mean(x, w, na.rm = TRUE)
var_w <- function(x, w, binary) {
  ok <- !is.na(x) & w != 0
  x <- x[ok]; w <- w[ok]
  if (binary) { p <- weighted.mean(x, w); return(p * (1 - p)) }
  cov.wt(matrix(x, ncol = 1), wt = w / sum(w), method = "unbiased")$cov[1, 1]
}
var_plain <- function(x, binary) {
  x <- x[!is.na(x)]
  if (binary) { p <- mean(x); return(p * (1 - p)) }
  var(x)
}

run_smd <- function(path, out) {
  d <- read.csv(path, check.names = FALSE)
  t <- d$treated == 1
  covs <- setdiff(names(d), c("treated", "w_match", "w_iptw"))
  one <- rep(1, nrow(d))
  rows <- lapply(covs, function(v) {
    x <- d[[v]]
    binary <- all(x[!is.na(x)] %in% c(0, 1))
    denom <- sqrt((var_plain(x[t], binary) + var_plain(x[!t], binary)) / 2)
    stats <- function(w) {
      mt <- mean_w(x[t], w[t]); mc <- mean_w(x[!t], w[!t])
      vr <- if (binary) NA_real_ else var_w(x[t], w[t], FALSE) / var_w(x[!t], w[!t], FALSE)
      smd <- if (denom == 0) 0 else (mt - mc) / denom
      c(mt = mt, mc = mc, smd = smd, vr = vr)
    }
    b <- stats(one); a <- stats(d$w_match); i <- stats(d$w_iptw)
    data.frame(covariate = v,
               mean_treated_before = b[["mt"]], mean_control_before = b[["mc"]],
               mean_treated_after = a[["mt"]], mean_control_after = a[["mc"]],
               smd_before = b[["smd"]], smd_after = a[["smd"]], smd_iptw = i[["smd"]],
               var_ratio_before = b[["vr"]], var_ratio_after = a[["vr"]],
               var_ratio_iptw = i[["vr"]], check.names = FALSE)
  })
  write.csv(do.call(rbind, rows), out, row.names = FALSE)
}

if (identical(mode, "match")) {
  run_match(args[2], args[3], args[-(1:3)])
} else if (identical(mode, "smd")) {
  run_smd(args[2], args[3])
} else {
  stop("usage: matchit_reference.R match <data.csv> <outdir> <spec>... | smd <data.csv> <out.csv>")
}
