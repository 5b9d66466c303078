#!/usr/bin/env bash
# ports: published ports through kernel DNAT.
#   throughput  iperf3 (TCP, PORTS_BENCH_SECONDS each, default 3, median of
#               PORTS_BENCH_RUNS, default 3) from a peer namespace to an iperf3 server in
#               a container: through the published port (host address, DNAT) and straight
#               to the container's address (the bench lets the peer in with one rule of
#               its own at the top of the network's chain: rbox itself never lets an
#               unpublished port in from outside); and through podman's published
#               port (netavark) to the same server, when podman is installed.
#   start time  `rbox run -d` of a container with 1 and with 100 published ports
#               (hyperfine, median of 10; the container is removed before each run).
# Everything lives in two namespaces made here (a simulated host and a peer on a veth)
# with rbox's state in a temporary directory; all of it is removed on exit.
set -euo pipefail
cd "$(dirname "$0")/../.."

[ "$(id -u)" = 0 ] || { echo "ports bench: run as root (namespaces)" >&2; exit 1; }
for t in iperf3 hyperfine jq; do
    command -v $t >/dev/null || { echo "ports bench: $t is missing (./dev installs it)" >&2; exit 1; }
done
RBOX="$PWD/target/release/rbox"
[ -x "$RBOX" ] || { echo "ports bench: build first (cargo build --release)" >&2; exit 1; }
SECONDS_EACH="${PORTS_BENCH_SECONDS:-3}"
RUNS="${PORTS_BENCH_RUNS:-3}"

