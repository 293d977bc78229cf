/* TLS server connections over wolfSSL, driven sans-I/O (see tls.h for the contract).
 *
 * wolfSSL never sees a socket: its receive callback reads from the connection's input
 * buffer (WANT_READ when it is empty) and its send callback appends records to the output
 * chunk list. So wolfSSL_accept/read/write only ever "block" by returning WANT_READ, and a
 * stalled or hostile peer costs its own buffers and nothing else.
 *
 * Buffers per connection, and their single owners:
 *   in       ciphertext fed by the reactor, read by tls_io_recv(); fixed size
 *            TLS_CONN_INPUT_MAX, allocated on first input; in_start..in_end is live.
 *   out      a list of fixed-size chunks; tls_io_send() appends at the tail only, and
 *            tls_conn_output_consumed() advances the head only, so iovecs handed out stay
 *            valid until consumed. One drained chunk is kept as a spare.
 *   All three are released by tls_conn_trim() when empty, so an idle connection costs the
 *   struct and wolfSSL's own state (a few KiB) rather than ~90 KiB.
 *   stage    16 KiB lazily allocated for tls_conn_writev() to gather small buffers into
 *            full records (one record, one MAC, one header instead of many).
 * Copies: received ciphertext is copied into wolfSSL's record buffer (none into ours with
 * tls_conn_input_space), decrypted there and copied out as plaintext; plaintext is
 * encrypted in wolfSSL's buffer and copied once into our output chunk.
 *
 * Errors are sticky: once a connection failed, every call returns the same negative code
 * and wolfSSL is not called again (it is not safe to after a fatal error).
 *
 * Session tickets are sealed with ChaCha20-Poly1305 under a process-wide key (tls_ticket_cb),
 * not one per wolfSSL CTX, so tickets survive certificate reloads and work across the
 * contexts of different reactor threads; tls_ticket_key_rotate() replaces it, keeping the
 * previous one for opening only.
 * A context with client-certificate auth issues and accepts no tickets: wolfSSL keeps no
 * client certificate in a ticket, and the services need the CN on every connection.
 */
#include "tls/tls.h"

#include <errno.h>
#include <inttypes.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <wolfssl/options.h>
#include <wolfssl/ssl.h>
#include <wolfssl/error-ssl.h>
#include <wolfssl/wolfcrypt/chacha20_poly1305.h>
#include <wolfssl/wolfcrypt/coding.h>
#include <wolfssl/wolfcrypt/error-crypt.h>

#include "core/log.h"

#if !defined(HAVE_ALPN) || !defined(WOLFSSL_TLS13) || !defined(HAVE_ECC)
#error "uetcd needs wolfSSL with ALPN, TLS 1.3 and ECC"
#endif

#define TLS_RECORD_MAX 16384                 /* plaintext bytes per record */
#define TLS_OUT_CHUNK (32u * 1024 - 64)      /* data bytes per output chunk */
#define TLS_FILES 4                          /* cert, key, CA, CRL */

_Static_assert(TLS_CONN_INPUT_MAX >= 2 * (TLS_RECORD_MAX + 2048 + 5), "input holds two records");
_Static_assert(TLS_CONN_OUTPUT_MAX >= TLS_OUT_CHUNK, "output bound above one chunk");

/* ---- context ------------------------------------------------------------------------- */

struct tls_file_stamp {
	bool exists;
	dev_t dev;
	ino_t ino;
	off_t size;
	struct timespec mtim;
};

struct tls_ctx {
	atomic_int refs;
	WOLFSSL_CTX *wctx;
	struct tls_server_config cfg; /* strings point into strs */
	char *strs;
	struct tls_file_stamp stamps[TLS_FILES]; /* taken before the files were loaded */
	bool verify_clients;                     /* client_cert_auth || trusted_ca_file, as etcd */
	struct tls_serial *revoked;              /* from crl_file, sorted; NULL if none */
	size_t n_revoked;
	pthread_mutex_t reload_mu;               /* guards failed[] */
	bool failed_valid;
	struct tls_file_stamp failed[TLS_FILES]; /* files of the last failed reload */
};

static pthread_once_t tls_once = PTHREAD_ONCE_INIT;
static int tls_once_err;

/* Session-ticket keys, process-wide: [0] seals and opens, [1] (the one before the last
 * rotation) only opens. Read under the lock once per ticket, written by rotation. */
struct tls_ticket_key {
	bool valid;
	uint8_t name[WOLFSSL_TICKET_NAME_SZ];
	uint8_t key[CHACHA20_POLY1305_AEAD_KEYSIZE];
};
static struct tls_ticket_key tls_tk[2];
static pthread_rwlock_t tls_tk_lock = PTHREAD_RWLOCK_INITIALIZER;

static int tls_ticket_key_make(struct tls_ticket_key *k)
{
	k->valid = true;
	if (wolfSSL_RAND_bytes(k->name, sizeof k->name) != WOLFSSL_SUCCESS ||
	    wolfSSL_RAND_bytes(k->key, sizeof k->key) != WOLFSSL_SUCCESS)
		return -EIO;
	return 0;
}

static void tls_global_init(void)
{
	if (wolfSSL_Init() != WOLFSSL_SUCCESS || tls_ticket_key_make(&tls_tk[0]) < 0)
		tls_once_err = -EIO;
}

int tls_ticket_key_rotate(void)
{
	struct tls_ticket_key k;

	pthread_once(&tls_once, tls_global_init);
	if (tls_once_err || tls_ticket_key_make(&k) < 0)
		return -EIO;
	pthread_rwlock_wrlock(&tls_tk_lock);
	tls_tk[1] = tls_tk[0];
	tls_tk[0] = k;
	pthread_rwlock_unlock(&tls_tk_lock);
	memset(&k, 0, sizeof k);
	return 0;
}

/* Ticket = ChaCha20-Poly1305(key, nonce = iv[0..12), aad = name || iv || be16(len)); the
 * 16-byte tag goes in mac[0..16), mac[16..32) is zero. In place, as wolfSSL expects. */
