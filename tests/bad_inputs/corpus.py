"""The bad-input corpus: one mutation of the valid extracts per case, with its exact expected outcome.

Each case changes ONE thing in the valid simulated extracts (one file, or for the matching case
one config key) and states what the user must get:

* :class:`Fatal` -- the run stops; the failed job and message fragments that name the file,
  the column and the row(s) (lines of the file: the header is line 1);
* :class:`Quarantined` -- the run goes on; the exact quarantine counts of every table in
  ``results/typed/ingest_summary.json`` and the (line, reason) rows of the mutated table in
  ``results/typed/quarantine/<table>.parquet``;
* :class:`Accepted` -- the run goes on and the stated result holds (e.g. the typed table is
  byte-identical to that of the valid extract).

Expected counts that follow from the data (e.g. the orphaned rows of a quarantined admission)
are computed from the valid extracts, not copied from a run.

``python tests/bad_inputs/corpus.py OUT`` writes every case as a site folder (the six extracts,
one of them mutated) plus ``cases.md``, to look at or to feed to another tool.
"""

from __future__ import annotations

import gzip
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import pandas as pd

if __package__ in (None, ""):  # run as a script
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "scripts"))

from bad_inputs.harness import FMT, Extracts  # noqa: E402

CHILDREN = ("diagnoses", "labs", "medications", "respiratory_support")
HYPERLINK = '=HYPERLINK("http://evil.example/x","click")'
SCRIPT = "<script>alert(1)</script>"
UNKNOWN_ID = "999999999"


# ----------------------------------------------------------------------------- outcomes
@dataclass
class Fatal:
    """The run stops at ``job`` (None: Snakemake refuses before any job) with a message holding ``says``."""

    job: str | None
    says: list[str]
    #: through Snakemake, when its own check stops the run first (e.g. a missing input file)
    snakemake_job: str | None = "same"
    snakemake_says: list[str] | None = None
    kind: str = "fatal"


@dataclass
class Quarantined:
    counts: dict[str, dict[str, int]]  # quarantined rows per table and reason (tables not listed: none)
    rows: dict[int, str]  # line -> reason in the mutated table's quarantine file
    duplicates: dict[str, int] = field(default_factory=dict)  # exact duplicates dropped per table
    kind: str = "quarantine"


@dataclass
class Accepted:
    result: str  # what the user gets, in words
    extra_columns: list[str] = field(default_factory=list)
    identical: tuple[str, ...] = ()  # outputs byte-identical to those of the valid extracts
    check: Callable | None = None  # check(outcome, baseline_root, extracts)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    kind: str = "accepted"


@dataclass(frozen=True)
class Case:
    name: str
    table: str | None  # the mutated extract
    what: str  # the mutation, in words
    mutate: Callable[[Extracts], bytes | None] | None  # the new file's bytes; None deletes it
    expect: Callable[[Extracts], Fatal | Quarantined | Accepted]
    stage: str = "ingest"  # how far the run goes: ingest, cohort or match
    config: dict = field(default_factory=dict)
    snakemake: bool = False  # also run through Snakemake
    report: bool = False  # through Snakemake, also re-render the report and check it

    def __str__(self) -> str:
        return self.name


CASES: list[Case] = []


def case(name: str, table: str | None, what: str, expect, **kwargs):
    """Register the decorated mutation as a case."""
    def register(mutate):
        CASES.append(Case(name, table, what, mutate, expect, **kwargs))
        return mutate
    return register


# ------------------------------------------------------------------------------ helpers
def gz(data: str | bytes) -> bytes:
    return gzip.compress(data.encode("utf-8") if isinstance(data, str) else data, mtime=0)


def csv(df: pd.DataFrame, **kwargs) -> str:
    return df.to_csv(index=False, lineterminator="\n", **kwargs)


def line(index: int) -> int:
    """Line of the file of frame row ``index`` (header = line 1)."""
    return int(index) + 2


