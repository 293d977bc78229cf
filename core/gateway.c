/* The JSON gateway under /v3/, as etcd's grpc-gateway serves it: POST a request message as
 * JSON (proto or camelCase field names, base64 bytes, 64-bit integers as strings), get the
 * response message as JSON. The request takes the same path as over gRPC: reads are
 * answered from the published snapshot on this reactor, writes and lease calls go through
 * the sequencer and come back as packed protobuf, re-encoded here. Streaming methods
 * (lease keep-alive) answer one {"result":...} line per request object. Errors are
 * {"code":N,"message":"..."} with grpc-gateway's HTTP status for the code.
 *
 * /v3/watch answers a create request with a chunked stream of {"result":...} lines (the
 * watch hub writes them) until the client closes the connection.
 * /v3/auth/... are the Auth service's methods; with auth on, every request's token comes in
 * the Authorization header, as etcd's gateway forwards it. /v3/lock/... and /v3/election/...
 * go through the sequencer like their gRPC calls. Not served yet: /v3/maintenance/snapshot,
 * /v3/election/observe. */
#include "core/gateway.h"

#include <errno.h>
#include <protobuf-c/protobuf-c.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "core/arena.h"
#include "core/authsvc.h"
#include "core/kv.h"
#include "core/lease_svc.h"
#include "core/maint.h"
#include "core/pbguard.h"
#include "core/pbjson.h"
#include "core/seq.h"
#include "core/server.h"
#include "core/svc.h"
#include "net/http1.h"
#include "election.pb-c.h"
#include "lock.pb-c.h"
#include "rpc.pb-c.h"
#include "storage/mvcc.h"

#define GW_JSON_MAX (64u << 20)
#define GW_HEADERS "Grpc-Metadata-Content-Type: application/grpc\r\n"

struct gw_route {
	const char *path;
	int method;
	const ProtobufCMessageDescriptor *req, *resp;
	bool stream; /* answers are {"result":...} lines */
};