static int tls_ticket_cb(WOLFSSL *ssl, unsigned char key_name[WOLFSSL_TICKET_NAME_SZ],
			 unsigned char iv[WOLFSSL_TICKET_IV_SZ], unsigned char mac[WOLFSSL_TICKET_MAC_SZ],
			 int enc, unsigned char *ticket, int in_len, int *out_len, void *user)
{
	const struct tls_ctx *ctx = user;
	uint8_t aad[WOLFSSL_TICKET_NAME_SZ + WOLFSSL_TICKET_IV_SZ + 2];
	uint8_t key[CHACHA20_POLY1305_AEAD_KEYSIZE];
	int which = -1, ret = WOLFSSL_TICKET_RET_OK;

	if (in_len < 0 || in_len > 0xffff)
		return WOLFSSL_TICKET_RET_REJECT;
	/* A resumed session carries no client certificate here, so a context that requires one
	 * takes no ticket at all (not even one sealed by a context without client auth). */
	if (ctx == NULL || ctx->verify_clients)
		return enc ? WOLFSSL_TICKET_RET_FATAL : WOLFSSL_TICKET_RET_REJECT;
	pthread_rwlock_rdlock(&tls_tk_lock);
	if (enc) {
		which = 0;
		memcpy(key_name, tls_tk[0].name, WOLFSSL_TICKET_NAME_SZ);
	} else {
		for (int i = 0; i < 2 && which < 0; i++)
			if (tls_tk[i].valid && memcmp(key_name, tls_tk[i].name, WOLFSSL_TICKET_NAME_SZ) == 0)
				which = i;
	}
	if (which >= 0)
		memcpy(key, tls_tk[which].key, sizeof key);
	pthread_rwlock_unlock(&tls_tk_lock);
	if (which < 0)
		return WOLFSSL_TICKET_RET_REJECT; /* older key or another process: full handshake */
	if (enc && wolfSSL_RAND_bytes(iv, WOLFSSL_TICKET_IV_SZ) != WOLFSSL_SUCCESS) {
		ret = WOLFSSL_TICKET_RET_FATAL;
		goto out;
	}
	memcpy(aad, key_name, WOLFSSL_TICKET_NAME_SZ);
	memcpy(aad + WOLFSSL_TICKET_NAME_SZ, iv, WOLFSSL_TICKET_IV_SZ);
	aad[sizeof aad - 2] = (uint8_t)(in_len >> 8);
	aad[sizeof aad - 1] = (uint8_t)in_len;
	if (enc) {
		memset(mac, 0, WOLFSSL_TICKET_MAC_SZ);
		if (wc_ChaCha20Poly1305_Encrypt(key, iv, aad, sizeof aad, ticket, (word32)in_len, ticket, mac) != 0)
			ret = WOLFSSL_TICKET_RET_FATAL;
	} else if (wc_ChaCha20Poly1305_Decrypt(key, iv, aad, sizeof aad, ticket, (word32)in_len, mac, ticket) != 0) {
		ret = WOLFSSL_TICKET_RET_REJECT;
	} else if (which == 1) {
		ret = WOLFSSL_TICKET_RET_CREATE; /* good, and a fresh one under the current key */
	}
	*out_len = in_len;
out:
	memset(key, 0, sizeof key);
	return ret;
}

/* Prefers h2 whatever the client's order, then http/1.1; with neither, no ALPN (a client
 * that needs one refuses us itself). `out` points into the client's list, as required. */
static int tls_alpn_select(WOLFSSL *ssl, const unsigned char **out, unsigned char *outlen,
			   const unsigned char *in, unsigned int inlen, void *arg)
{
	static const char *const prefs[] = {"h2", "http/1.1"};

	for (size_t p = 0; p < sizeof prefs / sizeof prefs[0]; p++) {
		size_t plen = strlen(prefs[p]);
		for (unsigned int i = 0; i < inlen;) {
			unsigned int n = in[i];
			if (i + 1 + n > inlen)
				break;
			if (n == plen && memcmp(in + i + 1, prefs[p], plen) == 0) {
				*out = in + i + 1;
				*outlen = (unsigned char)n;
				return 0; /* SSL_TLSEXT_ERR_OK */
			}
			i += 1 + n;
		}
	}
	return noack_return;
}

/* ---- revocation, as etcd does it ------------------------------------------------------
 *
 * etcd (pkg/transport) reads --client-crl-file and refuses a connection when the serial
 * number of any certificate the client presented is listed in it; it checks neither the
 * CRL's signature nor its dates, nor which CA issued it. wolfSSL's own CRL support refuses
 * to load a CRL past its nextUpdate and then refuses every client, so it is not used: the
 * serials are read here (DER, or the first "X509 CRL" PEM block) and looked up in the verify
 * callback, which wolfSSL calls for every certificate of the chain (VERIFY_CB_ALL_CERTS).
 *
 *   CertificateList ::= SEQUENCE { tbsCertList, signatureAlgorithm, signature }
 *   TBSCertList ::= SEQUENCE { version INTEGER OPTIONAL, signature AlgorithmIdentifier,
 *       issuer Name, thisUpdate Time, nextUpdate Time OPTIONAL,
 *       revokedCertificates SEQUENCE OF SEQUENCE { userCertificate INTEGER, ... } OPTIONAL,
 *       crlExtensions [0] OPTIONAL }
 */
#define TLS_SERIAL_MAX 32           /* RFC 5280 says 20 octets; some CAs pad */
#define TLS_CRL_FILE_MAX (64u << 20)

struct tls_serial {
	uint8_t len;
	uint8_t b[TLS_SERIAL_MAX];
};

/* Reads one DER header at *p; the value is [*p, *p + *len) after it. 0 or -EBADMSG. */
static int tls_der(const uint8_t **p, const uint8_t *end, uint8_t *tag, size_t *len)
{
	const uint8_t *q = *p;

	if (end - q < 2)
		return -EBADMSG;
	*tag = *q++;
	size_t l = *q++;
	if (l & 0x80) {
		int n = l & 0x7f;
		if (n == 0 || n > 4 || end - q < n)
			return -EBADMSG;
		l = 0;
		while (n--)
			l = (l << 8) | *q++;
	}
	if ((size_t)(end - q) < l)
		return -EBADMSG;
	*p = q;
	*len = l;
	return 0;
}

/* A serial as Go's big.Int.Bytes(): magnitude without leading zero octets. */
static bool tls_serial_set(struct tls_serial *s, const uint8_t *b, size_t n)
{
	while (n > 0 && b[0] == 0)
		b++, n--;
	if (n > TLS_SERIAL_MAX)
		return false;
	s->len = (uint8_t)n;
	memcpy(s->b, b, n);
	return true;
}

static int tls_serial_cmp(const void *a, const void *b)
{
	const struct tls_serial *x = a, *y = b;
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	return memcmp(x->b, y->b, x->len);
}

static int tls_crl_parse_der(const uint8_t *d, size_t n, struct tls_serial **out, size_t *count)
{
	const uint8_t *p = d, *end = d + n, *tend;
	uint8_t tag;
	size_t len;

	*out = NULL;
	*count = 0;
	if (tls_der(&p, end, &tag, &len) < 0 || tag != 0x30) /* CertificateList */
		return -EBADMSG;
	end = p + len;
	if (tls_der(&p, end, &tag, &len) < 0 || tag != 0x30) /* TBSCertList */
		return -EBADMSG;
	tend = p + len;
	/* version?, signature, issuer, thisUpdate, nextUpdate? */
	for (int field = 0; p < tend; field++) {
		if (tls_der(&p, tend, &tag, &len) < 0)
			return -EBADMSG;
		if (tag == 0x30 && field >= 3) { /* revokedCertificates */
			const uint8_t *lend = p + len;
			size_t cap = 0;
			while (p < lend) {
				const uint8_t *eend;
				if (tls_der(&p, lend, &tag, &len) < 0 || tag != 0x30)
					goto bad;
				eend = p + len;
				if (tls_der(&p, eend, &tag, &len) < 0 || tag != 0x02)
					goto bad;
				if (*count == cap) {
					cap = cap ? cap * 2 : 64;
					if (cap > TLS_CRL_FILE_MAX / 8)
						goto bad;
					struct tls_serial *r = realloc(*out, cap * sizeof **out);
					if (r == NULL) {
						free(*out);
						*out = NULL;
						return -ENOMEM;
					}
					*out = r;
				}
				if (tls_serial_set(&(*out)[*count], p, len))
					(*count)++;
				p = eend;
			}
			break;
		}
		if (tag == 0xa0) /* crlExtensions: no revoked list */
			break;
		p += len;
	}
	if (*count > 1)
		qsort(*out, *count, sizeof **out, tls_serial_cmp);
	return 0;
bad:
	free(*out);
	*out = NULL;
	*count = 0;
	return -EBADMSG;
}

