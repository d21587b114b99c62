"""End to end: the workflow on the simulator's default extracts recovers the answer key exactly."""

import json

import numpy as np
import pandas as pd
import pytest

from workflow_runner import Workflow

pytestmark = pytest.mark.e2e

ANSWER_KEY_COVARIATES = ["cov_num_age", "cov_num_bmi", "cov_num_crp", "cov_num_ferritin",
                         "cov_num_lymphocytes", "cov_num_steroid_dose"]


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    flow = Workflow.copy(tmp_path_factory.mktemp("default"))
    flow.snakemake("results/cohort/cohort.parquet", "results/typed/ingest_summary.json")
    return flow


def read(flow, path):
    return pd.read_parquet(flow.root / path)


def test_cohort_equals_answer_key(default_run):
    cohort = read(default_run, "results/cohort/cohort.parquet")
    key = read(default_run, "results/synthetic/answer_key.parquet")
    eligible = key[key["status"] == "eligible"].sort_values("patient_id").reset_index(drop=True)
    assert len(cohort) == 256
    assert (cohort["treated"] == 0).sum() == 146 and (cohort["treated"] == 1).sum() == 110
    assert cohort["patient_id"].tolist() == eligible["patient_id"].tolist()
    assert cohort["admission_id"].tolist() == eligible["admission_id"].tolist()
    assert cohort["treated"].tolist() == (eligible["arm"] == "hdank").astype(int).tolist()
    assert (cohort["t0"].to_numpy() == pd.to_datetime(eligible["t0"]).to_numpy()).all()
    assert cohort["event"].tolist() == eligible["event"].astype(int).tolist()
    np.testing.assert_allclose(cohort["time"], eligible["time"], rtol=0, atol=1e-9)
    np.testing.assert_allclose(cohort["anakinra_start_day"], eligible["anakinra_start_day"], atol=1e-9)
    for col in ANSWER_KEY_COVARIATES:  # unit conversions recover the true values (1e-9 relative)
        np.testing.assert_allclose(cohort[col], eligible[col], rtol=1e-9, err_msg=col)
    assert ((cohort["time"] > 0) & (cohort["time"] <= 28)).all()


def test_every_admission_gets_the_answer_key_status(default_run):
    key = read(default_run, "results/synthetic/answer_key.parquet")
    ours = read(default_run, "results/cohort/admission_status.parquet")
    merged = key.merge(ours, on="admission_id", how="left", suffixes=("_key", "_ours"))
    quarantined = merged["status_key"] == "quarantined"
    assert merged.loc[quarantined, "status_ours"].isna().all()
    mismatch = merged.loc[~quarantined & (merged["status_key"] != merged["status_ours"])]
    assert mismatch.empty, mismatch.head()
    attrition = read(default_run, "results/cohort/attrition.parquet")
    expected = key.loc[~key["status"].isin(["quarantined", "eligible"]), "status"].value_counts()
    got = attrition.set_index("rule")["excluded"]
    assert {r: int(got[r]) for r in expected.index} == expected.to_dict()
    assert attrition["remaining"].iloc[-1] == 256
    for rule in attrition["rule"].iloc[1:]:
        assert got[rule] > 0, f"rule {rule} not exercised at the default size"


def test_extended_cohort_holds_the_late_starters(default_run):
    extended = read(default_run, "results/cohort/extended.parquet")
    key = read(default_run, "results/synthetic/answer_key.parquet")
    late = key.loc[key["status"] == "anakinra_late", "patient_id"].sort_values().tolist()
    assert extended.loc[extended["reason"] == "anakinra_late", "patient_id"].tolist() == late
    assert (extended.loc[extended["reason"] == "anakinra_late", "anakinra_start_day"] > 2).all()


def test_ingest_counts_equal_the_injected_defects(default_run):
    summary = json.loads((default_run.root / "results/typed/ingest_summary.json").read_text())
    defects = json.loads((default_run.root / "results/synthetic/defects.json").read_text())
    for table, injected in defects.items():
        counts = summary["tables"][table]
        assert counts["duplicates_dropped"] == injected.get("duplicate_row", 0), table
        expected = {k: v for k, v in injected.items() if k not in ("duplicate_row", "unit_variant")}
        assert counts["quarantined"] == expected, table
        if "unit_variant" in injected:
            assert counts["unit_converted"] == injected["unit_variant"]


def test_pseudonymised_run_gives_the_same_cohort_without_hospital_ids(tmp_path, default_run, monkeypatch):
    monkeypatch.setenv("HDANK_ID_KEY", "test-key-not-a-secret-0123456789")
    flow = Workflow.copy(tmp_path / "pseudo", privacy={"pseudonymise_ids": True})
    flow.snakemake("results/cohort/cohort.parquet")
    plain = read(default_run, "results/cohort/cohort.parquet")
    pseudo = read(flow, "results/cohort/cohort.parquet")
    assert len(pseudo) == len(plain) == 256
    assert not set(pseudo["patient_id"]) & set(plain["patient_id"])
    assert not set(pseudo["admission_id"]) & set(plain["admission_id"])
    by_t0 = lambda df: df.drop(columns=["patient_id", "admission_id"]).sort_values(["t0", "time"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(by_t0(pseudo), by_t0(plain))
    for table in ("patients", "admissions", "labs"):
        typed = read(flow, f"results/typed/{table}.parquet")
        original = read(default_run, f"results/typed/{table}.parquet")
        for col in ("patient_id", "admission_id"):
            if col in typed:
                assert not set(typed[col]) & set(original[col]), (table, col)
    monkeypatch.delenv("HDANK_ID_KEY")
    proc = flow.snakemake("--dry-run", check=False)
    assert proc.returncode != 0 and "HDANK_ID_KEY is not set" in proc.stdout + proc.stderr


def test_plain_snakemake_applies_the_default_profile(tmp_path):
    """`snakemake` in the repository uses workflow/profiles/default (via the top-level `profiles`
    link: Snakemake looks for profiles/default next to the Snakefile), so rerun-incomplete and the
    rerun triggers hold for a user who types only `snakemake --cores 4`."""
    flow = Workflow.copy(tmp_path / "flow")
    dry = flow.snakemake("--dry-run")
    assert "Using workflow specific profile profiles/default" in dry.stdout + dry.stderr
