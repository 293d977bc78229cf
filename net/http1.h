/* An HTTP/1.1 server connection (RFC 9112), sans-I/O: bytes in, bytes out, one callback per
 * complete request. Nothing here does I/O, reads a clock or knows etcd.
 *
 * The caller (a reactor) feeds every received byte to http1_conn_recv() and sends whatever
 * http1_conn_output() returns, with the same contract as grpc_conn_output(): the iovecs stay
 * valid and unchanged until reported sent with http1_conn_output_consumed(); output
 * produced meanwhile is appended behind them.
 *
 * One request at a time: on_request is called with a complete request (headers and the whole
 * body, de-chunked); the next pipelined request is not parsed until this one is answered
 * with http1_respond() or http1_stream_begin() ... http1_stream_end(). Bytes that arrive
 * meanwhile are buffered (bounded). The answer may come during the callback or later; when
 * it comes later, call http1_conn_resume() afterwards (e.g. each time the reactor flushes the
 * connection) so that buffered pipelined requests are parsed — http1_respond() itself never
 * calls back. Responses therefore always leave in request order.
 *
 * Errors found while parsing a request are answered here (400 malformed, 413 body larger
 * than max_body_bytes, 431 header block too large or too many headers, 501 unknown
 * transfer-coding, 505 HTTP version) with "Connection: close"; the connection is then done.
 * `Expect: 100-continue` gets an interim 100 response. HTTP/1.0 clients get close after the
 * response unless they asked for keep-alive; streams to them are delimited by the close.
 *
 * Not done: Upgrade (h2c), trailers (parsed and discarded), absolute-form targets other than
 * as given, request bodies without a length (a request with neither Content-Length nor
 * chunked has an empty body, as RFC 9112 §6.3 says).
 */
#ifndef UETCD_NET_HTTP1_H
#define UETCD_NET_HTTP1_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/uio.h>

struct http1_conn;

/* Telling the protocols apart from the first bytes of a connection. */
enum http1_sniff_result {
	HTTP1_SNIFF_NEITHER = -1, /* neither HTTP/2 prior knowledge nor HTTP/1.x */
	HTTP1_SNIFF_MORE = 0,     /* need more bytes to decide */
	HTTP1_SNIFF_HTTP1 = 1,    /* starts like an HTTP/1.x request line ("GET ", "POST ", ...) */
	HTTP1_SNIFF_HTTP2 = 2,    /* the full 24-byte HTTP/2 connection preface */
};
/* Looks at the first `len` bytes received on a connection. Pure function. At most 24 bytes
 * are needed to decide (HTTP/2's preface); a request line is recognised by its method token
 * (1-20 chars of A-Z, '-', '_') followed by a space. */
enum http1_sniff_result http1_sniff(const uint8_t *bytes, size_t len);

struct http1_config {
	size_t max_header_bytes;  /* request line + headers (and trailers): 431 beyond (16 KiB) */
	uint32_t max_headers;     /* header fields per request: 431 beyond (100) */
	size_t max_body_bytes;    /* de-chunked body: 413 beyond (etcd: 1.5 MiB + gateway slack) */
	size_t max_output_bytes;  /* output queued before the connection is closed (64 MiB) */
};

void http1_config_default(struct http1_config *c);

/* One request header as received (value trimmed of surrounding spaces/tabs). */
struct http1_header {
	const char *name, *value;
	size_t name_len, value_len;
};

/* A complete request. Every pointer is valid only during the on_request callback; the
 * strings are not NUL-terminated. */
struct http1_request {
	const char *method;  /* "GET", "POST", ... (case-sensitive, as sent) */
	size_t method_len;
	const char *path;    /* the request target up to '?' (not percent-decoded) */
	size_t path_len;
	const char *query;   /* after '?', without it; NULL when the target has no '?' */
	size_t query_len;
	const struct http1_header *headers;
	size_t n_headers;
	const uint8_t *body; /* complete, de-chunked; NULL when body_len == 0 */
	size_t body_len;
	int version_minor;   /* 0 for HTTP/1.0, 1 for HTTP/1.1 */
	bool keep_alive;     /* the connection stays open after the response */
	bool head;           /* method is HEAD: responses carry headers only */
};

