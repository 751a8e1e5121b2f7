#!/usr/bin/env bash
# Runs upstream's conformance suite the way a user would: upstream's e2e.test under ginkgo,
# against an all-ferrokube cluster that hack/local-up.sh brings up (several nodes, cluster
# DNS included), or against an existing cluster given with --kubeconfig.
#
# Usage: hack/conformance.sh [options]
#   --kubeconfig FILE   run against this cluster instead of bringing one up
#   --nodes N           nodes of the cluster brought up (default 2; the suite needs 2)
#   --procs N           parallel ginkgo processes for the non-Serial specs (default 4; most
#                       of a run is waiting, so more than the cores is fine)
#   --serial            after the non-Serial specs, run the Serial ones, alone
#   --serial-only       run only the Serial specs
#   --focus RE          run only the conformance specs matching RE (e.g. one spec's words)
#   --skip RE           skip the specs matching RE
#   --report-dir DIR    keep ginkgo's JUnit reports there (junit_01.xml; the Serial run's in
#                       DIR/serial/), default a new directory under /tmp
#   --keep-cluster      leave the cluster running at the end (hack/local-down.sh removes it)
#   --timeout DUR       ginkgo's suite timeout (default 3h)
# Environment: FERROKUBE_IMAGES_DIR (image archives for the suite, imported into every
# node's containerd: nothing can be pulled here), and what hack/local-up.sh reads.
# e2e.test, ginkgo and a kubectl of the suite's version are found as kube-apiserver is
# (hack/lib/assets.sh: TEST_ASSET_E2E_TEST / TEST_ASSET_GINKGO / TEST_ASSET_KUBECTL, then
# $KUBEBUILDER_ASSETS, /usr/local/kubebuilder/bin, $PATH); without them this prints
# `SKIPPED: ...` and exits 0. Prints passed / failed / skipped by SIG and each failed spec
# with the first line of its failure; exits 1 when a spec failed.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
source "${ROOT}/hack/lib/assets.sh"
source "${ROOT}/hack/lib/local.sh"

KUBECONFIG_GIVEN=""
NODES=2
PROCS=4
RUN_PARALLEL=1
RUN_SERIAL=0
FOCUS=""
SKIP=""
REPORT_DIR=""
KEEP=0
TIMEOUT=3h

say() { echo "conformance: $*"; }
usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//' >&2; exit 2; }
need() { [[ -n "${2:-}" ]] || { echo "conformance: $1 needs a value" >&2; exit 2; }; }

while [[ $# -gt 0 ]]; do
  case "$1" in
    --kubeconfig) need "$@"; KUBECONFIG_GIVEN="$2"; shift 2 ;;
    --nodes) need "$@"; NODES="$2"; shift 2 ;;
    --procs) need "$@"; PROCS="$2"; shift 2 ;;
    --serial) RUN_SERIAL=1; shift ;;
    --serial-only) RUN_SERIAL=1; RUN_PARALLEL=0; shift ;;
    --focus) need "$@"; FOCUS="$2"; shift 2 ;;
    --skip) need "$@"; SKIP="$2"; shift 2 ;;
    --report-dir) need "$@"; REPORT_DIR="$2"; shift 2 ;;
    --keep-cluster) KEEP=1; shift ;;
    --timeout) need "$@"; TIMEOUT="$2"; shift 2 ;;
    -h | --help) usage ;;
    *) echo "conformance: unknown argument $1" >&2; usage ;;
  esac
done
[[ "${PROCS}" =~ ^[1-9][0-9]*$ ]] || { echo "conformance: --procs must be a positive number, not '${PROCS}'" >&2; exit 2; }
[[ "${NODES}" =~ ^[1-9][0-9]*$ ]] || { echo "conformance: --nodes must be a positive number, not '${NODES}'" >&2; exit 2; }

missing=()
for bin in e2e.test ginkgo kubectl; do
  assets::find "${bin}" >/dev/null || missing+=("${bin}")
