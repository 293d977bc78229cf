"""Fixtures that start etcd-compatible servers for the integration tests.

Environment:
  UETCD_BIN   the server under test (build/uetcd). Missing or not executable -> the
              tests that need it FAIL (they are never skipped).
  ETCD_REF    the reference etcd (build/etcd-ref/usr/bin/etcd, 3.5.16).
  UETCD_KIND  optional: "etcd" or "uetcd", how to launch UETCD_BIN. By default a binary
              whose basename is "etcd" is launched as etcd (with peer flags), anything
              else as uetcd. This lets the whole suite be validated with
              UETCD_BIN pointing at the reference etcd.
  UETCD_ARGS  optional: more flags for every uetcd the fixtures start (`make tsan` passes
              "--threads 2").
  UETCD_START_TIMEOUT  seconds a fixture's server has to become ready (20; `make tsan`
              gives 90: under ThreadSanitizer, reading a 64 MiB log segment at start-up
              takes about 25 s).
  UETCD_REF_RUNS=0  deselects the reference etcd's run of tests parametrized over both
              servers (`server`, or a `role` parameter): that run checks the test, not
              uetcd, so the sanitizer runs leave it out.

Sanitized builds (`make test` runs a part of the suite against build/asan/uetcd, `make tsan`
against build/tsan/uetcd): ASAN_OPTIONS, UBSAN_OPTIONS and TSAN_OPTIONS send every report
to a file in one directory for the session (log_path), whichever process wrote it (fixture
servers, servers a test starts itself, tools). The test during which a report appears fails
with the report's text (reports written while a module's servers stop fail its last test's
teardown). Unsanitized binaries ignore these variables. tests/lsan.supp and tests/tsan.supp
list the reports judged harmless, each with its reason.

Fixtures:
  uetcd, etcd_ref   a running server (module scoped: tests namespace their keys and take
                    revisions relative to the revision they start at)
  server            parametrized over both (ids "uetcd" and "etcd")
  spawn             factory for fresh, test-private servers: spawn("uetcd"|"etcd")
Each yields a Server with .endpoint ("127.0.0.1:PORT"), .host, .port, .kind, .name
("uetcd" or "etcd": which role it plays), .stderr_tail().
On a test failure the stderr tail of every server the test used is added to the report.
"""
import os

# The servers are started with fork + exec. gRPC's fork support makes a fork
# wait until gRPC's thread pool is idle, which a call still in flight in some thread (a
# test's leftover daemon thread) can postpone forever; the child execs at once and never
# touches gRPC, so that support is not needed here. Must be set before grpc is imported.
os.environ.setdefault('GRPC_ENABLE_FORK_SUPPORT', 'false')

import resource
import shutil
import signal
import socket
import subprocess
import tempfile
import time

import grpc
import pytest

from etcd3.etcdrpc import rpc_pb2, rpc_pb2_grpc

HERE = os.path.dirname(os.path.abspath(__file__))

# Many-connection tests need file descriptors, in this process and in the servers, which
# inherit the limit (Go's runtime raises etcd's own soft limit anyway).
_soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
if _soft != resource.RLIM_INFINITY and (_hard == resource.RLIM_INFINITY or _soft < _hard):
    resource.setrlimit(resource.RLIMIT_NOFILE,
                       (min(_hard, 65536) if _hard != resource.RLIM_INFINITY else 65536, _hard))
REPO = os.path.abspath(os.path.join(HERE, '..', '..'))
START_TIMEOUT = float(os.environ.get('UETCD_START_TIMEOUT') or 20.0)  # make tsan: 90
STOP_TIMEOUT = 10.0


# -- sanitizer reports ---------------------------------------------------------------------
# Every sanitizer report goes to SAN_DIR/<asan|ubsan|tsan>.<pid>; _san_take() returns what
# was written since it was last called. ASan and UBSan stop the process at the first report
# (the server's death fails the test too); TSan reports and goes on, so only these files
# show its races. Leaks are checked when a server exits (main() exits with its state still
# reachable, so only memory lost while serving is reported).
SAN_DIR = tempfile.mkdtemp(prefix='uetcd-sanitizer-')
SAN_REPORT_LINES = 200             # per report in a failure message; the file has all of it
_SAN_SEEN = {}                     # report file -> bytes already taken
_SAN_FOUND = []                    # report files that had anything (kept after the session)
TSAN_SUPP = os.path.join(REPO, 'tests', 'tsan.supp')
LSAN_SUPP = os.path.join(REPO, 'tests', 'lsan.supp')


