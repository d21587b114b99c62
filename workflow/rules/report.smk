REPORT_TABLES = {
    "attrition": "results/cohort/attrition.parquet",
    "ingest_summary": "results/typed/ingest_summary.json",
    "cohort": "results/cohort/cohort.parquet",
    "matched": "results/match/matched.parquet",
    "ps": "results/match/ps.parquet",
    "balance": "results/match/balance.parquet",
    "diagnostics": "results/match/diagnostics.json",
    "estimates": "results/survival/estimates.parquet",
    "km": "results/survival/km.parquet",
    "ph_test": "results/survival/ph_test.parquet",
}
RECOVERY = "validation/recovery_latest.csv"


rule render_report:
    """One self-contained HTML report, plus its tables (CSV) and figures (SVG)."""
    input:
        **REPORT_TABLES,
        raw=[raw_extract(table) for table in TABLES],
        recovery=[RECOVERY] if Path(RECOVERY).exists() else [],
        templates=sorted(str(p) for p in Path("workflow/templates").glob("*")),
        code=lib("covariates", "codelists", "cohort", "disclosure", "plots", "table_one", "provenance", "report"),
    output:
        html="results/report/report.html",
        tables=directory("results/report/tables"),
        figures=directory("results/report/figures"),
    params:
        config=config,
        config_files=[str(f) for f in workflow.configfiles],
        table_keys=list(REPORT_TABLES),
    log:
        "logs/render_report.log",
    benchmark:
        "results/benchmarks/render_report.tsv"
    localrule: True
    script:
        "../../scripts/render_report.py"
