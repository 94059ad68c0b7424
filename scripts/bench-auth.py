#!/usr/bin/env python3
"""keel-store with auth off and on, alternately, in one run: what the permission check costs end
to end.

One fresh member (release build) per run on 127.0.0.1:43379 (peer 43380). For "on" the run
creates root, a role with readwrite on the load generator's key prefix `k/`, a user holding it,
enables auth, and drives the load as that user (every request carries a simple token and is
checked against the user's intervals; the role also holds 1,000 other prefix permissions so the
check searches a realistic set). Prints medians per workload and the on/off ratio; writes raw
JSON lines to --out.

Usage: scripts/bench-auth.py [--rounds 3] [--seconds 5] [--out benches/measured/auth.jsonl]
"""
import argparse, json, os, shutil, socket, statistics, subprocess, tempfile, time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
KEEL = os.path.join(ROOT, "target", "release", "keel-store")
LOAD = os.path.join(ROOT, "target", "release", "keel-load")
EP = "127.0.0.1:43379"

WORKLOADS = [
    ("put, 64 clients", ["--workload", "put", "--clients", "64", "--conns", "8"]),
    ("range linearizable, 64 clients", ["--workload", "range", "--clients", "64", "--conns", "8", "--keyspace", "10000"]),
    ("range serializable, 64 clients", ["--workload", "range-serializable", "--clients", "64", "--conns", "8", "--keyspace", "10000"]),
    ("txn (k8s update), 64 clients", ["--workload", "txn", "--clients", "64", "--conns", "8", "--keyspace", "10000"]),
]


def ctl(*args, user=None):
    cmd = ["etcdctl", "--endpoints", EP] + (["--user", user] if user else []) + list(args)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=dict(os.environ, ETCDCTL_API="3"))


def start(data):
    log = open(os.path.join(data, "log"), "w")
    p = subprocess.Popen([KEEL, "--name", "a", "--data-dir", os.path.join(data, "d"),
                          "--listen-client-urls", f"http://{EP}", "--advertise-client-urls", f"http://{EP}",
                          "--listen-peer-urls", "http://127.0.0.1:43380", "--initial-advertise-peer-urls", "http://127.0.0.1:43380",
                          "--initial-cluster", "a=http://127.0.0.1:43380", "--bcrypt-cost", "4"], stdout=log, stderr=log)
    deadline = time.time() + 30
    while time.time() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", 43379), timeout=0.5):
                break
        except OSError:
            time.sleep(0.05)
    while "ready to serve client requests" not in open(os.path.join(data, "log")).read():
        time.sleep(0.05)
    return p


def enable_auth():
    ctl("user", "add", "root", "--new-user-password", "rootpw")
    ctl("role", "add", "bench")
    # 1,000 prefixes that do not match, then the one that does.
    for i in range(1000):
        ctl("role", "grant-permission", "bench", "readwrite", f"other/{i:04}/", "--prefix")
    ctl("role", "grant-permission", "bench", "readwrite", "k/", "--prefix")
    ctl("user", "add", "bench", "--new-user-password", "benchpw")
    ctl("user", "grant-role", "bench", "bench")
    ctl("auth", "enable")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5)
    ap.add_argument("--out", default=os.path.join(ROOT, "benches", "measured", "auth.jsonl"))
    a = ap.parse_args()
    results = {}
    with open(a.out, "w") as out:
        for label, args in WORKLOADS:
            for r in range(a.rounds):
                for mode in ["off", "on"]:
                    data = tempfile.mkdtemp(prefix="keel-auth-bench-")
                    p = start(data)
                    try:
                        extra = []
                        if mode == "on":
                            enable_auth()
                            extra = ["--user", "bench:benchpw"]
                        o = subprocess.run([LOAD, "--endpoints", EP, "--duration-secs", str(a.seconds), "--json"] + args + extra,
                                           check=True, capture_output=True, text=True)
                        res = json.loads(o.stdout.strip().splitlines()[-1])
                        res.update({"label": label, "auth": mode, "round": r})
                        out.write(json.dumps(res) + "\n")
                        out.flush()
                        if res.get("errors", 0):
                            raise RuntimeError(f"{label} auth {mode}: {res['errors']} errors")
                        results.setdefault((label, mode), []).append(res)
                    finally:
                        p.terminate()
                        p.wait()
                        shutil.rmtree(data, ignore_errors=True)
    print("| workload | ops/s off | ops/s on | on/off | p50 off (ms) | p50 on | p99 off | p99 on |")
    print("|---|---|---|---|---|---|---|---|")
    for label, _ in WORKLOADS:
        off, on = results[(label, "off")], results[(label, "on")]
        med = lambda rs, k: statistics.median(x[k] for x in rs)
        print(f"| {label} | {med(off,'throughput'):.0f} | {med(on,'throughput'):.0f} | {med(on,'throughput')/med(off,'throughput'):.2f} | "
              f"{med(off,'p50_ms'):.2f} | {med(on,'p50_ms'):.2f} | {med(off,'p99_ms'):.2f} | {med(on,'p99_ms'):.2f} |")


if __name__ == "__main__":
    main()
