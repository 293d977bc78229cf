/* etcd's command line for uetcd: one table of every etcd 3.5/3.6 flag (name, Go type, what
 * uetcd does with it, default and help text) drives the argv parser, ETCD_* environment
 * variables, the YAML config file, --help and the README's flag table.
 *
 * The parser follows Go's flag package, which etcd uses: `-f` and `--f` are the same; a value
 * is `-f=v` or the next argument (taken even if it starts with '-'); a bool takes only `=v`;
 * parsing stops at the first non-flag argument or `--`, and etcd then refuses any leftover
 * argument. Errors are printed as Go prints them, with etcd's exit status: 2 for syntax
 * (unknown flag, bad value on the command line), 1 for what etcd reports as "failed to verify
 * flags" (environment, config file, cross-flag checks).
 *
 * Values are checked by applying them to a scratch struct config first, so checking and
 * storing are one code path. Nothing here keeps static mutable state. */
#include "core/config.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "core/log.h"

extern char **environ;

/* ---------------------------------------------------------------------------------------- */
/* The flag table                                                                           */

enum flag_type {
	FT_SECTION,  /* not a flag: a heading in --help */
	FT_BOOL,     /* Go bool: `--f` or `--f=<bool>` */
	FT_STRING,
	FT_INT,      /* Go int (64-bit), base prefixes and '_' as strconv.ParseInt(s, 0, 64) */
	FT_UINT,     /* Go uint (64-bit) */
	FT_UINT32,   /* etcd's Uint32Value: strconv.ParseUint(s, 10, 32) */
	FT_INT64,
	FT_UINT64,
	FT_DURATION, /* Go duration; integer nanoseconds in the config file */
	FT_URLS,     /* comma-separated URLs, "" allowed */
	FT_STRINGS,  /* comma-separated strings */
	FT_SELECT,   /* one of `choices` ('|'-separated) */
	FT_GATES,    /* --feature-gates */
	FT_OBSOLETE, /* etcd's own "no longer supported" flags: bool-like, any value */
};

enum flag_use {
	FU_SPECIAL,  /* --help, --version, --config-file: handled by the parser itself */
	FU_HONOURED, /* stored in struct config */
	FU_PEER,     /* peer/cluster: not applicable to one node, logged at info */
	FU_IGNORED,  /* accepted, warned "not supported by uetcd, ignored" */
};

enum flag_id {
	FID_NONE,
	FID_NAME, FID_DATA_DIR, FID_LISTEN_CLIENT, FID_LISTEN_METRICS, FID_ADVERTISE_CLIENT,
	FID_ADVERTISE_PEER, FID_CLUSTER_TOKEN, FID_THREADS, FID_MAX_REQUEST_BYTES, FID_MAX_TXN_OPS,
	FID_MAX_STREAMS, FID_QUOTA, FID_NO_FSYNC, FID_SNAPSHOT_COUNT, FID_CKPT_BYTES, FID_WATCH_PROGRESS,
	FID_KA_MIN, FID_KA_INTERVAL, FID_KA_TIMEOUT, FID_AC_MODE, FID_AC_RETENTION, FID_CERT,
	FID_KEY, FID_CA, FID_CRL, FID_CLIENT_CERT_AUTH, FID_AUTO_TLS, FID_TLS_MIN, FID_TLS_MAX,
	FID_CIPHERS, FID_AUTH_TOKEN, FID_AUTH_TTL, FID_BCRYPT, FID_LOG_LEVEL, FID_LOG_OUTPUTS,
	FID_LOGGER, FID_STRICT_RECONFIG, FID_PPROF, FID_GATEWAY, FID_FEATURE_GATES, FID_SELF_CERT_VALIDITY,
	FID_CONFIG_FILE, FID_VERSION, FID_HELP,
	/* not stored, but read by the cross-flag checks */
	FID_LISTEN_PEER, FID_HEARTBEAT, FID_ELECTION, FID_WARN_UNARY, FID_WARN_UNARY_EXP,
	FID_INITIAL_CLUSTER, /* peer, but stored: the ids are derived from it */
};

struct flag_def {
	const char *name;
	uint8_t type;      /* enum flag_type */
	uint8_t use;       /* enum flag_use */
	uint8_t id;        /* enum flag_id */
	uint8_t gate;      /* an --experimental-* bool that 3.6 turned into this enum config_gate
	                    * bit index + 1; 0 if none */
	const char *alias; /* deprecated experimental name: the etcd 3.6 name that replaces it */
	const char *deflt; /* default as --help shows it */
	const char *help;
	const char *choices; /* FT_SELECT: the accepted values, '|'-separated */
};

#define SECTION(title) { title, FT_SECTION, 0, 0, 0, NULL, NULL, NULL, NULL }
#define H(n, t, id, def, help) { n, t, FU_HONOURED, id, 0, NULL, def, help, NULL }
#define P(n, t, def, help) { n, t, FU_PEER, FID_NONE, 0, NULL, def, help, NULL }
#define I(n, t, def, help) { n, t, FU_IGNORED, FID_NONE, 0, NULL, def, help, NULL }
#define PID(n, t, id, def, help) { n, t, FU_PEER, id, 0, NULL, def, help, NULL }
#define IID(n, t, id, def, help) { n, t, FU_IGNORED, id, 0, NULL, def, help, NULL }
#define SEL(n, use, def, choices, help) { n, FT_SELECT, use, FID_NONE, 0, NULL, def, help, choices }
/* an experimental name kept by etcd 3.6 next to its new name `nn` */
#define XH(n, t, id, nn, def, help) { n, t, FU_HONOURED, id, 0, nn, def, help, NULL }
#define XP(n, t, nn, def, help) { n, t, FU_PEER, FID_NONE, 0, nn, def, help, NULL }
#define XI(n, t, nn, def, help) { n, t, FU_IGNORED, FID_NONE, 0, nn, def, help, NULL }
/* an experimental bool that etcd 3.6 replaced by a feature gate (bit index g) */
#define XG(n, use, id, g, def, help) { n, FT_BOOL, use, id, (g) + 1, NULL, def, help, NULL }
#define OBS(n) { n, FT_OBSOLETE, FU_IGNORED, FID_NONE, 0, NULL, NULL, NULL, NULL }