done
if ((${#missing[@]})); then
  echo "SKIPPED: no ${missing[*]} (searched $(assets::searched)); build them from the suite's tree and put them there"
  exit 0
fi
E2E_TEST="$(assets::find e2e.test)"
GINKGO="$(assets::find ginkgo)"
KUBECTL="$(assets::find kubectl)"
command -v python3 >/dev/null || { echo "conformance: python3 missing (it reads the JUnit reports)" >&2; exit 1; }

REPORT_DIR="${REPORT_DIR:-$(mktemp -d /tmp/ferrokube-conformance.XXXXXX)}"
mkdir -p "${REPORT_DIR}"
REPORT_DIR="$(cd "${REPORT_DIR}" && pwd)"

if [[ -n "${KUBECONFIG_GIVEN}" ]]; then
  KUBECONFIG_PATH="${KUBECONFIG_GIVEN}"
else
  if [[ -z "${FERROKUBE_IMAGES_DIR:-}" ]]; then
    say "WARNING: FERROKUBE_IMAGES_DIR is unset: the suite's images (agnhost, busybox, …) cannot be pulled here and most specs will fail"
  fi
  say "bringing up a ${NODES}-node local cluster"
  "${ROOT}/hack/local-up.sh" --nodes "${NODES}"
  KUBECONFIG_PATH="${DIR}/admin.kubeconfig"
  if ((KEEP)); then
    say "the cluster stays up afterwards (hack/local-down.sh removes it)"
  else
    trap '"${ROOT}/hack/local-down.sh" >/dev/null 2>&1 || true' EXIT
    # A signal ends the run through exit, so the EXIT trap removes the cluster then too.
    trap 'exit 130' INT
    trap 'exit 143' TERM
  fi
fi

# Which specs: by ginkgo label (the suite labels them Conformance, Serial, Disruptive), then
# the user's --focus/--skip on top.
FILTERS=()
[[ -z "${FOCUS}" ]] || FILTERS+=(--focus="${FOCUS}")
[[ -z "${SKIP}" ]] || FILTERS+=(--skip="${SKIP}")
E2E_ARGS=(
  --kubeconfig="${KUBECONFIG_PATH}"
  --provider=skeleton
  --dns-domain=cluster.local
  --kubectl-path="${KUBECTL}"
)

# run_suite REPORT_DIR GINKGO_ARGS...: one ginkgo run; its exit status is not ours to judge
# (the report is): a failed spec already makes ginkgo exit 1.
run_suite() {
  local dir="$1"; shift
  mkdir -p "${dir}"
  local start=${SECONDS}
  "${GINKGO}" --no-color --timeout="${TIMEOUT}" "$@" "${E2E_TEST}" -- \
    "${E2E_ARGS[@]}" --report-dir="${dir}" >"${dir}/ginkgo.log" 2>&1 || true
  say "ginkgo ran $((SECONDS - start)) s; log ${dir}/ginkgo.log, report ${dir}/junit_01.xml"
  [[ -f "${dir}/junit_01.xml" ]] || { tail -n 30 "${dir}/ginkgo.log" >&2; say "no JUnit report was written" >&2; return 1; }
}

reports=()
status=0
if ((RUN_PARALLEL)); then
  say "non-Serial conformance specs, ${PROCS} procs${FOCUS:+, focus '${FOCUS}'}${SKIP:+, skip '${SKIP}'}"
  if run_suite "${REPORT_DIR}" --procs="${PROCS}" \
    --label-filter='Conformance && !Serial && !Disruptive' "${FILTERS[@]}"; then
    reports+=("${REPORT_DIR}/junit_01.xml")
  else
    status=1
  fi
fi
if ((RUN_SERIAL)); then
  # One process: these specs change the whole cluster (taints, resource quotas, preemption).
  say "Serial conformance specs, alone${FOCUS:+, focus '${FOCUS}'}${SKIP:+, skip '${SKIP}'}"
  if run_suite "${REPORT_DIR}/serial" --label-filter='Conformance && Serial' "${FILTERS[@]}"; then
    reports+=("${REPORT_DIR}/serial/junit_01.xml")
  else
    status=1
  fi
fi

((${#reports[@]})) || exit 1
python3 "${ROOT}/hack/lib/conformance_summary.py" "${reports[@]}" | tee "${REPORT_DIR}/summary.txt" || status=1
say "reports and summary in ${REPORT_DIR}"
exit "${status}"
