# HD-ANK vs SOC target-trial pipeline. Rules live in workflow/rules/; see README.md.
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/simulate.smk"
include: "workflow/rules/ingest.smk"
include: "workflow/rules/check.smk"
include: "workflow/rules/cohort.smk"
include: "workflow/rules/match.smk"
include: "workflow/rules/survival.smk"
include: "workflow/rules/report.smk"


rule all:
    default_target: True
    input:
        final_outputs(),