tag="rbox-bench-ports-$$"
peer="$tag-peer"
state="$(mktemp -d)"
export RBOX_ROOT="$state/root" RBOX_RUNROOT="$state/run" RBOX_CGROUP_PARENT="$tag"
anchor=""
cleanup() {
    if [ -n "$anchor" ]; then
        in_host sh -c "$RBOX rm -f \$($RBOX ps -aq)" >/dev/null 2>&1 || true
        in_host "$RBOX" internal-dns stop >/dev/null 2>&1 || true
        kill "$anchor" 2>/dev/null || true
    fi
    ip netns del "$peer" 2>/dev/null || true
    for d in /sys/fs/cgroup/*/"$tag" /sys/fs/cgroup/"$tag"; do
        [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
    rm -rf "$state"
}
trap cleanup EXIT

# The simulated host: its own network and mount namespaces (sysfs showing its links),
# held by a sleeping anchor process, as the lab harness makes them.
mkfifo "$state/ready"
unshare --net --mount --propagation private -- sh -c '
    mkdir /run/.rbox-bench-cg && mount --rbind /sys/fs/cgroup /run/.rbox-bench-cg
    mount -t sysfs sysfs /sys && mount --move /run/.rbox-bench-cg /sys/fs/cgroup
    rmdir /run/.rbox-bench-cg; ip link set lo up; echo ready > "$1"; exec sleep infinity' \
    sh "$state/ready" &
anchor=$!
read -r _ < "$state/ready"
in_host() { nsenter -t "$anchor" -n -m -- "$@"; }

ip netns add "$peer"
ip link add b0 netns "$anchor" type veth peer name b1 netns "$peer"
in_host ip addr add 10.99.0.1/24 dev b0
in_host ip link set b0 up
ip -n "$peer" addr add 10.99.0.2/24 dev b1
ip -n "$peer" link set lo up
ip -n "$peer" link set b1 up
ip -n "$peer" route add 172.16.0.0/12 via 10.99.0.1
in_host sysctl -qw net.ipv4.ip_forward=1

in_host "$RBOX" load -i "$PWD/build/test-image/busybox.tar" >/dev/null

# The host's iperf3 and its libraries, bound into a busybox container.
libs="$(readlink -f /lib/x86_64-linux-gnu)"
in_host "$RBOX" run -d --name srv -p 5201:5201 \
    -v "$(readlink -f "$(command -v iperf3)")":/iperf3:ro -v "$libs":/lib/x86_64-linux-gnu:ro \
    -v /lib64:/lib64:ro busybox /iperf3 -s >/dev/null
ip_srv="$(in_host "$RBOX" inspect srv | jq -r '.[0].NetworkSettings.IPAddress')"
chain="$(in_host nft list table inet rbox | grep -o 'chain net-[0-9a-f]*-in' | head -1 | cut -d' ' -f2)"
in_host nft insert rule inet rbox "$chain" ip saddr 10.99.0.2 ip daddr "$ip_srv" accept

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
rate() { # target-address
    for _ in $(seq "$RUNS"); do
        for _ in 1 2 3 4 5 6 7 8 9 10; do
            out="$(ip netns exec "$peer" iperf3 -c "$1" -p "${port:-5201}" -t "$SECONDS_EACH" -J 2>/dev/null)" && break
            sleep 0.3
        done
        echo "$out" | jq '.end.sum_received.bits_per_second / 1e9'
    done | median
}
echo "throughput, iperf3 TCP from a peer namespace (median of $RUNS x ${SECONDS_EACH}s, Gbit/s):"
printf '  published port (10.99.0.1:5201, DNAT)  %.2f\n' "$(rate 10.99.0.1)"
printf '  container address (%s:5201)    %.2f\n' "$ip_srv" "$(rate "$ip_srv")"
in_host "$RBOX" rm -f srv >/dev/null

# podman's published port (netavark's DNAT, its default network), same server, same
# peer: podman's own storage, state, containers.conf and a /run of its own in the
# simulated host, so the machine's podman state is untouched.
if command -v podman >/dev/null; then
    nproc=$(ulimit -Hu); { [ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ]; } && nproc=32768
    nofile=$(ulimit -Hn)
    cat > "$state/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "none"
[network]
network_backend = "netavark"
CONF
    podman_in_host() {
        in_host env CONTAINERS_CONF="$state/containers.conf" podman --root "$state/podman-root" \
            --runroot "$state/podman-run" --storage-driver overlay "$@"
    }
    in_host mount -t tmpfs tmpfs /run
    podman_in_host load -i "$PWD/build/test-image/busybox.tar" >/dev/null 2>&1
    if podman_in_host run -d --name srv -p 5202:5201 \
        -v "$(readlink -f "$(command -v iperf3)")":/iperf3:ro -v "$libs":/lib/x86_64-linux-gnu:ro \
        -v /lib64:/lib64:ro docker.io/library/busybox:latest /iperf3 -s >/dev/null 2>"$state/podman.err"; then
        sleep 1
        printf '  podman published port (10.99.0.1:5202)  %.2f\n' "$(port=5202 rate 10.99.0.1)"
    else
        echo "  podman published port: podman could not run it: $(tail -1 "$state/podman.err")"
    fi
    podman_in_host rm -f -t 0 srv >/dev/null 2>&1 || true
    podman_in_host system reset -f >/dev/null 2>&1 || true
fi

echo "start time, rbox run -d (hyperfine median of 10, container removed before each run):"
for ports in "0:1" "10000-10099:10000-10099"; do
    n=$([ "$ports" = "0:1" ] && echo 1 || echo 100)
    spec=$([ "$ports" = "0:1" ] && echo "5000:80" || echo "$ports")
    in_host hyperfine -N -r 10 -w 1 --export-json "$state/h.json" \
        --prepare "sh -c '$RBOX rm -f timed >/dev/null 2>&1; true'" \
        "$RBOX run -d --name timed -p $spec busybox sleep 60" >/dev/null
    printf '  %3s published port(s)  %.1f ms\n' "$n" \
        "$(jq '.results[0].median * 1000' "$state/h.json")"
done
in_host hyperfine -N -r 10 -w 1 --export-json "$state/h.json" --prepare "sh -c '$RBOX rm -f timed >/dev/null 2>&1; true'" \
    "$RBOX run -d --name timed busybox sleep 60" >/dev/null
printf '    0 published ports    %.1f ms\n' "$(jq '.results[0].median * 1000' "$state/h.json")"
