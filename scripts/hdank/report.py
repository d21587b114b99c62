"""The report stage: one self-contained HTML file, plus its tables (CSV) and figures (SVG).

:func:`render_report_files` reads the releasable and patient-level outputs of the earlier
stages, reduces the patient-level ones to aggregates, applies disclosure control
(:mod:`hdank.disclosure`, protocol 4.7) and renders ``workflow/templates/report.html.j2`` with
Jinja2 autoescaping.  Nothing patient-level (identifiers, individual times or dates) is put
into the template context: only released counts, summary statistics and figures drawn from
aggregates.  Methods text takes every number from the config passed in.
"""

from __future__ import annotations

import csv
import dataclasses
import io as _io
import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2
import numpy as np
import pandas as pd
import yaml

from hdank import io, plots, provenance
from hdank.cohort import INCLUSION, RULES
from hdank.disclosure import (Cell, Disclosure, at_risk_cell, at_risk_counts, count_cell,
                              rounded_km, text_cell)
from hdank.table_one import format_table_one, label, ordered_covariates, table_one

TEMPLATE_DIR = Path(__file__).resolve().parents[2] / "workflow" / "templates"
TEMPLATE = "report.html.j2"

#: Published study (protocol section 1) that the reproduction check compares against.
PUBLISHED = {
    "citation": "Mastrangelo et al., Eur J Clin Microbiol Infect Dis 2023;42:1383-1387",
    "n": 256, "soc": 146, "hdank": 110,
    "balance": "Groups well balanced at baseline",
    "mortality": "No difference in 28-day in-hospital mortality",
}

INPUT_KEYS = ("attrition", "ingest_summary", "cohort", "matched", "ps", "balance", "diagnostics",
              "estimates", "km", "ph_test")

ANALYSIS_LABELS = {
    "primary_matched": "Primary: propensity-score matched",
    "unadjusted": "Unadjusted, whole cohort",
    "cohort_multivariable": "Multivariable Cox, whole cohort",
    "iptw": "IPTW, whole cohort",
    "overlap": "Overlap weights, whole cohort",
    "landmark": "Landmark at T0 + grace period",
    "clone_censor_weight": "Clone-censor-weight emulation",
    "censor_discharge": "Censoring at discharge",
    "complete_case": "Complete-case matching",
}
BIASED_BY_DESIGN = {"unadjusted"}
#: Benchmarks of the report's own rule are left out: they would be those of the previous run.
REPORT_RULE = "render_report"


# --------------------------------------------------------------------------- formatting

def _missing(x) -> bool:
    return x is None or x is pd.NA or (isinstance(x, float) and math.isnan(x))


def fmt3(x) -> str:
    """Three significant digits (1.00, 0.953, 12.3); an em dash when missing."""
    if _missing(x) or not np.isfinite(float(x)):
        return "—"
    text = f"{float(x):#.3g}"
    return text.rstrip(".") if "e" not in text else text


def fmt_p(p) -> str:
    if _missing(p):
        return "—"
    p = float(p)
    return "<0.001" if p < 0.001 else f"{p:.3f}"


def fmt_pct(x, decimals: int = 1) -> str:
    return "—" if _missing(x) else f"{100 * float(x):.{decimals}f}%"


def fmt_ci(low, high, fmt=fmt3) -> str:
    return f"{fmt(low)} to {fmt(high)}"


def ordinal(x) -> str:
    """1st, 2nd, 3rd, 4th, 11th, 99th, 2.5th."""
    text = f"{float(x):g}"
    if not float(x).is_integer():
        return text + "th"
    n = int(float(x))
    suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
    return f"{n}{suffix}"


def _pair(a: str, b: str, template: str) -> str:
    """``template`` filled with both values, or just the dash when either is missing."""
    if a == "—" and b == "—":
        return "—"
    return template.format(a, b) if b != "—" else a


def fmt_pp(x) -> str:
    """Risk difference in percentage points with a sign."""
    return "—" if _missing(x) else f"{100 * float(x):+.1f}"


# --------------------------------------------------------------------------- CSV

_PLAIN_NUMBER = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")


def csv_cell(value: Any) -> str:
    """Text of a CSV cell with spreadsheet formula injection neutralised.

    A cell starting with ``=``, ``+``, ``-``, ``@``, tab or carriage return gets a leading
    single quote, unless it is a plain number such as ``-0.12``.
    """
    if _missing(value):
        return ""
    if isinstance(value, (float, np.floating)):
        text = repr(float(value))
    else:
        text = str(value)
    if text and text[0] in "=+-@\t\r" and not _PLAIN_NUMBER.match(text):
        return "'" + text
    return text


def csv_text(frame: pd.DataFrame) -> str:
    buf = _io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow([csv_cell(c) for c in frame.columns])
    for row in frame.itertuples(index=False):
        writer.writerow([csv_cell(v) for v in row])
    return buf.getvalue()


# --------------------------------------------------------------------------- inputs

def read_json(path: str) -> dict:
    return json.loads(Path(path).read_text())


