"""Migration from etcd: `etcdctl snapshot save` of a running etcd 3.5.16, then
`uetcd-restore SNAPSHOT --data-dir NEW`, then uetcd on NEW answers as etcd did.

Differential: the reference etcd is filled (keys with several revisions, a transaction with
several changes in one revision, deletes, a compaction, more history after it, a value large
enough for bbolt's overflow pages, enough records for branch pages, leases with keys attached,
a revoked lease, users and roles with permissions, auth disabled or enabled), its answers are
recorded, its snapshot is imported, and uetcd's answers are compared with them: every key at
every retained revision (whole-keyspace Range at each revision), the compacted-revision error
below the compaction and the future-revision error above the head, the leases (ids, granted
TTLs, attached keys), users, roles and their permissions, and login with the old passwords.
A damaged snapshot (one flipped byte, a cut tail) is refused and leaves no directory.

And back: uetcd filled the same way, `etcdctl snapshot save` from uetcd, then
`etcdutl snapshot status` (uetcd's revision) and `etcdutl snapshot restore`, then etcd
3.5.16 started on the restored dir answers everything above as uetcd did.
"""
import json
import os
import hashlib
import shutil
import subprocess
import tempfile
import time

import grpc
import pytest

from conftest import _with_pdeathsig, etcd_ref_bin, etcdctl_bins, free_port, uetcd_bin
from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc
from test_crash import Node

RESTORE = os.path.join(os.path.dirname(uetcd_bin()), 'uetcd-restore')
CTL35 = dict(etcdctl_bins())['etcdctl35']
CTL34 = dict(etcdctl_bins())['etcdctl34']
ROOT_PW = 'rootpw'


def snapshot_save(endpoint, path, user=None, ctl=CTL35):
    env = {k: v for k, v in os.environ.items() if not k.startswith('ETCD')}
    args = [ctl, '--endpoints', endpoint, 'snapshot', 'save', path]
    if user:
        args += ['--user', user]
    r = subprocess.run(args, capture_output=True, text=True, env=env, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]


def restore(snap, data):
    return subprocess.run([RESTORE, snap, '--data-dir', data], capture_output=True, text=True, timeout=120)


class Client:
    def __init__(self, endpoint, user=None, password=None):
        self.ch = grpc.insecure_channel(endpoint, options=[('grpc.max_receive_message_length', 64 << 20)])
        self.kv = rpc_pb2_grpc.KVStub(self.ch)
        self.lease = rpc_pb2_grpc.LeaseStub(self.ch)
        self.auth = rpc_pb2_grpc.AuthStub(self.ch)
        self.md = None
        if user:
            self.login(user, password)

    def login(self, user, password):
        tok = self.auth.Authenticate(rpc_pb2.AuthenticateRequest(name=user, password=password), timeout=60).token
        self.md = [('token', tok)]

    def call(self, stub, method, req):
        return getattr(stub, method)(req, timeout=30, metadata=self.md)

    def close(self):
        self.ch.close()


