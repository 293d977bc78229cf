"""etcdctl (3.4 from Debian 12 and 3.5.16 from the reference package) against a server:
every KV command and flag, exact stdout, stderr error line and exit status.

Every test starts by deleting all keys and takes revisions relative to the revision after
that wipe (`base`), so the module-scoped server can be shared by the tests.

Not covered through etcdctl (covered in test_python_kv.py with raw requests instead):
  - lease() compares: both etcdctl versions panic in parseCompare ("bad value") on
    `lease("k") = "0"`, so they cannot send one.
  - --min/max-mod/create-rev: neither etcdctl 3.4 nor 3.5 has these flags.
  - --count-only exists only in etcdctl 3.5 (and only with -w fields).
"""
import base64
import json
import os
import re
import subprocess

import pytest

from conftest import etcdctl_bins
from kvutil import KV, norm_json, E_COMPACTED, E_FUTURE_REV, E_LEASE_NOT_FOUND, \
    E_KEY_NOT_FOUND, E_LEASE_PROVIDED, E_EMPTY_KEY, E_DUPLICATE_KEY

CTL_TIMEOUT = 30


class Ctl:
    def __init__(self, ident, path, srv):
        self.ident = ident
        self.path = path
        self.srv = srv
        self.v35 = ident == 'etcdctl35'

    def run(self, *args, stdin=None, rc=0):
        """Run etcdctl; assert the exit status; return (stdout, stderr)."""
        env = {k: v for k, v in os.environ.items() if not k.startswith('ETCDCTL_')}
        env['ETCDCTL_API'] = '3'
        cmd = [self.path, '--endpoints', self.srv.endpoint, '--dial-timeout', '5s',
               '--command-timeout', '10s'] + list(args)
        try:
            p = subprocess.run(cmd, input=(stdin or '').encode(), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, env=env, timeout=CTL_TIMEOUT)
        except subprocess.TimeoutExpired:
            pytest.fail('etcdctl did not finish within %ds: %s' % (CTL_TIMEOUT, ' '.join(cmd)))
        out, err = p.stdout.decode('utf-8', 'replace'), p.stderr.decode('utf-8', 'replace')
        assert p.returncode == rc, ('%s (%s)\nexit %d, expected %d\nstdout:\n%s\nstderr:\n%s'
                                    % (' '.join(args), self.ident, p.returncode, rc, out, err))
        return out, err

    def out(self, *args, stdin=None):
        return self.run(*args, stdin=stdin)[0]

    def json(self, *args, stdin=None):
        out = self.out('-w', 'json', *args, stdin=stdin)
        return norm_json(json.loads(out))

    def fields(self, *args, stdin=None):
        out = self.out('-w', 'fields', *args, stdin=stdin)
        # the ids of the top header must be set (non-zero); raft_term is not compared
        out = re.sub(r'^"(ClusterID|MemberID)" : [1-9][0-9]*$', r'"\1" : X', out, flags=re.M)
        return re.sub(r'^"RaftTerm" : [0-9]+$', r'"RaftTerm" : X', out, flags=re.M)

    def error(self, *args, stdin=None, rc=1):
        """Expect failure: return the last line of stderr ("Error: ...")."""
        out, err = self.run(*args, stdin=stdin, rc=rc)
        lines = [l for l in err.splitlines() if l.strip()]
        assert lines, 'no stderr from failing etcdctl %s' % (args,)
        return lines[-1]


@pytest.fixture(params=[c[0] for c in etcdctl_bins()])
def ctl(request, server):
    path = dict(etcdctl_bins())[request.param]
    if not os.access(path, os.X_OK):
        pytest.fail('%s not found at %s' % (request.param, path))
    return Ctl(request.param, path, server)


@pytest.fixture
def base(server):
    """Wipe the store; return the revision after the wipe."""
    kv = KV(server)
    try:
        yield kv.wipe()
    finally:
        kv.close()


