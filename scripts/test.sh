#!/usr/bin/env bash
# Runs Keel's whole test suite on a fresh machine: installs what the tests drive (etcdctl 3.4
# from Debian's etcd-client, iptables for cutting a member off, curl), then builds and tests every
# crate and builds the docs.
set -euo pipefail
cd "$(dirname "$0")/.."

# The free disk first: a run's target/ grows to about 15 GB, and a full disk fails in whatever
# build step it reaches (stop 31 failed so in a dependency's C build), so a log shows it as such.
df -h . 2>/dev/null || true

# etcdctl 3.4 for the conformance tests, iptables for the partition test, curl for HTTPS checks.
missing=""
command -v etcdctl >/dev/null 2>&1 || missing="$missing etcd-client"
command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || missing="$missing iptables"
command -v curl >/dev/null 2>&1 || missing="$missing curl"
# kubectl for the apiserver conformance tests: the machine image's; Debian's 1.20 as a fallback.
command -v kubectl >/dev/null 2>&1 || missing="$missing kubernetes-client"
# The real etcd: the apiserver's kubectl conformance tests run against it too.
command -v etcd >/dev/null 2>&1 || missing="$missing etcd-server"
# A C compiler and make: keel-store links jemalloc, built from source by tikv-jemalloc-sys.
command -v cc >/dev/null 2>&1 || missing="$missing gcc"
command -v make >/dev/null 2>&1 || missing="$missing make"
if [ -n "$missing" ]; then
  echo "installing$missing for the tests"
  SUDO=""; [ "$(id -u)" -ne 0 ] && SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >/dev/null
fi
export PATH="$PATH:/usr/sbin"

cargo build --workspace --all-targets
RUSTDOCFLAGS="-D warnings --cfg tokio_unstable" cargo doc --workspace --no-deps --quiet
cargo test --workspace -- --test-threads=4

# The simulation's CI seed set: fixed seeds of every scenario, in release mode (a run takes
# about 0.3 s there). The soak (10,000+ seeds) is the same binary with more seeds: sim/README.md.
cargo build -p keel-sim --release --no-default-features
target/release/keel-sim --first-seed 1 --seeds 40 --scenario all --quiet

# Smoke: the load generator drives a real member for 2 s (timings are not asserted).
smoke_dir=$(mktemp -d)
read -r port peer < <(python3 -c 'import socket; a=socket.socket(); a.bind(("127.0.0.1",0)); b=socket.socket(); b.bind(("127.0.0.1",0)); print(a.getsockname()[1], b.getsockname()[1])')
target/debug/keel-store --name smoke --data-dir "$smoke_dir/d" --listen-client-urls "http://127.0.0.1:$port" \
  --advertise-client-urls "http://127.0.0.1:$port" --listen-peer-urls "http://127.0.0.1:$peer" \
  --initial-advertise-peer-urls "http://127.0.0.1:$peer" --initial-cluster "smoke=http://127.0.0.1:$peer" \
  --logger capnslog >"$smoke_dir/log" 2>&1 &
smoke_pid=$!
trap 'kill "$smoke_pid" 2>/dev/null || true; rm -rf "$smoke_dir"' EXIT
for _ in $(seq 100); do grep -q "ready to serve client requests" "$smoke_dir/log" && break; sleep 0.1; done
result=$(target/debug/keel-load --workload mixed --endpoints "127.0.0.1:$port" --clients 8 --conns 2 --keyspace 1000 --duration-secs 2 --json)
echo "load generator smoke: $result"
python3 -c 'import json,sys; r=json.loads(sys.argv[1]); sys.exit(0 if r["ops"] > 0 and r["errors"] == 0 else 1)' "$result"
kill "$smoke_pid"; wait "$smoke_pid" 2>/dev/null || true
