/* Fuzzes the HTTP/1.1 server connection with arbitrary bytes.
 *
 * Input: byte 0 picks the mode (bits 0-1: answer now / later / as a stream / close; bit 2:
 * small limits; bits 3-4: how output is drained), byte 1 seeds the split of the rest into
 * recv() chunks. The harness then checks that the output is a well-formed sequence of HTTP/1
 * responses (status line, headers, body framed by Content-Length or chunked), one final
 * response per dispatched request plus at most one error response, in order.
 */
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/http1.h"

static uint8_t mode;
static size_t n_req;
static bool head_of[4096];
static bool pending_late;

static void on_request(void *user, struct http1_conn *c, const struct http1_request *r)
{
	if (r->body_len && !r->body)
		abort();
	if (r->path_len == 0 || r->method_len == 0)
		abort();
	volatile uint8_t sink = 0;
	for (size_t i = 0; i < r->body_len; i++)
		sink ^= r->body[i];
	for (size_t i = 0; i < r->n_headers; i++)
		sink ^= (uint8_t)r->headers[i].name[0];
	(void)sink;
	if (n_req < 4096)
		head_of[n_req] = r->head;
	n_req++;
	switch (mode & 3) {
	case 0:
		if (http1_respond_ex(c, 200, "text/plain", "X-A: b\r\n", r->path, r->path_len) == -EALREADY)
			abort();
		break;
	case 1:
		pending_late = true;
		break;
	case 2:
		if (http1_stream_begin(c, 200, "application/json") != 0)
			break;
		http1_stream_write(c, r->body, r->body_len);
		http1_stream_write(c, "x\n", 2);
		http1_stream_end(c);
		break;
	default:
		http1_respond(c, 204, NULL, NULL, 0);
		http1_conn_close(c);
		break;
	}
}

static uint8_t out[1 << 22];
static size_t out_len;

static void drain(struct http1_conn *c, int style)
{
	struct iovec iov[4];
	size_t n = http1_conn_output(c, iov, style ? 1 : 4);
	size_t tot = 0;
	for (size_t i = 0; i < n; i++) {
		size_t k = iov[i].iov_len;
		if (style == 2 && k > 3)
			k = 3;
		if (out_len + k <= sizeof(out))
			memcpy(out + out_len, iov[i].iov_base, k);
		out_len += k;
		tot += k;
		if (k < iov[i].iov_len)
			break;
	}
	http1_conn_output_consumed(c, tot);
}

static const uint8_t *find(const uint8_t *p, const uint8_t *end, const char *s)
{
	size_t n = strlen(s);
	for (; p + n <= end; p++)
		if (memcmp(p, s, n) == 0)
			return p;
	return NULL;
}

/* Walks the responses; returns the number of final responses. */
static size_t check_output(bool ended)
{
	const uint8_t *p = out, *end = out + (out_len < sizeof(out) ? out_len : sizeof(out));
	size_t finals = 0;
	while (p < end) {
		if (end - p < 12 || memcmp(p, "HTTP/1.", 7) != 0)
			abort();
		int status = (p[9] - '0') * 100 + (p[10] - '0') * 10 + (p[11] - '0');
		const uint8_t *he = find(p, end, "\r\n\r\n");
		if (!he)
			abort();
		he += 4;
		const uint8_t *cl = find(p, he, "Content-Length: ");
		bool chunked = find(p, he, "Transfer-Encoding: chunked\r\n") != NULL;
		bool head = finals < n_req && finals < 4096 && head_of[finals] && status != 400 && status != 413 &&
			    status != 431 && status != 501 && status != 505 && status != 417;
		p = he;
		if (status < 200)
			continue;
		finals++;
		if (head)
			continue;
		if (cl) {
			size_t n = strtoul((const char *)cl + 16, NULL, 10);
			if ((size_t)(end - p) < n)
				abort();
			p += n;
		} else if (chunked) {
			for (;;) {
				char *e;
				size_t n = strtoul((const char *)p, &e, 16);
				if ((const uint8_t *)e + 2 > end || memcmp(e, "\r\n", 2) != 0)
					abort();
				p = (const uint8_t *)e + 2 + n;
				if (p + 2 > end || memcmp(p, "\r\n", 2) != 0)
					abort();
				p += 2;
				if (n == 0)
					break;
			}
		} else if (status != 204 && status != 304) {
			if (!ended)
				abort();
			p = end; /* HTTP/1.0 stream: the close delimits it */
		}
	}
	return finals;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	mode = data[0];
	uint8_t seed = data[1];
	data += 2;
	size -= 2;
	n_req = 0;
	out_len = 0;
	pending_late = false;
	struct http1_config cfg;
	http1_config_default(&cfg);
	if (mode & 4) {
		cfg.max_header_bytes = 64;
		cfg.max_headers = 4;
		cfg.max_body_bytes = 32;
		cfg.max_output_bytes = 4096;
	}
	struct http1_conn *c = http1_conn_new(&cfg, on_request, NULL);
	int style = (mode >> 3) & 3;
	size_t off = 0;
	int rc = 0;
	unsigned step = seed | 1;
	while (off < size && rc == 0) {
		size_t k = 1 + (step % 37);
		step = step * 1103515245u + 12345u;
		if (k > size - off)
			k = size - off;
		rc = http1_conn_recv(c, data + off, k);
		off += k;
		if (pending_late && http1_conn_busy(c)) {
			if (step & 1)
				http1_respond(c, 200, "a/b", "late", 4);
			else {
				http1_stream_begin(c, 200, NULL);
				http1_stream_write(c, "z", 1);
				http1_stream_end(c);
			}
			pending_late = false;
			if (rc == 0)
				rc = http1_conn_resume(c);
		}
		drain(c, style);
	}
	while (http1_conn_has_output(c))
		drain(c, 0);
	size_t finals = check_output(true);
	size_t answered = n_req - (http1_conn_busy(c) ? 1 : 0);
	if (finals < answered || finals > answered + 1)
		if (!((mode & 4) && finals < answered)) /* output limit may cut answers off */
			abort();
	http1_conn_free(c);
	return 0;
}
