"""Durability: every acknowledged write survives SIGKILL, revisions stay dense, and no txn is
half-applied; a clean restart preserves everything etcdctl can see.

Writers run concurrently (one outstanding request each, on keys of their own), the server
is killed with SIGKILL at a random moment, restarted on the same data directory, and the
store is checked against what each writer saw acknowledged. A write that was in flight
at the kill may or may not be there, but nothing else may differ.
"""
import json
import os
import random
import shutil
import signal
import subprocess
import tempfile
import threading
import time

import grpc
import pytest

from conftest import free_port, uetcd_bin
from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc

ROUNDS = int(os.environ.get('UETCD_CRASH_ROUNDS', '20'))
WRITERS = 4


class Node:
    """uetcd on a data directory that outlives its processes."""

    def __init__(self, extra=(), scheme='http', probe=None):
        self.extra = list(extra)
        self.scheme = scheme
        self.probe = probe  # a function(endpoint) that returns once the server serves
        self.tmp = tempfile.mkdtemp(prefix='uetcd-crash-')
        self.data = os.path.join(self.tmp, 'data')
        self.log = os.path.join(self.tmp, 'server.log')
        self.proc = None
        self.port = None

    def start(self):
        self.port = free_port()
        url = '%s://127.0.0.1:%d' % (self.scheme, self.port)
        with open(self.log, 'ab') as log:
            env = {k: v for k, v in os.environ.items() if not k.startswith('ETCD')}  # ETCD_* are flags
            self.proc = subprocess.Popen(
                [uetcd_bin(), '--data-dir', self.data, '--listen-client-urls', url,
                 '--advertise-client-urls', url] + self.extra,
                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=env)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, 'uetcd exited at start:\n' + self.tail()
            try:
                if self.probe:
                    self.probe(self.endpoint)
                else:
                    with grpc.insecure_channel(self.endpoint) as ch:
                        rpc_pb2_grpc.KVStub(ch).Range(rpc_pb2.RangeRequest(key=b'probe'), timeout=1)
                return
            except (grpc.RpcError, OSError):
                time.sleep(0.05)
        raise AssertionError('uetcd did not start:\n' + self.tail())

    @property
    def endpoint(self):
        return '127.0.0.1:%d' % self.port

    def kill(self, sig=signal.SIGKILL):
        self.proc.send_signal(sig)
        self.proc.wait(10)

    def tail(self):
        with open(self.log, 'rb') as f:
            return f.read().decode('utf-8', 'replace')[-3000:]

    def cleanup(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.fixture(params=['log', 'checkpoints'])
def node(request):
    """The log alone, and with a checkpoint every few dozen revisions, so kills also land
    while a checkpoint is written, between it and the removal of the segments it covers,
    and on a log that starts after one."""
    n = Node(extra=['--snapshot-count', '30', '--checkpoint-log-bytes', '0']
             if request.param == 'checkpoints' else [])
    yield n
    n.cleanup()


class Writer(threading.Thread):
    """Puts, deletes and two-key txns on its own keys; remembers what was acknowledged."""

    def __init__(self, endpoint, wid, rnd, stop):
        super().__init__(daemon=True)
        self.endpoint, self.wid, self.rnd, self.stop = endpoint, wid, rnd, stop
        self.acked = {}      # key -> (mod_revision, value or None for deleted)
        self.inflight = {}   # key -> value or None, for the request that got no answer
        self.revs = []
        self.n = 0
        self.error = None

    def key(self, i):
        return ('/crash/w%d/k%d' % (self.wid, i)).encode()

    def run(self):
        ch = grpc.insecure_channel(self.endpoint)
        kv = rpc_pb2_grpc.KVStub(ch)
        try:
            while not self.stop.is_set():
                self.n += 1
                op = self.rnd.random()
                val = ('w%d-%d' % (self.wid, self.n)).encode()
                if op < 0.6:
                    k = self.key(self.rnd.randrange(8))
                    self.inflight = {k: val}
                    r = kv.Put(rpc_pb2.PutRequest(key=k, value=val), timeout=5)
                    self.acked[k] = (r.header.revision, val)
                elif op < 0.75:
                    k = self.key(self.rnd.randrange(8))
                    self.inflight = {k: None}
                    r = kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=k), timeout=5)
                    if r.deleted:
                        self.acked[k] = (r.header.revision, None)
                    elif k in self.acked and self.acked[k][1] is not None:
                        self.error = 'delete of %r found nothing after %r' % (k, self.acked[k])
                        return
                    else:
                        self.inflight = {}
                        continue  # changed nothing: keeps the current revision, as etcd
                else:
                    i = self.rnd.randrange(4)
                    a, b = ('/crash/w%d/tA%d' % (self.wid, i)).encode(), ('/crash/w%d/tB%d' % (self.wid, i)).encode()
                    self.inflight = {a: val, b: val}
                    r = kv.Txn(rpc_pb2.TxnRequest(success=[
                        rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=a, value=val)),
                        rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b, value=val))]), timeout=5)
                    self.acked[a] = self.acked[b] = (r.header.revision, val)
                self.revs.append(r.header.revision)
                self.inflight = {}
        except grpc.RpcError:
            pass  # the kill
        finally:
            ch.close()


def read_all(endpoint):
    with grpc.insecure_channel(endpoint) as ch:
        r = rpc_pb2_grpc.KVStub(ch).Range(rpc_pb2.RangeRequest(key=b'/crash/', range_end=b'/crash0'), timeout=10)
    return r.header.revision, {kv.key: (kv.mod_revision, kv.value) for kv in r.kvs}


