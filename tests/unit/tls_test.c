/* Unit tests for tls/: a wolfSSL client in memory against a tls_conn server, bytes pumped
 * between them in a loop (no sockets). Certificates are made with the openssl command line
 * (`openssl ca` for the expired and the revoked one and the CRL) once per test run, in a
 * directory named after the runner process, and copied where a test rewrites them.
 *
 * Covered: TLS 1.3 and 1.2 handshakes with RSA and ECDSA keys; ALPN (h2 preferred, http/1.1,
 * none); data both ways incl. 1 MiB, writev; output iovec contract and bounds; input bound
 * and zero-copy input; mTLS with a good client cert (CN), without one, from another CA,
 * expired, revoked (CRL, etcd's serial semantics, CRL reload); a CA file alone requiring
 * client certs as in etcd; TLS 1.1 and 1.3-only/1.2-only mismatches refused; garbage and
 * truncated ClientHellos, a stalled client beside a served one; byte-at-a-time delivery;
 * cipher suite restriction and etcd's config errors; certificate reload for new connections
 * while old ones go on; resumption by ticket in 1.2 and 1.3 across contexts, none with mTLS
 * (and a plain listener's ticket refused by an mTLS one); close_notify both ways.
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>

#include "tls/tls.h"

/* ---- certificates -------------------------------------------------------------------- */

static char certdir[128];

static const char gen_script[] =
	"set -e; cd \"$D\"\n"
	"exec 2>gen.log >&2\n"
	"cat > ca.cnf <<'EOF'\n"
	"[ ca ]\ndefault_ca = CA_default\n"
	"[ CA_default ]\ndir = .\ndatabase = index.txt\nnew_certs_dir = newcerts\ncertificate = ca.crt\n"
	"private_key = ca.key\nserial = serial\ndefault_md = sha256\npolicy = pol\nunique_subject = no\n"
	"default_crl_days = 30\ncopy_extensions = copy\n"
	"[ pol ]\ncommonName = supplied\n"
	"EOF\n"
	"mkdir -p newcerts; : > index.txt; echo 1000 > serial\n"
	"openssl req -x509 -newkey rsa:2048 -nodes -keyout ca.key -out ca.crt -days 3650 -subj /CN=test-ca -sha256\n"
	"openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca2.key -out ca2.crt "
	"-days 3650 -subj /CN=other-ca\n"
	"mk() { # name keyspec cn signer-ca [x509 args]\n"
	"  n=$1; k=$2; cn=$3; ca=$4; shift 4\n"
	"  openssl req -newkey $k -nodes -keyout $n.key -out $n.csr -subj /CN=$cn "
	"-addext subjectAltName=DNS:localhost,IP:127.0.0.1\n"
	"  openssl x509 -req -in $n.csr -CA $ca.crt -CAkey $ca.key -CAcreateserial -out $n.crt -days 365 "
	"-copy_extensions copy \"$@\"\n"
	"}\n"
	"mk server-rsa rsa:2048 server-rsa ca\n"
	"mk server-ec 'ec -pkeyopt ec_paramgen_curve:P-256' server-ec ca\n"
	"mk client-ec 'ec -pkeyopt ec_paramgen_curve:P-256' alice ca\n"
	"mk client-rsa rsa:2048 bob ca\n"
	"mk client-other 'ec -pkeyopt ec_paramgen_curve:P-256' mallory ca2\n"
	"openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout client-expired.key "
	"-out client-expired.csr -subj /CN=old\n"
	"openssl ca -batch -config ca.cnf -notext -in client-expired.csr -out client-expired.crt "
	"-startdate 20200101000000Z -enddate 20210101000000Z\n"
	"openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout client-revoked.key "
	"-out client-revoked.csr -subj /CN=revoked\n"
	"openssl ca -batch -config ca.cnf -notext -in client-revoked.csr -out client-revoked.crt -days 365\n"
	"openssl ca -batch -config ca.cnf -revoke client-revoked.crt\n"
	"openssl ca -batch -config ca.cnf -gencrl -out crl.pem\n"
	"touch done\n";

/* Makes the certificates once per test run: the directory is named after the runner
 * process (Criterion's workers are its children), built under a temporary name and renamed
 * into place, so concurrent workers never see half of it. */
static void certs_init(void)
{
	char tmp[200], cmd[4096], done[200];
	struct stat sb;

	snprintf(certdir, sizeof certdir, "/tmp/uetcd-tls-test-%d", (int)getppid());
	snprintf(done, sizeof done, "%s/done", certdir);
	if (stat(done, &sb) == 0)
		return;
	snprintf(tmp, sizeof tmp, "%s.%d", certdir, (int)getpid());
	snprintf(cmd, sizeof cmd, "rm -rf %s && mkdir -p %s", tmp, tmp);
	cr_assert_eq(system(cmd), 0);
	setenv("D", tmp, 1);
	int rc = system(gen_script);
	if (rc != 0) {
		snprintf(cmd, sizeof cmd, "cat %s/gen.log >&2", tmp);
		(void)!system(cmd);
	}
	cr_assert_eq(rc, 0, "openssl certificate generation failed");
	if (rename(tmp, certdir) != 0) { /* another worker won */
		snprintf(cmd, sizeof cmd, "rm -rf %s", tmp);
		(void)!system(cmd);
	}
	cr_assert_eq(stat(done, &sb), 0);
}

/* The path of a generated file; stable for the whole test (interned). */
static const char *P(const char *name)
{
	static char paths[64][200];
	static const char *names[64];
	int i;
	for (i = 0; i < 64 && names[i]; i++)
		if (strcmp(names[i], name) == 0)
			return paths[i];
	cr_assert_lt(i, 64);
	names[i] = name;
	snprintf(paths[i], sizeof paths[i], "%s/%s", certdir, name);
	return paths[i];
}

static void setup(void)
{
	certs_init();
}

TestSuite(tls, .init = setup, .timeout = 60);

/* ---- an in-memory wolfSSL client ----------------------------------------------------- */

struct buf {
	uint8_t *p;
	size_t off, len, cap;
};

static void buf_put(struct buf *b, const void *d, size_t n)
{
	if (b->len + n > b->cap) {
		b->cap = (b->len + n) * 2 + 4096;
		b->p = realloc(b->p, b->cap);
		cr_assert_not_null(b->p);
	}
	memcpy(b->p + b->len, d, n);
	b->len += n;
}

struct client {
	WOLFSSL_CTX *ctx;
	WOLFSSL *ssl;
	struct buf to_srv, to_cli;
	bool done;
	int err; /* wolfSSL error once failed */
};

static int cli_recv(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
	struct client *c = arg;
	size_t avail = c->to_cli.len - c->to_cli.off;
	if (avail == 0)
		return WOLFSSL_CBIO_ERR_WANT_READ;
	size_t n = (size_t)sz < avail ? (size_t)sz : avail;
	memcpy(buf, c->to_cli.p + c->to_cli.off, n);
	c->to_cli.off += n;
	return (int)n;
}

static int cli_send(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
	struct client *c = arg;
	buf_put(&c->to_srv, buf, (size_t)sz);
	return sz;
}

struct cli_opts {
	WOLFSSL_METHOD *(*method)(void);
	const char *alpn;      /* comma-separated, NULL for none */
	const char *cert, *key;
	const char *ciphers;
	const char *ca;        /* verify the server with this CA (default ca.crt) */
	WOLFSSL_SESSION *session;
};

