#!/usr/bin/env bash
# macvlan: TCP throughput from a container to a "physical server" on the host's LAN
# (iperf3: the server in a peer namespace, the client in the container's sandbox), over
#   macvlan       a macvlan network on the host's NIC (bridge mode),
#   bridge + NAT  a bridge network, masqueraded out of the NIC,
#   ipvlan        an ipvlan l2 network on the NIC, where the kernel has ipvlan.
# Medians of a few runs (MACVLAN_BENCH_RUNS, default 5, of MACVLAN_BENCH_SECONDS, default
# 3). The lab (tests/tests/macvlan_bench.rs) lives in namespaces and is gone afterwards.
#
#   scripts/bench/macvlan.sh        on this machine (no ipvlan where the kernel lacks it)
#   scripts/bench/macvlan.sh --vm   all three in the full-kernel VM (scripts/vm/run): under
#                                   software emulation the rates are far lower; compare
#                                   them with each other only
set -euo pipefail
cd "$(dirname "$0")/../.."

[ "$(id -u)" = 0 ] || { echo "macvlan bench: run as root (namespaces)" >&2; exit 1; }
command -v iperf3 >/dev/null || { echo "macvlan bench: iperf3 is missing (./dev installs it)" >&2; exit 1; }

# The lab's test binary, built here (never in the VM).
exe="$(cargo test --release --no-run -p rbox-tests --test macvlan_bench --message-format=json-render-diagnostics 2>/dev/null |
    jq -r 'select(.reason == "compiler-artifact" and .target.name == "macvlan_bench") | .executable')"
[ -x "$exe" ] || { echo "macvlan bench: could not build tests/tests/macvlan_bench.rs" >&2; exit 1; }

run=("$exe" --ignored --exact container_to_lan_server_throughput --nocapture --test-threads=1)
if [ "${1:-}" = --vm ]; then
    scripts/vm/run -- env MACVLAN_BENCH_RUNS="${MACVLAN_BENCH_RUNS:-5}" \
        MACVLAN_BENCH_SECONDS="${MACVLAN_BENCH_SECONDS:-3}" "${run[@]}" 2>&1 |
        grep -E '^(container|  )'
else
    "${run[@]}" 2>&1 | grep -E '^(container|  )'
fi
