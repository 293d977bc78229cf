/* See selfcert.h. wolfCrypt's certificate generation (Debian's libwolfssl is built with
 * WOLFSSL_CERT_GEN, WOLFSSL_CERT_EXT and WOLFSSL_ALT_NAMES); the subject alternative names
 * are encoded here, as GeneralNames DER (RFC 5280 §4.2.1.6), since wolfCrypt takes them only
 * as bytes. Runs once at start-up, before any reactor: allocation and blocking I/O are fine. */
#include "tls/selfcert.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/fs.h"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/asn_public.h>
#include <wolfssl/wolfcrypt/ecc.h>
#include <wolfssl/wolfcrypt/random.h>

#define SELFCERT_DER_MAX 8192  /* 16 names of at most 255 bytes, a P-521 key and signature */
#define SELFCERT_PEM_MAX 12288 /* base64 of the above, lines and armour */
#define SELFCERT_SERIAL_BYTES 16
#define SELFCERT_P521_BYTES 66

_Static_assert(SELFCERT_SERIAL_BYTES <= CTC_SERIAL_SIZE, "serial fits wolfCrypt's Cert");
_Static_assert(TLS_SELFCERT_HOSTS_MAX * (4 + 255) + 4 <= CTC_MAX_ALT_SIZE, "names fit wolfCrypt's Cert");

static int selfcert_fail(char *err, size_t errlen, int rc, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return rc;
}

/* DER length octets at p; returns how many. */
static size_t selfcert_der_len(uint8_t *p, size_t len)
{
	if (len < 0x80) {
		p[0] = (uint8_t)len;
		return 1;
	}
	if (len < 0x100) {
		p[0] = 0x81;
		p[1] = (uint8_t)len;
		return 2;
	}
	p[0] = 0x82;
	p[1] = (uint8_t)(len >> 8);
	p[2] = (uint8_t)len;
	return 3;
}

/* GeneralNames: iPAddress [7] for IP literals, dNSName [2] for the rest; duplicates once.
 * Returns the DER size, or -EINVAL. */
static int selfcert_alt_names(const char *const *hosts, size_t n, uint8_t *out, size_t cap)
{
	uint8_t body[TLS_SELFCERT_HOSTS_MAX * (4 + 255)];
	size_t len = 0;

	for (size_t i = 0; i < n; i++) {
		uint8_t ip[16];
		const uint8_t *v = (const uint8_t *)hosts[i];
		size_t vlen = strlen(hosts[i]);
		uint8_t tag = 0x82;
		bool dup = false;

		for (size_t j = 0; j < i; j++)
			dup |= strcmp(hosts[i], hosts[j]) == 0;
		if (dup)
			continue;
		if (inet_pton(AF_INET, hosts[i], ip) == 1)
			tag = 0x87, v = ip, vlen = 4;
		else if (inet_pton(AF_INET6, hosts[i], ip) == 1)
			tag = 0x87, v = ip, vlen = 16;
		if (vlen == 0 || vlen > 255)
			return -EINVAL;
		body[len++] = tag;
		len += selfcert_der_len(body + len, vlen);
		memcpy(body + len, v, vlen);
		len += vlen;
	}
	if (len == 0 || len + 4 > cap)
		return -EINVAL;
	out[0] = 0x30; /* SEQUENCE */
	size_t h = 1 + selfcert_der_len(out + 1, len);
	memcpy(out + h, body, len);
	return (int)(h + len);
}

/* Writes path atomically: temporary name, fsync, rename. */
static int selfcert_write(const char *path, const uint8_t *data, size_t len, mode_t mode)
{
	char tmp[PATH_MAX];
	int fd, rc = 0;

	if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp)
		return -ENAMETOOLONG;
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
	if (fd < 0)
		return -errno;
	if (fchmod(fd, mode) < 0 || write(fd, data, len) != (ssize_t)len || fsync(fd) < 0)
		rc = errno ? -errno : -EIO;
	close(fd);
	if (!rc && rename(tmp, path) < 0)
		rc = -errno;
	if (rc)
		unlink(tmp);
	return rc;
}

