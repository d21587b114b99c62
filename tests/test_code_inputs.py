"""Code is an input: every library module a rule runs is declared among the rule's inputs.

Snakemake does not see what a script imports.  Each rule lists its modules (``lib(...)`` in
``workflow/rules/common.smk``) so that editing a stage's code reruns that stage and what
follows it.  This test computes the import closure of each rule's adapter script and fails
when a local module is missing from the inputs Snakemake records for that rule.
"""

import ast
import re
from pathlib import Path

import pytest

from workflow_runner import ROOT, Workflow

RULE = re.compile(r"^\s*rule (\w+):")
JOB = re.compile(r"^\s*(?:local)?rule (\w+):\s*$")
SCRIPT = re.compile(r'^\s*"\.\./\.\./scripts/(\w+\.py)"')


def rule_scripts() -> dict[str, str]:
    """Rule name -> adapter script, read from the .smk files."""
    scripts, current = {}, None
    for smk in sorted((ROOT / "workflow" / "rules").glob("*.smk")):
        for line in smk.read_text().splitlines():
            if m := RULE.match(line):
                current = m.group(1)
            elif (m := SCRIPT.match(line)) and current:
                scripts[current] = m.group(1)
    return scripts


def local_imports(path: Path) -> set[str]:
    """hdank modules imported anywhere in ``path`` (module level or inside functions)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.split(".")[0] == "hdank":
            if node.module == "hdank":
                found.update(alias.name for alias in node.names)
            else:
                found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found.update(a.name.split(".")[1] for a in node.names if a.name.startswith("hdank."))
    return found


def closure(script: Path) -> set[str]:
    lib = ROOT / "scripts" / "hdank"
    todo, seen = list(local_imports(script)), set()
    while todo:
        module = todo.pop()
        if module in seen:
            continue
        seen.add(module)
        todo.extend(local_imports(lib / f"{module}.py"))
    return seen


@pytest.fixture(scope="module")
def declared(tmp_path_factory) -> dict[str, set[str]]:
    flow = Workflow.copy(tmp_path_factory.mktemp("code_inputs"))
    proc = flow.snakemake("--dry-run", "--forceall", "results/match/complete_case/matched.parquet",
                          "results/check/contract_check.html", "all")
    out: dict[str, set[str]] = {}
    rule = None
    for line in (proc.stdout + proc.stderr).splitlines():
        if m := JOB.match(line):
            rule = m.group(1)
        elif rule and line.strip().startswith("input:"):
            files = [f.strip() for f in line.split(":", 1)[1].split(",")]
            out.setdefault(rule, set()).update(Path(f).stem for f in files if f.startswith("scripts/hdank/"))
    return out


def test_every_rule_has_an_adapter_script():
    assert set(rule_scripts()) >= {"ingest_table", "build_cohort", "match_cohort", "estimate_survival",
                                   "render_report", "simulate_extracts"}


@pytest.mark.parametrize("rule", sorted(rule_scripts()))
def test_imported_modules_are_declared_inputs(rule, declared):
    script = ROOT / "scripts" / rule_scripts()[rule]
    needed = closure(script)
    assert rule in declared, f"rule {rule} not in the DAG"
    missing = needed - declared[rule]
    assert not missing, f"rule {rule}: {script.name} imports hdank.{sorted(missing)} but the rule does not list them in lib(...)"


def test_closure_sees_imports_inside_functions(tmp_path):
    src = tmp_path / "x.py"
    src.write_text("def f():\n    from hdank import io\n    import hdank.cohort\n")
    assert local_imports(src) == {"io", "cohort"}
