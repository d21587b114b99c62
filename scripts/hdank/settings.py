"""Validate the study configuration before any job runs.

JSON-Schema (``workflow/schemas/config.schema.yaml``) checks every key, type and range and
fills defaults; :func:`check_consistency` adds the checks that span several keys.  Errors
name the key as a dotted path.
"""

from __future__ import annotations

import copy
import difflib
from datetime import date
from pathlib import Path

import jsonschema
import yaml

from hdank.covariates import COVARIATES
from hdank.errors import UserError

SYNTHETIC_DIR = "results/synthetic/extracts"


class ConfigError(UserError, ValueError):
    """The configuration is invalid; the message names the key."""


def load_schema(path: str | Path) -> dict:
    return yaml.safe_load(Path(path).read_text())


def validate(config: dict, schema: dict) -> dict:
    """Return a copy of ``config`` with defaults filled in; raise :class:`ConfigError`."""
    config = coerce_strings(copy.deepcopy(config), schema)
    validator = jsonschema.Draft202012Validator(schema, format_checker=jsonschema.FormatChecker())
    errors = sorted(validator.iter_errors(config), key=lambda e: list(e.absolute_path))
    if errors:
        raise ConfigError("invalid configuration:\n" + "\n".join(_describe(e) for e in errors))
    _fill_defaults(config, schema)
    check_consistency(config)
    return config


def coerce_strings(node, schema: dict):
    """Turn the strings of ``snakemake --config a='{b: false}'`` into the schema's types.

    Snakemake parses a nested ``--config`` value with YAML's base loader, which keeps every
    scalar a string (``'false'``, ``'500'``); a string where the schema wants a boolean,
    integer or number is converted when it reads as one (anything else is left for the
    validator to report).
    """
    kind = schema.get("type")
    if isinstance(node, dict):
        for key, sub in schema.get("properties", {}).items():
            if key in node:
                node[key] = coerce_strings(node[key], sub)
    elif isinstance(node, list) and isinstance(schema.get("items"), dict):
        return [coerce_strings(item, schema["items"]) for item in node]
    elif isinstance(node, str) and kind in ("boolean", "integer", "number"):
        text = node.strip()
        if kind == "boolean" and text.lower() in ("true", "false"):
            return text.lower() == "true"
        try:
            return int(text) if kind == "integer" else float(text)
        except ValueError:
            return node
    return node


def _describe(error: jsonschema.ValidationError) -> str:
    key = ".".join(str(p) for p in error.absolute_path) or "<top level>"
    if error.validator == "additionalProperties":
        known = error.schema.get("properties", {})
        stray = [k for k in error.instance if k not in known]
        unknown = ", ".join(f"'{key}.{k}'" if key != "<top level>" else f"'{k}'" for k in stray)
        close = [f"'{m[0]}'" for k in stray if (m := difflib.get_close_matches(str(k), list(known), n=1))]
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        return f"  config key {unknown}: unknown key{hint} (allowed here: {', '.join(sorted(known))})"
    what = error.schema.get("description", "")
    return f"  config key '{key}': {error.message}" + (f" [{what}]" if what else "")


def _fill_defaults(node: dict, schema: dict) -> None:
    for key, sub in schema.get("properties", {}).items():
        if key not in node:
            if "default" in sub:
                node[key] = copy.deepcopy(sub["default"])
            elif sub.get("type") == "object" and "properties" in sub and not sub.get("required"):
                node[key] = {}
        if isinstance(node.get(key), dict) and sub.get("type") == "object":
            _fill_defaults(node[key], sub)


def check_consistency(config: dict) -> None:
    """Checks across keys: dates in order, grace within follow-up, known covariates."""
    problems = []
    study = config["study"]
    start, end = date.fromisoformat(study["period_start"]), date.fromisoformat(study["period_end"])
    if start > end:
        problems.append(f"config key 'study.period_start': {start} is after study.period_end {end}")
    if study["grace_hours"] / 24 >= study["followup_days"]:
        problems.append(f"config key 'study.grace_hours': {study['grace_hours']} h is not shorter than "
                        f"the follow-up of study.followup_days = {study['followup_days']} days")
    unknown = [c for c in config["propensity"]["covariates"] if c not in COVARIATES]
    if unknown:
        problems.append(f"config key 'propensity.covariates': unknown covariate(s) {', '.join(unknown)}; "
                        f"known: {', '.join(COVARIATES)}")
    stray = [c for c in config["propensity"]["log_transform"] if c not in config["propensity"]["covariates"]]
    if stray:
        problems.append(f"config key 'propensity.log_transform': {', '.join(stray)} not in propensity.covariates")
    lo, hi = config["weights"]["truncate_percentiles"]
    if not lo < hi:
        problems.append(f"config key 'weights.truncate_percentiles': lower {lo} must be below upper {hi}")
    if config["synthetic"]["enabled"] and config["extracts"]["dir"].rstrip("/") != SYNTHETIC_DIR:
        problems.append(f"config key 'extracts.dir': the simulator writes to {SYNTHETIC_DIR}; set "
                        f"synthetic.enabled: false to read extracts from {config['extracts']['dir']}")
    if "primary_matched" not in config["survival"]["analyses"]:
        problems.append("config key 'survival.analyses': the primary analysis 'primary_matched' is required")
    horizon = config["survival"]["risk_horizon_days"]
    if horizon > study["followup_days"]:
        problems.append(f"config key 'survival.risk_horizon_days': {horizon} exceeds study.followup_days")
    if problems:
        raise ConfigError("invalid configuration:\n" + "\n".join(f"  {p}" for p in problems))


def deep_merge(base: dict, extra: dict) -> dict:
    """Merge ``extra`` into ``base`` key by key, as Snakemake merges ``--configfile`` files."""
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            deep_merge(base[key], value)
        else:
            base[key] = value
    return base


def load_config(files: list[str | Path], overrides: dict | None = None) -> dict:
    """Config files merged in order, then ``overrides``; validated with defaults filled."""
    config: dict = {}
    for name in files:
        path = Path(name)
        if not path.exists():
            raise ConfigError(f"{path}: config file not found.")
        deep_merge(config, yaml.safe_load(path.read_text()) or {})
    deep_merge(config, overrides or {})
    root = Path(__file__).resolve().parents[2]
    return validate(config, load_schema(root / "workflow" / "schemas" / "config.schema.yaml"))
