"""TLS and mutual TLS: certificates (RSA and ECDSA) made here with the openssl command line;
etcdctl 3.4/3.5 and python3-etcd3 over mTLS for KV, watch and lease; refused clients
(no certificate, another CA, expired, revoked by CRL) never stop the server serving others;
ALPN h2 on TLS 1.3 and 1.2, TLS 1.1 refused; garbage and stalled handshakes do not delay
anyone; 1000 concurrent handshakes; certificate rotation while clients stay connected.
"""
import os
import selectors
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time

import grpc
import pytest

from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc
from conftest import etcd_ref_bin
from test_crash import Node


def run(*args, **kw):
    return subprocess.run(list(args), check=True, capture_output=True, **kw)


class PKI:
    """A CA, a server certificate for 127.0.0.1, client certificates and a CRL."""

    def __init__(self, root, key='ec'):
        self.dir = root
        os.makedirs(root, exist_ok=True)
        self.key = key
        with open(self.p('ca.cnf'), 'w') as f:
            f.write('[ca]\ndefault_ca=CA\n[CA]\ndir=%s\ndatabase=$dir/index.txt\nnew_certs_dir=$dir\n'
                    'serial=$dir/serial\ncrlnumber=$dir/crlnumber\ndefault_md=sha256\npolicy=any\n'
                    'default_crl_days=30\ncopy_extensions=copy\nunique_subject=no\n[any]\ncommonName=supplied\n' % root)
        open(self.p('index.txt'), 'w').close()
        with open(self.p('serial'), 'w') as f:
            f.write('1000\n')
        with open(self.p('crlnumber'), 'w') as f:
            f.write('1000\n')
        run('openssl', 'req', '-x509', *self.newkey(), '-nodes', '-keyout', self.p('ca.key'),
            '-out', self.p('ca.crt'), '-days', '30', '-subj', '/CN=uetcd-test-ca')

    def p(self, name):
        return os.path.join(self.dir, name)

    def newkey(self):
        return ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256'] if self.key == 'ec' else ['-newkey', 'rsa:2048']

    def issue(self, name, cn, server=False, start=None, end=None):
        args = ['openssl', 'req', *self.newkey(), '-nodes', '-keyout', self.p(name + '.key'),
                '-out', self.p(name + '.csr'), '-subj', '/CN=' + cn]
        if server:
            args += ['-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost']
        run(*args)
        ca = ['openssl', 'ca', '-batch', '-config', self.p('ca.cnf'), '-cert', self.p('ca.crt'),
              '-keyfile', self.p('ca.key'), '-in', self.p(name + '.csr'), '-out', self.p(name + '.crt'),
              '-notext']
        ca += ['-startdate', start, '-enddate', end] if start else ['-days', '30']
        run(*ca)
        return self.p(name + '.crt'), self.p(name + '.key')

    def revoke(self, name):
        run('openssl', 'ca', '-config', self.p('ca.cnf'), '-cert', self.p('ca.crt'), '-keyfile', self.p('ca.key'),
            '-revoke', self.p(name + '.crt'))
        run('openssl', 'ca', '-config', self.p('ca.cnf'), '-cert', self.p('ca.crt'), '-keyfile', self.p('ca.key'),
            '-gencrl', '-out', self.p('crl.pem'))


@pytest.fixture(scope='module', params=['ec', 'rsa'])
def pki(request):
    tmp = tempfile.mkdtemp(prefix='uetcd-pki-')
    pk = PKI(os.path.join(tmp, 'a'), request.param)
    pk.issue('server', '127.0.0.1', server=True)
    pk.issue('client', 'alice')
    pk.issue('expired', 'old', start='20200101000000Z', end='20200201000000Z')
    pk.issue('revoked', 'mallory')
    pk.revoke('revoked')
    other = PKI(os.path.join(tmp, 'b'), request.param)
    other.issue('client', 'eve')
    pk.other = other
    yield pk
    shutil.rmtree(tmp, ignore_errors=True)


