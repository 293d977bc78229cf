"""Small helpers shared by the KV integration tests (raw gRPC stubs, normalization)."""
import base64
import re

import grpc

from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc

ALL = b'\0'          # key=\0, range_end=\0: every key

# etcd's error texts (server/etcdserver/api/v3rpc/rpctypes/error.go)
E_EMPTY_KEY = 'etcdserver: key is not provided'
E_KEY_NOT_FOUND = 'etcdserver: key not found'
E_VALUE_PROVIDED = 'etcdserver: value is provided'
E_LEASE_PROVIDED = 'etcdserver: lease is provided'
E_TOO_MANY_OPS = 'etcdserver: too many operations in txn request'
E_DUPLICATE_KEY = 'etcdserver: duplicate key given in txn request'
E_COMPACTED = 'etcdserver: mvcc: required revision has been compacted'
E_FUTURE_REV = 'etcdserver: mvcc: required revision is a future revision'
E_LEASE_NOT_FOUND = 'etcdserver: requested lease not found'
E_TOO_LARGE = 'etcdserver: request is too large'
E_INVALID_SORT = 'etcdserver: invalid sort option'          # etcd 3.6


class KV:
    """Raw KV stub bound to one server, with a bounded per-call timeout."""

    def __init__(self, srv, timeout=10.0):
        self.srv = srv
        self.ch = srv.channel()
        self.stub = rpc_pb2_grpc.KVStub(self.ch)
        self.timeout = timeout

    def close(self):
        self.ch.close()

    def range(self, key, range_end=b'', **kw):
        return self.stub.Range(rpc_pb2.RangeRequest(key=key, range_end=range_end, **kw),
                               timeout=self.timeout)

    def put(self, key, value=b'', **kw):
        return self.stub.Put(rpc_pb2.PutRequest(key=key, value=value, **kw), timeout=self.timeout)

    def delete(self, key, range_end=b'', **kw):
        return self.stub.DeleteRange(rpc_pb2.DeleteRangeRequest(key=key, range_end=range_end, **kw),
                                     timeout=self.timeout)

    def txn(self, compare=(), success=(), failure=()):
        return self.stub.Txn(rpc_pb2.TxnRequest(compare=list(compare), success=list(success),
                                                failure=list(failure)), timeout=self.timeout)

    def compact(self, revision, physical=False):
        return self.stub.Compact(rpc_pb2.CompactionRequest(revision=revision, physical=physical),
                                 timeout=self.timeout)

    def wipe(self):
        """Delete every key; returns the revision afterwards (the test's base revision)."""
        return self.delete(ALL, ALL).header.revision

    def rev(self):
        return self.range(b'uetcd-it-rev-probe').header.revision

    def error(self, method, request):
        """Call and expect an error: returns (StatusCode, details)."""
        try:
            resp = getattr(self.stub, method)(request, timeout=self.timeout)
        except grpc.RpcError as e:
            return e.code(), e.details()
        raise AssertionError('%s(%s) succeeded, expected an error; response: %s'
                             % (method, short(request), short(resp)))


def short(msg, limit=600):
    s = str(msg).replace('\n', ' ')
    return s if len(s) <= limit else s[:limit] + '...(%d chars)' % len(s)


# ---- request builders ----------------------------------------------------------------
def op_range(key, range_end=b'', **kw):
    return rpc_pb2.RequestOp(request_range=rpc_pb2.RangeRequest(key=key, range_end=range_end, **kw))


def op_put(key, value=b'', **kw):
    return rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key, value=value, **kw))


def op_del(key, range_end=b'', **kw):
    return rpc_pb2.RequestOp(request_delete_range=rpc_pb2.DeleteRangeRequest(
        key=key, range_end=range_end, **kw))


def op_txn(compare=(), success=(), failure=()):
    return rpc_pb2.RequestOp(request_txn=rpc_pb2.TxnRequest(
        compare=list(compare), success=list(success), failure=list(failure)))


_TARGET_FIELD = {rpc_pb2.Compare.VERSION: 'version', rpc_pb2.Compare.CREATE: 'create_revision',
                 rpc_pb2.Compare.MOD: 'mod_revision', rpc_pb2.Compare.VALUE: 'value',
                 rpc_pb2.Compare.LEASE: 'lease'}


def cmp(key, target, result, value, range_end=b''):
    """cmp(b'k', 'VALUE', '=', b'v'); target VERSION|CREATE|MOD|VALUE|LEASE, result = != < >."""
    t = rpc_pb2.Compare.CompareTarget.Value(target)
    r = {'=': rpc_pb2.Compare.EQUAL, '!=': rpc_pb2.Compare.NOT_EQUAL,
         '<': rpc_pb2.Compare.LESS, '>': rpc_pb2.Compare.GREATER}[result]
    c = rpc_pb2.Compare(key=key, target=t, result=r, range_end=range_end)
    setattr(c, _TARGET_FIELD[t], value)
    return c


def prefix_end(prefix):
    b = bytearray(prefix)
    while b and b[-1] == 0xff:
        b.pop()
    if not b:
        return b'\0'
    b[-1] += 1
    return bytes(b)


# ---- normalization --------------------------------------------------------------------
def strip_header(msg):
    """Clear cluster_id, member_id and raft_term in msg and every nested header (in place)."""
    if msg is None:
        return msg
    for fd, val in msg.ListFields():
        if fd.name == 'header':
            val.cluster_id = 0
            val.member_id = 0
            val.raft_term = 0
        elif fd.message_type is not None:
            if fd.label == fd.LABEL_REPEATED:
                for v in val:
                    strip_header(v)
            else:
                strip_header(val)
    return msg


def kvs(resp):
    """[(key, value, create, mod, version, lease)] of a RangeResponse (or prev_kvs list)."""
    items = resp.kvs if hasattr(resp, 'kvs') else resp
    return [(k.key, k.value, k.create_revision, k.mod_revision, k.version, k.lease) for k in items]


_CAMEL = re.compile(r'(?<!^)(?=[A-Z])')


def norm_json(obj):
    """etcdctl -w json output -> comparable: drop ids/term, base64-decode key/value,
    snake_case the oneof names (3.4 prints ResponseRange, 3.5 response_range)."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            if k in ('cluster_id', 'member_id', 'raft_term'):
                continue
            if k in ('key', 'value') and isinstance(v, str):
                v = base64.b64decode(v).decode('utf-8', 'backslashreplace')
            elif k.startswith('Response') and k != 'Response':
                k = _CAMEL.sub('_', k).lower()
            out[k] = norm_json(v)
        return out
    if isinstance(obj, list):
        return [norm_json(v) for v in obj]
    return obj


def assert_msg(got, want, what=''):
    """Assert two protobuf messages are equal (after strip_header of got), with a unified
    diff of their text forms on failure."""
    import difflib
    strip_header(got)
    if got == want:
        return
    diff = difflib.unified_diff(str(want).splitlines(), str(got).splitlines(),
                                'expected', 'got', lineterm='', n=4)
    raise AssertionError('%s response differs:\n%s' % (what, '\n'.join(diff)))
