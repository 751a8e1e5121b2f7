#!/usr/bin/env bash
# THE test command (README, CI): installs what is missing, builds, runs every tier and ends
# with one summary line per tier:
#   unit: N passed, N failed, N skipped        lib and bin unit tests of every crate
#   component: ...                             integration tests (tests/) of the component
#                                              crates, with real containerd / nftables / netns
#   e2e: ...                                   e2e/tests against a real kube-apiserver + etcd
#   lint: ...                                  cargo fmt --check, cargo clippy -D warnings,
#                                              check-layers (no import circle wider than a
#                                              parent module and its children)
# In every tier, tests that record a skip (no kube-apiserver, no containerd: see e2e::skip)
# count as skipped, never as passed. Exits non-zero if anything failed. Uses cargo-nextest
# when installed, else cargo test.
#
# Environment: FERROKUBE_TEST_RUNNER=cargo|nextest forces a runner; FERROKUBE_TEST_TIERS
# (default "unit component e2e lint") runs fewer tiers; FERROKUBE_E2E_REQUIRED=1 makes skips
# for a missing control plane failures; KUBEBUILDER_ASSETS as for hack/local-up.sh.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${ROOT}"
TIERS="${FERROKUBE_TEST_TIERS:-unit component e2e lint}"
WORK="$(mktemp -d -t ferrokube-test.XXXXXX)"
trap 'rm -rf "${WORK}"' EXIT
SUMMARY=()
FAILED=0

if [[ -n "${FERROKUBE_TEST_RUNNER:-}" ]]; then RUNNER="${FERROKUBE_TEST_RUNNER}"
elif command -v cargo-nextest >/dev/null; then RUNNER=nextest; else RUNNER=cargo; fi

say() { echo "==> $*"; }

# Counts "passed failed skipped" in a nextest output file from its final Summary line.
count_nextest() {
  local line passed=0 failed=0 skipped=0 part n word
  line="$(grep -E '^ *Summary \[' "$1" | tail -n 1 || true)"
  if [[ -n "${line}" ]]; then
    line="$(sed -E 's/.*tests? run: //; s/\([^)]*\)//g' <<<"${line}")"
    IFS=',' read -ra parts <<<"${line}"
    for part in "${parts[@]}"; do
      read -r n word _ <<<"${part}"
      [[ "${n}" =~ ^[0-9]+$ ]] || continue
      case "${word}" in
        passed) passed=$((passed + n)) ;;
        skipped) skipped=$((skipped + n)) ;;
        *) failed=$((failed + n)) ;; # failed, timed out, exec failed, not run, ...
      esac
    done
  fi
  echo "${passed} ${failed} ${skipped}"
}

# Same, from cargo test's "test result:" lines (one per test binary).
count_cargo() {
  grep -E '^test result:' "$1" | awk '
    { for (i = 1; i <= NF; i++) {
        if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i;
        if ($(i+1) ~ /^ignored/) s += $i } }
    END { printf "%d %d %d\n", p, f, s }'
}

