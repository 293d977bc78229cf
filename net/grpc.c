/* gRPC over HTTP/2 (grpc/doc/PROTOCOL-HTTP2.md), server side, on top of net/h2.c.
 *
 * A call is an HTTP/2 stream whose request passed the checks below; its state lives in
 * `calls[slot]`, parallel to h2's stream table, from h2's on_request to h2's on_close.
 * A call "ends" (on_call_end, exactly once, owner: call_end) before or when its stream
 * closes: when grpc_send_status queues the status, when the peer resets the stream, at
 * its deadline, or when the connection dies. Its stream may outlive it while queued
 * response bytes wait for window.
 *
 * Request checks, in grpc-go's order and with its status text: header list too large
 * (431, RESOURCE_EXHAUSTED), :method not POST (405, INTERNAL), content-type not
 * application/grpc[+|;...] (415, INVALID_ARGUMENT), malformed grpc-timeout (400, INTERNAL),
 * unknown :path (200, UNIMPLEMENTED "unknown service S" / "unknown method M for service S"),
 * grpc-encoding other than identity (200, UNIMPLEMENTED). These answers are trailers-only
 * responses and start no call.
 *
 * Length-prefixed messages (1 byte flags, 4 bytes big-endian length, body) are parsed as
 * DATA arrives: a message inside one DATA frame is handed up in place; only one spanning
 * frames is copied into a buffer of its declared size (<= max_recv_msg_size; the sum over
 * the connection <= GRPC_RECV_BUFFERED_MAX). An oversized length ends the call as soon as
 * the prefix is seen, before any of its body is stored (RESOURCE_EXHAUSTED, "grpc: received
 * message larger than max (N vs. M)"). A set compressed flag ends it as grpc-go does:
 * INTERNAL "grpc: compressed flag set with identity or empty encoding" (the only encoding
 * we accept is identity, so that is the case that applies). A stream that ends inside a
 * message ends the call with INTERNAL "unexpected EOF".
 *
 * Deadlines: grpc-timeout (1-8 digits, unit H M S m u n) becomes now + timeout, checked by
 * grpc_conn_tick: DEADLINE_EXCEEDED "context deadline exceeded".
 */
#include "net/grpc.h"

#include <errno.h>
#include <malloc.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "net/h2.h"

enum {
	GRPC_PREFIX = 5,
	GRPC_MESSAGE_TEXT_MAX = 8192, /* percent-encoded grpc-message bytes we send */
};
#define GRPC_RECV_BUFFERED_MAX ((size_t)64 << 20) /* message reassembly bytes per connection */
/* The largest response message: grpc-go's server default, which etcd sets explicitly
 * (grpc.MaxSendMsgSize(math.MaxInt32)). */
#define GRPC_MAX_SEND_MSG_BYTES ((uint64_t)0x7fffffff)
/* Connection frees per thread at least between two malloc_trim calls (a trim walks the
 * free chunks of every arena: far too slow for every close). */
#define GRPC_TRIM_MIN 64

struct grpc_call {
	uint32_t stream_id; /* 0: slot has no stream */
	int method;
	bool started; /* on_call_start was called */
	bool ended;   /* on_call_end was called (or the stream never became a call) */
	bool headers_sent;
	bool has_deadline;
	uint8_t prefix_have;
	uint8_t prefix[GRPC_PREFIX];
	uint32_t msg_len, msg_have;
	uint8_t *msg_buf; /* only while a message spans DATA frames */
	uint64_t deadline_ms;
	void *user; /* the caller's, grpc_call_set_user */
	bool hold_asked; /* grpc_call_hold during on_message */
	size_t held;     /* message bytes not yet given back to the windows */
};

struct grpc_conn {
	struct h2_conn *h2;
	struct grpc_conn_config cfg;
	struct grpc_server_callbacks cb;
	void *user;
	struct grpc_call *calls; /* parallel to h2's stream table, grown with it */
	uint32_t calls_cap;
	uint32_t calls_hw; /* slots ever used */
	uint32_t n_deadlines;
	size_t recv_buffered;
	uint64_t now_ms;
	size_t hdrs_max;
	size_t held_now; /* bytes held by the messages of the DATA frame being handed up */
};

/* The request headers handed to on_call_start: one array per thread (calls start
 * synchronously inside grpc_conn_recv), so an idle connection holds none. */
