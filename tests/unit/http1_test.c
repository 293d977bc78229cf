/* HTTP/1.1 connection tests: requests fed whole, split at every byte boundary and byte by
 * byte; pipelining with synchronous and late answers; chunked in and out; every parse
 * error's status; the output-buffer contract; HTTP/1.0; HEAD; the protocol sniffer. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/http1.h"

/* ---- harness ---- */

struct seen {
	char method[16], path[256], query[256];
	bool has_query;
	char body[8192];
	size_t body_len;
	int minor;
	bool keep, head;
	size_t n_headers;
	char h0name[64], h0value[256];
};

enum answer_mode { ANSWER_NOW, ANSWER_LATER, ANSWER_STREAM };

struct harness {
	struct http1_conn *c;
	enum answer_mode mode;
	struct seen req[16];
	size_t n;
	char out[65536];
	size_t out_len;
};

static void on_request(void *user, struct http1_conn *c, const struct http1_request *r)
{
	struct harness *h = user;
	cr_assert(h->n < 16);
	struct seen *s = &h->req[h->n++];
	memset(s, 0, sizeof(*s));
	snprintf(s->method, sizeof(s->method), "%.*s", (int)r->method_len, r->method);
	snprintf(s->path, sizeof(s->path), "%.*s", (int)r->path_len, r->path);
	if (r->query) {
		s->has_query = true;
		snprintf(s->query, sizeof(s->query), "%.*s", (int)r->query_len, r->query);
	}
	if (r->body_len && r->body_len < sizeof(s->body))
		memcpy(s->body, r->body, r->body_len);
	s->body_len = r->body_len;
	s->minor = r->version_minor;
	s->keep = r->keep_alive;
	s->head = r->head;
	s->n_headers = r->n_headers;
	if (r->n_headers) {
		snprintf(s->h0name, sizeof(s->h0name), "%.*s", (int)r->headers[0].name_len, r->headers[0].name);
		snprintf(s->h0value, sizeof(s->h0value), "%.*s", (int)r->headers[0].value_len, r->headers[0].value);
	}
	if (h->mode == ANSWER_NOW) {
		cr_assert_eq(http1_respond(c, 200, "text/plain", s->path, strlen(s->path)), 0);
		/* the request stays readable after the answer, inside the callback */
		cr_assert_eq(memcmp(r->path, s->path, r->path_len), 0);
	} else if (h->mode == ANSWER_STREAM) {
		cr_assert_eq(http1_stream_begin(c, 200, "application/json"), 0);
		cr_assert_eq(http1_stream_write(c, "{\"a\":1}\n", 8), 0);
		cr_assert_eq(http1_stream_write(c, "", 0), 0);
		cr_assert_eq(http1_stream_write(c, "{\"b\":2}\n", 8), 0);
		cr_assert_eq(http1_stream_end(c), 0);
	}
}

static void drain(struct harness *h)
{
	struct iovec iov[8];
	size_t n;
	while ((n = http1_conn_output(h->c, iov, 8)) > 0) {
		size_t tot = 0;
		for (size_t i = 0; i < n; i++) {
			cr_assert(h->out_len + iov[i].iov_len < sizeof(h->out));
			memcpy(h->out + h->out_len, iov[i].iov_base, iov[i].iov_len);
			h->out_len += iov[i].iov_len;
			tot += iov[i].iov_len;
		}
		http1_conn_output_consumed(h->c, tot);
	}
	h->out[h->out_len] = 0;
	cr_assert(!http1_conn_has_output(h->c));
}

static struct harness *H;

static void hsetup(enum answer_mode mode, const struct http1_config *cfg)
{
	if (H) {
		http1_conn_free(H->c);
		free(H);
	}
	H = calloc(1, sizeof(*H));
	H->mode = mode;
	H->c = http1_conn_new(cfg, on_request, H);
	cr_assert_not_null(H->c);
}

static void teardown(void)
{
	if (H) {
		http1_conn_free(H->c);
		free(H);
		H = NULL;
	}
}

static int feed(const char *s)
{
	int rc = http1_conn_recv(H->c, (const uint8_t *)s, strlen(s));
	drain(H);
	return rc;
}

