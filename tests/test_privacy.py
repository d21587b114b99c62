"""Privacy: every output has a sensitivity label; releasable outputs leak nothing.

The workflow runs with pseudonymised identifiers, which are 63-bit numbers that cannot occur
by chance, so a search of every releasable file for each cohort id is a real test of leaks.
"""

import pandas as pd
import pytest

from hdank.outputs import RELEASABLE, releasable_problems, sensitivity
from workflow_runner import Workflow

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    import os

    os.environ["HDANK_ID_KEY"] = "privacy-test-key-0123456789"
    try:
        flow = Workflow.copy(tmp_path_factory.mktemp("privacy"), privacy={"pseudonymise_ids": True},
                             survival={"analyses": {"clone_censor_weight": {"bootstrap": 20}}})
        flow.snakemake()
    finally:
        del os.environ["HDANK_ID_KEY"]
    return flow


def individual_values(flow):
    cohort = pd.read_parquet(flow.root / "results/cohort/cohort.parquet")
    admissions = pd.read_parquet(flow.root / "results/typed/admissions.parquet")
    admissions = admissions[admissions["admission_id"].isin(cohort["admission_id"])]
    ids = {str(v) for col in ("patient_id", "admission_id") for v in cohort[col]}
    assert all(len(v) >= 12 for v in ids)  # pseudonyms: long numbers that cannot occur by chance
    times = pd.concat([cohort["t0"], admissions["admit_time"], admissions["discharge_time"],
                       admissions["death_time"]]).dropna()
    stamps = {t.strftime(fmt) for t in times for fmt in ("%Y-%m-%dT%H:%M", "%Y-%m-%d %H:%M")}
    return ids, stamps


def test_every_output_has_a_sensitivity_label(run):
    files = [p.relative_to(run.root) for folder in ("results", "logs") for p in (run.root / folder).rglob("*")
             if p.is_file()]
    assert files
    labels = {str(f): sensitivity(f) for f in files}  # raises for an unlabelled output
    assert labels["results/report/report.html"] == RELEASABLE
    assert labels["results/cohort/cohort.parquet"] != RELEASABLE


def test_releasable_outputs_hold_no_identifier_timestamp_or_small_count(run):
    ids, stamps = individual_values(run)
    releasable = [p for p in (run.root / "results").rglob("*")
                  if p.is_file() and sensitivity(p.relative_to(run.root)) == RELEASABLE]
    assert any(p.name == "report.html" for p in releasable) and any(p.suffix == ".csv" for p in releasable)
    problems = [msg for p in releasable for msg in releasable_problems(p, ids, stamps)]
    assert problems == []


def test_the_check_catches_a_leak(run, tmp_path):
    ids, stamps = individual_values(run)
    leak = tmp_path / "leak.csv"
    some_id, some_time = sorted(ids)[0], sorted(stamps)[0]
    leak.write_text(f"patient_id,n,day_0\n{some_id},3,10\nx,{some_time},9\n")
    problems = releasable_problems(leak, ids, stamps)
    assert any("identifier column patient_id" in p for p in problems)
    assert any(some_id in p for p in problems) and any(some_time in p for p in problems)
    assert any("unrounded count '3'" in p for p in problems)
    assert any("at-risk column day_0 holds '10'" in p for p in problems)