static const struct flag_def flags[] = {
	SECTION("Member"),
	H("name", FT_STRING, FID_NAME, "default", "Human-readable name of this member; MemberList reports it."),
	H("data-dir", FT_STRING, FID_DATA_DIR, "${name}.etcd", "Directory that holds uetcd's log and snapshots."),
	I("wal-dir", FT_STRING, "", "Separate directory for the write-ahead log (uetcd keeps its log in --data-dir)."),
	H("snapshot-count", FT_UINT64, FID_SNAPSHOT_COUNT, "100000", "Revisions between checkpoints of the store (once the log has also grown by twice the last checkpoint's size and by --checkpoint-log-bytes)."),
	PID("heartbeat-interval", FT_UINT, FID_HEARTBEAT, "100", "Raft heartbeat interval in milliseconds (no raft in a single node)."),
	PID("election-timeout", FT_UINT, FID_ELECTION, "1000", "Raft election timeout in milliseconds (no raft in a single node)."),
	P("initial-election-tick-advance", FT_BOOL, "true", "Fast-forward election ticks at boot (no elections in a single node)."),
	PID("listen-peer-urls", FT_URLS, FID_LISTEN_PEER, "http://localhost:2380", "URLs to listen on for peer traffic (a single node has no peers)."),
	H("listen-client-urls", FT_URLS, FID_LISTEN_CLIENT, "http://localhost:2379", "URLs to listen on for gRPC and HTTP client traffic."),
	I("listen-client-http-urls", FT_URLS, "", "URLs for HTTP-only client traffic (uetcd serves HTTP on --listen-client-urls)."),
	I("max-snapshots", FT_UINT, "5", "Snapshot files to keep (0 is unlimited)."),
	I("max-wals", FT_UINT, "5", "WAL files to keep (0 is unlimited)."),
	H("quota-backend-bytes", FT_INT64, FID_QUOTA, "0", "Database size that raises the NOSPACE alarm, in bytes (0 means 2 GiB, negative disables)."),
	I("backend-bbolt-freelist-type", FT_STRING, "map", "bbolt freelist type (uetcd does not use bbolt)."),
	I("backend-batch-interval", FT_DURATION, "", "Longest time before a backend commit."),
	I("backend-batch-limit", FT_INT, "0", "Most operations before a backend commit."),
	H("max-txn-ops", FT_UINT, FID_MAX_TXN_OPS, "128", "Most operations allowed in one transaction."),
	H("max-request-bytes", FT_UINT, FID_MAX_REQUEST_BYTES, "1572864", "Largest client request accepted, in bytes."),
	H("max-concurrent-streams", FT_UINT32, FID_MAX_STREAMS, "math.MaxUint32", "Most concurrent HTTP/2 streams per client connection."),
	H("enable-grpc-gateway", FT_BOOL, FID_GATEWAY, "true", "Serve the JSON gateway under /v3/."),
	H("grpc-keepalive-min-time", FT_DURATION, FID_KA_MIN, "5s", "Shortest interval a client may ping at."),
	H("grpc-keepalive-interval", FT_DURATION, FID_KA_INTERVAL, "2h", "Interval of server-to-client pings (0 disables)."),
	H("grpc-keepalive-timeout", FT_DURATION, FID_KA_TIMEOUT, "20s", "Wait for a ping reply before closing the connection (0 disables)."),
	I("socket-reuse-port", FT_BOOL, "false", "Set SO_REUSEPORT on listeners."),
	I("socket-reuse-address", FT_BOOL, "false", "Set SO_REUSEADDR on listeners."),
	P("raft-read-timeout", FT_DURATION, "5s", "Read timeout of raft peer connections."),
	P("raft-write-timeout", FT_DURATION, "5s", "Write timeout of raft peer connections."),
	H("threads", FT_INT, FID_THREADS, "number of online CPUs", "uetcd only: reactor threads to run."),
	H("checkpoint-log-bytes", FT_UINT64, FID_CKPT_BYTES, "268435456", "uetcd only: log bytes written before a checkpoint is due (or 4x the last checkpoint's size, if larger); 0 leaves it to --snapshot-count."),

	SECTION("Clustering"),
	H("initial-advertise-peer-urls", FT_URLS, FID_ADVERTISE_PEER, "http://localhost:2380", "Peer URLs MemberList reports for this member."),
	PID("initial-cluster", FT_STRING, FID_INITIAL_CLUSTER, "default=http://localhost:2380", "Initial cluster for bootstrapping (one member here; the cluster and member ids are derived from it, as etcd's)."),
	SEL("initial-cluster-state", FU_PEER, "new", "new|existing", "'new' to bootstrap, 'existing' to join (a single node always bootstraps)."),
	H("initial-cluster-token", FT_STRING, FID_CLUSTER_TOKEN, "etcd-cluster", "Cluster token used at bootstrap."),
	H("advertise-client-urls", FT_URLS, FID_ADVERTISE_CLIENT, "http://localhost:2379", "Client URLs MemberList reports; clients use them to reach this member."),
	P("discovery", FT_STRING, "", "Discovery URL to bootstrap a cluster."),
	SEL("discovery-fallback", FU_PEER, "exit", "exit|proxy", "What to do when discovery fails."),
	P("discovery-proxy", FT_STRING, "", "HTTP proxy for the discovery service."),
	P("discovery-srv", FT_STRING, "", "DNS SRV domain to bootstrap a cluster."),
	P("discovery-srv-name", FT_STRING, "", "Suffix of the DNS SRV name for discovery."),
	P("discovery-endpoints", FT_STRINGS, "", "V3 discovery: gRPC endpoints of the discovery service."),
	P("discovery-token", FT_STRING, "", "V3 discovery: token of the cluster to bootstrap."),
	P("discovery-dial-timeout", FT_DURATION, "2s", "V3 discovery: dial timeout."),
	P("discovery-request-timeout", FT_DURATION, "5s", "V3 discovery: request timeout."),
	P("discovery-keepalive-time", FT_DURATION, "2s", "V3 discovery: keepalive time."),
	P("discovery-keepalive-timeout", FT_DURATION, "6s", "V3 discovery: keepalive timeout."),
	P("discovery-insecure-transport", FT_BOOL, "true", "V3 discovery: no TLS to the discovery service."),
	P("discovery-insecure-skip-tls-verify", FT_BOOL, "false", "V3 discovery: skip server certificate checks."),
	P("discovery-cert", FT_STRING, "", "V3 discovery: client certificate."),
	P("discovery-key", FT_STRING, "", "V3 discovery: client key."),
	P("discovery-cacert", FT_STRING, "", "V3 discovery: CA bundle."),
	P("discovery-user", FT_STRING, "", "V3 discovery: username[:password]."),
	P("discovery-password", FT_STRING, "", "V3 discovery: password."),
	H("strict-reconfig-check", FT_BOOL, FID_STRICT_RECONFIG, "true", "Refuse membership changes that would lose quorum."),
	P("pre-vote", FT_BOOL, "true", "Raft pre-vote phase."),
	H("auto-compaction-retention", FT_STRING, FID_AC_RETENTION, "0", "History to keep when compacting automatically (0 disables)."),
	H("auto-compaction-mode", FT_STRING, FID_AC_MODE, "periodic", "How to read --auto-compaction-retention: 'periodic' (a duration, hours if no unit) or 'revision' (a count)."),
	I("enable-v2", FT_BOOL, "false", "Serve the v2 API (etcd 3.5 only; uetcd has no v2)."),
	SEL("v2-deprecation", FU_IGNORED, "not-yet", "not-yet|write-only|write-only-drop-data|gone", "Stage of the v2 store deprecation."),
	I("experimental-enable-v2v3", FT_STRING, "", "Serve v2 through v3 under this prefix (etcd 3.5 only)."),

	SECTION("Security"),
	H("cert-file", FT_STRING, FID_CERT, "", "TLS certificate for client listeners."),
	H("key-file", FT_STRING, FID_KEY, "", "TLS key for client listeners."),
	H("client-cert-auth", FT_BOOL, FID_CLIENT_CERT_AUTH, "false", "Require client certificates signed by --trusted-ca-file."),
	I("client-cert-file", FT_STRING, "", "Certificate etcd presents as a client (gateway, proxy)."),
	I("client-key-file", FT_STRING, "", "Key etcd uses as a client (gateway, proxy)."),
	H("client-crl-file", FT_STRING, FID_CRL, "", "Revocation list for client certificates."),
	I("client-cert-allowed-hostname", FT_STRINGS, "", "SAN hostnames allowed in client certificates."),
	H("trusted-ca-file", FT_STRING, FID_CA, "", "CA that signs client certificates."),
	H("auto-tls", FT_BOOL, FID_AUTO_TLS, "false", "Serve client TLS with a generated self-signed certificate."),
	P("peer-cert-file", FT_STRING, "", "TLS certificate for peer traffic."),
	P("peer-key-file", FT_STRING, "", "TLS key for peer traffic."),
	P("peer-client-cert-auth", FT_BOOL, "false", "Require peer client certificates."),
	P("peer-trusted-ca-file", FT_STRING, "", "CA for peer certificates."),
	P("peer-cert-allowed-cn", FT_STRINGS, "", "CNs allowed for peers."),
	P("peer-cert-allowed-hostname", FT_STRINGS, "", "SAN hostnames allowed for peers."),
	P("peer-auto-tls", FT_BOOL, "false", "Peer TLS with generated certificates."),
	P("peer-client-cert-file", FT_STRING, "", "Certificate presented to peers as a client."),
	P("peer-client-key-file", FT_STRING, "", "Key used with peers as a client."),
	P("peer-crl-file", FT_STRING, "", "Revocation list for peer certificates."),
	XP("experimental-peer-skip-client-san-verification", FT_BOOL, "peer-skip-client-san-verification", "false", "Skip SAN checks of peer client certificates."),
	P("peer-skip-client-san-verification", FT_BOOL, "false", "Skip SAN checks of peer client certificates."),
	H("self-signed-cert-validity", FT_UINT, FID_SELF_CERT_VALIDITY, "1", "Validity in years of the certificate --auto-tls generates."),
	H("cipher-suites", FT_STRINGS, FID_CIPHERS, "", "Comma-separated TLS 1.2 cipher suites, by Go name (empty: library defaults)."),
	I("cors", FT_STRINGS, "*", "Origins allowed by CORS."),
	I("host-whitelist", FT_STRINGS, "*", "Host headers accepted on plain-HTTP requests."),
	H("tls-min-version", FT_STRING, FID_TLS_MIN, "TLS1.2", "Lowest TLS version: TLS1.2 or TLS1.3."),
	H("tls-max-version", FT_STRING, FID_TLS_MAX, "", "Highest TLS version: TLS1.2 or TLS1.3 (empty: the highest supported)."),

	SECTION("Auth"),
	H("auth-token", FT_STRING, FID_AUTH_TOKEN, "simple", "Token type and options: 'simple' or 'jwt,...'."),
	H("bcrypt-cost", FT_UINT, FID_BCRYPT, "10", "bcrypt cost for password hashes (4 to 31)."),
	H("auth-token-ttl", FT_UINT, FID_AUTH_TTL, "300", "Lifetime of a simple token, in seconds."),

	SECTION("Profiling and Monitoring"),
	H("enable-pprof", FT_BOOL, FID_PPROF, "false", "Serve profiling data under /debug/pprof/."),
	I("metrics", FT_STRING, "basic", "Metrics detail: 'basic' or 'extensive'."),
	H("listen-metrics-urls", FT_URLS, FID_LISTEN_METRICS, "", "Extra URLs serving /metrics, /health, /livez and /readyz."),

	SECTION("Logging"),
	H("logger", FT_STRING, FID_LOGGER, "zap", "Logger: only 'zap' (JSON lines, as etcd writes them)."),
	H("log-outputs", FT_STRINGS, FID_LOG_OUTPUTS, "default", "Log targets: 'default', 'stderr' or 'stdout'."),
	H("log-level", FT_STRING, FID_LOG_LEVEL, "info", "Lowest level logged: debug, info, warn, error, panic or fatal."),
	I("log-format", FT_STRING, "json", "Log format: json or console (uetcd writes json)."),
	I("enable-log-rotation", FT_BOOL, "false", "Rotate a single log file target."),
	I("log-rotation-config-json", FT_STRING, "{\"maxsize\": 100, \"maxage\": 0, \"maxbackups\": 0, \"localtime\": false, \"compress\": false}", "Log rotation settings."),
	I("disable-log-sampling", FT_BOOL, "false", "Log every repeated message."),

	SECTION("Distributed tracing"),
	XI("experimental-enable-distributed-tracing", FT_BOOL, "enable-distributed-tracing", "false", "OpenTelemetry tracing."),
	XI("experimental-distributed-tracing-address", FT_STRING, "distributed-tracing-address", "localhost:4317", "Tracing collector address."),
	XI("experimental-distributed-tracing-service-name", FT_STRING, "distributed-tracing-service-name", "etcd", "Tracing service name."),
	XI("experimental-distributed-tracing-instance-id", FT_STRING, "distributed-tracing-instance-id", "", "Tracing instance ID."),
	XI("experimental-distributed-tracing-sampling-rate", FT_INT, "distributed-tracing-sampling-rate", "0", "Spans sampled per million."),
	I("enable-distributed-tracing", FT_BOOL, "false", "OpenTelemetry tracing."),
	I("distributed-tracing-address", FT_STRING, "localhost:4317", "Tracing collector address."),
	I("distributed-tracing-service-name", FT_STRING, "etcd", "Tracing service name."),
	I("distributed-tracing-instance-id", FT_STRING, "", "Tracing instance ID."),
	I("distributed-tracing-sampling-rate", FT_INT, "0", "Spans sampled per million."),

	SECTION("v2 Proxy (etcd 3.5)"),
	SEL("proxy", FU_IGNORED, "off", "off|readonly|on", "v2 proxy mode."),
	I("proxy-failure-wait", FT_UINT, "5000", "Milliseconds an endpoint stays failed."),
	I("proxy-refresh-interval", FT_UINT, "30000", "Milliseconds between endpoint refreshes."),
	I("proxy-dial-timeout", FT_UINT, "1000", "Dial timeout in milliseconds."),
	I("proxy-write-timeout", FT_UINT, "5000", "Write timeout in milliseconds."),
	I("proxy-read-timeout", FT_UINT, "0", "Read timeout in milliseconds."),

	SECTION("Experimental features and their etcd 3.6 names"),
	H("feature-gates", FT_GATES, FID_FEATURE_GATES, "", "Feature gates, Name=bool,...: InitialCorruptCheck, StopGRPCServiceOnDefrag, TxnModeWriteWithSharedBuffer, CompactHashCheck, LeaseCheckpoint, LeaseCheckpointPersist, SetMemberLocalAddr, AllAlpha, AllBeta."),
	XG("experimental-initial-corrupt-check", FU_HONOURED, FID_NONE, 2, "false", "Check the data for corruption before serving (gate InitialCorruptCheck)."),
	XI("experimental-corrupt-check-time", FT_DURATION, "corrupt-check-time", "0s", "Interval between cluster corruption checks."),
	I("corrupt-check-time", FT_DURATION, "0s", "Interval between cluster corruption checks."),
	XG("experimental-compact-hash-check-enabled", FU_PEER, FID_NONE, 3, "false", "Leader checks followers' compaction hashes (gate CompactHashCheck)."),
	XP("experimental-compact-hash-check-time", FT_DURATION, "compact-hash-check-time", "1m", "Interval of compaction hash checks."),
	P("compact-hash-check-time", FT_DURATION, "1m", "Interval of compaction hash checks."),
	XG("experimental-enable-lease-checkpoint", FU_PEER, FID_NONE, 4, "false", "Leader checkpoints lease TTLs to followers (gate LeaseCheckpoint)."),
	XG("experimental-enable-lease-checkpoint-persist", FU_IGNORED, FID_NONE, 5, "false", "Persist lease checkpoints (gate LeaseCheckpointPersist)."),
	XI("experimental-compaction-batch-limit", FT_INT, "compaction-batch-limit", "1000", "Revisions deleted per compaction batch."),
	I("compaction-batch-limit", FT_INT, "1000", "Revisions deleted per compaction batch."),
	XI("experimental-compaction-sleep-interval", FT_DURATION, "compaction-sleep-interval", "10ms", "Pause between compaction batches."),
	I("compaction-sleep-interval", FT_DURATION, "10ms", "Pause between compaction batches."),
	XH("experimental-watch-progress-notify-interval", FT_DURATION, FID_WATCH_PROGRESS, "watch-progress-notify-interval", "10m", "Interval of periodic watch progress notifications."),
	H("watch-progress-notify-interval", FT_DURATION, FID_WATCH_PROGRESS, "10m", "Interval of periodic watch progress notifications."),
	XI("experimental-downgrade-check-time", FT_DURATION, "downgrade-check-time", "5s", "Interval of downgrade status checks."),
	I("downgrade-check-time", FT_DURATION, "5s", "Interval of downgrade status checks."),
	XI("experimental-memory-mlock", FT_BOOL, "memory-mlock", "false", "mlock the database pages."),
	I("memory-mlock", FT_BOOL, "false", "mlock the database pages."),
	XI("experimental-warning-apply-duration", FT_DURATION, "warning-apply-duration", "100ms", "Warn when applying a request takes longer."),
	I("warning-apply-duration", FT_DURATION, "100ms", "Warn when applying a request takes longer."),
	{ "experimental-warning-unary-request-duration", FT_DURATION, FU_IGNORED, FID_WARN_UNARY_EXP, 0, "warning-unary-request-duration", "300ms", "Warn when a unary request takes longer.", NULL },
	IID("warning-unary-request-duration", FT_DURATION, FID_WARN_UNARY, "300ms", "Warn when a unary request takes longer."),
	XG("experimental-txn-mode-write-with-shared-buffer", FU_IGNORED, FID_NONE, 1, "true", "Write transactions share the read buffer (gate TxnModeWriteWithSharedBuffer)."),
	XI("experimental-bootstrap-defrag-threshold-megabytes", FT_UINT, "bootstrap-defrag-threshold-megabytes", "0", "Defragment at start when that many MB would be freed."),
	I("bootstrap-defrag-threshold-megabytes", FT_UINT, "0", "Defragment at start when that many MB would be freed."),
	XG("experimental-stop-grpc-service-on-defrag", FU_IGNORED, FID_NONE, 0, "false", "Stop serving gRPC while defragmenting (gate StopGRPCServiceOnDefrag)."),
	XP("experimental-snapshot-catchup-entries", FT_UINT64, "snapshot-catchup-entries", "5000", "Entries kept for slow followers."),
	P("snapshot-catchup-entries", FT_UINT64, "5000", "Entries kept for slow followers."),
	XP("experimental-max-learners", FT_INT, "max-learners", "1", "Most learners in the cluster."),
	P("max-learners", FT_INT, "1", "Most learners in the cluster."),
	P("experimental-wait-cluster-ready-timeout", FT_DURATION, "5s", "Wait for the cluster to be ready at start."),
	XG("experimental-set-member-localaddr", FU_PEER, FID_NONE, 6, "false", "Use the advertised peer address as local address (gate SetMemberLocalAddr)."),

	SECTION("Unsafe"),
	P("force-new-cluster", FT_BOOL, "false", "Force a new one-member cluster (uetcd always is one)."),
	H("unsafe-no-fsync", FT_BOOL, FID_NO_FSYNC, "false", "Do not fsync: acknowledged writes can be lost on a crash."),

	SECTION("Other"),
	{ "config-file", FT_STRING, FU_SPECIAL, FID_CONFIG_FILE, 0, NULL, "", "YAML configuration file; when given, other flags and ETCD_* variables are ignored.", NULL },
	{ "version", FT_BOOL, FU_SPECIAL, FID_VERSION, 0, NULL, "false", "Print the version and exit.", NULL },
	OBS("cluster-active-size"), OBS("cluster-remove-delay"), OBS("cluster-sync-interval"),
	OBS("config"), OBS("force"), OBS("max-result-buffer"), OBS("max-retry-attempts"),
	OBS("peer-heartbeat-interval"), OBS("peer-election-timeout"), OBS("retry-interval"),
	OBS("snapshot"), OBS("v"), OBS("vv"), OBS("test.coverprofile"), OBS("test.outputdir"),
};