def match_diagnostics(raw: dict, balance: pd.DataFrame, config: dict) -> dict:
    """What the report needs from ``results/match/diagnostics.json`` (one place for key names).

    Falls back to recomputing the balance gate from the balance table and the config when the
    file does not say (then ``gate_source`` is ``"report"``).
    """
    gate = raw.get("balance_gate") or {}
    bcfg = config.get("balance", {})
    threshold = float(gate.get("smd_threshold", bcfg.get("smd_threshold", 0.1)))
    min_share = float(gate.get("min_share_treated_matched", bcfg.get("min_share_treated_matched", 0.8)))
    n_treated = raw.get("n_treated")
    matched = raw.get("n_treated_matched")
    share = gate.get("share_treated_matched", raw.get("share_treated_matched"))
    if share is None and n_treated and matched is not None:
        share = matched / n_treated
    smd_after = balance["smd_after"].abs() if "smd_after" in balance.columns else pd.Series(dtype=float)
    failing = gate.get("failing_covariates")
    if failing is None:
        failing = balance.loc[~(smd_after < threshold), "covariate"].astype(str).tolist() if len(balance) else []
    passed = gate.get("passed")
    source = "match stage"
    if passed is None:
        source = "report"
        share_ok = share is not None and share >= min_share
        passed = bool(share_ok and not failing)
    max_smd = gate.get("max_abs_smd_after")
    if max_smd is None and smd_after.notna().any():
        max_smd = float(smd_after.max())
    return {
        "n_cohort": raw.get("n_cohort"),
        "n_analysed": raw.get("n_analysed"),
        "n_treated": n_treated,
        "n_control": raw.get("n_control"),
        "n_treated_matched": matched,
        "n_treated_unmatched": raw.get("n_treated_unmatched"),
        "n_controls_used": raw.get("n_controls_used"),
        "share_treated_matched": share,
        "share_ok": gate.get("share_ok", None if share is None else share >= min_share),
        "caliper_sd": raw.get("caliper_sd"),
        "caliper_logit": raw.get("caliper_logit"),
        "gate_passed": bool(passed),
        "failing_covariates": list(failing),
        "max_abs_smd_after": max_smd,
        "smd_threshold": threshold,
        "min_share_treated_matched": min_share,
        "warnings": list(raw.get("warnings") or []),
        "gate_source": source,
    }


def arm_name(value) -> str:
    """'HD-ANK' or 'SOC' from the arm codings the survival stage may use (1/0, labels)."""
    text = str(value).strip().lower()
    if text in {"1", "1.0", "hd-ank", "hdank", "treated", "true", "hd-ank+soc"}:
        return "HD-ANK"
    if text in {"0", "0.0", "soc", "control", "false"}:
        return "SOC"
    return str(value)


# --------------------------------------------------------------------------- context pieces

@dataclass
class Table:
    """A released table: header, rows of cells, and its CSV twin."""

    name: str
    columns: list[str]
    rows: list[list[Cell]]
    csv: pd.DataFrame
    row_classes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def _cells_frame(columns: list[str], rows: list[list[Cell]]) -> pd.DataFrame:
    return pd.DataFrame([[str(c) for c in r] for r in rows], columns=columns)


def _n(x) -> int:
    return int(round(float(x)))


def _count(disc: Disclosure, x) -> Cell:
    """Released count cell of a possibly missing, possibly float count."""
    return count_cell(disc, None if _missing(x) else _n(x))


def attrition_context(attrition: pd.DataFrame, cohort: pd.DataFrame, matched: pd.DataFrame,
                      disc: Disclosure) -> tuple[Table, plots.Svg]:
    descriptions = dict(RULES)
    rows, flow_rows = [], []
    for r in attrition.itertuples(index=False):
        rows.append([text_cell(str(r.rule), numeric=False),
                     text_cell(str(r.description or descriptions.get(r.rule, "")), numeric=False),
                     count_cell(disc, r.excluded), count_cell(disc, r.remaining)])
    table = Table("attrition", ["Rule", "Description", "Excluded", "Remaining"], rows,
                  _cells_frame(["rule", "description", "excluded", "remaining"], rows))

    att = attrition.reset_index(drop=True)
    start = att.iloc[0]
    inclusion = att[att["rule"].isin(INCLUSION)]
    exclusion = att[~att["rule"].isin(INCLUSION) & (att.index > 0)]
    steps = []
    for part, title, after_title in ((inclusion, "Did not meet the inclusion criteria", "Met the inclusion criteria"),
                                     (exclusion, "Excluded", "Study cohort")):
        if part.empty:
            continue
        lines = tuple((str(r.description), disc.fmt_count(r.excluded)) for r in part.itertuples(index=False))
        excl = plots.FlowBox(title, disc.fmt_count(int(part["excluded"].sum())), lines)
        after = plots.FlowBox(after_title, disc.fmt_count(int(part["remaining"].iloc[-1])))
        steps.append((excl, after))

    arms = []
    for arm, value, title in (("HD-ANK", 1, "HD-ANK + SOC"), ("SOC", 0, "SOC alone")):
        n_arm = int((cohort["treated"] == value).sum())
        ids = matched.loc[matched["treated"] == value, "patient_id"]
        n_matched = int(ids.nunique())
        arms.append((arm, plots.FlowBox(title, disc.fmt_count(n_arm)),
                     plots.FlowBox("Matched", disc.fmt_count(n_matched),
                                   (("Not matched", disc.fmt_count(n_arm - n_matched)),))))
    flow = plots.Flow(plots.FlowBox("Admissions in the extracts", disc.fmt_count(int(start["remaining"]))),
                      tuple(steps), tuple(arms), count_kind="n" if disc.enabled else "exact")
    return table, plots.consort_svg(flow)