def tls_probe(pk):
    def probe(endpoint):
        with grpc.secure_channel(endpoint, creds(pk, 'client')) as ch:
            rpc_pb2_grpc.KVStub(ch).Range(rpc_pb2.RangeRequest(key=b'probe'), timeout=1)
    return probe


def creds(pk, client, ca=None):
    return grpc.ssl_channel_credentials(
        root_certificates=open(ca or pk.p('ca.crt'), 'rb').read(),
        private_key=open((pk if client != 'other' else pk.other).p(('client' if client == 'other' else client) + '.key'), 'rb').read(),
        certificate_chain=open((pk if client != 'other' else pk.other).p(('client' if client == 'other' else client) + '.crt'), 'rb').read())


@pytest.fixture(scope='module')
def tls_node(pki):
    n = Node(extra=['--cert-file', pki.p('server.crt'), '--key-file', pki.p('server.key'),
                    '--trusted-ca-file', pki.p('ca.crt'), '--client-cert-auth',
                    '--client-crl-file', pki.p('crl.pem')],
             scheme='https', probe=tls_probe(pki))
    n.start()
    yield n
    n.cleanup()


def etcdctl(ctl, node, pk, *args, client='client', timeout=20):
    base = [ctl, '--endpoints', 'https://' + node.endpoint, '--cacert', pk.p('ca.crt'),
            '--dial-timeout', '3s', '--command-timeout', '5s']
    if client:
        base += ['--cert', pk.p(client + '.crt'), '--key', pk.p(client + '.key')]
    return subprocess.run(base + list(args), capture_output=True, text=True, timeout=timeout,
                          env=dict(os.environ, ETCDCTL_API='3'))


CTLS = ['/usr/bin/etcdctl', 'ref']


def ctl_path(c):
    return c if c != 'ref' else os.path.join(os.path.dirname(etcd_ref_bin()), 'etcdctl')


@pytest.mark.parametrize('ctl', CTLS)
def test_etcdctl_kv_watch_lease_over_mtls(tls_node, pki, ctl):
    c = ctl_path(ctl)
    assert etcdctl(c, tls_node, pki, 'put', 'tls/k', 'v1').stdout.strip() == 'OK'
    assert etcdctl(c, tls_node, pki, 'get', 'tls/k').stdout.split() == ['tls/k', 'v1']
    grant = etcdctl(c, tls_node, pki, 'lease', 'grant', '60')
    lease = grant.stdout.split()[1]
    assert etcdctl(c, tls_node, pki, 'put', '--lease=' + lease, 'tls/l', 'x').returncode == 0
    ttl = etcdctl(c, tls_node, pki, 'lease', 'timetolive', lease, '--keys').stdout
    assert 'tls/l' in ttl, ttl
    w = subprocess.Popen([c, '--endpoints', 'https://' + tls_node.endpoint, '--cacert', pki.p('ca.crt'),
                          '--cert', pki.p('client.crt'), '--key', pki.p('client.key'), 'watch', 'tls/w'],
                         stdout=subprocess.PIPE, text=True, env=dict(os.environ, ETCDCTL_API='3'))
    time.sleep(1.0)
    etcdctl(c, tls_node, pki, 'put', 'tls/w', 'seen')
    time.sleep(1.0)
    w.terminate()
    assert w.communicate(timeout=10)[0].split() == ['PUT', 'tls/w', 'seen']


