"""Ingest: one raw extract in, one typed table out (protocol section 2).

Steps, in order:

1. read every column as text (fatal: missing file, undecodable bytes, missing column);
2. drop exact duplicate rows (counted);
3. parse keys (fatal: empty or non-integer key), timestamps, dates, numbers;
4. validate the parsed rows against the contract with pandera (category values, required
   values, plausible ranges, impossible intervals, duplicate primary keys);
5. map codes through the code lists and convert lab units to the canonical unit;
6. quarantine orphan rows whose parent key is not in the parent typed table.

Bad rows go to the quarantine table, each with the first reason it failed and its line in the
file; nothing is dropped silently.  Fatal problems raise :class:`ContractError`, whose message
names the file, the column and the first offending rows.
"""

from __future__ import annotations

import difflib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pandera.pandas as pa
import pyarrow as pyarrow
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from hdank.codelists import TEXT, CodeLists
from hdank.errors import UserError
from hdank.contract import CONTRACT, Table

#: Quarantine reasons, in the order they are tested (a row gets the first that applies).
REASONS = (
    "missing_required",
    "unparsable_timestamp",
    "timestamp_with_time_zone",
    "unparsable_date",
    "unparsable_value",
    "invalid_category",
    "implausible_value",
    "negative_dose",
    "unknown_unit",
    "discharge_before_admission",
    "death_after_discharge",
    "died_without_death_time",
    "death_time_without_death",
    "episode_end_before_start",
    "duplicate_key",
    "orphan_key",
)

SHOW_ROWS = 5
_TS = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?$")
_TS_TZ = re.compile(r"^\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:?\d{2})$")
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_ID = re.compile(r"^[1-9][0-9]{0,17}$")

#: Plausible ranges of patient measurements; values outside are quarantined.
PLAUSIBLE = {"height_cm": (30.0, 260.0), "weight_kg": (2.0, 400.0)}
MAX_AGE_YEARS = 120


class ContractError(UserError):
    """The extract cannot be read as the contract says; the run must stop."""


@dataclass
class IngestResult:
    typed: pd.DataFrame
    quarantine: pd.DataFrame
    counts: dict = field(default_factory=dict)


def _rows(lines: pd.Series) -> str:
    shown = ", ".join(str(int(v)) for v in lines.iloc[:SHOW_ROWS])
    more = f" and {len(lines) - SHOW_ROWS} more" if len(lines) > SHOW_ROWS else ""
    return f"row(s) {shown}{more}"


# ---------------------------------------------------------------------------------------- read
def read_extract(path: str | Path, spec: Table) -> tuple[pd.DataFrame, list[str]]:
    """Read ``path`` with every contract column as text.

    Returns the frame (with a ``row`` column: line number in a CSV, the header being line 1,
    or 1-based record number in Parquet) and the list of extra columns that were ignored.
    """
    path = Path(path)
    if not path.exists():
        raise ContractError(f"{path}: file not found. The extract of table '{spec.name}' is required "
                            f"(set extracts.dir and extracts.format in the config).")
    if path.stat().st_size == 0:
        raise ContractError(f"{path}: file is empty; expected a header with columns {', '.join(spec.names)}.")
    if path.name.endswith(".parquet"):
        table = pq.read_table(path)
        header = table.column_names
        _check_header(path, header, spec)
        table = table.select(spec.names)
        df = pd.DataFrame({c.name: _as_text(table.column(c.name), c.kind) for c in spec.columns})
        df.insert(0, "row", np.arange(1, len(df) + 1, dtype=np.int64))
    else:
        header = _csv_header(path, spec)
        _check_header(path, header, spec)
        convert = pacsv.ConvertOptions(column_types={c: pyarrow.string() for c in header},
                                       include_columns=spec.names, null_values=[""],
                                       strings_can_be_null=True, quoted_strings_can_be_null=True)
        try:
            table = pacsv.read_csv(path, convert_options=convert,  # names as checked (stripped)
                                   read_options=pacsv.ReadOptions(column_names=header, skip_rows=1))
        except pyarrow.ArrowInvalid as exc:
            raise ContractError(_csv_problem(path, exc)) from None
        except (OSError, EOFError) as exc:
            raise ContractError(_unreadable(path, exc)) from None
        df = table.to_pandas(types_mapper={pyarrow.string(): TEXT}.get)
        df.insert(0, "row", np.arange(2, len(df) + 2, dtype=np.int64))
    if df.empty:
        raise ContractError(f"{path}: no data rows, only the header (line 1); the extract of table "
                            f"'{spec.name}' is empty: re-export it.")
    extra = [c for c in header if c not in spec.names]
    return df, extra


