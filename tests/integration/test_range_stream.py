"""KV.RangeStream, etcd 3.7's server-streaming Range (issue 13, section 2).

etcd 3.7 (KEP-5966) adds `rpc RangeStream(RangeRequest) returns (stream RangeStreamResponse)`
with `message RangeStreamResponse { RangeResponse range_response = 1; }`: the answer of a
Range in chunks whose merge (protobuf's MergeFrom, in stream order) is the unary answer.
No packaged client speaks it (python3-etcd3 knows etcd 3.4's protos), so this file has its
own: a generic gRPC call with raw-bytes deserialisation, each chunk's field 1 decoded as a
RangeResponse and merged. Against a 100K-key keyspace every option is compared with Range
on the same server, errors too; a slow raw HTTP/2 reader shows that the server holds about
a chunk per stream, not the answer.

Timing never decides a result: pacing sleeps only slow the reader down; every loop is
bounded in rounds and in time.
"""
import concurrent.futures
import struct
import time

import grpc
import pytest

import h2raw
from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc

PREFIX = b'rs/'
END = b'rs0'
NKEYS = 100_000
PER_TXN = 125               # under --max-txn-ops (128)
STREAM_PATH = '/etcdserverpb.KV/RangeStream'
BIG = 1 << 30


def key_of(i):
    return PREFIX + b'%06d' % i


def value_of(i):
    return b'v%06d-' % i + b'x' * (i % 50)


def big_channel(srv):
    return grpc.insecure_channel(srv.endpoint, options=[('grpc.max_receive_message_length', BIG)])


def read_varint(b, i):
    shift = n = 0
    while True:
        c = b[i]
        i += 1
        n |= (c & 0x7f) << shift
        shift += 7
        if not c & 0x80:
            return n, i


def chunk_range_response(raw):
    """The RangeResponse in one RangeStreamResponse (field 1); other fields are an error."""
    out = rpc_pb2.RangeResponse()
    i = 0
    while i < len(raw):
        tag, i = read_varint(raw, i)
        assert tag == 0x0a, 'unexpected field tag %#x in a RangeStreamResponse' % tag
        n, i = read_varint(raw, i)
        out.MergeFromString(raw[i:i + n])
        i += n
    return out


def range_stream(ch, req, timeout=120):
    """Calls RangeStream; returns (merged RangeResponse, list of chunk RangeResponses)."""
    call = ch.unary_stream(STREAM_PATH, request_serializer=lambda m: m.SerializeToString(),
                           response_deserializer=lambda b: b)
    chunks = [chunk_range_response(raw) for raw in call(req, timeout=timeout)]
    merged = rpc_pb2.RangeResponse()
    for c in chunks:
        merged.MergeFrom(c)
    return merged, chunks


_filled = {}


