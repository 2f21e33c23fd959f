#!/usr/bin/env bash
# slurm-lab.sh: a single-node Slurm (Debian 12 packages, no systemd) on
# localhost, for the slurm test suite and for trying slurm/*.sbatch by hand.
# It starts munged, slurmctld and slurmd, and stops only the daemons it started
# itself (their PID files in the lab directory); a munged that was already
# running is used and left alone.
#
#   scripts/slurm-lab.sh start    idempotent: starts what is not running, waits until the node is idle
#   scripts/slurm-lab.sh status   exit 0 when the lab's slurmctld and slurmd answer and the node is up
#   scripts/slurm-lab.sh stop     cancels the lab's jobs, stops what start started (state is kept)
#
# Environment:
#   SLURM_LAB_DIR   state, spool, logs, PID files, jobcomp.txt (default /var/lib/slurm/proxygml-lab)
#   SLURM_CONF      the slurm.conf to write (default /etc/slurm/slurm.conf, where the clients look);
#                   a slurm.conf that this script did not write is never overwritten
# Needs root and the packages slurm-wlm slurmctld slurmd slurm-client munge (scripts/setup.sh).
set -euo pipefail

CONF=${SLURM_CONF:-/etc/slurm/slurm.conf}
MARK="# written by proxygml scripts/slurm-lab.sh; lab dir="
# stop/status find the lab of an earlier start through the marker in slurm.conf
LAB=${SLURM_LAB_DIR:-$(sed -n "s|^$MARK||p" "$CONF" 2>/dev/null || true)}
LAB=${LAB:-/var/lib/slurm/proxygml-lab}

die() { echo "slurm-lab: $*" >&2; exit 1; }
alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

write_conf() {
  if [ -e "$CONF" ] && ! grep -q "^$MARK" "$CONF"; then
    die "$CONF exists and was not written by slurm-lab.sh: refusing to replace it (set SLURM_CONF to another path)"
  fi
  mkdir -p "$LAB"/{state,spool} "$(dirname "$CONF")"
  local ncpu mem_mb
  # nproc alone would honour OMP_NUM_THREADS (the test environment sets 1)
  ncpu=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)
  mem_mb=$(( $(awk '/MemTotal/{print $2}' /proc/meminfo) / 1024 - 512 ))
  # written to a temporary file and renamed: a client never reads half a file
  cat >"$CONF.tmp.$$" <<CONF
$MARK$LAB
# Single-node lab: everything runs as root on localhost. No cgroups
# (proctrack/linuxproc, task/none), no accounting daemon: job end states go to
# the jobcomp text file. batch_sched_delay=0 starts batch jobs at once, and the
# short scheduling intervals start a requeued job soon after it becomes eligible.
ClusterName=lab
SlurmctldHost=localhost
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
CredType=cred/munge
# a requeued job waits cred_expire + 1 s before it may start again (default 120 s)
AuthInfo=cred_expire=10
MpiDefault=pmix
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
SchedulerType=sched/backfill
SchedulerParameters=batch_sched_delay=0,sched_interval=2,bf_interval=2
ReturnToService=2
JobRequeue=1
StateSaveLocation=$LAB/state
SlurmdSpoolDir=$LAB/spool
SlurmctldPidFile=$LAB/slurmctld.pid
SlurmdPidFile=$LAB/slurmd.pid
SlurmctldLogFile=$LAB/slurmctld.log
SlurmdLogFile=$LAB/slurmd.log
SlurmctldDebug=info
SlurmdDebug=info
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/filetxt
JobCompLoc=$LAB/jobcomp.txt
# a preempted run gets KillWait seconds between SIGTERM and SIGKILL to checkpoint
KillWait=30
# finished jobs stay visible to scontrol show job for 5 minutes
MinJobAge=300
NodeName=localhost NodeAddr=127.0.0.1 CPUs=$ncpu RealMemory=$mem_mb State=UNKNOWN
PartitionName=debug Nodes=localhost Default=YES MaxTime=INFINITE State=UP
CONF
  mv "$CONF.tmp.$$" "$CONF"
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    return 0   # a munged is already answering: use it, and do not claim it
  fi
  mkdir -p /run/munge /var/log/munge /var/lib/munge
  chown munge:munge /run/munge /var/log/munge /var/lib/munge
  [ -s /etc/munge/munge.key ] || runuser -u munge -- mungekey --create   # normally made by the package
  runuser -u munge -- /usr/sbin/munged
  cp /run/munge/munged.pid "$LAB/munged.pid"
  for _ in $(seq 50); do munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && return 0; sleep 0.1; done
  die "munged does not answer (see /var/log/munge/munged.log)"
}

node_state() { sinfo -h -N -o '%T' 2>/dev/null | head -1 || true; }

start() {
  [ "$(id -u)" -eq 0 ] || die "start needs root"
  command -v slurmctld >/dev/null || die "slurmctld not found: run scripts/setup.sh"
  local t0=$SECONDS st=""
  write_conf
  start_munge
  # both daemons fork into the background and write their PID files into $LAB
  alive "$LAB/slurmctld.pid" || /usr/sbin/slurmctld -f "$CONF"
  for _ in $(seq 100); do scontrol ping >/dev/null 2>&1 && break; sleep 0.1; done
  scontrol ping >/dev/null 2>&1 || die "slurmctld does not answer (see $LAB/slurmctld.log)"
  alive "$LAB/slurmd.pid" || /usr/sbin/slurmd -f "$CONF" -N localhost
  for _ in $(seq 150); do
    st=$(node_state)
    case $st in idle|mixed|allocated) break ;; esac
    sleep 0.2
  done
  case $st in
    idle|mixed|allocated) echo "slurm-lab: up in $((SECONDS - t0)) s, node $st, lab dir $LAB" ;;
    *) die "the node is '${st:-unknown}', not idle after 30 s (see $LAB/slurmd.log)" ;;
  esac
}

stop() {
  # jobs first, so that no slurmstepd or job process outlives slurmd
  if alive "$LAB/slurmctld.pid"; then
    local ids
    ids=$(squeue -h -o %A 2>/dev/null || true)
    if [ -n "$ids" ]; then
      # shellcheck disable=SC2086
      scancel $ids 2>/dev/null || true
      for _ in $(seq 150); do [ -z "$(squeue -h -o %A 2>/dev/null)" ] && break; sleep 0.2; done
    fi
  fi
  local d f p
  for d in slurmd slurmctld munged; do
    f="$LAB/$d.pid"
    if alive "$f"; then
      p=$(cat "$f")
      kill -TERM "$p"
      for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
      if kill -0 "$p" 2>/dev/null; then echo "slurm-lab: $d ($p) ignores TERM, sending KILL"; kill -KILL "$p"; fi
      echo "slurm-lab: stopped $d ($p)"
    fi
    rm -f "$f"
  done
}

status() {
  local d rc=0
  for d in munged slurmctld slurmd; do
    if alive "$LAB/$d.pid"; then echo "$d: running (pid $(cat "$LAB/$d.pid"))"
    elif [ $d = munged ] && munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then echo "munged: running (not started by the lab)"
    else echo "$d: down"; [ $d = munged ] || rc=1
    fi
  done
  if [ $rc -eq 0 ]; then
    local st
    st=$(node_state)
    echo "node localhost: ${st:-unknown}"
    case $st in idle|mixed|allocated|completing) ;; *) rc=1 ;; esac
  fi
  return $rc
}

case "${1:-}" in
  start) start ;;
  stop) stop ;;
  status) status ;;
  *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
