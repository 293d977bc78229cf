/* HPACK (RFC 7541): a sans-I/O decoder with a bounded dynamic table, a stateless encoder.
 *
 * Decoder memory is sized once, in hpack_decoder_new, from the table size we advertise:
 *   entries  ring of table_size_max/32 slots (every entry costs at least 32 octets)
 *   data     ring of table_size_max octets holding each entry's name then value; an entry
 *            may wrap around the end and is then copied out (into scratch) when read
 *   scratch  per-field space for Huffman-decoded strings and for copies of table entries
 *            that wrap, or that must survive their own eviction (RFC 7541 4.4)
 * Invariants (owned by hpack_table_insert and hpack_table_evict, the only writers):
 *   table_size == sum over entries of (name_len + value_len + 32) <= table_size_limit
 *   table_size_limit <= table_size_max; entries_count < entries_cap whenever one is added
 * Scratch grows (geometrically, kept across blocks) only to what a field may legitimately
 * need: a Huffman string is decoded into it only if its decoded length fits the remaining
 * header-list budget or the dynamic table; a longer one is validated without being stored
 * (it can be neither delivered nor indexed), so scratch stays within a small multiple of
 * max(header_list_max, table_size_max) and steady state allocates nothing. A string over the header-list budget makes the block HPACK_ETOOLARGE (a stream
 * error), never a compression error, because it need not be malformed.
 *
 * Huffman decoding walks a 4-bit-at-a-time state machine (256 states x 16 nibbles) built
 * once from the RFC's code table (net/hpack_huffman.h); nothing generated is checked in.
 *
 * Deliberately not done: no dynamic-table encoder (see hpack.h); no check that names are
 * lowercase or that pseudo-headers come first (that is HTTP/2 semantics, in the caller).
 */
#include "net/hpack.h"
#include "net/hpack_huffman.h"

#include <assert.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#define HPACK_ENTRY_OVERHEAD 32u
#define HPACK_STATIC_COUNT 61u
/* The largest table_size_max hpack_decoder_new accepts (its memory is allocated up front). */
#define HPACK_TABLE_SIZE_LIMIT (1u << 24)
/* A 32-bit value after a prefix of at least 1 bit needs at most 5 continuation octets;
 * longer encodings (even with zero padding) are refused. */
#define HPACK_INT_CONT_MAX 5u
#define HPACK_SCRATCH_INITIAL 4096u

_Static_assert(HPACK_TABLE_SIZE_LIMIT <= UINT32_MAX / 2, "table offsets must not overflow uint32_t");

/* ---- static table (RFC 7541 Appendix A) ---- */

struct hpack_static_entry {
	const char *name;
	const char *value;
	uint8_t name_len;
	uint8_t value_len;
};

