# rbox recipes. `./dev RECIPE` installs what is needed first; `just RECIPE` assumes it is.

set shell := ["bash", "-euo", "pipefail", "-c"]

# libseccomp is linked statically, as in runc's and crun's release builds: one shared
# object fewer to load at every start of rbox and rbox-runc (0.3 ms each here; podman
# starts rbox-runc four times per container). A plain `cargo build` links it
# dynamically, and works the same.
export LIBSECCOMP_LINK_TYPE := "static"
export LIBSECCOMP_LIB_PATH := `pkg-config --variable=libdir libseccomp`

# Build the binaries (release: the tests and benchmarks drive what users run).
build:
    cargo build --release --workspace

# The local busybox test image (OCI layout, archive and rootfs) under build/test-image.
test-image:
    scripts/make-test-image build/test-image

# Build, make the test image, and run the seed session: a bridge network, a container
# on it, a second one pinging the first (in a private namespace: the host is untouched).
demo: build test-image
    scripts/demo

# The test image as a plain OCI bundle, run by rbox-runc (the OCI level alone).
demo-runc: build test-image
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
    scripts/vm/test

# All, or the suites named (vm_kernel) or holding tests that match a filter; arguments
# after `--` go to the test binaries: `just test-vm vlan -- --nocapture`.
# The labs that need a full kernel (tests/tests/vm_*.rs), in a VM with Debian's kernel.
[positional-arguments]
test-vm *ARGS: build test-image
    scripts/vm/test "$@"

# Options: `just vm --help`.
# Runs a command as root in that VM: `just vm -- ip -d link`.
[positional-arguments]
vm *ARGS:
    scripts/vm/run "$@"

# Fetches the VM's kernel (the package linux-image-amd64 depends on) into build/vm/kernel.
vm-kernel:
    scripts/vm/kernel

# Benchmarks against runc, crun and podman on this machine (medians and ratios):
# every scripts/bench/*.sh, or only those whose name contains FILTER.
bench FILTER="": build test-image
    for b in scripts/bench/*{{FILTER}}*.sh; do echo "== $b"; "$b"; done

# Formatting and lints, as CI wants them.
lint:
    cargo fmt --all --check
    cargo clippy --release --workspace --all-targets -- -D warnings
