"""Server behaviours side by side with etcd 3.5.16 (issue 14, "Server behaviours that differ"):

- a second server on a client port already in use fails at start ("bind: address already in
  use"), as etcd's does, and the first keeps serving every connection: uetcd's reactors share
  their port with SO_REUSEPORT, which must not let another process join them;
- SIGHUP ends the server as it ends etcd (Go's default); uetcd shuts down cleanly and its
  data is intact at the next start;
- --cipher-suites takes every spelling etcd's tlsutil accepts (Go's names and the two older
  ChaCha20 ones), each selects its suite for a TLS 1.2 client limited to it, and a list without
  an ECDHE AES-128-GCM suite is refused as etcd refuses it (Go's HTTP/2 requirement);
- /metrics: the same operations move etcd_mvcc_{put,delete,range,txn}_total and the gRPC
  started/handled series by the same amounts on both servers, with the same label sets;
  etcd_debugging_mvcc_keys_total agrees; etcd_cluster_version is the server's major.minor;
- the JSON gateway serves /v3/lock/lock|unlock and /v3/election/campaign|proclaim|leader|
  resign with etcd's JSON and errors, and answers a malformed Txn body with etcd's 400 and
  error body (an empty RequestOp is "etcdserver: key not found", not a 200).
"""
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
import base64
import json

import grpc
import pytest

from conftest import etcd_ref_bin, free_port, uetcd_bin
from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc

START_TIMEOUT = 20.0


def clean_env():
    return {k: v for k, v in os.environ.items() if not k.startswith('ETCD')}  # ETCD_* are flags


def run_second(role, port):
    """Starts a server of this role on a port another server holds; returns (exit status,
    output). A bounded wait: a server that keeps running is killed and reported as None."""
    tmp = tempfile.mkdtemp(prefix='uetcd-p2-second-')
    url = 'http://127.0.0.1:%d' % port
    args = [uetcd_bin() if role == 'uetcd' else etcd_ref_bin(), '--data-dir', os.path.join(tmp, 'data'),
            '--listen-client-urls', url, '--advertise-client-urls', url]
    if role == 'etcd':
        args += ['--listen-peer-urls', 'http://127.0.0.1:0']
    try:
        p = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             env=clean_env(), cwd=tmp)
        try:
            out, _ = p.communicate(timeout=START_TIMEOUT)
            return p.returncode, out.decode('utf-8', 'replace')
        except subprocess.TimeoutExpired:
            p.kill()
            out, _ = p.communicate(timeout=10)
            return None, out.decode('utf-8', 'replace')
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def test_second_server_on_a_taken_port_fails_as_etcd(spawn):
    for role in ('uetcd', 'etcd'):
        first = spawn(role)
        with first.channel() as ch:
            rpc_pb2_grpc.KVStub(ch).Put(rpc_pb2.PutRequest(key=b'owner', value=role.encode()), timeout=10)
        rc, out = run_second(role, first.port)
        assert rc not in (None, 0), '%s: the second server did not fail:\n%s' % (role, out[-2000:])
        assert 'bind: address already in use' in out, (role, out[-2000:])
        # every new connection reaches the first server (a second one would answer empty)
        for i in range(40):
            with grpc.insecure_channel(first.endpoint) as ch:
                r = rpc_pb2_grpc.KVStub(ch).Range(rpc_pb2.RangeRequest(key=b'owner'), timeout=10)
                assert [kv.value for kv in r.kvs] == [role.encode()], (role, i)
        assert first.alive()


def test_reactors_still_share_their_port(tmp_path):
    """Four reactors on one port start (the others join the first's SO_REUSEPORT group) and
    serve every connection."""
    from test_crash import Node
    n = Node(extra=['--threads', '4'])
    try:
        n.start()
        for i in range(40):
            with grpc.insecure_channel(n.endpoint) as ch:
                rpc_pb2_grpc.KVStub(ch).Put(rpc_pb2.PutRequest(key=b'k%d' % i, value=b'v'), timeout=10)
        with grpc.insecure_channel(n.endpoint) as ch:
            r = rpc_pb2_grpc.KVStub(ch).Range(rpc_pb2.RangeRequest(key=b'k', range_end=b'l', count_only=True),
                                              timeout=10)
        assert r.count == 40
        rc, out = run_second('uetcd', n.port)
        assert rc not in (None, 0) and 'bind: address already in use' in out, out[-2000:]
    finally:
        n.cleanup()