static const struct gw_route gw_routes[] = {
	{"/v3/kv/range", KV_RANGE, &etcdserverpb__range_request__descriptor, &etcdserverpb__range_response__descriptor, false},
	{"/v3/kv/put", KV_PUT, &etcdserverpb__put_request__descriptor, &etcdserverpb__put_response__descriptor, false},
	{"/v3/kv/deleterange", KV_DELETE_RANGE, &etcdserverpb__delete_range_request__descriptor,
	 &etcdserverpb__delete_range_response__descriptor, false},
	{"/v3/kv/txn", KV_TXN, &etcdserverpb__txn_request__descriptor, &etcdserverpb__txn_response__descriptor, false},
	{"/v3/kv/compaction", KV_COMPACT, &etcdserverpb__compaction_request__descriptor,
	 &etcdserverpb__compaction_response__descriptor, false},
	{"/v3/lease/grant", SVC_LEASE_GRANT, &etcdserverpb__lease_grant_request__descriptor,
	 &etcdserverpb__lease_grant_response__descriptor, false},
	{"/v3/lease/revoke", SVC_LEASE_REVOKE, &etcdserverpb__lease_revoke_request__descriptor,
	 &etcdserverpb__lease_revoke_response__descriptor, false},
	{"/v3/kv/lease/revoke", SVC_LEASE_REVOKE, &etcdserverpb__lease_revoke_request__descriptor,
	 &etcdserverpb__lease_revoke_response__descriptor, false},
	{"/v3/lease/keepalive", SVC_LEASE_KEEPALIVE, &etcdserverpb__lease_keep_alive_request__descriptor,
	 &etcdserverpb__lease_keep_alive_response__descriptor, true},
	{"/v3/lease/timetolive", SVC_LEASE_TTL, &etcdserverpb__lease_time_to_live_request__descriptor,
	 &etcdserverpb__lease_time_to_live_response__descriptor, false},
	{"/v3/kv/lease/timetolive", SVC_LEASE_TTL, &etcdserverpb__lease_time_to_live_request__descriptor,
	 &etcdserverpb__lease_time_to_live_response__descriptor, false},
	{"/v3/lease/leases", SVC_LEASE_LEASES, &etcdserverpb__lease_leases_request__descriptor,
	 &etcdserverpb__lease_leases_response__descriptor, false},
	{"/v3/kv/lease/leases", SVC_LEASE_LEASES, &etcdserverpb__lease_leases_request__descriptor,
	 &etcdserverpb__lease_leases_response__descriptor, false},
	{"/v3/maintenance/status", SVC_MAINT_STATUS, &etcdserverpb__status_request__descriptor,
	 &etcdserverpb__status_response__descriptor, false},
	{"/v3/maintenance/alarm", SVC_MAINT_ALARM, &etcdserverpb__alarm_request__descriptor,
	 &etcdserverpb__alarm_response__descriptor, false},
	{"/v3/maintenance/hash", SVC_MAINT_HASH, &etcdserverpb__hash_request__descriptor,
	 &etcdserverpb__hash_response__descriptor, false},
	{"/v3/maintenance/defragment", SVC_MAINT_DEFRAGMENT, &etcdserverpb__defragment_request__descriptor,
	 &etcdserverpb__defragment_response__descriptor, false},
	{"/v3/maintenance/transfer-leadership", SVC_MAINT_MOVE_LEADER, &etcdserverpb__move_leader_request__descriptor,
	 &etcdserverpb__move_leader_response__descriptor, false},
	{"/v3/cluster/member/list", SVC_CLUSTER_MEMBER_LIST, &etcdserverpb__member_list_request__descriptor,
	 &etcdserverpb__member_list_response__descriptor, false},
	{"/v3/cluster/member/add", SVC_CLUSTER_MEMBER_ADD, &etcdserverpb__member_add_request__descriptor,
	 &etcdserverpb__member_add_response__descriptor, false},
	{"/v3/cluster/member/remove", SVC_CLUSTER_MEMBER_REMOVE, &etcdserverpb__member_remove_request__descriptor,
	 &etcdserverpb__member_remove_response__descriptor, false},
	{"/v3/cluster/member/update", SVC_CLUSTER_MEMBER_UPDATE, &etcdserverpb__member_update_request__descriptor,
	 &etcdserverpb__member_update_response__descriptor, false},
	{"/v3/cluster/member/promote", SVC_CLUSTER_MEMBER_PROMOTE, &etcdserverpb__member_promote_request__descriptor,
	 &etcdserverpb__member_promote_response__descriptor, false},
	/* Lock and Election (not Observe yet): through the sequencer, a waiting Lock or Campaign
	 * answered when granted */
	{"/v3/lock/lock", SVC_LOCK_LOCK, &v3lockpb__lock_request__descriptor, &v3lockpb__lock_response__descriptor, false},
	{"/v3/lock/unlock", SVC_LOCK_UNLOCK, &v3lockpb__unlock_request__descriptor, &v3lockpb__unlock_response__descriptor,
	 false},
	{"/v3/election/campaign", SVC_ELECTION_CAMPAIGN, &v3electionpb__campaign_request__descriptor,
	 &v3electionpb__campaign_response__descriptor, false},
	{"/v3/election/proclaim", SVC_ELECTION_PROCLAIM, &v3electionpb__proclaim_request__descriptor,
	 &v3electionpb__proclaim_response__descriptor, false},
	{"/v3/election/leader", SVC_ELECTION_LEADER, &v3electionpb__leader_request__descriptor,
	 &v3electionpb__leader_response__descriptor, false},
	{"/v3/election/resign", SVC_ELECTION_RESIGN, &v3electionpb__resign_request__descriptor,
	 &v3electionpb__resign_response__descriptor, false},
	{"/v3/auth/authenticate", SVC_AUTH_AUTHENTICATE, &etcdserverpb__authenticate_request__descriptor,
	 &etcdserverpb__authenticate_response__descriptor, false},
	{"/v3/auth/enable", SVC_AUTH_ENABLE, &etcdserverpb__auth_enable_request__descriptor,
	 &etcdserverpb__auth_enable_response__descriptor, false},
	{"/v3/auth/disable", SVC_AUTH_DISABLE, &etcdserverpb__auth_disable_request__descriptor,
	 &etcdserverpb__auth_disable_response__descriptor, false},
	{"/v3/auth/status", SVC_AUTH_STATUS, &etcdserverpb__auth_status_request__descriptor,
	 &etcdserverpb__auth_status_response__descriptor, false},
	{"/v3/auth/user/add", SVC_AUTH_USER_ADD, &etcdserverpb__auth_user_add_request__descriptor,
	 &etcdserverpb__auth_user_add_response__descriptor, false},
	{"/v3/auth/user/get", SVC_AUTH_USER_GET, &etcdserverpb__auth_user_get_request__descriptor,
	 &etcdserverpb__auth_user_get_response__descriptor, false},
	{"/v3/auth/user/list", SVC_AUTH_USER_LIST, &etcdserverpb__auth_user_list_request__descriptor,
	 &etcdserverpb__auth_user_list_response__descriptor, false},
	{"/v3/auth/user/delete", SVC_AUTH_USER_DELETE, &etcdserverpb__auth_user_delete_request__descriptor,
	 &etcdserverpb__auth_user_delete_response__descriptor, false},
	{"/v3/auth/user/changepw", SVC_AUTH_USER_CHANGE_PASSWORD, &etcdserverpb__auth_user_change_password_request__descriptor,
	 &etcdserverpb__auth_user_change_password_response__descriptor, false},
	{"/v3/auth/user/grant", SVC_AUTH_USER_GRANT_ROLE, &etcdserverpb__auth_user_grant_role_request__descriptor,
	 &etcdserverpb__auth_user_grant_role_response__descriptor, false},
	{"/v3/auth/user/revoke", SVC_AUTH_USER_REVOKE_ROLE, &etcdserverpb__auth_user_revoke_role_request__descriptor,
	 &etcdserverpb__auth_user_revoke_role_response__descriptor, false},
	{"/v3/auth/role/add", SVC_AUTH_ROLE_ADD, &etcdserverpb__auth_role_add_request__descriptor,
	 &etcdserverpb__auth_role_add_response__descriptor, false},
	{"/v3/auth/role/get", SVC_AUTH_ROLE_GET, &etcdserverpb__auth_role_get_request__descriptor,
	 &etcdserverpb__auth_role_get_response__descriptor, false},
	{"/v3/auth/role/list", SVC_AUTH_ROLE_LIST, &etcdserverpb__auth_role_list_request__descriptor,
	 &etcdserverpb__auth_role_list_response__descriptor, false},
	{"/v3/auth/role/delete", SVC_AUTH_ROLE_DELETE, &etcdserverpb__auth_role_delete_request__descriptor,
	 &etcdserverpb__auth_role_delete_response__descriptor, false},
	{"/v3/auth/role/grant", SVC_AUTH_ROLE_GRANT_PERMISSION, &etcdserverpb__auth_role_grant_permission_request__descriptor,
	 &etcdserverpb__auth_role_grant_permission_response__descriptor, false},
	{"/v3/auth/role/revoke", SVC_AUTH_ROLE_REVOKE_PERMISSION, &etcdserverpb__auth_role_revoke_permission_request__descriptor,
	 &etcdserverpb__auth_role_revoke_permission_response__descriptor, false},
};

