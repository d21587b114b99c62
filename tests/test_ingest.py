"""Ingest on hand-written extracts: one row per defect and quarantine reason."""

import gzip
import textwrap

import pandas as pd
import pytest

from hdank import codelists
from hdank.ingest import ContractError, ingest

CODES = codelists.load("resources/codelists")

ADMISSIONS = """\
admission_id,patient_id,admit_time,discharge_time,discharge_status,death_time,symptom_onset_date
1,10,2020-11-01T08:00:00,2020-11-10T12:00:00,home,,2020-10-25
2,10,2020-11-05T08:00:00,2020-11-01T12:00:00,home,,
3,11,2020-11-05T08:00,2020-11-20T12:00:00,died,2020-11-21T12:00:00,
3,11,2020-11-05T08:00,2020-11-20T12:00:00,died,2020-11-21T12:00:00,
4,12,2020-11-05T08:00:00+01:00,,in_hospital,,
5,99,2020-11-05T08:00:00,,in_hospital,,
6,12,2020-13-05T08:00:00,,in_hospital,,
7,12,2020-11-05T08:00:00,,dead,,
8,12,2020-11-05T08:00:00,2020-11-09T08:00:00,died,,
9,12,2020-11-05T08:00:00,2020-11-09T08:00:00,died,2020-11-09T08:00:00,05/11/2020
10,12,2020-11-05T08:00:00,2020-11-09T08:00:00,home,,
10,12,2020-11-06T08:00:00,2020-11-09T08:00:00,home,,
11,12,,2020-11-09T08:00:00,home,,
"""

LABS = """\
admission_id,taken_time,loinc,value,unit,result_text
1,2020-11-02T06:00:00,1988-5,8.5,mg/dL,
1,2020-11-02T06:00:00,1988-5,85,mg/L,
1,2020-11-02T06:00:00,2276-4,900,ug/L,
1,2020-11-02T06:00:00,731-0,800,/uL,
1,2020-11-02T06:00:00,1988-5,85,g/furlong,
1,2020-11-02T06:00:00,1988-5,n/a,mg/L,
1,2020-11-02T06:00:00,1988-5,NaN,mg/L,
1,2020-11-02T06:00:00,1988-5,inf,mg/L,
1,2020-11-02T06:00:00,94500-6,,,positive
1,2020-11-02T06:00:00,99999-9,3.2,mmol/L,
77,2020-11-02T06:00:00,1988-5,85,mg/L,
1,2020-11-02T06:00:00,1988-5,85,mg/L,
"""


def write(tmp_path, name, text, gz=False):
    path = tmp_path / (name + (".csv.gz" if gz else ".csv"))
    data = textwrap.dedent(text).encode()
    path.write_bytes(gzip.compress(data, mtime=0) if gz else data)
    return path


def reasons(result):
    return dict(zip(result.quarantine["row"], result.quarantine["reason"]))


def test_admissions_quarantine_reasons_by_row(tmp_path):
    result = ingest(write(tmp_path, "admissions", ADMISSIONS), "admissions", CODES,
                    parent_keys=pd.Series([10, 11, 12]))
    assert reasons(result) == {
        3: "discharge_before_admission",
        4: "death_after_discharge",
        6: "timestamp_with_time_zone",
        7: "orphan_key",
        8: "unparsable_timestamp",
        9: "invalid_category",
        10: "died_without_death_time",
        11: "unparsable_date",
        12: "duplicate_key",
        13: "duplicate_key",
        14: "missing_required",
    }
    assert result.counts["duplicates_dropped"] == 1
    assert result.counts["rows_read"] == 13
    assert list(result.typed["admission_id"]) == [1]
    assert result.typed["admit_time"].iloc[0] == pd.Timestamp("2020-11-01 08:00")