def fill(c):
    """Writes etcd's history; returns the compacted revision."""
    kv = c.kv
    put = lambda k, v, lease=0: c.call(kv, 'Put', rpc_pb2.PutRequest(key=k, value=v, lease=lease))
    for i in range(40):
        put(b'k%02d' % i, b'v0-%d' % i)
    for r in range(3):
        for i in range(0, 40, 3):
            put(b'k%02d' % i, b'v%d-%d' % (r + 1, i))
    c.call(kv, 'DeleteRange', rpc_pb2.DeleteRangeRequest(key=b'k05'))
    c.call(kv, 'DeleteRange', rpc_pb2.DeleteRangeRequest(key=b'k1', range_end=b'k2'))  # 10 keys, one revision
    # one revision, several changes: sub-revisions
    c.call(kv, 'Txn', rpc_pb2.TxnRequest(success=[
        rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b'txn/a', value=b'1')),
        rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=b'txn/b', value=b'2')),
        rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(key=b'k00'))]))
    put(b'k10', b'back after a delete')
    put(b'bin\x00\xff', bytes(range(256)))
    put(b'empty', b'')
    compact = c.call(kv, 'Range', rpc_pb2.RangeRequest(key=b'k', range_end=b'l')).header.revision - 5
    c.call(kv, 'Compact', rpc_pb2.CompactionRequest(revision=compact, physical=True))
    put(b'big', os.urandom(100000))  # more than a page: bbolt's overflow pages
    l1 = c.call(c.lease, 'LeaseGrant', rpc_pb2.LeaseGrantRequest(TTL=600, ID=0x1234)).ID
    l2 = c.call(c.lease, 'LeaseGrant', rpc_pb2.LeaseGrantRequest(TTL=3000)).ID
    l3 = c.call(c.lease, 'LeaseGrant', rpc_pb2.LeaseGrantRequest(TTL=900)).ID
    put(b'lease/a', b'1', l1)
    put(b'lease/b', b'2', l1)
    put(b'lease/c', b'3', l2)
    put(b'lease/gone', b'4', l3)
    c.call(c.lease, 'LeaseRevoke', rpc_pb2.LeaseRevokeRequest(ID=l3))
    for r in range(6):
        for i in range(20, 40, 2):
            put(b'k%02d' % i, b'late%d-%d' % (r, i))
    return compact


def fill_auth(c, endpoint, enable):
    a = c.auth
    c.call(a, 'RoleAdd', rpc_pb2.AuthRoleAddRequest(name='reader'))
    c.call(a, 'RoleGrantPermission', rpc_pb2.AuthRoleGrantPermissionRequest(
        name='reader', perm=rpc_pb2.auth__pb2.Permission(permType=0, key=b'k', range_end=b'l')))
    c.call(a, 'RoleGrantPermission', rpc_pb2.AuthRoleGrantPermissionRequest(
        name='reader', perm=rpc_pb2.auth__pb2.Permission(permType=2, key=b'txn/a')))
    c.call(a, 'RoleAdd', rpc_pb2.AuthRoleAddRequest(name='writer'))
    c.call(a, 'RoleGrantPermission', rpc_pb2.AuthRoleGrantPermissionRequest(
        name='writer', perm=rpc_pb2.auth__pb2.Permission(permType=1, key=b'\x00', range_end=b'\x00')))
    c.call(a, 'UserAdd', rpc_pb2.AuthUserAddRequest(name='alice', password='alicepw'))
    c.call(a, 'UserGrantRole', rpc_pb2.AuthUserGrantRoleRequest(user='alice', role='reader'))
    c.call(a, 'UserGrantRole', rpc_pb2.AuthUserGrantRoleRequest(user='alice', role='writer'))
    # python-etcd3's protos predate UserAddOptions: etcdctl adds the no-password user
    r = subprocess.run([CTL35, '--endpoints', endpoint, 'user', 'add', 'nopw', '--no-password'], capture_output=True,
                       text=True, env={k: v for k, v in os.environ.items() if not k.startswith('ETCD')}, timeout=60)
    assert r.returncode == 0, r.stderr
    c.call(a, 'UserAdd', rpc_pb2.AuthUserAddRequest(name='root', password=ROOT_PW))
    if enable:
        c.call(a, 'RoleAdd', rpc_pb2.AuthRoleAddRequest(name='root'))
        c.call(a, 'UserGrantRole', rpc_pb2.AuthUserGrantRoleRequest(user='root', role='root'))
        c.call(a, 'AuthEnable', rpc_pb2.AuthEnableRequest())
        c.login('root', ROOT_PW)


def kvs(resp):
    return [(k.key, k.value, k.create_revision, k.mod_revision, k.version, k.lease) for k in resp.kvs]


