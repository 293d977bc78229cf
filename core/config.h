/* Configuration from etcd's command line: flags (`--f=v`, `--f v`, `-f=v`, `-f v`; bools as
 * `--f` or `--f=<Go bool>`), ETCD_* environment variables and an optional --config-file (YAML).
 * Every etcd 3.5 and 3.6 flag parses; the ones uetcd honours fill struct config, peer/cluster
 * flags are accepted and logged once as not applicable to a single node, the rest are accepted
 * and warned "not supported by uetcd, ignored", and a flag etcd does not know fails as etcd
 * fails. Defaults are etcd's. config_print_flag_table() prints the full list with each flag's
 * status (the README's table is generated from it); in short:
 *
 *   honoured   --name --data-dir --listen-client-urls --advertise-client-urls
 *              --listen-metrics-urls --initial-advertise-peer-urls (MemberList only)
 *              --initial-cluster-token --max-request-bytes --max-txn-ops
 *              --max-concurrent-streams --quota-backend-bytes --snapshot-count
 *              --unsafe-no-fsync --(experimental-)watch-progress-notify-interval
 *              --grpc-keepalive-{min-time,interval,timeout} --auto-compaction-{mode,retention}
 *              --cert-file --key-file --trusted-ca-file --client-crl-file --client-cert-auth
 *              --auto-tls --tls-min-version --tls-max-version --cipher-suites --auth-token
 *              --auth-token-ttl --bcrypt-cost --log-level --log-outputs --logger
 *              --enable-pprof --enable-grpc-gateway --strict-reconfig-check
 *              --experimental-initial-corrupt-check --feature-gates --config-file --version
 *              --help, and uetcd's own --threads
 *   peer       --listen-peer-urls --initial-cluster --initial-cluster-state --peer-* --discovery*
 *              --heartbeat-interval --election-timeout --pre-vote --force-new-cluster
 *              --raft-*-timeout --max-learners --snapshot-catchup-entries ... (logged, ignored)
 *   ignored    every other etcd 3.5/3.6 flag (--wal-dir, --max-wals, --metrics, --cors,
 *              --experimental-compaction-batch-limit, tracing, v2 proxy, ...) (warned)
 *   refused    any name etcd does not define: "flag provided but not defined: -foo", exit 2
 *
 * Precedence is etcd's: with a config file (--config-file or ETCD_CONFIG_FILE) every other
 * flag and environment variable is ignored; otherwise ETCD_<FLAG> applies unless the flag is on
 * the command line, and both at once is a fatal conflict, as in etcd. Durations are Go
 * durations on the command line and integer nanoseconds (or Go durations) in the file; sizes
 * are plain integers in bytes, as etcd takes them (no "8G" suffixes: etcd refuses those too).
 * uetcd's own --threads (1..CONFIG_THREADS_MAX) follows the same rules (ETCD_THREADS).
 * Where etcd 3.6 has two names (--experimental-watch-progress-notify-interval and
 * --watch-progress-notify-interval), both work and the experimental one wins if both are
 * given, as in 3.6; --experimental-initial-corrupt-check=true and
 * --feature-gates=InitialCorruptCheck=true both set initial_corrupt_check, and giving both
 * is an error, as in 3.6. Unknown feature gate names are refused as etcd 3.6 refuses them.
 * The watch progress interval has no minimum (etcd enforces none); a value <= 0 keeps the 10m
 * default, as etcd does. Exit statuses: see exit_status below (main should return it).
 * Parsing keeps no static state: it may run many times in one process (the unit tests do). */
#ifndef UETCD_CORE_CONFIG_H
#define UETCD_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define CONFIG_URLS_MAX 16
#define CONFIG_THREADS_MAX 1024

/* The etcd release whose API uetcd implements: `--version` prints it as "etcd Version: X"
 * because scripts and kubeadm parse that line; Status reports it too. */
#define UETCD_ETCD_API_VERSION "3.6.0"
#define UETCD_VERSION "0.1.0"

/* etcd 3.6 server feature gates (--feature-gates=Name=bool,...), as bits of
 * config.feature_gates holding each gate's effective value. */
enum config_gate {
	CONFIG_GATE_STOP_GRPC_SERVICE_ON_DEFRAG = 1u << 0, /* alpha, default false */
	CONFIG_GATE_TXN_MODE_WRITE_WITH_SHARED_BUFFER = 1u << 1, /* beta, default true */
	CONFIG_GATE_INITIAL_CORRUPT_CHECK = 1u << 2,       /* alpha, default false */
	CONFIG_GATE_COMPACT_HASH_CHECK = 1u << 3,          /* alpha, default false */
	CONFIG_GATE_LEASE_CHECKPOINT = 1u << 4,            /* alpha, default false */
	CONFIG_GATE_LEASE_CHECKPOINT_PERSIST = 1u << 5,    /* alpha, default false */
	CONFIG_GATE_SET_MEMBER_LOCAL_ADDR = 1u << 6,       /* alpha, default false */
};

struct config_url {
	char scheme[8];  /* "http", "https", "unix", "unixs" */
	char host[256];  /* without brackets for IPv6 */
	uint16_t port;
	char text[300];  /* the URL as given */
};

