MATCH_CODE = lib("propensity", "matching", "balance", "match_stage")


def match_params(missing, sensitivity=False):
    """Config slice of matching; the complete-case variant only changes the missing-data rule."""
    return {
        "sensitivity": sensitivity,
        "propensity": {**config["propensity"], "missing": missing},
        "matching": config["matching"],
        "weights": config["weights"],
        "balance": config["balance"],
    }


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
    params:
        **match_params(config["propensity"]["missing"]),
    log:
        "logs/match_cohort.log",
    benchmark:
        "results/benchmarks/match_cohort.tsv"
    resources:
        mem_mb=2000,
        runtime=20,
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
    params:
        **match_params("complete_case", sensitivity=True),
    log:
        "logs/match_cohort_complete_case.log",
    benchmark:
        "results/benchmarks/match_cohort_complete_case.tsv"
    resources:
        mem_mb=2000,
        runtime=20,
    script:
        "../../scripts/match_cohort.py"