def _csv_header(path: Path, spec: Table) -> list[str]:
    try:
        reader = pacsv.open_csv(path, convert_options=pacsv.ConvertOptions(
            column_types={}, include_columns=[]))
        header = reader.schema.names
    except pyarrow.ArrowInvalid as exc:
        if "Empty CSV file" in str(exc):
            raise ContractError(f"{path}: file has no header; expected columns {', '.join(spec.names)}.") from None
        raise ContractError(_csv_problem(path, exc)) from None
    except (OSError, EOFError) as exc:
        raise ContractError(_unreadable(path, exc)) from None
    if not header:
        raise ContractError(f"{path}: file has no header; expected columns {', '.join(spec.names)}.")
    return [h.strip() for h in header]


def _check_header(path: Path, header: list[str], spec: Table) -> None:
    twice = [c for c in spec.names if header.count(c) > 1]
    if twice:
        raise ContractError(f"{path}: column(s) {', '.join(twice)} appear more than once in the header "
                            f"(line 1); keep one. Found: {', '.join(header)}.")
    missing = [c for c in spec.names if c not in header]
    if not missing:
        return
    hints = []
    for col in missing:
        close = difflib.get_close_matches(col, [h for h in header if h not in spec.names], n=1)
        if close:
            hints.append(f"'{close[0]}' looks like a misspelling of '{col}'")
    if len(header) == 1 and any(sep in header[0] for sep in (";", "\t", "|")):
        hints.append("the header is one column: is the delimiter not a comma?")
    hint = f" ({'; '.join(hints)})" if hints else ""
    raise ContractError(f"{path}: column(s) {', '.join(missing)} missing from the header (line 1){hint}. "
                        f"Found: {', '.join(header)}.")


def _unreadable(path: Path, exc: Exception) -> str:
    """Message for a file that cannot be decompressed, with the last line that can be read."""
    import zlib

    lines, broken = 0, False
    if path.name.endswith(".gz"):
        inflate = zlib.decompressobj(16 + zlib.MAX_WBITS)
        with open(path, "rb") as fh:
            try:
                while chunk := fh.read(1 << 20):
                    lines += inflate.decompress(chunk).count(b"\n")
                broken = not inflate.eof
            except zlib.error:
                broken = True
    where = f"; it breaks off after line {lines}" if broken and lines else ""
    return f"{path}: cannot be read ({exc}){where}; is the file truncated or not gzip?"


def _csv_problem(path: Path, exc: Exception) -> str:
    text = str(exc)
    if "invalid UTF8" in text:
        line, column = _first_non_utf8_line(path)
        where = (f" on line {line}" if line else "") + (f", column {column}" if column else "")
        return (f"{path}: not valid UTF-8{where}; re-export the table as UTF-8 "
                f"(for example with iconv -f latin1 -t utf-8).")
    fields = re.search(r"Expected (\d+) columns, got \d+", text)
    if fields:
        lines = pd.Series(_ragged_lines(path, int(fields.group(1))), dtype="int64")
        if len(lines):
            return (f"{path}: {_rows(lines)} do not have the {fields.group(1)} fields of the header "
                    f"(line 1); is a value with a comma or a quote not quoted? ({text.splitlines()[0]})")
    return f"{path}: cannot be parsed as CSV: {text}"


def _ragged_lines(path: Path, n_fields: int) -> list[int]:
    """Line numbers (where the record starts) of CSV records without ``n_fields`` fields."""
    import csv
    import gzip

    opener = gzip.open if path.name.endswith(".gz") else open
    out, end = [], 0
    with opener(path, "rt", encoding="utf-8", errors="replace", newline="") as fh:
        reader = csv.reader(fh)
        for record in reader:
            start, end = end + 1, reader.line_num
            if record and len(record) != n_fields:
                out.append(start)
    return out


def _first_non_utf8_line(path: Path) -> tuple[int | None, str | None]:
    """Line number and column (header name) of the first bytes that are not UTF-8."""
    import csv
    import gzip

    def fields(line: bytes) -> list[str]:
        return next(csv.reader([line.decode("latin-1")]), [])

    opener = gzip.open if path.name.endswith(".gz") else open
    header: list[str] = []
    with opener(path, "rb") as fh:
        for number, line in enumerate(fh, start=1):
            if number == 1:
                header = [h.strip() for h in fields(line.removeprefix(b"\xef\xbb\xbf"))]
            try:
                line.decode("utf-8")
            except UnicodeDecodeError:
                bad = [i for i, f in enumerate(fields(line)) if not _is_utf8(f.encode("latin-1"))]
                return number, (header[bad[0]] if bad and bad[0] < len(header) else None)
    return None, None