def ingest_context(summary: dict, disc: Disclosure) -> tuple[Table, Table]:
    tables = summary.get("tables", {})
    cols = ["Table", "File", "Rows read", "Duplicates dropped", "Quarantined", "Rows typed",
            "Unmapped codes", "Units converted"]
    rows = []
    for name in sorted(tables):
        t = tables[name]
        quarantined = sum(int(v) for v in (t.get("quarantined") or {}).values())
        rows.append([
            text_cell(name, numeric=False),
            text_cell(Path(str(t.get("file", ""))).name, numeric=False),
            count_cell(disc, t.get("rows_read")),
            count_cell(disc, t.get("duplicates_dropped", 0)),
            count_cell(disc, quarantined),
            count_cell(disc, t.get("rows_typed")),
            count_cell(disc, t["rows_unmapped_code"]) if "rows_unmapped_code" in t else text_cell("—"),
            count_cell(disc, t["unit_converted"]) if "unit_converted" in t else text_cell("—"),
        ])
    frame = _cells_frame(["table", "file", "rows_read", "duplicates_dropped", "quarantined", "rows_typed",
                          "rows_unmapped_code", "unit_converted"], rows)
    frame["extra_columns_ignored"] = ["; ".join(str(e) for e in (tables[n].get("extra_columns_ignored") or []))
                                      for n in sorted(tables)]
    counts = Table("ingest", cols, rows, frame)
    counts.notes = [f"{name}: " + ", ".join(str(e) for e in tables[name]["extra_columns_ignored"])
                    for name in sorted(tables) if tables[name].get("extra_columns_ignored")]

    reasons = sorted({r for t in tables.values() for r in (t.get("quarantined") or {})})
    names = sorted(tables)
    qrows = []
    for reason in reasons:
        row = [text_cell(reason.replace("_", " "), numeric=False)]
        for name in names:
            n = (tables[name].get("quarantined") or {}).get(reason, 0)
            row.append(count_cell(disc, n))
        total = summary.get("quarantined_total", {}).get(reason)
        if total is None:
            total = sum((tables[n].get("quarantined") or {}).get(reason, 0) for n in names)
        row.append(count_cell(disc, total))
        qrows.append(row)
    qcols = ["Reason"] + [n.replace("_", " ") for n in names] + ["Total"]
    quarantine = Table("quarantine", qcols, qrows, _cells_frame(["reason"] + names + ["total"], qrows))
    return counts, quarantine


def table_one_context(cohort: pd.DataFrame, matched: pd.DataFrame, balance: pd.DataFrame,
                      config: dict, disc: Disclosure) -> Table:
    ps_covs = list(config["propensity"]["covariates"])
    covs = ordered_covariates(cohort.columns, ps_covs)
    agg = table_one(cohort, matched, covs)
    threshold = float(config["balance"]["smd_threshold"])
    rows = format_table_one(agg, balance, disc, threshold, ps_covs)
    columns = ["Characteristic", "SOC", "HD-ANK", "SMD", "SOC", "HD-ANK", "SMD"]
    body = [[text_cell(r.label, numeric=False)] + r.cells for r in rows]
    classes = ["header" if r.header else ("level" if r.level else "") for r in rows]
    csv_cols = ["characteristic", "before_soc", "before_hdank", "before_smd", "after_soc", "after_hdank",
                "after_smd"]
    frame = _cells_frame(csv_cols, body)
    frame["characteristic"] = [("  " if r.level else "") + r.label for r in rows]
    return Table("table1", columns, body, frame, row_classes=classes)


def _arm_frames(km: pd.DataFrame, analysis: str, kind: str) -> dict[str, pd.DataFrame]:
    """Rows of one analysis and ``kind`` ("step" or "at_risk") per arm ('HD-ANK', 'SOC').

    ``km.parquet`` of the survival stage (:mod:`hdank.analyses`) has a ``kind`` column; a table
    without it is taken as steps only.  Arms may be coded 1/0 or by name.
    """
    sub = km[km["analysis"].astype(str) == analysis] if "analysis" in km.columns else km
    if "kind" in sub.columns:
        sub = sub[sub["kind"].astype(str) == kind]
    elif kind != "step":
        return {}
    out = {}
    for value, part in sub.groupby(sub["arm"].map(arm_name), sort=True):
        out[value] = part.sort_values("time", kind="stable").reset_index(drop=True)
    return out


def _plot_curve(steps: pd.DataFrame) -> dict[str, np.ndarray]:
    s = steps.sort_values("time", kind="stable")
    s = s[s["time"] > 0]
    surv = s["surv"].to_numpy(dtype=float)
    lower = s["lower"].to_numpy(dtype=float)
    upper = s["upper"].to_numpy(dtype=float)
    lower = np.where(np.isnan(lower), surv, lower)
    upper = np.where(np.isnan(upper), surv, upper)
    return {"time": np.concatenate([[0.0], s["time"].to_numpy(dtype=float)]),
            "surv": np.concatenate([[1.0], surv]), "lower": np.concatenate([[1.0], lower]),
            "upper": np.concatenate([[1.0], upper])}


