#!/usr/bin/env bash
# Runs the fuzz targets of fuzz/ under libFuzzer, each for N seconds (default 120).
#
#   hack/fuzz.sh [TARGET...] [--seconds N]
#
# Targets are the directories of fuzz/corpus/ (all of them when none is named). Each runs
# from its committed corpus plus a scratch corpus ($CARGO_TARGET_DIR/fuzz/corpus/TARGET);
# at the end the inputs that reach new code are merged into fuzz/corpus/TARGET, and a
# crashing input is written to fuzz/crashes/TARGET/ (commit it, with the fix, as a
# regression input: tests/corpus.rs runs both directories in `cargo test`).
#
# Engine: libFuzzer through the libfuzzer-sys crate, on the stable toolchain: the sancov
# instrumentation cargo-fuzz asks for is plain `-C passes`/`-C llvm-args` (only its
# sanitizers need nightly, and Rust code needs no AddressSanitizer to report a panic).
# Needs a C++ compiler (libfuzzer-sys builds libFuzzer). Exits non-zero if a target crashed.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

usage() { sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; }

seconds=120
targets=()
while (($#)); do
  case "$1" in
    --seconds) seconds="${2:?--seconds needs a number}"; shift 2 ;;
    --seconds=*) seconds="${1#*=}"; shift ;;
    -h | --help) usage; exit 0 ;;
    -*) echo "hack/fuzz.sh: unknown option $1" >&2; usage >&2; exit 2 ;;
    *) targets+=("$1"); shift ;;
  esac
done
[[ "${seconds}" =~ ^[0-9]+$ ]] || { echo "hack/fuzz.sh: --seconds wants a whole number, got ${seconds}" >&2; exit 2; }
if ((${#targets[@]} == 0)); then
  for d in fuzz/corpus/*/; do targets+=("$(basename "${d}")"); done
fi
for t in "${targets[@]}"; do
  [[ -d "fuzz/corpus/${t}" ]] || { echo "hack/fuzz.sh: no target ${t} (no fuzz/corpus/${t})" >&2; exit 2; }
done

target_dir="${CARGO_TARGET_DIR:-target}"
triple="$(rustc -vV | sed -n 's/^host: //p')"
# As cargo-fuzz without a sanitizer. With --target, RUSTFLAGS skip build scripts and
# proc macros, which need no instrumentation.
export RUSTFLAGS="--cfg fuzzing -Cpasses=sancov-module -Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters -Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares"
cargo build --profile fuzzing --target "${triple}" -p ferrokube-fuzz --features libfuzzer \
  --bin ferrokube-fuzz
bin="${target_dir}/${triple}/fuzzing/ferrokube-fuzz"

summary=()
crashed=0
for t in "${targets[@]}"; do
  scratch="${target_dir}/fuzz/corpus/${t}"
  logs="${target_dir}/fuzz/logs"
  mkdir -p "${scratch}" "${logs}" "fuzz/crashes/${t}"
  echo "==> ${t}: ${seconds}s"
  rc=0
  FERROKUBE_FUZZ_TARGET="${t}" "${bin}" -max_total_time="${seconds}" -max_len=4096 \
    -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
    -artifact_prefix="fuzz/crashes/${t}/" "${scratch}" "fuzz/corpus/${t}" \
    >"${logs}/${t}.log" 2>&1 || rc=$?
  # Only inputs that reach new code (edges, not hit counts) join the committed corpus,
  # a set cover of them: tens of files per target rather than thousands.
  FERROKUBE_FUZZ_TARGET="${t}" "${bin}" -set_cover_merge=1 -use_counters=0 \
    "fuzz/corpus/${t}" "${scratch}" >"${logs}/${t}.merge.log" 2>&1 || true
  execs="$(sed -n 's/^stat::number_of_executed_units: *//p' "${logs}/${t}.log" | tail -1)"
  cov="$(grep -o 'cov: [0-9]*' "${logs}/${t}.log" | tail -1 || true)"
  if ((rc != 0)); then
    crashed=1
    summary+=("${t}: CRASH after ${execs:-?} execs (${cov}); see ${logs}/${t}.log and fuzz/crashes/${t}/")
    grep -m1 -A3 "panicked at" "${logs}/${t}.log" || tail -5 "${logs}/${t}.log"
  else
    summary+=("${t}: ok, ${execs:-?} execs in ${seconds}s (${cov}), corpus $(find "fuzz/corpus/${t}" -type f | wc -l) files")
  fi
done
printf '%s\n' "" "hack/fuzz.sh summary:" "${summary[@]}"
exit "${crashed}"
