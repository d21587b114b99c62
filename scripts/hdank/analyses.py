"""The survival analyses of protocol sections 4.5-4.6, one function each.

Every analysis returns ``(estimate_row, km, ph)``:

* ``estimate_row`` (dict, keys :data:`ESTIMATE_COLUMNS`): ``analysis, n, events_treated,
  events_control, hr, hr_low, hr_high, p, risk_treated, risk_control, risk_difference, rd_low,
  rd_high, method`` plus ``logrank_chisq, logrank_p`` (analyses run with the primary method)
  and ``evalue, evalue_ci`` (primary only); not-applicable values are NaN.
  "treated" is HD-ANK (in CCW the "HD-ANK within G" strategy, in the landmark analysis
  "HD-ANK started by the landmark"), "control" SOC / no anakinra.
* ``km`` (DataFrame, :data:`KM_COLUMNS`): rows with ``kind="step"`` are the Kaplan-Meier step
  function of each arm (a first row at time 0, then one per distinct time, as survfit);
  rows with ``kind="at_risk"`` are the at-risk table at the requested days (number at risk at
  the day, cumulative events and censorings up to the day, ``S(day)`` with CI).  Weighted
  analyses give weighted counts.
* ``ph`` (DataFrame, :data:`PH_COLUMNS`): survival-3 ``cox.zph`` per covariate (categorical
  one-hot columns and missing indicators tested jointly with their covariate) and GLOBAL.

Covariates of adjusted models come from :func:`hdank.propensity.learn_design` (median +
missing indicator, most frequent level as reference, constant/collinear columns dropped),
learned on the rows of the analysis.

Definitions chosen here (see also :mod:`hdank.ccw` and :mod:`hdank.evalue`):

* **Landmark** at ``L = T0 + G``: extended cohort restricted to patients still in follow-up
  at L (``time > G``); exposure = HD-ANK started by L (``anakinra_start_day <= G``), late
  starters unexposed; time reset to ``time - G``; Cox adjusted for the propensity
  covariates (model-based variance); risks at ``horizon - G`` after the landmark, i.e. the
  28-day risk conditional on being alive and in follow-up at L.
* **Censoring at discharge**: matched sample; a patient discharged alive (home or transfer)
  before the horizon is censored at ``discharge_day``; then the primary method.
* **Risk-difference CIs**: Greenwood (independent arms) for unweighted curves; for weighted
  curves the infinitesimal-jackknife influences summed within patients; bootstrap for CCW.
"""

from __future__ import annotations

import math
import warnings
from typing import Callable

import numpy as np
import pandas as pd
from scipy import stats

from hdank.ccw import ARM_A, ARM_B, clone_censor_weight
from hdank.cox import CoxPH
from hdank.errors import StudyError
from hdank.evalue import RARE_OUTCOME_THRESHOLD, evalue_hr
from hdank.km import (KaplanMeier, at_risk_table, clustered_risk_difference_se, km_by_group,
                      risk_difference)
from hdank.logrank import logrank_test
from hdank.phtest import cox_zph
from hdank.propensity import design_matrix, learn_design

__all__ = ["SurvivalDataError", "ANALYSES", "ESTIMATE_COLUMNS", "KM_COLUMNS", "PH_COLUMNS", "run_analysis",
           "covariate_design", "primary_matched", "complete_case", "censor_discharge",
           "unadjusted", "cohort_multivariable", "iptw", "overlap", "landmark",
           "clone_censor_weight_analysis"]

ESTIMATE_COLUMNS = ["analysis", "n", "events_treated", "events_control", "hr", "hr_low",
                    "hr_high", "p", "risk_treated", "risk_control", "risk_difference", "rd_low",
                    "rd_high", "method", "logrank_chisq", "logrank_p", "evalue", "evalue_ci"]
KM_COLUMNS = ["analysis", "kind", "arm", "time", "n_risk", "n_event", "n_censor", "surv",
              "lower", "upper"]
PH_COLUMNS = ["analysis", "term", "chisq", "df", "p"]
ARMS = {1: ARM_A, 0: ARM_B}
NAN = float("nan")

HR_TEXT = "Cox PH (Efron ties)"


class SurvivalDataError(StudyError, ValueError):
    """The tables cannot support the requested survival analysis (names table and rows)."""


