"""Hostile clients (issue 12, items 4-6): one connection must not starve a reactor, a
reset stream's or a closed connection's queued work is dropped, SIGTERM is honoured under
load, running out of file descriptors does not spin or flood the log, and pipelining into
reset streams or one LeaseKeepAlive stream cannot grow memory.

Each test starts its own uetcd (some with --threads 1 or a low RLIMIT_NOFILE) and judges
work by the server's CPU time (/proc/PID/stat) or memory (/proc/PID/status), never by how
fast something was answered; the deadlines below only keep a broken server from hanging
the run (the old code blew every one of them).
"""
import os
import socket
import struct
import subprocess
import threading
import time
import urllib.parse

import grpc
import pytest

from etcd3.etcdrpc import rpc_pb2 as pb
from etcd3.etcdrpc import rpc_pb2_grpc as pbg

import conftest
import h2raw as h

RANGE = b'/etcdserverpb.KV/Range'
AUTHENTICATE = b'/etcdserverpb.Auth/Authenticate'
PUT = b'/etcdserverpb.KV/Put'
KEEPALIVE = b'/etcdserverpb.Lease/LeaseKeepAlive'
CLK_TCK = os.sysconf('SC_CLK_TCK')

KEYS = 200000         # the Range every attack asks for covers all of them, as in the issue
VALUE = b'v' * 100    # ~25 MB in all: one Range costs the server tens of milliseconds
FLOOD = 3000          # requests per attack, as in the issue


