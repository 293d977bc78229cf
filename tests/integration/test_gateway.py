"""The JSON gateway under /v3/: the same requests, as curl would send them, to uetcd and to
etcd 3.5.16, the JSON answers compared (ids that differ by nature removed); and
python3-etcd3gw driving KV, txn, leases, status and members.
"""
import base64
import json
import subprocess

import pytest

from etcd3gw.client import Etcd3Client


def b64(s):
    return base64.b64encode(s.encode()).decode()


def post(srv, path, body):
    out = subprocess.run(['curl', '-s', '-w', '\n%{http_code}', '-X', 'POST', 'http://%s%s' % (srv.endpoint, path),
                          '-d', json.dumps(body) if not isinstance(body, str) else body],
                         capture_output=True, text=True, timeout=20)
    text, _, code = out.stdout.rpartition('\n')
    return int(code), text


def normalize(text):
    try:
        d = json.loads(text)
    except ValueError:
        return text
    if isinstance(d, dict) and 'header' in d:
        d['header'] = {k: v for k, v in d['header'].items() if k == 'revision'}
    for k in ('ID', 'leader', 'dbSize', 'dbSizeInUse', 'raftIndex', 'raftAppliedIndex', 'version', 'storageVersion',
              'dbSizeQuota', 'downgradeInfo'):
        if isinstance(d, dict):
            d.pop(k, None)
    return d


SCRIPT = [
    ('/v3/kv/put', {'key': b64('gw/a'), 'value': b64('1')}),
    ('/v3/kv/put', {'key': b64('gw/b'), 'value': b64('2'), 'prev_kv': True}),
    ('/v3/kv/put', {'key': b64('gw/b'), 'value': b64('3'), 'prev_kv': True}),
    ('/v3/kv/range', {'key': b64('gw/'), 'range_end': b64('gw0')}),
    ('/v3/kv/range', {'key': b64('gw/'), 'range_end': b64('gw0'), 'limit': '1', 'sort_order': 'DESCEND'}),
    ('/v3/kv/range', {'key': b64('gw/'), 'range_end': b64('gw0'), 'count_only': True}),
    ('/v3/kv/range', {'key': b64('gw/'), 'range_end': b64('gw0'), 'keys_only': True, 'revision': 2}),
    ('/v3/kv/range', {}),
    ('/v3/kv/range', {'key': b64('gw/a'), 'revision': 99}),
    ('/v3/kv/txn', {'compare': [{'key': b64('gw/a'), 'target': 'VALUE', 'result': 'EQUAL', 'value': b64('1')}],
                    'success': [{'request_put': {'key': b64('gw/c'), 'value': b64('t')}}],
                    'failure': [{'request_range': {'key': b64('gw/a')}}]}),
    ('/v3/kv/txn', {'compare': [{'key': b64('gw/a'), 'target': 'MOD', 'result': 'LESS', 'mod_revision': '1'}],
                    'success': [{'request_put': {'key': b64('gw/c'), 'value': b64('t')}}],
                    'failure': [{'request_range': {'key': b64('gw/a')}}]}),
    ('/v3/kv/deleterange', {'key': b64('gw/a'), 'prev_kv': True}),
    ('/v3/kv/compaction', {'revision': '3'}),
    ('/v3/kv/range', {'key': b64('gw/b'), 'revision': '2'}),
    ('/v3/kv/compaction', {'revision': '3'}),
    ('/v3/kv/put', '{"key": 5}'),
    ('/v3/kv/put', 'not json'),
    ('/v3/maintenance/status', {}),
]


def test_gateway_matches_etcd(spawn):
    results = {}
    for role in ('uetcd', 'etcd'):
        srv = spawn(role)
        results[role] = [(path, post(srv, path, body)) for path, body in SCRIPT]
    for (path, (ucode, ubody)), (_, (ecode, ebody)), (_, req) in zip(results['uetcd'], results['etcd'], SCRIPT):
        assert ucode == ecode, (path, req, ubody, ebody)
        if ucode == 200:
            assert normalize(ubody) == normalize(ebody), (path, req, ubody, ebody)
        else:
            u, e = json.loads(ubody), json.loads(ebody)
            assert u['code'] == e['code'], (path, req, ubody, ebody)
            if e['message'].startswith('etcdserver:'):   # JSON syntax errors are worded by Go's decoder
                assert u['message'] == e['message'], (path, req, ubody, ebody)


def test_etcd3gw(uetcd):
    c = Etcd3Client(host=uetcd.host, port=uetcd.port, api_path='/v3/')
    assert c.put('gw3/a', '1')
    assert c.get('gw3/a') == [b'1']
    assert c.create('gw3/new', 'v') is True
    assert c.create('gw3/new', 'again') is False
    assert c.replace('gw3/new', 'v', 'v2') is True
    assert c.replace('gw3/new', 'v', 'v3') is False
    assert c.get('gw3/new') == [b'v2']
    lease = c.lease(30)
    c.put('gw3/l', 'x', lease=lease)
    assert lease.keys() == [b'gw3/l']
    assert 0 < lease.ttl() <= 30
    assert lease.refresh() == 30
    assert [v for v, _ in c.get_prefix('gw3/')] == [b'1', b'x', b'v2']
    assert lease.revoke()
    assert c.get('gw3/l') == []
    assert c.delete('gw3/a') is True
    assert c.delete('gw3/a') is False
    assert c.status()['version'] >= '3.5.13'
    assert [m['name'] for m in c.members()] == ['default']


