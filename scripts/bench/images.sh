#!/bin/bash
# Image benchmarks (run by `just bench`): pulling the busybox test image from a local
# registry, and unpacking a generated ~200 MB layer, for rbox against
# skopeo copy + umoci unpack and against podman; plus the disk's raw write speed.
# Everything network runs in a private network namespace on its own loopback.
# Prints medians (ms) and ratios to rbox. Figures on a busy 2-core machine are noisy.
set -euo pipefail
cd "$(dirname "$0")/../.."

RUNS=${RUNS:-5}
BIG_RUNS=${BIG_RUNS:-3}
rbox=$PWD/target/release/rbox
image=$PWD/build/test-image/oci
[ -x "$rbox" ] || { echo "images.sh: build first (just build)" >&2; exit 1; }
[ -d "$image" ] || { echo "images.sh: make the test image first (just test-image)" >&2; exit 1; }
for tool in docker-registry skopeo umoci podman perl; do
    command -v $tool >/dev/null || { echo "images.sh: $tool missing (scripts/install-deps)" >&2; exit 1; }
done

work=$(mktemp -d /var/tmp/rbox-bench-images.XXXXXX)
ns=rbox-bench-$$
registry_pid=
cleanup() {
    set +e
    if [ -n "$registry_pid" ]; then kill "$registry_pid"; wait "$registry_pid"; fi 2>/dev/null
    ip netns del "$ns" 2>/dev/null || true
    # podman may leave overlay mounts of its own storage under $work.
    grep -o " $work[^ ]*" /proc/self/mounts | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done
    rm -rf "$work"
    return 0
}
trap cleanup EXIT
in_ns() { ip netns exec "$ns" "$@"; }

ip netns add "$ns"
in_ns ip link set lo up
cat > "$work/registry.yml" <<YML
version: 0.1
log:
  level: error
storage:
  filesystem:
    rootdirectory: $work/registry
http:
  addr: 127.0.0.1:5000
YML
# Not through in_ns (a function: `&` would fork a subshell): $! is then the registry.
ip netns exec "$ns" docker-registry serve "$work/registry.yml" >"$work/registry.log" 2>&1 &
registry_pid=$!
for _ in $(seq 100); do in_ns curl -s -o /dev/null http://127.0.0.1:5000/v2/ && break; sleep 0.1; done

# podman with storage of its own; the ulimits it would set for containers must fit
# the machine's hard limit.
cat > "$work/containers.conf" <<CONF
[containers]
default_ulimits = ["nofile=20000:20000"]
CONF
podman_() {
    CONTAINERS_CONF=$work/containers.conf in_ns podman --root "$work/podman/root" \
        --runroot "$work/podman/run" --storage-driver overlay "$@"
}

# measure NAME PREPARE COMMAND [RUNS]: median wall time of COMMAND in ms, PREPARE
# run untimed before each run.
declare -A median
measure() {
    local name=$1 prepare=$2 cmd=$3 runs=${4:-$RUNS} times=()
    for _ in $(seq "$runs"); do
        eval "$prepare" >/dev/null 2>&1 || true
        local t0 t1
        t0=$(date +%s%N)
        eval "$cmd" >/dev/null 2>"$work/err" || { echo "$name failed:"; cat "$work/err"; exit 1; }
        t1=$(date +%s%N)
        times+=($(( (t1 - t0) / 1000000 )))
    done
    median[$name]=$(printf '%s\n' "${times[@]}" | sort -n | sed -n "$(( (runs + 1) / 2 ))p")
    printf '  %-34s median %6d ms   (runs: %s)\n' "$name" "${median[$name]}" "${times[*]}"
}
ratio() { awk -v a="${median[$1]}" -v b="${median[$2]}" 'BEGIN { printf "%.2f", a / (b ? b : 1) }'; }

echo "disk (raw write speed, for reference):"
dd_rate() {
    dd if=/dev/zero of="$work/dd" bs=1M count=512 "$@" 2>&1 | awk '/copied/ { print $(NF-1), $NF }'
    rm -f "$work/dd"
}
echo "  dd 512 MiB, page cache:            $(dd_rate)"
echo "  dd 512 MiB, fdatasync:             $(dd_rate conv=fdatasync)"

echo "pull of the busybox test image from a local registry:"
in_ns skopeo copy -q --dest-tls-verify=false "oci:$image:latest" docker://127.0.0.1:5000/busybox:latest
measure "rbox pull" "rm -rf $work/rbox" \
    "RBOX_ROOT=$work/rbox in_ns $rbox pull -q 127.0.0.1:5000/busybox:latest"
