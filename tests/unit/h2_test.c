/* HTTP/2 engine tests: hand-built client frames in, server frames parsed back out.
 * The small client (frame builder, HPACK via hpack_encode_field, output parser with an
 * HPACK decoder) is repeated in grpc_test.c on purpose: each test file stands alone. */
#include <criterion/criterion.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/h2.h"
#include "net/hpack.h"

/* ---- client side harness ---- */

struct buf {
	uint8_t *p;
	size_t len, cap;
};

static void buf_put(struct buf *b, const void *d, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 64;
		b->p = realloc(b->p, b->cap);
	}
	if (n)
		memcpy(b->p + b->len, d, n);
	b->len += n;
}

static void fr(struct buf *b, uint8_t type, uint8_t flags, uint32_t sid, const void *payload, size_t len)
{
	uint8_t h[9] = {(uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len, type, flags,
			(uint8_t)(sid >> 24), (uint8_t)(sid >> 16), (uint8_t)(sid >> 8), (uint8_t)sid};
	buf_put(b, h, 9);
	buf_put(b, payload, len);
}

static void be32(uint8_t *p, uint32_t v)
{
	p[0] = (uint8_t)(v >> 24);
	p[1] = (uint8_t)(v >> 16);
	p[2] = (uint8_t)(v >> 8);
	p[3] = (uint8_t)v;
}

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

/* header block from name/value pairs, NULL-terminated */
static size_t hblock(uint8_t *out, size_t cap, const char *const *nv)
{
	size_t n = 0;
	for (; nv[0]; nv += 2) {
		ssize_t k = hpack_encode_field(out + n, cap - n, nv[0], strlen(nv[0]), nv[1], strlen(nv[1]), 0);
		cr_assert(k > 0);
		n += (size_t)k;
	}
	return n;
}

static const char *const req_hdrs[] = {":method", "POST", ":scheme", "http", ":path", "/svc/M", ":authority",
				       "x", "content-type", "application/grpc", "te", "trailers", NULL};

static void headers(struct buf *b, uint32_t sid, bool end_stream)
{
	uint8_t blk[1024];
	size_t n = hblock(blk, sizeof(blk), req_hdrs);
	fr(b, 1, 0x4 | (end_stream ? 1 : 0), sid, blk, n);
}

static void settings(struct buf *b, uint16_t id, uint32_t v)
{
	uint8_t p[6] = {(uint8_t)(id >> 8), (uint8_t)id};
	be32(p + 2, v);
	fr(b, 4, 0, 0, p, 6);
}

static void window_update(struct buf *b, uint32_t sid, uint32_t inc)
{
	uint8_t p[4];
	be32(p, inc);
	fr(b, 8, 0, sid, p, 4);
}

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/* server frames */
struct frame {
	uint8_t type, flags;
	uint32_t sid, len;
	uint8_t *p;
};

struct parsed {
	struct frame f[4096];
	size_t n;
	struct buf raw;
};

/* ---- the server under test ---- */

struct event {
	char kind; /* 'R' request, 'D' data, 'C' close */
	uint32_t sid, slot, err;
	bool end, too_large;
	char path[64];
	size_t n_fields;
	struct buf data;
};

struct srv {
	struct h2_conn *c;
	struct event ev[256];
	size_t n_ev;
	struct parsed out;
	size_t out_off; /* bytes of out.raw already parsed into frames */
	/* behaviour */
	bool answer_on_request; /* trailers-only answer right away */
};

static struct srv S;

static void cb_request(void *u, uint32_t sid, uint32_t slot, const struct h2_request *rq)
{
	struct event *e = &S.ev[S.n_ev++ % 256];
	free(e->data.p);
	memset(e, 0, sizeof(*e));
	e->kind = 'R';
	e->sid = sid;
	e->slot = slot;
	e->end = rq->end_stream;
	e->too_large = rq->too_large;
	e->n_fields = rq->n_fields;
	snprintf(e->path, sizeof(e->path), "%.*s", (int)rq->path.value_len, (const char *)rq->path.value);
	if (S.answer_on_request) {
		struct h2_field f = {(const uint8_t *)":status", (const uint8_t *)"200", 7, 3};
		cr_assert_eq(h2_submit_headers(S.c, sid, &f, 1, true), 0);
	}
}

static void cb_data(void *u, uint32_t sid, uint32_t slot, const uint8_t *d, size_t len, bool end)
{
	struct event *e = &S.ev[S.n_ev++ % 256];
	free(e->data.p);
	memset(e, 0, sizeof(*e));
	e->kind = 'D';
	e->sid = sid;
	e->slot = slot;
	e->end = end;
	buf_put(&e->data, d, len);
}

static void cb_close(void *u, uint32_t sid, uint32_t slot, uint32_t err)
{
	struct event *e = &S.ev[S.n_ev++ % 256];
	free(e->data.p);
	memset(e, 0, sizeof(*e));
	e->kind = 'C';
	e->sid = sid;
	e->slot = slot;
	e->err = err;
}

static const struct h2_callbacks CB = {cb_request, cb_data, cb_close};

static struct h2_config cfg_default(void)
{
	struct h2_config c = {
		.streams_max = 16,
		.initial_window_size = 1 << 20,
		.conn_window_size = 4 << 20,
		.max_frame_size = 16384,
		.max_header_list_size = 4096,
		.max_output_bytes = 8 << 20,
	};
	return c;
}

static void srv_start(const struct h2_config *cfg)
{
	memset(&S, 0, sizeof(S));
	struct h2_config d = cfg_default();
	S.c = h2_conn_new(cfg ? cfg : &d, &CB, NULL);
	cr_assert(S.c);
}

static void srv_stop(void)
{
	h2_conn_free(S.c);
	for (size_t i = 0; i < 256; i++)
		free(S.ev[i].data.p);
	free(S.out.raw.p);
	S.c = NULL;
}

/* Takes all output (in chunks of at most `chunk` bytes) and parses new frames. */
static void drain_chunked(size_t chunk)
{
	struct iovec iov[64];
	for (;;) {
		size_t n = h2_conn_output(S.c, iov, 64);
		if (n == 0)
			break;
		size_t took = 0;
		for (size_t i = 0; i < n && took < chunk; i++) {
			size_t k = iov[i].iov_len;
			if (k > chunk - took)
				k = chunk - took;
			buf_put(&S.out.raw, iov[i].iov_base, k);
			took += k;
		}
		h2_conn_output_consumed(S.c, took);
	}
	cr_assert(!h2_conn_has_output(S.c));
	struct buf *r = &S.out.raw;
	while (r->len - S.out_off >= 9) {
		uint8_t *h = r->p + S.out_off;
		uint32_t len = (uint32_t)h[0] << 16 | h[1] << 8 | h[2];
		cr_assert(r->len - S.out_off >= 9 + len, "truncated frame in output");
		struct frame *f = &S.out.f[S.out.n++];
		f->type = h[3];
		f->flags = h[4];
		f->sid = rd32(h + 5) & 0x7fffffff;
		f->len = len;
		f->p = (uint8_t *)(uintptr_t)(S.out_off + 9); /* offset; fixed up on use */
		S.out_off += 9 + len;
	}
}

static void drain(void)
{
	drain_chunked(SIZE_MAX);
}

static const uint8_t *fp(const struct frame *f)
{
	return S.out.raw.p + (uintptr_t)f->p;
}

static int feed(const struct buf *b)
{
	int r = h2_conn_recv(S.c, b->p, b->len);
	drain();
	return r;
}

/* preface + empty SETTINGS; the server's preface frames are checked and skipped */
static void handshake(void)
{
	struct buf b = {0};
	buf_put(&b, preface, 24);
	fr(&b, 4, 0, 0, NULL, 0);
	cr_assert_eq(feed(&b), 0);
	free(b.p);
}

static size_t count(uint8_t type)
{
	size_t n = 0;
	for (size_t i = 0; i < S.out.n; i++)
		n += S.out.f[i].type == type;
	return n;
}

static const struct frame *last(uint8_t type)
{
	for (size_t i = S.out.n; i-- > 0;)
		if (S.out.f[i].type == type)
			return &S.out.f[i];
	return NULL;
}

static uint32_t goaway_code(void)
{
	const struct frame *g = last(7);
	cr_assert(g, "no GOAWAY");
	return rd32(fp(g) + 4);
}

static const struct event *ev_last(char kind)
{
	for (size_t i = S.n_ev; i-- > 0;)
		if (S.ev[i % 256].kind == kind)
			return &S.ev[i % 256];
	return NULL;
}

static size_t ev_count(char kind)
{
	size_t n = 0;
	for (size_t i = 0; i < S.n_ev && i < 256; i++)
		n += S.ev[i].kind == kind;
	return n;
}

static size_t data_bytes(uint32_t sid)
{
	size_t n = 0;
	for (size_t i = 0; i < S.out.n; i++)
		if (S.out.f[i].type == 0 && S.out.f[i].sid == sid)
			n += S.out.f[i].len;
	return n;
}

/* ---- tests ---- */

Test(h2, server_preface_and_settings_ack)
{
	srv_start(NULL);
	drain(); /* the server speaks first */
	cr_assert_eq(S.out.n, 2);
	cr_assert_eq(S.out.f[0].type, 4);
	cr_assert_eq(S.out.f[0].flags, 0);
	cr_assert_eq(S.out.f[0].len, 24);
	const uint8_t *p = fp(&S.out.f[0]);
	uint32_t want[4][2] = {{3, 16}, {4, 1 << 20}, {5, 16384}, {6, 4096}};
	for (int i = 0; i < 4; i++) {
		cr_assert_eq((p[6 * i] << 8) | p[6 * i + 1], want[i][0]);
		cr_assert_eq(rd32(p + 6 * i + 2), want[i][1]);
	}
	cr_assert_eq(S.out.f[1].type, 8);
	cr_assert_eq(rd32(fp(&S.out.f[1])), (4u << 20) - 65535);
	handshake();
	cr_assert_eq(S.out.n, 3);
	cr_assert_eq(S.out.f[2].type, 4);
	cr_assert_eq(S.out.f[2].flags, 1); /* ACK */
	cr_assert_eq(S.out.f[2].len, 0);
	srv_stop();
}

Test(h2, garbage_preface_closes_without_goaway)
{
	srv_start(NULL);
	const char *http1 = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
	cr_assert_lt(h2_conn_recv(S.c, (const uint8_t *)http1, strlen(http1)), 0);
	drain();
	cr_assert_eq(count(7), 0);
	cr_assert(h2_conn_done(S.c));
	srv_stop();
}

Test(h2, h2ish_bad_preface_gets_goaway)
{
	srv_start(NULL);
	const char *bad = "PRI * HTTP/1.1\r\n\r\nSM\r\n\r\n";
	/* byte by byte: the mismatch is found after "PRI * HTTP/" */
	int r = 0;
	for (size_t i = 0; i < strlen(bad) && r == 0; i++)
		r = h2_conn_recv(S.c, (const uint8_t *)bad + i, 1);
	cr_assert_lt(r, 0);
	drain();
	cr_assert_eq(goaway_code(), 1);
	srv_stop();
}

Test(h2, first_frame_must_be_settings)
{
	srv_start(NULL);
	struct buf b = {0};
	buf_put(&b, preface, 24);
	fr(&b, 6, 0, 0, "12345678", 8);
	cr_assert_lt(feed(&b), 0);
	cr_assert_eq(goaway_code(), 1);
	free(b.p);
	srv_stop();
}

Test(h2, ping_acked_at_once_and_never_penalized)
{
	srv_start(NULL);
	handshake();
	struct buf b = {0};
	for (int i = 0; i < 1000; i++)
		fr(&b, 6, 0, 0, "abcdefgh", 8);
	fr(&b, 6, 1, 0, "ACKACKAC", 8); /* an ACK is not answered */
	cr_assert_eq(feed(&b), 0);
	cr_assert_eq(count(6), 1000);
	const struct frame *p = last(6);
	cr_assert_eq(p->flags, 1);
	cr_assert_eq(memcmp(fp(p), "abcdefgh", 8), 0);
	cr_assert_eq(count(7), 0);
	free(b.p);
	srv_stop();
}

Test(h2, ping_with_bad_length_is_frame_size_error)
{
	srv_start(NULL);
	handshake();
	struct buf b = {0};
	fr(&b, 6, 0, 0, "abc", 3);
	cr_assert_lt(feed(&b), 0);
	cr_assert_eq(goaway_code(), 6);
	free(b.p);
	srv_stop();
}

Test(h2, request_padding_priority_and_data)
{
	srv_start(NULL);
	handshake();
	struct buf b = {0};
	uint8_t blk[512], pl[600];
	size_t n = hblock(blk, sizeof(blk), req_hdrs);
	/* HEADERS with PADDED and PRIORITY */
	pl[0] = 7;                  /* pad length */
	be32(pl + 1, 0x80000000u); /* exclusive, depends on 0 */
	pl[5] = 15;                 /* weight */
	memcpy(pl + 6, blk, n);
	memset(pl + 6 + n, 0, 7);
	fr(&b, 1, 0x4 | 0x8 | 0x20, 1, pl, 6 + n + 7);
	/* padded DATA */
	uint8_t d[16] = {5, 'h', 'e', 'l', 'l', 'o', 0, 0, 0, 0, 0};
	fr(&b, 0, 0x8 | 0x1, 1, d, 11);
	cr_assert_eq(feed(&b), 0);
	const struct event *r = ev_last('R');
	cr_assert(r);
	cr_assert_str_eq(r->path, "/svc/M");
	cr_assert_eq(r->n_fields, 2);
	const struct event *e = ev_last('D');
	cr_assert(e && e->end);
	cr_assert_eq(e->data.len, 5);
	cr_assert_eq(memcmp(e->data.p, "hello", 5), 0);
	free(b.p);
	srv_stop();
}

Test(h2, data_padding_too_long_is_protocol_error)
{
	srv_start(NULL);
	handshake();
	struct buf b = {0};
	headers(&b, 1, false);
	uint8_t d[4] = {4, 0, 0, 0};
	fr(&b, 0, 0x8, 1, d, 4);
	cr_assert_lt(feed(&b), 0);
	cr_assert_eq(goaway_code(), 1);
	free(b.p);
	srv_stop();
}

Test(h2, continuation_joined)
{
	srv_start(NULL);
	handshake();
	struct buf b = {0};
	uint8_t blk[512];
	size_t n = hblock(blk, sizeof(blk), req_hdrs);
	fr(&b, 1, 0x1, 3, blk, 5);
	fr(&b, 9, 0, 3, blk + 5, 5);
	fr(&b, 9, 0, 3, NULL, 0);
	fr(&b, 9, 0x4, 3, blk + 10, n - 10);
	cr_assert_eq(feed(&b), 0);
	const struct event *r = ev_last('R');
	cr_assert(r && r->sid == 3 && r->end);
	cr_assert_str_eq(r->path, "/svc/M");
	free(b.p);
	srv_stop();
}

Test(h2, continuation_interleaved_is_protocol_error)
{
	srv_start(NULL);
	handshake();
	struct buf b = {0};
	uint8_t blk[512];
	size_t n = hblock(blk, sizeof(blk), req_hdrs);
	fr(&b, 1, 0, 1, blk, 5);
	fr(&b, 6, 0, 0, "abcdefgh", 8);
	fr(&b, 9, 0x4, 1, blk + 5, n - 5);
	cr_assert_lt(feed(&b), 0);
	cr_assert_eq(goaway_code(), 1);
	cr_assert_eq(ev_count('R'), 0);
	free(b.p);
	srv_stop();
}

Test(h2, continuation_flood_is_cut_off)
{
	srv_start(NULL);
	handshake();
	struct buf b = {0};
	uint8_t blk[512];
	hblock(blk, sizeof(blk), req_hdrs);
	fr(&b, 1, 0, 1, blk, 3);
	int r = h2_conn_recv(S.c, b.p, b.len);
	for (int i = 0; i < 100000 && r == 0; i++) {
		b.len = 0;
		fr(&b, 9, 0, 1, NULL, 0);
		r = h2_conn_recv(S.c, b.p, b.len);
	}
	cr_assert_lt(r, 0);
	drain();
	cr_assert_eq(goaway_code(), 0xb);
	free(b.p);
	srv_stop();
}

Test(h2, continuation_bytes_bounded)
{
	srv_start(NULL);
	handshake();
	struct buf b = {0};
	uint8_t junk[16384];
	memset(junk, 0x40, sizeof(junk));
	fr(&b, 1, 0, 1, junk, 8000);
	int r = h2_conn_recv(S.c, b.p, b.len);
	for (int i = 0; i < 10 && r == 0; i++) {
		b.len = 0;
		fr(&b, 9, 0, 1, junk, 16000);
		r = h2_conn_recv(S.c, b.p, b.len);
	}
	cr_assert_lt(r, 0);
	drain();
	cr_assert_eq(goaway_code(), 0xb);
	free(b.p);
	srv_stop();
}

Test(h2, oversized_header_list_keeps_connection)
{
	srv_start(NULL);
	handshake();
	struct buf b = {0};
	static char big[3000];
	memset(big, 'a', sizeof(big) - 1);
	const char *nv[] = {":method", "POST", ":scheme", "http", ":path", "/svc/M", "x-a", big, "x-b", big, NULL};
	uint8_t blk[16384];
	size_t n = hblock(blk, sizeof(blk), nv);
	fr(&b, 1, 0x4 | 0x1, 1, blk, n);
	fr(&b, 6, 0, 0, "abcdefgh", 8);
	cr_assert_eq(feed(&b), 0);
	const struct event *r = ev_last('R');
	cr_assert(r && r->too_large);
	cr_assert_eq(count(6), 1);
	cr_assert_eq(count(7), 0);
	/* and the HPACK state is still good: another request decodes */
	b.len = 0;
	headers(&b, 3, true);
	cr_assert_eq(feed(&b), 0);
	r = ev_last('R');
	cr_assert(r && r->sid == 3 && !r->too_large);
	free(b.p);
	srv_stop();
}

Test(h2, malformed_requests_get_rst)
{
	srv_start(NULL);
	handshake();
	struct buf b = {0};
	uint8_t blk[512];
	const char *upper[] = {":method", "POST", ":scheme", "http", ":path", "/a", "Content-Type", "x", NULL};
	const char *nopath[] = {":method", "POST", ":scheme", "http", NULL};
	const char *late[] = {":method", "POST", "a", "b", ":scheme", "http", ":path", "/a", NULL};
	const char *conn[] = {":method", "POST", ":scheme", "http", ":path", "/a", "connection", "close", NULL};
	const char *const *all[] = {upper, nopath, late, conn};
	for (int i = 0; i < 4; i++)
		fr(&b, 1, 0x5, 1 + 2 * i, blk, hblock(blk, sizeof(blk), all[i]));
	cr_assert_eq(feed(&b), 0);
	cr_assert_eq(count(3), 4);
	cr_assert_eq(ev_count('R'), 0);
	cr_assert_eq(rd32(fp(last(3))), 1);
	free(b.p);
	srv_stop();
}

Test(h2, flow_control_respects_windows_and_resumes)
{
	srv_start(NULL);
	handshake();
	struct buf b = {0};
	headers(&b, 1, true);
	cr_assert_eq(feed(&b), 0);
	static uint8_t big[200000];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)i;
	struct h2_field f = {(const uint8_t *)":status", (const uint8_t *)"200", 7, 3};
	cr_assert_eq(h2_submit_headers(S.c, 1, &f, 1, false), 0);
	cr_assert_eq(h2_submit_data(S.c, 1, big, 100, big + 100, sizeof(big) - 100), 0);
	cr_assert_eq(h2_submit_headers(S.c, 1, &f, 1, true), 0); /* trailers wait */
	drain();
	cr_assert_eq(data_bytes(1), 65535);
	cr_assert_eq(h2_stream_queued_bytes(S.c, 1), sizeof(big) - 65535 + 9 + 1);
	for (size_t i = 0; i < S.out.n; i++)
		if (S.out.f[i].type == 0)
			cr_assert_leq(S.out.f[i].len, 16384);
	size_t hdrs_before = count(1);
	/* stream window opens, connection window still shut */
	b.len = 0;
	window_update(&b, 1, 100000);
	cr_assert_eq(feed(&b), 0);
	cr_assert_eq(data_bytes(1), 65535);
	/* connection window opens a little */
	b.len = 0;
	window_update(&b, 0, 1000);
	cr_assert_eq(feed(&b), 0);
	cr_assert_eq(data_bytes(1), 66535);
	b.len = 0;
	window_update(&b, 0, 1 << 30);
	cr_assert_eq(feed(&b), 0);
	cr_assert_eq(data_bytes(1), 165535); /* stream window: 65535 + 100000 */
	cr_assert_eq(count(1), hdrs_before);
	b.len = 0;
	window_update(&b, 1, 1 << 20);
	cr_assert_eq(feed(&b), 0);
	cr_assert_eq(data_bytes(1), sizeof(big));
	cr_assert_eq(count(1), hdrs_before + 1);
	cr_assert(last(1)->flags & 1);
	/* payload intact and in order */
	size_t off = 0;
	for (size_t i = 0; i < S.out.n; i++) {
		if (S.out.f[i].type != 0)
			continue;
		cr_assert_eq(memcmp(fp(&S.out.f[i]), big + off, S.out.f[i].len), 0);
		off += S.out.f[i].len;
	}
	/* the client had half-closed: no RST needed; the stream is gone */
	cr_assert_eq(count(3), 0);
	cr_assert_eq(ev_last('C')->err, 0);
	cr_assert_eq(h2_stream_slot(S.c, 1), -1);
	free(b.p);
	srv_stop();
}

