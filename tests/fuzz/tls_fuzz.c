/* Fuzz target for tls/: arbitrary bytes from a client, in arbitrary splits, into a server
 * connection (with and without client-certificate auth), and arbitrary bytes as a CRL file.
 * Includes tls.c to reach the static CRL parser. A certificate is made at start-up with the
 * openssl command line, as the unit tests do.
 *
 * Input: byte 0 picks the context (bit 0) and whether the rest is a CRL (bit 1); byte 1 is
 * the feed chunk size (1..256); the rest is fed to the connection, reading after each chunk.
 */
#include "tls/tls.c"

#include <unistd.h>

static struct tls_ctx *fuzz_ctx[2];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	char dir[] = "/tmp/uetcd-tls-fuzz-XXXXXX", cmd[1024], crt[128], key[128], err[256];

	if (mkdtemp(dir) == NULL)
		abort();
	snprintf(cmd, sizeof cmd,
		 "cd %s && openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout k.pem "
		 "-out c.pem -days 365 -subj /CN=localhost >/dev/null 2>&1",
		 dir);
	if (system(cmd) != 0)
		abort();
	snprintf(crt, sizeof crt, "%s/c.pem", dir);
	snprintf(key, sizeof key, "%s/k.pem", dir);
	struct tls_server_config cfg = {.cert_file = crt, .key_file = key};
	fuzz_ctx[0] = tls_ctx_new(&cfg, err, sizeof err);
	cfg.trusted_ca_file = crt;
	cfg.client_cert_auth = true;
	fuzz_ctx[1] = tls_ctx_new(&cfg, err, sizeof err);
	if (!fuzz_ctx[0] || !fuzz_ctx[1])
		abort();
	log_set_level(LOG_FATAL);
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	(void)!system(cmd);
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (size < 2)
		return 0;
	uint8_t mode = data[0];
	size_t chunk = (size_t)data[1] + 1;
	data += 2;
	size -= 2;

	if (mode & 2) {
		struct tls_serial *rev;
		size_t n;
		if (tls_crl_parse_der(data, size, &rev, &n) == 0) {
			for (size_t i = 1; i < n; i++)
				if (tls_serial_cmp(&rev[i - 1], &rev[i]) > 0)
					abort();
			free(rev);
		}
		return 0;
	}
	struct tls_conn *c = tls_conn_new(fuzz_ctx[mode & 1]);
	uint8_t buf[4096];
	struct iovec iov[8];
	for (size_t off = 0; off < size;) {
		size_t n = size - off < chunk ? size - off : chunk;
		if (n > tls_conn_input_room(c))
			n = tls_conn_input_room(c);
		if (tls_conn_feed(c, data + off, n) != 0)
			break;
		off += n;
		ssize_t r;
		while ((r = tls_conn_read(c, buf, sizeof buf)) > 0)
			(void)tls_conn_write(c, buf, (size_t)r);
		size_t k;
		while ((k = tls_conn_output(c, iov, 8)) > 0) {
			size_t t = 0;
			for (size_t i = 0; i < k; i++)
				t += iov[i].iov_len;
			tls_conn_output_consumed(c, t);
		}
		if (r < 0)
			break;
	}
	tls_conn_free(c);
	return 0;
}
