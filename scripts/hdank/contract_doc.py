"""The table sections of ``docs/site-guide.md``, generated from the input contract.

:data:`hdank.contract.CONTRACT` says which columns each extract has, their kind and whether
they may be empty; :mod:`hdank.ingest` says what happens to a row that breaks a rule.  This
module writes both as one Markdown section per table (an SQL-like column list plus the
quarantine and stop rules), between the markers ``<!-- contract:start -->`` and
``<!-- contract:end -->`` of the guide, so the guide cannot drift from the code.

Usage: ``python -m hdank.contract_doc [GUIDE]`` rewrites the block in place (default
``docs/site-guide.md``); ``tests/test_site_guide.py`` fails when the block is stale.
"""

from __future__ import annotations

import sys
from pathlib import Path

from hdank.contract import CONTRACT, TABLES, Table
from hdank.ingest import PLAUSIBLE, REASONS, contract_schema

GUIDE = "docs/site-guide.md"
START, END = "<!-- contract:start -->", "<!-- contract:end -->"

SQL_TYPE = {"id": "BIGINT", "str": "VARCHAR", "category": "VARCHAR", "date": "DATE",
            "timestamp": "TIMESTAMP", "float": "DOUBLE"}
FORMAT_OF = {"date": "'YYYY-MM-DD'", "timestamp": "'YYYY-MM-DDTHH:MM:SS', local time, no offset"}

#: What each quarantine reason of hdank.ingest means, in words (a test checks that every reason has one).
REASON_TEXT = {
    "missing_required": "a column that may not be empty is empty",
    "unparsable_timestamp": "a timestamp is not ISO-8601 `YYYY-MM-DDTHH:MM[:SS]` (a space instead of `T` is fine)",
    "timestamp_with_time_zone": "a timestamp carries a time-zone offset or `Z`; export local times without one",
    "unparsable_date": "a date is not `YYYY-MM-DD`",
    "unparsable_value": "a number cannot be read (`n/a`, `<5`, `1,5` with a decimal comma, `inf`)",
    "invalid_category": "a value is not one of the allowed values",
    "implausible_value": "a value is outside its plausible range",
    "negative_dose": "a dose is negative",
    "unknown_unit": "a unit that the code lists cannot convert",
    "discharge_before_admission": "discharge_time is before admit_time",
    "death_after_discharge": "death_time is after discharge_time",
    "died_without_death_time": "discharge_status is `died` but death_time is empty",
    "death_time_without_death": "death_time is given but discharge_status is not `died`",
    "episode_end_before_start": "end_time is before start_time",
    "duplicate_key": "the key appears on more than one row that are not exact duplicates (all of them are quarantined)",
    "orphan_key": "the parent key is not among the usable rows of the parent table",
}

#: How each coded column is mapped to study concepts.
MAPPED = {
    ("diagnoses", "icd10"): "mapped through `icd10.csv` by prefix on the code without its dot "
                            "(`E11` matches `E11.9` and `E119`); unmapped codes are kept and ignored",
    ("labs", "loinc"): "mapped through `loinc.csv` (exact match); the value is converted to the "
                       "concept's canonical unit through `units.csv`",
    ("labs", "result_text"): "for SARS-CoV-2 PCR rows, mapped through `pcr_results.csv` (any case)",
    ("medications", "atc"): "mapped through `atc.csv` (exact match); a local code works if it is listed there",
    ("medications", "dose_unit"): "must equal the unit that `atc.csv` gives for the code (`mg`)",
    ("respiratory_support", "support"): "mapped through `support.csv` (any case)",
}

#: What a data manager should know about each table, beyond its columns.
NOTES = {
    "patients": "One row per person, not per stay. Weight and height are the values closest to the "
                "COVID-19 admission; weight sets the HD-ANK dose threshold (mg/kg) and, with "
                "height, the BMI covariate.",
    "admissions": "Every hospital stay of these patients in the study period, COVID-19 or not (the "
                  "cohort rules select them). A patient still in hospital when you export has "
                  "`discharge_status = in_hospital` and empty discharge and death times.",
    "diagnoses": "All ICD-10 codes of each stay, including those coded at discharge "
                 "(`recorded_time` may be empty; it is not used to exclude a diagnosis).",
    "labs": "At least SARS-CoV-2 PCR (with `result_text`), PaO2/FiO2, CRP, ferritin, lymphocytes, "
            "LDH, D-dimer and creatinine; more tests do no harm. One row per result, value in "
            "the unit the laboratory reported.",
    "medications": "One row per administration (not per prescription or order), with the dose "
                   "actually given. Needed: systemic corticosteroids, anakinra, tocilizumab, "
                   "sarilumab, baricitinib, remdesivir; other drugs do no harm.",
    "respiratory_support": "One row per episode of oxygen, high-flow nasal cannula, NIV, CPAP, "
                           "invasive ventilation or ECMO, with its start and end.",
}


