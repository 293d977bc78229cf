"""Damage, a full disk and compaction storms against the real server (issue 12, items 7, 8, 11).

- item 7: a newest log segment cut short (a preallocated file no crash can shorten) or
  deleted is damage: start-up refuses naming the file and `uetcd-check` exits 1; before,
  the first was "repaired" as a torn tail and the second rolled back to the checkpoint,
  both losing acknowledged writes without a word.
- item 8: a full disk (a tmpfs of limited size) raises NOSPACE: writes that add data get
  `etcdserver: mvcc: database space exceeded`, reads, watches and deletes go on, nothing
  acknowledged is lost, and writes come back by themselves once space is freed.
- item 11: with a client compacting every 50 ms, every checkpoint completes (none is
  "overtaken by a compaction"), so the log stays short and start-up loads a recent one.
"""
import os
import shutil
import subprocess
import tempfile
import threading
import time

import grpc
import pytest

from conftest import uetcd_bin
from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc
from test_crash import Node

CHECK = os.path.join(os.path.dirname(uetcd_bin()), 'uetcd-check')


def channel(endpoint):
    return grpc.insecure_channel(endpoint, options=[('grpc.max_receive_message_length', 64 << 20),
                                                    ('grpc.max_send_message_length', 64 << 20)])


def put_many(kv, prefix, n, value, per_txn=100):
    """n keys prefix/000000.. in txns of per_txn puts; returns the keys."""
    keys = []
    for start in range(0, n, per_txn):
        ops = []
        for i in range(start, min(n, start + per_txn)):
            k = ('%s/%06d' % (prefix, i)).encode()
            keys.append(k)
            ops.append(rpc_pb2.RequestOp(request_put=rpc_pb2.PutRequest(key=k, value=value)))
        kv.Txn(rpc_pb2.TxnRequest(success=ops), timeout=30)
    return keys


def count_prefix(kv, prefix):
    return kv.Range(rpc_pb2.RangeRequest(key=prefix, range_end=prefix[:-1] + bytes([prefix[-1] + 1]),
                                         count_only=True), timeout=30).count


def segments(node):
    d = os.path.join(node.data, 'log')
    return sorted(f for f in os.listdir(d) if f.endswith('.seg'))


def start_must_fail(node):
    """Runs the server on node's data dir and expects it to exit (bounded); returns its output."""
    url = 'http://127.0.0.1:1'
    env = {k: v for k, v in os.environ.items() if not k.startswith('ETCD')}
    try:
        r = subprocess.run([uetcd_bin(), '--data-dir', node.data, '--listen-client-urls', 'http://127.0.0.1:0',
                            '--advertise-client-urls', url], capture_output=True, text=True, env=env, timeout=30)
    except subprocess.TimeoutExpired:
        pytest.fail('the server started on a damaged data dir (still running after 30 s)')
    assert r.returncode != 0
    return r.stdout + r.stderr


def check(node):
    return subprocess.run([CHECK, node.data], capture_output=True, text=True, timeout=120)


@pytest.fixture
def node():
    n = Node()
    yield n
    n.cleanup()


def test_truncated_newest_segment_refuses_start(node):
    node.start()
    with channel(node.endpoint) as ch:
        kv = rpc_pb2_grpc.KVStub(ch)
        put_many(kv, '/dmg/k', 20000, b'v' * 20)
        assert count_prefix(kv, b'/dmg/k/') == 20000
    node.kill()
    segs = segments(node)
    newest = os.path.join(node.data, 'log', segs[-1])
    size = os.path.getsize(newest)
    assert size == 64 << 20, 'a preallocated segment'
    os.truncate(newest, 1 << 20)  # what no crash does: the 20,000 keys' records are cut off
    out = start_must_fail(node)
    assert segs[-1] in out and 'preallocated' in out, out[-2000:]
    r = check(node)
    assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
    assert segs[-1] in r.stderr