/* Reads the CRL file (PEM or DER) into a sorted serial table. 0, -errno, or -EBADMSG. */
static int tls_crl_load(const char *path, struct tls_serial **out, size_t *count)
{
	static const char begin[] = "-----BEGIN X509 CRL-----", endm[] = "-----END X509 CRL-----";
	FILE *f = fopen(path, "rb");
	uint8_t *buf = NULL, *der = NULL;
	struct stat sb;
	size_t n = 0;
	int ret;

	if (f == NULL)
		return -errno;
	if (fstat(fileno(f), &sb) != 0 || sb.st_size > (off_t)TLS_CRL_FILE_MAX) {
		fclose(f);
		return -EFBIG;
	}
	buf = malloc((size_t)sb.st_size + 1);
	if (buf == NULL) {
		fclose(f);
		return -ENOMEM;
	}
	n = fread(buf, 1, (size_t)sb.st_size, f);
	fclose(f);
	buf[n] = '\0';
	const char *b = memmem(buf, n, begin, sizeof begin - 1);
	if (b != NULL) {
		b += sizeof begin - 1;
		const char *e = memmem(b, n - (size_t)((const uint8_t *)b - buf), endm, sizeof endm - 1);
		word32 dlen = (word32)n;
		der = malloc(n);
		if (e == NULL || der == NULL ||
		    Base64_Decode((const byte *)b, (word32)(e - b), der, &dlen) != 0) {
			free(der);
			free(buf);
			return der ? -EBADMSG : -ENOMEM;
		}
		ret = tls_crl_parse_der(der, dlen, out, count);
		free(der);
	} else {
		ret = tls_crl_parse_der(buf, n, out, count);
	}
	free(buf);
	return ret;
}

/* wolfSSL calls this for every certificate of the client's chain, verified or not. */
static int tls_verify_cb(int preverify, WOLFSSL_X509_STORE_CTX *store)
{
	const struct tls_ctx *ctx = store->userCtx;
	unsigned char raw[64];
	int rawlen = sizeof raw;
	struct tls_serial s;

	if (!preverify)
		return 0;
	if (ctx == NULL || ctx->n_revoked == 0)
		return 1;
	WOLFSSL_X509 *x = wolfSSL_X509_STORE_CTX_get_current_cert(store);
	if (x == NULL || wolfSSL_X509_get_serial_number(x, raw, &rawlen) != WOLFSSL_SUCCESS ||
	    !tls_serial_set(&s, raw, (size_t)rawlen))
		return 1; /* nothing to compare: as Go, which compares what it can parse */
	if (bsearch(&s, ctx->revoked, ctx->n_revoked, sizeof s, tls_serial_cmp) != NULL) {
		store->error = CRL_CERT_REVOKED;
		return 0;
	}
	return 1;
}

/* etcd's cipher names (Go's crypto/tls names) and wolfSSL's. TLS 1.3 ones are accepted and,
 * as in Go, ignored: TLS 1.3 always offers its three. */
static const struct {
	const char *go, *wolf;
} tls_suites[] = {
	{"TLS_RSA_WITH_RC4_128_SHA", "RC4-SHA"},
	{"TLS_RSA_WITH_3DES_EDE_CBC_SHA", "DES-CBC3-SHA"},
	{"TLS_RSA_WITH_AES_128_CBC_SHA", "AES128-SHA"},
	{"TLS_RSA_WITH_AES_256_CBC_SHA", "AES256-SHA"},
	{"TLS_RSA_WITH_AES_128_CBC_SHA256", "AES128-SHA256"},
	{"TLS_RSA_WITH_AES_128_GCM_SHA256", "AES128-GCM-SHA256"},
	{"TLS_RSA_WITH_AES_256_GCM_SHA384", "AES256-GCM-SHA384"},
	{"TLS_ECDHE_ECDSA_WITH_RC4_128_SHA", "ECDHE-ECDSA-RC4-SHA"},
	{"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA", "ECDHE-ECDSA-AES128-SHA"},
	{"TLS_ECDHE_ECDSA_WITH_AES_256_CBC_SHA", "ECDHE-ECDSA-AES256-SHA"},
	{"TLS_ECDHE_RSA_WITH_RC4_128_SHA", "ECDHE-RSA-RC4-SHA"},
	{"TLS_ECDHE_RSA_WITH_3DES_EDE_CBC_SHA", "ECDHE-RSA-DES-CBC3-SHA"},
	{"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA", "ECDHE-RSA-AES128-SHA"},
	{"TLS_ECDHE_RSA_WITH_AES_256_CBC_SHA", "ECDHE-RSA-AES256-SHA"},
	{"TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA256", "ECDHE-ECDSA-AES128-SHA256"},
	{"TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA256", "ECDHE-RSA-AES128-SHA256"},
	{"TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256", "ECDHE-RSA-AES128-GCM-SHA256"},
	{"TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256", "ECDHE-ECDSA-AES128-GCM-SHA256"},
	{"TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384", "ECDHE-RSA-AES256-GCM-SHA384"},
	{"TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384", "ECDHE-ECDSA-AES256-GCM-SHA384"},
	{"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-RSA-CHACHA20-POLY1305"},
	{"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256", "ECDHE-ECDSA-CHACHA20-POLY1305"},
	/* the names Go had before 1.14, which etcd's tlsutil still maps to the two above */
	{"TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305", "ECDHE-RSA-CHACHA20-POLY1305"},
	{"TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305", "ECDHE-ECDSA-CHACHA20-POLY1305"},
	{"TLS_AES_128_GCM_SHA256", NULL},
	{"TLS_AES_256_GCM_SHA384", NULL},
	{"TLS_CHACHA20_POLY1305_SHA256", NULL},
};

/* wolfSSL picks by the server's order. Debian's wolfSSL 5.5.4 is built without AES-NI
 * (no WOLFSSL_AESNI): there ChaCha20-Poly1305 runs ~2.5x faster than AES-GCM (measured
 * 310 vs 120 MB/s per core), so it goes first; with AES-NI, AES-GCM does. */
#ifdef WOLFSSL_AESNI
static const char tls_suites13[] = "TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384:TLS13-CHACHA20-POLY1305-SHA256";
/* Go's defaults minus CBC and static RSA: ECDHE with AES-GCM or ChaCha20 only. */
static const char tls_suites12_default[] =
	"ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:"
	"ECDHE-RSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305";
