"""Run the corpus: valid extracts, an in-process twin of the workflow, and Snakemake site copies.

Two ways to run a case, asserting the same expectation:

* **in process** (every case): the stage functions that the rules' adapters call
  (``hdank.adapter.run`` around ``ingest_file``, ``summarise``, ``build_cohort_files``,
  ``match_files``), with the rules' file layout, logs and exit status, in dependency order.  A job
  whose inputs are byte-identical to the valid run's is not rerun (its outputs are copied), as
  Snakemake would not rerun it either.
* **through Snakemake** (a representative subset): a copy of a site workflow that has already
  run on the valid extracts (``synthetic.enabled: false``, ``extracts.dir: hospital``), with
  one extract replaced; checks the exit status, the job log, that the failed job left no output,
  and that every other earlier result is untouched (same bytes, same mtime).
"""

from __future__ import annotations

import gzip
import hashlib
import logging
import os
import shutil
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import yaml

from shared_runs import SOURCE_DATE_EPOCH, environment, shared
from workflow_runner import ROOT, Workflow

from hdank import adapter, settings
from hdank.cohort import build_cohort_files
from hdank.contract import CONTRACT, TABLES
from hdank.ingest import ingest_file
from hdank.ingest_summary import summarise
from hdank.match_stage import match_files
from hdank.simulate import simulate_from_config

FMT = "csv.gz"
CODELISTS = str(ROOT / "resources" / "codelists")
SITE_DIR = "hospital"  # extracts.dir of the site workflows, relative to the workflow folder
N_ADMISSIONS = 2000


def load_config(overrides: dict | None = None) -> dict:
    """The repository's config (validated, defaults filled) with ``overrides`` merged in."""
    return settings.load_config([ROOT / "config" / "config.yaml"], overrides)


# ------------------------------------------------------------------------------- extracts
@dataclass
class Extracts:
    """The valid extracts: the simulator's output at N_ADMISSIONS with every defect rate 0."""

    dir: Path

    def path(self, table: str) -> Path:
        return self.dir / f"{table}.{FMT}"

    def text(self, table: str) -> str:
        return gzip.decompress(self.path(table).read_bytes()).decode("utf-8")

    @cached_property
    def frames(self) -> dict[str, pd.DataFrame]:
        return {t: pd.read_csv(self.path(t), dtype=str, keep_default_na=False) for t in TABLES}

    def frame(self, table: str) -> pd.DataFrame:
        """The table as text (empty cells are ''); index i is line i + 2 of the file."""
        return self.frames[table].copy()


def simulate_valid(path: Path) -> None:
    config = load_config()
    synthetic = {**config["synthetic"], "n_admissions": N_ADMISSIONS,
                 "defect_rates": {k: 0 for k in config["synthetic"]["defect_rates"]}}
    path.mkdir(parents=True)
    simulate_from_config(out_dir=str(path / "extracts"), answer_key_path=str(path / "answer_key.parquet"),
                         defects_path=str(path / "defects.json"), synthetic=synthetic,
                         study=config["study"], codelists_dir=CODELISTS, fmt=FMT)


def valid_extracts(tmp_path_factory) -> Extracts:
    return Extracts(shared(tmp_path_factory, "valid-extracts", simulate_valid) / "extracts")


# ------------------------------------------------------------------------ in-process twin
@dataclass
class Outcome:
    """What a run of a case produced."""

    root: Path
    returncode: int
    failed_job: str | None = None
    message: str = ""  # the failed job's log (and, through Snakemake, stdout + stderr)
    ran: list[str] = field(default_factory=list)

    def read(self, rel: str) -> bytes:
        return (self.root / rel).read_bytes()


def job_outputs(job: str) -> list[str]:
    """Output files of a job, as declared in workflow/rules/*.smk."""
    if job.startswith("ingest_table["):
        t = job[len("ingest_table["):-1]
        return [f"results/typed/{t}.parquet", f"results/typed/quarantine/{t}.parquet",
                f"results/typed/counts/{t}.json"]
    return {
        "summarise_ingest": ["results/typed/ingest_summary.json"],
        "build_cohort": [f"results/cohort/{n}.parquet" for n in ("cohort", "extended", "attrition",
                                                                  "admission_status")],
        "match_cohort": ["results/match/ps.parquet", "results/match/matched.parquet",
                         "results/match/balance.parquet", "results/match/diagnostics.json"],
    }[job]


def job_log(job: str) -> str:
    if job.startswith("ingest_table["):
        return f"logs/ingest_table/{job[len('ingest_table['):-1]}.log"
    return f"logs/{job}.log"


@contextmanager
def _cwd(path: Path):
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