Test(h2, initial_window_change_adjusts_streams)
{
	srv_start(NULL);
	handshake();
	struct buf b = {0};
	settings(&b, 4, 0);
	headers(&b, 1, false);
	cr_assert_eq(feed(&b), 0);
	static uint8_t big[50000];
	cr_assert_eq(h2_submit_data(S.c, 1, big, sizeof(big), NULL, 0), 0);
	drain();
	cr_assert_eq(data_bytes(1), 0);
	b.len = 0;
	settings(&b, 4, 30000);
	cr_assert_eq(feed(&b), 0);
	cr_assert_eq(data_bytes(1), 30000);
	b.len = 0;
	settings(&b, 4, 10000); /* window goes to -20000 */
	window_update(&b, 1, 25000);
	cr_assert_eq(feed(&b), 0);
	cr_assert_eq(data_bytes(1), 35000);
	/* overflow past 2^31-1 through SETTINGS is a connection FLOW_CONTROL_ERROR */
	b.len = 0;
	window_update(&b, 1, 0x7fffffff - 10000);
	settings(&b, 4, 0x7fffffff);
	cr_assert_lt(feed(&b), 0);
	cr_assert_eq(goaway_code(), 3);
	cr_assert_eq(ev_last('C')->err, 8); /* the stream ended with the connection */
	free(b.p);
	srv_stop();
}