# ------------------------------------------------------------------ helpers
def covariate_design(df: pd.DataFrame, covariates: list[str],
                     log_transform: tuple[str, ...] | list[str] = (),
                     min_missing: int = 1) -> tuple[pd.DataFrame, dict]:
    """Design matrix of the propensity covariates on ``df`` and the term of each column.

    Returns
    -------
    X : DataFrame
        Columns from :func:`hdank.propensity.design_matrix`, index of ``df``.
    terms : dict
        Covariate -> its design columns (for the per-covariate PH test).
    """
    spec = learn_design(df, list(covariates), missing="indicator", log=log_transform,
                        min_missing=min_missing)
    X = design_matrix(df, spec)
    terms: dict[str, list[str]] = {}
    for col in X.columns:
        terms.setdefault(spec.source.get(col, col), []).append(col)
    return X, terms


def _empty_row(analysis: str, method: str) -> dict:
    row = {c: NAN for c in ESTIMATE_COLUMNS}
    row.update(analysis=analysis, method=method, n=0, events_treated=0, events_control=0)
    return row


def _require(df: pd.DataFrame | None, name: str, analysis: str, columns: list[str]) -> pd.DataFrame:
    if df is None:
        raise SurvivalDataError(f"analysis {analysis!r} needs the {name} table")
    missing = [c for c in columns if c not in df.columns]
    if missing:
        raise SurvivalDataError(f"analysis {analysis!r}: table {name} lacks columns {missing}")
    if df.empty:
        raise SurvivalDataError(f"analysis {analysis!r}: table {name} has no rows")
    for col in ("time", "event"):
        if col in columns and df[col].isna().any():
            bad = df.index[df[col].isna()][:5].tolist()
            raise SurvivalDataError(f"analysis {analysis!r}: {name}.{col} is missing in rows "
                                    f"{bad}")
    if "time" in columns and (df["time"] <= 0).any():
        bad = df.index[df["time"] <= 0][:5].tolist()
        raise SurvivalDataError(f"analysis {analysis!r}: {name}.time must be > 0; rows {bad}")
    if "event" in columns and df["event"].sum() == 0:
        raise SurvivalDataError(f"analysis {analysis!r}: no events in table {name}")
    return df


def _events(df: pd.DataFrame, arm_col: str = "treated") -> tuple[int, int]:
    ev = df["event"].astype(int)
    return int(ev[df[arm_col] == 1].sum()), int(ev[df[arm_col] == 0].sum())


def _fit_cox(X: pd.DataFrame, df: pd.DataFrame, **kw) -> CoxPH:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CoxPH().fit(X, df["time"].to_numpy(float), df["event"].to_numpy(int), **kw)


def _hr_fields(fit: CoxPH, term: str = "treated") -> dict:
    return {"hr": float(fit.hr_[term]), "hr_low": float(fit.hr_ci_.loc[term, "lower"]),
            "hr_high": float(fit.hr_ci_.loc[term, "upper"]), "p": float(fit.p_[term])}


def _ph_table(analysis: str, fit: CoxPH, terms: dict | None = None) -> pd.DataFrame:
    table = cox_zph(fit, terms=terms)
    table.insert(0, "analysis", analysis)
    return table[PH_COLUMNS]


def _km_frames(analysis: str, fits: dict, at_risk_days: list[float]) -> pd.DataFrame:
    parts = []
    for arm, km in fits.items():
        tab = km.table_
        first = pd.DataFrame({"time": [0.0], "n_risk": [km.n_at_risk(0.0)], "n_event": [0.0],
                              "n_censor": [0.0], "surv": [1.0], "lower": [NAN], "upper": [NAN]})
        informative = (tab["n_event"] > 0) | (tab["n_censor"] > 0)  # drop bare split points
        step = pd.concat([first, tab.loc[informative, ["time", "n_risk", "n_event", "n_censor",
                                                       "surv", "lower", "upper"]]],
                         ignore_index=True)
        step = step[~((step["time"] == 0) & (step.index > 0))]  # survfit rows at 0 replace ours
        step.insert(0, "arm", arm)
        step.insert(0, "kind", "step")
        parts.append(step)
    risk = at_risk_table(fits, at_risk_days)
    risk.insert(0, "kind", "at_risk")
    parts.append(risk)
    out = pd.concat(parts, ignore_index=True)
    out.insert(0, "analysis", analysis)
    out = out[KM_COLUMNS]
    order = {"step": 0, "at_risk": 1}
    out = out.sort_values(["kind", "arm", "time"], key=lambda s: s.map(order) if s.name == "kind"
                          else s, kind="stable").reset_index(drop=True)
    for col in ("time", "n_risk", "n_event", "n_censor", "surv", "lower", "upper"):
        out[col] = out[col].astype(float)
    return out


