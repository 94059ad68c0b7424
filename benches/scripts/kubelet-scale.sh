#!/usr/bin/env bash
# Scale benchmark of keel-kubelet's simulated nodes (issue 21): one keel-kubelet process hosting
# NODES simulated nodes against one keel-store member and one keel-apiserver on loopback.
# It waits until every Node is registered and Ready and every Lease exists, then measures over
# WINDOW seconds: CPU (utime+stime from /proc/<pid>/stat) and RSS of the kubelet, the apiserver
# and the store, and at the end how many Leases were renewed within their 40 s duration.
#
#   benches/scripts/kubelet-scale.sh [NODES=1000] [WINDOW=60] [BIN=target/release]
#
# Everything it starts is killed by PID when it ends (trap), and its files live in a temp dir.
set -euo pipefail
NODES=${1:-1000}
WINDOW=${2:-60}
BIN=${3:-target/release}
DIR=$(mktemp -d)
PIDS=()
cleanup() { for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done; sleep 0.5; for p in "${PIDS[@]}"; do kill -9 "$p" 2>/dev/null || true; done; rm -rf "$DIR"; }
trap cleanup EXIT
PORT_BASE=$((20000 + RANDOM % 20000))
S_CLIENT=127.0.0.1:$PORT_BASE; S_PEER=127.0.0.1:$((PORT_BASE+1)); API=$((PORT_BASE+2)); HTTP=$((PORT_BASE+3))
"$BIN/keel-store" --name s1 --data-dir "$DIR/s1" --listen-client-urls "http://$S_CLIENT" --advertise-client-urls "http://$S_CLIENT" \
  --listen-peer-urls "http://$S_PEER" --initial-advertise-peer-urls "http://$S_PEER" --initial-cluster "s1=http://$S_PEER" >"$DIR/store.log" 2>&1 &
STORE=$!; PIDS+=("$STORE")
sleep 2
"$BIN/keel-apiserver" --etcd-servers "http://$S_CLIENT" --bind-address 127.0.0.1 --secure-port "$API" --insecure-port "$HTTP" \
  --data-dir "$DIR/api" --write-kubeconfig "$DIR/kubeconfig" >"$DIR/api.log" 2>&1 &
APISERVER=$!; PIDS+=("$APISERVER")
for _ in $(seq 100); do [ -s "$DIR/kubeconfig" ] && curl -s -o /dev/null "http://127.0.0.1:$HTTP/healthz" && break; sleep 0.2; done
K="kubectl --kubeconfig $DIR/kubeconfig --cache-dir $DIR/cache"
T0=$(date +%s.%N)
"$BIN/keel-kubelet" --kubeconfig "$DIR/kubeconfig" --simulated-nodes "$NODES" --hostname-override hollow --port 0 \
  --root-dir "$DIR/kubelet" >"$DIR/kubelet.log" 2>&1 &
KUBELET=$!; PIDS+=("$KUBELET")

ready() { $K get nodes -o jsonpath='{range .items[*]}{.status.conditions[?(@.type=="Ready")].status}{"\n"}{end}' 2>/dev/null | grep -c True || true; }
leases() { $K get leases -n kube-node-lease --no-headers 2>/dev/null | wc -l; }
for _ in $(seq 600); do
  if [ "$(ready)" -ge "$NODES" ] && [ "$(leases)" -ge "$NODES" ]; then break; fi
  sleep 1
done
T1=$(date +%s.%N)
echo "registered: $(ready) Ready nodes, $(leases) leases, in $(echo "$T1 - $T0" | bc) s"

ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
rss() { awk '/VmRSS/ {print $2}' "/proc/$1/status"; }
HZ=$(getconf CLK_TCK)
declare -A C0
for p in $KUBELET $APISERVER $STORE; do C0[$p]=$(ticks "$p"); done
LOAD0=$(cut -d' ' -f1-3 /proc/loadavg)
sleep "$WINDOW"
LOAD1=$(cut -d' ' -f1-3 /proc/loadavg)
report() { # name pid
  local c1; c1=$(ticks "$2")
  local cpu_ms_s; cpu_ms_s=$(echo "scale=2; ($c1 - ${C0[$2]}) * 1000 / $HZ / $WINDOW" | bc)
  local r; r=$(rss "$2")
  echo "$1: cpu ${cpu_ms_s} ms/s, rss $((r / 1024)) MiB"
  if [ "$1" = kubelet ]; then
    echo "kubelet per node: cpu $(echo "scale=4; $cpu_ms_s / $NODES" | bc) ms/s, rss $(echo "scale=1; $r / $NODES" | bc) KiB"
  fi
}
report kubelet "$KUBELET"; report apiserver "$APISERVER"; report store "$STORE"
FRESH=$($K get leases -n kube-node-lease -o json | python3 -c '
import json, sys, datetime
now = datetime.datetime.now(datetime.timezone.utc)
items = json.load(sys.stdin)["items"]
def age(l):
    t = l["spec"]["renewTime"].replace("Z", "+00:00")
    return (now - datetime.datetime.fromisoformat(t)).total_seconds()
print(sum(1 for l in items if age(l) < l["spec"]["leaseDurationSeconds"]), "of", len(items), "fresh; oldest", round(max(age(l) for l in items), 1), "s")
')
echo "leases: $FRESH"
echo "load average: before window $LOAD0, after $LOAD1 ($(nproc) cores)"
