/* uetcd-check: verifies a data dir offline, without starting the server and without
 * changing anything: every segment header and record checksum, the revision order, that no
 * segment is missing, and that every batch record's payload decodes.
 *
 * Then it loads the checkpoint (storage/ckpt.h) and replays the log after it into a store
 * in memory, exactly as start-up would, so a checkpoint that does not verify or a record
 * that does not fit the history is found too.
 *
 * Exit status: 0 clean; 1 damaged (the first problem's segment and offset on stderr: the
 * server would refuse to start); 2 the log ends in a torn tail (an unfinished last commit
 * the server truncates at start, as it should, or an unfinished segment roll it removes);
 * 3 the directory could not be read. */
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <string.h>

#include "core/qsbr.h"
#include "storage/ckpt.h"
#include "storage/mvcc.h"
#include "storage/recover.h"
#include "storage/wal.h"

struct check {
	uint64_t records, changes;
	int64_t last_rev;
	char bad[1024];
};

static int count_change(void *arg, const struct wal_change *c)
{
	((struct check *)arg)->changes++;
	return 0;
}

static int check_record(void *arg, const struct wal_record_info *r)
{
	struct check *c = arg;
	c->records++;
	c->last_rev = r->rev;
	if (r->type != WAL_REC_BATCH)
		return 0;
	int rc = wal_batch_decode(r->payload, r->len, count_change, c);
	if (rc) {
		snprintf(c->bad, sizeof c->bad, "%s offset %" PRIu64 ": batch payload does not decode (%s)", r->segment,
			 r->offset, strerror(-rc));
		return 1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	struct check c = {0};
	char err[1024];

	if (argc != 2 || argv[1][0] == '-') {
		fprintf(stderr, "usage: %s DATA_DIR\n", argv[0]);
		return 3;
	}
	/* the log the checkpoint says continues at: a missing first segment is damage */
	struct ckpt_header h;
	int rc = ckpt_latest_header(argv[1], &h);
	if (rc < 0) {
		fprintf(stderr, "damaged: %s/snap: the newest checkpoint's header: %s\n", argv[1], strerror(-rc));
		return rc == -EBADMSG ? 1 : 3;
	}
	rc = wal_inspect_at(argv[1], rc ? h.log_seq : 0, check_record, &c, err, sizeof err);
	if (rc > 1 || c.bad[0]) {
		fprintf(stderr, "damaged: %s\n", c.bad);
		return 1;
	}
	if (rc == -EBADMSG) {
		fprintf(stderr, "damaged: %s\n", err);
		return 1;
	}
	if (rc < 0) {
		fprintf(stderr, "cannot check: %s\n", err);
		return 3;
	}
	printf("%" PRIu64 " records, %" PRIu64 " changes, last revision %" PRId64 "\n", c.records, c.changes, c.last_rev);
	{
		struct qsbr *q = qsbr_new(1);
		struct mvcc_store *s = mvcc_store_new(q);
		char rerr[1024];
		int r = recover_at(argv[1], 0, s, NULL, rerr, sizeof rerr);
		if (r == -EBADMSG || r == -ERANGE) {
			fprintf(stderr, "damaged: %s\n", rerr);
			return 1;
		}
		if (r < 0) {
			fprintf(stderr, "cannot check: %s\n", rerr);
			return 3;
		}
		printf("store: revision %" PRId64 ", compacted %" PRId64 ", %" PRIu64 " keys, %" PRIu64 " versions\n",
		       mvcc_rev(s), mvcc_compact_rev(s), mvcc_keys_live(s), mvcc_versions_total(s));
		mvcc_store_free(s);
		qsbr_free(q);
	}
	if (rc == 1) {
		fprintf(stderr, "torn tail: %s\n", err);
		return 2;
	}
	printf("clean\n");
	return 0;
}
