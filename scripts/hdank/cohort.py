"""Cohort: time zero, eligibility, exposure, outcome, baseline covariates and attrition.

Implements protocol section 3 on the typed tables, with whole-table joins and group-bys (no
per-patient loop).  The rules, in the order of the attrition table, are :data:`RULES`; an
admission is counted under the first rule it fails.  Every threshold comes from the
``study`` section of the config.  Conventions where the protocol leaves a choice:

* "after"/"before" are strict: a NIV episode starting at the same minute as the first
  corticosteroid does not define T0; IMV, ECMO or an immunomodulator at the same minute as T0 is
  not "before T0".
* The HD-ANK grace period is closed: a first dose at exactly T0 + G is within it.
* The corticosteroid dose is the largest calendar-day total (dexamethasone-equivalent mg) of
  the administrations given before T0.
* A baseline value is the last one in [T0 - window, T0] (both ends included); at equal times the
  row later in the extract wins.
* Death at exactly T0 + 28 d is an event; a minute later it is not.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hdank.covariates import COMORBIDITIES, COVARIATES, LAB_COVARIATES
from hdank.errors import StudyError

DAY = pd.Timedelta(days=1)
HOUR = pd.Timedelta(hours=1)

RULES: tuple[tuple[str, str], ...] = (
    ("study_period", "admitted outside the study period"),
    ("adult", "younger than the minimum age at admission"),
    ("covid_confirmed", "COVID-19 not confirmed (no U07.1, no positive SARS-CoV-2 PCR in the window)"),
    ("niv_after_steroid", "no NIV/CPAP episode starting after the first systemic corticosteroid (no T0)"),
    ("steroid_dose", "corticosteroid dose before T0 below the dexamethasone-equivalent minimum"),
    ("first_stay", "not the patient's first stay meeting the inclusion criteria"),
    ("invasive_before_t0", "invasive ventilation or ECMO before T0"),
    ("immunomodulator_before_t0", "anakinra, tocilizumab, sarilumab or baricitinib before T0"),
    ("anakinra_not_high_dose", "anakinra subcutaneous or below the high-dose threshold"),
    ("anakinra_late", "high-dose anakinra started after the grace period"),
    ("no_followup", "no follow-up after T0"),
)
RULE_IDS = tuple(rule for rule, _ in RULES)
INCLUSION = RULE_IDS[:5]

COHORT_COLUMNS = (
    "patient_id", "admission_id", "t0", "treated", "time", "event", "anakinra_start_day",
    "discharge_day", "discharge_status", *COVARIATES,
)


@dataclass
class CohortResult:
    cohort: pd.DataFrame
    extended: pd.DataFrame
    attrition: pd.DataFrame
    status: pd.DataFrame  # admission_id, status (first failed rule or "eligible"): patient-level


def _first_time(events: pd.DataFrame, time_col: str) -> pd.Series:
    """Earliest ``time_col`` per admission_id."""
    return events.groupby("admission_id")[time_col].min()


def age_in_years(birth: pd.Series, when: pd.Series) -> pd.Series:
    """Completed years between two date(time) series."""
    years = when.dt.year - birth.dt.year
    before_birthday = (when.dt.month < birth.dt.month) | (
        (when.dt.month == birth.dt.month) & (when.dt.day < birth.dt.day))
    return (years - before_birthday.astype(int)).astype("float64")


def covid_confirmed(stays: pd.DataFrame, diagnoses: pd.DataFrame, labs: pd.DataFrame,
                    positive_results: list[str], study: dict) -> pd.Series:
    """U07.1 in the stay, or a positive SARS-CoV-2 PCR in [admit - before, admit + after]."""
    coded = diagnoses.loc[diagnoses["concept"] == "covid19", "admission_id"].unique()
    pcr = labs.loc[(labs["concept"] == "sars_cov2_pcr")
                   & labs["result_text"].str.strip().str.lower().isin([p.lower() for p in positive_results]),
                   ["admission_id", "taken_time"]]
    pcr = pcr.merge(stays[["admission_id", "admit_time"]], on="admission_id")
    lag = (pcr["taken_time"] - pcr["admit_time"]) / DAY
    in_window = (lag >= -study["pcr_days_before_admission"]) & (lag <= study["pcr_days_after_admission"])
    tested = pcr.loc[in_window, "admission_id"].unique()
    return stays["admission_id"].isin(coded) | stays["admission_id"].isin(tested)


def time_zero(stays: pd.DataFrame, medications: pd.DataFrame, support: pd.DataFrame) -> pd.DataFrame:
    """First systemic corticosteroid and T0 (first NIV/CPAP start strictly after it)."""
    steroid = _first_time(medications[medications["concept"] == "corticosteroid"], "given_time")
    niv = support.loc[support["concept"] == "niv", ["admission_id", "start_time"]]
    niv = niv.merge(steroid.rename("first_steroid").reset_index(), on="admission_id", how="inner")
    t0 = _first_time(niv[niv["start_time"] > niv["first_steroid"]], "start_time")
    out = pd.DataFrame({"admission_id": stays["admission_id"]})
    out["first_steroid"] = out["admission_id"].map(steroid)
    out["t0"] = out["admission_id"].map(t0)
    return out


def steroid_daily_max(medications: pd.DataFrame, t0: pd.Series) -> pd.Series:
    """Largest calendar-day dexamethasone-equivalent dose before T0, per admission (mg)."""
    med = medications.loc[medications["concept"] == "corticosteroid",
                          ["admission_id", "given_time", "dose", "dex_factor"]]
    med = med[med["given_time"] < med["admission_id"].map(t0)]
    daily = (med.assign(day=med["given_time"].dt.floor("D"), dex=med["dose"] * med["dex_factor"])
             .groupby(["admission_id", "day"])["dex"].sum())
    return daily.groupby(level="admission_id").max()


def anakinra_exposure(medications: pd.DataFrame, stays: pd.DataFrame, study: dict) -> pd.DataFrame:
    """First anakinra time and whether it meets the high-dose IV definition."""
    ana = medications.loc[medications["concept"] == "anakinra", ["admission_id", "given_time", "dose", "route"]]
    first = _first_time(ana, "given_time").rename("anakinra_start")
    ana = ana.join(first, on="admission_id")
    window = (ana["given_time"] <= ana["anakinra_start"] + study["hdank_dose_window_hours"] * HOUR)
    iv_dose = ana[window & (ana["route"] == "IV")].groupby("admission_id")["dose"].sum()
    out = pd.DataFrame({"anakinra_start": first})
    out["iv_dose_first_window"] = iv_dose.reindex(out.index).fillna(0.0)
    weight = stays.set_index("admission_id")["weight_kg"].reindex(out.index)
    needed = np.where(weight.notna(), study["hdank_min_mg_per_kg"] * weight, study["hdank_min_mg_no_weight"])
    out["high_dose"] = out["iv_dose_first_window"] >= needed
    return out


def last_recorded(stays: pd.DataFrame, tables: dict[str, pd.DataFrame]) -> pd.Series:
    """Latest timestamp recorded for each stay in any table."""
    parts = [stays.set_index("admission_id")[["admit_time", "discharge_time", "death_time"]].max(axis=1)]
    for name, cols in (("labs", ["taken_time"]), ("medications", ["given_time"]),
                       ("respiratory_support", ["start_time", "end_time"]), ("diagnoses", ["recorded_time"])):
        for col in cols:
            parts.append(tables[name].groupby("admission_id")[col].max())
    return pd.concat(parts, axis=1).max(axis=1)


def baseline_labs(labs: pd.DataFrame, t0: pd.Series, window_hours: float) -> pd.DataFrame:
    """Last value of each covariate lab in [T0 - window, T0], one column per covariate."""
    lab = labs.loc[labs["concept"].isin(list(LAB_COVARIATES)) & labs["value"].notna(),
                   ["admission_id", "taken_time", "concept", "value"]]
    lab = lab.assign(t0=lab["admission_id"].map(t0))
    lab = lab[(lab["taken_time"] <= lab["t0"]) & (lab["taken_time"] >= lab["t0"] - window_hours * HOUR)]
    last = (lab.reset_index(drop=True).sort_values(["admission_id", "concept", "taken_time"], kind="stable")
            .groupby(["admission_id", "concept"])["value"].last().unstack("concept"))
    return last.reindex(columns=list(LAB_COVARIATES)).rename(columns=LAB_COVARIATES)


def build_cohort(tables: dict[str, pd.DataFrame], study: dict, positive_results: list[str]) -> CohortResult:
    """Apply protocol section 3 to the typed tables.

    Parameters
    ----------
    tables : typed tables by name (see docs/data-model.md); labs may be pre-filtered to the
        concepts the cohort uses.
    study : the ``study`` section of the config.
    positive_results : PCR result texts that mean positive (code list ``pcr_results``).
    """
    stays = tables["admissions"].merge(tables["patients"], on="patient_id", how="left", validate="m:1")
    stays = stays.sort_values(["admission_id"]).reset_index(drop=True)
    meds, support = tables["medications"], tables["respiratory_support"]

    t = time_zero(stays, meds, support).set_index("admission_id")
    t0 = t["t0"].dropna()
    stays["t0"] = stays["admission_id"].map(t0)
    stays["first_steroid"] = stays["admission_id"].map(t["first_steroid"])
    stays["age"] = age_in_years(stays["birth_date"], stays["admit_time"])
    dose = steroid_daily_max(meds, t0)
    stays["steroid_dose"] = stays["admission_id"].map(dose)

    fails: dict[str, pd.Series] = {}
    admit_day = stays["admit_time"].dt.floor("D")
    fails["study_period"] = ~admit_day.between(pd.Timestamp(study["period_start"]), pd.Timestamp(study["period_end"]))
    fails["adult"] = ~(stays["age"] >= study["min_age"])
    fails["covid_confirmed"] = ~covid_confirmed(stays, tables["diagnoses"], tables["labs"], positive_results, study)
    fails["niv_after_steroid"] = stays["t0"].isna()
    fails["steroid_dose"] = ~(stays["steroid_dose"] >= study["steroid_min_dex_mg"])

    included = ~pd.concat([fails[r] for r in INCLUSION], axis=1).any(axis=1)
    order = stays.loc[included].sort_values(["patient_id", "admit_time", "admission_id"])
    first = order.drop_duplicates("patient_id")["admission_id"]
    fails["first_stay"] = included & ~stays["admission_id"].isin(first)

    invasive = support.loc[support["concept"] == "invasive", ["admission_id", "start_time"]]
    inv_first = _first_time(invasive, "start_time")
    fails["invasive_before_t0"] = stays["admission_id"].map(inv_first) < stays["t0"]
    immuno = meds[meds["concept"].isin(["anakinra", "other_immunomodulator"])]
    fails["immunomodulator_before_t0"] = stays["admission_id"].map(_first_time(immuno, "given_time")) < stays["t0"]

    ana = anakinra_exposure(meds, stays, study)
    stays = stays.join(ana, on="admission_id")
    has_ana = stays["anakinra_start"].notna()
    fails["anakinra_not_high_dose"] = has_ana & ~stays["high_dose"].astype("boolean").fillna(False).astype(bool)
    fails["anakinra_late"] = has_ana & (stays["anakinra_start"] > stays["t0"] + study["grace_hours"] * HOUR)

    stays = _outcome(stays, tables, study)
    fails["no_followup"] = ~(stays["end_of_followup"] > stays["t0"])

    flags = pd.concat([fails[r].fillna(False).astype(bool) for r in RULE_IDS], axis=1, keys=RULE_IDS)
    first_fail = flags.idxmax(axis=1).where(flags.any(axis=1), "eligible")
    stays["status"] = first_fail

    attrition = _attrition(first_fail)
    others = flags.drop(columns="anakinra_late").any(axis=1)
    late_only = flags["anakinra_late"] & ~others
    stays["treated"] = has_ana.astype("int8")
    stays = _covariates(stays, tables, study)

    cohort = _select(stays[first_fail == "eligible"])
    extended = pd.concat([cohort.assign(reason=pd.NA),
                          _select(stays[late_only]).assign(reason="anakinra_late")])
    extended["reason"] = extended["reason"].astype("string")
    extended = extended.sort_values("patient_id", kind="stable").reset_index(drop=True)
    status = stays[["admission_id", "patient_id", "status"]].reset_index(drop=True)
    return CohortResult(cohort=cohort, extended=extended, attrition=attrition, status=status)


def _outcome(stays: pd.DataFrame, tables: dict[str, pd.DataFrame], study: dict) -> pd.DataFrame:
    horizon = float(study["followup_days"])
    status = stays["discharge_status"].astype("string")
    last = stays["admission_id"].map(last_recorded(stays, tables))
    end = pd.Series(pd.NaT, index=stays.index, dtype="datetime64[s]")
    end = end.mask(status == "died", stays["death_time"])
    end = end.mask(status.isin(["home", "transfer"]), stays["discharge_time"])
    end = end.mask(status == "in_hospital", last)
    stays["end_of_followup"] = end
    days = (end - stays["t0"]) / DAY
    died_in_window = (status == "died") & (days <= horizon)
    stays["event"] = died_in_window.astype("int8")
    time = np.where(died_in_window, days, np.where(status == "home", horizon, np.minimum(days, horizon)))
    stays["time"] = pd.Series(time, index=stays.index).astype("float64")
    stays["discharge_day"] = (stays["discharge_time"] - stays["t0"]) / DAY
    stays["anakinra_start_day"] = (stays["anakinra_start"] - stays["t0"]) / DAY
    return stays


def _covariates(stays: pd.DataFrame, tables: dict[str, pd.DataFrame], study: dict) -> pd.DataFrame:
    s = stays
    s["cov_num_age"] = s["age"]
    s["cov_cat_sex"] = s["sex"].astype("string").where(s["sex"].isin(["F", "M"]))  # U = unknown: missing
    s["cov_num_bmi"] = s["weight_kg"] / (s["height_cm"] / 100.0) ** 2
    dx = tables["diagnoses"]
    for concept in COMORBIDITIES:
        coded = s["admission_id"].isin(dx.loc[dx["concept"] == concept, "admission_id"])
        if concept == "obesity":
            coded = coded | (s["cov_num_bmi"] >= study["obesity_bmi"])
        s[f"cov_bin_{concept}"] = coded.astype("Int8")
    s["cov_num_days_onset_to_t0"] = (s["t0"] - s["symptom_onset_date"]) / DAY
    s["cov_num_days_admit_to_t0"] = (s["t0"] - s["admit_time"]) / DAY
    s["cov_num_days_steroid_to_t0"] = (s["t0"] - s["first_steroid"]) / DAY
    s["cov_num_steroid_dose"] = s["steroid_dose"]
    t0 = s.set_index("admission_id")["t0"].dropna()
    labs = baseline_labs(tables["labs"], t0, study["baseline_window_hours"])
    s = s.join(labs, on="admission_id")
    meds = tables["medications"]
    rdv = meds.loc[meds["concept"] == "remdesivir", ["admission_id", "given_time"]]
    s["cov_bin_remdesivir"] = (s["admission_id"].map(_first_time(rdv, "given_time")) < s["t0"]).astype("Int8")
    quarter = s["t0"].dt.year.astype("Int64").astype("string") + "Q" + s["t0"].dt.quarter.astype("Int64").astype("string")
    s["cov_cat_period"] = quarter
    return s


def _select(frame: pd.DataFrame) -> pd.DataFrame:
    out = frame.loc[:, list(COHORT_COLUMNS)].copy()
    out["treated"] = out["treated"].astype("int8")
    out["event"] = out["event"].astype("int8")
    out["t0"] = out["t0"].astype("datetime64[s]")
    out["discharge_status"] = out["discharge_status"].astype("string")
    return out.sort_values("patient_id", kind="stable").reset_index(drop=True)


def _attrition(first_fail: pd.Series) -> pd.DataFrame:
    counts = first_fail.value_counts()
    rows = [("admissions", "admissions in the typed extract", 0, int(len(first_fail)))]
    remaining = len(first_fail)
    for rule, description in RULES:
        excluded = int(counts.get(rule, 0))
        remaining -= excluded
        rows.append((rule, description, excluded, remaining))
    return pd.DataFrame(rows, columns=["rule", "description", "excluded", "remaining"]).astype(
        {"excluded": "int64", "remaining": "int64"})


#: Columns of each typed table that the cohort reads (parquet column projection).
READ_COLUMNS = {
    "patients": ["patient_id", "sex", "birth_date", "height_cm", "weight_kg"],
    "admissions": ["admission_id", "patient_id", "admit_time", "discharge_time", "discharge_status",
                   "death_time", "symptom_onset_date"],
    "diagnoses": ["admission_id", "concept", "recorded_time"],
    "labs": ["admission_id", "taken_time", "concept", "value", "result_text"],
    "medications": ["admission_id", "given_time", "concept", "dose", "dex_factor", "route"],
    "respiratory_support": ["admission_id", "concept", "start_time", "end_time"],
}


def read_typed(paths: dict[str, str]) -> dict[str, pd.DataFrame]:
    """Read the typed tables with only the columns the cohort needs."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    tables = {}
    for name, path in paths.items():
        table = pq.read_table(path, columns=READ_COLUMNS[name])
        fields = [pa.field(f.name, pa.timestamp("s")) if pa.types.is_date(f.type)
                  else pa.field(f.name, pa.string()) if pa.types.is_dictionary(f.type) else f
                  for f in table.schema]
        tables[name] = table.cast(pa.schema(fields)).to_pandas(types_mapper={pa.string(): pd.StringDtype()}.get)
    return tables