#else
static const char tls_suites13[] = "TLS13-CHACHA20-POLY1305-SHA256:TLS13-AES128-GCM-SHA256:TLS13-AES256-GCM-SHA384";
static const char tls_suites12_default[] =
	"ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:ECDHE-ECDSA-AES128-GCM-SHA256:"
	"ECDHE-RSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384";
#endif

/* Builds wolfSSL's cipher list into out. 0, or -EINVAL with etcd's message. */
static int tls_cipher_list(const char *names, bool tls13, char *out, size_t cap, char *err, size_t errlen)
{
	size_t len = 0;

	out[0] = '\0';
	if (names == NULL || names[0] == '\0') {
		snprintf(out, cap, "%s%s%s", tls13 ? tls_suites13 : "", tls13 ? ":" : "", tls_suites12_default);
		return 0;
	}
	/* TLS 1.3 suites first: wolfSSL walks the list in order and a 1.2 suite ahead of them
	 * makes it settle on 1.2 ciphers for a 1.3 handshake. */
	if (tls13) {
		int w = snprintf(out, cap, "%s", tls_suites13);
		len = (size_t)w;
	}
	bool h2_suite = false; /* Go's HTTP/2 server refuses a TLS 1.2 list without one */
	for (const char *p = names; *p;) {
		const char *e = strchr(p, ',');
		size_t n = e ? (size_t)(e - p) : strlen(p);
		/* etcd splits on commas without trimming: " X" is unknown there too. */
		size_t i;
		for (i = 0; i < sizeof tls_suites / sizeof tls_suites[0]; i++)
			if (strlen(tls_suites[i].go) == n && memcmp(tls_suites[i].go, p, n) == 0)
				break;
		if (i == sizeof tls_suites / sizeof tls_suites[0]) {
			snprintf(err, errlen, "unexpected TLS cipher suite \"%.*s\"", (int)(n > 100 ? 100 : n), p);
			return -EINVAL;
		}
		if (strcmp(tls_suites[i].go, "TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256") == 0 ||
		    strcmp(tls_suites[i].go, "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256") == 0)
			h2_suite = true;
		if (tls_suites[i].wolf != NULL) {
			int w = snprintf(out + len, cap - len, "%s%s", len ? ":" : "", tls_suites[i].wolf);
			if (w < 0 || (size_t)w >= cap - len) {
				snprintf(err, errlen, "too many cipher suites");
				return -EINVAL;
			}
			len += (size_t)w;
		}
		p = e ? e + 1 : p + n;
	}
	if (!h2_suite) { /* etcd fails to start with Go's message (RFC 9113 §9.2.2's mandatory suite) */
		snprintf(err, errlen, "http2: TLSConfig.CipherSuites is missing an HTTP/2-required AES_128_GCM_SHA256 cipher "
				      "(need at least one of TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 or "
				      "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256)");
		return -EINVAL;
	}
	return 0;
}

int tls_version_parse(const char *s, char *err, size_t errlen)
{
	if (s == NULL || s[0] == '\0')
		return 0;
	if (strcmp(s, "TLS1.2") == 0)
		return TLS_VERSION_1_2;
	if (strcmp(s, "TLS1.3") == 0)
		return TLS_VERSION_1_3;
	snprintf(err, errlen, "unexpected TLS version %s (must be one of: TLS1.2, TLS1.3)", s);
	return -EINVAL;
}

static void tls_stamp(const char *path, struct tls_file_stamp *st)
{
	struct stat sb;

	memset(st, 0, sizeof *st);
	if (path == NULL || path[0] == '\0' || stat(path, &sb) != 0)
		return;
	st->exists = true;
	st->dev = sb.st_dev;
	st->ino = sb.st_ino;
	st->size = sb.st_size;
	st->mtim = sb.st_mtim;
}

static bool tls_stamps_equal(const struct tls_file_stamp *a, const struct tls_file_stamp *b)
{
	for (int i = 0; i < TLS_FILES; i++) {
		if (a[i].exists != b[i].exists || a[i].dev != b[i].dev || a[i].ino != b[i].ino ||
		    a[i].size != b[i].size || a[i].mtim.tv_sec != b[i].mtim.tv_sec ||
		    a[i].mtim.tv_nsec != b[i].mtim.tv_nsec)
			return false;
	}
	return true;
}

static void tls_ctx_stamp_all(const struct tls_server_config *cfg, struct tls_file_stamp *st)
{
	tls_stamp(cfg->cert_file, &st[0]);
	tls_stamp(cfg->key_file, &st[1]);
	tls_stamp(cfg->trusted_ca_file, &st[2]);
	tls_stamp(cfg->crl_file, &st[3]);
}

/* The message for a failed load: the file's errno, else wolfSSL's reason. */
static void tls_wolf_err(int ret, const char *what, const char *path, char *err, size_t errlen)
{
	struct stat sb;
	unsigned long e = wolfSSL_ERR_peek_last_error();

	if (path && stat(path, &sb) != 0)
		snprintf(err, errlen, "%s %s: %s", what, path, strerror(errno));
	else if (ret < 0)
		snprintf(err, errlen, "%s %s: %s (%d)", what, path ? path : "", wc_GetErrorString(ret), ret);
	else if ((e >> 24) == 9) /* OpenSSL-style packed code, library 9 = PEM */
		snprintf(err, errlen, "%s %s: no PEM data found", what, path ? path : "");
	else
		snprintf(err, errlen, "%s %s: not valid PEM or unsupported content (error 0x%lx)", what,
			 path ? path : "", e);
	wolfSSL_ERR_clear_error();
}

/* Copies the configuration's strings into one allocation owned by the ctx. */
static int tls_ctx_copy_cfg(struct tls_ctx *ctx, const struct tls_server_config *cfg)
{
	const char *src[5] = {cfg->cert_file, cfg->key_file, cfg->trusted_ca_file, cfg->crl_file,
			      cfg->cipher_suites};
	size_t total = 0;

	for (int i = 0; i < 5; i++)
		total += src[i] ? strlen(src[i]) + 1 : 0;
	ctx->strs = malloc(total ? total : 1);
	if (ctx->strs == NULL)
		return -ENOMEM;
	char *p = ctx->strs;
	const char *dst[5] = {NULL};
	for (int i = 0; i < 5; i++) {
		if (src[i] == NULL)
			continue;
		size_t n = strlen(src[i]) + 1;
		memcpy(p, src[i], n);
		dst[i] = p;
		p += n;
	}
	ctx->cfg = *cfg;
	ctx->cfg.cert_file = dst[0];
	ctx->cfg.key_file = dst[1];
	ctx->cfg.trusted_ca_file = dst[2];
	ctx->cfg.crl_file = dst[3];
	ctx->cfg.cipher_suites = dst[4];
	return 0;
}

static bool tls_set(const char *s)
{
	return s != NULL && s[0] != '\0';
}

struct tls_ctx *tls_ctx_new(const struct tls_server_config *cfg, char *err, size_t errlen)
{
	struct tls_ctx *ctx = NULL;
	WOLFSSL_METHOD *method;
	char list[2048];
	int ret;
	int minv = cfg->min_version ? cfg->min_version : TLS_VERSION_1_2;
	int maxv = cfg->max_version ? cfg->max_version : TLS_VERSION_1_3;