def pick(df: pd.DataFrame, mask, k: int = 1, step: int = 97) -> list[int]:
    """``k`` rows where ``mask`` holds, spread over the table (deterministic)."""
    rows = list(df.index[mask])
    chosen = rows[::step][:k] if len(rows[::step]) >= k else rows[:k]
    assert len(chosen) == k, f"only {len(rows)} candidate rows"
    return chosen


def lab_rows(x: Extracts, loinc: str, k: int) -> tuple[pd.DataFrame, list[int]]:
    df = x.frame("labs")
    return df, pick(df, (df["loinc"] == loinc) & (df["value"] != ""), k)


CRP, FERRITIN = "1988-5", "2276-4"


def merge(*parts: dict) -> dict:
    out: dict = {}
    for part in parts:
        for table, reasons in part.items():
            for reason, n in reasons.items():
                out.setdefault(table, {})[reason] = out.get(table, {}).get(reason, 0) + int(n)
    return out


def orphans_of_admissions(x: Extracts, ids) -> dict:
    ids = set(ids)
    out = {}
    for child in CHILDREN:
        n = int(x.frame(child)["admission_id"].isin(ids).sum())
        if n:
            out[child] = {"orphan_key": n}
    return out


def orphans_of_patients(x: Extracts, patient_ids) -> dict:
    adm = x.frame("admissions")
    ids = adm.loc[adm["patient_id"].isin(set(patient_ids)), "admission_id"]
    return merge({"admissions": {"orphan_key": len(ids)}} if len(ids) else {}, orphans_of_admissions(x, ids))


def quarantined(table: str, reason: str, rows: list[int], cascade: dict | None = None) -> Quarantined:
    return Quarantined(merge({table: {reason: len(rows)}}, cascade or {}), {line(i): reason for i in rows})


def edit(table: str, column: str, value: Callable[[pd.DataFrame, list[int]], object] | str,
         mask: Callable[[pd.DataFrame], pd.Series], k: int):
    """A mutation that sets ``column`` of ``k`` rows where ``mask`` holds, and the rows it hits."""
    def rows(x: Extracts) -> list[int]:
        df = x.frame(table)
        return pick(df, mask(df), k)

    def mutate(x: Extracts) -> bytes:
        df = x.frame(table)
        chosen = rows(x)
        df.loc[chosen, column] = value(df, chosen) if callable(value) else value
        return gz(csv(df))
    return mutate, rows


def shift(df: pd.DataFrame, rows: list[int], column: str, delta: str) -> list[str]:
    return [(pd.Timestamp(df.at[i, column]) + pd.Timedelta(delta)).strftime("%Y-%m-%dT%H:%M:%S") for i in rows]


def register(name, table, what, mutate_rows, expect_rows, **kwargs):
    """Register an :func:`edit` mutation whose expectation depends on the rows it hits."""
    mutate, rows = mutate_rows
    CASES.append(Case(name, table, what, mutate, lambda x: expect_rows(x, rows(x)), **kwargs))


# ------------------------------------------------------------------- fatal: file level
case("missing_file", "labs", "labs extract deleted",
     lambda x: Fatal("ingest_table[labs]", ["hospital/labs.csv.gz: file not found. The extract of table "
                                            "'labs' is required"],
                     # through Snakemake the workflow's own check stops it before any job, also
                     # when earlier results would let Snakemake consider the extract unneeded
                     snakemake_job=None,
                     snakemake_says=["hospital/labs.csv.gz: file not found. The extract of table 'labs' is "
                                     "required (extracts.dir = hospital, extracts.format = csv.gz); no job "
                                     "was started."]),
     snakemake=True)(lambda x: None)

case("empty_file", "medications", "medications extract of 0 bytes",
     lambda x: Fatal("ingest_table[medications]", [
         "hospital/medications.csv.gz: file is empty",
         "admission_id, given_time, atc, drug_name, dose, dose_unit, route"]))(lambda x: b"")

