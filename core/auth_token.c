/* See auth_token.h. Three parts:
 *   - option strings: etcd's decomposeOpts and jwtOptions.Parse, with Go's
 *     time.ParseDuration for ttl;
 *   - simple tokens: a hash table (sized once from tokens_max) of entries on an LRU list.
 *     Every entry has the same TTL, so the list in last-use order is also the expiry
 *     order: expiring looks only at its head (now_ms must not go backwards);
 *   - JWT: base64url, a JSON writer that escapes as Go's encoding/json (so our tokens are
 *     byte-for-byte the shape of etcd's), a small strict JSON reader for the header and
 *     claims, and wolfCrypt for the signatures. Verification allocates nothing: the token
 *     is bounded (AUTH_TOKEN_JWT_MAX) and decoded into stack buffers, one segment at a
 *     time. */
#include "core/auth_token.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <xxhash.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/error-crypt.h>
#include <wolfssl/wolfcrypt/hash.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/random.h>
#include <wolfssl/wolfcrypt/rsa.h>

#include "core/log.h"
#include "core/utf8.h"

/* ---- option strings ---- */

/* Go's time.ParseDuration: [-+]?([0-9]*(\.[0-9]*)?[a-z]+)+ with units ns us µs μs ms s m h. */
int auth_token_parse_duration(const char *s, size_t len, int64_t *ns)
{
	static const struct {
		const char *name;
		uint64_t ns;
	} units[] = { { "ns", 1 },	   { "us", 1000 },	 { "\xc2\xb5s", 1000 }, { "\xce\xbcs", 1000 },
		      { "ms", 1000000 }, { "s", 1000000000 }, { "m", 60000000000ULL }, { "h", 3600000000000ULL } };
	const uint64_t lim = 1ULL << 63;
	size_t i = 0;
	uint64_t d = 0;
	bool neg = false;

	if (len && (s[0] == '-' || s[0] == '+')) {
		neg = s[0] == '-';
		i++;
	}
	if (len - i == 1 && s[i] == '0') {
		*ns = 0;
		return 0;
	}
	if (i == len)
		return -EINVAL;
	while (i < len) {
		uint64_t v = 0, f = 0;
		double scale = 1;
		bool pre = false, post = false;
		if (!(s[i] == '.' || (s[i] >= '0' && s[i] <= '9')))
			return -EINVAL;
		for (; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
			if (v > lim / 10)
				return -ERANGE;
			v = v * 10 + (uint64_t)(s[i] - '0');
			if (v > lim)
				return -ERANGE;
			pre = true;
		}
		if (i < len && s[i] == '.') {
			bool over = false;
			for (i++; i < len && s[i] >= '0' && s[i] <= '9'; i++) {
				post = true;
				if (over)
					continue;
				if (f > (lim - 1) / 10) {
					over = true;
					continue;
				}
				uint64_t y = f * 10 + (uint64_t)(s[i] - '0');
				if (y > lim) {
					over = true;
					continue;
				}
				f = y;
				scale *= 10;
			}
		}
		if (!pre && !post)
			return -EINVAL;
		size_t u0 = i;
		while (i < len && s[i] != '.' && !(s[i] >= '0' && s[i] <= '9'))
			i++;
		if (i == u0)
			return -EINVAL; /* missing unit */
		uint64_t unit = 0;
		for (size_t k = 0; k < sizeof units / sizeof units[0]; k++)
			if (strlen(units[k].name) == i - u0 && memcmp(units[k].name, s + u0, i - u0) == 0)
				unit = units[k].ns;
		if (!unit)
			return -EINVAL; /* unknown unit */
		if (v > lim / unit)
			return -ERANGE;
		v *= unit;
		if (f > 0) {
			v += (uint64_t)((double)f * ((double)unit / scale));
			if (v > lim)
				return -ERANGE;
		}
		d += v;
		if (d > lim)
			return -ERANGE;
	}
	if (neg) {
		*ns = d == lim ? INT64_MIN : -(int64_t)d;
		return 0;
	}
	if (d > lim - 1)
		return -ERANGE;
	*ns = (int64_t)d;
	return 0;
}

/* golang-jwt's registered methods; the ones etcd 3.5 cannot use fail at key loading. */
static const char *const known_methods[] = { "HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "PS256",
					     "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA", "none" };

int auth_token_opts_parse(const char *s, struct auth_token_opts *o, const char **detail)
{
	const char *end = s + strlen(s), *comma = memchr(s, ',', (size_t)(end - s));
	const char *type_end = comma ? comma : end;
	const char *sm = NULL, *ttl = NULL;
	size_t sm_len = 0, ttl_len = 0;
	const char *dummy;

	if (!detail)
		detail = &dummy;
	memset(o, 0, sizeof *o);
	o->ttl_ns = AUTH_TOKEN_JWT_TTL_DEFAULT_NS;
	/* every option: "k=v", exactly one '=', no key twice */
	for (const char *p = comma; p; p = memchr(p + 1, ',', (size_t)(end - p - 1))) {
		const char *q = p + 1, *e = memchr(q, ',', (size_t)(end - q));
		if (!e)
			e = end;
		const char *eq = memchr(q, '=', (size_t)(e - q));
		if (!eq || memchr(eq + 1, '=', (size_t)(e - eq - 1))) {
			*detail = "invalid token option";
			return AUTH_ERR_INVALID_AUTH_OPTS;
		}
		size_t klen = (size_t)(eq - q), vlen = (size_t)(e - eq - 1);
		for (const char *r = comma; r != p; r = memchr(r + 1, ',', (size_t)(end - r - 1))) {
			const char *rk = r + 1, *req = memchr(rk, '=', (size_t)(end - rk));
			if ((size_t)(req - rk) == klen && memcmp(rk, q, klen) == 0) {
				*detail = "invalid token option: duplicate parameter";
				return AUTH_ERR_INVALID_AUTH_OPTS;
			}
		}
		char *dst = NULL;
		if (klen == 11 && memcmp(q, "sign-method", 11) == 0) {
			sm = eq + 1;
			sm_len = vlen;
		} else if (klen == 3 && memcmp(q, "ttl", 3) == 0) {
			ttl = eq + 1;
			ttl_len = vlen;
		} else if (klen == 7 && memcmp(q, "pub-key", 7) == 0) {
			dst = o->pub_key;
		} else if (klen == 8 && memcmp(q, "priv-key", 8) == 0) {
			dst = o->priv_key;
		} else {
			o->unknown++;
		}
		if (dst) {
			if (vlen >= AUTH_TOKEN_PATH_MAX) {
				*detail = "key file name too long";
				return AUTH_ERR_INVALID_AUTH_OPTS;
			}
			memcpy(dst, eq + 1, vlen);
			dst[vlen] = 0;
		}
	}
	size_t tlen = (size_t)(type_end - s);
	if (tlen == 0) {
		o->type = AUTH_TOKEN_NONE;
		return 0;
	}
	if (tlen == 6 && memcmp(s, "simple", 6) == 0) {
		o->type = AUTH_TOKEN_SIMPLE;
		return 0;
	}
	if (!(tlen == 3 && memcmp(s, "jwt", 3) == 0)) {
		*detail = "unknown token type";
		return AUTH_ERR_INVALID_AUTH_OPTS;
	}
	o->type = AUTH_TOKEN_JWT;
	if (ttl && ttl_len) {
		int rc = auth_token_parse_duration(ttl, ttl_len, &o->ttl_ns);
		if (rc) {
			*detail = "time: invalid duration";
			return AUTH_ERR_INVALID_AUTH_OPTS;
		}
	}
	for (size_t i = 0; sm && i < sizeof known_methods / sizeof known_methods[0]; i++) {
		if (strlen(known_methods[i]) == sm_len && memcmp(known_methods[i], sm, sm_len) == 0) {
			memcpy(o->sign_method, sm, sm_len);
			o->sign_method[sm_len] = 0;
			return 0;
		}
	}
	*detail = "auth: invalid auth signature method";
	return AUTH_ERR_INVALID_AUTH_OPTS;
}

