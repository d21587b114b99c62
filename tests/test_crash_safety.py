"""Crash safety: a run killed (SIGKILL to the whole process group) in the middle of its largest
job, then resumed, ends with the same outputs as an uninterrupted run.

The largest job was picked by measurement: in the benchmark files of default runs
``estimate_survival[clone_censor_weight]`` (200 bootstrap replicates in 2 processes) takes 3-5 s wall
and about 5 CPU s, every other job at most 2 CPU s (wall times of parallel jobs overlap, so the
largest job is judged on CPU time); the run is killed 0.5 s after that job opened its log.  The test starts the crash run at once (in parallel with the uninterrupted run
that another test may be building) and asserts at the end, on the uninterrupted run's benchmark
files, that the killed job is still the largest.  After the kill Snakemake's lock is stale; the first rerun refuses with
a message that says to run ``snakemake --unlock`` (asserted: that is what the user sees), then
the rerun (the default profile has ``rerun-incomplete``) completes.  Both runs set
``SOURCE_DATE_EPOCH``; the report is compared without its run-time table (see
tests/test_determinism.py).
"""

import os
import signal
import subprocess
import time

import pytest

from shared_runs import (SOURCE_DATE_EPOCH, benchmark_seconds, clean_run, environment, output_hashes,
                         temporary_files)
from workflow_runner import SNAKEMAKE, Workflow

pytestmark = pytest.mark.e2e


#: The largest job, as its benchmark and log are named (results/benchmarks/<job>.tsv, logs/<job>.log).
LARGEST_JOB = "estimate_survival/clone_censor_weight"


def test_killed_run_resumes_to_identical_outputs(tmp_path_factory, tmp_path):
    job = LARGEST_JOB
    flow = Workflow.copy(tmp_path / "crash")
    env = {**os.environ, "PYTHONPATH": str(flow.root / "scripts"), "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH}
    log, bench = flow.root / "logs" / f"{job}.log", flow.root / "results/benchmarks" / f"{job}.tsv"
    with open(tmp_path / "killed_run.txt", "w") as out:
        proc = subprocess.Popen([SNAKEMAKE, "--cores", "2"], cwd=flow.root, env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
        try:
            deadline = time.monotonic() + 900
            while not log.exists():  # the job's script has started and opened its log
                assert proc.poll() is None, (tmp_path / "killed_run.txt").read_text()[-3000:]
                assert time.monotonic() < deadline, "the largest job never started"
                time.sleep(0.1)
            time.sleep(0.5)
            assert proc.poll() is None and not bench.exists(), "the job should still be running"
        finally:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert not bench.exists(), f"{job} finished before the kill"

    # what the user sees on the next run: a stale lock, and what to do about it
    locked = flow.snakemake(check=False)
    assert locked.returncode != 0
    assert "--unlock" in locked.stdout + locked.stderr, locked.stderr[-4000:]
    flow.snakemake("--unlock")
    with environment(SOURCE_DATE_EPOCH=SOURCE_DATE_EPOCH):
        resumed = flow.snakemake(timeout=1500)
    assert bench.exists(), f"{job} was not rerun:\n{resumed.stdout[-2000:]}"

    clean = clean_run(tmp_path_factory, "clean-a")
    cpu = benchmark_seconds(clean, "cpu_time")  # CPU, not wall: parallel jobs' waits inflate wall time
    assert max(cpu, key=cpu.get) == job and cpu[job] >= 2, f"update LARGEST_JOB: {cpu}"

    assert temporary_files(flow.root) == []
    ours, theirs = output_hashes(flow.root), output_hashes(clean)
    assert sorted(ours) == sorted(theirs)
    assert [rel for rel in ours if ours[rel] != theirs[rel]] == []
    html = [(r / "results/report/report.html").read_text() for r in (flow.root, clean)]
    assert html[0] == html[1]