def _san_env():
    opts = {
        'ASAN_OPTIONS': 'log_path=%s/asan:halt_on_error=1:detect_leaks=1:print_summary=1' % SAN_DIR,
        'UBSAN_OPTIONS': 'log_path=%s/ubsan:halt_on_error=1:print_stacktrace=1:print_summary=1' % SAN_DIR,
        'TSAN_OPTIONS': 'log_path=%s/tsan:halt_on_error=0:second_deadlock_stack=1:print_summary=1'
                        % SAN_DIR + (':suppressions=' + TSAN_SUPP if os.path.exists(TSAN_SUPP) else ''),
        'LSAN_OPTIONS': 'print_suppressions=0' + (':suppressions=' + LSAN_SUPP
                                                  if os.path.exists(LSAN_SUPP) else ''),
    }
    for k, v in opts.items():      # the caller's own options come last, so they win
        os.environ[k] = v + (':' + os.environ[k] if os.environ.get(k) else '')


_san_env()


def _san_take():
    """Text of the sanitizer reports written since the last call ('' if none)."""
    out = []
    try:
        names = sorted(os.listdir(SAN_DIR))
    except OSError:
        return ''
    for name in names:
        path = os.path.join(SAN_DIR, name)
        try:
            with open(path, 'rb') as f:
                f.seek(_SAN_SEEN.get(path, 0))
                data = f.read()
        except OSError:
            continue
        if not data:
            continue
        _SAN_SEEN[path] = _SAN_SEEN.get(path, 0) + len(data)
        if path not in _SAN_FOUND:
            _SAN_FOUND.append(path)
        lines = data.decode('utf-8', 'replace').splitlines()
        if len(lines) > SAN_REPORT_LINES:
            lines = lines[:SAN_REPORT_LINES] + ['... (%d more lines in %s)' % (
                len(lines) - SAN_REPORT_LINES, path)]
        out.append('--- sanitizer report %s ---\n%s' % (path, '\n'.join(lines)))
    return '\n'.join(out)


def _san_fail(when):
    text = _san_take()
    if text:
        pytest.fail('sanitizer report(s) %s:\n%s' % (when, text), pytrace=False)


def _env_path(name, default):
    return os.environ.get(name) or os.path.join(REPO, default)


def uetcd_bin():
    return _env_path('UETCD_BIN', 'build/uetcd')


def etcd_ref_bin():
    return _env_path('ETCD_REF', 'build/etcd-ref/usr/bin/etcd')


def etcdctl_bins():
    """(id, path) of the etcdctl binaries the CLI tests run with."""
    ref = os.path.join(os.path.dirname(etcd_ref_bin()), 'etcdctl')
    return [('etcdctl34', '/usr/bin/etcdctl'), ('etcdctl35', ref)]


def launch_kind(binary, role):
    kind = os.environ.get('UETCD_KIND') if role == 'uetcd' else None
    if kind:
        return kind
    return 'etcd' if os.path.basename(binary) == 'etcd' else 'uetcd'


_START_FAILURES = {}


# A server gets SIGKILL if the test process dies (a killed pytest run must not leave servers
# behind): util-linux's setpriv sets PR_SET_PDEATHSIG and execs the server. Not a
# preexec_fn: Python code between fork and exec in this many-threaded process was seen to
# abort in the child (threading's after-fork lock reinit), failing a server start.
_SETPRIV = shutil.which('setpriv')


def _with_pdeathsig(args):
    return [_SETPRIV, '--pdeathsig', 'KILL', '--'] + args if _SETPRIV else args


def free_port():
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind(('127.0.0.1', 0))
    port = s.getsockname()[1]
    s.close()
    return port


