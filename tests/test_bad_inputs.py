"""The bad-input corpus (tests/bad_inputs/corpus.py): every case end to end, asserted exactly.

Every case runs **in process** (the stage functions the rules' adapters call, with the rules'
file layout, logs and exit status; see tests/bad_inputs/harness.py).  The cases marked
``snakemake=True`` also run **through Snakemake** on a copy of a site workflow that has already
run on the valid extracts: there the test also checks the exit status, that the failed job left
no output behind, and that every other earlier result is untouched (same bytes, same mtime);
the cases marked ``report=True`` then re-render the report and check what reaches it.
"""

import csv
import json
from pathlib import Path

import markupsafe
import pandas as pd
import pytest

from bad_inputs.corpus import CASES, HOSTILE_NAME, Accepted, Fatal, Quarantined, write_case
from bad_inputs.harness import (FMT, SITE_DIR, baseline_in_process, copy_site, job_outputs, load_config,
                                run_in_process, run_snakemake, snapshot, snakemake_site, valid_extracts)
from shared_runs import sha256, temporary_files

from hdank.contract import TABLES

SNAKEMAKE_CASES = [c for c in CASES if c.snakemake]
TARGETS = {
    "ingest": ["results/typed/ingest_summary.json"],
    "cohort": ["results/typed/ingest_summary.json", "results/cohort/cohort.parquet"],
    "match": ["results/typed/ingest_summary.json", "results/match/diagnostics.json"],
}


@pytest.fixture(scope="module")
def extracts(tmp_path_factory):
    return valid_extracts(tmp_path_factory)


@pytest.fixture(scope="module")
def baseline(tmp_path_factory, extracts):
    return baseline_in_process(tmp_path_factory, extracts)


@pytest.fixture(scope="module")
def site(tmp_path_factory, extracts):
    return snakemake_site(tmp_path_factory, extracts)


def test_the_corpus_covers_every_outcome(extracts):
    kinds = {}
    for c in CASES:
        kinds.setdefault(c.expect(extracts).kind, []).append(c.name)
    assert len(CASES) >= 30 and len(SNAKEMAKE_CASES) >= 8
    assert {k: len(v) >= 5 for k, v in kinds.items()} == {"fatal": True, "quarantine": True, "accepted": True}
    assert all(c.table in TABLES or c.table is None for c in CASES)


# ------------------------------------------------------------------------------- checks
def check(case, expected, outcome, before: Path, extracts) -> None:
    """Assert the expected outcome of ``case``; ``before`` holds the results of the valid extracts."""
    assert temporary_files(outcome.root) == []
    if isinstance(expected, Fatal):
        assert outcome.returncode != 0, f"{case}: the run should have stopped"
        for fragment in expected.says:
            assert fragment in outcome.message, f"{case}: {fragment!r} not in:\n{outcome.message[-3000:]}"
        if expected.job:
            for rel in job_outputs(expected.job):
                assert not (outcome.root / rel).exists(), f"{case}: {rel} left behind by the failed job"
        return
    assert outcome.returncode == 0, outcome.message[-3000:]
    summary = json.loads(outcome.read("results/typed/ingest_summary.json"))
    counts = expected.counts
    duplicates = expected.duplicates if isinstance(expected, Quarantined) else {}
    for table in TABLES:
        got = summary["tables"][table]
        assert got["quarantined"] == counts.get(table, {}), f"{case}: {table}"
        assert got["duplicates_dropped"] == duplicates.get(table, 0), f"{case}: {table}"
        # nothing silently dropped: every row read is typed, quarantined or a counted duplicate
        assert got["rows_read"] == got["rows_typed"] + got["duplicates_dropped"] + sum(got["quarantined"].values())
    total = {}
    for reasons in counts.values():
        for reason, n in reasons.items():
            total[reason] = total.get(reason, 0) + n
    assert summary["quarantined_total"] == dict(sorted(total.items()))
    if isinstance(expected, Quarantined):
        if case.table:
            q = pd.read_parquet(outcome.root / f"results/typed/quarantine/{case.table}.parquet")
            assert dict(zip(q["row"].astype(int), q["reason"])) == expected.rows
        return
    assert isinstance(expected, Accepted)
    if case.table:
        assert summary["tables"][case.table]["extra_columns_ignored"] == expected.extra_columns
    for rel in expected.identical:
        assert sha256(outcome.root / rel) == sha256(before / rel), f"{case}: {rel} differs"
    if expected.check:
        expected.check(outcome, before, extracts)


