"""Expensive test artefacts (workflow runs, generated extracts) built once per test session.

pytest-xdist runs session fixtures once per worker; :func:`shared` builds a directory once per
*session* instead: the first worker that asks builds it under a file lock, the others wait and
reuse it.  A build that fails is not retried by the other workers (they fail fast).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

#: SOURCE_DATE_EPOCH of every workflow run the tests compare (reproducible-builds.org).
SOURCE_DATE_EPOCH = "1700000000"

#: Final outputs compared by hash: every file with these suffixes under results/ ...
HASHED_SUFFIXES = (".parquet", ".json", ".csv", ".svg")
#: ... except run times (Snakemake benchmark TSVs and the report's copy of them).
NOT_HASHED = ("results/benchmarks/", "results/report/tables/benchmarks.csv")


def session_root(tmp_path_factory) -> Path:
    """A folder shared by all xdist workers of this session (the basetemp without xdist)."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    root = base / "shared"
    root.mkdir(exist_ok=True)
    return root


def shared(tmp_path_factory, name: str, build: Callable[[Path], None]) -> Path:
    """``<session root>/<name>``, built by ``build(path)`` once per session."""
    root = session_root(tmp_path_factory)
    path, done, failed = root / name, root / f"{name}.done", root / f"{name}.failed"
    with open(root / f"{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if failed.exists():
                raise RuntimeError(f"shared artefact {name} failed to build earlier in this session:\n"
                                   f"{failed.read_text()[-3000:]}")
            if not done.exists():
                try:
                    build(path)
                except BaseException as error:
                    failed.write_text(f"{type(error).__name__}: {error}")
                    raise
                done.write_text("")
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
    return path


@contextmanager
def environment(**values: str) -> Iterator[None]:
    """Set environment variables for the subprocesses started inside the block."""
    old = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def output_hashes(root: Path) -> dict[str, str]:
    """SHA-256 of every final parquet/JSON/CSV(.gz)/SVG under ``root/results`` (run times excluded)."""
    out = {}
    for path in sorted((root / "results").rglob("*")):
        rel = path.relative_to(root).as_posix()
        hashed = path.suffix in HASHED_SUFFIXES or path.name.endswith(".csv.gz")  # + the simulated extracts
        if path.is_file() and hashed and not rel.startswith(NOT_HASHED):
            out[rel] = sha256(path)
    return out


def temporary_files(root: Path) -> list[str]:
    """Leftover temporary files of atomic writes (``.<name>.<random>.tmp``) under results/."""
    return sorted(p.relative_to(root).as_posix() for p in (root / "results").rglob(".*.tmp"))


def clean_run(tmp_path_factory, name: str) -> Path:
    """A scratch copy of the repository after one uninterrupted run of the default workflow
    (``SOURCE_DATE_EPOCH`` set), built once per session."""
    from workflow_runner import Workflow

    def build(path: Path) -> None:
        flow = Workflow.copy(path)
        with environment(SOURCE_DATE_EPOCH=SOURCE_DATE_EPOCH):
            flow.snakemake(timeout=1500)
    return shared(tmp_path_factory, name, build)


def benchmark_seconds(root: Path, column: str = "s") -> dict[str, float]:
    """Wall time (or another column of Snakemake's benchmark TSV, e.g. ``cpu_time``) of every job
    of a finished run, by benchmark path (``rule`` or ``rule/wildcard``)."""
    import csv

    out = {}
    bench = root / "results" / "benchmarks"
    for path in sorted(bench.rglob("*.tsv")):
        with open(path, newline="") as fh:
            out[path.relative_to(bench).with_suffix("").as_posix()] = float(next(csv.DictReader(fh, delimiter="\t"))[column])
    return out
