/* protobuf-c <-> JSON in the shape of etcd's grpc-gateway (protojson). See pbjson.h.
 *
 * One codec for every message: both directions walk the ProtobufCMessageDescriptor. The
 * marshaller appends into one caller-owned buffer (reserve, then write; no allocation per
 * field). The parser first scans the whole value iteratively as encoding/json does (only
 * to find JSON nested past PBJSON_DEPTH_MAX before anything else), then is a recursive
 * descent whose recursion follows message nesting only, bounded by PBJSON_MSG_DEPTH_MAX
 * (values of unknown fields are skipped iteratively); every string is scanned (escapes, control characters, UTF-8) before anything is
 * allocated, so arbitrary input ends in a clean error. Allocation goes through the caller's
 * ProtobufCAllocator (an arena in the server), and the message under construction is kept
 * consistent (arrays and their counts set together) so that protobuf-c's free_unpacked can
 * release a half-built message when the malloc allocator is used.
 *
 * Field presence, as protojson sees protobuf-c's labels: LABEL_NONE (proto3 implicit) is
 * written unless at its zero value; LABEL_OPTIONAL by its has_ flag (or non-NULL pointer);
 * oneof members when their case is set; repeated when non-empty; REQUIRED always.
 */
#include "core/pbjson.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/utf8.h"

/* ---- output buffer ---- */

static int reserve(struct pbjson_buf *b, size_t n)
{
	size_t need = b->len + n + 1;
	if (need < n)
		return -ENOBUFS;
	if (b->max && need > b->max + 1)
		return -ENOBUFS;
	if (need <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap * 2 : 256;
	if (cap < need)
		cap = need;
	if (b->max && cap > b->max + 1)
		cap = b->max + 1;
	char *p = realloc(b->p, cap);
	if (!p)
		return -ENOMEM;
	b->p = p;
	b->cap = cap;
	return 0;
}

static int put(struct pbjson_buf *b, const void *d, size_t n)
{
	int rc = reserve(b, n);
	if (rc < 0)
		return rc;
	memcpy(b->p + b->len, d, n);
	b->len += n;
	b->p[b->len] = 0;
	return 0;
}

static int putc_(struct pbjson_buf *b, char ch)
{
	return put(b, &ch, 1);
}

static int puts_(struct pbjson_buf *b, const char *s)
{
	return put(b, s, strlen(s));
}

int pbjson_put_raw(struct pbjson_buf *b, const void *d, size_t n)
{
	return put(b, d, n);
}

static const char B64[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int pbjson_put_base64(struct pbjson_buf *b, const uint8_t *d, size_t n)
{
	size_t out = (n + 2) / 3 * 4;
	int rc = reserve(b, out);
	if (rc < 0)
		return rc;
	char *o = b->p + b->len;
	size_t i = 0;
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8 | d[i + 2];
		*o++ = B64[v >> 18];
		*o++ = B64[(v >> 12) & 63];
		*o++ = B64[(v >> 6) & 63];
		*o++ = B64[v & 63];
	}
	if (n - i == 1) {
		uint32_t v = (uint32_t)d[i] << 16;
		*o++ = B64[v >> 18];
		*o++ = B64[(v >> 12) & 63];
		*o++ = '=';
		*o++ = '=';
	} else if (n - i == 2) {
		uint32_t v = (uint32_t)d[i] << 16 | (uint32_t)d[i + 1] << 8;
		*o++ = B64[v >> 18];
		*o++ = B64[(v >> 12) & 63];
		*o++ = B64[(v >> 6) & 63];
		*o++ = '=';
	}
	b->len += out;
	b->p[b->len] = 0;
	return 0;
}


int pbjson_put_string(struct pbjson_buf *b, const char *str, size_t n, unsigned flags)
{
	const uint8_t *s = (const uint8_t *)str;
	/* worst case: every byte becomes \u00XX (6) or U+FFFD (3) */
	int rc = reserve(b, n * 6 + 2);
	if (rc < 0)
		return rc;
	char *o = b->p + b->len;
	*o++ = '"';
	size_t i = 0;
	while (i < n) {
		uint8_t ch = s[i];
		if (ch >= 0x20 && ch < 0x80 && ch != '"' && ch != '\\' &&
		    !((flags & PBJSON_STREAM) && (ch == '<' || ch == '>' || ch == '&'))) {
			*o++ = (char)ch;
			i++;
			continue;
		}
		if (ch < 0x80) {
			*o++ = '\\';
			switch (ch) {
			case '"': *o++ = '"'; break;
			case '\\': *o++ = '\\'; break;
			case '\b': *o++ = 'b'; break;
			case '\f': *o++ = 'f'; break;
			case '\n': *o++ = 'n'; break;
			case '\r': *o++ = 'r'; break;
			case '\t': *o++ = 't'; break;
			default:
				o += sprintf(o, "u%04x", ch);
			}
			i++;
			continue;
		}
		uint32_t cp;
		size_t l = utf8_len(s + i, n - i, &cp);
		if (l == 0) {
			memcpy(o, "\xef\xbf\xbd", 3);
			o += 3;
			i++;
			continue;
		}
		if ((flags & PBJSON_STREAM) && (cp == 0x2028 || cp == 0x2029)) {
			o += sprintf(o, "\\u%04x", cp);
		} else {
			memcpy(o, s + i, l);
			o += l;
		}
		i += l;
	}
	*o++ = '"';
	b->len = (size_t)(o - b->p);
	b->p[b->len] = 0;
	return 0;
}

/* ---- marshal ---- */

static size_t elem_size(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_FLOAT:
	case PROTOBUF_C_TYPE_ENUM:
		return 4;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_DOUBLE:
		return 8;
	case PROTOBUF_C_TYPE_BOOL:
		return sizeof(protobuf_c_boolean);
	case PROTOBUF_C_TYPE_STRING:
		return sizeof(char *);
	case PROTOBUF_C_TYPE_BYTES:
		return sizeof(ProtobufCBinaryData);
	case PROTOBUF_C_TYPE_MESSAGE:
		return sizeof(ProtobufCMessage *);
	}
	return 0;
}

