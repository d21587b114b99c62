"""Made-up patients written by hand for the cohort tests.

``Stay`` describes one admission of an eligible SOC patient by default; a test changes the
fields it needs and :func:`tables` turns a list of stays into the typed tables that the
cohort stage reads (the concepts set as ingest would map them).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import pandas as pd

T = pd.Timestamp


@dataclass
class Stay:
    admission_id: int
    patient_id: int | None = None
    sex: str = "M"
    birth_date: str = "1960-01-01"
    height_cm: float | None = 175.0
    weight_kg: float | None = 80.0
    admit: str = "2021-01-10 08:00"
    discharge: str | None = "2021-01-25 10:00"
    status: str = "home"
    death: str | None = None
    onset: str | None = "2021-01-03"
    icd10: list = field(default_factory=lambda: [("U07.1", "covid19")])
    # (time, concept, dose, dex_factor, route)
    meds: list = field(default_factory=lambda: [
        ("2021-01-10 10:00", "corticosteroid", 6.0, 1.0, "IV"),
        ("2021-01-11 10:00", "corticosteroid", 6.0, 1.0, "IV"),
        ("2021-01-12 10:00", "corticosteroid", 6.0, 1.0, "IV"),
    ])
    # (concept, start, end)
    support: list = field(default_factory=lambda: [
        ("oxygen", "2021-01-10 09:00", "2021-01-11 12:00"),
        ("niv", "2021-01-11 12:00", "2021-01-15 12:00"),
    ])
    # (time, concept, value, result_text)
    labs: list = field(default_factory=lambda: [
        ("2021-01-10 09:00", "sars_cov2_pcr", None, "positive"),
        ("2021-01-11 06:00", "crp", 80.0, None),
    ])

    def __post_init__(self):
        if self.patient_id is None:
            self.patient_id = self.admission_id


T0_DEFAULT = T("2021-01-11 12:00")


def _ts(values):
    return pd.to_datetime(pd.Series(values, dtype="object")).astype("datetime64[s]")


def tables(stays: list[Stay]) -> dict[str, pd.DataFrame]:
    patients = {}
    for s in stays:
        patients[s.patient_id] = (s.patient_id, s.sex, s.birth_date, s.height_cm, s.weight_kg)
    pat = pd.DataFrame(list(patients.values()), columns=["patient_id", "sex", "birth_date", "height_cm", "weight_kg"])
    pat["birth_date"] = _ts(pat["birth_date"])
    pat["height_cm"] = pat["height_cm"].astype(float)
    pat["weight_kg"] = pat["weight_kg"].astype(float)
    adm = pd.DataFrame([(s.admission_id, s.patient_id, s.admit, s.discharge, s.status, s.death, s.onset)
                        for s in stays], columns=["admission_id", "patient_id", "admit_time", "discharge_time",
                                                  "discharge_status", "death_time", "symptom_onset_date"])
    for c in ["admit_time", "discharge_time", "death_time", "symptom_onset_date"]:
        adm[c] = _ts(adm[c])
    dx = pd.DataFrame([(s.admission_id, concept, None) for s in stays for _, concept in s.icd10],
                      columns=["admission_id", "concept", "recorded_time"])
    dx["recorded_time"] = _ts(dx["recorded_time"])
    meds = pd.DataFrame([(s.admission_id, t, c, d, f, r) for s in stays for t, c, d, f, r in s.meds],
                        columns=["admission_id", "given_time", "concept", "dose", "dex_factor", "route"])
    meds["given_time"] = _ts(meds["given_time"])
    meds["dex_factor"] = meds["dex_factor"].astype(float)
    sup = pd.DataFrame([(s.admission_id, c, a, b) for s in stays for c, a, b in s.support],
                       columns=["admission_id", "concept", "start_time", "end_time"])
    sup["start_time"], sup["end_time"] = _ts(sup["start_time"]), _ts(sup["end_time"])
    labs = pd.DataFrame([(s.admission_id, t, c, v, r) for s in stays for t, c, v, r in s.labs],
                        columns=["admission_id", "taken_time", "concept", "value", "result_text"])
    labs["taken_time"] = _ts(labs["taken_time"])
    labs["value"] = labs["value"].astype(float)
    for df in (pat, adm, dx, meds, sup, labs):
        for c in df.columns:
            if df[c].dtype == object:
                df[c] = df[c].astype("string")
    return {"patients": pat, "admissions": adm, "diagnoses": dx, "labs": labs,
            "medications": meds, "respiratory_support": sup}
