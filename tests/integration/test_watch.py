"""Watch: the same watchers and the same writes against uetcd and the reference etcd, every
event stream compared; etcdctl and python3-etcd3 watches; progress requests; compaction
cancels; many watchers on one stream and many streams; resuming after a restart.

Event streams are compared event by event (type, kv, prev_kv) per watcher. How events are
grouped into responses is compared too for live watchers (one response per revision);
for a catch-up from history only the events are compared, because etcd's grouping there
depends on its internal sync timing.
"""
import json
import os
import queue
import random
import signal
import subprocess
import threading
import time

import grpc
import pytest

from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc
from conftest import etcd_ref_bin
from test_crash import Node
import h2raw


def varint(v):
    v &= (1 << 64) - 1
    out = bytearray()
    while v >= 0x80:
        out.append(v & 0x7f | 0x80)
        v >>= 7
    out.append(v)
    return bytes(out)


# WatchRequest{progress_request (field 3): WatchProgressRequest{}}
PROGRESS_REQUEST = b'\x1a\x00'


class WatchStream:
    """One Watch call: send requests with .send(), responses collect in .responses."""

    def __init__(self, server, timeout=120, channel=None):
        self.own = channel is None
        self.ch = channel or server.channel()
        self.q = queue.Queue()
        self.responses = []
        self.cond = threading.Condition()
        self.error = None
        # a generic call, so requests newer than python3-etcd3's protos can go as raw bytes
        watch = self.ch.stream_stream(
            '/etcdserverpb.Watch/Watch',
            request_serializer=lambda r: r if isinstance(r, bytes) else r.SerializeToString(),
            response_deserializer=rpc_pb2.WatchResponse.FromString)
        self.call = watch(self._requests(), timeout=timeout)
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _requests(self):
        while True:
            r = self.q.get()
            if r is None:
                return
            yield r

    def _read(self):
        try:
            for resp in self.call:
                with self.cond:
                    self.responses.append(resp)
                    self.cond.notify_all()
        except grpc.RpcError as e:
            with self.cond:
                self.error = e
                self.cond.notify_all()

    def send(self, req):
        self.q.put(req)

    def progress(self):
        self.send(PROGRESS_REQUEST)

    def create(self, key, watch_id=None, **kw):
        req = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=key, **kw)).SerializeToString()
        if watch_id is not None:
            # watch_id (WatchCreateRequest field 7) is newer than python3-etcd3's protos:
            # append it to the embedded create_request (field 1) by re-framing it
            inner = rpc_pb2.WatchCreateRequest(key=key, **kw).SerializeToString() + b'\x38' + varint(watch_id)
            req = b'\x0a' + varint(len(inner)) + inner
        self.send(req)

    def wait(self, pred, timeout=10, what='condition'):
        deadline = time.monotonic() + timeout
        with self.cond:
            while not pred(self.responses):
                left = deadline - time.monotonic()
                assert left > 0, 'timed out waiting for %s; got %d responses, error %r' % (
                    what, len(self.responses), self.error)
                self.cond.wait(left)
            return list(self.responses)

    def close(self):
        self.q.put(None)
        self.call.cancel()
        if self.own:
            self.ch.close()


def ev_tuple(ev):
    def kv(k):
        return (k.key, k.create_revision, k.mod_revision, k.version, k.value, k.lease)
    return (ev.type, kv(ev.kv), kv(ev.prev_kv) if ev.HasField('prev_kv') else None)


def by_watcher(responses):
    out = {}
    for r in responses:
        out.setdefault(r.watch_id, []).append(r)
    return out


def control(r):
    """What a non-event response says, without cluster/member ids."""
    return (r.watch_id, r.created, r.canceled, r.compact_revision, r.cancel_reason, r.header.revision)


WATCHERS = [
    dict(key=b'/d/a'),
    dict(key=b'/d/', range_end=b'/d0'),
    dict(key=b'/d/b', range_end=b'/d/d', prev_kv=True),
    dict(key=b'/d/c', range_end=b'\0', prev_kv=True),
    dict(key=b'/d/', range_end=b'/d0', filters=[rpc_pb2.WatchCreateRequest.NOPUT]),
    dict(key=b'/d/', range_end=b'/d0', filters=[rpc_pb2.WatchCreateRequest.NODELETE], prev_kv=True),
    dict(key=b'\0', range_end=b'\0'),
    dict(key=b'/d/e', range_end=b'/d/a'),          # empty range: refused
]


