#!/usr/bin/python3
"""The performance-regression gate: server instructions per operation (stdlib only).

  gate.py check      measure every workload, compare with bench/gate-baseline.json; exit 1 when
                     a figure grew by more than the tolerance, naming the functions that grew;
                     exit 2 when it could not measure (server did not start, loadgen failed)
  gate.py baseline   measure and rewrite bench/gate-baseline.json (needs --note "why")
  gate.py measure    measure REPS times and print the spread (how the tolerance was chosen)

Why instructions: time and throughput move with whatever else the machine runs; the number of
instructions the server executes for a fixed request sequence does not. Hardware counters
(`perf stat -e instructions`) are used when the kernel offers them; in a VM or container without
a PMU (this machine: perf reports "<not supported>") the count comes from Valgrind's callgrind,
which counts every instruction the program executes, with a per-function breakdown.

Method, per workload: uetcd --threads 1 on a fresh data dir under callgrind; the load generator
in fixed-count mode (loadgen --ops N --warmup-ops W --seed 1, one thread, fixed concurrency)
sends the same requests every run. A second run sends only the W warm-up requests. Their
difference, divided by N, is the instructions per operation of the steady state: start-up,
preload, warm-up and shut-down cancel out, per function too. vg_uring.so (LD_PRELOAD) lets the
io_uring reactor run under Valgrind; its wait loop is not counted (--toggle-collect), so how
often the reactor wakes up (timing) does not enter the figure.

Start-up is a figure as well: instructions from exec to "ready" and exit for a store of
STARTUP_KEYS keys loaded from a checkpoint, plus the native seconds to ready (median of 3).
"""
import argparse
import concurrent.futures
import datetime
import json
import os
import platform
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, HERE)
import history  # noqa: E402

BASELINE = os.path.join(HERE, "gate-baseline.json")
# Chosen from the measured spread (bench/README.md, "The gate"): repeated runs of the same
# binary agree within ~0.5 %; 3 % leaves room for that and still catches a 5 % slowdown of
# one path.
TOLERANCE = 0.03
STARTUP_KEYS = 100000
# Functions kept per workload in the baseline (for the "what grew" diff): those costing at
# least this many instructions per operation, at most FUNCS_MAX of them.
FUNCS_MIN_PER_OP = 1.0
FUNCS_MAX = 250
SERVER_READY_S = 120   # under callgrind, with a 100k-key checkpoint to load
LOADGEN_MAX_S = 600    # loadgen's own hard deadline is similar

# name, loadgen arguments, measured ops N, warm-up ops W, what one op is
WORKLOADS = [
    ("put", "--workload put --conns 1 --streams 4 --keyspace 1000", 1000, 100,
     "Put of a 256-byte value, 4 in flight"),
    ("range", "--workload get --conns 1 --streams 4 --keyspace 1000", 2000, 200,
     "linearizable single-key Range, 4 in flight"),
    ("txn", "--workload txn-put --conns 1 --streams 4 --keyspace 1000", 1000, 100,
     "If(mod_revision==known) Put Else Range, 4 in flight"),
    ("watch", "--workload watch --conns 2 --streams 50 --writer-conns 1 --writer-streams 1", 100, 10,
     "one Put delivered to 100 prefix watchers"),
    ("lease", "--workload lease-keepalive --conns 1 --streams 4 --leases 100", 2000, 200,
     "LeaseKeepAlive round trip, 4 streams"),
    ("k8s", "--workload k8s --conns 1 --streams 4 --keyspace 100 --watchers 10", 1000, 100,
     "request of the Kubernetes mix (10 watchers, compaction every 200)"),
]


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    p = s.getsockname()[1]
    s.close()
    return p