static void client_init(struct client *c, const struct cli_opts *o)
{
	memset(c, 0, sizeof *c);
	c->ctx = wolfSSL_CTX_new(o->method ? o->method() : wolfSSLv23_client_method());
	cr_assert_not_null(c->ctx);
	cr_assert_eq(wolfSSL_CTX_load_verify_locations(c->ctx, o->ca ? o->ca : P("ca.crt"), NULL), WOLFSSL_SUCCESS);
	if (o->cert) {
		cr_assert_eq(wolfSSL_CTX_use_certificate_file(c->ctx, o->cert, WOLFSSL_FILETYPE_PEM), WOLFSSL_SUCCESS);
		cr_assert_eq(wolfSSL_CTX_use_PrivateKey_file(c->ctx, o->key, WOLFSSL_FILETYPE_PEM), WOLFSSL_SUCCESS);
	}
	if (o->ciphers)
		cr_assert_eq(wolfSSL_CTX_set_cipher_list(c->ctx, o->ciphers), WOLFSSL_SUCCESS);
	wolfSSL_CTX_SetIORecv(c->ctx, cli_recv);
	wolfSSL_CTX_SetIOSend(c->ctx, cli_send);
	c->ssl = wolfSSL_new(c->ctx);
	cr_assert_not_null(c->ssl);
	wolfSSL_SetIOReadCtx(c->ssl, c);
	wolfSSL_SetIOWriteCtx(c->ssl, c);
	cr_assert_eq(wolfSSL_check_domain_name(c->ssl, "localhost"), WOLFSSL_SUCCESS);
	wolfSSL_UseSessionTicket(c->ssl);
	if (o->alpn) {
		char list[64];
		snprintf(list, sizeof list, "%s", o->alpn);
		cr_assert_eq(wolfSSL_UseALPN(c->ssl, list, (unsigned)strlen(list), WOLFSSL_ALPN_FAILED_ON_MISMATCH),
			     WOLFSSL_SUCCESS);
	}
	if (o->session) /* may fail for a session without ticket; the tests check `resumed` */
		(void)wolfSSL_set_session(c->ssl, o->session);
}

static void client_free(struct client *c)
{
	wolfSSL_free(c->ssl);
	wolfSSL_CTX_free(c->ctx);
	free(c->to_srv.p);
	free(c->to_cli.p);
}

/* Moves bytes both ways; returns how many moved. Client→server is fed at most `chunk`
 * bytes at a time and never more than the server's input room. */
static size_t xfer_chunked(struct tls_conn *s, struct client *c, size_t chunk)
{
	size_t moved = 0;

	while (c->to_srv.off < c->to_srv.len) {
		size_t n = c->to_srv.len - c->to_srv.off, room = tls_conn_input_room(s);
		if (n > room)
			n = room;
		if (n > chunk)
			n = chunk;
		if (n == 0)
			break;
		if (tls_conn_feed(s, c->to_srv.p + c->to_srv.off, n) != 0)
			break;
		c->to_srv.off += n;
		moved += n;
		if (chunk < 64)
			break; /* byte-at-a-time mode: let the server read in between */
	}
	struct iovec iov[8];
	size_t k;
	while ((k = tls_conn_output(s, iov, 8)) > 0) {
		size_t tot = 0;
		for (size_t i = 0; i < k; i++) {
			buf_put(&c->to_cli, iov[i].iov_base, iov[i].iov_len);
			tot += iov[i].iov_len;
		}
		tls_conn_output_consumed(s, tot);
		moved += tot;
	}
	tls_conn_trim(s); /* as a reactor would between turns: buffers come back on demand */
	return moved;
}

static size_t xfer(struct tls_conn *s, struct client *c)
{
	return xfer_chunked(s, c, SIZE_MAX);
}

/* Runs both handshakes to completion or failure. Returns the server's result: 0 when its
 * handshake is done, else tls_conn_read's negative code (or 1 if it just stalled). */
static int handshake_chunked(struct tls_conn *s, struct client *c, size_t chunk)
{
	uint8_t tmp[256];
	int srv = 1;

	for (int it = 0; it < 100000; it++) {
		size_t moved = 0;
		if (!c->done && !c->err) {
			int r = wolfSSL_connect(c->ssl);
			if (r == WOLFSSL_SUCCESS)
				c->done = true;
			else if (wolfSSL_get_error(c->ssl, r) != WOLFSSL_ERROR_WANT_READ)
				c->err = wolfSSL_get_error(c->ssl, r);
		}
		moved += xfer_chunked(s, c, chunk);
		if (srv == 1) {
			ssize_t r = tls_conn_read(s, tmp, sizeof tmp);
			cr_assert_leq(r, 0, "no application data expected during the handshake");
			if (r < 0)
				srv = (int)r;
			else if (tls_conn_handshake_done(s))
				srv = 0;
		}
		moved += xfer_chunked(s, c, chunk);
		if (moved == 0 && (c->done || c->err) && srv != 1)
			break;
		if (moved == 0 && it > 10 && (c->done || c->err))
			break;
	}
	return srv;
}

static int handshake(struct tls_conn *s, struct client *c)
{
	return handshake_chunked(s, c, SIZE_MAX);
}

/* Client → server: sends len bytes and reads them back out of the server. */
static void send_to_server(struct tls_conn *s, struct client *c, const uint8_t *d, size_t len)
{
	size_t got = 0;
	uint8_t *rx = malloc(len + 1);
	static uint8_t tmp[20000];

	cr_assert_eq(wolfSSL_write(c->ssl, d, (int)len), (int)len);
	for (int idle = 0; got < len && idle < 3;) {
		size_t moved = xfer(s, c);
		ssize_t r;
		bool progress = moved > 0;
		while ((r = tls_conn_read(s, tmp, sizeof tmp)) > 0) {
			cr_assert_leq(got + (size_t)r, len);
			memcpy(rx + got, tmp, (size_t)r);
			got += (size_t)r;
			progress = true;
		}
		cr_assert_eq(r, 0, "server read failed: %zd", r);
		idle = progress ? 0 : idle + 1;
	}
	cr_assert_eq(got, len);
	cr_assert_eq(memcmp(rx, d, len), 0);
	free(rx);
}

/* Server → client with tls_conn_write (or writev in pieces of `piece`), honouring its
 * backpressure. */
static void send_to_client(struct tls_conn *s, struct client *c, const uint8_t *d, size_t len, size_t piece)
{
	size_t sent = 0, got = 0;
	uint8_t *rx = malloc(len + 1);

	for (int idle = 0; got < len && idle < 3;) {
		bool progress = false;
		if (sent < len) {
			ssize_t w;
			if (piece) {
				struct iovec iov[64];
				size_t n = 0, off = sent;
				while (n < 64 && off < len) {
					size_t k = len - off < piece ? len - off : piece;
					iov[n].iov_base = (void *)(d + off);
					iov[n].iov_len = k;
					off += k;
					n++;
				}
				w = tls_conn_writev(s, iov, n);
			} else {
				w = tls_conn_write(s, d + sent, len - sent);
			}
			cr_assert_geq(w, 0);
			cr_assert_leq(tls_conn_output_bytes(s), TLS_CONN_OUTPUT_MAX + 16384 + 1024);
			sent += (size_t)w;
			progress |= w > 0;
		}
		progress |= xfer(s, c) > 0;
		int r;
		while ((r = wolfSSL_read(c->ssl, rx + got, (int)(len - got > 65536 ? 65536 : len - got))) > 0) {
			got += (size_t)r;
			progress = true;
		}
		idle = progress ? 0 : idle + 1;
	}
	cr_assert_eq(got, len);
	cr_assert_eq(memcmp(rx, d, len), 0);
	free(rx);
}

static struct tls_ctx *ctx_new(const struct tls_server_config *cfg)
{
	char err[256] = "";
	struct tls_ctx *ctx = tls_ctx_new(cfg, err, sizeof err);
	cr_assert_not_null(ctx, "tls_ctx_new: %s", err);
	return ctx;
}

static struct tls_server_config cfg_rsa(void)
{
	return (struct tls_server_config){.cert_file = P("server-rsa.crt"), .key_file = P("server-rsa.key")};
}

