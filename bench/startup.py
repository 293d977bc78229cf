#!/usr/bin/python3
"""Start-up time with a large store: `make bench-startup`.

Loads KEYS keys of VAL-byte values (loadgen's preload: 128-put Txns) into a fresh data dir,
stops the server (SIGKILL: nothing is flushed on the way out, as after a crash), starts it
again on the same data dir and times exec -> first successful linearizable Range. Three
restarts each, median reported, for:
  uetcd (checkpoint)  the default: the last checkpoint plus the log after it
  uetcd (log only)    --checkpoint-log-bytes 0 --snapshot-count 1e12: the whole log replayed
  etcd 3.5.16         bbolt + its in-memory index rebuilt
With --overwrite S, the keys are then overwritten for S seconds (puts over the same
keyspace, 1000 clients) and the store compacted to its last revision before the kill: the
same live data behind a longer history, which a checkpoint sheds and a log does not.
Also the data dir's size and the RSS once ready. Bounded: each phase has a deadline.

usage: bench/startup.py [--build DIR] [--keys N] [--val-size B] [--overwrite S] [--out FILE]
"""
import argparse
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

import grpc
from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import history  # noqa: E402


def free_port():
    s = socket.socket()
    s.bind(('127.0.0.1', 0))
    p = s.getsockname()[1]
    s.close()
    return p


def dir_bytes(d):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(d) for f in fs)


