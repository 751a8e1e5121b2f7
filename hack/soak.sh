#!/usr/bin/env bash
# Soak: churns a local cluster at a steady rate and samples every component's resources, to
# find what grows (issue 16). Not in CI: it runs for an hour by default.
#
#   hack/soak.sh [--duration 1h] [--interval 30s] [--period 10s] [--out DIR] [--existing]
#
# Brings up hack/local-up.sh's cluster (one node; under the machine-wide local-cluster lock
# /tmp/ferrokube-local-up.lock, removed again at the end), or with --existing uses the one in
# ${FERROKUBE_LOCAL_DIR:-/tmp/ferrokube-local} and leaves it running.
#
# Churn, one cycle every --period: Deployment and ClusterIP Service soak-N (2 busybox pods)
# and a bare pod soak-pod-N are created; those of cycle N-3 are deleted (so ~9 pods live;
# 18 pods created and deleted a minute at the default period).
#
# Every --interval, for each component (kube-apiserver, etcd, kube-scheduler,
# kube-controller-manager, each node's containerd, kubelet and kube-proxy, each cluster DNS
# replica): resident memory, open file descriptors and threads from /proc/<pid>, its task
# count from /metrics (ferrokube's tokio_alive_tasks; upstream's go_goroutines for the API
# server and etcd) and its supervisor's restarts, one CSV row each in DIR/soak.csv
# (default $CARGO_TARGET_DIR/soak-<date>/).
#
# Verdict per component: a least-squares line over the samples of the second half (the first
# is warm-up: caches, connection pools, the allocator's arenas) gives growth per hour of RSS,
# fds, threads and tasks; above its threshold (SOAK_MAX_RSS_MIB_PER_H=16,
# SOAK_MAX_FDS_PER_H=10, SOAK_MAX_THREADS_PER_H=4, SOAK_MAX_TASKS_PER_H=50), or any restart,
# is a FAIL. The API server, etcd and containerd (not ours; etcd's memory follows its
# database) are reported but not judged. Exits 1 if a ferrokube component failed.
# Environment: as hack/local-up.sh (FERROKUBE_BIN_DIR, FERROKUBE_SKIP_BUILD, ...).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LOG_PREFIX=soak
source "${ROOT}/hack/lib/local.sh"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }

# Seconds of a duration written as N, Ns, Nm or Nh.
seconds_of() {
  local v="$1"
  case "${v}" in
    *h) echo $((${v%h} * 3600)) ;;
    *m) echo $((${v%m} * 60)) ;;
    *s) echo "${v%s}" ;;
    *) echo "${v}" ;;
  esac
}

duration=1h interval=30s period=10s out="" existing=0
while (($#)); do
  case "$1" in
    --duration) duration="${2:?}"; shift 2 ;;
    --interval) interval="${2:?}"; shift 2 ;;
    --period) period="${2:?}"; shift 2 ;;
    --out) out="${2:?}"; shift 2 ;;
    --existing) existing=1; shift ;;
    -h | --help) usage; exit 0 ;;
    *) echo "soak: unknown argument $1" >&2; usage >&2; exit 2 ;;
  esac
done
for v in "${duration}" "${interval}" "${period}"; do
  [[ "${v}" =~ ^[0-9]+[smh]?$ ]] || { echo "soak: '${v}' is no duration (N, Ns, Nm or Nh)" >&2; exit 2; }
done
DURATION="$(seconds_of "${duration}")" INTERVAL="$(seconds_of "${interval}")" PERIOD="$(seconds_of "${period}")"
((DURATION >= 2 * INTERVAL && INTERVAL > 0 && PERIOD > 0)) ||
  { echo "soak: --duration must hold at least two --interval" >&2; exit 2; }
[[ ${EUID} -eq 0 ]] || { echo "soak: needs root (local-up, /proc of the nodes' processes)" >&2; exit 1; }
out="${out:-${CARGO_TARGET_DIR:-${ROOT}/target}/soak-$(date -u +%Y%m%dT%H%M%SZ)}"
mkdir -p "${out}"
CSV="${out}/soak.csv"
KUBECONFIG_FILE="${DIR}/admin.kubeconfig"

source "${ROOT}/hack/lib/assets.sh"
assets::require kubectl
k() { "${ASSET_KUBECTL}" --kubeconfig="${KUBECONFIG_FILE}" "$@"; }

churn_pid=""
cleanup() {
  [[ -z "${churn_pid}" ]] || { kill "${churn_pid}" 2>/dev/null; wait "${churn_pid}" 2>/dev/null || true; }
  if ((existing)); then
    k delete deployments,services,pods -l soak=churn --wait=false >/dev/null 2>&1 || true
  elif [[ -f "${PIDS}" ]]; then
    log "removing the cluster"
    k delete deployments,pods --all --grace-period=1 --timeout=60s >/dev/null 2>&1 || true
    "${ROOT}/hack/local-down.sh" >>"${out}/local-down.log" 2>&1 || true
  fi
}
trap cleanup EXIT