	pthread_once(&tls_once, tls_global_init);
	if (tls_once_err) {
		snprintf(err, errlen, "wolfSSL initialisation failed");
		return NULL;
	}
	if ((minv != TLS_VERSION_1_2 && minv != TLS_VERSION_1_3) ||
	    (maxv != TLS_VERSION_1_2 && maxv != TLS_VERSION_1_3)) {
		snprintf(err, errlen, "unexpected TLS version (must be one of: TLS1.2, TLS1.3)");
		return NULL;
	}
	if (minv > maxv) {
		snprintf(err, errlen, "min version (TLS1.3) is greater than max version (TLS1.2)");
		return NULL;
	}
	if (minv == TLS_VERSION_1_3 && tls_set(cfg->cipher_suites)) {
		snprintf(err, errlen, "cipher suites cannot be configured when only TLS1.3 is enabled");
		return NULL;
	}
	if (!tls_set(cfg->cert_file) || !tls_set(cfg->key_file)) {
		snprintf(err, errlen, "TLS needs both a certificate file and a key file");
		return NULL;
	}
	if (tls_cipher_list(cfg->cipher_suites, maxv == TLS_VERSION_1_3, list, sizeof list, err, errlen) < 0)
		return NULL;

	wolfSSL_ERR_clear_error();
	ctx = calloc(1, sizeof *ctx);
	if (ctx == NULL) {
		snprintf(err, errlen, "out of memory");
		return NULL;
	}
	atomic_init(&ctx->refs, 1);
	pthread_mutex_init(&ctx->reload_mu, NULL);
	if (tls_ctx_copy_cfg(ctx, cfg) < 0) {
		snprintf(err, errlen, "out of memory");
		goto fail;
	}
	cfg = &ctx->cfg;
	/* etcd (client/pkg/transport TLSInfo.ServerConfig) requires and verifies client
	 * certificates when either --client-cert-auth or --trusted-ca-file is given. */
	ctx->verify_clients = cfg->client_cert_auth || tls_set(cfg->trusted_ca_file);
	tls_ctx_stamp_all(cfg, ctx->stamps); /* before loading: a change meanwhile reloads again */

	if (minv == maxv)
		method = minv == TLS_VERSION_1_3 ? wolfTLSv1_3_server_method() : wolfTLSv1_2_server_method();
	else
		method = wolfSSLv23_server_method();
	ctx->wctx = wolfSSL_CTX_new(method);
	if (ctx->wctx == NULL) {
		snprintf(err, errlen, "wolfSSL_CTX_new failed");
		goto fail;
	}
	if (minv != maxv && wolfSSL_CTX_SetMinVersion(ctx->wctx, WOLFSSL_TLSV1_2) != WOLFSSL_SUCCESS) {
		snprintf(err, errlen, "cannot set the minimum TLS version");
		goto fail;
	}
	if (wolfSSL_CTX_set_cipher_list(ctx->wctx, list) != WOLFSSL_SUCCESS) {
		snprintf(err, errlen, "no usable cipher suite in \"%s\"", cfg->cipher_suites ? cfg->cipher_suites : "");
		goto fail;
	}
	ret = wolfSSL_CTX_use_certificate_chain_file(ctx->wctx, cfg->cert_file);
	if (ret != WOLFSSL_SUCCESS) {
		tls_wolf_err(ret, "cannot load certificate file", cfg->cert_file, err, errlen);
		goto fail;
	}
	ret = wolfSSL_CTX_use_PrivateKey_file(ctx->wctx, cfg->key_file, WOLFSSL_FILETYPE_PEM);
	if (ret != WOLFSSL_SUCCESS) {
		tls_wolf_err(ret, "cannot load key file", cfg->key_file, err, errlen);
		goto fail;
	}
	if (wolfSSL_CTX_check_private_key(ctx->wctx) != WOLFSSL_SUCCESS) {
		snprintf(err, errlen, "private key %s does not match certificate %s", cfg->key_file, cfg->cert_file);
		goto fail;
	}
	if (ctx->verify_clients) {
		if (tls_set(cfg->trusted_ca_file))
			ret = wolfSSL_CTX_load_verify_locations(ctx->wctx, cfg->trusted_ca_file, NULL);
		else /* as Go with ClientCAs unset: the system's roots */
			ret = wolfSSL_CTX_load_system_CA_certs(ctx->wctx);
		if (ret != WOLFSSL_SUCCESS) {
			tls_wolf_err(ret, "cannot load trusted CA file", cfg->trusted_ca_file, err, errlen);
			goto fail;
		}
		if (tls_set(cfg->crl_file)) {
			ret = tls_crl_load(cfg->crl_file, &ctx->revoked, &ctx->n_revoked);
			if (ret < 0) {
				snprintf(err, errlen, "cannot load CRL file %s: %s", cfg->crl_file,
					 ret == -EBADMSG ? "not a DER or PEM X.509 CRL" : strerror(-ret));
				goto fail;
			}
		}
		wolfSSL_CTX_set_verify(ctx->wctx, WOLFSSL_VERIFY_PEER | WOLFSSL_VERIFY_FAIL_IF_NO_PEER_CERT,
				       tls_verify_cb);
	} else {
		wolfSSL_CTX_set_verify(ctx->wctx, WOLFSSL_VERIFY_NONE, NULL);
	}
	wolfSSL_CTX_set_alpn_select_cb(ctx->wctx, tls_alpn_select, NULL);
	/* Resumption is by ticket only: no server-side cache shared between threads. */
	wolfSSL_CTX_set_session_cache_mode(ctx->wctx, WOLFSSL_SESS_CACHE_OFF);
	wolfSSL_CTX_set_TicketEncCb(ctx->wctx, tls_ticket_cb);
	wolfSSL_CTX_set_TicketEncCtx(ctx->wctx, ctx);
	if (ctx->verify_clients) {
		/* wolfSSL keeps no client certificate (nor its CN) in a ticket, and the services need
		 * the CN on every connection: with client auth, every handshake is a full one. */
		wolfSSL_CTX_NoTicketTLSv12(ctx->wctx);
		wolfSSL_CTX_no_ticket_TLSv13(ctx->wctx);
	}
	static const unsigned char sid_plain[] = "uetcd", sid_mtls[] = "uetcd-mtls";
	wolfSSL_CTX_set_session_id_context(ctx->wctx, ctx->verify_clients ? sid_mtls : sid_plain,
					   ctx->verify_clients ? sizeof sid_mtls - 1 : sizeof sid_plain - 1);
	return ctx;
fail:
	if (ctx->wctx)
		wolfSSL_CTX_free(ctx->wctx);
	pthread_mutex_destroy(&ctx->reload_mu);
	free(ctx->revoked);
	free(ctx->strs);
	free(ctx);
	return NULL;
}

struct tls_ctx *tls_ctx_ref(struct tls_ctx *ctx)
{
	atomic_fetch_add_explicit(&ctx->refs, 1, memory_order_relaxed);
	return ctx;
}

