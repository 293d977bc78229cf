"""Slow consumers: a watcher whose client stops reading (it grants no HTTP/2 window) while
others write megabytes. Server memory stays bounded, writes and other watchers go on, and the
slow watcher later receives every event in order, or, if the history it needs was
compacted meanwhile, a cancel with compact_revision.
"""
import threading
import time

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
