#!/usr/bin/env bash
# Start or stop a real single-node SLURM cluster on this Debian machine (as root, no systemd):
# munge, slurmctld and slurmd from Debian's packages, one partition, one GPU declared through
# gres so GPU requests schedule. Meant for tests and trying the slurm profile locally.
#
#   scripts/slurm-cluster.sh start    # install if needed, configure, start; waits until idle
#   scripts/slurm-cluster.sh stop
#   scripts/slurm-cluster.sh status
set -euo pipefail

CONF=/etc/slurm/slurm.conf   # must be here: the job-step plugin drops SLURM_CONF
HOST=$(hostname -s)
PARTITION=${SDOFM_SLURM_PARTITION:-gpu}
GPU_TYPE=${SDOFM_SLURM_GPU_TYPE:-h200}
LOGS=/var/log/slurm

install() {
    if ! command -v slurmctld >/dev/null || ! command -v munged >/dev/null; then
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
            slurmctld slurmd slurm-client munge >/dev/null
    fi
}

configure() {
    local cpus mem
    cpus=$(nproc)
    mem=$(( $(awk '/MemTotal/ {print $2}' /proc/meminfo) / 1024 - 1024 ))
    mkdir -p /etc/slurm /var/spool/slurmctld /var/spool/slurmd "$LOGS"
    # A fresh controller numbers jobs from 1 again: start its completion log afresh too.
    [ -e /var/spool/slurmctld/job_state ] || : > "$LOGS/jobcomp.log"
    cat > "$CONF" <<CONF
# Written by scripts/slurm-cluster.sh: a single-node test cluster.
ClusterName=sdofm-test
SlurmctldHost=$HOST
AuthType=auth/munge
SlurmUser=root
SlurmdUser=root
StateSaveLocation=/var/spool/slurmctld
SlurmdSpoolDir=/var/spool/slurmd
SlurmctldPidFile=/run/slurmctld.pid
SlurmdPidFile=/run/slurmd.pid
SlurmctldLogFile=$LOGS/slurmctld.log
SlurmdLogFile=$LOGS/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
ReturnToService=2
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
GresTypes=gpu
# No accounting daemon: completed jobs go to a text file, and squeue must report status, so
# finished jobs stay visible for a while (MinJobAge).
AccountingStorageType=accounting_storage/none
JobAcctGatherType=jobacct_gather/none
JobCompType=jobcomp/filetxt
JobCompLoc=$LOGS/jobcomp.log
MinJobAge=600
KillWait=5
InactiveLimit=0
NodeName=$HOST CPUs=$cpus RealMemory=$mem Gres=gpu:$GPU_TYPE:1 State=UNKNOWN
PartitionName=$PARTITION Nodes=ALL Default=YES MaxTime=INFINITE State=UP
CONF
    # A stand-in GPU device (this machine has none): slurmd counts gres/gpu by its device
    # files; with task/none nothing is bound to it, so GPU requests simply schedule.
    echo "NodeName=$HOST Name=gpu Type=$GPU_TYPE File=/dev/null" > /etc/slurm/gres.conf
    if [ ! -s /etc/munge/munge.key ]; then
        dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key status=none
    fi
    chown munge:munge /etc/munge/munge.key
    chmod 400 /etc/munge/munge.key
    mkdir -p /run/munge /var/log/munge /var/lib/munge
    chown munge:munge /run/munge /var/log/munge /var/lib/munge
}

start() {
    install
    configure
    pgrep -x munged >/dev/null || runuser -u munge -- /usr/sbin/munged
    pgrep -x slurmctld >/dev/null || slurmctld
    pgrep -x slurmd >/dev/null || slurmd
    for _ in $(seq 60); do
        if sinfo -h -o %T 2>/dev/null | grep -qE '^(idle|mixed|allocated)'; then
            sinfo
            return 0
        fi
        scontrol update nodename="$HOST" state=resume >/dev/null 2>&1 || true
        sleep 1
    done
    echo "slurm-cluster: the node did not become idle; see $LOGS" >&2
    exit 1
}

stop() {
    for daemon in slurmd slurmctld munged; do
        pkill -x "$daemon" 2>/dev/null || true
    done
    for _ in $(seq 20); do
        pgrep -x slurmd >/dev/null || pgrep -x slurmctld >/dev/null || return 0
        sleep 0.5
    done
}

case "${1:-}" in
    start) start ;;
    stop) stop ;;
    status) sinfo && squeue ;;
    *) echo "usage: $0 start|stop|status" >&2; exit 2 ;;
esac
