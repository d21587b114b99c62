"""Contract check: can a folder of hospital extracts support the study?  (``make check``)

Runs the ingest of every table with the pipeline's own code (:func:`hdank.ingest.ingest`, the
same contract, quarantine rules and code lists as the ``ingest_table`` rule) and nothing else:
no cohort, no matching.  From the ingest results it summarises, per table, the rows read and
quarantined by reason, the codes that no code list maps, the unit variants seen per lab
concept, the date range of every timestamp and date column, and whether each concept the
protocol needs is present at all.

The data cannot support the study (exit status 1 from ``make check``, a failed job under
Snakemake) when

* a code list or an extract breaks the contract (:class:`hdank.ingest.ContractError` or
  :class:`hdank.codelists.CodeListError`: missing file or column, non-integer key, bad
  encoding, ...), or
* a concept without which no admission can enter the cohort or the HD-ANK arm is entirely
  absent: COVID-19 confirmation (U07.1 or a positive SARS-CoV-2 PCR), systemic
  corticosteroids, NIV/CPAP, intravenous anakinra, admissions inside the study period.

Absent covariate concepts (labs, comorbidities, remdesivir, BMI, ...) and absent exclusion
concepts (invasive ventilation, other immunomodulators) are warnings: the study runs, but the
summary says what the absence does to it.

The outputs are local data-quality files (``results/check/``, patient-level by
:mod:`hdank.outputs`): counts, codes and line numbers, no identifiers; the only free text shown
is a PCR result text that ``pcr_results.csv`` does not know.
"""

from __future__ import annotations

import argparse
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import jinja2
import pandas as pd

from hdank import codelists as codelists_mod
from hdank import settings
from hdank.codelists import CodeLists
from hdank.contract import CONTRACT, TABLES, extract_path
from hdank.covariates import COMORBIDITIES, COVARIATES, LAB_COVARIATES
from hdank.errors import StudyError, UserError
from hdank.ingest import ContractError, IngestResult, ingest

TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "workflow" / "templates"
TEMPLATE = "contract_check.html.j2"
FORMATS = ("csv", "csv.gz", "parquet")
TOP_CODES = 20
#: A table with more than this share of its rows quarantined gets a warning.
QUARANTINE_WARN_SHARE = 0.05

REQUIRED, COVARIATE, EXCLUSION, EXPOSURE, INFO = "required", "covariate", "exclusion", "exposure", "detail"

#: Vocabulary of each coded column: (table, column, code list, how codes match).
VOCABULARIES = (
    ("diagnoses", "icd10", "icd10", "prefix match on the code without its dot"),
    ("labs", "loinc", "loinc", "exact match"),
    ("medications", "atc", "atc", "exact match"),
    ("respiratory_support", "support", "support", "exact match, any case"),
)

LAB_LABELS = {"pf_ratio": "PaO2/FiO2 ratio", "crp": "CRP", "ferritin": "ferritin",
              "lymphocytes": "lymphocyte count", "ldh": "LDH", "d_dimer": "D-dimer",
              "creatinine": "creatinine"}
COMORBIDITY_LABELS = {"hypertension": "hypertension", "diabetes": "diabetes", "obesity": "obesity",
                      "ckd": "chronic kidney disease", "chronic_lung": "chronic lung disease",
                      "cardiovascular": "cardiovascular disease", "cancer": "active cancer"}


class ExtractCheckError(StudyError):
    """The extracts cannot support the study; the message lists every reason."""


# ------------------------------------------------------------------------------ concepts
Mask = Callable[[pd.DataFrame, dict], pd.Series]


def _is(concept: str) -> Mask:
    return lambda f, ctx: f["concept"] == concept


def _lab(concept: str) -> Mask:
    return lambda f, ctx: (f["concept"] == concept) & f["value"].notna()


def _pcr_positive(f: pd.DataFrame, ctx: dict) -> pd.Series:
    text = f["result_text"].astype("string").str.strip().str.lower()
    return (f["concept"] == "sars_cov2_pcr") & text.isin(ctx["positive"])


def _anakinra_iv(f: pd.DataFrame, ctx: dict) -> pd.Series:
    return (f["concept"] == "anakinra") & (f["route"].astype("string").str.strip() == "IV")


def _in_period(f: pd.DataFrame, ctx: dict) -> pd.Series:
    start, end = ctx["period"]
    day = pd.to_datetime(f["admit_time"], errors="coerce").dt.floor("D")
    return day.between(pd.Timestamp(start), pd.Timestamp(end))


def _notna(*columns: str) -> Mask:
    return lambda f, ctx: f[list(columns)].notna().all(axis=1)


def _sex_known(f: pd.DataFrame, ctx: dict) -> pd.Series:
    return f["sex"].astype("string").str.strip().isin(["F", "M"])


@dataclass(frozen=True)
class Concept:
    """A concept of the protocol and where the extracts hold it."""

    key: str
    label: str
    level: str
    sources: tuple[tuple[str, Mask], ...]
    where: str                       # in words: table.column -> code list concept
    why: str = ""                    # what the study does with it / what its absence does
    fix: str = ""
    covariate: str | None = None
    quarantine: bool = True          # also count quarantined rows that hold it
    needs: str | None = None         # a concept that must be found for this one to be judged


