"""Deeply nested requests (issue 12, item 1), side by side with etcd 3.5.16.

One Txn nested 5000 levels deep (success[0].request_txn repeated, about 34 KB, no token
needed even with auth on) used to kill uetcd with SIGSEGV: protobuf-c's recursive unpack
overflowed a reactor's stack. etcd decodes it and answers INVALID_ARGUMENT "etcdserver: too
many operations in txn request" (each nested txn spends one op of --max-txn-ops, 128: 129
levels pass, 130 do not). Here: that exact answer from uetcd with auth off and on, the
server still up and answering another client, and the same answer as etcd for depths from
1 to 200000 levels (1.6 MB), for damaged deep messages and for a deep txn that also has an
earlier error (etcd reports the earlier one), over gRPC and over the JSON gateway.
"""
import json
import urllib.error
import urllib.request

import grpc
import pytest

from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc

TOO_MANY = 'etcdserver: too many operations in txn request'
UNMARSHAL = 'grpc: error unmarshalling request'


def varint(n):
    out = bytearray()
    while n >= 0x80:
        out.append((n & 0x7f) | 0x80)
        n >>= 7
    out.append(n)
    return bytes(out)


def ld(field, payload):
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def deep_txn(levels, inner=b''):
    """`levels` nested TxnRequests (success[0].request_txn), `inner` as the innermost
    TxnRequest's bytes; built from the inside out in linear time."""
    n = len(inner)
    pre = []
    for _ in range(levels - 1):
        op = varint(0x22) + varint(n)           # RequestOp.request_txn
        n += len(op)
        txn = varint(0x12) + varint(n)          # TxnRequest.success
        n += len(txn)
        pre.append(txn + op)
    return b''.join(reversed(pre)) + inner


def raw_txn(srv, body, metadata=None):
    """Sends raw TxnRequest bytes; (status name, details) or ('OK', response bytes)."""
    with srv.channel() as ch:
        call = ch.unary_unary('/etcdserverpb.KV/Txn', request_serializer=lambda b: b,
                              response_deserializer=lambda b: b)
        try:
            return ('OK', call(body, timeout=30, metadata=metadata))
        except grpc.RpcError as e:
            return (e.code().name, e.details())


def others_answered(srv):
    with srv.channel() as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        kv.Put(rpc_pb2.PutRequest(key=b'deep/probe', value=b'v'), timeout=10)
        r = kv.Range(rpc_pb2.RangeRequest(key=b'deep/probe'), timeout=10)
        assert [kv.value for kv in r.kvs] == [b'v']


def enable_auth(srv):
    with srv.channel() as ch:
        a = rpc_pb2_grpc.AuthStub(ch)
        a.UserAdd(rpc_pb2.AuthUserAddRequest(name='root', password='rootpw'), timeout=30)
        a.UserGrantRole(rpc_pb2.AuthUserGrantRoleRequest(user='root', role='root'), timeout=30)
        a.AuthEnable(rpc_pb2.AuthEnableRequest(), timeout=30)
        tok = a.Authenticate(rpc_pb2.AuthenticateRequest(name='root', password='rootpw'), timeout=60).token
    return [('token', tok)]


def test_txn_nested_5000_deep_is_refused_and_server_stays_up(uetcd):
    body = deep_txn(5000)
    assert 34000 < len(body) < 35000
    for _ in range(3):
        assert raw_txn(uetcd, body) == ('INVALID_ARGUMENT', TOO_MANY)
        assert uetcd.alive()
    others_answered(uetcd)


@pytest.mark.parametrize('role', ['uetcd', 'etcd'])
def test_txn_nested_5000_deep_with_auth_on_needs_no_token(spawn, role):
    srv = spawn(role)
    md = enable_auth(srv)
    assert raw_txn(srv, deep_txn(5000)) == ('INVALID_ARGUMENT', TOO_MANY)
    assert raw_txn(srv, deep_txn(5000), md) == ('INVALID_ARGUMENT', TOO_MANY)
    assert srv.alive()
    # a shallow txn that reads a key is still refused without a token, runs with one
    shallow = ld(2, ld(1, ld(1, b'deep/x')))
    assert raw_txn(srv, shallow)[0] != 'OK'
    assert raw_txn(srv, shallow, md)[0] == 'OK'


def deep_cases():
    return [
        ('levels-%d' % n, deep_txn(n)) for n in (1, 2, 50, 128, 129, 130, 131, 200, 1000, 5000)
    ] + [
        ('levels-200000', deep_txn(200000)),                      # 1.6 MB, under the limit
        ('malformed-at-bottom-50', deep_txn(50, b'\x08')),
        ('malformed-at-bottom-5000', deep_txn(5000, b'\x08')),
        ('wrong-wire-type-at-bottom-5000', deep_txn(5000, b'\x10\x01')),
        ('truncated-5000', deep_txn(5000)[:-3]),
        ('unknown-field-at-bottom-5000', deep_txn(5000, b'\x7a\x01\x00')),
        ('empty-compare-key-then-deep', ld(1, b'') + deep_txn(5000)),
        ('empty-put-key-then-deep', ld(2, ld(2, b'')) + deep_txn(5000)),
        ('deep-then-empty-put-key', deep_txn(5000) + ld(2, ld(2, b''))),
        ('deep-in-failure', ld(3, ld(4, deep_txn(5000)))),
        ('put-at-bottom-129', deep_txn(129, ld(2, ld(2, ld(1, b'deep/k'))))),
    ]


