#!/usr/bin/env python3
"""Side-by-side benchmark of keel-store and etcd on this machine, in one run.

For each workload it starts a fresh server (etcd, then keel-store, alternating, for --rounds
rounds), drives it with the same client (`keel-load`, etcd v3 gRPC), records throughput and
latency, the server's peak RSS, and stops the server. Both servers fsync before acknowledging.
Then it loads 100k keys of 256 B into each and compares RSS and disk size. It prints medians and
keel/etcd ratios as a Markdown table and writes every raw JSON line to --out.

Usage: scripts/bench-side-by-side.py [--members 1|3] [--rounds 3] [--seconds 5] [--out benches/results/run.jsonl]
With --members 3 each system runs as a 3-member cluster on 127.0.0.1, .2 and .3 (client port
42379, peer port 42380), the load is spread over all three members, and RSS is the sum of the
three processes.
Installs Debian's etcd-server (etcd 3.4) when `etcd` is missing. Stops everything it started.
"""
import argparse, json, os, shutil, signal, socket, statistics, subprocess, sys, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEEL = os.path.join(ROOT, "target", "release", "keel-store")
LOAD = os.path.join(ROOT, "target", "release", "keel-load")
MEMBERS = 1


def hosts():
    return [f"127.0.0.{i}" for i in range(1, MEMBERS + 1)]


def endpoints(first=None):
    """The client endpoints, `first` (a host) first: a 1-connection client uses only that one."""
    order = sorted(hosts(), key=lambda h: h != first)
    return ",".join(f"{h}:42379" for h in order)


def leader_host():
    """The host of the member that leads now (both systems answer etcdctl's endpoint status)."""
    r = subprocess.run(["etcdctl", "--endpoints", endpoints(), "--command-timeout", "2s", "endpoint", "status", "-w", "json"],
                       capture_output=True, text=True, env=dict(os.environ, ETCDCTL_API="3"))
    for st in json.loads(r.stdout or "[]"):
        if st["Status"]["header"]["member_id"] == st["Status"]["leader"]:
            return st["Endpoint"].split("//")[-1].split(":")[0]
    return None

WORKLOADS = [
    # (label, keel-load arguments)
    ("put, 64 clients", ["--workload", "put", "--clients", "64", "--conns", "8"]),
    # One client on one connection: its latency depends on whether that member leads (a
    # follower forwards), so it runs once against the leader and once against a follower.
    ("put, 1 client on the leader", ["--workload", "put", "--clients", "1", "--conns", "1"]),
    ("put, 1 client on a follower", ["--workload", "put", "--clients", "1", "--conns", "1"]),
    ("txn (k8s update), 64 clients", ["--workload", "txn", "--clients", "64", "--conns", "8", "--keyspace", "10000"]),
    ("range linearizable, 64 clients", ["--workload", "range", "--clients", "64", "--conns", "8", "--keyspace", "10000"]),
    ("range serializable, 64 clients", ["--workload", "range-serializable", "--clients", "64", "--conns", "8", "--keyspace", "10000"]),
    ("range prefix 100 keys, 16 clients", ["--workload", "range-prefix", "--clients", "16", "--conns", "4", "--prefix-keys", "100"]),
    # The writer uses the first connection; the latency it sees depends on that member's role.
    ("watch, 100 watchers, writer on the leader", ["--workload", "watch", "--watchers", "100", "--conns", "4"]),
    ("watch, 100 watchers, writer on a follower", ["--workload", "watch", "--watchers", "100", "--conns", "4"]),
    ("lease churn, 16 clients", ["--workload", "lease", "--clients", "16", "--conns", "4"]),
]


