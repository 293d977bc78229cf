"""Large answers and many connections (issue 12, items 2 and 3).

An 84 MB Range used to be built whole and queued on the connection, which died past 64 MiB
with every stream on it (etcdctl then retried 99 times). Now a large Range is encoded as
the client's flow-control window opens: these tests read one with etcdctl 3.4 and 3.5 and
python3-etcd3 and compare every byte with what was written, drain one slowly through a raw
HTTP/2 client while the server's memory, a second stream on the same connection and other
clients are watched, reset one half-way, and open then close thousands of connections to
see the memory come back.

Timing never decides a result: pacing sleeps only slow the reader down; every loop is
bounded in rounds and in time.
"""
import concurrent.futures
import os
import socket
import struct
import subprocess
import time

import etcd3
import grpc
import pytest

import h2raw
from conftest import etcdctl_bins
from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc

PREFIX = b'large/'
VALUE_BYTES = 100_000
PER_TXN = 14          # 14 x 100 KB per Txn stays under --max-request-bytes (1.5 MiB)
TXNS = 60             # 840 keys, 84 MB of values
RANGE_PATH = b'/etcdserverpb.KV/Range'
BIG = 1 << 30


def value_of(key):
    return (key * (VALUE_BYTES // len(key) + 1))[:VALUE_BYTES]


def rss_kb(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    raise AssertionError('no VmRSS')


_filled = {}


def filled(srv):
    """Writes the 84 MB once per server (4 writers: the commits group)."""
    if _filled.get(id(srv)) == srv.proc.pid:
        return
    with srv.channel() as ch:
        kv = rpc_pb2_grpc.KVStub(ch)

        def txn(i):
            ops = []
            for j in range(PER_TXN):
                k = PREFIX + b'%05d' % (i * PER_TXN + j)
                ops.append(rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k, value=value_of(k))))
            kv.Txn(rpc_pb2.TxnRequest(success=ops), timeout=30)

        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            list(ex.map(txn, range(TXNS)))
    _filled[id(srv)] = srv.proc.pid


def check_kvs(kvs):
    keys = [kv.key for kv in kvs]
    assert keys == [PREFIX + b'%05d' % i for i in range(TXNS * PER_TXN)]
    bad = [kv.key for kv in kvs if kv.value != value_of(kv.key)]
    assert not bad, 'values differ for %d keys, first %r' % (len(bad), bad[:3])


def big_channel(srv):
    return grpc.insecure_channel(srv.endpoint, options=[('grpc.max_receive_message_length', BIG)])


def range_request(**kw):
    return rpc_pb2.RangeRequest(key=PREFIX, range_end=b'large0', **kw).SerializeToString()


def test_84mb_range_python_etcd3(uetcd):
    filled(uetcd)
    c = etcd3.client(uetcd.host, uetcd.port, grpc_options=[('grpc.max_receive_message_length', BIG)])
    try:
        got = list(c.get_prefix(PREFIX, sort_order='descend', sort_target='key'))
        # a descending walk, resumed by key slice after slice
        assert [m.key for _v, m in got] == [PREFIX + b'%05d' % i for i in reversed(range(TXNS * PER_TXN))]
        assert all(v == value_of(m.key) for v, m in got)
    finally:
        c.close()


def test_84mb_range_etcdctl(uetcd):
    filled(uetcd)
    ctl = dict(etcdctl_bins())['etcdctl35']
    out = subprocess.run([ctl, '--endpoints', uetcd.endpoint, '--command-timeout', '60s',
                          'get', PREFIX.decode(), '--prefix', '-w', 'protobuf'],
                         env=dict(os.environ, ETCDCTL_API='3'), capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    r = rpc_pb2.RangeResponse.FromString(out.stdout)
    assert r.count == TXNS * PER_TXN and not r.more
    check_kvs(r.kvs)


def test_streamed_answers_are_exact_for_every_option(uetcd):
    """The streamed encoding against a reference: each option a streamed Range supports
    (answers of 3 MB, past the size that is sent whole), compared as decoded messages with
    the answer expected from what was written and the keys' revisions."""
    filled(uetcd)
    with big_channel(uetcd) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        meta = kv.Range(rpc_pb2.RangeRequest(key=PREFIX, range_end=b'large0', keys_only=True), timeout=60)
        n = len(meta.kvs)
        rev = meta.header.revision
        full = list(meta.kvs)
        want_all = [type(k)(key=k.key, value=value_of(k.key), create_revision=k.create_revision,
                            mod_revision=k.mod_revision, version=k.version, lease=k.lease) for k in full]
        mid = want_all[300].create_revision
        cases = [
            (dict(limit=30), want_all[:30], True),
            (dict(limit=30, sort_order=rpc_pb2.RangeRequest.DESCEND), list(reversed(want_all))[:30], True),
            (dict(limit=30, min_create_revision=mid), [k for k in want_all if k.create_revision >= mid][:30], True),
            (dict(limit=30, revision=rev), want_all[:30], True),
            (dict(keys_only=True), want_all, False),
            # sorted by another target: collected, sorted, then streamed key by key
            (dict(limit=30, sort_target=rpc_pb2.RangeRequest.MOD, sort_order=rpc_pb2.RangeRequest.DESCEND),
             sorted(want_all, key=lambda k: -k.mod_revision)[:30], True),
            (dict(limit=30, sort_target=rpc_pb2.RangeRequest.VERSION), want_all[:30], True),
        ]
        for kw, want, more in cases:
            r = kv.Range(rpc_pb2.RangeRequest(key=PREFIX, range_end=b'large0', **kw), timeout=60)
            assert r.count == n, kw
            assert r.header.revision >= rev
            assert [k.key for k in r.kvs] == [k.key for k in want], kw
            if kw.get('keys_only'):
                assert all(k.value == b'' for k in r.kvs)
                assert [(k.create_revision, k.mod_revision, k.version) for k in r.kvs] == \
                    [(k.create_revision, k.mod_revision, k.version) for k in want]
            else:
                assert list(r.kvs) == list(want), kw
            assert r.more == more, kw


def read_response(conn, sid, window_step, pause, rounds_max, on_round=None):
    """Reads one stream's answer granting window_step bytes at a time (auto window off).
    Returns the result dict of h2raw.Conn.response plus the DATA bytes."""
    res = {'headers': None, 'trailers': None, 'data': bytearray(), 'rst': None}
    granted = 0
    for rnd in range(rounds_max):
        f = conn.recv_frame(timeout=10.0)
        if f is None:
            raise AssertionError('stream %d: no frame (eof=%s) after %d bytes' % (sid, conn.eof, len(res['data'])))
        ftype, flags, fsid, payload = f
        if fsid != sid:
            continue
        if ftype == h2raw.DATA:
            res['data'] += payload
            granted += len(payload)
            if granted >= window_step:
                conn.send(h2raw.window_update(0, granted) + h2raw.window_update(sid, granted))
                granted = 0
                if pause:
                    time.sleep(pause)
                if on_round:
                    on_round(len(res['data']))
        elif ftype == h2raw.HEADERS:
            hdrs = dict((n.decode(), v.decode()) for n, v in conn.decoder.decode(payload))
            if res['headers'] is None:
                res['headers'] = hdrs
            else:
                res['trailers'] = hdrs
        elif ftype == h2raw.RST_STREAM:
            res['rst'] = h2raw.error_name(struct.unpack('>I', payload)[0])
            return res
        if flags & h2raw.END_STREAM:
            return res
    raise AssertionError('stream %d not done in %d frames' % (sid, rounds_max))


def test_slow_reader_costs_a_window_and_harms_nobody(uetcd):
    """A raw client reads the 84 MB answer 64 KiB at a time. Meanwhile: the server's RSS
    stays far below the answer's size (it was built whole before: +2x84 MB), a second
    stream on the same connection and another client are answered, and in the end every
    byte matches."""
    filled(uetcd)
    base = rss_kb(uetcd.proc.pid)
    conn = h2raw.Conn(uetcd.host, uetcd.port, auto_window=False)
    try:
        conn.request(1, RANGE_PATH, range_request())
        peak = [base]
        side = {'same_conn': 0, 'other': 0}
        other = uetcd.channel()
        other_kv = rpc_pb2_grpc.KVStub(other)
        sid = [3]

        def probe(got):
            peak[0] = max(peak[0], rss_kb(uetcd.proc.pid))
            if not (1 << 20) <= got < (8 << 20) or got // (32 << 10) % 16 != 0:   # now and then
                return
            # another client, on its own connection
            r = other_kv.Range(rpc_pb2.RangeRequest(key=PREFIX + b'00001'), timeout=10)
            assert r.kvs[0].value == value_of(PREFIX + b'00001')
            side['other'] += 1
            # a second stream on this very connection: its answer is small and is sent
            # in turn with the big one (the window granted below is shared)
            s = sid[0]
            sid[0] += 2
            conn.request(s, RANGE_PATH, rpc_pb2.RangeRequest(key=PREFIX + b'00002', keys_only=True)
                         .SerializeToString())
            side['same_conn_sids'] = side.get('same_conn_sids', []) + [s]

        seen_small = {}
        res = {'data': bytearray(), 'trailers': None, 'rst': None}
        granted = 0
        fast_started = False
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            f = conn.recv_frame(timeout=10.0)
            assert f is not None, 'no frame (eof=%s) after %d bytes' % (conn.eof, len(res['data']))
            ftype, flags, fsid, payload = f
            if ftype == h2raw.DATA:
                if fsid == 1:
                    res['data'] += payload
                else:
                    seen_small[fsid] = seen_small.get(fsid, b'') + payload
                granted += len(payload)
                slow = len(res['data']) < (8 << 20)   # slow at first: the answer waits for us
                if not slow and not fast_started:
                    fast_started = True             # then 4 MiB ahead, to finish sooner
                    conn.send(h2raw.window_update(0, 4 << 20) + h2raw.window_update(1, 4 << 20))
                if granted >= (32 << 10 if slow else 1 << 20):
                    conn.send(h2raw.window_update(0, granted) + h2raw.window_update(1, granted))
                    granted = 0
                    probe(len(res['data']))
                    if slow:
                        time.sleep(0.002)
            elif ftype == h2raw.HEADERS:
                blk = conn.decoder.decode(payload)
                if fsid == 1 and flags & h2raw.END_STREAM:
                    res['trailers'] = dict((n.decode(), v.decode()) for n, v in blk)
            elif ftype == h2raw.RST_STREAM:
                assert fsid != 1, 'the big stream was reset'
            if fsid == 1 and flags & h2raw.END_STREAM:
                break
        assert res['trailers'] is not None, 'answer not complete after %d bytes' % len(res['data'])
        assert res['trailers'].get('grpc-status') == '0'
        data = bytes(res['data'])
        assert data[0] == 0 and struct.unpack('>I', data[1:5])[0] == len(data) - 5
        msg = rpc_pb2.RangeResponse.FromString(data[5:])
        check_kvs(msg.kvs)
        assert msg.count == TXNS * PER_TXN and not msg.more
        # canonical: the bytes are exactly what an encoder writes for this message
        assert msg.SerializeToString() == data[5:], 'streamed bytes differ from the canonical encoding'
        growth_mb = (peak[0] - base) / 1024
        assert growth_mb < 40, 'RSS grew by %.1f MiB serving an 84 MB answer' % growth_mb
        assert side['other'] >= 5
        # every small stream opened meanwhile was answered, and while the big one drained
        small = side.get('same_conn_sids', [])
        assert len(small) >= 5
        answered = [s for s in small if s in seen_small]
        assert len(answered) >= len(small) - 1, (small, sorted(seen_small))
        for s in answered:
            r = rpc_pb2.RangeResponse.FromString(seen_small[s][5:])
            assert r.kvs[0].key == PREFIX + b'00002'
        other.close()
    finally:
        conn.close()


def test_reset_mid_answer_frees_it_and_the_connection_goes_on(uetcd):
    filled(uetcd)
    conn = h2raw.Conn(uetcd.host, uetcd.port, auto_window=False)
    try:
        conn.request(1, RANGE_PATH, range_request())
        got = 0
        for _ in range(1000):
            f = conn.recv_frame(timeout=10.0)
            assert f is not None
            if f[0] == h2raw.DATA and f[2] == 1:
                got += len(f[3])
                if got >= 65535 - 16384:
                    break
        conn.send(h2raw.frame(h2raw.RST_STREAM, 0, 1, struct.pack('>I', 8)))
        conn.send(h2raw.window_update(0, 1 << 20))
        conn.request(3, RANGE_PATH, rpc_pb2.RangeRequest(key=PREFIX + b'00007').SerializeToString())
        conn.send(h2raw.window_update(3, 1 << 20))
        r = conn.response(3, timeout=20)
        assert r['trailers'] and r['trailers'].get('grpc-status') == '0', r
        m = rpc_pb2.RangeResponse.FromString(r['data'][5:])
        assert m.kvs[0].value == value_of(PREFIX + b'00007')
    finally:
        conn.close()
    assert uetcd.alive()


def open_answered(srv, n):
    """n connections, each after one answered Range: then idle."""
    req = (h2raw.frame(h2raw.HEADERS, h2raw.END_HEADERS, 1, h2raw.grpc_headers(RANGE_PATH)) +
           h2raw.frame(h2raw.DATA, h2raw.END_STREAM, 1,
                       h2raw.grpc_frame(rpc_pb2.RangeRequest(key=b'idle').SerializeToString())))
    socks = []
    try:
        for _ in range(n):
            s = socket.create_connection((srv.host, srv.port), timeout=10)
            socks.append(s)
            s.sendall(h2raw.PREFACE + h2raw.settings() + req)
        for s in socks:
            r = h2raw.Conn(sock=s, handshake=False).response(1, timeout=20)
            assert r['trailers'] and r['trailers'].get('grpc-status') == '0', r
    except BaseException:
        close_all(socks)
        raise
    return socks


def close_all(socks):
    for s in socks:
        s.close()


def settle_rss(srv, base, slack_kb):
    """RSS once it is back within slack_kb of base (or after 20 s)."""
    deadline = time.monotonic() + 20
    now = rss_kb(srv.proc.pid)
    while now - base > slack_kb and time.monotonic() < deadline:
        time.sleep(0.2)
        now = rss_kb(srv.proc.pid)
    return now


def test_idle_connections_cost_little_and_memory_comes_back(spawn):
    """4000 connections, each after one request, held idle then closed. Tables for 4096
    streams per connection cost about 60 KiB each, and the memory stayed after the close.
    A first, smaller round warms what is the server's for good (receive buffers, pools)."""
    srv = spawn('uetcd')
    with srv.channel() as ch:
        rpc_pb2_grpc.KVStub(ch).Put(rpc_pb2.PutRequest(key=b'idle', value=b'v'), timeout=10)
    close_all(open_answered(srv, 1000))
    base = settle_rss(srv, 0, 1 << 30)
    time.sleep(0.5)
    base = rss_kb(srv.proc.pid)
    n = 4000
    socks = open_answered(srv, n)
    try:
        held = rss_kb(srv.proc.pid)
        per_conn_kb = (held - base) / n
        assert per_conn_kb < 32, 'an idle connection costs %.1f KiB' % per_conn_kb
    finally:
        close_all(socks)
    # the server notices the closes, frees the connections and gives memory back
    after = settle_rss(srv, base, 4 * 1024)
    print('idle rss: base %d held %d after %d KiB' % (base, held, after))
    assert after - base <= 4 * 1024, 'RSS %d KiB after closing, %d before opening, %d open' % (
        after, base, held)
    assert srv.alive()


def test_compaction_past_a_draining_answer_resets_only_it(uetcd):
    """A streamed answer reads at its revision slice after slice; a compaction past that
    revision takes history it still needs. uetcd then resets that stream with
    REFUSED_STREAM (clients see UNAVAILABLE and retry: for a Range, safe); etcd, which
    built the answer whole first, would finish it. The connection and others go on."""
    filled(uetcd)
    conn = h2raw.Conn(uetcd.host, uetcd.port, auto_window=False)
    try:
        conn.request(1, RANGE_PATH, range_request())
        got = 0
        for _ in range(1000):
            f = conn.recv_frame(timeout=10.0)
            assert f is not None
            if f[0] == h2raw.DATA and f[2] == 1:
                got += len(f[3])
                if got >= 65535 - 16384:
                    break
        with uetcd.channel() as ch:
            kv = rpc_pb2_grpc.KVStub(ch)
            # rewrite a key the answer has not reached yet, then compact past the answer
            k = PREFIX + b'%05d' % (TXNS * PER_TXN - 1)
            rev = kv.Put(rpc_pb2.PutRequest(key=k, value=value_of(k)), timeout=10).header.revision
            kv.Compact(rpc_pb2.CompactionRequest(revision=rev), timeout=30)
        conn.send(h2raw.window_update(0, 64 << 20) + h2raw.window_update(1, 64 << 20))
        rst = None
        deadline = time.monotonic() + 60
        while rst is None and time.monotonic() < deadline:
            f = conn.recv_frame(timeout=10.0)
            assert f is not None, 'no frame: eof=%s' % conn.eof
            assert not (f[2] == 1 and f[1] & h2raw.END_STREAM), 'the answer ended normally'
            if f[0] == h2raw.RST_STREAM and f[2] == 1:
                rst = h2raw.error_name(struct.unpack('>I', f[3])[0])
        assert rst == 'REFUSED_STREAM'
        conn.request(3, RANGE_PATH, rpc_pb2.RangeRequest(key=PREFIX + b'00003', keys_only=True).SerializeToString())
        r = conn.response(3, timeout=20)
        assert r['trailers'] and r['trailers'].get('grpc-status') == '0', r
    finally:
        conn.close()
    # a client retrying gets the whole answer, as of now
    with big_channel(uetcd) as ch:
        r = rpc_pb2_grpc.KVStub(ch).Range(rpc_pb2.RangeRequest(key=PREFIX, range_end=b'large0'), timeout=60)
    check_kvs(r.kvs)
