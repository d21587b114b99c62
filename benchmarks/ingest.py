"""Benchmark of ingest: the pipeline's ``hdank.ingest.ingest_file`` against a bare pyarrow floor.

    .venv/bin/python benchmarks/ingest.py [--n 100000] [--extracts DIR] [--fresh] [--repeat 1]
        [--profile labs medications] [--scripts DIR]

Extracts: the simulator's ``n`` admissions (``hdank.simulate.simulate_from_config`` with the
``synthetic`` and ``study`` sections of config/config.yaml, ``csv.gz``), written once to
``benchmarks/out/extracts/n<n>_seed<seed>/`` (git-ignored) and reused; ``--extracts DIR`` points
at another folder of ``<table>.csv.gz`` files, ``--fresh`` rewrites the cache.

For every table, parents first (patients, admissions, then the others), each measurement runs
in its own Python process:

* **ingest**: ``ingest_file(raw, table, codelists, parent_typed, typed, quarantine, counts)``,
  exactly as the ``ingest_table`` rule calls it (code lists loaded, parent keys read, typed
  and quarantine parquet and the counts JSON written);
* **bare**: ``pyarrow.csv.read_csv(raw)`` (default type inference) then
  ``pyarrow.parquet.write_table(table, out, compression="zstd")`` (the pipeline's codec).

(``pseudonymise`` as ``privacy.pseudonymise_ids`` in the config; a key must then be in
``HDANK_ID_KEY``.)  ``seconds`` is the call itself (``time.perf_counter`` in the child, imports excluded);
``process`` is the child's wall time including interpreter start and imports (what a
Snakemake job pays); peak memory is the child's ``ru_maxrss`` from ``os.wait4``
(the per-child form of ``getrusage(RUSAGE_CHILDREN)``).  ``ratio`` = ingest / bare on the
call time (target <= 2) and on the process time.  The library is imported from a snapshot of
``scripts/`` taken at start, so that edits made meanwhile by others do not mix into one run.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TABLES = ("patients", "admissions", "diagnoses", "labs", "medications", "respiratory_support")
PARENT = {"admissions": "patients", "diagnoses": "admissions", "labs": "admissions",
          "medications": "admissions", "respiratory_support": "admissions"}
TARGET_RATIO = 2.0


# ------------------------------------------------------------------------------- child side
def _worker(argv: list[str]) -> None:
    """Child process: one measurement, result as one JSON line on stdout."""
    mode = argv[0]
    if mode == "ingest":
        table, raw, parent, outdir, codelists, pseudonymise = argv[1:7]
        import inspect

        from hdank.ingest import ingest_file
        out = Path(outdir)
        counts = out / "counts" / f"{table}.json"
        kwargs = {}
        if "pseudonymise" in inspect.signature(ingest_file).parameters:  # as the rule passes it
            kwargs["pseudonymise"] = pseudonymise == "1"
        profile_to = os.environ.get("HDANK_BENCH_PROFILE")
        prof = None
        if profile_to:
            import cProfile
            prof = cProfile.Profile()
        t0 = time.perf_counter()
        if prof:
            prof.enable()
        ingest_file(raw, table, codelists, parent or None, str(out / f"{table}.parquet"),
                    str(out / "quarantine" / f"{table}.parquet"), str(counts), **kwargs)
        seconds = time.perf_counter() - t0
        if prof:
            prof.disable()
            prof.dump_stats(profile_to)
        c = json.loads(counts.read_text())
        result = {"seconds": seconds, "rows": c["rows_read"], "rows_out": c["rows_typed"],
                  "quarantined": sum(c["quarantined"].values()),
                  "duplicates": c["duplicates_dropped"]}
    elif mode == "bare":
        raw, out = argv[1:3]
        import pyarrow.csv as pacsv
        import pyarrow.parquet as pq
        t0 = time.perf_counter()
        table = pacsv.read_csv(raw)
        pq.write_table(table, out, compression="zstd")
        seconds = time.perf_counter() - t0
        result = {"seconds": seconds, "rows": table.num_rows, "rows_out": table.num_rows}
    else:
        raise SystemExit(f"unknown worker mode {mode!r}")
    print(json.dumps(result), flush=True)


# ------------------------------------------------------------------------------ parent side
def measure(cmd: list[str], env: dict | None = None, cwd: str | Path | None = None) -> dict:
    """Run ``cmd``; return its JSON result plus wall, CPU and peak RSS of that child alone."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=env, cwd=cwd)
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        out.seek(0), err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{stderr[-3000:]}")
    result = json.loads(stdout.strip().splitlines()[-1])
    result.update(process=wall, cpu=ru.ru_utime + ru.ru_stime, maxrss_mib=ru.ru_maxrss / 1024)
    return result