/* ---- simple tokens ---- */

struct st_entry {
	struct st_entry *hnext;
	struct st_entry *prev, *next; /* LRU list, head = least recently used */
	uint64_t deadline_ms, revision;
	size_t toklen, ulen;
	uint8_t *user;
	char tok[AUTH_TOKEN_SIMPLE_MAX + 1];
};

struct auth_token_simple {
	uint64_t ttl_ms;
	size_t max, n;
	struct st_entry **b;
	size_t nb; /* power of two */
	struct st_entry *head, *tail;
};

static void *st_calloc(size_t n, size_t sz)
{
	void *p = calloc(n ? n : 1, sz ? sz : 1);
	if (!p)
		log_fatal("auth_token: out of memory");
	return p;
}

struct auth_token_simple *auth_token_simple_new(uint64_t ttl_ms, size_t tokens_max)
{
	struct auth_token_simple *s = st_calloc(1, sizeof *s);

	s->ttl_ms = ttl_ms ? ttl_ms : AUTH_TOKEN_SIMPLE_TTL_DEFAULT_MS;
	s->max = tokens_max ? tokens_max : AUTH_TOKEN_SIMPLE_TOKENS_DEFAULT;
	for (s->nb = 16; s->nb < s->max && s->nb < ((size_t)1 << 30); s->nb *= 2)
		;
	s->b = st_calloc(s->nb, sizeof *s->b);
	return s;
}

static struct st_entry **st_slot(struct auth_token_simple *s, const char *tok, size_t len)
{
	struct st_entry **pp = &s->b[XXH3_64bits(tok, len) & (s->nb - 1)];
	while (*pp && !((*pp)->toklen == len && memcmp((*pp)->tok, tok, len) == 0))
		pp = &(*pp)->hnext;
	return pp;
}

static void lru_unlink(struct auth_token_simple *s, struct st_entry *e)
{
	if (e->prev)
		e->prev->next = e->next;
	else
		s->head = e->next;
	if (e->next)
		e->next->prev = e->prev;
	else
		s->tail = e->prev;
	e->prev = e->next = NULL;
}

static void lru_append(struct auth_token_simple *s, struct st_entry *e)
{
	e->prev = s->tail;
	e->next = NULL;
	if (s->tail)
		s->tail->next = e;
	else
		s->head = e;
	s->tail = e;
}

static void st_remove(struct auth_token_simple *s, struct st_entry *e)
{
	struct st_entry **pp = st_slot(s, e->tok, e->toklen);
	*pp = e->hnext;
	lru_unlink(s, e);
	free(e->user);
	free(e);
	s->n--;
}

void auth_token_simple_clear(struct auth_token_simple *s)
{
	while (s->head)
		st_remove(s, s->head);
}

void auth_token_simple_free(struct auth_token_simple *s)
{
	if (!s)
		return;
	auth_token_simple_clear(s);
	free(s->b);
	free(s);
}

size_t auth_token_simple_count(const struct auth_token_simple *s) { return s->n; }

/* 16 letters of [a-zA-Z], uniform (bytes of 208 and up are drawn again). */
static int st_prefix(char out[AUTH_TOKEN_SIMPLE_PREFIX_LEN])
{
	static const char letters[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ";
	uint8_t rnd[64];
	size_t n = 0;

	while (n < AUTH_TOKEN_SIMPLE_PREFIX_LEN) {
		if (getrandom(rnd, sizeof rnd, 0) != (ssize_t)sizeof rnd)
			return -EIO;
		for (size_t i = 0; i < sizeof rnd && n < AUTH_TOKEN_SIMPLE_PREFIX_LEN; i++)
			if (rnd[i] < 208)
				out[n++] = letters[rnd[i] % 52];
	}
	return 0;
}

int auth_token_simple_assign(struct auth_token_simple *s, const uint8_t *user, size_t ulen, uint64_t revision,
			     uint64_t index, uint64_t now_ms, char out[AUTH_TOKEN_SIMPLE_MAX + 1])
{
	struct st_entry **pp;
	int len;

	for (int attempt = 0;; attempt++) {
		char prefix[AUTH_TOKEN_SIMPLE_PREFIX_LEN];
		if (attempt == 8 || st_prefix(prefix))
			return -EIO;
		len = snprintf(out, AUTH_TOKEN_SIMPLE_MAX + 1, "%.*s.%llu", AUTH_TOKEN_SIMPLE_PREFIX_LEN, prefix,
			       (unsigned long long)index);
		pp = st_slot(s, out, (size_t)len);
		if (!*pp)
			break; /* etcd panics on a reused token; drawing again is kinder */
	}
	if (s->n >= s->max) {
		log_warn_limited("auth: %zu simple tokens, dropping the least recently used", s->n);
		st_remove(s, s->head);
		pp = st_slot(s, out, (size_t)len);
	}
	struct st_entry *e = st_calloc(1, sizeof *e);
	memcpy(e->tok, out, (size_t)len + 1);
	e->toklen = (size_t)len;
	e->user = st_calloc(ulen, 1);
	if (ulen)
		memcpy(e->user, user, ulen);
	e->ulen = ulen;
	e->revision = revision;
	e->deadline_ms = now_ms + s->ttl_ms;
	*pp = e;
	lru_append(s, e);
	s->n++;
	return len;
}

int auth_token_simple_parse(const char *tok, size_t len, uint64_t *index)
{
	const char *dot = memchr(tok, '.', len);
	uint64_t v = 0;

	if (!dot || memchr(dot + 1, '.', len - (size_t)(dot + 1 - tok)))
		return AUTH_ERR_INVALID_AUTH_TOKEN;
	const char *p = dot + 1, *end = tok + len;
	if (p == end)
		return AUTH_ERR_INVALID_AUTH_TOKEN;
	for (; p < end; p++) {
		if (*p < '0' || *p > '9')
			return AUTH_ERR_INVALID_AUTH_TOKEN;
		unsigned d = (unsigned)(*p - '0');
		if (v > (UINT64_MAX - d) / 10)
			return AUTH_ERR_INVALID_AUTH_TOKEN;
		v = v * 10 + d;
	}
	*index = v;
	return 0;
}

int auth_token_simple_lookup(struct auth_token_simple *s, const char *tok, size_t len, uint64_t now_ms, uint8_t *user,
			     size_t ucap, size_t *ulen, uint64_t *revision)
{
	uint64_t index;

	if (auth_token_simple_parse(tok, len, &index) || len > AUTH_TOKEN_SIMPLE_MAX)
		return AUTH_ERR_INVALID_AUTH_TOKEN;
	struct st_entry *e = *st_slot(s, tok, len);
	if (!e)
		return AUTH_ERR_INVALID_AUTH_TOKEN;
	if (now_ms > e->deadline_ms) {
		st_remove(s, e);
		return AUTH_ERR_INVALID_AUTH_TOKEN;
	}
	if (e->ulen > ucap)
		return -ENOSPC;
	e->deadline_ms = now_ms + s->ttl_ms;
	lru_unlink(s, e);
	lru_append(s, e);
	if (e->ulen)
		memcpy(user, e->user, e->ulen);
	*ulen = e->ulen;
	*revision = e->revision;
	return 0;
}

void auth_token_simple_invalidate_user(struct auth_token_simple *s, const uint8_t *user, size_t ulen)
{
	for (struct st_entry *e = s->head, *next; e; e = next) {
		next = e->next;
		if (e->ulen == ulen && (ulen == 0 || memcmp(e->user, user, ulen) == 0))
			st_remove(s, e);
	}
}

size_t auth_token_simple_expire(struct auth_token_simple *s, uint64_t now_ms)
{
	size_t n = 0;

	while (s->head && now_ms > s->head->deadline_ms) {
		st_remove(s, s->head);
		n++;
	}
	return n;
}

/* ---- base64url (RFC 4648 §5, no padding) ---- */

static const char b64url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

static size_t b64_len(size_t n) { return n / 3 * 4 + (n % 3 ? n % 3 + 1 : 0); }

static void b64_encode(const uint8_t *in, size_t n, char *out)
{
	size_t i = 0, o = 0;

	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
		out[o++] = b64url[v >> 18];
		out[o++] = b64url[(v >> 12) & 63];
		out[o++] = b64url[(v >> 6) & 63];
		out[o++] = b64url[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)in[i] << 16;
		out[o++] = b64url[v >> 18];
		out[o++] = b64url[(v >> 12) & 63];
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
		out[o++] = b64url[v >> 18];
		out[o++] = b64url[(v >> 12) & 63];
		out[o++] = b64url[(v >> 6) & 63];
	}
}