def test_sighup_ends_the_server_as_etcd(spawn):
    for role in ('uetcd', 'etcd'):
        srv = spawn(role)
        with srv.channel() as ch:
            for i in range(20):
                rpc_pb2_grpc.KVStub(ch).Put(rpc_pb2.PutRequest(key=b'hup%02d' % i, value=b'v%d' % i), timeout=10)
        srv.proc.send_signal(signal.SIGHUP)
        try:
            rc = srv.proc.wait(START_TIMEOUT)
        except subprocess.TimeoutExpired:
            raise AssertionError('%s kept running after SIGHUP' % role)
        if role == 'etcd':
            assert rc == -signal.SIGHUP, rc  # Go's default: the signal ends the process
        else:
            assert rc == 0, srv.stderr_tail()  # uetcd shuts down as on SIGTERM
            assert 'shutting down' in srv.stderr_tail()
        srv.start(wipe=False)  # both keep their data
        with srv.channel() as ch:
            r = rpc_pb2_grpc.KVStub(ch).Range(rpc_pb2.RangeRequest(key=b'hup', range_end=b'huq'), timeout=10)
        assert [(kv.key, kv.value) for kv in r.kvs] == [(b'hup%02d' % i, b'v%d' % i) for i in range(20)]
        assert r.header.revision == 21


# Every name etcd 3.5.16 accepts: Go's crypto/tls CipherSuites() and InsecureCipherSuites()
# (TLS 1.3 ones are accepted and ignored) and tlsutil's two pre-Go-1.14 ChaCha20 aliases.
ETCD_CIPHER_NAMES = [
    'TLS_RSA_WITH_RC4_128_SHA', 'TLS_RSA_WITH_3DES_EDE_CBC_SHA', 'TLS_RSA_WITH_AES_128_CBC_SHA',
    'TLS_RSA_WITH_AES_256_CBC_SHA', 'TLS_RSA_WITH_AES_128_CBC_SHA256', 'TLS_RSA_WITH_AES_128_GCM_SHA256',
    'TLS_RSA_WITH_AES_256_GCM_SHA384', 'TLS_ECDHE_ECDSA_WITH_RC4_128_SHA', 'TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA',
    'TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA', 'TLS_ECDHE_RSA_WITH_RC4_128_SHA', 'TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA',
    'TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA', 'TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA',
    'TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256', 'TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256',
    'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256', 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256',
    'TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384', 'TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384',
    'TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256', 'TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256',
    'TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305', 'TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305',
    'TLS_AES_128_GCM_SHA256', 'TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256',
]
# (etcd spelling, key type, OpenSSL's name): the AEAD suites a TLS 1.2 client can be limited to
SPELLINGS = [
    ('TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256', 'rsa', 'ECDHE-RSA-AES128-GCM-SHA256'),
    ('TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384', 'rsa', 'ECDHE-RSA-AES256-GCM-SHA384'),
    ('TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256', 'rsa', 'ECDHE-RSA-CHACHA20-POLY1305'),
    ('TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305', 'rsa', 'ECDHE-RSA-CHACHA20-POLY1305'),
    ('TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256', 'ec', 'ECDHE-ECDSA-AES128-GCM-SHA256'),
    ('TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384', 'ec', 'ECDHE-ECDSA-AES256-GCM-SHA384'),
    ('TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256', 'ec', 'ECDHE-ECDSA-CHACHA20-POLY1305'),
    ('TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305', 'ec', 'ECDHE-ECDSA-CHACHA20-POLY1305'),
]
# Go's HTTP/2 server needs one of these in a TLS 1.2 list; the test adds the one for the other key
H2_SUITE = {'rsa': 'TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256', 'ec': 'TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256'}