class Server:
    def __init__(self, binary, role):
        self.binary = binary
        self.name = role               # the role: "uetcd" or "etcd"
        self.kind = launch_kind(binary, role)
        self.proc = None
        self.tmp = tempfile.mkdtemp(prefix='uetcd-it-%s-' % role)
        self.data_dir = os.path.join(self.tmp, 'data')
        self.log_path = os.path.join(self.tmp, 'server.log')
        self.host = '127.0.0.1'
        self.port = None
        self.endpoint = None
        self.url = None

    # -- lifecycle -------------------------------------------------------------------
    def restart(self):
        """Stop (SIGTERM) and start again on the same data dir."""
        self._kill()
        return self.start(wipe=False)

    def start(self, wipe=True):
        if not (os.path.isfile(self.binary) and os.access(self.binary, os.X_OK)):
            pytest.fail('%s binary %r is missing or not executable (set %s)' % (
                self.name, self.binary, 'UETCD_BIN' if self.name == 'uetcd' else 'ETCD_REF'),
                pytrace=False)
        if self.binary in _START_FAILURES:  # do not wait START_TIMEOUT again for every test
            pytest.fail('%s (%s) already failed to start in this session:\n%s'
                        % (self.name, self.binary, _START_FAILURES[self.binary]), pytrace=False)
        last_err = None
        for attempt in range(2):           # a port grabbed by someone else: retry once
            self.port = free_port()
            self.endpoint = '%s:%d' % (self.host, self.port)
            self.url = 'http://' + self.endpoint
            args = [self.binary, '--data-dir', self.data_dir,
                    '--listen-client-urls', self.url, '--advertise-client-urls', self.url]
            if self.kind == 'uetcd':
                args += os.environ.get('UETCD_ARGS', '').split()
            if self.kind == 'etcd':
                peer = 'http://127.0.0.1:%d' % free_port()
                args += ['--listen-peer-urls', peer, '--initial-advertise-peer-urls', peer,
                         '--initial-cluster', 'default=' + peer, '--name', 'default',
                         '--log-level', 'warn']
            if wipe:
                shutil.rmtree(self.data_dir, ignore_errors=True)
            log = open(self.log_path, 'ab')
            # ETCD_* variables are flags to etcd (and to uetcd): do not leak ours (ETCD_REF).
            env = {k: v for k, v in os.environ.items()
                   if not k.startswith('ETCD_') and not k.startswith('ETCDCTL_')}
            self.proc = subprocess.Popen(_with_pdeathsig(args), stdin=subprocess.DEVNULL, stdout=log,
                                         stderr=subprocess.STDOUT, cwd=self.tmp, env=env,
                                         start_new_session=True)   # own process group
            log.close()
            last_err = self._wait_ready()
            if last_err is None:
                return self
            exited = self.proc.poll() is not None
            self._kill()
            if not exited:
                break                      # a timeout is not a port clash: no retry
        msg = 'did not become ready within %.0fs: %s\n--- server output tail ---\n%s' % (
            START_TIMEOUT, last_err, self.stderr_tail())
        _START_FAILURES[self.binary] = msg
        pytest.fail('%s (%s) %s' % (self.name, self.binary, msg), pytrace=False)

    def _wait_ready(self):
        """First until the port accepts TCP (cheap polling), then until a Range succeeds.
        A fresh channel per attempt: a gRPC channel that failed to connect backs off."""
        deadline = time.monotonic() + START_TIMEOUT
        last = 'port never accepted a connection'
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return 'process exited with status %s' % self.proc.returncode
            try:
                socket.create_connection((self.host, self.port), timeout=1.0).close()
                break
            except OSError:
                time.sleep(0.02)
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                return 'process exited with status %s' % self.proc.returncode
            with grpc.insecure_channel(self.endpoint) as ch:
                try:
                    rpc_pb2_grpc.KVStub(ch).Range(
                        rpc_pb2.RangeRequest(key=b'uetcd-it-ready-probe'),
                        timeout=max(0.1, min(2.0, deadline - time.monotonic())))
                    return None
                except grpc.RpcError as e:
                    last = '%s: %s' % (e.code(), e.details())
            time.sleep(0.05)
        return 'last error: ' + last

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def _signal_group(self, sig):
        try:
            os.killpg(self.proc.pid, sig)      # the server and anything it started
        except (ProcessLookupError, PermissionError):
            pass

    def _kill(self):
        """SIGTERM, then SIGKILL after STOP_TIMEOUT; to the server's own process group."""
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait(STOP_TIMEOUT)
        self._signal_group(signal.SIGKILL)     # leftovers of a server that already exited

    def stop(self):
        self._kill()
        shutil.rmtree(self.tmp, ignore_errors=True)

    def stderr_tail(self, lines=40):
        try:
            with open(self.log_path, 'rb') as f:
                data = f.read()
        except OSError:
            return '(no output file)'
        return '\n'.join(data.decode('utf-8', 'replace').splitlines()[-lines:])

    # -- helpers ---------------------------------------------------------------------
    def channel(self, **opts):
        options = [('grpc.max_receive_message_length', 64 << 20),
                   ('grpc.max_send_message_length', 64 << 20)]
        options += list(opts.items())
        return grpc.insecure_channel(self.endpoint, options=options)

    def __repr__(self):
        return '<Server %s kind=%s %s pid=%s>' % (
            self.name, self.kind, self.endpoint, self.proc and self.proc.pid)