void tls_ctx_free(struct tls_ctx *ctx)
{
	if (ctx == NULL || atomic_fetch_sub_explicit(&ctx->refs, 1, memory_order_acq_rel) != 1)
		return;
	wolfSSL_CTX_free(ctx->wctx);
	pthread_mutex_destroy(&ctx->reload_mu);
	free(ctx->revoked);
	free(ctx->strs);
	free(ctx);
}

int tls_ctx_reload_if_changed(struct tls_ctx **ctxp, bool force)
{
	struct tls_ctx *old = *ctxp, *nc;
	struct tls_file_stamp now[TLS_FILES];
	char err[512];

	tls_ctx_stamp_all(&old->cfg, now);
	if (!force && tls_stamps_equal(now, old->stamps))
		return 0;
	pthread_mutex_lock(&old->reload_mu);
	bool tried = old->failed_valid && tls_stamps_equal(now, old->failed);
	pthread_mutex_unlock(&old->reload_mu);
	if (!force && tried)
		return -EINVAL;

	nc = tls_ctx_new(&old->cfg, err, sizeof err);
	if (nc == NULL) {
		log_error("tls: reloading certificates failed, keeping the previous ones: %s", err);
		pthread_mutex_lock(&old->reload_mu);
		memcpy(old->failed, now, sizeof now);
		old->failed_valid = true;
		pthread_mutex_unlock(&old->reload_mu);
		return -EINVAL;
	}
	log_info("tls: reloaded certificate %s", nc->cfg.cert_file);
	*ctxp = nc;
	tls_ctx_free(old);
	return 1;
}

/* ---- connection ---------------------------------------------------------------------- */

struct tls_chunk {
	struct tls_chunk *next;
	size_t start, len; /* live bytes are data[start..len) */
	uint8_t data[TLS_OUT_CHUNK];
};

struct tls_conn {
	struct tls_ctx *ctx;
	WOLFSSL *ssl;
	int err;          /* sticky negative code, 0 while healthy */
	char errmsg[128]; /* the reason behind err, for tls_conn_error() */
	bool hs_done, shut, oom;
	uint8_t first[16]; /* the peer's first bytes, to say what it sent if it was not TLS */
	uint8_t nfirst;
	bool has_cn;
	char alpn[16];
	char cn[256];
	struct tls_chunk *out_head, *out_tail, *out_spare;
	size_t out_bytes;
	uint8_t *stage;   /* tls_conn_writev's gathering buffer, TLS_RECORD_MAX */
	uint8_t *in;      /* TLS_CONN_INPUT_MAX bytes, allocated on first input, trimmed when idle */
	size_t in_start, in_end;
};

static int tls_io_recv(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
	struct tls_conn *c = arg;
	size_t avail = c->in_end - c->in_start;

	if (avail == 0)
		return WOLFSSL_CBIO_ERR_WANT_READ;
	size_t n = sz < 0 ? 0 : (size_t)sz;
	if (n > avail)
		n = avail;
	for (size_t i = 0; i < n && c->nfirst < sizeof c->first; i++)
		c->first[c->nfirst++] = c->in[c->in_start + i];
	memcpy(buf, c->in + c->in_start, n);
	c->in_start += n;
	if (c->in_start == c->in_end)
		c->in_start = c->in_end = 0;
	return (int)n;
}

static struct tls_chunk *tls_chunk_get(struct tls_conn *c)
{
	struct tls_chunk *k = c->out_spare;

	if (k)
		c->out_spare = NULL;
	else if ((k = malloc(sizeof *k)) == NULL)
		return NULL;
	k->next = NULL;
	k->start = k->len = 0;
	return k;
}

static int tls_io_send(WOLFSSL *ssl, char *buf, int sz, void *arg)
{
	struct tls_conn *c = arg;
	const uint8_t *p = (const uint8_t *)buf;
	size_t left = sz < 0 ? 0 : (size_t)sz;

	while (left) {
		struct tls_chunk *t = c->out_tail;
		if (t == NULL || t->len == TLS_OUT_CHUNK) {
			struct tls_chunk *k = tls_chunk_get(c);
			if (k == NULL) {
				c->oom = true;
				return WOLFSSL_CBIO_ERR_GENERAL;
			}
			if (t)
				t->next = k;
			else
				c->out_head = k;
			c->out_tail = t = k;
		}
		size_t n = TLS_OUT_CHUNK - t->len;
		if (n > left)
			n = left;
		memcpy(t->data + t->len, p, n);
		t->len += n;
		p += n;
		left -= n;
		c->out_bytes += n;
	}
	return sz;
}

struct tls_conn *tls_conn_new(struct tls_ctx *ctx)
{
	struct tls_conn *c = calloc(1, sizeof *c);

	if (c == NULL)
		return NULL;
	c->ssl = wolfSSL_new(ctx->wctx);
	if (c->ssl == NULL) {
		free(c);
		return NULL;
	}
	wolfSSL_SSLSetIORecv(c->ssl, tls_io_recv);
	wolfSSL_SSLSetIOSend(c->ssl, tls_io_send);
	wolfSSL_SetIOReadCtx(c->ssl, c);
	wolfSSL_SetIOWriteCtx(c->ssl, c);
	wolfSSL_SetCertCbCtx(c->ssl, ctx); /* store->userCtx in tls_verify_cb */
	c->ctx = tls_ctx_ref(ctx);
	return c;
}

void tls_conn_free(struct tls_conn *c)
{
	if (c == NULL)
		return;
	wolfSSL_free(c->ssl);
	for (struct tls_chunk *k = c->out_head, *n; k; k = n) {
		n = k->next;
		free(k);
	}
	free(c->out_spare);
	free(c->stage);
	free(c->in);
	tls_ctx_free(c->ctx);
	free(c);
}

void tls_conn_trim(struct tls_conn *c)
{
	if (c->in && c->in_start == c->in_end) {
		free(c->in);
		c->in = NULL;
		c->in_start = c->in_end = 0;
	}
	if (c->out_bytes == 0) {
		for (struct tls_chunk *k = c->out_head, *n; k; k = n) {
			n = k->next;
			free(k);
		}
		c->out_head = c->out_tail = NULL;
	}
	free(c->out_spare);
	c->out_spare = NULL;
	free(c->stage);
	c->stage = NULL;
}

static bool tls_in_alloc(struct tls_conn *c)
{
	if (c->in == NULL) {
		c->in = malloc(TLS_CONN_INPUT_MAX);
		c->in_start = c->in_end = 0;
	}
	return c->in != NULL;
}

static void tls_in_compact(struct tls_conn *c)
{
	if (c->in_start == 0)
		return;
	memmove(c->in, c->in + c->in_start, c->in_end - c->in_start);
	c->in_end -= c->in_start;
	c->in_start = 0;
}

size_t tls_conn_input_room(const struct tls_conn *c)
{
	return TLS_CONN_INPUT_MAX - (c->in_end - c->in_start);
}

