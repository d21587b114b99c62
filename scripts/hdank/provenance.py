"""Provenance of a report: file hashes, code version, package versions, run times, run date.

The run date honours ``SOURCE_DATE_EPOCH`` (reproducible-builds.org) so that a report built
twice from the same inputs is byte-identical when it is set.
"""

from __future__ import annotations

import csv
import hashlib
import os
import platform
import subprocess
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

#: Distributions whose versions the report lists (the analysis stack).
STACK = ("hdank", "snakemake", "pandas", "numpy", "pyarrow", "scipy", "lifelines", "statsmodels",
         "matplotlib", "jinja2", "pandera", "jsonschema", "pyyaml")


def sha256(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


@dataclass(frozen=True)
class FileHash:
    role: str
    path: str
    sha256: str
    size: int


def hash_files(files: list[tuple[str, str]]) -> list[FileHash]:
    """(role, path) -> hash rows, in the order given; a missing file is listed as missing."""
    out = []
    for role, path in files:
        p = Path(path)
        if p.is_file():
            out.append(FileHash(role, display_path(path), sha256(p), p.stat().st_size))
        else:
            out.append(FileHash(role, display_path(path), "missing", 0))
    return out


def display_path(path: str) -> str:
    """The path relative to the working directory when it lies below it, else as given."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


@dataclass(frozen=True)
class GitState:
    commit: str
    dirty: bool | None

    @property
    def label(self) -> str:
        if self.dirty is None:
            return self.commit
        return f"{self.commit} ({'dirty: uncommitted changes' if self.dirty else 'clean'})"


def git_state(directory: str | os.PathLike | None = None) -> GitState:
    """Commit of the code and whether the work tree has uncommitted changes."""
    cwd = str(directory or Path(__file__).resolve().parent)
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True,
                                check=True, timeout=30).stdout.strip()
        status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=cwd,
                                capture_output=True, text=True, check=True, timeout=30).stdout
        return GitState(commit, bool(status.strip()))
    except (OSError, subprocess.SubprocessError):
        return GitState("unknown (not a git work tree)", None)


def package_versions(names: tuple[str, ...] = STACK) -> list[tuple[str, str]]:
    rows = [("python", platform.python_version())]
    for name in names:
        try:
            rows.append((name, metadata.version(name)))
        except metadata.PackageNotFoundError:
            rows.append((name, "not installed"))
    return rows


def run_date(environ: dict[str, str] | None = None) -> str:
    """UTC time of the run: SOURCE_DATE_EPOCH when set, else now."""
    env = os.environ if environ is None else environ
    epoch = env.get("SOURCE_DATE_EPOCH")
    when = (datetime.fromtimestamp(int(epoch), tz=timezone.utc) if epoch
            else datetime.now(tz=timezone.utc))
    return when.strftime("%Y-%m-%d %H:%M UTC")


@dataclass(frozen=True)
class Benchmark:
    rule: str
    seconds: float
    hms: str
    max_rss_mb: float | None
    cpu_time: float | None


def _float(value: str | None) -> float | None:
    try:
        out = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return out


def benchmarks(directory: str | os.PathLike) -> list[Benchmark]:
    """Per-rule run times from Snakemake benchmark TSVs (``s``, ``h:m:s``, ``max_rss``, ...).

    The rule is the file's path below ``directory`` without ``.tsv`` (wildcards become
    sub-folders, e.g. ``estimate_survival/iptw``).  With repeated runs the first row is used.
    """
    root = Path(directory)
    if not root.is_dir():
        return []
    out = []
    for path in sorted(root.rglob("*.tsv")):
        with open(path, newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter="\t"))
        if not rows:
            continue
        row = rows[0]
        out.append(Benchmark(rule=path.relative_to(root).with_suffix("").as_posix(),
                             seconds=_float(row.get("s")) or 0.0, hms=row.get("h:m:s", ""),
                             max_rss_mb=_float(row.get("max_rss")), cpu_time=_float(row.get("cpu_time"))))
    return out