def test_python_etcd3_over_mtls(tls_node, pki):
    import etcd3
    c = etcd3.client('127.0.0.1', tls_node.port, ca_cert=pki.p('ca.crt'), cert_key=pki.p('client.key'),
                     cert_cert=pki.p('client.crt'))
    c.put('tls/py', 'v')
    assert c.get('tls/py')[0] == b'v'
    lease = c.lease(30)
    c.put('tls/pyl', 'x', lease=lease)
    assert [k for k in lease.keys] == [b'tls/pyl']
    events = []
    it, cancel = c.watch('tls/pyw')
    t = threading.Thread(target=lambda: [events.append(e.value) for e in it], daemon=True)
    t.start()
    time.sleep(0.5)
    c.put('tls/pyw', 'ev')
    deadline = time.monotonic() + 10
    while not events and time.monotonic() < deadline:
        time.sleep(0.05)
    cancel()
    assert events[:1] == [b'ev']


@pytest.mark.parametrize('client', [None, 'other', 'expired', 'revoked'])
def test_bad_clients_are_refused_and_others_served(tls_node, pki, client):
    ch = grpc.secure_channel(tls_node.endpoint, grpc.ssl_channel_credentials(open(pki.p('ca.crt'), 'rb').read())
                             if client is None else creds(pki, client))
    with pytest.raises(grpc.RpcError) as e:
        rpc_pb2_grpc.KVStub(ch).Range(rpc_pb2.RangeRequest(key=b'x'), timeout=3)
    assert e.value.code() in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED)
    ch.close()
    with grpc.secure_channel(tls_node.endpoint, creds(pki, 'client')) as good:
        rpc_pb2_grpc.KVStub(good).Put(rpc_pb2.PutRequest(key=b'after-bad', value=b'1'), timeout=5)


@pytest.mark.parametrize('version', ['-tls1_3', '-tls1_2'])
def test_openssl_negotiates_h2(tls_node, pki, version):
    out = s_client(tls_node.endpoint, '-alpn', 'h2', version, '-CAfile', pki.p('ca.crt'),
                   '-cert', pki.p('client.crt'), '-key', pki.p('client.key'))
    assert 'ALPN protocol: h2' in out
    assert 'Verify return code: 0 (ok)' in out


def s_client(endpoint, *args):
    """openssl s_client's output as text (our server's binary HTTP/2 SETTINGS may be in it)."""
    out = subprocess.run(['openssl', 's_client', '-connect', endpoint] + list(args), input=b'',
                         capture_output=True, timeout=20)
    return (out.stdout + out.stderr).decode('latin-1')


def test_tls11_refused(tls_node, pki):
    out = s_client(tls_node.endpoint, '-tls1_1', '-cipher', 'DEFAULT@SECLEVEL=0')
    assert 'Cipher is (NONE)' in out or 'alert protocol version' in out, out


def test_garbage_and_stalled_handshakes_do_not_delay_others(tls_node, pki):
    stalled = [socket.create_connection(('127.0.0.1', tls_node.port)) for _ in range(20)]
    garbage = []
    for i in range(20):
        s = socket.create_connection(('127.0.0.1', tls_node.port))
        s.sendall(b'\x16\x03\x01\x00\x30' + os.urandom(20) if i % 2 else os.urandom(300))
        garbage.append(s)
    half = socket.create_connection(('127.0.0.1', tls_node.port))
    half.sendall(b'\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03')   # a ClientHello cut short
    with grpc.secure_channel(tls_node.endpoint, creds(pki, 'client')) as good:
        r = rpc_pb2_grpc.KVStub(good).Put(rpc_pb2.PutRequest(key=b'while-stalled', value=b'1'), timeout=5)
        assert r.header.revision > 0
    for s in stalled + garbage + [half]:
        s.close()