def perf_instructions_ok():
    """True when `perf stat -e instructions` counts (a PMU is exposed to this kernel)."""
    try:
        r = subprocess.run(["perf", "stat", "-x,", "-e", "instructions", "true"], capture_output=True,
                           text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return r.returncode == 0 and "not supported" not in r.stderr and "<not counted>" not in r.stderr


class Server:
    """uetcd --threads 1 on a fresh (or given) data dir, optionally under callgrind."""

    def __init__(self, cfg, work, tag, data=None, callgrind=True, extra=()):
        self.cfg, self.tag = cfg, tag
        self.dir = os.path.join(work, tag)
        os.makedirs(self.dir, exist_ok=True)
        self.data = data or os.path.join(self.dir, "data")
        self.port = free_port()
        self.cg_out = os.path.join(self.dir, "callgrind.out")
        self.log_path = os.path.join(self.dir, "server.log")
        url = f"http://127.0.0.1:{self.port}"
        cmd = [cfg.uetcd, "--threads", "1", "--data-dir", self.data, "--listen-client-urls", url,
               "--advertise-client-urls", url, *extra]
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        if callgrind:
            cmd = ["valgrind", "--tool=callgrind", "--dump-instr=no", "--dump-line=no",
                   "--toggle-collect=io_uring_submit_and_wait", "--collect-atstart=yes",
                   f"--callgrind-out-file={self.cg_out}", *cmd]
            env["LD_PRELOAD"] = cfg.shim
        self.t0 = time.monotonic()
        self.logf = open(self.log_path, "w")
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=self.logf, stderr=subprocess.STDOUT,
                                     env=env)

    def wait_ready(self, timeout=SERVER_READY_S):
        """Seconds from exec to the server's "ready to serve" line (no request is sent)."""
        deadline = self.t0 + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"{self.tag}: server exited at start:\n{self.tail()}")
            with open(self.log_path, errors="replace") as f:
                if "ready to serve" in f.read():
                    return time.monotonic() - self.t0
            time.sleep(0.01)
        raise RuntimeError(f"{self.tag}: server not ready in {timeout} s:\n{self.tail()}")

    def tail(self, n=15):
        try:
            with open(self.log_path, errors="replace") as f:
                return "".join(f.readlines()[-n:])
        except OSError:
            return ""

    def stop(self, sig=signal.SIGTERM, timeout=120):
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(30)
        self.logf.close()


def run_loadgen(cfg, server, args, ops, warmup):
    cmd = [cfg.loadgen, "--endpoint", f"127.0.0.1:{server.port}", *args.split(), "--ops", str(ops),
           "--warmup-ops", str(warmup), "--seed", "1", "--quiet"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=LOADGEN_MAX_S + 60)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("RESULT ")), "")
    res = dict(kv.split("=", 1) for kv in line.split()[1:] if "=" in kv)
    if r.returncode and ops or res.get("errors", "0") != "0":
        raise RuntimeError(f"{server.tag}: loadgen failed (rc {r.returncode}): {r.stderr[-600:]} {line}")
    return res


LINE = re.compile(r"^\s*([\d,]+)\s+\(\s*[\d.]+%\)\s+(.*?)\s*$")


def func_key(k):
    """'function (dir/file.c)' -> 'function (file.c)': the same name whatever the checkout's path
    (debug info may name /abs/path/net/h2.c in one build and net/h2.c in another)."""
    m = re.match(r"^(.*) \((.*)\)$", k)
    return f"{m.group(1)} ({os.path.basename(m.group(2))})" if m else k


def norm_funcs(funcs):
    out = {}
    for k, v in funcs.items():
        out[func_key(k)] = out.get(func_key(k), 0) + v
    return out


def annotate(path):
    """(total instructions, {function: instructions}) from a callgrind output file."""
    r = subprocess.run(["callgrind_annotate", "--inclusive=no", "--auto=no", "--threshold=100", path], capture_output=True,
                       text=True, timeout=300)
    if r.returncode:
        raise RuntimeError(f"callgrind_annotate {path}: {r.stderr[-400:]}")
    total, funcs = None, {}
    for ln in r.stdout.splitlines():
        m = LINE.match(ln)
        if not m:
            continue
        n, what = int(m.group(1).replace(",", "")), m.group(2)
        if what.startswith("PROGRAM TOTALS"):
            total = n
            continue
        obj = ""
        mo = re.match(r"^(.*) \[(.*)\]$", what)
        if mo:
            what, obj = mo.group(1), os.path.basename(mo.group(2))
        file, _, fn = what.rpartition(":")
        if not fn:
            continue
        key = func_key(f"{fn} ({obj})" if file in ("???", "") else f"{fn} ({file})")
        funcs[key] = funcs.get(key, 0) + n
    if total is None:
        raise RuntimeError(f"{path}: no PROGRAM TOTALS (callgrind output incomplete?)")
    return total, funcs


