"""Benchmark: Cox PH (Efron ties) with robust variance clustered on pair, 1,000,000 rows.

Simulated data: 500,000 pairs (clusters of 2), 11 covariates (one shared within pair), times
in whole days capped at 28 (heavy ties), written once to CSV and read by R with
``data.table::fread`` (reading is not timed; R's times come from ``system.time`` in R).

Timed in the same run:

1. ``hdank.cox.CoxPH().fit(X, time, event, cluster=pair_id)`` on all rows (median of
   ``--repeat`` runs);
2. R ``coxph(Surv(time, event) ~ x1 + ... + x11, ties = "efron")`` on all rows **without** the
   cluster term (fit + model-based variance);
3. R ``coxph(..., cluster = pair_id)`` on a ladder of subsamples (``--ladder``), because
   survival 3.5-3 computes the clustered variance from score residuals (``coxscore2.c``)
   with a loop over the whole risk set at every event time: its cost grows as n^2 (about
   22 s at 40,000 rows here), so at 1,000,000 rows it would run for hours.  Its time at the
   full size is extrapolated from the ladder with a fitted power law ``a n^b``; pass
   ``--r-full-cluster`` to measure it instead;
4. lifelines ``CoxPHFitter().fit(..., cluster_col="pair_id")`` on a 20,000-row subsample,
   with hdank and R on the same subsample.

Usage: ``python benchmarks/cox.py [--rows N] [--sub N] [--ladder 10000 20000 40000 80000]
[--repeat 3] [--no-lifelines] [--r-full-cluster]``.  Target: hdank <= 2x R.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import tempfile
import textwrap
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pacsv

from hdank.cox import CoxPH

P = 11
COLS = [f"x{j}" for j in range(1, P + 1)]
R_SCRIPT = textwrap.dedent("""
    suppressPackageStartupMessages(library(survival))
    args <- commandArgs(trailingOnly = TRUE)   # csv, out, cluster (0/1)
    d <- if (requireNamespace("data.table", quietly = TRUE)) {
      as.data.frame(data.table::fread(args[1]))
    } else read.csv(args[1])
    f <- as.formula(paste("Surv(time, event) ~", paste0("x", 1:%d, collapse = " + ")))
    if (args[3] == "1") {
      el <- system.time(fit <- coxph(f, data = d, ties = "efron", cluster = pair_id))[["elapsed"]]
    } else {
      el <- system.time(fit <- coxph(f, data = d, ties = "efron"))[["elapsed"]]
    }
    out <- data.frame(term = names(coef(fit)), coef = sprintf("%%.17g", coef(fit)),
                      se = sprintf("%%.17g", sqrt(diag(fit$var))))
    write.csv(out, args[2], row.names = FALSE, quote = FALSE)
    cat(sprintf("%%.6f", el), "\\n")
