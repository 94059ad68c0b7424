#!/usr/bin/env bash
# Builds Keel and runs the whole local cluster (`keel up`): members on 127.0.0.1, .2 and .3,
# client port 2379, peer port 2380, keel-apiserver on https://127.0.0.1:6443 with a kubeconfig at
# ./data/kubeconfig, data and logs in ./data. Ctrl-C stops everything.
# Extra arguments after -- are etcd flags for every member, e.g. scripts/run.sh -- --auto-compaction-retention 1h
set -euo pipefail
cd "$(dirname "$0")/.."
# keel-store links jemalloc, which tikv-jemalloc-sys builds from source with a C compiler and make.
if ! command -v cc >/dev/null 2>&1 || ! command -v make >/dev/null 2>&1; then
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq gcc make >/dev/null
fi
cargo build --release -p keel-store -p keel-apiserver -p keel-up -p keel-scheduler -p keel-controller-manager -p keel-kubelet
exec target/release/keel up --data-dir data "$@"