static bool is_zero(const ProtobufCFieldDescriptor *f, const void *p)
{
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_ENUM:
		return *(const uint32_t *)p == 0;
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		return *(const uint64_t *)p == 0;
	case PROTOBUF_C_TYPE_FLOAT:
		return *(const float *)p == 0 && !signbit(*(const float *)p);
	case PROTOBUF_C_TYPE_DOUBLE:
		return *(const double *)p == 0 && !signbit(*(const double *)p);
	case PROTOBUF_C_TYPE_BOOL:
		return *(const protobuf_c_boolean *)p == 0;
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(char *const *)p;
		return s == NULL || s[0] == 0;
	}
	case PROTOBUF_C_TYPE_BYTES:
		return ((const ProtobufCBinaryData *)p)->len == 0;
	case PROTOBUF_C_TYPE_MESSAGE:
		return *(ProtobufCMessage *const *)p == NULL;
	}
	return true;
}

static int marshal_message(struct pbjson_buf *b, const ProtobufCMessage *m, unsigned flags, int depth);

static int put_float(struct pbjson_buf *b, double v, bool is_float)
{
	if (isnan(v))
		return puts_(b, "\"NaN\"");
	if (isinf(v))
		return puts_(b, v > 0 ? "\"Infinity\"" : "\"-Infinity\"");
	char tmp[40];
	/* shortest representation that reads back exactly */
	int prec = is_float ? 6 : 15;
	for (;; prec++) {
		snprintf(tmp, sizeof(tmp), "%.*g", prec, v);
		if (is_float ? (float)strtod(tmp, NULL) == (float)v : strtod(tmp, NULL) == v)
			break;
		if (prec >= 17)
			break;
	}
	return puts_(b, tmp);
}

static int marshal_value(struct pbjson_buf *b, const ProtobufCFieldDescriptor *f, const void *p, unsigned flags,
			 int depth)
{
	char tmp[32];
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
		snprintf(tmp, sizeof(tmp), "%d", *(const int32_t *)p);
		return puts_(b, tmp);
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
		snprintf(tmp, sizeof(tmp), "%u", *(const uint32_t *)p);
		return puts_(b, tmp);
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
		snprintf(tmp, sizeof(tmp), "\"%lld\"", (long long)*(const int64_t *)p);
		return puts_(b, tmp);
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
		snprintf(tmp, sizeof(tmp), "\"%llu\"", (unsigned long long)*(const uint64_t *)p);
		return puts_(b, tmp);
	case PROTOBUF_C_TYPE_FLOAT:
		return put_float(b, *(const float *)p, true);
	case PROTOBUF_C_TYPE_DOUBLE:
		return put_float(b, *(const double *)p, false);
	case PROTOBUF_C_TYPE_BOOL:
		return puts_(b, *(const protobuf_c_boolean *)p ? "true" : "false");
	case PROTOBUF_C_TYPE_ENUM: {
		int32_t v = *(const int32_t *)p;
		const ProtobufCEnumValue *ev = f->descriptor
						       ? protobuf_c_enum_descriptor_get_value(f->descriptor, v)
						       : NULL;
		if (ev) {
			int rc = putc_(b, '"');
			if (rc == 0)
				rc = puts_(b, ev->name);
			if (rc == 0)
				rc = putc_(b, '"');
			return rc;
		}
		snprintf(tmp, sizeof(tmp), "%d", v);
		return puts_(b, tmp);
	}
	case PROTOBUF_C_TYPE_STRING: {
		const char *s = *(char *const *)p;
		return pbjson_put_string(b, s ? s : "", s ? strlen(s) : 0, flags);
	}
	case PROTOBUF_C_TYPE_BYTES: {
		const ProtobufCBinaryData *bd = p;
		int rc = putc_(b, '"');
		if (rc == 0)
			rc = pbjson_put_base64(b, bd->data, bd->len);
		if (rc == 0)
			rc = putc_(b, '"');
		return rc;
	}
	case PROTOBUF_C_TYPE_MESSAGE: {
		const ProtobufCMessage *sub = *(ProtobufCMessage *const *)p;
		if (!sub)
			return puts_(b, "{}");
		return marshal_message(b, sub, flags, depth + 1);
	}
	}
	return -EINVAL;
}

static int put_sep(struct pbjson_buf *b, unsigned flags)
{
	return flags & PBJSON_COMMA_SPACE ? put(b, ", ", 2) : putc_(b, ',');
}

static int marshal_message(struct pbjson_buf *b, const ProtobufCMessage *m, unsigned flags, int depth)
{
	if (depth >= PBJSON_MSG_DEPTH_MAX)
		return -ELOOP;
	const ProtobufCMessageDescriptor *d = m->descriptor;
	const char *base = (const char *)m;
	int rc = putc_(b, '{');
	bool first = true;
	for (unsigned i = 0; rc == 0 && i < d->n_fields; i++) {
		const ProtobufCFieldDescriptor *f = &d->fields[i];
		const void *p = base + f->offset;
		size_t n = 0;
		if (f->label == PROTOBUF_C_LABEL_REPEATED) {
			n = *(const size_t *)(base + f->quantifier_offset);
			if (n == 0)
				continue;
		} else if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
			if (*(const uint32_t *)(base + f->quantifier_offset) != f->id)
				continue;
		} else if (f->label == PROTOBUF_C_LABEL_OPTIONAL) {
			if (f->type == PROTOBUF_C_TYPE_MESSAGE || f->type == PROTOBUF_C_TYPE_STRING) {
				if (*(void *const *)p == NULL)
					continue;
			} else if (!*(const protobuf_c_boolean *)(base + f->quantifier_offset)) {
				continue;
			}
		} else if (f->label == PROTOBUF_C_LABEL_NONE) {
			if (is_zero(f, p))
				continue;
		}
		if (!first)
			rc = put_sep(b, flags);
		first = false;
		if (rc == 0)
			rc = putc_(b, '"');
		if (rc == 0)
			rc = puts_(b, f->name);
		if (rc == 0)
			rc = put(b, "\":", 2);
		if (rc < 0)
			break;
		if (f->label != PROTOBUF_C_LABEL_REPEATED) {
			rc = marshal_value(b, f, p, flags, depth);
			continue;
		}
		const char *arr = *(const char *const *)p;
		size_t es = elem_size(f->type);
		rc = putc_(b, '[');
		for (size_t k = 0; rc == 0 && k < n; k++) {
			if (k)
				rc = put_sep(b, flags);
			if (rc == 0)
				rc = marshal_value(b, f, arr + k * es, flags, depth);
		}
		if (rc == 0)
			rc = putc_(b, ']');
	}
	if (rc == 0)
		rc = putc_(b, '}');
	return rc;
}