def random_writes(kv, rnd, n, lease_free=True):
    keys = [b'/d/a', b'/d/b', b'/d/c', b'/d/c1', b'/d/d', b'/d/e', b'/x', b'/d/f']
    for _ in range(n):
        op = rnd.random()
        k = rnd.choice(keys)
        if op < 0.55:
            kv.Put(rpc_pb2.PutRequest(key=k, value=bytes(rnd.randrange(256) for _ in range(rnd.randrange(0, 6)))), timeout=10)
        elif op < 0.7:
            kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=k), timeout=10)
        elif op < 0.8:
            kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b'/d/c', range_end=b'/d/e'), timeout=10)
        else:
            a, b = rnd.sample(keys, 2)
            kv.Txn(rpc_pb2.TxnRequest(
                compare=[rpc_pb2.Compare(key=a, target=rpc_pb2.Compare.VERSION, result=rpc_pb2.Compare.GREATER,
                                         version=0)],
                success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=a, value=b'T')),
                         rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=b))],
                failure=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b, value=b'F'))]), timeout=10)


def run_scenario(srv, seed):
    rnd = random.Random(seed)
    kv = rpc_pb2_grpc.KVStub(srv.channel())
    random_writes(kv, rnd, 40)                     # history before any watcher
    live = WatchStream(srv)
    for w in WATCHERS:
        live.create(**w)
    live.wait(lambda rs: sum(r.created for r in rs) == len(WATCHERS), what='created responses')
    hist = WatchStream(srv)
    hist.create(b'/d/', range_end=b'/d0', start_revision=2, prev_kv=True)
    hist.create(b'/d/c', start_revision=10)
    random_writes(kv, rnd, 120)
    final = kv.Range(rpc_pb2.RangeRequest(key=b'/'), timeout=10).header.revision
    # progress: answered once everything up to it has been sent on the stream
    live.progress()
    live.wait(lambda rs: any(r.watch_id == -1 and r.header.revision >= final for r in rs), what='progress')
    hist.progress()
    hist.wait(lambda rs: any(r.watch_id == -1 and r.header.revision >= final for r in rs), what='progress')
    live.close()
    hist.close()
    return live.responses, hist.responses, final


@pytest.mark.parametrize('seed', [1, 2, 3])
def test_watch_differential(spawn, seed):
    u, e = spawn('uetcd'), spawn('etcd')
    ul, uh, ufinal = run_scenario(u, seed)
    el, eh, efinal = run_scenario(e, seed)
    assert ufinal == efinal
    # live watchers: every response (control and events, grouped per revision) matches
    assert [control(r) for r in ul if not r.events] == [control(r) for r in el if not r.events]
    uw, ew = by_watcher(r for r in ul if r.events), by_watcher(r for r in el if r.events)
    assert sorted(uw) == sorted(ew)
    for wid in ew:
        got = [(r.header.revision, [ev_tuple(x) for x in r.events]) for r in uw[wid]]
        want = [(r.header.revision, [ev_tuple(x) for x in r.events]) for r in ew[wid]]
        assert got == want, 'watcher %d (%r) differs' % (wid, WATCHERS[wid] if wid < len(WATCHERS) else '')
    # catch-up watchers: the same events, in the same order
    uh_ev, eh_ev = by_watcher(r for r in uh if r.events), by_watcher(r for r in eh if r.events)
    assert sorted(uh_ev) == sorted(eh_ev)
    for wid in eh_ev:
        assert [ev_tuple(x) for r in uh_ev[wid] for x in r.events] == \
               [ev_tuple(x) for r in eh_ev[wid] for x in r.events], 'history watcher %d differs' % wid


def test_watch_compacted_start_is_cancelled(spawn):
    results = []
    for role in ('uetcd', 'etcd'):
        srv = spawn(role)
        kv = rpc_pb2_grpc.KVStub(srv.channel())
        for i in range(10):
            kv.Put(rpc_pb2.PutRequest(key=b'c', value=b'%d' % i), timeout=10)
        kv.Compact(rpc_pb2.CompactionRequest(revision=8), timeout=10)
        ws = WatchStream(srv)
        ws.create(b'c', start_revision=3)
        rs = ws.wait(lambda rs: any(r.canceled for r in rs), what='the compaction cancel')
        ws.create(b'c', start_revision=8)          # at the compacted revision: allowed
        rs = ws.wait(lambda rs: any(r.events for r in rs), what='events from the compacted revision')
        ws.close()
        results.append(([control(r) for r in rs if not r.events],
                        [[ev_tuple(x) for x in r.events] for r in rs if r.events]))
    assert results[0] == results[1]
    controls = results[0][0]
    assert controls[0][1] is True, 'the created response comes first, on its own'
    assert any(c[2] and c[3] == 8 for c in controls), 'canceled with compact_revision'


