"""Differential test: one seeded random sequence of KV requests (Put, Range, DeleteRange,
Txn, Compact) sent through the raw gRPC stubs to uetcd and to the reference etcd, both
started fresh so that revisions line up. Every response -- or error code and message -- must
be identical after dropping header.cluster_id, member_id and raft_term. At the end every
revision from the compaction point to the current one is read back from both and compared.

Replay a failure: DIFF_SEEDS=<seed> DIFF_OPS=<n> pytest tests/integration/test_differential.py

Notes on etcd behaviour this relies on (3.5.16; as far as we know 3.6 is the same):
  * sorting: etcd sorts with Go's sort.Sort. For at most 12 elements that is an insertion
    sort, i.e. stable: ties keep ascending key order, also for DESCEND (sort.Reverse only
    flips Less). Longer slices use pdqsort, whose tie order is an implementation accident,
    so the key pool below has 12 keys: every range holds at most 12 keys and a stable sort
    must match etcd exactly.
  * unknown sort_order / sort_target values: 3.5 and 3.6 differ, so none are sent. etcd 3.6
    refuses them ("etcdserver: invalid sort option", checkRangeRequest, also for ranges in
    txns); 3.5.16 treats an unknown order as NONE and crashes on an unknown target. uetcd
    follows 3.6: checked in test_python_kv.py::test_invalid_sort_option_36.
  * the compares of nested txns are all evaluated before the outer txn runs any op.
  * etcd's duplicate-key check sees a delete with range_end "\0" (from-key) as an empty
    interval, so a txn may delete from-key and put a key inside that range (same in 3.6;
    test_python_kv.py checks the current state after such txns). etcd 3.5.16 cannot live
    with the result: with ignore_value/ignore_lease on the put it panics in apply
    ("unexpected error during txn with writes"), and a put and a delete of one key in one
    txn breaks its key index -- a later Range at that revision dies with "range failed to
    find revision pair" (seed 48 hit it). So sanitize_txn turns from-key deletes into
    single-key deletes in txns that also put; uetcd's survival is checked in
    test_bad_input.py::test_requests_that_crash_etcd.
"""
import difflib
import os
import random

import grpc
import pytest

from etcd3.etcdrpc import rpc_pb2 as pb

from kvutil import KV, ALL, strip_header, prefix_end

SEEDS = [int(s) for s in os.environ.get('DIFF_SEEDS', '1,2,3,4,5').split(',')]
N_OPS = int(os.environ.get('DIFF_OPS', '1500'))

# The keys ever written: 12, with shared prefixes, NUL and 0xff bytes (see the docstring on
# sorting). Reads, compares and deletes also use MISSING keys, which are never written.
KEYS = [b'\x00', b'a', b'a/', b'a/b', b'a/b/c', b'a/c', b'ab', b'b', b'b\x00',
        b'compact_rev_key', b'\xff', b'\xff\xff']
PREFIXES = [b'a', b'a/', b'b', b'', b'c', b'\xff']
MISSING = [b'azz', b'b/x', b'bzz', b'czz', b'\x00\x00']
assert len(KEYS) <= 12


