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

# Benchmarks against runc, crun and podman on this machine (medians and ratios):
# every scripts/bench/*.sh, or only those whose name contains FILTER.
bench FILTER="": build test-image
    for b in scripts/bench/*{{FILTER}}*.sh; do echo "== $b"; "$b"; done

# Formatting and lints, as CI wants them.
lint:
    cargo fmt --all --check
    cargo clippy --release --workspace --all-targets -- -D warnings
