/* core/config: etcd's command line. Each test runs in its own process (Criterion's default),
 * so tests may print, set the environment and write temporary files freely. Expected
 * behaviour was taken from the reference etcd 3.5.16 binary and etcd 3.6's sources; see
 * the header of core/config.h. */
#include <criterion/criterion.h>
#include <criterion/redirect.h>
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/config.h"
#include "core/log.h"

static char *no_env[] = { NULL };

/* Parses "etcd" + the NULL-terminated arguments with environment env. */
static int parse_env(struct config *c, char **env, ...)
{
	char *argv[64] = { "etcd" };
	int argc = 1;
	va_list ap;
	va_start(ap, env);
	for (char *a; (a = va_arg(ap, char *)) != NULL && argc < 63;)
		argv[argc++] = a;
	va_end(ap);
	argv[argc] = NULL;
	return config_parse(c, argc, argv, env);
}
#define parse(c, ...) parse_env(c, no_env, __VA_ARGS__, NULL)
#define parse0(c) parse_env(c, no_env, NULL)

static void quiet(void)
{
	cr_redirect_stdout();
	cr_redirect_stderr();
}

static char tmp_path[64];

static const char *write_tmp(const char *text)
{
	strcpy(tmp_path, "/tmp/uetcd_config_test_XXXXXX");
	int fd = mkstemp(tmp_path);
	cr_assert(fd >= 0);
	cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
	return tmp_path;
}

static void rm_tmp(void)
{
	if (tmp_path[0])
		unlink(tmp_path);
}

/* ---- durations ------------------------------------------------------------------------ */

Test(config_duration, valid)
{
	cr_assert_eq(config_parse_duration_ms("5s"), 5000);
	cr_assert_eq(config_parse_duration_ms("100ms"), 100);
	cr_assert_eq(config_parse_duration_ms("1m30s"), 90000);
	cr_assert_eq(config_parse_duration_ms("1h"), 3600000);
	cr_assert_eq(config_parse_duration_ms("2h45m"), 9900000);
	cr_assert_eq(config_parse_duration_ms("1.5s"), 1500);
	cr_assert_eq(config_parse_duration_ms(".5s"), 500);
	cr_assert_eq(config_parse_duration_ms("5.s"), 5000);
	cr_assert_eq(config_parse_duration_ms("+5s"), 5000);
	cr_assert_eq(config_parse_duration_ms("10m"), 600000);
	cr_assert_eq(config_parse_duration_ms("0"), 0);
	cr_assert_eq(config_parse_duration_ms("0s"), 0);
	cr_assert_eq(config_parse_duration_ms("1h1m1s1ms"), 3661001);
}

Test(config_duration, sub_millisecond_rounds_up)
{
	cr_assert_eq(config_parse_duration_ms("300us"), 1);
	cr_assert_eq(config_parse_duration_ms("300\xc2\xb5s"), 1); /* micro sign */
	cr_assert_eq(config_parse_duration_ms("300\xce\xbcs"), 1); /* Greek mu */
	cr_assert_eq(config_parse_duration_ms("10ns"), 1);
	cr_assert_eq(config_parse_duration_ms("1.5ms"), 2);
	cr_assert_eq(config_parse_duration_ms("1000us"), 1);
	cr_assert_eq(config_parse_duration_ms("1001us"), 2);
}

Test(config_duration, nanoseconds)
{
	int64_t ns;
	cr_assert_eq(config_parse_duration_ns("1h2m3.5s", &ns), 0);
	cr_assert_eq(ns, INT64_C(3723500000000));
	cr_assert_eq(config_parse_duration_ns("-5s", &ns), 0);
	cr_assert_eq(ns, INT64_C(-5000000000));
	cr_assert_eq(config_parse_duration_ns("2562047h", &ns), 0);
	cr_assert_eq(config_parse_duration_ns("1.000000001s", &ns), 0);
	cr_assert_eq(ns, INT64_C(1000000001));
}

