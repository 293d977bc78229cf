/* Fuzzes every parser of outside bytes in the auth modules. Byte 0 picks one:
 *   0  auth_state_decode; what decodes must encode back to the same bytes, clone to the
 *      same bytes, and answer permission checks;
 *   1  a sequence of log records [len: 2 bytes big-endian][auth_op bytes]: what decodes
 *      must encode back to the same bytes and is applied; the final state must survive a
 *      checkpoint round trip;
 *   2  the token a client sends: simple-token format and lookup, then JWT verification
 *      with an HS256 and an ES256 verifier (signatures will not match: this covers the
 *      framing, base64 and header paths);
 *   3  [header length byte][header][claims]: a JWT the target signs itself with HS256, so
 *      arbitrary header and claims JSON reach the claims checks;
 *   4  --auth-token option strings and Go durations.
 * Any crash, sanitizer report or leak is a finding. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hmac.h>

#include "core/auth.h"
#include "core/auth_token.h"

static const char secret[] = "fuzz-secret";
static const char ec_pub[] = "-----BEGIN PUBLIC KEY-----\n"
			     "MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEzAYdj+2wFE/b2eB8EeO9ivBtVNaB\n"
			     "5t37xPXZAcw1ijLoWUqpPgxjML7OFTpZC0xzo6PEqsEdzZEvjIuPRaXtZQ==\n"
			     "-----END PUBLIC KEY-----\n";

static struct auth_token_jwt *hs, *es;

static void check_state(const struct auth *a)
{
	static const char *users[] = { "root", "u", "v", "" };
	static const uint8_t keys[][3] = { { 'a' }, { 'b', 0 }, { 0 }, { 'z', 'z', 'z' } };
	for (int u = 0; u < 4; u++)
		for (int k = 0; k < 4; k++)
			for (int e = 0; e < 4; e++)
				auth_check_range(a, (const uint8_t *)users[u], strlen(users[u]), keys[k], 1 + (k & 1),
						 keys[e], (size_t)e, AUTH_READ | AUTH_WRITE);
}

static void state_round_trip(const struct auth *a)
{
	size_t n = auth_state_size(a);
	uint8_t *b = malloc(n), *c = malloc(n);
	int err;
	if (auth_state_encode(a, b, n) != (ssize_t)n)
		abort();
	struct auth *d = auth_state_decode(b, n, &err);
	if (!d || auth_state_encode(d, c, n) != (ssize_t)n || memcmp(b, c, n) != 0)
		abort();
	auth_free(d);
	free(b);
	free(c);
}

static void fuzz_state(const uint8_t *data, size_t size)
{
	int err;
	struct auth *a = auth_state_decode(data, size, &err);
	if (!a)
		return;
	size_t n = auth_state_size(a);
	uint8_t *b = malloc(n ? n : 1);
	if (n != size || auth_state_encode(a, b, n) != (ssize_t)n || memcmp(b, data, n) != 0)
		abort(); /* decoding is canonical */
	free(b);
	struct auth *c = auth_clone(a);
	state_round_trip(c);
	check_state(a);
	auth_free(c);
	auth_free(a);
}

static void fuzz_ops(const uint8_t *data, size_t size)
{
	struct auth *a = auth_new();
	size_t off = 0;
	while (off + 2 <= size) {
		size_t len = (size_t)data[off] << 8 | data[off + 1];
		off += 2;
		if (len > size - off)
			len = size - off;
		struct auth_op op;
		if (auth_op_decode(data + off, len, &op) == 0) {
			uint8_t *b = malloc(len ? len : 1);
			if (auth_op_size(&op) != len || auth_op_encode(&op, b, len) != (ssize_t)len ||
			    memcmp(b, data + off, len) != 0)
				abort();
			free(b);
			auth_apply(a, &op);
		}
		off += len;
	}
	check_state(a);
	state_round_trip(a);
	auth_free(a);
}