def _arm_fits(df: pd.DataFrame, arm_col: str = "treated", **kw) -> dict:
    fits = km_by_group(df["time"], df["event"], df[arm_col], **kw)
    return {ARMS[int(k)]: v for k, v in sorted(fits.items(), key=lambda kv: -int(kv[0]))}


def _check_arms(df: pd.DataFrame, analysis: str, arm_col: str = "treated") -> None:
    present = set(df[arm_col].astype(int).unique())
    if present != {0, 1}:
        raise SurvivalDataError(f"analysis {analysis!r}: both arms are needed, found only "
                                f"{sorted(present)}")


def _risk_fields(fits: dict, horizon: float, se: float | None = None) -> dict:
    rt = fits[ARM_A].risk_at(horizon)
    rc = fits[ARM_B].risk_at(horizon)
    rd = risk_difference(rt, rc, se=se)
    return {"risk_treated": rt.risk, "risk_control": rc.risk,
            "risk_difference": rd["risk_difference"], "rd_low": rd["lower"],
            "rd_high": rd["upper"]}


def _weights_or_none(df: pd.DataFrame, col: str) -> np.ndarray | None:
    if col not in df.columns:
        return None
    w = df[col].to_numpy(float)
    return None if np.all(w == 1) else w


def _fmt_days(x: float) -> str:
    return f"{x:g}"


# ------------------------------------------------------------------ primary method
def _matched_method(name: str, df: pd.DataFrame, horizon: float, at_risk_days: list[float],
                    *, with_evalue: bool, label: str):
    """Primary method on a matched table: KM, log-rank, Cox clustered on pair, risks."""
    df = _require(df, "matched", name, ["pair_id", "treated", "time", "event"])
    _check_arms(df, name)
    w = _weights_or_none(df, "match_weight")
    fit = _fit_cox(df[["treated"]].astype(float), df, cluster=df["pair_id"].to_numpy(),
                   weights=w)
    if w is None:
        fits = _arm_fits(df)
    else:  # match weights: infinitesimal jackknife clustered on pair, as the Cox variance
        fits = _arm_fits(df, weights=w, cluster=df["pair_id"].to_numpy(), robust=True)
    lr = logrank_test(df["time"], df["event"], df["treated"])
    row = _empty_row(name, "")
    et, ec = _events(df)
    row.update(n=int(len(df)), events_treated=et, events_control=ec, **_hr_fields(fit),
               logrank_chisq=lr.chisq, logrank_p=lr.p)
    if w is None:
        row.update(_risk_fields(fits, horizon))
        rd_text = "Greenwood 95% CI, arms treated as independent"
    else:
        se = clustered_risk_difference_se(fits[ARM_A], fits[ARM_B], horizon)
        row.update(_risk_fields(fits, horizon, se=se))
        rd_text = "infinitesimal-jackknife 95% CI clustered on pair_id (match weights)"
    method = (f"{label} KM by arm with log-log 95% CI; log-rank test"
              f"{' (unweighted)' if w is not None else ''}; {HR_TEXT}"
              f"{' weighted by match_weight' if w is not None else ''}, HR 95% CI from robust "
              f"variance clustered on pair_id; {_fmt_days(horizon)}-day risk difference, "
              f"{rd_text}.")
    if with_evalue:
        pooled = KaplanMeier().fit(df["time"], df["event"], weights=w).risk_at(horizon).risk
        ev = evalue_hr(row["hr"], row["hr_low"], row["hr_high"], outcome_risk=pooled)
        row.update(evalue=ev["evalue"], evalue_ci=ev["evalue_ci"])
        conv = ("HR used as risk ratio (rare outcome)" if ev["rare"] else
                "HR converted to risk ratio by (1-0.5^sqrt(HR))/(1-0.5^sqrt(1/HR)) because the "
                f"pooled {_fmt_days(horizon)}-day risk {pooled:.2f} >= "
                f"{RARE_OUTCOME_THRESHOLD:.2f} (common outcome)")
        method += f" E-value (VanderWeele & Ding) for the HR and the CI limit closest to 1: {conv}."
    row["method"] = method
    return row, _km_frames(name, fits, at_risk_days), _ph_table(name, fit)


