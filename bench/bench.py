#!/usr/bin/python3
"""Side-by-side benchmark of uetcd against the reference etcd (stdlib only).

  bench.py run       every workload against both servers, alternating, repeated; medians,
                     a table with uetcd/etcd ratios, bench/results/results.csv, a latency
                     plot (gnuplot) and `etcdctl check perf` against both.
  bench.py check     a fixed small workload against both; reports uetcd's throughput ratio and
                     server-CPU-per-op ratio against bench/baseline.json (`make bench-ratios`).
                     A report, not a gate: on a shared machine the ratios move with load (the
                     gate is `make bench-check`, bench/gate.py, on instruction counts).
  bench.py baseline  rewrites bench/baseline.json from a `check` run (needs NOTE="why").
Every `run` appends its figures to bench/results/history.tsv (bench/history.py).

Fairness: every run gets a freshly started server with an empty data directory under
build/bench-data (same filesystem for both, both fsync; --unsafe-no-fsync for both with
NOFSYNC=1); the order of the two servers alternates between repetitions; figures are medians.
Server CPU and peak RSS come from /proc of the server process (loadgen --server-pid).

Environment knobs (also accepted from `make VAR=...`): QUICK=1, REPS, DURATION, WARMUP,
NOFSYNC=1, TLS=1, PERF_LOAD (s|m|l|none), ONLY=w1,w2, UETCD_BIN, CANDIDATE=uetcd|etcd-self,
CANDIDATE_WRAP="cmd args" (prefix the candidate's command, e.g. to slow it down on purpose),
BENCH_ALLOW_ETCD_ONLY=1, NOTE (for baseline).
"""
import argparse
import contextlib
import csv
import datetime
import io
import json
import os
import platform
import re
import shlex
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import history  # noqa: E402
RESULTS = os.path.join(HERE, "results")
BASELINE = os.path.join(HERE, "baseline.json")
TOLERANCE = 0.20

# name, loadgen arguments, what it is (README has the long form)
WORKLOADS = [
    ("put-1", "--workload put --conns 1 --streams 1",
     "put, 1 client: single-request latency (fsync bound)"),
    ("put-1000", "--workload put --conns 100 --streams 10",
     "put, 1000 clients over 100 connections, closed loop"),
    ("put-open-5k", "--workload put --conns 100 --streams 10 --rate 5000",
     "put, open loop at 5000/s: latency at a fixed load"),
    ("get-1000", "--workload get --conns 100 --streams 10 --keyspace 10000",
     "single-key range, linearizable, 1000 clients"),
    ("get-ser-1000", "--workload get --conns 100 --streams 10 --keyspace 10000 --serializable",
     "single-key range, serializable, 1000 clients"),
    ("list-100", "--workload list --conns 10 --streams 10 --keyspace 1000 --limit 100",
     "prefix page limit=100 of 1000 keys (k8s LIST), linearizable, 100 clients"),
    ("txn-put-1000", "--workload txn-put --conns 100 --streams 10 --keyspace 10000",
     "k8s update: If(mod_rev==known) put Else get, 1000 clients"),
    ("delete-100", "--workload delete --conns 10 --streams 10 --keyspace 200000 --warmup 0.2",
     "delete existing keys one by one, 100 clients (window ends early if the keys run out)"),
    ("watch-1000", "--workload watch --conns 100 --streams 10 --watchers 1000 --rate 100",
     "1000 prefix watchers, 100 puts/s: events/s and commit-to-event latency"),
    ("watch-1000-sat", "--workload watch --conns 100 --streams 10 --watchers 1000 --rate 400",
     "1000 watchers, 400 puts/s (400k events/s offered): event delivery capacity"),
    ("lease-ka-100", "--workload lease-keepalive --conns 10 --streams 10 --leases 100",
     "lease keep-alive round trips on 100 streams"),
    ("k8s", "--workload k8s --conns 10 --streams 10 --keyspace 100 --watchers 10 --read-pct 50",
     "Kubernetes-shaped mix: paged LIST, gets, stale reads, CAS txns, watchers, compaction"),
    ("put-1000-auth", "--auth --workload put --conns 100 --streams 10",
     "put-1000 with auth on: a user with readwrite on /bench/, simple token on every call"),
    ("get-1000-auth", "--auth --workload get --conns 100 --streams 10 --keyspace 10000",
     "get-1000 with auth on, as put-1000-auth"),
]
QUICK_WORKLOADS = ["put-1", "put-1000", "get-1000", "watch-1000"]

# bench-ratios (bench.py check): fixed, small, one server process per (server, repetition)
CHECK_WORKLOADS = [
    ("put", "--workload put --conns 10 --streams 10"),
    ("get", "--workload get --conns 10 --streams 10 --keyspace 1000"),
    ("txn-put", "--workload txn-put --conns 10 --streams 10 --keyspace 1000"),
]


def env(name, default=None):
    v = os.environ.get(name)
    return default if v is None or v == "" else v


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


