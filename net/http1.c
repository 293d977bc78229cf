/* HTTP/1.1 server connection (RFC 9112), sans-I/O. See http1.h for the contract.
 *
 * Input: received bytes are appended to `ibuf` (grown by doubling up to max_header_bytes +
 * max_body_bytes + IBUF_SLACK, never beyond) and parsed in place. The request head is found
 * by scanning for its blank line (scan resumes where it stopped, so a head trickling in byte
 * by byte costs O(n)); header fields are remembered as offsets, not pointers, because ibuf
 * may move while a body arrives. A chunked body is de-chunked in place: decoded bytes are
 * moved down to sit right behind the head, so the buffer holds head + decoded body + the
 * unparsed tail, never the chunk framing of the whole body.
 *
 * Invariant (owner: process()): at most one request is handed up at a time (`busy`); bytes
 * of an answered request are dropped from ibuf only when the next parse starts, never inside
 * an answer, so a callback may keep reading its request after answering it.
 *
 * Output: a chain of blocks; bytes are only appended behind the tail's `len`, so iovecs
 * handed out stay valid until consumed. A write larger than a block gets a block of its own
 * size (one iovec per response body). The total is bounded by max_output_bytes.
 *
 * Framing defences (request smuggling): Content-Length together with Transfer-Encoding,
 * differing Content-Length values, transfer-codings other than a lone "chunked", obs-fold,
 * whitespace before ':', bare CR and control characters are all 400 and close.
 */
#include "net/http1.h"

#include <assert.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum {
	OUT_BLOCK = 16384 - 32,      /* bytes per ordinary output block */
	IBUF_INIT = 4096,
	IBUF_SLACK = 64 * 1024,      /* beyond head + body: pipelined bytes, chunk framing */
	CHUNK_LINE_MAX = 4096,       /* a chunk-size line with its extensions */
	LEADING_EMPTY_MAX = 16,      /* empty lines tolerated before a request line */
	METHOD_MAX = 32,
};

struct out_block {
	struct out_block *next;
	size_t len, cap;
	uint8_t data[];
};

struct hdr_off {
	uint32_t name, name_len, value, value_len;
};

enum parse_state {
	PS_HEAD,        /* waiting for the blank line ending the head */
	PS_BODY_CL,     /* waiting for content_length bytes */
	PS_CHUNK_SIZE,  /* at a chunk-size line */
	PS_CHUNK_DATA,  /* inside chunk data, chunk_left bytes to go */
	PS_CHUNK_CRLF,  /* the CRLF after chunk data */
	PS_TRAILER,     /* trailer lines after the last chunk */
	PS_COMPLETE,    /* a whole request is in ibuf[0, req_end) */
};

struct http1_conn {
	struct http1_config cfg;
	http1_request_fn on_request;
	void *user;

	uint8_t *ibuf;
	size_t ilen, icap, icap_max;

	/* parser */
	enum parse_state ps;
	size_t scan;          /* PS_HEAD: bytes already scanned without finding the end */
	size_t head_len;      /* bytes of the head including its blank line */
	size_t body_len;      /* (decoded) body bytes at ibuf + head_len */
	size_t raw;           /* chunked: parse position of the raw tail */
	size_t chunk_left;
	size_t trailer_bytes;
	size_t content_length;
	size_t req_end;       /* PS_COMPLETE: end of the request in ibuf */
	size_t leading_empty;
	struct hdr_off *hdrs; /* max_headers entries */
	struct http1_header *pub; /* max_headers entries, handed up */
	uint32_t n_hdrs;
	uint32_t method_len, target_off, target_len;
	int version_minor;
	bool chunked, expect_continue, keep_alive, head;

	/* answering */
	bool busy;            /* a request was handed up and is not answered yet */
	bool streaming;       /* its answer is an open stream */
	bool stream_raw;      /* HTTP/1.0 stream: no chunk framing */
	bool answer_head;     /* the request being answered is HEAD */
	bool answer_keep;     /* its keep_alive */
	int answer_minor;
	size_t drop;          /* bytes of answered requests to drop before the next parse */
	bool closing;         /* no further requests: done once the output is sent */
	bool in_dispatch;

	/* output */
	struct out_block *head_blk, *tail_blk;
	size_t out_off;       /* consumed bytes of head_blk */
	size_t out_bytes;

	int64_t now_s, date_s;
	char date[40];        /* "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\n" */
};

/* ---- small helpers ---- */

static const char *const HTTP2_PREFACE = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

enum http1_sniff_result http1_sniff(const uint8_t *b, size_t len)
{
	size_t plen = 24;
	size_t n = len < plen ? len : plen;
	if (n > 0 && memcmp(b, HTTP2_PREFACE, n) == 0)
		return len >= plen ? HTTP1_SNIFF_HTTP2 : HTTP1_SNIFF_MORE;
	for (size_t i = 0; i < len; i++) {
		uint8_t ch = b[i];
		if (ch == ' ')
			return i > 0 ? HTTP1_SNIFF_HTTP1 : HTTP1_SNIFF_NEITHER;
		if (!((ch >= 'A' && ch <= 'Z') || ch == '-' || ch == '_') || i >= 20)
			return HTTP1_SNIFF_NEITHER;
	}
	return HTTP1_SNIFF_MORE;
}