/* Connections live on this thread, and freed since its heap was last trimmed. */
static __thread uint32_t grpc_live, grpc_frees_since_trim;
static __thread struct grpc_header *grpc_hdrs;
static __thread size_t grpc_hdrs_max;
static pthread_key_t grpc_tls_key;
static pthread_once_t grpc_tls_once = PTHREAD_ONCE_INIT;

/* Frees the thread's header array when the thread exits. */
static void grpc_tls_free(void *unused)
{
	free(grpc_hdrs);
	grpc_hdrs = NULL;
	grpc_hdrs_max = 0;
}

static void grpc_tls_key_make(void)
{
	if (pthread_key_create(&grpc_tls_key, grpc_tls_free))
		log_fatal("grpc: pthread_key_create");
}

/* A response message pulled under flow control: the 5-byte prefix, then `len` bytes from
 * the caller's source. Allocated per pulled message (large answers only). */
struct grpc_pull {
	uint8_t prefix[GRPC_PREFIX];
	uint8_t prefix_sent;
	uint64_t len, sent;
	struct grpc_msg_source src;
};

void grpc_conn_config_default(struct grpc_conn_config *c)
{
	/* etcd/grpc-go advertise effectively unlimited streams; we bound the table: 4096 is
	 * far above what kube-apiserver multiplexes on one connection. */
	c->max_concurrent_streams = 4096;
	c->initial_window_size = 1 << 20;   /* 1 MiB per stream */
	c->conn_window_size = 16 << 20;     /* 16 MiB per connection */
	c->max_frame_size = 16384;          /* the HTTP/2 default; what clients send anyway */
	c->max_header_list_size = 16 << 10; /* 16 KiB */
	/* etcd's --max-request-bytes default (1.5 MiB) plus grpc-go's 512 KiB slack */
	c->max_recv_msg_size = (3 << 19) + (512 << 10);
	c->max_output_bytes = (size_t)64 << 20;
}

/* ---- helpers ---- */

static bool str_eq(const uint8_t *a, size_t alen, const char *lit)
{
	size_t l = strlen(lit);
	return alen == l && memcmp(a, lit, l) == 0;
}

static struct grpc_call *call_find(const struct grpc_conn *c, uint32_t stream_id)
{
	int slot = h2_stream_slot(c->h2, stream_id);
	if (slot < 0)
		return NULL;
	struct grpc_call *call = &c->calls[slot];
	return call->stream_id == stream_id ? call : NULL;
}

static bool call_live(const struct grpc_call *call, uint32_t sid)
{
	return call->stream_id == sid && call->started && !call->ended;
}

/* Releases what a call holds for receiving; marks it ended. Does not call on_call_end. */
static void call_release(struct grpc_conn *c, struct grpc_call *call)
{
	call->ended = true;
	if (call->held) { /* an ended call's requests are done with */
		h2_conn_consume(c->h2, call->stream_id, call->held);
		call->held = 0;
	}
	if (call->has_deadline) {
		call->has_deadline = false;
		c->n_deadlines--;
	}
	if (call->msg_buf) {
		c->recv_buffered -= call->msg_len;
		free(call->msg_buf);
		call->msg_buf = NULL;
	}
	call->prefix_have = 0;
	call->msg_len = call->msg_have = 0;
}

/* Percent-encodes per the gRPC spec: bytes outside 0x20..0x7e, and '%', become %XX. */
static size_t percent_encode(char *out, size_t cap, const char *msg)
{
	static const char hex[] = "0123456789ABCDEF";
	size_t n = 0;
	for (const unsigned char *p = (const unsigned char *)msg; *p; p++) {
		if (*p >= 0x20 && *p <= 0x7e && *p != '%') {
			if (n + 1 > cap)
				break;
			out[n++] = (char)*p;
		} else {
			if (n + 3 > cap)
				break;
			out[n++] = '%';
			out[n++] = hex[*p >> 4];
			out[n++] = hex[*p & 15];
		}
	}
	return n;
}

static struct h2_field field(const char *name, const char *value, size_t value_len)
{
	struct h2_field f = {
		.name = (const uint8_t *)name,
		.name_len = (uint32_t)strlen(name),
		.value = (const uint8_t *)value,
		.value_len = (uint32_t)value_len,
	};
	return f;
}

