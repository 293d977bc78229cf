/* pbjson: protobuf-c messages <-> JSON, exactly as etcd's grpc-gateway does it.
 *
 * etcd 3.5's gateway marshals with protojson (UseProtoNames, EmitUnpopulated=false) and
 * unmarshals with DiscardUnknown. Verified against etcd 3.5.16 (tests/unit/pbjson_test.c):
 *  - keys are the proto field names as written ("cluster_id", "dbSize", "raftIndex");
 *  - fields in field-number order; fields at their default (0, "", false, empty bytes, empty
 *    repeated, unset message) are left out; a oneof member is written whenever it is the set
 *    case, even at its default; a set message field is written even when empty ("{}");
 *  - 64-bit integers as decimal strings, 32-bit as numbers, bools as true/false, bytes as
 *    standard padded base64, enums by name (numbers for values without a name);
 *  - unary responses separate members with ", " (protojson's per-binary "unstable" space,
 *    which this etcd build has: PBJSON_COMMA_SPACE); streamed messages (watch, keepalive) go
 *    through encoding/json, which compacts them to "," and escapes <, >, & and U+2028/9
 *    (PBJSON_STREAM), and are wrapped by the caller as {"result":...}.
 * Unmarshal accepts what protojson accepts: proto name or lowerCamelCase JSON name; integers
 * as numbers (also 1.0 or 1e2 when exactly integral) or strings holding such numbers; enums
 * by name or number (an unknown name is ignored, as DiscardUnknown does); bytes in standard
 * or URL-safe base64, padded or not; null leaves a field unset; unknown fields are skipped.
 * Errors: duplicate field, a second member of a oneof, wrong JSON types, out-of-range numbers,
 * invalid UTF-8 in strings, trailing garbage, JSON nesting beyond PBJSON_DEPTH_MAX (found by
 * a scan of the whole value first, as encoding/json does), messages nested beyond
 * PBJSON_MSG_DEPTH_MAX (or flattened at a chosen depth: pbjson_unmarshal_flat).
 *
 * Not done: maps, float/double marshalled with Go's exact shortest formatting (etcd has no
 * floating-point fields), well-known types (Any, Timestamp, wrappers), proto2 defaults.
 */
#ifndef UETCD_CORE_PBJSON_H
#define UETCD_CORE_PBJSON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

enum {
	/* JSON nesting (objects and arrays) the parser takes: Go's encoding/json limit, which
	 * etcd's gateway applies before protojson ("invalid character '[' exceeded max
	 * depth"). Checked first by an iterative scan, so nothing recurses on it. */
	PBJSON_DEPTH_MAX = 10000,
	/* Message nesting in either direction, for protobuf-c and the recursive parser and
	 * marshaller (about 1 KiB of stack per level): pbguard's bound. */
	PBJSON_MSG_DEPTH_MAX = 512,
};

/* Marshal flags. */
enum {
	PBJSON_COMMA_SPACE = 1, /* ", " between members and elements: etcd 3.5.16's unary replies */
	PBJSON_STREAM = 2,      /* escape <, >, & and U+2028/U+2029 like encoding/json (streams) */
};

/* An output buffer owned by the caller. `p` may start NULL; it grows by realloc, doubling,
 * never beyond `max` bytes (0 = no bound). Reuse it across calls (set len = 0) to avoid
 * allocating per message; free(p) when done. The text is NUL-terminated (not counted). */
struct pbjson_buf {
	char *p;
	size_t len, cap, max;
};

/* Appends the JSON form of `m` to `out`. Returns 0; -ENOBUFS when `max` would be exceeded
 * (out->len is restored); -ENOMEM; -ELOOP past PBJSON_DEPTH_MAX; -EINVAL for a field type
 * this codec does not handle. */
int pbjson_marshal(const ProtobufCMessage *m, unsigned flags, struct pbjson_buf *out);

/* Where and why unmarshalling failed. `msg` reads like protojson's: "(line 1:22): invalid
 * value for int64 field limit: \"x\"" (the gateway prefixes "proto: "). */
struct pbjson_error {
	size_t offset; /* byte offset in the input */
	int line, col; /* 1-based */
	bool json;     /* msg is encoding/json's (no position; the gateway adds no "proto: ") */
	char msg[160];
};

/* Parses `json` (len bytes, need not be NUL-terminated) into a new message of type `d`,
 * allocated with `alloc` (NULL: protobuf-c's default malloc allocator; then free the result
 * with protobuf_c_message_free_unpacked). Input that is empty or only whitespace yields an
 * empty message, as the gateway treats an empty body. Returns 0 with *out set, or -EINVAL
 * (with `err` filled if not NULL; nothing is returned, and with the malloc allocator nothing
 * leaks), -ELOOP (too deep), -ENOMEM. */
int pbjson_unmarshal(const ProtobufCMessageDescriptor *d, const uint8_t *json, size_t len,
		     ProtobufCAllocator *alloc, ProtobufCMessage **out, struct pbjson_error *err);
/* The same, but a message at nesting flat_depth (the top is 1) is left empty and its JSON
 * only checked, as pbguard flattens protobuf (pbguard_txn_depth for a Txn: etcd refuses
 * such a txn whatever it holds); *flattened tells whether that happened. A flat_depth past
 * PBJSON_MSG_DEPTH_MAX flattens nothing: deeper messages are -ELOOP. */
int pbjson_unmarshal_flat(const ProtobufCMessageDescriptor *d, const uint8_t *json, size_t len,
			  ProtobufCAllocator *alloc, ProtobufCMessage **out, struct pbjson_error *err,
			  unsigned flat_depth, bool *flattened);

/* Appends raw bytes (e.g. the {"result": ... }\n wrapper of a streamed message). */
int pbjson_put_raw(struct pbjson_buf *out, const void *data, size_t len);
/* Standard base64 with padding of `len` bytes, appended (used for bytes fields). */
int pbjson_put_base64(struct pbjson_buf *out, const uint8_t *data, size_t len);
/* A JSON string literal (quotes included) of `len` bytes of UTF-8; invalid sequences become
 * U+FFFD as Go's encoding/json does. */
int pbjson_put_string(struct pbjson_buf *out, const char *s, size_t len, unsigned flags);

#endif
