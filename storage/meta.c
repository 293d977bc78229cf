/* See meta.h. Ids are random (getrandom), never zero. The term is rewritten at every start
 * with the same write-temporary, fsync, rename, fsync-directory as the ids. */
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
#include <unistd.h>

static int meta_mkdirs(const char *dir)
{
	char buf[PATH_MAX];
	size_t n = strlen(dir);

	if (n == 0 || n >= sizeof buf)
		return -ENAMETOOLONG;
	memcpy(buf, dir, n + 1);
	for (size_t i = 1; i <= n; i++) {
		if (buf[i] != '/' && buf[i] != '\0')
			continue;
		char c = buf[i];
		buf[i] = '\0';
		if (mkdir(buf, 0700) < 0 && errno != EEXIST)
			return -errno;
		buf[i] = c;
	}
	return 0;
}

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
	char path[PATH_MAX];
	FILE *f;
	int rc = meta_mkdirs(data_dir);

	if (rc)
		return rc;
	snprintf(path, sizeof path, "%s/meta", data_dir);
	f = fopen(path, "re");
	if (!f) {
		if (errno != ENOENT)
			return -errno;
		out->format = META_FORMAT_VERSION;
		out->cluster_id = meta_random_id();
		out->member_id = meta_random_id();
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