static bool is_tchar(uint8_t ch)
{
	if ((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9'))
		return true;
	return ch && strchr("!#$%&'*+-.^_`|~", ch) != NULL;
}

static int lower(int ch)
{
	return ch >= 'A' && ch <= 'Z' ? ch + 32 : ch;
}

static bool ieq(const uint8_t *a, size_t alen, const char *b)
{
	size_t blen = strlen(b);
	if (alen != blen)
		return false;
	for (size_t i = 0; i < alen; i++)
		if (lower(a[i]) != lower((unsigned char)b[i]))
			return false;
	return true;
}

const char *http1_reason(int status)
{
	switch (status) {
	case 100: return "Continue";
	case 200: return "OK";
	case 201: return "Created";
	case 202: return "Accepted";
	case 204: return "No Content";
	case 206: return "Partial Content";
	case 301: return "Moved Permanently";
	case 302: return "Found";
	case 304: return "Not Modified";
	case 307: return "Temporary Redirect";
	case 400: return "Bad Request";
	case 401: return "Unauthorized";
	case 403: return "Forbidden";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 408: return "Request Timeout";
	case 409: return "Conflict";
	case 411: return "Length Required";
	case 412: return "Precondition Failed";
	case 413: return "Request Entity Too Large";
	case 415: return "Unsupported Media Type";
	case 417: return "Expectation Failed";
	case 429: return "Too Many Requests";
	case 431: return "Request Header Fields Too Large";
	case 499: return "Client Closed Request";
	case 500: return "Internal Server Error";
	case 501: return "Not Implemented";
	case 502: return "Bad Gateway";
	case 503: return "Service Unavailable";
	case 504: return "Gateway Timeout";
	case 505: return "HTTP Version Not Supported";
	default: return "";
	}
}

void http1_config_default(struct http1_config *c)
{
	c->max_header_bytes = 16 * 1024;
	c->max_headers = 100;
	c->max_body_bytes = (size_t)3 << 19; /* 1.5 MiB, etcd's --max-request-bytes */
	c->max_output_bytes = (size_t)64 << 20;
}

/* ---- output ---- */

static bool out_room(const struct http1_conn *c, size_t n)
{
	return c->out_bytes + n <= c->cfg.max_output_bytes;
}

/* Appends n bytes; the caller checked out_room for the whole message. Never fails. */
static void out_put(struct http1_conn *c, const void *data, size_t n)
{
	const uint8_t *p = data;
	struct out_block *t = c->tail_blk;
	if (t && t->len < t->cap) {
		size_t k = t->cap - t->len < n ? t->cap - t->len : n;
		memcpy(t->data + t->len, p, k);
		t->len += k;
		p += k;
		n -= k;
		c->out_bytes += k;
	}
	if (n == 0)
		return;
	size_t cap = n > OUT_BLOCK ? n : OUT_BLOCK;
	struct out_block *b = malloc(sizeof(*b) + cap);
	if (!b)
		abort(); /* out of memory is fatal, as everywhere in uetcd */
	b->next = NULL;
	b->len = n;
	b->cap = cap;
	memcpy(b->data, p, n);
	if (c->tail_blk)
		c->tail_blk->next = b;
	else
		c->head_blk = b;
	c->tail_blk = b;
	c->out_bytes += n;
}

static void out_puts(struct http1_conn *c, const char *s)
{
	out_put(c, s, strlen(s));
}

size_t http1_conn_output(struct http1_conn *c, struct iovec *iov, size_t iov_max)
{
	size_t n = 0, off = c->out_off;
	for (struct out_block *b = c->head_blk; b && n < iov_max; b = b->next) {
		if (b->len > off) {
			iov[n].iov_base = b->data + off;
			iov[n].iov_len = b->len - off;
			n++;
		}
		off = 0;
	}
	return n;
}

void http1_conn_output_consumed(struct http1_conn *c, size_t bytes)
{
	if (bytes > c->out_bytes)
		bytes = c->out_bytes;
	c->out_bytes -= bytes;
	while (bytes > 0) {
		struct out_block *b = c->head_blk;
		size_t avail = b->len - c->out_off;
		if (bytes < avail) {
			c->out_off += bytes;
			return;
		}
		bytes -= avail;
		/* keep the tail block if it still has room: output is appended there */
		if (b == c->tail_blk) {
			c->out_off = 0;
			b->len = 0;
			if (b->cap > OUT_BLOCK) {
				free(b);
				c->head_blk = c->tail_blk = NULL;
			}
			return;
		}
		c->head_blk = b->next;
		c->out_off = 0;
		free(b);
	}
	/* fully consumed exactly at a block boundary that was the tail */
	if (c->head_blk == c->tail_blk && c->head_blk && c->out_off == c->head_blk->len) {
		c->head_blk->len = 0;
		c->out_off = 0;
	}
}

bool http1_conn_has_output(const struct http1_conn *c)
{
	return c->out_bytes > 0;
}

size_t http1_conn_output_bytes(const struct http1_conn *c)
{
	return c->out_bytes;
}

bool http1_conn_done(const struct http1_conn *c)
{
	return c->closing && !c->busy;
}

bool http1_conn_busy(const struct http1_conn *c)
{
	return c->busy;
}

bool http1_conn_want_read(const struct http1_conn *c)
{
	if (c->closing)
		return false;
	if (!c->busy)
		return true;
	return c->ilen < c->drop + c->cfg.max_header_bytes;
}

/* ---- Date ---- */

void http1_conn_set_time(struct http1_conn *c, int64_t unix_s)
{
	c->now_s = unix_s;
}

static const char *date_line(struct http1_conn *c)
{
	if (c->now_s <= 0)
		return "";
	if (c->date_s != c->now_s) {
		static const char wd[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
		static const char mo[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
					       "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
		time_t t = (time_t)c->now_s;
		struct tm tm;
		if (!gmtime_r(&t, &tm) || tm.tm_year + 1900 > 9999)
			return "";
		snprintf(c->date, sizeof(c->date), "Date: %s, %02d %s %04d %02d:%02d:%02d GMT\r\n", wd[tm.tm_wday],
			 tm.tm_mday, mo[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
		c->date_s = c->now_s;
	}
	return c->date;
}

/* ---- answering ---- */

/* The request being answered is over: parsing may go on (after the caller returns). */
static void answer_done(struct http1_conn *c)
{
	c->busy = false;
	c->streaming = false;
	if (!c->answer_keep)
		c->closing = true;
}

/* A parse error: answer it ourselves and close. Only called when not busy. */
static int fail_request(struct http1_conn *c, int status, int err)
{
	char buf[256];
	char body[64];
	int bl = snprintf(body, sizeof(body), "%d %s", status, http1_reason(status));
	int n = snprintf(buf, sizeof(buf),
			 "HTTP/1.1 %d %s\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n"
			 "%sContent-Length: %d\r\n\r\n%s",
			 status, http1_reason(status), date_line(c), bl, body);
	if (out_room(c, (size_t)n))
		out_put(c, buf, (size_t)n);
	c->closing = true;
	c->ps = PS_HEAD;
	return err;
}

static int status_line(char *buf, size_t cap, int minor, int status)
{
	const char *r = http1_reason(status);
	return snprintf(buf, cap, "HTTP/1.%d %d %s\r\n", minor, status, *r ? r : "Status");
}

static int check_answerable(struct http1_conn *c)
{
	if (!c->busy || c->streaming)
		return -EALREADY;
	return 0;
}

/* Writes a head; `framing` is the Content-Length or Transfer-Encoding line (may be ""). */
static int put_head(struct http1_conn *c, int status, const char *content_type, const char *extra,
		    const char *framing, size_t body_len)
{
	char sl[64], ct[160];
	int sn = status_line(sl, sizeof(sl), c->answer_minor, status);
	int cn = 0;
	if (content_type) {
		cn = snprintf(ct, sizeof(ct), "Content-Type: %s\r\n", content_type);
		if (cn >= (int)sizeof(ct))
			return -EINVAL;
	}
	const char *conn = "";
	if (!c->answer_keep)
		conn = "Connection: close\r\n";
	else if (c->answer_minor == 0)
		conn = "Connection: keep-alive\r\n";
	const char *date = date_line(c);
	size_t total = (size_t)sn + (size_t)cn + strlen(conn) + strlen(date) + strlen(framing) +
		       (extra ? strlen(extra) : 0) + 2 + body_len;
	if (!out_room(c, total)) {
		c->closing = true;
		c->busy = false;
		c->streaming = false;
		return -ENOBUFS;
	}
	out_put(c, sl, (size_t)sn);
	if (extra)
		out_puts(c, extra);
	if (cn)
		out_put(c, ct, (size_t)cn);
	out_puts(c, date);
	out_puts(c, framing);
	out_puts(c, conn);
	out_put(c, "\r\n", 2);
	return 0;
}

int http1_respond_ex(struct http1_conn *c, int status, const char *content_type, const char *extra_headers,
		     const void *body, size_t len)
{
	int rc = check_answerable(c);
	if (rc < 0)
		return rc;
	bool no_body = status < 200 || status == 204 || status == 304;
	char cl[48] = "";
	if (!no_body)
		snprintf(cl, sizeof(cl), "Content-Length: %zu\r\n", len);
	else
		len = 0;
	size_t send_len = c->answer_head ? 0 : len;
	rc = put_head(c, status, no_body ? NULL : content_type, extra_headers, cl, send_len);
	if (rc < 0)
		return rc;
	if (send_len)
		out_put(c, body, send_len);
	answer_done(c);
	return 0;
}

int http1_respond(struct http1_conn *c, int status, const char *content_type, const void *body, size_t len)
{
	return http1_respond_ex(c, status, content_type, NULL, body, len);
}

int http1_stream_begin_ex(struct http1_conn *c, int status, const char *content_type, const char *extra_headers)
{
	int rc = check_answerable(c);
	if (rc < 0)
		return rc;
	c->stream_raw = c->answer_minor == 0;
	if (c->stream_raw)
		c->answer_keep = false; /* the close delimits the body */
	rc = put_head(c, status, content_type, extra_headers, c->stream_raw ? "" : "Transfer-Encoding: chunked\r\n",
		      0);
	if (rc < 0)
		return rc;
	c->streaming = true;
	return 0;
}

int http1_stream_begin(struct http1_conn *c, int status, const char *content_type)
{
	return http1_stream_begin_ex(c, status, content_type, NULL);
}

int http1_stream_write(struct http1_conn *c, const void *data, size_t len)
{
	if (!c->busy || !c->streaming)
		return -EALREADY;
	if (len == 0 || c->answer_head)
		return 0;
	char hex[24];
	int hn = c->stream_raw ? 0 : snprintf(hex, sizeof(hex), "%zx\r\n", len);
	size_t total = (size_t)hn + len + (c->stream_raw ? 0 : 2);
	if (!out_room(c, total)) {
		c->closing = true;
		c->busy = false;
		c->streaming = false;
		return -ENOBUFS;
	}
	if (hn)
		out_put(c, hex, (size_t)hn);
	out_put(c, data, len);
	if (!c->stream_raw)
		out_put(c, "\r\n", 2);
	return 0;
}

int http1_stream_end(struct http1_conn *c)
{
	if (!c->busy || !c->streaming)
		return -EALREADY;
	if (!c->stream_raw && !c->answer_head) {
		if (!out_room(c, 5)) {
			c->closing = true;
			c->busy = false;
			c->streaming = false;
			return -ENOBUFS;
		}
		out_put(c, "0\r\n\r\n", 5);
	}
	answer_done(c);
	return 0;
}

void http1_conn_close(struct http1_conn *c)
{
	c->closing = true;
	c->busy = false;
	c->streaming = false;
}

/* ---- parsing ---- */

/* Finds the end of the head: returns its length (through the blank line), or 0. Accepts
 * CRLF or a bare LF as line ends (RFC 9112 §2.2). */
static size_t head_end(struct http1_conn *c)
{
	const uint8_t *b = c->ibuf;
	size_t i = c->scan;
	for (; i < c->ilen; i++) {
		if (b[i] != '\n')
			continue;
		/* b[i] ends a line: is the next line empty? */
		if (i + 1 < c->ilen && b[i + 1] == '\n')
			return i + 2;
		if (i + 2 < c->ilen && b[i + 1] == '\r' && b[i + 2] == '\n')
			return i + 3;
		if (i + 2 >= c->ilen) {
			/* can't tell yet: rescan from this newline next time */
			c->scan = i;
			return 0;
		}
	}
	c->scan = i;
	return 0;
}

/* One line in [p, end): returns the line length without its terminator and sets *next,
 * or -1 on a bare CR. */
static long line_at(const uint8_t *b, size_t p, size_t end, size_t *next)
{
	for (size_t i = p; i < end; i++) {
		if (b[i] == '\n') {
			size_t l = i - p;
			if (l > 0 && b[i - 1] == '\r')
				l--;
			*next = i + 1;
			for (size_t k = p; k < p + l; k++)
				if (b[k] == '\r')
					return -1;
			return (long)l;
		}
	}
	return -1;
}

static bool list_has_token(const uint8_t *v, size_t n, const char *tok)
{
	size_t i = 0;
	while (i < n) {
		while (i < n && (v[i] == ' ' || v[i] == '\t' || v[i] == ','))
			i++;
		size_t s = i;
		while (i < n && v[i] != ',')
			i++;
		size_t e = i;
		while (e > s && (v[e - 1] == ' ' || v[e - 1] == '\t'))
			e--;
		if (e > s && ieq(v + s, e - s, tok))
			return true;
	}
	return false;
}

/* Content-Length: 1*DIGIT, or a list of identical values ("5, 5"). */
static int parse_content_length(const uint8_t *v, size_t n, size_t *out, bool *seen)
{
	size_t i = 0;
	if (n == 0)
		return -1;
	while (i < n) {
		while (i < n && (v[i] == ' ' || v[i] == '\t'))
			i++;
		size_t s = i, val = 0;
		while (i < n && v[i] >= '0' && v[i] <= '9') {
			if (val > (SIZE_MAX - 9) / 10)
				return -1;
			val = val * 10 + (size_t)(v[i] - '0');
			i++;
		}
		if (i == s)
			return -1;
		while (i < n && (v[i] == ' ' || v[i] == '\t'))
			i++;
		if (i < n) {
			if (v[i] != ',')
				return -1;
			i++;
			if (i == n)
				return -1;
		}
		if (*seen && *out != val)
			return -1;
		*out = val;
		*seen = true;
	}
	return 0;
}

/* Parses the head in ibuf[0, head_len). Returns 0 or a negative errno after queueing the
 * error response. */
static int parse_head(struct http1_conn *c)
{
	const uint8_t *b = c->ibuf;
	size_t end = c->head_len, next;
	long ll = line_at(b, 0, end, &next);
	if (ll < 0)
		return fail_request(c, 400, -EPROTO);
	size_t l = (size_t)ll;
	/* method SP target SP HTTP/x.y */
	size_t i = 0;
	while (i < l && is_tchar(b[i]))
		i++;
	if (i == 0 || i > METHOD_MAX || i >= l || b[i] != ' ')
		return fail_request(c, 400, -EPROTO);
	c->method_len = (uint32_t)i;
	size_t t = ++i;
	while (i < l && b[i] > 0x20 && b[i] < 0x7f)
		i++;
	if (i == t || i >= l || b[i] != ' ')
		return fail_request(c, 400, -EPROTO);
	c->target_off = (uint32_t)t;
	c->target_len = (uint32_t)(i - t);
	/* origin-form ("/..."), asterisk-form ("*"), or absolute-form, reduced to its path */
	if (b[t] != '/' && !(c->target_len == 1 && b[t] == '*')) {
		size_t s = 0;
		if (c->target_len > 7 && ieq(b + t, 7, "http://"))
			s = 7;
		else if (c->target_len > 8 && ieq(b + t, 8, "https://"))
			s = 8;
		if (s == 0)
			return fail_request(c, 400, -EPROTO);
		while (s < c->target_len && b[t + s] != '/' && b[t + s] != '?')
			s++;
		c->target_off += (uint32_t)s;
		c->target_len -= (uint32_t)s;
	}
	i++;
	if (l - i != 8 || memcmp(b + i, "HTTP/", 5) != 0 || b[i + 5] < '0' || b[i + 5] > '9' || b[i + 6] != '.' ||
	    b[i + 7] < '0' || b[i + 7] > '9')
		return fail_request(c, 400, -EPROTO);
	if (b[i + 5] != '1')
		return fail_request(c, 505, -EPROTO);
	c->version_minor = b[i + 7] == '0' ? 0 : 1;
	c->head = c->method_len == 4 && memcmp(b, "HEAD", 4) == 0;

	bool cl_seen = false, te_seen = false, conn_close = false, conn_keep = false, expect_other = false;
	unsigned hosts = 0;
	c->content_length = 0;
	c->chunked = false;
	c->expect_continue = false;
	c->n_hdrs = 0;
	size_t p = next;
	for (;;) {
		ll = line_at(b, p, end, &next);
		if (ll < 0)
			return fail_request(c, 400, -EPROTO);
		l = (size_t)ll;
		if (l == 0)
			break;
		const uint8_t *h = b + p;
		if (h[0] == ' ' || h[0] == '\t') /* obs-fold */
			return fail_request(c, 400, -EPROTO);
		size_t k = 0;
		while (k < l && is_tchar(h[k]))
			k++;
		if (k == 0 || k >= l || h[k] != ':')
			return fail_request(c, 400, -EPROTO);
		size_t vs = k + 1, ve = l;
		while (vs < ve && (h[vs] == ' ' || h[vs] == '\t'))
			vs++;
		while (ve > vs && (h[ve - 1] == ' ' || h[ve - 1] == '\t'))
			ve--;
		for (size_t q = vs; q < ve; q++)
			if ((h[q] < 0x20 && h[q] != '\t') || h[q] == 0x7f)
				return fail_request(c, 400, -EPROTO);
		if (c->n_hdrs >= c->cfg.max_headers)
			return fail_request(c, 431, -EPROTO);
		c->hdrs[c->n_hdrs++] = (struct hdr_off){(uint32_t)p, (uint32_t)k, (uint32_t)(p + vs),
						      (uint32_t)(ve - vs)};
		const uint8_t *v = h + vs;
		size_t vn = ve - vs;
		if (ieq(h, k, "content-length")) {
			if (parse_content_length(v, vn, &c->content_length, &cl_seen) < 0)
				return fail_request(c, 400, -EPROTO);
		} else if (ieq(h, k, "transfer-encoding")) {
			/* only a lone "chunked" (one header, one coding) is supported */
			if (te_seen)
				return fail_request(c, 501, -EPROTO);
			te_seen = true;
			if (!ieq(v, vn, "chunked"))
				return fail_request(c, list_has_token(v, vn, "chunked") || vn == 0 ? 400 : 501, -EPROTO);
			c->chunked = true;
		} else if (ieq(h, k, "connection")) {
			conn_close |= list_has_token(v, vn, "close");
			conn_keep |= list_has_token(v, vn, "keep-alive");
		} else if (ieq(h, k, "host")) {
			hosts++;
		} else if (ieq(h, k, "expect")) {
			if (ieq(v, vn, "100-continue"))
				c->expect_continue = true;
			else
				expect_other = true;
		}
		p = next;
	}
	if (te_seen && (cl_seen || c->version_minor == 0))
		return fail_request(c, 400, -EPROTO);
	if (hosts > 1 || (hosts == 0 && c->version_minor == 1))
		return fail_request(c, 400, -EPROTO);
	if (expect_other)
		return fail_request(c, 417, -EPROTO);
	if (c->version_minor == 0)
		c->keep_alive = conn_keep && !conn_close;
	else
		c->keep_alive = !conn_close;
	if (!c->chunked && c->content_length > c->cfg.max_body_bytes)
		return fail_request(c, 413, -EPROTO);
	return 0;
}

static int hexval(uint8_t ch)
{
	if (ch >= '0' && ch <= '9')
		return ch - '0';
	if (ch >= 'a' && ch <= 'f')
		return ch - 'a' + 10;
	if (ch >= 'A' && ch <= 'F')
		return ch - 'A' + 10;
	return -1;
}

/* Advances the chunked decoder over ibuf[raw, ilen). Returns 1 when the body is complete,
 * 0 when more bytes are needed, or a negative errno (error response queued). */
static int parse_chunked(struct http1_conn *c)
{
	uint8_t *b = c->ibuf;
	for (;;) {
		size_t avail = c->ilen - c->raw;
		switch (c->ps) {
		case PS_CHUNK_SIZE: {
			size_t next;
			uint8_t *nl = memchr(b + c->raw, '\n', avail);
			if (!nl)
				return avail > CHUNK_LINE_MAX ? fail_request(c, 400, -EPROTO) : 0;
			next = (size_t)(nl - b) + 1;
			size_t e = next - 1;
			if (e > c->raw && b[e - 1] == '\r')
				e--;
			if (e - c->raw > CHUNK_LINE_MAX)
				return fail_request(c, 400, -EPROTO);
			size_t i = c->raw, size = 0;
			int hv;
			while (i < e && (hv = hexval(b[i])) >= 0) {
				if (size > (c->cfg.max_body_bytes + 1) >> 4)
					return fail_request(c, 413, -EPROTO);
				size = size * 16 + (size_t)hv;
				i++;
			}
			if (i == c->raw)
				return fail_request(c, 400, -EPROTO);
			while (i < e && (b[i] == ' ' || b[i] == '\t'))
				i++;
			if (i < e && b[i] != ';')
				return fail_request(c, 400, -EPROTO);
			for (; i < e; i++)
				if ((b[i] < 0x20 && b[i] != '\t') || b[i] == 0x7f)
					return fail_request(c, 400, -EPROTO);
			if (size > c->cfg.max_body_bytes - c->body_len)
				return fail_request(c, 413, -EPROTO);
			c->raw = next;
			c->chunk_left = size;
			c->ps = size ? PS_CHUNK_DATA : PS_TRAILER;
			c->trailer_bytes = 0;
			break;
		}
		case PS_CHUNK_DATA: {
			size_t k = avail < c->chunk_left ? avail : c->chunk_left;
			if (k == 0)
				return 0;
			size_t dst = c->head_len + c->body_len;
			if (dst != c->raw)
				memmove(b + dst, b + c->raw, k);
			c->body_len += k;
			c->raw += k;
			c->chunk_left -= k;
			if (c->chunk_left == 0)
				c->ps = PS_CHUNK_CRLF;
			break;
		}
		case PS_CHUNK_CRLF:
			if (avail < 1)
				return 0;
			if (b[c->raw] == '\n') {
				c->raw += 1;
			} else if (b[c->raw] == '\r') {
				if (avail < 2)
					return 0;
				if (b[c->raw + 1] != '\n')
					return fail_request(c, 400, -EPROTO);
				c->raw += 2;
			} else {
				return fail_request(c, 400, -EPROTO);
			}
			c->ps = PS_CHUNK_SIZE;
			break;
		case PS_TRAILER: {
			uint8_t *nl = memchr(b + c->raw, '\n', avail);
			if (!nl) {
				if (c->trailer_bytes + avail > c->cfg.max_header_bytes)
					return fail_request(c, 431, -EPROTO);
				return 0;
			}
			size_t next = (size_t)(nl - b) + 1;
			size_t e = next - 1;
			if (e > c->raw && b[e - 1] == '\r')
				e--;
			c->trailer_bytes += next - c->raw;
			if (c->trailer_bytes > c->cfg.max_header_bytes)
				return fail_request(c, 431, -EPROTO);
			for (size_t i = c->raw; i < e; i++)
				if ((b[i] < 0x20 && b[i] != '\t') || b[i] == 0x7f)
					return fail_request(c, 400, -EPROTO);
			if (e > c->raw && (b[c->raw] == ' ' || b[c->raw] == '\t' || !memchr(b + c->raw, ':', e - c->raw)))
				return fail_request(c, 400, -EPROTO);
			bool empty = e == c->raw;
			c->raw = next;
			if (empty) {
				c->ps = PS_COMPLETE;
				return 1;
			}
			break;
		}
		default:
			return 1;
		}
	}
}

static void ibuf_compact_chunked(struct http1_conn *c)
{
	/* close the gap between decoded body and the raw tail */
	size_t dst = c->head_len + c->body_len;
	if (c->raw > dst) {
		memmove(c->ibuf + dst, c->ibuf + c->raw, c->ilen - c->raw);
		c->ilen -= c->raw - dst;
		c->raw = dst;
	}
}

/* Advances the parser. Returns 1 when a complete request is in ibuf[0, req_end), 0 when
 * more bytes are needed, or a negative errno (error response queued, connection closing). */
static int parse_step(struct http1_conn *c)
{
	if (c->ps == PS_HEAD) {
		/* RFC 9112 §2.2: ignore empty lines before the request line */
		while (c->ilen > 0 && (c->ibuf[0] == '\n' || (c->ilen >= 2 && c->ibuf[0] == '\r' && c->ibuf[1] == '\n'))) {
			size_t k = c->ibuf[0] == '\n' ? 1 : 2;
			if (++c->leading_empty > LEADING_EMPTY_MAX)
				return fail_request(c, 400, -EPROTO);
			memmove(c->ibuf, c->ibuf + k, c->ilen - k);
			c->ilen -= k;
			c->scan = 0;
		}
		size_t hl = head_end(c);
		if (hl == 0)
			return c->ilen > c->cfg.max_header_bytes ? fail_request(c, 431, -EPROTO) : 0;
		if (hl > c->cfg.max_header_bytes)
			return fail_request(c, 431, -EPROTO);
		c->head_len = hl;
		c->scan = 0;
		c->leading_empty = 0;
		int rc = parse_head(c);
		if (rc < 0)
			return rc;
		c->body_len = 0;
		if (c->chunked) {
			c->ps = PS_CHUNK_SIZE;
			c->raw = c->head_len;
		} else if (c->content_length > 0) {
			c->ps = PS_BODY_CL;
		} else {
			c->req_end = c->head_len;
			c->ps = PS_COMPLETE;
			return 1;
		}
		bool body_missing = c->chunked ? c->ilen == c->head_len : c->ilen - c->head_len < c->content_length;
		if (c->expect_continue && c->version_minor == 1 && body_missing) {
			static const char cont[] = "HTTP/1.1 100 Continue\r\n\r\n";
			if (!out_room(c, sizeof(cont) - 1))
				return fail_request(c, 503, -ENOBUFS);
			out_put(c, cont, sizeof(cont) - 1);
		}
	}
	if (c->ps == PS_BODY_CL) {
		if (c->ilen - c->head_len < c->content_length)
			return 0;
		c->body_len = c->content_length;
		c->req_end = c->head_len + c->content_length;
		c->ps = PS_COMPLETE;
		return 1;
	}
	if (c->ps == PS_COMPLETE)
		return 1;
	int rc = parse_chunked(c);
	if (rc == 0)
		ibuf_compact_chunked(c);
	if (rc == 1)
		c->req_end = c->raw;
	return rc;
}

static void dispatch(struct http1_conn *c, struct http1_header *pub)
{
	const char *b = (const char *)c->ibuf;
	for (uint32_t i = 0; i < c->n_hdrs; i++) {
		pub[i].name = b + c->hdrs[i].name;
		pub[i].name_len = c->hdrs[i].name_len;
		pub[i].value = b + c->hdrs[i].value;
		pub[i].value_len = c->hdrs[i].value_len;
	}
	struct http1_request req = {
		.method = b,
		.method_len = c->method_len,
		.path = b + c->target_off,
		.path_len = c->target_len,
		.headers = pub,
		.n_headers = c->n_hdrs,
		.body = c->body_len ? c->ibuf + c->head_len : NULL,
		.body_len = c->body_len,
		.version_minor = c->version_minor,
		.keep_alive = c->keep_alive,
		.head = c->head,
	};
	if (req.path_len == 0 || req.path[0] == '?') {
		/* absolute-form without a path: the path is "/" (RFC 9112 §3.2.2) */
		req.query = req.path_len ? req.path + 1 : NULL;
		req.query_len = req.path_len ? req.path_len - 1 : 0;
		req.path = "/";
		req.path_len = 1;
	}
	const char *q = req.query ? NULL : memchr(req.path, '?', req.path_len);
	if (q) {
		req.query = q + 1;
		req.query_len = req.path_len - (size_t)(q + 1 - req.path);
		req.path_len = (size_t)(q - req.path);
	}
	c->busy = true;
	c->streaming = false;
	c->answer_head = c->head;
	c->answer_keep = c->keep_alive;
	c->answer_minor = c->version_minor;
	c->drop = c->req_end;
	c->ps = PS_HEAD;
	c->in_dispatch = true;
	c->on_request(c->user, c, &req);
	c->in_dispatch = false;
}

static int process(struct http1_conn *c)
{
	int rc = 0;
	if (c->in_dispatch)
		return 0; /* called from inside the callback: the outer loop goes on */
	while (!c->closing && !c->busy) {
		if (c->drop) {
			memmove(c->ibuf, c->ibuf + c->drop, c->ilen - c->drop);
			c->ilen -= c->drop;
			c->drop = 0;
			c->scan = 0;
		}
		rc = parse_step(c);
		if (rc <= 0)
			break;
		dispatch(c, c->pub);
		rc = 0;
	}
	if (!c->busy && c->ilen == 0 && c->icap > IBUF_SLACK) {
		free(c->ibuf); /* give back what a large body needed */
		c->ibuf = NULL;
		c->icap = 0;
	}
	return rc < 0 ? rc : 0;
}

int http1_conn_recv(struct http1_conn *c, const uint8_t *data, size_t len)
{
	while (len > 0) {
		if (c->closing)
			return 0; /* after the last response: input is discarded */
		if (!c->busy && c->drop && !c->in_dispatch) {
			memmove(c->ibuf, c->ibuf + c->drop, c->ilen - c->drop);
			c->ilen -= c->drop;
			c->drop = 0;
			c->scan = 0;
		}
		size_t space = c->icap_max - c->ilen;
		if (space == 0) {
			c->closing = true;
			return -ENOBUFS;
		}
		size_t k = len < space ? len : space;
		if (c->ilen + k > c->icap) {
			if (c->in_dispatch)
				return -EBUSY; /* would move the request the callback is reading */
			size_t cap = c->icap ? c->icap : IBUF_INIT;
			while (cap < c->ilen + k)
				cap *= 2;
			if (cap > c->icap_max)
				cap = c->icap_max;
			uint8_t *nb = realloc(c->ibuf, cap);
			if (!nb)
				abort();
			c->ibuf = nb;
			c->icap = cap;
		}
		memcpy(c->ibuf + c->ilen, data, k);
		c->ilen += k;
		data += k;
		len -= k;
		int rc = process(c);
		if (rc < 0)
			return rc;
	}
	return 0;
}

int http1_conn_resume(struct http1_conn *c)
{
	if (c->closing || c->busy)
		return 0;
	return process(c);
}

struct http1_conn *http1_conn_new(const struct http1_config *cfg, http1_request_fn on_request, void *user)
{
	struct http1_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	if (cfg)
		c->cfg = *cfg;
	else
		http1_config_default(&c->cfg);
	if (c->cfg.max_headers == 0)
		c->cfg.max_headers = 1;
	if (c->cfg.max_header_bytes > UINT32_MAX / 2)
		c->cfg.max_header_bytes = UINT32_MAX / 2; /* header offsets are 32-bit */
	c->on_request = on_request;
	c->user = user;
	c->icap_max = c->cfg.max_header_bytes + c->cfg.max_body_bytes + IBUF_SLACK;
	c->hdrs = calloc(c->cfg.max_headers, sizeof(*c->hdrs));
	c->pub = calloc(c->cfg.max_headers, sizeof(*c->pub));
	if (!c->hdrs || !c->pub) {
		http1_conn_free(c);
		return NULL;
	}
	return c;
}

void http1_conn_free(struct http1_conn *c)
{
	if (!c)
		return;
	struct out_block *b = c->head_blk;
	while (b) {
		struct out_block *n = b->next;
		free(b);
		b = n;
	}
	free(c->ibuf);
	free(c->hdrs);
	free(c->pub);
	free(c);
}

const char *http1_header_get(const struct http1_request *req, const char *name, size_t *value_len)
{
	for (size_t i = 0; i < req->n_headers; i++) {
		const struct http1_header *h = &req->headers[i];
		if (ieq((const uint8_t *)h->name, h->name_len, name)) {
			if (value_len)
				*value_len = h->value_len;
			return h->value;
		}
	}
	return NULL;
}

bool http1_query_next(const char **query, size_t *query_len, const char **name, size_t *name_len,
		      const char **value, size_t *value_len)
{
	while (*query && *query_len > 0) {
		const char *q = *query;
		const char *amp = memchr(q, '&', *query_len);
		size_t piece = amp ? (size_t)(amp - q) : *query_len;
		*query += amp ? piece + 1 : piece;
		*query_len -= amp ? piece + 1 : piece;
		if (piece == 0)
			continue;
		const char *eq = memchr(q, '=', piece);
		*name = q;
		*name_len = eq ? (size_t)(eq - q) : piece;
		*value = eq ? eq + 1 : NULL;
		*value_len = eq ? piece - *name_len - 1 : 0;
		return true;
	}
	return false;
}