int tls_conn_feed(struct tls_conn *c, const uint8_t *data, size_t len)
{
	if (c->err)
		return -EPIPE;
	if (len > tls_conn_input_room(c))
		return -ENOBUFS;
	if (len == 0)
		return 0;
	if (!tls_in_alloc(c))
		return -ENOMEM;
	if (TLS_CONN_INPUT_MAX - c->in_end < len)
		tls_in_compact(c);
	memcpy(c->in + c->in_end, data, len);
	c->in_end += len;
	return 0;
}

uint8_t *tls_conn_input_space(struct tls_conn *c, size_t *room)
{
	if (!tls_in_alloc(c)) {
		*room = 0;
		return NULL;
	}
	tls_in_compact(c);
	*room = c->err ? 0 : TLS_CONN_INPUT_MAX - c->in_end;
	return c->in + c->in_end;
}

void tls_conn_input_commit(struct tls_conn *c, size_t n)
{
	if (c->in == NULL)
		return; /* a caller bug: no tls_conn_input_space() before */
	if (n > TLS_CONN_INPUT_MAX - c->in_end)
		n = TLS_CONN_INPUT_MAX - c->in_end; /* a caller bug; never write past in[] */
	c->in_end += n;
}

static bool tls_is_cert_error(int e)
{
	switch (e) {
	case NO_PEER_CERT:
	case VERIFY_CERT_ERROR:
	case NO_PEER_VERIFY:
	case CRL_CERT_REVOKED:
	case CRL_MISSING:
	case OCSP_CERT_REVOKED:
	case ASN_BEFORE_DATE_E:
	case ASN_AFTER_DATE_E:
	case ASN_SIG_CONFIRM_E:
	case ASN_NO_SIGNER_E:
	case ASN_SELF_SIGNED_E:
	case ASN_PATHLEN_SIZE_E:
	case ASN_PATHLEN_INV_E:
		return true;
	default:
		return false;
	}
}

/* A handshake that failed on the peer's first record: if that record is not a TLS handshake
 * record (type 22), the peer does not speak TLS. Say so in an operator's words, as etcd
 * (Go's crypto/tls) does, instead of wolfSSL's "unknown type in record hdr" or "parse error
 * on header". False if the first record looked like TLS. */
static bool tls_conn_explain_not_tls(struct tls_conn *c)
{
	static const char *const methods[] = {"GET ", "POST ", "PUT ", "HEAD ", "DELETE ", "OPTIONS ",
					      "PATCH ", "CONNECT ", "TRACE "};
	static const char h2c[] = "PRI * HTTP/2.0";
	const char *what = "something that is not TLS";
	uint8_t head[sizeof c->first];
	size_t n = c->nfirst;

	/* what wolfSSL read, then what it left unread: the stream's first bytes, in order */
	memcpy(head, c->first, n);
	for (size_t i = c->in_start; i < c->in_end && n < sizeof head; i++)
		head[n++] = c->in[i];
	if (n == 0 || head[0] == 22)
		return false;
	if (n >= sizeof h2c - 1 && !memcmp(head, h2c, sizeof h2c - 1))
		what = "a plaintext HTTP/2 connection preface (h2c)";
	for (size_t i = 0; i < sizeof methods / sizeof *methods; i++)
		if (n >= strlen(methods[i]) && !memcmp(head, methods[i], strlen(methods[i])))
			what = "a plaintext HTTP/1.x request";
	snprintf(c->errmsg, sizeof c->errmsg,
		 "client sent %s to a TLS listener (first record does not look like a TLS handshake)", what);
	return true;
}

/* After a wolfSSL call returned `ret` <= 0: 0 if it only wants more input, else the sticky
 * error (an alert, if wolfSSL made one, is already in the output). */
static int tls_conn_fail(struct tls_conn *c, int ret)
{
	int e = wolfSSL_get_error(c->ssl, ret);

	if (e == WOLFSSL_ERROR_WANT_READ || e == WOLFSSL_ERROR_WANT_WRITE)
		return 0;
	wolfSSL_ERR_clear_error(); /* so a later failure on this thread reports its own cause */
	wolfSSL_ERR_error_string_n((unsigned long)e, c->errmsg, sizeof c->errmsg);
	if (c->oom || e == MEMORY_E)
		c->err = -ENOMEM;
	else if (e == WOLFSSL_ERROR_ZERO_RETURN || e == ZERO_RETURN) {
		snprintf(c->errmsg, sizeof c->errmsg, "closed by the peer (close_notify)");
		c->err = -ESHUTDOWN;
		if (!c->shut) {
			c->shut = true;
			wolfSSL_shutdown(c->ssl); /* our close_notify */
		}
	} else if (tls_is_cert_error(e))
		c->err = -EACCES;
	else {
		c->err = -EPROTO;
		if (!c->hs_done)
			tls_conn_explain_not_tls(c);
	}
	if (!c->hs_done && c->err != -ENOMEM)
		log_debug("tls: handshake failed: %s (%d)", c->errmsg, e);
	return c->err;
}

/* 0, or -EACCES when client auth is on and the handshake did not verify a certificate. */
static int tls_conn_on_handshake(struct tls_conn *c)
{
	const unsigned char *proto = NULL;
	unsigned int plen = 0;

	wolfSSL_get0_alpn_selected(c->ssl, &proto, &plen);
	if (proto && plen > 0 && plen < sizeof c->alpn) {
		memcpy(c->alpn, proto, plen);
		c->alpn[plen] = '\0';
	}
	if (c->ctx->verify_clients) {
		/* Defence in depth: tickets and the session cache are off for such contexts, so a
		 * resumed session or one without a peer certificate cannot be legitimate. */
		WOLFSSL_X509 *x = wolfSSL_session_reused(c->ssl) ? NULL : wolfSSL_get_peer_certificate(c->ssl);
		if (x == NULL) {
			snprintf(c->errmsg, sizeof c->errmsg, "no verified client certificate");
			c->err = -EACCES;
			return c->err;
		}
		WOLFSSL_X509_NAME *name = wolfSSL_X509_get_subject_name(x);
		int n = name ? wolfSSL_X509_NAME_get_text_by_NID(name, NID_commonName, c->cn, sizeof c->cn) : -1;
		c->has_cn = n > 0;
		wolfSSL_X509_free(x);
	}
	c->hs_done = true;
	return 0;
}

ssize_t tls_conn_read(struct tls_conn *c, uint8_t *buf, size_t cap)
{
	int ret;

	if (c->err)
		return c->err;
	if (!c->hs_done) {
		ret = wolfSSL_accept(c->ssl);
		if (ret != WOLFSSL_SUCCESS)
			return tls_conn_fail(c, ret);
		if (tls_conn_on_handshake(c) < 0)
			return c->err; /* no alert: wolfSSL has no public call for one; we just close */
	}
	if (cap == 0)
		return 0;
	if (cap > INT_MAX)
		cap = INT_MAX;
	ret = wolfSSL_read(c->ssl, buf, (int)cap);
	if (ret > 0)
		return ret;
	return tls_conn_fail(c, ret);
}

/* One wolfSSL_write of at most one record. 0 or the sticky error. */
static int tls_conn_write_record(struct tls_conn *c, const uint8_t *p, size_t n)
{
	int ret = wolfSSL_write(c->ssl, p, (int)n);

	if (ret == (int)n)
		return 0;
	ret = tls_conn_fail(c, ret);
	if (ret == 0) {
		/* Our send callback never blocks, so wolfSSL cannot be waiting to write. */
		c->err = -EPROTO;
		ret = c->err;
	}
	return ret;
}

