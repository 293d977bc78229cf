/* uetcd: start-up and shutdown. Parses etcd's command line, opens the data directory,
 * builds the store, starts the sequencer and one reactor per thread, then waits for a
 * signal. Signals are blocked in every thread and taken here with sigwait, so no handler
 * ever runs on a reactor. */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include "core/auth.h"
#include "core/authsvc.h"
#include "core/ckpt_worker.h"
#include "core/config.h"
#include "core/lease.h"
#include "core/log.h"
#include "core/qsbr.h"
#include "core/reactor.h"
#include "core/seq.h"
#include "core/server.h"
#include "storage/meta.h"
#include "storage/mvcc.h"
#include "storage/recover.h"
#include "storage/wal.h"
#include "tls/selfcert.h"
#include "tls/tls.h"

#define GRPC_OVERHEAD_BYTES (512 * 1024) /* etcd's slack above --max-request-bytes */
/* SIGTERM/SIGINT: the orderly shutdown (reactors finish their turn and say GOAWAY, the
 * sequencer its batch, the log is closed) gets this long; then the process exits anyway.
 * Safe: nothing is acknowledged before its fdatasync, so exiting mid-batch is a crash that
 * loses nothing acknowledged. */
#define SHUTDOWN_GRACE_MS 4000
#define STREAMS_MAX_DEFAULT 4096

static void *main_shutdown_watchdog(void *arg)
{
	struct timespec ts = {.tv_sec = SHUTDOWN_GRACE_MS / 1000, .tv_nsec = (SHUTDOWN_GRACE_MS % 1000) * 1000000L};

	(void)arg;
	while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
	log_error("shutdown did not finish within %d ms: exiting now (everything acknowledged is durable)",
		  SHUTDOWN_GRACE_MS);
	_exit(1);
}

static void main_raise_nofile(void)
{
	struct rlimit rl;

	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
}

/* Builds the TLS context when any client URL is https, from etcd's TLS flags. */
static struct tls_ctx *main_tls_ctx(const struct config *cfg)
{
	struct tls_server_config tc = {0};
	char err[512];
	bool any = false;
	int v;

	/* --auto-tls, as etcd: a certificate in data-dir/fixtures/client for the client URLs'
	 * hosts, made whether or not a listener is https, unless certificates are given */
	char auto_cert[1200], auto_key[1200];
	if (cfg->auto_tls && (cfg->cert_file[0] || cfg->key_file[0])) {
		log_warn("ignoring client auto TLS since certs given");
	} else if (cfg->auto_tls) {
		const char *hosts[CONFIG_URLS_MAX];
		char dir[1100];
		for (int u = 0; u < cfg->n_listen_client; u++)
			hosts[u] = cfg->listen_client[u].host;
		snprintf(dir, sizeof dir, "%s/fixtures/client", cfg->data_dir);
		if ((v = tls_selfcert_ensure(dir, hosts, (size_t)cfg->n_listen_client, cfg->self_signed_cert_validity_years,
					     err, sizeof err)) < 0)
			log_fatal("--auto-tls: %s", err);
		snprintf(auto_cert, sizeof auto_cert, "%s/cert.pem", dir);
		snprintf(auto_key, sizeof auto_key, "%s/key.pem", dir);
		log_info("--auto-tls: %s self-signed certificate %s (key %s)", v ? "made the" : "using the", auto_cert,
			 auto_key);
		tc.cert_file = auto_cert;
		tc.key_file = auto_key;
	}
	for (int u = 0; u < cfg->n_listen_client; u++)
		any |= strcmp(cfg->listen_client[u].scheme, "https") == 0;
	for (int u = 0; u < cfg->n_listen_metrics; u++)
		any |= strcmp(cfg->listen_metrics[u].scheme, "https") == 0;
	if (!any)
		return NULL;
	if (!tc.cert_file && (!cfg->cert_file[0] || !cfg->key_file[0]))
		log_fatal("TLS listener requires --cert-file and --key-file, or --auto-tls");
	if (!tc.cert_file) {
		tc.cert_file = cfg->cert_file;
		tc.key_file = cfg->key_file;
	}
	tc.trusted_ca_file = cfg->trusted_ca_file[0] ? cfg->trusted_ca_file : NULL;
	tc.crl_file = cfg->client_crl_file[0] ? cfg->client_crl_file : NULL;
	tc.client_cert_auth = cfg->client_cert_auth;
	tc.cipher_suites = cfg->cipher_suites;
	if ((v = tls_version_parse(cfg->tls_min_version, err, sizeof err)) < 0)
		log_fatal("%s", err);
	tc.min_version = v;
	if ((v = tls_version_parse(cfg->tls_max_version, err, sizeof err)) < 0)
		log_fatal("%s", err);
	tc.max_version = v;
	struct tls_ctx *ctx = tls_ctx_new(&tc, err, sizeof err);
	if (!ctx)
		log_fatal("cannot set up TLS: %s", err);
	return ctx;
}

