/* The Auth service's methods and the permission checks of every other request, with etcd
 * 3.5's rules and errors.
 *
 * Reactor side: auth_rpc_check decides, from the published auth state and the call's
 * identity, whether a request may run (every KV request, Watch create, admin calls, the
 * Auth methods themselves). Sequencer side: auth_rpc_apply runs an Auth method on the
 * writer's state, logs what changed, and builds the answer. A request checked against one
 * auth revision is refused on the sequencer if auth changed before it applied (etcd's
 * "revision of auth store is old"), so a permission revoked in between never lets it by. */
#ifndef UETCD_CORE_AUTH_RPC_H
#define UETCD_CORE_AUTH_RPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/kv.h"

struct auth;
struct authsvc;
struct authsvc_ident;
struct mvcc_store;
struct seq_req;
struct ProtobufCMessage;
struct ProtobufCMessageDescriptor;

/* The request message of an Auth method (SVC_AUTH_*), NULL for another method. */
const struct ProtobufCMessageDescriptor *auth_rpc_desc(int method);

/* With auth enabled in `view`: 0 when `id` may make this request, else fills res with
 * etcd's error and returns -1. `req` is the decoded request (NULL for methods whose
 * request does not matter). */
int auth_rpc_check(const struct auth *view, const struct authsvc_ident *id, int method,
		   const struct ProtobufCMessage *req, struct kv_result *res);
/* A Watch create or an Observe over [key, end) (etcd's conventions): NULL when allowed,
 * else the cancel reason etcd gives. */
const char *auth_rpc_check_watch(const struct auth *view, const struct authsvc_ident *id, const uint8_t *key,
				 size_t klen, const uint8_t *end, size_t elen);

/* Sequencer: whether a request checked on a reactor (r->auth_checked_rev) may still apply
 * under the current state; fills res with "revision of auth store is old" if not. */
bool auth_rpc_still_valid(const struct authsvc *as, const struct seq_req *r, struct kv_result *res);
/* Sequencer: runs an Auth method. *changed: the state changed (publish after the commit). */
void auth_rpc_apply(struct authsvc *as, struct mvcc_store *s, struct seq_req *r, const struct kv_sink *sink,
		    const struct kv_header_ids *ids, struct kv_result *res, bool *changed);

#endif
