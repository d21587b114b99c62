from pathlib import Path

from hdank.adapter import run
from hdank.ingest import ingest_file

run(snakemake, ingest_file,
    raw=snakemake.input.raw, table=snakemake.wildcards.table,
    codelists_dir=str(Path(snakemake.input.codelists[0]).parent), parent=(snakemake.input.parent or [None])[0],
    typed_out=snakemake.output.typed, quarantine_out=snakemake.output.quarantine,
    counts_out=snakemake.output.counts, pseudonymise=snakemake.params.pseudonymise)
