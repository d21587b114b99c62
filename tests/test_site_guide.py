"""docs/site-guide.md says only what the program does.

* The table sections are generated from the contract (``python -m hdank.contract_doc``) and must
  be current.
* Every error message quoted in the marked error catalogue is produced again here, by running
  the program on the same kind of broken input, and the quote (placeholders like ``<folder>``
  aside) must equal a line of what the program prints.
* The worked code-list example, the site.yaml example and the commands it names work as shown.
"""

from __future__ import annotations

import copy
import gzip
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest
import yaml

from hdank import codelists, contract_check, contract_doc, settings
from hdank import simulate as sim
from hdank.contract import TABLES
from hdank.ingest import REASONS
from workflow_runner import ROOT, Workflow

GUIDE = ROOT / "docs" / "site-guide.md"
CONFIG = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
SCHEMA = settings.load_schema(ROOT / "workflow" / "schemas" / "config.schema.yaml")
CODELISTS = ROOT / "resources" / "codelists"

PLACEHOLDERS = ("folder", "line", "rows", "values", "n", "keys", "row text")
_PLACEHOLDER = re.compile("<(" + "|".join(re.escape(p) for p in PLACEHOLDERS) + ")>")
_PREFIX = re.compile(r"^(ERROR: |\d+\. )")


def guide() -> str:
    return GUIDE.read_text()


def catalogue() -> list[tuple[str, str]]:
    """(error id, quoted message) of every ```text error=<id> block of the marked section."""
    text = guide()
    section = text.split("<!-- error-catalogue:start -->", 1)[1].split("<!-- error-catalogue:end -->", 1)[0]
    return re.findall(r"```text error=(\w+)\n(.*?)\n```", section, flags=re.S)


def as_pattern(quote: str) -> re.Pattern:
    parts = _PLACEHOLDER.split(quote)
    # split keeps the placeholder names at odd positions
    return re.compile("".join(re.escape(p) if i % 2 == 0 else ".+?" for i, p in enumerate(parts)))


def printed_lines(output: str) -> list[str]:
    """Lines of the program's output without indentation, ``ERROR: `` or ``1. ``."""
    return [_PREFIX.sub("", line.strip()) for line in output.splitlines()]


def matches(quote: str, output: str) -> bool:
    pattern = as_pattern(quote)
    return any(pattern.fullmatch(line) for line in printed_lines(output))


# ------------------------------------------------------------------------------ inputs
@pytest.fixture(scope="module")
def extracts(tmp_path_factory) -> Path:
    """Small synthetic extracts (the simulator of protocol section 5)."""
    tmp = tmp_path_factory.mktemp("guide")
    synthetic = {**copy.deepcopy(CONFIG["synthetic"]), "n_admissions": 400}
    sim.simulate_from_config(tmp / "extracts", tmp / "key.parquet", tmp / "defects.json",
                             synthetic=synthetic, study=CONFIG["study"], codelists_dir=CODELISTS, fmt="csv.gz")
    return tmp / "extracts"


def broken(extracts: Path, dest: Path, table: str | None = None, edit=None, raw: bytes | None = None) -> Path:
    """A copy of ``extracts`` with one table's text edited (``edit(text) -> text``) or replaced."""
    shutil.copytree(extracts, dest)
    if table:
        path = dest / f"{table}.csv.gz"
        data = raw if raw is not None else edit(gzip.decompress(path.read_bytes()).decode()).encode()
        path.write_bytes(gzip.compress(data, mtime=0))
    return dest


def check(capsys, folder: Path, out: Path, *extra: str) -> tuple[int, str]:
    """Run ``make check``'s command; its exit status and everything it printed."""
    status = contract_check.main(["--extracts", str(folder), "--format", "csv.gz", "--out", str(out), *extra])
    printed = capsys.readouterr()
    return status, printed.out + printed.err


def config_error(site: dict) -> str:
    merged = settings.deep_merge(copy.deepcopy(CONFIG), site)
    with pytest.raises(settings.ConfigError) as error:
        settings.validate(merged, SCHEMA)
    return str(error.value)


def _lines(text: str, edit_line) -> str:
    lines = text.split("\n")
    return "\n".join(edit_line(i, line) for i, line in enumerate(lines))


