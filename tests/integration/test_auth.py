"""Authentication and authorization, side by side with etcd 3.5.16.

- etcdctl (3.4 and 3.5) `user`, `role` and `auth` commands, then KV, txn, lease, admin and
  Auth calls as users with and without permission: the same commands against uetcd and etcd,
  outputs and errors compared step by step;
- watch create on a range without read permission is cancelled as etcd cancels it;
- auth (users, roles, permissions, enabled, auth revision) survives SIGKILL, from the log and
  from a checkpoint;
- JWT tokens (RS256 and ES256 keys made here): claims as etcd writes them, tampered and
  garbage tokens refused; simple tokens expire after --auth-token-ttl;
- the client certificate's CN is the user over mTLS when no token is sent;
- a password-guessing loop runs on the password thread: other clients are served meanwhile;
- malformed token metadata gets etcd's errors and harms nothing.
"""
import base64
import json
import os
import re
import signal
import subprocess
import threading
import time

import grpc
import pytest

from conftest import etcd_ref_bin
from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc
from test_crash import Node

CTLS = {'etcdctl34': '/usr/bin/etcdctl',
        'etcdctl35': os.path.join(os.path.dirname(etcd_ref_bin()), 'etcdctl')}


def ctl(which, endpoint, *args, user=None, stdin=None, timeout=30):
    cmd = [CTLS[which], '--endpoints', endpoint]
    if user:
        cmd += ['--user', user]
    env = {k: v for k, v in os.environ.items() if not k.startswith('ETCD')}
    env['ETCDCTL_API'] = '3'
    return subprocess.run(cmd + list(args), capture_output=True, text=True, env=env, input=stdin, timeout=timeout)


def outcome(r):
    """What a step shows: its output, or its error's last line, ids and revisions masked."""
    text = r.stdout if r.returncode == 0 else r.stderr.strip().splitlines()[-1]
    text = re.sub(r'\b[0-9a-f]{16}\b', 'ID', text)
    text = re.sub(r'127\.0\.0\.1:\d+', 'ENDPOINT', text)
    text = re.sub(r'remaining\(\d+s\)', 'remaining(N)', text)
    return r.returncode == 0, text.strip()


ROOT = 'root:rootpw'
ALICE = 'alice:apw'