class Gen:
    def __init__(self, seed):
        self.r = random.Random(seed)
        self.cur = 1            # current revision (tracked from etcd's answers)
        self.compacted = 0      # last successful compaction revision
        self.last_mod = {}      # key -> mod_revision / version last seen (for kube-shaped txns)
        self.last_ver = {}
        self.pending = []       # follow-up requests (next pages of a paged list)
        self.page = None

    # -- pieces ------------------------------------------------------------------------
    def write_key(self):
        return b'' if self.r.random() < 0.01 else self.r.choice(KEYS)   # b'': key not provided

    def key(self):
        r = self.r.random()
        if r < 0.01:
            return b''                                   # -> key is not provided
        if r < 0.08:
            return self.r.choice(MISSING)
        return self.r.choice(KEYS)

    def key_range(self):
        """(key, range_end) for a single key, a range, a prefix, from-key or everything."""
        k = self.key()
        r = self.r.random()
        if r < 0.35:
            return k, b''
        if r < 0.55:
            return k, prefix_end(k) if k else b'\0'
        if r < 0.65:
            return k, b'\0'                              # from key
        if r < 0.72:
            return b'\0', b'\0'                          # all keys
        return k, self.r.choice(KEYS + MISSING + [b'b0', b'\xff\xff\xff'])   # may be empty/reversed

    def value(self):
        r = self.r.random()
        if r < 0.15:
            return b''
        if r < 0.45:
            return self.r.choice([b'v', b'w', b'x', b'vv', b'\x00', b'\xff'])
        n = self.r.randint(1, 24)
        if r < 0.7:
            return bytes(self.r.choice(b'abcdefgh') for _ in range(n))
        return bytes(self.r.getrandbits(8) for _ in range(n))

    def revision(self):
        r = self.r.random()
        if r < 0.45:
            return 0
        if r < 0.75:
            return self.r.randint(max(1, self.compacted), self.cur)
        if r < 0.82:
            return self.cur
        if r < 0.88 and self.compacted > 1:
            return self.r.randint(1, self.compacted - 1)  # compacted
        if r < 0.94:
            return self.cur + self.r.randint(1, 3)         # future
        if r < 0.97:
            return -self.r.randint(1, 5)
        return self.compacted

    def small_rev(self):
        """A value for min/max revision filters and compares."""
        return self.r.choice([0, 0, 1, self.cur, self.cur + 1,
                              self.r.randint(0, self.cur + 1), self.r.randint(0, self.cur + 1)])

    # -- requests ----------------------------------------------------------------------
    def range_req(self, in_txn=False):
        k, e = self.key_range()
        req = pb.RangeRequest(key=k, range_end=e)
        r = self.r.random
        if r() < 0.35:
            req.limit = self.r.choice([1, 1, 2, 3, 5, 20, -1])
        if r() < 0.3:
            req.revision = self.revision()
        if r() < 0.35:
            req.sort_order = self.r.choice([0, 1, 2, 2, 1])
            req.sort_target = self.r.randint(0, 4)
        elif r() < 0.15:
            req.sort_target = self.r.randint(1, 4)               # target with order NONE
        if r() < 0.2:
            req.keys_only = True
        if r() < 0.12:
            req.count_only = True
        if r() < 0.2:
            req.serializable = True
        if r() < 0.1:
            req.min_mod_revision = self.small_rev()
        if r() < 0.1:
            req.max_mod_revision = self.small_rev()
        if r() < 0.1:
            req.min_create_revision = self.small_rev()
        if r() < 0.1:
            req.max_create_revision = self.small_rev()
        return req

    def put_req(self):
        req = pb.PutRequest(key=self.write_key(), value=self.value())
        r = self.r.random
        if r() < 0.4:
            req.prev_kv = True
        if r() < 0.1:
            req.ignore_value = True
            if r() < 0.8:
                req.value = b''
        if r() < 0.1:
            req.ignore_lease = True
        if r() < 0.04:
            req.lease = self.r.choice([1, 42, 0x7fffffffffffffff, -5])   # no such lease
        return req

    def delete_req(self):
        k, e = self.key_range()
        return pb.DeleteRangeRequest(key=k, range_end=e, prev_kv=self.r.random() < 0.5)

    def compare(self):
        c = pb.Compare(key=self.key())
        if self.r.random() < 0.25:
            c.range_end = self.r.choice([prefix_end(c.key) if c.key else b'\0', b'\0',
                                         self.r.choice(KEYS)])
        c.result = self.r.randint(0, 3)
        c.target = self.r.randint(0, 4)
        if c.target == pb.Compare.VERSION:
            c.version = self.r.randint(0, 4)
        elif c.target == pb.Compare.CREATE:
            c.create_revision = self.small_rev()
        elif c.target == pb.Compare.MOD:
            c.mod_revision = self.small_rev()
        elif c.target == pb.Compare.VALUE:
            c.value = self.value()
        else:
            c.lease = self.r.choice([0, 0, 0, 1])
        return c

    def op(self, depth):
        r = self.r.random()
        if r < 0.3:
            return pb.RequestOp(request_range=self.range_req(in_txn=True))
        if r < 0.65:
            return pb.RequestOp(request_put=self.put_req())
        if r < 0.9 or depth >= 2:
            return pb.RequestOp(request_delete_range=self.delete_req())
        return pb.RequestOp(request_txn=self.txn_req(depth + 1))

    def txn_req(self, depth=0):
        n = lambda hi: self.r.choice([0, 1, 1, 2, 2, 3, hi])
        return pb.TxnRequest(compare=[self.compare() for _ in range(n(4))],
                             success=[self.op(depth) for _ in range(n(4))],
                             failure=[self.op(depth) for _ in range(n(3))])

    def sanitize_txn(self, txn):
        """Avoid the request that crashes etcd 3.5.16 (see the module docstring)."""
        ops = []

        def walk(t):
            for op in list(t.success) + list(t.failure):
                ops.append(op)
                if op.HasField('request_txn'):
                    walk(op.request_txn)
        walk(txn)
        from_key = [op for op in ops if op.HasField('request_delete_range')
                    and op.request_delete_range.range_end == b'\0']
        if from_key and any(op.HasField('request_put') for op in ops):
            for op in from_key:                         # a single-key delete instead
                op.request_delete_range.range_end = b''
        return txn

    def compact_req(self):
        r = self.r.random()
        if r < 0.7:     # a step forward, so that plenty of history stays readable
            lo = max(1, self.compacted)
            rev = lo + self.r.randint(0, (self.cur - lo) // 4)
        elif r < 0.8:
            rev = self.cur
        elif r < 0.9:
            rev = self.cur + self.r.randint(1, 2)                # future
        else:
            rev = self.r.randint(0, max(0, self.compacted))     # compacted (or 0)
        return pb.CompactionRequest(revision=rev, physical=self.r.random() < 0.3)

    def kube_req(self):
        """The request shapes kube-apiserver sends (KUBERNETES.md): create / update / delete
        as Txn on mod_revision with a get in the else branch, the compact_rev_key CAS, and
        paged lists (limit, continue from last key + \\0, pinned revision)."""
        r = self.r.random()
        k = self.r.choice(KEYS)
        known = self.last_mod.get(k, 0)
        if self.r.random() > 0.75:
            known = self.r.choice([0, known - 1, known + 1, self.r.randint(1, self.cur)])
        get_k = pb.RequestOp(request_range=pb.RangeRequest(key=k))
        mod_is = lambda rev: pb.Compare(key=k, target=pb.Compare.MOD,
                                        result=pb.Compare.EQUAL, mod_revision=rev)
        put_k = pb.RequestOp(request_put=pb.PutRequest(key=k, value=self.value(),
                                                       prev_kv=self.r.random() < 0.3))
        if r < 0.2:
            return 'Txn', pb.TxnRequest(compare=[mod_is(0)], success=[put_k], failure=[get_k])
        if r < 0.5:
            return 'Txn', pb.TxnRequest(compare=[mod_is(known)], success=[put_k], failure=[get_k])
        if r < 0.65:
            return 'Txn', pb.TxnRequest(compare=[mod_is(known)], success=[pb.RequestOp(
                request_delete_range=pb.DeleteRangeRequest(key=k, prev_kv=True))],
                failure=[get_k])
        if r < 0.75:
            c = b'compact_rev_key'
            ver = self.last_ver.get(c, 0) if self.r.random() < 0.8 else self.r.randint(0, 9)
            return 'Txn', pb.TxnRequest(
                compare=[pb.Compare(key=c, target=pb.Compare.VERSION, result=pb.Compare.EQUAL,
                                    version=ver)],
                success=[pb.RequestOp(request_put=pb.PutRequest(key=c, value=b'%d' % self.cur))],
                failure=[pb.RequestOp(request_range=pb.RangeRequest(key=c))])
        p = self.r.choice(PREFIXES)
        req = pb.RangeRequest(key=p or b'\0', range_end=prefix_end(p) if p else b'\0',
                              limit=self.r.choice([1, 2, 3, 10]))
        if self.r.random() < 0.3:
            req.revision = self.r.randint(max(1, self.compacted), self.cur)
        self.page = req
        return 'Range', req

    def next(self):
        if self.pending:
            return 'Range', self.pending.pop(0)
        r = self.r.random()
        if r < 0.12:
            return self.kube_req()
        r = self.r.random()
        if r < 0.30:
            return 'Put', self.put_req()
        if r < 0.60:
            return 'Range', self.range_req()
        if r < 0.72:
            return 'DeleteRange', self.delete_req()
        if r < 0.985:
            return 'Txn', self.sanitize_txn(self.txn_req())
        return 'Compact', self.compact_req()

    def observe(self, method, req, result):
        ok, resp = result
        if not ok:
            return
        self.cur = resp.header.revision
        if method == 'Compact':
            self.compacted = max(self.compacted, req.revision)
        elif method == 'Put':
            self.last_mod[req.key] = resp.header.revision
            self.last_ver[req.key] = self.last_ver.get(req.key, 0) + 1
        elif method == 'Range' and req.revision == 0:
            for kv in resp.kvs:
                self.last_mod[kv.key] = kv.mod_revision
                self.last_ver[kv.key] = kv.version
        elif method == 'Txn':
            for op in resp.responses:
                if op.HasField('response_range'):
                    for kv in op.response_range.kvs:
                        self.last_mod[kv.key] = kv.mod_revision
                        self.last_ver[kv.key] = kv.version
        if method == 'Range' and req is self.page:
            self.page = None
            if resp.more and resp.kvs:       # the next page, at the first page's revision
                nxt = pb.RangeRequest(key=resp.kvs[-1].key + b'\0', range_end=req.range_end,
                                      limit=req.limit, revision=req.revision or
                                      resp.header.revision)
                self.page = nxt
                self.pending.append(nxt)


def call(kv, method, req):
    try:
        resp = getattr(kv.stub, method)(req, timeout=kv.timeout)
    except grpc.RpcError as e:
        if e.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED) and \
                not kv.srv.alive():
            pytest.fail('%s died (exit %s) on %s %s\n%s' % (
                kv.srv.name, kv.srv.proc.returncode, method, one_line(req),
                kv.srv.stderr_tail(12)), pytrace=False)
        return False, (e.code().name, e.details())
    return True, strip_header(resp)


