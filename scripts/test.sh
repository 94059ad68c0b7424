#!/usr/bin/env bash
# Runs Keel's whole test suite on a fresh machine: installs what the tests drive (etcdctl 3.4
# from Debian's etcd-client), then builds and tests every crate and builds the docs.
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v etcdctl >/dev/null 2>&1; then
  echo "installing etcd-client (etcdctl 3.4) for the conformance tests"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq etcd-client >/dev/null
fi

cargo build --workspace --all-targets
RUSTDOCFLAGS="-D warnings" cargo doc --workspace --no-deps --quiet
cargo test --workspace -- --test-threads=4
