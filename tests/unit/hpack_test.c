/* HPACK unit tests: every RFC 7541 Appendix C example field by field with the dynamic
 * table checked after each block, Huffman code and round trips, each error path, the
 * header list limit, the encoder, and a randomized model check of the ring buffer.
 * The .c is included to reach the dynamic table (STYLE.md allows this for tests). */
#include "net/hpack.c"

#include <criterion/criterion.h>
#include <stdio.h>

/* ---- helpers ---- */

#define FIELDS_MAX 64

struct field {
	char *name;
	size_t name_len;
	char *value;
	size_t value_len;
};

struct fields {
	struct field f[FIELDS_MAX];
	size_t n;
	int fail_at; /* return -99 from the callback for this field (1-based), 0: never */
};

static int collect(void *arg, const uint8_t *name, size_t name_len, const uint8_t *value, size_t value_len)
{
	struct fields *fs = arg;
	cr_assert(fs->n < FIELDS_MAX);
	struct field *f = &fs->f[fs->n++];
	f->name = malloc(name_len + 1);
	f->value = malloc(value_len + 1);
	memcpy(f->name, name, name_len);
	memcpy(f->value, value, value_len);
	f->name[name_len] = 0;
	f->value[value_len] = 0;
	f->name_len = name_len;
	f->value_len = value_len;
	if (fs->fail_at && (size_t)fs->fail_at == fs->n)
		return -99;
	return 0;
}

static void fields_reset(struct fields *fs)
{
	for (size_t i = 0; i < fs->n; i++) {
		free(fs->f[i].name);
		free(fs->f[i].value);
	}
	memset(fs, 0, sizeof(*fs));
}

/* Parses RFC-style hex ("8286 8441 ...") into out; returns the length. */
static size_t unhex(const char *s, uint8_t *out, size_t cap)
{
	size_t n = 0;
	int hi = -1;
	for (; *s; s++) {
		int v;
		if (*s >= '0' && *s <= '9')
			v = *s - '0';
		else if (*s >= 'a' && *s <= 'f')
			v = *s - 'a' + 10;
		else
			continue;
		if (hi < 0) {
			hi = v;
		} else {
			cr_assert(n < cap);
			out[n++] = (uint8_t)(hi << 4 | v);
			hi = -1;
		}
	}
	cr_assert(hi < 0);
	return n;
}

struct pair {
	const char *name;
	const char *value;
};

static void expect_fields(const struct fields *fs, const struct pair *want, size_t n)
{
	cr_assert_eq(fs->n, n, "got %zu fields, want %zu", fs->n, n);
	for (size_t i = 0; i < n; i++) {
		cr_expect_eq(fs->f[i].name_len, strlen(want[i].name));
		cr_expect_str_eq(fs->f[i].name, want[i].name, "field %zu", i);
		cr_expect_eq(fs->f[i].value_len, strlen(want[i].value));
		cr_expect_str_eq(fs->f[i].value, want[i].value, "field %zu", i);
	}
}

/* Checks the dynamic table, newest first, and its RFC 7541 4.1 size. */
static void expect_table(const struct hpack_decoder *d, const struct pair *want, size_t n, uint32_t size)
{
	cr_assert_eq(d->entries_count, n, "table has %u entries, want %zu", d->entries_count, n);
	cr_expect_eq(d->table_size, size, "table size %u, want %u", d->table_size, size);
	uint32_t sum = 0;
	for (size_t i = 0; i < n; i++) {
		const struct hpack_entry *e = hpack_table_get(d, (uint32_t)i + 1);
		char buf[512];
		cr_assert(e->name_len + e->value_len < sizeof(buf));
		hpack_ring_read(d, e->off, (uint8_t *)buf, e->name_len + e->value_len);
		cr_expect_eq(e->name_len, strlen(want[i].name), "entry %zu", i);
		cr_expect(memcmp(buf, want[i].name, e->name_len) == 0, "entry %zu name", i);
		cr_expect_eq(e->value_len, strlen(want[i].value), "entry %zu", i);
		cr_expect(memcmp(buf + e->name_len, want[i].value, e->value_len) == 0, "entry %zu value", i);
		sum += 32 + e->name_len + e->value_len;
	}
	cr_expect_eq(sum, d->table_size);
}

static int decode_hex(struct hpack_decoder *d, const char *hex, size_t header_list_max, struct fields *fs)
{
	uint8_t buf[1024];
	size_t n = unhex(hex, buf, sizeof(buf));
	return hpack_decode_block(d, buf, n, header_list_max, collect, fs);
}

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;
static uint64_t rng(void)
{
	rng_state ^= rng_state << 13;
	rng_state ^= rng_state >> 7;
	rng_state ^= rng_state << 17;
	return rng_state;
}

#define N(a) (sizeof(a) / sizeof((a)[0]))

/* ---- Huffman code table ---- */

/* Decodes src three ways (branch-free loop with a roomy output, checked loop with an
 * output of exactly want_len octets, count only) and checks that they agree. */
static ssize_t huff_decode_all_ways(const uint8_t *src, size_t len, size_t want_len)
{
	static uint8_t roomy[4096], exact[4096];
	cr_assert_lt(len, sizeof(roomy) * 5 / 8);
	ssize_t a = hpack_huffman_decode(roomy, sizeof(roomy), src, len);
	ssize_t b = hpack_huffman_decode(exact, want_len, src, len);
	ssize_t c = hpack_huffman_decode(NULL, 0, src, len);
	cr_assert_eq(a, b, "fast %zd, checked %zd", a, b);
	cr_assert_eq(a, c, "fast %zd, count %zd", a, c);
	if (a > 0)
		cr_assert(memcmp(roomy, exact, (size_t)a) == 0);
	return a;
}

Test(hpack_huffman, table_is_canonical_and_complete)
{
	/* Re-derive every code from the lengths alone: canonical Huffman assigns consecutive
	 * codes in (length, symbol) order. This checks the transcription of both columns. */
	uint32_t code = 0;
	int prev_bits = 0;
	uint64_t kraft = 0;
	for (int bits = 1; bits <= HPACK_HUFFMAN_BITS_MAX; bits++) {
		for (int sym = 0; sym < HPACK_HUFFMAN_SYMBOLS; sym++) {
			if (hpack_huffman_codes[sym].bits != bits)
				continue;
			if (prev_bits)
				code = (code + 1) << (bits - prev_bits);
			prev_bits = bits;
			cr_expect_eq(hpack_huffman_codes[sym].code, code, "symbol %d", sym);
			kraft += (uint64_t)1 << (HPACK_HUFFMAN_BITS_MAX - bits);
		}
	}
	cr_expect_eq(kraft, (uint64_t)1 << HPACK_HUFFMAN_BITS_MAX, "code is not complete");
	cr_expect_eq(hpack_huffman_codes[HPACK_HUFFMAN_EOS].code, 0x3fffffff);
	cr_expect_eq(hpack_huffman_codes[HPACK_HUFFMAN_EOS].bits, 30);
	hpack_huffman_init(); /* aborts if the code tree is not complete and prefix-free */
}