static const struct gw_route *gw_find(const char *path, size_t len)
{
	for (size_t i = 0; i < sizeof gw_routes / sizeof gw_routes[0]; i++)
		if (strlen(gw_routes[i].path) == len && memcmp(gw_routes[i].path, path, len) == 0)
			return &gw_routes[i];
	return NULL;
}

/* The caller of a gateway request, from its Authorization header (NULL without one). */
static struct authsvc_ident *gw_identify(struct server *srv, const struct http1_request *r)
{
	for (size_t i = 0; i < r->n_headers; i++)
		if (r->headers[i].name_len == 13 && !strncasecmp(r->headers[i].name, "authorization", 13))
			return authsvc_identify(srv->auth, r->headers[i].value, r->headers[i].value_len, NULL);
	return NULL;
}

static const struct gw_route *gw_by_method(int method)
{
	for (size_t i = 0; i < sizeof gw_routes / sizeof gw_routes[0]; i++)
		if (gw_routes[i].method == method)
			return &gw_routes[i];
	return NULL;
}

/* grpc-gateway's runtime.HTTPStatusFromCode */
static int gw_http_status(enum grpc_code code)
{
	static const int map[] = {200, 408, 500, 400, 504, 404, 409, 403, 429, 412, 409, 400, 501, 500, 503, 500, 401};

	return (unsigned)code < sizeof map / sizeof map[0] ? map[code] : 500;
}

