"""Which outputs are patient-level and which are releasable: the one place that says so.

Patient-level outputs (typed tables, cohort, matched sample, per-analysis survival tables,
logs) stay on the machine where they were made.  Releasable outputs (the report, its CSV
tables and SVG figures, benchmark timings) hold aggregates only, after disclosure control,
and :func:`releasable_problems` checks them before anyone shares them.
"""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

PATIENT_LEVEL = "patient-level"
RELEASABLE = "releasable"

#: Longest matching prefix wins.
SENSITIVITY: dict[str, str] = {
    "results/synthetic/": PATIENT_LEVEL,
    "results/typed/": PATIENT_LEVEL,
    "results/cohort/": PATIENT_LEVEL,
    "results/match/": PATIENT_LEVEL,
    "results/survival/": PATIENT_LEVEL,
    "results/check/": PATIENT_LEVEL,
    "results/benchmarks/": RELEASABLE,
    "results/report/": RELEASABLE,
    "logs/": PATIENT_LEVEL,
}

IDENTIFIER_COLUMNS = {"patient_id", "admission_id", "pair_id", "person_id", "mrn"}
#: CSV columns of the report tables that hold counts of patients or events.
COUNT_COLUMN = re.compile(r"^(n|n_.*|events.*|excluded|remaining|rows_.*|quarantined|duplicates_dropped|"
                          r"admissions|diagnoses|labs|medications|patients|respiratory_support|total|"
                          r"before_soc|before_hdank|after_soc|after_hdank)$")
AT_RISK_COLUMN = re.compile(r"^day_\d+$")


def sensitivity(path: str | Path) -> str:
    """Sensitivity label of an output path (relative to the workflow folder)."""
    text = Path(path).as_posix()
    matches = [prefix for prefix in SENSITIVITY if text.startswith(prefix)]
    if not matches:
        raise KeyError(f"{text}: no sensitivity label; add its folder to hdank.outputs.SENSITIVITY")
    return SENSITIVITY[max(matches, key=len)]


def releasable_problems(path: Path, identifiers: set[str], timestamps: set[str],
                        small_count_max: int = 7, rounding_base: int = 5) -> list[str]:
    """Reasons why a releasable file must not leave the machine (empty list: fine).

    ``identifiers`` and ``timestamps`` are string forms of the cohort's ids and individual
    times; none may appear in the file.  CSV count columns must be suppressed ("<=7"), zero,
    or rounded to ``rounding_base``; at-risk columns midpoint-6 rounded.
    """
    from hdank.disclosure import unsuppressed_counts

    text = path.read_text(encoding="utf-8", errors="replace")
    problems = [f"{path}: contains identifier {v}" for v in sorted(identifiers) if v in text][:5]
    problems += [f"{path}: contains individual timestamp {v}" for v in sorted(timestamps) if v in text][:5]
    if path.suffix == ".csv":
        rows = list(csv.DictReader(io.StringIO(text)))
        header = rows[0].keys() if rows else []
        problems += [f"{path}: identifier column {c}" for c in header if c in IDENTIFIER_COLUMNS]
        for row in rows:
            for column, value in row.items():
                if COUNT_COLUMN.match(column or "") and not _disclosed(value, small_count_max, rounding_base, False):
                    problems.append(f"{path}: column {column} holds unrounded count {value!r}")
                elif AT_RISK_COLUMN.match(column or "") and not _disclosed(value, small_count_max, rounding_base, True):
                    problems.append(f"{path}: at-risk column {column} holds {value!r} (not midpoint-6 rounded)")
    elif path.suffix == ".html":
        problems += [f"{path}: unsuppressed count {c}" for c in unsuppressed_counts(text, small_count_max, rounding_base)]
    return problems


def _disclosed(value: str, small_count_max: int, base: int, at_risk: bool) -> bool:
    value = (value or "").replace(",", "").strip()
    if value in ("", "—", f"<={small_count_max}", "0"):
        return True
    try:
        n = float(value)
    except ValueError:
        return True  # not a count (a label)
    if n != int(n):
        return False
    return int(n) % 6 == 3 if at_risk else int(n) % base == 0