#define HPACK_S(n, v) {n, v, sizeof(n) - 1, sizeof(v) - 1}
static const struct hpack_static_entry hpack_static_table[HPACK_STATIC_COUNT] = {
	HPACK_S(":authority", ""),
	HPACK_S(":method", "GET"),
	HPACK_S(":method", "POST"),
	HPACK_S(":path", "/"),
	HPACK_S(":path", "/index.html"),
	HPACK_S(":scheme", "http"),
	HPACK_S(":scheme", "https"),
	HPACK_S(":status", "200"),
	HPACK_S(":status", "204"),
	HPACK_S(":status", "206"),
	HPACK_S(":status", "304"),
	HPACK_S(":status", "400"),
	HPACK_S(":status", "404"),
	HPACK_S(":status", "500"),
	HPACK_S("accept-charset", ""),
	HPACK_S("accept-encoding", "gzip, deflate"),
	HPACK_S("accept-language", ""),
	HPACK_S("accept-ranges", ""),
	HPACK_S("accept", ""),
	HPACK_S("access-control-allow-origin", ""),
	HPACK_S("age", ""),
	HPACK_S("allow", ""),
	HPACK_S("authorization", ""),
	HPACK_S("cache-control", ""),
	HPACK_S("content-disposition", ""),
	HPACK_S("content-encoding", ""),
	HPACK_S("content-language", ""),
	HPACK_S("content-length", ""),
	HPACK_S("content-location", ""),
	HPACK_S("content-range", ""),
	HPACK_S("content-type", ""),
	HPACK_S("cookie", ""),
	HPACK_S("date", ""),
	HPACK_S("etag", ""),
	HPACK_S("expect", ""),
	HPACK_S("expires", ""),
	HPACK_S("from", ""),
	HPACK_S("host", ""),
	HPACK_S("if-match", ""),
	HPACK_S("if-modified-since", ""),
	HPACK_S("if-none-match", ""),
	HPACK_S("if-range", ""),
	HPACK_S("if-unmodified-since", ""),
	HPACK_S("last-modified", ""),
	HPACK_S("link", ""),
	HPACK_S("location", ""),
	HPACK_S("max-forwards", ""),
	HPACK_S("proxy-authenticate", ""),
	HPACK_S("proxy-authorization", ""),
	HPACK_S("range", ""),
	HPACK_S("referer", ""),
	HPACK_S("refresh", ""),
	HPACK_S("retry-after", ""),
	HPACK_S("server", ""),
	HPACK_S("set-cookie", ""),
	HPACK_S("strict-transport-security", ""),
	HPACK_S("transfer-encoding", ""),
	HPACK_S("user-agent", ""),
	HPACK_S("vary", ""),
	HPACK_S("via", ""),
	HPACK_S("www-authenticate", ""),
};
#undef HPACK_S

/* ---- integers (RFC 7541 5.1) ---- */

ssize_t hpack_encode_int(uint8_t *out, size_t cap, uint8_t first_byte_flags, int prefix_bits, uint64_t value)
{
	assert(prefix_bits >= 1 && prefix_bits <= 8);
	uint64_t max_prefix = (1u << prefix_bits) - 1;
	uint8_t flags = (uint8_t)(first_byte_flags & ~max_prefix);

	if (value < max_prefix) {
		if (cap < 1)
			return -HPACK_ENOSPC;
		out[0] = (uint8_t)(flags | value);
		return 1;
	}
	uint64_t rest = value - max_prefix;
	size_t n = 1;
	for (uint64_t r = rest;; r >>= 7) {
		n++;
		if (r < 128)
			break;
	}
	if (cap < n)
		return -HPACK_ENOSPC;
	out[0] = (uint8_t)(flags | max_prefix);
	size_t i = 1;
	while (rest >= 128) {
		out[i++] = (uint8_t)(0x80 | (rest & 0x7f));
		rest >>= 7;
	}
	out[i++] = (uint8_t)rest;
	assert(i == n);
	return (ssize_t)i;
}

ssize_t hpack_decode_int(const uint8_t *in, size_t len, int prefix_bits, uint32_t *value)
{
	assert(prefix_bits >= 1 && prefix_bits <= 8);
	if (len == 0)
		return 0;
	uint32_t max_prefix = (1u << prefix_bits) - 1;
	uint64_t v = in[0] & max_prefix;
	if (v < max_prefix) {
		*value = (uint32_t)v;
		return 1;
	}
	for (size_t i = 1;; i++) {
		if (i > HPACK_INT_CONT_MAX)
			return -HPACK_ECOMPRESSION;
		if (i >= len)
			return 0;
		uint8_t b = in[i];
		v += (uint64_t)(b & 0x7f) << (7 * (i - 1)); /* shift <= 28: no overflow of uint64_t */
		if (v > UINT32_MAX)
			return -HPACK_ECOMPRESSION;
		if (!(b & 0x80)) {
			*value = (uint32_t)v;
			return (ssize_t)(i + 1);
		}
	}
}

/* ---- Huffman (RFC 7541 5.2, Appendix B) ---- */

enum {
	HPACK_HUFF_EMIT = 1,   /* this nibble completed a symbol: sym */
	HPACK_HUFF_ACCEPT = 2, /* the string may end here: the bits since the last symbol are
				  at most 7 and all ones (a prefix of EOS) */
	HPACK_HUFF_FAIL = 4,   /* this nibble completed EOS: a decoding error */
};

