#!/usr/bin/env bash
# Every benchmark side by side with upstream's component, in one go (not a test: nothing
# here runs in CI). Builds our binaries in release mode, runs each component's harness,
# and prints one table (figure, ours, upstream, ratio = ours / upstream) plus one JSON line
# per figure:  {"figure": "...", "ours": 93.2, "upstream": 196.9, "unit": "s"}
#
#   hack/bench.sh [--quick] [proxy|scheduler|controllers|kubelet|dns]...
#
# No component named: all of them. --quick: small sizes, one run each (a smoke run).
# Upstream's binaries (kube-proxy, kube-scheduler, kube-controller-manager, kubelet) are
# taken from $FERROKUBE_UPSTREAM_DIR; a missing one is a loud "SKIPPED: ..." line and its
# figures have no upstream side, never a made-up one. The harnesses:
#   proxy        proxy/bench/bench-proxy.sh (root, nft)
#   scheduler    scheduler/bench/bench-scheduler.sh (SchedulingBasic, nodes/pods)
#   controllers  cargo bench -p controllers --bench deployment_scale_up (KUBE_API_QPS=1000,
#                ours and upstream interleaved, medians)
#   kubelet      cargo bench -p kubelet --bench pod_start, once per kubelet, holding the
#                local-cluster lock (/tmp/ferrokube-local-up.lock) while it runs
#   dns          dns/bench/bench-dns.sh (ours only: no CoreDNS here)
# Each harness's full output is kept in $BENCH_OUT (default: a fresh temp dir), figure lines
# are the ones starting with {"figure"; hack/lib/bench_table.py merges and prints them.
# Env: CARGO_TARGET_DIR as for cargo; BENCH_CONTROLLER_RUNS (default 3).
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"

QUICK=0
PARTS=()
for arg in "$@"; do
  case "${arg}" in
    --quick) QUICK=1 ;;
    proxy|scheduler|controllers|kubelet|dns) PARTS+=("${arg}") ;;
    -h|--help) sed -n '2,24p' "$0"; exit 0 ;;
    *) echo "bench.sh: unknown argument ${arg} (see --help)" >&2; exit 2 ;;
  esac
