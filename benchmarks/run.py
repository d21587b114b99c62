"""Benchmark of the whole workflow: time, CPU and memory per stage at several sizes.

    .venv/bin/python benchmarks/run.py [--sizes 2000 100000 1000000] [--cores 2]
        [--bootstrap 200] [--default-run-cores 4] [--profile JOB ...] [--keep]

For each size ``n`` (admissions simulated by the workflow's own ``simulate_extracts`` rule):

1. copies ``Snakefile workflow scripts config resources`` into a scratch folder (never runs
   inside the repository), sets ``synthetic.n_admissions = n`` and the clone-censor-weight
   bootstrap count (``--bootstrap``, default as in config/config.yaml), and runs
   ``snakemake --cores C`` cold, with ``PYTHONPATH=<scratch>/scripts`` so the jobs import the
   scratch snapshot of the library (others edit the repository meanwhile);
2. watches every job process (0.5 s polling): elapsed time, CPU, peak RSS (``VmHWM`` of the
   job's process plus its children).  A job that runs longer than ``--stage-timeout`` (1200 s)
   or holds more than ``--mem-limit-gb`` (16) -- or when the jobs together hold more than
   ``--total-mem-limit-gb`` (18) or less than 2 GiB is left on the (shared) machine, the
   largest -- is stopped (that job only: the run goes on with ``--keep-going``, so every job
   not downstream of it is still measured), and it is profiled with cProfile (its own
   generated script re-run in-process, cut off after ``--profile-seconds`` or at the memory
   limit);
3. reads Snakemake's benchmark TSV of every job (``results/benchmarks/**.tsv``: ``s``,
   ``max_rss``, ``cpu_time`` ...), the jobs' inputs and outputs (``snakemake --dry-run
   --forceall``) and their row counts (``pyarrow.parquet.ParquetFile(...).metadata.num_rows``;
   raw extracts: ``rows_read`` of the ingest counts);
4. times the baselines: a bare ``pyarrow.csv.read_csv`` + ``pyarrow.parquet.write_table`` of
   the same extracts (the floor of ingest, one process per table as in
   ``benchmarks/ingest.py``), ``snakemake --dry-run`` of the finished workflow (the floor of a
   no-op rerun) and a real no-op rerun ``snakemake --cores C`` (median of ``--noop-repeat``);
   If the stopped job is a survival analysis, the workflow is then finished with that
   analysis' outputs copied from the largest smaller size of the same invocation (stand-ins,
   ``--no-stand-ins`` to skip), only to time ``combine_survival``/``render_report`` and the
   no-op rerun; those rows are marked "after stand-in";
5. profiles the jobs named with ``--profile`` (e.g. ``build_cohort``,
   ``estimate_survival/clone_censor_weight``, ``ingest_table/labs``).

With 2,000 in the sizes, the default 2,000-admission workflow is also run cold with
``--default-run-cores`` (4) in a fresh copy (target < 40 s).  Printed: one table per size
(wall s and CPU s from the TSV, CPU and peak RSS from the monitor, max_rss from the TSV,
rows in/out), totals, growth exponents ``log(t2/t1)/log(n2/n1)`` between sizes next to the
``n log n`` exponent, baselines, targets.  Snakemake samples ``max_rss``/``cpu_time`` every
0.5 s for a job's first 15 s and every 30 s after, so for long jobs the monitor's columns
are the reliable ones.  Load average is printed next to every timing; all results also go to
``benchmarks/out/run-<time>.json``.

Targets (2 cores, 24 GB): 1,000,000 admissions under 10 min, every job under 8 GB; every
stage at most n log n; 2,000 cold under 40 s with 4 cores; no-op rerun within 1.5x of the
dry-run.
"""

from __future__ import annotations

import argparse
import ast
import gzip
import json
import math
import os
import pickle
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
import ingest as ingest_bench  # noqa: E402  (benchmarks/ingest.py)

SNAKEMAKE = str(Path(sys.executable).with_name("snakemake"))
COPY = ["Snakefile", "profiles", "workflow", "scripts", "config", "resources"]
TARGETS = {"total_1m_s": 600.0, "job_mem_mib": 8 * 1024, "cold_2k_s": 40.0, "noop_ratio": 1.5}
MIN_AVAILABLE_MIB = 2048  # stop before the machine (shared with others) runs out of memory
TSV_COLUMNS = ["s", "h:m:s", "max_rss", "max_vms", "max_uss", "max_pss", "io_in", "io_out",
               "mean_load", "cpu_time"]


def load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f}/{five:.2f}"


def nlogn_exponent(n1: float, n2: float) -> float:
    """Exponent that n log n growth gives between n1 and n2."""
    return math.log((n2 * math.log(n2)) / (n1 * math.log(n1))) / math.log(n2 / n1)