struct hpack_huff_step {
	uint8_t state; /* internal node of the code tree we are at after the nibble */
	uint8_t flags;
	uint8_t sym;
};

static struct hpack_huff_step hpack_huff_steps[256][16];
static pthread_once_t hpack_huff_once = PTHREAD_ONCE_INIT;

#define HPACK_HUFF_NONE 0xffffu
#define HPACK_HUFF_LEAF 0x1000u

/* Builds hpack_huff_steps from hpack_huffman_codes. A complete prefix code over 257
 * symbols has exactly 256 internal nodes; node 0 is the root. Aborts if the table is not a
 * complete prefix code (a transcription error), which the unit tests would catch first. */
static void hpack_huffman_build(void)
{
	uint16_t child[256][2];
	uint8_t depth[256];
	bool ones[256];
	unsigned nodes = 1;

	memset(child, 0xff, sizeof(child));
	depth[0] = 0;
	ones[0] = true;
	for (unsigned sym = 0; sym < HPACK_HUFFMAN_SYMBOLS; sym++) {
		uint32_t code = hpack_huffman_codes[sym].code;
		int bits = hpack_huffman_codes[sym].bits;
		unsigned cur = 0;
		for (int b = bits - 1; b >= 0; b--) {
			unsigned bit = (code >> b) & 1;
			uint16_t *slot = &child[cur][bit];
			if (b == 0) {
				if (*slot != HPACK_HUFF_NONE)
					abort();
				*slot = (uint16_t)(HPACK_HUFF_LEAF | sym);
				break;
			}
			if (*slot == HPACK_HUFF_NONE) {
				if (nodes >= 256)
					abort();
				*slot = (uint16_t)nodes;
				depth[nodes] = (uint8_t)(depth[cur] + 1);
				ones[nodes] = ones[cur] && bit;
				nodes++;
			} else if (*slot & HPACK_HUFF_LEAF) {
				abort();
			}
			cur = *slot;
		}
	}
	if (nodes != 256)
		abort();
	for (unsigned s = 0; s < 256; s++)
		if (child[s][0] == HPACK_HUFF_NONE || child[s][1] == HPACK_HUFF_NONE)
			abort();

	for (unsigned s = 0; s < 256; s++) {
		for (unsigned nib = 0; nib < 16; nib++) {
			struct hpack_huff_step st = {0, 0, 0};
			unsigned cur = s;
			for (int b = 3; b >= 0; b--) {
				uint16_t nx = child[cur][(nib >> b) & 1];
				if (!(nx & HPACK_HUFF_LEAF)) {
					cur = nx;
					continue;
				}
				unsigned sym = nx & ~HPACK_HUFF_LEAF;
				if (sym == HPACK_HUFFMAN_EOS) {
					st.flags |= HPACK_HUFF_FAIL;
					break;
				}
				/* Codes are >= 5 bits, so a nibble completes at most one symbol. */
				if (st.flags & HPACK_HUFF_EMIT)
					abort();
				st.flags |= HPACK_HUFF_EMIT;
				st.sym = (uint8_t)sym;
				cur = 0;
			}
			st.state = (uint8_t)cur;
			if (!(st.flags & HPACK_HUFF_FAIL) && ones[cur] && depth[cur] <= 7)
				st.flags |= HPACK_HUFF_ACCEPT;
			hpack_huff_steps[s][nib] = st;
		}
	}
}

static void hpack_huffman_init(void)
{
	if (pthread_once(&hpack_huff_once, hpack_huffman_build) != 0)
		abort();
}

size_t hpack_huffman_encoded_len(const uint8_t *src, size_t len)
{
	uint64_t bits = 0;
	for (size_t i = 0; i < len; i++)
		bits += hpack_huffman_codes[src[i]].bits;
	return (size_t)((bits + 7) / 8);
}

