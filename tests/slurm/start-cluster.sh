#!/usr/bin/env bash
# Bring up a single-node SLURM cluster on this machine, as on a real cluster: munge
# authentication, slurmctld + slurmd, and accounting through slurmdbd + MariaDB (so `sacct`
# works and the Snakemake SLURM executor runs with its defaults). Debian packages, run as
# root, no systemd: every daemon is started here and its PID recorded for stop-cluster.sh.
#
#   sudo tests/slurm/start-cluster.sh        # idempotent: does nothing when it already runs
#   tests/slurm/stop-cluster.sh
#
# The node offers the machine's CPUs, 90% of its memory and one GPU slot (a GRES without a
# device: jobs that request `--gpus=1` are scheduled exactly as on a GPU partition and run on
# the CPU). Partition "main", account "de3pipe", cluster "de3pipe".
set -euo pipefail

STATE=${DE3PIPE_SLURM_DIR:-/tmp/de3pipe-slurm}
CLUSTER=de3pipe
ACCOUNT=de3pipe
PARTITION=main

if [ "$(id -u)" != 0 ]; then
  echo "start-cluster.sh must run as root (it installs Debian packages and starts daemons)" >&2
  exit 1
fi
if [ -f "$STATE/pids" ] && scontrol ping >/dev/null 2>&1; then
  echo "SLURM test cluster already running (state in $STATE)"
  exit 0
fi

packages=(slurm-wlm slurmdbd munge mariadb-server)
if ! dpkg -s "${packages[@]}" >/dev/null 2>&1; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -q "${packages[@]}" >/dev/null 2>&1 || {
    apt-get update -q >/dev/null && apt-get install -y -q "${packages[@]}" >/dev/null
  }
fi

# A fresh controller state each start (no drained node or stale job from an earlier run).
rm -rf "$STATE/ctld" "$STATE/spool"
mkdir -p "$STATE"/{log,ctld,spool,mysql,run}
: >"$STATE/pids"
record() { echo "$1 $2" >>"$STATE/pids"; }
# A failed start stops what it had started, so a retry begins clean.
trap 'echo "SLURM test cluster failed to start; logs in $STATE/log" >&2; "$(dirname "$0")/stop-cluster.sh"' ERR

wait_for() { # wait_for DESCRIPTION COMMAND...: poll for up to 60 s
  local what=$1
  shift
  for _ in $(seq 120); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.5
  done
  echo "timed out waiting for $what; logs in $STATE/log" >&2
  exit 1
}

# --- munge: the shared key authenticates every SLURM message -----------------------------
if [ ! -s /etc/munge/munge.key ]; then mungekey --create --force; fi
chown munge:munge /etc/munge/munge.key && chmod 400 /etc/munge/munge.key
install -d -o munge -g munge /run/munge /var/log/munge /var/lib/munge
runuser -u munge -- /usr/sbin/munged --force
wait_for munged test -s /run/munge/munged.pid
record munged "$(cat /run/munge/munged.pid)"

# --- MariaDB for slurmdbd ------------------------------------------------------------------
chown mysql:mysql "$STATE/mysql"
if [ ! -d "$STATE/mysql/mysql" ]; then
  mariadb-install-db --user=mysql --datadir="$STATE/mysql" --auth-root-authentication-method=socket >/dev/null
fi
install -d -o mysql -g mysql /run/mysqld
setsid /usr/sbin/mariadbd --user=mysql --datadir="$STATE/mysql" --socket=/run/mysqld/mysqld.sock \
  --pid-file=/run/mysqld/mariadb.pid --skip-networking=0 --bind-address=127.0.0.1 --port=3306 \
  >"$STATE/log/mariadb.log" 2>&1 &