if ((existing)); then
  [[ -f "${PIDS}" && -f "${KUBECONFIG_FILE}" ]] ||
    { echo "soak: --existing, but no local cluster in ${DIR}" >&2; exit 1; }
else
  exec 9>/tmp/ferrokube-local-up.lock
  log "waiting for the local-cluster lock"
  flock -w 1800 9 || { echo "soak: another local cluster held the lock for 30 min" >&2; exit 1; }
  log "bringing up a local cluster (log: ${out}/local-up.log)"
  "${ROOT}/hack/local-up.sh" >"${out}/local-up.log" 2>&1 ||
    { tail -n 30 "${out}/local-up.log" >&2; exit 1; }
fi
NODE_LIST="$(local::nodes)"

# A bearer token for the control-plane components' /metrics (upstream's bootstrap
# system:monitoring role; their delegated authentication takes tokens).
k -n kube-system create serviceaccount soak-scraper >/dev/null 2>&1 || true
k create clusterrolebinding soak-scraper --clusterrole=system:monitoring \
  --serviceaccount=kube-system:soak-scraper >/dev/null 2>&1 || true
TOKEN="$(k -n kube-system create token soak-scraper --duration=24h)"

# The churn, in the background: one cycle per PERIOD.
churn() {
  local i=0 old t0
  while true; do
    t0=${SECONDS}
    k create deployment "soak-${i}" --image=busybox:1.35 --replicas=2 -- sleep 3600 >/dev/null
    k label deployment "soak-${i}" soak=churn >/dev/null
    k expose deployment "soak-${i}" --port=80 --target-port=8080 --labels=soak=churn >/dev/null
    k run "soak-pod-${i}" --image=busybox:1.35 --labels=soak=churn --restart=Never \
      --overrides='{"spec":{"terminationGracePeriodSeconds":1}}' -- sleep 3600 >/dev/null
    old=$((i - 3))
    if ((old >= 0)); then
      k delete deployment "soak-${old}" --wait=false >/dev/null
      k delete service "soak-${old}" --wait=false >/dev/null
      k delete pod "soak-pod-${old}" --grace-period=1 --wait=false >/dev/null
    fi
    i=$((i + 1))
    echo "${i}" >"${out}/cycles"
    sleep $((PERIOD > SECONDS - t0 ? PERIOD - (SECONDS - t0) : 0))
  done
}
churn >>"${out}/churn.log" 2>&1 &
churn_pid=$!

# The process local-up recorded as $1 (its supervisor's child).
component_pid() {
  local sup
  sup="$(local::pid_of "$1")"
  [[ -n "${sup}" ]] && pgrep -P "${sup}" | head -n 1
}

# The cluster DNS replicas' server processes (in this cluster's pod cgroups).
dns_pids() {
  local p
  for p in $(pgrep -x ferrokube-dns); do
    grep -q "${CGROUP_PARENT}" "/proc/${p}/cgroup" 2>/dev/null && echo "${p}"
  done
}

# The value of metric $1 in the exposition on stdin.
metric() { awk -v m="$1" '$1 == m { print $2; exit }'; }

# The task count of component $1 (pid $2), or empty.
tasks_of() {
  local node
  case "$1" in
    kube-apiserver) k get --raw /metrics 2>/dev/null | metric go_goroutines ;;
    etcd) curl -s --max-time 5 "http://127.0.0.1:$(etcd_port)/metrics" | metric go_goroutines ;;
    kube-scheduler | kube-controller-manager)
      local port=10259
      [[ "$1" == kube-scheduler ]] || port=10257
      curl -sk --max-time 5 -H "Authorization: Bearer ${TOKEN}" \
        "https://127.0.0.1:${port}/metrics" | metric tokio_alive_tasks ;;
    */kubelet) node="${1%/kubelet}"
      k get --raw "/api/v1/nodes/${node}/proxy/metrics" 2>/dev/null | metric tokio_alive_tasks ;;
    */kube-proxy) node="${1%/kube-proxy}"
      ip netns exec "${node}" curl -s --max-time 5 http://127.0.0.1:10249/metrics | metric tokio_alive_tasks ;;
    dns-*) nsenter --net="/proc/$2/ns/net" curl -s --max-time 5 http://127.0.0.1:9153/metrics |
      metric tokio_alive_tasks ;;
  esac
}
etcd_port() {
  tr '\0' '\n' <"/proc/$(component_pid etcd)/cmdline" |
    sed -n 's|^--listen-client-urls=http://127.0.0.1:||p'
}

# Supervisor restarts of $1 (lines in its log).
restarts_of() {
  [[ "$1" == dns-* ]] && { echo 0; return; }
  grep -c "^supervise: $1 exited" "${LOGS}/$1.log" 2>/dev/null || true
}