@pytest.fixture(scope='module')
def certs(tmp_path_factory):
    d = tmp_path_factory.mktemp('p2certs')
    for key, newkey in (('rsa', ['-newkey', 'rsa:2048']),
                        ('ec', ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'])):
        subprocess.run(['openssl', 'req', '-x509', *newkey, '-nodes', '-keyout', str(d / (key + '.key')),
                        '-out', str(d / (key + '.crt')), '-days', '3', '-subj', '/CN=127.0.0.1',
                        '-addext', 'subjectAltName=IP:127.0.0.1'], check=True, capture_output=True, timeout=60)
    return d


class TlsServer:
    """A server of either role on https, started with the given extra flags."""

    def __init__(self, role, certs, key, extra):
        self.tmp = tempfile.mkdtemp(prefix='uetcd-p2-tls-')
        self.port = free_port()
        url = 'https://127.0.0.1:%d' % self.port
        args = [uetcd_bin() if role == 'uetcd' else etcd_ref_bin(), '--data-dir', os.path.join(self.tmp, 'data'),
                '--listen-client-urls', url, '--advertise-client-urls', url,
                '--cert-file', str(certs / (key + '.crt')), '--key-file', str(certs / (key + '.key'))] + extra
        if role == 'etcd':
            args += ['--listen-peer-urls', 'http://127.0.0.1:%d' % free_port()]
        self.log = os.path.join(self.tmp, 'log')
        with open(self.log, 'wb') as f:
            self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=f, stderr=subprocess.STDOUT,
                                         env=clean_env(), cwd=self.tmp)

    def output(self):
        with open(self.log, 'rb') as f:
            return f.read().decode('utf-8', 'replace')

    def exit_status(self):
        try:
            return self.proc.wait(START_TIMEOUT)
        except subprocess.TimeoutExpired:
            return None

    def negotiate(self, certs, key, cipher):
        """The cipher an OpenSSL TLS 1.2 client limited to `cipher` gets (None: no handshake);
        retried while the server is still starting."""
        deadline = time.monotonic() + START_TIMEOUT
        got = None
        while time.monotonic() < deadline and self.proc.poll() is None:
            out = subprocess.run(['openssl', 's_client', '-connect', '127.0.0.1:%d' % self.port, '-tls1_2',
                                  '-cipher', cipher, '-CAfile', str(certs / (key + '.crt'))],
                                 stdin=subprocess.DEVNULL, capture_output=True, timeout=20)
            text = out.stdout.decode('utf-8', 'replace')
            for line in text.splitlines():
                if 'Cipher is ' in line:
                    got = line.split('Cipher is ', 1)[1].strip()
            if got and got != '(NONE)':
                return got
            if 'connect:errno' not in text + out.stderr.decode('utf-8', 'replace'):
                return None  # the server answered and refused
            time.sleep(0.1)
        return None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.tmp, ignore_errors=True)


@pytest.mark.parametrize('spelling,key,openssl_name', SPELLINGS)
def test_cipher_suite_spelling_selects_its_suite(certs, spelling, key, openssl_name):
    roles = ('uetcd', 'etcd') if 'CHACHA20' in spelling else ('uetcd',)  # etcd: the aliases' pair
    for role in roles:
        srv = TlsServer(role, certs, key, ['--cipher-suites', spelling + ',' + H2_SUITE[key]])
        try:
            got = srv.negotiate(certs, key, openssl_name)
            assert got == openssl_name, (role, got, srv.output()[-2000:])
            # another suite of the same key type is not offered
            other = 'ECDHE-%s-AES128-GCM-SHA256' % ('RSA' if key == 'rsa' else 'ECDSA')
            if other != openssl_name:
                assert srv.negotiate(certs, key, other) is None, role
        finally:
            srv.stop()


