/* HTTP/2 (RFC 9113) server connection engine, sans-I/O — internal to net/, used by grpc.c.
 *
 * One struct h2_conn per TCP connection: bytes in (h2_conn_recv), frames out (a chain of
 * fixed-size blocks read through h2_conn_output). The engine owns framing, the stream state
 * machine, HPACK decoding and flow control in both directions; the layer above sees
 * requests (decoded, validated header lists), DATA payloads and stream closes, and submits
 * header blocks, DATA and resets.
 *
 * Streams live in a table that grows with the streams really open (doubling, up to
 * `streams_max` slots); the slot number is stable for the stream's life so the layer above
 * can keep per-stream state in a parallel array (grown to h2_conn_slots_cap).
 *
 * A response body is either pushed (h2_submit_data: copied in, bounded by max_output_bytes
 * per connection) or pulled (h2_submit_source: the stream asks its source for bytes only as
 * the flow-control windows and the output watermark allow, as nghttp2's data provider, so a
 * body of any size costs about a window of memory). A stream leaves the table (on_close, exactly once) when it was
 * reset either way, when its last frame (END_STREAM) was moved to the output, or when the
 * connection dies or is freed.
 *
 * Callbacks may call back into the submit functions for any stream, including the one
 * being reported; they must not free the connection.
 */
#ifndef UETCD_NET_H2_H
#define UETCD_NET_H2_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

/* Error codes (RFC 9113 section 7). */
enum h2_error {
	H2_NO_ERROR = 0x0,
	H2_PROTOCOL_ERROR = 0x1,
	H2_INTERNAL_ERROR = 0x2,
	H2_FLOW_CONTROL_ERROR = 0x3,
	H2_SETTINGS_TIMEOUT = 0x4,
	H2_STREAM_CLOSED = 0x5,
	H2_FRAME_SIZE_ERROR = 0x6,
	H2_REFUSED_STREAM = 0x7,
	H2_CANCEL = 0x8,
	H2_COMPRESSION_ERROR = 0x9,
	H2_CONNECT_ERROR = 0xa,
	H2_ENHANCE_YOUR_CALM = 0xb,
	H2_INADEQUATE_SECURITY = 0xc,
	H2_HTTP_1_1_REQUIRED = 0xd,
};

struct h2_conn;

struct h2_config {
	uint32_t streams_max;          /* SETTINGS_MAX_CONCURRENT_STREAMS and the table size */
	uint32_t initial_window_size;  /* our per-stream receive window (>= 65535) */
	uint32_t conn_window_size;     /* our connection receive window (>= 65535) */
	uint32_t max_frame_size;       /* largest frame we accept (16384 .. 2^24-1) */
	uint32_t max_header_list_size; /* decoded header list limit (RFC 7541 size accounting) */
	bool window_by_consume;        /* DATA handed up counts against the receive windows
					* until h2_conn_consume (else: at once) */
	size_t max_output_bytes;       /* output + pushed data queued on streams: past it a push
					* resets its stream, control frames kill the connection */
};

/* One header field; valid only during the callback that reports it. */
struct h2_field {
	const uint8_t *name, *value;
	uint32_t name_len, value_len;
};

/* A request's header list, validated per RFC 9113 8.3 (pseudo-headers first, each once,
 * lowercase names, no connection-specific fields). `too_large`: the list exceeded
 * max_header_list_size; only the fields that fitted are reported and the layer above
 * must answer or reset the stream. */
struct h2_request {
	struct h2_field method, scheme, path, authority; /* value_len 0 if absent */
	const struct h2_field *fields;                   /* regular fields, in order */
	size_t n_fields;
	bool end_stream;
	bool too_large;
};

struct h2_callbacks {
	/* A new stream with its request headers. */
	void (*on_request)(void *user, uint32_t stream_id, uint32_t slot, const struct h2_request *rq);
	/* DATA payload (padding removed); `len` may be 0 when only end_stream is reported. */
	void (*on_data)(void *user, uint32_t stream_id, uint32_t slot, const uint8_t *data, size_t len,
			bool end_stream);
	/* The stream left the table. `error` is the RST_STREAM code if it was reset (by either
	 * side or because the connection died: H2_CANCEL), H2_NO_ERROR if it completed. */
	void (*on_close)(void *user, uint32_t stream_id, uint32_t slot, uint32_t error);
};

