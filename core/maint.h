/* Maintenance and Cluster answers that a single node gives from what it knows locally:
 * Status and MemberList. Both are reads, answered on the reactor. */
#ifndef UETCD_CORE_MAINT_H
#define UETCD_CORE_MAINT_H

struct server;
struct arena;
struct mvcc_view;
struct ProtobufCMessage;

struct ProtobufCMessage *maint_status(const struct server *srv, const struct mvcc_view *v, struct arena *a);
struct ProtobufCMessage *cluster_member_list(const struct server *srv, const struct mvcc_view *v, struct arena *a);

#endif