def primary_matched(matched: pd.DataFrame, *, horizon: float, at_risk_days: list[float],
                    name: str = "primary_matched"):
    """Primary analysis on the propensity-matched sample (protocol 4.5)."""
    return _matched_method(name, matched, horizon, at_risk_days, with_evalue=True,
                           label="Propensity-matched sample.")


def complete_case(matched_complete_case: pd.DataFrame | None, *, horizon: float,
                  at_risk_days: list[float], name: str = "complete_case"):
    """Primary method on the sample matched on a complete-case propensity score."""
    if matched_complete_case is None or matched_complete_case.empty:
        row = _empty_row(name, "Complete-case matched sample not available (no rows).")
        return (row, pd.DataFrame(columns=KM_COLUMNS), pd.DataFrame(columns=PH_COLUMNS))
    return _matched_method(name, matched_complete_case, horizon, at_risk_days,
                           with_evalue=False,
                           label="Sample matched on a complete-case propensity score.")


def censor_discharge(matched: pd.DataFrame, *, horizon: float, at_risk_days: list[float],
                     name: str = "censor_discharge"):
    """Primary method with patients discharged alive censored at discharge."""
    df = _require(matched, "matched", name,
                  ["pair_id", "treated", "time", "event", "discharge_day", "discharge_status"])
    alive_out = (df["discharge_status"].isin(["home", "transfer"]) & df["discharge_day"].notna()
                 & (df["discharge_day"] < horizon) & (df["discharge_day"] > 0)
                 & (df["event"] == 0))
    df = df.assign(time=np.where(alive_out, df["discharge_day"], df["time"]),
                   event=np.where(alive_out, 0, df["event"]))
    return _matched_method(name, df, horizon, at_risk_days, with_evalue=False,
                           label="Propensity-matched sample, patients discharged alive (home "
                                 "or transfer) censored at discharge.")


# ------------------------------------------------------------------ whole cohort
def unadjusted(cohort: pd.DataFrame, *, horizon: float, at_risk_days: list[float],
               name: str = "unadjusted"):
    """Whole cohort, treatment as the only covariate: biased by design (confounding)."""
    df = _require(cohort, "cohort", name, ["patient_id", "treated", "time", "event"])
    _check_arms(df, name)
    fit = _fit_cox(df[["treated"]].astype(float), df)
    fits = _arm_fits(df)
    row = _empty_row(name, "")
    et, ec = _events(df)
    row.update(n=int(len(df)), events_treated=et, events_control=ec, **_hr_fields(fit),
               **_risk_fields(fits, horizon))
    row["method"] = (f"Whole cohort, no adjustment: BIASED BY DESIGN (confounding by "
                     f"indication; shown for contrast only). {HR_TEXT} with treatment only, "
                     f"model-based variance; crude KM {_fmt_days(horizon)}-day risks, Greenwood "
                     f"95% CI of the difference.")
    return row, _km_frames(name, fits, at_risk_days), _ph_table(name, fit)


def cohort_multivariable(cohort: pd.DataFrame, *, covariates: list[str], horizon: float,
                         log_transform: tuple[str, ...] | list[str] = (), min_missing: int = 1,
                         at_risk_days: list[float], name: str = "cohort_multivariable"):
    """Whole cohort, Cox adjusted for the propensity covariates (conditional HR)."""
    df = _require(cohort, "cohort", name, ["patient_id", "treated", "time", "event"])
    _check_arms(df, name)
    Xc, terms = covariate_design(df, covariates, log_transform, min_missing)
    X = pd.concat([df[["treated"]].astype(float), Xc], axis=1)
    fit = _fit_cox(X, df)
    row = _empty_row(name, "")
    et, ec = _events(df)
    row.update(n=int(len(df)), events_treated=et, events_control=ec, **_hr_fields(fit))
    row["method"] = (f"Whole cohort, {HR_TEXT} adjusted for the {len(covariates)} propensity "
                     f"covariates ({Xc.shape[1]} design columns: median + missing indicator, "
                     "one-hot categories); conditional HR with model-based variance; no "
                     "marginal risks.")
    ph_terms = {"treated": ["treated"], **terms}
    fits = _arm_fits(df)
    return row, _km_frames(name, fits, at_risk_days), _ph_table(name, fit, ph_terms)