def snapshot_scripts(dest: Path, source: Path | None = None) -> Path:
    """Copy scripts/ (the library) to ``dest``; return the folder to put on PYTHONPATH."""
    shutil.copytree(source or ROOT / "scripts", dest / "scripts",
                    ignore=shutil.ignore_patterns("__pycache__", "*.egg-info"))
    return dest / "scripts"


def library_state() -> str:
    """Git commit and whether the library differs from it (others edit it concurrently)."""
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  check=True).stdout.rstrip()
        except (OSError, subprocess.CalledProcessError):
            return "?"
    head = git("rev-parse", "--short", "HEAD").strip()
    dirty = git("status", "--porcelain", "--", "scripts")
    return f"commit {head}" + (f", uncommitted changes: {', '.join(l[3:] for l in dirty.splitlines())}"
                               if dirty else ", clean")


def load_config() -> dict:
    import yaml
    return yaml.safe_load((ROOT / "config" / "config.yaml").read_text())


def ensure_extracts(n: int, folder: Path | None, fresh: bool, pythonpath: Path) -> tuple[Path, str]:
    """Folder of the ``n``-admission csv.gz extracts (simulated once, then cached)."""
    if folder is not None:
        return folder, "given"
    cfg = load_config()
    synthetic = {**cfg["synthetic"], "n_admissions": int(n)}
    key = hashlib.sha256(json.dumps([synthetic, cfg["study"]], sort_keys=True).encode()).hexdigest()[:8]
    folder = ROOT / "benchmarks" / "out" / "extracts" / f"n{n}_seed{synthetic['seed']}_{key}"
    done = folder / "DONE"
    if done.exists() and not fresh:
        return folder, f"cached ({done.read_text().strip()})"
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    code = (
        "import json, sys, time; from hdank.simulate import simulate_from_config; "
        "a = json.loads(sys.argv[1]); t = time.perf_counter(); "
        "simulate_from_config(a['out'], a['out'] + '/answer_key.parquet', a['out'] + '/defects.json', "
        "synthetic=a['synthetic'], study=a['study'], codelists_dir=a['codelists'], fmt='csv.gz'); "
        "print(json.dumps({'seconds': time.perf_counter() - t}))"
    )
    arg = json.dumps({"out": str(folder), "synthetic": synthetic, "study": cfg["study"],
                      "codelists": str(ROOT / cfg["codelists"])})
    r = measure([sys.executable, "-c", code, arg], env=_env(pythonpath))
    note = f"simulated in {r['seconds']:.1f} s, peak {r['maxrss_mib']:.0f} MiB"
    done.write_text(note + "\n")
    return folder, note


def _env(pythonpath: Path) -> dict:
    return {**os.environ, "PYTHONPATH": str(pythonpath), "PYTHONDONTWRITEBYTECODE": "1"}


def run_ingest(extracts: Path, work: Path, pythonpath: Path, codelists: Path,
               pseudonymise: bool = False) -> dict[str, dict]:
    """The pipeline's ingest, table by table, parents first; one process per table."""
    typed = work / "typed"
    (typed / "quarantine").mkdir(parents=True, exist_ok=True)
    (typed / "counts").mkdir(parents=True, exist_ok=True)
    res = {}
    for table in TABLES:
        parent = str(typed / f"{PARENT[table]}.parquet") if table in PARENT else ""
        res[table] = measure([sys.executable, __file__, "_worker", "ingest", table,
                              str(extracts / f"{table}.csv.gz"), parent, str(typed), str(codelists),
                              "1" if pseudonymise else "0"],
                             env=_env(pythonpath))
    return res