static int feedn(const char *s, size_t n)
{
	int rc = http1_conn_recv(H->c, (const uint8_t *)s, n);
	drain(H);
	return rc;
}

TestSuite(http1, .fini = teardown);

/* ---- sniffing ---- */

Test(http1, sniff)
{
	const char *pre = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	for (size_t i = 1; i < 24; i++)
		cr_assert_eq(http1_sniff((const uint8_t *)pre, i), HTTP1_SNIFF_MORE, "len %zu", i);
	cr_assert_eq(http1_sniff((const uint8_t *)pre, 24), HTTP1_SNIFF_HTTP2);
	cr_assert_eq(http1_sniff((const uint8_t *)"", 0), HTTP1_SNIFF_MORE);
	cr_assert_eq(http1_sniff((const uint8_t *)"GE", 2), HTTP1_SNIFF_MORE);
	cr_assert_eq(http1_sniff((const uint8_t *)"GET /", 5), HTTP1_SNIFF_HTTP1);
	cr_assert_eq(http1_sniff((const uint8_t *)"POST ", 5), HTTP1_SNIFF_HTTP1);
	cr_assert_eq(http1_sniff((const uint8_t *)"PRI * HTTP/1.1", 14), HTTP1_SNIFF_HTTP1);
	cr_assert_eq(http1_sniff((const uint8_t *)"PRX /", 5), HTTP1_SNIFF_HTTP1);
	cr_assert_eq(http1_sniff((const uint8_t *)"\x16\x03\x01", 3), HTTP1_SNIFF_NEITHER);
	cr_assert_eq(http1_sniff((const uint8_t *)" GET", 4), HTTP1_SNIFF_NEITHER);
	cr_assert_eq(http1_sniff((const uint8_t *)"get /", 5), HTTP1_SNIFF_NEITHER);
	cr_assert_eq(http1_sniff((const uint8_t *)"AAAAAAAAAAAAAAAAAAAAAAAAA", 25), HTTP1_SNIFF_NEITHER);
}

/* ---- basic requests ---- */

static void expect_error(const char *req, int status, const struct http1_config *cfg);
static void expect_error_fwd(const char *req)
{
	expect_error(req, 400, NULL);
}

