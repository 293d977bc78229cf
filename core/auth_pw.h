/* Passwords as etcd keeps them: bcrypt hashes ("$2b$10$" + 22 salt + 31 hash characters)
 * made by libxcrypt, with the cost from --bcrypt-cost. etcd (Go's x/crypto/bcrypt) writes
 * "$2a$"; both verify here and in etcd, since the two prefixes name the same algorithm for
 * passwords of at most 72 bytes, and longer ones are refused as Go's bcrypt refuses them.
 *
 * Hashing and verifying are slow ON PURPOSE (2^cost rounds: about 50 ms at cost 10):
 * callers must run them off the reactor threads and off the sequencer (a worker thread),
 * never on a path that answers other clients. Both functions are thread-safe (no shared
 * state; the 32 KiB crypt scratch area is allocated per call).
 *
 * Not supported: passwords with a NUL byte (crypt(3) takes C strings); hashing refuses
 * them and verification never matches them. etcd accepts them; clients never send them. */
#ifndef UETCD_CORE_AUTH_PW_H
#define UETCD_CORE_AUTH_PW_H

#include <stdbool.h>
#include <stddef.h>

#define AUTH_PW_COST_DEFAULT 10 /* etcd's --bcrypt-cost default, Go's bcrypt.DefaultCost */
#define AUTH_PW_COST_MIN 4	/* Go's bcrypt.MinCost */
#define AUTH_PW_COST_MAX 31	/* Go's bcrypt.MaxCost */
#define AUTH_PW_HASH_LEN 60	/* "$2b$NN$" + 53 characters */
#define AUTH_PW_PASSWORD_MAX 72 /* Go's bcrypt refuses longer passwords */

/* The cost etcd uses for a --bcrypt-cost value: outside AUTH_PW_COST_MIN..MAX etcd warns
 * and uses AUTH_PW_COST_DEFAULT (NewAuthStore); so does this. */
int auth_pw_cost(long requested);

/* Hashes password (len bytes, no NUL) with a fresh random salt into out (NUL-terminated,
 * AUTH_PW_HASH_LEN characters). cost must be within AUTH_PW_COST_MIN..MAX.
 * Returns 0; -E2BIG for a password over AUTH_PW_PASSWORD_MAX bytes (etcd answers
 * AUTH_PW_ERR_TOO_LONG_MSG with gRPC code Unknown); -EINVAL for a NUL in the password or
 * a bad cost; -EIO when libxcrypt fails (no randomness). Slow: see the file header. */
int auth_pw_hash(const char *password, size_t len, int cost, char out[AUTH_PW_HASH_LEN + 1]);

/* The message etcd 3.5 answers (gRPC code 2, Unknown) for a password over 72 bytes. */
#define AUTH_PW_ERR_TOO_LONG_MSG "bcrypt: password length exceeds 72 bytes"

/* True when password matches hash (hash_len bytes, not necessarily NUL-terminated). The
 * computed and stored hashes are compared in constant time. False for anything that is not
 * a well-formed bcrypt hash, for a password over 72 bytes and for a NUL in the password.
 * Slow: see the file header. */
bool auth_pw_verify(const char *password, size_t len, const char *hash, size_t hash_len);

#endif
