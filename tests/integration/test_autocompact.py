"""--auto-compaction-mode=periodic: uetcd compacts on its own, as etcd does (first at the
revision of start-up one retention in, then every retention to the revision current one
retention before), and the compaction is durable across kill -9."""
import json
import subprocess
import time

import grpc

from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc
from test_crash import Node

COMPACTED = 'etcdserver: mvcc: required revision has been compacted'


def compact_rev(node):
    out = subprocess.run(['/usr/bin/etcdctl', '--endpoints', node.endpoint, 'endpoint', 'hashkv', '-w', 'json'],
                         capture_output=True, text=True, timeout=30, env={'ETCDCTL_API': '3'}).stdout
    return json.loads(out)[0]['HashKV']['compact_revision']


def test_periodic_auto_compaction():
    n = Node(extra=['--auto-compaction-mode=periodic', '--auto-compaction-retention=1s'])
    try:
        n.start()
        with grpc.insecure_channel(n.endpoint) as ch:
            kv = rpc_pb2_grpc.KVStub(ch)
            first = kv.Put(rpc_pb2.PutRequest(key=b'ac', value=b'0'), timeout=5).header.revision
            # keep writing until a compaction passes our first write; a generous bound, not a timing check
            deadline = time.monotonic() + 30
            while compact_rev(n) < first and time.monotonic() < deadline:
                kv.Put(rpc_pb2.PutRequest(key=b'ac', value=b'1'), timeout=5)
                time.sleep(0.05)
            cut = compact_rev(n)
            assert cut >= first, 'no automatic compaction past revision %d (at %d)' % (first, cut)
            last = kv.Range(rpc_pb2.RangeRequest(key=b'ac'), timeout=5).header.revision
            assert cut <= last, 'never past the current revision'
            try:
                kv.Range(rpc_pb2.RangeRequest(key=b'ac', revision=first - 1), timeout=5)
                raise AssertionError('history before the cut is still readable')
            except grpc.RpcError as e:
                assert (e.code(), e.details()) == (grpc.StatusCode.OUT_OF_RANGE, COMPACTED)
            assert kv.Range(rpc_pb2.RangeRequest(key=b'ac', revision=cut), timeout=5).kvs
        n.kill()
        n.start()
        assert compact_rev(n) >= cut, 'the automatic compaction was not durable'
    finally:
        n.cleanup()