def run_bare(extracts: Path, work: Path, pythonpath: Path | None = None) -> dict[str, dict]:
    """Bare ``pyarrow.csv.read_csv`` + ``pyarrow.parquet.write_table`` of each extract."""
    out = work / "bare"
    out.mkdir(parents=True, exist_ok=True)
    env = _env(pythonpath) if pythonpath else None
    return {table: measure([sys.executable, __file__, "_worker", "bare",
                            str(extracts / f"{table}.csv.gz"), str(out / f"{table}.parquet")], env=env)
            for table in TABLES}


def profile_tables(tables: list[str], extracts: Path, work: Path, pythonpath: Path, codelists: Path,
                   pseudonymise: bool, top: int = 18) -> None:
    """Ingest ``tables`` again under cProfile (parents first, unprofiled) and print the top functions."""
    import pstats
    typed = work / "typed"
    (typed / "quarantine").mkdir(parents=True, exist_ok=True)
    (typed / "counts").mkdir(parents=True, exist_ok=True)
    ancestors = set()
    for t in tables:
        while t in PARENT:
            t = PARENT[t]
            ancestors.add(t)
    needed = [t for t in TABLES if t in tables or t in ancestors]
    for table in needed:
        env = _env(pythonpath)
        prof = work / f"{table}.prof"
        if table in tables:
            env["HDANK_BENCH_PROFILE"] = str(prof)
        parent = str(typed / f"{PARENT[table]}.parquet") if table in PARENT else ""
        r = measure([sys.executable, __file__, "_worker", "ingest", table, str(extracts / f"{table}.csv.gz"),
                     parent, str(typed), str(codelists), "1" if pseudonymise else "0"], env=env)
        if table not in tables:
            continue
        st = pstats.Stats(str(prof))
        print(f"\ncProfile of ingest_file('{table}'): {r['seconds']:.2f} s under the profiler, "
              f"peak {r['maxrss_mib']:.0f} MiB, load {_load()}")
        for title, idx, only_own in (("self time", 2, False), ("cumulative, hdank + pandera", 3, True)):
            items = sorted(st.stats.items(), key=lambda kv: kv[1][idx], reverse=True)
            if only_own:
                items = [kv for kv in items if "/hdank/" in kv[0][0] or "/pandera/" in kv[0][0]]
            print(f"  {title}:")
            print(f"    {'function':<80} {'calls':>9} {'tottime':>8} {'cumtime':>8}")
            for (file, line, fn), v in items[:top]:
                parts = Path(file).parts
                short = ("/".join(parts[parts.index("site-packages") + 1:]) if "site-packages" in parts
                         else "/".join(parts[-2:])) if file != "~" else ""
                label = f"{short}:{line}({fn})" if short else fn
                print(f"    {label[:80]:<80} {v[1]:>9} {v[2]:>8.2f} {v[3]:>8.2f}")


def best(runs: list[dict[str, dict]]) -> dict[str, dict]:
    """Per table, the run with the smallest call time (of ``--repeat`` runs)."""
    return {t: min((r[t] for r in runs), key=lambda x: x["seconds"]) for t in runs[0]}


def _load() -> str:
    one, five, _ = os.getloadavg()
    return f"{one:.2f} (1 min) / {five:.2f} (5 min), {os.cpu_count()} cores"


