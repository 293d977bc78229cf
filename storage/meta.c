/* See meta.h. Ids are derived as etcd derives them (SHA-1, wolfCrypt) or random
 * (getrandom), never zero. The term is rewritten at every start with the same
 * write-temporary, fsync, rename, fsync-directory as the ids. */
#include "storage/meta.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/file.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>
#include <sys/random.h>
#include <sys/stat.h>
#include <stdbool.h>
#include <stdlib.h>
#include <unistd.h>

#include "core/fs.h"

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hash.h>

static uint64_t meta_random_id(void)
{
	uint64_t v = 0;

	while (v == 0)
		if (getrandom(&v, sizeof v, 0) != sizeof v)
			v = 0;
	return v;
}

static int meta_fsync_path(const char *path, int flags)
{
	int fd = open(path, flags | O_CLOEXEC);
	int rc = 0;

	if (fd < 0)
		return -errno;
	if (fsync(fd) < 0)
		rc = -errno;
	close(fd);
	return rc;
}

static int meta_write(const char *data_dir, const struct meta *m)
{
	char path[PATH_MAX], tmp[PATH_MAX], text[128];
	int fd, len, rc = 0;

	snprintf(path, sizeof path, "%s/meta", data_dir);
	snprintf(tmp, sizeof tmp, "%s/meta.tmp", data_dir);
	len = snprintf(text, sizeof text,
		       "uetcd-meta %u\ncluster_id %016" PRIx64 "\nmember_id %016" PRIx64 "\nraft_term %" PRIu64 "\n",
		       m->format, m->cluster_id, m->member_id, m->raft_term);
	fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	if (write(fd, text, (size_t)len) != len || fsync(fd) < 0)
		rc = errno ? -errno : -EIO;
	close(fd);
	if (!rc && rename(tmp, path) < 0)
		rc = -errno;
	if (!rc)
		rc = meta_fsync_path(data_dir, O_RDONLY | O_DIRECTORY);
	return rc;
}

int meta_open(const char *data_dir, struct meta *out)
{
	return meta_open_with(data_dir, NULL, out);
}

int meta_open_with(const char *data_dir, const struct meta *want, struct meta *out)
{
	char path[PATH_MAX];
	FILE *f;
	int rc = fs_mkdirs(data_dir, 0700);

	if (rc)
		return rc;
	snprintf(path, sizeof path, "%s/meta", data_dir);
	f = fopen(path, "re");
	if (!f) {
		if (errno != ENOENT)
			return -errno;
		out->format = META_FORMAT_VERSION;
		bool given = want && want->cluster_id && want->member_id;
		out->cluster_id = given ? want->cluster_id : meta_random_id();
		out->member_id = given ? want->member_id : meta_random_id();
		out->raft_term = 1; /* what a raft member boots with; its first election makes 2 */
		return meta_write(data_dir, out);
	}
	rc = fscanf(f, "uetcd-meta %" SCNu32 " cluster_id %" SCNx64 " member_id %" SCNx64, &out->format,
		    &out->cluster_id, &out->member_id) == 3
		     ? 0
		     : -EINVAL;
	/* optional; a file without it is from before terms were kept, whose starts served 2 */
	if (!rc && fscanf(f, " raft_term %" SCNu64, &out->raft_term) != 1)
		out->raft_term = 2;
	fclose(f);
	if (!rc && (out->format == 0 || out->format > META_FORMAT_VERSION || out->raft_term == 0))
		rc = -EINVAL;
	return rc;
}

#define META_MEMBERS_MAX 64 /* members of an initial cluster */
#define META_URLS_MAX 64    /* peer URLs of the whole initial cluster */

static int meta_cmp_str(const void *a, const void *b)
{
	return strcmp(*(const char *const *)a, *(const char *const *)b);
}

static int meta_cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