def _is_utf8(data: bytes) -> bool:
    try:
        data.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def _as_text(column: pyarrow.ChunkedArray, kind: str) -> pd.Series:
    """Text form of a Parquet column, as a CSV export would write it."""
    import pyarrow.compute as pc

    if pyarrow.types.is_timestamp(column.type) or pyarrow.types.is_date(column.type):
        column = pc.strftime(column, format="%Y-%m-%d" if kind == "date" else "%Y-%m-%dT%H:%M:%S")
    return column.cast(pyarrow.string()).to_pandas(types_mapper={pyarrow.string(): TEXT}.get)


# --------------------------------------------------------------------------------------- parse
def parse(raw: pd.DataFrame, spec: Table, path: str | Path) -> tuple[pd.DataFrame, pd.Series]:
    """Parse text columns to typed columns.

    Returns the typed frame (same index) and the first quarantine reason per row (null if
    none).  Keys that are empty or not positive integers stop the run.
    """
    reason = pd.Series(pd.NA, index=raw.index, dtype=TEXT)
    typed = pd.DataFrame(index=raw.index)
    typed["row"] = raw["row"]
    for col in spec.columns:
        text = raw[col.name].str.strip()
        if col.kind == "id":
            bad = ~text.fillna("").str.fullmatch(_ID.pattern)
            if bad.any():
                sample = ", ".join(repr(v) for v in raw.loc[bad, col.name].iloc[:SHOW_ROWS].fillna("<empty>"))
                raise ContractError(
                    f"{path}: column {col.name} must hold positive integer ids; "
                    f"{_rows(raw.loc[bad, 'row'])} hold {sample}.")
            typed[col.name] = text.astype("int64")
        elif col.kind == "timestamp":
            ok = text.str.fullmatch(_TS.pattern).fillna(False)
            tz = text.str.fullmatch(_TS_TZ.pattern).fillna(False)
            values = pd.to_datetime(text.where(ok), format="ISO8601", errors="coerce")
            reason = _first(reason, tz, "timestamp_with_time_zone")
            reason = _first(reason, text.notna() & ~tz & values.isna(), "unparsable_timestamp")
            typed[col.name] = values.astype("datetime64[s]")
        elif col.kind == "date":
            ok = text.str.fullmatch(_DATE.pattern).fillna(False)
            values = pd.to_datetime(text.where(ok), format="%Y-%m-%d", errors="coerce")
            reason = _first(reason, text.notna() & values.isna(), "unparsable_date")
            typed[col.name] = values.astype("datetime64[s]")
        elif col.kind == "float":
            values = pd.to_numeric(text, errors="coerce").astype("float64")
            bad = text.notna() & ~np.isfinite(values.fillna(np.inf).to_numpy())
            reason = _first(reason, pd.Series(bad, index=raw.index), "unparsable_value")
            typed[col.name] = values.where(~bad)
        else:  # str, category
            typed[col.name] = text
    return typed, reason


def _first(reason: pd.Series, mask: pd.Series, name: str) -> pd.Series:
    """Set ``name`` where ``mask`` holds and no earlier reason was given."""
    return reason.mask(reason.isna() & mask.fillna(False).astype(bool), name)


# ------------------------------------------------------------------------------------ validate
def contract_schema(spec: Table, reference_date: pd.Timestamp | None = None) -> pa.DataFrameSchema:
    """The pandera schema of a parsed table: each check is named by its quarantine reason."""
    columns = {}
    for col in spec.columns:
        checks = []
        if col.kind == "category":
            checks.append(pa.Check(lambda s, v=col.values: s.isin(v), name="invalid_category"))
        if col.name in PLAUSIBLE:
            lo, hi = PLAUSIBLE[col.name]
            checks.append(pa.Check(lambda s, lo=lo, hi=hi: s.between(lo, hi), name="implausible_value"))
        if col.name == "dose":
            checks.append(pa.Check(lambda s: s >= 0, name="negative_dose"))
        if col.name == "birth_date":
            checks.append(pa.Check(lambda s: s >= pd.Timestamp("1900-01-01"), name="implausible_value"))
        columns[col.name] = pa.Column(nullable=col.nullable, checks=checks)
    return pa.DataFrameSchema(columns, checks=_TABLE_CHECKS.get(spec.name, []), strict=False)


