"""Snakemake adapter of rule check_extracts: contract and data-quality check of the raw extracts."""
from pathlib import Path

from hdank.adapter import run
from hdank.contract_check import check_extract_files

run(snakemake, check_extract_files,
    raw={table: snakemake.input[table] for table in snakemake.params.tables},
    codelists_dir=str(Path(snakemake.input.codelists[0]).parent), html_out=snakemake.output.html,
    txt_out=snakemake.output.txt, covariates=snakemake.params.covariates, period=snakemake.params.period)