# ---- put ---------------------------------------------------------------------------------
def test_put_and_get(ctl, base):
    assert ctl.out('put', 'k', 'v') == 'OK\n'
    assert ctl.out('get', 'k') == 'k\nv\n'
    assert ctl.out('get', 'missing') == ''
    assert ctl.json('get', 'k') == {
        'header': {'revision': base + 1},
        'kvs': [{'key': 'k', 'create_revision': base + 1, 'mod_revision': base + 1,
                 'version': 1, 'value': 'v'}],
        'count': 1}
    assert ctl.json('get', 'missing') == {'header': {'revision': base + 1}}
    # value from stdin, keys and values starting with a dash, spaces, empty value
    assert ctl.out('put', 'fromstdin', stdin='from stdin') == 'OK\n'
    assert ctl.out('put', '--', '-dash', '-val') == 'OK\n'
    assert ctl.out('put', 'sp ace', 'a b  c') == 'OK\n'
    assert ctl.out('put', 'empty', '') == 'OK\n'
    assert ctl.out('get', 'fromstdin') == 'fromstdin\nfrom stdin\n'
    assert ctl.out('get', '--', '-dash') == '-dash\n-val\n'
    assert ctl.out('get', 'sp ace') == 'sp ace\na b  c\n'
    assert ctl.out('get', 'empty') == 'empty\n\n'
    assert ctl.json('get', 'empty')['kvs'] == [
        {'key': 'empty', 'create_revision': base + 5, 'mod_revision': base + 5, 'version': 1}]


def test_put_json_and_fields(ctl, base):
    assert ctl.json('put', 'k', 'v1') == {'header': {'revision': base + 1}}
    assert ctl.fields('put', 'k', 'v2') == (
        '"ClusterID" : X\n"MemberID" : X\n"Revision" : %d\n"RaftTerm" : X\n' % (base + 2))


def test_put_prev_kv(ctl, base):
    assert ctl.out('put', 'a', '1', '--prev-kv') == 'OK\n'        # no previous: nothing more
    assert ctl.out('put', 'a', '2', '--prev-kv') == 'OK\na\n1\n'
    assert ctl.json('put', 'a', '3', '--prev-kv') == {
        'header': {'revision': base + 3},
        'prev_kv': {'key': 'a', 'create_revision': base + 1, 'mod_revision': base + 2,
                    'version': 2, 'value': '2'}}
    assert ctl.json('put', 'b', 'x', '--prev-kv') == {'header': {'revision': base + 4}}
    assert ctl.fields('put', 'a', '4', '--prev-kv') == (
        '"ClusterID" : X\n"MemberID" : X\n"Revision" : %d\n"RaftTerm" : X\n'
        '"PrevKey" : "a"\n"PrevCreateRevision" : %d\n"PrevModRevision" : %d\n'
        '"PrevVersion" : 3\n"PrevValue" : "3"\n"PrevLease" : 0\n' % (base + 5, base + 1, base + 3))


def test_put_unknown_lease(ctl, base):
    assert ctl.error('put', 'k', 'v', '--lease', '1234') == 'Error: ' + E_LEASE_NOT_FOUND
    assert ctl.error('put', 'k', 'v', '--lease', '7fffffffffffffff') == 'Error: ' + E_LEASE_NOT_FOUND
    assert ctl.out('get', 'k') == ''
    assert ctl.json('get', 'k') == {'header': {'revision': base}}


def test_put_ignore_value(ctl, base):
    assert ctl.error('put', 'k', '--ignore-value') == 'Error: ' + E_KEY_NOT_FOUND
    ctl.out('put', 'k', 'orig')
    assert ctl.out('put', 'k', '--ignore-value') == 'OK\n'
    assert ctl.json('put', 'k', '--ignore-value', '--prev-kv') == {
        'header': {'revision': base + 3},
        'prev_kv': {'key': 'k', 'create_revision': base + 1, 'mod_revision': base + 2,
                    'version': 2, 'value': 'orig'}}
    assert ctl.json('get', 'k')['kvs'] == [
        {'key': 'k', 'create_revision': base + 1, 'mod_revision': base + 3, 'version': 3,
         'value': 'orig'}]
    # a value together with --ignore-value is refused by etcdctl itself
    err = ctl.error('put', 'k', 'v', '--ignore-value', rc=128)
    assert err == "Error: put command needs only 1 argument when 'ignore-value' is set"