/* Queues the status block: trailers, or a full trailers-only response when no headers
 * went out. `http_status` only matters for the latter. */
static int send_status_block(struct grpc_conn *c, uint32_t sid, bool trailers_only, const char *http_status,
			     enum grpc_code code, const char *message)
{
	char code_txt[4];
	char msg_txt[GRPC_MESSAGE_TEXT_MAX];
	struct h2_field f[4];
	size_t n = 0;
	unsigned v = (unsigned)code % 100, clen = 0;
	if (v >= 10)
		code_txt[clen++] = (char)('0' + v / 10);
	code_txt[clen++] = (char)('0' + v % 10);
	if (trailers_only) {
		f[n++] = field(":status", http_status, strlen(http_status));
		f[n++] = field("content-type", "application/grpc", 16);
	}
	f[n++] = field("grpc-status", code_txt, (size_t)clen);
	if (message && *message)
		f[n++] = field("grpc-message", msg_txt, percent_encode(msg_txt, sizeof(msg_txt), message));
	return h2_submit_headers(c->h2, sid, f, n, true);
}

/* Ends a call with a status and reports on_call_end. */
static void call_finish(struct grpc_conn *c, struct grpc_call *call, enum grpc_code code, const char *message)
{
	uint32_t sid = call->stream_id;
	int method = call->method;
	bool trailers_only = !call->headers_sent;
	void *cu = call->user;
	call->user = NULL;
	call_release(c, call);
	/* may close the stream at once (on_close then finds the call ended) */
	send_status_block(c, sid, trailers_only, "200", code, message);
	if (c->cb.on_call_end)
		c->cb.on_call_end(c->user, sid, method, cu);
}

/* ---- grpc-timeout ---- */

/* Parses "1*8DIGIT unit" into milliseconds (rounded up). Returns 0 or -EINVAL with the
 * grpc-go description of the problem in err. */
static int timeout_parse(const uint8_t *v, size_t len, uint64_t *ms, char *err, size_t err_cap)
{
	char quoted[32];
	snprintf(quoted, sizeof(quoted), "%.*s", (int)(len < 20 ? len : 20), (const char *)v);
	if (len < 2) {
		snprintf(err, err_cap, "transport: timeout string is too short: \"%s\"", quoted);
		return -EINVAL;
	}
	if (len > 9) {
		snprintf(err, err_cap, "transport: timeout string is too long: \"%s\"", quoted);
		return -EINVAL;
	}
	uint64_t unit_ns;
	switch (v[len - 1]) {
	case 'H': unit_ns = 3600ull * 1000000000ull; break;
	case 'M': unit_ns = 60ull * 1000000000ull; break;
	case 'S': unit_ns = 1000000000ull; break;
	case 'm': unit_ns = 1000000ull; break;
	case 'u': unit_ns = 1000ull; break;
	case 'n': unit_ns = 1ull; break;
	default:
		snprintf(err, err_cap, "transport: timeout unit is not recognized: \"%s\"", quoted);
		return -EINVAL;
	}
	uint64_t t = 0;
	for (size_t i = 0; i + 1 < len; i++) {
		if (v[i] < '0' || v[i] > '9') {
			snprintf(err, err_cap, "strconv.ParseInt: parsing \"%.*s\": invalid syntax", (int)(len - 1),
				 (const char *)v);
			return -EINVAL;
		}
		t = t * 10 + (v[i] - '0');
	}
	/* at most 99999999 hours: fits easily in 64 bits of milliseconds */
	if (unit_ns >= 1000000ull)
		*ms = t * (unit_ns / 1000000ull);
	else
		*ms = (t * unit_ns + 999999ull) / 1000000ull;
	return 0;
}

/* ---- h2 callbacks ---- */

static void early_abort(struct grpc_conn *c, uint32_t sid, const char *http_status, enum grpc_code code,
			const char *message)
{
	send_status_block(c, sid, true, http_status, code, message);
}

