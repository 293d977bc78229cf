"""Leases, Maintenance and Cluster through etcdctl (3.4 and 3.5) and python3-etcd3, compared
with etcd 3.5.16 where the outputs are comparable: lease grant/revoke/timetolive/keep-alive/
list, put --lease, endpoint status/health/hashkv, member list, alarm list/disarm; a lease with
1000 keys expiring in one revision; leases surviving a restart; etcdctl check perf.
"""
import json
import os
import re
import subprocess
import time

import grpc
import pytest

from conftest import etcd_ref_bin
from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc
from test_crash import Node

CTLS = ['/usr/bin/etcdctl', 'ref']


def ctl(which, srv, *args, timeout=30):
    path = which if which != 'ref' else os.path.join(os.path.dirname(etcd_ref_bin()), 'etcdctl')
    return subprocess.run([path, '--endpoints', srv.endpoint] + list(args), capture_output=True, text=True,
                          timeout=timeout, env=dict(os.environ, ETCDCTL_API='3'))


def mask(text):
    """Lease ids and member ids differ by nature; revisions are compared elsewhere. etcd
    lists a lease's attached keys in Go map order (random from run to run): sorted here."""
    text = re.sub(r'attached keys\(\[([^]]*)\]\)',
                  lambda m: 'attached keys([%s])' % ' '.join(sorted(m.group(1).split())), text)
    return re.sub(r'\b[0-9a-f]{16}\b', 'ID', text)


@pytest.mark.parametrize('which', CTLS)
def test_lease_commands_match_etcd(spawn, which):
    outs = {}
    for role in ('uetcd', 'etcd'):
        srv = spawn(role)
        steps = []
        g = ctl(which, srv, 'lease', 'grant', '100')
        steps.append(mask(g.stdout))
        lid = g.stdout.split()[1]
        steps.append(ctl(which, srv, 'put', '--lease=' + lid, 'lk/a', '1').stdout)
        steps.append(ctl(which, srv, 'put', '--lease=' + lid, 'lk/b', '2').stdout)
        r = ctl(which, srv, 'put', '--lease=123456', 'lk/c', '3')
        steps.append((r.returncode, r.stderr.strip().splitlines()[-1]))
        ttl = ctl(which, srv, 'lease', 'timetolive', lid, '--keys')
        steps.append(mask(re.sub(r'remaining\(\d+s\)', 'remaining(N)', ttl.stdout)))
        steps.append(mask(ctl(which, srv, 'lease', 'list').stdout))
        steps.append(mask(ctl(which, srv, 'lease', 'keep-alive', '--once', lid).stdout))
        steps.append(mask(ctl(which, srv, 'lease', 'revoke', lid).stdout))
        steps.append(ctl(which, srv, 'get', 'lk/', '--prefix').stdout)
        r = ctl(which, srv, 'lease', 'revoke', lid)
        steps.append((r.returncode, r.stderr.strip().splitlines()[-1]))
        steps.append(mask(ctl(which, srv, 'lease', 'timetolive', lid).stdout))
        outs[role] = steps
    assert outs['uetcd'] == outs['etcd']


@pytest.mark.parametrize('which', CTLS)
def test_endpoint_member_alarm_commands(spawn, which):
    outs = {}
    for role in ('uetcd', 'etcd'):
        srv = spawn(role)
        steps = []
        ctl(which, srv, 'put', 'k', 'v')
        st = json.loads(ctl(which, srv, 'endpoint', 'status', '-w', 'json').stdout)[0]['Status']
        steps.append((st['header']['revision'], st['leader'] == st['header']['member_id'],
                      st['version'] >= '3.5.13', st['raftTerm'] > 0))
        h = ctl(which, srv, 'endpoint', 'health')
        steps.append((h.returncode, 'is healthy' in h.stdout + h.stderr))
        hk = json.loads(ctl(which, srv, 'endpoint', 'hashkv', '-w', 'json').stdout)[0]['HashKV']
        steps.append((hk['header']['revision'], hk['compact_revision']))
        ml = json.loads(ctl(which, srv, 'member', 'list', '-w', 'json').stdout)
        steps.append([(m['name'], m['clientURLs']) for m in ml['members']] == [('default', [srv.url])])
        steps.append(ctl(which, srv, 'alarm', 'list').stdout)
        steps.append(ctl(which, srv, 'alarm', 'disarm').stdout)
        outs[role] = steps
    assert outs['uetcd'] == outs['etcd']


def test_lease_expiry_deletes_1000_keys_in_one_revision(uetcd):
    ch = uetcd.channel()
    kv, lease = rpc_pb2_grpc.KVStub(ch), rpc_pb2_grpc.LeaseStub(ch)
    lid = lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=2), timeout=5).ID
    for i in range(0, 1000, 100):
        kv.Txn(rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(
            key=b'exp/%04d' % j, value=b'x', lease=lid)) for j in range(i, i + 100)]), timeout=10)
    before = kv.Range(rpc_pb2.RangeRequest(key=b'exp/', range_end=b'exp0', count_only=True), timeout=5)
    assert before.count == 1000
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        r = kv.Range(rpc_pb2.RangeRequest(key=b'exp/', range_end=b'exp0', count_only=True), timeout=5)
        if r.count == 0:
            break
        assert r.count == 1000, 'keys vanished one by one: %d left' % r.count
        time.sleep(0.2)
    assert r.count == 0
    assert r.header.revision == before.header.revision + 1, 'expiry is one revision'
    ttl = lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=lid), timeout=5)
    assert ttl.TTL == -1


