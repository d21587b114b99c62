"""Run the Snakemake workflow in a scratch copy of the repository and read what it plans."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import yaml

from hdank.settings import deep_merge

ROOT = Path(__file__).resolve().parents[1]
SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
COPY = ["Snakefile", "profiles", "workflow", "scripts", "config", "resources", "validation"]


@dataclass
class Workflow:
    """A scratch copy of the repository with its own results/."""

    root: Path

    @classmethod
    def copy(cls, dest: Path, **config_overrides) -> "Workflow":
        dest.mkdir(parents=True, exist_ok=True)
        for name in COPY:
            src = ROOT / name
            if src.is_symlink():
                os.symlink(os.readlink(src), dest / name)
            elif src.is_dir():
                shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
            elif src.exists():
                shutil.copy2(src, dest / name)
        flow = cls(dest)
        if config_overrides:
            flow.set_config(**config_overrides)
        return flow

    @property
    def config_path(self) -> Path:
        return self.root / "config" / "config.yaml"

    def set_config(self, **sections) -> None:
        """Deep-merge ``sections`` into config/config.yaml."""
        config = yaml.safe_load(self.config_path.read_text())
        deep_merge(config, sections)
        self.config_path.write_text(yaml.safe_dump(config, sort_keys=False))

    def snakemake(self, *args: str, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
        env = {**os.environ, "PYTHONPATH": str(self.root / "scripts")}
        proc = subprocess.run([SNAKEMAKE, "--cores", "2", *args], cwd=self.root, env=env,
                              capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise AssertionError(f"snakemake {' '.join(args)} failed ({proc.returncode}):\n"
                                 f"{proc.stdout[-4000:]}\n{proc.stderr[-6000:]}")
        return proc

    def planned_jobs(self, *targets: str) -> list[str]:
        """Jobs a dry run schedules, as ``rule`` or ``rule[wildcards]``, sorted."""
        proc = self.snakemake("--dry-run", *targets)
        return [job for job in parse_jobs(proc.stdout + proc.stderr) if job != "all"]


_JOB = re.compile(r"^\s*(?:local)?(?:rule|checkpoint) (\w+):\s*$")
_WILDCARDS = re.compile(r"^\s*wildcards: (.*)$")


def parse_jobs(text: str) -> list[str]:
    """Parse the job blocks of a Snakemake dry run (``rule x:`` then ``wildcards: a=b``)."""
    jobs: list[str] = []
    for line in text.splitlines():
        m = _JOB.match(line)
        if m:
            jobs.append(m.group(1))
            continue
        w = _WILDCARDS.match(line)
        if w and jobs and "[" not in jobs[-1]:
            jobs[-1] = f"{jobs[-1]}[{w.group(1).strip()}]"
    return sorted(jobs)
