/* libFuzzer target for HPACK. Input layout:
 *   byte 0      table size: odd -> 4096, even -> (b >> 1) * 4 (0..508, to force eviction)
 *   byte 1      header_list_max: >= 0x80 -> 1 MiB, else b * 16
 *   then blocks, each a length octet and that many octets (the last may be short)
 * Every block is decoded by one decoder with the chosen sizes and by one with 4096, so
 * the dynamic table carries state across blocks. Checks: delivered fields stay within
 * header_list_max and are readable, a compression error is sticky. Then the whole input
 * is Huffman-decoded (a valid string must re-encode to exactly the same octets: the code
 * and its padding rule leave no choice), and read as name/value pairs that are encoded
 * and decoded back, which must reproduce them. Any mismatch aborts. */
#include "net/hpack.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct list_check {
	size_t list_size;
	size_t list_max;
	unsigned sum;
};

static int on_field(void *arg, const uint8_t *name, size_t name_len, const uint8_t *value, size_t value_len)
{
	struct list_check *c = arg;
	for (size_t i = 0; i < name_len; i++)
		c->sum += name[i];
	for (size_t i = 0; i < value_len; i++)
		c->sum += value[i];
	c->list_size += name_len + value_len + 32;
	if (c->list_size > c->list_max)
		abort();
	return 0;
}

static void decode_blocks(uint32_t table_size, size_t list_max, const uint8_t *data, size_t size)
{
	struct hpack_decoder *d = hpack_decoder_new(table_size);
	if (!d)
		abort();
	bool broken = false;
	size_t pos = 0;
	while (pos < size) {
		size_t len = data[pos++];
		if (len > size - pos)
			len = size - pos;
		struct list_check c = {0, list_max, 0};
		int r = hpack_decode_block(d, data + pos, len, list_max, on_field, &c);
		if (broken && r != -HPACK_ECOMPRESSION)
			abort();
		if (r == -HPACK_ECOMPRESSION)
			broken = true;
		else if (r != 0 && r != -HPACK_ETOOLARGE)
			abort();
		pos += len;
	}
	hpack_decoder_free(d);
}

static void huffman_check(const uint8_t *data, size_t size)
{
	static uint8_t out[(1 << 16) * 8 / 5 + 8], again[1 << 16];
	if (size > (1 << 16))
		return;
	ssize_t n = hpack_huffman_decode(out, sizeof(out), data, size);
	if (n == -HPACK_ECOMPRESSION)
		return;
	if (n < 0 || (size_t)n > size * 8 / 5)
		abort();
	if (hpack_huffman_decode(NULL, 0, data, size) != n)
		abort();
	if (hpack_huffman_encoded_len(out, (size_t)n) != size)
		abort();
	if (hpack_huffman_encode(again, sizeof(again), out, (size_t)n) != (ssize_t)size)
		abort();
	if (memcmp(again, data, size) != 0)
		abort();
}

#define PAIRS_MAX 32

struct round_trip {
	const uint8_t *name[PAIRS_MAX], *value[PAIRS_MAX];
	size_t name_len[PAIRS_MAX], value_len[PAIRS_MAX];
	size_t n, seen;
};

static int on_round_trip_field(void *arg, const uint8_t *name, size_t name_len, const uint8_t *value,
			       size_t value_len)
{
	struct round_trip *rt = arg;
	size_t i = rt->seen++;
	if (i >= rt->n || name_len != rt->name_len[i] || value_len != rt->value_len[i] ||
	    (name_len && memcmp(name, rt->name[i], name_len) != 0) ||
	    (value_len && memcmp(value, rt->value[i], value_len) != 0))
		abort();
	return 0;
}

static void round_trip_check(const uint8_t *data, size_t size)
{
	static uint8_t block[1 << 17];
	struct round_trip rt = {.n = 0};
	size_t pos = 0, blen = 0;
	while (pos + 2 <= size && rt.n < PAIRS_MAX) {
		size_t nl = data[pos] % 48, vl = data[pos + 1];
		int flags = data[pos] >= 0x80 ? HPACK_NEVER_INDEX : 0;
		pos += 2;
		if (nl > size - pos)
			nl = size - pos;
		rt.name[rt.n] = data + pos;
		rt.name_len[rt.n] = nl;
		pos += nl;
		if (vl > size - pos)
			vl = size - pos;
		rt.value[rt.n] = data + pos;
		rt.value_len[rt.n] = vl;
		pos += vl;
		ssize_t w = hpack_encode_field(block + blen, sizeof(block) - blen, (const char *)rt.name[rt.n], nl,
					       (const char *)rt.value[rt.n], vl, flags);
		if (w <= 0)
			abort();
		/* A capacity one short must be refused. */
		if (hpack_encode_field(block + blen, (size_t)w - 1, (const char *)rt.name[rt.n], nl,
				       (const char *)rt.value[rt.n], vl, flags) != -HPACK_ENOSPC)
			abort();
		blen += (size_t)w;
		rt.n++;
	}
	struct hpack_decoder *d = hpack_decoder_new(4096);
	if (!d)
		abort();
	if (hpack_decode_block(d, block, blen, SIZE_MAX, on_round_trip_field, &rt) != 0 || rt.seen != rt.n)
		abort();
	hpack_decoder_free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size >= 2) {
		uint32_t table_size = (data[0] & 1) ? 4096 : (uint32_t)(data[0] >> 1) * 4;
		size_t list_max = data[1] >= 0x80 ? (size_t)1 << 20 : (size_t)data[1] * 16;
		decode_blocks(table_size, list_max, data + 2, size - 2);
		decode_blocks(4096, (size_t)1 << 20, data + 2, size - 2);
	}
	huffman_check(data, size);
	round_trip_check(data, size);
	return 0;
}
