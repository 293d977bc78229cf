/* Lock and Election services on the sequencer (see election.c): contention by create
 * revision under "<name>/", waiting callers parked until their turn. */
#ifndef UETCD_CORE_ELECTION_H
#define UETCD_CORE_ELECTION_H

#include <stdbool.h>

struct election;
struct mvcc_store;
struct seq_req;
struct kv_sink;
struct kv_header_ids;
struct ProtobufCMessageDescriptor;

struct election *election_new(void);
void election_free(struct election *e);
/* The request message type of a Lock or Election method (enum svc_method). */
const struct ProtobufCMessageDescriptor *election_request_desc(int method);
/* Runs a Lock/Unlock/Campaign/Proclaim/Leader/Resign request. Returns true if the call was
 * parked (it is answered by a later election_wake), else r holds its answer. */
bool election_apply(struct election *e, struct mvcc_store *s, struct seq_req *r, const struct kv_sink *sink,
		    const struct kv_header_ids *ids);
/* The client of a parked Lock or Campaign went away (gone names its call: reactor, conn_id,
 * stream_id): drops it and deletes its key, as etcd does. False if it was not parked. */
bool election_cancel(struct election *e, struct mvcc_store *s, const struct seq_req *gone, const struct kv_sink *sink);
/* After a batch: the parked calls whose turn came (or whose key went, or whose client left),
 * answered, chained. */
struct seq_req *election_wake(struct election *e, struct mvcc_store *s, const struct kv_header_ids *ids);

#endif
