"""Generate ``config/README.md``, the reference of every configuration key, from the schema.

The schema (``workflow/schemas/config.schema.yaml``) is the single source: key, type, default,
allowed values and description all come from it, so the reference cannot drift from what
:func:`hdank.settings.validate` enforces.  Rebuild with ``make config-reference``; a test fails
when the committed file differs from what this module generates.

Usage: ``python -m hdank.config_reference [SCHEMA] [OUT]`` (defaults below; ``-`` prints to stdout).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any, Iterator

import yaml

SCHEMA = "workflow/schemas/config.schema.yaml"
OUT = "config/README.md"

HEADER = """\
<!-- Generated from {schema} by `make config-reference` (python -m hdank.config_reference).
     Do not edit by hand: edit the schema and rebuild; tests/test_config_reference.py fails when
     this file and the schema disagree. -->
# Configuration reference

Every key of `config/config.yaml`, as validated by `{schema}` before any job runs.
A key that is left out takes its default; a key that the schema does not know is an error
(`config key '...': unknown key`). A second config file given after the first
(`--configfile config/config.yaml site.yaml`) is merged over it key by key, so it only needs
the keys it changes (see `docs/site-guide.md`).

Columns: **key** as a dotted path (`a.b.c`; `[]` marks the items of a list), **type**,
**default** (*required* = must be given, no default), **allowed** values or range, and what the
key means.
"""


def _code(value: Any) -> str:
    """A value as inline code, in YAML flow style (``true``, ``[1, 99]``, ``"2020-03-01"``)."""
    text = json.dumps(value) if isinstance(value, str) else yaml.safe_dump(
        value, default_flow_style=True, width=10_000).strip()
    if text.endswith("\n...") or text.endswith("..."):
        text = text.rsplit("\n", 1)[0].strip() if "\n" in text else text[:-3].strip()
    return f"`{text}`"


def _number(x: float) -> str:
    return f"{x:,}" if isinstance(x, int) and abs(x) >= 10_000 else f"{x:g}"


def _cell(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ").strip()


def _prose(text: str) -> str:
    """A description in a table cell: ``<table>`` would be read as HTML, so ``<`` is escaped."""
    return _cell(text.replace("<", "&lt;"))


def type_of(node: dict) -> str:
    """Readable type of a schema node (``list of string``, ``integer``, ...)."""
    kind = node.get("type", "any")
    if isinstance(kind, list):
        kind = " or ".join(kind)
    if kind == "array":
        item = node.get("items", {})
        return f"list of {type_of(item)}" if item else "list"
    if kind == "string" and node.get("format") == "date":
        return "date (string)"
    return kind


def allowed(node: dict) -> str:
    """Allowed values or range of a schema node, in words."""
    parts = []
    if "enum" in node:
        parts.append("one of " + ", ".join(_code(v) for v in node["enum"]))
    bounds = [("minimum", "≥"), ("exclusiveMinimum", ">"), ("maximum", "≤"), ("exclusiveMaximum", "<")]
    rng = [f"{sym} {_number(node[key])}" for key, sym in bounds if key in node]
    if rng:
        parts.append(", ".join(rng))
    if node.get("format") == "date":
        parts.append("`YYYY-MM-DD`")
    if "pattern" in node:
        parts.append(f"matches `{node['pattern']}`")
    if node.get("type") == "array":
        lo, hi = node.get("minItems"), node.get("maxItems")
        if lo is not None and lo == hi:
            parts.append(f"exactly {lo} items")
        else:
            if lo:
                parts.append(f"at least {lo} item{'s' if lo > 1 else ''}")
            if hi is not None:
                parts.append(f"at most {hi} items")
        if node.get("uniqueItems"):
            parts.append("no duplicates")
        item = allowed(node.get("items", {}))
        if item:
            parts.append(f"each item {item}")
    if node.get("type") == "object" and node.get("additionalProperties") is False:
        parts.append("only the keys below")
    elif node.get("type") == "object" and "properties" not in node:
        parts.append("a mapping of settings")
    return "; ".join(parts)


def default_of(node: dict, required: bool) -> str:
    if required:
        return "*required*" + (f", e.g. {_code(node['default'])}" if "default" in node else "")
    if "default" in node:
        return _code(node["default"])
    if node.get("type") == "object":
        return "(its keys' defaults)" if node.get("properties") else "`{}`"
    return "—"


def walk(node: dict, path: str = "", required: bool = False) -> Iterator[tuple[str, dict, bool]]:
    """Every key below ``node`` in schema order: (dotted path, node, required)."""
    if path:
        yield path, node, required
    needed = set(node.get("required", []))
    for key, sub in node.get("properties", {}).items():
        yield from walk(sub, f"{path}.{key}" if path else key, key in needed)
    items = node.get("items")
    if isinstance(items, dict) and items.get("type") == "object":
        yield from walk(items, f"{path}[]", False)


def render(schema: dict, schema_path: str = SCHEMA) -> str:
    """The Markdown reference of ``schema``."""
    lines = [HEADER.format(schema=schema_path)]
    needed = set(schema.get("required", []))
    for section, node in schema.get("properties", {}).items():
        lines.append(f"## `{section}`\n")
        lines.append(_prose(node.get("description", "")) + "\n")
        lines.append("| key | type | default | allowed | description |")
        lines.append("|---|---|---|---|---|")
        for path, sub, required in walk(node, section, section in needed):
            lines.append("| " + " | ".join([
                f"`{path}`", type_of(sub), _cell(default_of(sub, required)), _cell(allowed(sub)),
                _prose(sub.get("description", "")),
            ]) + " |")
        lines.append("")
    return "\n".join(lines).rstrip("\n") + "\n"


def build(schema_path: str = SCHEMA, out: str = OUT) -> str:
    """Render the reference of ``schema_path``; write it to ``out`` unless ``out`` is ``-``."""
    text = render(yaml.safe_load(Path(schema_path).read_text()), schema_path)
    if out != "-":
        from hdank import io

        io.write_text(text, out)
    return text


if __name__ == "__main__":
    args = sys.argv[1:]
    result = build(*(args[:2]))
    if args[1:2] == ["-"]:
        sys.stdout.write(result)
    else:
        print(f"wrote {args[1] if len(args) > 1 else OUT}")