/* Writes exactly hpack_huffman_encoded_len(src, len) octets to out. */
static size_t hpack_huffman_encode_unchecked(uint8_t *out, const uint8_t *src, size_t len)
{
	uint64_t acc = 0; /* holds fewer than 8 pending bits between symbols */
	unsigned nbits = 0;
	size_t n = 0;
	for (size_t i = 0; i < len; i++) {
		const struct hpack_huffman_code *c = &hpack_huffman_codes[src[i]];
		acc = (acc << c->bits) | c->code;
		nbits += c->bits;
		while (nbits >= 8) {
			nbits -= 8;
			out[n++] = (uint8_t)(acc >> nbits);
		}
		acc &= ((uint64_t)1 << nbits) - 1;
	}
	if (nbits > 0) /* pad with the most significant bits of EOS: all ones */
		out[n++] = (uint8_t)((acc << (8 - nbits)) | (0xffu >> nbits));
	return n;
}

ssize_t hpack_huffman_encode(uint8_t *out, size_t cap, const uint8_t *src, size_t len)
{
	size_t need = hpack_huffman_encoded_len(src, len);
	if (need > cap)
		return -HPACK_ENOSPC;
	size_t n = hpack_huffman_encode_unchecked(out, src, len);
	assert(n == need);
	return (ssize_t)n;
}

/* Decodes src into out[0..cap), or only validates and counts when out is NULL. Returns the
 * decoded length, -HPACK_ECOMPRESSION (EOS inside the string, padding longer than 7 bits
 * or not all ones), or -HPACK_ENOSPC (decoded string longer than cap). The state machine
 * must have been built (hpack_huffman_init).
 *
 * When cap > len * 8 / 5 the output cannot overflow (every code is at least 5 bits), and
 * the loop runs without branches on the data: it stores the step's symbol whether or not
 * one was completed and advances by the EMIT bit, and collects FAIL bits for one check at
 * the end (a FAIL step leads to a valid state, so carrying on is harmless). */
static ssize_t hpack_huffman_decode_core(uint8_t *out, size_t cap, const uint8_t *src, size_t len)
{
	unsigned state = 0;
	unsigned flags = HPACK_HUFF_ACCEPT; /* the empty string is valid */
	size_t n = 0;

	_Static_assert(HPACK_HUFF_EMIT == 1, "EMIT is added to the output count");
	if (out && cap > len / 5 * 8 + (len % 5) * 8 / 5) {
		unsigned any = 0;
		for (size_t i = 0; i < len; i++) {
			const struct hpack_huff_step *st = &hpack_huff_steps[state][src[i] >> 4];
			out[n] = st->sym;
			n += st->flags & HPACK_HUFF_EMIT;
			any |= st->flags;
			st = &hpack_huff_steps[st->state][src[i] & 0xf];
			out[n] = st->sym;
			n += st->flags & HPACK_HUFF_EMIT;
			any |= st->flags;
			flags = st->flags;
			state = st->state;
		}
		if ((any & HPACK_HUFF_FAIL) || !(flags & HPACK_HUFF_ACCEPT))
			return -HPACK_ECOMPRESSION;
		return (ssize_t)n;
	}
	for (size_t i = 0; i < len; i++) {
		const struct hpack_huff_step *st = &hpack_huff_steps[state][src[i] >> 4];
		for (int half = 0; half < 2; half++) {
			if (half)
				st = &hpack_huff_steps[st->state][src[i] & 0xf];
			flags = st->flags;
			if (flags & HPACK_HUFF_FAIL)
				return -HPACK_ECOMPRESSION;
			if (flags & HPACK_HUFF_EMIT) {
				if (out) {
					if (n >= cap)
						return -HPACK_ENOSPC;
					out[n] = st->sym;
				}
				n++;
			}
		}
		state = st->state;
	}
	if (!(flags & HPACK_HUFF_ACCEPT))
		return -HPACK_ECOMPRESSION;
	return (ssize_t)n;
}

ssize_t hpack_huffman_decode(uint8_t *out, size_t cap, const uint8_t *src, size_t len)
{
	hpack_huffman_init();
	ssize_t r = hpack_huffman_decode_core(out, cap, src, len);
	return r < 0 ? -HPACK_ECOMPRESSION : r;
}

/* ---- decoder ---- */

struct hpack_entry {
	uint32_t off; /* start of name in the data ring; value follows it */
	uint32_t name_len;
	uint32_t value_len;
};

