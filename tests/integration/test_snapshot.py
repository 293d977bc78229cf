"""Checkpoints, online space reclamation, Defragment, Maintenance.Snapshot, restore and
point-in-time restore.

- `etcdctl snapshot save` (3.4 and 3.5) gets a file in etcd's envelope while writes go on;
  `uetcd-restore` turns it into a data dir that serves exactly the keys, history, revision
  and leases of the snapshot; a damaged file is refused.
- checkpoints (forced small with --snapshot-count and --checkpoint-log-bytes 0) are written while clients write, the log
  segments they cover are deleted, and a restart (SIGKILL too) loads checkpoint + log tail;
- Status.db_size stays bounded while the same keys are overwritten (segments are reclaimed
  online, no stop-the-world), and Defragment gives the space of compacted history back;
- `uetcd-restore --from-data-dir --revision R` builds the state as of R (compared with the
  live server's `get --rev R`), refusing compacted and future revisions;
- `uetcd-check` verifies the checkpoint too, and a damaged checkpoint stops start-up with the
  file and offset named; a second server on the same data dir is refused.
"""
import base64
import hashlib
import json
import os
import signal
import subprocess
import threading
import time

import grpc
import pytest

from conftest import etcdctl_bins, uetcd_bin
from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc
from test_crash import Node

TOOLS = os.path.dirname(uetcd_bin())
RESTORE = os.path.join(TOOLS, 'uetcd-restore')
CHECK = os.path.join(TOOLS, 'uetcd-check')
CTLS = dict(etcdctl_bins())


def ctl(endpoint, *args, which='etcdctl35', timeout=60):
    env = {k: v for k, v in os.environ.items() if not k.startswith('ETCD')}
    env['ETCDCTL_API'] = '3'
    return subprocess.run([CTLS[which], '--endpoints', endpoint] + list(args), capture_output=True, text=True,
                          env=env, timeout=timeout)


def ok(r):
    assert r.returncode == 0, 'rc=%d\nstdout: %s\nstderr: %s' % (r.returncode, r.stdout, r.stderr[-2000:])
    return r


def get_json(endpoint, *args):
    return json.loads(ok(ctl(endpoint, 'get', '', '--prefix', '-w', 'json', *args)).stdout)


def status(endpoint):
    return json.loads(ok(ctl(endpoint, 'endpoint', 'status', '-w', 'json')).stdout)[0]['Status']


def kv_stub(endpoint):
    ch = grpc.insecure_channel(endpoint, options=[('grpc.max_receive_message_length', 64 << 20),
                                                  ('grpc.max_send_message_length', 64 << 20)])
    return ch, rpc_pb2_grpc.KVStub(ch)


def populate(endpoint, n=60):
    """Puts, overwrites, deletes, a compaction, a lease with keys: history worth keeping."""
    ch, kv = kv_stub(endpoint)
    with ch:
        for i in range(n):
            kv.Put(rpc_pb2.PutRequest(key=b'/s/k%03d' % i, value=b'v%d' % i))
        for i in range(0, n, 4):
            kv.Put(rpc_pb2.PutRequest(key=b'/s/k%03d' % i, value=b'again%d' % i))
        r = kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=b'/s/k%03d' % 1))
        kv.Compact(rpc_pb2.CompactionRequest(revision=r.header.revision - 5))
        lease = rpc_pb2_grpc.LeaseStub(ch).LeaseGrant(rpc_pb2.LeaseGrantRequest(TTL=3600, ID=0x1234))
        for i in range(3):
            kv.Put(rpc_pb2.PutRequest(key=b'/s/leased%d' % i, value=b'l', lease=lease.ID))
        kv.Put(rpc_pb2.PutRequest(key=b'/s/big', value=os.urandom(300000)))
        return r.header.revision - 5


@pytest.fixture
def node():
    n = Node(extra=['--snapshot-count', '40', '--checkpoint-log-bytes', '0'])
    yield n
    n.cleanup()


def restored_node(data_dir, extra=()):
    n = Node(extra=list(extra))
    n.data = data_dir
    return n