def answers(c, compact):
    """Everything the comparison looks at, as plain values."""
    out = {}
    head = c.call(c.kv, 'Range', rpc_pb2.RangeRequest(key=b'\x00', range_end=b'\x00'))
    rev = head.header.revision
    out['head'] = (rev, kvs(head))
    for r in range(compact, rev + 1):
        out['rev%d' % r] = kvs(c.call(c.kv, 'Range', rpc_pb2.RangeRequest(key=b'\x00', range_end=b'\x00',
                                                                          revision=r)))
    for r in (compact - 1, 1, rev + 1):
        with pytest.raises(grpc.RpcError) as e:
            c.call(c.kv, 'Range', rpc_pb2.RangeRequest(key=b'k', revision=r))
        out['err%d' % r] = (e.value.code(), e.value.details())
    leases = sorted(l.ID for l in c.call(c.lease, 'LeaseLeases', rpc_pb2.LeaseLeasesRequest()).leases)
    out['leases'] = leases
    for lid in leases:
        t = c.call(c.lease, 'LeaseTimeToLive', rpc_pb2.LeaseTimeToLiveRequest(ID=lid, keys=True))
        assert 0 < t.TTL <= t.grantedTTL
        out['lease%d' % lid] = (t.grantedTTL, sorted(t.keys))
    users = list(c.call(c.auth, 'UserList', rpc_pb2.AuthUserListRequest()).users)
    roles = list(c.call(c.auth, 'RoleList', rpc_pb2.AuthRoleListRequest()).roles)
    out['users'], out['roles'] = users, roles
    for u in users:
        out['user ' + u] = list(c.call(c.auth, 'UserGet', rpc_pb2.AuthUserGetRequest(name=u)).roles)
    for r in roles:
        out['role ' + r] = [(p.permType, p.key, p.range_end) for p in
                            c.call(c.auth, 'RoleGet', rpc_pb2.AuthRoleGetRequest(role=r)).perm]
    try:  # auth enabled or not: a request without a token
        c.kv.Range(rpc_pb2.RangeRequest(key=b'k20'), timeout=30)
        out['anonymous'] = 'ok'
    except grpc.RpcError as e:
        out['anonymous'] = (e.code(), e.details())
    return out


def status_probe(endpoint):
    """Ready once it answers: Status needs no token even with auth on."""
    with grpc.insecure_channel(endpoint) as ch:
        rpc_pb2_grpc.MaintenanceStub(ch).Status(rpc_pb2.StatusRequest(), timeout=1)


def migrate(spawn, enable_auth):
    etcd = spawn('etcd')
    c = Client(etcd.endpoint)
    compact = fill(c)
    fill_auth(c, etcd.endpoint, enable_auth)
    want = answers(c, compact)
    c.close()
    tmp = tempfile.mkdtemp(prefix='uetcd-migration-')
    snap = os.path.join(tmp, 'etcd.db')
    snapshot_save(etcd.endpoint, snap, user='root:' + ROOT_PW if enable_auth else None)
    # etcdctl 3.4 saves the same database (and checks the same trailer): it imports the same
    snap34 = os.path.join(tmp, 'etcd34.db')
    snapshot_save(etcd.endpoint, snap34, user='root:' + ROOT_PW if enable_auth else None, ctl=CTL34)
    r = restore(snap34, os.path.join(tmp, 'from34'))
    assert r.returncode == 0 and 'revision %d (compacted %d)' % (want['head'][0], compact) in r.stdout, r.stderr
    # etcd keeps running until the test ends (spawn stops it)
    n = Node(probe=status_probe)
    try:
        r = restore(snap, n.data)
        assert r.returncode == 0, r.stderr
        assert 'revision %d (compacted %d)' % (want['head'][0], compact) in r.stdout, r.stdout
        n.start()
        u = Client(n.endpoint, *(('root', ROOT_PW) if enable_auth else ()))
        got = answers(u, compact)
        u.close()
        assert sorted(got) == sorted(want)
        for k in sorted(want):
            assert got[k] == want[k], k
        if enable_auth:  # the imported bcrypt hashes still check passwords
            a = Client(n.endpoint, 'alice', 'alicepw')
            assert kvs(a.call(a.kv, 'Range', rpc_pb2.RangeRequest(key=b'k20'))) == \
                [kv for kv in want['head'][1] if kv[0] == b'k20']
            with pytest.raises(grpc.RpcError) as e:
                a.login('alice', 'wrong')
            assert e.value.details() == 'etcdserver: authentication failed, invalid user ID or password'
            a.close()
        return snap, tmp
    finally:
        n.cleanup()