def concepts(codelists_dir: str = "resources/codelists") -> tuple[Concept, ...]:
    """Every concept the protocol uses, in the order the summary lists them."""
    cl = codelists_dir.rstrip("/")
    out = [
        Concept("covid19", "COVID-19 confirmation (ICD-10 U07.1 or positive SARS-CoV-2 PCR)", REQUIRED,
                (("diagnoses", _is("covid19")), ("labs", _pcr_positive)),
                "diagnoses.icd10 mapped to covid19, or labs.loinc mapped to sars_cov2_pcr with a "
                "result_text mapped to positive",
                "Inclusion needs U07.1 in the stay or a positive PCR around admission, so every "
                "admission would fail rule covid_confirmed.",
                f"map your COVID-19 diagnosis code in {cl}/icd10.csv (concept covid19), your SARS-CoV-2 "
                f"PCR codes in {cl}/loinc.csv (concept sars_cov2_pcr) and their positive result "
                f"texts in {cl}/pcr_results.csv (concept positive)."),
        Concept("covid19_code", "COVID-19 diagnosis (U07.1)", INFO, (("diagnoses", _is("covid19")),),
                "diagnoses.icd10 mapped to covid19"),
        Concept("pcr_positive", "positive SARS-CoV-2 PCR", INFO, (("labs", _pcr_positive),),
                "labs.loinc mapped to sars_cov2_pcr, result_text mapped to positive"),
        Concept("study_period", "admission inside the study period", REQUIRED,
                (("admissions", _in_period),), "admissions.admit_time from study.period_start to "
                "study.period_end",
                "Every admission would fail rule study_period.",
                "check admit_time (ISO-8601, local time) and the config keys study.period_start "
                "and study.period_end.", quarantine=False),
        Concept("corticosteroid", "systemic corticosteroid administration", REQUIRED,
                (("medications", _is("corticosteroid")),), "medications.atc mapped to corticosteroid",
                "T0 is the first NIV/CPAP start after the first systemic corticosteroid, so no "
                "admission would have a T0.",
                f"add your corticosteroid ATC codes to {cl}/atc.csv with concept corticosteroid, "
                "their dexamethasone-equivalence factor and unit mg."),
        Concept("niv", "NIV/CPAP episode", REQUIRED, (("respiratory_support", _is("niv")),),
                "respiratory_support.support mapped to niv",
                "T0 is the start of the first NIV/CPAP episode after the first corticosteroid, so "
                "no admission would have a T0.",
                f"add the codes your export uses for NIV and CPAP to {cl}/support.csv with concept niv."),
        Concept("anakinra", "anakinra administration", REQUIRED, (("medications", _is("anakinra")),),
                "medications.atc mapped to anakinra",
                "The HD-ANK arm is patients given high-dose IV anakinra, so it would be empty.",
                f"add your anakinra code to {cl}/atc.csv with concept anakinra and unit mg."),
        Concept("anakinra_iv", "intravenous anakinra", REQUIRED, (("medications", _anakinra_iv),),
                "anakinra rows with route IV",
                "HD-ANK is intravenous; subcutaneous anakinra only excludes patients (rule "
                "anakinra_not_high_dose), so the HD-ANK arm would be empty.",
                "export intravenous administrations with route IV (the route column takes IV, SC or PO).",
                needs="anakinra"),
        Concept("invasive", "invasive ventilation or ECMO episode", EXCLUSION,
                (("respiratory_support", _is("invasive")),), "respiratory_support.support mapped to invasive",
                "Rule invasive_before_t0 cannot exclude anyone: patients ventilated before T0 would "
                "stay in the cohort.",
                f"if your hospital ventilated COVID-19 patients, add your IMV and ECMO codes to "
                f"{cl}/support.csv with concept invasive."),
        Concept("other_immunomodulator", "tocilizumab, sarilumab or baricitinib", EXCLUSION,
                (("medications", _is("other_immunomodulator")),),
                "medications.atc mapped to other_immunomodulator",
                "Rule immunomodulator_before_t0 only sees anakinra.",
                f"add your codes to {cl}/atc.csv with concept other_immunomodulator if these drugs were used."),
        Concept("weight", "body weight", EXPOSURE, (("patients", _notna("weight_kg")),), "patients.weight_kg",
                "The HD-ANK dose threshold is per kg; without weight every patient gets the fixed "
                "threshold (study.hdank_min_mg_no_weight).",
                "export weight_kg where it is recorded."),
        Concept("sex", "sex (F or M)", COVARIATE, (("patients", _sex_known),), "patients.sex",
                covariate="cov_cat_sex", fix="export sex as F, M or U."),
        Concept("bmi", "height and weight (BMI)", COVARIATE, (("patients", _notna("height_cm", "weight_kg")),),
                "patients.height_cm and weight_kg", covariate="cov_num_bmi",
                fix="export height_cm and weight_kg where they are recorded."),
        Concept("onset", "date of symptom onset", COVARIATE, (("admissions", _notna("symptom_onset_date")),),
                "admissions.symptom_onset_date", covariate="cov_num_days_onset_to_t0",
                fix="export symptom_onset_date where it is recorded.", quarantine=False),
    ]
    for concept in COMORBIDITIES:
        out.append(Concept(f"dx_{concept}", COMORBIDITY_LABELS[concept], COVARIATE,
                           (("diagnoses", _is(concept)),), f"diagnoses.icd10 mapped to {concept}",
                           covariate=f"cov_bin_{concept}",
                           fix=f"add your ICD-10 codes to {cl}/icd10.csv with concept {concept}."))
    for concept, column in LAB_COVARIATES.items():
        out.append(Concept(f"lab_{concept}", LAB_LABELS[concept], COVARIATE, (("labs", _lab(concept)),),
                           f"labs.loinc mapped to {concept}, with a numeric value",
                           covariate=column,
                           fix=f"add your LOINC (or local) code to {cl}/loinc.csv with concept {concept} "
                               f"and any unit variant to {cl}/units.csv."))
    out.append(Concept("remdesivir", "remdesivir administration", COVARIATE,
                       (("medications", _is("remdesivir")),), "medications.atc mapped to remdesivir",
                       covariate="cov_bin_remdesivir",
                       fix=f"add your remdesivir code to {cl}/atc.csv with concept remdesivir."))
    return tuple(out)


