"""Agreement with R: MatchIt's nearest-neighbour matching and cobalt's balance definitions.

The Python side writes (id, treated, score) to a CSV, ``tests/r/matchit_reference.R`` runs

    matchit(treated ~ score, method = "nearest", distance = score, caliper = 0.2,
            std.caliper = TRUE, m.order = ..., replace = ..., ratio = ...)

and the matched sets (treated id -> control ids by round) must be IDENTICAL; the
MatchIt weights must agree to 1e-12 (absolute).  SMDs, means and variance ratios must agree
with a base-R implementation of cobalt's definitions to 1e-8 (relative and absolute).

Facts about the installed MatchIt 4.5.1 (Debian) that these tests pin down, with a literal
Python port of its ``nn_matchC_vec`` (:func:`matchit_451`) reproducing them exactly:

1. Treated units are matched in ``order(score, decreasing = TRUE)`` order, which is stable:
   equal scores in row order.  Our rule (ties: smaller id first) is the same when rows are in
   id order, as the cohort is.
2. All units are stably sorted by score; a treated unit's candidates are the nearest
   available control before and after it in that order; at equal distance the one before
   (lower score) wins.  Our (score, id) order is the same when rows are in id order.
3. ``abs()`` in the C++ code is the integer ``abs``: differences are truncated to whole
   numbers before the caliper check and the left/right comparison.  With scores of order 1
   the caliper is ignored and the lower candidate always wins.  We therefore pass integer
   scores (logit x 1e6, rounded), on which truncation is exact; scaling changes neither the
   ranking nor the standardised caliper.  (Fixed upstream in 4.5.4.)
4. For ``ratio > 1`` the check "control already matched to this treated unit" compares a
   0-based index with the 1-based indices MatchIt stores: in rounds >= 2 a treated unit skips
   the control in the row right after each of its controls, and with ``replace = TRUE`` can
   take the same control twice.  We do not reproduce this.  For ``ratio > 1`` without
   replacement the R script puts a discarded placeholder row after every row, which makes
   the bug harmless (the row after a control is never a candidate) and leaves everything else
   unchanged (discarded units are skipped and excluded from the caliper SD).
   ``ratio > 1`` with ``replace = TRUE`` cannot be compared (MatchIt repeats controls).

If Rscript or MatchIt is missing the tests are skipped, except with CI=true, where they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hdank.match_stage import run_matching
from hdank.matching import caliper_width, nearest_match, unit_weights
from hdank.propensity import PropensityModel

pytestmark = pytest.mark.r

R_SCRIPT = Path(__file__).parent / "r" / "matchit_reference.R"
WEIGHT_ATOL = 1e-12
SMD_TOL = 1e-8
SPECS = ["1_FALSE_largest_FALSE", "1_FALSE_smallest_FALSE", "1_TRUE_largest_FALSE",
         "2_FALSE_largest_TRUE", "3_FALSE_largest_TRUE"]
BUG_SPECS = ["2_FALSE_largest_FALSE", "2_TRUE_largest_FALSE"]   # without placeholders


@pytest.fixture(scope="module")
def rscript():
    exe = shutil.which("Rscript")
    reason = None
    if exe is None:
        reason = "Rscript is not on PATH"
    elif subprocess.run([exe, "-e", "library(MatchIt)"], capture_output=True).returncode:
        reason = "the R package MatchIt is not installed"
    if reason:
        if os.environ.get("CI") == "true":
            pytest.fail(f"{reason}; CI=true requires the R comparison")
        pytest.skip(reason)
    return exe


def simulated_cohort(n: int, seed: int) -> pd.DataFrame:
    """A cohort confounded by severity: older, higher-CRP patients are treated more often."""
    rng = np.random.default_rng(seed)
    ids = np.sort(rng.choice(10 * n, n, replace=False)) + 1
    df = pd.DataFrame({"patient_id": ids,
                       "cov_num_age": rng.normal(64, 12, n).round(0),
                       "cov_cat_sex": rng.choice(["F", "M", "U"], n, p=[0.4, 0.55, 0.05]),
                       "cov_bin_diabetes": pd.array(rng.integers(0, 2, n), dtype="Int8"),
                       "cov_num_crp": rng.lognormal(4.3, 0.7, n).round(1),
                       "cov_num_pf_ratio": rng.normal(150, 40, n).round(0)})
    df.loc[rng.random(n) < 0.12, "cov_num_crp"] = np.nan
    df.loc[rng.random(n) < 0.08, "cov_bin_diabetes"] = pd.NA
    lp = (-0.9 + 0.04 * (df["cov_num_age"] - 64) + 0.5 * np.log(df["cov_num_crp"].fillna(70) / 70)
          - 0.01 * (df["cov_num_pf_ratio"] - 150))
    df["treated"] = (rng.random(n) < 1 / (1 + np.exp(-lp))).astype("int8")
    return df


COVARIATES = ["cov_num_age", "cov_cat_sex", "cov_bin_diabetes", "cov_num_crp", "cov_num_pf_ratio"]


def dataset(name: str) -> pd.DataFrame:
    """(id, treated, score) with the score = logit of a fitted propensity model (x 1e6)."""
    if name == "offbyone":
        # T1 at 50 takes C2 (49) first; then C3 (48) and C4 (52) are both 2 away and the lower,
        # C3, should win; C5 and C6 only widen the caliper (0.2 SD = 14).
        return pd.DataFrame({"id": [1, 2, 3, 4, 5, 6], "treated": [1, 0, 0, 0, 0, 0],
                             "score": np.array([50, 49, 48, 52, 0, 200]) * 1e6})
    n, seed, digits = {"cohort300": (300, 1, 6), "ties400": (400, 2, 1),
                       "large5000": (5000, 3, 6), "small300": (300, 1, None)}[name]
    cohort = simulated_cohort(n, seed)
    logit = PropensityModel(COVARIATES).fit(cohort).logit_
    # integer scores (logit x 1e6) keep MatchIt 4.5.1's integer abs() exact; ties400 keeps
    # one decimal of the logit, so many treated and controls share a score
    score = logit if digits is None else np.round(logit, digits) * 1e6
    if digits is not None:
        score = np.round(score)
    return pd.DataFrame({"id": cohort["patient_id"], "treated": cohort["treated"].astype(int),
                         "score": score})


SPECS_FOR = {"cohort300": SPECS + BUG_SPECS, "ties400": SPECS, "large5000": SPECS,
             "small300": ["1_FALSE_largest_FALSE"],
             "offbyone": ["2_FALSE_largest_FALSE", "2_FALSE_largest_TRUE"]}


@pytest.fixture(scope="module")
def matchit(rscript, tmp_path_factory):
    """run(name) -> (data, {spec: (matches, weights)}, MatchIt version); R runs once per set."""
    cache: dict = {}

    def run(name: str):
        if name not in cache:
            d = dataset(name)
            out = tmp_path_factory.mktemp(name)
            d.to_csv(out / "data.csv", index=False)
            res = subprocess.run([rscript, str(R_SCRIPT), "match", str(out / "data.csv"), str(out),
                                  *SPECS_FOR[name]], capture_output=True, text=True, timeout=300)
            assert res.returncode == 0, res.stderr
            version = res.stdout.strip().splitlines()[-1].split()[-1]
            results = {}
            for spec in SPECS_FOR[name]:
                pairs = pd.read_csv(out / f"{spec}_pairs.csv",
                                    dtype={"treated_id": int, "control_id": int})
                weights = pd.read_csv(out / f"{spec}_weights.csv",
                                      dtype={"id": int}).set_index("id")["weight"]
                results[spec] = (as_matches(pairs), weights)
            cache[name] = (d, results, version)
        return cache[name]

    return run


def as_matches(pairs: pd.DataFrame) -> dict:
    """{treated id: [control ids by rank]} from (treated_id, control_id, rank) rows."""
    pairs = pairs.sort_values(["treated_id", "rank"])
    return {int(t): [int(c) for c in g["control_id"]] for t, g in pairs.groupby("treated_id")}


def parse(spec: str):
    ratio, replace, order, _ = spec.split("_")
    return int(ratio), replace == "TRUE", order


def ours(d: pd.DataFrame, spec: str):
    ratio, replace, order = parse(spec)
    score, treated, ids = d["score"].to_numpy(), d["treated"].to_numpy(), d["id"].to_numpy()
    pairs = nearest_match(score, treated, ids, caliper_width(score, 0.2), ratio, replace, order)
    m = {}
    for _, g in pairs.groupby("pair_id"):
        m[int(ids[g["treated_row"].iloc[0]])] = [int(c) for c in ids[g["control_row"]]]
    return m, pd.Series(unit_weights(pairs, treated), index=ids)


@pytest.mark.parametrize("name", ["cohort300", "ties400", "large5000"])
@pytest.mark.parametrize("spec", SPECS)
def test_matched_set_identical_to_matchit(matchit, name, spec):
    d, results, _ = matchit(name)
    r_matches, r_weights = results[spec]
    py_matches, py_weights = ours(d, spec)
    assert py_matches == r_matches
    assert len(py_matches) > 0.5 * d["treated"].sum()
    np.testing.assert_allclose(py_weights.loc[r_weights.index], r_weights, rtol=0, atol=WEIGHT_ATOL)


def test_tie_data_set_really_has_ties(matchit):
    d, _, _ = matchit("ties400")
    by_score = d.groupby("score")["treated"].agg(["min", "max", "size"])
    assert (by_score["size"] > 1).sum() > 20
    assert ((by_score["min"] == 0) & (by_score["max"] == 1)).sum() > 10   # treated and controls share


# ---- the MatchIt 4.5.1 facts, reproduced by a literal port of nn_matchC_vec ------------

def matchit_451(score, treated, ratio=1, replace=False, order="largest", caliper_sd=0.2,
                int_abs=True, off_by_one=True) -> dict:
    """Literal Python port of MatchIt 4.5.1's ``nn_matchC_vec`` (distance vector, no options).

    Returns {treated row: [(round, control row), ...]}.  ``int_abs`` and ``off_by_one`` switch
    its two bugs on (facts 3 and 4 of the module docstring).
    """
    n = len(score)
    caliper = caliper_sd * np.std(score, ddof=1)
    d_ord = np.argsort(score, kind="stable")                      # base::sort.list
    treat, dist = treated[d_ord], score[d_ord]
    where = np.empty(n, dtype=int)
    where[d_ord] = np.arange(n)
    t_rows = np.flatnonzero(treated)
    if replace:
        order = "data"                                           # reuse.max >= n1
    ordr = {"largest": np.argsort(-score[t_rows], kind="stable"),  # order(decreasing = TRUE)
            "smallest": np.argsort(score[t_rows], kind="stable"),
            "data": np.arange(t_rows.size)}[order]
    absv = (lambda x: float(int(abs(x)))) if int_abs else abs
    can = treat != 1
    mm: dict = {int(t): [] for t in t_rows}
    for r in range(ratio):
        for i in ordr:
            row = mm[int(t_rows[i])]
            stored = [c + 1 for _, c in row]                      # MatchIt stores 1-based rows
            ii = where[t_rows[i]]

            def usable(k):
                if treat[k] == 1:
                    return False
                if r > 0 and (d_ord[k] if off_by_one else d_ord[k] + 1) in stored:
                    return False
                return bool(can[k])

            def nearest(step):
                k = ii + step
                while 0 <= k < n:
                    if usable(k):                      # first usable one: caliper or nothing
                        return k if absv(dist[ii] - dist[k]) <= caliper else None
                    k += step
                return None

            kl, kr = nearest(-1), nearest(1)
            if kl is not None and kr is not None:
                k = kl if absv(dist[kl] - dist[ii]) <= absv(dist[kr] - dist[ii]) else kr
            else:
                k = kl if kl is not None else kr
            if k is None:
                continue
            row.append((r, int(d_ord[k])))
            if not replace:
                can[k] = False
            if not can.any():
                return mm
    return mm


def port_matches(d: pd.DataFrame, spec: str, **bugs) -> dict:
    ratio, replace, order = parse(spec)
    ids = d["id"].to_numpy()
    mm = matchit_451(d["score"].to_numpy(), d["treated"].to_numpy().astype(bool), ratio,
                     replace, order, **bugs)
    return {int(ids[t]): [int(ids[c]) for _, c in sorted(v)] for t, v in mm.items() if v}


def _require_451(version):
    if version != "4.5.1":
        pytest.skip(f"these facts are about MatchIt 4.5.1; installed: {version}")


@pytest.mark.parametrize("spec", ["1_FALSE_largest_FALSE", "1_FALSE_smallest_FALSE",
                                  "1_TRUE_largest_FALSE"])
def test_port_without_bugs_equals_ours(matchit, spec):
    d, results, _ = matchit("ties400")
    assert port_matches(d, spec, int_abs=False, off_by_one=False) == ours(d, spec)[0]


def test_matchit_451_ratio_bug_on_a_hand_example(matchit):
    """Fact 4 without replacement: round 2 skips the row after the round-1 control."""
    d, results, version = matchit("offbyone")
    _require_451(version)
    assert results["2_FALSE_largest_FALSE"][0] == {1: [2, 4]}      # MatchIt 4.5.1 as is
    assert port_matches(d, "2_FALSE_largest_FALSE") == {1: [2, 4]}  # the port with the bug
    assert results["2_FALSE_largest_TRUE"][0] == {1: [2, 3]}       # placeholders: bug harmless
    assert ours(d, "2_FALSE_largest_FALSE")[0] == {1: [2, 3]}


@pytest.mark.parametrize("spec", BUG_SPECS)
def test_matchit_451_ratio_bug_explains_the_only_difference(matchit, spec):
    """Fact 4 on a cohort: MatchIt's raw k:1 result is exactly the port WITH the off-by-one,
    and the port without it is our result."""
    d, results, version = matchit("cohort300")
    _require_451(version)
    r_matches = results[spec][0]
    assert r_matches == port_matches(d, spec)                        # bug reproduced exactly
    assert port_matches(d, spec, off_by_one=False) == ours(d, spec)[0]
    if spec == "2_TRUE_largest_FALSE":
        assert sum(len(set(c)) < len(c) for c in r_matches.values()) > 10  # control taken twice


def test_matchit_451_ignores_the_caliper_on_small_scores(matchit):
    """Fact 3: on the raw logit (order 1) MatchIt's integer abs() disables the caliper."""
    spec = "1_FALSE_largest_FALSE"
    d, results, version = matchit("small300")
    _require_451(version)
    r_matches = results[spec][0]
    assert r_matches == port_matches(d, spec)
    assert r_matches != ours(d, spec)[0]
    # every treated unit is matched (no caliper) although some are far from any control
    assert len(r_matches) == min(d["treated"].sum(), (d["treated"] == 0).sum())


