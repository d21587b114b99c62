"""Contract check (make check, rule check_extracts): passes on the synthetic extracts, fails with
the reason on broken ones, summarises what ingest did, and runs nothing else."""

from __future__ import annotations

import copy
import gzip
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from hdank import codelists, contract_check as cc, settings
from hdank import simulate as sim
from hdank.contract import TABLES
from hdank.ingest import IngestResult
from workflow_runner import ROOT, Workflow

CONFIG = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
CODELISTS = ROOT / "resources" / "codelists"
CODES = codelists.load(CODELISTS)


@pytest.fixture(scope="module")
def extracts(tmp_path_factory) -> Path:
    """The synthetic extracts at the default size (what `make run` analyses)."""
    tmp = tmp_path_factory.mktemp("check")
    sim.simulate_from_config(tmp / "extracts", tmp / "key.parquet", tmp / "defects.json",
                             synthetic=copy.deepcopy(CONFIG["synthetic"]), study=CONFIG["study"],
                             codelists_dir=CODELISTS, fmt="csv.gz")
    return tmp / "extracts"


def edited(extracts: Path, dest: Path, table: str, edit) -> Path:
    shutil.copytree(extracts, dest)
    path = dest / f"{table}.csv.gz"
    path.write_bytes(gzip.compress(edit(gzip.decompress(path.read_bytes()).decode()).encode(), mtime=0))
    return dest