def test_import_etcd_snapshot_auth_disabled(spawn):
    snap, tmp = migrate(spawn, False)
    shutil.rmtree(tmp, ignore_errors=True)


def test_import_etcd_snapshot_auth_enabled(spawn):
    snap, tmp = migrate(spawn, True)
    try:
        data = open(snap, 'rb').read()
        bad = os.path.join(tmp, 'bad.db')
        for what, b in (('flip', data[:5000] + bytes([data[5000] ^ 1]) + data[5001:]),
                        ('cut', data[:-100]), ('no trailer, pages zeroed', data[:8192] + b'\0' * (len(data) - 32 - 8192))):
            open(bad, 'wb').write(b)
            d = os.path.join(tmp, 'd-' + what.replace(' ', ''))
            r = restore(bad, d)
            assert r.returncode == 1, (what, r.stdout, r.stderr)
            assert not os.path.exists(d)
            if what == 'flip':
                assert 'SHA-256 mismatch' in r.stderr
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


ETCDUTL = os.path.join(os.path.dirname(etcd_ref_bin()), 'etcdutl')


def clean_env():
    return {k: v for k, v in os.environ.items() if not k.startswith('ETCD')}


def export(spawn, enable_auth):
    u = spawn('uetcd')
    c = Client(u.endpoint)
    compact = fill(c)
    fill_auth(c, u.endpoint, enable_auth)
    want = answers(c, compact)
    c.close()
    tmp = tempfile.mkdtemp(prefix='uetcd-export-')
    etcd = None
    try:
        snap = os.path.join(tmp, 'uetcd.db')
        snapshot_save(u.endpoint, snap, user='root:' + ROOT_PW if enable_auth else None)
        data = open(snap, 'rb').read()
        assert len(data) % 512 == 32 and hashlib.sha256(data[:-32]).digest() == data[-32:]
        for tool in (ETCDUTL, CTL35):
            r = subprocess.run([tool, 'snapshot', 'status', snap, '-w', 'json'], capture_output=True, text=True,
                               env=clean_env(), timeout=60)
            assert r.returncode == 0, r.stderr
            assert json.loads(r.stdout)['revision'] == want['head'][0], r.stdout
        peer = 'http://127.0.0.1:%d' % free_port()
        data_dir = os.path.join(tmp, 'etcd')
        r = subprocess.run([ETCDUTL, 'snapshot', 'restore', snap, '--data-dir', data_dir, '--name', 'default',
                            '--initial-cluster', 'default=' + peer, '--initial-advertise-peer-urls', peer],
                           capture_output=True, text=True, env=clean_env(), timeout=60)
        assert r.returncode == 0, r.stderr
        url = 'http://127.0.0.1:%d' % free_port()
        log = open(os.path.join(tmp, 'etcd.log'), 'wb')
        etcd = subprocess.Popen(_with_pdeathsig([
                                    etcd_ref_bin(), '--data-dir', data_dir, '--name', 'default',
                                    '--listen-client-urls', url, '--advertise-client-urls', url,
                                    '--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
                                    '--initial-cluster', 'default=' + peer, '--log-level', 'warn']),
                                stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, env=clean_env())
        log.close()
        endpoint = url[len('http://'):]
        for _ in range(400):  # at most ~20 s
            assert etcd.poll() is None, open(os.path.join(tmp, 'etcd.log')).read()[-3000:]
            try:
                status_probe(endpoint)
                break
            except grpc.RpcError:
                time.sleep(0.05)
        e = Client(endpoint, *(('root', ROOT_PW) if enable_auth else ()))
        got = answers(e, compact)
        e.close()
        assert sorted(got) == sorted(want)
        for k in sorted(want):
            assert got[k] == want[k], k
    finally:
        if etcd:
            etcd.kill()
            etcd.wait(10)
        shutil.rmtree(tmp, ignore_errors=True)


def test_export_to_etcd_auth_disabled(spawn):
    export(spawn, False)


def test_export_to_etcd_auth_enabled(spawn):
    export(spawn, True)
