"""Table 1: baseline characteristics by arm, before and after matching (protocol 4.1).

:func:`table_one` computes the aggregates (counts, medians, quartiles, missing counts) from the
patient-level cohort and matched frames; :func:`format_table_one` turns them into released
cells (disclosure control applied) with the SMDs of the match stage's balance table.  Only the
formatted rows leave this module for the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from hdank.covariates import COVARIATES
from hdank.disclosure import Cell, Disclosure, count_cell, text_cell

#: covariate -> (label, decimals of medians); levels of categorical covariates in LEVEL_LABELS.
COVARIATE_LABELS: dict[str, tuple[str, int]] = {
    "cov_num_age": ("Age, years", 0),
    "cov_cat_sex": ("Sex", 0),
    "cov_num_bmi": ("Body-mass index, kg/m\u00b2", 1),
    "cov_bin_hypertension": ("Hypertension", 0),
    "cov_bin_diabetes": ("Diabetes", 0),
    "cov_bin_obesity": ("Obesity", 0),
    "cov_bin_ckd": ("Chronic kidney disease", 0),
    "cov_bin_chronic_lung": ("Chronic lung disease", 0),
    "cov_bin_cardiovascular": ("Cardiovascular disease", 0),
    "cov_bin_cancer": ("Active cancer", 0),
    "cov_num_days_onset_to_t0": ("Symptom onset to T0, days", 1),
    "cov_num_days_admit_to_t0": ("Admission to T0, days", 1),
    "cov_num_days_steroid_to_t0": ("Corticosteroid start to T0, days", 1),
    "cov_num_steroid_dose": ("Corticosteroid dose, mg dexamethasone-eq./day", 1),
    "cov_num_pf_ratio": ("PaO\u2082/FiO\u2082, mmHg", 0),
    "cov_num_crp": ("C-reactive protein, mg/L", 0),
    "cov_num_ferritin": ("Ferritin, ng/mL", 0),
    "cov_num_lymphocytes": ("Lymphocytes, 10\u2079/L", 2),
    "cov_num_ldh": ("Lactate dehydrogenase, U/L", 0),
    "cov_num_d_dimer": ("D-dimer, ng/mL", 0),
    "cov_num_creatinine": ("Creatinine, mg/dL", 2),
    "cov_bin_remdesivir": ("Remdesivir before T0", 0),
    "cov_cat_period": ("Calendar quarter of T0", 0),
}
LEVEL_LABELS = {"cov_cat_sex": {"F": "Female", "M": "Male", "U": "Unknown"}}


def label(covariate: str) -> str:
    """Readable name of a covariate column (also of ``<cov>_missing`` and level columns)."""
    if covariate in COVARIATE_LABELS:
        return COVARIATE_LABELS[covariate][0]
    if covariate.endswith("_missing") and covariate[: -len("_missing")] in COVARIATE_LABELS:
        return COVARIATE_LABELS[covariate[: -len("_missing")]][0] + ": missing"
    for cov in COVARIATE_LABELS:
        if covariate.startswith(cov) and len(covariate) > len(cov):
            level = covariate[len(cov):].strip("_=[]:").removeprefix("T.")
            level = LEVEL_LABELS.get(cov, {}).get(level, level)
            return f"{COVARIATE_LABELS[cov][0]}: {level}"
    name = covariate
    for prefix in ("cov_num_", "cov_bin_", "cov_cat_"):
        name = name.removeprefix(prefix)
    return name.replace("_", " ").capitalize()


def kind(covariate: str) -> str:
    return covariate.split("_")[1] if covariate.startswith("cov_") else "num"


def _weights(frame: pd.DataFrame) -> np.ndarray:
    if "match_weight" in frame.columns:
        return frame["match_weight"].to_numpy(dtype=float)
    return np.ones(len(frame))


def weighted_quantiles(values: np.ndarray, weights: np.ndarray, probs: tuple[float, ...]) -> list[float]:
    """Quantiles; with equal weights the same as numpy's default (linear) quantiles."""
    if len(values) == 0:
        return [math.nan] * len(probs)
    if np.allclose(weights, weights[0]):
        return [float(q) for q in np.quantile(values, probs)]
    order = np.argsort(values, kind="stable")
    v, w = values[order], weights[order]
    cum = np.cumsum(w) - 0.5 * w
    cum /= w.sum()
    return [float(np.interp(p, cum, v)) for p in probs]


