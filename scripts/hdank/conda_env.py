"""Write the conda environment that mirrors requirements.lock (``make lock`` calls this)."""

from __future__ import annotations

import sys
from pathlib import Path

HEADER = """\
# Conda equivalent of requirements.lock, for `snakemake --sdm conda` (made by `make lock`).
# The default runs use the locked venv that `make run` creates.
name: hdank
channels:
  - conda-forge
  - nodefaults
dependencies:
  - python=3.11
  - pip
  - pip:
"""


def conda_env(lock_text: str) -> str:
    pins = [line.strip() for line in lock_text.splitlines() if line.strip() and not line.startswith("#")]
    return HEADER + "".join(f"      - {pin}\n" for pin in pins)


if __name__ == "__main__":
    sys.stdout.write(conda_env(Path(sys.argv[1] if len(sys.argv) > 1 else "requirements.lock").read_text()))
