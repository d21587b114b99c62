"""Collect the per-table ingest counts into one summary."""

from __future__ import annotations

import json
from pathlib import Path

from hdank import io


def summarise(count_files: list[str], out: str) -> None:
    tables = {Path(f).stem: json.loads(Path(f).read_text()) for f in count_files}
    total = {reason: sum(t["quarantined"].get(reason, 0) for t in tables.values())
             for reason in sorted({r for t in tables.values() for r in t["quarantined"]})}
    io.write_json({"tables": tables, "quarantined_total": total,
                   "duplicates_dropped_total": sum(t["duplicates_dropped"] for t in tables.values())}, out)
