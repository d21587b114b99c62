rule check_extracts:
    """Contract and data-quality check of the raw extracts, and nothing else (make check)."""
    input:
        **{table: raw_extract(table) for table in TABLES},
        codelists=codelist_files(),
        template="workflow/templates/contract_check.html.j2",
        code=lib(
            "contract",
            "codelists",
            "covariates",
            "ingest",
            "pseudonymise",
            "settings",
            "contract_check",
        ),
    output:
        html="results/check/contract_check.html",
        txt="results/check/contract_check.txt",
    log:
        "logs/check_extracts.log",
    benchmark:
        "results/benchmarks/check_extracts.tsv"
    conda:
        CONDA_ENV
    resources:
        mem_mb=6000,
        runtime=30,
    params:
        tables=list(TABLES),
        covariates=config["propensity"]["covariates"],
        period=[config["study"]["period_start"], config["study"]["period_end"]],
    script:
        "../../scripts/check_extracts.py"
