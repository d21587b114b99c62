"""Snakemake adapter of rule simulate_extracts: synthetic extracts, answer key, defects."""
from pathlib import Path

from hdank.adapter import run
from hdank.simulate import simulate_from_config

run(snakemake, simulate_from_config,
    out_dir=str(Path(snakemake.output.patients).parent),
    answer_key_path=snakemake.output.answer_key, defects_path=snakemake.output.defects,
    synthetic=snakemake.params.synthetic, study=snakemake.params.study,
    codelists_dir=str(Path(snakemake.input.codelists[0]).parent), fmt=snakemake.params.fmt)
