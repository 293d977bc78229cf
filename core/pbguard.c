/* pbguard: an iterative walk over protobuf wire bytes before protobuf-c unpacks them.
 * See pbguard.h.
 *
 * The rules are protobuf-c 1.4's (protobuf_c_message_unpack), restated:
 *  - a tag is a varint of at most 5 bytes (bits past 32 dropped); field number 0 is
 *    refused; any other the descriptor does not know is an unknown field, kept as bytes;
 *  - wire types 0 (varint, at most 10 bytes), 1 (8 bytes), 2 (a length of at most 5 bytes,
 *    bits past 32 dropped, then that many bytes) and 5 (4 bytes); 3, 4, 6, 7 are refused;
 *  - a known field must come with its type's wire type (bool takes any); a repeated
 *    numeric field may come packed (wire type 2): fixed widths a multiple of 4 or 8 bytes,
 *    varints each ended within 10 bytes, bools each byte 0 or 1;
 *  - a message field's bytes must themselves be a valid message of its type.
 * Two differences, on purpose, both answered -EPROTO: field 0 written in more than one
 * byte is refused (protobuf-c takes it, etcd does not), and so is a length whose 32-bit
 * sum with its prefix wraps around (protobuf-c would read past the field).
 */
#include "core/pbguard.h"

#include <errno.h>
#include <string.h>

#include "core/arena.h"

/* Reads a varint of at most `max` bytes from [p, end) into *v (low 64 bits, as protobuf-c
 * keeps them). Returns its length, or 0 if it does not end within max bytes or the input. */
static size_t pbguard_varint(const uint8_t *p, const uint8_t *end, size_t max, uint64_t *v)
{
	size_t n = (size_t)(end - p) < max ? (size_t)(end - p) : max;
	uint64_t x = 0;

	for (size_t i = 0; i < n; i++) {
		if (i < 10)
			x |= (uint64_t)(p[i] & 0x7f) << (7 * i);
		if (!(p[i] & 0x80)) {
			*v = x;
			return i + 1;
		}
	}
	return 0;
}

/* The tag as protobuf-c reads it: 4 bits from the first byte, 7 from each next, 32 kept. */
static size_t pbguard_tag(const uint8_t *p, const uint8_t *end, uint32_t *field, unsigned *wire)
{
	uint64_t v;
	size_t n = pbguard_varint(p, end, 5, &v);

	if (!n)
		return 0;
	*wire = (unsigned)(v & 7);
	*field = (uint32_t)(v >> 3);
	return n;
}

static bool pbguard_packable(ProtobufCType t)
{
	return t != PROTOBUF_C_TYPE_STRING && t != PROTOBUF_C_TYPE_BYTES && t != PROTOBUF_C_TYPE_MESSAGE;
}

/* The wire type a field of type t must come with (bool: any, -1). */
static int pbguard_wire_of(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_FLOAT:
		return PROTOBUF_C_WIRE_TYPE_32BIT;
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_DOUBLE:
		return PROTOBUF_C_WIRE_TYPE_64BIT;
	case PROTOBUF_C_TYPE_STRING:
	case PROTOBUF_C_TYPE_BYTES:
	case PROTOBUF_C_TYPE_MESSAGE:
		return PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED;
	case PROTOBUF_C_TYPE_BOOL:
		return -1;
	default:
		return PROTOBUF_C_WIRE_TYPE_VARINT;
	}
}

/* A packed repeated field's bytes [p, end) for type t. */
static bool pbguard_packed_ok(ProtobufCType t, const uint8_t *p, const uint8_t *end)
{
	size_t n = (size_t)(end - p);
	uint64_t v;

	switch (pbguard_wire_of(t)) {
	case PROTOBUF_C_WIRE_TYPE_32BIT:
		return n % 4 == 0;
	case PROTOBUF_C_WIRE_TYPE_64BIT:
		return n % 8 == 0;
	case -1: /* bool */
		for (size_t i = 0; i < n; i++)
			if (p[i] > 1)
				return false;
		return true;
	default:
		while (p < end) {
			size_t s = pbguard_varint(p, end, 10, &v);
			if (!s)
				return false;
			p += s;
		}
		return true;
	}
}

static size_t pbguard_put_tag(uint8_t *o, uint32_t field, unsigned wire)
{
	uint32_t v = field << 3 | wire;
	size_t n = 0;

	while (v >= 0x80) {
		o[n++] = (uint8_t)(v | 0x80);
		v >>= 7;
	}
	o[n++] = (uint8_t)v;
	return n;
}

/* Overwrites a message's n content bytes at o with one field d does not know, so that
 * protobuf-c keeps them as an unknown field and looks no deeper. Content too short for
 * that (at most 2 bytes, which can hold no nesting past one empty message) is left. */
