rule estimate_survival:
    """One survival analysis (protocol 4.5-4.6): its estimate row, KM steps and PH test."""
    input:
        unpack(analysis_inputs),
        code=lib(
            "propensity",
            "km",
            "logrank",
            "cox",
            "phtest",
            "ccw",
            "evalue",
            "analyses",
            "survival_stage",
        ),
    output:
        estimate="results/survival/analyses/{analysis}/estimate.parquet",
        km="results/survival/analyses/{analysis}/km.parquet",
        ph="results/survival/analyses/{analysis}/ph_test.parquet",
    log:
        "logs/estimate_survival/{analysis}.log",
    benchmark:
        "results/benchmarks/estimate_survival/{analysis}.tsv"
    wildcard_constraints:
        analysis="|".join(ANALYSES),
    conda:
        CONDA_ENV
    # the clone-censor-weight bootstrap runs its replicates in this many processes (2: fits a
    # 2-CPU SLURM node; more with --set-threads estimate_survival=N, for every analysis)
    threads: lambda w: 2 if w.analysis == "clone_censor_weight" else 1
    resources:
        # CCW: the main process and each bootstrap worker hold the split clones
        mem_mb=mem_mb(
            1000,
            lambda w, threads: (
                400 + 150 * threads if w.analysis == "clone_censor_weight" else 60
            ),
        ),
        runtime=30,
    params:
        analysis=lambda w: analysis_params(w.analysis),
    script:
        "../../scripts/estimate_survival.py"


rule combine_survival:
    """All analyses in one estimates table, one KM table and one PH-test table."""
    input:
        estimates=expand(
            "results/survival/analyses/{analysis}/estimate.parquet", analysis=ANALYSES
        ),
        km=expand("results/survival/analyses/{analysis}/km.parquet", analysis=ANALYSES),
        ph=expand(
            "results/survival/analyses/{analysis}/ph_test.parquet", analysis=ANALYSES
        ),
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
    conda:
        CONDA_ENV
    script:
        "../../scripts/combine_survival.py"
