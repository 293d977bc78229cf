/* pbguard: protobuf wire bytes from outside are walked before protobuf-c unpacks them.
 *
 * protobuf-c's unpack recurses once per nested message: one Txn nested 5000 deep (34 KB)
 * overflowed a reactor's stack before etcd's checks could refuse it. pbguard walks the
 * wire format iteratively (an explicit stack of 8-byte frames, no recursion), driven by
 * the message's descriptor, accepting exactly what protobuf_c_message_unpack accepts
 * (tests/fuzz/pbguard_fuzz.c compares the two on every input), and reports the deepest
 * nesting. Given a copy of the input it also flattens every message at depth flat_depth:
 * the message keeps its tag and length, its content becomes one unknown field of the same
 * size, so the copy unpacks through at most flat_depth levels while everything below was
 * still validated (a malformed byte anywhere is refused, as etcd refuses it).
 *
 * Depth: the top message is 1, a message field of it 2, and so on. Unknown fields are
 * never descended into (protobuf-c keeps them as bytes). Each level costs at least two
 * input bytes, so len / 2 + 1 frames always suffice.
 */
#ifndef UETCD_CORE_PBGUARD_H
#define UETCD_CORE_PBGUARD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

struct arena;

enum {
	/* Message nesting that protobuf-c's unpack, pack and free and uetcd's own recursive
	 * code (kv_check, txn apply, pbjson) may be handed: about 1 KiB of stack per level
	 * in protobuf-c, so well under a reactor's stack. A Txn is two levels per nesting
	 * (TxnRequest, RequestOp), so etcd's behaviour is matched exactly for
	 * --max-txn-ops up to 254. */
	PBGUARD_DEPTH_MAX = 512,
	/* Frames kept on the C stack; deeper (hostile) input takes len / 2 + 1 frames from
	 * the request's arena, so the walk never allocates more than 4x the message size. */
	PBGUARD_FRAMES_STACK = 64,
	/* Distinct message types one walk may meet (etcd's requests reach at most 6). */
	PBGUARD_TYPES_MAX = 32,
	/* Dead fields in runs past which pbguard_unpack merges them (copying the input). */
	PBGUARD_MERGE_MIN = 8,
};

struct pbguard_frame {
	uint32_t end;  /* offset where the enclosing message ends */
	uint32_t type; /* its descriptor, as an index into the walk's type table */
};

/* Walks `len` bytes as a message of type `d`. With `flat` (a copy of the input, len bytes)
 * every message at depth flat_depth (>= 1) is flattened in the copy as described above.
 * Returns the deepest nesting (>= 1) when protobuf-c would unpack the input; -EBADMSG when
 * it would refuse it; -EPROTO for the two inputs refused although protobuf-c takes them
 * (field number 0 in a multi-byte tag, as etcd refuses it; a length that wraps 32 bits);
 * -ELOOP when nesting passes frames_max; -ENOTSUP when more than PBGUARD_TYPES_MAX
 * message types are reached (a schema this guard was not sized for). */
int pbguard_walk(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len, struct pbguard_frame *frames,
		 size_t frames_max, unsigned flat_depth, uint8_t *flat);
/* The same, also counting in *merged the dead fields that directly follow another dead
 * field of the same message (dead: unknown, or a singular scalar field that the next
 * field, the same one again, replaces: protobuf-c keeps the last). With `flat`, each such
 * run (outside flattened messages) becomes one unknown field of the same size in the copy:
 * protobuf-c spends 30 to 60 bytes of bookkeeping per field, so a 1.5 MiB request of
 * 2-byte unknown fields cost 63 MiB, and a Put of 3-byte keys sent again and again sat
 * queued at 20x its size; merged, they cost their own size, as in etcd. */
int pbguard_walk_merge(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len,
		       struct pbguard_frame *frames, size_t frames_max, unsigned flat_depth, uint8_t *flat,
		       size_t *merged);

/* The depth at which a Txn's content no longer matters to etcd's checkTxnRequest: each
 * nested txn spends at least one op of the --max-txn-ops budget, so the txn at nesting
 * max_txn_ops + 2 (message depth 2 * max_txn_ops + 3) always fails "too many operations",
 * whatever it holds. Flattening there answers exactly what etcd answers. */
unsigned pbguard_txn_depth(uint32_t max_txn_ops);

/* Walks, then unpacks into arena `a` (protobuf-c, bounded recursion). Messages at depth
 * flat_depth are flattened first if the input is deeper (*flattened is then true; the
 * result no longer carries their content); runs of dead fields are merged when there
 * are PBGUARD_MERGE_MIN or more (their bytes are kept, as one unknown field). A flat_depth beyond PBGUARD_DEPTH_MAX means
 * "never flatten": deeper input is refused. Returns the message, or NULL with *rc:
 * -EBADMSG (protobuf-c would refuse the bytes), -ELOOP (nested deeper than allowed). */
ProtobufCMessage *pbguard_unpack(const ProtobufCMessageDescriptor *d, struct arena *a, const uint8_t *buf,
				 size_t len, unsigned flat_depth, bool *flattened, int *rc);

#endif
