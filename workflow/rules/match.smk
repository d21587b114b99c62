rule match_cohort:
    """Propensity score, weights, matched sample and balance (protocol 4.1-4.4)."""
    input:
        cohort="results/cohort/cohort.parquet",
        code=MATCH_CODE,
    output:
        ps="results/match/ps.parquet",
        matched="results/match/matched.parquet",
        balance="results/match/balance.parquet",
        diagnostics="results/match/diagnostics.json",
    log:
        "logs/match_cohort.log",
    benchmark:
        "results/benchmarks/match_cohort.tsv"
    conda:
        CONDA_ENV
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        **match_params(config["propensity"]["missing"]),
    script:
        "../../scripts/match_cohort.py"


rule match_cohort_complete_case:
    """The same matching on patients with every propensity covariate recorded (sensitivity)."""
    input:
        cohort="results/cohort/cohort.parquet",
        code=MATCH_CODE,
    output:
        ps="results/match/complete_case/ps.parquet",
        matched="results/match/complete_case/matched.parquet",
        balance="results/match/complete_case/balance.parquet",
        diagnostics="results/match/complete_case/diagnostics.json",
    log:
        "logs/match_cohort_complete_case.log",
    benchmark:
        "results/benchmarks/match_cohort_complete_case.tsv"
    conda:
        CONDA_ENV
    resources:
        mem_mb=2000,
        runtime=20,
    params:
        **match_params("complete_case", sensitivity=True),
    script:
        "../../scripts/match_cohort.py"