Test(h2, window_update_overflow)
{
	srv_start(NULL);
	handshake();
	struct buf b = {0};
	window_update(&b, 0, 0x7fffffff);
	cr_assert_lt(feed(&b), 0);
	cr_assert_eq(goaway_code(), 3);
	free(b.p);
	srv_stop();
}

Test(h2, recv_window_enforced_and_replenished)
{
	struct h2_config cfg = cfg_default();
	cfg.initial_window_size = 65535;
	cfg.conn_window_size = 65535;
	srv_start(&cfg);
	handshake();
	struct buf b = {0};
	headers(&b, 1, false);
	static uint8_t chunk[16384];
	for (int i = 0; i < 2; i++)
		fr(&b, 0, 0, 1, chunk, sizeof(chunk));
	cr_assert_eq(feed(&b), 0);
	/* 32768 >= half the window: one WINDOW_UPDATE each for the stream and the conn */
	cr_assert_eq(count(8), 2);
	b.len = 0;
	for (int i = 0; i < 4; i++)
		fr(&b, 0, 0, 1, chunk, sizeof(chunk));
	cr_assert_eq(feed(&b), 0);
	b.len = 0;
	for (int i = 0; i < 4; i++)
		fr(&b, 0, 0, 1, chunk, sizeof(chunk));
	/* the peer may never exceed what we granted */
	int r = feed(&b);
	(void)r;
	size_t granted = 0;
	for (size_t i = 0; i < S.out.n; i++)
		if (S.out.f[i].type == 8 && S.out.f[i].sid == 0)
			granted += rd32(fp(&S.out.f[i]));
	if (65535 + granted < 10 * 16384) {
		cr_assert_lt(r, 0);
		cr_assert_eq(goaway_code(), 3);
	}
	free(b.p);
	srv_stop();
}

