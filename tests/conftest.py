import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "tests"))

IN_CI = os.environ.get("CI", "").lower() == "true"


def require_program(name: str) -> str:
    """Path of a system program; skip (or fail under CI=true) when it is missing."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (apt-get install it; .ci/run does)"
        if IN_CI:
            pytest.fail(f"CI=true: {message}")
        pytest.skip(message)
    return path