def _check(name: str, fn) -> pa.Check:
    return pa.Check(fn, name=name)


_TABLE_CHECKS = {
    "admissions": [
        _check("discharge_before_admission",
               lambda d: ~(d["discharge_time"] < d["admit_time"])),
        _check("death_after_discharge",
               lambda d: ~(d["death_time"] > d["discharge_time"])),
        _check("died_without_death_time",
               lambda d: ~((d["discharge_status"] == "died") & d["death_time"].isna())),
        _check("death_time_without_death",
               lambda d: ~((d["discharge_status"] != "died") & d["death_time"].notna())),
    ],
    "respiratory_support": [
        _check("episode_end_before_start", lambda d: ~(d["end_time"] < d["start_time"])),
    ],
}


def validate(typed: pd.DataFrame, spec: Table, reason: pd.Series) -> pd.Series:
    """Run the pandera contract on rows not yet quarantined; return updated reasons."""
    ok = reason.isna()
    schema = contract_schema(spec)
    try:
        schema.validate(typed.loc[ok, spec.names], lazy=True)
    except pa.errors.SchemaErrors as err:
        cases = err.failure_cases
        cases = cases[cases["index"].notna()]
        names = cases["check"].astype(str).replace({"not_nullable": "missing_required"})
        by_reason = {name: set(cases.loc[names == name, "index"].astype(int)) for name in names.unique()}
        for name in REASONS:  # priority order
            rows = by_reason.get(name)
            if rows:
                reason = _first(reason, pd.Series(typed.index.isin(list(rows)), index=typed.index), name)
    if spec.primary_key:
        alive = reason.isna()
        dup = typed[spec.primary_key].duplicated(keep=False) & alive
        dup = typed[spec.primary_key].isin(typed.loc[dup, spec.primary_key]) & alive
        reason = _first(reason, dup, "duplicate_key")
    return reason


# ----------------------------------------------------------------------------------------- map
def map_codes(typed: pd.DataFrame, spec: Table, codes: CodeLists, reason: pd.Series) -> tuple[pd.DataFrame, pd.Series]:
    """Add concept columns and convert lab values to canonical units."""
    if spec.name == "diagnoses":
        typed["concept"] = codes.concept_of_icd10(typed["icd10"])
    elif spec.name == "labs":
        typed["concept"] = codes.concept_of("loinc", typed["loinc"])
        typed["unit_raw"] = typed["unit"]
        canonical = codes.canonical_unit()
        has_unit = typed["concept"].isin(list(canonical))
        factor = codes.unit_factor(typed["concept"], typed["unit"].fillna(""))
        unknown = has_unit & typed["value"].notna() & factor.isna()
        reason = _first(reason, unknown, "unknown_unit")
        typed["value"] = typed["value"].where(~has_unit, typed["value"] * factor)
        typed["unit"] = typed["unit"].where(~has_unit, typed["concept"].map(canonical).astype(TEXT))
        lo, hi = codes.plausible_range(typed["loinc"])  # loinc.csv, canonical unit
        reason = _first(reason, (typed["value"] < lo) | (typed["value"] > hi), "implausible_value")
    elif spec.name == "medications":
        typed["concept"] = codes.concept_of("atc", typed["atc"])
        atc = codes.atc.set_index("code")
        typed["dex_factor"] = typed["atc"].map(atc["factor"].dropna()).astype("float64")
        expected = typed["atc"].map(atc["unit"].dropna()).astype(TEXT)
        bad_unit = typed["concept"].notna() & expected.notna() & (typed["dose_unit"] != expected)
        reason = _first(reason, bad_unit, "unknown_unit")
    elif spec.name == "respiratory_support":
        typed["concept"] = codes.concept_of("support", typed["support"], case_insensitive=True)
    return typed, reason


# ------------------------------------------------------------------------------------- arrow
def arrow_schema(spec: Table) -> pyarrow.Schema:
    """Explicit Arrow schema of a typed table."""
    kinds = {"id": pyarrow.int64(), "str": pyarrow.string(), "timestamp": pyarrow.timestamp("s"),
             "date": pyarrow.date32(), "float": pyarrow.float64(),
             "category": pyarrow.dictionary(pyarrow.int32(), pyarrow.string())}
    fields = [pyarrow.field(c.name, kinds[c.kind], nullable=c.nullable) for c in spec.columns]
    extra = {
        "diagnoses": [("concept", pyarrow.string())],
        "labs": [("concept", pyarrow.string()), ("unit_raw", pyarrow.string())],
        "medications": [("concept", pyarrow.string()), ("dex_factor", pyarrow.float64())],
        "respiratory_support": [("concept", pyarrow.string())],
    }.get(spec.name, [])
    return pyarrow.schema(fields + [pyarrow.field(n, t) for n, t in extra])