/* Called once per complete request. It (or later code) must answer it exactly once. */
typedef void (*http1_request_fn)(void *user, struct http1_conn *c, const struct http1_request *req);

struct http1_conn *http1_conn_new(const struct http1_config *cfg, http1_request_fn on_request, void *user);
void http1_conn_free(struct http1_conn *c);

/* Feeds received bytes (any split). Parses and dispatches as many requests as it can (one at
 * a time, see above). Returns 0, or a negative value when the connection must be closed once
 * its output has been sent: -EPROTO malformed input (an error response is queued),
 * -ENOBUFS input beyond the buffer bound (see http1_conn_want_read), -EBUSY when called from
 * inside on_request and the buffer would have to move. Input after the connection is done
 * (an error, or "Connection: close" answered) is discarded. */
int http1_conn_recv(struct http1_conn *c, const uint8_t *data, size_t len);
/* Parses and dispatches buffered pipelined requests after an answer given outside the
 * callback. Same return values as http1_conn_recv. Cheap when there is nothing to do. */
int http1_conn_resume(struct http1_conn *c);
/* False while a request is being answered and enough input is buffered behind it: the
 * reactor should stop reading until this turns true (backpressure). */
bool http1_conn_want_read(const struct http1_conn *c);
/* True while a request has been handed up and not yet fully answered. */
bool http1_conn_busy(const struct http1_conn *c);

/* Fills up to iov_max iovecs with the output waiting to be sent; returns their number. */
size_t http1_conn_output(struct http1_conn *c, struct iovec *iov, size_t iov_max);
/* Reports that `bytes` from the front of the output were sent. */
void http1_conn_output_consumed(struct http1_conn *c, size_t bytes);
bool http1_conn_has_output(const struct http1_conn *c);
/* Bytes queued for output (for watch backpressure). */
size_t http1_conn_output_bytes(const struct http1_conn *c);
/* True when the connection has nothing more to say and should be closed after its output. */
bool http1_conn_done(const struct http1_conn *c);

/* Responses carry "Date:" when a time was given (Unix seconds; 0 = no Date header). */
void http1_conn_set_time(struct http1_conn *c, int64_t unix_s);

/* Answers the current request: status line, Content-Type (if not NULL), Content-Length,
 * Date, "Connection: close"/"keep-alive" as needed, then the body (copied). `extra_headers`
 * is NULL or complete header lines, each ending in "\r\n" (e.g. CORS headers), written as
 * given. Returns 0, -EALREADY if no request is waiting for an answer (or a stream is open),
 * -ENOBUFS if the output limit was reached (the connection is then done). */
int http1_respond(struct http1_conn *c, int status, const char *content_type, const void *body, size_t len);
int http1_respond_ex(struct http1_conn *c, int status, const char *content_type, const char *extra_headers,
		     const void *body, size_t len);

/* A streaming answer: headers now, body pieces as chunks (Transfer-Encoding: chunked; an
 * HTTP/1.0 client gets raw bytes and the close delimits the body), then the last chunk.
 * Writes of 0 bytes are ignored (an empty chunk would end the body). Same return values. */
int http1_stream_begin(struct http1_conn *c, int status, const char *content_type);
int http1_stream_begin_ex(struct http1_conn *c, int status, const char *content_type, const char *extra_headers);
int http1_stream_write(struct http1_conn *c, const void *data, size_t len);
int http1_stream_end(struct http1_conn *c);

/* Closes the connection after the output already queued (e.g. a stream the server gives up
 * on). A stream still open is ended abruptly (no last chunk), as a peer would see a reset. */
void http1_conn_close(struct http1_conn *c);

/* The value of the first header named `name` (case-insensitive), or NULL. */
const char *http1_header_get(const struct http1_request *req, const char *name, size_t *value_len);

/* Iterates over "a=1&b&c=3" query parameters: fills the next name and value (value_len 0 and
 * value NULL for a bare "b"), advances *query and *query_len, and returns false at the end.
 * Names and values are returned as sent (not percent-decoded); empty pieces are skipped. */
bool http1_query_next(const char **query, size_t *query_len, const char **name, size_t *name_len,
		      const char **value, size_t *value_len);

/* "OK", "Not Found", ... for a status code; "" when unknown. */
const char *http1_reason(int status);

#endif
