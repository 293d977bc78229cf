"""Slow consumers: a watcher whose client stops reading (it grants no HTTP/2 window) while
others write megabytes. Server memory stays bounded, writes and other watchers go on, and the
slow watcher later receives every event in order, or, if the history it needs was
compacted meanwhile, a cancel with compact_revision. Bounds: watchers per stream, and a
catch-up of 100K events (over 64 MiB) sent in bounded responses.
"""
import queue
import threading
import time

import grpc
import pytest

import h2raw as h
from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc

N = 1500
VALUE = b'v' * 4096          # 6 MB of events: more than the per-stream queue limit (4 MiB)
INITIAL_WINDOW = 4           # SETTINGS_INITIAL_WINDOW_SIZE


def rss_kb(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    return 0


def open_slow_watch(srv, key, range_end, start=0):
    c = h.Conn(srv.host, srv.port, handshake=False, auto_window=False, timeout=30)
    c.send(h.PREFACE + h.settings((INITIAL_WINDOW, 1 << 10)))
    create = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
        key=key, range_end=range_end, start_revision=start))
    c.request(1, b'/etcdserverpb.Watch/Watch', create.SerializeToString(), end_stream=False)
    return c


def drain(c, want_events, timeout=60):
    """Opens the windows and reads WatchResponses until want_events(responses) is true."""
    c.auto_window = True
    c.send(h.window_update(0, 1 << 30) + h.window_update(1, 1 << 30) + h.settings((INITIAL_WINDOW, 1 << 24)))
    buf, out = b'', []
    deadline = time.monotonic() + timeout
    while not want_events(out):
        f = c.recv_frame(timeout=max(0.0, deadline - time.monotonic()))
        assert f is not None, 'stream ended or stalled after %d responses' % len(out)
        ftype, flags, sid, payload = f
        if ftype in (h.HEADERS, h.CONTINUATION):
            c.decoder.decode(h.strip_headers_padding(flags, payload) if ftype == h.HEADERS else payload)
        elif ftype == h.DATA and sid == 1:
            buf += h.strip_padding(flags, payload)
            while len(buf) >= 5 and len(buf) >= 5 + int.from_bytes(buf[1:5], 'big'):
                n = int.from_bytes(buf[1:5], 'big')
                out.append(rpc_pb2.WatchResponse.FromString(buf[5:5 + n]))
                buf = buf[5 + n:]
    return out


def write_many(srv, base_rev_out):
    kv = rpc_pb2_grpc.KVStub(srv.channel())
    revs = []
    for i in range(N):
        revs.append(kv.Put(rpc_pb2.PutRequest(key=b'slow/%05d' % i, value=VALUE), timeout=10).header.revision)
    base_rev_out.extend(revs)


def fast_watch(srv, seen, stop):
    ch = srv.channel()
    it = rpc_pb2_grpc.WatchStub(ch).Watch(iter([rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
        key=b'slow/', range_end=b'slow0'))]), timeout=120)
    for resp in it:
        seen.extend(ev.kv.mod_revision for ev in resp.events)
        if len(seen) >= N or stop.is_set():
            break
    it.cancel()
    ch.close()


def test_slow_watcher_is_bounded_then_catches_up(spawn):
    srv = spawn('uetcd')
    slow = open_slow_watch(srv, b'slow/', b'slow0')
    time.sleep(0.3)
    seen, stop = [], threading.Event()
    fast = threading.Thread(target=fast_watch, args=(srv, seen, stop), daemon=True)
    fast.start()
    time.sleep(0.3)
    before = rss_kb(srv.proc.pid)
    revs = []
    write_many(srv, revs)                       # must not block on the slow reader
    fast.join(60)
    assert seen == revs, 'the fast watcher missed or reordered events'
    grown_mb = (rss_kb(srv.proc.pid) - before) / 1024
    # 6 MB of events went by: the store holds them (~6 MB), the slow stream at most its limit
    assert grown_mb < 6 + 4 + 16, 'server memory grew %.0f MB' % grown_mb
    got = drain(slow, lambda out: sum(len(r.events) for r in out) >= N)
    events = [ev.kv.mod_revision for r in got for ev in r.events]
    assert events == revs, 'the slow watcher must get every event once, in order'
    slow.close()


def test_slow_watcher_cancelled_when_history_is_compacted(spawn):
    srv = spawn('uetcd')
    slow = open_slow_watch(srv, b'slow/', b'slow0')
    time.sleep(0.3)
    revs = []
    write_many(srv, revs)
    kv = rpc_pb2_grpc.KVStub(srv.channel())
    kv.Compact(rpc_pb2.CompactionRequest(revision=revs[-1]), timeout=10)
    got = drain(slow, lambda out: any(r.canceled for r in out))
    cancel = [r for r in got if r.canceled][0]
    assert cancel.compact_revision == revs[-1]
    events = [ev.kv.mod_revision for r in got for ev in r.events]
    assert events == revs[:len(events)], 'what arrived before the cancel is in order with no gap'
    slow.close()


# ---- bounds (issue 12): watchers per stream, and catch-up in bounded responses ----

STREAM_WATCHERS_MAX = 65536          # WATCH_STREAM_WATCHERS_MAX in core/watch.c