class Uetcd(conftest.Server):
    """A private uetcd with extra flags and, optionally, a low RLIMIT_NOFILE."""

    def __init__(self, extra=(), nofile=None):
        super().__init__(conftest.uetcd_bin(), 'uetcd')
        self.extra = list(extra)
        self.nofile = nofile

    def _command(self, args):
        """The server's command line: SIGKILL with the test process, and the descriptor
        limit set by util-linux's prlimit (no Python code between fork and exec)."""
        if self.nofile:
            args = ['prlimit', '--nofile=%d:%d' % (self.nofile, self.nofile), '--'] + args
        return conftest._with_pdeathsig(args)

    def start(self, wipe=True):
        if conftest.launch_kind(self.binary, 'uetcd') != 'uetcd':
            pytest.skip('these limits are uetcd\'s own')
        self.port = conftest.free_port()
        self.endpoint = '%s:%d' % (self.host, self.port)
        self.url = 'http://' + self.endpoint
        args = [self.binary, '--data-dir', self.data_dir, '--listen-client-urls', self.url,
                '--advertise-client-urls', self.url] + self.extra
        env = {k: v for k, v in os.environ.items()
               if not k.startswith('ETCD_') and not k.startswith('ETCDCTL_')}
        with open(self.log_path, 'ab') as log:
            self.proc = subprocess.Popen(self._command(args), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, cwd=self.tmp, env=env,
                                         start_new_session=True)
        err = self._wait_ready()
        if err is not None:
            self.stop()
            pytest.fail('uetcd did not start: %s\n%s' % (err, self.stderr_tail()))
        return self

    def cpu_s(self):
        with open('/proc/%d/stat' % self.proc.pid) as f:
            fields = f.read().rsplit(')', 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / CLK_TCK   # utime + stime

    def status_kb(self, what):
        with open('/proc/%d/status' % self.proc.pid) as f:
            for line in f:
                if line.startswith(what + ':'):
                    return int(line.split()[1])
        return 0

    def sanitized(self):
        """An AddressSanitizer build: freed memory waits in its quarantine (256 MiB), so
        memory bounds get that much slack."""
        with open('/proc/%d/maps' % self.proc.pid) as f:
            return 'libasan' in f.read()

    def rss_bound_kb(self, kb):
        return kb + (512 * 1024 if self.sanitized() else 0)

    def log_lines(self):
        with open(self.log_path, 'rb') as f:
            return f.read().count(b'\n')


@pytest.fixture
def start():
    mine = []

    def _start(extra=(), nofile=None):
        srv = Uetcd(extra, nofile).start()
        mine.append(srv)
        return srv

    yield _start
    dead = [(srv.proc.returncode, srv.stderr_tail()) for srv in mine
            if srv.proc.poll() is not None and not getattr(srv, 'signalled', False)]
    for srv in mine:
        srv.stop()
    assert not dead, 'uetcd died: %r' % (dead,)


def load_keys(srv):
    ch = srv.channel()
    kv = pbg.KVStub(ch)
    futures = []
    for base in range(0, KEYS, 128):
        ops = [pb.RequestOp(request_put=pb.PutRequest(key=b'k/%06d' % i, value=VALUE))
               for i in range(base, min(base + 128, KEYS))]
        futures.append(kv.Txn.future(pb.TxnRequest(success=ops), timeout=60))
        if len(futures) >= 64:
            futures.pop(0).result()
    for f in futures:
        f.result()
    ch.close()


def heavy_range():
    """A Range that visits and sorts every key but answers one: much work, a small answer
    (so the server's output limit never ends an attacker's connection for it)."""
    return pb.RangeRequest(key=b'k/', range_end=b'k0', limit=1, sort_order=pb.RangeRequest.DESCEND,
                           sort_target=pb.RangeRequest.MOD)


def all_keys_msg():
    return heavy_range().SerializeToString()


def range_cost_s(srv, n=5):
    """The server's CPU time for one Range over every key (the price of one attack request)."""
    ch = srv.channel()
    kv = pbg.KVStub(ch)
    kv.Range(heavy_range(), timeout=30)   # warm
    c0 = srv.cpu_s()
    for _ in range(n):
        assert kv.Range(heavy_range(), timeout=30).count == KEYS
    ch.close()
    return max((srv.cpu_s() - c0) / n, 1.0 / CLK_TCK)


class Prober(threading.Thread):
    """A second client: `n` small Ranges on its own connection, one after another."""

    def __init__(self, srv, n=12, timeout=20.0):
        super().__init__(daemon=True)
        self.srv, self.n, self.timeout = srv, n, timeout
        self.answered = 0
        self.errors = []

    def run(self):
        ch = self.srv.channel()
        kv = pbg.KVStub(ch)
        for _ in range(self.n):
            try:
                kv.Range(pb.RangeRequest(key=b'probe'), timeout=self.timeout)
                self.answered += 1
            except grpc.RpcError as e:
                self.errors.append('%s %s' % (e.code(), e.details()))
            time.sleep(0.05)
        ch.close()


def wait_idle(srv, limit_s=60.0):
    """Until the server's CPU time stops growing (bounded); returns it."""
    deadline = time.monotonic() + limit_s
    last = srv.cpu_s()
    while time.monotonic() < deadline:
        time.sleep(0.5)
        now = srv.cpu_s()
        if now - last < 0.05:
            return now
        last = now
    return srv.cpu_s()


def attack_conn(srv):
    c = h.Conn(srv.host, srv.port, timeout=30.0)
    c.sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
    return c


def range_triples(n, rst=True, first_sid=1):
    head = h.grpc_headers(RANGE)
    body = h.grpc_frame(all_keys_msg())
    out = []
    for i in range(n):
        sid = first_sid + 2 * i
        f = h.frame(h.HEADERS, h.END_HEADERS, sid, head) + h.frame(h.DATA, h.END_STREAM, sid, body)
        if rst:
            f += h.frame(h.RST_STREAM, 0, sid, struct.pack('>I', 8))   # CANCEL
        out.append(f)
    return out


def send_chunks(conn, frames, per=100):
    for i in range(0, len(frames), per):
        conn.send(b''.join(frames[i:i + per]))


# ---- item 4: one connection must not starve a reactor -------------------------------------

def test_range_rst_flood_does_not_starve_others(start):
    """3000 x [HEADERS + Range over every key + RST_STREAM] on one connection, --threads 1:
    a reset stream's queued Range is dropped, so the flood costs a small fraction of running
    them all, and a second client is answered throughout."""
    srv = start(['--threads', '1'])
    load_keys(srv)
    cost = range_cost_s(srv)
    c0 = srv.cpu_s()
    prober = Prober(srv)
    prober.start()
    conn = attack_conn(srv)
    send_chunks(conn, range_triples(FLOOD))
    prober.join(120)
    used = wait_idle(srv) - c0
    conn.close()
    print('flood: %.2f s of CPU, one Range %.4f s' % (used, cost))
    assert not prober.is_alive(), 'probes still waiting after 120 s'
    assert prober.answered == prober.n, prober.errors
    # running every Range would cost FLOOD * cost; the old code ran them all
    assert used < FLOOD * cost / 10, 'flood cost %.2f s of CPU; one Range costs %.4f s' % (used, cost)


def test_pipelined_ranges_then_disconnect_are_dropped(start):
    """The same Ranges without resets, then the client disconnects: what was queued for the
    connection is dropped, and other clients are answered."""
    srv = start(['--threads', '1'])
    load_keys(srv)
    cost = range_cost_s(srv)
    c0 = srv.cpu_s()
    conn = attack_conn(srv)
    conn.sock.settimeout(5.0)
    try:
        send_chunks(conn, range_triples(FLOOD, rst=False))
    except socket.timeout:
        pass            # the server stopped reading: backpressure
    conn.abort()
    prober = Prober(srv)
    prober.start()
    prober.join(120)
    used = wait_idle(srv) - c0
    print('pipelined: %.2f s of CPU, one Range %.4f s' % (used, cost))
    assert not prober.is_alive(), 'probes still waiting after 120 s'
    assert prober.answered == prober.n, prober.errors
    assert used < FLOOD * cost / 10, 'flood cost %.2f s of CPU; one Range costs %.4f s' % (used, cost)


def test_sigterm_under_load_exits(start):
    """SIGTERM while connections pipeline expensive Ranges and never read: the server exits
    (well within the old code's 60+ s; the bound here is generous for a loaded machine)."""
    srv = start(['--threads', '1'])
    load_keys(srv)
    conns = []
    for _ in range(4):
        c = attack_conn(srv)
        c.sock.settimeout(2.0)
        try:
            send_chunks(c, range_triples(1000, rst=False))
        except socket.timeout:
            pass
        conns.append(c)
    time.sleep(0.5)
    t0 = time.monotonic()
    srv.signalled = True
    srv.proc.send_signal(15)
    try:
        srv.proc.wait(30)
    except subprocess.TimeoutExpired:
        pytest.fail('uetcd did not exit within 30 s of SIGTERM')
    took = time.monotonic() - t0
    for c in conns:
        c.close()
    assert took < 10, 'exit took %.1f s' % took


# ---- item 5: out of file descriptors ------------------------------------------------------

def test_emfile_does_not_spin(start):
    """With RLIMIT_NOFILE at 128, 400 connections: the ones past the limit are refused at
    once (not left to spin accept), the log stays small, CPU stays low, and the server
    serves again once the connections close."""
    srv = start(nofile=128)
    with open('/proc/%d/limits' % srv.proc.pid) as f:
        limit = [l.split()[3:5] for l in f if l.startswith('Max open files')][0]
    assert limit == ['128', '128'], limit  # the limit really applies to the server
    lines0 = srv.log_lines()
    socks = []
    for _ in range(400):
        try:
            s = socket.create_connection((srv.host, srv.port), timeout=5)
            s.sendall(h.PREFACE + h.settings())
            socks.append(s)
        except OSError:
            pass
    c0 = srv.cpu_s()
    time.sleep(3.0)
    used = srv.cpu_s() - c0
    lines = srv.log_lines() - lines0
    assert srv.alive()
    assert used < 1.0, 'server used %.2f s of CPU in 3 s holding connections' % used
    assert lines < 200, '%d log lines while out of descriptors' % lines
    for s in socks:
        s.close()
    deadline = time.monotonic() + 30
    while True:
        try:
            with srv.channel() as ch:
                pbg.KVStub(ch).Range(pb.RangeRequest(key=b'probe'), timeout=5)
            break
        except grpc.RpcError as e:
            if time.monotonic() > deadline:
                pytest.fail('not serving after the connections closed: %s' % e.code())
            time.sleep(0.2)


# ---- item 6: limits on everything ---------------------------------------------------------

def test_put_rst_flood_memory_bounded(start):
    """50 000 x [HEADERS + Put + RST_STREAM] on one connection: the requests in flight are
    bounded (backpressure), so resident memory stays bounded, and others are answered."""
    srv = start(['--threads', '1'])
    with srv.channel() as ch:
        rev0 = pbg.KVStub(ch).Range(pb.RangeRequest(key=b'flood'), timeout=10).header.revision
    rss0 = srv.status_kb('VmRSS')
    head = h.grpc_headers(PUT)
    body = h.grpc_frame(pb.PutRequest(key=b'flood', value=b'x' * 10).SerializeToString())
    frames = [h.frame(h.HEADERS, h.END_HEADERS, sid, head) + h.frame(h.DATA, h.END_STREAM, sid, body) +
              h.frame(h.RST_STREAM, 0, sid, struct.pack('>I', 8))
              for sid in range(1, 100000, 2)]
    conn = attack_conn(srv)
    conn.sock.settimeout(60.0)
    send_chunks(conn, frames, per=500)
    prober = Prober(srv, n=3)
    prober.start()
    prober.join(120)
    wait_idle(srv)
    hwm = srv.status_kb('VmHWM')
    conn.close()
    with srv.channel() as ch:
        applied = pbg.KVStub(ch).Range(pb.RangeRequest(key=b'flood'), timeout=10).header.revision - rev0
    print('put+rst flood: peak RSS +%d KiB, %d applied' % (hwm - rss0, applied))
    assert prober.answered == prober.n, prober.errors
    assert hwm - rss0 < srv.rss_bound_kb(128 * 1024), 'peak RSS grew by %d KiB' % (hwm - rss0)
    # a Put whose reset was read before it ran is dropped: most of them (the old code
    # applied every one)
    assert applied < len(frames) / 2, '%d of %d reset Puts were applied' % (applied, len(frames))


def test_lease_keepalive_flood_memory_bounded(start):
    """One LeaseKeepAlive stream pipelining keep-alives without reading the answers: the
    requests in flight are bounded, memory stays bounded, others are answered."""
    srv = start(['--threads', '1'])
    with srv.channel() as ch:
        lease = pbg.LeaseStub(ch).LeaseGrant(pb.LeaseGrantRequest(TTL=60), timeout=10).ID
    rss0 = srv.status_kb('VmRSS')
    msg = h.grpc_frame(pb.LeaseKeepAliveRequest(ID=lease).SerializeToString())
    chunk = b''.join(h.frame(h.DATA, 0, 1, msg * 1000) for _ in range(16))   # 16 000 keep-alives
    conn = h.Conn(srv.host, srv.port, timeout=30.0, handshake=False)
    # large windows from us: the server's answers are limited by its own output bound
    conn.send(h.PREFACE + h.settings((4, 0x7fffffff)) + h.window_update(0, 0x7fffffff - 65535))
    conn.send(h.frame(h.HEADERS, h.END_HEADERS, 1, h.grpc_headers(KEEPALIVE)))
    conn.sock.settimeout(5.0)
    sent = 0
    deadline = time.monotonic() + 30
    try:
        while sent < 2000000 and time.monotonic() < deadline:
            conn.send(chunk)
            sent += 16000
    except (socket.timeout, OSError):
        pass            # backpressure, or the connection was closed for its unread output
    prober = Prober(srv, n=3)
    prober.start()
    prober.join(120)
    wait_idle(srv)
    hwm = srv.status_kb('VmHWM')
    conn.close()
    print('keep-alive flood: peak RSS +%d KiB' % (hwm - rss0))
    assert prober.answered == prober.n, prober.errors
    assert hwm - rss0 < srv.rss_bound_kb(256 * 1024), 'peak RSS grew by %d KiB' % (hwm - rss0)


def test_pipelined_past_the_bound_all_answered(start):
    """A client that pipelines more requests than a connection may have in flight (3000
    Puts, then 3000 Ranges, read afterwards) is slowed by backpressure, never refused or
    stalled: every request is answered with OK, and every Put applied."""
    srv = start(['--threads', '1'])
    with srv.channel() as ch:
        rev0 = pbg.KVStub(ch).Range(pb.RangeRequest(key=b'pipe'), timeout=10).header.revision
    conn = h.Conn(srv.host, srv.port, timeout=30.0, handshake=False)
    conn.send(h.PREFACE + h.settings((4, 0x7fffffff)) + h.window_update(0, 0x7fffffff - 65535))
    put = h.grpc_frame(pb.PutRequest(key=b'pipe', value=b'x').SerializeToString())
    rng = h.grpc_frame(pb.RangeRequest(key=b'pipe').SerializeToString())
    n = 3000
    sids = list(range(1, 4 * n, 2))
    payload = []
    for i, sid in enumerate(sids):
        path, body = (PUT, put) if i < n else (RANGE, rng)
        payload.append(h.frame(h.HEADERS, h.END_HEADERS, sid, h.grpc_headers(path)) +
                       h.frame(h.DATA, h.END_STREAM, sid, body))
    sender = threading.Thread(target=send_chunks, args=(conn, payload, 200), daemon=True)
    sender.start()
    status = {}
    deadline = time.monotonic() + 120
    while len(status) < len(sids) and time.monotonic() < deadline:
        f = conn.recv_frame(timeout=max(0.0, deadline - time.monotonic()))
        if f is None:
            break
        ftype, flags, sid, payload_ = f
        if ftype == h.HEADERS:
            block = h.strip_headers_padding(flags, payload_)
            hdrs = dict((k.decode(), v.decode()) for k, v in conn.decoder.decode(block))
            if 'grpc-status' in hdrs:
                status[sid] = hdrs['grpc-status']
        elif ftype == h.RST_STREAM:
            status[sid] = 'rst ' + h.error_name(struct.unpack('>I', payload_)[0])
    sender.join(30)
    conn.close()
    bad = {s: v for s, v in status.items() if v != '0'}
    assert len(status) == len(sids) and not bad, '%d answered, not OK: %r' % (len(status), list(bad.items())[:5])
    with srv.channel() as ch:
        rev = pbg.KVStub(ch).Range(pb.RangeRequest(key=b'pipe'), timeout=10).header.revision
    assert rev - rev0 == n
    with open(srv.log_path, 'rb') as f:
        assert b'not reading it until they drain' in f.read(), 'the bound was never reached'


def read_statuses(conn, sids, limit_s):
    """grpc-status (and grpc-message) of every stream in sids, as far as they come."""
    status = {}
    deadline = time.monotonic() + limit_s
    while len(status) < len(sids) and time.monotonic() < deadline:
        f = conn.recv_frame(timeout=max(0.0, deadline - time.monotonic()))
        if f is None:
            break
        ftype, flags, sid, payload = f
        if ftype == h.HEADERS:
            hdrs = dict((k.decode(), v.decode()) for k, v in
                        conn.decoder.decode(h.strip_headers_padding(flags, payload)))
            if 'grpc-status' in hdrs:
                status[sid] = (hdrs['grpc-status'], urllib.parse.unquote(hdrs.get('grpc-message', '')))
    return status


def test_password_queue_bounded(start):
    """300 pipelined Authenticate calls: bcrypt (~50 ms each) runs on one thread, whose
    queue is bounded; the calls past it get etcd's "too many requests" at once instead of
    queueing 15 s of bcrypt, every call is answered, and logins work afterwards."""
    srv = start()
    with srv.channel() as ch:
        auth = pbg.AuthStub(ch)
        auth.UserAdd(pb.AuthUserAddRequest(name='root', password='pw'), timeout=30)
        auth.UserGrantRole(pb.AuthUserGrantRoleRequest(user='root', role='root'), timeout=10)
        auth.AuthEnable(pb.AuthEnableRequest(), timeout=10)
    conn = h.Conn(srv.host, srv.port, timeout=30.0)
    body = h.grpc_frame(pb.AuthenticateRequest(name='root', password='pw').SerializeToString())
    sids = list(range(1, 601, 2))
    conn.send(b''.join(h.frame(h.HEADERS, h.END_HEADERS, sid, h.grpc_headers(AUTHENTICATE)) +
                       h.frame(h.DATA, h.END_STREAM, sid, body) for sid in sids))
    status = read_statuses(conn, sids, 180)
    conn.close()
    assert len(status) == len(sids)
    codes = [c for c, _ in status.values()]
    busy = [m for c, m in status.values() if c == '8']
    assert set(codes) <= {'0', '8'}, codes
    assert busy and set(busy) == {'etcdserver: too many requests'}
    assert codes.count('0') >= 64          # the queue's worth got through
    with srv.channel() as ch:
        assert pbg.AuthStub(ch).Authenticate(pb.AuthenticateRequest(name='root', password='pw'),
                                             timeout=30).token
