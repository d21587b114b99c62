from hdank.adapter import run
from hdank.combine import combine_survival

run(snakemake, combine_survival,
    estimates=list(snakemake.input.estimates), km=list(snakemake.input.km), ph=list(snakemake.input.ph),
    estimates_out=snakemake.output.estimates, km_out=snakemake.output.km, ph_out=snakemake.output.ph)