def _norm(outcome):
    code, detail = outcome
    if code == 'OK':
        return (code, None)
    if code == 'INTERNAL' and detail.startswith(UNMARSHAL):
        return (code, UNMARSHAL)   # etcd appends gogo-protobuf's reason
    return outcome


@pytest.mark.parametrize('name,body', deep_cases(), ids=[c[0] for c in deep_cases()])
def test_deep_txn_answers_as_etcd(uetcd, etcd_ref, name, body):
    got = raw_txn(uetcd, body)
    want = raw_txn(etcd_ref, body)
    assert _norm(got) == _norm(want), name
    assert uetcd.alive()


def deep_json(levels):
    s = '{}'
    for _ in range(levels - 1):
        s = '{"success":[{"request_txn":' + s + '}]}'
    return s


def post(srv, path, body):
    req = urllib.request.Request('http://%s%s' % (srv.endpoint, path), data=body.encode(),
                                 method='POST')
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


def _json_outcome(status, obj):
    if status == 200:
        return (200, obj.get('succeeded'))
    return (status, obj.get('code'), obj.get('message'))


@pytest.mark.parametrize('levels', [1, 2, 21, 22, 50, 129, 130, 200, 1000, 3334, 3335, 5000])
def test_deep_txn_over_the_gateway_answers_as_etcd(uetcd, etcd_ref, levels):
    body = deep_json(levels)
    got = _json_outcome(*post(uetcd, '/v3/kv/txn', body))
    want = _json_outcome(*post(etcd_ref, '/v3/kv/txn', body))
    assert got == want
    assert uetcd.alive()


@pytest.mark.parametrize('depth', [100, 9999, 10000, 100000])
def test_deep_json_in_unknown_field_answers_as_etcd(uetcd, etcd_ref, depth):
    body = '{"zz":' + '[' * depth + ']' * depth + '}'
    got = _json_outcome(*post(uetcd, '/v3/kv/txn', body))
    want = _json_outcome(*post(etcd_ref, '/v3/kv/txn', body))
    assert got == want
    assert uetcd.alive()


def test_deep_txn_over_the_gateway_with_auth_on_answers_as_etcd(spawn):
    """etcd's gateway calls its gRPC server, so the txn checks come before auth: a deep txn
    without a token gets "too many operations", not an auth error."""
    got = {}
    for role in ('uetcd', 'etcd'):
        srv = spawn(role)
        enable_auth(srv)
        got[role] = [_json_outcome(*post(srv, '/v3/kv/txn', deep_json(n))) for n in (130, 200, 5000)]
        assert srv.alive()
    assert got['uetcd'] == got['etcd']
    assert got['uetcd'][0] == (400, 3, TOO_MANY)


def test_floods_of_dead_fields_answer_as_etcd(uetcd, etcd_ref):
    """A Put whose key is sent 100000 times (the last one counts) and requests padded with
    100000 unknown fields: protobuf-c kept 30-60 bytes per field (a queued Put held 20x its
    size); merged first, they answer as etcd does."""
    put = b''.join(ld(1, b'deep/flood%d' % (i % 10)) for i in range(100000)) + ld(2, b'v')
    unknown = b'\x78\x00' * 100000
    for srv in (uetcd, etcd_ref):
        with srv.channel() as ch:
            call = lambda m, b: ch.unary_unary(m, request_serializer=lambda x: x,
                                               response_deserializer=lambda x: x)(b, timeout=30)
            call('/etcdserverpb.KV/Put', put)
            r = rpc_pb2.RangeResponse.FromString(
                call('/etcdserverpb.KV/Range', ld(1, b'deep/flood') + ld(2, b'deep/flood~') + unknown))
            assert [(kv.key, kv.value) for kv in r.kvs] == [(b'deep/flood9', b'v')], srv.name
            h = rpc_pb2.HashKVResponse.FromString(call('/etcdserverpb.Maintenance/HashKV', unknown))
            assert h.header.revision > 0
            # a watch created by a request padded the same way still delivers
            w = rpc_pb2_grpc.WatchStub(ch)
            create = rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(
                key=b'deep/flood9')).SerializeToString() + unknown
            it = w.Watch(iter([rpc_pb2.WatchRequest.FromString(create)]), timeout=10)
            assert next(it).created
    assert uetcd.alive()
