"""Code lists: map source codes to study concepts (protocol section 2).

One CSV per vocabulary in the code-list folder, ``code,concept[,factor,unit]``.  A site adapts
the study by editing these files, not the code.  ICD-10 codes match by prefix on the code
without its dot (``E11`` matches ``E11.9`` and ``E119``); all other vocabularies match exactly
(support codes and PCR result texts case-insensitively).  ``loinc.csv`` may add
``plausible_min,plausible_max``: the range of a lab value in the canonical unit outside which
ingest quarantines it as ``implausible_value`` (empty = no limit).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hdank.errors import UserError

#: Text columns of extracts and code lists: Arrow-backed, so that ``.str`` methods on millions
#: of rows run vectorised in Arrow compute and hold half the memory of Python strings.
TEXT = pd.StringDtype("pyarrow")

FILES = ("icd10", "loinc", "units", "atc", "support", "pcr_results")


class CodeListError(UserError, ValueError):
    """A code-list file is missing or malformed."""


@dataclass(frozen=True)
class CodeLists:
    icd10: pd.DataFrame
    loinc: pd.DataFrame
    units: pd.DataFrame
    atc: pd.DataFrame
    support: pd.DataFrame
    pcr_results: pd.DataFrame

    def concept_of_icd10(self, codes: pd.Series) -> pd.Series:
        """Concept of each ICD-10 code by longest-prefix match; null when unmapped."""
        clean = codes.astype(TEXT).str.upper().str.replace(".", "", regex=False).str.strip()
        table = self.icd10.assign(key=self.icd10["code"].str.upper().str.replace(".", "", regex=False))
        out = pd.Series(pd.NA, index=codes.index, dtype=TEXT)
        # longest prefixes first so that a specific code wins over its chapter
        for length in sorted(table["key"].str.len().unique(), reverse=True):
            sub = table[table["key"].str.len() == length]
            mapping = dict(zip(sub["key"], sub["concept"]))
            hit = clean.str.slice(0, int(length)).map(mapping).astype(TEXT)
            out = out.fillna(hit)
        return out

    def concept_of(self, vocabulary: str, codes: pd.Series, *, case_insensitive: bool = False) -> pd.Series:
        """Concept of each code by exact match in ``vocabulary``; null when unmapped."""
        table: pd.DataFrame = getattr(self, vocabulary)
        keys = table["code"].str.strip()
        values = codes.astype(TEXT).str.strip()
        if case_insensitive:
            keys, values = keys.str.lower(), values.str.lower()
        return values.map(dict(zip(keys, table["concept"]))).astype(TEXT)

    def unit_factor(self, concept: pd.Series, unit: pd.Series) -> pd.Series:
        """Factor converting a value in ``unit`` to the concept's canonical unit; NaN if unknown."""
        key = concept.astype(TEXT) + "|" + unit.astype(TEXT).str.strip()
        table = self.units
        mapping = dict(zip(table["concept"] + "|" + table["unit"], table["factor"].astype(float)))
        return key.map(mapping).astype(float)

    def canonical_unit(self) -> dict[str, str]:
        """Canonical unit of each lab concept that has one."""
        rows = self.loinc.dropna(subset=["unit"])
        return dict(zip(rows["concept"], rows["unit"]))

    def plausible_range(self, loinc: pd.Series) -> tuple[pd.Series, pd.Series]:
        """Plausible (min, max) of each lab code's value in the canonical unit; NaN = no limit.

        From the optional ``plausible_min,plausible_max`` columns of ``loinc.csv``.
        """
        key = loinc.astype(TEXT).str.strip()
        table = self.loinc.assign(code=self.loinc["code"].str.strip())
        bounds = []
        for col in ("plausible_min", "plausible_max"):
            limits = pd.to_numeric(table[col], errors="coerce") if col in table.columns else pd.Series(dtype=float)
            bounds.append(key.map(dict(zip(table["code"], limits.astype(float)))).astype(float))
        return bounds[0], bounds[1]

    def codes_of(self, vocabulary: str, concept: str) -> list[str]:
        table: pd.DataFrame = getattr(self, vocabulary)
        return table.loc[table["concept"] == concept, "code"].tolist()


_REQUIRED = {
    "icd10": ["code", "concept"],
    "loinc": ["code", "concept", "unit"],
    "units": ["concept", "unit", "factor"],
    "atc": ["code", "concept", "factor", "unit"],
    "support": ["code", "concept"],
    "pcr_results": ["code", "concept"],
}


def load(directory: str | Path) -> CodeLists:
    """Read and check every code list in ``directory``."""
    directory = Path(directory)
    frames = {}
    for name in FILES:
        path = directory / f"{name}.csv"
        if not path.exists():
            raise CodeListError(f"{path}: code list missing (expected columns {','.join(_REQUIRED[name])})")
        df = pd.read_csv(path, dtype=TEXT, keep_default_na=False, na_values=[""])
        missing = [c for c in _REQUIRED[name] if c not in df.columns]
        if missing:
            raise CodeListError(f"{path}: column(s) {', '.join(missing)} missing; found {', '.join(df.columns)}")
        key = ["concept", "unit"] if name == "units" else ["code"]
        dup = df[df.duplicated(key, keep=False)]
        if len(dup):
            raise CodeListError(f"{path}: duplicate {'/'.join(key)} on lines {', '.join(str(i + 2) for i in dup.index[:5])}")
        for column in ("factor", "plausible_min", "plausible_max"):  # numbers; empty = none
            if column not in df.columns:
                continue
            number = pd.to_numeric(df[column], errors="coerce").astype("float64")  # NA -> NaN
            bad = df[column].notna() & ~np.isfinite(number)
            if bad.any():
                raise CodeListError(f"{path}: column {column} not a number on lines {', '.join(str(i + 2) for i in df.index[bad][:5])}")
            df[column] = number
        frames[name] = df
    return CodeLists(**frames)