int pbjson_marshal(const ProtobufCMessage *m, unsigned flags, struct pbjson_buf *out)
{
	size_t len0 = out->len;
	int rc = marshal_message(out, m, flags, 0);
	if (rc < 0) {
		out->len = len0;
		if (out->p)
			out->p[len0] = 0;
	}
	return rc;
}

/* ---- unmarshal ---- */

struct rd {
	const uint8_t *s, *p, *end;
	ProtobufCAllocator *a;
	struct pbjson_error *err;
	unsigned mdepth;     /* messages open */
	unsigned flat_depth; /* a message at this nesting is skipped, left empty */
	bool flattened;
};

static int fail_at(struct rd *r, const uint8_t *at, const char *fmt, ...)
{
	if (r->err && r->err->msg[0] == 0) {
		struct pbjson_error *e = r->err;
		if (at > r->end)
			at = r->end;
		e->offset = (size_t)(at - r->s);
		e->line = 1;
		const uint8_t *ls = r->s;
		for (const uint8_t *q = r->s; q < at; q++)
			if (*q == '\n') {
				e->line++;
				ls = q + 1;
			}
		e->col = (int)(at - ls) + 1;
		bool syntax = strncmp(fmt, "unexpected token", 16) == 0;
		int n = snprintf(e->msg, sizeof(e->msg), "%s(line %d:%d): ", syntax ? "syntax error " : "", e->line,
				 e->col);
		va_list ap;
		va_start(ap, fmt);
		if (n > 0 && (size_t)n < sizeof(e->msg))
			vsnprintf(e->msg + n, sizeof(e->msg) - (size_t)n, fmt, ap);
		va_end(ap);
	}
	return -EINVAL;
}

static void ws(struct rd *r)
{
	while (r->p < r->end && (*r->p == ' ' || *r->p == '\t' || *r->p == '\n' || *r->p == '\r'))
		r->p++;
}

/* The raw text of the value at r->p for messages ("\"x\"", "1.5", "true"), bounded. */
static int raw_len(const uint8_t *p, const uint8_t *end)
{
	const uint8_t *q = p;
	if (q < end && (*q == '[' || *q == '{'))
		return 1;
	if (q < end && *q == '"') {
		q++;
		while (q < end && *q != '"') {
			if (*q == '\\' && q + 1 < end)
				q++;
			q++;
		}
		if (q < end)
			q++;
	} else {
		while (q < end && *q != ',' && *q != '}' && *q != ']' && *q != ' ' && *q != '\n' && *q != '\r' &&
		       *q != '\t')
			q++;
	}
	size_t n = (size_t)(q - p);
	return n > 60 ? 60 : (int)n;
}

static void *ralloc(struct rd *r, size_t n)
{
	return r->a->alloc(r->a->allocator_data, n ? n : 1);
}

static void rfree(struct rd *r, void *p)
{
	if (p && r->a->free)
		r->a->free(r->a->allocator_data, p);
}

static int hex4(const uint8_t *p, uint32_t *v)
{
	*v = 0;
	for (int i = 0; i < 4; i++) {
		uint8_t c = p[i];
		int d = c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : c >= 'A' && c <= 'F' ? c - 'A' + 10 : -1;
		if (d < 0)
			return -1;
		*v = *v << 4 | (uint32_t)d;
	}
	return 0;
}

/* Scans the string token at r->p (which is '"'): validates it and sets [*start, *end) to
 * the raw contents; r->p moves past the closing quote. */
static int scan_string(struct rd *r, const uint8_t **start, const uint8_t **end)
{
	const uint8_t *p = r->p + 1;
	*start = p;
	while (p < r->end) {
		uint8_t c = *p;
		if (c == '"') {
			*end = p;
			r->p = p + 1;
			return 0;
		}
		if (c < 0x20)
			return fail_at(r, p, "invalid character in string");
		if (c == '\\') {
			if (p + 1 >= r->end)
				break;
			uint8_t e = p[1];
			if (e == 'u') {
				uint32_t v;
				if (p + 6 > r->end || hex4(p + 2, &v) < 0)
					return fail_at(r, p, "invalid escape code in string");
				p += 6;
			} else if (strchr("\"\\/bfnrt", e) && e) {
				p += 2;
			} else {
				return fail_at(r, p, "invalid escape code in string");
			}
			continue;
		}
		if (c >= 0x80) {
			uint32_t cp;
			size_t l = utf8_len(p, (size_t)(r->end - p), &cp);
			if (l == 0)
				return fail_at(r, p, "invalid UTF-8 in string");
			p += l;
			continue;
		}
		p++;
	}
	return fail_at(r, r->end, "unexpected EOF");
}


/* Decodes a scanned string's contents into o (room for end - start bytes: decoding never
 * grows). Lone surrogates become U+FFFD as in Go. Returns the decoded length. */
static size_t decode_string(const uint8_t *p, const uint8_t *end, uint8_t *o)
{
	uint8_t *o0 = o;
	while (p < end) {
		if (*p != '\\') {
			*o++ = *p++;
			continue;
		}
		uint8_t e = p[1];
		p += 2;
		switch (e) {
		case 'b': *o++ = '\b'; break;
		case 'f': *o++ = '\f'; break;
		case 'n': *o++ = '\n'; break;
		case 'r': *o++ = '\r'; break;
		case 't': *o++ = '\t'; break;
		case 'u': {
			uint32_t v, w;
			hex4(p, &v);
			p += 4;
			if (v >= 0xd800 && v < 0xdc00 && end - p >= 6 && p[0] == '\\' && p[1] == 'u' && hex4(p + 2, &w) == 0 &&
			    w >= 0xdc00 && w < 0xe000) {
				v = 0x10000 + ((v - 0xd800) << 10) + (w - 0xdc00);
				p += 6;
			} else if (v >= 0xd800 && v < 0xe000) {
				v = 0xfffd;
			}
			o += utf8_put(o, v);
			break;
		}
		default: *o++ = e; break; /* " \ / */
		}
	}
	return (size_t)(o - o0);
}

static int skip_value(struct rd *r, int depth);