/* window_by_consume: DATA handed up keeps the windows shut until h2_conn_consume; padding
 * comes back at once; a peer that sends past what was reopened is a flow-control error. */
Test(h2, windows_reopen_only_as_data_is_consumed)
{
	struct h2_config cfg = cfg_default();
	cfg.initial_window_size = 65535;
	cfg.conn_window_size = 65535;
	cfg.window_by_consume = true;
	srv_start(&cfg);
	handshake();
	struct buf b = {0};
	headers(&b, 1, false);
	static uint8_t chunk[16384];
	for (int i = 0; i < 3; i++)
		fr(&b, 0, 0, 1, chunk, sizeof(chunk));
	cr_assert_eq(feed(&b), 0);
	cr_assert_eq(count(8), 0, "nothing consumed: no WINDOW_UPDATE");
	h2_conn_consume(S.c, 1, 2 * 16384);
	drain();
	cr_assert_eq(count(8), 2, "half a window consumed: stream and connection");
	cr_assert_eq(rd32(fp(last(8))), 2 * 16384);
	/* 16384 still unconsumed: the peer has 65535 - 16384 left, not a byte more */
	b.len = 0;
	for (int i = 0; i < 3; i++)
		fr(&b, 0, 0, 1, chunk, sizeof(chunk));
	cr_assert_lt(feed(&b), 0);
	cr_assert_eq(goaway_code(), H2_FLOW_CONTROL_ERROR);
	free(b.p);
	srv_stop();
}

Test(h2, padding_is_returned_at_once_when_windows_follow_consumption)
{
	struct h2_config cfg = cfg_default();
	cfg.initial_window_size = 65535;
	cfg.conn_window_size = 65535;
	cfg.window_by_consume = true;
	srv_start(&cfg);
	handshake();
	struct buf b = {0};
	headers(&b, 1, false);
	static uint8_t padded[16384];
	padded[0] = 255; /* pad length: 255 bytes of padding, 16128 of data */
	for (int i = 0; i < 3; i++)
		fr(&b, 0, 0x8, 1, padded, sizeof(padded));
	cr_assert_eq(feed(&b), 0);
	/* 3 x 256 bytes of padding and pad length are not enough for half a window */
	cr_assert_eq(count(8), 0);
	h2_conn_consume(S.c, 1, 3 * 16128);
	drain();
	cr_assert_eq(count(8), 2);
	cr_assert_eq(rd32(fp(last(8))), 3 * 16384, "data and padding both came back");
	free(b.p);
	srv_stop();
}