def test_put_ignore_lease(ctl, base):
    ctl.out('put', 'k', 'v1')
    assert ctl.out('put', 'k', 'v2', '--ignore-lease') == 'OK\n'
    assert ctl.json('get', 'k')['kvs'] == [
        {'key': 'k', 'create_revision': base + 1, 'mod_revision': base + 2, 'version': 2,
         'value': 'v2'}]
    assert ctl.error('put', 'k', 'v3', '--lease', '5', '--ignore-lease') == \
        'Error: ' + E_LEASE_PROVIDED
    # ignore_lease on a missing key: key not found (nothing written)
    assert ctl.error('put', 'newkey', 'v', '--ignore-lease') == 'Error: ' + E_KEY_NOT_FOUND
    # both ignores: the key's value and lease are kept, only the revision moves
    assert ctl.out('put', 'k', '--ignore-value', '--ignore-lease') == 'OK\n'
    assert ctl.json('get', 'k')['kvs'] == [
        {'key': 'k', 'create_revision': base + 1, 'mod_revision': base + 3, 'version': 3,
         'value': 'v2'}]


def test_put_empty_key(ctl, base):
    assert ctl.error('put', '', 'v') == 'Error: ' + E_EMPTY_KEY
    assert ctl.json('get', 'x') == {'header': {'revision': base}}


# ---- get ---------------------------------------------------------------------------------
def _sort_fixture(ctl):
    # creation order c, a, b; final versions a=3 c=2 b=1; mod order b, a, c; values a<c<b.
    for k, v in (('c', '2'), ('a', '1'), ('b', '3'), ('a', '1'), ('a', '1'), ('c', '2')):
        ctl.out('put', k, v)
    ctl.out('put', 'other', 'o')        # outside [a, d)


def _keys(out):
    lines = out.split('\n')
    return lines[0:-1:2]


def test_get_prefix_range_from_key(ctl, base):
    for k in ('k1', 'k2', 'k3', 'k30', 'l', 'j'):
        ctl.out('put', k, 'v' + k)
    assert ctl.out('get', 'k', '--prefix') == 'k1\nvk1\nk2\nvk2\nk3\nvk3\nk30\nvk30\n'
    assert ctl.out('get', 'k3', '--prefix') == 'k3\nvk3\nk30\nvk30\n'
    assert ctl.out('get', 'k2', '--from-key') == 'k2\nvk2\nk3\nvk3\nk30\nvk30\nl\nvl\n'
    assert ctl.out('get', '', '--from-key', '--keys-only') == \
        'j\n\nk1\n\nk2\n\nk3\n\nk30\n\nl\n\n'
    assert ctl.out('get', '', '--prefix', '--keys-only') == \
        'j\n\nk1\n\nk2\n\nk3\n\nk30\n\nl\n\n'
    assert ctl.out('get', 'k1', 'k3') == 'k1\nvk1\nk2\nvk2\n'          # [k1, k3)
    assert ctl.out('get', 'k1', 'k30') == 'k1\nvk1\nk2\nvk2\nk3\nvk3\n'
    assert ctl.out('get', 'k3', 'k1') == ''                            # empty range
    assert ctl.out('get', 'x', '--prefix') == ''
    assert ctl.json('get', 'k', '--prefix', '--keys-only') == {
        'header': {'revision': base + 6},
        'kvs': [{'key': k, 'create_revision': base + i + 1, 'mod_revision': base + i + 1,
                 'version': 1} for i, k in enumerate(('k1', 'k2', 'k3', 'k30'))],
        'count': 4}
    assert ctl.out('get', 'k', '--prefix', '--print-value-only') == 'vk1\nvk2\nvk3\nvk30\n'
    assert ctl.out('get', 'k', '--prefix', '-w', 'simple') == \
        'k1\nvk1\nk2\nvk2\nk3\nvk3\nk30\nvk30\n'
    assert ctl.out('get', 'k', '--prefix', '--consistency', 's') == \
        'k1\nvk1\nk2\nvk2\nk3\nvk3\nk30\nvk30\n'
    assert ctl.out('get', 'k', '--prefix', '--consistency', 'l') == \
        'k1\nvk1\nk2\nvk2\nk3\nvk3\nk30\nvk30\n'
    assert ctl.error('get', 'k', '--consistency', 'x', rc=4) == 'Error: unknown consistency flag "x"'


