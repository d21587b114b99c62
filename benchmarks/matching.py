"""Benchmark of caliper matching on the logit of the propensity score.

    .venv/bin/python benchmarks/matching.py [--seed 1] [--skip-r]

Prints one table:

* greedy 1:1 caliper matching (0.2 SD, largest first) of 50,000 treated against 450,000
  controls: time (best of 3) and peak traced memory (tracemalloc, separate run);
* the naive all-pairs search (``naive_nearest_match``) on a 5,000 x 45,000 subsample, the
  greedy on the same subsample (same matches required), their ratio, and the naive cost
  extrapolated to the full size (x 100 pairs);
* MatchIt (``tests/r/matchit_reference.R``) on 10,000 treated + 90,000 controls with the
  same scores (integer logit x 1e6, see tests/test_matchit_agreement.py), time of the
  ``matchit()`` call, whether its matched set is identical to ours, and the speed ratio.

Targets: 500,000 patients in under 10 s; at least 20x faster than MatchIt.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np
import pandas as pd

from hdank.matching import PropensityScoreMatcher, caliper_width, naive_nearest_match, nearest_match

ROOT = Path(__file__).resolve().parents[1]
R_SCRIPT = ROOT / "tests" / "r" / "matchit_reference.R"


def simulate(n_treated: int, n_control: int, seed: int):
    """Integer scores (logit x 1e6) of treated (shifted up) and controls, rows in id order."""
    rng = np.random.default_rng(seed)
    treated = np.r_[np.ones(n_treated, dtype=np.int8), np.zeros(n_control, dtype=np.int8)]
    logit = np.where(treated == 1, 0.4, -0.4) + rng.normal(size=treated.size)
    perm = rng.permutation(treated.size)
    return np.round(logit[perm] * 1e6), treated[perm], np.arange(1, treated.size + 1)


def best_of(fn, repeat=3):
    times, result = [], None
    for _ in range(repeat):
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
    return min(times), result


def peak_memory(fn) -> float:
    tracemalloc.start()
    fn()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2**20


def as_set(pairs, ids):
    return set(zip(ids[pairs["treated_row"]].tolist(), ids[pairs["control_row"]].tolist()))


def run_matchit(score, treated, ids):
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        pd.DataFrame({"id": ids, "treated": treated, "score": score}).to_csv(tmp / "d.csv", index=False)
        spec = "1_FALSE_largest_FALSE"
        t0 = time.perf_counter()
        res = subprocess.run(["Rscript", str(R_SCRIPT), "match", str(tmp / "d.csv"), str(tmp), spec],
                             capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t0
        elapsed = float(res.stdout.split("elapsed=")[1].split()[0])
        pairs = pd.read_csv(tmp / f"{spec}_pairs.csv")
        return elapsed, wall, set(zip(pairs["treated_id"].tolist(), pairs["control_id"].tolist()))


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--skip-r", action="store_true", help="leave out the MatchIt comparison")
    args = ap.parse_args(argv)
    rows = []

    score, treated, ids = simulate(50_000, 450_000, args.seed)
    matcher = PropensityScoreMatcher(caliper_sd=0.2)
    t_full, m = best_of(lambda: PropensityScoreMatcher(caliper_sd=0.2).fit(score, treated, ids))
    mem = peak_memory(lambda: matcher.fit(score, treated, ids))
    rows.append(("greedy 1:1, 0.2 SD caliper", "50,000 x 450,000", f"{t_full:.2f} s",
                 f"peak {mem:.0f} MiB; {m.n_treated_matched_} matched; target < 10 s: "
                 f"{'met' if t_full < 10 else 'MISSED'}"))

    rng = np.random.default_rng(args.seed + 1)
    sub = np.sort(np.r_[rng.choice(np.flatnonzero(treated == 1), 5_000, replace=False),
                        rng.choice(np.flatnonzero(treated == 0), 45_000, replace=False)])
    s, t, i = score[sub], treated[sub], ids[sub]
    cal = caliper_width(s, 0.2)
    t_naive, naive = best_of(lambda: naive_nearest_match(s, t, i, cal), repeat=1)
    t_fast, fast = best_of(lambda: nearest_match(s, t, i, cal))
    same = as_set(naive, i) == as_set(fast, i)
    rows.append(("naive all-pairs", "5,000 x 45,000", f"{t_naive:.2f} s",
                 f"greedy {t_fast * 1e3:.0f} ms on the same ({t_naive / t_fast:.0f}x faster), "
                 f"identical: {same}; extrapolated to 50,000 x 450,000 (x100 pairs): ~{t_naive * 100:.0f} s"))

    if args.skip_r or shutil.which("Rscript") is None:
        rows.append(("MatchIt 4.5.1", "10,000 + 90,000", "n/a", "Rscript not available / skipped"))
    else:
        score, treated, ids = simulate(10_000, 90_000, args.seed + 2)
        t_ours, m = best_of(lambda: PropensityScoreMatcher(caliper_sd=0.2).fit(score, treated, ids))
        r_time, r_wall, r_set = run_matchit(score, treated, ids)
        same = r_set == as_set(m.pairs_, ids)
        rows.append(("MatchIt nearest, caliper 0.2", "10,000 + 90,000", f"{r_time:.2f} s",
                     f"Rscript wall {r_wall:.1f} s; ours {t_ours * 1e3:.0f} ms "
                     f"({r_time / t_ours:.0f}x faster; target >= 20x: "
                     f"{'met' if r_time / t_ours >= 20 else 'MISSED'}); identical matched set: {same}"))

    width = [max(len(r[k]) for r in rows + [("what", "size", "time", "notes")]) for k in range(3)]
    line = "| {:<{}} | {:<{}} | {:>{}} | {} |"
    print(line.format("what", width[0], "size", width[1], "time", width[2], "notes"))
    print("|" + "|".join("-" * (w + 2) for w in width) + "|------|")
    for r in rows:
        print(line.format(r[0], width[0], r[1], width[1], r[2], width[2], r[3]))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
