"""hdank.io.data_mb: the decompressed size that rule memory requests (workflow/rules/common.smk)
are computed from."""

import gzip

import numpy as np
import pandas as pd
import pytest

from hdank import io


def test_csv_is_its_file_size(tmp_path):
    path = tmp_path / "labs.csv"
    path.write_bytes(b"x" * 2_000_000)
    assert io.data_mb(path) == pytest.approx(2.0)


def test_gzip_is_its_uncompressed_size(tmp_path):
    """A well-compressed file counts by its trailer (3 MB), not its few compressed bytes."""
    path = tmp_path / "labs.csv.gz"
    path.write_bytes(gzip.compress(b"a,b\n" * 750_000))
    assert path.stat().st_size < 100_000
    assert io.data_mb(path) == pytest.approx(3.0)


def test_gzip_never_counts_below_five_times_its_file(tmp_path):
    """ISIZE is the size mod 4 GiB: a wrapped (or random) trailer still gives 5x the file."""
    path = tmp_path / "noise.csv.gz"
    data = gzip.compress(bytes(range(256)) * 4000)
    path.write_bytes(data[:-4] + (1).to_bytes(4, "little"))
    assert io.data_mb(path) == pytest.approx(5 * len(data) / 1e6)


def test_parquet_is_its_uncompressed_row_groups(tmp_path):
    """Encoded but uncompressed: 100,000 distinct float64 are at least 0.8 MB, though the
    compressed file is a third of that."""
    path = tmp_path / "t.parquet"
    io.write_parquet(pd.DataFrame({"v": np.arange(100_000) * 1.0}), path)
    assert path.stat().st_size < 0.3e6
    assert 0.8 <= io.data_mb(path) <= 1.1


def test_missing_file_raises_so_snakemake_waits_for_it(tmp_path):
    with pytest.raises(FileNotFoundError) as err:
        io.data_mb(str(tmp_path / "absent.parquet"))
    assert err.value.filename == str(tmp_path / "absent.parquet")