def check_arms(result: CohortResult) -> None:
    """Stop with a :class:`StudyError` when nobody is eligible or an arm is empty."""
    n_admissions = int(result.attrition["remaining"].iloc[0])
    n_hdank = int(result.cohort["treated"].sum())
    n_soc = int(len(result.cohort)) - n_hdank
    if n_hdank and n_soc:
        return
    rules = result.attrition.iloc[1:]
    top = rules[rules["excluded"] > 0].sort_values("excluded", ascending=False, kind="stable").head(3)
    largest = ", ".join(f"{r.rule} {r.excluded}" for r in top.itertuples()) or "none"
    if not len(result.cohort):
        problem = (f"no eligible patient: 0 of {n_admissions} admissions meet the protocol. Largest "
                   f"exclusions (attrition rule: admissions): {largest}")
    elif not n_hdank:
        problem = (f"the HD-ANK arm is empty: 0 HD-ANK and {n_soc} SOC patients meet the protocol (of "
                   f"{n_admissions} admissions); the comparison needs both arms. Nobody eligible received "
                   f"IV anakinra at the high dose within the grace period: check the anakinra rows of the "
                   f"medications extract, the anakinra code of the atc code list and study.hdank_*")
    else:
        problem = (f"the SOC arm is empty: 0 SOC and {n_hdank} HD-ANK patients meet the protocol (of "
                   f"{n_admissions} admissions); the comparison needs both arms")
    raise StudyError(f"{problem}. Check the extracts (results/typed/ingest_summary.json), the code lists "
                     f"and the study settings of the config.\nAttrition:\n"
                     f"{result.attrition.to_string(index=False)}")


def build_cohort_files(typed: dict[str, str], codelists_dir: str, study: dict,
                       cohort_out: str, extended_out: str, attrition_out: str, status_out: str) -> None:
    """File-level cohort stage (called by the Snakemake adapter)."""
    import logging

    from hdank import codelists, io

    codes = codelists.load(codelists_dir)
    positive = codes.pcr_results.loc[codes.pcr_results["concept"] == "positive", "code"].tolist()
    result = build_cohort(read_typed(typed), study, positive)
    check_arms(result)
    io.write_parquet(result.cohort, cohort_out)
    io.write_parquet(result.extended, extended_out)
    io.write_parquet(result.attrition, attrition_out)
    io.write_parquet(result.status, status_out)
    logging.getLogger(__name__).info("cohort: %d patients (%d HD-ANK); attrition:\n%s",
                                     len(result.cohort), int(result.cohort["treated"].sum()),
                                     result.attrition.to_string(index=False))