def test_get_limit(ctl, base):
    for k in ('p1', 'p2', 'p3', 'q'):
        ctl.out('put', k, k.upper())
    assert ctl.out('get', 'p', '--prefix', '--limit', '2') == 'p1\nP1\np2\nP2\n'
    assert ctl.json('get', 'p', '--prefix', '--limit', '2') == {
        'header': {'revision': base + 4},
        'kvs': [{'key': 'p1', 'create_revision': base + 1, 'mod_revision': base + 1,
                 'version': 1, 'value': 'P1'},
                {'key': 'p2', 'create_revision': base + 2, 'mod_revision': base + 2,
                 'version': 1, 'value': 'P2'}],
        'more': True, 'count': 3}
    j = ctl.json('get', 'p', '--prefix', '--limit', '3')
    assert 'more' not in j and j['count'] == 3 and len(j['kvs']) == 3
    j = ctl.json('get', 'p', '--prefix', '--limit', '10')
    assert 'more' not in j and j['count'] == 3
    j = ctl.json('get', '', '--from-key', '--limit', '1', '--keys-only')
    assert j == {'header': {'revision': base + 4}, 'more': True, 'count': 4,
                 'kvs': [{'key': 'p1', 'create_revision': base + 1,
                          'mod_revision': base + 1, 'version': 1}]}
    assert ctl.fields('get', 'p', '--prefix', '--limit', '1') == (
        '"ClusterID" : X\n"MemberID" : X\n"Revision" : %d\n"RaftTerm" : X\n'
        '"Key" : "p1"\n"CreateRevision" : %d\n"ModRevision" : %d\n"Version" : 1\n'
        '"Value" : "P1"\n"Lease" : 0\n"More" : true\n"Count" : 3\n' % (base + 4, base + 1, base + 1))


def test_get_count_only(ctl, base):
    if not ctl.v35:
        pytest.skip('etcdctl 3.4 has no --count-only')
    for k in ('c1', 'c2', 'c3'):
        ctl.out('put', k, 'v')
    assert ctl.fields('get', 'c', '--prefix', '--count-only') == (
        '"ClusterID" : X\n"MemberID" : X\n"Revision" : %d\n"RaftTerm" : X\n'
        '"More" : false\n"Count" : 3\n' % (base + 3))
    # etcd 3.5 (and 3.6): count_only returns no kvs, so a limit never sets "more"
    assert ctl.fields('get', 'c', '--prefix', '--count-only', '--limit', '1') == (
        '"ClusterID" : X\n"MemberID" : X\n"Revision" : %d\n"RaftTerm" : X\n'
        '"More" : false\n"Count" : 3\n' % (base + 3))
    assert ctl.error('get', 'c', '--prefix', '--count-only', '-w', 'json', rc=128) == \
        'Error: --count-only is only for `--write-out=fields`'


def test_get_sort(ctl, base):
    _sort_fixture(ctl)
    # creation order c,a,b; mod order b,a,c; versions b=1,c=2,a=3; values a=1,c=2,b=3
    cases = {
        ('', ''): 'abc', ('ASCEND', ''): 'abc', ('DESCEND', ''): 'cba',
        ('', 'KEY'): 'abc', ('ASCEND', 'KEY'): 'abc', ('DESCEND', 'KEY'): 'cba',
        ('', 'CREATE'): 'cab', ('ASCEND', 'CREATE'): 'cab', ('DESCEND', 'CREATE'): 'bac',
        ('', 'MODIFY'): 'bac', ('ASCEND', 'MODIFY'): 'bac', ('DESCEND', 'MODIFY'): 'cab',
        ('', 'VERSION'): 'bca', ('ASCEND', 'VERSION'): 'bca', ('DESCEND', 'VERSION'): 'acb',
        ('', 'VALUE'): 'acb', ('ASCEND', 'VALUE'): 'acb', ('DESCEND', 'VALUE'): 'bca',
    }
    for (order, target), want in cases.items():
        args = ['get', 'a', 'd']
        if order:
            args += ['--order', order]
        if target:
            args += ['--sort-by', target]
        got = ''.join(_keys(ctl.out(*args, '--keys-only')))
        assert got == want, 'get a d --order=%s --sort-by=%s' % (order, target)
    # sort + limit: the whole range is sorted, then cut
    j = ctl.json('get', 'a', 'd', '--order', 'DESCEND', '--sort-by', 'MODIFY', '--limit', '2')
    assert [kv['key'] for kv in j['kvs']] == ['c', 'a'] and j['more'] is True and j['count'] == 3
    j = ctl.json('get', 'a', 'd', '--sort-by', 'VALUE', '--limit', '1')
    assert j['kvs'] == [{'key': 'a', 'create_revision': base + 2, 'mod_revision': base + 5,
                         'version': 3, 'value': '1'}]
    assert j['more'] is True and j['count'] == 3
    assert ctl.error('get', 'a', '--order', 'SIDEWAYS', rc=4) == \
        'Error: bad sort order SIDEWAYS'


