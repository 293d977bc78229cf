/* The process: configuration, the store, the sequencer and the reactors, created by main()
 * and shared read-only by every thread after start-up. */
#ifndef UETCD_CORE_SERVER_H
#define UETCD_CORE_SERVER_H

#include <stdatomic.h>
#include <stdbool.h>

#include "core/config.h"
#include "core/kv.h"
#include "net/grpc.h"

struct qsbr;
struct mvcc_store;
struct seq;
struct reactor;
struct tls_ctx;
struct wal;

struct server {
	const struct config *cfg;
	struct qsbr *qsbr;
	struct mvcc_store *store;
	struct seq *seq;
	struct wal *wal;
	struct kv_header_ids ids;
	struct kv_limits limits;
	struct grpc_conn_config grpc;
	int nreactors;
	struct reactor **reactors;
	struct tls_ctx *tls_ctx;            /* for https listeners; each reactor holds its own ref */
	struct authsvc *auth;               /* users, roles, tokens (core/authsvc.h) */
	_Atomic unsigned tls_reload_gen;    /* bumping it makes reactors reload certificates */
	_Atomic unsigned alarms;            /* this member's active alarms: 1 << AlarmType */
	_Atomic bool stopping;
};

#endif