def script(which, ep):
    """The same steps for both servers: set up users and roles, enable auth, act as them."""
    steps = []

    def step(*args, user=None, stdin=None):
        ok, text = outcome(ctl(which, ep, *args, user=user, stdin=stdin))
        if args[0] == 'member' and ok:
            text = ''  # ports and ids differ by nature
        steps.append((re.sub(r'\b[0-9a-f]{16}\b', 'ID', ' '.join(args)), user, (ok, text)))

    step('user', 'add', ROOT)
    step('user', 'add', ALICE)
    step('user', 'add', 'bob:bpw')
    step('user', 'add', 'alice:again')
    step('role', 'add', 'r1')
    step('role', 'add', 'r2')
    step('role', 'add', 'r1')
    step('role', 'grant-permission', 'r1', 'readwrite', '/a/', '--prefix')
    step('role', 'grant-permission', 'r2', 'read', '/b', '/c')
    step('role', 'grant-permission', 'r2', 'write', '/z', '--from-key')
    step('role', 'grant-permission', 'nosuch', 'read', '/x')
    step('user', 'grant-role', 'alice', 'r1')
    step('user', 'grant-role', 'alice', 'r2')
    step('user', 'grant-role', 'alice', 'nosuch')
    step('user', 'grant-role', 'nobody', 'r1')
    step('user', 'get', 'alice')
    step('role', 'get', 'r1')
    step('role', 'get', 'r2')
    step('role', 'list')
    step('user', 'list')
    step('auth', 'enable')
    step('auth', 'status', user=ROOT)
    step('put', '/a/x', '1', user=ALICE)
    step('get', '/a/x', user=ALICE)
    step('put', '/b/1', 'v', user=ALICE)
    step('put', '/b/1', 'v', user=ROOT)
    step('get', '/b/1', user=ALICE)
    step('get', '/b', '/d', user=ALICE)
    step('put', '/zz', 'v', user=ALICE)
    step('get', '/zz', user=ALICE)
    step('put', '/a/y', '2', '--prev-kv', user=ALICE)
    step('del', '/a/', '--prefix', user=ALICE)
    step('put', '/a/x', '3', user=ALICE)
    step('txn', user=ALICE, stdin='value("/a/x") = "3"\n\nput /a/t ok\n\nput /a/f no\n\n')
    step('txn', user=ALICE, stdin='value("/b/1") = "v"\n\nput /a/t2 ok\n\n\n')
    step('txn', user=ALICE, stdin='value("/a/x") = "3"\n\nput /q nope\n\n\n')
    step('get', '/a/x', user='bob:bpw')
    step('get', '/a/x', user='alice:wrong')
    step('get', '/a/x', user='nobody:pw')
    step('get', '/a/x')
    step('lock', '/a/lk1', 'echo', 'held', user=ALICE)
    step('lock', '/q/lk1', 'echo', 'held', user=ALICE)
    step('compaction', '2', user=ALICE)
    step('lease', 'grant', '100', user=ALICE)
    step('member', 'list', user=ALICE)
    step('alarm', 'list', user=ALICE)
    step('defrag', user=ALICE)
    step('endpoint', 'hashkv', user=ALICE)
    step('user', 'get', 'alice', user=ALICE)
    step('user', 'get', 'root', user=ALICE)
    step('role', 'get', 'r1', user=ALICE)
    step('role', 'get', 'root', user=ALICE)
    step('user', 'list', user=ALICE)
    step('auth', 'status', user=ALICE)
    step('user', 'add', 'carol:cpw', user=ALICE)
    # leases: revoke and put need write on every attached key, time-to-live needs read
    lid = ctl(which, ep, 'lease', 'grant', '1000', user=ROOT).stdout.split()[1]
    step('put', '/q/lk', 'v', '--lease=' + lid, user=ROOT)
    step('lease', 'timetolive', lid, '--keys', user=ALICE)
    step('lease', 'revoke', lid, user=ALICE)
    step('put', '/a/lk', 'v', '--lease=' + lid, user=ALICE)
    step('put', '/b/lk', 'v', '--lease=' + lid, user=ROOT)
    step('lease', 'timetolive', lid, user=ALICE)
    step('lease', 'revoke', lid, user=ROOT)
    step('get', '/q/lk', user=ROOT)
    step('user', 'delete', 'root', user=ROOT)
    step('user', 'revoke-role', 'root', 'root', user=ROOT)
    step('role', 'delete', 'root', user=ROOT)
    step('role', 'revoke-permission', 'r1', '/a/', '--prefix', user=ROOT)
    step('role', 'revoke-permission', 'r1', '/a/', '--prefix', user=ROOT)
    step('put', '/a/x', '4', user=ALICE)
    step('user', 'revoke-role', 'alice', 'r2', user=ROOT)
    step('user', 'revoke-role', 'alice', 'r2', user=ROOT)
    step('get', '/b/1', user=ALICE)
    step('role', 'delete', 'r2', user=ROOT)
    step('role', 'list', user=ROOT)
    step('user', 'passwd', 'alice', '--interactive=false', user=ROOT, stdin='newpw\n')
    step('get', '/a/x', user=ALICE)
    step('user', 'grant-role', 'alice', 'root', user=ROOT)
    step('get', '/a/x', user='alice:newpw')
    step('user', 'delete', 'bob', user=ROOT)
    step('user', 'list', user=ROOT)
    step('auth', 'status', user=ROOT)
    step('auth', 'disable', user=ROOT)
    step('get', '/a/x')
    step('auth', 'status')
    return steps


@pytest.mark.parametrize('which', sorted(CTLS))
def test_auth_commands_match_etcd(spawn, which):
    outs = {role: script(which, spawn(role).endpoint) for role in ('uetcd', 'etcd')}
    for mine, ref in zip(outs['uetcd'], outs['etcd']):
        assert mine == ref, 'step %r as %s: uetcd %r, etcd %r' % (mine[0], mine[1], mine[2], ref[2])
    # it did exercise both answers
    assert any(not s[2][0] for s in outs['uetcd']) and sum(s[2][0] for s in outs['uetcd']) > 30


def grpc_token(ep, name, password):
    with grpc.insecure_channel(ep) as ch:
        return rpc_pb2_grpc.AuthStub(ch).Authenticate(rpc_pb2.AuthenticateRequest(name=name, password=password),
                                                       timeout=10).token


def setup_alice(which, ep):
    for args in (('user', 'add', ROOT), ('user', 'add', ALICE), ('role', 'add', 'r1'),
                 ('role', 'grant-permission', 'r1', 'readwrite', '/a/', '--prefix'),
                 ('user', 'grant-role', 'alice', 'r1'), ('auth', 'enable')):
        r = ctl(which, ep, *args)
        assert r.returncode == 0, r.stderr


