rule ingest_table:
    """Typed parquet of one raw table, its quarantined rows and counts (protocol 2)."""
    input:
        raw=lambda w: raw_extract(w.table),
        parent=parent_typed,
        codelists=codelist_files(),
        code=lib("contract", "codelists", "ingest", "pseudonymise"),
    output:
        typed="results/typed/{table}.parquet",
        quarantine="results/typed/quarantine/{table}.parquet",
        counts="results/typed/counts/{table}.json",
    log:
        "logs/ingest_table/{table}.log",
    benchmark:
        "results/benchmarks/ingest_table/{table}.tsv"
    wildcard_constraints:
        table="|".join(TABLES),
    conda:
        CONDA_ENV
    resources:
        mem_mb=mem_mb(500, 10),
        runtime=30,
    params:
        pseudonymise=config["privacy"]["pseudonymise_ids"],
        key_fingerprint=id_key_fingerprint(),
    script:
        "../../scripts/ingest_table.py"


rule summarise_ingest:
    """Counts per table and reason, in one file for the report."""
    input:
        counts=expand("results/typed/counts/{table}.json", table=TABLES),
        code=lib("ingest_summary"),
    output:
        "results/typed/ingest_summary.json",
    log:
        "logs/summarise_ingest.log",
    benchmark:
        "results/benchmarks/summarise_ingest.tsv"
    localrule: True
    conda:
        CONDA_ENV
    script:
        "../../scripts/summarise_ingest.py"