#define FLAGS_N (sizeof flags / sizeof flags[0])
_Static_assert(FLAGS_N < 256, "flag indexes are stored in uint8_t");

static const struct {
	const char *name;
	uint32_t bit;
	bool beta, deflt;
} gates[] = {
	{ "StopGRPCServiceOnDefrag", CONFIG_GATE_STOP_GRPC_SERVICE_ON_DEFRAG, false, false },
	{ "TxnModeWriteWithSharedBuffer", CONFIG_GATE_TXN_MODE_WRITE_WITH_SHARED_BUFFER, true, true },
	{ "InitialCorruptCheck", CONFIG_GATE_INITIAL_CORRUPT_CHECK, false, false },
	{ "CompactHashCheck", CONFIG_GATE_COMPACT_HASH_CHECK, false, false },
	{ "LeaseCheckpoint", CONFIG_GATE_LEASE_CHECKPOINT, false, false },
	{ "LeaseCheckpointPersist", CONFIG_GATE_LEASE_CHECKPOINT_PERSIST, false, false },
	{ "SetMemberLocalAddr", CONFIG_GATE_SET_MEMBER_LOCAL_ADDR, false, false },
};
#define GATES_N (sizeof gates / sizeof gates[0])

static const struct flag_def *flag_find(const char *name, size_t len)
{
	for (size_t i = 0; i < FLAGS_N; i++)
		if (flags[i].type != FT_SECTION && strlen(flags[i].name) == len &&
		    memcmp(flags[i].name, name, len) == 0)
			return &flags[i];
	return NULL;
}

/* ---------------------------------------------------------------------------------------- */
/* Go value syntax                                                                          */

int config_parse_bool(const char *s, bool *out)
{
	static const char *const t[] = { "1", "t", "T", "TRUE", "true", "True" };
	static const char *const f[] = { "0", "f", "F", "FALSE", "false", "False" };
	for (size_t i = 0; i < 6; i++) {
		if (strcmp(s, t[i]) == 0) {
			*out = true;
			return 0;
		}
		if (strcmp(s, f[i]) == 0) {
			*out = false;
			return 0;
		}
	}
	return -EINVAL;
}

/* Go's underscoreOK: '_' only between digits, the base prefix counting as a digit. */
static bool go_underscores_ok(const char *s)
{
	char saw = '^';
	size_t i = 0;
	if (*s == '+' || *s == '-')
		s++;
	if (s[0] == '0' && s[1] && strchr("bBoOxX", s[1])) {
		i = 2;
		saw = '0';
	}
	for (; s[i]; i++) {
		if (isxdigit((unsigned char)s[i])) {
			saw = '0';
			continue;
		}
		if (s[i] == '_') {
			if (saw != '0')
				return false;
			saw = '_';
			continue;
		}
		if (saw == '_')
			return false;
		saw = '!';
	}
	return saw != '_';
}

/* strconv.ParseUint(s, base, bits) with base 0 or 10: 0, -EINVAL (syntax) or -ERANGE. */
static int go_parse_uint(const char *s, int base, unsigned bits, uint64_t *out)
{
	const char *s0 = s;
	uint64_t max = bits == 64 ? UINT64_MAX : (UINT64_C(1) << bits) - 1, n = 0;
	bool underscores = false, range = false;
	if (*s == 0)
		return -EINVAL;
	if (base == 0) {
		base = 10;
		if (s[0] == '0') {
			size_t len = strlen(s);
			if (len >= 3 && (s[1] == 'b' || s[1] == 'B'))
				base = 2, s += 2;
			else if (len >= 3 && (s[1] == 'o' || s[1] == 'O'))
				base = 8, s += 2;
			else if (len >= 3 && (s[1] == 'x' || s[1] == 'X'))
				base = 16, s += 2;
			else
				base = 8, s += 1;
		}
		underscores = true;
	}
	for (; *s; s++) {
		int d;
		if (*s == '_' && underscores)
			continue;
		if (*s >= '0' && *s <= '9')
			d = *s - '0';
		else if (*s >= 'a' && *s <= 'z')
			d = *s - 'a' + 10;
		else if (*s >= 'A' && *s <= 'Z')
			d = *s - 'A' + 10;
		else
			return -EINVAL;
		if (d >= base)
			return -EINVAL;
		if (range)
			continue;
		if (n > (max - (uint64_t)d) / (uint64_t)base)
			range = true;
		else
			n = n * (uint64_t)base + (uint64_t)d;
	}
	if (underscores && !go_underscores_ok(s0))
		return -EINVAL;
	if (range)
		return -ERANGE;
	*out = n;
	return 0;
}

/* strconv.ParseInt(s, 0, 64). */
static int go_parse_int(const char *s, int64_t *out)
{
	bool neg = false;
	uint64_t u;
	if (*s == '+' || *s == '-')
		neg = *s++ == '-';
	int rc = go_parse_uint(s, 0, 64, &u);
	if (rc != 0)
		return rc;
	if (!neg && u > (uint64_t)INT64_MAX)
		return -ERANGE;
	if (neg && u > (uint64_t)INT64_MAX + 1)
		return -ERANGE;
	*out = neg ? (int64_t)(0 - u) : (int64_t)u;
	return 0;
}

int config_parse_duration_ns(const char *s, int64_t *ns)
{
	static const struct {
		const char *unit;
		uint64_t ns;
	} units[] = {
		{ "ns", 1 }, { "us", 1000 }, { "\xc2\xb5s", 1000 } /* U+00B5 micro sign */,
		{ "\xce\xbcs", 1000 } /* U+03BC Greek mu */, { "ms", 1000000 },
		{ "s", 1000000000 }, { "m", UINT64_C(60000000000) }, { "h", UINT64_C(3600000000000) },
	};
	const uint64_t lim = UINT64_C(1) << 63;
	uint64_t d = 0;
	bool neg = false;
	if (s == NULL)
		return -EINVAL;
	if (*s == '-' || *s == '+')
		neg = *s++ == '-';
	if (strcmp(s, "0") == 0) {
		*ns = 0;
		return 0;
	}
	if (*s == 0)
		return -EINVAL;
	while (*s) {
		uint64_t v = 0, f = 0;
		double scale = 1;
		const char *p = s;
		if (!(*s == '.' || (*s >= '0' && *s <= '9')))
			return -EINVAL;
		for (; *s >= '0' && *s <= '9'; s++) {
			if (v > (lim - 1) / 10)
				return -EINVAL;
			v = v * 10 + (uint64_t)(*s - '0');
			if (v > lim)
				return -EINVAL;
		}
		bool pre = s != p, post = false;
		if (*s == '.') {
			s++;
			p = s;
			bool overflow = false;
			for (; *s >= '0' && *s <= '9'; s++) {
				if (overflow)
					continue;
				if (f > (lim - 1) / 10) {
					overflow = true;
					continue;
				}
				f = f * 10 + (uint64_t)(*s - '0');
				scale *= 10;
			}
			post = s != p;
		}
		if (!pre && !post)
			return -EINVAL;
		p = s;
		while (*s && *s != '.' && !(*s >= '0' && *s <= '9'))
			s++;
		if (p == s)
			return -EINVAL; /* missing unit */
		uint64_t unit = 0;
		for (size_t i = 0; i < sizeof units / sizeof units[0]; i++)
			if (strlen(units[i].unit) == (size_t)(s - p) && memcmp(units[i].unit, p, (size_t)(s - p)) == 0)
				unit = units[i].ns;
		if (unit == 0)
			return -EINVAL; /* unknown unit */
		if (v > lim / unit)
			return -EINVAL;
		v *= unit;
		if (f > 0) {
			v += (uint64_t)((double)f * ((double)unit / scale));
			if (v > lim)
				return -EINVAL;
		}
		d += v;
		if (d > lim)
			return -EINVAL;
	}
	if (neg) {
		*ns = d == lim ? INT64_MIN : -(int64_t)d;
		return 0;
	}
	if (d > (uint64_t)INT64_MAX)
		return -EINVAL;
	*ns = (int64_t)d;
	return 0;
}

