"""Incremental rebuilds: after each change, exactly the jobs that depend on it are scheduled.

The workflow runs once on a site-style config (synthetic extracts copied to a folder of
"hospital" files, simulator off), then each scenario changes one thing, asks Snakemake for a
dry run, parses the jobs it would run, and restores the change (with the original mtime, so
the next scenario starts from a clean, up-to-date state).
"""

import gzip
import os
import shutil
from contextlib import contextmanager

import pytest

from workflow_runner import Workflow

pytestmark = pytest.mark.e2e

ANALYSES = ["censor_discharge", "clone_censor_weight", "cohort_multivariable", "complete_case", "iptw",
            "landmark", "overlap", "primary_matched", "unadjusted"]
USE_MATCHING = ["censor_discharge", "complete_case", "iptw", "overlap", "primary_matched"]


def survival(*names):
    return [f"estimate_survival[analysis={n}]" for n in names]


DOWNSTREAM_OF_COHORT = sorted(["build_cohort", "match_cohort", "match_cohort_complete_case", *survival(*ANALYSES),
                               "combine_survival", "render_report"])


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    root = tmp_path_factory.mktemp("rebuild")
    flow = Workflow.copy(root / "sim", survival={"analyses": {"clone_censor_weight": {"bootstrap": 20}}})
    flow.snakemake("simulate_extracts")
    shutil.copytree(flow.root / "results/synthetic/extracts", root / "hospital")
    site = Workflow.copy(root / "site", synthetic={"enabled": False},
                         extracts={"dir": str(root / "hospital"), "format": "csv.gz"},
                         survival={"analyses": {"clone_censor_weight": {"bootstrap": 20}}})
    site.hospital = root / "hospital"
    site.snakemake()
    assert site.planned_jobs() == []
    return site


@contextmanager
def changed(path, new_text=None, new_bytes=None):
    """Temporarily replace a file's content; restore content and mtime afterwards."""
    old, stat = path.read_bytes(), path.stat()
    path.write_bytes(new_bytes if new_bytes is not None else new_text.encode())
    try:
        yield
    finally:
        path.write_bytes(old)
        os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns))


def test_nothing_changed_schedules_nothing(site):
    assert site.planned_jobs() == []


def test_report_template_edit_reruns_only_the_report(site):
    template = site.root / "workflow/templates/report.html.j2"
    with changed(template, template.read_text() + "\n{# edited #}\n"):
        assert site.planned_jobs() == ["render_report"]


def test_caliper_change_reruns_matching_survival_and_report_only(site):
    text = site.config_path.read_text()
    assert "caliper_sd: 0.2" in text
    with changed(site.config_path, text.replace("caliper_sd: 0.2", "caliper_sd: 0.1")):
        jobs = site.planned_jobs()
    assert jobs == sorted(["match_cohort", "match_cohort_complete_case", *survival(*USE_MATCHING),
                           "combine_survival", "render_report"])


def test_one_analysis_setting_reruns_that_analysis_and_the_report(site):
    text = site.config_path.read_text()
    assert "bootstrap: 20" in text
    with changed(site.config_path, text.replace("bootstrap: 20", "bootstrap: 25")):
        jobs = site.planned_jobs()
    assert jobs == sorted([*survival("clone_censor_weight"), "combine_survival", "render_report"])


def test_cohort_module_edit_reruns_cohort_and_downstream(site):
    module = site.root / "scripts/hdank/cohort.py"
    with changed(module, module.read_text() + "\n# edited\n"):
        assert site.planned_jobs() == DOWNSTREAM_OF_COHORT


def test_replaced_extract_reruns_its_ingest_and_downstream_only(site):
    labs = site.hospital / "labs.csv.gz"
    lines = gzip.decompress(labs.read_bytes()).splitlines(keepends=True)
    with changed(labs, new_bytes=gzip.compress(b"".join(lines[:-1]), mtime=0)):  # one row fewer
        jobs = site.planned_jobs()
    assert jobs == sorted(["ingest_table[table=labs]", "summarise_ingest", *DOWNSTREAM_OF_COHORT])


def test_touched_extract_with_identical_content(site):
    """A newer timestamp alone reruns nothing while the file is small enough to checksum.

    Snakemake 9 records the checksum of every input below ``--max-checksum-file-size``
    (default 1 MB) and treats a newer file with the recorded checksum as unchanged, so
    touching the 230 kB labs extract schedules nothing.  Above that size it cannot tell and
    falls back to timestamps: the same touch with the limit lowered to 1 kB reruns the
    table's ingest and everything downstream (outputs are then rewritten byte-identically).
    """
    labs = site.hospital / "labs.csv.gz"
    assert 1_000 < labs.stat().st_size < 1_000_000
    stat = labs.stat()
    os.utime(labs, None)
    try:
        assert site.planned_jobs() == []
        jobs = site.planned_jobs("--max-checksum-file-size", "1KB")
    finally:
        os.utime(labs, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    assert jobs == sorted(["ingest_table[table=labs]", "summarise_ingest", *DOWNSTREAM_OF_COHORT])