struct hpack_decoder {
	uint32_t table_size_max;   /* advertised in SETTINGS_HEADER_TABLE_SIZE; fixed */
	uint32_t table_size_limit; /* the peer's current choice (size updates), <= max */
	uint32_t table_size;       /* RFC 7541 4.1 size of the entries held */
	uint32_t entries_cap;      /* table_size_max / 32 */
	uint32_t entries_head;     /* slot of the oldest entry */
	uint32_t entries_count;
	struct hpack_entry *entries;
	uint8_t *data; /* ring of table_size_max octets */
	uint8_t *scratch;
	size_t scratch_cap;
	size_t scratch_used; /* reset at every field */
	bool bad;            /* sticky: a compression error or callback failure happened */
};

struct hpack_decoder *hpack_decoder_new(uint32_t table_size_max)
{
	if (table_size_max > HPACK_TABLE_SIZE_LIMIT)
		return NULL;
	hpack_huffman_init();
	struct hpack_decoder *d = calloc(1, sizeof(*d));
	if (!d)
		return NULL;
	d->table_size_max = table_size_max;
	d->table_size_limit = table_size_max;
	d->entries_cap = table_size_max / HPACK_ENTRY_OVERHEAD;
	d->entries = calloc(d->entries_cap ? d->entries_cap : 1, sizeof(*d->entries));
	d->data = malloc(table_size_max ? table_size_max : 1);
	d->scratch_cap = HPACK_SCRATCH_INITIAL;
	d->scratch = malloc(d->scratch_cap);
	if (!d->entries || !d->data || !d->scratch) {
		hpack_decoder_free(d);
		return NULL;
	}
	return d;
}

void hpack_decoder_free(struct hpack_decoder *d)
{
	if (!d)
		return;
	free(d->entries);
	free(d->data);
	free(d->scratch);
	free(d);
}

/* i is 1-based, 1 being the newest entry (dynamic index 62 on the wire). */
static const struct hpack_entry *hpack_table_get(const struct hpack_decoder *d, uint32_t i)
{
	assert(i >= 1 && i <= d->entries_count);
	return &d->entries[(d->entries_head + d->entries_count - i) % d->entries_cap];
}

static void hpack_table_evict(struct hpack_decoder *d, uint32_t target)
{
	while (d->table_size > target) {
		assert(d->entries_count > 0);
		const struct hpack_entry *e = &d->entries[d->entries_head];
		d->table_size -= HPACK_ENTRY_OVERHEAD + e->name_len + e->value_len;
		d->entries_head = (d->entries_head + 1) % d->entries_cap;
		d->entries_count--;
	}
}

static void hpack_ring_write(struct hpack_decoder *d, uint32_t off, const uint8_t *src, uint32_t n)
{
	if (n == 0)
		return;
	uint32_t first = d->table_size_max - off;
	if (first > n)
		first = n;
	memcpy(d->data + off, src, first);
	if (n > first)
		memcpy(d->data, src + first, n - first);
}

static void hpack_ring_read(const struct hpack_decoder *d, uint32_t off, uint8_t *dst, uint32_t n)
{
	if (n == 0)
		return;
	uint32_t first = d->table_size_max - off;
	if (first > n)
		first = n;
	memcpy(dst, d->data + off, first);
	if (n > first)
		memcpy(dst + first, d->data, n - first);
}

/* RFC 7541 4.4: evict until the new entry fits; an entry larger than the table empties it
 * and is not added. name and value must not point into the data ring. */
static void hpack_table_insert(struct hpack_decoder *d, const uint8_t *name, size_t name_len, const uint8_t *value,
			       size_t value_len)
{
	uint64_t size = (uint64_t)HPACK_ENTRY_OVERHEAD + name_len + value_len;
	if (size > d->table_size_limit) {
		hpack_table_evict(d, 0);
		return;
	}
	hpack_table_evict(d, d->table_size_limit - (uint32_t)size);
	assert(d->entries_count < d->entries_cap);
	uint32_t off = 0;
	if (d->entries_count > 0) {
		const struct hpack_entry *newest = hpack_table_get(d, 1);
		off = (newest->off + newest->name_len + newest->value_len) % d->table_size_max;
	} else {
		d->entries_head = 0;
	}
	hpack_ring_write(d, off, name, (uint32_t)name_len);
	hpack_ring_write(d, (uint32_t)((off + name_len) % d->table_size_max), value, (uint32_t)value_len);
	d->entries[(d->entries_head + d->entries_count) % d->entries_cap] =
		(struct hpack_entry){off, (uint32_t)name_len, (uint32_t)value_len};
	d->entries_count++;
	d->table_size += (uint32_t)size;
}