Test(h2, rst_from_client_closes_stream)
{
	srv_start(NULL);
	handshake();
	struct buf b = {0};
	headers(&b, 1, false);
	uint8_t code[4];
	be32(code, 8);
	fr(&b, 3, 0, 1, code, 4);
	cr_assert_eq(feed(&b), 0);
	const struct event *e = ev_last('C');
	cr_assert(e && e->sid == 1 && e->err == 8);
	cr_assert_eq(h2_submit_data(S.c, 1, "x", 1, NULL, 0), -ENOENT);
	/* late frames on it are tolerated */
	b.len = 0;
	window_update(&b, 1, 10);
	fr(&b, 3, 0, 1, code, 4);
	cr_assert_eq(feed(&b), 0);
	free(b.p);
	srv_stop();
}

Test(h2, frames_on_idle_streams)
{
	uint8_t code[4] = {0};
	for (int t = 0; t < 3; t++) {
		srv_start(NULL);
		handshake();
		struct buf b = {0};
		if (t == 0)
			fr(&b, 0, 0, 5, "x", 1);
		else if (t == 1)
			window_update(&b, 5, 1);
		else
			fr(&b, 3, 0, 5, code, 4);
		cr_assert_lt(feed(&b), 0);
		cr_assert_eq(goaway_code(), 1);
		free(b.p);
		srv_stop();
	}
}

Test(h2, frames_on_closed_streams)
{
	srv_start(NULL);
	S.answer_on_request = true;
	handshake();
	struct buf b = {0};
	headers(&b, 1, true); /* closed both ways at once */
	cr_assert_eq(feed(&b), 0);
	cr_assert_eq(ev_last('C')->err, 0);
	cr_assert_eq(count(3), 0);
	b.len = 0;
	fr(&b, 0, 0, 1, "x", 1);
	cr_assert_eq(feed(&b), 0);
	cr_assert_eq(rd32(fp(last(3))), 5); /* RST_STREAM STREAM_CLOSED */
	b.len = 0;
	headers(&b, 1, true);
	cr_assert_lt(feed(&b), 0);
	cr_assert_eq(goaway_code(), 5);
	free(b.p);
	srv_stop();
}

Test(h2, frames_after_our_reset_are_ignored)
{
	srv_start(NULL);
	S.answer_on_request = true;
	handshake();
	struct buf b = {0};
	headers(&b, 1, false); /* answered at once: we end and reset it (NO_ERROR) */
	cr_assert_eq(feed(&b), 0);
	cr_assert_eq(count(3), 1);
	cr_assert_eq(rd32(fp(last(3))), 0);
	b.len = 0;
	fr(&b, 0, 1, 1, "xyz", 3);
	cr_assert_eq(feed(&b), 0);
	cr_assert_eq(count(3), 1);
	free(b.p);
	srv_stop();
}

Test(h2, even_and_decreasing_stream_ids)
{
	srv_start(NULL);
	handshake();
	struct buf b = {0};
	headers(&b, 2, true);
	cr_assert_lt(feed(&b), 0);
	cr_assert_eq(goaway_code(), 1);
	srv_stop();

	srv_start(NULL);
	handshake();
	b.len = 0;
	headers(&b, 7, false);
	headers(&b, 3, false);
	cr_assert_lt(feed(&b), 0);
	cr_assert_eq(goaway_code(), 1);
	cr_assert_eq(rd32(fp(last(7))), 7); /* last stream id */
	free(b.p);
	srv_stop();
}

Test(h2, max_concurrent_streams_refused)
{
	struct h2_config cfg = cfg_default();
	cfg.streams_max = 2;
	srv_start(&cfg);
	handshake();
	struct buf b = {0};
	headers(&b, 1, false);
	headers(&b, 3, false);
	headers(&b, 5, false);
	cr_assert_eq(feed(&b), 0);
	cr_assert_eq(ev_count('R'), 2);
	const struct frame *r = last(3);
	cr_assert(r && r->sid == 5);
	cr_assert_eq(rd32(fp(r)), 7);
	/* a slot frees up: the next stream is accepted */
	b.len = 0;
	uint8_t code[4] = {0, 0, 0, 8};
	fr(&b, 3, 0, 1, code, 4);
	headers(&b, 7, false);
	cr_assert_eq(feed(&b), 0);
	cr_assert_eq(ev_last('R')->sid, 7);
	free(b.p);
	srv_stop();
}

Test(h2, unknown_frames_ignored_oversized_frames_rejected)
{
	srv_start(NULL);
	handshake();
	struct buf b = {0};
	fr(&b, 0xfa, 0xff, 3, "whatever", 8);
	fr(&b, 2, 0, 9, "\0\0\0\0\x10", 5); /* PRIORITY on an idle stream */
	fr(&b, 6, 0, 0, "abcdefgh", 8);
	cr_assert_eq(feed(&b), 0);
	cr_assert_eq(count(6), 1);
	b.len = 0;
	static uint8_t big[20000];
	fr(&b, 0xfa, 0, 0, big, sizeof(big));
	cr_assert_lt(feed(&b), 0);
	cr_assert_eq(goaway_code(), 6);
	free(b.p);
	srv_stop();
}

Test(h2, push_promise_is_protocol_error)
{
	srv_start(NULL);
	handshake();
	struct buf b = {0};
	fr(&b, 5, 0x4, 1, "\0\0\0\2", 4);
	cr_assert_lt(feed(&b), 0);
	cr_assert_eq(goaway_code(), 1);
	free(b.p);
	srv_stop();
}

Test(h2, settings_errors)
{
	uint8_t bad_len[5] = {0};
	for (int t = 0; t < 4; t++) {
		srv_start(NULL);
		handshake();
		struct buf b = {0};
		uint32_t want;
		if (t == 0) {
			fr(&b, 4, 0, 0, bad_len, 5), want = 6;
		} else if (t == 1) {
			settings(&b, 2, 2), want = 1;
		} else if (t == 2) {
			settings(&b, 5, 100), want = 1;
		} else {
			fr(&b, 4, 1, 0, bad_len, 0);
			fr(&b, 4, 1, 0, bad_len, 1), want = 6;
		}
		cr_assert_lt(feed(&b), 0);
		cr_assert_eq(goaway_code(), want);
		free(b.p);
		srv_stop();
	}
}

Test(h2, peer_max_frame_size_used)
{
	srv_start(NULL);
	handshake();
	struct buf b = {0};
	settings(&b, 5, 100000);
	settings(&b, 4, 1 << 20);
	window_update(&b, 0, 1 << 20);
	headers(&b, 1, false);
	cr_assert_eq(feed(&b), 0);
	static uint8_t big[300000];
	cr_assert_eq(h2_submit_data(S.c, 1, big, sizeof(big), NULL, 0), 0);
	drain();
	cr_assert_eq(data_bytes(1), sizeof(big));
	size_t max = 0;
	for (size_t i = 0; i < S.out.n; i++)
		if (S.out.f[i].type == 0 && S.out.f[i].len > max)
			max = S.out.f[i].len;
	cr_assert_eq(max, 100000);
	free(b.p);
	srv_stop();
}

