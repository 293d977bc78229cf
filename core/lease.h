/* Leases: the table of granted leases, the keys attached to each, and their expiry, all
 * owned by the sequencer thread (so no lock anywhere). Expiry runs on a timer wheel: each
 * lease sits in the slot of its deadline and moves in O(1) on a keep-alive; a tick looks
 * at one slot, never at every lease.
 *
 * etcd's rules: TTLs below the minimum are raised to it (2 s with etcd's default election
 * timeout), above 9e9 s refused; a restart starts every lease's TTL anew (as etcd's new
 * leader does); revoking or expiring a lease deletes its keys, in key order, in one
 * revision. Attachments follow the keys: a put with another lease (or none) detaches the
 * key from its old one, a delete detaches it. */
#ifndef UETCD_CORE_LEASE_H
#define UETCD_CORE_LEASE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LEASE_MIN_TTL 2
#define LEASE_MAX_TTL 9000000000LL

struct lease_table;
struct ckpt_lease;

struct lease_table *lease_table_new(uint64_t now_ms);
void lease_table_free(struct lease_table *t);

/* -EEXIST for a taken id. ttl is used as given (the caller applies etcd's bounds). */
int lease_grant(struct lease_table *t, int64_t id, int64_t ttl, uint64_t now_ms);
/* A fresh id, positive and unused. */
int64_t lease_new_id(struct lease_table *t);
bool lease_exists(const struct lease_table *t, int64_t id);
/* Forgets the lease and its attachments; calls fn for each attached key in key order
 * first. -ENOENT if there is no such lease. */
int lease_revoke(struct lease_table *t, int64_t id, void (*fn)(void *arg, const uint8_t *key, size_t len),
		 void *arg);
/* Restarts the lease's TTL; returns the TTL, or -1 if there is no such lease. */
int64_t lease_renew(struct lease_table *t, int64_t id, uint64_t now_ms);
/* Remaining seconds (truncated, as etcd) and granted TTL; -ENOENT if none. */
int lease_ttl(const struct lease_table *t, int64_t id, uint64_t now_ms, int64_t *remaining, int64_t *granted);
/* Calls fn for each attached key of the lease, in key order. */
void lease_keys(const struct lease_table *t, int64_t id, void (*fn)(void *arg, const uint8_t *key, size_t len),
		void *arg);
/* Calls fn for every lease id. */
void lease_each(const struct lease_table *t, void (*fn)(void *arg, int64_t id), void *arg);
/* Every lease as (id, granted TTL) into out (room for lease_count()); returns how many:
 * what a checkpoint keeps of the leases. */
size_t lease_export(const struct lease_table *t, struct ckpt_lease *out);
size_t lease_count(const struct lease_table *t);

void lease_attach(struct lease_table *t, int64_t id, const uint8_t *key, size_t len);
void lease_detach(struct lease_table *t, int64_t id, const uint8_t *key, size_t len);

/* Advances the wheel to now and returns the id of a lease whose deadline has passed (it
 * stays granted until revoked), or 0 when none is due. */
int64_t lease_next_expired(struct lease_table *t, uint64_t now_ms);
/* Milliseconds until the next wheel tick that could expire something; -1 if no leases. */
int64_t lease_wait_ms(const struct lease_table *t, uint64_t now_ms);

#endif
