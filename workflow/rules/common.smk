import sys
from pathlib import Path


sys.path.insert(0, str(Path(workflow.basedir) / "scripts"))

from hdank import settings
from hdank.errors import UserError
from hdank.contract import TABLES, CONTRACT, extract_path
from hdank.codelists import FILES as CODELIST_FILES


try:
    config = settings.validate(
        config, settings.load_schema(workflow.source_path("../schemas/config.schema.yaml"))
    )
except settings.ConfigError as error:
    raise WorkflowError(str(error)) from None

LIB = "scripts/hdank"
CODELISTS = config["codelists"]


def lib(*modules):
    """Library modules a rule runs: declared as inputs so that editing them reruns it."""
    return [f"{LIB}/{module}.py" for module in ("__init__", "io", "errors", "adapter") + modules]


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
        settings.SYNTHETIC_DIR if config["synthetic"]["enabled"] else config["extracts"]["dir"]
    )
    return extract_path(directory, table, config["extracts"]["format"])


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
