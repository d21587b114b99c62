"""File-level survival stage: read the tables one analysis needs, run it, write its outputs."""

from __future__ import annotations

import logging

import pandas as pd

from hdank import io
from hdank.analyses import run_analysis


def analysis_files(name: str, tables: dict[str, str], settings: dict, estimate_out: str, km_out: str,
                   ph_out: str, **shared) -> None:
    """Run analysis ``name`` on the parquet ``tables`` (by role) and write its three tables."""
    frames = {role: pd.read_parquet(path) for role, path in tables.items()}
    row, km, ph = run_analysis(name, settings, **frames, **shared)
    io.write_parquet(pd.DataFrame([row]), estimate_out)
    io.write_parquet(km, km_out)
    io.write_parquet(ph, ph_out)
    logging.getLogger(__name__).info("%s: %s", name, row)