static void on_request(void *user, uint32_t sid, uint32_t slot, const struct h2_request *rq)
{
	struct grpc_conn *c = user;
	if (slot >= c->calls_cap) {
		uint32_t cap = h2_conn_slots_cap(c->h2);
		struct grpc_call *n = realloc(c->calls, (size_t)cap * sizeof(*n));
		if (!n)
			log_fatal("grpc: out of memory");
		memset(n + c->calls_cap, 0, (size_t)(cap - c->calls_cap) * sizeof(*n));
		c->calls = n;
		c->calls_cap = cap;
	}
	struct grpc_call *call = &c->calls[slot];
	memset(call, 0, sizeof(*call));
	call->stream_id = sid;
	call->ended = true; /* until it starts */
	if (slot + 1 > c->calls_hw)
		c->calls_hw = slot + 1;
	char msg[512];

	if (rq->too_large) {
		snprintf(msg, sizeof(msg), "header list size exceeds the server's limit (%u bytes)",
			 c->cfg.max_header_list_size);
		early_abort(c, sid, "431", GRPC_RESOURCE_EXHAUSTED, msg);
		return;
	}
	if (!str_eq(rq->method.value, rq->method.value_len, "POST")) {
		snprintf(msg, sizeof(msg), "Received a HEADERS frame with :method \"%.*s\" which should be POST",
			 (int)(rq->method.value_len < 64 ? rq->method.value_len : 64), (const char *)rq->method.value);
		early_abort(c, sid, "405", GRPC_INTERNAL, msg);
		return;
	}
	const struct h2_field *ct = NULL, *timeout = NULL, *enc = NULL;
	for (size_t i = 0; i < rq->n_fields; i++) {
		const struct h2_field *f = &rq->fields[i];
		if (str_eq(f->name, f->name_len, "content-type"))
			ct = f;
		else if (str_eq(f->name, f->name_len, "grpc-timeout"))
			timeout = f;
		else if (str_eq(f->name, f->name_len, "grpc-encoding"))
			enc = f;
	}
	bool ct_ok = ct && ct->value_len >= 16 && memcmp(ct->value, "application/grpc", 16) == 0 &&
		     (ct->value_len == 16 || ct->value[16] == '+' || ct->value[16] == ';');
	if (!ct_ok) {
		snprintf(msg, sizeof(msg), "invalid gRPC request content-type \"%.*s\"",
			 ct ? (int)(ct->value_len < 128 ? ct->value_len : 128) : 0, ct ? (const char *)ct->value : "");
		early_abort(c, sid, "415", GRPC_INVALID_ARGUMENT, msg);
		return;
	}
	uint64_t timeout_ms = 0;
	if (timeout) {
		char err[200];
		if (timeout_parse(timeout->value, timeout->value_len, &timeout_ms, err, sizeof(err)) < 0) {
			snprintf(msg, sizeof(msg), "malformed grpc-timeout: %s", err);
			early_abort(c, sid, "400", GRPC_INTERNAL, msg);
			return;
		}
	}

	/* :path is "/service/method"; the route callback may be handed any bytes */
	char path[256];
	size_t plen = rq->path.value_len;
	int method = -1;
	if (plen < sizeof(path)) {
		memcpy(path, rq->path.value, plen);
		path[plen] = 0;
		if (c->cb.route)
			method = c->cb.route(c->user, path, plen);
	}
	if (method < 0) {
		const char *sm = (const char *)rq->path.value;
		size_t smlen = plen;
		if (smlen && sm[0] == '/') {
			sm++;
			smlen--;
		}
		const char *slash = smlen ? memrchr(sm, '/', smlen) : NULL;
		int shown = smlen < 200 ? (int)smlen : 200;
		if (!slash) {
			snprintf(msg, sizeof(msg), "malformed method name: \"%.*s\"",
				 (int)(plen < 200 ? plen : 200), (const char *)rq->path.value);
		} else {
			int svc_len = (int)(slash - sm), m_len = shown - svc_len - 1;
			if (m_len < 0)
				m_len = 0;
			if (method == -2)
				snprintf(msg, sizeof(msg), "unknown method %.*s for service %.*s", m_len, slash + 1,
					 svc_len < 200 ? svc_len : 200, sm);
			else
				snprintf(msg, sizeof(msg), "unknown service %.*s", svc_len < 200 ? svc_len : 200, sm);
		}
		early_abort(c, sid, "200", GRPC_UNIMPLEMENTED, msg);
		return;
	}
	if (enc && !str_eq(enc->value, enc->value_len, "identity")) {
		snprintf(msg, sizeof(msg), "grpc: Decompressor is not installed for grpc-encoding \"%.*s\"",
			 (int)(enc->value_len < 64 ? enc->value_len : 64), (const char *)enc->value);
		early_abort(c, sid, "200", GRPC_UNIMPLEMENTED, msg);
		return;
	}

	call->method = method;
	call->started = true;
	call->ended = false;
	if (timeout) {
		call->has_deadline = true;
		call->deadline_ms = c->now_ms + timeout_ms;
		c->n_deadlines++;
	}
	if (grpc_hdrs_max < c->hdrs_max) {
		free(grpc_hdrs);
		if (!(grpc_hdrs = malloc(c->hdrs_max * sizeof(*grpc_hdrs))))
			log_fatal("grpc: out of memory");
		grpc_hdrs_max = c->hdrs_max;
		pthread_once(&grpc_tls_once, grpc_tls_key_make);
		pthread_setspecific(grpc_tls_key, grpc_hdrs);
	}
	size_t n = rq->n_fields < c->hdrs_max ? rq->n_fields : c->hdrs_max;
	for (size_t i = 0; i < n; i++) {
		grpc_hdrs[i].name = rq->fields[i].name;
		grpc_hdrs[i].name_len = rq->fields[i].name_len;
		grpc_hdrs[i].value = rq->fields[i].value;
		grpc_hdrs[i].value_len = rq->fields[i].value_len;
	}
	if (c->cb.on_call_start)
		c->cb.on_call_start(c->user, sid, method, grpc_hdrs, n);
	if (rq->end_stream && call_live(call, sid) && c->cb.on_half_close)
		c->cb.on_half_close(c->user, sid, method);
}

