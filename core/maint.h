/* Maintenance and Cluster answers that a single node gives from what it knows locally:
 * Status and MemberList. Both are reads, answered on the reactor. */
#ifndef UETCD_CORE_MAINT_H
#define UETCD_CORE_MAINT_H

#include <stdatomic.h>
#include <stddef.h>
#include <stdint.h>

struct server;
struct arena;
struct mvcc_view;
struct ProtobufCMessage;

struct ProtobufCMessage *maint_status(const struct server *srv, const struct mvcc_view *v, struct arena *a);
struct ProtobufCMessage *cluster_member_list(const struct server *srv, const struct mvcc_view *v, struct arena *a);

struct kv_result;
/* The other Maintenance and Cluster methods (enum svc_method) answered on a reactor: Hash,
 * HashKV, MoveLeader, Downgrade, and the member changes a single node answers with etcd's
 * errors. */
void maint_handle(struct server *srv, int method, const uint8_t *msg, size_t len, const struct mvcc_view *v,
		  struct arena *a, struct kv_result *res);
/* Alarm (get, activate, deactivate) on `alarms` (1 << AlarmType): the sequencer's, which
 * logs what changed. The response, or NULL with the error in res. */
struct kv_header_ids;
struct ProtobufCMessage *maint_alarm(const struct kv_header_ids *ids, int64_t rev, _Atomic unsigned *alarms,
				     const struct ProtobufCMessage *msg, struct arena *a, struct kv_result *res);
/* "memberID:<id> alarm:<NAME> " strings for Status.errors, as etcd formats them. */
size_t maint_alarm_strings(const struct server *srv, struct arena *a, char ***out);
/* Status.db_size and db_size_in_use (and their /metrics series), as uetcd defines them:
 * size: the bytes the data occupies on disk (log records written, not the segments'
 * preallocated tails, plus the checkpoint); in_use: the bytes every retained version holds
 * in memory (what the quota counts and compaction gives back). Unlike etcd's, in_use may
 * pass size by a few tens of bytes per version (in-memory bookkeeping that the log's
 * encoding does not need) until writes or history make the log the larger. Any thread. */
void maint_db_sizes(const struct server *srv, uint64_t *size, uint64_t *in_use);

#endif