def test_cipher_suite_lists_accepted_and_refused_as_etcd(certs):
    cases = [
        (','.join(ETCD_CIPHER_NAMES), True),
        ('TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA255', False),
        ('TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384', False),  # no h2 suite
    ]
    for ciphers, ok in cases:
        for role in ('uetcd', 'etcd'):
            srv = TlsServer(role, certs, 'rsa', ['--cipher-suites', ciphers])
            try:
                if ok:
                    assert srv.negotiate(certs, 'rsa', 'ECDHE-RSA-CHACHA20-POLY1305'), (role, srv.output()[-2000:])
                else:
                    assert srv.exit_status() not in (None, 0), (role, ciphers)
                    out = srv.output()
                    assert ('unexpected TLS cipher suite' in out or 'HTTP/2-required' in out), (role, out[-2000:])
            finally:
                srv.stop()


def scrape(srv):
    """{(name, frozenset(labels)): value} of a /metrics page."""
    out = {}
    with urllib.request.urlopen('http://%s/metrics' % srv.endpoint, timeout=20) as r:
        text = r.read().decode()
    for line in text.splitlines():
        if not line or line.startswith('#'):
            continue
        head, _, value = line.rpartition(' ')
        name, _, labels = head.partition('{')
        pairs = frozenset(tuple(kv.split('=', 1)) for kv in labels.rstrip('}').split(',') if kv)
        out[(name, frozenset((k, v.strip('"')) for k, v in pairs))] = float(value)
    return out


MVCC = ['etcd_mvcc_put_total', 'etcd_mvcc_delete_total', 'etcd_mvcc_range_total', 'etcd_mvcc_txn_total']


def kv_workload(ch):
    kv = rpc_pb2_grpc.KVStub(ch)
    P, R, D, T = rpc_pb2.PutRequest, rpc_pb2.RangeRequest, rpc_pb2.DeleteRangeRequest, rpc_pb2.TxnRequest
    Op, Cmp = rpc_pb2.RequestOp, rpc_pb2.Compare
    kv.Put(P(key=b'm/a', value=b'1'), timeout=10)
    kv.Put(P(key=b'm/b', value=b'2', prev_kv=True), timeout=10)
    kv.Put(P(key=b'm/b', ignore_value=True), timeout=10)
    kv.Range(R(key=b'm/a'), timeout=10)
    kv.Range(R(key=b'm/', range_end=b'm0', serializable=True), timeout=10)
    kv.DeleteRange(D(key=b'm/a'), timeout=10)
    kv.DeleteRange(D(key=b'm/none', prev_kv=True), timeout=10)
    ver = Cmp(key=b'm/b', target=Cmp.VERSION, result=Cmp.GREATER, version=0)
    # read only: one compare and one range in one mvcc txn
    kv.Txn(T(compare=[ver], success=[Op(request_range=R(key=b'm/b'))]), timeout=10)
    # read only, a single range: no txn
    kv.Txn(T(success=[Op(request_range=R(key=b'm/b'))]), timeout=10)
    # writes: a compare, then one put (two mvcc txns of one operation each)
    kv.Txn(T(compare=[ver], success=[Op(request_put=P(key=b'm/c', value=b'3'))]), timeout=10)
    # writes: the failure branch, two deletes and a nested txn with a put
    nested = T(compare=[ver, ver], success=[Op(request_put=P(key=b'm/d', value=b'4', prev_kv=True))])
    kv.Txn(T(compare=[Cmp(key=b'm/b', target=Cmp.VALUE, result=Cmp.EQUAL, value=b'x')],
             failure=[Op(request_delete_range=D(key=b'm/c')), Op(request_delete_range=D(key=b'm/zz', prev_kv=True)),
                      Op(request_txn=nested)]), timeout=10)
    # a failed request counts started and handled with its code
    try:
        kv.Range(R(key=b'm/a', revision=1000), timeout=10)
    except grpc.RpcError:
        pass
    # a watch stream, started and cancelled
    stream = rpc_pb2_grpc.WatchStub(ch).Watch(iter([rpc_pb2.WatchRequest(
        create_request=rpc_pb2.WatchCreateRequest(key=b'm/'))]), timeout=10)
    next(stream)
    stream.cancel()
    rpc_pb2_grpc.LeaseStub(ch).LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=60), timeout=10)