def test_watch_create_errors_and_cancel(server):
    ws = WatchStream(server)
    ws.create(b'e/a', range_end=b'e/a')                      # empty range
    ws.create(b'e/b', watch_id=7)
    ws.create(b'e/c', watch_id=7)                            # duplicate id
    ws.create(b'e/d')                                        # auto id
    ws.wait(lambda rs: len(rs) >= 4, what='4 created responses')
    ws.send(rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=7)))
    ws.send(rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=99)))  # unknown: no answer
    ws.send(rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=0)))
    rs = ws.wait(lambda rs: len(rs) >= 6, what='cancel responses')
    time.sleep(0.3)
    ws.close()
    rs = ws.responses
    assert [(r.watch_id, r.created, r.canceled, r.cancel_reason) for r in rs] == [
        (-1, True, True, 'mvcc: watcher range is empty'),
        (7, True, False, ''),
        (-1, True, True, 'mvcc: duplicate watch ID provided on the WatchStream'),
        (0, True, False, ''),
        (7, False, True, ''),
        (0, False, True, ''),
    ]


def etcdctl(bin_path, endpoint, *args, **kw):
    env = dict(os.environ, ETCDCTL_API='3')
    return subprocess.Popen([bin_path, '--endpoints', endpoint] + list(args), env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kw)


@pytest.mark.parametrize('ctl', ['/usr/bin/etcdctl', 'ref'])
def test_etcdctl_watch_matches_etcd(spawn, ctl):
    outs = []
    for role in ('uetcd', 'etcd'):
        srv = spawn(role)
        path = ctl if ctl != 'ref' else os.path.join(os.path.dirname(etcd_ref_bin()), 'etcdctl')
        kv = rpc_pb2_grpc.KVStub(srv.channel())
        kv.Put(rpc_pb2.PutRequest(key=b'w/a', value=b'0'), timeout=10)
        procs = [etcdctl(path, srv.endpoint, 'watch', 'w/', '--prefix', '--prev-kv'),
                 etcdctl(path, srv.endpoint, 'watch', 'w/a', '--rev', '1', '-w', 'json'),
                 etcdctl(path, srv.endpoint, 'watch', 'w/b')]
        time.sleep(1.0)
        for i in range(3):
            kv.Put(rpc_pb2.PutRequest(key=b'w/a', value=b'%d' % (i + 1)), timeout=10)
            kv.Put(rpc_pb2.PutRequest(key=b'w/b', value=b'b%d' % i), timeout=10)
        kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b'w/', range_end=b'w0'), timeout=10)
        time.sleep(1.0)
        res = []
        for p in procs:
            p.terminate()
            out, _ = p.communicate(timeout=10)
            res.append(out)
        outs.append(res)
    u, e = outs
    assert u[0] == e[0] and u[2] == e[2]
    norm = lambda text: [[(ev.get('type'), ev['kv']) for ev in json.loads(l)['Events']]
                         for l in text.splitlines() if l.startswith('{')]
    assert norm(u[1]) == norm(e[1]) and norm(u[1])


def test_etcdctl_interactive_watch(uetcd):
    p = etcdctl('/usr/bin/etcdctl', uetcd.endpoint, 'watch', '-i', stdin=subprocess.PIPE)
    p.stdin.write('watch i/a\nwatch i/b --prev-kv\n')
    p.stdin.flush()
    time.sleep(0.8)
    kv = rpc_pb2_grpc.KVStub(uetcd.channel())
    kv.Put(rpc_pb2.PutRequest(key=b'i/a', value=b'1'), timeout=10)
    kv.Put(rpc_pb2.PutRequest(key=b'i/b', value=b'2'), timeout=10)
    kv.Put(rpc_pb2.PutRequest(key=b'i/b', value=b'3'), timeout=10)
    time.sleep(0.8)
    p.terminate()
    out, err = p.communicate(timeout=10)
    assert out.split('\n')[:12] == ['PUT', 'i/a', '1', 'PUT', 'i/b', '2', 'PUT', 'i/b', '2', 'i/b', '3', ''], out + err