Test(h2, output_iovecs_stay_valid_while_more_is_appended)
{
	srv_start(NULL);
	handshake();
	struct buf b = {0};
	settings(&b, 4, 1 << 20);
	window_update(&b, 0, 1 << 24);
	headers(&b, 1, false);
	cr_assert_eq(h2_conn_recv(S.c, b.p, b.len), 0);
	static uint8_t big[100000];
	memset(big, 'q', sizeof(big));
	cr_assert_eq(h2_submit_data(S.c, 1, big, sizeof(big), NULL, 0), 0);
	struct iovec iov[64];
	size_t n = h2_conn_output(S.c, iov, 64);
	struct buf copy = {0};
	for (size_t i = 0; i < n; i++)
		buf_put(&copy, iov[i].iov_base, iov[i].iov_len);
	/* more output while the "send" is in flight */
	b.len = 0;
	for (int i = 0; i < 100; i++)
		fr(&b, 6, 0, 0, "abcdefgh", 8);
	cr_assert_eq(h2_conn_recv(S.c, b.p, b.len), 0);
	cr_assert_eq(h2_submit_data(S.c, 1, big, sizeof(big), NULL, 0), 0);
	size_t off = 0;
	for (size_t i = 0; i < n; i++) {
		cr_assert_eq(memcmp(iov[i].iov_base, copy.p + off, iov[i].iov_len), 0);
		off += iov[i].iov_len;
	}
	h2_conn_output_consumed(S.c, off);
	free(copy.p);
	free(b.p);
	srv_stop();
}

Test(h2, output_limit_kills_connection)
{
	struct h2_config cfg = cfg_default();
	cfg.max_output_bytes = 64 * 1024;
	srv_start(&cfg);
	handshake();
	struct buf b = {0};
	for (int i = 0; i < 10000; i++)
		fr(&b, 6, 0, 0, "abcdefgh", 8);
	/* nobody drains: pings pile up until the limit */
	cr_assert_lt(h2_conn_recv(S.c, b.p, b.len), 0);
	cr_assert(h2_conn_done(S.c));
	free(b.p);
	srv_stop();
}

/* Issue 12 item 2: one answer past the output limit used to kill the connection and
 * every stream on it. Now only that stream is reset. */
Test(h2, push_past_output_limit_resets_only_that_stream)
{
	struct h2_config cfg = cfg_default();
	cfg.max_output_bytes = 150 * 1024;
	srv_start(&cfg);
	handshake();
	struct buf b = {0};
	window_update(&b, 0, 1 << 20);
	headers(&b, 1, false);
	headers(&b, 3, false);
	cr_assert_eq(feed(&b), 0);
	static uint8_t big[100000];
	cr_assert_eq(h2_submit_data(S.c, 1, big, sizeof(big), NULL, 0), 0);
	cr_assert_eq(h2_submit_data(S.c, 1, big, sizeof(big), NULL, 0), -ENOBUFS);
	cr_assert_not(h2_conn_done(S.c));
	cr_assert_eq(ev_last('C')->sid, 1);
	cr_assert_eq(ev_last('C')->err, H2_INTERNAL_ERROR);
	/* the other stream is answered */
	cr_assert_eq(h2_submit_data(S.c, 3, "ok", 2, NULL, 0), 0);
	drain();
	cr_assert_eq(data_bytes(3), 2);
	free(b.p);
	srv_stop();
}

/* ---- pulled sources ---- */

struct src_state {
	uint64_t total, given;
	size_t max_cap;  /* largest read asked for */
	int reads;
	bool freed;
	bool fail_at_half;
};

static ssize_t src_read(void *arg, uint8_t *buf, size_t cap, bool *eof)
{
	struct src_state *st = arg;
	st->reads++;
	if (cap > st->max_cap)
		st->max_cap = cap;
	if (st->fail_at_half && st->given >= st->total / 2)
		return -H2_INTERNAL_ERROR;
	uint64_t left = st->total - st->given;
	size_t n = left < cap ? (size_t)left : cap;
	for (size_t i = 0; i < n; i++)
		buf[i] = (uint8_t)((st->given + i) * 7);
	st->given += n;
	*eof = st->given == st->total;
	return (ssize_t)n;
}

static void src_free(void *arg)
{
	struct src_state *st = arg;
	cr_assert_not(st->freed, "freed twice");
	st->freed = true;
}

static bool data_pattern_ok(uint32_t sid, uint64_t *n)
{
	uint64_t off = 0;
	for (size_t i = 0; i < S.out.n; i++) {
		const struct frame *f = &S.out.f[i];
		if (f->type != 0 || f->sid != sid)
			continue;
		for (uint32_t k = 0; k < f->len; k++, off++)
			if (fp(f)[k] != (uint8_t)(off * 7))
				return false;
	}
	*n = off;
	return true;
}

/* A 20 MB body drained under a 64 KiB window: the source is asked only for what the
 * window allows, the engine never holds more than the output watermark, and the
 * trailers submitted at once go out after the last byte. */
Test(h2, source_drains_under_small_window_with_bounded_memory)
{
	srv_start(NULL);
	handshake();
	struct buf b = {0};
	headers(&b, 1, true);
	cr_assert_eq(feed(&b), 0);
	struct src_state st = {.total = 20u << 20};
	struct h2_data_source src = {src_read, src_free, &st};
	cr_assert_eq(h2_submit_source(S.c, 1, &src), 0);
	struct h2_field f = {(const uint8_t *)"grpc-status", (const uint8_t *)"0", 11, 1};
	cr_assert_eq(h2_submit_headers(S.c, 1, &f, 1, true), 0);
	cr_assert_eq(h2_submit_data(S.c, 1, "x", 1, NULL, 0), -ENOENT);
	size_t max_out = 0;
	for (int round = 0; round < 2000 && !st.freed; round++) {
		struct iovec iov[64];
		size_t n = h2_conn_output(S.c, iov, 64), bytes = 0;
		for (size_t i = 0; i < n; i++)
			bytes += iov[i].iov_len;
		if (bytes > max_out)
			max_out = bytes;
		/* what the source produced but the peer has not read is all in the output */
		cr_assert_leq(bytes, 65535 + 16 * 1024, "round %d: %zu bytes buffered", round, bytes);
		drain();
		uint64_t got;
		cr_assert(data_pattern_ok(1, &got));
		cr_assert_eq(st.given, got, "the source gave %llu, %llu went out",
			     (unsigned long long)st.given, (unsigned long long)got);
		b.len = 0;
		window_update(&b, 0, 65535);
		window_update(&b, 1, 65535);
		cr_assert_eq(feed(&b), 0);
	}
	cr_assert(st.freed);
	cr_assert_gt(max_out, 0);
	uint64_t got;
	cr_assert(data_pattern_ok(1, &got));
	cr_assert_eq(got, st.total);
	cr_assert_leq(st.max_cap, 16384);
	const struct frame *h = last(1);
	cr_assert(h && (h->flags & 1), "trailers with END_STREAM last");
	cr_assert_eq(ev_last('C')->sid, 1);
	cr_assert_eq(ev_last('C')->err, 0);
	free(b.p);
	srv_stop();
}