/* Go's base64.RawURLEncoding.DecodeString, not strict: '\r' and '\n' are skipped, no '=',
 * a final group of 2 or 3 characters (unused bits need not be zero), never 1. Returns the
 * bytes written or -1. out holds at least len * 3 / 4 bytes. */
static ssize_t b64_decode(const char *in, size_t len, uint8_t *out)
{
	uint32_t acc = 0;
	size_t o = 0;
	int k = 0;

	for (size_t i = 0; i < len; i++) {
		char c = in[i];
		int v;
		if (c == '\r' || c == '\n')
			continue;
		if (c >= 'A' && c <= 'Z')
			v = c - 'A';
		else if (c >= 'a' && c <= 'z')
			v = c - 'a' + 26;
		else if (c >= '0' && c <= '9')
			v = c - '0' + 52;
		else if (c == '-')
			v = 62;
		else if (c == '_')
			v = 63;
		else
			return -1;
		acc = acc << 6 | (uint32_t)v;
		if (++k == 4) {
			out[o++] = (uint8_t)(acc >> 16);
			out[o++] = (uint8_t)(acc >> 8);
			out[o++] = (uint8_t)acc;
			acc = 0;
			k = 0;
		}
	}
	if (k == 1)
		return -1;
	if (k == 2) {
		out[o++] = (uint8_t)(acc >> 4);
	} else if (k == 3) {
		out[o++] = (uint8_t)(acc >> 10);
		out[o++] = (uint8_t)(acc >> 2);
	}
	return (ssize_t)o;
}

/* ---- UTF-8 ---- */



/* ---- JSON out: Go's encoding/json string escaping (Go 1.22+, HTML-safe) ---- */

/* Writes s as a JSON string (quotes included) into out; returns the length. out holds at
 * least 6 * n + 2 bytes. */
static size_t json_put_string(const uint8_t *s, size_t n, char *out)
{
	static const char hex[] = "0123456789abcdef";
	size_t o = 0;

	out[o++] = '"';
	for (size_t i = 0; i < n;) {
		uint8_t c = s[i];
		if (c < 0x80) {
			i++;
			if (c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&') {
				out[o++] = (char)c;
				continue;
			}
			out[o++] = '\\';
			switch (c) {
			case '"':
			case '\\':
				out[o++] = (char)c;
				break;
			case '\b':
				out[o++] = 'b';
				break;
			case '\f':
				out[o++] = 'f';
				break;
			case '\n':
				out[o++] = 'n';
				break;
			case '\r':
				out[o++] = 'r';
				break;
			case '\t':
				out[o++] = 't';
				break;
			default:
				out[o++] = 'u';
				out[o++] = '0';
				out[o++] = '0';
				out[o++] = hex[c >> 4];
				out[o++] = hex[c & 15];
			}
			continue;
		}
		uint32_t cp;
		size_t l = utf8_len(s + i, n - i, &cp);
		if (l == 0) { /* invalid byte: U+FFFD, as Go writes it */
			memcpy(out + o, "\\ufffd", 6);
			o += 6;
			i++;
			continue;
		}
		if (cp == 0x2028 || cp == 0x2029) {
			memcpy(out + o, cp == 0x2028 ? "\\u2028" : "\\u2029", 6);
			o += 6;
		} else {
			memcpy(out + o, s + i, l);
			o += l;
		}
		i += l;
	}
	out[o++] = '"';
	return o;
}

/* ---- JSON in: one object, its members visited ---- */

enum jv_type { JV_STRING, JV_NUMBER, JV_TRUE, JV_FALSE, JV_NULL, JV_OBJECT, JV_ARRAY };

struct jp {
	const uint8_t *p, *end;
	int depth;
};

#define JSON_DEPTH_MAX 64

static void jp_ws(struct jp *j)
{
	while (j->p < j->end && (*j->p == ' ' || *j->p == '\t' || *j->p == '\n' || *j->p == '\r'))
		j->p++;
}