def test_get_rev(ctl, base):
    ctl.out('put', 'r', 'v1')
    ctl.out('put', 'r', 'v2')
    ctl.out('put', 's', 's1')
    ctl.out('del', 'r')
    assert ctl.out('get', 'r', '--rev', str(base + 1)) == 'r\nv1\n'
    assert ctl.out('get', 'r', '--rev', str(base + 2)) == 'r\nv2\n'
    assert ctl.out('get', 'r', '--rev', str(base + 4)) == ''
    assert ctl.out('get', 'r') == ''
    assert ctl.json('get', '', '--from-key', '--rev', str(base + 3)) == {
        'header': {'revision': base + 4},
        'kvs': [{'key': 'r', 'create_revision': base + 1, 'mod_revision': base + 2,
                 'version': 2, 'value': 'v2'},
                {'key': 's', 'create_revision': base + 3, 'mod_revision': base + 3,
                 'version': 1, 'value': 's1'}],
        'count': 2}
    assert ctl.json('get', '', '--from-key', '--rev', str(base + 3), '--limit', '1')['more'] is True
    # --rev 0 means "latest"
    assert ctl.out('get', 's', '--rev', '0') == 's\ns1\n'
    assert ctl.error('get', 'r', '--rev', str(base + 5)) == 'Error: ' + E_FUTURE_REV
    assert ctl.error('get', 'r', '--rev', str(base + 1000)) == 'Error: ' + E_FUTURE_REV


# ---- del ---------------------------------------------------------------------------------
def test_del(ctl, base):
    for k in ('d1', 'd2', 'd3', 'e1', 'f'):
        ctl.out('put', k, 'v' + k)
    assert ctl.out('del', 'nothing') == '0\n'
    assert ctl.out('del', 'd1') == '1\n'
    assert ctl.out('del', 'd1') == '0\n'
    assert ctl.out('del', 'd', '--prefix', '--prev-kv') == '2\nd2\nvd2\nd3\nvd3\n'
    assert ctl.json('del', 'e', '--from-key', '--prev-kv') == {
        'header': {'revision': base + 8},
        'deleted': 2,
        'prev_kvs': [{'key': 'e1', 'create_revision': base + 4, 'mod_revision': base + 4,
                      'version': 1, 'value': 've1'},
                     {'key': 'f', 'create_revision': base + 5, 'mod_revision': base + 5,
                      'version': 1, 'value': 'vf'}]}
    assert ctl.json('del', 'zzz') == {'header': {'revision': base + 8}}
    assert ctl.out('get', '', '--from-key') == ''


def test_del_range(ctl, base):
    for k in ('a', 'b', 'c', 'd'):
        ctl.out('put', k, k)
    # two arguments: the range [a, c)
    out, err = ctl.run('del', 'a', 'c', '--prev-kv')
    assert out == '2\na\na\nb\nb\n'
    assert ctl.out('get', '', '--from-key', '--keys-only') == 'c\n\nd\n\n'
    assert ctl.fields('del', 'c', '--prev-kv') == (
        '"ClusterID" : X\n"MemberID" : X\n"Revision" : %d\n"RaftTerm" : X\n"Deleted" : 1\n'
        '"PrevKey" : "c"\n"PrevCreateRevision" : %d\n"PrevModRevision" : %d\n'
        '"PrevVersion" : 1\n"PrevValue" : "c"\n"PrevLease" : 0\n' % (base + 6, base + 3, base + 3))
    if ctl.v35:
        assert ctl.out('del', 'd', 'e', '--range') == '1\n'
    assert ctl.out('del', 'x', 'y') == '0\n'