def to_arrow(typed: pd.DataFrame, spec: Table) -> pyarrow.Table:
    schema = arrow_schema(spec)
    df = typed[schema.names].copy()
    for col in spec.columns:
        if col.kind == "date":
            df[col.name] = df[col.name].dt.date
    return pyarrow.Table.from_pandas(df, schema=schema, preserve_index=False).replace_schema_metadata(None)


# ------------------------------------------------------------------------------------- ingest
def ingest(path: str | Path, table: str, codes: CodeLists,
           parent_keys: pd.Series | None = None, id_key: bytes | None = None) -> IngestResult:
    """Ingest one raw extract.

    Parameters
    ----------
    path : the raw file (CSV, CSV.gz or Parquet).
    table : contract table name.
    codes : the loaded code lists.
    parent_keys : ids of the parent table (patients for admissions, admissions for the
        others); rows whose key is not among them are quarantined as ``orphan_key``.
    id_key : with a key, every identifier is replaced by its keyed pseudonym
        (:mod:`hdank.pseudonymise`) before keys are checked, also in the quarantine table.
    """
    spec = CONTRACT[table]
    raw, extra = read_extract(path, spec)
    rows_read = len(raw)
    dup = raw.duplicated(subset=spec.names, keep="first")
    raw = raw.loc[~dup].reset_index(drop=True)
    typed, reason = parse(raw, spec, path)
    if id_key is not None:
        from hdank.pseudonymise import keyed_ids

        for col in (c.name for c in spec.columns if c.kind == "id"):
            typed[col] = keyed_ids(typed[col], id_key)
            raw[col] = typed[col].astype(TEXT)
    reason = validate(typed, spec, reason)
    typed, reason = map_codes(typed, spec, codes, reason)
    if parent_keys is not None and spec.parent:
        key = spec.parent[1]
        reason = _first(reason, ~typed[key].isin(parent_keys), "orphan_key")

    bad = reason.notna()
    quarantine = raw.loc[bad].copy()
    quarantine["reason"] = reason[bad].astype(TEXT)
    keep = typed.loc[~bad]
    sort = [spec.primary_key] if spec.primary_key else [spec.parent[1], spec.columns[1].name]
    keep = keep.sort_values(sort + ["row"], kind="stable").reset_index(drop=True)

    counts = {
        "file": str(path),
        "rows_read": int(rows_read),
        "duplicates_dropped": int(dup.sum()),
        "quarantined": {k: int(v) for k, v in quarantine["reason"].value_counts().sort_index().items()},
        "rows_typed": int(len(keep)),
        "extra_columns_ignored": extra,
    }
    if "concept" in keep.columns:
        counts["rows_unmapped_code"] = int(keep["concept"].isna().sum())
    if table == "labs":
        counts["unit_converted"] = int((keep["unit_raw"].fillna("") != keep["unit"].fillna("")).sum())
    return IngestResult(typed=keep, quarantine=quarantine.reset_index(drop=True), counts=counts)


def ingest_file(raw: str, table: str, codelists_dir: str, parent: str | None,
                typed_out: str, quarantine_out: str, counts_out: str, pseudonymise: bool = False) -> None:
    """File-level ingest of one table (called by the Snakemake adapter).

    With ``pseudonymise``, identifiers are replaced by keyed hashes (key from the
    environment, see :mod:`hdank.pseudonymise`).
    """
    import logging

    from hdank import codelists, io

    spec = CONTRACT[table]
    parent_keys = None
    if parent:
        parent_keys = pd.read_parquet(parent, columns=[spec.parent[1]])[spec.parent[1]]
    id_key = None
    if pseudonymise:
        from hdank.pseudonymise import key_from_env

        id_key = key_from_env()
    result = ingest(raw, table, codelists.load(codelists_dir), parent_keys, id_key)
    io.write_parquet(to_arrow(result.typed, spec), typed_out)
    io.write_parquet(result.quarantine.astype({c: TEXT for c in spec.names}), quarantine_out)
    io.write_json(result.counts, counts_out)
    logging.getLogger(__name__).info("%s: %s", table, result.counts)
