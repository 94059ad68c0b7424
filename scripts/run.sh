#!/usr/bin/env bash
# Builds keel-store and runs one member on 127.0.0.1:2379 with its data in ./data/default.etcd.
# Extra arguments are etcd flags, e.g. scripts/run.sh --auto-compaction-retention 1h
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build --release -p keel-store
mkdir -p data
echo "keel-store: use   etcdctl --endpoints=127.0.0.1:2379 put foo bar   (Ctrl-C stops it)"
exec target/release/keel-store --name default --data-dir data/default.etcd \
  --listen-client-urls http://127.0.0.1:2379 --advertise-client-urls http://127.0.0.1:2379 \
  --logger capnslog "$@"
