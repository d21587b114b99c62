"""Print the path of the run's headline output: the report once it exists, else the newest file."""

from __future__ import annotations

import sys
from pathlib import Path

REPORT = Path("results/report/report.html")


def newest(root: Path) -> Path | None:
    if REPORT.exists():
        return REPORT
    files = [p for p in root.rglob("*") if p.is_file() and "benchmarks" not in p.parts]
    return max(files, key=lambda p: p.stat().st_mtime) if files else None


if __name__ == "__main__":
    found = newest(Path(sys.argv[1] if len(sys.argv) > 1 else "results"))
    print(f"Output: {found.resolve()}" if found else "No output written.")