def _weighted(name: str, cohort: pd.DataFrame, ps: pd.DataFrame, weight_col: str, label: str,
              horizon: float, at_risk_days: list[float]):
    df = _require(cohort, "cohort", name, ["patient_id", "treated", "time", "event"])
    ps = _require(ps, "ps", name, ["patient_id", weight_col])
    if ps["patient_id"].duplicated().any():
        raise SurvivalDataError(f"analysis {name!r}: ps has duplicated patient_id")
    df = df.merge(ps[["patient_id", weight_col]], on="patient_id", how="left", validate="1:1")
    if df[weight_col].isna().any():
        bad = df.loc[df[weight_col].isna(), "patient_id"].head(5).tolist()
        raise SurvivalDataError(f"analysis {name!r}: no {weight_col} for patients {bad}")
    _check_arms(df, name)
    w = df[weight_col].to_numpy(float)
    pid = df["patient_id"].to_numpy()
    fit = _fit_cox(df[["treated"]].astype(float), df, weights=w, cluster=pid)
    fits = _arm_fits(df, weights=w, cluster=pid, robust=True)
    se = clustered_risk_difference_se(fits[ARM_A], fits[ARM_B], horizon)
    row = _empty_row(name, "")
    et, ec = _events(df)
    row.update(n=int(len(df)), events_treated=et, events_control=ec, **_hr_fields(fit),
               **_risk_fields(fits, horizon, se=se))
    row["method"] = (f"Whole cohort weighted by {label}; {HR_TEXT} with treatment only, robust "
                     f"(sandwich) variance clustered on patient; weighted KM "
                     f"{_fmt_days(horizon)}-day risks with infinitesimal-jackknife 95% CI.")
    return row, _km_frames(name, fits, at_risk_days), _ph_table(name, fit)


def iptw(cohort: pd.DataFrame, ps: pd.DataFrame, *, horizon: float, at_risk_days: list[float],
         name: str = "iptw"):
    """IPTW (stabilised, truncated weights from the ps table) weighted Cox and KM."""
    return _weighted(name, cohort, ps, "iptw", "stabilised truncated IPTW (ps.iptw)", horizon,
                     at_risk_days)


def overlap(cohort: pd.DataFrame, ps: pd.DataFrame, *, horizon: float,
            at_risk_days: list[float], name: str = "overlap"):
    """Overlap-weighted Cox and KM."""
    return _weighted(name, cohort, ps, "overlap_weight", "overlap weights (ps.overlap_weight)",
                     horizon, at_risk_days)


# ------------------------------------------------------------------ time-zero designs
def landmark(extended: pd.DataFrame, *, covariates: list[str], grace_days: float,
             log_transform: tuple[str, ...] | list[str] = (), min_missing: int = 1,
             horizon: float, at_risk_days: list[float], name: str = "landmark"):
    """Landmark at T0 + G (see module docstring for the definition)."""
    df = _require(extended, "extended", name,
                  ["patient_id", "time", "event", "anakinra_start_day"])
    df = df[df["time"] > grace_days].copy()
    if df.empty:
        raise SurvivalDataError(f"analysis {name!r}: nobody in follow-up at the landmark")
    start = df["anakinra_start_day"].to_numpy(float)
    df["treated"] = ((~np.isnan(start)) & (start <= grace_days)).astype(int)
    df["time"] = df["time"] - grace_days
    _check_arms(df, name)
    Xc, terms = covariate_design(df, covariates, log_transform, min_missing)
    X = pd.concat([df[["treated"]].astype(float), Xc], axis=1)
    fit = _fit_cox(X, df)
    fits = _arm_fits(df)
    h = horizon - grace_days
    row = _empty_row(name, "")
    et, ec = _events(df)
    row.update(n=int(len(df)), events_treated=et, events_control=ec, **_hr_fields(fit),
               **_risk_fields(fits, h))
    row["method"] = (f"Landmark at T0 + {_fmt_days(grace_days)} d: extended cohort alive and in "
                     "follow-up at the landmark; exposure = HD-ANK started by the landmark (late "
                     f"starters unexposed); time from the landmark; {HR_TEXT} adjusted for the "
                     f"propensity covariates, model-based variance; risks {_fmt_days(h)} d after "
                     f"the landmark (day {_fmt_days(horizon)} from T0), Greenwood 95% CI.")
    days = [d - grace_days for d in at_risk_days if d >= grace_days]
    km = _km_frames(name, fits, days)
    km["time"] = km["time"] + grace_days  # report on the T0 time scale
    ph_terms = {"treated": ["treated"], **terms}
    return row, km, _ph_table(name, fit, ph_terms)


