#!/usr/bin/env bash
# supervise.sh NAME COMMAND...: runs COMMAND and starts it again whenever it exits, as
# systemd's Restart=always (a kubeadm node's kubelet) or the kubelet's static pods (its
# control plane) would: 1 s after an exit, doubling to 16 s while it keeps failing, back to
# 1 s once a run lasted a minute. A component that exits on losing its Lease, or an API
# server killed with -9, is back without anyone's help. SIGTERM (or SIGINT) is passed to
# COMMAND, waited for, and ends the supervision. Each restart is logged as
# `supervise: NAME exited (status S) after Ts; restarting in Ds`.
set -uo pipefail
name="$1"; shift
child=""
stop() {
  [[ -z "${child}" ]] || { kill -TERM "${child}" 2>/dev/null; wait "${child}" 2>/dev/null; }
  exit 0
}
trap stop TERM INT
echo "supervise: ${name} started"
delay=1
while true; do
  started=${SECONDS}
  "$@" &
  child=$!
  wait "${child}"
  status=$?
  ran=$((SECONDS - started))
  ((ran < 60)) || delay=1
  echo "supervise: ${name} exited (status ${status}) after ${ran}s; restarting in ${delay}s"
  sleep "${delay}" &
  wait $!
  delay=$((delay < 16 ? delay * 2 : 16))
done
