/* Fuzzes the whole server connection (HTTP/2 framing, HPACK, gRPC) with arbitrary bytes.
 *
 * Input: byte 0 picks the mode (bit 0: send a valid preface + SETTINGS first; bits 1-3:
 * how output is drained), bytes 1-4 seed the split of the rest into recv() chunks. The
 * callbacks answer some calls (echo, status, status inside on_message), ticks advance
 * time so deadlines fire, and the harness checks on_call_end comes exactly once per call
 * and that what we emit is a well-formed frame sequence.
 */
#include <assert.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "net/grpc.h"

static struct grpc_conn *C;
static uint32_t live[4096];
static size_t n_live;
static uint64_t now;

static void live_add(uint32_t sid)
{
	for (size_t i = 0; i < n_live; i++)
		if (live[i] == sid)
			abort(); /* started twice */
	if (n_live < 4096)
		live[n_live++] = sid;
}

static void live_del(uint32_t sid)
{
	for (size_t i = 0; i < n_live; i++)
		if (live[i] == sid) {
			live[i] = live[--n_live];
			return;
		}
	abort(); /* ended twice, or never started */
}

static int route(void *u, const char *path, size_t len)
{
	if (len >= 2 && path[1] == 'a')
		return 1;
	if (len >= 2 && path[1] == 'b')
		return -2;
	return len % 3 == 0 ? -1 : 2;
}

static void on_start(void *u, uint32_t sid, int method, const struct grpc_header *h, size_t n)
{
	for (size_t i = 0; i < n; i++)
		(void)(h[i].name[0] + (h[i].value_len ? h[i].value[h[i].value_len - 1] : 0));
	live_add(sid);
	if (method == 2 && (sid & 6) == 6)
		grpc_send_status(C, sid, GRPC_NOT_FOUND, "nope \x01%");
}

static void on_message(void *u, uint32_t sid, int method, const uint8_t *msg, size_t len)
{
	volatile uint8_t x = len ? msg[len - 1] : 0;
	(void)x;
	if (len && (msg[0] & 1)) {
		/* a reply, sometimes bigger than any window */
		size_t n = (msg[0] & 2) ? 100000 : len;
		uint8_t *r = malloc(n);
		memset(r, 0x5a, n);
		if (n <= len)
			memcpy(r, msg, n);
		int e = grpc_send_message(C, sid, r, n);
		assert(e == 0 || e == -ENOBUFS);
		free(r);
	}
	if (len && (msg[0] & 4))
		grpc_send_status(C, sid, (enum grpc_code)(msg[0] % 17), "done");
}

static void on_half_close(void *u, uint32_t sid, int method)
{
	if (sid % 4 == 1)
		grpc_send_status(C, sid, GRPC_OK, NULL);
}

static void on_end(void *u, uint32_t sid, int method, void *cu)
{
	live_del(sid);
}

static const struct grpc_server_callbacks CB = {route, on_start, on_message, on_half_close, on_end};

/* our output must parse as frames; we check headers across drain boundaries */
static uint8_t hdr[9];
static size_t hdr_have, body_left;
static int after_preface_settings; /* first frame must be SETTINGS */

static void check_output(const uint8_t *p, size_t n)
{
	while (n > 0) {
		if (body_left) {
			size_t k = n < body_left ? n : body_left;
			p += k;
			n -= k;
			body_left -= k;
			continue;
		}
		hdr[hdr_have++] = *p++;
		n--;
		if (hdr_have == 9) {
			hdr_have = 0;
			body_left = (size_t)hdr[0] << 16 | hdr[1] << 8 | hdr[2];
			assert(hdr[3] <= 9 && hdr[3] != 5 && hdr[3] != 2);
			if (!after_preface_settings) {
				assert(hdr[3] == 4);
				after_preface_settings = 1;
			}
		}
	}
}

static uint32_t rnd_state;
static uint32_t rnd(void)
{
	rnd_state ^= rnd_state << 13;
	rnd_state ^= rnd_state >> 17;
	rnd_state ^= rnd_state << 5;
	return rnd_state;
}

static void drain(int mode)
{
	struct iovec iov[8];
	for (int round = 0; round < 64; round++) {
		size_t n = grpc_conn_output(C, iov, mode & 1 ? 1 : 8);
		if (!n)
			return;
		size_t total = 0;
		for (size_t i = 0; i < n; i++)
			total += iov[i].iov_len;
		size_t take = total;
		if (mode & 2)
			take = rnd() % (total + 1);
		if (mode & 4 && round > 2)
			return; /* a slow reader: leave output queued */
		size_t left = take;
		for (size_t i = 0; i < n && left; i++) {
			size_t k = iov[i].iov_len < left ? iov[i].iov_len : left;
			check_output(iov[i].iov_base, k);
			left -= k;
		}
		grpc_conn_output_consumed(C, take);
	}
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 5)
		return 0;
	uint8_t mode = data[0];
	rnd_state = (uint32_t)data[1] << 24 | data[2] << 16 | data[3] << 8 | data[4];
	rnd_state |= 1;
	data += 5;
	size -= 5;

	struct grpc_conn_config cfg;
	grpc_conn_config_default(&cfg);
	cfg.max_concurrent_streams = 8;
	cfg.max_recv_msg_size = 70000;
	cfg.max_header_list_size = 2048;
	cfg.max_output_bytes = 1 << 20;
	C = grpc_conn_new(&cfg, &CB, NULL);
	n_live = 0;
	now = 1000;
	hdr_have = body_left = 0;
	after_preface_settings = 0;
	grpc_conn_set_now(C, now);
	int r = 0;
	if (mode & 1) {
		static const uint8_t pre[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\0\0\0\4\0\0\0\0\0";
		r = grpc_conn_recv(C, pre, sizeof(pre) - 1);
	}
	while (size > 0 && r == 0) {
		size_t k = 1 + rnd() % (mode & 0x10 ? 7 : 4096);
		if (k > size)
			k = size;
		r = grpc_conn_recv(C, data, k);
		data += k;
		size -= k;
		drain(mode >> 1);
		if (rnd() % 8 == 0) {
			now += rnd() % 3000;
			grpc_conn_tick(C, now);
		}
		if (rnd() % 512 == 0)
			grpc_conn_goaway(C);
	}
	drain(0);
	grpc_conn_free(C);
	assert(n_live == 0);
	return 0;
}