Test(hpack_huffman, rfc_strings)
{
	static const struct {
		const char *text;
		const char *hex;
	} cases[] = {
		{"www.example.com", "f1e3 c2e5 f23a 6ba0 ab90 f4ff"},
		{"no-cache", "a8eb 1064 9cbf"},
		{"custom-key", "25a8 49e9 5ba9 7d7f"},
		{"custom-value", "25a8 49e9 5bb8 e8b4 bf"},
		{"302", "6402"},
		{"private", "aec3 771a 4b"},
		{"Mon, 21 Oct 2013 20:13:21 GMT", "d07a be94 1054 d444 a820 0595 040b 8166 e082 a62d 1bff"},
		{"https://www.example.com", "9d29 ad17 1863 c78f 0b97 c8e9 ae82 ae43 d3"},
		{"", ""},
	};
	for (size_t i = 0; i < N(cases); i++) {
		uint8_t want[64], got[64];
		size_t n = unhex(cases[i].hex, want, sizeof(want));
		size_t len = strlen(cases[i].text);
		cr_expect_eq(hpack_huffman_encoded_len((const uint8_t *)cases[i].text, len), n, "%s", cases[i].text);
		ssize_t r = hpack_huffman_encode(got, sizeof(got), (const uint8_t *)cases[i].text, len);
		cr_assert_eq(r, (ssize_t)n, "%s", cases[i].text);
		cr_expect(memcmp(got, want, n) == 0, "%s", cases[i].text);
		r = hpack_huffman_decode(got, sizeof(got), want, n);
		cr_assert_eq(r, (ssize_t)len, "%s", cases[i].text);
		cr_expect(memcmp(got, cases[i].text, len) == 0, "%s", cases[i].text);
		cr_expect_eq(hpack_huffman_decode(NULL, 0, want, n), (ssize_t)len);
	}
}

Test(hpack_huffman, random_round_trips)
{
	uint8_t src[600], enc[600 * 4], dec[600];
	for (int iter = 0; iter < 3000; iter++) {
		size_t len = rng() % sizeof(src);
		int mode = iter % 3; /* all bytes, printable only, a few symbols */
		for (size_t i = 0; i < len; i++) {
			uint64_t r = rng();
			src[i] = mode == 0 ? (uint8_t)r : mode == 1 ? (uint8_t)(32 + r % 95) : (uint8_t)("ae0\xff\x01"[r % 5]);
		}
		size_t elen = hpack_huffman_encoded_len(src, len);
		cr_assert_leq(elen, sizeof(enc));
		cr_assert_eq(hpack_huffman_encode(enc, sizeof(enc), src, len), (ssize_t)elen);
		cr_assert_eq(hpack_huffman_decode(dec, sizeof(dec), enc, elen), (ssize_t)len, "iter %d", iter);
		cr_assert_eq(huff_decode_all_ways(enc, elen, len), (ssize_t)len, "iter %d", iter);
		cr_assert(len == 0 || memcmp(src, dec, len) == 0, "iter %d", iter);
		if (elen > 0) {
			/* One byte short is not enough to encode; truncating the input by a byte
			 * never yields the original. */
			cr_assert_eq(hpack_huffman_encode(enc, elen - 1, src, len), -HPACK_ENOSPC);
			ssize_t r = hpack_huffman_decode(dec, sizeof(dec), enc, elen - 1);
			cr_assert(r != (ssize_t)len, "iter %d", iter);
		}
		if (len > 0)
			cr_assert_eq(hpack_huffman_decode(dec, len - 1, enc, elen), -HPACK_ECOMPRESSION);
	}
}

Test(hpack_huffman, every_symbol_decodes_with_every_padding)
{
	for (int sym = 0; sym < 256; sym++) {
		uint8_t s = (uint8_t)sym, enc[8], dec[8];
		ssize_t n = hpack_huffman_encode(enc, sizeof(enc), &s, 1);
		cr_assert_gt(n, 0);
		cr_assert_eq(hpack_huffman_decode(dec, sizeof(dec), enc, (size_t)n), 1);
		cr_assert_eq(dec[0], s);
	}
}