static void fuzz_token(const uint8_t *data, size_t size)
{
	const char *tok = (const char *)data;
	uint8_t user[64];
	size_t ulen;
	uint64_t rev, idx;
	struct auth_token_simple *s = auth_token_simple_new(1000, 4);
	char known[AUTH_TOKEN_SIMPLE_MAX + 1];

	auth_token_simple_assign(s, (const uint8_t *)"u", 1, 1, 7, 0, known);
	auth_token_simple_parse(tok, size, &idx);
	auth_token_simple_lookup(s, tok, size, 10, user, sizeof user, &ulen, &rev);
	auth_token_simple_free(s);
	auth_token_jwt_verify(hs, tok, size, 0, user, sizeof user, &ulen, &rev);
	auth_token_jwt_verify(es, tok, size, 0, user, sizeof user, &ulen, &rev);
}

static size_t b64(const uint8_t *in, size_t n, char *out)
{
	static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
	size_t o = 0;
	for (size_t i = 0; i < n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16;
		if (i + 1 < n)
			v |= (uint32_t)in[i + 1] << 8;
		if (i + 2 < n)
			v |= in[i + 2];
		out[o++] = a[v >> 18];
		out[o++] = a[(v >> 12) & 63];
		if (i + 1 < n)
			out[o++] = a[(v >> 6) & 63];
		if (i + 2 < n)
			out[o++] = a[v & 63];
	}
	return o;
}

static void fuzz_signed_jwt(const uint8_t *data, size_t size)
{
	if (size < 1 || size > 4000)
		return;
	size_t hl = data[0] < size - 1 ? data[0] : size - 1;
	const uint8_t *h = data + 1, *c = data + 1 + hl;
	size_t cl = size - 1 - hl;
	char *tok = malloc(4 * size + 64);
	size_t n = b64(h, hl, tok);
	tok[n++] = '.';
	n += b64(c, cl, tok + n);
	Hmac m;
	uint8_t mac[32];
	if (wc_HmacInit(&m, NULL, INVALID_DEVID) || wc_HmacSetKey(&m, WC_SHA256, (const uint8_t *)secret, sizeof secret - 1) ||
	    wc_HmacUpdate(&m, (const uint8_t *)tok, (word32)n) || wc_HmacFinal(&m, mac))
		abort();
	wc_HmacFree(&m);
	tok[n++] = '.';
	n += b64(mac, sizeof mac, tok + n);
	uint8_t user[64];
	size_t ulen;
	uint64_t rev;
	auth_token_jwt_verify(hs, tok, n, 1700000000000ULL, user, sizeof user, &ulen, &rev);
	free(tok);
}

static void fuzz_opts(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	memcpy(s, data, size);
	s[size] = 0;
	struct auth_token_opts *o = malloc(sizeof *o);
	const char *d;
	int64_t ns;
	auth_token_opts_parse(s, o, &d);
	auth_token_parse_duration((const char *)data, size, &ns);
	free(o);
	free(s);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (!hs) {
		int err;
		const char *d;
		hs = auth_token_jwt_new_pem("HS256", NULL, 0, (const uint8_t *)secret, sizeof secret - 1,
					    300LL * 1000000000, &err, &d);
		es = auth_token_jwt_new_pem("ES256", (const uint8_t *)ec_pub, sizeof ec_pub - 1, NULL, 0,
					    300LL * 1000000000, &err, &d);
		if (!hs || !es)
			abort();
	}
	if (size < 1)
		return 0;
	switch (data[0] % 5) {
	case 0:
		fuzz_state(data + 1, size - 1);
		break;
	case 1:
		fuzz_ops(data + 1, size - 1);
		break;
	case 2:
		fuzz_token(data + 1, size - 1);
		break;
	case 3:
		fuzz_signed_jwt(data + 1, size - 1);
		break;
	case 4:
		fuzz_opts(data + 1, size - 1);
		break;
	}
	return 0;
}