/* Hands up one complete message; false if the call ended meanwhile. */
/* Hands up one complete message; false if the call ended meanwhile. A message delivered
 * in place (`in_place`) that the callback held (grpc_call_hold) keeps its bytes counted
 * against the windows: they are added to the call's `held` and to c->held_now. */
static bool deliver(struct grpc_conn *c, struct grpc_call *call, uint32_t sid, const uint8_t *msg, size_t len,
		    bool in_place)
{
	call->hold_asked = false;
	if (c->cb.on_message)
		c->cb.on_message(c->user, sid, call->method, msg, len);
	bool live = call_live(call, sid);
	if (call->hold_asked && live && in_place) {
		call->held += len;
		c->held_now += len;
	}
	call->hold_asked = false;
	return live;
}

/* Checks a complete prefix; false (call finished) if the message is refused. */
static bool prefix_check(struct grpc_conn *c, struct grpc_call *call)
{
	uint8_t flags = call->prefix[0];
	uint32_t len = (uint32_t)call->prefix[1] << 24 | (uint32_t)call->prefix[2] << 16 |
		       (uint32_t)call->prefix[3] << 8 | call->prefix[4];
	char msg[128];
	if (flags == 1) {
		call_finish(c, call, GRPC_INTERNAL, "grpc: compressed flag set with identity or empty encoding");
		return false;
	}
	if (flags > 1) {
		snprintf(msg, sizeof(msg), "grpc: received unexpected payload format %u", flags);
		call_finish(c, call, GRPC_INTERNAL, msg);
		return false;
	}
	if (len > c->cfg.max_recv_msg_size) {
		snprintf(msg, sizeof(msg), "grpc: received message larger than max (%u vs. %u)", len,
			 c->cfg.max_recv_msg_size);
		call_finish(c, call, GRPC_RESOURCE_EXHAUSTED, msg);
		return false;
	}
	call->msg_len = len;
	call->msg_have = 0;
	return true;
}

static void on_data_msgs(struct grpc_conn *c, uint32_t sid, uint32_t slot, const uint8_t *data, size_t len,
			 bool end_stream);

/* Every byte handed up is consumed once on_data returns — the bytes of a message spanning
 * frames as they are copied (a message may be larger than a window), the rest once
 * processed — except the bytes of messages the service held: those reopen the windows
 * at grpc_call_release (or when the call ends). */
static void on_data(void *user, uint32_t sid, uint32_t slot, const uint8_t *data, size_t len, bool end_stream)
{
	struct grpc_conn *c = user;
	c->held_now = 0;
	on_data_msgs(c, sid, slot, data, len, end_stream);
	h2_conn_consume(c->h2, sid, len - c->held_now);
}

