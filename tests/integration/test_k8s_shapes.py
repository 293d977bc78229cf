"""The etcd 3.6 client's request shapes, as kube-apiserver 1.34 sends them, to uetcd and the
reference etcd side by side (issue 13, section 2).

The Go clientv3 3.6 is not packaged, so the shapes listed in ../shared/KUBERNETES-CONTRACT.md
are sent raw through the gRPC stubs: the `kubernetes` wrapper's Get (limit=1, revision),
List pages (limit, continue key, pinned revision), count-only and keys-only ranges, the
OptimisticPut / OptimisticDelete Txns (create, update, delete, each also with a stale
revision), the compactor's CAS on `compact_rev_key` and its watch on that key, a cacher
watch (prefix, prev_kv, progress_notify, hasleader metadata) seeing an update and a
delete, a progress request, and the errors for a compacted and a future revision. Both
servers start fresh, so revisions line up; every answer is compared field by field after
dropping header.cluster_id, member_id and raft_term.
"""
import os
import queue
import threading

import grpc

from etcd3.etcdrpc import rpc_pb2 as pb

from kvutil import KV, cmp, op_del, op_put, op_range, prefix_end, strip_header

PFX = b'/registry/pods/ns/'
CRK = b'compact_rev_key'
HASLEADER = (('hasleader', 'true'),)


class Watcher:
    """One Watch stream: send() requests, recv() responses, each wait bounded."""

    def __init__(self, ch, metadata=()):
        self.q = queue.Queue()
        self.out = queue.Queue()
        # raw bytes pass as they are: python3-etcd3's protos predate WatchProgressRequest
        watch = ch.stream_stream('/etcdserverpb.Watch/Watch',
                                 request_serializer=lambda m: m if isinstance(m, bytes) else m.SerializeToString(),
                                 response_deserializer=pb.WatchResponse.FromString)
        self.call = watch(iter(self.q.get, None), timeout=30, metadata=metadata)
        self.th = threading.Thread(target=self._pump, daemon=True)
        self.th.start()

    def _pump(self):
        try:
            for m in self.call:
                self.out.put(m)
        except grpc.RpcError as e:
            self.out.put(e)

    def send(self, raw=None, **kw):
        self.q.put(raw if raw is not None else pb.WatchRequest(**kw))

    def recv(self):
        m = self.out.get(timeout=10)
        assert not isinstance(m, Exception), m
        return strip_header(m)

    def close(self):
        self.q.put(None)
        self.call.cancel()
        self.th.join(10)


def err(f):
    try:
        f()
    except grpc.RpcError as e:
        return ('error', e.code(), e.details())
    raise AssertionError('expected an error')