def measure_workload(cfg, work, name, args, ops, warmup, rep):
    """Instructions per op (total and per function) of one workload: (A - B) / N. The two runs
    go side by side (separate servers and ports): counts do not depend on timing, and on a
    busy machine two processes get twice the CPU share of one."""
    def phase(tag, n):
        s = Server(cfg, work, f"{name}-{rep}{tag}")
        try:
            s.wait_ready()
            t0 = time.monotonic()
            res = run_loadgen(cfg, s, args, n, warmup)
            wall = time.monotonic() - t0
        finally:
            s.stop()
        if s.proc.returncode not in (0, -signal.SIGTERM):
            raise RuntimeError(f"{s.tag}: server exited with {s.proc.returncode}:\n{s.tail()}")
        return annotate(s.cg_out) + (res, wall)

    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        fut_a, fut_b = ex.submit(phase, "a", ops), ex.submit(phase, "b", 0)
        (ta, fa, res, wall), (tb, fb, _, _) = fut_a.result(), fut_b.result()
    per_op = (ta - tb) / ops
    funcs = {k: (fa.get(k, 0) - fb.get(k, 0)) / ops for k in set(fa) | set(fb)}
    return {"instr_per_op": per_op, "functions": funcs, "ops": ops, "warmup": warmup, "wall_s": wall,
            "events": int(res.get("events", 0) or 0), "txn_fail": int(res.get("txn_fail", 0) or 0)}


def build_checkpoint_store(cfg, work, keys):
    """A data dir holding `keys` keys in a checkpoint that covers the last revision."""
    s = Server(cfg, work, "startup-load", callgrind=False)
    try:
        s.wait_ready(30)
        run_loadgen(cfg, s, f"--workload get --keyspace {keys} --seq --conns 1 --streams 1", 0, 0)
        # a Defragment makes the checkpoint due now (README: when checkpoints are taken)
        ctl = shutil.which("etcdctl") or "/usr/bin/etcdctl"
        env = dict(os.environ, ETCDCTL_API="3")
        ep = f"127.0.0.1:{s.port}"
        r = subprocess.run([ctl, "--endpoints", ep, "-w", "json", "get", "x"], capture_output=True, text=True,
                           timeout=30, env=env)
        rev = json.loads(r.stdout)["header"]["revision"]
        subprocess.run([ctl, "--endpoints", ep, "defrag"], capture_output=True, text=True, timeout=120, env=env)
        # storage/ckpt.c names a checkpoint snap/<16 hex digits of its revision>.ckpt
        snap = os.path.join(s.data, "snap")
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            names = os.listdir(snap) if os.path.isdir(snap) else []
            revs = [int(n[:16], 16) for n in names if len(n) == 21 and n.endswith(".ckpt")]
            if any(r_ >= rev for r_ in revs):
                break
            time.sleep(0.1)
        else:
            raise RuntimeError(f"no checkpoint at revision {rev} in {snap} after a Defragment")
        time.sleep(0.5)
    finally:
        s.stop(signal.SIGKILL)
    return s.data


def measure_startup(cfg, work, data):
    """(instructions, native seconds) to start from the checkpoint in `data`."""
    secs = []
    for i in range(3):
        s = Server(cfg, work, f"startup-native-{i}", data=data, callgrind=False)
        try:
            secs.append(s.wait_ready(60))
        finally:
            s.stop(signal.SIGKILL)
    s = Server(cfg, work, "startup-cg", data=data)
    try:
        s.wait_ready()
    finally:
        s.stop()
    total, funcs = annotate(s.cg_out)
    return {"instr_per_op": float(total), "functions": {k: float(v) for k, v in funcs.items()}, "ops": 1,
            "seconds": statistics.median(secs)}


def measure_all(cfg, reps=1):
    """{figure: [result per rep]} for every workload and the start-up."""
    work = tempfile.mkdtemp(prefix="gate-", dir=cfg.work_root)
    results = {}
    t_all = time.monotonic()
    try:
        for rep in range(reps):
            for name, args, ops, warmup, _ in WORKLOADS:
                if cfg.only and name not in cfg.only:
                    continue
                t0 = time.monotonic()
                r = measure_workload(cfg, work, name, args, ops, warmup, rep)
                results.setdefault(name, []).append(r)
                log(f"gate: {name:<8} {r['instr_per_op']:>12,.0f} instr/op  ({ops} ops, "
                    f"{time.monotonic() - t0:.0f} s)")
            if not cfg.only or "startup" in cfg.only:
                t0 = time.monotonic()
                data = build_checkpoint_store(cfg, work, STARTUP_KEYS)
                r = measure_startup(cfg, work, data)
                results.setdefault("startup", []).append(r)
                log(f"gate: startup  {r['instr_per_op']:>12,.0f} instr      ({STARTUP_KEYS} keys from a "
                    f"checkpoint; native {r['seconds']:.3f} s; {time.monotonic() - t0:.0f} s)")
                shutil.rmtree(data, ignore_errors=True)
    finally:
        if not cfg.keep:
            shutil.rmtree(work, ignore_errors=True)
    log(f"gate: measured in {time.monotonic() - t_all:.0f} s")
    return results