class Server:
    """One server process with a fresh data directory; stopped by pid."""

    def __init__(self, kind, cfg, tag):
        self.kind = kind  # "etcd" or "uetcd"
        self.cfg = cfg
        self.port = free_port()
        self.peer = free_port()
        self.dir = os.path.join(cfg.data_root, f"{kind}-{tag}")
        self.proc = None
        self.logf = None
        self.log_path = os.path.join(cfg.data_root, f"{kind}-{tag}.log")

    @property
    def endpoint(self):
        return f"{'https' if self.cfg.tls else 'http'}://127.0.0.1:{self.port}"

    def command(self):
        url = self.endpoint
        if self.kind == "etcd" or self.cfg.candidate == "etcd-self":
            peer = f"http://127.0.0.1:{self.peer}"
            cmd = [self.cfg.etcd_bin, "--name", "bench", "--data-dir", self.dir,
                   "--listen-client-urls", url, "--advertise-client-urls", url,
                   "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                   "--initial-cluster", f"bench={peer}", "--log-level", "error"]
        else:
            cmd = [self.cfg.uetcd_bin, "--data-dir", self.dir,
                   "--listen-client-urls", url, "--advertise-client-urls", url]
        if self.cfg.nofsync:
            cmd.append("--unsafe-no-fsync")
        if self.cfg.tls:  # kubeadm's flags: server certificate, client certificates required
            t = self.cfg.tls_dir
            cmd += ["--cert-file", f"{t}/server.crt", "--key-file", f"{t}/server.key",
                    "--trusted-ca-file", f"{t}/ca.crt", "--client-cert-auth"]
        if self.kind == "uetcd" and self.cfg.candidate_wrap:
            cmd = shlex.split(self.cfg.candidate_wrap) + cmd
        return cmd

    def start(self, timeout=20.0):
        shutil.rmtree(self.dir, ignore_errors=True)
        os.makedirs(os.path.dirname(self.dir), exist_ok=True)
        self.logf = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.command(), stdout=self.logf, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        deadline = time.time() + timeout
        while time.time() < deadline:
            if self.proc.poll() is not None:
                return f"exited with status {self.proc.returncode}: {self.log_tail()}"
            r = subprocess.run([self.cfg.loadgen, "--endpoint", self.endpoint, "--workload",
                                "probe", "--duration", "1"] + tls_args(self.cfg), capture_output=True)
            if r.returncode == 0:
                time.sleep(0.05)
                if self.proc.poll() is not None:  # someone else answered on our port
                    return f"exited with status {self.proc.returncode}: {self.log_tail()}"
                return None
            time.sleep(0.1)
        err = f"no answer to a Range within {timeout:.0f} s: {self.log_tail()}"
        self.stop()
        return err

    def data_bytes(self):
        total = 0
        for dp, _, fns in os.walk(self.dir):
            for fn in fns:
                try:
                    total += os.stat(os.path.join(dp, fn)).st_blocks * 512
                except OSError:
                    pass
        return total

    def log_tail(self):
        try:
            with open(self.log_path, "rb") as f:
                data = f.read()[-600:].decode("utf-8", "replace").strip()
            return data.replace("\n", " | ") or "(no output)"
        except OSError:
            return "(no log)"

    @property
    def pid(self):
        return self.proc.pid

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        if self.logf:
            self.logf.close()
            self.logf = None
        shutil.rmtree(self.dir, ignore_errors=True)


LIVE = []  # servers to stop on exit
RUNS = []  # every run of `bench.py run`


def cleanup(*_):
    for s in list(LIVE):
        s.stop()
    LIVE.clear()


def parse_result(text):
    out = {"classes": []}
    for line in text.splitlines():
        if line.startswith("RESULT "):
            for kv in line.split()[1:]:
                k, _, v = kv.partition("=")
                out[k] = v
        elif line.startswith("RESULT-CLASS "):
            out["classes"].append(dict(kv.partition("=")[::2] for kv in line.split()[1:]))
    return out


def tls_args(cfg):
    if not cfg.tls:
        return []
    t = cfg.tls_dir
    return ["--cacert", f"{t}/ca.crt", "--cert", f"{t}/client.crt", "--key", f"{t}/client.key"]


def make_certs(d):
    """A throw-away CA, a server certificate for 127.0.0.1 and a client certificate (ECDSA P-256)."""
    if os.path.exists(os.path.join(d, "client.crt")):
        return
    os.makedirs(d, exist_ok=True)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    with open(os.path.join(d, "ext.cnf"), "w") as f:
        f.write("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n")

    def ossl(*a):
        subprocess.run(["openssl", *a], cwd=d, check=True, capture_output=True)
    ossl("req", "-x509", *ec, "-keyout", "ca.key", "-out", "ca.crt", "-subj", "/CN=bench-ca", "-days", "30")
    for n, cn in (("server", "localhost"), ("client", "root")):
        ossl("req", *ec, "-keyout", f"{n}.key", "-out", f"{n}.csr", "-subj", f"/CN={cn}")
        ossl("x509", "-req", "-in", f"{n}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-out", f"{n}.crt", "-days", "30", "-extfile", "ext.cnf")


def auth_token(cfg, server):
    """Turns auth on (root, and a user 'bench' with readwrite on /bench/) and returns that
    user's simple token, through the same gRPC API on either server."""
    import grpc
    from etcd3.etcdrpc import auth_pb2, rpc_pb2, rpc_pb2_grpc
    if cfg.tls:
        raise RuntimeError("auth workloads run in plaintext only")
    with grpc.insecure_channel(server.endpoint.split("://")[-1]) as ch:
        a = rpc_pb2_grpc.AuthStub(ch)
        a.UserAdd(rpc_pb2.AuthUserAddRequest(name="root", password="rootpw"), timeout=30)
        a.RoleAdd(rpc_pb2.AuthRoleAddRequest(name="root"), timeout=30)
        a.UserGrantRole(rpc_pb2.AuthUserGrantRoleRequest(user="root", role="root"), timeout=30)
        a.UserAdd(rpc_pb2.AuthUserAddRequest(name="bench", password="benchpw"), timeout=30)
        a.RoleAdd(rpc_pb2.AuthRoleAddRequest(name="bench"), timeout=30)
        perm = auth_pb2.Permission(permType=auth_pb2.Permission.READWRITE, key=b"/bench/", range_end=b"/bench0")
        a.RoleGrantPermission(rpc_pb2.AuthRoleGrantPermissionRequest(name="bench", perm=perm), timeout=30)
        a.UserGrantRole(rpc_pb2.AuthUserGrantRoleRequest(user="bench", role="bench"), timeout=30)
        a.AuthEnable(rpc_pb2.AuthEnableRequest(), timeout=30)
        return a.Authenticate(rpc_pb2.AuthenticateRequest(name="bench", password="benchpw"), timeout=30).token


def run_loadgen(cfg, server, label, args, duration, warmup, hist_out=None):
    cmd = [cfg.loadgen, "--endpoint", server.endpoint, "--server-pid", str(server.pid),
           "--label", label, "--duration", str(duration), "--warmup", str(warmup), "--quiet"]
    cmd += tls_args(cfg)
    argv = shlex.split(args)
    if "--auth" in argv:
        argv.remove("--auth")
        try:
            argv += ["--token", auth_token(cfg, server)]
        except Exception as e:  # noqa: BLE001 - reported as the run's failure
            return None, f"setting up auth failed: {e}"[-400:]
    cmd += argv
    if hist_out:
        cmd += ["--hist-out", hist_out]
    t = max(60.0, 3 * (duration + warmup) + 60)
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=t)
    except subprocess.TimeoutExpired:
        return None, "loadgen timed out"
    res = parse_result(r.stdout)
    if "ops_per_s" not in res:
        return None, (r.stderr.strip() or r.stdout.strip() or f"loadgen exit {r.returncode}")[-400:]
    if float(res["ops_per_s"]) == 0 or r.returncode:
        return None, (r.stderr.strip() or f"no operation completed (exit {r.returncode})")[-400:]
    return res, r.stderr.strip()