static int expect_literal(struct rd *r, const char *lit)
{
	size_t n = strlen(lit);
	if ((size_t)(r->end - r->p) < n || memcmp(r->p, lit, n) != 0)
		return -1;
	const uint8_t *q = r->p + n;
	if (q < r->end && ((*q >= 'a' && *q <= 'z') || (*q >= 'A' && *q <= 'Z') || (*q >= '0' && *q <= '9')))
		return -1;
	r->p = q;
	return 0;
}

/* Scans a JSON number token; [*s, *e) is its text. */
static int scan_number(struct rd *r, const uint8_t **s, const uint8_t **e)
{
	const uint8_t *p = r->p;
	*s = p;
	if (p < r->end && *p == '-')
		p++;
	if (p >= r->end || *p < '0' || *p > '9')
		return -1;
	if (*p == '0')
		p++;
	else
		while (p < r->end && *p >= '0' && *p <= '9')
			p++;
	if (p < r->end && *p == '.') {
		p++;
		if (p >= r->end || *p < '0' || *p > '9')
			return -1;
		while (p < r->end && *p >= '0' && *p <= '9')
			p++;
	}
	if (p < r->end && (*p == 'e' || *p == 'E')) {
		p++;
		if (p < r->end && (*p == '+' || *p == '-'))
			p++;
		if (p >= r->end || *p < '0' || *p > '9')
			return -1;
		while (p < r->end && *p >= '0' && *p <= '9')
			p++;
	}
	*e = p;
	r->p = p;
	return 0;
}

/* Checks that [s, e) is exactly one JSON number (for numbers given as strings). */
static bool whole_number(const uint8_t *s, const uint8_t *e)
{
	struct rd t = {.s = s, .p = s, .end = e};
	const uint8_t *a, *b;
	return scan_number(&t, &a, &b) == 0 && t.p == e;
}

/* A JSON number text that must denote an integer: "12", "-3", "1.0", "1e2", "100e-2".
 * Sets *neg and *mag (magnitude). Returns false if not integral or beyond 2^64-1. */
static bool number_to_int(const uint8_t *s, const uint8_t *e, bool *neg, uint64_t *mag)
{
	*neg = s < e && *s == '-';
	if (*neg)
		s++;
	char digits[64];
	size_t nd = 0;
	long exp10 = 0;
	bool frac = false;
	const uint8_t *p = s;
	for (; p < e && *p != 'e' && *p != 'E'; p++) {
		if (*p == '.') {
			frac = true;
			continue;
		}
		if (nd == 0 && *p == '0') {
			if (frac)
				exp10--;
			continue; /* leading zeros */
		}
		if (nd >= sizeof(digits))
			return false;
		digits[nd++] = (char)*p;
		if (frac)
			exp10--;
	}
	if (p < e) {
		p++;
		bool eneg = false;
		if (*p == '+' || *p == '-')
			eneg = *p++ == '-';
		long x = 0;
		for (; p < e; p++) {
			if (x > 100000)
				return false;
			x = x * 10 + (*p - '0');
		}
		exp10 += eneg ? -x : x;
	}
	if (nd == 0) {
		*mag = 0;
		return true;
	}
	/* drop trailing zeros into the exponent */
	while (nd > 0 && digits[nd - 1] == '0') {
		nd--;
		exp10++;
	}
	if (exp10 < 0)
		return false;
	if ((long)nd + exp10 > 20)
		return false;
	uint64_t v = 0;
	for (size_t i = 0; i < nd + (size_t)exp10; i++) {
		unsigned d = i < nd ? (unsigned)(digits[i] - '0') : 0;
		if (v > (UINT64_MAX - d) / 10)
			return false;
		v = v * 10 + d;
	}
	*mag = v;
	return true;
}

/* Base64 as Go's protojson decodes bytes: URL alphabet if '-' or '_' appear; padding
 * expected iff the length is a multiple of 4; '\r' and '\n' are skipped. */
static int base64_decode(const uint8_t *s, size_t n, uint8_t *out, size_t *outlen)
{
	bool url = memchr(s, '-', n) || memchr(s, '_', n);
	bool padded = n % 4 == 0;
	uint32_t acc = 0;
	int bits = 0, q = 0;
	size_t o = 0, pad = 0;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = s[i];
		if (c == '\r' || c == '\n')
			continue;
		int v;
		if (pad) {
			if (c != '=')
				return -1;
			pad++;
			q++;
			continue;
		}
		if (c >= 'A' && c <= 'Z')
			v = c - 'A';
		else if (c >= 'a' && c <= 'z')
			v = c - 'a' + 26;
		else if (c >= '0' && c <= '9')
			v = c - '0' + 52;
		else if (c == (url ? '-' : '+'))
			v = 62;
		else if (c == (url ? '_' : '/'))
			v = 63;
		else if (c == '=' && padded && (q % 4 == 2 || q % 4 == 3)) {
			pad = 1;
			q++;
			continue;
		} else
			return -1;
		acc = acc << 6 | (uint32_t)v;
		bits += 6;
		q++;
		if (bits >= 8) {
			bits -= 8;
			out[o++] = (uint8_t)(acc >> bits);
		}
	}
	if (pad) {
		if (q % 4 != 0)
			return -1;
	} else if (q % 4 == 1) {
		return -1;
	} else if (padded && q % 4 != 0) {
		return -1; /* newlines made the padded length wrong */
	}
	*outlen = o;
	return 0;
}

static const char *kind_name(ProtobufCType t)
{
	switch (t) {
	case PROTOBUF_C_TYPE_INT32: return "int32";
	case PROTOBUF_C_TYPE_SINT32: return "sint32";
	case PROTOBUF_C_TYPE_SFIXED32: return "sfixed32";
	case PROTOBUF_C_TYPE_INT64: return "int64";
	case PROTOBUF_C_TYPE_SINT64: return "sint64";
	case PROTOBUF_C_TYPE_SFIXED64: return "sfixed64";
	case PROTOBUF_C_TYPE_UINT32: return "uint32";
	case PROTOBUF_C_TYPE_FIXED32: return "fixed32";
	case PROTOBUF_C_TYPE_UINT64: return "uint64";
	case PROTOBUF_C_TYPE_FIXED64: return "fixed64";
	case PROTOBUF_C_TYPE_FLOAT: return "float";
	case PROTOBUF_C_TYPE_DOUBLE: return "double";
	case PROTOBUF_C_TYPE_BOOL: return "bool";
	case PROTOBUF_C_TYPE_ENUM: return "enum";
	case PROTOBUF_C_TYPE_STRING: return "string";
	case PROTOBUF_C_TYPE_BYTES: return "bytes";
	case PROTOBUF_C_TYPE_MESSAGE: return "message";
	}
	return "?";
}

