/* The Lease service as the sequencer runs it: Grant, Revoke, KeepAlive, TimeToLive and
 * Leases against the lease table, with etcd's errors; revocation (asked for, or on expiry)
 * deletes the lease's keys in one revision through the kv layer, so the log and watchers
 * see it like any delete. */
#ifndef UETCD_CORE_LEASE_SVC_H
#define UETCD_CORE_LEASE_SVC_H

#include <stddef.h>
#include <stdint.h>

#include "core/kv.h"

struct lease_table;

/* The request message of a Lease method (enum svc_method); NULL for another method. */
struct ProtobufCMessageDescriptor;
const struct ProtobufCMessageDescriptor *lease_svc_desc(int method);
void lease_svc_apply(struct lease_table *t, struct mvcc_store *s, int method, const struct ProtobufCMessage *req,
		     struct arena *a, const struct kv_sink *sink, const struct kv_header_ids *ids, uint64_t now_ms,
		     struct kv_result *res);
/* Revokes a lease whose TTL ran out. */
void lease_svc_expire(struct lease_table *t, struct mvcc_store *s, int64_t id, struct arena *a,
		      const struct kv_sink *sink);

#endif
