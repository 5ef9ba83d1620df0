#!/usr/bin/env bash
# Stop the daemons start-cluster.sh started, by the PIDs it recorded (never by name: other
# SLURM or MariaDB processes on this machine are not ours to stop). The state folder is kept.
set -uo pipefail

STATE=${DE3PIPE_SLURM_DIR:-/tmp/de3pipe-slurm}
if [ ! -f "$STATE/pids" ]; then
  echo "no SLURM test cluster recorded in $STATE"
  exit 0
fi
# Reverse start order: node daemon and controller first, munge last.
tac "$STATE/pids" | while read -r name pid; do
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.2; done
    kill -0 "$pid" 2>/dev/null && kill -9 "$pid"
    echo "stopped $name ($pid)"
  fi
done
rm -f "$STATE/pids"
# Our configuration goes too: SLURM clients that find a slurm.conf wait for its dead controller
# (Snakemake's SLURM plugin asks scontrol at every start, ~10 s).
for conf in /etc/slurm/slurm.conf /etc/slurm/slurmdbd.conf /etc/slurm/gres.conf; do
  if [ -f "$conf" ] && grep -q "written by de3pipe tests/slurm/start-cluster.sh" "$conf"; then rm -f "$conf"; fi
done