/* protoc's JSON name: underscores dropped, the letter after one upper-cased. */
static size_t json_name(const char *name, char *out, size_t cap)
{
	size_t n = 0;
	bool up = false;
	for (; *name && n + 1 < cap; name++) {
		if (*name == '_') {
			up = true;
			continue;
		}
		out[n++] = up && *name >= 'a' && *name <= 'z' ? (char)(*name - 32) : *name;
		up = false;
	}
	out[n] = 0;
	return n;
}

static int invalid_value(struct rd *r, const ProtobufCFieldDescriptor *f, const uint8_t *at)
{
	char jn[128];
	json_name(f->name, jn, sizeof(jn));
	return fail_at(r, at, "invalid value for %s field %s: %.*s", kind_name(f->type), jn, raw_len(at, r->end), at);
}

static int parse_message(struct rd *r, const ProtobufCMessageDescriptor *d, ProtobufCMessage **out, int depth);

enum { SCALAR_SET = 0, SCALAR_SKIP = 1 };

/* Parses one value of field f into dst (an element or the member). Returns SCALAR_SET,
 * SCALAR_SKIP (an unknown enum name: leave the field unset), or a negative errno. */
static int parse_scalar(struct rd *r, const ProtobufCFieldDescriptor *f, void *dst, int depth)
{
	const uint8_t *at = r->p;
	if (r->p >= r->end)
		return fail_at(r, r->p, "unexpected EOF");
	uint8_t c = *r->p;
	switch (f->type) {
	case PROTOBUF_C_TYPE_INT32:
	case PROTOBUF_C_TYPE_SINT32:
	case PROTOBUF_C_TYPE_SFIXED32:
	case PROTOBUF_C_TYPE_INT64:
	case PROTOBUF_C_TYPE_SINT64:
	case PROTOBUF_C_TYPE_SFIXED64:
	case PROTOBUF_C_TYPE_UINT32:
	case PROTOBUF_C_TYPE_FIXED32:
	case PROTOBUF_C_TYPE_UINT64:
	case PROTOBUF_C_TYPE_FIXED64:
	case PROTOBUF_C_TYPE_ENUM: {
		const uint8_t *s, *e;
		if (c == '"') {
			int rc = scan_string(r, &s, &e);
			if (rc < 0)
				return rc;
			if (f->type == PROTOBUF_C_TYPE_ENUM) {
				char name[128];
				if ((size_t)(e - s) >= sizeof(name) || memchr(s, '\\', (size_t)(e - s)))
					return SCALAR_SKIP; /* no enum value name is like that */
				memcpy(name, s, (size_t)(e - s));
				name[e - s] = 0;
				const ProtobufCEnumValue *ev =
					protobuf_c_enum_descriptor_get_value_by_name(f->descriptor, name);
				if (!ev)
					return SCALAR_SKIP; /* DiscardUnknown: unknown enum names are ignored */
				*(int32_t *)dst = ev->value;
				return SCALAR_SET;
			}
			if (memchr(s, '\\', (size_t)(e - s)) || !whole_number(s, e))
				return invalid_value(r, f, at);
		} else if (c == '-' || (c >= '0' && c <= '9')) {
			if (scan_number(r, &s, &e) < 0)
				return fail_at(r, at, "invalid value %.*s", raw_len(at, r->end), at);
		} else {
			return invalid_value(r, f, at);
		}
		bool neg;
		uint64_t mag;
		if (!number_to_int(s, e, &neg, &mag))
			return invalid_value(r, f, at);
		switch (f->type) {
		case PROTOBUF_C_TYPE_INT32:
		case PROTOBUF_C_TYPE_SINT32:
		case PROTOBUF_C_TYPE_SFIXED32:
		case PROTOBUF_C_TYPE_ENUM:
			if (mag > (neg ? 0x80000000ull : 0x7fffffffull))
				return invalid_value(r, f, at);
			*(int32_t *)dst = neg ? (int32_t)(0 - mag) : (int32_t)mag;
			break;
		case PROTOBUF_C_TYPE_INT64:
		case PROTOBUF_C_TYPE_SINT64:
		case PROTOBUF_C_TYPE_SFIXED64:
			if (mag > (neg ? 0x8000000000000000ull : 0x7fffffffffffffffull))
				return invalid_value(r, f, at);
			*(int64_t *)dst = neg ? (int64_t)(0 - mag) : (int64_t)mag;
			break;
		case PROTOBUF_C_TYPE_UINT32:
		case PROTOBUF_C_TYPE_FIXED32:
			if ((neg && mag) || mag > 0xffffffffull)
				return invalid_value(r, f, at);
			*(uint32_t *)dst = (uint32_t)mag;
			break;
		default:
			if (neg && mag)
				return invalid_value(r, f, at);
			*(uint64_t *)dst = mag;
			break;
		}
		return SCALAR_SET;
	}
	case PROTOBUF_C_TYPE_FLOAT:
	case PROTOBUF_C_TYPE_DOUBLE: {
		const uint8_t *s, *e;
		double v;
		char tmp[64];
		if (c == '"') {
			int rc = scan_string(r, &s, &e);
			if (rc < 0)
				return rc;
			size_t n = (size_t)(e - s);
			if (n == 3 && memcmp(s, "NaN", 3) == 0)
				v = NAN;
			else if (n == 8 && memcmp(s, "Infinity", 8) == 0)
				v = INFINITY;
			else if (n == 9 && memcmp(s, "-Infinity", 9) == 0)
				v = -INFINITY;
			else if (n < sizeof(tmp) && whole_number(s, e)) {
				memcpy(tmp, s, n);
				tmp[n] = 0;
				v = strtod(tmp, NULL);
			} else
				return invalid_value(r, f, at);
		} else if (c == '-' || (c >= '0' && c <= '9')) {
			if (scan_number(r, &s, &e) < 0 || (size_t)(e - s) >= sizeof(tmp))
				return invalid_value(r, f, at);
			memcpy(tmp, s, (size_t)(e - s));
			tmp[e - s] = 0;
			v = strtod(tmp, NULL);
		} else {
			return invalid_value(r, f, at);
		}
		if (f->type == PROTOBUF_C_TYPE_FLOAT) {
			if (isfinite(v) && (v > 3.4028234663852886e38 || v < -3.4028234663852886e38))
				return invalid_value(r, f, at);
			*(float *)dst = (float)v;
		} else {
			if (isinf(v) && c != '"')
				return invalid_value(r, f, at);
			*(double *)dst = v;
		}
		return SCALAR_SET;
	}
	case PROTOBUF_C_TYPE_BOOL:
		if (expect_literal(r, "true") == 0)
			*(protobuf_c_boolean *)dst = 1;
		else if (expect_literal(r, "false") == 0)
			*(protobuf_c_boolean *)dst = 0;
		else
			return invalid_value(r, f, at);
		return SCALAR_SET;
	case PROTOBUF_C_TYPE_STRING: {
		const uint8_t *s, *e;
		if (c != '"')
			return invalid_value(r, f, at);
		int rc = scan_string(r, &s, &e);
		if (rc < 0)
			return rc;
		uint8_t *o = ralloc(r, (size_t)(e - s) + 1);
		if (!o)
			return -ENOMEM;
		size_t n = decode_string(s, e, o);
		o[n] = 0;
		*(char **)dst = (char *)o;
		return SCALAR_SET;
	}
	case PROTOBUF_C_TYPE_BYTES: {
		const uint8_t *s, *e;
		if (c != '"')
			return invalid_value(r, f, at);
		int rc = scan_string(r, &s, &e);
		if (rc < 0)
			return rc;
		size_t n = (size_t)(e - s);
		uint8_t stack[256];
		uint8_t *txt = stack;
		if (memchr(s, '\\', n)) {
			txt = n <= sizeof(stack) ? stack : ralloc(r, n);
			if (!txt)
				return -ENOMEM;
			n = decode_string(s, e, txt);
		} else {
			txt = (uint8_t *)s;
		}
		uint8_t *o = ralloc(r, n / 4 * 3 + 3);
		size_t ol = 0;
		if (!o) {
			rc = -ENOMEM;
		} else if (base64_decode(txt, n, o, &ol) < 0) {
			rfree(r, o);
			o = NULL;
			rc = invalid_value(r, f, at);
		}
		if (txt != stack && txt != s)
			rfree(r, txt);
		if (rc < 0)
			return rc;
		ProtobufCBinaryData *bd = dst;
		bd->data = o;
		bd->len = ol;
		return SCALAR_SET;
	}
	case PROTOBUF_C_TYPE_MESSAGE: {
		if (c != '{')
			return fail_at(r, at, "unexpected token %.*s", raw_len(at, r->end), at);
		ProtobufCMessage *sub = NULL;
		int rc = parse_message(r, f->descriptor, &sub, depth + 1);
		if (rc < 0) {
			if (sub)
				protobuf_c_message_free_unpacked(sub, r->a);
			return rc;
		}
		*(ProtobufCMessage **)dst = sub;
		return SCALAR_SET;
	}
	}
	return fail_at(r, at, "unsupported field type");
}