static void on_data_msgs(struct grpc_conn *c, uint32_t sid, uint32_t slot, const uint8_t *data, size_t len,
			 bool end_stream)
{
	struct grpc_call *call = &c->calls[slot];
	if (!call_live(call, sid))
		return;
	while (len > 0) {
		if (call->prefix_have < GRPC_PREFIX) {
			size_t k = GRPC_PREFIX - call->prefix_have;
			if (k > len)
				k = len;
			memcpy(call->prefix + call->prefix_have, data, k);
			call->prefix_have += (uint8_t)k;
			data += k;
			len -= k;
			if (call->prefix_have < GRPC_PREFIX)
				break;
			if (!prefix_check(c, call))
				return;
			if (len >= call->msg_len) {
				/* whole message in this frame: in place */
				size_t m = call->msg_len;
				call->prefix_have = 0;
				if (!deliver(c, call, sid, data, m, true))
					return;
				data += m;
				len -= m;
				continue;
			}
			if (c->recv_buffered + call->msg_len > GRPC_RECV_BUFFERED_MAX) {
				call_finish(c, call, GRPC_RESOURCE_EXHAUSTED,
					    "grpc: server message buffers for this connection are full");
				return;
			}
			call->msg_buf = malloc(call->msg_len);
			if (!call->msg_buf)
				log_fatal("grpc: out of memory");
			c->recv_buffered += call->msg_len;
		}
		size_t k = call->msg_len - call->msg_have;
		if (k > len)
			k = len;
		memcpy(call->msg_buf + call->msg_have, data, k);
		call->msg_have += (uint32_t)k;
		data += k;
		len -= k;
		if (call->msg_have == call->msg_len) {
			uint8_t *buf = call->msg_buf;
			size_t m = call->msg_len;
			call->msg_buf = NULL;
			c->recv_buffered -= m;
			call->prefix_have = 0;
			bool live = deliver(c, call, sid, buf, m, false);
			free(buf);
			if (!live)
				return;
		}
	}
	if (end_stream) {
		if (call->prefix_have > 0) {
			/* the stream ended inside a message */
			call_finish(c, call, GRPC_INTERNAL, "unexpected EOF");
			return;
		}
		if (c->cb.on_half_close)
			c->cb.on_half_close(c->user, sid, call->method);
	}
}

static void on_close(void *user, uint32_t sid, uint32_t slot, uint32_t error)
{
	struct grpc_conn *c = user;
	struct grpc_call *call = &c->calls[slot];
	if (call->stream_id != sid)
		return;
	bool report = call->started && !call->ended;
	int method = call->method;
	void *cu = call->user;
	call->user = NULL;
	call_release(c, call);
	call->stream_id = 0;
	if (report && c->cb.on_call_end)
		c->cb.on_call_end(c->user, sid, method, cu);
}

/* ---- public API ---- */

struct grpc_conn *grpc_conn_new(const struct grpc_conn_config *cfg, const struct grpc_server_callbacks *cb,
				void *user)
{
	struct grpc_conn *c = calloc(1, sizeof(*c));
	if (!c)
		return NULL;
	if (cfg)
		c->cfg = *cfg;
	else
		grpc_conn_config_default(&c->cfg);
	if (c->cfg.max_concurrent_streams == 0)
		c->cfg.max_concurrent_streams = 1;
	if (cb)
		c->cb = *cb;
	c->user = user;
	c->hdrs_max = c->cfg.max_header_list_size / 32 + 1;
	struct h2_config hc = {
		.streams_max = c->cfg.max_concurrent_streams,
		.initial_window_size = c->cfg.initial_window_size,
		.conn_window_size = c->cfg.conn_window_size,
		.max_frame_size = c->cfg.max_frame_size,
		.max_header_list_size = c->cfg.max_header_list_size,
		.max_output_bytes = c->cfg.max_output_bytes,
		.window_by_consume = true,
	};
	static const struct h2_callbacks h2cb = {
		.on_request = on_request,
		.on_data = on_data,
		.on_close = on_close,
	};
	c->h2 = h2_conn_new(&hc, &h2cb, c);
	if (!c->h2) {
		free(c);
		return NULL;
	}
	grpc_live++;
	return c;
}