def test_thousand_concurrent_handshakes(tls_node, pki):
    ctx = ssl.create_default_context(cafile=pki.p('ca.crt'))
    ctx.load_cert_chain(pki.p('client.crt'), pki.p('client.key'))
    ctx.set_alpn_protocols(['h2'])
    sel = selectors.DefaultSelector()
    conns = []
    for _ in range(1000):
        raw = socket.socket()
        raw.setblocking(False)
        raw.connect_ex(('127.0.0.1', tls_node.port))
        s = ctx.wrap_socket(raw, server_hostname='127.0.0.1', do_handshake_on_connect=False)
        conns.append(s)
        sel.register(s, selectors.EVENT_READ | selectors.EVENT_WRITE)
    done = set()
    deadline = time.monotonic() + 120
    while len(done) < len(conns):
        assert time.monotonic() < deadline, '%d of 1000 handshakes completed' % len(done)
        for key, _ in sel.select(timeout=1):
            s = key.fileobj
            try:
                s.do_handshake()
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError, BlockingIOError):
                continue
            except OSError:
                continue
            assert s.selected_alpn_protocol() == 'h2'
            done.add(s)
            sel.unregister(s)
    for s in conns:
        s.close()


def test_certificate_rotation_while_connected(tls_node, pki):
    ch = grpc.secure_channel(tls_node.endpoint, creds(pki, 'client'))
    kv = rpc_pb2_grpc.KVStub(ch)
    kv.Put(rpc_pb2.PutRequest(key=b'rot', value=b'before'), timeout=5)

    def serial():
        out = s_client(tls_node.endpoint, '-CAfile', pki.p('ca.crt'), '-cert', pki.p('client.crt'),
                       '-key', pki.p('client.key'))
        cert = out[out.index('-----BEGIN CERTIFICATE-----'):out.index('-----END CERTIFICATE-----') + 25]
        return subprocess.run(['openssl', 'x509', '-noout', '-serial'], input=cert, capture_output=True,
                              text=True).stdout.strip()

    old = serial()
    pki.issue('server2', '127.0.0.1', server=True)
    for ext in ('crt', 'key'):          # rename into place: a reader never sees half a file
        shutil.copy(pki.p('server2.' + ext), pki.p('server.%s.new' % ext))
    os.rename(pki.p('server.key.new'), pki.p('server.key'))
    os.rename(pki.p('server.crt.new'), pki.p('server.crt'))
    deadline = time.monotonic() + 15
    new = old
    while new == old and time.monotonic() < deadline:
        time.sleep(0.3)
        new = serial()
    assert new != old, 'the new certificate was not picked up'
    kv.Put(rpc_pb2.PutRequest(key=b'rot', value=b'after'), timeout=5)   # the old connection goes on
    assert kv.Range(rpc_pb2.RangeRequest(key=b'rot'), timeout=5).kvs[0].value == b'after'
    ch.close()


def test_http_endpoints_over_tls(tls_node, pki):
    """ALPN http/1.1 (curl) reaches the HTTP/1.1 endpoints on the TLS client port."""
    out = subprocess.run(['curl', '-s', '--http1.1', '--cacert', pki.p('ca.crt'), '--cert', pki.p('client.crt'),
                          '--key', pki.p('client.key'), 'https://%s/health' % tls_node.endpoint],
                         capture_output=True, text=True, timeout=20)
    assert out.stdout == '{"health":"true","reason":""}'
    out = subprocess.run(['curl', '-s', '--cacert', pki.p('ca.crt'), 'https://%s/health' % tls_node.endpoint],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode != 0, 'no client certificate: refused'


def test_client_cn_captured_for_the_services(pki):
    """With --client-cert-auth the verified CN is kept with the connection (Auth's user name)."""
    n = Node(extra=['--cert-file', pki.p('server.crt'), '--key-file', pki.p('server.key'),
                    '--trusted-ca-file', pki.p('ca.crt'), '--client-cert-auth', '--log-level', 'debug'],
             scheme='https', probe=tls_probe(pki))
    try:
        n.start()
        with grpc.secure_channel(n.endpoint, creds(pki, 'client')) as ch:
            rpc_pb2_grpc.KVStub(ch).Put(rpc_pb2.PutRequest(key=b'cn', value=b'1'), timeout=5)
        assert 'client certificate CN \\"alice\\"' in n.tail()
    finally:
        n.cleanup()