case("empty_gzip", "diagnoses", "diagnoses extract: a valid gzip of nothing",
     lambda x: Fatal("ingest_table[diagnoses]", [
         "hospital/diagnoses.csv.gz: file has no header; expected columns admission_id, icd10, recorded_time"]))(
    lambda x: gz(""))

case("header_only", "respiratory_support", "respiratory_support extract with the header line only",
     lambda x: Fatal("ingest_table[respiratory_support]", [
         "hospital/respiratory_support.csv.gz: no data rows, only the header (line 1)",
         "table 'respiratory_support' is empty"]))(
    lambda x: gz(x.text("respiratory_support").splitlines(keepends=True)[0]))

case("missing_column", "patients", "patients without the weight_kg column",
     lambda x: Fatal("ingest_table[patients]", [
         "hospital/patients.csv.gz: column(s) weight_kg missing from the header (line 1)",
         "Found: patient_id, sex, birth_date, height_cm."]))(
    lambda x: gz(csv(x.frame("patients").drop(columns="weight_kg"))))

case("misspelled_column", "admissions", "admissions header: dischrage_status for discharge_status",
     lambda x: Fatal("ingest_table[admissions]", [
         "hospital/admissions.csv.gz: column(s) discharge_status missing from the header (line 1)",
         "'dischrage_status' looks like a misspelling of 'discharge_status'"]))(
    lambda x: gz(csv(x.frame("admissions").rename(columns={"discharge_status": "dischrage_status"}))))

case("duplicated_column", "labs", "labs header with the unit column twice",
     lambda x: Fatal("ingest_table[labs]", [
         "hospital/labs.csv.gz: column(s) unit appear more than once in the header (line 1)"]))(
    lambda x: gz(csv(pd.concat([x.frame("labs"), x.frame("labs")[["unit"]]], axis=1))))

case("wrong_delimiter", "diagnoses", "diagnoses written with ';' as delimiter",
     lambda x: Fatal("ingest_table[diagnoses]", [
         "hospital/diagnoses.csv.gz: column(s) admission_id, icd10, recorded_time missing from the header (line 1)",
         "the header is one column: is the delimiter not a comma?"]))(
    lambda x: gz(csv(x.frame("diagnoses"), sep=";")))


def _latin1_row(x: Extracts) -> int:
    df = x.frame("medications")
    return pick(df, df["drug_name"] == "dexamethasone", 1)[0]


def _latin1(x: Extracts) -> bytes:
    df = x.frame("medications")
    df.loc[_latin1_row(x), "drug_name"] = "dexaméthasone"
    return gzip.compress(csv(df).encode("latin-1"), mtime=0)


case("latin1_bytes", "medications", "one drug_name written in Latin-1 ('dexam\\xe9thasone')",
     lambda x: Fatal("ingest_table[medications]", [
         f"hospital/medications.csv.gz: not valid UTF-8 on line {line(_latin1_row(x))}, column drug_name",
         "iconv -f latin1 -t utf-8"]), snakemake=True)(_latin1)


def _ragged_row(x: Extracts) -> int:
    return _latin1_row(x)


def _ragged(x: Extracts) -> bytes:
    lines = x.text("medications").splitlines(keepends=True)
    n = line(_ragged_row(x)) - 1
    lines[n] = lines[n].replace(",dexamethasone,", ",dexamethasone, oral,")
    return gz("".join(lines))


case("ragged_row", "medications", "an unquoted comma in one drug_name (8 fields on that line)",
     lambda x: Fatal("ingest_table[medications]", [
         f"hospital/medications.csv.gz: row(s) {line(_ragged_row(x))} do not have the 7 fields of the "
         "header (line 1)", "dexamethasone, oral"]))(_ragged)


def _key_rows(x: Extracts, table: str, k: int) -> list[int]:
    df = x.frame(table)
    return pick(df, df.index >= 0, k, step=1009)


