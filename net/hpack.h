/* HPACK (RFC 7541): header compression for HTTP/2, sans-I/O.
 *
 * The decoder keeps the connection's dynamic table; once it reports a compression error
 * its state is broken and it refuses every later block (the connection must end with
 * COMPRESSION_ERROR). The encoder is stateless by design: it emits static-table indexes and
 * literals without indexing, so the peer's dynamic table is never touched and nothing
 * about it needs tracking — response header sets are small and repetitive enough that
 * Huffman coding alone is worth it.
 *
 * Limits: the dynamic table never exceeds the size we advertised (SETTINGS_HEADER_TABLE_SIZE);
 * a decoded header list larger than `header_list_max` (name + value + 32 per field, as
 * SETTINGS_MAX_HEADER_LIST_SIZE counts) is reported as HPACK_ETOOLARGE after the whole block
 * was still decoded, so that the table state stays in step with the peer's.
 */
#ifndef UETCD_NET_HPACK_H
#define UETCD_NET_HPACK_H

#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

enum {
	HPACK_ECOMPRESSION = 1, /* malformed block or broken decoder: connection error */
	HPACK_ETOOLARGE = 2,    /* header list over the limit: the stream, not the connection */
	HPACK_ENOSPC = 3,       /* encoder: output buffer too small */
};

struct hpack_decoder;

/* The table size we advertise in SETTINGS_HEADER_TABLE_SIZE (4096 is HTTP/2's default).
 * All table memory is allocated here (about 1.4 * table_size_max + 4 KiB of scratch).
 * Returns NULL when out of memory or when table_size_max exceeds 16 MiB. A dynamic table
 * size update from the peer above table_size_max is a compression error. */
struct hpack_decoder *hpack_decoder_new(uint32_t table_size_max);
void hpack_decoder_free(struct hpack_decoder *d);

/* Called once per decoded field. name and value are valid only during the call and are
 * not NUL-terminated. A non-zero return stops decoding and is returned by
 * hpack_decode_block (the decoder is then broken). */
typedef int (*hpack_field_fn)(void *arg, const uint8_t *name, size_t name_len, const uint8_t *value,
			      size_t value_len);

/* Decodes one complete header block (HEADERS plus any CONTINUATION payloads, joined).
 * Returns 0, -HPACK_ECOMPRESSION, -HPACK_ETOOLARGE, or the callback's non-zero result.
 * On -HPACK_ETOOLARGE the fields that fitted were delivered and the rest were not, but
 * the whole block was decoded and the decoder stays usable. A single name or value longer
 * than header_list_max is therefore TOOLARGE, not COMPRESSION (it is valid HPACK).
 * Decoding allocates nothing once the scratch space has grown to the largest field seen
 * (bounded by a small multiple of max(header_list_max, table_size_max)); fn may be NULL. */
int hpack_decode_block(struct hpack_decoder *d, const uint8_t *block, size_t len, size_t header_list_max,
		       hpack_field_fn fn, void *arg);

/* Flags for hpack_encode_field. */
enum {
	HPACK_NEVER_INDEX = 1, /* literal never indexed (for secrets such as tokens) */
};

/* Appends one field to out[0..cap). Uses a static-table index for a full match (even
 * with HPACK_NEVER_INDEX: a static value is no secret), else a literal without indexing
 * (never indexed with HPACK_NEVER_INDEX) naming the static entry where only the name
 * matches, else a literal with a new name; strings are Huffman-coded where strictly
 * shorter. Returns bytes written or -HPACK_ENOSPC (nothing counts as written, though
 * out[0..cap) may have been overwritten). */
ssize_t hpack_encode_field(uint8_t *out, size_t cap, const char *name, size_t name_len, const char *value,
			   size_t value_len, int flags);

/* Integer and string primitives (RFC 7541 5.1, 5.2), exposed for tests and for callers
 * that encode header blocks by hand. prefix_bits is 1..8; encode keeps the bits of
 * first_byte_flags above the prefix. decode returns bytes consumed, 0 if more bytes are
 * needed, or -HPACK_ECOMPRESSION on overflow (values above 2^32-1, or more than 5
 * continuation octets, are refused). */
ssize_t hpack_encode_int(uint8_t *out, size_t cap, uint8_t first_byte_flags, int prefix_bits, uint64_t value);
ssize_t hpack_decode_int(const uint8_t *in, size_t len, int prefix_bits, uint32_t *value);
/* Huffman: encoded length of src, encode into out (returns bytes or -HPACK_ENOSPC,
 * nothing written), and decode (returns bytes written or -HPACK_ECOMPRESSION for EOS in
 * the string, padding longer than 7 bits or not all ones, or a result longer than cap;
 * len * 8 / 5 is always enough; out may be NULL to validate and count only). */
size_t hpack_huffman_encoded_len(const uint8_t *src, size_t len);
ssize_t hpack_huffman_encode(uint8_t *out, size_t cap, const uint8_t *src, size_t len);
ssize_t hpack_huffman_decode(uint8_t *out, size_t cap, const uint8_t *src, size_t len);

#endif
