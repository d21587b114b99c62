ANALYSES = list(config["survival"]["analyses"])

#: Tables each analysis reads, so that each job depends only on what it uses.
ANALYSIS_INPUTS = {
    "primary_matched": ["matched"],
    "censor_discharge": ["matched"],
    "unadjusted": ["cohort"],
    "cohort_multivariable": ["cohort"],
    "iptw": ["cohort", "ps"],
    "overlap": ["cohort", "ps"],
    "landmark": ["extended"],
    "clone_censor_weight": ["extended"],
    "complete_case": ["matched_complete_case"],
}
#: Analyses whose models adjust for the propensity covariates.
ADJUSTED = {"cohort_multivariable", "landmark", "clone_censor_weight"}
TABLE_FILES = {
    "cohort": "results/cohort/cohort.parquet",
    "extended": "results/cohort/extended.parquet",
    "matched": "results/match/matched.parquet",
    "ps": "results/match/ps.parquet",
    "matched_complete_case": "results/match/complete_case/matched.parquet",
}


def analysis_inputs(wildcards):
    return {name: TABLE_FILES[name] for name in ANALYSIS_INPUTS[wildcards.analysis]}


def analysis_params(analysis):
    """Only what the analysis uses: its own settings, the horizon, and where needed G and covariates."""
    survival = config["survival"]
    shared = {
        "horizon": survival["risk_horizon_days"],
        "at_risk_days": survival["at_risk_days"],
    }
    if analysis in ADJUSTED:
        shared["covariates"] = config["propensity"]["covariates"]
        shared["log_transform"] = config["propensity"]["log_transform"]
        shared["min_missing"] = config["propensity"]["min_missing_for_indicator"]
    if analysis in {"landmark", "clone_censor_weight"}:
        shared["grace_days"] = config["study"]["grace_hours"] / 24
    return {"settings": survival["analyses"][analysis] or {}, **shared}


rule estimate_survival:
    """One survival analysis (protocol 4.5-4.6): its estimate row, KM steps and PH test."""
    input:
        unpack(analysis_inputs),
        code=lib("propensity", "km", "logrank", "cox", "phtest", "ccw", "evalue", "analyses", "survival_stage"),
    output:
        estimate="results/survival/analyses/{analysis}/estimate.parquet",
        km="results/survival/analyses/{analysis}/km.parquet",
        ph="results/survival/analyses/{analysis}/ph_test.parquet",
    wildcard_constraints:
        analysis="|".join(ANALYSES),
    params:
        analysis=lambda w: analysis_params(w.analysis),
    log:
        "logs/estimate_survival/{analysis}.log",
    benchmark:
        "results/benchmarks/estimate_survival/{analysis}.tsv"
    resources:
        mem_mb=2000,
        runtime=30,
    script:
        "../../scripts/estimate_survival.py"


rule combine_survival:
    """All analyses in one estimates table, one KM table and one PH-test table."""
    input:
        estimates=expand("results/survival/analyses/{analysis}/estimate.parquet", analysis=ANALYSES),
        km=expand("results/survival/analyses/{analysis}/km.parquet", analysis=ANALYSES),
        ph=expand("results/survival/analyses/{analysis}/ph_test.parquet", analysis=ANALYSES),
        code=lib("combine"),
    output:
        estimates="results/survival/estimates.parquet",
        km="results/survival/km.parquet",
        ph="results/survival/ph_test.parquet",
    log:
        "logs/combine_survival.log",
    benchmark:
        "results/benchmarks/combine_survival.tsv"
    localrule: True
    script:
        "../../scripts/combine_survival.py"