def wait_port(addr, proc, seconds=30):
    host, port = addr.split(":")
    deadline = time.time() + seconds
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            with socket.create_connection((host, int(port)), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("server did not open its port")


def start(system, data):
    """Start one server per member; returns the processes."""
    initial = ",".join(f"m{i}=http://{h}:42380" for i, h in enumerate(hosts(), 1))
    procs = []
    for i, h in enumerate(hosts(), 1):
        url, peer = f"http://{h}:42379", f"http://{h}:42380"
        log = open(os.path.join(data, f"server{i}.log"), "w")
        common = ["--name", f"m{i}", "--listen-client-urls", url, "--advertise-client-urls", url,
                  "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", initial,
                  "--initial-cluster-token", "bench", "--quota-backend-bytes", str(8 << 30)]
        if system == "etcd":
            cmd = ["etcd", "--data-dir", os.path.join(data, f"etcd{i}")] + common
        else:
            cmd = [KEEL, "--data-dir", os.path.join(data, f"keel{i}"), "--logger", "capnslog"] + common
        procs.append(subprocess.Popen(cmd, stdout=log, stderr=log, stdin=subprocess.DEVNULL))
    for h, proc in zip(hosts(), procs):
        wait_port(f"{h}:42379", proc)
    # Both elect a leader after opening their ports; wait until a write goes through.
    deadline = time.time() + 30
    while time.time() < deadline:
        r = subprocess.run(["etcdctl", "--endpoints", endpoints(), "--command-timeout", "2s", "put", "bench-ready", "1"],
                           capture_output=True, env=dict(os.environ, ETCDCTL_API="3"))
        if r.returncode == 0:
            break
        time.sleep(0.1)
    return procs


def stop(procs):
    for proc in procs:
        proc.send_signal(signal.SIGTERM)
    for proc in procs:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def peak_rss_mib(procs):
    total = 0.0
    for proc in procs:
        with open(f"/proc/{proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    total += int(line.split()[1]) / 1024.0
    return total


def du_mib(path):
    total = 0
    for dirpath, _, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(dirpath, name))
            except OSError:
                pass
    return total / (1 << 20)


def load(args, seconds, first=None):
    out = subprocess.run([LOAD, "--endpoints", endpoints(first), "--duration-secs", str(seconds), "--json"] + args,
                         check=True, capture_output=True, text=True, timeout=600)
    return json.loads(out.stdout.strip().splitlines()[-1])


def fsync_latency_ms(directory, n=200):
    path = os.path.join(directory, "fsync-probe")
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    times = []
    try:
        for _ in range(n):
            t0 = time.perf_counter()
            os.write(fd, b"x" * 512)
            os.fdatasync(fd)
            times.append((time.perf_counter() - t0) * 1000)
    finally:
        os.close(fd)
        os.unlink(path)
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.99) - 1]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--members", type=int, default=1, choices=[1, 3])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--fill", type=int, default=100_000)
    ap.add_argument("--out", default=os.path.join(ROOT, "benches", "results", time.strftime("%Y%m%d-%H%M%S") + ".jsonl"))
    ap.add_argument("--only", default="", help="run only workloads whose label contains this text")
    ap.add_argument("--no-build", action="store_true", help="use the release binaries already built")
    a = ap.parse_args()
    global MEMBERS
    MEMBERS = a.members
    if shutil.which("etcd") is None:
        subprocess.run(["apt-get", "install", "-y", "-qq", "etcd-server"], check=True)
    if not a.no_build:
        subprocess.run(["cargo", "build", "--release", "-q", "-p", "keel-store", "-p", "keel-benches", "--bins"], check=True, cwd=ROOT)
    os.makedirs(os.path.dirname(a.out), exist_ok=True)
    etcd_version = subprocess.run(["etcd", "--version"], capture_output=True, text=True).stdout.split("\n")[0]
    work = tempfile.mkdtemp(prefix="keel-bench-", dir=os.environ.get("BENCH_DIR", "/tmp"))
    p50, p99 = fsync_latency_ms(work)
    print(f"# {MEMBERS} member(s); {etcd_version}; keel-store {KEEL}; {os.cpu_count()} cores; fdatasync of 512 B: p50 {p50:.2f} ms, p99 {p99:.2f} ms")
    results = {}
    with open(a.out, "w") as out:
        out.write(json.dumps({"machine": {"cores": os.cpu_count(), "fsync_p50_ms": p50, "fsync_p99_ms": p99, "etcd": etcd_version, "members": MEMBERS}}) + "\n")
        for label, args in WORKLOADS:
            if a.only and a.only not in label:
                continue
            for r in range(a.rounds):
                for system in ("etcd", "keel"):  # A B A B ...
                    data = tempfile.mkdtemp(dir=work)
                    procs = start(system, data)
                    try:
                        leader = leader_host() if MEMBERS > 1 else None
                        first = None
                        if label.endswith("on the leader"):
                            first = leader
                        elif label.endswith("on a follower"):
                            first = next((h for h in hosts() if h != leader), None)
                        res = load(args, a.seconds, first)
                        res["rss_mib"] = peak_rss_mib(procs)
                        res["leader"], res["first_endpoint"] = leader, first or hosts()[0]
                    finally:
                        stop(procs)
                        shutil.rmtree(data, ignore_errors=True)
                    res.update({"system": system, "label": label, "round": r})
                    out.write(json.dumps(res) + "\n")
                    out.flush()
                    results.setdefault(label, {}).setdefault(system, []).append(res)
                    print(f"  {label:36} {system:5} round {r}: {res['throughput']:9.0f} ops/s  p50 {res['p50_ms']:7.3f} ms  p99 {res['p99_ms']:7.3f} ms", flush=True)
        # Memory and disk after loading keys.
        for r in range(a.rounds if not a.only else 0):
            for system in ("etcd", "keel"):
                data = tempfile.mkdtemp(dir=work)
                procs = start(system, data)
                try:
                    res = load(["--workload", "fill", "--clients", "16", "--conns", "4", "--total", str(a.fill), "--value-size", "256"], 600)
                    time.sleep(3)  # let background flushes settle
                    res["rss_mib"] = peak_rss_mib(procs)
                finally:
                    stop(procs)
                res["disk_mib"] = du_mib(data)
                shutil.rmtree(data, ignore_errors=True)
                res.update({"system": system, "label": f"fill {a.fill} keys", "round": r})
                out.write(json.dumps(res) + "\n")
                results.setdefault(res["label"], {}).setdefault(system, []).append(res)
                print(f"  {res['label']:36} {system:5} round {r}: RSS {res['rss_mib']:.1f} MiB, disk {res['disk_mib']:.1f} MiB", flush=True)
    shutil.rmtree(work, ignore_errors=True)

    def med(label, system, field):
        vals = [x[field] for x in results[label][system]]
        return statistics.median(vals)

    def ratio(a, b):
        return f"{a / b:.2f}" if b else "n/a"

    print("\n| workload | etcd ops/s | keel ops/s | throughput keel/etcd | p50 keel/etcd | p99 keel/etcd | peak RSS keel/etcd |")
    print("|---|---|---|---|---|---|---|")
    for label in results:
        if label.startswith("fill"):
            continue
        e, k = med(label, "etcd", "throughput"), med(label, "keel", "throughput")
        print(f"| {label} | {e:.0f} | {k:.0f} | {ratio(k, e)} | {ratio(med(label, 'keel', 'p50_ms'), med(label, 'etcd', 'p50_ms'))} | "
              f"{ratio(med(label, 'keel', 'p99_ms'), med(label, 'etcd', 'p99_ms'))} | {ratio(med(label, 'keel', 'rss_mib'), med(label, 'etcd', 'rss_mib'))} |")
    for label in results:
        if label.startswith("fill"):
            print(f"\n| {label} | etcd | keel | keel/etcd |\n|---|---|---|---|")
            for field in ("rss_mib", "disk_mib", "throughput"):
                e, k = med(label, "etcd", field), med(label, "keel", field)
                print(f"| {field} | {e:.1f} | {k:.1f} | {ratio(k, e)} |")
    print(f"\nraw results: {a.out}")


if __name__ == "__main__":
    sys.exit(main())
