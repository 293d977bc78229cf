/* Fuzzes gRPC message framing: a valid HTTP/2 connection with two calls open, then the
 * input becomes a sequence of DATA (and a few control) frames carrying fuzzed payloads.
 *
 * Input records: [op][len][len bytes]. op bit 0: stream 1 or 3; bit 1: END_STREAM;
 * bit 2: PADDED (first payload byte is the pad length, clamped to fit); op 0xf0..0xff:
 * WINDOW_UPDATE / RST_STREAM / tick instead of DATA. Messages are echoed; some end the
 * call; the harness checks every call ends exactly once and nothing leaks.
 */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/grpc.h"
#include "net/hpack.h"

static struct grpc_conn *C;
static int started, ended;
static uint64_t now;

static int route(void *u, const char *path, size_t len)
{
	return 0;
}

static void on_start(void *u, uint32_t sid, int method, const struct grpc_header *h, size_t n)
{
	started++;
}

static void on_message(void *u, uint32_t sid, int method, const uint8_t *msg, size_t len)
{
	volatile uint8_t x = len ? msg[0] ^ msg[len - 1] : 0;
	(void)x;
	int e = grpc_send_message(C, sid, msg, len);
	assert(e == 0 || e == -ENOBUFS);
	if (len && msg[0] == 's')
		grpc_send_status(C, sid, GRPC_OK, NULL);
}

static void on_half_close(void *u, uint32_t sid, int method)
{
	grpc_send_status(C, sid, GRPC_ABORTED, "half closed \xff");
}

static void on_end(void *u, uint32_t sid, int method, void *cu)
{
	ended++;
	assert(ended <= started);
}

static const struct grpc_server_callbacks CB = {route, on_start, on_message, on_half_close, on_end};

static size_t frame(uint8_t *out, uint8_t type, uint8_t flags, uint32_t sid, const uint8_t *p, size_t len)
{
	out[0] = (uint8_t)(len >> 16);
	out[1] = (uint8_t)(len >> 8);
	out[2] = (uint8_t)len;
	out[3] = type;
	out[4] = flags;
	out[5] = (uint8_t)(sid >> 24);
	out[6] = (uint8_t)(sid >> 16);
	out[7] = (uint8_t)(sid >> 8);
	out[8] = (uint8_t)sid;
	if (len)
		memcpy(out + 9, p, len);
	return 9 + len;
}

static void drain(void)
{
	struct iovec iov[16];
	size_t n;
	while ((n = grpc_conn_output(C, iov, 16)) > 0) {
		size_t t = 0;
		for (size_t i = 0; i < n; i++)
			t += iov[i].iov_len;
		grpc_conn_output_consumed(C, t);
	}
}

static size_t call_headers(uint8_t *out, uint32_t sid)
{
	static const char *nv[] = {":method", "POST", ":scheme", "http", ":path", "/etcdserverpb.KV/Range",
				   "content-type", "application/grpc", "grpc-timeout", "5S", NULL};
	uint8_t blk[512];
	size_t n = 0;
	for (size_t i = 0; nv[i]; i += 2)
		n += (size_t)hpack_encode_field(blk + n, sizeof(blk) - n, nv[i], strlen(nv[i]), nv[i + 1],
						strlen(nv[i + 1]), 0);
	return frame(out, 1, 0x4, sid, blk, n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct grpc_conn_config cfg;
	grpc_conn_config_default(&cfg);
	cfg.max_recv_msg_size = 100000;
	cfg.max_concurrent_streams = 4;
	cfg.max_output_bytes = 4 << 20;
	C = grpc_conn_new(&cfg, &CB, NULL);
	started = ended = 0;
	now = 0;
	grpc_conn_set_now(C, now);
	static uint8_t buf[70000];
	size_t n = 0;
	memcpy(buf, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
	n += 24;
	n += frame(buf + n, 4, 0, 0, NULL, 0);
	n += call_headers(buf + n, 1);
	n += call_headers(buf + n, 3);
	int r = grpc_conn_recv(C, buf, n);
	assert(r == 0);
	drain();
	while (size >= 2 && r == 0) {
		uint8_t op = data[0];
		size_t len = data[1];
		if (op & 8)
			len *= 64; /* bigger frames too */
		data += 2;
		size -= 2;
		if (len > size)
			len = size;
		uint32_t sid = op & 1 ? 3 : 1;
		if (op >= 0xf0) {
			uint8_t p[4] = {0, 1, 0, 0};
			if (op == 0xf0)
				n = frame(buf, 8, 0, sid, p, 4);
			else if (op == 0xf1)
				n = frame(buf, 8, 0, 0, p, 4);
			else if (op == 0xf2)
				n = frame(buf, 3, 0, sid, (const uint8_t *)"\0\0\0\x08", 4);
			else {
				now += 1000;
				grpc_conn_tick(C, now);
				n = 0;
			}
		} else {
			uint8_t flags = op & 2 ? 1 : 0;
			uint8_t payload[16384 + 1];
			size_t plen = len > 16384 ? 16384 : len;
			memcpy(payload, data, plen);
			if ((op & 4) && plen > 0) {
				flags |= 8;
				if (payload[0] >= plen)
					payload[0] = (uint8_t)(plen - 1);
			}
			n = frame(buf, 0, flags, sid, payload, plen);
			len = plen;
		}
		data += len;
		size -= len;
		if (n)
			r = grpc_conn_recv(C, buf, n);
		drain();
	}
	grpc_conn_free(C);
	assert(started == ended);
	return 0;
}