def test_python_etcd3_watch(uetcd):
    import etcd3
    c = etcd3.client(uetcd.host, uetcd.port)
    start = c.put('/py/w0', 'x').header.revision
    seen = []
    it, cancel = c.watch_prefix('/py/')
    t = threading.Thread(target=lambda: [seen.append((type(e).__name__, e.key, e.value)) for e in it], daemon=True)
    t.start()
    time.sleep(0.5)
    c.put('/py/w1', 'a')
    c.delete('/py/w0')
    deadline = time.monotonic() + 10
    while len(seen) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    cancel()
    assert seen[:2] == [('PutEvent', b'/py/w1', b'a'), ('DeleteEvent', b'/py/w0', b'')]
    hist = c.watch_once('/py/w0', start_revision=start, timeout=5)
    assert hist.key == b'/py/w0' and hist.value == b'x' and hist.mod_revision == start


def test_many_watchers_one_stream_and_many_streams(uetcd):
    ws = WatchStream(uetcd)
    n = 10000
    for i in range(n):
        ws.create(b'/many/%05d' % i if i % 2 else b'/many/', range_end=b'' if i % 2 else b'/many0')
    ws.wait(lambda rs: len(rs) >= n, timeout=60, what='%d created responses' % n)
    assert sorted(r.watch_id for r in ws.responses) == list(range(n))
    kv = rpc_pb2_grpc.KVStub(uetcd.channel())
    kv.Put(rpc_pb2.PutRequest(key=b'/many/00001', value=b'v'), timeout=10)
    ws.wait(lambda rs: sum(len(r.events) for r in rs) >= n // 2 + 1, timeout=60,
            what='events for the prefix watchers and the exact one')
    hits = {r.watch_id for r in ws.responses if r.events}
    assert hits == {i for i in range(0, n, 2)} | {1}
    ws.close()
    # 1000 streams on one connection, driven by a raw HTTP/2 client in this thread
    conn = h2raw.Conn(uetcd.host, uetcd.port, timeout=30)
    sids = list(range(1, 2001, 2))
    create = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b'/many/streams'))
    for sid in sids:
        conn.request(sid, b'/etcdserverpb.Watch/Watch', create.SerializeToString(), end_stream=False)
    got = raw_watch_responses(conn, sids, lambda r: r.created)
    assert set(got) == set(sids)
    kv.Put(rpc_pb2.PutRequest(key=b'/many/streams', value=b'x'), timeout=10)
    got = raw_watch_responses(conn, sids, lambda r: len(r.events) == 1)
    assert set(got) == set(sids)
    conn.close()


def raw_watch_responses(conn, sids, want, timeout=60):
    """Reads frames until every stream in sids has a WatchResponse satisfying want."""
    bufs, done = {}, set()
    deadline = time.monotonic() + timeout
    while done != set(sids):
        f = conn.recv_frame(timeout=max(0.0, deadline - time.monotonic()))
        assert f is not None, 'connection %s; %d of %d streams answered' % (
            'closed' if conn.eof else 'timed out', len(done), len(sids))
        ftype, flags, sid, payload = f
        if ftype in (h2raw.HEADERS, h2raw.CONTINUATION):
            conn.decoder.decode(h2raw.strip_headers_padding(flags, payload) if ftype == h2raw.HEADERS else payload)
        elif ftype == h2raw.DATA:
            bufs[sid] = bufs.get(sid, b'') + h2raw.strip_padding(flags, payload)
            while len(bufs[sid]) >= 5:
                n = int.from_bytes(bufs[sid][1:5], 'big')
                if len(bufs[sid]) < 5 + n:
                    break
                msg, bufs[sid] = bufs[sid][5:5 + n], bufs[sid][5 + n:]
                if want(rpc_pb2.WatchResponse.FromString(msg)):
                    done.add(sid)
    return done


def test_watch_resumes_after_restart_without_gap():
    node = Node()
    try:
        node.start()
        kv = rpc_pb2_grpc.KVStub(grpc.insecure_channel(node.endpoint))
        revs = [kv.Put(rpc_pb2.PutRequest(key=b'r', value=b'%d' % i), timeout=10).header.revision
                for i in range(5)]
        node.kill()
        node.start()
        kv = rpc_pb2_grpc.KVStub(grpc.insecure_channel(node.endpoint))
        revs += [kv.Put(rpc_pb2.PutRequest(key=b'r', value=b'%d' % i), timeout=10).header.revision
                 for i in range(5, 8)]

        class S:
            pass
        srv = S()
        srv.channel = lambda: grpc.insecure_channel(node.endpoint)
        ws = WatchStream(srv)
        ws.create(b'r', start_revision=revs[2])
        rs = ws.wait(lambda rs: sum(len(r.events) for r in rs) >= 6, what='6 events')
        ws.close()
        got = [ev.kv.mod_revision for r in rs for ev in r.events]
        assert got == revs[2:], got
    finally:
        node.cleanup()