static void gw_error(struct http1_conn *h, enum grpc_code code, const char *message)
{
	struct pbjson_buf b = {.max = 4096};
	char head[48];
	int n = snprintf(head, sizeof head, "{\"code\":%d, \"message\":", (int)code); /* etcd's spacing */

	pbjson_put_raw(&b, head, (size_t)n);
	pbjson_put_string(&b, message ? message : "", message ? strlen(message) : 0, 0);
	pbjson_put_raw(&b, "}", 1);
	http1_respond_ex(h, gw_http_status(code), "application/json", GW_HEADERS, b.p, b.len);
	free(b.p);
}

/* A body that is not the request message. Go's JSON decoder reads it before protojson
 * does, so a truncated body is its bare "unexpected EOF"; the rest are protojson's. */
static void gw_json_error(struct http1_conn *h, const struct pbjson_error *jerr)
{
	char msg[200];

	size_t n = strlen(jerr->msg), eof = sizeof "unexpected EOF" - 1;

	if (n >= eof && strcmp(jerr->msg + n - eof, "unexpected EOF") == 0) /* after "(line l:c): " */
		snprintf(msg, sizeof msg, "unexpected EOF");
	else
		snprintf(msg, sizeof msg, "%s%s", jerr->json ? "" : "proto: ", jerr->msg);
	gw_error(h, GRPC_INVALID_ARGUMENT, msg);
}

/* This reactor's counters: etcd's gateway calls its own gRPC server, so its requests count
 * in grpc_server_* and etcd_mvcc_* like gRPC calls. The gateway runs on the reactor's
 * thread, the counters' one writer. */
static struct svc_metrics *gw_metrics(struct svc_thread *t) { return (struct svc_metrics *)svc_thread_metrics(t); }

static void gw_count(struct svc_thread *t, int method, enum grpc_code code)
{
	if (method >= 0 && method < SVC_METHODS && (unsigned)code <= GRPC_UNAUTHENTICATED)
		atomic_fetch_add_explicit(&gw_metrics(t)->handled[method][code], 1, memory_order_relaxed);
}

/* An error answer to a call that reached the service (counted as handled). */
static void gw_fail(struct svc_thread *t, struct http1_conn *h, int method, enum grpc_code code, const char *message)
{
	gw_count(t, method, code);
	gw_error(h, code, message);
}

static void gw_respond(struct svc_thread *t, struct http1_conn *h, const struct gw_route *rt, const ProtobufCMessage *m)
{
	struct pbjson_buf b = {.max = GW_JSON_MAX};

	if (rt->stream)
		pbjson_put_raw(&b, "{\"result\":", 10);
	if (pbjson_marshal(m, rt->stream ? PBJSON_STREAM : PBJSON_COMMA_SPACE, &b) < 0) {
		free(b.p);
		gw_fail(t, h, rt->method, GRPC_INTERNAL, "grpc-gateway: failed to marshal the response");
		return;
	}
	gw_count(t, rt->method, GRPC_OK);
	if (rt->stream) {
		pbjson_put_raw(&b, "}\n", 2);
		http1_stream_begin_ex(h, 200, "application/json", GW_HEADERS);
		http1_stream_write(h, b.p, b.len);
		http1_stream_end(h);
	} else {
		http1_respond_ex(h, 200, "application/json", GW_HEADERS, b.p, b.len);
	}
	free(b.p);
}

