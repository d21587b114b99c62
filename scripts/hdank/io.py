"""Atomic, deterministic file output, and the data size of an input file (for memory requests).

Every output is written to a temporary name in the same folder and renamed, so an
interrupted job never leaves a half-written file under the final name.  Parquet files are
written without volatile metadata (no pandas index, fixed compression) so that the same
data give byte-identical files.
"""

from __future__ import annotations

import glob
import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq


@contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it to ``path`` on success."""
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    for stale in final.parent.glob(f".{glob.escape(final.name)}.*.tmp"):  # left by a killed write
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{final.name}.", suffix=".tmp", dir=final.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp creates 0600; give the usual file mode
        os.replace(tmp, final)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def arrow_table(df: pd.DataFrame, schema: pa.Schema | None = None) -> pa.Table:
    """Arrow table of ``df`` without the pandas index or pandas metadata."""
    table = pa.Table.from_pandas(df, schema=schema, preserve_index=False)
    return table.replace_schema_metadata(None)


def write_parquet(df: pd.DataFrame | pa.Table, path: str | os.PathLike,
                  schema: pa.Schema | None = None) -> None:
    """Write ``df`` to ``path`` atomically and deterministically."""
    table = df if isinstance(df, pa.Table) else arrow_table(df, schema)
    table = table.replace_schema_metadata(None)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", write_statistics=True,
                       store_schema=False)


def write_json(obj: Any, path: str | os.PathLike) -> None:
    """Write ``obj`` as sorted, indented JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def write_text(text: str, path: str | os.PathLike) -> None:
    """Write ``text`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalar
        return value.item()
    if isinstance(value, (pd.Timestamp,)):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def data_mb(path: str | os.PathLike) -> float:
    """Size in MB of the data a file holds once decompressed (what a job's memory grows with).

    CSV: the file size; gzip: the trailer's ISIZE (size mod 4 GiB), at least 5x the compressed
    size; Parquet: the row groups' uncompressed size.  A missing file raises FileNotFoundError
    (Snakemake then evaluates a resource that uses it once the file exists).
    """
    size = os.stat(path).st_size
    name = os.fspath(path)
    if name.endswith(".gz"):
        with open(path, "rb") as fh:
            fh.seek(-4, os.SEEK_END)
            size = max(int.from_bytes(fh.read(4), "little"), 5 * size)
    elif name.endswith(".parquet"):
        meta = pq.ParquetFile(path).metadata
        size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
    return size / 1e6