def test_watch_without_permission_is_cancelled_as_etcd(spawn):
    reasons = {}
    for role in ('uetcd', 'etcd'):
        ep = spawn(role).endpoint
        setup_alice('etcdctl35', ep)
        tok = grpc_token(ep, 'alice', 'apw')
        got = []
        with grpc.insecure_channel(ep) as ch:
            reqs = [rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b'/a/', range_end=b'/a0')),
                    rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b'/q'))]

            def gen():
                for q in reqs:
                    yield q
                time.sleep(1)

            for resp in rpc_pb2_grpc.WatchStub(ch).Watch(gen(), metadata=[('token', tok)], timeout=5):
                got.append((resp.created, resp.canceled, resp.cancel_reason))
                if len(got) == 2:
                    break
        reasons[role] = got
    assert reasons['uetcd'] == reasons['etcd']
    assert reasons['uetcd'][0] == (True, False, '') and reasons['uetcd'][1][1]


def test_auth_survives_sigkill_from_log_and_checkpoint():
    n = Node(extra=['--snapshot-count', '10', '--checkpoint-log-bytes', '0'], probe=status_probe)
    try:
        n.start()
        setup_alice('etcdctl35', n.endpoint)
        for i in range(3):
            assert ctl('etcdctl35', n.endpoint, 'put', '/a/%d' % i, 'v', user=ALICE).returncode == 0
        before = ctl('etcdctl35', n.endpoint, 'auth', 'status', user=ROOT).stdout
        n.kill()
        n.start()  # from the log: no checkpoint yet
        assert ctl('etcdctl35', n.endpoint, 'auth', 'status', user=ROOT).stdout == before
        for i in range(30):
            assert ctl('etcdctl35', n.endpoint, 'put', '/a/%d' % i, 'w', user=ALICE).returncode == 0
        deadline = time.monotonic() + 10
        while not os.listdir(os.path.join(n.data, 'snap')) and time.monotonic() < deadline:
            time.sleep(0.05)
        n.kill()
        n.start()  # from the checkpoint
        assert 'loaded checkpoint' in n.tail()
        assert ctl('etcdctl35', n.endpoint, 'auth', 'status', user=ROOT).stdout == before
        assert ctl('etcdctl35', n.endpoint, 'get', '/a/29', user=ALICE).stdout.split() == ['/a/29', 'w']
        denied = ctl('etcdctl35', n.endpoint, 'put', '/b', 'x', user=ALICE)
        assert denied.returncode != 0 and 'permission denied' in denied.stderr
        empty = ctl('etcdctl35', n.endpoint, 'get', '/a/1')
        assert empty.returncode != 0 and 'user name is empty' in empty.stderr
        assert 'alice' in ctl('etcdctl35', n.endpoint, 'user', 'list', user=ROOT).stdout
    finally:
        n.cleanup()


def status_probe(endpoint):
    """Ready once it answers: Status needs no token even with auth on."""
    with grpc.insecure_channel(endpoint) as ch:
        rpc_pb2_grpc.MaintenanceStub(ch).Status(rpc_pb2.StatusRequest(), timeout=1)


def b64url_json(part):
    return json.loads(base64.urlsafe_b64decode(part + '=' * (-len(part) % 4)))


@pytest.mark.parametrize('alg', ['RS256', 'ES256'])
def test_jwt_tokens(alg, tmp_path):
    priv, pub = str(tmp_path / 'k.pem'), str(tmp_path / 'k.pub')
    if alg == 'RS256':
        subprocess.run(['openssl', 'genrsa', '-out', priv, '2048'], check=True, capture_output=True)
    else:
        subprocess.run(['openssl', 'ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', priv], check=True,
                       capture_output=True)
    subprocess.run(['openssl', 'pkey', '-in', priv, '-pubout', '-out', pub], check=True, capture_output=True)
    n = Node(extra=['--auth-token', 'jwt,pub-key=%s,priv-key=%s,sign-method=%s,ttl=10m' % (pub, priv, alg)],
             probe=status_probe)
    try:
        n.start()
        setup_alice('etcdctl35', n.endpoint)
        assert ctl('etcdctl35', n.endpoint, 'put', '/a/j', 'v', user=ALICE).returncode == 0
        tok = grpc_token(n.endpoint, 'alice', 'apw')
        head, claims, sig = tok.split('.')
        assert b64url_json(head) == {'alg': alg, 'typ': 'JWT'}
        c = b64url_json(claims)
        assert c['username'] == 'alice' and c['revision'] >= 1 and 550 < c['exp'] - time.time() <= 600
        with grpc.insecure_channel(n.endpoint) as ch:
            kv = rpc_pb2_grpc.KVStub(ch)
            assert kv.Range(rpc_pb2.RangeRequest(key=b'/a/j'), metadata=[('token', tok)]).count == 1
            bad = [head + '.' + claims + '.' + sig[:-4] + ('AAAA' if not sig.endswith('AAAA') else 'BBBB'),
                   head + '.' + base64.urlsafe_b64encode(json.dumps(dict(c, username='root')).encode()).decode()
                   .rstrip('=') + '.' + sig, 'garbage', tok + 'x']
            for t in bad:
                with pytest.raises(grpc.RpcError) as e:
                    kv.Range(rpc_pb2.RangeRequest(key=b'/a/j'), metadata=[('token', t)])
                assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
                assert e.value.details() == 'etcdserver: invalid auth token'
            # a JWT carries its auth revision: any auth change makes it stale, as etcd
            assert ctl('etcdctl35', n.endpoint, 'role', 'add', 'r9', user=ROOT).returncode == 0
            with pytest.raises(grpc.RpcError) as e:
                kv.Range(rpc_pb2.RangeRequest(key=b'/a/j'), metadata=[('token', tok)])
            assert e.value.details() == 'etcdserver: revision of auth store is old'
    finally:
        n.cleanup()


