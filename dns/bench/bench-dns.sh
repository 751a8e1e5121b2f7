#!/usr/bin/env bash
# ferrokube-dns benchmark (not a timed test): dnsperf against the release binary pinned to
# one core, with 1,000 and 10,000 Services served from a real kube-apiserver (e2e harness)
# when one is found, else from a static object file (--static-objects, test-only).
#
#   dns/bench/bench-dns.sh [--sizes 1000,10000] [--source auto|apiserver|static]
#                          [--seconds 10] [--server-cpu 1] [--client-cpu 0]
#
# Reports queries/s at saturation and latency percentiles at fixed offered loads for
# cluster names and for NXDOMAIN, and the server's RSS. Needs dnsperf and taskset.
set -euo pipefail
cd "$(dirname "$0")/../.."
cargo build --release -p dns --bin ferrokube-dns
target="${CARGO_TARGET_DIR:-$PWD/target}"
exec cargo bench -p dns --bench bench_dns -- --binary "$target/release/ferrokube-dns" "$@"
