from pathlib import Path

from hdank.adapter import run
from hdank.cohort import build_cohort_files

run(snakemake, build_cohort_files,
    typed={t: snakemake.input[t] for t in snakemake.params.tables},
    codelists_dir=str(Path(snakemake.input.codelists[0]).parent), study=snakemake.params.study,
    cohort_out=snakemake.output.cohort, extended_out=snakemake.output.extended,
    attrition_out=snakemake.output.attrition, status_out=snakemake.output.status)