def test_simple_token_expires():
    n = Node(extra=['--auth-token-ttl', '1'], probe=status_probe)
    try:
        n.start()
        setup_alice('etcdctl35', n.endpoint)
        tok = grpc_token(n.endpoint, 'alice', 'apw')
        with grpc.insecure_channel(n.endpoint) as ch:
            kv = rpc_pb2_grpc.KVStub(ch)
            kv.Range(rpc_pb2.RangeRequest(key=b'/a/'), metadata=[('token', tok)])
            time.sleep(3)  # three TTLs without use
            with pytest.raises(grpc.RpcError) as e:
                kv.Range(rpc_pb2.RangeRequest(key=b'/a/'), metadata=[('token', tok)])
            assert e.value.details() == 'etcdserver: invalid auth token'
    finally:
        n.cleanup()


def test_malformed_tokens_get_clean_errors(spawn):
    srv = spawn('uetcd')
    setup_alice('etcdctl35', srv.endpoint)
    with grpc.insecure_channel(srv.endpoint) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        for t in ['', '.', 'a.b', 'x' * 9000, 'abcdefghijklmnop.99999999999999999999999', 'a' * 16 + '.-1', 'e30.e30.e30']:
            with pytest.raises(grpc.RpcError) as e:
                kv.Put(rpc_pb2.PutRequest(key=b'/a/m', value=b'v'), metadata=[('token', t)], timeout=5)
            assert e.value.details() == 'etcdserver: invalid auth token', (t[:20], e.value.details())
        tok = grpc_token(srv.endpoint, 'alice', 'apw')
        assert kv.Put(rpc_pb2.PutRequest(key=b'/a/m', value=b'v'), metadata=[('token', tok)]).header.revision > 1


def test_password_guessing_does_not_stall_others():
    """bcrypt at cost 15 takes seconds per try. Guessers keep the password thread busy; puts
    with a token, each allowed less than one try's time, are all answered meanwhile: no
    login ever runs on a reactor or the sequencer. (The bound is generous: a put takes
    milliseconds, one bcrypt try about 2-4 s here.)"""
    n = Node(extra=['--bcrypt-cost', '15'], probe=status_probe)
    stop = threading.Event()
    errors, tries = [], []
    try:
        n.start()
        for args in (('user', 'add', ROOT), ('user', 'add', ALICE), ('role', 'add', 'r1'),
                     ('role', 'grant-permission', 'r1', 'readwrite', '/a/', '--prefix'),
                     ('user', 'grant-role', 'alice', 'r1'), ('auth', 'enable')):
            r = ctl('etcdctl35', n.endpoint, *args, timeout=120)
            assert r.returncode == 0, r.stderr
        t0 = time.monotonic()
        tok = grpc_token(n.endpoint, 'alice', 'apw')
        one_try = time.monotonic() - t0

        def guess():
            with grpc.insecure_channel(n.endpoint) as ch:
                a = rpc_pb2_grpc.AuthStub(ch)
                while not stop.is_set():
                    try:
                        a.Authenticate(rpc_pb2.AuthenticateRequest(name='alice', password='guess'), timeout=120)
                    except grpc.RpcError as e:
                        tries.append(e.details())

        guessers = [threading.Thread(target=guess, daemon=True) for _ in range(3)]
        for g in guessers:
            g.start()
        with grpc.insecure_channel(n.endpoint) as ch:
            kv = rpc_pb2_grpc.KVStub(ch)
            deadline = max(0.5, one_try / 2)
            end = time.monotonic() + 2 * one_try  # long enough for guesses to be answered too
            i = 0
            while time.monotonic() < end:
                kv.Put(rpc_pb2.PutRequest(key=b'/a/%d' % i, value=b'v'), metadata=[('token', tok)], timeout=deadline)
                i += 1
        stop.set()
        for g in guessers:  # their last guesses finish on the password thread
            g.join(120)
        assert i > 10
        assert tries and set(tries) == {'etcdserver: authentication failed, invalid user ID or password'}, tries[:3]
    finally:
        stop.set()
        n.cleanup()


