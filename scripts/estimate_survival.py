from hdank.adapter import run
from hdank.survival_stage import analysis_files

tables = {name: snakemake.input[name] for name in ("cohort", "extended", "matched", "ps", "matched_complete_case")
          if name in snakemake.input.keys()}
run(snakemake, analysis_files, name=snakemake.wildcards.analysis, tables=tables, **snakemake.params.analysis,
    workers=snakemake.threads, estimate_out=snakemake.output.estimate, km_out=snakemake.output.km, ph_out=snakemake.output.ph)