def table_one(cohort: pd.DataFrame, matched: pd.DataFrame, covariates: list[str]) -> pd.DataFrame:
    """Aggregates by sample (before/after matching), arm, covariate and level.

    Returns one row per (sample, treated, covariate, level) with ``n_arm`` (patients, or sum of
    match weights), ``count`` (patients in the level, for binary and categorical covariates),
    ``missing``, ``n_observed`` and ``median``, ``q1``, ``q3`` (numeric covariates).  Rows
    with ``covariate`` = ``"_n"`` give the arm sizes.  Counts after matching are weighted by
    ``match_weight`` and rounded to whole patients.
    """
    rows = []
    for sample, frame in (("before", cohort), ("after", matched)):
        w_all = _weights(frame)
        for arm in (0, 1):
            mask = (frame["treated"].to_numpy() == arm)
            sub, w = frame.loc[mask], w_all[mask]
            n_arm = int(round(w.sum()))
            rows.append(dict(sample=sample, treated=arm, covariate="_n", level=None, n_arm=n_arm))
            for cov in covariates:
                if cov not in sub.columns:
                    continue
                col = sub[cov]
                miss = col.isna().to_numpy()
                base = dict(sample=sample, treated=arm, covariate=cov, n_arm=n_arm,
                            missing=int(round(w[miss].sum())), n_observed=int(round(w[~miss].sum())))
                k = kind(cov)
                if k == "num":
                    vals = col.to_numpy(dtype=float, na_value=np.nan)[~miss]
                    q1, med, q3 = weighted_quantiles(vals, w[~miss], (0.25, 0.5, 0.75))
                    rows.append({**base, "level": None, "median": med, "q1": q1, "q3": q3})
                elif k == "bin":
                    ones = col.fillna(0).astype(float).to_numpy() == 1
                    rows.append({**base, "level": "1", "count": int(round(w[ones & ~miss].sum()))})
                else:
                    levels = sorted(frame[cov].dropna().astype(str).unique())
                    text = col.astype("string")
                    for level in levels:
                        hit = (text == level).fillna(False).to_numpy(dtype=bool)
                        rows.append({**base, "level": level, "count": int(round(w[hit].sum()))})
    out = pd.DataFrame(rows)
    for colname in ("count", "missing", "n_observed", "median", "q1", "q3"):
        if colname not in out.columns:
            out[colname] = np.nan
    return out[["sample", "treated", "covariate", "level", "n_arm", "count", "missing", "n_observed",
                "median", "q1", "q3"]]


def balance_key(balance: pd.DataFrame, covariate: str, level: str | None) -> str | None:
    """Row name of the balance table for a covariate (and categorical level), if any.

    The match stage names categorical levels one of several ways; all are tried here so that
    only this function changes if the naming does.
    """
    names = set(balance["covariate"].astype(str)) if len(balance) else set()
    if level is None:
        candidates = [covariate]
    elif level == "missing":
        candidates = [f"{covariate}_missing", f"{covariate}_na", f"{covariate}:missing"]
    else:
        candidates = [f"{covariate}_{level}", f"{covariate}={level}", f"{covariate}[{level}]",
                      f"{covariate}[T.{level}]", f"{covariate}:{level}", f"{covariate}.{level}"]
    for c in candidates:
        if c in names:
            return c
    return None


@dataclass
class TableOneRow:
    label: str
    level: bool = False            # indented sub-row (level of a categorical, or "missing")
    cells: list[Cell] = field(default_factory=list)
    header: bool = False           # the "Patients, n" row


def _smd_cell(balance: pd.DataFrame, key: str | None, column: str, threshold: float) -> Cell:
    if key is None or column not in balance.columns:
        return text_cell("—")
    value = balance.loc[balance["covariate"].astype(str) == key, column]
    if value.empty or pd.isna(value.iloc[0]):
        return text_cell("—")
    smd = float(value.iloc[0])
    flag = " \u2020" if abs(smd) >= threshold else ""
    return text_cell(f"{smd:.3f}{flag}")


def _num_text(median: float, q1: float, q3: float, decimals: int) -> str:
    if any(pd.isna(v) for v in (median, q1, q3)):
        return "—"
    return f"{median:,.{decimals}f} [{q1:,.{decimals}f}, {q3:,.{decimals}f}]"