# ---- balance: cobalt's definitions in base R ---------------------------------------------

def test_balance_table_matches_cobalt_definitions(rscript, tmp_path):
    cohort = simulated_cohort(300, 4)
    ps, matched, balance, _ = run_matching(
        cohort, {"covariates": COVARIATES, "missing": "indicator"},
        {"method": "nearest", "ratio": 2, "replace": False, "caliper_sd": 0.2, "order": "largest"},
        {"truncate_percentiles": [1, 99]}, {"smd_threshold": 0.1, "min_share_treated_matched": 0.8})
    from hdank.balance import balance_matrix
    w_match = matched.groupby("patient_id")["match_weight"].sum()
    data = balance_matrix(cohort, COVARIATES)
    data.insert(0, "w_iptw", ps["iptw"].to_numpy())
    data.insert(0, "w_match", cohort["patient_id"].map(w_match).fillna(0.0).to_numpy())
    data.insert(0, "treated", cohort["treated"].to_numpy())
    assert data["w_match"].nunique() > 2                         # weights other than 0/1
    data.to_csv(tmp_path / "bal.csv", index=False)
    res = subprocess.run([rscript, str(R_SCRIPT), "smd", str(tmp_path / "bal.csv"),
                          str(tmp_path / "ref.csv")], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    ref = pd.read_csv(tmp_path / "ref.csv")
    assert ref["covariate"].tolist() == balance["covariate"].tolist()
    for col in [c for c in balance.columns[1:] if c != "gated"]:  # gated: our gate flag, not a statistic
        np.testing.assert_allclose(balance[col], ref[col], rtol=SMD_TOL, atol=SMD_TOL,
                                   err_msg=col)