/* After a list element: ',' continues (1), `close` ends the list (0), else an error. */
static int list_next(struct rd *r, char close)
{
	ws(r);
	if (r->p >= r->end)
		return fail_at(r, r->p, "unexpected EOF");
	if (*r->p == ',' || *r->p == close)
		return *r->p++ == ',';
	return fail_at(r, r->p, "unexpected token %.*s", raw_len(r->p, r->end), r->p);
}

/* A repeated field grows by doubling through the allocator; its array and count are always
 * consistent, so protobuf_c_message_free_unpacked can free a half-built one. */
static int parse_repeated(struct rd *r, const ProtobufCFieldDescriptor *f, char *base, int depth)
{
	if (*r->p != '[')
		return fail_at(r, r->p, "unexpected token %.*s", raw_len(r->p, r->end), r->p);
	if (depth + 1 > PBJSON_DEPTH_MAX)
	{
		fail_at(r, r->p, "exceeded max recursion depth");
		return -ELOOP;
	}
	r->p++;
	size_t *np = (size_t *)(base + f->quantifier_offset);
	char **arr = (char **)(base + f->offset);
	size_t es = elem_size(f->type), cap = 0;
	ws(r);
	if (r->p < r->end && *r->p == ']') {
		r->p++;
		return 0;
	}
	for (;;) {
		ws(r);
		if (*np == cap) {
			size_t ncap = cap ? cap * 2 : 4;
			char *na = ralloc(r, ncap * es);
			if (!na)
				return -ENOMEM;
			if (*np)
				memcpy(na, *arr, *np * es);
			rfree(r, *arr);
			*arr = na;
			cap = ncap;
		}
		char *slot = *arr + *np * es;
		memset(slot, 0, es);
		int rc = parse_scalar(r, f, slot, depth + 1);
		if (rc < 0)
			return rc;
		if (rc == SCALAR_SET)
			(*np)++;
		if ((rc = list_next(r, ']')) <= 0)
			return rc;
	}
}

static const ProtobufCFieldDescriptor *find_field(const ProtobufCMessageDescriptor *d, const char *key, size_t n)
{
	char jn[128];
	/* JSON name first, then the proto name, as protojson looks them up */
	for (unsigned i = 0; i < d->n_fields; i++) {
		size_t l = json_name(d->fields[i].name, jn, sizeof(jn));
		if (l == n && memcmp(jn, key, n) == 0)
			return &d->fields[i];
	}
	for (unsigned i = 0; i < d->n_fields; i++) {
		const char *name = d->fields[i].name;
		if (strlen(name) == n && memcmp(name, key, n) == 0)
			return &d->fields[i];
	}
	return NULL;
}

/* A member name and its ':' inside a skipped object. */
static int skip_key(struct rd *r)
{
	const uint8_t *s, *e;
	int rc;

	ws(r);
	if (r->p >= r->end || *r->p != '"')
		return fail_at(r, r->p, r->p >= r->end ? "unexpected EOF" : "unexpected token");
	if ((rc = scan_string(r, &s, &e)) < 0)
		return rc;
	ws(r);
	if (r->p >= r->end || *r->p != ':')
		return fail_at(r, r->p, r->p >= r->end ? "unexpected EOF" : "unexpected token");
	r->p++;
	return 0;
}

