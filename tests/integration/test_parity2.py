"""Server behaviours side by side with etcd 3.5.16 (issue 14, "Server behaviours that differ"):

- a second server on a client port already in use fails at start ("bind: address already in
  use"), as etcd's does, and the first keeps serving every connection: uetcd's reactors share
  their port with SO_REUSEPORT, which must not let another process join them;
- SIGHUP ends the server as it ends etcd (Go's default); uetcd shuts down cleanly and its
  data is intact at the next start;
- --cipher-suites takes every spelling etcd's tlsutil accepts (Go's names and the two older
  ChaCha20 ones), each selects its suite for a TLS 1.2 client limited to it, and a list without
  an ECDHE AES-128-GCM suite is refused as etcd refuses it (Go's HTTP/2 requirement);
"""
import os
import shutil
import signal
import subprocess
import tempfile
import time

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