@pytest.mark.parametrize('which', [c[0] for c in etcdctl_bins()])
def test_snapshot_save_and_restore(node, which, tmp_path):
    node.start()
    compacted = populate(node.endpoint)
    # writes go on while the snapshot is taken: it must still be one consistent revision
    stop = threading.Event()

    def writer():
        ch, kv = kv_stub(node.endpoint)
        with ch:
            i = 0
            while not stop.is_set():
                kv.Put(rpc_pb2.PutRequest(key=b'/s/live%d' % (i % 50), value=b'%d' % i))
                i += 1

    t = threading.Thread(target=writer, daemon=True)
    t.start()
    snap = str(tmp_path / 'snap.db')
    r = ok(ctl(node.endpoint, 'snapshot', 'save', snap, which=which))
    assert 'Snapshot saved at ' + snap in r.stdout
    stop.set()
    t.join(10)
    data = open(snap, 'rb').read()
    assert len(data) % 512 == 32, 'etcd clients want a SHA-256 at 32 bytes past a multiple of 512'
    assert hashlib.sha256(data[:-32]).digest() == data[-32:]

    target = str(tmp_path / 'restored')
    r = subprocess.run([RESTORE, snap, '--data-dir', target], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    back = restored_node(target)
    try:
        back.start()
        got = get_json(back.endpoint)
        rev = got['header']['revision']
        assert rev >= compacted
        want = get_json(node.endpoint, '--rev', str(rev))  # the live server at that revision
        assert got['kvs'] == want['kvs']
        assert got['header']['cluster_id'] != want['header']['cluster_id'], 'a restore makes a new cluster'
        # history survives: the compacted revision and everything after it
        old = ctl(back.endpoint, 'get', '/s/k000', '--rev', str(compacted - 1))
        assert old.returncode != 0 and 'required revision has been compacted' in old.stderr
        assert get_json(back.endpoint, '--rev', str(compacted))['kvs'] == \
            get_json(node.endpoint, '--rev', str(compacted))['kvs']
        leases = ok(ctl(back.endpoint, 'lease', 'timetolive', '1234', '--keys')).stdout
        assert 'granted with TTL(3600s)' in leases and '/s/leased0' in leases
        # it is a live server: the next write takes the next revision
        put = json.loads(ok(ctl(back.endpoint, 'put', '/s/after', 'x', '-w', 'json')).stdout)
        assert put['header']['revision'] == rev + 1
    finally:
        back.kill()
    # a restore never overwrites a data dir
    r = subprocess.run([RESTORE, snap, '--data-dir', target], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and 'exists' in r.stderr


def test_damaged_snapshot_is_refused(node, tmp_path):
    node.start()
    populate(node.endpoint, 10)
    snap = str(tmp_path / 'snap.db')
    ok(ctl(node.endpoint, 'snapshot', 'save', snap))
    data = bytearray(open(snap, 'rb').read())
    for pos, what in ((100, 'SHA-256 mismatch'), (len(data) - 1, 'SHA-256 mismatch'), (16, 'bad magic')):
        bad = bytearray(data)
        bad[pos] ^= 0x10
        path = str(tmp_path / ('bad%d.db' % pos))
        open(path, 'wb').write(bad)
        target = str(tmp_path / ('r%d' % pos))
        r = subprocess.run([RESTORE, path, '--data-dir', target], capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and what in r.stderr, r.stderr
        assert not os.path.exists(target), 'a failed restore leaves nothing behind'
    cut = str(tmp_path / 'cut.db')
    open(cut, 'wb').write(data[:len(data) // 2])
    r = subprocess.run([RESTORE, cut, '--data-dir', str(tmp_path / 'rc')], capture_output=True, text=True)
    assert r.returncode == 1, r.stderr


def test_snapshot_streams_cancelled_and_concurrent(node, tmp_path):
    node.start()
    ch, kv = kv_stub(node.endpoint)
    with ch:
        for i in range(40):
            kv.Put(rpc_pb2.PutRequest(key=b'/c/%d' % i, value=os.urandom(100000)))  # ~4 MB: many chunks
        fds = len(os.listdir('/proc/%d/fd' % node.proc.pid))
        m = rpc_pb2_grpc.MaintenanceStub(ch)
        for _ in range(5):  # cancelled after the first chunk: the file is closed, nothing leaks
            it = m.Snapshot(rpc_pb2.SnapshotRequest(), timeout=30)
            first = next(it)
            assert first.blob and first.remaining_bytes > 0
            it.cancel()
        # three at once, all whole
        outs = [str(tmp_path / ('s%d.db' % i)) for i in range(3)]
        procs = [subprocess.Popen([CTLS['etcdctl35'], '--endpoints', node.endpoint, 'snapshot', 'save', o],
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE) for o in outs]
        for p in procs:
            assert p.wait(60) == 0, p.stderr.read()
        for o in outs:
            d = open(o, 'rb').read()
            assert hashlib.sha256(d[:-32]).digest() == d[-32:]
        total = b''.join(r.blob for r in m.Snapshot(rpc_pb2.SnapshotRequest(), timeout=30))
        assert hashlib.sha256(total[:-32]).digest() == total[-32:]
        deadline = time.monotonic() + 10
        while len(os.listdir('/proc/%d/fd' % node.proc.pid)) > fds and time.monotonic() < deadline:
            time.sleep(0.1)
        assert len(os.listdir('/proc/%d/fd' % node.proc.pid)) <= fds, 'snapshot files left open'
        assert kv.Range(rpc_pb2.RangeRequest(key=b'/c/1')).count == 1


def snap_files(node):
    return sorted(f for f in os.listdir(os.path.join(node.data, 'snap')) if f.endswith('.ckpt'))


def log_files(node):
    return sorted(f for f in os.listdir(os.path.join(node.data, 'log')) if f.endswith('.seg'))


def test_checkpoints_cover_the_log_and_survive_sigkill(node):
    node.start()
    ch, kv = kv_stub(node.endpoint)
    with ch:
        for i in range(200):
            kv.Put(rpc_pb2.PutRequest(key=b'/k/%d' % (i % 30), value=b'v%d' % i))
    before = get_json(node.endpoint)
    deadline = time.monotonic() + 10
    while not snap_files(node) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(snap_files(node)) == 1, snap_files(node)
    ckpt_rev = int(snap_files(node)[0].split('.')[0], 16)
    assert ckpt_rev >= 40, 'checkpoints follow --snapshot-count 40'
    segs = log_files(node)
    assert segs[0] != '0000000000000001.seg', 'covered segments are deleted'
    node.kill()
    r = subprocess.run([CHECK, node.data], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and 'store: revision %d' % before['header']['revision'] in r.stdout, r.stdout + r.stderr
    node.start()
    assert 'loaded checkpoint' in node.tail()
    after = get_json(node.endpoint)
    assert after['kvs'] == before['kvs'] and after['header']['revision'] == before['header']['revision']
    # history from before the checkpoint is still there (nothing was compacted)
    h = rpc_pb2_grpc.WatchStub(grpc.insecure_channel(node.endpoint)).Watch(iter([rpc_pb2.WatchRequest(
        create_request=rpc_pb2.WatchCreateRequest(key=b'/k/', range_end=b'/k0', start_revision=2))]), timeout=10)
    seen = []
    for resp in h:
        seen += [e.kv.mod_revision for e in resp.events]
        if len(seen) >= 200:
            break
    h.cancel()
    assert seen == list(range(2, 202))


def test_damaged_checkpoint_refuses_start(node):
    node.start()
    populate(node.endpoint, 50)
    deadline = time.monotonic() + 10
    while not snap_files(node) and time.monotonic() < deadline:
        time.sleep(0.05)
    node.kill(signal.SIGTERM)
    path = os.path.join(node.data, 'snap', snap_files(node)[0])
    with open(path, 'r+b') as f:
        f.seek(200)
        b = f.read(1)
        f.seek(200)
        f.write(bytes([b[0] ^ 1]))
    r = subprocess.run([CHECK, node.data], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and path in r.stderr and 'body checksum mismatch' in r.stderr, r.stderr
    with pytest.raises(AssertionError) as e:
        node.start()
    assert 'cannot recover' in str(e.value) and path in str(e.value) and 'offset' in str(e.value)


def test_second_server_on_the_same_data_dir_is_refused(node):
    node.start()
    other = Node()
    try:
        other.data = node.data
        with pytest.raises(AssertionError) as e:
            other.start()
        assert 'another uetcd is using it' in str(e.value)
    finally:
        other.cleanup()
    assert get_json(node.endpoint)['header']['revision'] == 1


def test_space_reclaimed_online_and_by_defrag(tmp_path):
    """Overwrite 8 keys with 1 MiB values 960 times (960 MiB through the log) with periodic
    compaction: checkpoints reclaim segments while writing, so the data dir never holds more
    than a few (a checkpoint is due after 4x its size of log: at most ~5 segments here). Then, with automatic checkpoints held off, 150 MiB more and a compaction:
    Defragment shrinks the data dir to one fresh segment and a small checkpoint."""
    n = Node(extra=['--quota-backend-bytes', str(8 << 30), '--checkpoint-log-bytes', str(64 << 20)])
    value = os.urandom(1 << 20)

    def overwrite(count):
        ch, kv = kv_stub(n.endpoint)
        peak = 0
        with ch:
            for i in range(count):
                r = kv.Put(rpc_pb2.PutRequest(key=b'/big/%d' % (i % 8), value=value))
                if i % 40 == 39 or i == count - 1:
                    kv.Compact(rpc_pb2.CompactionRequest(revision=r.header.revision))
                    peak = max(peak, status(n.endpoint)['dbSize'])
        return peak

    try:
        n.start()
        peak = overwrite(960)
        assert peak < 450 << 20, 'segments were not reclaimed while writing: %d' % peak
        n.kill(signal.SIGTERM)
        n.extra += ['--checkpoint-log-bytes', str(4 << 30)]
        n.start()
        overwrite(150)
        before = status(n.endpoint)['dbSize']
        assert before >= 150 << 20, before  # what was written since the restart, at least
        r = ok(ctl(n.endpoint, 'defrag'))
        assert 'Finished defragmenting etcd member[%s]' % n.endpoint in r.stdout
        after = status(n.endpoint)
        ckpt = os.path.getsize(os.path.join(n.data, 'snap', snap_files(n)[0]))
        assert ckpt < 10 << 20  # 8 live values and keys after the compaction
        assert ckpt < after['dbSize'] <= ckpt + 4096, (after, ckpt)  # and a fresh segment's header
        assert len(log_files(n)) == 1
        assert after['dbSizeInUse'] < 9 << 20  # the 8 live values
        n.kill()
        n.start()
        got = get_json(n.endpoint, '--keys-only')
        assert [kv['key'] for kv in got['kvs']] == [base64.b64encode(b'/big/%d' % i).decode() for i in range(8)]
    finally:
        n.cleanup()


def test_defrag_matches_etcd(server):
    r = ok(ctl(server.endpoint, 'defrag'))
    assert r.stdout.strip() == 'Finished defragmenting etcd member[%s]' % server.endpoint
    r = ok(ctl(server.endpoint, 'defrag', which='etcdctl34'))
    assert r.stdout.strip() == 'Finished defragmenting etcd member[%s]' % server.endpoint


def test_point_in_time_restore(node, tmp_path):
    node.start()
    ch, kv = kv_stub(node.endpoint)
    revs = []
    with ch:
        for i in range(150):
            k = b'/p/%d' % (i % 17)
            if i % 11 == 10:
                r = kv.DeleteRange(rpc_pb2.DeleteRangeRequest(key=k))
            else:
                r = kv.Put(rpc_pb2.PutRequest(key=k, value=b'v%d' % i))
            revs.append(r.header.revision)
        kv.Compact(rpc_pb2.CompactionRequest(revision=revs[30]))
        for i in range(60):
            revs.append(kv.Put(rpc_pb2.PutRequest(key=b'/q/%d' % (i % 7), value=b'w%d' % i)).header.revision)
    deadline = time.monotonic() + 10
    while not snap_files(node) and time.monotonic() < deadline:
        time.sleep(0.05)
    ckpt_rev = int(snap_files(node)[0].split('.')[0], 16)
    last = revs[-1]
    # below the checkpoint (from its history), at it, and in the log after it
    for rev in sorted({revs[30], revs[31], revs[100], ckpt_rev - 1, ckpt_rev, min(ckpt_rev + 1, last), last}):
        target = str(tmp_path / ('at%d' % rev))
        r = subprocess.run([RESTORE, '--from-data-dir', node.data, '--revision', str(rev), '--data-dir', target],
                           capture_output=True, text=True, timeout=60)  # the server keeps running
        assert r.returncode == 0, r.stderr
        back = restored_node(target)
        try:
            back.start()
            got = get_json(back.endpoint)
            assert got['header']['revision'] == rev
            assert got['kvs'] == get_json(node.endpoint, '--rev', str(rev))['kvs'], 'state at %d' % rev
        finally:
            back.kill()
    for bad, why in ((revs[29], 'has been compacted'), (last + 5, 'beyond the last durable revision')):
        target = str(tmp_path / ('bad%d' % bad))
        r = subprocess.run([RESTORE, '--from-data-dir', node.data, '--revision', str(bad), '--data-dir', target],
                           capture_output=True, text=True, timeout=60)
        assert r.returncode == 1 and why in r.stderr, r.stderr
        assert not os.path.exists(target)