measure "skopeo copy + umoci unpack" "rm -rf $work/oci $work/bundle" \
    "in_ns skopeo copy -q --src-tls-verify=false docker://127.0.0.1:5000/busybox:latest oci:$work/oci:latest && umoci unpack --image $work/oci:latest $work/bundle"
measure "podman pull" "podman_ system reset -f; rm -rf $work/podman" \
    "podman_ pull -q --tls-verify=false 127.0.0.1:5000/busybox:latest"
echo "  ratio skopeo+umoci / rbox: $(ratio 'skopeo copy + umoci unpack' 'rbox pull'),  podman / rbox: $(ratio 'podman pull' 'rbox pull')"

echo "a ~200 MB layer (mixed file sizes, gzip):"
# 12000 small files (0.5-8 KiB), 300 medium (64-384 KiB), 10 large (4-12 MiB), half
# of the small and medium ones text-like; from a fixed seed, so every run unpacks the
# same bytes. Random slices of two pools keep the generator fast.
perl -e '
    srand(42); my $root = shift;
    open(my $u, "<", "/dev/urandom") or die; read($u, my $bin, 16 << 20); close $u;
    my @w = map { join("", map { chr(97 + int(rand(26))) } 1..(2 + int(rand(9)))) } 1..5000;
    my $text = ""; $text .= $w[int(rand(@w))] . (rand() < 0.1 ? "\n" : " ") while length($text) < (1 << 20);
    sub put { my ($path, $n, $is_text) = @_; my $pool = $is_text ? \$text : \$bin;
        my $out = ""; while (length($out) < $n) { my $k = $n - length($out); $k = 65536 if $k > 65536;
            $out .= substr($$pool, int(rand(length($$pool) - $k)), $k); }
        open(my $f, ">", $path) or die "$path: $!"; print $f $out; close $f; }
    for my $d (0..299) { mkdir "$root/d$d"; }
    for my $i (0..11999) { put("$root/d" . ($i % 300) . "/f$i", 512 + int(rand(7680)), $i % 2); }
    for my $i (0..299) { put("$root/m$i", 65536 + int(rand(327680)), $i % 2); }
    for my $i (0..9) { put("$root/l$i", (4 << 20) + int(rand(8 << 20)), 0); }
' "$(mkdir -p "$work/tree" && echo "$work/tree")"
size=$(du -sb "$work/tree" | cut -f1)
umoci init --layout "$work/big" >/dev/null
umoci new --image "$work/big:latest" >/dev/null
umoci insert --image "$work/big:latest" "$work/tree" /data >/dev/null
rm -rf "$work/tree"
tar -C "$work/big" -cf "$work/big.tar" .
in_ns skopeo copy -q --dest-tls-verify=false "oci:$work/big:latest" docker://127.0.0.1:5000/big:latest
echo "  layer: $((size / 1000000)) MB in files, $(( $(du -sb "$work/big/blobs" | cut -f1) / 1000000 )) MB compressed"
measure "rbox load (verify + unpack)" "rm -rf $work/rbox; sync" \
    "RBOX_ROOT=$work/rbox $rbox load -q -i $work/big.tar" "$BIG_RUNS"
measure "umoci unpack" "rm -rf $work/bundle; sync" \
    "umoci unpack --image $work/big:latest $work/bundle" "$BIG_RUNS"
measure "podman load" "podman_ system reset -f; rm -rf $work/podman; sync" \
    "podman_ load -q -i $work/big.tar" "$BIG_RUNS"
echo "  ratio umoci / rbox: $(ratio 'umoci unpack' 'rbox load (verify + unpack)'),  podman / rbox: $(ratio 'podman load' 'rbox load (verify + unpack)')"
awk -v s="$size" -v t="${median[rbox load (verify + unpack)]}" 'BEGIN { printf "  rbox unpack rate: %.0f MB/s of files\n", s / 1000 / t }'
measure "rbox pull (big)" "rm -rf $work/rbox; sync" \
    "RBOX_ROOT=$work/rbox in_ns $rbox pull -q 127.0.0.1:5000/big:latest" "$BIG_RUNS"
measure "skopeo copy + umoci unpack (big)" "rm -rf $work/oci $work/bundle; sync" \
    "in_ns skopeo copy -q --src-tls-verify=false docker://127.0.0.1:5000/big:latest oci:$work/oci:latest && umoci unpack --image $work/oci:latest $work/bundle" "$BIG_RUNS"
measure "podman pull (big)" "podman_ system reset -f; rm -rf $work/podman; sync" \
    "podman_ pull -q --tls-verify=false 127.0.0.1:5000/big:latest" "$BIG_RUNS"
echo "  ratio skopeo+umoci / rbox: $(ratio 'skopeo copy + umoci unpack (big)' 'rbox pull (big)'),  podman / rbox: $(ratio 'podman pull (big)' 'rbox pull (big)')"