Test(http1, get_with_query_and_date)
{
	hsetup(ANSWER_NOW, NULL);
	http1_conn_set_time(H->c, 784111777); /* Sun, 06 Nov 1994 08:49:37 GMT */
	cr_assert_eq(feed("GET /health?exclude=NOSPACE&serializable=true HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
	cr_assert_eq(H->n, 1);
	cr_assert_str_eq(H->req[0].method, "GET");
	cr_assert_str_eq(H->req[0].path, "/health");
	cr_assert(H->req[0].has_query);
	cr_assert_str_eq(H->req[0].query, "exclude=NOSPACE&serializable=true");
	cr_assert_eq(H->req[0].body_len, 0);
	cr_assert(H->req[0].keep);
	cr_assert_eq(H->req[0].n_headers, 1);
	cr_assert_str_eq(H->req[0].h0name, "Host");
	cr_assert_str_eq(H->out, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n"
				 "Content-Length: 7\r\n\r\n/health");
	cr_assert(!http1_conn_done(H->c));
	cr_assert(!http1_conn_busy(H->c));
}

Test(http1, request_target_forms)
{
	hsetup(ANSWER_NOW, NULL);
	cr_assert_eq(feed("GET http://example.com:2379/health?x=1 HTTP/1.1\r\nHost: x\r\n\r\n"
			  "GET HTTPS://h HTTP/1.1\r\nHost: x\r\n\r\n"
			  "GET http://h?q HTTP/1.1\r\nHost: x\r\n\r\n"
			  "OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n"), 0);
	cr_assert_eq(H->n, 4);
	cr_assert_str_eq(H->req[0].path, "/health");
	cr_assert_str_eq(H->req[0].query, "x=1");
	cr_assert_str_eq(H->req[1].path, "/");
	cr_assert(!H->req[1].has_query);
	cr_assert_str_eq(H->req[2].path, "/");
	cr_assert_str_eq(H->req[2].query, "q");
	cr_assert_str_eq(H->req[3].path, "*");
	expect_error_fwd("GET ?/x HTTP/1.1\r\nHost: x\r\n\r\n");
	expect_error_fwd("GET ftp://x/ HTTP/1.1\r\nHost: x\r\n\r\n");
}

Test(http1, empty_query_and_header_trim)
{
	hsetup(ANSWER_NOW, NULL);
	cr_assert_eq(feed("GET /x? HTTP/1.1\r\nHost:   a b \t\r\n\r\n"), 0);
	cr_assert(H->req[0].has_query);
	cr_assert_str_eq(H->req[0].query, "");
	cr_assert_str_eq(H->req[0].h0value, "a b");
}

Test(http1, bare_lf_and_leading_empty_lines)
{
	hsetup(ANSWER_NOW, NULL);
	cr_assert_eq(feed("\r\n\nGET /a HTTP/1.1\nHost: x\n\n"), 0);
	cr_assert_eq(H->n, 1);
	cr_assert_str_eq(H->req[0].path, "/a");
}

static const char POST_CL[] = "POST /v3/kv/range HTTP/1.1\r\nHost: h\r\nContent-Type: application/json\r\n"
			      "Content-Length: 14\r\n\r\n{\"key\":\"Zm9v\"}";
static const char POST_CHUNKED[] = "POST /v3/kv/put HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n"
				   "5;ext=1\r\n{\"key\r\n"
				   "A\r\n\":\"Zm9v\",\"\r\n"
				   "0e \r\nvalue\":\"YmFy\"}\r\n"
				   "0\r\nX-Trailer: yes\r\n\r\n";
static const char CHUNKED_BODY[] = "{\"key\":\"Zm9v\",\"value\":\"YmFy\"}";

static void check_post(const char *req, const char *path, const char *body)
{
	size_t n = strlen(req);
	/* whole, then every two-piece split, then byte by byte */
	for (size_t split = 0; split <= n + 1; split++) {
		hsetup(ANSWER_NOW, NULL);
		if (split <= n) {
			cr_assert_eq(feedn(req, split), 0);
			cr_assert_eq(feedn(req + split, n - split), 0);
		} else {
			for (size_t i = 0; i < n; i++)
				cr_assert_eq(feedn(req + i, 1), 0);
		}
		cr_assert_eq(H->n, 1, "split %zu", split);
		cr_assert_str_eq(H->req[0].method, "POST");
		cr_assert_str_eq(H->req[0].path, path);
		cr_assert(!H->req[0].has_query);
		cr_assert_eq(H->req[0].body_len, strlen(body), "split %zu: %zu", split, H->req[0].body_len);
		cr_assert_eq(memcmp(H->req[0].body, body, strlen(body)), 0, "split %zu", split);
		cr_assert(strncmp(H->out, "HTTP/1.1 200 OK\r\n", 17) == 0);
	}
}

Test(http1, content_length_every_split)
{
	check_post(POST_CL, "/v3/kv/range", "{\"key\":\"Zm9v\"}");
}

Test(http1, chunked_every_split)
{
	check_post(POST_CHUNKED, "/v3/kv/put", CHUNKED_BODY);
}

Test(http1, chunked_bare_lf)
{
	hsetup(ANSWER_NOW, NULL);
	cr_assert_eq(feed("POST / HTTP/1.1\nHost: h\nTransfer-Encoding: Chunked\n\n3\nabc\n0\n\n"), 0);
	cr_assert_eq(H->n, 1);
	cr_assert_eq(H->req[0].body_len, 3);
}

/* ---- pipelining and keep-alive ---- */

static const char THREE[] = "GET /1 HTTP/1.1\r\nHost: h\r\n\r\n"
			    "POST /2 HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabc"
			    "GET /3 HTTP/1.1\r\nHost: h\r\n\r\n";

Test(http1, pipelined_answered_at_once)
{
	size_t n = strlen(THREE);
	for (size_t split = 0; split <= n; split++) {
		hsetup(ANSWER_NOW, NULL);
		cr_assert_eq(feedn(THREE, split), 0);
		cr_assert_eq(feedn(THREE + split, n - split), 0);
		cr_assert_eq(H->n, 3);
		cr_assert_str_eq(H->req[1].body, "abc");
		cr_assert_str_eq(H->out, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n/1"
					 "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n/2"
					 "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\n/3");
	}
}

Test(http1, pipelined_answered_later)
{
	hsetup(ANSWER_LATER, NULL);
	cr_assert_eq(feed(THREE), 0);
	cr_assert_eq(H->n, 1, "the next request waits for the answer");
	cr_assert(http1_conn_busy(H->c));
	cr_assert_eq(H->out_len, 0);
	cr_assert_eq(http1_respond(H->c, 404, NULL, "", 0), 0);
	cr_assert_eq(H->n, 1, "respond never calls back");
	cr_assert_eq(http1_conn_resume(H->c), 0);
	cr_assert_eq(H->n, 2);
	cr_assert_eq(http1_respond(H->c, 200, "a/b", "x", 1), 0);
	cr_assert_eq(http1_respond(H->c, 200, "a/b", "x", 1), -EALREADY);
	cr_assert_eq(http1_conn_resume(H->c), 0);
	cr_assert_eq(H->n, 3);
	cr_assert_eq(http1_stream_begin(H->c, 200, "application/json"), 0);
	cr_assert_eq(http1_respond(H->c, 200, "a/b", "x", 1), -EALREADY);
	cr_assert_eq(http1_stream_write(H->c, "hello", 5), 0);
	cr_assert_eq(http1_stream_end(H->c), 0);
	cr_assert_eq(http1_stream_end(H->c), -EALREADY);
	cr_assert_eq(http1_conn_resume(H->c), 0);
	drain(H);
	cr_assert_str_eq(H->out, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n"
				 "HTTP/1.1 200 OK\r\nContent-Type: a/b\r\nContent-Length: 1\r\n\r\nx"
				 "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
				 "5\r\nhello\r\n0\r\n\r\n");
	cr_assert(!http1_conn_done(H->c));
}

Test(http1, backpressure_while_busy)
{
	struct http1_config cfg;
	http1_config_default(&cfg);
	cfg.max_header_bytes = 256;
	cfg.max_body_bytes = 256;
	hsetup(ANSWER_LATER, &cfg);
	cr_assert_eq(feed("GET /w HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
	cr_assert(http1_conn_want_read(H->c));
	char junk[300];
	memset(junk, 'G', sizeof(junk));
	cr_assert_eq(feedn(junk, sizeof(junk)), 0);
	cr_assert(!http1_conn_want_read(H->c));
	/* a reactor that ignores want_read hits the hard bound */
	int rc = 0;
	for (int i = 0; i < 1000 && rc == 0; i++)
		rc = feedn(junk, sizeof(junk));
	cr_assert_eq(rc, -ENOBUFS);
}

Test(http1, connection_close)
{
	hsetup(ANSWER_NOW, NULL);
	cr_assert_eq(feed("GET /a HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\nGET /b HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
	cr_assert_eq(H->n, 1);
	cr_assert(!H->req[0].keep);
	cr_assert(strstr(H->out, "Connection: close\r\n"));
	cr_assert(http1_conn_done(H->c));
	cr_assert(!http1_conn_want_read(H->c));
	cr_assert_eq(feed("GET /c HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
	cr_assert_eq(H->n, 1);
}

Test(http1, connection_tokens)
{
	hsetup(ANSWER_NOW, NULL);
	cr_assert_eq(feed("GET /a HTTP/1.1\r\nHost: h\r\nConnection: Upgrade, CLOSE\r\n\r\n"), 0);
	cr_assert(http1_conn_done(H->c));
}

Test(http1, http10)
{
	hsetup(ANSWER_NOW, NULL);
	cr_assert_eq(feed("GET /a HTTP/1.0\r\n\r\n"), 0);
	cr_assert_eq(H->req[0].minor, 0);
	cr_assert(!H->req[0].keep);
	cr_assert_str_eq(H->out, "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n"
				 "Connection: close\r\n\r\n/a");
	cr_assert(http1_conn_done(H->c));

	hsetup(ANSWER_NOW, NULL);
	cr_assert_eq(feed("GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n"), 0);
	cr_assert_eq(H->n, 2);
	cr_assert(strstr(H->out, "Connection: keep-alive\r\n\r\n/aHTTP/1.0 200 OK"));
	cr_assert(http1_conn_done(H->c));
}

Test(http1, http10_stream_is_raw)
{
	hsetup(ANSWER_STREAM, NULL);
	cr_assert_eq(feed("POST /v3/watch HTTP/1.0\r\nConnection: keep-alive\r\n\r\n"), 0);
	cr_assert_str_eq(H->out, "HTTP/1.0 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n"
				 "{\"a\":1}\n{\"b\":2}\n");
	cr_assert(http1_conn_done(H->c));
}

Test(http1, http11_version_minor_above_1)
{
	hsetup(ANSWER_NOW, NULL);
	cr_assert_eq(feed("GET / HTTP/1.7\r\nHost: h\r\n\r\n"), 0);
	cr_assert_eq(H->n, 1);
	cr_assert_eq(H->req[0].minor, 1);
}

Test(http1, stream_chunked)
{
	hsetup(ANSWER_STREAM, NULL);
	http1_conn_set_time(H->c, 784111777);
	cr_assert_eq(feed("POST /v3/watch HTTP/1.1\r\nHost: h\r\nContent-Length: 2\r\n\r\n{}"), 0);
	cr_assert_str_eq(H->out, "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
				 "Date: Sun, 06 Nov 1994 08:49:37 GMT\r\nTransfer-Encoding: chunked\r\n\r\n"
				 "8\r\n{\"a\":1}\n\r\n8\r\n{\"b\":2}\n\r\n0\r\n\r\n");
}

Test(http1, extra_headers_and_204)
{
	hsetup(ANSWER_LATER, NULL);
	cr_assert_eq(feed("GET / HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
	cr_assert_eq(http1_respond_ex(H->c, 405, "text/plain; charset=utf-8", "Allow: GET\r\n", "Method Not Allowed\n", 19),
		     0);
	cr_assert_eq(http1_conn_resume(H->c), 0);
	cr_assert_eq(feed("GET / HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
	cr_assert_eq(http1_respond(H->c, 204, "text/plain", "zz", 2), 0);
	drain(H);
	cr_assert_str_eq(H->out, "HTTP/1.1 405 Method Not Allowed\r\nAllow: GET\r\nContent-Type: text/plain; charset=utf-8\r\n"
				 "Content-Length: 19\r\n\r\nMethod Not Allowed\n"
				 "HTTP/1.1 204 No Content\r\n\r\n");
}

Test(http1, head_has_no_body)
{
	hsetup(ANSWER_NOW, NULL);
	cr_assert_eq(feed("HEAD /abc HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
	cr_assert(H->req[0].head);
	cr_assert_str_eq(H->out, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 4\r\n\r\n");
}

Test(http1, expect_continue)
{
	hsetup(ANSWER_NOW, NULL);
	cr_assert_eq(feed("POST /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n"), 0);
	cr_assert_str_eq(H->out, "HTTP/1.1 100 Continue\r\n\r\n");
	cr_assert_eq(feed("ok"), 0);
	cr_assert_eq(H->n, 1);
	cr_assert(strstr(H->out, "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n"));
	/* body already there: no interim response */
	hsetup(ANSWER_NOW, NULL);
	cr_assert_eq(feed("POST /x HTTP/1.1\r\nHost: h\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nok"), 0);
	cr_assert(strncmp(H->out, "HTTP/1.1 200 OK", 15) == 0);
}

/* ---- errors ---- */

static void expect_error(const char *req, int status, const struct http1_config *cfg)
{
	hsetup(ANSWER_NOW, cfg);
	int rc = feed(req);
	cr_assert_eq(rc, -EPROTO, "%d for %s", rc, req);
	cr_assert_eq(H->n, 0, "dispatched: %s", req);
	char want[64];
	snprintf(want, sizeof(want), "HTTP/1.1 %d ", status);
	cr_assert(strncmp(H->out, want, strlen(want)) == 0, "want %d for %s, got %s", status, req, H->out);
	cr_assert(strstr(H->out, "Connection: close\r\n"));
	cr_assert(http1_conn_done(H->c));
}

Test(http1, errors_400)
{
	const char *bad[] = {
		"GET\r\nHost: h\r\n\r\n",
		"GET /\r\nHost: h\r\n\r\n",
		"GET  / HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET / HTTP/1.1 \r\nHost: h\r\n\r\n",
		"GET / HTTP/11\r\nHost: h\r\n\r\n",
		"GET / http/1.1\r\nHost: h\r\n\r\n",
		"G(T / HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET /\x01 HTTP/1.1\r\nHost: h\r\n\r\n",
		"GET / HTTP/1.1\r\n\r\n",                                 /* no Host */
		"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",            /* two Hosts */
		"GET / HTTP/1.1\r\nHost: h\r\n folded\r\n\r\n",            /* obs-fold */
		"GET / HTTP/1.1\r\nHost : h\r\n\r\n",                      /* space before colon */
		"GET / HTTP/1.1\r\nHost h\r\n\r\n",                        /* no colon */
		"GET / HTTP/1.1\r\n: h\r\nHost: h\r\n\r\n",                /* empty name */
		"GET / HTTP/1.1\r\nHost: h\rx\r\n\r\n",                    /* bare CR */
		"GET / HTTP/1.1\r\nHost: h\x01\r\n\r\n",                   /* control char */
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1, 2\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: -1\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1x\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: \r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 99999999999999999999999\r\n\r\n",
		"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3x\r\nabc\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\rX",
		"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nno colon\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n3;\x01\r\nabc\r\n",
		"\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n\r\n",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		expect_error(bad[i], 400, NULL);
}

Test(http1, errors_other)
{
	expect_error("GET / HTTP/2.0\r\nHost: h\r\n\r\n", 505, NULL);
	expect_error("GET / HTTP/0.9\r\nHost: h\r\n\r\n", 505, NULL);
	expect_error("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\n\r\n", 501, NULL);
	expect_error("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
		     501, NULL);
	expect_error("POST / HTTP/1.1\r\nHost: h\r\nExpect: 200-ok\r\n\r\n", 417, NULL);

	struct http1_config cfg;
	http1_config_default(&cfg);
	cfg.max_body_bytes = 10;
	cfg.max_header_bytes = 128;
	cfg.max_headers = 3;
	expect_error("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n", 413, &cfg);
	expect_error("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nb\r\n", 413, &cfg);
	expect_error("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n5\r\n", 413, &cfg);
	expect_error("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffffffffff\r\n", 413,
		     &cfg);
	expect_error("GET / HTTP/1.1\r\nHost: h\r\na: 1\r\nb: 2\r\nc: 3\r\n\r\n", 431, &cfg);
	char big[400];
	snprintf(big, sizeof(big), "GET /%0200d HTTP/1.1\r\nHost: h\r\n\r\n", 0);
	expect_error(big, 431, &cfg);
	snprintf(big, sizeof(big), "GET /%0200d", 0); /* no end in sight */
	expect_error(big, 431, &cfg);
	char tr[400];
	snprintf(tr, sizeof(tr), "POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: %0200d\r\n\r\n", 0);
	expect_error(tr, 431, &cfg);
	/* exactly at the limits is fine */
	hsetup(ANSWER_NOW, &cfg);
	cr_assert_eq(feed("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789"), 0);
	cr_assert_eq(H->n, 1);
	hsetup(ANSWER_NOW, &cfg);
	cr_assert_eq(feed("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n01234\r\n5\r\n56789\r\n0\r\n\r\n"), 0);
	cr_assert_eq(H->n, 1);
	cr_assert_eq(H->req[0].body_len, 10);
}

Test(http1, error_after_good_request_keeps_order)
{
	hsetup(ANSWER_NOW, NULL);
	cr_assert_eq(feed("GET /ok HTTP/1.1\r\nHost: h\r\n\r\nBAD\r\n\r\n"), -EPROTO);
	cr_assert_eq(H->n, 1);
	cr_assert(strstr(H->out, "\r\n\r\n/okHTTP/1.1 400 Bad Request\r\n"));
	cr_assert(http1_conn_done(H->c));
}

Test(http1, content_length_list_of_same)
{
	hsetup(ANSWER_NOW, NULL);
	cr_assert_eq(feed("POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nab"), 0);
	cr_assert_eq(H->n, 1);
	cr_assert_eq(H->req[0].body_len, 2);
}

/* ---- output contract ---- */

Test(http1, output_iovecs_stable_until_consumed)
{
	hsetup(ANSWER_LATER, NULL);
	cr_assert_eq(http1_conn_recv(H->c, (const uint8_t *)"GET / HTTP/1.1\r\nHost: h\r\n\r\n", 27), 0);
	static char big[100000];
	memset(big, 'z', sizeof(big));
	cr_assert_eq(http1_stream_begin(H->c, 200, "x/y"), 0);
	struct iovec iov[16];
	size_t n = http1_conn_output(H->c, iov, 16);
	cr_assert_eq(n, 1);
	char copy[256];
	size_t l0 = iov[0].iov_len;
	memcpy(copy, iov[0].iov_base, l0);
	void *base = iov[0].iov_base;
	cr_assert_eq(http1_stream_write(H->c, big, sizeof(big)), 0);
	for (int i = 0; i < 50; i++)
		cr_assert_eq(http1_stream_write(H->c, "abc", 3), 0);
	cr_assert_eq(memcmp(base, copy, l0), 0);
	/* partial consumption keeps the rest in order */
	http1_conn_output_consumed(H->c, 5);
	n = http1_conn_output(H->c, iov, 16);
	cr_assert_eq(iov[0].iov_base, (char *)base + 5);
	size_t total = http1_conn_output_bytes(H->c);
	cr_assert_eq(total, l0 - 5 + 5 + 2 + sizeof(big) + 2 + 50 * (3 + 3 + 2));
	/* one at a time */
	size_t sum = 0;
	while (http1_conn_has_output(H->c)) {
		n = http1_conn_output(H->c, iov, 1);
		cr_assert_eq(n, 1);
		size_t k = iov[0].iov_len > 7 ? 7 : iov[0].iov_len;
		http1_conn_output_consumed(H->c, k);
		sum += k;
	}
	cr_assert_eq(sum, total);
	cr_assert_eq(http1_conn_output(H->c, iov, 16), 0);
	/* blocks are reused after draining */
	cr_assert_eq(http1_stream_end(H->c), 0);
	drain(H);
	cr_assert_str_eq(H->out, "0\r\n\r\n");
}

Test(http1, output_limit)
{
	struct http1_config cfg;
	http1_config_default(&cfg);
	cfg.max_output_bytes = 1000;
	hsetup(ANSWER_LATER, &cfg);
	cr_assert_eq(http1_conn_recv(H->c, (const uint8_t *)"GET / HTTP/1.1\r\nHost: h\r\n\r\n", 27), 0);
	cr_assert_eq(http1_stream_begin(H->c, 200, "x/y"), 0);
	char buf[500] = {0};
	cr_assert_eq(http1_stream_write(H->c, buf, sizeof(buf)), 0);
	cr_assert_eq(http1_stream_write(H->c, buf, sizeof(buf)), -ENOBUFS);
	cr_assert(http1_conn_done(H->c));
	cr_assert_eq(http1_stream_write(H->c, buf, 1), -EALREADY);

	hsetup(ANSWER_LATER, &cfg);
	cr_assert_eq(http1_conn_recv(H->c, (const uint8_t *)"GET / HTTP/1.1\r\nHost: h\r\n\r\n", 27), 0);
	char body[2000] = {0};
	cr_assert_eq(http1_respond(H->c, 200, "x/y", body, sizeof(body)), -ENOBUFS);
	cr_assert(!http1_conn_has_output(H->c), "nothing partial is queued");
	cr_assert(http1_conn_done(H->c));
}

Test(http1, close_while_streaming)
{
	hsetup(ANSWER_LATER, NULL);
	cr_assert_eq(feed("POST /v3/watch HTTP/1.1\r\nHost: h\r\n\r\n"), 0);
	cr_assert_eq(http1_stream_begin(H->c, 200, "application/json"), 0);
	cr_assert(!http1_conn_done(H->c));
	http1_conn_close(H->c);
	cr_assert(http1_conn_done(H->c));
	cr_assert_eq(http1_stream_write(H->c, "x", 1), -EALREADY);
}

Test(http1, respond_without_request)
{
	hsetup(ANSWER_LATER, NULL);
	cr_assert_eq(http1_respond(H->c, 200, NULL, "", 0), -EALREADY);
	cr_assert_eq(http1_stream_begin(H->c, 200, NULL), -EALREADY);
	cr_assert_eq(http1_stream_write(H->c, "a", 1), -EALREADY);
	cr_assert_eq(http1_stream_end(H->c), -EALREADY);
	cr_assert_str_eq(http1_reason(431), "Request Header Fields Too Large");
	cr_assert_str_eq(http1_reason(299), "");
}

Test(http1, large_body_default_limits)
{
	hsetup(ANSWER_LATER, NULL);
	size_t blen = 1024 * 1024;
	char *req = malloc(blen + 128);
	int hl = sprintf(req, "POST /big HTTP/1.1\r\nHost: h\r\nContent-Length: %zu\r\n\r\n", blen);
	memset(req + hl, 'q', blen);
	for (size_t off = 0; off < hl + blen; off += 7001) {
		size_t k = hl + blen - off < 7001 ? hl + blen - off : 7001;
		cr_assert_eq(http1_conn_recv(H->c, (const uint8_t *)req + off, k), 0);
	}
	cr_assert_eq(H->n, 1);
	cr_assert(http1_conn_busy(H->c));
	cr_assert_eq(http1_respond(H->c, 200, NULL, req, hl + blen), 0);
	cr_assert_eq(http1_conn_resume(H->c), 0);
	struct iovec iov[4];
	cr_assert_eq(http1_conn_output(H->c, iov, 4), 2, "the body is one iovec");
	free(req);
}

/* ---- helpers ---- */

static char got_ct[64];
static char got_q[256];

static void on_helpers(void *user, struct http1_conn *c, const struct http1_request *r)
{
	size_t n;
	const char *v = http1_header_get(r, "content-TYPE", &n);
	snprintf(got_ct, sizeof(got_ct), "%.*s", v ? (int)n : 4, v ? v : "NULL");
	cr_assert_null(http1_header_get(r, "x-missing", &n));
	got_q[0] = 0;
	const char *q = r->query, *name, *val;
	size_t ql = r->query_len, nl, vl;
	while (http1_query_next(&q, &ql, &name, &nl, &val, &vl)) {
		size_t l = strlen(got_q);
		snprintf(got_q + l, sizeof(got_q) - l, "[%.*s=%.*s]", (int)nl, name, val ? (int)vl : 1, val ? val : "-");
	}
	http1_respond(c, 200, NULL, NULL, 0);
}

Test(http1, header_and_query_helpers)
{
	struct http1_conn *c = http1_conn_new(NULL, on_helpers, NULL);
	const char *req = "GET /readyz?verbose&exclude=a&&exclude=b&x= HTTP/1.1\r\nHost: h\r\nContent-Type: a/b\r\n\r\n";
	cr_assert_eq(http1_conn_recv(c, (const uint8_t *)req, strlen(req)), 0);
	cr_assert_str_eq(got_ct, "a/b");
	cr_assert_str_eq(got_q, "[verbose=-][exclude=a][exclude=b][x=]");
	req = "GET /health HTTP/1.1\r\nHost: h\r\n\r\n";
	cr_assert_eq(http1_conn_recv(c, (const uint8_t *)req, strlen(req)), 0);
	cr_assert_str_eq(got_ct, "NULL");
	cr_assert_str_eq(got_q, "");
	http1_conn_free(c);
}
