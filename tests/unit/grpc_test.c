/* gRPC layer tests: hand-built HTTP/2 client frames in, responses parsed back (frames, and
 * header blocks through a client-side HPACK decoder). The client harness repeats the one
 * in h2_test.c so that each file stands alone. */
#include <criterion/criterion.h>
#include <criterion/logging.h>
#include <malloc.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "net/grpc.h"
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

static uint32_t rd32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void window_update(struct buf *b, uint32_t sid, uint32_t inc)
{
	uint8_t p[4] = {(uint8_t)(inc >> 24), (uint8_t)(inc >> 16), (uint8_t)(inc >> 8), (uint8_t)inc};
	fr(b, 8, 0, sid, p, 4);
}

/* HEADERS for a call; extra name/value pairs (NULL-terminated) replace defaults of the
 * same name, "" values drop a default. */
static void call_headers(struct buf *b, uint32_t sid, bool end_stream, const char *path, const char *const *extra)
{
	const char *nv[64];
	size_t n = 0;
	const char *def[] = {":method", "POST", ":scheme", "http", ":path", path, ":authority", "localhost",
			     "content-type", "application/grpc", "te", "trailers", NULL};
	for (size_t i = 0; def[i]; i += 2) {
		const char *v = def[i + 1];
		for (size_t k = 0; extra && extra[k]; k += 2)
			if (strcmp(extra[k], def[i]) == 0)
				v = extra[k + 1];
		if (*v) {
			nv[n++] = def[i];
			nv[n++] = v;
		}
	}
	for (size_t k = 0; extra && extra[k]; k += 2) {
		bool replaced = false;
		for (size_t i = 0; def[i]; i += 2)
			replaced |= strcmp(extra[k], def[i]) == 0;
		if (!replaced) {
			nv[n++] = extra[k];
			nv[n++] = extra[k + 1];
		}
	}
	static uint8_t blk[32768];
	size_t len = 0;
	for (size_t i = 0; i < n; i += 2) {
		ssize_t k = hpack_encode_field(blk + len, sizeof(blk) - len, nv[i], strlen(nv[i]), nv[i + 1],
					       strlen(nv[i + 1]), 0);
		cr_assert(k > 0);
		len += (size_t)k;
	}
	fr(b, 1, 0x4 | (end_stream ? 1 : 0), sid, blk, len);
}

/* one length-prefixed message */
static void lpm(struct buf *b, uint8_t flags, const void *msg, uint32_t len)
{
	uint8_t p[5] = {flags, (uint8_t)(len >> 24), (uint8_t)(len >> 16), (uint8_t)(len >> 8), (uint8_t)len};
	buf_put(b, p, 5);
	buf_put(b, msg, len);
}