def run_check(folder: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """The command `make check EXTRACTS=folder` runs, as a separate process."""
    return subprocess.run([sys.executable, "-m", "hdank.contract_check", "--extracts", str(folder),
                           "--out", str(out), *extra], cwd=ROOT, capture_output=True, text=True, timeout=300)


# ------------------------------------------------------------------------ end to end
def test_synthetic_extracts_pass_and_the_summary_is_written(extracts, tmp_path):
    proc = run_check(extracts, tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"PASSED: the extracts in {extracts} meet the contract")
    text = (tmp_path / "contract_check.txt").read_text()
    html = (tmp_path / "contract_check.html").read_text()
    assert "RESULT: PASSED" in text and "<strong>Passed.</strong>" in html
    for table in TABLES:
        assert f"\n  {table} " in text
    for title in ("Rows per table", "Quarantined rows by reason", "Concepts of the protocol",
                  "Codes not found in any code list (top 20 per column)", "Unit variants per lab concept",
                  "Date range of each timestamp and date column"):
        assert title in text
    # the simulator's defects show up: duplicates, unit variants, unknown units, orphans
    assert "converted (x 10)" in text and "unknown: quarantined" in text and "orphan_key" in text
    assert "ABSENT" not in text
    assert "<script" not in html and 'http-equiv="Content-Security-Policy"' in html


def test_missing_column_fails_with_file_column_and_hint(extracts, tmp_path):
    folder = edited(extracts, tmp_path / "x", "admissions", lambda t: t.replace("admit_time", "admission_time", 1))
    proc = run_check(folder, tmp_path / "out")
    assert proc.returncode == 1
    assert (f"{folder}/admissions.csv.gz: column(s) admit_time missing from the header (line 1) "
            "('admission_time' looks like a misspelling of 'admit_time')") in proc.stderr
    text = (tmp_path / "out" / "contract_check.txt").read_text()
    assert "RESULT: FAILED - the extracts cannot support the study (1 problem(s))" in text
    assert "admissions           -" in text  # the table is listed, unread
    assert "orphan keys not checked: table admissions could not be read" in text
    assert "Failed: the extracts cannot support the study" in (tmp_path / "out" / "contract_check.html").read_text()


def test_no_niv_episode_fails_with_the_reason(extracts, tmp_path):
    def drop_niv(text: str) -> str:
        return "\n".join(line for line in text.split("\n") if line.split(",")[1:2] not in (["niv"], ["cpap"]))

    folder = edited(extracts, tmp_path / "x", "respiratory_support", drop_niv)
    proc = run_check(folder, tmp_path / "out")
    assert proc.returncode == 1
    assert ("required concept not found: NIV/CPAP episode (respiratory_support.support mapped to niv): "
            "no usable row. T0 is the start of the first NIV/CPAP episode after the first corticosteroid, "
            "so no admission would have a T0. Fix: add the codes your export uses for NIV and CPAP to "
            "resources/codelists/support.csv with concept niv.") in proc.stderr
    assert "NIV/CPAP episode" in (tmp_path / "out" / "contract_check.txt").read_text()


def test_niv_under_a_local_code_is_named_in_the_reason(extracts, tmp_path):
    folder = edited(extracts, tmp_path / "x", "respiratory_support",
                    lambda t: t.replace(",niv,", ",NIV-FM,").replace(",cpap,", ",NIV-FM,"))
    proc = run_check(folder, tmp_path / "out")
    assert proc.returncode == 1
    assert "Unmapped codes in respiratory_support.support: 'NIV-FM' (" in proc.stderr


def test_rows_all_quarantined_are_reported_with_their_reason(extracts, tmp_path):
    folder = edited(extracts, tmp_path / "x", "respiratory_support",
                    lambda t: "\n".join(line.replace(",niv,", ",niv,").replace(":00,", ":00+01:00,", 1)
                                        if ",niv," in line or ",cpap," in line else line for line in t.split("\n")))
    proc = run_check(folder, tmp_path / "out")
    assert proc.returncode == 1
    assert "holding it were quarantined (timestamp_with_time_zone" in proc.stderr


def test_no_format_and_no_folder(tmp_path):
    proc = run_check(tmp_path / "nowhere", tmp_path / "out")
    assert proc.returncode == 1 and "folder not found" in proc.stderr
    proc = run_check(tmp_path, tmp_path / "out")
    assert proc.returncode == 1 and "none of patients.csv, patients.csv.gz, patients.parquet found" in proc.stderr


def test_a_stale_summary_does_not_survive_a_failed_check(extracts, tmp_path):
    assert run_check(extracts, tmp_path).returncode == 0
    assert run_check(tmp_path / "nowhere", tmp_path).returncode == 1
    assert not (tmp_path / "contract_check.txt").exists()


# ---------------------------------------------------------------------- snakemake
@pytest.mark.e2e
def test_snakemake_target_runs_nothing_else(extracts, tmp_path):
    flow = Workflow.copy(tmp_path / "flow")
    assert flow.planned_jobs("results/check/contract_check.html") == ["check_extracts", "simulate_extracts"]
    site = tmp_path / "site.yaml"
    site.write_text(yaml.safe_dump({"synthetic": {"enabled": False},
                                    "extracts": {"dir": str(extracts), "format": "csv.gz"}}))
    target = "results/check/contract_check.html"
    assert flow.planned_jobs(target, "--configfile", "config/config.yaml", str(site)) == ["check_extracts"]
    # --config values arrive as strings ('false'); the config validation converts them
    assert flow.planned_jobs(target, "--config", "synthetic={enabled: false}",
                             f"extracts={{dir: {extracts}, format: csv.gz}}") == ["check_extracts"]
    flow.snakemake(target, "--configfile", "config/config.yaml", str(site))
    assert "RESULT: PASSED" in (flow.root / "results/check/contract_check.txt").read_text()
    assert not (flow.root / "results/typed").exists()


@pytest.mark.e2e
def test_snakemake_target_fails_with_the_reason_in_the_log(extracts, tmp_path):
    folder = edited(extracts, tmp_path / "x", "medications", lambda t: t.replace(",L04AC03,", ",KINERET100,"))
    flow = Workflow.copy(tmp_path / "flow", synthetic={"enabled": False},
                         extracts={"dir": str(folder), "format": "csv.gz"})
    proc = flow.snakemake("results/check/contract_check.html", check=False)
    assert proc.returncode != 0
    log = (flow.root / "logs/check_extracts.log").read_text()
    assert "required concept not found: anakinra administration" in log
    assert "RESULT: FAILED" in log  # the whole summary is in the log when the outputs are removed


# ------------------------------------------------------------------------ units
def _result(typed: pd.DataFrame, quarantine: pd.DataFrame | None = None, rows_read: int | None = None) -> IngestResult:
    quarantine = quarantine if quarantine is not None else pd.DataFrame({"row": pd.Series(dtype="int64"),
                                                                        "reason": pd.Series(dtype="string")})
    return IngestResult(typed=typed, quarantine=quarantine,
                        counts={"rows_read": rows_read or len(typed) + len(quarantine), "duplicates_dropped": 0,
                                "quarantined": quarantine["reason"].value_counts().to_dict(),
                                "rows_typed": len(typed), "extra_columns_ignored": []})


def test_unit_variants_and_unmapped_codes_of_hand_written_labs():
    labs = pd.DataFrame({
        "row": [2, 3, 4, 5, 6], "admission_id": [1, 1, 2, 2, 3],
        "loinc": ["1988-5", "1988-5", "1988-5", "99999-9", "94500-6"],
        "value": [85.0, 85.0, None, 3.0, None], "unit": ["mg/L"] * 3 + ["mmol/L", None],
        "unit_raw": ["mg/L", "mg/dL", "mg/L", "mmol/L", None], "result_text": [None] * 4 + ["POSITIV"],
        "concept": ["crp", "crp", "crp", None, "sars_cov2_pcr"],
    }).astype({"loinc": "string", "unit": "string", "unit_raw": "string", "result_text": "string",
               "concept": "string"})
    quarantine = pd.DataFrame({"row": [7], "admission_id": ["1"], "taken_time": ["2020-01-01T00:00:00"],
                               "loinc": ["1988-5"], "value": ["5"], "unit": ["g/furlong"],
                               "result_text": [None], "reason": ["unknown_unit"]})
    checks = {"labs": cc.TableCheck("labs", "labs.csv", _result(labs, quarantine))}
    units = cc.unit_variants(checks, CODES)
    assert units[["concept", "unit", "rows", "outcome"]].values.tolist() == [
        ["crp", "mg/L", 2, "canonical"],
        ["crp", "g/furlong", 1, "unknown: quarantined (add it to units.csv)"],
        ["crp", "mg/dL", 1, "converted (x 10)"],
    ]
    top, totals = cc.unmapped_codes(checks, CODES)
    assert top[["column", "code", "rows", "stays"]].values.tolist() == [
        ["labs.loinc", "99999-9", 1, 1], ["labs.result_text", "POSITIV", 1, 1]]
    assert totals.set_index("column")["rows_unmapped"].to_dict() == {"labs.loinc": 1, "labs.result_text": 1}
    warnings = cc.code_warnings(top)
    assert any("SARS-CoV-2 PCR results that pcr_results.csv does not know" in w and "'POSITIV'" in w
               for w in warnings)


def test_unmapped_codes_are_limited_to_the_top_20_per_column():
    n = 30
    diagnoses = pd.DataFrame({"row": range(2, 2 + n * 2), "admission_id": list(range(n)) * 2,
                              "icd10": [f"Z{i:02d}" for i in range(n)] * 2, "recorded_time": pd.NaT,
                              "concept": pd.Series([pd.NA] * n * 2, dtype="string")})
    diagnoses.loc[0, "icd10"] = "Z29"  # Z29: 3 rows in 2 stays (29 and 0); Z00: 1 row
    top, totals = cc.unmapped_codes({"diagnoses": cc.TableCheck("diagnoses", "d", _result(diagnoses))}, CODES)
    assert len(top) == 20 and top.iloc[0].tolist() == ["icd10", "diagnoses.icd10", "Z29", 3, 2]
    assert totals.iloc[0]["codes_unmapped"] == 30


def test_local_and_group_codes_are_flagged():
    top = pd.DataFrame({"vocabulary": ["atc", "atc", "loinc", "support"],
                        "column": ["medications.atc", "medications.atc", "labs.loinc", "respiratory_support.support"],
                        "code": ["KINERET100", "H02AB07", "CRP-LOCAL", "BiPAP"], "rows": [5, 4, 3, 2],
                        "stays": [1, 1, 1, 1]})
    text = "\n".join(cc.code_warnings(top))
    assert "codes that are not ATC codes and map to no concept: 'KINERET100' (5 rows)" in text
    assert "systemic glucocorticoid" in text and "'H02AB07' (4 rows)" in text
    assert "not LOINC codes" in text and "'CRP-LOCAL'" in text
    assert "'BiPAP' (2 rows)" in text


def test_html_escapes_what_comes_from_the_extract():
    summary = cc.failed_summary("<b>folder</b>", "lists", "bad <script>alert(1)</script>")
    html = cc.render_html(summary)
    assert "<script>" not in html and "&lt;script&gt;" in html and "&lt;b&gt;folder" in html
    assert "RESULT: FAILED" in cc.render_text(summary)


def test_detect_format(tmp_path):
    (tmp_path / "patients.parquet").write_bytes(b"")
    assert cc.detect_format(tmp_path) == "parquet"
    (tmp_path / "patients.csv").write_bytes(b"")
    with pytest.raises(cc.ContractError, match="more than one of"):
        cc.detect_format(tmp_path)


def test_config_strings_from_the_command_line_are_coerced():
    schema = {"type": "object", "properties": {
        "a": {"type": "object", "properties": {"on": {"type": "boolean"}, "n": {"type": "integer"},
                                               "x": {"type": "number"}, "s": {"type": "string"},
                                               "l": {"type": "array", "items": {"type": "number"}}}}}}
    got = settings.coerce_strings({"a": {"on": "False", "n": "12", "x": "0.5", "s": "007", "l": ["1", "99"]}}, schema)
    assert got == {"a": {"on": False, "n": 12, "x": 0.5, "s": "007", "l": [1.0, 99.0]}}
    assert settings.coerce_strings({"a": {"n": "twelve"}}, schema) == {"a": {"n": "twelve"}}  # left for the validator