def grpc_series(m, name):
    return {k[1]: v for k, v in m.items() if k[0] == name and dict(k[1]).get('grpc_service', '').startswith('etcdserverpb.')}


def test_metrics_series_move_as_etcds(spawn):
    got = {}
    for role in ('uetcd', 'etcd'):
        srv = spawn(role)
        before = scrape(srv)
        with srv.channel() as ch:
            kv_workload(ch)
        # etcd's gateway calls its gRPC server: its requests count as gRPC calls
        assert gw_post(srv, '/v3/kv/put', {'key': b64('m/gw'), 'value': b64('1')})[0] == 200
        assert gw_post(srv, '/v3/kv/range', {'key': b64('m/gw')})[0] == 200
        assert gw_post(srv, '/v3/kv/put', {'key': ''})[0] == 400
        # the watch stream's end is counted when the server sees the cancel: bounded wait
        deadline = time.monotonic() + 10
        while True:
            after = scrape(srv)
            watch = [v for k, v in grpc_series(after, 'grpc_server_handled_total').items()
                     if dict(k)['grpc_method'] == 'Watch' and v]
            if watch or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        delta = {n: after[(n, frozenset())] - before[(n, frozenset())] for n in MVCC}
        series = {}
        for name in ('grpc_server_started_total', 'grpc_server_handled_total'):
            b, a = grpc_series(before, name), grpc_series(after, name)
            series[name] = {k: a[k] - b.get(k, 0) for k in a}
        version = [dict(k[1]) for k in after if k[0] == 'etcd_server_version'][0]['server_version']
        cluster = [dict(k[1]) for k in after if k[0] == 'etcd_cluster_version'][0]['cluster_version']
        assert cluster == '.'.join(version.split('.')[:2]), (role, version, cluster)
        got[role] = (delta, series, after[('etcd_debugging_mvcc_keys_total', frozenset())])
    (ud, us, uk), (ed, es, ek) = got['uetcd'], got['etcd']
    assert ud == ed
    assert uk == ek
    # RangeStream is etcd 3.7's: the 3.5.16 reference has no series for it
    us = {n: {k: v for k, v in d.items() if dict(k)['grpc_method'] != 'RangeStream'} for n, d in us.items()}
    for name in ('grpc_server_started_total', 'grpc_server_handled_total'):
        assert set(us[name]) == set(es[name]), (name, set(us[name]) ^ set(es[name]))
        # every series moved by as much, the cancelled Watch stream's (Canceled) included
        assert {k: v for k, v in us[name].items() if v} == {k: v for k, v in es[name].items() if v}, name
    started = {dict(k)['grpc_method']: (dict(k)['grpc_type'], v) for k, v in us['grpc_server_started_total'].items() if v}
    assert started['Watch'] == ('bidi_stream', 1)


def gw_post(srv, path, body):
    """(status, parsed JSON) of a gateway POST; body is a str (sent as is) or JSON-able."""
    data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
    req = urllib.request.Request('http://%s%s' % (srv.endpoint, path), data=data, method='POST')
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, json.loads(r.read().decode())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read().decode())


def b64(s):
    return base64.b64encode(s.encode()).decode()


def normalize(v, lease):
    """A gateway answer with what differs between two servers (ids, the lease id inside a
    key) made equal."""
    if isinstance(v, dict):
        return {k: normalize(x, lease) for k, x in v.items() if k not in ('cluster_id', 'member_id')}
    if isinstance(v, list):
        return [normalize(x, lease) for x in v]
    if isinstance(v, str):
        try:
            raw = base64.b64decode(v, validate=True).decode()
        except Exception:
            return 'LEASE' if v == lease else v
        return raw.replace('%x' % int(lease), 'LEASE') if '/' in raw else v
    return v