def test_deleted_newest_segment_refuses_start():
    """With checkpoints: the newest segment (after the last checkpoint's roll) deleted used to
    start an empty log there, rolling back to the checkpoint."""
    n = Node(extra=['--snapshot-count', '200', '--checkpoint-log-bytes', '0'])
    try:
        n.start()
        with channel(n.endpoint) as ch:
            kv = rpc_pb2_grpc.KVStub(ch)
            snap = os.path.join(n.data, 'snap')
            deadline = time.monotonic() + 30
            i = 0
            while time.monotonic() < deadline and i < 5000:
                kv.Put(rpc_pb2.PutRequest(key=b'/del/k%04d' % i, value=b'x'), timeout=30)
                i += 1
                if i >= 300 and os.path.isdir(snap) and any(f.endswith('.ckpt') for f in os.listdir(snap)):
                    break
            assert any(f.endswith('.ckpt') for f in os.listdir(snap)), 'a checkpoint was taken'
            for j in range(i, i + 50):  # acknowledged after the checkpoint: in the newest segment
                kv.Put(rpc_pb2.PutRequest(key=b'/del/k%04d' % j, value=b'x'), timeout=30)
        n.kill()
        segs = segments(n)
        os.unlink(os.path.join(n.data, 'log', segs[-1]))
        out = start_must_fail(n)
        assert segs[-1] in out and 'missing' in out, out[-2000:]
        r = check(n)
        assert r.returncode == 1, (r.returncode, r.stdout, r.stderr)
        assert 'missing' in r.stderr
    finally:
        n.cleanup()


# ---- item 8: a full disk ----

@pytest.fixture
def small_fs():
    """A 200 MiB tmpfs (root only; skipped with the reason when it cannot be mounted)."""
    d = tempfile.mkdtemp(prefix='uetcd-fullfs-')
    r = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=200m', 'tmpfs', d], capture_output=True, text=True)
    if r.returncode != 0:
        os.rmdir(d)
        pytest.skip('cannot mount a small tmpfs to fill (needs root): %s' % r.stderr.strip())
    try:
        yield d
    finally:
        subprocess.run(['umount', '-l', d])
        shutil.rmtree(d, ignore_errors=True)


def test_full_disk_refuses_writes_then_resumes(small_fs):
    n = Node()
    n.data = os.path.join(small_fs, 'data')
    filler = os.path.join(small_fs, 'filler')
    try:
        n.start()
        st = os.statvfs(small_fs)
        free = st.f_bavail * st.f_frsize
        with open(filler, 'wb') as f:  # leave 20 MiB: less than a segment
            f.write(b'\1' * max(0, free - (20 << 20)))
        acked = {}
        with channel(n.endpoint) as ch:
            kv = rpc_pb2_grpc.KVStub(ch)
            watch = rpc_pb2_grpc.WatchStub(ch)
            maint = rpc_pb2_grpc.MaintenanceStub(ch)
            events = []

            def watcher(reqs):
                try:
                    for resp in watch.Watch(reqs, timeout=120):
                        events.extend(resp.events)
                except grpc.RpcError:
                    pass

            stop_watch = threading.Event()

            def reqs():
                yield rpc_pb2.WatchRequest(create_request=rpc_pb2.WatchCreateRequest(key=b'/full/', range_end=b'/full0'))
                stop_watch.wait(120)

            wt = threading.Thread(target=watcher, args=(reqs(),), daemon=True)
            wt.start()
            big = b'z' * (1 << 20)
            refused = None
            for i in range(150):  # 64 MiB fill the first segment; the next cannot be preallocated
                k = b'/full/k%03d' % i
                try:
                    kv.Put(rpc_pb2.PutRequest(key=k, value=big + b'%d' % i), timeout=30)
                    acked[k] = big + b'%d' % i
                except grpc.RpcError as e:
                    refused = e
                    break
            assert refused is not None, 'writes were never refused'
            assert refused.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert refused.details() == 'etcdserver: mvcc: database space exceeded'
            assert n.proc.poll() is None, 'the server stays up'
            assert len(acked) > 40
            alarms = maint.Alarm(rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.GET), timeout=10).alarms
            assert [a.alarm for a in alarms] == [rpc_pb2.NOSPACE]
            # reads, deletes and watches go on
            assert count_prefix(kv, b'/full/') == len(acked)
            first = sorted(acked)[0]
            kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=first), timeout=30)
            del acked[first]
            deadline = time.monotonic() + 30
            while not any(e.type == 1 and e.kv.key == first for e in events) and time.monotonic() < deadline:
                time.sleep(0.05)
            assert any(e.type == 1 and e.kv.key == first for e in events), 'the watch saw the delete'
            with pytest.raises(grpc.RpcError):
                kv.Put(rpc_pb2.PutRequest(key=b'/full/more', value=b'x'), timeout=30)
            # space comes back: writes resume without anyone disarming the alarm
            os.unlink(filler)
            deadline = time.monotonic() + 30
            resumed = False
            while not resumed and time.monotonic() < deadline:
                try:
                    kv.Put(rpc_pb2.PutRequest(key=b'/full/more', value=b'after'), timeout=30)
                    acked[b'/full/more'] = b'after'
                    resumed = True
                except grpc.RpcError as e:
                    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    time.sleep(0.2)
            assert resumed, 'writes did not resume once space was freed'
            assert not maint.Alarm(rpc_pb2.AlarmRequest(action=rpc_pb2.AlarmRequest.GET), timeout=10).alarms
            stop_watch.set()
        n.kill()
        n.start()  # nothing acknowledged is lost
        with channel(n.endpoint) as ch:
            kv = rpc_pb2_grpc.KVStub(ch)
            got = {kv_.key: kv_.value for kv_ in kv.Range(rpc_pb2.RangeRequest(key=b'/full/', range_end=b'/full0'),
                                                           timeout=30).kvs}
            assert got == acked
        n.kill()
    finally:
        if n.proc and n.proc.poll() is None:
            n.proc.kill()
            n.proc.wait(10)
        shutil.rmtree(n.tmp, ignore_errors=True)