def fnum(x):
    try:
        return float(x)
    except (TypeError, ValueError):
        return None


def med(vals):
    vals = [v for v in vals if v is not None and v >= 0]
    return statistics.median(vals) if vals else None


class Cfg:
    pass


def make_cfg(a):
    c = Cfg()
    c.build = os.path.join(ROOT, a.build) if not os.path.isabs(a.build) else a.build
    c.loadgen = os.path.join(c.build, "bench", "loadgen")
    c.etcd_bin = env("ETCD_BIN", os.path.join(c.build, "etcd-ref", "usr", "bin", "etcd"))
    c.etcdctl = os.path.join(os.path.dirname(c.etcd_bin), "etcdctl")
    c.uetcd_bin = env("UETCD_BIN", os.path.join(c.build, "uetcd"))
    c.data_root = os.path.join(c.build, "bench-data")
    c.quick = env("QUICK", "0") not in ("0", "")
    c.nofsync = env("NOFSYNC", "0") not in ("0", "")
    c.tls = env("TLS", "0") not in ("0", "")
    c.tls_dir = os.path.join(c.build, "bench-data", "tls")
    if c.tls:
        make_certs(c.tls_dir)
        r = subprocess.run([c.loadgen, "--tls", "--help"], capture_output=True, text=True)
        if "built without OpenSSL" in r.stderr:
            sys.exit("bench: TLS=1 needs a load generator built with libssl-dev")
    c.candidate = env("CANDIDATE", "uetcd")
    c.candidate_wrap = env("CANDIDATE_WRAP", "")
    c.reps = int(env("REPS", "3"))
    c.duration = float(env("DURATION", "1.5" if c.quick else "2.5"))
    c.warmup = float(env("WARMUP", "0.5" if c.quick else "1"))
    c.perf_load = env("PERF_LOAD", "none" if c.quick else "s")
    c.only = [w for w in env("ONLY", "").split(",") if w]
    for p, what in ((c.loadgen, "load generator (make bench-loadgen)"),
                    (c.etcd_bin, "reference etcd (make etcd-ref)")):
        if not os.access(p, os.X_OK):
            sys.exit(f"bench: missing {what}: {p}")
    return c


def candidate_status(cfg):
    """None if the candidate serves, else the reason it cannot be benchmarked."""
    if cfg.candidate == "etcd-self":
        return None
    if not os.access(cfg.uetcd_bin, os.X_OK):
        return f"{cfg.uetcd_bin} is not built"
    s = Server("uetcd", cfg, "probe")
    LIVE.append(s)
    err = s.start(timeout=10)
    s.stop()
    LIVE.remove(s)
    return err


def machine():
    cpu = "?"
    try:
        with open("/proc/cpuinfo") as f:
            m = re.search(r"model name\s*:\s*(.*)", f.read())
            cpu = m.group(1).strip() if m else cpu
    except OSError:
        pass
    fs = subprocess.run(["df", "--output=fstype,source", os.path.dirname(os.path.abspath(__file__))],
                        capture_output=True, text=True).stdout.split("\n")[1:2]
    return f"{os.cpu_count()} x {cpu}, {platform.system()} {platform.release()}, data on {' '.join(fs).strip() or '?'}"


