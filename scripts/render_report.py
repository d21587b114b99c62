from hdank.adapter import run
from hdank.report import render_report_files

run(snakemake, render_report_files,
    inputs={k: snakemake.input[k] for k in snakemake.params.table_keys}, config=snakemake.params.config,
    config_files=snakemake.params.config_files, raw_files=list(snakemake.input.raw),
    benchmark_dir="results/benchmarks", recovery=(list(snakemake.input.recovery) or [None])[0],
    html_out=snakemake.output.html, tables_dir=snakemake.output.tables, figures_dir=snakemake.output.figures)
