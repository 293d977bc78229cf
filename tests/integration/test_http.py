"""HTTP/1.1 endpoints with curl (codes, bodies, content types) on the client and metrics
listeners, compared with etcd where etcd 3.5 serves the same thing; and the exact flag sets
kubeadm 1.33 and 1.34 write into etcd's static pod start uetcd, with its probes answering.
"""
import json
import os
import shutil
import subprocess
import tempfile

import grpc
import pytest

from conftest import free_port
from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc
from test_crash import Node
from test_tls import PKI, creds


def curl(url, *args):
    out = subprocess.run(['curl', '-s', '-i', '--max-time', '10'] + list(args) + [url], capture_output=True,
                         timeout=20)
    head, _, body = out.stdout.decode('latin-1').replace('\r\n', '\n').partition('\n\n')
    lines = head.split('\n')
    status = int(lines[0].split()[1])
    headers = {l.split(':', 1)[0].lower(): l.split(':', 1)[1].strip() for l in lines[1:] if ':' in l}
    return status, headers, body


@pytest.fixture(scope='module')
def node():
    mport = free_port()
    n = Node(extra=['--listen-metrics-urls', 'http://127.0.0.1:%d' % mport])
    n.mport = mport
    n.start()
    yield n
    n.cleanup()


def test_health_on_both_listeners(node, etcd_ref):
    for base in ('http://%s' % node.endpoint, 'http://127.0.0.1:%d' % node.mport):
        for q in ('', '?serializable=true', '?serializable=false', '?exclude=NOSPACE&serializable=true'):
            assert curl(base + '/health' + q)[0::2] == (200, '{"health":"true","reason":""}')
    # the same answer as etcd's, content type included
    s, h, b = curl('http://%s/health' % node.endpoint)
    es, eh, eb = curl('http://%s/health' % etcd_ref.endpoint)
    assert (s, b) == (es, eb)
    assert h['content-type'] == eh['content-type']
    s, h, b = curl('http://%s/health' % node.endpoint, '-X', 'POST')
    assert (s, h.get('allow'), b) == (405, 'GET', 'Method Not Allowed\n')


def test_health_reports_alarms(node):
    ch = grpc.insecure_channel(node.endpoint)
    m = rpc_pb2_grpc.MaintenanceStub(ch)
    mid = m.Status(rpc_pb2.StatusRequest(), timeout=5).header.member_id
    m.Alarm(rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.ACTIVATE, memberID=mid, alarm=rpc_pb2.NOSPACE), timeout=5)
    try:
        assert curl('http://%s/health' % node.endpoint)[0::2] == (503, '{"health":"false","reason":"ALARM NOSPACE"}')
        assert curl('http://%s/health?exclude=NOSPACE' % node.endpoint)[0] == 200
        with pytest.raises(grpc.RpcError) as e:
            rpc_pb2_grpc.KVStub(ch).Put(rpc_pb2.PutRequest(key=b'x', value=b'y'), timeout=5)
        assert e.value.details() == 'etcdserver: mvcc: database space exceeded'
    finally:
        m.Alarm(rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.DEACTIVATE, memberID=mid, alarm=rpc_pb2.NOSPACE),
                timeout=5)
    assert curl('http://%s/health' % node.endpoint)[0] == 200
    ch.close()


def test_livez_readyz(node):
    base = 'http://127.0.0.1:%d' % node.mport
    for path in ('/livez', '/readyz', '/readyz/linearizable_read', '/readyz/serializable_read', '/livez/serializable_read'):
        s, h, b = curl(base + path)
        assert (s, b) == (200, 'ok\n') and h['content-type'].startswith('text/plain')
    s, _, b = curl(base + '/readyz?verbose')
    assert s == 200 and b.splitlines() == ['[+]data_corruption ok', '[+]serializable_read ok',
                                           '[+]linearizable_read ok', 'readyz check passed']
    s, _, b = curl(base + '/readyz?verbose&exclude=data_corruption')
    assert s == 200 and '[+]data_corruption excluded: ok' in b
    assert curl(base + '/readyz/nonexistent')[0] == 404


