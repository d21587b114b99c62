"""Simulation check: does the primary estimate recover a known true effect?

For each true hazard ratio and seed, the simulator writes extracts; ingest, cohort, matching
and the primary and unadjusted analyses run in process (the same library functions as the
workflow); the script prints bias, empirical SE, mean model SE and 95% CI coverage of log HR,
and writes the table to ``validation/recovery_latest.csv`` (the report cites it).

The truth for a true conditional HR of 1.0 is 1.0 (the null is collapsible).  For other
values the marginal HR that the matched analysis targets differs from the conditional one
(non-collapsibility); the script estimates it from one large simulation with no confounding
(``--truth-admissions``) and reports coverage against it as well as against the conditional.

Usage: ``.venv/bin/python validation/recovery.py --seeds 200 --hr 0.7 1.0 --jobs 2``
"""

from __future__ import annotations

import argparse
import math
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

from hdank import settings  # noqa: E402
from hdank.analyses import run_analysis  # noqa: E402
from hdank.cohort import build_cohort_files  # noqa: E402
from hdank.contract import CONTRACT, TABLES, extract_path  # noqa: E402
from hdank.ingest import ingest_file  # noqa: E402
from hdank.match_stage import run_matching  # noqa: E402
from hdank.simulate import simulate_from_config  # noqa: E402

Z = 1.959963984540054


def load_config() -> dict:
    return settings.load_config([ROOT / "config" / "config.yaml"])


def one_replicate(args: tuple[int, float, dict]) -> list[dict]:
    seed, true_hr, config = args
    syn = {**config["synthetic"], "seed": seed, "true_hr": true_hr}
    codelists = str(ROOT / config["codelists"])
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        simulate_from_config(tmp / "raw", tmp / "key.parquet", tmp / "defects.json", syn, config["study"],
                             codelists, "csv.gz")
        typed = {}
        for table in TABLES:
            parent = CONTRACT[table].parent
            typed[table] = str(tmp / f"{table}.parquet")
            ingest_file(extract_path(str(tmp / "raw"), table, "csv.gz"), table, codelists,
                        str(tmp / f"{parent[0]}.parquet") if parent else None, typed[table],
                        str(tmp / f"q_{table}.parquet"), str(tmp / f"c_{table}.json"))
        out = {k: str(tmp / f"{k}.parquet") for k in ("cohort", "extended", "attrition", "status")}
        build_cohort_files(typed, codelists, config["study"], out["cohort"], out["extended"],
                           out["attrition"], out["status"])
        cohort = pd.read_parquet(out["cohort"])
    rows = []
    try:
        _, matched, _, diag = run_matching(cohort, config["propensity"], config["matching"],
                                           config["weights"], config["balance"])
        gate = diag["balance_gate"]["passed"]
        for name, kwargs in (("primary_matched", {"matched": matched}), ("unadjusted", {"cohort": cohort})):
            est, _, _ = run_analysis(name, {}, **kwargs)
            rows.append({"seed": seed, "true_hr": true_hr, "analysis": name, "hr": est["hr"],
                         "hr_low": est["hr_low"], "hr_high": est["hr_high"], "n": est["n"],
                         "gate_passed": gate, "share_matched": diag["balance_gate"]["share_treated_matched"],
                         "max_abs_smd": diag["balance_gate"]["max_abs_smd_after"]})
    except Exception as error:  # a failed replicate is counted, never hidden
        rows.append({"seed": seed, "true_hr": true_hr, "analysis": "failed", "error": str(error)[:200]})
    return rows


def marginal_truth(true_hr: float, config: dict, n_admissions: int, seed: int = 1) -> float:
    """Marginal HR with no confounding in a large simulated cohort (unadjusted Cox)."""
    if true_hr == 1.0:
        return 1.0
    cfg = {**config, "synthetic": {**config["synthetic"], "n_admissions": n_admissions, "confounding": 0.0}}
    with tempfile.TemporaryDirectory() as tmp:
        key = Path(tmp) / "key.parquet"
        simulate_from_config(Path(tmp) / "raw", key, Path(tmp) / "d.json",
                             {**cfg["synthetic"], "seed": seed, "true_hr": true_hr}, cfg["study"],
                             str(ROOT / cfg["codelists"]), "csv.gz")
        k = pd.read_parquet(key)
    k = k[k["status"] == "eligible"].assign(treated=lambda d: (d["arm"] == "hdank").astype(int))
    est, _, _ = run_analysis("unadjusted", {}, cohort=k[["patient_id", "treated", "time", "event"]])
    return float(est["hr"])


def summarise(results: pd.DataFrame, truths: dict[float, float]) -> pd.DataFrame:
    rows = []
    ok = results[results["analysis"] != "failed"]
    for (true_hr, analysis), g in ok.groupby(["true_hr", "analysis"]):
        log_hr = np.log(g["hr"])
        model_se = (np.log(g["hr_high"]) - np.log(g["hr_low"])) / (2 * Z)
        for target, truth in (("conditional", true_hr), ("marginal", truths[true_hr])):
            if target == "marginal" and truth == true_hr:
                continue
            rows.append({
                "true_hr": true_hr, "truth": target, "truth_hr": round(truth, 4), "analysis": analysis,
                "replicates": len(g), "mean_hr": float(np.exp(log_hr.mean())),
                "bias_log_hr": float(log_hr.mean() - math.log(truth)),
                "empirical_se": float(log_hr.std(ddof=1)), "mean_model_se": float(model_se.mean()),
                "coverage_95": float(((g["hr_low"] <= truth) & (truth <= g["hr_high"])).mean()),
                "gate_passed": float(g["gate_passed"].mean()),
            })
    failed = results[results["analysis"] == "failed"]
    table = pd.DataFrame(rows)
    table.attrs["failed"] = len(failed)
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=200)
    parser.add_argument("--first-seed", type=int, default=1)
    parser.add_argument("--hr", type=float, nargs="+", default=[0.7, 1.0])
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--confounding", type=float, help="override synthetic.confounding")
    parser.add_argument("--truth-admissions", type=int, default=200_000)
    parser.add_argument("--out", default=str(ROOT / "validation" / "recovery_latest.csv"))
    args = parser.parse_args()
    config = load_config()
    if args.confounding is not None:
        config["synthetic"]["confounding"] = args.confounding
    started = time.time()
    work = [(seed, hr, config) for hr in args.hr for seed in range(args.first_seed, args.first_seed + args.seeds)]
    with ProcessPoolExecutor(max_workers=args.jobs) as pool:
        results = pd.DataFrame([row for rows in pool.map(one_replicate, work, chunksize=4) for row in rows])
    truths = {hr: marginal_truth(hr, config, args.truth_admissions) for hr in args.hr}
    table = summarise(results, truths)
    pd.set_option("display.width", 200)
    print(table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"failed replicates: {table.attrs['failed']}; wall time {time.time() - started:.0f} s")
    table.to_csv(args.out, index=False)
    results.to_csv(Path(args.out).with_name("recovery_replicates.csv"), index=False)


if __name__ == "__main__":
    main()
