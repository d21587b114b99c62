"""config/README.md is generated from the config schema and must be current.

When this fails, the schema changed without rebuilding the reference: run `make config-reference`
and commit config/README.md with the schema change.
"""

import yaml

from hdank import config_reference as ref
from workflow_runner import ROOT

SCHEMA = ROOT / "workflow" / "schemas" / "config.schema.yaml"


def test_committed_reference_equals_the_generated_one():
    committed = (ROOT / "config" / "README.md").read_text()
    generated = ref.render(yaml.safe_load(SCHEMA.read_text()), ref.SCHEMA)
    assert committed == generated, "config/README.md is stale: run `make config-reference`"


def test_every_key_of_the_schema_and_of_config_yaml_is_listed():
    schema = yaml.safe_load(SCHEMA.read_text())
    text = ref.render(schema)
    for path, _, _ in ref.walk(schema):
        assert f"| `{path}` |" in text

    def keys(node, prefix=""):
        for key, value in node.items():
            path = f"{prefix}.{key}" if prefix else key
            yield path
            # survival.analyses.<name>: {} is a setting; descend into mappings only
            if isinstance(value, dict):
                yield from keys(value, path)

    config = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    missing = [k for k in keys(config) if f"| `{k}` |" not in text]
    assert not missing, f"keys of config/config.yaml without a reference row: {missing}"


def test_rows_carry_type_default_range_and_description():
    text = ref.render(yaml.safe_load(SCHEMA.read_text()))
    assert ("| `extracts.format` | string | *required*, e.g. `\"csv.gz\"` | one of `\"csv\"`, `\"csv.gz\"`, `\"parquet\"` | "
            in text)
    assert "| `matching.caliper_sd` | number | `0.2` | > 0, ≤ 5 | Caliper in SDs" in text
    assert "| `weights.truncate_percentiles` | list of number | `[1, 99]` | exactly 2 items; each item ≥ 0, ≤ 100 |" in text
    assert "| `propensity.covariates` | list of string | *required* |" in text


def test_render_of_a_small_schema():
    schema = {"type": "object", "required": ["a"], "properties": {
        "a": {"type": "object", "description": "Section A.", "properties": {
            "n": {"type": "integer", "minimum": 1, "exclusiveMaximum": 50_000, "default": 3,
                  "description": "A count | with a pipe."},
            "mode": {"type": "string", "enum": ["x", "y"], "default": "x", "description": "Mode."},
        }}}}
    text = ref.render(schema, "s.yaml")
    assert "| `a.n` | integer | `3` | ≥ 1, < 50,000 | A count \\| with a pipe. |" in text
    assert "| `a.mode` | string | `\"x\"` | one of `\"x\"`, `\"y\"` | Mode. |" in text
    assert "| `a` | object | *required* |" in text
    assert "s.yaml" in text.splitlines()[0]