/* The key and the certificate as PEM, into key_pem / cert_pem (SELFCERT_PEM_MAX each). */
static int selfcert_make(const char *const *hosts, size_t nhosts, unsigned years, uint8_t *key_pem, int *key_len,
			 uint8_t *cert_pem, int *cert_len, char *err, size_t errlen)
{
	uint8_t *der = malloc(SELFCERT_DER_MAX);
	Cert *cert = malloc(sizeof *cert);
	WC_RNG rng;
	ecc_key key;
	bool rng_ok = false, key_ok = false;
	int rc = -EIO, n;

	if (!der || !cert) {
		rc = selfcert_fail(err, errlen, -ENOMEM, "out of memory");
		goto out;
	}
	if (wc_InitRng(&rng) != 0) {
		selfcert_fail(err, errlen, rc, "cannot seed a random number generator");
		goto out;
	}
	rng_ok = true;
	if (wc_ecc_init(&key) != 0) {
		selfcert_fail(err, errlen, rc, "cannot set up an ECDSA key");
		goto out;
	}
	key_ok = true;
	if ((n = wc_ecc_make_key_ex(&rng, SELFCERT_P521_BYTES, &key, ECC_SECP521R1)) != 0) {
		selfcert_fail(err, errlen, rc, "cannot make a P-521 key (wolfCrypt %d)", n);
		goto out;
	}
	if ((n = wc_EccKeyToDer(&key, der, SELFCERT_DER_MAX)) <= 0 ||
	    (*key_len = wc_DerToPem(der, (word32)n, key_pem, SELFCERT_PEM_MAX, ECC_PRIVATEKEY_TYPE)) <= 0) {
		selfcert_fail(err, errlen, rc, "cannot encode the key");
		goto out;
	}

	if (wc_InitCert(cert) != 0) {
		selfcert_fail(err, errlen, rc, "cannot set up a certificate");
		goto out;
	}
	cert->version = 2; /* X.509 v3 */
	cert->sigType = CTC_SHA512wECDSA;
	cert->daysValid = (int)(365 * years);
	cert->isCA = 0;
	cert->basicConstSet = 1; /* "CA:FALSE", as Go writes with BasicConstraintsValid */
	snprintf(cert->subject.org, sizeof cert->subject.org, "etcd");
	cert->subject.commonName[0] = '\0';
	cert->subject.country[0] = '\0';
	if (wc_RNG_GenerateBlock(&rng, cert->serial, SELFCERT_SERIAL_BYTES) != 0) {
		selfcert_fail(err, errlen, rc, "cannot draw a serial number");
		goto out;
	}
	cert->serial[0] &= 0x7f; /* a positive INTEGER */
	cert->serial[0] |= 0x01; /* and no leading zero octet to strip */
	cert->serialSz = SELFCERT_SERIAL_BYTES;
	if ((n = selfcert_alt_names(hosts, nhosts, cert->altNames, sizeof cert->altNames)) < 0) {
		rc = selfcert_fail(err, errlen, -EINVAL, "bad host name for the certificate");
		goto out;
	}
	cert->altNamesSz = n;
	if (wc_SetKeyUsage(cert, "digitalSignature,keyEncipherment") != 0 ||
	    wc_SetExtKeyUsage(cert, "serverAuth") != 0) {
		selfcert_fail(err, errlen, rc, "cannot set the key usages");
		goto out;
	}
	/* self-signed: wolfCrypt copies the subject into the issuer */
	cert->selfSigned = 1;
	if ((n = wc_MakeCert_ex(cert, der, SELFCERT_DER_MAX, ECC_TYPE, &key, &rng)) <= 0 ||
	    (n = wc_SignCert_ex(cert->bodySz, cert->sigType, der, SELFCERT_DER_MAX, ECC_TYPE, &key, &rng)) <= 0) {
		selfcert_fail(err, errlen, rc, "cannot make the certificate (wolfCrypt %d)", n);
		goto out;
	}
	if ((*cert_len = wc_DerToPem(der, (word32)n, cert_pem, SELFCERT_PEM_MAX, CERT_TYPE)) <= 0) {
		selfcert_fail(err, errlen, rc, "cannot encode the certificate");
		goto out;
	}
	rc = 0;
out:
	if (key_ok)
		wc_ecc_free(&key);
	if (rng_ok)
		wc_FreeRng(&rng);
	if (der)
		memset(der, 0, SELFCERT_DER_MAX); /* held the private key */
	free(der);
	free(cert);
	return rc;
}

int tls_selfcert_ensure(const char *dir, const char *const *hosts, size_t nhosts, unsigned validity_years,
			char *err, size_t errlen)
{
	char cert_path[PATH_MAX], key_path[PATH_MAX];
	uint8_t *key_pem = NULL, *cert_pem = NULL;
	int key_len = 0, cert_len = 0, rc;
	struct stat st;

	if (nhosts == 0 || nhosts > TLS_SELFCERT_HOSTS_MAX)
		return selfcert_fail(err, errlen, -EINVAL, "a self-signed certificate needs 1 to %d host names",
				     TLS_SELFCERT_HOSTS_MAX);
	if (validity_years == 0 || validity_years > 100)
		return selfcert_fail(err, errlen, -EINVAL,
				     "selfSignedCertValidity is invalid, it should be greater than 0 (and at most 100)");
	if ((size_t)snprintf(cert_path, sizeof cert_path, "%s/cert.pem", dir) >= sizeof cert_path ||
	    (size_t)snprintf(key_path, sizeof key_path, "%s/key.pem", dir) >= sizeof key_path)
		return selfcert_fail(err, errlen, -ENAMETOOLONG, "%s: path too long", dir);
	if ((rc = fs_mkdirs(dir, 0700)) < 0)
		return selfcert_fail(err, errlen, rc, "cannot create %s: %s", dir, strerror(-rc));
	if (stat(cert_path, &st) == 0 && stat(key_path, &st) == 0)
		return 0;

	key_pem = malloc(SELFCERT_PEM_MAX);
	cert_pem = malloc(SELFCERT_PEM_MAX);
	if (!key_pem || !cert_pem)
		rc = selfcert_fail(err, errlen, -ENOMEM, "out of memory");
	else
		rc = selfcert_make(hosts, nhosts, validity_years, key_pem, &key_len, cert_pem, &cert_len, err, errlen);
	if (!rc && (rc = selfcert_write(key_path, key_pem, (size_t)key_len, 0600)) < 0)
		selfcert_fail(err, errlen, rc, "cannot write %s: %s", key_path, strerror(-rc));
	if (!rc && (rc = selfcert_write(cert_path, cert_pem, (size_t)cert_len, 0644)) < 0)
		selfcert_fail(err, errlen, rc, "cannot write %s: %s", cert_path, strerror(-rc));
	if (key_pem)
		memset(key_pem, 0, SELFCERT_PEM_MAX);
	free(key_pem);
	free(cert_pem);
	return rc < 0 ? rc : 1;
}
