"""Tests of hdank.analyses: every analysis end to end on a small simulated study, plus
hand-checked definitions (censoring at discharge, landmark population, E-value rule)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from hdank import analyses
from hdank.analyses import ESTIMATE_COLUMNS, KM_COLUMNS, PH_COLUMNS, run_analysis
from hdank.cox import CoxPH
from hdank.evalue import evalue_hr
from hdank.km import KaplanMeier

COVARIATES = ["cov_num_age", "cov_cat_sex", "cov_num_bmi", "cov_bin_diabetes", "cov_num_crp",
              "cov_cat_period"]
G = 2.0
HORIZON = 28.0
DAYS = [0, 7, 14, 21, 28]


def make_study(seed: int = 7, n: int = 300, n_late: int = 20) -> dict:
    """Small study with the data-model tables: cohort, extended, matched, ps, complete-case."""
    rng = np.random.default_rng(seed)
    N = n + n_late
    age = rng.normal(65, 12, N).round(1)
    sex = rng.choice(["F", "M"], N, p=[0.4, 0.6]).astype(object)
    sex[rng.random(N) < 0.02] = "U"
    bmi = rng.normal(28, 5, N).round(1)
    bmi[rng.random(N) < 0.1] = np.nan
    diab = pd.array(rng.binomial(1, 0.3, N), dtype="Int8")
    diab[rng.random(N) < 0.05] = pd.NA
    crp = np.exp(rng.normal(4, 0.7, N)).round(1)
    crp[rng.random(N) < 0.05] = np.nan
    period = rng.choice(["2020Q4", "2021Q1", "2021Q2"], N)
    sev = (age - 65) / 12 + (np.log(np.nan_to_num(crp, nan=55)) - 4) / 0.7
    p_treat = 1 / (1 + np.exp(-(-0.3 + 0.6 * sev)))
    treated = (rng.random(N) < p_treat).astype(int)
    late = np.zeros(N, bool)
    late[n:] = True
    treated[n:] = 1
    start = np.where(treated == 1, np.round(rng.uniform(0.05, G, N) * 24) / 24, np.nan)
    start[late] = np.round(rng.uniform(2.2, 6, n_late) * 24) / 24
    hazard = 0.013 * np.exp(0.5 * sev)
    t_death = rng.exponential(1 / hazard)
    t_disch = rng.uniform(3, 40, N)
    transfer = rng.random(N) < 0.1
    time = np.minimum(np.minimum(t_death, t_disch), HORIZON)
    time = np.maximum(np.round(time * 24) / 24, 1 / 24)
    event = ((t_death <= t_disch) & (t_death <= HORIZON)).astype(int)
    # late starters must still be in follow-up when they start
    time[late] = np.maximum(time[late], start[late] + 0.5)
    disch_day = np.where(event == 1, np.nan, np.round(t_disch * 24) / 24)
    status = np.where(event == 1, "died", np.where(transfer, "transfer", "home")).astype(object)
    status[(event == 0) & (t_disch > HORIZON)] = "in_hospital"
    disch_day[status == "in_hospital"] = np.nan
    # transfers are censored at transfer; home before 28 d is alive at 28 d (time = 28)
    tr = (status == "transfer") & (disch_day < HORIZON)
    time[tr] = disch_day[tr]
    home = (status == "home") & (disch_day < HORIZON)
    time[home] = HORIZON
    time[late] = np.maximum(time[late], start[late] + 0.5)
    ext = pd.DataFrame({
        "patient_id": np.arange(1, N + 1, dtype=np.int64), "treated": treated.astype(np.int8),
        "time": time, "event": event.astype(np.int8), "anakinra_start_day": start,
        "discharge_day": np.where(event == 1, time, disch_day), "discharge_status": status,
        "cov_num_age": age, "cov_cat_sex": sex, "cov_num_bmi": bmi, "cov_bin_diabetes": diab,
        "cov_num_crp": crp, "cov_cat_period": period,
        "reason": np.where(late, "anakinra_late", None)})
    cohort = ext[ext["reason"].isna()].drop(columns="reason").reset_index(drop=True)
    # propensity (simple logistic on complete-filled covariates) and weights
    z = np.column_stack([np.ones(n), (cohort["cov_num_age"] - 65) / 12,
                         np.log(cohort["cov_num_crp"].fillna(cohort["cov_num_crp"].median()))])
    y = cohort["treated"].to_numpy(float)
    beta = np.zeros(3)
    for _ in range(25):
        pr = 1 / (1 + np.exp(-z @ beta))
        beta += np.linalg.solve((z * (pr * (1 - pr))[:, None]).T @ z, z.T @ (y - pr))
    ps_val = 1 / (1 + np.exp(-z @ beta))
    iptw = np.where(y == 1, y.mean() / ps_val, (1 - y.mean()) / (1 - ps_val))
    lo, hi = np.percentile(iptw, [1, 99])
    ps = pd.DataFrame({"patient_id": cohort["patient_id"], "treated": cohort["treated"],
                       "ps": ps_val, "logit_ps": np.log(ps_val / (1 - ps_val)),
                       "iptw": np.clip(iptw, lo, hi),
                       "overlap_weight": np.where(y == 1, 1 - ps_val, ps_val)})
    matched = _match(cohort, ps_val)
    complete = cohort[cohort[COVARIATES].notna().all(axis=1)]
    matched_cc = _match(complete.reset_index(drop=True),
                        ps_val[cohort[COVARIATES].notna().all(axis=1).to_numpy()])
    return {"cohort": cohort, "extended": ext.reset_index(drop=True), "matched": matched,
            "ps": ps, "matched_complete_case": matched_cc}


def _match(cohort: pd.DataFrame, ps_val: np.ndarray) -> pd.DataFrame:
    """Greedy 1:1 nearest-neighbour matching on the logit, caliper 0.2 SD, largest first."""
    logit = np.log(ps_val / (1 - ps_val))
    cal = 0.2 * logit.std()
    tr = np.flatnonzero(cohort["treated"].to_numpy() == 1)
    co = list(np.flatnonzero(cohort["treated"].to_numpy() == 0))
    pairs = []
    for i in tr[np.argsort(-ps_val[tr], kind="stable")]:
        if not co:
            break
        d = np.abs(logit[co] - logit[i])
        j = int(np.argmin(d))
        if d[j] <= cal:
            pairs.append((i, co.pop(j)))
    rows = []
    for k, (i, j) in enumerate(pairs, start=1):
        rows += [(i, k), (j, k)]
    out = cohort.iloc[[r for r, _ in rows]].copy()
    out["pair_id"] = np.array([k for _, k in rows], dtype=np.int64)
    out["match_weight"] = 1.0
    return out.reset_index(drop=True)


@pytest.fixture(scope="module")
def study():
    return make_study()


def _run(name, study, **settings):
    return run_analysis(name, settings, covariates=COVARIATES, grace_days=G, horizon=HORIZON,
                        at_risk_days=DAYS, **study)


@pytest.fixture(scope="module")
def results(study):
    out = {}
    for name in analyses.ANALYSES:
        settings = {"bootstrap": 10, "seed": 11} if name == "clone_censor_weight" else {}
        out[name] = _run(name, study, **settings)
    return out


# ------------------------------------------------------------------ shape of every output
@pytest.mark.parametrize("name", list(analyses.ANALYSES))
def test_output_shapes(results, name):
    row, km, ph = results[name]
    assert list(row) == ESTIMATE_COLUMNS
    assert row["analysis"] == name
    assert list(km.columns) == KM_COLUMNS and list(ph.columns) == PH_COLUMNS
    assert 0 < row["hr_low"] < row["hr"] < row["hr_high"]
    assert 0 <= row["p"] <= 1
    assert row["n"] > 0 and row["events_treated"] > 0 and row["events_control"] > 0
    assert isinstance(row["method"], str) and len(row["method"]) > 40
    if name != "cohort_multivariable":
        for k in ("risk_treated", "risk_control"):
            assert 0 <= row[k] <= 1
        assert row["rd_low"] <= row["risk_difference"] <= row["rd_high"]
        assert row["risk_difference"] == pytest.approx(row["risk_treated"] - row["risk_control"])
    else:
        assert math.isnan(row["risk_treated"])
    assert set(km["kind"]) == {"step", "at_risk"}
    assert set(km["arm"]) == {"hdank", "soc"}
    steps = km[km["kind"] == "step"]
    for _, arm in steps.groupby("arm"):
        assert arm["surv"].iloc[0] == 1.0
        assert (np.diff(arm["surv"].to_numpy()) <= 1e-15).all()  # non-increasing
        assert (np.diff(arm["time"].to_numpy()) > 0).all()
    if name == "clone_censor_weight":
        assert ph.empty
    else:
        assert ph["term"].iloc[-1] == "GLOBAL"
        assert ((ph["p"] >= 0) & (ph["p"] <= 1)).all()


def test_extra_columns_only_where_defined(results):
    for name, (row, _, _) in results.items():
        has_lr = name in {"primary_matched", "complete_case", "censor_discharge"}
        assert math.isnan(row["logrank_p"]) != has_lr, name
        assert math.isnan(row["evalue"]) != (name == "primary_matched"), name


def test_unadjusted_is_labelled_biased(results):
    assert "biased by design" in results["unadjusted"][0]["method"].lower()


def test_at_risk_table(results, study):
    _, km, _ = results["primary_matched"]
    ar = km[km["kind"] == "at_risk"]
    m = study["matched"]
    for arm, t in (("hdank", 1), ("soc", 0)):
        sub = ar[ar["arm"] == arm].set_index("time")
        assert list(sub.index) == [float(d) for d in DAYS]
        arm_rows = m[m["treated"] == t]
        for d in DAYS:
            assert sub.loc[d, "n_risk"] == (arm_rows["time"] >= d).sum()
            assert sub.loc[d, "n_event"] == arm_rows.loc[arm_rows["time"] <= d, "event"].sum()


# ------------------------------------------------------------------ primary analysis
def test_primary_equals_direct_fits(results, study):
    row, km, _ = results["primary_matched"]
    m = study["matched"]
    fit = CoxPH().fit(m[["treated"]].astype(float), m["time"], m["event"], cluster=m["pair_id"])
    assert row["hr"] == pytest.approx(float(fit.hr_["treated"]), rel=1e-12)
    assert row["hr_low"] == pytest.approx(float(fit.hr_ci_.loc["treated", "lower"]), rel=1e-12)
    kt = KaplanMeier().fit(m.loc[m.treated == 1, "time"], m.loc[m.treated == 1, "event"])
    kc = KaplanMeier().fit(m.loc[m.treated == 0, "time"], m.loc[m.treated == 0, "event"])
    rt, rc = kt.risk_at(28), kc.risk_at(28)
    assert row["risk_treated"] == pytest.approx(rt.risk)
    se = math.hypot(rt.se, rc.se)
    assert row["rd_high"] - row["risk_difference"] == pytest.approx(1.959963984540054 * se)
    assert row["n"] == len(m)


def test_primary_evalue_uses_common_outcome_conversion(results, study):
    row, _, _ = results["primary_matched"]
    m = study["matched"]
    pooled = KaplanMeier().fit(m["time"], m["event"]).risk_at(28).risk
    assert pooled >= 0.15  # common outcome in this simulation
    ev = evalue_hr(row["hr"], row["hr_low"], row["hr_high"], rare=False)
    assert row["evalue"] == pytest.approx(ev["evalue"])
    assert row["evalue_ci"] == pytest.approx(ev["evalue_ci"])
    assert "sqrt(HR)" in row["method"]


def test_complete_case_missing_table_gives_null_row(study):
    row, km, ph = run_analysis("complete_case", {}, covariates=COVARIATES, horizon=28,
                               at_risk_days=DAYS, matched_complete_case=None)
    assert math.isnan(row["hr"]) and row["n"] == 0 and "not available" in row["method"]
    assert km.empty and ph.empty


def test_complete_case_runs_primary_method(results, study):
    row, _, _ = results["complete_case"]
    direct, _, _ = analyses.primary_matched(study["matched_complete_case"], horizon=28,
                                            at_risk_days=DAYS)
    assert row["hr"] == pytest.approx(direct["hr"], rel=1e-12)
    assert row["n"] == len(study["matched_complete_case"])


# ------------------------------------------------------------------ definitions
@pytest.mark.filterwarnings("ignore:cox_zph")
def test_censor_discharge_by_hand():
    """Four patients in two pairs: only the one discharged alive before day 28 changes."""
    m = pd.DataFrame({
        "pair_id": [1, 1, 2, 2], "treated": [1, 0, 1, 0],
        "time": [28.0, 5.0, 28.0, 28.0], "event": [0, 1, 0, 0],
        "discharge_day": [10.0, 5.0, np.nan, 30.0],
        "discharge_status": ["home", "died", "in_hospital", "home"],
        "match_weight": 1.0})
    seen = {}
    orig = analyses._matched_method

    def spy(name, df, *a, **k):
        seen["df"] = df
        return orig(name, df, *a, **k)

    analyses._matched_method = spy
    try:
        analyses.censor_discharge(m, horizon=28, at_risk_days=DAYS)
    finally:
        analyses._matched_method = orig
    assert seen["df"]["time"].tolist() == [10.0, 5.0, 28.0, 28.0]
    assert seen["df"]["event"].tolist() == [0, 1, 0, 0]


def test_landmark_population_and_exposure(results, study):
    row, km, _ = results["landmark"]
    ext = study["extended"]
    at_l = ext[ext["time"] > G]
    exposed = at_l["anakinra_start_day"].le(G)
    assert row["n"] == len(at_l)
    assert row["events_treated"] == at_l.loc[exposed, "event"].sum()
    assert row["events_control"] == at_l.loc[~exposed, "event"].sum()
    # late starters are in the unexposed group
    late = at_l["anakinra_start_day"] > G
    assert late.sum() > 0
    steps = km[km["kind"] == "step"]
    assert steps["time"].min() == G  # reported on the T0 time scale
    ar = km[km["kind"] == "at_risk"]
    assert sorted(ar["time"].unique()) == [7.0, 14.0, 21.0, 28.0]


def test_iptw_matches_direct_weighted_fit(results, study):
    row, _, _ = results["iptw"]
    c = study["cohort"].merge(study["ps"][["patient_id", "iptw"]], on="patient_id")
    fit = CoxPH().fit(c[["treated"]].astype(float), c["time"], c["event"], weights=c["iptw"],
                      robust=True)
    assert row["hr"] == pytest.approx(float(fit.hr_["treated"]), rel=1e-12)
    assert row["hr_high"] == pytest.approx(float(fit.hr_ci_.loc["treated", "upper"]), rel=1e-12)


def test_ccw_is_seeded(study, results):
    again = _run("clone_censor_weight", study, bootstrap=10, seed=11)[0]
    first = results["clone_censor_weight"][0]
    for k in ("hr", "hr_low", "hr_high", "rd_low", "rd_high"):
        assert again[k] == first[k]
    other = _run("clone_censor_weight", study, bootstrap=10, seed=12)[0]
    assert other["hr"] == first["hr"] and other["hr_low"] != first["hr_low"]


def test_unknown_analysis_and_missing_inputs(study):
    with pytest.raises(ValueError, match="unknown analysis"):
        run_analysis("nope", {}, horizon=28)
    with pytest.raises(ValueError, match="needs the matched table"):
        run_analysis("primary_matched", {}, horizon=28, cohort=study["cohort"])
    with pytest.raises(ValueError, match="covariates"):
        run_analysis("landmark", {}, horizon=28, grace_days=2, extended=study["extended"])


def test_one_arm_only_is_an_error(study):
    c = study["cohort"]
    with pytest.raises(ValueError, match="both arms"):
        run_analysis("unadjusted", {}, horizon=28, cohort=c[c["treated"] == 1])


def test_outputs_are_deterministic(study):
    a = _run("primary_matched", study)
    b = _run("primary_matched", study)
    assert a[0] == b[0] or all((a[0][k] == b[0][k]) or (isinstance(a[0][k], float)
                                                        and math.isnan(a[0][k])) for k in a[0])
    pd.testing.assert_frame_equal(a[1], b[1])
    pd.testing.assert_frame_equal(a[2], b[2])


def test_match_weights_use_clustered_jackknife(study):
    """k:1 / with-replacement style weights: weighted Cox and KM, IJ CI clustered on pair."""
    m = study["matched"].copy()
    m.loc[m["treated"] == 0, "match_weight"] = np.where(m.loc[m["treated"] == 0, "pair_id"] % 2,
                                                        2.0, 1.0)
    row, km, _ = run_analysis("primary_matched", {}, matched=m, horizon=28, at_risk_days=DAYS)
    fit = CoxPH().fit(m[["treated"]].astype(float), m["time"], m["event"],
                      weights=m["match_weight"], cluster=m["pair_id"])
    assert row["hr"] == pytest.approx(float(fit.hr_["treated"]), rel=1e-12)
    assert "match_weight" in row["method"] and row["rd_low"] < row["rd_high"]


def test_data_problems_are_user_errors(study):
    from hdank.errors import UserError
    c = study["cohort"]
    with pytest.raises(UserError, match="both arms"):
        run_analysis("unadjusted", {}, horizon=28, cohort=c[c["treated"] == 0])
    with pytest.raises(UserError, match="no events"):
        run_analysis("unadjusted", {}, horizon=28, cohort=c.assign(event=0))
    with pytest.raises(UserError, match=r"ps has duplicated patient_id"):
        run_analysis("iptw", {}, horizon=28, cohort=c, ps=pd.concat([study["ps"]] * 2))


def test_complete_case_without_a_matched_sample_is_reported_not_estimable():
    empty = pd.DataFrame({c: pd.Series(dtype="float64") for c in ["patient_id", "treated", "time", "event", "pair_id"]})
    row, km, ph = run_analysis("complete_case", {}, matched_complete_case=empty)
    assert np.isnan(row["hr"]) and row["n"] == 0
    assert "not estimable" in row["method"]
    assert km.empty and ph.empty
