/* A gRPC server connection over HTTP/2, sans-I/O: bytes in, bytes out, callbacks up.
 *
 * The caller (a reactor) feeds every received byte to grpc_conn_recv() and sends whatever
 * grpc_conn_output() returns; the services answer calls with grpc_send_message() and
 * grpc_send_status(). Nothing here does I/O, reads a clock, or knows etcd: method paths
 * are mapped to numbers by the caller's route callback.
 *
 * Calls are named by their HTTP/2 stream id, which is never reused on a connection, so a
 * late answer to a call that has ended is detected (-ENOENT) and dropped safely.
 *
 * Output buffers: the iovecs from grpc_conn_output() stay valid and unchanged until the
 * caller reports them sent with grpc_conn_output_consumed(); output produced meanwhile is
 * appended behind them. So a send may be in flight while callbacks run.
 *
 * Limits (each with a default in grpc_conn_config_default): concurrent streams, frame
 * size, header list size, receive message size, bytes queued for output per connection.
 * Exceeding a limit is a stream or connection error, never growth.
 */
#ifndef UETCD_NET_GRPC_H
#define UETCD_NET_GRPC_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <sys/uio.h>

struct grpc_conn;

/* gRPC status codes. */
enum grpc_code {
	GRPC_OK = 0,
	GRPC_CANCELLED = 1,
	GRPC_UNKNOWN = 2,
	GRPC_INVALID_ARGUMENT = 3,
	GRPC_DEADLINE_EXCEEDED = 4,
	GRPC_NOT_FOUND = 5,
	GRPC_ALREADY_EXISTS = 6,
	GRPC_PERMISSION_DENIED = 7,
	GRPC_RESOURCE_EXHAUSTED = 8,
	GRPC_FAILED_PRECONDITION = 9,
	GRPC_ABORTED = 10,
	GRPC_OUT_OF_RANGE = 11,
	GRPC_UNIMPLEMENTED = 12,
	GRPC_INTERNAL = 13,
	GRPC_UNAVAILABLE = 14,
	GRPC_DATA_LOSS = 15,
	GRPC_UNAUTHENTICATED = 16,
};

struct grpc_conn_config {
	uint32_t max_concurrent_streams; /* SETTINGS_MAX_CONCURRENT_STREAMS we advertise */
	uint32_t initial_window_size;    /* our per-stream receive window */
	uint32_t conn_window_size;       /* our connection receive window */
	uint32_t max_frame_size;         /* SETTINGS_MAX_FRAME_SIZE we accept */
	uint32_t max_header_list_size;   /* SETTINGS_MAX_HEADER_LIST_SIZE */
	uint32_t max_recv_msg_size;      /* larger request messages: RESOURCE_EXHAUSTED */
	size_t max_output_bytes;         /* copied (pushed) response bytes queued per connection */
};

void grpc_conn_config_default(struct grpc_conn_config *c);

/* One request header, valid only during the callback. Pseudo-headers are not included. */
struct grpc_header {
	const uint8_t *name, *value;
	size_t name_len, value_len;
};

struct grpc_server_callbacks {
	/* Maps a :path such as "/etcdserverpb.KV/Range" (NUL-terminated, path_len bytes) to a
	 * method number >= 0. Unknown paths end with UNIMPLEMENTED and grpc-go's text: return
	 * -1 for "unknown service etcdserverpb.Foo", or -2 when the service is known, for
	 * "unknown method Bar for service etcdserverpb.KV". A path without a '/' after the
	 * service gets "malformed method name" whatever is returned; a path of 256 bytes or
	 * more is unknown without asking. */
	int (*route)(void *user, const char *path, size_t path_len);
	/* A call began: its request headers (for metadata such as "token"). */
	void (*on_call_start)(void *user, uint32_t stream_id, int method, const struct grpc_header *hdrs,
			      size_t n_hdrs);
	/* One complete request message; msg is valid only during the call. */
	void (*on_message)(void *user, uint32_t stream_id, int method, const uint8_t *msg, size_t len);
	/* The client closed its side of the call (END_STREAM). */
	void (*on_half_close)(void *user, uint32_t stream_id, int method);
	/* The call is over — finished by us, reset by the peer, past its deadline, or the
	 * connection is going away — and its stream id is dead from now on. Called exactly once
	 * for every call that had on_call_start. It may run inside grpc_conn_recv,
	 * grpc_send_status (after the status is queued), grpc_conn_tick, grpc_conn_free, and
	 * inside grpc_send_message when that fails with -ENOBUFS or -EMSGSIZE (the sending
	 * call ends). */
	void (*on_call_end)(void *user, uint32_t stream_id, int method, void *call_user);
};

/* Callbacks may call grpc_send_message / grpc_send_status / grpc_stream_queued_bytes /
 * grpc_conn_goaway for any call, but never grpc_conn_recv, grpc_conn_tick or
 * grpc_conn_free. */
struct grpc_conn *grpc_conn_new(const struct grpc_conn_config *cfg, const struct grpc_server_callbacks *cb,
				void *user);
/* Ends every live call (on_call_end) and frees the connection. */
void grpc_conn_free(struct grpc_conn *c);