def format_table_one(agg: pd.DataFrame, balance: pd.DataFrame, disclosure: Disclosure,
                     smd_threshold: float, ps_covariates: list[str]) -> list[TableOneRow]:
    """Released rows of Table 1: SOC, HD-ANK, SMD before; SOC, HD-ANK, SMD after.

    Medians and quartiles are withheld ("—") when disclosure control is on and fewer than
    ``small_count_max`` + 1 patients of the arm have a value.  A dagger after an SMD marks
    |SMD| >= ``smd_threshold``; a covariate outside the propensity model is marked with "*".
    """
    def pick(sample, arm, cov, level=None):
        sel = agg[(agg["sample"] == sample) & (agg["treated"] == arm) & (agg["covariate"] == cov)]
        if level is not None:
            sel = sel[sel["level"] == level]
        return sel.iloc[0] if len(sel) else None

    order = [("before", 0), ("before", 1), ("after", 0), ("after", 1)]
    rows = [TableOneRow("Patients, n", header=True, cells=[])]
    for sample, arm in order:
        r = pick(sample, arm, "_n")
        rows[0].cells.append(count_cell(disclosure, r["n_arm"]) if r is not None else text_cell("—"))
    rows[0].cells.insert(2, text_cell(""))
    rows[0].cells.append(text_cell(""))

    covariates = [c for c in agg["covariate"].unique() if c != "_n"]
    for cov in covariates:
        k = kind(cov)
        decimals = COVARIATE_LABELS.get(cov, ("", 1))[1]
        name = label(cov) + ("" if cov in ps_covariates else " *")
        sub_levels: list[TableOneRow] = []
        if k == "num":
            row = TableOneRow(name + ", median [IQR]")
            for sample, arm in order:
                r = pick(sample, arm, cov)
                few = disclosure.enabled and r is not None and 0 < r["n_observed"] <= disclosure.small_count_max
                text = "—" if r is None or few else _num_text(r["median"], r["q1"], r["q3"], decimals)
                row.cells.append(text_cell(text))
        elif k == "bin":
            row = TableOneRow(name + ", n (%)")
            for sample, arm in order:
                r = pick(sample, arm, cov, "1")
                row.cells.append(count_cell(disclosure, r["count"], r["n_arm"]) if r is not None else text_cell("—"))
        else:
            row = TableOneRow(name + ", n (%)")
            row.cells = [text_cell("") for _ in order]
            levels = [lv for lv in agg.loc[agg["covariate"] == cov, "level"].dropna().unique()]
            for level in levels:
                sub = TableOneRow(LEVEL_LABELS.get(cov, {}).get(level, str(level)), level=True)
                for sample, arm in order:
                    r = pick(sample, arm, cov, level)
                    sub.cells.append(count_cell(disclosure, r["count"], r["n_arm"]) if r is not None
                                     else text_cell("—"))
                key = balance_key(balance, cov, level)
                sub.cells.insert(2, _smd_cell(balance, key, "smd_before", smd_threshold))
                sub.cells.append(_smd_cell(balance, key, "smd_after", smd_threshold))
                sub_levels.append(sub)
        key = balance_key(balance, cov, None)
        row.cells.insert(2, _smd_cell(balance, key, "smd_before", smd_threshold) if k != "cat" else text_cell(""))
        row.cells.append(_smd_cell(balance, key, "smd_after", smd_threshold) if k != "cat" else text_cell(""))
        rows.append(row)
        rows.extend(sub_levels)
        any_missing = agg.loc[agg["covariate"] == cov, "missing"].fillna(0).sum() > 0
        if any_missing:
            miss = TableOneRow("missing, n (%)", level=True)
            for sample, arm in order:
                r = pick(sample, arm, cov) if k != "bin" else pick(sample, arm, cov, "1")
                miss.cells.append(count_cell(disclosure, r["missing"], r["n_arm"]) if r is not None
                                  else text_cell("—"))
            mkey = balance_key(balance, cov, "missing")
            miss.cells.insert(2, _smd_cell(balance, mkey, "smd_before", smd_threshold))
            miss.cells.append(_smd_cell(balance, mkey, "smd_after", smd_threshold))
            rows.append(miss)
    return rows


def ordered_covariates(columns, ps_covariates: list[str]) -> list[str]:
    """Baseline covariates present in the cohort: the protocol's order, then any others of the model."""
    present = [c for c in COVARIATES if c in columns]
    return present + [c for c in ps_covariates if c in columns and c not in present]
