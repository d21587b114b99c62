#!/usr/bin/env bash
# Run the workflow on a real one-node SLURM cluster started on this machine, run it again
# locally, and check that (1) every non-local job went through sbatch and (2) both runs wrote
# byte-identical results.
#
#   sudo tests/cluster/run_slurm.sh [extra snakemake arguments, e.g. --until build_cohort]
#
# Needs root (apt-get, daemons). What it does:
#   a. installs Debian's slurm-wlm and munge if missing;
#   b. writes a single-node /etc/slurm/slurm.conf for localhost (state, spool and logs in a
#      scratch directory), and removes it at the end: with a slurm.conf there and no controller,
#      every `snakemake` call on the machine waits ~10 s, because the SLURM plugin runs
#      `scontrol show config` while building its command line. (SLURM_CONF pointing elsewhere
#      is not enough: the plugin's job step strips SLURM_* variables before its inner srun);
#   c. starts munged (unless one already answers), slurmctld and `slurmd -N localhost`;
#   d. runs the workflow with workflow/profiles/slurm in a fresh copy of the repository;
#   e. checks each SLURM job id Snakemake reported against slurmctld's log
#      (`_slurm_rpc_submit_batch_job: JobId=N`) and the job-completion file;
#   f. runs the workflow locally in a second copy of the same snapshot and compares every
#      file under results/ by SHA-256, with the same SOURCE_DATE_EPOCH in both runs, except
#      what is run-dependent by nature: results/benchmarks/, its copy in the report's tables
#      and the report's "Run times per rule" table;
#   g. stops the daemons it started, whatever happens (trap on EXIT);
#   h. prints both wall times.
#
# Environment:
#   RUN_SLURM_TIMEOUT   seconds allowed for each snakemake run (default 1800)
#   RUN_SLURM_WORKDIR   scratch directory (default: a new mktemp -d); removed at the end
#                       unless RUN_SLURM_KEEP=1 or the run failed
#   RUN_SLURM_SKIP_LOCAL=1  only the SLURM run and the sbatch check
#   SNAKEMAKE           snakemake executable (default: <repo>/.venv/bin/snakemake)
#   SOURCE_DATE_EPOCH   fixed "now" for both runs (default: 1700000000)
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SNAKEMAKE=${SNAKEMAKE:-$ROOT/.venv/bin/snakemake}
VENV_BIN=$(cd "$(dirname "$SNAKEMAKE")" && pwd)
PYTHON=$VENV_BIN/python
TIMEOUT=${RUN_SLURM_TIMEOUT:-1800}
export SOURCE_DATE_EPOCH=${SOURCE_DATE_EPOCH:-1700000000}
EXTRA_ARGS=("$@")

log() { printf '[run_slurm %(%H:%M:%S)T] %s\n' -1 "$*" >&2; }
die() { log "FAIL: $*"; exit 1; }

[[ $(id -u) -eq 0 ]] || die "needs root: it installs packages and starts the SLURM and munge daemons"
[[ -x $SNAKEMAKE ]] || die "no snakemake at $SNAKEMAKE (run 'make setup' or set SNAKEMAKE)"

# One cluster per machine at a time: the daemons use fixed ports and the munge socket.
LOCK=/run/lock/hdank-run-slurm.lock
[[ -d /run/lock ]] || LOCK=/tmp/hdank-run-slurm.lock
exec 9>"$LOCK"
flock -w 3600 9 || die "another run_slurm.sh holds $LOCK"

# --- a. packages ------------------------------------------------------------------------
if ! command -v slurmctld >/dev/null || ! command -v slurmd >/dev/null \
    || ! command -v sbatch >/dev/null || ! command -v munged >/dev/null; then
  command -v apt-get >/dev/null || die "slurm-wlm/munge missing and no apt-get to install them"
  log "installing slurm-wlm and munge (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq -o Dpkg::Options::=--force-confold slurm-wlm munge >/dev/null
fi

# Daemons left by a run that was killed with SIGKILL (no cleanup) hold the ports: say so
# rather than stop processes this run did not start.
stale=$(pgrep -x 'slurmctld|slurmd' | tr '\n' ' ' || true)
[[ -z $stale ]] || die "SLURM daemons already running (pids $stale); stop them first (kill $stale)"

# --- scratch directory and cleanup --------------------------------------------------------
if [[ -n ${RUN_SLURM_WORKDIR:-} ]]; then
  WORK=$RUN_SLURM_WORKDIR
  mkdir -p "$WORK"