Test(config_duration, invalid)
{
	const char *bad[] = { "", "5", "5x", "s", ".s", "1e3s", "5s ", " 5s", "5 s", "-", "+",
			      "1.2.3s", "2562048h", "9999999999999999999ns", "5S", "5sec", "1m-5s" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		cr_assert_eq(config_parse_duration_ms(bad[i]), -1, "accepted \"%s\"", bad[i]);
	cr_assert_eq(config_parse_duration_ms("-5s"), -1, "negative is invalid for the ms helper");
	int64_t ns;
	cr_assert_eq(config_parse_duration_ns("5", &ns), -EINVAL);
	cr_assert_eq(config_parse_duration_ns(NULL, &ns), -EINVAL);
}

/* ---- bools ---------------------------------------------------------------------------- */

Test(config_bool, go_syntax)
{
	const char *t[] = { "1", "t", "T", "TRUE", "true", "True" };
	const char *f[] = { "0", "f", "F", "FALSE", "false", "False" };
	const char *bad[] = { "", "yes", "no", "on", "TRue", "2", "true ", "tRUE" };
	bool b;
	for (size_t i = 0; i < 6; i++) {
		b = false;
		cr_assert_eq(config_parse_bool(t[i], &b), 0);
		cr_assert(b, "%s", t[i]);
		b = true;
		cr_assert_eq(config_parse_bool(f[i], &b), 0);
		cr_assert(!b, "%s", f[i]);
	}
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		cr_assert_eq(config_parse_bool(bad[i], &b), -EINVAL, "%s", bad[i]);
}

Test(config_bool, flag_forms, .init = quiet)
{
	struct config c;
	cr_assert_eq(parse(&c, "--client-cert-auth"), 0);
	cr_assert(c.client_cert_auth);
	cr_assert_eq(parse(&c, "--client-cert-auth=T"), 0);
	cr_assert(c.client_cert_auth);
	cr_assert_eq(parse(&c, "--client-cert-auth=1"), 0);
	cr_assert(c.client_cert_auth);
	cr_assert_eq(parse(&c, "-strict-reconfig-check=False"), 0);
	cr_assert(!c.strict_reconfig_check);
	cr_assert_eq(parse(&c, "--client-cert-auth=yes"), -1);
	cr_assert_eq(c.exit_status, 2);
	/* Go's bool flags never take the next argument: "true" is then a stray argument */
	cr_assert_eq(parse(&c, "--client-cert-auth", "true"), -1);
	cr_assert_eq(c.exit_status, 1);
}

/* ---- URLs ----------------------------------------------------------------------------- */

Test(config_url, valid)
{
	struct config_url u;
	cr_assert_eq(config_parse_url("http://127.0.0.1:2379", &u), 0);
	cr_assert_str_eq(u.scheme, "http");
	cr_assert_str_eq(u.host, "127.0.0.1");
	cr_assert_eq(u.port, 2379);
	cr_assert_str_eq(u.text, "http://127.0.0.1:2379");
	cr_assert_eq(config_parse_url("https://[::1]:2379", &u), 0);
	cr_assert_str_eq(u.scheme, "https");
	cr_assert_str_eq(u.host, "::1");
	cr_assert_eq(u.port, 2379);
	cr_assert_eq(config_parse_url("https://[fe80::1:2]:443", &u), 0);
	cr_assert_str_eq(u.host, "fe80::1:2");
	cr_assert_eq(config_parse_url("http://localhost:2379", &u), 0);
	cr_assert_str_eq(u.host, "localhost");
	cr_assert_eq(config_parse_url("HTTP://0.0.0.0:0", &u), 0);
	cr_assert_str_eq(u.scheme, "http");
	cr_assert_eq(u.port, 0);
	cr_assert_eq(config_parse_url("unix://localhost:12345", &u), 0);
	cr_assert_str_eq(u.scheme, "unix");
	cr_assert_str_eq(u.host, "localhost");
	cr_assert_eq(config_parse_url("unixs://sock", &u), 0);
	cr_assert_str_eq(u.host, "sock");
	cr_assert_eq(config_parse_url(" http://10.0.0.1:2379 ", &u), 0, "etcd trims spaces");
	cr_assert_str_eq(u.text, "http://10.0.0.1:2379");
}

Test(config_url, invalid)
{
	const char *bad[] = { "127.0.0.1:2379", "localhost:2379", "http://127.0.0.1", "ftp://a:1",
			      "http://a:1/", "http://a:1/path", "http://[::1:2379", "http://[::1]",
			      "http://a:99999", "http://a:b", "http://::1:2379", "", "http://a:",
			      "//a:1" };
	struct config_url u;
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
		cr_assert_eq(config_parse_url(bad[i], &u), -1, "accepted \"%s\"", bad[i]);
}

Test(config_url, lists_and_errors, .init = quiet)
{
	struct config c;
	cr_assert_eq(parse(&c, "--listen-client-urls", "http://127.0.0.1:2379,https://10.0.0.1:2379,http://[::1]:2379",
			   "--advertise-client-urls", "https://10.0.0.1:2379"), 0);
	cr_assert_eq(c.n_listen_client, 3);
	cr_assert_str_eq(c.listen_client[1].scheme, "https");
	cr_assert_str_eq(c.listen_client[1].host, "10.0.0.1");
	cr_assert_str_eq(c.listen_client[2].host, "::1");
	/* duplicates are dropped as etcd's unique URL lists do */
	cr_assert_eq(parse(&c, "--listen-client-urls=http://127.0.0.1:2379,http://127.0.0.1:2379",
			   "--advertise-client-urls=http://127.0.0.1:2379"), 0);
	cr_assert_eq(c.n_listen_client, 1);
	/* a bad URL on the command line is a flag syntax error (exit 2) */
	cr_assert_eq(parse(&c, "--listen-client-urls=http://127.0.0.1"), -1);
	cr_assert_eq(c.exit_status, 2);
	cr_assert_eq(parse(&c, "--listen-metrics-urls=127.0.0.1:2381"), -1);
	cr_assert_eq(c.exit_status, 2);
	/* listeners must bind an IP or localhost; advertised URLs need a host (exit 1) */
	cr_assert_eq(parse(&c, "--listen-client-urls=http://example.com:2379", "--advertise-client-urls=http://x:1"), -1);
	cr_assert_eq(c.exit_status, 1);
	cr_assert_eq(parse(&c, "--advertise-client-urls=http://:2379"), -1);
	cr_assert_eq(c.exit_status, 1);
	/* etcd requires --advertise-client-urls once --listen-client-urls is given */
	cr_assert_eq(parse(&c, "--listen-client-urls=http://127.0.0.1:2379"), -1);
	cr_assert_eq(c.exit_status, 1);
	cr_assert_eq(parse(&c, "--listen-metrics-urls=http://127.0.0.1:2381,http://[::1]:2381"), 0);
	cr_assert_eq(c.n_listen_metrics, 2);
	cr_assert_eq(c.listen_metrics[0].port, 2381);
}

Test(config_url, too_many, .init = quiet)
{
	char list[2048] = "";
	for (int i = 0; i < CONFIG_URLS_MAX + 1; i++)
		sprintf(list + strlen(list), "%shttp://127.0.0.1:%d", i ? "," : "", 3000 + i);
	struct config c;
	cr_assert_eq(parse(&c, "--listen-metrics-urls", list), -1);
}

/* ---- defaults and flag forms ---------------------------------------------------------- */

Test(config, defaults, .init = quiet)
{
	struct config c;
	cr_assert_eq(parse0(&c), 0);
	cr_assert_str_eq(c.name, "default");
	cr_assert_str_eq(c.data_dir, "default.etcd");
	cr_assert_eq(c.n_listen_client, 1);
	cr_assert_str_eq(c.listen_client[0].text, "http://localhost:2379");
	cr_assert_str_eq(c.listen_client[0].host, "localhost");
	cr_assert_eq(c.listen_client[0].port, 2379);
	cr_assert_eq(c.n_listen_metrics, 0);
	cr_assert_str_eq(c.advertise_client_urls, "http://localhost:2379");
	cr_assert_str_eq(c.initial_advertise_peer_urls, "http://localhost:2380");
	cr_assert_str_eq(c.initial_cluster_token, "etcd-cluster");
	cr_assert_eq(c.threads, (int)sysconf(_SC_NPROCESSORS_ONLN));
	cr_assert_eq(c.max_request_bytes, 1572864);
	cr_assert_eq(c.max_txn_ops, 128);
	cr_assert_eq(c.max_concurrent_streams, UINT32_MAX);
	cr_assert_eq(c.quota_backend_bytes, 0);
	cr_assert(!c.unsafe_no_fsync);
	cr_assert_eq(c.snapshot_count, 100000);
	cr_assert_eq(c.watch_progress_notify_interval_ms, 600000);
	cr_assert_eq(c.grpc_keepalive_min_time_ms, 5000);
	cr_assert_eq(c.grpc_keepalive_interval_ms, 7200000);
	cr_assert_eq(c.grpc_keepalive_timeout_ms, 20000);
	cr_assert_str_eq(c.auto_compaction_mode, "periodic");
	cr_assert_str_eq(c.auto_compaction_retention, "0");
	cr_assert_str_eq(c.cert_file, "");
	cr_assert(!c.client_cert_auth);
	cr_assert(!c.auto_tls);
	cr_assert_str_eq(c.tls_min_version, "TLS1.2");
	cr_assert_str_eq(c.tls_max_version, "");
	cr_assert_str_eq(c.auth_token, "simple");
	cr_assert_eq(c.auth_token_ttl_s, 300);
	cr_assert_eq(c.bcrypt_cost, 10);
	cr_assert_str_eq(c.log_level, "info");
	cr_assert_str_eq(c.log_outputs, "default");
	cr_assert(!c.initial_corrupt_check);
	cr_assert(c.strict_reconfig_check);
	cr_assert(!c.enable_pprof);
	cr_assert(c.enable_grpc_gateway);
	cr_assert_eq(c.feature_gates, CONFIG_GATE_TXN_MODE_WRITE_WITH_SHARED_BUFFER);
	cr_assert_str_eq(c.config_file, "");
	cr_assert_eq(config_log_level(&c), LOG_INFO);
}

Test(config, all_forms, .init = quiet)
{
	const char *forms[][2] = { { "--name=n1", NULL }, { "--name", "n1" }, { "-name=n1", NULL }, { "-name", "n1" } };
	for (size_t i = 0; i < 4; i++) {
		struct config c;
		int rc = forms[i][1] ? parse(&c, (char *)forms[i][0], (char *)forms[i][1]) : parse(&c, (char *)forms[i][0]);
		cr_assert_eq(rc, 0, "form %zu", i);
		cr_assert_str_eq(c.name, "n1");
		cr_assert_str_eq(c.data_dir, "n1.etcd", "data-dir defaults to ${name}.etcd");
	}
	struct config c;
	/* a value is taken even if it starts with '-', as Go does */
	cr_assert_eq(parse(&c, "--name", "-x"), 0);
	cr_assert_str_eq(c.name, "-x");
	/* the last one wins */
	cr_assert_eq(parse(&c, "--name=a", "--name=b"), 0);
	cr_assert_str_eq(c.name, "b");
	cr_assert_eq(parse(&c, "--name="), 0);
	cr_assert_str_eq(c.name, "");
}

Test(config, honoured_values, .init = quiet)
{
	struct config c;
	cr_assert_eq(parse(&c, "--data-dir=/var/lib/etcd", "--max-request-bytes=0x200000", "--max-txn-ops", "1_024",
			   "--max-concurrent-streams=100", "--quota-backend-bytes=8589934592", "--unsafe-no-fsync",
			   "--snapshot-count=10000", "--grpc-keepalive-min-time=1s", "--grpc-keepalive-interval=0",
			   "--grpc-keepalive-timeout=1m", "--auto-compaction-mode=revision", "--auto-compaction-retention=1000",
			   "--cert-file=/c", "--key-file=/k", "--trusted-ca-file=/ca", "--client-crl-file=/crl", "--auto-tls",
			   "--tls-min-version=TLS1.2", "--tls-max-version=TLS1.3", "--cipher-suites=TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256",
			   "--auth-token=jwt,pub-key=/a,priv-key=/b,sign-method=RS256", "--auth-token-ttl=60", "--bcrypt-cost=4",
			   "--log-level=debug", "--log-outputs=stderr", "--logger=zap", "--enable-pprof", "--enable-grpc-gateway=false",
			   "--initial-cluster-token=tok", "--threads=3", "--initial-advertise-peer-urls=https://10.0.0.1:2380"), 0);
	cr_assert_str_eq(c.data_dir, "/var/lib/etcd");
	cr_assert_eq(c.max_request_bytes, 0x200000);
	cr_assert_eq(c.max_txn_ops, 1024);
	cr_assert_eq(c.max_concurrent_streams, 100);
	cr_assert_eq(c.quota_backend_bytes, INT64_C(8589934592));
	cr_assert(c.unsafe_no_fsync);
	cr_assert_eq(c.snapshot_count, 10000);
	cr_assert_eq(c.grpc_keepalive_min_time_ms, 1000);
	cr_assert_eq(c.grpc_keepalive_interval_ms, 0);
	cr_assert_eq(c.grpc_keepalive_timeout_ms, 60000);
	cr_assert_str_eq(c.auto_compaction_mode, "revision");
	cr_assert_str_eq(c.auto_compaction_retention, "1000");
	cr_assert_str_eq(c.cert_file, "/c");
	cr_assert_str_eq(c.key_file, "/k");
	cr_assert_str_eq(c.trusted_ca_file, "/ca");
	cr_assert_str_eq(c.client_crl_file, "/crl");
	cr_assert(c.auto_tls);
	cr_assert_str_eq(c.tls_max_version, "TLS1.3");
	cr_assert_str_eq(c.cipher_suites, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256");
	cr_assert_str_eq(c.auth_token, "jwt,pub-key=/a,priv-key=/b,sign-method=RS256");
	cr_assert_eq(c.auth_token_ttl_s, 60);
	cr_assert_eq(c.bcrypt_cost, 4);
	cr_assert_str_eq(c.log_level, "debug");
	cr_assert_eq(config_log_level(&c), LOG_DEBUG);
	cr_assert_str_eq(c.log_outputs, "stderr");
	cr_assert(c.enable_pprof);
	cr_assert(!c.enable_grpc_gateway);
	cr_assert_str_eq(c.initial_cluster_token, "tok");
	cr_assert_eq(c.threads, 3);
	cr_assert_str_eq(c.initial_advertise_peer_urls, "https://10.0.0.1:2380");
}

Test(config, value_errors, .init = quiet)
{
	struct config c;
	/* Go's integer syntax only: no size suffixes, as etcd */
	cr_assert_eq(parse(&c, "--quota-backend-bytes=8G"), -1);
	cr_assert_eq(c.exit_status, 2);
	cr_assert_eq(parse(&c, "--max-txn-ops=-1"), -1);
	cr_assert_eq(parse(&c, "--max-concurrent-streams=5000000000"), -1);
	cr_assert_eq(parse(&c, "--max-concurrent-streams=0x10"), -1, "etcd reads this one in base 10");
	cr_assert_eq(parse(&c, "--snapshot-count=1__0"), -1);
	cr_assert_eq(parse(&c, "--grpc-keepalive-min-time=5"), -1);
	cr_assert_eq(c.exit_status, 2);
	cr_assert_eq(parse(&c, "--initial-cluster-state=bogus"), -1);
	cr_assert_eq(parse(&c, "--threads=0"), -1);
	cr_assert_eq(parse(&c, "--name"), -1, "flag needs an argument");
	cr_assert_eq(c.exit_status, 2);
	/* checked after parsing (exit 1) */
	cr_assert_eq(parse(&c, "--auto-compaction-mode=x"), -1);
	cr_assert_eq(c.exit_status, 1);
	cr_assert_eq(parse(&c, "--auto-compaction-retention=abc"), -1);
	cr_assert_eq(parse(&c, "--auto-compaction-retention=5m"), 0);
	cr_assert_eq(parse(&c, "--auto-compaction-retention=1"), 0);
	cr_assert_eq(parse(&c, "--tls-min-version=TLS1.1"), -1);
	cr_assert_eq(parse(&c, "--tls-min-version=TLS1.3", "--tls-max-version=TLS1.2"), -1);
	cr_assert_eq(parse(&c, "--tls-min-version=TLS1.3", "--cipher-suites=X"), -1);
	cr_assert_eq(parse(&c, "--logger=capnslog"), -1);
	cr_assert_eq(parse(&c, "--log-level=bogus"), -1);
	cr_assert_eq(c.exit_status, 2);
	cr_assert_eq(parse(&c, "--heartbeat-interval=300"), -1, "election timeout must be 5x heartbeat");
	cr_assert_eq(c.exit_status, 1);
	cr_assert_eq(parse(&c, "--heartbeat-interval=100", "--election-timeout=500"), 0);
	/* an invalid bcrypt cost falls back to 10 with a warning, as etcd's auth store does */
	cr_assert_eq(parse(&c, "--bcrypt-cost=99"), 0);
	cr_assert_eq(c.bcrypt_cost, 10);
	/* non-positive progress interval keeps etcd's 10m */
	cr_assert_eq(parse(&c, "--watch-progress-notify-interval=0"), 0);
	cr_assert_eq(c.watch_progress_notify_interval_ms, 600000);
}

Test(config, unknown_flag, .init = cr_redirect_stderr)
{
	struct config c;
	cr_assert_eq(parse(&c, "--foo"), -1);
	cr_assert_eq(c.exit_status, 2);
	fflush(stderr);
	cr_assert_stderr_eq_str("flag provided but not defined: -foo\n"
				"Usage:\n\n"
				"  etcd [flags]\n"
				"    Start uetcd, a single-node server that speaks etcd's v3 API.\n\n"
				"  etcd --version\n"
				"    Print the etcd API version uetcd implements, and uetcd's own version.\n\n"
				"  etcd -h | --help\n"
				"    Print this help.\n\n"
				"  etcd --config-file\n"
				"    Read the configuration from a YAML file; other flags and ETCD_* environment\n"
				"    variables are then ignored.\n");
}

Test(config, syntax_errors, .init = quiet)
{
	struct config c;
	cr_assert_eq(parse(&c, "-foo=1"), -1);
	cr_assert_eq(c.exit_status, 2);
	cr_assert_eq(parse(&c, "---name=x"), -1);
	cr_assert_eq(c.exit_status, 2);
	cr_assert_eq(parse(&c, "-=x"), -1);
	cr_assert_eq(c.exit_status, 2);
	/* the first bad flag stops parsing, so an unknown flag after --version still fails */
	cr_assert_eq(parse(&c, "--version", "--foo"), -1);
	/* stray arguments: etcd's "'x' is not a valid flag", exit 1 */
	cr_assert_eq(parse(&c, "junk"), -1);
	cr_assert_eq(c.exit_status, 1);
	cr_assert_eq(parse(&c, "--", "--name=x"), -1);
	cr_assert_eq(c.exit_status, 1);
	cr_assert_eq(parse(&c, "--name=x", "-"), -1);
}

Test(config, ignored_and_peer_flags, .init = quiet)
{
	struct config c;
	cr_assert_eq(parse(&c, "--listen-peer-urls=http://127.0.0.1:2380", "--initial-cluster=a=http://127.0.0.1:2380",
			   "--initial-cluster-state=existing", "--peer-auto-tls", "--discovery-srv=example.com",
			   "--heartbeat-interval=50", "--election-timeout=500", "--pre-vote=false",
			   "--wal-dir=/w", "--max-wals=0", "--metrics=extensive", "--cors=*", "--enable-v2=false",
			   "--proxy=off", "--v2-deprecation=gone", "--experimental-compaction-batch-limit=10",
			   "--compaction-batch-limit=10", "--log-format=console", "--memory-mlock",
			   "--experimental-enable-distributed-tracing", "--socket-reuse-port",
			   "--backend-batch-interval=-5s", "--config", "--vv", "--force-new-cluster",
			   "--max-learners=2", "--snapshot-catchup-entries=10", "--discovery-endpoints=a,b",
			   "--experimental-memory-mlock", "--experimental-snapshot-catchup-entries=5"), 0);
	/* peer URLs are still checked like etcd checks them */
	cr_assert_eq(parse(&c, "--listen-peer-urls=http://example.com:2380"), -1);
	cr_assert_eq(parse(&c, "--listen-peer-urls=localhost:2380"), -1);
	cr_assert_eq(c.exit_status, 2);
}

Test(config, watch_progress_both_spellings, .init = quiet)
{
	struct config c;
	cr_assert_eq(parse(&c, "--experimental-watch-progress-notify-interval=5s"), 0);
	cr_assert_eq(c.watch_progress_notify_interval_ms, 5000);
	cr_assert_eq(parse(&c, "--watch-progress-notify-interval=5s"), 0);
	cr_assert_eq(c.watch_progress_notify_interval_ms, 5000);
	cr_assert_eq(parse(&c, "--watch-progress-notify-interval", "250ms"), 0);
	cr_assert_eq(c.watch_progress_notify_interval_ms, 250);
	/* both: the experimental name wins, as in etcd 3.6 */
	cr_assert_eq(parse(&c, "--experimental-watch-progress-notify-interval=2s", "--watch-progress-notify-interval=7s"), 0);
	cr_assert_eq(c.watch_progress_notify_interval_ms, 2000);
}

/* ---- feature gates -------------------------------------------------------------------- */

Test(config_gates, parse, .init = quiet)
{
	struct config c;
	cr_assert_eq(parse(&c, "--feature-gates=InitialCorruptCheck=true"), 0);
	cr_assert(c.initial_corrupt_check);
	cr_assert(c.feature_gates & CONFIG_GATE_INITIAL_CORRUPT_CHECK);
	cr_assert_eq(parse(&c, "--feature-gates", "StopGRPCServiceOnDefrag=true, TxnModeWriteWithSharedBuffer=false,,CompactHashCheck=T"), 0);
	cr_assert_eq(c.feature_gates, CONFIG_GATE_STOP_GRPC_SERVICE_ON_DEFRAG | CONFIG_GATE_COMPACT_HASH_CHECK);
	cr_assert(!c.initial_corrupt_check);
	/* repeated flags merge, as Go's featuregate.Set does */
	cr_assert_eq(parse(&c, "--feature-gates=InitialCorruptCheck=true", "--feature-gates=LeaseCheckpoint=true"), 0);
	cr_assert_eq(c.feature_gates, CONFIG_GATE_INITIAL_CORRUPT_CHECK | CONFIG_GATE_LEASE_CHECKPOINT |
					      CONFIG_GATE_TXN_MODE_WRITE_WITH_SHARED_BUFFER);
	cr_assert_eq(parse(&c, "--feature-gates=AllAlpha=true,CompactHashCheck=false"), 0);
	cr_assert(c.initial_corrupt_check);
	cr_assert(!(c.feature_gates & CONFIG_GATE_COMPACT_HASH_CHECK));
	cr_assert(c.feature_gates & CONFIG_GATE_SET_MEMBER_LOCAL_ADDR);
	cr_assert_eq(parse(&c, "--feature-gates=AllBeta=false"), 0);
	cr_assert_eq(c.feature_gates, 0);
}

Test(config_gates, errors, .init = quiet)
{
	struct config c;
	cr_assert_eq(parse(&c, "--feature-gates=Bogus=true"), -1, "etcd refuses unknown gates");
	cr_assert_eq(c.exit_status, 2);
	cr_assert_eq(parse(&c, "--feature-gates=InitialCorruptCheck"), -1);
	cr_assert_eq(parse(&c, "--feature-gates=InitialCorruptCheck=yes"), -1);
	cr_assert_eq(parse(&c, "--feature-gates=initialcorruptcheck=true"), -1, "names are case-sensitive");
	/* the experimental flag and its gate together are an error in etcd 3.6 */
	cr_assert_eq(parse(&c, "--experimental-initial-corrupt-check=true", "--feature-gates=InitialCorruptCheck=true"), -1);
	cr_assert_eq(c.exit_status, 1);
	cr_assert_eq(parse(&c, "--experimental-stop-grpc-service-on-defrag", "--feature-gates=InitialCorruptCheck=true"), 0);
	cr_assert_eq(c.feature_gates, CONFIG_GATE_INITIAL_CORRUPT_CHECK | CONFIG_GATE_STOP_GRPC_SERVICE_ON_DEFRAG |
					      CONFIG_GATE_TXN_MODE_WRITE_WITH_SHARED_BUFFER);
}

Test(config_gates, experimental_flag, .init = quiet)
{
	struct config c;
	cr_assert_eq(parse(&c, "--experimental-initial-corrupt-check=true"), 0);
	cr_assert(c.initial_corrupt_check);
	cr_assert_eq(parse(&c, "--experimental-initial-corrupt-check"), 0);
	cr_assert(c.initial_corrupt_check);
	cr_assert_eq(parse(&c, "--experimental-initial-corrupt-check=false"), 0);
	cr_assert(!c.initial_corrupt_check);
	cr_assert_eq(parse(&c, "--experimental-txn-mode-write-with-shared-buffer=false"), 0);
	cr_assert_eq(c.feature_gates, 0);
}

/* ---- kubeadm's static pod (KUBERNETES.md), literally ---------------------------------- */

#define KUBEADM_COMMON                                                                            \
	"--advertise-client-urls=https://10.0.0.5:2379", "--cert-file=/etc/kubernetes/pki/etcd/server.crt", \
		"--client-cert-auth=true", "--data-dir=/var/lib/etcd",                                     \
		"--initial-advertise-peer-urls=https://10.0.0.5:2380",                                     \
		"--initial-cluster=node1=https://10.0.0.5:2380", "--key-file=/etc/kubernetes/pki/etcd/server.key", \
		"--listen-client-urls=https://127.0.0.1:2379,https://10.0.0.5:2379",                       \
		"--listen-metrics-urls=http://127.0.0.1:2381", "--listen-peer-urls=https://10.0.0.5:2380", \
		"--name=node1", "--peer-cert-file=/etc/kubernetes/pki/etcd/peer.crt",                      \
		"--peer-client-cert-auth=true", "--peer-key-file=/etc/kubernetes/pki/etcd/peer.key",       \
		"--peer-trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt", "--snapshot-count=10000",        \
		"--trusted-ca-file=/etc/kubernetes/pki/etcd/ca.crt"

static void check_kubeadm(const struct config *c)
{
	cr_assert_str_eq(c->name, "node1");
	cr_assert_str_eq(c->data_dir, "/var/lib/etcd");
	cr_assert_str_eq(c->advertise_client_urls, "https://10.0.0.5:2379");
	cr_assert_str_eq(c->initial_advertise_peer_urls, "https://10.0.0.5:2380");
	cr_assert_eq(c->n_listen_client, 2);
	cr_assert_str_eq(c->listen_client[0].scheme, "https");
	cr_assert_str_eq(c->listen_client[0].host, "127.0.0.1");
	cr_assert_str_eq(c->listen_client[1].host, "10.0.0.5");
	cr_assert_eq(c->listen_client[1].port, 2379);
	cr_assert_eq(c->n_listen_metrics, 1);
	cr_assert_str_eq(c->listen_metrics[0].scheme, "http");
	cr_assert_eq(c->listen_metrics[0].port, 2381);
	cr_assert_str_eq(c->cert_file, "/etc/kubernetes/pki/etcd/server.crt");
	cr_assert_str_eq(c->key_file, "/etc/kubernetes/pki/etcd/server.key");
	cr_assert_str_eq(c->trusted_ca_file, "/etc/kubernetes/pki/etcd/ca.crt");
	cr_assert(c->client_cert_auth);
	cr_assert_eq(c->snapshot_count, 10000);
	cr_assert(c->initial_corrupt_check);
	cr_assert_eq(c->watch_progress_notify_interval_ms, 5000);
}

Test(config_kubeadm, v1_33, .init = quiet)
{
	struct config c;
	cr_assert_eq(parse(&c, KUBEADM_COMMON, "--experimental-initial-corrupt-check=true",
			   "--experimental-watch-progress-notify-interval=5s"), 0);
	check_kubeadm(&c);
}

Test(config, self_signed_cert_validity, .init = quiet)
{
	struct config c;
	cr_assert_eq(parse0(&c), 0);
	cr_assert_eq(c.self_signed_cert_validity_years, 1);
	cr_assert_eq(parse(&c, "--auto-tls", "--self-signed-cert-validity=3"), 0);
	cr_assert(c.auto_tls);
	cr_assert_eq(c.self_signed_cert_validity_years, 3);
	cr_assert_eq(parse(&c, "--self-signed-cert-validity=5000"), 0);
	cr_assert_eq(c.self_signed_cert_validity_years, 100);
	cr_assert_eq(parse(&c, "--self-signed-cert-validity=-1"), -1);
}

/* kubeadm's own manifests start without a warning: etcd 3.5, which kubeadm up to 1.33
 * writes the experimental names for, takes them silently (issue 13). */
Test(config_kubeadm, no_warning_for_kubeadm_flags, .init = cr_redirect_stderr)
{
	struct config c;
	log_set_level(LOG_WARN);
	cr_assert_eq(parse(&c, KUBEADM_COMMON, "--experimental-initial-corrupt-check=true",
			   "--experimental-watch-progress-notify-interval=5s"), 0);
	cr_assert_eq(parse(&c, KUBEADM_COMMON, "--feature-gates=InitialCorruptCheck=true",
			   "--watch-progress-notify-interval=5s"), 0);
	fflush(stderr);
	cr_assert_stderr_eq_str("");
}

Test(config_kubeadm, ignored_flag_still_warns, .init = cr_redirect_stderr)
{
	struct config c;
	char line[512] = "";
	log_set_level(LOG_WARN);
	cr_assert_eq(parse(&c, KUBEADM_COMMON, "--watch-progress-notify-interval=5s", "--max-wals=3"), 0);
	fflush(stderr);
	FILE *f = cr_get_redirected_stderr();
	cr_assert(fgets(line, sizeof line, f) != NULL);
	cr_assert(strstr(line, "\"level\":\"warn\"") && strstr(line, "flags not supported by uetcd, ignored: --max-wals"),
		  "%s", line);
	cr_assert(fgets(line, sizeof line, f) == NULL, "one line only: %s", line);
}

Test(config_kubeadm, v1_34, .init = quiet)
{
	struct config c;
	cr_assert_eq(parse(&c, KUBEADM_COMMON, "--feature-gates=InitialCorruptCheck=true",
			   "--watch-progress-notify-interval=5s"), 0);
	check_kubeadm(&c);
}

Test(config_kubeadm, space_separated_and_env, .init = quiet)
{
	/* the same set as `--f v`, with two of the flags moved to the environment */
	char *env[] = { "ETCD_SNAPSHOT_COUNT=10000", "ETCD_WATCH_PROGRESS_NOTIFY_INTERVAL=5s", "PATH=/bin", NULL };
	struct config c;
	cr_assert_eq(parse_env(&c, env, "--advertise-client-urls", "https://10.0.0.5:2379", "--cert-file",
			       "/etc/kubernetes/pki/etcd/server.crt", "--client-cert-auth=true", "--data-dir", "/var/lib/etcd",
			       "--initial-advertise-peer-urls", "https://10.0.0.5:2380", "--initial-cluster",
			       "node1=https://10.0.0.5:2380", "--key-file", "/etc/kubernetes/pki/etcd/server.key",
			       "--listen-client-urls", "https://127.0.0.1:2379,https://10.0.0.5:2379", "--listen-metrics-urls",
			       "http://127.0.0.1:2381", "--listen-peer-urls", "https://10.0.0.5:2380", "--name", "node1",
			       "--peer-cert-file", "/p.crt", "--peer-client-cert-auth=true", "--peer-key-file", "/p.key",
			       "--peer-trusted-ca-file", "/ca.crt", "--trusted-ca-file", "/etc/kubernetes/pki/etcd/ca.crt",
			       "--feature-gates", "InitialCorruptCheck=true", NULL),
		     0);
	check_kubeadm(&c);
}

/* ---- environment ---------------------------------------------------------------------- */

Test(config_env, maps_to_flags, .init = quiet)
{
	char *env[] = { "ETCD_DATA_DIR=/d", "ETCD_NAME=e1", "ETCD_CLIENT_CERT_AUTH=true", "ETCD_MAX_TXN_OPS=7",
			"ETCD_EXPERIMENTAL_WATCH_PROGRESS_NOTIFY_INTERVAL=3s", "ETCD_FEATURE_GATES=InitialCorruptCheck=true",
			"ETCD_LISTEN_CLIENT_URLS=http://127.0.0.1:12379", "ETCD_ADVERTISE_CLIENT_URLS=http://127.0.0.1:12379",
			"ETCD_THREADS=2", "ETCD_UNKNOWN_THING=1", "ETCD_VERSION=1", "ETCD_WAL_DIR=", "HOME=/root", NULL };
	struct config c;
	cr_assert_eq(parse_env(&c, env, NULL), 0);
	cr_assert_str_eq(c.data_dir, "/d");
	cr_assert_str_eq(c.name, "e1");
	cr_assert(c.client_cert_auth);
	cr_assert_eq(c.max_txn_ops, 7);
	cr_assert_eq(c.watch_progress_notify_interval_ms, 3000);
	cr_assert(c.initial_corrupt_check);
	cr_assert_eq(c.listen_client[0].port, 12379);
	cr_assert_eq(c.threads, 2);
}

Test(config_env, command_line_and_env_conflict, .init = quiet)
{
	/* etcd: "conflicting environment variable is shadowed by corresponding command-line
	 * flag" is fatal (exit 1) */
	char *env[] = { "ETCD_NAME=fromenv", NULL };
	struct config c;
	cr_assert_eq(parse_env(&c, env, "--name=fromargv", NULL), -1);
	cr_assert_eq(c.exit_status, 1);
	/* different flags from each source combine */
	cr_assert_eq(parse_env(&c, env, "--data-dir=/x", NULL), 0);
	cr_assert_str_eq(c.name, "fromenv");
	cr_assert_str_eq(c.data_dir, "/x");
}

Test(config_env, invalid_value, .init = quiet)
{
	char *env[] = { "ETCD_SNAPSHOT_COUNT=abc", NULL };
	struct config c;
	cr_assert_eq(parse_env(&c, env, NULL), -1);
	cr_assert_eq(c.exit_status, 1);
	char *env2[] = { "ETCD_CLIENT_CERT_AUTH=yes", NULL };
	cr_assert_eq(parse_env(&c, env2, NULL), -1);
}

Test(config_env, listen_without_advertise, .init = quiet)
{
	char *env[] = { "ETCD_LISTEN_CLIENT_URLS=http://127.0.0.1:2379", NULL };
	struct config c;
	cr_assert_eq(parse_env(&c, env, NULL), -1);
	cr_assert_eq(parse_env(&c, env, "--advertise-client-urls=http://127.0.0.1:2379", NULL), 0);
}

/* ---- config file ---------------------------------------------------------------------- */

Test(config_file, yaml_subset, .init = quiet, .fini = rm_tmp)
{
	const char *path = write_tmp("# uetcd test\n"
				     "---\n"
				     "name: 'node-1'   # trailing comment\n"
				     "data-dir: /var/lib/etcd\n"
				     "listen-client-urls: \"https://127.0.0.1:2379,https://[::1]:2379\"\n"
				     "advertise-client-urls: https://10.0.0.1:2379\n"
				     "listen-metrics-urls: http://127.0.0.1:2381\n"
				     "grpc-keepalive-min-time: 7000000000\n"
				     "watch-progress-notify-interval: 5s\n"
				     "log-outputs: [stderr]\n"
				     "feature-gates: InitialCorruptCheck=true\n"
				     "initial-cluster-state: 'new'\n"
				     "initial-cluster: node-1=https://10.0.0.1:2380\n"
				     "quota-backend-bytes: 4294967296\n"
				     "enable-v2: false\n"
				     "auth-token: ~\n"
				     "unsafe-no-fsync: yes\n"
				     "client-transport-security:\n"
				     "  cert-file: /etc/k/server.crt\n"
				     "  key-file: /etc/k/server.key\n"
				     "  client-cert-auth: true\n"
				     "  trusted-ca-file: \"/etc/k/ca.crt\"\n"
				     "peer-transport-security:\n"
				     "  cert-file: /p.crt\n"
				     "  allowed-cn: foo\n"
				     "cipher-suites:\n"
				     "  - TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256\n"
				     "  - TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256\n"
				     "unknown-key: 1\n");
	struct config c;
	cr_assert_eq(parse(&c, "--config-file", (char *)path), 0);
	cr_assert_str_eq(c.config_file, path);
	cr_assert_str_eq(c.name, "node-1");
	cr_assert_str_eq(c.data_dir, "/var/lib/etcd");
	cr_assert_eq(c.n_listen_client, 2);
	cr_assert_str_eq(c.listen_client[1].host, "::1");
	cr_assert_str_eq(c.advertise_client_urls, "https://10.0.0.1:2379");
	cr_assert_eq(c.n_listen_metrics, 1);
	cr_assert_eq(c.grpc_keepalive_min_time_ms, 7000, "durations are nanoseconds in the file");
	cr_assert_eq(c.watch_progress_notify_interval_ms, 5000);
	cr_assert_str_eq(c.log_outputs, "stderr");
	cr_assert(c.initial_corrupt_check);
	cr_assert_eq(c.quota_backend_bytes, INT64_C(4294967296));
	cr_assert(c.unsafe_no_fsync);
	cr_assert_str_eq(c.auth_token, "simple");
	cr_assert_str_eq(c.cert_file, "/etc/k/server.crt");
	cr_assert_str_eq(c.key_file, "/etc/k/server.key");
	cr_assert(c.client_cert_auth);
	cr_assert_str_eq(c.trusted_ca_file, "/etc/k/ca.crt");
	cr_assert_str_eq(c.cipher_suites, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256");
}

Test(config_file, ignores_other_flags_and_env, .init = quiet, .fini = rm_tmp)
{
	const char *path = write_tmp("name: fromfile\n");
	char *env[] = { "ETCD_DATA_DIR=/fromenv", "ETCD_NAME=fromenv", NULL };
	char arg[128];
	snprintf(arg, sizeof arg, "--config-file=%s", path);
	struct config c;
	cr_assert_eq(parse_env(&c, env, arg, "--name=fromargv", "--max-txn-ops=5", NULL), 0);
	cr_assert_str_eq(c.name, "fromfile");
	cr_assert_str_eq(c.data_dir, "fromfile.etcd");
	cr_assert_eq(c.max_txn_ops, 128);
	/* ETCD_CONFIG_FILE names the file too */
	char envfile[128];
	snprintf(envfile, sizeof envfile, "ETCD_CONFIG_FILE=%s", path);
	char *env2[] = { envfile, "ETCD_NAME=fromenv", NULL };
	cr_assert_eq(parse_env(&c, env2, NULL), 0);
	cr_assert_str_eq(c.name, "fromfile");
	/* an unknown flag on the command line still fails, as in etcd */
	cr_assert_eq(parse_env(&c, no_env, arg, "--foo", NULL), -1);
	cr_assert_eq(c.exit_status, 2);
}

Test(config_file, errors, .init = quiet, .fini = rm_tmp)
{
	struct config c;
	cr_assert_eq(parse(&c, "--config-file=/nonexistent/uetcd.yml"), -1);
	cr_assert_eq(c.exit_status, 1);
	const char *bad[] = { "name: [a\n", "name: 'unterminated\n", "  indented: 1\n", "snapshot-count: abc\n",
			      "listen-client-urls: 127.0.0.1:2379\n", "name: |\n  x\n", "justtext\n",
			      "feature-gates: Bogus=true\n" };
	for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
		const char *path = write_tmp(bad[i]);
		char arg[128];
		snprintf(arg, sizeof arg, "--config-file=%s", path);
		cr_assert_eq(parse(&c, arg), -1, "accepted %s", bad[i]);
		cr_assert_eq(c.exit_status, 1);
		rm_tmp();
	}
}

/* ---- --version, --help, the flag table ------------------------------------------------ */

Test(config, version, .init = quiet)
{
	struct config c;
	cr_assert_eq(parse(&c, "--version"), 1);
	fflush(stdout);
	cr_assert_stdout_eq_str("etcd Version: " UETCD_ETCD_API_VERSION "\n"
				"uetcd Version: " UETCD_VERSION "\n"
				"Git SHA: not provided\n"
				"Go Version: not applicable (C)\n"
				"Go OS/Arch: linux/amd64\n");
}

Test(config, version_forms, .init = quiet)
{
	struct config c;
	cr_assert_eq(parse(&c, "-version"), 1);
	cr_assert_eq(parse(&c, "--version=true"), 1);
	cr_assert_eq(parse(&c, "--version=false"), 0);
	char *env[] = { "ETCD_VERSION=true", NULL };
	cr_assert_eq(parse_env(&c, env, NULL), 0, "etcd refuses ETCD_VERSION");
}

Test(config, help, .init = quiet)
{
	struct config c;
	cr_assert_eq(parse(&c, "--help"), 1);
	cr_assert_eq(parse(&c, "-h"), 1);
	cr_assert_eq(parse(&c, "-help"), 1);
	cr_assert_eq(parse(&c, "--name=x", "--h"), 1);
}

Test(config, help_lists_flags, .init = quiet)
{
	struct config c;
	cr_assert_eq(parse(&c, "--help"), 1);
	fflush(stdout);
	FILE *f = cr_get_redirected_stdout();
	char buf[4096];
	bool name = false, peer = false, gates = false;
	while (fgets(buf, sizeof buf, f)) {
		name |= strcmp(buf, "  --name 'default'\n") == 0;
		peer |= strcmp(buf, "  --listen-peer-urls 'http://localhost:2380'\n") == 0;
		gates |= strncmp(buf, "  --feature-gates", 17) == 0;
	}
	cr_assert(name && peer && gates);
}

Test(config, flag_table)
{
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	config_print_flag_table(f);
	fclose(f);
	cr_assert(strstr(buf, "| `--name` | honoured |"));
	cr_assert(strstr(buf, "| `--listen-peer-urls` | peer"));
	cr_assert(strstr(buf, "| `--wal-dir` | ignored"));
	cr_assert(strstr(buf, "| `--watch-progress-notify-interval` | honoured |"));
	cr_assert(strstr(buf, "| any other flag | refused |"));
	free(buf);
}

/* Every flag the reference etcd 3.5.16 prints in --help parses. */
Test(config, every_etcd_35_help_flag, .init = quiet)
{
	static const char *const names[] = {
		"name", "data-dir", "wal-dir", "snapshot-count", "heartbeat-interval", "election-timeout",
		"initial-election-tick-advance", "listen-peer-urls", "listen-client-urls", "listen-client-http-urls",
		"max-snapshots", "max-wals", "quota-backend-bytes", "backend-bbolt-freelist-type",
		"backend-batch-interval", "backend-batch-limit", "max-txn-ops", "max-request-bytes",
		"max-concurrent-streams", "enable-grpc-gateway", "grpc-keepalive-min-time", "grpc-keepalive-interval",
		"grpc-keepalive-timeout", "socket-reuse-port", "socket-reuse-address", "raft-read-timeout",
		"raft-write-timeout", "initial-advertise-peer-urls", "initial-cluster", "initial-cluster-state",
		"initial-cluster-token", "advertise-client-urls", "discovery", "discovery-fallback", "discovery-proxy",
		"discovery-srv", "discovery-srv-name", "strict-reconfig-check", "pre-vote", "auto-compaction-retention",
		"auto-compaction-mode", "enable-v2", "v2-deprecation", "cert-file", "key-file", "client-cert-auth",
		"client-cert-file", "client-key-file", "client-crl-file", "client-cert-allowed-hostname",
		"trusted-ca-file", "auto-tls", "peer-cert-file", "peer-key-file", "peer-client-cert-auth",
		"peer-trusted-ca-file", "peer-cert-allowed-cn", "peer-cert-allowed-hostname", "peer-auto-tls",
		"peer-client-cert-file", "peer-client-key-file", "self-signed-cert-validity", "peer-crl-file",
		"cipher-suites", "cors", "host-whitelist", "tls-min-version", "tls-max-version", "auth-token",
		"bcrypt-cost", "auth-token-ttl", "enable-pprof", "metrics", "listen-metrics-urls", "logger",
		"log-outputs", "log-level", "enable-log-rotation", "log-rotation-config-json",
		"experimental-enable-distributed-tracing", "experimental-distributed-tracing-address",
		"experimental-distributed-tracing-service-name", "experimental-distributed-tracing-instance-id",
		"experimental-distributed-tracing-sampling-rate", "proxy", "proxy-failure-wait",
		"proxy-refresh-interval", "proxy-dial-timeout", "proxy-write-timeout", "proxy-read-timeout",
		"experimental-initial-corrupt-check", "experimental-corrupt-check-time",
		"experimental-compact-hash-check-enabled", "experimental-compact-hash-check-time",
		"experimental-enable-v2v3", "experimental-enable-lease-checkpoint",
		"experimental-enable-lease-checkpoint-persist", "experimental-compaction-batch-limit",
		"experimental-compaction-sleep-interval", "experimental-peer-skip-client-san-verification",
		"experimental-watch-progress-notify-interval", "experimental-downgrade-check-time",
		"experimental-memory-mlock", "experimental-warning-apply-duration",
		"experimental-txn-mode-write-with-shared-buffer", "experimental-bootstrap-defrag-threshold-megabytes",
		"experimental-stop-grpc-service-on-defrag", "force-new-cluster", "unsafe-no-fsync",
		"experimental-snapshot-catchup-entries", "config-file",
	};
	char *buf = NULL;
	size_t len = 0;
	FILE *f = open_memstream(&buf, &len);
	config_print_flag_table(f);
	fclose(f);
	for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
		char needle[140];
		snprintf(needle, sizeof needle, "| `--%s` |", names[i]);
		cr_assert(strstr(buf, needle), "%s missing", names[i]);
	}
	free(buf);
}

/* The etcd 3.6 names (and 3.6-only flags) parse too, each with a valid value. */
Test(config, etcd_36_flags, .init = quiet)
{
	static const char *const args[] = {
		"--watch-progress-notify-interval=5s", "--corrupt-check-time=1m", "--compact-hash-check-time=1m",
		"--compaction-batch-limit=100", "--compaction-sleep-interval=10ms", "--downgrade-check-time=5s",
		"--warning-apply-duration=100ms", "--warning-unary-request-duration=300ms",
		"--experimental-warning-unary-request-duration=300ms", "--bootstrap-defrag-threshold-megabytes=0",
		"--max-learners=1", "--snapshot-catchup-entries=5000", "--memory-mlock=false",
		"--enable-distributed-tracing=false", "--distributed-tracing-address=localhost:4317",
		"--distributed-tracing-service-name=etcd", "--distributed-tracing-instance-id=x",
		"--distributed-tracing-sampling-rate=0", "--peer-skip-client-san-verification=false",
		"--feature-gates=SetMemberLocalAddr=true", "--log-format=json", "--disable-log-sampling",
		"--discovery-token=t", "--discovery-dial-timeout=2s", "--discovery-request-timeout=5s",
		"--discovery-keepalive-time=2s", "--discovery-keepalive-timeout=6s",
		"--discovery-insecure-transport=true", "--discovery-insecure-skip-tls-verify=false",
		"--discovery-cert=/c", "--discovery-key=/k", "--discovery-cacert=/ca", "--discovery-user=u",
		"--discovery-password=p", "--experimental-max-learners=1", "--experimental-wait-cluster-ready-timeout=5s",
		"--experimental-set-member-localaddr=false",
	};
	for (size_t i = 0; i < sizeof args / sizeof args[0]; i++) {
		struct config c;
		cr_assert_eq(parse(&c, (char *)args[i]), 0, "%s", args[i]);
	}
	struct config c;
	cr_assert_eq(parse(&c, "--warning-unary-request-duration=1s", "--experimental-warning-unary-request-duration=1s"), -1,
		     "etcd 3.6 refuses both spellings of this one");
}

Test(config, quota_and_auto_compaction_as_etcd_reads_them, .init = quiet)
{
	struct config c;

	cr_assert_eq(parse0(&c), 0);
	cr_assert_eq(config_quota_bytes(&c), 2ull << 30, "0 means etcd's default");
	cr_assert_eq(config_auto_compaction_retention(&c), 0, "off by default");
	cr_assert_eq(parse(&c, "--quota-backend-bytes=200000"), 0);
	cr_assert_eq(config_quota_bytes(&c), 200000);
	cr_assert_eq(parse(&c, "--quota-backend-bytes=-1"), 0);
	cr_assert_eq(config_quota_bytes(&c), 0, "negative disables the quota");

	cr_assert_eq(parse(&c, "--auto-compaction-retention=2"), 0);
	cr_assert_eq(config_auto_compaction_retention(&c), 2 * 3600 * 1000, "a bare number is hours");
	cr_assert_eq(parse(&c, "--auto-compaction-retention=1m30s"), 0);
	cr_assert_eq(config_auto_compaction_retention(&c), 90 * 1000);
	cr_assert_eq(parse(&c, "--auto-compaction-mode=revision", "--auto-compaction-retention=1000"), 0);
	cr_assert_eq(config_auto_compaction_retention(&c), 1000, "revisions");
	cr_assert_eq(parse(&c, "--auto-compaction-mode=revision", "--auto-compaction-retention=1h"), -1);
}