struct h2_conn *h2_conn_new(const struct h2_config *cfg, const struct h2_callbacks *cb, void *user);
/* Closes every stream (on_close with H2_CANCEL) and frees everything. */
void h2_conn_free(struct h2_conn *c);

/* Feeds bytes. Returns 0, or a negative value once the connection is dead (a GOAWAY may be
 * waiting in the output). */
int h2_conn_recv(struct h2_conn *c, const uint8_t *data, size_t len);

size_t h2_conn_output(struct h2_conn *c, struct iovec *iov, size_t iov_max);
void h2_conn_output_consumed(struct h2_conn *c, size_t bytes);
bool h2_conn_has_output(const struct h2_conn *c);
/* Dead, or shut down (GOAWAY either way) with no stream left. */
bool h2_conn_done(const struct h2_conn *c);

/* Sends a header block on a stream: fields[0..n) are encoded in order (":status" first).
 * end_stream marks trailers / a trailers-only response: the stream then closes once its
 * queued DATA and this block are out (a RST_STREAM(NO_ERROR) follows if the peer had not
 * ended its side, as RFC 9113 8.1 allows). The block must fit one frame of 16384 bytes.
 * Returns 0, -ENOENT (no such stream, or its end was already submitted), -EMSGSIZE
 * (block too large) or -ENOBUFS (output limit: the connection is now dead). */
int h2_submit_headers(struct h2_conn *c, uint32_t stream_id, const struct h2_field *fields, size_t n,
		      bool end_stream);
/* Queues DATA bytes a[0..alen) then b[0..blen) on a stream (gathered, one copy at most
 * twice: into the stream queue when the windows are shut, then into frames). Returns 0,
 * -ENOENT, -EBUSY (a pulled source is active) or -ENOBUFS (the connection's output limit:
 * this stream is reset with INTERNAL_ERROR, on_close runs; the connection lives on). */
int h2_submit_data(struct h2_conn *c, uint32_t stream_id, const void *a, size_t alen, const void *b,
		   size_t blen);
/* A pulled body. `read` writes up to `cap` (> 0) bytes at buf and returns how many
 * (> 0); 0 means "nothing now" (the stream waits for h2_stream_resume); a negative value
 * resets the stream with RST_STREAM(-value) (an h2_error). It sets *eof with its last
 * bytes (or with 0 bytes). `free` (may be NULL) is called exactly once, when the stream no
 * longer needs the source: after eof, or when the stream is reset or the connection goes.
 * read runs inside h2 calls (recv, output_consumed, submit_*, resume) and must not call
 * back into this connection. */
struct h2_data_source {
	ssize_t (*read)(void *arg, uint8_t *buf, size_t cap, bool *eof);
	void (*free)(void *arg);
	void *arg;
};
/* Queues a pulled body behind the stream's pushed DATA. Headers ending the stream
 * (trailers) submitted meanwhile wait behind it. Returns 0; -ENOENT (no such stream, its
 * end was submitted, or the connection is dead: src->free is then called at once) or
 * -EBUSY (a source is already active; src is left alone). */
int h2_submit_source(struct h2_conn *c, uint32_t stream_id, const struct h2_data_source *src);
/* A source that returned 0 has bytes again. 0 or -ENOENT. */
int h2_stream_resume(struct h2_conn *c, uint32_t stream_id);
/* With window_by_consume: `bytes` of DATA payload handed up on the stream (alive or not)
 * have been consumed; the connection's and the stream's windows are reopened by that much
 * (WINDOW_UPDATEs go out in batches of half a window). So a peer can have at most a
 * window of requests waiting to be processed: flow control is backpressure. */
void h2_conn_consume(struct h2_conn *c, uint32_t stream_id, size_t bytes);
/* Slots the layer above's parallel array must have room for (slot < cap). */
uint32_t h2_conn_slots_cap(const struct h2_conn *c);
/* Resets a stream (drops its queued data) and closes it: on_close(error). 0 or -ENOENT. */
int h2_submit_rst(struct h2_conn *c, uint32_t stream_id, uint32_t error);
/* Graceful shutdown: GOAWAY(NO_ERROR, last stream id seen); later new streams are ignored. */
void h2_conn_goaway(struct h2_conn *c);

/* Pushed bytes (and trailers) queued on a stream waiting for window or output room. */
size_t h2_stream_queued_bytes(const struct h2_conn *c, uint32_t stream_id);
/* Slot of a live stream or -1. */
int h2_stream_slot(const struct h2_conn *c, uint32_t stream_id);

#endif
