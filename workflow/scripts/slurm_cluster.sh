#!/usr/bin/env bash
# A real single-node SLURM cluster (munged, slurmctld, slurmd; no accounting) on this machine,
# without systemd, for the SLURM test and for trying docs/cluster.md.
#
#   bash workflow/scripts/slurm_cluster.sh up      install (apt) if needed, start, wait until the node is idle
#   bash workflow/scripts/slurm_cluster.sh down    stop the daemons that `up` started, by their process ids
#   bash workflow/scripts/slurm_cluster.sh running exit 0 if the daemons `up` started are all alive
#   bash workflow/scripts/slurm_cluster.sh status  sinfo
#
# Needs root and Debian/Ubuntu packages munge slurmctld slurmd slurm-client (SLURM 22.05 on
# Debian 12). Exit status of `up`: 0 running, 2 the packages cannot be installed (offline, not
# root, no apt), 1 anything else. Every wait is bounded (WAIT_S, default 60 s). The daemons'
# process ids are recorded in $PIDS ("name pid" lines); `down` stops exactly those: SIGTERM,
# up to 10 s, then SIGKILL. No accounting: Snakemake needs `--slurm-status-command squeue`
# (set in profiles/slurm), and MinJobAge=300 keeps finished jobs visible to squeue.
set -euo pipefail

PIDS=${PIDS:-/run/kdrepro-slurm.pids}
WAIT_S=${WAIT_S:-60}
PARTITION=${PARTITION:-debug}
CONF_DIR=/etc/slurm
LOG_DIR=/var/log/slurm

log() { echo "slurm_cluster: $*" >&2; }

# wait_for SECONDS COMMAND...: poll every 0.25 s until COMMAND succeeds; 1 on timeout
wait_for() {
  local limit=$1; shift
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if ((SECONDS >= deadline)); then return 1; fi
    sleep 0.25
  done
}

alive() { kill -0 "$1" 2>/dev/null; }

record() { echo "$1 $2" >>"$PIDS"; }