bool gateway_handle(struct svc_thread *t, struct http1_conn *h, void *conn_user, uint64_t conn_id,
		    const struct http1_request *r)
{
	struct server *srv = svc_server(t);
	struct arena *a;
	const struct gw_route *rt;
	struct pbjson_error jerr;
	ProtobufCAllocator al;
	ProtobufCMessage *req;
	struct kv_result res;

	if (r->path_len < 4 || memcmp(r->path, "/v3/", 4) != 0)
		return false;
	if (r->path_len == 9 && memcmp(r->path, "/v3/watch", 9) == 0) {
		/* a chunked stream of {"result":...} lines for as long as the connection lives */
		a = svc_scratch(t);
		arena_reset(a);
		arena_pb_allocator(a, &al);
		if (pbjson_unmarshal(&etcdserverpb__watch_request__descriptor, r->body, r->body_len, &al, &req, &jerr) < 0) {
			gw_json_error(h, &jerr);
		} else if (!svc_http_watch(t, h, conn_user, (const Etcdserverpb__WatchRequest *)req,
					   srv->auth && authsvc_enabled(srv->auth) ? gw_identify(srv, r) : NULL)) {
			gw_error(h, GRPC_INVALID_ARGUMENT, "grpc-gateway: a watch starts with a create_request");
		}
		return true;
	}
	rt = gw_find(r->path, r->path_len);
	if (!rt) {
		gw_error(h, GRPC_UNIMPLEMENTED, "Not Implemented");
		return true;
	}
	if (r->method_len != 4 || memcmp(r->method, "POST", 4) != 0) {
		gw_error(h, GRPC_UNIMPLEMENTED, "Method Not Allowed");
		return true;
	}
	struct seq_req *sr = NULL;
	bool write = rt->method == KV_PUT || rt->method == KV_DELETE_RANGE || rt->method == KV_TXN ||
		     rt->method == KV_COMPACT || rt->method == SVC_MAINT_DEFRAGMENT || rt->method == SVC_MAINT_ALARM ||
		     (rt->method >= SVC_LEASE_GRANT && rt->method <= SVC_LEASE_LEASES) ||
		     (rt->method >= SVC_LOCK_LOCK && rt->method <= SVC_ELECTION_RESIGN) ||
		     (rt->method >= SVC_AUTH_ENABLE && rt->method <= SVC_AUTH_ROLE_REVOKE_PERMISSION);
	if (write) {
		sr = svc_req_new(t);
		a = sr->arena;
	} else {
		a = svc_scratch(t);
		arena_reset(a);
	}
	arena_pb_allocator(a, &al);
	bool flat; /* a Txn nested past etcd's budget: see pbguard_txn_depth */
	if (pbjson_unmarshal_flat(rt->req, r->body, r->body_len, &al, &req, &jerr,
				  rt->method == KV_TXN ? pbguard_txn_depth(srv->limits.max_txn_ops) : PBJSON_MSG_DEPTH_MAX + 1,
				  &flat) < 0) {
		gw_json_error(h, &jerr);
		if (sr)
			svc_req_release(t, sr);
		return true;
	}
	atomic_fetch_add_explicit(&gw_metrics(t)->started[rt->method], 1, memory_order_relaxed);
	/* etcd's KV checks come before auth (its gateway calls the gRPC server) */
	if (rt->method < KV_METHODS) {
		size_t len = protobuf_c_message_get_packed_size(req);
		int bad = kv_check((enum kv_method)rt->method, req, len, &srv->limits, a, &res);
		if (bad || flat) {
			if (!bad) /* NEVER: a flattened txn always fails etcd's checks; never run one */
				res.code = GRPC_INVALID_ARGUMENT, res.message = "etcdserver: too many operations in txn request";
			gw_fail(t, h, rt->method, res.code, res.message);
			if (sr)
				svc_req_release(t, sr);
			return true;
		}
	}
	/* auth: the token comes in the Authorization header (the gateway never uses a TLS
	 * client certificate's name, as etcd's) */
	if (srv->auth && authsvc_enabled(srv->auth)) {
		struct authsvc_ident *id = gw_identify(srv, r);
		bool ok = svc_auth_allows(t, id, rt->method, req, sr, &res);
		free(id);
		if (!ok) {
			gw_fail(t, h, rt->method, res.code, res.message);
			if (sr)
				svc_req_release(t, sr);
			return true;
		}
	} else if (sr) {
		svc_auth_allows(t, NULL, rt->method, req, sr, &res); /* clears the request's auth fields */
	}
	if (rt->method < KV_METHODS) {
		if (kv_is_read_only((enum kv_method)rt->method, req)) {
			struct mvcc_view v;
			mvcc_view_published(srv->store, &v);
			kv_read((enum kv_method)rt->method, &v, req, a, &res);
			metrics_mvcc_count(&gw_metrics(t)->mvcc, rt->method, req, res.resp);
			if (res.code != GRPC_OK) {
				gw_fail(t, h, rt->method, res.code, res.message);
			} else {
				kv_fill_header(res.resp, (enum kv_method)rt->method, &srv->ids);
				gw_respond(t, h, rt, res.resp);
			}
			if (sr)
				svc_req_release(t, sr);
			return true;
		}
	}
	if (sr) {
		sr->conn_id = conn_id;
		sr->stream_id = 0;
		sr->method = rt->method;
		sr->msg = req;
		sr->keep_open = false;
		sr->http = true;
		if (rt->method < SVC_AUTH_ENABLE || rt->method > SVC_AUTH_ROLE_REVOKE_PERMISSION) {
			svc_req_submit(t, sr);
		} else if (svc_auth_request(t, sr, &res)) {
			gw_fail(t, h, rt->method, res.code, res.message);
			svc_req_release(t, sr);
		}
		return true;
	}
	/* Maintenance and Cluster reads: the same handlers as gRPC, fed the packed request */
	struct mvcc_view v;
	mvcc_view_published(srv->store, &v);
	if (rt->method == SVC_MAINT_STATUS) {
		gw_respond(t, h, rt, maint_status(srv, &v, a));
	} else if (rt->method == SVC_CLUSTER_MEMBER_LIST) {
		gw_respond(t, h, rt, cluster_member_list(srv, &v, a));
	} else {
		size_t len = protobuf_c_message_get_packed_size(req);
		uint8_t *bytes = arena_alloc(a, len ? len : 1);
		protobuf_c_message_pack(req, bytes);
		maint_handle(srv, rt->method, bytes, len, &v, a, &res);
		if (res.code != GRPC_OK)
			gw_fail(t, h, rt->method, res.code, res.message);
		else
			gw_respond(t, h, rt, res.resp);
	}
	return true;
}

void gateway_complete(struct svc_thread *t, struct http1_conn *h, struct seq_req *r)
{
	const struct gw_route *rt = gw_by_method(r->method);
	ProtobufCAllocator al;

	if (h && rt) {
		if (r->code != GRPC_OK) {
			gw_fail(t, h, r->method, r->code, r->message);
		} else {
			arena_pb_allocator(r->arena, &al);
			ProtobufCMessage *m = protobuf_c_message_unpack(rt->resp, &al, r->resp_len, r->resp);
			if (m)
				gw_respond(t, h, rt, m);
			else
				gw_fail(t, h, r->method, GRPC_INTERNAL, "grpc-gateway: bad response");
		}
		http1_conn_resume(h); /* answered after the callback: let pipelined requests in */
	}
	svc_req_release(t, r);
}