void grpc_conn_free(struct grpc_conn *c)
{
	if (!c)
		return;
	h2_conn_free(c->h2); /* on_close for every stream: live calls get on_call_end */
	free(c->calls);
	free(c);
	/* A connection's memory is many small chunks among longer-lived ones, so glibc keeps
	 * the freed pages (it trims only the top of a heap): after a wave of closes RSS stayed
	 * where the peak left it. Give free pages back once a quarter of the thread's
	 * connections (and at least GRPC_TRIM_MIN) went since the last time: a few trims
	 * per wave of closes, however large, and none on a steady few connections. */
	grpc_live--;
	if (++grpc_frees_since_trim >= GRPC_TRIM_MIN && grpc_frees_since_trim >= grpc_live / 4) {
		grpc_frees_since_trim = 0;
		malloc_trim(0);
	}
}

int grpc_conn_recv(struct grpc_conn *c, const uint8_t *data, size_t len)
{
	return h2_conn_recv(c->h2, data, len);
}

size_t grpc_conn_output(struct grpc_conn *c, struct iovec *iov, size_t iov_max)
{
	return h2_conn_output(c->h2, iov, iov_max);
}

void grpc_conn_output_consumed(struct grpc_conn *c, size_t bytes)
{
	h2_conn_output_consumed(c->h2, bytes);
}

bool grpc_conn_has_output(const struct grpc_conn *c)
{
	return h2_conn_has_output(c->h2);
}

bool grpc_conn_done(const struct grpc_conn *c)
{
	return h2_conn_done(c->h2);
}

static void prefix_put(uint8_t *p, uint64_t len)
{
	p[0] = 0;
	p[1] = (uint8_t)(len >> 24);
	p[2] = (uint8_t)(len >> 16);
	p[3] = (uint8_t)(len >> 8);
	p[4] = (uint8_t)len;
}

/* Response headers before the first message. */
static int headers_once(struct grpc_conn *c, struct grpc_call *call, uint32_t stream_id)
{
	if (call->headers_sent)
		return 0;
	struct h2_field f[2] = {field(":status", "200", 3), field("content-type", "application/grpc", 16)};
	int r = h2_submit_headers(c->h2, stream_id, f, 2, false);
	if (r < 0)
		return r == -ENOBUFS ? -ENOBUFS : -ENOENT;
	call->headers_sent = true;
	return 0;
}

/* grpc-go's check of a message against the server's max send size (etcd sets it to
 * math.MaxInt32): the call ends with its RESOURCE_EXHAUSTED text. */
static bool send_size_ok(struct grpc_conn *c, struct grpc_call *call, uint64_t len)
{
	char msg[128];
	if (len <= GRPC_MAX_SEND_MSG_BYTES)
		return true;
	snprintf(msg, sizeof(msg), "grpc: trying to send message larger than max (%llu vs. %llu)",
		 (unsigned long long)len, (unsigned long long)GRPC_MAX_SEND_MSG_BYTES);
	call_finish(c, call, GRPC_RESOURCE_EXHAUSTED, msg);
	return false;
}

int grpc_send_message(struct grpc_conn *c, uint32_t stream_id, const uint8_t *msg, size_t len)
{
	struct grpc_call *call = call_find(c, stream_id);
	if (!call || !call_live(call, stream_id))
		return -ENOENT;
	if (!send_size_ok(c, call, len))
		return -EMSGSIZE;
	int r = headers_once(c, call, stream_id);
	if (r < 0)
		return r;
	uint8_t prefix[GRPC_PREFIX];
	prefix_put(prefix, len);
	return h2_submit_data(c->h2, stream_id, prefix, GRPC_PREFIX, msg, len);
}