def km_context(km: pd.DataFrame, config: dict, disc: Disclosure) -> tuple[plots.Svg | None, Table | None, pd.DataFrame]:
    days = [float(d) for d in config["survival"]["at_risk_days"]]
    horizon = float(config["survival"]["risk_horizon_days"])
    horizon = max(horizon, max(days) if days else horizon)
    arms = _arm_frames(km, "primary_matched", "step")
    if not arms:
        return None, None, pd.DataFrame()
    given = _arm_frames(km, "primary_matched", "at_risk")
    curves, released, at_risk_text, at_risk_rows = {}, [], {}, []
    for arm, steps in arms.items():
        steps = steps.assign(n_risk=steps["n_risk"].round(), n_event=steps["n_event"].round(),
                             n_censor=steps["n_censor"].round())
        if disc.enabled:
            curve = rounded_km(steps, horizon)
            curves[arm] = {k: curve[k].to_numpy(dtype=float) for k in ("time", "surv", "lower", "upper")}
        else:
            curves[arm] = _plot_curve(steps)
        released.append(pd.DataFrame({"arm": arm, **{k: curves[arm][k] for k in ("time", "surv", "lower", "upper")}}))
        counts = at_risk_counts(steps, days)
        if arm in given:  # the survival stage's own at-risk table wins where it has the day
            by_day = dict(zip(given[arm]["time"].astype(float), given[arm]["n_risk"]))
            counts = [_n(by_day[d]) if d in by_day and not _missing(by_day[d]) else c
                      for d, c in zip(days, counts)]
        cells = [at_risk_cell(disc, n) for n in counts]
        at_risk_text[arm] = [str(c) for c in cells]
        at_risk_rows.append([text_cell(arm, numeric=False)] + cells)
    subtitle = ("Curves recomputed from day-binned, midpoint-6 rounded counts (disclosure control)"
                if disc.enabled else "")
    svg = plots.km_svg(curves, at_risk_text, days, horizon, "mid6" if disc.enabled else "exact", subtitle)
    columns = ["Arm"] + [f"Day {d:g}" for d in days]
    table = Table("at_risk", columns, at_risk_rows,
                  _cells_frame(["arm"] + [f"day_{d:g}" for d in days], at_risk_rows))
    curve_csv = pd.concat(released, ignore_index=True)
    for col in ("surv", "lower", "upper"):
        curve_csv[col] = curve_csv[col].round(6)
    return svg, table, curve_csv


def _analysis_order(estimates: pd.DataFrame, config: dict) -> list[str]:
    configured = list(config["survival"]["analyses"])
    present = list(estimates["analysis"].astype(str))
    order = [a for a in configured if a in present]
    order += [a for a in present if a not in order]
    if "primary_matched" in order:
        order.remove("primary_matched")
        order.insert(0, "primary_matched")
    return order


def estimates_context(estimates: pd.DataFrame, config: dict, disc: Disclosure) -> tuple[Table, plots.Svg, pd.DataFrame]:
    est = estimates.set_index(estimates["analysis"].astype(str))
    rows, classes, forest, csv_rows = [], [], [], []
    for a in _analysis_order(estimates, config):
        r = est.loc[a]
        biased = a in BIASED_BY_DESIGN
        name = ANALYSIS_LABELS.get(a, a.replace("_", " ").capitalize())
        rows.append([
            text_cell(name + (" — biased by design" if biased else ""), numeric=False),
            text_cell(str(r.get("method", "") or ""), numeric=False),
            _count(disc, r.get("n")),
            _count(disc, r.get("events_treated")),
            _count(disc, r.get("events_control")),
            text_cell(_pair(fmt3(r["hr"]), _pair(fmt3(r["hr_low"]), fmt3(r["hr_high"]), "{} to {}"), "{} ({})")),
            text_cell(fmt_p(r.get("p"))),
            text_cell(_pair(fmt_pct(r.get("risk_treated")), fmt_pct(r.get("risk_control")), "{} vs {}")),
            text_cell(_pair(fmt_pp(r.get("risk_difference")),
                            _pair(fmt_pp(r.get("rd_low")), fmt_pp(r.get("rd_high")), "{} to {}"), "{} ({})")),
        ])
        classes.append("primary" if a == "primary_matched" else ("biased" if biased else ""))
        forest.append(plots.ForestRow(name, float(r["hr"]) if not _missing(r["hr"]) else math.nan,
                                      float(r["hr_low"]) if not _missing(r["hr_low"]) else math.nan,
                                      float(r["hr_high"]) if not _missing(r["hr_high"]) else math.nan,
                                      primary=a == "primary_matched", biased=biased))
        csv_rows.append({
            "analysis": a, "label": name, "biased_by_design": biased, "method": r.get("method"),
            "n": str(rows[-1][2]), "events_hdank": str(rows[-1][3]), "events_soc": str(rows[-1][4]),
            **{k: (None if _missing(r.get(k)) else round(float(r[k]), 6))
               for k in ("hr", "hr_low", "hr_high", "p", "risk_treated", "risk_control", "risk_difference",
                         "rd_low", "rd_high")},
        })
    columns = ["Analysis", "Method", "n", "Deaths HD-ANK", "Deaths SOC", "HR (95% CI)", "p",
               "28-day risk HD-ANK vs SOC", "Risk difference, pp (95% CI)"]
    table = Table("estimates", columns, rows, pd.DataFrame(csv_rows), row_classes=classes)
    return table, plots.forest_svg(forest), pd.DataFrame(csv_rows)


PH_TERMS = {"treated": "Treatment (HD-ANK)", "GLOBAL": "Global test"}