int64_t config_parse_duration_ms(const char *s)
{
	int64_t ns;
	if (config_parse_duration_ns(s, &ns) != 0 || ns < 0)
		return -1;
	return ns / 1000000 + (ns % 1000000 != 0);
}

/* A duration flag's value in ms, clamped at 0 (etcd accepts negative durations; every
 * honoured duration treats <= 0 as 0). The config file gives integer nanoseconds. */
static int duration_value_ms(const char *v, bool from_file, uint64_t *ms)
{
	int64_t ns;
	if (from_file && go_parse_int(v, &ns) == 0) {
		/* YAML integer: nanoseconds, as etcd's time.Duration fields unmarshal */
	} else if (config_parse_duration_ns(v, &ns) != 0) {
		return -EINVAL;
	}
	*ms = ns <= 0 ? 0 : (uint64_t)(ns / 1000000 + (ns % 1000000 != 0));
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* URLs                                                                                     */

static bool is_ip_literal(const char *h)
{
	unsigned char buf[16];
	return inet_pton(AF_INET, h, buf) == 1 || inet_pton(AF_INET6, h, buf) == 1;
}

/* Parses with etcd's types.NewURLs rules; on error writes Go's reason to err. */
static int url_parse(const char *s, struct config_url *u, char *err, size_t errlen)
{
	char buf[sizeof u->text];
	size_t n = strlen(s);
	while (n && isspace((unsigned char)s[n - 1]))
		n--;
	while (n && isspace((unsigned char)*s))
		s++, n--;
	if (n >= sizeof buf) {
		snprintf(err, errlen, "URL too long: %.40s...", s);
		return -1;
	}
	memcpy(buf, s, n);
	buf[n] = 0;
	memset(u, 0, sizeof *u);
	memcpy(u->text, buf, n + 1);

	/* scheme: ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) ":" */
	const char *colon = strchr(buf, ':');
	size_t sl = 0;
	bool has_scheme = false;
	if (colon && isalpha((unsigned char)buf[0])) {
		has_scheme = true;
		for (const char *p = buf; p < colon; p++)
			if (!isalnum((unsigned char)*p) && !strchr("+-.", *p))
				has_scheme = false;
	}
	if (has_scheme) {
		sl = (size_t)(colon - buf);
	} else if (colon && (strchr(buf, '/') == NULL || strchr(buf, '/') > colon)) {
		snprintf(err, errlen, "parse \"%s\": first path segment in URL cannot contain colon", buf);
		return -1;
	}
	char scheme[16] = "";
	if (sl < sizeof scheme) {
		for (size_t i = 0; i < sl; i++)
			scheme[i] = (char)tolower((unsigned char)buf[i]);
		scheme[sl] = 0;
	}
	bool is_unix = strcmp(scheme, "unix") == 0 || strcmp(scheme, "unixs") == 0;
	if (!is_unix && strcmp(scheme, "http") != 0 && strcmp(scheme, "https") != 0) {
		snprintf(err, errlen, "URL scheme must be http, https, unix, or unixs: %s", buf);
		return -1;
	}
	memcpy(u->scheme, scheme, strlen(scheme) + 1);
	const char *rest = buf + sl + 1;
	if (strncmp(rest, "//", 2) != 0) {
		/* opaque ("unix:name"): no authority */
		if (is_unix) {
			snprintf(u->host, sizeof u->host, "%s", rest);
			return 0;
		}
		snprintf(err, errlen, "URL address does not have the form \"host:port\": %s", buf);
		return -1;
	}
	rest += 2;
	size_t al = strcspn(rest, "/?#");
	if (rest[al] == '/') {
		snprintf(err, errlen, "URL must not contain a path: %s", buf);
		return -1;
	}
	char auth[300];
	memcpy(auth, rest, al);
	auth[al] = 0;
	char *hp = strrchr(auth, '@'); /* userinfo is allowed by Go and ignored here */
	hp = hp ? hp + 1 : auth;
	char *port = NULL;
	if (hp[0] == '[') {
		char *rb = strchr(hp, ']');
		if (rb == NULL) {
			snprintf(err, errlen, "parse \"%s\": missing ']' in host", buf);
			return -1;
		}
		*rb = 0;
		if (rb[1] == ':')
			port = rb + 2;
		else if (rb[1] != 0) {
			snprintf(err, errlen, "parse \"%s\": invalid port \"%s\" after host", buf, rb + 1);
			return -1;
		}
		hp++;
	} else {
		char *c = strrchr(hp, ':');
		if (c) {
			if (memchr(hp, ':', (size_t)(c - hp)) && !is_unix) {
				snprintf(err, errlen, "URL address does not have the form \"host:port\": %s", buf);
				return -1;
			}
			*c = 0;
			port = c + 1;
		}
	}
	if (strlen(hp) >= sizeof u->host) {
		snprintf(err, errlen, "URL host too long: %s", buf);
		return -1;
	}
	memcpy(u->host, hp, strlen(hp) + 1);
	if (port) {
		uint64_t p;
		if (strspn(port, "0123456789") != strlen(port)) {
			snprintf(err, errlen, "parse \"%.300s\": invalid port \":%.40s\" after host", buf, port);
			return -1;
		}
		if (*port == 0 || go_parse_uint(port, 10, 64, &p) != 0 || p > 65535) {
			snprintf(err, errlen, "URL address does not have the form \"host:port\": %s", buf);
			return -1;
		}
		u->port = (uint16_t)p;
	} else if (!is_unix) {
		snprintf(err, errlen, "URL address does not have the form \"host:port\": %s", buf);
		return -1;
	}
	return 0;
}

int config_parse_url(const char *s, struct config_url *u)
{
	char err[512];
	return url_parse(s, u, err, sizeof err) == 0 ? 0 : -1;
}

/* Parses a comma-separated list into up to `max` URLs (duplicates dropped; "" is none). */
static int url_list_parse(const char *v, struct config_url *out, int max, int *n, char *err, size_t errlen)
{
	struct config_url tmp;
	*n = 0;
	if (*v == 0)
		return 0;
	for (const char *p = v;;) {
		size_t l = strcspn(p, ",");
		char item[sizeof tmp.text + 1];
		if (l >= sizeof item) {
			snprintf(err, errlen, "URL too long: %.40s...", p);
			return -1;
		}
		memcpy(item, p, l);
		item[l] = 0;
		if (url_parse(item, &tmp, err, errlen) != 0)
			return -1;
		bool dup = false;
		for (int i = 0; i < *n; i++)
			dup |= strcmp(out[i].text, tmp.text) == 0;
		if (!dup) {
			if (*n == max) {
				snprintf(err, errlen, "too many URLs (uetcd takes at most %d)", max);
				return -1;
			}
			out[(*n)++] = tmp;
		}
		if (p[l] == 0)
			break;
		p += l + 1;
	}
	return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Setting one flag                                                                         */

enum src { SRC_NONE, SRC_ENV, SRC_ARGV, SRC_FILE };

/* Per-parse state: the value each flag got and where from. */
struct parse {
	const char *val[FLAGS_N];
	uint8_t src[FLAGS_N];
	uint32_t gates_set, gates_val; /* explicit --feature-gates entries */
	bool all_alpha_set, all_alpha, all_beta_set, all_beta;
	bool help, version;
};

static int copy_str(char *dst, size_t cap, const char *v, char *err, size_t errlen)
{
	size_t l = strlen(v);
	if (l >= cap) {
		snprintf(err, errlen, "value too long (uetcd takes at most %zu bytes)", cap - 1);
		return -1;
	}
	memcpy(dst, v, l + 1);
	return 0;
}

/* --feature-gates value: Go's featuregate.Set. */
static int gates_parse(const char *v, struct parse *ps, char *err, size_t errlen)
{
	for (const char *p = v; *p;) {
		size_t l = strcspn(p, ",");
		char item[256], key[256], val[256];
		if (l == 0) {
			p++;
			continue;
		}
		if (l >= sizeof item) {
			snprintf(err, errlen, "feature gate entry too long");
			return -1;
		}
		memcpy(item, p, l);
		item[l] = 0;
		p += l + (p[l] == ',');
		char *eq = strchr(item, '=');
		char *k = item, *e;
		if (eq)
			*eq = 0;
		while (isspace((unsigned char)*k))
			k++;
		e = k + strlen(k);
		while (e > k && isspace((unsigned char)e[-1]))
			*--e = 0;
		snprintf(key, sizeof key, "%s", k);
		if (eq == NULL) {
			snprintf(err, errlen, "missing bool value for %s", key);
			return -1;
		}
		k = eq + 1;
		while (isspace((unsigned char)*k))
			k++;
		e = k + strlen(k);
		while (e > k && isspace((unsigned char)e[-1]))
			*--e = 0;
		snprintf(val, sizeof val, "%s", k);
		bool b;
		if (config_parse_bool(val, &b) != 0) {
			snprintf(err, errlen, "invalid value of %.100s=%.100s, err: strconv.ParseBool: parsing \"%.100s\": invalid syntax", key, val, val);
			return -1;
		}
		if (strcmp(key, "AllAlpha") == 0) {
			ps->all_alpha_set = true, ps->all_alpha = b;
			continue;
		}
		if (strcmp(key, "AllBeta") == 0) {
			ps->all_beta_set = true, ps->all_beta = b;
			continue;
		}
		size_t i;
		for (i = 0; i < GATES_N; i++)
			if (strcmp(key, gates[i].name) == 0)
				break;
		if (i == GATES_N) {
			snprintf(err, errlen, "unrecognized feature gate: %s", key);
			return -1;
		}
		ps->gates_set |= gates[i].bit;
		if (b)
			ps->gates_val |= gates[i].bit;
		else
			ps->gates_val &= ~gates[i].bit;
	}
	return 0;
}

static int check_choice(const char *choices, const char *v)
{
	size_t l = strlen(v);
	for (const char *p = choices; *p;) {
		size_t n = strcspn(p, "|");
		if (n == l && memcmp(p, v, l) == 0)
			return 0;
		p += n + (p[n] == '|');
	}
	return -1;
}

/* Checks v for flag d and, where d is honoured, stores it in *c. `err` gets the reason Go's
 * flag package would give after "invalid value %q for flag -%s: ". */
static int flag_set(struct config *c, struct parse *ps, const struct flag_def *d, const char *v,
		    int src, char *err, size_t errlen)
{
	bool b = false;
	uint64_t u = 0;
	int64_t i = 0;
	int rc = 0;
	bool file = src == SRC_FILE;

	switch (d->type) {
	case FT_BOOL:
		if (config_parse_bool(v, &b) != 0) {
			if (file && (!strcasecmp(v, "yes") || !strcasecmp(v, "on")))
				b = true;
			else if (file && (!strcasecmp(v, "no") || !strcasecmp(v, "off")))
				b = false;
			else
				goto parse_error;
		}
		break;
	case FT_INT:
	case FT_INT64:
		rc = go_parse_int(v, &i);
		break;
	case FT_UINT:
	case FT_UINT64:
		rc = go_parse_uint(v, 0, 64, &u);
		break;
	case FT_UINT32:
		rc = go_parse_uint(v, 10, 32, &u);
		if (rc != 0) {
			snprintf(err, errlen, "strconv.ParseUint: parsing \"%s\": %s", v,
				 rc == -ERANGE ? "value out of range" : "invalid syntax");
			return -1;
		}
		break;
	case FT_DURATION:
		if (duration_value_ms(v, file, &u) != 0)
			goto parse_error;
		break;
	case FT_SELECT:
		if (check_choice(d->choices, v) != 0) {
			snprintf(err, errlen, "invalid value");
			return -1;
		}
		break;
	case FT_URLS: {
		struct config_url tmp[CONFIG_URLS_MAX];
		int n;
		if (url_list_parse(v, tmp, CONFIG_URLS_MAX, &n, err, errlen) != 0)
			return -1;
		break;
	}
	case FT_GATES:
		if (gates_parse(v, ps, err, errlen) != 0)
			return -1;
		break;
	default:
		break;
	}
	if (rc == -ERANGE) {
		snprintf(err, errlen, "value out of range");
		return -1;
	}
	if (rc != 0)
		goto parse_error;
	if (c == NULL)
		return 0;

	switch (d->id) {
	case FID_NAME:
		return copy_str(c->name, sizeof c->name, v, err, errlen);
	case FID_DATA_DIR:
		return copy_str(c->data_dir, sizeof c->data_dir, v, err, errlen);
	case FID_LISTEN_CLIENT:
		return url_list_parse(v, c->listen_client, CONFIG_URLS_MAX, &c->n_listen_client, err, errlen);
	case FID_LISTEN_METRICS:
		return url_list_parse(v, c->listen_metrics, CONFIG_URLS_MAX, &c->n_listen_metrics, err, errlen);
	case FID_ADVERTISE_CLIENT:
		return copy_str(c->advertise_client_urls, sizeof c->advertise_client_urls, v, err, errlen);
	case FID_ADVERTISE_PEER:
		return copy_str(c->initial_advertise_peer_urls, sizeof c->initial_advertise_peer_urls, v, err, errlen);
	case FID_CLUSTER_TOKEN:
		return copy_str(c->initial_cluster_token, sizeof c->initial_cluster_token, v, err, errlen);
	case FID_INITIAL_CLUSTER:
		return copy_str(c->initial_cluster, sizeof c->initial_cluster, v, err, errlen);
	case FID_THREADS:
		if (i < 1 || i > CONFIG_THREADS_MAX) {
			snprintf(err, errlen, "must be between 1 and %d", CONFIG_THREADS_MAX);
			return -1;
		}
		c->threads = (int)i;
		return 0;
	case FID_MAX_REQUEST_BYTES:
		c->max_request_bytes = u;
		return 0;
	case FID_MAX_TXN_OPS:
		c->max_txn_ops = u > UINT32_MAX ? UINT32_MAX : (uint32_t)u;
		return 0;
	case FID_MAX_STREAMS:
		c->max_concurrent_streams = (uint32_t)u;
		return 0;
	case FID_QUOTA:
		c->quota_backend_bytes = i;
		return 0;
	case FID_NO_FSYNC:
		c->unsafe_no_fsync = b;
		return 0;
	case FID_SNAPSHOT_COUNT:
		c->snapshot_count = u;
		return 0;
	case FID_CKPT_BYTES:
		c->checkpoint_log_bytes = u;
		return 0;
	case FID_WATCH_PROGRESS:
		/* etcd keeps its 10m default when the interval is not positive */
		c->watch_progress_notify_interval_ms = u > 0 ? u : 600000;
		return 0;
	case FID_KA_MIN:
		c->grpc_keepalive_min_time_ms = u;
		return 0;
	case FID_KA_INTERVAL:
		c->grpc_keepalive_interval_ms = u;
		return 0;
	case FID_KA_TIMEOUT:
		c->grpc_keepalive_timeout_ms = u;
		return 0;
	case FID_AC_MODE:
		return copy_str(c->auto_compaction_mode, sizeof c->auto_compaction_mode, v, err, errlen);
	case FID_AC_RETENTION:
		return copy_str(c->auto_compaction_retention, sizeof c->auto_compaction_retention, v, err, errlen);
	case FID_CERT:
		return copy_str(c->cert_file, sizeof c->cert_file, v, err, errlen);
	case FID_KEY:
		return copy_str(c->key_file, sizeof c->key_file, v, err, errlen);
	case FID_CA:
		return copy_str(c->trusted_ca_file, sizeof c->trusted_ca_file, v, err, errlen);
	case FID_CRL:
		return copy_str(c->client_crl_file, sizeof c->client_crl_file, v, err, errlen);
	case FID_CLIENT_CERT_AUTH:
		c->client_cert_auth = b;
		return 0;
	case FID_AUTO_TLS:
		c->auto_tls = b;
		return 0;
	case FID_SELF_CERT_VALIDITY:
		/* etcd refuses 0 when it makes a certificate; beyond a century is taken as a century */
		c->self_signed_cert_validity_years = u > 100 ? 100 : (unsigned)u;
		return 0;
	case FID_TLS_MIN:
		return copy_str(c->tls_min_version, sizeof c->tls_min_version, v, err, errlen);
	case FID_TLS_MAX:
		return copy_str(c->tls_max_version, sizeof c->tls_max_version, v, err, errlen);
	case FID_CIPHERS:
		return copy_str(c->cipher_suites, sizeof c->cipher_suites, v, err, errlen);
	case FID_AUTH_TOKEN:
		return copy_str(c->auth_token, sizeof c->auth_token, v, err, errlen);
	case FID_AUTH_TTL:
		c->auth_token_ttl_s = u;
		return 0;
	case FID_BCRYPT:
		c->bcrypt_cost = u > 1000 ? 1000 : (int)u;
		return 0;
	case FID_LOG_LEVEL:
		return copy_str(c->log_level, sizeof c->log_level, v, err, errlen);
	case FID_LOG_OUTPUTS:
		return copy_str(c->log_outputs, sizeof c->log_outputs, v, err, errlen);
	case FID_STRICT_RECONFIG:
		c->strict_reconfig_check = b;
		return 0;
	case FID_PPROF:
		c->enable_pprof = b;
		return 0;
	case FID_GATEWAY:
		c->enable_grpc_gateway = b;
		return 0;
	case FID_CONFIG_FILE:
		return copy_str(c->config_file, sizeof c->config_file, v, err, errlen);
	default:
		return 0;
	}

parse_error:
	snprintf(err, errlen, "parse error");
	return -1;
}

/* ---------------------------------------------------------------------------------------- */
/* Output: usage, help, version, flag table                                                 */

static void print_usage(FILE *out)
{
	fputs("Usage:\n\n"
	      "  etcd [flags]\n"
	      "    Start uetcd, a single-node server that speaks etcd's v3 API.\n\n"
	      "  etcd --version\n"
	      "    Print the etcd API version uetcd implements, and uetcd's own version.\n\n"
	      "  etcd -h | --help\n"
	      "    Print this help.\n\n"
	      "  etcd --config-file\n"
	      "    Read the configuration from a YAML file; other flags and ETCD_* environment\n"
	      "    variables are then ignored.\n",
	      out);
}

static const char *use_note(uint8_t use)
{
	switch (use) {
	case FU_PEER:
		return " [peer/cluster flag: no effect on a single node]";
	case FU_IGNORED:
		return " [accepted, ignored by uetcd]";
	default:
		return "";
	}
}

static void print_help(FILE *out)
{
	for (size_t i = 0; i < FLAGS_N; i++) {
		const struct flag_def *d = &flags[i];
		if (d->type == FT_SECTION) {
			fprintf(out, "\n%s:\n", d->name);
			continue;
		}
		if (d->type == FT_OBSOLETE)
			continue;
		if (d->type == FT_BOOL && d->deflt && strcmp(d->deflt, "false") == 0)
			fprintf(out, "  --%s\n", d->name);
		else
			fprintf(out, "  --%s '%s'\n", d->name, d->deflt ? d->deflt : "");
		fprintf(out, "    %s%s\n", d->help ? d->help : "", use_note(d->use));
		if (d->alias)
			fprintf(out, "    Deprecated in etcd 3.6: use --%s.\n", d->alias);
	}
	fputs("\nEvery flag may also be set as an environment variable: ETCD_ and the flag name in\n"
	      "upper case with '_' for '-' (ETCD_DATA_DIR for --data-dir). A flag given both ways\n"
	      "is an error, as in etcd.\n",
	      out);
}

static void print_version(FILE *out)
{
	fprintf(out, "etcd Version: %s\n", UETCD_ETCD_API_VERSION);
	fprintf(out, "uetcd Version: %s\n", UETCD_VERSION);
	fprintf(out, "Git SHA: not provided\n");
	fprintf(out, "Go Version: not applicable (C)\n");
#if defined(__x86_64__)
	fprintf(out, "Go OS/Arch: linux/amd64\n");
#elif defined(__aarch64__)
	fprintf(out, "Go OS/Arch: linux/arm64\n");
#else
	fprintf(out, "Go OS/Arch: linux/unknown\n");
#endif
}

void config_print_flag_table(FILE *out)
{
	static const char *const use_name[] = { "honoured", "honoured", "peer (accepted, not applicable)", "ignored (accepted, warned)" };
	fputs("| flag | uetcd | default | notes |\n|---|---|---|---|\n", out);
	for (size_t i = 0; i < FLAGS_N; i++) {
		const struct flag_def *d = &flags[i];
		if (d->type == FT_SECTION)
			continue;
		fprintf(out, "| `--%s` | %s | %s | ", d->name, use_name[d->use],
			d->deflt && *d->deflt ? d->deflt : "");
		if (d->type == FT_OBSOLETE)
			fputs("obsolete etcd flag, ignored as etcd ignores it", out);
		else
			fputs(d->help ? d->help : "", out);
		if (d->alias)
			fprintf(out, " Deprecated name of `--%s`.", d->alias);
		fputs(" |\n", out);
	}
	fputs("| any other flag | refused | | `flag provided but not defined: -NAME`, exit status 2, as etcd |\n", out);
}

/* ---------------------------------------------------------------------------------------- */
/* The YAML config file                                                                     */

/* The subset read: `key: value` lines at column 0; a value may be plain, 'single' or
 * "double" quoted, or a flow list [a, b]; a key with no value may be followed by indented
 * `- item` lines (a list) or indented `key: value` lines (one nested map, used for
 * client-transport-security, peer-transport-security and socket-options). '#' starts a
 * comment outside quotes; "---" and blank lines are skipped; null and ~ mean "not set".
 * Anchors, tags, block scalars (| >) and deeper nesting are refused with the line number.
 * Keys are etcd's: flag names, except the TLS settings, which etcd reads only from the two
 * nested maps. Unknown keys are warned about and ignored (etcd ignores them silently). */

#define FILE_MAX (1u << 20)

struct file_state {
	char *buf;       /* whole file, parsed in place */
	char *out;       /* joined list values */
	size_t out_used, out_cap;
	struct parse *ps;
	const char *path;
	char *err;
	size_t errlen;
};

static char *trim(char *s)
{
	while (*s == ' ' || *s == '\t')
		s++;
	char *e = s + strlen(s);
	while (e > s && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\r'))
		*--e = 0;
	return s;
}

/* Strips a comment and unquotes in place; returns NULL on a bad quote. */
static char *yaml_scalar(char *s, bool *quoted)
{
	s = trim(s);
	*quoted = false;
	if (*s == '\'' || *s == '"') {
		char q = *s, *w = s, *r = s + 1;
		for (;; r++) {
			if (*r == 0)
				return NULL;
			if (*r == q) {
				if (q == '\'' && r[1] == '\'') {
					*w++ = '\'';
					r++;
					continue;
				}
				break;
			}
			if (q == '"' && *r == '\\' && r[1]) {
				r++;
				*w++ = *r == 'n' ? '\n' : *r == 't' ? '\t' : *r;
				continue;
			}
			*w++ = *r;
		}
		char *after = trim(r + 1);
		if (*after && *after != '#')
			return NULL;
		*w = 0;
		*quoted = true;
		return s;
	}
	for (char *p = s; *p; p++)
		if (*p == '#' && (p == s || p[-1] == ' ' || p[-1] == '\t')) {
			*p = 0;
			break;
		}
	return trim(s);
}

static int file_fail(struct file_state *fs, int line, const char *what)
{
	snprintf(fs->err, fs->errlen, "%s: line %d: %s", fs->path, line, what);
	return -1;
}

/* Appends an item to the list being built; returns the list's start. */
static char *list_add(struct file_state *fs, char *start, const char *item)
{
	size_t l = strlen(item);
	if (fs->out_used + l + 2 > fs->out_cap)
		return NULL;
	if (start == NULL) {
		start = fs->out + fs->out_used;
		start[0] = 0;
	} else {
		fs->out[fs->out_used - 1] = ',';
	}
	memcpy(fs->out + fs->out_used, item, l + 1);
	fs->out_used += l + 1;
	return start; /* start .. out_used-1 is "a,b,...\0" */
}

static const char *tls_key_map(const char *parent, const char *key, char *tmp, size_t cap)
{
	bool peer = strcmp(parent, "peer-transport-security") == 0;
	if (strcmp(parent, "socket-options") == 0) {
		if (strcmp(key, "reuse-port") == 0)
			return "socket-reuse-port";
		if (strcmp(key, "reuse-address") == 0)
			return "socket-reuse-address";
		return NULL;
	}
	if (!peer && strcmp(parent, "client-transport-security") != 0)
		return NULL;
	if (strcmp(key, "allowed-cn") == 0)
		return peer ? "peer-cert-allowed-cn" : NULL;
	if (strcmp(key, "allowed-hostname") == 0)
		return peer ? "peer-cert-allowed-hostname" : "client-cert-allowed-hostname";
	if (strcmp(key, "skip-client-san-verification") == 0)
		return peer ? "peer-skip-client-san-verification" : NULL;
	static const char *const keys[] = { "cert-file", "key-file", "client-cert-file", "client-key-file",
					    "client-cert-auth", "trusted-ca-file", "auto-tls" };
	for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
		if (strcmp(key, keys[i]) == 0) {
			snprintf(tmp, cap, "%s%s", peer ? "peer-" : "", key);
			return tmp;
		}
	return NULL;
}

/* Keys etcd reads only under client-/peer-transport-security. */
static bool tls_only_nested(const char *key)
{
	static const char *const k[] = { "cert-file", "key-file", "client-cert-file", "client-key-file",
					 "client-cert-auth", "trusted-ca-file", "auto-tls",
					 "peer-cert-file", "peer-key-file", "peer-client-cert-file",
					 "peer-client-key-file", "peer-client-cert-auth",
					 "peer-trusted-ca-file", "peer-auto-tls", "client-crl-file",
					 "peer-crl-file", "socket-reuse-port", "socket-reuse-address" };
	for (size_t i = 0; i < sizeof k / sizeof k[0]; i++)
		if (strcmp(key, k[i]) == 0)
			return true;
	return false;
}

static int file_store(struct file_state *fs, int line, const char *key, const char *val)
{
	const struct flag_def *d = flag_find(key, strlen(key));
	if (d == NULL || d->use == FU_SPECIAL || d->type == FT_OBSOLETE) {
		log_warn("config file %s: line %d: unknown key \"%s\", ignored", fs->path, line, key);
		return 0;
	}
	char e[512];
	if (flag_set(NULL, fs->ps, d, val, SRC_FILE, e, sizeof e) != 0) {
		char m[700];
		snprintf(m, sizeof m, "invalid value \"%s\" for \"%s\": %s", val, key, e);
		return file_fail(fs, line, m);
	}
	fs->ps->val[d - flags] = val;
	fs->ps->src[d - flags] = SRC_FILE;
	return 0;
}

static int file_parse(struct file_state *fs)
{
	char *parent = NULL;     /* key whose block is open */
	int parent_line = 0;
	char *list = NULL;       /* list being built for parent */
	bool parent_map = false; /* parent's block holds `key: value` lines */
	int line = 0;
	char *next;

	for (char *s = fs->buf; s; s = next) {
		line++;
		next = strchr(s, '\n');
		if (next)
			*next++ = 0;
		char *t = trim(s);
		if (*t == 0 || *t == '#' || strcmp(t, "---") == 0)
			continue;
		bool indented = s[0] == ' ' || s[0] == '\t';
		if (indented) {
			if (parent == NULL)
				return file_fail(fs, line, "unexpected indentation");
			if (t[0] == '-' && (t[1] == ' ' || t[1] == 0)) {
				if (parent_map)
					return file_fail(fs, line, "list item inside a map");
				bool q;
				char *item = yaml_scalar(t + 1, &q);
				if (item == NULL)
					return file_fail(fs, line, "bad quoted string");
				list = list_add(fs, list, item);
				if (list == NULL)
					return file_fail(fs, line, "list too long");
				continue;
			}
			char *colon = strstr(t, ": ");
			if (colon == NULL && t[strlen(t) - 1] == ':')
				colon = t + strlen(t) - 1;
			if (colon == NULL || list)
				return file_fail(fs, line, "expected \"key: value\" (uetcd reads a YAML subset)");
			*colon = 0;
			parent_map = true;
			bool q;
			char *v = yaml_scalar(colon + 1, &q);
			if (v == NULL)
				return file_fail(fs, line, "bad quoted string");
			if (!q && (*v == 0 || !strcmp(v, "null") || !strcmp(v, "~")))
				continue;
			char tmp[128];
			const char *key = tls_key_map(parent, trim(t), tmp, sizeof tmp);
			if (key == NULL) {
				log_warn("config file %s: line %d: unknown key \"%s.%s\", ignored", fs->path, line, parent, trim(t));
				continue;
			}
			if (!q && *v == '[')
				return file_fail(fs, line, "lists are not supported here");
			if (file_store(fs, line, key, v) != 0)
				return -1;
			continue;
		}
		/* a top-level line closes the open block */
		if (parent && list && file_store(fs, parent_line, parent, list) != 0)
			return -1;
		parent = NULL, list = NULL, parent_map = false;

		if (strchr("&*!|>%@`{[", *t))
			return file_fail(fs, line, "unsupported YAML (uetcd reads `key: value` lines)");
		char *colon = strstr(t, ": ");
		if (colon == NULL && t[strlen(t) - 1] == ':')
			colon = t + strlen(t) - 1;
		if (colon == NULL)
			return file_fail(fs, line, "expected \"key: value\"");
		*colon = 0;
		char *key = trim(t);
		bool q;
		char *v = yaml_scalar(colon + 1, &q);
		if (v == NULL)
			return file_fail(fs, line, "bad quoted string");
		if (!q && *v == 0) {
			parent = key, parent_line = line;
			continue;
		}
		if (!q && (!strcmp(v, "null") || !strcmp(v, "~")))
			continue;
		if (!q && (*v == '|' || *v == '>' || *v == '&' || *v == '*' || *v == '!' || *v == '{'))
			return file_fail(fs, line, "unsupported YAML value (uetcd reads scalars and [lists])");
		if (!q && *v == '[') {
			char *end = strrchr(v, ']');
			if (end == NULL || *trim(end + 1))
				return file_fail(fs, line, "did not find expected ',' or ']'");
			*end = 0;
			char *items = NULL;
			for (char *p = v + 1; *trim(p);) {
				char *comma = strchr(p, ',');
				if (comma)
					*comma = 0;
				char *item = yaml_scalar(p, &q);
				if (item == NULL)
					return file_fail(fs, line, "bad quoted string");
				items = list_add(fs, items, item);
				if (items == NULL)
					return file_fail(fs, line, "list too long");
				if (comma == NULL)
					break;
				p = comma + 1;
			}
			v = items ? items : (char *)"";
		}
		if (tls_only_nested(key)) {
			log_warn("config file %s: line %d: key \"%s\" is not read at the top level (etcd takes TLS settings from client-transport-security and peer-transport-security), ignored",
				 fs->path, line, key);
			continue;
		}
		if (file_store(fs, line, key, v) != 0)
			return -1;
	}
	if (parent && list && file_store(fs, parent_line, parent, list) != 0)
		return -1;
	return 0;
}

static int file_load(const char *path, struct parse *ps, char **bufs, char *err, size_t errlen)
{
	FILE *f = fopen(path, "rb");
	if (f == NULL) {
		snprintf(err, errlen, "open %s: %s", path, strerror(errno));
		return -1;
	}
	char *buf = malloc(FILE_MAX + 1);
	size_t n = buf ? fread(buf, 1, FILE_MAX + 1, f) : 0;
	fclose(f);
	if (buf == NULL || n > FILE_MAX) {
		free(buf);
		snprintf(err, errlen, "%s: %s", path, buf ? "larger than 1 MiB" : "out of memory");
		return -1;
	}
	buf[n] = 0;
	struct file_state fs = { .buf = buf, .out = malloc(n + 2), .out_cap = n + 2, .ps = ps,
				 .path = path, .err = err, .errlen = errlen };
	bufs[0] = buf;
	bufs[1] = fs.out;
	if (fs.out == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	if (memchr(buf, 0, n)) {
		snprintf(err, errlen, "%s: not a text file", path);
		return -1;
	}
	return file_parse(&fs);
}

/* ---------------------------------------------------------------------------------------- */
/* config_parse                                                                             */

void config_defaults(struct config *c)
{
	struct config_url u;
	memset(c, 0, sizeof *c);
	strcpy(c->name, "default");
	strcpy(c->data_dir, "default.etcd");
	config_parse_url("http://localhost:2379", &u);
	c->listen_client[0] = u;
	c->n_listen_client = 1;
	strcpy(c->advertise_client_urls, "http://localhost:2379");
	strcpy(c->initial_advertise_peer_urls, "http://localhost:2380");
	strcpy(c->initial_cluster_token, "etcd-cluster");
	long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
	c->threads = ncpu < 1 ? 1 : ncpu > CONFIG_THREADS_MAX ? CONFIG_THREADS_MAX : (int)ncpu;
	c->max_request_bytes = 1572864;
	c->max_txn_ops = 128;
	c->max_concurrent_streams = UINT32_MAX;
	c->quota_backend_bytes = 0;
	c->snapshot_count = 100000;
	c->checkpoint_log_bytes = 256ull << 20; /* replaying that much takes under a second */
	c->watch_progress_notify_interval_ms = 10 * 60 * 1000;
	c->grpc_keepalive_min_time_ms = 5000;
	c->grpc_keepalive_interval_ms = 2 * 3600 * 1000;
	c->grpc_keepalive_timeout_ms = 20000;
	strcpy(c->auto_compaction_mode, "periodic");
	strcpy(c->auto_compaction_retention, "0");
	strcpy(c->tls_min_version, "TLS1.2");
	strcpy(c->auth_token, "simple");
	c->auth_token_ttl_s = 300;
	c->self_signed_cert_validity_years = 1;
	c->bcrypt_cost = 10;
	strcpy(c->log_level, "info");
	strcpy(c->log_outputs, "default");
	c->strict_reconfig_check = true;
	c->enable_grpc_gateway = true;
	c->feature_gates = CONFIG_GATE_TXN_MODE_WRITE_WITH_SHARED_BUFFER;
}

int config_log_level(const struct config *c)
{
	if (strcmp(c->log_level, "debug") == 0)
		return LOG_DEBUG;
	if (strcmp(c->log_level, "warn") == 0)
		return LOG_WARN;
	if (strcmp(c->log_level, "error") == 0)
		return LOG_ERROR;
	if (!strcmp(c->log_level, "dpanic") || !strcmp(c->log_level, "panic") || !strcmp(c->log_level, "fatal"))
		return LOG_FATAL;
	return LOG_INFO;
}

static int syntax_error(struct config *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int syntax_error(struct config *c, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	print_usage(stderr);
	c->exit_status = 2;
	return -1;
}

/* A bare number is a count of revisions, or of hours in periodic mode; otherwise periodic
 * mode takes a Go duration (to ms). 0 or -EINVAL. */
static int auto_compaction_retention(const struct config *c, int64_t *out)
{
	const char *r = c->auto_compaction_retention;
	bool periodic = strcmp(c->auto_compaction_mode, "periodic") == 0;
	int64_t n;

	if (*r && strspn(r, "0123456789") == strlen(r) && go_parse_int(r, &n) == 0) {
		*out = periodic ? (n > INT64_MAX / 3600000 ? INT64_MAX : n * 3600000) : n;
		return 0;
	}
	if (!periodic || config_parse_duration_ns(r, &n) != 0)
		return -EINVAL;
	*out = n / 1000000;
	return 0;
}

int64_t config_auto_compaction_retention(const struct config *c)
{
	int64_t n;

	return auto_compaction_retention(c, &n) == 0 && n > 0 ? n : 0;
}

uint64_t config_quota_bytes(const struct config *c)
{
	if (c->quota_backend_bytes < 0)
		return 0;
	return c->quota_backend_bytes ? (uint64_t)c->quota_backend_bytes : 2ull << 30;
}

static int verify_error(struct config *c, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int verify_error(struct config *c, const char *fmt, ...)
{
	char m[1200];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(m, sizeof m, fmt, ap);
	va_end(ap);
	log_warn("failed to verify flags: %s", m);
	c->exit_status = 1;
	return -1;
}

/* Go's flag.FlagSet.Parse over argv[1..]; fills ps->val for what argv sets. Returns 0,
 * -1 (error printed), or 1 for --help. *rest is the first argument left unparsed. */
static int argv_parse(struct config *c, struct config *scratch, struct parse *ps, int argc, char **argv, int *rest)
{
	int i = 1;
	while (i < argc) {
		const char *s = argv[i];
		if (strlen(s) < 2 || s[0] != '-')
			break;
		const char *name = s + 1;
		if (s[1] == '-') {
			if (s[2] == 0) {
				i++;
				break;
			}
			name = s + 2;
		}
		if (name[0] == 0 || name[0] == '-' || name[0] == '=')
			return syntax_error(c, "bad flag syntax: %s", s);
		i++;
		const char *eq = strchr(name, '=');
		size_t nl = eq ? (size_t)(eq - name) : strlen(name);
		const char *v = eq ? eq + 1 : NULL;
		const struct flag_def *d = flag_find(name, nl);
		if (d == NULL) {
			if ((nl == 4 && memcmp(name, "help", 4) == 0) || (nl == 1 && name[0] == 'h'))
				return 1;
			return syntax_error(c, "flag provided but not defined: -%.*s", (int)nl, name);
		}
		char err[600];
		if (d->type == FT_BOOL || d->type == FT_OBSOLETE) {
			if (v == NULL)
				v = "true";
			if (d->type == FT_BOOL && flag_set(scratch, ps, d, v, SRC_ARGV, err, sizeof err) != 0)
				return syntax_error(c, "invalid boolean value \"%s\" for -%s: %s", v, d->name, err);
		} else {
			if (v == NULL) {
				if (i >= argc)
					return syntax_error(c, "flag needs an argument: -%s", d->name);
				v = argv[i++];
			}
			if (flag_set(scratch, ps, d, v, SRC_ARGV, err, sizeof err) != 0)
				return syntax_error(c, "invalid value \"%s\" for flag -%s: %s", v, d->name, err);
		}
		ps->val[d - flags] = v;
		ps->src[d - flags] = SRC_ARGV;
	}
	*rest = i;
	return 0;
}

static void env_key(const char *name, char *out, size_t cap)
{
	size_t n = (size_t)snprintf(out, cap, "ETCD_");
	for (; *name && n + 1 < cap; name++)
		out[n++] = *name == '-' ? '_' : (char)toupper((unsigned char)*name);
	out[n] = 0;
}

/* etcd's flags.SetFlagsFromEnv: ETCD_<FLAG> for every flag not set on the command line; a
 * variable for a flag that is also on the command line is fatal; unknown ETCD_* warned. */
static int env_apply(struct config *c, struct config *scratch, struct parse *ps, char **envp)
{
	for (char **e = envp; *e; e++) {
		if (strncmp(*e, "ETCD_", 5) != 0)
			continue;
		const char *eq = strchr(*e, '=');
		if (eq == NULL)
			continue;
		size_t kl = (size_t)(eq - *e);
		if (kl == 12 && memcmp(*e, "ETCD_VERSION", 12) == 0) {
			if (eq[1])
				log_warn("cannot set special environment variable ETCD_VERSION=%s", eq + 1);
			continue;
		}
		const struct flag_def *d = NULL;
		for (size_t i = 0; i < FLAGS_N && d == NULL; i++) {
			char key[128];
			if (flags[i].type == FT_SECTION)
				continue;
			env_key(flags[i].name, key, sizeof key);
			if (strlen(key) == kl && memcmp(key, *e, kl) == 0)
				d = &flags[i];
		}
		if (d == NULL) {
			log_warn("unrecognized environment variable %s", *e);
			continue;
		}
		size_t idx = (size_t)(d - flags);
		if (ps->src[idx] == SRC_ARGV) {
			log_error("conflicting environment variable %.*s is shadowed by corresponding command-line flag (either unset environment variable or disable flag)",
				  (int)kl, *e);
			c->exit_status = 1;
			return -1;
		}
		const char *v = eq + 1;
		if (*v == 0 || d->id == FID_CONFIG_FILE)
			continue;
		char err[600];
		if (d->type != FT_OBSOLETE && flag_set(scratch, ps, d, v, SRC_ENV, err, sizeof err) != 0)
			return verify_error(c, "invalid value \"%s\" for %.*s: %s", v, (int)kl, *e, err);
		ps->val[idx] = v;
		ps->src[idx] = SRC_ENV;
		log_info("recognized and used environment variable %.*s=%s", (int)kl, *e, v);
	}
	return 0;
}

static const char *val_of(const struct parse *ps, const char *name)
{
	const struct flag_def *d = flag_find(name, strlen(name));
	return d ? ps->val[d - flags] : NULL;
}

static bool val_set(const struct parse *ps, const char *name)
{
	return val_of(ps, name) != NULL;
}

/* checkBindURLs: listeners must name an IP address or localhost. */
static int check_bind(struct config *c, const char *flag, const struct config_url *u, int n)
{
	for (int i = 0; i < n; i++) {
		if (!strcmp(u[i].scheme, "unix") || !strcmp(u[i].scheme, "unixs"))
			continue;
		if (strcmp(u[i].host, "localhost") != 0 && !is_ip_literal(u[i].host))
			return verify_error(c, "expected IP in URL for binding (%s)", u[i].text);
	}
	(void)flag;
	return 0;
}

/* checkHostURLs: advertised URLs must have a host. */
static int check_advertise(struct config *c, const char *flag, const char *list, const char *fmt)
{
	struct config_url u[CONFIG_URLS_MAX];
	int n;
	char err[512];
	if (url_list_parse(list, u, CONFIG_URLS_MAX, &n, err, sizeof err) != 0)
		return verify_error(c, "%s: %s", flag, err);
	for (int i = 0; i < n; i++)
		if (u[i].host[0] == 0) {
			char m[700];
			snprintf(m, sizeof m, "unexpected empty host (%s)", u[i].text);
			return verify_error(c, fmt, list, m);
		}
	return 0;
}

static int check_tls_version(struct config *c, const char *v)
{
	if (*v && strcmp(v, "TLS1.2") != 0 && strcmp(v, "TLS1.3") != 0)
		return verify_error(c, "unexpected TLS version \"%s\" (must be one of: TLS1.2, TLS1.3)", v);
	return 0;
}

/* The cross-flag checks etcd makes in Config.Validate and etcdmain. */
static int validate(struct config *c, struct parse *ps, bool from_file)
{
	if (!from_file && val_set(ps, "listen-client-urls") && !val_set(ps, "advertise-client-urls"))
		return verify_error(c, "--advertise-client-urls is required when --listen-client-urls is set explicitly");
	if (check_bind(c, "listen-client-urls", c->listen_client, c->n_listen_client) ||
	    check_bind(c, "listen-metrics-urls", c->listen_metrics, c->n_listen_metrics))
		return -1;
	const char *lp = val_of(ps, "listen-peer-urls");
	if (lp) {
		struct config_url u[CONFIG_URLS_MAX];
		int n;
		char err[512];
		if (url_list_parse(lp, u, CONFIG_URLS_MAX, &n, err, sizeof err) != 0)
			return verify_error(c, "--listen-peer-urls: %s", err);
		if (check_bind(c, "listen-peer-urls", u, n))
			return -1;
	}
	if (check_advertise(c, "--initial-advertise-peer-urls", c->initial_advertise_peer_urls,
			    "--initial-advertise-peer-urls \"%s\" must be \"host:port\" (%s)") ||
	    check_advertise(c, "--advertise-client-urls", c->advertise_client_urls,
			    "--advertise-client-urls \"%s\" must be \"host:port\" (%s)"))
		return -1;

	uint64_t tick = 100, election = 1000;
	if (val_of(ps, "heartbeat-interval"))
		go_parse_uint(val_of(ps, "heartbeat-interval"), 0, 64, &tick);
	if (val_of(ps, "election-timeout"))
		go_parse_uint(val_of(ps, "election-timeout"), 0, 64, &election);
	if (tick == 0)
		return verify_error(c, "--heartbeat-interval must be >0 (set to %" PRIu64 "ms)", tick);
	if (election == 0)
		return verify_error(c, "--election-timeout must be >0 (set to %" PRIu64 "ms)", election);
	if (tick > UINT64_MAX / 5 || 5 * tick > election)
		return verify_error(c, "--election-timeout[%" PRIu64 "ms] should be at least as 5 times as --heartbeat-interval[%" PRIu64 "ms]",
				    election, tick);
	if (election > 50000)
		return verify_error(c, "--election-timeout[%" PRIu64 "ms] is too long, and should be set less than 50000ms", election);

	if (strcmp(c->auto_compaction_mode, "periodic") != 0 && strcmp(c->auto_compaction_mode, "revision") != 0)
		return verify_error(c, c->auto_compaction_mode[0] ? "unknown auto-compaction-mode \"%s\"" : "undefined auto-compaction-mode%s",
				    c->auto_compaction_mode);
	int64_t n;
	if (auto_compaction_retention(c, &n) != 0)
		return verify_error(c, "invalid auto-compaction-retention \"%s\"", c->auto_compaction_retention);

	const char *logger = val_of(ps, "logger");
	if (logger && strcmp(logger, "capnslog") == 0)
		return verify_error(c, "--logger=capnslog is removed in v3.5");
	if (logger && strcmp(logger, "zap") != 0)
		return verify_error(c, "unknown logger option \"%s\"", logger);
	static const char *const levels[] = { "debug", "info", "warn", "error", "dpanic", "panic", "fatal" };
	bool ok = false;
	for (size_t i = 0; i < sizeof levels / sizeof levels[0]; i++)
		ok |= strcmp(c->log_level, levels[i]) == 0;
	if (!ok) {
		/* etcd panics here, which exits with status 2 */
		verify_error(c, "unrecognized level: \"%s\"", c->log_level);
		c->exit_status = 2;
		return -1;
	}
	bool to_stdout = false, to_stderr = false;
	for (const char *p = c->log_outputs; *p;) {
		size_t l = strcspn(p, ",");
		if ((l == 7 && !memcmp(p, "default", 7)) || (l == 6 && !memcmp(p, "stderr", 6)))
			to_stderr = true;
		else if (l == 6 && !memcmp(p, "stdout", 6))
			to_stdout = true;
		else /* a file path: etcd opens it; uetcd does not */
			log_warn("--log-outputs target \"%.*s\" is not supported by uetcd (only stderr, stdout), ignored",
				 (int)l, p);
		p += l + (p[l] == ',');
	}
	log_set_outputs(to_stdout, to_stderr || !to_stdout);

	if (check_tls_version(c, c->tls_min_version) || check_tls_version(c, c->tls_max_version))
		return -1;
	if (c->tls_max_version[0] && strcmp(c->tls_min_version, c->tls_max_version) > 0)
		return verify_error(c, "min version (%s) is greater than max version (%s)", c->tls_min_version, c->tls_max_version);
	if (strcmp(c->tls_min_version, "TLS1.3") == 0 && c->cipher_suites[0])
		return verify_error(c, "cipher suites cannot be configured when only TLS1.3 is enabled");
	if (c->bcrypt_cost < 4 || c->bcrypt_cost > 31) {
		/* etcd's auth store does the same */
		log_warn("use default bcrypt cost 10 instead of the invalid given cost %d (min 4, max 31)", c->bcrypt_cost);
		c->bcrypt_cost = 10;
	}
	if (val_set(ps, "warning-unary-request-duration") && val_set(ps, "experimental-warning-unary-request-duration"))
		return verify_error(c, "both --experimental-warning-unary-request-duration and --warning-unary-request-duration flags are set. Use only --warning-unary-request-duration");
	return 0;
}

/* Feature gates as etcd 3.6 computes them: defaults, AllAlpha/AllBeta for the gates not
 * named, the named gates, then each --experimental-* bool that a gate replaced (an error
 * when the same gate is also named in --feature-gates). */
static int gates_resolve(struct config *c, struct parse *ps)
{
	uint32_t g = 0;
	for (size_t i = 0; i < GATES_N; i++) {
		uint32_t bit = gates[i].bit;
		bool v = gates[i].deflt;
		if (ps->gates_set & bit)
			v = ps->gates_val & bit;
		else if (gates[i].beta ? ps->all_beta_set : ps->all_alpha_set)
			v = gates[i].beta ? ps->all_beta : ps->all_alpha;
		if (v)
			g |= bit;
	}
	for (size_t i = 0; i < FLAGS_N; i++) {
		const struct flag_def *d = &flags[i];
		bool v;
		if (!d->gate || ps->val[i] == NULL || config_parse_bool(ps->val[i], &v) != 0)
			continue;
		uint32_t bit = 1u << (d->gate - 1);
		size_t gi = 0;
		while (gi < GATES_N - 1 && gates[gi].bit != bit)
			gi++;
		if (ps->gates_set & bit) {
			const char *fv = (g & bit) ? "true" : "false";
			return verify_error(c, "cannot specify both flags: --%s=%s and --feature-gates=%s=%s at the same time, please just use --feature-gates=%s=%s",
					    d->name, v ? "true" : "false", gates[gi].name, fv, gates[gi].name, fv);
		}
		g = v ? g | bit : g & ~bit;
	}
	c->feature_gates = g;
	c->initial_corrupt_check = g & CONFIG_GATE_INITIAL_CORRUPT_CHECK;
	return 0;
}

/* One line per kind for the flags given that uetcd does not act on. */
static void log_unused(const struct parse *ps)
{
	char peer[2048] = "", ign[2048] = "";
	size_t np = 0, ni = 0;
	for (size_t i = 0; i < FLAGS_N; i++) {
		const struct flag_def *d = &flags[i];
		if (ps->val[i] == NULL)
			continue;
		/* etcd 3.5, which kubeadm up to 1.33 writes these names for, takes them silently:
		 * a note, not a warning, so kubeadm's own manifests start clean. */
		if (d->alias)
			log_info("--%s: etcd 3.6 names it --%s (the old name goes in etcd 3.7)", d->name, d->alias);
		char *b = d->use == FU_PEER ? peer : d->use == FU_IGNORED ? ign : NULL;
		size_t *n = d->use == FU_PEER ? &np : &ni;
		if (b == NULL)
			continue;
		int w = snprintf(b + *n, sizeof peer - *n, "%s--%s", *n ? ", " : "", d->name);
		if (w > 0 && *n + (size_t)w < sizeof peer)
			*n += (size_t)w;
	}
	if (np)
		log_info("peer and cluster flags are not applicable to a single-node uetcd, accepted and ignored: %s", peer);
	if (ni)
		log_warn("flags not supported by uetcd, ignored: %s", ign);
}

int config_parse(struct config *c, int argc, char **argv, char **envp)
{
	struct parse *ps = calloc(1, sizeof *ps);
	struct config *scratch = malloc(sizeof *scratch);
	char *bufs[2] = { NULL, NULL };
	int rc = -1, rest = argc;

	config_defaults(c);
	if (envp == NULL)
		envp = environ;
	if (ps == NULL || scratch == NULL) {
		c->exit_status = 1;
		log_error("config: out of memory");
		goto out;
	}
	config_defaults(scratch);

	rc = argv_parse(c, scratch, ps, argc, argv, &rest);
	if (rc == 1) {
		print_usage(stderr);
		print_help(stdout);
		goto out;
	}
	if (rc != 0)
		goto out;
	rc = -1;
	if (rest < argc) {
		verify_error(c, "'%s' is not a valid flag", argv[rest]);
		goto out;
	}
	const char *ver = val_of(ps, "version");
	bool bv;
	if (ver && config_parse_bool(ver, &bv) == 0 && bv) {
		print_version(stdout);
		rc = 1;
		goto out;
	}

	const char *file = val_of(ps, "config-file");
	if (file == NULL || *file == 0) {
		file = NULL;
		for (char **e = envp; *e; e++)
			if (strncmp(*e, "ETCD_CONFIG_FILE=", 17) == 0 && (*e)[17])
				file = *e + 17;
	}
	bool from_file = file != NULL;
	if (from_file) {
		char err[1200];
		memset(ps, 0, sizeof *ps);
		if (file_load(file, ps, bufs, err, sizeof err) != 0) {
			verify_error(c, "%s", err);
			goto out;
		}
		log_info("loaded server configuration %s, other configuration command line flags and environment variables will be ignored if provided",
			 file);
	} else if (env_apply(c, scratch, ps, envp) != 0) {
		goto out;
	}

	/* Apply: the etcd 3.6 names first, then the deprecated experimental names, which win
	 * when both are given (etcd 3.6 does the same). */
	for (int pass = 0; pass < 2; pass++)
		for (size_t i = 0; i < FLAGS_N; i++) {
			char err[600];
			if (ps->val[i] == NULL || (flags[i].alias != NULL) != (pass == 1))
				continue;
			if (flags[i].type == FT_GATES || flags[i].type == FT_OBSOLETE)
				continue; /* gates were collected while checking */
			if (flag_set(c, ps, &flags[i], ps->val[i], ps->src[i], err, sizeof err) != 0) {
				verify_error(c, "invalid value \"%s\" for %s: %s", ps->val[i], flags[i].name, err);
				goto out;
			}
		}
	if (from_file)
		snprintf(c->config_file, sizeof c->config_file, "%s", file);
	if (!val_set(ps, "data-dir") || c->data_dir[0] == 0)
		snprintf(c->data_dir, sizeof c->data_dir, "%.250s.etcd", c->name);
	if (gates_resolve(c, ps) != 0 || validate(c, ps, from_file) != 0)
		goto out;
	log_unused(ps);
	rc = 0;
out:
	free(bufs[0]);
	free(bufs[1]);
	free(scratch);
	free(ps);
	return rc;
}