def _comment(table: Table, name: str) -> str:
    col = table.column(name)
    parts = [col.description.rstrip(".") + "."] if col.description else []
    if col.kind == "category" and not all(v in col.description for v in col.values):
        parts.append("One of " + ", ".join(f"'{v}'" for v in col.values) + ".")
    if col.kind in FORMAT_OF:
        parts.append(f"Text {FORMAT_OF[col.kind]}.")
    if name == table.primary_key:
        parts.append("Unique.")
    if table.parent and name == table.parent[1]:
        parts.append(f"Must exist in {table.parent[0]}.")
    if name in PLAUSIBLE:
        lo, hi = PLAUSIBLE[name]
        parts.append(f"Plausible {lo:g} to {hi:g}.")
    if name in table.free_text:
        parts.append("Free text: never shown in the report.")
    return " ".join(parts)


def sql_block(table: Table, fmt: str = "csv.gz") -> str:
    """SQL-like column list of one table."""
    width = max(len(c.name) for c in table.columns)
    lines = [f"-- {table.name}.{fmt}: one row per {table.grain}"]
    for col in table.columns:
        null = "NULL" if col.nullable else "NOT NULL"
        lines.append(f"{col.name.ljust(width)}  {SQL_TYPE[col.kind].ljust(9)}  {null.ljust(8)}  -- {_comment(table, col.name)}")
    return "\n".join(lines)


def quarantine_rules(table: Table) -> list[tuple[str, str]]:
    """(reason, when) of every quarantine rule that can fire for ``table``, in ingest's order."""
    schema = contract_schema(table)
    column_checks = {name for col in schema.columns.values() for name in (c.name for c in col.checks)}
    table_checks = {c.name for c in schema.checks}
    kinds = {c.kind for c in table.columns}
    applies = {
        "missing_required": any(not c.nullable and c.kind != "id" for c in table.columns),
        "unparsable_timestamp": "timestamp" in kinds,
        "timestamp_with_time_zone": "timestamp" in kinds,
        "unparsable_date": "date" in kinds,
        "unparsable_value": "float" in kinds,
        "invalid_category": "invalid_category" in column_checks,
        "implausible_value": "implausible_value" in column_checks or table.name == "labs",
        "negative_dose": "negative_dose" in column_checks,
        "unknown_unit": table.name in ("labs", "medications"),
        "duplicate_key": table.primary_key is not None,
        "orphan_key": table.parent is not None,
    }
    detail = {
        "invalid_category": "; ".join(f"{c.name} not in {', '.join(c.values)}"
                                      for c in table.columns if c.kind == "category"),
        "implausible_value": {
            "patients": "birth_date before 1900-01-01, or " + ", ".join(
                f"{n} outside {lo:g}-{hi:g}" for n, (lo, hi) in PLAUSIBLE.items()),
            "labs": "a converted value outside `plausible_min`-`plausible_max` of its code in `loinc.csv`",
        }.get(table.name, ""),
        "unknown_unit": {
            "labs": "a lab with a value whose unit `units.csv` does not list for its concept",
            "medications": "a mapped drug whose dose_unit differs from the unit in `atc.csv`",
        }.get(table.name, ""),
        "duplicate_key": f"{table.primary_key} on more than one row that are not exact duplicates (all are quarantined)",
        "orphan_key": (f"{table.parent[1]} not among the usable rows of {table.parent[0]}" if table.parent else ""),
    }
    out = []
    for reason in REASONS:
        if applies.get(reason) or reason in table_checks:
            out.append((reason, detail.get(reason) or REASON_TEXT[reason]))
    return out


def table_section(table: Table) -> str:
    ids = [c.name for c in table.columns if c.kind == "id"]
    mapped = [(col, text) for (t, col), text in MAPPED.items() if t == table.name]
    lines = [f"### `{table.name}`: one row per {table.grain}", "", NOTES.get(table.name, ""), "",
             "```sql", sql_block(table), "```", ""]
    if mapped:
        lines += ["Codes: " + "; ".join(f"`{col}` {text}" for col, text in mapped) + ".", ""]
    lines += [f"**The run stops** (contract error) if the file or a column is missing, or if "
              f"{' or '.join(f'`{i}`' for i in ids)} is empty or not a positive integer on any row.", "",
              "**A row is quarantined** (kept aside with its reason, counted, not analysed) when:", ""]
    lines += [f"- `{reason}`: {text}" for reason, text in quarantine_rules(table)]
    return "\n".join(lines).rstrip() + "\n"


def render() -> str:
    """The generated block (without the markers)."""
    intro = ("<!-- Generated from scripts/hdank/contract.py and scripts/hdank/ingest.py by "
             "`python -m hdank.contract_doc`; edit those, not this block. -->\n")
    return intro + "\n" + "\n".join(table_section(CONTRACT[t]) for t in TABLES)


def replace_block(text: str, block: str) -> str:
    """``text`` with the part between the markers replaced by ``block``."""
    if START not in text or END not in text:
        raise ValueError(f"markers {START} and {END} not found")
    head, rest = text.split(START, 1)
    _, tail = rest.split(END, 1)
    return f"{head}{START}\n{block}{END}{tail}"


def current_block(text: str) -> str:
    return text.split(START, 1)[1].split(END, 1)[0].lstrip("\n")


if __name__ == "__main__":
    from hdank import io

    guide = Path(sys.argv[1] if len(sys.argv) > 1 else GUIDE)
    io.write_text(replace_block(guide.read_text(), render()), guide)
    print(f"updated the contract tables of {guide}")