def filled(srv):
    """100K small keys, once per server (4 writers); returns the revision after them."""
    if _filled.get(id(srv), (None,))[0] == srv.proc.pid:
        return _filled[id(srv)][1]
    with srv.channel() as ch:
        kv = rpc_pb2_grpc.KVStub(ch)

        def txn(t):
            ops = [rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key_of(i), value=value_of(i)))
                   for i in range(t * PER_TXN, (t + 1) * PER_TXN)]
            kv.Txn(rpc_pb2.TxnRequest(success=ops), timeout=30)

        with concurrent.futures.ThreadPoolExecutor(4) as ex:
            list(ex.map(txn, range(NKEYS // PER_TXN)))
        # some keys overwritten and some deleted, so versions and filters vary
        for i in range(0, NKEYS, 1000):
            kv.Put(rpc_pb2.PutRequest(key=key_of(i), value=b'again'), timeout=10)
        kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=key_of(500), range_end=key_of(600)), timeout=10)
        rev = kv.Range(rpc_pb2.RangeRequest(key=b'x'), timeout=10).header.revision
    _filled[id(srv)] = (srv.proc.pid, rev)
    return rev


def test_rangestream_equals_range_for_every_option(uetcd):
    rev = filled(uetcd)
    mid = rev - 400     # inside the overwrite phase: filters then cut the keyspace
    base = dict(key=PREFIX, range_end=END)
    cases = [
        {}, dict(limit=1), dict(limit=777), dict(limit=NKEYS - 100), dict(limit=NKEYS * 2),
        dict(revision=mid), dict(revision=mid, limit=5000), dict(revision=rev - 50_000),
        dict(keys_only=True), dict(keys_only=True, limit=3), dict(count_only=True),
        dict(count_only=True, limit=10), dict(serializable=True),
        dict(min_mod_revision=mid), dict(max_mod_revision=mid, limit=4000),
        dict(min_create_revision=rev - 20_000), dict(max_create_revision=rev - 90_000),
        dict(min_mod_revision=mid, max_create_revision=rev - 60_000, limit=20),
        dict(min_mod_revision=rev + 1), dict(keys_only=True, min_create_revision=rev - 30_000),
        dict(sort_order=rpc_pb2.RangeRequest.ASCEND),               # key ascending is the default order
        dict(key=key_of(12), range_end=b''),                         # one key
        dict(key=key_of(550), range_end=b''),                        # a deleted key
        dict(key=b'nope/', range_end=b'nope0'),                      # empty range
        dict(key=key_of(99_000), range_end=b'\0'),                   # every key from there on
        dict(key=b'\0', range_end=b'\0', limit=50),                  # every key
        dict(key=key_of(123), range_end=key_of(45_678)),
    ]
    with big_channel(uetcd) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        for kw in cases:
            req = rpc_pb2.RangeRequest(**dict(base, **kw))
            want = kv.Range(req, timeout=120)
            got, chunks = range_stream(ch, req)
            assert got == want, 'RangeStream differs from Range for %r (count %d vs %d, %d vs %d kvs)' % (
                kw, got.count, want.count, len(got.kvs), len(want.kvs))
            # etcd 3.7's layout: kvs only before the last chunk; header, count, more in it
            assert chunks and chunks[-1].HasField('header'), kw
            for c in chunks[:-1]:
                assert not c.HasField('header') and c.count == 0 and not c.more and c.kvs, kw
        big, chunks = range_stream(ch, rpc_pb2.RangeRequest(**base))
        assert len(big.kvs) == NKEYS - 100 and len(chunks) > 10
        assert [k.key for k in big.kvs[:3]] == [key_of(0), key_of(1), key_of(2)]


def test_rangestream_sorted_is_unimplemented_as_in_etcd_3_7(uetcd):
    """KEP-5966: a sort other than by key ascending is UNIMPLEMENTED (clients use Range)."""
    filled(uetcd)
    with big_channel(uetcd) as ch:
        for kw in (dict(sort_order=rpc_pb2.RangeRequest.DESCEND),
                   dict(sort_target=rpc_pb2.RangeRequest.MOD),
                   dict(sort_target=rpc_pb2.RangeRequest.VALUE, sort_order=rpc_pb2.RangeRequest.ASCEND)):
            with pytest.raises(grpc.RpcError) as e:
                range_stream(ch, rpc_pb2.RangeRequest(key=PREFIX, range_end=END, limit=5, **kw))
            assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED, kw


def errors_of(ch, req):
    kv = rpc_pb2_grpc.KVStub(ch)
    out = []
    for f in (lambda: kv.Range(req, timeout=30), lambda: range_stream(ch, req, timeout=30)):
        try:
            f()
            out.append(None)
        except grpc.RpcError as e:
            out.append((e.code(), e.details()))
    return out


def test_rangestream_errors_are_ranges(spawn):
    """A compacted revision, a future one, a bad request: the same status and message."""
    srv = spawn('uetcd')
    with big_channel(srv) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        for i in range(20):
            kv.Put(rpc_pb2.PutRequest(key=b'e/%d' % i, value=b'v'), timeout=10)
        rev = kv.Range(rpc_pb2.RangeRequest(key=b'e/'), timeout=10).header.revision
        kv.Compact(rpc_pb2.CompactionRequest(revision=rev - 5), timeout=10)
        for req, code in ((rpc_pb2.RangeRequest(key=b'e/', range_end=b'e0', revision=rev - 10),
                           grpc.StatusCode.OUT_OF_RANGE),
                          (rpc_pb2.RangeRequest(key=b'e/', range_end=b'e0', revision=rev + 10),
                           grpc.StatusCode.OUT_OF_RANGE),
                          (rpc_pb2.RangeRequest(key=b'', range_end=b'e0'), grpc.StatusCode.INVALID_ARGUMENT)):
            a, b = errors_of(ch, req)
            assert a is not None and a[0] == code, a
            assert a == b, (req, a, b)
        ok = rpc_pb2.RangeRequest(key=b'e/', range_end=b'e0', revision=rev - 5)
        got, _ = range_stream(ch, ok)
        assert got == kv.Range(ok, timeout=10)


def test_rangestream_reads_one_revision_while_writes_go_on(uetcd):
    """Chunks read after the call began see the keyspace as it was then."""
    rev = filled(uetcd)
    req = rpc_pb2.RangeRequest(key=PREFIX, range_end=END)
    with big_channel(uetcd) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        before = kv.Range(rpc_pb2.RangeRequest(key=PREFIX, range_end=END, revision=rev), timeout=120)
        call = ch.unary_stream(STREAM_PATH, request_serializer=lambda m: m.SerializeToString(),
                               response_deserializer=lambda b: b)
        it = iter(call(req, timeout=120))
        merged = rpc_pb2.RangeResponse()
        merged.MergeFrom(chunk_range_response(next(it)))
        # the writes below land while most of the answer is still to be read
        kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=key_of(90_000), range_end=key_of(90_010)), timeout=10)
        kv.Put(rpc_pb2.PutRequest(key=key_of(99_999), value=b'changed'), timeout=10)
        kv.Put(rpc_pb2.PutRequest(key=PREFIX + b'zzz', value=b'new'), timeout=10)
        for raw in it:
            merged.MergeFrom(chunk_range_response(raw))
        before.header.revision = merged.header.revision
        assert merged.header.revision == rev
        assert merged == before
    _filled.pop(id(uetcd), None)   # the keyspace changed: fill again for later tests