# ---- item 11: checkpoints under a compaction storm ----

def test_checkpoints_complete_while_a_client_compacts():
    # automatic checkpoints too (a small --checkpoint-log-bytes), besides one per Defragment
    n = Node(extra=['--checkpoint-log-bytes', str(1 << 20)])
    try:
        n.start()
        stop = threading.Event()
        errors = []
        with channel(n.endpoint) as ch:
            kv = rpc_pb2_grpc.KVStub(ch)
            maint = rpc_pb2_grpc.MaintenanceStub(ch)
            put_many(kv, '/storm/k', 20000, b'w' * 1000)  # a checkpoint of ~20 MB takes a while to write

            def compactor():
                with channel(n.endpoint) as ch2:
                    kv2 = rpc_pb2_grpc.KVStub(ch2)
                    for _ in range(4000):
                        if stop.is_set():
                            return
                        try:
                            rev = kv2.Put(rpc_pb2.PutRequest(key=b'/storm/tick', value=b't'), timeout=30).header.revision
                            kv2.Compact(rpc_pb2.CompactionRequest(revision=rev), timeout=30)
                        except grpc.RpcError as e:
                            errors.append(e)
                            return
                        time.sleep(0.05)

            t = threading.Thread(target=compactor, daemon=True)
            t.start()
            time.sleep(0.2)
            last = 0
            for _ in range(6):  # each Defragment waits for a checkpoint of its own
                maint.Defragment(rpc_pb2.DefragmentRequest(), timeout=120)
                last = kv.Range(rpc_pb2.RangeRequest(key=b'/storm/tick'), timeout=30).header.revision
            stop.set()
            t.join(60)
        assert not errors, errors
        log = open(n.log, 'rb').read().decode('utf-8', 'replace')
        assert 'overtaken' not in log, [l for l in log.splitlines() if 'overtaken' in l][:3]
        assert log.count('"checkpoint at revision') >= 6
        assert len(segments(n)) <= 2, segments(n)
        n.kill()
        n.start()
        loaded = [l for l in open(n.log, 'rb').read().decode('utf-8', 'replace').splitlines()
                  if 'loaded checkpoint' in l][-1]
        rev = int(loaded.split('revision ')[1].split(',')[0])
        assert rev >= last - 1000, (rev, last)
        n.kill()
    finally:
        n.cleanup()
