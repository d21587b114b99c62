"""The conda environment of the rules pins exactly the locked stack."""

from pathlib import Path

from hdank.conda_env import conda_env

ROOT = Path(__file__).resolve().parents[1]


def test_conda_env_matches_the_lock():
    expected = conda_env((ROOT / "requirements.lock").read_text())
    assert (ROOT / "workflow/envs/hdank.yaml").read_text() == expected, "run `make lock`"


def test_lock_pins_every_package_exactly():
    pins = [l for l in (ROOT / "requirements.lock").read_text().splitlines() if l and not l.startswith("#")]
    assert pins and all("==" in p for p in pins)
    names = {p.split("==")[0].lower() for p in pins}
    assert {"snakemake", "pandas", "pyarrow", "lifelines", "statsmodels", "jinja2", "pandera", "matplotlib"} <= names