/* Feeds received bytes (any split). Returns 0, or a negative value when the connection must
 * be closed once the output (a GOAWAY, if one was due) has been sent. */
int grpc_conn_recv(struct grpc_conn *c, const uint8_t *data, size_t len);

/* Fills up to iov_max iovecs with the output waiting to be sent; returns their number. */
size_t grpc_conn_output(struct grpc_conn *c, struct iovec *iov, size_t iov_max);
/* Reports that `bytes` from the front of the output were sent. */
void grpc_conn_output_consumed(struct grpc_conn *c, size_t bytes);
/* True when output is waiting. */
bool grpc_conn_has_output(const struct grpc_conn *c);
/* True when the connection has nothing more to say and should be closed after its output. */
bool grpc_conn_done(const struct grpc_conn *c);

/* Sends one response message on a call (response headers go first, automatically),
 * copied in: data beyond the peer's flow-control windows waits inside, in order. Returns
 * 0, -ENOENT if the call has ended, -EMSGSIZE for len over 2^31-1 (the call was ended with
 * grpc-go's RESOURCE_EXHAUSTED, as below), -EBUSY while a pulled message is going out, or
 * -ENOBUFS if the connection's output limit (max_output_bytes) would be passed: that call
 * alone is reset (on_call_end has run), the connection and its other calls go on. Large
 * answers should use grpc_send_message_source. */
int grpc_send_message(struct grpc_conn *c, uint32_t stream_id, const uint8_t *msg, size_t len);
/* A response message produced as the call's flow-control window allows: `len` bytes in
 * all (known before the first, for the gRPC prefix), pulled from `read` in pieces of at
 * most `cap` bytes. read returns how many bytes it wrote (> 0 while any are left; exactly
 * `len` in total) or a negative value when it cannot go on: the stream is then reset with
 * REFUSED_STREAM, which clients see as UNAVAILABLE and retry. `free` (may be NULL) runs
 * exactly once when the message is done with: sent, or the call reset or its connection
 * gone (also at once when this returns an error). Memory held for the message is the
 * source's own state plus at most a frame in the output. grpc_send_status may follow at
 * once: the trailers wait behind the message. Returns 0, -ENOENT, -EBUSY (a pulled message
 * is still going out on the call) or -EMSGSIZE (len is over 2^31-1, grpc-go's and so
 * etcd's limit: the call was ended with RESOURCE_EXHAUSTED "grpc: trying to send message
 * larger than max (N vs. 2147483647)"). */
struct grpc_msg_source {
	ssize_t (*read)(void *arg, uint8_t *buf, size_t cap);
	void (*free)(void *arg);
	void *arg;
};
/* len GRPC_SOURCE_FRAMED: a server stream of several messages from one source: read
 * writes whole gRPC messages, 5-byte prefixes included, filling `cap` while any bytes are
 * left: fewer than `cap` (0 included) means these were the last (the body then ends with
 * them; trailers follow). */
#define GRPC_SOURCE_FRAMED UINT64_MAX
int grpc_send_message_source(struct grpc_conn *c, uint32_t stream_id, uint64_t len,
			     const struct grpc_msg_source *src);
/* Ends a call with a status: trailers after any queued messages, or a trailers-only
 * response if nothing was sent. `message` may be NULL; it is percent-encoded. Then
 * on_call_end is called. Returns 0 or -ENOENT. */
int grpc_send_status(struct grpc_conn *c, uint32_t stream_id, enum grpc_code code, const char *message);
/* Flow control as backpressure: a request's bytes reopen the peer's windows (connection
 * and stream) once on_message returns. Called inside on_message, grpc_call_hold keeps that
 * message's bytes counted until grpc_call_release (e.g. when a write the sequencer is
 * working on is answered) or the end of the call: a client pipelining requests then
 * stops at a window's worth of unprocessed ones. (A message that spans DATA frames is
 * given back as it arrives: it may be larger than a window.) */
void grpc_call_hold(struct grpc_conn *c, uint32_t stream_id);
void grpc_call_release(struct grpc_conn *c, uint32_t stream_id);
/* A pointer the caller keeps with a live call (NULL until set); on_call_end hands it back
 * (call_user) for the caller to free. */
void grpc_call_set_user(struct grpc_conn *c, uint32_t stream_id, void *p);
void *grpc_call_user(const struct grpc_conn *c, uint32_t stream_id);
/* Bytes queued on a call and not yet handed to the output (waiting for its window). */
size_t grpc_stream_queued_bytes(const struct grpc_conn *c, uint32_t stream_id);

/* Call deadlines from grpc-timeout: the caller passes a monotonic clock in milliseconds at
 * least every few hundred ms; calls past their deadline end with DEADLINE_EXCEEDED. */
void grpc_conn_tick(struct grpc_conn *c, uint64_t now_ms);
/* Must be called before grpc_conn_recv so deadlines can be computed (monotonic ms). */
void grpc_conn_set_now(struct grpc_conn *c, uint64_t now_ms);

/* Graceful shutdown: GOAWAY(NO_ERROR) with the last stream id seen; live calls go on. */
void grpc_conn_goaway(struct grpc_conn *c);

#endif
