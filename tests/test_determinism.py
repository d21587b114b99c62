"""Determinism: two clean runs of the default workflow, in two scratch copies, give the same files.

Both runs set ``SOURCE_DATE_EPOCH`` (the report's run date).  What the report does with run
times, found by reading ``hdank.report.provenance_context`` and the template: its provenance
section has a "Run times per rule" table built from the Snakemake benchmark files
(``results/benchmarks/**.tsv``: wall time and memory of every job), which also goes to
``results/report/tables/benchmarks.csv``.  Those are measurements of the run, not results, so:

* every parquet, JSON, CSV (also the simulated ``.csv.gz`` extracts) and SVG under results/
  has the same SHA-256 in both runs, except the benchmark TSVs and ``benchmarks.csv``;
* ``benchmarks.csv`` lists the same jobs in both runs (only the measurements differ);
* ``report.html`` is byte-identical: with ``SOURCE_DATE_EPOCH`` set the report leaves the run
  times out of the HTML (they stay in ``benchmarks.csv``).

The runs are shared with tests/test_crash_safety.py (tests/shared_runs.py).
"""

import pandas as pd
import pytest

from shared_runs import SOURCE_DATE_EPOCH, benchmark_seconds, clean_run, output_hashes

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    return clean_run(tmp_path_factory, "clean-a"), clean_run(tmp_path_factory, "clean-b")


def test_every_output_has_the_same_sha256(runs):
    a, b = (output_hashes(r) for r in runs)
    assert sorted(a) == sorted(b)
    kinds = {rel.rsplit(".", 1)[-1] for rel in a}
    assert {"parquet", "json", "csv", "svg", "gz"} <= kinds and len(a) > 60
    assert [rel for rel in a if a[rel] != b[rel]] == []


def test_report_is_byte_identical_with_source_date_epoch(runs):
    html = [(r / "results/report/report.html").read_text() for r in runs]
    assert html[0] == html[1]
    assert "Left out because <code>SOURCE_DATE_EPOCH</code> is set" in html[0]
    run_date = pd.Timestamp(int(SOURCE_DATE_EPOCH), unit="s").strftime("%Y-%m-%d %H:%M UTC")
    assert f"Run {run_date}" in html[0]


def test_run_times_list_the_same_jobs(runs):
    tables = [pd.read_csv(r / "results/report/tables/benchmarks.csv") for r in runs]
    assert tables[0]["rule"].tolist() == tables[1]["rule"].tolist()
    # every job of the run but the report itself, which cannot time itself
    assert set(tables[0]["rule"]) == set(benchmark_seconds(runs[0])) - {"render_report"}
