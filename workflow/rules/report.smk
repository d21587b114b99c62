rule render_report:
    """One self-contained HTML report, plus its tables (CSV) and figures (SVG)."""
    input:
        **REPORT_TABLES,
        raw=[raw_extract(table) for table in TABLES],
        recovery=[RECOVERY] if Path(RECOVERY).exists() else [],
        templates=sorted(str(p) for p in Path("workflow/templates").glob("report*")),
        code=lib(
            "covariates",
            "codelists",
            "cohort",
            "disclosure",
            "plots",
            "table_one",
            "provenance",
            "report",
        ),
    output:
        html="results/report/report.html",
        tables=directory("results/report/tables"),
        figures=directory("results/report/figures"),
    log:
        "logs/render_report.log",
    benchmark:
        "results/benchmarks/render_report.tsv"
    localrule: True
    conda:
        CONDA_ENV
    params:
        config=config,
        config_files=[str(f) for f in workflow.configfiles],
        table_keys=list(REPORT_TABLES),
    script:
        "../../scripts/render_report.py"