static int hexval(uint8_t c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static bool jp_hex4(struct jp *j, uint32_t *v)
{
	if (j->end - j->p < 4)
		return false;
	*v = 0;
	for (int i = 0; i < 4; i++) {
		int h = hexval(j->p[i]);
		if (h < 0)
			return false;
		*v = *v << 4 | (uint32_t)h;
	}
	j->p += 4;
	return true;
}

/* A string at j->p (the opening quote): unescaped into out (cap bytes; NULL to skip) with
 * Go's replacements (invalid UTF-8 and lone surrogates become U+FFFD). *olen is set;
 * false when malformed or when out is too small. */
static bool jp_string(struct jp *j, uint8_t *out, size_t cap, size_t *olen)
{
	size_t o = 0;
	uint8_t tmp[4];

	if (j->p >= j->end || *j->p != '"')
		return false;
	j->p++;
	for (;;) {
		if (j->p >= j->end)
			return false;
		uint8_t c = *j->p;
		uint32_t cp;
		size_t l;
		if (c == '"') {
			j->p++;
			break;
		}
		if (c < 0x20)
			return false;
		if (c == '\\') {
			if (j->end - j->p < 2)
				return false;
			uint8_t e = j->p[1];
			j->p += 2;
			switch (e) {
			case '"':
			case '\\':
			case '/':
				cp = e;
				break;
			case 'b':
				cp = '\b';
				break;
			case 'f':
				cp = '\f';
				break;
			case 'n':
				cp = '\n';
				break;
			case 'r':
				cp = '\r';
				break;
			case 't':
				cp = '\t';
				break;
			case 'u':
				if (!jp_hex4(j, &cp))
					return false;
				if (cp >= 0xd800 && cp < 0xdc00) {
					/* a high surrogate: a low one must follow, else U+FFFD */
					uint32_t lo;
					struct jp save = *j;
					if (j->end - j->p >= 6 && j->p[0] == '\\' && j->p[1] == 'u') {
						j->p += 2;
						if (jp_hex4(j, &lo) && lo >= 0xdc00 && lo < 0xe000)
							cp = 0x10000 + ((cp - 0xd800) << 10) + (lo - 0xdc00);
						else {
							*j = save;
							cp = 0xfffd;
						}
					} else {
						cp = 0xfffd;
					}
				} else if (cp >= 0xdc00 && cp < 0xe000) {
					cp = 0xfffd;
				}
				break;
			default:
				return false;
			}
			l = utf8_put(tmp, cp);
		} else if (c < 0x80) {
			tmp[0] = c;
			l = 1;
			j->p++;
		} else {
			l = utf8_len(j->p, (size_t)(j->end - j->p), &cp);
			if (l == 0) {
				j->p++;
				l = utf8_put(tmp, 0xfffd);
			} else {
				memcpy(tmp, j->p, l);
				j->p += l;
			}
		}
		if (out) {
			if (cap - o < l)
				return false;
			memcpy(out + o, tmp, l);
		}
		o += l;
	}
	*olen = o;
	return true;
}

/* A JSON number: its value as a double (false when malformed or out of double's range, as
 * Go's Unmarshal into float64 refuses it). */
static bool jp_number(struct jp *j, double *v)
{
	const uint8_t *s = j->p;
	char buf[64];

	if (j->p < j->end && *j->p == '-')
		j->p++;
	if (j->p >= j->end)
		return false;
	if (*j->p == '0')
		j->p++;
	else if (*j->p >= '1' && *j->p <= '9')
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
			j->p++;
	else
		return false;
	if (j->p < j->end && *j->p == '.') {
		j->p++;
		if (j->p >= j->end || *j->p < '0' || *j->p > '9')
			return false;
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
			j->p++;
	}
	if (j->p < j->end && (*j->p == 'e' || *j->p == 'E')) {
		j->p++;
		if (j->p < j->end && (*j->p == '+' || *j->p == '-'))
			j->p++;
		if (j->p >= j->end || *j->p < '0' || *j->p > '9')
			return false;
		while (j->p < j->end && *j->p >= '0' && *j->p <= '9')
			j->p++;
	}
	size_t n = (size_t)(j->p - s);
	if (n >= sizeof buf)
		return false; /* no claim etcd writes is this long */
	memcpy(buf, s, n);
	buf[n] = 0;
	errno = 0;
	*v = strtod(buf, NULL);
	if (errno == ERANGE && isinf(*v))
		return false;
	return true;
}

static bool jp_value(struct jp *j, enum jv_type *t, double *num);

static bool jp_lit(struct jp *j, const char *lit)
{
	size_t n = strlen(lit);
	if ((size_t)(j->end - j->p) < n || memcmp(j->p, lit, n) != 0)
		return false;
	j->p += n;
	return true;
}

/* Skips an object or array body after its opening bracket. */
static bool jp_container(struct jp *j, bool object)
{
	if (++j->depth > JSON_DEPTH_MAX)
		return false;
	jp_ws(j);
	if (j->p < j->end && *j->p == (object ? '}' : ']')) {
		j->p++;
		j->depth--;
		return true;
	}
	for (;;) {
		enum jv_type t;
		double num;
		size_t l;
		jp_ws(j);
		if (object) {
			if (!jp_string(j, NULL, 0, &l))
				return false;
			jp_ws(j);
			if (j->p >= j->end || *j->p != ':')
				return false;
			j->p++;
			jp_ws(j);
		}
		if (!jp_value(j, &t, &num))
			return false;
		jp_ws(j);
		if (j->p >= j->end)
			return false;
		if (*j->p == ',') {
			j->p++;
			continue;
		}
		if (*j->p != (object ? '}' : ']'))
			return false;
		j->p++;
		j->depth--;
		return true;
	}
}

/* Parses (and skips) one value; strings are checked, not kept. */
static bool jp_value(struct jp *j, enum jv_type *t, double *num)
{
	size_t l;

	if (j->p >= j->end)
		return false;
	switch (*j->p) {
	case '"':
		*t = JV_STRING;
		return jp_string(j, NULL, 0, &l);
	case '{':
		*t = JV_OBJECT;
		j->p++;
		return jp_container(j, true);
	case '[':
		*t = JV_ARRAY;
		j->p++;
		return jp_container(j, false);
	case 't':
		*t = JV_TRUE;
		return jp_lit(j, "true");
	case 'f':
		*t = JV_FALSE;
		return jp_lit(j, "false");
	case 'n':
		*t = JV_NULL;
		return jp_lit(j, "null");
	default:
		*t = JV_NUMBER;
		return jp_number(j, num);
	}
}

/* One member of the top-level object: the key (unescaped) and where its value starts. */
typedef bool (*jp_member_fn)(void *arg, const uint8_t *key, size_t klen, struct jp *j);

/* Parses buf as one JSON object, calling fn for each member with j at its value (fn
 * must consume the value). trailing: bytes after the object are allowed (as Go's
 * json.Decoder, which golang-jwt uses for claims, reads one value and stops). */
static bool jp_object(const uint8_t *buf, size_t len, bool trailing, jp_member_fn fn, void *arg)
{
	struct jp j = { buf, buf + len, 1 };
	uint8_t key[64];

	jp_ws(&j);
	if (j.p >= j.end || *j.p != '{')
		return false;
	j.p++;
	jp_ws(&j);
	if (j.p < j.end && *j.p == '}') {
		j.p++;
	} else {
		for (;;) {
			size_t klen;
			jp_ws(&j);
			struct jp k = j;
			/* keys longer than 64 bytes are none of ours: skip them */
			if (!jp_string(&j, key, sizeof key, &klen)) {
				j = k;
				if (!jp_string(&j, NULL, 0, &klen))
					return false;
				klen = SIZE_MAX;
			}
			jp_ws(&j);
			if (j.p >= j.end || *j.p != ':')
				return false;
			j.p++;
			jp_ws(&j);
			if (!fn(arg, klen == SIZE_MAX ? NULL : key, klen, &j))
				return false;
			jp_ws(&j);
			if (j.p >= j.end)
				return false;
			if (*j.p == ',') {
				j.p++;
				continue;
			}
			if (*j.p != '}')
				return false;
			j.p++;
			break;
		}
	}
	jp_ws(&j);
	return trailing || j.p == j.end;
}

static bool key_is(const uint8_t *k, size_t klen, const char *name)
{
	return k && klen == strlen(name) && memcmp(k, name, klen) == 0;
}

struct jwt_header {
	char alg[16];
	bool has_alg, alg_string;
};

static bool header_member(void *arg, const uint8_t *k, size_t klen, struct jp *j)
{
	struct jwt_header *h = arg;
	enum jv_type t;
	double num;

	if (key_is(k, klen, "alg")) { /* duplicate keys: the last wins, as in Go */
		h->has_alg = true;
		h->alg_string = false;
		if (j->p < j->end && *j->p == '"') {
			size_t l;
			uint8_t buf[sizeof h->alg];
			struct jp save = *j;
			if (jp_string(j, buf, sizeof h->alg - 1, &l)) {
				memcpy(h->alg, buf, l);
				h->alg[l] = 0;
				h->alg_string = true;
				return true;
			}
			*j = save; /* too long for any method: a string all the same */
			h->alg[0] = 0;
			h->alg_string = true;
			return jp_string(j, NULL, 0, &l);
		}
	}
	return jp_value(j, &t, &num);
}

struct jwt_claims {
	uint8_t *user;
	size_t ucap, ulen;
	bool user_ok, has_rev, rev_ok;
	double rev;
	/* exp, nbf, iat: present, a number, value */
	bool has[3], num[3];
	double t[3];
};

static bool claims_member(void *arg, const uint8_t *k, size_t klen, struct jp *j)
{
	struct jwt_claims *c = arg;
	static const char *const times[3] = { "exp", "nbf", "iat" };
	enum jv_type t;
	double num = 0;

	if (key_is(k, klen, "username")) {
		c->user_ok = false;
		if (j->p < j->end && *j->p == '"') {
			struct jp save = *j;
			if (jp_string(j, c->user, c->ucap, &c->ulen)) {
				c->user_ok = true;
				return true;
			}
			*j = save; /* a valid string longer than ucap: parsed, not kept */
			size_t l;
			return jp_string(j, NULL, 0, &l);
		}
		return jp_value(j, &t, &num);
	}
	if (key_is(k, klen, "revision")) {
		c->has_rev = true;
		if (!jp_value(j, &t, &num))
			return false;
		c->rev_ok = t == JV_NUMBER;
		c->rev = num;
		return true;
	}
	for (int i = 0; i < 3; i++) {
		if (key_is(k, klen, times[i])) {
			if (!jp_value(j, &t, &num))
				return false;
			c->has[i] = true;
			c->num[i] = t == JV_NUMBER;
			c->t[i] = num;
			return true;
		}
	}
	return jp_value(j, &t, &num);
}

/* ---- JWT ---- */

enum jwt_kind { JWT_HMAC, JWT_RSA, JWT_PSS, JWT_ECDSA, JWT_UNSUPPORTED };

struct jwt_method {
	const char *name;
	enum jwt_kind kind;
	enum wc_HashType hash;
	int mgf;
	int curve;
	int key_bytes; /* ECDSA: bytes of r and of s */
	const char *go_type; /* for "unsupported signing method: %s" */
};

static const struct jwt_method jwt_methods[] = {
	{ "HS256", JWT_HMAC, WC_HASH_TYPE_SHA256, 0, 0, 0, NULL },
	{ "HS384", JWT_HMAC, WC_HASH_TYPE_SHA384, 0, 0, 0, NULL },
	{ "HS512", JWT_HMAC, WC_HASH_TYPE_SHA512, 0, 0, 0, NULL },
	{ "RS256", JWT_RSA, WC_HASH_TYPE_SHA256, 0, 0, 0, NULL },
	{ "RS384", JWT_RSA, WC_HASH_TYPE_SHA384, 0, 0, 0, NULL },
	{ "RS512", JWT_RSA, WC_HASH_TYPE_SHA512, 0, 0, 0, NULL },
	{ "PS256", JWT_PSS, WC_HASH_TYPE_SHA256, WC_MGF1SHA256, 0, 0, NULL },
	{ "PS384", JWT_PSS, WC_HASH_TYPE_SHA384, WC_MGF1SHA384, 0, 0, NULL },
	{ "PS512", JWT_PSS, WC_HASH_TYPE_SHA512, WC_MGF1SHA512, 0, 0, NULL },
	{ "ES256", JWT_ECDSA, WC_HASH_TYPE_SHA256, 0, ECC_SECP256R1, 32, NULL },
	{ "ES384", JWT_ECDSA, WC_HASH_TYPE_SHA384, 0, ECC_SECP384R1, 48, NULL },
	{ "ES512", JWT_ECDSA, WC_HASH_TYPE_SHA512, 0, ECC_SECP521R1, 66, NULL },
	{ "EdDSA", JWT_UNSUPPORTED, WC_HASH_TYPE_NONE, 0, 0, 0, "unsupported signing method: *jwt.SigningMethodEd25519" },
	{ "none", JWT_UNSUPPORTED, WC_HASH_TYPE_NONE, 0, 0, 0, "unsupported signing method: *jwt.signingMethodNone" },
};

static const struct jwt_method *jwt_method_find(const char *name)
{
	for (size_t i = 0; i < sizeof jwt_methods / sizeof jwt_methods[0]; i++)
		if (strcmp(jwt_methods[i].name, name) == 0)
			return &jwt_methods[i];
	return NULL;
}

#define SIG_MAX 1024 /* RSA up to 8192 bits; ECDSA P-521: 132 */
#define HMAC_KEY_MAX 65536

struct auth_token_jwt {
	const struct jwt_method *m;
	int64_t ttl_ns;
	bool verify_only;
	WC_RNG rng;
	bool has_rng, has_rsa, has_ecc;
	RsaKey rsa;
	ecc_key ecc;
	uint8_t *hmac_key;
	size_t hmac_len;
	char header[64]; /* base64url of {"alg":…,"typ":"JWT"} */
	size_t header_len;
};

void auth_token_jwt_free(struct auth_token_jwt *j)
{
	if (!j)
		return;
	if (j->has_rsa)
		wc_FreeRsaKey(&j->rsa);
	if (j->has_ecc)
		wc_ecc_free(&j->ecc);
	if (j->has_rng)
		wc_FreeRng(&j->rng);
	if (j->hmac_key) {
		explicit_bzero(j->hmac_key, j->hmac_len);
		free(j->hmac_key);
	}
	free(j);
}

bool auth_token_jwt_verify_only(const struct auth_token_jwt *j) { return j->verify_only; }

/* PEM (any of the given types, tried in order) to DER; NULL when none fits. */
static DerBuffer *pem_der(const uint8_t *pem, size_t len, const int *types, int ntypes)
{
	if (len > (1u << 20))
		return NULL;
	for (int i = 0; i < ntypes; i++) {
		DerBuffer *der = NULL;
		int fmt = 0;
		if (wc_PemToDer(pem, (long)len, types[i], &der, NULL, NULL, &fmt) == 0 && der)
			return der;
		if (der)
			wc_FreeDer(&der);
	}
	return NULL;
}

/* Offset of the key inside a PKCS#8 wrapper, or 0 when der is not one. */
static word32 pkcs8_offset(DerBuffer *der)
{
	word32 idx = 0;
	if (wc_GetPkcs8TraditionalOffset(der->buffer, &idx, der->length) < 0)
		return 0;
	return idx;
}

static const int priv_types[] = { PRIVATEKEY_TYPE, ECC_PRIVATEKEY_TYPE };
static const int pub_types[] = { PUBLICKEY_TYPE, RSA_PUBLICKEY_TYPE, ECC_PUBLICKEY_TYPE };

/* Loads an RSA key: 0, or an error with *detail as golang-jwt words it. */
static int load_rsa(RsaKey *key, const uint8_t *pem, size_t len, bool priv, const char **detail)
{
	DerBuffer *der = pem_der(pem, len, priv ? priv_types : pub_types, priv ? 2 : 3);
	int rc;

	if (!der) {
		*detail = "Invalid Key: Key must be a PEM encoded PKCS1 or PKCS8 key";
		return AUTH_ERR_INVALID_KEY;
	}
	if (wc_InitRsaKey(key, NULL) != 0) {
		wc_FreeDer(&der);
		*detail = "wolfCrypt: cannot initialise an RSA key";
		return AUTH_ERR_INVALID_KEY;
	}
	word32 idx = priv ? pkcs8_offset(der) : 0;
	rc = priv ? wc_RsaPrivateKeyDecode(der->buffer, &idx, key, der->length)
		  : wc_RsaPublicKeyDecode(der->buffer, &idx, key, der->length);
	wc_FreeDer(&der);
	if (rc != 0) {
		wc_FreeRsaKey(key);
		*detail = priv ? "key is not a valid RSA private key" : "key is not a valid RSA public key";
		return AUTH_ERR_INVALID_KEY;
	}
	return 0;
}

static int load_ecc(ecc_key *key, const uint8_t *pem, size_t len, bool priv, const char **detail)
{
	DerBuffer *der = pem_der(pem, len, priv ? priv_types : pub_types, priv ? 2 : 3);
	int rc;

	if (!der) {
		*detail = "Invalid Key: Key must be a PEM encoded PKCS1 or PKCS8 key";
		return AUTH_ERR_INVALID_KEY;
	}
	if (wc_ecc_init(key) != 0) {
		wc_FreeDer(&der);
		*detail = "wolfCrypt: cannot initialise an ECC key";
		return AUTH_ERR_INVALID_KEY;
	}
	word32 idx = priv ? pkcs8_offset(der) : 0;
	rc = priv ? wc_EccPrivateKeyDecode(der->buffer, &idx, key, der->length)
		  : wc_EccPublicKeyDecode(der->buffer, &idx, key, der->length);
	wc_FreeDer(&der);
	if (rc == 0 && priv && key->type == ECC_PRIVATEKEY_ONLY)
		rc = wc_ecc_make_pub(key, NULL);
	if (rc != 0) {
		wc_ecc_free(key);
		*detail = priv ? "key is not a valid ECDSA private key" : "key is not a valid ECDSA public key";
		return AUTH_ERR_INVALID_KEY;
	}
	return 0;
}

static bool rsa_same(RsaKey *a, RsaKey *b)
{
	uint8_t ea[16], eb[16], na[SIG_MAX], nb[SIG_MAX];
	word32 eal = sizeof ea, ebl = sizeof eb, nal = sizeof na, nbl = sizeof nb;

	if (wc_RsaFlattenPublicKey(a, ea, &eal, na, &nal) || wc_RsaFlattenPublicKey(b, eb, &ebl, nb, &nbl))
		return false;
	return eal == ebl && nal == nbl && memcmp(ea, eb, eal) == 0 && memcmp(na, nb, nal) == 0;
}

static bool ecc_same(ecc_key *a, ecc_key *b)
{
	uint8_t xa[160], xb[160];
	word32 la = sizeof xa, lb = sizeof xb;

	if (wc_ecc_export_x963(a, xa, &la) || wc_ecc_export_x963(b, xb, &lb))
		return false;
	return la == lb && memcmp(xa, xb, la) == 0;
}

struct auth_token_jwt *auth_token_jwt_new_pem(const char *sign_method, const uint8_t *pub, size_t pub_len,
					      const uint8_t *priv, size_t priv_len, int64_t ttl_ns, int *err,
					      const char **detail)
{
	const struct jwt_method *m = jwt_method_find(sign_method ? sign_method : "");
	struct auth_token_jwt *j;
	const char *dummy;
	int rc = 0;

	if (!detail)
		detail = &dummy;
	*detail = "";
	if (!m) {
		*err = AUTH_ERR_INVALID_AUTH_OPTS;
		*detail = "auth: invalid auth signature method";
		return NULL;
	}
	if (m->kind == JWT_UNSUPPORTED) {
		*err = AUTH_ERR_UNSUPPORTED_METHOD;
		*detail = m->go_type;
		return NULL;
	}
	j = st_calloc(1, sizeof *j);
	j->m = m;
	j->ttl_ns = ttl_ns;
	if (wc_InitRng(&j->rng) != 0) {
		rc = AUTH_ERR_INVALID_KEY;
		*detail = "wolfCrypt: no random number generator";
		goto fail;
	}
	j->has_rng = true;
	if (m->kind == JWT_HMAC) {
		if (!priv || priv_len == 0) {
			rc = AUTH_ERR_MISSING_KEY;
			goto fail;
		}
		if (priv_len > HMAC_KEY_MAX) {
			rc = AUTH_ERR_INVALID_KEY;
			*detail = "HMAC key too long";
			goto fail;
		}
		j->hmac_key = st_calloc(priv_len, 1);
		memcpy(j->hmac_key, priv, priv_len);
		j->hmac_len = priv_len;
	} else if (m->kind == JWT_RSA || m->kind == JWT_PSS) {
		RsaKey pk;
		bool has_pub = false;
		if (priv && priv_len) {
			if ((rc = load_rsa(&j->rsa, priv, priv_len, true, detail)))
				goto fail;
			j->has_rsa = true;
		}
		if (pub && pub_len) {
			if ((rc = load_rsa(&pk, pub, pub_len, false, detail)))
				goto fail;
			has_pub = true;
		}
		if (!j->has_rsa && !has_pub) {
			rc = AUTH_ERR_MISSING_KEY;
			goto fail;
		}
		if (!j->has_rsa) {
			j->rsa = pk; /* public key only: verify-only */
			j->has_rsa = true;
			j->verify_only = true;
		} else if (has_pub) {
			bool same = rsa_same(&j->rsa, &pk);
			wc_FreeRsaKey(&pk);
			if (!same) {
				rc = AUTH_ERR_KEY_MISMATCH;
				goto fail;
			}
		}
		if (!j->verify_only && wc_RsaSetRNG(&j->rsa, &j->rng) != 0) {
			rc = AUTH_ERR_INVALID_KEY;
			*detail = "wolfCrypt: cannot attach the RNG to the RSA key";
			goto fail;
		}
		if (wc_RsaEncryptSize(&j->rsa) > SIG_MAX) {
			rc = AUTH_ERR_INVALID_KEY;
			*detail = "RSA key longer than 8192 bits";
			goto fail;
		}
	} else {
		ecc_key pk;
		bool has_pub = false;
		if (priv && priv_len) {
			if ((rc = load_ecc(&j->ecc, priv, priv_len, true, detail)))
				goto fail;
			j->has_ecc = true;
		}
		if (pub && pub_len) {
			if ((rc = load_ecc(&pk, pub, pub_len, false, detail)))
				goto fail;
			has_pub = true;
		}
		if (!j->has_ecc && !has_pub) {
			rc = AUTH_ERR_MISSING_KEY;
			goto fail;
		}
		if (!j->has_ecc) {
			j->ecc = pk;
			j->has_ecc = true;
			j->verify_only = true;
		} else if (has_pub) {
			bool same = ecc_same(&j->ecc, &pk);
			wc_ecc_free(&pk);
			if (!same) {
				rc = AUTH_ERR_KEY_MISMATCH;
				goto fail;
			}
		}
		/* etcd would start and fail every sign or verify; refusing at start is kinder */
		if (!j->ecc.dp || j->ecc.dp->id != m->curve) {
			rc = AUTH_ERR_INVALID_KEY;
			*detail = "ECDSA key's curve does not match sign-method";
			goto fail;
		}
	}
	char hdr[48];
	int hl = snprintf(hdr, sizeof hdr, "{\"alg\":\"%s\",\"typ\":\"JWT\"}", m->name);
	b64_encode((const uint8_t *)hdr, (size_t)hl, j->header);
	j->header_len = b64_len((size_t)hl);
	return j;
fail:
	if (!*detail || !**detail)
		*detail = auth_strerror(rc);
	*err = rc;
	auth_token_jwt_free(j);
	return NULL;
}

/* Reads a whole file (at most 1 MiB) into a malloc'd buffer. */
static uint8_t *read_file(const char *path, size_t *len)
{
	FILE *f = fopen(path, "rb");
	uint8_t *buf;
	size_t cap = 1u << 20, n;

	if (!f)
		return NULL;
	buf = st_calloc(cap + 1, 1);
	n = fread(buf, 1, cap + 1, f);
	bool bad = ferror(f) || n > cap;
	fclose(f);
	if (bad) {
		free(buf);
		return NULL;
	}
	*len = n;
	return buf;
}

struct auth_token_jwt *auth_token_jwt_new(const struct auth_token_opts *o, int *err, const char **detail)
{
	uint8_t *pub = NULL, *priv = NULL;
	size_t pub_len = 0, priv_len = 0;
	struct auth_token_jwt *j = NULL;
	const char *dummy;

	if (!detail)
		detail = &dummy;
	if (o->pub_key[0] && !(pub = read_file(o->pub_key, &pub_len))) {
		*err = AUTH_ERR_KEY_FILE;
		*detail = "cannot read pub-key";
		goto out;
	}
	if (o->priv_key[0] && !(priv = read_file(o->priv_key, &priv_len))) {
		*err = AUTH_ERR_KEY_FILE;
		*detail = "cannot read priv-key";
		goto out;
	}
	j = auth_token_jwt_new_pem(o->sign_method, pub, pub_len, priv, priv_len, o->ttl_ns, err, detail);
out:
	free(pub);
	if (priv) {
		explicit_bzero(priv, priv_len);
		free(priv);
	}
	return j;
}

/* Signs in (the signing input) into sig; returns its length or -EIO. */
static int jwt_sign_bytes(struct auth_token_jwt *j, const uint8_t *in, size_t len, uint8_t sig[SIG_MAX])
{
	uint8_t digest[WC_MAX_DIGEST_SIZE];
	int dlen = wc_HashGetDigestSize(j->m->hash);

	if (j->m->kind == JWT_HMAC) {
		Hmac h;
		int rc = -EIO;
		if (wc_HmacInit(&h, NULL, INVALID_DEVID) != 0)
			return -EIO;
		if (wc_HmacSetKey(&h, (int)j->m->hash, j->hmac_key, (word32)j->hmac_len) == 0 &&
		    wc_HmacUpdate(&h, in, (word32)len) == 0 && wc_HmacFinal(&h, sig) == 0)
			rc = dlen;
		wc_HmacFree(&h);
		return rc;
	}
	if (dlen <= 0 || wc_Hash(j->m->hash, in, (word32)len, digest, (word32)dlen) != 0)
		return -EIO;
	if (j->m->kind == JWT_RSA) {
		uint8_t enc[WC_MAX_DIGEST_SIZE + 32];
		word32 el = wc_EncodeSignature(enc, digest, (word32)dlen, wc_HashGetOID(j->m->hash));
		int rc = wc_RsaSSL_Sign(enc, el, sig, SIG_MAX, &j->rsa, &j->rng);
		return rc > 0 ? rc : -EIO;
	}
	if (j->m->kind == JWT_PSS) {
		int rc = wc_RsaPSS_Sign_ex(digest, (word32)dlen, sig, SIG_MAX, j->m->hash, j->m->mgf,
					   RSA_PSS_SALT_LEN_DEFAULT, &j->rsa, &j->rng);
		return rc > 0 ? rc : -EIO;
	}
	/* ECDSA: DER from wolfCrypt, r || s of key_bytes each in the token (RFC 7518 3.4) */
	uint8_t der[SIG_MAX], r[80], s[80];
	word32 dl = sizeof der, rl = sizeof r, sl = sizeof s;
	int kb = j->m->key_bytes;
	if (wc_ecc_sign_hash(digest, (word32)dlen, der, &dl, &j->rng, &j->ecc) != 0 ||
	    wc_ecc_sig_to_rs(der, dl, r, &rl, s, &sl) != 0 || rl > (word32)kb || sl > (word32)kb)
		return -EIO;
	memset(sig, 0, (size_t)(2 * kb));
	memcpy(sig + kb - rl, r, rl);
	memcpy(sig + 2 * kb - sl, s, sl);
	return 2 * kb;
}

ssize_t auth_token_jwt_sign(struct auth_token_jwt *j, const uint8_t *user, size_t ulen, uint64_t revision,
			    uint64_t now_ms, char *out, size_t cap)
{
	uint8_t sig[SIG_MAX];
	char *claims;
	size_t cl, need;
	ssize_t rc;

	if (j->verify_only)
		return AUTH_ERR_VERIFY_ONLY;
	if (ulen > AUTH_TOKEN_JWT_MAX)
		return -ENOSPC;
	/* exp = time.Now().Add(ttl).Unix(): whole seconds, rounded down */
	__int128 t_ns = (__int128)now_ms * 1000000 + j->ttl_ns;
	int64_t exp = (int64_t)(t_ns >= 0 ? t_ns / 1000000000 : -((-t_ns + 999999999) / 1000000000));
	/* {"exp":<20>,"revision":<20>,"username":<6 per byte + 2>} */
	claims = st_calloc(96 + 6 * ulen, 1);
	cl = (size_t)sprintf(claims, "{\"exp\":%lld,\"revision\":%llu,\"username\":", (long long)exp,
			     (unsigned long long)revision);
	cl += json_put_string(user, ulen, claims + cl);
	claims[cl++] = '}';
	size_t cb = b64_len(cl);
	need = j->header_len + 1 + cb;
	if (need + 1 > cap) {
		rc = -ENOSPC;
		goto out;
	}
	memcpy(out, j->header, j->header_len);
	out[j->header_len] = '.';
	b64_encode((const uint8_t *)claims, cl, out + j->header_len + 1);
	int sl = jwt_sign_bytes(j, (const uint8_t *)out, need, sig);
	if (sl < 0) {
		rc = sl;
		goto out;
	}
	if (need + 1 + b64_len((size_t)sl) + 1 > cap) {
		rc = -ENOSPC;
		goto out;
	}
	out[need] = '.';
	b64_encode(sig, (size_t)sl, out + need + 1);
	need += 1 + b64_len((size_t)sl);
	out[need] = 0;
	rc = (ssize_t)need;
out:
	free(claims);
	return rc;
}

/* Checks sig over in; true when it verifies. */
static bool jwt_verify_bytes(struct auth_token_jwt *j, const uint8_t *in, size_t len, const uint8_t *sig, size_t slen)
{
	uint8_t digest[WC_MAX_DIGEST_SIZE];
	int dlen = wc_HashGetDigestSize(j->m->hash);

	if (j->m->kind == JWT_HMAC) {
		uint8_t mac[SIG_MAX];
		unsigned char diff = 0;
		if (slen != (size_t)dlen || jwt_sign_bytes(j, in, len, mac) != dlen)
			return false;
		for (int i = 0; i < dlen; i++)
			diff |= mac[i] ^ sig[i];
		return diff == 0;
	}
	if (dlen <= 0 || wc_Hash(j->m->hash, in, (word32)len, digest, (word32)dlen) != 0)
		return false;
	if (j->m->kind == JWT_RSA || j->m->kind == JWT_PSS) {
		uint8_t buf[SIG_MAX], dec[SIG_MAX];
		if (slen != (size_t)wc_RsaEncryptSize(&j->rsa))
			return false; /* Go's rsa package wants exactly the modulus size */
		memcpy(buf, sig, slen);
		if (j->m->kind == JWT_PSS)
			return wc_RsaPSS_VerifyCheck(buf, (word32)slen, dec, sizeof dec, digest, (word32)dlen,
						     j->m->hash, j->m->mgf, &j->rsa) > 0;
		uint8_t enc[WC_MAX_DIGEST_SIZE + 32];
		word32 el = wc_EncodeSignature(enc, digest, (word32)dlen, wc_HashGetOID(j->m->hash));
		int n = wc_RsaSSL_Verify(buf, (word32)slen, dec, sizeof dec, &j->rsa);
		return n == (int)el && memcmp(dec, enc, el) == 0;
	}
	int kb = j->m->key_bytes, res = 0;
	uint8_t der[SIG_MAX];
	word32 dl = sizeof der;
	if (slen != (size_t)(2 * kb))
		return false;
	if (wc_ecc_rs_raw_to_sig(sig, (word32)kb, sig + kb, (word32)kb, der, &dl) != 0)
		return false;
	return wc_ecc_verify_hash(der, dl, digest, (word32)dlen, &res, &j->ecc) == 0 && res == 1;
}

/* Go's time.Unix(floor(f)) compared at whole seconds, as golang-jwt v4's MapClaims. */
static double floor_s(double f) { return floor(f); }

int auth_token_jwt_verify(struct auth_token_jwt *j, const char *tok, size_t len, uint64_t now_ms, uint8_t *user,
			  size_t ucap, size_t *ulen, uint64_t *revision)
{
	uint8_t buf[AUTH_TOKEN_JWT_MAX / 4 * 3 + 3], none;
	const char *d1, *d2;
	ssize_t n;

	if (!user) { /* no room: only an empty user name fits */
		user = &none;
		ucap = 0;
	}

	if (len > AUTH_TOKEN_JWT_MAX)
		return AUTH_ERR_INVALID_AUTH_TOKEN;
	/* exactly three segments */
	d1 = memchr(tok, '.', len);
	if (!d1)
		return AUTH_ERR_INVALID_AUTH_TOKEN;
	d2 = memchr(d1 + 1, '.', len - (size_t)(d1 + 1 - tok));
	if (!d2 || memchr(d2 + 1, '.', len - (size_t)(d2 + 1 - tok)))
		return AUTH_ERR_INVALID_AUTH_TOKEN;
	/* header: alg must be a string naming the configured method */
	n = b64_decode(tok, (size_t)(d1 - tok), buf);
	if (n < 0)
		return AUTH_ERR_INVALID_AUTH_TOKEN;
	struct jwt_header h = { .has_alg = false };
	if (!jp_object(buf, (size_t)n, false, header_member, &h) || !h.has_alg || !h.alg_string ||
	    strcmp(h.alg, j->m->name) != 0)
		return AUTH_ERR_INVALID_AUTH_TOKEN;
	/* signature over "header.claims" as sent */
	n = b64_decode(d2 + 1, len - (size_t)(d2 + 1 - tok), buf);
	if (n < 0 || n > SIG_MAX)
		return AUTH_ERR_INVALID_AUTH_TOKEN;
	if (!jwt_verify_bytes(j, (const uint8_t *)tok, (size_t)(d2 - tok), buf, (size_t)n))
		return AUTH_ERR_INVALID_AUTH_TOKEN;
	/* claims */
	n = b64_decode(d1 + 1, (size_t)(d2 - d1 - 1), buf);
	if (n < 0)
		return AUTH_ERR_INVALID_AUTH_TOKEN;
	struct jwt_claims c = { .user = user, .ucap = ucap };
	if (!jp_object(buf, (size_t)n, true, claims_member, &c))
		return AUTH_ERR_INVALID_AUTH_TOKEN;
	double now_s = (double)(now_ms / 1000);
	if (c.has[0]) { /* exp: valid while now < exp; 0 means none */
		if (!c.num[0] || (c.t[0] != 0 && !(now_s < floor_s(c.t[0]))))
			return AUTH_ERR_INVALID_AUTH_TOKEN;
	}
	for (int i = 1; i < 3; i++) /* nbf, iat: valid once now >= them; 0 means none */
		if (c.has[i] && (!c.num[i] || (c.t[i] != 0 && !(now_s >= floor_s(c.t[i])))))
			return AUTH_ERR_INVALID_AUTH_TOKEN;
	if (!c.user_ok || !c.has_rev || !c.rev_ok)
		return AUTH_ERR_INVALID_AUTH_TOKEN;
	/* uint64(float64) in Go; values a uint64 cannot hold are refused here */
	if (!(c.rev >= 0) || c.rev >= 18446744073709551616.0)
		return AUTH_ERR_INVALID_AUTH_TOKEN;
	*revision = (uint64_t)c.rev;
	*ulen = c.ulen;
	return 0;
}
