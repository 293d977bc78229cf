/* Configuration from etcd's command line: flags (`--f=v` and `--f v`), ETCD_* environment
 * variables and an optional --config-file (YAML). Every etcd 3.5/3.6 flag parses; the ones
 * uetcd honours fill this struct, peer/cluster flags are accepted and logged as not
 * applicable to a single node, and a flag etcd does not know fails as etcd fails.
 * Defaults are etcd's. */
#ifndef UETCD_CORE_CONFIG_H
#define UETCD_CORE_CONFIG_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define CONFIG_URLS_MAX 16

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
	int threads;                     /* --threads (uetcd's own; default: number of cores) */
	uint64_t max_request_bytes;      /* --max-request-bytes (default 1.5 MiB) */
	uint32_t max_txn_ops;            /* --max-txn-ops (default 128) */
	uint32_t max_concurrent_streams; /* --max-concurrent-streams (default 2^32-1, capped internally) */
	int64_t quota_backend_bytes;     /* --quota-backend-bytes (0: default 2 GiB) */
	bool unsafe_no_fsync;            /* --unsafe-no-fsync */
	uint64_t snapshot_count;         /* --snapshot-count (default 100000) */
	uint64_t watch_progress_notify_interval_ms; /* --(experimental-)watch-progress-notify-interval (10m) */
	uint64_t grpc_keepalive_min_time_ms;        /* --grpc-keepalive-min-time (5s) */
	uint64_t grpc_keepalive_interval_ms;        /* --grpc-keepalive-interval (2h) */
	uint64_t grpc_keepalive_timeout_ms;         /* --grpc-keepalive-timeout (20s) */
	char auto_compaction_mode[16];              /* --auto-compaction-mode (periodic) */
	char auto_compaction_retention[64];         /* --auto-compaction-retention ("0") */
	/* TLS for client listeners */
	char cert_file[1024], key_file[1024], trusted_ca_file[1024], client_crl_file[1024];
	bool client_cert_auth;
	bool auto_tls;
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
};

/* Fills *c with defaults, then applies environment (ETCD_*), config file, and argv, in
 * etcd's precedence. Returns 0; 1 when the process should exit 0 at once (--version,
 * --help printed); or -1 after printing an error as etcd does (exit status 2 then). */
int config_parse(struct config *c, int argc, char **argv, char **envp);

/* Parses a Go duration ("5s", "100ms", "1m30s", "2h") into milliseconds; -1 if invalid. */
int64_t config_parse_duration_ms(const char *s);
/* Parses one URL into *u; -1 if invalid. */
int config_parse_url(const char *s, struct config_url *u);

#endif
