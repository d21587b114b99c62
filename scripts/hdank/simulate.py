"""Synthetic hospital extracts with a known answer (protocol section 5).

The simulator writes the six raw tables of :mod:`hdank.contract` for ``n_admissions``
COVID-19 admissions, an answer key and the list of injected defects.  It shares nothing
with the cohort code but the extract contract and the code lists: each admission is made
*by construction* as

* an eligible SOC patient, an eligible HD-ANK patient, or
* an admission that passes every earlier attrition rule of ``docs/data-model.md`` and fails
  exactly one (``study_period`` ... ``no_followup``), or
* ``quarantined``: an extra admission row with a defect that ingest must quarantine.

The answer key is then *derived from the rows that were written* (T0, corticosteroid dose,
baseline labs, end of follow-up, event and time), following the definitions of the data
model, and checked against the construction -- including each admission's first failing
attrition rule, re-derived from the rows -- so that a construction error fails loudly here
(``RuntimeError``) rather than as a puzzling mismatch in the cohort tests.

Confounding: a severity score built from the observed baseline covariates (age,
PaO2/FiO2, CRP, LDH, D-dimer, ferritin, lymphocytes; a missing value counts as average)
drives both treatment (Gumbel top-k sampling of exactly the HD-ANK count among the eligible,
logits ``confounding * severity``) and death (exponential hazard
``h0 * exp(b * severity + log(true_hr) * treated)`` from T0, ``h0`` calibrated so that the
SOC patients' mean 28-day risk is ``baseline_risk28``).

Scale: admissions are generated and appended chunk by chunk (``chunk_size`` per chunk,
chunk ``c`` seeded by ``SeedSequence(seed, spawn_key=(c,))``), all per-chunk work is numpy-
vectorised, and gzip compression runs in a writer thread.  The same arguments give
byte-identical files.

Times are handled internally as float minutes (whole minutes; NaN = missing), relative to
the admission time while an admission is being built and absolute (minutes since
1970-01-01) in the tables.
"""

from __future__ import annotations

import gzip
import logging
import math
import time as _time
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from hdank import io
from hdank.contract import CONTRACT, TABLES, extract_path

LOG = logging.getLogger(__name__)

HOUR = 60.0
DAY = 1440.0

#: Attrition rules of docs/data-model.md, in order (ids shared with the cohort stage).
RULES = (
    "study_period", "adult", "covid_confirmed", "niv_after_steroid", "steroid_dose", "first_stay",
    "invasive_before_t0", "immunomodulator_before_t0", "anakinra_not_high_dose", "anakinra_late",
    "no_followup",
)
#: Construction groups: the two eligible arms, then one group per rule.
GROUPS = ("soc", "hdank") + RULES

#: Share of the excluded admissions given to each rule (most never needed NIV after steroids).
EXCLUSION_WEIGHTS = {
    "study_period": 0.06, "adult": 0.01, "covid_confirmed": 0.05, "niv_after_steroid": 0.70,
    "steroid_dose": 0.04, "first_stay": 0.02, "invasive_before_t0": 0.03,
    "immunomodulator_before_t0": 0.03, "anakinra_not_high_dose": 0.02, "anakinra_late": 0.02,
    "no_followup": 0.02,
}
#: Groups whose earlier stay can make a later stay fail ``first_stay`` (they meet rules 1-5
#: and their outcome can be forced to an alive discharge without touching the estimand).
FIRST_STAY_PARTNERS = ("invasive_before_t0", "immunomodulator_before_t0", "anakinra_not_high_dose")
#: Groups whose earlier stay fails a rule 1-5, so that the patient's later stay still counts.
EARLIER_FAILED_PARTNERS = ("niv_after_steroid", "steroid_dose")

#: Defaults of the ``synthetic`` config section (workflow/schemas/config.schema.yaml).
DEFAULTS: dict[str, Any] = {
    "seed": 20230919, "n_admissions": 2000, "eligible_share": {"soc": 0.073, "hdank": 0.055},
    "true_hr": 1.0, "confounding": 0.5, "baseline_risk28": 0.30, "chunk_size": 100_000,
    "defect_rates": {"duplicate_row": 0.01, "unit_variant": 0.10, "unknown_unit": 0.002,
                     "unparsable_value": 0.002, "impossible_interval": 0.002, "orphan_key": 0.002},
}

#: Defect reasons written to defects.json, per table.
REASONS: dict[str, tuple[str, ...]] = {
    "patients": ("duplicate_row",),
    "admissions": ("duplicate_row", "discharge_before_admission", "death_after_discharge", "orphan_key"),
    "diagnoses": ("duplicate_row", "orphan_key"),
    "labs": ("duplicate_row", "unit_variant", "unknown_unit", "unparsable_value", "orphan_key"),
    "medications": ("duplicate_row", "orphan_key"),
    "respiratory_support": ("duplicate_row", "episode_end_before_start", "orphan_key"),
}

#: Log-hazard of death per SD of the severity score.
SEVERITY_LOG_HR = 0.8
#: Weight of each standardised observed covariate in the severity score.
SEVERITY_WEIGHTS = {"age": 0.35, "pf_ratio": -0.35, "crp": 0.25, "ldh": 0.20, "d_dimer": 0.20,
                    "ferritin": 0.15, "lymphocytes": -0.20}
AGE_MEAN, AGE_SD = 66.0, 13.0


@dataclass(frozen=True)
class LabSpec:
    """How one baseline lab is generated: ``centre + loading * L + sd * e`` on its scale."""

    log: bool
    centre: float
    sd: float
    loading: float
    lo: float
    hi: float
    decimals: int

    @property
    def total_sd(self) -> float:
        """SD of the lab on its scale (latent and own noise)."""
        return math.hypot(self.sd, self.loading)


#: Lab covariates (code-list concepts), generated from a latent severity factor L ~ N(0, 1).
LABS: dict[str, LabSpec] = {
    "pf_ratio": LabSpec(False, 150, 40, -35, 40, 450, 0),
    "crp": LabSpec(True, 90, 0.55, 0.35, 1, 500, 1),
    "ferritin": LabSpec(True, 900, 0.7, 0.3, 20, 30000, 0),
    "lymphocytes": LabSpec(True, 0.75, 0.45, -0.25, 0.05, 6, 2),
    "ldh": LabSpec(False, 420, 110, 80, 120, 2500, 0),
    "d_dimer": LabSpec(True, 1100, 0.8, 0.35, 150, 60000, 0),
    "creatinine": LabSpec(True, 0.95, 0.35, 0.05, 0.3, 12, 2),
}
LAB_NAMES = tuple(LABS)
#: Labs measured again after T0 (fewer analytes, to keep ~10-25 lab rows per admission).
POST_T0_LABS = ("pf_ratio", "crp", "lymphocytes", "creatinine")

#: Comorbidity prevalence at age 66 and log-odds per 10 years of age.
COMORBIDITY = {"hypertension": (0.55, 0.45), "diabetes": (0.28, 0.15), "ckd": (0.12, 0.40),
               "chronic_lung": (0.15, 0.15), "cardiovascular": (0.25, 0.45), "cancer": (0.08, 0.20)}
#: Extra ICD-10 codes of COVID-19 stays that map to no concept (used only if unmapped).
NOISE_ICD10 = ("J12.8", "J96.0", "N17.9", "E87.1", "R06.0")
#: "COVID-19, virus not identified": must not confirm COVID-19 (used only if unmapped).
UNCONFIRMED_COVID_ICD10 = "U07.2"
UNPARSABLE_VALUES = ("n/a", "<5,0", "pending", "haemolysed", "?")
UNKNOWN_UNIT_CANDIDATES = ("mmol/L", "IU/mL", "g/dL", "%")
#: Corticosteroid name by dexamethasone-equivalent daily dose (6 / factor of the ATC row).
STEROID_NAMES = {6: "dexamethasone", 32: "methylprednisolone", 40: "prednisolone", 160: "hydrocortisone"}
#: Display name, dose (mg), route and interval (h; 0 = single dose) of other immunomodulators,
#: keyed by ATC code.  Only used for the free-text drug name and a plausible dose; the codes
#: themselves are always taken from atc.csv (concept ``other_immunomodulator``).
IMMUNOMODULATOR_LABELS = {
    "L04AC07": ("tocilizumab", 600.0, "IV", 0), "L04AC14": ("sarilumab", 400.0, "IV", 0),
    "L04AF02": ("baricitinib", 4.0, "PO", 24), "L04AA37": ("baricitinib", 4.0, "PO", 24),
}


# ================================================================================ code lists
@dataclass(frozen=True)
class Vocab:
    """Codes picked from the code lists by concept (nothing here is hard-coded)."""

    covid_icd: tuple[str, ...]
    comorbidity_icd: dict[str, tuple[str, ...]]
    noise_icd: tuple[str, ...]
    unconfirmed_icd: tuple[str, ...]
    lab_loinc: dict[str, str]
    pcr_loinc: tuple[str, ...]
    pcr_text: dict[str, tuple[str, ...]]
    canonical_unit: dict[str, str]
    unit_variants: dict[str, tuple[tuple[str, float], ...]]
    unknown_units: dict[str, tuple[str, ...]]
    steroid_code: dict[int, str]
    steroid_factor: dict[str, float]
    anakinra: str
    remdesivir: str
    immunomodulators: tuple[str, ...]
    dose_unit: dict[str, str]
    support: dict[str, tuple[str, ...]]


def load_vocab(codelists_dir: str | Path) -> Vocab:
    """Read the code lists and pick the codes the simulator writes, by concept.

    Parameters
    ----------
    codelists_dir : folder holding icd10.csv, loinc.csv, units.csv, atc.csv, support.csv and
        pcr_results.csv.

    Returns
    -------
    Vocab
    """
    d = Path(codelists_dir)
    icd, loinc, units, atc, support, pcr = (
        pd.read_csv(d / f"{name}.csv", dtype=str, keep_default_na=False)
        for name in ("icd10", "loinc", "units", "atc", "support", "pcr_results"))
    prefixes = tuple(c.replace(".", "").upper() for c in icd["code"])

    def unmapped(code: str) -> bool:  # maps to no concept under prefix matching
        return not code.replace(".", "").upper().startswith(prefixes)

    lab_loinc = {c: _codes(loinc, c, d)[0] for c in LAB_NAMES}
    canonical, variants, unknown = _lab_units(loinc, units, lab_loinc)
    steroid_code, steroid_factor = _steroid_codes(atc, d)
    return Vocab(
        covid_icd=_codes(icd, "covid19", d),
        comorbidity_icd={c: _codes(icd, c, d) for c in (*COMORBIDITY, "obesity")},
        noise_icd=tuple(c for c in NOISE_ICD10 if unmapped(c)),
        unconfirmed_icd=tuple(c for c in (UNCONFIRMED_COVID_ICD10,) if unmapped(c)),
        lab_loinc=lab_loinc,
        pcr_loinc=_codes(loinc, "sars_cov2_pcr", d),
        pcr_text={"positive": _codes(pcr, "positive", d), "negative": _codes(pcr, "negative", d)},
        canonical_unit=canonical,
        unit_variants=variants,
        unknown_units=unknown,
        steroid_code=steroid_code,
        steroid_factor=steroid_factor,
        anakinra=_codes(atc, "anakinra", d)[0],
        remdesivir=_codes(atc, "remdesivir", d)[0],
        immunomodulators=_codes(atc, "other_immunomodulator", d),
        dose_unit=dict(zip(atc["code"], atc["unit"])),
        support={c: _codes(support, c, d) for c in ("oxygen", "hfnc", "niv", "invasive")},
    )


def _codes(table: pd.DataFrame, concept: str, where: Path) -> tuple[str, ...]:
    """Codes of ``concept`` in a code list (error if there are none)."""
    found = tuple(table.loc[table["concept"] == concept, "code"])
    if not found:
        raise ValueError(f"code lists in {where}: no code for concept '{concept}'")
    return found


def _lab_units(loinc: pd.DataFrame, units: pd.DataFrame, lab_loinc: dict[str, str]
               ) -> tuple[dict[str, str], dict[str, tuple[tuple[str, float], ...]], dict[str, tuple[str, ...]]]:
    """Canonical unit, convertible variants (unit, factor) and unknown units of each lab."""
    canonical = {c: loinc.loc[loinc["code"] == code, "unit"].iloc[0] for c, code in lab_loinc.items()}
    variants, unknown = {}, {}
    for concept in lab_loinc:
        rows = units[units["concept"] == concept]
        variants[concept] = tuple((u, float(f)) for u, f in zip(rows["unit"], rows["factor"])
                                  if u != canonical[concept])
        known = {u.lower() for u in rows["unit"]}
        unknown[concept] = tuple(u for u in UNKNOWN_UNIT_CANDIDATES if u.lower() not in known) or ("arb.u.",)
    return canonical, variants, unknown


def _steroid_codes(atc: pd.DataFrame, where: Path) -> tuple[dict[int, str], dict[str, float]]:
    """Corticosteroid code by dexamethasone-equivalent dose (6 / factor), and factor by code."""
    rows = atc[atc["concept"] == "corticosteroid"]
    factor = {c: float(f) for c, f in zip(rows["code"], rows["factor"])}
    by_dose: dict[int, str] = {}
    for code, f in factor.items():
        by_dose.setdefault(int(round(6.0 / f)), code)
    if 6 not in by_dose:
        raise ValueError(f"code lists in {where}: no corticosteroid with factor 1 (dexamethasone)")
    return by_dose, factor