# run_tier NAME NEXTEST_ARGS... -- CARGO_TEST_ARGS...
# Tests that cannot run here (no kube-apiserver, no containerd, ...) record their names in
# $FERROKUBE_SKIP_LOG (see e2e::skip); they are moved from "passed" to "skipped".
run_tier() {
  local name="$1"; shift
  local skiplog="${WORK}/${name}.skipped"
  : >"${skiplog}"
  export FERROKUBE_SKIP_LOG="${skiplog}"
  local nextest_args=() cargo_args=() seen=0 arg
  for arg in "$@"; do
    if [[ "${arg}" == -- && ${seen} == 0 ]]; then seen=1; continue; fi
    if ((seen)); then cargo_args+=("${arg}"); else nextest_args+=("${arg}"); fi
  done
  local out="${WORK}/${name}.out" rc=0 counts
  say "${name} tests"
  if [[ ${RUNNER} == nextest ]]; then
    cargo nextest run --no-fail-fast --no-tests=pass \
      --tool-config-file "ferrokube:${ROOT}/hack/nextest.toml" "${nextest_args[@]}" \
      2>&1 | tee "${out}" || rc=$?
    counts="$(count_nextest "${out}")"
  else
    cargo test --no-fail-fast "${cargo_args[@]}" 2>&1 | tee "${out}" || rc=$?
    counts="$(count_cargo "${out}")"
  fi
  local passed failed skipped
  read -r passed failed skipped <<<"${counts}"
  if [[ -s "${skiplog}" ]]; then
    local recorded
    recorded="$(sort -u "${skiplog}" | wc -l)"
    passed=$((passed - recorded))
    skipped=$((skipped + recorded))
    ((passed >= 0)) || passed=0
    echo
    echo "SKIPPED ${name} tests (${recorded}):"
    sort -u "${skiplog}" | sed -E 's/^(SKIPPED: )?/  SKIPPED: /'
  fi
  unset FERROKUBE_SKIP_LOG
  if ((rc != 0 && failed == 0)); then
    failed=1 # the build or the runner itself failed: see the output above
  fi
  ((failed == 0)) || FAILED=1
  SUMMARY+=("${name}: ${passed} passed, ${failed} failed, ${skipped} skipped")
}

lint() {
  local passed=0 failed=0 what=()
  say "lint"
  if cargo fmt --all --check; then passed=$((passed + 1)); else failed=$((failed + 1)); what+=(fmt); fi
  if cargo clippy --workspace --all-targets --quiet -- -D warnings; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1)); what+=(clippy)
  fi
  if cargo run --quiet -p check-layers; then
    passed=$((passed + 1))
  else
    failed=$((failed + 1)); what+=(check-layers)
  fi
  ((failed == 0)) || FAILED=1
  SUMMARY+=("lint: ${passed} passed, ${failed} failed, 0 skipped${what:+ (failed: ${what[*]})}")
}

# Free space where the build goes: a full disk shows up as linker "Bus error"s, so say it.
report_disk() {
  local dir="${CARGO_TARGET_DIR:-${ROOT}/target}"
  mkdir -p "${dir}"
  echo "disk ($1): $(df -h --output=avail,size "${dir}" | tail -n 1 | awk '{print $1 " free of " $2}')" \
    "at ${dir}, target $(du -sh "${dir}" 2>/dev/null | cut -f1)"
}

main() {
  local start=${SECONDS}
  # A fresh clone gains nothing from incremental compilation; it only costs disk.
  if [[ "${CI:-}" == true ]]; then export CARGO_INCREMENTAL="${CARGO_INCREMENTAL:-0}"; fi
  report_disk start
  say "system dependencies"
  "${ROOT}/hack/install-deps.sh"

  say "build (${RUNNER})"
  if cargo build --workspace --bins; then
    # e2e runs the binaries just built (no nested cargo builds).
    export FERROKUBE_BIN_DIR="${CARGO_TARGET_DIR:-${ROOT}/target}/debug"
  else
    # Never test stale binaries: without FERROKUBE_BIN_DIR each e2e test builds what it runs
    # and fails with the build error.
    echo "build: FAILED" >&2
    SUMMARY+=("build: 0 passed, 1 failed, 0 skipped")
    FAILED=1
  fi

  for tier in ${TIERS}; do
    case "${tier}" in
      unit)
        run_tier unit --workspace --lib --bins -- --workspace --lib --bins ;;
      component)
        run_tier component --workspace --exclude e2e -E 'kind(test)' \
          -- --workspace --exclude e2e --test '*' ;;
      e2e)
        run_tier e2e -p e2e -E 'kind(test)' -- -p e2e --test '*' ;;
      lint) lint ;;
      *) echo "unknown tier ${tier}" >&2; exit 2 ;;
    esac
  done

  report_disk end
  echo
  echo "==> summary ($((SECONDS - start)) s, runner ${RUNNER})"
  printf '%s\n' "${SUMMARY[@]}"
  exit "${FAILED}"
}

main "$@"
