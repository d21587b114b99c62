import sys
from pathlib import Path

sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))

from hdank import settings
from hdank.io import data_mb
from hdank.errors import UserError
from hdank.contract import TABLES, CONTRACT, extract_path
from hdank.codelists import FILES as CODELIST_FILES

try:
    config = settings.validate(
        config,
        settings.load_schema(workflow.source_path("../schemas/config.schema.yaml")),
    )
except settings.ConfigError as error:
    raise WorkflowError(str(error)) from None

LIB = "scripts/hdank"
CONDA_ENV = (
    "../envs/hdank.yaml"  # same stack as requirements.lock (used with --sdm conda)
)
CODELISTS = config["codelists"]


def lib(*modules):
    """Library modules that a job imports, declared as inputs so that editing them reruns it."""
    return [
        f"{LIB}/{module}.py"
        for module in ("__init__", "io", "errors", "adapter") + modules
    ]


def mem_mb(base, per_mb):
    """Memory request (MB) of a job: ``base`` + ``per_mb`` x MB of data in its inputs
    (decompressed; hdank.io.data_mb).  ``per_mb`` may be a function of (wildcards, threads).
    Evaluated once the inputs exist.  Factors from benchmarks/run.py at 1,000,000 admissions
    (README "Scale"); override with --set-resources RULE:mem_mb=N."""

    def request(wildcards, input, threads):
        per = per_mb(wildcards, threads) if callable(per_mb) else per_mb
        return int(base + per * sum(data_mb(f) for f in input))

    return request


def codelist_files():
    return [f"{CODELISTS}/{name}.csv" for name in CODELIST_FILES]


def id_key_fingerprint():
    """Fingerprint of the pseudonymisation key (a new key reruns ingest); None when off."""
    if not config["privacy"]["pseudonymise_ids"]:
        return None
    from hdank.pseudonymise import fingerprint, key_from_env

    try:
        return fingerprint(key_from_env())
    except UserError as error:
        raise WorkflowError(str(error)) from None


def raw_extract(table):
    """Raw extract file of a table: the simulator's output or the site's export."""
    directory = (
        settings.SYNTHETIC_DIR
        if config["synthetic"]["enabled"]
        else config["extracts"]["dir"]
    )
    return extract_path(directory, table, config["extracts"]["format"])


def check_site_extracts():
    """A site's missing extract stops the run before any job, even when earlier results exist."""
    missing = [
        f"{raw_extract(t)}: file not found. The extract of table '{t}' is required"
        for t in TABLES
        if not Path(raw_extract(t)).exists()
    ]
    if missing and not config["synthetic"]["enabled"]:
        raise WorkflowError(
            "\n".join(missing)
            + f" (extracts.dir = {config['extracts']['dir']}, extracts.format = "
            f"{config['extracts']['format']}); no job was started."
        )


check_site_extracts()


def parent_typed(wildcards):
    """Typed parent table whose keys the table's foreign key must find."""
    parent = CONTRACT[wildcards.table].parent
    return [f"results/typed/{parent[0]}.parquet"] if parent else []


def final_outputs():
    return [
        "results/typed/ingest_summary.json",
        "results/cohort/cohort.parquet",
        "results/match/diagnostics.json",
        "results/survival/estimates.parquet",
        "results/report/report.html",
    ]


# matching ---------------------------------------------------------------------------
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


# survival ---------------------------------------------------------------------------
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


# report -----------------------------------------------------------------------------
REPORT_TABLES = {
    "attrition": "results/cohort/attrition.parquet",
    "ingest_summary": "results/typed/ingest_summary.json",
    "cohort": "results/cohort/cohort.parquet",
    "matched": "results/match/matched.parquet",
    "ps": "results/match/ps.parquet",
    "balance": "results/match/balance.parquet",
    "diagnostics": "results/match/diagnostics.json",
    "estimates": "results/survival/estimates.parquet",
    "km": "results/survival/km.parquet",
    "ph_test": "results/survival/ph_test.parquet",
}
RECOVERY = "validation/recovery_latest.csv"