# ===================================================================================== study
@dataclass(frozen=True)
class Study:
    """The ``study`` config section in simulator units (days since epoch, minutes)."""

    start_day: int
    end_day: int
    min_age: int
    pcr_before: float
    pcr_after: float
    steroid_min: float
    grace: float
    followup: float
    window: float
    hd_mg_per_kg: float
    hd_mg_no_weight: float
    hd_window: float

    @classmethod
    def from_config(cls, study: dict) -> "Study":
        """Parse the ``study`` config dict (defaults of the config schema where absent)."""
        get = study.get
        return cls(
            start_day=_day_number(study["period_start"]), end_day=_day_number(study["period_end"]),
            min_age=int(get("min_age", 18)),
            pcr_before=float(get("pcr_days_before_admission", 14)) * DAY,
            pcr_after=float(get("pcr_days_after_admission", 2)) * DAY,
            steroid_min=float(get("steroid_min_dex_mg", 6)),
            grace=float(get("grace_hours", 48)) * HOUR,
            followup=float(get("followup_days", 28)) * DAY,
            window=float(get("baseline_window_hours", 72)) * HOUR,
            hd_mg_per_kg=float(get("hdank_min_mg_per_kg", 5)),
            hd_mg_no_weight=float(get("hdank_min_mg_no_weight", 400)),
            hd_window=float(get("hdank_dose_window_hours", 24)) * HOUR,
        )


def _day_number(value: Any) -> int:
    return int(np.datetime64(str(value), "D").astype(np.int64))


@dataclass
class Ctx:
    """Everything one chunk needs: its generator, the code lists, the study and the knobs."""

    rng: np.random.Generator
    vocab: Vocab
    study: Study
    true_hr: float
    confounding: float
    baseline_risk28: float
    defect_rates: dict[str, float]
    id_base: int
    id_block: int

    def uniform(self, lo: Any, hi: Any, n: int) -> np.ndarray:
        """Uniform draws in [lo, hi); NaN bounds give NaN (no error)."""
        return lo + (np.asarray(hi, dtype=float) - lo) * self.rng.random(n)

    def chance(self, p: Any, n: int) -> np.ndarray:
        """``n`` independent events of probability ``p``."""
        return self.rng.random(n) < p

    def pick(self, options: tuple | list, n: int) -> np.ndarray:
        """``n`` uniform picks from ``options`` (object array)."""
        return np.asarray(options, dtype=object)[self.rng.integers(0, len(options), n)]


# ====================================================================================== plan
@dataclass(frozen=True)
class ChunkPlan:
    """Admissions of one chunk and how many are built in each group."""

    index: int
    n: int
    counts: dict[str, int]


def plan_chunks(n_admissions: int, chunk_size: int, eligible_share: dict) -> list[ChunkPlan]:
    """Split the admissions into chunks and the groups across chunks, deterministically.

    The eligible counts are ``round(n_admissions * share)`` in total and are spread over the
    chunks by cumulative rounding; the other admissions of a chunk are spread over the
    exclusion rules by :data:`EXCLUSION_WEIGHTS` (largest remainder).

    Parameters
    ----------
    n_admissions, chunk_size : sizes.
    eligible_share : ``{"soc": share, "hdank": share}``.

    Returns
    -------
    list of ChunkPlan
    """
    if n_admissions < 1 or chunk_size < 1:
        raise ValueError("n_admissions and chunk_size must be positive")
    totals = {arm: round(n_admissions * float(eligible_share[arm])) for arm in ("soc", "hdank")}
    if totals["soc"] + totals["hdank"] > n_admissions or min(totals.values()) < 1:
        raise ValueError(f"eligible shares {eligible_share} do not fit {n_admissions} admissions")
    bounds = list(range(0, n_admissions, chunk_size)) + [n_admissions]
    plans = []
    for index, (lo, hi) in enumerate(zip(bounds[:-1], bounds[1:])):
        counts = {arm: _cumulative(total, hi, n_admissions) - _cumulative(total, lo, n_admissions)
                  for arm, total in totals.items()}
        counts.update(_largest_remainder(hi - lo - counts["soc"] - counts["hdank"], EXCLUSION_WEIGHTS))
        pool = sum(counts[g] for g in FIRST_STAY_PARTNERS)
        if counts["first_stay"] > pool:  # tiny chunks: not enough earlier stays to link to
            counts["niv_after_steroid"] += counts["first_stay"] - pool
            counts["first_stay"] = pool
        plans.append(ChunkPlan(index, hi - lo, counts))
    return plans


def _cumulative(total: int, upto: int, n: int) -> int:
    """``total * upto / n`` rounded half up, in integers."""
    return (2 * total * upto + n) // (2 * n)


def _largest_remainder(n: int, weights: dict[str, float]) -> dict[str, int]:
    if n < 0:
        raise ValueError("eligible shares exceed the chunk")
    keys = list(weights)
    w = np.array([weights[k] for k in keys]) / sum(weights.values())
    base = np.floor(w * n).astype(int)
    order = np.argsort(-(w * n - base), kind="stable")
    base[order[: n - base.sum()]] += 1
    return dict(zip(keys, base.tolist()))