done
[[ ${#PARTS[@]} -gt 0 ]] || PARTS=(proxy scheduler controllers kubelet dns)

TARGET="${CARGO_TARGET_DIR:-${ROOT}/target}"
RELEASE="${TARGET}/release"
UPSTREAM_DIR="${FERROKUBE_UPSTREAM_DIR:-}"
OUT="${BENCH_OUT:-$(mktemp -d -t ferrokube-bench.XXXXXX)}"
mkdir -p "${OUT}"
SKIPS="${OUT}/skipped.txt"
: > "${SKIPS}"

say() { echo "==> $*"; }
# A loud skip, repeated under the table at the end.
skip() { echo "SKIPPED: $*" | tee -a "${SKIPS}"; }

# Upstream's binary NAME from $FERROKUBE_UPSTREAM_DIR, or empty (with a skip line).
upstream_bin() {
  local name="$1"
  if [[ -z "${UPSTREAM_DIR}" ]]; then
    skip "upstream ${name}: FERROKUBE_UPSTREAM_DIR is not set; figures without an upstream side" >&2
  elif [[ ! -x "${UPSTREAM_DIR}/${name}" ]]; then
    skip "upstream ${name}: no executable ${UPSTREAM_DIR}/${name}; figures without an upstream side" >&2
  else
    echo "${UPSTREAM_DIR}/${name}"
  fi
}

# Runs a harness (the rest of the arguments) with its output in $OUT/PART.log, shown as it
# goes; a harness that fails or prints no figure line is reported, never hidden.
run_harness() {
  local part="$1"; shift
  local log="${OUT}/${part}.log"
  say "${part}: $*"
  local start=${SECONDS}
  "$@" 2>&1 | tee -a "${log}"
  local rc=${PIPESTATUS[0]}
  say "${part}: done in $((SECONDS - start)) s (exit ${rc})"
  if [[ ${rc} -ne 0 ]]; then
    skip "${part}: harness exited ${rc} (log ${log})"
  fi
  grep -E '^SKIPPED' "${log}" | sort -u | while read -r line; do
    grep -qxF "${line} (${part})" "${SKIPS}" || echo "${line} (${part})" >> "${SKIPS}"
  done
  if ! grep -qE '^\{"figure"' "${log}"; then
    skip "${part}: the harness printed no figure lines (log ${log})"
  fi
}

bench_proxy() {
  if [[ ${EUID} -ne 0 ]] || ! command -v nft >/dev/null; then
    skip "proxy: needs root and nft"
    return
  fi
  local sizes=1000,10000
  [[ ${QUICK} -eq 1 ]] && sizes=100
  local args=(--sizes "${sizes}" --binary "${RELEASE}/kube-proxy")
  local up
  up="$(upstream_bin kube-proxy)" && [[ -n "${up}" ]] && args+=(--binary "${up}")
  run_harness proxy proxy/bench/bench-proxy.sh "${args[@]}"
}

bench_scheduler() {
  local nodes=5000 pods=10000
  [[ ${QUICK} -eq 1 ]] && nodes=100 pods=200
  # The script takes ours from the target dir and upstream's from FERROKUBE_UPSTREAM_DIR.
  upstream_bin kube-scheduler >/dev/null
  run_harness scheduler scheduler/bench/bench-scheduler.sh "${nodes}" "${pods}"
}

bench_controllers() {
  local replicas=1000 runs="${BENCH_CONTROLLER_RUNS:-3}"
  [[ ${QUICK} -eq 1 ]] && replicas=100 runs=1
  local up
  up="$(upstream_bin kube-controller-manager)"
  KCM_BINARY="${RELEASE}/kube-controller-manager" KCM_UPSTREAM_BINARY="${up}" \
    KUBE_API_QPS=1000 REPLICAS="${replicas}" RUNS="${runs}" \
    run_harness controllers cargo bench -p controllers --bench deployment_scale_up
}

bench_kubelet() {
  # Real containerd and CNI: one at a time with the local clusters (hack/local-up.sh).
  local lock=/tmp/ferrokube-local-up.lock
  local up
  up="$(upstream_bin kubelet)"
  exec 9>"${lock}"
  say "kubelet: waiting for ${lock}"
  if ! flock -w 900 9; then
    skip "kubelet: ${lock} still held after 15 min (a local cluster is running)"
    exec 9>&-
    return
  fi
  FERROKUBE_BIN_DIR="${RELEASE}" run_harness kubelet cargo bench -p kubelet --bench pod_start
  if [[ -n "${up}" ]]; then
    KUBELET_BINARY="${up}" run_harness kubelet cargo bench -p kubelet --bench pod_start
  fi
  exec 9>&-
}

bench_dns() {
  if ! command -v dnsperf >/dev/null || ! command -v taskset >/dev/null; then
    skip "dns: needs dnsperf and taskset"
    return
  fi
  skip "dns: no upstream side (CoreDNS is not run by the harness); ours only"
  local args=(--sizes 1000,10000)
  [[ ${QUICK} -eq 1 ]] && args=(--sizes 1000 --seconds 3 --loads 20000)
  run_harness dns dns/bench/bench-dns.sh "${args[@]}"
}

# Our binaries, release mode, for the parts asked for.
packages=()
for part in "${PARTS[@]}"; do
  case "${part}" in
    controllers) packages+=(-p controllers) ;;
    *) packages+=(-p "${part}") ;;
  esac
done
say "building ${PARTS[*]} (release) into ${RELEASE}"
if ! cargo build --release "${packages[@]}" --bins; then
  echo "bench.sh: release build failed" >&2
  exit 1
fi

say "output in ${OUT}; load average $(cut -d' ' -f1-3 /proc/loadavg), $(nproc) cores"
for part in "${PARTS[@]}"; do
  "bench_${part}"
done

echo
echo "## ferrokube vs upstream ($(date -u +%Y-%m-%dT%H:%MZ), ${PARTS[*]}$([[ ${QUICK} -eq 1 ]] && echo ', --quick'))"
echo
cat "${OUT}"/*.log 2>/dev/null > "${OUT}/all.txt"
python3 "${ROOT}/hack/lib/bench_table.py" "${OUT}/all.txt" | tee "${OUT}/table.md"
if [[ -s "${SKIPS}" ]]; then
  echo
  sort -u "${SKIPS}"
fi