def show(result):
    ok, resp = result
    if not ok:
        return 'ERROR %s: %r' % resp
    return str(resp) or '(empty message)'


def one_line(msg):
    return ' '.join(str(msg).split())


def mismatch(seed, i, method, req, want, got, history):
    lines = ['seed %d, op #%d: %s differs (replay: DIFF_SEEDS=%d DIFF_OPS=%d)'
             % (seed, i, method, seed, i + 1),
             'request: %s %s' % (method, one_line(req) or '{}'),
             '--- etcd:', show(want), '--- uetcd:', show(got), '--- diff (etcd -> uetcd):']
    lines += difflib.unified_diff(show(want).splitlines(), show(got).splitlines(),
                                  'etcd', 'uetcd', lineterm='', n=3)
    lines.append('--- previous requests:')
    for j, (m, r) in history[-8:]:
        lines.append('  #%d %s %s' % (j, m, one_line(r)[:300]))
    return '\n'.join(lines)


@pytest.mark.parametrize('seed', SEEDS)
def test_differential(spawn, seed):
    ref = KV(spawn('etcd'))
    sut = KV(spawn('uetcd'))
    gen = Gen(seed)
    history = []
    stats = {}
    for i in range(N_OPS):
        method, req = gen.next()
        want = call(ref, method, req)
        got = call(sut, method, req)
        if want != got:
            pytest.fail(mismatch(seed, i, method, req, want, got, history), pytrace=False)
        gen.observe(method, req, want)
        history.append((i, (method, req)))
        key = method if want[0] else '%s:%s' % (method, want[1][0])
        if method == 'Txn' and want[0]:
            key = 'Txn:succeeded' if want[1].succeeded else 'Txn:else'
        if method == 'Range' and want[0] and want[1].more:
            key = 'Range:more'
        stats[key] = stats.get(key, 0) + 1
    # every readable revision, from both
    first = max(1, gen.compacted)
    for rev in range(first, gen.cur + 1):
        req = pb.RangeRequest(key=ALL, range_end=ALL, revision=rev)
        want, got = call(ref, 'Range', req), call(sut, 'Range', req)
        if want != got:
            pytest.fail(mismatch(seed, N_OPS, 'Range', req, want, got, history), pytrace=False)
    print('seed %d: %d ops, final revision %d, compacted at %d, %s'
          % (seed, N_OPS, gen.cur, gen.compacted, sorted(stats.items())))
    assert stats.get('Put', 0) > N_OPS // 10 and stats.get('Txn:succeeded', 0) > N_OPS // 20