def ph_context(ph: pd.DataFrame, config: dict) -> Table:
    """Schoenfeld tests: treatment and global test of every analysis, plus any other term with
    p < 0.05 (all terms go to the CSV)."""
    rows, classes, csv_rows = [], [], []
    previous = None
    order = {a: i for i, a in enumerate(_analysis_order(ph.drop_duplicates("analysis"), config))}
    ph = ph.assign(_order=ph["analysis"].astype(str).map(order)).sort_values("_order", kind="stable")
    for r in ph.itertuples(index=False):
        a, term = str(r.analysis), str(r.term)
        p = getattr(r, "p", math.nan)
        flagged = not _missing(p) and float(p) < 0.05
        note = "evidence of non-proportional hazards" if flagged else ""
        csv_rows.append({"analysis": a, "term": term,
                         "chisq": None if _missing(r.chisq) else round(float(r.chisq), 6),
                         "df": None if _missing(r.df) else float(r.df),
                         "p": None if _missing(p) else round(float(p), 6), "note": note})
        if term not in PH_TERMS and not flagged:
            continue
        first = a != previous
        previous = a
        rows.append([text_cell(ANALYSIS_LABELS.get(a, a) if first else "", numeric=False),
                     text_cell(PH_TERMS.get(term) or short_label(term), numeric=False),
                     text_cell("—" if _missing(r.chisq) else f"{float(r.chisq):.2f}"),
                     text_cell("—" if _missing(r.df) else f"{float(r.df):g}"),
                     text_cell(fmt_p(p)), text_cell(note, numeric=False)])
        classes.append(("first " if first else "") + ("flag" if flagged else ""))
    return Table("ph_test", ["Analysis", "Term", "\u03c7\u00b2", "df", "p", "Note"], rows,
                 pd.DataFrame(csv_rows, columns=["analysis", "term", "chisq", "df", "p", "note"]),
                 row_classes=[c.strip() for c in classes])


def short_label(covariate: str) -> str:
    """Covariate label without its unit: 'PaO2/FiO2: missing', 'Lactate dehydrogenase'."""
    return re.sub(r", [^:]+(?=:|$)", "", label(covariate))


_COUNT_COLUMN = re.compile(r"^(n|n_.*|.*_n|events?(_.*)?|.*_events?|count.*|.*_count)$")
_IDENTIFIER_COLUMN = re.compile(r"(patient|admission)_?id", re.I)


def recovery_context(path: str | None, disc: Disclosure) -> Table | None:
    """The recovery validation table (optional); identifier columns are never shown."""
    if not path or not Path(path).is_file():
        return None
    frame = pd.read_csv(path)
    frame = frame[[c for c in frame.columns if not _IDENTIFIER_COLUMN.search(str(c))]]
    rows = []
    for r in frame.itertuples(index=False):
        row = []
        for col, value in zip(frame.columns, r):
            if _missing(value):
                row.append(text_cell("—"))
            elif isinstance(value, (bool, np.bool_)):
                row.append(text_cell("yes" if value else "no"))
            elif _COUNT_COLUMN.match(str(col)) and isinstance(value, (int, np.integer, float, np.floating)) \
                    and float(value) >= 0 and float(value) == int(value):
                row.append(count_cell(disc, int(value)))
            elif isinstance(value, (float, np.floating)) and float(value).is_integer() and abs(value) >= 100:
                row.append(text_cell(f"{float(value):,.0f}"))
            elif isinstance(value, (float, np.floating)):
                row.append(text_cell(fmt3(value)))
            elif isinstance(value, (int, np.integer)):
                row.append(text_cell(str(value)))
            else:
                row.append(text_cell(str(value), numeric=False))
        rows.append(row)
    columns = [str(c) for c in frame.columns]
    return Table("recovery", columns, rows, _cells_frame(columns, rows))


def reproduction_context(cohort: pd.DataFrame, balance: pd.DataFrame, primary: pd.Series | None,
                         gate: dict, disc: Disclosure) -> Table:
    n = len(cohort)
    n_hd = int((cohort["treated"] == 1).sum())
    n_soc = n - n_hd
    threshold = gate["smd_threshold"]
    before = balance["smd_before"].abs().max() if "smd_before" in balance.columns and len(balance) else math.nan
    after = gate.get("max_abs_smd_after")
    rows = []

    def same(ours, theirs):
        return "same" if ours == theirs else "differs"

    rows.append([text_cell("Patients in the cohort", numeric=False), text_cell(f"{PUBLISHED['n']:,}"),
                 count_cell(disc, n), text_cell(same(n, PUBLISHED["n"]), numeric=False)])
    rows.append([text_cell("SOC", numeric=False), text_cell(f"{PUBLISHED['soc']:,}"),
                 count_cell(disc, n_soc), text_cell(same(n_soc, PUBLISHED["soc"]), numeric=False)])
    rows.append([text_cell("HD-ANK + SOC", numeric=False), text_cell(f"{PUBLISHED['hdank']:,}"),
                 count_cell(disc, n_hd), text_cell(same(n_hd, PUBLISHED["hdank"]), numeric=False)])
    balanced_before = not _missing(before) and before < threshold
    ours_balance = (f"max |SMD| {fmt3(before)} before matching, {fmt3(after)} after "
                    f"(threshold {threshold:g}); balance gate {'passed' if gate['gate_passed'] else 'FAILED'}")
    verdict = ("same" if balanced_before else
               ("balanced only after matching" if gate["gate_passed"] else "differs"))
    rows.append([text_cell("Baseline balance", numeric=False), text_cell(PUBLISHED["balance"], numeric=False),
                 text_cell(ours_balance, numeric=False), text_cell(verdict, numeric=False)])
    if primary is not None:
        lo, hi = float(primary["hr_low"]), float(primary["hr_high"])
        no_diff = lo <= 1.0 <= hi
        ours = (f"HR {fmt3(primary['hr'])} ({fmt_ci(lo, hi)}), p {fmt_p(primary.get('p'))}; "
                f"risk difference {fmt_pp(primary.get('risk_difference'))} pp")
        verdict = "same" if no_diff else "differs"
        if not gate["gate_passed"]:
            verdict += " (not interpretable: balance gate failed)"
    else:
        ours, verdict = "primary analysis missing", "—"
    rows.append([text_cell("28-day in-hospital mortality", numeric=False),
                 text_cell(PUBLISHED["mortality"], numeric=False), text_cell(ours, numeric=False),
                 text_cell(verdict, numeric=False)])
    rows = [[dataclasses.replace(c, numeric=False) for c in row] for row in rows]
    classes = ["same" if str(r[-1]) == "same" else "differs" for r in rows]
    cols = ["Item", "Published", "This run", "Verdict"]
    return Table("reproduction", cols, rows, _cells_frame(["item", "published", "this_run", "verdict"], rows),
                 row_classes=classes)