def clone_censor_weight_analysis(extended: pd.DataFrame, *, covariates: list[str],
                                 log_transform: tuple[str, ...] | list[str] = (), min_missing: int = 1,
                                 grace_days: float, horizon: float, at_risk_days: list[float],
                                 bootstrap: int = 200, seed: int = 4242, weight_grid_days: float | None = None,
                                 workers: int = 1, name: str = "clone_censor_weight"):
    """Clone-censor-weight emulation of the target trial (see :mod:`hdank.ccw`)."""
    df = _require(extended, "extended", name,
                  ["patient_id", "time", "event", "anakinra_start_day"]).reset_index(drop=True)
    Xc, _ = covariate_design(df, covariates, log_transform, min_missing)
    res = clone_censor_weight(df, Xc.to_numpy(float), grace_days, horizon, n_boot=bootstrap,
                              seed=seed, grid=weight_grid_days, workers=workers)
    est = res["estimate"]
    hr = math.exp(est.log_hr)
    se = res["se_log_hr"]
    p = float(2 * stats.norm.sf(abs(est.log_hr) / se)) if se > 0 else NAN
    row = _empty_row(name, "")
    row.update(n=int(len(df)), events_treated=est.events_a, events_control=est.events_b,
               hr=hr, hr_low=res["ci"]["hr"][0], hr_high=res["ci"]["hr"][1], p=p,
               risk_treated=est.risk_a, risk_control=est.risk_b,
               risk_difference=est.risk_difference, rd_low=res["ci"]["risk_difference"][0],
               rd_high=res["ci"]["risk_difference"][1])
    row["method"] = (f"Clone-censor-weight target-trial emulation on the extended cohort, grace "
                     f"{_fmt_days(grace_days)} d: clones of 'HD-ANK within grace' censored at "
                     "the grace end if not started, clones of 'no anakinra' censored at "
                     "anakinra start; IPCW from a logistic model (start by grace) and a Cox "
                     "model (time to start) on the propensity covariates, "
                     + ("updated at every start time" if weight_grid_days is None
                        else f"updated on a {weight_grid_days:g}-day grid") + "; weighted KM "
                     f"{_fmt_days(horizon)}-day risks and weighted Cox HR; 95% percentile "
                     f"bootstrap CI over patients ({res['n_boot_ok']}/{bootstrap} replicates, "
                     f"seed {seed}); p from the bootstrap SE of log HR. Events are clone "
                     "events per strategy.")
    km = _km_frames(name, {ARM_A: est.km[ARM_A], ARM_B: est.km[ARM_B]}, at_risk_days)
    return row, km, pd.DataFrame(columns=PH_COLUMNS)


# ------------------------------------------------------------------ dispatch
def _run_primary(s, **k):
    return primary_matched(k["matched"], horizon=k["horizon"], at_risk_days=k["at_risk_days"])


def _run_complete_case(s, **k):
    matched = k["matched_complete_case"]
    if matched is not None and matched.empty:  # the complete-case propensity model failed
        row = _empty_row("complete_case", "Complete-case propensity score and matching: not estimable "
                         "(the propensity model could not be fitted on the complete cases; "
                         "reason in results/match/complete_case/diagnostics.json).")
        return row, pd.DataFrame(columns=KM_COLUMNS), pd.DataFrame(columns=PH_COLUMNS)
    return complete_case(matched, horizon=k["horizon"], at_risk_days=k["at_risk_days"])


def _run_censor_discharge(s, **k):
    return censor_discharge(k["matched"], horizon=k["horizon"], at_risk_days=k["at_risk_days"])


def _run_unadjusted(s, **k):
    return unadjusted(k["cohort"], horizon=k["horizon"], at_risk_days=k["at_risk_days"])


def _run_multivariable(s, **k):
    return cohort_multivariable(k["cohort"], covariates=k["covariates"], horizon=k["horizon"],
                                log_transform=k["log_transform"], min_missing=k["min_missing"],
                                at_risk_days=k["at_risk_days"])


def _run_iptw(s, **k):
    return iptw(k["cohort"], k["ps"], horizon=k["horizon"], at_risk_days=k["at_risk_days"])


def _run_overlap(s, **k):
    return overlap(k["cohort"], k["ps"], horizon=k["horizon"], at_risk_days=k["at_risk_days"])