def fdatasync_us(d, n=200):
    """p50 and p99 of a 4 KiB append + fdatasync on the data filesystem: the floor under a
    durable single-client put."""
    path = os.path.join(d, "fdatasync-probe")
    os.makedirs(d, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    ts = []
    try:
        buf = b"x" * 4096
        for _ in range(n):
            t = time.perf_counter_ns()
            os.write(fd, buf)
            os.fdatasync(fd)
            ts.append((time.perf_counter_ns() - t) / 1000)
    finally:
        os.close(fd)
        os.unlink(path)
    ts.sort()
    return ts[len(ts) // 2], ts[min(len(ts) - 1, int(len(ts) * 0.99))]


FSYNC = None  # (p50, p99) measured at the start of `run`


def fmt(v, unit=""):
    if v is None:
        return "-"
    if abs(v) >= 100000:
        return f"{v/1000:.0f}k{unit}"
    if abs(v) >= 1000:
        return f"{v:.0f}{unit}"
    if abs(v) >= 10:
        return f"{v:.1f}{unit}"
    return f"{v:.2f}{unit}"


def ratio(a, b):
    if a is None or b is None or b == 0:
        return None
    return a / b


# ------------------------------------------------------------------ run

def cmd_run(cfg):
    for d in ("raw", "hist"):  # results describe this run only
        shutil.rmtree(os.path.join(RESULTS, d), ignore_errors=True)
        os.makedirs(os.path.join(RESULTS, d))
    t_start = time.time()
    cand_label = "uetcd" if cfg.candidate == "uetcd" else "etcd-self"
    why = candidate_status(cfg)
    servers = ["etcd"] + ([] if why else ["uetcd"])
    if why:
        log(f"bench: *** uetcd cannot be benchmarked: {why}")
        log("bench: *** measuring the reference etcd alone")
    wls = [w for w in WORKLOADS if (not cfg.only or w[0] in cfg.only) and
           (cfg.only or not cfg.quick or w[0] in QUICK_WORKLOADS)]
    mode = "no-fsync (--unsafe-no-fsync on both)" if cfg.nofsync else "fsync (defaults, same filesystem)"
    mode += "; TLS with client certificates" if cfg.tls else "; plaintext h2c"
    with open("/proc/loadavg") as f:
        la = float(f.read().split()[0])
    if la > 1.0:
        log(f"bench: note: load average {la:.1f} before starting: other work on this machine adds noise")
    global FSYNC
    FSYNC = fdatasync_us(cfg.data_root)
    log(f"bench: 4 KiB append + fdatasync on {cfg.data_root}: p50 {FSYNC[0]:.0f} us, p99 {FSYNC[1]:.0f} us")
    log(f"bench: {len(wls)} workloads x {len(servers)} servers x {cfg.reps} reps, "
        f"{cfg.duration}s + {cfg.warmup}s warm-up each; durability: {mode}")
    runs = RUNS  # dicts
    for rep in range(cfg.reps):
        for name, args, _ in wls:
            order = servers if rep % 2 == 0 else servers[::-1]
            for kind in order:
                label = kind if kind == "etcd" else cand_label
                srv = Server(kind, cfg, f"{name}-{rep}")
                LIVE.append(srv)
                err = srv.start()
                if err:
                    log(f"  {label:9} {name:14} rep {rep+1}: server failed to start: {err}")
                    LIVE.remove(srv)
                    srv.stop()
                    runs.append({"server": label, "workload": name, "rep": rep,
                                 "failed": f"server failed to start: {err}"})
                    continue
                hist = os.path.join(RESULTS, "raw", f"{label}-{name}-{rep}.hist")
                res, msg = run_loadgen(cfg, srv, label, args, cfg.duration, cfg.warmup, hist)
                if srv.proc.poll() is not None:
                    res, msg = None, f"server died during the run (status {srv.proc.returncode}): {srv.log_tail()}"
                data_kb = srv.data_bytes() // 1024
                srv.stop()
                LIVE.remove(srv)
                if not res:
                    log(f"  {label:9} {name:14} rep {rep+1}: FAILED: {msg}")
                    runs.append({"server": label, "workload": name, "rep": rep, "failed": msg})
                    continue
                res.update(server=label, workload=name, rep=rep, hist=hist, data_kb=data_kb)
                runs.append(res)
                extra = f" errors={res['errors']}" if res.get("errors", "0") != "0" else ""
                if res.get("dropped", "0") != "0":
                    extra += f" dropped={res['dropped']} (server > 1 s behind the offered rate)"
                if res.get("del_miss", "0") != "0":
                    extra += f" del_miss={res['del_miss']} (keyspace too small: figures invalid)"
                log(f"  {label:9} {name:14} rep {rep+1}: {fnum(res['ops_per_s']):>10.0f} ops/s  "
                    f"p50 {fnum(res['p50_us']):>9.0f} us  p99 {fnum(res['p99_us']):>9.0f} us  "
                    f"cpu {fnum(res['srv_cpu_us_per_op']):>7.1f} us/op  lg {fnum(res['lg_cpu_pct']):.0f}%  "
                    f"other {fnum(res.get('other_cpu_pct')) or 0:.0f}%{extra}")

    # raw runs (all repetitions), then medians
    keys = ["server", "workload", "rep", "ops", "errors", "ops_per_s", "p50_us", "p90_us", "p99_us",
            "p999_us", "max_us", "mean_us", "srv_cpu_us_per_op", "srv_rss_kb", "lg_cpu_us_per_op",
            "lg_cpu_pct", "other_cpu_pct", "txn_fail", "del_miss", "events", "early_events", "puts_per_s",
            "send_to_event_p99_us", "compacted_reads", "dropped", "data_kb", "failed"]
    with open(os.path.join(RESULTS, "raw", "runs.csv"), "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=keys, extrasaction="ignore")
        w.writeheader()
        for r in runs:
            w.writerow(r)

    metrics = ["ops_per_s", "p50_us", "p90_us", "p99_us", "p999_us", "max_us", "srv_cpu_us_per_op",
               "srv_rss_kb", "lg_cpu_pct", "other_cpu_pct"]
    medians = {}
    for name, _, _ in wls:
        for label in ["etcd", cand_label]:
            rs = [r for r in runs if r["server"] == label and r["workload"] == name and "failed" not in r]
            if not rs:
                continue
            m = {k: med([fnum(r.get(k)) for r in rs]) for k in metrics}
            m["n"] = len(rs)
            # bytes on disk after the run vs bytes the run wrote: a durability sanity check
            m["data_kb"] = med([fnum(r.get("data_kb")) for r in rs])
            m["written_kb"] = med([fnum(r.get("ops")) * (256 + 32) / 1024 if name.startswith("put")
                                   else None for r in rs])
            m["errors"] = max(int(r.get("errors", "0") or 0) for r in rs)
            m["failed"] = sum(1 for r in runs if r["server"] == label and r["workload"] == name
                              and "failed" in r)
            # the run closest to the median throughput supplies the plotted distribution
            best = min(rs, key=lambda r: abs(fnum(r["ops_per_s"]) - m["ops_per_s"]))
            dst = os.path.join(RESULTS, "hist", f"{label}-{name}.hist")
            if os.path.exists(best["hist"]):
                shutil.copyfile(best["hist"], dst)
            medians[(label, name)] = m

    perf = {}
    if cfg.perf_load != "none":
        for kind in servers:
            label = kind if kind == "etcd" else cand_label
            perf[label] = check_perf(cfg, kind, label)

    write_results(cfg, wls, medians, perf, cand_label)
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        print_table(cfg, wls, medians, perf, cand_label, why)
    sys.stdout.write(buf.getvalue())
    with open(os.path.join(RESULTS, "table.txt"), "w") as f:
        f.write(f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}\n" + buf.getvalue())
    plot(wls, medians, cand_label)
    log(f"bench: done in {time.time() - t_start:.0f} s; results in {os.path.relpath(RESULTS, ROOT)}/")
    if why:
        if env("BENCH_ALLOW_ETCD_ONLY", "0") not in ("0", ""):
            return 0
        log("bench: exit 3: uetcd was not measured (BENCH_ALLOW_ETCD_ONLY=1 to exit 0)")
        return 3
    return 0


def check_perf(cfg, kind, label):
    srv = Server(kind, cfg, "checkperf")
    LIVE.append(srv)
    err = srv.start()
    if err:
        LIVE.remove(srv)
        srv.stop()
        return {"error": err}
    log(f"bench: etcdctl check perf --load={cfg.perf_load} against {label} (about 60 s)")
    try:
        t = cfg.tls_dir
        tls = [f"--cacert={t}/ca.crt", f"--cert={t}/client.crt", f"--key={t}/client.key"] if cfg.tls else []
        r = subprocess.run([cfg.etcdctl, "--endpoints", srv.endpoint, *tls, "check", "perf",
                            f"--load={cfg.perf_load}"], capture_output=True, text=True, timeout=240)
        out = r.stdout + r.stderr
    except subprocess.TimeoutExpired:
        out = "timed out"
    finally:
        srv.stop()
        LIVE.remove(srv)
    with open(os.path.join(RESULTS, "raw", f"checkperf-{cfg.perf_load}-{label}.txt"), "w") as f:
        f.write(out)
    # etcdctl draws a progress bar with \r; keep the verdict lines
    text = out.replace("\r", "\n")
    lines = [m.group(0).strip() for m in re.finditer(r"\b(?:PASS|FAIL)\b(?::[^\n]*)?", text)]
    res = {"lines": lines, "raw": out[-2000:]}
    m = re.search(r"Throughput[^\n]*?(\d+) writes/s", text)
    res["throughput"] = float(m.group(1)) if m else None
    m = re.search(r"Slowest request[^\n]*?([\d.]+)s", text)
    res["slowest_s"] = float(m.group(1)) if m else None
    m = re.search(r"Stddev[^\n]*?([\d.]+)s", text)
    res["stddev_s"] = float(m.group(1)) if m else None
    res["verdict"] = "PASS" if lines and lines[-1] == "PASS" else ("FAIL" if lines else "ERROR")
    return res


def write_results(cfg, wls, medians, perf, cand):
    path = os.path.join(RESULTS, "results.csv")
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["workload", "server", "runs", "ops_per_s", "p50_us", "p90_us", "p99_us", "p999_us",
                    "max_us", "srv_cpu_us_per_op", "srv_rss_kb", "lg_cpu_pct", "other_cpu_pct", "ratio_ops",
                    "ratio_p99", "ratio_cpu_per_op", "ratio_rss"])
        for name, _, _ in wls:
            e = medians.get(("etcd", name))
            for label in ["etcd", cand]:
                m = medians.get((label, name))
                if not m:
                    continue
                rr = [""] * 4
                if label != "etcd" and e:
                    rr = [ratio(m["ops_per_s"], e["ops_per_s"]), ratio(m["p99_us"], e["p99_us"]),
                          ratio(m["srv_cpu_us_per_op"], e["srv_cpu_us_per_op"]),
                          ratio(m["srv_rss_kb"], e["srv_rss_kb"])]
                    rr = ["" if x is None else f"{x:.3f}" for x in rr]
                w.writerow([name, label, m["n"]] + [
                    "" if m[k] is None else f"{m[k]:.1f}" for k in
                    ["ops_per_s", "p50_us", "p90_us", "p99_us", "p999_us", "max_us",
                     "srv_cpu_us_per_op", "srv_rss_kb", "lg_cpu_pct", "other_cpu_pct"]] + rr)
        for label, p in perf.items():
            if p.get("throughput") is not None:
                w.writerow([f"checkperf-{cfg.perf_load}", label, 1, p["throughput"], "", "", "", "",
                            "" if p.get("slowest_s") is None else p["slowest_s"] * 1e6,
                            "", "", "", "", "", "", "", ""])
    with open(os.path.join(RESULTS, "targets.csv"), "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["target", "value", "bound", "verdict"])
        for what, v, bound, verdict in targets(medians, cand):
            w.writerow([what, f"{v:.4g}", bound, verdict])
    if cand == "uetcd":
        figs, noise = [], []
        for name, _, _ in wls:
            m, e = medians.get((cand, name)), medians.get(("etcd", name))
            if not m:
                continue
            figs += [(f"bench.{name}.uetcd_ops_per_s", m["ops_per_s"], "ops/s"),
                     (f"bench.{name}.uetcd_p99_us", m["p99_us"], "us"),
                     (f"bench.{name}.uetcd_cpu_us_per_op", m["srv_cpu_us_per_op"], "us")]
            if e:
                figs.append((f"bench.{name}.x_ops", ratio(m["ops_per_s"], e["ops_per_s"]), "x"))
            if m.get("other_cpu_pct") is not None:
                noise.append(m["other_cpu_pct"])
        if noise:  # the noise indicator: CPU the rest of the machine used during the runs
            figs.append(("bench.noise.other_cpu_pct_median", med(noise), "%"))
        history.append("bench", figs)
    with open(os.path.join(RESULTS, "meta.txt"), "w") as f:
        f.write(f"date: {datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}\n")
        f.write(f"machine: {machine()}\n")
        f.write(f"durability: {'--unsafe-no-fsync on both' if cfg.nofsync else 'fsync on both'}\n")
        f.write(f"transport: {'TLS with client certificates' if cfg.tls else 'plaintext h2c'}\n")
        if FSYNC:
            f.write(f"fdatasync (4 KiB append): p50 {FSYNC[0]:.0f} us, p99 {FSYNC[1]:.0f} us\n")
        f.write(f"repetitions: {cfg.reps}, duration {cfg.duration}s + warm-up {cfg.warmup}s\n")
        for label, p in perf.items():
            f.write(f"etcdctl check perf --load={cfg.perf_load} {label}: {p.get('verdict')} "
                    f"{'; '.join(p.get('lines', [])) or p.get('error', '')}\n")


def print_table(cfg, wls, medians, perf, cand, why):
    print()
    print(f"uetcd vs etcd 3.5.16 — {machine()}")
    print(f"durability: {'--unsafe-no-fsync on both' if cfg.nofsync else 'fsync on both (same filesystem)'}; "
          f"{'TLS (mTLS)' if cfg.tls else 'plaintext'}; "
          f"median of {cfg.reps} runs of {cfg.duration}s; latency in us; CPU = server CPU us per op")
    if FSYNC:
        print(f"this disk: 4 KiB append + fdatasync p50 {FSYNC[0]:.0f} us, p99 {FSYNC[1]:.0f} us "
              f"(the floor under a durable single-client put)")
    if why:
        print(f"uetcd NOT MEASURED: {why}")
    hdr = (f"{'workload':14} | {'etcd ops/s':>10} {'p50':>8} {'p99':>8} {'cpu/op':>7} {'RSS MiB':>7} | "
           f"{cand + ' ops/s':>11} {'p50':>8} {'p99':>8} {'cpu/op':>7} {'RSS MiB':>7} | "
           f"{'x ops':>6} {'x p99':>6} {'x cpu':>6} {'x RSS':>6}")
    print(hdr)
    print("-" * len(hdr))
    for name, _, _ in wls:
        e = medians.get(("etcd", name))
        u = medians.get((cand, name))

        def cols(m):
            if not m:
                return f"{'-':>10} {'-':>8} {'-':>8} {'-':>7} {'-':>7}"
            rss = m["srv_rss_kb"] / 1024 if m["srv_rss_kb"] is not None else None
            return (f"{fmt(m['ops_per_s']):>10} {fmt(m['p50_us']):>8} {fmt(m['p99_us']):>8} "
                    f"{fmt(m['srv_cpu_us_per_op']):>7} {fmt(rss):>7}")
        rs = "  ".join(f"{'-':>5}" for _ in range(4))
        if e and u:
            rr = [ratio(u["ops_per_s"], e["ops_per_s"]), ratio(u["p99_us"], e["p99_us"]),
                  ratio(u["srv_cpu_us_per_op"], e["srv_cpu_us_per_op"]), ratio(u["srv_rss_kb"], e["srv_rss_kb"])]
            rs = " ".join(f"{fmt(x):>6}" for x in rr)
        print(f"{name:14} | {cols(e)} | {cols(u).rjust(11 + 1 + 8 + 1 + 8 + 1 + 7 + 1 + 7)} | {rs}")
    print("x = uetcd/etcd: 'x ops' higher is better; 'x p99', 'x cpu', 'x RSS' lower is better.")
    for (label, name), m in sorted(medians.items()):
        if m.get("errors") or m.get("failed"):
            print(f"note: {label} {name}: {m['failed']} failed run(s), up to {m['errors']} errors in a run "
                  f"(see bench/results/raw/runs.csv)")
    for name, _, _ in wls:
        for label in ("etcd", cand):
            if (label, name) not in medians:
                fails = [r["failed"] for r in RUNS if r["server"] == label and r["workload"] == name
                         and "failed" in r]
                if fails or label == "etcd" or not why:
                    print(f"note: {label} {name}: no successful run" +
                          (f": {fails[0].splitlines()[-1][:160]}" if fails else ""))
    for (label, name), m in sorted(medians.items()):
        if label != "etcd" and m.get("written_kb") and m.get("data_kb") is not None \
                and m["data_kb"] < 0.5 * m["written_kb"]:
            print(f"WARNING: {label} {name}: {m['data_kb']:.0f} KiB on disk after writing about "
                  f"{m['written_kb']:.0f} KiB of puts: it does not seem to persist writes, so this "
                  f"is NOT an equal-durability comparison")
    others = [m.get("other_cpu_pct") for m in medians.values() if m.get("other_cpu_pct") is not None]
    if others:
        print(f"other processes on the machine during the runs: median {statistics.median(others):.0f}% "
              f"of a core, worst workload {max(others):.0f}% (noise indicator; ~0 on a quiet machine)")
    print("watch-1000: ops/s = events delivered/s, latency = commit-to-event, cpu = per event "
          "(100 puts/s x 1000 watchers offered: event rate is capped at ~100k/s).")
    rows = targets(medians, cand) if not why else []
    if rows:
        print()
        print(f"issue 7 targets ({cand}; not meaningful on a busy machine or without equal durability):")
        for what, v, bound, verdict in rows:
            print(f"  {what:42} {fmt(v):>8}  {bound:>8}  {verdict}")
    for label, p in perf.items():
        if "error" in p:
            print(f"etcdctl check perf --load={cfg.perf_load} vs {label}: could not run: {p['error']}")
        else:
            print(f"etcdctl check perf --load={cfg.perf_load} vs {label}: {p['verdict']} ("
                  + "; ".join(l for l in p["lines"] if l not in ("PASS", "FAIL")) + ")")


# Issue 7's targets (2-core machine, fsync on, same disk): (what, workload, metric, op, bound)
# metric: a uetcd figure, or ("ratio", figure) for uetcd/etcd.
TARGETS = [
    ("put server CPU/op <= 3 us", "put-1000", "srv_cpu_us_per_op", "<=", 3),
    ("txn-put server CPU/op <= 3 us", "txn-put-1000", "srv_cpu_us_per_op", "<=", 3),
    ("range server CPU/op <= 2 us", "get-1000", "srv_cpu_us_per_op", "<=", 2),
    ("watch server CPU/event <= 0.5 us", "watch-1000", "srv_cpu_us_per_op", "<=", 0.5),
    ("put 1 client p50 <= 250 us", "put-1", "p50_us", "<=", 250),
    ("put 1 client p99 <= 600 us", "put-1", "p99_us", "<=", 600),
    ("put 1000 clients >= 5x etcd ops/s", "put-1000", ("ratio", "ops_per_s"), ">=", 5),
    ("put 1000 clients p99 <= 1/10 etcd", "put-1000", ("ratio", "p99_us"), "<=", 0.1),
    ("range 1000 clients >= 10x etcd ops/s", "get-1000", ("ratio", "ops_per_s"), ">=", 10),
    ("range 1000 clients p99 <= 1/20 etcd", "get-1000", ("ratio", "p99_us"), "<=", 0.05),
    ("watch 1000 watchers >= 3x etcd events/s", "watch-1000-sat", ("ratio", "ops_per_s"), ">=", 3),
    ("watch commit-to-event p99 <= 1 ms", "watch-1000", "p99_us", "<=", 1000),
    ("peak RSS <= 1/3 etcd (200k keys)", "delete-100", ("ratio", "srv_rss_kb"), "<=", 1 / 3),
]


def targets(medians, cand):
    """Rows (what, value, bound, verdict) for the targets whose workloads ran."""
    rows = []
    for what, wl, metric, op, bound in TARGETS:
        u, e = medians.get((cand, wl)), medians.get(("etcd", wl))
        if not u:
            continue
        if isinstance(metric, tuple):
            v = ratio(u.get(metric[1]), e.get(metric[1])) if e else None
        else:
            v = u.get(metric)
        if v is None or v < 0:
            continue
        ok = v <= bound if op == "<=" else v >= bound
        b = f"{bound:.3f}".rstrip("0").rstrip(".")
        rows.append((what, v, f"{op} {b}", "met" if ok else "missed"))
    return rows


def plot(wls, medians, cand):
    if not shutil.which("gnuplot"):
        log("bench: gnuplot not found, no plot")
        return
    names = [n for n, _, _ in wls if ("etcd", n) in medians or (cand, n) in medians]
    if not names:
        return
    cols = 3
    rows = (len(names) + cols - 1) // cols
    hist_dir = os.path.join(RESULTS, "hist")
    g = []
    for term, ext in (("pngcairo size 1500,%d font ',9'" % (330 * rows), "png"),
                      ("svg size 1500,%d font ',9'" % (330 * rows), "svg")):
        g.append(f"set terminal {term}")
        g.append(f"set output '{os.path.join(RESULTS, 'latency.' + ext)}'")
        g.append(f"set multiplot layout {rows},{cols} title 'Latency by percentile (median run): "
                 f"etcd 3.5.16 vs {cand}'")
        g.append("set logscale xy; set grid; set key bottom right; set xrange [1:100000]")
        g.append("set xtics ('50%%' 2, '90%%' 10, '99%%' 100, '99.9%%' 1000, '99.99%%' 10000)")
        g.append("set xlabel 'percentile'; set ylabel 'latency (us)'")
        for n in names:
            g.append(f"set title '{n}'")
            parts = []
            for label, style in (("etcd", "lc rgb '#d62728'"), (cand, "lc rgb '#1f77b4'")):
                p = os.path.join(hist_dir, f"{label}-{n}.hist")
                if os.path.exists(p) and (label, n) in medians:
                    parts.append(f"'{p}' using (1/(1-($2<0.99999?$2:0.99999))):($1>1?$1:1) "
                                 f"with steps lw 2 {style} title '{label}'")
            g.append("plot " + ", ".join(parts) if parts else "plot 1/0 notitle")
        g.append("unset multiplot")
    r = subprocess.run(["gnuplot"], input="\n".join(g), capture_output=True, text=True)
    if r.returncode:
        log(f"bench: gnuplot failed: {r.stderr.strip()[-400:]}")
    else:
        log(f"bench: plot: {os.path.relpath(os.path.join(RESULTS, 'latency.png'), ROOT)} (+ .svg)")


# ------------------------------------------------------------------ check / baseline

def check_measure(cfg, default_reps=5):
    """Ratios per workload: median over repetitions of (candidate vs etcd of the same rep)."""
    cand = "uetcd" if cfg.candidate == "uetcd" else "etcd-self"
    why = candidate_status(cfg)
    if why:
        return None, why
    dur, warm, reps = float(env("DURATION", "1.5")), float(env("WARMUP", "0.5")), int(env("REPS", str(default_reps)))
    per = {n: {"thr": [], "cpu": [], "etcd_ops": [], "cand_ops": [], "etcd_cpu": [], "cand_cpu": []}
           for n, _ in CHECK_WORKLOADS}
    for rep in range(reps):
        # Both servers run for the whole repetition and each workload is measured on one right
        # after the other (order alternating), so a pair of figures is seconds apart and shares
        # the machine's background load; the idle server costs next to nothing meanwhile.
        got = {}
        order = ["etcd", "uetcd"] if rep % 2 == 0 else ["uetcd", "etcd"]
        srvs = {}
        for kind in order:
            srv = Server(kind, cfg, f"check-{rep}")
            LIVE.append(srv)
            srvs[kind] = srv
            err = srv.start()
            if err:
                cleanup()
                return None, f"{kind if kind == 'etcd' else cand} failed to start: {err}"
        for name, args in CHECK_WORKLOADS:
            for kind in order:
                srv, label = srvs[kind], kind if kind == "etcd" else cand
                res, msg = run_loadgen(cfg, srv, label, args, dur, warm)
                if srv.proc.poll() is not None:
                    res, msg = None, f"server died (status {srv.proc.returncode}): {srv.log_tail()}"
                if not res or int(res.get("errors", "0")):
                    cleanup()
                    return None, f"{label} {name}: {msg if not res else 'errors=' + res['errors']}"
                got[(kind, name)] = res
        cleanup()
        for name, _ in CHECK_WORKLOADS:
            e, u = got[("etcd", name)], got[("uetcd", name)]
            eo, uo = fnum(e["ops_per_s"]), fnum(u["ops_per_s"])
            ec, uc = fnum(e["srv_cpu_us_per_op"]), fnum(u["srv_cpu_us_per_op"])
            p = per[name]
            p["thr"].append(uo / eo)
            p["cpu"].append(ec / uc if uc and uc > 0 else None)
            p["etcd_ops"].append(eo)
            p["cand_ops"].append(uo)
            p["etcd_cpu"].append(ec)
            p["cand_cpu"].append(uc)
            log(f"  rep {rep+1} {name:8} etcd {eo:9.0f} ops/s {ec:7.1f} us/op | {cand} {uo:9.0f} ops/s "
                f"{uc:7.1f} us/op")
    out = {}
    for name, _ in CHECK_WORKLOADS:
        p = per[name]
        out[name] = {"throughput_ratio": round(med(p["thr"]), 4),
                     "cpu_per_op_ratio": round(med(p["cpu"]), 4) if med(p["cpu"]) else None,
                     "etcd_ops_per_s": round(med(p["etcd_ops"]), 1),
                     "candidate_ops_per_s": round(med(p["cand_ops"]), 1),
                     "etcd_cpu_us_per_op": round(med(p["etcd_cpu"]), 2),
                     "candidate_cpu_us_per_op": round(med(p["cand_cpu"]), 2)}
    return out, None


def cmd_check(cfg):
    t0 = time.time()
    try:
        with open(BASELINE) as f:
            base = json.load(f)
    except (OSError, ValueError) as e:
        log(f"bench-ratios: cannot read {BASELINE}: {e} (make bench-ratios-baseline NOTE='why')")
        return 2
    log(f"bench-ratios: baseline from {base.get('created')} ({base.get('candidate')}): {base.get('note')}")
    cur, why = check_measure(cfg)
    if why:
        log(f"bench-ratios: cannot measure: {why}")
        return 1
    tol = float(base.get("tolerance", TOLERANCE))
    bad = []
    print(f"{'workload':9} {'metric':18} {'baseline':>9} {'now':>9} {'floor':>9}  verdict")
    for name, m in cur.items():
        b = base.get("workloads", {}).get(name)
        if not b:
            print(f"{name:9} (not in baseline)")
            continue
        for key in ("throughput_ratio", "cpu_per_op_ratio"):
            if b.get(key) is None or m.get(key) is None:
                continue
            floor = b[key] * (1 - tol)
            ok = m[key] >= floor
            print(f"{name:9} {key:18} {b[key]:9.3f} {m[key]:9.3f} {floor:9.3f}  {'ok' if ok else 'REGRESSION'}")
            if not ok:
                bad.append(f"{name} {key} {m[key]:.3f} < {floor:.3f}")
    print("ratios are candidate vs etcd in the same run: throughput = cand/etcd, "
          "cpu_per_op = etcd/cand (higher is better for both)")
    log(f"bench-ratios: {time.time() - t0:.0f} s")
    if bad:
        print("bench-ratios: below the baseline ratios (a report, not a gate: these ratios move with "
              "the machine's load; the gate is make bench-check): " + "; ".join(bad))
        return 0
    print("bench-ratios: at or above the baseline ratios")
    return 0


def cmd_baseline(cfg):
    note = env("NOTE")
    if not note:
        log("bench-ratios-baseline: say why the baseline changes: make bench-ratios-baseline NOTE='...'")
        return 2
    cur, why = check_measure(cfg, default_reps=9)  # a steadier reference than one check run
    if why:
        log(f"bench-ratios-baseline: cannot measure: {why}")
        return 1
    doc = {"note": note,
           "created": f"{datetime.datetime.now(datetime.timezone.utc):%Y-%m-%d %H:%M UTC}",
           "machine": machine(),
           "candidate": "uetcd" if cfg.candidate == "uetcd" else "etcd-self (reference etcd against itself)",
           "durability": "no-fsync" if cfg.nofsync else "fsync",
           "transport": "tls" if cfg.tls else "plaintext",
           "tolerance": TOLERANCE,
           "workloads": cur}
    with open(BASELINE, "w") as f:
        json.dump(doc, f, indent=2)
        f.write("\n")
    print(json.dumps(doc, indent=2))
    return 0


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("command", choices=["run", "check", "baseline"])
    ap.add_argument("--build", default="build")
    a = ap.parse_args()
    cfg = make_cfg(a)
    os.makedirs(cfg.data_root, exist_ok=True)
    for fn in os.listdir(cfg.data_root):  # server logs of the previous invocation
        if fn.endswith(".log"):
            os.unlink(os.path.join(cfg.data_root, fn))
    signal.signal(signal.SIGTERM, lambda *_: (cleanup(), sys.exit(143)))
    try:
        return {"run": cmd_run, "check": cmd_check, "baseline": cmd_baseline}[a.command](cfg)
    except KeyboardInterrupt:
        return 130
    finally:
        cleanup()


if __name__ == "__main__":
    sys.exit(main())
