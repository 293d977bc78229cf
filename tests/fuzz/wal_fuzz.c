/* Fuzz target: log recovery and the batch codec, the two parsers of bytes read back from disk.
 *
 * input[0] is a mode byte, the rest the body:
 *   bit 0  fix checksums: walk the body as the scanner would and rewrite each record's
 *          XXH3 so that mutations reach the fields behind the checksum (revisions, lengths,
 *          commit offsets, payloads), not only "checksum mismatch"
 *   bit 1  raw header: the body includes its own 64-byte segment header (else a valid one
 *          for segment 1 is prepended)
 *   bit 2  split: the body is cut in two at a point given by input[1], written as segments
 *          1 and 2 (the second gets a valid header), to reach cross-segment checks
 *   bit 3  format 2: the headers made here are version 2 (the file's size in the header,
 *          links between segments required), else version 1
 * The files are opened without and then with truncate_corrupt, checked with wal_inspect,
 * and every replayed payload, as well as the whole body, is decoded as a batch. After a
 * successful open one record is appended and committed, and the log reopened: it must then
 * open cleanly with that record last (repair and truncation leave an appendable log). */
#include <dirent.h>
#include <stdint.h>
#include <sys/stat.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <xxhash.h>

#include "core/log.h"
#include "storage/wal.h"

static char root[64], logdir[96];

static int on_change(void *arg, const struct wal_change *c)
{
	/* touch every byte the decoder hands out, so ASan checks the bounds */
	volatile uint8_t x = 0;
	for (size_t i = 0; i < c->key_len; i++)
		x ^= c->key[i];
	for (size_t i = 0; i < c->value_len; i++)
		x ^= c->value[i];
	(void)x;
	return 0;
}

struct replay {
	int64_t last_rev;
	size_t n;
};

static int on_record(void *arg, uint8_t type, int64_t rev, const uint8_t *p, size_t len)
{
	struct replay *r = arg;
	if (rev < r->last_rev)
		__builtin_trap(); /* revisions never go backwards in what is replayed */
	r->last_rev = rev;
	r->n++;
	if (type == WAL_REC_BATCH)
		wal_batch_decode(p, len, on_change, NULL);
	return 0;
}

static void clean_dir(void)
{
	DIR *d = opendir(logdir);
	struct dirent *de;
	char p[512];

	if (!d)
		return;
	while ((de = readdir(d)))
		if (de->d_name[0] != '.') {
			snprintf(p, sizeof p, "%s/%s", logdir, de->d_name);
			unlink(p);
		}
	closedir(d);
}

static void le_put64(uint8_t *p, uint64_t v)
{
	for (int i = 0; i < 8; i++)
		p[i] = (uint8_t)(v >> (8 * i));
}

static void seg_header(uint8_t *p, uint64_t seq, int64_t base, uint64_t v2_size)
{
	memset(p, 0, 64);
	memcpy(p, "uetcdlog", 8);
	p[8] = v2_size ? 2 : 1;
	p[12] = 64;
	le_put64(p + 16, seq);
	le_put64(p + 24, (uint64_t)base);
	le_put64(p + 32, v2_size);
	le_put64(p + 56, XXH3_64bits(p, 56));
}

static void fix_checksums(uint8_t *b, size_t n)
{
	size_t pos = 64;
	while (pos + 32 <= n) {
		uint32_t len = (uint32_t)b[pos + 12] | (uint32_t)b[pos + 13] << 8 | (uint32_t)b[pos + 14] << 16 |
			       (uint32_t)b[pos + 15] << 24;
		if (len > n - pos - 32)
			break;
		le_put64(b + pos, XXH3_64bits(b + pos + 8, 24 + (size_t)len));
		pos += (32 + (size_t)len + 7) & ~(size_t)7;
	}
}

static void write_seg(uint64_t seq, const uint8_t *b, size_t n)
{
	char p[512];
	snprintf(p, sizeof p, "%s/%016llx.seg", logdir, (unsigned long long)seq);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0600);
	if (fd < 0 || (n && write(fd, b, n) != (ssize_t)n))
		abort();
	close(fd);
}

static void cleanup(void)
{
	clean_dir();
	rmdir(logdir);
	rmdir(root);
}

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
	/* tmpfs when there is one: the target is file-bound */
	snprintf(root, sizeof root, "%s/wal_fuzz.XXXXXX", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
	if (!mkdtemp(root))
		abort();
	snprintf(logdir, sizeof logdir, "%s/log", root);
	mkdir(logdir, 0700);
	atexit(cleanup);
	log_set_level(LOG_FATAL); /* torn-tail warnings on every input would drown the output */
	return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	wal_batch_decode(data, size, on_change, NULL);
	if (size < 1 || size > (1 << 20))
		return 0;
	uint8_t mode = data[0];
	const uint8_t *body = data + 1;
	size_t blen = size - 1;
	size_t n = (mode & 2) ? blen : blen + 64;
	uint8_t *img = malloc(n + 64);
	if (mode & 2) {
		memcpy(img, body, blen);
	} else {
		seg_header(img, 1, 0, (mode & 8) ? n : 0);
		memcpy(img + 64, body, blen);
	}
	if (mode & 1)
		fix_checksums(img, n);

	clean_dir();
	if ((mode & 4) && n > 64 && blen > 1) {
		size_t cut = 64 + (size_t)body[0] * 8 % (n - 64);
		if ((mode & 8) && !(mode & 2))
			seg_header(img, 1, 0, cut);
		write_seg(1, img, cut);
		uint8_t *second = malloc(n - cut + 64);
		seg_header(second, 2, 0, (mode & 8) ? n - cut + 64 : 0);
		memcpy(second + 64, img + cut, n - cut);
		if (mode & 1)
			fix_checksums(second, n - cut + 64);
		write_seg(2, second, n - cut + 64);
		free(second);
	} else {
		write_seg(1, img, n);
	}
	free(img);

	char err[512];
	struct wal_options o = {.segment_bytes = 4096, .pending_bytes = 4096, .no_fsync = true};
	struct wal *w;
	struct replay r = {0};
	wal_inspect(root, NULL, NULL, err, sizeof err);
	int rc = wal_open(root, &o, on_record, &r, &w, err, sizeof err);
	if (rc) {
		o.truncate_corrupt = true;
		memset(&r, 0, sizeof r);
		rc = wal_open(root, &o, on_record, &r, &w, err, sizeof err);
		if (rc)
			return 0; /* an I/O error on our own temp dir would be the only excuse */
	}
	/* what is left must be appendable and then open cleanly */
	if (wal_last_rev(w) == INT64_MAX) { /* a hand-made header can claim that */
		wal_close(w);
		return 0;
	}
	int64_t rev = wal_last_rev(w) + 1;
	struct iovec iov = {(void *)"x", 1};
	if (wal_append(w, 9, rev, &iov, 1) || wal_close(w))
		__builtin_trap();
	o.truncate_corrupt = false;
	struct replay r2 = {0};
	if (wal_open(root, &o, on_record, &r2, &w, err, sizeof err))
		__builtin_trap();
	if (r2.last_rev != rev || wal_inspect(root, NULL, NULL, err, sizeof err) != 0)
		__builtin_trap();
	wal_close(w);
	return 0;
}
