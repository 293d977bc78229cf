/* Maintenance and Cluster answers that a single node gives from what it knows locally:
 * Status and MemberList. Both are reads, answered on the reactor. */
#ifndef UETCD_CORE_MAINT_H
#define UETCD_CORE_MAINT_H

#include <stddef.h>
#include <stdint.h>

struct server;
struct arena;
struct mvcc_view;
struct ProtobufCMessage;

struct ProtobufCMessage *maint_status(const struct server *srv, const struct mvcc_view *v, struct arena *a);
struct ProtobufCMessage *cluster_member_list(const struct server *srv, const struct mvcc_view *v, struct arena *a);

struct kv_result;
/* The other Maintenance and Cluster methods (enum svc_method): Alarm, Hash, HashKV,
 * Defragment, MoveLeader, and the member changes a single node answers with etcd's
 * errors. Runs on a reactor; alarms are atomic flags in the server. */
void maint_handle(struct server *srv, int method, const uint8_t *msg, size_t len, const struct mvcc_view *v,
		  struct arena *a, struct kv_result *res);
/* "memberID:<id> alarm:<NAME> " strings for Status.errors, as etcd formats them. */
size_t maint_alarm_strings(const struct server *srv, struct arena *a, char ***out);

#endif