# ------------------------------------------------------------------------------ scratch copy
def make_scratch(dest: Path, n: int, bootstrap: int) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for name in COPY:
        src = ROOT / name
        if src.is_symlink():  # profiles -> workflow/profiles (the default profile, as for users)
            os.symlink(os.readlink(src), dest / name)
        elif src.is_dir():
            shutil.copytree(src, dest / name, ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
        else:
            shutil.copy2(src, dest / name)
    path = dest / "config" / "config.yaml"
    cfg = yaml.safe_load(path.read_text())
    cfg["synthetic"]["n_admissions"] = int(n)
    cfg["survival"]["analyses"]["clone_censor_weight"]["bootstrap"] = int(bootstrap)
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return dest


def scratch_env(root: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(root / "scripts"), "PYTHONDONTWRITEBYTECODE": "1"}


# ----------------------------------------------------------------------------- job monitor
def job_of_script(path: str) -> tuple[str, str] | None:
    """(job name, rule) of a Snakemake-generated script, from the pickled object in its preamble."""
    try:
        with open(path) as fh:
            fh.readline()
            line = fh.readline()
        for node in ast.walk(ast.parse(line)):
            if isinstance(node, ast.Call) and getattr(node.func, "attr", "") == "loads":
                obj = pickle.loads(node.args[0].value)
                wc = [str(v) for _, v in obj.wildcards.items()]
                return "/".join([obj.rule, *wc]), obj.rule
    except (OSError, SyntaxError, pickle.UnpicklingError, AttributeError, ImportError, IndexError):
        return None
    return None


def vm_hwm_mib(pid: int) -> float:
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


@dataclass
class JobProc:
    name: str
    rule: str
    pid: int
    script: str
    started: float
    elapsed: float = 0.0
    cpu: float = 0.0
    peak_mib: float = 0.0
    rss_mib: float = 0.0
    done: bool = False


class Monitor:
    """Polls the process tree under Snakemake; one JobProc per job script process."""

    def __init__(self, root_pid: int):
        self.root = psutil.Process(root_pid)
        self.jobs: dict[int, JobProc] = {}
        self.ignored: set[int] = set()

    def poll(self) -> None:
        try:
            procs = self.root.children(recursive=True)
        except psutil.Error:
            return
        alive = set()
        for p in procs:
            if p.pid in self.ignored:
                continue
            if p.pid not in self.jobs:
                try:
                    script = next((a for a in p.cmdline() if "/.snakemake/scripts/" in a and a.endswith(".py")), None)
                    created = p.create_time()
                    # a job's worker processes (forked, same command line) belong to the job
                    forked = script is not None and any(a.pid in self.jobs for a in p.parents())
                except psutil.Error:
                    continue
                if forked:
                    self.ignored.add(p.pid)
                    continue
                ident = job_of_script(script) if script else None
                if ident is None:
                    if script is None:
                        self.ignored.add(p.pid)
                    continue
                self.jobs[p.pid] = JobProc(ident[0], ident[1], p.pid, script, created)
            job = self.jobs[p.pid]
            alive.add(p.pid)
            try:
                with p.oneshot():
                    t = p.cpu_times()
                    rss = p.memory_info().rss / 2**20
                kids = p.children(recursive=True)
                kid_rss = sum(k.memory_info().rss for k in kids) / 2**20
                kid_cpu = sum(sum(k.cpu_times()[:2]) for k in kids)
            except psutil.Error:
                continue
            job.elapsed = time.time() - job.started
            job.cpu = max(job.cpu, t.user + t.system + t.children_user + t.children_system + kid_cpu)
            job.rss_mib = rss + kid_rss
            job.peak_mib = max(job.peak_mib, vm_hwm_mib(p.pid) + kid_rss, job.rss_mib)
        for pid, job in self.jobs.items():
            if pid not in alive:
                job.done = True

    def running(self) -> list[JobProc]:
        return [j for j in self.jobs.values() if not j.done]


def kill_job(job: JobProc) -> None:
    """Stop one job of our Snakemake run (its process and children, by pid)."""
    try:
        p = psutil.Process(job.pid)
        procs = p.children(recursive=True) + [p]
    except psutil.Error:
        return
    for q in procs:
        try:
            q.kill()
        except psutil.Error:
            pass


def stopped_jobs(run) -> list[dict]:
    s = run.stopped if hasattr(run, "stopped") else run.get("stopped")
    if not s:
        return []
    return s if isinstance(s, list) else [s]


def kill_group(proc: subprocess.Popen, monitor: Monitor | None) -> None:
    """End the Snakemake run we started: its process group, then any job left (by pid)."""
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.time() + 15
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    if monitor:
        for job in monitor.jobs.values():
            try:
                psutil.Process(job.pid).kill()
            except psutil.Error:
                pass


@dataclass
class RunResult:
    ok: bool
    wall: float
    cpu: float
    maxrss_mib: float
    returncode: int
    load_before: str
    load_after: str
    stopped: list = field(default_factory=list)
    monitor: dict = field(default_factory=dict)
    stderr_tail: str = ""


def run_snakemake(root: Path, args: list[str], stage_timeout: float | None = None,
                  mem_limit_mib: float | None = None, log_name: str = "run", progress: bool = False,
                  total_limit_mib: float | None = None) -> RunResult:
    """Run snakemake in ``root``; watch its jobs; stop it if one exceeds the limits."""
    logs = root / "bench_logs"
    logs.mkdir(exist_ok=True)
    out, err = open(logs / f"{log_name}.out", "wb"), open(logs / f"{log_name}.err", "wb")
    before = load()
    t0 = time.perf_counter()
    proc = subprocess.Popen([SNAKEMAKE, *args], cwd=root, env=scratch_env(root), stdout=out, stderr=err,
                            start_new_session=True)
    monitor = Monitor(proc.pid) if stage_timeout or mem_limit_mib else None
    stopped: list[dict] = []
    ru = None
    last_report = time.time()
    while True:
        pid, status, ru = os.wait4(proc.pid, os.WNOHANG)
        if pid:
            proc.returncode = os.waitstatus_to_exitcode(status)
            break
        if monitor:
            monitor.poll()
            running = monitor.running()
            together = sum(j.rss_mib for j in running)
            avail = psutil.virtual_memory().available / 2**20
            for job in sorted(running, key=lambda j: -j.rss_mib):
                reason = None
                if stage_timeout and job.elapsed > stage_timeout:
                    reason = f"ran longer than {stage_timeout:.0f} s"
                elif mem_limit_mib and job.rss_mib > mem_limit_mib:
                    reason = f"held more than {mem_limit_mib / 1024:.1f} GiB"
                elif total_limit_mib and (together > total_limit_mib or avail < MIN_AVAILABLE_MIB):
                    reason = (f"was the largest of the running jobs ({together / 1024:.1f} GiB together, "
                              f"{avail / 1024:.1f} GiB left on the machine; limit {total_limit_mib / 1024:.1f} GiB "
                              f"together, {MIN_AVAILABLE_MIB / 1024:.0f} GiB free)")
                if reason:
                    info = {"job": job.name, "reason": reason, "elapsed_s": round(job.elapsed, 1),
                            "cpu_s": round(job.cpu, 1), "peak_mib": round(job.peak_mib),
                            "rss_mib": round(job.rss_mib), "script": job.script, "load": load(),
                            "others_running": [j.name for j in running if j is not job]}
                    stopped.append(info)
                    print(f"    STOPPING job {job.name}: it {reason} (elapsed {info['elapsed_s']} s, "
                          f"RSS {info['rss_mib']} MiB); the other jobs go on (--keep-going)", flush=True)
                    kill_job(job)
                    job.done = True
                    break  # one at a time: memory is freed before the next check
            if progress and time.time() - last_report > 60:
                last_report = time.time()
                run = ", ".join(f"{j.name} {j.elapsed:.0f}s {j.rss_mib:.0f}MiB" for j in monitor.running())
                print(f"    [{time.perf_counter() - t0:6.0f} s, load {load()}] running: {run or '-'}", flush=True)
        time.sleep(0.5)
    wall = time.perf_counter() - t0
    out.close(), err.close()
    tail = (logs / f"{log_name}.err").read_text(errors="replace")[-3000:]
    return RunResult(ok=proc.returncode == 0 and not stopped, wall=wall,
                     cpu=ru.ru_utime + ru.ru_stime, maxrss_mib=ru.ru_maxrss / 1024,
                     returncode=proc.returncode, load_before=before, load_after=load(), stopped=stopped,
                     monitor={j.name: asdict(j) for j in (monitor.jobs.values() if monitor else [])},
                     stderr_tail=tail if proc.returncode else "")


# ------------------------------------------------------------------------------- job table
_BLOCK = re.compile(r"^\s*(?:local)?(?:rule|checkpoint) (\w+):\s*$")


def planned_jobs(root: Path) -> dict[str, dict]:
    """Inputs/outputs of every job (``--dry-run --forceall``), keyed by the benchmark's job name."""
    proc = subprocess.run([SNAKEMAKE, "--cores", "1", "--dry-run", "--forceall"], cwd=root,
                          env=scratch_env(root), capture_output=True, text=True)
    jobs, cur = {}, None
    for line in (proc.stdout + "\n" + proc.stderr).splitlines():
        m = _BLOCK.match(line)
        if m:
            cur = {"rule": m.group(1), "input": [], "output": [], "benchmark": None}
            continue
        if cur is None:
            continue
        s = line.strip()
        for key in ("input", "output"):
            if s.startswith(f"{key}: "):
                cur[key] = [x.strip() for x in s[len(key) + 2:].split(",") if x.strip()]
        if s.startswith("benchmark: "):
            cur["benchmark"] = s[len("benchmark: "):].strip()
            name = cur["benchmark"].removeprefix("results/benchmarks/").removesuffix(".tsv")
            jobs[name] = cur
    return jobs


def read_tsv(path: Path) -> dict | None:
    if not path.exists():
        return None
    lines = path.read_text().splitlines()
    if len(lines) < 2:
        return None
    head, vals = lines[0].split("\t"), lines[-1].split("\t")
    out = {}
    for k, v in zip(head, vals):
        try:
            out[k] = float(v)
        except ValueError:
            out[k] = v
    return out


def raw_rows(root: Path, path: str) -> int | None:
    """Data rows of a raw extract: ingest's rows_read if present, else count the lines."""
    table = Path(path).name.split(".")[0]
    counts = root / "results" / "typed" / "counts" / f"{table}.json"
    if counts.exists():
        return int(json.loads(counts.read_text())["rows_read"])
    p = root / path
    if not p.exists():
        return None
    with (gzip.open(p, "rb") if p.name.endswith(".gz") else open(p, "rb")) as fh:
        return max(sum(1 for _ in fh) - 1, 0)


def file_rows(root: Path, path: str) -> int | None:
    import pyarrow.parquet as pq
    p = root / path
    if path.endswith(".parquet"):
        return pq.ParquetFile(p).metadata.num_rows if p.exists() else None
    if "/synthetic/extracts/" in path:
        return raw_rows(root, path)
    return None


def job_rows(root: Path, job: dict) -> tuple[int | None, int | None]:
    inputs = job["input"]
    if job["rule"] == "ingest_table":
        inputs = inputs[:1]  # the raw extract (the parent table is a key lookup)
    def total(paths):
        vals = [file_rows(root, p) for p in paths]
        vals = [v for v in vals if v is not None]
        return sum(vals) if vals else None
    return total(inputs), total(job["output"])


def collect(root: Path, n: int, passes: list[dict]) -> tuple[list[dict], list[dict]]:
    """One row per job (TSV columns, monitor columns, rows in/out) and the jobs left stopped.

    ``passes``: ``[{"label", "run"}]`` in order (cold run, serial retry, stand-in completion);
    a job's monitor data and label come from the last pass that ran it.
    """
    planned = planned_jobs(root)
    stops = {}
    for p in passes:
        for x in stopped_jobs(p["run"]):
            stops[x["job"]] = x
    rows, final_stops = [], []
    for name, job in planned.items():
        tsv = read_tsv(root / job["benchmark"])
        label, mon = "ok", {}
        for p in reversed(passes):
            m = p["run"]["monitor"].get(name)
            if m:
                label, mon = p["label"], m
                break
        stopped = name in stops and tsv is None
        if stopped:
            final_stops.append(stops[name])
        r_in, r_out = job_rows(root, job) if tsv else (None, None)
        rows.append({"job": name, "rule": job["rule"], "n": n, "tsv": tsv,
                     "mon_cpu": mon.get("cpu"), "mon_peak_mib": mon.get("peak_mib"),
                     "mon_elapsed": mon.get("elapsed"), "rows_in": r_in, "rows_out": r_out,
                     "status": "STOPPED" if stopped else ("not run" if not tsv else label)})
    order = ["simulate_extracts", "ingest_table", "summarise_ingest", "build_cohort", "match_cohort",
             "match_cohort_complete_case", "estimate_survival", "combine_survival", "render_report"]
    rows.sort(key=lambda r: (order.index(r["rule"]) if r["rule"] in order else 99, r["job"]))
    return rows, final_stops


# -------------------------------------------------------------------- completion pass
def _scheduled(root: Path) -> list[str]:
    p = subprocess.run([SNAKEMAKE, "--cores", "1", "--dry-run"], cwd=root, env=scratch_env(root),
                       capture_output=True, text=True)
    jobs, cur = [], None
    for line in (p.stdout + p.stderr).splitlines():
        m = _BLOCK.match(line)
        if m:
            cur = m.group(1)
            jobs.append(cur)
        elif cur and line.strip().startswith("wildcards: "):
            jobs[-1] = cur + "/" + "/".join(v.split("=", 1)[1] for v in line.strip()[11:].split(", "))
    return [j for j in jobs if j != "all"]


def complete_with_stand_ins(root: Path, n: int, stopped: list[str], results: dict, cores: int) -> dict:
    """Finish the workflow after stopped or failed analyses, with their outputs from a smaller size.

    Only for timing what is downstream (combine_survival, render_report) and the no-op rerun;
    the report's numbers of those analyses are then those of the smaller run.
    """
    if not all(j.startswith("estimate_survival/") for j in stopped):
        return {"ok": False, "note": f"not attempted: {stopped} are not survival analyses"}
    copied = []
    for job in stopped:
        analysis = job.split("/", 1)[1]
        rel = Path("results/survival/analyses") / analysis
        donor = next((Path(results[m]["root"]) for m in sorted(results, reverse=True)
                      if m < n and (Path(results[m]["root"]) / rel / "estimate.parquet").exists()), None)
        if donor is None:
            return {"ok": False, "note": f"not attempted: no smaller size finished {job}"}
        (root / rel).mkdir(parents=True, exist_ok=True)
        for f in sorted((donor / rel).glob("*.parquet")):
            shutil.copy2(f, root / rel / f.name)
            os.utime(root / rel / f.name)
            copied.append(str(rel / f.name))
        copied_from = str(donor)
    planned = _scheduled(root)
    if any(j in planned for j in stopped):
        subprocess.run([SNAKEMAKE, "--cores", "1", "--touch", *copied], cwd=root, env=scratch_env(root),
                       capture_output=True, text=True)
        planned = _scheduled(root)
        if any(j in planned for j in stopped):
            return {"ok": False, "note": f"Snakemake would rerun {stopped} even with stand-in outputs",
                    "stand_ins": stopped}
    r = run_snakemake(root, ["--cores", str(cores), "--keep-going", "--skip-script-cleanup"],
                      stage_timeout=1200, mem_limit_mib=16 * 1024, log_name="completion",
                      total_limit_mib=18 * 1024)
    return {"ok": r.ok, "run": asdict(r), "stand_ins": stopped, "copied_from": copied_from,
            "planned": planned,
            "note": f"outputs of {', '.join(stopped)} copied from {copied_from} (stand-ins); then ran "
                    f"{', '.join(planned) or 'nothing'}"}


def print_completion(c: dict) -> None:
    print(f"  completion pass: {c.get('note')}")
    if c.get("run"):
        r = c["run"]
        print(f"    {r['wall']:.1f} s wall, {r['cpu']:.1f} s CPU, ok={r['ok']} "
              f"(load {r['load_before']} -> {r['load_after']}); its jobs are marked 'after stand-in' above")


# ------------------------------------------------------------------------------- baselines
def time_command(root: Path, args: list[str], repeat: int) -> dict:
    walls, nothing = [], []
    for _ in range(repeat):
        before = load()
        t0 = time.perf_counter()
        p = subprocess.run([SNAKEMAKE, *args], cwd=root, env=scratch_env(root), capture_output=True, text=True)
        walls.append(time.perf_counter() - t0)
        text = p.stdout + p.stderr
        nothing.append("Nothing to be done" in text)
        if p.returncode != 0:
            raise RuntimeError(f"snakemake {' '.join(args)} failed:\n{text[-3000:]}")
    return {"median": statistics.median(walls), "min": min(walls), "runs": walls,
            "nothing_to_be_done": all(nothing), "load": load(), "load_before": before}


def bare_baseline(root: Path) -> dict[str, dict]:
    extracts = root / "results" / "synthetic" / "extracts"
    with tempfile.TemporaryDirectory(prefix="hdank-bare-") as tmp:
        return ingest_bench.run_bare(extracts, Path(tmp))


# ------------------------------------------------------------------------------- profiling
PROFILE_CHILD = r"""
import cProfile, json, runpy, signal, sys, time
class Cut(BaseException):
    pass
def stop(*_):
    raise Cut()
script, out, seconds = sys.argv[1], sys.argv[2], int(sys.argv[3])
signal.signal(signal.SIGALRM, stop)
signal.alarm(seconds)
prof = cProfile.Profile()
t0 = time.perf_counter()
status = "completed"
prof.enable()
try:
    runpy.run_path(script, run_name="__main__")
except Cut:
    status = f"cut off after {seconds} s"
except SystemExit as e:
    status = f"exit {e.code}"
finally:
    prof.disable()
    signal.alarm(0)
prof.dump_stats(out)
print(json.dumps({"seconds": time.perf_counter() - t0, "status": status}), flush=True)
"""


def profile_job(root: Path, script: str, seconds: int, mem_limit_mib: float, top: int = 14) -> dict:
    """Re-run a job's generated script under cProfile (time- and memory-limited); top functions."""
    import pstats
    out = root / "bench_logs" / (Path(script).stem + ".prof")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", PROFILE_CHILD, script, str(out), str(seconds)], cwd=root,
                            env=scratch_env(root), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    p = psutil.Process(proc.pid)
    peak, signalled, hard = 0.0, False, time.time() + seconds + 300
    while proc.poll() is None:
        try:
            rss = p.memory_info().rss / 2**20
            peak = max(peak, vm_hwm_mib(proc.pid), rss)
        except psutil.Error:
            rss = 0
        low = psutil.virtual_memory().available < MIN_AVAILABLE_MIB * 2**20
        if (rss > mem_limit_mib or low) and not signalled:
            os.kill(proc.pid, signal.SIGALRM)  # the child stops and writes its profile
            signalled = True
        if time.time() > hard:
            proc.kill()
        time.sleep(0.5)
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    info = {"wall": wall, "peak_mib": peak, "load": load(), "status": "?", "tottime": [], "cumulative": []}
    try:
        info.update(json.loads(stdout.decode().strip().splitlines()[-1]))
    except (ValueError, IndexError):
        info["status"] = f"no profile (rc {proc.returncode}): {stderr.decode()[-500:]}"
        return info
    if signalled:
        info["status"] = f"stopped at {mem_limit_mib / 1024:.1f} GiB (or < 2 GiB free)"
    st = pstats.Stats(str(out))
    entries = [(k, v) for k, v in st.stats.items()]

    def label(k):
        file, line, fn = k
        if file == "~":
            return fn
        parts = Path(file).parts
        short = "/".join(parts[parts.index("site-packages") + 1:] if "site-packages" in parts else parts[-2:])
        return f"{short}:{line}({fn})"

    by_tot = sorted(entries, key=lambda kv: kv[1][2], reverse=True)[:top]
    info["tottime"] = [(label(k), v[1], round(v[2], 2), round(v[3], 2)) for k, v in by_tot]
    own = [kv for kv in entries if "/hdank/" in kv[0][0]]
    by_cum = sorted(own, key=lambda kv: kv[1][3], reverse=True)[:top]
    info["cumulative"] = [(label(k), v[1], round(v[2], 2), round(v[3], 2)) for k, v in by_cum]
    info["prof_file"] = str(out)
    return info


def print_profile(job: str, n: int, info: dict) -> None:
    print(f"\n  cProfile of {job} at n={n:,}: {info['status']}, wall {info['wall']:.1f} s under the profiler, "
          f"peak {info['peak_mib']:.0f} MiB, load {info['load']}")
    for title, key in (("self time (tottime)", "tottime"), ("hdank functions by cumulative time", "cumulative")):
        print(f"    {title}:")
        print(f"      {'function':<78} {'calls':>9} {'tottime':>8} {'cumtime':>8}")
        for lab, calls, tot, cum in info[key]:
            print(f"      {lab[:78]:<78} {calls:>9} {tot:>8.2f} {cum:>8.2f}")


# --------------------------------------------------------------------------------- printing
def fmt(x, spec=",.0f", none="-"):
    return none if x is None else format(x, spec)


def print_size_table(n: int, rows: list[dict], run: RunResult, cores: int, bootstrap: int,
                     passes: list[dict] | None = None) -> None:
    print(f"\n### {n:,} admissions  (snakemake --cores {cores}; CCW bootstrap {bootstrap}; "
          f"load before {run.load_before}, after {run.load_after})")
    head = (f"| {'job':<50} | {'wall s':>7} | {'CPU s':>7} | {'CPU s mon':>9} | {'peak MiB':>8} | "
            f"{'max_rss':>8} | {'load':>5} | {'rows in':>11} | {'rows out':>11} |")
    print(head)
    print("|" + "|".join("-" * len(c) for c in head.split("|")[1:-1]) + "|")
    for r in rows:
        t = r["tsv"] or {}
        wall = t.get("s")
        if r["status"] == "STOPPED":
            wall = r["mon_elapsed"]
        name = r["job"] + ("" if r["status"] == "ok" else f" ({r['status']})")
        print(f"| {name:<50} | {fmt(wall, '7.1f'):>7} | {fmt(t.get('cpu_time'), '7.1f'):>7} | "
              f"{fmt(r['mon_cpu'], '9.1f'):>9} | {fmt(r['mon_peak_mib'], '8.0f'):>8} | "
              f"{fmt(t.get('max_rss'), '8.0f'):>8} | {fmt(t.get('mean_load'), '5.0f'):>5} | "
              f"{fmt(r['rows_in']):>11} | {fmt(r['rows_out']):>11} |")
    tsvs = [r["tsv"] for r in rows if r["tsv"]]
    sum_s = sum(t["s"] for t in tsvs)
    sum_cpu = sum(t["cpu_time"] for t in tsvs if isinstance(t.get("cpu_time"), float))
    peaks = [r["mon_peak_mib"] for r in rows if r["mon_peak_mib"]]
    print(f"| {'TOTAL workflow (wall = cold run)':<50} | {run.wall:>7.1f} | {run.cpu:>7.1f} | "
          f"{'':>9} | {fmt(max(peaks) if peaks else None, '8.0f'):>8} | "
          f"{fmt(max(t['max_rss'] for t in tsvs) if tsvs else None, '8.0f'):>8} | {'':>5} | {'':>11} | {'':>11} |")
    print(f"  sum of job wall {sum_s:.1f} s, sum of job CPU (TSV) {sum_cpu:.1f} s; total CPU = snakemake "
          f"and every job (rusage); peak = largest single job (VmHWM); max_rss = Snakemake's sampled RSS; "
          f"load = the TSV's mean_load (% of one core)")
    if passes and len(passes) > 1:
        parts = [f"{p['label'] if p['label'] != 'ok' else 'cold run'} {p['run']['wall']:.1f} s" for p in passes]
        print(f"  passes: {' + '.join(parts)} = {sum(p['run']['wall'] for p in passes):.1f} s wall, "
              f"{sum(p['run']['cpu'] for p in passes):.1f} s CPU")
    for s in stopped_jobs(run):
        print(f"  STOPPED: {s['job']} {s['reason']}: elapsed {s['elapsed_s']} s, CPU {s['cpu_s']} s, "
              f"RSS {s['rss_mib']} MiB (peak {s['peak_mib']} MiB), load {s['load']}; "
              f"also running: {', '.join(s['others_running']) or 'nothing'}; jobs downstream of it not run")
    for r in rows:
        if r["status"] == "not run" and r["mon_elapsed"] is not None:
            print(f"  FAILED: {r['job']} ran {r['mon_elapsed']:.1f} s and exited with an error "
                  f"(see logs/ in the scratch copy)")
    if not run.ok and not stopped_jobs(run) and all(r["status"] != "not run" or r["mon_elapsed"] is not None
                                                    for r in rows) is False:
        print(f"  FAILED (rc {run.returncode}):\n{run.stderr_tail}")


def _job_time(r: dict | None, metric: str) -> float | None:
    """Wall (TSV s) or CPU (monitor, else TSV cpu_time) of a job row; elapsed so far if stopped."""
    if r is None:
        return None
    t = r["tsv"] or {}
    if metric == "cpu":
        v = r.get("mon_cpu") or t.get("cpu_time")
    else:
        v = t.get("s")
    if not v and r["status"] == "STOPPED":
        v = r["mon_cpu"] if metric == "cpu" else r["mon_elapsed"]
    return v or None


def print_growth(results: dict[int, dict], metric: str = "wall") -> None:
    sizes = sorted(results)
    if len(sizes) < 2:
        return
    pairs = list(zip(sizes, sizes[1:]))
    what = "job wall time (TSV s)" if metric == "wall" else "job CPU time (monitor; less sensitive to load)"
    print(f"\n### Growth exponents log(t2/t1)/log(n2/n1) of {what}; peak memory exponent in brackets")
    head = f"| {'job':<50} | " + " | ".join(f"{f'{a:,} -> {b:,}':>24}" for a, b in pairs) + " |"
    print(head)
    print("|" + "|".join("-" * len(c) for c in head.split("|")[1:-1]) + "|")
    print(f"| {'n log n would be':<50} | " + " | ".join(f"{nlogn_exponent(a, b):>24.2f}" for a, b in pairs) + " |")
    jobs = [r["job"] for r in results[sizes[0]]["rows"]]
    for job in jobs:
        cells = []
        for a, b in pairs:
            ra = next((r for r in results[a]["rows"] if r["job"] == job), None)
            rb = next((r for r in results[b]["rows"] if r["job"] == job), None)
            ta, tb = _job_time(ra, metric), _job_time(rb, metric)
            if ta and tb:
                e = math.log(tb / ta) / math.log(b / a)
                ma, mb = ra.get("mon_peak_mib"), rb.get("mon_peak_mib")
                m = f" [{math.log(mb / ma) / math.log(b / a):.2f}]" if ma and mb else ""
                flag = " >nlogn" if e > nlogn_exponent(a, b) + 0.05 else ""
                lower = " >=" if rb["status"] == "STOPPED" else ""
                cells.append(f"{lower}{e:.2f}{m}{flag}")
            else:
                cells.append("-")
        print(f"| {job:<50} | " + " | ".join(f"{c:>24}" for c in cells) + " |")
    cells = []
    key = "wall" if metric == "wall" else "cpu"
    for a, b in pairs:
        ta, tb = results[a]["run"][key], results[b]["run"][key]
        cells.append(f"{math.log(tb / ta) / math.log(b / a):.2f}" + ("" if results[b]["run"]["ok"] else " (incomplete)"))
    print(f"| {'TOTAL cold workflow ' + key:<50} | " + " | ".join(f"{c:>24}" for c in cells) + " |")


def print_baselines(n: int, res: dict) -> None:
    b = res.get("baselines")
    if not b:
        return
    print(f"\n### Baselines at {n:,} admissions")
    bare = b["bare"]
    jobs = {r["job"]: r for r in res["rows"]}
    print(f"| {'table':<20} | {'ingest job s':>12} | {'bare call s':>11} | {'bare process s':>14} | "
          f"{'bare peak MiB':>13} | {'job / bare process':>18} |")
    print("|" + "|".join("-" * w for w in (22, 14, 13, 16, 15, 20)) + "|")
    tot_job = tot_call = tot_proc = 0.0
    for table, v in bare.items():
        t = (jobs.get(f"ingest_table/{table}") or {}).get("tsv") or {}
        s = t.get("s")
        tot_job += s or 0
        tot_call += v["seconds"]
        tot_proc += v["process"]
        print(f"| {table:<20} | {fmt(s, '12.2f'):>12} | {v['seconds']:>11.2f} | {v['process']:>14.2f} | "
              f"{v['maxrss_mib']:>13.0f} | {fmt(s / v['process'] if s else None, '18.2f'):>18} |")
    print(f"| {'TOTAL':<20} | {tot_job:>12.2f} | {tot_call:>11.2f} | {tot_proc:>14.2f} | {'':>13} | "
          f"{tot_job / tot_proc:>18.2f} |")
    d, r = b["dry_run"], b["noop"]
    print(f"  snakemake --dry-run (finished workflow): median {d['median']:.2f} s (min {d['min']:.2f}, "
          f"{len(d['runs'])} runs, load {d['load']})")
    print(f"  no-op rerun snakemake --cores {b['cores']}: median {r['median']:.2f} s (min {r['min']:.2f}, "
          f"{len(r['runs'])} runs, load {r['load']}); 'Nothing to be done': {r['nothing_to_be_done']}; "
          f"ratio no-op / dry-run {r['median'] / d['median']:.2f} (target <= {TARGETS['noop_ratio']})")


def print_targets(results: dict[int, dict], cold4: dict | None) -> list[str]:
    lines = []
    big = max(results)
    res = results[big]
    if big >= 1_000_000:
        passes = res.get("passes") or [{"run": res["run"]}]
        w = sum(p["run"]["wall"] for p in passes)
        complete = res["run"]["ok"]
        ok = complete and w < TARGETS["total_1m_s"]
        lines.append(f"{big:,} admissions: full workflow {w:.0f} s"
                     + ("" if complete else f" over {len(passes)} passes, INCOMPLETE (stopped, failed or "
                                            f"retried jobs)")
                     + f" (target < {TARGETS['total_1m_s']:.0f} s): {'met' if ok else 'MISSED'}")
    for n, res in sorted(results.items()):
        peaks = [(r["mon_peak_mib"] or 0, r["job"]) for r in res["rows"]]
        top = max(peaks) if peaks else (0, "-")
        lines.append(f"{n:,}: largest job peak {top[0]:.0f} MiB ({top[1]}) (target < "
                     f"{TARGETS['job_mem_mib']:.0f} MiB): {'met' if top[0] < TARGETS['job_mem_mib'] else 'MISSED'}")
    for n, res in sorted(results.items()):
        for x in res.get("final_stops") or []:
            lines.append(f"{n:,}: {x['job']} STOPPED: it {x['reason']} (after {x['elapsed_s']} s, "
                         f"{x['rss_mib']} MiB): MISSED")
        other: dict[str, list[str]] = {}
        for r in res["rows"]:
            if r["status"] == "not run" and r["mon_elapsed"] is not None:
                lines.append(f"{n:,}: {r['job']} FAILED (error after {r['mon_elapsed']:.0f} s): MISSED")
            elif r["status"] not in ("ok", "STOPPED"):
                other.setdefault(r["status"], []).append(r["job"])
        for status, jobs in other.items():
            lines.append(f"{n:,}: {status}: {', '.join(jobs)}")
    sizes = sorted(results)
    for a, b in zip(sizes, sizes[1:]):
        bad, wall_only, unjudged = [], [], []
        for rb in results[b]["rows"]:
            ra = next((r for r in results[a]["rows"] if r["job"] == rb["job"]), None)
            tw = [_job_time(ra, "wall"), _job_time(rb, "wall")]
            tc = [_job_time(ra, "cpu"), _job_time(rb, "cpu")]
            ew = math.log(tw[1] / tw[0]) / math.log(b / a) if all(tw) else None
            ec = math.log(tc[1] / tc[0]) / math.log(b / a) if all(tc) else None
            lim = nlogn_exponent(a, b) + 0.05
            if rb["status"] == "STOPPED" or (rb["status"] == "not run" and rb["mon_elapsed"] is not None):
                unjudged.append(rb["job"])
                continue
            if (ec or 0) > lim:
                bad.append(f"{rb['job']} (CPU {fmt(ec, '.2f')}, wall {fmt(ew, '.2f')})")
            elif (ew or 0) > lim:
                wall_only.append(f"{rb['job']} (wall {fmt(ew, '.2f')}, CPU {fmt(ec, '.2f')})")
        lines.append(f"growth {a:,} -> {b:,} (n log n = {nlogn_exponent(a, b):.2f}, judged on CPU time): "
                     + ("met" if not bad else "MISSED by " + ", ".join(bad))
                     + (f"; wall only above (load/contention): {', '.join(wall_only)}" if wall_only else "")
                     + (f"; not judged (stopped or failed at {b:,}): {', '.join(unjudged)}" if unjudged else ""))
    if cold4:
        runs = cold4.get("runs") or [cold4]
        each = ", ".join(f"{x['wall']:.1f} s (load {x['load_before']})" for x in runs)
        lines.append(f"default 2,000 cold with --cores {cold4['cores']}: best {cold4['wall']:.1f} s of {each}"
                     f" (target < {TARGETS['cold_2k_s']:.0f} s): "
                     f"{'met' if cold4['ok'] and cold4['wall'] < TARGETS['cold_2k_s'] else 'MISSED'}")
    for n, res in sorted(results.items()):
        b = res.get("baselines")
        if b:
            ratio = b["noop"]["median"] / b["dry_run"]["median"]
            lines.append(f"{n:,}: no-op rerun / dry-run = {ratio:.2f} (target <= {TARGETS['noop_ratio']}): "
                         f"{'met' if ratio <= TARGETS['noop_ratio'] and b['noop']['nothing_to_be_done'] else 'MISSED'}")
    print("\n### Targets")
    for line in lines:
        print(f"- {line}")
    return lines


# -------------------------------------------------------------------------------------- main
def main(argv=None) -> None:
    cfg = yaml.safe_load((ROOT / "config" / "config.yaml").read_text())
    default_boot = int(cfg["survival"]["analyses"]["clone_censor_weight"].get("bootstrap", 200))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[2_000, 100_000, 1_000_000])
    ap.add_argument("--cores", type=int, default=2)
    ap.add_argument("--bootstrap", type=int, default=default_boot,
                    help=f"CCW bootstrap replicates (default {default_boot}, as in config/config.yaml)")
    ap.add_argument("--default-run-cores", type=int, default=4,
                    help="also run the default 2,000 workflow cold with this many cores (0: skip)")
    ap.add_argument("--default-run-repeat", type=int, default=3,
                    help="cold runs of the default workflow with --default-run-cores (best is judged)")
    ap.add_argument("--stage-timeout", type=float, default=1200.0, help="stop a job after this many s")
    ap.add_argument("--mem-limit-gb", type=float, default=16.0, help="stop a job above this RSS (GiB)")
    ap.add_argument("--total-mem-limit-gb", type=float, default=18.0,
                    help="stop the run when its jobs together hold more (GiB), or < 2 GiB is left")
    ap.add_argument("--no-retry-serial", dest="retry_serial", action="store_false",
                    help="do not retry with --cores 1 the jobs stopped because the jobs together "
                         "held too much memory")
    ap.add_argument("--no-stand-ins", dest="stand_ins", action="store_false",
                    help="after a stopped or failed survival analysis, do not finish the workflow "
                         "with that analysis' outputs from a smaller size (stand-ins)")
    ap.add_argument("--noop-repeat", type=int, default=3)
    ap.add_argument("--profile", nargs="*", default=[], metavar="JOB",
                    help="jobs to profile after each run, e.g. build_cohort ingest_table/labs")
    ap.add_argument("--profile-slowest", type=int, default=0, metavar="K",
                    help="also profile the K slowest jobs (TSV wall) of each profiled size")
    ap.add_argument("--profile-sizes", type=int, nargs="*", help="sizes at which to profile (default: all)")
    ap.add_argument("--profile-seconds", type=int, default=600)
    ap.add_argument("--workdir", type=Path, help="scratch folder (default: a new one under /tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the scratch folders")
    ap.add_argument("--json", type=Path, help="results file (default benchmarks/out/run-<time>.json)")
    ap.add_argument("--from-json", type=Path, nargs="+", metavar="FILE",
                    help="print the tables of earlier runs (merged by size) instead of running")
    args = ap.parse_args(argv)
    if args.from_json:
        return reprint(args.from_json)

    stamp = time.strftime("%Y%m%d-%H%M%S")
    json_out = args.json or ROOT / "benchmarks" / "out" / f"run-{stamp}.json"
    json_out.parent.mkdir(parents=True, exist_ok=True)
    work = args.workdir or Path(tempfile.mkdtemp(prefix="hdank-bench-"))
    work.mkdir(parents=True, exist_ok=True)
    mem_limit = args.mem_limit_gb * 1024
    state = ingest_bench.library_state()
    print(f"workflow benchmark: sizes {args.sizes}, --cores {args.cores}, CCW bootstrap {args.bootstrap}, "
          f"scratch {work}; library {state}; {os.cpu_count()} cores, "
          f"{psutil.virtual_memory().total / 2**30:.0f} GiB; load {load()}", flush=True)

    results: dict[int, dict] = {}
    cold4 = None
    all_out = {"argv": sys.argv, "library": state, "cores": args.cores, "bootstrap": args.bootstrap,
               "sizes": {}, "cold_default": None}

    def save():
        json_out.write_text(json.dumps(all_out, indent=1, default=str))

    for n in sorted(args.sizes):
        root = make_scratch(work / f"n{n}", n, args.bootstrap)
        print(f"\n[{time.strftime('%H:%M:%S')}] n={n:,}: snakemake --cores {args.cores} in {root} "
              f"(load {load()})", flush=True)
        run = run_snakemake(root, ["--cores", str(args.cores), "--skip-script-cleanup", "--keep-going"],
                            stage_timeout=args.stage_timeout, mem_limit_mib=mem_limit, log_name="cold",
                            progress=True, total_limit_mib=args.total_mem_limit_gb * 1024)
        print(f"    done in {run.wall:.1f} s, ok={run.ok} (load {run.load_before} -> {run.load_after})", flush=True)
        res = {"run": asdict(run), "root": str(root), "passes": [{"label": "ok", "run": asdict(run)}]}
        results[n] = res
        all_out["sizes"][n] = res
        rows, final_stops = collect(root, n, res["passes"])
        res["rows"], res["final_stops"] = rows, final_stops
        save()
        if any("together" in x["reason"] for x in final_stops) and args.retry_serial:
            print(f"    retrying the stopped jobs (and what follows) with --cores 1 (load {load()})", flush=True)
            retry = run_snakemake(root, ["--cores", "1", "--skip-script-cleanup", "--keep-going"],
                                  stage_timeout=args.stage_timeout, mem_limit_mib=mem_limit, log_name="retry",
                                  progress=True, total_limit_mib=args.total_mem_limit_gb * 1024)
            print(f"    retry done in {retry.wall:.1f} s, ok={retry.ok}", flush=True)
            res["passes"].append({"label": "retried --cores 1", "run": asdict(retry)})
            rows, final_stops = collect(root, n, res["passes"])
            res["rows"], res["final_stops"] = rows, final_stops
            save()
        completion = None
        # survival analyses that were stopped, or that ran and failed
        missing = [r["job"] for r in rows if r["rule"] == "estimate_survival"
                   and (r["status"] == "STOPPED" or (r["status"] == "not run" and r["mon_elapsed"] is not None))]
        res["failed"] = [j for j in missing if j not in {x["job"] for x in final_stops}]
        if missing and args.stand_ins:
            completion = complete_with_stand_ins(root, n, missing, results, args.cores)
            res["completion"] = completion
            if completion.get("run"):
                res["passes"].append({"label": "after stand-in", "run": completion["run"]})
                rows, final_stops = collect(root, n, res["passes"])
                res["rows"], res["final_stops"] = rows, final_stops
            save()
        run = RunResult(**{**asdict(run), "stopped": final_stops})
        print_size_table(n, rows, run, args.cores, args.bootstrap, res["passes"])
        if completion:
            print_completion(completion)
        finished = (completion or {}).get("ok") or (
            not final_stops and all(r["status"] != "not run" for r in rows))
        if finished:
            print(f"    baselines (load {load()}) ...", flush=True)
            res["baselines"] = {
                "bare": bare_baseline(root),
                "dry_run": time_command(root, ["--cores", str(args.cores), "--dry-run"], args.noop_repeat),
                "noop": time_command(root, ["--cores", str(args.cores)], args.noop_repeat),
                "cores": args.cores,
            }
            save()
            print_baselines(n, res)
        profiles = {}
        scripts = {x["job"]: x["script"] for x in final_stops}
        for p in res["passes"]:
            for name, m in p["run"]["monitor"].items():
                scripts.setdefault(name, m["script"])
        to_profile = [x["job"] for x in final_stops]
        if args.profile_sizes is None or n in args.profile_sizes:
            to_profile += [j for j in args.profile if j not in to_profile]
            slow = sorted((r for r in rows if r["tsv"]), key=lambda r: -r["tsv"]["s"])[:args.profile_slowest]
            to_profile += [r["job"] for r in slow if r["job"] not in to_profile]
        for job in to_profile:
            if job not in scripts:
                print(f"  (no script recorded for {job}; not profiled)")
                continue
            info = profile_job(root, scripts[job], args.profile_seconds, mem_limit)
            profiles[job] = info
            print_profile(job, n, info)
        res["profiles"] = profiles
        save()

    if args.default_run_cores and 2000 in args.sizes:
        runs = []
        for k in range(args.default_run_repeat):
            root = make_scratch(work / f"n2000_cold_default_{k}", 2000, default_boot)
            print(f"\n[{time.strftime('%H:%M:%S')}] default 2,000 workflow cold with --cores {args.default_run_cores} "
                  f"(CCW bootstrap {default_boot}; run {k + 1}/{args.default_run_repeat}; load {load()})", flush=True)
            r = run_snakemake(root, ["--cores", str(args.default_run_cores)], log_name="cold4")
            runs.append({"wall": r.wall, "cpu": r.cpu, "ok": r.ok, "load_before": r.load_before,
                         "load_after": r.load_after})
            print(f"    {r.wall:.1f} s wall, {r.cpu:.1f} s CPU, ok={r.ok} (load {r.load_before} -> {r.load_after})")
        best = min(runs, key=lambda x: x["wall"])
        cold4 = {"cores": args.default_run_cores, **best, "runs": runs}
        all_out["cold_default"] = cold4
        save()

    print_growth(results, "wall")
    print_growth(results, "cpu")
    all_out["targets"] = print_targets(results, cold4)
    save()
    print(f"\nresults: {json_out}")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    else:
        print(f"scratch kept: {work}")


