# rbox recipes. `./dev RECIPE` installs what is needed first; `just RECIPE` assumes it is.

set shell := ["bash", "-euo", "pipefail", "-c"]

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
