"""--quota-backend-bytes: writes that would pass the quota raise NOSPACE and fail with etcd's
error; reads and deletes still work; compaction frees bytes in use and, once the alarm is
disarmed, writes are accepted again."""
import json
import subprocess

import grpc
import pytest

from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc
from test_crash import Node

QUOTA = 200000
NOSPACE_MSG = 'etcdserver: mvcc: database space exceeded'


@pytest.fixture
def node():
    n = Node(extra=['--quota-backend-bytes=%d' % QUOTA])
    n.start()
    yield n
    n.cleanup()


def etcdctl(node, *args):
    return subprocess.run(['/usr/bin/etcdctl', '--endpoints', node.endpoint] + list(args),
                          capture_output=True, text=True, timeout=30, env={'ETCDCTL_API': '3'})


def in_use(node):
    st = json.loads(etcdctl(node, 'endpoint', 'status', '-w', 'json').stdout)[0]['Status']
    return st.get('dbSizeInUse', 0)


def test_quota_raises_nospace_and_compaction_recovers(node):
    with grpc.insecure_channel(node.endpoint) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        refused = None
        for i in range(1000):
            try:
                kv.Put(rpc_pb2.PutRequest(key=b'q/%04d' % i, value=b'v' * 1000), timeout=5)
            except grpc.RpcError as e:
                refused = (i, e.code(), e.details())
                break
        assert refused is not None, 'a quota of %d bytes never refused a write' % QUOTA
        n, code, details = refused
        assert 50 < n < 200, 'refused after %d puts of 1 KB' % n
        assert (code, details) == (grpc.StatusCode.RESOURCE_EXHAUSTED, NOSPACE_MSG)

        full = in_use(node)
        assert QUOTA - 2000 < full <= QUOTA
        assert etcdctl(node, 'alarm', 'list').stdout.strip().endswith('alarm:NOSPACE')
        r = etcdctl(node, 'put', 'more', 'x')
        assert r.returncode != 0 and r.stderr.strip().endswith(NOSPACE_MSG)
        # the alarm refuses even a tiny write and a lease grant, as etcd's does
        with pytest.raises(grpc.RpcError) as e:
            rpc_pb2_grpc.LeaseStub(ch).LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=30), timeout=5)
        assert e.value.details() == NOSPACE_MSG

        # reads and deletes still work
        got = kv.Range(rpc_pb2.RangeRequest(key=b'q/', range_end=b'q0', count_only=True), timeout=5)
        assert got.count == n
        d = kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b'q/', range_end=b'q0'), timeout=5)
        assert d.deleted == n
        kv.Compact(rpc_pb2.CompactionRequest(revision=d.header.revision, physical=True), timeout=10)
        after = in_use(node)
        assert after < full // 10, 'compaction gave back %d of %d bytes' % (full - after, full)

        # still refused until the alarm is disarmed
        with pytest.raises(grpc.RpcError):
            kv.Put(rpc_pb2.PutRequest(key=b'after', value=b'1'), timeout=5)
        r = etcdctl(node, 'alarm', 'disarm')
        assert r.returncode == 0 and 'alarm:NOSPACE' in r.stdout
        assert etcdctl(node, 'alarm', 'list').stdout.strip() == ''
        kv.Put(rpc_pb2.PutRequest(key=b'after', value=b'1'), timeout=5)
        assert kv.Range(rpc_pb2.RangeRequest(key=b'after'), timeout=5).kvs[0].value == b'1'


def test_alarms_survive_restart_from_log_and_checkpoint():
    """An alarm is durable, as etcd keeps it in its backend: NOSPACE raised by the quota
    still caps writes after SIGKILL, from the log and from a checkpoint, until disarmed (and
    a disarm is durable too)."""
    n = Node(extra=['--quota-backend-bytes=%d' % QUOTA, '--snapshot-count', '20', '--checkpoint-log-bytes', '0'])
    try:
        n.start()
        with grpc.insecure_channel(n.endpoint) as ch:
            kv = rpc_pb2_grpc.KVStub(ch)
            with pytest.raises(grpc.RpcError):
                for i in range(1000):
                    kv.Put(rpc_pb2.PutRequest(key=b'q/%04d' % i, value=b'v' * 1000), timeout=5)
        n.kill()
        n.start()  # from the log (and a checkpoint taken on the way, --snapshot-count 20)
        assert etcdctl(n, 'alarm', 'list').stdout.strip().endswith('alarm:NOSPACE')
        r = etcdctl(n, 'put', 'more', 'x')
        assert r.returncode != 0 and r.stderr.strip().endswith(NOSPACE_MSG)
        assert 'alarms active since before the restart' in n.tail()
        # a checkpoint taken now carries it (Defragment writes one at once)
        assert etcdctl(n, 'defrag').returncode == 0
        n.kill()
        n.start()
        assert 'loaded checkpoint' in n.tail()
        assert etcdctl(n, 'alarm', 'list').stdout.strip().endswith('alarm:NOSPACE')
        assert etcdctl(n, 'del', 'q/', '--prefix').returncode == 0
        rev = json.loads(etcdctl(n, 'get', 'x', '-w', 'json').stdout)['header']['revision']
        assert etcdctl(n, 'compaction', str(rev)).returncode == 0
        assert 'alarm:NOSPACE' in etcdctl(n, 'alarm', 'disarm').stdout
        n.kill()
        n.start()
        assert etcdctl(n, 'alarm', 'list').stdout.strip() == ''
        assert etcdctl(n, 'put', 'after', '1').returncode == 0
    finally:
        n.cleanup()