def _run_landmark(s, **k):
    return landmark(k["extended"], covariates=k["covariates"], grace_days=k["grace_days"],
                    log_transform=k["log_transform"], min_missing=k["min_missing"],
                    horizon=k["horizon"], at_risk_days=k["at_risk_days"])


def _run_ccw(s, **k):
    return clone_censor_weight_analysis(
        k["extended"], covariates=k["covariates"], grace_days=k["grace_days"],
        log_transform=k["log_transform"], min_missing=k["min_missing"], horizon=k["horizon"], at_risk_days=k["at_risk_days"],
        bootstrap=int(s.get("bootstrap", 200)), seed=int(s.get("seed", 4242)),
        weight_grid_days=s.get("weight_grid_days"), workers=k["workers"])


#: Analysis name (config key) -> runner.
ANALYSES: dict[str, Callable] = {
    "primary_matched": _run_primary,
    "unadjusted": _run_unadjusted,
    "cohort_multivariable": _run_multivariable,
    "iptw": _run_iptw,
    "overlap": _run_overlap,
    "landmark": _run_landmark,
    "censor_discharge": _run_censor_discharge,
    "complete_case": _run_complete_case,
    "clone_censor_weight": _run_ccw,
}


def run_analysis(name: str, settings: dict, *, cohort: pd.DataFrame | None = None,
                 extended: pd.DataFrame | None = None, matched: pd.DataFrame | None = None,
                 ps: pd.DataFrame | None = None,
                 matched_complete_case: pd.DataFrame | None = None,
                 covariates: list[str] | None = None, log_transform: list[str] | None = None,
                 min_missing: int = 1,
                 grace_days: float | None = None, horizon: float = 28.0, at_risk_days: list[float] | None = None,
                 workers: int = 1) -> tuple[dict, pd.DataFrame, pd.DataFrame]:
    """Run one analysis by its config name.

    Parameters
    ----------
    name : str
        One of :data:`ANALYSES`.
    settings : dict
        The analysis' own config (``{}`` or e.g. ``{"bootstrap": 200, "seed": 4242}``).
    cohort, extended, matched, ps, matched_complete_case : DataFrame, optional
        Tables of ``docs/data-model.md``; an analysis ignores those it does not use.
    covariates : list of str, optional
        Propensity covariates (adjusted analyses).
    log_transform : list of str, optional
        Covariates entered as their natural log (``propensity.log_transform``).
    min_missing : int
        Fewest missing values that earn a covariate a missing indicator.
    grace_days : float, optional
        Grace period G in days (landmark, CCW).
    horizon : float
        Risk horizon in days.
    at_risk_days : list of float, optional
        Days of the at-risk table (default 0, 7, 14, 21, 28).
    workers : int
        Processes for a bootstrap (clone-censor-weight); the result does not depend on it.

    Returns
    -------
    estimate_row : dict
    km : DataFrame
    ph : DataFrame
    """
    if name not in ANALYSES:
        raise ValueError(f"unknown analysis {name!r}; known: {sorted(ANALYSES)}")
    if name in {"cohort_multivariable", "landmark", "clone_censor_weight"} and not covariates:
        raise ValueError(f"analysis {name!r} needs the propensity covariates")
    if name in {"landmark", "clone_censor_weight"} and grace_days is None:
        raise ValueError(f"analysis {name!r} needs grace_days")
    days = list(at_risk_days) if at_risk_days is not None else [0, 7, 14, 21, 28]
    row, km, ph = ANALYSES[name](settings or {}, cohort=cohort, extended=extended,
                                 matched=matched, ps=ps,
                                 matched_complete_case=matched_complete_case,
                                 covariates=list(covariates or []),
                                 log_transform=list(log_transform or []), min_missing=int(min_missing),
                                 grace_days=grace_days,
                                 horizon=float(horizon), at_risk_days=days, workers=int(workers))
    row = {c: row.get(c, NAN) for c in ESTIMATE_COLUMNS}
    for c in ESTIMATE_COLUMNS:
        if c in ("n", "events_treated", "events_control"):
            row[c] = int(row[c])
        elif c not in ("analysis", "method"):
            row[c] = float(row[c])
    km = km.reset_index(drop=True)
    ph = ph.reset_index(drop=True)
    if len(km):
        km["analysis"] = name
    if len(ph):
        ph["analysis"] = name
    row["analysis"] = name
    return row, km, ph