def rss_kb(pid):
    with open('/proc/%d/status' % pid) as f:
        for line in f:
            if line.startswith('VmRSS:'):
                return int(line.split()[1])
    raise AssertionError('no VmRSS')


def test_slow_rangestream_reader_does_not_grow_server_memory(spawn):
    """40 MB of values read through a 64 KiB window, slowly: the server holds a chunk, not
    the answer (its RSS stays within 12 MiB of where it was), and the chunks are exact."""
    srv = spawn('uetcd')
    n, vlen = 400, 100_000
    with srv.channel() as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        for t in range(n // 10):
            ops = [rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(
                key=b'big/%04d' % i, value=bytes([65 + i % 26]) * vlen)) for i in range(t * 10, t * 10 + 10)]
            kv.Txn(rpc_pb2.TxnRequest(success=ops), timeout=30)
    time.sleep(0.5)
    base = rss_kb(srv.proc.pid)
    conn = h2raw.Conn(srv.host, srv.port, auto_window=False)
    peak = base
    data = bytearray()
    try:
        conn.request(1, STREAM_PATH.encode(),
                     rpc_pb2.RangeRequest(key=b'big/', range_end=b'big0').SerializeToString())
        granted, ended, trailers = 0, False, None
        deadline = time.monotonic() + 120
        for _ in range(200_000):
            if time.monotonic() > deadline:
                break
            f = conn.recv_frame(timeout=10.0)
            assert f is not None, 'no frame after %d bytes' % len(data)
            ftype, flags, sid, payload = f
            if sid != 1:
                continue
            if ftype == h2raw.DATA:
                data += h2raw.strip_padding(flags, payload)
                granted += len(payload)
                if granted >= 32 << 10:
                    conn.send(h2raw.window_update(0, granted) + h2raw.window_update(1, granted))
                    granted = 0
                    time.sleep(0.002)
                    peak = max(peak, rss_kb(srv.proc.pid))
            elif ftype == h2raw.HEADERS:
                trailers = dict((a.decode(), b.decode()) for a, b in conn.decoder.decode(payload))
            elif ftype == h2raw.RST_STREAM:
                raise AssertionError('stream reset: %s after %d bytes' % (h2raw.error_name(struct.unpack('>I', payload)[0]), len(data)))
            if flags & h2raw.END_STREAM:
                ended = True
                break
        assert ended, 'the answer did not end in time (%d bytes)' % len(data)
        assert trailers is not None and trailers.get('grpc-status') == '0', trailers
    finally:
        conn.close()
    merged = rpc_pb2.RangeResponse()
    msgs = h2raw.grpc_messages(bytes(data))
    for m in msgs:
        merged.MergeFrom(chunk_range_response(m))
    assert len(msgs) > 100
    assert [k.key for k in merged.kvs] == [b'big/%04d' % i for i in range(n)]
    assert all(k.value == bytes([65 + i % 26]) * vlen for i, k in enumerate(merged.kvs))
    assert merged.count == n and not merged.more
    assert peak - base < 12 * 1024, 'server RSS grew by %d KiB while a 40 MB answer was read' % (peak - base)