record mariadbd $!
wait_for mariadb mariadb --socket=/run/mysqld/mysqld.sock -e "select 1"
mariadb --socket=/run/mysqld/mysqld.sock <<'SQL'
CREATE DATABASE IF NOT EXISTS slurm_acct_db;
CREATE USER IF NOT EXISTS 'slurm'@'localhost' IDENTIFIED BY 'slurm';
GRANT ALL ON slurm_acct_db.* TO 'slurm'@'localhost';
FLUSH PRIVILEGES;
SQL

# --- configuration --------------------------------------------------------------------------
HOST=$(hostname -s)
CPUS=$(nproc)
MEM_MB=$(awk '/MemTotal/ {print int($2 / 1024 * 0.9)}' /proc/meminfo)
mkdir -p /etc/slurm
MARK="# written by de3pipe tests/slurm/start-cluster.sh; removed by stop-cluster.sh"
cat >/etc/slurm/slurmdbd.conf <<EOF
$MARK
AuthType=auth/munge
DbdHost=localhost
SlurmUser=root
PidFile=$STATE/run/slurmdbd.pid
LogFile=$STATE/log/slurmdbd.log
StorageType=accounting_storage/mysql
StorageHost=localhost
StorageUser=slurm
StoragePass=slurm
StorageLoc=slurm_acct_db
EOF
chmod 600 /etc/slurm/slurmdbd.conf

cat >/etc/slurm/gres.conf <<EOF
$MARK
NodeName=$HOST Name=gpu File=/dev/null Count=1
EOF

cat >/etc/slurm/slurm.conf <<EOF
$MARK
ClusterName=$CLUSTER
SlurmctldHost=$HOST
SlurmUser=root
SlurmdUser=root
AuthType=auth/munge
StateSaveLocation=$STATE/ctld
SlurmdSpoolDir=$STATE/spool
SlurmctldPidFile=$STATE/run/slurmctld.pid
SlurmdPidFile=$STATE/run/slurmd.pid
SlurmctldLogFile=$STATE/log/slurmctld.log
SlurmdLogFile=$STATE/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/affinity
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
MpiDefault=none
ReturnToService=2
GresTypes=gpu
AccountingStorageType=accounting_storage/slurmdbd
AccountingStorageHost=localhost
AccountingStorageTRES=gres/gpu
AccountingStorageEnforce=associations
JobAcctGatherType=jobacct_gather/linux
JobCompType=jobcomp/none
# sacct shows the comment the executor sets (rule and wildcards of each job).
AccountingStoreFlags=job_comment
# Keep finished jobs visible to squeue for a while (the executor's fallback status check).
MinJobAge=600
SchedulerParameters=sched_interval=2
NodeName=$HOST CPUs=$CPUS RealMemory=$MEM_MB Gres=gpu:1 State=UNKNOWN
PartitionName=$PARTITION Nodes=$HOST Default=YES MaxTime=INFINITE State=UP
EOF

# --- slurmdbd, the accounting associations, then the controller and the node daemon ----------
setsid /usr/sbin/slurmdbd -D >"$STATE/log/slurmdbd.out" 2>&1 &
record slurmdbd $!
wait_for slurmdbd sacctmgr -n list cluster
sacctmgr -i add cluster "$CLUSTER" >/dev/null || true
sacctmgr -i add account "$ACCOUNT" cluster="$CLUSTER" description=de3pipe organization=de3pipe >/dev/null || true
for user in root $(logname 2>/dev/null || true); do
  sacctmgr -i add user "$user" account="$ACCOUNT" cluster="$CLUSTER" >/dev/null || true
done

setsid /usr/sbin/slurmctld -D -i >"$STATE/log/slurmctld.out" 2>&1 &
record slurmctld $!
wait_for slurmctld scontrol ping
setsid /usr/sbin/slurmd -D >"$STATE/log/slurmd.out" 2>&1 &
record slurmd $!
wait_for "node $HOST to be idle" bash -c "sinfo -h -n $HOST -o %t | grep -qx idle"

echo "SLURM test cluster up: partition $PARTITION, node $HOST ($CPUS CPUs, $MEM_MB MB, 1 GPU slot), account $ACCOUNT; state in $STATE"