# ------------------------------------------------------------------------------ ingest
@dataclass
class TableCheck:
    """Ingest of one table: its result, or the contract error that stopped it."""

    table: str
    path: str
    result: IngestResult | None = None
    error: str | None = None
    note: str | None = None


def detect_format(directory: str | Path) -> str:
    """Format of the extracts in ``directory`` from the file name of the patients table."""
    directory = Path(directory)
    if not directory.is_dir():
        raise ContractError(f"{directory}: folder not found; give the folder that holds the six "
                            f"extracts ({', '.join(TABLES)}).")
    found = [fmt for fmt in FORMATS if (directory / f"patients.{fmt}").exists()]
    if len(found) != 1:
        what = "none of" if not found else "more than one of"
        raise ContractError(f"{directory}: {what} patients.csv, patients.csv.gz, patients.parquet "
                            "found; give the format (FORMAT=csv, csv.gz or parquet).")
    return found[0]


def ingest_tables(paths: dict[str, str], codes: CodeLists) -> dict[str, TableCheck]:
    """Ingest every table in contract order, parents first; a contract error stops only its table."""
    checks: dict[str, TableCheck] = {}
    for table in TABLES:
        spec = CONTRACT[table]
        check = TableCheck(table, str(paths[table]))
        parent_keys = None
        if spec.parent:
            parent = checks.get(spec.parent[0])
            if parent is not None and parent.result is not None:
                parent_keys = parent.result.typed[spec.parent[1]]
            else:
                check.note = f"orphan keys not checked: table {spec.parent[0]} could not be read"
        try:
            check.result = ingest(paths[table], table, codes, parent_keys)
        except ContractError as error:
            check.error = str(error)
        checks[table] = check
    return checks


# ----------------------------------------------------------------------- pure summaries
def ingest_counts(checks: dict[str, TableCheck]) -> pd.DataFrame:
    """Rows read, duplicates, quarantined and kept per table (or the error)."""
    rows = []
    for check in checks.values():
        c = check.result.counts if check.result else {}
        rows.append({
            "table": check.table, "file": check.path,
            "rows_read": c.get("rows_read"), "duplicates_dropped": c.get("duplicates_dropped"),
            "quarantined": sum(c.get("quarantined", {}).values()) if c else None,
            "rows_usable": c.get("rows_typed"),
            "extra_columns_ignored": ", ".join(c.get("extra_columns_ignored", [])),
            "status": "contract error" if check.error else "read",
            "note": check.note or "",
        })
    return pd.DataFrame(rows)


def quarantine_counts(checks: dict[str, TableCheck], first_rows: int = 5) -> pd.DataFrame:
    """Quarantined rows per table and reason, with the first rows (line numbers) of each."""
    parts = []
    for check in checks.values():
        if check.result is None or check.result.quarantine.empty:
            continue
        q = check.result.quarantine.sort_values("row", kind="stable")
        for reason, group in q.groupby("reason", sort=True):
            parts.append({"table": check.table, "reason": str(reason), "rows": len(group),
                          "share": len(group) / max(check.result.counts["rows_read"], 1),
                          "first_rows": ", ".join(str(int(r)) for r in group["row"].iloc[:first_rows])})
    return pd.DataFrame(parts, columns=["table", "reason", "rows", "share", "first_rows"])


def _id_column(table: str) -> str:
    return "patient_id" if table == "patients" else "admission_id"