/* Returns space for n more octets at scratch + scratch_used. Growth is bounded by the
 * callers (see the file header); running out of memory is fatal, as for arenas. */
static uint8_t *hpack_scratch_reserve(struct hpack_decoder *d, size_t n)
{
	if (d->scratch_cap - d->scratch_used < n) {
		size_t want = d->scratch_used + n;
		size_t cap = d->scratch_cap * 2;
		if (cap < want)
			cap = want;
		uint8_t *p = realloc(d->scratch, cap);
		if (!p)
			abort();
		d->scratch = p;
		d->scratch_cap = cap;
	}
	return d->scratch + d->scratch_used;
}

/* A decoded name or value. Strings in scratch are kept as offsets until the field is
 * complete, since a later reservation may move scratch. */
struct hpack_str {
	const uint8_t *ptr;
	size_t off;
	size_t len;
	bool in_scratch;
	bool present; /* false: validated but too long to keep (see hpack_decode_string) */
};

static const uint8_t hpack_empty[1];

static void hpack_str_set(struct hpack_str *s, const uint8_t *ptr, size_t len)
{
	*s = (struct hpack_str){.ptr = len ? ptr : hpack_empty, .len = len, .present = true};
}

static void hpack_str_resolve(const struct hpack_decoder *d, struct hpack_str *s)
{
	if (s->in_scratch)
		s->ptr = s->len ? d->scratch + s->off : hpack_empty;
}

/* Reads a string literal at block[*pos]. A raw string stays in the block; a Huffman
 * string is decoded into scratch when its decoded length is at most room, else it is only
 * validated and s->present is false. Returns 0 or -HPACK_ECOMPRESSION (truncated length,
 * length past the end of the block, bad Huffman code). */
static int hpack_decode_string(struct hpack_decoder *d, const uint8_t *block, size_t len, size_t *pos, size_t room,
			       struct hpack_str *s)
{
	if (*pos >= len)
		return -HPACK_ECOMPRESSION;
	bool huffman = block[*pos] & 0x80;
	uint32_t n;
	ssize_t r = hpack_decode_int(block + *pos, len - *pos, 7, &n);
	if (r <= 0)
		return -HPACK_ECOMPRESSION;
	*pos += (size_t)r;
	if (n > len - *pos)
		return -HPACK_ECOMPRESSION;
	const uint8_t *src = block + *pos;
	*pos += n;
	if (!huffman) {
		hpack_str_set(s, src, n);
		return 0;
	}
	/* Every code is at least 5 bits; one octet more lets the branch-free loop run. */
	size_t cap = (size_t)n * 8 / 5 + 1;
	if (cap > room)
		cap = room;
	uint8_t *out = hpack_scratch_reserve(d, cap);
	ssize_t got = hpack_huffman_decode_core(out, cap, src, n);
	if (got == -HPACK_ENOSPC) {
		got = hpack_huffman_decode_core(NULL, 0, src, n);
		if (got < 0)
			return -HPACK_ECOMPRESSION;
		*s = (struct hpack_str){.len = (size_t)got, .present = false};
		return 0;
	}
	if (got < 0)
		return -HPACK_ECOMPRESSION;
	*s = (struct hpack_str){.off = d->scratch_used, .len = (size_t)got, .in_scratch = true, .present = true};
	d->scratch_used += (size_t)got;
	return 0;
}

/* Looks up index idx (RFC 7541 2.3.3). With want_value false only the name is produced.
 * A dynamic entry is pointed at in place unless it wraps around the ring or copy is set
 * (the caller is about to insert, which may evict it); then it is copied into scratch.
 * Returns 0 or -HPACK_ECOMPRESSION (index 0 or past the end of the table). */