def test_labs_units_converted_and_bad_rows_quarantined(tmp_path):
    result = ingest(write(tmp_path, "labs", LABS, gz=True), "labs", CODES, parent_keys=pd.Series([1]))
    assert reasons(result) == {6: "unknown_unit", 7: "unparsable_value", 8: "unparsable_value",
                               9: "unparsable_value", 12: "orphan_key"}
    assert result.counts["duplicates_dropped"] == 1
    typed = result.typed.set_index("row")
    assert typed.loc[2, ["concept", "value", "unit", "unit_raw"]].tolist() == ["crp", 85.0, "mg/L", "mg/dL"]
    assert typed.loc[4, ["concept", "value", "unit"]].tolist() == ["ferritin", 900.0, "ng/mL"]
    assert typed.loc[5, "value"] == pytest.approx(0.8) and typed.loc[5, "unit"] == "10^9/L"
    assert typed.loc[10, "result_text"] == "positive" and typed.loc[10, "concept"] == "sars_cov2_pcr"
    assert pd.isna(typed.loc[11, "concept"]) and typed.loc[11, "value"] == 3.2  # unmapped code kept
    assert result.counts["unit_converted"] == 3
    assert result.counts["rows_unmapped_code"] == 1


def test_medications_negative_dose_route_and_steroid_factor(tmp_path):
    text = """\
    admission_id,given_time,atc,drug_name,dose,dose_unit,route
    1,2020-11-02T10:00:00,H02AB04,methylprednisolone,32,mg,IV
    1,2020-11-02T10:00:00,H02AB02,dexamethasone,-6,mg,IV
    1,2020-11-02T10:00:00,H02AB02,dexamethasone,6,mg,IM
    1,2020-11-02T10:00:00,L04AC03,anakinra,0.4,g,IV
    1,2020-11-02T10:00:00,L04AC03,"=HYPERLINK(""http://x"")",100,mg,SC
    """
    result = ingest(write(tmp_path, "medications", text), "medications", CODES, parent_keys=pd.Series([1]))
    assert reasons(result) == {3: "negative_dose", 4: "invalid_category", 5: "unknown_unit"}
    typed = result.typed.set_index("row")
    assert typed.loc[2, ["concept", "dex_factor"]].tolist() == ["corticosteroid", 0.1875]
    assert typed.loc[6, "drug_name"] == '=HYPERLINK("http://x")'  # free text kept as text


def test_respiratory_support_episode_end_before_start(tmp_path):
    text = """\
    admission_id,support,start_time,end_time
    1,NIV,2020-11-02T10:00:00,2020-11-03T10:00:00
    1,oxygen,2020-11-02T10:00:00,2020-11-01T10:00:00
    1,cpap,2020-11-04T10:00:00,
    """
    result = ingest(write(tmp_path, "respiratory_support", text), "respiratory_support", CODES,
                    parent_keys=pd.Series([1]))
    assert reasons(result) == {3: "episode_end_before_start"}
    assert list(result.typed["concept"]) == ["niv", "niv"]


def test_patients_implausible_values(tmp_path):
    text = """\
    patient_id,sex,birth_date,height_cm,weight_kg
    1,F,1950-02-03,160,60
    2,X,1950-02-03,160,60
    3,M,1826-02-03,170,70
    4,M,1950-02-03,170,7000
    5,U,1950-02-03,,
    """
    result = ingest(write(tmp_path, "patients", text), "patients", CODES)
    assert reasons(result) == {3: "invalid_category", 4: "implausible_value", 5: "implausible_value"}
    assert list(result.typed["patient_id"]) == [1, 5]


@pytest.mark.parametrize("text, message", [
    ("patient_id,sex,birth_date,height_cm\n1,F,1950-01-01,160\n", "column(s) weight_kg missing"),
    ("patient_id,sex,birth_date,height_cm,wieght_kg\n1,F,1950-01-01,160,60\n",
     "'wieght_kg' looks like a misspelling of 'weight_kg'"),
    ("patient_id;sex;birth_date;height_cm;weight_kg\n1;F;1950-01-01;160;60\n", "is the delimiter not a comma?"),
    ("patient_id,sex,birth_date,height_cm,weight_kg\n1,F,1950-01-01,160,60\nP2,F,1950-01-01,160,60\n",
     "column patient_id must hold positive integer ids; row(s) 3 hold 'P2'"),
    ("patient_id,sex,birth_date,height_cm,weight_kg\n1,F,1950-01-01,160,60\n,F,1950-01-01,160,60\n",
     "row(s) 3 hold '<empty>'"),
    ("", "file is empty"),
])
def test_fatal_problems_name_file_column_and_rows(tmp_path, text, message):
    path = tmp_path / "patients.csv"
    path.write_text(text)
    with pytest.raises(ContractError) as err:
        ingest(path, "patients", CODES)
    assert str(path) in str(err.value) and message in str(err.value)