def reprint(files: list[Path]) -> None:
    """Tables, growth and targets of saved runs (later files win for a size)."""
    results, cold4 = {}, None
    for f in files:
        data = json.loads(f.read_text())
        print(f"{f}: {' '.join(data['argv'][1:])}; library {data['library']}")
        for n, res in data["sizes"].items():
            results[int(n)] = res
            res["_cores"], res["_bootstrap"] = data["cores"], data["bootstrap"]
        cold4 = data.get("cold_default") or cold4
    for n, res in sorted(results.items()):
        run = RunResult(**{**res["run"], "stopped": res.get("final_stops", res["run"].get("stopped"))})
        print_size_table(n, res["rows"], run, res["_cores"], res["_bootstrap"], res.get("passes"))
        if res.get("completion"):
            print_completion(res["completion"])
        print_baselines(n, res)
        for job, info in (res.get("profiles") or {}).items():
            print_profile(job, n, info)
    if cold4:
        for x in cold4.get("runs") or [cold4]:
            print(f"\ndefault 2,000 workflow cold with --cores {cold4['cores']}: {x['wall']:.1f} s wall, "
                  f"{x['cpu']:.1f} s CPU, ok={x['ok']} (load {x['load_before']} -> {x['load_after']})")
    print_growth(results, "wall")
    print_growth(results, "cpu")
    print_targets(results, cold4)


if __name__ == "__main__":
    main()