def unmapped_codes(checks: dict[str, TableCheck], codes: CodeLists, top: int = TOP_CODES
                   ) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Codes of usable rows that no code list maps: top ``top`` per vocabulary, and totals.

    Also the result texts of SARS-CoV-2 PCR rows that ``pcr_results.csv`` does not know (such
    a test never counts as positive).
    """
    tops, totals = [], []

    def add(vocabulary: str, table: str, column: str, values: pd.Series, ids: pd.Series, rows_total: int):
        frame = pd.DataFrame({"code": values.astype("string").str.strip().fillna("(empty)"), "id": ids})
        grouped = frame.groupby("code", sort=True).agg(rows=("id", "size"), stays=("id", "nunique"))
        grouped = grouped.reset_index().sort_values(["rows", "code"], ascending=[False, True], kind="stable")
        totals.append({"vocabulary": vocabulary, "column": f"{table}.{column}", "rows_total": rows_total,
                       "rows_unmapped": int(grouped["rows"].sum()), "codes_unmapped": len(grouped)})
        for _, r in grouped.head(top).iterrows():
            tops.append({"vocabulary": vocabulary, "column": f"{table}.{column}", "code": r["code"],
                         "rows": int(r["rows"]), "stays": int(r["stays"])})

    for table, column, vocabulary, _ in VOCABULARIES:
        check = checks.get(table)
        if check is None or check.result is None:
            continue
        typed = check.result.typed
        miss = typed["concept"].isna()
        add(vocabulary, table, column, typed.loc[miss, column], typed.loc[miss, "admission_id"], len(typed))
    labs = checks.get("labs")
    if labs is not None and labs.result is not None:
        typed = labs.result.typed
        pcr = typed[typed["concept"] == "sars_cov2_pcr"]
        known = codes.pcr_results["code"].str.strip().str.lower()
        text = pcr["result_text"].astype("string").str.strip().str.lower()
        miss = ~text.isin(list(known))
        add("pcr_results", "labs", "result_text", pcr.loc[miss, "result_text"],
            pcr.loc[miss, "admission_id"], len(pcr))
    return (pd.DataFrame(tops, columns=["vocabulary", "column", "code", "rows", "stays"]),
            pd.DataFrame(totals, columns=["vocabulary", "column", "rows_total", "rows_unmapped", "codes_unmapped"]))


def _with_concept(table: str, frame: pd.DataFrame, codes: CodeLists) -> pd.DataFrame:
    """Quarantined (raw text) rows with the concept their code maps to."""
    frame = frame.copy()
    if table == "diagnoses":
        frame["concept"] = codes.concept_of_icd10(frame["icd10"])
    elif table == "labs":
        frame["concept"] = codes.concept_of("loinc", frame["loinc"])
    elif table == "medications":
        frame["concept"] = codes.concept_of("atc", frame["atc"])
    elif table == "respiratory_support":
        frame["concept"] = codes.concept_of("support", frame["support"], case_insensitive=True)
    return frame


def unit_variants(checks: dict[str, TableCheck], codes: CodeLists) -> pd.DataFrame:
    """Units seen per lab concept (and dose units per drug concept), with what ingest did."""
    rows = []
    canonical = codes.canonical_unit()
    factors = {(c, u): float(f) for c, u, f in zip(codes.units["concept"], codes.units["unit"], codes.units["factor"])}
    labs = checks.get("labs")
    if labs is not None and labs.result is not None:
        typed = labs.result.typed
        typed = typed[typed["concept"].isin(list(canonical))]
        seen = typed.assign(unit_raw=typed["unit_raw"].astype("string").str.strip().fillna("(empty)"))
        for (concept, unit), n in seen.groupby(["concept", "unit_raw"], sort=True).size().items():
            factor = factors.get((concept, unit))
            if unit == canonical[concept]:
                what = "canonical"
            elif factor is None:  # rows without a value keep their unit
                what = "no value: kept, unit not used"
            else:
                what = f"converted (x {factor:g})"
            rows.append(("labs", concept, unit, canonical[concept], int(n), what))
        q = labs.result.quarantine
        q = _with_concept("labs", q[q["reason"] == "unknown_unit"], codes)
        q = q.assign(unit=q["unit"].astype("string").str.strip().fillna("(empty)"))
        for (concept, unit), n in q.groupby(["concept", "unit"], sort=True).size().items():
            rows.append(("labs", concept, unit, canonical.get(concept, ""), int(n),
                         "unknown: quarantined (add it to units.csv)"))
    meds = checks.get("medications")
    if meds is not None and meds.result is not None:
        atc = codes.atc.dropna(subset=["unit"])
        expected = dict(zip(atc["concept"], atc["unit"]))
        typed = meds.result.typed
        typed = typed[typed["concept"].notna()]
        for (concept, unit), n in typed.groupby(["concept", "dose_unit"], sort=True).size().items():
            rows.append(("medications", concept, unit, expected.get(concept, ""), int(n), "expected"))
        q = meds.result.quarantine
        q = _with_concept("medications", q[q["reason"] == "unknown_unit"], codes)
        for (concept, unit), n in q.groupby(["concept", "dose_unit"], sort=True).size().items():
            rows.append(("medications", concept, unit, expected.get(concept, ""), int(n),
                         "unexpected: quarantined (atc.csv gives the unit)"))
    out = pd.DataFrame(rows, columns=["table", "concept", "unit", "canonical", "rows", "outcome"])
    return out.sort_values(["table", "concept", "rows", "unit"], ascending=[True, True, False, True],
                           kind="stable").reset_index(drop=True)


def date_ranges(checks: dict[str, TableCheck]) -> pd.DataFrame:
    """First and last value and the number of empty cells of every timestamp and date column."""
    rows = []
    for check in checks.values():
        if check.result is None:
            continue
        typed = check.result.typed
        for col in CONTRACT[check.table].columns:
            if col.kind not in ("timestamp", "date"):
                continue
            values = typed[col.name].dropna()
            fmt = "%Y-%m-%d" if col.kind == "date" else "%Y-%m-%d %H:%M"
            rows.append({"table": check.table, "column": col.name, "kind": col.kind,
                         "values": len(values), "empty": int(typed[col.name].isna().sum()),
                         "first": values.min().strftime(fmt) if len(values) else "",
                         "last": values.max().strftime(fmt) if len(values) else ""})
    return pd.DataFrame(rows, columns=["table", "column", "kind", "values", "empty", "first", "last"])


def concept_presence(checks: dict[str, TableCheck], codes: CodeLists, catalogue: tuple[Concept, ...],
                     period: tuple[str, str] | None = None) -> pd.DataFrame:
    """Usable and quarantined rows of each concept, and in how many stays (or patients) it occurs."""
    positive = codes.pcr_results.loc[codes.pcr_results["concept"] == "positive", "code"]
    ctx = {"positive": list(positive.str.strip().str.lower()), "period": period}
    quarantined = {t: _with_concept(t, c.result.quarantine, codes)
                   for t, c in checks.items() if c.result is not None}
    rows = []
    for concept in catalogue:
        if concept.key == "study_period" and period is None:
            continue
        usable = 0
        ids: set = set()
        q_reasons: dict[str, int] = {}
        unreadable = [t for t, _ in concept.sources if checks.get(t) is None or checks[t].result is None]
        for table, mask in concept.sources:
            if table in unreadable:
                continue
            typed = checks[table].result.typed
            hit = mask(typed, ctx).fillna(False).astype(bool)
            usable += int(hit.sum())
            ids.update(typed.loc[hit, _id_column(table)].tolist())
            if concept.quarantine:
                q = quarantined[table]
                qhit = mask(q, ctx).fillna(False).astype(bool) if len(q) else pd.Series(dtype=bool)
                for reason, n in q.loc[qhit, "reason"].value_counts().items():
                    q_reasons[str(reason)] = q_reasons.get(str(reason), 0) + int(n)
        checked = len(unreadable) < len(concept.sources)
        rows.append({
            "key": concept.key, "concept": concept.label, "level": concept.level,
            "where": concept.where, "covariate": concept.covariate or "",
            "rows": usable if checked else None,
            "ids": len(ids) if checked else None,
            "id_kind": "patients" if concept.sources[0][0] == "patients" else "stays",
            "quarantined": sum(q_reasons.values()),
            "quarantine_reasons": ", ".join(f"{r} {n:,}" for r, n in sorted(q_reasons.items(), key=lambda x: -x[1])),
            "found": (usable > 0) if checked else None,
        })
    return pd.DataFrame(rows)


def _unmapped_hint(top: pd.DataFrame, tables: list[str], n: int = 5) -> str:
    """The most frequent unmapped codes of the tables a concept comes from."""
    sub = top[top["column"].str.split(".").str[0].isin(tables) & (top["vocabulary"] != "pcr_results")]
    if sub.empty:
        return ""
    codes = ", ".join(f"'{c}' ({r:,} rows)" for c, r in zip(sub["code"].head(n), sub["rows"].head(n)))
    return f" Unmapped codes in {' and '.join(sorted(set(sub['column'])))}: {codes}."


#: Shape of a standard code; an unmapped code of another shape is probably a local code.
CODE_SHAPE = {"atc": r"[A-Z][0-9]{2}[A-Z]{2}[0-9]{2}", "loinc": r"[0-9]{1,7}-[0-9]"}
#: ATC groups of the study drugs: an unmapped code in them may be a drug the study should see.
ATC_GROUPS = {"H02AB": "systemic glucocorticoid (corticosteroid, with its dexamethasone-equivalence factor)",
              "L04AC": "interleukin inhibitor (anakinra, tocilizumab, sarilumab)",
              "L04AF": "JAK inhibitor (baricitinib)"}


def code_warnings(unmapped_top: pd.DataFrame, n: int = 5) -> list[str]:
    """Unmapped codes that look like local codes for a study concept."""
    out = []

    def listed(frame: pd.DataFrame) -> str:
        return ", ".join(f"'{c}' ({r:,} rows)" for c, r in zip(frame["code"].head(n), frame["rows"].head(n)))

    for vocabulary, shape in CODE_SHAPE.items():
        sub = unmapped_top[unmapped_top["vocabulary"] == vocabulary]
        local = sub[~sub["code"].str.fullmatch(shape)]
        if len(local):
            out.append(f"{local['column'].iloc[0]}: codes that are not {vocabulary.upper()} codes and map to no "
                       f"concept: {listed(local)}. If one is a local code for a study concept, add it to "
                       f"{vocabulary}.csv.")
    atc = unmapped_top[unmapped_top["vocabulary"] == "atc"]
    for prefix, what in ATC_GROUPS.items():
        group = atc[atc["code"].str.startswith(prefix)]
        if len(group):
            out.append(f"medications.atc: {what} codes not in atc.csv: {listed(group)}; add them if the "
                       "study should count them.")
    support = unmapped_top[unmapped_top["vocabulary"] == "support"]
    if len(support):
        out.append(f"respiratory_support.support: codes that support.csv does not map: {listed(support)}; "
                   "map each to oxygen, hfnc, niv or invasive.")
    pcr = unmapped_top[unmapped_top["vocabulary"] == "pcr_results"]
    if len(pcr):
        out.append(f"labs.result_text: SARS-CoV-2 PCR results that pcr_results.csv does not know (such a test "
                   f"never confirms COVID-19): {listed(pcr)}; add them with concept positive or negative.")
    return out


def verdict(checks: dict[str, TableCheck], presence: pd.DataFrame, catalogue: tuple[Concept, ...],
            quarantine: pd.DataFrame, unmapped_top: pd.DataFrame, covariates: list[str] | tuple[str, ...]
            ) -> tuple[list[str], list[str]]:
    """Fatal problems (the study cannot run) and warnings, as sentences that say what to do."""
    fatal = [check.error for check in checks.values() if check.error]
    warnings: list[str] = []
    notes: dict[str, list[str]] = {}
    for c in checks.values():
        if c.note and not c.error:
            notes.setdefault(c.note, []).append(c.table)
    warnings += [f"{', '.join(tables)}: {note}." for note, tables in notes.items()]
    by_key = {c.key: c for c in catalogue}
    found = dict(zip(presence["key"], presence["found"])) if len(presence) else {}
    for row in presence.itertuples(index=False):
        if row.found is None or row.found:
            continue
        concept = by_key[row.key]
        if concept.needs and not found.get(concept.needs):
            continue  # reported under the concept it needs
        tables = [t for t, _ in concept.sources]
        found_in_quarantine = (f" {row.quarantined:,} row(s) holding it were quarantined "
                               f"({row.quarantine_reasons}).") if row.quarantined else ""
        if concept.level == REQUIRED:
            fatal.append(f"required concept not found: {concept.label} ({concept.where}): no usable row."
                         f"{found_in_quarantine} {concept.why} Fix: {concept.fix}"
                         f"{_unmapped_hint(unmapped_top, tables)}")
        elif concept.level == COVARIATE:
            if concept.covariate not in covariates:
                continue
            effect = ("is 0 for every patient and drops out of the propensity model"
                      if concept.covariate.startswith("cov_bin_") else
                      "is missing for every patient: it drops out of the propensity model and the "
                      "complete-case sensitivity analysis is not estimable")
            warnings.append(f"covariate concept not found: {concept.label} ({concept.where}).{found_in_quarantine} "
                            f"{concept.covariate} {effect}. Fix: {concept.fix} If your hospital does not "
                            f"record it, remove {concept.covariate} from propensity.covariates "
                            "(and propensity.log_transform).")
        elif concept.level in (EXCLUSION, EXPOSURE):
            warnings.append(f"{concept.label} not found ({concept.where}).{found_in_quarantine} "
                            f"{concept.why} Fix: {concept.fix}")
    warnings += code_warnings(unmapped_top)
    for table, group in quarantine.groupby("table", sort=False):
        share = group["share"].sum()
        if share > QUARANTINE_WARN_SHARE:
            reasons = ", ".join(f"{r} {n:,}" for r, n in zip(group["reason"], group["rows"]))
            warnings.append(f"{table}: {share:.0%} of the rows quarantined ({reasons}); see the first rows "
                            "listed per reason.")
    return fatal, warnings


@dataclass
class CheckSummary:
    """Everything the contract check found; rendered as text and HTML."""

    extracts: str
    codelists: str
    tables: pd.DataFrame
    quarantine: pd.DataFrame
    unmapped: pd.DataFrame
    unmapped_totals: pd.DataFrame
    units: pd.DataFrame
    dates: pd.DataFrame
    concepts: pd.DataFrame
    fatal: list[str]
    warnings: list[str] = field(default_factory=list)
    period: tuple[str, str] | None = None

    @property
    def passed(self) -> bool:
        return not self.fatal


def summarise(checks: dict[str, TableCheck], codes: CodeLists, *, extracts: str, codelists_dir: str,
              covariates: list[str] | tuple[str, ...] = COVARIATES,
              period: tuple[str, str] | None = None) -> CheckSummary:
    """The summary of ingested tables (pure: no file is read or written)."""
    catalogue = concepts(codelists_dir)
    quarantine = quarantine_counts(checks)
    top, totals = unmapped_codes(checks, codes)
    presence = concept_presence(checks, codes, catalogue, period)
    fatal, warnings = verdict(checks, presence, catalogue, quarantine, top, covariates)
    return CheckSummary(extracts=extracts, codelists=codelists_dir, tables=ingest_counts(checks),
                        quarantine=quarantine, unmapped=top, unmapped_totals=totals,
                        units=unit_variants(checks, codes), dates=date_ranges(checks),
                        concepts=presence, fatal=fatal, warnings=warnings, period=period)


def failed_summary(extracts: str, codelists_dir: str, error: str) -> CheckSummary:
    """The summary when nothing could be ingested (the code lists themselves are broken)."""
    empty = pd.DataFrame()
    return CheckSummary(extracts=extracts, codelists=codelists_dir, tables=empty, quarantine=empty,
                        unmapped=empty, unmapped_totals=empty, units=empty, dates=empty,
                        concepts=empty, fatal=[error])


# ----------------------------------------------------------------------------- render
def _n(x) -> str:
    if x is None or (isinstance(x, float) and pd.isna(x)):
        return "-"
    return f"{int(x):,}"


def _text_table(frame: pd.DataFrame, columns: dict[str, str], indent: str = "  ") -> list[str]:
    """Fixed-width text table of ``frame`` with ``columns`` (name -> header)."""
    if frame.empty:
        return [f"{indent}(none)"]
    cells = [[h for h in columns.values()]]
    for row in frame.to_dict("records"):
        cells.append([_n(row[c]) if isinstance(row[c], (int, float)) and not isinstance(row[c], bool)
                      else ("yes" if row[c] is True else "NO" if row[c] is False else str(row[c]))
                      for c in columns])
    widths = [max(len(r[i]) for r in cells) for i in range(len(columns))]
    return [indent + "  ".join(v.ljust(w) for v, w in zip(r, widths)).rstrip() for r in cells]


def _presence_rows(summary: CheckSummary) -> pd.DataFrame:
    c = summary.concepts.copy()
    if c.empty:
        return c
    c["status"] = [("not checked" if f is None else "found" if f else "ABSENT") for f in c["found"]]
    c["level_text"] = [lvl + (f" ({cov})" if cov else "") for lvl, cov in zip(c["level"], c["covariate"])]
    c["in"] = [("-" if i is None or pd.isna(i) else f"{int(i):,} {k}") for i, k in zip(c["ids"], c["id_kind"])]
    c["quarantined_text"] = [(f"{q:,} ({r})" if q else "") for q, r in zip(c["quarantined"], c["quarantine_reasons"])]
    return c


def render_text(summary: CheckSummary) -> str:
    """The plain-text summary (also written to the rule's log)."""
    out = ["Contract check of the extracts", "=" * 30,
           f"Extracts:   {summary.extracts}", f"Code lists: {summary.codelists}"]
    if summary.period:
        out.append(f"Study period: {summary.period[0]} to {summary.period[1]}")
    out.append("")
    if summary.passed:
        out.append("RESULT: PASSED - the extracts meet the contract and hold every required concept.")
    else:
        out.append(f"RESULT: FAILED - the extracts cannot support the study ({len(summary.fatal)} problem(s)):")
        out += [f"  {i}. {msg}" for i, msg in enumerate(summary.fatal, 1)]
    if summary.warnings:
        out += ["", f"Warnings ({len(summary.warnings)}):"] + [f"  - {w}" for w in summary.warnings]
    sections = [
        ("Rows per table", summary.tables,
         {"table": "table", "rows_read": "read", "duplicates_dropped": "duplicates", "quarantined": "quarantined",
          "rows_usable": "usable", "status": "status", "extra_columns_ignored": "extra columns ignored"}),
        ("Quarantined rows by reason (first rows = line numbers in the file, header = line 1)", summary.quarantine,
         {"table": "table", "reason": "reason", "rows": "rows", "first_rows": "first rows"}),
        ("Concepts of the protocol", _presence_rows(summary),
         {"concept": "concept", "status": "status", "level_text": "role", "rows": "usable rows", "in": "in",
          "quarantined_text": "quarantined"}),
        (f"Codes not found in any code list (top {TOP_CODES} per column)", summary.unmapped,
         {"column": "column", "code": "code", "rows": "rows", "stays": "stays"}),
        ("Unit variants per lab concept and dose units per drug", summary.units,
         {"table": "table", "concept": "concept", "unit": "unit", "canonical": "canonical", "rows": "rows",
          "outcome": "what ingest does"}),
        ("Date range of each timestamp and date column", summary.dates,
         {"table": "table", "column": "column", "first": "first", "last": "last", "values": "values",
          "empty": "empty"}),
    ]
    for title, frame, columns in sections:
        if frame is None or (frame.empty and summary.tables.empty):
            continue
        out += ["", title, "-" * len(title)] + _text_table(frame, columns)
        if title.startswith("Codes not found") and not summary.unmapped_totals.empty:
            out.append("  Totals: " + "; ".join(
                f"{r.column} {r.rows_unmapped:,} of {r.rows_total:,} rows, {r.codes_unmapped:,} codes"
                for r in summary.unmapped_totals.itertuples()))
            out.append("  Unmapped ICD-10 codes are expected (only comorbidities and U07.1 are mapped);")
            out.append("  unmapped LOINC, ATC and support codes are worth a look.")
    return "\n".join(out) + "\n"


def render_html(summary: CheckSummary, template_dir: str | Path = TEMPLATE_DIR) -> str:
    """The HTML summary (Jinja2, autoescaped, self-contained)."""
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(template_dir)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    env.filters["n"] = _n

    def records(frame: pd.DataFrame) -> list[dict]:
        return [] if frame is None or frame.empty else frame.astype(object).where(frame.notna(), None).to_dict("records")

    return env.get_template(TEMPLATE).render(
        s=summary, top=TOP_CODES, tables=records(summary.tables), quarantine=records(summary.quarantine),
        concepts=records(_presence_rows(summary)), unmapped=records(summary.unmapped),
        unmapped_totals=records(summary.unmapped_totals), units=records(summary.units),
        dates=records(summary.dates))


# ------------------------------------------------------------------------- file level
def check_extract_files(raw: dict[str, str], codelists_dir: str, html_out: str, txt_out: str, *,
                        covariates: list[str] | tuple[str, ...] = COVARIATES,
                        period: tuple[str, str] | list[str] | None = None,
                        extracts: str | None = None) -> CheckSummary:
    """Check the extracts ``raw`` (table -> file), write the summaries, raise if the study cannot run.

    Raises
    ------
    ExtractCheckError
        After writing both summaries, when a contract error or an absent required concept means
        the data cannot support the study; the message lists every reason.
    """
    from hdank import io

    log = logging.getLogger(__name__)
    extracts = extracts or str(Path(next(iter(raw.values()))).parent)
    period = tuple(period) if period else None
    try:
        codes = codelists_mod.load(codelists_dir)
    except codelists_mod.CodeListError as error:
        summary = failed_summary(extracts, codelists_dir, str(error))
    else:
        checks = ingest_tables(raw, codes)
        summary = summarise(checks, codes, extracts=extracts, codelists_dir=codelists_dir,
                            covariates=covariates, period=period)
    text = render_text(summary)
    io.write_text(text, txt_out)
    io.write_text(render_html(summary), html_out)
    log.info("contract check summary:\n%s", text)
    if not summary.passed:
        raise ExtractCheckError(
            f"the extracts in {extracts} cannot support the study ({len(summary.fatal)} problem(s)):\n"
            + "\n".join(f"  {i}. {msg}" for i, msg in enumerate(summary.fatal, 1)))
    return summary


def main(argv: list[str] | None = None) -> int:
    """``make check``: ``python -m hdank.contract_check [--extracts DIR] [--format F] ...``."""
    parser = argparse.ArgumentParser(prog="python -m hdank.contract_check", description=__doc__.split("\n")[0])
    parser.add_argument("--extracts", default="",
                        help="folder with one file per table (default: extracts.dir of the config "
                             "when synthetic.enabled is false)")
    parser.add_argument("--format", default="", help="csv, csv.gz or parquet (default: from the file names)")
    parser.add_argument("--codelists", default="", help="code-list folder (default: codelists of the config)")
    parser.add_argument("--out", default="results/check", help="folder of contract_check.html and .txt")
    parser.add_argument("--configfile", nargs="+", default=["config/config.yaml"],
                        help="config files, merged in order as Snakemake does (study period, "
                             "propensity covariates, code lists, extracts)")
    args = parser.parse_args(argv)
    html, txt = f"{args.out}/contract_check.html", f"{args.out}/contract_check.txt"
    for stale in (html, txt):  # a summary of an earlier check must not outlive this one
        Path(stale).unlink(missing_ok=True)
    try:
        config = settings.load_config(args.configfile)
        extracts, fmt = args.extracts, args.format
        if not extracts:
            if config["synthetic"]["enabled"]:
                raise UserError("give the folder of the extracts: make check EXTRACTS=/path/to/extracts "
                                "(or a config file with synthetic.enabled: false and extracts.dir)")
            extracts, fmt = config["extracts"]["dir"], fmt or config["extracts"]["format"]
        fmt = fmt or detect_format(extracts)
        if fmt not in FORMATS:
            raise UserError(f"format {fmt!r} unknown; use one of {', '.join(FORMATS)}.")
        raw = {table: extract_path(extracts, table, fmt) for table in TABLES}
        summary = check_extract_files(
            raw, args.codelists or config["codelists"], html, txt,
            covariates=config["propensity"]["covariates"],
            period=(config["study"]["period_start"], config["study"]["period_end"]), extracts=extracts)
    except UserError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        if Path(txt).exists() and Path(html).exists():
            print(f"Summary: {html} and {txt}", file=sys.stderr)
        return 1
    print(f"PASSED: the extracts in {extracts} meet the contract and hold every required concept.")
    for warning in summary.warnings:
        print(f"WARNING: {warning}")
    print(f"Summary: {html} and {txt}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