def fragments_expected(events, limit, header_size):
    """etcd's FragmentWatchResponse: close a fragment when adding the next event reaches the
    limit (a fragment always holds one event at least)."""
    def vlen(n):
        return len(varint(n))
    out, cur, size = [], [], header_size
    for ev in events:
        add = 1 + vlen(ev.ByteSize()) + ev.ByteSize()
        if cur and size + add >= limit:
            out.append(len(cur))
            cur, size = [], header_size
        cur.append(ev)
        size += add
    out.append(len(cur))
    return out


def test_watch_fragment():
    node = Node(extra=['--max-request-bytes', '8192'])
    try:
        node.start()

        class S:
            pass
        srv = S()
        srv.channel = lambda: grpc.insecure_channel(node.endpoint)
        ws = WatchStream(srv)
        # WatchCreateRequest.fragment is field 8: append it by hand (newer than python3-etcd3)
        kv = rpc_pb2_grpc.KVStub(grpc.insecure_channel(node.endpoint))
        for i in range(10):
            kv.Put(rpc_pb2.PutRequest(key=b'f/%d' % i, value=b'x' * 3000), timeout=10)
        inner = rpc_pb2.WatchCreateRequest(key=b'f/', range_end=b'f0', prev_kv=True).SerializeToString() + \
            b'\x40\x01'
        ws.send(b'\x0a' + varint(len(inner)) + inner)
        ws.create(b'f/', range_end=b'f0', prev_kv=True)      # the same watch without fragments
        ws.wait(lambda rs: sum(r.created for r in rs) == 2, what='created')
        # one revision of ten deletes carrying 3 KB prev_kvs: 30 KB, over the 8 KB limit
        kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b'f/', range_end=b'f0'), timeout=10)
        rs = ws.wait(lambda rs: sum(len(r.events) for r in rs) >= 20, what='all events')
        frag = [r for r in rs if r.watch_id == 0 and r.events]
        whole = [r for r in rs if r.watch_id == 1 and r.events]
        assert len(whole) == 1 and len(whole[0].events) == 10
        header = rpc_pb2.WatchResponse(header=frag[0].header, watch_id=0).ByteSize()
        assert [len(r.events) for r in frag] == fragments_expected(list(whole[0].events), 8192, header)
        raw = [r.SerializeToString() for r in frag]            # fragment (field 7) as unknown bytes
        assert [b'\x38\x01' in b for b in raw] == [True] * (len(frag) - 1) + [False]
        assert [ev for r in frag for ev in r.events] == list(whole[0].events)
        ws.close()
    finally:
        node.cleanup()


def test_server_stop_ends_watches_with_unavailable():
    node = Node()
    try:
        node.start()
        ch = grpc.insecure_channel(node.endpoint)
        it = rpc_pb2_grpc.WatchStub(ch).Watch(iter([rpc_pb2.WatchRequest(
            create_request=rpc_pb2.WatchCreateRequest(key=b'stop'))]), timeout=30)
        assert next(it).created
        node.kill(signal.SIGTERM)
        with pytest.raises(grpc.RpcError) as e:
            next(it)
        assert e.value.code() == grpc.StatusCode.UNAVAILABLE
        ch.close()
    finally:
        node.cleanup()


def test_etcdctl_progress_notify():
    node = Node(extra=['--watch-progress-notify-interval=1s'])
    try:
        node.start()
        p = subprocess.Popen([os.path.join(os.path.dirname(etcd_ref_bin()), 'etcdctl'), '--endpoints',
                              node.endpoint, 'watch', 'pn', '--progress-notify'], stdout=subprocess.PIPE,
                             text=True, env=dict(os.environ, ETCDCTL_API='3'))
        line = p.stdout.readline()          # blocks until the first notice: bounded by the interval
        p.terminate()
        p.wait(10)
        assert line.startswith('progress notify: '), line
    finally:
        node.cleanup()
