/* --auto-tls: a self-signed server certificate made at start-up, as etcd's transport.SelfCert
 * makes one, so that `etcd --auto-tls` scripts and tests work against uetcd unchanged.
 *
 * Files: DIR/cert.pem (0644) and DIR/key.pem (0600), DIR being data-dir/fixtures/client as in
 * etcd. When both exist they are used as they are (etcd does the same: a restart keeps the
 * certificate clients may have pinned). The certificate, as etcd's: ECDSA P-521 key, signed
 * with SHA-512, subject and issuer O=etcd, a random 128-bit serial, valid `validity_years`
 * years from now, key usage digitalSignature + keyEncipherment, extended key usage
 * serverAuth, not a CA, and a subject alternative name per listener host (an IP address, or
 * a DNS name). The key is written first, each file to a temporary name, fsynced and renamed.
 */
#ifndef UETCD_TLS_SELFCERT_H
#define UETCD_TLS_SELFCERT_H

#include <stddef.h>

/* Hosts are bare IP literals ("127.0.0.1", "::1") or DNS names; at most
 * TLS_SELFCERT_HOSTS_MAX of them, each shorter than 254 bytes. Returns 1 if the files were
 * made, 0 if both already existed, or -errno with a message in err (-EINVAL for bad
 * arguments, -EIO when wolfSSL fails). */
#define TLS_SELFCERT_HOSTS_MAX 16
int tls_selfcert_ensure(const char *dir, const char *const *hosts, size_t nhosts, unsigned validity_years,
			char *err, size_t errlen);

#endif