static struct tls_server_config cfg_ec(void)
{
	return (struct tls_server_config){.cert_file = P("server-ec.crt"), .key_file = P("server-ec.key")};
}

static struct tls_server_config cfg_mtls(void)
{
	struct tls_server_config c = cfg_ec();
	c.trusted_ca_file = P("ca.crt");
	c.client_cert_auth = true;
	return c;
}

static void peer_cn_seen_by_client(struct client *c, char *buf, size_t cap)
{
	WOLFSSL_X509 *x = wolfSSL_get_peer_certificate(c->ssl);
	cr_assert_not_null(x);
	int n = wolfSSL_X509_NAME_get_text_by_NID(wolfSSL_X509_get_subject_name(x), NID_commonName, buf, (int)cap);
	cr_assert_gt(n, 0);
	wolfSSL_X509_free(x);
}

/* ---- handshakes and ALPN ------------------------------------------------------------- */

Test(tls, tls13_rsa_alpn_h2)
{
	struct tls_server_config cfg = cfg_rsa();
	struct tls_ctx *ctx = ctx_new(&cfg);
	struct tls_conn *s = tls_conn_new(ctx);
	struct client c;

	client_init(&c, &(struct cli_opts){.alpn = "h2,http/1.1"});
	cr_assert_not(tls_conn_handshake_done(s));
	cr_assert_null(tls_conn_alpn(s));
	cr_assert_eq(tls_conn_write(s, (const uint8_t *)"x", 1), 0, "nothing is written before the handshake");
	cr_assert_eq(handshake(s, &c), 0);
	cr_assert(c.done, "client error %d", c.err);
	cr_assert_str_eq(tls_conn_version(s), "TLSv1.3");
	cr_assert_str_eq(tls_conn_alpn(s), "h2");
	char *proto = NULL;
	unsigned short plen = 0;
	cr_assert_eq(wolfSSL_ALPN_GetProtocol(c.ssl, &proto, &plen), WOLFSSL_SUCCESS);
	cr_assert_eq(plen, 2);
	cr_assert_eq(memcmp(proto, "h2", 2), 0);
	char cn[64];
	cr_assert_eq(tls_conn_peer_cn(s, cn, sizeof cn), -ENOENT);
	send_to_server(s, &c, (const uint8_t *)"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 24);
	send_to_client(s, &c, (const uint8_t *)"\0\0\0\4\0\0\0\0\0", 9, 0);
	client_free(&c);
	tls_conn_free(s);
	tls_ctx_free(ctx);
}

Test(tls, tls12_ecdsa_h2_preferred_over_client_order)
{
	struct tls_server_config cfg = cfg_ec();
	cfg.max_version = TLS_VERSION_1_2;
	struct tls_ctx *ctx = ctx_new(&cfg);
	struct tls_conn *s = tls_conn_new(ctx);
	struct client c;

	client_init(&c, &(struct cli_opts){.alpn = "http/1.1,h2"});
	cr_assert_eq(handshake(s, &c), 0);
	cr_assert(c.done);
	cr_assert_str_eq(tls_conn_version(s), "TLSv1.2");
	cr_assert_str_eq(tls_conn_alpn(s), "h2");
	cr_assert_not_null(strstr(tls_conn_cipher(s), "ECDSA"), "%s", tls_conn_cipher(s));
	send_to_server(s, &c, (const uint8_t *)"hello", 5);
	send_to_client(s, &c, (const uint8_t *)"world", 5, 0);
	client_free(&c);
	tls_conn_free(s);
	tls_ctx_free(ctx);
}

Test(tls, tls12_rsa_and_tls13_only_ecdsa)
{
	struct tls_server_config cfg = cfg_rsa();
	cfg.min_version = cfg.max_version = TLS_VERSION_1_2;
	struct tls_ctx *ctx = ctx_new(&cfg);
	struct tls_conn *s = tls_conn_new(ctx);
	struct client c;
	client_init(&c, &(struct cli_opts){.alpn = "h2"});
	cr_assert_eq(handshake(s, &c), 0);
	cr_assert_str_eq(tls_conn_version(s), "TLSv1.2");
	cr_assert_not_null(strstr(tls_conn_cipher(s), "ECDHE-RSA"), "%s", tls_conn_cipher(s));
	client_free(&c);
	tls_conn_free(s);
	tls_ctx_free(ctx);

	/* TLS 1.3 only: a TLS 1.2 client is refused. */
	cfg = cfg_ec();
	cfg.min_version = TLS_VERSION_1_3;
	ctx = ctx_new(&cfg);
	s = tls_conn_new(ctx);
	client_init(&c, &(struct cli_opts){.method = wolfTLSv1_2_client_method});
	cr_assert_eq(handshake(s, &c), -EPROTO);
	cr_assert_not(c.done);
	cr_assert_not_null(tls_conn_error(s));
	client_free(&c);
	tls_conn_free(s);
	s = tls_conn_new(ctx);
	client_init(&c, &(struct cli_opts){.alpn = "h2"});
	cr_assert_eq(handshake(s, &c), 0);
	cr_assert_str_eq(tls_conn_version(s), "TLSv1.3");
	client_free(&c);
	tls_conn_free(s);
	tls_ctx_free(ctx);
}

Test(tls, alpn_none_and_http11)
{
	struct tls_server_config cfg = cfg_ec();
	struct tls_ctx *ctx = ctx_new(&cfg);
	struct client c;

	struct tls_conn *s = tls_conn_new(ctx);
	client_init(&c, &(struct cli_opts){0});
	cr_assert_eq(handshake(s, &c), 0);
	cr_assert_null(tls_conn_alpn(s));
	send_to_server(s, &c, (const uint8_t *)"GET / HTTP/1.1\r\n\r\n", 18);
	client_free(&c);
	tls_conn_free(s);

	s = tls_conn_new(ctx);
	client_init(&c, &(struct cli_opts){.alpn = "http/1.1"});
	cr_assert_eq(handshake(s, &c), 0);
	cr_assert_str_eq(tls_conn_alpn(s), "http/1.1");
	client_free(&c);
	tls_conn_free(s);

	/* Nothing in common: no ALPN from us; the client (set to fail on mismatch) decides. */
	s = tls_conn_new(ctx);
	client_init(&c, &(struct cli_opts){.alpn = "spdy/3"});
	handshake(s, &c);
	cr_assert_null(tls_conn_alpn(s));
	client_free(&c);
	tls_conn_free(s);
	tls_ctx_free(ctx);
}

/* ---- data ------------------------------------------------------------------------------ */

static uint8_t *pattern(size_t n, unsigned seed)
{
	uint8_t *p = malloc(n);
	for (size_t i = 0; i < n; i++) {
		seed = seed * 1103515245u + 12345u;
		p[i] = (uint8_t)(seed >> 16);
	}
	return p;
}

Test(tls, one_mib_both_ways_write_and_writev)
{
	struct tls_server_config cfg = cfg_rsa();
	struct tls_ctx *ctx = ctx_new(&cfg);
	struct tls_conn *s = tls_conn_new(ctx);
	struct client c;
	size_t n = 1u << 20;
	uint8_t *d = pattern(n, 7);

	client_init(&c, &(struct cli_opts){.alpn = "h2"});
	cr_assert_eq(handshake(s, &c), 0);
	send_to_server(s, &c, d, n);
	send_to_client(s, &c, d, n, 0);
	send_to_client(s, &c, d, n, 9);       /* many small frames gathered into records */
	send_to_client(s, &c, d, n, 40000);   /* large pieces written straight */
	send_to_client(s, &c, d, 100000, 16384);
	free(d);
	client_free(&c);
	tls_conn_free(s);
	tls_ctx_free(ctx);
}

Test(tls, output_bound_and_iovec_contract)
{
	struct tls_server_config cfg = cfg_ec();
	struct tls_ctx *ctx = ctx_new(&cfg);
	struct tls_conn *s = tls_conn_new(ctx);
	struct client c;
	size_t n = 1u << 20;
	uint8_t *d = pattern(n, 3);

	client_init(&c, &(struct cli_opts){.alpn = "h2"});
	cr_assert_eq(handshake(s, &c), 0);
	cr_assert_eq(tls_conn_output_bytes(s), 0);

	cr_assert_eq(tls_conn_write(s, d, 1000), 1000);
	struct iovec a[4], b[8];
	size_t na = tls_conn_output(s, a, 4);
	cr_assert_eq(na, 1);
	uint8_t *copy = malloc(a[0].iov_len);
	memcpy(copy, a[0].iov_base, a[0].iov_len);
	/* More output while the first iovec is "in flight": appended behind it. */
	ssize_t w = tls_conn_write(s, d, n);
	cr_assert_gt(w, 0);
	cr_assert_lt((size_t)w, n, "backpressure: not all of 1 MiB is taken");
	cr_assert_leq(tls_conn_output_bytes(s), TLS_CONN_OUTPUT_MAX + 16384 + 1024);
	cr_assert_eq(tls_conn_write(s, d, n), 0, "nothing more while over the bound");
	size_t nb = tls_conn_output(s, b, 8);
	cr_assert_geq(nb, 2);
	cr_assert_eq(b[0].iov_base, a[0].iov_base);
	cr_assert_geq(b[0].iov_len, a[0].iov_len);
	cr_assert_eq(memcmp(b[0].iov_base, copy, a[0].iov_len), 0);
	free(copy);
	/* Partial consumption in odd sizes, then the client gets it all intact. */
	size_t total = 0;
	struct iovec v[16];
	size_t k;
	while ((k = tls_conn_output(s, v, 16)) > 0) {
		size_t take = v[0].iov_len > 777 ? 777 : v[0].iov_len;
		buf_put(&c.to_cli, v[0].iov_base, take);
		tls_conn_output_consumed(s, take);
		total += take;
	}
	cr_assert_eq(tls_conn_output_bytes(s), 0);
	uint8_t *rx = malloc(n + 1000);
	size_t got = 0;
	int r;
	while ((r = wolfSSL_read(c.ssl, rx + got, 65536)) > 0)
		got += (size_t)r;
	cr_assert_eq(got, 1000 + (size_t)w);
	cr_assert_eq(memcmp(rx, d, 1000), 0);
	cr_assert_eq(memcmp(rx + 1000, d, (size_t)w), 0);
	free(rx);
	free(d);
	client_free(&c);
	tls_conn_free(s);
	tls_ctx_free(ctx);
}

Test(tls, input_bound_and_zero_copy_input)
{
	struct tls_server_config cfg = cfg_ec();
	struct tls_ctx *ctx = ctx_new(&cfg);
	struct tls_conn *s = tls_conn_new(ctx);
	struct client c;

	cr_assert_eq(tls_conn_input_room(s), TLS_CONN_INPUT_MAX);
	static uint8_t big[TLS_CONN_INPUT_MAX + 1];
	cr_assert_eq(tls_conn_feed(s, big, sizeof big), -ENOBUFS);
	cr_assert_eq(tls_conn_input_room(s), TLS_CONN_INPUT_MAX);

	/* The handshake through tls_conn_input_space/commit. */
	client_init(&c, &(struct cli_opts){.alpn = "h2"});
	uint8_t tmp[64];
	for (int i = 0; i < 50 && !(c.done && tls_conn_handshake_done(s)); i++) {
		if (!c.done) {
			int r = wolfSSL_connect(c.ssl);
			c.done = r == WOLFSSL_SUCCESS;
		}
		size_t room;
		uint8_t *sp = tls_conn_input_space(s, &room);
		size_t n = c.to_srv.len - c.to_srv.off;
		if (n > room)
			n = room;
		memcpy(sp, c.to_srv.p + c.to_srv.off, n);
		c.to_srv.off += n;
		tls_conn_input_commit(s, n);
		cr_assert_geq(tls_conn_read(s, tmp, sizeof tmp), 0);
		xfer(s, &c);
	}
	cr_assert(tls_conn_handshake_done(s));
	send_to_server(s, &c, (const uint8_t *)"zero-copy", 9);
	client_free(&c);
	tls_conn_free(s);
	tls_ctx_free(ctx);
}

Test(tls, byte_at_a_time)
{
	struct tls_server_config cfg = cfg_mtls();
	struct tls_ctx *ctx = ctx_new(&cfg);
	struct tls_conn *s = tls_conn_new(ctx);
	struct client c;

	client_init(&c, &(struct cli_opts){.alpn = "h2", .cert = P("client-ec.crt"), .key = P("client-ec.key")});
	cr_assert_eq(handshake_chunked(s, &c, 1), 0);
	cr_assert(c.done);
	cr_assert_str_eq(tls_conn_alpn(s), "h2");
	client_free(&c);
	tls_conn_free(s);
	tls_ctx_free(ctx);
}

Test(tls, close_notify)
{
	struct tls_server_config cfg = cfg_ec();
	struct tls_ctx *ctx = ctx_new(&cfg);
	struct tls_conn *s = tls_conn_new(ctx);
	struct client c;
	uint8_t tmp[64];

	client_init(&c, &(struct cli_opts){.alpn = "h2"});
	cr_assert_eq(handshake(s, &c), 0);
	wolfSSL_shutdown(c.ssl);
	xfer(s, &c);
	cr_assert_eq(tls_conn_read(s, tmp, sizeof tmp), -ESHUTDOWN);
	cr_assert_gt(tls_conn_output_bytes(s), 0, "our close_notify");
	cr_assert_eq(tls_conn_read(s, tmp, sizeof tmp), -ESHUTDOWN, "sticky");
	cr_assert_eq(tls_conn_write(s, tmp, 1), -ESHUTDOWN);
	cr_assert_eq(tls_conn_feed(s, tmp, 1), -EPIPE);
	client_free(&c);
	tls_conn_free(s);

	/* Our own shutdown. */
	s = tls_conn_new(ctx);
	client_init(&c, &(struct cli_opts){.alpn = "h2"});
	cr_assert_eq(handshake(s, &c), 0);
	tls_conn_shutdown(s);
	cr_assert_eq(tls_conn_write(s, tmp, 1), -EPIPE);
	xfer(s, &c);
	cr_assert_leq(wolfSSL_read(c.ssl, tmp, sizeof tmp), 0);
	cr_assert_eq(wolfSSL_get_error(c.ssl, 0), WOLFSSL_ERROR_ZERO_RETURN);
	client_free(&c);
	tls_conn_free(s);
	tls_ctx_free(ctx);
}

/* ---- mutual TLS ------------------------------------------------------------------------ */

static int mtls_try(const struct tls_server_config *cfg, WOLFSSL_METHOD *(*method)(void), const char *cert,
		    const char *key, char *cn, size_t cncap)
{
	struct tls_ctx *ctx = ctx_new(cfg);
	struct tls_conn *s = tls_conn_new(ctx);
	struct client c;

	client_init(&c, &(struct cli_opts){.method = method, .alpn = "h2", .cert = cert, .key = key});
	int r = handshake(s, &c);
	if (r == 0) {
		send_to_server(s, &c, (const uint8_t *)"ok", 2);
		if (cn)
			cr_assert_gt(tls_conn_peer_cn(s, cn, cncap), 0);
	} else {
		cr_assert_not_null(tls_conn_error(s));
		cr_log_info("refused (%d): %s", r, tls_conn_error(s));
		/* The client learns too (TLS 1.3 clients finish before the server checks them). */
		uint8_t tmp[16];
		if (c.done)
			cr_assert_leq(wolfSSL_read(c.ssl, tmp, sizeof tmp), 0);
	}
	client_free(&c);
	tls_conn_free(s);
	tls_ctx_free(ctx);
	return r;
}

Test(tls, mtls_good_client_cn)
{
	struct tls_server_config cfg = cfg_mtls();
	char cn[64];

	cr_assert_eq(mtls_try(&cfg, NULL, P("client-ec.crt"), P("client-ec.key"), cn, sizeof cn), 0);
	cr_assert_str_eq(cn, "alice");
	cr_assert_eq(mtls_try(&cfg, wolfTLSv1_2_client_method, P("client-rsa.crt"), P("client-rsa.key"), cn, sizeof cn), 0);
	cr_assert_str_eq(cn, "bob");
	char small[3];
	struct tls_ctx *ctx = ctx_new(&cfg);
	struct tls_conn *s = tls_conn_new(ctx);
	struct client c;
	client_init(&c, &(struct cli_opts){.cert = P("client-ec.crt"), .key = P("client-ec.key")});
	cr_assert_eq(handshake(s, &c), 0);
	cr_assert_eq(tls_conn_peer_cn(s, small, sizeof small), -ENOSPC);
	cr_assert_eq(tls_conn_peer_cn(s, cn, sizeof cn), 5);
	client_free(&c);
	tls_conn_free(s);
	tls_ctx_free(ctx);
}

Test(tls, mtls_refused)
{
	struct tls_server_config cfg = cfg_mtls();

	cr_assert_eq(mtls_try(&cfg, NULL, NULL, NULL, NULL, 0), -EACCES, "no client certificate (1.3)");
	cr_assert_eq(mtls_try(&cfg, wolfTLSv1_2_client_method, NULL, NULL, NULL, 0), -EACCES, "no client cert (1.2)");
	cr_assert_eq(mtls_try(&cfg, NULL, P("client-other.crt"), P("client-other.key"), NULL, 0), -EACCES,
		     "another CA");
	cr_assert_eq(mtls_try(&cfg, wolfTLSv1_2_client_method, P("client-other.crt"), P("client-other.key"), NULL, 0),
		     -EACCES, "another CA (1.2)");
	cr_assert_eq(mtls_try(&cfg, NULL, P("client-expired.crt"), P("client-expired.key"), NULL, 0), -EACCES,
		     "expired");
	/* Without a CRL the revoked one still passes... */
	cr_assert_eq(mtls_try(&cfg, NULL, P("client-revoked.crt"), P("client-revoked.key"), NULL, 0), 0);
	/* ...and with it, it is refused while others pass. */
	cfg.crl_file = P("crl.pem");
	cr_assert_eq(mtls_try(&cfg, NULL, P("client-revoked.crt"), P("client-revoked.key"), NULL, 0), -EACCES,
		     "revoked");
	cr_assert_eq(mtls_try(&cfg, wolfTLSv1_2_client_method, P("client-revoked.crt"), P("client-revoked.key"), NULL,
			      0),
		     -EACCES, "revoked (1.2)");
	char cn[64];
	cr_assert_eq(mtls_try(&cfg, NULL, P("client-ec.crt"), P("client-ec.key"), cn, sizeof cn), 0);
	cr_assert_str_eq(cn, "alice");
}

Test(tls, trusted_ca_alone_requires_client_cert_like_etcd)
{
	/* etcd's TLSInfo.ServerConfig: TrustedCAFile != "" || ClientCertAuth => RequireAndVerify. */
	struct tls_server_config cfg = cfg_ec();
	cfg.trusted_ca_file = P("ca.crt");
	cr_assert_eq(mtls_try(&cfg, NULL, NULL, NULL, NULL, 0), -EACCES);
	char cn[64];
	cr_assert_eq(mtls_try(&cfg, NULL, P("client-ec.crt"), P("client-ec.key"), cn, sizeof cn), 0);
	cr_assert_str_eq(cn, "alice");
	/* Neither: no certificate is asked for, none is reported. */
	cfg.trusted_ca_file = NULL;
	struct tls_ctx *ctx = ctx_new(&cfg);
	struct tls_conn *s = tls_conn_new(ctx);
	struct client c;
	client_init(&c, &(struct cli_opts){.cert = P("client-ec.crt"), .key = P("client-ec.key")});
	cr_assert_eq(handshake(s, &c), 0);
	cr_assert_eq(tls_conn_peer_cn(s, cn, sizeof cn), -ENOENT);
	client_free(&c);
	tls_conn_free(s);
	tls_ctx_free(ctx);
}

/* ---- hostile and broken peers ---------------------------------------------------------- */

Test(tls, tls11_refused)
{
	struct tls_server_config cfg = cfg_rsa();
	struct tls_ctx *ctx = ctx_new(&cfg);
	struct tls_conn *s = tls_conn_new(ctx);
	struct client c;

	client_init(&c, &(struct cli_opts){.method = wolfTLSv1_1_client_method});
	cr_assert_eq(handshake(s, &c), -EPROTO);
	cr_assert_not(c.done);
	client_free(&c);
	tls_conn_free(s);
	tls_ctx_free(ctx);
}

static void expect_garbage_refused(struct tls_ctx *ctx, const uint8_t *g, size_t n)
{
	struct tls_conn *s = tls_conn_new(ctx);
	uint8_t tmp[64];
	cr_assert_eq(tls_conn_feed(s, g, n), 0);
	ssize_t r = tls_conn_read(s, tmp, sizeof tmp);
	cr_assert_lt(r, 0, "garbage accepted (%zd)", r);
	cr_assert_eq(tls_conn_read(s, tmp, sizeof tmp), r);
	cr_assert_eq(tls_conn_feed(s, g, n), -EPIPE);
	cr_assert_not(tls_conn_handshake_done(s));
	tls_conn_free(s);
}

Test(tls, garbage_client_hello)
{
	struct tls_server_config cfg = cfg_rsa();
	struct tls_ctx *ctx = ctx_new(&cfg);
	static const char http[] = "GET / HTTP/1.1\r\nHost: localhost\r\n\r\n";
	static const char h2[] = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";
	/* A handshake record whose ClientHello claims more bytes than the record holds. */
	static const uint8_t lying[] = {0x16, 0x03, 0x01, 0x00, 0x08, 0x01, 0x00, 0xff, 0xff, 0x03, 0x03, 0, 0};
	/* An alert record before any handshake, and a zero-length handshake record. */
	static const uint8_t alert[] = {0x15, 0x03, 0x03, 0x00, 0x02, 0x02, 0x28};
	static const uint8_t empty[] = {0x16, 0x03, 0x03, 0x00, 0x00, 0x16, 0x03, 0x03, 0x00, 0x00};

	expect_garbage_refused(ctx, (const uint8_t *)http, sizeof http - 1);
	expect_garbage_refused(ctx, (const uint8_t *)h2, sizeof h2 - 1);
	expect_garbage_refused(ctx, lying, sizeof lying);
	expect_garbage_refused(ctx, alert, sizeof alert);
	expect_garbage_refused(ctx, empty, sizeof empty);
	/* Random records: any outcome but a crash, a hang or a finished handshake. */
	for (unsigned seed = 1; seed <= 200; seed++) {
		uint8_t *g = pattern(600, seed);
		g[0] = 0x16, g[1] = 0x03, g[2] = (uint8_t)(seed % 5), g[3] = 0x02, g[4] = 0x00;
		g[5] = 0x01;
		struct tls_conn *s = tls_conn_new(ctx);
		uint8_t tmp[64];
		cr_assert_eq(tls_conn_feed(s, g, 600), 0);
		cr_assert_leq(tls_conn_read(s, tmp, sizeof tmp), 0);
		cr_assert_not(tls_conn_handshake_done(s));
		tls_conn_free(s);
		free(g);
	}
	tls_ctx_free(ctx);
}

Test(tls, truncated_handshake_stalls_without_blocking)
{
	struct tls_server_config cfg = cfg_mtls();
	struct tls_ctx *ctx = ctx_new(&cfg);
	struct client c;
	uint8_t tmp[64];

	/* Half a ClientHello, then nothing. */
	client_init(&c, &(struct cli_opts){.alpn = "h2"});
	cr_assert_neq(wolfSSL_connect(c.ssl), WOLFSSL_SUCCESS);
	size_t hello = c.to_srv.len;
	cr_assert_gt(hello, 50);
	struct tls_conn *s = tls_conn_new(ctx);
	cr_assert_eq(tls_conn_feed(s, c.to_srv.p, hello / 2), 0);
	for (int i = 0; i < 3; i++)
		cr_assert_eq(tls_conn_read(s, tmp, sizeof tmp), 0);
	cr_assert_not(tls_conn_handshake_done(s));
	cr_assert_eq(tls_conn_output_bytes(s), 0);
	tls_conn_free(s);

	/* The whole ClientHello, the server's flight sent, then the client goes silent. */
	s = tls_conn_new(ctx);
	cr_assert_eq(tls_conn_feed(s, c.to_srv.p, hello), 0);
	cr_assert_eq(tls_conn_read(s, tmp, sizeof tmp), 0);
	cr_assert_gt(tls_conn_output_bytes(s), 0);
	cr_assert_eq(tls_conn_read(s, tmp, sizeof tmp), 0);
	cr_assert_not(tls_conn_handshake_done(s));

	/* Meanwhile another client is served in full on the same context. */
	struct tls_conn *s2 = tls_conn_new(ctx);
	struct client c2;
	client_init(&c2, &(struct cli_opts){.alpn = "h2", .cert = P("client-ec.crt"), .key = P("client-ec.key")});
	cr_assert_eq(handshake(s2, &c2), 0);
	send_to_server(s2, &c2, (const uint8_t *)"other", 5);
	cr_assert_eq(tls_conn_read(s, tmp, sizeof tmp), 0, "the stalled one is still just waiting");
	client_free(&c2);
	tls_conn_free(s2);
	tls_conn_free(s);
	client_free(&c);
	tls_ctx_free(ctx);
}

/* ---- configuration --------------------------------------------------------------------- */

Test(tls, cipher_suite_restriction)
{
	struct tls_server_config cfg = cfg_rsa();
	cfg.cipher_suites = "TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"; /* an RSA key */
	cfg.max_version = TLS_VERSION_1_2;
	struct tls_ctx *ctx = ctx_new(&cfg);
	struct tls_conn *s = tls_conn_new(ctx);
	struct client c;

	client_init(&c, &(struct cli_opts){0});
	cr_assert_eq(handshake(s, &c), 0);
	cr_assert_str_eq(tls_conn_cipher(s), "ECDHE-RSA-AES256-GCM-SHA384");
	client_free(&c);
	tls_conn_free(s);

	s = tls_conn_new(ctx);
	client_init(&c, &(struct cli_opts){.ciphers = "ECDHE-RSA-AES128-GCM-SHA256:ECDHE-RSA-CHACHA20-POLY1305"});
	cr_assert_eq(handshake(s, &c), -EPROTO);
	client_free(&c);
	tls_conn_free(s);
	tls_ctx_free(ctx);

	/* With TLS 1.3 allowed, a 1.3 client gets 1.3 whatever the (1.2) list says, as in Go. */
	cfg.max_version = 0;
	cfg.cipher_suites = "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305,TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256";
	ctx = ctx_new(&cfg);
	s = tls_conn_new(ctx);
	client_init(&c, &(struct cli_opts){0});
	cr_assert_eq(handshake(s, &c), 0);
	cr_assert_str_eq(tls_conn_version(s), "TLSv1.3");
	client_free(&c);
	tls_conn_free(s);
	s = tls_conn_new(ctx);
	client_init(&c, &(struct cli_opts){.method = wolfTLSv1_2_client_method});
	cr_assert_eq(handshake(s, &c), 0);
	cr_assert_str_eq(tls_conn_cipher(s), "ECDHE-RSA-CHACHA20-POLY1305");
	client_free(&c);
	tls_conn_free(s);
	tls_ctx_free(ctx);

	/* Default: no CBC, no static RSA. */
	cfg = cfg_rsa();
	ctx = ctx_new(&cfg);
	s = tls_conn_new(ctx);
	client_init(&c, &(struct cli_opts){.method = wolfTLSv1_2_client_method, .ciphers = "AES128-SHA:ECDHE-RSA-AES128-SHA"});
	cr_assert_eq(handshake(s, &c), -EPROTO);
	client_free(&c);
	tls_conn_free(s);
	tls_ctx_free(ctx);
}

Test(tls, config_errors_like_etcd)
{
	char err[256];
	struct tls_server_config cfg = cfg_rsa();

	cfg.cipher_suites = "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,TLS_FOO";
	cr_assert_null(tls_ctx_new(&cfg, err, sizeof err));
	cr_assert_str_eq(err, "unexpected TLS cipher suite \"TLS_FOO\"");
	cfg.cipher_suites = "TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384";
	cr_assert_null(tls_ctx_new(&cfg, err, sizeof err));
	cr_assert(strstr(err, "missing an HTTP/2-required AES_128_GCM_SHA256 cipher"), "%s", err);
	cfg.cipher_suites = "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256";
	cfg.min_version = TLS_VERSION_1_3;
	cr_assert_null(tls_ctx_new(&cfg, err, sizeof err));
	cr_assert_str_eq(err, "cipher suites cannot be configured when only TLS1.3 is enabled");
	cfg.cipher_suites = NULL;
	cfg.max_version = TLS_VERSION_1_2;
	cr_assert_null(tls_ctx_new(&cfg, err, sizeof err));
	cr_assert_eq(tls_version_parse("TLS1.2", err, sizeof err), TLS_VERSION_1_2);
	cr_assert_eq(tls_version_parse("TLS1.3", err, sizeof err), TLS_VERSION_1_3);
	cr_assert_eq(tls_version_parse("", err, sizeof err), 0);
	cr_assert_eq(tls_version_parse("TLS1.1", err, sizeof err), -EINVAL);
	cr_assert_str_eq(err, "unexpected TLS version TLS1.1 (must be one of: TLS1.2, TLS1.3)");

	cfg = cfg_rsa();
	cfg.key_file = P("server-ec.key");
	cr_assert_null(tls_ctx_new(&cfg, err, sizeof err), "key of another certificate");
	cfg.key_file = P("nonexistent.key");
	cr_assert_null(tls_ctx_new(&cfg, err, sizeof err));
	cr_assert_not_null(strstr(err, "No such file"), "%s", err);
	cfg = cfg_mtls();
	cfg.trusted_ca_file = P("server-ec.key");
	cr_assert_null(tls_ctx_new(&cfg, err, sizeof err), "a key is not a CA");
	cfg = cfg_mtls();
	cfg.crl_file = P("ca.key");
	cr_assert_null(tls_ctx_new(&cfg, err, sizeof err), "a key is not a CRL");
}

/* ---- reload and resumption ------------------------------------------------------------- */

static void install(const char *dir, const char *name, const char *src)
{
	char cmd[4096];
	/* Via rename, as kubelet and cert-manager do. */
	snprintf(cmd, sizeof cmd, "cp %s %s/.%s.tmp && mv -f %s/.%s.tmp %s/%s", src, dir, name, dir, name, dir, name);
	cr_assert_eq(system(cmd), 0);
}

static WOLFSSL_SESSION *connect_and_get_session(struct tls_ctx *ctx, WOLFSSL_METHOD *(*method)(void),
						WOLFSSL_SESSION *resume, bool *resumed, char *server_cn, size_t cncap)
{
	struct tls_conn *s = tls_conn_new(ctx);
	struct client c;
	uint8_t tmp[16];

	client_init(&c, &(struct cli_opts){.method = method, .alpn = "h2", .session = resume});
	int hr = handshake(s, &c);
	cr_assert_eq(hr, 0, "handshake %d: %s (client %d)", hr, tls_conn_error(s) ? tls_conn_error(s) : "", c.err);
	cr_assert(c.done);
	/* Let the client take the TLS 1.3 NewSessionTicket. */
	xfer(s, &c);
	cr_assert_leq(wolfSSL_read(c.ssl, tmp, sizeof tmp), 0);
	*resumed = tls_conn_resumed(s);
	cr_assert_eq(*resumed, (bool)wolfSSL_session_reused(c.ssl));
	if (server_cn && !*resumed)
		peer_cn_seen_by_client(&c, server_cn, cncap);
	send_to_server(s, &c, (const uint8_t *)"x", 1);
	WOLFSSL_SESSION *sess = wolfSSL_get1_session(c.ssl);
	client_free(&c);
	tls_conn_free(s);
	return sess;
}

Test(tls, resumption_by_ticket)
{
	struct tls_server_config cfg = cfg_ec();
	struct tls_ctx *ctx = ctx_new(&cfg);
	WOLFSSL_METHOD *(*methods[2])(void) = {wolfTLSv1_3_client_method, wolfTLSv1_2_client_method};

	for (int m = 0; m < 2; m++) {
		bool resumed;
		WOLFSSL_SESSION *s1 = connect_and_get_session(ctx, methods[m], NULL, &resumed, NULL, 0);
		cr_assert_not(resumed);
		cr_assert_not_null(s1);
		WOLFSSL_SESSION *s2 = connect_and_get_session(ctx, methods[m], s1, &resumed, NULL, 0);
		cr_assert(resumed, "resumption with %s", m ? "TLS 1.2" : "TLS 1.3");
		/* Another ctx (another reactor thread, or after a reload) takes the ticket too. */
		struct tls_ctx *other = ctx_new(&cfg);
		WOLFSSL_SESSION *s3 = connect_and_get_session(other, methods[m], s2, &resumed, NULL, 0);
		cr_assert(resumed, "resumption across contexts with %s", m ? "TLS 1.2" : "TLS 1.3");
		tls_ctx_free(other);
		wolfSSL_SESSION_free(s1);
		wolfSSL_SESSION_free(s2);
		wolfSSL_SESSION_free(s3);
	}
	tls_ctx_free(ctx);
}

/* Offers `sess` to a new connection; returns whether the server resumed it (the handshake
 * may also fail on the client side: see ticket_key_rotation). */
static bool try_resume(struct tls_ctx *ctx, WOLFSSL_METHOD *(*method)(void), WOLFSSL_SESSION *sess, int *hs)
{
	struct tls_conn *s = tls_conn_new(ctx);
	struct client c;
	client_init(&c, &(struct cli_opts){.method = method, .session = sess});
	*hs = handshake(s, &c);
	bool r = tls_conn_resumed(s);
	client_free(&c);
	tls_conn_free(s);
	return r;
}

Test(tls, ticket_key_rotation)
{
	struct tls_server_config cfg = cfg_rsa();
	struct tls_ctx *ctx = ctx_new(&cfg);
	WOLFSSL_METHOD *(*methods[2])(void) = {wolfTLSv1_3_client_method, wolfTLSv1_2_client_method};

	for (int m = 0; m < 2; m++) {
		bool resumed;
		int hs;
		WOLFSSL_SESSION *s1 = connect_and_get_session(ctx, methods[m], NULL, &resumed, NULL, 0);
		cr_assert_eq(tls_ticket_key_rotate(), 0);
		WOLFSSL_SESSION *s2 = connect_and_get_session(ctx, methods[m], s1, &resumed, NULL, 0);
		cr_assert(resumed, "a ticket under the previous key still resumes (%d)", m);
		cr_assert_eq(tls_ticket_key_rotate(), 0);
		cr_assert_not(try_resume(ctx, methods[m], s1, &hs), "two rotations later it does not (%d)", m);
		/* TLS 1.3 falls back to a full handshake. So does TLS 1.2 with OpenSSL's s_client
		 * (checked by hand), but wolfSSL 5.5.4's own 1.2 client then fails with
		 * OUT_OF_ORDER_E: a client-side quirk, so the outcome is only checked for 1.3. */
		if (m == 0)
			cr_assert_eq(hs, 0);
		/* TLS 1.3: the ticket issued on that resumption is under the current key. (wolfSSL
		 * 5.5.4 sends no new ticket on a TLS 1.2 resumption, so a 1.2 client does a full
		 * handshake after the second rotation.) */
		if (m == 0) {
			cr_assert(try_resume(ctx, methods[m], s2, &hs), "the renewed ticket resumes");
			cr_assert_eq(hs, 0);
		}
		wolfSSL_SESSION_free(s1);
		wolfSSL_SESSION_free(s2);
	}
	tls_ctx_free(ctx);
}

Test(tls, certificate_reload)
{
	char dir[] = "/tmp/uetcd-tls-reload-XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	char crt[600], key[600], cn[64];
	snprintf(crt, sizeof crt, "%s/server.crt", dir);
	snprintf(key, sizeof key, "%s/server.key", dir);
	install(dir, "server.crt", P("server-rsa.crt"));
	install(dir, "server.key", P("server-rsa.key"));

	struct tls_server_config cfg = {.cert_file = crt, .key_file = key};
	struct tls_ctx *ctx = ctx_new(&cfg);
	cr_assert_eq(tls_ctx_reload_if_changed(&ctx, false), 0, "nothing changed");

	/* A connection made with the first certificate. */
	struct tls_conn *old = tls_conn_new(ctx);
	struct client oc;
	client_init(&oc, &(struct cli_opts){.alpn = "h2"});
	cr_assert_eq(handshake(old, &oc), 0);
	peer_cn_seen_by_client(&oc, cn, sizeof cn);
	cr_assert_str_eq(cn, "server-rsa");

	/* Rotate to the ECDSA pair. */
	install(dir, "server.key", P("server-ec.key"));
	install(dir, "server.crt", P("server-ec.crt"));
	struct tls_ctx *before = ctx;
	cr_assert_eq(tls_ctx_reload_if_changed(&ctx, false), 1);
	cr_assert_neq(ctx, before);
	cr_assert_eq(tls_ctx_reload_if_changed(&ctx, false), 0);
	bool resumed;
	WOLFSSL_SESSION *sess = connect_and_get_session(ctx, NULL, NULL, &resumed, cn, sizeof cn);
	cr_assert_str_eq(cn, "server-ec");
	wolfSSL_SESSION_free(sess);
	/* The old connection goes on with the old context. */
	send_to_server(old, &oc, (const uint8_t *)"still here", 10);
	send_to_client(old, &oc, (const uint8_t *)"yes", 3, 0);

	/* A broken file: logged, the current context kept, new connections still served. */
	char cmd[4096];
	snprintf(cmd, sizeof cmd, "echo garbage > %s/.x && mv -f %s/.x %s", dir, dir, crt);
	cr_assert_eq(system(cmd), 0);
	before = ctx;
	cr_assert_lt(tls_ctx_reload_if_changed(&ctx, false), 0);
	cr_assert_eq(ctx, before);
	cr_assert_lt(tls_ctx_reload_if_changed(&ctx, false), 0, "still failing, not retried (same files)");
	cr_assert_lt(tls_ctx_reload_if_changed(&ctx, true), 0, "SIGHUP retries");
	cr_assert_eq(ctx, before);
	sess = connect_and_get_session(ctx, NULL, NULL, &resumed, cn, sizeof cn);
	cr_assert_str_eq(cn, "server-ec");
	wolfSSL_SESSION_free(sess);

	/* A key that does not match the certificate (half-written rotation) is refused too. */
	install(dir, "server.crt", P("server-rsa.crt"));
	cr_assert_lt(tls_ctx_reload_if_changed(&ctx, false), 0);
	cr_assert_eq(ctx, before);
	install(dir, "server.key", P("server-rsa.key"));
	cr_assert_eq(tls_ctx_reload_if_changed(&ctx, false), 1);
	sess = connect_and_get_session(ctx, NULL, NULL, &resumed, cn, sizeof cn);
	cr_assert_str_eq(cn, "server-rsa");
	wolfSSL_SESSION_free(sess);
	cr_assert_eq(tls_ctx_reload_if_changed(&ctx, true), 1, "SIGHUP reloads even unchanged files");

	client_free(&oc);
	tls_conn_free(old);
	tls_ctx_free(ctx);
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	(void)!system(cmd);
}

Test(tls, crl_reload_revokes_for_new_connections)
{
	char dir[] = "/tmp/uetcd-tls-crl-XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	char crl[600], cmd[4096];
	snprintf(crl, sizeof crl, "%s/crl.pem", dir);
	/* An empty CRL from the same CA first, then the one that revokes. */
	snprintf(cmd, sizeof cmd,
		 "cd %s && cp %s/ca.crt %s/ca.key %s/ca.cnf . && mkdir newcerts && : > index.txt && echo 2000 > serial "
		 "&& openssl ca -batch -config ca.cnf -gencrl -out crl.pem 2>/dev/null",
		 dir, certdir, certdir, certdir);
	cr_assert_eq(system(cmd), 0);
	struct tls_server_config cfg = cfg_mtls();
	cfg.crl_file = crl;
	cr_assert_eq(mtls_try(&cfg, NULL, P("client-revoked.crt"), P("client-revoked.key"), NULL, 0), 0);
	struct tls_ctx *ctx = ctx_new(&cfg);
	install(dir, "crl.pem", P("crl.pem"));
	cr_assert_eq(tls_ctx_reload_if_changed(&ctx, false), 1);
	struct tls_conn *s = tls_conn_new(ctx);
	struct client c;
	client_init(&c, &(struct cli_opts){.cert = P("client-revoked.crt"), .key = P("client-revoked.key")});
	cr_assert_eq(handshake(s, &c), -EACCES);
	client_free(&c);
	tls_conn_free(s);
	tls_ctx_free(ctx);
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	(void)!system(cmd);
}

/* The runner removes the certificates its workers made. */
ReportHook(POST_ALL)(struct criterion_global_stats *stats)
{
	char cmd[600];
	snprintf(cmd, sizeof cmd, "rm -rf /tmp/uetcd-tls-test-%d", (int)getpid());
	(void)!system(cmd);
}

Test(tls, crl_semantics_like_etcd)
{
	char dir[] = "/tmp/uetcd-tls-crl2-XXXXXX";
	cr_assert_not_null(mkdtemp(dir));
	char bundle[600], stale[600], cmd[4096];
	snprintf(bundle, sizeof bundle, "%s/bundle.crt", dir);
	snprintf(stale, sizeof stale, "%s/stale.pem", dir);
	/* A CA bundle of two CAs and a CRL from one of them; and a CRL past its nextUpdate. */
	snprintf(cmd, sizeof cmd,
		 "cd %s && cat %s/ca.crt %s/ca2.crt > bundle.crt && cp %s/ca.crt %s/ca.key %s/ca.cnf %s/index.txt . "
		 "&& mkdir newcerts && echo 3000 > serial "
		 "&& openssl ca -batch -config ca.cnf -gencrl -crlsec 1 -out stale.pem 2>/dev/null && sleep 2",
		 dir, certdir, certdir, certdir, certdir, certdir, certdir);
	cr_assert_eq(system(cmd), 0);

	struct tls_server_config cfg = cfg_mtls();
	cfg.trusted_ca_file = bundle;
	cfg.crl_file = P("crl.pem");
	char cn[64];
	cr_assert_eq(mtls_try(&cfg, NULL, P("client-other.crt"), P("client-other.key"), cn, sizeof cn), 0,
		     "a CA with no CRL in the file: etcd only checks serials against the file");
	cr_assert_str_eq(cn, "mallory");
	cr_assert_eq(mtls_try(&cfg, NULL, P("client-revoked.crt"), P("client-revoked.key"), NULL, 0), -EACCES);

	cfg = cfg_mtls();
	cfg.crl_file = stale;
	cr_assert_eq(mtls_try(&cfg, NULL, P("client-ec.crt"), P("client-ec.key"), cn, sizeof cn), 0,
		     "a CRL past nextUpdate is still used (Go ignores the date)");
	cr_assert_eq(mtls_try(&cfg, NULL, P("client-revoked.crt"), P("client-revoked.key"), NULL, 0), -EACCES,
		     "and still revokes");
	snprintf(cmd, sizeof cmd, "rm -rf %s", dir);
	(void)!system(cmd);
}

Test(tls, no_resumption_with_client_cert_auth)
{
	/* A ticket from a context without client auth (another listener) must not let a client
	 * into one that requires a certificate, and mTLS contexts issue no tickets (the CN would
	 * be lost on resumption). */
	struct tls_server_config plain = cfg_ec();
	struct tls_server_config mtls = cfg_mtls();
	struct tls_ctx *pctx = ctx_new(&plain), *mctx = ctx_new(&mtls);
	WOLFSSL_METHOD *(*methods[2])(void) = {wolfTLSv1_3_client_method, wolfTLSv1_2_client_method};

	for (int m = 0; m < 2; m++) {
		bool resumed;
		WOLFSSL_SESSION *sess = connect_and_get_session(pctx, methods[m], NULL, &resumed, NULL, 0);
		struct tls_conn *s = tls_conn_new(mctx);
		struct client c;
		client_init(&c, &(struct cli_opts){.method = methods[m], .session = sess});
		int hr = handshake(s, &c);
		/* 1.3: we ask for a certificate and get none; 1.2: wolfSSL's client gives up itself. */
		cr_assert_lt(hr, 0, "a plain ticket does not open an mTLS listener");
		cr_assert_not(tls_conn_handshake_done(s));
		client_free(&c);
		tls_conn_free(s);
		wolfSSL_SESSION_free(sess);

		/* With a certificate: full handshakes every time, the CN always known. */
		WOLFSSL_SESSION *prev = NULL;
		for (int i = 0; i < 3; i++) {
			s = tls_conn_new(mctx);
			client_init(&c, &(struct cli_opts){.method = methods[m], .session = prev,
							   .cert = P("client-ec.crt"), .key = P("client-ec.key")});
			cr_assert_eq(handshake(s, &c), 0);
			xfer(s, &c);
			uint8_t tmp[8];
			cr_assert_leq(wolfSSL_read(c.ssl, tmp, sizeof tmp), 0);
			cr_assert_not(tls_conn_resumed(s));
			char cn[64];
			cr_assert_eq(tls_conn_peer_cn(s, cn, sizeof cn), 5);
			cr_assert_str_eq(cn, "alice");
			wolfSSL_SESSION_free(prev);
			prev = wolfSSL_get1_session(c.ssl);
			client_free(&c);
			tls_conn_free(s);
		}
		wolfSSL_SESSION_free(prev);
	}
	tls_ctx_free(pctx);
	tls_ctx_free(mctx);
}