""" % P)


def simulate(n: int, seed: int = 20240607) -> pd.DataFrame:
    """``n`` rows in pairs, 11 covariates, whole-day times <= 28 (heavy ties)."""
    rng = np.random.default_rng(seed)
    n_pairs = n // 2
    X = rng.normal(size=(2 * n_pairs, P))
    X[:, 0] = np.tile([1.0, 0.0], n_pairs)                              # treated in each pair
    X[:, 1] = np.repeat(rng.normal(size=n_pairs), 2) + 0.5 * X[:, 1]    # shared within pair
    X[:, 2] = rng.binomial(1, 0.3, 2 * n_pairs)
    beta = np.linspace(-0.3, 0.3, P)
    t = rng.exponential(25 / np.exp(X @ beta))
    c = rng.uniform(3, 60, 2 * n_pairs)
    time_ = np.minimum(np.ceil(np.minimum(t, c)), 28.0)
    event = ((t <= c) & (np.ceil(t) <= 28)).astype(np.int8)
    df = pd.DataFrame(X.round(6), columns=COLS)
    df.insert(0, "pair_id", np.repeat(np.arange(1, n_pairs + 1), 2))
    df.insert(0, "event", event)
    df.insert(0, "time", time_)
    return df


class R:
    def __init__(self, tmp: Path):
        self.exe = shutil.which("Rscript")
        self.tmp = tmp
        self.script = tmp / "bench.R"
        self.script.write_text(R_SCRIPT)

    def run(self, df: pd.DataFrame, cluster: bool, tag: str) -> tuple[float, pd.DataFrame] | None:
        if self.exe is None:
            return None
        csv, out = self.tmp / f"{tag}.csv", self.tmp / f"{tag}_out.csv"
        pacsv.write_csv(pa.Table.from_pandas(df, preserve_index=False), csv)
        proc = subprocess.run([self.exe, str(self.script), str(csv), str(out),
                               "1" if cluster else "0"], capture_output=True, text=True,
                              check=True)
        csv.unlink()
        return float(proc.stdout.split()[-1]), pd.read_csv(out)


def time_ours(df: pd.DataFrame, reps: int) -> tuple[float, CoxPH]:
    X = df[COLS].to_numpy()
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fit = CoxPH().fit(X, df["time"].to_numpy(), df["event"].to_numpy(),
                          cluster=df["pair_id"].to_numpy())
        times.append(time.perf_counter() - t0)
    return float(np.median(times)), fit


def time_lifelines(df: pd.DataFrame):
    from lifelines import CoxPHFitter
    t0 = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        fit = CoxPHFitter().fit(df[["time", "event", "pair_id", *COLS]], duration_col="time",
                                event_col="event", cluster_col="pair_id")
    return time.perf_counter() - t0, fit


def diff(ours: np.ndarray, ref: np.ndarray) -> float:
    return float(np.max(np.abs(np.asarray(ours) / np.asarray(ref) - 1)))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--sub", type=int, default=20_000)
    ap.add_argument("--ladder", type=int, nargs="+", default=[10_000, 20_000, 40_000, 80_000])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--no-lifelines", action="store_true")
    ap.add_argument("--r-full-cluster", action="store_true")
    args = ap.parse_args(argv)

    print(f"load average before: {os.getloadavg()[0]:.2f} ({os.cpu_count()} cores)")
    df = simulate(args.rows)
    table = []  # (implementation, rows, seconds, ratio, notes)
    with tempfile.TemporaryDirectory() as tmp:
        r = R(Path(tmp))
        ours_full, fit_full = time_ours(df, args.repeat)
        r_nocl = r.run(df, cluster=False, tag="full_nocl")
        r_full = r.run(df, cluster=True, tag="full_cl") if args.r_full_cluster else None
        ladder = []
        for n in sorted(set(args.ladder) | {args.sub}):
            sub = df.iloc[:n].reset_index(drop=True)
            o, fit = time_ours(sub, args.repeat)
            rr = r.run(sub, cluster=True, tag=f"l{n}")
            ladder.append((n, o, rr, fit))

    r_sub = next((x for x in ladder if x[0] == args.sub), None)
    if r_full is None and ladder[0][2] is not None:
        ns = np.array([x[0] for x in ladder if x[0] in args.ladder], float)
        ts = np.array([x[2][0] for x in ladder if x[0] in args.ladder])
        b, loga = np.polyfit(np.log(ns), np.log(ts), 1)
        r_full_sec = float(np.exp(loga) * args.rows ** b)
        r_full_note = (f"EXTRAPOLATED from {', '.join(f'{int(n):,}' for n in ns)} rows: "
                       f"time ~ n^{b:.2f}")
    elif r_full is not None:
        r_full_sec = r_full[0]
        r_full_note = (f"measured; ours vs R: coef {diff(fit_full.coef_, r_full[1]['coef']):.1e}, "
                       f"robust SE {diff(fit_full.robust_se_, r_full[1]['se']):.1e} (max rel.)")
    else:
        r_full_sec, r_full_note = None, "Rscript not found"

    def ratio(x, ref):
        return f"{x / ref:.3f}" if (x is not None and ref) else "n/a"

    n_ev = int(df["event"].sum())
    note = ""
    if r_nocl is not None:
        note = f"coef vs R {diff(fit_full.coef_, r_nocl[1]['coef']):.1e} (max rel.)"
    table.append(("hdank.cox.CoxPH", args.rows, ours_full, ratio(ours_full, r_full_sec),
                  "cluster=pair_id; " + note))
    table.append(("R coxph cluster=", args.rows, r_full_sec, "1", r_full_note))
    if r_nocl is not None:
        table.append(("R coxph (no cluster)", args.rows, r_nocl[0], ratio(r_nocl[0], r_full_sec),
                      f"model-based variance only; hdank/this = {ours_full / r_nocl[0]:.3f}"))
    for n, o, rr, fit in ladder:
        if rr is None:
            continue
        table.append(("hdank.cox.CoxPH", n, o, ratio(o, rr[0]),
                      f"robust SE vs R {diff(fit.robust_se_, rr[1]['se']):.1e} (max rel.)"))
        table.append(("R coxph cluster=", n, rr[0], "1", "measured"))
    if not args.no_lifelines:
        life, lfit = time_lifelines(df.iloc[: args.sub].reset_index(drop=True))
        ours_sub = r_sub[3]
        table.append(("lifelines CoxPHFitter", args.sub, life,
                      ratio(life, r_sub[2][0] if r_sub and r_sub[2] else None),
                      f"cluster_col=pair_id; vs hdank: coef "
                      f"{diff(lfit.params_.to_numpy(), ours_sub.coef_.to_numpy()):.1e}, robust SE "
                      f"{diff(lfit.standard_errors_.to_numpy(), ours_sub.robust_se_.to_numpy()):.1e}"))

    print(f"Cox PH, Efron ties, robust variance clustered on pair; {P} covariates; "
          f"{args.rows:,} rows, {n_ev:,} events, {df['time'].nunique()} distinct times; "
          f"hdank: median of {args.repeat} runs, R and lifelines: 1 run")
    print(f"{'implementation':<22} {'rows':>10} {'seconds':>9} {'ratio to R':>11}  notes")
    for name, n, sec, rat, text in table:
        s = f"{sec:9.2f}" if sec is not None else f"{'n/a':>9}"
        print(f"{name:<22} {n:>10,} {s} {rat:>11}  {text}")
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