def _key_edit(table: str, column: str, k: int, value: Callable[[str], str]):
    def mutate(x: Extracts) -> bytes:
        df = x.frame(table)
        rows = _key_rows(x, table, k)
        df.loc[rows, column] = [value(v) for v in df.loc[rows, column]]
        return gz(csv(df))
    return mutate


def _key_fatal(table: str, column: str, k: int, value: Callable[[str], str], shown: Callable[[str], str]):
    def expect(x: Extracts) -> Fatal:
        df = x.frame(table)
        rows = _key_rows(x, table, k)
        held = ", ".join(repr(shown(value(v))) for v in df.loc[rows, column])
        return Fatal(f"ingest_table[{table}]", [
            f"hospital/{table}.csv.gz: column {column} must hold positive integer ids; "
            f"row(s) {', '.join(str(line(i)) for i in rows)} hold {held}."])
    return expect


for _name, _table, _col, _k, _value, _what, _sm in (
        ("key_not_integer", "labs", "admission_id", 2, lambda v: "A" + v, "admission_id 'A<id>' in two lab rows", True),
        ("key_empty", "medications", "admission_id", 1, lambda v: "", "an empty admission_id in one medication row", False),
        ("key_decimal", "patients", "patient_id", 1, lambda v: v + ".0", "patient_id '<id>.0' in one patient row", False),
        ("key_negative", "diagnoses", "admission_id", 1, lambda v: "-" + v, "a negative admission_id in one diagnosis row", False),
):
    CASES.append(Case(_name, _table, _what, _key_edit(_table, _col, _k, _value),
                      _key_fatal(_table, _col, _k, _value, lambda s: s or "<empty>"), snakemake=_sm))