else
  WORK=$(mktemp -d /tmp/run_slurm.XXXXXX)
fi
WORK=$(cd "$WORK" && pwd)
SLURM_DIR=$WORK/slurm
rm -rf "$SLURM_DIR"
mkdir -p "$SLURM_DIR/state" "$SLURM_DIR/spool"
SLURM_CONF_FILE=/etc/slurm/slurm.conf
MARKER="# Single-node test cluster written by tests/cluster/run_slurm.sh"
unset SLURM_CONF
if [[ -e $SLURM_CONF_FILE ]] && ! grep -qF "$MARKER" "$SLURM_CONF_FILE"; then
  die "$SLURM_CONF_FILE exists and was not written by this script: is this machine part of a real cluster? Not touching it."
fi
WROTE_CONF=""
STARTED_MUNGED=""
CHILD=""

stop_pid() {  # stop_pid NAME PID [SECONDS]: TERM, wait (default 20 s), then KILL
  local name=$1 pid=$2 wait_s=${3:-20}
  [[ -n $pid ]] && kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq $((wait_s * 2))); do kill -0 "$pid" 2>/dev/null || return 0; sleep 0.5; done
  log "$name ($pid) ignored TERM; killing"
  kill -KILL "$pid" 2>/dev/null || true
}

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  set +e
  local ctld_pid="" slurmd_pid=""
  if [[ -n $CHILD ]] && kill -0 "$CHILD" 2>/dev/null; then
    log "stopping snakemake (it lets running jobs finish; after 60 s it is killed and its jobs cancelled)"
    stop_pid snakemake "$CHILD" 60
  fi
  [[ -f $SLURM_DIR/slurmctld.pid ]] && ctld_pid=$(<"$SLURM_DIR/slurmctld.pid")
  [[ -f $SLURM_DIR/slurmd.pid ]] && slurmd_pid=$(<"$SLURM_DIR/slurmd.pid")
  if [[ -n $ctld_pid ]] && kill -0 "$ctld_pid" 2>/dev/null; then
    # Jobs left by an aborted run: cancel them so that no slurmstepd outlives the cluster.
    local left
    left=$(timeout 10 squeue -h -o %i 2>/dev/null | tr '\n' ' ')
    if [[ -n ${left// } ]]; then
      log "leftover jobs (a job pending for ever, e.g. asking more than the node has, makes"
      log "Snakemake wait silently until the timeout):"
      timeout 10 squeue -o '%.6i %.9T %.20r %.5C %.8m %.10l %k' >&2
      log "cancelling leftover jobs: $left"
      # shellcheck disable=SC2086
      timeout 10 scancel $left
      for _ in $(seq 30); do
        [[ -z $(timeout 5 squeue -h -t R,CG -o %i 2>/dev/null) ]] && break
        sleep 1
      done
    fi
    timeout 15 scontrol shutdown >/dev/null 2>&1
  fi
  stop_pid slurmd "$slurmd_pid"
  stop_pid slurmctld "$ctld_pid"
  stop_pid munged "$STARTED_MUNGED"
  [[ -n $WROTE_CONF ]] && rm -f "$SLURM_CONF_FILE"
  log "daemons stopped${WROTE_CONF:+, $SLURM_CONF_FILE removed}"
  if [[ $rc -eq 0 && ${RUN_SLURM_KEEP:-0} != 1 && -z ${RUN_SLURM_WORKDIR:-} ]]; then
    rm -rf "$WORK"
  else
    log "scratch directory kept: $WORK"
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# One snapshot of the working tree (without environment, results or history), taken once:
# others may be editing the repository meanwhile, and both runs must see the same code.
SNAPSHOT=$WORK/snapshot
rm -rf "$SNAPSHOT"
mkdir -p "$SNAPSHOT"
tar -C "$ROOT" -cf - --exclude=./.venv --exclude=./results --exclude=./.snakemake \
  --exclude=./logs --exclude=./.git --exclude=__pycache__ --exclude='*.egg-info' \
  --exclude=./.pytest_cache --exclude=./tests/artifacts --exclude=./benchmarks/out . \
  | tar -C "$SNAPSHOT" -xf -
log "snapshot of $ROOT in $SNAPSHOT"

# --- b. slurm.conf ------------------------------------------------------------------------
# The node line as slurmd sees the hardware (CPUs, sockets, cores, threads, RealMemory),
# renamed to localhost so that the configuration does not depend on the host name.
NODE_LINE=$(slurmd -C | head -n1 | sed -E 's/^NodeName=[^ ]+/NodeName=localhost/')
[[ $NODE_LINE == NodeName=localhost*RealMemory=* ]] || die "unexpected 'slurmd -C' output: $NODE_LINE"
mkdir -p "$(dirname "$SLURM_CONF_FILE")"
WROTE_CONF=1
cat >"$SLURM_CONF_FILE" <<EOF
$MARKER; removed when it ends.
ClusterName=hdanktest
SlurmctldHost=localhost
SlurmctldPort=${RUN_SLURM_CTLD_PORT:-6817}
SlurmdPort=${RUN_SLURM_SLURMD_PORT:-6818}
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=$SLURM_DIR/state
SlurmdSpoolDir=$SLURM_DIR/spool
SlurmctldPidFile=$SLURM_DIR/slurmctld.pid
SlurmdPidFile=$SLURM_DIR/slurmd.pid
SlurmctldLogFile=$SLURM_DIR/slurmctld.log
SlurmdLogFile=$SLURM_DIR/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
# No cgroups: process tracking through /proc, no task binding.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
MpiDefault=none
ReturnToService=2
# Finished jobs stay visible to squeue for an hour: without slurmdbd, sacct cannot see them
# and the executor plugin polls squeue --states=all instead.
MinJobAge=3600
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
# One line per finished job: the scheduler's own record, read by the sbatch check below.
JobCompType=jobcomp/filetxt
JobCompLoc=$SLURM_DIR/jobcomp.log
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
$NODE_LINE State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
EOF
cp "$SLURM_CONF_FILE" "$SLURM_DIR/slurm.conf"
log "$SLURM_CONF_FILE written ($NODE_LINE)"

# --- c. daemons ---------------------------------------------------------------------------
if munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
  log "munged already running; using it (and leaving it running)"
else
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
  install -d -o munge -g munge -m 0700 /etc/munge
  if [[ ! -s /etc/munge/munge.key ]]; then
    log "creating /etc/munge/munge.key"
    if command -v mungekey >/dev/null; then
      runuser -u munge -- mungekey --create --keyfile=/etc/munge/munge.key
    else
      dd if=/dev/urandom of=/etc/munge/munge.key bs=1024 count=1 status=none
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 0400 /etc/munge/munge.key
  fi
  runuser -u munge -- /usr/sbin/munged --force 9>&-
  for _ in $(seq 20); do [[ -s /run/munge/munged.pid ]] && break; sleep 0.25; done
  STARTED_MUNGED=$(cat /run/munge/munged.pid)
  munge -n </dev/null | unmunge >/dev/null || die "munged does not answer (see /var/log/munge/munged.log)"
  log "munged started (pid $STARTED_MUNGED)"
fi

slurmctld -i 9>&- || die "slurmctld did not start; see $SLURM_DIR/slurmctld.log"
for _ in $(seq 60); do timeout 5 scontrol ping 2>/dev/null | grep -q UP && break; sleep 0.5; done
timeout 5 scontrol ping | grep -q UP || die "slurmctld not answering; see $SLURM_DIR/slurmctld.log"
slurmd -N localhost 9>&- || die "slurmd did not start; see $SLURM_DIR/slurmd.log"
state=""
for _ in $(seq 120); do
  state=$(timeout 5 sinfo -h -N -n localhost -o %t 2>/dev/null || true)
  [[ $state == idle ]] && break
  sleep 0.5
done
[[ $state == idle ]] || die "node localhost is '$state', not idle; see $SLURM_DIR/slurmd.log"
log "cluster up: $(sinfo -h -N -o '%N %P %t cpus=%c mem=%m')"

# --- d. the workflow on SLURM -------------------------------------------------------------
export PATH=$VENV_BIN:$PATH   # the jobs run `python -m snakemake`: the venv's python
unset SNAKEMAKE_PROFILE

copy_repo() {  # copy_repo DEST: a fresh copy of the snapshot
  rm -rf "$1"
  cp -a "$SNAPSHOT" "$1"
}

run_snakemake() {  # run_snakemake DIR LOG ARGS...: timed, logged; sets ELAPSED
  local dir=$1 logfile=$2
  shift 2
  local start end rc=0
  start=$(date +%s.%N)
  # In the background so that a TERM to this script is handled at once (bash defers traps
  # until a foreground child ends); cleanup() stops it.
  (cd "$dir" && PYTHONPATH=$dir/scripts exec timeout -k 30 "$TIMEOUT" "$SNAKEMAKE" "$@") \
    >"$logfile" 2>&1 &
  CHILD=$!
  wait "$CHILD" || rc=$?
  CHILD=""
  end=$(date +%s.%N)
  ELAPSED=$(awk -v a="$start" -v b="$end" 'BEGIN { printf "%.1f", b - a }')
  if [[ $rc -ne 0 ]]; then
    tail -n 60 "$logfile" >&2
    [[ $rc -eq 124 || $rc -eq 137 ]] && die "snakemake timed out after ${TIMEOUT}s in $dir (log: $logfile)"
    die "snakemake failed ($rc) in $dir (log: $logfile)"
  fi
}

SLURM_COPY=$WORK/slurm-run
copy_repo "$SLURM_COPY"
log "SLURM run in $SLURM_COPY (log: $WORK/slurm-run.log)"
run_snakemake "$SLURM_COPY" "$WORK/slurm-run.log" \
  --profile workflow/profiles/slurm \
  --slurm-status-command squeue \
  --slurm-init-seconds-before-status-checks 2 \
  --slurm-keep-successful-logs \
  "${EXTRA_ARGS[@]}"
SLURM_WALL=$ELAPSED
log "SLURM run finished in ${SLURM_WALL}s"

# --- e. every non-local job went through sbatch ---------------------------------------------
timeout 10 squeue -h --states=all -o '%i|%j|%T|%k' >"$SLURM_DIR/squeue.txt" || true
"$PYTHON" - "$WORK/slurm-run.log" "$SLURM_DIR" "$SLURM_COPY/.snakemake/slurm_logs" <<'PY'
"""Match Snakemake's remote jobs (single or grouped) with the SLURM controller's own records."""
import re
import sys
from collections import Counter
from pathlib import Path

run_log, slurm_dir, slurm_logs = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])

# Jobs as Snakemake printed them: "rule X:" runs through sbatch, "localrule X:" on this host;
# rule blocks indented under "Group job G" are one sbatch job for the whole group.
single, local, groups, group = [], [], {}, None
for line in run_log.read_text().splitlines():
    if m := re.search(r"Group job (\S+) \(jobs", line):
        group = groups.setdefault(m.group(1), [])
    elif m := re.match(r"^(\s*)(local)?rule (\w+):\s*$", line):
        indented, is_local, rule = bool(m.group(1)), bool(m.group(2)), m.group(3)
        if is_local:
            local.append(rule)
        elif indented and group is not None:
            group.append(rule)
        else:
            single.append(rule)
        if not indented:
            group = None
submitted = dict(re.findall(r"Job (\S+) has been submitted with SLURM jobid (\d+)",
                            run_log.read_text()))
ids = set(submitted.values())

ctld = set(re.findall(r"_slurm_rpc_submit_batch_job: JobId=(\d+)",
                      (slurm_dir / "slurmctld.log").read_text()))
jobcomp_file = slurm_dir / "jobcomp.log"
completed = {}
for line in jobcomp_file.read_text().splitlines() if jobcomp_file.exists() else []:
    fields = dict(f.split("=", 1) for f in line.split() if "=" in f)
    completed[fields.get("JobId")] = fields.get("JobState")
comments = {}
for line in (slurm_dir / "squeue.txt").read_text().splitlines():
    jobid, _name, state, comment = line.split("|", 3)
    comments[jobid] = comment
logs = sorted(slurm_logs.rglob("*.log")) if slurm_logs.exists() else []


def unit(comment: str) -> str:
    """Rule or group of a job from the plugin's --comment (rule_<name>[_wildcards_...])."""
    name = comment.removeprefix("rule_")
    for g in groups:
        if name == g or name.startswith(g + "_"):
            return f"group {g}"
    return name.split("_wildcards_")[0]


n_grouped = sum(len(v) for v in groups.values())
print(f"Snakemake jobs: {len(single) + n_grouped} remote (rule), {len(local)} local (localrule)"
      + (f"; {n_grouped} of them in {len(groups)} group job(s)" if groups else ""))
print(f"SLURM job ids reported by the plugin: {len(ids)}")
print(f"_slurm_rpc_submit_batch_job lines in slurmctld.log: {len(ctld)}")
print(f"jobs COMPLETED in the job-completion file: "
      f"{sum(1 for s in completed.values() if s == 'COMPLETED')}")
print(f"plugin logs under .snakemake/slurm_logs: {len(logs)}")
print("SLURM job  state      comment (rule and wildcards)")
for jobid in sorted(ids | ctld, key=int):
    print(f"  {jobid:>7}  {completed.get(jobid, '?'):<9}  {comments.get(jobid, '?')}")

problems = []
expected = Counter(single) + Counter(f"group {g}" for g in groups)
observed = Counter(unit(comments.get(j, "?")) for j in ids)
if not expected:
    problems.append("no remote job ran: nothing was submitted to SLURM")
if observed != expected:
    problems.append(f"sbatch jobs per rule/group {dict(observed)} != Snakemake's remote jobs "
                    f"{dict(expected)}")
if ids - ctld:
    problems.append(f"job ids unknown to slurmctld's log: {sorted(ids - ctld, key=int)}")
if ctld - ids:
    problems.append(f"sbatch jobs not reported by Snakemake: {sorted(ctld - ids, key=int)}")
not_done = sorted((j for j in ids if completed.get(j) != "COMPLETED"), key=int)
if not_done:
    problems.append(f"jobs not COMPLETED in {jobcomp_file}: {not_done}")
if len(logs) != len(ids):
    problems.append(f"{len(logs)} plugin logs for {len(ids)} jobs")
for p in problems:
    print("PROBLEM:", p)
sys.exit(1 if problems else 0)
PY
log "sbatch check passed"

# --- f. the same workflow locally, and the comparison ---------------------------------------
if [[ ${RUN_SLURM_SKIP_LOCAL:-0} == 1 ]]; then
  log "local run skipped (RUN_SLURM_SKIP_LOCAL=1); SLURM wall time ${SLURM_WALL}s"
  exit 0
fi
LOCAL_COPY=$WORK/local-run
copy_repo "$LOCAL_COPY"
log "local run in $LOCAL_COPY (log: $WORK/local-run.log)"
run_snakemake "$LOCAL_COPY" "$WORK/local-run.log" --cores 2 "${EXTRA_ARGS[@]}"
LOCAL_WALL=$ELAPSED
log "local run finished in ${LOCAL_WALL}s"

"$PYTHON" - "$SLURM_COPY/results" "$LOCAL_COPY/results" <<'PY'
"""Every result file of the SLURM run equals the local run's, byte for byte.

Run-dependent by nature, so left out: Snakemake benchmarks (results/benchmarks/, and their
copy report/tables/benchmarks.csv) and, in the report, the provenance table "Run times per
rule" built from them. The report's run date is fixed by SOURCE_DATE_EPOCH in both runs.
"""
import hashlib
import re
import sys
from pathlib import Path

EXCLUDED_FILES = {"report/tables/benchmarks.csv"}
RUN_TIMES = re.compile(rb"(<h3>Run times per rule</h3>).*?(</table>|</p>)", re.S)


def digests(root: Path) -> dict[str, str]:
    out = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or rel.parts[0] in ("benchmarks", "logs") or str(rel) in EXCLUDED_FILES:
            continue
        data = path.read_bytes()
        if path.suffix == ".html":
            data = RUN_TIMES.sub(rb"\1[run times not compared]\2", data)
        out[str(rel)] = hashlib.sha256(data).hexdigest()
    return out


slurm, local = digests(Path(sys.argv[1])), digests(Path(sys.argv[2]))
problems = [f"only in the SLURM run: {p}" for p in sorted(slurm.keys() - local.keys())]
problems += [f"only in the local run: {p}" for p in sorted(local.keys() - slurm.keys())]
problems += [f"differs: {p}" for p in sorted(slurm.keys() & local.keys()) if slurm[p] != local[p]]
same = sum(1 for p in slurm.keys() & local.keys() if slurm[p] == local[p])
print(f"results/: {same} files identical (SHA-256) in both runs, {len(problems)} problems")
for p in problems:
    print("PROBLEM:", p)
if not slurm:
    print("PROBLEM: the runs wrote nothing under results/")
sys.exit(1 if problems or not slurm else 0)
PY

# --- h. wall times --------------------------------------------------------------------------
N_SBATCH=$(grep -c "_slurm_rpc_submit_batch_job" "$SLURM_DIR/slurmctld.log" || true)
printf '\nwall time  SLURM: %8ss (%s sbatch jobs)   local (--cores 2): %8ss\n' \
  "$SLURM_WALL" "$N_SBATCH" "$LOCAL_WALL"
