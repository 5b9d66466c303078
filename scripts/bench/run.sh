#!/usr/bin/env bash
# Start-up of `rbox run --rm busybox true` against `podman run --rm` (issue #4): on no
# network and on a user bridge network, medians over many runs, and the ratios. Also the
# share of rbox's time spent setting up the network (sandbox, endpoint, lease, records),
# from `rbox --debug`'s timing lines.
#
# Everything runs in a private network and mount namespace with its own state
# directories, so the bridges, rules and containers of both tools stay off the host.
#   RUNS=N    runs per case (default 30)
#   SETTLE=S  seconds of quiet before each case (default 36, see settle below)
set -euo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

if [ -z "${RBOX_BENCH_INSIDE:-}" ]; then
    exec env RBOX_BENCH_INSIDE=1 unshare --net --mount --propagation private -- "$0" "$@"
fi

runs=${RUNS:-30}
rbox=$root/target/release/rbox
image=$root/build/test-image/busybox.tar
[ -x "$rbox" ] && [ -f "$image" ] || { echo "bench: run 'just build test-image' first" >&2; exit 1; }

work=$(mktemp -d /tmp/rbox-bench.XXXXXX)
podman_flags=(--root "$work"/podman-root --runroot /run/podman-bench --storage-driver overlay --cgroup-manager cgroupfs)
export RBOX_ROOT=$work/rbox-root RBOX_RUNROOT=/run/rbox RBOX_CGROUP_PARENT=rbox-bench-$$
trap 'cleanup' EXIT
cleanup() {
    "$rbox" rm -f $("$rbox" ps -aq 2>/dev/null) >/dev/null 2>&1 || true
    "$rbox" network rm benchnet >/dev/null 2>&1 || true
    if command -v podman >/dev/null; then
        podman "${podman_flags[@]}" rm -af >/dev/null 2>&1 || true
        podman "${podman_flags[@]}" network rm -f benchnet >/dev/null 2>&1 || true
        podman "${podman_flags[@]}" system reset -f >/dev/null 2>&1 || true
    fi
    "$rbox" internal-dns stop >/dev/null 2>&1 || true
    for d in /sys/fs/cgroup/*/"$RBOX_CGROUP_PARENT" /sys/fs/cgroup/"$RBOX_CGROUP_PARENT"; do
        [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
    rm -rf "$work"
}

# The namespace's own view: a /run, a resolver nothing answers, loopback up.
mount -t tmpfs tmpfs /run
printf 'nameserver 192.0.2.53\n' > "$work"/resolv.conf
mount --bind "$work"/resolv.conf /etc/resolv.conf
ip link set lo up

"$rbox" load -i "$image" >/dev/null
"$rbox" network create benchnet >/dev/null

# podman: its own storage, state and containers.conf. The ulimits it gives containers
# must fit this machine's hard limits (root lacks CAP_SYS_RESOURCE), and those of conmon,
# which podman starts with nproc 32768; netavark, not the CNI default of this podman.
nproc=$(ulimit -Hu)
[ "$nproc" = unlimited ] || [ "$nproc" -gt 32768 ] && nproc=32768
nofile=$(ulimit -Hn)
[ "$nofile" = unlimited ] || [ "$nofile" -gt 1048576 ] && nofile=1048576
cat > "$work"/containers.conf <<CONF
[containers]
default_ulimits = ["nofile=$nofile:$nofile", "nproc=$nproc:$nproc"]
[engine]
cgroup_manager = "cgroupfs"
events_logger = "none"
[network]
network_backend = "netavark"
CONF
export CONTAINERS_CONF=$work/containers.conf
have_podman=
if command -v podman >/dev/null; then
    podman "${podman_flags[@]}" load -i "$image" >/dev/null 2>&1 && have_podman=1
    podman "${podman_flags[@]}" network create benchnet >/dev/null
fi

# On ext4 without a journal (this VM's disk), allocating an inode skips every inode
# freed in the last 30-35 s (dirty_expire_centisecs, +5 s while the inode table is not
# written back), reading each one's deletion time: a case that follows another one's
# thousands of deletions pays for them. So each case starts once that window has
# passed, and pays only for its own.
settle() { sleep "${SETTLE:-36}"; }

median() { # hyperfine's JSON → median in ms
    python3 -c 'import json,sys; print("%.1f" % (json.load(open(sys.argv[1]))["results"][0]["median"]*1000))' "$1"
}
bench() { # name command...
    local name=$1; shift
    settle
    hyperfine -N --style none --warmup 3 --runs "$runs" --export-json "$work/$name.json" "$*" >/dev/null 2>&1 \
        || { echo "bench: '$*' failed" >&2; "$@" >&2 || true; exit 1; }
    median "$work/$name.json"
}

printf '%-44s %10s\n' "case ($runs runs each)" "median ms"
declare -A t
t[rbox_none]=$(bench rbox_none "$rbox" run --rm --network none busybox true)
t[rbox_net]=$(bench rbox_net "$rbox" run --rm --network benchnet busybox true)
printf '%-44s %10s\n' "rbox run --rm --network none" "${t[rbox_none]}" "rbox run --rm --network benchnet" "${t[rbox_net]}"
if [ -n "$have_podman" ]; then
    image_ref=$(podman "${podman_flags[@]}" images --format '{{.Repository}}:{{.Tag}}' | head -1)
    t[podman_none]=$(bench podman_none podman "${podman_flags[@]}" run --rm --network none "$image_ref" true)
    t[podman_net]=$(bench podman_net podman "${podman_flags[@]}" run --rm --network benchnet "$image_ref" true)
    printf '%-44s %10s\n' "podman run --rm --network none" "${t[podman_none]}" "podman run --rm --network benchnet" "${t[podman_net]}"
    ratio() { python3 -c "print('%.1f' % ($1/$2))"; }
    echo "ratio podman/rbox, no network:   $(ratio "${t[podman_none]}" "${t[rbox_none]}")x"
    echo "ratio podman/rbox, user bridge:  $(ratio "${t[podman_net]}" "${t[rbox_net]}")x"
else
    echo "(podman not installed: no comparison)"
fi

# Where rbox's time goes, on the bridge network (median of each step over the runs):
# as measured above, where each run starts the DNS responder (nothing else on the
# network needs it), and with another container on the network keeping it serving.
steps() { # title
    settle
    for _ in $(seq "$runs"); do
        "$rbox" --debug run --rm --network benchnet busybox true 2>&1 >/dev/null | grep 'timing:' || true
    done > "$work"/timings
    echo "rbox steps on the bridge network, $1 (median ms):"
    python3 - "$work"/timings <<'PY'
import re, statistics, sys
steps = {}
for line in open(sys.argv[1]):
    m = re.match(r"rbox: timing: (.+?)\s+([\d.]+) ms", line)
    if m:
        steps.setdefault(m.group(1), []).append(float(m.group(2)))
for name, values in steps.items():
    print(f"  {name:<18} {statistics.median(values):7.2f}")
PY
}
steps "each run starting the DNS responder"
"$rbox" run -d --name keep --network benchnet busybox sleep 1d >/dev/null
t[rbox_net_warm]=$(bench rbox_net_warm "$rbox" run --rm --network benchnet busybox true)
printf '%-44s %10s
' "rbox run --rm --network benchnet, DNS up" "${t[rbox_net_warm]}"
steps "the DNS responder already serving another container"
echo "(network = sandbox + endpoint + lease + records, and the DNS responder serving them)"
