#!/usr/bin/env bash
# DNS: queries per second and p50/p99 latency for a container name, asked with dnsperf
# from inside a sandbox (made by netlib as for `rbox run`, on a user-defined bridge
# network with 50 other containers' sandboxes), against
#   rbox      the embedded responder at 127.0.0.11 in the sandbox (through its DNAT),
#   dnsmasq   serving the same names from a hosts file, in the same sandbox (loopback),
#   aardvark  aardvark-dns as podman runs it: at the bridge gateway, config dir + SIGHUP.
# Peak rate with 100 queries outstanding (and the server's CPU time per answered query,
# which the machine's other load disturbs much less than rates and latencies), then
# latency at half the peak rate; and the responder's resident memory. Everything runs in
# a namespace of its own and is gone afterwards. DNS_BENCH_SECONDS sets the length of each
# run (default 10).
set -euo pipefail

if [ "${1:-}" != --inside ]; then
    cd "$(dirname "$0")/../.."
    export RBOX="${RBOX_BIN_DIR:-$PWD/target/release}/rbox"
    export NETLAB="${RBOX_BIN_DIR:-$PWD/target/release}/rbox-netlab"
    [ -x "$RBOX" ] && [ -x "$NETLAB" ] || { echo "dns bench: build rbox first (just build)" >&2; exit 1; }
    command -v dnsperf >/dev/null || { echo "dns bench: dnsperf is missing (./dev installs it)" >&2; exit 1; }
    [ "$(id -u)" = 0 ] || { echo "dns bench: run as root (namespaces)" >&2; exit 1; }
    RBOX_BENCH_WORK=$(mktemp -d /tmp/rbox-bench-dns.XXXXXX)
    export RBOX_BENCH_WORK
    trap 'rm -rf "$RBOX_BENCH_WORK"' EXIT
    unshare --net --mount --propagation private -- bash "$0" --inside
    exit
fi

work=$RBOX_BENCH_WORK
seconds=${DNS_BENCH_SECONDS:-10}
names=50
export RBOX_ROOT=$work/root RBOX_RUNROOT=/run/rbox RBOX_CGROUP_PARENT=rbox-bench-dns

# The simulated host: its own /run and state; a user-defined network with the client's
# sandbox and 50 others, c1..c50 (c1 also answers to "web", the name asked for).
mount -t tmpfs -o mode=755 tmpfs /run
ip link set lo up
"$RBOX" network create --subnet 10.77.0.0/24 benchnet >/dev/null
client=$("$NETLAB" sandbox client)
client_addr=$("$NETLAB" join "$client" benchnet client)
in_client() { nsenter --net="/run/rbox/netns/$client" "$@"; }

pids=()
cleanup() {
    "$RBOX" internal-dns stop >/dev/null 2>&1 || true
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
    # The responder's cgroups (it moves itself there), once it has exited.
    for _ in $(seq 50); do
        rmdir /sys/fs/cgroup/{*/,}"$RBOX_CGROUP_PARENT"/rbox-dns 2>/dev/null || true
        rmdir /sys/fs/cgroup/{*/,}"$RBOX_CGROUP_PARENT" 2>/dev/null || true
        ls -d /sys/fs/cgroup/{*/,}"$RBOX_CGROUP_PARENT" >/dev/null 2>&1 || break
        sleep 0.1
    done
}
trap cleanup EXIT

# The same names for the other servers: a hosts file (dnsmasq), a network file (aardvark).
: >"$work/hosts"
mkdir -p "$work/aardvark"
echo "10.77.0.1" >"$work/aardvark/benchnet"
echo "$client $client_addr  client" >>"$work/aardvark/benchnet"
for i in $(seq 1 $names); do
    alias=$([ "$i" = 1 ] && echo web || true)
    addr=$("$NETLAB" join "$("$NETLAB" sandbox "c$i")" benchnet "c$i" $alias)
    echo "$addr c$i${alias:+ $alias}" >>"$work/hosts"
    printf '%064x %s  c%d%s\n' "$i" "$addr" "$i" "${alias:+,$alias}" >>"$work/aardvark/benchnet"
done
echo "web A" >"$work/queries"