static ssize_t pull_read(void *arg, uint8_t *buf, size_t cap, bool *eof)
{
	struct grpc_pull *p = arg;
	size_t n = 0;
	if (p->len == GRPC_SOURCE_FRAMED) {
		ssize_t k = p->src.read(p->src.arg, buf, cap);
		if (k < 0 || (size_t)k > cap)
			return -H2_REFUSED_STREAM;
		*eof = (size_t)k < cap;
		return k;
	}
	if (p->prefix_sent < GRPC_PREFIX) {
		size_t k = GRPC_PREFIX - p->prefix_sent;
		if (k > cap)
			k = cap;
		memcpy(buf, p->prefix + p->prefix_sent, k);
		p->prefix_sent += (uint8_t)k;
		n = k;
	}
	uint64_t left = p->len - p->sent;
	if (n < cap && left > 0) {
		size_t want = cap - n < left ? cap - n : (size_t)left;
		ssize_t k = p->src.read(p->src.arg, buf + n, want);
		if (k < 0 || (size_t)k > want)
			return -H2_REFUSED_STREAM;
		p->sent += (uint64_t)k;
		n += (size_t)k;
		if (k == 0 && n == 0)
			return -H2_INTERNAL_ERROR; /* a source must give bytes while it has some */
	}
	*eof = p->prefix_sent == GRPC_PREFIX && p->sent == p->len;
	return (ssize_t)n;
}

static void pull_free(void *arg)
{
	struct grpc_pull *p = arg;
	if (p->src.free)
		p->src.free(p->src.arg);
	free(p);
}

int grpc_send_message_source(struct grpc_conn *c, uint32_t stream_id, uint64_t len,
			     const struct grpc_msg_source *src)
{
	struct grpc_call *call = call_find(c, stream_id);
	int r = -ENOENT;
	if (!call || !call_live(call, stream_id))
		goto fail;
	if (len != GRPC_SOURCE_FRAMED && !send_size_ok(c, call, len)) {
		r = -EMSGSIZE;
		goto fail;
	}
	if ((r = headers_once(c, call, stream_id)) < 0)
		goto fail;
	struct grpc_pull *p = malloc(sizeof(*p));
	if (!p)
		log_fatal("grpc: out of memory");
	prefix_put(p->prefix, len);
	p->prefix_sent = 0;
	p->len = len;
	p->sent = 0;
	p->src = *src;
	struct h2_data_source hs = {.read = pull_read, .free = pull_free, .arg = p};
	r = h2_submit_source(c->h2, stream_id, &hs); /* -ENOENT: frees p and src */
	if (r == -EBUSY) {
		free(p);
		goto fail;
	}
	return r;
fail:
	if (src->free)
		src->free(src->arg);
	return r;
}

int grpc_send_status(struct grpc_conn *c, uint32_t stream_id, enum grpc_code code, const char *message)
{
	struct grpc_call *call = call_find(c, stream_id);
	if (!call || !call_live(call, stream_id))
		return -ENOENT;
	call_finish(c, call, code, message);
	return 0;
}

void grpc_call_hold(struct grpc_conn *c, uint32_t stream_id)
{
	struct grpc_call *call = call_find(c, stream_id);

	if (call && call_live(call, stream_id))
		call->hold_asked = true;
}

void grpc_call_release(struct grpc_conn *c, uint32_t stream_id)
{
	struct grpc_call *call = call_find(c, stream_id);

	if (call && call->held) {
		h2_conn_consume(c->h2, stream_id, call->held);
		call->held = 0;
	}
}

void grpc_call_set_user(struct grpc_conn *c, uint32_t stream_id, void *p)
{
	struct grpc_call *call = call_find(c, stream_id);

	if (call)
		call->user = p;
}

void *grpc_call_user(const struct grpc_conn *c, uint32_t stream_id)
{
	struct grpc_call *call = call_find(c, stream_id);

	return call ? call->user : NULL;
}

size_t grpc_stream_queued_bytes(const struct grpc_conn *c, uint32_t stream_id)
{
	return h2_stream_queued_bytes(c->h2, stream_id);
}

void grpc_conn_set_now(struct grpc_conn *c, uint64_t now_ms)
{
	c->now_ms = now_ms;
}

void grpc_conn_tick(struct grpc_conn *c, uint64_t now_ms)
{
	c->now_ms = now_ms;
	for (uint32_t i = 0; i < c->calls_hw && c->n_deadlines > 0; i++) {
		struct grpc_call *call = &c->calls[i];
		if (call->has_deadline && call_live(call, call->stream_id) && call->deadline_ms <= now_ms)
			call_finish(c, call, GRPC_DEADLINE_EXCEEDED, "context deadline exceeded");
	}
}

void grpc_conn_goaway(struct grpc_conn *c)
{
	h2_conn_goaway(c->h2);
}