def _share_text(gate: dict, disc: Disclosure) -> str:
    """Share of HD-ANK patients matched; with disclosure control from the released counts
    (an exact share would give the exact counts away)."""
    if not disc.enabled:
        share = gate["share_treated_matched"]
        return "—" if share is None else fmt_pct(share)
    if gate["n_treated_matched"] is None or gate["n_treated"] is None:
        return "—"
    pct = disc.percent(gate["n_treated_matched"], gate["n_treated"])
    return "—" if pct is None else f"{pct:.1f}%"


def answer_context(primary: pd.Series | None, matched: pd.DataFrame, gate: dict, config: dict,
                   disc: Disclosure) -> dict:
    horizon = config["survival"]["risk_horizon_days"]
    if primary is None:
        return {"available": False}
    lo, hi, hr = float(primary["hr_low"]), float(primary["hr_high"]), float(primary["hr"])
    if not (np.isfinite(lo) and np.isfinite(hi)):
        direction = "could not be estimated"
    elif lo <= 1.0 <= hi:
        direction = "no evidence of a difference"
    elif hi < 1.0:
        direction = "lower hazard of death with HD-ANK"
    else:
        direction = "higher hazard of death with HD-ANK"
    n_hd = int(matched.loc[matched["treated"] == 1, "patient_id"].nunique())
    n_soc = int(matched.loc[matched["treated"] == 0, "patient_id"].nunique())
    evalue = primary.get("evalue")
    return {
        "available": True,
        "hr": fmt3(hr), "ci": fmt_ci(lo, hi), "p": fmt_p(primary.get("p")),
        "logrank_p": fmt_p(primary.get("logrank_p")),
        "risk_treated": fmt_pct(primary.get("risk_treated")),
        "risk_control": fmt_pct(primary.get("risk_control")),
        "rd": fmt_pp(primary.get("risk_difference")),
        "rd_ci": f"{fmt_pp(primary.get('rd_low'))} to {fmt_pp(primary.get('rd_high'))}",
        "evalue": fmt3(evalue), "evalue_ci": fmt3(primary.get("evalue_ci")),
        "n_hdank": count_cell(disc, n_hd), "n_soc": count_cell(disc, n_soc),
        "events_hdank": _count(disc, primary.get("events_treated")),
        "events_soc": _count(disc, primary.get("events_control")),
        "direction": direction,
        "horizon": f"{horizon:g}",
        "method": str(primary.get("method", "") or ""),
    }


def methods_context(config: dict) -> dict:
    """Every value the methods text quotes, taken from the config."""
    s, m, b, sv = config["study"], config["matching"], config["balance"], config["survival"]
    analyses = []
    for name, settings in sv["analyses"].items():
        text = {
            "primary_matched": "matched sample, Cox model with robust variance clustered on matched pair",
            "unadjusted": "whole cohort without adjustment (biased by design: shows the confounding)",
            "cohort_multivariable": "whole cohort, Cox model adjusted for the propensity-score covariates",
            "iptw": (f"whole cohort, stabilised inverse probability of treatment weights truncated at the "
                     f"{ordinal(config['weights']['truncate_percentiles'][0])} and "
                     f"{ordinal(config['weights']['truncate_percentiles'][1])} percentiles, weighted Cox model "
                     f"with robust variance"),
            "overlap": "whole cohort, overlap-weighted Cox model with robust variance",
            "landmark": (f"patients alive and in follow-up at T0 + {s['grace_hours']:g} h, exposure as at the "
                         f"landmark"),
            "clone_censor_weight": (f"clone-censor-weight emulation of the target trial with a grace period of "
                                    f"{s['grace_hours']:g} h"
                                    + (f", bootstrap CI from {settings.get('bootstrap')} replicates "
                                       f"(seed {settings.get('seed')})" if settings and settings.get("bootstrap")
                                       else "")),
            "censor_discharge": "matched sample, censored at discharge instead of at the horizon",
            "complete_case": "propensity score and matching among patients with every covariate recorded",
        }.get(name, name.replace("_", " "))
        analyses.append((ANALYSIS_LABELS.get(name, name), text, name in BIASED_BY_DESIGN))
    weights = config["weights"]["truncate_percentiles"]
    return {
        "period_start": s["period_start"], "period_end": s["period_end"], "min_age": s["min_age"],
        "pcr_before": f"{s['pcr_days_before_admission']:g}", "pcr_after": f"{s['pcr_days_after_admission']:g}",
        "steroid_min": f"{s['steroid_min_dex_mg']:g}", "grace_hours": f"{s['grace_hours']:g}",
        "followup_days": f"{s['followup_days']:g}", "baseline_hours": f"{s['baseline_window_hours']:g}",
        "hdank_mg_per_kg": f"{s['hdank_min_mg_per_kg']:g}", "hdank_mg": f"{s['hdank_min_mg_no_weight']:g}",
        "dose_window": f"{s['hdank_dose_window_hours']:g}", "obesity_bmi": f"{s['obesity_bmi']:g}",
        "covariates": [short_label(c) for c in config["propensity"]["covariates"]],
        "missing": config["propensity"]["missing"],
        "method": {"nearest": "greedy nearest-neighbour", "optimal": "optimal (minimum total distance)"}.get(
            m["method"], m["method"]),
        "ratio": m["ratio"], "replace": m["replace"],
        "caliper_sd": f"{m['caliper_sd']:g}",
        "order": {"largest": "largest propensity score first", "smallest": "smallest propensity score first",
                  "data": "in data order"}.get(m["order"], m["order"]),
        "smd_threshold": f"{b['smd_threshold']:g}",
        "min_share": f"{100 * b['min_share_treated_matched']:g}%",
        "truncate": f"{ordinal(weights[0])} and {ordinal(weights[1])}",
        "horizon": f"{sv['risk_horizon_days']:g}",
        "at_risk_days": ", ".join(f"{d:g}" for d in sv["at_risk_days"]),
        "analyses": analyses,
        "synthetic": bool(config.get("synthetic", {}).get("enabled", False)),
        "synthetic_seed": config.get("synthetic", {}).get("seed"),
        "synthetic_n": config.get("synthetic", {}).get("n_admissions"),
        "true_hr": config.get("synthetic", {}).get("true_hr"),
        "extracts_dir": config.get("extracts", {}).get("dir", ""),
        "extracts_format": config.get("extracts", {}).get("format", ""),
        "codelists": config.get("codelists", ""),
    }