install_packages() {
  local missing=()
  for bin in /usr/sbin/munged /usr/sbin/slurmctld /usr/sbin/slurmd /usr/bin/sbatch; do
    [[ -x $bin ]] || missing+=("$bin")
  done
  ((${#missing[@]} == 0)) && return 0
  if [[ $(id -u) != 0 ]] || ! command -v apt-get >/dev/null; then
    log "cannot install SLURM: needs root and apt-get (missing: ${missing[*]})"
    return 2
  fi
  log "installing munge slurmctld slurmd slurm-client (apt-get)"
  export DEBIAN_FRONTEND=noninteractive
  if ! timeout 300 apt-get update -qq >&2 ||
    ! timeout 600 apt-get install -y -qq --no-install-recommends munge slurmctld slurmd slurm-client >&2; then
    log "apt-get could not install the SLURM packages"
    return 2
  fi
}

write_conf() {
  local host cpus mem
  host=$(hostname -s)
  cpus=$(nproc)
  mem=$(($(free -m | awk '/^Mem:/ {print $2}') - 1024))
  ((mem < 1024)) && mem=1024
  if ! getent hosts "$host" >/dev/null; then
    log "adding '127.0.0.1 $host' to /etc/hosts"
    echo "127.0.0.1 $host" >>/etc/hosts
  fi
  mkdir -p "$CONF_DIR"
  cat >"$CONF_DIR/slurm.conf" <<EOF
# written by kdrepro workflow/scripts/slurm_cluster.sh: a single-node CI cluster
ClusterName=ci
SlurmctldHost=$host
SlurmUser=slurm
SlurmctldPort=6817
SlurmdPort=6818
AuthType=auth/munge
CredType=cred/munge
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOG_DIR/slurmctld.log
SlurmdLogFile=$LOG_DIR/slurmd.log
MpiDefault=none
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
SwitchType=switch/none
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
SchedulerType=sched/backfill
JobAcctGatherType=jobacct_gather/linux
AccountingStorageType=accounting_storage/none
JobCompType=jobcomp/none
MinJobAge=300
ReturnToService=2
SlurmctldTimeout=30
SlurmdTimeout=30
InactiveLimit=0
KillWait=5
Waittime=0
NodeName=$host NodeAddr=127.0.0.1 CPUs=$cpus RealMemory=$mem State=UNKNOWN
PartitionName=$PARTITION Nodes=$host Default=YES MaxTime=INFINITE State=UP
EOF
}

start_munge() {
  if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
    log "munged is already running (not started here, so not stopped by down)"
    return 0
  fi
  if [[ ! -s /etc/munge/munge.key ]]; then
    install -d -o munge -g munge -m 0700 /etc/munge
    runuser -u munge -- mungekey -c -k /etc/munge/munge.key
  fi
  chown munge:munge /etc/munge/munge.key && chmod 0400 /etc/munge/munge.key
  install -d -o munge -g munge -m 0755 /run/munge
  install -d -o munge -g munge -m 0700 /var/log/munge /var/lib/munge
  rm -f /run/munge/munged.pid
  runuser -u munge -- /usr/sbin/munged
  wait_for "$WAIT_S" test -s /run/munge/munged.pid || { log "munged wrote no pid file"; return 1; }
  record munged "$(cat /run/munge/munged.pid)"
  wait_for "$WAIT_S" bash -c 'munge -n | unmunge' || { log "munge does not answer"; return 1; }
}

start_slurm() {
  install -d -o slurm -g slurm /var/spool/slurmctld "$LOG_DIR"
  install -d /var/spool/slurmd
  rm -f /run/slurmctld.pid /run/slurmd.pid
  /usr/sbin/slurmctld
  wait_for "$WAIT_S" test -s /run/slurmctld.pid || { log "slurmctld wrote no pid file"; tail -20 "$LOG_DIR/slurmctld.log" >&2 || true; return 1; }
  record slurmctld "$(cat /run/slurmctld.pid)"
  /usr/sbin/slurmd
  wait_for "$WAIT_S" test -s /run/slurmd.pid || { log "slurmd wrote no pid file"; tail -20 "$LOG_DIR/slurmd.log" >&2 || true; return 1; }
  record slurmd "$(cat /run/slurmd.pid)"
  # a node left drained/down by an earlier run comes back with ReturnToService=2; nudge it anyway
  scontrol update nodename="$(hostname -s)" state=resume >/dev/null 2>&1 || true
  if ! wait_for "$WAIT_S" bash -c '[[ $(sinfo -h -o %t | head -1) == idle* ]]'; then
    log "node not idle after ${WAIT_S}s"
    sinfo -N -l >&2 || true
    tail -20 "$LOG_DIR/slurmctld.log" "$LOG_DIR/slurmd.log" >&2 || true
    return 1
  fi
}

running() {
  [[ -s $PIDS ]] || return 1
  local name pid
  while read -r name pid; do alive "$pid" || return 1; done <"$PIDS"
}

up() {
  if running; then
    log "already running ($(tr '\n' ' ' <"$PIDS"))"
    return 0
  fi
  [[ -e $PIDS ]] && down
  local rc=0
  install_packages || rc=$?
  ((rc == 0)) || return "$rc"
  : >"$PIDS"
  write_conf
  start_munge && start_slurm || { log "start failed; stopping what was started"; down; return 1; }
  log "up: $(sinfo -h -o '%P %t %D %c CPUs %m MB' | head -1) (pids: $(tr '\n' ' ' <"$PIDS"))"
}

down() {
  [[ -e $PIDS ]] || { log "nothing recorded in $PIDS"; forget_conf; return 0; }
  local name pid
  # reverse start order: slurmd, slurmctld, munged
  tac "$PIDS" | while read -r name pid; do
    [[ -n ${pid:-} ]] || continue
    if alive "$pid"; then
      kill -TERM "$pid" 2>/dev/null || true
      wait_for 10 bash -c "! kill -0 $pid" || { log "$name ($pid) ignored SIGTERM; SIGKILL"; kill -KILL "$pid" 2>/dev/null || true; }
    fi
    log "stopped $name ($pid)"
  done
  # stale pid files break `apt-get purge slurmctld` (its prerm calls scancel)
  rm -f /run/slurmctld.pid /run/slurmd.pid "$PIDS"
  forget_conf
}

# The config `up` wrote goes with the daemons: with it and no controller, `scontrol` waits ~10 s,
# and the Snakemake SLURM plugin runs `scontrol show config` on import, in every snakemake call.
forget_conf() {
  if grep -qs "written by kdrepro" "$CONF_DIR/slurm.conf"; then rm -f "$CONF_DIR/slurm.conf"; fi
}

case ${1:-} in
  up) up ;;
  down) down ;;
  running) running ;;
  status) sinfo ;;
  *) echo "usage: $0 up|down|running|status" >&2; exit 64 ;;
esac
