from hdank.adapter import run
from hdank.match_stage import match_files

run(snakemake, match_files,
    cohort=snakemake.input.cohort, propensity=snakemake.params.propensity,
    matching=snakemake.params.matching, weights=snakemake.params.weights, balance=snakemake.params.balance,
    ps_out=snakemake.output.ps, matched_out=snakemake.output.matched,
    balance_out=snakemake.output.balance, diagnostics_out=snakemake.output.diagnostics,
    sensitivity=snakemake.params.sensitivity)
