"""The whole workflow on a real one-node SLURM cluster equals the local run (tests/cluster/run_slurm.sh).

The script installs slurm-wlm and munge if needed, starts munged, slurmctld and slurmd on this
machine, runs the workflow with workflow/profiles/slurm, checks that every non-local job went
through sbatch, reruns the workflow locally and compares every result file by SHA-256. It needs
root; elsewhere the test is skipped, except under CI=true, where it must run.
"""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from conftest import IN_CI, ROOT, require_program

SCRIPT = ROOT / "tests" / "cluster" / "run_slurm.sh"
#: Scratch copies, SLURM logs and both Snakemake logs, kept for inspection (git-ignored; not
#: under pytest's tmp_path, which other pytest sessions on the machine rotate away).
WORKDIR = ROOT / "tests" / "artifacts" / "cluster"
#: Seconds for each of the two Snakemake runs inside the script, and for the whole test.
RUN_TIMEOUT = int(os.environ.get("RUN_SLURM_TIMEOUT", "1800"))


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true: {reason}")
    pytest.skip(reason)


@pytest.mark.slow
@pytest.mark.e2e
def test_workflow_on_slurm_equals_local_run():
    if os.geteuid() != 0:
        _unavailable("needs root: installs slurm-wlm/munge and starts the SLURM daemons")
    if not all(shutil.which(p) for p in ("slurmctld", "slurmd", "sbatch", "munged")):
        require_program("apt-get")  # the script installs them
    require_program("timeout")
    require_program("flock")

    shutil.rmtree(WORKDIR, ignore_errors=True)
    env = {**os.environ, "RUN_SLURM_WORKDIR": str(WORKDIR), "RUN_SLURM_TIMEOUT": str(RUN_TIMEOUT)}
    proc = subprocess.Popen(["bash", str(SCRIPT)], cwd=ROOT, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        out, err = proc.communicate(timeout=2 * RUN_TIMEOUT + 600)
    except subprocess.TimeoutExpired:
        # TERM, not KILL: the script's trap stops the daemons and removes /etc/slurm/slurm.conf.
        proc.terminate()
        out, err = proc.communicate(timeout=180)
        pytest.fail(f"{SCRIPT.name} timed out; logs in {WORKDIR}\n{out[-4000:]}\n{err[-6000:]}")
    print(out)
    assert proc.returncode == 0, (
        f"{SCRIPT.relative_to(ROOT)} failed ({proc.returncode}); logs in {WORKDIR}\n"
        f"{out[-4000:]}\n{err[-6000:]}"
    )
    assert "0 problems" in out
    assert "wall time  SLURM:" in out
