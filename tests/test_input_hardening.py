"""Unit tests of the fixes made while building the bad-input corpus (tests/bad_inputs/)."""

import gzip
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from hdank import codelists, io
from hdank.cohort import CohortResult, check_arms
from hdank.errors import StudyError
from hdank.ingest import ContractError, ingest
from hdank.match_stage import match_files
from hdank.settings import ConfigError, load_schema, validate

CODES_DIR = Path("resources/codelists")
CODES = codelists.load(CODES_DIR)
PATIENTS = "patient_id,sex,birth_date,height_cm,weight_kg\n"
LABS = "admission_id,taken_time,loinc,value,unit,result_text\n"


def write(tmp_path, name, text, encoding="utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


# ------------------------------------------------------------------------- ingest: reading
def test_blanks_around_header_names_are_trimmed(tmp_path):
    path = write(tmp_path, "patients.csv", " patient_id , sex,birth_date,height_cm,weight_kg\n1,F,1950-01-01,160,60\n")
    assert list(ingest(path, "patients", CODES).typed["patient_id"]) == [1]  # was an ArrowKeyError traceback


def test_a_contract_column_twice_in_the_header_is_fatal(tmp_path):
    path = write(tmp_path, "patients.csv", PATIENTS.strip() + ",sex\n1,F,1950-01-01,160,60,M\n")
    with pytest.raises(ContractError, match=r"column\(s\) sex appear more than once in the header \(line 1\)"):
        ingest(path, "patients", CODES)


def test_header_only_is_fatal(tmp_path):
    with pytest.raises(ContractError, match=r"no data rows, only the header \(line 1\); the extract of table "
                                            r"'patients' is empty"):
        ingest(write(tmp_path, "patients.csv", PATIENTS), "patients", CODES)


def test_rows_with_the_wrong_number_of_fields_are_named(tmp_path):
    text = PATIENTS + "1,F,1950-01-01,160,60\n2,F,1950-01-01,160,60,9\n3,M,1950-01-01\n"
    with pytest.raises(ContractError, match=r"row\(s\) 3, 4 do not have the 5 fields of the header"):
        ingest(write(tmp_path, "patients.csv", text), "patients", CODES)
    unterminated = PATIENTS + '1,"F,1950-01-01,160,60\n2,M,1950-01-01,170,70\n'
    with pytest.raises(ContractError, match=r"row\(s\) 2 do not"):  # where the quote opens
        ingest(write(tmp_path, "patients.csv", unterminated), "patients", CODES)


def test_non_utf8_names_line_and_column(tmp_path):
    text = "admission_id,given_time,atc,drug_name,dose,dose_unit,route\n" \
           "1,2020-11-02T10:00:00,H02AB02,dexamethasone,6,mg,IV\n" \
           "1,2020-11-02T10:00:00,H02AB02,dexaméthasone,6,mg,IV\n"
    path = tmp_path / "medications.csv.gz"
    path.write_bytes(gzip.compress(text.encode("latin-1")))
    with pytest.raises(ContractError, match=r"not valid UTF-8 on line 3, column drug_name"):
        ingest(path, "medications", CODES)


def test_a_truncated_gzip_names_the_line_where_it_breaks_off(tmp_path):
    data = gzip.compress((PATIENTS + "1,F,1950-01-01,160,60\n" * 30000).encode(), mtime=0)
    path = tmp_path / "patients.csv.gz"
    path.write_bytes(data[:200])
    with pytest.raises(ContractError, match=r"it breaks off after line \d+; is the file truncated"):
        ingest(path, "patients", CODES)
    path.write_bytes(PATIENTS.encode())
    with pytest.raises(ContractError, match=r"cannot be read \(zlib inflate failed: incorrect header check\); "
                                            r"is the file truncated or not gzip\?"):
        ingest(path, "patients", CODES)


# ---------------------------------------------------------------------- ingest: lab ranges
def test_implausible_lab_values_are_quarantined_in_the_canonical_unit(tmp_path):
    text = LABS + ("1,2020-11-02T06:00:00,1988-5,1e9,mg/L,\n"      # CRP 1e9 mg/L
                   "1,2020-11-02T06:00:00,1988-5,-3,mg/L,\n"       # negative
                   "1,2020-11-02T06:00:00,1988-5,99,mg/dL,\n"      # 990 mg/L: plausible
                   "1,2020-11-02T06:00:00,1988-5,101,mg/dL,\n"     # 1010 mg/L: not
                   "1,2020-11-02T06:00:00,50984-4,5,mmHg,\n"       # P/F ratio 5
                   "1,2020-11-02T06:00:00,99999-9,1e9,mg/L,\n")    # unmapped code: no range
    result = ingest(write(tmp_path, "labs.csv", text), "labs", CODES, parent_keys=pd.Series([1]))
    assert dict(zip(result.quarantine["row"], result.quarantine["reason"])) == {
        2: "implausible_value", 3: "implausible_value", 5: "implausible_value", 6: "implausible_value"}
    assert result.typed["value"].tolist() == [990.0, 1e9]


def test_plausible_range_columns_are_optional_and_must_be_numbers(tmp_path):
    for name in codelists.FILES:
        (tmp_path / f"{name}.csv").write_text((CODES_DIR / f"{name}.csv").read_text())
    loinc = pd.read_csv(tmp_path / "loinc.csv", dtype=str)
    loinc.drop(columns=["plausible_min", "plausible_max"]).to_csv(tmp_path / "loinc.csv", index=False)
    lo, hi = codelists.load(tmp_path).plausible_range(pd.Series(["1988-5"]))
    assert np.isnan(lo[0]) and np.isnan(hi[0])
    loinc.assign(plausible_max=loinc["plausible_max"].where(loinc["code"] != "1988-5", "lots")).to_csv(
        tmp_path / "loinc.csv", index=False)
    with pytest.raises(codelists.CodeListError, match="column plausible_max not a number on lines 5"):
        codelists.load(tmp_path)


# ---------------------------------------------------------------------- cohort and matching
def _result(treated):
    attrition = pd.DataFrame({"rule": ["admissions", "adult", "no_followup"],
                              "excluded": [0, 90, 10 - len(treated)], "remaining": [100, 10, len(treated)]})
    return CohortResult(cohort=pd.DataFrame({"treated": np.asarray(treated, dtype="int8")}), extended=None,
                        attrition=attrition, status=None)


def test_no_eligible_patient_stops_at_the_cohort():
    with pytest.raises(StudyError, match=r"no eligible patient: 0 of 100 admissions meet the protocol. "
                                         r"Largest exclusions \(attrition rule: admissions\): adult 90, no_followup 10"):
        check_arms(_result([]))


def test_an_empty_arm_stops_at_the_cohort():
    with pytest.raises(StudyError, match="the HD-ANK arm is empty: 0 HD-ANK and 3 SOC patients meet the protocol "
                                         r"\(of 100 admissions\)"):
        check_arms(_result([0, 0, 0]))
    with pytest.raises(StudyError, match="the SOC arm is empty: 0 SOC and 2 HD-ANK"):
        check_arms(_result([1, 1]))
    check_arms(_result([0, 1]))


def test_no_matched_pair_stops_at_matching(tmp_path):
    rng = np.random.default_rng(1)
    cohort = pd.DataFrame({"patient_id": np.arange(1, 61), "treated": np.tile([0, 1, 0], 20).astype("int8"),
                           "cov_num_age": rng.normal(60, 10, 60)})
    cohort.to_parquet(tmp_path / "cohort.parquet")
    outs = [str(tmp_path / n) for n in ("ps.parquet", "matched.parquet", "balance.parquet", "d.json")]
    args = dict(cohort=str(tmp_path / "cohort.parquet"), propensity={"covariates": ["cov_num_age"]},
                matching={"caliper_sd": 1e-9}, weights={}, balance={})
    with pytest.raises(StudyError, match=r"matching left both matched arms empty: 0 of 20 HD-ANK patients have a "
                                         r"SOC match \(of 40\)"):
        match_files(**args, ps_out=outs[0], matched_out=outs[1], balance_out=outs[2], diagnostics_out=outs[3])
    assert not any(os.path.exists(p) for p in outs)
    match_files(**args, ps_out=outs[0], matched_out=outs[1], balance_out=outs[2], diagnostics_out=outs[3],
                sensitivity=True)  # the complete-case sensitivity analysis reports it instead
    assert json.loads(open(outs[3]).read())["n_treated_matched"] == 0


# --------------------------------------------------------------------------- config, io
def test_misspelled_key_gets_a_suggestion():
    import yaml

    config = yaml.safe_load(open("config/config.yaml"))
    config["matching"]["calipr_sd"] = 0.3
    with pytest.raises(ConfigError, match=r"config key 'matching.calipr_sd': unknown key; did you mean "
                                          r"'caliper_sd'\?"):
        validate(config, load_schema("workflow/schemas/config.schema.yaml"))


def test_a_write_removes_the_temporary_file_of_a_killed_write(tmp_path):
    stale = tmp_path / ".table.parquet.abc123.tmp"  # what a SIGKILL during a write leaves
    stale.write_bytes(b"half")
    other = tmp_path / ".other.parquet.abc123.tmp"
    other.write_bytes(b"not ours")
    io.write_json({"a": 1}, tmp_path / "table.parquet")
    assert not stale.exists() and other.exists()


def test_a_factor_that_is_not_a_number_is_reported(tmp_path):
    for name in codelists.FILES:
        (tmp_path / f"{name}.csv").write_text((CODES_DIR / f"{name}.csv").read_text())
    units = (tmp_path / "units.csv").read_text().replace("crp,mg/dL,10", "crp,mg/dL,ten")
    (tmp_path / "units.csv").write_text(units)  # was accepted silently (nullable dtype)
    with pytest.raises(codelists.CodeListError, match="column factor not a number on lines 4"):
        codelists.load(tmp_path)