# cpu_ns PID: time the process's threads have spent on a CPU, in nanoseconds.
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{ t += $1 } END { printf "%d", t }'; }
# peak SERVER PID: queries per second with 100 outstanding; leaves the server's CPU
# nanoseconds per completed query in $work/cpu.
peak() {
    local before
    before=$(cpu_ns "$2")
    in_client dnsperf -s "$1" -d "$work/queries" -l "$seconds" -q 100 >"$work/peak.out" 2>&1
    awk -v ns=$(($(cpu_ns "$2") - before)) '/Queries completed/ { printf "%.1f", ns / $3 / 1000 }' \
        "$work/peak.out" >"$work/cpu"
    awk '/Queries per second/ { printf "%d", $4 }' "$work/peak.out"
}
# lost: share of queries lost in the last peak run.
lost() { awk '/Queries lost/ { gsub(/[()]/, "", $4); print $4 }' "$work/peak.out"; }
# latency SERVER RATE: p50 and p99 in microseconds at RATE queries per second.
latency() {
    in_client dnsperf -s "$1" -d "$work/queries" -l "$seconds" -Q "$2" -v 2>/dev/null \
        | awk '/^> NOERROR/ { print $5 * 1000000 }' | sort -n >"$work/latencies"
    local n
    n=$(wc -l <"$work/latencies")
    [ "$n" -gt 0 ] || { echo "- -"; return; }
    echo "$(sed -n "$(((n + 1) / 2))p" "$work/latencies") $(sed -n "$(((n * 99 + 99) / 100))p" "$work/latencies")"
}
# measure NAME SERVER PID: one line of the table.
measure() {
    local qps p50 p99
    qps=$(peak "$2" "$3")
    read -r p50 p99 < <(latency "$2" $((qps / 2)))
    printf '%-10s %10s %8s %12s %10s %10s\n' "$1" "$qps" "$(lost)" "$(cat "$work/cpu")" "${p50%.*}" "${p99%.*}"
}
# wait_udp ADDR [NETNS]: until something listens on ADDR (udp), in NETNS or here.
wait_udp() {
    local in=()
    [ -n "${2:-}" ] && in=(in_client)
    for _ in $(seq 100); do
        "${in[@]}" ss -Huln | grep -q " $1 " && return
        sleep 0.05
    done
    echo "dns bench: nothing listens on $1" >&2
    exit 1
}

# ms RUNS COMMAND...: median wall time of a command, in milliseconds.
ms() {
    local runs=$1 i started
    shift
    for i in $(seq "$runs"); do
        started=$(date +%s%N)
        "$@" >/dev/null
        echo $((($(date +%s%N) - started) / 1000))
    done | sort -n | awk '{ t[NR] = $1 } END { printf "%.1f", t[int((NR + 1) / 2)] / 1000 }'
}

echo "load average before: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores (shared machine: figures are noisy)"
printf '%-10s %10s %8s %12s %10s %10s\n' server "peak q/s" lost "cpu us/query" "p50 us" "p99 us"

responder=$(cat /run/rbox/dns/responder.pid)
measure rbox 127.0.0.11 "$responder"
rss=$(awk '/VmRSS/ { print $2 }' "/proc/$responder/status")
hwm=$(awk '/VmHWM/ { print $2 }' "/proc/$responder/status")
sync_ms=$(ms 21 "$RBOX" internal-dns sync)
exec_ms=$(ms 21 "$RBOX" --version)
"$RBOX" internal-dns stop >/dev/null

# Not through in_client: a function would run in a subshell, and $! be that shell.
nsenter --net="/run/rbox/netns/$client" dnsmasq --keep-in-foreground --no-resolv --no-hosts --conf-file=/dev/null \
    --user=root --pid-file= --addn-hosts="$work/hosts" --listen-address=127.0.0.12 \
    --bind-interfaces --log-facility=/dev/null &
pids+=($!)
wait_udp 127.0.0.12:53 client
measure dnsmasq 127.0.0.12 "${pids[-1]}"
kill "${pids[-1]}"

aardvark=/usr/lib/podman/aardvark-dns
if [ -x "$aardvark" ]; then
    "$aardvark" --config "$work/aardvark" -p 53 run 2>/dev/null
    pids+=("$(cat "$work/aardvark/aardvark.pid")")
    wait_udp 10.77.0.1:53
    measure aardvark 10.77.0.1 "${pids[-1]}"
    kill "${pids[-1]}"
else
    echo "aardvark   (not installed: $aardvark)"
fi

echo "rbox responder resident memory: ${rss} KiB now, ${hwm} KiB at most"
echo "rbox internal-dns sync, a reload of $((names + 1)) sandboxes' names until acknowledged: ${sync_ms} ms" \
    "(median of 21; \`rbox --version\` alone: ${exec_ms} ms)"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