# ---- txn ---------------------------------------------------------------------------------
def test_txn_success_and_failure(ctl, base):
    ctl.out('put', 't1', 'v1')                                          # base+1
    txn = ('value("t1") = "v1"\nversion("t1") = "1"\ncreate("t1") = "%d"\nmod("t1") = "%d"\n\n'
           'put t2 x\nget t1\ndel t3\n\nput t4 y\n\n' % (base + 1, base + 1))
    assert ctl.out('txn', stdin=txn) == 'SUCCESS\n\nOK\n\nt1\nv1\n\n0\n'   # base+2
    assert ctl.out('get', 't4') == ''
    txn = ('value("t1") != "v1"\n\nput t2 x\n\n'
           'get t1\nput t4 "a b"\ndel t5 --prev-kv\nget t --prefix --keys-only\n\n')
    assert ctl.out('txn', stdin=txn) == (
        'FAILURE\n\nt1\nv1\n\nOK\n\n0\n\nt1\n\nt2\n\nt4\n\n')             # base+3
    assert ctl.json('txn', stdin=txn) == {                              # base+4
        'header': {'revision': base + 4},
        'responses': [
            {'Response': {'response_range': {
                'header': {'revision': base + 3},
                'kvs': [{'key': 't1', 'create_revision': base + 1, 'mod_revision': base + 1,
                         'version': 1, 'value': 'v1'}],
                'count': 1}}},
            {'Response': {'response_put': {'header': {'revision': base + 4}}}},
            {'Response': {'response_delete_range': {'header': {'revision': base + 4}}}},
            {'Response': {'response_range': {
                'header': {'revision': base + 4},
                'kvs': [{'key': 't1', 'create_revision': base + 1, 'mod_revision': base + 1,
                         'version': 1},
                        {'key': 't2', 'create_revision': base + 2, 'mod_revision': base + 2,
                         'version': 1},
                        {'key': 't4', 'create_revision': base + 3, 'mod_revision': base + 4,
                         'version': 2}],
                'count': 3}}}]}
    assert ctl.out('get', 't4') == 't4\na b\n'


def test_txn_compare_operators(ctl, base):
    ctl.out('put', 'c', 'mmm')                                          # base+1
    ctl.out('put', 'c', 'mmm')                                          # base+2, version 2
    cases = [
        ('value("c") = "mmm"', True), ('value("c") != "mmm"', False),
        ('value("c") > "mm"', True), ('value("c") < "mmn"', True), ('value("c") > "n"', False),
        ('version("c") = "2"', True), ('version("c") > "1"', True), ('version("c") < "2"', False),
        ('version("c") != "2"', False),
        ('create("c") = "%d"' % (base + 1), True), ('create("c") > "%d"' % (base + 1), False),
        ('create("c") < "%d"' % (base + 2), True),
        ('mod("c") = "%d"' % (base + 2), True), ('mod("c") < "%d"' % (base + 2), False),
        ('mod("c") != "0"', True),
        # a missing key: version/create/mod are 0, a value compare is false
        ('version("nokey") = "0"', True), ('create("nokey") = "0"', True),
        ('mod("nokey") = "0"', True), ('value("nokey") = ""', False),
        ('value("nokey") != "x"', False),
    ]
    for cmp_line, want in cases:
        out = ctl.out('txn', stdin='%s\n\n\n\n' % cmp_line)
        assert out == ('SUCCESS\n' if want else 'FAILURE\n'), cmp_line
    # several compares: all must hold
    out = ctl.out('txn', stdin='value("c") = "mmm"\nversion("c") = "1"\n\n\n\n')
    assert out == 'FAILURE\n'
    # an empty compare list succeeds; no ops -> no new revision
    assert ctl.out('txn', stdin='\n\n\n') == 'SUCCESS\n'
    assert ctl.json('get', 'c')['header'] == {'revision': base + 2}


def test_txn_interactive(ctl, base):
    ctl.out('put', 't1', 'x')
    out = ctl.out('txn', '-i', stdin='mod("t1") > "0"\n\nput t9 z\n\nget t1\n\n')
    assert out == ('compares:\nsuccess requests (get, put, del):\n'
                   'failure requests (get, put, del):\nSUCCESS\n\nOK\n')
    assert ctl.out('get', 't9') == 't9\nz\n'


def test_txn_fields(ctl, base):
    ctl.out('put', 't1', 'v1')
    out = ctl.fields('txn', stdin='mod("t1") < "%d"\n\nput t2 x\n\nget t1\n\n' % (base + 1))
    assert out == (
        '"ClusterID" : X\n"MemberID" : X\n"Revision" : %d\n"RaftTerm" : X\n"Succeeded" : false\n'
        '"ClusterID" : 0\n"MemberID" : 0\n"Revision" : %d\n"RaftTerm" : X\n'
        '"Key" : "t1"\n"CreateRevision" : %d\n"ModRevision" : %d\n"Version" : 1\n'
        '"Value" : "v1"\n"Lease" : 0\n"More" : false\n"Count" : 1\n'
        % (base + 1, base + 1, base + 1, base + 1))