def test_missing_file_and_latin1(tmp_path):
    with pytest.raises(ContractError, match="file not found"):
        ingest(tmp_path / "patients.csv", "patients", CODES)
    path = tmp_path / "patients.csv"
    path.write_bytes("patient_id,sex,birth_date,height_cm,weight_kg\n1,F,1950-01-01,160,60\n2,F,1950-01-01,160,6\xe9\n".encode("latin-1"))
    with pytest.raises(ContractError, match=r"not valid UTF-8 on line 3"):
        ingest(path, "patients", CODES)


def test_bom_and_extra_column_are_accepted(tmp_path):
    path = tmp_path / "patients.csv"
    path.write_bytes("\ufeffpatient_id,sex,birth_date,height_cm,weight_kg,ward\n1,F,1950-01-01,160,60,B2\n".encode())
    result = ingest(path, "patients", CODES)
    assert list(result.typed["patient_id"]) == [1]
    assert result.counts["extra_columns_ignored"] == ["ward"]


def test_truncated_gzip_is_fatal(tmp_path):
    data = gzip.compress(("patient_id,sex,birth_date,height_cm,weight_kg\n" + "1,F,1950-01-01,160,60\n" * 5000).encode(), mtime=0)
    path = tmp_path / "patients.csv.gz"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ContractError, match="cannot be"):
        ingest(path, "patients", CODES)


def test_parquet_input_matches_csv(tmp_path):
    csv = write(tmp_path, "admissions", ADMISSIONS.splitlines()[0] + "\n" + ADMISSIONS.splitlines()[1] + "\n")
    from_csv = ingest(csv, "admissions", CODES)
    pq_path = tmp_path / "admissions.parquet"
    df = pd.read_csv(csv)
    for c in ["admit_time", "discharge_time", "death_time", "symptom_onset_date"]:
        df[c] = pd.to_datetime(df[c])
    df.to_parquet(pq_path)
    from_pq = ingest(pq_path, "admissions", CODES)
    pd.testing.assert_frame_equal(from_csv.typed.drop(columns="row"), from_pq.typed.drop(columns="row"))


def test_pseudonymised_ids_are_keyed_consistent_and_still_link(tmp_path):
    from hdank.errors import UserError
    from hdank.pseudonymise import key_from_env, keyed_ids

    key = b"0123456789abcdef-secret"
    ids = pd.Series([10, 11, 10, 12])
    first, again = keyed_ids(ids, key), keyed_ids(ids, key)
    assert (first == again).all() and first.iloc[0] == first.iloc[2] and first.nunique() == 3
    assert (first > 0).all() and not set(first) & {10, 11, 12}
    assert not (keyed_ids(ids, b"another-key-0123456") == first).any()
    patients = ingest(write(tmp_path, "patients", "patient_id,sex,birth_date,height_cm,weight_kg\n10,F,1950-01-01,160,60\n"),
                      "patients", CODES, id_key=key)
    admissions = ingest(write(tmp_path, "admissions", ADMISSIONS), "admissions", CODES,
                        parent_keys=patients.typed["patient_id"], id_key=key)
    assert list(admissions.typed["admission_id"]) == list(keyed_ids(pd.Series([1]), key))
    assert list(admissions.typed["patient_id"]) == list(patients.typed["patient_id"])
    assert "10" not in set(admissions.quarantine["patient_id"])  # quarantine holds pseudonyms too
    with pytest.raises(UserError, match="HDANK_ID_KEY is not set"):
        key_from_env({})