def watch_lines(srv, body, writes, n_lines):
    """POST /v3/watch with curl, do the writes, return the first n_lines JSON lines."""
    import time
    p = subprocess.Popen(['curl', '-s', '-N', '--max-time', '20', '-X', 'POST', 'http://%s/v3/watch' % srv.endpoint,
                          '-d', json.dumps(body)], stdout=subprocess.PIPE, text=True)
    lines = [p.stdout.readline()]               # the created line: the watch is in place
    for path, req in writes:
        post(srv, path, req)
    while len(lines) < n_lines:
        lines.append(p.stdout.readline())
    p.terminate()
    p.wait(10)
    return [json.loads(l) for l in lines]


def test_gateway_watch_matches_etcd(spawn):
    body = {'create_request': {'key': b64('w/'), 'range_end': b64('w0'), 'prev_kv': True}}
    writes = [('/v3/kv/put', {'key': b64('w/a'), 'value': b64('1')}),
              ('/v3/kv/put', {'key': b64('w/a'), 'value': b64('2')}),
              ('/v3/kv/deleterange', {'key': b64('w/a')})]
    out = {}
    for role in ('uetcd', 'etcd'):
        got = watch_lines(spawn(role), body, writes, 4)
        for line in got:
            line['result']['header'] = {k: v for k, v in line['result']['header'].items() if k == 'revision'}
        out[role] = got
    assert out['uetcd'] == out['etcd']


def test_etcd3gw_watch(uetcd):
    import threading
    import time
    c = Etcd3Client(host=uetcd.host, port=uetcd.port, api_path='/v3/')
    events, (it, cancel) = [], c.watch_prefix('gww/')
    t = threading.Thread(target=lambda: [events.append(e) for e in it], daemon=True)
    t.start()
    time.sleep(0.5)
    c.put('gww/a', '1')
    c.delete('gww/a')
    deadline = time.monotonic() + 10
    while len(events) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    cancel()
    assert [(e.get('type', 'PUT'), e['kv']['key'], e['kv'].get('value')) for e in events[:2]] == [
        ('PUT', b'gww/a', b'1'), ('DELETE', b'gww/a', None)]


def post_auth(srv, path, body, token=None):
    cmd = ['curl', '-s', '-w', '\n%{http_code}', '-X', 'POST', 'http://%s%s' % (srv.endpoint, path), '-d',
           json.dumps(body)]
    if token:
        cmd += ['-H', 'Authorization: ' + token]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=20)
    text, _, code = out.stdout.rpartition('\n')
    return int(code), text


def test_gateway_auth_matches_etcd(spawn):
    """/v3/auth/* and the Authorization header, the same requests to both servers."""
    outs = {}
    for role in ('uetcd', 'etcd'):
        srv = spawn(role)
        steps = []

        def step(path, body, token=None):
            code, text = post_auth(srv, path, body, token)
            d = normalize(text)
            if isinstance(d, dict):
                d.pop('token', None)
            steps.append((path, code, d))
            return text

        step('/v3/auth/user/add', {'name': 'root', 'password': 'pw'})
        step('/v3/auth/user/add', {'name': 'alice', 'password': 'apw'})
        step('/v3/auth/role/add', {'name': 'r1'})
        step('/v3/auth/role/grant', {'name': 'r1', 'perm': {'permType': 'READWRITE', 'key': b64('a/'),
                                                             'range_end': b64('a0')}})
        step('/v3/auth/user/grant', {'user': 'alice', 'role': 'r1'})
        step('/v3/auth/user/grant', {'user': 'root', 'role': 'root'})
        step('/v3/auth/enable', {})
        step('/v3/kv/put', {'key': b64('a/1'), 'value': b64('v')})
        step('/v3/auth/authenticate', {'name': 'alice', 'password': 'bad'})
        tok = json.loads(step('/v3/auth/authenticate', {'name': 'alice', 'password': 'apw'}))['token']
        root = json.loads(step('/v3/auth/authenticate', {'name': 'root', 'password': 'pw'}))['token']
        step('/v3/kv/put', {'key': b64('a/1'), 'value': b64('v')}, tok)
        step('/v3/kv/put', {'key': b64('b/1'), 'value': b64('v')}, tok)
        step('/v3/kv/range', {'key': b64('a/1')}, tok)
        step('/v3/kv/range', {'key': b64('a/1')}, 'not-a-token')
        step('/v3/auth/user/list', {}, tok)
        step('/v3/auth/user/list', {}, root)
        step('/v3/auth/role/get', {'role': 'r1'}, root)
        step('/v3/auth/user/get', {'name': 'alice'}, tok)
        step('/v3/auth/status', {}, root)
        for token, key in ((None, 'a/'), (tok, 'b/'), (tok, 'a/')):  # watch: refused as a cancel line
            cmd = ['curl', '-s', '-N', '-m', '2', 'http://%s/v3/watch' % srv.endpoint, '-d',
                   json.dumps({'create_request': {'key': b64(key)}})]
            if token:
                cmd += ['-H', 'Authorization: ' + token]
            first = subprocess.run(cmd, capture_output=True, text=True, timeout=20).stdout.split('\n')[0]
            d = json.loads(first)
            d['result'].pop('header', None)
            steps.append(('/v3/watch', key, d))
        step('/v3/auth/disable', {}, root)
        step('/v3/kv/range', {'key': b64('a/1')})
        outs[role] = steps
    for mine, ref in zip(outs['uetcd'], outs['etcd']):
        assert mine == ref, 'uetcd %r\netcd   %r' % (mine, ref)