struct main_recover {
	struct lease_table *leases;
	uint64_t now_ms;
	struct authsvc *auth;
	_Atomic unsigned *alarms;
};

static void main_alarms(void *arg, uint32_t alarms)
{
	struct main_recover *m = arg;

	atomic_store(m->alarms, alarms);
}

static int main_auth_state(void *arg, const uint8_t *b, size_t len)
{
	struct main_recover *m = arg;
	int err;
	struct auth *a = auth_state_decode(b, len, &err);

	if (!a)
		return -1;
	authsvc_replace(m->auth, a);
	return 0;
}

static int main_auth_op(void *arg, const uint8_t *b, size_t len)
{
	struct main_recover *m = arg;
	struct auth_op op;

	if (auth_op_decode(b, len, &op))
		return -1;
	auth_apply(authsvc_writer(m->auth), &op); /* logged only when it succeeded: it succeeds again */
	return 0;
}

static void main_lease_grant(void *arg, int64_t id, int64_t ttl)
{
	struct main_recover *m = arg;

	lease_grant(m->leases, id, ttl, m->now_ms); /* a restart starts every TTL anew, as etcd */
}

static void main_lease_revoke(void *arg, int64_t id)
{
	struct main_recover *m = arg;

	lease_revoke(m->leases, id, NULL, NULL);
}

static int main_lease_attach(void *arg, const struct mvcc_kv *kv)
{
	if (kv->lease)
		lease_attach(arg, kv->lease, kv->key, kv->key_len);
	return 0;
}

static uint64_t main_clock_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static void main_deliver(void *arg, int reactor, struct seq_req *list)
{
	struct server *srv = arg;

	reactor_deliver(srv->reactors[reactor], list);
}

static void main_deliver_events(void *arg, int reactor, struct watch_batch *b)
{
	struct server *srv = arg;

	reactor_deliver_watch(srv->reactors[reactor], b);
}

/* Ends the process on a listener error, in etcd's words for a port already taken
 * ("listen tcp 127.0.0.1:2379: bind: address already in use"), so scripts match either. */
static void main_listen_fatal(const struct config_url *u, int rc)
{
	if (rc == -EADDRINUSE)
		log_fatal("failed to start: listen tcp %s%s%s:%u: bind: address already in use",
			  strchr(u->host, ':') ? "[" : "", u->host, strchr(u->host, ':') ? "]" : "", u->port);
	log_fatal("listen on %s: %s", u->text, strerror(-rc));
}

