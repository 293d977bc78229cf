#!/usr/bin/python3
"""Range vs RangeStream for one 100K-key list: time to first byte, time to the end, and the
server's peak RSS while each is read (issue 13, section 2).

Starts its own uetcd (UETCD_BIN, default build/uetcd) on a free loopback port in a fresh
data dir, writes 100K keys (VALUE_BYTES each, default 1000: a ~110 MB list), then reads the
whole prefix ROUNDS times with each method through a raw HTTP/2 client (tests/integration/
h2raw.py) that opens its windows as bytes arrive, and prints one line per method:
median time to the first DATA byte, median time to the trailers, peak server RSS above
what it was before the reads. Loopback only; bounded in rounds and time; stops the server.

  make bench-rangestream  (or: /usr/bin/python3 bench/rangestream.py [--keys N] [--value-bytes B] [--rounds R]) [--keys N] [--value-bytes B] [--rounds R]
"""
import argparse
import concurrent.futures
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'tests', 'integration'))
import h2raw  # noqa: E402
import grpc  # noqa: E402
from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc  # noqa: E402


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    p = s.getsockname()[1]
    s.close()
    return p


def rss_kb(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


def read_once(port, path, req, pid):
    """(ttfb s, total s, peak RSS KiB, body bytes) for one call."""
    peak = [rss_kb(pid)]
    stop = threading.Event()

    def sample():
        while not stop.is_set():
            peak[0] = max(peak[0], rss_kb(pid))
            time.sleep(0.002)

    th = threading.Thread(target=sample)
    th.start()
    conn = h2raw.Conn('127.0.0.1', port, timeout=60)
    try:
        conn.send(h2raw.settings((4, 16 << 20)) + h2raw.window_update(0, 16 << 20))
        t0 = time.monotonic()
        conn.request(1, path, req)
        first = None
        body = 0
        deadline = t0 + 120
        while time.monotonic() < deadline:
            f = conn.recv_frame(timeout=60)
            if f is None:
                raise RuntimeError('connection closed after %d bytes' % body)
            ftype, flags, sid, payload = f
            if sid != 1:
                continue
            if ftype == h2raw.DATA and payload:
                if first is None:
                    first = time.monotonic() - t0
                body += len(payload)
            if ftype == h2raw.RST_STREAM:
                raise RuntimeError('reset')
            if flags & h2raw.END_STREAM:
                break
        total = time.monotonic() - t0
    finally:
        conn.close()
        stop.set()
        th.join()
    return first, total, peak[0], body


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--keys', type=int, default=100_000)
    ap.add_argument('--value-bytes', type=int, default=1000)
    ap.add_argument('--rounds', type=int, default=5)
    a = ap.parse_args()
    binary = os.environ.get('UETCD_BIN', os.path.join(HERE, '..', 'build', 'uetcd'))
    tmp = tempfile.mkdtemp(prefix='rs-measure-')
    port = free_port()
    url = 'http://127.0.0.1:%d' % port
    proc = subprocess.Popen([binary, '--data-dir', os.path.join(tmp, 'd'), '--listen-client-urls', url,
                             '--advertise-client-urls', url], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        ch = grpc.insecure_channel('127.0.0.1:%d' % port)
        grpc.channel_ready_future(ch).result(timeout=20)
        kv = rpc_pb2_grpc.KVStub(ch)
        per = 100
        val = b'x' * a.value_bytes

        def txn(t):
            ops = [rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b'm/%07d' % i, value=val))
                   for i in range(t * per, min(a.keys, (t + 1) * per))]
            kv.Txn(rpc_pb2.TxnRequest(success=ops), timeout=60)

        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            list(ex.map(txn, range((a.keys + per - 1) // per)))
        ch.close()
        time.sleep(0.5)
        req = rpc_pb2.RangeRequest(key=b'm/', range_end=b'm0').SerializeToString()
        print('%d keys x %d-byte values' % (a.keys, a.value_bytes))
        for name, path in (('Range', b'/etcdserverpb.KV/Range'), ('RangeStream', b'/etcdserverpb.KV/RangeStream')):
            base = rss_kb(proc.pid)
            res = [read_once(port, path, req, proc.pid) for _ in range(a.rounds)]
            ttfb = sorted(r[0] for r in res)[len(res) // 2]
            total = sorted(r[1] for r in res)[len(res) // 2]
            peak = max(r[2] for r in res)
            print('%-12s ttfb %7.2f ms  total %8.1f ms  body %6.1f MB  server RSS +%6.1f MiB (peak over %d reads)' % (
                name, ttfb * 1e3, total * 1e3, res[0][3] / 1e6, (peak - base) / 1024, a.rounds))
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == '__main__':
    main()