def test_version_and_metrics(node):
    s, h, b = curl('http://%s/version' % node.endpoint)
    v = json.loads(b)
    assert s == 200 and h['content-type'] == 'application/json'
    assert v['etcdserver'] >= '3.5.13' and v['etcdcluster'].startswith('3.6')
    kv = rpc_pb2_grpc.KVStub(grpc.insecure_channel(node.endpoint))
    kv.Put(rpc_pb2.PutRequest(key=b'm', value=b'1'), timeout=5)
    s, h, b = curl('http://127.0.0.1:%d/metrics' % node.mport)
    assert s == 200 and h['content-type'].startswith('text/plain; version=0.0.4')
    metrics = dict(l.rsplit(' ', 1) for l in b.splitlines() if l and not l.startswith('#'))
    for name in ('etcd_server_has_leader', 'etcd_server_leader_changes_seen_total', 'etcd_mvcc_db_total_size_in_bytes',
                 'etcd_mvcc_db_total_size_in_use_in_bytes', 'etcd_server_proposals_committed_total',
                 'etcd_debugging_mvcc_keys_total'):
        assert name in metrics, name
    assert metrics['etcd_server_has_leader'] == '1'
    assert int(metrics['etcd_debugging_mvcc_keys_total']) >= 1
    assert int(metrics['etcd_mvcc_db_total_size_in_bytes']) > 0


@pytest.fixture(scope='module')
def kube_pki():
    tmp = tempfile.mkdtemp(prefix='uetcd-kube-')
    pk = PKI(os.path.join(tmp, 'pki'))
    pk.issue('server', '127.0.0.1', server=True)
    pk.issue('peer', '127.0.0.1', server=True)
    pk.issue('client', 'kube-apiserver-etcd-client')
    yield pk
    shutil.rmtree(tmp, ignore_errors=True)


def kubeadm_flags(pk, data, port, mport, peer, version):
    flags = ['--advertise-client-urls=https://127.0.0.1:%d' % port, '--cert-file=' + pk.p('server.crt'),
             '--client-cert-auth=true', '--data-dir=' + data,
             '--initial-advertise-peer-urls=https://127.0.0.1:%d' % peer,
             '--initial-cluster=node1=https://127.0.0.1:%d' % peer, '--key-file=' + pk.p('server.key'),
             '--listen-client-urls=https://127.0.0.1:%d' % port, '--listen-metrics-urls=http://127.0.0.1:%d' % mport,
             '--listen-peer-urls=https://127.0.0.1:%d' % peer, '--name=node1', '--peer-cert-file=' + pk.p('peer.crt'),
             '--peer-client-cert-auth=true', '--peer-key-file=' + pk.p('peer.key'),
             '--peer-trusted-ca-file=' + pk.p('ca.crt'), '--snapshot-count=10000',
             '--trusted-ca-file=' + pk.p('ca.crt')]
    if version == '1.33':
        flags += ['--experimental-initial-corrupt-check=true', '--experimental-watch-progress-notify-interval=5s']
    else:
        flags += ['--feature-gates=InitialCorruptCheck=true', '--watch-progress-notify-interval=5s']
    return sorted(flags)


@pytest.mark.parametrize('version', ['1.33', '1.34'])
def test_kubeadm_static_pod_flags(kube_pki, version):
    from conftest import uetcd_bin
    tmp = tempfile.mkdtemp(prefix='uetcd-kubeadm-')
    port, mport, peer = free_port(), free_port(), free_port()
    log = open(os.path.join(tmp, 'log'), 'wb')
    etcd = os.path.join(tmp, 'etcd')             # the pod runs a binary called etcd
    os.symlink(os.path.abspath(uetcd_bin()), etcd)
    proc = subprocess.Popen([etcd] + kubeadm_flags(kube_pki, os.path.join(tmp, 'data'), port, mport, peer,
                                                          version), stdout=log, stderr=subprocess.STDOUT)
    try:
        ready = None
        for _ in range(200):
            assert proc.poll() is None, open(os.path.join(tmp, 'log')).read()
            try:
                ready = curl('http://127.0.0.1:%d/readyz' % mport)
                break
            except (IndexError, ValueError):
                import time
                time.sleep(0.05)
        assert ready and ready[0] == 200
        # kubeadm's probes, 1.28-1.30 and 1.31+
        for path in ('/health?exclude=NOSPACE&serializable=true', '/health?serializable=false', '/livez', '/readyz'):
            assert curl('http://127.0.0.1:%d%s' % (mport, path))[0] == 200, path
        # kube-apiserver's side: gRPC over mTLS on the client URL, Status and MemberList
        with grpc.secure_channel('127.0.0.1:%d' % port, creds(kube_pki, 'client')) as ch:
            st = rpc_pb2_grpc.MaintenanceStub(ch).Status(rpc_pb2.StatusRequest(), timeout=5)
            assert st.version >= '3.5.13' and st.leader == st.header.member_id
            ml = rpc_pb2_grpc.ClusterStub(ch).MemberList(rpc_pb2.MemberListRequest(), timeout=5)
            assert [(m.name, list(m.clientURLs), list(m.peerURLs)) for m in ml.members] == [
                ('node1', ['https://127.0.0.1:%d' % port], ['https://127.0.0.1:%d' % peer])]
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
        shutil.rmtree(tmp, ignore_errors=True)
