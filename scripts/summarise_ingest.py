from hdank.adapter import run
from hdank.ingest_summary import summarise

run(snakemake, summarise, count_files=list(snakemake.input.counts), out=snakemake.output[0])