@contextmanager
def _isolated_logging():
    """adapter.run reconfigures the root logger; put pytest's handlers back afterwards."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        yield
    finally:
        for handler in root.handlers:
            if handler not in handlers:
                handler.close()
        root.handlers[:] = handlers
        root.setLevel(level)


def _run_job(job: str, fn, **kwargs) -> int:
    """One job as its adapter runs it: log file, exit status 1 on a user error."""
    log = Path(job_log(job))
    log.parent.mkdir(parents=True, exist_ok=True)
    with _isolated_logging():
        try:
            adapter.run(SimpleNamespace(log=[str(log)]), fn, **kwargs)
        except SystemExit as stop:
            return int(stop.code or 0)
    return 0


STAGES = ("ingest", "cohort", "match")


def _sha(path: Path) -> str | None:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else None


def run_in_process(root: Path, config: dict, stage: str = "ingest", reuse: Path | None = None,
                   changed: frozenset[str] = frozenset(TABLES)) -> Outcome:
    """Run the workflow's jobs up to ``stage`` in ``root`` (extracts in ``root/hospital``).

    With ``reuse`` (a finished run of the valid extracts), a job whose inputs are identical to
    those of that run is not run again: its outputs are copied.  ``changed`` names the extracts
    that differ from the valid ones.
    """
    outcome = Outcome(root=root, returncode=0)

    def same(rel: str) -> bool:
        return reuse is not None and _sha(root / rel) == _sha(reuse / rel)

    def copy_outputs(job: str) -> None:
        for rel in job_outputs(job):
            (root / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(reuse / rel, root / rel)

    def job(name: str, fn, inputs_same: bool, **kwargs) -> bool:
        if inputs_same:
            copy_outputs(name)
            return True
        outcome.ran.append(name)
        code = _run_job(name, fn, **kwargs)
        if code:
            outcome.returncode, outcome.failed_job = code, name
            outcome.message = Path(job_log(name)).read_text()
        return code == 0

    with _cwd(root):
        for table in TABLES:
            parent = CONTRACT[table].parent
            parent_typed = f"results/typed/{parent[0]}.parquet" if parent else None
            unchanged = table not in changed and (parent_typed is None or same(parent_typed))
            out = job_outputs(f"ingest_table[{table}]")
            if not job(f"ingest_table[{table}]", ingest_file, unchanged,
                       raw=f"{SITE_DIR}/{table}.{FMT}", table=table, codelists_dir=CODELISTS,
                       parent=parent_typed, typed_out=out[0], quarantine_out=out[1], counts_out=out[2]):
                return outcome
        counts = [f"results/typed/counts/{t}.json" for t in TABLES]
        if not job("summarise_ingest", summarise, False, count_files=counts,
                   out="results/typed/ingest_summary.json"):
            return outcome
        if STAGES.index(stage) < 1:
            return outcome
        typed = {t: f"results/typed/{t}.parquet" for t in TABLES}
        out = job_outputs("build_cohort")
        if not job("build_cohort", build_cohort_files, all(same(p) for p in typed.values()),
                   typed=typed, codelists_dir=CODELISTS, study=config["study"], cohort_out=out[0],
                   extended_out=out[1], attrition_out=out[2], status_out=out[3]):
            return outcome
        if STAGES.index(stage) < 2:
            return outcome
        out = job_outputs("match_cohort")
        job("match_cohort", match_files, False, cohort=job_outputs("build_cohort")[0],
            propensity=config["propensity"], matching=config["matching"], weights=config["weights"],
            balance=config["balance"], ps_out=out[0], matched_out=out[1], balance_out=out[2],
            diagnostics_out=out[3])
    return outcome


def baseline_in_process(tmp_path_factory, extracts: Extracts) -> Path:
    """The in-process run of the valid extracts up to matching (shared by the session)."""
    def build(path: Path) -> None:
        path.mkdir(parents=True)
        shutil.copytree(extracts.dir, path / SITE_DIR)
        outcome = run_in_process(path, load_config(), stage="match")
        assert outcome.returncode == 0, outcome.message
    return shared(tmp_path_factory, "bad-inputs-baseline", build)


# ------------------------------------------------------------------------------ snakemake
SITE_CONFIG = {"synthetic": {"enabled": False}, "extracts": {"dir": SITE_DIR, "format": FMT}}
#: Survival analyses of the site workflow: the primary one only (the others are not at issue
#: here and would triple the time of its first run).
SITE_ANALYSES = {"primary_matched": {}}


def snakemake_site(tmp_path_factory, extracts: Extracts) -> Path:
    """A site workflow that has run completely on the valid extracts (shared by the session)."""
    def build(path: Path) -> None:
        flow = Workflow.copy(path, **SITE_CONFIG)
        config = yaml.safe_load(flow.config_path.read_text())
        config["survival"]["analyses"] = SITE_ANALYSES
        flow.config_path.write_text(yaml.safe_dump(config, sort_keys=False))
        shutil.copytree(extracts.dir, path / SITE_DIR)
        with environment(SOURCE_DATE_EPOCH=SOURCE_DATE_EPOCH):
            flow.snakemake()
    return shared(tmp_path_factory, "bad-inputs-site", build)


def copy_site(site: Path, dest: Path) -> Workflow:
    """A copy of the site workflow with its results and Snakemake metadata, mtimes kept."""
    shutil.copytree(site, dest, symlinks=True)
    return Workflow(dest)


def snapshot(root: Path) -> dict[str, tuple[str, int]]:
    """(SHA-256, mtime in ns) of every file under results/."""
    return {p.relative_to(root).as_posix(): (hashlib.sha256(p.read_bytes()).hexdigest(), p.stat().st_mtime_ns)
            for p in sorted((root / "results").rglob("*")) if p.is_file()}


def run_snakemake(flow: Workflow, *targets: str) -> Outcome:
    with environment(SOURCE_DATE_EPOCH=SOURCE_DATE_EPOCH):
        proc = flow.snakemake(*targets, check=False)
    text = proc.stdout + proc.stderr
    outcome = Outcome(root=flow.root, returncode=proc.returncode, message=text)
    for line in text.splitlines():
        if line.startswith("Error in rule "):
            rule = line[len("Error in rule "):].rstrip(":")
            outcome.failed_job = rule
    if outcome.failed_job == "ingest_table":  # which table: the log named in the error block
        block = text[text.index("Error in rule ingest_table"):]
        table = block.split("logs/ingest_table/", 1)[1].split(".log", 1)[0]
        outcome.failed_job = f"ingest_table[{table}]"
    if outcome.failed_job:
        log = flow.root / job_log(outcome.failed_job)
        outcome.message = (log.read_text() if log.exists() else "") + "\n" + text
    return outcome