def test_txn_errors(ctl, base):
    # a put and a delete of the same key in one branch
    assert ctl.error('txn', stdin='\nput t4 a\ndel t --prefix\n\n\n') == \
        'Error: ' + E_DUPLICATE_KEY
    assert ctl.error('txn', stdin='\nput t4 a\nput t4 b\n\n\n') == 'Error: ' + E_DUPLICATE_KEY
    # the failure branch is checked too, even when it is not taken
    assert ctl.error('txn', stdin='version("x") = "5"\n\n\nput a 1\nput a 2\n\n') == \
        'Error: ' + E_DUPLICATE_KEY
    # two deletes of the same key are fine
    assert ctl.out('txn', stdin='\ndel t4\ndel t4\n\n\n') == 'SUCCESS\n\n0\n\n0\n'
    assert ctl.error('txn', stdin='\nput k v --lease=1234\n\n\n') == 'Error: ' + E_LEASE_NOT_FOUND
    assert ctl.json('get', 'x') == {'header': {'revision': base}}


# ---- compaction --------------------------------------------------------------------------
def test_compaction(ctl, base):
    for i in range(1, 6):
        ctl.out('put', 'cp', 'v%d' % i)                                 # base+1 .. base+5
    assert ctl.out('compaction', str(base + 3)) == 'compacted revision %d\n' % (base + 3)
    assert ctl.error('get', 'cp', '--rev', str(base + 2)) == 'Error: ' + E_COMPACTED
    assert ctl.error('get', 'cp', '--rev', str(base + 1)) == 'Error: ' + E_COMPACTED
    assert ctl.out('get', 'cp', '--rev', str(base + 3)) == 'cp\nv3\n'
    assert ctl.out('get', 'cp', '--rev', str(base + 4)) == 'cp\nv4\n'
    assert ctl.json('get', 'cp', '--rev', str(base + 3))['kvs'] == [
        {'key': 'cp', 'create_revision': base + 1, 'mod_revision': base + 3, 'version': 3,
         'value': 'v3'}]
    # the same or an older revision again: compacted; the future: future revision
    assert ctl.error('compaction', str(base + 3)) == 'Error: ' + E_COMPACTED
    assert ctl.error('compaction', str(base + 2)) == 'Error: ' + E_COMPACTED
    assert ctl.error('compaction', str(base + 6)) == 'Error: ' + E_FUTURE_REV
    assert ctl.error('compaction', str(base + 100000)) == 'Error: ' + E_FUTURE_REV
    assert ctl.out('compaction', '--physical', str(base + 5)) == \
        'compacted revision %d\n' % (base + 5)
    assert ctl.error('get', 'cp', '--rev', str(base + 4)) == 'Error: ' + E_COMPACTED
    assert ctl.out('get', 'cp', '--rev', str(base + 5)) == 'cp\nv5\n'
    assert ctl.error('txn', stdin='\nget cp --rev=%d\n\n\n' % (base + 4)) == \
        'Error: ' + E_COMPACTED
    # compaction does not create a revision
    assert ctl.json('get', 'cp')['header'] == {'revision': base + 5}


def test_binary_keys_and_values_hex(ctl, base, server):
    kv = KV(server)
    try:
        kv.put(b'bin\x00\xff', b'\x01\x02 \xfe')                      # base+1
        kv.put(b'plain', b'text')                                     # base+2
    finally:
        kv.close()
    assert ctl.out('get', '', '--from-key', '--hex') == (
        '\\x62\\x69\\x6e\\x00\\xff\n\\x01\\x02\\x20\\xfe\n'
        '\\x70\\x6c\\x61\\x69\\x6e\n\\x74\\x65\\x78\\x74\n')
    out = json.loads(ctl.out('get', '', '--from-key', '-w', 'json'))
    assert [(base64.b64decode(k['key']), base64.b64decode(k['value']), k['mod_revision'])
            for k in out['kvs']] == [(b'bin\x00\xff', b'\x01\x02 \xfe', base + 1),
                                     (b'plain', b'text', base + 2)]
    assert ctl.out('del', '', '--from-key', '--prev-kv', '--hex') == (
        '2\n\\x62\\x69\\x6e\\x00\\xff\n\\x01\\x02\\x20\\xfe\n'
        '\\x70\\x6c\\x61\\x69\\x6e\n\\x74\\x65\\x78\\x74\n')