def script(srv):
    """Runs the shapes on one server; returns [(step, normalised answer)]."""
    out = []
    kv = KV(srv)
    ch = srv.channel()

    def rec(name, m):
        if os.environ.get("K8S_SHAPES_TRACE"):
            print(srv.name, name, "|", str(m).replace("\n", " ")[:400], flush=True)
        out.append((name, strip_header(m) if hasattr(m, 'ListFields') else m))
        return m

    def get(key, rev=0):        # kubernetes.Client.Get: limit=1
        return kv.range(key, limit=1, revision=rev)

    def create(key, val, lease=0):   # OptimisticPut with expected revision 0
        return kv.txn([cmp(key, 'MOD', '=', 0)], [op_put(key, val, lease=lease)], [])

    def update(key, val, mod):       # OptimisticPut
        return kv.txn([cmp(key, 'MOD', '=', mod)], [op_put(key, val)], [op_range(key)])

    def delete(key, mod):            # OptimisticDelete
        return kv.txn([cmp(key, 'MOD', '=', mod)], [op_del(key)], [op_range(key)])

    try:
        rec('health', kv.range(b'/registry/health'))
        rec('rv probe, empty store', kv.range(PFX, prefix_end(PFX), limit=1))
        for i, name in enumerate([b'a', b'b', b'c', b'd', b'e']):
            rec('create %s' % name, create(PFX + name, b'pod-%d' % i))
        rec('create again', create(PFX + b'a', b'dup'))
        a = rec('get', get(PFX + b'a'))
        rev = a.header.revision
        rec('get missing', get(PFX + b'zz'))
        rec('get at rev', get(PFX + b'a', rev - 2))
        p1 = rec('list page 1', kv.range(PFX, prefix_end(PFX), limit=2))
        rec('list page 2', kv.range(p1.kvs[-1].key + b'\0', prefix_end(PFX), limit=2,
                                    revision=p1.header.revision))
        rec('list unpaged', kv.range(PFX, prefix_end(PFX)))
        rec('count', kv.range(PFX, prefix_end(PFX), count_only=True))
        rec('keys only', kv.range(PFX, prefix_end(PFX), keys_only=True))
        mod = a.kvs[0].mod_revision
        rec('update', update(PFX + b'a', b'pod-0b', mod))
        rec('update stale', update(PFX + b'a', b'pod-0c', mod))
        b = get(PFX + b'b')
        rec('delete stale', delete(PFX + b'b', b.kvs[0].mod_revision - 1))

        # the compactor: CAS on compact_rev_key, then its watch on that key
        rec('compact cas 0', kv.txn([cmp(CRK, 'VERSION', '=', 0)], [op_put(CRK, b'0')], [op_range(CRK)]))
        g = rec('compact key get', get(CRK))
        w = Watcher(ch)
        w.send(create_request=pb.WatchCreateRequest(key=CRK, start_revision=g.header.revision))
        rec('compact watch created', w.recv())
        # the cacher's watch: prefix from the list's revision + 1, prev_kv, progress_notify
        cw = Watcher(ch, HASLEADER)
        cw.send(create_request=pb.WatchCreateRequest(key=PFX, range_end=prefix_end(PFX),
                                                     start_revision=p1.header.revision + 1,
                                                     prev_kv=True, progress_notify=True))
        rec('cacher watch created', cw.recv())
        cur = get(PFX + b'a').header.revision
        for _ in range(20):         # the history since the list, then live events
            m = rec('cacher watch catch-up', cw.recv())
            if m.events and m.events[-1].kv.mod_revision >= cur - 1:
                break
        rec('delete', delete(PFX + b'b', b.kvs[0].mod_revision))
        rec('cacher watch delete', cw.recv())
        cw.send(raw=b'\x1a\x00')     # WatchRequest{progress_request (3): {}}
        rec('progress', cw.recv())
        rec('compact cas 1', kv.txn([cmp(CRK, 'VERSION', '=', 1)], [op_put(CRK, str(cur).encode())],
                                    [op_range(CRK)]))
        rec('compact watch event', w.recv())          # the put the watch started at
        rec('compact watch event 2', w.recv())        # the CAS just made
        rec('compact cas stale', kv.txn([cmp(CRK, 'VERSION', '=', 1)], [op_put(CRK, b'9')], [op_range(CRK)]))
        rec('compact', kv.compact(cur))
        w.close()
        cw.close()
        now = get(PFX + b'a').header.revision
        rec('list compacted', err(lambda: kv.range(PFX, prefix_end(PFX), limit=2, revision=cur - 1)))
        rec('get future', err(lambda: get(PFX + b'a', now + 5)))
        rec('list at compaction', kv.range(PFX, prefix_end(PFX), limit=2, revision=cur))
        w2 = Watcher(ch)
        w2.send(create_request=pb.WatchCreateRequest(key=CRK, start_revision=cur - 2))
        rec('watch before compaction', w2.recv())
        rec('watch before compaction, canceled', w2.recv())
        w2.close()
    finally:
        kv.close()
        ch.close()
    return out


def test_k8s_36_client_shapes_match_etcd(spawn):
    got = script(spawn('uetcd'))
    want = script(spawn('etcd'))
    assert [n for n, _ in got] == [n for n, _ in want]
    for (name, g), (_, w) in zip(got, want):
        assert g == w, '%s: uetcd answered\n%s\netcd answered\n%s' % (name, g, w)