def history_revisions(endpoint, upto):
    """Every revision that has an event, from a watch from revision 1 (nothing is compacted)."""
    ch = grpc.insecure_channel(endpoint)
    seen = []
    req = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b'\0', range_end=b'\0',
                                                                          start_revision=1))
    stream = rpc_pb2_grpc.WatchStub(ch).Watch(iter([req]), timeout=15)
    try:
        for resp in stream:
            for ev in resp.events:
                seen.append(ev.kv.mod_revision)
            if seen and seen[-1] >= upto:
                break
    finally:
        stream.cancel()
        ch.close()
    return seen


def test_acknowledged_writes_survive_sigkill(node):
    rnd = random.Random(20261122)
    node.start()
    expected = {}  # key -> (rev, value or None): everything acknowledged in any round
    for rnd_no in range(ROUNDS):
        stop = threading.Event()
        writers = [Writer(node.endpoint, w, random.Random(rnd.random()), stop) for w in range(WRITERS)]
        for w in writers:
            w.start()
        time.sleep(rnd.uniform(0.05, 0.4))
        node.kill()
        stop.set()
        for w in writers:
            w.join(10)
            assert not w.is_alive()
        node.start()
        rev, state = read_all(node.endpoint)
        for w in writers:
            for k, (r, v) in w.acked.items():
                expected[k] = (r, v)
            assert w.error is None, w.error
            assert w.revs == sorted(w.revs) and len(set(w.revs)) == len(w.revs), \
                'one writer saw revisions go backwards or repeat: %r' % w.revs
        inflight = {}
        for w in writers:
            inflight.update(w.inflight)
        for k, (r, v) in expected.items():
            got = state.get(k)
            if k in inflight:
                fv = inflight[k]
                if (fv is None and got is None) or (got is not None and got[1] == fv):
                    expected[k] = (got[0] if got else rev, fv)
                    continue
            if v is None:
                assert got is None, 'round %d: %r was deleted at %d but is %r' % (rnd_no, k, r, got)
            else:
                assert got == (r, v), 'round %d: %r acknowledged as %r at %d, found %r\n%s' % (
                    rnd_no, k, v, r, got, node.tail())
        for k, fv in inflight.items():  # an unanswered put of a key never acknowledged before
            if k not in expected and fv is not None and k in state and state[k][1] == fv:
                expected[k] = state[k]      # that survived: later rounds must still see it
        for k in state:
            assert k in expected or k in inflight, 'round %d: %r appeared from nowhere' % (rnd_no, k)
        for i in range(4):
            for w in range(WRITERS):
                a = state.get(('/crash/w%d/tA%d' % (w, i)).encode())
                b = state.get(('/crash/w%d/tB%d' % (w, i)).encode())
                assert a == b, 'round %d: txn half-applied: %r vs %r' % (rnd_no, a, b)
        assert rev >= max([r for r, _ in expected.values()] or [1])
    if '--snapshot-count' in node.extra:
        with open(node.log, 'rb') as f:
            log = f.read().decode('utf-8', 'replace')
        assert log.count('loaded checkpoint') >= ROUNDS // 2, 'restarts did not start from checkpoints'
    revs = history_revisions(node.endpoint, rev)
    assert revs == sorted(revs), 'history out of order'
    assert set(revs) == set(range(2, rev + 1)), 'revisions are not dense: missing %r' % (
        sorted(set(range(2, rev + 1)) - set(revs))[:10])


def etcdctl(endpoint, *args):
    env = dict(os.environ, ETCDCTL_API='3')
    return subprocess.run(['/usr/bin/etcdctl', '--endpoints', endpoint] + list(args),
                          capture_output=True, text=True, env=env, timeout=30)


def test_restart_preserves_what_etcdctl_sees(node):
    node.start()
    for i in range(30):
        assert etcdctl(node.endpoint, 'put', 'p/%02d' % i, 'v%d' % i).returncode == 0
    for i in range(0, 30, 3):
        assert etcdctl(node.endpoint, 'put', 'p/%02d' % i, 'again%d' % i).returncode == 0
    assert etcdctl(node.endpoint, 'del', 'p/05').returncode == 0
    assert etcdctl(node.endpoint, 'compaction', '20').returncode == 0
    before = json.loads(etcdctl(node.endpoint, 'get', 'p/', '--prefix', '-w', 'json').stdout)
    node.kill(signal.SIGTERM)
    node.start()
    after = json.loads(etcdctl(node.endpoint, 'get', 'p/', '--prefix', '-w', 'json').stdout)
    assert after['kvs'] == before['kvs']
    assert after['header']['revision'] == before['header']['revision']
    assert after['header']['cluster_id'] == before['header']['cluster_id']
    assert after['header']['member_id'] == before['header']['member_id']
    old = etcdctl(node.endpoint, 'get', 'p/01', '--rev', '19')
    assert old.returncode != 0 and 'required revision has been compacted' in old.stderr
    assert etcdctl(node.endpoint, 'get', 'p/01', '--rev', '20').returncode == 0
    # the next write continues the revision sequence, never reusing one
    put = json.loads(etcdctl(node.endpoint, 'put', 'p/new', 'x', '-w', 'json').stdout)
    assert put['header']['revision'] == before['header']['revision'] + 1