Test(hpack_huffman, bad_padding_and_eos)
{
	uint8_t out[16];
	static const struct {
		const char *hex;
		ssize_t want;
	} cases[] = {
		{"1f", 1},		     /* 'a' + 111 */
		{"18", -HPACK_ECOMPRESSION}, /* 'a' + 000 */
		{"1e", -HPACK_ECOMPRESSION}, /* 'a' + 110 */
		{"ff", -HPACK_ECOMPRESSION}, /* 8 bits of padding */
		{"1fff", -HPACK_ECOMPRESSION},
		{"ffff", -HPACK_ECOMPRESSION},
		{"ffff fffc", -HPACK_ECOMPRESSION}, /* EOS */
		{"ffff ffff", -HPACK_ECOMPRESSION},
		{"1fff ffff e0", -HPACK_ECOMPRESSION}, /* 'a' EOS 00000 */
		{"1fff ffff ff", -HPACK_ECOMPRESSION}, /* 'a' EOS 11111 */
		{"ffff fe2f", 1},		     /* symbol 2 (28 bits) + 1111 */
		{"ffff fe2e", -HPACK_ECOMPRESSION},  /* symbol 2 (28 bits) + 1110 */
		{"1f1f", 2},			     /* 00011 1110001 1111: "aV" + padding */
		{"18c6 3f", 4},			     /* 'a' x 4 = 20 bits + 1111 */
	};
	for (size_t i = 0; i < N(cases); i++) {
		uint8_t src[16];
		size_t n = unhex(cases[i].hex, src, sizeof(src));
		cr_expect_eq(huff_decode_all_ways(src, n, cases[i].want > 0 ? (size_t)cases[i].want : 8), cases[i].want,
			     "case %s", cases[i].hex);
	}
	/* 'a' is 00011: padding 111 is valid, 000 is not (not a prefix of EOS). */
	cr_expect_eq(hpack_huffman_decode(out, sizeof(out), (const uint8_t[]){0x1f}, 1), 1);
	cr_expect_eq(out[0], 'a');
	cr_expect_eq(hpack_huffman_decode(out, sizeof(out), (const uint8_t[]){0x18}, 1), -HPACK_ECOMPRESSION);
	cr_expect_eq(hpack_huffman_decode(out, sizeof(out), (const uint8_t[]){0x1e}, 1), -HPACK_ECOMPRESSION);
	/* Padding of 8 or more ones. */
	cr_expect_eq(hpack_huffman_decode(out, sizeof(out), (const uint8_t[]){0xff}, 1), -HPACK_ECOMPRESSION);
	cr_expect_eq(hpack_huffman_decode(out, sizeof(out), (const uint8_t[]){0x1f, 0xff}, 2), -HPACK_ECOMPRESSION);
	cr_expect_eq(hpack_huffman_decode(out, sizeof(out), (const uint8_t[]){0xff, 0xff}, 2), -HPACK_ECOMPRESSION);
	/* EOS (30 ones) inside the string, alone or after a symbol. */
	cr_expect_eq(hpack_huffman_decode(out, sizeof(out), (const uint8_t[]){0xff, 0xff, 0xff, 0xfc}, 4),
		     -HPACK_ECOMPRESSION);
	cr_expect_eq(hpack_huffman_decode(out, sizeof(out), (const uint8_t[]){0xff, 0xff, 0xff, 0xff}, 4),
		     -HPACK_ECOMPRESSION);
	/* 'a' (00011) then EOS then padding: 00011111 11111111 11111111 11111111 11100000 */
	cr_expect_eq(hpack_huffman_decode(NULL, 0, (const uint8_t[]){0x1f, 0xff, 0xff, 0xff, 0xe0}, 5),
		     -HPACK_ECOMPRESSION);
	/* A 28-bit code followed by 4 bits of padding is fine: symbol 2 = fffffe2. */
	cr_expect_eq(hpack_huffman_decode(out, sizeof(out), (const uint8_t[]){0xff, 0xff, 0xfe, 0x2f}, 4), 1);
	cr_expect_eq(out[0], 2);
	/* Output too small. */
	cr_expect_eq(hpack_huffman_decode(out, 0, (const uint8_t[]){0x1f}, 1), -HPACK_ECOMPRESSION);
}

/* ---- integers (C.1) ---- */

Test(hpack_int, rfc_c1)
{
	uint8_t out[8];
	uint32_t v;
	/* C.1.1: 10 with a 5-bit prefix. */
	cr_assert_eq(hpack_encode_int(out, sizeof(out), 0xe0, 5, 10), 1);
	cr_expect_eq(out[0], 0xea);
	cr_expect_eq(hpack_decode_int(out, 1, 5, &v), 1);
	cr_expect_eq(v, 10);
	/* C.1.2: 1337 with a 5-bit prefix: 1f 9a 0a. */
	cr_assert_eq(hpack_encode_int(out, sizeof(out), 0, 5, 1337), 3);
	cr_expect(memcmp(out, "\x1f\x9a\x0a", 3) == 0);
	cr_expect_eq(hpack_decode_int(out, 3, 5, &v), 3);
	cr_expect_eq(v, 1337);
	cr_expect_eq(hpack_decode_int(out, 2, 5, &v), 0, "need more bytes");
	cr_expect_eq(hpack_decode_int(out, 1, 5, &v), 0, "need more bytes");
	cr_expect_eq(hpack_decode_int(out, 0, 5, &v), 0, "need more bytes");
	/* C.1.3: 42 starting at an octet boundary. */
	cr_assert_eq(hpack_encode_int(out, sizeof(out), 0, 8, 42), 1);
	cr_expect_eq(out[0], 42);
	cr_expect_eq(hpack_decode_int(out, 1, 8, &v), 1);
	cr_expect_eq(v, 42);
	/* Exactly 2^N-1 needs a zero continuation octet. */
	cr_assert_eq(hpack_encode_int(out, sizeof(out), 0, 5, 31), 2);
	cr_expect(memcmp(out, "\x1f\x00", 2) == 0);
	cr_expect_eq(hpack_encode_int(out, 1, 0, 5, 31), -HPACK_ENOSPC);
	cr_expect_eq(hpack_encode_int(out, 0, 0, 5, 1), -HPACK_ENOSPC);
}