static void pbguard_fill(const ProtobufCMessageDescriptor *d, uint8_t *o, size_t n)
{
	uint32_t field = 1;
	uint8_t tag[8];
	size_t tl;

	while (field < 2048 && protobuf_c_message_descriptor_get_field(d, field))
		field++;
	tl = pbguard_put_tag(tag, field, PROTOBUF_C_WIRE_TYPE_VARINT);
	if (n < tl + 1)
		return;
	if (n <= tl + 10) { /* a varint field: 0 written in n - tl bytes */
		memcpy(o, tag, tl);
		memset(o + tl, 0x80, n - tl - 1);
		o[n - 1] = 0;
		return;
	}
	/* a length-delimited field with a 5-byte length (protobuf-c takes unshortened ones) */
	size_t body = n - tl - 5;
	tl = pbguard_put_tag(o, field, PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED);
	for (int i = 0; i < 4; i++)
		o[tl + (size_t)i] = (uint8_t)(((body >> (7 * i)) & 0x7f) | 0x80);
	o[tl + 4] = (uint8_t)(body >> 28);
}

/* A run of dead fields in one message: unknown fields, and occurrences of a singular
 * scalar field that a later occurrence replaces (protobuf-c keeps the last). */
struct pbguard_run {
	const uint8_t *start, *end;
	size_t n;
};

/* Ends the run: with two fields or more, it becomes one unknown field in the copy (not
 * inside a flattened message, whose bytes are already opaque). */
static void pbguard_run_close(struct pbguard_run *r, const ProtobufCMessageDescriptor *d, const uint8_t *buf,
			      uint8_t *flat, bool writable)
{
	if (r->n >= 2 && flat && writable)
		pbguard_fill(d, flat + (r->start - buf), (size_t)(r->end - r->start));
	r->start = r->end = NULL;
	r->n = 0;
}

/* Adds the dead field [s, e): joins the run if it follows it directly, else starts one. */
static void pbguard_run_add(struct pbguard_run *r, const uint8_t *s, const uint8_t *e, size_t *merged,
			    const ProtobufCMessageDescriptor *d, const uint8_t *buf, uint8_t *flat, bool writable)
{
	if (r->n && r->end == s) {
		r->end = e;
		r->n++;
		(*merged)++;
		return;
	}
	pbguard_run_close(r, d, buf, flat, writable);
	r->start = s;
	r->end = e;
	r->n = 1;
}

static int pbguard_type_index(const ProtobufCMessageDescriptor **types, unsigned *ntypes,
			      const ProtobufCMessageDescriptor *d)
{
	for (unsigned i = 0; i < *ntypes; i++)
		if (types[i] == d)
			return (int)i;
	if (*ntypes == PBGUARD_TYPES_MAX)
		return -ENOTSUP;
	types[*ntypes] = d;
	return (int)(*ntypes)++;
}

int pbguard_walk(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len, struct pbguard_frame *frames,
		 size_t frames_max, unsigned flat_depth, uint8_t *flat)
{
	size_t merged;

	return pbguard_walk_merge(d, buf, len, frames, frames_max, flat_depth, flat, &merged);
}