sample() {
  local t="$1" name pid rss threads fds tasks node components=(kube-apiserver etcd kube-scheduler kube-controller-manager)
  for node in ${NODE_LIST}; do components+=("${node}/containerd" "${node}/kubelet" "${node}/kube-proxy"); done
  local i=0
  for pid in $(dns_pids); do i=$((i + 1)); components+=("dns-${i}:${pid}"); done
  for name in "${components[@]}"; do
    if [[ "${name}" == dns-*:* ]]; then pid="${name#*:}" name="${name%:*}"; else pid="$(component_pid "${name}" || true)"; fi
    [[ -n "${pid}" && -d "/proc/${pid}" ]] || { echo "${t},${name},,,,,,$(restarts_of "${name}")" >>"${CSV}"; continue; }
    rss="$(awk '/^VmRSS:/ { print $2 }' "/proc/${pid}/status")"
    threads="$(awk '/^Threads:/ { print $2 }' "/proc/${pid}/status")"
    fds="$(find "/proc/${pid}/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)"
    tasks="$(tasks_of "${name}" "${pid}" || true)"
    echo "${t},${name},${pid},${rss},${fds},${threads},${tasks},$(restarts_of "${name}")" >>"${CSV}"
  done
}

echo "t_seconds,component,pid,rss_kib,fds,threads,tasks,restarts" >"${CSV}"
log "churning every ${PERIOD}s for ${DURATION}s, sampling every ${INTERVAL}s into ${CSV}"
start=${SECONDS}
while ((SECONDS - start < DURATION)); do
  next=$((SECONDS + INTERVAL))
  sample $((SECONDS - start))
  kill -0 "${churn_pid}" 2>/dev/null || { echo "soak: the churn stopped (see ${out}/churn.log)" >&2; exit 1; }
  now=${SECONDS}
  ((next <= now)) || sleep $((next - now))
done
sample $((SECONDS - start))
kill "${churn_pid}" 2>/dev/null || true
wait "${churn_pid}" 2>/dev/null || true
churn_pid=""
log "$(cat "${out}/cycles" 2>/dev/null || echo 0) churn cycles; $(k get pods --no-headers 2>/dev/null | wc -l) pods at the end"

# The verdict: slopes over the second half.
python3 - "${CSV}" "${DURATION}" <<'PY'
import csv, os, sys
path, duration = sys.argv[1], float(sys.argv[2])
limits = {"rss_kib": float(os.environ.get("SOAK_MAX_RSS_MIB_PER_H", 16)) * 1024,
          "fds": float(os.environ.get("SOAK_MAX_FDS_PER_H", 10)),
          "threads": float(os.environ.get("SOAK_MAX_THREADS_PER_H", 4)),
          "tasks": float(os.environ.get("SOAK_MAX_TASKS_PER_H", 50))}
not_ours = ("kube-apiserver", "etcd")
rows = {}
for r in csv.DictReader(open(path)):
    rows.setdefault(r["component"], []).append(r)

def slope(points):
    n = len(points)
    if n < 2:
        return None
    mx = sum(x for x, _ in points) / n
    my = sum(y for _, y in points) / n
    var = sum((x - mx) ** 2 for x, _ in points)
    return None if var == 0 else sum((x - mx) * (y - my) for x, y in points) / var * 3600

failed = False
print(f"{'component':<34}{'RSS MiB':>16}{'/h':>8}{'fds':>10}{'/h':>8}{'threads':>10}{'/h':>7}{'tasks':>12}{'/h':>8}{'restarts':>9}  verdict")
for name, rs in rows.items():
    judged = not (name in not_ours or name.endswith("/containerd"))
    why = []
    cols = []
    for key in ("rss_kib", "fds", "threads", "tasks"):
        pts = [(float(r["t_seconds"]), float(r[key])) for r in rs
               if r[key] and float(r["t_seconds"]) >= duration / 2]
        vals = [float(r[key]) for r in rs if r[key]]
        s = slope(pts)
        scale = 1024 if key == "rss_kib" else 1
        first_last = f"{vals[0]/scale:.0f}→{vals[-1]/scale:.0f}" if vals else "-"
        cols += [first_last, "-" if s is None else f"{s/scale:+.1f}"]
        if s is not None and s > limits[key]:
            why.append(f"{key} +{s/scale:.1f}/h")
    pids = {r["pid"] for r in rs if r["pid"]}
    restarts = max(int(r["restarts"] or 0) for r in rs)
    if restarts or len(pids) > 1 or any(not r["pid"] for r in rs):
        why.append(f"restarted ({restarts} by its supervisor, pids {sorted(pids)})")
    verdict = ("FAIL: " + ", ".join(why)) if why and judged else ("ok" if not why else "(not judged) " + ", ".join(why))
    failed |= bool(why) and judged
    print(f"{name:<34}{cols[0]:>16}{cols[1]:>8}{cols[2]:>10}{cols[3]:>8}{cols[4]:>10}{cols[5]:>7}{cols[6]:>12}{cols[7]:>8}{restarts:>9}  {verdict}")
print(f"(first→last sample; /h: growth per hour over the second half; CSV: {path})")
sys.exit(1 if failed else 0)
PY
