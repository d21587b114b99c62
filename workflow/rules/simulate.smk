if config["synthetic"]["enabled"]:

    rule simulate_extracts:
        """Write synthetic extracts, the answer key and the injected defects (protocol 5)."""
        input:
            code=lib("contract", "simulate"),
            codelists=codelist_files(),
        output:
            **{table: raw_extract(table) for table in TABLES},
            answer_key="results/synthetic/answer_key.parquet",
            defects="results/synthetic/defects.json",
        log:
            "logs/simulate_extracts.log",
        benchmark:
            "results/benchmarks/simulate_extracts.tsv"
        conda:
            CONDA_ENV
        resources:
            mem_mb=2000,
            runtime=30,
        params:
            synthetic=config["synthetic"],
            study=config["study"],
            fmt=config["extracts"]["format"],
        script:
            "../../scripts/simulate_extracts.py"