static uint64_t meta_sha1_u64(const uint8_t *data, size_t len)
{
	uint8_t h[WC_SHA_DIGEST_SIZE];
	uint64_t v = 0;

	if (wc_ShaHash(data, (word32)len, h) != 0)
		return 0;
	for (int i = 0; i < 8; i++)
		v = v << 8 | h[i];
	return v;
}

/* One member's id: its URLs (names[i] == name) sorted, joined, then the token. */
static uint64_t meta_member_id(char **names, char **urls, size_t n, const char *name, const char *token)
{
	const char *mine[META_URLS_MAX];
	uint8_t buf[4096 + 256 + 1];
	size_t k = 0, len = 0;

	for (size_t i = 0; i < n; i++)
		if (strcmp(names[i], name) == 0)
			mine[k++] = urls[i];
	qsort(mine, k, sizeof *mine, meta_cmp_str);
	for (size_t i = 0; i <= k; i++) {
		const char *p = i < k ? mine[i] : token;
		size_t l = strlen(p);
		if (len + l > sizeof buf)
			return 0;
		memcpy(buf + len, p, l);
		len += l;
	}
	return k ? meta_sha1_u64(buf, len) : 0;
}

int meta_derive_ids(const char *initial_cluster, const char *name, const char *advertise_peer_urls,
		    const char *token, struct meta *out)
{
	char *names[META_URLS_MAX], *urls[META_URLS_MAX];
	uint64_t ids[META_MEMBERS_MAX], member = 0;
	uint8_t be[META_MEMBERS_MAX * 8];
	size_t n = 0, nids = 0;
	int rc = -EINVAL;
	bool derived = !initial_cluster || !*initial_cluster;
	size_t cap = strlen(derived ? advertise_peer_urls : initial_cluster) + 1;
	char *copy = malloc(cap), *save = NULL;

	if (!copy)
		return -ENOMEM;
	memcpy(copy, derived ? advertise_peer_urls : initial_cluster, cap);
	for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
		char *eq = derived ? NULL : strchr(tok, '=');
		if (n == META_URLS_MAX || (!derived && (!eq || eq == tok || !eq[1])) || !*tok)
			goto out;
		if (eq)
			*eq = '\0';
		names[n] = derived ? (char *)name : tok;
		urls[n++] = derived ? tok : eq + 1;
	}
	for (size_t i = 0; i < n; i++) {
		bool seen = false;
		for (size_t j = 0; j < i; j++)
			seen |= strcmp(names[i], names[j]) == 0;
		if (seen)
			continue;
		if (nids == META_MEMBERS_MAX || (ids[nids] = meta_member_id(names, urls, n, names[i], token)) == 0)
			goto out;
		if (strcmp(names[i], name) == 0)
			member = ids[nids];
		nids++;
	}
	if (!member)
		goto out; /* etcd: couldn't find local name in the initial cluster configuration */
	qsort(ids, nids, sizeof *ids, meta_cmp_u64);
	for (size_t i = 0; i < nids; i++)
		for (int b = 0; b < 8; b++)
			be[i * 8 + (size_t)b] = (uint8_t)(ids[i] >> (56 - 8 * b));
	out->cluster_id = meta_sha1_u64(be, nids * 8);
	out->member_id = member;
	rc = out->cluster_id ? 0 : -EINVAL;
out:
	free(copy);
	return rc;
}

int meta_start_term(const char *data_dir, struct meta *m)
{
	struct meta next = *m;

	if (m->raft_term >= INT64_MAX) /* etcd's clients read it as a signed number in places */
		return -EOVERFLOW;
	next.raft_term++;
	int rc = meta_write(data_dir, &next);
	if (!rc)
		*m = next;
	return rc;
}

int meta_lock(const char *data_dir)
{
	int fd = open(data_dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	if (flock(fd, LOCK_EX | LOCK_NB) < 0) {
		int rc = -errno;
		close(fd);
		return rc;
	}
	return fd;
}