# ---------------------------------------------------------------------------- in process
@pytest.mark.parametrize("case", CASES, ids=str)
def test_case_in_process(case, tmp_path, extracts, baseline):
    write_case(case, extracts, tmp_path / SITE_DIR)
    changed = frozenset([case.table] if case.table else [])
    outcome = run_in_process(tmp_path, load_config(case.config), case.stage, reuse=baseline, changed=changed)
    expected = case.expect(extracts)
    check(case, expected, outcome, baseline, extracts)
    if isinstance(expected, Fatal):
        assert outcome.failed_job == expected.job
        assert outcome.ran[-1] == expected.job, "the run stops at the failed job"


# ----------------------------------------------------------------------------- snakemake
def _may_change(failed_job: str | None) -> tuple[str, ...]:
    """Results that jobs before the failed one may legitimately rewrite in the same run."""
    if failed_job == "build_cohort":  # the mutated extract's ingest and everything it feeds
        return ("results/typed/", "results/benchmarks/ingest_table/", "results/benchmarks/summarise_ingest")
    return ()


@pytest.mark.e2e
@pytest.mark.parametrize("case", SNAKEMAKE_CASES, ids=str)
def test_case_through_snakemake(case, tmp_path, extracts, site):
    flow = copy_site(site, tmp_path / "site")
    before = snapshot(flow.root)
    if case.table:
        write_case(case, extracts, tmp_path / "case")
        target = flow.root / SITE_DIR / f"{case.table}.{FMT}"
        target.unlink()
        mutated = tmp_path / "case" / f"{case.table}.{FMT}"
        if mutated.exists():
            target.write_bytes(mutated.read_bytes())
    if case.config:
        flow.set_config(**case.config)
    if case.report:  # the report is rendered in the same run (see check_report)
        rules = REPORT_RULES if case.stage == "cohort" else [r for r in REPORT_RULES if r != "build_cohort"]
        outcome = run_snakemake(flow, *TARGETS[case.stage], "results/report/report.html",
                                "--allowed-rules", *rules)
    else:
        outcome = run_snakemake(flow, *TARGETS[case.stage])
    expected = case.expect(extracts)
    if isinstance(expected, Fatal) and expected.snakemake_says:
        expected = Fatal(expected.snakemake_job, expected.snakemake_says)
    check(case, expected, outcome, site, extracts)
    if isinstance(expected, Fatal):
        assert outcome.failed_job == expected.job
        after = snapshot(flow.root)
        # the failed job's outputs are gone; its benchmark file is the earlier run's, untouched
        gone = set(job_outputs(expected.job)) if expected.job else set()
        may_change = _may_change(expected.job)
        for rel, state in before.items():
            if rel in gone:
                assert rel not in after, f"{rel} of the failed job left behind"
            elif not rel.startswith(may_change):
                assert after.get(rel) == state, f"{rel}: an earlier result was touched"
        assert set(after) <= set(before), f"new files: {sorted(set(after) - set(before))}"
    if case.report:
        check_report(case, flow)


#: Rules allowed to run in the report cases: the mutated extract's ingest, the cohort (free-text
#: cases) and the report.  Matching and survival keep their earlier outputs, which is what a
#: full rerun would give since the cohort is byte-identical (asserted).
REPORT_RULES = ("ingest_table", "summarise_ingest", "build_cohort", "render_report")


def check_report(case, flow) -> None:
    """Look for the hostile text in the report, its CSV tables and its figures."""
    report = flow.root / "results/report"
    html = (report / "report.html").read_text()
    raw = flow.root / SITE_DIR / f"{case.table}.{FMT}"
    assert sha256(raw) in html, "the report was re-rendered from the mutated extract"
    texts = {"report.html": html}
    texts.update({p.relative_to(report).as_posix(): p.read_text() for p in report.rglob("*.csv")})
    texts.update({p.relative_to(report).as_posix(): p.read_text() for p in report.rglob("*.svg")})
    assert "<script" not in html.lower()
    if case.name in ("formula_injection", "html_injection"):  # patient-level text: never in the report
        for name, text in texts.items():
            assert "HYPERLINK" not in text and "alert(1)" not in text, name
        return
    # a hostile column *name* is shown (ingest notes and ingest.csv), escaped
    assert str(markupsafe.escape(HOSTILE_NAME)) in html
    ingest = pd.read_csv(report / "tables/ingest.csv", dtype=str, keep_default_na=False).set_index("table")
    assert ingest.loc["labs", "extra_columns_ignored"] == "'" + HOSTILE_NAME
    with open(report / "tables/ingest.csv", newline="") as fh:
        cells = [cell for row in csv.reader(fh) for cell in row]
    assert not [c for c in cells if c[:1] in ("=", "+", "@")], "a formula cell in ingest.csv"