def history_figures(results):
    figs = []
    for name, rs in results.items():
        r = rs[-1]
        if name == "startup":
            figs.append((f"startup.ckpt-{STARTUP_KEYS // 1000}k.instr", r["instr_per_op"], "instructions"))
            figs.append((f"startup.ckpt-{STARTUP_KEYS // 1000}k.seconds", r["seconds"], "s"))
        else:
            figs.append((f"gate.{name}.instr_per_op", r["instr_per_op"], "instructions"))
    return figs


def top_functions(funcs):
    keep = sorted(((k, v) for k, v in funcs.items() if abs(v) >= FUNCS_MIN_PER_OP), key=lambda kv: -abs(kv[1]))
    return {k: round(v, 2) for k, v in keep[:FUNCS_MAX]}


def machine():
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next((ln.split(":", 1)[1].strip() for ln in f if ln.startswith("model name")), "?")
    except OSError:
        cpu = "?"
    vg = subprocess.run(["valgrind", "--version"], capture_output=True, text=True).stdout.strip()
    return f"{os.cpu_count()} x {cpu}, Linux {platform.release()}, {vg}"


def grew(base_funcs, cur_funcs, total_growth, n=8):
    """The functions whose instructions per op grew most, each by at least 5 % of the figure's
    total growth (smaller ones are noise or below the baseline's list): [(name, base, cur, delta)]."""
    rows = []
    base_funcs, cur_funcs = norm_funcs(base_funcs), norm_funcs(cur_funcs)
    for k in set(base_funcs) | set(cur_funcs):
        b, c = base_funcs.get(k, 0.0), cur_funcs.get(k, 0.0)
        rows.append((k, b, c, c - b))
    rows.sort(key=lambda r: -r[3])
    floor = max(1.0, 0.05 * total_growth)
    return [r for r in rows[:n] if r[3] >= floor]


def cmd_check(cfg):
    if not os.path.exists(BASELINE):
        log(f"gate: no {os.path.relpath(BASELINE, ROOT)}: run `make bench-baseline NOTE='why'` first")
        return 2
    with open(BASELINE) as f:
        base = json.load(f)
    tol = base.get("tolerance", TOLERANCE)
    results = measure_all(cfg)
    if cfg.history:
        history.append("bench-check", history_figures(results))
    failed = []
    print(f"bench-check: server instructions per operation against {os.path.basename(BASELINE)} "
          f"({base.get('date', '?')}, commit {base.get('commit', '?')}); tolerance +{tol * 100:.1f} %")
    print(f"{'figure':<10} {'baseline':>14} {'now':>14} {'change':>8}  verdict")
    for name, rs in results.items():
        r = rs[-1]
        b = base["workloads"].get(name)
        if not b:
            print(f"{name:<10} {'-':>14} {r['instr_per_op']:>14,.0f} {'':>8}  new (not in the baseline)")
            continue
        ch = r["instr_per_op"] / b["instr_per_op"] - 1
        verdict = "FAIL" if ch > tol else "ok" if ch >= -tol else "ok (faster: rebaseline to bank it)"
        print(f"{name:<10} {b['instr_per_op']:>14,.0f} {r['instr_per_op']:>14,.0f} {ch * 100:>+7.2f}%  {verdict}")
        if ch > tol:
            failed.append((name, b, r))
    for name, b, r in failed:
        unit = "instructions" if name == "startup" else "instructions per op"
        print(f"\n{name}: +{r['instr_per_op'] - b['instr_per_op']:,.0f} {unit}; the functions that grew "
              f"(self cost, {unit}):")
        print(f"  {'baseline':>12} {'now':>12} {'change':>12}  function (file or object)")
        for k, bv, cv, d in grew(b["functions"], r["functions"], r["instr_per_op"] - b["instr_per_op"]):
            print(f"  {bv:>12,.1f} {cv:>12,.1f} {d:>+12,.1f}  {k}")
    if failed:
        print(f"\nbench-check: FAIL ({', '.join(n for n, _, _ in failed)} grew by more than "
              f"{tol * 100:.1f} %). If the growth is intended, `make bench-baseline NOTE='why'`.")
        return 1
    print("\nbench-check: pass")
    return 0


