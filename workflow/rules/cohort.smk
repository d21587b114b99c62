rule build_cohort:
    """Cohort, extended cohort (late HD-ANK starters) and attrition (protocol 3)."""
    input:
        **{table: f"results/typed/{table}.parquet" for table in TABLES},
        codelists=codelist_files(),
        code=lib("covariates", "codelists", "cohort"),
    output:
        cohort="results/cohort/cohort.parquet",
        extended="results/cohort/extended.parquet",
        attrition="results/cohort/attrition.parquet",
        status="results/cohort/admission_status.parquet",
    log:
        "logs/build_cohort.log",
    benchmark:
        "results/benchmarks/build_cohort.tsv"
    conda:
        CONDA_ENV
    resources:
        mem_mb=mem_mb(500, 17),
        runtime=30,
    params:
        study=config["study"],
        tables=list(TABLES),
    script:
        "../../scripts/build_cohort.py"