def fmt_table(ingest: dict[str, dict], bare: dict[str, dict]) -> list[str]:
    head = (f"| {'table':<20} | {'rows':>10} | {'ingest s':>8} | {'rows/s':>9} | {'process s':>9} "
            f"| {'peak MiB':>8} | {'bare s':>7} | {'rows/s':>10} | {'process s':>9} | {'peak MiB':>8} "
            f"| {'ratio':>5} | {'ratio proc.':>11} |")
    lines = [head, "|" + "|".join("-" * (len(c)) for c in head.split("|")[1:-1]) + "|"]

    def row(name, i, b):
        rate_i = i["rows"] / i["seconds"] if i["seconds"] else float("nan")
        rate_b = b["rows"] / b["seconds"] if b["seconds"] else float("nan")
        return (f"| {name:<20} | {i['rows']:>10,} | {i['seconds']:>8.2f} | {rate_i:>9,.0f} | "
                f"{i['process']:>9.2f} | {i['maxrss_mib']:>8.0f} | {b['seconds']:>7.2f} | {rate_b:>10,.0f} | "
                f"{b['process']:>9.2f} | {b['maxrss_mib']:>8.0f} | {i['seconds'] / b['seconds']:>5.2f} | "
                f"{i['process'] / b['process']:>11.2f} |")

    for t in TABLES:
        lines.append(row(t, ingest[t], bare[t]))
    total = {}
    for name, part in (("i", ingest), ("b", bare)):
        total[name] = {"rows": sum(v["rows"] for v in part.values()),
                       "seconds": sum(v["seconds"] for v in part.values()),
                       "process": sum(v["process"] for v in part.values()),
                       "maxrss_mib": max(v["maxrss_mib"] for v in part.values())}
    lines.append(row("TOTAL (peak = max)", total["i"], total["b"]))
    return lines


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=100_000, help="admissions to simulate (default 100,000)")
    ap.add_argument("--extracts", type=Path, help="folder of <table>.csv.gz to use instead")
    ap.add_argument("--fresh", action="store_true", help="re-simulate the cached extracts")
    ap.add_argument("--repeat", type=int, default=1, help="runs of each measurement; best is shown")
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--scripts", type=Path, help="library folder to test instead of the repository's "
                    "scripts/ (e.g. a scratch copy with a proposed fix)")
    ap.add_argument("--profile", nargs="*", default=[], choices=TABLES, metavar="TABLE",
                    help="afterwards, ingest these tables under cProfile and print the top functions")
    args = ap.parse_args(argv)

    with tempfile.TemporaryDirectory(prefix="hdank-ingest-bench-") as tmp:
        tmp = Path(tmp)
        pythonpath = snapshot_scripts(tmp, args.scripts)
        cfg = load_config()
        codelists = ROOT / cfg["codelists"]
        pseudonymise = bool((cfg.get("privacy") or {}).get("pseudonymise_ids", False))
        state = library_state() if args.scripts is None else f"scripts from {args.scripts}"
        extracts, origin = ensure_extracts(args.n, args.extracts, args.fresh, pythonpath)
        load_before = _load()
        ingest_runs, bare_runs = [], []
        for k in range(args.repeat):
            ingest_runs.append(run_ingest(extracts, tmp / f"run{k}", pythonpath, codelists, pseudonymise))
            bare_runs.append(run_bare(extracts, tmp / f"run{k}"))
        ingest, bare = best(ingest_runs), best(bare_runs)
        load_after = _load()
        if args.profile:
            profile_tables(args.profile, extracts, tmp / "profile", pythonpath, codelists, pseudonymise)

    size = sum((extracts / f"{t}.csv.gz").stat().st_size for t in TABLES) / 2**20
    print(f"Ingest vs bare pyarrow read_csv + write_table (zstd); extracts: {extracts} "
          f"({size:.1f} MiB csv.gz, {origin}); library: {state}; best of {args.repeat}")
    print(f"load average before: {load_before}; after: {load_after}")
    for line in fmt_table(ingest, bare):
        print(line)
    tot_i = sum(v["seconds"] for v in ingest.values())
    tot_b = sum(v["seconds"] for v in bare.values())
    ratio = tot_i / tot_b
    proc_ratio = sum(v["process"] for v in ingest.values()) / sum(v["process"] for v in bare.values())
    worst = max(TABLES, key=lambda t: ingest[t]["seconds"] / bare[t]["seconds"])
    print(f"ratio ingest / bare: {ratio:.2f} on the call, {proc_ratio:.2f} per process "
          f"(target <= {TARGET_RATIO:g}: {'met' if ratio <= TARGET_RATIO else 'MISSED'}); "
          f"worst table: {worst} ({ingest[worst]['seconds'] / bare[worst]['seconds']:.2f}x)")
    rows_typed = sum(v["rows_out"] for v in ingest.values())
    quarantined = sum(v.get("quarantined", 0) for v in ingest.values())
    dups = sum(v.get("duplicates", 0) for v in ingest.values())
    print(f"ingest kept {rows_typed:,} rows, quarantined {quarantined:,}, dropped {dups:,} duplicates")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"n": args.n, "extracts": str(extracts), "library": state,
                                         "load_before": load_before, "load_after": load_after,
                                         "ingest": ingest, "bare": bare, "ratio": ratio}, indent=2))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        _worker(sys.argv[2:])
    else:
        main()
