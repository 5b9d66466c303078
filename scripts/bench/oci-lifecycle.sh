#!/bin/sh
# The OCI lifecycle of a container running /bin/true, from one bundle: `RUNTIME run`
# creates, starts, waits for and deletes it in one command. rbox-runc against crun and
# runc (Debian's), with hyperfine: ROUNDS rounds of RUNS runs each, the runtimes taking
# turns so that a change in the machine's load hits all alike; then the median of all
# runs of each runtime, and their ratios.
#
# crun fails on a cgroup v1/v2 hybrid whose v2 hierarchy still holds a controller
# (hugetlb, on this kind of machine). Only then does this script mount that controller's
# v1 hierarchy, say so, and unmount it again at the end.
set -eu
cd "$(dirname "$0")/../.."
runs=${RUNS:-60}
rounds=${ROUNDS:-5}
rbox=$PWD/target/release/rbox-runc
rootfs=$PWD/build/test-image/rootfs
[ -x "$rbox" ] || { echo "oci-lifecycle: build first (just build)" >&2; exit 1; }
[ -d "$rootfs" ] || { echo "oci-lifecycle: make the test image first (just test-image)" >&2; exit 1; }
for tool in hyperfine jq; do
    command -v $tool >/dev/null || { echo "oci-lifecycle: $tool is missing (scripts/install-deps)" >&2; exit 1; }
done

work=$(mktemp -d /tmp/rbox-bench-oci.XXXXXX)
mounted=""
cleanup() {
    for rt in rbox crun runc; do
        [ -d "$work/state-$rt" ] || continue
        case $rt in rbox) bin=$rbox;; *) bin=$rt;; esac
        "$bin" --root "$work/state-$rt" delete --force bench >/dev/null 2>&1 || true
    done
    for d in /sys/fs/cgroup/*/rbox-bench-oci /sys/fs/cgroup/rbox-bench-oci; do
        [ -d "$d" ] && find "$d" -depth -type d -exec rmdir {} + 2>/dev/null || true
    done
    # Unmounting a hierarchy that still has cgroups (someone else's) would strand the
    # controller outside both trees: only an empty one is unmounted.
    if [ -n "$mounted" ]; then
        if [ -z "$(find "$mounted" -mindepth 1 -type d)" ]; then
            umount "$mounted" && rmdir "$mounted" && echo "note: unmounted $mounted again"
        else
            echo "note: $mounted holds cgroups now, left mounted"
        fi
    fi
    rm -rf "$work"
}
trap cleanup EXIT INT TERM

mkdir "$work/bundle"
"$rbox" spec --bundle "$work/bundle"
# The same config for every runtime: read-only test image, no terminal, /bin/true.
sed -i \
    -e 's|"terminal": true|"terminal": false|' \
    -e 's|"path": "rootfs"|"path": "'"$rootfs"'"|' \
    -e 's|^\t\t\t"sh"$|\t\t\t"/bin/true"|' \
    -e 's|"linux": {|"linux": {\n\t\t"cgroupsPath": "/rbox-bench-oci/bench",|' \
    "$work/bundle/config.json"
grep -q '"/bin/true"' "$work/bundle/config.json" || { echo "oci-lifecycle: could not edit config.json" >&2; exit 1; }

runtimes="rbox-runc"
for rt in crun runc; do
    if command -v "$rt" >/dev/null; then runtimes="$runtimes $rt"; else echo "note: $rt is not installed, skipped"; fi
done

if command -v crun >/dev/null && [ -f /sys/fs/cgroup/unified/cgroup.controllers ]; then
    for c in $(cat /sys/fs/cgroup/unified/cgroup.controllers); do
        if [ ! -d "/sys/fs/cgroup/$c" ]; then
            mkdir "/sys/fs/cgroup/$c"
            mount -t cgroup -o "$c" cgroup "/sys/fs/cgroup/$c"
            mounted="/sys/fs/cgroup/$c"
            echo "note: mounted the v1 $c hierarchy at $mounted for crun (hybrid cgroups)"
            break
        fi
    done
fi

set --
for rt in $runtimes; do
    case $rt in rbox-runc) bin=$rbox; state=rbox;; *) bin=$rt; state=$rt;; esac
    # Each must work before it is timed.
    "$bin" --root "$work/state-$state" run --bundle "$work/bundle" bench </dev/null \
        || { echo "oci-lifecycle: $rt cannot run the bundle" >&2; exit 1; }
    set -- "$@" -n "$rt" "$bin --root $work/state-$state run --bundle $work/bundle bench"
done

echo "create+start+wait+delete of /bin/true: $rounds rounds of $runs runs each (machine load adds noise)"
round=1
while [ "$round" -le "$rounds" ]; do
    hyperfine -N --warmup 5 --runs "$runs" --style none --export-json "$work/round-$round.json" \
        "$@" >/dev/null 2>"$work/hyperfine.err" || { cat "$work/hyperfine.err" >&2; exit 1; }
    round=$((round + 1))
done

# Median of every run of one runtime, in milliseconds.
median() {
    jq -s --arg n "$1" '[.[].results[] | select(.command == $n) | .times[]] | sort
        | (if length % 2 == 1 then .[length / 2 | floor] else (.[length / 2 - 1] + .[length / 2]) / 2 end) * 1000' \
        "$work"/round-*.json
}
r=$(median rbox-runc)
printf '  %-10s median %7.2f ms\n' rbox-runc "$r"
for rt in $runtimes; do
    [ "$rt" = rbox-runc ] && continue
    m=$(median "$rt")
    printf '  %-10s median %7.2f ms   (%s / rbox-runc = %s)\n' "$rt" "$m" "$rt" \
        "$(awk -v a="$m" -v b="$r" 'BEGIN { printf "%.2f", a / b }')"
done