static const char preface[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

struct frame {
	uint8_t type, flags;
	uint32_t sid, len;
	size_t off; /* payload offset in raw */
};

struct hfield {
	char name[64];
	char value[1024];
};

struct hdrs {
	struct hfield f[16];
	size_t n;
};

/* ---- the server under test ---- */

struct srv {
	struct grpc_conn *c;
	struct buf raw;
	struct frame f[8192];
	size_t nf, parsed;
	struct hpack_decoder *dec;
	/* events */
	int starts, ends, half_closes, messages;
	uint32_t end_ids[64];
	struct buf last_msg;
	char token[64];
	/* behaviour */
	bool echo;              /* answer each message with itself */
	bool status_on_half;    /* OK status at half-close */
	bool status_in_message; /* status right after the echo, inside on_message */
	size_t reply_size;      /* if set, one reply of this size instead of the echo */
	bool hold;              /* grpc_call_hold every message */
};

static struct srv S;

static int route(void *u, const char *path, size_t len)
{
	if (strcmp(path, "/etcdserverpb.KV/Range") == 0)
		return 1;
	if (strcmp(path, "/etcdserverpb.Watch/Watch") == 0)
		return 2;
	if (strncmp(path, "/etcdserverpb.KV/", 17) == 0)
		return -2;
	return -1;
}

static void on_call_start(void *u, uint32_t sid, int method, const struct grpc_header *h, size_t n)
{
	S.starts++;
	for (size_t i = 0; i < n; i++)
		if (h[i].name_len == 5 && memcmp(h[i].name, "token", 5) == 0)
			snprintf(S.token, sizeof(S.token), "%.*s", (int)h[i].value_len, (const char *)h[i].value);
}

static void on_message(void *u, uint32_t sid, int method, const uint8_t *msg, size_t len)
{
	S.messages++;
	if (S.hold)
		grpc_call_hold(S.c, sid);
	S.last_msg.len = 0;
	buf_put(&S.last_msg, msg, len);
	if (S.reply_size) {
		uint8_t *r = malloc(S.reply_size);
		for (size_t i = 0; i < S.reply_size; i++)
			r[i] = (uint8_t)(i * 7);
		cr_assert_eq(grpc_send_message(S.c, sid, r, S.reply_size), 0);
		free(r);
	} else if (S.echo) {
		cr_assert_eq(grpc_send_message(S.c, sid, msg, len), 0);
	}
	if (S.status_in_message)
		cr_assert_eq(grpc_send_status(S.c, sid, GRPC_OK, NULL), 0);
}

static void on_half_close(void *u, uint32_t sid, int method)
{
	S.half_closes++;
	if (S.status_on_half)
		cr_assert_eq(grpc_send_status(S.c, sid, GRPC_OK, NULL), 0);
}

static void on_call_end(void *u, uint32_t sid, int method, void *cu)
{
	if (S.ends < 64)
		S.end_ids[S.ends] = sid;
	S.ends++;
}

static const struct grpc_server_callbacks CB = {route, on_call_start, on_message, on_half_close, on_call_end};

static void srv_start_cfg(const struct grpc_conn_config *cfg)
{
	memset(&S, 0, sizeof(S));
	struct grpc_conn_config d;
	grpc_conn_config_default(&d);
	S.c = grpc_conn_new(cfg ? cfg : &d, &CB, NULL);
	cr_assert(S.c);
	S.dec = hpack_decoder_new(4096);
	grpc_conn_set_now(S.c, 1000);
}

static void srv_stop(void)
{
	grpc_conn_free(S.c);
	hpack_decoder_free(S.dec);
	free(S.raw.p);
	free(S.last_msg.p);
}

static void drain(void)
{
	struct iovec iov[64];
	size_t n;
	while ((n = grpc_conn_output(S.c, iov, 64)) > 0) {
		size_t took = 0;
		for (size_t i = 0; i < n; i++) {
			buf_put(&S.raw, iov[i].iov_base, iov[i].iov_len);
			took += iov[i].iov_len;
		}
		grpc_conn_output_consumed(S.c, took);
	}
	while (S.raw.len - S.parsed >= 9) {
		uint8_t *h = S.raw.p + S.parsed;
		uint32_t len = (uint32_t)h[0] << 16 | h[1] << 8 | h[2];
		cr_assert(S.raw.len - S.parsed >= 9 + len);
		struct frame *f = &S.f[S.nf++];
		f->type = h[3];
		f->flags = h[4];
		f->sid = rd32(h + 5) & 0x7fffffff;
		f->len = len;
		f->off = S.parsed + 9;
		S.parsed += 9 + len;
	}
}

static int feed(const struct buf *b)
{
	int r = grpc_conn_recv(S.c, b->p, b->len);
	drain();
	return r;
}

static void srv_start(void)
{
	srv_start_cfg(NULL);
	struct buf b = {0};
	buf_put(&b, preface, 24);
	fr(&b, 4, 0, 0, NULL, 0);
	cr_assert_eq(feed(&b), 0);
	free(b.p);
}

static int on_field(void *arg, const uint8_t *n, size_t nl, const uint8_t *v, size_t vl)
{
	struct hdrs *h = arg;
	cr_assert_lt(h->n, 16);
	snprintf(h->f[h->n].name, 64, "%.*s", (int)nl, (const char *)n);
	snprintf(h->f[h->n].value, 1024, "%.*s", (int)vl, (const char *)v);
	h->n++;
	return 0;
}

/* The i-th HEADERS frame of a stream, decoded. Frames are decoded in order, once. */
static struct hdrs decoded[64];
static size_t n_decoded, decoded_upto;

static void decode_all(void)
{
	for (; decoded_upto < S.nf; decoded_upto++) {
		struct frame *f = &S.f[decoded_upto];
		if (f->type != 1)
			continue;
		cr_assert(f->flags & 0x4, "we never send CONTINUATION");
		struct hdrs *h = &decoded[n_decoded++];
		memset(h, 0, sizeof(*h));
		cr_assert_eq(hpack_decode_block(S.dec, S.raw.p + f->off, f->len, 1 << 20, on_field, h), 0);
	}
}

static const struct hdrs *headers_of(uint32_t sid, int nth, bool *end_stream)
{
	decode_all();
	size_t k = 0;
	for (size_t i = 0; i < S.nf; i++) {
		if (S.f[i].type != 1)
			continue;
		if (S.f[i].sid == sid && nth-- == 0) {
			if (end_stream)
				*end_stream = S.f[i].flags & 1;
			return &decoded[k];
		}
		k++;
	}
	return NULL;
}

static const char *hget(const struct hdrs *h, const char *name)
{
	for (size_t i = 0; h && i < h->n; i++)
		if (strcmp(h->f[i].name, name) == 0)
			return h->f[i].value;
	return NULL;
}

static size_t count(uint8_t type, uint32_t sid)
{
	size_t n = 0;
	for (size_t i = 0; i < S.nf; i++)
		n += S.f[i].type == type && S.f[i].sid == sid;
	return n;
}

/* concatenated DATA payload of a stream */
static void data_of(uint32_t sid, struct buf *out)
{
	out->len = 0;
	for (size_t i = 0; i < S.nf; i++)
		if (S.f[i].type == 0 && S.f[i].sid == sid)
			buf_put(out, S.raw.p + S.f[i].off, S.f[i].len);
}

/* Asserts a trailers-only answer on sid with this :status, grpc-status and message. */
static void expect_trailers_only(uint32_t sid, const char *http, const char *code, const char *msg)
{
	bool end = false;
	const struct hdrs *h = headers_of(sid, 0, &end);
	cr_assert(h, "no HEADERS on stream %u", sid);
	cr_assert(end);
	cr_assert_str_eq(hget(h, ":status"), http);
	cr_assert_str_eq(hget(h, "content-type"), "application/grpc");
	cr_assert_str_eq(hget(h, "grpc-status"), code);
	if (msg)
		cr_assert_str_eq(hget(h, "grpc-message"), msg);
	cr_assert_eq(count(0, sid), 0);
}

static void reset_decoded(void)
{
	n_decoded = decoded_upto = 0;
}

/* ---- tests ---- */

TestSuite(grpc, .init = reset_decoded);

Test(grpc, unary_round_trip)
{
	srv_start();
	S.echo = true;
	S.status_on_half = true;
	struct buf b = {0};
	const char *md[] = {"token", "secret", NULL};
	call_headers(&b, 1, false, "/etcdserverpb.KV/Range", md);
	struct buf body = {0};
	lpm(&body, 0, "\x0a\x03" "foo", 5);
	fr(&b, 0, 1, 1, body.p, body.len);
	cr_assert_eq(feed(&b), 0);
	cr_assert_eq(S.starts, 1);
	cr_assert_str_eq(S.token, "secret");
	cr_assert_eq(S.messages, 1);
	cr_assert_eq(S.half_closes, 1);
	cr_assert_eq(S.ends, 1);
	bool end = true;
	const struct hdrs *h = headers_of(1, 0, &end);
	cr_assert(!end);
	cr_assert_str_eq(hget(h, ":status"), "200");
	cr_assert_str_eq(hget(h, "content-type"), "application/grpc");
	struct buf d = {0};
	data_of(1, &d);
	cr_assert_eq(d.len, body.len);
	cr_assert_eq(memcmp(d.p, body.p, body.len), 0);
	h = headers_of(1, 1, &end);
	cr_assert(end);
	cr_assert_str_eq(hget(h, "grpc-status"), "0");
	cr_assert_null(hget(h, "grpc-message"));
	cr_assert_null(hget(h, ":status"));
	/* no RST: the client had half-closed */
	cr_assert_eq(count(3, 1), 0);
	cr_assert_eq(grpc_send_message(S.c, 1, (const uint8_t *)"x", 1), -ENOENT);
	cr_assert_eq(grpc_send_status(S.c, 1, GRPC_OK, NULL), -ENOENT);
	free(b.p);
	free(body.p);
	free(d.p);
	srv_stop();
}

Test(grpc, message_across_many_frames_and_many_per_frame)
{
	srv_start();
	struct buf b = {0};
	call_headers(&b, 1, false, "/etcdserverpb.KV/Range", NULL);
	struct buf body = {0};
	static uint8_t big[70000];
	for (size_t i = 0; i < sizeof(big); i++)
		big[i] = (uint8_t)(i * 13);
	lpm(&body, 0, big, sizeof(big));
	/* 1-byte DATA frames for the first 100 bytes, then bigger ones */
	size_t off = 0;
	while (off < body.len) {
		size_t k = off < 100 ? 1 : 9000;
		if (k > body.len - off)
			k = body.len - off;
		fr(&b, 0, 0, 1, body.p + off, k);
		off += k;
	}
	cr_assert_eq(feed(&b), 0);
	cr_assert_eq(S.messages, 1);
	cr_assert_eq(S.last_msg.len, sizeof(big));
	cr_assert_eq(memcmp(S.last_msg.p, big, sizeof(big)), 0);
	/* three messages in one frame, one of them empty */
	b.len = body.len = 0;
	lpm(&body, 0, "abc", 3);
	lpm(&body, 0, "", 0);
	lpm(&body, 0, "defg", 4);
	fr(&b, 0, 1, 1, body.p, body.len);
	cr_assert_eq(feed(&b), 0);
	cr_assert_eq(S.messages, 4);
	cr_assert_eq(S.last_msg.len, 4);
	cr_assert_eq(S.half_closes, 1);
	free(b.p);
	free(body.p);
	srv_stop();
}

Test(grpc, padded_data_frames)
{
	srv_start();
	struct buf b = {0};
	call_headers(&b, 1, false, "/etcdserverpb.KV/Range", NULL);
	uint8_t p[64] = {10, 0, 0, 0, 0, 3, 'x', 'y', 'z'};
	fr(&b, 0, 0x8 | 0x1, 1, p, 1 + 8 + 10);
	cr_assert_eq(feed(&b), 0);
	cr_assert_eq(S.messages, 1);
	cr_assert_eq(S.last_msg.len, 3);
	cr_assert_eq(memcmp(S.last_msg.p, "xyz", 3), 0);
	free(b.p);
	srv_stop();
}

Test(grpc, four_gib_length_prefix)
{
	srv_start();
	struct buf b = {0};
	call_headers(&b, 1, false, "/etcdserverpb.KV/Range", NULL);
	uint8_t p[9] = {0, 0xff, 0xff, 0xff, 0xff, 1, 2, 3, 4};
	fr(&b, 0, 0, 1, p, 9);
	cr_assert_eq(feed(&b), 0);
	cr_assert_eq(S.messages, 0);
	cr_assert_eq(S.ends, 1);
	expect_trailers_only(1, "200", "8", "grpc: received message larger than max (4294967295 vs. 2097152)");
	/* the client had not half-closed: RST_STREAM(NO_ERROR) follows */
	cr_assert_eq(count(3, 1), 1);
	/* more DATA from the client is dropped quietly */
	b.len = 0;
	fr(&b, 0, 0, 1, p, 9);
	cr_assert_eq(feed(&b), 0);
	cr_assert_eq(count(3, 1), 1);
	free(b.p);
	srv_stop();
}

Test(grpc, oversized_message_after_headers_sent)
{
	struct grpc_conn_config cfg;
	grpc_conn_config_default(&cfg);
	cfg.max_recv_msg_size = 100;
	srv_start_cfg(&cfg);
	struct buf b = {0};
	buf_put(&b, preface, 24);
	fr(&b, 4, 0, 0, NULL, 0);
	S.echo = true;
	call_headers(&b, 1, false, "/etcdserverpb.Watch/Watch", NULL);
	struct buf body = {0};
	lpm(&body, 0, "hello", 5);
	uint8_t big[101] = {0};
	lpm(&body, 0, big, 101);
	fr(&b, 0, 0, 1, body.p, body.len);
	cr_assert_eq(feed(&b), 0);
	cr_assert_eq(S.messages, 1);
	bool end;
	const struct hdrs *h = headers_of(1, 1, &end);
	cr_assert(h && end);
	cr_assert_str_eq(hget(h, "grpc-status"), "8");
	cr_assert_str_eq(hget(h, "grpc-message"), "grpc: received message larger than max (101 vs. 100)");
	cr_assert_eq(S.ends, 1);
	free(b.p);
	free(body.p);
	srv_stop();
}

Test(grpc, compressed_message_and_unknown_encoding)
{
	srv_start();
	struct buf b = {0};
	call_headers(&b, 1, false, "/etcdserverpb.KV/Range", NULL);
	struct buf body = {0};
	lpm(&body, 1, "abc", 3);
	fr(&b, 0, 0, 1, body.p, body.len);
	const char *gz[] = {"grpc-encoding", "gzip", NULL};
	call_headers(&b, 3, false, "/etcdserverpb.KV/Range", gz);
	cr_assert_eq(feed(&b), 0);
	cr_assert_eq(S.messages, 0);
	expect_trailers_only(1, "200", "13", "grpc: compressed flag set with identity or empty encoding");
	expect_trailers_only(3, "200", "12", "grpc: Decompressor is not installed for grpc-encoding \"gzip\"");
	cr_assert_eq(S.starts, 1);
	cr_assert_eq(S.ends, 1);
	free(b.p);
	free(body.p);
	srv_stop();
}

Test(grpc, bad_requests_get_grpc_go_answers)
{
	srv_start();
	struct buf b = {0};
	const char *json[] = {"content-type", "application/json", NULL};
	const char *none[] = {"content-type", "", NULL};
	const char *plus[] = {"content-type", "application/grpc+proto", NULL};
	const char *put[] = {":method", "PUT", NULL};
	const char *tmo[] = {"grpc-timeout", "18f6n", NULL};
	const char *tmo2[] = {"grpc-timeout", "1x", NULL};
	call_headers(&b, 1, true, "/etcdserverpb.KV/Range", json);
	call_headers(&b, 3, true, "/etcdserverpb.KV/Range", none);
	call_headers(&b, 5, true, "/etcdserverpb.KV/Range", put);
	call_headers(&b, 7, true, "/etcdserverpb.KV/Range", tmo);
	call_headers(&b, 9, true, "/etcdserverpb.KV/Range", tmo2);
	call_headers(&b, 11, true, "/etcdserverpb.Foo/Bar", NULL);
	call_headers(&b, 13, true, "/etcdserverpb.KV/Nope", NULL);
	call_headers(&b, 15, true, "/nonsense", NULL);
	call_headers(&b, 17, true, "/etcdserverpb.KV/Range", plus);
	cr_assert_eq(feed(&b), 0);
	expect_trailers_only(1, "415", "3", "invalid gRPC request content-type \"application/json\"");
	expect_trailers_only(3, "415", "3", "invalid gRPC request content-type \"\"");
	expect_trailers_only(5, "405", "13", "Received a HEADERS frame with :method \"PUT\" which should be POST");
	expect_trailers_only(7, "400", "13",
			     "malformed grpc-timeout: strconv.ParseInt: parsing \"18f6\": invalid syntax");
	expect_trailers_only(9, "400", "13",
			     "malformed grpc-timeout: transport: timeout unit is not recognized: \"1x\"");
	expect_trailers_only(11, "200", "12", "unknown service etcdserverpb.Foo");
	expect_trailers_only(13, "200", "12", "unknown method Nope for service etcdserverpb.KV");
	expect_trailers_only(15, "200", "12", "malformed method name: \"/nonsense\"");
	cr_assert_eq(S.starts, 1); /* only +proto */
	cr_assert_eq(S.ends, 0);
	/* the client had half-closed each: no RSTs */
	for (uint32_t sid = 1; sid <= 15; sid += 2)
		cr_assert_eq(count(3, sid), 0);
	free(b.p);
	srv_stop();
}

Test(grpc, status_message_is_percent_encoded)
{
	srv_start();
	struct buf b = {0};
	call_headers(&b, 1, true, "/etcdserverpb.KV/Range", NULL);
	cr_assert_eq(feed(&b), 0);
	cr_assert_eq(grpc_send_status(S.c, 1, GRPC_FAILED_PRECONDITION, "a%b\n \xc3\xbc~"), 0);
	drain();
	expect_trailers_only(1, "200", "9", "a%25b%0A %C3%BC~");
	cr_assert_eq(S.ends, 1);
	free(b.p);
	srv_stop();
}

Test(grpc, deadline)
{
	srv_start();
	struct buf b = {0};
	const char *t100[] = {"grpc-timeout", "100m", NULL};
	const char *t1h[] = {"grpc-timeout", "1H", NULL};
	call_headers(&b, 1, false, "/etcdserverpb.KV/Range", t100);
	call_headers(&b, 3, false, "/etcdserverpb.KV/Range", t1h);
	call_headers(&b, 5, false, "/etcdserverpb.KV/Range", NULL);
	cr_assert_eq(feed(&b), 0);
	cr_assert_eq(S.starts, 3);
	grpc_conn_tick(S.c, 1099);
	drain();
	cr_assert_eq(S.ends, 0);
	grpc_conn_tick(S.c, 1100);
	drain();
	cr_assert_eq(S.ends, 1);
	cr_assert_eq(S.end_ids[0], 1);
	expect_trailers_only(1, "200", "4", "context deadline exceeded");
	grpc_conn_tick(S.c, 1000 + 3600 * 1000);
	drain();
	cr_assert_eq(S.ends, 2);
	cr_assert_eq(S.end_ids[1], 3);
	grpc_conn_tick(S.c, UINT64_MAX / 2);
	cr_assert_eq(S.ends, 2);
	free(b.p);
	srv_stop();
	cr_assert_eq(S.ends, 3); /* stream 5 ended by grpc_conn_free */
}

Test(grpc, rst_from_client_mid_call)
{
	srv_start();
	struct buf b = {0};
	call_headers(&b, 1, false, "/etcdserverpb.Watch/Watch", NULL);
	struct buf body = {0};
	lpm(&body, 0, "0123456789", 10);
	fr(&b, 0, 0, 1, body.p, 4); /* a partial message is buffered */
	cr_assert_eq(feed(&b), 0);
	cr_assert_eq(grpc_send_message(S.c, 1, (const uint8_t *)"resp", 4), 0);
	b.len = 0;
	uint8_t code[4] = {0, 0, 0, 8};
	fr(&b, 3, 0, 1, code, 4);
	cr_assert_eq(feed(&b), 0);
	cr_assert_eq(S.ends, 1);
	cr_assert_eq(grpc_send_message(S.c, 1, (const uint8_t *)"x", 1), -ENOENT);
	cr_assert_eq(grpc_send_status(S.c, 1, GRPC_OK, NULL), -ENOENT);
	free(b.p);
	free(body.p);
	srv_stop();
	cr_assert_eq(S.ends, 1);
}

Test(grpc, end_of_stream_inside_a_message)
{
	srv_start();
	struct buf b = {0};
	call_headers(&b, 1, false, "/etcdserverpb.KV/Range", NULL);
	fr(&b, 0, 1, 1, "\0\0\0\0\5ab", 7);
	cr_assert_eq(feed(&b), 0);
	expect_trailers_only(1, "200", "13", "unexpected EOF");
	cr_assert_eq(S.half_closes, 0);
	cr_assert_eq(S.ends, 1);
	free(b.p);
	srv_stop();
}

Test(grpc, large_response_waits_for_window)
{
	srv_start();
	S.reply_size = 300000;
	S.status_in_message = true;
	struct buf b = {0};
	call_headers(&b, 1, false, "/etcdserverpb.KV/Range", NULL);
	struct buf body = {0};
	lpm(&body, 0, "q", 1);
	fr(&b, 0, 1, 1, body.p, body.len);
	cr_assert_eq(feed(&b), 0);
	cr_assert_eq(S.ends, 1); /* the call is over for the service at once */
	struct buf d = {0};
	data_of(1, &d);
	cr_assert_eq(d.len, 65535);
	cr_assert_gt(grpc_stream_queued_bytes(S.c, 1), 300005 - 65535);
	cr_assert_null(headers_of(1, 1, NULL)); /* trailers wait behind the data */
	for (int i = 0; i < 7; i++) {
		b.len = 0;
		window_update(&b, 0, 30000);
		window_update(&b, 1, 30000);
		cr_assert_eq(feed(&b), 0);
		data_of(1, &d);
		cr_assert_eq(d.len, 65535 + 30000 * (size_t)(i + 1), "i=%d len=%zu", i, d.len);
	}
	b.len = 0;
	window_update(&b, 0, 1 << 20);
	window_update(&b, 1, 1 << 20);
	cr_assert_eq(feed(&b), 0);
	data_of(1, &d);
	cr_assert_eq(d.len, 300005);
	cr_assert_eq(rd32(d.p + 1), 300000);
	for (size_t i = 0; i < 300000; i++)
		cr_assert_eq(d.p[5 + i], (uint8_t)(i * 7));
	bool end;
	const struct hdrs *h = headers_of(1, 1, &end);
	cr_assert(h && end);
	cr_assert_str_eq(hget(h, "grpc-status"), "0");
	cr_assert_eq(grpc_stream_queued_bytes(S.c, 1), 0);
	free(b.p);
	free(body.p);
	free(d.p);
	srv_stop();
	cr_assert_eq(S.ends, 1);
}

Test(grpc, free_ends_live_calls_once)
{
	srv_start();
	struct buf b = {0};
	for (uint32_t sid = 1; sid < 20; sid += 2)
		call_headers(&b, sid, false, "/etcdserverpb.Watch/Watch", NULL);
	cr_assert_eq(feed(&b), 0);
	cr_assert_eq(grpc_send_status(S.c, 5, GRPC_UNAVAILABLE, "bye"), 0);
	cr_assert_eq(S.ends, 1);
	free(b.p);
	srv_stop();
	cr_assert_eq(S.ends, 10);
}

Test(grpc, connection_error_ends_calls)
{
	srv_start();
	struct buf b = {0};
	call_headers(&b, 1, false, "/etcdserverpb.Watch/Watch", NULL);
	call_headers(&b, 3, false, "/etcdserverpb.Watch/Watch", NULL);
	fr(&b, 5, 0x4, 1, "\0\0\0\2", 4); /* PUSH_PROMISE */
	cr_assert_lt(feed(&b), 0);
	cr_assert_eq(S.ends, 2);
	cr_assert(grpc_conn_done(S.c));
	free(b.p);
	srv_stop();
	cr_assert_eq(S.ends, 2);
}

Test(grpc, oversized_header_list_gets_431)
{
	srv_start();
	struct buf b = {0};
	static char big[20000];
	memset(big, 'v', sizeof(big) - 1);
	const char *md[] = {"x-big", big, NULL};
	/* a block over 16384 bytes goes in HEADERS + CONTINUATION */
	call_headers(&b, 1, true, "/etcdserverpb.KV/Range", NULL);
	struct buf h = {0};
	call_headers(&h, 3, true, "/etcdserverpb.KV/Range", md);
	/* split h's payload (after its 9-byte header) into two frames */
	size_t plen = h.len - 9;
	fr(&b, 1, 0x1, 3, h.p + 9, 10000);
	fr(&b, 9, 0x4, 3, h.p + 9 + 10000, plen - 10000);
	S.status_on_half = true;
	cr_assert_eq(feed(&b), 0);
	expect_trailers_only(3, "431", "8", NULL);
	cr_assert_eq(S.starts, 1);
	cr_assert_eq(S.ends, 1);
	cr_assert_eq(S.half_closes, 1);
	cr_assert(!grpc_conn_done(S.c));
	free(b.p);
	free(h.p);
	srv_stop();
}

Test(grpc, long_status_message_is_truncated)
{
	srv_start();
	struct buf b = {0};
	call_headers(&b, 1, true, "/etcdserverpb.KV/Range", NULL);
	cr_assert_eq(feed(&b), 0);
	static char msg[50000];
	memset(msg, '%', sizeof(msg) - 1);
	cr_assert_eq(grpc_send_status(S.c, 1, GRPC_INTERNAL, msg), 0);
	drain();
	bool end;
	const struct hdrs *h = headers_of(1, 0, &end);
	cr_assert(h && end);
	cr_assert_str_eq(hget(h, "grpc-status"), "13");
	free(b.p);
	srv_stop();
}

Test(grpc, graceful_goaway_lets_calls_finish)
{
	srv_start();
	struct buf b = {0};
	call_headers(&b, 1, false, "/etcdserverpb.Watch/Watch", NULL);
	cr_assert_eq(feed(&b), 0);
	grpc_conn_goaway(S.c);
	drain();
	cr_assert(!grpc_conn_done(S.c));
	cr_assert_eq(grpc_send_message(S.c, 1, (const uint8_t *)"w", 1), 0);
	cr_assert_eq(grpc_send_status(S.c, 1, GRPC_UNAVAILABLE, "shutting down"), 0);
	drain();
	cr_assert(grpc_conn_done(S.c));
	bool end;
	const struct hdrs *h = headers_of(1, 1, &end);
	cr_assert(h && end);
	cr_assert_str_eq(hget(h, "grpc-status"), "14");
	free(b.p);
	srv_stop();
}

/* ---- pulled messages (grpc_send_message_source) ---- */

struct pull_src {
	uint64_t total, given;
	bool freed;
	size_t max_cap;
};

static ssize_t pull_src_read(void *arg, uint8_t *buf, size_t cap)
{
	struct pull_src *p = arg;
	if (cap > p->max_cap)
		p->max_cap = cap;
	uint64_t left = p->total - p->given;
	size_t n = left < cap ? (size_t)left : cap;
	for (size_t i = 0; i < n; i++)
		buf[i] = (uint8_t)((p->given + i) * 13);
	p->given += n;
	return (ssize_t)n;
}

static void pull_src_free(void *arg)
{
	struct pull_src *p = arg;
	cr_assert_not(p->freed, "freed twice");
	p->freed = true;
}

static void pull_call(struct buf *b, uint32_t sid)
{
	call_headers(b, sid, false, "/etcdserverpb.KV/Range", NULL);
	struct buf body = {0};
	lpm(&body, 0, "q", 1);
	fr(b, 0, 1, sid, body.p, body.len);
	free(body.p);
}

/* A 3 MB answer pulled under the client's windows: the bytes are the prefix and the
 * source's, the status waits behind them, and what waits inside is never more than a
 * window (nothing is queued: the source is asked as the window opens). */
Test(grpc, pulled_message_goes_out_under_flow_control)
{
	srv_start();
	struct buf b = {0};
	pull_call(&b, 1);
	cr_assert_eq(feed(&b), 0);
	struct pull_src p = {.total = 3u << 20};
	struct grpc_msg_source src = {pull_src_read, pull_src_free, &p};
	cr_assert_eq(grpc_send_message_source(S.c, 1, p.total, &src), 0);
	cr_assert_eq(grpc_send_status(S.c, 1, GRPC_OK, NULL), 0);
	cr_assert_eq(S.ends, 1);
	drain();
	cr_assert_eq(p.given, 65535 - 5, "only a window's worth was produced");
	cr_assert_lt(grpc_stream_queued_bytes(S.c, 1), 64, "nothing but the trailers waits inside");
	for (int i = 0; i < 200 && !p.freed; i++) {
		b.len = 0;
		window_update(&b, 0, 65535);
		window_update(&b, 1, 65535);
		cr_assert_eq(feed(&b), 0);
		cr_assert_leq(p.given + 5, 65535 * (uint64_t)(i + 2));
	}
	cr_assert(p.freed);
	struct buf d = {0};
	data_of(1, &d);
	cr_assert_eq(d.len, p.total + 5);
	cr_assert_eq(d.p[0], 0);
	cr_assert_eq(rd32(d.p + 1), p.total);
	for (size_t i = 0; i < p.total; i++)
		if (d.p[5 + i] != (uint8_t)(i * 13))
			cr_assert_fail("byte %zu differs", i);
	bool end;
	const struct hdrs *h = headers_of(1, 1, &end);
	cr_assert(h && end);
	cr_assert_str_eq(hget(h, "grpc-status"), "0");
	free(b.p);
	free(d.p);
	srv_stop();
}

/* etcd's response limit is grpc-go's math.MaxInt32 send limit, with its error. */
Test(grpc, pulled_message_over_2gib_gets_grpc_go_error)
{
	srv_start();
	struct buf b = {0};
	pull_call(&b, 1);
	cr_assert_eq(feed(&b), 0);
	struct pull_src p = {.total = 1ull << 31};
	struct grpc_msg_source src = {pull_src_read, pull_src_free, &p};
	cr_assert_eq(grpc_send_message_source(S.c, 1, p.total, &src), -EMSGSIZE);
	cr_assert(p.freed);
	cr_assert_eq(p.given, 0);
	cr_assert_eq(S.ends, 1);
	drain();
	expect_trailers_only(1, "200", "8", "grpc: trying to send message larger than max (2147483648 vs. 2147483647)");
	free(b.p);
	srv_stop();
}

Test(grpc, reset_mid_pull_frees_the_source_and_spares_other_calls)
{
	srv_start();
	struct buf b = {0};
	pull_call(&b, 1);
	pull_call(&b, 3);
	cr_assert_eq(feed(&b), 0);
	struct pull_src p = {.total = 10u << 20};
	struct grpc_msg_source src = {pull_src_read, pull_src_free, &p};
	cr_assert_eq(grpc_send_message_source(S.c, 1, p.total, &src), 0);
	cr_assert_eq(grpc_send_status(S.c, 1, GRPC_OK, NULL), 0);
	drain();
	cr_assert_not(p.freed);
	b.len = 0;
	uint8_t code[4] = {0, 0, 0, 8};
	fr(&b, 3, 0, 1, code, 4);
	window_update(&b, 0, 1 << 20);
	cr_assert_eq(feed(&b), 0);
	cr_assert(p.freed);
	cr_assert_eq(grpc_send_message(S.c, 3, (const uint8_t *)"fine", 4), 0);
	cr_assert_eq(grpc_send_status(S.c, 3, GRPC_OK, NULL), 0);
	drain();
	struct buf d = {0};
	data_of(3, &d);
	cr_assert_eq(d.len, 9);
	free(d.p);
	free(b.p);
	srv_stop();
}

/* Issue 12 item 3: 8000 idle connections held about 600 KiB each (tables for 4096
 * streams). An idle connection now costs a few KiB of heap. */
Test(grpc, idle_connection_costs_a_few_kib)
{
	enum { N = 200 };
	static struct grpc_conn *conns[N];
	struct grpc_conn_config cfg;
	grpc_conn_config_default(&cfg);
	cr_assert_eq(cfg.max_concurrent_streams, 4096);
	struct buf b = {0};
	buf_put(&b, preface, 24);
	fr(&b, 4, 0, 0, NULL, 0);
	struct mallinfo2 before = mallinfo2();
	for (int i = 0; i < N; i++) {
		conns[i] = grpc_conn_new(&cfg, &CB, NULL);
		cr_assert(conns[i]);
		cr_assert_eq(grpc_conn_recv(conns[i], b.p, b.len), 0);
		struct iovec iov[4];
		size_t n = grpc_conn_output(conns[i], iov, 4), took = 0;
		for (size_t k = 0; k < n; k++)
			took += iov[k].iov_len;
		grpc_conn_output_consumed(conns[i], took);
	}
	struct mallinfo2 after = mallinfo2();
	size_t per = (after.uordblks - before.uordblks) / N;
	cr_log_info("idle connection: %zu bytes of heap", per);
	cr_assert_lt(per, 4 * 1024, "an idle connection holds %zu bytes", per);
	for (int i = 0; i < N; i++)
		grpc_conn_free(conns[i]);
	free(b.p);
}

/* Sum of the WINDOW_UPDATE increments the server sent for a stream (0: the connection). */
static uint64_t window_returned(uint32_t sid)
{
	uint64_t n = 0;
	for (size_t i = 0; i < S.nf; i++)
		if (S.f[i].type == 8 && S.f[i].sid == sid)
			n += rd32(S.raw.p + S.f[i].off) & 0x7fffffff;
	return n;
}

/* Issue 12 item 4: the receive window was returned as soon as bytes arrived, so a client
 * could pipeline requests without end. Now held requests keep the window shut until the
 * service is done with them. */
Test(grpc, held_requests_keep_the_window_shut_until_released)
{
	for (int hold = 0; hold < 2; hold++) {
		srv_start();
		S.hold = hold;
		reset_decoded();
		uint64_t conn0 = window_returned(0);
		struct buf b = {0};
		call_headers(&b, 1, false, "/etcdserverpb.Watch/Watch", NULL);
		static uint8_t msg[10000];
		for (int i = 0; i < 100; i++) { /* 1 MB: the whole stream window */
			struct buf body = {0};
			lpm(&body, 0, msg, sizeof(msg));
			fr(&b, 0, 0, 1, body.p, body.len);
			free(body.p);
		}
		cr_assert_eq(feed(&b), 0);
		cr_assert_eq(S.messages, 100);
		if (hold) {
			cr_assert_eq(window_returned(1), 0, "held: no stream window back");
			cr_assert_eq(window_returned(0), conn0);
			grpc_call_release(S.c, 1);
			drain();
			cr_assert_geq(window_returned(1), 100 * 10000);
		} else {
			cr_assert_geq(window_returned(1), 512 * 1024, "not held: the window comes back");
		}
		free(b.p);
		srv_stop();
	}
}