def provenance_context(inputs: dict[str, str], config_files: list[str], raw_files: list[str],
                       recovery: str | None, benchmark_dir: str) -> dict:
    files = [("config", p) for p in config_files]
    files += [(f"input: {k}", v) for k, v in inputs.items()]
    files += [("raw extract", p) for p in raw_files]
    if recovery and Path(recovery).is_file():
        files.append(("recovery validation", recovery))
    hashes = provenance.hash_files(files)
    bench = [b for b in provenance.benchmarks(benchmark_dir)
             if b.rule != REPORT_RULE and not b.rule.startswith(REPORT_RULE + "/")]
    # SOURCE_DATE_EPOCH asks for a reproducible report: the run times (measurements that
    # differ between identical runs) then stay out of the HTML, in tables/benchmarks.csv only
    reproducible = "SOURCE_DATE_EPOCH" in os.environ
    return {
        "date": provenance.run_date(),
        "git": provenance.git_state(),
        "hashes": hashes,
        "packages": provenance.package_versions(),
        "benchmarks": [] if reproducible else bench,
        "benchmarks_all": bench,
        "benchmarks_omitted": reproducible and bool(bench),
        "benchmark_total": sum(b.seconds for b in bench),
    }


# --------------------------------------------------------------------------- rendering

def environment(template_dir: str | Path = TEMPLATE_DIR) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(template_dir)), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    env.filters["fmt3"] = fmt3
    env.filters["fmt_p"] = fmt_p
    return env


