"""The input contract: the six raw extract tables of protocol section 2.

Plain data, shared by the simulator (which writes extracts) and ingest (which enforces
them).  Timestamps are ISO-8601 local times without a time-zone offset; dates are
``YYYY-MM-DD``; identifiers are positive integers.
"""

from __future__ import annotations

from dataclasses import dataclass, field

TABLES = ("patients", "admissions", "diagnoses", "labs", "medications", "respiratory_support")

#: Column kinds: ``id`` (positive int64 key), ``str``, ``category`` (closed set in
#: ``values``), ``date``, ``timestamp``, ``float``.
KINDS = ("id", "str", "category", "date", "timestamp", "float")


@dataclass(frozen=True)
class Column:
    name: str
    kind: str
    nullable: bool = False
    values: tuple[str, ...] = ()
    description: str = ""


@dataclass(frozen=True)
class Table:
    name: str
    grain: str
    columns: tuple[Column, ...]
    primary_key: str | None = None
    parent: tuple[str, str] | None = None  # (parent table, key column)
    free_text: tuple[str, ...] = field(default=())

    @property
    def names(self) -> list[str]:
        return [c.name for c in self.columns]

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)


CONTRACT: dict[str, Table] = {
    "patients": Table(
        "patients", "patient",
        (
            Column("patient_id", "id", description="Patient identifier (positive integer)."),
            Column("sex", "category", values=("F", "M", "U"), description="Sex: F, M or U (unknown)."),
            Column("birth_date", "date", description="Date of birth."),
            Column("height_cm", "float", nullable=True, description="Height in cm."),
            Column("weight_kg", "float", nullable=True, description="Body weight in kg."),
        ),
        primary_key="patient_id",
    ),
    "admissions": Table(
        "admissions", "hospital stay",
        (
            Column("admission_id", "id", description="Stay identifier (positive integer)."),
            Column("patient_id", "id", description="Patient of the stay."),
            Column("admit_time", "timestamp", description="Admission time."),
            Column("discharge_time", "timestamp", nullable=True, description="Discharge time; empty while in hospital."),
            Column("discharge_status", "category", values=("home", "transfer", "died", "in_hospital"),
                   description="How the stay ended: home, transfer, died, in_hospital (still admitted at extraction)."),
            Column("death_time", "timestamp", nullable=True, description="Time of in-hospital death."),
            Column("symptom_onset_date", "date", nullable=True, description="Date of first COVID-19 symptoms."),
        ),
        primary_key="admission_id",
        parent=("patients", "patient_id"),
    ),
    "diagnoses": Table(
        "diagnoses", "coded diagnosis",
        (
            Column("admission_id", "id", description="Stay of the diagnosis."),
            Column("icd10", "str", description="ICD-10 code, with or without the dot."),
            Column("recorded_time", "timestamp", nullable=True, description="When it was coded (often at discharge)."),
        ),
        parent=("admissions", "admission_id"),
    ),
    "labs": Table(
        "labs", "measurement",
        (
            Column("admission_id", "id", description="Stay of the measurement."),
            Column("taken_time", "timestamp", description="Sample time."),
            Column("loinc", "str", description="LOINC code of the test."),
            Column("value", "float", nullable=True, description="Numeric result."),
            Column("unit", "str", nullable=True, description="Unit of the numeric result."),
            Column("result_text", "str", nullable=True, description="Text result (e.g. PCR positive/negative)."),
        ),
        parent=("admissions", "admission_id"),
        free_text=("result_text",),
    ),
    "medications": Table(
        "medications", "administration",
        (
            Column("admission_id", "id", description="Stay of the administration."),
            Column("given_time", "timestamp", description="Administration time."),
            Column("atc", "str", description="ATC code of the drug."),
            Column("drug_name", "str", description="Drug name as recorded (free text)."),
            Column("dose", "float", description="Dose given, in dose_unit."),
            Column("dose_unit", "str", description="Unit of the dose (mg)."),
            Column("route", "category", values=("IV", "SC", "PO"), description="Route: IV, SC or PO."),
        ),
        parent=("admissions", "admission_id"),
        free_text=("drug_name",),
    ),
    "respiratory_support": Table(
        "respiratory_support", "support episode",
        (
            Column("admission_id", "id", description="Stay of the episode."),
            Column("support", "str", description="Support code: oxygen, hfnc, niv, cpap, imv, ecmo (see support code list)."),
            Column("start_time", "timestamp", description="Episode start."),
            Column("end_time", "timestamp", nullable=True, description="Episode end; empty if ongoing."),
        ),
        parent=("admissions", "admission_id"),
    ),
}

TIMESTAMP_FORMAT = "%Y-%m-%dT%H:%M:%S"
DATE_FORMAT = "%Y-%m-%d"


def extract_path(directory: str, table: str, fmt: str) -> str:
    """Path of a raw extract: ``<dir>/<table>.<format>``."""
    return f"{directory.rstrip('/')}/{table}.{fmt}"