int pbguard_walk_merge(const ProtobufCMessageDescriptor *d, const uint8_t *buf, size_t len,
		       struct pbguard_frame *frames, size_t frames_max, unsigned flat_depth, uint8_t *flat,
		       size_t *merged)
{
	const ProtobufCMessageDescriptor *types[PBGUARD_TYPES_MAX];
	unsigned ntypes = 0, depth = 1, deepest = 1;
	const uint8_t *p = buf, *end = buf + len;
	struct pbguard_run run = {0};
	const ProtobufCFieldDescriptor *last = NULL; /* a singular scalar field just read... */
	const uint8_t *last_start = NULL, *last_end = NULL; /* ...and where */
	int cur = 0;

	*merged = 0;
	if (len > UINT32_MAX)
		return -EBADMSG; /* frames keep 32-bit offsets; gRPC's limits are far below */
	types[ntypes++] = d;
	if (flat && flat_depth == 1)
		pbguard_fill(d, flat, len);
	for (;;) {
		bool writable = flat_depth == 0 || depth < flat_depth;
		if (p == end) {
			pbguard_run_close(&run, types[cur], buf, flat, writable);
			last = NULL;
			if (depth == 1)
				return (int)deepest;
			depth--;
			end = buf + frames[depth - 1].end;
			cur = (int)frames[depth - 1].type;
			continue;
		}
		const uint8_t *field_start = p;
		uint32_t fnum;
		unsigned wire;
		uint64_t v;
		size_t n = pbguard_tag(p, end, &fnum, &wire);
		if (!n)
			return -EBADMSG;
		if (fnum == 0) /* protobuf-c refuses the one-byte form only, etcd every form */
			return n == 1 ? -EBADMSG : -EPROTO;
		p += n;
		const uint8_t *body = p, *next;
		switch (wire) {
		case PROTOBUF_C_WIRE_TYPE_VARINT:
			if (!(n = pbguard_varint(p, end, 10, &v)))
				return -EBADMSG;
			next = p + n;
			break;
		case PROTOBUF_C_WIRE_TYPE_64BIT:
			if (end - p < 8)
				return -EBADMSG;
			next = p + 8;
			break;
		case PROTOBUF_C_WIRE_TYPE_32BIT:
			if (end - p < 4)
				return -EBADMSG;
			next = p + 4;
			break;
		case PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED:
			if (!(n = pbguard_varint(p, end, 5, &v)))
				return -EBADMSG;
			v &= UINT32_MAX; /* protobuf-c keeps 32 bits of a length */
			if (v > (uint64_t)(end - p - (ptrdiff_t)n))
				return (uint64_t)n + v > UINT32_MAX ? -EPROTO : -EBADMSG;
			body = p + n;
			next = body + v;
			break;
		default:
			return -EBADMSG; /* groups and wire types 6, 7 */
		}
		p = next;
		const ProtobufCFieldDescriptor *f = protobuf_c_message_descriptor_get_field(types[cur], fnum);
		if (!f) {
			pbguard_run_add(&run, field_start, next, merged, types[cur], buf, flat, writable);
			continue;
		}
		if (f == last && last_end == field_start) /* the one before is replaced by this one */
			pbguard_run_add(&run, last_start, last_end, merged, types[cur], buf, flat, writable);
		last = f->label != PROTOBUF_C_LABEL_REPEATED && f->type != PROTOBUF_C_TYPE_MESSAGE ? f : NULL;
		last_start = field_start;
		last_end = next;
		if (f->label == PROTOBUF_C_LABEL_REPEATED && wire == PROTOBUF_C_WIRE_TYPE_LENGTH_PREFIXED &&
		    ((f->flags & PROTOBUF_C_FIELD_FLAG_PACKED) || pbguard_packable(f->type))) {
			if (!pbguard_packed_ok(f->type, body, next))
				return -EBADMSG;
			continue;
		}
		int want = pbguard_wire_of(f->type);
		if (want >= 0 && (unsigned)want != wire)
			return -EBADMSG;
		if (f->type != PROTOBUF_C_TYPE_MESSAGE)
			continue;
		/* into the field's message: [body, next) */
		pbguard_run_close(&run, types[cur], buf, flat, writable);
		if (depth > frames_max)
			return -ELOOP;
		int t = pbguard_type_index(types, &ntypes, f->descriptor);
		if (t < 0)
			return t;
		frames[depth - 1].end = (uint32_t)(end - buf);
		frames[depth - 1].type = (uint32_t)cur;
		depth++;
		if (depth > deepest)
			deepest = depth;
		cur = t;
		end = next;
		p = body;
		if (flat && depth == flat_depth)
			pbguard_fill(types[cur], flat + (body - buf), (size_t)(next - body));
	}
}

unsigned pbguard_txn_depth(uint32_t max_txn_ops)
{
	uint64_t d = 2 * (uint64_t)max_txn_ops + 3;
	return d > PBGUARD_DEPTH_MAX + 1 ? PBGUARD_DEPTH_MAX + 1 : (unsigned)d;
}

ProtobufCMessage *pbguard_unpack(const ProtobufCMessageDescriptor *d, struct arena *a, const uint8_t *buf,
				 size_t len, unsigned flat_depth, bool *flattened, int *rc)
{
	struct pbguard_frame stack_frames[PBGUARD_FRAMES_STACK];
	struct pbguard_frame *frames = stack_frames;
	size_t nframes = PBGUARD_FRAMES_STACK;
	ProtobufCAllocator al;
	ProtobufCMessage *m;
	size_t merged;
	int depth;

	*flattened = false;
	depth = pbguard_walk_merge(d, buf, len, frames, nframes, 0, NULL, &merged);
	if (depth == -ELOOP) { /* hostile depth: frames for the worst case, from the arena */
		nframes = len / 2 + 1;
		frames = arena_alloc(a, nframes * sizeof *frames);
		depth = pbguard_walk_merge(d, buf, len, frames, nframes, 0, NULL, &merged);
	}
	if (depth < 0) {
		*rc = -EBADMSG;
		return NULL;
	}
	if (flat_depth > PBGUARD_DEPTH_MAX) {
		if (depth > PBGUARD_DEPTH_MAX) {
			*rc = -ELOOP;
			return NULL;
		}
	}
	bool flat = flat_depth <= PBGUARD_DEPTH_MAX && (unsigned)depth > flat_depth;
	if (flat || merged >= PBGUARD_MERGE_MIN) {
		uint8_t *copy = arena_memdup(a, buf, len);
		pbguard_walk_merge(d, buf, len, frames, nframes, flat ? flat_depth : 0, copy, &merged);
		buf = copy;
		*flattened = flat;
	}
	arena_pb_allocator(a, &al);
	m = protobuf_c_message_unpack(d, &al, len, buf);
	if (!m)
		*rc = -EBADMSG;
	return m;
}