def build_context(inputs: dict[str, str], config: dict, config_files: list[str], raw_files: list[str],
                  benchmark_dir: str, recovery: str | None) -> tuple[dict, dict[str, pd.DataFrame], list[plots.Svg]]:
    """Template context, CSV tables and figures of the report (aggregates only)."""
    missing = [k for k in INPUT_KEYS if k not in inputs]
    if missing:
        raise KeyError(f"render_report_files: inputs lack {', '.join(missing)} (expected keys: "
                       f"{', '.join(INPUT_KEYS)})")
    disc = Disclosure.from_config(config.get("report", {}))
    attrition = pd.read_parquet(inputs["attrition"])
    summary = read_json(inputs["ingest_summary"])
    cohort = pd.read_parquet(inputs["cohort"])
    matched = pd.read_parquet(inputs["matched"])
    ps = pd.read_parquet(inputs["ps"])
    balance = pd.read_parquet(inputs["balance"])
    gate = match_diagnostics(read_json(inputs["diagnostics"]), balance, config)
    estimates = pd.read_parquet(inputs["estimates"])
    km = pd.read_parquet(inputs["km"])
    ph = pd.read_parquet(inputs["ph_test"])

    primary_rows = estimates[estimates["analysis"].astype(str) == "primary_matched"]
    primary = primary_rows.iloc[0] if len(primary_rows) else None

    attrition_table, consort = attrition_context(attrition, cohort, matched, disc)
    ingest_table, quarantine_table = ingest_context(summary, disc)
    t1 = table_one_context(cohort, matched, balance, config, disc)

    # propensity-score overlap: smoothed densities only
    ps_ok = ps[ps["ps"].notna()]
    arms = (("HD-ANK", 1), ("SOC", 0))
    mps = matched[["patient_id", "treated", "match_weight"]].merge(ps_ok[["patient_id", "ps"]], on="patient_id")
    panels = [
        ("Before matching (whole cohort)",
         {arm: ps_ok.loc[ps_ok["treated"] == v, "ps"].to_numpy(float) for arm, v in arms}, {}),
        ("After matching",
         {arm: mps.loc[mps["treated"] == v, "ps"].to_numpy(float) for arm, v in arms},
         {arm: mps.loc[mps["treated"] == v, "match_weight"].to_numpy(float) for arm, v in arms}),
    ]
    overlap = plots.ps_overlap_svg(panels)

    bal = balance.copy()
    bal["label"] = bal["covariate"].astype(str).map(label)
    bal = bal.assign(_order=bal["smd_before"].abs()).sort_values("_order", ascending=False, kind="stable")
    love = plots.love_svg(bal["label"].tolist(), bal["smd_before"].tolist(), bal["smd_after"].tolist(),
                          bal["smd_iptw"].tolist() if "smd_iptw" in bal.columns else None,
                          float(config["balance"]["smd_threshold"]))
    balance_csv = balance.copy()
    if disc.enabled:  # arm means of 0/1 columns are exact proportions, i.e. exact counts
        balance_csv = balance_csv.drop(columns=[c for c in balance_csv.columns if c.startswith("mean_")])
    balance_csv.insert(1, "label", balance_csv["covariate"].astype(str).map(label))
    for col in balance_csv.columns[2:]:
        balance_csv[col] = balance_csv[col].astype(float).round(6)

    km_svg, at_risk, km_csv = km_context(km, config, disc)
    est_table, forest, est_csv = estimates_context(estimates, config, disc)
    ph_table = ph_context(ph, config)
    recovery_table = recovery_context(recovery, disc)
    reproduction = reproduction_context(cohort, balance, primary, gate, disc)

    gate_view = {
        **gate,
        "share_text": _share_text(gate, disc),
        "max_smd_text": fmt3(gate["max_abs_smd_after"]),
        "failing_labels": [short_label(c) for c in gate["failing_covariates"]],
        "n_treated_matched": _count(disc, gate["n_treated_matched"]),
        "n_treated_unmatched": _count(disc, gate["n_treated_unmatched"]),
        "caliper_logit_text": fmt3(gate["caliper_logit"]),
    }

    figures = [consort, overlap, love] + ([km_svg] if km_svg else []) + [forest]
    context = {
        "title": "High-dose anakinra vs standard of care in COVID-19 patients on non-invasive ventilation",
        "disclosure": disc,
        "disclosure_text": disc.description(),
        "answer": answer_context(primary, matched, gate, config, disc),
        "gate": gate_view,
        "methods": methods_context(config),
        "config_yaml": yaml.safe_dump(config, sort_keys=False, allow_unicode=True, width=100),
        "attrition": attrition_table,
        "ingest": ingest_table,
        "quarantine": quarantine_table,
        "duplicates_total": count_cell(disc, summary.get("duplicates_dropped_total", 0)),
        "quarantined_total": count_cell(disc, sum(int(v) for v in summary.get("quarantined_total", {}).values())),
        "table1": t1,
        "estimates": est_table,
        "ph": ph_table,
        "at_risk": at_risk,
        "recovery": recovery_table,
        "reproduction": reproduction,
        "published": PUBLISHED,
        "figures": {f.name: f for f in figures},
        "has_iptw": "smd_iptw" in balance.columns and balance["smd_iptw"].notna().any(),
        "provenance": provenance_context(inputs, config_files, raw_files, recovery, benchmark_dir),
    }
    tables = {t.name: t.csv for t in (attrition_table, ingest_table, quarantine_table, t1, ph_table, reproduction)}
    tables["estimates"] = est_csv
    tables["balance"] = balance_csv
    if at_risk is not None:
        tables["at_risk"] = at_risk.csv
        tables["km_curves"] = km_csv
    if recovery_table is not None:
        tables["recovery"] = recovery_table.csv
    prov = context["provenance"]
    tables["provenance_files"] = pd.DataFrame([h.__dict__ for h in prov["hashes"]])
    tables["provenance_packages"] = pd.DataFrame(prov["packages"], columns=["package", "version"])
    tables["benchmarks"] = pd.DataFrame([b.__dict__ for b in prov["benchmarks_all"]],
                                        columns=["rule", "seconds", "hms", "max_rss_mb", "cpu_time"])
    return context, tables, figures


def render_html(context: dict, template_dir: str | Path = TEMPLATE_DIR) -> str:
    return environment(template_dir).get_template(TEMPLATE).render(**context)


def render_report_files(inputs: dict[str, str], config: dict, config_files: list[str], raw_files: list[str],
                        benchmark_dir: str, recovery: str | None, html_out: str, tables_dir: str,
                        figures_dir: str) -> None:
    """File-level report stage (called by the Snakemake adapter).

    Parameters
    ----------
    inputs : paths by key: attrition, ingest_summary, cohort, matched, ps, balance, diagnostics,
        estimates, km, ph_test (layouts in docs/data-model.md).
    config : the validated config.
    config_files, raw_files : hashed in the provenance section.
    benchmark_dir : folder of Snakemake benchmark TSVs (per-rule run times).
    recovery : optional recovery validation CSV (shown when the file exists).
    html_out, tables_dir, figures_dir : outputs (written atomically).
    """
    context, tables, figures = build_context(inputs, config, config_files, raw_files, benchmark_dir, recovery)
    html = render_html(context)
    for name, frame in tables.items():
        io.write_text(csv_text(frame), Path(tables_dir) / f"{name}.csv")
    for fig in figures:
        io.write_text(fig.standalone, Path(figures_dir) / f"{fig.name}.svg")
    io.write_text(html, html_out)