def _truncated(x: Extracts) -> bytes:
    return x.path("labs").read_bytes()[: x.path("labs").stat().st_size // 2]


def _complete_lines(data: bytes) -> int:
    """Lines of a truncated gzip that decompress completely."""
    import zlib
    return zlib.decompressobj(16 + zlib.MAX_WBITS).decompress(data).count(b"\n")


case("truncated_gzip", "labs", "labs.csv.gz cut at half its size",
     lambda x: Fatal("ingest_table[labs]", [
         "hospital/labs.csv.gz: cannot be read (Truncated compressed stream); it breaks off after line "
         f"{_complete_lines(_truncated(x))}; is the file truncated or not gzip?"]),
     snakemake=True)(_truncated)

case("not_gzip", "diagnoses", "plain CSV under the name diagnoses.csv.gz",
     lambda x: Fatal("ingest_table[diagnoses]", [
         "hospital/diagnoses.csv.gz: cannot be read (zlib inflate failed: incorrect header check)",
         "not gzip?"]))(lambda x: x.text("diagnoses").encode())


# ----------------------------------------------------------------- fatal: the study
case("zero_eligible", "patients", "every birth_date set to 2010-01-01 (all patients children)",
     lambda x: Fatal("build_cohort", [
         f"no eligible patient: 0 of {len(x.frame('admissions'))} admissions meet the protocol",
         "Largest exclusions (attrition rule: admissions): adult "]),
     stage="cohort")(
    lambda x: gz(csv(x.frame("patients").assign(birth_date="2010-01-01"))))

case("hdank_arm_empty", "medications", "every anakinra administration (ATC L04AC03) removed",
     lambda x: Fatal("build_cohort", [
         "the HD-ANK arm is empty: 0 HD-ANK and ",
         f" SOC patients meet the protocol (of {len(x.frame('admissions'))} admissions); "
         "the comparison needs both arms"]), stage="cohort", snakemake=True)(
    lambda x: gz(csv(x.frame("medications").query("atc != 'L04AC03'"))))

CASES.append(Case(
    "no_match_within_caliper", None, "config matching.caliper_sd: 1e-9 (no pair can match)", None,
    lambda x: Fatal("match_cohort", [
        "matching left both matched arms empty: 0 of 110 HD-ANK patients have a SOC match (of 146)",
        "matching.caliper_sd = 1e-09", "Widen matching.caliper_sd"]),
    stage="match", config={"matching": {"caliper_sd": 1e-9}}, snakemake=True))


# -------------------------------------------------------------------------- quarantine
def _dup_key(table: str, key: str, column: str, change: Callable[[str], str], cascade):
    def rows(x: Extracts) -> list[int]:
        df = x.frame(table)
        return pick(df, df[column] != "", 1, step=211)

    def mutate(x: Extracts) -> bytes:
        df = x.frame(table)
        copy = df.loc[rows(x)].copy()
        copy[column] = [change(v) for v in copy[column]]
        return gz(csv(pd.concat([df, copy], ignore_index=True)))

    def expect(x: Extracts) -> Quarantined:
        df = x.frame(table)
        i = rows(x)[0]
        ids = [df.at[i, key]]
        return Quarantined(merge({table: {"duplicate_key": 2}}, cascade(x, ids)),
                           {line(i): "duplicate_key", line(len(df)): "duplicate_key"})
    return mutate, expect


_m, _e = _dup_key("admissions", "admission_id", "admit_time", lambda v: v[:-2] + "59", orphans_of_admissions)
CASES.append(Case("duplicate_admission_key", "admissions",
                  "one admission_id twice with different admit times (last row added)", _m, _e))
_m, _e = _dup_key("patients", "patient_id", "sex", lambda v: {"F": "M"}.get(v, "F"), orphans_of_patients)
CASES.append(Case("duplicate_patient_key", "patients", "one patient_id twice with different sex (last row added)",
                  _m, _e))


def _exact_dups(x: Extracts) -> bytes:
    df = x.frame("labs")
    return gz(csv(pd.concat([df, df.iloc[[3, 30, 300, 3000, 30000]]], ignore_index=True)))


case("exact_duplicate_rows", "labs", "five lab rows repeated verbatim at the end",
     lambda x: Quarantined({}, {}, duplicates={"labs": 5}))(_exact_dups)

_TS_GARBAGE = ["2020-13-45T25:00:00", "yesterday", "05/11/2020 08:00"]
register("unparsable_timestamps", "labs", "taken_time '2020-13-45T25:00:00', 'yesterday', '05/11/2020 08:00'",
         edit("labs", "taken_time", _TS_GARBAGE, lambda d: d["taken_time"] != "", 3),
         lambda x, rows: quarantined("labs", "unparsable_timestamp", rows))
register("mixed_time_zones", "medications", "given_time with offsets +01:00, +02:00 and Z on three rows",
         edit("medications", "given_time", lambda d, r: [d.at[i, "given_time"] + z for i, z in
                                                        zip(r, ["+01:00", "+02:00", "Z"])],
              lambda d: d.index >= 0, 3),
         lambda x, rows: quarantined("medications", "timestamp_with_time_zone", rows))
register("date_only_timestamp", "respiratory_support", "a start_time without time of day",
         edit("respiratory_support", "start_time", lambda d, r: [d.at[i, "start_time"][:10] for i in r],
              lambda d: d.index >= 0, 1),
         lambda x, rows: quarantined("respiratory_support", "unparsable_timestamp", rows))


def _admission_case(name, what, column, value, mask, k, reason):
    def expect(x, rows):
        ids = x.frame("admissions").loc[rows, "admission_id"]
        return quarantined("admissions", reason, rows, orphans_of_admissions(x, ids))
    register(name, "admissions", what, edit("admissions", column, value, mask, k), expect)


_admission_case("discharge_before_admission", "two home discharges one day before admission", "discharge_time",
                lambda d, r: shift(d, r, "admit_time", "-1D"), lambda d: d["discharge_status"] == "home", 2,
                "discharge_before_admission")
_admission_case("died_without_death_time", "two deaths with an empty death_time", "death_time", "",
                lambda d: d["discharge_status"] == "died", 2, "died_without_death_time")
_admission_case("death_after_discharge", "two deaths 2 h after the discharge time", "death_time",
                lambda d, r: shift(d, r, "discharge_time", "2h"),
                lambda d: (d["discharge_status"] == "died") & (d["discharge_time"] != ""), 2,
                "death_after_discharge")
_admission_case("death_time_without_death", "a home discharge with a death_time", "death_time",
                lambda d, r: list(d.loc[r, "discharge_time"]), lambda d: d["discharge_status"] == "home", 1,
                "death_time_without_death")
_admission_case("unparsable_date", "symptom_onset_date '15/10/2022'", "symptom_onset_date", "15/10/2022",
                lambda d: d["symptom_onset_date"] != "", 1, "unparsable_date")
_admission_case("admission_without_patient", f"two admissions of patient_id {UNKNOWN_ID} (not in patients)",
                "patient_id", UNKNOWN_ID, lambda d: d.index >= 0, 2, "orphan_key")


def _patient_case(name, what, column, value, mask, reason):
    def expect(x, rows):
        ids = x.frame("patients").loc[rows, "patient_id"]
        return quarantined("patients", reason, rows, orphans_of_patients(x, ids))
    register(name, "patients", what, edit("patients", column, value, mask, 1), expect)


_patient_case("age_200", "birth_date 1820-06-01 (age about 200)", "birth_date", "1820-06-01",
              lambda d: d.index >= 0, "implausible_value")
_patient_case("weight_7000", "weight_kg 7000", "weight_kg", "7000", lambda d: d["weight_kg"] != "",
              "implausible_value")
_patient_case("invalid_sex", "sex 'X'", "sex", "X", lambda d: d.index >= 0, "invalid_category")


def _simple(name, table, what, column, value, mask, k, reason, **kwargs):
    register(name, table, what, edit(table, column, value, mask, k),
             lambda x, rows: quarantined(table, reason, rows), **kwargs)


_dose = lambda d: (d["dose"] != "") & (d["dose"] != "0")  # noqa: E731
_numeric_lab = lambda d: d["value"] != ""  # noqa: E731
_simple("negative_dose", "medications", "dose '-<dose>' on three rows", "dose",
        lambda d, r: ["-" + v for v in d.loc[r, "dose"]], _dose, 3, "negative_dose")
_simple("nan_dose", "medications", "dose 'NaN'", "dose", "NaN", _dose, 1, "unparsable_value")
_simple("unknown_dose_unit", "medications", "dose_unit 'g' on two rows", "dose_unit", "g", _dose, 2, "unknown_unit")
_simple("unknown_route", "medications", "route 'IM' on two rows", "route", "IM", lambda d: d.index >= 0, 2,
        "invalid_category")
_simple("lowercase_route", "medications", "route 'iv' (lower case)", "route", "iv", lambda d: d["route"] == "IV", 1,
        "invalid_category")
_simple("unknown_lab_unit", "labs", "CRP unit 'mmol/furlong' on three rows", "unit", "mmol/furlong",
        lambda d: (d["loinc"] == CRP) & (d["value"] != ""), 3, "unknown_unit")
_simple("crp_1e9", "labs", "CRP value 1e9 mg/L on two rows", "value", "1e9",
        lambda d: (d["loinc"] == CRP) & (d["value"] != ""), 2, "implausible_value", snakemake=True)
_simple("negative_ferritin", "labs", "ferritin value -5 ng/mL", "value", "-5",
        lambda d: (d["loinc"] == FERRITIN) & (d["value"] != ""), 1, "implausible_value")
_simple("nan_inf_strings", "labs", "lab values 'NaN', 'inf', '-Infinity'", "value", ["NaN", "inf", "-Infinity"],
        _numeric_lab, 3, "unparsable_value")
_simple("decimal_comma", "labs", "lab value '61,5' (decimal comma, quoted)", "value",
        lambda d, r: [v.replace(".", ",") if "." in v else v + ",5" for v in d.loc[r, "value"]],
        _numeric_lab, 1, "unparsable_value")
_simple("missing_taken_time", "labs", "empty taken_time (required) on two rows", "taken_time", "",
        lambda d: d.index >= 0, 2, "missing_required")
_simple("lab_without_admission", "labs", f"admission_id {UNKNOWN_ID} (not in admissions) on two lab rows",
        "admission_id", UNKNOWN_ID, lambda d: d.index >= 0, 2, "orphan_key")
_simple("episode_end_before_start", "respiratory_support", "two episodes ending 1 h before they start", "end_time",
        lambda d, r: shift(d, r, "start_time", "-1h"), lambda d: d["end_time"] != "", 2,
        "episode_end_before_start")


# ---------------------------------------------------------------------------- accepted
TYPED = tuple(f"results/typed/{p}" for p in ("{t}.parquet", "quarantine/{t}.parquet"))


def identical_typed(table: str) -> tuple[str, ...]:
    return tuple(p.format(t=table) for p in TYPED)


case("utf8_bom", "diagnoses", "UTF-8 byte order mark before the header",
     lambda x: Accepted("read as if the BOM were absent: typed table byte-identical",
                        identical=identical_typed("diagnoses") + ("results/typed/counts/diagnoses.json",)),
     snakemake=True)(lambda x: gz("\ufeff" + x.text("diagnoses")))

case("crlf_line_endings", "patients", "Windows line endings (CRLF)",
     lambda x: Accepted("read as if the line endings were LF: typed table byte-identical",
                        identical=identical_typed("patients") + ("results/typed/counts/patients.json",)))(
    lambda x: gz(x.text("patients").replace("\n", "\r\n")))

case("header_blanks", "medications", "blanks around the column names of the header",
     lambda x: Accepted("column names are trimmed: typed table byte-identical",
                        identical=identical_typed("medications") + ("results/typed/counts/medications.json",)))(
    lambda x: gz(x.text("medications").replace(",", " , ", 2)))

case("shuffled_columns", "admissions", "columns in reverse order",
     lambda x: Accepted("columns are found by name: typed table byte-identical",
                        identical=identical_typed("admissions") + ("results/typed/counts/admissions.json",)))(
    lambda x: gz(csv(x.frame("admissions").iloc[:, ::-1])))

case("padded_values", "labs", "every lab value padded with blanks (' 61.5 ')",
     lambda x: Accepted("values are trimmed: typed table byte-identical",
                        identical=identical_typed("labs") + ("results/typed/counts/labs.json",)))(
    lambda x: gz(csv(x.frame("labs").assign(value=lambda d: d["value"].where(d["value"] == "", " " + d["value"] + " ")))))

case("extra_column", "labs", "an extra column 'ward' in labs",
     lambda x: Accepted("the column is ignored and listed in the counts (extra_columns_ignored) and the "
                        "report; typed table byte-identical", extra_columns=["ward"],
                        identical=identical_typed("labs")))(
    lambda x: gz(csv(x.frame("labs").assign(ward="B2"))))


def _unknown_code_check(outcome, baseline: Path, x: Extracts) -> None:
    import json
    counts = json.loads(outcome.read("results/typed/counts/labs.json"))
    base = json.loads((baseline / "results/typed/counts/labs.json").read_text())
    assert counts["rows_unmapped_code"] == base["rows_unmapped_code"] + 3
    typed = pd.read_parquet(outcome.root / "results/typed/labs.parquet")
    hit = typed[typed["loinc"] == "99999-9"]
    assert len(hit) == 3 and hit["concept"].isna().all() and hit["unit"].eq("mg/L").all()


register("unknown_code", "labs", "LOINC 99999-9 (in no code list) on three CRP rows",
         edit("labs", "loinc", "99999-9", lambda d: (d["loinc"] == CRP) & (d["value"] != ""), 3),
         lambda x, rows: Accepted("rows kept with concept null, unit as recorded, counted in "
                                  "rows_unmapped_code (+3); not used by the cohort", check=_unknown_code_check))


def _free_text(table: str, column: str, text: str, mask, k: int):
    mutate, rows = edit(table, column, text, mask, k)

    def check(outcome, baseline: Path, x: Extracts) -> None:
        typed = pd.read_parquet(outcome.root / f"results/typed/{table}.parquet")
        assert (typed[column] == text).sum() == k, f"the {column} text is kept verbatim in the typed table"
    return (mutate, rows), lambda x, r: Accepted(
        f"kept verbatim as data in results/typed/{table}.parquet only; the cohort outputs are "
        "byte-identical to the valid run's, so the text cannot reach the report",
        identical=tuple(f"results/cohort/{n}.parquet" for n in ("cohort", "extended", "attrition",
                                                                 "admission_status")), check=check)


register("formula_injection", "medications", f"drug_name {HYPERLINK} on three rows",
         *_free_text("medications", "drug_name", HYPERLINK, lambda d: d.index >= 0, 3),
         stage="cohort", snakemake=True, report=True)
register("html_injection", "labs", f"result_text {SCRIPT} on two numeric lab rows",
         *_free_text("labs", "result_text", SCRIPT, lambda d: d["value"] != "", 2),
         stage="cohort", snakemake=True, report=True)

#: An extra column whose name is both a spreadsheet formula and HTML.
HOSTILE_NAME = f'=HYPERLINK("http://evil.example/x","{SCRIPT}")'
case("hostile_column_name", "labs", f"an extra column named {HOSTILE_NAME}",
     lambda x: Accepted("ignored like any extra column; its name reaches the report (ingest notes, "
                        "ingest.csv), escaped as HTML in the page and as text (leading ') in the CSV",
                        extra_columns=[HOSTILE_NAME], identical=identical_typed("labs")),
     snakemake=True, report=True)(lambda x: gz(csv(x.frame("labs").assign(**{HOSTILE_NAME: "x"}))))

CASES.sort(key=lambda c: c.name)
assert len({c.name for c in CASES}) == len(CASES)


# ------------------------------------------------------------------------------ writing
def write_case(c: Case, x: Extracts, dest: Path) -> None:
    """The site folder of a case: the valid extracts with the case's one mutation."""
    dest.mkdir(parents=True, exist_ok=True)
    for path in x.dir.glob(f"*.{FMT}"):
        target = dest / path.name
        if target.exists() or target.is_symlink():
            target.unlink()
        target.symlink_to(path)
    if c.table is None:
        return
    target = dest / f"{c.table}.{FMT}"
    target.unlink()
    data = c.mutate(x)
    if data is not None:
        target.write_bytes(data)


def main(out: str) -> None:  # pragma: no cover - tool
    import shutil
    import tempfile

    from bad_inputs.harness import simulate_valid

    root = Path(out)
    with tempfile.TemporaryDirectory() as tmp:
        simulate_valid(Path(tmp) / "valid")
        x = Extracts(Path(tmp) / "valid" / "extracts")
        shutil.copytree(x.dir, root / "valid", dirs_exist_ok=True)
        x = Extracts(root / "valid")
        lines = ["| case | extract | mutation | outcome |", "|---|---|---|---|"]
        for c in CASES:
            write_case(c, x, root / c.name)
            for link in (root / c.name).iterdir():
                if link.is_symlink():
                    target = link.resolve()
                    link.unlink()
                    shutil.copy2(target, link)
            lines.append(f"| {c.name} | {c.table or '(config)'} | {c.what} | {c.expect(x).kind} |")
        (root / "cases.md").write_text("\n".join(lines) + "\n")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1])