# ============================================================================ calendar helpers
def _ymd(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    d = np.asarray(days, dtype=np.int64).astype("datetime64[D]")
    months = d.astype("datetime64[M]")
    years = d.astype("datetime64[Y]")
    return (years.astype(np.int64) + 1970, (months - years).astype(np.int64) + 1,
            (d - months).astype(np.int64) + 1)


def _years_before(days: np.ndarray, years: np.ndarray) -> np.ndarray:
    """Same calendar day ``years`` earlier (29 February becomes the 28th)."""
    y, m, d = _ymd(days)
    month = ((y - years - 1970) * 12 + m - 1).astype("datetime64[M]")
    length = ((month + 1).astype("datetime64[D]") - month.astype("datetime64[D]")).astype(np.int64)
    return month.astype("datetime64[D]").astype(np.int64) + np.minimum(d, length) - 1


def completed_years(birth_day: np.ndarray, on_day: np.ndarray) -> np.ndarray:
    """Age in completed years on ``on_day`` of people born on ``birth_day`` (day numbers)."""
    by, bm, bd = _ymd(birth_day)
    y, m, d = _ymd(on_day)
    return y - by - ((m < bm) | ((m == bm) & (d < bd))).astype(np.int64)


def _minutes(x: Any) -> np.ndarray:
    return np.round(np.asarray(x, dtype=np.float64))


def stack_rows(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """Concatenate row frames column by column with numpy.

    Much faster than :func:`pandas.concat` when object columns are entirely missing in some
    frames; a column absent from a frame is filled with NaN (numbers) or None (text).
    """
    columns = list(dict.fromkeys(c for f in frames for c in f.columns))
    out = {}
    for col in columns:
        text = any(f[col].dtype == object for f in frames if col in f.columns)
        fill = None if text else np.nan
        parts = [f[col].to_numpy() if col in f.columns else np.full(len(f), fill, dtype=object if text else float)
                 for f in frames]
        out[col] = np.concatenate([p.astype(object) if text and p.dtype != object else p for p in parts])
    return pd.DataFrame(out)


# ================================================================= admissions: who and when
def _groups(ctx: Ctx, plan: ChunkPlan) -> pd.DataFrame:
    """One row per admission of the chunk with its construction group, shuffled."""
    group = np.repeat(np.array(GROUPS, dtype=object), [plan.counts[g] for g in GROUPS])
    group = group[ctx.rng.permutation(len(group))]
    a = pd.DataFrame({"group": group})
    a["status"] = np.where(np.isin(group, ("soc", "hdank")), "eligible", group)
    a["el"] = a["group"] != "niv_after_steroid"  # has a T0 by construction
    return a


def _link_stays(ctx: Ctx, a: pd.DataFrame) -> pd.DataFrame:
    """Pair later stays with an earlier stay of the same patient.

    Every ``first_stay`` admission is the later stay of a patient whose earlier stay met
    rules 1-5; a few eligible admissions are the later stay of a patient whose earlier stay
    failed rule 4 or 5 (so the later one still counts).
    """
    partner = np.full(len(a), -1)
    used = np.zeros(len(a), bool)

    def link(later: np.ndarray, pool_groups: tuple[str, ...]) -> None:
        pool = np.flatnonzero(a["group"].isin(pool_groups).to_numpy() & ~used)
        take = min(len(later), len(pool))
        chosen = ctx.rng.choice(pool, take, replace=False) if take else pool[:0]
        partner[later[:take]] = chosen
        used[chosen] = True

    link(np.flatnonzero(a["group"].to_numpy() == "first_stay"), FIRST_STAY_PARTNERS)
    eligible = np.flatnonzero(a["status"].to_numpy() == "eligible")
    n_later = min(len(eligible), max(1, round(0.02 * len(eligible)))) if len(eligible) >= 20 else 0
    link(ctx.rng.choice(eligible, n_later, replace=False) if n_later else eligible[:0],
         EARLIER_FAILED_PARTNERS)
    a["partner"] = partner
    a["is_partner"] = used
    return a


def _modes(ctx: Ctx, a: pd.DataFrame) -> pd.DataFrame:
    """Planned way the stay ends: home, transfer (early, independent censoring) or in hospital."""
    n = len(a)
    u = ctx.rng.random(n)
    mode = np.where(u < 0.05, "transfer", np.where(u < 0.07, "in_hospital", "home")).astype(object)
    mode[a["is_partner"].to_numpy()] = np.where(ctx.chance(0.9, int(a["is_partner"].sum())), "home", "transfer")
    nf = np.flatnonzero(a["group"].to_numpy() == "no_followup")
    mode[nf] = np.array(["died", "transfer", "in_hospital"], dtype=object)[np.arange(len(nf)) % 3]
    a["mode"] = mode
    return a


def _wave_day_weights(n_days: int) -> np.ndarray:
    """Relative admissions per day over the study period: a few COVID-19 waves."""
    x = (np.arange(n_days) + 0.5) / n_days
    waves = ((0.04, 0.03, 1.0), (0.28, 0.05, 1.2), (0.38, 0.05, 1.5), (0.55, 0.05, 0.8),
             (0.68, 0.05, 1.0), (0.80, 0.04, 1.6), (0.93, 0.05, 0.7))
    w = 0.15 + sum(h * np.exp(-0.5 * ((x - c) / s) ** 2) for c, s, h in waves)
    return w / w.sum()


def _admit_times(ctx: Ctx, a: pd.DataFrame) -> pd.DataFrame:
    """Absolute admission times (minutes since epoch) and the gap to a linked later stay."""
    st, n = ctx.study, len(a)
    n_days = st.end_day - st.start_day + 1
    day = st.start_day + ctx.rng.choice(n_days, n, p=_wave_day_weights(n_days))
    clock = np.where(ctx.chance(0.7, n), ctx.rng.normal(14 * HOUR, 4 * HOUR, n), ctx.uniform(0, DAY, n))
    clock = np.clip(_minutes(clock), 0, DAY - 1)

    late = a["mode"].to_numpy() == "in_hospital"  # still admitted at extraction: late in the period
    day[late] = st.end_day - ctx.rng.integers(0, min(45, n_days), late.sum())

    outside = np.flatnonzero(a["group"].to_numpy() == "study_period")
    before = ctx.chance(0.5, len(outside))
    day[outside] = np.where(before, st.start_day - ctx.rng.integers(1, 91, len(outside)),
                            st.end_day + ctx.rng.integers(1, 121, len(outside)))
    if len(outside) >= 2:  # the first minute after the period, the last minute before it
        day[outside[:2]] = (st.end_day + 1, st.start_day - 1)
        clock[outside[:2]] = (0, DAY - 1)
    inside_edge = np.flatnonzero((a["status"].to_numpy() == "eligible") & (a["partner"].to_numpy() < 0)
                                 & ~a["is_partner"].to_numpy() & ~late)[:1]
    day[inside_edge], clock[inside_edge] = st.end_day, DAY - 30  # last half hour of the period

    # linked stays: the later stay at least `gap` days after the earlier one, both in the period
    later = np.flatnonzero(a["partner"].to_numpy() >= 0)
    earlier = a["partner"].to_numpy()[later]
    max_gap = max(2, min(240, (n_days - 2) // 2))
    gap = ctx.rng.integers(min(60, max_gap - 1), max_gap, len(later))
    day[later] = st.start_day + gap + ctx.rng.integers(0, np.maximum(1, n_days - gap))
    day[earlier] = day[later] - gap
    a["admit"] = day * DAY + clock
    a["partner_cap"] = np.nan  # latest end (relative minutes) of an earlier stay
    cap = a["partner_cap"].to_numpy()
    cap[earlier] = (day[later] - day[earlier] - 1) * DAY - clock[earlier]
    a["partner_cap"] = cap
    return a


# ======================================================================= patients and traits
def _patient_traits(ctx: Ctx, a: pd.DataFrame) -> pd.DataFrame:
    """Sex, height, weight and birth date, shared by the stays of one patient."""
    n, rng = len(a), ctx.rng
    u = rng.random(n)
    sex = np.where(u < 0.40, "F", np.where(u < 0.995, "M", "U")).astype(object)
    height = np.where(sex == "F", rng.normal(163, 6.5, n), rng.normal(176, 7, n))
    height = np.clip(height, 140, 205)
    bmi = np.clip(np.exp(rng.normal(math.log(28), 0.18, n)), 17, 60)
    weight = np.round(np.clip(bmi * (height / 100) ** 2, 45, 200), 1)
    height = np.round(height)
    height[ctx.chance(0.18, n)] = np.nan
    weight[ctx.chance(0.12, n)] = np.nan

    group = a["group"].to_numpy()
    age = np.where(a["el"].to_numpy(), rng.normal(AGE_MEAN, AGE_SD, n), rng.normal(60, 17, n))
    age = np.clip(np.round(age), 19, 99).astype(np.int64)
    offset = rng.integers(0, 365, n)  # days since the last birthday
    minors = np.flatnonzero(group == "adult")
    age[minors] = rng.integers(max(0, ctx.study.min_age - 6), ctx.study.min_age, len(minors))
    if len(minors):  # turns adult the day after admission
        age[minors[0]], offset[minors[0]] = ctx.study.min_age - 1, 364
    edge = np.flatnonzero((a["status"].to_numpy() == "eligible") & (a["partner"].to_numpy() < 0))[1:2]
    age[edge], offset[edge] = ctx.study.min_age, 0  # birthday on the day of admission

    admit_day = (a["admit"].to_numpy() // DAY).astype(np.int64)
    birth = _years_before(admit_day, age) - offset
    later = np.flatnonzero(a["partner"].to_numpy() >= 0)
    earlier = a["partner"].to_numpy()[later]
    for arr in (sex, height, weight, birth):
        arr[later] = arr[earlier]
    a["sex"], a["height_cm"], a["weight_kg"], a["birth_day"] = sex, height, weight, birth
    a["age"] = completed_years(birth, admit_day)
    onset = admit_day - np.clip(np.round(rng.gamma(3.0, 2.5, n)), 0, 21)
    a["onset_day"] = np.where(ctx.chance(0.15, n), np.nan, onset)
    return a


# ================================================================================== timeline
def _snap_clock(admit: np.ndarray, rel: np.ndarray, lo: float, hi: float, u: np.ndarray) -> np.ndarray:
    """Move ``rel`` forward (< 1 day) so that its clock time lies in [lo, hi) minutes."""
    target = lo + np.floor(u * (hi - lo))
    return rel + np.mod(target - np.mod(admit + rel, DAY), DAY)


#: Corticosteroid regimens: drug (by dexamethasone-equivalent mg), share of the standard daily
#: equivalent per dose, and dosing interval (hours).  ``low_*``, ``split_straddle`` and
#: ``hydro_partial`` never reach the minimum on a calendar day before T0.
REGIMENS = {
    "dex": (6, 1.0, 24), "methylpred": (32, 1.0, 24), "pred": (40, 1.0, 24), "hydro": (160, 0.3125, 6),
    "split_same_day": (6, 0.5, 12), "low_dex": (6, 2 / 3, 24), "low_pred": (40, 0.625, 24),
    "split_straddle": (6, 0.5, 12), "hydro_partial": (160, 0.3125, 6),
}


def _steroid_kind(ctx: Ctx, group: np.ndarray) -> np.ndarray:
    """Regimen of each stay: standard for eligible-like stays, too low for ``steroid_dose``."""
    u = ctx.rng.random(len(group))
    low = group == "steroid_dose"
    kind = np.select(
        [low & (u < 0.55), low & (u < 0.70), low & (u < 0.85), low,
         u < 0.80, u < 0.86, u < 0.91, u < 0.96],
        ["low_dex", "low_pred", "split_straddle", "hydro_partial",
         "dex", "methylpred", "pred", "hydro"], default="split_same_day").astype(object)
    for name, (mg, _, _) in REGIMENS.items():  # drug missing from the code list: dexamethasone
        if mg not in ctx.vocab.steroid_code:
            kind[kind == name] = "low_dex" if name.startswith(("low", "hydro_partial")) else "dex"
    return kind


def _steroid_timing(ctx: Ctx, admit: np.ndarray, kind: np.ndarray, s: np.ndarray, gap: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Clock time of the first dose and time to T0 that make each regimen do what it should."""
    n = len(kind)
    u = ctx.rng.random(n)
    straddle = kind == "split_straddle"  # half dose q12h from the evening: each day below minimum
    s = np.where(straddle, _snap_clock(admit, s, 18 * HOUR, 23 * HOUR, u), s)
    gap = np.where(straddle, _minutes(ctx.uniform(12 * HOUR + 1, 23 * HOUR, n)), gap)
    partial = kind == "hydro_partial"  # q6h from the morning, NIV the same day: 3 doses at most
    s = np.where(partial, _snap_clock(admit, s, 7 * HOUR, 12 * HOUR, u), s)
    gap = np.where(partial, _minutes(ctx.uniform(HOUR, 17 * HOUR, n)), gap)
    same_day = kind == "split_same_day"  # half dose q12h from the morning, both before T0
    s = np.where(same_day, _snap_clock(admit, s, 6 * HOUR, 11 * HOUR, u), s)
    gap = np.where(same_day, np.maximum(gap, 12 * HOUR + 1), gap)
    full = kind == "hydro"  # q6h: T0 after the first full calendar day
    next_midnight = DAY - np.mod(admit + s, DAY)
    gap = np.where(full, np.maximum(gap, next_midnight + DAY + _minutes(ctx.uniform(HOUR, 20 * HOUR, n))), gap)
    return s, gap


def _steroid_plan(ctx: Ctx, a: pd.DataFrame) -> pd.DataFrame:
    """Corticosteroid start S, T0 and the regimen of every stay with a T0 (relative minutes).

    Eligible-like stays get a regimen whose dexamethasone-equivalent reaches the minimum on a
    calendar day before T0; ``steroid_dose`` stays get one that never does (low dose, split
    doses straddling midnight, or a partial first day of hydrocortisone).
    """
    n, rng = len(a), ctx.rng
    group = a["group"].to_numpy()
    s = np.clip(_minutes(np.exp(rng.normal(math.log(6 * HOUR), 1.0, n))), 10, 4 * DAY)
    gap = np.clip(_minutes(np.exp(rng.normal(math.log(28 * HOUR), 0.8, n))), 30, 8 * DAY)
    gap = np.where(group == "invasive_before_t0", np.maximum(gap, 6 * HOUR), gap)
    kind = _steroid_kind(ctx, group)
    s, gap = _steroid_timing(ctx, a["admit"].to_numpy(), kind, s, gap)

    regimen = pd.DataFrame.from_dict(REGIMENS, orient="index", columns=["mg", "share", "hours"]).reindex(kind)
    code = regimen["mg"].map(ctx.vocab.steroid_code).to_numpy(dtype=object)
    factor = pd.Series(code).map(ctx.vocab.steroid_factor).to_numpy(dtype=float)
    a["steroid_code"] = code
    a["steroid_dose"] = np.round(ctx.study.steroid_min * regimen["share"].to_numpy() / factor, 3)
    a["steroid_interval"] = regimen["hours"].to_numpy(dtype=float) * HOUR
    oral = (code == ctx.vocab.steroid_code.get(40)) | ((code == ctx.vocab.steroid_code[6]) & ctx.chance(0.4, n))
    a["steroid_route"] = np.where(oral, "PO", "IV").astype(object)
    a["S"], a["T0"], a["steroid_kind"] = s, s + gap, kind
    return a


def _el_episodes(ctx: Ctx, a: pd.DataFrame) -> pd.DataFrame:
    """Oxygen, HFNC, early NIV and pre-T0 invasive episodes of stays with a T0 (relative)."""
    n = len(a)
    s, t0 = a["S"].to_numpy(), a["T0"].to_numpy()
    o0 = _minutes(ctx.uniform(0, 1, n) * np.minimum(90, t0 - 10))
    a["o0"] = o0
    hfnc = ctx.chance(0.4, n) & (t0 - o0 >= HOUR)
    a["hfnc0"] = np.where(hfnc, _minutes(o0 + (t0 - o0) * ctx.uniform(0.4, 0.9, n)), np.nan)

    u = ctx.rng.random(n)
    same = (u < 0.03) & (t0 - s >= 2 * HOUR)  # a NIV episode at the very minute of the first steroid
    before = (u >= 0.03) & (u < 0.06) & (s >= HOUR)  # a NIV episode that starts before the steroid
    a["niv_pre0"] = np.where(same, s, np.where(before, _minutes(s * ctx.uniform(0.2, 0.6, n)), np.nan))
    a["niv_pre1"] = np.where(same, _minutes(s + (t0 - s) * 0.5),
                             np.where(before, _minutes(s + (t0 - s) * ctx.uniform(0.1, 0.5, n)), np.nan))

    inv = a["group"].to_numpy() == "invasive_before_t0"
    a["inv0"] = np.where(inv, _minutes(o0 + (t0 - o0) * ctx.uniform(0.1, 0.3, n)), np.nan)
    a["inv1"] = np.where(inv, _minutes(o0 + (t0 - o0) * ctx.uniform(0.5, 0.8, n)), np.nan)
    a["inv_code"] = np.where(ctx.chance(0.9, n), ctx.vocab.support["invasive"][0],
                             ctx.pick(ctx.vocab.support["invasive"], n))
    a.loc[inv, "hfnc0"] = a.loc[inv, "inv1"]  # post-extubation HFNC until NIV
    a["niv_code"] = ctx.pick(ctx.vocab.support["niv"], n)
    return a


def _not_course(ctx: Ctx, a: pd.DataFrame) -> pd.DataFrame:
    """Stays that never get NIV after a corticosteroid (rule ``niv_after_steroid``).

    Variants: steroid and oxygen only; no steroid (with or without oxygen or NIV); NIV that
    starts before the first steroid, or at the same minute; HFNC then intubation without NIV.
    The whole stay, including its end, is built here.
    """
    rng, n = ctx.rng, len(a)
    los = np.clip(_minutes(np.exp(rng.normal(math.log(7 * DAY), 0.6, n))), DAY, 60 * DAY)
    cap = a["partner_cap"].to_numpy()
    los = np.where(np.isnan(cap), los, np.minimum(los, np.maximum(cap, DAY)))
    u = rng.random(n)
    variant = np.select([u < 0.62, u < 0.77, u < 0.82, u < 0.88, u < 0.92],
                        ["o2", "no_steroid", "niv_no_steroid", "niv_before", "niv_same"],
                        default="hfnc_imv").astype(object)
    has_steroid = ~np.isin(variant, ("no_steroid", "niv_no_steroid"))
    s = _minutes(np.minimum(np.exp(rng.normal(math.log(6 * HOUR), 1.0, n)), 0.3 * los) + 5)
    a["S"] = np.where(has_steroid, s, np.nan)
    a["T0"] = np.nan
    a["steroid_code"] = ctx.vocab.steroid_code[6]
    a["steroid_dose"] = ctx.study.steroid_min
    a["steroid_interval"] = DAY
    a["steroid_route"] = np.where(ctx.chance(0.4, n), "PO", "IV").astype(object)
    a["steroid_kind"] = "dex"

    o0 = _minutes(ctx.uniform(0, 90, n))
    oxygen = (variant != "no_steroid") | ctx.chance(0.5, n)
    a["o0"] = np.where(oxygen, o0, np.nan)
    a["o1"] = np.where(oxygen, _minutes(o0 + (los - o0) * ctx.uniform(0.3, 0.9, n)), np.nan)
    niv0 = np.select([variant == "niv_before", variant == "niv_same", variant == "niv_no_steroid"],
                     [_minutes(s * ctx.uniform(0.1, 0.9, n)), s, _minutes(los * ctx.uniform(0.1, 0.5, n))],
                     default=np.nan)
    a["niv_pre0"] = niv0
    a["niv_pre1"] = np.where(np.isnan(niv0), np.nan, _minutes(niv0 + (los - niv0) * ctx.uniform(0.2, 0.6, n)))
    a["niv_code"] = ctx.pick(ctx.vocab.support["niv"], n)
    imv = variant == "hfnc_imv"
    a["hfnc0"] = np.where(imv, _minutes(s + (los - s) * ctx.uniform(0.05, 0.3, n)), np.nan)
    a["inv0"] = np.where(imv, _minutes(s + (los - s) * ctx.uniform(0.35, 0.6, n)), np.nan)
    a["inv1"] = np.where(imv, _minutes(s + (los - s) * ctx.uniform(0.7, 0.95, n)), np.nan)
    a["inv_code"] = ctx.vocab.support["invasive"][0]

    died = ctx.chance(np.where(imv, 0.35, 0.06), n) & ~a["is_partner"].to_numpy()
    mode = a["mode"].to_numpy()
    a["end"] = los
    a["discharge_status"] = np.where(died, "died", mode).astype(object)
    a["niv_variant"] = variant
    return a


# ================================================================================ labs: panels
@dataclass
class Panel:
    """One lab panel per admission: a time (relative; NaN = none) and values (NaN = not done)."""

    name: str
    time: np.ndarray
    values: np.ndarray  # (n, len(LAB_NAMES)), canonical units


def _lab_values(ctx: Ctx, latent: np.ndarray, shift: np.ndarray, spread: float) -> np.ndarray:
    """Lab values around the latent factor; ``shift``/``spread`` move a panel off baseline."""
    n = len(latent)
    out = np.empty((n, len(LAB_NAMES)))
    for j, name in enumerate(LAB_NAMES):
        spec = LABS[name]
        z = spec.loading * (latent + shift) + spec.sd * ctx.rng.normal(0, 1, n) * spread
        raw = np.exp(math.log(spec.centre) + z) if spec.log else spec.centre + z
        out[:, j] = np.round(np.clip(raw, spec.lo, spec.hi), spec.decimals)
    return out


def _present(ctx: Ctx, time: np.ndarray, p: float, columns: tuple[str, ...] = LAB_NAMES) -> np.ndarray:
    mask = ctx.rng.random((len(time), len(LAB_NAMES))) < p
    mask[:, [j for j, c in enumerate(LAB_NAMES) if c not in columns]] = False
    mask[np.isnan(time)] = False
    return mask


def _pre_t0_panels(ctx: Ctx, a: pd.DataFrame) -> list[Panel]:
    """Admission, intermediate and baseline panels (all before T0 where there is a T0).

    Some patients have no baseline panel and an intermediate panel exactly at T0 - window
    (inside) or a minute earlier (outside), to test the closed window.
    """
    n, rng, st = len(a), ctx.rng, ctx.study
    el = a["el"].to_numpy()
    t0 = a["T0"].to_numpy()
    latent = np.where(el, rng.normal(0, 1, n), rng.normal(-1, 1, n))
    a["latent"] = latent
    base_t = _minutes(t0 - np.minimum(12 * HOUR, 0.5 * t0) * ctx.uniform(0.05, 1, n))
    base_t = np.where(el, np.minimum(base_t, t0 - 10), np.nan)
    adm_t = np.where(el, _minutes(ctx.uniform(0.1, 0.9, n) * np.minimum(180, base_t - 10)),
                     _minutes(ctx.uniform(20, 180, n)))
    mid_t = np.where(el, _minutes(t0 - ctx.uniform(20 * HOUR, 60 * HOUR, n)),
                     _minutes(ctx.uniform(36 * HOUR, 60 * HOUR, n)))
    u = rng.random(n)
    edge_in, edge_out = el & (u < 0.02), el & (u >= 0.02) & (u < 0.03)
    mid_t = np.where(edge_in, t0 - st.window, np.where(edge_out, t0 - st.window - 1, mid_t))
    wanted = ctx.chance(0.5, n) | edge_in | edge_out
    keep_mid = np.where(el, (mid_t > adm_t + HOUR) & (mid_t < base_t - HOUR) & wanted,
                        mid_t < a["end"].fillna(np.inf).to_numpy() - HOUR)
    mid_t = np.where(keep_mid, mid_t, np.nan)
    base_t = np.where(edge_in | edge_out, np.nan, base_t)

    values = _lab_values(ctx, latent, np.zeros(n), 1.0)
    panels = [
        Panel("admission", adm_t, _lab_values(ctx, latent, np.full(n, -0.4), 0.5)),
        Panel("intermediate", mid_t, _lab_values(ctx, latent, np.full(n, -0.2), 0.4)),
        Panel("baseline", base_t, values),
    ]
    for panel, p in zip(panels, (0.95, 0.9, 0.85)):
        panel.values[~_present(ctx, panel.time, p)] = np.nan
    return panels


def observed_baseline(panels: list[Panel], t0: np.ndarray, window: float) -> np.ndarray:
    """Last value of each lab in [T0 - window, T0] over the panels: (n, labs), NaN if none."""
    n = len(t0)
    best_t = np.full((n, len(LAB_NAMES)), -np.inf)
    best_v = np.full((n, len(LAB_NAMES)), np.nan)
    for panel in panels:
        t = panel.time[:, None]
        ok = ~np.isnan(panel.values) & (t >= (t0 - window)[:, None]) & (t <= t0[:, None]) & (t > best_t)
        best_t = np.where(ok, t, best_t)
        best_v = np.where(ok, panel.values, best_v)
    return best_v


# ============================================================== severity, treatment and death
def _severity(a: pd.DataFrame, baseline: np.ndarray) -> np.ndarray:
    """Raw severity score from the observed baseline covariates (missing = average)."""
    score = SEVERITY_WEIGHTS["age"] * np.clip((a["age"].to_numpy() - AGE_MEAN) / AGE_SD, -3, 3)
    for j, name in enumerate(LAB_NAMES):
        if name not in SEVERITY_WEIGHTS:
            continue
        spec = LABS[name]
        x = baseline[:, j]
        scaled = np.log(x) - math.log(spec.centre) if spec.log else x - spec.centre
        z = np.clip(scaled / spec.total_sd, -3, 3)
        score = score + SEVERITY_WEIGHTS[name] * np.nan_to_num(z, nan=0.0)
    return score


def _assign_arms(ctx: Ctx, a: pd.DataFrame, baseline: np.ndarray, n_hdank: int) -> pd.DataFrame:
    """Standardised severity for all stays and HD-ANK for exactly ``n_hdank`` eligible ones.

    Gumbel top-k: the ``n_hdank`` largest ``confounding * severity + Gumbel noise`` among the
    eligible, i.e. weighted sampling without replacement with weights ``exp(logit)``.
    """
    raw = _severity(a, baseline)
    eligible = a["status"].to_numpy() == "eligible"
    mu = raw[eligible].mean() if eligible.any() else 0.0
    sd = raw[eligible].std() if eligible.sum() > 1 else 1.0
    z = (raw - mu) / (sd if sd > 0 else 1.0)
    a["severity"] = np.where(a["el"].to_numpy(), z, np.nan)
    idx = np.flatnonzero(eligible)
    key = ctx.confounding * z[idx] + ctx.rng.gumbel(0, 1, len(idx))
    treated = idx[np.argsort(-key, kind="stable")[:n_hdank]]
    arm = np.where(eligible, "soc", None).astype(object)
    arm[treated] = "hdank"
    arm[a["group"].to_numpy() == "anakinra_late"] = "hdank"
    a["arm"] = arm
    # other stays with a T0 (excluded for another reason) may get HD-ANK in the grace period too
    other = a["el"].to_numpy() & ~eligible & np.isin(
        a["group"].to_numpy(), ("study_period", "adult", "covid_confirmed", "steroid_dose",
                                "first_stay", "invasive_before_t0")) & ~a["is_partner"].to_numpy()
    a["hd_in_grace"] = (arm == "hdank") & eligible | (other & ctx.chance(0.3, len(a)))
    return a


def _calibrate_h0(z: np.ndarray, b: float, risk: float, horizon_days: float) -> float:
    """Daily baseline hazard so that mean(1 - exp(-h0 * horizon * exp(b z))) == risk."""
    if len(z) == 0:
        return -math.log(1 - risk) / horizon_days
    rel = np.exp(b * z) * horizon_days
    lo, hi = -20.0, 5.0
    for _ in range(80):
        mid = (lo + hi) / 2
        if np.mean(1 - np.exp(-math.exp(mid) * rel)) < risk:
            lo = mid
        else:
            hi = mid
    return math.exp((lo + hi) / 2)


def _el_outcome(ctx: Ctx, a: pd.DataFrame) -> pd.DataFrame:
    """Death, discharge, transfer or extraction time of stays with a T0 (relative minutes).

    Death comes from the hazard from T0; a death within the follow-up happens in hospital; a
    survivor goes home at some time (before or after day 28) unless the stay was planned to
    end by an early transfer or to be ongoing at extraction (independent censoring) -- or
    dies in hospital first.
    """
    n, rng, st = len(a), ctx.rng, ctx.study
    t0, z = a["T0"].to_numpy(), a["severity"].to_numpy()
    group, mode = a["group"].to_numpy(), a["mode"].to_numpy()
    treated = a["hd_in_grace"].to_numpy() | (group == "anakinra_late")
    soc = a["arm"].to_numpy() == "soc"
    h0 = _calibrate_h0(z[soc], SEVERITY_LOG_HR, ctx.baseline_risk28, st.followup / DAY)
    rate = h0 * np.exp(SEVERITY_LOG_HR * np.nan_to_num(z) + math.log(ctx.true_hr) * treated)
    wait = _minutes(rng.exponential(1.0, n) / rate * DAY)
    late = group == "anakinra_late"
    late_start = _minutes(ctx.uniform(st.grace + 1, 7 * DAY, n))
    late_idx = np.flatnonzero(late)[:1]
    late_start[late_idx] = st.grace + 1  # one minute after the grace period
    a["late_start"] = np.where(late, late_start, np.nan)
    death = t0 + np.where(late, late_start + HOUR + wait, np.maximum(wait, 10))

    home = t0 + np.clip(_minutes(np.exp(rng.normal(math.log(9 * DAY), 0.6, n))), DAY, 90 * DAY)
    home = np.where(late, np.maximum(home, t0 + late_start + DAY), home)
    censor = np.where(mode == "transfer", t0 + _minutes(ctx.uniform(6 * HOUR, 14 * DAY, n)),
                      t0 + _minutes(ctx.uniform(DAY, 35 * DAY, n)))
    censor = np.where(late, np.maximum(censor, t0 + late_start + 12 * HOUR), censor)

    censored = np.isin(mode, ("transfer", "in_hospital"))
    dies = np.where(censored, death < censor, (death - t0 <= st.followup) | (death < home))
    end = np.where(dies, death, np.where(censored, censor, home))
    status = np.where(dies, "died", mode).astype(object)

    partner = a["is_partner"].to_numpy()  # earlier stay of a patient who comes back: alive
    cap = a["partner_cap"].to_numpy()
    end = np.where(partner, np.maximum(np.minimum(home, cap), t0 + HOUR), end)
    status = np.where(partner, mode, status)

    nf = group == "no_followup"  # follow-up ends exactly at T0
    end = np.where(nf, t0, end)
    status = np.where(nf, mode, status)

    eligible = a["status"].to_numpy() == "eligible"
    on_day = np.flatnonzero(eligible & (mode == "home") & ~dies & (a["partner"].to_numpy() < 0))
    closest = on_day[np.argsort(np.abs(death[on_day] - t0[on_day] - st.followup), kind="stable")[:2]]
    end[closest] = t0[closest] + st.followup  # deaths exactly at T0 + follow-up
    status[closest] = "died"
    a["end"], a["discharge_status"] = end, status
    return a


def _anakinra_plan(ctx: Ctx, a: pd.DataFrame) -> pd.DataFrame:
    """Start (relative) and regimen of anakinra: HD-ANK, late HD-ANK or low dose."""
    n, st = len(a), ctx.study
    t0, end = a["T0"].to_numpy(), a["end"].to_numpy()
    left = end - t0
    hd = a["hd_in_grace"].to_numpy()
    start = _minutes(np.minimum(ctx.uniform(30, st.grace, n), ctx.uniform(0.2, 0.8, n) * left))
    start = np.maximum(start, 1)
    exact = np.flatnonzero(hd & (a["status"].to_numpy() == "eligible") & (left > st.grace + 2 * HOUR))[:2]
    start[exact] = st.grace  # exactly at T0 + G: still within the grace period
    group = a["group"].to_numpy()
    late = group == "anakinra_late"
    start = np.where(late, a["late_start"].to_numpy(), start)
    low = group == "anakinra_not_high_dose"
    start = np.where(low, np.maximum(_minutes(np.minimum(ctx.uniform(HOUR, 72 * HOUR, n), 0.5 * left)), 1), start)
    a["ana_start"] = np.where(hd | late | low, t0 + start, np.nan)
    a["ana_kind"] = np.where(low, np.where(ctx.chance(0.6, n), "sc", "iv_low"), np.where(hd | late, "hd", None))
    return a


def _force_missing_weight(ctx: Ctx, a: pd.DataFrame) -> pd.DataFrame:
    """Make sure a few eligible HD-ANK patients have no weight (they need >= 400 mg)."""
    hd = np.flatnonzero((a["arm"].to_numpy() == "hdank") & (a["status"].to_numpy() == "eligible")
                        & (a["partner"].to_numpy() < 0) & ~a["is_partner"].to_numpy())
    a.loc[a.index[hd[:2]], "weight_kg"] = np.nan
    return a


# =============================================================================== row builders
def _expand(counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Row index and 0-based position within group for groups of ``counts`` rows."""
    counts = np.asarray(counts, dtype=np.int64)
    idx = np.repeat(np.arange(len(counts)), counts)
    starts = np.cumsum(counts) - counts
    return idx, np.arange(counts.sum()) - starts[idx]


def _course(idx: np.ndarray, start: np.ndarray, interval: np.ndarray, n_max: np.ndarray, end: np.ndarray,
            **columns: Any) -> pd.DataFrame:
    """Repeated administrations ``start + k * interval`` (k < n_max) strictly before ``end``."""
    room = np.floor((end - start - 1) / interval) + 1
    n = np.where(np.isnan(start) | (start >= end), 0, np.minimum(n_max, room)).astype(np.int64)
    row, k = _expand(n)
    out = {"i": idx[row], "t": start[row] + k * interval[row], "k": k}
    for name, value in columns.items():
        out[name] = value[row] if isinstance(value, np.ndarray) else value
    return pd.DataFrame(out)


def _medication_rows(ctx: Ctx, a: pd.DataFrame) -> pd.DataFrame:
    """Corticosteroids, remdesivir, anakinra and other immunomodulators (relative times)."""
    n, st, v = len(a), ctx.study, ctx.vocab
    idx = np.arange(n)
    end = a["end"].to_numpy()
    t0 = a["T0"].to_numpy()
    group = a["group"].to_numpy()
    names = {c: STEROID_NAMES.get(int(round(6.0 / f)), "corticosteroid") for c, f in v.steroid_factor.items()}
    code = a["steroid_code"].to_numpy()
    parts = [_course(idx, a["S"].to_numpy(), a["steroid_interval"].to_numpy(),
                     np.round(10 * DAY / a["steroid_interval"].to_numpy()), end,
                     atc=code, drug_name=pd.Series(code).map(names).to_numpy(dtype=object),
                     dose=a["steroid_dose"].to_numpy(), route=a["steroid_route"].to_numpy())]
    # steroid_dose stays: the full dose only from after T0 (does not count)
    up = (group == "steroid_dose") & ctx.chance(0.5, n)
    parts.append(_course(idx, np.where(up, t0 + _minutes(ctx.uniform(2 * HOUR, 20 * HOUR, n)), np.nan),
                         np.full(n, DAY), np.full(n, 8), end, atc=v.steroid_code[6], drug_name="dexamethasone",
                         dose=st.steroid_min, route="IV"))
    rdv = ctx.chance(0.25, n)
    parts.append(_course(idx, np.where(rdv, _minutes(ctx.uniform(HOUR, 30 * HOUR, n)), np.nan), np.full(n, DAY),
                         np.full(n, 5), end, atc=v.remdesivir, drug_name="remdesivir", dose=100.0, route="IV"))
    parts.append(_anakinra_rows(ctx, a))
    parts.append(_immunomodulator_rows(ctx, a))
    med = stack_rows(parts)
    first_rdv = (med["atc"] == v.remdesivir) & (med["k"] == 0)
    med.loc[first_rdv, "dose"] = 200.0  # loading dose
    med["dose_unit"] = med["atc"].map(v.dose_unit).fillna("mg")
    return med


def _anakinra_rows(ctx: Ctx, a: pd.DataFrame) -> pd.DataFrame:
    """Anakinra administrations.

    HD-ANK: IV every 12 h, each dose >= the per-kg minimum (so the first dose alone reaches it);
    without a weight, half the no-weight minimum every 12 h when the stay allows two doses
    (exactly the minimum), else the whole minimum at once.  Low dose: 100 mg SC daily, or
    IV daily at a dose that stays below the threshold even counting a dose at +24 h.
    """
    n, st = len(a), ctx.study
    start, end = a["ana_start"].to_numpy(), a["end"].to_numpy()
    kind = a["ana_kind"].to_numpy()
    weight = a["weight_kg"].to_numpy()
    per_kg = np.ceil(st.hd_mg_per_kg * np.nan_to_num(weight) / 50) * 50
    split = end - start > 12 * HOUR + 1
    no_weight = np.where(split, st.hd_mg_no_weight / 2, st.hd_mg_no_weight)
    low_iv = min(100.0, math.floor(0.45 * min(st.hd_mg_per_kg * 45, st.hd_mg_no_weight)))
    dose = np.select([kind == "hd", kind == "sc"], [np.where(np.isnan(weight), no_weight, per_kg), 100.0], low_iv)
    interval = np.where(kind == "hd", 12 * HOUR, DAY)
    route = np.where(kind == "sc", "SC", "IV").astype(object)
    return _course(np.arange(n), start, interval, np.where(kind == "hd", 14, 7), end,
                   atc=ctx.vocab.anakinra, drug_name="anakinra", dose=dose.astype(float), route=route)


def _immunomodulator_rows(ctx: Ctx, a: pd.DataFrame) -> pd.DataFrame:
    """Immunomodulators before T0 (rule 8) and tocilizumab-like drugs after T0 (allowed)."""
    n, v = len(a), ctx.vocab
    t0, end = a["T0"].to_numpy(), a["end"].to_numpy()
    group = a["group"].to_numpy()
    before = group == "immunomodulator_before_t0"
    with_ana = before & ctx.chance(0.25, n)
    pre = t0 - _minutes(ctx.uniform(30, np.maximum(31, np.minimum(48 * HOUR, t0 - 5)), n))
    after = a["el"].to_numpy() & ~before & (group != "no_followup") & ctx.chance(0.05, n)
    post = t0 + _minutes(np.minimum(ctx.uniform(6 * HOUR, 72 * HOUR, n), 0.5 * (end - t0)))
    start = np.where(before, pre, np.where(after, post, np.nan))
    which = ctx.rng.integers(0, len(v.immunomodulators), n)
    labels = [IMMUNOMODULATOR_LABELS.get(c, ("immunomodulator", 100.0, "IV", 0)) for c in v.immunomodulators]
    code = np.asarray(v.immunomodulators, dtype=object)[which]
    name = np.asarray([x[0] for x in labels], dtype=object)[which]
    dose = np.asarray([x[1] for x in labels], dtype=float)[which]
    route = np.asarray([x[2] for x in labels], dtype=object)[which]
    interval = np.asarray([x[3] for x in labels], dtype=float)[which] * HOUR
    n_max = np.where(interval > 0, 7, 1)
    code = np.where(with_ana, v.anakinra, code)
    name = np.where(with_ana, "anakinra", name)
    dose = np.where(with_ana, 100.0, dose)
    route = np.where(with_ana, "SC", route)
    interval = np.where(with_ana | (interval == 0), DAY, interval)
    n_max = np.where(with_ana, 5, n_max)
    return _course(np.arange(n), start, interval, n_max, end, atc=code, drug_name=name, dose=dose, route=route)


def _support_rows(ctx: Ctx, a: pd.DataFrame) -> pd.DataFrame:
    """Respiratory support episodes (relative), cut at the end of the stay.

    An episode still running at the end of a stay that is ongoing at extraction has no end
    time; otherwise episodes end at the latest when the stay ends.
    """
    v, n = ctx.vocab, len(a)
    el = a["el"].to_numpy()
    t0, end = a["T0"].to_numpy(), a["end"].to_numpy()
    o0, h0 = a["o0"].to_numpy(), a["hfnc0"].to_numpy()
    inv0, inv1 = a["inv0"].to_numpy(), a["inv1"].to_numpy()
    o1 = np.where(el, np.fmin(np.fmin(h0, inv0), t0), np.fmin(a.get("o1", pd.Series(np.nan, a.index)).to_numpy(), end))
    hfnc1 = np.where(el, t0, inv0)
    rows = [("oxygen", o0, o1), ("hfnc", h0, hfnc1), ("invasive", inv0, inv1),
            ("niv_pre", a["niv_pre0"].to_numpy(), a["niv_pre1"].to_numpy())]
    # NIV at T0, then possibly intubation (some of those who die) and oxygen afterwards
    died = a["discharge_status"].to_numpy() == "died"
    imv_after = el & died & ctx.chance(0.2, n) & (end - t0 > 2 * HOUR)
    imv_after_start = _minutes(t0 + (end - t0) * ctx.uniform(0.3, 0.8, n))
    niv_end = np.fmin(t0 + np.clip(_minutes(np.exp(ctx.rng.normal(math.log(3 * DAY), 0.6, n))), HOUR, 20 * DAY),
                      np.where(imv_after, imv_after_start, np.inf))
    rows.append(("niv", np.where(el, t0, np.nan), niv_end))
    rows.append(("invasive", np.where(imv_after, imv_after_start, np.nan), end))
    post_o2 = el & ~imv_after & (niv_end < end - HOUR)
    rows.append(("oxygen", np.where(post_o2, niv_end, np.nan),
                 niv_end + _minutes(ctx.uniform(DAY, 6 * DAY, n))))
    frames = []
    for kind, start, stop in rows:
        code = {"oxygen": v.support["oxygen"][0], "hfnc": v.support["hfnc"][0]}.get(kind)
        if kind == "invasive":
            code = a["inv_code"].to_numpy()
        elif kind.startswith("niv"):
            code = a["niv_code"].to_numpy()
        ok = ~np.isnan(start) & (start <= end)
        ongoing = (a["discharge_status"].to_numpy() == "in_hospital") & (np.nan_to_num(stop, nan=np.inf) > end)
        stop = np.where(ongoing, np.nan, np.fmin(stop, end))
        i = np.flatnonzero(ok)
        frames.append(pd.DataFrame({"i": i, "support": code[i] if isinstance(code, np.ndarray) else code,
                                    "start": start[i], "stop": stop[i]}))
    return stack_rows(frames)


def _lab_rows(ctx: Ctx, a: pd.DataFrame, panels: list[Panel]) -> pd.DataFrame:
    """Lab rows (relative times): the pre-T0 panels, panels after T0 and PCR results."""
    n = len(a)
    t0, end = a["T0"].to_numpy(), a["end"].to_numpy()
    latent = a["latent"].to_numpy()
    status = a["discharge_status"].to_numpy()
    ongoing = (status == "in_hospital") & (end > np.nan_to_num(t0, nan=-1))
    post = [Panel("post1", _minutes(t0 + ctx.uniform(12 * HOUR, 36 * HOUR, n)),
                  _lab_values(ctx, latent, np.full(n, 0.1), 0.5)),
            Panel("post2", _minutes(t0 + ctx.uniform(3 * DAY, 6 * DAY, n)),
                  _lab_values(ctx, latent, np.full(n, -0.2), 0.6)),
            Panel("final", np.where(ongoing, end, np.nan), _lab_values(ctx, latent, np.zeros(n), 0.6))]
    for panel in post:
        present = _present(ctx, panel.time, 0.9, POST_T0_LABS)
        if panel.name == "final":  # the stay's last recorded timestamp: never an empty panel
            present[:, LAB_NAMES.index("crp")] |= ~np.isnan(panel.time)
        panel.values[~present] = np.nan
    frames = []
    for panel in panels + post:
        i, j = np.nonzero(~np.isnan(panel.values) & (panel.time <= end)[:, None])
        frames.append(pd.DataFrame({"i": i, "t": panel.time[i], "concept": np.asarray(LAB_NAMES, dtype=object)[j],
                                    "value": panel.values[i, j], "result_text": None}))
    frames.append(_pcr_rows(ctx, a))
    lab = stack_rows(frames)
    lab["loinc"] = lab["concept"].map(ctx.vocab.lab_loinc)
    pcr = lab["concept"] == "sars_cov2_pcr"
    lab.loc[pcr, "loinc"] = ctx.pick(ctx.vocab.pcr_loinc, int(pcr.sum()))
    lab["unit"] = lab["concept"].map(ctx.vocab.canonical_unit)
    return lab


def _covid_evidence(ctx: Ctx, a: pd.DataFrame) -> pd.DataFrame:
    """How COVID-19 is (or is not) confirmed: U07.1 and/or a positive PCR in the window."""
    n = len(a)
    u = ctx.rng.random(n)
    ok = np.select([u < 0.70, u < 0.83, u < 0.93], ["code_pcr", "pcr_only", "code_only"], "code_negpcr")
    fail_u = ctx.rng.random(n)
    fail = np.select([fail_u < 0.45, fail_u < 0.80], ["neg_pcr", "pos_outside"], "nothing")
    a["covid"] = np.where(a["group"].to_numpy() == "covid_confirmed", fail, ok).astype(object)
    return a


def _pcr_rows(ctx: Ctx, a: pd.DataFrame) -> pd.DataFrame:
    st, n = ctx.study, len(a)
    covid = a["covid"].to_numpy()
    end = a["end"].to_numpy()
    positive_in = np.isin(covid, ("code_pcr", "pcr_only"))
    t_pos = _minutes(ctx.uniform(-3 * DAY, 30, n))  # before T0 (T0 >= admission + 40 min)
    outside = np.where(ctx.chance(0.7, n), -st.pcr_before - _minutes(ctx.uniform(6 * DAY, 40 * DAY, n)),
                       st.pcr_after + _minutes(ctx.uniform(DAY, 6 * DAY, n)))
    t_neg = _minutes(ctx.uniform(-DAY, 2 * DAY, n))
    has_neg = np.isin(covid, ("neg_pcr", "code_negpcr")) | (positive_in & ctx.chance(0.1, n))
    t_neg = np.where(positive_in, t_pos - _minutes(ctx.uniform(HOUR, 2 * DAY, n)), t_neg)
    pos_t = np.where(positive_in, t_pos, np.where(covid == "pos_outside", outside, np.nan))
    neg_t = np.where(has_neg, t_neg, np.nan)
    frames = []
    for t, result in ((pos_t, "positive"), (neg_t, "negative")):
        i = np.flatnonzero(~np.isnan(t) & (t <= end))
        frames.append(pd.DataFrame({"i": i, "t": t[i], "concept": "sars_cov2_pcr", "value": np.nan,
                                    "result_text": ctx.pick(ctx.vocab.pcr_text[result], len(i))}))
    return stack_rows(frames)


def _icd_format(ctx: Ctx, codes: np.ndarray) -> np.ndarray:
    """Write codes as a site would: with or without the dot, sometimes with a sub-code.

    Three-character codes get a fourth character half of the time (``E11`` -> ``E11.9``);
    a fifth of all codes are written without the dot (``E119``, ``U071``).
    """
    unique, inverse = np.unique(codes.astype(str), return_inverse=True)
    suffixes = ("", ".0", ".1", ".8", ".9")
    # variants[u, s, d]: unique code u, sub-code s (0 = none), d = 1 without the dot
    variants = np.array([[[c + x, (c + x).replace(".", "")] for x in suffixes] for c in unique], dtype=object)
    n = len(codes)
    short = np.array([len(c.replace(".", "")) == 3 for c in unique], dtype=bool)[inverse]
    sub = np.where(short & ctx.chance(0.5, n), ctx.rng.integers(1, len(suffixes), n), 0)
    return variants.reshape(len(unique), len(suffixes), 2)[inverse, sub, ctx.chance(0.2, n).astype(int)]


def _diagnosis_rows(ctx: Ctx, a: pd.DataFrame) -> pd.DataFrame:
    """ICD-10 codes of the stay (relative recorded times; often coded after discharge)."""
    v, n = ctx.vocab, len(a)
    age = a["age"].to_numpy()
    frames = []
    coded = np.isin(a["covid"].to_numpy(), ("code_pcr", "code_only", "code_negpcr"))
    frames.append(("covid", coded, ctx.pick(v.covid_icd, n)))
    for concept, (p, per10) in COMORBIDITY.items():
        logit = math.log(p / (1 - p)) + per10 * (age - AGE_MEAN) / 10
        frames.append((concept, ctx.chance(1 / (1 + np.exp(-logit)), n), ctx.pick(v.comorbidity_icd[concept], n)))
    bmi = a["weight_kg"].to_numpy() / (a["height_cm"].to_numpy() / 100) ** 2
    frames.append(("obesity", ctx.chance(np.where(np.nan_to_num(bmi) >= 30, 0.5, 0.03), n),
                   ctx.pick(v.comorbidity_icd["obesity"], n)))
    if v.unconfirmed_icd:
        trap = (a["group"].to_numpy() == "covid_confirmed") & ctx.chance(0.3, n)
        frames.append(("unconfirmed", trap, ctx.pick(v.unconfirmed_icd, n)))
    for code in v.noise_icd:
        frames.append((code, ctx.chance(0.25, n), np.full(n, code, dtype=object)))
    rows = []
    for _, mask, code in frames:
        i = np.flatnonzero(mask)
        rows.append(pd.DataFrame({"i": i, "icd10": _icd_format(ctx, code[i])}))
    dx = stack_rows(rows)
    # one recording time per stay: after discharge, at admission, or not recorded
    end = a["end"].to_numpy()
    ongoing = a["discharge_status"].to_numpy() == "in_hospital"
    u = ctx.rng.random(n)
    when = np.where(u < 0.7, end + _minutes(ctx.uniform(0, 3 * DAY, n)), np.where(u < 0.8, 0.0, np.nan))
    when = np.where(ongoing & (u < 0.7), np.nan, when)
    dx["t"] = when[dx["i"].to_numpy()]
    return dx


# ============================================================================== chunk assembly
@dataclass
class ChunkResult:
    """One chunk's rows by table (with defects, sorted), answer key and defect counts."""

    tables: dict[str, pd.DataFrame]
    key: pd.DataFrame
    defects: dict[str, dict[str, int]]


def simulate_chunk(ctx: Ctx, plan: ChunkPlan) -> ChunkResult:
    """Build one chunk: admissions by construction, their rows, the answer key and defects."""
    a = _groups(ctx, plan)
    a = _link_stays(ctx, a)
    a = _modes(ctx, a)
    a = _admit_times(ctx, a)
    a = _patient_traits(ctx, a)
    a = _covid_evidence(ctx, a)
    a, panels = _build_courses(ctx, a, plan)
    a = _assign_ids(ctx, a)
    tables = _rows_to_tables(ctx, a, panels)
    key = answer_key_from_rows(ctx, a, tables, panels)
    tables, extra_key, defects = inject_defects(ctx, a, tables)
    key = stack_rows([key, extra_key]).sort_values("admission_id", kind="stable")
    return ChunkResult({t: _sort_table(t, df) for t, df in tables.items()}, key.reset_index(drop=True), defects)


def _build_courses(ctx: Ctx, a: pd.DataFrame, plan: ChunkPlan) -> tuple[pd.DataFrame, list[Panel]]:
    """Clinical course of every stay: timeline, labs before T0, arm, outcome, anakinra."""
    el = a["el"].to_numpy()
    parts = []
    for mask, build in ((el, _el_course), (~el, _not_course)):
        sub = a.loc[mask].copy()
        parts.append(build(ctx, sub))
    a = pd.concat(parts).sort_index()
    a["end"] = a["end"].astype(float)
    panels = _pre_t0_panels(ctx, a)
    baseline = observed_baseline(panels, a["T0"].to_numpy(), ctx.study.window)
    a = _assign_arms(ctx, a, baseline, plan.counts["hdank"])
    a = _force_missing_weight(ctx, a)
    out = a.loc[el].copy()
    out = _el_outcome(ctx, out)
    a.loc[el, ["end", "discharge_status", "late_start"]] = out[["end", "discharge_status", "late_start"]]
    a = _anakinra_plan(ctx, a)
    return a, panels


def _el_course(ctx: Ctx, a: pd.DataFrame) -> pd.DataFrame:
    a = _steroid_plan(ctx, a)
    a = _el_episodes(ctx, a)
    a["end"] = np.nan
    a["discharge_status"] = None
    a["late_start"] = np.nan
    return a


def _assign_ids(ctx: Ctx, a: pd.DataFrame) -> pd.DataFrame:
    """Admission and patient ids: random distinct ids from the chunk's id block.

    Ids of chunk ``c`` lie in ``(c * block, (c + 1) * block]`` so that appending chunks keeps
    every file sorted by id; unused ids of the block serve as orphan keys.
    """
    n = len(a)
    ids = np.sort(ctx.rng.choice(ctx.id_block, n, replace=False))
    a["admission_id"] = ctx.id_base + 1 + ids[ctx.rng.permutation(n)]
    owner = a["partner"].to_numpy() < 0
    pids = ctx.id_base + np.sort(ctx.rng.choice(ctx.id_block, int(owner.sum()), replace=False)) + 1
    pid = np.zeros(n, dtype=np.int64)
    pid[np.flatnonzero(owner)] = pids[ctx.rng.permutation(len(pids))]
    later = np.flatnonzero(~owner)
    pid[later] = pid[a["partner"].to_numpy()[later]]
    a["patient_id"] = pid
    return a


def _absolute(a: pd.DataFrame, rows: pd.DataFrame, **times: str) -> pd.DataFrame:
    """Rows with their admission id and absolute times (relative column -> new name)."""
    i = rows["i"].to_numpy()
    admit = a["admit"].to_numpy()[i]
    for col, name in times.items():
        rows[name] = rows.pop(col).to_numpy() + admit
    rows.insert(0, "admission_id", a["admission_id"].to_numpy()[i])
    return rows


def _rows_to_tables(ctx: Ctx, a: pd.DataFrame, panels: list[Panel]) -> dict[str, pd.DataFrame]:
    """The six clean tables of the chunk (absolute minute times; days for dates)."""
    owner = a["partner"].to_numpy() < 0
    patients = pd.DataFrame({"patient_id": a["patient_id"], "sex": a["sex"], "birth_date": a["birth_day"],
                             "height_cm": a["height_cm"], "weight_kg": a["weight_kg"]})[owner]
    end = a["admit"] + a["end"]
    status = a["discharge_status"]
    admissions = pd.DataFrame({
        "admission_id": a["admission_id"], "patient_id": a["patient_id"], "admit_time": a["admit"],
        "discharge_time": end.where(status != "in_hospital"), "discharge_status": status,
        "death_time": end.where(status == "died"), "symptom_onset_date": a["onset_day"]})
    dx = _absolute(a, _diagnosis_rows(ctx, a), t="recorded_time")
    labs = _absolute(a, _lab_rows(ctx, a, panels), t="taken_time")
    labs["value_text"] = None
    meds = _absolute(a, _medication_rows(ctx, a), t="given_time")
    resp = _absolute(a, _support_rows(ctx, a), start="start_time", stop="end_time")
    tables = {"patients": patients.reset_index(drop=True), "admissions": admissions.reset_index(drop=True),
              "diagnoses": dx, "labs": labs, "medications": meds, "respiratory_support": resp}
    return {t: df[CONTRACT[t].names + (["value_text"] if t == "labs" else [])] for t, df in tables.items()}


# ================================================================================ answer key
KEY_COLUMNS = ("admission_id", "patient_id", "status", "arm", "t0", "event", "time", "anakinra_start_day",
               "cov_num_age", "cov_num_bmi", "cov_num_crp", "cov_num_ferritin", "cov_num_lymphocytes",
               "cov_num_steroid_dose")
KEY_SCHEMA = pa.schema([
    ("admission_id", pa.int64()), ("patient_id", pa.int64()), ("status", pa.string()), ("arm", pa.string()),
    ("t0", pa.timestamp("s")), ("event", pa.int8()), ("time", pa.float64()),
    ("anakinra_start_day", pa.float64()), ("cov_num_age", pa.float64()), ("cov_num_bmi", pa.float64()),
    ("cov_num_crp", pa.float64()), ("cov_num_ferritin", pa.float64()), ("cov_num_lymphocytes", pa.float64()),
    ("cov_num_steroid_dose", pa.float64()),
])


def answer_key_from_rows(ctx: Ctx, a: pd.DataFrame, tables: dict[str, pd.DataFrame],
                         panels: list[Panel]) -> pd.DataFrame:
    """Answer key of the chunk's admissions, derived from the clean rows.

    T0, the corticosteroid dose, the baseline labs, the end of follow-up, ``event`` and
    ``time`` follow docs/data-model.md; status and arm come from the construction, which is
    checked against the derived values (a mismatch is a simulator bug and raises).
    """
    st, v = ctx.study, ctx.vocab
    ids = pd.Index(a["admission_id"].to_numpy())
    med, resp, labs = tables["medications"], tables["respiratory_support"], tables["labs"]

    steroid = med[med["atc"].isin(list(v.steroid_factor))]
    first_steroid = steroid.groupby("admission_id")["given_time"].min().reindex(ids)
    niv = resp[resp["support"].isin(v.support["niv"])]
    niv = niv[niv["start_time"] > niv["admission_id"].map(first_steroid)]
    t0 = niv.groupby("admission_id")["start_time"].min().reindex(ids)

    before = steroid[steroid["given_time"] < steroid["admission_id"].map(t0)]
    dex = before["dose"] * before["atc"].map(v.steroid_factor)
    daily = dex.groupby([before["admission_id"], np.floor(before["given_time"] / DAY)]).sum()
    dose = daily.groupby(level=0).max().reindex(ids)

    ana = med[med["atc"] == v.anakinra].groupby("admission_id")["given_time"].min().reindex(ids)
    end = _end_of_followup(tables, ids)
    baseline = _baseline_from_rows(labs, t0, st.window, v)

    days = (end - t0) / DAY
    horizon = st.followup / DAY
    status_ = tables["admissions"].set_index("admission_id")["discharge_status"].reindex(ids)
    event = (status_ == "died") & (days <= horizon)
    time = np.where(event, days, np.where(status_ == "home", horizon, np.minimum(days, horizon)))
    followed = (days > 0).to_numpy()
    patients = tables["patients"].set_index("patient_id")
    pid = a["patient_id"].to_numpy()
    bmi = (patients["weight_kg"] / (patients["height_cm"] / 100.0) ** 2).reindex(pid).to_numpy()
    key = pd.DataFrame({
        "admission_id": ids.to_numpy(), "patient_id": pid, "status": a["status"].to_numpy(),
        "arm": np.where(np.isin(a["status"].to_numpy(), ("eligible", "anakinra_late")), a["arm"].to_numpy(), None),
        "t0": t0.to_numpy(), "event": np.where(followed, event.to_numpy(), np.nan),
        "time": np.where(followed, time, np.nan), "anakinra_start_day": ((ana - t0) / DAY).to_numpy(),
        "cov_num_age": a["age"].to_numpy().astype(float), "cov_num_bmi": bmi,
        "cov_num_crp": baseline["crp"].to_numpy(), "cov_num_ferritin": baseline["ferritin"].to_numpy(),
        "cov_num_lymphocytes": baseline["lymphocytes"].to_numpy(), "cov_num_steroid_dose": dose.to_numpy(),
    })
    _check_construction(ctx, a, key, end.to_numpy(), panels)
    derived = status_from_rows(ctx, tables, ids, t0, dose, end)
    wrong = derived != a["status"].to_numpy()
    if wrong.any():
        examples = pd.DataFrame({"built": a["status"].to_numpy()[wrong], "rows": derived[wrong]}).value_counts()
        raise RuntimeError(f"simulator construction error: status from the rows differs:\n{examples.head(10)}")
    return key


def status_from_rows(ctx: Ctx, tables: dict[str, pd.DataFrame], ids: pd.Index, t0: pd.Series,
                     dose: pd.Series, end: pd.Series) -> np.ndarray:
    """First attrition rule each admission fails (or ``eligible``), from the clean rows.

    Follows docs/data-model.md.  Where a definition could be read two ways (the HD-ANK dose
    window with or without its end point), both readings must agree, so the construction
    never depends on the reading.
    """
    st, v = ctx.study, ctx.vocab
    adm = tables["admissions"].set_index("admission_id").reindex(ids)
    pat = tables["patients"].set_index("patient_id").reindex(adm["patient_id"].to_numpy())
    admit_day = np.floor(adm["admit_time"].to_numpy() / DAY).astype(np.int64)
    t0v = t0.to_numpy()
    fails = {
        "study_period": (admit_day < st.start_day) | (admit_day > st.end_day),
        "adult": completed_years(pat["birth_date"].to_numpy().astype(np.int64), admit_day) < st.min_age,
        "covid_confirmed": ~_covid_from_rows(ctx, tables, ids, adm["admit_time"]),
        "niv_after_steroid": np.isnan(t0v),
        "steroid_dose": ~(dose.to_numpy() >= st.steroid_min),
    }
    included = ~np.any(list(fails.values()), axis=0)
    order = pd.DataFrame({"pid": adm["patient_id"].to_numpy(), "admit": adm["admit_time"].to_numpy(),
                          "id": ids.to_numpy()})[included].sort_values(["pid", "admit", "id"])
    fails["first_stay"] = included & ~ids.isin(order.drop_duplicates("pid")["id"])
    resp, med = tables["respiratory_support"], tables["medications"]
    invasive = resp[resp["support"].isin(v.support["invasive"])].groupby("admission_id")["start_time"].min()
    fails["invasive_before_t0"] = (invasive.reindex(ids) < t0).to_numpy()
    immuno = med[med["atc"].isin((v.anakinra, *v.immunomodulators))].groupby("admission_id")["given_time"].min()
    fails["immunomodulator_before_t0"] = (immuno.reindex(ids) < t0).to_numpy()
    start, high = _anakinra_from_rows(ctx, med, pat["weight_kg"].to_numpy(), ids)
    fails["anakinra_not_high_dose"] = ~np.isnan(start) & ~high
    fails["anakinra_late"] = ~np.isnan(start) & (start > t0v + st.grace)
    fails["no_followup"] = ~(end.to_numpy() > t0v)
    status = np.full(len(ids), "eligible", dtype=object)
    for rule in reversed(RULES):
        status[fails[rule]] = rule
    return status


def _covid_from_rows(ctx: Ctx, tables: dict[str, pd.DataFrame], ids: pd.Index, admit: pd.Series) -> np.ndarray:
    """U07.1 (prefix match without the dot) or a positive PCR from -14 d to +2 d of admission."""
    dx = tables["diagnoses"]
    keys = tuple(c.replace(".", "").upper() for c in ctx.vocab.covid_icd)
    coded = dx.loc[dx["icd10"].str.replace(".", "", regex=False).str.upper().str.startswith(keys), "admission_id"]
    labs = tables["labs"]
    pcr = labs[labs["loinc"].isin(ctx.vocab.pcr_loinc) & labs["result_text"].isin(ctx.vocab.pcr_text["positive"])]
    lag = pcr["taken_time"].to_numpy() - pcr["admission_id"].map(pd.Series(admit.to_numpy(), index=ids)).to_numpy()
    tested = pcr.loc[(lag >= -ctx.study.pcr_before) & (lag <= ctx.study.pcr_after), "admission_id"]
    return ids.isin(coded) | ids.isin(tested)


def _anakinra_from_rows(ctx: Ctx, med: pd.DataFrame, weight: np.ndarray, ids: pd.Index
                        ) -> tuple[np.ndarray, np.ndarray]:
    """First anakinra time and whether it is high dose under both readings of the window."""
    st = ctx.study
    ana = med[med["atc"] == ctx.vocab.anakinra]
    first = ana.groupby("admission_id")["given_time"].min()
    since = ana["given_time"].to_numpy() - ana["admission_id"].map(first).to_numpy()
    iv = ana["route"].to_numpy() == "IV"
    needed = np.where(np.isnan(weight), st.hd_mg_no_weight, st.hd_mg_per_kg * weight)
    high = []
    for within in (since < st.hd_window, since <= st.hd_window):
        total = ana["dose"][iv & within].groupby(ana["admission_id"][iv & within]).sum().reindex(ids).fillna(0)
        high.append(total.to_numpy() >= needed)
    start = first.reindex(ids).to_numpy()
    if np.any((high[0] != high[1]) & ~np.isnan(start)):
        raise RuntimeError("simulator construction error: HD-ANK depends on the end point of the dose window")
    return start, high[0]


def _end_of_followup(tables: dict[str, pd.DataFrame], ids: pd.Index) -> pd.Series:
    """Death, discharge or (in hospital) the stay's last recorded timestamp."""
    adm = tables["admissions"].set_index("admission_id").reindex(ids)
    parts = [adm[["admit_time", "discharge_time", "death_time"]].max(axis=1)]
    for name, cols in (("labs", ("taken_time",)), ("medications", ("given_time",)),
                       ("respiratory_support", ("start_time", "end_time")), ("diagnoses", ("recorded_time",))):
        for col in cols:
            parts.append(tables[name].groupby("admission_id")[col].max().reindex(ids))
    last = pd.concat(parts, axis=1).max(axis=1)
    status = adm["discharge_status"]
    return adm["death_time"].where(status == "died", adm["discharge_time"].where(status != "in_hospital", last))


def _baseline_from_rows(labs: pd.DataFrame, t0: pd.Series, window: float, v: Vocab) -> pd.DataFrame:
    """Last value of each lab concept in [T0 - window, T0] (clean rows: canonical units)."""
    concept_of = {code: c for c, code in v.lab_loinc.items()}
    lab = labs[labs["loinc"].isin(list(concept_of)) & labs["value"].notna()]
    when = lab["admission_id"].map(t0)
    lab = lab[(lab["taken_time"] <= when) & (lab["taken_time"] >= when - window)]
    lab = lab.assign(concept=lab["loinc"].map(concept_of)).sort_values(["admission_id", "taken_time"], kind="stable")
    last = lab.groupby(["admission_id", "concept"])["value"].last().unstack("concept")
    return last.reindex(index=t0.index, columns=list(LAB_NAMES))


def _check_construction(ctx: Ctx, a: pd.DataFrame, key: pd.DataFrame, end: np.ndarray,
                        panels: list[Panel]) -> None:
    """Raise if the rows contradict the construction (simulator bug, never a user error)."""
    st = ctx.study
    group = a["group"].to_numpy()
    t0_built = a["admit"].to_numpy() + a["T0"].to_numpy()
    t0_rows = key["t0"].to_numpy()
    problems = []
    el = a["el"].to_numpy()
    if not np.array_equal(np.isnan(t0_rows), ~el) or not np.allclose(t0_rows[el], t0_built[el]):
        problems.append("T0 from the rows differs from the constructed T0")
    dose = key["cov_num_steroid_dose"].to_numpy()
    low = group == "steroid_dose"
    if np.any(dose[el & ~low] < st.steroid_min - 1e-9) or np.any(dose[low] >= st.steroid_min - 1e-9):
        problems.append("corticosteroid dose does not match the construction")
    followed = end - t0_rows > 0
    if np.any(followed[group == "no_followup"]) or not np.all(followed[el & (group != "no_followup")]):
        problems.append("follow-up after T0 does not match the construction")
    if not np.allclose(end, a["admit"].to_numpy() + a["end"].to_numpy()):
        problems.append("end of follow-up from the rows differs from the constructed end of stay")
    base = observed_baseline(panels, a["T0"].to_numpy(), st.window)
    for name in ("crp", "ferritin", "lymphocytes"):
        built = base[:, LAB_NAMES.index(name)]
        if not np.allclose(built[el], key[f"cov_num_{name}"].to_numpy()[el], equal_nan=True):
            problems.append(f"baseline {name} from the rows differs from the construction")
    if problems:
        raise RuntimeError("simulator construction error: " + "; ".join(problems))


# =================================================================================== defects
def defect_count(rate: float, rows: int) -> int:
    """``round(rate * rows)``, at least one when the rate is positive and there are rows."""
    if rate <= 0 or rows <= 0:
        return 0
    return min(rows, max(1, round(rate * rows)))


def inject_defects(ctx: Ctx, a: pd.DataFrame, tables: dict[str, pd.DataFrame]
                   ) -> tuple[dict[str, pd.DataFrame], pd.DataFrame, dict[str, dict[str, int]]]:
    """Add the defects of protocol section 2 without changing the eligible set or covariates.

    Unit variants are written in place; every other defect is an extra row (copied from a
    clean row where it needs one), so each table is stacked once.  Returns the tables with
    defects, answer-key rows of the injected bad admissions and the number of defective rows
    per table and reason.
    """
    rates = ctx.defect_rates
    counts = {t: dict.fromkeys(r, 0) for t, r in REASONS.items()}
    rows = {t: len(df) for t, df in tables.items()}
    labs, resp = tables["labs"], tables["respiratory_support"]
    variant = _unit_variants(ctx, labs, defect_count(rates["unit_variant"], rows["labs"]))
    counts["labs"]["unit_variant"] = int(variant.sum())
    copyable = {t: np.arange(n) for t, n in rows.items()}  # rows that extra rows may copy
    copyable["labs"] = np.flatnonzero(~variant)
    extras: dict[str, list[pd.DataFrame]] = {t: [] for t in TABLES}

    outside = np.flatnonzero(~variant & _outside_baseline(ctx, a, labs))
    for reason in ("unknown_unit", "unparsable_value"):
        bad = _bad_lab_rows(ctx, labs.iloc[_sample(ctx, outside, defect_count(rates[reason], rows["labs"]))], reason)
        extras["labs"].append(bad)
        counts["labs"][reason] = len(bad)
    k = defect_count(rates["impossible_interval"], rows["respiratory_support"])
    reversed_ = _reversed_episodes(ctx, resp.iloc[_sample(ctx, copyable["respiratory_support"], k)])
    extras["respiratory_support"].append(reversed_)
    counts["respiratory_support"]["episode_end_before_start"] = len(reversed_)

    used_ids = set(a["admission_id"].tolist())
    adm, pat, key_extra, adm_counts = _bad_admissions(ctx, len(a), used_ids, set(a["patient_id"].tolist()))
    extras["admissions"].append(adm)
    extras["patients"].append(pat)
    counts["admissions"].update(adm_counts)

    for table in ("diagnoses", "labs", "medications", "respiratory_support"):
        k = defect_count(rates["orphan_key"], rows[table])
        orphans = tables[table].iloc[_sample(ctx, copyable[table], k)].copy()
        orphans["admission_id"] = _free_ids(ctx, used_ids, len(orphans))
        extras[table].append(orphans)
        counts[table]["orphan_key"] = len(orphans)
    for table in TABLES:  # exact duplicates of clean rows
        dup = tables[table].iloc[_sample(ctx, copyable[table], defect_count(rates["duplicate_row"], rows[table]))]
        extras[table].append(dup)
        counts[table]["duplicate_row"] = len(dup)
    return {t: stack_rows([tables[t]] + extras[t]) for t in TABLES}, key_extra, counts


def _sample(ctx: Ctx, positions: np.ndarray, k: int) -> np.ndarray:
    """``k`` distinct positions (fewer if there are fewer), in increasing order."""
    return np.sort(ctx.rng.choice(positions, min(k, len(positions)), replace=False))


def _unit_variants(ctx: Ctx, labs: pd.DataFrame, k: int) -> np.ndarray:
    """Write ``k`` numeric lab rows in a convertible non-canonical unit, in place.

    The value is divided by the unit's factor so that ingest's conversion gives back the true
    (canonical) value.  Returns the mask of the rows changed.
    """
    convertible = [c for c, units in ctx.vocab.unit_variants.items() if units]
    code_to_concept = {ctx.vocab.lab_loinc[c]: c for c in convertible}
    loinc = labs["loinc"].to_numpy()
    values, units = labs["value"].to_numpy().copy(), labs["unit"].to_numpy().copy()
    chosen = _sample(ctx, np.flatnonzero(np.isin(loinc, list(code_to_concept)) & ~np.isnan(values)), k)
    pick = ctx.rng.random(len(chosen))
    for code, concept in code_to_concept.items():  # a few concepts, vectorised within each
        hit = loinc[chosen] == code
        options = ctx.vocab.unit_variants[concept]
        which = (pick[hit] * len(options)).astype(int)
        values[chosen[hit]] = np.round(values[chosen[hit]] / np.array([f for _, f in options])[which], 8)
        units[chosen[hit]] = np.array([u for u, _ in options], dtype=object)[which]
    labs["value"], labs["unit"] = values, units
    variant = np.zeros(len(labs), dtype=bool)
    variant[chosen] = True
    return variant


def _outside_baseline(ctx: Ctx, a: pd.DataFrame, labs: pd.DataFrame) -> np.ndarray:
    """Mask of numeric lab rows outside any baseline window (after T0, or no T0)."""
    t0 = pd.Series(a["admit"].to_numpy() + a["T0"].to_numpy(), index=a["admission_id"].to_numpy())
    when = labs["admission_id"].map(t0).to_numpy()
    taken = labs["taken_time"].to_numpy()
    with np.errstate(invalid="ignore"):
        outside = np.isnan(when) | (taken > when) | (taken < when - ctx.study.window)
    return outside & ~np.isnan(labs["value"].to_numpy())


def _bad_lab_rows(ctx: Ctx, source: pd.DataFrame, reason: str) -> pd.DataFrame:
    """Copies of lab rows with an unknown unit or an unparsable value (same time and test)."""
    rows = source.copy()
    if reason == "unknown_unit":
        pick = ctx.rng.random(len(rows))
        units = rows["unit"].to_numpy().copy()
        for concept, code in ctx.vocab.lab_loinc.items():
            hit = rows["loinc"].to_numpy() == code
            options = np.asarray(ctx.vocab.unknown_units[concept], dtype=object)
            units[hit] = options[(pick[hit] * len(options)).astype(int)]
        rows["unit"] = units
    else:
        rows["value_text"] = ctx.pick(UNPARSABLE_VALUES, len(rows))
    return rows


def _reversed_episodes(ctx: Ctx, source: pd.DataFrame) -> pd.DataFrame:
    """Copies of episodes as oxygen that ends before it starts (same start time)."""
    rows = source.copy()
    rows["support"] = ctx.vocab.support["oxygen"][0]
    rows["end_time"] = rows["start_time"] - _minutes(ctx.uniform(10, 6 * HOUR, len(rows)))
    return rows


def _free_ids(ctx: Ctx, used: set, k: int) -> np.ndarray:
    """``k`` distinct ids of the chunk's block that are not used yet (and mark them used)."""
    out: list[int] = []
    while len(out) < k:
        draw = ctx.id_base + 1 + ctx.rng.choice(ctx.id_block, 2 * (k - len(out)) + 8, replace=False)
        for x in draw.tolist():
            if x not in used and len(out) < k:
                used.add(x)
                out.append(x)
    return np.array(out, dtype=np.int64)


def _bad_admissions(ctx: Ctx, n: int, used_admissions: set, used_patients: set
                    ) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """Extra admissions of extra patients with an impossible interval, and orphan admissions."""
    rates, st = ctx.defect_rates, ctx.study
    k_dba = defect_count(rates["impossible_interval"], n)
    k_dad = defect_count(rates["impossible_interval"], n)
    k_orphan = defect_count(rates["orphan_key"], n)
    total = k_dba + k_dad + k_orphan
    adm_ids = _free_ids(ctx, used_admissions, total)
    pat_ids = _free_ids(ctx, used_patients, total)
    admit = (st.start_day + ctx.rng.integers(0, st.end_day - st.start_day + 1, total)) * DAY \
        + _minutes(ctx.uniform(0, DAY - 1, total))
    stay = _minutes(ctx.uniform(2 * DAY, 15 * DAY, total))
    kind = np.repeat(np.array(["dba", "dad", "orphan"], dtype=object), [k_dba, k_dad, k_orphan])
    discharge = np.where(kind == "dba", admit - _minutes(ctx.uniform(HOUR, 5 * DAY, total)), admit + stay)
    death = np.where(kind == "dad", discharge + _minutes(ctx.uniform(HOUR, 3 * DAY, total)), np.nan)
    adm = pd.DataFrame({"admission_id": adm_ids, "patient_id": pat_ids, "admit_time": admit,
                        "discharge_time": discharge, "discharge_status": np.where(kind == "dad", "died", "home"),
                        "death_time": death, "symptom_onset_date": np.floor(admit / DAY) - 7})
    real = kind != "orphan"  # the orphans' patients do not exist
    age = ctx.rng.integers(30, 90, total)
    pat = pd.DataFrame({"patient_id": pat_ids[real], "sex": ctx.pick(("F", "M"), int(real.sum())),
                        "birth_date": (_years_before(np.floor(admit / DAY).astype(np.int64), age) - 100)[real],
                        "height_cm": np.round(ctx.uniform(155, 190, int(real.sum()))),
                        "weight_kg": np.round(ctx.uniform(55, 110, int(real.sum())), 1)})
    key = pd.DataFrame({c: np.full(total, np.nan) for c in KEY_COLUMNS})
    key["admission_id"], key["patient_id"], key["status"] = adm_ids, pat_ids, "quarantined"
    key["arm"] = None
    return adm, pat, key, {"discharge_before_admission": k_dba, "death_after_discharge": k_dad,
                           "orphan_key": k_orphan}


#: Row order of each table: key, then time, then code.
SORT_KEYS = {
    "patients": ["patient_id"], "admissions": ["admission_id", "admit_time"],
    "diagnoses": ["admission_id", "recorded_time", "icd10"], "labs": ["admission_id", "taken_time", "loinc"],
    "medications": ["admission_id", "given_time", "atc"],
    "respiratory_support": ["admission_id", "start_time", "support"],
}


def _sort_table(table: str, df: pd.DataFrame) -> pd.DataFrame:
    """Fixed row order: key, then time (then code); ties keep the deterministic build order."""
    names = CONTRACT[table].names
    df = df[names + (["value_text"] if table == "labs" else [])]
    keys = [df[c].to_numpy() for c in SORT_KEYS[table]]
    keys = [pd.factorize(k, sort=True)[0] if k.dtype == object else k for k in keys]
    order = np.lexsort(keys[::-1])  # stable; NaN times last
    return df.take(order).reset_index(drop=True)


# ================================================================================== encoding
def _iso_minutes(minutes: np.ndarray, with_time: bool = True) -> pa.Array:
    """ISO-8601 strings of minute (or day) numbers; nulls for NaN. Fast fixed-width formatting."""
    valid = ~np.isnan(minutes)
    m = np.where(valid, minutes, 0).astype(np.int64)
    day = m // 1440 if with_time else m
    lo, hi = (int(day.min()), int(day.max())) if len(day) else (0, 0)
    days = np.arange(lo, hi + 1).astype("datetime64[D]")
    dtab = np.frombuffer("".join(np.datetime_as_string(days).tolist()).encode(), np.uint8).reshape(-1, 10)
    width = 19 if with_time else 10
    out = np.empty((len(m), width), np.uint8)
    out[:, :10] = dtab[day - lo]
    if with_time:
        ttab = np.frombuffer("".join(f"T{h:02d}:{mi:02d}:00" for h in range(24) for mi in range(60)).encode(),
                             np.uint8).reshape(-1, 9)
        out[:, 10:] = ttab[m % 1440]
    offsets = pa.py_buffer(np.arange(0, width * (len(m) + 1), width, dtype=np.int32))
    arr = pa.StringArray.from_buffers(len(m), offsets, pa.py_buffer(out.tobytes()))
    return pc.if_else(pa.array(valid), arr, pa.scalar(None, pa.string()))


def _arrow_column(df: pd.DataFrame, name: str, kind: str, fmt: str, table: str) -> pa.Array:
    values = df[name].to_numpy()
    if kind == "id":
        return pa.array(values.astype(np.int64))
    if kind == "timestamp":
        v = values.astype(float)
        if fmt == "parquet":
            return pa.array(np.nan_to_num(v * 60).astype(np.int64), type=pa.timestamp("s"), mask=np.isnan(v))
        return _iso_minutes(v)
    if kind == "date":
        v = values.astype(float)
        return pa.array(np.nan_to_num(v).astype(np.int32), type=pa.date32(), mask=np.isnan(v))
    if kind == "float":
        arr = pa.array(values.astype(float), from_pandas=True)
        if table == "labs" and name == "value":  # raw lab results are text (may be unparsable)
            text = pa.array(df["value_text"].to_numpy(dtype=object), type=pa.string())
            return pc.coalesce(text, pc.cast(arr, pa.string()))
        return arr
    return pa.array(values.astype(object), type=pa.string(), from_pandas=True)


def arrow_table(df: pd.DataFrame, table: str, fmt: str) -> pa.Table:
    """The chunk's rows of ``table`` as an Arrow table with exactly the contract columns."""
    spec = CONTRACT[table]
    return pa.table({c.name: _arrow_column(df, c.name, c.kind, fmt, table) for c in spec.columns})


def csv_bytes(table: pa.Table, slice_rows: int = 500_000) -> bytes:
    """CSV body (no header) of ``table``: minimal quoting, empty cells for nulls, ``\\n`` ends."""
    parts = []
    for start in range(0, table.num_rows, slice_rows):
        part = table.slice(start, slice_rows)
        cols = []
        for col in part.columns:
            col = col.combine_chunks()
            text = col if pa.types.is_string(col.type) else pc.cast(col, pa.string())
            if pa.types.is_string(col.type):
                special = pc.fill_null(pc.match_substring_regex(text, '[",\r\n]'), False)
                if pc.any(special).as_py():
                    quoted = pc.binary_join_element_wise('"', pc.replace_substring(text, '"', '""'), '"', "")
                    text = pc.if_else(special, quoted, text)
            cols.append(pc.fill_null(text, ""))
        cols[-1] = pc.binary_join_element_wise(cols[-1], pa.scalar(""), "\n")  # "x" -> "x\n"
        parts.append(_concat_strings(pc.binary_join_element_wise(*cols, ",")))
    return b"".join(parts)


def _concat_strings(arr: pa.Array) -> bytes:
    """Bytes of all strings of ``arr``, back to back (the data buffer between the offsets)."""
    offsets = np.frombuffer(arr.buffers()[1], np.int32)[arr.offset: arr.offset + len(arr) + 1]
    return arr.buffers()[2].to_pybytes()[offsets[0]: offsets[-1]]


class _Sink:
    """One output file written chunk by chunk under a temporary name (renamed at the end)."""

    def __init__(self, stack: ExitStack, path: Path, fmt: str, schema: pa.Schema, header: list[str]):
        self.fmt = fmt
        tmp = stack.enter_context(io.atomic_path(path))
        if fmt == "parquet":
            self.writer = pq.ParquetWriter(tmp, schema, compression="zstd", store_schema=False,
                                           write_statistics=True)
            stack.callback(self.writer.close)
            return
        raw: BinaryIO = stack.enter_context(open(tmp, "wb"))
        self.stream: BinaryIO = raw
        if fmt == "csv.gz":
            self.stream = stack.enter_context(gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0,
                                                            compresslevel=6))
        self.stream.write((",".join(header) + "\n").encode())

    def payload(self, table: pa.Table) -> Any:
        """What :meth:`write` takes: the Arrow table (Parquet) or the encoded CSV body."""
        return table if self.fmt == "parquet" else csv_bytes(table)

    def write(self, payload: Any) -> None:
        """Append one chunk (runs in the writer thread)."""
        if self.fmt == "parquet":
            if payload.num_rows:
                self.writer.write_table(payload)
        else:
            self.stream.write(payload)


def _parquet_schema(table: str) -> pa.Schema:
    kinds = {"id": pa.int64(), "str": pa.string(), "category": pa.string(), "date": pa.date32(),
             "timestamp": pa.timestamp("s"), "float": pa.float64()}
    return pa.schema([pa.field(c.name, pa.string() if (table, c.name) == ("labs", "value") else kinds[c.kind])
                      for c in CONTRACT[table].columns])


def key_table(key: pd.DataFrame) -> pa.Table:
    """The answer key rows as an Arrow table of :data:`KEY_SCHEMA`."""
    cols = {}
    for field in KEY_SCHEMA:
        values = key[field.name]
        if field.name == "t0":
            v = values.to_numpy(dtype=float)
            cols[field.name] = pa.array(np.nan_to_num(v * 60).astype(np.int64), type=field.type, mask=np.isnan(v))
        elif pa.types.is_string(field.type):
            cols[field.name] = pa.array(values.to_numpy(dtype=object), type=field.type)
        else:
            v = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
            cols[field.name] = pa.array(np.nan_to_num(v).astype(field.type.to_pandas_dtype()), type=field.type,
                                        mask=np.isnan(v))
    return pa.table(cols, schema=KEY_SCHEMA)


# ==================================================================================== driver
def simulate(out_dir: str | Path, answer_key_path: str | Path, defects_path: str | Path, *, seed: int,
             n_admissions: int, eligible_share: dict, true_hr: float, confounding: float,
             baseline_risk28: float, chunk_size: int, defect_rates: dict, study: dict,
             codelists_dir: str | Path, fmt: str = "csv.gz") -> dict:
    """Write synthetic extracts, the answer key and the injected defects.

    Parameters
    ----------
    out_dir : folder of the six raw tables ``<out_dir>/<table>.<fmt>``.
    answer_key_path : Parquet file of the answer key (docs/data-model.md), by admission_id.
    defects_path : JSON file ``{table: {reason: count}}`` of the injected defective rows.
    seed : seed; the same arguments give byte-identical files.
    n_admissions : admissions to simulate (besides the injected bad admission rows).
    eligible_share : ``{"soc": share, "hdank": share}``; eligible counts are ``round(n * share)``.
    true_hr : true conditional hazard ratio of HD-ANK on death.
    confounding : log-odds of HD-ANK per SD of severity (0 = randomised).
    baseline_risk28 : mean 28-day risk of death of the SOC patients.
    chunk_size : admissions generated and written per chunk.
    defect_rates : rates of ``duplicate_row``, ``unit_variant``, ``unknown_unit``,
        ``unparsable_value``, ``impossible_interval``, ``orphan_key``.
    study : the ``study`` config section (period, thresholds, windows).
    codelists_dir : folder of the code lists.
    fmt : ``csv``, ``csv.gz`` or ``parquet``.

    Returns
    -------
    dict
        Summary: admissions per status, defects per table and reason, seconds.
    """
    if fmt not in ("csv", "csv.gz", "parquet"):
        raise ValueError(f"unknown extract format {fmt!r} (csv, csv.gz or parquet)")
    started = _time.perf_counter()
    vocab, st = load_vocab(codelists_dir), Study.from_config(study)
    rates = {**DEFAULTS["defect_rates"], **(defect_rates or {})}
    plans = plan_chunks(int(n_admissions), int(chunk_size), eligible_share)
    block = 2 * int(chunk_size) + 1000  # ids of chunk c: (c * block, (c + 1) * block]

    def context(plan: ChunkPlan) -> Ctx:
        rng = np.random.default_rng(np.random.SeedSequence(int(seed), spawn_key=(plan.index,)))
        return Ctx(rng=rng, vocab=vocab, study=st, true_hr=float(true_hr), confounding=float(confounding),
                   baseline_risk28=float(baseline_risk28), defect_rates=rates,
                   id_base=plan.index * block, id_block=block)

    with ExitStack() as stack, ThreadPoolExecutor(max_workers=1) as writer:
        sinks = {t: _Sink(stack, Path(extract_path(str(out_dir), t, fmt)), fmt, _parquet_schema(t),
                          CONTRACT[t].names) for t in TABLES}
        sinks["answer_key"] = _Sink(stack, Path(answer_key_path), "parquet", KEY_SCHEMA, list(KEY_COLUMNS))
        statuses, defects = _write_chunks(plans, context, sinks, writer, fmt)
    io.write_json(defects, defects_path)
    summary = {"statuses": dict(sorted(statuses.items())), "defects": defects,
               "seconds": round(_time.perf_counter() - started, 1)}
    LOG.info("simulated %d admissions in %.1f s: %s", n_admissions, summary["seconds"], summary["statuses"])
    return summary


def _write_chunks(plans: list[ChunkPlan], context: Any, sinks: dict[str, "_Sink"],
                  writer: ThreadPoolExecutor, fmt: str) -> tuple[dict[str, int], dict[str, dict[str, int]]]:
    """Simulate the chunks in order and append them to the sinks.

    Encoding runs here; compression and writing run in the ``writer`` thread, which works on
    chunk c while chunk c + 1 is simulated (at most one chunk waits: bounded memory).
    """
    defects = {t: dict.fromkeys(r, 0) for t, r in REASONS.items()}
    statuses: dict[str, int] = {}
    pending: list[Future] = []
    for plan in plans:
        result = simulate_chunk(context(plan), plan)
        payloads = [(sinks[t], sinks[t].payload(arrow_table(result.tables[t], t, fmt))) for t in TABLES]
        payloads.append((sinks["answer_key"], key_table(result.key)))
        _add_counts(defects, result.defects)
        for status, count in result.key["status"].value_counts().items():
            statuses[status] = statuses.get(status, 0) + int(count)
        del result
        for future in pending:
            future.result()
        pending = [writer.submit(sink.write, payload) for sink, payload in payloads]
        del payloads
        LOG.info("chunk %d/%d: %d admissions", plan.index + 1, len(plans), plan.n)
    for future in pending:
        future.result()
    return statuses, defects


def _add_counts(total: dict, part: dict) -> None:
    for table, reasons in part.items():
        for reason, count in reasons.items():
            total[table][reason] += int(count)


def simulate_from_config(out_dir: str | Path, answer_key_path: str | Path, defects_path: str | Path,
                         synthetic: dict, study: dict, codelists_dir: str | Path, fmt: str) -> dict:
    """:func:`simulate` with the ``synthetic`` config section (schema defaults where absent)."""
    cfg = {**DEFAULTS, **{k: v for k, v in synthetic.items() if k != "enabled"}}
    cfg["eligible_share"] = {**DEFAULTS["eligible_share"], **(synthetic.get("eligible_share") or {})}
    cfg["defect_rates"] = {**DEFAULTS["defect_rates"], **(synthetic.get("defect_rates") or {})}
    return simulate(out_dir, answer_key_path, defects_path, study=study, codelists_dir=codelists_dir,
                    fmt=fmt, **cfg)