static int hpack_table_lookup(struct hpack_decoder *d, uint32_t idx, bool want_value, bool copy, struct hpack_str *name,
			      struct hpack_str *value)
{
	if (idx == 0)
		return -HPACK_ECOMPRESSION;
	if (idx <= HPACK_STATIC_COUNT) {
		const struct hpack_static_entry *e = &hpack_static_table[idx - 1];
		hpack_str_set(name, (const uint8_t *)e->name, e->name_len);
		if (want_value)
			hpack_str_set(value, (const uint8_t *)e->value, e->value_len);
		return 0;
	}
	if (idx - HPACK_STATIC_COUNT > d->entries_count)
		return -HPACK_ECOMPRESSION;
	const struct hpack_entry *e = hpack_table_get(d, idx - HPACK_STATIC_COUNT);
	uint32_t n = e->name_len + (want_value ? e->value_len : 0);
	if (!copy && (uint64_t)e->off + n <= d->table_size_max) {
		hpack_str_set(name, d->data + e->off, e->name_len);
		if (want_value)
			hpack_str_set(value, d->data + e->off + e->name_len, e->value_len);
		return 0;
	}
	hpack_ring_read(d, e->off, hpack_scratch_reserve(d, n), n);
	*name = (struct hpack_str){.off = d->scratch_used, .len = e->name_len, .in_scratch = true, .present = true};
	if (want_value)
		*value = (struct hpack_str){.off = d->scratch_used + e->name_len,
					    .len = e->value_len,
					    .in_scratch = true,
					    .present = true};
	d->scratch_used += n;
	return 0;
}

/* Representations (RFC 7541 6), by their first octet:
 *   1xxxxxxx  indexed field                        index: 7-bit prefix
 *   01xxxxxx  literal with incremental indexing    name index: 6-bit prefix (0: new name)
 *   001xxxxx  dynamic table size update            max size: 5-bit prefix
 *   0001xxxx  literal never indexed                name index: 4-bit prefix
 *   0000xxxx  literal without indexing             name index: 4-bit prefix
 */
int hpack_decode_block(struct hpack_decoder *d, const uint8_t *block, size_t len, size_t header_list_max,
		       hpack_field_fn fn, void *arg)
{
	size_t pos = 0;
	size_t list_size = 0; /* <= header_list_max */
	bool fields_seen = false;
	bool too_large = false;
	int rc = -HPACK_ECOMPRESSION;

	if (d->bad)
		return -HPACK_ECOMPRESSION;
	while (pos < len) {
		uint8_t b = block[pos];
		uint32_t v;
		ssize_t r;
		struct hpack_str name, value;

		if ((b & 0xe0) == 0x20) {
			/* RFC 7541 4.2: only at the start of a block, never above our setting. */
			if (fields_seen)
				goto fail;
			r = hpack_decode_int(block + pos, len - pos, 5, &v);
			if (r <= 0 || v > d->table_size_max)
				goto fail;
			pos += (size_t)r;
			d->table_size_limit = v;
			hpack_table_evict(d, v);
			continue;
		}
		fields_seen = true;
		d->scratch_used = 0;
		size_t emit_room = too_large ? 0 : header_list_max - list_size;

		if (b & 0x80) {
			r = hpack_decode_int(block + pos, len - pos, 7, &v);
			if (r <= 0)
				goto fail;
			pos += (size_t)r;
			if (too_large) { /* nothing will be delivered: only check the index */
				if (v == 0 || v > HPACK_STATIC_COUNT + d->entries_count)
					goto fail;
				continue;
			}
			if (hpack_table_lookup(d, v, true, false, &name, &value) < 0)
				goto fail;
		} else {
			bool indexing = (b & 0xc0) == 0x40;
			r = hpack_decode_int(block + pos, len - pos, indexing ? 6 : 4, &v);
			if (r <= 0)
				goto fail;
			pos += (size_t)r;
			size_t room = emit_room;
			if (indexing && room < d->table_size_limit)
				room = d->table_size_limit;
			if (v == 0) {
				if (hpack_decode_string(d, block, len, &pos, room, &name) < 0)
					goto fail;
			} else if (hpack_table_lookup(d, v, false, indexing, &name, NULL) < 0) {
				goto fail;
			}
			if (hpack_decode_string(d, block, len, &pos, room, &value) < 0)
				goto fail;
			if (indexing) {
				hpack_str_resolve(d, &name);
				hpack_str_resolve(d, &value);
				/* A string not kept is longer than the table: the insert only empties it. */
				if (name.present && value.present)
					hpack_table_insert(d, name.ptr, name.len, value.ptr, value.len);
				else
					hpack_table_evict(d, 0);
			}
		}
		hpack_str_resolve(d, &name);
		hpack_str_resolve(d, &value);

		if (too_large)
			continue;
		/* RFC 7540 6.5.2: name + value + 32 per field. */
		if (!name.present || !value.present ||
		    (uint64_t)name.len + value.len + HPACK_ENTRY_OVERHEAD > header_list_max - list_size) {
			too_large = true;
			continue;
		}
		list_size += name.len + value.len + HPACK_ENTRY_OVERHEAD;
		if (fn) {
			int cb = fn(arg, name.ptr, name.len, value.ptr, value.len);
			if (cb != 0) {
				rc = cb;
				goto fail;
			}
		}
	}
	return too_large ? -HPACK_ETOOLARGE : 0;
fail:
	d->bad = true;
	return rc;
}

