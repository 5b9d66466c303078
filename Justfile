# rbox recipes. `./dev RECIPE` installs what is needed first; `just RECIPE` assumes it is.

set shell := ["bash", "-euo", "pipefail", "-c"]

# Build the binaries (release: the tests and benchmarks drive what users run).
build:
    cargo build --release --workspace

# The local busybox test image (OCI layout, archive and rootfs) under build/test-image.
test-image:
    scripts/make-test-image build/test-image

# Build, make the test image, and run a container from it (an OCI bundle, with rbox-runc).
demo: build test-image
    #!/usr/bin/env bash
    set -euo pipefail
    dir=$(mktemp -d /tmp/rbox-demo.XXXXXX)
    trap 'target/release/rbox-runc --root "$dir/state" delete --force demo 2>/dev/null || true; rm -rf "$dir"' EXIT
    target/release/rbox-runc spec --bundle "$dir"
    jq --arg root "$PWD/build/test-image/rootfs" '
        .root.path = $root | .process.terminal = false | .hostname = "rbox-demo"
        | .process.args = ["sh", "-c", "echo \"hello from $(hostname): I am pid $$, $(id)\"; echo; echo my processes:; ps -o pid,user,comm; echo; echo my capabilities:; grep ^Cap /proc/self/status; echo; echo my mounts:; cut -d\" \" -f2,3 /proc/mounts | head -8"]
        ' "$dir/config.json" > "$dir/config.json.new"
    mv "$dir/config.json.new" "$dir/config.json"
    echo "== rbox-runc run: the busybox test image as an OCI bundle ($dir)"
    target/release/rbox-runc --root "$dir/state" run --bundle "$dir" demo

# The whole suite: unit tests, native labs, then the labs that need a full kernel.
test: build test-image
    cargo test --release --workspace -- --test-threads=4

# Benchmarks against runc, crun and podman on this machine (medians and ratios):
# every scripts/bench/*.sh, or only those whose name contains FILTER.
bench FILTER="": build test-image
    for b in scripts/bench/*{{FILTER}}*.sh; do echo "== $b"; "$b"; done

# Formatting and lints, as CI wants them.
lint:
    cargo fmt --all --check
    cargo clippy --release --workspace --all-targets -- -D warnings
