#!/usr/bin/env bash
# DNS: queries per second and p50/p99 latency for a container name, asked with dnsperf
# from inside a sandbox (a network namespace on a bridge, as a container's), against
#   rbox      the embedded responder at 127.0.0.11 in the sandbox (through its DNAT),
#   dnsmasq   serving the same names from a hosts file, in the same sandbox (loopback),
#   aardvark  aardvark-dns as podman runs it: at the bridge gateway, config dir + SIGHUP.
# Peak rate with 100 queries outstanding (and the server's CPU time per answered query,
# which the machine's other load disturbs much less than rates and latencies), then
# latency at half the peak rate; and the responder's resident memory. Everything runs in a namespace of its own and is gone
# afterwards. DNS_BENCH_SECONDS sets the length of each run (default 10).
set -euo pipefail

if [ "${1:-}" != --inside ]; then
    cd "$(dirname "$0")/../.."
    export RBOX="${RBOX_BIN_DIR:-$PWD/target/release}/rbox"
    [ -x "$RBOX" ] || { echo "dns bench: build rbox first (just build)" >&2; exit 1; }
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
net=3333333333333333333333333333333333333333333333333333333333333333
sandbox=4444444444444444444444444444444444444444444444444444444444444444

# The simulated host: its own /run, a bridge, one sandbox on it.
mount -t tmpfs -o mode=755 tmpfs /run
ip link set lo up
ip netns add client
ip -n client link set lo up
ip link add br0 type bridge
ip addr add 10.77.0.1/24 dev br0
ip link set br0 up
ip link add v-client type veth peer name eth0 netns client
ip link set v-client master br0 up
ip -n client addr add 10.77.0.10/24 dev eth0
ip -n client link set eth0 up

pids=()
cleanup() {
    RBOX_RUNROOT=/run/rbox "$RBOX" internal-dns stop >/dev/null 2>&1 || true
    for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
}
trap cleanup EXIT

# The same names for every server: c1..c50 and the one asked for, "web".
{
    echo "{\"sandboxes\":[{\"id\":\"$sandbox\",\"netns_path\":\"/run/netns/client\","
    echo "\"networks\":[\"$net\"],\"upstreams\":[],\"search\":[]}],"
    echo "\"networks\":[{\"id\":\"$net\",\"name\":\"benchnet\",\"dns_enabled\":true,\"endpoints\":["
    echo "{\"names\":[\"client\"],\"ipv4\":\"10.77.0.10\",\"ipv6\":null}"
    for i in $(seq 1 $names); do
        echo ",{\"names\":[\"c$i\"$([ "$i" = 1 ] && echo ',"web"')],\"ipv4\":\"10.77.0.$((100 + i))\",\"ipv6\":null}"
    done
    echo "]}]}"
} >"$work/snapshot.json"
: >"$work/hosts"
mkdir -p "$work/aardvark"
echo "10.77.0.1" >"$work/aardvark/benchnet"
echo "$sandbox 10.77.0.10  client" >>"$work/aardvark/benchnet"
for i in $(seq 1 $names); do
    echo "10.77.0.$((100 + i)) c$i$([ "$i" = 1 ] && echo ' web')" >>"$work/hosts"
    printf '%064x 10.77.0.%d  c%d%s\n' "$i" $((100 + i)) "$i" "$([ "$i" = 1 ] && echo ',web')" >>"$work/aardvark/benchnet"
done
echo "web A" >"$work/queries"

# cpu_ns PID: time the process's threads have spent on a CPU, in nanoseconds.
cpu_ns() { cat /proc/"$1"/task/*/schedstat | awk '{ t += $1 } END { printf "%d", t }'; }
# peak SERVER PID: queries per second with 100 outstanding; leaves the server's CPU
# nanoseconds per completed query in $work/cpu.
peak() {
    local before
    before=$(cpu_ns "$2")
    ip netns exec client dnsperf -s "$1" -d "$work/queries" -l "$seconds" -q 100 >"$work/peak.out" 2>&1
    awk -v ns=$(($(cpu_ns "$2") - before)) '/Queries completed/ { printf "%.1f", ns / $3 / 1000 }' \
        "$work/peak.out" >"$work/cpu"
    awk '/Queries per second/ { printf "%d", $4 }' "$work/peak.out"
}
# lost: share of queries lost in the last peak run.
lost() { awk '/Queries lost/ { gsub(/[()]/, "", $4); print $4 }' "$work/peak.out"; }
# latency SERVER RATE: p50 and p99 in microseconds at RATE queries per second.
latency() {
    ip netns exec client dnsperf -s "$1" -d "$work/queries" -l "$seconds" -Q "$2" -v 2>/dev/null \
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
    [ -n "${2:-}" ] && in=(ip netns exec "$2")
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

RBOX_RUNROOT=/run/rbox "$RBOX" internal-dns sync --snapshot "$work/snapshot.json" >/dev/null
responder=$(cat /run/rbox/dns/responder.pid)
measure rbox 127.0.0.11 "$responder"
rss=$(awk '/VmRSS/ { print $2 }' "/proc/$responder/status")
hwm=$(awk '/VmHWM/ { print $2 }' "/proc/$responder/status")
sync_ms=$(ms 21 env RBOX_RUNROOT=/run/rbox "$RBOX" internal-dns sync --snapshot "$work/snapshot.json")
exec_ms=$(ms 21 "$RBOX" --version)
RBOX_RUNROOT=/run/rbox "$RBOX" internal-dns stop >/dev/null

ip netns exec client dnsmasq --keep-in-foreground --no-resolv --no-hosts --conf-file=/dev/null \
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
echo "rbox internal-dns sync, a reload of $names names until acknowledged: ${sync_ms} ms" \
    "(median of 21; \`rbox --version\` alone: ${exec_ms} ms)"
echo "load average after: $(cut -d' ' -f1-3 /proc/loadavg)"