/* ---- encoder ---- */

/* Returns the static index of a full match (*full set) or of the first entry with the
 * name, or 0. Entries with one name are adjacent in the static table. */
static uint32_t hpack_static_find(const char *name, size_t name_len, const char *value, size_t value_len, bool *full)
{
	uint32_t name_idx = 0;
	*full = false;
	for (uint32_t i = 0; i < HPACK_STATIC_COUNT; i++) {
		const struct hpack_static_entry *e = &hpack_static_table[i];
		if (e->name_len != name_len || (name_len && memcmp(e->name, name, name_len) != 0)) {
			if (name_idx)
				break;
			continue;
		}
		if (!name_idx)
			name_idx = i + 1;
		if (e->value_len == value_len && (value_len == 0 || memcmp(e->value, value, value_len) == 0)) {
			*full = true;
			return i + 1;
		}
	}
	return name_idx;
}

/* A string literal, Huffman-coded when that is strictly shorter. */
static ssize_t hpack_encode_string(uint8_t *out, size_t cap, const uint8_t *s, size_t len)
{
	size_t huff_len = hpack_huffman_encoded_len(s, len);
	bool huffman = huff_len < len;
	size_t n = huffman ? huff_len : len;
	ssize_t r = hpack_encode_int(out, cap, huffman ? 0x80 : 0, 7, n);
	if (r < 0)
		return r;
	if (cap - (size_t)r < n)
		return -HPACK_ENOSPC;
	if (huffman)
		hpack_huffman_encode_unchecked(out + r, s, len);
	else if (n)
		memcpy(out + r, s, n);
	return r + (ssize_t)n;
}

/* out[0..cap) may be scribbled on even when -HPACK_ENOSPC is returned; the caller
 * advances only by a positive result. */
ssize_t hpack_encode_field(uint8_t *out, size_t cap, const char *name, size_t name_len, const char *value,
			   size_t value_len, int flags)
{
	bool full;
	uint32_t idx = hpack_static_find(name, name_len, value, value_len, &full);
	if (full)
		return hpack_encode_int(out, cap, 0x80, 7, idx);

	size_t n;
	ssize_t r = hpack_encode_int(out, cap, (flags & HPACK_NEVER_INDEX) ? 0x10 : 0x00, 4, idx);
	if (r < 0)
		return r;
	n = (size_t)r;
	if (idx == 0) {
		r = hpack_encode_string(out + n, cap - n, (const uint8_t *)name, name_len);
		if (r < 0)
			return r;
		n += (size_t)r;
	}
	r = hpack_encode_string(out + n, cap - n, (const uint8_t *)value, value_len);
	if (r < 0)
		return r;
	return (ssize_t)(n + (size_t)r);
}