/* Skips one value (an unknown field's, or a flattened message's), checking it, without
 * recursion: `depth` containers are already open around it. */
static int skip_value(struct rd *r, int depth)
{
	uint8_t objs[PBJSON_DEPTH_MAX / 8 + 1]; /* bit n: container n of this value is an object */
	int n = 0, rc;

	for (;;) {
		ws(r);
		if (r->p >= r->end)
			return fail_at(r, r->p, "unexpected EOF");
		const uint8_t *s, *e;
		uint8_t c = *r->p;
		if (c == '{' || c == '[') {
			if (depth + n + 1 > PBJSON_DEPTH_MAX) {
				fail_at(r, r->p, "exceeded max recursion depth");
				return -ELOOP;
			}
			r->p++;
			ws(r);
			if (r->p < r->end && *r->p == (c == '{' ? '}' : ']')) {
				r->p++;
			} else {
				if (c == '{')
					objs[n / 8] |= (uint8_t)(1u << (n % 8));
				else
					objs[n / 8] &= (uint8_t)~(1u << (n % 8));
				n++;
				if (c == '{' && (rc = skip_key(r)) < 0)
					return rc;
				continue;
			}
		} else if (c == '"') {
			if ((rc = scan_string(r, &s, &e)) < 0)
				return rc;
		} else if (c == '-' || (c >= '0' && c <= '9')) {
			if (scan_number(r, &s, &e) < 0)
				return fail_at(r, r->p, "invalid number");
		} else if (expect_literal(r, "true") < 0 && expect_literal(r, "false") < 0 &&
			   expect_literal(r, "null") < 0) {
			return fail_at(r, r->p, "unexpected token %.*s", raw_len(r->p, r->end), r->p);
		}
		/* a value ended: close what it ends, or go on to the next element */
		for (;;) {
			if (n == 0)
				return 0;
			bool obj = objs[(n - 1) / 8] & (1u << ((n - 1) % 8));
			if ((rc = list_next(r, obj ? '}' : ']')) < 0)
				return rc;
			if (rc == 0) {
				n--;
				continue;
			}
			if (obj && (rc = skip_key(r)) < 0)
				return rc;
			break;
		}
	}
}

static int parse_fields(struct rd *r, const ProtobufCMessageDescriptor *d, ProtobufCMessage *m, int depth)
{
	char *base = (char *)m;
	uint64_t seen[8] = {0}; /* duplicate detection for the first 512 fields */
	r->p++; /* '{' */
	ws(r);
	if (r->p < r->end && *r->p == '}') {
		r->p++;
		return 0;
	}
	for (;;) {
		ws(r);
		if (r->p >= r->end)
			return fail_at(r, r->p, "unexpected EOF");
		if (*r->p != '"')
			return fail_at(r, r->p, "unexpected token %.*s", raw_len(r->p, r->end), r->p);
		const uint8_t *kat = r->p, *ks, *ke;
		int rc = scan_string(r, &ks, &ke);
		if (rc < 0)
			return rc;
		char key[128];
		size_t kn = (size_t)(ke - ks);
		const ProtobufCFieldDescriptor *f = NULL;
		if (kn < sizeof(key)) {
			kn = decode_string(ks, ke, (uint8_t *)key);
			f = find_field(d, key, kn);
		}
		ws(r);
		if (r->p >= r->end)
			return fail_at(r, r->p, "unexpected EOF");
		if (*r->p != ':')
			return fail_at(r, r->p, "unexpected token %.*s", raw_len(r->p, r->end), r->p);
		r->p++;
		ws(r);
		if (r->p >= r->end)
			return fail_at(r, r->p, "unexpected EOF");
		if (!f) {
			if ((rc = skip_value(r, depth + 1)) < 0)
				return rc;
		} else {
			unsigned idx = (unsigned)(f - d->fields);
			if (idx < 512) {
				if (seen[idx / 64] & (1ull << (idx % 64)))
					return fail_at(r, kat, "duplicate field %.*s", (int)(ke - ks + 2), kat);
				seen[idx / 64] |= 1ull << (idx % 64);
			}
			if (expect_literal(r, "null") == 0) {
				/* null: the field keeps its default */
			} else if (f->label == PROTOBUF_C_LABEL_REPEATED) {
				if ((rc = parse_repeated(r, f, base, depth)) < 0)
					return rc;
			} else {
				uint32_t *casep = NULL;
				if (f->flags & PROTOBUF_C_FIELD_FLAG_ONEOF) {
					casep = (uint32_t *)(base + f->quantifier_offset);
					if (*casep != 0)
						return fail_at(r, kat, "error parsing %.*s, oneof is already set",
							       (int)(ke - ks + 2), kat);
				}
				/* parse into a scratch slot, then install, so the message stays consistent */
				union {
					uint64_t u;
					double dd;
					void *ptr;
					ProtobufCBinaryData bd;
				} tmp;
				memset(&tmp, 0, sizeof(tmp));
				rc = parse_scalar(r, f, &tmp, depth);
				if (rc < 0)
					return rc;
				if (rc == SCALAR_SET) {
					void *dst = base + f->offset;
					size_t es = elem_size(f->type);
					/* the member held its static default (no duplicates reach here) */
					memcpy(dst, &tmp, es);
					if (casep)
						*casep = f->id;
					else if (f->label == PROTOBUF_C_LABEL_OPTIONAL && f->type != PROTOBUF_C_TYPE_MESSAGE &&
						 f->type != PROTOBUF_C_TYPE_STRING)
						*(protobuf_c_boolean *)(base + f->quantifier_offset) = 1;
				}
			}
		}
		if ((rc = list_next(r, '}')) <= 0)
			return rc;
	}
}

static int parse_message(struct rd *r, const ProtobufCMessageDescriptor *d, ProtobufCMessage **out, int depth)
{
	if (depth > PBJSON_DEPTH_MAX || r->mdepth >= PBJSON_MSG_DEPTH_MAX) {
		fail_at(r, r->p, "exceeded max recursion depth");
		return -ELOOP;
	}
	ProtobufCMessage *m = ralloc(r, d->sizeof_message);
	if (!m)
		return -ENOMEM;
	d->message_init(m);
	*out = m; /* installed at once so that a failure below frees it with its parent */
	if (++r->mdepth == r->flat_depth) { /* checked, left empty: see pbjson_unmarshal_flat */
		r->flattened = true;
		int rc = skip_value(r, depth);
		r->mdepth--;
		return rc;
	}
	int rc = parse_fields(r, d, m, depth);
	r->mdepth--;
	return rc;
}