struct config {
	char name[256];          /* --name (default "default") */
	char data_dir[1024];     /* --data-dir (default "${name}.etcd"; "default.uetcd" is set by make run) */
	struct config_url listen_client[CONFIG_URLS_MAX];
	int n_listen_client;     /* --listen-client-urls (default http://localhost:2379) */
	struct config_url listen_metrics[CONFIG_URLS_MAX];
	int n_listen_metrics;    /* --listen-metrics-urls */
	char advertise_client_urls[4096];         /* --advertise-client-urls, comma-separated as given */
	char initial_advertise_peer_urls[4096];   /* --initial-advertise-peer-urls */
	char initial_cluster_token[256];          /* --initial-cluster-token (default "etcd-cluster") */
	char initial_cluster[4096];               /* --initial-cluster ("": name=each advertised peer URL) */
	int threads;                     /* --threads (uetcd's own; default: number of cores) */
	uint64_t max_request_bytes;      /* --max-request-bytes (default 1.5 MiB) */
	uint32_t max_txn_ops;            /* --max-txn-ops (default 128) */
	uint32_t max_concurrent_streams; /* --max-concurrent-streams (default 2^32-1, capped internally) */
	int64_t quota_backend_bytes;     /* --quota-backend-bytes (0: default 2 GiB) */
	bool unsafe_no_fsync;            /* --unsafe-no-fsync */
	uint64_t snapshot_count;         /* --snapshot-count (default 100000) */
	uint64_t checkpoint_log_bytes;   /* --checkpoint-log-bytes (uetcd only, default 256 MiB) */
	uint64_t watch_progress_notify_interval_ms; /* --(experimental-)watch-progress-notify-interval (10m) */
	uint64_t grpc_keepalive_min_time_ms;        /* --grpc-keepalive-min-time (5s) */
	uint64_t grpc_keepalive_interval_ms;        /* --grpc-keepalive-interval (2h) */
	uint64_t grpc_keepalive_timeout_ms;         /* --grpc-keepalive-timeout (20s) */
	char auto_compaction_mode[16];              /* --auto-compaction-mode (periodic) */
	char auto_compaction_retention[64];         /* --auto-compaction-retention ("0") */
	/* TLS for client listeners */
	char cert_file[1024], key_file[1024], trusted_ca_file[1024], client_crl_file[1024];
	bool client_cert_auth;
	bool auto_tls;                                 /* --auto-tls: a self-signed certificate */
	unsigned self_signed_cert_validity_years;      /* --self-signed-cert-validity (1) */
	char tls_min_version[16], tls_max_version[16]; /* "TLS1.2", "TLS1.3" or "" */
	char cipher_suites[2048];                      /* comma-separated etcd (Go) names */
	/* auth */
	char auth_token[1024];    /* --auth-token (default "simple") */
	uint64_t auth_token_ttl_s; /* --auth-token-ttl (300) */
	int bcrypt_cost;          /* --bcrypt-cost (10) */
	/* logging */
	char log_level[16];       /* --log-level (info) */
	bool initial_corrupt_check; /* --experimental-initial-corrupt-check / feature gate */
	bool strict_reconfig_check;
	bool enable_pprof;
	/* fields added after the first version */
	bool enable_grpc_gateway;   /* --enable-grpc-gateway (default true) */
	char log_outputs[256];      /* --log-outputs, comma-separated ("default" = stderr) */
	uint32_t feature_gates;     /* effective enum config_gate bits (--feature-gates and the
	                             * --experimental-* bools they replace) */
	char config_file[1024];     /* --config-file / ETCD_CONFIG_FILE actually loaded, or "" */
	int exit_status;            /* after config_parse() returned -1: the status etcd exits with,
	                             * 2 for a command-line syntax error (Go's flag package), 1 for a
	                             * value that fails validation ("failed to verify flags") */
};

/* Fills *c with defaults, then applies environment (ETCD_*), config file, and argv, in
 * etcd's precedence. Returns 0; 1 when the process should exit 0 at once (--version,
 * --help printed to stdout); or -1 after printing an error as etcd does (to stderr or the
 * log), with c->exit_status set to etcd's status for it (2 for syntax errors such as an
 * unknown flag, 1 for validation errors). envp NULL means the process environment. */
int config_parse(struct config *c, int argc, char **argv, char **envp);
/* Fills *c with etcd's defaults (data_dir is "default.etcd", threads the online CPUs). */
void config_defaults(struct config *c);

/* The quota --quota-backend-bytes asks for, as etcd reads it: 0 means 2 GiB, a negative
 * value disables the quota (returned as 0). */
uint64_t config_quota_bytes(const struct config *c);
/* --auto-compaction-retention as etcd reads it for --auto-compaction-mode: periodic, a
 * duration in ms (a bare number is hours); revision, a count. 0: disabled or invalid. */
int64_t config_auto_compaction_retention(const struct config *c);

/* Parses a Go duration ("5s", "100ms", "1m30s", "1.5h", "300us", "-2s") into nanoseconds,
 * with time.ParseDuration's rules (a unit on every number except a bare "0"; ns us µs μs ms
 * s m h; overflow past ~292 years is an error). Returns 0 or -EINVAL. */
int config_parse_duration_ns(const char *s, int64_t *ns);
/* The same in milliseconds; -1 if invalid or negative. A nonzero sub-millisecond remainder
 * rounds up ("300us" and "1ns" are 1, "1.5ms" is 2) so that a tiny interval never becomes
 * 0, which several settings read as "disabled". */
int64_t config_parse_duration_ms(const char *s);
/* Go's strconv.ParseBool: 1 t T TRUE true True, 0 f F FALSE false False. 0 or -EINVAL. */
int config_parse_bool(const char *s, bool *out);
/* Parses one URL into *u with etcd's rules (scheme http, https, unix or unixs; host:port
 * required except for unix; no path; IPv6 in brackets); -1 if invalid. */
int config_parse_url(const char *s, struct config_url *u);
/* Maps c->log_level to enum log_level (core/log.h); "panic"/"fatal"/"dpanic" map to fatal. */
int config_log_level(const struct config *c);

/* Prints every known flag as a Markdown table: flag, honoured / peer (accepted, not
 * applicable to one node) / ignored (accepted, warned), default, what it does. */
void config_print_flag_table(FILE *out);

#endif
