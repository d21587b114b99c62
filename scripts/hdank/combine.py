"""Concatenate per-job parquet tables in a fixed order."""

from __future__ import annotations

import pandas as pd

from hdank import io


def concat_parquet(paths: list[str], out: str) -> None:
    """Rows of every file, in the order given, as one table."""
    frames = [pd.read_parquet(p) for p in paths]
    frames = [f for f in frames if len(f)]
    table = pd.concat(frames, ignore_index=True) if frames else pd.read_parquet(paths[0])
    io.write_parquet(table, out)


def combine_survival(estimates: list[str], km: list[str], ph: list[str],
                     estimates_out: str, km_out: str, ph_out: str) -> None:
    concat_parquet(estimates, estimates_out)
    concat_parquet(km, km_out)
    concat_parquet(ph, ph_out)
