"""Watch start revisions under concurrent commits (issue 13, section 1).

Each try: put k (revision H) while nobody watches anywhere on the server, then create three
watchers on k with start_revision H, H+1 and H+2 while the delete of k (H+1) commits, and,
in half of the tries, the put of k at H+2 too. Every watcher must get exactly the events at
or after its start revision, in order, none twice, none missing, and without a further
write: the put at H+2 is only made once every watcher has its H+1 event (or right away in
the tries that write both at once). A progress request ends the try: it is answered only
once every watcher on the stream is synced, after anything a catch-up still had to send.

Timing never decides the outcome: the per-event deadline (EVENT_DEADLINE_S) is a guard
against hanging on a lost event, far above any delivery time; the number of tries is bounded
by TRIES and by BUDGET_S, whichever comes first. Run against etcd 3.5.16 too, which never
fails it.
"""
import queue
import random
import threading
import time

import grpc
import pytest

from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc

TRIES = {'uetcd': 3000, 'etcd': 300}
BUDGET_S = {'uetcd': 60.0, 'etcd': 20.0}
EVENT_DEADLINE_S = 10.0


class Stream:
    """One Watch call; events are kept per watch id, control responses in order."""

    def __init__(self, srv):
        self.ch = srv.channel()
        self.q = queue.Queue()
        self.cond = threading.Condition()
        self.events = {}      # watch id -> [(type, mod_revision)]
        self.created = {}     # watch id -> created response
        self.canceled = set()
        self.progress = 0
        self.error = None
        call = self.ch.stream_stream('/etcdserverpb.Watch/Watch',
                                     request_serializer=lambda r: r,
                                     response_deserializer=rpc_pb2.WatchResponse.FromString)
        self.call = call(iter(self.q.get, None), timeout=600)
        self.t = threading.Thread(target=self._read, daemon=True)
        self.t.start()

    def _read(self):
        try:
            for r in self.call:
                with self.cond:
                    if r.created:
                        self.created[r.watch_id] = r
                    if r.canceled and not r.created:
                        self.canceled.add(r.watch_id)
                    if r.watch_id == -1 and not r.created and not r.events:
                        self.progress += 1
                    if r.events:
                        self.events.setdefault(r.watch_id, []).extend(
                            (e.type, e.kv.mod_revision) for e in r.events)
                    self.cond.notify_all()
        except grpc.RpcError as e:
            with self.cond:
                self.error = e
                self.cond.notify_all()

    def create(self, key, watch_id, start):
        inner = rpc_pb2.WatchCreateRequest(key=key, start_revision=start).SerializeToString()
        inner += b'\x38' + bytes([watch_id])          # watch_id, field 7 (ids < 128 here)
        self.q.put(b'\x0a' + bytes([len(inner)]) + inner)

    def cancel(self, watch_id):
        self.q.put(rpc_pb2.WatchRequest(
            cancel_request=rpc_pb2.WatchCancelRequest(watch_id=watch_id)).SerializeToString())

    def request_progress(self):
        self.q.put(b'\x1a\x00')

    def wait(self, pred, what):
        deadline = time.monotonic() + EVENT_DEADLINE_S
        with self.cond:
            while not pred():
                left = deadline - time.monotonic()
                assert left > 0 and self.error is None, (
                    'no %s within %.0f s (a lost event: it came with no further write); error %r; '
                    'events so far %r' % (what, EVENT_DEADLINE_S, self.error, self.events))
                self.cond.wait(left)

    def close(self):
        self.q.put(None)
        self.call.cancel()
        self.ch.close()


PUT, DELETE = 0, 1


@pytest.mark.parametrize('role', ['uetcd', 'etcd'])
def test_watch_start_revision_race(spawn, role):
    srv = spawn(role)
    kv = rpc_pb2_grpc.KVStub(srv.channel())
    st = Stream(srv)
    rnd = random.Random(13)
    key = b'race/k'
    t_end = time.monotonic() + BUDGET_S[role]
    tries = 0
    try:
        while tries < TRIES[role] and time.monotonic() < t_end:
            tries += 1
            ids = [1, 2, 3]
            h = kv.Put(rpc_pb2.PutRequest(key=key, value=b'%d' % tries), timeout=10).header.revision
            both = rnd.random() < 0.5
            with st.cond:
                st.events.clear()
                st.created.clear()
                st.canceled.clear()
            # the creates and the write(s) race: which goes first varies
            first_write = rnd.random() < 0.5
            fut = None
            if first_write:
                fut = kv.DeleteRange.future(rpc_pb2.DeleteRangeRequest(key=key), timeout=10)
            for wid, start in zip(ids, (h, h + 1, h + 2)):
                st.create(key, wid, start)
            if not first_write:
                fut = kv.DeleteRange.future(rpc_pb2.DeleteRangeRequest(key=key), timeout=10)
            assert fut.result().header.revision == h + 1
            if both:
                r = kv.Put(rpc_pb2.PutRequest(key=key, value=b'again'), timeout=10)
                assert r.header.revision == h + 2
            st.wait(lambda: len(st.created) == 3, 'created responses')
            assert all(not st.created[w].canceled for w in ids), st.created
            want = {1: [(PUT, h), (DELETE, h + 1)], 2: [(DELETE, h + 1)], 3: []}
            st.wait(lambda: all(len(st.events.get(w, [])) >= len(want[w]) for w in ids),
                    'delete event at H+1 (try %d, H=%d)' % (tries, h))
            if not both:
                r = kv.Put(rpc_pb2.PutRequest(key=key, value=b'again'), timeout=10)
                assert r.header.revision == h + 2
            for w in ids:
                want[w].append((PUT, h + 2))
            st.wait(lambda: all(len(st.events.get(w, [])) >= len(want[w]) for w in ids),
                    'put event at H+2 (try %d, H=%d)' % (tries, h))
            before = st.progress
            st.request_progress()
            st.wait(lambda: st.progress > before, 'progress response')
            with st.cond:
                got = {w: list(st.events.get(w, [])) for w in ids}
            assert got == want, 'try %d, H=%d, %s: events per watcher (start H, H+1, H+2)' % (
                tries, h, 'both writes raced' if both else 'the delete raced')
            for w in ids:
                st.cancel(w)
            # nobody watches once the cancels are answered: the next try starts from there
            st.wait(lambda: len(st.canceled) == 3, 'cancel responses')
    finally:
        st.close()
    assert tries >= 100, 'only %d tries ran' % tries