def test_leases_survive_restart():
    n = Node()
    try:
        n.start()
        ch = grpc.insecure_channel(n.endpoint)
        lid = rpc_pb2_grpc.LeaseStub(ch).LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=300), timeout=5).ID
        rpc_pb2_grpc.KVStub(ch).Put(rpc_pb2.PutRequest(key=b'kept', value=b'v', lease=lid), timeout=5)
        gone = rpc_pb2_grpc.LeaseStub(ch).LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=300), timeout=5).ID
        rpc_pb2_grpc.LeaseStub(ch).LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=gone), timeout=5)
        ch.close()
        n.kill()
        n.start()
        ch = grpc.insecure_channel(n.endpoint)
        ttl = rpc_pb2_grpc.LeaseStub(ch).LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=lid, keys=True), timeout=5)
        assert ttl.grantedTTL == 300 and list(ttl.keys) == [b'kept']
        assert rpc_pb2_grpc.LeaseStub(ch).LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=gone), timeout=5).TTL == -1
        rpc_pb2_grpc.LeaseStub(ch).LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=lid), timeout=5)
        assert not rpc_pb2_grpc.KVStub(ch).Range(rpc_pb2.RangeRequest(key=b'kept'), timeout=5).kvs
        ch.close()
    finally:
        n.cleanup()


def test_python_etcd3_leases(uetcd):
    import etcd3
    c = etcd3.client(uetcd.host, uetcd.port)
    lease = c.lease(20)
    c.put('pyl/a', 'x', lease=lease)
    assert lease.granted_ttl == 20 and lease.keys == [b'pyl/a']
    assert list(c.refresh_lease(lease.id))[0].TTL == 20
    lease.revoke()
    assert c.get('pyl/a') == (None, None)


def test_etcdctl_check_perf(uetcd):
    r = ctl('ref', uetcd, 'check', 'perf', '--load=s', timeout=180)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    assert 'PASS' in r.stdout


def test_downgrade_answers_with_etcds_errors(uetcd):
    ch = uetcd.channel()
    call = ch.unary_unary('/etcdserverpb.Maintenance/Downgrade', request_serializer=lambda b: b,
                          response_deserializer=lambda b: b)
    for body, code, msg in ((b'\x12\x033.5', grpc.StatusCode.INVALID_ARGUMENT,
                             'etcdserver: invalid downgrade target version'),
                            (b'\x08\x02', grpc.StatusCode.FAILED_PRECONDITION, 'etcdserver: no inflight downgrade job')):
        with pytest.raises(grpc.RpcError) as e:
            call(body, timeout=5)
        assert (e.value.code(), e.value.details()) == (code, msg)


def negative_lease_steps(ch, lid):
    kv, lease = rpc_pb2_grpc.KVStub(ch), rpc_pb2_grpc.LeaseStub(ch)
    g = lease.LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=60, ID=lid), timeout=5)
    steps = [(g.ID, g.TTL, g.error)]
    kv.Put(rpc_pb2.PutRequest(key=b'neglease', value=b'1', lease=lid), timeout=5)
    steps.append(kv.Range(rpc_pb2.RangeRequest(key=b'neglease'), timeout=5).kvs[0].lease)
    t = lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=lid, keys=True), timeout=5)
    steps.append((t.ID, t.grantedTTL, list(t.keys)))
    steps.append(lid in [x.ID for x in lease.LeaseLeases(rpc_pb2.LeaseLeasesRequest(), timeout=5).leases])
    return steps


def test_negative_lease_ids_match_etcd(server):
    """etcd takes any non-zero lease id a client picks, negative ones too."""
    lid = -4242
    ch = server.channel()
    lease = rpc_pb2_grpc.LeaseStub(ch)
    try:
        assert negative_lease_steps(ch, lid) == [(lid, 60, ''), lid, (lid, 60, [b'neglease']), True]
    finally:
        lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=lid), timeout=5)
    kv = rpc_pb2_grpc.KVStub(ch)
    assert not kv.Range(rpc_pb2.RangeRequest(key=b'neglease'), timeout=5).kvs


def test_negative_lease_survives_restart():
    n = Node()
    try:
        n.start()
        with grpc.insecure_channel(n.endpoint) as ch:
            before = negative_lease_steps(ch, -(2 ** 63))
        n.kill()
        n.start()
        with grpc.insecure_channel(n.endpoint) as ch:
            kv, lease = rpc_pb2_grpc.KVStub(ch), rpc_pb2_grpc.LeaseStub(ch)
            assert kv.Range(rpc_pb2.RangeRequest(key=b'neglease'), timeout=5).kvs[0].lease == -(2 ** 63)
            t = lease.LeaseTimeToLive(rpc_pb2.LeaseTimeToLiveRequest(ID=-(2 ** 63), keys=True), timeout=5)
            assert (t.ID, t.grantedTTL, list(t.keys)) == before[2]
            lease.LeaseRevoke(rpc_pb2.LeaseRevokeRequest(ID=-(2 ** 63)), timeout=5)
            assert not kv.Range(rpc_pb2.RangeRequest(key=b'neglease'), timeout=5).kvs
    finally:
        n.cleanup()
