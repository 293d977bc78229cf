/* uetcd-logdump: prints every record of a data dir's log, oldest first, one line each:
 *
 *   segment offset type revision length checksum
 *
 * With -v, the changes of each batch record follow it, indented (op, revision, key with
 * non-printable bytes escaped, value length, lease or compact revision). Reads only;
 * a torn tail or damage ends the listing with the segment and offset of the problem.
 * Exit status as uetcd-check: 0 clean, 1 damaged, 2 torn tail, 3 could not read. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/auth.h"
#include "storage/wal.h"

static int verbose;

static void print_bytes(const uint8_t *p, size_t n)
{
	size_t max = n > 64 ? 64 : n;
	for (size_t i = 0; i < max; i++)
		if (p[i] >= 0x20 && p[i] < 0x7f && p[i] != '\\')
			putchar(p[i]);
		else
			printf("\\x%02x", p[i]);
	if (n > max)
		printf("...(%zu bytes)", n);
}

static int print_change(void *arg, const struct wal_change *c)
{
	static const char *ops[] = {"?", "put", "delete", "compact", "grant", "revoke"};
	static const char *auth_ops[] = {"?", "enable", "disable", "user-add", "user-delete", "user-passwd",
					 "user-grant-role", "user-revoke-role", "role-add", "role-delete",
					 "role-grant-perm", "role-revoke-perm"};
	if (c->op == WAL_OP_AUTH) {
		struct auth_op op;
		if (auth_op_decode(c->value, c->value_len, &op)) {
			printf("    auth    rev=%" PRId64 " (%zu bytes that do not decode)\n", c->rev, c->value_len);
			return 0;
		}
		printf("    auth    rev=%" PRId64 " %s name=", c->rev, auth_ops[op.type < AUTH_OP_LAST_ ? op.type : 0]);
		print_bytes(op.name, op.name_len);
		if (op.role_len) {
			printf(" role=");
			print_bytes(op.role, op.role_len);
		}
		putchar('\n'); /* never the password hash */
		return 0;
	}
	printf("    %-7s rev=%" PRId64, ops[c->op <= 5 ? c->op : 0], c->rev);
	if (c->op == WAL_OP_COMPACT) {
		printf(" compact_rev=%" PRId64 "\n", c->compact_rev);
		return 0;
	}
	if (c->op == WAL_OP_LEASE_GRANT || c->op == WAL_OP_LEASE_REVOKE) {
		printf(" lease=%" PRId64, c->lease);
		if (c->op == WAL_OP_LEASE_GRANT)
			printf(" ttl=%" PRId64, c->ttl);
		putchar('\n');
		return 0;
	}
	printf(" key=");
	print_bytes(c->key, c->key_len);
	if (c->op == WAL_OP_PUT)
		printf(" value_len=%zu lease=%" PRId64, c->value_len, c->lease);
	putchar('\n');
	return 0;
}

static int print_record(void *arg, const struct wal_record_info *r)
{
	const char *name = strrchr(r->segment, '/');
	printf("%s %" PRIu64 " type=%u rev=%" PRId64 " len=%" PRIu32 " xxh3=%016" PRIx64 " ok\n", name ? name + 1 : r->segment,
	       r->offset, r->type, r->rev, r->len, r->checksum);
	(*(uint64_t *)arg)++;
	if (verbose && r->type == WAL_REC_BATCH) {
		int rc = wal_batch_decode(r->payload, r->len, print_change, NULL);
		if (rc)
			printf("    (batch payload does not decode: %s)\n", strerror(-rc));
	}
	return 0;
}

int main(int argc, char **argv)
{
	const char *dir = NULL;
	char err[1024];
	uint64_t n = 0;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-v"))
			verbose = 1;
		else if (argv[i][0] == '-' || dir) {
			fprintf(stderr, "usage: %s [-v] DATA_DIR\n", argv[0]);
			return 3;
		} else
			dir = argv[i];
	}
	if (!dir) {
		fprintf(stderr, "usage: %s [-v] DATA_DIR\n", argv[0]);
		return 3;
	}
	int rc = wal_inspect(dir, print_record, &n, err, sizeof err);
	printf("%" PRIu64 " records\n", n);
	if (rc == 0)
		return 0;
	fprintf(stderr, "%s\n", err);
	return rc == 1 ? 2 : rc == -EBADMSG ? 1 : 3;
}