def reproduce(error_id: str, extracts: Path, tmp: Path, capsys) -> str:
    """Run the program on the broken input behind ``error_id``; return what it prints."""
    if error_id == "synthetic_on":
        return config_error({"extracts": {"dir": "/data/export", "format": "csv.gz"}})
    if error_id == "unknown_key":
        return config_error({"synthetic": {"enabled": False}, "extract": {"dir": "/data/export", "format": "csv.gz"}})
    if error_id in ("file_not_found", "missing_input_snakemake"):
        folder = broken(extracts, tmp / "e")
        labs = folder / "labs.csv.gz"
        (folder / "labs.csv").write_bytes(gzip.decompress(labs.read_bytes()))
        labs.unlink()
        if error_id == "file_not_found":
            return check(capsys, folder, tmp / "out")[1]
        flow = Workflow.copy(tmp / "flow", synthetic={"enabled": False},
                             extracts={"dir": str(folder), "format": "csv.gz"})
        proc = flow.snakemake("--dry-run", check=False)
        assert proc.returncode != 0
        return proc.stdout + proc.stderr
    if error_id == "column_missing":
        folder = broken(extracts, tmp / "e", "admissions", lambda t: t.replace("admit_time", "admission_time", 1))
    elif error_id == "delimiter":
        folder = broken(extracts, tmp / "e", "patients", lambda t: t.replace(",", ";"))
    elif error_id == "not_utf8":
        text = gzip.decompress((extracts / "medications.csv.gz").read_bytes()).decode()
        folder = broken(extracts, tmp / "e", "medications",
                        raw=text.replace("dexamethasone", "dexaméthasone", 1).encode("latin-1"))
    elif error_id == "ids":
        folder = broken(extracts, tmp / "e", "patients",
                        lambda t: _lines(t, lambda i, l: "P" + l if 1 <= i <= 3 else l))
    elif error_id == "ragged":
        folder = broken(extracts, tmp / "e", "medications",
                        lambda t: t.replace("dexamethasone", "dexamethasone 4 mg/ml, inj", 1))
    elif error_id == "codelist_duplicate":
        lists = tmp / "codelists"
        shutil.copytree(CODELISTS, lists)
        with open(lists / "atc.csv", "a") as fh:
            fh.write("L04AC03,anakinra,,mg\n")
        return check(capsys, extracts, tmp / "out", "--codelists", str(lists))[1]
    elif error_id == "required_concept":
        folder = broken(extracts, tmp / "e", "medications", lambda t: t.replace(",L04AC03,", ",KINERET100,"))
    else:
        raise KeyError(f"no reproduction for error {error_id!r}: add one to tests/test_site_guide.py")
    status, printed = check(capsys, folder, tmp / "out")
    assert status == 1, printed
    return printed


# ------------------------------------------------------------------------------- tests
def test_contract_sections_are_generated_from_the_contract():
    assert contract_doc.current_block(guide()) == contract_doc.render(), \
        "docs/site-guide.md: run `.venv/bin/python -m hdank.contract_doc` to regenerate the table sections"


def test_every_quarantine_reason_is_explained():
    assert set(REASONS) <= set(contract_doc.REASON_TEXT), set(REASONS) - set(contract_doc.REASON_TEXT)
    for table in TABLES:
        assert f"### `{table}`: one row per" in guide()


def test_the_catalogue_has_ten_errors():
    section = guide().split("<!-- error-catalogue:start -->", 1)[1].split("<!-- error-catalogue:end -->", 1)[0]
    assert re.findall(r"^### (\d+)\. ", section, flags=re.M) == [str(i) for i in range(1, 11)]
    ids = [i for i, _ in catalogue()]
    assert len(ids) == len(set(ids)) == 11


@pytest.mark.parametrize("error_id", [i for i, _ in catalogue()])
def test_quoted_message_is_what_the_program_prints(error_id, extracts, tmp_path, capsys):
    quote = dict(catalogue())[error_id]
    printed = reproduce(error_id, extracts, tmp_path, capsys)
    assert matches(quote, printed), f"the guide quotes\n  {quote}\nbut the program printed\n{printed[-3000:]}"