def _binary_for(role):
    return uetcd_bin() if role == 'uetcd' else etcd_ref_bin()


_ALL_SERVERS = []


def _start(role):
    srv = Server(_binary_for(role), role)
    _ALL_SERVERS.append(srv)
    try:
        return srv.start()
    except BaseException:
        srv.stop()
        raise


class _Holder:
    """Module-scoped server that is restarted (and the culprit test failed) if it dies."""

    def __init__(self, role):
        self.role = role
        self.srv = None

    def get(self):
        if self.srv is None or not self.srv.alive():
            if self.srv is not None:
                self.srv.stop()
            self.srv = _start(self.role)
        return self.srv

    def close(self):
        if self.srv is not None:
            self.srv.stop()


def _check_alive(srv):
    if not srv.alive():
        pytest.fail('%s died during the test (exit status %s)\n--- server output tail ---\n%s\n%s'
                    % (srv.name, srv.proc.returncode, srv.stderr_tail(), _san_take()), pytrace=False)


@pytest.fixture(scope='module', autouse=True)
def _sanitizer_reports_module():
    """Set up before (so torn down after) the module's servers: reports written as they
    stop (leaks) fail the module's last test at teardown."""
    yield
    _san_fail('while this module\'s servers stopped')


@pytest.fixture(autouse=True)
def _sanitizer_reports():
    """Torn down after the test's other fixtures (spawned servers have stopped by then)."""
    yield
    _san_fail('during this test')


@pytest.fixture(scope='module')
def _uetcd_holder():
    h = _Holder('uetcd')
    yield h
    h.close()


@pytest.fixture(scope='module')
def _etcd_holder():
    h = _Holder('etcd')
    yield h
    h.close()


@pytest.fixture
def uetcd(_uetcd_holder):
    srv = _uetcd_holder.get()
    yield srv
    _check_alive(srv)


@pytest.fixture
def etcd_ref(_etcd_holder):
    srv = _etcd_holder.get()
    yield srv
    _check_alive(srv)


@pytest.fixture(params=['uetcd', 'etcd'])
def server(request):
    holder = request.getfixturevalue('_uetcd_holder' if request.param == 'uetcd'
                                     else '_etcd_holder')
    srv = holder.get()
    yield srv
    _check_alive(srv)


@pytest.fixture
def spawn(request):
    """Factory for fresh servers private to the test: spawn('uetcd') / spawn('etcd')."""
    mine = []
    request.node._uetcd_spawned = mine

    def _spawn(role):
        srv = _start(role)
        mine.append(srv)
        return srv

    yield _spawn
    dead = [(s, s.stderr_tail()) for s in mine if not s.alive()]
    for s in mine:
        s.stop()
    if dead:
        s, tail = dead[0]
        pytest.fail('%s died during the test (exit status %s)\n--- server output tail ---\n%s\n%s'
                    % (s.name, s.proc.returncode, tail, _san_take()), pytrace=False)


def pytest_collection_modifyitems(config, items):
    if os.environ.get('UETCD_REF_RUNS', '1') != '0':
        return
    keep, drop = [], []
    for item in items:
        params = getattr(getattr(item, 'callspec', None), 'params', {})
        ref = any(params.get(k) == 'etcd' for k in ('server', 'role'))
        (drop if ref else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """On failure, attach the output tail of the servers the test used (the reference etcd's
    only if it died: its warnings about refused requests are noise)."""
    outcome = yield
    rep = outcome.get_result()
    if rep.failed and call.when in ('call', 'setup'):
        seen = set()
        for val in list(getattr(item, 'funcargs', {}).values()) + \
                list(getattr(item, '_uetcd_spawned', [])):
            if isinstance(val, Server) and id(val) not in seen:
                seen.add(id(val))
                if val.name == 'etcd' and val.alive():
                    continue
                state = 'running' if val.alive() else 'exited %s' % val.proc.returncode
                rep.sections.append(('%s output tail (%s, %s)' % (val.name, val.binary, state),
                                     val.stderr_tail()))


def pytest_sessionfinish(session, exitstatus):
    for srv in _ALL_SERVERS:
        try:
            srv.stop()
        except Exception:
            pass
    late = _san_take()
    if late:                       # written after the last test's checks: fail the run
        print('\nsanitizer report(s) after the last test:\n' + late)
        session.exitstatus = 1
    if _SAN_FOUND:
        print('\nsanitizer reports kept in %s' % SAN_DIR)
    else:
        shutil.rmtree(SAN_DIR, ignore_errors=True)