Test(h2, source_freed_when_stream_reset_mid_body)
{
	srv_start(NULL);
	handshake();
	struct buf b = {0};
	headers(&b, 1, true);
	cr_assert_eq(feed(&b), 0);
	struct src_state st = {.total = 10u << 20};
	struct h2_data_source src = {src_read, src_free, &st};
	cr_assert_eq(h2_submit_source(S.c, 1, &src), 0);
	drain();
	cr_assert_eq(st.given, 65535);
	cr_assert_not(st.freed);
	b.len = 0;
	uint8_t code[4] = {0, 0, 0, 8};
	fr(&b, 3, 0, 1, code, 4); /* RST_STREAM(CANCEL) */
	cr_assert_eq(feed(&b), 0);
	cr_assert(st.freed);
	cr_assert_eq(ev_last('C')->err, 8);
	/* and when the connection goes with a source pending */
	b.len = 0;
	headers(&b, 3, true);
	cr_assert_eq(feed(&b), 0);
	struct src_state st2 = {.total = 10u << 20};
	struct h2_data_source src2 = {src_read, src_free, &st2};
	cr_assert_eq(h2_submit_source(S.c, 3, &src2), 0);
	srv_stop();
	cr_assert(st2.freed);
	free(b.p);
}

Test(h2, failing_source_resets_its_stream_only)
{
	srv_start(NULL);
	handshake();
	struct buf b = {0};
	settings(&b, 4, 1 << 20);
	window_update(&b, 0, 4 << 20);
	headers(&b, 1, true);
	headers(&b, 3, true);
	cr_assert_eq(feed(&b), 0);
	struct src_state st = {.total = 1u << 20, .fail_at_half = true};
	struct h2_data_source src = {src_read, src_free, &st};
	cr_assert_eq(h2_submit_source(S.c, 1, &src), 0);
	cr_assert_eq(h2_submit_data(S.c, 3, "ok", 2, NULL, 0), 0);
	drain();
	cr_assert(st.freed);
	const struct frame *r = last(3);
	cr_assert(r && r->sid == 1);
	cr_assert_eq(rd32(fp(r)), H2_INTERNAL_ERROR);
	cr_assert_eq(data_bytes(3), 2);
	cr_assert_not(h2_conn_done(S.c));
	free(b.p);
	srv_stop();
}

/* Two pulled bodies share the connection window in turns. */
Test(h2, sources_take_turns)
{
	srv_start(NULL);
	handshake();
	struct buf b = {0};
	settings(&b, 4, 1 << 20);
	headers(&b, 1, true);
	headers(&b, 3, true);
	cr_assert_eq(feed(&b), 0);
	struct src_state s1 = {.total = 1u << 20}, s3 = {.total = 1u << 20};
	struct h2_data_source a = {src_read, src_free, &s1}, c = {src_read, src_free, &s3};
	cr_assert_eq(h2_submit_source(S.c, 1, &a), 0);
	cr_assert_eq(h2_submit_source(S.c, 3, &c), 0);
	drain();
	b.len = 0;
	window_update(&b, 0, 8 * 16384);
	cr_assert_eq(feed(&b), 0);
	size_t d1 = data_bytes(1), d3 = data_bytes(3);
	cr_assert_eq(d1 + d3, 65535 + 8 * 16384);
	cr_assert_gt(d3, 3 * 16384, "stream 3 got %zu of %zu", d3, d1 + d3);
	free(b.p);
	srv_stop();
}

/* Issue 12 item 3: tables for every possible stream were allocated up front. An idle
 * connection now holds little, and the table grows with the streams really open. */
Test(h2, idle_connection_is_small_and_grows_with_streams)
{
	struct h2_config cfg = cfg_default();
	cfg.streams_max = 4096;
	srv_start(&cfg);
	handshake();
	cr_assert_eq(h2_conn_slots_cap(S.c), 0);
	struct buf b = {0};
	for (uint32_t sid = 1; sid < 2 * 40; sid += 2)
		headers(&b, sid, false);
	cr_assert_eq(feed(&b), 0);
	cr_assert_geq(h2_conn_slots_cap(S.c), 40);
	cr_assert_leq(h2_conn_slots_cap(S.c), 64);
	free(b.p);
	srv_stop();
}

Test(h2, streams_share_the_connection_window_fairly)
{
	srv_start(NULL);
	handshake();
	struct buf b = {0};
	settings(&b, 4, 1 << 20);
	headers(&b, 1, false);
	headers(&b, 3, false);
	cr_assert_eq(feed(&b), 0);
	static uint8_t big[200000];
	/* the connection window (65535) goes to stream 1 first */
	cr_assert_eq(h2_submit_data(S.c, 1, big, sizeof(big), NULL, 0), 0);
	cr_assert_eq(h2_submit_data(S.c, 3, big, sizeof(big), NULL, 0), 0);
	drain();
	size_t s1 = data_bytes(1), s3 = data_bytes(3);
	cr_assert_eq(s1 + s3, 65535);
	b.len = 0;
	window_update(&b, 0, 8 * 16384);
	cr_assert_eq(feed(&b), 0);
	size_t d1 = data_bytes(1) - s1, d3 = data_bytes(3) - s3;
	cr_assert_eq(d1 + d3, 8 * 16384);
	cr_assert_eq(d1, d3, "round robin: %zu vs %zu", d1, d3);
	free(b.p);
	srv_stop();
}

Test(h2, graceful_goaway)
{
	srv_start(NULL);
	handshake();
	struct buf b = {0};
	headers(&b, 1, false);
	cr_assert_eq(feed(&b), 0);
	h2_conn_goaway(S.c);
	drain();
	cr_assert_eq(goaway_code(), 0);
	cr_assert_eq(rd32(fp(last(7))), 1);
	cr_assert(!h2_conn_done(S.c));
	b.len = 0;
	headers(&b, 3, false); /* ignored */
	fr(&b, 0, 0, 3, "abc", 3);
	cr_assert_eq(feed(&b), 0);
	cr_assert_eq(ev_count('R'), 1);
	struct h2_field f = {(const uint8_t *)":status", (const uint8_t *)"200", 7, 3};
	cr_assert_eq(h2_submit_headers(S.c, 1, &f, 1, true), 0);
	cr_assert(h2_conn_done(S.c));
	free(b.p);
	srv_stop();
}

Test(h2, byte_at_a_time_input)
{
	srv_start(NULL);
	struct buf b = {0};
	buf_put(&b, preface, 24);
	fr(&b, 4, 0, 0, NULL, 0);
	uint8_t blk[512];
	size_t n = hblock(blk, sizeof(blk), req_hdrs);
	fr(&b, 1, 0, 1, blk, 4);
	fr(&b, 9, 0x4, 1, blk + 4, n - 4);
	fr(&b, 0, 0x1, 1, "payload", 7);
	fr(&b, 6, 0, 0, "abcdefgh", 8);
	for (size_t i = 0; i < b.len; i++)
		cr_assert_eq(h2_conn_recv(S.c, b.p + i, 1), 0);
	drain_chunked(7);
	cr_assert_eq(ev_count('R'), 1);
	const struct event *e = ev_last('D');
	cr_assert(e && e->end && e->data.len == 7);
	cr_assert_eq(count(6), 1);
	free(b.p);
	srv_stop();
}