def test_placeholders_stand_for_something():
    assert as_pattern("a <folder>/x.csv: row(s) <rows> b").fullmatch("a /d/e/x.csv: row(s) 2, 3 b")
    assert not as_pattern("column <folder> missing").fullmatch("column  missing")
    assert as_pattern("hold <empty>").fullmatch("hold <empty>")  # not a placeholder


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)\n```", guide(), flags=re.S)


def _normalise(text: str, replace: dict[str, str]) -> list[str]:
    """Lines with paths replaced as the guide writes them and every number as N."""
    for old, new in replace.items():
        text = text.replace(old, new)
    return [re.sub(r"\d[\d,]*", "N", line.rstrip()) for line in text.strip().splitlines()]


def test_worked_code_list_example_runs_as_shown(extracts, tmp_path, capsys):
    """Local codes PH0042 (dexamethasone) and KINERET100 (anakinra): fails, then passes."""
    folder = broken(extracts, tmp_path / "export", "medications",
                    lambda t: t.replace(",L04AC03,", ",KINERET100,").replace(",H02AB02,", ",PH0042,"))
    out = tmp_path / "out"
    paths = {str(folder): "/data/export", str(out): "results/check"}
    failed = [b for b in _blocks("text") if "cannot support the study" in b and "PH0042" in b]
    assert len(failed) == 1
    status, printed = check(capsys, folder, out)
    assert status == 1
    got = [line for line in _normalise(printed, paths) if not line.startswith("Summary:")]
    assert got == _normalise(failed[0], {})
    assert "codes that are not ATC codes and map to no concept: 'PH0042'" in Path(out / "contract_check.txt").read_text()

    lines = [b for b in _blocks("csv") if b.startswith("PH0042")]
    assert lines == ["PH0042,corticosteroid,1,mg\nKINERET100,anakinra,,mg"]
    site_lists = tmp_path / "site-codelists"
    shutil.copytree(CODELISTS, site_lists)
    with open(site_lists / "atc.csv", "a") as fh:
        fh.write(lines[0] + "\n")
    codes = codelists.load(site_lists)
    assert list(codes.concept_of("atc", pd.Series(["PH0042", "KINERET100"]))) == ["corticosteroid", "anakinra"]
    status, printed = check(capsys, folder, out, "--codelists", str(site_lists))
    assert status == 0, printed
    passed = [b for b in _blocks("text") if b.startswith("$ make check")]
    assert len(passed) == 1
    assert _normalise(printed, paths) == _normalise("\n".join(passed[0].splitlines()[1:]), {})
    top = Path(out / "contract_check.txt").read_text()
    assert "medications.atc 0 of" in top


def test_site_yaml_example_validates_when_merged_over_the_default():
    site = [b for b in _blocks("yaml") if b.startswith("# site.yaml")]
    assert len(site) == 1
    merged = settings.deep_merge(copy.deepcopy(CONFIG), yaml.safe_load(site[0]))
    config = settings.validate(merged, SCHEMA)
    assert config["synthetic"]["enabled"] is False
    assert config["extracts"] == {"dir": "/data/export", "format": "csv.gz"}
    assert config["codelists"] == "/data/site-codelists"
    assert config["study"] == settings.validate(copy.deepcopy(CONFIG), SCHEMA)["study"]


def test_the_config_example_of_the_command_line_validates():
    """--config values arrive as strings from Snakemake's YAML base loader; they are coerced."""
    merged = settings.deep_merge(copy.deepcopy(CONFIG), {
        "synthetic": {"enabled": "false"}, "extracts": {"dir": "/data/export", "format": "csv.gz"}})
    config = settings.validate(merged, SCHEMA)
    assert config["synthetic"]["enabled"] is False
    assert "--config synthetic='{enabled: false}' extracts='{dir: /data/export, format: csv.gz}'" in guide()


def test_named_commands_and_files_exist():
    makefile = (ROOT / "Makefile").read_text()
    for target in ("check", "config-reference"):
        assert re.search(rf"^{target}: ", makefile, flags=re.M), target
    for path in ("workflow/profiles/slurm/config.yaml", "workflow/profiles/slurm/README.md", "config/README.md",
                 "workflow/rules/check.smk"):
        assert (ROOT / path).exists(), path
    slurm = (ROOT / "workflow/profiles/slurm/config.yaml").read_text()
    assert "executor: slurm" in slurm and "slurm_partition" not in re.sub(r"(?m)^#.*$", "", slurm)