static ssize_t tls_conn_write_ready(struct tls_conn *c)
{
	if (c->err)
		return c->err;
	if (c->shut)
		return -EPIPE;
	if (!c->hs_done || c->out_bytes >= TLS_CONN_OUTPUT_MAX)
		return 0;
	return 1;
}

ssize_t tls_conn_write(struct tls_conn *c, const uint8_t *data, size_t len)
{
	size_t done = 0;
	ssize_t r = tls_conn_write_ready(c);

	if (r <= 0)
		return r;
	while (done < len && c->out_bytes < TLS_CONN_OUTPUT_MAX) {
		size_t n = len - done;
		if (n > TLS_RECORD_MAX)
			n = TLS_RECORD_MAX;
		int e = tls_conn_write_record(c, data + done, n);
		if (e < 0)
			return e;
		done += n;
	}
	return (ssize_t)done;
}

ssize_t tls_conn_writev(struct tls_conn *c, const struct iovec *iov, size_t iovcnt)
{
	size_t done = 0, i = 0, off = 0;
	ssize_t r = tls_conn_write_ready(c);

	if (r <= 0)
		return r;
	while (i < iovcnt && c->out_bytes < TLS_CONN_OUTPUT_MAX) {
		const uint8_t *base = iov[i].iov_base;
		size_t left = iov[i].iov_len - off;
		const uint8_t *rec;
		size_t n = 0;

		if (left == 0) {
			i++, off = 0;
			continue;
		}
		if (left >= TLS_RECORD_MAX) { /* a full record straight from the caller's buffer */
			rec = base + off;
			n = TLS_RECORD_MAX;
			off += n;
		} else {
			if (c->stage == NULL && (c->stage = malloc(TLS_RECORD_MAX)) == NULL)
				return done ? (ssize_t)done : -ENOMEM;
			while (i < iovcnt && n < TLS_RECORD_MAX) {
				size_t take = iov[i].iov_len - off;
				if (take > TLS_RECORD_MAX - n)
					take = TLS_RECORD_MAX - n;
				memcpy(c->stage + n, (const uint8_t *)iov[i].iov_base + off, take);
				n += take;
				off += take;
				if (off == iov[i].iov_len)
					i++, off = 0;
			}
			rec = c->stage;
		}
		int e = tls_conn_write_record(c, rec, n);
		if (e < 0)
			return e;
		done += n;
	}
	return (ssize_t)done;
}

void tls_conn_shutdown(struct tls_conn *c)
{
	if (c->err || c->shut)
		return;
	c->shut = true;
	if (c->hs_done)
		wolfSSL_shutdown(c->ssl);
}

size_t tls_conn_output(struct tls_conn *c, struct iovec *iov, size_t iov_max)
{
	size_t n = 0;

	for (struct tls_chunk *k = c->out_head; k && n < iov_max; k = k->next) {
		if (k->len == k->start)
			continue;
		iov[n].iov_base = k->data + k->start;
		iov[n].iov_len = k->len - k->start;
		n++;
	}
	return n;
}

void tls_conn_output_consumed(struct tls_conn *c, size_t n)
{
	if (n > c->out_bytes)
		n = c->out_bytes; /* a caller bug; do not walk off the list */
	c->out_bytes -= n;
	while (n) {
		struct tls_chunk *k = c->out_head;
		size_t live = k->len - k->start;
		size_t take = n < live ? n : live;
		k->start += take;
		n -= take;
		if (k->start < k->len)
			break;
		/* Drained: recycle. The tail is reset in place so appends continue into it. */
		if (k == c->out_tail) {
			k->start = k->len = 0;
			break;
		}
		c->out_head = k->next;
		if (c->out_spare == NULL)
			c->out_spare = k;
		else
			free(k);
	}
}

size_t tls_conn_output_bytes(const struct tls_conn *c)
{
	return c->out_bytes;
}

bool tls_conn_handshake_done(const struct tls_conn *c)
{
	return c->hs_done;
}

const char *tls_conn_alpn(const struct tls_conn *c)
{
	return c->alpn[0] ? c->alpn : NULL;
}

int tls_conn_peer_cn(const struct tls_conn *c, char *buf, size_t cap)
{
	if (!c->hs_done || !c->has_cn)
		return -ENOENT;
	size_t n = strlen(c->cn);
	if (n + 1 > cap)
		return -ENOSPC;
	memcpy(buf, c->cn, n + 1);
	return (int)n;
}

const char *tls_conn_version(const struct tls_conn *c)
{
	return c->hs_done ? wolfSSL_get_version(c->ssl) : NULL;
}

const char *tls_conn_cipher(const struct tls_conn *c)
{
	return c->hs_done ? wolfSSL_get_cipher_name(c->ssl) : NULL;
}

bool tls_conn_resumed(const struct tls_conn *c)
{
	return c->hs_done && wolfSSL_session_reused(c->ssl);
}

/* Rejected connections are logged at most TLS_REJECT_LOG_BURST times per
 * TLS_REJECT_LOG_WINDOW_MS for the whole process: a peer that reconnects in a loop (a
 * plaintext client retrying, a scanner) must not fill the disk. The first line logged after
 * some were left out says how many. */
#define TLS_REJECT_LOG_WINDOW_MS 10000
#define TLS_REJECT_LOG_BURST 10
static pthread_mutex_t tls_reject_lock = PTHREAD_MUTEX_INITIALIZER;
static uint64_t tls_reject_window_ms; /* start of the current window; 0 before the first */
static unsigned tls_reject_logged;    /* lines in it */
static uint64_t tls_reject_left_out;  /* lines not logged since the last one that was */

void tls_log_rejected(int reactor, const char *why, uint64_t now_ms)
{
	uint64_t left_out = 0;
	bool log = false;

	pthread_mutex_lock(&tls_reject_lock);
	if (tls_reject_window_ms == 0 || now_ms - tls_reject_window_ms >= TLS_REJECT_LOG_WINDOW_MS) {
		tls_reject_window_ms = now_ms ? now_ms : 1;
		tls_reject_logged = 0;
	}
	if (tls_reject_logged < TLS_REJECT_LOG_BURST) {
		tls_reject_logged++;
		left_out = tls_reject_left_out;
		tls_reject_left_out = 0;
		log = true;
	} else {
		tls_reject_left_out++;
	}
	pthread_mutex_unlock(&tls_reject_lock);
	if (log && left_out)
		log_warn("rejected connection on reactor %d: %s (%" PRIu64 " more rejected connections were not logged)",
			 reactor, why, left_out);
	else if (log)
		log_warn("rejected connection on reactor %d: %s", reactor, why);
}

const char *tls_conn_error(const struct tls_conn *c)
{
	if (c->err == 0)
		return NULL;
	if (c->err == -ENOMEM)
		return "out of memory";
	return c->errmsg[0] ? c->errmsg : "TLS error";
}
