"""Server behaviours side by side with etcd 3.5.16 (issue 14, "Server behaviours that differ"):

- a second server on a client port already in use fails at start ("bind: address already in
  use"), as etcd's does, and the first keeps serving every connection: uetcd's reactors share
  their port with SO_REUSEPORT, which must not let another process join them;
- SIGHUP ends the server as it ends etcd (Go's default); uetcd shuts down cleanly and its
  data is intact at the next start;
"""
import os
import shutil
import signal
import subprocess
import tempfile
import time

import grpc

from conftest import etcd_ref_bin, uetcd_bin
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