/* A scan of the first JSON value as encoding/json's scanner makes it before protojson sees
 * anything, iterative, for one verdict only: is its first error JSON nested past
 * PBJSON_DEPTH_MAX? Then -ELOOP with Go's message; any other error (left to the parser,
 * which reports it) or none: 0. */
static int prescan_depth(struct rd *r)
{
	enum { VALUE, VALUE_OR_CLOSE, KEY, KEY_OR_CLOSE, COLON, AFTER } st = VALUE;
	uint8_t objs[PBJSON_DEPTH_MAX / 8 + 1];
	const uint8_t *p = r->p, *end = r->end;
	int n = 0;

	for (;;) {
		while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r'))
			p++;
		if (st == AFTER && n == 0)
			return 0;
		if (p >= end)
			return 0;
		uint8_t c = *p;
		bool obj = n > 0 && (objs[(n - 1) / 8] & (1u << ((n - 1) % 8)));
		switch (st) {
		case VALUE_OR_CLOSE:
		case KEY_OR_CLOSE:
			if (c == (st == KEY_OR_CLOSE ? '}' : ']')) {
				p++;
				n--;
				st = AFTER;
				continue;
			}
			if (st == KEY_OR_CLOSE) {
				st = KEY;
				continue;
			}
			/* fall through */
		case VALUE:
			if (c == '{' || c == '[') {
				if (n == PBJSON_DEPTH_MAX) {
					fail_at(r, p, "x"); /* the position; Go's message has none */
					if (r->err) {
						snprintf(r->err->msg, sizeof r->err->msg, "invalid character '%c' exceeded max depth",
							 c);
						r->err->json = true;
					}
					return -ELOOP;
				}
				if (c == '{')
					objs[n / 8] |= (uint8_t)(1u << (n % 8));
				else
					objs[n / 8] &= (uint8_t)~(1u << (n % 8));
				n++;
				p++;
				st = c == '{' ? KEY_OR_CLOSE : VALUE_OR_CLOSE;
				continue;
			}
			if (c == '"') {
				c = 0; /* a string: below */
			} else if (c == '-' || (c >= '0' && c <= '9')) {
				struct rd t = {.s = p, .p = p, .end = end};
				const uint8_t *a, *b;
				if (scan_number(&t, &a, &b) < 0)
					return 0;
				p = t.p;
				st = AFTER;
				continue;
			} else {
				static const char *const lits[] = {"true", "false", "null"};
				size_t i = 0;
				for (; i < 3; i++) {
					size_t l = strlen(lits[i]);
					if ((size_t)(end - p) >= l && memcmp(p, lits[i], l) == 0) {
						p += l;
						break;
					}
				}
				if (i == 3)
					return 0;
				st = AFTER;
				continue;
			}
			/* fall through */
		case KEY:
			if (*p != '"')
				return 0;
			for (p++; p < end && *p != '"'; p++) {
				if (*p < 0x20)
					return 0;
				if (*p == '\\') {
					if (++p >= end)
						return 0;
					if (*p == 'u') {
						for (int k = 0; k < 4; k++)
							if (++p >= end || !((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f') ||
									   (*p >= 'A' && *p <= 'F')))
								return 0;
					} else if (!strchr("\"\\/bfnrt", *p) || !*p) {
						return 0;
					}
				}
			}
			if (p >= end)
				return 0;
			p++;
			st = st == KEY ? COLON : AFTER;
			continue;
		case COLON:
			if (c != ':')
				return 0;
			p++;
			st = VALUE;
			continue;
		case AFTER:
			if (c == ',') {
				p++;
				st = obj ? KEY : VALUE;
			} else if (c == (obj ? '}' : ']')) {
				p++;
				n--;
			} else {
				return 0;
			}
			continue;
		}
	}
}

static void *sys_alloc(void *data, size_t n)
{
	void *p = malloc(n);
	if (!p)
		abort(); /* out of memory is fatal */
	return p;
}

static void sys_free(void *data, void *p)
{
	free(p);
}

int pbjson_unmarshal(const ProtobufCMessageDescriptor *d, const uint8_t *json, size_t len,
		     ProtobufCAllocator *alloc, ProtobufCMessage **out, struct pbjson_error *err)
{
	bool flattened;
	return pbjson_unmarshal_flat(d, json, len, alloc, out, err, PBJSON_MSG_DEPTH_MAX + 1, &flattened);
}

int pbjson_unmarshal_flat(const ProtobufCMessageDescriptor *d, const uint8_t *json, size_t len,
			  ProtobufCAllocator *alloc, ProtobufCMessage **out, struct pbjson_error *err,
			  unsigned flat_depth, bool *flattened)
{
	struct rd r = {.s = json, .p = json, .end = json + len, .a = alloc, .err = err, .flat_depth = flat_depth};
	ProtobufCAllocator sys = {.alloc = sys_alloc, .free = sys_free};
	if (!r.a)
		r.a = &sys;
	if (err)
		memset(err, 0, sizeof(*err));
	*out = NULL;
	ProtobufCMessage *m = NULL;
	int rc;
	ws(&r);
	if (r.p == r.end) {
		/* an empty body is an empty message, as the gateway treats io.EOF */
		m = ralloc(&r, d->sizeof_message);
		if (!m)
			return -ENOMEM;
		d->message_init(m);
		*out = m;
		return 0;
	}
	*flattened = false;
	if ((rc = prescan_depth(&r)) < 0) {
		/* nested past encoding/json's limit: refused before any decoding, as etcd's gateway */
	} else if (*r.p != '{') {
		rc = fail_at(&r, r.p, "unexpected token %.*s", raw_len(r.p, r.end), r.p);
	} else {
		rc = parse_message(&r, d, &m, 0);
		*flattened = r.flattened;
	}
	/* bytes after the object are ignored: the gateway decodes only the first JSON value */
	if (rc < 0) {
		if (m && r.a->free)
			protobuf_c_message_free_unpacked(m, r.a);
		return rc;
	}
	*out = m;
	return 0;
}
