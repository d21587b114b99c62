"""The report renders from small made-up inputs into one safe, self-contained, deterministic file.

Inputs are fabricated here (no other stage runs): distinctive identifiers and T0 times that
must never reach the HTML, small counts that disclosure control must hide, and hostile strings
(``<script>``, spreadsheet formulas) in places where extracts and config can carry text.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import html5lib
import numpy as np
import pandas as pd
import pytest
import yaml

from hdank import io, settings
from hdank.cohort import RULES
from hdank.covariates import COVARIATES
from hdank.disclosure import marked_counts, unsuppressed_counts
from hdank.report import csv_cell, render_report_files

ROOT = Path(__file__).resolve().parents[1]
PATIENT_ID0 = 987654321
ADMISSION_ID0 = 123456789000
T0_BASE = pd.Timestamp("2021-03-17 06:42:13")
HOSTILE = "<script>alert('x')</script>"
FORMULA = "=HYPERLINK(\"http://evil.example\",\"x\")"
ANALYSES = ["primary_matched", "unadjusted", "cohort_multivariable", "iptw", "overlap", "landmark",
            "censor_discharge", "complete_case", "clone_censor_weight"]


def make_config(*, disclosure: bool = True, hostile: bool = False) -> dict:
    raw = yaml.safe_load((ROOT / "config/config.yaml").read_text())
    raw["report"]["disclosure_control"] = disclosure
    if hostile:
        raw["synthetic"]["enabled"] = False
        raw["extracts"]["dir"] = f"/data/{HOSTILE}"
    schema = settings.load_schema(ROOT / "workflow/schemas/config.schema.yaml")
    return settings.validate(raw, schema)


def _km_steps(time: np.ndarray, event: np.ndarray) -> pd.DataFrame:
    """Plain Kaplan-Meier step table with log-log CI (enough for fabricated inputs)."""
    rows, surv, green = [], 1.0, 0.0
    n = len(time)
    for t in np.unique(time):
        at = time == t
        d, c = int((event[at] == 1).sum()), int((event[at] == 0).sum())
        if d:
            surv *= 1 - d / n
            green += d / (n * (n - d)) if n > d else 0.0
        if 0 < surv < 1:
            se = np.sqrt(green) / abs(np.log(surv))
            lo, hi = (np.exp(-np.exp(np.log(-np.log(surv)) + z * se)) for z in (1.96, -1.96))
        else:
            lo = hi = np.nan
        rows.append((float(t), n, d, c, surv, lo, hi))
        n -= d + c
    return pd.DataFrame(rows, columns=["time", "n_risk", "n_event", "n_censor", "surv", "lower", "upper"])


def fabricate(root: Path, *, gate_passed: bool = True, disclosure: bool = True, hostile: bool = True,
              seed: int = 7) -> dict:
    """Write every input of the report under ``root``; return render_report_files kwargs."""
    rng = np.random.default_rng(seed)
    d = root / "in"
    n_t, n_c = 34, 46
    n = n_t + n_c
    treated = np.array([1] * n_t + [0] * n_c, dtype="int8")
    cohort = pd.DataFrame({
        "patient_id": PATIENT_ID0 + 7 * np.arange(n, dtype=np.int64),
        "admission_id": ADMISSION_ID0 + 11 * np.arange(n, dtype=np.int64),
        "t0": (T0_BASE + pd.to_timedelta(np.arange(n) * 3 + 1, unit="D")).astype("datetime64[s]"),
        "treated": treated,
    })
    event = (rng.random(n) < 0.3).astype("int8")
    time = np.where(event == 1, np.round(rng.uniform(0.3, 27.5, n), 3), 28.0)
    early = (event == 0) & (rng.random(n) < 0.15)
    time = np.where(early, np.round(rng.uniform(2, 20, n), 3), time)
    cohort["time"], cohort["event"] = time, event
    cohort["anakinra_start_day"] = np.where(treated == 1, rng.uniform(0, 2, n), np.nan)
    cohort["discharge_day"] = np.where(event == 0, time, np.nan)
    cohort["discharge_status"] = pd.array(np.where(event == 1, "died", "home"), dtype="string")
    for cov in COVARIATES:
        kind = cov.split("_")[1]
        if kind == "num":
            values = rng.normal(60 if cov == "cov_num_age" else 20, 5, n).round(2)
            if cov == "cov_num_bmi":
                values[[1, 5, 40]] = np.nan           # 3 missing: a small count
            if cov == "cov_num_ferritin":
                values[:30] = np.nan
            cohort[cov] = values
        elif kind == "bin":
            values = (rng.random(n) < 0.4).astype(int)
            if cov == "cov_bin_cancer":
                values = np.zeros(n, dtype=int)
                values[[0, 2, 4]] = 1                 # 3 treated with cancer
                values[[n_t + 1]] = 1                 # 1 control with cancer
            cohort[cov] = pd.array(values, dtype="Int8")
        elif cov == "cov_cat_sex":
            sex = np.where(rng.random(n) < 0.45, "F", "M").astype(object)
            sex[3] = "U"                              # one patient of unknown sex
            cohort[cov] = pd.array(sex, dtype="string")
        else:
            cohort[cov] = pd.array(np.where(rng.random(n) < 0.5, "2020Q4", "2021Q1"), dtype="string")

    pairs = 30
    matched = pd.concat([cohort.iloc[[i, n_t + i]].assign(pair_id=i + 1) for i in range(pairs)], ignore_index=True)
    matched["match_weight"] = 1.0
    ps = cohort[["patient_id", "treated"]].copy()
    ps["ps"] = np.clip(np.where(treated == 1, rng.beta(4, 3, n), rng.beta(3, 4, n)), 0.02, 0.98)
    ps["logit_ps"] = np.log(ps["ps"] / (1 - ps["ps"]))
    ps["iptw"] = np.where(treated == 1, 1 / ps["ps"], 1 / (1 - ps["ps"]))
    ps["overlap_weight"] = np.where(treated == 1, 1 - ps["ps"], ps["ps"])

    names = []
    for cov in COVARIATES[:-1]:
        names += [f"cov_cat_sex[{lv}]" for lv in ("F", "M", "U")] if cov == "cov_cat_sex" else [cov]
    names += ["cov_num_bmi_missing", "cov_num_ferritin_missing"]
    k = len(names)
    balance = pd.DataFrame({"covariate": names})
    for col in ("mean_treated_before", "mean_control_before", "mean_treated_after", "mean_control_after"):
        balance[col] = rng.uniform(0, 1, k)
    balance["smd_before"] = rng.uniform(-0.45, 0.45, k)
    balance["smd_after"] = rng.uniform(-0.08, 0.08, k)
    if not gate_passed:
        balance.loc[3, "smd_after"] = 0.23
    balance["smd_iptw"] = rng.uniform(-0.06, 0.06, k)
    for col in ("var_ratio_before", "var_ratio_after", "var_ratio_iptw"):
        balance[col] = rng.uniform(0.8, 1.2, k)
    failing = [] if gate_passed else [names[3]]
    diagnostics = {
        "n_cohort": n, "n_analysed": n, "n_excluded_missing": 0, "n_treated": n_t, "n_control": n_c,
        "n_treated_matched": pairs, "n_treated_unmatched": n_t - pairs, "n_controls_used": pairs,
        "share_treated_matched": pairs / n_t, "caliper_sd": 0.2, "caliper_logit": 0.1234, "sd_logit": 0.617,
        "warnings": [],
        "balance_gate": {"passed": gate_passed, "failing_covariates": failing,
                         "max_abs_smd_after": float(balance["smd_after"].abs().max()),
                         "share_treated_matched": pairs / n_t, "share_ok": True, "smd_threshold": 0.1,
                         "min_share_treated_matched": 0.8},
    }

    est_rows = []
    for i, a in enumerate(ANALYSES):
        hr = 1.0 + 0.05 * (i - 3) if a != "unadjusted" else 1.62
        est_rows.append({
            "analysis": a, "n": 2 * pairs if a in ("primary_matched", "censor_discharge") else n,
            "events_treated": 6 + i, "events_control": 9 + i, "hr": hr, "hr_low": hr * 0.62, "hr_high": hr * 1.58,
            "p": 0.0004 if a == "unadjusted" else 0.41 + 0.01 * i,
            "risk_treated": 0.29, "risk_control": 0.305, "risk_difference": -0.015, "rd_low": -0.21, "rd_high": 0.18,
            "method": f"Cox ({a.replace('_', ' ')})",
            "logrank_p": 0.52 if a == "primary_matched" else np.nan,
            "evalue": 1.21 if a == "primary_matched" else np.nan,
            "evalue_ci": 1.0 if a == "primary_matched" else np.nan,
        })
    estimates = pd.DataFrame(est_rows)

    km_parts = []  # the layout of hdank.analyses: step rows, then at-risk rows; arms 0/1
    for a in ("primary_matched", "unadjusted"):
        frame = matched if a == "primary_matched" else cohort
        for arm in (0, 1):
            sub = frame[frame["treated"] == arm]
            steps = _km_steps(sub["time"].to_numpy(), sub["event"].to_numpy())
            start = pd.DataFrame({"time": [0.0], "n_risk": [len(sub)], "n_event": [0], "n_censor": [0],
                                  "surv": [1.0], "lower": [np.nan], "upper": [np.nan]})
            km_parts.append(pd.concat([start, steps]).assign(analysis=a, kind="step", arm=arm))
            days = [0.0, 7.0, 14.0, 21.0, 28.0]
            risk = pd.DataFrame({"time": days, "n_risk": [float((sub["time"] >= d).sum()) for d in days],
                                 "n_event": np.nan, "n_censor": np.nan, "surv": np.nan, "lower": np.nan,
                                 "upper": np.nan})
            km_parts.append(risk.assign(analysis=a, kind="at_risk", arm=arm))
    km = pd.concat(km_parts, ignore_index=True)[["analysis", "kind", "arm", "time", "n_risk", "n_event",
                                                 "n_censor", "surv", "lower", "upper"]]
    ph = pd.DataFrame({"analysis": ["primary_matched", "primary_matched", "cohort_multivariable"],
                       "term": ["treated", "GLOBAL", "GLOBAL"], "chisq": [0.31, 0.31, 14.2], "df": [1.0, 1.0, 22.0],
                       "p": [0.58, 0.58, 0.0009]})

    attrition_rows = [("admissions", "admissions in the typed extract", 0, 400)]
    remaining = 400
    excluded = {"study_period": 12, "adult": 3, "covid_confirmed": 101, "niv_after_steroid": 150,
                "steroid_dose": 9, "first_stay": 2, "invasive_before_t0": 23, "immunomodulator_before_t0": 5,
                "anakinra_not_high_dose": 8, "anakinra_late": 7, "no_followup": 0}
    for rule, description in RULES:
        remaining -= excluded[rule]
        attrition_rows.append((rule, description, excluded[rule], remaining))
    attrition = pd.DataFrame(attrition_rows, columns=["rule", "description", "excluded", "remaining"])
    assert remaining == n

    extra = [FORMULA, HOSTILE] if hostile else []
    summary = {"tables": {
        "patients": {"file": "extracts/patients.csv.gz", "rows_read": 402, "duplicates_dropped": 2,
                     "quarantined": {"implausible_value": 1}, "rows_typed": 399, "extra_columns_ignored": extra},
        "medications": {"file": "extracts/medications.csv.gz", "rows_read": 5210, "duplicates_dropped": 51,
                        "quarantined": {"negative_dose": 4, "orphan_key": 12,
                                        **({f"unknown drug {HOSTILE}": 3} if hostile else {})},
                        "rows_typed": 5140, "extra_columns_ignored": [], "rows_unmapped_code": 6},
        "labs": {"file": "extracts/labs.csv.gz", "rows_read": 20300, "duplicates_dropped": 203,
                 "quarantined": {"unknown_unit": 41, "unparsable_value": 38}, "rows_typed": 20018,
                 "extra_columns_ignored": [], "rows_unmapped_code": 0, "unit_converted": 1990},
    }}
    summary["quarantined_total"] = {}
    for t in summary["tables"].values():
        for reason, v in t["quarantined"].items():
            summary["quarantined_total"][reason] = summary["quarantined_total"].get(reason, 0) + v
    summary["duplicates_dropped_total"] = sum(t["duplicates_dropped"] for t in summary["tables"].values())

    paths = {k: str(d / f"{k}.parquet") for k in ("attrition", "cohort", "matched", "ps", "balance", "estimates",
                                                  "km", "ph_test")}
    for key, frame in (("attrition", attrition), ("cohort", cohort), ("matched", matched), ("ps", ps),
                       ("balance", balance), ("estimates", estimates), ("km", km), ("ph_test", ph)):
        io.write_parquet(frame, paths[key])
    paths["ingest_summary"] = str(d / "ingest_summary.json")
    paths["diagnostics"] = str(d / "diagnostics.json")
    io.write_json(summary, paths["ingest_summary"])
    io.write_json(diagnostics, paths["diagnostics"])

    config = make_config(disclosure=disclosure, hostile=hostile)
    config_file = d / "config.yaml"
    config_file.write_text(yaml.safe_dump(config))
    raw = []
    for table in ("patients", "admissions"):
        p = d / "extracts" / f"{table}.csv"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(f"{table}_id\n{PATIENT_ID0}\n")
        raw.append(str(p))
    bench = d / "benchmarks"
    (bench / "estimate_survival").mkdir(parents=True, exist_ok=True)
    header = "s\th:m:s\tmax_rss\tmax_vms\tmax_uss\tmax_pss\tio_in\tio_out\tmean_load\tcpu_time\n"
    (bench / "build_cohort.tsv").write_text(header + "12.5031\t0:00:12\t812.4\t1500.1\t800\t805\t1.2\t3.4\t95.1\t11.9\n")
    (bench / "estimate_survival" / "primary_matched.tsv").write_text(
        header + "3.2\t0:00:03\t-\t-\t-\t-\t-\t-\t-\t-\n")
    (bench / "render_report.tsv").write_text(header + "99.9\t0:01:39\t1\t1\t1\t1\t1\t1\t1\t1\n")
    recovery = d / "recovery_latest.csv"
    recovery_frame = pd.DataFrame({
        "check": ["cohort size", "true HR inside CI", FORMULA, "+cmd", "@SUM(A1)", "\tTAB"],
        "expected": [80, 1.0, 0.5, 0.5, 0.5, 0.5],
        "observed": [80, -0.12, 0.5, 0.5, 0.5, 0.5],
        "n": [80, 3, 40, 40, 40, 40],
        "passed": [True, True, False, True, True, True],
    })
    recovery_frame.to_csv(recovery, index=False)
    out = root / "out"
    return dict(inputs=paths, config=config, config_files=[str(config_file)], raw_files=raw,
                benchmark_dir=str(bench), recovery=str(recovery), html_out=str(out / "report.html"),
                tables_dir=str(out / "tables"), figures_dir=str(out / "figures"))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    kwargs = fabricate(root)
    render_report_files(**kwargs)
    return kwargs, Path(kwargs["html_out"]).read_text(encoding="utf-8")


def _all_outputs(kwargs) -> dict[str, str]:
    files = {kwargs["html_out"]: Path(kwargs["html_out"]).read_text(encoding="utf-8")}
    for folder in (kwargs["tables_dir"], kwargs["figures_dir"]):
        for p in sorted(Path(folder).iterdir()):
            files[str(p)] = p.read_text(encoding="utf-8")
    return files


def test_html_is_valid_html5(rendered):
    _, html = rendered
    parser = html5lib.HTMLParser(strict=True, namespaceHTMLElements=False)
    doc = parser.parse(html)
    assert doc.find(".//title") is not None


def test_no_external_resource_and_no_script(rendered):
    _, html = rendered
    doc = html5lib.parse(html, namespaceHTMLElements=False)
    for el in doc.iter():
        tag = el.tag if isinstance(el.tag, str) else ""
        assert tag.split("}")[-1] not in {"script", "link", "iframe", "object", "embed", "img", "base"}, tag
        for attr, value in el.attrib.items():
            name = attr.split("}")[-1]
            if name in {"src", "href", "srcset", "action", "poster", "data"}:
                assert value.startswith("#"), f"{tag} {attr}={value}"
            assert not name.startswith("on"), f"event handler {attr} on {tag}"
    assert re.search(r"<script", html, re.I) is None
    assert re.search(r"url\((?!#)", html) is None
    assert "@import" not in html and "@font-face" not in html
    assert re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", html, re.I) is None


def test_sections_in_order(rendered):
    _, html = rendered
    ids = ["answer", "methods", "flow", "data-quality", "table1", "overlap", "balance", "km", "estimates", "ph",
           "recovery", "reproduction", "provenance"]
    positions = [html.index(f'<section id="{i}"') for i in ids]
    assert positions == sorted(positions)
    for fig in ("consort", "ps_overlap", "love", "km", "forest"):
        assert f'aria-labelledby="fig-{fig}-title"' in html


def test_no_patient_level_values(rendered):
    kwargs, _ = rendered
    cohort = pd.read_parquet(kwargs["inputs"]["cohort"])
    outputs = _all_outputs(kwargs)
    for path, text in outputs.items():
        for pid in cohort["patient_id"]:
            assert str(pid) not in text, (path, pid)
        for aid in cohort["admission_id"]:
            assert str(aid) not in text, (path, aid)
        for t0 in cohort["t0"]:
            assert t0.strftime("%Y-%m-%d %H:%M") not in text and t0.strftime("%Y-%m-%dT%H:%M") not in text, path
        assert "patient_id" not in text and "admission_id" not in text, path


def test_disclosure_control_leaves_no_small_count(rendered):
    kwargs, html = rendered
    counts = marked_counts(html)
    assert len(counts) > 100
    assert {k for k, _ in counts} == {"n", "mid6"}
    assert unsuppressed_counts(html) == []
    assert "&lt;=7" in html
    # the 3 treated patients with cancer and the 1 of unknown sex: suppressed, no percentage
    cancer = re.search(r"Active cancer, n \(%\)</th>(.*?)</tr>", html, re.S).group(1)
    assert re.findall(r'data-count="n">([^<]*)<', cancer)[:2] == ["&lt;=7", "&lt;=7"]
    unknown = re.search(r"<th scope=\"row\">Unknown</th>(.*?)</tr>", html, re.S).group(1)
    assert re.findall(r'data-count="n">&lt;=7</span>([^<]*)<', unknown) == ["", ""]
    # 46 SOC -> 45, 34 HD-ANK -> 35; percentages from rounded counts (cohort size 80 -> 80)
    header = re.search(r"Patients, n</th>(.*?)</tr>", html, re.S).group(1)
    assert re.findall(r'data-count="n">([^<]*)<', header)[:2] == ["45", "35"]
    assert "Disclosure control is on" in html
    # the standalone SVGs and the tables carry the same released counts
    assert unsuppressed_counts(Path(kwargs["figures_dir"], "km.svg").read_text()) == []
    table1 = pd.read_csv(Path(kwargs["tables_dir"], "table1.csv"), dtype=str)
    assert table1.iloc[0, 1:3].tolist() == ["45", "35"]
    # no exact proportions that would give counts away: arm means of the balance table are
    # dropped, and the share matched is 30/35 from released counts, not the exact 30/34
    balance = pd.read_csv(Path(kwargs["tables_dir"], "balance.csv"))
    assert not [c for c in balance.columns if c.startswith("mean_")]
    assert "85.7% of HD-ANK matched" in html and "88.2%" not in html


def test_disclosure_off_shows_exact_counts(tmp_path):
    kwargs = fabricate(tmp_path, disclosure=False, hostile=False)
    render_report_files(**kwargs)
    html = Path(kwargs["html_out"]).read_text()
    header = re.search(r"Patients, n</th>(.*?)</tr>", html, re.S).group(1)
    assert re.findall(r'data-count="exact">([^<]*)<', header)[:2] == ["46", "34"]
    assert "Disclosure control is off" in html
    assert unsuppressed_counts(html)  # exact counts are reported as not controlled


def test_hostile_strings_are_escaped(rendered):
    kwargs, html = rendered
    assert "<script" not in html.lower()
    assert "&lt;script&gt;alert(" in html          # extra column name, quarantine reason, recovery cell
    assert "/data/&lt;script&gt;" in html            # config string in the methods text and config dump
    # the same config string reaches the YAML dump escaped, not as markup
    doc = html5lib.parse(html, namespaceHTMLElements=False)
    texts = "".join(doc.itertext())
    assert HOSTILE in texts


def test_csv_formula_injection_escaped(rendered):
    kwargs, _ = rendered
    recovery = Path(kwargs["tables_dir"], "recovery.csv").read_text()
    ingest = Path(kwargs["tables_dir"], "ingest.csv").read_text()
    for text in (recovery, ingest):
        for line in text.splitlines():
            for cell in line.split(","):
                cell = cell.strip('"')
                assert not cell or cell[0] not in "=+@\t\r" or cell.startswith("'"), cell
    assert "'=HYPERLINK" in recovery and "'=HYPERLINK" in ingest
    assert "'+cmd" in recovery and "'@SUM(A1)" in recovery and "'\tTAB" in recovery
    frame = pd.read_csv(Path(kwargs["tables_dir"], "estimates.csv"))
    assert frame["risk_difference"].iloc[0] == -0.015      # plain negative numbers stay numbers


def test_km_arms_coded_either_way_give_the_same_figure(rendered):
    from hdank.disclosure import Disclosure
    from hdank.report import km_context
    kwargs, _ = rendered
    km = pd.read_parquet(kwargs["inputs"]["km"])
    config = kwargs["config"]
    by_number = km_context(km, config, Disclosure())
    named = km[km["kind"] == "step"].drop(columns="kind").assign(arm=km["arm"].map({1: "HD-ANK", 0: "SOC"}))
    by_name = km_context(named, config, Disclosure())      # no at-risk rows: derived from the steps
    assert by_number[0].inline == by_name[0].inline
    assert [list(map(str, r)) for r in by_number[1].rows] == [list(map(str, r)) for r in by_name[1].rows]
    assert [str(c) for c in by_number[1].rows[0]] == ["HD-ANK", "27", "27", "21", "21", "15"]


@pytest.mark.parametrize("value, expected", [
    ("=1+1", "'=1+1"), ("+1 (2)", "'+1 (2)"), ("-0.12", "-0.12"), ("-5.2 (x)", "'-5.2 (x)"), ("@x", "'@x"),
    ("\tx", "'\tx"), ("\rx", "'\rx"), ("1e-3", "1e-3"), ("-1e-3", "-1e-3"), ("abc", "abc"), (-0.12, "-0.12"),
    (None, ""), (float("nan"), ""), ("", ""),
])
def test_csv_cell(value, expected):
    assert csv_cell(value) == expected


def test_failed_gate_shows_not_interpretable_banner(tmp_path):
    kwargs = fabricate(tmp_path, gate_passed=False, hostile=False)
    render_report_files(**kwargs)
    html = Path(kwargs["html_out"]).read_text()
    answer = html[html.index('<section id="answer"'):html.index('<section id="methods"')]
    assert 'role="alert"' in answer and "Not interpretable." in answer
    assert "Failed" in answer


def test_byte_identical_with_source_date_epoch(tmp_path, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    kwargs = fabricate(tmp_path, hostile=False)
    render_report_files(**kwargs)
    first = _all_outputs(kwargs)
    render_report_files(**{**kwargs, "html_out": str(tmp_path / "again" / "report.html"),
                           "tables_dir": str(tmp_path / "again" / "tables"),
                           "figures_dir": str(tmp_path / "again" / "figures")})
    second = _all_outputs({**kwargs, "html_out": str(tmp_path / "again" / "report.html"),
                           "tables_dir": str(tmp_path / "again" / "tables"),
                           "figures_dir": str(tmp_path / "again" / "figures")})
    assert list(map(lambda p: Path(p).name, first)) == list(map(lambda p: Path(p).name, second))
    for (p1, t1), t2 in zip(first.items(), second.values()):
        assert t1 == t2, p1
    assert "2023-11-14 22:13 UTC" in first[kwargs["html_out"]]


def test_provenance_lists_hashes_versions_and_run_times(rendered):
    kwargs, html = rendered
    from hdank.provenance import sha256
    for path in kwargs["config_files"] + kwargs["raw_files"] + list(kwargs["inputs"].values()):
        assert sha256(path) in html
    assert "build_cohort" in html and "estimate_survival/primary_matched" in html
    assert "render_report" not in html          # the report's own (previous) run time is left out
    for package in ("pandas", "numpy", "matplotlib", "jinja2"):
        assert f"<td>{package}</td>" in html
    files = pd.read_csv(Path(kwargs["tables_dir"], "provenance_files.csv"))
    assert len(files) == len(kwargs["config_files"]) + len(kwargs["raw_files"]) + len(kwargs["inputs"]) + 1


def test_tables_and_figures_written(rendered):
    kwargs, _ = rendered
    tables = {p.name for p in Path(kwargs["tables_dir"]).iterdir()}
    assert {"attrition.csv", "table1.csv", "estimates.csv", "ph_test.csv", "at_risk.csv", "balance.csv",
            "reproduction.csv", "recovery.csv", "ingest.csv", "quarantine.csv"} <= tables
    figures = {p.name for p in Path(kwargs["figures_dir"]).iterdir()}
    assert figures == {"consort.svg", "ps_overlap.svg", "love.svg", "km.svg", "forest.svg"}
    for name in figures:
        svg = Path(kwargs["figures_dir"], name).read_text()
        assert svg.startswith("<svg") and "<metadata>" not in svg
    estimates = pd.read_csv(Path(kwargs["tables_dir"], "estimates.csv"))
    assert estimates["analysis"].iloc[0] == "primary_matched"
    assert bool(estimates.loc[estimates["analysis"] == "unadjusted", "biased_by_design"].iloc[0])


def test_unadjusted_marked_biased_and_p_formatting(rendered):
    _, html = rendered
    estimates = html[html.index('<section id="estimates"'):html.index('<section id="ph"')]
    assert "Unadjusted, whole cohort — biased by design" in estimates
    assert "&lt;0.001" in estimates                  # p = 0.0004
    assert "1.62 (1.00 to 2.56)" in estimates         # three significant digits


def test_methods_text_follows_the_config(tmp_path):
    kwargs = fabricate(tmp_path, hostile=False)
    config = json.loads(json.dumps(kwargs["config"]))
    config["matching"]["caliper_sd"] = 0.137
    config["study"]["grace_hours"] = 36
    config["balance"]["smd_threshold"] = 0.085
    render_report_files(**{**kwargs, "config": config})
    html = Path(kwargs["html_out"]).read_text()
    methods = html[html.index('<section id="methods"'):html.index('<section id="flow"')]
    assert "caliper 0.137 SD" in methods
    assert "grace period of 36 h" in methods
    assert "|SMD| &lt; 0.085" in methods
    assert "0.2 SD" not in methods and "48 h" not in methods


def test_run_times_shown_unless_source_date_epoch_asks_for_a_reproducible_report(tmp_path, monkeypatch):
    monkeypatch.delenv("SOURCE_DATE_EPOCH", raising=False)
    kwargs = fabricate(tmp_path, hostile=False)
    render_report_files(**kwargs)
    html = Path(kwargs["html_out"]).read_text()
    block = html[html.index("<h3>Run times per rule</h3>"):]
    assert "<td class=\"num\">" in block[:block.index("</div>")]
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    render_report_files(**kwargs)
    html = Path(kwargs["html_out"]).read_text()
    assert "Left out because <code>SOURCE_DATE_EPOCH</code> is set" in html
    assert not pd.read_csv(Path(kwargs["tables_dir"]) / "benchmarks.csv").empty