def rss_kib(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


class Server:
    def __init__(self, kind, binary, extra, tmp):
        self.kind, self.binary, self.extra = kind, binary, extra
        self.data = os.path.join(tmp, kind.replace(' ', '_').replace('(', '').replace(')', ''))
        self.proc = None
        self.port = None

    def start(self, deadline_s=600):
        self.port = free_port()
        url = 'http://127.0.0.1:%d' % self.port
        args = [self.binary, '--data-dir', self.data, '--listen-client-urls', url, '--advertise-client-urls', url]
        if 'etcd' == os.path.basename(self.binary):
            peer = 'http://127.0.0.1:%d' % free_port()
            args += ['--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
                     '--initial-cluster', 'default=' + peer, '--log-level', 'error',
                     '--quota-backend-bytes', str(8 << 30)]
        else:
            args += ['--log-level', 'warn']
        env = {k: v for k, v in os.environ.items() if not k.startswith('ETCD')}
        t0 = time.monotonic()
        self.proc = subprocess.Popen(args + self.extra, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=env)
        ep = '127.0.0.1:%d' % self.port
        while time.monotonic() - t0 < deadline_s:
            if self.proc.poll() is not None:
                raise RuntimeError('%s exited at start' % self.kind)
            try:
                with socket.create_connection(('127.0.0.1', self.port), timeout=0.2):
                    pass
                with grpc.insecure_channel(ep) as ch:
                    rpc_pb2_grpc.KVStub(ch).Range(rpc_pb2.RangeRequest(key=b'probe'), timeout=2)
                return time.monotonic() - t0
            except (OSError, grpc.RpcError):
                time.sleep(0.005)
        raise RuntimeError('%s not ready in %ds' % (self.kind, deadline_s))

    def kill(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(30)


def main():
    a = argparse.ArgumentParser()
    a.add_argument('--build', default='build')
    a.add_argument('--keys', type=int, default=1000000)
    a.add_argument('--val-size', type=int, default=256)
    a.add_argument('--out', default='bench/results/startup.txt')
    a.add_argument('--restarts', type=int, default=3)
    a.add_argument('--overwrite', type=float, default=0)
    o = a.parse_args()
    loadgen = os.path.join(o.build, 'bench', 'loadgen')
    uetcd = os.path.join(o.build, 'uetcd')
    etcd = os.path.join(o.build, 'etcd-ref', 'usr', 'bin', 'etcd')
    tmp = tempfile.mkdtemp(prefix='uetcd-startup-', dir=os.environ.get('BENCH_DIR', '.'))
    rows = []
    try:
        for kind, binary, extra in (('uetcd (checkpoint)', uetcd, []),
                                    ('uetcd (log only)', uetcd, ['--checkpoint-log-bytes', '0',
                                                                 '--snapshot-count', str(10 ** 12)]),
                                    ('etcd 3.5.16', etcd, [])):
            s = Server(kind, binary, extra, tmp)
            s.start()
            t0 = time.monotonic()
            r = subprocess.run([loadgen, '--endpoint', '127.0.0.1:%d' % s.port, '--workload', 'get', '--keyspace',
                                str(o.keys), '--val-size', str(o.val_size), '--seq', '--duration', '1',
                                '--warmup', '0', '--quiet'], capture_output=True, text=True, timeout=900)
            if r.returncode:
                raise RuntimeError('preload into %s failed: %s' % (kind, r.stderr[-500:]))
            if o.overwrite:
                r = subprocess.run([loadgen, '--endpoint', '127.0.0.1:%d' % s.port, '--workload', 'put',
                                    '--keyspace', str(o.keys), '--val-size', str(o.val_size), '--conns', '100',
                                    '--streams', '10', '--duration', str(o.overwrite), '--warmup', '0', '--quiet'],
                                   capture_output=True, text=True, timeout=900)
                if r.returncode:
                    raise RuntimeError('overwriting in %s failed: %s' % (kind, r.stderr[-500:]))
                with grpc.insecure_channel('127.0.0.1:%d' % s.port) as ch:
                    kv = rpc_pb2_grpc.KVStub(ch)
                    rev = kv.Range(rpc_pb2.RangeRequest(key=b'x'), timeout=30).header.revision
                    kv.Compact(rpc_pb2.CompactionRequest(revision=rev, physical=True), timeout=300)
            load_s = time.monotonic() - t0
            time.sleep(2)  # let a checkpoint that the load made due finish, as a server would
            s.kill()
            times, rss = [], []
            for _ in range(o.restarts):
                times.append(s.start())
                rss.append(rss_kib(s.proc.pid))
                s.kill()
            rows.append((kind, load_s, statistics.median(times), min(times), max(times), dir_bytes(s.data),
                         statistics.median(rss)))
            print('%-20s start-up median %.3f s (%s)' % (kind, rows[-1][2], ', '.join('%.3f' % t for t in times)),
                  file=sys.stderr)
            shutil.rmtree(s.data, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    head = 'Start-up with %d keys of %d-byte values%s (SIGKILL, then exec -> first Range; median of %d)' % (
        o.keys, o.val_size, ', overwritten for %gs and compacted' % o.overwrite if o.overwrite else '', o.restarts)
    lines = [head, '',
             '%-20s %9s %10s %9s %9s %10s %9s' % ('server', 'load s', 'start s', 'min', 'max', 'data MiB',
                                                 'RSS MiB'),
             ]
    for kind, load_s, med, lo, hi, size, rss in rows:
        lines.append('%-20s %9.1f %10.3f %9.3f %9.3f %10.1f %9.1f' % (kind, load_s, med, lo, hi, size / 2 ** 20,
                                                                    rss / 1024))
    text = '\n'.join(lines) + '\n'
    print(text)
    os.makedirs(os.path.dirname(o.out), exist_ok=True)
    with open(o.out, 'w') as f:
        f.write(text)
    size = '%dM' % (o.keys // 10 ** 6) if o.keys % 10 ** 6 == 0 else '%dk' % (o.keys // 1000)
    if o.overwrite:
        size += '-overwritten'
    names = {'uetcd (checkpoint)': 'ckpt', 'uetcd (log only)': 'log', 'etcd 3.5.16': 'etcd'}
    history.append('bench-startup', [('startup.%s-%s.seconds' % (names[kind], size), med, 's')
                                     for kind, _, med, _, _, _, _ in rows])


if __name__ == '__main__':
    main()