def test_certificate_cn_is_the_user_over_mtls(tmp_path):
    """With --client-cert-auth, a client certificate's CN (here "alice", and "root") is the
    user when the call sends no token, as etcd does; a token still wins over the CN."""
    from test_tls import PKI, creds
    pk = PKI(str(tmp_path / 'pki'), 'ec')
    pk.issue('server', '127.0.0.1', server=True)
    pk.issue('client', 'alice')
    pk.issue('rootc', 'root')
    pk.issue('nobody', 'nobody')

    def probe(endpoint):
        with grpc.secure_channel(endpoint, creds(pk, 'client')) as ch:
            rpc_pb2_grpc.MaintenanceStub(ch).Status(rpc_pb2.StatusRequest(), timeout=1)

    n = Node(extra=['--cert-file', pk.p('server.crt'), '--key-file', pk.p('server.key'),
                    '--trusted-ca-file', pk.p('ca.crt'), '--client-cert-auth'], scheme='https', probe=probe)

    def as_(name, *args):
        base = [CTLS['etcdctl35'], '--endpoints', 'https://' + n.endpoint, '--cacert', pk.p('ca.crt'),
                '--cert', pk.p(name + '.crt'), '--key', pk.p(name + '.key')]
        return subprocess.run(base + list(args), capture_output=True, text=True, timeout=30,
                              env=dict(os.environ, ETCDCTL_API='3'))

    try:
        n.start()
        for args in (('user', 'add', 'root', '--no-password'), ('user', 'add', 'alice', '--no-password'),
                     ('role', 'add', 'root'), ('user', 'grant-role', 'root', 'root'), ('role', 'add', 'r1'),
                     ('role', 'grant-permission', 'r1', 'readwrite', '/a/', '--prefix'),
                     ('user', 'grant-role', 'alice', 'r1'), ('auth', 'enable')):
            r = as_('rootc', *args)
            assert r.returncode == 0, (args, r.stderr)
        assert as_('client', 'put', '/a/cn', 'v').stdout.strip() == 'OK'
        assert as_('client', 'get', '/a/cn').stdout.split() == ['/a/cn', 'v']
        r = as_('client', 'put', '/b', 'v')
        assert r.returncode != 0 and 'permission denied' in r.stderr
        r = as_('nobody', 'get', '/a/cn')
        assert r.returncode != 0 and 'permission denied' in r.stderr
        assert 'alice' in as_('rootc', 'user', 'list').stdout
        r = as_('client', 'user', 'list')
        assert r.returncode != 0 and 'permission denied' in r.stderr
    finally:
        n.cleanup()


def test_observe_under_auth_matches_etcd(spawn):
    """Election.Observe (the raw RPC: etcdctl elect -l observes client-side) on a name the
    user may not read ends quietly with no message, as etcd's observer does; on a name it
    may read, it waits for a leader."""
    def leader_request(name):
        return b'\x0a' + bytes([len(name)]) + name

    seen = {}
    for role in ('uetcd', 'etcd'):
        ep = spawn(role).endpoint
        setup_alice('etcdctl35', ep)
        tok = grpc_token(ep, 'alice', 'apw')
        out = []
        with grpc.insecure_channel(ep) as ch:
            obs = ch.unary_stream('/v3electionpb.Election/Observe', request_serializer=lambda x: x,
                                  response_deserializer=lambda x: x)
            for name in (b'q', b'/a/el'):
                try:
                    out.append((name, len(list(obs(leader_request(name), metadata=[('token', tok)], timeout=1)))))
                except grpc.RpcError as e:
                    out.append((name, e.code().name))
        seen[role] = out
    assert seen['uetcd'] == seen['etcd'] == [(b'q', 0), (b'/a/el', 'DEADLINE_EXCEEDED')], seen
