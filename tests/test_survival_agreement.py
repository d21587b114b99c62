"""Agreement of hdank's survival code with R's survival package (tests/r/survival_reference.R).

Data: lifelines' Rossi recidivism data (heavy ties in ``week``), R's ``lung`` (exported by the
R script, complete cases, clustered on ``inst``) and a simulated matched cohort (250 pairs,
integer-day times with ties, a few times perturbed by 1e-10 to exercise R's ``timefix``,
non-integer IPTW-like weights, and delayed entry for counting-process fits).

Tolerances (written once, below):
* Kaplan-Meier survival, standard error and log-log CI: 1e-8 absolute.
* survdiff chi-square and p: 1e-6 relative.
* coxph coefficients / HR / CI bounds, model and robust SEs: 1e-6 relative (coefficients also
  1e-9 absolute, for coefficients near 0).  R stops at a relative log-likelihood change of
  1e-9, we take one more Newton step; the observed differences are ~1e-9 relative.
* cox.zph chi-square and p, per term and GLOBAL: 1e-6 relative.

Without Rscript the tests are skipped, except under CI=true where they fail.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hdank.cox import CoxPH
from hdank.km import km_by_group
from hdank.logrank import logrank_test
from hdank.phtest import cox_zph

pytestmark = pytest.mark.r

KM_ATOL = 1e-8
LOGRANK_RTOL = 1e-6
COX_RTOL = 1e-6
COEF_ATOL = 1e-9
ZPH_RTOL = 1e-6

SCRIPT = Path(__file__).parent / "r" / "survival_reference.R"


def _need_rscript() -> str:
    exe = shutil.which("Rscript")
    if exe is None:
        message = "Rscript not found on PATH: cannot compare with R's survival package"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message + " (CI=true: R is required)")
        pytest.skip(message)
    return exe


def simulate_matched(seed: int = 20240607, n_pairs: int = 250) -> pd.DataFrame:
    """Matched cohort with pair clusters, tied integer-day times and weights."""
    rng = np.random.default_rng(seed)
    n = 2 * n_pairs
    pair = np.repeat(np.arange(1, n_pairs + 1), 2)
    treated = np.tile([1, 0], n_pairs)
    shared = np.repeat(rng.normal(size=n_pairs), 2)
    x1 = shared + rng.normal(scale=0.5, size=n)
    x2 = rng.binomial(1, 0.4, size=n)
    x3 = rng.choice(["a", "b", "c"], size=n, p=[0.5, 0.3, 0.2])
    lp = -0.2 * treated + 0.5 * x1 + 0.4 * x2 + 0.3 * (x3 == "b") - 0.4 * (x3 == "c")
    t_event = rng.exponential(40 / np.exp(lp))
    t_cens = rng.uniform(5, 60, size=n)
    time = np.minimum(np.ceil(np.minimum(t_event, t_cens)), 28.0)
    event = ((t_event <= t_cens) & (np.ceil(t_event) <= 28)).astype(int)
    time = time + np.where(np.arange(n) % 17 == 3, 1e-10, 0.0)  # timefix must merge these
    w = np.exp(rng.normal(scale=0.4, size=n)).round(6)
    entry = np.where(rng.random(n) < 0.3, np.floor(rng.uniform(0, 1, n) * (time - 0.5)), 0.0)
    entry = np.minimum(entry, time - 0.5)
    return pd.DataFrame({"id": np.arange(1, n + 1), "pair_id": pair, "treated": treated,
                         "x1": x1.round(8), "x2": x2, "x3": x3, "time": time, "event": event,
                         "w": w, "entry": entry})


@pytest.fixture(scope="module")
def ref(tmp_path_factory):
    exe = _need_rscript()
    wd = tmp_path_factory.mktemp("rsurv")
    from lifelines.datasets import load_rossi
    rossi = load_rossi()
    rossi.to_csv(wd / "rossi.csv", index=False)
    sim = simulate_matched()
    sim.to_csv(wd / "sim.csv", index=False, float_format="%.17g")
    proc = subprocess.run([exe, str(SCRIPT), str(wd)], capture_output=True, text=True,
                          timeout=300)
    if proc.returncode != 0:
        raise AssertionError(f"R script failed:\n{proc.stderr}")
    scalars = pd.read_csv(wd / "scalars.csv", keep_default_na=False)
    scalars["value"] = scalars["value"].astype(float)
    return {"wd": wd, "rossi": rossi, "sim": pd.read_csv(wd / "sim.csv"),
            "lung": pd.read_csv(wd / "lung.csv"), "scalars": scalars}


def r_value(ref, dataset, model, quantity, term=""):
    s = ref["scalars"]
    hit = s[(s.dataset == dataset) & (s.model == model) & (s.quantity == quantity)
            & (s.term == term)]
    assert len(hit) == 1, (dataset, model, quantity, term)
    return float(hit["value"].iloc[0])


def r_km(ref, name):
    return pd.read_csv(ref["wd"] / f"km_{name}.csv", na_values=["NA", "NaN"])


# ------------------------------------------------------------------ Kaplan-Meier
KM_CASES = {
    "rossi": ("rossi", "week", "arrest", "fin", None, None),
    "lung": ("lung", "time", "status", "sex", None, None),
    "sim": ("sim", "time", "event", "treated", None, None),
    "sim_weighted": ("sim", "time", "event", "treated", "w", None),
    "sim_counting": ("sim", "time", "event", "treated", None, "entry"),
    "sim_counting_weighted": ("sim", "time", "event", "treated", "w", "entry"),
}


@pytest.mark.parametrize("name", list(KM_CASES))
def test_kaplan_meier_matches_survfit(ref, name):
    data_name, tcol, ecol, gcol, wcol, entry_col = KM_CASES[name]
    df = ref[data_name]
    fits = km_by_group(df[tcol], df[ecol], df[gcol],
                       weights=None if wcol is None else df[wcol],
                       entry=None if entry_col is None else df[entry_col])
    rk = r_km(ref, name)
    for group, km in fits.items():
        r = rk[rk.strata.astype(str) == str(group)].reset_index(drop=True)
        ours = km.table_
        assert len(ours) == len(r), (name, group)
        np.testing.assert_allclose(ours["time"], r["time"], rtol=0, atol=1e-12)
        np.testing.assert_allclose(ours["n_risk"], r["n_risk"], rtol=0, atol=KM_ATOL)
        np.testing.assert_allclose(ours["n_event"], r["n_event"], rtol=0, atol=KM_ATOL)
        np.testing.assert_allclose(ours["surv"], r["surv"], rtol=0, atol=KM_ATOL)
        # R reports se(log S) for Greenwood and se(S) for the robust (IJ) variance
        r_se_log = np.where(r["logse"], r["std_err"],
                            np.where(r["std_err"] == 0, 0, r["std_err"] / r["surv"]))
        np.testing.assert_allclose(ours["std_err"], r_se_log, rtol=0, atol=KM_ATOL)
        for col in ("lower", "upper"):
            assert np.array_equal(np.isnan(ours[col]), r[col].isna().to_numpy()), (name, col)
            np.testing.assert_allclose(ours[col], r[col], rtol=0, atol=KM_ATOL,
                                       equal_nan=True)
        assert km.variance_ == ("ij" if wcol else "greenwood")


# ------------------------------------------------------------------ log-rank
@pytest.mark.parametrize("data_name,tcol,ecol,gcol", [
    ("rossi", "week", "arrest", "fin"), ("lung", "time", "status", "sex"),
    ("sim", "time", "event", "treated")])
def test_logrank_matches_survdiff(ref, data_name, tcol, ecol, gcol):
    df = ref[data_name]
    res = logrank_test(df[tcol], df[ecol], df[gcol])
    assert res.chisq == pytest.approx(r_value(ref, data_name, "logrank", "chisq"),
                                      rel=LOGRANK_RTOL)
    assert res.p == pytest.approx(r_value(ref, data_name, "logrank", "p"), rel=LOGRANK_RTOL)


# ------------------------------------------------------------------ Cox and cox.zph
def _design(df, cols):
    X = df[[c for c in cols if c != "x3"]].astype(float)
    if "x3" in cols:
        X = X.assign(x3b=(df["x3"] == "b").astype(float), x3c=(df["x3"] == "c").astype(float))
    return X


ROSSI_COLS = ["fin", "age", "race", "wexp", "mar", "paro", "prio"]
COX_CASES = {
    # name: (dataset, model, columns, time, event, kwargs(df) -> fit kwargs, ties, R names)
    "rossi_efron_robust": ("rossi", "efron_robust", ROSSI_COLS, "week", "arrest",
                           lambda d: {"robust": True}, "efron"),
    "rossi_breslow": ("rossi", "breslow", ["fin", "age", "prio"], "week", "arrest",
                      lambda d: {}, "breslow"),
    "lung_efron_cluster": ("lung", "efron_cluster", ["age", "sex", "ph_ecog"], "time", "status",
                           lambda d: {"cluster": d["inst"]}, "efron"),
    "sim_pair": ("sim", "pair", ["treated"], "time", "event",
                 lambda d: {"cluster": d["pair_id"]}, "efron"),
    "sim_pair_adjusted": ("sim", "pair_adjusted", ["treated", "x1", "x2", "x3"], "time",
                          "event", lambda d: {"cluster": d["pair_id"]}, "efron"),
    "sim_weighted_robust": ("sim", "weighted_robust", ["treated", "x1"], "time", "event",
                            lambda d: {"weights": d["w"], "robust": True}, "efron"),
    "sim_weighted_cluster": ("sim", "weighted_cluster", ["treated", "x1"], "time", "event",
                             lambda d: {"weights": d["w"], "cluster": d["pair_id"]}, "efron"),
    "sim_counting_weighted_cluster": ("sim", "counting_weighted_cluster", ["treated", "x1"],
                                      "time", "event",
                                      lambda d: {"weights": d["w"], "cluster": d["pair_id"],
                                                 "entry": d["entry"]}, "efron"),
}
R_TERM = {"x3b": "x3b", "x3c": "x3c"}


def _fit(ref, case):
    data_name, model, cols, tcol, ecol, kw, ties = COX_CASES[case]
    df = ref[data_name]
    X = _design(df, cols)
    fit = CoxPH(ties=ties).fit(X, df[tcol], df[ecol], **kw(df))
    return data_name, model, fit


@pytest.mark.parametrize("case", list(COX_CASES))
def test_coxph_matches_r(ref, case):
    data_name, model, fit = _fit(ref, case)
    assert fit.converged_
    robust = fit.robust_se_ is not None
    for term in fit.names_:
        get = lambda q: r_value(ref, data_name, model, q, term)  # noqa: E731
        assert fit.coef_[term] == pytest.approx(get("coef"), rel=COX_RTOL, abs=COEF_ATOL), term
        assert fit.hr_[term] == pytest.approx(get("hr"), rel=COX_RTOL), term
        assert fit.se_[term] == pytest.approx(get("se"), rel=COX_RTOL), term
        if robust:
            assert fit.robust_se_[term] == pytest.approx(get("robust_se"), rel=COX_RTOL), term
        assert fit.hr_ci_.loc[term, "lower"] == pytest.approx(get("hr_lower"), rel=COX_RTOL)
        assert fit.hr_ci_.loc[term, "upper"] == pytest.approx(get("hr_upper"), rel=COX_RTOL)
    assert fit.loglik_ == pytest.approx(r_value(ref, data_name, model, "loglik"), rel=1e-10)
    assert fit.loglik_null_ == pytest.approx(r_value(ref, data_name, model, "loglik_null"),
                                             rel=1e-12)
    assert fit.n_events_ == r_value(ref, data_name, model, "n_events")


ZPH_CASES = ["rossi_efron_robust", "rossi_breslow", "lung_efron_cluster", "sim_pair",
             "sim_pair_adjusted", "sim_weighted_robust", "sim_counting_weighted_cluster"]


@pytest.mark.parametrize("case", ZPH_CASES)
def test_cox_zph_matches_r(ref, case):
    data_name, model, fit = _fit(ref, case)
    terms = None
    if "x3b" in fit.names_:  # the factor x3 is one term with 2 df, as in R
        terms = {n: [n] for n in fit.names_ if not n.startswith("x3")}
        terms["x3"] = ["x3b", "x3c"]
    table = cox_zph(fit, terms=terms).set_index("term")
    for term, row in table.iterrows():
        assert row["chisq"] == pytest.approx(r_value(ref, data_name, model, "zph_chisq", term),
                                             rel=ZPH_RTOL), term
        assert row["df"] == r_value(ref, data_name, model, "zph_df", term)
        assert row["p"] == pytest.approx(r_value(ref, data_name, model, "zph_p", term),
                                         rel=ZPH_RTOL), term