def test_rangestream_auth_is_ranges(spawn):
    """With auth on, RangeStream is checked as Range: same grants, same refusals."""
    from test_auth import grpc_token, setup_alice
    srv = spawn('uetcd')
    with srv.channel() as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        for k in (b'/a/1', b'/a/2', b'/b/1'):
            kv.Put(rpc_pb2.PutRequest(key=k, value=b'v'), timeout=10)
    setup_alice('etcdctl35', srv.endpoint)
    tok = grpc_token(srv.endpoint, 'alice', 'apw')
    with big_channel(srv) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        call = ch.unary_stream(STREAM_PATH, request_serializer=lambda m: m.SerializeToString(),
                               response_deserializer=lambda b: b)
        for req in (rpc_pb2.RangeRequest(key=b'/a/', range_end=b'/a0'),      # granted
                    rpc_pb2.RangeRequest(key=b'/b/', range_end=b'/b0'),      # not granted
                    rpc_pb2.RangeRequest(key=b'/', range_end=b'0')):         # wider than the grant
            for md in ([('token', tok)], []):
                outs = []
                for f in (lambda: kv.Range(req, metadata=md, timeout=10),
                          lambda: [chunk_range_response(r) for r in call(req, metadata=md, timeout=10)]):
                    try:
                        r = f()
                        if isinstance(r, list):
                            m = rpc_pb2.RangeResponse()
                            for c in r:
                                m.MergeFrom(c)
                            r = m
                        outs.append(r)
                    except grpc.RpcError as e:
                        outs.append((e.code(), e.details()))
                assert outs[0] == outs[1], (req, md, outs)
                assert isinstance(outs[0], tuple) == (req.key != b'/a/' or not md), outs[0]


def test_compaction_past_a_draining_rangestream_resets_it(spawn):
    """Each chunk reads at the stream's revision; once a compaction passes it the next
    chunk cannot be read and the stream is reset with REFUSED_STREAM (clients see
    UNAVAILABLE and retry; etcd 3.7 ends it with "required revision has been compacted",
    which uetcd cannot send from inside the body). The connection goes on."""
    srv = spawn('uetcd')
    with srv.channel() as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        for t in range(160):
            ops = [rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=key_of(i), value=value_of(i)))
                   for i in range(t * PER_TXN, (t + 1) * PER_TXN)]
            kv.Txn(rpc_pb2.TxnRequest(success=ops), timeout=30)
    conn = h2raw.Conn(srv.host, srv.port, auto_window=False)
    try:
        conn.request(1, STREAM_PATH.encode(),
                     rpc_pb2.RangeRequest(key=PREFIX, range_end=END).SerializeToString())
        got = 0
        for _ in range(1000):
            f = conn.recv_frame(timeout=10.0)
            assert f is not None
            if f[0] == h2raw.DATA and f[2] == 1:
                got += len(f[3])
                if got >= 65535 - 16384:
                    break
        with srv.channel() as ch:
            kv = rpc_pb2_grpc.KVStub(ch)
            rev = kv.Put(rpc_pb2.PutRequest(key=b'other', value=b'v'), timeout=10).header.revision
            kv.Compact(rpc_pb2.CompactionRequest(revision=rev), timeout=30)
        conn.send(h2raw.window_update(0, 64 << 20) + h2raw.window_update(1, 64 << 20))
        rst = None
        deadline = time.monotonic() + 60
        while rst is None and time.monotonic() < deadline:
            f = conn.recv_frame(timeout=10.0)
            assert f is not None, 'no frame: eof=%s' % conn.eof
            assert not (f[2] == 1 and f[1] & h2raw.END_STREAM), 'the answer ended normally'
            if f[0] == h2raw.RST_STREAM and f[2] == 1:
                rst = h2raw.error_name(struct.unpack('>I', f[3])[0])
        assert rst == 'REFUSED_STREAM'
        conn.request(3, STREAM_PATH.encode(), rpc_pb2.RangeRequest(key=key_of(3)).SerializeToString())
        r = conn.response(3, timeout=20)
        assert r['trailers'] and r['trailers'].get('grpc-status') == '0', r
        (msg,) = h2raw.grpc_messages(r['data'])
        assert [k.key for k in chunk_range_response(msg).kvs] == [key_of(3)]
    finally:
        conn.close()