Test(h2, client_trailers_half_close_the_stream)
{
	srv_start(NULL);
	handshake();
	struct buf b = {0};
	headers(&b, 1, false);
	fr(&b, 0, 0, 1, "abc", 3);
	uint8_t blk[64];
	const char *tr[] = {"x-trailer", "1", NULL};
	fr(&b, 1, 0x5, 1, blk, hblock(blk, sizeof(blk), tr));
	cr_assert_eq(feed(&b), 0);
	const struct event *e = ev_last('D');
	cr_assert(e && e->end && e->data.len == 0);
	/* HEADERS without END_STREAM on an open stream: malformed, stream error */
	b.len = 0;
	headers(&b, 3, false);
	fr(&b, 1, 0x4, 3, blk, hblock(blk, sizeof(blk), tr));
	cr_assert_eq(feed(&b), 0);
	cr_assert_eq(ev_last('C')->sid, 3);
	cr_assert_eq(ev_last('C')->err, 1);
	free(b.p);
	srv_stop();
}

Test(h2, zero_window_update_and_self_dependency)
{
	srv_start(NULL);
	handshake();
	struct buf b = {0};
	headers(&b, 1, false);
	window_update(&b, 1, 0);
	uint8_t blk[512], pl[600];
	size_t n = hblock(blk, sizeof(blk), req_hdrs);
	be32(pl, 3); /* stream 3 depends on itself */
	pl[4] = 1;
	memcpy(pl + 5, blk, n);
	fr(&b, 1, 0x4 | 0x20, 3, pl, 5 + n);
	fr(&b, 2, 0, 5, "\0\0\0\5\1", 5); /* PRIORITY: 5 on itself */
	cr_assert_eq(feed(&b), 0);
	cr_assert_eq(count(3), 3);
	for (size_t i = 0; i < S.out.n; i++)
		if (S.out.f[i].type == 3)
			cr_assert_eq(rd32(fp(&S.out.f[i])), 1);
	cr_assert_eq(ev_count('R'), 1);
	b.len = 0;
	window_update(&b, 0, 0);
	cr_assert_lt(feed(&b), 0);
	cr_assert_eq(goaway_code(), 1);
	free(b.p);
	srv_stop();
}

Test(h2, blocks_are_recycled)
{
	srv_start(NULL);
	handshake();
	struct buf b = {0};
	settings(&b, 4, 0x7fffffff);
	window_update(&b, 0, 0x7fffffff - 65535);
	cr_assert_eq(feed(&b), 0);
	static uint8_t big[100000];
	for (uint32_t sid = 1; sid < 200; sid += 2) {
		b.len = 0;
		headers(&b, sid, true);
		cr_assert_eq(feed(&b), 0);
		cr_assert_eq(h2_submit_data(S.c, sid, big, sizeof(big), NULL, 0), 0);
		struct h2_field f = {(const uint8_t *)":status", (const uint8_t *)"200", 7, 3};
		cr_assert_eq(h2_submit_headers(S.c, sid, &f, 1, true), 0);
		drain();
		cr_assert_eq(data_bytes(sid), sizeof(big));
	}
	cr_assert_eq(ev_count('C'), 100);
	free(b.p);
	srv_stop();
}

Test(h2, bad_hpack_is_compression_error)
{
	srv_start(NULL);
	handshake();
	struct buf b = {0};
	fr(&b, 1, 0x5, 1, "\xff\xff\xff\xff\xff\xff\xff\xff", 8); /* index far beyond any table */
	cr_assert_lt(feed(&b), 0);
	cr_assert_eq(goaway_code(), 9);
	free(b.p);
	srv_stop();
}

/* The stream table's open addressing under churn: many ids colliding in a small table,
 * closed in a scrambled order (backward-shift deletion must keep every chain reachable). */
Test(h2, stream_table_churn)
{
	struct h2_config cfg = cfg_default();
	cfg.streams_max = 24;
	srv_start(&cfg);
	handshake();
	struct buf b = {0};
	uint32_t live[24];
	size_t n_live = 0;
	uint32_t next = 1, rnd = 12345;
	for (int round = 0; round < 3000; round++) {
		rnd = rnd * 1103515245 + 12345;
		b.len = 0;
		if (n_live < 24 && (rnd >> 16) % 3 != 0) {
			headers(&b, next, false);
			live[n_live++] = next;
			next += 2 * (1 + (rnd >> 20) % 50); /* skip ids: more varied hashes */
		} else if (n_live > 0) {
			size_t k = (rnd >> 8) % n_live;
			uint8_t code[4] = {0, 0, 0, 8};
			fr(&b, 3, 0, live[k], code, 4);
			live[k] = live[--n_live];
		}
		cr_assert_eq(feed(&b), 0);
		for (size_t i = 0; i < n_live; i++)
			cr_assert_geq(h2_stream_slot(S.c, live[i]), 0, "round %d id %u lost", round, live[i]);
	}
	/* data still reaches the right stream */
	for (size_t i = 0; i < n_live; i++) {
		b.len = 0;
		fr(&b, 0, 0, live[i], "z", 1);
		cr_assert_eq(feed(&b), 0);
		const struct event *e = ev_last('D');
		cr_assert(e && e->sid == live[i]);
		cr_assert_eq((int)e->slot, h2_stream_slot(S.c, live[i]));
	}
	free(b.p);
	srv_stop();
}

Test(h2, more_malformed_requests)
{
	srv_start(NULL);
	handshake();
	struct buf b = {0};
	uint8_t blk[512];
	const char *dup[] = {":method", "POST", ":scheme", "http", ":path", "/a", ":path", "/b", NULL};
	const char *unk[] = {":method", "POST", ":scheme", "http", ":path", "/a", ":foo", "x", NULL};
	const char *te[] = {":method", "POST", ":scheme", "http", ":path", "/a", "te", "gzip", NULL};
	const char *te2[] = {":method", "POST", ":scheme", "http", ":path", "/a", "transfer-encoding", "chunked", NULL};
	const char *crlf[] = {":method", "POST", ":scheme", "http", ":path", "/a", "x", "a\r\nb", NULL};
	const char *const *all[] = {dup, unk, te, te2, crlf};
	for (int i = 0; i < 5; i++)
		fr(&b, 1, 0x5, 1 + 2 * i, blk, hblock(blk, sizeof(blk), all[i]));
	cr_assert_eq(feed(&b), 0);
	cr_assert_eq(count(3), 5);
	cr_assert_eq(ev_count('R'), 0);
	free(b.p);
	srv_stop();
}