def _watch_call(ch, requests, timeout=300):
    call = ch.stream_stream('/etcdserverpb.Watch/Watch', request_serializer=lambda r: r,
                            response_deserializer=rpc_pb2.WatchResponse.FromString)
    return call(requests, timeout=timeout)


def test_watchers_per_stream_are_bounded(spawn):
    """A create past the limit is refused as etcd refuses a create (created and canceled,
    watch_id -1, a reason); the stream and its other watchers go on."""
    srv = spawn('uetcd')
    q = queue.Queue()
    create = lambda k: rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=k)).SerializeToString()
    for i in range(STREAM_WATCHERS_MAX + 1):
        q.put(create(b'lim/%d' % (i % 64)))
    ch = srv.channel()
    it = _watch_call(ch, iter(q.get, None))
    created = []
    for r in it:
        assert r.created, r
        created.append(r)
        if len(created) == STREAM_WATCHERS_MAX + 1:
            break
    ok, last = created[:-1], created[-1]
    assert all(not r.canceled for r in ok)
    assert sorted(r.watch_id for r in ok) == list(range(STREAM_WATCHERS_MAX))
    assert last.canceled and last.watch_id == -1 and 'too many watchers' in last.cancel_reason, last
    # the others still watch: a put reaches the 1024 watchers of its key
    kv = rpc_pb2_grpc.KVStub(srv.channel())
    rev = kv.Put(rpc_pb2.PutRequest(key=b'lim/5', value=b'x'), timeout=10).header.revision
    got = set()
    for r in it:
        assert not r.canceled and len(r.events) == 1 and r.events[0].kv.mod_revision == rev, r
        got.add(r.watch_id)
        if len(got) == STREAM_WATCHERS_MAX // 64:
            break
    assert got == set(range(5, STREAM_WATCHERS_MAX, 64))
    # one cancelled: room for one more
    q.put(rpc_pb2.WatchRequest(cancel_request=rpc_pb2.WatchCancelRequest(watch_id=7)).SerializeToString())
    q.put(create(b'lim/new'))
    r = next(it)
    assert r.canceled and r.watch_id == 7
    r = next(it)
    assert r.created and not r.canceled and r.watch_id >= 0, r
    q.put(None)
    it.cancel()
    ch.close()


CATCHUP_EVENTS = 100_000
CATCHUP_VALUE = b'c' * 700          # 100K events of ~0.7 KB: more than 64 MiB of history
CATCHUP_TXN_OPS = 100
CATCHUP_RESPONSE_MAX = (1 << 20) + CATCHUP_TXN_OPS * 1024   # 1 MiB, plus one revision


def test_catch_up_of_100k_events_in_bounded_responses(spawn):
    """A watcher resuming 100K events (over 64 MiB) behind gets them all, in order, once,
    in responses of bounded size (1 MiB plus at most one revision: a client with gRPC's
    default 4 MiB receive limit takes them), each revision's events in one response."""
    srv = spawn('uetcd')
    kv = rpc_pb2_grpc.KVStub(srv.channel())
    want = []                       # (revision, key) in commit order
    n_txn = (CATCHUP_EVENTS // 10 * 9) // CATCHUP_TXN_OPS
    for t in range(n_txn):          # 90K events in revisions of 100 puts
        keys = [b'cu/t%03d/%03d' % (t, i) for i in range(CATCHUP_TXN_OPS)]
        r = kv.Txn(rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(
            key=k, value=CATCHUP_VALUE)) for k in keys]), timeout=30)
        want += [(r.header.revision, k) for k in keys]
    singles = CATCHUP_EVENTS - len(want)
    futs = []
    for i in range(singles):        # 10K events of one revision each, many in flight
        k = b'cu/s%05d' % i
        futs.append((k, kv.Put.future(rpc_pb2.PutRequest(key=k, value=CATCHUP_VALUE), timeout=60)))
        if len(futs) >= 256 or i == singles - 1:
            want += [(f.result().header.revision, k) for k, f in futs]
            futs = []
    want.sort()
    assert len(want) == CATCHUP_EVENTS and len({r for r, _ in want}) == n_txn + singles
    ch = grpc.insecure_channel(srv.endpoint)     # gRPC's default 4 MiB receive limit
    create = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
        key=b'cu/', range_end=b'cu0', start_revision=want[0][0])).SerializeToString()
    it = _watch_call(ch, iter([create]), timeout=60)
    got, sizes, rev_resp = [], [], {}
    for r in it:
        if r.created:
            continue
        assert not r.canceled, r
        sizes.append(r.ByteSize())
        for e in r.events:
            got.append((e.kv.mod_revision, e.kv.key))
            assert rev_resp.setdefault(e.kv.mod_revision, len(sizes)) == len(sizes), \
                'the events of revision %d were split across responses' % e.kv.mod_revision
        if len(got) >= CATCHUP_EVENTS:
            break
    it.cancel()
    ch.close()
    assert got == want, 'every event once, in order'
    assert max(sizes) <= CATCHUP_RESPONSE_MAX, 'largest catch-up response %d bytes' % max(sizes)
    assert len(sizes) >= 64, 'the catch-up came in %d responses' % len(sizes)