def test_gateway_lock_and_election_as_etcd(spawn):
    answers = {}
    for role in ('uetcd', 'etcd'):
        srv = spawn(role)
        st, g = gw_post(srv, '/v3/lease/grant', {'TTL': 60})
        assert st == 200
        lease = g['ID']
        steps = [
            ('/v3/election/campaign', {'name': b64('e1'), 'lease': lease, 'value': b64('v1')}),
            ('/v3/election/leader', {'name': b64('e1')}),
            ('/v3/election/leader', {'name': b64('nobody')}),
            ('/v3/election/proclaim', {'leader': {'name': b64('e1'), 'key': b64('e1/x'), 'rev': '1', 'lease': lease},
                                       'value': b64('v2')}),
            ('/v3/lock/lock', {'name': b64('l1'), 'lease': lease}),
            ('/v3/lock/unlock', {'key': b64('l1/none')}),
            ('/v3/election/resign', {'leader': {'name': b64('e1'), 'key': b64('e1/x'), 'rev': '1', 'lease': lease}}),
        ]
        got = []
        leader = None
        for path, body in steps:
            st, ans = gw_post(srv, path, body)
            got.append((path, st, normalize(ans, lease)))
            if path.endswith('campaign'):
                leader = ans['leader']
        # the real leader proclaims, is seen with the new value, then resigns
        st, ans = gw_post(srv, '/v3/election/proclaim', {'leader': leader, 'value': b64('v3')})
        got.append(('proclaim', st, normalize(ans, lease)))
        st, ans = gw_post(srv, '/v3/election/leader', {'name': b64('e1')})
        got.append(('leader', st, normalize(ans, lease)))
        assert base64.b64decode(ans['kv']['value']) == b'v3'
        st, ans = gw_post(srv, '/v3/election/resign', {'leader': leader})
        got.append(('resign', st, normalize(ans, lease)))
        st, ans = gw_post(srv, '/v3/election/leader', {'name': b64('e1')})
        got.append(('leader after resign', st, normalize(ans, lease)))
        answers[role] = got
    for u, e in zip(answers['uetcd'], answers['etcd']):
        assert u == e


TXN_BODIES = [
    '{"success":[{}]}',                                       # an empty RequestOp
    '{"failure":[{"request_put":{"key":"Zm9v"}},{}]}',        # one among others
    '{"success":[{"request_txn":{"success":[{}]}}]}',         # nested
    '{',                                                      # truncated
    '{"compare": "x"}',
    '{"success":[{"requestPut": {"key": "!!!"}}]}',
    '{"success":[{"request_put":{"key":""}}]}',
    '{"success":[{"request_put":{"key":"Zm9v","value":"YmFy"}}]}',
    '',
]


def test_gateway_malformed_txn_gets_etcds_400(spawn):
    answers = {}
    for role in ('uetcd', 'etcd'):
        srv = spawn(role)
        answers[role] = [(body,) + gw_post(srv, '/v3/kv/txn', body) for body in TXN_BODIES]
        for body, st, ans in answers[role]:
            if st == 200:
                ans.pop('header')
            else:  # Go's protojson puts a space or, as a deterrent to matching, a no-break space after "proto:"
                ans['message'] = ans['message'].replace('proto:\xa0', 'proto: ')
    for u, e in zip(answers['uetcd'], answers['etcd']):
        assert u == e
    assert answers['uetcd'][0][1:] == (400, {'code': 3, 'message': 'etcdserver: key not found'})


def test_empty_request_op_over_grpc_as_etcd(server):
    with server.channel() as ch:
        try:
            rpc_pb2_grpc.KVStub(ch).Txn(rpc_pb2.TxnRequest(success=[rpc_pb2.RequestOp()]), timeout=10)
            raise AssertionError('an empty RequestOp was accepted')
        except grpc.RpcError as e:
            assert (e.code(), e.details()) == (grpc.StatusCode.INVALID_ARGUMENT, 'etcdserver: key not found')