def cmd_baseline(cfg):
    if not cfg.note:
        log("gate: baseline needs a reason: make bench-baseline NOTE='why'")
        return 2
    results = measure_all(cfg)
    if cfg.history:
        history.append("bench-check", history_figures(results))
    out = {"note": cfg.note,
           "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "commit": history.commit(), "machine": machine(), "tolerance": TOLERANCE,
           "method": "callgrind Ir of uetcd --threads 1; (run of W+N requests - run of W) / N",
           "workloads": {}}
    for name, rs in results.items():
        r = rs[-1]
        w = {"instr_per_op": round(r["instr_per_op"], 1), "ops": r["ops"],
             "functions": top_functions(r["functions"])}
        if name == "startup":
            w["seconds"] = round(r["seconds"], 4)
            w["keys"] = STARTUP_KEYS
        out["workloads"][name] = w
    with open(BASELINE, "w") as f:
        json.dump(out, f, indent=1, sort_keys=True)
        f.write("\n")
    log(f"gate: wrote {os.path.relpath(BASELINE, ROOT)}; commit it with the reason")
    return 0


def cmd_measure(cfg):
    results = measure_all(cfg, cfg.reps)
    print(f"{'figure':<10} {'median':>14} {'min':>14} {'max':>14} {'spread':>8}  runs")
    for name, rs in results.items():
        v = [r["instr_per_op"] for r in rs]
        m = statistics.median(v)
        print(f"{name:<10} {m:>14,.0f} {min(v):>14,.0f} {max(v):>14,.0f} {(max(v) - min(v)) / m * 100:>7.2f}%  "
              + " ".join(f"{x:,.0f}" for x in v))
    return 0


def main():
    a = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    a.add_argument("cmd", choices=["check", "baseline", "measure"])
    a.add_argument("--build", default=os.path.join(ROOT, "build"))
    a.add_argument("--note", default=os.environ.get("NOTE", ""))
    a.add_argument("--reps", type=int, default=int(os.environ.get("REPS", "5")))
    a.add_argument("--only", default=os.environ.get("ONLY", ""), help="comma-separated figures")
    a.add_argument("--keep", action="store_true", help="keep the work directory (callgrind files)")
    a.add_argument("--no-history", action="store_true", help="do not append to bench/results/history.tsv")
    cfg = a.parse_args()
    cfg.only = [x for x in cfg.only.split(",") if x]
    cfg.uetcd = os.environ.get("UETCD_BIN") or os.path.join(cfg.build, "uetcd")
    # the history is of this tree's commits: a binary from elsewhere (UETCD_BIN) stays out of it
    cfg.history = not cfg.no_history and not os.environ.get("UETCD_BIN")
    cfg.loadgen = os.path.join(cfg.build, "bench", "loadgen")
    cfg.shim = os.path.abspath(os.path.join(cfg.build, "bench", "vg_uring.so"))
    cfg.work_root = os.path.join(cfg.build, "bench-data")
    os.makedirs(cfg.work_root, exist_ok=True)
    for p in (cfg.uetcd, cfg.loadgen, cfg.shim):
        if not os.path.exists(p):
            log(f"gate: missing {p}")
            return 2
    if perf_instructions_ok():
        log("gate: perf counts instructions on this machine, but the gate uses callgrind everywhere so that "
            "the baseline and the per-function diff mean the same thing on every machine")
    else:
        log("gate: perf stat -e instructions is not supported here (no PMU): counting with callgrind")
    if not shutil.which("valgrind") or not shutil.which("callgrind_annotate"):
        log("gate: valgrind is not installed (tools/deps.sh bench installs it)")
        return 2
    try:
        return {"check": cmd_check, "baseline": cmd_baseline, "measure": cmd_measure}[cfg.cmd](cfg)
    except (RuntimeError, OSError, subprocess.SubprocessError, ValueError, KeyError) as e:
        # a measurement that did not happen is not a pass, and not a regression either
        log(f"gate: could not measure: {e}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