int main(int argc, char **argv, char **envp)
{
	static struct config cfg;
	struct server srv;
	struct meta meta;
	sigset_t sigs;
	int rc, sig;

	rc = config_parse(&cfg, argc, argv, envp);
	if (rc == 1)
		return 0;
	if (rc < 0)
		return cfg.exit_status; /* 2 for syntax, 1 for flag verification, as etcd */
	log_set_level((enum log_level)config_log_level(&cfg));

	sigemptyset(&sigs);
	sigaddset(&sigs, SIGINT);
	sigaddset(&sigs, SIGTERM);
	sigaddset(&sigs, SIGHUP);
	pthread_sigmask(SIG_BLOCK, &sigs, NULL);
	signal(SIGPIPE, SIG_IGN);
	main_raise_nofile();

	struct meta want = {0};
	if (meta_derive_ids(cfg.initial_cluster, cfg.name, cfg.initial_advertise_peer_urls, cfg.initial_cluster_token,
			    &want) < 0)
		log_warn("--name %s is not in --initial-cluster: a new data dir gets random ids, not etcd's", cfg.name);
	rc = meta_open_with(cfg.data_dir, &want, &meta); /* a new data dir: etcd's ids for these flags */
	if (rc < 0)
		log_fatal("cannot open data directory %s: %s", cfg.data_dir, strerror(-rc));
	if ((rc = meta_lock(cfg.data_dir)) < 0)
		log_fatal("cannot lock data directory %s: %s", cfg.data_dir,
			  rc == -EWOULDBLOCK ? "another uetcd is using it" : strerror(-rc));
	if ((rc = meta_start_term(cfg.data_dir, &meta)) < 0) /* each start is a new term, as etcd's */
		log_fatal("cannot record the new raft term in %s/meta: %s", cfg.data_dir, strerror(-rc));

	memset(&srv, 0, sizeof srv);
	srv.cfg = &cfg;
	srv.nreactors = cfg.threads > 0 ? cfg.threads : (int)sysconf(_SC_NPROCESSORS_ONLN);
	if (srv.nreactors < 1)
		srv.nreactors = 1;
	srv.ids.cluster_id = meta.cluster_id;
	srv.ids.member_id = meta.member_id;
	srv.ids.raft_term = meta.raft_term;
	srv.limits.max_txn_ops = cfg.max_txn_ops;
	srv.limits.max_request_bytes = cfg.max_request_bytes;
	grpc_conn_config_default(&srv.grpc);
	srv.grpc.max_recv_msg_size = (uint32_t)(cfg.max_request_bytes + GRPC_OVERHEAD_BYTES);
	if (cfg.max_concurrent_streams && cfg.max_concurrent_streams < STREAMS_MAX_DEFAULT)
		srv.grpc.max_concurrent_streams = cfg.max_concurrent_streams;
	srv.tls_ctx = main_tls_ctx(&cfg);
	srv.qsbr = qsbr_new(srv.nreactors + 1); /* the reactors and the checkpoint worker */
	srv.store = mvcc_store_new(srv.qsbr);
	char aerr[512];
	srv.auth = authsvc_new(cfg.auth_token, cfg.auth_token_ttl_s, cfg.bcrypt_cost, srv.qsbr, aerr, sizeof aerr);
	if (!srv.auth)
		log_fatal("%s", aerr);
	struct main_recover mr = {.leases = lease_table_new(main_clock_ms()), .now_ms = main_clock_ms(), .auth = srv.auth,
				 .alarms = &srv.alarms};
	uint64_t ckpt_bytes = 0;
	{
		/* one batch's record may be large (a delete of a big range): let it grow to the max */
		struct wal_options wo = {.no_fsync = cfg.unsafe_no_fsync, .pending_bytes = WAL_PENDING_BYTES_MAX};
		struct recover_hooks hooks = {.lease_grant = main_lease_grant,
					      .lease_revoke = main_lease_revoke,
					      .auth_op = main_auth_op,
					      .auth_state = main_auth_state,
					      .alarms = main_alarms,
					      .arg = &mr};
		struct mvcc_view v;
		char err[1024];
		rc = recover_open(cfg.data_dir, &wo, srv.store, &hooks, &srv.wal, &ckpt_bytes, err, sizeof err);
		if (rc < 0)
			log_fatal("cannot recover %s: %s", cfg.data_dir, err[0] ? err : strerror(-rc));
		if (cfg.unsafe_no_fsync)
			log_warn("--unsafe-no-fsync: acknowledged writes may be lost on power failure");
		if (atomic_load(&srv.alarms))
			log_warn("alarms active since before the restart (%s%s): writes are capped until `etcdctl alarm disarm`",
				 atomic_load(&srv.alarms) & 2 ? "NOSPACE " : "", atomic_load(&srv.alarms) & 4 ? "CORRUPT" : "");
		/* attachments follow from the keys: every live key names its lease */
		static const uint8_t all = 0;
		mvcc_view_published(srv.store, &v);
		mvcc_range(&v, &all, 1, &all, 1, 0, false, main_lease_attach, mr.leases);
	}
	struct seq_deliver deliver = {.requests = main_deliver, .events = main_deliver_events, .arg = &srv};
	srv.seq = seq_new(srv.store, srv.wal, mr.leases, &srv.ids, srv.nreactors, &deliver);
	seq_set_alarms(srv.seq, &srv.alarms);
	authsvc_publish(srv.auth); /* what recovery rebuilt, before any reader runs */
	seq_set_auth(srv.seq, srv.auth);
	seq_set_checkpoints(srv.seq, ckpt_worker_new(cfg.data_dir, srv.qsbr, cfg.unsafe_no_fsync, seq_ckpt_done, srv.seq),
			    cfg.checkpoint_log_bytes, cfg.snapshot_count, ckpt_bytes);
	seq_set_quota(srv.seq, config_quota_bytes(&cfg), cfg.max_request_bytes + GRPC_OVERHEAD_BYTES);
	if (!config_quota_bytes(&cfg))
		log_info("disabled backend quota (--quota-backend-bytes=%lld)", (long long)cfg.quota_backend_bytes);
	if (config_auto_compaction_retention(&cfg) > 0) {
		bool periodic = strcmp(cfg.auto_compaction_mode, "periodic") == 0;
		seq_set_autocompact(srv.seq, periodic, config_auto_compaction_retention(&cfg));
		log_info("auto compaction: %s, retention %s", cfg.auto_compaction_mode, cfg.auto_compaction_retention);
	}
	srv.reactors = calloc((size_t)srv.nreactors, sizeof *srv.reactors);
	if (!srv.reactors)
		log_fatal("out of memory");
	for (int i = 0; i < srv.nreactors; i++) {
		srv.reactors[i] = reactor_new(&srv, i);
		for (int u = 0; u < cfg.n_listen_client; u++) {
			rc = reactor_listen(srv.reactors[i], &cfg.listen_client[u]);
			if (rc < 0)
				main_listen_fatal(&cfg.listen_client[u], rc);
		}
		/* the metrics listeners answer the same way: etcd's probes and /metrics live there */
		for (int u = 0; u < cfg.n_listen_metrics; u++) {
			rc = reactor_listen(srv.reactors[i], &cfg.listen_metrics[u]);
			if (rc < 0)
				main_listen_fatal(&cfg.listen_metrics[u], rc);
		}
	}
	if ((rc = seq_start(srv.seq)) < 0)
		log_fatal("cannot start the sequencer: %s", strerror(-rc));
	for (int i = 0; i < srv.nreactors; i++)
		if ((rc = reactor_start(srv.reactors[i])) < 0)
			log_fatal("cannot start reactor %d: %s", i, strerror(-rc));
	for (int u = 0; u < cfg.n_listen_client; u++)
		log_info("serving client traffic on %s (name %s, data dir %s, %d reactors)", cfg.listen_client[u].text,
			 cfg.name, cfg.data_dir, srv.nreactors);
	log_info("ready to serve client requests");

	/* SIGHUP ends the server like SIGTERM, as it ends etcd (Go's default): supervisors and
	 * closing terminals rely on it. Certificates are reloaded when their files change. */
	while (sigwait(&sigs, &sig) != 0)
		;
	log_info("received %s, shutting down", strsignal(sig));
	pthread_t watchdog;
	if (pthread_create(&watchdog, NULL, main_shutdown_watchdog, NULL) == 0)
		pthread_detach(watchdog);
	atomic_store(&srv.stopping, true);
	for (int i = 0; i < srv.nreactors; i++)
		reactor_stop(srv.reactors[i]);
	seq_stop(srv.seq);
	if ((rc = wal_close(srv.wal)) < 0)
		log_error("closing the log: %s", strerror(-rc));
	exit(0); /* not return: what srv holds stays reachable for LeakSanitizer's exit check */
}