Test(hpack_int, limits_and_overflow)
{
	uint8_t out[16];
	uint32_t v = 0;
	for (int prefix = 1; prefix <= 8; prefix++) {
		for (int i = 0; i < 2000; i++) {
			uint64_t x = i < 1000 ? (uint64_t)i : (rng() & 0xffffffffu);
			ssize_t n = hpack_encode_int(out, sizeof(out), 0, prefix, x);
			cr_assert_gt(n, 0);
			cr_assert_eq(hpack_decode_int(out, (size_t)n, prefix, &v), n);
			cr_assert_eq(v, x);
			for (ssize_t k = 0; k < n; k++)
				cr_assert_eq(hpack_decode_int(out, (size_t)k, prefix, &v), 0);
		}
		/* 2^32-1 is the largest value accepted, 2^32 is refused. */
		ssize_t n = hpack_encode_int(out, sizeof(out), 0, prefix, UINT32_MAX);
		cr_assert_eq(hpack_decode_int(out, (size_t)n, prefix, &v), n);
		cr_assert_eq(v, UINT32_MAX);
		n = hpack_encode_int(out, sizeof(out), 0, prefix, (uint64_t)UINT32_MAX + 1);
		cr_assert_eq(hpack_decode_int(out, (size_t)n, prefix, &v), -HPACK_ECOMPRESSION, "prefix %d", prefix);
	}
	/* Huge values, and over-long encodings even of small values. */
	static const uint8_t big[] = {0x1f, 0xff, 0xff, 0xff, 0xff, 0x0f};
	cr_expect_eq(hpack_decode_int(big, sizeof(big), 5, &v), -HPACK_ECOMPRESSION);
	static const uint8_t big2[] = {0x1f, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01};
	cr_expect_eq(hpack_decode_int(big2, sizeof(big2), 5, &v), -HPACK_ECOMPRESSION);
	static const uint8_t padded[] = {0x1f, 0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
	cr_expect_eq(hpack_decode_int(padded, sizeof(padded), 5, &v), -HPACK_ECOMPRESSION);
	cr_expect_eq(hpack_decode_int(padded, 6, 5, &v), -HPACK_ECOMPRESSION, "known bad before the end");
	static const uint8_t padded_ok[] = {0x1f, 0x80, 0x80, 0x80, 0x80, 0x00};
	cr_expect_eq(hpack_decode_int(padded_ok, sizeof(padded_ok), 5, &v), 6);
	cr_expect_eq(v, 31);
	/* Flags above the prefix are kept. */
	cr_assert_eq(hpack_encode_int(out, sizeof(out), 0x40, 6, 3), 1);
	cr_expect_eq(out[0], 0x43);
}

/* ---- Appendix C.2: literal and indexed fields, each on a fresh decoder ---- */

Test(hpack_rfc, c2_1_literal_with_indexing)
{
	struct hpack_decoder *d = hpack_decoder_new(4096);
	struct fields fs = {0};
	cr_assert_eq(decode_hex(d, "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572", 65536, &fs), 0);
	static const struct pair want[] = {{"custom-key", "custom-header"}};
	expect_fields(&fs, want, 1);
	expect_table(d, want, 1, 55);
	fields_reset(&fs);
	hpack_decoder_free(d);
}

Test(hpack_rfc, c2_2_literal_without_indexing)
{
	struct hpack_decoder *d = hpack_decoder_new(4096);
	struct fields fs = {0};
	cr_assert_eq(decode_hex(d, "040c 2f73 616d 706c 652f 7061 7468", 65536, &fs), 0);
	static const struct pair want[] = {{":path", "/sample/path"}};
	expect_fields(&fs, want, 1);
	expect_table(d, NULL, 0, 0);
	fields_reset(&fs);
	hpack_decoder_free(d);
}

Test(hpack_rfc, c2_3_literal_never_indexed)
{
	struct hpack_decoder *d = hpack_decoder_new(4096);
	struct fields fs = {0};
	cr_assert_eq(decode_hex(d, "1008 7061 7373 776f 7264 0673 6563 7265 74", 65536, &fs), 0);
	static const struct pair want[] = {{"password", "secret"}};
	expect_fields(&fs, want, 1);
	expect_table(d, NULL, 0, 0);
	fields_reset(&fs);
	hpack_decoder_free(d);
}

Test(hpack_rfc, c2_4_indexed)
{
	struct hpack_decoder *d = hpack_decoder_new(4096);
	struct fields fs = {0};
	cr_assert_eq(decode_hex(d, "82", 65536, &fs), 0);
	static const struct pair want[] = {{":method", "GET"}};
	expect_fields(&fs, want, 1);
	expect_table(d, NULL, 0, 0);
	fields_reset(&fs);
	hpack_decoder_free(d);
}

/* ---- Appendix C.3 - C.6: sequences on one decoder ---- */

struct rfc_step {
	const char *hex;
	struct pair fields[8];
	size_t nfields;
	struct pair table[8];
	size_t ntable;
	uint32_t table_size;
};

static void run_steps(uint32_t table_size_max, const struct rfc_step *steps, size_t nsteps)
{
	struct hpack_decoder *d = hpack_decoder_new(table_size_max);
	cr_assert_not_null(d);
	for (size_t i = 0; i < nsteps; i++) {
		struct fields fs = {0};
		cr_assert_eq(decode_hex(d, steps[i].hex, 65536, &fs), 0, "step %zu", i);
		expect_fields(&fs, steps[i].fields, steps[i].nfields);
		expect_table(d, steps[i].table, steps[i].ntable, steps[i].table_size);
		fields_reset(&fs);
	}
	hpack_decoder_free(d);
}

#define REQ1 {":method", "GET"}, {":scheme", "http"}, {":path", "/"}, {":authority", "www.example.com"}
#define REQ2 REQ1, {"cache-control", "no-cache"}
#define REQ3                                                                                                 \
	{":method", "GET"}, {":scheme", "https"}, {":path", "/index.html"}, {":authority", "www.example.com"}, \
		{"custom-key", "custom-value"}
#define REQ_T1 {":authority", "www.example.com"}
#define REQ_T2 {"cache-control", "no-cache"}, REQ_T1
#define REQ_T3 {"custom-key", "custom-value"}, REQ_T2

Test(hpack_rfc, c3_requests_without_huffman)
{
	const struct rfc_step steps[] = {
		{"8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d", {REQ1}, 4, {REQ_T1}, 1, 57},
		{"8286 84be 5808 6e6f 2d63 6163 6865", {REQ2}, 5, {REQ_T2}, 2, 110},
		{"8287 85bf 400a 6375 7374 6f6d 2d6b 6579 0c63 7573 746f 6d2d 7661 6c75 65", {REQ3}, 5, {REQ_T3}, 3, 164},
	};
	run_steps(4096, steps, N(steps));
}

Test(hpack_rfc, c4_requests_with_huffman)
{
	const struct rfc_step steps[] = {
		{"8286 8441 8cf1 e3c2 e5f2 3a6b a0ab 90f4 ff", {REQ1}, 4, {REQ_T1}, 1, 57},
		{"8286 84be 5886 a8eb 1064 9cbf", {REQ2}, 5, {REQ_T2}, 2, 110},
		{"8287 85bf 4088 25a8 49e9 5ba9 7d7f 8925 a849 e95b b8e8 b4bf", {REQ3}, 5, {REQ_T3}, 3, 164},
	};
	run_steps(4096, steps, N(steps));
}

#define DATE1 "Mon, 21 Oct 2013 20:13:21 GMT"
#define DATE2 "Mon, 21 Oct 2013 20:13:22 GMT"
#define LOC "https://www.example.com"
#define COOKIE "foo=ASDJKHQKBZXOQWEOPIUAXQWEOIU; max-age=3600; version=1"
#define RESP1 {":status", "302"}, {"cache-control", "private"}, {"date", DATE1}, {"location", LOC}
#define RESP2 {":status", "307"}, {"cache-control", "private"}, {"date", DATE1}, {"location", LOC}
#define RESP3                                                                                       \
	{":status", "200"}, {"cache-control", "private"}, {"date", DATE2}, {"location", LOC},       \
		{"content-encoding", "gzip"}, { "set-cookie", COOKIE }
#define RESP_T1 {"location", LOC}, {"date", DATE1}, {"cache-control", "private"}, {":status", "302"}
#define RESP_T2 {":status", "307"}, {"location", LOC}, {"date", DATE1}, {"cache-control", "private"}
#define RESP_T3 {"set-cookie", COOKIE}, {"content-encoding", "gzip"}, {"date", DATE2}

Test(hpack_rfc, c5_responses_without_huffman)
{
	const struct rfc_step steps[] = {
		{"4803 3330 3258 0770 7269 7661 7465 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133"
		 "2032 303a 3133 3a32 3120 474d 546e 1768 7474 7073 3a2f 2f77 7777 2e65 7861 6d70"
		 "6c65 2e63 6f6d",
		 {RESP1}, 4, {RESP_T1}, 4, 222},
		{"4803 3330 37c1 c0bf", {RESP2}, 4, {RESP_T2}, 4, 222},
		{"88c1 611d 4d6f 6e2c 2032 3120 4f63 7420 3230 3133 2032 303a 3133 3a32 3220 474d"
		 "54c0 5a04 677a 6970 7738 666f 6f3d 4153 444a 4b48 514b 425a 584f 5157 454f 5049"
		 "5541 5851 5745 4f49 553b 206d 6178 2d61 6765 3d33 3630 303b 2076 6572 7369 6f6e"
		 "3d31",
		 {RESP3}, 6, {RESP_T3}, 3, 215},
	};
	run_steps(256, steps, N(steps));
}

Test(hpack_rfc, c6_responses_with_huffman)
{
	const struct rfc_step steps[] = {
		{"4882 6402 5885 aec3 771a 4b61 96d0 7abe 9410 54d4 44a8 2005 9504 0b81 66e0 82a6"
		 "2d1b ff6e 919d 29ad 1718 63c7 8f0b 97c8 e9ae 82ae 43d3",
		 {RESP1}, 4, {RESP_T1}, 4, 222},
		{"4883 640e ffc1 c0bf", {RESP2}, 4, {RESP_T2}, 4, 222},
		{"88c1 6196 d07a be94 1054 d444 a820 0595 040b 8166 e084 a62d 1bff c05a 839b d9ab"
		 "77ad 94e7 821d d7f2 e6c7 b335 dfdf cd5b 3960 d5af 2708 7f36 72c1 ab27 0fb5 291f"
		 "9587 3160 65c0 03ed 4ee5 b106 3d50 07",
		 {RESP3}, 6, {RESP_T3}, 3, 215},
	};
	run_steps(256, steps, N(steps));
}

/* ---- error paths ---- */

static void expect_block_error(uint32_t table_size_max, const uint8_t *block, size_t len, const char *what)
{
	struct hpack_decoder *d = hpack_decoder_new(table_size_max);
	struct fields fs = {0};
	cr_expect_eq(hpack_decode_block(d, block, len, 65536, collect, &fs), -HPACK_ECOMPRESSION, "%s", what);
	/* Broken for good: even a valid block is refused. */
	cr_expect_eq(hpack_decode_block(d, (const uint8_t[]){0x82}, 1, 65536, collect, &fs), -HPACK_ECOMPRESSION,
		     "%s: decoder not sticky-bad", what);
	fields_reset(&fs);
	hpack_decoder_free(d);
}

#define BLOCK_ERROR(tsm, what, ...)                                                          \
	do {                                                                                 \
		static const uint8_t blk_[] = {__VA_ARGS__};                                 \
		expect_block_error(tsm, blk_, sizeof(blk_), what);                           \
	} while (0)

Test(hpack_errors, bad_index)
{
	BLOCK_ERROR(4096, "indexed 0", 0x80);
	BLOCK_ERROR(4096, "indexed 62 on an empty table", 0xbe);
	BLOCK_ERROR(4096, "indexed huge", 0xff, 0xff, 0xff, 0xff, 0x0f);
	BLOCK_ERROR(4096, "literal name index 62 on an empty table", 0x7e, 0x01, 'x');
	BLOCK_ERROR(4096, "never-indexed name index 62", 0x1f, 0x2f, 0x01, 'x');
	BLOCK_ERROR(4096, "without-indexing name index 62", 0x0f, 0x2f, 0x01, 'x');
	BLOCK_ERROR(4096, "indexed 63 with one entry", 0x40, 0x01, 'a', 0x01, 'b', 0xbf);
	BLOCK_ERROR(0, "index 62 with a zero-size table after an insert", 0x40, 0x01, 'a', 0x01, 'b', 0xbe);
}

Test(hpack_errors, truncated)
{
	BLOCK_ERROR(4096, "indexed int with no continuation", 0xff);
	BLOCK_ERROR(4096, "indexed int cut in its continuation", 0xff, 0x80);
	BLOCK_ERROR(4096, "literal without name length", 0x40);
	BLOCK_ERROR(4096, "literal without value", 0x40, 0x01, 'a');
	BLOCK_ERROR(4096, "name longer than the block", 0x40, 0x05, 'a', 'b');
	BLOCK_ERROR(4096, "value longer than the block", 0x00, 0x01, 'a', 0x03, 'b');
	BLOCK_ERROR(4096, "value length cut", 0x00, 0x01, 'a', 0x7f);
	BLOCK_ERROR(4096, "huge string length", 0x00, 0x01, 'a', 0x7f, 0xff, 0xff, 0xff, 0xff, 0x0f);
	BLOCK_ERROR(4096, "size update int cut", 0x3f);
}

Test(hpack_errors, bad_huffman_in_block)
{
	BLOCK_ERROR(4096, "huffman zero padding", 0x00, 0x81, 0x18, 0x00);
	BLOCK_ERROR(4096, "huffman padding over 7 bits", 0x00, 0x82, 0x1f, 0xff, 0x00);
	BLOCK_ERROR(4096, "huffman EOS", 0x00, 0x01, 'a', 0x84, 0xff, 0xff, 0xff, 0xff);
	BLOCK_ERROR(4096, "huffman EOS in an indexed literal name", 0x40, 0x84, 0xff, 0xff, 0xff, 0xfc, 0x00);
}

Test(hpack_errors, size_updates)
{
	uint8_t blk[16];
	ssize_t n;
	struct fields fs = {0};
	struct hpack_decoder *d = hpack_decoder_new(4096);

	/* Up to our setting, at the start, several in a row: fine. */
	n = hpack_encode_int(blk, sizeof(blk), 0x20, 5, 4096);
	n += hpack_encode_int(blk + n, sizeof(blk) - (size_t)n, 0x20, 5, 0);
	n += hpack_encode_int(blk + n, sizeof(blk) - (size_t)n, 0x20, 5, 100);
	blk[n++] = 0x82;
	cr_assert_eq(hpack_decode_block(d, blk, (size_t)n, 65536, collect, &fs), 0);
	cr_expect_eq(d->table_size_limit, 100);
	cr_expect_eq(fs.n, 1);
	cr_assert_eq(decode_hex(d, "400a 6375 7374 6f6d 2d6b 6579 0d63 7573 746f 6d2d 6865 6164 6572", 65536, &fs), 0);
	expect_table(d, (const struct pair[]){{"custom-key", "custom-header"}}, 1, 55);
	cr_assert_eq(decode_hex(d, "4003 6162 6303 6465 66", 65536, &fs), 0); /* abc: def, 38 */
	expect_table(d, (const struct pair[]){{"abc", "def"}, {"custom-key", "custom-header"}}, 2, 93);
	/* Shrinking evicts the oldest first. */
	cr_assert_eq(decode_hex(d, "3f0b 82", 65536, &fs), 0); /* size 42 */
	expect_table(d, (const struct pair[]){{"abc", "def"}}, 1, 38);
	fields_reset(&fs);
	hpack_decoder_free(d);

	/* Above our setting. */
	n = hpack_encode_int(blk, sizeof(blk), 0x20, 5, 4097);
	expect_block_error(4096, blk, (size_t)n, "size update above the setting");
	n = hpack_encode_int(blk, sizeof(blk), 0x20, 5, 1);
	expect_block_error(0, blk, (size_t)n, "size update above a zero setting");
	/* Not at the start of the block. */
	BLOCK_ERROR(4096, "size update after a field", 0x82, 0x20);
	BLOCK_ERROR(4096, "size update after a literal", 0x00, 0x01, 'a', 0x00, 0x3f, 0xe1, 0x1f);
}

Test(hpack_errors, size_update_at_start_of_each_block)
{
	/* The rule is per block: a second block may start with an update again. */
	struct hpack_decoder *d = hpack_decoder_new(4096);
	struct fields fs = {0};
	cr_assert_eq(decode_hex(d, "2082", 65536, &fs), 0);
	cr_assert_eq(decode_hex(d, "3fe1 1f82", 65536, &fs), 0);
	cr_expect_eq(d->table_size_limit, 4096);
	fields_reset(&fs);
	hpack_decoder_free(d);
}

Test(hpack_errors, callback_failure_breaks_decoder)
{
	struct hpack_decoder *d = hpack_decoder_new(4096);
	struct fields fs = {.fail_at = 2};
	cr_expect_eq(decode_hex(d, "8286 84", 65536, &fs), -99);
	cr_expect_eq(fs.n, 2);
	fs.fail_at = 0;
	cr_expect_eq(decode_hex(d, "82", 65536, &fs), -HPACK_ECOMPRESSION);
	fields_reset(&fs);
	hpack_decoder_free(d);
}

Test(hpack_errors, new_rejects_huge_table)
{
	cr_expect_null(hpack_decoder_new(UINT32_MAX));
	cr_expect_null(hpack_decoder_new(HPACK_TABLE_SIZE_LIMIT + 1));
	struct hpack_decoder *d = hpack_decoder_new(0);
	cr_assert_not_null(d);
	struct fields fs = {0};
	/* With a zero-size table, literals with indexing still decode and index nothing. */
	cr_assert_eq(decode_hex(d, "4003 6162 6303 6465 66 4003 6162 6303 6465 66", 65536, &fs), 0);
	cr_expect_eq(fs.n, 2);
	expect_table(d, NULL, 0, 0);
	fields_reset(&fs);
	hpack_decoder_free(d);
	hpack_decoder_free(NULL);
}

/* ---- header list limit ---- */

Test(hpack_limits, header_list_max)
{
	struct hpack_decoder *d = hpack_decoder_new(4096);
	struct fields fs = {0};
	/* C.3.1's fields cost 42 + 43 + 38 + 57 (name + value + 32 each). */
	const char *c31 = "8286 8441 0f77 7777 2e65 7861 6d70 6c65 2e63 6f6d";
	cr_assert_eq(decode_hex(d, c31, 42 + 43 + 38, &fs), -HPACK_ETOOLARGE);
	cr_expect_eq(fs.n, 3, "the fields that fit are delivered");
	/* The whole block was decoded: the table is in step with the peer. */
	expect_table(d, (const struct pair[]){REQ_T1}, 1, 57);
	fields_reset(&fs);
	/* Exactly at the limit is fine; the decoder was not broken. */
	cr_assert_eq(decode_hex(d, c31, 42 + 43 + 38 + 57, &fs), 0);
	cr_expect_eq(fs.n, 4);
	fields_reset(&fs);
	cr_assert_eq(decode_hex(d, c31, 0, &fs), -HPACK_ETOOLARGE);
	cr_expect_eq(fs.n, 0);
	expect_table(d, (const struct pair[]){REQ_T1, REQ_T1, REQ_T1}, 3, 171);
	fields_reset(&fs);
	hpack_decoder_free(d);
}

Test(hpack_limits, huffman_string_over_the_limit_is_still_indexed)
{
	/* A 3000-octet Huffman value with incremental indexing and a 100-octet list limit:
	 * TOOLARGE, nothing delivered, but the entry fits the table and must be added. */
	static uint8_t blk[4096], val[3000];
	memset(val, 'a', sizeof(val));
	size_t n = 0;
	blk[n++] = 0x40;
	n += (size_t)hpack_encode_string(blk + n, sizeof(blk) - n, (const uint8_t *)"big", 3);
	ssize_t r = hpack_encode_string(blk + n, sizeof(blk) - n, val, sizeof(val));
	cr_assert_gt(r, 0);
	cr_assert(blk[n] & 0x80, "value is Huffman-coded");
	n += (size_t)r;
	blk[n++] = 0x82;

	struct hpack_decoder *d = hpack_decoder_new(4096);
	struct fields fs = {0};
	cr_assert_eq(hpack_decode_block(d, blk, n, 100, collect, &fs), -HPACK_ETOOLARGE);
	cr_expect_eq(fs.n, 0);
	cr_assert_eq(d->entries_count, 1);
	cr_expect_eq(d->table_size, 32 + 3 + 3000);
	fields_reset(&fs);
	/* And it can be referenced afterwards. */
	cr_assert_eq(decode_hex(d, "be", 1 << 20, &fs), 0);
	cr_assert_eq(fs.n, 1);
	cr_expect_eq(fs.f[0].value_len, 3000);
	cr_expect(memcmp(fs.f[0].value, val, 3000) == 0);
	fields_reset(&fs);

	/* The same value without indexing is only validated, never stored. */
	blk[0] = 0x00;
	size_t scratch_before = d->scratch_cap;
	cr_assert_eq(hpack_decode_block(d, blk, n, 100, collect, &fs), -HPACK_ETOOLARGE);
	cr_expect_eq(d->scratch_cap, scratch_before);
	cr_expect_eq(d->entries_count, 1);
	fields_reset(&fs);

	/* Larger than the table too: the table is emptied (RFC 7541 4.4). */
	struct hpack_decoder *small = hpack_decoder_new(1000);
	blk[0] = 0x40;
	cr_assert_eq(decode_hex(small, "4003 6162 6303 6465 66", 65536, &fs), 0);
	cr_assert_eq(small->entries_count, 1);
	cr_assert_eq(hpack_decode_block(small, blk, n, 100, collect, &fs), -HPACK_ETOOLARGE);
	cr_expect_eq(small->entries_count, 0);
	cr_expect_eq(small->table_size, 0);
	fields_reset(&fs);
	hpack_decoder_free(small);
	hpack_decoder_free(d);
}

Test(hpack_limits, name_of_entry_evicted_by_its_own_insert)
{
	/* RFC 7541 4.4: a literal with indexing may name the entry that its insertion evicts. */
	struct hpack_decoder *d = hpack_decoder_new(100);
	struct fields fs = {0};
	/* "nnnnnnnnnnnnnnnnnnnn": "v" = 20+1+32 = 53 */
	cr_assert_eq(decode_hex(d, "4014 6e6e 6e6e 6e6e 6e6e 6e6e 6e6e 6e6e 6e6e 6e6e 6e6e 0176", 65536, &fs), 0);
	/* name index 62, value "wwwwwwwwwwwwwwwwwwww": 20+20+32 = 72: needs the old one gone */
	cr_assert_eq(decode_hex(d, "7e14 7777 7777 7777 7777 7777 7777 7777 7777 7777 7777", 65536, &fs), 0);
	cr_assert_eq(fs.n, 2);
	cr_expect_str_eq(fs.f[1].name, "nnnnnnnnnnnnnnnnnnnn");
	cr_expect_str_eq(fs.f[1].value, "wwwwwwwwwwwwwwwwwwww");
	expect_table(d, (const struct pair[]){{"nnnnnnnnnnnnnnnnnnnn", "wwwwwwwwwwwwwwwwwwww"}}, 1, 72);
	fields_reset(&fs);
	hpack_decoder_free(d);
}

/* ---- randomized model check of the ring buffers ---- */

struct model_entry {
	char name[40];
	char value[80];
};

Test(hpack_model, ring_matches_a_simple_list)
{
	for (int round = 0; round < 20; round++) {
		uint32_t tsm = 64 + (uint32_t)(rng() % 400);
		struct hpack_decoder *d = hpack_decoder_new(tsm);
		static struct model_entry model[64];
		size_t mcount = 0, msize = 0;
		uint32_t limit = tsm;
		for (int op = 0; op < 400; op++) {
			uint8_t blk[512];
			size_t n = 0;
			struct fields fs = {0};
			int kind = (int)(rng() % 10);
			if (kind == 0) {
				limit = (uint32_t)(rng() % (tsm + 1));
				n += (size_t)hpack_encode_int(blk, sizeof(blk), 0x20, 5, limit);
				while (msize > limit) {
					mcount--;
					msize -= 32 + strlen(model[mcount].name) + strlen(model[mcount].value);
				}
			} else if (kind < 6 || mcount == 0) {
				struct model_entry e = {{0}, {0}};
				size_t nl = 1 + rng() % 30, vl = rng() % 70;
				for (size_t i = 0; i < nl; i++)
					e.name[i] = (char)('a' + rng() % 26);
				for (size_t i = 0; i < vl; i++)
					e.value[i] = (char)(' ' + rng() % 95);
				blk[n++] = 0x40;
				n += (size_t)hpack_encode_string(blk + n, sizeof(blk) - n, (const uint8_t *)e.name, nl);
				n += (size_t)hpack_encode_string(blk + n, sizeof(blk) - n, (const uint8_t *)e.value, vl);
				size_t sz = 32 + nl + vl;
				if (sz > limit) {
					mcount = 0;
					msize = 0;
				} else {
					while (msize + sz > limit) {
						mcount--;
						msize -= 32 + strlen(model[mcount].name) + strlen(model[mcount].value);
					}
					memmove(&model[1], &model[0], mcount * sizeof(model[0]));
					model[0] = e;
					mcount++;
					msize += sz;
				}
			} else {
				size_t i = rng() % mcount;
				n += (size_t)hpack_encode_int(blk, sizeof(blk), 0x80, 7, 62 + i);
				struct fields want = {0};
				cr_assert_eq(hpack_decode_block(d, blk, n, 1 << 20, collect, &want), 0);
				cr_assert_eq(want.n, 1);
				cr_assert_str_eq(want.f[0].name, model[i].name, "round %d op %d", round, op);
				cr_assert_str_eq(want.f[0].value, model[i].value, "round %d op %d", round, op);
				fields_reset(&want);
				continue;
			}
			cr_assert_eq(hpack_decode_block(d, blk, n, 1 << 20, collect, &fs), 0);
			fields_reset(&fs);
			cr_assert_eq(d->entries_count, mcount, "round %d op %d", round, op);
			cr_assert_eq(d->table_size, msize, "round %d op %d", round, op);
		}
		/* Finally every entry, newest first. */
		struct pair want[64];
		for (size_t i = 0; i < mcount; i++)
			want[i] = (struct pair){model[i].name, model[i].value};
		expect_table(d, want, mcount, (uint32_t)msize);
		hpack_decoder_free(d);
	}
}

/* ---- encoder ---- */

Test(hpack_encoder, representations)
{
	uint8_t out[256];
	ssize_t n;
	/* Full static match: indexed. */
	n = hpack_encode_field(out, sizeof(out), ":status", 7, "200", 3, 0);
	cr_assert_eq(n, 1);
	cr_expect_eq(out[0], 0x88);
	n = hpack_encode_field(out, sizeof(out), ":method", 7, "POST", 4, 0);
	cr_assert_eq(n, 1);
	cr_expect_eq(out[0], 0x83);
	n = hpack_encode_field(out, sizeof(out), "accept-encoding", 15, "gzip, deflate", 13, 0);
	cr_assert_eq(n, 1);
	cr_expect_eq(out[0], 0x90);
	/* Name match: literal without indexing, static name index 8 for :status; "503" is
	 * 17 bits of Huffman, no shorter than raw, so it is sent raw. */
	n = hpack_encode_field(out, sizeof(out), ":status", 7, "503", 3, 0);
	cr_assert_eq(n, 5);
	cr_expect(memcmp(out, "\x08\x03" "503", 5) == 0);
	/* content-type (31 = 15 + 16): 0f 10, never-indexed 1f 10. */
	n = hpack_encode_field(out, sizeof(out), "content-type", 12, "application/grpc", 16, 0);
	cr_assert_gt(n, 2);
	cr_expect(out[0] == 0x0f && out[1] == 0x10);
	cr_expect(out[2] & 0x80, "value Huffman-coded");
	cr_expect_eq(n, 3 + (out[2] & 0x7f));
	n = hpack_encode_field(out, sizeof(out), "authorization", 13, "tok", 3, HPACK_NEVER_INDEX);
	cr_expect(out[0] == 0x1f && out[1] == 0x08);
	/* New name: 00 then name then value; never-indexed: 10. */
	n = hpack_encode_field(out, sizeof(out), "grpc-status", 11, "0", 1, 0);
	cr_expect_eq(out[0], 0x00);
	n = hpack_encode_field(out, sizeof(out), "grpc-status", 11, "0", 1, HPACK_NEVER_INDEX);
	cr_expect_eq(out[0], 0x10);
	/* Raw when Huffman is not shorter: "0" takes 5 bits, 1 octet either way. */
	cr_expect_eq(out[n - 2], 0x01);
	cr_expect_eq(out[n - 1], '0');
}

Test(hpack_encoder, enospc_at_every_short_capacity)
{
	static const struct pair cases[] = {
		{":status", "200"},
		{":status", "503"},
		{"content-type", "application/grpc"},
		{"grpc-message", "a fairly long message that needs a multi-octet length prefix in the literal... "
				 "padding padding padding padding padding padding padding padding padding"},
		{"x", ""},
	};
	for (size_t i = 0; i < N(cases); i++) {
		uint8_t out[512];
		size_t nl = strlen(cases[i].name), vl = strlen(cases[i].value);
		ssize_t full = hpack_encode_field(out, sizeof(out), cases[i].name, nl, cases[i].value, vl, 0);
		cr_assert_gt(full, 0);
		for (ssize_t cap = 0; cap < full; cap++)
			cr_assert_eq(hpack_encode_field(out, (size_t)cap, cases[i].name, nl, cases[i].value, vl, 0),
				     -HPACK_ENOSPC, "case %zu cap %zd", i, cap);
		cr_assert_eq(hpack_encode_field(out, (size_t)full, cases[i].name, nl, cases[i].value, vl, 0), full);
	}
}

Test(hpack_encoder, round_trips_through_the_decoder)
{
	struct hpack_decoder *d = hpack_decoder_new(4096);
	static uint8_t blk[1 << 16];
	for (int iter = 0; iter < 300; iter++) {
		struct pair want[16];
		char names[16][64], values[16][300];
		size_t nfields = 1 + rng() % 16, n = 0;
		for (size_t i = 0; i < nfields; i++) {
			int kind = (int)(rng() % 4);
			if (kind == 0) { /* a static entry, full or name only */
				const struct hpack_static_entry *e = &hpack_static_table[rng() % HPACK_STATIC_COUNT];
				snprintf(names[i], sizeof(names[i]), "%s", e->name);
				snprintf(values[i], sizeof(values[i]), "%s", rng() % 2 ? e->value : "other");
			} else {
				size_t nl = 1 + rng() % 40, vl = rng() % 250;
				for (size_t k = 0; k < nl; k++)
					names[i][k] = (char)('a' + rng() % 26);
				names[i][nl] = 0;
				/* values avoid NUL only so that they can be compared as C strings */
				for (size_t k = 0; k < vl; k++)
					values[i][k] = (char)(kind == 1 ? 1 + rng() % 255 : ' ' + rng() % 95);
				values[i][vl] = 0;
			}
			want[i] = (struct pair){names[i], values[i]};
			ssize_t r = hpack_encode_field(blk + n, sizeof(blk) - n, names[i], strlen(names[i]), values[i],
						       strlen(values[i]), (int)(rng() % 2));
			cr_assert_gt(r, 0);
			n += (size_t)r;
		}
		struct fields fs = {0};
		cr_assert_eq(hpack_decode_block(d, blk, n, 1 << 20, collect, &fs), 0, "iter %d", iter);
		expect_fields(&fs, want, nfields);
		fields_reset(&fs);
	}
	/* The stateless encoder never touches the peer's table. */
	expect_table(d, NULL, 0, 0);
	hpack_decoder_free(d);
}

Test(hpack_limits, scratch_does_not_grow_on_peer_demand)
{
	/* A 50000-octet Huffman value, not indexed, against a 1000-octet list limit: it is
	 * validated in place and scratch keeps its initial size. */
	static uint8_t blk[40000], val[50000];
	memset(val, 'e', sizeof(val));
	size_t n = 0;
	blk[n++] = 0x00;
	n += (size_t)hpack_encode_string(blk + n, sizeof(blk) - n, (const uint8_t *)"x", 1);
	ssize_t r = hpack_encode_string(blk + n, sizeof(blk) - n, val, sizeof(val));
	cr_assert_gt(r, 0);
	n += (size_t)r;
	struct hpack_decoder *d = hpack_decoder_new(4096);
	struct fields fs = {0};
	for (int i = 0; i < 3; i++)
		cr_assert_eq(hpack_decode_block(d, blk, n, 1000, collect, &fs), -HPACK_ETOOLARGE);
	cr_expect_eq(d->scratch_cap, HPACK_SCRATCH_INITIAL);
	cr_expect_eq(fs.n, 0);
	/* With a limit that admits it, it is delivered (scratch grows once, to fit). */
	cr_assert_eq(hpack_decode_block(d, blk, n, 1 << 20, collect, &fs), 0);
	cr_assert_eq(fs.n, 1);
	cr_expect_eq(fs.f[0].value_len, sizeof(val));
	size_t cap = d->scratch_cap;
	cr_expect_leq(cap, 2 * (sizeof(val) * 2));
	cr_assert_eq(hpack_decode_block(d, blk, n, 1 << 20, collect, &fs), 0);
	cr_expect_eq(d->scratch_cap, cap, "steady state: no further growth");
	fields_reset(&fs);
	hpack_decoder_free(d);
}
